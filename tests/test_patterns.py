"""Tests for cvxnn.patterns: exact enumeration, sampling, masks, validation."""

import sys
import warnings

import numpy as np
import pytest

from cvxnn._data import augment
from cvxnn.patterns import (
    _cells_lp,
    arrangement_count,
    compute_masks,
    enumerate_patterns,
    sample_gates,
    unique_patterns,
)

DATA_DIR = "/work/shared/data"


# ----------------------------------------------------------------------------
# helpers


def mask_set(X, G, bias):
    D = compute_masks(X, G, bias=bias)
    return {col.tobytes() for col in D.T}


def assert_interior_and_distinct(X, G, bias, thresh=1e-10):
    """Each gate is strictly inside its cell, and no two gates share a mask."""
    Xa = augment(np.asarray(X, float), bias)
    vals = Xa @ G
    row = np.linalg.norm(Xa, axis=1)
    nz = row > 0
    rel = np.abs(vals[nz]) / (row[nz, None] * np.linalg.norm(G, axis=0))
    assert rel.min() > thresh
    D = vals > 0
    assert unique_patterns(D)[0].shape[1] == D.shape[1]


def has_zero_pattern(X, G, bias):
    return bool((~compute_masks(X, G, bias=bias).any(axis=0)).any())


@pytest.fixture(scope="module")
def pima_pcs():
    sys.path.insert(0, DATA_DIR)
    try:
        from load import load

        with warnings.catch_warnings():  # the loader's pandas call may warn
            warnings.simplefilter("ignore")
            X, _ = load("pima")
    except Exception as exc:  # pragma: no cover - data folder missing
        pytest.skip(f"pima data not available: {exc}")
    finally:
        sys.path.remove(DATA_DIR)
    X = X[:60]
    Xc = X - X.mean(axis=0)
    _, _, Vt = np.linalg.svd(Xc, full_matrices=False)
    return Xc @ Vt[:3].T  # scores on the 3 leading principal components


# ----------------------------------------------------------------------------
# arrangement_count


@pytest.mark.parametrize(
    "n, r, expected",
    [(10, 2, 20), (10, 3, 92), (12, 4, 464), (7, 2, 14), (8, 8, 256), (3, 5, 8), (5, 1, 2),
     (0, 3, 1), (4, 0, 1)],
)
def test_arrangement_count_values(n, r, expected):
    assert arrangement_count(n, r) == expected


@pytest.mark.parametrize("n, r", [(-1, 2), (3, -1), (2.5, 2), (True, 2), (3, "2")])
def test_arrangement_count_rejects_bad_input(n, r):
    with pytest.raises(ValueError, match=r"\b(n|r) must be"):
        arrangement_count(n, r)


# ----------------------------------------------------------------------------
# enumerate_patterns: counts on data in general position


@pytest.mark.parametrize(
    "n, d, bias, r",
    [
        (7, 1, True, 2),  # 1-D with bias: 2n = 14
        (10, 2, False, 2),  # 20
        (10, 3, False, 3),  # 92
        (30, 3, False, 3),  # 872
        (12, 2, True, 3),  # d = 2 with bias: rank 3
        (12, 4, False, 4),  # 464
        (5, 6, False, 5),  # n <= d: every sign vector, 2^5
        (100, 3, False, 3),  # 9902, the size that must stay fast
    ],
)
def test_count_general_position(n, d, bias, r):
    X = np.random.default_rng(n + 100 * d).standard_normal((n, d))
    assert np.linalg.matrix_rank(augment(X, bias)) == r
    G = enumerate_patterns(X, bias=bias, include_zero=True)
    assert G.shape == (d + bias, arrangement_count(n, r))
    assert G.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(G, axis=0), 1.0)
    assert_interior_and_distinct(X, G, bias)
    G0 = enumerate_patterns(X, bias=bias)
    zero = has_zero_pattern(X, G, bias)
    assert G0.shape[1] == G.shape[1] - zero
    assert not has_zero_pattern(X, G0, bias)
    assert mask_set(X, G0, bias) <= mask_set(X, G, bias)
    if bias:  # the gate (0, ..., 0, -1) is inactive everywhere
        assert zero


def test_count_1d_bias_exact_2n():
    X = np.random.default_rng(0).standard_normal((7, 1))
    assert enumerate_patterns(X, include_zero=True).shape == (2, 14)
    assert enumerate_patterns(X).shape == (2, 13)
    # every pattern is a threshold pattern: sorted by x it is monotone
    D = compute_masks(X, enumerate_patterns(X, include_zero=True))
    Ds = D[np.argsort(X[:, 0])].astype(int)
    assert np.all((np.diff(Ds, axis=0) >= 0).all(axis=0) | (np.diff(Ds, axis=0) <= 0).all(axis=0))


