"""Reliability matrix (docs/reliability.md): bad input, numerical edge cases, memory
limits, files and determinism.  Each row of the table in the docs names its test here
(or in test_inputs.py / test_cli.py / test_network.py / test_control.py)."""

import hashlib
import os
import subprocess
import sys
import textwrap
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning

import cvxnn
from cvxnn.memory import InsufficientMemoryError, estimate_memory, parse_bytes
from cvxnn.patterns import arrangement_count

rng = np.random.default_rng(0)
X = rng.standard_normal((30, 3))
y = X[:, 0] - np.abs(X[:, 1])
labels = np.where(X[:, 0] > 0, "yes", "no")

cvxpy = pytest.importorskip("cvxpy")


def clarabel_objective(Xd, yd, alpha, gates, formulation="gated", loss="squared", bias=True):
    """Independent optimum over the same gates (cvxpy + Clarabel)."""
    r = cvxnn.solve(Xd, yd, alpha, formulation=formulation, loss=loss, gates=gates, bias=bias,
                    solver="clarabel")
    return r.objective


def solve(Xd, yd, alpha=1e-3, formulation="gated", **kw):
    kw.setdefault("n_gates", 20)
    kw.setdefault("random_state", 0)
    if formulation == "relu":
        kw.setdefault("patterns", "sampled")
    return cvxnn.solve(Xd, yd, alpha, formulation=formulation, **kw)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("formulation", ["gated", "relu"])
@pytest.mark.parametrize("Xbad, ybad, err, match", [
    (np.zeros((0, 3)), np.zeros(0), ValueError, "X has 0 sample"),
    (X[:1], y[:1], ValueError, "X has 1 sample"),
    (X[:, :, None], y, ValueError, "X must be a 2-D array"),
    (X, np.stack([y, y, y], 1)[:, :, None], ValueError, "y must be 1-D"),
    (X, y[:-3], ValueError, "inconsistent numbers of samples"),
    (X, np.array(["a", 1] * 15, dtype=object), TypeError, "mixes label types"),
    (X, np.array(["a"] * 30), ValueError, "single class"),
])
def test_bad_input_names_the_argument(formulation, Xbad, ybad, err, match):
    with pytest.raises(err, match=match):
        solve(Xbad, ybad, formulation=formulation)


@pytest.mark.parametrize("alpha, match", [(-1e-3, "alpha must be a finite number >= 0"),
                                          (0.0, "alpha must be > 0"),
                                          ("0.1", "alpha must be a non-negative real")])
def test_bad_alpha_names_the_argument(alpha, match):
    with pytest.raises((ValueError, TypeError), match=match):
        solve(X, y, alpha)


@pytest.mark.parametrize("formulation", ["gated", "relu"])
def test_two_samples_one_feature_constant_and_duplicate_columns(formulation):
    """Degenerate but valid data give the Clarabel optimum over the same gates."""
    cases = {
        "two samples": (X[:2], y[:2]),
        "one feature": (X[:, :1], y),
        "constant column": (np.c_[X, np.full(30, 3.0)], y),
        "duplicate column": (np.c_[X, X[:, 1]], y),
        "duplicate rows": (np.r_[X, X[:7]], np.r_[y, y[:7]]),
        "integer X": (np.round(3 * X).astype(np.int64), y),
    }
    for name, (Xc, yc) in cases.items():
        r = solve(Xc, yc, 1e-2, formulation=formulation, tol=1e-8)
        ref = clarabel_objective(Xc, yc, 1e-2, r.gates, formulation)
        assert r.relative_gap <= 1e-6, name
        assert abs(r.objective - ref) <= 1e-6 * max(1.0, abs(ref)), (name, r.objective, ref)
        assert np.isclose(r.network.objective(Xc, yc, 1e-2), r.objective, rtol=1e-8), name


def test_gates_that_activate_nothing_are_refused():
    """A sampled gate with the all-zero pattern is dropped; if none is left, say so."""
    Xz = np.random.default_rng(1).standard_normal((4, 1)) * 0.01
    assert cvxnn.sample_gates(Xz, 1, random_state=1).shape[1] == 0
    with pytest.raises(ValueError, match="no activation pattern.*n_gates=1"):
        cvxnn.solve(Xz, np.arange(4.0), 1e-2, formulation="gated", n_gates=1, random_state=1)


