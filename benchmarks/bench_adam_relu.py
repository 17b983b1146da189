"""cvxnn's default ReLU network vs a plain Adam-trained ReLU network (weight-decay objective).

Question measured: is the network that ``cvxnn.solve(X, y, alpha,
formulation="relu", loss=loss, random_state=0)`` returns *by default* at least
as good, in the weight-decay training objective, as a two-layer ReLU network of
the same or larger width trained by full-batch Adam?  Only the public API of
cvxnn is called on the cvxnn side (default solver, default patterns, default
tolerance), so the script measures whatever the default currently is.

The network (cvxnn's :class:`cvxnn.TwoLayerReLU`, with bias)::

    f(X) = relu(X W1^T + b1) W2,    W1: (m, d), b1: (m,), W2: (m, c), no output bias,

    F = L(f(X), Y) + alpha / 2 * (||W1||_F^2 + ||b1||^2 + ||W2||_F^2)

(the first-layer bias is regularised), with ``L = ||Z - Y||_F^2 / (2n)`` for
``loss="squared"`` and ``L = mean log(1 + exp(-y z))`` for ``loss="logistic"``.
Targets: regression targets are standardised (zero mean, unit variance);
binary labels are passed to both methods as -1 / +1 floats (the second sorted
class is +1), which is exactly the encoding :func:`cvxnn._data.encode_targets`
uses for two classes under the squared and the logistic loss.  Features are
standardised (zero mean, unit variance; constant columns become 0).

Every objective reported is computed by cvxnn's own code:
``TwoLayerReLU.objective(X, y, alpha)``.  For cvxnn that is
``res.network.objective(X, y, alpha)`` (checked equal to ``res.objective``);
for Adam it is the final weights loaded into ``cvxnn.TwoLayerReLU(W1, b1, W2)``,
checked equal (to 1e-10 relative, an assertion) to the objective that the
torch code computes for the same weights.

Adam: PyTorch, float64, ``torch.set_num_threads(1)``, full batch, 2000 epochs
(300 with ``--quick``), learning rates 1e-3, 1e-2, 1e-1, standard
``torch.nn.Linear`` initialisation (``Linear(d, m)`` gives ``W1`` and ``b1``,
``Linear(m, c, bias=False)`` gives ``W2^T``) after ``torch.manual_seed(seed)``
(seed 0, the same for every learning rate), weight decay as the explicit
penalty term of the loss (``torch.optim.Adam(weight_decay=0)``).  Widths
``m = 200`` (the comparison) and ``m = 50`` (extra).  For each run the script
keeps the objective of the final weights and the lowest objective seen along
the run (the objective at every iterate before its step, and the final one);
the best learning rate is the one with the lowest *final* objective, and the
comparison uses that final objective.  Wall time of a run covers building the
tensors, the initialisation, the 2000 steps and the final evaluation (not the
conversion to a cvxnn network).  Adam results are cached in the JSON file,
keyed by problem, width, learning rate, epochs and seed, and are re-used when
the data fingerprint matches; ``--cvxnn-only`` re-runs only the cvxnn side.

cvxnn: ``cvxnn.solve(X, y, alpha, formulation="relu", loss=loss,
random_state=0, **cvxnn_kwargs)`` (``--cvxnn-kwargs`` JSON, default ``{}``),
wall time measured around the call.  Recorded: objective, relative gap,
``certified_over``, ``n_active``, number of patterns ``P`` (columns of
``res.gates``), the returned network's width, warnings, and every other
JSON-able attribute of the result (so fields added later, e.g. ``res.search``
of a pattern search, are recorded too), plus the provenance of the cvxnn code
that ran (git commit, modified files under ``src/cvxnn``, ``solve``'s default
arguments), because the default changes over time.  Re-running the cvxnn side
replaces the cvxnn part of each selected row; the Adam cache is kept.

"cvxnn <= Adam" means: objective of cvxnn's network <= the final objective of
the best Adam run at width 200.  (The cvxnn network has ``n_active <= 2P``
units, 200 with the default 100 patterns.)

Output: ``benchmarks/bench_adam_relu.json`` (settings, the Adam cache, one
record per problem), then a table on stdout.

Run (2-core machine, one BLAS thread, one process at a time)::

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/bench_adam_relu.py
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/bench_adam_relu.py --cvxnn-only
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/bench_adam_relu.py \\
        --cvxnn-only --cvxnn-kwargs '{"patterns": "search"}'
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/bench_adam_relu.py --quick

Options: ``--only pima,wdbc`` (substrings of problem names), ``--widths 200``,
``--adam-only``, ``--refresh-adam`` (ignore the cache), ``--table`` (print the
table of the JSON file and exit), ``--out PATH`` (JSON written there instead),
``--cache PATH`` (also read cached Adam runs from PATH, e.g. ``--out
/tmp/x.json --cache benchmarks/bench_adam_relu.json`` to try cvxnn options
without touching the committed file).  Needs torch (2.13.0 was used).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import cvxnn  # noqa: E402
from cvxnn import TwoLayerReLU  # noqa: E402

SHARED_DATA = "/work/shared/data"
HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "bench_adam_relu.json"
LEARNING_RATES = (1e-3, 1e-2, 1e-1)
WIDTHS = (200, 50)
COMPARE_WIDTH = 200
CHECK_RTOL = 1e-10

# name, table, loss, alpha, task ("regression" or "binary")
PROBLEMS = [
    ("1028_SWD/squared/1e-3", "1028_SWD", "squared", 1e-3, "regression"),
    ("1028_SWD/squared/1e-2", "1028_SWD", "squared", 1e-2, "regression"),
    ("529_pollen/squared/1e-3", "529_pollen", "squared", 1e-3, "regression"),
    ("560_bodyfat/squared/1e-3", "560_bodyfat", "squared", 1e-3, "regression"),
    ("560_bodyfat/squared/1e-4", "560_bodyfat", "squared", 1e-4, "regression"),
    ("522_pm10/squared/1e-3", "522_pm10", "squared", 1e-3, "regression"),
    ("230_machine_cpu/squared/1e-3", "230_machine_cpu", "squared", 1e-3, "regression"),
    ("pima/logistic/1e-3", "pima", "logistic", 1e-3, "binary"),
    ("pima/squared/1e-3", "pima", "squared", 1e-3, "binary"),
    ("pima/logistic/1e-4", "pima", "logistic", 1e-4, "binary"),
    ("australian/logistic/1e-3", "australian", "logistic", 1e-3, "binary"),
    ("australian/squared/1e-2", "australian", "squared", 1e-2, "binary"),
    ("wdbc/logistic/1e-3", "wdbc", "logistic", 1e-3, "binary"),
    ("wdbc/squared/1e-4", "wdbc", "squared", 1e-4, "binary"),
    ("breast_w/squared/1e-3", "breast_w", "squared", 1e-3, "binary"),
    ("tic_tac_toe/logistic/1e-3", "tic_tac_toe", "logistic", 1e-3, "binary"),
    ("tic_tac_toe/squared/1e-2", "tic_tac_toe", "squared", 1e-2, "binary"),
    ("kr_vs_kp/logistic/1e-3", "kr_vs_kp", "logistic", 1e-3, "binary"),
]
QUICK = ["560_bodyfat/squared/1e-3", "pima/logistic/1e-3"]

#: attributes of cvxnn's result that may appear with the pattern search
SEARCH_ATTRS = ("search", "search_history", "search_rounds", "n_search_rounds", "patterns",
                "n_patterns", "pattern_source", "search_time", "initial_objective")


# ----------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------

def _standardise(a):
    a = np.asarray(a, dtype=np.float64)
    sd = a.std(axis=0)
    sd = np.where(sd == 0, 1.0, sd)          # constant columns: (a - mean) = 0 stays 0
    return (a - a.mean(axis=0)) / sd


def load_data(table, task):
    """Standardised ``X``; standardised regression targets or -1/+1 labels (float)."""
    if SHARED_DATA not in sys.path:
        sys.path.insert(0, SHARED_DATA)
    from load import load

    X, y = load(table)
    X = _standardise(X)
    y = np.asarray(y)
    if task == "regression":
        y = _standardise(y.astype(np.float64))
    else:
        classes = np.unique(y)
        if len(classes) != 2:
            raise ValueError(f"{table}: expected 2 classes, got {classes.tolist()}")
        y = np.where(y == classes[1], 1.0, -1.0)
    return np.ascontiguousarray(X), y


def encode(y, task):
    """Target matrix ``Y`` (n, 1) and the classes, as cvxnn encodes our ``y``.

    ``y`` is already standardised (regression) or -1/+1 (binary), which
    cvxnn's encoding (``cvxnn._data.encode_targets``) maps to itself for both
    losses; the assertion on the Adam objective checks this on every run.
    """
    classes = np.array([-1.0, 1.0]) if task == "binary" else None
    return np.asarray(y, dtype=np.float64)[:, None], classes


def fingerprint(X, y):
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(X).tobytes())
    h.update(np.ascontiguousarray(y).tobytes())
    return h.hexdigest()[:16]


def _finite(v):
    """JSON-safe float (None for NaN/inf)."""
    v = float(v)
    return v if math.isfinite(v) else None


# ----------------------------------------------------------------------------
# Adam
# ----------------------------------------------------------------------------

def run_adam(torch, X, Y, loss, alpha, m, lr, epochs, seed):
    """One full-batch Adam run; returns (record, final numpy weights or None)."""
    t0 = time.perf_counter()
    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float64))
    Yt = torch.from_numpy(np.ascontiguousarray(Y, dtype=np.float64))
    n, d = Xt.shape
    c = Yt.shape[1]
    torch.manual_seed(seed)
    first = torch.nn.Linear(d, m, dtype=torch.float64)                  # U(+-1/sqrt(d))
    second = torch.nn.Linear(m, c, bias=False, dtype=torch.float64)     # U(+-1/sqrt(m))
    W1 = first.weight.detach().clone().requires_grad_(True)             # (m, d)
    b1 = first.bias.detach().clone().requires_grad_(True)               # (m,)
    W2 = second.weight.detach().T.contiguous().requires_grad_(True)     # (m, c)
    y1 = Yt[:, 0]

    def objective():
        Z = torch.relu(Xt @ W1.T + b1) @ W2
        if loss == "squared":
            data = ((Z - Yt) ** 2).sum() / (2.0 * n)
        else:
            data = -torch.nn.functional.logsigmoid(y1 * Z[:, 0]).mean()
        pen = 0.5 * alpha * ((W1 * W1).sum() + (b1 * b1).sum() + (W2 * W2).sum())
        return data + pen

    opt = torch.optim.Adam([W1, b1, W2], lr=lr, weight_decay=0.0)
    best, best_iter = math.inf, None
    first_obj = None
    diverged = False
    for it in range(epochs):
        opt.zero_grad(set_to_none=True)
        obj = objective()
        val = obj.item()
        if first_obj is None:
            first_obj = val
        if not math.isfinite(val):
            diverged = True
            break
        if val < best:
            best, best_iter = val, it
        obj.backward()
        opt.step()
    with torch.no_grad():
        final = objective().item() if not diverged else math.nan
    seconds = time.perf_counter() - t0
    if math.isfinite(final) and final < best:
        best, best_iter = final, epochs
    diverged = diverged or not math.isfinite(final)
    rec = {"m": m, "lr": lr, "epochs": epochs, "seed": seed, "seconds": seconds,
           "initial_objective": _finite(first_obj), "final_objective_torch": _finite(final),
           "best_seen_objective": _finite(best), "best_seen_iter": best_iter,
           "diverged": diverged}
    weights = None
    if not diverged:
        weights = (W1.detach().numpy().copy(), b1.detach().numpy().copy(),
                   W2.detach().numpy().copy())
    return rec, weights


def adam_network_objective(weights, X, y, alpha, loss, classes):
    W1, b1, W2 = weights
    net = TwoLayerReLU(W1, b1, W2, classes=classes, loss=loss)
    return float(net.objective(X, y, alpha))


def warm_up(torch):
    """Untimed tiny runs (lazy imports, first-call allocations)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    y = np.where(X[:, 0] + 0.3 * rng.standard_normal(60) > 0, 1.0, -1.0)
    for loss in ("squared", "logistic"):
        Y, _ = encode(y, "binary")
        run_adam(torch, X, Y, loss, 1e-3, 20, 1e-2, 20, 0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cvxnn.solve(X, y, 1e-3, formulation="relu", loss=loss, random_state=0, n_gates=5)


def cache_key(name, m, lr, epochs, seed):
    return f"{name}|m={m}|lr={lr:g}|epochs={epochs}|seed={seed}"


def adam_side(torch, spec, X, y, widths, epochs, seed, cache, fp, refresh, save):
    """Fill ``cache`` with the Adam runs of one problem (skipping valid cached ones)."""
    name, table, loss, alpha, task = spec
    Y, classes = encode(y, task)
    spent = 0.0
    for m in widths:
        for lr in LEARNING_RATES:
            key = cache_key(name, m, lr, epochs, seed)
            old = cache.get(key)
            if old is not None and old.get("data_fingerprint") == fp and not refresh:
                continue
            rec, weights = run_adam(torch, X, Y, loss, alpha, m, lr, epochs, seed)
            rec["data_fingerprint"] = fp
            if weights is not None:
                net_obj = adam_network_objective(weights, X, y, alpha, loss, classes)
                t_obj = rec["final_objective_torch"]
                rel = abs(net_obj - t_obj) / abs(net_obj)
                rec["final_objective"] = net_obj        # cvxnn's TwoLayerReLU.objective
                rec["rel_diff_torch_vs_network"] = rel
                assert rel <= CHECK_RTOL, (
                    f"{key}: torch objective {t_obj!r} != TwoLayerReLU.objective {net_obj!r} "
                    f"(rel. diff {rel:.2e})")
            else:
                rec["final_objective"] = None
                rec["rel_diff_torch_vs_network"] = None
            cache[key] = rec
            spent += rec["seconds"]
            print(f"#   adam m={m} lr={lr:g} {rec['seconds']:.2f}s final {rec['final_objective']} "
                  f"best seen {rec['best_seen_objective']}", file=sys.stderr, flush=True)
            save()
    return spent


def adam_summary(name, cache, widths, epochs, seed):
    """Per width: the best learning rate (lowest final objective) and all runs; None if missing."""
    out = {}
    for m in widths:
        runs = [cache.get(cache_key(name, m, lr, epochs, seed)) for lr in LEARNING_RATES]
        if any(r is None for r in runs):
            out[str(m)] = None
            continue
        ok = [r for r in runs if r["final_objective"] is not None]
        best = min(ok, key=lambda r: r["final_objective"]) if ok else None
        out[str(m)] = {
            "best_lr": None if best is None else best["lr"],
            "objective": None if best is None else best["final_objective"],
            "seconds": None if best is None else best["seconds"],
            "seconds_all_lrs": float(sum(r["seconds"] for r in runs)),
            "best_seen_objective": min((r["best_seen_objective"] for r in runs
                                        if r["best_seen_objective"] is not None), default=None),
            "runs": [{k: r[k] for k in ("lr", "final_objective", "best_seen_objective",
                                        "best_seen_iter", "seconds", "diverged")} for r in runs],
        }
    return out


# ----------------------------------------------------------------------------
# cvxnn
# ----------------------------------------------------------------------------

def _jsonable(v):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return _finite(v)
    if isinstance(v, str) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_leaf(_jsonable(x), x) for x in v]
    if isinstance(v, dict):
        return {str(k): _leaf(_jsonable(x), x) for k, x in v.items()}
    if isinstance(v, np.ndarray) and v.size <= 1000:
        return _jsonable(v.tolist())
    return _SKIP


