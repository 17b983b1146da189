"""Tests of the native ReLU solver (working-set interior point, ``cvxnn.solvers.relu_ipm``).

Every case is checked against the Clarabel oracle (``solve_relu_cvxpy``):

* the objective agrees to 1e-6 (relative),
* the relative cone violation is <= 1e-6 (in fact ~1e-16 after the exact projection),
* the reported duality gap bounds the true suboptimality (``objective - p*``, with
  ``p* <= oracle objective``) up to 1e-9,
* the network built from ``(V, W)`` has the same weight-decay objective as the convex
  program (evaluated with true ReLUs on the raw data),
* restarting from the solution stops at once.

The cases cover the three losses, bias columns, a badly scaled (x1e3) feature,
both linear-algebra back ends (dense and Woodbury) and the working-set mode.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cvxnn._data import augment, encode_targets
from cvxnn.network import network_from_relu
from cvxnn.patterns import compute_masks, sample_gates
from cvxnn.problems import ReLUProblem, group_norms
from cvxnn.solvers.cone_projection import multipliers_dense, project_cones
from cvxnn.solvers.relu_ipm import price_blocks, solve_relu_ipm

from .conftest import load_table as _table, standardize

pytest.importorskip("cvxpy")
from cvxnn.solvers.cvxpy_ref import solve_relu_cvxpy  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:cvxpy solver .* returned status:RuntimeWarning")

TOL = 1e-6


# --------------------------------------------------------------------------- data
def _dataset(name, n, rng):
    if name == "pima":
        X, y = _table("pima")
        X = standardize(X)[:, :4]
    elif name == "breast_w":
        X, y = _table("breast_w")
        X = standardize(X)[:, :5]
    elif name == "australian":
        X, y = _table("australian")
        X = standardize(X)[:, :6]
    elif name == "diabetes":
        from sklearn.datasets import load_diabetes

        X, y = load_diabetes(return_X_y=True)
        X = standardize(X)
        y = (y - y.mean()) / y.std()
    elif name == "blobs3":
        X = rng.standard_normal((n, 3))
        y = np.argmax(X @ rng.standard_normal((3, 3)) + 0.5 * rng.standard_normal((n, 3)), axis=1)
    elif name == "wave":
        X = rng.uniform(-2, 2, size=(n, 2))
        y = np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] ** 2 + 0.05 * rng.standard_normal(n)
    else:  # pragma: no cover
        raise ValueError(name)
    idx = rng.permutation(X.shape[0])[:n]
    return np.ascontiguousarray(X[idx]), np.asarray(y)[idx]


# (dataset, n, n_gates, loss, alpha, badly scaled column, id)
CASES = [
    ("pima", 150, 20, "squared", 1e-2, False, "pima-squared"),
    ("pima", 200, 25, "logistic", 1e-3, False, "pima-logistic"),
    ("blobs3", 120, 12, "cross_entropy", 1e-2, False, "blobs3-ce"),
    ("diabetes", 100, 20, "squared", 1e-3, False, "diabetes-squared-woodbury"),
    ("breast_w", 200, 25, "logistic", 1e-2, True, "breast_w-logistic-scaled-x1e3"),
    ("australian", 250, 20, "squared", 1e-3, True, "australian-squared-scaled-x1e3"),
    ("wave", 40, 10, "squared", 1e-4, False, "wave-squared-small-alpha"),
]


def _build(case, seed=0):
    name, n, n_gates, loss, alpha, scaled, _ = case
    rng = np.random.default_rng(seed)
    X, y = _dataset(name, n, rng)
    G = sample_gates(X, n_gates, bias=True, random_state=seed)
    D = compute_masks(X, G, bias=True)
    if scaled:
        # the patterns stay activation patterns of the scaled data (scale the gates back)
        X = X.copy()
        X[:, 0] *= 1e3
    Y, classes = encode_targets(y, loss, None)
    Xa = augment(X, True)
    return ReLUProblem(Xa, D, Y, loss, alpha), X, y, classes


_ORACLE = {}


def _oracle(case):
    key = case[-1]
    if key not in _ORACLE:
        pr, *_ = _build(case)
        _ORACLE[key] = solve_relu_cvxpy(pr.Xa, pr.D, pr.Y, pr.alpha, pr.loss)
    return _ORACLE[key]


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("case", CASES, ids=[c[-1] for c in CASES])
def test_matches_clarabel_oracle(case):
    pr, X, y, classes = _build(case)
    ref = _oracle(case)
    out = solve_relu_ipm(pr, tol=TOL)
    Q, gap = out["Q"], out["gap"]
    assert out["converged"]
    assert gap.relative_gap <= TOL
    assert out["violation"] <= TOL
    assert pr.violation(Q) == pytest.approx(out["violation"], abs=1e-15)
    # objective: within 1e-6 of the oracle (and never meaningfully below its optimum)
    assert gap.primal == pytest.approx(ref["objective"], rel=1e-6)
    assert pr.objective(Q) == pytest.approx(gap.primal, rel=1e-13)
    # the certificate bounds the true suboptimality (p* <= oracle objective)
    assert gap.gap >= gap.primal - ref["objective"] - 1e-9
    # the multipliers reproduce the certificate
    again = pr.gap(Q, A=out["multipliers"], refine_iter=0)
    assert again.relative_gap == pytest.approx(gap.relative_gap, rel=1e-6, abs=1e-12)
    assert np.all(out["multipliers"] >= 0)
    # the network encoded by (V, W) reproduces the convex objective with true ReLUs
    net = network_from_relu(Q[:, 0], Q[:, 1], bias=True, classes=classes, loss=pr.loss.name)
    assert net.objective(X, y, pr.alpha) == pytest.approx(gap.primal, rel=1e-8)


@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[4]], ids=[CASES[i][-1] for i in (0, 2, 4)])
def test_warm_start_from_solution_stops_at_once(case):
    pr, *_ = _build(case)
    first = solve_relu_ipm(pr, tol=TOL)
    again = solve_relu_ipm(pr, first["Q"], tol=TOL)
    assert again["converged"] and again["n_iter"] == 0
    np.testing.assert_allclose(again["Q"], first["Q"], rtol=0, atol=1e-12 * np.abs(first["Q"]).max())


@pytest.mark.parametrize("case", [CASES[1], CASES[3]], ids=[CASES[i][-1] for i in (1, 3)])
def test_working_set_mode_matches_full_mode(case):
    pr, *_ = _build(case)
    ref = _oracle(case)
    full = solve_relu_ipm(pr, tol=TOL, full=True)
    ws = solve_relu_ipm(pr, tol=TOL, full=False, init_size=8, gated_seed=False)
    assert ws["converged"] and full["converged"]
    assert ws["n_rounds"] >= 2        # the working set had to grow
    assert ws["gap"].primal == pytest.approx(ref["objective"], rel=1e-6)
    assert ws["gap"].primal == pytest.approx(full["gap"].primal, rel=1e-6)
    assert ws["violation"] <= TOL
    # seeded by the support of a rough gated solution: the same certified optimum
    seeded = solve_relu_ipm(pr, tol=TOL, full=False, init_size=8)
    assert seeded["converged"] and seeded["violation"] <= TOL
    assert seeded["gap"].primal == pytest.approx(ref["objective"], rel=1e-6)


def test_working_set_covering_nearly_everything_switches_to_one_full_run(monkeypatch):
    """A first working set whose interior-point iteration costs at least
    ``FULL_FRACTION`` of one on every block is replaced by every block (no restart
    for late violators); below that fraction the working set grows as before."""
    import cvxnn.solvers.relu_ipm as relu_ipm

    case = CASES[0]
    pr, *_ = _build(case)
    ref = _oracle(case)
    monkeypatch.setattr(relu_ipm, "FULL_FRACTION", 0.0)       # any set triggers the switch
    switched = solve_relu_ipm(pr, tol=TOL, full=False, init_size=8, gated_seed=False)
    assert switched["converged"] and switched["n_rounds"] == 1
    assert switched["gap"].primal == pytest.approx(ref["objective"], rel=1e-6)
    assert switched["violation"] <= TOL
    monkeypatch.setattr(relu_ipm, "FULL_FRACTION", np.inf)    # never
    grown = solve_relu_ipm(pr, tol=TOL, full=False, init_size=8, gated_seed=False)
    assert grown["converged"] and grown["n_rounds"] >= 2
    assert grown["gap"].primal == pytest.approx(switched["gap"].primal, rel=1e-6)


def test_solution_is_sparse_and_zero_blocks_are_dual_feasible():
    case = CASES[0]
    pr, *_ = _build(case)
    out = solve_relu_ipm(pr, tol=TOL)
    nrm = group_norms(out["Q"]).ravel()
    zero = nrm == 0
    assert zero.any() and (~zero).any()
    Theta = -pr.loss.gradient(pr.predict(out["Q"]), pr.Y)
    rho, _, _ = price_blocks(pr, Theta)
    assert np.all(rho[zero] <= pr.alpha * (1 + 1e-6))
    # active blocks sit on the boundary of their dual constraint
    np.testing.assert_allclose(rho[~zero], pr.alpha, rtol=1e-5)


def test_cone_projection_matches_nnls():
    from scipy.optimize import nnls

    rng = np.random.default_rng(3)
    n, d, P = 60, 4, 6
    Xa = np.hstack([rng.standard_normal((n, d - 1)), np.ones((n, 1))])
    D = Xa @ rng.standard_normal((d, P)) > 0
    S = np.where(D, 1.0, -1.0)
    G = rng.standard_normal((d, 2 * P))
    pattern = np.tile(np.arange(P), 2)
    U, idx, lam, done = project_cones(Xa, S, pattern, G)
    assert done.all()
    A = multipliers_dense(n, idx, lam)
    assert np.all(A >= 0)
    for b in range(2 * P):
        Ab = S[:, pattern[b], None] * Xa
        # U is feasible, U = g + Ab^T a, and ||U|| = min_{a >= 0} ||g + Ab^T a||
        assert (Ab @ U[:, b]).min() >= -1e-12
        np.testing.assert_allclose(U[:, b], G[:, b] + Ab.T @ A[:, b], atol=1e-12)
        _, res = nnls(Ab.T, -G[:, b])
        assert np.linalg.norm(U[:, b]) == pytest.approx(res, rel=1e-9, abs=1e-12)


def test_cone_projection_warm_start_gives_the_same_projection():
    """``init_idx`` guesses of the active rows (exact, partly wrong, random, repeated
    rows, too many) change the path of the active-set method, never its result."""
    rng = np.random.default_rng(5)
    n, d, P = 120, 5, 10
    Xa = np.hstack([rng.standard_normal((n, d - 1)), np.ones((n, 1))])
    S = np.where(Xa @ rng.standard_normal((d, P)) > 0, 1.0, -1.0)
    G = rng.standard_normal((d, 2 * P)) * 3
    pattern = np.tile(np.arange(P), 2)
    U, idx, lam, done = project_cones(Xa, S, pattern, G)
    assert done.all() and (idx >= 0).sum() > 2 * P      # several active rows per block
    noisy = idx.copy()
    noisy[rng.random(idx.shape) < 0.3] = -1
    flip = rng.random(idx.shape) < 0.2
    noisy[flip] = rng.integers(0, n, int(flip.sum()))
    repeated = idx.copy()
    repeated[1] = repeated[0]
    guesses = {"exact": idx, "noisy": noisy, "random": rng.integers(-1, n, (d, 2 * P)),
               "repeated": repeated, "short": idx[:2]}
    for name, guess in guesses.items():
        U2, idx2, lam2, done2 = project_cones(Xa, S, pattern, G, init_idx=guess)
        assert done2.all(), name
        np.testing.assert_allclose(U2, U, atol=1e-11, err_msg=name)
        A2 = multipliers_dense(n, idx2, lam2)
        assert np.all(A2 >= 0), name
        np.testing.assert_allclose(U2, G + (Xa.T @ (S[:, pattern] * A2)), atol=1e-11, err_msg=name)
    with pytest.raises(ValueError, match="init_idx"):
        project_cones(Xa, S, pattern, G, init_idx=np.zeros((d + 1, 2 * P), dtype=int))


def test_solve_entry_point_uses_native_relu_solver():
    import cvxnn

    X, y = _dataset("pima", 120, np.random.default_rng(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = cvxnn.solve(X, y, 1e-2, formulation="relu", loss="logistic", n_gates=15,
                          random_state=0, tol=1e-6)
    assert res.converged and res.relative_gap <= 1e-6 and res.constraint_violation <= 1e-6
    assert res.network.objective(X, y, 1e-2) == pytest.approx(res.objective, rel=1e-8)
    warm = cvxnn.solve(X, y, 1e-2, formulation="relu", loss="logistic", gates=res.gates,
                       warm_start=res.weights, tol=1e-6)
    assert warm.n_iter == 0 and warm.objective == pytest.approx(res.objective, rel=1e-10)


def test_basic_augmented_lagrangian_is_still_available():
    from cvxnn.solvers.al import solve_relu_al_basic

    pr, *_ = _build(CASES[6])
    out = solve_relu_al_basic(pr, tol=1e-3, max_iter=3000)
    ref = _oracle(CASES[6])
    assert out["gap"].primal == pytest.approx(ref["objective"], rel=1e-2)


@pytest.mark.parametrize("n_blocks", [4, 12])
def test_face_newton_step_in_sample_space_matches_the_dense_system(n_blocks):
    """The sample-space (Woodbury / saddle-point) face Newton solve equals a dense solve
    of the explicitly formed system, with fewer and with more blocks than samples."""
    from cvxnn.solvers.relu_ipm import FACE_RADIAL_REG, _face_newton_sample_space

    rng = np.random.default_rng(5)
    n = 10
    dims = rng.integers(2, 5, n_blocks)
    offs = np.concatenate([[0], np.cumsum(dims)])
    m = int(offs[-1])
    MN = rng.standard_normal((n, m))
    sw = rng.uniform(0.2, 1.0, n)
    c1 = rng.uniform(0.1, 2.0, n_blocks)
    u = rng.standard_normal(m)
    for t in range(n_blocks):
        u[offs[t]:offs[t + 1]] /= np.linalg.norm(u[offs[t]:offs[t + 1]])
    g = rng.standard_normal(m)
    J = MN * sw[:, None]
    K = J.T @ J
    for t in range(n_blocks):
        sl = slice(offs[t], offs[t + 1])
        K[sl, sl] += c1[t] * (np.eye(dims[t]) - (1 - FACE_RADIAL_REG) * np.outer(u[sl], u[sl]))
    dv = _face_newton_sample_space(MN, sw, offs, c1, u, g)
    assert dv is not None
    ref = -np.linalg.solve(K, g)
    assert np.linalg.norm(dv - ref) <= 1e-6 * np.linalg.norm(ref)
    assert np.linalg.norm(K @ dv + g) <= 1e-8 * np.linalg.norm(g)


def test_face_polish_projected_search_reaches_the_oracle(monkeypatch, capsys):
    """The polish's projected search (several cone constraints crossed by a short ratio
    step: the blocks leaving their cones are projected back exactly) is taken on this
    problem when it is not given up after failed searches, and the certified optimum
    is the oracle's, as without it."""
    from cvxnn.solvers import relu_ipm

    case = CASES[5]                                   # australian, one column x 1e3
    pr, *_ = _build(case)
    ref = _oracle(case)
    monkeypatch.setattr(relu_ipm, "PROJECTED_SEARCH_FAILURES", 10 ** 9)
    out = solve_relu_ipm(pr, tol=TOL, verbose=3)
    assert "polish: projected step" in capsys.readouterr().out
    assert out["converged"] and out["violation"] <= TOL
    assert out["gap"].primal == pytest.approx(ref["objective"], rel=1e-6)
    monkeypatch.setattr(relu_ipm, "PROJECTED_SEARCH_BELOW", 0.0)
    off = solve_relu_ipm(pr, tol=TOL, verbose=3)
    assert "polish: projected step" not in capsys.readouterr().out
    assert off["converged"]
    assert off["gap"].primal == pytest.approx(out["gap"].primal, rel=2e-6)


