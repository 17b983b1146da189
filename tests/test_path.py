"""Regularisation paths: alpha_max in closed form, warm-started/screened paths vs cold solves."""

import importlib
import warnings

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.exceptions import ConvergenceWarning

import cvxnn
from cvxnn._data import augment
from cvxnn.path import PathResult, alpha_max, path

from .conftest import load_table, standardize

# the module itself (``cvxnn.path`` may also be exported as the function)
path_module = importlib.import_module("cvxnn.path")


def _subset(loader, n, d=None, seed=0):
    X, y = loader(return_X_y=True)
    idx = np.random.RandomState(seed).permutation(len(y))[:n]
    X = standardize(X[idx])
    return (X if d is None else X[:, :d]), y[idx]


@pytest.fixture(scope="module")
def cancer():
    return _subset(load_breast_cancer, 120, d=5)


@pytest.fixture(scope="module")
def iris():
    return _subset(load_iris, 90)


@pytest.fixture(scope="module")
def puma():
    X, y = load_table("225_puma8NH")
    idx = np.random.RandomState(0).permutation(len(y))[:1200]
    X = standardize(X[idx])
    y = (y[idx] - y[idx].mean()) / y[idx].std()
    return X, y


def _theta0(Y, loss):
    """-grad L(0, Y), written out for each loss."""
    n, c = Y.shape
    if loss == "squared":
        return Y / n
    if loss == "logistic":
        return Y / (2 * n)
    return (Y - 1.0 / c) / n


def _encoded(y, loss):
    if loss == "squared":
        return np.asarray(y, float).reshape(len(y), -1)
    classes = np.unique(y)
    if loss == "logistic":
        return np.where(y == classes[1], 1.0, -1.0)[:, None]
    return (y[:, None] == classes[None, :]).astype(float)


# --------------------------------------------------------------------------
# alpha_max


@pytest.mark.parametrize("loss", ["squared", "logistic", "cross_entropy"])
def test_alpha_max_gated_closed_form(iris, loss):
    X, y = iris
    if loss == "logistic":
        y = (y == 2).astype(int)
    if loss == "squared":
        y = X[:, 0] - 0.5 * X[:, 1] ** 2
    G = cvxnn.sample_gates(X, 12, random_state=1)
    Xa = augment(X, True)
    D = (Xa @ G > 0).astype(float)
    T = _theta0(_encoded(y, loss), loss)
    expected = max(np.linalg.norm(Xa.T @ (D[:, i] * T[:, k]))
                   for i in range(D.shape[1]) for k in range(T.shape[1]))
    got = alpha_max(X, y, loss=loss, gates=G)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # the same random_state draws the same gates as cvxnn.sample_gates / cvxnn.solve
    assert alpha_max(X, y, loss=loss, n_gates=12, random_state=1) == got


def test_alpha_max_relu_is_the_cone_maximum(cancer):
    cp = pytest.importorskip("cvxpy")
    X, y = cancer
    y = X[:, 0] * X[:, 1] - X[:, 2]
    G = cvxnn.sample_gates(X, 8, random_state=0)
    Xa = augment(X, True)
    D = Xa @ G > 0
    theta = y / len(y)
    best = 0.0
    for i in range(G.shape[1]):
        g = Xa.T @ (D[:, i] * theta)
        S = np.where(D[:, i], 1.0, -1.0)
        for s in (1.0, -1.0):
            v = cp.Variable(Xa.shape[1])
            prob = cp.Problem(cp.Maximize(s * g @ v), [cp.multiply(S, Xa @ v) >= 0, cp.norm(v) <= 1])
            prob.solve(solver="CLARABEL")
            best = max(best, prob.value)
    got = alpha_max(X, y, formulation="relu", gates=G)
    np.testing.assert_allclose(got, best, rtol=1e-6)
    # the cone maximum is below the unconstrained (gated) one
    assert got <= alpha_max(X, y, formulation="gated", gates=G) * (1 + 1e-12)


@pytest.mark.parametrize("formulation,loss", [("gated", "squared"), ("gated", "logistic"),
                                              ("gated", "cross_entropy"), ("relu", "squared"),
                                              ("relu", "logistic")])