def _leaf(j, x):
    """Inside a container: a placeholder string for what JSON cannot hold (large arrays...)."""
    if j is not _SKIP:
        return j
    shape = getattr(x, "shape", None)
    return f"<{type(x).__name__}{'' if shape is None else ' shape ' + str(tuple(shape))}>"


_SKIP = object()
_KNOWN = {"network", "objective", "gap", "relative_gap", "n_iter", "time", "converged",
          "weights", "gates", "classes", "n_active", "formulation", "loss", "alpha", "bias",
          "solver", "certified_over", "constraint_violation", "dual_bound", "history"}


def cvxnn_provenance():
    """Which cvxnn code ran: git commit, modified files under src/cvxnn, solve's defaults."""
    import inspect
    import subprocess

    src = Path(cvxnn.__file__).resolve().parent
    info = {"cvxnn_file": str(src)}
    try:
        info["git_head"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=src,
                                          capture_output=True, text=True).stdout.strip()
        info["git_status_src"] = subprocess.run(
            ["git", "status", "--porcelain", "--", "."], cwd=src, capture_output=True,
            text=True).stdout.split("\n")[:-1]
    except OSError:
        pass
    info["solve_defaults"] = {
        k: repr(p.default) for k, p in inspect.signature(cvxnn.solve).parameters.items()
        if p.default is not inspect.Parameter.empty}
    return info


