"""Quick benchmark of the gated ReLU solvers: old FISTA vs working set vs Clarabel.

For each problem (100 sampled gates, bias column, alpha as listed) the script
runs ``cvxnn.solvers.gated.solve_gated_fista`` (the previous default),
``cvxnn.solvers.working_set.solve_gated_working_set`` (the new default) and the
cvxpy/Clarabel reference ``solve_gated_cvxpy``, all to a relative duality gap
of 1e-6 (FISTA capped at 20000 iterations, the default budget of
``cvxnn.solve``), and prints a JSON list of the results followed by a table of
times and time ratios.  The relative gap of every solution is recomputed with
``GatedReLUProblem.gap`` (the same certificate for all three).

Run with ``OPENBLAS_NUM_THREADS=1`` on small machines::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_gated_quick.py [--no-clarabel] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import numpy as np

from cvxnn._data import augment, encode_targets
from cvxnn.patterns import compute_masks, sample_gates
from cvxnn.problems import GatedReLUProblem
from cvxnn.solvers.gated import solve_gated_fista
from cvxnn.solvers.working_set import solve_gated_working_set

SHARED_DATA = "/work/shared/data"


def _standardise(X):
    sd = X.std(axis=0)
    sd[sd == 0] = 1.0
    return (X - X.mean(axis=0)) / sd


def load_problem(name, loss, alpha, n_gates=100, seed=0):
    if name == "diabetes":
        from sklearn.datasets import load_diabetes

        X, y = load_diabetes(return_X_y=True)  # unscaled targets (~150), tiny columns
        Y, _ = encode_targets(np.asarray(y, dtype=float), loss, classification=False)
    else:
        if name == "breast_cancer":
            from sklearn.datasets import load_breast_cancer

            X, y = load_breast_cancer(return_X_y=True)
        else:
            sys.path.insert(0, SHARED_DATA)
            from load import load

            X, y = load(name)
        X = _standardise(np.asarray(X, dtype=float))
        Y, _ = encode_targets(np.asarray(y), loss, classification=True)
    X = np.asarray(X, dtype=float)
    G = sample_gates(X, n_gates, bias=True, random_state=seed)
    D = compute_masks(X, G, bias=True)
    return GatedReLUProblem(augment(X, True), D, Y, loss, alpha)


PROBLEMS = [
    ("diabetes", "squared", 1e-3),
    ("diabetes", "squared", 1e-4),
    ("pima", "squared", 1e-3),
    ("pima", "logistic", 1e-3),
    ("australian", "squared", 1e-3),
    ("australian", "logistic", 1e-3),
    ("breast_cancer", "squared", 1e-3),
    ("breast_cancer", "logistic", 1e-3),
]


def run(problem, which, tol):
    t0 = time.perf_counter()
    if which == "fista":
        out = solve_gated_fista(problem, tol=tol, max_iter=20000)
        U = out["U"]
    elif which == "working_set":
        out = solve_gated_working_set(problem, tol=tol)
        U = out["U"]
    else:
        from cvxnn.solvers.cvxpy_ref import solve_gated_cvxpy

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = solve_gated_cvxpy(problem.Xa, problem.D, problem.Y, problem.alpha,
                                    problem.loss.name)
        U = out["U"]
    seconds = time.perf_counter() - t0
    gap = problem.gap(U)
    res = {"solver": which, "seconds": round(seconds, 4), "relative_gap": gap.relative_gap,
           "objective": gap.primal}
    if which != "clarabel":
        res["n_iter"] = int(out["n_iter"])
        res["converged"] = bool(out["converged"])
    if which == "working_set":
        res["n_grad_equiv"] = round(float(out["n_grad_equiv"]), 1)
        res["n_outer"] = int(out["n_outer"])
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-clarabel", action="store_true")
    ap.add_argument("--no-fista", action="store_true")
    ap.add_argument("--quick", action="store_true", help="only the first three problems")
    ap.add_argument("--tol", type=float, default=1e-6)
    args = ap.parse_args(argv)
    solvers = ["working_set"]
    if not args.no_fista:
        solvers.insert(0, "fista")
    if not args.no_clarabel:
        solvers.append("clarabel")
    problems = PROBLEMS[:3] if args.quick else PROBLEMS
    rows = []
    for name, loss, alpha in problems:
        pb = load_problem(name, loss, alpha)
        base = {"data": name, "loss": loss, "alpha": alpha, "n": pb.Xa.shape[0],
                "d": pb.Xa.shape[1], "P": pb.D.shape[1]}
        for which in solvers:
            res = run(pb, which, args.tol)
            rows.append({**base, **res})
            print(f"# {name:14s} {loss:9s} alpha={alpha:g}  {which:12s} "
                  f"{res['seconds']:8.3f}s  rel.gap {res['relative_gap']:.2e}", file=sys.stderr)
    print(json.dumps(rows, indent=1))
    # ratio table
    print()
    hdr = f"{'data':14s} {'loss':9s} {'alpha':>6s} {'P':>4s} |"
    for which in solvers:
        hdr += f" {which + ' s':>15s} {'gap':>8s} |"
    if "fista" in solvers:
        hdr += f" {'fista/ws':>9s}"
    if "clarabel" in solvers:
        hdr += f" {'clar/ws':>8s}"
    print(hdr)
    print("-" * len(hdr))
    for name, loss, alpha in problems:
        sel = {r["solver"]: r for r in rows
               if r["data"] == name and r["loss"] == loss and r["alpha"] == alpha}
        line = f"{name:14s} {loss:9s} {alpha:6.0e} {sel['working_set']['P']:4d} |"
        for which in solvers:
            r = sel[which]
            line += f" {r['seconds']:15.3f} {r['relative_gap']:8.1e} |"
        ws = sel["working_set"]["seconds"]
        if "fista" in solvers:
            line += f" {sel['fista']['seconds'] / ws:9.1f}"
        if "clarabel" in solvers:
            line += f" {sel['clarabel']['seconds'] / ws:8.1f}"
        print(line)


if __name__ == "__main__":
    main()
