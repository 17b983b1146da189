"""The theory holds: no non-convex training run ends below the convex optimum.

On tiny data every activation pattern is enumerated, so the convex program's
optimum is the global optimum of the weight-decay training problem for any
width.  Plain non-convex training (L-BFGS on the weight-decay objective, many
random restarts and widths) must never end below it, and the network recovered
from the convex solution must attain it.
"""

import numpy as np
import pytest
from scipy.optimize import minimize

import cvxnn

pytest.importorskip("cvxpy")


def _nonconvex_objective(theta, X, y, m, alpha):
    n, d = X.shape
    W1 = theta[: m * d].reshape(m, d)
    b1 = theta[m * d: m * d + m]
    w2 = theta[m * d + m:]
    H = X @ W1.T + b1
    A = np.maximum(H, 0.0)
    r = A @ w2 - y
    f = r @ r / (2 * n) + 0.5 * alpha * (theta @ theta)
    gA = np.outer(r / n, w2) * (H > 0)
    g = np.concatenate([(gA.T @ X).ravel(), gA.sum(0), A.T @ r / n]) + alpha * theta
    return f, g


def _train_lbfgs(X, y, m, alpha, seed):
    rng = np.random.default_rng(seed)
    d = X.shape[1]
    theta0 = rng.standard_normal(m * d + m + m) * rng.choice([0.1, 0.5, 1.0])
    res = minimize(_nonconvex_objective, theta0, args=(X, y, m, alpha), jac=True,
                   method="L-BFGS-B", options={"maxiter": 5000, "gtol": 1e-10, "ftol": 1e-15})
    return res.fun


@pytest.mark.parametrize("seed_data", [0, 1])
def test_nonconvex_training_never_beats_the_convex_optimum(seed_data):
    rng = np.random.default_rng(seed_data)
    n = 8
    X = rng.standard_normal((n, 2))
    y = np.sin(2 * X[:, 0]) + X[:, 1] ** 2 + 0.1 * rng.standard_normal(n)
    alpha = 1e-2
    res = cvxnn.solve(X, y, alpha, formulation="relu", gates="enumerate", solver="clarabel")
    assert res.certified_over.startswith("all activation patterns")
    # rank([X, 1]) = 3 in general position: all 2 * sum_{k<3} C(n-1, k) cells, less the zero one
    assert res.gates.shape[1] == cvxnn.arrangement_count(n, 3) - 1
    p_star = res.objective
    # the recovered network attains the optimum
    assert res.network.objective(X, y, alpha) == pytest.approx(p_star, rel=1e-7)
    finals = []
    for width in (1, 2, 4, 8, 16):
        for seed in range(5):
            finals.append(_train_lbfgs(X, y, width, alpha, seed=100 * width + seed))
    finals = np.array(finals)
    assert len(finals) >= 20
    # no run ends below the certified optimum (up to the solver's accuracy)
    assert np.all(finals >= p_star * (1 - 1e-6)), (finals.min(), p_star)
    # and the best runs get close to it, as the theory says they can
    assert finals.min() <= p_star * 1.05


def test_native_solver_reaches_enumerated_optimum():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((10, 2))
    y = np.abs(X[:, 0]) - X[:, 1]
    ref = cvxnn.solve(X, y, 1e-2, formulation="relu", gates="enumerate", solver="clarabel")
    res = cvxnn.solve(X, y, 1e-2, formulation="relu", gates="enumerate", tol=1e-7)
    assert res.objective == pytest.approx(ref.objective, rel=1e-6)
