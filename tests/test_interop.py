"""Interoperability: PyTorch export/import of networks, pandas DataFrames in the estimators."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

from cvxnn import ConvexReLUClassifier, ConvexReLURegressor, TwoLayerReLU, solve
from cvxnn.network import GatedTwoLayerReLU

torch = pytest.importorskip("torch")


def _network(m=7, d=4, c=1, bias=True, seed=0, **kw):
    rng = np.random.default_rng(seed)
    return TwoLayerReLU(rng.standard_normal((m, d)), rng.standard_normal(m) if bias else None,
                        rng.standard_normal((m, c)), **kw)


def _relu_forward(W1, b1, W2, X):
    """Reference forward pass written out in numpy (independent of the classes)."""
    H = X @ W1.T + (0.0 if b1 is None else b1)
    return np.maximum(H, 0.0) @ W2


# ----------------------------------------------------------------------------- torch
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("c", [1, 3])
def test_to_torch_structure_and_predictions(bias, c):
    net = _network(c=c, bias=bias)
    mod = net.to_torch()
    assert isinstance(mod, torch.nn.Sequential)
    kinds = [type(m).__name__ for m in mod]
    assert kinds == ["Linear", "ReLU", "Linear"]
    assert (mod[0].bias is not None) == bias and mod[2].bias is None
    assert mod[0].weight.dtype == torch.float64
    X = np.random.default_rng(1).standard_normal((50, 4))
    with torch.no_grad():
        Z = mod(torch.as_tensor(X)).numpy()
    ref = _relu_forward(np.array(net.W1), None if net.b1 is None else np.array(net.b1),
                        np.array(net.W2), X)
    np.testing.assert_allclose(Z, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Z, np.asarray(net.forward(X)).reshape(50, c), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("bias", [True, False])
def test_round_trip_is_exact(bias):
    net = _network(c=3, bias=bias, classes=np.array(["x", "y", "z"]), loss="cross_entropy")
    back = TwoLayerReLU.from_torch(net.to_torch(), classes=net.classes, loss=net.loss)
    assert type(back) is TwoLayerReLU
    np.testing.assert_array_equal(back.W1, net.W1)
    np.testing.assert_array_equal(back.W2, net.W2)
    if bias:
        np.testing.assert_array_equal(back.b1, net.b1)
    else:
        assert back.b1 is None
    X = np.random.default_rng(2).standard_normal((40, 4))
    np.testing.assert_array_equal(back.predict(X), net.predict(X))
    np.testing.assert_allclose(back.predict_proba(X), net.predict_proba(X), rtol=1e-12)


def test_solved_network_exports_to_torch():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((60, 3))
    y = np.sin(2 * X[:, 0]) + X[:, 1] ** 2
    res = solve(X, y, 1e-2, n_gates=15, random_state=0, patterns="sampled")
    mod = res.network.to_torch()
    with torch.no_grad():
        Z = mod(torch.as_tensor(X)).numpy()[:, 0]
    np.testing.assert_allclose(Z, res.network.predict(X), rtol=1e-12, atol=1e-12)
    # the exported module has the same weight-decay objective (the convex optimum)
    n = X.shape[0]
    params = sum(float((p.detach() ** 2).sum()) for p in mod.parameters())
    obj = float(((Z - y) ** 2).sum()) / (2 * n) + 1e-2 / 2 * params
    assert obj == pytest.approx(res.objective, rel=1e-9)


def test_trained_torch_module_round_trip():
    # a module built and modified in torch imports with its exact weights
    torch.manual_seed(0)
    mod = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(),
                              torch.nn.Linear(6, 2, bias=False)).double()
    net = TwoLayerReLU.from_torch(mod, loss="squared")
    X = np.random.default_rng(4).standard_normal((30, 4))
    with torch.no_grad():
        Z = mod(torch.as_tensor(X)).numpy()
    np.testing.assert_allclose(net.forward(X), Z, rtol=1e-12, atol=1e-12)
    # and a nested module whose leaves are Linear, ReLU, Linear
    wrapper = torch.nn.Module()
    wrapper.body = mod
    np.testing.assert_array_equal(TwoLayerReLU.from_torch(wrapper).W1, net.W1)


def test_dtype_and_device_options():
    net = _network()
    mod = net.to_torch(dtype=torch.float32, device="cpu")
    assert mod[0].weight.dtype == torch.float32 and mod[0].weight.device.type == "cpu"
    assert net.to_torch(dtype="float32")[2].weight.dtype == torch.float32
    net32 = TwoLayerReLU(np.float32(net.W1), np.float32(net.b1), np.float32(net.W2))
    assert net32.to_torch()[0].weight.dtype == torch.float32
    with pytest.raises(ValueError, match="dtype"):
        net.to_torch(dtype="int64")


def test_from_torch_refuses_output_bias_and_other_shapes():
    mod = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 1))
    with pytest.raises(ValueError, match="bias"):
        TwoLayerReLU.from_torch(mod)
    with torch.no_grad():
        mod[2].bias.zero_()
    assert TwoLayerReLU.from_torch(mod).n_neurons == 5       # a zero output bias is harmless
    bad = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1))
    with pytest.raises(ValueError, match="Linear -> ReLU -> Linear"):
        TwoLayerReLU.from_torch(bad)
    with pytest.raises(TypeError, match="module"):
        TwoLayerReLU.from_torch(np.zeros((3, 3)))


def test_gated_networks_do_not_export():
    rng = np.random.default_rng(5)
    net = GatedTwoLayerReLU(rng.standard_normal((4, 3)), rng.standard_normal(4),
                            rng.standard_normal(4), rng.standard_normal((4, 4)))
    with pytest.raises(TypeError, match="to_relu"):
        net.to_torch()
    mod = _network(d=3).to_torch()
    with pytest.raises(TypeError, match="TwoLayerReLU.from_torch"):
        GatedTwoLayerReLU.from_torch(mod)


def test_torch_is_imported_lazily():
    code = ("import sys, numpy as np, cvxnn\n"
            "net = cvxnn.TwoLayerReLU(np.ones((2, 3)), None, np.ones(2))\n"
            "net.predict(np.ones((4, 3)))\n"
            "assert 'torch' not in sys.modules, 'torch imported by cvxnn'\n"
            "net.to_torch()\n"
            "assert 'torch' in sys.modules\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


# ----------------------------------------------------------------------------- pandas
pd = pytest.importorskip("pandas")


def _frame(n=60, seed=6):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    df = pd.DataFrame(X, columns=["age", "height", "weight"])
    y = pd.Series(np.sin(2 * X[:, 0]) + X[:, 1], name="target")
    return df, y


def _reg(**kw):
    return ConvexReLURegressor(alpha=1e-2, formulation="gated", n_gates=10, random_state=0,
                               tol=1e-6, **kw)


def test_dataframe_fit_keeps_feature_names_and_predicts_like_arrays():
    df, y = _frame()
    est = _reg().fit(df, y)
    assert list(est.feature_names_in_) == ["age", "height", "weight"]
    assert est.n_features_in_ == 3
    ref = _reg().fit(df.to_numpy(), y.to_numpy())
    assert not hasattr(ref, "feature_names_in_")
    np.testing.assert_allclose(est.predict(df), ref.predict(df.to_numpy()), rtol=1e-12)
    assert est.objective_ == pytest.approx(ref.objective_, rel=1e-12)


def test_dataframe_with_reordered_or_unknown_columns_is_refused():
    df, y = _frame()
    est = _reg().fit(df, y)
    with pytest.raises(ValueError, match="feature names"):
        est.predict(df[["weight", "age", "height"]])
    with pytest.raises(ValueError, match="feature names"):
        est.predict(df.rename(columns={"age": "years"}))
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        est.predict(df.to_numpy())
    plain = _reg().fit(df.to_numpy(), y)
    with pytest.warns(UserWarning, match="fitted without feature names"):
        plain.predict(df)


def test_classifier_with_dataframe_and_string_series():
    df, y = _frame()
    labels = pd.Series(np.where(y > 0, "high", "low"))
    clf = ConvexReLUClassifier(alpha=1e-2, formulation="gated", loss="logistic", n_gates=10,
                               random_state=0).fit(df, labels)
    assert list(clf.classes_) == ["high", "low"]
    assert list(clf.feature_names_in_) == list(df.columns)
    with warnings.catch_warnings():
        warnings.simplefilter("error")       # matching names: no warning
        pred = clf.predict(df)
    assert set(pred) <= {"high", "low"} and np.mean(pred == labels.to_numpy()) > 0.8
