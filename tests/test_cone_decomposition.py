"""Tests of the cone decompositions (``cvxnn.cone_decomposition``).

* exact method (CD-SOCP): every block's objective ``||v|| + ||v - u||`` agrees with a
  cvxpy + Clarabel oracle of the same SOCP to 1e-6 (relative), the returned gap is a
  valid certificate against the oracle, ``V - W = U`` and the cone constraints hold to
  rounding, and the ReLU network rebuilt from ``(V, W)`` predicts exactly what the
  gated model predicts on the training data (1e-8 relative);
* approximate method (CD-A): never a smaller inflation than the exact optimum, small
  violation (none after cleanup);
* closed-form blocks (zero, ``u`` or ``-u`` in the cone), several outputs, 2-D ``U``,
  a cone without interior (reported, not a crash) and argument errors.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import cvxnn
from cvxnn._data import augment
from cvxnn.cone_decomposition import ConeDecomposition, cone_decompose, decompose_solution
from cvxnn.patterns import compute_masks, sample_gates

from .conftest import load_table, standardize


# --------------------------------------------------------------------------- helpers
def _synthetic(n=60, d=3, n_gates=12, c=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    G = sample_gates(X, n_gates, bias=True, random_state=seed)
    D = compute_masks(X, G, bias=True)
    Xa = augment(X, True)
    U = rng.standard_normal((d + 1, D.shape[1], c))
    return Xa, D, U


def _pima(n=120, d=5, seed=0):
    X, y = load_table("pima")
    rng = np.random.default_rng(seed)
    idx = rng.choice(X.shape[0], n, replace=False)
    return standardize(X[idx])[:, :d], y[idx]


def _oracle(Xa, D, U):
    """Per-block optimum of min ||v|| + ||v - u|| s.t. S_i Xa v >= 0, S_i Xa (v - u) >= 0."""
    cp = pytest.importorskip("cvxpy")
    d, P, c = U.shape
    S = np.where(D, 1.0, -1.0)
    blocks = [(i, k) for i in range(P) for k in range(c) if np.linalg.norm(U[:, i, k]) > 0]
    Vs = [cp.Variable(d) for _ in blocks]
    obj, cons = 0, []
    for v, (i, k) in zip(Vs, blocks):
        A = S[:, i][:, None] * Xa
        u = U[:, i, k]
        obj = obj + cp.norm(v) + cp.norm(v - u)
        cons += [A @ v >= 0, A @ v >= A @ u]
    prob = cp.Problem(cp.Minimize(obj), cons)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prob.solve(solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-11,
                   tol_ktratio=1e-10, max_iter=500)
    out = np.full((P, c), np.nan)
    for v, (i, k) in zip(Vs, blocks):
        x = v.value
        out[i, k] = np.linalg.norm(x) + np.linalg.norm(x - U[:, i, k])
    return out


def _block_objective(dec):
    V = dec.V if dec.V.ndim == 3 else dec.V[:, :, None]
    W = dec.W if dec.W.ndim == 3 else dec.W[:, :, None]
    return np.linalg.norm(V, axis=0) + np.linalg.norm(W, axis=0)


def _check_decomposition(Xa, D, U, dec, viol_tol=1e-12):
    """V - W = U, cones hold, predictions preserved."""
    S = np.where(D, 1.0, -1.0)
    scale = np.abs(U).max() * max(1.0, float(np.nanmax(dec.inflation, initial=1.0)))
    assert np.abs(dec.V - dec.W - U).max() <= 1e-13 * scale
    for Q in (dec.V, dec.W):
        C = np.einsum("nd,dpc->npc", Xa, Q) * S[:, :, None]
        rown = np.linalg.norm(Xa, axis=1)[:, None, None]
        qn = np.linalg.norm(Q, axis=0)[None]
        assert np.all(C >= -viol_tol * rown * qn)
    assert dec.max_violation <= viol_tol
    Zg = np.einsum("np,npc->nc", D.astype(float), np.einsum("nd,dpc->npc", Xa, U))
    Zr = np.einsum("npc->nc", np.maximum(np.einsum("nd,dpc->npc", Xa, dec.V), 0)
                   - np.maximum(np.einsum("nd,dpc->npc", Xa, dec.W), 0))
    assert np.abs(Zr - Zg).max() <= 1e-10 * max(1.0, np.abs(Zg).max())


# --------------------------------------------------------------------------- exact
def test_exact_matches_oracle_synthetic():
    Xa, D, U = _synthetic()
    dec = cone_decompose(Xa, D, U)
    assert isinstance(dec, ConeDecomposition)
    assert dec.success and dec.method == "exact"
    assert dec.V.shape == U.shape and dec.W.shape == U.shape
    assert set(np.unique(dec.status)) <= {"optimal", "in_cone", "neg_in_cone"}
    _check_decomposition(Xa, D, U, dec)

    ref = _oracle(Xa, D, U)
    mine = _block_objective(dec)
    np.testing.assert_allclose(mine, ref, rtol=1e-6)
    # the certificates are valid: the oracle is never below our lower bound
    assert np.all(dec.gap <= 1e-9)
    assert np.all(ref >= (1 - dec.gap) * mine - 1e-9 * mine)
    # inflation bookkeeping
    un = np.linalg.norm(U, axis=0)
    np.testing.assert_allclose(dec.inflation, mine / un, rtol=1e-12)
    np.testing.assert_allclose(dec.total_inflation, mine.sum() / un.sum(), rtol=1e-12)
    assert np.all(dec.inflation >= 1 - 1e-12)


def test_exact_on_pmlb_gated_solution():
    X, y = _pima()
    res = cvxnn.solve(X, y, 1e-3, formulation="gated", n_gates=20, random_state=0,
                      classification=True)
    net, dec = decompose_solution(X, res)
    assert dec.success, dec
    assert isinstance(net, cvxnn.TwoLayerReLU) and not isinstance(net, cvxnn.GatedTwoLayerReLU)
    # the ReLU network predicts what the gated model predicts, on the training data
    Zg = res.network.forward(X)
    Zr = net.forward(X)
    assert np.abs(Zr - Zg).max() <= 1e-8 * np.abs(Zg).max()
    np.testing.assert_array_equal(net.predict(X), res.network.predict(X))
    # the reported ReLU objective is the network's weight-decay objective
    np.testing.assert_allclose(net.objective(X, y, res.alpha), dec.relu_objective, rtol=1e-9)
    assert dec.relu_objective >= res.objective * (1 - 1e-12)

    Xa = augment(X, True)
    D = compute_masks(X, res.gates, bias=True)
    U = res.weights["U"]
    _check_decomposition(Xa, D, U, dec)
    ref = _oracle(Xa, D, U)
    mine = _block_objective(dec)
    nz = np.linalg.norm(U, axis=0) > 0
    np.testing.assert_allclose(mine[nz], ref[nz], rtol=1e-6)


# --------------------------------------------------------------------------- approximate
def test_approximate_vs_exact():
    Xa, D, U = _synthetic(n=80, d=4, n_gates=10, c=1, seed=3)
    ex = cone_decompose(Xa, D, U)
    ap = cone_decompose(Xa, D, U, method="approximate", max_iter=400)
    assert ap.method == "approximate" and np.all(np.isnan(ap.gap))
    # the exact decomposition has the smallest inflation of all decompositions
    assert np.all(ap.inflation >= ex.inflation * (1 - 1e-8))
    assert ap.total_inflation >= ex.total_inflation * (1 - 1e-8)
    # the penalty method ends close to feasible, and cleanup removes the rest
    assert ap.raw_violation <= 1e-2
    assert ap.max_violation <= 1e-12 and ap.success
    assert set(np.unique(ap.status)) <= {"feasible"}
    _check_decomposition(Xa, D, U, ap)
    # without cleanup the remaining violation is reported honestly
    raw = cone_decompose(Xa, D, U, method="approximate", max_iter=400, cleanup=False)
    np.testing.assert_allclose(raw.max_violation, ap.raw_violation, rtol=1e-6, atol=1e-15)


def test_approximate_converges_towards_exact():
    Xa, D, U = _synthetic(n=40, d=2, n_gates=6, c=1, seed=5)
    ex = cone_decompose(Xa, D, U)
    short = cone_decompose(Xa, D, U, method="approximate", max_iter=50)
    long = cone_decompose(Xa, D, U, method="approximate", max_iter=300)
    assert long.raw_violation <= 1e-6 < short.raw_violation
    assert long.total_inflation <= short.total_inflation * (1 + 1e-9)
    assert long.total_inflation >= ex.total_inflation * (1 - 1e-8)
    assert long.total_inflation <= ex.total_inflation * 1.02


# --------------------------------------------------------------------------- special blocks
@pytest.mark.parametrize("method", ["exact", "approximate"])
def test_zero_and_closed_form_blocks(method):
    Xa, D, U = _synthetic(n=50, d=3, n_gates=8, c=2, seed=1)
    X = Xa[:, :-1]
    G = sample_gates(X, 8, bias=True, random_state=1)
    U = U.copy()
    U[:, 0, :] = 0.0                      # zero blocks
    U[:, 1, 0] = 2.0 * G[:, 1]            # the gate lies in its own cone
    U[:, 1, 1] = -3.0 * G[:, 1]           # minus the gate: -u in the cone
    dec = cone_decompose(Xa, D, U, method=method, max_iter=None if method == "exact" else 500)
    assert dec.success
    assert list(dec.status[0]) == ["zero", "zero"]
    assert np.all(np.isnan(dec.inflation[0]))
    assert np.all(dec.V[:, 0] == 0) and np.all(dec.W[:, 0] == 0)
    if method == "exact":
        assert list(dec.status[1]) == ["in_cone", "neg_in_cone"]
        np.testing.assert_array_equal(dec.V[:, 1, 0], U[:, 1, 0])
        np.testing.assert_array_equal(dec.W[:, 1, 0], 0.0)
        np.testing.assert_array_equal(dec.V[:, 1, 1], 0.0)
        np.testing.assert_array_equal(dec.W[:, 1, 1], -U[:, 1, 1])
        np.testing.assert_array_equal(dec.gap[:2], 0.0)
        np.testing.assert_allclose(dec.inflation[1], 1.0, rtol=1e-12)
    else:
        # u in its cone: b = 0, CD-A keeps w = 0; -u in its cone: CD-A is not exact
        np.testing.assert_array_equal(dec.W[:, 1, 0], 0.0)
        assert dec.inflation[1, 0] == 1.0 and dec.inflation[1, 1] >= 1.0
    _check_decomposition(Xa, D, U, dec)


def test_all_zero_U():
    Xa, D, U = _synthetic(n=20, d=2, n_gates=4, c=1)
    dec = cone_decompose(Xa, D, np.zeros_like(U))
    assert dec.success and dec.total_inflation == 1.0 and dec.gated_norm == 0.0
    assert np.all(dec.status == "zero")


def test_multi_output_and_2d_U():
    Xa, D, U = _synthetic(n=50, d=3, n_gates=8, c=3, seed=2)
    dec = cone_decompose(Xa, D, U)
    assert dec.V.shape == U.shape and dec.status.shape == U.shape[1:]
    _check_decomposition(Xa, D, U, dec)
    # a 2-D U is one output: same blocks, 2-D results
    dec1 = cone_decompose(Xa, D, U[:, :, 1])
    assert dec1.V.shape == U.shape[:2] and dec1.status.shape == (U.shape[1], 1)
    np.testing.assert_allclose(dec1.V, dec.V[:, :, 1], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dec1.inflation[:, 0], dec.inflation[:, 1], rtol=1e-9)


def test_multiclass_decompose_solution():
    X, y = load_table("iris")
    rng = np.random.default_rng(0)
    idx = rng.choice(X.shape[0], 90, replace=False)
    X, y = standardize(X[idx]), y[idx]
    res = cvxnn.solve(X, y, 1e-3, formulation="gated", loss="cross_entropy", n_gates=10,
                      random_state=0)
    assert res.weights["U"].shape[2] == 3
    for method in ("exact", "approximate"):
        net, dec = decompose_solution(X, res, method=method, **(
            {} if method == "exact" else {"max_iter": 500}))
        assert dec.success
        Zg = res.network.forward(X)
        tol = 1e-8 if method == "exact" else 1e-8
        assert np.abs(net.forward(X) - Zg).max() <= tol * np.abs(Zg).max()


def test_singular_cone_reports_failure():
    # rows (1, 0) and (-1, 0) are both inactive: the cone is the ray {u1 = 0, u2 >= 0}
    X = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.5, 2.0]])
    D = np.array([[False], [False], [True], [True]])
    U = np.array([[1.0], [1.0]])
    dec = cone_decompose(X, D, U)
    assert not dec.success
    assert dec.status[0, 0] == "singular_cone"
    assert dec.max_violation > 1e-3
    assert np.all(np.isfinite(dec.V)) and np.all(np.isfinite(dec.W))
    ap = cone_decompose(X, D, U, method="approximate", max_iter=200)
    assert not ap.success and ap.status[0, 0] == "infeasible"
    # blocks of that cone that do decompose are still handled
    ok = cone_decompose(X, D, np.array([[0.0, 0.0], [1.0, -2.0]])[:, None, :])
    assert ok.success and list(ok.status[0]) == ["in_cone", "neg_in_cone"]


# --------------------------------------------------------------------------- errors
def test_bad_inputs():
    Xa, D, U = _synthetic(n=20, d=2, n_gates=4, c=1)
    with pytest.raises(ValueError, match="D must"):
        cone_decompose(Xa, D[:-1], U)
    with pytest.raises(ValueError, match="U must"):
        cone_decompose(Xa, D, U[:-1])
    with pytest.raises(ValueError, match="U must"):
        cone_decompose(Xa, D, U[:, :-1])
    with pytest.raises(ValueError, match="U must"):
        cone_decompose(Xa, D, U[None])
    bad = U.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="U contains NaN"):
        cone_decompose(Xa, D, bad)
    badX = Xa.copy()
    badX[3, 1] = np.inf
    with pytest.raises(ValueError, match="Xa contains NaN"):
        cone_decompose(badX, D, U)
    with pytest.raises(ValueError, match="D must contain only 0/1"):
        cone_decompose(Xa, D * 2.0 - 1.0, U)
    with pytest.raises(ValueError, match="method"):
        cone_decompose(Xa, D, U, method="socp")
    with pytest.raises(ValueError, match="tol"):
        cone_decompose(Xa, D, U, tol=-1.0)
    with pytest.raises(ValueError, match="max_iter"):
        cone_decompose(Xa, D, U, max_iter=0)
    with pytest.raises(ValueError, match="rho"):
        cone_decompose(Xa, D, U, method="approximate", rho=float("nan"))
    # 0/1 float masks are accepted
    dec = cone_decompose(Xa, D.astype(float), U)
    assert dec.success


def test_decompose_solution_errors():
    X, y = _pima(n=60, d=3)
    relu = cvxnn.solve(X, y, 1e-2, formulation="relu", n_gates=4, random_state=0,
                       classification=True)
    with pytest.raises(ValueError, match="formulation='gated'"):
        decompose_solution(X, relu)
    gated = cvxnn.solve(X, y, 1e-2, formulation="gated", n_gates=4, random_state=0,
                        classification=True)
    with pytest.raises(ValueError, match="features"):
        decompose_solution(X[:, :2], gated)
    with pytest.raises(ValueError, match="method"):
        decompose_solution(X, gated, method="nope")
