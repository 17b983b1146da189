"""End-to-end tests of cvxnn.solve against the cvxpy + Clarabel oracle."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine

import cvxnn
from cvxnn._data import augment, encode_targets
from cvxnn.patterns import compute_masks
from cvxnn.problems import GatedReLUProblem, ReLUProblem

from .conftest import load_table, standardize

pytest.importorskip("cvxpy")


def _subset(X, y, n, seed=0):
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(y), size=min(n, len(y)), replace=False)
    return X[idx], y[idx]


def _problem(name):
    """Small problems from scikit-learn and ../shared/data: (X, y, loss, alpha)."""
    if name == "diabetes":  # unscaled targets, tiny feature scales
        X, y = load_diabetes(return_X_y=True)
        X, y = _subset(X, y, 100)
        return X, y, "squared", 1e-2
    if name == "diabetes_badly_scaled":
        X, y = load_diabetes(return_X_y=True)
        X, y = _subset(X, y, 80, seed=1)
        X = X[:, :5] * np.array([1e3, 1.0, 1e-2, 10.0, 1.0])
        return X, y / 100.0, "squared", 1e-3
    if name == "pollen":
        X, y = load_table("529_pollen")
        X, y = _subset(X, y, 120)
        return X, y, "squared", 1e-2
    if name == "pima_logistic":
        X, y = load_table("pima")
        X, y = _subset(standardize(X), y, 120)
        return X, y, "logistic", 1e-2
    if name == "australian_logistic":
        X, y = load_table("australian")
        X, y = _subset(standardize(X), y, 100)
        return X, y, "logistic", 1e-3
    if name == "breast_cancer_squared":
        X, y = load_breast_cancer(return_X_y=True)
        X, y = _subset(standardize(X)[:, :10], y, 100)
        return X, np.where(y == 1, "benign", "malignant"), "squared", 1e-2
    if name == "iris_ce":
        X, y = load_iris(return_X_y=True)
        X, y = _subset(X, y, 90)
        return X, y, "cross_entropy", 1e-2
    if name == "wine_ce":
        X, y = load_wine(return_X_y=True)
        X, y = _subset(standardize(X)[:, :6], y, 90)
        return X, y, "cross_entropy", 1e-3
    if name == "ecoli_ce":
        X, y = load_table("ecoli")
        X, y = _subset(X, y, 100)
        return X, y, "cross_entropy", 1e-2
    if name == "haberman_unscaled":
        X, y = load_table("haberman")  # raw ages and years: unscaled, with a bias
        X, y = _subset(X, y, 100)
        return X, y, "logistic", 1e-2
    raise KeyError(name)


PROBLEMS = ["diabetes", "diabetes_badly_scaled", "pollen", "pima_logistic",
            "australian_logistic", "breast_cancer_squared", "iris_ce", "wine_ce",
            "ecoli_ce", "haberman_unscaled"]


@pytest.mark.parametrize("name", PROBLEMS)
@pytest.mark.parametrize("formulation", ["gated", "relu"])
def test_native_solver_matches_clarabel(name, formulation):
    X, y, loss, alpha = _problem(name)
    n_gates = 12 if formulation == "relu" else 20
    kw = dict(formulation=formulation, loss=loss, n_gates=n_gates, random_state=3,
              patterns="sampled")
    ref = cvxnn.solve(X, y, alpha, solver="clarabel", tol=1e-4, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the native solver must converge
        res = cvxnn.solve(X, y, alpha, tol=1e-7, **kw)
    assert np.array_equal(res.gates, ref.gates)
    rel = abs(res.objective - ref.objective) / abs(ref.objective)
    assert rel <= 1e-6, (name, formulation, res.objective, ref.objective)
    assert res.relative_gap <= 1e-7
    # the certificate bounds the true suboptimality (oracle optimum up to its own accuracy)
    assert res.gap >= res.objective - ref.objective - 1e-9 * abs(ref.objective)
    # the recovered network's weight-decay objective equals the convex objective
    net_obj = res.network.objective(X, y, alpha)
    assert abs(net_obj - res.objective) <= 1e-8 * abs(res.objective)
    if formulation == "relu":
        assert res.constraint_violation <= 1e-6


@pytest.mark.parametrize("formulation", ["gated", "relu"])
def test_reference_certificate_is_tight(formulation):
    X, y, loss, alpha = _problem("pima_logistic")
    res = cvxnn.solve(X, y, alpha, formulation=formulation, loss=loss, n_gates=10,
                      solver="clarabel", random_state=0)
    assert res.relative_gap <= 1e-6
    assert res.network.objective(X, y, alpha) == pytest.approx(res.objective, rel=1e-8)


def test_gap_is_valid_upper_bound_during_iterations():
    """Stopping early gives a gap that still bounds the suboptimality."""
    X, y, loss, alpha = _problem("diabetes")
    ref = cvxnn.solve(X, y, alpha, formulation="gated", solver="clarabel", n_gates=20,
                      random_state=0)
    for max_iter in (1, 3, 10):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = cvxnn.solve(X, y, alpha, formulation="gated", n_gates=20, random_state=0,
                              max_iter=max_iter, tol=1e-12)
        assert res.gap >= res.objective - ref.objective - 1e-9 * ref.objective


def test_gates_argument_reproduces_problem_and_bias_rows():
    X, y, loss, alpha = _problem("pollen")
    r1 = cvxnn.solve(X, y, alpha, formulation="gated", n_gates=15, random_state=7)
    # passing the returned gates (d + 1 rows) gives the same problem and solution
    r2 = cvxnn.solve(X, y, alpha, formulation="gated", gates=r1.gates)
    assert r2.objective == pytest.approx(r1.objective, rel=1e-7)
    # gates with d rows act on X only (zero bias component)
    G = r1.gates[:-1]
    r3 = cvxnn.solve(X, y, alpha, formulation="gated", gates=G)
    np.testing.assert_array_equal(r3.gates[-1], 0.0)
    # bias=False solves on X as given
    r4 = cvxnn.solve(X, y, alpha, formulation="gated", gates=G, bias=False)
    assert r4.network.b1 is None or np.all(r4.network.b1 == 0)
    assert r4.weights["U"].shape[0] == X.shape[1]


def test_same_seed_same_model():
    X, y, loss, alpha = _problem("iris_ce")
    a = cvxnn.solve(X, y, alpha, formulation="gated", loss=loss, n_gates=15, random_state=11)
    b = cvxnn.solve(X, y, alpha, formulation="gated", loss=loss, n_gates=15, random_state=11)
    np.testing.assert_array_equal(a.gates, b.gates)
    np.testing.assert_array_equal(a.weights["U"], b.weights["U"])


def test_labels_any_values_and_squared_two_classes_map_to_pm1():
    X, y, loss, alpha = _problem("breast_cancer_squared")
    res = cvxnn.solve(X, y, alpha, formulation="gated", loss="squared", n_gates=10, random_state=0)
    assert list(res.classes) == ["benign", "malignant"]
    assert res.weights["U"].shape[2] == 1
    pred = res.network.predict(X)
    assert set(pred) <= {"benign", "malignant"}
    assert np.mean(pred == y) > 0.85
    Y, _ = encode_targets(y, "squared")
    assert set(np.unique(Y)) == {-1.0, 1.0}


def test_warm_start_takes_no_iterations():
    X, y, loss, alpha = _problem("pollen")
    r1 = cvxnn.solve(X, y, alpha, formulation="gated", n_gates=15, random_state=0)
    r2 = cvxnn.solve(X, y, alpha, formulation="gated", gates=r1.gates, warm_start=r1.weights)
    assert r2.n_iter <= 1
    assert r2.objective == pytest.approx(r1.objective, rel=1e-7)


def test_enumerated_patterns_certify_globally():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((15, 1))
    y = np.abs(X[:, 0]) + 0.1 * rng.standard_normal(15)
    res = cvxnn.solve(X, y, 1e-2, formulation="relu", gates="enumerate")
    assert res.certified_over.startswith("all activation patterns")
    assert res.gates.shape[1] <= 2 * 15
    assert res.relative_gap <= 1e-6


def test_relu_program_never_below_gated_program():
    X, y, loss, alpha = _problem("pima_logistic")
    g = cvxnn.solve(X, y, alpha, formulation="gated", loss=loss, n_gates=12, random_state=0)
    r = cvxnn.solve(X, y, alpha, formulation="relu", loss=loss, n_gates=12, random_state=0)
    assert r.objective >= g.objective * (1 - 1e-7)


def test_prune_keeps_objective_and_bounds_neurons():
    X, y, loss, alpha = _problem("diabetes")
    X, y = X[:30], y[:30]
    res = cvxnn.solve(X, y, 1e-4, formulation="relu", n_gates=60, random_state=0, tol=1e-6)
    net = res.network
    pruned = net.prune(X)
    assert pruned.n_neurons <= X.shape[0] + 1
    assert pruned.objective(X, y, 1e-4) <= net.objective(X, y, 1e-4) * (1 + 1e-10)


def test_problem_objects_agree_with_network_recovery():
    X, y, loss, alpha = _problem("wine_ce")
    res = cvxnn.solve(X, y, alpha, formulation="relu", loss=loss, n_gates=10, random_state=0)
    Y, _ = encode_targets(y, loss)
    Xa = augment(X, True)
    D = compute_masks(X, res.gates, bias=True)
    Q = np.stack([res.weights["V"], res.weights["W"]], axis=1)
    assert ReLUProblem(Xa, D, Y, loss, alpha).objective(Q) == pytest.approx(res.objective, rel=1e-12)
    U = res.weights["V"] - res.weights["W"]
    # the gated objective of V - W is no larger (triangle inequality)
    assert GatedReLUProblem(Xa, D, Y, loss, alpha).objective(U) <= res.objective * (1 + 1e-12)


def test_infeasible_relu_iterate_gets_no_certificate():
    X, y, loss, alpha = _problem("pollen")
    with pytest.warns(Warning):
        res = cvxnn.solve(X, y, alpha, formulation="relu", n_gates=10, random_state=0,
                          solver="al", max_iter=50)
    assert res.constraint_violation > 1e-6
    assert np.isnan(res.gap) and np.isnan(res.relative_gap)
    assert not res.converged
