"""Regularization-path pictures (``plot_path``, ``plot_path_convergence``) and ``cvxnn path``.

The plotted data are read back from the Axes and compared with quantities the
test recomputes itself: group norms from the convex weights, validation scores
with scikit-learn's metrics on each network's predictions, the grid and the
path's certificates.  The CLI is compared with a direct :func:`cvxnn.path` call
on data standardized by the test.
"""

import json
import warnings

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402
from sklearn.datasets import load_diabetes, load_iris  # noqa: E402
from sklearn.metrics import accuracy_score, r2_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import cvxnn  # noqa: E402
from cvxnn.cli import main  # noqa: E402
from cvxnn.plotting import (  # noqa: E402
    path_block_norms, path_validation_scores, plot_path, plot_path_convergence,
)

W_IN, H_IN, DPI = 5.0, 6.0, 50       # 250 x 300 pixels


def _check_png(path, width, height):
    import matplotlib.image as mpimg

    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(str(path))
    assert img.shape[:2] == (height, width)
    rgb = img[..., :3].reshape(-1, 3)
    assert float(rgb.var()) > 0
    assert np.unique(np.round(rgb * 255).astype(int), axis=0).shape[0] > 1


def _quiet_path(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cvxnn.path(*args, **kwargs)


@pytest.fixture(scope="module")
def regression_path():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 3))
    y = np.maximum(X @ np.array([1.0, -1.0, 0.5]), 0.0) - 0.5 * np.maximum(X[:, 0], 0) \
        + 0.1 * rng.standard_normal(100)
    Xtr, ytr, Xva, yva = X[:70], y[:70], X[70:], y[70:]
    res = _quiet_path(Xtr, ytr, n_alphas=8, n_gates=15, random_state=0)
    return res, Xtr, ytr, Xva, yva


@pytest.fixture(scope="module")
def relu_classification_path():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((80, 2))
    y = np.where(X[:, 0] * X[:, 1] > 0, "a", "b")
    res = _quiet_path(X[:60], y[:60], n_alphas=5, n_gates=10, formulation="relu",
                      loss="logistic", random_state=1)
    return res, X[60:], y[60:]


def _norms_from_weights(res):
    """Group norms recomputed here: one per column ``W[:, i, k]`` of each weight array."""
    out = {}
    for key, A in res.weights.items():
        A = np.asarray(A)
        for i in range(A.shape[1]):
            for k in range(A.shape[2]):
                out[f"{key}[{i},{k}]"] = float(np.sqrt(np.sum(A[:, i, k] ** 2)))
    return out


def _panels(what=("norms", "active", "scores")):
    fig = Figure(figsize=(W_IN, H_IN), dpi=DPI)
    axes = fig.subplots(len(what), 1, sharex=True, squeeze=False)[:, 0]
    return fig, axes


def _line(axes_list, label):
    found = [ln for ax in axes_list for ln in ax.get_lines() if ln.get_label() == label]
    assert len(found) == 1, f"expected one line labelled {label!r}, found {len(found)}"
    return found[0]


def test_plot_path_renders_png(tmp_path, regression_path):
    res, _, _, Xva, yva = regression_path
    fig, axes = _panels()
    out = plot_path(res, X_val=Xva, y_val=yva, axes=axes)
    assert out.shape == (3,) and all(a is b for a, b in zip(out, axes))
    fig.tight_layout()
    png = tmp_path / "path.png"
    fig.savefig(png, dpi=DPI)
    _check_png(png, int(W_IN * DPI), int(H_IN * DPI))
    # decreasing alpha from left to right, on a log axis
    for ax in axes:
        assert ax.get_xscale() == "log"
        lo, hi = ax.get_xlim()
        assert lo > hi
        assert np.isclose(lo, res.alphas.max()) and np.isclose(hi, res.alphas.min())