def test_face_polish_meets_several_blocking_rows_at_once(monkeypatch, capsys):
    """Rows that block the face Newton step within a negligible move (nearly active
    rows the interior-point iterate left off the face) join their faces together; the
    certified optimum is the oracle's, and the same as when they are met one ratio
    step at a time."""
    from cvxnn.solvers import relu_ipm

    case = CASES[5]                                   # australian: duplicate rows
    pr, *_ = _build(case)
    ref = _oracle(case)
    out = solve_relu_ipm(pr, tol=TOL, verbose=3)
    assert "blocking rows join their faces" in capsys.readouterr().out
    assert out["converged"] and out["violation"] <= TOL
    assert out["gap"].primal == pytest.approx(ref["objective"], rel=1e-6)
    monkeypatch.setattr(relu_ipm, "BLOCKING_AT_ONCE", -1.0)
    off = solve_relu_ipm(pr, tol=TOL, verbose=3)
    assert "blocking rows join their faces" not in capsys.readouterr().out
    assert off["converged"]
    assert off["gap"].primal == pytest.approx(out["gap"].primal, rel=2e-6)


# ------------------------------------------------------------------ cone-row screening
def _gates(case, seed=0):
    """The gates ``_build`` draws for ``case``."""
    name, n, n_gates, *_ = case
    X, _ = _dataset(name, n, np.random.default_rng(seed))
    return sample_gates(X, n_gates, bias=True, random_state=seed)


