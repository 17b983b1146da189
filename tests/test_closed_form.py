"""Closed-form networks (whitened, rank-one) and the spike-free program, math spec 4.3 / 4.6.

Oracles: Clarabel on the exact convex program over all activation patterns
(``cvxnn.solve(..., gates="enumerate", solver="clarabel")``), cvxpy models
written here (the two-neuron program; minimum-norm interpolation over all
patterns), and least squares for ``alpha = 0``.
"""

import warnings

import numpy as np
import pytest

import cvxnn
from cvxnn.closed_form import ClosedFormResult, is_spike_free, rank_one, spike_free, whitened

pytestmark = pytest.mark.filterwarnings("ignore:cvxpy solver CLARABEL returned status")


def clarabel_optimum(X, y, alpha):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = cvxnn.solve(X, y, alpha, formulation="relu", gates="enumerate", bias=False,
                          solver="clarabel")
    return res.objective


def whitened_data(seed, n=6, d=8):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((d, n)))
    return Q.T, rng.standard_normal(n)


def rank_one_data(seed, n=7, d=3, sign=None):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal(n)
    c = np.abs(c) if sign == "pos" else c
    if sign is None:  # make sure c has both signs
        c[0], c[1] = abs(c[0]), -abs(c[1])
    a = rng.standard_normal(d)
    return np.outer(c, a / np.linalg.norm(a)) * 1.7, rng.standard_normal(n), c


def check_result(res, X, y, alpha, max_neurons=2):
    assert isinstance(res, ClosedFormResult)
    net = res.network
    assert net.b1 is None and net.n_neurons <= max_neurons
    assert res.objective == pytest.approx(net.objective(X, y, alpha), rel=1e-13, abs=1e-15)
    # balanced weights: ||u_j|| = |a_j|
    np.testing.assert_allclose(np.linalg.norm(net.W1, axis=1), np.abs(net.W2[:, 0]), rtol=1e-12)
    assert res.lower_bound <= res.objective * (1 + 1e-12) + 1e-15


# ----------------------------------------------------------------- whitened
def whitened_alphas(y):
    n = y.size
    lo, hi = sorted([np.linalg.norm(np.maximum(y, 0)), np.linalg.norm(np.maximum(-y, 0))])
    # small, moderate, one neuron switched off, both off
    return [1e-3, 0.2 * lo / n, 0.5 * (lo + hi) / n, 1.1 * hi / n]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_whitened_equals_clarabel_optimum(seed):
    X, y = whitened_data(seed)
    n = y.size
    for alpha, n_on in zip(whitened_alphas(y), [2, 2, 1, 0]):
        res = whitened(X, y, alpha)
        check_result(res, X, y, alpha)
        assert res.network.n_neurons == n_on
        ref = clarabel_optimum(X, y, alpha)
        assert abs(res.objective - ref) <= 1e-8 * ref, (alpha, res.objective, ref)
        assert res.gap <= 1e-12 * res.objective
    # both neurons off: the zero network
    res = whitened(X, y, whitened_alphas(y)[-1])
    assert res.objective == pytest.approx(y @ y / (2 * n), rel=1e-14)


def test_whitened_formula_and_alpha_zero():
    X, y = whitened_data(3, n=5, d=5)
    yp, ym = np.maximum(y, 0), np.maximum(-y, 0)
    res = whitened(X, y, 0.0)
    net = res.network
    # interpolation with cost ||y+|| + ||y-|| (path norm), two neurons along X^T y+-
    np.testing.assert_allclose(net.forward(X)[:, 0], y, atol=1e-12)
    path = np.sum(np.linalg.norm(net.W1, axis=1) * np.abs(net.W2[:, 0]))
    assert path == pytest.approx(np.linalg.norm(yp) + np.linalg.norm(ym), rel=1e-12)
    dirs = net.W1 / np.linalg.norm(net.W1, axis=1, keepdims=True)
    want = np.array([X.T @ yp / np.linalg.norm(yp), X.T @ ym / np.linalg.norm(ym)])
    np.testing.assert_allclose(dirs, want, atol=1e-12)
    assert res.objective < 1e-25
    # the fit of the closed form at alpha > 0
    beta = y.size * 0.1
    fit = (max(0, 1 - beta / np.linalg.norm(yp)) * yp - max(0, 1 - beta / np.linalg.norm(ym)) * ym)
    np.testing.assert_allclose(whitened(X, y, 0.1).network.forward(X)[:, 0], fit, atol=1e-12)