def test_more_gates_than_patterns_exist():
    """One feature plus bias has at most 2n patterns: asking for 500 gates keeps the
    distinct ones (never more than exist) and solves on them."""
    x = X[:, :1]
    r = solve(x, y, 1e-2, n_gates=500)
    assert r.gates.shape[1] <= arrangement_count(30, 2)      # [x, 1] has rank 2
    D = cvxnn.compute_masks(x, r.gates)
    assert len({col.tobytes() for col in D.T}) == D.shape[1]      # all distinct


def test_huge_alpha_above_alpha_max_gives_the_zero_network():
    for formulation in ("gated", "relu"):
        r = solve(X, y, 1e6, formulation=formulation)
        assert r.n_active == 0 and r.relative_gap <= 1e-12
        np.testing.assert_array_equal(r.network.predict(X), 0.0)


@pytest.mark.parametrize("scale", [1e6, 1e30])
def test_float32_input_with_large_values(scale):
    """float32 data are solved in float64; the answer is the optimum or says it is not."""
    Xl = (X * scale).astype(np.float32)
    assert np.all(np.isfinite(Xl))
    yl = y * scale ** 0.5
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        r = solve(Xl, yl, 1e-3)
    assert np.isfinite(r.objective)
    warned = any(issubclass(w.category, ConvergenceWarning) for w in rec)
    assert r.relative_gap <= 1e-6 or warned
    if r.relative_gap <= 1e-6:
        ref = clarabel_objective(Xl.astype(float), yl, 1e-3, r.gates)
        assert abs(r.objective - ref) <= 1e-5 * abs(ref)


# ----------------------------------------------------------------------- numerical edge cases
@pytest.mark.parametrize("formulation", ["gated", "relu"])
def test_rank_deficient_data(formulation):
    Xr = np.c_[X, X[:, 0] + 2 * X[:, 1], -X[:, 2]]
    r = solve(Xr, y, 1e-3, formulation=formulation, tol=1e-8)
    ref = clarabel_objective(Xr, y, 1e-3, r.gates, formulation)
    assert abs(r.objective - ref) <= 1e-6 * abs(ref)


@pytest.mark.parametrize("formulation", ["gated", "relu"])
def test_badly_scaled_columns_never_give_a_false_certificate(formulation):
    """Column scales 1e-3 .. 1e6: either the certified optimum, or a warning with the gap."""
    Xs = X * np.array([1e-3, 1.0, 1e6])
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        r = solve(Xs, y, 1e-3, formulation=formulation)
    ref = clarabel_objective(Xs, y, 1e-3, r.gates, formulation)
    if r.converged and r.relative_gap <= 1e-6:
        assert r.objective - ref <= 1e-5 * abs(ref) + 1e-9
    else:
        assert any(issubclass(w.category, ConvergenceWarning) for w in rec)
    # whatever happened, the reported gap bounds the true suboptimality
    if np.isfinite(r.gap):
        assert r.objective - ref <= r.gap + 1e-6 * abs(ref)


def test_search_that_cannot_certify_warns():
    """The default relu pattern search warns when its gap stays above tol."""
    Xs = X * np.array([1e-3, 1.0, 1e6])
    with pytest.warns(ConvergenceWarning, match="patterns='search'"):
        r = cvxnn.solve(Xs, y, 1e-3, n_gates=10, random_state=0, tol=1e-12,
                        search_options={"max_rounds": 1, "max_unit_rounds": 1})
    assert not r.converged


def test_ties_in_gate_products_are_inactive_and_solved_exactly():
    """Rows with x^T g = 0 exactly are off (strict >), and the program is still exact."""
    Xt = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [1.0, 1.0], [2.0, -1.0], [-1.0, 2.0],
                   [0.5, 0.5], [-2.0, -1.0]])
    yt = np.array([1.0, -1.0, 0.5, 0.0, 2.0, -0.5, 0.3, 1.0])
    G = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, -1.0], [0.0, 0.0, 0.0]])   # ties on rows 1/2/3
    D = cvxnn.compute_masks(Xt, G)
    assert not D[1, 0] and not D[0, 1] and not D[3, 2]
    for formulation in ("gated", "relu"):
        r = cvxnn.solve(Xt, yt, 1e-2, formulation=formulation, gates=G, tol=1e-9)
        ref = clarabel_objective(Xt, yt, 1e-2, G, formulation)
        assert abs(r.objective - ref) <= 1e-6 * abs(ref)