def test_zero_network_exactly_above_alpha_max(cancer, formulation, loss):
    X, y = cancer
    if loss == "squared":
        y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2]
    G = cvxnn.sample_gates(X, 10, random_state=0)
    amax = alpha_max(X, y, formulation=formulation, loss=loss, gates=G)
    kw = dict(formulation=formulation, loss=loss, gates=G, patterns="sampled", tol=1e-9)
    above = cvxnn.solve(X, y, amax * (1 + 1e-6), **kw)
    assert above.n_active == 0
    below = cvxnn.solve(X, y, amax * (1 - 1e-3), **kw)
    assert below.n_active >= 1
    L0 = cvxnn.solve(X, y, amax * 10, **kw).objective  # the loss of the zero network
    assert below.objective < L0 * (1 - 1e-9)


@pytest.mark.parametrize("formulation", ["gated", "relu"])
def test_alpha_max_against_clarabel(cancer, formulation):
    pytest.importorskip("cvxpy")
    X, y = cancer
    y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2]
    G = cvxnn.sample_gates(X, 8, random_state=0)
    amax = alpha_max(X, y, formulation=formulation, gates=G)
    L0 = 0.5 * np.mean(y ** 2)
    kw = dict(formulation=formulation, gates=G, patterns="sampled", solver="clarabel", tol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        above = cvxnn.solve(X, y, amax * 1.01, **kw)
        below = cvxnn.solve(X, y, amax * 0.9, **kw)
    np.testing.assert_allclose(above.objective, L0, rtol=1e-6)
    assert below.objective < L0 - 1e-4 * L0


# --------------------------------------------------------------------------
# paths against independent cold solves


def _cold(X, y, pr, **kw):
    return np.array([cvxnn.solve(X, y, a, gates=pr.gates, patterns="sampled", tol=1e-9, **kw).objective
                     for a in pr.alphas])


@pytest.mark.parametrize("formulation,loss", [("gated", "logistic"), ("gated", "cross_entropy"),
                                              ("relu", "squared")])
def test_path_matches_cold_solves(cancer, formulation, loss):
    X, y = cancer
    if loss == "squared":
        y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2]
    kw = dict(formulation=formulation, loss=loss, n_gates=10, random_state=0, tol=1e-8)
    pr = path(X, y, n_alphas=6, eps=1e-2, **kw)
    assert isinstance(pr, PathResult)
    assert np.all(np.diff(pr.alphas) < 0)
    assert np.all(pr.gaps <= 1e-8)
    cold = _cold(X, y, pr, formulation=formulation, loss=loss)
    np.testing.assert_allclose(pr.objectives, cold, rtol=1e-6)
    base = path(X, y, n_alphas=6, eps=1e-2, warm_start=False, screening=False, **kw)
    np.testing.assert_array_equal(base.gates, pr.gates)
    np.testing.assert_allclose(pr.objectives, base.objectives, rtol=1e-6)
    # each result is a full SolveResult whose network has the certified objective
    for a, r in zip(pr.alphas, pr.results):
        assert r.weights[list(r.weights)[0]].shape[-2] == pr.gates.shape[1]
        np.testing.assert_allclose(r.network.objective(X, y, a), r.objective, rtol=1e-5)


def test_gram_path_matches_native_and_cold(puma):
    X, y = puma
    kw = dict(n_gates=20, random_state=0, tol=1e-7)
    pr = path(X, y, n_alphas=10, **kw)
    assert all(r.solver == "gram_newton" for r in pr.results)
    assert np.all(pr.gaps <= 1e-7)
    assert pr.n_active[0] == 0 and pr.n_active[-1] > 5
    native = path(X, y, n_alphas=10, solver="native", **kw)
    np.testing.assert_allclose(pr.objectives, native.objectives, rtol=1e-6)
    cold = _cold(X, y, pr, formulation="gated")
    np.testing.assert_allclose(pr.objectives, cold, rtol=1e-6)


def test_gram_path_several_outputs(puma):
    X, y = puma
    Y = np.column_stack([y, np.tanh(X[:, 0] * X[:, 1])])
    pr = path(X, Y, n_alphas=5, n_gates=15, random_state=1, tol=1e-7)
    assert pr.results[-1].solver == "gram_newton"
    cold = _cold(X, Y, pr, formulation="gated")
    np.testing.assert_allclose(pr.objectives, cold, rtol=1e-6)


