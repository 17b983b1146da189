"""Bad input gets a clear error naming the problem (never a deep numpy traceback)."""

import numpy as np
import pytest

import cvxnn

rng = np.random.default_rng(0)
X = rng.standard_normal((20, 3))
y = X[:, 0] - X[:, 1]
labels = np.where(X[:, 0] > 0, "yes", "no")


@pytest.mark.parametrize("Xbad, match", [
    (np.where(np.eye(20, 3) > 0, np.nan, X), "NaN or infinity"),
    (np.where(np.eye(20, 3) > 0, np.inf, X), "NaN or infinity"),
    (X[:, 0], "2-D"),
    (X[None], "2-D"),
    (X[:1], "at least 2"),
    (np.zeros((20, 0)), "0 features"),
    (np.array([["a", "b", "c"]] * 20, dtype=object), "non-numeric"),
])
def test_bad_X(Xbad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        cvxnn.solve(Xbad, y[: len(np.atleast_2d(Xbad))] if np.ndim(Xbad) == 2 else y, 1e-3)


def test_bad_y():
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        cvxnn.solve(X, y[:-1], 1e-3)
    with pytest.raises(ValueError, match="NaN or infinity"):
        cvxnn.solve(X, np.where(np.arange(20) == 3, np.nan, y), 1e-3)
    with pytest.raises(ValueError, match="single class"):
        cvxnn.solve(X, np.ones(20, dtype=int), 1e-3, loss="logistic")
    with pytest.raises(ValueError, match="2 classes|binary"):
        cvxnn.solve(X, np.arange(20) % 3, 1e-3, loss="logistic")
    with pytest.raises(TypeError, match="mixes label types"):
        cvxnn.solve(X, np.array(["a", 1] * 10, dtype=object), 1e-3, loss="cross_entropy")


@pytest.mark.parametrize("alpha", [-1.0, np.nan, np.inf])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        cvxnn.solve(X, y, alpha)


def test_bad_options():
    with pytest.raises(ValueError, match="formulation"):
        cvxnn.solve(X, y, 1e-3, formulation="deep")
    with pytest.raises(ValueError, match="loss"):
        cvxnn.solve(X, y, 1e-3, loss="hinge")
    with pytest.raises(ValueError, match="solver"):
        cvxnn.solve(X, y, 1e-3, solver="sgd")
    with pytest.raises(ValueError, match="tol"):
        cvxnn.solve(X, y, 1e-3, tol=0)
    with pytest.raises(ValueError, match="max_iter"):
        cvxnn.solve(X, y, 1e-3, max_iter=0)
    with pytest.raises(ValueError, match="n_gates"):
        cvxnn.solve(X, y, 1e-3, n_gates=0)
    with pytest.raises(ValueError, match="gates"):
        cvxnn.solve(X, y, 1e-3, gates=np.ones((7, 4)))
    with pytest.raises(ValueError, match="gates"):
        cvxnn.solve(X, y, 1e-3, gates=np.ones((4, 4)), bias=False)
    with pytest.raises(ValueError, match="gates"):
        cvxnn.solve(X, y, 1e-3, gates="random")


def test_sparse_input_is_refused_clearly():
    sp = pytest.importorskip("scipy.sparse")
    with pytest.raises(TypeError, match="sparse"):
        cvxnn.solve(sp.csr_matrix(X), y, 1e-3)


def test_integer_and_float32_input_accepted():
    r = cvxnn.solve(np.round(X * 10).astype(int), y, 1e-2, formulation="gated", n_gates=10,
                    random_state=0)
    assert np.isfinite(r.objective)
    r = cvxnn.solve(X.astype(np.float32), y, 1e-2, formulation="gated", n_gates=10, random_state=0)
    assert r.weights["U"].dtype == np.float64


def test_huge_alpha_gives_zero_network_with_zero_gap():
    r = cvxnn.solve(X, y, 1e6, formulation="gated", n_gates=10, random_state=0)
    assert r.n_active == 0
    assert r.relative_gap <= 1e-12
    r = cvxnn.solve(X, y, 1e6, formulation="relu", n_gates=10, random_state=0)
    assert r.n_active == 0
    assert r.network.n_neurons == 0
    np.testing.assert_allclose(r.network.predict(X), 0.0)
