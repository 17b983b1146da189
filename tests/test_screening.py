"""Gap-safe screening: safe (never removes an active block) and useful."""

import numpy as np
import pytest

from cvxnn._data import augment, encode_targets
from cvxnn.patterns import compute_masks, sample_gates
from cvxnn.problems import GatedReLUProblem, group_norms
from cvxnn.screening import block_frobenius_norms, gap_safe_screen
from cvxnn.solvers.gated import solve_gated_fista
from cvxnn.solvers.working_set import solve_gated_working_set
from tests.conftest import load_table, standardize


def _problem(name, loss, alpha, P=60, n=400, seed=0):
    X, y = load_table(name)
    X = standardize(X)[:n]
    y = np.asarray(y)[:n]
    classification = loss != "squared" or name != "529_pollen"
    Y, _ = encode_targets(y if classification else (y - y.mean()) / y.std(), loss, classification)
    G = sample_gates(X, P, bias=True, random_state=seed)
    return GatedReLUProblem(augment(X, True), compute_masks(X, G, bias=True), Y, loss, alpha)


def test_block_frobenius_norms():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 4))
    D = rng.random((30, 5)) < 0.5
    expected = [np.linalg.norm(D[:, [i]] * X) for i in range(5)]
    np.testing.assert_allclose(block_frobenius_norms(X, D), expected, rtol=1e-12)


@pytest.mark.parametrize("name,loss,alpha", [
    ("529_pollen", "squared", 3e-2),
    ("pima", "logistic", 1e-2),
    ("iris", "cross_entropy", 2e-2),
])
def test_screening_is_safe_along_the_iterations(name, loss, alpha):
    """Every block screened at any iterate is zero at the (high accuracy) optimum."""
    prob = _problem(name, loss, alpha)
    ref = solve_gated_working_set(prob, tol=1e-10)
    active = group_norms(ref["U"]) > 0
    assert active.any() and not active.all()
    frob = prob.block_frobenius()
    beta = prob.loss.curvature(prob.n_samples)
    U = prob.zeros()
    screened_any = False
    # crude iterates: scaled copies of the optimum and a few FISTA iterates
    for s in (0.0, 0.5, 0.9, 0.99, 1.0):
        g, norms = prob.gap(s * ref["U"], with_norms=True)
        mask = gap_safe_screen(norms, g.dual_scale, g.gap, alpha, beta, frob)
        assert not np.any(mask & active), f"screened an active block at scale {s}"
        screened_any |= mask.any()
    assert screened_any
    del U


def test_screened_fista_matches_unscreened_and_working_set():
    prob = _problem("529_pollen", "squared", 3e-2, P=80)
    ref = solve_gated_working_set(prob, tol=1e-10)
    a = solve_gated_fista(prob, tol=1e-7, max_iter=20000, screen=True, working_set=False)
    b = solve_gated_fista(prob, tol=1e-7, max_iter=20000, screen=False, working_set=False)
    assert a["converged"] and b["converged"]
    assert a["n_screened"] > 0 and b["n_screened"] == 0
    # certificates are for the full problem: the reported dual bound is that of the
    # returned dual point (re-evaluated here), at least as good as the final iterate's
    # own, and below the optimum
    for out in (a, b):
        own = prob.gap(out["U"])
        assert out["gap"].primal == pytest.approx(own.primal, rel=1e-12)
        assert out["gap"].relative_gap <= own.relative_gap * (1 + 1e-9)
        dual, _ = prob.dual_value_at(out["dual_point"])
        assert dual == pytest.approx(out["gap"].dual, rel=1e-9, abs=1e-14)
        assert out["gap"].dual <= ref["gap"].primal * (1 + 1e-12)
        assert out["gap"].primal - ref["gap"].primal <= out["gap"].gap + 1e-12
        assert abs(out["gap"].primal - ref["gap"].primal) <= 1e-6 * ref["gap"].primal
    assert a["U"].shape == prob.shape


def test_everything_screened_gives_zero():
    prob = _problem("529_pollen", "squared", 10.0, P=20)
    out = solve_gated_fista(prob, tol=1e-8)
    assert out["converged"]
    assert not np.any(out["U"])


@pytest.mark.parametrize("name,loss,alpha", [
    ("529_pollen", "squared", 3e-2),
    ("pima", "logistic", 1e-2),
    ("iris", "cross_entropy", 2e-2),
])
def test_block_working_set_fista_reaches_the_same_certified_optimum(name, loss, alpha):
    """FISTA on the block working set: full-problem certificate, same optimum as the
    high-accuracy second-order solve, and the working set really is a strict subset."""
    prob = _problem(name, loss, alpha, P=80)
    ref = solve_gated_working_set(prob, tol=1e-10)
    out = solve_gated_fista(prob, tol=1e-7, max_iter=20000, working_set=True, ws_gap=0.5)
    assert out["converged"]
    assert 0 < out["working_set_blocks"] < np.prod(prob.shape[1:])
    assert out["gap"].relative_gap == pytest.approx(prob.gap(out["U"]).relative_gap, rel=1e-6)
    assert out["gap"].relative_gap <= 1e-7
    assert out["gap"].primal - ref["gap"].primal <= out["gap"].gap + 1e-12
    assert abs(out["gap"].primal - ref["gap"].primal) <= 1e-6 * abs(ref["gap"].primal)
    # blocks outside the working set are zero and the support matches the reference's
    off = group_norms(out["U"]) > 0
    assert np.all(off <= (group_norms(ref["U"]) > 0) | (group_norms(out["U"]) < 1e-6))


def test_block_subproblem_products_match_the_full_operators():
    from cvxnn.solvers.gated import BlockSubproblem

    prob = _problem("iris", "cross_entropy", 2e-2, P=30)
    rng = np.random.default_rng(1)
    d, P, c = prob.shape
    W = rng.random((P, c)) < 0.4
    pat, out = np.nonzero(W)
    sub = BlockSubproblem(prob, pat, out, chunk_elements=7 * pat.size)  # several row chunks
    V = rng.standard_normal((d, pat.size))
    U = prob.zeros()
    U[:, pat, out] = V
    np.testing.assert_allclose(sub.apply(V), prob.apply(U), rtol=1e-12, atol=1e-12)
    R = rng.standard_normal((prob.n_samples, c))
    np.testing.assert_allclose(sub.adjoint(R), prob.adjoint(R)[:, pat, out], rtol=1e-12, atol=1e-12)