def test_plot_path_default_figure(tmp_path, regression_path):
    import matplotlib.pyplot as plt

    res = regression_path[0]
    axes = plot_path(res, what=("active",))
    assert axes.shape == (1,)
    png = tmp_path / "default.png"
    axes[0].figure.savefig(png, dpi=40)
    w, h = axes[0].figure.get_size_inches()
    _check_png(png, int(round(w * 40)), int(round(h * 40)))
    plt.close(axes[0].figure)


def test_plotted_data_equal_path_values(regression_path):
    res, _, _, Xva, yva = regression_path
    fig, axes = _panels()
    plot_path(res, X_val=Xva, y_val=yva, axes=axes)
    every = fig.axes  # includes the twin axes of the scores panel
    alphas = res.alphas
    assert np.all(np.diff(alphas) < 0)

    # active neurons panel: one point per alpha, equal to n_active
    active = _line([axes[1]], "active neurons")
    np.testing.assert_array_equal(active.get_xdata(), alphas)
    np.testing.assert_array_equal(active.get_ydata(), res.n_active)
    # n_active is the number of non-zero blocks of each solution
    np.testing.assert_array_equal(
        res.n_active,
        [sum(v > 0 for v in _norms_from_weights(r).values()) for r in res.results])
    assert res.n_active[0] == 0 and res.n_active[-1] > 0

    # norms panel: one line per block non-zero somewhere, values = recomputed group norms
    recomputed = [_norms_from_weights(r) for r in res.results]
    ever = {b for b in recomputed[0] if any(rc[b] > 0 for rc in recomputed)}
    lines = {ln.get_gid(): ln for ln in axes[0].get_lines() if ln.get_gid()}
    assert set(lines) == ever and len(ever) > 1
    for block, ln in lines.items():
        np.testing.assert_array_equal(ln.get_xdata(), alphas)
        np.testing.assert_allclose(ln.get_ydata(), [rc[block] for rc in recomputed],
                                   rtol=1e-12, atol=0)

    # scores panel: objective, gap and validation R^2 (sklearn on each network)
    np.testing.assert_array_equal(_line(every, "training objective").get_ydata(),
                                  res.objectives)
    gap_y = _line(every, "relative duality gap").get_ydata()
    np.testing.assert_array_equal(gap_y, np.where(res.gaps > 0, res.gaps, np.nan))
    r2 = [r2_score(yva, r.network.predict(Xva)) for r in res.results]
    np.testing.assert_allclose(_line(every, "validation R^2").get_ydata(), r2, rtol=1e-12,
                               atol=1e-12)
    scores, kind = path_validation_scores(res, Xva, yva)
    assert kind == "r2"
    np.testing.assert_allclose(scores, r2, rtol=1e-12, atol=1e-12)


def test_relu_classification_path_plot(tmp_path, relu_classification_path):
    res, Xva, yva = relu_classification_path
    fig, axes = _panels(("scores", "norms"))
    plot_path(res, X_val=Xva, y_val=yva, axes=axes, what=("scores", "norms"))
    acc = [accuracy_score(yva, r.network.predict(Xva)) for r in res.results]
    np.testing.assert_allclose(_line(fig.axes, "validation accuracy").get_ydata(), acc)
    # relu blocks: V[i,k] and W[i,k], norms recomputed from the weights
    recomputed = [_norms_from_weights(r) for r in res.results]
    assert any(k.startswith("V[") for k in recomputed[0])
    assert any(k.startswith("W[") for k in recomputed[0])
    lines = {ln.get_gid(): ln for ln in axes[1].get_lines() if ln.get_gid()}
    assert lines and set(lines) == {b for b in recomputed[0]
                                    if any(rc[b] > 0 for rc in recomputed)}
    for block, ln in lines.items():
        np.testing.assert_allclose(ln.get_ydata(), [rc[block] for rc in recomputed],
                                   rtol=1e-12, atol=0)
    N, names = path_block_norms(res)
    assert N.shape == (len(res.alphas), len(recomputed[0]))
    fig.tight_layout()
    png = tmp_path / "relu.png"
    fig.savefig(png, dpi=DPI)
    _check_png(png, int(W_IN * DPI), int(H_IN * DPI))


