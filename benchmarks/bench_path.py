"""Regularisation path: warm starts + screening against independent cold solves.

Problem: a PMLB regression table from ``../shared/data`` (default ``225_puma8NH``,
n = 8192, d = 8), features and target standardised, a bias column, ``--n-gates``
(gated) or ``--relu-gates`` (relu) Gaussian gates drawn once (``random_state=--seed``)
and shared by every solve of a run.
Grid: ``--n-alphas`` values geometrically spaced from ``alpha_max`` (the zero
network) down to ``eps * alpha_max``.

Two ways to get the same certified path (relative duality gap <= ``--tol`` at
every point, over the same patterns):

* ``path``: :func:`cvxnn.path.path` with ``warm_start=True, screening=True``
  (squared-loss gated paths run the Gram-matrix active-set Newton method; every
  point is certified on the data);
* ``cold``: ``--n-alphas`` independent calls of ``cvxnn.solve(X, y, alpha,
  gates=G, patterns="sampled", tol=--tol)`` (what a user would do without a path).

Prints one JSON document (per-alpha objectives, gaps, active neurons, times, the
largest relative objective difference and the speed ratio cold / path) and writes
it to ``--out``.  Run alone, with one BLAS thread::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_path.py [--formulations gated,relu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def load_table(name, rows, seed):
    sys.path.insert(0, str(DATA))
    from load import load

    X, y = load(name)
    if rows and rows < len(y):
        idx = np.random.RandomState(seed).permutation(len(y))[:rows]
        X, y = X[idx], y[idx]
    s = X.std(axis=0)
    s[s == 0] = 1.0
    X = (X - X.mean(axis=0)) / s
    y = (y - y.mean()) / y.std()
    return X, y


def run_one(X, y, formulation, n_gates, args):
    """One path and its cold baseline; returns the report dict."""
    import cvxnn
    from cvxnn.path import path

    t0 = time.perf_counter()
    pr = path(X, y, n_alphas=args.n_alphas, eps=args.eps, formulation=formulation,
              n_gates=n_gates, tol=args.tol, random_state=args.seed)
    t_path = time.perf_counter() - t0

    cold, t_cold = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        for a in pr.alphas:
            t1 = time.perf_counter()
            cold.append(cvxnn.solve(X, y, float(a), formulation=formulation, gates=pr.gates,
                                    patterns="sampled", tol=args.tol))
            t_cold.append(time.perf_counter() - t1)
        t_cold_total = time.perf_counter() - t0

    obj_cold = np.array([r.objective for r in cold])
    rel = np.abs(pr.objectives - obj_cold) / np.abs(obj_cold)
    report = {
        "formulation": formulation, "loss": "squared", "n_gates": n_gates,
        "n_patterns": int(pr.gates.shape[1]), "alpha_max": pr.alpha_max,
        "path_seconds": t_path, "cold_seconds": t_cold_total,
        "speed_ratio_cold_over_path": t_cold_total / t_path,
        "max_relative_objective_difference": float(rel.max()),
        "path_max_relative_gap": float(np.nanmax(pr.gaps)),
        "cold_max_relative_gap": float(max(r.relative_gap for r in cold)),
        "all_certified": bool(np.all(pr.gaps <= args.tol)
                              and all(r.relative_gap <= args.tol for r in cold)),
        "per_alpha": [
            {"alpha": float(a), "objective_path": float(op), "objective_cold": float(oc),
             "relative_difference": float(rd), "gap_path": float(gp),
             "gap_cold": float(rc.relative_gap), "n_active_path": int(na),
             "n_active_cold": int(rc.n_active), "n_kept": int(nk), "seconds_path": float(tp),
             "seconds_cold": float(tc), "solver_path": r.solver, "solver_cold": rc.solver}
            for a, op, oc, rd, gp, rc, na, nk, tp, tc, r in zip(
                pr.alphas, pr.objectives, obj_cold, rel, pr.gaps, cold, pr.n_active, pr.n_kept,
                pr.times, t_cold, pr.results)
        ],
    }
    print(f"{formulation}: speed ratio (cold / path) {report['speed_ratio_cold_over_path']:.2f}x  "
          f"path {t_path:.2f}s  cold {t_cold_total:.2f}s  max rel. objective difference "
          f"{report['max_relative_objective_difference']:.1e}", file=sys.stderr, flush=True)
    return report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="225_puma8NH")
    ap.add_argument("--rows", type=int, default=0, help="row subsample (0: all rows)")
    ap.add_argument("--formulations", default="gated",
                    help="comma-separated, from gated,relu (default gated)")
    ap.add_argument("--n-gates", type=int, default=100)
    ap.add_argument("--relu-gates", type=int, default=30,
                    help="gates of the relu run (its interior-point solves are slower)")
    ap.add_argument("--n-alphas", type=int, default=20)
    ap.add_argument("--eps", type=float, default=1e-3)
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "bench_path.json"))
    args = ap.parse_args(argv)
    forms = [f.strip() for f in args.formulations.split(",") if f.strip()]
    if not forms or any(f not in ("gated", "relu") for f in forms):
        ap.error(f"--formulations must list gated and/or relu, got {args.formulations!r}")

    import cvxnn

    X, y = load_table(args.dataset, args.rows, args.seed)
    t0 = time.perf_counter()
    runs = [run_one(X, y, f, args.n_gates if f == "gated" else args.relu_gates, args)
            for f in forms]
    report = {
        "benchmark": "bench_path",
        "dataset": args.dataset, "n": int(X.shape[0]), "d": int(X.shape[1]),
        "n_alphas": args.n_alphas, "eps": args.eps, "tol": args.tol, "seed": args.seed,
        "runs": runs,
        "wall_seconds": time.perf_counter() - t0,
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                    "load_average_at_end": list(os.getloadavg()),
                    "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS")},
        "cvxnn_version": cvxnn.__version__,
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
