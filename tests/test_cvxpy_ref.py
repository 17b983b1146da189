"""Tests of the cvxpy reference solvers (``cvxnn.solvers.cvxpy_ref``).

The tests check the solvers against closed forms (least squares at ``alpha -> 0``,
the zero solution above ``alpha_max``), against convex duality (dual
feasibility and strong duality of ``Theta = -grad L(Z)``), and the sign
convention of the ReLU program's cone multipliers (KKT stationarity).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cvxpy")

from cvxnn.losses import get_loss  # noqa: E402
from cvxnn.operators import adjoint, cone_adjoint, forward  # noqa: E402
from cvxnn.solvers.cvxpy_ref import (  # noqa: E402
    max_constraint_violation,
    solve_gated_cvxpy,
    solve_relu_cvxpy,
)

LOSSES = ["squared", "logistic", "cross_entropy"]
SHARED_DATA = Path("/work/shared/data")

# Clarabel may flag a solution as "optimal_inaccurate" (AlmostSolved) although it
# is accurate; the tests check accuracy directly, so that warning is not an error.
pytestmark = pytest.mark.filterwarnings("ignore:cvxpy solver .* returned status:RuntimeWarning")


# --------------------------------------------------------------------------- data
def _with_ones(X):
    return np.hstack([X, np.ones((X.shape[0], 1))])


def _standardise(X):
    return (X - X.mean(axis=0)) / X.std(axis=0)


def _gates(Xa, P, rng):
    """Masks D = 1[Xa G > 0] of Gaussian gates, without duplicate/empty columns."""
    G = rng.standard_normal((Xa.shape[1], 4 * P))
    D = Xa @ G > 0
    _, first = np.unique(D, axis=1, return_index=True)
    D = D[:, np.sort(first)]  # distinct patterns, in sampling order
    D = D[:, D.any(axis=0)]
    return D[:, :P]


def _load_pima(n=80, n_features=4):
    if not (SHARED_DATA / "load.py").exists():
        pytest.skip("shared PMLB data (pima) not available")
    sys.path.insert(0, str(SHARED_DATA))
    try:
        from load import load
    finally:
        sys.path.remove(str(SHARED_DATA))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        X, y = load("pima")
    X = _standardise(X[:n, :n_features])
    labels = np.unique(y)
    Y = np.where(y[:n] == labels[-1], 1.0, -1.0)[:, None]
    return X, Y


def _load_iris(per_class=20):
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    idx = np.concatenate([np.flatnonzero(y == k)[:per_class] for k in range(3)])
    X = _standardise(X[idx])
    Y = np.eye(3)[y[idx]]
    return X, Y


def _problem(loss, seed=0, P=10):
    """Small problem (Xa, D, Y) for ``loss``; Xa has a ones column."""
    rng = np.random.default_rng(seed)
    if loss == "squared":
        X = rng.standard_normal((40, 3))
        Y = np.column_stack([np.sin(X @ [1.0, -0.5, 0.3]), X[:, 0] * X[:, 1]])
        Y = Y + 0.1 * rng.standard_normal(Y.shape)
    elif loss == "logistic":
        X, Y = _load_pima()
    else:
        X, Y = _load_iris()
    Xa = _with_ones(X)
    return Xa, _gates(Xa, P, rng), Y


def _alpha_max_gated(Xa, D, Y, loss):
    L = get_loss(loss)
    Theta0 = -L.gradient(np.zeros_like(Y), Y)
    return float(np.linalg.norm(adjoint(Xa, D, Theta0), axis=0).max())


def _alpha_max_relu(Xa, D, Y, loss):
    """Smallest alpha with V = W = 0 optimal for the ReLU program.

    ``max_{i,k,+-} min_{a >= 0} ||+-Xa^T D_i Theta0_k + Xa^T (S_i a)||`` (an NNLS
    per block), with ``Theta0 = -grad L(0)``.
    """
    from scipy.optimize import nnls

    L = get_loss(loss)
    Theta0 = -L.gradient(np.zeros_like(Y), Y)
    S = 2.0 * D - 1.0
    out = 0.0
    for i in range(D.shape[1]):
        B = Xa.T * S[:, i]  # (d, n): a -> Xa^T (S_i a)
        for k in range(Y.shape[1]):
            g = Xa.T @ (D[:, i] * Theta0[:, k])
            for sign in (1.0, -1.0):
                _, rnorm = nnls(B, -sign * g)
                out = max(out, rnorm)
    return out


def _block_norms(U):
    return np.linalg.norm(U, axis=0)


def _stationarity(G, B, alpha, active_rel=1e-3, active_abs=1e-8):
    """KKT residuals of ``G in alpha * subdiff ||B_ik||`` per block.

    Returns (max relative residual over active blocks, max ||G_ik|| / alpha over
    inactive ones, number of active blocks).
    """
    nB = _block_norms(B)
    nG = _block_norms(G)
    active = (nB > active_rel * nB.max()) & (nB > active_abs)
    res_act = 0.0
    if active.any():
        dirs = B[:, active] / nB[active]
        res_act = float(np.linalg.norm(G[:, active] - alpha * dirs, axis=0).max() / alpha)
    res_inact = float(nG[~active].max() / alpha) if (~active).any() else 0.0
    return res_act, res_inact, int(active.sum())


# ------------------------------------------------------------------ gated program
def test_gated_squared_tiny_alpha_is_least_squares():
    rng = np.random.default_rng(1)
    n, d, P = 50, 3, 5
    Xa = _with_ones(rng.standard_normal((n, d)))
    D = _gates(Xa, P, rng)
    Y = rng.standard_normal((n, 2))
    M = np.hstack([D[:, [i]] * Xa for i in range(D.shape[1])])  # (n, P (d+1)), test only
    assert np.linalg.matrix_rank(M) == M.shape[1]
    coef, *_ = np.linalg.lstsq(M, Y, rcond=None)
    res = solve_gated_cvxpy(Xa, D, Y, 1e-10, "squared")
    U = res["U"]
    assert U.shape == (d + 1, D.shape[1], 2) and U.dtype == np.float64
    U_ls = coef.reshape(D.shape[1], d + 1, 2).transpose(1, 0, 2)
    np.testing.assert_allclose(forward(Xa, D, U), M @ coef, atol=1e-6)
    np.testing.assert_allclose(U, U_ls, atol=1e-5 * np.abs(U_ls).max())
    ls_value = np.sum((M @ coef - Y) ** 2) / (2 * n)
    assert res["objective"] == pytest.approx(ls_value, rel=1e-7)
    assert res["status"] in ("optimal", "optimal_inaccurate")
    assert res["solve_time"] > 0


@pytest.mark.parametrize("loss", LOSSES)
def test_gated_zero_above_alpha_max(loss):
    Xa, D, Y = _problem(loss)
    amax = _alpha_max_gated(Xa, D, Y, loss)
    big = solve_gated_cvxpy(Xa, D, Y, 1.01 * amax, loss)
    assert _block_norms(big["U"]).max() < 1e-6
    L = get_loss(loss)
    assert big["objective"] == pytest.approx(L.value(np.zeros_like(Y), Y), rel=1e-6)
    small = solve_gated_cvxpy(Xa, D, Y, 0.5 * amax, loss)
    assert _block_norms(small["U"]).max() > 1e-3
    assert small["objective"] < big["objective"]


@pytest.mark.parametrize("loss", LOSSES)
def test_gated_kkt_and_strong_duality(loss):
    Xa, D, Y = _problem(loss)
    L = get_loss(loss)
    alpha = 0.1 * _alpha_max_gated(Xa, D, Y, loss)
    res = solve_gated_cvxpy(Xa, D, Y, alpha, loss)
    U = res["U"]
    Z = forward(Xa, D, U)
    # objective is recomputed in numpy
    expected = L.value(Z, Y) + alpha * _block_norms(U).sum()
    assert res["objective"] == pytest.approx(expected, rel=1e-12)
    Theta = -L.gradient(Z, Y)
    G = adjoint(Xa, D, Theta)
    # dual feasibility ||Xa^T D_i Theta_k|| <= alpha
    assert _block_norms(G).max() <= alpha * (1 + 1e-5)
    # strong duality
    assert L.dual_value(Theta, Y) == pytest.approx(res["objective"], rel=1e-6)
    # stationarity on the active blocks: G_ik = alpha U_ik / ||U_ik||
    res_act, res_inact, n_act = _stationarity(G, U, alpha)
    assert n_act > 0
    assert res_act < 1e-4
    assert res_inact <= 1 + 1e-5


# ------------------------------------------------------------------- ReLU program
@pytest.mark.parametrize("loss", LOSSES)
def test_relu_feasible_kkt_and_bounds(loss):
    Xa, D, Y = _problem(loss, P=8)
    L = get_loss(loss)
    alpha = 0.1 * _alpha_max_gated(Xa, D, Y, loss)
    res = solve_relu_cvxpy(Xa, D, Y, alpha, loss)
    V, W, A_V, A_W = res["V"], res["W"], res["A_V"], res["A_W"]
    n, P, c = Xa.shape[0], D.shape[1], Y.shape[1]
    assert V.shape == W.shape == (Xa.shape[1], P, c)
    assert A_V.shape == A_W.shape == (n, P, c)

    # primal feasibility and numpy-recomputed objective
    assert max_constraint_violation(Xa, D, V) <= 1e-8
    assert max_constraint_violation(Xa, D, W) <= 1e-8
    Z = forward(Xa, D, V - W)
    expected = L.value(Z, Y) + alpha * (_block_norms(V).sum() + _block_norms(W).sum())
    assert res["objective"] == pytest.approx(expected, rel=1e-12)

    # the ReLU program is a restriction of the gated one (same D)
    gated = solve_gated_cvxpy(Xa, D, Y, alpha, loss)
    assert res["objective"] >= gated["objective"] * (1 - 1e-8)

    # KKT with the documented sign convention of the multipliers
    S = 2.0 * D - 1.0
    assert A_V.min() >= -1e-8 and A_W.min() >= -1e-8
    Theta = -L.gradient(Z, Y)
    GD = adjoint(Xa, D, Theta)
    G_V = GD + cone_adjoint(Xa, S, A_V)
    G_W = -GD + cone_adjoint(Xa, S, A_W)
    n_active = 0
    for G, B in ((G_V, V), (G_W, W)):
        res_act, res_inact, n_act = _stationarity(G, B, alpha)
        n_active += n_act
        assert res_act < 1e-5
        assert res_inact <= 1 + 1e-5
    assert n_active > 0
    # the opposite sign convention must fail (guards against a sign flip)
    bad = _stationarity(GD - cone_adjoint(Xa, S, A_V), V, alpha)
    assert max(bad[0], bad[1] - 1) > 1e-3 or np.abs(A_V).max() < 1e-8
    # complementary slackness A * S (Xa V) = 0
    SXV = (Xa @ V.reshape(Xa.shape[1], -1)).reshape(n, P, c) * S[:, :, None]
    SXW = (Xa @ W.reshape(Xa.shape[1], -1)).reshape(n, P, c) * S[:, :, None]
    assert np.abs(A_V * SXV).max() < 1e-8
    assert np.abs(A_W * SXW).max() < 1e-8
    # strong duality of the ReLU program: the cone constraints of the dual hold
    # with these multipliers, so -L^*(-Theta) equals the optimal value
    assert L.dual_value(Theta, Y) == pytest.approx(res["objective"], rel=1e-6)


@pytest.mark.parametrize("loss", LOSSES)
def test_relu_zero_above_alpha_max(loss):
    Xa, D, Y = _problem(loss, P=6)
    amax = _alpha_max_relu(Xa, D, Y, loss)
    assert amax <= _alpha_max_gated(Xa, D, Y, loss) * (1 + 1e-12)
    big = solve_relu_cvxpy(Xa, D, Y, 1.01 * amax, loss)
    assert max(_block_norms(big["V"]).max(), _block_norms(big["W"]).max()) < 1e-6
    small = solve_relu_cvxpy(Xa, D, Y, 0.5 * amax, loss)
    assert max(_block_norms(small["V"]).max(), _block_norms(small["W"]).max()) > 1e-3


def test_relu_equals_gated_at_tiny_alpha_with_nonsingular_gates():
    rng = np.random.default_rng(3)
    n, d, P = 60, 3, 8
    Xa = _with_ones(rng.standard_normal((n, d)))
    G = rng.standard_normal((d + 1, P))
    D = Xa @ G > 0  # each gate g_i lies in the interior of its cone: non-singular
    Y = np.tanh(Xa @ rng.standard_normal((d + 1, 1))) + 0.1 * rng.standard_normal((n, 1))
    alpha = 1e-10
    relu = solve_relu_cvxpy(Xa, D, Y, alpha, "squared")
    gated = solve_gated_cvxpy(Xa, D, Y, alpha, "squared")
    assert max_constraint_violation(Xa, D, relu["V"]) <= 1e-8
    assert max_constraint_violation(Xa, D, relu["W"]) <= 1e-8
    assert relu["objective"] == pytest.approx(gated["objective"], rel=1e-6)
    np.testing.assert_allclose(forward(Xa, D, relu["V"] - relu["W"]),
                               forward(Xa, D, gated["U"]), atol=1e-5)


# ------------------------------------------------------------------ conditioning
@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_badly_scaled_column(loss):
    Xa, D, Y = _problem(loss, seed=5, P=8)
    Xa = Xa.copy()
    Xa[:, 0] *= 1e3  # one badly scaled column; the ones column stays last
    L = get_loss(loss)
    alpha = 0.1 * _alpha_max_gated(Xa, D, Y, loss)

    gated = solve_gated_cvxpy(Xa, D, Y, alpha, loss)
    Z = forward(Xa, D, gated["U"])
    Theta = -L.gradient(Z, Y)
    res_act, res_inact, _ = _stationarity(adjoint(Xa, D, Theta), gated["U"], alpha)
    assert res_act < 1e-3
    assert res_inact <= 1 + 1e-5
    assert L.dual_value(Theta, Y) == pytest.approx(gated["objective"], rel=1e-6)

    # the cone multipliers can absorb the large column, so the ReLU program
    # has a much smaller alpha_max than the gated one
    alpha = 0.1 * _alpha_max_relu(Xa, D, Y, loss)
    relu = solve_relu_cvxpy(Xa, D, Y, alpha, loss)
    S = 2.0 * D - 1.0
    Z = forward(Xa, D, relu["V"] - relu["W"])
    GD = adjoint(Xa, D, -L.gradient(Z, Y))
    n_active = 0
    for G, B in ((GD + cone_adjoint(Xa, S, relu["A_V"]), relu["V"]),
                 (-GD + cone_adjoint(Xa, S, relu["A_W"]), relu["W"])):
        res_act, res_inact, n_act = _stationarity(G, B, alpha)
        n_active += n_act
        assert res_act < 1e-3
        assert res_inact <= 1 + 1e-4
    assert n_active > 0
    scale = np.abs(Xa).max() * _block_norms(relu["V"]).max()
    assert max_constraint_violation(Xa, D, relu["V"]) <= 1e-8 * max(scale, 1.0)
    assert max_constraint_violation(Xa, D, relu["W"]) <= 1e-8 * max(scale, 1.0)
    assert L.dual_value(-L.gradient(Z, Y), Y) == pytest.approx(relu["objective"], rel=1e-6)
    gated = solve_gated_cvxpy(Xa, D, Y, alpha, loss)
    assert relu["objective"] >= gated["objective"] * (1 - 1e-8)


# ------------------------------------------------------------------ small helpers
def test_max_constraint_violation():
    Xa = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    D = np.array([[True], [False], [True]])
    V = np.array([[1.0], [0.5]])[:, :, None]  # Xa V = [1, 0.5, 1.5]; S = [1, -1, 1]
    assert max_constraint_violation(Xa, D, V) == pytest.approx(0.5)
    assert max_constraint_violation(Xa, D, V[:, :, 0]) == pytest.approx(0.5)
    V2 = np.array([[1.0], [-0.5]])[:, :, None]  # Xa V = [1, -0.5, 0.5]: feasible
    assert max_constraint_violation(Xa, D, V2) == 0.0


def test_logistic_needs_one_output():
    Xa, D, _ = _problem("squared", P=3)
    with pytest.raises(ValueError, match="logistic"):
        solve_gated_cvxpy(Xa, D, np.ones((Xa.shape[0], 2)), 0.1, "logistic")


def test_solver_failure_raises():
    Xa, D, Y = _problem("squared", P=4)
    with pytest.raises(RuntimeError, match="status"):
        solve_gated_cvxpy(Xa, D, Y, 0.01, "squared", max_iter=1)


def test_missing_cvxpy_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "cvxpy", None)
    Xa, D, Y = _problem("squared", P=3)
    with pytest.raises(ImportError, match=r"cvxnn\[cvx\]"):
        solve_gated_cvxpy(Xa, D, Y, 0.1, "squared")
