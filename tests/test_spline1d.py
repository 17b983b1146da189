"""cvxnn.spline1d: exact scalar-input ReLU networks (linear splines), against independent oracles.

Oracles written here, independently of the library:

* ``_relu_program``: the convex ReLU program over *all* activation patterns of
  ``[x, 1]``, enumerated here as threshold patterns ``1[x > t]``, ``1[x < t]``
  (every pattern of 1-D data with a bias column is one of these), solved by
  cvxpy + Clarabel.  With ``free=True`` the bias coordinate is left out of the
  penalty (``sum_i |v_i[0]| + |w_i[0]|``) and a free output offset ``c`` is
  added.  This is exactly the free-bias training problem
  ``min L(f + c) + alpha/2 (||W1||^2 + ||W2||^2)`` over networks of any width:
  a network maps to a feasible point by summing, per activation pattern, its
  balanced units ``|a| (w, b)`` (a sum of points of a cone stays in it; the
  penalty ``|a||w|`` is the first-coordinate absolute value and the triangle
  inequality only lowers it), so the program is at most the network problem;
  conversely a block ``v`` with ``v[0] != 0`` is the unit ``(v / s, s)`` with
  ``s^2 = |v[0]|``, of the same cost, and a block with ``v[0] = 0`` lies in the
  all-ones pattern (the cone forces ``v = 0`` elsewhere), i.e. is a constant that
  ``c`` absorbs.  (``c`` is even redundant: the all-ones block ``(0, c)`` is free.)
  With ``free=False`` the penalty is the group norm ``||v_i||_2`` with the bias
  inside: the ordinary regularised-bias program.
* ``_lasso_two_features``: the rank-one (no-bias) problem as a two-feature lasso.
* ``_min_l1_interpolation``: an LP (Clarabel) over kink features at the data
  points *and* at extra points between and outside them.
* torch: plain Adam training of wide free-bias networks.
"""

import warnings

import numpy as np
import pytest

from cvxnn import TwoLayerReLU
from cvxnn.spline1d import Spline1D, spline1d

cp = pytest.importorskip("cvxpy")

CLARABEL_TIGHT = dict(tol_feas=1e-10, tol_gap_abs=1e-10, tol_gap_rel=1e-10, max_iter=400)


def _data(n, seed, duplicates=True):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, n)
    if duplicates:
        x[:2] = x[2]                       # a repeated input
    y = np.sin(2 * x) + 0.5 * x + 0.2 * rng.standard_normal(n)
    return x, y


def _labels(y):
    return np.where(y > np.median(y), "pos", "neg")


def _threshold_patterns(x):
    xs = np.unique(x)
    cuts = np.concatenate([[xs[0] - 1.0], (xs[:-1] + xs[1:]) / 2, [xs[-1] + 1.0]])
    D = np.array([x > t for t in cuts] + [x < t for t in cuts], dtype=float).T
    D = np.unique(D, axis=1)
    return D[:, D.sum(axis=0) > 0]


def _loss_expr(z, y, loss):
    n = y.shape[0]
    if loss == "squared":
        return cp.sum_squares(z - y) / (2 * n)
    return cp.sum(cp.logistic(-cp.multiply(y, z))) / n


def _encode(y, loss):
    if loss == "squared":
        return np.asarray(y, dtype=float)
    classes = np.unique(y)
    return np.where(y == classes[1], 1.0, -1.0)


def _relu_program(x, y, alpha, loss, free):
    """Optimal value of the all-pattern convex ReLU program (see module docstring)."""
    Yv = _encode(y, loss)
    D = _threshold_patterns(x)
    S = 2 * D - 1
    Xa = np.column_stack([x, np.ones_like(x)])
    P = D.shape[1]
    V = cp.Variable((2, P))
    W = cp.Variable((2, P))
    z = cp.sum(cp.multiply(D, Xa @ (V - W)), axis=1)
    if free:
        c = cp.Variable()
        z = z + c
        pen = cp.sum(cp.abs(V[0])) + cp.sum(cp.abs(W[0]))
    else:
        pen = cp.sum(cp.norm(V, 2, axis=0)) + cp.sum(cp.norm(W, 2, axis=0))
    cons = [cp.multiply(S, Xa @ V) >= 0, cp.multiply(S, Xa @ W) >= 0]
    prob = cp.Problem(cp.Minimize(_loss_expr(z, Yv, loss) + alpha * pen), cons)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prob.solve(solver=cp.CLARABEL, **CLARABEL_TIGHT)
    return prob.value, V.value, W.value


