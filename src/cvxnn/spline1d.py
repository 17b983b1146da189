"""Exact two-layer ReLU networks on scalar inputs: optimal networks are linear splines.

For scalar data ``x_1..x_n`` the weight-decay problem of a two-layer ReLU network
(math spec sections 1.1 and 4.3 (4)) can be solved exactly for any width, and
the optimal network is a continuous piecewise-linear function (a linear spline)
whose kinks ("knots") are the points ``-b_j / w_j`` of its active neurons.
:func:`spline1d` returns that spline as a :class:`Spline1D`.  Three treatments of
the bias give three programs.

Objective (``L`` the squared loss ``||f - y||^2 / (2n)`` or the mean logistic
loss with labels mapped to -1/+1, as everywhere in cvxnn)::

    regularized:  L(f) + alpha/2 (||W1||^2 + ||b1||^2 + ||W2||^2),  f(t) = sum_j a_j (w_j t + b_j)_+
    free:         L(f) + alpha/2 (||W1||^2 + ||W2||^2),             f(t) = sum_j a_j (w_j t + b_j)_+ + c
    none:         L(f) + alpha/2 (||W1||^2 + ||W2||^2),             f(t) = sum_j a_j (w_j t)_+

with ``W1 = (w_j)``, ``b1 = (b_j)``, ``W2 = (a_j)``.  In the ``free`` problem the
neuron biases ``b_j`` and the output offset (intercept) ``c`` are not penalised.

``bias="regularized"``
    The ordinary cvxnn network (ones column, bias inside the weight decay).  The
    data ``[x, 1]`` have rank 2, so all (about ``2n``) activation patterns are
    enumerated and the convex program of math spec 2.2 is solved by
    :func:`cvxnn.solve` (``gates="enumerate"``).  Knots need *not* be at data
    points (math spec 4.3 (4)): a neuron with knot ``tau`` and slope change
    ``gamma`` costs ``alpha |gamma| sqrt(1 + tau^2)``, so a knot between data
    points is cheaper than the convex combination of the neighbouring ones;
    knots sit at data points where a cell's cone constraint is active (often).
    The network is pruned (:meth:`TwoLayerReLU.prune`) and units whose knots
    agree to ``1e-7`` (relative; solver accuracy, typically two cells meeting at
    a data point) are moved to one knot and fused per side; the objective is
    recomputed for the returned network (``relative_gap`` is the solver's).

``bias="none"``
    ``[x]`` has rank one, the only neuron directions are ``w = +-1`` and the two
    features ``(x)_+`` and ``(-x)_+`` have disjoint supports (math spec 4.3 (2)).
    Squared loss, closed form: ``gamma_+- = S_{n alpha}(c_+-^T y) / ||c_+-||^2``
    with ``c_+ = (x)_+``, ``c_- = (-x)_+`` and ``S`` the soft threshold; logistic
    loss: one scalar convex equation per side (Brent's method).  The spline has at
    most one knot, at 0.

``bias="free"`` -- the exact finite program
    *Neuron cost.*  With ``b`` free, a balanced neuron ``a (w t + b)_+`` costs
    ``alpha |a| |w|`` (AM-GM over the rescaling ``(w, b, a) -> (s w, s b, a/s)``).
    For ``w != 0`` it equals ``gamma (s (t - tau))_+`` with knot ``tau = -b/w``,
    side ``s = sign(w)`` and ``gamma = a |w|``, at cost ``alpha |gamma|``.  A neuron
    with ``w = 0`` is a constant, which the free intercept ``c`` provides for
    nothing, so it never helps.  The problem is a lasso over the continuous
    dictionary ``{(t - tau)_+, (tau - t)_+ : tau in R}`` with a free intercept.

    *Knots at data points.*  Let ``x_(1) < ... < x_(m)`` be the distinct sorted
    inputs.  For ``x_(k) < tau < x_(k+1)``, ``tau = theta x_(k) + (1 - theta)
    x_(k+1)``, the training vector of ``(t - tau)_+`` is exactly ``theta (t -
    x_(k))_+ + (1 - theta) (t - x_(k+1))_+`` (both sides vanish below ``x_(k+1)``
    and are affine in ``tau`` above), and likewise for ``(tau - t)_+``; the
    coefficients add to one, so the cost is the same.  A knot left of ``x_(1)``
    gives ``(t - x_(1))_+`` plus a constant on the data (absorbed by ``c``), and
    one right of ``x_(m)`` gives 0; symmetrically for ``(tau - t)_+``.  Hence the
    program restricted to the ``2m`` kink features ``phi_k^+ = (t - x_(k))_+`` and
    ``phi_k^- = (x_(k) - t)_+`` plus the free intercept has the same optimal value
    and fitted values, and every optimal network is represented with knots at
    data points::

        min_{c, gamma+, gamma-}  L(c 1 + sum_k gamma+_k phi_k^+ + gamma-_k phi_k^-)
                                 + alpha sum_k (|gamma+_k| + |gamma-_k|).

    (``phi_m^+`` and ``phi_1^-`` vanish on the data; ``phi_1^+`` and ``-phi_m^-``
    are both the linear function ``t`` up to a constant.)  *No free linear term is
    needed or obtained*: a slope costs ``alpha |slope|`` through the extreme kink
    features ``phi_1^+``/``phi_m^-``, which are linear on the data; a globally
    linear function would cost twice that.

    *Cost of a fit in closed form.*  The loss depends on the fitted values ``z``
    at the distinct points only.  With slopes ``sigma_k = (z_(k+1) - z_(k)) /
    (x_(k+1) - x_(k))`` and ``TV = sum_{k=2}^{m-1} |sigma_k - sigma_(k-1)|`` (the
    total variation of ``f'`` inside the data range), the smallest ``sum |gamma|``
    over all networks with these values is::

        R(z) = max( TV, (TV + |sigma_1 + sigma_(m-1)|) / 2 )

    (Savarese et al.'s ``max(int |f''|, |f'(-inf) + f'(+inf)|)`` minimised over the
    two extrapolation slopes; the excess ``E = max(0, (|sigma_1 + sigma_(m-1)| -
    TV) / 2)`` must be paid by kinks at ``x_(1)``/``x_(m)``).  So the problem is
    ``min_z L(z) + alpha R(z)``.  Outside ``[x_(1), x_(m)]`` the optimum is not
    unique when ``E > 0``; this module returns the reflection-symmetric choice
    (extrapolation slopes ``sigma_1 -+ E/2`` and ``sigma_(m-1) -+ E/2``, i.e. half
    of ``E`` at each end), otherwise the natural linear extrapolation.

    *Solver.*  The dual of the lasso (variable ``u`` = the per-point negative loss
    gradient, ``z = y~ - W^{-1} u`` for a weighted squared loss) requires ``1^T u =
    0`` and ``|<phi, u>| <= alpha`` for every kink feature.  With ``1^T u = 0``,
    ``G_k = <phi_k^+, u> = sum_j u_j (x_(j) - x_(k))_+`` determines ``u`` (``u`` is
    the jump of ``G'`` at the data points, ``G_m = 0``) and ``<phi_k^-, u> = G_k -
    G_1``, so the dual is the strictly convex QP::

        min_G  1/2 ||W^{-1/2} (D G - W y~)||^2   s.t.  |G_1| <= alpha,  |G_k| <= alpha,
                                                     |G_k - G_1| <= alpha  (k = 2..m-1)

    solved exactly by a primal active-set method: every working constraint fixes
    a coordinate or ties it to ``G_1``, so each step is an unconstrained least
    squares in the remaining coordinates; a working set that comes back without
    a decrease of the objective (rounding at a degenerate vertex) ends the
    method.  The working set gives the knots (complementary slackness); the fit
    is projected onto splines with exactly those knots, which removes
    rounding-size kinks.  Squared loss: one QP (weights = multiplicities / n,
    targets = means at repeated inputs).  Logistic loss: proximal Newton on
    ``z``, each step one QP with the Hessian weights (floored at ``1e-10`` of the
    largest), a line search on the true objective and an exact re-fit of the
    intercept.  The certificate is the duality gap of the lasso at the returned
    network, with the QP's dual point (scaled into ``|<phi, u>| <= alpha``); a
    ``ConvergenceWarning`` is issued above ``max(tol, 1e-8)``.  Cost ``O(m^3)``
    per active-set step and ``O(m)`` steps: about a second for ``m = 200``
    (squared loss), tens of seconds for ``m = 400``; the logistic loss with a
    tiny ``alpha`` (nearly separable data, huge logits) needs many Newton steps.

``alpha = 0``
    The limit ``alpha -> 0+``: the minimum-penalty network among the minimisers
    of the loss.  With the squared loss the fitted values are the targets
    (their means at repeated inputs), i.e. the minimum-norm interpolant.
    ``free``: the closed form above (the LP ``min sum |gamma| s.t. exact fit``
    has value ``R(y)``); ``none``: the per-side least-squares slopes (an
    interpolant when one exists); ``regularized``: the min-norm interpolation
    SOCP ``min sum_i ||v_i|| + ||w_i||`` s.t. the fit, over all patterns, solved
    with cvxpy and Clarabel (needs ``cvxnn[cvx]``).  The logistic loss has no
    minimiser at ``alpha = 0`` on separable data, so ``alpha = 0`` is refused for it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, log_expit

from ._data import check_alpha, encode_targets, is_numeric_labels
from .losses import get_loss
from .network import TwoLayerReLU

__all__ = ["spline1d", "Spline1D", "BIASES"]

#: accepted values of ``bias``
BIASES = ("regularized", "free", "none")
_LOSSES = ("squared", "logistic")
#: relative duality gaps below this are not reported as a convergence failure
#: (the certificate's resolution in double precision on ill-conditioned data)
_GAP_RESOLUTION = 1e-8


# ----------------------------------------------------------------------------
# the result
# ----------------------------------------------------------------------------

@dataclass
class Spline1D:
    """A trained scalar-input two-layer ReLU network, seen as a linear spline.

    ``f(t) = network(t) + intercept`` is continuous and piecewise linear: with
    knots ``tau_1 < ... < tau_k``, ``f`` has slope ``slopes[0]`` left of
    ``tau_1``, ``slopes[i]`` on ``[tau_i, tau_(i+1)]`` and ``slopes[k]`` right of
    ``tau_k``, and ``f(tau_i) = values[i - 1]``.

    Attributes
    ----------
    network : TwoLayerReLU
        The network (``m`` neurons, one input).  For ``bias="free"`` ``b1`` holds
        the unregularised biases; ``bias="none"`` has ``b1 = None``.
    intercept : float
        Output offset ``c`` (non-zero only for ``bias="free"``).
    knots : ndarray of shape (k,)
        Sorted distinct kink locations ``-b_j / w_j`` of the active neurons.
    slopes : ndarray of shape (k + 1,)
        Slope of each linear piece, left to right.
    values : ndarray of shape (k,)
        ``f`` at the knots.
    objective : float
        Training objective at the returned network (see :func:`spline1d`).
    alpha : float
    bias : {"regularized", "free", "none"}
    loss : {"squared", "logistic"}
    classes : ndarray of shape (2,) or None
        Class labels (logistic): ``classes[1]`` is predicted where ``f > 0``.
    x : ndarray of shape (n,)
        Training inputs as given (flattened).
    y : ndarray of shape (n,)
        Training targets or labels as given.
    offset : float
        ``f(0)``; with no knots ``f(t) = offset + slopes[0] * t``.
    relative_gap : float
        Relative duality gap certifying ``objective`` (0 for closed forms,
        NaN where no certificate is computed: ``alpha = 0`` with
        ``bias="regularized"``).
    """

    network: TwoLayerReLU
    intercept: float
    knots: np.ndarray
    slopes: np.ndarray
    values: np.ndarray
    objective: float
    alpha: float
    bias: str
    loss: str
    classes: np.ndarray | None
    x: np.ndarray
    y: np.ndarray
    offset: float = 0.0
    relative_gap: float = float("nan")

    @property
    def n_knots(self) -> int:
        """Number of knots ``k``."""
        return int(self.knots.shape[0])

    def decision_function(self, t) -> np.ndarray:
        """Spline value ``network(t) + intercept``.

        Parameters
        ----------
        t : float or array of shape (N,) or (N, 1)

        Returns
        -------
        ndarray of shape (N,) (a 0-d array for scalar ``t``)
        """
        t, shape = _as_points(t, "t")
        out = self.network.decision_function(t[:, None]).astype(np.float64) + self.intercept
        return out.reshape(shape)

    __call__ = decision_function

    def predict(self, t) -> np.ndarray:
        """Fitted values (squared loss) or labels ``classes[f(t) > 0]`` (logistic)."""
        f = self.decision_function(t)
        if self.classes is None:
            return f
        return self.classes[(f > 0).astype(int)]

    def evaluate(self, t) -> np.ndarray:
        """Piecewise-linear evaluation from ``knots``, ``slopes`` and ``values`` alone.

        Parameters
        ----------
        t : float or array of shape (N,) or (N, 1)

        Returns
        -------
        ndarray of shape (N,) (a 0-d array for scalar ``t``)
        """
        t, shape = _as_points(t, "t")
        k = self.knots.shape[0]
        if k == 0:
            out = self.offset + self.slopes[0] * t
        else:
            i = np.searchsorted(self.knots, t, side="right") - 1     # -1: left of all knots
            j = np.clip(i, 0, k - 1)
            out = self.values[j] + self.slopes[i + 1] * (t - self.knots[j])
        return out.reshape(shape)

    def __repr__(self) -> str:
        return (f"Spline1D(bias={self.bias!r}, loss={self.loss!r}, alpha={self.alpha:g}, "
                f"n_knots={self.n_knots}, objective={self.objective:.8g}, "
                f"intercept={self.intercept:.6g})")


def _as_points(t, name):
    arr = np.asarray(t, dtype=np.float64)
    shape = arr.shape
    if arr.ndim == 2:
        if arr.shape[1] != 1:
            raise ValueError(f"{name} must be 1-D or of shape (N, 1), got shape {arr.shape}")
        shape = (arr.shape[0],)
    elif arr.ndim > 2:
        raise ValueError(f"{name} must be 1-D or of shape (N, 1), got shape {arr.shape}")
    return arr.reshape(-1), shape


# ----------------------------------------------------------------------------
# entry point
# ----------------------------------------------------------------------------

def spline1d(x, y, alpha, *, bias="regularized", loss="squared", tol=1e-10,
             random_state=None) -> Spline1D:
    """Globally optimal two-layer ReLU network of any width on scalar inputs.

    Minimises (over networks of every width; see the module docstring)::

        regularized:  L(f(x), y) + alpha/2 (||W1||^2 + ||b1||^2 + ||W2||^2)
        free:         L(f(x) + c, y) + alpha/2 (||W1||^2 + ||W2||^2)   (b1, c free)
        none:         L(f(x), y) + alpha/2 (||W1||^2 + ||W2||^2)        (no bias)

    with ``L`` the squared loss ``||z - y||^2 / (2n)`` or the mean logistic loss.

    Parameters
    ----------
    x : array of shape (n,) or (n, 1)
        Scalar inputs (``n >= 2``).
    y : array of shape (n,)
        Targets (squared loss, numeric) or two class labels of any sortable
        type (logistic; the sorted labels map to -1 / +1).
    alpha : float
        Weight-decay strength ``>= 0``; ``0`` gives the minimum-norm
        interpolant (squared loss only; see the module docstring).
    bias : {"regularized", "free", "none"}, default="regularized"
    loss : {"squared", "logistic"}, default="squared"
    tol : float, default=1e-10
        Target relative duality gap.
    random_state : int, Generator or None
        Passed to :func:`cvxnn.solve` (``bias="regularized"``); the other
        variants are deterministic.

    Returns
    -------
    Spline1D
    """
    if not isinstance(bias, str) or bias not in BIASES:
        raise ValueError(f"bias must be one of {list(BIASES)}, got {bias!r}")
    if not isinstance(loss, str) or loss not in _LOSSES:
        raise ValueError(f"loss must be one of {list(_LOSSES)}, got {loss!r}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0:
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    alpha = check_alpha(alpha)
    x_given, x = _check_x(x)
    y_given, Y, classes = _check_targets(y, x.shape[0], loss)
    if alpha == 0 and loss == "logistic":
        raise ValueError("alpha=0 with loss='logistic' has no minimiser on separable data; "
                         "use alpha > 0")
    if bias == "regularized":
        parts = _fit_regularized(x, Y, alpha, loss, classes, tol, random_state)
    elif bias == "free":
        parts = _fit_free(x, Y, alpha, loss, classes, tol)
    else:
        parts = _fit_none(x, Y, alpha, loss, classes)
    network, intercept, objective, rel_gap, knots_hint = parts
    knots, slopes, values, offset = _pieces(network, intercept, knots_hint)
    return Spline1D(network=network, intercept=float(intercept), knots=knots, slopes=slopes,
                    values=values, objective=float(objective), alpha=alpha, bias=bias,
                    loss=loss, classes=classes, x=x_given, y=y_given, offset=offset,
                    relative_gap=float(rel_gap))


def _check_x(x):
    if x is None:
        raise ValueError("x must be an array of shape (n,) or (n, 1), got None")
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"x must contain real numbers, got dtype {arr.dtype}")
    if arr.ndim == 2:
        if arr.shape[1] != 1:
            raise ValueError(f"x must be 1-D or have a single column (scalar inputs), "
                             f"got shape {arr.shape}")
    elif arr.ndim != 1:
        raise ValueError(f"x must be 1-D or of shape (n, 1), got shape {arr.shape}")
    flat = arr.reshape(-1).astype(np.float64)
    if flat.shape[0] < 2:
        raise ValueError(f"x must hold at least 2 samples, got {flat.shape[0]}")
    if not np.all(np.isfinite(flat)):
        raise ValueError("x contains NaN or infinity")
    return arr.reshape(-1).copy(), flat


def _check_targets(y, n, loss):
    if y is None:
        raise ValueError("y is required (got None)")
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"y must be 1-D (one target per sample), got shape {np.shape(y)}")
    if arr.shape[0] != n:
        raise ValueError(f"x and y must have the same length: x has {n} samples, "
                         f"y has {arr.shape[0]}")
    if loss == "squared":
        if not is_numeric_labels(arr):
            raise TypeError(f"y must be numeric for loss='squared', got dtype {arr.dtype}")
        Y = arr.astype(np.float64)
        if not np.all(np.isfinite(Y)):
            raise ValueError("y contains NaN or infinity")
        return arr.copy(), Y, None
    Yenc, classes = encode_targets(arr, "logistic")
    return arr.copy(), Yenc[:, 0].copy(), classes


# ----------------------------------------------------------------------------
# spline pieces of a network
# ----------------------------------------------------------------------------

def _pieces(network, intercept, knots_hint=None):
    """Knots, slopes, values at the knots and ``f(0)`` of ``network(t) + intercept``.

    A unit ``a (w t + b)_+`` changes the slope by ``a |w|`` at ``-b / w`` (units
    with ``|w| <= 1e-13 |b|`` are treated as constants).  Knots closer than
    ``1e-12`` relative are merged.  ``knots_hint`` (one exact knot per unit, or
    NaN) replaces ``-b / w`` where given (the data points of ``bias="free"``).
    """
    w = network.W1[:, 0].astype(np.float64)
    a = network.W2[:, 0].astype(np.float64)
    b = np.zeros_like(w) if network.b1 is None else network.b1.astype(np.float64)
    kinked = (np.abs(w) > 1e-13 * np.abs(b)) & (w != 0) & (a != 0)
    tau = np.full(w.shape, np.nan)
    tau[kinked] = -b[kinked] / w[kinked] + 0.0          # + 0.0: no negative zero
    if knots_hint is not None:
        hint = np.asarray(knots_hint, dtype=np.float64)
        tau = np.where(kinked & np.isfinite(hint), hint, tau)
    left_slope = float(np.sum((a * w)[kinked & (w < 0)]))
    jumps = (a * np.abs(w))[kinked]
    tau = tau[kinked]
    order = np.argsort(tau, kind="stable")
    tau, jumps = tau[order], jumps[order]
    if tau.size:
        new = np.concatenate([[True], np.diff(tau) > 1e-12 * np.maximum(1.0, np.abs(tau[1:]))])
        group = np.cumsum(new) - 1
        knots = tau[new]
        dslope = np.zeros(knots.size)
        np.add.at(dslope, group, jumps)
    else:
        knots = np.zeros(0)
        dslope = np.zeros(0)
    slopes = left_slope + np.concatenate([[0.0], np.cumsum(dslope)])
    pts = np.concatenate([knots, [0.0]])
    f = network.decision_function(pts[:, None]).astype(np.float64) + intercept
    return knots, slopes, f[:-1].copy(), float(f[-1])


# ----------------------------------------------------------------------------
# bias="regularized": the enumerated convex program
# ----------------------------------------------------------------------------

def _fit_regularized(x, Y, alpha, loss, classes, tol, random_state):
    X = x[:, None]
    if alpha == 0:
        return _regularized_min_norm(x, Y)
    from .solve import solve

    y_arg = Y if classes is None else np.where(Y > 0, classes[1], classes[0])
    res = solve(X, y_arg, alpha, formulation="relu", gates="enumerate", bias=True, loss=loss,
                tol=tol, random_state=random_state)
    net = _merge_close_knots(res.network, X)
    objective = net.objective(X, y_arg, alpha)
    return net, 0.0, objective, res.relative_gap, None


def _merge_close_knots(net, X, rtol=1e-7):
    """Prune ``net`` (Caratheodory, same outputs on ``X``) and fuse units with nearly equal knots.

    Solvers return groups of units whose knots agree only to solver accuracy
    (typically at a data point, where cells meet).  Knots within ``rtol *
    max(1, |tau|)`` of each other are moved to their slope-weighted mean
    ``tau``, and units on the same side (``sign(w)``) there are replaced by one
    unit carrying the summed slope change ``gamma = sum a |w|``, balanced for the
    regularised bias (cost ``|gamma| sqrt(1 + tau^2)``).  The function changes by
    at most about ``rtol`` times its slopes.  Units with ``w = 0`` are kept.
    """
    if net.n_neurons > 2:
        net = net.prune(X)
    w = net.W1[:, 0].astype(np.float64)
    b = net.b1.astype(np.float64)
    a = net.W2[:, 0].astype(np.float64)
    kinked = np.abs(w) > 1e-13 * np.abs(b)
    if np.count_nonzero(kinked) < 2:
        return net
    tau = -b[kinked] / w[kinked]
    side = np.sign(w[kinked])
    gamma = a[kinked] * np.abs(w[kinked])
    order = np.argsort(tau, kind="stable")
    tau, side, gamma = tau[order], side[order], gamma[order]
    new = np.concatenate([[True], np.diff(tau) > rtol * np.maximum(1.0, np.abs(tau[1:]))])
    cluster = np.cumsum(new) - 1
    if cluster[-1] == tau.size - 1:
        return net
    weight = np.abs(gamma) + 1e-300
    c_tau = np.bincount(cluster, weights=weight * tau) / np.bincount(cluster, weights=weight)
    key = 2 * cluster + (side > 0)                 # one unit per (cluster, side)
    ukey, inv = np.unique(key, return_inverse=True)
    g_gamma = np.bincount(np.ravel(inv), weights=gamma)
    g_tau = c_tau[ukey // 2]
    g_side = np.where(ukey % 2 == 1, 1.0, -1.0)
    cost = np.abs(g_gamma) * np.sqrt(1.0 + g_tau ** 2)
    keep = cost > 0
    root = np.sqrt(cost[keep])
    t = g_tau[keep]
    A = (g_side[keep] * root / np.sqrt(1.0 + t ** 2))[:, None] * np.column_stack([np.ones_like(t), -t])
    W1 = np.concatenate([A[:, 0], w[~kinked]])
    b1 = np.concatenate([A[:, 1], b[~kinked]])
    W2 = np.concatenate([np.sign(g_gamma[keep]) * root, a[~kinked]])
    return TwoLayerReLU(W1[:, None], b1, W2, classes=net.classes, loss=net.loss)


def _regularized_min_norm(x, Y):
    """Minimum-norm interpolant with regularised bias (alpha = 0), by cvxpy + Clarabel."""
    try:
        import cvxpy as cp
    except ImportError:  # pragma: no cover - optional dependency
        raise ImportError("alpha=0 with bias='regularized' solves an SOCP with cvxpy and "
                          "Clarabel; install cvxnn[cvx]") from None
    from .network import network_from_relu
    from .patterns import compute_masks, enumerate_patterns

    X = x[:, None]
    Xa = np.hstack([X, np.ones_like(X)])
    target = _group_means(x, Y)
    G = enumerate_patterns(X, bias=True)
    D = compute_masks(X, G, bias=True).astype(np.float64)         # (n, P)
    S = 2.0 * D - 1.0
    P = D.shape[1]
    V = cp.Variable((2, P))
    W = cp.Variable((2, P))
    fit = cp.sum(cp.multiply(D, Xa @ (V - W)), axis=1)
    cons = [cp.multiply(S, Xa @ V) >= 0, cp.multiply(S, Xa @ W) >= 0, fit == target]
    obj = cp.sum(cp.norm(V, 2, axis=0)) + cp.sum(cp.norm(W, 2, axis=0))
    prob = cp.Problem(cp.Minimize(obj), cons)
    prob.solve(solver=cp.CLARABEL, tol_feas=1e-10, tol_gap_abs=1e-10,
               tol_gap_rel=1e-10)
    if prob.status not in ("optimal", "optimal_inaccurate"):  # pragma: no cover
        raise RuntimeError(f"the min-norm interpolation SOCP ended with status {prob.status!r}")
    net = _merge_close_knots(network_from_relu(V.value, W.value, bias=True, threshold=1e-9), X)
    objective = net.objective(X, Y, 0.0)
    return net, 0.0, objective, float("nan"), None


def _group_means(x, Y):
    """Targets replaced by their mean over repeated inputs (the loss minimiser)."""
    _, inv = np.unique(x, return_inverse=True)
    inv = np.ravel(inv)
    sums = np.bincount(inv, weights=Y)
    counts = np.bincount(inv)
    return (sums / counts)[inv]


# ----------------------------------------------------------------------------
# bias="none": rank-one closed form
# ----------------------------------------------------------------------------

def _fit_none(x, Y, alpha, loss, classes):
    n = x.shape[0]
    gammas = []
    for side in (1.0, -1.0):
        c = np.maximum(side * x, 0.0)
        cc = float(c @ c)
        if cc == 0.0:
            gammas.append(0.0)
            continue
        if loss == "squared":
            z = float(c @ Y)
            gammas.append(np.sign(z) * max(abs(z) - n * alpha, 0.0) / cc)
        else:
            gammas.append(_logistic_scalar(c, Y, alpha))
    units = [(s, g) for s, g in zip((1.0, -1.0), gammas) if g != 0.0]
    r = np.sqrt(np.abs([g for _, g in units]))
    W1 = np.array([s for s, _ in units]).reshape(-1, 1) * r[:, None]
    W2 = np.sign([g for _, g in units]) * r
    net = TwoLayerReLU(W1.reshape(-1, 1), None, W2.reshape(-1), classes=classes, loss=loss)
    objective = _objective(net, 0.0, x, Y, alpha, loss, with_bias=False)
    return net, 0.0, objective, 0.0, None


def _logistic_scalar(c, Y, alpha):
    """argmin_g mean(log(1 + exp(-Y g c))) + alpha |g| (exact root of the subgradient)."""
    from scipy.optimize import brentq

    n = c.shape[0]
    m = Y * c

    def deriv(g):
        return -float(np.sum(m * expit(-g * m))) / n

    d0 = deriv(0.0)
    if abs(d0) <= alpha:
        return 0.0
    sgn = -np.sign(d0)                       # move against the gradient

    def h(g):
        return deriv(g) + alpha * sgn

    hi = sgn * 1.0
    while np.sign(h(hi)) != sgn:
        hi *= 2.0
        if abs(hi) > 1e300:  # pragma: no cover - alpha > 0 keeps the root finite
            raise RuntimeError("no finite minimiser")
    lo, hi = (0.0, hi) if sgn > 0 else (hi, 0.0)
    return float(brentq(h, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500))


def _objective(net, intercept, x, Y, alpha, loss, *, with_bias):
    """``L(f + c) + alpha/2 (||W1||^2 [+ ||b1||^2] + ||W2||^2)`` on encoded targets ``Y``."""
    Z = net.decision_function(x[:, None]).astype(np.float64) + intercept
    value = get_loss(loss).value(Z[:, None], Y[:, None])
    sq = float(np.sum(net.W1.astype(np.float64) ** 2) + np.sum(net.W2.astype(np.float64) ** 2))
    if with_bias and net.b1 is not None:
        sq += float(np.sum(net.b1.astype(np.float64) ** 2))
    return value + 0.5 * alpha * sq


# ----------------------------------------------------------------------------
# bias="free": kink-feature lasso with free intercept
# ----------------------------------------------------------------------------

def _cost(xs, z):
    """Closed-form ``R(z)``: smallest ``sum |gamma|`` of a network with values ``z`` at ``xs``."""
    if xs.size < 2:
        return 0.0
    sig = np.diff(z) / np.diff(xs)
    tv = float(np.abs(np.diff(sig)).sum())
    return max(tv, 0.5 * (tv + abs(sig[0] + sig[-1])))


def _kink_G(xs, u):
    """``G_k = sum_j u_j (x_j - x_k)_+`` for all k (xs sorted)."""
    tail_u = np.cumsum(u[::-1])[::-1]                # sum_{j >= k} u_j
    tail_ux = np.cumsum((u * xs)[::-1])[::-1]
    return tail_ux - xs * tail_u


def _dual_scale(xs, u, alpha):
    """Largest ``|<phi, u>|`` over the kink features (``u`` summing to 0)."""
    G = _kink_G(xs, u)
    return float(max(np.abs(G).max(), np.abs(G - G[0]).max()))


class _DualQP:
    """Primal active set for ``min 1/2 ||M G - b||^2`` s.t. ``|G_0|, |G_i|, |G_i - G_0| <= alpha``.

    ``G`` has ``p = m - 1`` entries (``G_m = 0`` is implicit).  Constraint rows,
    for ``i = 1..p-1``: ``+-e_0``, ``+-e_i``, ``+-(e_i - e_0)``, all ``<= alpha``.
    """

    def __init__(self, xs):
        m = xs.size
        self.m = m
        p = m - 1
        h = np.diff(xs)
        # slopes s_k = (G_{k+1} - G_k) / h_k with G_m = 0; u = diff([0, s, 0])
        Sd = np.zeros((m - 1, p))
        idx = np.arange(m - 1)
        Sd[idx, idx] = -1.0 / h
        Sd[idx[:-1], idx[:-1] + 1] = 1.0 / h[:-1]
        self.D = np.vstack([Sd[:1], np.diff(Sd, axis=0), -Sd[-1:]])      # (m, p)
        rows = [np.eye(p)[0], -np.eye(p)[0]]
        E = np.eye(p)
        for i in range(1, p):
            rows += [E[i], -E[i], E[i] - E[0], E[0] - E[i]]
        self.C = np.array(rows)
        self.knot_of_row = np.array([0, 0] + [i for i in range(1, p) for _ in range(4)])

    def solve(self, wts, target, alpha, G0=None, work0=(), max_iter=None):
        """Return ``(G, working_set)``; the fitted values are ``target - D G / wts``."""
        C, D = self.C, self.D
        p = D.shape[1]
        M = D / np.sqrt(wts)[:, None]
        bvec = np.sqrt(wts) * target
        d = np.full(C.shape[0], alpha)
        G = np.zeros(p) if G0 is None else np.array(G0, dtype=np.float64)
        scale = alpha
        feas_tol = 1e-12 * scale
        work: list[int] = []
        for r in work0:                          # keep the given rows that are active
            if abs(C[r] @ G - alpha) <= 10 * feas_tol and self._independent(work, r):
                work.append(int(r))
        if max_iter is None:
            max_iter = 50 * C.shape[0] + 100
        dropped = -1
        best, seen, last = np.inf, set(), None
        for _ in range(max_iter):
            # anti-cycling: at a degenerate optimum rounding can make the method
            # cycle through working sets with numerically equal objectives; stop
            # when a working set comes back without a decrease of the objective
            MG = M @ G
            obj = 0.5 * float(MG @ MG) - float(bvec @ MG)     # without the constant ||b||^2/2
            if obj < best - 1e-13 * abs(best):
                best, seen = obj, set()
            key = frozenset(work)
            if key in seen and key != last:
                return G, work
            seen.add(key)
            last = key
            Gs = self._eqp(M, bvec, work, alpha)
            step = Gs - G
            if np.linalg.norm(step) <= 1e-12 * (np.linalg.norm(G) + scale):
                if not work:
                    return Gs, work
                grad = M.T @ (M @ Gs - bvec)
                lam = np.linalg.lstsq(C[work].T, -grad, rcond=None)[0]
                lam_tol = 1e-10 * (np.linalg.norm(grad) + 1e-300)
                j = int(np.argmin(lam))
                if lam[j] >= -lam_tol:
                    return Gs, work
                dropped = work.pop(j)
                G = Gs
                continue
            Cp = C @ step
            slack = d - C @ G
            mask = Cp > 1e-14 * np.linalg.norm(step)
            mask[work] = False
            t, block = 1.0, -1
            cand = np.flatnonzero(mask)
            ratios = np.maximum(slack[cand], 0.0) / Cp[cand]
            for k in np.argsort(ratios, kind="stable"):
                if ratios[k] >= 1.0:
                    break
                # a row in the span of the working set cannot block (C_W step = 0)
                if not self._independent(work, int(cand[k])):
                    continue
                t, block = float(ratios[k]), int(cand[k])
                break
            if block >= 0 and block == dropped and t <= 1e-12:
                # the constraint just released blocks at once: a numerically zero
                # multiplier (degenerate vertex); the current point is optimal
                work.append(block)
                return G, work
            dropped = -1
            G = Gs if block < 0 else G + t * step
            if block >= 0:
                work.append(block)
        raise RuntimeError("spline1d: the dual active-set QP did not converge "
                           f"in {max_iter} steps")

    def _parametrize(self, work, alpha):
        """Affine parametrisation ``G = G0 + T phi`` of ``{C_W G = alpha}``.

        Every working row fixes ``G_0 = g`` (rows ``+-e_0``), fixes ``G_i``
        (``+-e_i``) or ties ``G_i = g +- alpha`` (``+-(e_i - e_0)``); a fixed
        and a tied row on the same ``i`` determine ``g``.  Returns ``G0``, the
        free coordinates and the coordinates moving with ``g`` (``None`` when
        ``g`` is determined).
        """
        p = self.D.shape[1]
        fixed, tie, g_val = {}, {}, None
        for r in work:
            if r < 2:
                g_val = alpha if r == 0 else -alpha
                continue
            i, k = 1 + (r - 2) // 4, (r - 2) % 4
            if k < 2:
                fixed[i] = alpha if k == 0 else -alpha
            else:
                tie[i] = alpha if k == 2 else -alpha
        if g_val is None:
            both = [i for i in tie if i in fixed]
            if both:
                g_val = fixed[both[0]] - tie[both[0]]
        G0 = np.zeros(p)
        for i, sgn in tie.items():
            G0[i] = sgn + (g_val if g_val is not None else 0.0)
        for i, v in fixed.items():
            G0[i] = v
        taken = np.zeros(p, dtype=bool)
        taken[0] = True
        taken[list(fixed) + list(tie)] = True
        free = np.flatnonzero(~taken)
        if g_val is not None:
            G0[0] = g_val
            return G0, free, None
        return G0, free, np.array([0] + list(tie), dtype=np.intp)

    def _independent(self, work, r):
        """Whether row ``r`` is linearly independent of the rows in ``work``."""
        if r in work:
            return False
        p = self.D.shape[1]
        _, free, gcols = self._parametrize(list(work) + [r], 1.0)
        dim = free.size + (gcols is not None)
        return dim == p - len(work) - 1

    def _eqp(self, M, bvec, work, alpha):
        """Minimiser of ``||M G - b||`` on ``{C_W G = alpha}`` (eliminated least squares)."""
        G0, free, gcols = self._parametrize(work, alpha)
        cols = [M[:, free]]
        if gcols is not None:
            cols.append(M[:, gcols].sum(axis=1)[:, None])
        MT = np.hstack(cols)
        G = G0
        if MT.shape[1]:
            phi = np.linalg.lstsq(MT, bvec - M @ G0, rcond=None)[0]
            G = G0.copy()
            G[free] += phi[:free.size]
            if gcols is not None:
                G[gcols] += phi[-1]
        return G


def _project(xs, wts, z, knots_idx):
    """Weighted least-squares projection of ``z`` onto splines with kinks at ``xs[knots_idx]``.

    Removes the rounding-size kinks that the QP leaves at every data point
    (they would inflate ``R(z)``, a sum over slope changes); the optimal ``z``
    lies in this space when ``knots_idx`` holds the active dual constraints.
    """
    B = np.column_stack([np.ones_like(xs), xs - xs[0]]
                        + [np.maximum(xs - xs[k], 0.0) for k in knots_idx])
    sw = np.sqrt(wts)
    coef = np.linalg.lstsq(B * sw[:, None], sw * z, rcond=None)[0]
    return B @ coef


def _knot_indices(qp, work):
    k = np.unique(qp.knot_of_row[list(work)]) if len(work) else np.zeros(0, dtype=int)
    return k[(k >= 1) & (k <= qp.m - 2)]


def _merge(x):
    """Distinct sorted inputs, the index of each sample's input and the multiplicities."""
    xs, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    return xs, np.ravel(inv), counts


