"""Neurons as weighted sums of training samples, the kernel form, and l0 minimality.

The checks recompute the dual point ``Theta = -grad L(f(X))`` from the network's own
training outputs and the loss formula (not from cvxnn's problem classes), read the
weights from ``result.network`` and verify ``[w_j, b_j] = Xa^T z_j`` with
``z_j = (|a_j| / alpha) (sigma_j D_j Theta + (2 D_j - I) lambda_j)``, ``lambda_j >= 0``.
"""

import warnings

import numpy as np
import pytest
from scipy.special import expit

import cvxnn
from cvxnn.interpret import (
    NeuronSampleWeights, kernel_decision_function, min_cardinality, neuron_sample_weights,
)

ALPHA = 1e-2


def _data(seed=0, n=36, d=3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = np.sin(X @ rng.standard_normal(d)) + 0.1 * rng.standard_normal(n)
    return X, y


def _theta(net, X, y, loss):
    """-grad L at the network's training outputs, from the loss formulas (cvxnn scaling)."""
    n = X.shape[0]
    f = net.decision_function(X)
    if loss == "squared":
        return (y - f) / n
    t = np.where(y > 0, 1.0, -1.0)              # labels -> -1/+1 (classes sorted)
    return t * expit(-t * f) / n                  # -d/df mean log(1 + exp(-t f))


def _solve(form, loss, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cvxnn.solve(X, y, ALPHA, formulation=form, loss=loss, tol=1e-10,
                           patterns="sampled", n_gates=40, random_state=0)


CASES = [("relu", "squared"), ("relu", "logistic"), ("gated", "squared"),
         ("gated", "logistic")]


@pytest.fixture(scope="module")
def solved():
    X, y = _data()
    out = {}
    for form, loss in CASES:
        yy = y if loss == "squared" else np.where(y > 0, 1, 0)
        out[form, loss] = (X, yy, _solve(form, loss, X, yy))
    return out


@pytest.mark.parametrize("form,loss", CASES)
def test_weights_are_weighted_sums_of_samples(solved, form, loss):
    X, y, res = solved[form, loss]
    assert res.relative_gap <= 1e-9
    net = res.network
    nsw = neuron_sample_weights(res, X, y)
    assert isinstance(nsw, NeuronSampleWeights)
    m = net.n_neurons
    assert m >= 2 and nsw.sample_weights.shape == (m, X.shape[0])
    Xa = np.hstack([X, np.ones((X.shape[0], 1))])
    Wa = np.hstack([net.W1, net.b1[:, None]])     # first layer incl. bias
    a = net.W2[:, 0]
    # (1) the stated identity, weights read from the network (to 1e-8)
    rel = np.linalg.norm(Wa - nsw.sample_weights @ Xa, axis=1) / np.linalg.norm(Wa, axis=1)
    assert rel.max() <= 1e-8, rel
    np.testing.assert_allclose(nsw.residual, rel, rtol=0, atol=1e-12)
    # (2) the structure of z_j with an independently computed dual point
    theta = _theta(net, X, y, loss)
    scale = np.abs(a) / ALPHA
    base = nsw.sample_weights / scale[:, None]
    pre = X @ net.W1.T + net.b1                    # (n, m)
    tol = 1e-7 * np.abs(theta).max()
    if form == "gated":
        D = (Xa @ net.gates.T > 0)                # the unit's fixed gate
        expect = np.sign(a)[:, None] * D.T * theta[None, :]
        np.testing.assert_allclose(base, expect, rtol=0, atol=1e-9 * np.abs(theta).max())
    else:
        sig = np.sign(a)
        lam_part = base - sig[:, None] * (pre.T > 0) * theta[None, :]
        on = pre.T > 1e-9                          # active rows: sigma theta + lambda, lambda >= 0
        off = pre.T < -1e-9                        # inactive rows: -lambda <= 0
        assert np.all(lam_part[on] >= -tol)
        assert np.all(lam_part[off] <= tol)
        # complementary slackness: multipliers only on rows at the kink (Xa w = 0)
        slack = np.abs(pre.T) / np.linalg.norm(Wa, axis=1)[:, None]
        assert np.all(np.abs(lam_part[slack > 1e-6]) <= 1e-6 * np.abs(theta).max())
        assert np.all(nsw.multipliers >= 0)


@pytest.mark.parametrize("form,loss", CASES)
def test_kernel_form_equals_network(solved, form, loss):
    X, y, res = solved[form, loss]
    rng = np.random.default_rng(5)
    X_new = np.vstack([2.0 * rng.standard_normal((50, X.shape[1])), X])
    f_net = res.network.decision_function(X_new)
    f_ker = kernel_decision_function(res, X, X_new, y=y)
    assert f_ker.shape == f_net.shape
    assert np.max(np.abs(f_ker - f_net)) <= 1e-8 * max(1.0, np.abs(f_net).max())
    # the kernel form only sees X_new through Xa @ xa: a new point orthogonal to all
    # training rows (with the bias entry) gets f = 0 here, checked against the network
    nsw = neuron_sample_weights(res, X, y)
    np.testing.assert_allclose(kernel_decision_function(nsw, X, X_new), f_ker, rtol=0, atol=1e-14)


def test_top_samples_and_errors(solved):
    X, y, res = solved["relu", "squared"]
    nsw = neuron_sample_weights(res, X, y)
    idx, w = nsw.top_samples(0, 5)
    z = nsw.sample_weights[0]
    assert idx.shape == (5,) and np.allclose(w, z[idx])
    assert np.abs(w).min() >= np.sort(np.abs(z))[-5] - 1e-15
    with pytest.raises(ValueError, match="j must"):
        nsw.top_samples(nsw.n_neurons, 3)
    with pytest.raises(ValueError, match="k must"):
        nsw.top_samples(0, 0)
    with pytest.raises(ValueError, match="features"):
        neuron_sample_weights(res, X[:, :2], y)
    with pytest.raises(ValueError, match="y"):
        kernel_decision_function(res, X, X)
    with pytest.raises(TypeError, match="SolveResult"):
        neuron_sample_weights(object(), X, y)


def test_gated_cross_entropy_multioutput():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((30, 2))
    y = np.argmax(X @ rng.standard_normal((2, 3)), axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = cvxnn.solve(X, y, ALPHA, formulation="gated", loss="cross_entropy", tol=1e-10,
                          n_gates=20, random_state=0)
    nsw = neuron_sample_weights(res, X, y)
    net = res.network
    # independent dual point: (onehot - softmax(F)) / n
    F = net.forward(X)
    P = np.exp(F - F.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    theta = (np.eye(3)[y] - P) / X.shape[0]
    Xa = np.hstack([X, np.ones((30, 1))])
    k = np.argmax(np.abs(net.W2), axis=1)
    D = Xa @ net.gates.T > 0
    z = (np.abs(net.W2).max(axis=1) / ALPHA)[:, None] * D.T * theta[:, k].T
    Wa = np.hstack([net.W1, net.b1[:, None]])
    rel = np.linalg.norm(Wa - z @ Xa, axis=1) / np.linalg.norm(Wa, axis=1)
    assert rel.max() <= 1e-8
    np.testing.assert_allclose(nsw.sample_weights, z, rtol=0, atol=1e-9 * np.abs(z).max())
    Xn = rng.standard_normal((20, 2))
    np.testing.assert_allclose(kernel_decision_function(nsw, X, Xn), net.decision_function(Xn),
                               rtol=0, atol=1e-8 * np.abs(net.decision_function(Xn)).max())


# ----------------------------------------------------------------- l0 minimality
def _whitened(n=3, d=5, seed=0):
    Qm, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, n)))
    X = Qm.T                                      # X X^T = I_n
    assert np.allclose(X @ X.T, np.eye(n))
    return X


@pytest.mark.parametrize("y,expected", [
    ([1.0, -1.0, 0.5], 2),      # both signs: u+ = X^T y+, u- = X^T y- (closed form), 1 impossible
    ([1.0, 2.0, 0.5], 1),       # y in Q_X: one neuron u = X^T y / ||y||
    ([-0.3, 0.0, -2.0], 1),
    ([0.0, 0.0, 0.0], 0),
])
def test_min_cardinality_whitened(y, expected):
    X = _whitened()
    y = np.asarray(y)
    mc = min_cardinality(X, y, bias=False)
    assert mc.n_neurons == expected
    if expected:
        np.testing.assert_allclose(mc.network.decision_function(X), y, atol=1e-7)
        assert mc.network.n_neurons == expected


def test_min_cardinality_matches_weight_decay_network():
    # math spec 4.5: on whitened data the weight-decay optimum (alpha -> 0) has 2 neurons
    X = _whitened(n=4, d=6, seed=1)
    y = np.array([1.0, -0.5, 2.0, -1.0])
    mc = min_cardinality(X, y, bias=False)
    alpha = 1e-4
    res = cvxnn.solve(X, y, alpha, gates="enumerate", bias=False, tol=1e-10)
    net = res.network
    # distinct neurons: unit directions with the sign of their output (a block may be
    # split over several cells containing the same direction)
    keys = np.hstack([net.W1 / np.linalg.norm(net.W1, axis=1, keepdims=True),
                      np.sign(net.W2)])
    n_distinct = np.unique(np.round(keys, 6), axis=0).shape[0]
    assert mc.n_neurons == 2 == n_distinct
    # closed form of the weight-decay network (math spec 4.3 (1)), paper beta = n alpha
    beta = X.shape[0] * alpha
    yp, ym = np.maximum(y, 0), np.maximum(-y, 0)
    yhat = (1 - beta / np.linalg.norm(yp)) * yp - (1 - beta / np.linalg.norm(ym)) * ym
    np.testing.assert_allclose(res.network.decision_function(X), yhat, atol=1e-6)


def test_min_cardinality_one_dimensional_with_bias():
    x = np.array([[-1.0], [0.0], [1.0]])
    # |x| is not monotone: one unit (w x + b)_+ a is monotone, so 2 are needed
    assert min_cardinality(x, np.array([1.0, 0.0, 1.0])).n_neurons == 2
    assert min_cardinality(x, np.array([0.0, 0.0, 1.0])).n_neurons == 1
    assert min_cardinality(x, np.array([3.0, 2.0, 1.0])).n_neurons == 1
    with pytest.raises(ValueError, match="max_lps"):
        min_cardinality(np.random.default_rng(0).standard_normal((6, 2)),
                        np.array([1.0, -1, 1, -1, 1, -1]), max_lps=3)
