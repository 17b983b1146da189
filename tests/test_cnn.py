"""Tests of the convex two-layer ReLU CNN (cvxnn.cnn).

Oracles: a naive loop for the patches, a cvxpy + Clarabel model of the convex
programs written here from the maths (pooling matrix, masks of every joint
pattern), torch training of the non-convex CNN.
"""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from cvxnn import enumerate_patterns
from cvxnn.cnn import (ConvexCNNClassifier, ConvexCNNRegressor, GatedTwoLayerReLUCNN,
                       TwoLayerReLUCNN, enumerate_patch_patterns, extract_patches,
                       sample_patch_gates, solve_cnn)


# ----------------------------------------------------------------------------
# independent helpers


def naive_patches(X, image_shape, patch, stride, pad):
    """Loop over samples and positions; patch layout image[rows, cols, channels].ravel()."""
    n = X.shape[0]
    if len(image_shape) == 1:
        (L,), C = image_shape, 1
        out = []
        for s in range(n):
            img = np.zeros(L + 2 * pad)
            img[pad:pad + L] = X[s]
            out.append([img[i:i + patch] for i in range(0, L + 2 * pad - patch + 1, stride)])
        return np.array(out)
    H, W = image_shape[:2]
    C = image_shape[2] if len(image_shape) == 3 else 1
    out = []
    for s in range(n):
        img = np.zeros((H + 2 * pad, W + 2 * pad, C))
        img[pad:pad + H, pad:pad + W] = X[s].reshape(H, W, C)
        row = []
        for i in range(0, H + 2 * pad - patch + 1, stride):
            for j in range(0, W + 2 * pad - patch + 1, stride):
                row.append(img[i:i + patch, j:j + patch, :].ravel())
        out.append(row)
    return np.array(out)


def all_joint_masks(Xbar, bias, seed=0):
    """Masks of every joint pattern: exact enumeration united with many random gates."""
    Xa = np.hstack([Xbar, np.ones((Xbar.shape[0], 1))]) if bias else Xbar
    G = enumerate_patterns(Xbar, bias=bias)
    G = np.hstack([G, np.random.default_rng(seed).standard_normal((Xa.shape[1], 20000))])
    D = Xa @ G > 0
    D = D[:, D.any(axis=0)]
    return np.unique(D, axis=1), Xa


def cvxpy_optimum(Xp, y, alpha, formulation, bias, loss="squared"):
    """Optimal value of the convex CNN program, modelled directly in cvxpy."""
    cp = pytest.importorskip("cvxpy")
    n, K, h = Xp.shape
    Xbar = Xp.reshape(n * K, h)
    D, Xa = all_joint_masks(Xbar, bias)
    pool = np.kron(np.eye(n), np.ones((1, K)))          # (n, nK)
    P = D.shape[1]
    ha = Xa.shape[1]
    V = cp.Variable((ha, P))
    terms, cons = [], []
    if formulation == "gated":
        pred = sum(pool @ cp.multiply(D[:, i], Xa @ V[:, i]) for i in range(P))
        reg = cp.sum(cp.norm(V, 2, axis=0))
    else:
        W = cp.Variable((ha, P))
        pred = sum(pool @ cp.multiply(D[:, i], Xa @ (V[:, i] - W[:, i])) for i in range(P))
        reg = cp.sum(cp.norm(V, 2, axis=0)) + cp.sum(cp.norm(W, 2, axis=0))
        Sg = 2.0 * D - 1.0
        for i in range(P):
            cons += [cp.multiply(Sg[:, i], Xa @ V[:, i]) >= 0,
                     cp.multiply(Sg[:, i], Xa @ W[:, i]) >= 0]
    if loss == "squared":
        fit = cp.sum_squares(pred - y) / (2 * n)
    else:  # logistic, y in {-1, +1}
        fit = cp.sum(cp.logistic(-cp.multiply(y, pred))) / n
    prob = cp.Problem(cp.Minimize(fit + alpha * reg + sum(terms)), cons)
    prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11)
    return prob.value


# ----------------------------------------------------------------------------
# patches


