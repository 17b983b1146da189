"""Tests of the working-set second-order gated ReLU solver (``cvxnn.solvers.working_set``).

The reference is the cvxpy + Clarabel interior-point solution
(:func:`cvxnn.solvers.cvxpy_ref.solve_gated_cvxpy`).  Checked on small problems with
a bias column, the three losses, multi-output targets and badly scaled columns:

* the objective matches Clarabel's to 1e-6 (relative) and the reported relative
  duality gap is ``<= tol``;
* the gap bounds the true suboptimality (objective minus Clarabel's objective);
* a warm start from the solution converges with at most one outer round;
* every Newton-system back end (sample-space Woodbury, dense Cholesky, CG) converges.
"""

from __future__ import annotations

import warnings
import zlib

import numpy as np
import pytest

from cvxnn.problems import GatedReLUProblem
from cvxnn.solvers.working_set import solve_gated_working_set

from .conftest import load_table, standardize

pytest.importorskip("cvxpy")
from cvxnn.solvers.cvxpy_ref import solve_gated_cvxpy  # noqa: E402

TOL = 1e-6


def _with_ones(X):
    return np.hstack([X, np.ones((X.shape[0], 1))])


def _masks(Xa, P, rng):
    """Distinct nonzero masks ``1[Xa g > 0]`` of Gaussian gates (at most ``P``)."""
    G = rng.standard_normal((Xa.shape[1], 4 * P))
    D = Xa @ G > 0
    _, first = np.unique(D, axis=1, return_index=True)
    D = D[:, np.sort(first)]
    D = D[:, D.any(axis=0)]
    return D[:, :P]