def test_path_against_clarabel(cancer):
    pytest.importorskip("cvxpy")
    X, y = cancer
    y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2]
    pr = path(X, y, n_alphas=4, eps=1e-2, n_gates=8, random_state=0, tol=1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = np.array([cvxnn.solve(X, y, a, formulation="gated", gates=pr.gates,
                                    solver="clarabel").objective for a in pr.alphas])
    np.testing.assert_allclose(pr.objectives, ref, rtol=1e-6)


def test_enumerated_patterns_path():
    rng = np.random.RandomState(0)
    X = rng.randn(12, 2)
    y = np.abs(X[:, 0]) - X[:, 1]
    pr = path(X, y, gates="enumerate", n_alphas=4, tol=1e-8)
    assert pr.gates.shape[1] > 10
    assert pr.results[0].certified_over.startswith("all activation patterns")
    cold = [cvxnn.solve(X, y, a, formulation="gated", gates="enumerate", tol=1e-9).objective
            for a in pr.alphas]
    np.testing.assert_allclose(pr.objectives, cold, rtol=1e-6)


# --------------------------------------------------------------------------
# screening never certifies a wrong solution


@pytest.mark.parametrize("formulation,loss", [("gated", "squared"), ("gated", "logistic"),
                                              ("relu", "squared")])
def test_wrong_screening_is_repaired(cancer, monkeypatch, formulation, loss):
    X, y = cancer
    if loss == "squared":
        y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2]

    def bad_keep(self, alpha):  # keep a single pattern: a deliberately wrong screening
        keep = np.zeros(self.D.shape[1], dtype=bool)
        keep[0] = True
        return keep

    monkeypatch.setattr(path_module._WarmPath, "_keep", bad_keep)
    kw = dict(formulation=formulation, loss=loss, n_gates=10, random_state=0, tol=1e-8)
    pr = path(X, y, n_alphas=5, eps=1e-2, **kw)
    assert np.all(pr.gaps <= 1e-8)
    assert pr.n_kept[-1] > 1
    cold = _cold(X, y, pr, formulation=formulation, loss=loss)
    np.testing.assert_allclose(pr.objectives, cold, rtol=1e-6)


def test_gap_safe_screened_blocks_are_zero_at_the_optimum(cancer):
    X, y = cancer
    y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2]
    pr = path(X, y, n_alphas=12, eps=1e-2, n_gates=20, random_state=0, tol=1e-10,
              screening=False)
    Xa = augment(X, True)
    D = Xa @ pr.gates > 0
    cert = path_module._Certifier("gated", Xa, D, y[:, None], "squared")
    n_safe = 0
    for k in range(1, len(pr.alphas)):
        W = pr.results[k - 1].weights["U"]
        _, norms, Theta, _ = cert.certify(W, pr.alphas[k - 1])
        safe = cert.gap_safe(W, Theta, norms, pr.alphas[k])
        U = pr.results[k].weights["U"]
        assert np.all(np.linalg.norm(U, axis=0)[safe] == 0)
        n_safe += int(safe.sum())
    assert n_safe > 0


# --------------------------------------------------------------------------
# grid, reproducibility, parallel cold paths, options


def test_default_grid_is_geometric(cancer):
    X, y = cancer
    pr = path(X, y, loss="logistic", n_alphas=5, eps=1e-2, n_gates=6, random_state=0, tol=1e-6)
    np.testing.assert_allclose(pr.alphas[0], pr.alpha_max, rtol=1e-15)
    np.testing.assert_allclose(pr.alphas[-1], 1e-2 * pr.alpha_max, rtol=1e-12)
    np.testing.assert_allclose(pr.alphas[1:] / pr.alphas[:-1], 10 ** -0.5, rtol=1e-12)
    assert pr.alpha_max == alpha_max(X, y, loss="logistic", n_gates=6, random_state=0)
    assert pr.n_active[0] == 0
    # given alphas are sorted decreasingly
    pr2 = path(X, y, alphas=[0.01, 0.1, 0.05], loss="logistic", n_gates=6, random_state=0)
    np.testing.assert_array_equal(pr2.alphas, [0.1, 0.05, 0.01])