@pytest.mark.parametrize("shape,patch,stride,pad", [
    ((7,), 3, 1, 0), ((7,), 3, 2, 1), ((8,), 2, 3, 1),
    ((5, 6), 2, 1, 0), ((5, 6), 3, 2, 1), ((4, 5, 3), 2, 1, 1), ((6, 6, 2), 3, 3, 0),
])
def test_extract_patches_matches_naive_loop(shape, patch, stride, pad):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((4, int(np.prod(shape))))
    got = extract_patches(X, shape, patch, stride, pad)
    want = naive_patches(X, shape, patch, stride, pad)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kwargs,match", [
    (dict(image_shape=(6,), patch_size=2), "image_shape"),
    (dict(image_shape=(2, 2, 2, 2), patch_size=2), "image_shape"),
    (dict(image_shape=(5,), patch_size=6), "patch_size"),
    (dict(image_shape=(5,), patch_size=0), "patch_size"),
    (dict(image_shape=(5,), patch_size=2, stride=0), "stride"),
    (dict(image_shape=(5,), patch_size=2, padding=-1), "padding"),
    (dict(image_shape=(5,), patch_size=2, padding=2), "padding"),
    (dict(image_shape=(5, 1), patch_size=(2, 2, 2)), "patch_size"),
])
def test_geometry_errors_name_the_argument(kwargs, match):
    X = np.ones((3, 5))
    with pytest.raises((ValueError, TypeError), match=match):
        extract_patches(X, **kwargs)


def test_solve_errors_name_the_argument():
    X, y = np.random.default_rng(0).standard_normal((6, 5)), np.arange(6.0)
    kw = dict(image_shape=(5,), patch_size=2)
    with pytest.raises(ValueError, match="formulation"):
        solve_cnn(X, y, 0.1, formulation="conv", **kw)
    with pytest.raises(ValueError, match="loss"):
        solve_cnn(X, y, 0.1, loss="hinge", **kw)
    with pytest.raises(ValueError, match="gates"):
        solve_cnn(X, y, 0.1, gates=np.ones((5, 4)), **kw)
    with pytest.raises(ValueError, match="gates"):
        solve_cnn(X, y, 0.1, gates="all", **kw)
    with pytest.raises(ValueError, match="alpha"):
        solve_cnn(X, y, -1.0, **kw)
    with pytest.raises(ValueError, match="inconsistent"):
        solve_cnn(X, y[:4], 0.1, **kw)
    with pytest.raises(ValueError, match="image_shape"):
        solve_cnn(X, y, 0.1, image_shape=(4,), patch_size=2)
    with pytest.raises(TypeError, match="bias"):
        solve_cnn(X, y, 0.1, bias=1, **kw)


def test_sampled_gates_have_distinct_nonzero_joint_patterns():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((5, 12))
    G = sample_patch_gates(X, (3, 4), 2, 1, 0, n_gates=300, bias=True, random_state=0)
    Xbar = naive_patches(X, (3, 4), 2, 1, 0).reshape(-1, 4)
    D = np.hstack([Xbar, np.ones((Xbar.shape[0], 1))]) @ G > 0
    assert D.any(axis=0).all()
    assert np.unique(D, axis=1).shape[1] == D.shape[1]
    G2 = sample_patch_gates(X, (3, 4), 2, 1, 0, n_gates=300, bias=True, random_state=0)
    np.testing.assert_array_equal(G, G2)
    Ge = enumerate_patch_patterns(X[:2], (3, 4), 2, bias=False)
    De = Xbar[:12] @ Ge > 0
    assert np.unique(De, axis=1).shape[1] == De.shape[1]


# ----------------------------------------------------------------------------
# optimality against cvxpy + Clarabel


CASES = {
    # n, L, patch, stride, padding, bias
    "nobias": (6, 5, 2, 1, 0, False),
    "bias": (4, 4, 2, 1, 0, True),
    "stride_pad": (5, 5, 2, 2, 1, False),
}


def _data(case, seed=0):
    n, L, patch, stride, pad, bias = CASES[case]
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, L))
    y = rng.standard_normal(n)
    return X, y, dict(image_shape=(L,), patch_size=patch, stride=stride, padding=pad), bias


@pytest.mark.parametrize("formulation", ["gated", "relu"])
@pytest.mark.parametrize("case", list(CASES))
def test_enumerated_program_matches_cvxpy(case, formulation):
    X, y, geom, bias = _data(case)
    alpha = 0.05
    res = solve_cnn(X, y, alpha, formulation=formulation, gates="enumerate", bias=bias,
                    tol=1e-8, **geom)
    assert res.converged and res.relative_gap <= 1e-8
    ref = cvxpy_optimum(naive_patches(X, geom["image_shape"], geom["patch_size"],
                                      geom["stride"], geom["padding"]),
                        y, alpha, formulation, bias)
    assert res.objective == pytest.approx(ref, rel=1e-6)
    # the recovered network has the convex objective
    assert res.network.objective(X, y, alpha) == pytest.approx(res.objective, rel=1e-8)
    assert isinstance(res.network, GatedTwoLayerReLUCNN if formulation == "gated"
                      else TwoLayerReLUCNN)
    assert res.certified_over.startswith("all")


