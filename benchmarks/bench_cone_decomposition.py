"""Benchmark of the cone decompositions (gated ReLU -> ReLU, ``cvxnn.cone_decomposition``).

For each PMLB table (standardised features, at most 1000 rows drawn with seed 0,
labels encoded for the squared loss, 100 sampled gates with a bias, alpha as
listed) the script computes the gated solution with
``cvxnn.solve(..., formulation="gated")`` and then times

* ``exact``: :func:`cvxnn.cone_decomposition.cone_decompose` with ``method="exact"``
  (the interior-point CD-SOCP of this package, polished and certified);
* ``approximate``: ``method="approximate"`` (CD-A, FISTA with the reference defaults
  ``rho = 1e-10``, ``tol = 1e-10``, ``max_iter = 10000``, then feasibility cleanup);
* ``oracle``: the same per-block SOCPs as ONE cvxpy problem solved by Clarabel
  (as scnn does with cvxpy/MOSEK), compile + solve wall time.

It reports the total norm inflation ``sum(||v|| + ||w||) / sum ||u||`` of each method,
the largest relative difference of the per-block objectives between ``exact`` and the
oracle, the violations, and the time ratio ``oracle / exact``.  Prints a JSON list,
then a table.  Run with ``OPENBLAS_NUM_THREADS=1`` on small machines::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_cone_decomposition.py [--quick] [--no-oracle]

``--quick`` caps CD-A at 1000 iterations (instead of 10000).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import numpy as np

import cvxnn
from cvxnn._data import augment
from cvxnn.cone_decomposition import cone_decompose
from cvxnn.patterns import compute_masks

SHARED_DATA = "/work/shared/data"

#: binary tables (one output, so 100 blocks each), n between 569 and 768
PROBLEMS = [
    ("pima", 1e-3),
    ("australian", 1e-3),
    ("breast_w", 1e-3),
    ("wdbc", 1e-3),
]


def load_problem(name, n_max=1000, seed=0):
    sys.path.insert(0, SHARED_DATA)
    from load import load

    X, y = load(name)
    X = np.asarray(X, dtype=float)
    if X.shape[0] > n_max:
        idx = np.random.default_rng(seed).choice(X.shape[0], n_max, replace=False)
        X, y = X[idx], y[idx]
    sd = X.std(axis=0)
    sd[sd == 0] = 1.0
    return (X - X.mean(axis=0)) / sd, np.asarray(y)


def oracle(Xa, D, U):
    """All blocks' min ||v|| + ||v - u|| s.t. cone constraints, one cvxpy problem (Clarabel)."""
    import cvxpy as cp

    d, P, c = U.shape
    S = np.where(D, 1.0, -1.0)
    blocks = [(i, k) for i in range(P) for k in range(c) if np.linalg.norm(U[:, i, k]) > 0]
    t0 = time.perf_counter()
    Vs = [cp.Variable(d) for _ in blocks]
    obj, cons = 0, []
    for v, (i, k) in zip(Vs, blocks):
        A = S[:, i][:, None] * Xa
        u = U[:, i, k]
        obj = obj + cp.norm(v) + cp.norm(v - u)
        cons += [A @ v >= 0, A @ v >= A @ u]
    prob = cp.Problem(cp.Minimize(obj), cons)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prob.solve(solver="CLARABEL")
    elapsed = time.perf_counter() - t0
    vals = np.full((P, c), np.nan)
    viol = 0.0
    rown = np.linalg.norm(Xa, axis=1)
    for v, (i, k) in zip(Vs, blocks):
        x = v.value
        vals[i, k] = np.linalg.norm(x) + np.linalg.norm(x - U[:, i, k])
        for q in (x, x - U[:, i, k]):
            worst = np.max(-(S[:, i] * (Xa @ q)) / rown, initial=0.0) / np.linalg.norm(q)
            viol = max(viol, float(worst))
    return vals, elapsed, prob.status, viol