@pytest.mark.parametrize("q, bias, r", [(2, False, 2), (2, True, 3), (3, False, 3), (1, True, 2)])
def test_count_real_data_principal_components(pima_pcs, q, bias, r):
    X = pima_pcs[:, :q]
    n = X.shape[0]
    assert np.linalg.matrix_rank(augment(X, bias)) == r
    G = enumerate_patterns(X, bias=bias, include_zero=True)
    assert G.shape[1] == arrangement_count(n, r)
    assert_interior_and_distinct(X, G, bias)
    G0 = enumerate_patterns(X, bias=bias)
    assert G0.shape[1] == G.shape[1] - has_zero_pattern(X, G, bias)


# ----------------------------------------------------------------------------
# enumerate_patterns against sampling and against the LP reference


@pytest.mark.parametrize("n, d, bias", [(10, 2, False), (7, 1, True), (20, 1, True)])
def test_sampling_finds_all_patterns_in_small_cases(n, d, bias):
    X = np.random.default_rng(1).standard_normal((n, d))
    exact = mask_set(X, enumerate_patterns(X, bias=bias), bias)
    sampled = mask_set(X, sample_gates(X, 20000, bias=bias, random_state=0), bias)
    assert sampled == exact


@pytest.mark.parametrize("n, d, bias", [(10, 3, False), (30, 3, False), (15, 2, True), (12, 4, False)])
def test_sampling_finds_a_subset(n, d, bias):
    X = np.random.default_rng(2).standard_normal((n, d))
    exact = mask_set(X, enumerate_patterns(X, bias=bias), bias)
    sampled = mask_set(X, sample_gates(X, 20000, bias=bias, random_state=3), bias)
    assert sampled <= exact
    assert len(sampled) > 0.5 * len(exact)


@pytest.mark.parametrize("q, bias", [(2, True), (3, False)])
def test_sampling_subset_real_data(pima_pcs, q, bias):
    X = pima_pcs[:, :q]
    exact = mask_set(X, enumerate_patterns(X, bias=bias), bias)
    sampled = mask_set(X, sample_gates(X, 20000, bias=bias, random_state=0), bias)
    assert sampled <= exact


def _degenerate_cases():
    grid = np.array([(i, j) for i in range(3) for j in range(3)], float)  # collinear triples
    rng = np.random.default_rng(4)
    x1, x2, x3 = rng.standard_normal((3, 3))
    parallel = np.array([x1, x2, 2 * x1, -x1, x3, x3, -0.5 * x2, np.zeros(3)])
    dup_1d = np.array([[0.0], [0.0], [1.0], [1.0], [2.0], [-1.5]])
    return [
        ("grid+bias", grid, True),
        ("duplicated grid+bias", np.vstack([grid, grid[:4]]), True),
        ("parallel rows", parallel, False),
        ("repeated 1-D values", dup_1d, True),
    ]


