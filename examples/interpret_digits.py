"""Neurons as convex autoencoders: first-layer filters are weighted sums of training images.

At the optimum of the convex program every neuron's first-layer weights (and bias)
are exactly ``Xa^T z_j``: a signed weighted sum of the training samples it fires
on (Ergen & Pilanci; math spec 4.2).  This example trains on the digits 0 and 1
of scikit-learn's 8x8 ``load_digits`` and shows, for each neuron,

* its filter ``w_j`` as an image,
* the weighted sum of its 20 samples with the largest ``|z_j|`` (``sum z_ji x_i``),
  which already looks like the filter,
* its three most heavily weighted training images with their weights,

for the exact ReLU program and the gated ReLU program.

Run:  python examples/interpret_digits.py      (writes examples/output/interpret_digits.png)
"""

from pathlib import Path
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import cvxnn  # noqa: E402
from cvxnn.interpret import kernel_decision_function, neuron_sample_weights  # noqa: E402

OUT = Path(__file__).resolve().parent / "output"
TOP = 20


def main():
    X, y = load_digits(return_X_y=True)
    keep = y < 2
    X, y = X[keep] / 16.0, y[keep]          # pixels in [0, 1]
    rows = []
    for formulation, tol in (("relu", 1e-8), ("gated", 1e-10)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = cvxnn.solve(X, y, 1e-3, formulation=formulation, loss="logistic", tol=tol,
                              n_gates=50, random_state=0)
        nsw = neuron_sample_weights(res, X, y)
        f_kernel = kernel_decision_function(nsw, X, X)
        print(f"{formulation:5s}: {res.network.n_neurons} neurons, relative gap "
              f"{res.relative_gap:.1e}, max |w - Xa^T z| / |w| = {nsw.max_residual:.1e}, "
              f"kernel form vs network: "
              f"{np.abs(f_kernel - res.network.decision_function(X)).max():.1e}, "
              f"train accuracy {(res.network.predict(X) == y).mean():.3f}")
        order = np.argsort(-np.abs(nsw.output_weights[:, 0]))[:4]
        for j in order:
            rows.append((formulation, j, nsw))

    fig, axes = plt.subplots(len(rows), 5, figsize=(9, 1.9 * len(rows)))
    for r, (formulation, j, nsw) in enumerate(rows):
        w = nsw.weights[j, :64]
        idx, z = nsw.top_samples(j, TOP)
        recon = z @ X[idx]                  # weighted sum of the top samples (no bias)
        a = nsw.output_weights[j, 0]
        panels = [(w, f"{formulation} neuron {j}\nfilter, a = {a:+.2f}"),
                  (recon, f"sum of top {TOP}\nz_i x_i")]
        for t in range(3):
            panels.append((X[idx[t]], f"sample {idx[t]} (y={y[idx[t]]})\nz = {z[t]:+.3f}"))
        for c, (img, title) in enumerate(panels):
            ax = axes[r, c]
            lim = np.abs(img).max() or 1.0
            ax.imshow(img.reshape(8, 8), cmap="RdBu_r" if c < 2 else "gray_r",
                      vmin=-lim if c < 2 else 0, vmax=lim)
            ax.set_title(title, fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("digits 0 vs 1: each neuron is a weighted sum of training images", fontsize=10)
    fig.tight_layout()
    OUT.mkdir(exist_ok=True)
    path = OUT / "interpret_digits.png"
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
