"""Two-layer ReLU and gated-ReLU networks: the models the convex programs encode.

A :class:`TwoLayerReLU` with ``m`` hidden units computes

    f(X) = relu(X W1^T + b1) W2,        W1: (m, d), b1: (m,), W2: (m, c),

and a :class:`GatedTwoLayerReLU` replaces ``relu(z_j)`` by ``1[xa^T g_j > 0] z_j``
with a fixed gate ``g_j`` per unit (``xa = [x, 1]`` when the network has a
bias, ``xa = x`` otherwise; see the bias rule in :mod:`cvxnn._data`).

Weight-decay objective (math spec section 1.1)::

    L(f(X), Y) + alpha / 2 * (||W1||_F^2 + ||b1||^2 + ||W2||_F^2)

The first-layer bias is regularised (it is the last entry of a convex block).
There is no output bias.

Recovery from convex weights (math spec sections 2.3, 3.2 and 5.1).  A block
``v = V[:, i, k]`` (length ``d_aug``) of a convex ReLU solution becomes the unit
with first-layer vector ``v / sqrt(||v||)`` (its first ``d`` entries are the row
of ``W1``, the last one the bias when ``bias=True``) and output row
``+sqrt(||v||) e_k``; blocks of ``W`` give output ``-sqrt(||w||) e_k``.  Blocks
of a gated solution ``U`` become units with output ``+sqrt(||u||) e_k`` that
keep the gate ``G[:, i]``.  Then the network's weight-decay objective equals
the convex objective exactly (for ReLU weights that satisfy the cone
constraints on the data).

Model files are ``.npz`` archives readable with ``np.load(path,
allow_pickle=False)``: the weight arrays plus a JSON string under the key
``"metadata"`` carrying the format name, version, class, loss, bias, the
classes' dtype and a sha256 checksum of everything else.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit, softmax

from ._data import augment, check_X, check_alpha, check_y, decode_outputs, encode_targets
from .losses import LOSSES, Loss, get_loss

__all__ = [
    "TwoLayerReLU",
    "GatedTwoLayerReLU",
    "network_from_relu",
    "network_from_gated",
    "load",
    "FORMAT_NAME",
    "FORMAT_VERSION",
]

#: numbers in one chunk of hidden activations in ``forward`` (rows x neurons)
_FORWARD_CHUNK_ELEMENTS = 1 << 22

#: value of the ``format`` field of a saved network's metadata
FORMAT_NAME = "cvxnn.network"
#: version of the file layout written by :meth:`TwoLayerReLU.save`
FORMAT_VERSION = 1

# dtype kinds of ``classes`` that an .npz file stores without pickling
_STORABLE_KINDS = "biufUSMm"


class _ProbabilityUnavailable(AttributeError, ValueError):
    """``predict_proba`` asked of a network whose loss gives no probabilities."""


# ----------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------

def _as_weight(a, name: str, ndim: int) -> np.ndarray:
    try:
        arr = np.asarray(a)
    except Exception as exc:  # pragma: no cover - exotic containers
        raise TypeError(f"{name} could not be converted to an array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinity")
    return arr


def _frozen(a: np.ndarray, dtype) -> np.ndarray:
    out = np.array(a, dtype=dtype, order="C", copy=True)
    out.setflags(write=False)
    return out


def _check_loss_name(loss) -> str:
    name = get_loss(loss).name
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    return name


def _check_classes(classes, n_outputs: int) -> np.ndarray | None:
    if classes is None:
        return None
    arr = np.asarray(classes)
    if arr.ndim != 1:
        raise ValueError(f"classes must be a 1-D array of labels, got shape {arr.shape}")
    K = arr.shape[0]
    if K < 2:
        raise ValueError(f"classes must hold at least 2 labels, got {arr.tolist()!r}")
    try:
        distinct = len({v for v in arr.tolist()})
    except TypeError:
        raise TypeError("classes must hold hashable labels (numbers or strings)") from None
    if distinct != K:
        raise ValueError(f"classes must not contain duplicates, got {arr.tolist()!r}")
    if not (n_outputs == K or (K == 2 and n_outputs == 1)):
        raise ValueError(
            f"classes has {K} labels but the network has {n_outputs} output(s); "
            "expected one output per class, or a single output for 2 classes"
        )
    out = arr.copy()
    out.setflags(write=False)
    return out


def _check_threshold(threshold) -> float:
    threshold = float(threshold)
    if not np.isfinite(threshold) or threshold < 0:
        raise ValueError(f"threshold must be a finite number >= 0, got {threshold!r}")
    return threshold


def _direction_key(Aunit: np.ndarray) -> np.ndarray:
    """Entrywise key of unit vectors, equal for entries agreeing to ~12 significant digits."""
    mant, expo = np.frexp(Aunit)
    return np.hstack([np.round(np.ldexp(mant, 40)) + 0.0, expo.astype(np.float64)])


# ----------------------------------------------------------------------------
# Caratheodory reduction
# ----------------------------------------------------------------------------

def _null_basis(F: np.ndarray, cut: float) -> np.ndarray:
    """Orthonormal basis (columns) of the right null space of ``F`` (singular values <= cut)."""
    rows, cols = F.shape
    if rows > cols:
        F = np.linalg.qr(F, mode="r")          # same singular values and right vectors
    _, s, Vt = np.linalg.svd(F, full_matrices=True)
    rank = int(np.sum(s > cut))
    return Vt[rank:].T.copy()


def _reduce(F: np.ndarray, amount: np.ndarray, cut: float):
    """One Caratheodory reduction of ``F @ amount`` (``amount >= 0``) on all columns of ``F``.

    Returns the indices of the surviving columns and their new amounts.  The
    product ``F @ amount`` is unchanged up to ``cut``-sized terms, ``sum(amount)``
    does not increase, and the surviving columns have numerical rank equal to
    their number.
    """
    N = _null_basis(F, cut)                     # (m, k)
    idx = np.arange(F.shape[1])
    amount = amount.copy()
    while N.shape[1] > 0 and idx.size > 0:
        g = N.sum(axis=0)                       # N^T 1
        if np.linalg.norm(g) > 1e-8 * np.sqrt(idx.size):
            z = -(N @ g)                        # steepest decrease of sum(amount)
        else:                                   # the penalty is flat on null(F)
            z = N[:, 0].copy()
            if z.sum() > 0:
                z = -z
        zmax = np.max(np.abs(z))
        if zmax == 0:  # pragma: no cover - N has orthonormal columns
            break
        z /= zmax
        neg = z < -1e-12
        ratios = np.full(idx.size, np.inf)
        ratios[neg] = amount[neg] / -z[neg]
        j = int(np.argmin(ratios))
        amount += ratios[j] * z
        amount[j] = 0.0
        gone = np.flatnonzero(amount <= 0)
        # restrict the null space to vectors vanishing on `gone`: one Householder
        # reflection per removed column turns its row of N into a multiple of e_1
        for q in sorted(gone, key=lambda q: q != j):
            h = N[q]
            nh = np.linalg.norm(h)
            if nh <= 1e-12 or N.shape[1] == 0:
                continue
            v = h.copy()
            v[0] += np.copysign(nh, h[0])
            N = (N - np.outer(N @ v, v * (2.0 / (v @ v))))[:, 1:]
        live = amount > 0
        N, idx, amount = N[live], idx[live], amount[live]
    return idx, amount


def _caratheodory(F: np.ndarray, amount: np.ndarray, tol: float):
    """Reduce the nonnegative combination ``F @ amount`` to at most ``rank(F)`` columns.

    Columns are processed in batches of about ``F.shape[0]`` so that the cost
    stays ``O(m * rows^2)`` for ``m`` columns.  Returns the (sorted) indices of
    the surviving columns and their amounts.
    """
    rows, m = F.shape
    amount = np.asarray(amount, dtype=np.float64).copy()
    smax = 0.0
    if F.size:
        R = np.linalg.qr(F if rows >= m else F.T, mode="r")   # small square factor
        smax = float(np.linalg.svd(R, compute_uv=False)[0])
    if smax == 0.0:
        return np.empty(0, dtype=np.intp), np.empty(0)
    cut = tol * smax
    batch = max(rows, 32)
    active = np.empty(0, dtype=np.intp)
    start = 0
    while True:
        stop = m if m - start <= 2 * batch else start + batch
        cols = np.concatenate([active, np.arange(start, stop)])
        sub, sub_amount = _reduce(F[:, cols], amount[cols], cut)
        amount[cols] = 0.0
        amount[cols[sub]] = sub_amount
        active = cols[sub]
        if stop == m:
            break
        start = stop
    active = np.sort(active)
    return active, amount[active]


# ----------------------------------------------------------------------------
# the networks
# ----------------------------------------------------------------------------

class TwoLayerReLU:
    """Two-layer ReLU network ``f(X) = relu(X W1^T + b1) W2`` (no output bias).

    Parameters
    ----------
    W1 : array of shape (m, d)
        First-layer weights, one row per hidden unit.
    b1 : array of shape (m,) or None
        First-layer biases; ``None`` for a network without bias.
    W2 : array of shape (m, c) or (m,)
        Output weights, one row per hidden unit (``(m,)`` means ``c = 1``).
    classes : array of shape (K,) or None, default=None
        Class labels for classifiers, in output order: with one output,
        ``classes[0]`` is predicted for outputs ``<= 0`` and ``classes[1]``
        otherwise; with ``c = K`` outputs, ``classes[argmax]``.  ``None`` for
        regression.
    loss : {"squared", "logistic", "cross_entropy"}, default="squared"
        Loss the network was trained with; used by :meth:`objective` and
        :meth:`predict_proba`.

    Attributes
    ----------
    W1, b1, W2 : read-only arrays
        The weights given (copied, float32 or float64).

    Notes
    -----
    Instances are immutable: methods such as :meth:`balance` and :meth:`prune`
    return new networks.
    """

    _kind = "TwoLayerReLU"

    def __init__(self, W1, b1, W2, *, classes=None, loss: str | Loss = "squared") -> None:
        W1 = _as_weight(W1, "W1", 2)
        W2 = np.asarray(W2)
        if W2.ndim == 1:
            W2 = W2[:, None]
        W2 = _as_weight(W2, "W2", 2)
        m, d = W1.shape
        if d < 1:
            raise ValueError(f"W1 must have at least one column (feature), got shape {W1.shape}")
        if W2.shape[0] != m:
            raise ValueError(
                f"W1 and W2 must have one row per hidden unit: W1 has {m} rows, "
                f"W2 has {W2.shape[0]} (shape {W2.shape})"
            )
        if W2.shape[1] < 1:
            raise ValueError(f"W2 must have at least one column (output), got shape {W2.shape}")
        arrays = [W1, W2]
        if b1 is not None:
            b1 = _as_weight(b1, "b1", 1)
            if b1.shape[0] != m:
                raise ValueError(
                    f"b1 must have shape ({m},) (one bias per hidden unit), got {b1.shape}"
                )
            arrays.append(b1)
        dtype = np.result_type(*arrays)
        self.W1 = _frozen(W1, dtype)
        self.b1 = None if b1 is None else _frozen(b1, dtype)
        self.W2 = _frozen(W2, dtype)
        self.loss = _check_loss_name(loss)
        c = self.W2.shape[1]
        if self.loss == "logistic" and c != 1:
            raise ValueError(f"loss='logistic' needs a single output, the network has {c}")
        if self.loss == "cross_entropy" and c < 2:
            raise ValueError("loss='cross_entropy' needs at least 2 outputs (one per class)")
        self.classes = _check_classes(classes, c)

    # ------------------------------------------------------------------ shapes
    @property
    def n_neurons(self) -> int:
        """Number of hidden units ``m``."""
        return self.W1.shape[0]

    @property
    def n_features_in(self) -> int:
        """Number of input features ``d``."""
        return self.W1.shape[1]

    @property
    def n_outputs(self) -> int:
        """Number of outputs ``c``."""
        return self.W2.shape[1]

    @property
    def bias(self) -> bool:
        """Whether the hidden units have biases."""
        return self.b1 is not None

    @property
    def dtype(self) -> np.dtype:
        """Floating type of the weights (float32 or float64)."""
        return self.W1.dtype

    def _first_layer(self) -> np.ndarray:
        """Return ``[W1, b1]`` of shape ``(m, d_aug)`` (``W1`` alone without bias)."""
        if self.b1 is None:
            return np.array(self.W1)
        return np.hstack([self.W1, self.b1[:, None]])

    def _metadata_kwargs(self) -> dict[str, Any]:
        return {"classes": self.classes, "loss": self.loss}

    def _replace(self, A: np.ndarray, W2: np.ndarray, keep: np.ndarray | None = None):
        """New network of the same kind from first layer ``A`` (m, d_aug) and ``W2``.

        ``keep`` (indices of this network's units) selects per-unit data that is
        not a weight, i.e. the gates of a gated network.
        """
        d = self.n_features_in
        b1 = A[:, d] if self.bias else None
        return type(self)(A[:, :d], b1, W2, **self._metadata_kwargs())

    # ------------------------------------------------------------ prediction
    def _check_X(self, X) -> np.ndarray:
        X = check_X(X, "X")
        if X.shape[1] != self.n_features_in:
            raise ValueError(
                f"X has {X.shape[1]} features, but this network expects "
                f"{self.n_features_in} features"
            )
        return X

    def _preactivations(self, X: np.ndarray) -> np.ndarray:
        Z = X @ self.W1.T
        if self.b1 is not None:
            Z = Z + self.b1
        return Z

    def hidden(self, X) -> np.ndarray:
        """Return the hidden-unit activations.

        Parameters
        ----------
        X : array of shape (n, d)

        Returns
        -------
        H : array of shape (n, m)
            ``relu(X W1^T + b1)``.
        """
        return self._hidden(self._check_X(X))

    def _hidden(self, X: np.ndarray) -> np.ndarray:
        return np.maximum(self._preactivations(X), 0.0)

    def forward(self, X) -> np.ndarray:
        """Return the raw outputs.

        Parameters
        ----------
        X : array of shape (n, d)

        Returns
        -------
        Z : array of shape (n, c)
        """
        X = self._check_X(X)
        n, m = X.shape[0], self.W2.shape[0]
        rows = max(1, _FORWARD_CHUNK_ELEMENTS // max(m, 1))
        if n <= rows:
            return self._hidden(X) @ self.W2
        # row chunks keep the (rows, m) hidden activations small (MNIST with 10,000
        # neurons: 4.8 GB for all 60,000 rows at once)
        Z = np.empty((n, self.W2.shape[1]), dtype=np.result_type(X.dtype, self.W2.dtype))
        for s in range(0, n, rows):
            Z[s:s + rows] = self._hidden(X[s:s + rows]) @ self.W2
        return Z

    __call__ = forward

    def decision_function(self, X) -> np.ndarray:
        """Raw outputs, raveled to shape ``(n,)`` when the network has one output.

        Parameters
        ----------
        X : array of shape (n, d)

        Returns
        -------
        scores : array of shape (n,) or (n, c)
        """
        Z = self.forward(X)
        return Z[:, 0] if Z.shape[1] == 1 else Z

    def predict(self, X) -> np.ndarray:
        """Predicted labels (classifiers) or targets (regression).

        Parameters
        ----------
        X : array of shape (n, d)

        Returns
        -------
        y : array of shape (n,) or (n, c)
            With ``classes`` set: ``classes[1]`` where the single output is
            positive and ``classes[0]`` elsewhere, or ``classes[argmax]`` for
            several outputs.  Otherwise :meth:`decision_function`.
        """
        return decode_outputs(self.forward(X), self.classes)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, for networks trained with a probabilistic loss.

        Parameters
        ----------
        X : array of shape (n, d)

        Returns
        -------
        P : array of shape (n, 2) or (n, c)
            ``loss="logistic"``: columns ``[P(classes[0]), P(classes[1])] =
            [sigmoid(-z), sigmoid(z)]``; ``loss="cross_entropy"``: ``softmax(Z)``.

        Raises
        ------
        AttributeError, ValueError
            (one exception type deriving from both) when ``loss="squared"``.
        """
        if not get_loss(self.loss).gives_probabilities:
            raise _ProbabilityUnavailable(
                f"predict_proba is only available for loss='logistic' or "
                f"'cross_entropy'; this network has loss={self.loss!r} "
                "(use decision_function for raw scores)"
            )
        Z = self.forward(X)
        if self.loss == "logistic":
            z = Z[:, 0]
            return np.column_stack([expit(-z), expit(z)])
        return softmax(Z, axis=1)

    # -------------------------------------------------------------- objective
    def penalty(self, alpha: float = 1.0) -> float:
        """Weight decay ``alpha / 2 * (||W1||_F^2 + ||b1||^2 + ||W2||_F^2)``.

        Parameters
        ----------
        alpha : float, default=1.0

        Returns
        -------
        float
        """
        alpha = check_alpha(alpha)
        sq = float(np.sum(np.square(self.W1, dtype=np.float64)))
        sq += float(np.sum(np.square(self.W2, dtype=np.float64)))
        if self.b1 is not None:
            sq += float(np.sum(np.square(self.b1, dtype=np.float64)))
        return 0.5 * alpha * sq

    def group_norm(self) -> float:
        """``sum_j ||(w_j, b_j)|| * ||W2_j||``: the penalty (over ``alpha``) once balanced."""
        a = np.linalg.norm(self._first_layer().astype(np.float64), axis=1)
        b = np.linalg.norm(self.W2.astype(np.float64), axis=1)
        return float(np.dot(a, b))

    def _class_indices(self, y: np.ndarray) -> np.ndarray:
        if y.ndim != 1:
            raise ValueError(f"class labels y must be 1-D, got shape {y.shape}")
        lookup: dict[Any, int] = {}
        for i, label in enumerate(self.classes.tolist()):
            lookup.setdefault(label, i)
        try:
            uniq, inv = np.unique(y, return_inverse=True)
        except TypeError:
            raise ValueError(
                "y mixes label types that cannot be compared; use labels of one type"
            ) from None
        idx_u = np.empty(len(uniq), dtype=np.intp)
        unknown = []
        for j, label in enumerate(uniq.tolist()):
            try:
                idx_u[j] = lookup[label]
            except (KeyError, TypeError):
                unknown.append(label)
        if unknown:
            raise ValueError(
                f"y contains label(s) {unknown[:5]!r} that are not among the network's "
                f"classes {self.classes.tolist()!r}"
            )
        return idx_u[np.ravel(inv)]

    def encode_targets(self, y, loss: str | Loss | None = None) -> np.ndarray:
        """Encode ``y`` as the target matrix the loss expects, in this network's class order.

        Parameters
        ----------
        y : array of shape (n,) or (n, c)
            Labels (for a network with ``classes``) or regression targets.
        loss : str or None, default=None
            Defaults to the network's loss.

        Returns
        -------
        Y : array of shape (n, c), float64
            Binary ``logistic``/``squared`` classifiers with one output:
            ``-1`` for ``classes[0]``, ``+1`` for ``classes[1]``; otherwise
            one-hot columns in ``classes`` order; regression targets as given.
        """
        name = self.loss if loss is None else _check_loss_name(loss)
        y = np.asarray(y)
        if y.ndim == 0:
            raise ValueError("y must be 1-D (or 2-D for several outputs), got a scalar")
        y = check_y(y, y.shape[0])
        c = self.n_outputs
        if self.classes is None:
            Y, _ = encode_targets(y, name)
        else:
            idx = self._class_indices(y)
            K = len(self.classes)
            if name == "logistic" and K != 2:
                raise ValueError(
                    f"loss='logistic' is binary but the network has {K} classes"
                )
            if K == 2 and c == 1 and name in ("logistic", "squared"):
                Y = np.where(idx == 1, 1.0, -1.0)[:, None]
            elif c == K and name != "logistic":
                Y = np.zeros((len(idx), K))
                Y[np.arange(len(idx)), idx] = 1.0
            else:
                raise ValueError(
                    f"loss={name!r} cannot be evaluated on a network with {c} output(s) "
                    f"and {K} classes"
                )
        if Y.shape[1] != c:
            raise ValueError(
                f"y encodes {Y.shape[1]} output(s) for loss={name!r}, but the network "
                f"has {c} output(s)"
            )
        return Y

    def objective(self, X, y, alpha: float, loss: str | Loss | None = None) -> float:
        """Weight-decay training objective of the network.

        ``L(f(X), Y) + alpha / 2 * (||W1||_F^2 + ||b1||^2 + ||W2||_F^2)`` with
        ``Y`` from :meth:`encode_targets`.

        Parameters
        ----------
        X : array of shape (n, d)
        y : array of shape (n,) or (n, c)
            Raw labels (classifiers) or targets (regression).
        alpha : float
            Weight-decay strength (``>= 0``).
        loss : str or None, default=None
            Defaults to the network's loss.

        Returns
        -------
        float
        """
        alpha = check_alpha(alpha)
        X = self._check_X(X)
        name = self.loss if loss is None else _check_loss_name(loss)
        y = check_y(y, X.shape[0])
        Y = self.encode_targets(y, name)
        Z = self._hidden(X) @ self.W2
        return float(get_loss(name).value(Z.astype(np.float64), Y)) + self.penalty(alpha)

    # ------------------------------------------------- equivalent networks
    def balance(self) -> "TwoLayerReLU":
        """Return the equivalent network with the smallest weight decay.

        Each unit ``(w_j, b_j, W2_j)`` is rescaled to ``(gamma w_j, gamma b_j,
        W2_j / gamma)`` with ``gamma = sqrt(||W2_j|| / ||(w_j, b_j)||)`` so that
        ``||(w_j, b_j)|| = ||W2_j||`` (positive homogeneity leaves the outputs
        unchanged).  Units with a zero input or output part contribute nothing
        and are set to zero entirely (they are kept, so ``n_neurons`` is
        unchanged).  The penalty becomes ``alpha * sum_j ||(w_j, b_j)|| ||W2_j||``,
        its minimum over rescalings.

        Returns
        -------
        TwoLayerReLU
            A new network of the same class.
        """
        A = self._first_layer()
        W2 = np.array(self.W2)
        a = np.linalg.norm(A, axis=1)
        b = np.linalg.norm(W2, axis=1)
        live = (a > 0) & (b > 0)
        sa = np.sqrt(a[live])
        sb = np.sqrt(b[live])
        A[live] *= (sb / sa)[:, None]
        W2[live] *= (sa / sb)[:, None]
        A[~live] = 0.0
        W2[~live] = 0.0
        return self._replace(A, W2)

    def _unit_activations(self, X: np.ndarray, Aunit: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """Activations (n, m) of units whose first layer is ``Aunit`` (restricted to ``keep``)."""
        Xa = augment(X, self.bias)
        return np.maximum(Xa @ Aunit.T, 0.0)

    def _merge_keys(self, Aunit: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """Rows equal exactly when units ``keep`` may be merged (same unit direction)."""
        return _direction_key(Aunit)

    def prune(self, X, *, tol: float = 1e-12, merge: bool = True) -> "TwoLayerReLU":
        """Remove redundant units without changing predictions on ``X`` (Caratheodory).

        Let ``F`` (``n*c x m``) have column ``j`` equal to ``vec(h_j(X) W2_j^T)``,
        the contribution of unit ``j`` to the outputs on ``X``.  The returned
        network has at most ``rank(F) <= n*c`` units (``<= n`` for one output),
        the same outputs on ``X`` (up to rounding), and a weight-decay penalty
        no larger than the balanced original's.

        Algorithm: balance the units, so that unit ``j`` has penalty
        ``alpha * p_j`` with ``p_j = ||(w_j, b_j)|| ||W2_j||``, and drop zero
        units.  Optionally merge units with identical directions (and gates).
        Then, while ``m > rank(F)``: take ``t`` in the null space of ``F``
        (orthonormal basis from one SVD, updated as units leave), choose the sign
        (and, among null vectors, the direction of steepest penalty decrease) so
        that ``sum_j p_j t_j <= 0``, and scale the output of unit ``j`` by
        ``1 + s t_j`` with the largest ``s`` keeping every factor ``>= 0``.
        Outputs on ``X`` do not change (``F t = 0``), the penalty is linear in
        ``s`` and does not increase, and at least one unit reaches zero and is
        removed.

        Parameters
        ----------
        X : array of shape (n, d)
            Data on which the outputs must be preserved (usually the training set).
        tol : float, default=1e-12
            Threshold, relative to the largest singular value, below which a
            singular direction of ``F`` counts as a null direction (``F`` is built
            from the units rescaled to unit norm).  Outputs on ``X`` change by at
            most about ``tol`` relative.
        merge : bool, default=True
            First merge units whose unit-norm first-layer weights agree entrywise
            to about 12 significant digits (and, for gated networks, whose gates
            are identical); their outputs add up.  This preserves the outputs
            everywhere, not only on ``X``.

        Returns
        -------
        TwoLayerReLU
            A new, balanced network of the same class.
        """
        X = self._check_X(X)
        tol = float(tol)
        if not np.isfinite(tol) or tol < 0:
            raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
        A = self._first_layer().astype(np.float64)
        W2 = self.W2.astype(np.float64)
        a = np.linalg.norm(A, axis=1)
        b = np.linalg.norm(W2, axis=1)
        keep = np.flatnonzero((a > 0) & (b > 0))
        Au = A[keep] / a[keep, None]          # unit first-layer directions
        Ou = W2[keep] / b[keep, None]         # unit output directions
        amount = a[keep] * b[keep]            # p_j, the balanced unit's penalty / alpha

        if merge and len(keep) > 1:
            keys = self._merge_keys(Au, keep)
            _, first, inv = np.unique(keys, axis=0, return_index=True, return_inverse=True)
            inv = np.ravel(inv)
            if len(first) < len(keep):
                outs = np.zeros((len(first), W2.shape[1]))
                np.add.at(outs, inv, amount[:, None] * Ou)
                amount = np.linalg.norm(outs, axis=1)
                live = amount > 0
                sel = first[live]
                Au, keep = Au[sel], keep[sel]
                Ou = outs[live] / amount[live, None]
                amount = amount[live]

        if len(keep) > 0:
            H = self._unit_activations(X, Au, keep)                  # (n, m)
            n, c = H.shape[0], Ou.shape[1]
            Fu = (H[:, None, :] * Ou.T[None, :, :]).reshape(n * c, len(keep))
            alive, amount = _caratheodory(Fu, amount, tol)
            keep, Au, Ou = keep[alive], Au[alive], Ou[alive]

        root = np.sqrt(amount)[:, None]
        return self._replace((Au * root).astype(self.dtype), (Ou * root).astype(self.dtype), keep)

    # ------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """Return the weights and metadata as a dict of copies.

        Returns
        -------
        dict
            Keys ``"class"``, ``"W1"``, ``"b1"`` (None without bias), ``"W2"``,
            ``"classes"`` (None for regression), ``"loss"``, ``"bias"`` and, for
            gated networks, ``"gates"``.
        """
        return {
            "class": self._kind,
            "W1": np.array(self.W1),
            "b1": None if self.b1 is None else np.array(self.b1),
            "W2": np.array(self.W2),
            "classes": None if self.classes is None else np.array(self.classes),
            "loss": self.loss,
            "bias": self.bias,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TwoLayerReLU":
        """Inverse of :meth:`to_dict`."""
        kind = data.get("class", cls._kind)
        kw = {"classes": data.get("classes"), "loss": data.get("loss", "squared")}
        if kind == "GatedTwoLayerReLU":
            return GatedTwoLayerReLU(data["W1"], data.get("b1"), data["W2"], data["gates"], **kw)
        if kind == "TwoLayerReLU":
            return TwoLayerReLU(data["W1"], data.get("b1"), data["W2"], **kw)
        raise ValueError(f"unknown network class {kind!r}")

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {"W1": np.asarray(self.W1), "W2": np.asarray(self.W2)}
        if self.b1 is not None:
            arrays["b1"] = np.asarray(self.b1)
        return arrays

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the network to a single ``.npz`` file.

        The file holds ``W1``, ``b1`` (with bias), ``W2``, ``gates`` (gated
        networks), ``classes`` (classifiers) and a JSON string ``metadata``
        (format, version, class, loss, bias, classes dtype, sha256 checksum).  It
        is written to a temporary file in the same directory and moved into
        place, so a reader never sees a partial file.  Read it back with
        :func:`load`, or with ``np.load(path, allow_pickle=False)``.

        Parameters
        ----------
        path : str or os.PathLike
            Destination, used exactly as given (no ``.npz`` is appended).
        overwrite : bool, default=False
            Replace an existing file; otherwise an existing file is an error.

        Returns
        -------
        pathlib.Path
            The path written.

        Raises
        ------
        FileExistsError
            If ``path`` exists and ``overwrite`` is False.
        ValueError
            If the labels in ``classes`` cannot be stored without pickling.
        """
        path = Path(os.fspath(path))
        if path.exists() and not overwrite:
            raise FileExistsError(
                f"{str(path)!r} already exists; pass overwrite=True to replace it"
            )
        arrays = self._arrays()
        classes_meta = None
        if self.classes is not None:
            stored = _storable_classes(self.classes)
            arrays["classes"] = stored
            classes_meta = {"dtype": self.classes.dtype.str, "stored_dtype": stored.dtype.str}
        meta = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "class": self._kind,
            "loss": self.loss,
            "bias": self.bias,
            "n_features_in": self.n_features_in,
            "n_neurons": self.n_neurons,
            "n_outputs": self.n_outputs,
            "classes": classes_meta,
        }
        try:
            from . import __version__ as version
        except ImportError:  # pragma: no cover
            version = "unknown"
        meta["cvxnn_version"] = version
        meta["checksum"] = _checksum(arrays, meta)
        arrays["metadata"] = np.array(json.dumps(meta, sort_keys=True))

        directory = path.parent if str(path.parent) else Path(".")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
                fh.flush()
                os.fsync(fh.fileno())
            mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
            os.chmod(tmp, mode)
            if overwrite:
                os.replace(tmp, path)
            else:
                try:
                    os.link(tmp, path)          # atomic "create, never replace"
                except FileExistsError:
                    raise FileExistsError(
                        f"{str(path)!r} already exists; pass overwrite=True to replace it"
                    ) from None
                except OSError:                 # no hard links on this file system
                    if path.exists():
                        raise FileExistsError(
                            f"{str(path)!r} already exists; pass overwrite=True to replace it"
                        ) from None
                    os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    # ---------------------------------------------------------------- torch
    def to_torch(self, dtype=None, device=None):
        """The network as a PyTorch module (needs ``cvxnn[torch]``).

        Returns ``torch.nn.Sequential(Linear(d, m, bias=self.bias), ReLU(),
        Linear(m, c, bias=False))`` with the weights copied: its output on a
        tensor ``X`` of shape ``(n, d)`` is :meth:`forward` (shape ``(n, c)``),
        the raw scores (no softmax or sigmoid).  ``classes`` and ``loss`` are
        not carried; :meth:`from_torch` takes them back.

        Parameters
        ----------
        dtype : torch.dtype or str, optional
            Parameter precision; default the network's (float32 or float64).
        device : str or torch.device, optional
            Where the parameters live; default the CPU.

        Returns
        -------
        torch.nn.Sequential
        """
        import torch

        if dtype is None:
            dtype = np.dtype(self.dtype).name
        if not isinstance(dtype, torch.dtype):
            name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
            if name not in ("float16", "bfloat16", "float32", "float64"):
                raise ValueError(f"dtype must be a floating torch dtype, got {dtype!r}")
            dtype = getattr(torch, name)
        m, d, c = self.n_neurons, self.n_features_in, self.n_outputs
        kw = {"dtype": dtype, "device": device}
        first = torch.nn.Linear(d, m, bias=self.bias, **kw)
        second = torch.nn.Linear(m, c, bias=False, **kw)
        with torch.no_grad():
            first.weight.copy_(torch.as_tensor(np.array(self.W1)))
            if self.bias:
                first.bias.copy_(torch.as_tensor(np.array(self.b1)))
            second.weight.copy_(torch.as_tensor(np.array(self.W2).T))
        return torch.nn.Sequential(first, torch.nn.ReLU(), second)

    @classmethod
    def from_torch(cls, module, classes=None, loss: str | Loss = "squared") -> "TwoLayerReLU":
        """Network from a PyTorch ``Linear -> ReLU -> Linear`` module.

        Accepts the output of :meth:`to_torch`, or any module whose leaf modules
        are, in order, ``Linear(d, m)`` (with or without bias), ``ReLU`` and
        ``Linear(m, c)`` without bias (a zero output bias is accepted; a non-zero
        one is refused: cvxnn's networks have no output bias).  The weights are
        copied as float64.

        Parameters
        ----------
        module : torch.nn.Module
        classes : array of shape (K,), optional
            Class labels, as in :class:`TwoLayerReLU`.
        loss : {"squared", "logistic", "cross_entropy"}, default="squared"

        Returns
        -------
        TwoLayerReLU
        """
        if issubclass(cls, GatedTwoLayerReLU):
            raise TypeError("a torch Linear-ReLU-Linear module is a ReLU network; use "
                            "TwoLayerReLU.from_torch (gated networks have fixed gates)")
        if not (hasattr(module, "modules") and hasattr(module, "parameters")):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        from .certify import _from_torch

        try:
            W1, b1, W2 = _from_torch(module)
        except ValueError as exc:
            msg = str(exc)
            raise ValueError("module" + msg[len("network"):] if msg.startswith("network:")
                             else msg) from None
        return TwoLayerReLU(W1, b1, W2, classes=classes, loss=loss)

    # ------------------------------------------------------------- recovery
    @classmethod
    def from_relu(cls, V, W, *, bias: bool, classes=None, loss: str | Loss = "squared",
                  threshold: float = 1e-12) -> "TwoLayerReLU":
        """Network encoded by convex ReLU weights; see :func:`network_from_relu`."""
        return network_from_relu(V, W, bias=bias, classes=classes, loss=loss,
                                 threshold=threshold)

    @classmethod
    def from_gated(cls, U, G, *, bias: bool, classes=None, loss: str | Loss = "squared",
                   threshold: float = 1e-12) -> "GatedTwoLayerReLU":
        """Network encoded by convex gated weights; see :func:`network_from_gated`."""
        return network_from_gated(U, G, bias=bias, classes=classes, loss=loss,
                                  threshold=threshold)

    # ------------------------------------------------------------------ misc
    def _repr_extra(self) -> str:
        return ""

    def __repr__(self) -> str:
        parts = [
            f"n_features_in={self.n_features_in}",
            f"n_neurons={self.n_neurons}",
            f"n_outputs={self.n_outputs}",
            f"bias={self.bias}",
            f"loss={self.loss!r}",
        ]
        if self.classes is not None:
            labels = self.classes.tolist()
            shown = labels if len(labels) <= 6 else labels[:5] + ["..."]
            parts.append(f"classes={shown!r}")
        return f"{type(self).__name__}({', '.join(parts)}{self._repr_extra()})"


class GatedTwoLayerReLU(TwoLayerReLU):
    """Two-layer gated-ReLU network with fixed gates (math spec section 5.1).

    ``f(x) = sum_j 1[xa^T g_j > 0] (x^T w_j + b_j) W2_j`` with ``xa = [x, 1]``
    when the network has a bias and ``xa = x`` otherwise.

    Parameters
    ----------
    W1 : array of shape (m, d)
    b1 : array of shape (m,) or None
    W2 : array of shape (m, c) or (m,)
    gates : array of shape (m, d_aug)
        One gate per hidden unit, ``d_aug = d + 1`` with bias, else ``d``.  Gates
        are not regularised and never rescaled.
    classes : array of shape (K,) or None, default=None
    loss : {"squared", "logistic", "cross_entropy"}, default="squared"

    See Also
    --------
    TwoLayerReLU
    """

    _kind = "GatedTwoLayerReLU"

    def __init__(self, W1, b1, W2, gates, *, classes=None, loss: str | Loss = "squared") -> None:
        super().__init__(W1, b1, W2, classes=classes, loss=loss)
        gates = _as_weight(gates, "gates", 2)
        d_aug = self.n_features_in + int(self.bias)
        if gates.shape != (self.n_neurons, d_aug):
            raise ValueError(
                f"gates must have shape (n_neurons, d_aug) = ({self.n_neurons}, {d_aug}) "
                f"(d_aug = n_features + 1 with bias), got {gates.shape}"
            )
        self.gates = _frozen(gates, np.result_type(gates, self.W1))

    def _replace(self, A, W2, keep=None):
        d = self.n_features_in
        b1 = A[:, d] if self.bias else None
        gates = self.gates if keep is None else self.gates[keep]
        return type(self)(A[:, :d], b1, W2, gates, **self._metadata_kwargs())

    def _mask(self, X: np.ndarray, gates: np.ndarray) -> np.ndarray:
        return augment(X, self.bias) @ gates.T > 0

    def _hidden(self, X: np.ndarray) -> np.ndarray:
        Z = self._preactivations(X)
        return np.where(self._mask(X, self.gates), Z, 0.0)

    def hidden(self, X) -> np.ndarray:
        """Return the gated activations ``1[Xa g_j > 0] (X w_j + b_j)``, shape ``(n, m)``."""
        return super().hidden(X)

    def _unit_activations(self, X, Aunit, keep):
        Xa = augment(X, self.bias)
        return np.where(self._mask(X, self.gates[keep]), Xa @ Aunit.T, 0.0)

    def _merge_keys(self, Aunit, keep):
        # same unit direction and exactly the same gate (units recovered from
        # one pattern share their gate bit for bit)
        return np.hstack([_direction_key(Aunit), self.gates[keep].astype(np.float64) + 0.0])

    def to_torch(self, dtype=None, device=None):
        """Not available: a gated unit is not a ReLU of its own pre-activation.

        Raises ``TypeError``.  Convert the solution to a ReLU network first
        (``SolveResult.to_relu(X)``, cone decomposition), then call
        :meth:`TwoLayerReLU.to_torch`.
        """
        raise TypeError(
            "GatedTwoLayerReLU.to_torch: a gated network multiplies each unit's linear "
            "response by a fixed gate 1[xa^T g > 0], which no torch Linear-ReLU-Linear "
            "module represents; convert it to a ReLU network first with "
            "SolveResult.to_relu(X) and call to_torch on that network"
        )

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["gates"] = np.array(self.gates)
        return out

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = super()._arrays()
        arrays["gates"] = np.asarray(self.gates)
        return arrays


# ----------------------------------------------------------------------------
# recovery from convex weights
# ----------------------------------------------------------------------------

def _convex_blocks(U, name: str, bias: bool) -> np.ndarray:
    ndim = np.ndim(U)
    if ndim not in (2, 3):
        raise ValueError(
            f"{name} must have shape (d_aug, P, c) or (d_aug, P), got {np.shape(U)}"
        )
    U = _as_weight(U, name, ndim)
    if U.ndim == 2:
        U = U[:, :, None]
    min_d = 2 if bias else 1
    if U.shape[0] < min_d:
        raise ValueError(
            f"{name} has blocks of length {U.shape[0]}; with bias={bias} at least "
            f"{min_d} entries are needed (features{' + bias' if bias else ''})"
        )
    return U


def _units_from_blocks(U: np.ndarray, norms: np.ndarray, keep: np.ndarray, sign: float):
    """Units ``(first_layer, pattern, output, output_weight)`` of the kept blocks of ``U``.

    Blocks are visited pattern-major (``i``, then ``k``).
    """
    units = []
    for i, k in np.argwhere(keep):
        root = np.sqrt(norms[i, k])
        units.append((U[:, i, k] / root, int(i), int(k), sign * root))
    return units


def _assemble(units, d_aug: int, c: int, bias: bool, dtype):
    m = len(units)
    A = np.zeros((m, d_aug), dtype=dtype)
    W2 = np.zeros((m, c), dtype=dtype)
    pats = np.zeros(m, dtype=np.intp)
    for j, (u, i, k, out) in enumerate(units):
        A[j] = u
        W2[j, k] = out
        pats[j] = i
    d = d_aug - int(bias)
    return A[:, :d], (A[:, d] if bias else None), W2, pats


def network_from_relu(V, W, *, bias: bool, classes=None, loss: str | Loss = "squared",
                      threshold: float = 1e-12) -> TwoLayerReLU:
    """ReLU network encoded by a convex ReLU solution ``(V, W)`` (math spec 2.3, 3.2).

    Every block ``v = V[:, i, k]`` with ``||v|| > threshold * M`` (``M`` the
    largest block norm in ``V`` and ``W``) gives one unit with first layer
    ``v / sqrt(||v||)`` and output row ``+sqrt(||v||) e_k``; blocks of ``W`` give
    output ``-sqrt(||w||) e_k``.  Smaller blocks are dropped (they change the
    outputs by at most their relative size).  Units appear in the order: ``V``
    blocks, then ``W`` blocks, each sorted by pattern ``i`` then output ``k``.
    When ``V`` and ``W`` satisfy the cone constraints on ``X``, the network's
    weight-decay objective on ``X`` equals the convex objective.

    Parameters
    ----------
    V, W : arrays of shape (d_aug, P, c) (or (d_aug, P) for c = 1)
        Convex weights; ``d_aug = d + 1`` with bias (last entry = unit bias).
    bias : bool
        Whether the last entry of each block is a bias.
    classes : array of shape (K,) or None, default=None
        Class labels in output order (see :class:`TwoLayerReLU`).
    loss : str, default="squared"
    threshold : float, default=1e-12
        Relative block-norm threshold below which blocks are dropped.

    Returns
    -------
    TwoLayerReLU
    """
    V = _convex_blocks(V, "V", bias)
    W = _convex_blocks(W, "W", bias)
    if V.shape != W.shape:
        raise ValueError(f"V and W must have the same shape, got {V.shape} and {W.shape}")
    threshold = _check_threshold(threshold)
    nv = np.linalg.norm(V, axis=0)
    nw = np.linalg.norm(W, axis=0)
    M = max(float(nv.max(initial=0.0)), float(nw.max(initial=0.0)))
    units = _units_from_blocks(V, nv, (nv > threshold * M) & (nv > 0), 1.0)
    units += _units_from_blocks(W, nw, (nw > threshold * M) & (nw > 0), -1.0)
    W1, b1, W2, _ = _assemble(units, V.shape[0], V.shape[2], bias, np.result_type(V, W))
    return TwoLayerReLU(W1, b1, W2, classes=classes, loss=loss)


def network_from_gated(U, G, *, bias: bool, classes=None, loss: str | Loss = "squared",
                       threshold: float = 1e-12) -> GatedTwoLayerReLU:
    """Gated-ReLU network encoded by a convex gated solution ``U`` (math spec 5.1, 2.3).

    Every block ``u = U[:, i, k]`` with ``||u|| > threshold * max block norm``
    gives one unit with gate ``G[:, i]``, first layer ``u / sqrt(||u||)`` and
    output row ``sqrt(||u||) e_k``; smaller blocks are dropped.  Units are
    ordered by pattern ``i`` then output ``k``.  The network's weight-decay
    objective equals the convex gated objective on any data.

    Parameters
    ----------
    U : array of shape (d_aug, P, c) (or (d_aug, P) for c = 1)
    G : array of shape (d_aug, P)
        Gates; masks are ``Xa @ G > 0``.
    bias : bool
    classes : array of shape (K,) or None, default=None
    loss : str, default="squared"
    threshold : float, default=1e-12

    Returns
    -------
    GatedTwoLayerReLU
    """
    U = _convex_blocks(U, "U", bias)
    G = _as_weight(G, "G", 2)
    if G.shape != U.shape[:2]:
        raise ValueError(
            f"G must have shape (d_aug, P) = {U.shape[:2]} to match U {U.shape}, got {G.shape}"
        )
    threshold = _check_threshold(threshold)
    nu = np.linalg.norm(U, axis=0)
    M = float(nu.max(initial=0.0))
    units = _units_from_blocks(U, nu, (nu > threshold * M) & (nu > 0), 1.0)
    W1, b1, W2, pats = _assemble(units, U.shape[0], U.shape[2], bias, U.dtype)
    return GatedTwoLayerReLU(W1, b1, W2, G[:, pats].T, classes=classes, loss=loss)


# ----------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------

def _storable_classes(classes: np.ndarray) -> np.ndarray:
    if classes.dtype.kind in _STORABLE_KINDS:
        return np.ascontiguousarray(classes)
    values = classes.tolist()
    if all(isinstance(v, str) for v in values):
        return np.array(values, dtype=str)
    if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
           for v in values):
        arr = np.array(values)
        if arr.dtype.kind in "iuf":
            return arr
    raise ValueError(
        "classes must be numbers or strings to be saved without pickling, got "
        f"labels of types {sorted({type(v).__name__ for v in values})}"
    )


def _checksum(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> str:
    h = hashlib.sha256()
    body = {k: v for k, v in meta.items() if k != "checksum"}
    h.update(json.dumps(body, sort_keys=True).encode("utf-8"))
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"\0{key}\0{a.dtype.str}\0{a.shape}\0".encode("utf-8"))
        h.update(a.tobytes())
    return "sha256:" + h.hexdigest()


def load(path: str | os.PathLike) -> TwoLayerReLU:
    """Read a network written by :meth:`TwoLayerReLU.save`.

    The file is opened with ``np.load(..., allow_pickle=False)``, so loading an
    untrusted file never runs code.  Format, version and checksum are verified.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    TwoLayerReLU or GatedTwoLayerReLU

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a cvxnn network file, is truncated or corrupted, was
        altered after saving, or was written by a newer format version.
    """
    path = Path(os.fspath(path))
    where = str(path)
    with open(path, "rb") as fh:
        try:
            loaded = np.load(fh, allow_pickle=False)
        except Exception as exc:
            raise ValueError(
                f"{where!r} is not a cvxnn network file: it cannot be read as an .npz "
                f"archive (truncated, corrupted or another format; {type(exc).__name__})"
            ) from None
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError(
                f"{where!r} is not a cvxnn network file (a single .npy array, not an .npz archive)"
            )
        try:
            with loaded:
                arrays = {key: loaded[key] for key in loaded.files}
        except Exception as exc:
            raise ValueError(
                f"{where!r} is truncated or corrupted and cannot be read ({exc})"
            ) from None

    raw = arrays.pop("metadata", None)
    if raw is None or raw.ndim != 0 or raw.dtype.kind != "U":
        raise ValueError(f"{where!r} is not a cvxnn network file (no 'metadata' entry)")
    try:
        meta = json.loads(str(raw[()]))
    except ValueError:
        raise ValueError(f"{where!r} has unreadable metadata (not JSON)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ValueError(
            f"{where!r} is not a cvxnn network file (format "
            f"{meta.get('format') if isinstance(meta, dict) else None!r}, "
            f"expected {FORMAT_NAME!r})"
        )
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"{where!r} has an invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{where!r} uses format version {version}, newer than this cvxnn "
            f"supports ({FORMAT_VERSION}); upgrade cvxnn to read it"
        )
    if version < 1:
        raise ValueError(f"{where!r} has an invalid format_version {version!r}")
    if meta.get("checksum") != _checksum(arrays, meta):
        raise ValueError(
            f"{where!r} failed its checksum: the file was altered or corrupted after saving"
        )

    kind = meta.get("class")
    expected = {"W1", "W2"}
    if meta.get("bias"):
        expected.add("b1")
    if kind == "GatedTwoLayerReLU":
        expected.add("gates")
    elif kind != "TwoLayerReLU":
        raise ValueError(f"{where!r} holds an unknown network class {kind!r}")
    cmeta = meta.get("classes")
    if cmeta is not None:
        expected.add("classes")
    if set(arrays) != expected:
        raise ValueError(
            f"{where!r} has entries {sorted(arrays)}, expected {sorted(expected)}"
        )
    classes = None
    if cmeta is not None:
        classes = arrays["classes"]
        if np.dtype(cmeta.get("dtype", classes.dtype.str)).kind == "O":
            classes = classes.astype(object)
    data = {
        "class": kind,
        "W1": arrays["W1"],
        "b1": arrays.get("b1"),
        "W2": arrays["W2"],
        "classes": classes,
        "loss": meta.get("loss", "squared"),
    }
    if "gates" in arrays:
        data["gates"] = arrays["gates"]
    try:
        return TwoLayerReLU.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where!r} holds inconsistent network data: {exc}") from None
