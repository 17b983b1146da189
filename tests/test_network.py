"""Tests of cvxnn.network: recovery from convex weights, objective, pruning, files."""

from __future__ import annotations

import json
import zipfile
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cvxnn._data import augment, encode_targets
from cvxnn.losses import get_loss
from cvxnn.network import (
    FORMAT_NAME,
    GatedTwoLayerReLU,
    TwoLayerReLU,
    load,
    network_from_gated,
    network_from_relu,
)
from cvxnn.operators import forward


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------

def seed_of(*parts):
    """Deterministic seed from test parameters (str hashes are randomised per run)."""
    return zlib.crc32(repr([p if not callable(p) else p(np.random.default_rng(0), 3).dtype.kind
                            for p in parts]).encode())


def make_X(rng, n, d, badly_scaled=False):
    X = rng.standard_normal((n, d))
    if badly_scaled:
        X = X * np.logspace(-3, 3, d)
    return X


def make_gates(rng, X, bias, P):
    Xa = augment(X, bias)
    G = rng.standard_normal((Xa.shape[1], P))
    if badly_scaled_columns(X):
        # scale the gates so that every feature matters in the patterns
        G = G / np.concatenate([np.abs(X).max(axis=0), [1.0] * bias])[:, None]
    return Xa, G, Xa @ G > 0


def badly_scaled_columns(X):
    s = np.abs(X).max(axis=0)
    return s.max() / s.min() > 100


def cone_weights(rng, G, c, zero_frac=0.3):
    """Random convex ReLU weights inside the cones: block (i, k) = G[:, i] * scale."""
    d_aug, P = G.shape
    scale = rng.uniform(0.1, 3.0, size=(P, c)) * (rng.random((P, c)) > zero_frac)
    return G[:, :, None] * scale[None, :, :]


def convex_relu_objective(Xa, D, V, W, Y, alpha, loss):
    Z = forward(Xa, D, V - W)
    norms = np.linalg.norm(V, axis=0).sum() + np.linalg.norm(W, axis=0).sum()
    return get_loss(loss).value(Z, Y) + alpha * norms


def convex_gated_objective(Xa, D, U, Y, alpha, loss):
    Z = forward(Xa, D, U)
    return get_loss(loss).value(Z, Y) + alpha * np.linalg.norm(U, axis=0).sum()


# (loss, n_outputs, label factory or None for regression)
CASES = [
    ("squared", 1, None),
    ("squared", 2, None),
    ("logistic", 1, lambda rng, n: rng.choice(np.array(["a", "b"]), size=n)),
    ("logistic", 1, lambda rng, n: rng.choice(np.array([3, 7]), size=n)),
    ("cross_entropy", 3, lambda rng, n: rng.choice(np.array(["x", "y", "z"]), size=n)),
]


def targets(rng, n, loss, c, labels):
    """Raw y, encoded Y and classes for one case."""
    if labels is None:
        y = rng.standard_normal((n, c)) if c > 1 else rng.standard_normal(n)
        Y, classes = encode_targets(y, loss)
        return y, Y, classes
    y = labels(rng, n)
    # make sure every class occurs
    K = c if c > 1 else 2
    cls = np.unique(y)
    while len(cls) < K:
        y = labels(rng, n)
        cls = np.unique(y)
    Y, classes = encode_targets(y, loss)
    return y, Y, classes


