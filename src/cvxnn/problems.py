"""The two convex programs: objective, linear maps, prox and duality gap.

Gated ReLU (``formulation="gated"``)::

    min_U  L(Z, Y) + alpha * sum_{i,k} ||U[:, i, k]||_2,
    Z[:, k] = sum_i D_i Xa U[:, i, k],                         U: (d, P, c)

ReLU (``formulation="relu"``), with the cone constraints of the ICML 2020 paper::

    min_{V,W}  L(Z, Y) + alpha * sum_{i,k} (||V[:, i, k]|| + ||W[:, i, k]||)
    Z[:, k] = sum_i D_i Xa (V - W)[:, i, k]
    s.t.  (2 D_i - I) Xa V[:, i, k] >= 0,  (2 D_i - I) Xa W[:, i, k] >= 0.

The ReLU variables are stored as one array ``Q`` of shape ``(d, 2, P, c)``
(``V = Q[:, 0]``, ``W = Q[:, 1]``) so that both programs are group lassos whose
blocks run along axis 0.

Certificates
------------
With ``Theta = -grad L(Z)`` (shape ``(n, c)``) the dual constraints are
``||Xa^T D_i Theta_k|| <= alpha`` (gated) and, for the ReLU program, for any
multipliers ``A >= 0`` of shape ``(n, 2, P, c)``::

    || Xa^T (D_i Theta_k) + Xa^T ((2D_i - I) A_V) || <= alpha,
    ||-Xa^T (D_i Theta_k) + Xa^T ((2D_i - I) A_W) || <= alpha.

``Theta`` (and ``A``) are scaled by ``s = min(1, alpha / max_norm)`` to be
feasible and ``gap = primal - loss.dual_value(s Theta, Y) >= 0`` bounds the
suboptimality (over the given patterns).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .losses import Loss, get_loss
from .operators import adjoint, forward

__all__ = ["GatedReLUProblem", "ReLUProblem", "group_norms", "group_soft_threshold", "Gap"]


def group_norms(U: np.ndarray) -> np.ndarray:
    """Euclidean norms of the blocks ``U[:, ...]`` (reduction over axis 0)."""
    return np.sqrt(np.einsum("i...,i...->...", U, U))


def group_soft_threshold(U: np.ndarray, thresh: float) -> np.ndarray:
    """Proximal map of ``thresh * sum ||block||``: ``(1 - thresh/||u||)_+ u`` per block."""
    norms = group_norms(U)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(norms > thresh, 1.0 - thresh / np.where(norms > 0, norms, 1.0), 0.0)
    return U * scale


@dataclass
class Gap:
    """A duality-gap certificate.

    ``primal`` is the objective at the iterate, ``dual`` a lower bound on the
    optimum over the given patterns, ``gap = primal - dual`` and
    ``relative_gap = gap / max(|primal|, tiny)``.  ``dual_scale`` is the factor
    applied to ``Theta`` to make it dual feasible.
    """

    primal: float
    dual: float
    gap: float
    relative_gap: float
    dual_scale: float


def _make_gap(primal: float, dual: float, scale: float) -> Gap:
    gap = max(primal - dual, 0.0)
    denom = max(abs(primal), np.finfo(float).tiny)
    return Gap(primal, dual, gap, gap / denom, scale)


def _best_dual(loss: Loss, Theta: np.ndarray, Y: np.ndarray, s_max: float) -> tuple[float, float]:
    """Largest dual value along ``s Theta`` for ``s`` in ``[0, s_max]``.

    For the squared loss the maximiser is explicit; otherwise ``s_max`` is used.
    """
    if loss.name == "squared":
        n = Theta.shape[0]
        tt = float(np.vdot(Theta, Theta))
        s = s_max
        if tt > 0:
            s = min(s_max, max(0.0, float(np.vdot(Theta, Y)) / (n * tt)))
        return loss.dual_value(s * Theta, Y), s
    return loss.dual_value(s_max * Theta, Y), s_max


class _GatedCertificates:
    """Duality-gap certificate of the gated program, shared by the numpy and torch backends.

    Needs ``apply``, ``objective``, ``dual_norms``, ``loss``, ``Y`` and ``alpha``.
    """

    def gap(self, U, Z=None, with_norms=False):
        """Duality gap at ``U``; with ``with_norms`` also the dual norms ``(P, c)``."""
        if Z is None:
            Z = self.apply(U)
        primal = self.objective(U, Z)
        Theta = -self.loss.gradient(Z, self.Y)
        norms = self.dual_norms(Theta)
        cmax = float(norms.max(initial=0.0))
        s_max = 1.0 if cmax <= self.alpha else self.alpha / cmax
        dual, s = _best_dual(self.loss, Theta, self.Y, s_max)
        gap = _make_gap(primal, dual, s)
        return (gap, norms) if with_norms else gap

    def dual_value_at(self, Theta):
        """Lower bound on the optimum from any dual candidate ``Theta`` (n, c).

        ``Theta`` is scaled into the dual feasible set (one adjoint product);
        returns ``(dual value, scaled Theta)``.
        """
        cmax = float(self.dual_norms(Theta).max(initial=0.0))
        s_max = 1.0 if cmax <= self.alpha else self.alpha / cmax
        dual, s = _best_dual(self.loss, Theta, self.Y, s_max)
        return dual, s * Theta


class GatedReLUProblem(_GatedCertificates):
    """The gated ReLU group lasso on fixed masks ``D`` (see module docstring).

    Parameters
    ----------
    Xa : ndarray of shape (n, d), float64 or float32
        The products (GEMMs) run in this precision; the weights ``U`` stay float64
        (mixed precision), and predictions, losses and certificates are evaluated
        in float64.
    D : ndarray of shape (n, P), bool or uint8
    Y : ndarray of shape (n, c), encoded targets
    loss : str or Loss
    alpha : float
    """

    def __init__(self, Xa, D, Y, loss, alpha):
        self.Xa, self.D, self.Y = Xa, D, Y
        self.loss = get_loss(loss)
        self.alpha = float(alpha)
        self.shape = (Xa.shape[1], D.shape[1], Y.shape[1])
        self.n_samples = Xa.shape[0]
        self.dtype = Xa.dtype

    def zeros(self):
        """All-zero weights of shape ``(d, P, c)``.

        Iterates are kept in float64 even when the products run in float32 (mixed
        precision): only the GEMM operands are rounded, not the accumulated iterates.
        """
        return np.zeros(self.shape)

    def asweights(self, U):
        """``U`` as a float64 array of the problem's shape (a copy)."""
        U = np.array(U, dtype=np.float64)
        if U.shape != self.shape:
            raise ValueError(f"warm-start weights must have shape {self.shape}, got {U.shape}")
        return U

    def to_numpy(self, U):
        """Weights as a float64 numpy array."""
        return np.asarray(U, dtype=np.float64)

    #: problems whose masks fit in this many bytes as floats keep a float copy for the
    #: products (saves a conversion pass per product; 0.03 ms of 0.3 ms on pima)
    FLOAT_MASK_BYTES = 1 << 23

    @property
    def _kernel_masks(self):
        """``D`` for the masked products: a float copy when small, else ``D`` itself."""
        D = self.D
        cached = getattr(self, "_float_masks", None)
        if cached is not None and cached[0] is D:
            return cached[1]
        Dk = D
        if D.dtype != self.Xa.dtype and D.size * self.Xa.dtype.itemsize <= self.FLOAT_MASK_BYTES:
            Dk = D.astype(self.Xa.dtype)
        self._float_masks = (D, Dk)
        return Dk

    @property
    def _kernel_data_t(self):
        """A contiguous ``Xa.T`` for the adjoint when the masks are kept as floats
        (small problems, see :func:`cvxnn.operators.adjoint`), else ``None``."""
        Xa = self.Xa
        cached = getattr(self, "_data_t", None)
        if cached is not None and cached[0] is Xa:
            return cached[1]
        XaT = None
        if self._kernel_masks.dtype == Xa.dtype and Xa.shape[1] < self.D.shape[1]:
            XaT = np.ascontiguousarray(Xa.T)
        self._data_t = (Xa, XaT)
        return XaT

    # linear map x -> outputs and its adjoint (used by FISTA)
    def apply(self, U):
        return forward(self.Xa, self._kernel_masks, U).astype(np.float64, copy=False)

    def adjoint(self, G):
        return adjoint(self.Xa, self._kernel_masks, G, XaT=self._kernel_data_t)

    def smooth_value(self, Z):
        """Loss ``L(Z, Y)`` at predictions ``Z`` (n, c)."""
        return self.loss.value(Z, self.Y)

    def smooth_value_and_gradient(self, Z):
        """``(L(Z, Y), grad_Z L)``."""
        return self.loss.value_and_gradient(Z, self.Y)

    def penalty(self, U):
        """``alpha * sum_{i,k} ||U[:, i, k]||_2``."""
        return self.alpha * float(group_norms(U).sum(dtype=np.float64))

    def prox(self, U, step):
        """Block soft-thresholding: the proximal map of ``step * penalty``."""
        return group_soft_threshold(U, step * self.alpha)

    def objective(self, U, Z=None):
        """Loss plus penalty at ``U`` (``Z`` = its predictions when already known)."""
        if Z is None:
            Z = self.apply(U)
        return self.smooth_value(Z) + self.penalty(U)

    def dual_norms(self, Theta):
        """Block norms ``||Xa^T D_i Theta_k||``, shape ``(P, c)``, float64."""
        return group_norms(self.adjoint(Theta)).astype(np.float64, copy=False)

    # pattern subsets (screening, working sets)
    def restrict(self, idx):
        """The same program on the patterns ``idx`` only (a new problem)."""
        return GatedReLUProblem(self.Xa, self.D[:, idx], self.Y, self.loss, self.alpha)

    def take(self, U, idx):
        """Weights of the patterns ``idx``: ``U[:, idx]``."""
        return U[:, idx]

    def embed(self, U_sub, idx, n_patterns):
        """Full weights with ``U_sub`` at the patterns ``idx`` and zeros elsewhere."""
        U = np.zeros((U_sub.shape[0], n_patterns, U_sub.shape[2]), dtype=U_sub.dtype)
        U[:, idx] = U_sub
        return U

    def block_frobenius(self):
        """``||D_i Xa||_F`` per pattern, shape ``(P,)`` (for safe screening)."""
        from .screening import block_frobenius_norms

        return block_frobenius_norms(self.Xa, self.D)