def test_plot_path_convergence(tmp_path, regression_path):
    res = regression_path[0]
    fig = Figure(figsize=(4.0, 3.0), dpi=DPI)
    ax = plot_path_convergence(res, ax=fig.subplots())
    pts = _line([ax], "path points (final gap)")
    np.testing.assert_allclose(pts.get_xdata(), np.cumsum(res.times), rtol=1e-12)
    np.testing.assert_array_equal(pts.get_ydata(), np.where(res.gaps > 0, res.gaps, np.nan))
    assert res.gaps[0] == 0  # the zero network at alpha_max: a tick at the bottom
    zero = _line([ax], "path points with gap 0")
    np.testing.assert_allclose(zero.get_xdata(), np.cumsum(res.times)[res.gaps == 0])
    png = tmp_path / "conv.png"
    fig.savefig(png, dpi=DPI)
    _check_png(png, 200, 150)


def test_plot_path_bad_input(regression_path):
    res, _, _, Xva, yva = regression_path
    fig, axes = _panels()
    with pytest.raises(ValueError, match="what"):
        plot_path(res, axes=axes, what=("norms", "bogus", "scores"))
    with pytest.raises(ValueError, match="X_val"):
        plot_path(res, X_val=Xva, axes=axes)
    with pytest.raises(ValueError, match="axes"):
        plot_path(res, axes=axes[:2])
    with pytest.raises(TypeError, match="PathResult"):
        plot_path(object(), axes=axes)
    with pytest.raises(ValueError, match="features"):
        path_validation_scores(res, Xva[:, :2], yva)
    with pytest.raises(ValueError, match="y_val"):
        path_validation_scores(res, Xva, yva[:-1])


# ----------------------------------------------------------------------- CLI
def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _standardize(A):
    A = np.asarray(A, dtype=np.float64)
    return (A - A.mean(axis=0)) / A.std(axis=0)


def test_cli_path_plot_writes_png(tmp_path, capsys):
    png = tmp_path / "p.png"
    code, out, err = _run(capsys, "path", "--dataset", "iris", "--n-alphas", "5", "--gates",
                          "10", "--plot", png, "--size", W_IN, H_IN, "--dpi", DPI)
    assert code == 0, err
    _check_png(png, int(W_IN * DPI), int(H_IN * DPI))
    assert "alpha_max" in out and "val. accuracy" in out and f"wrote {png}" in out
    assert len([ln for ln in out.splitlines() if ln[:3].strip().isdigit()]) == 5
    # an existing file is kept without --overwrite
    code, _, err = _run(capsys, "path", "--dataset", "iris", "--plot", png)
    assert code == 2 and "--overwrite" in err and err.count("\n") == 1


