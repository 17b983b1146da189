"""Optimal two-layer ReLU networks on scalar data are linear splines.

Fits the globally optimal network (any width) to noisy 1-D data with the three
bias treatments of :func:`cvxnn.spline1d.spline1d` and prints, for each, the
objective, its duality-gap certificate and the knots (kink locations):

* ``free`` (unregularised biases and intercept): knots at data points;
* ``regularized`` (the ordinary cvxnn network, bias in the weight decay):
  knots generally between data points;
* ``none``: a single kink at 0.

Then shows the minimum-norm interpolant (``alpha = 0``) and a logistic fit.

Run:  python examples/spline1d.py [--plot spline1d.png]
"""

import argparse

import numpy as np

from cvxnn.spline1d import spline1d


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30, help="number of samples")
    parser.add_argument("--alpha", type=float, default=2e-3, help="weight decay")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", metavar="PNG", default=None,
                        help="save a figure of the fits to this file (needs matplotlib)")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    x = np.sort(rng.uniform(-3, 3, args.n))
    y = np.sin(x) + 0.3 * x + 0.15 * rng.standard_normal(args.n)

    fits = {}
    for bias in ("free", "regularized", "none"):
        s = spline1d(x, y, args.alpha, bias=bias)
        fits[bias] = s
        on_data = int(np.sum(np.min(np.abs(s.knots[:, None] - x[None, :]), axis=1) <= 1e-9))
        print(f"bias={bias:11s}  objective {s.objective:.8f}  relative gap {s.relative_gap:.1e}  "
              f"neurons {s.network.n_neurons:2d}  knots {s.n_knots:2d} ({on_data} at data points)")
        print(f"{'':13s}knots {np.array2string(s.knots, precision=3, max_line_width=200)}")

    s0 = spline1d(x, y, 0.0, bias="free")
    pen = np.sum(np.abs(s0.network.W1[:, 0] * s0.network.W2[:, 0]))
    print(f"alpha=0, free bias: minimum-norm interpolant, max residual "
          f"{np.abs(s0(x) - y).max():.1e}, sum |a||w| = {pen:.4f}, knots {s0.n_knots}")

    labels = np.where(np.sin(2 * x) > 0, "up", "down")
    sl = spline1d(x, labels, 0.01, bias="free", loss="logistic")
    acc = np.mean(sl.predict(x) == labels)
    print(f"logistic, free bias: objective {sl.objective:.6f}, knots "
          f"{np.array2string(sl.knots, precision=3)}, training accuracy {acc:.3f}")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        t = np.linspace(x.min() - 1.0, x.max() + 1.0, 1000)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        ax = axes[0]
        ax.plot(x, y, "k.", label="data")
        for bias, style in (("free", "-"), ("regularized", "--"), ("none", ":")):
            s = fits[bias]
            ax.plot(t, s.evaluate(t), style, label=f"{bias} ({s.n_knots} knots)")
            ax.plot(s.knots, s.values, "o", ms=4, color=ax.lines[-1].get_color())
        ax.plot(t, s0.evaluate(t), "-", lw=0.8, alpha=0.6, label="free, alpha=0")
        ax.set_title(f"squared loss, alpha={args.alpha:g}")
        ax.legend(fontsize=8)
        ax = axes[1]
        ax.plot(x, np.where(labels == sl.classes[1], 1, -1), "k.", label="labels (+-1)")
        ax.plot(t, sl.evaluate(t), "-", label="decision function")
        ax.plot(sl.knots, sl.values, "o", ms=4)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title("logistic loss, free bias")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"figure saved to {args.plot}")


if __name__ == "__main__":
    main()
