"""The convex gated ReLU model trains on MNIST with a certificate and good test accuracy.

Claim (Mishkin, Sahiner & Pilanci 2022, section 6): the convex reformulation
scales to MNIST.  This example trains the convex gated program

    L(sum_i D_i Xa U_i, Y) + alpha * sum_{i,k} ||U[:, i, k]||_2,   D_i = diag(1[Xa g_i > 0])

(``L`` the mean softmax cross-entropy over 10 classes, ``Xa = [X, 1]``, P Gaussian
gates ``g_i``) with ``cvxnn.solve(..., formulation="gated", loss="cross_entropy",
dtype="float32", time_limit=...)`` (accelerated proximal gradient; the reported
objective and relative duality gap are recomputed in float64 and certify the
network over the P sampled gates).  The returned network is the equivalent
two-layer gated network with weight decay ``alpha/2 (||W1||^2 + ||b1||^2 +
||W2||^2)``.

Data: MNIST from ``../shared/data`` (relative to the repository root;
``--data-dir`` to point elsewhere).  By default a random subset of
``--n-train 10000`` training images (``--full``: all 60,000), 784 pixels scaled to
[0, 1] and centred by the training mean of each pixel (the test images use the
same means); accuracy is measured on all 10,000 test images.

Printed: objective, relative gap reached, active neurons, train/test accuracy,
solve time and peak resident memory (``resource.getrusage``).  Writes to
``examples/output/``: ``mnist_convergence.png`` (relative gap vs time,
:func:`cvxnn.plotting.plot_convergence`) and ``mnist_weights.png`` (the
first-layer weights of the 16 largest neurons as 28x28 images).

This example is a quick demonstration; ``benchmarks/bench_mnist.py`` is the
full-scale benchmark (all 60,000 images, long time budget, GEMM timings).

Run::

    python examples/mnist.py                          # about 2-3 minutes
    python examples/mnist.py --full --time-limit 900  # all training images
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import time
import warnings
from pathlib import Path

import numpy as np

import cvxnn

DATA_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
OUTPUT_DIR = Path(__file__).resolve().parent / "output"


def data_loader(data_dir):
    """Return the ``load(name)`` function of ``data_dir/load.py``.

    Raises ``FileNotFoundError`` naming ``data_dir`` when it has no ``load.py``.
    """
    data_dir = Path(data_dir)
    path = data_dir / "load.py"
    if not path.is_file():
        raise FileNotFoundError(
            f"data directory {data_dir.resolve()} has no load.py: this example reads MNIST "
            "from the shared benchmark data (../shared/data relative to the repository "
            "root); pass --data-dir PATH to point at it")
    spec = importlib.util.spec_from_file_location("cvxnn_example_shared_data_load", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load


def load_mnist(load, n_train=None, random_state=0):
    """Training subset and full test set, pixels in [0, 1] centred by the training mean.

    Returns ``X (n_train, 784), y (n_train,), X_test (10000, 784), y_test (10000,)``,
    float64 features and int labels 0..9.  ``n_train=None`` keeps all 60,000.
    """
    X, y = load("mnist_train")
    Xt, yt = load("mnist_test")
    if n_train is not None and n_train < X.shape[0]:
        rng = np.random.default_rng(random_state)
        keep = np.sort(rng.choice(X.shape[0], n_train, replace=False))
        X, y = X[keep], y[keep]
    X = np.asarray(X, dtype=np.float64) / 255.0
    Xt = np.asarray(Xt, dtype=np.float64) / 255.0
    mu = X.mean(axis=0)
    return X - mu, np.asarray(y), Xt - mu, np.asarray(yt)


def peak_memory_mib():
    """Peak resident memory of this process in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def plot_weights(network, path, n_show=16):
    """The first-layer weights of the ``n_show`` neurons with the largest
    ``||w_j|| ||W2_j||`` as 28x28 images, titled with the class each one feeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    W1 = np.asarray(network.W1)
    W2 = np.asarray(network.W2).reshape(W1.shape[0], -1)
    size = np.linalg.norm(W1, axis=1) * np.linalg.norm(W2, axis=1)
    order = np.argsort(-size)[:n_show]
    cols = 8
    rows = max(1, -(-len(order) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.5 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, j in zip(axes.ravel(), order):
        w = W1[j].reshape(28, 28)
        lim = np.abs(w).max() or 1.0
        ax.imshow(w, cmap="RdBu_r", vmin=-lim, vmax=lim)
        k = int(np.argmax(np.abs(W2[j])))
        label = network.classes[k] if network.classes is not None else k
        ax.set_title(f"-> {label} ({W2[j, k]:+.2f})", fontsize=7)
    fig.suptitle("first-layer weights of the largest neurons (-> class fed, output weight)",
                 fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_gap(result, path, n_train):
    """Relative duality gap vs time (:func:`cvxnn.plotting.plot_convergence`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cvxnn.plotting import plot_convergence

    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    plot_convergence(result, ax=ax)
    ax.set_title(f"MNIST, {n_train} training images: convex gated program", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=DATA_DIR,
                   help="folder with the shared data (load.py)")
    p.add_argument("--n-train", type=int, default=10000, help="training images used")
    p.add_argument("--full", action="store_true", help="use all 60,000 training images")
    p.add_argument("--n-gates", type=int, default=100)
    p.add_argument("--alpha", type=float, default=1e-3, help="weight decay")
    p.add_argument("--tol", type=float, default=1e-3, help="target relative duality gap")
    p.add_argument("--time-limit", type=float, default=120.0, help="solver budget (seconds)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--random-state", type=int, default=0)
    p.add_argument("--output-dir", type=Path, default=OUTPUT_DIR)
    return p.parse_args(argv)


def main(argv=None):
    """Train and evaluate; return a dict of the printed figures and the PNG paths."""
    args = parse_args(argv)
    if args.n_train < 10:
        raise ValueError(f"--n-train must be at least 10, got {args.n_train}")
    load = data_loader(args.data_dir)
    t0 = time.perf_counter()
    X, y, Xt, yt = load_mnist(load, None if args.full else args.n_train, args.random_state)
    load_seconds = time.perf_counter() - t0

    from sklearn.exceptions import ConvergenceWarning

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # reaching the time limit before tol is expected here: reported below instead
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = cvxnn.solve(X, y, args.alpha, formulation="gated", loss="cross_entropy",
                          n_gates=args.n_gates, dtype=args.dtype, tol=args.tol,
                          time_limit=args.time_limit, random_state=args.random_state)
    seconds = time.perf_counter() - t0
    net = res.network
    out = {
        "n_train": X.shape[0], "n_test": Xt.shape[0], "P": res.gates.shape[1],
        "alpha": args.alpha, "dtype": args.dtype,
        "objective": res.objective,
        "relative_gap": res.relative_gap,
        "converged": res.converged,
        "active_neurons": net.n_neurons,
        "n_iter": res.n_iter,
        "train_accuracy": float(np.mean(net.predict(X) == y)),
        "test_accuracy": float(np.mean(net.predict(Xt) == yt)),
        "solve_seconds": seconds,
        "load_seconds": load_seconds,
        "peak_memory_mib": peak_memory_mib(),
    }
    width = max(map(len, out))
    print(f"MNIST, convex gated ReLU program ({out['P']} gates, 10 classes, cross-entropy)")
    for key, value in out.items():
        text = f"{value:.6g}" if isinstance(value, float) else str(value)
        print(f"  {key:<{width}}  {text}")
    print(f"  (gap certified over {res.certified_over}; "
          + ("tol reached)" if res.converged else
             f"stopped before tol={args.tol:g}: time limit or iteration budget)"))
    out["convergence_png"] = args.output_dir / "mnist_convergence.png"
    out["weights_png"] = args.output_dir / "mnist_weights.png"
    plot_gap(res, out["convergence_png"], X.shape[0])
    plot_weights(net, out["weights_png"])
    print(f"wrote {out['convergence_png']} and {out['weights_png']}")
    return out


if __name__ == "__main__":
    main()