@pytest.mark.parametrize("name, X, bias", _degenerate_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_degenerate_data_matches_lp_reference(name, X, bias):
    Xa = augment(X, bias)
    G = enumerate_patterns(X, bias=bias, include_zero=True)
    assert_interior_and_distinct(X, G, bias)
    reference = {col.tobytes() for col in (Xa @ _cells_lp(Xa).T > 0).T}
    assert mask_set(X, G, bias) == reference
    sampled = mask_set(X, sample_gates(X, 5000, bias=bias, random_state=0), bias)
    assert sampled <= reference


def test_degenerate_counts():
    # repeated 1-D values: 4 distinct values -> 2 * 4 cells
    X = np.array([[0.0], [0.0], [1.0], [1.0], [2.0], [-1.5]])
    assert enumerate_patterns(X, include_zero=True).shape[1] == 8
    # 3 distinct hyperplanes in R^3 (plus parallel copies and a zero row): 8 orthant-like cells
    rng = np.random.default_rng(5)
    x1, x2, x3 = rng.standard_normal((3, 3))
    X = np.array([x1, x2, 2 * x1, -x1, x3, x3, np.zeros(3)])
    G = enumerate_patterns(X, bias=False, include_zero=True)
    assert G.shape[1] == 8
    assert not compute_masks(X, G, bias=False)[-1].any()  # a zero row is never active
    # antiparallel rows make the all-zero pattern impossible
    assert not has_zero_pattern(X, G, bias=False)


def test_rank_one_and_zero_data():
    x = np.array([[1.0], [-2.0], [3.0]])
    G = enumerate_patterns(x, bias=False, include_zero=True)
    expected = {np.array(m, dtype=bool).tobytes() for m in ([1, 0, 1], [0, 1, 0])}
    assert mask_set(x, G, False) == expected
    xp = np.abs(x)  # all on one side: one of the two cells is the all-zero pattern
    assert enumerate_patterns(xp, bias=False, include_zero=True).shape == (1, 2)
    assert enumerate_patterns(xp, bias=False).shape == (1, 1)
    Z = np.zeros((4, 3))
    assert enumerate_patterns(Z, bias=False).shape == (3, 0)
    G = enumerate_patterns(Z, bias=False, include_zero=True)
    assert G.shape == (3, 1) and not compute_masks(Z, G, bias=False).any()


@pytest.mark.parametrize("bias", [False, True])
def test_enumeration_ignores_column_scaling(bias):
    # X M has the same cells as X (up to the map M), whatever the conditioning
    X = np.random.default_rng(15).standard_normal((30, 3))
    scale = np.array([1e6, 1e-6, 1.0])
    G = enumerate_patterns(X, bias=bias)
    Gs = enumerate_patterns(X * scale, bias=bias)
    assert G.shape[1] == arrangement_count(30, 3 + bias) - bias  # zero cell only with bias
    assert mask_set(X * scale, Gs, bias) == mask_set(X, G, bias)


def test_1d_with_bias_large_n_is_fast():
    x = np.linspace(-3.0, 5.0, 5000)[:, None]
    G = enumerate_patterns(x, include_zero=True)  # angular sweep, O(n log n)
    assert G.shape == (2, 10000)


def test_enumeration_is_deterministic():
    X = np.random.default_rng(6).standard_normal((20, 3))
    np.testing.assert_array_equal(enumerate_patterns(X), enumerate_patterns(X))


def test_max_patterns_exceeded_raises():
    X = np.random.default_rng(7).standard_normal((50, 5))  # with bias: rank 6
    with pytest.raises(ValueError, match="max_patterns=100000") as info:
        enumerate_patterns(X)
    assert "sample_gates" in str(info.value) and "rank r=6" in str(info.value)
    X = np.random.default_rng(8).standard_normal((10, 2))
    with pytest.raises(ValueError, match="max_patterns=19"):
        enumerate_patterns(X, bias=False, max_patterns=19)
    assert enumerate_patterns(X, bias=False, include_zero=True, max_patterns=20).shape[1] == 20


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_patterns": 0}, "max_patterns must be a positive integer"),
        ({"max_patterns": 10.5}, "max_patterns must be a positive integer"),
        ({"tol": -1.0}, "tol must be"),
        ({"tol": float("nan")}, "tol must be"),
    ],
)
def test_enumerate_rejects_bad_parameters(kwargs, match):
    X = np.random.default_rng(9).standard_normal((5, 2))
    with pytest.raises(ValueError, match=match):
        enumerate_patterns(X, **kwargs)


def test_enumerate_rejects_bad_flags_and_data():
    X = np.random.default_rng(9).standard_normal((5, 2))
    with pytest.raises(TypeError, match="include_zero"):
        enumerate_patterns(X, include_zero="yes")
    with pytest.raises(TypeError, match="bias"):
        enumerate_patterns(X, bias=1)
    with pytest.raises(ValueError, match="X"):
        enumerate_patterns(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="X"):
        enumerate_patterns(np.ones(3))


# ----------------------------------------------------------------------------
# sample_gates


def test_sample_gates_shape_and_properties():
    X = np.random.default_rng(10).standard_normal((25, 3))
    G = sample_gates(X, 300, random_state=0)
    assert G.shape[0] == 4 and 0 < G.shape[1] <= 300
    D = compute_masks(X, G)
    assert D.any(axis=0).all()  # no all-zero pattern
    assert unique_patterns(D)[0].shape[1] == D.shape[1]
    G = sample_gates(X, 300, bias=False, random_state=0)
    assert G.shape[0] == 3


def test_sample_gates_reproducible():
    X = np.random.default_rng(11).standard_normal((30, 4))
    a = sample_gates(X, 200, random_state=42)
    np.testing.assert_array_equal(a, sample_gates(X, 200, random_state=42))
    np.testing.assert_array_equal(a, sample_gates(X, 200, random_state=np.random.RandomState(42)))
    b = sample_gates(X, 200, random_state=43)
    assert a.shape != b.shape or not np.array_equal(a, b)
    g1 = sample_gates(X, 200, random_state=np.random.default_rng(5))
    g2 = sample_gates(X, 200, random_state=np.random.default_rng(5))
    np.testing.assert_array_equal(g1, g2)