def test_screen_cone_rows_keeps_the_rows_nearest_to_each_gate():
    from cvxnn.solvers.relu_ipm import screen_cone_rows

    case = CASES[0]
    pr, *_ = _build(case)
    G = _gates(case)
    n, d = pr.Xa.shape
    keep = screen_cone_rows(pr, G, per_dim=6)
    assert keep.shape == (n, G.shape[1]) and keep.dtype == bool
    assert np.all(keep.sum(axis=0) == 6 * d)
    dist = np.abs(pr.Xa @ G) / np.linalg.norm(pr.Xa, axis=1)[:, None]
    for i in range(G.shape[1]):
        assert dist[keep[:, i], i].max() <= dist[~keep[:, i], i].min()
    # gates without the bias row act with bias 0: they reproduce no mask here, so
    # no column is screened and nothing is returned
    assert screen_cone_rows(pr, G[:-1], per_dim=6) is None
    # a gate that does not reproduce its mask keeps all its rows
    G2 = G.copy()
    G2[:, 3] *= -1.0
    keep2 = screen_cone_rows(pr, G2, per_dim=6)
    assert keep2[:, 3].all() and np.array_equal(np.delete(keep2, 3, 1), np.delete(keep, 3, 1))
    # nothing to gain, or nothing to go on
    assert screen_cone_rows(pr, G, per_dim=n) is None
    assert screen_cone_rows(pr, None) is None
    assert screen_cone_rows(pr, G[:, :5]) is None


