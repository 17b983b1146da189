"""scikit-learn estimators: two-layer ReLU networks fit to a certified optimum.

:class:`ConvexReLURegressor` and :class:`ConvexReLUClassifier` are thin
wrappers around :func:`cvxnn.solve`: ``fit`` validates the hyperparameters and
the data, calls ``solve`` once, and keeps the recovered network
(``network_``) together with the optimality certificate of the convex program
(``objective_``, ``gap_``, ``relative_gap_``, ``converged_``).  Prediction uses
only ``network_``, so a fitted estimator and the saved network
(``est.network_.save(path)``) predict the same values.

Both estimators pass scikit-learn's ``check_estimator`` suite.

Conventions
-----------
* Hyperparameters are stored untouched by ``__init__`` and validated in ``fit``.
* The data are never rescaled: put a ``StandardScaler`` in a ``Pipeline`` when
  the features have very different scales (first-order solvers converge much
  faster on standardized data).
* ``tol`` is a tolerance on the *relative duality gap*
  ``gap / objective`` of the convex program; when it is not reached within
  ``max_iter`` iterations a ``ConvergenceWarning`` is emitted by ``solve`` and
  ``converged_`` is ``False``.
* The bias rule and the target encoding are those of :mod:`cvxnn._data`.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy.special import expit, log_expit, log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from ._data import check_alpha

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

__all__ = ["ConvexReLURegressor", "ConvexReLUClassifier"]

_FORMULATIONS = ("relu", "gated")
_REGRESSION_LOSSES = ("squared",)
_CLASSIFICATION_LOSSES = ("cross_entropy", "logistic", "squared")
_PROBABILISTIC_LOSSES = ("cross_entropy", "logistic")


def _solve(*args, **kwargs):
    # imported lazily so that this module can be imported on its own
    from .solve import solve

    return solve(*args, **kwargs)


class _ConvexReLUBase(BaseEstimator):
    """Shared hyperparameters, validation and fitted attributes."""

    _valid_losses: tuple[str, ...] = ()

    def _check_params(self) -> None:
        """Validate the hyperparameters; raise ``ValueError``/``TypeError`` naming them."""
        check_alpha(self.alpha, "alpha")
        if not isinstance(self.formulation, str) or self.formulation not in _FORMULATIONS:
            raise ValueError(
                f"formulation must be one of {list(_FORMULATIONS)}, got {self.formulation!r}"
            )
        if not isinstance(self.loss, str) or self.loss not in self._valid_losses:
            raise ValueError(
                f"loss must be one of {list(self._valid_losses)} for "
                f"{type(self).__name__}, got {self.loss!r}"
            )
        if (
            isinstance(self.n_gates, bool)
            or not isinstance(self.n_gates, numbers.Integral)
            or self.n_gates < 1
        ):
            raise ValueError(f"n_gates must be an integer >= 1, got {self.n_gates!r}")
        if not isinstance(self.bias, (bool, np.bool_)):
            raise TypeError(f"bias must be True or False, got {self.bias!r}")
        if not isinstance(self.solver, str):
            raise TypeError(f"solver must be a string, got {self.solver!r}")
        if (
            isinstance(self.tol, bool)
            or not isinstance(self.tol, numbers.Real)
            or not np.isfinite(self.tol)
            or self.tol <= 0
        ):
            raise ValueError(f"tol must be a finite number > 0, got {self.tol!r}")
        if self.max_iter is not None and (
            isinstance(self.max_iter, bool)
            or not isinstance(self.max_iter, numbers.Integral)
            or self.max_iter < 1
        ):
            raise ValueError(f"max_iter must be None or an integer >= 1, got {self.max_iter!r}")
        if not isinstance(self.verbose, (numbers.Integral, bool)) or self.verbose < 0:
            raise ValueError(f"verbose must be an integer >= 0, got {self.verbose!r}")
        if self.callback is not None and not callable(self.callback):
            raise TypeError(f"callback must be None or a callable, got {self.callback!r}")

    def _fit_solve(self, X: np.ndarray, y: np.ndarray, classification: bool):
        result = _solve(
            X,
            y,
            self.alpha,
            formulation=self.formulation,
            loss=self.loss,
            n_gates=int(self.n_gates),
            bias=bool(self.bias),
            solver=self.solver,
            tol=float(self.tol),
            max_iter=None if self.max_iter is None else int(self.max_iter),
            random_state=self.random_state,
            verbose=int(self.verbose),
            classification=classification,
            patterns=self.patterns,
            search_options=self.search_options,
            callback=self.callback,
        )
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
        self.constraint_violation_ = (
            None if result.constraint_violation is None else float(result.constraint_violation)
        )
        self.certified_over_ = result.certified_over
        self.search_ = result.search
        self.stopped_ = result.stopped
        return result

    def _outputs(self, X) -> np.ndarray:
        """Network outputs of shape ``(n, c)`` on validated ``X``."""
        check_is_fitted(self)
        X = _validate_data(self, X, reset=False, dtype=np.float64)
        Z = np.asarray(self.network_.forward(X), dtype=np.float64)
        return Z.reshape(X.shape[0], -1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        return tags


class ConvexReLURegressor(RegressorMixin, _ConvexReLUBase):
    """Two-layer ReLU regression network trained to a certified global optimum.

    Solves the convex reformulation of the weight-decay regularised problem
    ``||f(X) - y||^2 / (2 n) + alpha / 2 (||W1||^2 + ||w2||^2)`` with ``f`` a
    two-layer ReLU network of any width (see :func:`cvxnn.solve`) and keeps the
    recovered network.

    Parameters
    ----------
    alpha : float, default=1e-3
        Regularisation strength (group-l1 weight of the convex program), >= 0.
    formulation : {"relu", "gated"}, default="relu"
        ``"relu"`` solves the exact program of the ReLU network (cone
        constraints); ``"gated"`` the gated-ReLU relaxation (no constraints,
        faster).
    loss : {"squared"}, default="squared"
        Loss of the program; ``||yhat - y||^2 / (2 n)``.
    n_gates : int, default=100
        Number of sampled gate vectors (activation patterns).
    bias : bool, default=True
        Append a ones column to the data (hidden-layer biases, regularised
        together with the weights; see :mod:`cvxnn._data`).
    solver : str, default="auto"
        Solver name passed to :func:`cvxnn.solve`.
    tol : float, default=1e-6
        Tolerance on the relative duality gap ``gap / objective``.
    max_iter : int or None, default=None
        Iteration cap of the solver (``None``: the solver's default).
    random_state : int, RandomState instance or None, default=None
        Seed of the gate sampling; the same seed gives the same model.
    verbose : int, default=0
        Verbosity of the solver.
    patterns : {"auto", "search", "sampled", "enumerate"}, default="auto"
        Activation patterns of the program (see :func:`cvxnn.solve`): ``"auto"``
        searches patterns with the dual separation oracle for the relu
        formulation (the best network the search finds, certified over all
        patterns when the oracle is exact) and uses the sampled gates for the
        gated one.
    search_options : dict or None, default=None
        Options of the pattern search (:func:`cvxnn.cutting_plane`).
    callback : callable or None, default=None
        Progress callback of :func:`cvxnn.solve`, called at every certificate
        evaluation with a read-only info (``iteration``, ``time``, ``objective``,
        ``relative_gap``, ``constraint_violation``, ``solver``); returning
        ``True`` stops the fit at the best iterate so far (``converged_`` is
        then ``False`` and ``stopped_`` is ``"callback"``).  Ctrl-C during
        ``fit`` likewise keeps the best iterate (``stopped_`` is
        ``"keyboard_interrupt"``, with a warning).

    Attributes
    ----------
    network_ : TwoLayerReLU or GatedTwoLayerReLU
        The recovered network, used by ``predict``.
    objective_ : float
        Value of the convex objective at the solution.
    gap_ : float
        Duality gap certifying the solution (``objective_ - gap_`` is a lower
        bound on the optimum).
    relative_gap_ : float
        ``gap_`` relative to the objective.
    converged_ : bool
        Whether ``relative_gap_ <= tol`` was reached.
    n_iter_ : int
        Number of solver iterations.
    n_active_ : int
        Number of nonzero blocks of the convex solution.
    n_neurons_ : int
        Number of hidden neurons of ``network_``.
    gates_ : ndarray of shape (n_features_in_ + bias, n_gates)
        Gate vectors that define the activation patterns.
    fit_time_ : float
        Wall-clock seconds spent in the solver.
    constraint_violation_ : float or None
        Largest violation of the cone constraints (ReLU formulation).
    certified_over_ : str
        What the gap certifies (all patterns, or the sampled/searched ones).
    search_ : dict or None
        Pattern-search record (rounds, bound over all patterns, stop reason).
    stopped_ : str or None
        ``"callback"`` or ``"keyboard_interrupt"`` when the solve was stopped
        early at its best iterate, else ``None``.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names, defined only when ``X`` has string column names.

    Examples
    --------
    >>> from sklearn.datasets import make_regression
    >>> from cvxnn import ConvexReLURegressor
    >>> X, y = make_regression(n_samples=50, n_features=3, noise=1.0, random_state=0)
    >>> reg = ConvexReLURegressor(alpha=1e-2, formulation="gated", n_gates=20, tol=1e-4,
    ...                           random_state=0)
    >>> reg.fit(X, y / y.std()).converged_
    True
    >>> reg.predict(X[:2]).shape
    (2,)
    """

    _valid_losses = _REGRESSION_LOSSES

    def __init__(
        self,
        alpha=1e-3,
        *,
        formulation="relu",
        loss="squared",
        n_gates=100,
        bias=True,
        solver="auto",
        tol=1e-6,
        max_iter=None,
        random_state=None,
        verbose=0,
        patterns="auto",
        search_options=None,
        callback=None,
    ):
        self.alpha = alpha
        self.formulation = formulation
        self.loss = loss
        self.n_gates = n_gates
        self.bias = bias
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state
        self.verbose = verbose
        self.patterns = patterns
        self.search_options = search_options
        self.callback = callback

    def fit(self, X, y):
        """Fit the network by solving the convex program.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data (dense, finite).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets; a 2-D ``y`` fits one output per column.

        Returns
        -------
        self : ConvexReLURegressor
            The fitted estimator.
        """
        self._check_params()
        X, y = _validate_data(
            self, X, y, dtype=np.float64, y_numeric=True, multi_output=True
        )
        y = np.asarray(y, dtype=np.float64)
        self._y_ndim = y.ndim
        self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
        self._fit_solve(X, y, classification=False)
        return self

    def predict(self, X):
        """Predict targets.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predictions; 2-D when ``fit`` was given a 2-D ``y``.
        """
        Z = self._outputs(X)
        if self._y_ndim == 1:
            return Z[:, 0].copy()
        return Z

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags


class ConvexReLUClassifier(ClassifierMixin, _ConvexReLUBase):
    """Two-layer ReLU classification network trained to a certified global optimum.

    Labels may be any sortable values (numbers, strings); ``classes_`` holds
    them sorted.  With ``loss="cross_entropy"`` the network has one output per
    class (softmax); with ``"logistic"`` (two classes only) one output whose
    sign gives the class; with ``"squared"`` the labels are regressed as
    ``-1/+1`` (two classes) or one-hot vectors (more).

    Parameters
    ----------
    alpha : float, default=1e-3
        Regularisation strength (group-l1 weight of the convex program), >= 0.
    formulation : {"relu", "gated"}, default="relu"
        Exact ReLU program (cone constraints) or gated-ReLU relaxation.
    loss : {"cross_entropy", "logistic", "squared"}, default="cross_entropy"
        Loss of the program (means over samples; squared is
        ``||yhat - y||^2 / (2 n)``).  ``predict_proba`` exists only for
        ``"cross_entropy"`` and ``"logistic"``.
    n_gates : int, default=100
        Number of sampled gate vectors (activation patterns).
    bias : bool, default=True
        Append a ones column to the data (hidden-layer biases).
    solver : str, default="auto"
        Solver name passed to :func:`cvxnn.solve`.
    tol : float, default=1e-6
        Tolerance on the relative duality gap ``gap / objective``.
    max_iter : int or None, default=None
        Iteration cap of the solver (``None``: the solver's default).
    random_state : int, RandomState instance or None, default=None
        Seed of the gate sampling.
    verbose : int, default=0
        Verbosity of the solver.
    patterns : {"auto", "search", "sampled", "enumerate"}, default="auto"
        Activation patterns of the program (see :func:`cvxnn.solve`): ``"auto"``
        searches patterns with the dual separation oracle for the relu
        formulation (the best network the search finds, certified over all
        patterns when the oracle is exact) and uses the sampled gates for the
        gated one.
    search_options : dict or None, default=None
        Options of the pattern search (:func:`cvxnn.cutting_plane`).
    callback : callable or None, default=None
        Progress callback of :func:`cvxnn.solve`, called at every certificate
        evaluation with a read-only info (``iteration``, ``time``, ``objective``,
        ``relative_gap``, ``constraint_violation``, ``solver``); returning
        ``True`` stops the fit at the best iterate so far (``converged_`` is
        then ``False`` and ``stopped_`` is ``"callback"``).  Ctrl-C during
        ``fit`` likewise keeps the best iterate (``stopped_`` is
        ``"keyboard_interrupt"``, with a warning).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Sorted class labels.
    network_ : TwoLayerReLU or GatedTwoLayerReLU
        The recovered network (its ``classes`` are ``classes_``).
    objective_, gap_, relative_gap_, converged_, n_iter_, n_active_, n_neurons_, \
gates_, fit_time_, constraint_violation_, stopped_, n_features_in_, feature_names_in_
        As in :class:`ConvexReLURegressor`.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from cvxnn import ConvexReLUClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = ConvexReLUClassifier(alpha=1e-2, formulation="gated", n_gates=20, tol=1e-4,
    ...                            random_state=0).fit(X, y)
    >>> clf.converged_, clf.predict_proba(X[:1]).shape
    (True, (1, 3))
    """

    _valid_losses = _CLASSIFICATION_LOSSES

    def __init__(
        self,
        alpha=1e-3,
        *,
        formulation="relu",
        loss="cross_entropy",
        n_gates=100,
        bias=True,
        solver="auto",
        tol=1e-6,
        max_iter=None,
        random_state=None,
        verbose=0,
        patterns="auto",
        search_options=None,
        callback=None,
    ):
        self.alpha = alpha
        self.formulation = formulation
        self.loss = loss
        self.n_gates = n_gates
        self.bias = bias
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state
        self.verbose = verbose
        self.patterns = patterns
        self.search_options = search_options
        self.callback = callback

    def fit(self, X, y):
        """Fit the network by solving the convex program.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data (dense, finite).
        y : array-like of shape (n_samples,)
            Class labels (at least two classes; exactly two for
            ``loss="logistic"``).

        Returns
        -------
        self : ConvexReLUClassifier
            The fitted estimator.
        """
        self._check_params()
        X, y = _validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        try:
            classes = np.unique(y)
        except TypeError:
            raise TypeError(
                "y mixes label types that cannot be compared (e.g. strings and "
                "numbers); use labels of one type"
            ) from None
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes in the "
                f"data, but the data contains only one class: {classes[0]!r}"
            )
        if self.loss == "logistic" and len(classes) > 2:
            raise ValueError(
                "Only binary classification is supported with loss='logistic'; "
                f"y has {len(classes)} classes. Use loss='cross_entropy' for "
                "multiclass problems."
            )
        result = self._fit_solve(X, y, classification=True)
        got = result.classes if result.classes is not None else classes
        self.classes_ = np.asarray(got)
        return self

    def decision_function(self, X):
        """Raw scores of the network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            For two classes a 1-D array whose positive values predict
            ``classes_[1]`` (with ``cross_entropy``: the difference of the two
            logits); for more classes the per-class scores.
        """
        Z = self._outputs(X)
        if Z.shape[1] == 1:
            return Z[:, 0].copy()
        if len(self.classes_) == 2:
            return Z[:, 1] - Z[:, 0]
        return Z

    def predict(self, X):
        """Predict class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Predicted labels, taken from ``classes_``.
        """
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(np.intp)]
        return self.classes_[np.argmax(scores, axis=1)]

    def _has_proba(self) -> bool:
        return self.loss in _PROBABILISTIC_LOSSES

    @available_if(_has_proba)
    def predict_proba(self, X):
        """Class probabilities (``loss="cross_entropy"`` or ``"logistic"`` only).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Softmax of the logits (cross-entropy) or ``[1 - s, s]`` with
            ``s = sigmoid(score)`` (logistic); columns follow ``classes_``.
        """
        Z = self._outputs(X)
        if Z.shape[1] == 1:
            p = expit(Z[:, 0])
            return np.column_stack([1.0 - p, p])
        return softmax(Z, axis=1)

    @available_if(_has_proba)
    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`, computed stably.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Log-probabilities; columns follow ``classes_``.
        """
        Z = self._outputs(X)
        if Z.shape[1] == 1:
            return np.column_stack([log_expit(-Z[:, 0]), log_expit(Z[:, 0])])
        return log_softmax(Z, axis=1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = self.loss != "logistic"
        return tags
