"""Row-rescaled dual points: valid lower bounds, never worse than uniform scaling."""

import numpy as np
import pytest

from cvxnn.dual_refine import rescale_rows
from cvxnn.losses import get_loss
from cvxnn.problems import GatedReLUProblem
from cvxnn.solvers.fista import fista
from cvxnn.solvers.gated import solve_gated_fista
from cvxnn.solvers.working_set import solve_gated_working_set
from tests.test_screening import _problem

CASES = [
    ("529_pollen", "squared", 1e-2),
    ("pima", "logistic", 3e-3),
    ("iris", "cross_entropy", 3e-3),
]


@pytest.mark.parametrize("loss", ["squared", "logistic", "cross_entropy"])
def test_row_scale_slopes_match_finite_differences(loss):
    rng = np.random.default_rng(1)
    n, c = 40, (3 if loss == "cross_entropy" else 1)
    if loss == "cross_entropy":
        Y = np.eye(c)[rng.integers(0, c, n)]
        P = rng.dirichlet(np.ones(c), n)
        Theta = (Y - P) / n                       # -grad of the loss at some logits
    elif loss == "logistic":
        Y = rng.choice([-1.0, 1.0], (n, 1))
        Theta = Y * rng.uniform(0.05, 0.95, (n, 1)) / n
    else:
        Y = rng.standard_normal((n, 1))
        Theta = rng.standard_normal((n, 1)) / n
    L = get_loss(loss)
    r = L.row_scale_slopes(Theta, Y)
    assert r.shape == (n,)
    h = 1e-6
    for j in range(0, n, 7):
        shrink = np.ones((n, 1))
        shrink[j] = 1.0 - h
        fd = (L.dual_value(Theta, Y) - L.dual_value(shrink * Theta, Y)) / h
        assert fd == pytest.approx(r[j], rel=1e-4, abs=1e-9)


def _rough_iterate(prob, iters):
    """A FISTA iterate well short of the optimum (its certificate is loose)."""
    step = 1.0 / (prob.loss.curvature(prob.n_samples) * 4 * np.linalg.norm(prob.Xa, 2) ** 2
                  * prob.D.shape[1])
    st = fista(prob, prob.zeros(), step=step, check=lambda x, z, k: (False, {}),
               max_iter=iters, check_every=iters)
    return st.x


@pytest.mark.parametrize("name,loss,alpha", CASES)
def test_rescaled_dual_is_feasible_valid_and_no_worse(name, loss, alpha):
    prob = _problem(name, loss, alpha, P=40, n=300)
    opt = solve_gated_working_set(prob, tol=1e-10)["gap"].primal
    improved = False
    for iters in (150, 600):
        U = _rough_iterate(prob, iters)
        Z = prob.apply(U)
        Theta = -prob.loss.gradient(Z, prob.Y)
        uniform, _ = prob.dual_value_at(Theta)
        out = rescale_rows(prob, Theta)
        # the returned point is dual feasible and its value is the one reported
        assert prob.dual_norms(out["theta"]).max() <= alpha * (1 + 1e-10)
        value, scaled = prob.dual_value_at(out["theta"])
        assert value == pytest.approx(out["dual"], rel=1e-10, abs=1e-14)
        # a lower bound on the optimum (weak duality), never worse than uniform scaling
        assert out["dual"] <= opt * (1 + 1e-12)
        assert out["dual"] >= uniform - 1e-15
        improved |= out["dual"] > uniform + 1e-3 * (opt - uniform)
    assert improved


def test_float32_products_give_a_float64_valid_bound():
    prob = _problem("iris", "cross_entropy", 3e-3, P=40, n=150)
    p32 = GatedReLUProblem(prob.Xa.astype(np.float32), prob.D, prob.Y, prob.loss, prob.alpha)
    U = _rough_iterate(prob, 100)
    Theta = -prob.loss.gradient(prob.apply(U), prob.Y)
    out = rescale_rows(p32, Theta)
    value, _ = prob.dual_value_at(out["theta"])           # rechecked in float64
    opt = solve_gated_working_set(prob, tol=1e-10)["gap"].primal
    assert value <= opt * (1 + 1e-12)
    assert value == pytest.approx(out["dual"], rel=1e-5)


def test_solver_uses_the_rescaled_bound_and_stays_certified():
    prob = _problem("iris", "cross_entropy", 3e-3, P=40, n=150)
    ref = solve_gated_working_set(prob, tol=1e-10)["gap"].primal
    kw = dict(tol=1e-7, max_iter=400, working_set=False, screen=False, refine_from=1.0,
              refine_share=1.0, refine_min_size=0)
    a = solve_gated_fista(prob, refine_dual=True, **kw)
    b = solve_gated_fista(prob, refine_dual=False, **kw)
    for out in (a, b):
        dual, _ = prob.dual_value_at(out["dual_point"])
        assert dual == pytest.approx(out["gap"].dual, rel=1e-9, abs=1e-14)
        assert out["gap"].dual <= ref * (1 + 1e-12)
    # same iterates (the repair only touches the certificate); a bound at least as good
    np.testing.assert_array_equal(a["U"], b["U"]) if a["n_iter"] == b["n_iter"] else None
    assert a["n_iter"] <= b["n_iter"]
    if a["n_iter"] == b["n_iter"]:
        assert a["gap"].relative_gap <= b["gap"].relative_gap