def test_near_duplicate_patterns():
    """Gates whose patterns differ in one sample: distinct blocks, exact optimum."""
    g = np.array([1.0, 0.3, 0.0])
    x0 = X[np.argmin(np.abs(X[:, :2] @ g[:2]))]
    t = -(x0[:2] @ g[:2])
    G = np.stack([np.r_[g[:2], t + 1e-9], np.r_[g[:2], t - 1e-9], g], axis=1)
    D = cvxnn.compute_masks(X[:, :2], G)
    assert np.sum(D[:, 0] != D[:, 1]) == 1
    for formulation in ("gated", "relu"):
        r = cvxnn.solve(X[:, :2], y, 1e-3, formulation=formulation, gates=G, tol=1e-9)
        ref = clarabel_objective(X[:, :2], y, 1e-3, G, formulation)
        assert abs(r.objective - ref) <= 1e-6 * abs(ref)


@settings(max_examples=int(os.environ.get("CVXNN_HYPOTHESIS_EXAMPLES", 30)), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 31 - 1), n=st.integers(4, 14), d=st.integers(1, 3),
       P=st.integers(1, 6), log_alpha=st.floats(-4, -0.5),
       formulation=st.sampled_from(["gated", "relu"]),
       loss=st.sampled_from(["squared", "logistic"]), max_iter=st.integers(1, 40),
       scale=st.sampled_from([1.0, 1e-2, 1e3]))
def test_reported_gap_bounds_the_true_suboptimality(seed, n, d, P, log_alpha, formulation,
                                                     loss, max_iter, scale):
    """Property: for any returned point (converged or stopped early), the reported gap is
    at least its distance to the Clarabel optimum over the same patterns."""
    r_ = np.random.default_rng(seed)
    Xh = r_.standard_normal((n, d)) * scale
    yh = r_.standard_normal(n) if loss == "squared" else np.r_[0, 1, r_.integers(0, 2, n - 2)]
    alpha = 10.0 ** log_alpha
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            r = cvxnn.solve(Xh, yh, alpha, formulation=formulation, loss=loss, n_gates=P,
                            random_state=seed, max_iter=max_iter, patterns="sampled")
        except ValueError as err:       # every sampled gate has the all-zero pattern
            assert "no activation pattern" in str(err)
            return
        ref = clarabel_objective(Xh, yh, alpha, r.gates, formulation, loss)
    if not np.isfinite(r.gap):          # an infeasible relu iterate certifies nothing...
        assert not r.converged          # ...and does not claim to
        return
    assert r.objective - ref <= r.gap + 1e-6 * max(abs(ref), 1e-3)
    assert r.network.objective(Xh, yh, alpha) == pytest.approx(r.objective, rel=1e-8, abs=1e-12)


# ------------------------------------------------------------------------------- memory
def test_memory_estimate_bounds_the_traced_peak():
    r_ = np.random.default_rng(1)
    for n, d, P, form, loss in [(3000, 12, 120, "gated", "squared"),
                                (2000, 8, 40, "gated", "logistic"),
                                (500, 6, 30, "relu", "squared")]:
        Xm = r_.standard_normal((n, d))
        ym = Xm[:, 0] - np.abs(Xm[:, 1]) if loss == "squared" else (Xm[:, 0] > 0).astype(int)
        tracemalloc.start()
        try:
            res = cvxnn.solve(Xm, ym, 1e-3, formulation=form, loss=loss, n_gates=P,
                              random_state=0, patterns="sampled")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        est = estimate_memory(n, d, res.gates.shape[1], 1, formulation=form)
        assert peak <= est.total, (n, d, P, form, peak, est)