# ----------------------------------------------------------------------------
# recovery: network objective == convex objective
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("loss,c,labels", CASES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("badly_scaled", [False, True])
def test_relu_recovery_objective_matches_convex(loss, c, labels, bias, badly_scaled):
    rng = np.random.default_rng(seed_of("relu", loss, c, labels, bias, badly_scaled))
    n, d, P = 30, 5, 12
    X = make_X(rng, n, d, badly_scaled)
    Xa, G, D = make_gates(rng, X, bias, P)
    # V and W blocks lie in the cones (own random scales and zero patterns)
    V = cone_weights(rng, G, c)
    W = cone_weights(rng, G, c)
    # cone constraints hold by construction
    S = 2.0 * D - 1.0
    for U in (V, W):
        assert np.all((Xa @ U.reshape(Xa.shape[1], -1)).reshape(n, P, c) * S[:, :, None] >= 0)
    y, Y, classes = targets(rng, n, loss, c, labels)
    alpha = 0.37
    net = network_from_relu(V, W, bias=bias, classes=classes, loss=loss)
    assert isinstance(net, TwoLayerReLU) and not isinstance(net, GatedTwoLayerReLU)
    n_blocks = int((np.linalg.norm(V, axis=0) > 0).sum() + (np.linalg.norm(W, axis=0) > 0).sum())
    assert net.n_neurons == n_blocks
    assert net.bias is bias and net.n_features_in == d and net.n_outputs == c
    expected = convex_relu_objective(Xa, D, V, W, Y, alpha, loss)
    got = net.objective(X, y, alpha)
    assert got == pytest.approx(expected, rel=1e-10)
    # and the raw outputs agree with the convex model on the training data
    np.testing.assert_allclose(net.forward(X), forward(Xa, D, V - W), rtol=1e-10,
                               atol=1e-10 * np.abs(forward(Xa, D, V - W)).max())
    # the recovered network is balanced: penalty == alpha * sum of block norms
    norms = np.linalg.norm(V, axis=0).sum() + np.linalg.norm(W, axis=0).sum()
    assert net.penalty(alpha) == pytest.approx(alpha * norms, rel=1e-12)


@pytest.mark.parametrize("loss,c,labels", CASES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("badly_scaled", [False, True])
def test_gated_recovery_objective_matches_convex(loss, c, labels, bias, badly_scaled):
    rng = np.random.default_rng(seed_of("gated", loss, c, labels, bias, badly_scaled))
    n, d, P = 25, 4, 10
    X = make_X(rng, n, d, badly_scaled)
    Xa, G, D = make_gates(rng, X, bias, P)
    U = rng.standard_normal((Xa.shape[1], P, c))
    U[:, rng.random(P) < 0.3, :] = 0.0           # some zero patterns
    U[:, 0, 0] = 0.0                             # and a single zero block
    y, Y, classes = targets(rng, n, loss, c, labels)
    alpha = 0.05
    net = network_from_gated(U, G, bias=bias, classes=classes, loss=loss)
    assert isinstance(net, GatedTwoLayerReLU)
    assert net.gates.shape == (net.n_neurons, Xa.shape[1])
    assert net.n_neurons == int((np.linalg.norm(U, axis=0) > 0).sum())
    expected = convex_gated_objective(Xa, D, U, Y, alpha, loss)
    assert net.objective(X, y, alpha) == pytest.approx(expected, rel=1e-10)
    # gated networks agree with the convex model everywhere, also off the data
    Xt = make_X(rng, 40, d, badly_scaled)
    Xta = augment(Xt, bias)
    Zt = forward(Xta, Xta @ G > 0, U)
    np.testing.assert_allclose(net.forward(Xt), Zt, rtol=1e-10, atol=1e-10 * np.abs(Zt).max())


def test_classmethod_recovery_and_threshold():
    rng = np.random.default_rng(1)
    d_aug, P = 4, 5
    V = rng.standard_normal((d_aug, P, 1))
    W = np.zeros_like(V)
    V[:, 1, 0] *= 1e-14                          # below the relative threshold
    net = TwoLayerReLU.from_relu(V, W, bias=True)
    assert net.n_neurons == P - 1
    assert TwoLayerReLU.from_relu(V, W, bias=True, threshold=0).n_neurons == P
    # unit j: first layer v / sqrt||v||, output +sqrt||v||
    v = V[:, 0, 0]
    r = np.linalg.norm(v)
    np.testing.assert_allclose(net.W1[0], v[:3] / np.sqrt(r))
    assert net.b1[0] == pytest.approx(v[3] / np.sqrt(r))
    assert net.W2[0, 0] == pytest.approx(np.sqrt(r))
    # W blocks give negative outputs
    neg = TwoLayerReLU.from_relu(np.zeros_like(V), V, bias=False)
    assert np.all(neg.W2 < 0) and neg.b1 is None and neg.n_features_in == 4
    gated = TwoLayerReLU.from_gated(V[:, :, 0], rng.standard_normal((d_aug, P)), bias=True)
    assert isinstance(gated, GatedTwoLayerReLU) and gated.n_neurons == P - 1
    empty = network_from_relu(np.zeros((3, 2, 2)), np.zeros((3, 2, 2)), bias=True)
    assert empty.n_neurons == 0
    np.testing.assert_array_equal(empty.forward(np.ones((4, 2))), np.zeros((4, 2)))


def test_recovery_shape_errors():
    with pytest.raises(ValueError, match="same shape"):
        network_from_relu(np.zeros((3, 2, 1)), np.zeros((3, 3, 1)), bias=True)
    with pytest.raises(ValueError, match="G must have shape"):
        network_from_gated(np.zeros((3, 2, 1)), np.zeros((3, 3)), bias=True)
    with pytest.raises(ValueError, match="at least 2"):
        network_from_gated(np.zeros((1, 2, 1)), np.zeros((1, 2)), bias=True)
    with pytest.raises(ValueError, match="threshold"):
        network_from_relu(np.zeros((3, 2)), np.zeros((3, 2)), bias=True, threshold=-1)


# ----------------------------------------------------------------------------
# objective encoding and construction errors
# ----------------------------------------------------------------------------

def test_objective_uses_network_class_order():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((10, 3))
    net = TwoLayerReLU(rng.standard_normal((4, 3)), rng.standard_normal(4),
                       rng.standard_normal((4, 1)), classes=["b", "a"], loss="logistic")
    y = rng.choice(["a", "b"], size=10)
    Z = net.forward(X)
    Y = np.where(y == "a", 1.0, -1.0)[:, None]  # "a" is classes[1] -> +1
    expected = get_loss("logistic").value(Z, Y) + net.penalty(0.1)
    assert net.objective(X, y, 0.1) == pytest.approx(expected, rel=1e-13)
    with pytest.raises(ValueError, match="not among the network's classes"):
        net.objective(X, np.where(y == "a", "a", "c"), 0.1)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        net.objective(X, y[:-1], 0.1)
    with pytest.raises(ValueError, match="alpha"):
        net.objective(X, y, -1.0)
    # squared loss on the same binary network: the same +-1 encoding
    sq = net.objective(X, y, 0.0, loss="squared")
    assert sq == pytest.approx(np.sum((Z - Y) ** 2) / 20)


def test_constructor_validation():
    W1, b1, W2 = np.ones((3, 2)), np.ones(3), np.ones((3, 1))
    with pytest.raises(ValueError, match="W2"):
        TwoLayerReLU(W1, b1, np.ones((4, 1)))
    with pytest.raises(ValueError, match="b1"):
        TwoLayerReLU(W1, np.ones(2), W2)
    with pytest.raises(ValueError, match="W1"):
        TwoLayerReLU(np.ones(3), b1, W2)
    with pytest.raises(ValueError, match="NaN"):
        TwoLayerReLU(np.full((3, 2), np.nan), b1, W2)
    with pytest.raises(ValueError, match="loss"):
        TwoLayerReLU(W1, b1, W2, loss="hinge")
    with pytest.raises(ValueError, match="logistic"):
        TwoLayerReLU(W1, b1, np.ones((3, 2)), loss="logistic")
    with pytest.raises(ValueError, match="classes"):
        TwoLayerReLU(W1, b1, np.ones((3, 2)), classes=[0, 1, 2])
    with pytest.raises(ValueError, match="duplicates"):
        TwoLayerReLU(W1, b1, W2, classes=[1, 1])
    with pytest.raises(ValueError, match="gates"):
        GatedTwoLayerReLU(W1, b1, W2, np.ones((3, 2)))   # needs d + 1 = 3 columns
    net = TwoLayerReLU(W1, None, np.ones(3))
    assert net.n_outputs == 1 and not net.bias
    with pytest.raises(ValueError):
        net.W1[0, 0] = 5.0                                # weights are read-only


# ----------------------------------------------------------------------------
# prediction
# ----------------------------------------------------------------------------

def test_predict_shapes_and_labels():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((12, 4))
    m = 7
    # binary logistic with numeric labels
    net = TwoLayerReLU(rng.standard_normal((m, 4)), rng.standard_normal(m),
                       rng.standard_normal((m, 1)), classes=np.array([3, 7]), loss="logistic")
    assert net.decision_function(X).shape == (12,)
    pred = net.predict(X)
    assert pred.shape == (12,) and set(pred.tolist()) <= {3, 7}
    np.testing.assert_array_equal(pred, np.where(net.decision_function(X) > 0, 7, 3))
    P = net.predict_proba(X)
    assert P.shape == (12, 2)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    np.testing.assert_array_equal(net.classes[P.argmax(axis=1)], pred)
    # multiclass cross-entropy with string labels
    net3 = GatedTwoLayerReLU(rng.standard_normal((m, 4)), None, rng.standard_normal((m, 3)),
                             rng.standard_normal((m, 4)), classes=["u", "v", "w"],
                             loss="cross_entropy")
    Z = net3.decision_function(X)
    assert Z.shape == (12, 3)
    np.testing.assert_array_equal(net3.predict(X), np.array(["u", "v", "w"])[Z.argmax(1)])
    P3 = net3.predict_proba(X)
    assert P3.shape == (12, 3)
    np.testing.assert_allclose(P3.sum(axis=1), 1.0)
    # regression
    reg = TwoLayerReLU(rng.standard_normal((m, 4)), rng.standard_normal(m),
                       rng.standard_normal((m, 2)))
    assert reg.predict(X).shape == (12, 2)
    with pytest.raises((AttributeError, ValueError), match="predict_proba"):
        reg.predict_proba(X)
    # bad inputs name X
    with pytest.raises(ValueError, match="X has 3 features"):
        net.predict(X[:, :3])
    with pytest.raises(ValueError, match="X"):
        net.forward(np.full((2, 4), np.nan))
    with pytest.raises(ValueError, match="X"):
        net.forward(X[0])
    assert "TwoLayerReLU(" in repr(net) and "n_neurons=7" in repr(net)
    assert "GatedTwoLayerReLU(" in repr(net3)


# ----------------------------------------------------------------------------
# balance and prune
# ----------------------------------------------------------------------------

def random_net(rng, m, d, c, bias=True, gated=False, **kw):
    W1 = rng.standard_normal((m, d)) * rng.uniform(0.1, 5, size=(m, 1))
    b1 = rng.standard_normal(m) if bias else None
    W2 = rng.standard_normal((m, c)) * rng.uniform(0.1, 5, size=(m, 1))
    if gated:
        return GatedTwoLayerReLU(W1, b1, W2, rng.standard_normal((m, d + bias)), **kw)
    return TwoLayerReLU(W1, b1, W2, **kw)


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("c", [1, 3])
def test_prune_caratheodory(gated, bias, c):
    rng = np.random.default_rng(10 + 2 * c + bias + 4 * gated)
    n, d, m = 6, 3, 40
    X = rng.standard_normal((n, d))
    net = random_net(rng, m, d, c, bias=bias, gated=gated)
    y = rng.standard_normal((n, c)) if c > 1 else rng.standard_normal(n)
    pruned = net.prune(X)
    assert type(pruned) is type(net)
    assert pruned.n_neurons <= n * c
    if c == 1:
        assert pruned.n_neurons <= n
    Z0 = net.forward(X)
    np.testing.assert_allclose(pruned.forward(X), Z0, rtol=1e-8, atol=1e-10 * np.abs(Z0).max())
    for alpha in (0.0, 1e-3, 1.0):
        # not increased, up to rounding of the (unchanged) loss: 1e-12 relative
        bound = net.balance().objective(X, y, alpha)
        assert bound <= net.objective(X, y, alpha) * (1 + 1e-12)
        assert pruned.objective(X, y, alpha) <= bound * (1 + 1e-12) + 1e-12
    assert pruned.penalty(1.0) <= net.balance().penalty(1.0) * (1 + 1e-12)
    # the pruned network is balanced
    a = np.linalg.norm(pruned._first_layer(), axis=1)
    np.testing.assert_allclose(a, np.linalg.norm(pruned.W2, axis=1), rtol=1e-10)
    # pruning again changes nothing substantial
    again = pruned.prune(X)
    assert again.n_neurons == pruned.n_neurons
    np.testing.assert_allclose(again.forward(X), Z0, rtol=1e-8, atol=1e-10 * np.abs(Z0).max())


def test_prune_from_convex_solution_and_duplicates():
    rng = np.random.default_rng(4)
    n, d, P = 5, 2, 30
    X = rng.standard_normal((n, d))
    Xa, G, D = make_gates(rng, X, True, P)
    V = cone_weights(rng, G, 1, zero_frac=0.0)
    net = network_from_relu(V, np.zeros_like(V), bias=True)
    y = rng.standard_normal(n)
    pruned = net.prune(X)
    assert pruned.n_neurons <= n
    assert pruned.objective(X, y, 0.1) <= net.objective(X, y, 0.1) * (1 + 1e-12) + 1e-12
    assert pruned.penalty(0.1) < net.penalty(0.1)
    # duplicated units are merged, which preserves the outputs everywhere
    # (the copies are rescaled: same function, different weights)
    W1 = np.vstack([net.W1, 3.0 * net.W1])
    b1 = np.concatenate([net.b1, 3.0 * net.b1])
    W2 = np.vstack([net.W2, net.W2 / 7.0])
    dup = TwoLayerReLU(W1, b1, W2)
    merged = dup.prune(X)
    assert merged.n_neurons <= n
    Xt = rng.standard_normal((50, d))
    big = dup.prune(np.vstack([X, Xt]))          # enough rows: only merging happens
    assert big.n_neurons == net.n_neurons
    np.testing.assert_allclose(big.forward(Xt), dup.forward(Xt), rtol=1e-10, atol=1e-12)
    # dead units on X and zero units are dropped
    zero = TwoLayerReLU(np.vstack([net.W1, np.zeros((1, d))]), np.concatenate([net.b1, [0.0]]),
                        np.vstack([net.W2, [[3.0]]]))
    assert zero.prune(X).n_neurons <= n
    with pytest.raises(ValueError, match="X has"):
        net.prune(X[:, :1])


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(0, 6),
    d=st.integers(1, 4),
    c=st.integers(1, 3),
    bias=st.booleans(),
    gated=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
    scale=st.floats(1e-3, 1e3),
)
def test_balance_property(m, d, c, bias, gated, seed, scale):
    rng = np.random.default_rng(seed)
    W1 = rng.standard_normal((m, d)) * scale
    b1 = rng.standard_normal(m) if bias else None
    W2 = rng.standard_normal((m, c)) / scale
    if m:
        W2[rng.random(m) < 0.2] = 0.0                # some dead output rows
    kw = {}
    if gated:
        net = GatedTwoLayerReLU(W1, b1, W2, rng.standard_normal((m, d + bias)))
    else:
        net = TwoLayerReLU(W1, b1, W2, **kw)
    X = rng.standard_normal((9, d))
    bal = net.balance()
    assert type(bal) is type(net) and bal.n_neurons == m
    Z0 = net.forward(X)
    tol = 1e-12 * (1.0 + np.abs(Z0).max()) + 1e-10 * np.abs(Z0)
    assert np.all(np.abs(bal.forward(X) - Z0) <= tol)
    assert bal.penalty(1.0) <= net.penalty(1.0) * (1 + 1e-12) + 1e-300
    a = np.linalg.norm(bal._first_layer(), axis=1)
    np.testing.assert_allclose(a, np.linalg.norm(bal.W2, axis=1), rtol=1e-10, atol=1e-300)
    assert bal.penalty(2.0) == pytest.approx(2.0 * net.group_norm(), rel=1e-10, abs=1e-300)


@settings(max_examples=25, deadline=None)
@given(W=arrays(np.float64, (5, 3), elements=st.floats(-10, 10, allow_subnormal=False)),
       b=arrays(np.float64, (5,), elements=st.floats(-10, 10, allow_subnormal=False)),
       v=arrays(np.float64, (5, 2), elements=st.floats(-10, 10, allow_subnormal=False)))
def test_balance_property_arbitrary_values(W, b, v):
    net = TwoLayerReLU(W, b, v)
    X = np.linspace(-2, 2, 24).reshape(8, 3)
    bal = net.balance()
    Z0 = net.forward(X)
    np.testing.assert_allclose(bal.forward(X), Z0, rtol=1e-9, atol=1e-9 * (1 + np.abs(Z0).max()))
    assert bal.penalty(1.0) <= net.penalty(1.0) * (1 + 1e-12)


# ----------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------

def _same(a, b, X):
    assert type(a) is type(b)
    np.testing.assert_array_equal(a.W1, b.W1)
    np.testing.assert_array_equal(a.W2, b.W2)
    assert (a.b1 is None) == (b.b1 is None)
    if a.b1 is not None:
        np.testing.assert_array_equal(a.b1, b.b1)
    if isinstance(a, GatedTwoLayerReLU):
        np.testing.assert_array_equal(a.gates, b.gates)
    assert a.loss == b.loss
    if a.classes is None:
        assert b.classes is None
    else:
        assert a.classes.tolist() == b.classes.tolist()
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("classes,loss,c", [
    (["neg", "pos"], "logistic", 1),
    (np.array([3, 7, 11]), "cross_entropy", 3),
    (np.array([0.5, 1.5]), "squared", 1),
    (None, "squared", 2),
    (np.array(["a", "b"], dtype=object), "squared", 2),
])
def test_save_load_round_trip(tmp_path, gated, classes, loss, c):
    rng = np.random.default_rng(5)
    net = random_net(rng, 6, 3, c, bias=not gated, gated=gated, classes=classes, loss=loss)
    X = rng.standard_normal((10, 3))
    path = tmp_path / "model.npz"
    assert net.save(path) == path
    back = load(path)
    _same(net, back, X)
    # a plain numpy reader can open it without pickling
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["metadata"][()]))
        assert meta["format"] == FORMAT_NAME and meta["format_version"] == 1
        assert meta["class"] == type(net).__name__
        assert meta["checksum"].startswith("sha256:")
        assert ("gates" in f.files) is gated
        assert ("classes" in f.files) is (classes is not None)
    # str path without the .npz suffix is kept exactly
    plain = tmp_path / "model_file"
    net.save(str(plain))
    assert plain.exists() and not (tmp_path / "model_file.npz").exists()
    _same(net, load(str(plain)), X)
    # no temporary files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz", "model_file"]


