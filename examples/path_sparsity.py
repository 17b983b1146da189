"""Sparsity along a regularization path: active neurons grow as alpha decreases.

The gated convex program is a group lasso over activation patterns::

    min_U  ||sum_i D_i Xa U_i - y||^2 / (2 n) + alpha sum_i ||U_i||

so its solution is *sparse*: at ``alpha >= alpha_max`` every block is zero (the
zero network), and as ``alpha`` decreases blocks enter, each one a hidden
neuron of the trained network.  This example solves a 20-point path (shared
gates, warm starts, screening, every point certified by its duality gap) on a
PMLB regression table from ``../shared/data`` (training-set standardization,
a validation split), prints one row per alpha (objective, relative gap, active
neurons, validation R^2), checks the sparsity claim and saves
``examples/output/path_sparsity.png`` (block norms, active neurons, scores).

Run:  python examples/path_sparsity.py [--table 522_pm10] [--n-gates 100]
"""

import argparse
import importlib.util
import time
import warnings
from pathlib import Path

import numpy as np

import cvxnn
from cvxnn.plotting import path_block_norms, path_validation_scores

DATA_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
OUTPUT = Path(__file__).resolve().parent / "output" / "path_sparsity.png"


def data_loader(data_dir):
    """The ``load(name)`` function of ``data_dir/load.py`` (the shared benchmark data)."""
    path = Path(data_dir) / "load.py"
    if not path.is_file():
        raise FileNotFoundError(
            f"{Path(data_dir).resolve()} has no load.py: this example reads the shared data "
            "(../shared/data relative to the repository root); pass --data-dir PATH")
    spec = importlib.util.spec_from_file_location("cvxnn_example_shared_data_load", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load


def split_standardize(X, y, test_size, seed):
    """Random split; features and target standardized with the training statistics."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(X.shape[0])
    n_val = int(round(test_size * X.shape[0]))
    va, tr = perm[:n_val], perm[n_val:]
    mu, sd = X[tr].mean(axis=0), X[tr].std(axis=0)
    sd[sd == 0] = 1.0
    ym, ys = y[tr].mean(), y[tr].std()
    f = lambda A: (A - mu) / sd  # noqa: E731
    return f(X[tr]), (y[tr] - ym) / ys, f(X[va]), (y[va] - ym) / ys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default="522_pm10", help="PMLB regression table")
    parser.add_argument("--n-gates", type=int, default=100)
    parser.add_argument("--n-alphas", type=int, default=20)
    parser.add_argument("--eps", type=float, default=1e-3, help="alpha_min / alpha_max")
    parser.add_argument("--test-size", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=str(DATA_DIR))
    parser.add_argument("--out", default=str(OUTPUT), help="PNG file ('' for none)")
    args = parser.parse_args(argv)

    X, y = data_loader(args.data_dir)(args.table)
    Xtr, ytr, Xva, yva = split_standardize(np.asarray(X, float), np.asarray(y, float),
                                           args.test_size, args.seed)
    print(f"{args.table}: {Xtr.shape[0]} train / {Xva.shape[0]} validation samples, "
          f"{Xtr.shape[1]} features; gated path, {args.n_gates} sampled gates, "
          f"{args.n_alphas} alphas")

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = cvxnn.path(Xtr, ytr, n_alphas=args.n_alphas, eps=args.eps, formulation="gated",
                         n_gates=args.n_gates, tol=1e-6, random_state=args.seed)
    elapsed = time.perf_counter() - t0
    for w in {str(w.message) for w in caught}:
        print(f"warning: {w}")
    scores, _ = path_validation_scores(res, Xva, yva)
    # a solution certified to a relative gap of 1e-6 may keep blocks of negligible
    # norm that the exact optimum sets to zero; "large" counts the blocks above
    # 1e-6 times the largest block norm of the same solution
    N, _ = path_block_norms(res)
    large = np.array([int(np.sum(r > 1e-6 * r.max())) if r.max() > 0 else 0 for r in N])

    print(f"alpha_max = {res.alpha_max:.5g}, path solved in {elapsed:.2f} s\n")
    print(f"{'alpha':>11}  {'objective':>12}  {'rel. gap':>9}  {'active':>6}  {'large':>5}  "
          f"{'val. R^2':>8}")
    for a, obj, gap, k, kl, s in zip(res.alphas, res.objectives, res.gaps, res.n_active, large,
                                     scores):
        print(f"{a:>11.4e}  {obj:>12.6g}  {gap:>9.1e}  {k:>6d}  {kl:>5d}  {s:>8.4f}")

    # the sparsity claim: zero network at alpha_max, more neurons as alpha decreases
    k = res.n_active
    print(f"\nblocks above 1e-6 x the largest: {large[0]} -> {large[-1]}, "
          f"{int(np.sum(np.diff(large) < 0))} decrease(s)")
    drops = int(np.sum(np.diff(k) < 0))
    rank = np.corrcoef(np.argsort(np.argsort(-res.alphas)), np.argsort(np.argsort(k)))[0, 1]
    best = int(np.argmax(scores))
    print(f"active neurons: {k[0]} at alpha_max -> {k[-1]} of {res.gates.shape[1]} at "
          f"alpha_min; {drops} decrease(s) along the path; rank correlation with 1/alpha "
          f"{rank:.3f}")
    print(f"largest relative gap {np.nanmax(res.gaps):.1e}; best validation R^2 "
          f"{scores[best]:.4f} at alpha = {res.alphas[best]:.3g} with {k[best]} neurons")
    assert k[0] == 0 and k[-1] > k[0], "the path should start from the zero network and grow"

    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from cvxnn.plotting import plot_path

        axes = plot_path(res, X_val=Xva, y_val=yva)
        axes[0].set_title(f"{args.table}: gated regularization path "
                          f"({args.n_gates} gates, {args.n_alphas} alphas)", fontsize="medium")
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        axes[0].figure.savefig(out, dpi=110)
        plt.close(axes[0].figure)
        print(f"wrote {out}")
    return res


if __name__ == "__main__":
    main()