def test_logistic_gated_matches_cvxpy():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((6, 5))
    y = np.where(rng.standard_normal(6) > 0, 1, -1)
    geom = dict(image_shape=(5,), patch_size=2)
    res = solve_cnn(X, y, 0.02, loss="logistic", gates="enumerate", bias=False, tol=1e-9, **geom)
    ref = cvxpy_optimum(naive_patches(X, (5,), 2, 1, 0), y.astype(float), 0.02, "gated",
                        False, loss="logistic")
    assert res.objective == pytest.approx(ref, rel=1e-6)
    assert res.network.objective(X, y, 0.02) == pytest.approx(res.objective, rel=1e-8)
    assert res.network.predict_proba(X).shape == (6, 2)


def test_gated_optimum_below_relu_optimum():
    X, y, geom, bias = _data("bias", seed=4)
    g = solve_cnn(X, y, 0.05, formulation="gated", gates="enumerate", bias=bias, tol=1e-9, **geom)
    r = solve_cnn(X, y, 0.05, formulation="relu", gates="enumerate", bias=bias, tol=1e-8, **geom)
    assert g.objective <= r.objective * (1 + 1e-7)


# ----------------------------------------------------------------------------
# non-convex training never beats the relu optimum


def test_nonconvex_training_not_below_convex_optimum():
    torch = pytest.importorskip("torch")
    X, y, geom, bias = _data("bias", seed=5)
    alpha = 0.05
    res = solve_cnn(X, y, alpha, formulation="relu", gates="enumerate", bias=bias, tol=1e-8,
                    **geom)
    Xp = torch.tensor(naive_patches(X, (4,), 2, 1, 0))
    yt = torch.tensor(y)
    n = X.shape[0]
    finals = []
    for seed in range(8):       # many random starts, none may end below the optimum
        torch.manual_seed(seed)
        m = 20
        U = torch.nn.Parameter(0.5 * torch.randn(m, 2, dtype=torch.float64))
        b = torch.nn.Parameter(0.5 * torch.randn(m, dtype=torch.float64))
        a = torch.nn.Parameter(0.5 * torch.randn(m, dtype=torch.float64))

        def objective():
            f = torch.relu(Xp @ U.T + b).sum(dim=1) @ a
            return ((f - yt) ** 2).sum() / (2 * n) + alpha / 2 * (
                (U ** 2).sum() + (b ** 2).sum() + (a ** 2).sum())

        opt = torch.optim.Adam([U, b, a], lr=1e-2)
        for _ in range(1500):
            opt.zero_grad()
            loss = objective()
            loss.backward()
            opt.step()
        lb = torch.optim.LBFGS([U, b, a], lr=1, max_iter=500, tolerance_grad=1e-12,
                               tolerance_change=1e-15, line_search_fn="strong_wolfe")

        def closure():
            lb.zero_grad()
            val = objective()
            val.backward()
            return val

        lb.step(closure)
        finals.append(float(objective().detach()))
    assert min(finals) >= res.objective * (1 - 1e-7) - 1e-12
    # and the non-convex runs do get close to it (the bound is informative)
    assert min(finals) <= res.objective * 1.05


# ----------------------------------------------------------------------------
# networks and larger (sampled) problems


def test_multiclass_2d_cross_entropy_network_objective_and_float32():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((40, 5 * 5 * 2))
    y = rng.integers(0, 3, 40)
    geom = dict(image_shape=(5, 5, 2), patch_size=3, stride=1, padding=1)
    res = solve_cnn(X, y, 1e-2, loss="cross_entropy", n_gates=30, random_state=0, tol=1e-6,
                    **geom)
    assert res.converged
    net = res.network
    assert net.objective(X, y, 1e-2) == pytest.approx(res.objective, rel=1e-8)
    np.testing.assert_allclose(net.predict_proba(X).sum(axis=1), 1.0)
    assert set(net.predict(X)) <= {0, 1, 2}
    assert net.forward(X).shape == (40, 3)
    r32 = solve_cnn(X, y, 1e-2, loss="cross_entropy", n_gates=30, random_state=0, tol=1e-5,
                    dtype="float32", **geom)
    assert r32.objective == pytest.approx(res.objective, rel=1e-4)
    assert r32.network.objective(X, y, 1e-2) == pytest.approx(r32.objective, rel=1e-8)


