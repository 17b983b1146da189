"""The rectified ellipsoid of two samples and the cost of interpolation (math spec 4.1).

For data ``X`` with ``n = 2`` rows, ``Q_X = {(Xu)_+ : ||u|| <= 1}`` is the set of all
unit-neuron outputs on the training set.  The minimum weight-decay cost of a
network interpolating ``y`` (bias-free, ``sum_j |alpha_j|`` with unit neurons) is the
gauge of ``y`` with respect to ``C = conv(Q_X ∪ -Q_X)``; optimal neurons are extreme
points of ``C``.  Three panels: whitened rows (``X X^T = I``: ``Q_X`` is a quarter
disc, no spikes), a generic matrix (rectification creates "spikes" along the axes,
which become extreme points), and rank-one data.  For each, the gauge read off the
convex hull is compared with the group-norm cost of the convex program solved by
cvxnn with a tiny ``alpha`` (the interpolation limit).

Run:  python examples/rectified_ellipsoid.py      (writes examples/output/rectified_ellipsoid.png)
"""

from pathlib import Path
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import cvxnn  # noqa: E402
from cvxnn.plotting import plot_rectified_ellipsoid, rectified_hull  # noqa: E402

OUT = Path(__file__).resolve().parent / "output"


def main():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((3, 2)))
    cases = [
        ("whitened (X X^T = I)", Q.T),
        ("generic", np.array([[1.0, 0.3, 0.2], [-0.8, 0.5, 0.1]])),
        ("rank one, mixed signs", np.outer([1.0, -0.6], [0.6, 0.8, 0.0])),
    ]
    y = np.array([0.9, -0.4])
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    for ax, (name, X) in zip(axes, cases):
        _, _, hull = rectified_hull(X, n_points=4000)
        gauge = float(np.max(hull.equations[:, :2] @ y / -hull.equations[:, 2]))
        # interpolation limit of the convex program: alpha -> 0, cost = sum of block norms
        alpha = 1e-7
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = cvxnn.solve(X, y, alpha, gates="enumerate", bias=False, tol=1e-10)
        cost = np.linalg.norm(res.weights["V"], axis=0).sum() + \
            np.linalg.norm(res.weights["W"], axis=0).sum()
        fit = np.abs(res.network.decision_function(X) - y).max()
        print(f"{name:24s} gauge from the hull {gauge:.5f}   convex program cost {cost:.5f} "
              f"(alpha={alpha:g}, fit error {fit:.1e}, {res.network.n_neurons} neurons)")
        plot_rectified_ellipsoid(X, ax=ax, y=y)
        ax.set_title(f"{name}\ngauge {gauge:.4f}, convex program {cost:.4f}", fontsize=9)
    fig.tight_layout()
    OUT.mkdir(exist_ok=True)
    path = OUT / "rectified_ellipsoid.png"
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
