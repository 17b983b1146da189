"""Cross-validated estimators: choose ``alpha`` on a regularisation path.

:class:`ConvexReLURegressorCV` and :class:`ConvexReLUClassifierCV` fit, for every
cross-validation fold, a warm-started path (:func:`cvxnn.path.path`) on the
training part and score every point of the path on the held-out part.  The
fold paths run through joblib's :class:`~joblib.Parallel` (``n_jobs``), so any
joblib backend applies, e.g.::

    with joblib.parallel_config(backend="dask"):
        ConvexReLURegressorCV(n_jobs=-1).fit(X, y)

The ``alpha`` with the best mean score (the largest one among ties) is kept in
``alpha_`` and the network is refit on all the data with it.  The gates are
drawn once from the full data (``random_state``) and shared by every fold and
the refit, so the same seed gives the same ``alpha_`` and the same network.

Objective at every ``alpha`` (see :func:`cvxnn.solve`)::

    L(f(X), Y) + alpha/2 (||W1||^2 + ||b1||^2 + ||W2||^2)

solved through the convex program over the sampled activation patterns
(``patterns="sampled"``; no pattern search along a path).
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import is_classifier
from sklearn.metrics import check_scoring
from sklearn.model_selection import check_cv
from sklearn.utils.multiclass import check_classification_targets

from .estimators import ConvexReLUClassifier, ConvexReLURegressor, _validate_data

__all__ = ["ConvexReLURegressorCV", "ConvexReLUClassifierCV"]


def _fold_scores(X, y, train, test, grid, gates, path_kw, template, scorer):
    """Scores on ``test`` of every point of the path fit on ``train``: shape (n_alphas,)."""
    from .path import path

    res = path(X[train], y[train], alphas=grid, gates=gates, **path_kw)
    Xt, yt = X[test], y[test]
    out = np.empty(len(grid))
    for j, r in enumerate(res.results):
        est = _as_fitted(template, r.network, X.shape[1], y)
        out[j] = scorer(est, Xt, yt)
    return out


def _as_fitted(template, network, n_features, y):
    """A copy of the base estimator ``template`` that predicts with ``network``."""
    from sklearn.base import clone

    est = clone(template)
    est.network_ = network
    est.n_features_in_ = n_features
    if is_classifier(est):
        est.classes_ = np.asarray(network.classes)
    else:
        est._y_ndim = np.ndim(y)
        est.n_outputs_ = 1 if np.ndim(y) == 1 else y.shape[1]
    return est


class _PathCVMixin:
    """Shared validation, cross-validation and refit of the CV estimators."""

    def _check_cv_params(self):
        if self.alphas is not None:
            arr = np.asarray(self.alphas, dtype=object).ravel()
            if arr.size < 1 or any(isinstance(a, bool) or not isinstance(a, numbers.Real)
                                   or not np.isfinite(a) or a < 0 for a in arr):
                raise ValueError(f"alphas must be None or a non-empty sequence of numbers >= 0, "
                                 f"got {self.alphas!r}")
        if (isinstance(self.n_alphas, bool) or not isinstance(self.n_alphas, numbers.Integral)
                or self.n_alphas < 1):
            raise ValueError(f"n_alphas must be an integer >= 1, got {self.n_alphas!r}")
        if (isinstance(self.eps, bool) or not isinstance(self.eps, numbers.Real)
                or not 0 < self.eps < 1):
            raise ValueError(f"eps must be a number in (0, 1), got {self.eps!r}")
        if self.n_jobs is not None and (isinstance(self.n_jobs, bool)
                                        or not isinstance(self.n_jobs, numbers.Integral)):
            raise ValueError(f"n_jobs must be None or an integer, got {self.n_jobs!r}")
        # the base estimator's checks of the shared hyperparameters
        self._base_template()._check_params()

    def _base_template(self):
        """The base estimator with this one's shared hyperparameters (unfitted)."""
        return self._base_class(
            alpha=0.0, formulation=self.formulation, loss=self.loss, n_gates=self.n_gates,
            bias=self.bias, tol=self.tol, max_iter=self.max_iter,
            random_state=self.random_state, verbose=self.verbose, patterns="sampled")

    def _fit_cv(self, X, y, classification):
        from joblib import Parallel, delayed

        from .patterns import compute_masks, sample_gates
        from .path import _alpha_max_from, _validate_grid
        from ._data import augment, encode_targets
        from .solve import solve

        gates = sample_gates(X, int(self.n_gates), bias=bool(self.bias),
                             random_state=self.random_state)
        Y, _ = encode_targets(np.asarray(y), self.loss, classification)
        Xa = augment(X, bool(self.bias))
        amax = _alpha_max_from(self.formulation, Xa, compute_masks(X, gates, bias=bool(self.bias)),
                               Y, self.loss)
        grid = _validate_grid(None if self.alphas is None else list(self.alphas),
                              int(self.n_alphas), float(self.eps), amax)
        if grid is None:
            raise ValueError("alpha_max is 0 (the zero network fits y exactly); pass alphas")
        cv = check_cv(self.cv, y, classifier=is_classifier(self))
        folds = list(cv.split(X, y))
        template = self._base_template()
        scorer = check_scoring(template, scoring=self.scoring)
        path_kw = dict(formulation=self.formulation, loss=self.loss, bias=bool(self.bias),
                       tol=float(self.tol), classification=classification,
                       max_iter=None if self.max_iter is None else int(self.max_iter),
                       verbose=max(int(self.verbose) - 1, 0))
        scores = Parallel(n_jobs=self.n_jobs)(
            delayed(_fold_scores)(X, y, train, test, grid, gates, path_kw, template, scorer)
            for train, test in folds)
        scores = np.asarray(scores, dtype=np.float64)  # (n_folds, n_alphas)
        mean = scores.mean(axis=0)
        std = scores.std(axis=0)
        finite = np.where(np.isfinite(mean), mean, -np.inf)
        best = int(np.argmax(finite))  # the grid decreases: ties go to the larger alpha
        self.alphas_ = grid
        self.alpha_max_ = float(amax)
        self.alpha_ = float(grid[best])
        self.best_score_ = float(mean[best])
        self.best_index_ = best
        self.cv_results_ = {"alphas": grid, "mean_test_score": mean, "std_test_score": std,
                            **{f"split{k}_test_score": scores[k] for k in range(len(folds))}}
        result = solve(X, y, self.alpha_, formulation=self.formulation, loss=self.loss,
                       gates=gates, bias=bool(self.bias), tol=float(self.tol),
                       max_iter=None if self.max_iter is None else int(self.max_iter),
                       verbose=int(self.verbose), classification=classification,
                       patterns="sampled")
        self._set_result(result)
        return result

    def _set_result(self, result):
        self.network_ = result.network
        self.objective_ = float(result.objective)
        self.gap_ = float(result.gap)
        self.relative_gap_ = float(result.relative_gap)
        self.n_iter_ = int(result.n_iter)
        self.converged_ = bool(result.converged)
        self.n_active_ = int(result.n_active)
        self.n_neurons_ = int(result.network.n_neurons)
        self.gates_ = result.gates
        self.fit_time_ = float(result.time)
        self.constraint_violation_ = float(result.constraint_violation)
        self.certified_over_ = result.certified_over

    @staticmethod
    def _check_two_samples(X):
        if X.shape[0] < 2:
            raise ValueError(f"X has {X.shape[0]} sample(s), but at least 2 samples are needed "
                             "(n_samples = 1 cannot be cross-validated)")