def test_pooled_feature_products_match_masked_products_and_naive_sum():
    from cvxnn.cnn import GatedCNNProblem, patch_masks

    rng = np.random.default_rng(9)
    X, Y = rng.standard_normal((7, 30)), rng.standard_normal((7, 3))
    Pn = naive_patches(X, (5, 6), 2, 1, 1)
    n, K, h = Pn.shape
    Xa = np.hstack([Pn.reshape(n * K, h), np.ones((n * K, 1))])
    G = rng.standard_normal((h + 1, 8))
    D = patch_masks(Xa, G)
    U = rng.standard_normal((h + 1, 8, 3))
    # naive: Z[s, c] = sum_i sum_k 1[xa_sk g_i > 0] xa_sk^T U[:, i, c]
    want = np.zeros((n, 3))
    for s in range(n):
        for k in range(K):
            xa = np.append(Pn[s, k], 1.0)
            for i in range(8):
                if xa @ G[:, i] > 0:
                    want[s] += xa @ U[:, i, :]
    for feats in (True, False):
        prob = GatedCNNProblem(Xa, D, Y, "squared", 0.1, K, features=feats)
        np.testing.assert_allclose(prob.apply(U), want, atol=1e-12)
        R = rng.standard_normal((n, 3))
        # adjoint identity <A U, R> = <U, A^T R>
        assert np.vdot(prob.apply(U), R) == pytest.approx(np.vdot(U, prob.adjoint(R)), rel=1e-12)


def test_network_forward_matches_explicit_formula():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((3, 16))
    Uf, b, A = rng.standard_normal((4, 4)), rng.standard_normal(4), rng.standard_normal((4, 2))
    net = TwoLayerReLUCNN(Uf, b, A, image_shape=(4, 4), patch_size=2, stride=2)
    Pn = naive_patches(X, (4, 4), 2, 2, 0)
    want = np.maximum(Pn @ Uf.T + b, 0).sum(axis=1) @ A
    np.testing.assert_allclose(net.forward(X), want)
    assert net.n_filters == 4
    with pytest.raises(ValueError, match="filters"):
        TwoLayerReLUCNN(np.ones((4, 3)), None, np.ones(4), image_shape=(4, 4), patch_size=2)
    with pytest.raises(ValueError, match="output_weights"):
        TwoLayerReLUCNN(Uf, None, np.ones(3), image_shape=(4, 4), patch_size=2)
    with pytest.raises(ValueError, match="features"):
        net.forward(np.ones((2, 15)))


# ----------------------------------------------------------------------------
# scikit-learn


_KW = dict(n_gates=15, alpha=1e-2, tol=1e-4, max_iter=300, random_state=0)


@parametrize_with_checks([
    ConvexCNNRegressor(**_KW),
    ConvexCNNClassifier(**_KW),
    ConvexCNNClassifier(loss="logistic", **_KW),
])
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def test_estimators_on_images():
    rng = np.random.default_rng(8)
    X = rng.standard_normal((60, 36))
    y = (X.reshape(60, 6, 6)[:, 2:4, 2:4].sum(axis=(1, 2)) > 0).astype(int)
    clf = ConvexCNNClassifier(image_shape=(6, 6), patch_size=3, alpha=1e-3, n_gates=40,
                              random_state=0, tol=1e-5).fit(X, y)
    assert clf.score(X, y) > 0.8
    assert clf.network_.objective(X, y, 1e-3) == pytest.approx(clf.objective_, rel=1e-8)
    reg = ConvexCNNRegressor(image_shape=(6, 6), patch_size=2, stride=2, n_gates=10,
                             random_state=0, tol=1e-5, formulation="relu", max_iter=300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X[:12], X[:12, 0])
    assert reg.network_.objective(X[:12], X[:12, 0], 1e-3) == pytest.approx(reg.objective_,
                                                                           rel=1e-8)
    assert reg.predict(X).shape == (60,)
    with pytest.raises(ValueError, match="image_shape"):
        ConvexCNNClassifier(image_shape=(5, 5)).fit(X, y)
    with pytest.raises(ValueError, match="loss"):
        ConvexCNNRegressor(loss="logistic").fit(X, y)