def _free_network(xs, z, alpha, knot_mask=None, value_scale=0.0):
    """Canonical minimum-cost network (units and intercept) with values ``z`` at ``xs``.

    Interior slope changes ``Delta_k`` (optionally zeroed off ``knot_mask``), the
    symmetric split of the excess ``E`` between the end points, and a split of
    every ``Delta_k = gamma+_k + gamma-_k`` into same-sign parts with
    ``sum gamma+ = right slope``; then ``sum |gamma| = R(z)``.
    Slopes and kinks below ``1e-12`` of the slope scale (``max |sigma|`` or
    ``value_scale / range``) are rounding and set to zero.
    Returns ``(W1, b1, W2, intercept, knot_of_each_unit)`` (``W1, b1, W2`` of shape (m,)).
    """
    m = xs.size
    if m < 2:
        return np.zeros(0), np.zeros(0), np.zeros(0), float(z[0]), np.zeros(0)
    h = np.diff(xs)
    sig = np.diff(z) / h
    delta = np.zeros(m)
    delta[1:-1] = np.diff(sig)
    # rounding-size slopes and kinks (relative to the values' scale) are zero
    tiny = 1e-12 * max(float(np.abs(sig).max()),
                       max(float(np.abs(z).max()), value_scale) / (xs[-1] - xs[0]), 1e-300)
    keep = np.abs(delta[1:-1]) > tiny
    if knot_mask is not None:               # no kink where the dual constraint is inactive
        keep &= knot_mask[1:-1]
    delta[1:-1] = np.where(keep, delta[1:-1], 0.0)
    s1 = sig[0] if abs(sig[0]) > tiny else 0.0
    sig = s1 + np.concatenate([[0.0], np.cumsum(delta[1:-1])])
    tv = float(np.abs(delta[1:-1]).sum())
    total = sig[0] + sig[-1]
    excess = max(0.0, 0.5 * (abs(total) - tv))
    if excess <= tiny:
        excess = 0.0
    s_left = sig[0] - np.sign(total) * excess / 2
    s_right = sig[-1] - np.sign(total) * excess / 2
    delta[0] = sig[0] - s_left
    delta[-1] = s_right - sig[-1]
    pos = float(delta[delta > 0].sum())
    neg = float(-delta[delta < 0].sum())
    T = float(np.clip(s_right, -neg, pos))
    theta = 0.5 if pos == neg else float(np.clip(T / (pos - neg), 0.0, 1.0))
    lam = mu = theta                           # gamma+ = lam Delta (Delta > 0), mu Delta (< 0)
    r = T - (lam * pos - mu * neg)
    if r > 0:
        dl = min(1.0 - lam, r / pos) if pos > 0 else 0.0
        lam += dl
        r -= dl * pos
        if r > 0 and neg > 0:
            mu -= min(mu, r / neg)
    elif r < 0:
        dl = min(lam, -r / pos) if pos > 0 else 0.0
        lam -= dl
        r += dl * pos
        if r < 0 and neg > 0:
            mu += min(1.0 - mu, -r / neg)
    frac = np.where(delta > 0, lam, mu)
    gp = frac * delta
    gm = delta - gp
    # f(x_1) = c + sum_k gm_k (x_k - x_1)
    intercept = float(z[0] - gm @ (xs - xs[0]))
    wp, wm = gp != 0, gm != 0
    rp, rm = np.sqrt(np.abs(gp[wp])), np.sqrt(np.abs(gm[wm]))
    W1 = np.concatenate([rp, -rm])
    b1 = np.concatenate([-xs[wp] * rp, xs[wm] * rm])
    W2 = np.concatenate([np.sign(gp[wp]) * rp, np.sign(gm[wm]) * rm])
    knots = np.concatenate([xs[wp], xs[wm]])
    return W1, b1, W2, intercept, knots