def cvxnn_side(spec, X, y, cvxnn_kwargs):
    name, table, loss, alpha, task = spec
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        res = cvxnn.solve(X, y, alpha, formulation="relu", loss=loss, random_state=0,
                          **cvxnn_kwargs)
        seconds = time.perf_counter() - t0
    net_obj = float(res.network.objective(X, y, alpha))
    p = float(res.objective)
    rel = abs(net_obj - p) / abs(net_obj)
    out = {
        "seconds": seconds,
        "objective": net_obj,                        # res.network.objective(X, y, alpha)
        "res_objective": p,
        "rel_diff_network_vs_res": rel,
        "objective_check_ok": bool(rel <= 1e-9),
        "relative_gap": _finite(res.relative_gap),
        "certified_over": res.certified_over,
        "n_active": int(res.n_active),
        "network_width": int(res.network.n_neurons),
        "n_patterns": int(np.asarray(res.gates).shape[1]) if getattr(res, "gates", None) is not None else None,
        "converged": bool(res.converged),
        "n_iter": int(res.n_iter),
        "solver": res.solver,
        "constraint_violation": _finite(res.constraint_violation),
        "dual_bound": _finite(res.dual_bound),
        "warnings": [str(w.message) for w in caught],
    }
    extra = {}
    names = [f.name for f in dataclasses.fields(res)] if dataclasses.is_dataclass(res) else []
    names += [k for k in getattr(res, "__dict__", {}) if k not in names]
    names += [k for k in SEARCH_ATTRS if k not in names]
    for k in names:
        if k in _KNOWN or k.startswith("_"):
            continue
        v = _jsonable(getattr(res, k, None))
        if v is not _SKIP:
            extra[k] = v
    out["extra_attributes"] = extra
    if not out["objective_check_ok"]:
        print(f"# WARNING {name}: res.objective {p!r} != res.network.objective {net_obj!r} "
              f"(rel. diff {rel:.2e})", file=sys.stderr, flush=True)
    return out