_PARAMS_DOC = """
    alphas : array-like or None, default=None
        Grid of ``alpha``; default ``n_alphas`` values geometrically spaced from
        ``alpha_max`` (the zero network, computed on the full data) to
        ``eps * alpha_max``.
    n_alphas : int, default=10
    eps : float, default=1e-3
    cv : int, cross-validation generator or iterable, default=5
        As in scikit-learn (stratified folds for the classifier).
    scoring : str, callable or None, default=None
        Score of the held-out fold; ``None`` uses the estimator's ``score``
        (R^2 for the regressor, accuracy for the classifier).
    n_jobs : int or None, default=None
        Folds processed in parallel by joblib (any joblib backend, e.g. dask).
    formulation : {"gated", "relu"}, default="gated"
    n_gates : int, default=100
    bias : bool, default=True
    tol : float, default=1e-6
        Relative duality gap of every solve.
    max_iter : int or None, default=None
    random_state : int, RandomState instance or None, default=None
        Seed of the gates (shared by all folds and the refit).
    verbose : int, default=0
"""


class ConvexReLURegressorCV(_PathCVMixin, ConvexReLURegressor):
    __doc__ = """Two-layer ReLU regressor with ``alpha`` chosen by cross-validation on a path.

    Parameters
    ----------
    loss : {"squared"}, default="squared"
    """ + _PARAMS_DOC + """
    Attributes
    ----------
    alpha_ : float
        The selected ``alpha``.
    alphas_ : ndarray of shape (n_alphas,)
        The grid (decreasing).
    alpha_max_ : float
    cv_results_ : dict
        ``alphas``, ``mean_test_score``, ``std_test_score`` and
        ``split{k}_test_score`` (arrays of shape (n_alphas,)).
    best_score_ : float
    network_, objective_, gap_, relative_gap_, converged_, n_iter_, n_active_, \
n_neurons_, gates_, fit_time_, constraint_violation_, certified_over_
        Of the refit on all the data at ``alpha_`` (see :class:`ConvexReLURegressor`).
    """

    _base_class = ConvexReLURegressor

    def __init__(self, alphas=None, *, n_alphas=10, eps=1e-3, cv=5, scoring=None, n_jobs=None,
                 formulation="gated", loss="squared", n_gates=100, bias=True, tol=1e-6,
                 max_iter=None, random_state=None, verbose=0):
        self.alphas = alphas
        self.n_alphas = n_alphas
        self.eps = eps
        self.cv = cv
        self.scoring = scoring
        self.n_jobs = n_jobs
        self.formulation = formulation
        self.loss = loss
        self.n_gates = n_gates
        self.bias = bias
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y):
        """Cross-validate the path, then refit at ``alpha_`` on all of ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self
        """
        self._check_cv_params()
        X, y = _validate_data(self, X, y, dtype=np.float64, y_numeric=True, multi_output=True)
        self._check_two_samples(X)
        y = np.asarray(y, dtype=np.float64)
        self._y_ndim = y.ndim
        self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
        self._fit_cv(X, y, classification=False)
        return self


