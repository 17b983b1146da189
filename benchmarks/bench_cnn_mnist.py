"""MNIST subset: convex gated CNN versus the fully connected gated network.

Both models are trained through their gated convex programs with the same
number P of sampled gates, softmax cross-entropy, weight decay ``alpha``,
float32 products, and the same time limit:

* CNN: :func:`cvxnn.cnn.solve_cnn` on 28 x 28 images, ``patch`` x ``patch``
  patches with ``stride`` (no padding), sum pooling, P Gaussian filter gates
  (joint patterns over all patches);
* FC: :func:`cvxnn.solve` with ``formulation="gated"``, ``n_gates=P``,
  ``dtype="float32"``.

Pixels are divided by 255 (nothing else).  Prints one JSON object (accuracy,
time, relative duality gap over the sampled patterns, number of neurons) and
writes it to ``--out``.

Usage::

    python benchmarks/bench_cnn_mnist.py [--n-train 5000] [--gates 100] [--patch 5]
        [--stride 3] [--alpha 1e-3] [--tol 1e-4] [--time-limit 100]
        [--out benchmarks/bench_cnn_mnist.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_subset(n_train, seed=0):
    sys.path.insert(0, str(DATA))
    from load import load

    X, y = load("mnist_train")
    Xt, yt = load("mnist_test")
    idx = np.random.default_rng(seed).choice(X.shape[0], n_train, replace=False)
    return X[idx] / 255.0, np.asarray(y)[idx], Xt / 255.0, np.asarray(yt)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=5000)
    ap.add_argument("--gates", type=int, default=100)
    ap.add_argument("--patch", type=int, default=5)
    ap.add_argument("--stride", type=int, default=3)
    ap.add_argument("--alpha", type=float, default=1e-3)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--time-limit", type=float, default=100.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    args = ap.parse_args(argv)

    import cvxnn
    from cvxnn.cnn import solve_cnn

    t = time.perf_counter()
    X, y, Xt, yt = load_subset(args.n_train, args.seed)
    load_s = time.perf_counter() - t
    common = dict(loss="cross_entropy", tol=args.tol, random_state=args.seed)
    report = {"n_train": X.shape[0], "n_test": Xt.shape[0], "P": args.gates,
              "alpha": args.alpha, "tol": args.tol, "time_limit_s": args.time_limit,
              "dtype": "float32", "loss": "cross_entropy", "load_seconds": load_s}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        cnn = solve_cnn(X, y, args.alpha, image_shape=(28, 28), patch_size=args.patch,
                        stride=args.stride, formulation="gated", n_gates=args.gates,
                        dtype="float32", time_limit=args.time_limit, **common)
        cnn_s = time.perf_counter() - t
        t = time.perf_counter()
        fc = cvxnn.solve(X, y, args.alpha, formulation="gated", n_gates=args.gates,
                         dtype="float32", solver="fista", time_limit=args.time_limit, **common)
        fc_s = time.perf_counter() - t

    def acc(net, A, b):
        return float(np.mean(net.predict(A) == b))

    report["cnn"] = {
        "patch": args.patch, "stride": args.stride,
        "n_patches": int(((28 - args.patch) // args.stride + 1) ** 2),
        "gates_kept": int(cnn.gates.shape[1]),
        "seconds": cnn_s, "iterations": cnn.n_iter, "objective": cnn.objective,
        "relative_gap": cnn.relative_gap, "converged": cnn.converged,
        "neurons": int(cnn.network.n_filters), "active_blocks": cnn.n_active,
        "seconds_per_iteration": cnn_s / max(cnn.n_iter, 1),
        "train_accuracy": acc(cnn.network, X, y), "test_accuracy": acc(cnn.network, Xt, yt),
        "certified_over": cnn.certified_over,
    }
    report["fc"] = {
        "gates_kept": int(fc.gates.shape[1]),
        "seconds": fc_s, "iterations": fc.n_iter, "objective": fc.objective,
        "relative_gap": fc.relative_gap, "converged": fc.converged,
        "neurons": int(fc.network.n_neurons), "active_blocks": fc.n_active,
        "seconds_per_iteration": fc_s / max(fc.n_iter, 1),
        "train_accuracy": acc(fc.network, X, y), "test_accuracy": acc(fc.network, Xt, yt),
        "certified_over": fc.certified_over,
    }
    text = json.dumps(report, indent=1)
    print(text)
    Path(args.out).write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
