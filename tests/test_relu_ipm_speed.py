"""Robustness and speed-related paths of the ReLU interior-point solver.

* duplicate samples are merged (squared loss) and the certificate is still the one of
  the original problem;
* the preconditioned CG solve of the Newton systems is accurate;
* the working-set path (screening rounds) certifies the full program.
"""

import numpy as np
import pytest

import cvxnn

from cvxnn.patterns import compute_masks, sample_gates
from cvxnn.problems import ReLUProblem, group_norms
from cvxnn.solvers import relu_ipm
from cvxnn.solvers.relu_ipm import _compress_rows, price_blocks, solve_relu_ipm


def _problem(n=120, d=4, P=12, dup=3, loss="squared", alpha=1e-2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    if dup > 1:
        X = np.repeat(X[: n // dup], dup, axis=0)[:n]
    X1 = np.hstack([X, np.ones((X.shape[0], 1))])
    y = np.sign(X[:, 0] * X[:, 1] + 0.3 * rng.standard_normal(X.shape[0]))
    Y = y[:, None]
    G = sample_gates(X1, P, bias=False, random_state=seed)
    D = compute_masks(X1, G, bias=False)
    return ReLUProblem(X1, D, Y, loss, alpha)


def _exact_gap(pr, Q):
    Z = pr.predict(Q)
    Theta = -pr.loss.gradient(Z, pr.Y)
    _, idx, lam = price_blocks(pr, Theta)
    n = pr.Xa.shape[0]
    A = relu_ipm.multipliers_dense(n, idx, lam).reshape((n,) + pr.shape[1:])
    return pr.gap(Q, A=A, Z=Z, refine_iter=0)


def test_compress_rows_is_exact():
    pr = _problem(dup=3)
    comp = _compress_rows(pr)
    assert comp is not None
    red, first, scale = comp
    assert red.Xa.shape[0] == 40
    rng = np.random.default_rng(1)
    Q = rng.standard_normal(pr.shape)
    # same objective up to the constant of the within-group spread
    const = pr.objective(np.zeros(pr.shape)) - red.objective(np.zeros(pr.shape))
    assert np.isclose(pr.objective(Q), red.objective(Q) + const, rtol=1e-12, atol=1e-12)
    # cone constraints unchanged (positive row scaling)
    assert np.array_equal(np.sign(pr.constraints_from_products(pr.products(Q))[first]),
                          np.sign(red.constraints_from_products(red.products(Q))))


def test_no_compression_without_duplicates_or_for_other_losses():
    assert _compress_rows(_problem(dup=1)) is None
    assert _compress_rows(_problem(dup=3, loss="logistic")) is None


@pytest.mark.parametrize("dup", [1, 4])
def test_solution_certified_on_original_problem(dup):
    pr = _problem(dup=dup)
    res = solve_relu_ipm(pr, tol=1e-7)
    assert res["converged"]
    assert res["violation"] <= 1e-7
    # the reported certificate is a valid one of the original problem
    gap = _exact_gap(pr, res["Q"])
    assert gap.relative_gap <= 1e-7
    assert abs(res["gap"].primal - pr.objective(res["Q"])) <= 1e-12 * abs(res["gap"].primal)
    assert res["gap"].dual <= res["gap"].primal + 1e-12


def test_duplicates_give_same_optimum_as_distinct_rows():
    pr = _problem(dup=4)
    res = solve_relu_ipm(pr, tol=1e-8)
    # the same program with distinct (jittered) copies would differ: instead compare with
    # the solver forced onto the original rows (no compression)
    orig = relu_ipm._solve_relu_ipm(pr, tol=1e-8)
    assert res["converged"] and orig["converged"]
    f1, f2 = res["gap"].primal, orig["gap"].primal
    assert abs(f1 - f2) <= 1e-7 * abs(f2)


def test_working_set_path_certifies_full_program():
    pr = _problem(n=150, d=5, P=40, dup=1, alpha=3e-3, seed=2)
    for seed in (False, True):
        res = solve_relu_ipm(pr, tol=1e-6, full=False, init_size=8, gated_seed=seed)
        assert res["converged"]
        if not seed:
            assert res["n_rounds"] >= 2
        assert _exact_gap(pr, res["Q"]).relative_gap <= 1e-6
        assert np.count_nonzero(group_norms(res["Q"])) > 0


def test_newton_cg_solve_is_accurate():
    pr = _problem(n=80, d=4, P=10, dup=1)
    ipm = relu_ipm.RestrictedIPM(pr, np.arange(2 * 10))
    kkt = ipm.kkt
    rng = np.random.default_rng(3)
    m, d = ipm.m, ipm.d
    B = rng.standard_normal((m, d, d))
    B = B @ B.transpose(0, 2, 1) + 1e-3 * np.eye(d)
    kkt.set_hessian(relu_ipm._loss_hessian(pr.loss, np.zeros((80, 1)), pr.Y))
    assert kkt.factor(B)
    r = rng.standard_normal((m, d))
    x = kkt.solve(r)
    assert np.abs(kkt.K_apply(x) - r).max() <= 1e-9 * np.abs(r).max()


def test_unconverged_ipm_never_returns_worse_than_its_feasible_warm_start(monkeypatch):
    from cvxnn.solvers import relu_ipm

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    y = np.sign(rng.standard_normal(40))
    G = cvxnn.sample_gates(X, 10, random_state=0)
    good = cvxnn.solve(X, y, 1e-2, gates=G, patterns="sampled", classification=True)
    real = relu_ipm._solve_relu_ipm

    def broken(problem, Q0=None, **kw):  # an IPM that fails and ends at a worse point
        out = real(problem, None, **kw)
        out = dict(out, Q=np.zeros_like(out["Q"]), converged=False)
        out["gap"] = problem.gap(out["Q"])
        return out

    monkeypatch.setattr(relu_ipm, "_solve_relu_ipm", broken)
    with pytest.warns(Warning):
        res = cvxnn.solve(X, y, 1e-2, gates=G, patterns="sampled", classification=True,
                          warm_start=good.weights)
    assert res.objective == pytest.approx(good.objective, rel=1e-12)