# ----------------------------------------------------------------------------
# output
# ----------------------------------------------------------------------------

def _f(v, fmt):
    return "-" if v is None else format(v, fmt)


def table(rows):
    hdr = (f"{'problem':30s} {'n':>5s} {'d':>3s} {'loss':>8s} {'alpha':>6s} | "
           f"{'cvxnn obj':>12s} {'cvxnn s':>8s} {'rel.gap':>8s} {'act':>4s} {'P':>5s} | "
           f"{'Adam200 obj':>12s} {'lr':>5s} {'Adam s':>7s} {'Adam50 obj':>12s} | "
           f"{'cvx/Adam':>9s} {'cvxnn<=Adam':>11s}")
    lines = [hdr, "-" * len(hdr)]
    n_yes = n_cmp = 0
    for r in rows:
        cv = r.get("cvxnn")
        a200 = r["adam"].get(str(COMPARE_WIDTH))
        a50 = r["adam"].get("50")
        cobj = cv["objective"] if cv else None
        aobj = a200["objective"] if a200 else None
        ratio = cobj / aobj if (cobj is not None and aobj) else None
        if ratio is not None:
            n_cmp += 1
            n_yes += bool(r["cvxnn_le_adam"])
        verdict = "-" if ratio is None else ("yes" if r["cvxnn_le_adam"] else "NO")
        if cv and not cv["objective_check_ok"]:
            verdict += " (obj check FAILED)"
        lines.append(
            f"{r['problem']:30s} {r['n']:5d} {r['d']:3d} {r['loss']:>8s} {r['alpha']:6.0e} | "
            f"{_f(cobj, '12.6g')} {_f(cv['seconds'] if cv else None, '8.2f')} "
            f"{_f(cv['relative_gap'] if cv else None, '8.1e')} "
            f"{_f(cv['n_active'] if cv else None, '4d')} "
            f"{_f(cv['n_patterns'] if cv else None, '5d')} | "
            f"{_f(aobj, '12.6g')} {_f(a200['best_lr'] if a200 else None, '5.0e')} "
            f"{_f(a200['seconds'] if a200 else None, '7.2f')} "
            f"{_f(a50['objective'] if a50 else None, '12.6g')} | "
            f"{_f(ratio, '9.4f')} {verdict:>11s}")
    lines.append(f"cvxnn <= Adam (width {COMPARE_WIDTH}, best of {len(LEARNING_RATES)} lrs, "
                 f"final weights) on {n_yes} of {n_cmp} problems")
    return "\n".join(lines)


