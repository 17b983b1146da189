"""The convex program beats (and certifies) non-convex training of the same gated network.

Claim (Pilanci & Ergen 2020; Mishkin, Sahiner & Pilanci 2022): the convex
reformulation of a two-layer (gated) ReLU network is solved to its global
optimum, with a duality-gap certificate, and reaches a training objective at
least as low as non-convex training of the same model by a local method (Adam).

Model and objective (both methods, evaluated with the same formula)
------------------------------------------------------------------
On each PMLB table, ``X`` is standardised (each column to mean 0, variance 1;
regression targets too) and ``P`` gates ``G`` (shape ``(d + 1, P)``) are drawn
once with :func:`cvxnn.patterns.sample_gates` (Gaussian, acting on
``xa = [x, 1]``; duplicates of one activation pattern dropped).  The model is the
*balanced gated network* with ``P`` hidden units, unit ``i`` gated by ``g_i``::

    f(x) = sum_i 1[xa^T g_i > 0] (xa^T w_i) v_i,        W: (P, d + 1), v: (P,)

    F(W, v) = L(f(X), y) + alpha / 2 * (||W||_F^2 + ||v||^2)

with cvxnn's loss convention: squared ``||f - y||^2 / (2n)`` (regression) or the
mean logistic loss ``mean log(1 + exp(-y f))`` with labels mapped to -1/+1
(binary tables).  The last entry of ``w_i`` is the bias; it is regularised.
``F`` is non-convex; its global minimum equals the optimum of the convex gated
group lasso ``L(sum_i D_i Xa u_i, y) + alpha sum_i ||u_i||_2`` (AM-GM rescaling),
which ``cvxnn.solve(X, y, alpha, formulation="gated", gates=G)`` solves and
certifies by a duality gap (over these P gates).

* cvxnn: ``cvxnn.solve(..., formulation="gated", gates=G, tol=--tol)``; its curve
  is the objective at each certificate evaluation (``callback``).
* Adam: PyTorch, float64, one thread, full batch, ``--epochs`` steps with each of
  ``--lrs`` from the same initialisation (PyTorch's ``nn.Linear`` default: uniform
  in +-1/sqrt(fan_in)), weight decay written into the loss (Adam with
  ``weight_decay=0``).  Each run keeps its best iterate (the objective is computed
  at every step anyway); the best learning rate is the one with the lowest
  objective.

Both final networks are evaluated by :meth:`cvxnn.GatedTwoLayerReLU.objective`
(the same float64 formula ``F``).  The certified lower bound is cvxnn's dual
bound ``LB = objective - gap``, so the true optimum ``p*`` lies in
``[LB, F_cvxnn]``; "Adam excess" is ``(F_adam - F_cvxnn) / F_cvxnn`` (a lower
bound on Adam's relative distance to ``p*``).  Timings are wall-clock on
whatever machine runs the example (Adam time is for the best learning rate's
run only; the tuning total is shown too; both methods run once on a tiny problem
first, so no timing includes imports or first-call set-up).

``--relu`` (optional, slow: about a minute more on the default tables) adds the
ReLU network: ``cvxnn.solve(X, y, alpha, formulation="relu")`` (default pattern
search from ``--n-gates`` sampled gates) against Adam on the plain network
``relu(X W1^T + b1) W2`` with ``max(--relu-width, cvxnn's neurons)`` units and the
same weight-decay objective, both evaluated by :meth:`cvxnn.TwoLayerReLU.objective`.
Its gap certifies optimality over the searched patterns only (the table says how
the search stopped and its estimated gap to all patterns).

Run::

    python examples/convex_vs_adam.py                 # ~30-60 s on 2 busy cores
    python examples/convex_vs_adam.py --relu          # ~2 minutes
    python examples/convex_vs_adam.py --datasets 560_bodyfat pima --epochs 3000

Data: the PMLB tables in ``../shared/data`` relative to the repository root
(``--data-dir`` to point elsewhere).  Writes ``examples/output/convex_vs_adam.png``
(objective minus the certified lower bound vs wall time).  Needs torch and
matplotlib.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning

import cvxnn
from cvxnn.patterns import sample_gates

DATA_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
OUTPUT_DIR = Path(__file__).resolve().parent / "output"
DEFAULT_DATASETS = ("230_machine_cpu", "heart_statlog", "wdbc")
DEFAULT_LRS = (1e-3, 1e-2, 1e-1)


# ----------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------

def data_loader(data_dir):
    """Return the ``load(name)`` function of ``data_dir/load.py``.

    Raises ``FileNotFoundError`` naming ``data_dir`` when it has no ``load.py``.
    """
    data_dir = Path(data_dir)
    path = data_dir / "load.py"
    if not path.is_file():
        raise FileNotFoundError(
            f"data directory {data_dir.resolve()} has no load.py: this example reads the "
            "shared benchmark data (../shared/data relative to the repository root); pass "
            "--data-dir PATH to point at it")
    spec = importlib.util.spec_from_file_location("cvxnn_example_shared_data_load", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load


def load_table(load, name):
    """Load a PMLB table, standardise it, and pick the loss.

    Returns ``(X (n, d), y (n,), loss)``: ``loss="squared"`` with ``y``
    standardised for regression tables, ``"logistic"`` with the stored labels for
    binary tables.  Multi-class tables raise ``ValueError``.
    """
    X, y = load(name)
    X = np.asarray(X, dtype=np.float64)
    sd = X.std(axis=0)
    X = (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    if np.issubdtype(np.asarray(y).dtype, np.floating):
        y = np.asarray(y, dtype=np.float64)
        return X, (y - y.mean()) / (y.std() or 1.0), "squared"
    n_classes = len(np.unique(y))
    if n_classes != 2:
        raise ValueError(f"dataset {name!r} has {n_classes} classes; this example needs a "
                         "regression table or a binary classification table")
    return X, np.asarray(y), "logistic"


# ----------------------------------------------------------------------------
# the two methods
# ----------------------------------------------------------------------------

def run_cvxnn(X, y, alpha, loss, tol, *, formulation="gated", G=None, n_gates=100,
              random_state=0):
    """Solve the convex program; return ``(result, seconds, curve)``.

    ``formulation="gated"`` solves on the given gates ``G`` (d + 1, P);
    ``"relu"`` runs cvxnn's default pattern search from ``n_gates`` sampled gates.
    ``curve`` is an array of ``(seconds, objective)`` at each certificate evaluation.
    """
    curve = []
    t0 = time.perf_counter()

    def record(info):     # wall time since the call (info.time restarts in a pattern search)
        curve.append((time.perf_counter() - t0, info.objective))

    if formulation == "gated":
        res = cvxnn.solve(X, y, alpha, formulation="gated", loss=loss, gates=G, tol=tol,
                          callback=record)
    else:
        with warnings.catch_warnings():
            # a search that stops above tol warns; its gap is reported in the table
            warnings.simplefilter("ignore", ConvergenceWarning)
            res = cvxnn.solve(X, y, alpha, formulation="relu", loss=loss, n_gates=n_gates,
                              tol=tol, random_state=random_state, callback=record)
    seconds = time.perf_counter() - t0
    return res, seconds, np.array(curve + [(seconds, res.objective)])


def run_adam(X, y, alpha, loss, lr, epochs, *, G=None, width=None, random_state=0,
             record_every=10):
    """Adam on the balanced gated network (``G`` given) or a plain ReLU network.

    Parameters
    ----------
    X : array (n, d)
    y : array (n,)
        Targets (squared loss) or labels already mapped to -1/+1 (logistic).
    G : array (d + 1, P), optional
        Gates: the model is ``f = ((Xa W^T) * 1[Xa G > 0]) v`` with ``m = P`` units.
    width : int, optional
        Without ``G``: the ReLU network ``f = relu(Xa W^T) v`` with ``m = width`` units.
    lr : float;  epochs : int

    The objective is ``L(f, y) + alpha/2 (||W||_F^2 + ||v||^2)`` (``W``'s last
    column is the bias), the same ``F`` as ``TwoLayerReLU.objective``.

    Returns
    -------
    dict with ``W`` (m, d + 1) and ``v`` (m,) at the best iterate (numpy), ``objective``
    (torch's value of F there), ``seconds`` and ``curve`` (array of (seconds, F)).
    """
    import torch

    torch.set_num_threads(1)
    n, d = X.shape
    m = G.shape[1] if G is not None else int(width)
    t0 = time.perf_counter()
    Xa = torch.tensor(np.hstack([X, np.ones((n, 1))]), dtype=torch.float64)
    D = None if G is None else (Xa @ torch.tensor(G, dtype=torch.float64) > 0).to(torch.float64)
    Y = torch.tensor(y, dtype=torch.float64)
    gen = torch.Generator().manual_seed(int(random_state))
    W = ((torch.rand(m, d + 1, generator=gen, dtype=torch.float64) * 2 - 1)
         / np.sqrt(d + 1)).requires_grad_()
    v = ((torch.rand(m, generator=gen, dtype=torch.float64) * 2 - 1) / np.sqrt(m)).requires_grad_()
    opt = torch.optim.Adam([W, v], lr=lr)
    best = (np.inf, None, None)
    curve = []
    for epoch in range(epochs + 1):
        opt.zero_grad()
        Z = Xa @ W.T
        f = (Z * D if D is not None else torch.relu(Z)) @ v
        if loss == "squared":
            data = (f - Y).square().sum() / (2 * n)
        else:
            data = torch.nn.functional.softplus(-Y * f).mean()
        F = data + alpha / 2 * (W.square().sum() + v.square().sum())
        value = float(F.detach())
        if not np.isfinite(value):
            break
        if value < best[0]:
            best = (value, W.detach().clone(), v.detach().clone())
        if epoch % record_every == 0 or epoch == epochs:
            curve.append((time.perf_counter() - t0, best[0]))
        if epoch == epochs:
            break
        F.backward()
        opt.step()
    return {"lr": lr, "objective": best[0], "W": best[1].numpy(), "v": best[2].numpy(),
            "seconds": time.perf_counter() - t0, "curve": np.array(curve)}


def warm_up(random_state=0):
    """Run both methods once on a tiny problem so that no timing includes imports or
    first-call set-up (torch's lazy initialisation takes seconds on a busy machine)."""
    rng = np.random.default_rng(random_state)
    X = rng.standard_normal((20, 3))
    y = X[:, 0]
    G = sample_gates(X, 5, random_state=random_state)
    run_cvxnn(X, y, 1e-2, "squared", 1e-6, G=G)
    run_adam(X, y, 1e-2, "squared", 1e-2, 2, G=G, random_state=random_state)


def adam_network(W, v, G, loss, classes):
    """cvxnn network of Adam's parameters ``W`` (m, d + 1), ``v`` (m,): a
    ``GatedTwoLayerReLU`` with gates ``G`` (d + 1, m), or a ``TwoLayerReLU`` when
    ``G`` is None."""
    d = W.shape[1] - 1
    if G is None:
        return cvxnn.TwoLayerReLU(W[:, :d], W[:, d], v, loss=loss, classes=classes)
    return cvxnn.GatedTwoLayerReLU(W[:, :d], W[:, d], v, G.T, loss=loss, classes=classes)


def compare(X, y, loss, alpha, *, formulation="gated", n_gates, lrs, epochs, tol,
            random_state, width=100):
    """Run both methods on one table; return ``(figures, cvxnn curve, Adam curves)``.

    ``formulation="gated"``: the same gates for both.  ``"relu"``: cvxnn's relu
    program (pattern search) against Adam on a ReLU network of
    ``max(width, cvxnn's neurons)`` units.
    """
    if formulation == "gated":
        G = sample_gates(X, n_gates, bias=True, random_state=random_state)
        res, cvx_seconds, cvx_curve = run_cvxnn(X, y, alpha, loss, tol, G=G)
        m = G.shape[1]
    else:
        G = None
        res, cvx_seconds, cvx_curve = run_cvxnn(X, y, alpha, loss, tol, formulation="relu",
                                                n_gates=n_gates, random_state=random_state)
        m = max(int(width), res.network.n_neurons)
    y_pm = y if loss == "squared" else np.where(y == res.classes[1], 1.0, -1.0)
    runs = [run_adam(X, y_pm, alpha, loss, lr, epochs, G=G, width=m, random_state=random_state)
            for lr in lrs]
    best = min(runs, key=lambda r: r["objective"])
    F_adam = adam_network(best["W"], best["v"], G, loss, res.classes).objective(X, y, alpha)
    F_cvx = res.network.objective(X, y, alpha)
    LB = res.dual_bound
    row = {
        "formulation": formulation, "n": X.shape[0], "d": X.shape[1], "P": res.gates.shape[1],
        "adam_width": m, "loss": loss, "alpha": alpha,
        "cvxnn_objective": F_cvx,
        "cvxnn_relative_gap": res.relative_gap,
        "certified_lower_bound": LB,
        "certified_over": res.certified_over,
        "cvxnn_seconds": cvx_seconds,
        "cvxnn_active_neurons": res.network.n_neurons,
        "adam_best_lr": best["lr"],
        "adam_objective": F_adam,
        "adam_objective_torch": best["objective"],
        "adam_excess": (F_adam - F_cvx) / F_cvx,
        "adam_excess_over_bound": (F_adam - LB) / LB,
        "adam_seconds": best["seconds"],
        "adam_seconds_all_lrs": sum(r["seconds"] for r in runs),
        "adam_objective_per_lr": {r["lr"]: r["objective"] for r in runs},
    }
    if res.search is not None:
        row["search_bound_all_patterns"] = res.search.get("lower_bound")
        row["search_exact"] = bool(res.search.get("exact"))
    return row, cvx_curve, [(r["lr"], r["curve"]) for r in runs]


# ----------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------

def print_table(rows, formulation="gated"):
    """Print one row per dataset (figures from :func:`compare`)."""
    head = (f"{'dataset':<16} {'n':>5} {'d':>3} {'P':>4} {'m':>4} {'loss':<8} {'cvxnn F':>12} "
            f"{'rel. gap':>8} {'time':>6} {'Adam F':>12} {'best lr':>7} {'time':>6} "
            f"{'all lrs':>7} {'Adam excess':>11}")
    title = ("gated network, same gates" if formulation == "gated"
             else "ReLU network (cvxnn: relu program with pattern search)")
    print(f"\n{title}, alpha = {next(iter(rows.values()))['alpha']:g}")
    print(head)
    print("-" * len(head))
    for name, r in rows.items():
        print(f"{name:<16} {r['n']:>5} {r['d']:>3} {r['P']:>4} {r['adam_width']:>4} "
              f"{r['loss']:<8} {r['cvxnn_objective']:>12.8f} {r['cvxnn_relative_gap']:>8.1e} "
              f"{r['cvxnn_seconds']:>5.1f}s {r['adam_objective']:>12.8f} {r['adam_best_lr']:>7g} "
              f"{r['adam_seconds']:>5.1f}s {r['adam_seconds_all_lrs']:>6.1f}s "
              f"{r['adam_excess']:>11.2e}")
    print("F: training objective L + alpha/2 (||W1||^2 + ||b1||^2 + ||W2||^2) of the network, "
          "evaluated by cvxnn's\n   network.objective for both methods.  P: patterns in "
          "cvxnn's program; m: Adam's hidden units.\nrel. gap: cvxnn's relative duality gap: "
          + ("the optimum over the P gates lies in [F (1 - gap), F]" if formulation == "gated"
             else "over the searched patterns only (see below)")
          + ".\nAdam excess: (F_adam - F_cvxnn) / F_cvxnn.")
    if formulation == "relu":
        for name, r in rows.items():
            print(f"  {name}: gap certified over {r['certified_over']}")


def plot(curves, rows, path):
    """Objective minus the lower bound vs wall time; one panel per (formulation, dataset)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(curves)
    cols = max(sum(1 for k in keys if k[0] == f) for f in ("gated", "relu"))
    forms = [f for f in ("gated", "relu") if any(k[0] == f for k in keys)]
    fig, axes = plt.subplots(len(forms), cols, figsize=(4.6 * cols, 3.8 * len(forms)),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, form in enumerate(forms):
        for ax, key in zip(axes[r], [k for k in keys if k[0] == form]):
            ax.axis("on")
            row = rows[key]
            cvx_curve, adam_curves = curves[key]
            # the relu bound is over the searched patterns: never plot below the best seen
            ref = min([row["certified_lower_bound"], row["adam_objective"]]
                      + [float(c[:, 1].min()) for _, c in adam_curves if len(c)])
            floor = max(abs(ref), 1e-300) * 1e-12
            for lr, c in adam_curves:
                if len(c):
                    ax.semilogy(c[:, 0], np.maximum(c[:, 1] - ref, floor), label=f"Adam lr={lr:g}")
            ax.semilogy(cvx_curve[:, 0], np.maximum(cvx_curve[:, 1] - ref, floor), "k.-", lw=2,
                        label=f"cvxnn ({form} program)")
            ax.set_title(f"{key[1]}: {form}, {row['loss']}, alpha={row['alpha']:g}", fontsize=9)
            ax.set_xlabel("wall time (s)")
            ax.set_ylabel("objective - lower bound")
            ax.set_xscale("symlog", linthresh=0.1)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle("same network, same objective: convex program vs Adam", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=DATA_DIR,
                   help="folder with the shared data (load.py)")
    p.add_argument("--datasets", nargs="+", default=list(DEFAULT_DATASETS),
                   help="PMLB tables (regression or binary classification)")
    p.add_argument("--alpha", type=float, default=1e-3, help="weight decay")
    p.add_argument("--n-gates", type=int, default=100, help="gates drawn (P <= n_gates)")
    p.add_argument("--epochs", type=int, default=2000, help="Adam steps per learning rate")
    p.add_argument("--lrs", type=float, nargs="+", default=list(DEFAULT_LRS),
                   help="Adam learning rates tried")
    p.add_argument("--tol", type=float, default=1e-6, help="cvxnn target relative gap")
    p.add_argument("--n-samples", type=int, default=None,
                   help="use a random subset of this many rows per table")
    p.add_argument("--relu", action="store_true",
                   help="also compare the relu program (pattern search; slow) with Adam on "
                        "a plain ReLU network")
    p.add_argument("--relu-width", type=int, default=100,
                   help="Adam's ReLU width (at least cvxnn's neuron count)")
    p.add_argument("--random-state", type=int, default=0)
    p.add_argument("--output-dir", type=Path, default=OUTPUT_DIR)
    return p.parse_args(argv)


def main(argv=None):
    """Run the comparison and print it.

    Returns
    -------
    dict
        ``{"rows": {dataset: figures}, "relu_rows": {dataset: figures} (with
        --relu, else {}), "png": path}``; figures as returned by :func:`compare`.
    """
    args = parse_args(argv)
    load = data_loader(args.data_dir)
    rng = np.random.default_rng(args.random_state)
    rows, curves = {}, {}
    forms = ("gated", "relu") if args.relu else ("gated",)
    warm_up(args.random_state)
    for name in args.datasets:
        X, y, loss = load_table(load, name)
        if args.n_samples is not None and args.n_samples < X.shape[0]:
            keep = np.sort(rng.choice(X.shape[0], args.n_samples, replace=False))
            X, y = X[keep], y[keep]
        for form in forms:
            rows[form, name], cvx_curve, adam_curves = compare(
                X, y, loss, args.alpha, formulation=form, n_gates=args.n_gates, lrs=args.lrs,
                epochs=args.epochs, tol=args.tol, random_state=args.random_state,
                width=args.relu_width)
            curves[form, name] = (cvx_curve, adam_curves)
    out = {"rows": {k[1]: r for k, r in rows.items() if k[0] == "gated"},
           "relu_rows": {k[1]: r for k, r in rows.items() if k[0] == "relu"}}
    print_table(out["rows"], "gated")
    if out["relu_rows"]:
        print_table(out["relu_rows"], "relu")
    out["png"] = args.output_dir / "convex_vs_adam.png"
    plot(curves, rows, out["png"])
    print(f"wrote {out['png']}")
    return out


if __name__ == "__main__":
    main()
