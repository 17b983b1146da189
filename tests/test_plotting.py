"""Pictures render to non-blank PNG files of the expected size; ``cvxnn plot`` CLI."""

import types
import warnings

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

import cvxnn  # noqa: E402
from cvxnn.cli import main  # noqa: E402
from cvxnn.plotting import (  # noqa: E402
    clip_line, plot_convergence, plot_decision_regions, plot_rectified_ellipsoid,
    plot_spline1d, rectified_hull,
)

W_IN, H_IN, DPI = 4.0, 3.0, 50       # 200 x 150 pixels


def _axes():
    fig = Figure(figsize=(W_IN, H_IN), dpi=DPI)
    return fig, fig.subplots()


def _check_png(path, width=int(W_IN * DPI), height=int(H_IN * DPI)):
    import matplotlib.image as mpimg

    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(str(path))
    assert img.shape[:2] == (height, width)
    rgb = img[..., :3].reshape(-1, 3)
    assert float(rgb.var()) > 0
    assert np.unique(np.round(rgb * 255).astype(int), axis=0).shape[0] > 1
    return img


@pytest.fixture(scope="module")
def classification_fit():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 2))
    y = np.where(X[:, 0] ** 2 + X[:, 1] > 0.5, "a", "b")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = cvxnn.solve(X, y, 1e-3, loss="logistic", formulation="gated", solver="fista",
                          n_gates=30, random_state=0)
    return X, y, res


def test_spline_plot_with_stand_in(tmp_path):
    rng = np.random.default_rng(1)
    x = np.sort(rng.uniform(-2, 2, 12))
    knots = np.array([-1.0, 0.0, 1.2])
    f = lambda t: np.interp(t, np.r_[-9, knots, 9], np.r_[9, 1, 0, 1.2, 8.0])  # noqa: E731
    sp = types.SimpleNamespace(x=x, y=f(x) + 0.1 * rng.standard_normal(12), knots=knots,
                               values=f(knots), slopes=None, intercept=0.0, classes=None,
                               decision_function=f, evaluate=f)
    fig, ax = _axes()
    assert plot_spline1d(sp, ax=ax) is ax
    line = ax.get_lines()[0].get_xydata()
    np.testing.assert_allclose(line[:, 1], f(line[:, 0]))
    assert line[0, 0] < x.min() and line[-1, 0] > x.max()       # range + margin
    fig.savefig(tmp_path / "spline.png")
    _check_png(tmp_path / "spline.png")
    with pytest.raises(TypeError, match="knots"):
        plot_spline1d(types.SimpleNamespace(x=x, y=x), ax=ax)


def test_spline_plot_real_spline(tmp_path):
    spline1d = pytest.importorskip("cvxnn.spline1d").spline1d
    x = np.linspace(-1, 1, 9)
    sp = spline1d(x, np.abs(x), 1e-3)
    ax = plot_spline1d(sp)           # ax=None: a new pyplot figure
    ax.figure.set_size_inches(W_IN, H_IN)
    ax.figure.savefig(tmp_path / "s.png", dpi=DPI)
    _check_png(tmp_path / "s.png")
    import matplotlib.pyplot as plt

    plt.close(ax.figure)


def test_decision_regions(tmp_path, classification_fit):
    X, y, res = classification_fit
    fig, ax = _axes()
    plot_decision_regions(res.network, X, y, ax=ax)
    # gated network: one dashed line per gate whose hyperplane crosses the axes
    G = np.asarray(res.network.gates)
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert 1 <= len(dashed) <= res.network.n_neurons
    for ln in dashed:                # both end points lie on one gate's hyperplane
        vals = ln.get_xydata() @ G[:, :2].T + G[:, 2]
        assert np.min(np.max(np.abs(vals), axis=0)) < 1e-8
    fig.savefig(tmp_path / "regions.png")
    img = _check_png(tmp_path / "regions.png")
    assert np.unique(np.round(img[..., :3].reshape(-1, 3) * 255).astype(int), axis=0).shape[0] > 4
    with pytest.raises(ValueError, match="2 input features"):
        plot_decision_regions(res.network, np.hstack([X, X]), y, ax=ax)


