"""float32 kernels and the PyTorch backend agree with the float64 numpy solution."""

import numpy as np
import pytest

import cvxnn
from cvxnn._data import augment, encode_targets
from cvxnn.operators import adjoint, forward
from cvxnn.patterns import compute_masks, sample_gates
from cvxnn.problems import GatedReLUProblem
from tests.conftest import load_table, standardize


def _small(name="pima", n=300):
    X, y = load_table(name)
    X = standardize(X)[:n]
    return X, np.asarray(y)[:n]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mask", ["uint8", "bool", "float"])
@pytest.mark.parametrize("d, P, c", [(6, 9, 3), (6, 9, 1), (11, 4, 2)])
def test_kernels_match_expanded_products(dtype, mask, d, P, c):
    # d < P and d >= P take different paths; float masks of the data's type take a
    # one-chunk path (with and without the cached transpose of the data)
    rng = np.random.default_rng(0)
    n = 57
    X = rng.standard_normal((n, d))
    D = rng.random((n, P)) < 0.5
    U = rng.standard_normal((d, P, c))
    R = rng.standard_normal((n, c))
    expanded = np.hstack([D[:, [i]] * X for i in range(P)])  # n x Pd reference only
    Z_ref = expanded @ U.transpose(1, 0, 2).reshape(P * d, c)
    G_ref = (expanded.T @ R).reshape(P, d, c).transpose(1, 0, 2)
    Dk = {"uint8": D.astype(np.uint8), "bool": D, "float": D.astype(dtype)}[mask]
    Xd = X.astype(dtype)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    for chunk in (1 << 22, 50):  # one chunk, and many row chunks
        for XaT in (None, np.ascontiguousarray(Xd.T)):
            Z = forward(Xd, Dk, U, chunk_elements=chunk)
            G = adjoint(Xd, Dk, R, chunk_elements=chunk, XaT=XaT)
            assert Z.dtype == dtype and G.dtype == dtype
            assert Z.shape == (n, c) and G.shape == (d, P, c)
            np.testing.assert_allclose(Z, Z_ref, rtol=rtol, atol=rtol * np.abs(Z_ref).max())
            np.testing.assert_allclose(G, G_ref, rtol=rtol, atol=rtol * np.abs(G_ref).max())