def _fit_free(x, Y, alpha, loss, classes, tol):
    n = x.shape[0]
    xs, inv, counts = _merge(x)
    m = xs.size
    lossf = get_loss(loss)

    def full_objective(z):
        return lossf.value(z[inv][:, None], Y[:, None]) + alpha * _cost(xs, z)

    rel_gap = 0.0
    if m == 1 or alpha == 0:
        if loss == "squared":
            z = np.bincount(inv, weights=Y) / counts
        else:                                     # m == 1, alpha > 0: intercept only
            z = _refit_intercept(np.zeros(1), inv, Y, n)
        mask = None
    else:
        qp = _DualQP(xs)
        if loss == "squared":
            wts = counts / n
            target = np.bincount(inv, weights=Y) / counts
            G, work = qp.solve(wts, target, alpha)
            kz = _knot_indices(qp, work)
            u = qp.D @ G                          # the QP's (feasible) dual point
            z_dual = target - u / wts
            z = _project(xs, wts, z_dual, kz)
        else:
            z, kz, u = _logistic_free(qp, xs, inv, Y, alpha, n, tol, full_objective, lossf)
        mask = np.zeros(m, dtype=bool)
        mask[kz] = True
    W1, b1, W2, intercept, knots = _free_network(xs, z, alpha, mask,
                                                 value_scale=float(np.abs(Y).max()))
    net = TwoLayerReLU(W1.reshape(-1, 1), b1, W2, classes=classes, loss=loss)
    objective = _objective(net, intercept, x, Y, alpha, loss, with_bias=False)
    if m > 1 and alpha > 0:
        # certificate of the returned network: its objective minus a dual bound (for
        # the squared loss the QP's dual point, else the intercept-optimal gradient)
        if loss == "squared":
            dual = _dual_bound(xs, z_dual[inv], inv, Y, alpha, lossf)
        else:
            dual = max(_dual_bound_at(net, intercept, xs, inv, Y, x, alpha, lossf),
                       _dual_from_qp(u, net, intercept, xs, inv, Y, x, alpha, lossf))
        gap = objective - dual
        if gap <= 1e-15 * max(1.0, float(np.mean(Y ** 2))):     # rounding (e.g. objective 0)
            gap = 0.0
        rel_gap = gap / max(abs(objective), 1e-300)
        if not rel_gap <= max(tol, _GAP_RESOLUTION):
            from sklearn.exceptions import ConvergenceWarning

            warnings.warn(f"spline1d(bias='free') reached a relative duality gap of "
                          f"{rel_gap:.2e} > tol={tol:g}", ConvergenceWarning, stacklevel=3)
    return net, intercept, objective, rel_gap, knots


