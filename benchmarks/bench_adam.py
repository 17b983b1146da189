"""cvxnn (convex gated program) vs PyTorch Adam on the same gated ReLU network.

For each problem, both methods minimise the SAME non-convex objective over the
same gated network, built on the same P gates ``G`` (columns of shape
``(d + 1,)``, acting on ``Xa = [X, 1]``; 100 Gaussian gates drawn with
:func:`cvxnn.patterns.sample_gates`, duplicates dropped, so ``P <= 100``):

    f_k(x) = sum_{i=1}^{P} 1[g_i^T xa > 0] (xa^T w1_{ik}) w2_{ik},   k = 1..c,

    F(w1, w2) = L(f(X), Y) + alpha / 2 * sum_{i,k} (||w1_{ik}||^2 + w2_{ik}^2),

with ``L`` cvxnn's loss scaling (squared ``||Z - Y||_F^2 / (2n)``, logistic
mean, softmax cross-entropy mean).  The network has ``m = P * c`` hidden units:
unit ``(i, k)`` has gate ``g_i``, first layer ``w1_{ik}`` (its last entry is
the bias, regularised) and feeds output ``k`` only, exactly the network
:class:`cvxnn.GatedTwoLayerReLU` that :func:`cvxnn.network_from_gated`
builds from a convex solution ``U`` of shape ``(d + 1, P, c)``
(``w1 = u / sqrt||u||``, ``w2 = sqrt||u||``).  By the AM-GM rescaling argument
(math spec 1.1, 5.1) the global minimum of ``F`` equals the optimum of the
convex gated group lasso that ``cvxnn.solve(..., formulation="gated")``
certifies with a duality gap.  The script checks this numerically: it loads
cvxnn's ``U`` into the torch model and compares the torch objective with
``res.network.objective(X, y, alpha)`` and ``res.objective``, and it evaluates
Adam's final weights with ``GatedTwoLayerReLU.objective`` as well.

cvxnn: ``cvxnn.solve(X, y, alpha, formulation="gated", gates=G, loss=...,
tol=1e-6, bias=True)`` (default solver: the working-set second-order method).
Its wall time is measured around the call; its objective curve is the primal
objective at each outer round of the solver (``res.history`` holds
``(iteration, seconds, relative_gap)`` per round but not the objective, so the
script records the primal of every duality-gap evaluation of the full problem
during the timed call by wrapping ``GatedReLUProblem.gap``; the wrapper only
appends to a list).

Adam: full batch, float64, ``torch.set_num_threads(1)``, ``epochs`` iterations
(2000; 300 with ``--quick``), learning rates 1e-3, 1e-2, 1e-1 with the same
standard PyTorch initialisation (``torch.nn.Linear(d, m)`` for the first layer
and bias, ``torch.nn.Linear(m, c, bias=False)`` for the output layer, of which
the entries ``(k, unit (i, k))`` are used), weight decay as the explicit
penalty term in the loss (``torch.optim.Adam(weight_decay=0)``, not AdamW).
The best learning rate is the one with the lowest final objective.  Timing
starts before the masks and tensors are built.  The objective is recorded
every 20 iterations; the time to first reach ``(F - p) / p <= 1e-3`` (``p`` the
cvxnn objective) is checked at every iteration.

"cvxnn wins" means: lower objective than the best Adam run AND less wall time
than that single Adam run (the 3-learning-rate tuning cost, also reported, is
not charged to Adam).

Output: JSON on stdout (also written to ``benchmarks/bench_adam.json``), then a
table; the curves (objective minus the cvxnn objective, log scale, vs wall
time) go to ``benchmarks/bench_adam.png`` (matplotlib, imported lazily).

Run (2-core machine, one BLAS thread)::

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/bench_adam.py
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/bench_adam.py --quick

Needs torch (``pip install torch==2.13.0``) and, for the figure, matplotlib.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import cvxnn  # noqa: E402
from cvxnn._data import augment, encode_targets  # noqa: E402
from cvxnn.network import GatedTwoLayerReLU  # noqa: E402
from cvxnn.patterns import compute_masks, sample_gates  # noqa: E402
from cvxnn.problems import GatedReLUProblem  # noqa: E402

SHARED_DATA = "/work/shared/data"
HERE = Path(__file__).resolve().parent
LEARNING_RATES = (1e-3, 1e-2, 1e-1)
RECORD_EVERY = 20
WITHIN = 1e-3

# name, dataset, loss, alpha, task ("binary" labels, "multiclass" labels, "regression")
PROBLEMS = [
    ("wdbc/logistic/1e-3", "wdbc", "logistic", 1e-3, "binary"),
    ("wdbc/squared/1e-4", "wdbc", "squared", 1e-4, "binary"),
    ("pima/logistic/1e-4", "pima", "logistic", 1e-4, "binary"),
    ("australian/squared/1e-3", "australian", "squared", 1e-3, "binary"),
    ("diabetes/squared/1e-3", "diabetes", "squared", 1e-3, "regression"),
    ("iris/cross_entropy/1e-3", "iris", "cross_entropy", 1e-3, "multiclass"),
    ("1028_SWD/squared/1e-3", "1028_SWD", "squared", 1e-3, "regression"),
    ("wine_quality_red/squared/1e-4", "wine_quality_red", "squared", 1e-4, "regression"),
    ("kr_vs_kp/logistic/1e-3", "kr_vs_kp", "logistic", 1e-3, "binary"),
]
QUICK = [0, 4]
#: opt-in (``--extended``): multi-class tables with n >= 1000 where cvxnn's
#: second-order solver is slow (minutes); not part of the default run
EXTENDED = [
    ("car/cross_entropy/1e-3", "car", "cross_entropy", 1e-3, "multiclass"),
    ("waveform_21/squared/1e-3", "waveform_21", "squared", 1e-3, "multiclass"),
]


# ----------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------

def _standardise(a):
    a = np.asarray(a, dtype=np.float64)
    sd = a.std(axis=0)
    sd = np.where(sd == 0, 1.0, sd)
    return (a - a.mean(axis=0)) / sd


def load_data(dataset, task):
    """Standardised ``X`` and raw ``y`` (regression targets standardised too)."""
    if dataset == "diabetes":
        from sklearn.datasets import load_diabetes

        X, y = load_diabetes(return_X_y=True)
    else:
        if SHARED_DATA not in sys.path:
            sys.path.insert(0, SHARED_DATA)
        from load import load

        X, y = load(dataset)
    X = _standardise(X)
    if task == "regression":
        y = _standardise(y)
    return X, np.asarray(y)


# ----------------------------------------------------------------------------
# cvxnn
# ----------------------------------------------------------------------------

def run_cvxnn(X, y, alpha, loss, G, classification, tol):
    """Timed ``cvxnn.solve`` on the gated program; returns (result, seconds, curve, warnings)."""
    n, P = X.shape[0], G.shape[1]
    records = []
    original = GatedReLUProblem.gap

    def recording_gap(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if self.n_samples == n and self.shape[1] == P:    # the full problem only
            g = out[0] if isinstance(out, tuple) else out
            records.append((time.perf_counter(), float(g.primal), float(g.relative_gap)))
        return out

    GatedReLUProblem.gap = recording_gap
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            res = cvxnn.solve(X, y, alpha, formulation="gated", gates=G, loss=loss, tol=tol,
                              bias=True, classification=classification)
            seconds = time.perf_counter() - t0
    finally:
        GatedReLUProblem.gap = original
    curve = [(t - t0, p, r) for t, p, r in records if t - t0 <= seconds]
    final = (seconds, float(res.objective), float(res.relative_gap))
    if curve and curve[-1][1] == final[1]:
        curve[-1] = final
    else:
        curve.append(final)
    return res, seconds, curve, [str(w.message) for w in caught]


# ----------------------------------------------------------------------------
# the torch model
# ----------------------------------------------------------------------------

class TorchGated:
    """The gated network with ``P * c`` units, unit ``(i, k)`` -> output ``k`` only."""

    def __init__(self, torch, Xa, D, Y, loss, alpha):
        self.torch = torch
        self.Xa = torch.from_numpy(np.ascontiguousarray(Xa, dtype=np.float64))
        self.D = torch.from_numpy(np.ascontiguousarray(D, dtype=np.float64))
        self.Y = torch.from_numpy(np.ascontiguousarray(Y, dtype=np.float64))
        self.loss = loss
        self.alpha = float(alpha)
        self.n, self.d_aug = Xa.shape
        self.P = D.shape[1]
        self.c = Y.shape[1]
        if loss == "logistic":
            self.y1 = self.Y[:, 0]

    def init_params(self, seed):
        """Standard ``torch.nn.Linear`` initialisation for the first and output layers."""
        torch = self.torch
        torch.manual_seed(seed)
        m, d = self.P * self.c, self.d_aug - 1
        first = torch.nn.Linear(d, m, dtype=torch.float64)          # U(+-1/sqrt(d)), bias too
        second = torch.nn.Linear(m, self.c, bias=False, dtype=torch.float64)  # U(+-1/sqrt(m))
        with torch.no_grad():
            W1 = torch.cat([first.weight, first.bias[:, None]], dim=1)          # (m, d_aug)
            W1 = W1.reshape(self.P, self.c, self.d_aug).clone()
            units = torch.arange(m).reshape(self.P, self.c)
            w2 = second.weight[torch.arange(self.c)[None, :].expand(self.P, -1), units].clone()
        return W1.requires_grad_(True), w2.requires_grad_(True)

    def params_from_convex(self, U):
        """``w1 = u / sqrt||u||``, ``w2 = sqrt||u||`` for every block of ``U`` (d_aug, P, c)."""
        torch = self.torch
        U = np.asarray(U, dtype=np.float64).reshape(self.d_aug, self.P, self.c)
        norms = np.linalg.norm(U, axis=0)                                 # (P, c)
        root = np.sqrt(norms)
        safe = np.where(root > 0, root, 1.0)
        W1 = np.transpose(U, (1, 2, 0)) / safe[:, :, None]
        return torch.from_numpy(np.ascontiguousarray(W1)), torch.from_numpy(root.copy())

    def outputs(self, W1, w2):
        pre = (self.Xa @ W1.reshape(self.P * self.c, self.d_aug).T)      # (n, P*c)
        if self.c == 1:
            return (pre * self.D) @ w2                                    # (n, 1)
        gated = pre.reshape(self.n, self.P, self.c) * self.D[:, :, None]
        return (gated * w2[None]).sum(dim=1)                              # (n, c)

    def data_loss(self, Z):
        torch = self.torch
        if self.loss == "squared":
            return ((Z - self.Y) ** 2).sum() / (2.0 * self.n)
        if self.loss == "logistic":
            return -torch.nn.functional.logsigmoid(self.y1 * Z[:, 0]).mean()
        return (torch.logsumexp(Z, dim=1) - (self.Y * Z).sum(dim=1)).mean()

    def objective(self, W1, w2):
        pen = 0.5 * self.alpha * ((W1 * W1).sum() + (w2 * w2).sum())
        return self.data_loss(self.outputs(W1, w2)) + pen

    def network(self, W1, w2, G, classes):
        """The same weights as a :class:`cvxnn.GatedTwoLayerReLU` (m = P * c units)."""
        W1 = W1.detach().numpy().reshape(self.P * self.c, self.d_aug)
        W2 = np.zeros((self.P * self.c, self.c))
        w2 = w2.detach().numpy()
        for k in range(self.c):
            W2[np.arange(self.P) * self.c + k, k] = w2[:, k]
        gates = np.repeat(G.T, self.c, axis=0)                            # unit (i, k) -> g_i
        d = self.d_aug - 1
        return GatedTwoLayerReLU(W1[:, :d], W1[:, d], W2, gates, classes=classes, loss=self.loss)


def run_adam(torch, X, Y, G, loss, alpha, lr, epochs, p_ref, seed):
    t0 = time.perf_counter()
    D = compute_masks(X, G, bias=True)
    model = TorchGated(torch, augment(X, True), D, Y, loss, alpha)
    W1, w2 = model.init_params(seed)
    opt = torch.optim.Adam([W1, w2], lr=lr, weight_decay=0.0)
    curve = []
    t_within = None
    diverged = False
    for it in range(epochs):
        opt.zero_grad(set_to_none=True)
        obj = model.objective(W1, w2)
        obj.backward()
        val = obj.item()
        now = time.perf_counter() - t0
        if not np.isfinite(val):
            diverged = True
            curve.append((now, it, val))
            break
        if t_within is None and (val - p_ref) <= WITHIN * abs(p_ref):
            t_within = now
        if it % RECORD_EVERY == 0:
            curve.append((now, it, val))
        opt.step()
    with torch.no_grad():
        final = model.objective(W1, w2).item()
    seconds = time.perf_counter() - t0
    if t_within is None and np.isfinite(final) and (final - p_ref) <= WITHIN * abs(p_ref):
        t_within = seconds
    curve.append((seconds, epochs, final))
    return {"lr": lr, "objective": final, "seconds": seconds, "t_within": t_within,
            "diverged": diverged or not np.isfinite(final), "curve": curve,
            "_params": (W1.detach(), w2.detach()), "_model": model}


def warm_up(torch):
    """Untimed tiny runs of both methods (lazy imports, first-call allocations)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    y = np.where(X[:, 0] + 0.3 * rng.standard_normal(60) > 0, 1, 0)
    G = sample_gates(X, 10, bias=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for loss in ("squared", "logistic", "cross_entropy"):
            cvxnn.solve(X, y, 1e-3, formulation="gated", gates=G, loss=loss, tol=1e-6,
                        classification=True)
            Y, _ = encode_targets(y, loss, True)
            run_adam(torch, X, Y, G, loss, 1e-3, 1e-2, 20, 1.0, 0)


# ----------------------------------------------------------------------------
# one problem
# ----------------------------------------------------------------------------

def run_problem(torch, spec, epochs, n_gates, seed, tol, sweep_tols):
    name, dataset, loss, alpha, task = spec
    X, y = load_data(dataset, task)
    classification = task != "regression"
    Y, classes = encode_targets(y, loss, classification)
    G = sample_gates(X, n_gates, bias=True, random_state=seed)
    n, d = X.shape
    P, c = G.shape[1], Y.shape[1]
    print(f"# {name}: n={n} d={d} P={P} c={c} units={P * c}", file=sys.stderr, flush=True)

    res, cvx_s, cvx_curve, cvx_warn = run_cvxnn(X, y, alpha, loss, G, classification, tol)
    p = float(res.objective)
    print(f"#   cvxnn {cvx_s:.2f}s objective {p:.10g} rel.gap {res.relative_gap:.1e}",
          file=sys.stderr, flush=True)

    # the objectives agree: convex, cvxnn network, torch model loaded with cvxnn's U
    model = TorchGated(torch, augment(X, True), compute_masks(X, G, bias=True), Y, loss, alpha)
    W1c, w2c = model.params_from_convex(res.weights["U"])
    with torch.no_grad():
        torch_at_cvx = model.objective(W1c, w2c).item()
    net_obj = float(res.network.objective(X, y, alpha))
    check = {
        "convex_objective": p,
        "network_objective": net_obj,
        "torch_objective_at_cvxnn_weights": torch_at_cvx,
        "rel_diff_torch_vs_network": abs(torch_at_cvx - net_obj) / abs(net_obj),
        "rel_diff_network_vs_convex": abs(net_obj - p) / abs(p),
    }
    if check["rel_diff_torch_vs_network"] > 1e-9:
        raise AssertionError(f"{name}: torch objective {torch_at_cvx!r} != network "
                             f"objective {net_obj!r}")

    # cold runs stopped at looser tolerances: what a user gets for less time
    sweep = []
    for t in sweep_tols:
        r_t, s_t, _, w_t = run_cvxnn(X, y, alpha, loss, G, classification, t)
        sweep.append({"tol": t, "seconds": s_t, "objective": float(r_t.objective),
                      "relative_gap": float(r_t.relative_gap),
                      "relative_excess": (float(r_t.objective) - p) / abs(p)})
    within = [q["seconds"] for q in sweep if q["relative_excess"] <= WITHIN] + [cvx_s]

    runs = []
    for lr in LEARNING_RATES:
        r = run_adam(torch, X, Y, G, loss, alpha, lr, epochs, p, seed)
        print(f"#   adam lr={lr:g} {r['seconds']:.2f}s objective {r['objective']:.10g}",
              file=sys.stderr, flush=True)
        runs.append(r)
    finite = [r for r in runs if np.isfinite(r["objective"])]
    best = min(finite, key=lambda r: r["objective"]) if finite else runs[0]
    W1b, w2b = best["_params"]
    adam_net_obj = float(best["_model"].network(W1b, w2b, G, classes).objective(X, y, alpha))
    check["adam_final_torch_objective"] = best["objective"]
    check["adam_final_network_objective"] = adam_net_obj
    check["adam_final_rel_diff"] = abs(adam_net_obj - best["objective"]) / abs(adam_net_obj)
    check["adam_above_dual_bound"] = bool(best["objective"] >= res.dual_bound - 1e-12 * abs(p))

    excess = (best["objective"] - p) / abs(p)
    wins_obj = bool(p < best["objective"])
    wins_time = bool(cvx_s < best["seconds"])
    return {
        "problem": name, "dataset": dataset, "loss": loss, "alpha": alpha, "task": task,
        "n": n, "d": d, "P": P, "c": c, "hidden_units": P * c,
        "cvxnn": {
            "seconds": cvx_s, "objective": p, "relative_gap": float(res.relative_gap),
            "dual_bound": float(res.dual_bound), "converged": bool(res.converged),
            "n_iter": int(res.n_iter), "n_active": int(res.n_active), "solver": res.solver,
            "warnings": cvx_warn,
            "history": [list(map(float, h)) for h in res.history],
            "curve": _columns(cvx_curve, ("seconds", "objective", "relative_gap")),
            "tolerance_sweep": sweep,
            "seconds_to_within_1e-3": min(within),
        },
        "adam": {
            "epochs": epochs,
            "best_lr": best["lr"],
            "objective": best["objective"],
            "seconds": best["seconds"],
            "seconds_all_lrs": float(sum(r["seconds"] for r in runs)),
            "relative_excess": excess,
            "seconds_to_within_1e-3": best["t_within"],
            "any_lr_within_1e-3": [r["lr"] for r in runs if r["t_within"] is not None],
            "runs": [{
                "lr": r["lr"], "objective": r["objective"], "seconds": r["seconds"],
                "relative_excess": (r["objective"] - p) / abs(p),
                "seconds_to_within_1e-3": r["t_within"], "diverged": r["diverged"],
                "curve": _columns(r["curve"], ("seconds", "iter", "objective")),
            } for r in runs],
        },
        "check": check,
        "cvxnn_lower_objective": wins_obj,
        "cvxnn_less_time": wins_time,
        "cvxnn_wins": wins_obj and wins_time,
    }


# ----------------------------------------------------------------------------
# output
# ----------------------------------------------------------------------------

def _columns(points, names):
    """Curve points ``[(seconds, ...), ...]`` as one list per column (times to 0.1 ms)."""
    cols = {name: [q[j] for q in points] for j, name in enumerate(names)}
    cols["seconds"] = [round(float(t), 4) for t in cols["seconds"]]
    if "iter" in cols:
        cols["iter"] = [int(i) for i in cols["iter"]]
    return cols


def _fmt_t(t):
    return "never" if t is None else f"{t:.2f}s"


def table(rows):
    hdr = (f"{'problem':30s} {'n':>5s} {'d':>3s} {'units':>5s} | {'cvxnn s':>8s} "
           f"{'cvxnn objective':>16s} {'rel.gap':>8s} {'t(1e-3)':>8s} | {'lr':>5s} "
           f"{'Adam objective':>16s} "
           f"{'Adam s':>7s} {'all lrs s':>9s} {'excess':>9s} {'t(1e-3)':>8s} | wins")
    lines = [hdr, "-" * len(hdr)]
    for r in rows:
        cv, ad = r["cvxnn"], r["adam"]
        lines.append(
            f"{r['problem']:30s} {r['n']:5d} {r['d']:3d} {r['hidden_units']:5d} | "
            f"{cv['seconds']:8.2f} {cv['objective']:16.10g} {cv['relative_gap']:8.1e} "
            f"{_fmt_t(cv['seconds_to_within_1e-3']):>8s} | "
            f"{ad['best_lr']:5.0e} {ad['objective']:16.10g} {ad['seconds']:7.2f} "
            f"{ad['seconds_all_lrs']:9.2f} {ad['relative_excess']:9.2e} "
            f"{_fmt_t(ad['seconds_to_within_1e-3']):>8s} | "
            f"{'yes' if r['cvxnn_wins'] else 'no'}"
            f"{'' if r['cvxnn_wins'] else ' (obj ' + ('ok' if r['cvxnn_lower_objective'] else 'LOST') + ', time ' + ('ok' if r['cvxnn_less_time'] else 'LOST') + ')'}"
        )
    n_win = sum(r["cvxnn_wins"] for r in rows)
    lines.append(f"cvxnn wins on both objective and time on {n_win} of {len(rows)} problems")
    return "\n".join(lines)


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(rows)
    ncol = min(3, k)
    nrow = (k + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 3.9 * nrow), squeeze=False)
    for ax, r in zip(axes.ravel(), rows):
        p = r["cvxnn"]["objective"]
        floor = 1e-10 * abs(p)
        for run in r["adam"]["runs"]:
            t = np.array(run["curve"]["seconds"])
            o = np.array(run["curve"]["objective"])
            ok = np.isfinite(o)
            best = run["lr"] == r["adam"]["best_lr"]
            ax.plot(np.maximum(t[ok], 1e-4), np.maximum(o[ok] - p, floor),
                    lw=2.0 if best else 0.9, alpha=1.0 if best else 0.55,
                    label=f"Adam lr={run['lr']:g}" + (" (best)" if best else ""))
        t = np.array(r["cvxnn"]["curve"]["seconds"])
        o = np.array(r["cvxnn"]["curve"]["objective"])
        # steps: between two solver rounds the last known objective is all a user has
        ax.plot(np.maximum(t, 1e-4), np.maximum(o - p, floor), "k-o", ms=4, lw=1.8,
                drawstyle="steps-post", label="cvxnn tol 1e-6 (objective per solver round)")
        sw = r["cvxnn"]["tolerance_sweep"]
        if sw:
            ax.plot([max(q["seconds"], 1e-4) for q in sw],
                    [max(q["objective"] - p, floor) for q in sw], "ks", mfc="none", ms=6,
                    label="cvxnn cold runs, tol " + ",".join(f"{q['tol']:g}" for q in sw))
        ax.axhline(WITHIN * abs(p), color="grey", ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{r['problem']}  (n={r['n']}, {r['hidden_units']} units)", fontsize=9)
        ax.set_xlabel("wall time [s]")
        ax.set_ylabel("objective - cvxnn optimum")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=6.5, loc="lower left")
    for ax in axes.ravel()[k:]:
        ax.axis("off")
    epochs = rows[0]["adam"]["epochs"] if rows else 0
    fig.suptitle(f"Gated ReLU, same gates and objective: cvxnn (tol 1e-6) vs full-batch Adam "
                 f"({epochs} iterations); dotted: 1e-3 relative, floor 1e-10 relative",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 2 problems, 300 Adam iterations")
    ap.add_argument("--epochs", type=int, default=None, help="Adam iterations (default 2000)")
    ap.add_argument("--gates", type=int, default=100, help="Gaussian gates drawn (default 100)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--sweep", default="1e-2,1e-3,1e-4",
                    help="extra cold cvxnn runs at these tolerances ('' for none)")
    ap.add_argument("--extended", action="store_true",
                    help="also run the slow multi-class tables in EXTENDED")
    ap.add_argument("--only", default=None,
                    help="comma-separated substrings selecting problems by name")
    ap.add_argument("--out", default=None,
                    help="JSON path (default benchmarks/bench_adam.json; none with --quick)")
    ap.add_argument("--png", default=None,
                    help="figure path (default benchmarks/bench_adam.png; none with --quick)")
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    epochs = args.epochs or (300 if args.quick else 2000)
    specs = [PROBLEMS[i] for i in QUICK] if args.quick else list(PROBLEMS)
    if args.extended:
        specs += EXTENDED
    if args.only:
        keys = [s.strip() for s in args.only.split(",") if s.strip()]
        specs = [s for s in specs if any(k in s[0] for k in keys)]
    # a smoke test never overwrites the committed results unless asked to
    out = Path(args.out) if args.out else (None if args.quick else HERE / "bench_adam.json")
    png = Path(args.png) if args.png else (None if args.quick else HERE / "bench_adam.png")

    load_start = list(os.getloadavg())
    warm_up(torch)
    t_start = time.perf_counter()
    sweep_tols = [float(t) for t in args.sweep.split(",") if t.strip()] if args.sweep else []
    rows = [run_problem(torch, s, epochs, args.gates, args.seed, args.tol, sweep_tols)
            for s in specs]
    report = {
        "benchmark": "cvxnn gated program vs PyTorch Adam on the same gated network",
        "settings": {
            "epochs": epochs, "learning_rates": list(LEARNING_RATES), "gates_drawn": args.gates,
            "seed": args.seed, "cvxnn_tol": args.tol, "cvxnn_sweep_tols": sweep_tols,
            "record_every": RECORD_EVERY,
            "within": WITHIN, "dtype": "float64", "torch_threads": torch.get_num_threads(),
            "blas_threads_env": {v: os.environ.get(v) for v in
                                 ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")},
            "versions": {"cvxnn": getattr(cvxnn, "__version__", "?"), "torch": torch.__version__,
                         "numpy": np.__version__, "python": platform.python_version()},
            "cpu_count": os.cpu_count(),
            "load_average_at_start": load_start,
            "load_average_at_end": list(os.getloadavg()),
            "total_seconds": time.perf_counter() - t_start,
        },
        "n_problems": len(rows),
        "n_cvxnn_wins": sum(r["cvxnn_wins"] for r in rows),
        "problems": rows,
    }
    text = json.dumps(report, indent=1)
    print(text)
    print()
    print(table(rows))
    if out is not None:
        out.write_text(text + "\n")
        print(f"wrote {out}", file=sys.stderr)
    if png is not None and not args.no_plot:
        plot(rows, png)
        print(f"wrote {png}", file=sys.stderr)


if __name__ == "__main__":
    main()
