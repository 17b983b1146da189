"""Input validation, the bias rule and target encoding.

Bias rule (one rule for data, gates and prediction)
---------------------------------------------------
With ``bias=True`` a column of ones is appended to the data, ``Xa = [X, 1]``
of shape ``(n, d + 1)``.  Gates act on ``Xa`` (shape ``(d + 1, P)``), every
convex block has ``d + 1`` entries whose last one is the neuron's bias, and the
bias is regularised together with the weights (it sits inside the group norm,
and inside ``||W1||^2 + ||b1||^2`` of the network's weight decay).  With
``bias=False`` the program is solved on ``X`` exactly as given.  Data are never
rescaled.

Target encoding
---------------
* ``squared`` loss, numeric ``y``: regression on ``y`` as given (``(n,)`` gives
  ``c = 1``; ``(n, c)`` gives ``c`` outputs).
* ``squared`` loss on class labels (non-numeric ``y`` or ``classification=True``):
  two classes map to ``-1 / +1`` (first / second of the sorted classes), more
  classes to one-hot columns.
* ``logistic``: exactly two classes, mapped to ``-1 / +1``.
* ``cross_entropy``: two or more classes, one-hot (``c`` = number of classes).
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "check_X", "check_alpha", "check_y", "augment", "encode_targets",
    "decode_outputs", "is_numeric_labels",
]


def check_X(X, name: str = "X", min_samples: int = 1) -> np.ndarray:
    """Return ``X`` as a C-contiguous 2-D float array, or raise a clear error."""
    if X is None:
        raise ValueError(f"{name} must be a 2-D array of numbers, got None")
    if hasattr(X, "toarray") and hasattr(X, "nnz"):
        raise TypeError(
            f"{name} is a sparse matrix; cvxnn needs dense data: pass {name}.toarray()"
        )
    try:
        arr = np.asarray(X)
    except Exception as exc:  # pragma: no cover - exotic containers
        raise TypeError(f"{name} could not be converted to an array: {exc}") from None
    if arr.dtype == object or arr.dtype.kind in "USVM":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(
                f"{name} must contain only numbers; found non-numeric values "
                f"(dtype {np.asarray(X).dtype})"
            ) from None
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} must be real-valued, got complex dtype {arr.dtype}")
    if arr.dtype.kind == "b":
        arr = arr.astype(np.float64)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_features), "
            f"got an array with {arr.ndim} dimension(s) and shape {arr.shape}"
        )
    if arr.shape[0] < min_samples:
        raise ValueError(
            f"{name} has {arr.shape[0]} sample(s); at least {min_samples} required"
        )
    if arr.shape[1] < 1:
        raise ValueError(f"{name} has 0 features; at least 1 required")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(
            f"{name} contains NaN or infinity (first at row {bad[0]}, column {bad[1]}); "
            "remove or impute these values first"
        )
    return np.ascontiguousarray(arr)


def check_alpha(alpha, name: str = "alpha") -> float:
    """Return ``alpha`` as a float, or raise if it is not a finite number >= 0."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"{name} must be a non-negative real number, got {alpha!r}")
    alpha = float(alpha)
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {alpha!r}")
    return alpha


def check_y(y, n_samples: int, name: str = "y") -> np.ndarray:
    """Return ``y`` as an array of length ``n_samples`` (1-D, or 2-D for several outputs)."""
    if y is None:
        raise ValueError(f"{name} is required (got None)")
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D (or 2-D for several outputs), got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(
            f"X and {name} have inconsistent numbers of samples: {n_samples} and {arr.shape[0]}"
        )
    if is_numeric_labels(arr) and arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinity")
    if arr.dtype == object:
        if any(v is None or (isinstance(v, float) and not np.isfinite(v)) for v in arr.ravel()):
            raise ValueError(f"{name} contains missing values (None or NaN)")
    return arr


def is_numeric_labels(y: np.ndarray) -> bool:
    return y.dtype.kind in "iuf"


def augment(X: np.ndarray, bias: bool) -> np.ndarray:
    """Return ``[X, 1]`` when ``bias`` else ``X`` (same dtype)."""
    if not bias:
        return X
    return np.hstack([X, np.ones((X.shape[0], 1), dtype=X.dtype)])


def encode_targets(y: np.ndarray, loss: str, classification: bool | None = None):
    """Encode ``y`` for ``loss``; return ``(Y, classes)``.

    ``Y`` has shape ``(n, c)`` and float64 dtype; ``classes`` is ``None`` for
    regression, else the sorted array of class labels.
    """
    if classification is None:
        classification = loss != "squared" or not is_numeric_labels(y)
    if not classification:
        Y = np.asarray(y, dtype=np.float64)
        if Y.ndim == 1:
            Y = Y[:, None]
        return Y, None
    if y.ndim != 1:
        raise ValueError(f"class labels must be 1-D, got shape {y.shape}")
    try:
        classes, idx = np.unique(y, return_inverse=True)
    except TypeError:
        raise TypeError(
            "y mixes label types that cannot be compared (e.g. strings and numbers); "
            "use labels of one type"
        ) from None
    K = len(classes)
    if K < 2:
        raise ValueError(
            f"y has a single class ({classes[0]!r}); classification needs at least 2 classes"
        )
    if loss == "logistic" and K != 2:
        raise ValueError(
            f"loss='logistic' is binary but y has {K} classes; use loss='cross_entropy'"
        )
    if K == 2 and loss in ("logistic", "squared"):
        Y = np.where(idx == 1, 1.0, -1.0)[:, None]
    else:
        Y = np.zeros((len(y), K))
        Y[np.arange(len(y)), idx] = 1.0
    return Y, classes


def decode_outputs(Z: np.ndarray, classes: np.ndarray | None) -> np.ndarray:
    """Map network outputs ``Z`` of shape ``(n, c)`` back to labels or targets."""
    if classes is None:
        return Z[:, 0] if Z.shape[1] == 1 else Z
    if Z.shape[1] == 1:
        return classes[(Z[:, 0] > 0).astype(int)]
    return classes[np.argmax(Z, axis=1)]