def _dual_bound(xs, Z, inv, Y, alpha, lossf):
    """Lasso dual value at the negative gradient of the loss at ``Z`` (per sample)."""
    Theta = -lossf.gradient(Z[:, None], Y[:, None])[:, 0]
    if lossf.name == "squared":
        Theta = Theta - Theta.mean()              # dual feasibility of the free intercept
    u = np.bincount(inv, weights=Theta, minlength=xs.size)
    c = _dual_scale(xs, u, alpha)
    s = 1.0 if c <= alpha else alpha / c
    return lossf.dual_value(s * Theta[:, None], Y[:, None])


def _gap_free(xs, z, inv, Y, alpha, lossf, full_objective):
    primal = full_objective(z)
    dual = _dual_bound(xs, z[inv], inv, Y, alpha, lossf)
    return max(primal - dual, 0.0) / max(abs(primal), 1e-300)


def _dual_bound_at(net, intercept, xs, inv, Y, x, alpha, lossf):
    Z = net.decision_function(x[:, None]).astype(np.float64) + intercept
    Z = Z + _intercept_shift(Z, Y)
    return _dual_bound(xs, Z, inv, Y, alpha, lossf)


def _dual_from_qp(u, net, intercept, xs, inv, Y, x, alpha, lossf):
    """Dual bound from the last Newton QP's dual point ``u`` (per distinct input).

    ``u`` satisfies the lasso's dual constraints exactly (up to rounding) and
    converges with the Newton iterates, so the bound is accurate to second order.
    Per-sample values: the gradient at the network's fit, shifted within each
    group of repeated inputs to sum to ``u``.  ``-inf`` when that leaves the
    logistic conjugate's domain.
    """
    Z = net.decision_function(x[:, None]).astype(np.float64) + intercept
    Theta = -lossf.gradient(Z[:, None], Y[:, None])[:, 0]
    counts = np.bincount(inv, minlength=xs.size)
    Theta += ((u - np.bincount(inv, weights=Theta, minlength=xs.size)) / counts)[inv]
    c = _dual_scale(xs, np.bincount(inv, weights=Theta, minlength=xs.size), alpha)
    s = 1.0 if c <= alpha else alpha / c
    return lossf.dual_value(s * Theta[:, None], Y[:, None])