def run(name, alpha, *, quick=False, with_oracle=True):
    X, y = load_problem(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = cvxnn.solve(X, y, alpha, formulation="gated", n_gates=100, random_state=0,
                          classification=True)
    Xa = augment(X, True)
    D = compute_masks(X, res.gates, bias=True)
    U = res.weights["U"]
    un = np.linalg.norm(U, axis=0)
    row = {
        "dataset": name, "n": X.shape[0], "d": X.shape[1], "c": U.shape[2], "P": U.shape[1],
        "alpha": alpha, "nonzero_blocks": int(np.count_nonzero(un)),
        "gated_solve_time": res.time, "gated_relative_gap": res.relative_gap,
    }
    ex = cone_decompose(Xa, D, U, method="exact")
    row.update(exact_time=ex.time, exact_inflation=ex.total_inflation,
               exact_success=ex.success, exact_violation=ex.max_violation,
               exact_max_gap=float(np.nanmax(ex.gap)), exact_iter=ex.n_iter,
               exact_max_block_inflation=float(np.nanmax(ex.inflation, initial=1.0)))
    ap = cone_decompose(Xa, D, U, method="approximate", max_iter=1000 if quick else None)
    row.update(approx_time=ap.time, approx_inflation=ap.total_inflation,
               approx_success=ap.success, approx_raw_violation=ap.raw_violation,
               approx_violation=ap.max_violation, approx_iter=ap.n_iter,
               approx_cleanup_blocks=int(ap.info.get("cleanup_blocks", 0)))
    if with_oracle:
        vals, t_or, status, viol = oracle(Xa, D, U)
        mine = np.linalg.norm(ex.V, axis=0) + np.linalg.norm(ex.W, axis=0)
        nz = un > 0
        row.update(oracle_time=t_or, oracle_status=status, oracle_violation=viol,
                   oracle_inflation=float(np.nansum(vals) / un.sum()),
                   exact_vs_oracle_max_rel=float(np.max((mine[nz] - vals[nz]) / vals[nz])),
                   exact_vs_oracle_min_rel=float(np.min((mine[nz] - vals[nz]) / vals[nz])),
                   oracle_over_exact_time=t_or / ex.time)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CD-A capped at 1000 iterations")
    ap.add_argument("--no-oracle", action="store_true", help="skip the cvxpy/Clarabel oracle")
    ap.add_argument("--datasets", nargs="*", default=None,
                    help="subset of " + ", ".join(name for name, _ in PROBLEMS))
    args = ap.parse_args(argv)
    rows = []
    for name, alpha in PROBLEMS:
        if args.datasets and name not in args.datasets:
            continue
        rows.append(run(name, alpha, quick=args.quick, with_oracle=not args.no_oracle))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(json.dumps(rows, indent=1))
    head = (f"{'dataset':18s} {'n':>5s} {'d':>3s} {'c':>2s} {'blk':>4s} | {'exact s':>8s} "
            f"{'kappa':>8s} | {'CD-A s':>8s} {'kappa':>8s} {'raw viol':>9s} | "
            f"{'oracle s':>8s} {'kappa':>8s} {'viol':>8s} {'max|diff|':>9s} {'ratio':>6s}")
    print(head)
    print("-" * len(head))
    for r in rows:
        line = (f"{r['dataset']:18s} {r['n']:5d} {r['d']:3d} {r['c']:2d} "
                f"{r['nonzero_blocks']:4d} | {r['exact_time']:8.3f} {r['exact_inflation']:8.3f} | "
                f"{r['approx_time']:8.2f} {r['approx_inflation']:8.3f} "
                f"{r['approx_raw_violation']:9.1e} | ")
        if "oracle_time" in r:
            diff = max(abs(r["exact_vs_oracle_min_rel"]), abs(r["exact_vs_oracle_max_rel"]))
            line += (f"{r['oracle_time']:8.2f} {r['oracle_inflation']:8.3f} "
                     f"{r['oracle_violation']:8.1e} {diff:9.1e} {r['oracle_over_exact_time']:6.1f}")
        print(line)
    print("kappa = sum(||v||+||w||)/sum||u||; raw viol = CD-A's relative violation before "
          "cleanup; viol = the oracle's relative violation (default Clarabel tolerances);\n"
          "max|diff| = max over blocks of |exact - oracle| / oracle; "
          "ratio = oracle time / exact time")


if __name__ == "__main__":
    main()