def _grid(x):
    lo, hi = x.min(), x.max()
    span = hi - lo
    return np.concatenate([np.linspace(lo - 3 * span, hi + 3 * span, 3001), np.unique(x)])


# ----------------------------------------------------------------------------
# free bias
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("loss", ["squared", "logistic"])
@pytest.mark.parametrize("alpha", [3e-3, 0.05])
def test_free_bias_matches_all_pattern_program(loss, alpha):
    x, y = _data(14, seed=1)
    yy = y if loss == "squared" else _labels(y)
    s = spline1d(x, yy, alpha, bias="free", loss=loss)
    ref, _, _ = _relu_program(x, yy, alpha, loss, free=True)
    assert abs(s.objective - ref) <= 1e-6 * abs(ref)
    assert s.relative_gap <= 1e-8
    # knots sit exactly at data points (inputs as given)
    assert s.n_knots >= 1
    assert np.all(np.isin(s.knots, x))
    # the reported objective is the network's: L(f + c) + alpha/2 (||W1||^2 + ||W2||^2)
    net = s.network
    Yv = _encode(yy, loss)
    z = net.decision_function(x[:, None]) + s.intercept
    L = (np.mean((z - Yv) ** 2) / 2 if loss == "squared"
         else np.mean(np.logaddexp(0.0, -Yv * z)))
    pen = 0.5 * alpha * (np.sum(net.W1 ** 2) + np.sum(net.W2 ** 2))
    assert s.objective == pytest.approx(L + pen, rel=1e-12)
    assert net.b1 is not None and s.intercept != 0.0


def test_free_bias_not_beaten_by_gradient_descent():
    """Adam on wide free-bias networks (4 seeds, trained side by side: Adam is
    per-coordinate, so one batched run equals four separate ones)."""
    torch = pytest.importorskip("torch")
    x, y = _data(12, seed=2, duplicates=False)
    alpha = 0.01
    s = spline1d(x, y, alpha, bias="free")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        K, m = 4, 40
        xt = torch.tensor(x, dtype=torch.float64)
        yt = torch.tensor(y, dtype=torch.float64)
        W1 = torch.randn(K, m, dtype=torch.float64).requires_grad_()
        b1 = (4 * torch.rand(K, m, dtype=torch.float64) - 2).requires_grad_()
        W2 = (0.1 * torch.randn(K, m, dtype=torch.float64)).requires_grad_()
        c = torch.zeros(K, 1, dtype=torch.float64, requires_grad=True)

        def objectives():
            H = torch.relu(W1[:, None, :] * xt[None, :, None] + b1[:, None, :])   # (K, n, m)
            f = (H * W2[:, None, :]).sum(-1) + c                                     # (K, n)
            loss = 0.5 * ((f - yt) ** 2).mean(-1)
            return loss + 0.5 * alpha * (W1.pow(2).sum(-1) + W2.pow(2).sum(-1))

        opt = torch.optim.Adam([W1, b1, W2, c], lr=1e-2)
        for step in range(2500):
            if step == 1500:
                for group in opt.param_groups:
                    group["lr"] = 2e-3
            opt.zero_grad()
            objectives().sum().backward()
            opt.step()
        with torch.no_grad():
            finals = objectives().numpy()
    finally:
        torch.set_num_threads(threads)
    assert finals.min() >= s.objective * (1 - 1e-9)
    # and training gets close, so the comparison is not vacuous
    assert finals.min() <= 1.2 * s.objective


def test_free_bias_reflection_symmetry():
    """The returned (canonical) spline of reflected data is the reflected spline."""
    x, y = _data(10, seed=5, duplicates=False)
    a = spline1d(x, y, 0.02, bias="free")
    b = spline1d(-x, y, 0.02, bias="free")
    t = _grid(x)
    np.testing.assert_allclose(a(t), b(-t), atol=1e-9)
    assert a.objective == pytest.approx(b.objective, rel=1e-10)