def test_solve_refuses_a_problem_over_the_memory_limit():
    Xm = np.random.default_rng(2).standard_normal((4000, 50))
    ym = Xm[:, 0]
    with pytest.raises(InsufficientMemoryError, match=r"n_gates=\d+ fits") as info:
        cvxnn.solve(Xm, ym, 1e-3, formulation="gated", n_gates=400, random_state=0,
                    memory_limit="150MB")
    assert isinstance(info.value, MemoryError)
    assert info.value.estimate.total > info.value.limit == 150_000_000
    # the suggested number of gates does fit
    fit = int(str(info.value).split("n_gates=")[1].split()[0])
    assert estimate_memory(4000, 50, fit, formulation="gated").total <= 150_000_000
    r = cvxnn.solve(Xm[:300], ym[:300], 1e-2, formulation="gated", n_gates=10, random_state=0,
                    memory_limit="150MB")
    assert r.relative_gap <= 1e-6


def test_memory_limit_from_environment_and_disabled(monkeypatch):
    Xm = np.random.default_rng(2).standard_normal((400, 10))
    monkeypatch.setenv("CVXNN_MEMORY_LIMIT", "1MB")
    with pytest.raises(InsufficientMemoryError, match="CVXNN_MEMORY_LIMIT"):
        cvxnn.solve(Xm, Xm[:, 0], 1e-2, formulation="gated", n_gates=10, random_state=0)
    r = cvxnn.solve(Xm, Xm[:, 0], 1e-2, formulation="gated", n_gates=10, random_state=0,
                    memory_limit=False)
    assert r.relative_gap <= 1e-6
    with pytest.raises(ValueError, match="memory_limit"):
        cvxnn.solve(Xm, Xm[:, 0], 1e-2, memory_limit="lots")
    assert parse_bytes("2 GiB") == 2 ** 31 and parse_bytes(1e9) == 10 ** 9


# ---------------------------------------------------------------------------- files
def test_interrupted_save_leaves_no_file(tmp_path, monkeypatch):
    net = cvxnn.TwoLayerReLU(np.ones((2, 3)), np.zeros(2), np.ones(2))
    target = tmp_path / "model.npz"

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(KeyboardInterrupt):
        net.save(target)
    assert list(tmp_path.iterdir()) == []          # neither the model nor a temporary


# ------------------------------------------------------------------------- determinism
_DETERMINISM = textwrap.dedent("""
    import hashlib, numpy as np, cvxnn
    rng = np.random.default_rng(5)
    X = rng.standard_normal((60, 4)); y = X[:, 0] - np.abs(X[:, 1])
    h = hashlib.sha256()
    for kw in (dict(formulation="gated"), dict(formulation="relu", patterns="sampled"),
               dict(formulation="relu", search_options={"max_rounds": 1})):
        r = cvxnn.solve(X, y, 1e-2, n_gates=15, random_state=11, **kw)
        for a in (r.network.W1, r.network.b1, r.network.W2, r.gates):
            h.update(np.ascontiguousarray(a).tobytes())
    print(h.hexdigest())
""")


def test_same_random_state_is_bit_identical_across_processes():
    env = dict(os.environ, PYTHONHASHSEED="random")
    runs = [subprocess.run([sys.executable, "-c", _DETERMINISM], capture_output=True, text=True,
                           env=env, timeout=600) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    assert runs[0].stdout.strip() == runs[1].stdout.strip() != ""


@pytest.mark.parametrize("formulation", ["gated", "relu"])
def test_estimator_and_solve_give_bit_identical_networks(formulation):
    from cvxnn import ConvexReLURegressor

    kw = dict(formulation=formulation, n_gates=15, random_state=4, tol=1e-7)
    est = ConvexReLURegressor(alpha=1e-2, **kw).fit(X, y)
    extra = {"patterns": est.patterns} if hasattr(est, "patterns") else {}
    r = cvxnn.solve(X, y, 1e-2, **kw, **extra)
    for a, b in ((est.network_.W1, r.network.W1), (est.network_.W2, r.network.W2),
                 (est.network_.b1, r.network.b1)):
        assert hashlib.sha256(np.ascontiguousarray(a).tobytes()).digest() == \
            hashlib.sha256(np.ascontiguousarray(b).tobytes()).digest()