def test_sample_gates_keeps_first_gate_of_each_pattern():
    X = np.random.default_rng(12).standard_normal((6, 2))  # few patterns, many repeats
    n_gates, seed = 500, 3
    G = sample_gates(X, n_gates, random_state=seed)
    drawn = np.random.RandomState(seed).standard_normal((n_gates, 3)).T
    masks = compute_masks(X, drawn)
    expected, seen = [], set()
    for i in range(n_gates):
        key = masks[:, i].tobytes()
        if masks[:, i].any() and key not in seen:
            seen.add(key)
            expected.append(i)
    assert len(expected) < n_gates / 10  # the dedup really had work to do
    np.testing.assert_array_equal(G, drawn[:, expected])


@pytest.mark.parametrize("bad", [0, -3, 2.5, "10", True, None])
def test_sample_gates_rejects_bad_n_gates(bad):
    X = np.ones((4, 2))
    with pytest.raises(ValueError, match="n_gates must be a positive integer"):
        sample_gates(X, bad)


def test_sample_gates_rejects_bad_random_state():
    with pytest.raises(ValueError, match="random_state"):
        sample_gates(np.ones((4, 2)), 10, random_state="seed")


# ----------------------------------------------------------------------------
# compute_masks


def test_compute_masks_gate_row_conventions():
    rng = np.random.default_rng(13)
    X = rng.standard_normal((8, 3))
    G_full = rng.standard_normal((4, 5))
    D = compute_masks(X, G_full)
    assert D.dtype == bool and D.shape == (8, 5)
    np.testing.assert_array_equal(D, np.hstack([X, np.ones((8, 1))]) @ G_full > 0)
    G_d = rng.standard_normal((3, 5))  # d rows with bias=True: zero bias component
    np.testing.assert_array_equal(compute_masks(X, G_d), X @ G_d > 0)
    np.testing.assert_array_equal(
        compute_masks(X, G_d), compute_masks(X, np.vstack([G_d, np.zeros((1, 5))]))
    )
    np.testing.assert_array_equal(compute_masks(X, G_d, bias=False), X @ G_d > 0)
    assert compute_masks(X, np.zeros((4, 0))).shape == (8, 0)


def test_compute_masks_strict_inequality():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    D = compute_masks(X, np.array([[1.0], [0.0]]), bias=False)
    np.testing.assert_array_equal(D[:, 0], [True, False, False])


@pytest.mark.parametrize(
    "G, bias",
    [
        (np.ones((4, 2)), False),  # d + 1 rows without bias
        (np.ones((5, 2)), True),  # d + 2 rows
        (np.ones((2, 2)), True),  # too few rows
        (np.ones(3), True),  # 1-D
        (np.ones((3, 2, 1)), True),  # 3-D
        (np.array([[np.nan], [0.0], [1.0]]), False),
        (np.array([["a"], ["b"], ["c"]]), False),
    ],
)
def test_compute_masks_rejects_bad_gates(G, bias):
    X = np.ones((4, 3))
    with pytest.raises(ValueError, match="gates"):
        compute_masks(X, G, bias=bias)


def test_compute_masks_error_states_expected_shapes():
    with pytest.raises(ValueError, match=r"\(3, P\) or \(4, P\)"):
        compute_masks(np.ones((4, 3)), np.ones((7, 2)))


# ----------------------------------------------------------------------------
# unique_patterns


def test_unique_patterns_keeps_first_occurrence():
    D = np.array([[1, 0, 1, 1, 0], [0, 1, 0, 1, 1], [1, 1, 1, 0, 1]], dtype=bool)
    Du, idx = unique_patterns(D)
    np.testing.assert_array_equal(idx, [0, 1, 3])
    np.testing.assert_array_equal(Du, D[:, [0, 1, 3]])
    Du, idx = unique_patterns(D.astype(int))
    assert Du.dtype == bool and list(idx) == [0, 1, 3]
    Du, idx = unique_patterns(np.zeros((3, 0), bool))
    assert Du.shape == (3, 0) and idx.shape == (0,)


def test_unique_patterns_many_rows():
    rng = np.random.default_rng(14)
    base = rng.random((1001, 7)) > 0.5  # 1001 rows: packing is not byte aligned
    D = base[:, [3, 0, 3, 6, 0, 1, 6, 2]]
    _, idx = unique_patterns(D)
    np.testing.assert_array_equal(idx, [0, 1, 3, 5, 7])


@pytest.mark.parametrize("bad", [np.ones(3, bool), np.array([[0, 2]]), np.array([["a"]])])
def test_unique_patterns_rejects_bad_input(bad):
    with pytest.raises(ValueError, match="D must"):
        unique_patterns(bad)
