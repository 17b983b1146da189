"""Cross-validated estimators: scikit-learn API, alpha selection, parallel backends."""

import warnings

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold, cross_val_score
from sklearn.utils.estimator_checks import parametrize_with_checks

import cvxnn
from cvxnn.estimators import ConvexReLURegressor
from cvxnn.estimators_cv import ConvexReLUClassifierCV, ConvexReLURegressorCV

from .conftest import standardize


def _subset(loader, n, seed=0, scale_y=False):
    X, y = loader(return_X_y=True)
    idx = np.random.RandomState(seed).permutation(len(y))[:n]
    X = standardize(X[idx])
    y = y[idx]
    if scale_y:
        y = (y - y.mean()) / y.std()
    return X, y


@pytest.fixture(scope="module")
def diabetes():
    return _subset(load_diabetes, 150, scale_y=True)


@pytest.fixture(scope="module")
def cancer():
    X, y = _subset(load_breast_cancer, 120)
    return X[:, :8], y


# small, fast instances: they test the API contract, not the solver's accuracy
# (the relu formulation shares every line of the estimator code; its paths are tested in
# test_path.py)
_CHECK_KW = dict(n_alphas=2, cv=2, n_gates=6, tol=1e-3, max_iter=100, random_state=0)


@parametrize_with_checks(
    [
        ConvexReLURegressorCV(**{**_CHECK_KW, "n_alphas": 3, "n_gates": 8, "tol": 1e-4}),
        ConvexReLUClassifierCV(**_CHECK_KW),
        ConvexReLUClassifierCV(loss="logistic", **_CHECK_KW),
    ]
)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def _fold_r2(X, y, alpha, gates, folds):
    """Held-out R^2 of independent solves at ``alpha`` with fixed gates, per fold."""
    out = []
    for train, test in folds:
        r = cvxnn.solve(X[train], y[train], alpha, formulation="gated", gates=gates,
                        tol=1e-9)
        out.append(r2_score(y[test], r.network.predict(X[test])))
    return np.array(out)


def test_cv_scores_match_independent_solves(diabetes):
    X, y = diabetes
    folds = list(KFold(3).split(X))
    m = ConvexReLURegressorCV(n_alphas=6, cv=KFold(3), n_gates=12, tol=1e-8,
                              random_state=0).fit(X, y)
    assert m.alphas_.shape == (6,) and np.all(np.diff(m.alphas_) < 0)
    assert m.alpha_ in m.alphas_
    for j in (m.best_index_, len(m.alphas_) - 1):
        ref = _fold_r2(X, y, m.alphas_[j], m.gates_, folds)
        np.testing.assert_allclose([m.cv_results_[f"split{k}_test_score"][j] for k in range(3)],
                                   ref, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(m.cv_results_["mean_test_score"][j], ref.mean(), rtol=1e-5)
        np.testing.assert_allclose(m.cv_results_["std_test_score"][j], ref.std(), atol=1e-6)
    assert m.best_score_ == m.cv_results_["mean_test_score"].max()
    # the refit is the certified solution at alpha_ on all the data
    ref = cvxnn.solve(X, y, m.alpha_, formulation="gated", gates=m.gates_, tol=1e-9)
    np.testing.assert_allclose(m.objective_, ref.objective, rtol=1e-6)
    np.testing.assert_allclose(m.predict(X), ref.network.predict(X), rtol=1e-4, atol=1e-6)
    assert m.relative_gap_ <= 1e-8


def test_cv_reproducible_and_beats_a_bad_alpha(diabetes):
    X, y = diabetes
    kw = dict(n_alphas=6, cv=KFold(3), n_gates=12, tol=1e-6, random_state=0)
    a = ConvexReLURegressorCV(**kw).fit(X, y)
    b = ConvexReLURegressorCV(**kw).fit(X, y)
    assert a.alpha_ == b.alpha_
    np.testing.assert_array_equal(a.cv_results_["mean_test_score"], b.cv_results_["mean_test_score"])
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    for bad in (10 * a.alpha_max_, 1e-4 * a.alpha_max_):
        base = ConvexReLURegressor(alpha=bad, formulation="gated", n_gates=12, tol=1e-6,
                                   random_state=0)
        bad_score = cross_val_score(base, X, y, cv=KFold(3)).mean()
        assert a.best_score_ >= bad_score - 1e-9
    assert a.best_score_ > 0.3


def test_classifier_cv_labels_scoring_and_given_alphas(cancer):
    X, y = cancer
    labels = np.array(["benign", "malignant"])[y]
    m = ConvexReLUClassifierCV(alphas=[1e-3, 1e-1, 1e-2], cv=3, n_gates=10, tol=1e-6,
                               loss="logistic", scoring="neg_log_loss", random_state=0)
    m.fit(X, labels)
    np.testing.assert_array_equal(m.alphas_, [1e-1, 1e-2, 1e-3])
    np.testing.assert_array_equal(m.classes_, ["benign", "malignant"])
    assert np.all(m.cv_results_["mean_test_score"] <= 0)
    assert m.score(X, labels) > 0.9
    assert set(m.predict(X)) <= set(labels)
    assert m.predict_proba(X).shape == (len(y), 2)


def test_n_jobs_processes_equal_serial(cancer):
    X, y = cancer
    kw = dict(n_alphas=4, cv=3, n_gates=8, tol=1e-8, random_state=0)
    serial = ConvexReLUClassifierCV(n_jobs=1, **kw).fit(X, y)
    par = ConvexReLUClassifierCV(n_jobs=2, **kw).fit(X, y)
    assert par.alpha_ == serial.alpha_
    np.testing.assert_allclose(par.cv_results_["mean_test_score"],
                               serial.cv_results_["mean_test_score"], rtol=1e-6)


def test_dask_backend_equals_serial(diabetes):
    distributed = pytest.importorskip("distributed")
    X, y = diabetes
    kw = dict(n_alphas=4, cv=KFold(2), n_gates=8, tol=1e-8, random_state=0)
    serial = ConvexReLURegressorCV(**kw).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dask's port / resource notices
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                           dashboard_address=None)
        client = distributed.Client(cluster)
    try:
        with joblib.parallel_config(backend="dask"):
            dist = ConvexReLURegressorCV(n_jobs=2, **kw).fit(X, y)
    finally:
        client.close()
        cluster.close()
    assert dist.alpha_ == serial.alpha_
    np.testing.assert_allclose(dist.cv_results_["mean_test_score"],
                               serial.cv_results_["mean_test_score"], rtol=1e-6)
    np.testing.assert_allclose(dist.objective_, serial.objective_, rtol=1e-6)


@pytest.mark.parametrize("params,match", [
    (dict(alphas=[-1.0]), "alphas"), (dict(alphas=[]), "alphas"), (dict(n_alphas=0), "n_alphas"),
    (dict(eps=2.0), "eps"), (dict(n_jobs="x"), "n_jobs"), (dict(formulation="x"), "formulation"),
    (dict(loss="logistic"), "loss"), (dict(tol=-1.0), "tol"),
])
def test_bad_parameters(diabetes, params, match):
    X, y = diabetes
    with pytest.raises((ValueError, TypeError), match=match):
        ConvexReLURegressorCV(**params).fit(X, y)