# ----------------------------------------------------------------- rank one
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rank_one_equals_clarabel_optimum(seed):
    X, y, c = rank_one_data(seed)
    n = y.size
    cp, cm = np.maximum(c, 0) * 1.7, np.maximum(-c, 0) * 1.7
    lo, hi = sorted([abs(cp @ y), abs(cm @ y)])
    for alpha, n_on in [(1e-3, 2), (0.3 * lo / n, 2), (0.5 * (lo + hi) / n, 1), (1.1 * hi / n, 0)]:
        res = rank_one(X, y, alpha)
        check_result(res, X, y, alpha)
        assert res.network.n_neurons == n_on
        ref = clarabel_optimum(X, y, alpha)
        assert abs(res.objective - ref) <= 1e-8 * ref, (alpha, res.objective, ref)


def test_rank_one_alpha_zero_is_least_squares():
    X, y, c = rank_one_data(4, n=6, d=4)
    c = X @ np.linalg.svd(X)[2][0]
    B = np.column_stack([np.maximum(c, 0), np.maximum(-c, 0)])
    coef = np.linalg.lstsq(B, y, rcond=None)[0]
    res = rank_one(X, y, 0.0)
    check_result(res, X, y, 0.0)
    np.testing.assert_allclose(res.network.forward(X)[:, 0], B @ coef, atol=1e-12)


# ----------------------------------------------------------------- spike-free program
def two_neuron_program(X, y, alpha):
    """cvxpy + Clarabel model of the spike-free two-neuron program."""
    import cvxpy as cp

    n, d = X.shape
    w1, w2 = cp.Variable(d), cp.Variable(d)
    obj = cp.sum_squares(X @ w1 - X @ w2 - y) / (2 * n) + alpha * (cp.norm(w1) + cp.norm(w2))
    prob = cp.Problem(cp.Minimize(obj), [X @ w1 >= 0, X @ w2 >= 0])
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-11, tol_gap_rel=1e-11)
    return prob.value


@pytest.mark.parametrize("kind", ["whitened", "rank_one_pos"])
def test_spike_free_program_is_exact_on_spike_free_data(kind):
    for seed in (0, 1):
        if kind == "whitened":
            X, y = whitened_data(seed, n=5, d=7)
        else:
            X, y, _ = rank_one_data(seed, sign="pos")
        for alpha in (2e-3, 0.05):
            res = spike_free(X, y, alpha)
            check_result(res, X, y, alpha)
            assert res.is_exact and "optimal" in res.statement
            w1, w2 = res.info["w1"], res.info["w2"]
            assert min((X @ w1).min(), (X @ w2).min()) >= -1e-10
            assert res.program_value == pytest.approx(res.objective, rel=1e-9)
            ref = clarabel_optimum(X, y, alpha)
            assert abs(res.objective - ref) <= 1e-8 * ref, (seed, alpha, res.objective, ref)
            assert res.gap <= 1e-8 * res.objective


@pytest.mark.parametrize("kind", ["rank_one_mixed", "gaussian"])
def test_spike_free_program_is_only_an_upper_bound(kind):
    if kind == "rank_one_mixed":
        X, y, _ = rank_one_data(5)
    else:
        rng = np.random.default_rng(6)
        X, y = rng.standard_normal((6, 3)), rng.standard_normal(6)
    assert not is_spike_free(X, random_state=0)
    margins = []
    for alpha in (1e-3, 0.02):
        res = spike_free(X, y, alpha)
        check_result(res, X, y, alpha)
        assert not res.is_exact and "upper bound" in res.statement
        # our solver solves the two-neuron program (cvxpy oracle) ...
        prog = two_neuron_program(X, y, alpha)
        assert abs(res.objective - prog) <= 1e-7 * prog
        assert res.lower_bound <= prog * (1 + 1e-9)
        # ... whose value is strictly above the global optimum
        ref = clarabel_optimum(X, y, alpha)
        margin = (res.objective - ref) / ref
        margins.append(margin)
        assert margin > 1e-3, (alpha, res.objective, ref)
    print(f"{kind}: relative margin of the spike-free bound over the optimum: {margins}")


def test_spike_free_certify_flag():
    X, y, _ = rank_one_data(5)
    res = spike_free(X, y, 0.02, certify=True)
    assert not res.is_exact
    assert res.info["certificate"].relative_gap > 1e-3