def test_free_bias_linear_data_costs_the_slope():
    """Exactly linear data: cost alpha*|slope| (a free linear term would cost nothing,
    a global linear function twice that); fit shrinks the slope by the closed form."""
    x = np.linspace(-1, 1, 9)
    y = 3.0 * x + 1.0
    alpha = 0.01
    s = spline1d(x, y, alpha, bias="free")
    # min over slopes k: sum((k - 3)^2 x^2)/(2n) + alpha |k|  ->  k = 3 - n alpha / sum x^2
    n = x.size
    k = 3.0 - n * alpha / np.sum(x ** 2)
    ref = np.sum(((k - 3.0) * x) ** 2) / (2 * n) + alpha * k
    assert s.objective == pytest.approx(ref, rel=1e-10)
    np.testing.assert_allclose(s(x), k * x + 1.0, atol=1e-10)


# ----------------------------------------------------------------------------
# regularised bias
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("loss,alpha", [("squared", 2e-3), ("squared", 0.05), ("logistic", 0.02)])
def test_regularized_matches_enumerated_program(loss, alpha):
    x, y = _data(12, seed=3, duplicates=False)
    yy = y if loss == "squared" else _labels(y)
    s = spline1d(x, yy, alpha, bias="regularized", loss=loss, tol=1e-9)
    ref, V, W = _relu_program(x, yy, alpha, loss, free=False)
    assert abs(s.objective - ref) <= 1e-6 * abs(ref)
    assert s.intercept == 0.0
    assert s.objective == pytest.approx(s.network.objective(x[:, None], yy, alpha), rel=1e-12)
    # knots: the kinks -b/w of the oracle's active blocks (cells meet at data points,
    # where several blocks may share a knot)
    blocks = np.hstack([V, W])
    norms = np.linalg.norm(blocks, axis=0)
    active = norms > 1e-4 * norms.max()
    ref_knots = np.unique(np.round(-blocks[1, active] / blocks[0, active], 4))
    np.testing.assert_allclose(np.round(s.knots, 4), ref_knots, atol=2e-4)


def test_regularized_knots_not_at_data_points():
    x, y = _data(12, seed=3, duplicates=False)
    s = spline1d(x, y, 2e-3, bias="regularized")
    dist = np.min(np.abs(s.knots[:, None] - x[None, :]), axis=1)
    assert np.any(dist > 1e-3)


# ----------------------------------------------------------------------------
# no bias: rank-one closed form
# ----------------------------------------------------------------------------

def _lasso_two_features(x, y, alpha, loss):
    Yv = _encode(y, loss)
    F = np.column_stack([np.maximum(x, 0), np.maximum(-x, 0)])
    g = cp.Variable(2)
    prob = cp.Problem(cp.Minimize(_loss_expr(F @ g, Yv, loss) + alpha * cp.norm1(g)))
    prob.solve(solver=cp.CLARABEL, **CLARABEL_TIGHT)
    return prob.value, g.value


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_no_bias_closed_form(loss):
    x, y = _data(15, seed=4, duplicates=False)
    yy = y if loss == "squared" else _labels(y)
    s = spline1d(x, yy, 0.01, bias="none", loss=loss)
    ref, g = _lasso_two_features(x, yy, 0.01, loss)
    assert s.objective == pytest.approx(ref, rel=1e-7)
    assert s.network.b1 is None and s.intercept == 0.0
    np.testing.assert_array_equal(s.knots, [0.0])
    # slopes: -gamma_- left of 0, gamma_+ right of it
    np.testing.assert_allclose(s.slopes, [-g[1], g[0]], atol=1e-4)
    # exact first-order optimality of each side's coefficient
    Yv = _encode(yy, loss)
    n = x.size
    for gam, feat in ((s.slopes[1], np.maximum(x, 0)), (-s.slopes[0], np.maximum(-x, 0))):
        zz = gam * feat
        grad = (feat @ (zz - Yv) / n if loss == "squared"
                else -np.mean(Yv * feat / (1 + np.exp(Yv * zz))))
        if gam != 0:
            assert abs(grad + 0.01 * np.sign(gam)) <= 1e-12
        else:
            assert abs(grad) <= 0.01
    if loss == "squared":   # the explicit soft-threshold formula
        n = x.size
        cpos = np.maximum(x, 0)
        gp = np.sign(cpos @ y) * max(abs(cpos @ y) - n * 0.01, 0) / (cpos @ cpos)
        assert s.slopes[-1] == pytest.approx(gp, rel=1e-12)


