"""Linear networks as convex programs (cvxnn.linear, math spec 3.4).

Oracles: the factorised networks trained by L-BFGS from random starts (torch
autograd on explicit circulant matrices for the circular CNN; hand-written
numpy gradients for the fully connected network and the linear CNN), cvxpy +
Clarabel solves of the *complex* DFT lasso and of the nuclear-norm programs,
numpy's FFT and explicit loops for the patch extractor.
"""

import warnings

import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.exceptions import ConvergenceWarning

from cvxnn.linear import (
    circular_cnn, circular_cnn_forward, circular_cnn_objective, coef_to_w_hat, dft_basis,
    extract_patches, linear_cnn, linear_cnn_forward, linear_cnn_objective, linear_network,
    linear_network_objective,
)
from cvxnn.linear import alpha_max as lin_alpha_max

RTOL = 1e-6


def _data(n, d, seed, dc_sign=-1.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    w = rng.standard_normal(d) + dc_sign * 0.7          # a clearly signed DC component
    y = X @ w + 0.3 * rng.standard_normal(n)
    return X, y


# ----------------------------------------------------------------------------------------------
# circular CNN
# ----------------------------------------------------------------------------------------------

def _circulant_net_torch(X, y, alpha, m, loss, seed):
    """Train f(x) = sum_j a_j^T (x (*) u_j) by L-BFGS; explicit circulant matrices in torch."""
    torch = pytest.importorskip("torch")
    n, d = X.shape
    idx = torch.as_tensor((np.arange(d)[None, :] - np.arange(d)[:, None]) % d)  # [s, t] -> t-s
    Xt = torch.as_tensor(X, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.float64)

    def fg(theta):
        th = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
        U, A = th[:m * d].reshape(m, d), th[m * d:].reshape(m, d)
        C = U[:, idx]                                            # (m, d, d): C[j, s, t] = u_j[t-s]
        H = torch.einsum("ns,jst->njt", Xt, C)                   # (x (*) u_j)_t
        f = torch.einsum("njt,jt->n", H, A)
        if loss == "squared":
            L = ((f - yt) ** 2).sum() / (2 * n)
        else:
            L = torch.nn.functional.softplus(-yt * f).mean()
        obj = L + 0.5 * alpha * (th ** 2).sum()
        obj.backward()
        return obj.item(), th.grad.numpy().copy()

    rng = np.random.default_rng(seed)
    theta0 = 0.5 * rng.standard_normal(2 * m * d)
    res = minimize(fg, theta0, jac=True, method="L-BFGS-B",
                   options={"maxiter": 20000, "gtol": 1e-13, "ftol": 1e-16, "maxcor": 30})
    return res.fun


@pytest.mark.parametrize("d,loss", [(8, "squared"), (11, "squared"), (10, "logistic")])
def test_circular_cnn_equals_trained_factorised_network(d, loss):
    X, y = _data(40, d, seed=d)
    alpha = 0.05 if loss == "squared" else 0.02
    if loss == "logistic":
        y = np.where(y > np.median(y), 1.0, -1.0)
    res = circular_cnn(X, y, alpha, loss=loss, tol=1e-10)
    assert res.converged and res.relative_gap <= 1e-10
    p_star = res.objective
    assert res.lower_bound <= p_star
    for m in (1, 3):
        for seed in range(3):
            f_nc = _circulant_net_torch(X, y, alpha, m, loss, seed=100 * m + seed)
            # gradient-trained networks reach the convex optimum ...
            assert f_nc == pytest.approx(p_star, rel=RTOL), (m, seed)
            # ... and never go below the certified lower bound
            assert f_nc >= res.lower_bound * (1 - 1e-9), (m, seed)


@pytest.mark.parametrize("d", [7, 8, 16])
def test_recovered_filters_reproduce_w_and_cost(d):
    X, y = _data(30, d, seed=d + 1)
    alpha = 0.03
    res = circular_cnn(X, y, alpha, tol=1e-10)
    # w_hat is the unitary DFT of w (numpy FFT) and is conjugate symmetric
    np.testing.assert_allclose(np.fft.fft(res.w, norm="ortho"), res.w_hat, atol=1e-12)
    np.testing.assert_allclose(res.w_hat[1:], np.conj(res.w_hat[1:][::-1]), atol=1e-14)
    assert res.w_hat[0].real < 0            # the DC component is negative: sign handling
    u, a = res.filters[0], res.output_weights[0]
    assert u @ u == pytest.approx(a @ a, rel=1e-12)      # balanced factors
    # independent forward pass with an explicit circulant: (x (*) u)_t = sum_s x_s u[t - s]
    C = u[(np.arange(d)[None, :] - np.arange(d)[:, None]) % d]
    f = (X @ C) @ a
    np.testing.assert_allclose(f, X @ res.w, rtol=0, atol=1e-10)
    np.testing.assert_allclose(circular_cnn_forward(X, res.filters, res.output_weights), f,
                               atol=1e-10)
    np.testing.assert_allclose(res.decision_function(X), f, atol=1e-10)
    # weight-decay cost of the factors = lasso penalty (alpha / sqrt d) ||w_hat||_1
    cost = 0.5 * alpha * (u @ u + a @ a)
    penalty = alpha / np.sqrt(d) * np.abs(np.fft.fft(res.w, norm="ortho")).sum()
    assert cost == pytest.approx(penalty, rel=1e-12)
    # the network objective at the factors equals the lasso optimum
    lasso = np.sum((X @ res.w - y) ** 2) / (2 * len(y)) + penalty
    assert res.objective == pytest.approx(lasso, rel=1e-12)
    assert res.objective == pytest.approx(res.lasso_objective, rel=1e-12)
    assert circular_cnn_objective(X, y, alpha, res.filters, res.output_weights) == \
        pytest.approx(res.objective, rel=1e-12)


def test_dft_basis_matches_numpy_fft():
    rng = np.random.default_rng(0)
    for d in (1, 2, 5, 6):
        B = dft_basis(d)
        np.testing.assert_allclose(B.T @ B, np.eye(d), atol=1e-13)
        b = rng.standard_normal(d)
        w_hat = coef_to_w_hat(b)
        np.testing.assert_allclose(np.fft.ifft(w_hat, norm="ortho"), B @ b, atol=1e-13)


def _cvxpy_complex_lasso(X, y, alpha, loss):
    cp = pytest.importorskip("cvxpy")
    n, d = X.shape
    FH = np.fft.ifft(np.eye(d), norm="ortho")            # F^H (columns: inverse unitary DFT)
    wh = cp.Variable(d, complex=True)
    cons = [wh[d - k] == cp.conj(wh[k]) for k in range(1, d)] + [cp.imag(wh[0]) == 0]
    z = cp.real((X @ FH) @ wh)
    if loss == "squared":
        L = cp.sum_squares(z - y) / (2 * n)
    else:
        L = cp.sum(cp.logistic(-cp.multiply(y, z))) / n
    prob = cp.Problem(cp.Minimize(L + alpha / np.sqrt(d) * cp.norm1(wh)), cons)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prob.solve(solver="CLARABEL")
    return prob.value, wh.value


@pytest.mark.parametrize("d,loss", [(9, "squared"), (12, "squared"), (8, "logistic")])
def test_circular_cnn_equals_cvxpy_complex_lasso(d, loss):
    X, y = _data(35, d, seed=3 * d)
    if loss == "logistic":
        y = np.where(y > 0, 1.0, -1.0)
    alpha = 0.04
    res = circular_cnn(X, y, alpha, loss=loss, tol=1e-10)
    value, wh = _cvxpy_complex_lasso(X, y, alpha, loss)
    assert res.objective == pytest.approx(value, rel=RTOL)
    np.testing.assert_allclose(res.w_hat, wh, atol=1e-4)
    if loss == "logistic":
        assert set(np.unique(res.predict(X))) <= {-1.0, 1.0}


def test_circular_cnn_sparse_in_frequency_for_large_alpha():
    X, y = _data(40, 16, seed=5)
    d = X.shape[1]
    # closed form: w_hat = 0 is optimal iff alpha >= sqrt(d) max_k |F(X^T y / n)_k|
    alpha_max = np.sqrt(d) * np.abs(np.fft.fft(X.T @ y / len(y), norm="ortho")).max()
    assert lin_alpha_max(X, y) == pytest.approx(alpha_max, rel=1e-12)
    assert np.all(circular_cnn(X, y, 1.01 * alpha_max).w_hat == 0)
    assert np.any(circular_cnn(X, y, 0.99 * alpha_max).w_hat != 0)
    alpha = 0.6 * alpha_max
    res = circular_cnn(X, y, alpha, tol=1e-10)
    value, _ = _cvxpy_complex_lasso(X, y, alpha, "squared")
    assert res.objective == pytest.approx(value, rel=RTOL)
    assert 0 < np.count_nonzero(np.abs(res.w_hat) > 1e-9) < d


# ----------------------------------------------------------------------------------------------
# nuclear-norm programs
# ----------------------------------------------------------------------------------------------

def _cvxpy_nuclear(apply, shape, Y, alpha, loss):
    cp = pytest.importorskip("cvxpy")
    W = cp.Variable(shape)
    Z = apply(W)
    n = Y.shape[0]
    if loss == "squared":
        L = cp.sum_squares(Z - Y) / (2 * n)
    elif loss == "logistic":
        L = cp.sum(cp.logistic(-cp.multiply(Y, Z))) / n
    else:  # cross-entropy on one-hot Y
        L = (cp.sum(cp.log_sum_exp(Z, axis=1)) - cp.sum(cp.multiply(Y, Z))) / n
    prob = cp.Problem(cp.Minimize(L + alpha * cp.normNuc(W)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            prob.solve(solver="CLARABEL")
        except Exception:  # pragma: no cover - older Clarabel without PSD cones
            prob.solve(solver="SCS", eps=1e-10, max_iters=100000)
    return prob.value, W.value


def _lbfgs_linear_network(X, Y, alpha, m, seed):
    n, d = X.shape
    c = Y.shape[1]

    def fg(theta):
        W1, W2 = theta[:d * m].reshape(d, m), theta[d * m:].reshape(m, c)
        R = X @ W1 @ W2 - Y
        G = X.T @ R / n
        f = (R * R).sum() / (2 * n) + 0.5 * alpha * (theta @ theta)
        return f, np.concatenate([(G @ W2.T + alpha * W1).ravel(), (W1.T @ G + alpha * W2).ravel()])

    theta0 = np.random.default_rng(seed).standard_normal(m * (d + c))
    return minimize(fg, theta0, jac=True, method="L-BFGS-B",
                    options={"maxiter": 20000, "gtol": 1e-13, "ftol": 1e-16}).fun


@pytest.mark.parametrize("alpha", [0.05, 0.4])
def test_linear_network_equals_cvxpy_and_lbfgs(alpha):
    rng = np.random.default_rng(1)
    n, d, c = 30, 6, 4
    X = rng.standard_normal((n, d))
    Y = X @ rng.standard_normal((d, 2)) @ rng.standard_normal((2, c))
    Y = Y + 0.5 * rng.standard_normal((n, c))
    res = linear_network(X, Y, alpha, tol=1e-10)
    value, Wc = _cvxpy_nuclear(lambda W: X @ W, (d, c), Y, alpha, "squared")
    assert res.objective == pytest.approx(value, rel=RTOL)
    assert res.convex_objective == pytest.approx(value, rel=RTOL)
    np.testing.assert_allclose(res.W, Wc, atol=1e-4)
    # recovered factors: W1 W2 = W, cost = nuclear norm, objective formula
    np.testing.assert_allclose(res.W1 @ res.W2, res.W, atol=1e-12)
    nuc = np.linalg.svd(res.W, compute_uv=False).sum()
    assert 0.5 * ((res.W1 ** 2).sum() + (res.W2 ** 2).sum()) == pytest.approx(nuc, rel=1e-12)
    assert linear_network_objective(X, Y, alpha, res.W1, res.W2) == pytest.approx(res.objective,
                                                                                 rel=1e-12)
    # the factorised network trained by L-BFGS reaches the same objective, never below
    for m in (c, c + 2):
        for seed in range(2):
            f_nc = _lbfgs_linear_network(X, Y, alpha, m, seed)
            assert f_nc == pytest.approx(res.objective, rel=RTOL)
            assert f_nc >= res.lower_bound * (1 - 1e-9)


def test_linear_network_classification_losses():
    rng = np.random.default_rng(2)
    n, d = 40, 5
    X = rng.standard_normal((n, d))
    labels = np.argmax(X[:, :3] + 0.5 * rng.standard_normal((n, 3)), axis=1)
    res = linear_network(X, labels, 0.02, loss="cross_entropy", tol=1e-10)
    value, _ = _cvxpy_nuclear(lambda W: X @ W, (d, 3), np.eye(3)[labels], 0.02, "cross_entropy")
    assert res.objective == pytest.approx(value, rel=RTOL)
    assert (res.predict(X) == labels).mean() > 0.6
    yb = np.where(X[:, 0] > 0, "b", "a")
    res = linear_network(X, yb, 0.02, loss="logistic", tol=1e-10)
    value, _ = _cvxpy_nuclear(lambda W: X @ W, (d, 1), np.where(yb == "b", 1.0, -1.0)[:, None],
                              0.02, "logistic")
    assert res.objective == pytest.approx(value, rel=RTOL)
    assert set(res.predict(X)) <= {"a", "b"}


def _lbfgs_linear_cnn(P, y, alpha, m, seed):
    n, K, h = P.shape

    def fg(theta):
        U, A = theta[:m * h].reshape(m, h), theta[m * h:].reshape(m, K)
        H = np.einsum("nkh,mh->nmk", P, U)
        r = (np.einsum("nmk,mk->n", H, A) - y) / n
        f = n * 0.5 * (r @ r) + 0.5 * alpha * (theta @ theta)
        gA = np.einsum("nmk,n->mk", H, r) + alpha * A
        gU = np.einsum("nkh,mk,n->mh", P, A, r) + alpha * U
        return f, np.concatenate([gU.ravel(), gA.ravel()])

    theta0 = np.random.default_rng(seed).standard_normal(m * (h + K))
    return minimize(fg, theta0, jac=True, method="L-BFGS-B",
                    options={"maxiter": 20000, "gtol": 1e-13, "ftol": 1e-16}).fun


def test_linear_cnn_equals_cvxpy_and_lbfgs():
    rng = np.random.default_rng(4)
    n = 40
    X = rng.standard_normal((n, 12))
    P = extract_patches(X, 4, stride=2)                   # (n, K=5, h=4)
    K, h = P.shape[1:]
    y = np.einsum("nkh,hk->n", P, np.outer(rng.standard_normal(h), rng.standard_normal(K)))
    y = y + 0.3 * rng.standard_normal(n)
    alpha = 0.05
    res = linear_cnn(X, y, alpha, patch_size=4, stride=2, tol=1e-10)
    res_p = linear_cnn(P, y, alpha, tol=1e-10)
    assert res_p.objective == pytest.approx(res.objective, rel=1e-9)

    def apply(Z):
        return sum(P[:, k, :] @ Z[:, k] for k in range(K))

    value, Zc = _cvxpy_nuclear(apply, (h, K), y, alpha, "squared")
    assert res.objective == pytest.approx(value, rel=RTOL)
    np.testing.assert_allclose(res.Z, Zc, atol=1e-4)
    # factors: sum_j u_j a_j^T = Z, cost = nuclear norm, same predictions
    np.testing.assert_allclose(res.filters.T @ res.output_weights, res.Z, atol=1e-12)
    nuc = np.linalg.svd(res.Z, compute_uv=False).sum()
    cost = 0.5 * ((res.filters ** 2).sum() + (res.output_weights ** 2).sum())
    assert cost == pytest.approx(nuc, rel=1e-12)
    f_loop = np.array([sum(P[i, k] @ res.filters[j] * res.output_weights[j, k]
                           for j in range(res.filters.shape[0]) for k in range(K))
                       for i in range(n)])
    np.testing.assert_allclose(res.decision_function(X), f_loop, atol=1e-10)
    np.testing.assert_allclose(linear_cnn_forward(P, res.filters, res.output_weights), f_loop,
                               atol=1e-10)
    assert linear_cnn_objective(P, y, alpha, res.filters, res.output_weights) == \
        pytest.approx(res.objective, rel=1e-12)
    for seed in range(2):
        f_nc = _lbfgs_linear_cnn(P, y, alpha, m=min(h, K) + 1, seed=seed)
        assert f_nc == pytest.approx(res.objective, rel=RTOL)
        assert f_nc >= res.lower_bound * (1 - 1e-9)


def test_alpha_max_of_nuclear_programs():
    rng = np.random.default_rng(6)
    n = 30
    X = rng.standard_normal((n, 8))
    Y = rng.standard_normal((n, 3))
    a_fc = np.linalg.norm(X.T @ Y / n, 2)                  # spectral norm of grad at 0
    assert lin_alpha_max(X, Y, model="linear_network") == pytest.approx(a_fc, rel=1e-12)
    assert np.all(linear_network(X, Y, 1.01 * a_fc).W == 0)
    assert np.any(linear_network(X, Y, 0.99 * a_fc).W != 0)
    yb = np.where(Y[:, 0] > 0, 1.0, -1.0)
    P = extract_patches(X, 3, stride=1)
    G = np.einsum("nkh,n->hk", P, yb) / (2 * n)           # logistic: -grad L(0) = y / (2n)
    a_cnn = np.linalg.norm(G, 2)
    assert lin_alpha_max(X, yb, model="linear_cnn", loss="logistic", patch_size=3) == \
        pytest.approx(a_cnn, rel=1e-12)
    assert np.all(linear_cnn(P, yb, 1.01 * a_cnn, loss="logistic").Z == 0)
    assert np.any(linear_cnn(P, yb, 0.99 * a_cnn, loss="logistic").Z != 0)
    with pytest.raises(ValueError, match="model"):
        lin_alpha_max(X, yb, model="relu")


def test_extract_patches_against_loops():
    rng = np.random.default_rng(0)
    C, H, W = 2, 5, 6
    X = rng.standard_normal((3, C * H * W))
    P = extract_patches(X, (2, 3), stride=(2, 1), image_shape=(C, H, W))
    imgs = X.reshape(3, C, H, W)
    ref = [[imgs[i, :, r:r + 2, s:s + 3].ravel() for r in range(0, H - 1, 2)
            for s in range(0, W - 2)] for i in range(3)]
    np.testing.assert_array_equal(P, np.array(ref))
    P1 = extract_patches(X[:, :10], 3, stride=3)
    np.testing.assert_array_equal(P1, np.stack([X[:, 0:3], X[:, 3:6], X[:, 6:9]], axis=1))
    P2 = extract_patches(X[:, :30], 2, image_shape=(5, 6))
    assert P2.shape == (3, 4 * 5, 4)


# ----------------------------------------------------------------------------------------------
# errors and warnings
# ----------------------------------------------------------------------------------------------

def test_bad_inputs_name_the_argument():
    X, y = _data(10, 6, seed=0)
    with pytest.raises(ValueError, match="alpha"):
        circular_cnn(X, y, 0.0)
    with pytest.raises(ValueError, match="alpha"):
        linear_network(X, y, -1.0)
    with pytest.raises(TypeError, match="alpha"):
        linear_cnn(X, y, "big", patch_size=2)
    Xn = X.copy()
    Xn[2, 3] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        circular_cnn(Xn, y, 0.1)
    with pytest.raises(ValueError, match="y"):
        linear_network(X, y[:-1], 0.1)
    with pytest.raises(ValueError, match="loss"):
        circular_cnn(X, y, 0.1, loss="hinge")
    with pytest.raises(ValueError, match="single output"):
        circular_cnn(X, np.arange(10) % 3, 0.1, loss="cross_entropy")
    with pytest.raises(ValueError, match="tol"):
        circular_cnn(X, y, 0.1, tol=0)
    with pytest.raises(ValueError, match="max_iter"):
        linear_network(X, y, 0.1, max_iter=0)
    with pytest.raises(ValueError, match="patch_size"):
        linear_cnn(X, y, 0.1)
    with pytest.raises(ValueError, match="patch_size"):
        linear_cnn(X, y, 0.1, patch_size=7)
    with pytest.raises(ValueError, match="stride"):
        extract_patches(X, 2, stride=0)
    with pytest.raises(ValueError, match="image_shape"):
        extract_patches(X, 2, image_shape=(2, 2))
    with pytest.raises(ValueError, match="patch_size"):
        extract_patches(X, (3, 3), image_shape=(2, 3))
    with pytest.raises(ValueError, match="filters"):
        circular_cnn_forward(X, np.ones((1, 5)), np.ones((1, 6)))
    with pytest.raises(ValueError, match="filters"):
        linear_cnn_forward(extract_patches(X, 2), np.ones((1, 3)), np.ones((1, 5)))
    res = circular_cnn(X, y, 0.1)
    with pytest.raises(ValueError, match="features"):
        res.predict(X[:, :5])
    res = linear_cnn(X, y, 0.1, patch_size=2)
    with pytest.raises(ValueError, match="patches"):
        res.predict(extract_patches(X, 3))
    with pytest.raises(ValueError, match="d must"):
        dft_basis(0)


def test_max_iter_gives_convergence_warning():
    X, y = _data(30, 8, seed=1)
    with pytest.warns(ConvergenceWarning, match="relative duality gap"):
        res = linear_network(X, y, 0.01, max_iter=2, tol=1e-14)
    assert not res.converged and res.relative_gap > 1e-14
    assert res.lower_bound <= res.convex_objective


def test_example_runs_and_objectives_agree():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "linear_networks.py"
    spec = importlib.util.spec_from_file_location("cvxnn_example_linear_networks", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(["--synthetic", "--n-samples", "150", "--n-starts", "1"])
    assert set(out["rows"]) == {"circular CNN", "fully connected", "linear CNN"}
    for name, r in out["rows"].items():
        assert r["relative_gap"] <= 1e-9, name
        assert r["network"] == pytest.approx(r["convex"], rel=1e-9), name
        for v in r["lbfgs"]:
            assert v == pytest.approx(r["convex"], rel=RTOL), name
            assert v >= r["lower_bound"] * (1 - 1e-9), name