@pytest.mark.parametrize("per_dim", [None, 1])
@pytest.mark.parametrize("case", CASES[:3], ids=[c[-1] for c in CASES[:3]])
def test_screened_cone_rows_reach_the_clarabel_oracle(case, per_dim, monkeypatch, capsys):
    """With the gates the interior-point method starts on the rows nearest to each gate;
    rows its iterates violate join on the way (``per_dim=1`` leaves out nearly every
    facet), and the result is the oracle's optimum, feasible for every row."""
    from cvxnn.solvers import relu_ipm

    if per_dim is not None:
        monkeypatch.setattr(relu_ipm, "ROWS_PER_DIM", per_dim)
    pr, *_ = _build(case)
    ref = _oracle(case)
    out = solve_relu_ipm(pr, tol=TOL, gates=_gates(case), verbose=3)
    text = capsys.readouterr().out
    assert "cone rows" in text
    if per_dim == 1:
        assert "(+0)" in text and any(f"(+{k})" in text for k in range(1, 10_000))
    assert out["converged"]
    assert out["gap"].relative_gap <= TOL and out["violation"] <= TOL
    assert pr.violation(out["Q"]) <= 1e-12
    assert out["gap"].primal == pytest.approx(ref["objective"], rel=1e-6)
    assert out["gap"].gap >= out["gap"].primal - ref["objective"] - 1e-9


@pytest.mark.parametrize("per_dim", [None, 1])
@pytest.mark.parametrize("case", [CASES[0], CASES[2]], ids=[CASES[0][-1], CASES[2][-1]])
def test_screened_cone_rows_in_working_set_mode_reach_the_oracle(case, per_dim, monkeypatch,
                                                                 capsys):
    """Working-set rounds start on the screened rows too; the certified optimum is the
    oracle's, feasible for every row."""
    from cvxnn.solvers import relu_ipm

    if per_dim is not None:
        monkeypatch.setattr(relu_ipm, "ROWS_PER_DIM", per_dim)
    pr, *_ = _build(case)
    ref = _oracle(case)
    out = solve_relu_ipm(pr, tol=TOL, full=False, init_size=8, gated_seed=False,
                         gates=_gates(case), verbose=3)
    text = capsys.readouterr().out
    assert "rows" in text and "round" in text
    assert out["converged"] and out["n_rounds"] >= 2
    assert out["gap"].relative_gap <= TOL and out["violation"] <= TOL
    assert pr.violation(out["Q"]) <= 1e-12
    assert out["gap"].primal == pytest.approx(ref["objective"], rel=1e-6)