def _make(name):
    """Small test problems: GatedReLUProblem with a bias column."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    if name == "squared_random":
        n, d, P = 120, 4, 20
        X = rng.standard_normal((n, d))
        y = np.maximum(X @ rng.standard_normal(d), 0) + 0.1 * rng.standard_normal(n)
        Y, loss, alpha = y[:, None], "squared", 1e-3
    elif name == "squared_badly_scaled":
        # columns scaled by 1e-3 .. 1e3 and unscaled targets of size ~1e3
        n, d, P = 100, 4, 25
        X = rng.standard_normal((n, d))
        y = 300.0 * np.abs(X[:, 0]) + 100.0 * X[:, 1] + 500.0 + rng.standard_normal(n)
        X = X * np.array([1e3, 1e-3, 1.0, 1e2])
        Y, loss, alpha = y[:, None], "squared", 1e-2
    elif name == "squared_two_outputs":
        n, d, P = 80, 3, 12
        X = rng.standard_normal((n, d))
        Y = np.stack([np.abs(X[:, 0]), X[:, 1] * X[:, 2]], axis=1)
        loss, alpha = "squared", 1e-3
    elif name == "logistic_pima":
        X, y = load_table("pima")
        idx = rng.choice(len(y), 200, replace=False)
        X = standardize(X[idx][:, :5])
        Y = np.where(y[idx] == y.max(), 1.0, -1.0)[:, None]
        P, loss, alpha = 40, "logistic", 1e-3
    elif name == "logistic_badly_scaled":
        n, d, P = 150, 3, 30
        X = rng.standard_normal((n, d))
        Y = np.where(X[:, 0] ** 2 + X[:, 1] > 0.8 + 0.3 * rng.standard_normal(n), 1.0, -1.0)[:, None]
        X = X * np.array([1e-3, 1e3, 1.0])
        loss, alpha = "logistic", 1e-3
    elif name == "cross_entropy_3":
        n, d, P = 150, 3, 15
        X = rng.standard_normal((n, d))
        lab = np.digitize(X[:, 0] + X[:, 1] ** 2, [0.3, 1.5])
        Y = np.eye(3)[lab]
        loss, alpha = "cross_entropy", 1e-3
    elif name == "squared_large_alpha":
        n, d, P = 60, 3, 10
        X = rng.standard_normal((n, d))
        Y = rng.standard_normal((n, 1))
        loss, alpha = "squared", 10.0  # the zero solution is optimal
    else:  # pragma: no cover
        raise ValueError(name)
    Xa = _with_ones(np.asarray(X, dtype=float))
    D = _masks(Xa, P, rng)
    return GatedReLUProblem(Xa, D, Y, loss, alpha)


NAMES = ["squared_random", "squared_badly_scaled", "squared_two_outputs", "logistic_pima",
         "logistic_badly_scaled", "cross_entropy_3", "squared_large_alpha"]

_CACHE: dict = {}


def _oracle(name):
    if name not in _CACHE:
        pb = _make(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = solve_gated_cvxpy(pb.Xa, pb.D, pb.Y, pb.alpha, pb.loss.name)
        _CACHE[name] = (pb, ref)
    return _CACHE[name]


@pytest.mark.parametrize("name", NAMES)
def test_matches_clarabel(name):
    pb, ref = _oracle(name)
    out = solve_gated_working_set(pb, tol=TOL)
    gap = out["gap"]
    assert out["converged"]
    assert gap.relative_gap <= TOL
    obj = pb.objective(out["U"])
    assert obj == pytest.approx(gap.primal, rel=1e-12, abs=1e-15)
    ref_obj = ref["objective"]
    assert abs(obj - ref_obj) <= 1e-6 * abs(ref_obj) + 1e-12
    # the certificate bounds the true suboptimality (Clarabel's objective >= optimum)
    assert gap.gap >= (obj - ref_obj) - 1e-9
    # the reported gap is the full problem's certificate at the returned U
    again = pb.gap(out["U"])
    assert again.relative_gap == pytest.approx(gap.relative_gap, rel=1e-6, abs=1e-14)
    # bookkeeping
    assert out["n_iter"] >= 0 and out["n_grad_equiv"] > 0
    assert out["history"] and all(len(h) == 5 for h in out["history"])
    assert out["history"][-1][2] == pytest.approx(gap.relative_gap)


@pytest.mark.parametrize("name", ["squared_badly_scaled", "logistic_pima", "cross_entropy_3"])
def test_warm_start_converges_immediately(name):
    pb, _ = _oracle(name)
    first = solve_gated_working_set(pb, tol=TOL)
    again = solve_gated_working_set(pb, first["U"], tol=TOL)
    assert again["converged"]
    assert again["n_outer"] <= 1
    assert again["gap"].relative_gap <= TOL
    # a nearby warm start (perturbed solution) also converges quickly
    rng = np.random.default_rng(0)
    U0 = first["U"] * (1 + 1e-3 * rng.standard_normal(first["U"].shape))
    near = solve_gated_working_set(pb, U0, tol=TOL)
    assert near["converged"] and near["n_outer"] <= 3


def test_large_alpha_gives_zero_without_iterations():
    pb, _ = _oracle("squared_large_alpha")
    out = solve_gated_working_set(pb, tol=TOL)
    assert out["converged"] and out["n_iter"] == 0
    assert not np.any(out["U"])


@pytest.mark.parametrize("backend", ["woodbury", "dense", "cg"])
@pytest.mark.parametrize("name", ["squared_random", "logistic_badly_scaled"])
def test_newton_backends_agree(name, backend):
    pb, ref = _oracle(name)
    kw = {}
    if backend == "dense":
        kw["max_dual_n"] = 0  # no sample-space (Woodbury) solves
    elif backend == "cg":
        kw["dense_flops"] = 0.0  # every Newton system by preconditioned CG
    out = solve_gated_working_set(pb, tol=TOL, **kw)
    assert out["converged"] and out["gap"].relative_gap <= TOL
    assert abs(out["gap"].primal - ref["objective"]) <= 1e-6 * abs(ref["objective"])


def test_small_initial_working_set_grows():
    """With a tiny initial working set several rounds are needed; still certified."""
    pb, ref = _oracle("logistic_pima")
    out = solve_gated_working_set(pb, tol=TOL, n_init=2, newton_flops=0.0)
    assert out["converged"] and out["n_outer"] >= 2
    assert abs(out["gap"].primal - ref["objective"]) <= 1e-6 * abs(ref["objective"])


def test_solution_is_group_sparse():
    """Blocks that are zero in the oracle solution are exactly zero (no barrier dust)."""
    pb, ref = _oracle("squared_random")
    pb = GatedReLUProblem(pb.Xa, pb.D, pb.Y, pb.loss, 3e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = solve_gated_cvxpy(pb.Xa, pb.D, pb.Y, pb.alpha, "squared")
    out = solve_gated_working_set(pb, tol=1e-8)
    norms = np.linalg.norm(out["U"], axis=0)
    ref_norms = np.linalg.norm(ref["U"], axis=0)
    assert 0 < np.count_nonzero(norms) < norms.size
    assert np.all((norms > 0) == (ref_norms > 1e-6 * ref_norms.max()))


def test_max_iter_budget_and_verbose(capsys):
    pb, _ = _oracle("logistic_badly_scaled")
    out = solve_gated_working_set(pb, tol=1e-12, max_iter=3, verbose=1)
    assert out["n_iter"] <= 3 + 1
    assert not out["converged"]
    assert "[gated ws]" in capsys.readouterr().out


def test_solve_entry_point_uses_working_set():
    from sklearn.datasets import load_diabetes

    import cvxnn

    X, y = load_diabetes(return_X_y=True)
    res = cvxnn.solve(X[:150], y[:150], 1e-3, formulation="gated", random_state=0, n_gates=30)
    assert res.converged and res.relative_gap <= 1e-6
    warm = cvxnn.solve(X[:150], y[:150], 1e-3, formulation="gated", random_state=0, n_gates=30,
                       warm_start=res.weights)
    assert warm.converged and warm.n_iter == 0


@pytest.mark.parametrize("name", ["squared_two_outputs", "logistic_badly_scaled", "cross_entropy_3"])
def test_newton_system_back_ends_solve_the_same_system(name):
    """Sample-space (Woodbury), block-space Cholesky and CG solve K x = rhs alike."""
    from cvxnn.solvers.working_set import _Curvature, _WorkingSetSolver

    pb, _ = _oracle(name)
    rng = np.random.default_rng(1)
    S = _WorkingSetSolver(pb, chunk_bytes=2 ** 20, dense_flops=1e12, verbose=0)
    P, c = pb.D.shape[1], pb.Y.shape[1]
    pat, out = np.divmod(np.arange(P * c), c)
    d = pb.Xa.shape[1]
    u = rng.standard_normal((P * c, d))
    S.set_working_set(pat, out, u)
    Z = S.forward_w(np.arange(P * c), u)
    curv = _Curvature(pb.loss.name, Z, pb.Y)
    r2 = np.einsum("bd,bd->b", u, u)
    c1 = rng.uniform(0.5, 2.0, P * c) * 1e-2
    c2 = 0.5 * c1 / r2  # radial curvature c1 - c2 r^2 = c1 / 2 > 0
    A = np.arange(P * c)
    rhs = rng.standard_normal((P * c, d))
    woodbury = S._factor_woodbury if curv.off is None else S._factor_woodbury_full
    x_w = woodbury(A, curv, u, c1, c2)(rhs)
    x_d = S._factor_dense(A, curv, u, c1, c2)(rhs)
    S.cg_rtol = 1e-12
    x_c = S._solve_cg(A, -rhs, curv, u, c1, c2, max_cg=5000)
    res = rhs - S._hvp(A, curv, u, c1, c2, x_d)
    assert np.linalg.norm(res) <= 1e-8 * np.linalg.norm(rhs)
    scale = np.linalg.norm(x_d)
    assert np.linalg.norm(x_w - x_d) <= 1e-6 * scale
    assert np.linalg.norm(x_c - x_d) <= 1e-5 * scale


def test_barrier_method_alone_converges():
    pb, ref = _oracle("logistic_pima")
    out = solve_gated_working_set(pb, tol=TOL, method="barrier")
    assert out["converged"] and out["gap"].relative_gap <= TOL
    assert abs(out["gap"].primal - ref["objective"]) <= 1e-6 * abs(ref["objective"])


def test_block_prox_is_the_exact_block_minimiser():
    """The secular-equation block step minimises 1/2 v^T M v + q^T v + alpha ||v||."""
    from scipy.optimize import minimize

    from cvxnn.solvers.working_set import _block_prox

    rng = np.random.default_rng(3)
    for scale in (1e-3, 1.0, 1e3):
        B = rng.standard_normal((5, 4)) * np.array([scale, 1.0, 1.0 / scale, 1.0])
        M = B.T @ B / 5
        lam, Q = np.linalg.eigh(M)
        q = rng.standard_normal(4) * scale
        alpha = 0.3 * np.linalg.norm(q)
        v = _block_prox(np.maximum(lam, 0), Q, q, alpha)

        def f(x):
            return 0.5 * x @ M @ x + q @ x + alpha * np.linalg.norm(x)

        # optimality: M v + q + alpha v/||v|| = 0 (v != 0 since ||q|| > alpha)
        assert np.linalg.norm(v) > 0
        g = M @ v + q + alpha * v / np.linalg.norm(v)
        assert np.linalg.norm(g) <= 1e-8 * (np.linalg.norm(q) + alpha)
        best = minimize(f, v + 1e-3 * rng.standard_normal(4), method="Nelder-Mead",
                        options={"xatol": 1e-12, "fatol": 1e-14, "maxiter": 20000})
        assert f(v) <= best.fun + 1e-9 * max(1.0, abs(best.fun))
    # ||q|| <= alpha: zero
    assert not np.any(_block_prox(lam, Q, q, 1.01 * np.linalg.norm(q)))


def test_duplicate_rows_are_merged_for_the_squared_loss():
    """Gated squared loss with many duplicate samples: the merged problem gives the same
    optimum (Clarabel on the original rows) and the callback sees original objectives."""
    import cvxnn

    rng = np.random.default_rng(3)
    base = rng.standard_normal((25, 3))
    X = base[rng.integers(0, 25, 200)]                 # 200 rows, 25 distinct
    y = X[:, 0] - np.abs(X[:, 1]) + 0.3 * rng.standard_normal(200)   # noisy duplicates
    seen = []
    res = cvxnn.solve(X, y, 1e-2, formulation="gated", n_gates=15, random_state=0,
                      tol=1e-9, callback=seen.append)
    ref = cvxnn.solve(X, y, 1e-2, formulation="gated", gates=res.gates, solver="clarabel")
    assert res.relative_gap <= 1e-9
    assert abs(res.objective - ref.objective) <= 1e-7 * ref.objective
    assert res.network.objective(X, y, 1e-2) == pytest.approx(res.objective, rel=1e-10)
    assert seen and seen[-1].objective == pytest.approx(res.objective, rel=1e-8)


@pytest.mark.parametrize("loss", ["squared", "logistic"])
@pytest.mark.parametrize("n_blocks", [10, 30])
def test_sample_space_factorisation_with_flat_radial_curvature(loss, n_blocks):
    """Blocks with zero radial curvature (the exact penalty Hessian of the manifold
    step) go through the saddle-point capacitance matrix: the Woodbury solve matches a
    direct solve of the explicitly formed system, also with more blocks than samples
    (where only the manifold step's small radial regularisation keeps it regular)."""
    from cvxnn.solvers.working_set import MANIFOLD_RADIAL_REG, _Curvature, _WorkingSetSolver

    rng = np.random.default_rng(3)
    n, d, P = 20, 2, 30
    Xa = _with_ones(rng.standard_normal((n, d)))
    D = _masks(Xa, P, rng)
    Y = (np.where(rng.standard_normal(n) > 0, 1.0, -1.0) if loss == "logistic"
         else rng.standard_normal(n))[:, None]
    pb = GatedReLUProblem(Xa, D, Y, loss, 1e-2)
    S = _WorkingSetSolver(pb, chunk_bytes=2 ** 20, dense_flops=1e12, verbose=0)
    pat, out = np.arange(P), np.zeros(P, dtype=int)
    u = rng.standard_normal((P, d + 1))
    S.set_working_set(pat, out, u)
    A = np.arange(n_blocks)
    uA = u[A]
    Z = S.forward_w(A, uA)
    curv = _Curvature(loss, Z, pb.Y)
    r2 = np.einsum("bd,bd->b", uA, uA)
    c1 = rng.uniform(0.5, 2.0, n_blocks) * 1e-2
    if n_blocks < n:
        # half of the blocks exactly flat, the others with positive radial curvature
        c2 = np.where(np.arange(n_blocks) % 2 == 0, c1 / r2, 0.5 * c1 / r2)
    else:
        c2 = c1 / r2 * (1.0 - MANIFOLD_RADIAL_REG)
    m = n_blocks * (d + 1)
    K = np.stack([S._hvp(A, curv, uA, c1, c2, e.reshape(n_blocks, d + 1)).ravel()
                  for e in np.eye(m)], axis=1)
    rhs = rng.standard_normal((n_blocks, d + 1))
    x_ref = np.linalg.solve(K, rhs.ravel()).reshape(rhs.shape)
    solve = S._factor_woodbury(A, curv, uA, c1, c2)
    assert solve is not None
    x_w = solve(rhs)
    res = np.linalg.norm(rhs - S._hvp(A, curv, uA, c1, c2, x_w)) / np.linalg.norm(rhs)
    if n_blocks < n:
        assert np.linalg.norm(x_w - x_ref) <= 1e-8 * np.linalg.norm(x_ref)
        assert res <= 1e-10
    else:
        # condition number ~ 1 / MANIFOLD_RADIAL_REG: a backward-stable solve
        assert res <= 1e-5


def test_factor_verifies_on_first_use_and_falls_back(monkeypatch):
    """``_factor`` checks each factorisation on its first solve: a back end whose
    unrefined solve is wrong (here a sabotaged dense Cholesky) is discarded for the
    next one, the answer is refined to ``REFINE_RTOL`` and the verified factor (not
    the discarded one) is kept for the stale-factor CG."""
    from cvxnn.solvers import working_set as ws

    pb, _ = _oracle("squared_two_outputs")
    rng = np.random.default_rng(4)
    S = ws._WorkingSetSolver(pb, chunk_bytes=2 ** 20, dense_flops=1e12, verbose=0)
    P, c = pb.D.shape[1], pb.Y.shape[1]
    pat, out = np.divmod(np.arange(P * c), c)
    d = pb.Xa.shape[1]
    u = rng.standard_normal((P * c, d))
    S.set_working_set(pat, out, u)
    A = np.arange(P * c)
    curv = ws._Curvature("squared", S.forward_w(A, u), pb.Y)
    c1 = rng.uniform(0.5, 2.0, P * c) * 1e-2
    c2 = 0.5 * c1 / np.einsum("bd,bd->b", u, u)
    rhs = rng.standard_normal((P * c, d))
    calls = []

    def broken(*args):
        calls.append("dense")
        return lambda r: 0.5 * r

    monkeypatch.setattr(S, "_factor_dense", broken)
    S.max_dual_n = 10 ** 6
    S.dense_flops = 1e12
    solve = S._factor(A, curv, u, c1, c2)
    x = solve(rhs)
    assert calls == ["dense"]  # tried first (cheaper on this small problem) ...
    res = np.linalg.norm(rhs - S._hvp(A, curv, u, c1, c2, x)) / np.linalg.norm(rhs)
    assert res <= 10 * ws.REFINE_RTOL  # ... and replaced by the sample-space solve
    assert S._stale is not None and S._stale[1](rhs) is not None
    assert np.linalg.norm(S._stale[1](rhs) - 0.5 * rhs) > 1e-3 * np.linalg.norm(rhs)
    # the second solve reuses the verified factor (no new factorisation attempt)
    solve(rng.standard_normal((P * c, d)))
    assert calls == ["dense"]


@pytest.mark.parametrize("name", ["squared_random", "squared_badly_scaled", "squared_two_outputs",
                                  "logistic_pima", "logistic_badly_scaled", "cross_entropy_3"])
def test_mixed_precision_dense_solves_match_clarabel(name, monkeypatch):
    """Float32 Hessian and Cholesky (CG-refined with exact float64 products) reach the
    oracle's objective and the certificate; on well-scaled data without falling back
    to float64 (columns scaled 1e-3..1e3 may need the fallback, at most once)."""
    from cvxnn.solvers import working_set as ws

    monkeypatch.setattr(ws, "MIXED_MIN_SIDE", 0)
    pb, ref = _oracle(name)
    out = solve_gated_working_set(pb, tol=TOL, max_dual_n=0)  # dense block-space solves
    assert out["converged"] and out["gap"].relative_gap <= TOL
    assert abs(out["gap"].primal - ref["objective"]) <= 2e-6 * abs(ref["objective"])
    assert out["n_mixed_fallbacks"] <= (1 if "badly_scaled" in name else 0)


def test_inaccurate_float32_factor_switches_to_float64(monkeypatch):
    """A float32 factor that cannot reach MIXED_ACCEPT (here: never) is replaced by a
    float64 one for the rest of the solve, which still converges to the oracle."""
    from cvxnn.solvers import working_set as ws

    monkeypatch.setattr(ws, "MIXED_MIN_SIDE", 0)
    monkeypatch.setattr(ws, "MIXED_ACCEPT", 0.0)
    pb, ref = _oracle("squared_random")
    out = solve_gated_working_set(pb, tol=TOL, max_dual_n=0)
    assert out["n_mixed_fallbacks"] == 1
    assert out["converged"] and out["gap"].relative_gap <= TOL
    assert abs(out["gap"].primal - ref["objective"]) <= 2e-6 * abs(ref["objective"])


def test_mixed_precision_on_a_real_table_matches_float64():
    """wdbc, 40 patterns x 31 columns (above MIXED_MIN_SIDE): the mixed-precision
    solve certifies the same optimum as the all-float64 one."""
    from cvxnn.solvers import working_set as ws

    X, y = load_table("wdbc")
    Xa = _with_ones(standardize(X))
    rng = np.random.default_rng(7)
    D = _masks(Xa, 40, rng)
    assert D.shape[1] * Xa.shape[1] >= ws.MIXED_MIN_SIDE
    Y = np.where(y == y.max(), 1.0, -1.0)[:, None].astype(float)
    pb = GatedReLUProblem(Xa, D, Y, "squared", 1e-3)
    mixed = solve_gated_working_set(pb, tol=TOL, max_dual_n=0)
    full = solve_gated_working_set(pb, tol=TOL, max_dual_n=0, mixed_precision=False)
    for out in (mixed, full):
        assert out["converged"] and out["gap"].relative_gap <= TOL
    assert mixed["n_mixed_fallbacks"] == 0
    assert abs(mixed["gap"].primal - full["gap"].primal) <= 2e-6 * full["gap"].primal


@pytest.mark.parametrize("name", ["logistic_pima", "cross_entropy_3", "squared_two_outputs"])
def test_dense_hessian_matches_explicit_products(name, monkeypatch):
    """The block-space loss Hessian (symmetric rank-k updates of curvature-scaled rows,
    off-diagonal output blocks for the softmax) equals the matrix of exact
    Hessian-vector products; its float32 version (mixed precision) agrees to float32
    accuracy."""
    from cvxnn.solvers import working_set as ws

    pb, _ = _oracle(name)
    rng = np.random.default_rng(5)
    S = ws._WorkingSetSolver(pb, chunk_bytes=2 ** 12, dense_flops=1e12, verbose=0)
    P, c = pb.D.shape[1], pb.Y.shape[1]
    pat, out = np.divmod(np.arange(P * c), c)
    d = pb.Xa.shape[1]
    u = 0.3 * rng.standard_normal((P * c, d))
    S.set_working_set(pat, out, u)
    A = rng.permutation(P * c)[: max(2, P * c // 2)]  # a subset, out of order
    curv = ws._Curvature(pb.loss.name, S.forward_w(np.arange(P * c), u), pb.Y)
    m = len(A) * d
    zeros = np.zeros(len(A))
    H_ref = np.stack([S._hvp(A, curv, u[A], zeros, zeros, e.reshape(len(A), d)).ravel()
                      for e in np.eye(m)], axis=1)
    S.mixed = False
    H64 = S._dense_hessian(A, curv)
    assert H64.dtype == np.float64
    assert np.abs(H64 - H_ref).max() <= 1e-12 * np.abs(H_ref).max()
    S.mixed = True
    H32 = S._dense_hessian(A, curv)
    assert H32.dtype == np.float32
    assert np.abs(H32 - H_ref).max() <= 1e-5 * np.abs(H_ref).max()