def test_save_refuses_to_overwrite(tmp_path):
    rng = np.random.default_rng(6)
    net = random_net(rng, 4, 2, 1)
    other = random_net(rng, 5, 2, 1)
    path = tmp_path / "net.npz"
    net.save(path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        other.save(path)
    assert load(path).n_neurons == 4
    other.save(path, overwrite=True)
    assert load(path).n_neurons == 5


def test_load_rejects_damaged_or_foreign_files(tmp_path):
    rng = np.random.default_rng(7)
    net = random_net(rng, 6, 3, 1, gated=True, classes=["a", "b"], loss="logistic")
    path = tmp_path / "net.npz"
    net.save(path)
    raw = path.read_bytes()

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="cvxnn network file|truncated|corrupted"):
        load(truncated)

    # flip one byte inside the stored W1 data (the zip CRC or the checksum catches it)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("W1.npy")
    data_start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 128
    flipped = bytearray(raw)
    flipped[data_start + 3] ^= 0xFF
    bad = tmp_path / "flipped.npz"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(ValueError):
        load(bad)

    # a well-formed archive with one altered weight: the checksum catches it
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["W1"] = arrays["W1"].copy()
    arrays["W1"][0, 0] += 1e-9
    altered = tmp_path / "altered.npz"
    np.savez(altered, **arrays)
    with pytest.raises(ValueError, match="checksum"):
        load(altered)

    # altered metadata (e.g. the loss) is caught as well
    meta = json.loads(str(arrays["metadata"][()]))
    meta["loss"] = "squared"
    arrays["W1"][0, 0] -= 1e-9
    arrays["metadata"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "meta.npz", **arrays)
    with pytest.raises(ValueError, match="checksum"):
        load(tmp_path / "meta.npz")

    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a network" * 10)
    with pytest.raises(ValueError, match="not a cvxnn network file"):
        load(garbage)

    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.arange(3))
    with pytest.raises(ValueError, match="not a cvxnn network file"):
        load(foreign)

    npy = tmp_path / "single.npy"
    np.save(npy, np.arange(3))
    with pytest.raises(ValueError, match="not a cvxnn network file"):
        load(npy)

    meta["format_version"] = 99
    arrays["metadata"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "future.npz", **arrays)
    with pytest.raises(ValueError, match="newer"):
        load(tmp_path / "future.npz")

    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.npz")