def test_cli_path_json_equals_direct_call(capsys):
    code, out, err = _run(capsys, "path", "--dataset", "iris", "--n-alphas", "6", "--eps",
                          "1e-2", "--gates", "12", "--test-size", "0", "--random-state", "3",
                          "--json")
    assert code == 0, err
    rep = json.loads(out)
    X, y = load_iris(return_X_y=True)
    direct = _quiet_path(_standardize(X), y, n_alphas=6, eps=1e-2, n_gates=12,
                         loss="cross_entropy", random_state=3, classification=True)
    assert rep["loss"] == "cross_entropy" and rep["formulation"] == "gated"
    np.testing.assert_allclose(rep["alphas"], direct.alphas, rtol=1e-12)
    np.testing.assert_allclose(rep["objectives"], direct.objectives, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(rep["n_active"], direct.n_active)
    assert len(rep["gaps"]) == len(rep["times"]) == 6
    assert all(g is None or g < 1e-5 for g in rep["gaps"])
    assert rep["validation_scores"] is None and rep["n_validation"] == 0


def test_cli_path_json_regression_split(capsys):
    code, out, err = _run(capsys, "path", "--dataset", "diabetes", "--alphas",
                          "0.1,0.3,0.01,0.03", "--gates", "15", "--test-size", "0.3",
                          "--random-state", "1", "--json")
    assert code == 0, err
    rep = json.loads(out)
    X, y = load_diabetes(return_X_y=True)
    Xtr, Xva, ytr, yva = train_test_split(X, y, test_size=0.3, random_state=1)
    mu, sd = Xtr.mean(axis=0), Xtr.std(axis=0)
    ym, ys = ytr.mean(), ytr.std()
    direct = _quiet_path((Xtr - mu) / sd, (ytr - ym) / ys, alphas=[0.3, 0.1, 0.03, 0.01],
                         n_gates=15, random_state=1)
    assert rep["alphas"] == [0.3, 0.1, 0.03, 0.01]
    assert rep["n_train"] == len(ytr) and rep["n_validation"] == len(yva)
    np.testing.assert_allclose(rep["objectives"], direct.objectives, rtol=0, atol=1e-8)
    # validation R^2 in raw units equals the standardized one (sklearn on each network)
    r2 = [r2_score(yva, ym + ys * r.network.predict((Xva - mu) / sd)) for r in direct.results]
    assert rep["score"] == "r2"
    np.testing.assert_allclose(rep["validation_scores"], r2, rtol=0, atol=1e-8)


@pytest.mark.parametrize("argv, fragment", [
    (["--dataset", "iris", "--alphas", "1,x"], "--alphas"),
    (["--dataset", "iris", "--alphas", "0.1,0"], "--alphas"),
    (["--dataset", "iris", "--alphas", "0.1", "--n-alphas", "5"], "--alphas"),
    (["--dataset", "iris", "--eps", "1.5"], "--eps"),
    (["--dataset", "iris", "--n-alphas", "0"], "--n-alphas"),
    (["--dataset", "iris", "--test-size", "0.999"], "--test-size"),
    (["--dataset", "diabetes", "--loss", "logistic"], "classification loss"),
    (["--dataset", "iris", "--target", "x"], "--target"),
    (["--dataset", "iris", "--plot", "out.unknownext"], "image format"),
    (["--dataset", "iris", "--plot", "no/such/dir/p.png"], "does not exist"),
    (["--csv", "no_such_file.csv", "--target", "a"], "not found"),
    (["--dataset", "nope"], "invalid choice"),
    ([], "required"),
])
def test_cli_path_bad_arguments(capsys, tmp_path, monkeypatch, argv, fragment):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, "path", *argv)
    assert code == 2
    assert err.startswith("cvxnn: error:") and err.count("\n") == 1 and fragment in err
    assert out == ""


def test_cli_path_cold_equals_warm(capsys):
    """Independent solves (--no-warm-start) reach the same optima as the warm path."""
    base = ["path", "--dataset", "wine", "--n-alphas", "4", "--eps", "0.05", "--gates", "8",
            "--test-size", "0.3", "--json", "--tol", "1e-8"]
    code, out, err = _run(capsys, *base)
    assert code == 0, err
    warm = json.loads(out)
    code, out, err = _run(capsys, *base, "--no-warm-start")
    assert code == 0, err
    cold = json.loads(out)
    assert cold["warm_start"] is False and cold["screening"] is False
    np.testing.assert_allclose(cold["alphas"], warm["alphas"], rtol=1e-12)
    np.testing.assert_allclose(cold["objectives"], warm["objectives"], rtol=1e-6)
    assert warm["score"] == "accuracy"
    assert all(0.0 <= s <= 1.0 for s in warm["validation_scores"])


def test_cli_path_interrupt_returns_130(capsys, monkeypatch):
    import sys

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sys.modules["cvxnn.path"], "path", interrupted)
    code, out, err = _run(capsys, "path", "--dataset", "iris")
    assert code == 130 and "interrupted" in err
