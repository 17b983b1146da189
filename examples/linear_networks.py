"""Linear networks trained with weight decay are convex programs (math spec 3.4).

For three two-layer *linear* architectures, print three objective values that
agree: the optimum of the convex program solved by cvxnn (with its relative
duality gap), the weight-decay objective of the network recovered from that
solution, and the objective reached by the non-convex network trained directly
by L-BFGS from random starts (none goes below the certified lower bound).

* circular CNN, full-length filters, ``f(x) = sum_j a_j^T (x (*) u_j)``:
  lasso in DFT features, ``L(X F^H w_hat, y) + (alpha / sqrt d) ||w_hat||_1``;
* fully connected, ``f(X) = X W1 W2``: ``L(X W, Y) + alpha ||W||_*``;
* linear CNN with per-patch output weights: ``L(sum_k X_k Z[:, k], y) + alpha ||Z||_*``.

Data: MNIST-1D (40-sample 1-D signals, from ``../shared/data``; ``--data-dir``
to point elsewhere, ``--synthetic`` for random data).  Digits 0 vs 1 with the
logistic loss for the two CNNs, all 10 digits with the softmax cross-entropy
for the fully connected network.

Run:  python examples/linear_networks.py [--n-samples 1000] [--n-starts 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from cvxnn.linear import circular_cnn, extract_patches, linear_cnn, linear_network
from cvxnn.losses import get_loss

DATA_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def load_mnist1d(data_dir):
    """MNIST-1D training set ``(X (4000, 40), y (4000,))``; clear error without the data."""
    path = Path(data_dir) / "load.py"
    if not path.is_file():
        raise FileNotFoundError(
            f"data directory {Path(data_dir).resolve()} has no load.py: this example reads "
            "MNIST-1D from the shared benchmark data (../shared/data relative to the "
            "repository root); pass --data-dir PATH, or --synthetic")
    spec = importlib.util.spec_from_file_location("cvxnn_example_shared_data_load", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load("mnist1d_train")


def _lbfgs(fg, size, seed):
    theta0 = 0.3 * np.random.default_rng(seed).standard_normal(size)
    res = minimize(fg, theta0, jac=True, method="L-BFGS-B",
                   options={"maxiter": 30000, "gtol": 1e-12, "ftol": 1e-15, "maxcor": 30})
    return float(res.fun)


def train_circular_cnn(X, Y, alpha, loss, m, seed):
    """L-BFGS on ``L(sum_j a_j^T (x (*) u_j)) + alpha/2 (||U||^2 + ||A||^2)`` (FFT gradients)."""
    n, d = X.shape
    FX = np.fft.fft(X)

    def fg(theta):
        U, A = theta[:m * d].reshape(m, d), theta[m * d:].reshape(m, d)
        FU, FA = np.fft.fft(U), np.fft.fft(A)
        w = np.fft.ifft((FA * np.conj(FU)).sum(axis=0)).real        # f(x) = x^T w
        val, g = loss.value_and_gradient((X @ w)[:, None], Y)
        v = X.T @ g[:, 0]                                              # dL/dw
        H = np.fft.ifft(FX[:, None, :] * FU[None], axis=-1).real       # (n, m, d)
        gA = np.einsum("nmd,n->md", H, g[:, 0])
        gU = np.fft.ifft(FA * np.conj(np.fft.fft(v))[None], axis=-1).real
        return (val + 0.5 * alpha * theta @ theta,
                np.concatenate([gU.ravel(), gA.ravel()]) + alpha * theta)

    return _lbfgs(fg, 2 * m * d, seed)


def train_linear_network(X, Y, alpha, loss, m, seed):
    """L-BFGS on ``L(X W1 W2, Y) + alpha/2 (||W1||^2 + ||W2||^2)``."""
    d, c = X.shape[1], Y.shape[1]

    def fg(theta):
        W1, W2 = theta[:d * m].reshape(d, m), theta[d * m:].reshape(m, c)
        val, G = loss.value_and_gradient(X @ W1 @ W2, Y)
        G = X.T @ G
        return (val + 0.5 * alpha * theta @ theta,
                np.concatenate([(G @ W2.T).ravel(), (W1.T @ G).ravel()]) + alpha * theta)

    return _lbfgs(fg, m * (d + c), seed)


def train_linear_cnn(P, Y, alpha, loss, m, seed):
    """L-BFGS on ``L(sum_j sum_k (x_k^T u_j) a_jk) + alpha/2 (||U||^2 + ||A||^2)``."""
    n, K, h = P.shape

    def fg(theta):
        U, A = theta[:m * h].reshape(m, h), theta[m * h:].reshape(m, K)
        H = np.einsum("nkh,mh->nmk", P, U)
        val, g = loss.value_and_gradient(np.einsum("nmk,mk->n", H, A)[:, None], Y)
        gA = np.einsum("nmk,n->mk", H, g[:, 0])
        gU = np.einsum("nkh,mk,n->mh", P, A, g[:, 0])
        return (val + 0.5 * alpha * theta @ theta,
                np.concatenate([gU.ravel(), gA.ravel()]) + alpha * theta)

    return _lbfgs(fg, m * (h + K), seed)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=str(DATA_DIR))
    ap.add_argument("--synthetic", action="store_true", help="random data instead of MNIST-1D")
    ap.add_argument("--n-samples", type=int, default=1000)
    ap.add_argument("--n-starts", type=int, default=3)
    ap.add_argument("--alpha", type=float, default=0.01)
    args = ap.parse_args(argv)

    if args.synthetic:
        rng = np.random.default_rng(0)
        X = rng.standard_normal((4000, 40))
        y = np.argmax(X @ rng.standard_normal((40, 10)) + rng.standard_normal((4000, 10)), axis=1)
    else:
        X, y = load_mnist1d(args.data_dir)
        X = np.asarray(X, dtype=np.float64)
    perm = np.random.default_rng(0).permutation(len(y))
    multi = perm[:args.n_samples]                                  # all ten digits
    two = perm[y[perm] <= 1][:args.n_samples]                      # digits 0 and 1
    Xb, yb = X[two], y[two]
    Yb = np.where(yb == 1, 1.0, -1.0)[:, None]                     # logistic encoding
    X, y = X[multi], y[multi]
    Yc = np.eye(10)[y]                                             # one-hot
    alpha = args.alpha
    logistic, xent = get_loss("logistic"), get_loss("cross_entropy")
    rows = {}

    def record(name, res, convex_value, train, data, width):
        t0 = time.perf_counter()
        runs = [train(*data, seed) for seed in range(args.n_starts)]
        rows[name] = {"convex": convex_value, "network": res.objective,
                      "lower_bound": res.lower_bound, "relative_gap": res.relative_gap,
                      "lbfgs": runs, "lbfgs_seconds": time.perf_counter() - t0,
                      "width": width}

    t0 = time.perf_counter()
    res = circular_cnn(Xb, yb, alpha, loss="logistic", tol=1e-10)
    print(f"circular CNN (n={len(yb)}, d={Xb.shape[1]}): DFT lasso solved in "
          f"{time.perf_counter() - t0:.2f} s, {np.count_nonzero(np.abs(res.w_hat) > 1e-10)} "
          f"of {Xb.shape[1]} frequencies active")
    record("circular CNN", res, res.lasso_objective,
           lambda X_, Y_, s: train_circular_cnn(X_, Y_, alpha, logistic, 4, s), (Xb, Yb),
           "4 channels")

    t0 = time.perf_counter()
    res = linear_network(X, y, alpha, loss="cross_entropy", tol=1e-10)
    print(f"fully connected (n={len(y)}, d={X.shape[1]}, c={res.W.shape[1]}): nuclear-norm "
          f"program solved in {time.perf_counter() - t0:.2f} s, rank {res.W1.shape[1]}")
    record("fully connected", res, res.convex_objective,
           lambda X_, Y_, s: train_linear_network(X_, Y_, alpha, xent, 10, s), (X, Yc),
           "width 10")

    P = extract_patches(Xb, 8, stride=4)
    t0 = time.perf_counter()
    res = linear_cnn(P, yb, alpha, loss="logistic", tol=1e-10)
    print(f"linear CNN (patches K={P.shape[1]}, h={P.shape[2]}): nuclear-norm program solved in "
          f"{time.perf_counter() - t0:.2f} s, rank {res.filters.shape[0]}")
    record("linear CNN", res, res.convex_objective,
           lambda P_, Y_, s: train_linear_cnn(P_, Y_, alpha, logistic, 9, s), (P, Yb),
           "9 filters")

    print(f"\nalpha = {alpha:g}; L-BFGS from {args.n_starts} random starts")
    print(f"{'network':16s} {'convex optimum':>16s} {'recovered net':>16s} "
          f"{'L-BFGS best':>16s} {'L-BFGS worst':>16s} {'rel. gap':>9s}")
    for name, r in rows.items():
        print(f"{name:16s} {r['convex']:16.10f} {r['network']:16.10f} {min(r['lbfgs']):16.10f} "
              f"{max(r['lbfgs']):16.10f} {r['relative_gap']:9.1e}")
        r["lbfgs_excess"] = [(v - r["lower_bound"]) / abs(r["lower_bound"]) for v in r["lbfgs"]]
    worst = max(max(abs(e) for e in r["lbfgs_excess"]) for r in rows.values())
    print(f"\nlargest relative difference L-BFGS vs certified lower bound: {worst:.1e}")
    return {"rows": rows, "alpha": alpha}


if __name__ == "__main__":
    main()