def make_row(spec, n, d, fp, adam, cv):
    name, table_name, loss, alpha, task = spec
    a = adam.get(str(COMPARE_WIDTH))
    le = None
    if cv is not None and a is not None and a["objective"] is not None:
        le = bool(cv["objective"] <= a["objective"])
    return {"problem": name, "table": table_name, "loss": loss, "alpha": alpha, "task": task,
            "n": n, "d": d, "data_fingerprint": fp, "cvxnn": cv, "adam": adam,
            "ratio_cvxnn_over_adam": (cv["objective"] / a["objective"]
                                      if le is not None else None),
            "cvxnn_le_adam": le}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 2 problems, 300 Adam epochs, no JSON unless --out")
    ap.add_argument("--epochs", type=int, default=None, help="Adam epochs (default 2000)")
    ap.add_argument("--widths", default=",".join(map(str, WIDTHS)),
                    help="Adam widths, comma-separated (default 200,50; 200 is compared)")
    ap.add_argument("--seed", type=int, default=0, help="torch seed of the initialisation")
    ap.add_argument("--only", default=None,
                    help="comma-separated substrings selecting problems by name")
    ap.add_argument("--out", default=None, help=f"JSON path (default {DEFAULT_OUT.name})")
    ap.add_argument("--cvxnn-only", action="store_true",
                    help="re-use the cached Adam results, run only cvxnn")
    ap.add_argument("--adam-only", action="store_true", help="run only the Adam side")
    ap.add_argument("--refresh-adam", action="store_true", help="ignore cached Adam runs")
    ap.add_argument("--cvxnn-kwargs", default="{}",
                    help='JSON dict of extra keyword arguments for cvxnn.solve, '
                         'e.g. \'{"patterns": "search"}\'')
    ap.add_argument("--cache", default=None,
                    help="also read cached Adam runs from this JSON (e.g. to write --out elsewhere)")
    ap.add_argument("--table", action="store_true", help="print the table of the JSON and exit")
    args = ap.parse_args(argv)
    cvxnn_kwargs = json.loads(args.cvxnn_kwargs)
    if not isinstance(cvxnn_kwargs, dict):
        ap.error("--cvxnn-kwargs must be a JSON object")

    out = Path(args.out) if args.out else (None if args.quick else DEFAULT_OUT)
    report = {}
    if out is not None and out.exists():
        report = json.loads(out.read_text())
    if args.cache:                      # Adam runs from another file (e.g. the default JSON)
        report["adam_cache"] = {**json.loads(Path(args.cache).read_text()).get("adam_cache", {}),
                                **report.get("adam_cache", {})}
    if args.table:
        print(table(report.get("problems", [])))
        return 0

    epochs = args.epochs or (300 if args.quick else 2000)
    widths = [int(w) for w in args.widths.split(",") if w.strip()]
    specs = [s for s in PROBLEMS if s[0] in QUICK] if args.quick else list(PROBLEMS)
    if args.only:
        keys = [s.strip() for s in args.only.split(",") if s.strip()]
        specs = [s for s in specs if any(k in s[0] for k in keys)]
    cache = report.get("adam_cache", {})
    rows = {r["problem"]: r for r in report.get("problems", [])}

    import torch

    torch.set_num_threads(1)
    settings = {
        "epochs": epochs, "learning_rates": list(LEARNING_RATES), "widths": widths,
        "compare_width": COMPARE_WIDTH, "seed": args.seed, "dtype": "float64",
        "torch_threads": torch.get_num_threads(),
        "cvxnn_call": "cvxnn.solve(X, y, alpha, formulation='relu', loss=loss, random_state=0, "
                      "**cvxnn_kwargs)",
        "cvxnn_kwargs": cvxnn_kwargs,
        "blas_threads_env": {v: os.environ.get(v) for v in
                             ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        "versions": {"cvxnn": getattr(cvxnn, "__version__", "?"), "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "cpu_count": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
    }

    def save():
        if out is None:
            return
        report["benchmark"] = ("cvxnn.solve(formulation='relu') default network vs "
                               "full-batch Adam on the same ReLU network class")
        report["settings"] = settings
        report["adam_cache"] = cache
        report["problems"] = [rows[s[0]] for s in PROBLEMS if s[0] in rows]
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
        tmp.replace(out)

    warm_up(torch)
    t_start = time.perf_counter()
    data = {}
    for s in specs:
        X, y = load_data(s[1], s[4])
        data[s[0]] = (X, y, fingerprint(X, y))

    # Adam side first (sequential, one process), cached after every run
    adam_seconds = 0.0
    if not args.cvxnn_only:
        for m in widths:                      # width 200 for every problem first
            for s in specs:
                X, y, fp = data[s[0]]
                print(f"# {s[0]}: n={X.shape[0]} d={X.shape[1]} adam width {m}",
                      file=sys.stderr, flush=True)
                adam_seconds += adam_side(torch, s, X, y, [m], epochs, args.seed, cache, fp,
                                          args.refresh_adam, save)
    else:
        for s in specs:
            X, y, fp = data[s[0]]
            for m in widths:
                for lr in LEARNING_RATES:
                    r = cache.get(cache_key(s[0], m, lr, epochs, args.seed))
                    if r is None or r.get("data_fingerprint") != fp:
                        raise SystemExit(f"--cvxnn-only: no cached Adam run for {s[0]} m={m} "
                                         f"lr={lr:g} epochs={epochs}; run without --cvxnn-only")

    failed = []
    provenance = None if args.adam_only else cvxnn_provenance()
    settings["cvxnn_provenance"] = provenance
    for s in specs:
        X, y, fp = data[s[0]]
        adam = adam_summary(s[0], cache, widths, epochs, args.seed)
        cv = rows.get(s[0], {}).get("cvxnn")
        if not args.adam_only:
            print(f"# {s[0]}: cvxnn", file=sys.stderr, flush=True)
            cv = cvxnn_side(s, X, y, cvxnn_kwargs)
            cv["kwargs"] = cvxnn_kwargs
            cv["provenance"] = provenance
            print(f"#   cvxnn {cv['seconds']:.2f}s objective {cv['objective']:.10g} "
                  f"rel.gap {cv['relative_gap']} n_active {cv['n_active']}",
                  file=sys.stderr, flush=True)
            if not cv["objective_check_ok"]:
                failed.append(s[0])
        rows[s[0]] = make_row(s, X.shape[0], X.shape[1], fp, adam, cv)
        save()

    settings["load_average_at_end"] = list(os.getloadavg())
    settings["total_seconds_this_run"] = time.perf_counter() - t_start
    settings["adam_seconds_this_run"] = adam_seconds
    settings["adam_seconds_cached_total"] = float(sum(
        r["seconds"] for r in cache.values() if r.get("epochs") == epochs))
    save()
    shown = [rows[s[0]] for s in specs]
    print(table(shown))
    print(f"Adam seconds this run {adam_seconds:.1f}; all cached Adam runs "
          f"({epochs} epochs) {settings['adam_seconds_cached_total']:.1f}s")
    if out is not None:
        print(f"wrote {out}", file=sys.stderr)
    if failed:
        print(f"objective check failed (res.objective != network objective) on {failed}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
