"""Full MNIST with the gated ReLU program: time to a relative duality gap, accuracy, memory.

Problem: 60,000 x 784 training images scaled to [0, 1], each pixel centred by its
training mean (``--no-center`` keeps the papers' global normalisation
``(x - 0.1307) / 0.3081``; centring lowers the top eigenvalue of ``Xa^T Xa / n`` from
253 to 57 and so speeds up first-order methods), divided by 0.3081, a bias column, P sampled Gaussian gates, 10 classes,
softmax cross-entropy, weight decay ``alpha``.  One gradient is ten
``n x d x P`` products; the script solves with ``cvxnn.solve(..., dtype=...)``
(accelerated proximal gradient on GEMM kernels), stops at the target relative
duality gap or the time budget, and reports

* wall time, iterations, seconds per iteration, and the time of the two plain
  GEMMs of the same shapes (``Xa @ U`` and ``Xa.T @ M``) measured in the same run;
* the relative duality gap reached (certificate recomputed in float64) over the
  P sampled patterns;
* train and test accuracy, the number of active (pattern, class) blocks;
* peak resident memory of the process (``ru_maxrss``).

Usage::

    python benchmarks/bench_mnist.py [--gates 100] [--alpha 1e-4] [--tol 1e-3]
        [--time-limit 900] [--dtype float32] [--device cpu] [--out benchmarks/bench_mnist.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_mnist(center=False):
    sys.path.insert(0, str(DATA))
    from load import load

    X, y = load("mnist_train")
    Xt, yt = load("mnist_test")
    X = np.asarray(X, dtype=np.float64) / 255.0
    Xt = np.asarray(Xt, dtype=np.float64) / 255.0
    mu = X.mean(axis=0) if center else 0.1307
    X = (X - mu) / 0.3081
    Xt = (Xt - mu) / 0.3081
    return X, np.asarray(y), Xt, np.asarray(yt)


def gemm_seconds(Xa, P, c, dtype, repeats=3):
    """Median time of ``Xa @ U`` plus ``Xa.T @ M`` for U (d, P c), M (n, P c)."""
    rng = np.random.default_rng(0)
    A = Xa.astype(dtype)
    U = rng.standard_normal((A.shape[1], P * c)).astype(dtype)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        M = A @ U
        A.T @ M
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gates", type=int, default=100)
    ap.add_argument("--alpha", type=float, default=1e-4)
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--time-limit", type=float, default=900.0)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default=None)
    ap.add_argument("--n", type=int, default=None, help="use only the first n training images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-center", action="store_true", help="global normalisation only")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    import cvxnn
    from cvxnn._data import augment

    t0 = time.perf_counter()
    X, y, Xt, yt = load_mnist(center=not args.no_center)
    if args.n:
        X, y = X[: args.n], y[: args.n]
    load_s = time.perf_counter() - t0
    Xa = augment(X, True)
    gemm = gemm_seconds(Xa, args.gates, 10, np.dtype(args.dtype))
    del Xa
    print(f"MNIST n={X.shape[0]} d={X.shape[1]} P={args.gates} alpha={args.alpha:g} "
          f"dtype={args.dtype}: two GEMMs take {gemm:.3f} s", flush=True)

    t = time.perf_counter()
    cpu0 = time.process_time()
    res = cvxnn.solve(X, y, args.alpha, formulation="gated", loss="cross_entropy",
                      n_gates=args.gates, random_state=args.seed, tol=args.tol,
                      dtype=args.dtype, device=args.device, time_limit=args.time_limit,
                      max_iter=100000, verbose=1)
    solve_s = time.perf_counter() - t
    cpu_s = time.process_time() - cpu0
    train_acc = float(np.mean(res.network.predict(X) == y))
    test_acc = float(np.mean(res.network.predict(Xt) == yt))
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    record = {
        "n": int(X.shape[0]), "d": int(X.shape[1]), "P": args.gates, "classes": 10,
        "alpha": args.alpha, "dtype": args.dtype, "device": args.device or "numpy",
        "tol": args.tol, "time_limit_s": args.time_limit,
        "solve_seconds": solve_s, "solve_cpu_seconds": cpu_s,
        "load_average_1min": __import__("os").getloadavg()[0],
        "centered": not args.no_center, "iterations": res.n_iter,
        "seconds_per_iteration": solve_s / max(res.n_iter, 1),
        "two_gemm_seconds": gemm,
        "iteration_over_gemm": solve_s / max(res.n_iter, 1) / gemm,
        "objective": res.objective, "relative_gap": res.relative_gap,
        "converged": res.converged, "certified_over": res.certified_over,
        "active_blocks": res.n_active, "train_accuracy": train_acc,
        "test_accuracy": test_acc, "peak_rss_gb": peak_gb, "load_seconds": load_s,
        "gap_history": [(int(k), float(s), float(g)) for k, s, g, *_ in res.history],
    }
    print(json.dumps({k: v for k, v in record.items() if k != "gap_history"}, indent=1))
    print(f"\n{'time to gap':>12} | {'rel. gap':>9} | {'iters':>5} | {'s/iter':>6} | {'2 GEMMs':>7} "
          f"| {'test acc':>8} | {'peak GB':>7}")
    print(f"{solve_s:11.1f}s | {res.relative_gap:9.2e} | {res.n_iter:5d} | "
          f"{record['seconds_per_iteration']:6.2f} | {gemm:7.3f} | {test_acc:8.4f} | {peak_gb:7.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=1))
    return record


if __name__ == "__main__":
    main()