def test_to_dict_round_trip():
    rng = np.random.default_rng(8)
    net = random_net(rng, 4, 2, 3, gated=True, classes=[1, 2, 3], loss="cross_entropy")
    dct = net.to_dict()
    assert dct["class"] == "GatedTwoLayerReLU" and dct["bias"] is True
    assert set(dct) >= {"W1", "b1", "W2", "gates", "classes", "loss"}
    _same(net, GatedTwoLayerReLU.from_dict(dct), rng.standard_normal((5, 2)))


@pytest.mark.parametrize("formulation", ["gated", "relu"])
def test_forward_in_row_chunks_equals_one_block(formulation, monkeypatch):
    """Large inputs are evaluated in row chunks (bounded memory) with the same outputs."""
    import cvxnn
    import cvxnn.network as network

    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 4))
    y = np.sin(X[:, 0]) + 0.1 * rng.standard_normal(300)
    net = cvxnn.solve(X, y, 1e-3, formulation=formulation, n_gates=20, random_state=0).network
    whole = net.forward(X)
    monkeypatch.setattr(network, "_FORWARD_CHUNK_ELEMENTS", 3 * net.W2.shape[0] + 1)
    # same numbers up to the rounding of differently blocked GEMMs
    np.testing.assert_allclose(net.forward(X), whole, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(net.predict(X), whole[:, 0], rtol=1e-12, atol=1e-12)