class ConvexReLUClassifierCV(_PathCVMixin, ConvexReLUClassifier):
    __doc__ = """Two-layer ReLU classifier with ``alpha`` chosen by cross-validation on a path.

    Parameters
    ----------
    loss : {"cross_entropy", "logistic", "squared"}, default="cross_entropy"
    """ + _PARAMS_DOC + """
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    alpha_, alphas_, alpha_max_, cv_results_, best_score_
        As in :class:`ConvexReLURegressorCV`.
    network_, objective_, gap_, relative_gap_, converged_, n_iter_, n_active_, \
n_neurons_, gates_, fit_time_, constraint_violation_, certified_over_
        Of the refit on all the data at ``alpha_``.
    """

    _base_class = ConvexReLUClassifier

    def __init__(self, alphas=None, *, n_alphas=10, eps=1e-3, cv=5, scoring=None, n_jobs=None,
                 formulation="gated", loss="cross_entropy", n_gates=100, bias=True, tol=1e-6,
                 max_iter=None, random_state=None, verbose=0):
        self.alphas = alphas
        self.n_alphas = n_alphas
        self.eps = eps
        self.cv = cv
        self.scoring = scoring
        self.n_jobs = n_jobs
        self.formulation = formulation
        self.loss = loss
        self.n_gates = n_gates
        self.bias = bias
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y):
        """Cross-validate the path, then refit at ``alpha_`` on all of ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels (two or more classes; two for ``loss="logistic"``).

        Returns
        -------
        self
        """
        self._check_cv_params()
        X, y = _validate_data(self, X, y, dtype=np.float64)
        self._check_two_samples(X)
        check_classification_targets(y)
        try:
            classes = np.unique(y)
        except TypeError:
            raise TypeError("y mixes label types that cannot be compared (e.g. strings and "
                            "numbers); use labels of one type") from None
        if len(classes) < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes in the "
                             f"data, but the data contains only one class: {classes[0]!r}")
        if self.loss == "logistic" and len(classes) > 2:
            raise ValueError("Only binary classification is supported with loss='logistic'; "
                             f"y has {len(classes)} classes. Use loss='cross_entropy' for "
                             "multiclass problems.")
        result = self._fit_cv(X, y, classification=True)
        self.classes_ = np.asarray(result.classes if result.classes is not None else classes)
        return self
