"""One gradient of the gated program against two plain GEMMs of the same shapes.

For each shape ``(n, d, P, c)`` the script times (median of repeats, same run):

* ``gemm``: ``Xa @ U`` with ``U`` of shape ``(d, P c)`` plus ``Xa.T @ M`` with ``M``
  of shape ``(n, P c)``: the floor for any implementation;
* ``gradient``: ``GatedReLUProblem.apply`` + ``adjoint`` (what the solvers call: the
  masked products of :mod:`cvxnn.operators`, GEMM + mask by row chunks, with the
  problem's float copy of small masks), i.e. one gradient of the smooth part, in
  float64 and float32; ``functions``: the same through ``forward`` + ``adjoint`` on
  the boolean masks;
* ``torch``: the same two products through :mod:`cvxnn.torch_backend` on the CPU
  (when torch is installed);
* ``expanded``: the reference approach of materialising ``n x P d`` (only for small
  shapes, to show why it is avoided),

and prints JSON plus a table of the ratios ``gradient / gemm`` (target: <= 2).

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_kernels.py [--out benchmarks/bench_kernels.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from cvxnn.operators import adjoint, forward
from cvxnn.problems import GatedReLUProblem

SHAPES = [  # (label, n, d, P, c)
    ("wdbc-like", 569, 31, 100, 1),
    ("pima-like", 768, 9, 100, 1),
    ("wdbc 500 gates", 569, 31, 500, 1),
    ("waveform-like 3 classes", 5000, 22, 100, 3),
    ("house_16H-like", 20000, 17, 500, 1),
    ("MNIST 10k", 10000, 785, 100, 10),
    ("MNIST full", 60000, 785, 100, 10),
]


def _median_time(fn, repeats):
    """Median wall time of ``fn``; tiny calls are repeated for at least ~0.3 s."""
    t = time.perf_counter()
    fn()
    first = time.perf_counter() - t
    repeats = max(repeats, min(500, int(0.3 / max(first, 1e-6))))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def bench(label, n, d, P, c, repeats):
    rng = np.random.default_rng(0)
    rec = {"shape": label, "n": n, "d": d, "P": P, "c": c}
    X64 = rng.standard_normal((n, d))
    D = rng.random((n, P)) < 0.5
    R = rng.standard_normal((n, c))
    for name, dt in (("float64", np.float64), ("float32", np.float32)):
        X = X64.astype(dt)
        U = rng.standard_normal((d, P, c)).astype(dt)
        M = rng.standard_normal((n, P * c)).astype(dt)
        U2 = U.reshape(d, P * c)
        rec[f"gemm_{name}"] = _median_time(lambda: (X @ U2, X.T @ M), repeats)
        # what the solvers call per gradient: the problem's products (float mask copy
        # when small, automatic chunks, float64 predictions)
        prob = GatedReLUProblem(X, D, R, "squared", 1.0)
        rec[f"gradient_{name}"] = _median_time(lambda: (prob.apply(U), prob.adjoint(R)), repeats)
        rec[f"functions_{name}"] = _median_time(lambda: (forward(X, D, U), adjoint(X, D, R)),
                                                repeats)
        rec[f"ratio_{name}"] = rec[f"gradient_{name}"] / rec[f"gemm_{name}"]
    try:
        from cvxnn.torch_backend import TorchGatedProblem

        tp = TorchGatedProblem(X64, D, np.zeros((n, c)), "squared", 1.0, dtype="float32")
        Ut = tp.asweights(rng.standard_normal((d, P, c)))
        rec["torch_cpu_float32"] = _median_time(lambda: (tp.apply(Ut), tp.adjoint(R)), repeats)
        rec["ratio_torch_float32"] = rec["torch_cpu_float32"] / rec["gemm_float32"]
    except ImportError:
        pass
    if n * P * d <= 5e7:
        U = rng.standard_normal((d, P, c))

        def expanded():
            E = (D[:, :, None] * X64[:, None, :]).reshape(n, P * d)
            E @ U.transpose(1, 0, 2).reshape(P * d, c)
            E.T @ R

        rec["expanded_float64"] = _median_time(expanded, repeats)
        rec["ratio_expanded_float64"] = rec["expanded_float64"] / rec["gemm_float64"]
    return rec


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-full-mnist", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    records = []
    for label, n, d, P, c in SHAPES:
        if args.skip_full_mnist and label == "MNIST full":
            continue
        records.append(bench(label, n, d, P, c, args.repeats if n * d * P * c < 1e9 else 3))
        print(json.dumps(records[-1]), flush=True)
    print(f"\n{'shape':<26} {'gemm64 ms':>9} {'grad64 ms':>9} {'ratio':>6} {'gemm32 ms':>9} "
          f"{'grad32 ms':>9} {'ratio':>6} {'torch32':>7} {'expanded':>8}")
    for r in records:
        tr = r.get("ratio_torch_float32")
        ex = r.get("ratio_expanded_float64")
        print(f"{r['shape']:<26} {1e3 * r['gemm_float64']:9.2f} {1e3 * r['gradient_float64']:9.2f} "
              f"{r['ratio_float64']:6.2f} {1e3 * r['gemm_float32']:9.2f} "
              f"{1e3 * r['gradient_float32']:9.2f} {r['ratio_float32']:6.2f} "
              f"{'' if tr is None else f'{tr:7.2f}'} {'' if ex is None else f'{ex:8.1f}'}")
    if args.out:
        Path(args.out).write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
