"""scikit-learn estimators: API compatibility, real data, fitted attributes."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from cvxnn import load
from cvxnn.estimators import ConvexReLUClassifier, ConvexReLURegressor


def _subset(loader, n, scale_y=False, seed=0):
    X, y = loader(return_X_y=True)
    idx = np.random.RandomState(seed).permutation(len(y))[:n]
    X = StandardScaler().fit_transform(X[idx])
    y = y[idx]
    if scale_y:
        y = (y - y.mean()) / y.std()
    return X, y


@pytest.fixture(scope="module")
def cancer():
    return _subset(load_breast_cancer, 120)


@pytest.fixture(scope="module")
def iris():
    return _subset(load_iris, 150)


@pytest.fixture(scope="module")
def diabetes():
    return _subset(load_diabetes, 150, scale_y=True)


# --------------------------------------------------------------------------
# scikit-learn's check suite.  The instances use few gates, a larger alpha and
# an iteration cap so that the ~55 checks per instance stay fast; they test
# the API contract, not the solver's accuracy (ConvergenceWarnings are fine).
_CHECK_KW = dict(n_gates=20, alpha=1e-2, random_state=0)


@parametrize_with_checks(
    [
        ConvexReLURegressor(tol=1e-3, max_iter=200, patterns="sampled", **_CHECK_KW),
        ConvexReLURegressor(tol=1e-3, max_iter=200,
                            search_options={"max_unit_rounds": 3, "max_rounds": 1}, **_CHECK_KW),
        ConvexReLURegressor(formulation="gated", tol=1e-4, max_iter=300, **_CHECK_KW),
        ConvexReLUClassifier(tol=1e-3, max_iter=200, patterns="sampled", **_CHECK_KW),
        ConvexReLUClassifier(formulation="gated", loss="logistic", tol=1e-4, max_iter=300,
                             **_CHECK_KW),
        ConvexReLUClassifier(formulation="gated", loss="squared", tol=1e-4, max_iter=300,
                             **_CHECK_KW),
    ]
)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


# --------------------------------------------------------------------------
# real data
@pytest.mark.parametrize("formulation", ["gated", "relu"])
@pytest.mark.parametrize("loss", ["logistic", "cross_entropy"])
def test_classifier_breast_cancer(cancer, formulation, loss):
    X, y = cancer
    clf = ConvexReLUClassifier(alpha=1e-2, formulation=formulation, loss=loss, n_gates=20,
                               tol=1e-4, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf.fit(X, y)
    assert clf.converged_
    assert clf.relative_gap_ <= 1e-4
    assert clf.gap_ >= 0 and clf.objective_ > 0
    assert clf.n_iter_ >= 1
    assert clf.n_features_in_ == X.shape[1]
    assert not hasattr(clf, "feature_names_in_")
    np.testing.assert_array_equal(clf.classes_, [0, 1])
    assert clf.score(X, y) > 0.95
    # the certificate belongs to the network that predicts
    rtol = 1e-8 if formulation == "gated" else 1e-3
    np.testing.assert_allclose(clf.network_.objective(X, y, clf.alpha), clf.objective_, rtol=rtol)
    assert 1 <= clf.n_active_ and 1 <= clf.n_neurons_
    assert clf.gates_.shape == (X.shape[1] + 1, clf.gates_.shape[1])
    assert clf.gates_.shape[1] <= 20

    proba = clf.predict_proba(X)
    assert proba.shape == (len(y), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.log(proba), clf.predict_log_proba(X), atol=1e-10)
    scores = clf.decision_function(X)
    assert scores.shape == (len(y),)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[(scores > 0).astype(int)])
    np.testing.assert_array_equal(clf.predict(X), clf.network_.predict(X))


def test_logistic_and_cross_entropy_agree_on_binary_problem(cancer):
    # for two classes, softmax cross-entropy on logits (z0, z1) is logistic on z1 - z0
    X, y = cancer
    kw = dict(alpha=1e-2, formulation="gated", n_gates=20, tol=1e-6, random_state=0)
    log = ConvexReLUClassifier(loss="logistic", **kw).fit(X, y)
    ce = ConvexReLUClassifier(loss="cross_entropy", **kw).fit(X, y)
    np.testing.assert_allclose(log.objective_, ce.objective_, rtol=1e-4)
    np.testing.assert_array_equal(log.predict(X), ce.predict(X))


@pytest.mark.parametrize("formulation", ["gated", "relu"])
def test_classifier_iris_multiclass(iris, formulation):
    X, y = iris
    clf = ConvexReLUClassifier(alpha=1e-2, formulation=formulation, n_gates=20, tol=1e-4,
                               max_iter=None if formulation == "gated" else 2000,
                               random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    if formulation == "gated":
        assert clf.converged_
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.score(X, y) > 0.93
    assert clf.decision_function(X).shape == (150, 3)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X))


def test_classifier_squared_loss_has_no_predict_proba(iris):
    X, y = iris
    clf = ConvexReLUClassifier(loss="squared", formulation="gated", alpha=1e-2, n_gates=20,
                               tol=1e-4, random_state=0)
    assert not hasattr(clf, "predict_proba")
    assert not hasattr(clf, "predict_log_proba")
    clf.fit(X, y)
    assert clf.score(X, y) > 0.9
    assert clf.decision_function(X).shape == (150, 3)
    assert hasattr(ConvexReLUClassifier(), "predict_proba")


@pytest.mark.parametrize("formulation", ["gated", "relu"])
def test_regressor_diabetes(diabetes, formulation):
    X, y = diabetes
    reg = ConvexReLURegressor(alpha=1e-2, formulation=formulation, n_gates=20, tol=1e-4,
                              random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        reg.fit(X, y)
    assert reg.converged_
    pred = reg.predict(X)
    assert pred.shape == y.shape and pred.dtype == np.float64
    assert reg.score(X, y) > 0.5
    rtol = 1e-8 if formulation == "gated" else 1e-3
    np.testing.assert_allclose(reg.network_.objective(X, y, reg.alpha), reg.objective_, rtol=rtol)
    assert not hasattr(reg, "classes_")
    assert not hasattr(reg, "predict_proba") and not hasattr(reg, "decision_function")


def test_regressor_multi_output(diabetes):
    X, y = diabetes
    Y = np.column_stack([y, -0.5 * y + X[:, 0]])
    reg = ConvexReLURegressor(alpha=1e-2, formulation="gated", n_gates=20, tol=1e-4,
                              random_state=0).fit(X, Y)
    assert reg.n_outputs_ == 2
    assert reg.predict(X).shape == (150, 2)
    assert reg.score(X, Y) > 0.5
    # a column vector y gives column-vector predictions, equal to the 1-D fit
    reg1 = clone(reg).fit(X, y)
    reg2 = clone(reg).fit(X, y[:, None])
    assert reg2.predict(X).shape == (150, 1)
    np.testing.assert_allclose(reg2.predict(X)[:, 0], reg1.predict(X))


def test_reproducible_with_random_state(diabetes):
    X, y = diabetes
    kw = dict(alpha=1e-2, formulation="gated", n_gates=20, tol=1e-4)
    a = ConvexReLURegressor(random_state=3, **kw).fit(X, y)
    b = ConvexReLURegressor(random_state=3, **kw).fit(X, y)
    c = ConvexReLURegressor(random_state=4, **kw).fit(X, y)
    np.testing.assert_array_equal(a.gates_, b.gates_)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    assert not np.array_equal(a.gates_, c.gates_)


# --------------------------------------------------------------------------
# labels, data frames, errors
def test_string_labels_and_save_load(tmp_path, cancer):
    X, y = cancer
    labels = np.array(["benign", "malignant"])[y]
    clf = ConvexReLUClassifier(alpha=1e-2, formulation="gated", n_gates=20, tol=1e-4,
                               random_state=0).fit(X, labels)
    np.testing.assert_array_equal(clf.classes_, ["benign", "malignant"])
    pred = clf.predict(X)
    assert set(pred) <= {"benign", "malignant"}
    assert np.mean(pred == labels) > 0.95
    # object-dtype labels behave the same
    clf_obj = clone(clf).fit(X, labels.astype(object))
    np.testing.assert_array_equal(clf_obj.predict(X), pred)
    # the saved network predicts exactly what the estimator predicts
    path = clf.network_.save(tmp_path / "model.npz")
    net = load(path)
    np.testing.assert_array_equal(net.predict(X), pred)
    np.testing.assert_allclose(net.predict_proba(X), clf.predict_proba(X))
    # and the estimator pickles
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict(X), pred)


def test_dataframe_keeps_feature_names(iris):
    pd = pytest.importorskip("pandas")
    X, y = iris
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    df = pd.DataFrame(X, columns=names)
    target = pd.Series(np.array(["setosa", "versicolor", "virginica"])[y], name="species")
    clf = ConvexReLUClassifier(alpha=1e-2, formulation="gated", n_gates=20, tol=1e-4,
                               random_state=0).fit(df, target)
    np.testing.assert_array_equal(clf.feature_names_in_, names)
    assert clf.n_features_in_ == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no feature-name warning
        pred = clf.predict(df)
    np.testing.assert_array_equal(pred, clf.network_.predict(X))
    with pytest.warns(UserWarning, match="feature names"):
        clf.predict(df[names[::-1]].to_numpy())  # fitted with names, given none
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(df[names[::-1]])  # same names, wrong order

    reg = ConvexReLURegressor(alpha=1e-2, formulation="gated", n_gates=20, tol=1e-4,
                              random_state=0).fit(df, X[:, 0] * 2.0)
    np.testing.assert_array_equal(reg.feature_names_in_, names)


def test_single_class_is_rejected():
    X = np.random.RandomState(0).randn(10, 3)
    with pytest.raises(ValueError, match="only one class"):
        ConvexReLUClassifier(n_gates=5).fit(X, np.full(10, "a"))


def test_logistic_is_binary_only(iris):
    X, y = iris
    with pytest.raises(ValueError, match="Only binary classification is supported"):
        ConvexReLUClassifier(loss="logistic", formulation="gated", n_gates=5).fit(X, y)
    assert not ConvexReLUClassifier(loss="logistic").__sklearn_tags__().classifier_tags.multi_class
    assert ConvexReLUClassifier().__sklearn_tags__().classifier_tags.multi_class


def test_continuous_target_is_rejected_by_classifier(diabetes):
    X, y = diabetes
    with pytest.raises(ValueError, match="Unknown label type"):
        ConvexReLUClassifier(n_gates=5).fit(X, y)


@pytest.mark.parametrize(
    "Est, params, match",
    [
        (ConvexReLURegressor, {"alpha": -1.0}, "alpha"),
        (ConvexReLURegressor, {"alpha": float("nan")}, "alpha"),
        (ConvexReLUClassifier, {"formulation": "deep"}, "formulation"),
        (ConvexReLURegressor, {"loss": "logistic"}, "loss"),
        (ConvexReLUClassifier, {"loss": "hinge"}, "loss"),
        (ConvexReLURegressor, {"n_gates": 0}, "n_gates"),
        (ConvexReLURegressor, {"n_gates": 2.5}, "n_gates"),
        (ConvexReLURegressor, {"tol": 0.0}, "tol"),
        (ConvexReLURegressor, {"max_iter": 0}, "max_iter"),
        (ConvexReLURegressor, {"verbose": -1}, "verbose"),
        (ConvexReLURegressor, {"solver": "sgd"}, "solver"),
    ],
)
def test_invalid_hyperparameters_raise_in_fit(Est, params, match):
    X = np.random.RandomState(0).randn(12, 2)
    y = np.arange(12) % 2
    est = Est(**params)  # __init__ never validates
    assert est.get_params()[next(iter(params))] is params[next(iter(params))]
    with pytest.raises((ValueError, TypeError), match=match):
        est.fit(X, y)


def test_bias_must_be_bool():
    X = np.random.RandomState(0).randn(12, 2)
    with pytest.raises(TypeError, match="bias"):
        ConvexReLURegressor(bias="yes").fit(X, X[:, 0])


def test_not_fitted():
    with pytest.raises(NotFittedError):
        ConvexReLUClassifier().predict(np.zeros((2, 3)))
    with pytest.raises(NotFittedError):
        ConvexReLURegressor().predict(np.zeros((2, 3)))


def test_no_bias(diabetes):
    X, y = diabetes
    reg = ConvexReLURegressor(alpha=1e-2, formulation="gated", bias=False, n_gates=20,
                              tol=1e-4, random_state=0).fit(X, y)
    assert reg.gates_.shape[0] == X.shape[1]
    assert not reg.network_.bias
    np.testing.assert_allclose(reg.predict(np.zeros((1, X.shape[1]))), 0.0, atol=1e-12)


def test_convergence_warning_when_max_iter_is_hit(iris):
    X, y = iris
    clf = ConvexReLUClassifier(formulation="gated", n_gates=10, tol=1e-12, max_iter=5,
                               random_state=0)
    with pytest.warns(ConvergenceWarning, match="relative duality gap"):
        clf.fit(X, y)
    assert not clf.converged_
    assert clf.relative_gap_ > 1e-12
    assert clf.n_iter_ <= 5


def test_pipeline_and_cross_validation():
    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(
        StandardScaler(),
        ConvexReLUClassifier(alpha=1e-2, formulation="gated", n_gates=20, tol=1e-4,
                             random_state=0),
    )
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.mean() > 0.85
