"""Pattern search vs full enumeration on data of rank <= 3 (issue 4).

For each table from ``../shared/data`` the script takes a random subsample of
``n`` rows, standardises the features and projects them on their two leading
principal components, so that ``Xa = [X_pc, 1]`` has rank 3 and every
activation pattern can be enumerated (``arrangement_count(n, 3)`` cells).
It then solves

* the ReLU program on **all** enumerated patterns
  (``cvxnn.solve(..., gates="enumerate")``, the global optimum, certified), and
* the pattern search ``cvxnn.cutting_plane(..., oracle="enumerate")`` started
  from 20 random gates (exact separation oracle, so its final gap is a
  certificate over all patterns),

and reports both objectives, their relative difference (target: 1e-6), the
number of patterns each used and the wall times.  A second search run with the
heuristic oracle (``oracle="search"``) shows what the default gets without
enumeration.  Finally a width-20 ReLU network trained by full-batch Adam
(2000 epochs, lr 1e-2, same objective) is certified with ``cvxnn.certify``:
the script checks that the certified gap is at least its true suboptimality
(against the enumerated optimum), that it is not called optimal, and that
adding the oracle's violating unit (``Certificate.improve``) lowers the
objective.

Run (one BLAS thread)::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_search_lowrank.py [--quick]

Output: one JSON line per problem, a table, and ``bench_search_lowrank.json``.
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

import cvxnn  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

PROBLEMS = [  # table, loss, alpha, n
    ("pima", "squared", 1e-2, 60),
    ("pima", "logistic", 1e-3, 60),
    ("australian", "squared", 1e-3, 60),
    ("wdbc", "logistic", 1e-2, 60),
    ("529_pollen", "squared", 1e-3, 60),
    ("1028_SWD", "squared", 1e-2, 60),
    ("522_pm10", "squared", 1e-3, 60),
    ("breast_w", "squared", 1e-3, 60),
]


#: binary classification tables (labels mapped to -1/+1); the others are regression
CLASSIFICATION = {"pima", "australian", "wdbc", "breast_w"}


def load_lowrank(name, n, seed=0):
    sys.path.insert(0, str(SHARED))
    from load import load

    X, y = load(name)
    X = np.asarray(X, dtype=float)
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    idx = rng.choice(X.shape[0], size=min(n, X.shape[0]), replace=False)
    X, y = X[idx], y[idx]
    sd = X.std(axis=0)
    sd[sd == 0] = 1.0
    X = (X - X.mean(axis=0)) / sd
    _, _, Vt = np.linalg.svd(X, full_matrices=False)
    Xp = X @ Vt[:2].T
    return Xp / Xp.std(axis=0), y


def train_adam(X, y, loss, alpha, classification, width=20, epochs=2000, lr=1e-2, seed=0):
    """A width-``width`` ReLU network trained by full-batch Adam on the same objective."""
    import torch

    from cvxnn._data import encode_targets

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    Y, _ = encode_targets(y, loss, classification)
    model = torch.nn.Sequential(torch.nn.Linear(X.shape[1], width), torch.nn.ReLU(),
                                torch.nn.Linear(width, 1, bias=False)).double()
    Xt, Yt = torch.tensor(X), torch.tensor(Y)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        opt.zero_grad()
        Z = model(Xt)
        if loss == "squared":
            data = ((Z - Yt) ** 2).sum() / (2 * len(Yt))
        else:
            data = torch.nn.functional.softplus(-Yt * Z).mean()
        pen = sum((p ** 2).sum() for p in model.parameters())
        (data + alpha / 2 * pen).backward()
        opt.step()
    return model


def run(name, loss, alpha, n):
    X, y = load_lowrank(name, n)
    classification = True if name in CLASSIFICATION and loss == "squared" else None
    if name not in CLASSIFICATION:
        y = (y - y.mean()) / y.std()
    kw = dict(loss=loss, classification=classification)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        full = cvxnn.solve(X, y, alpha, gates="enumerate", **kw)
        t_full = time.perf_counter() - t
        t = time.perf_counter()
        srch = cvxnn.cutting_plane(X, y, alpha, n_gates=20, oracle="enumerate", random_state=0,
                                   **kw)
        t_srch = time.perf_counter() - t
        t = time.perf_counter()
        heur = cvxnn.cutting_plane(X, y, alpha, n_gates=20, oracle="search", random_state=0, **kw)
        t_heur = time.perf_counter() - t
        # certificate of a gradient-trained network against the enumerated optimum
        model = train_adam(X, y, loss, alpha, kw["classification"])
        cert = cvxnn.certify(model, X, y, alpha, loss=loss,
                             classification=kw["classification"])
        improved = cert.improve().objective(X, y, alpha) if cert.violating_neuron else None
    true_sub = cert.objective - full.objective
    return {
        "adam_objective": cert.objective, "adam_true_suboptimality": true_sub,
        "certify_gap": cert.gap, "certify_exact": cert.exact,
        "certify_gap_bounds_suboptimality": bool(cert.gap >= true_sub - 1e-12),
        "certify_is_optimal": cert.is_optimal, "certify_sigma_over_alpha": cert.sigma / alpha,
        "improved_objective": improved,
        "improve_lowers": None if improved is None else bool(improved < cert.balanced_objective),
        "table": name, "n": X.shape[0], "loss": loss, "alpha": alpha,
        "P_all": int(full.gates.shape[1]), "full_objective": full.objective,
        "full_relative_gap": full.relative_gap, "full_seconds": t_full,
        "search_objective": srch.objective, "search_relative_gap_all_patterns": srch.relative_gap,
        "search_certified_over": srch.certified_over, "search_patterns": srch.search["n_patterns"],
        "search_rounds": len(srch.search["rounds"]), "search_seconds": t_srch,
        "search_rel_diff": (srch.objective - full.objective) / full.objective,
        "heuristic_objective": heur.objective, "heuristic_patterns": heur.search["n_patterns"],
        "heuristic_seconds": t_heur,
        "heuristic_rel_diff": (heur.objective - full.objective) / full.objective,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="first two problems only")
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    args = ap.parse_args(argv)
    rows = []
    for spec in PROBLEMS[:2] if args.quick else PROBLEMS:
        r = run(*spec)
        rows.append(r)
        print(json.dumps(r), flush=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))
    print(f"\n{'table':12s} {'loss':8s} {'alpha':>6s} {'P_all':>6s} {'full obj':>14s} {'t_full':>7s} "
          f"| {'search P':>8s} {'rel.diff':>9s} {'gap(all)':>9s} {'t':>6s} | {'heur P':>6s} "
          f"{'rel.diff':>9s} {'t':>6s}")
    for r in rows:
        print(f"{r['table']:12s} {r['loss']:8s} {r['alpha']:6.0e} {r['P_all']:6d} "
              f"{r['full_objective']:14.10g} {r['full_seconds']:7.1f} | {r['search_patterns']:8d} "
              f"{r['search_rel_diff']:9.1e} {r['search_relative_gap_all_patterns']:9.1e} "
              f"{r['search_seconds']:6.1f} | {r['heuristic_patterns']:6d} "
              f"{r['heuristic_rel_diff']:9.1e} {r['heuristic_seconds']:6.1f}")
    print(f"\n{'table':12s} {'loss':8s} {'Adam obj':>12s} {'true subopt':>12s} {'certify gap':>12s} "
          f"{'bounds?':>7s} {'optimal?':>8s} {'improve lowers':>14s}")
    for r in rows:
        print(f"{r['table']:12s} {r['loss']:8s} {r['adam_objective']:12.6g} "
              f"{r['adam_true_suboptimality']:12.4e} {r['certify_gap']:12.4e} "
              f"{str(r['certify_gap_bounds_suboptimality']):>7s} {str(r['certify_is_optimal']):>8s} "
              f"{str(r['improve_lowers']):>14s}")
    ok = sum(abs(r["search_rel_diff"]) <= 1e-6 for r in rows)
    frac = np.median([r["search_patterns"] / r["P_all"] for r in rows])
    print(f"\nexact search within 1e-6 of the enumerated optimum: {ok}/{len(rows)}; "
          f"median fraction of patterns used: {frac:.3f}")


if __name__ == "__main__":
    main()