def test_decision_regions_relu_lines(tmp_path):
    # hand-made ReLU network: f = (x1)_+ - (x2 - 0.5)_+ - 0.25 (x1 + x2 + 1)_+ + (x1 - 10)_+
    W1 = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    b1 = np.array([0.0, -0.5, 1.0, -10.0])       # the last line x1 = 10 is off the axes
    net = cvxnn.TwoLayerReLU(W1, b1, np.array([1.0, -1.0, -0.25, 1.0]))
    X = np.array([[-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [1.0, -1.0]])
    fig, ax = _axes()
    plot_decision_regions(net, X, net.decision_function(X), ax=ax)
    dashed = [ln.get_xydata() for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 3
    for pts, w, b in zip(dashed, W1, b1):
        np.testing.assert_allclose(pts @ w + b, 0.0, atol=1e-12)
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    for pts in dashed:               # clipped to the axes, end points on the border
        assert np.all((pts[:, 0] >= xlim[0] - 1e-12) & (pts[:, 0] <= xlim[1] + 1e-12))
        assert np.all((pts[:, 1] >= ylim[0] - 1e-12) & (pts[:, 1] <= ylim[1] + 1e-12))
    fig.savefig(tmp_path / "relu.png")
    _check_png(tmp_path / "relu.png")


def test_clip_line():
    seg = clip_line([1.0, -1.0], 0.5, (-1, 1), (-1, 1))       # y = x + 0.5
    assert seg.shape == (2, 2)
    np.testing.assert_allclose(seg[:, 0] - seg[:, 1] + 0.5, 0, atol=1e-12)
    assert sorted(map(tuple, np.round(seg, 12))) == [(-1.0, -0.5), (0.5, 1.0)]
    assert clip_line([1.0, 0.0], -5.0, (-1, 1), (-1, 1)) is None     # x = 5 misses
    assert clip_line([0.0, 0.0], 1.0, (-1, 1), (-1, 1)) is None


def test_rectified_ellipsoid(tmp_path):
    X = np.array([[1.0, 0.3, 0.2], [-0.8, 0.5, 0.1]])
    fig, ax = _axes()
    plot_rectified_ellipsoid(X, ax=ax, n_points=200, y=[1.0, -0.5])
    fig.savefig(tmp_path / "ell.png")
    _check_png(tmp_path / "ell.png")
    with pytest.raises(ValueError, match="n = 2"):
        plot_rectified_ellipsoid(np.ones((3, 2)), ax=ax)


def test_rectified_hull_gauge_whitened():
    # whitened rows: Q_X is the quarter disc, and the gauge of y w.r.t. conv(Q u -Q)
    # is ||y_+|| + ||y_-|| (math spec 4.3 (1), minimum-norm interpolation cost)
    Qm, _ = np.linalg.qr(np.random.default_rng(2).standard_normal((4, 2)))
    _, _, hull = rectified_hull(Qm.T, n_points=4000)
    for yv in ([1.0, -2.0], [0.6, 0.8], [-0.3, -0.4]):
        yv = np.asarray(yv)
        g = np.max(hull.equations[:, :2] @ yv / -hull.equations[:, 2])
        expect = np.linalg.norm(np.maximum(yv, 0)) + np.linalg.norm(np.maximum(-yv, 0))
        assert abs(g - expect) <= 1e-5 * expect


def test_convergence(tmp_path, classification_fit):
    _, _, res = classification_fit
    assert len(res.history) > 3
    fig, ax = _axes()
    plot_convergence(res, ax=ax)
    xy = ax.get_lines()[0].get_xydata()
    H = np.asarray(res.history, dtype=float)
    np.testing.assert_allclose(xy[:, 0], H[:, 1])
    np.testing.assert_allclose(xy[:, 1], np.maximum(H[:, 2], 1e-17))
    fig.savefig(tmp_path / "conv.png")
    _check_png(tmp_path / "conv.png")
    with pytest.raises(ValueError, match="empty"):
        plot_convergence(types.SimpleNamespace(history=[]), ax=ax)


# ------------------------------------------------------------------------ CLI
@pytest.fixture()
def csv2d(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    lab = np.where(X[:, 0] - X[:, 1] ** 2 > -0.5, "yes", "no")
    path = tmp_path / "d.csv"
    rows = ["a,b,c,label"] + [f"{r[0]},{r[1]},{r[2]},{s}" for r, s in zip(X, lab)]
    path.write_text("\n".join(rows) + "\n")
    return path


def _run(args, capsys):
    code = main(args)
    return code, capsys.readouterr()


SMALL = ["--size", "4", "3", "--dpi", "50"]


def test_cli_regions_and_convergence(tmp_path, csv2d, capsys):
    out = tmp_path / "r.png"
    code, cap = _run(["plot", "regions", "--csv", str(csv2d), "--target", "label",
                      "--features", "a", "b", "--formulation", "gated", "--gates", "20",
                      "--out", str(out)] + SMALL, capsys)
    assert code == 0, cap.err
    _check_png(out)
    out2 = tmp_path / "c.png"
    code, cap = _run(["plot", "convergence", "--data", str(csv2d), "--target", "label",
                      "--formulation", "gated", "--solver", "fista", "--gates", "20",
                      "--out", str(out2)] + SMALL, capsys)
    assert code == 0, cap.err
    _check_png(out2)
    # refuses to overwrite, then overwrites with --overwrite
    code, cap = _run(["plot", "ellipsoid", "--out", str(out)] + SMALL, capsys)
    assert code == 2 and "already exists" in cap.err
    code, cap = _run(["plot", "ellipsoid", "--out", str(out), "--overwrite"] + SMALL, capsys)
    assert code == 0, cap.err
    _check_png(out)


def test_cli_ellipsoid_from_csv_rows(tmp_path, csv2d, capsys):
    out = tmp_path / "e.png"
    code, cap = _run(["plot", "ellipsoid", "--csv", str(csv2d), "--drop", "label",
                      "--rows", "3", "7", "--out", str(out)] + SMALL, capsys)
    assert code == 0, cap.err
    _check_png(out)


def test_cli_spline(tmp_path, capsys):
    pytest.importorskip("cvxnn.spline1d")
    path = tmp_path / "s.csv"
    x = np.linspace(-2, 2, 15)
    path.write_text("x,y\n" + "\n".join(f"{a},{abs(a) + 0.1 * np.sin(5 * a)}" for a in x))
    out = tmp_path / "s.png"
    code, cap = _run(["plot", "spline", "--csv", str(path), "--target", "y", "--alpha", "1e-3",
                      "--out", str(out)] + SMALL, capsys)
    assert code == 0, cap.err
    _check_png(out)


@pytest.mark.parametrize("args,msg", [
    (["plot", "wiggle", "--out", "x.png"], "invalid choice"),
    (["plot", "regions"], "--out"),
    (["plot", "regions", "--out", "OUT/x.png"], "needs data"),
    (["plot", "ellipsoid", "--out", "NOPE/x.png"], "does not exist"),
    (["plot", "ellipsoid", "--out", "OUT/x.unknownfmt"], "unknown image format"),
    (["plot", "regions", "--csv", "CSV", "--target", "label", "--features", "a", "zz",
      "--out", "OUT/x.png"], "--features"),
    (["plot", "regions", "--csv", "CSV", "--target", "label", "--features", "a",
      "--out", "OUT/x.png"], "exactly 2"),
    (["plot", "regions", "--csv", "CSV", "--target", "nope", "--out", "OUT/x.png"], "nope"),
    (["plot", "ellipsoid", "--csv", "CSV", "--drop", "label", "--rows", "0", "0",
      "--out", "OUT/x.png"], "--rows"),
    (["plot", "spline", "--dataset", "iris", "--target", "x", "--out", "OUT/x.png"], "--target"),
])
def test_cli_bad_arguments(tmp_path, csv2d, capsys, args, msg):
    args = [a.replace("OUT", str(tmp_path)).replace("CSV", str(csv2d)) if a != "NOPE/x.png"
            else str(tmp_path / "nope" / "x.png") for a in args]
    code, cap = _run(args, capsys)
    assert code == 2
    assert msg in cap.err and "Traceback" not in cap.err
    assert not (tmp_path / "x.png").exists()