# ----------------------------------------------------------------------------
# the spline representation
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("bias", ["regularized", "free", "none"])
@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_evaluate_equals_network(bias, loss):
    x, y = _data(13, seed=6)
    yy = y if loss == "squared" else _labels(y)
    s = spline1d(x, yy, 0.01, bias=bias, loss=loss, tol=1e-8)
    assert isinstance(s, Spline1D) and isinstance(s.network, TwoLayerReLU)
    t = _grid(x)
    np.testing.assert_allclose(s.evaluate(t), s.decision_function(t), rtol=0, atol=1e-10)
    np.testing.assert_allclose(s(t), s.decision_function(t[:, None]), rtol=0, atol=0)
    # the network's own output plus the intercept
    np.testing.assert_allclose(s(t), s.network.decision_function(t[:, None]) + s.intercept,
                               atol=0)
    k = s.n_knots
    assert s.knots.shape == (k,) and s.slopes.shape == (k + 1,) and s.values.shape == (k,)
    assert np.all(np.diff(s.knots) > 0)
    np.testing.assert_allclose(s.values, s(s.knots), atol=1e-12)
    assert s.offset == pytest.approx(float(s(0.0)), abs=1e-12)
    np.testing.assert_array_equal(s.x, x)
    np.testing.assert_array_equal(s.y, yy)
    if loss == "logistic":
        np.testing.assert_array_equal(s.classes, ["neg", "pos"])
        pred = s.predict(t)
        np.testing.assert_array_equal(pred, np.where(s(t) > 0, "pos", "neg"))
    else:
        assert s.classes is None
        np.testing.assert_array_equal(s.predict(t), s(t))
    if bias != "free":
        assert s.intercept == 0.0


def test_logistic_free_piecewise_linear_with_data_knots():
    x, y = _data(16, seed=7)
    s = spline1d(x, _labels(y), 0.01, bias="free", loss="logistic")
    assert np.all(np.isin(s.knots, x))
    t = np.linspace(x.min() - 1, x.max() + 1, 4001)
    f = s(t)
    h = t[1] - t[0]
    second = np.abs(np.diff(f, 2)) / h
    # the second difference vanishes except in grid cells that contain a knot
    cells = np.searchsorted(t, s.knots)
    near = np.zeros(second.size, dtype=bool)
    for c in cells:
        near[max(c - 2, 0):c + 1] = True
    assert np.all(second[~near] <= 1e-9)
    # the fitted slopes are those between the knots
    mids = (np.concatenate([[s.knots[0] - 1], s.knots]) + np.concatenate([s.knots, [s.knots[-1] + 1]])) / 2
    num = (s(mids + 1e-6) - s(mids - 1e-6)) / 2e-6
    np.testing.assert_allclose(num, s.slopes, atol=1e-6)


def test_no_knots_gives_constant_or_line():
    x, y = _data(10, seed=8)
    s = spline1d(x, y, 50.0, bias="free")          # huge alpha: the mean
    assert s.n_knots == 0 and s.network.n_neurons == 0
    np.testing.assert_allclose(s.evaluate(np.array([-5.0, 7.0])), np.mean(y), atol=1e-12)
    np.testing.assert_allclose(s(np.array([-5.0, 7.0])), np.mean(y), atol=1e-12)


# ----------------------------------------------------------------------------
# alpha -> 0: interpolation
# ----------------------------------------------------------------------------

def _min_l1_interpolation(x, y):
    """min sum|gamma| s.t. c + sum gamma phi(x) = y over kinks at data and extra points."""
    xs = np.unique(x)
    extra = np.concatenate([(xs[:-1] + xs[1:]) / 2, xs[:-1] + 0.1 * np.diff(xs),
                            [xs[0] - 1.0, xs[-1] + 1.0]])
    knots = np.concatenate([xs, extra])
    F = np.hstack([np.maximum(x[:, None] - knots, 0), np.maximum(knots - x[:, None], 0)])
    g = cp.Variable(F.shape[1])
    c = cp.Variable()
    prob = cp.Problem(cp.Minimize(cp.norm1(g)), [F @ g + c == y])
    prob.solve(solver=cp.CLARABEL, **CLARABEL_TIGHT)
    return prob.value