def test_reproducible_with_random_state(cancer):
    X, y = cancer
    kw = dict(loss="logistic", n_alphas=4, eps=1e-2, n_gates=8, tol=1e-7)
    a = path(X, y, random_state=3, **kw)
    b = path(X, y, random_state=3, **kw)
    np.testing.assert_array_equal(a.gates, b.gates)
    np.testing.assert_array_equal(a.objectives, b.objectives)
    np.testing.assert_array_equal(a.gates, cvxnn.sample_gates(X, 8, random_state=3))
    c = path(X, y, random_state=4, **kw)
    assert not np.array_equal(a.gates, c.gates)


def test_cold_path_n_jobs_equals_serial(cancer):
    X, y = cancer
    kw = dict(loss="logistic", n_alphas=4, eps=1e-2, n_gates=8, random_state=0, tol=1e-8,
              warm_start=False, screening=False)
    serial = path(X, y, n_jobs=1, **kw)
    # threads keep the test fast (process start-up dominates on small problems); the
    # loky processes are exercised by the CV estimators' tests
    with joblib.parallel_config(backend="threading"):
        par = path(X, y, n_jobs=2, **kw)
    np.testing.assert_allclose(par.objectives, serial.objectives, rtol=1e-12)
    np.testing.assert_array_equal(par.n_active, serial.n_active)


def test_callback_and_verbose(cancer, capsys):
    X, y = cancer
    seen = []
    pr = path(X, y, loss="logistic", n_alphas=3, n_gates=6, random_state=0, verbose=2,
              callback=lambda i, a, r: seen.append((i, a, r.objective)))
    assert [s[0] for s in seen] == [0, 1, 2]
    np.testing.assert_array_equal([s[1] for s in seen], pr.alphas)
    out = capsys.readouterr().out
    assert out.count("[path]") == 3
    assert "PathResult" in repr(pr)


@pytest.mark.parametrize("kwargs,match", [
    (dict(n_alphas=0), "n_alphas"), (dict(eps=1.5), "eps"), (dict(tol=0), "tol"),
    (dict(formulation="x"), "formulation"), (dict(loss="hinge"), "loss"),
    (dict(alphas=[-1.0]), "alphas"), (dict(gates="all"), "gates"),
    (dict(gates=np.ones((2, 3))), "gates"), (dict(solver="fast"), "solver"),
    (dict(callback=3), "callback"), (dict(verbose=-1), "verbose"),
])
def test_bad_arguments(cancer, kwargs, match):
    X, y = cancer
    with pytest.raises((ValueError, TypeError), match=match):
        path(X, y, n_gates=4, **kwargs)


def test_bad_arguments_alpha_max(cancer):
    X, y = cancer
    with pytest.raises(ValueError, match="formulation"):
        alpha_max(X, y, formulation="both")
    with pytest.raises(ValueError, match="alpha_max is 0"):
        path(X, np.zeros(len(y)), n_gates=4)


def test_gram_path_with_duplicate_patterns(puma):
    # repeated (and rescaled) gates: identical blocks, a singular Gram matrix
    X, y = puma
    G = cvxnn.sample_gates(X, 8, random_state=0)
    pr = path(X, y, gates=np.hstack([G, G, 2 * G]), n_alphas=6, tol=1e-7)
    assert pr.results[-1].solver == "gram_newton" and np.all(pr.gaps <= 1e-7)
    cold = [cvxnn.solve(X, y, a, formulation="gated", gates=G, tol=1e-9).objective
            for a in pr.alphas]
    np.testing.assert_allclose(pr.objectives, cold, rtol=1e-6)


def test_uncertified_gram_solution_falls_back(puma, monkeypatch):
    X, y = puma

    def lazy(self, b, alpha, u0, blocks, **kw):  # returns its start: not a solution
        return np.array(u0, dtype=float)

    monkeypatch.setattr(path_module._GramGroupLasso, "solve", lazy)
    pr = path(X, y, n_alphas=4, n_gates=10, random_state=0, tol=1e-7)
    assert np.all(pr.gaps <= 1e-7)
    assert pr.results[-1].solver == "working_set"
    cold = _cold(X, y, pr, formulation="gated")
    np.testing.assert_allclose(pr.objectives, cold, rtol=1e-6)


def test_alpha_zero_in_the_grid_is_refused_up_front():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 3))
    with pytest.raises(ValueError, match="alphas must be > 0"):
        path(X, X[:, 0], alphas=[1e-2, 0.0])