def test_problem_products_with_cached_float_masks_match_uint8_masks():
    rng = np.random.default_rng(1)
    n, d, P, c = 80, 5, 12, 2
    X = rng.standard_normal((n, d))
    D = (rng.random((n, P)) < 0.5).astype(np.uint8)
    U = rng.standard_normal((d, P, c))
    R = rng.standard_normal((n, c))
    small = GatedReLUProblem(X, D, R, "squared", 1.0)
    assert small._kernel_masks.dtype == np.float64 and small._kernel_data_t is not None
    big = GatedReLUProblem(X, D, R, "squared", 1.0)
    big.FLOAT_MASK_BYTES = 0                         # instance override: keep uint8 masks
    assert big._kernel_masks.dtype == np.uint8 and big._kernel_data_t is None
    np.testing.assert_allclose(small.apply(U), big.apply(U), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(small.adjoint(R), big.adjoint(R), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_float32_solve_matches_float64(loss):
    X, y = _small()
    if loss == "squared":
        y = np.where(y == y.max(), 1.0, -1.0)
    kw = dict(formulation="gated", loss=loss, n_gates=40, random_state=0, alpha=1e-2,
              classification=True)
    ref = cvxnn.solve(X, y, tol=1e-8, **kw)
    r32 = cvxnn.solve(X, y, dtype="float32", tol=1e-4, **kw)
    assert r32.solver == "fista"
    # the certificate is recomputed in float64 and bounds the true suboptimality
    assert r32.relative_gap <= 1e-4
    assert r32.objective - ref.objective <= r32.gap + 1e-9
    assert abs(r32.objective - ref.objective) <= 1e-4 * ref.objective
    assert r32.weights["U"].dtype == np.float64


def test_float32_solve_leaves_out_all_zero_features_exactly():
    """Blank features (like MNIST's border pixels) are left out of the float32 products:
    the weights come back with every feature row, zero on the blank ones, and the
    float64 certificate of the full problem holds; interrupted solves too."""
    X, y = _small()
    Xz = np.insert(X, [0, 2], 0.0, axis=1)          # two all-zero columns
    kw = dict(formulation="gated", loss="logistic", n_gates=30, random_state=0, alpha=1e-2,
              classification=True)
    ref = cvxnn.solve(Xz, y, tol=1e-8, **kw)                  # float64: all columns
    r = cvxnn.solve(Xz, y, dtype="float32", tol=1e-5, **kw)
    U = r.weights["U"]
    assert U.shape[0] == Xz.shape[1] + 1 and U.dtype == np.float64
    np.testing.assert_array_equal(U[[0, 3]], 0.0)
    assert r.relative_gap <= 1e-5
    assert abs(r.objective - ref.objective) <= r.gap + 1e-9
    np.testing.assert_array_equal(ref.weights["U"][[0, 3]], 0.0)
    calls = []

    def stop_after_two(info):
        calls.append(info)
        return len(calls) >= 2          # the best iterate so far comes back

    s = cvxnn.solve(Xz, y, dtype="float32", tol=1e-12, callback=stop_after_two, **kw)
    assert s.stopped == "callback" and not s.converged
    assert s.weights["U"].shape == U.shape
    np.testing.assert_array_equal(s.weights["U"][[0, 3]], 0.0)
    assert s.network.objective(Xz, y, 1e-2) == pytest.approx(s.objective, rel=1e-9)
    assert s.objective - ref.objective <= s.gap + 1e-9


def test_dtype_and_device_errors():
    X, y = _small(n=60)
    with pytest.raises(ValueError, match="dtype"):
        cvxnn.solve(X, y, dtype="float16", formulation="gated")
    with pytest.raises(ValueError, match="float32"):
        cvxnn.solve(X, y, dtype="float32", formulation="relu")
    with pytest.raises(ValueError, match="time_limit"):
        cvxnn.solve(X, y, formulation="gated", solver="fista", time_limit=-1)


torch = pytest.importorskip("torch")


def test_torch_problem_products_match_numpy():
    X, y = _small(n=120)
    Xa = augment(X, True)
    G = sample_gates(X, 15, bias=True, random_state=1)
    D = compute_masks(X, G, bias=True)
    Y, _ = encode_targets(y, "cross_entropy", True)
    from cvxnn.torch_backend import TorchGatedProblem

    ref = GatedReLUProblem(Xa, D, Y, "cross_entropy", 1e-3)
    tp = TorchGatedProblem(Xa, D, Y, "cross_entropy", 1e-3, device="cpu", dtype="float64",
                           chunk_elements=100)  # many chunks
    rng = np.random.default_rng(2)
    U = rng.standard_normal(ref.shape)
    R = rng.standard_normal((Xa.shape[0], Y.shape[1]))
    np.testing.assert_allclose(tp.apply(tp.asweights(U)), ref.apply(U), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tp.to_numpy(tp.adjoint(R)), ref.adjoint(R), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tp.to_numpy(tp.prox(tp.asweights(U), 0.3)), ref.prox(U, 0.3),
                               rtol=1e-12, atol=1e-14)
    assert tp.objective(tp.asweights(U)) == pytest.approx(ref.objective(U), rel=1e-12)
    assert tp.gap(tp.asweights(U)).gap == pytest.approx(ref.gap(U).gap, rel=1e-10)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_cpu_solve_matches_numpy(dtype):
    X, y = _small(n=250)
    kw = dict(formulation="gated", loss="cross_entropy", n_gates=30, random_state=3, alpha=1e-2)
    ref = cvxnn.solve(X, y, tol=1e-8, **kw)
    tol = 1e-6 if dtype == "float64" else 1e-4
    res = cvxnn.solve(X, y, tol=tol, device="cpu", dtype=dtype, **kw)
    assert res.solver.startswith("fista[torch")
    assert res.relative_gap <= tol
    assert res.objective - ref.objective <= res.gap + 1e-9
    assert res.objective == pytest.approx(ref.objective, rel=2 * tol)
    np.testing.assert_array_equal(res.network.predict(X), res.network.predict(X))
    assert (res.network.predict(X) == ref.network.predict(X)).mean() > 0.97


def test_torch_warm_start_and_bad_device():
    X, y = _small(n=150)
    kw = dict(formulation="gated", n_gates=20, random_state=0, alpha=1e-2)
    first = cvxnn.solve(X, y, tol=1e-6, **kw)
    warm = cvxnn.solve(X, y, tol=1e-6, device="cpu", warm_start=first.weights, **kw)
    assert warm.n_iter <= 10
    with pytest.raises(ValueError, match="device"):
        cvxnn.solve(X, y, device="nonsense", **kw)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            cvxnn.solve(X, y, device="cuda", **kw)
    with pytest.raises(ValueError, match="device"):
        cvxnn.solve(X, y, device="cpu", formulation="relu")