def min_norm_interpolation(X, y):
    """Minimum path norm over all activation patterns (cvxpy model, exact)."""
    import cvxpy as cp

    D = cvxnn.compute_masks(X, cvxnn.enumerate_patterns(X, bias=False), bias=False)
    n, d = X.shape
    P = D.shape[1]
    V, W = cp.Variable((d, P)), cp.Variable((d, P))
    S = 2.0 * D - 1.0
    cons = [sum(cp.multiply(D[:, i], X @ (V[:, i] - W[:, i])) for i in range(P)) == y]
    cons += [cp.multiply(S[:, i], X @ V[:, i]) >= 0 for i in range(P)]
    cons += [cp.multiply(S[:, i], X @ W[:, i]) >= 0 for i in range(P)]
    obj = sum(cp.norm(V[:, i]) + cp.norm(W[:, i]) for i in range(P))
    prob = cp.Problem(cp.Minimize(obj), cons)
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-11, tol_gap_rel=1e-11)
    return prob.value


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
def test_spike_free_replication_identity(k):
    """Spec 6.2 B5: X = I_k, y = 10 N(0,1); weight-decay optimum = 2 x program value."""
    rng = np.random.default_rng(100 + k)
    X, y = np.eye(k), 10 * rng.standard_normal(k)
    res = spike_free(X, y, 0.0)
    net = res.network
    np.testing.assert_allclose(net.forward(X)[:, 0], y, atol=1e-8)
    sq = float(np.sum(net.W1 ** 2) + np.sum(net.W2 ** 2))
    assert sq / res.program_value == pytest.approx(2.0, rel=1e-9)
    ref = np.linalg.norm(np.maximum(y, 0)) + np.linalg.norm(np.maximum(-y, 0))
    assert res.program_value == pytest.approx(ref, rel=1e-8)
    if k <= 4:  # independent oracle: min-norm interpolation over all 2^k patterns
        assert res.program_value == pytest.approx(min_norm_interpolation(X, y), rel=1e-7)
    assert res.lower_bound == pytest.approx(res.program_value, rel=1e-7)
    # and with weight decay, exact against Clarabel
    alpha = 0.05
    sf = spike_free(X, y, alpha)
    assert sf.is_exact
    ref = clarabel_optimum(X, y, alpha)
    assert abs(sf.objective - ref) <= 1e-8 * ref


def test_spike_free_alpha_zero_interpolates_non_identity():
    X, y = whitened_data(7, n=4, d=6)
    X = X * np.array([1.0, 2.0, 0.5, 3.0])[:, None]      # full row rank, not whitened
    res = spike_free(X, y, 0.0)
    np.testing.assert_allclose(res.network.forward(X)[:, 0], y, atol=1e-8)
    assert res.lower_bound == pytest.approx(res.program_value, rel=1e-7)


# ----------------------------------------------------------------- is_spike_free
def test_is_spike_free():
    X, _ = whitened_data(0)
    assert is_spike_free(X, random_state=0)
    assert is_spike_free(np.eye(4), random_state=0)
    assert is_spike_free(rank_one_data(0, sign="pos")[0], random_state=0)
    ok, worst = is_spike_free(rank_one_data(0)[0], random_state=0, return_max=True)
    assert not ok and worst == np.inf
    rng = np.random.default_rng(0)
    G = rng.standard_normal((5, 5))
    ok, worst = is_spike_free(G, n_samples=500, random_state=1, return_max=True)
    assert not ok and worst > 1
    # reproducible
    assert is_spike_free(G, n_samples=50, random_state=3, return_max=True) == \
        is_spike_free(G, n_samples=50, random_state=3, return_max=True)


# ----------------------------------------------------------------- bad input
def test_bad_input_names_the_argument():
    X, y = whitened_data(0)
    with pytest.raises(ValueError, match="X must have orthonormal rows"):
        whitened(2 * X, y, 0.1)
    with pytest.raises(ValueError, match="X must have orthonormal rows.*n_samples <= n_features"):
        whitened(np.vstack([X, X[:3]]), np.zeros(9), 0.1)
    assert not whitened(2 * X, y, 0.1, check=False).is_exact   # the check can be skipped
    with pytest.raises(ValueError, match="X must have rank one"):
        rank_one(X, y, 0.1)
    with pytest.raises(ValueError, match="X must have rank one.*zero"):
        rank_one(np.zeros((3, 2)), np.ones(3), 0.1)
    with pytest.raises(ValueError, match="alpha"):
        whitened(X, y, -1.0)
    with pytest.raises(ValueError, match="y"):
        rank_one(np.ones((4, 2)), np.ones((4, 2)), 0.1)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        spike_free(X, y[:-1], 0.1)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="needs y in the range of X"):
        spike_free(rng.standard_normal((6, 2)), rng.standard_normal(6), 0.0)
    with pytest.raises(ValueError, match="n_samples"):
        is_spike_free(X, n_samples=0)
    with pytest.raises(ValueError, match="X"):
        is_spike_free(np.ones(3))
    with pytest.raises(ValueError, match="tol"):
        spike_free(X, y, 0.1, tol=0)
    with pytest.raises(ValueError, match="max_iter"):
        spike_free(X, y, 0.1, max_iter=0)
    c = np.array([1.0, -2.0, 0.5])
    with pytest.raises(ValueError, match="alpha=0.*X w1 >= 0"):
        spike_free(np.outer(c, [0.6, 0.8]), c, 0.0)     # no sign-feasible interpolation