def test_free_alpha_to_zero_interpolates():
    x, y = _data(12, seed=9, duplicates=False)
    res = []
    for alpha in [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7]:
        s = spline1d(x, y, alpha, bias="free")
        res.append(np.abs(s(x) - y).max())
    assert np.all(np.diff(res) < 0) and res[-1] < 1e-3
    s0 = spline1d(x, y, 0.0, bias="free")
    assert np.abs(s0(x) - y).max() <= 1e-12
    assert s0.objective == pytest.approx(0.0, abs=1e-24)
    assert np.all(np.isin(s0.knots, x))
    # the network is the minimum-l1 interpolant (cost sum |a||w| = its penalty / alpha)
    cost = float(np.sum(np.abs(s0.network.W1[:, 0] * s0.network.W2[:, 0])))
    assert cost == pytest.approx(_min_l1_interpolation(x, y), rel=1e-7)


def test_free_alpha_zero_with_repeated_inputs_fits_the_means():
    x, y = _data(12, seed=10)            # x[0] = x[1] = x[2]
    s0 = spline1d(x, y, 0.0, bias="free")
    np.testing.assert_allclose(s0(x[:3]), np.mean(y[:3]), atol=1e-12)
    np.testing.assert_allclose(s0(x[3:]), y[3:], atol=1e-12)


def test_regularized_alpha_to_zero_interpolates():
    x, y = _data(8, seed=11, duplicates=False)
    res = []
    for alpha in [1e-1, 1e-3, 1e-5]:
        s = spline1d(x, y, alpha, bias="regularized", tol=1e-9)
        res.append(np.abs(s(x) - y).max())
    assert np.all(np.diff(res) < 0) and res[-1] < 0.05
    s0 = spline1d(x, y, 0.0, bias="regularized")
    assert np.abs(s0(x) - y).max() <= 1e-6
    np.testing.assert_allclose(s0.evaluate(_grid(x)), s0(_grid(x)), atol=1e-10)


def test_no_bias_alpha_to_zero_interpolates_interpolable_data():
    x = np.array([-2.0, -1.0, -0.5, 0.5, 1.5, 3.0])
    y = np.where(x > 0, 2.0 * x, 0.7 * x)
    res = [np.abs(spline1d(x, y, a, bias="none")(x) - y).max() for a in [1e-1, 1e-2, 1e-3]]
    assert np.all(np.diff(res) < 0)
    s0 = spline1d(x, y, 0.0, bias="none")
    np.testing.assert_allclose(s0(x), y, atol=1e-12)
    np.testing.assert_allclose(s0.slopes, [0.7, 2.0], atol=1e-12)


def test_logistic_alpha_zero_refused():
    x, y = _data(8, seed=12)
    with pytest.raises(ValueError, match="alpha"):
        spline1d(x, _labels(y), 0.0, bias="free", loss="logistic")


# ----------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------

def test_bad_inputs_name_the_argument():
    x, y = _data(8, seed=13)
    with pytest.raises(ValueError, match=r"\bx\b"):
        spline1d(np.column_stack([x, x]), y, 0.1)
    with pytest.raises(ValueError, match=r"x and y"):
        spline1d(x, y[:-1], 0.1)
    with pytest.raises(ValueError, match="alpha"):
        spline1d(x, y, -0.1)
    with pytest.raises(ValueError, match="bias"):
        spline1d(x, y, 0.1, bias="unregularized")
    with pytest.raises(ValueError, match="bias"):
        spline1d(x, y, 0.1, bias=True)
    with pytest.raises(ValueError, match="loss"):
        spline1d(x, y, 0.1, loss="hinge")
    with pytest.raises(ValueError, match="tol"):
        spline1d(x, y, 0.1, tol=0)
    with pytest.raises(ValueError, match=r"\bx\b"):
        spline1d(np.array([0.0, np.nan, 1.0]), np.zeros(3), 0.1)
    with pytest.raises(ValueError, match="logistic"):
        spline1d(x, np.arange(8) % 3, 0.1, loss="logistic")
    # (n, 1) input is accepted and means the same as (n,)
    a = spline1d(x[:, None], y, 0.1, bias="free")
    b = spline1d(x, y, 0.1, bias="free")
    assert a.objective == b.objective
    assert a.x.shape == (8,)