def _intercept_shift(Z, Y):
    """Exact minimiser ``delta`` of ``mean log(1 + exp(-Y (Z + delta)))`` (Newton)."""
    delta = 0.0
    for _ in range(100):
        q = expit(-Y * (Z + delta))
        g = -float(np.sum(Y * q))
        hss = float(np.sum(q * (1 - q)))
        if hss <= 0:
            break
        step = -g / hss
        f0 = -float(np.sum(log_expit(Y * (Z + delta))))
        while True:
            f1 = -float(np.sum(log_expit(Y * (Z + delta + step))))
            if f1 <= f0 or abs(step) < 1e-300:
                break
            step *= 0.5
        delta += step
        if abs(step) <= 1e-15 * (1 + abs(delta)):
            break
    return delta


def _refit_intercept(z, inv, Y, n):
    return z + _intercept_shift(z[inv], Y)


def _logistic_free(qp, xs, inv, Y, alpha, n, tol, full_objective, lossf):
    m = xs.size
    z = _refit_intercept(np.zeros(m), inv, Y, n)
    kz = np.zeros(0, dtype=int)                   # interior kinks of z
    G, work = None, []
    F = full_objective(z)
    for _ in range(200):
        q = expit(-Y * z[inv])
        g = np.bincount(inv, weights=-Y * q, minlength=m) / n
        hss = np.bincount(inv, weights=q * (1 - q), minlength=m) / n
        hss = np.maximum(hss, 1e-10 * hss.max())         # keep the QP well scaled
        target = z - g / hss
        if G is not None and np.max(np.abs(G)) > alpha:
            G = None
        G, work = qp.solve(hss, target, alpha, G0=G, work0=work)
        u = qp.D @ G
        knew = _knot_indices(qp, work)
        znew = _project(xs, hss, target - (qp.D @ G) / hss, knew)
        dz = znew - z
        model = float(g @ dz) + alpha * (_cost(xs, znew) - _cost(xs, z))
        t = min(1.0, 5.0 / max(float(np.abs(dz).max()), 1e-300))   # at most 5 logits per step
        while True:
            cand = z + t * dz
            Fc = full_objective(cand)
            if Fc <= F + 0.25 * t * model or t < 1e-10:
                break
            t *= 0.5
        if Fc <= F:
            z, F = cand, Fc
            kz = knew if t == 1.0 else np.union1d(kz, knew)
        z = _refit_intercept(z, inv, Y, n)
        F = full_objective(z)
        if _gap_free(xs, z, inv, Y, alpha, lossf, full_objective) <= tol or \
                model >= -1e-16 * abs(F):
            break
    return z, kz, u