class ReLUProblem:
    """The cone-constrained ReLU program, variables ``Q`` of shape ``(d, 2, P, c)``."""

    def __init__(self, Xa, D, Y, loss, alpha):
        self.Xa, self.D, self.Y = Xa, D, Y
        self.S = np.where(D, 1.0, -1.0).astype(Xa.dtype)
        self.Df = D.astype(Xa.dtype)
        self.loss = get_loss(loss)
        self.alpha = float(alpha)
        d, P, c = Xa.shape[1], D.shape[1], Y.shape[1]
        self.shape = (d, 2, P, c)
        self._sign = np.array([1.0, -1.0], dtype=Xa.dtype)

    def products(self, Q):
        """``Xa @ Q`` reshaped to ``(n, 2, P, c)`` (one GEMM)."""
        d = Q.shape[0]
        return (self.Xa @ Q.reshape(d, -1)).reshape((self.Xa.shape[0],) + Q.shape[1:])

    def predictions_from_products(self, XQ):
        diff = XQ[:, 0] - XQ[:, 1]
        return np.einsum("npc,np->nc", diff, self.Df)

    def constraints_from_products(self, XQ):
        """``(2 D_i - I) Xa Q`` of shape ``(n, 2, P, c)``; feasible when ``>= 0``."""
        return XQ * self.S[:, None, :, None]

    def predict(self, Q):
        return self.predictions_from_products(self.products(Q))

    def adjoint(self, GZ, GC=None):
        """Adjoint of ``Q -> (Z, C)`` at ``(GZ, GC)``, shape ``(d, 2, P, c)``."""
        M = self.Df[:, None, :, None] * GZ[:, None, None, :] * self._sign[None, :, None, None]
        if GC is not None:
            M = M + GC * self.S[:, None, :, None]
        n = self.Xa.shape[0]
        return (self.Xa.T @ M.reshape(n, -1)).reshape((self.Xa.shape[1],) + M.shape[1:])

    def penalty(self, Q):
        return self.alpha * float(group_norms(Q).sum())

    def prox(self, Q, step):
        return group_soft_threshold(Q, step * self.alpha)

    def objective(self, Q, Z=None):
        if Z is None:
            Z = self.predict(Q)
        return self.loss.value(Z, self.Y) + self.penalty(Q)

    def violation(self, Q, XQ=None) -> float:
        """Relative constraint violation ``max (-(2D_i - I) Xa q)_+ / (max_j ||x_j|| * max ||q||)``.

        Scale invariant: 1e-6 means that no constraint is violated by more than a
        millionth of the largest possible constraint value.
        """
        if XQ is None:
            XQ = self.products(Q)
        worst = float(np.max(-self.constraints_from_products(XQ), initial=0.0))
        if worst <= 0:
            return 0.0
        rown = float(np.sqrt(np.einsum("nd,nd->n", self.Xa, self.Xa)).max())
        qn = float(group_norms(Q).max())
        return worst / (rown * qn)

    def dual_norms(self, Theta, A=None):
        """Block norms of ``+-Xa^T D_i Theta_k + Xa^T (2D_i - I) A``, shape ``(2, P, c)``."""
        return group_norms(self.adjoint(Theta, A))

    def refine_multipliers(self, Theta, A=None, n_iter=200):
        """Improve cone multipliers ``A >= 0`` so that the dual norms shrink.

        Runs accelerated projected gradient on ``sum_blocks 1/2 ||G_b + Xa^T S A_b||^2``
        (separable over blocks, so each block's norm is reduced), only on the
        blocks whose norm exceeds ``alpha``.
        """
        n = self.Xa.shape[0]
        shape = (n,) + self.shape[1:]
        A = np.zeros(shape) if A is None else np.maximum(A, 0.0)
        norms = self.dual_norms(Theta, A)
        bad = norms > self.alpha * (1 + 1e-12)
        if not np.any(bad) or n_iter <= 0:
            return A
        Lip = float(np.linalg.norm(self.Xa, 2)) ** 2
        if Lip == 0:
            return A
        mask = bad[None].astype(self.Xa.dtype)
        G0 = self.adjoint(Theta, None)
        Sx = self.S[:, None, :, None]
        d = self.Xa.shape[1]
        Ay = A.copy()
        t = 1.0
        for _ in range(n_iter):
            H = G0 + (self.Xa.T @ (Ay * Sx).reshape(n, -1)).reshape((d,) + shape[1:])
            grad = (self.Xa @ H.reshape(d, -1)).reshape(shape) * Sx * mask
            A_new = np.maximum(Ay - grad / Lip, 0.0)
            t_new = 0.5 * (1 + np.sqrt(1 + 4 * t * t))
            Ay = A_new + ((t - 1) / t_new) * (A_new - A)
            A, t = A_new, t_new
        return A

    def gap(self, Q, A=None, Z=None, refine_iter=200) -> Gap:
        """Duality gap of the ReLU program at ``Q`` with cone multipliers ``A``."""
        if Z is None:
            Z = self.predict(Q)
        primal = self.objective(Q, Z)
        Theta = -self.loss.gradient(Z, self.Y)
        A = self.refine_multipliers(Theta, A, n_iter=refine_iter)
        cmax = float(self.dual_norms(Theta, A).max(initial=0.0))
        s_max = 1.0 if cmax <= self.alpha else self.alpha / cmax
        dual, s = _best_dual(self.loss, Theta, self.Y, s_max)
        # the multipliers scale with Theta; only the scale s_max was needed for feasibility
        return _make_gap(primal, dual, s)
