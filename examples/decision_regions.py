"""Decision regions of convex-trained two-layer ReLU networks on 2-D data.

Fits the exact ReLU program and the gated ReLU relaxation on scikit-learn's two
moons at two regularisation strengths and draws, for each network, its decision
regions, the training points and every neuron's hyperplane ``w_j^T x + b_j = 0``
(for the gated networks: the gate lines, where their units switch).
The decision boundary is made of pieces of these lines (math spec 4.4): the
predictor depends on a new point only through the kernel vector ``Xa xa``.

Run:  python examples/decision_regions.py      (writes examples/output/decision_regions.png)
"""

from pathlib import Path
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import make_moons  # noqa: E402

import cvxnn  # noqa: E402
from cvxnn.interpret import kernel_decision_function, neuron_sample_weights  # noqa: E402
from cvxnn.plotting import plot_decision_regions  # noqa: E402

OUT = Path(__file__).resolve().parent / "output"


def main():
    X, y = make_moons(n_samples=80, noise=0.15, random_state=0)
    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    for r, formulation in enumerate(("relu", "gated")):
        for c, alpha in enumerate((1e-2, 1e-3)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = cvxnn.solve(X, y, alpha, formulation=formulation, loss="logistic",
                                  tol=1e-10, n_gates=100, random_state=0)
            net = res.network
            nsw = neuron_sample_weights(res, X, y)
            grid = np.random.default_rng(0).uniform(-2, 3, size=(500, 2))
            err = np.abs(kernel_decision_function(nsw, X, grid) - net.decision_function(grid))
            acc = (net.predict(X) == y).mean()
            print(f"{formulation:5s} alpha={alpha:g}: {net.n_neurons} neurons, relative gap "
                  f"{res.relative_gap:.1e}, train accuracy {acc:.3f}, max |w - Xa^T z|/|w| "
                  f"{nsw.max_residual:.1e}, kernel form error {err.max():.1e}")
            ax = plot_decision_regions(net, X, y, ax=axes[r, c])
            ax.set_title(f"{formulation}, alpha = {alpha:g}: {net.n_neurons} neurons, "
                         f"accuracy {acc:.2f}", fontsize=9)
    fig.tight_layout()
    OUT.mkdir(exist_ok=True)
    path = OUT / "decision_regions.png"
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
