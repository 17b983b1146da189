"""Quick benchmark of the ReLU-program solvers (tol = 1e-6).

Solvers
-------
* ``ipm``       -- the native solver (:func:`cvxnn.solvers.relu_ipm.solve_relu_ipm`, the
  default of ``cvxnn.solve(formulation="relu")``);
* ``al_basic``  -- the previous augmented Lagrangian (:func:`cvxnn.solvers.al.solve_relu_al_basic`,
  budget ``--al-iter`` FISTA iterations, default 20000 as in ``cvxnn.solve``);
* ``clarabel``  -- the interior-point reference through cvxpy
  (:func:`cvxnn.solvers.cvxpy_ref.solve_relu_cvxpy`).

Problems: pima, australian (shared PMLB tables), breast_cancer (sklearn) with labels
mapped to +-1 and squared or logistic loss, and diabetes (sklearn, squared loss on the
standardised target); features standardised, a bias column, 100 Gaussian gates
(``sample_gates(X, 100, random_state=0)``), alpha in {1e-2, 1e-3}.

For every run the script reports wall time, objective, relative duality gap
(``ReLUProblem.gap`` with the solver's multipliers) and relative cone violation
(``ReLUProblem.violation``), prints one JSON line per run and a final table of
ratios against the native solver.  Results are cached in ``--out`` (JSON) so that
``--only ipm`` can refresh one solver without rerunning the slow ones.

Run with one BLAS thread::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_relu_quick.py [--only ipm] [--al-iter 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from cvxnn._data import augment  # noqa: E402
from cvxnn.patterns import compute_masks, sample_gates  # noqa: E402
from cvxnn.problems import ReLUProblem  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SOLVERS = ("ipm", "al_basic", "clarabel")


def _standardize(X):
    X = np.asarray(X, dtype=float)
    s = X.std(axis=0)
    s[s == 0] = 1.0
    return (X - X.mean(axis=0)) / s


def load_dataset(name):
    if name in ("pima", "australian"):
        sys.path.insert(0, str(DATA))
        from load import load

        X, y = load(name)
    elif name == "breast_cancer":
        from sklearn.datasets import load_breast_cancer

        X, y = load_breast_cancer(return_X_y=True)
    elif name == "diabetes":
        from sklearn.datasets import load_diabetes

        X, y = load_diabetes(return_X_y=True)
        return _standardize(X), (y - y.mean()) / y.std()
    else:
        raise ValueError(name)
    y = np.asarray(y)
    return _standardize(X), np.where(y == np.unique(y)[1], 1.0, -1.0)


def make_problem(name, loss, alpha, n_gates=100, seed=0):
    X, y = load_dataset(name)
    G = sample_gates(X, n_gates, bias=True, random_state=seed)
    D = compute_masks(X, G, bias=True)
    return ReLUProblem(augment(X, True), D, y[:, None].astype(float), loss, alpha)


def configs():
    out = []
    for name in ("pima", "australian", "breast_cancer"):
        for loss in ("squared", "logistic"):
            for alpha in (1e-2, 1e-3):
                out.append((name, loss, alpha))
    for alpha in (1e-2, 1e-3):
        out.append(("diabetes", "squared", alpha))
    return out


def run(solver, pr, tol, al_iter):
    t0 = time.perf_counter()
    status = "ok"
    n_iter = None
    if solver == "ipm":
        from cvxnn.solvers.relu_ipm import solve_relu_ipm

        out = solve_relu_ipm(pr, tol=tol)
        Q, A, n_iter = out["Q"], out["multipliers"], out["n_iter"]
        elapsed = time.perf_counter() - t0
        gap = out["gap"]
    elif solver == "al_basic":
        from cvxnn.solvers.al import solve_relu_al_basic

        out = solve_relu_al_basic(pr, tol=tol, max_iter=al_iter)
        Q, A, n_iter = out["Q"], out["multipliers"], out["n_iter"]
        elapsed = time.perf_counter() - t0
        gap = pr.gap(Q, A=A, refine_iter=0)
        gap = out["gap"] if out["gap"].relative_gap < gap.relative_gap else gap
    else:
        from cvxnn.solvers.cvxpy_ref import solve_relu_cvxpy

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = solve_relu_cvxpy(pr.Xa, pr.D, pr.Y, pr.alpha, pr.loss)
        except RuntimeError as exc:
            return {"status": f"failed: {exc}"[:120], "time": time.perf_counter() - t0}
        elapsed = time.perf_counter() - t0
        Q = np.stack([ref["V"], ref["W"]], axis=1)
        A = np.stack([ref["A_V"], ref["A_W"]], axis=1)
        gap = pr.gap(Q, A=np.maximum(A, 0.0), refine_iter=200)
        status = ref["status"]
    return {"status": status, "time": elapsed, "objective": gap.primal, "rel_gap": gap.relative_gap,
            "violation": pr.violation(Q), "n_iter": n_iter,
            "n_active": int(np.count_nonzero(np.linalg.norm(Q, axis=0)))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=SOLVERS, action="append", help="solvers to run (default: all)")
    ap.add_argument("--out", default=str(Path(__file__).with_name("bench_relu_quick.json")))
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--al-iter", type=int, default=20000)
    ap.add_argument("--filter", default="", help="substring of 'name/loss/alpha' to select runs")
    ap.add_argument("--table-only", action="store_true", help="print the table of the cached results")
    args = ap.parse_args(argv)
    solvers = args.only or list(SOLVERS)
    cache = {}
    if Path(args.out).exists():
        cache = json.loads(Path(args.out).read_text())
    if args.table_only:
        print_table(cache, args.tol)
        return
    for name, loss, alpha in configs():
        key = f"{name}/{loss}/{alpha:g}"
        if args.filter and args.filter not in key:
            continue
        pr = make_problem(name, loss, alpha)
        for solver in solvers:
            res = run(solver, pr, args.tol, args.al_iter)
            res.update(problem=key, solver=solver, n=pr.Xa.shape[0], d=pr.Xa.shape[1], P=pr.D.shape[1])
            cache.setdefault(key, {})[solver] = res
            print(json.dumps(res), flush=True)
            Path(args.out).write_text(json.dumps(cache, indent=1))
    print_table(cache, args.tol)


def _fmt(x, spec):
    return format(x, spec) if isinstance(x, (int, float)) else "-"


def print_table(cache, tol=1e-6):
    """``conv``: relative gap and relative violation both <= tol.  A point that violates
    the cones can have an objective below the optimum and a zero "gap"; only ``conv``
    rows are solutions."""
    print()
    head = (f"{'problem':28s} {'solver':9s} {'time[s]':>8s} {'objective':>16s} {'rel.gap':>9s} "
            f"{'violation':>9s} {'conv':>4s} {'active':>6s} {'time/ipm':>8s} {'obj-ipm (rel)':>13s}")
    print(head)
    print("-" * len(head))
    ratios = {s: [] for s in SOLVERS}
    for key, runs in cache.items():
        base = runs.get("ipm")
        for solver in SOLVERS:
            r = runs.get(solver)
            if r is None:
                continue
            if "objective" not in r:
                print(f"{key:28s} {solver:9s} {r['time']:8.2f} {r['status']}")
                continue
            tr = r["time"] / base["time"] if base else float("nan")
            dobj = (r["objective"] - base["objective"]) / abs(base["objective"]) if base else float("nan")
            if base and solver != "ipm":
                ratios[solver].append(tr)
            conv = "yes" if (r["rel_gap"] <= tol and r["violation"] <= tol) else "NO"
            print(f"{key:28s} {solver:9s} {r['time']:8.2f} {r['objective']:16.10f} {r['rel_gap']:9.1e} "
                  f"{r['violation']:9.1e} {conv:>4s} {_fmt(r.get('n_active'), '6d'):>6s} {tr:8.1f} {dobj:13.1e}")
    print()
    for solver in ("al_basic", "clarabel"):
        if ratios[solver]:
            g = float(np.exp(np.mean(np.log(ratios[solver]))))
            print(f"geometric mean time ratio {solver}/ipm: {g:.1f} over {len(ratios[solver])} problems")


if __name__ == "__main__":
    main()
