"""cho_solve_fast against scipy.linalg.cho_solve for every layout of the factor."""

import numpy as np
import pytest
import scipy.linalg as sla

from cvxnn.solvers.dense_solve import cho_solve_fast


@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("order", ["F", "C"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_scipy_for_every_layout(lower, order, dtype):
    rng = np.random.default_rng(0)
    m = 37
    A = rng.standard_normal((m, m))
    K = (A @ A.T + m * np.eye(m)).astype(dtype)
    c, low = sla.cho_factor(K, lower=lower, check_finite=False)
    c = np.asarray(c, order=order)
    assert c.flags.c_contiguous if order == "C" else c.flags.f_contiguous
    b = rng.standard_normal(m).astype(dtype)
    x = cho_solve_fast((c, low), b)
    ref = sla.cho_solve((c, low), b, check_finite=False)
    tol = 1e-12 if dtype == np.float64 else 1e-4
    assert x.dtype == dtype
    np.testing.assert_allclose(x, ref, rtol=tol, atol=tol)
    # and it solves the system
    np.testing.assert_allclose(K.astype(np.float64) @ x, b, rtol=10 * tol, atol=10 * tol * m)


def test_several_right_hand_sides_and_strided_factors_fall_back():
    rng = np.random.default_rng(1)
    m = 20
    A = rng.standard_normal((m, m))
    K = A @ A.T + m * np.eye(m)
    cf = sla.cho_factor(K, lower=True, check_finite=False)
    B = rng.standard_normal((m, 3))
    np.testing.assert_allclose(cho_solve_fast(cf, B), np.linalg.solve(K, B), rtol=1e-10)
    # a non-contiguous view of a factor
    big = np.zeros((2 * m, 2 * m))
    big[::2, ::2] = cf[0]
    view = big[::2, ::2]
    assert not (view.flags.c_contiguous or view.flags.f_contiguous)
    b = rng.standard_normal(m)
    np.testing.assert_allclose(cho_solve_fast((view, True), b), np.linalg.solve(K, b), rtol=1e-10)

