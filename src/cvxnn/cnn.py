"""Two-layer convolutional ReLU networks trained through their convex programs.

Model (math-spec section 3.3).  A sample is an image of shape ``image_shape``:
``(L,)`` (1-D signal), ``(H, W)`` (2-D image) or ``(H, W, C)`` (2-D image with
``C`` channels, channel last), given as one flat row of ``X`` (C order).  Sliding
windows of ``patch_size`` with ``stride`` over the image padded by ``padding``
zeros give ``K`` patches ``x_k`` of dimension ``h = prod(patch_size) * C``
(entries ordered as ``image[rows, cols, channels].ravel()``).  The network with
``m`` filters ``u_j`` (biases ``b_j``) and sum pooling is::

    f(x) = sum_j a_j sum_k (x_k^T u_j + b_j)_+ ,     a_j in R^c

trained on ``L(f(X), Y) + alpha/2 sum_j (||u_j||^2 + b_j^2 + ||a_j||^2)`` with the
losses of :mod:`cvxnn.losses` (squared ``||.||^2/(2n)``, logistic, cross-entropy).

Convex programs.  Stack the (bias-augmented) patches of all samples as ``Xbar``
of shape ``(n K, h_a)`` (row ``s K + k`` is patch ``k`` of sample ``s``;
``h_a = h + 1`` with a bias).  A gate ``g`` gives a *joint* pattern
``D = 1[Xbar g > 0]`` over all patches (the cells of ``Xbar``'s hyperplane
arrangement).  With ``pool`` summing the ``K`` rows of each sample::

    gated:  min_U  L(pool(sum_i D_i Xbar U_i), Y) + alpha sum_{i,k} ||U[:, i, k]||
    relu:   min_{V,W} L(pool(sum_i D_i Xbar (V_i - W_i)), Y)
                      + alpha sum_{i,k} (||V[:, i, k]|| + ||W[:, i, k]||)
            s.t. (2 D_i - I) Xbar V_i >= 0,  (2 D_i - I) Xbar W_i >= 0.

Blocks are per (pattern, output) ("one-vs-all" outputs, as in the rest of
cvxnn): each non-zero block becomes one filter feeding a single output, with
balanced weights ``u = v / sqrt(||v||)``, ``a = sqrt(||v||) e_k`` (negated for
``W`` blocks), so the network's weight-decay objective equals the convex
objective.  With every joint pattern (``gates="enumerate"``) the relu program's
optimum is the global optimum of the CNN whose filters each feed one output
(a scalar output weight per filter when ``c = 1``).

Products.  The gated prediction is linear in the pooled masked patches
``F[s, :, i] = sum_k D_i[sK + k] xa_sk`` (:func:`pooled_features`, one batched
GEMM, memory ``n h_a P``), so each product is a single GEMM
``(n, h_a P) x (h_a P, c)``; when ``F`` would be too large the products are
GEMMs on ``Xbar`` plus a mask (:mod:`cvxnn.operators`) followed by pooling (a
reshape-sum; its adjoint a repeat).  The gated program is solved by
:func:`cvxnn.solvers.gated.solve_gated_fista` unchanged (problem class
:class:`GatedCNNProblem`, certified by the duality gap, with gap-safe
screening).  The relu program is solved by proximal gradient whose prox is an
exact cone projection followed by group shrinkage, on a growing working set of
patterns (:func:`solve_relu_cnn`); its certificate uses the best cone
multipliers, ``rho_b = ||proj_{K_i}(+-Xbar^T D_i repeat(Theta))|| <= alpha``,
computed exactly by :func:`cvxnn.solvers.cone_projection.project_cones`, which
applies verbatim to the stacked patch matrix.

Scope: the relu solver is meant for small problems (each prox projects blocks
onto cones with ``n K`` constraints); the gated solver scales to MNIST-sized
subsets.  Vector outputs are one-vs-all (each filter feeds one output); the
exact program for a filter with a full vector ``a_j`` (penalised by
``||a_j||_2``) is not a group lasso and is not implemented.
"""

from __future__ import annotations

import numbers
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit, softmax

from ._data import augment, check_alpha, check_X, check_y, decode_outputs, encode_targets
from .losses import LOSSES, get_loss
from .operators import adjoint as _adjoint
from .operators import forward as _forward
from .problems import (GatedReLUProblem, ReLUProblem, _best_dual, _GatedCertificates,
                       _make_gap, group_norms)

__all__ = [
    "extract_patches", "sample_patch_gates", "enumerate_patch_patterns", "patch_masks",
    "pooled_features",
    "GatedCNNProblem", "ReLUCNNProblem", "solve_relu_cnn", "solve_cnn", "CNNResult",
    "TwoLayerReLUCNN", "GatedTwoLayerReLUCNN", "ConvexCNNClassifier", "ConvexCNNRegressor",
]

_CHUNK = 1 << 22


# ----------------------------------------------------------------------------
# geometry and patches


@dataclass(frozen=True)
class _Geometry:
    spatial: tuple      # spatial dims (1 or 2 of them)
    channels: int
    patch: tuple
    stride: tuple
    padding: tuple
    out: tuple          # number of patch positions per spatial axis

    @property
    def n_patches(self) -> int:
        return int(np.prod(self.out))

    @property
    def patch_dim(self) -> int:
        return int(np.prod(self.patch)) * self.channels

    @property
    def image_shape(self) -> tuple:
        return self.spatial + ((self.channels,) if len(self.spatial) == 2 and self.channels > 1
                               else ())


def _int_tuple(value, name: str, length: int, minimum: int) -> tuple:
    vals = (value,) * length if isinstance(value, numbers.Integral) and not isinstance(
        value, (bool, np.bool_)) else value
    try:
        vals = tuple(vals)
    except TypeError:
        raise TypeError(f"{name} must be an int or a tuple of {length} ints, "
                        f"got {value!r}") from None
    if len(vals) != length or any(isinstance(v, (bool, np.bool_))
                                  or not isinstance(v, numbers.Integral)
                                  or v < minimum for v in vals):
        raise ValueError(
            f"{name} must be an int >= {minimum} or a tuple of {length} such ints "
            f"(one per spatial axis), got {value!r}"
        )
    return tuple(int(v) for v in vals)


def _geometry(image_shape, patch_size, stride, padding, n_features=None) -> _Geometry:
    """Validate the convolution arguments; raise errors that name them."""
    if isinstance(image_shape, numbers.Integral) and not isinstance(image_shape, (bool, np.bool_)):
        image_shape = (image_shape,)
    try:
        shape = tuple(image_shape)
    except TypeError:
        raise TypeError(f"image_shape must be a tuple such as (L,), (H, W) or (H, W, C), "
                        f"got {image_shape!r}") from None
    if not 1 <= len(shape) <= 3 or any(isinstance(v, (bool, np.bool_)) or not isinstance(
            v, numbers.Integral) or v < 1 for v in shape):
        raise ValueError(f"image_shape must be (L,), (H, W) or (H, W, C) with positive ints, "
                         f"got {image_shape!r}")
    shape = tuple(int(v) for v in shape)
    spatial, channels = (shape, 1) if len(shape) < 3 else (shape[:2], shape[2])
    if n_features is not None and int(np.prod(shape)) != n_features:
        raise ValueError(f"image_shape {shape} has {int(np.prod(shape))} entries but X has "
                         f"{n_features} features (columns)")
    s = len(spatial)
    patch = _int_tuple(patch_size, "patch_size", s, 1)
    stride = _int_tuple(stride, "stride", s, 1)
    padding = _int_tuple(padding, "padding", s, 0)
    out = []
    for a in range(s):
        full = spatial[a] + 2 * padding[a]
        if patch[a] > full:
            raise ValueError(f"patch_size {patch} does not fit in image_shape {shape} with "
                             f"padding {padding} (axis {a}: {patch[a]} > {full})")
        if padding[a] >= patch[a]:
            raise ValueError(f"padding {padding} must be smaller than patch_size {patch} "
                             "(otherwise some patches are all padding)")
        out.append((full - patch[a]) // stride[a] + 1)
    return _Geometry(spatial, channels, patch, stride, padding, tuple(out))


def _patches(X: np.ndarray, g: _Geometry) -> np.ndarray:
    """Patches ``(n, K, h)`` of validated ``X`` (a view-based gather, then a copy)."""
    from numpy.lib.stride_tricks import sliding_window_view

    n = X.shape[0]
    img = X.reshape((n,) + g.spatial + (g.channels,))
    pad = [(0, 0)] + [(p, p) for p in g.padding] + [(0, 0)]
    if any(g.padding):
        img = np.pad(img, pad)
    axes = tuple(range(1, 1 + len(g.spatial)))
    win = sliding_window_view(img, g.patch, axis=axes)      # (n, *pos, C, *patch)
    if len(g.spatial) == 1:
        win = win[:, ::g.stride[0]][:, :g.out[0]]
        win = win.transpose(0, 1, 3, 2)                       # (n, K, p, C)
    else:
        win = win[:, ::g.stride[0], ::g.stride[1]][:, :g.out[0], :g.out[1]]
        win = win.transpose(0, 1, 2, 4, 5, 3)                 # (n, Ho, Wo, ph, pw, C)
    return np.ascontiguousarray(win).reshape(n, g.n_patches, g.patch_dim)


def extract_patches(X, image_shape, patch_size, stride=1, padding=0) -> np.ndarray:
    """Sliding-window patches of images given as flat rows.

    Parameters
    ----------
    X : array-like of shape (n, prod(image_shape))
        One image per row (C order; channel last for ``(H, W, C)``).
    image_shape : tuple
        ``(L,)``, ``(H, W)`` or ``(H, W, C)``.
    patch_size, stride, padding : int or tuple (one per spatial axis)
        Window size, step and number of zeros added on both sides of each
        spatial axis (``padding < patch_size``).

    Returns
    -------
    P : ndarray of shape (n, K, h)
        ``P[s, k]`` is patch ``k`` (positions in row-major order) of sample ``s``,
        flattened as ``image[rows, cols, channels].ravel()``;
        ``h = prod(patch_size) * C``.
    """
    X = check_X(X, "X")
    g = _geometry(image_shape, patch_size, stride, padding, X.shape[1])
    return _patches(X, g)


def _stacked(X, g: _Geometry, bias: bool, dtype=np.float64) -> np.ndarray:
    """``Xbar`` of shape ``(n K, h_a)`` in ``dtype``."""
    P = _patches(X, g)
    Xbar = P.reshape(-1, P.shape[2]).astype(dtype, copy=False)
    return augment(Xbar, bias)


def _check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def sample_patch_gates(X, image_shape, patch_size, stride=1, padding=0, *, n_gates=100,
                       bias=True, random_state=None) -> np.ndarray:
    """Gaussian filter gates with distinct, non-zero joint patterns.

    Draws ``n_gates`` standard normal gates in ``R^{h_a}`` (``h_a = h + 1`` with
    ``bias``), as :func:`cvxnn.sample_gates` does on the stacked patch matrix
    ``Xbar``: a gate's joint pattern is ``1[Xbar g > 0]`` over all patches of all
    samples; gates with an all-zero pattern are dropped, and of gates with equal
    patterns only the first drawn is kept.

    Returns
    -------
    G : ndarray of shape (h_a, P), ``P <= n_gates``
    """
    from .patterns import sample_gates

    X = check_X(X, "X")
    g = _geometry(image_shape, patch_size, stride, padding, X.shape[1])
    bias = _check_bool(bias, "bias")
    Xbar = _patches(X, g).reshape(-1, g.patch_dim)
    return sample_gates(Xbar, n_gates, bias=bias, random_state=random_state)


def enumerate_patch_patterns(X, image_shape, patch_size, stride=1, padding=0, *, bias=True,
                             max_patterns=100_000) -> np.ndarray:
    """One gate per joint pattern: the cells of the arrangement of ``Xbar``.

    Uses :func:`cvxnn.enumerate_patterns` on the stacked patch matrix (exact; only
    for tiny problems since the count grows like ``(n K)^rank``).

    Returns
    -------
    G : ndarray of shape (h_a, P)
    """
    from .patterns import enumerate_patterns

    X = check_X(X, "X")
    g = _geometry(image_shape, patch_size, stride, padding, X.shape[1])
    bias = _check_bool(bias, "bias")
    Xbar = _patches(X, g).reshape(-1, g.patch_dim)
    return enumerate_patterns(Xbar, bias=bias, max_patterns=max_patterns)


def patch_masks(Xa: np.ndarray, G: np.ndarray) -> np.ndarray:
    """Joint masks ``1[Xa G > 0]`` of shape ``(n K, P)`` (bool), in row chunks."""
    nK, P = Xa.shape[0], G.shape[1]
    D = np.empty((nK, P), dtype=bool)
    Gc = G.astype(Xa.dtype, copy=False)
    step = max(1, _CHUNK // max(P, 1))
    for s in range(0, nK, step):
        np.greater(Xa[s:s + step] @ Gc, 0, out=D[s:s + step])
    return D


# ----------------------------------------------------------------------------
# the convex programs


def _pool(Zp: np.ndarray, K: int) -> np.ndarray:
    return Zp.reshape(-1, K, Zp.shape[-1]).sum(axis=1, dtype=np.float64)


def pooled_features(Xa: np.ndarray, D: np.ndarray, n_patches: int) -> np.ndarray:
    """``F[s, :, i] = sum_k D[sK + k, i] Xa[sK + k]``, shape ``(n, h_a, P)`` (dtype of ``Xa``).

    The gated CNN's prediction is linear in these pooled masked patches:
    ``Z = F.reshape(n, h_a P) @ U.reshape(h_a P, c)``.  One batched GEMM per
    chunk of samples (``K x h_a`` by ``K x P``).
    """
    K = int(n_patches)
    n = Xa.shape[0] // K
    h_a, P = Xa.shape[1], D.shape[1]
    F = np.empty((n, h_a, P), dtype=Xa.dtype)
    rows = max(1, _CHUNK // max(K * P, 1))
    for s in range(0, n, rows):
        e = min(n, s + rows)
        Xs = Xa[s * K:e * K].reshape(e - s, K, h_a)
        Ds = D[s * K:e * K].reshape(e - s, K, P).astype(Xa.dtype)
        np.matmul(Xs.transpose(0, 2, 1), Ds, out=F[s:e])
    return F


class GatedCNNProblem(_GatedCertificates):
    """Gated CNN program (module docstring) with the interface of :class:`GatedReLUProblem`.

    Parameters
    ----------
    Xa : ndarray of shape (n K, h_a), float64 or float32
        Stacked (augmented) patches, sample-major.
    D : ndarray of shape (n K, P), bool
        Joint masks.
    Y : ndarray of shape (n, c)
    loss : str or Loss
    alpha : float
    n_patches : int
        ``K``.
    features : {"auto", True, False} or ndarray (n, h_a, P)
        Products through the pooled masked patches ``F`` (:func:`pooled_features`;
        one GEMM ``n x h_a P x c`` per product, memory ``n h_a P``) when True, or
        ``"auto"`` and ``n h_a P <= 2e8``; otherwise GEMM on ``Xa`` + mask + pool
        per product (:mod:`cvxnn.operators`; memory ``n K P`` bytes for the masks).

    Weights ``U`` have shape ``(h_a, P, c)``; ``apply(U)`` returns ``Z`` (n, c).
    """

    def __init__(self, Xa, D, Y, loss, alpha, n_patches, features="auto"):
        self.Xa, self.D, self.Y = Xa, D, Y
        self.K = int(n_patches)
        self.loss = get_loss(loss)
        self.alpha = float(alpha)
        self.shape = (Xa.shape[1], D.shape[1], Y.shape[1])
        self.n_samples = Y.shape[0]
        self.dtype = Xa.dtype
        if Xa.shape[0] != self.n_samples * self.K:
            raise ValueError("Xa must have n * n_patches rows")
        if isinstance(features, np.ndarray):
            self.F = features
        elif features is True or (isinstance(features, str) and features == "auto" and
                                  self.n_samples * Xa.shape[1] * D.shape[1] <= 2e8):
            self.F = pooled_features(Xa, D, self.K)
        else:
            self.F = None

    zeros = GatedReLUProblem.zeros
    asweights = GatedReLUProblem.asweights
    to_numpy = GatedReLUProblem.to_numpy
    smooth_value = GatedReLUProblem.smooth_value
    smooth_value_and_gradient = GatedReLUProblem.smooth_value_and_gradient
    penalty = GatedReLUProblem.penalty
    prox = GatedReLUProblem.prox
    objective = GatedReLUProblem.objective
    dual_norms = GatedReLUProblem.dual_norms
    take = GatedReLUProblem.take
    embed = GatedReLUProblem.embed

    def apply(self, U):
        """Pooled predictions ``Z`` (n, c), float64."""
        if self.F is not None:
            n = self.n_samples
            U2 = np.asarray(U, dtype=self.F.dtype).reshape(-1, self.shape[2])
            return (self.F.reshape(n, -1) @ U2).astype(np.float64, copy=False)
        return _pool(_forward(self.Xa, self.D, U), self.K)

    def adjoint(self, G):
        """``Xa^T (D_i repeat(G))``, shape ``(h_a, P, c)``."""
        if self.F is not None:
            n = self.n_samples
            G = np.asarray(G, dtype=self.F.dtype)
            return (self.F.reshape(n, -1).T @ G).reshape(self.shape[0], self.shape[1], -1)
        return _adjoint(self.Xa, self.D, np.repeat(np.asarray(G), self.K, axis=0))

    def restrict(self, idx):
        """The same program on the patterns ``idx`` only (a new problem)."""
        F = None if self.F is None else np.ascontiguousarray(self.F[:, :, idx])
        return GatedCNNProblem(self.Xa, self.D[:, idx], self.Y, self.loss, self.alpha, self.K,
                               features=F if F is not None else False)

    def block_frobenius(self):
        """Upper bounds on ``||pool D_i Xa||_2``: ``||F_i||_F`` (or ``sqrt(K) ||D_i Xa||_F``)."""
        if self.F is not None:
            return np.sqrt(np.einsum("nap,nap->p", self.F, self.F, dtype=np.float64))
        from .screening import block_frobenius_norms

        return np.sqrt(self.K) * block_frobenius_norms(self.Xa, self.D)


class ReLUCNNProblem(ReLUProblem):
    """Cone-constrained CNN program; variables ``Q`` of shape ``(h_a, 2, P, c)``.

    Same interface as :class:`cvxnn.problems.ReLUProblem`, with predictions pooled
    over the ``K`` patches of each sample and the cone constraints on every
    patch row of ``Xa`` (n K, h_a).
    """

    def __init__(self, Xa, D, Y, loss, alpha, n_patches):
        super().__init__(Xa, D, Y, loss, alpha)
        self.K = int(n_patches)
        self.n_samples = Y.shape[0]

    def predictions_from_products(self, XQ):
        """Pooled predictions ``(n, c)`` from the per-patch products (sum over the K patches)."""
        return _pool(super().predictions_from_products(XQ), self.K)

    def adjoint(self, GZ, GC=None):
        return super().adjoint(np.repeat(np.asarray(GZ), self.K, axis=0), GC)

    def exact_gap(self, Q, Z=None, max_work=3e9, with_norms=False):
        """Duality gap with the best cone multipliers (exact cone projections).

        Block dual norm: ``rho_b = ||proj_{K_i}(+-Xa^T D_i repeat(Theta_k))||``.
        Falls back to projected-gradient multipliers when the projections would
        be too costly.  With ``with_norms`` also returns ``rho`` of shape
        ``(2, P, c)`` (unprojected norms where they are already ``<= alpha``).
        """
        from .solvers.cone_projection import project_cones

        if Z is None:
            Z = self.predict(Q)
        Theta = -self.loss.gradient(Z, self.Y)
        G = self.adjoint(Theta)                      # (h_a, 2, P, c)
        norms = group_norms(G)
        bad = norms > self.alpha
        nbad = int(bad.sum())
        h = G.shape[0]
        if nbad and self.Xa.shape[0] * nbad * (20 * h + 50) > max_work:
            gap = self.gap(Q, Z=Z, refine_iter=500)
            return (gap, norms) if with_norms else gap
        if nbad:
            pat = np.nonzero(bad)[1]                  # pattern index of each bad block
            Up, _, _, _ = project_cones(self.Xa, self.S, pat, G[:, bad])
            norms[bad] = np.sqrt((Up * Up).sum(axis=0))
        cmax = float(norms.max(initial=0.0))
        primal = self.objective(Q, Z)
        s_max = 1.0 if cmax <= self.alpha else self.alpha / cmax
        dual, s = _best_dual(self.loss, Theta, self.Y, s_max)
        gap = _make_gap(primal, dual, s)
        return (gap, norms) if with_norms else gap

    def restrict(self, idx):
        """The same program on the patterns ``idx`` only."""
        return ReLUCNNProblem(self.Xa, self.D[:, idx], self.Y, self.loss, self.alpha, self.K)

    def restore(self, Q):
        """Project every non-zero block onto its cone (removes residual violations)."""
        from .solvers.cone_projection import project_cones

        norms = group_norms(Q)
        nz = norms > 0
        if not nz.any():
            return Q
        Q = Q.copy()
        pat = np.nonzero(nz)[1]
        Up, _, _, _ = project_cones(self.Xa, self.S, pat, Q[:, nz])
        Q[:, nz] = Up
        return Q


class _ReLUProxProblem:
    """The relu CNN program as ``min L(A q) + sum_b (alpha ||q_b|| + indicator_{K_b}(q_b))``.

    For a closed convex cone ``K`` the prox of ``t alpha ||.|| + indicator_K`` is
    ``shrink(proj_K(x), t alpha)`` (write ``q = r u`` with ``||u|| = 1``: the best
    direction maximises ``<u, x>`` over ``K``, i.e. ``u = proj_K(x)/||proj_K(x)||``
    by Moreau's decomposition), so proximal gradient runs on the constrained
    program directly, with exact cone projections
    (:func:`cvxnn.solvers.cone_projection.project_cones`) in the prox.  Blocks with
    ``||x_b|| <= t alpha`` are zero without projecting (``||proj_K x|| <= ||x||``).
    """

    def __init__(self, relu: ReLUCNNProblem):
        self.relu = relu
        self.loss, self.Y, self.alpha = relu.loss, relu.Y, relu.alpha
        self.n_samples, self.shape = relu.n_samples, relu.shape

    def apply(self, Q):
        return self.relu.predict(Q)

    def adjoint(self, G):
        return self.relu.adjoint(G)

    def smooth_value(self, Z):
        """Loss ``L(Z, Y)`` at pooled predictions ``Z`` (n, c)."""
        return self.loss.value(Z, self.Y)

    def smooth_value_and_gradient(self, Z):
        """``(L(Z, Y), grad_Z L)``."""
        return self.loss.value_and_gradient(Z, self.Y)

    def penalty(self, Q):
        """``alpha * sum (||v_i|| + ||w_i||)`` over all blocks."""
        return self.relu.penalty(Q)

    def prox(self, Q, step):
        """Proximal map of ``step * penalty`` plus the cone indicators: block shrinkage of the exact cone projection."""
        from .solvers.cone_projection import project_cones

        thresh = step * self.alpha
        norms = group_norms(Q)
        cand = norms > thresh
        out = np.zeros_like(Q)
        if cand.any():
            pat = np.nonzero(cand)[1]
            Up, _, _, _ = project_cones(self.relu.Xa, self.relu.S, pat, Q[:, cand])
            pn = np.sqrt((Up * Up).sum(axis=0))
            with np.errstate(divide="ignore", invalid="ignore"):
                scale = np.where(pn > thresh, 1.0 - thresh / np.where(pn > 0, pn, 1.0), 0.0)
            out[:, cand] = Up * scale
        return out


def _fista_relu(problem, Q, *, tol, max_iter, check_every, verbose, deadline, t0, history,
                offset=0):
    from .solvers.fista import estimate_lipschitz, fista

    prox_problem = _ReLUProxProblem(problem)
    n, c = problem.Y.shape
    beta = problem.loss.curvature(n)
    step = 1.0 / max(estimate_lipschitz(prox_problem, beta, (n, c)), 1e-300)

    def check(Qx, Z, k):
        gap = problem.exact_gap(Qx, Z)
        history.append((offset + k, time.perf_counter() - t0, gap.relative_gap, gap.primal, 0.0))
        if verbose >= 2 or (verbose and (offset + k) % (check_every * 50) == 0):
            print(f"[relu cnn] iter {offset + k:6d} patterns {problem.shape[2]:5d} objective "
                  f"{gap.primal:.10g} rel. gap {gap.relative_gap:.3e}", flush=True)
        late = deadline is not None and time.perf_counter() > deadline
        return gap.relative_gap <= tol or late, {}

    state = fista(prox_problem, Q, step=step, check=check, max_iter=max(max_iter, 1),
                  check_every=check_every)
    return state.x, state.n_iter


def solve_relu_cnn(problem: ReLUCNNProblem, Q0=None, *, tol=1e-6, max_iter=20000,
                   check_every=10, verbose=0, time_limit=None, working_set=20) -> dict:
    """Proximal gradient (FISTA) with exact cone projections for the relu CNN program.

    Every iterate satisfies the cone constraints (to the rounding of the
    projection, see :class:`_ReLUProxProblem`).  With ``working_set`` (an int,
    the number of patterns added per round; ``0`` disables it) the program is
    solved on a growing set of patterns: the full certificate prices every
    block (``rho_b`` of :meth:`ReLUCNNProblem.exact_gap`), the patterns of the
    largest violators ``rho_b > alpha`` join the set, and the loop ends when
    the relative duality gap of the FULL program is ``<= tol``.  The returned
    ``Q`` is projected once more onto the cones (feasibility restoration) and
    re-certified.

    Returns
    -------
    dict with ``Q`` (h_a, 2, P, c), ``gap`` (:class:`~cvxnn.problems.Gap`),
    ``violation`` (relative cone violation of the returned ``Q``), ``n_iter``,
    ``converged`` and ``history`` (``(iter, seconds, rel_gap, objective, violation)``).
    """
    t0 = time.perf_counter()
    deadline = None if time_limit is None else t0 + float(time_limit)
    P = problem.shape[2]
    Q = np.zeros(problem.shape) if Q0 is None else np.array(Q0, dtype=float)
    history = []
    kw = dict(check_every=check_every, verbose=verbose, deadline=deadline, t0=t0,
              history=history)
    total = 0
    if not working_set or P <= 2 * working_set:
        Q, total = _fista_relu(problem, Q, tol=tol, max_iter=max_iter, **kw)
    else:
        active = np.flatnonzero(group_norms(Q).any(axis=(0, 2)))
        idx = active
        tol_in = tol / 10
        while True:
            gap, rho = problem.exact_gap(Q, with_norms=True)
            if gap.relative_gap <= tol or total >= max_iter or (
                    deadline is not None and time.perf_counter() > deadline):
                break
            score = rho.max(axis=(0, 2))
            score[idx] = -np.inf
            cand = np.flatnonzero(score > problem.alpha)
            if cand.size:
                add = cand[np.argsort(-score[cand])[:working_set]]
                idx = np.sort(np.concatenate([idx, add]))
            else:
                tol_in /= 10
            if verbose:
                print(f"[relu cnn] working set {idx.size} patterns, rel. gap "
                      f"{gap.relative_gap:.3e}", flush=True)
            sub = problem.restrict(idx)
            Qs, k = _fista_relu(sub, Q[:, :, idx], tol=tol_in, max_iter=max_iter - total,
                                offset=total, **kw)
            total += k
            Q = np.zeros(problem.shape)
            Q[:, :, idx] = Qs
            if tol_in < 1e-3 * tol:
                break
    Q = problem.restore(Q)
    gap = problem.exact_gap(Q)
    viol = problem.violation(Q)
    return {"Q": Q, "gap": gap, "violation": viol, "n_iter": total,
            "converged": gap.relative_gap <= tol, "history": history}


# ----------------------------------------------------------------------------
# networks


def _check_weight(a, name, ndim):
    try:
        arr = np.array(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of numbers") from None
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinity")
    return arr


class TwoLayerReLUCNN:
    """Two-layer convolutional ReLU network with sum pooling.

    ``f(x) = sum_j a_j sum_k (x_k^T u_j + b_j)_+`` (see the module docstring).

    Parameters
    ----------
    filters : ndarray (m, h)
        ``u_j`` in the patch layout of :func:`extract_patches`.
    biases : ndarray (m,) or None
    output_weights : ndarray (m, c) or (m,)
    image_shape, patch_size, stride, padding
        Convolution geometry (see :func:`extract_patches`).
    classes : ndarray or None
        Class labels for classification (sorted), ``None`` for regression.
    loss : {"squared", "logistic", "cross_entropy"}
    """

    def __init__(self, filters, biases, output_weights, *, image_shape, patch_size, stride=1,
                 padding=0, classes=None, loss="squared"):
        self.filters = _check_weight(filters, "filters", 2)
        W2 = np.asarray(output_weights)
        self.output_weights = _check_weight(W2[:, None] if W2.ndim == 1 else W2,
                                            "output_weights", 2)
        m = self.filters.shape[0]
        if self.output_weights.shape[0] != m:
            raise ValueError(f"output_weights must have one row per filter ({m}), "
                             f"got shape {self.output_weights.shape}")
        self.biases = None if biases is None else _check_weight(biases, "biases", 1)
        if self.biases is not None and self.biases.shape != (m,):
            raise ValueError(f"biases must have shape ({m},), got {self.biases.shape}")
        self._geom = _geometry(image_shape, patch_size, stride, padding)
        if self.filters.shape[1] != self._geom.patch_dim:
            raise ValueError(f"filters must have {self._geom.patch_dim} columns (the patch "
                             f"dimension), got shape {self.filters.shape}")
        self.image_shape = tuple(image_shape) if not isinstance(image_shape, numbers.Integral) \
            else (int(image_shape),)
        self.patch_size, self.stride, self.padding = patch_size, stride, padding
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
        self.loss = loss
        self.classes = None if classes is None else np.asarray(classes)

    @property
    def n_filters(self) -> int:
        """Number of filters ``m``."""
        return self.filters.shape[0]

    @property
    def n_outputs(self) -> int:
        """Number of outputs ``c``."""
        return self.output_weights.shape[1]

    def _check_X(self, X):
        X = check_X(X, "X")
        need = int(np.prod(self.image_shape))
        if X.shape[1] != need:
            raise ValueError(f"X has {X.shape[1]} features but the network expects "
                             f"image_shape {self.image_shape} ({need} features)")
        return X

    def _activations(self, P):
        """Hidden activations ``(n, K, m)`` from patches ``(n, K, h)``."""
        A = P @ self.filters.T
        if self.biases is not None:
            A += self.biases
        return np.maximum(A, 0.0, out=A)

    def hidden(self, X) -> np.ndarray:
        """Pooled hidden features ``sum_k act(x_k)`` of shape ``(n, m)``."""
        X = self._check_X(X)
        n, m = X.shape[0], self.n_filters
        H = np.empty((n, m))
        rows = max(1, _CHUNK // max(self._geom.n_patches * max(m, 1), 1))
        for s in range(0, n, rows):
            H[s:s + rows] = self._activations(_patches(X[s:s + rows], self._geom)).sum(axis=1)
        return H

    def forward(self, X) -> np.ndarray:
        """Outputs ``Z`` of shape ``(n, c)``."""
        return self.hidden(X) @ self.output_weights

    def decision_function(self, X) -> np.ndarray:
        """Raw outputs: shape ``(n,)`` for one output, else ``(n, c)``."""
        Z = self.forward(X)
        return Z[:, 0] if Z.shape[1] == 1 else Z

    def predict(self, X) -> np.ndarray:
        """Predicted values (regression) or labels (classification)."""
        return decode_outputs(self.forward(X), self.classes)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (``logistic`` or ``cross_entropy`` networks only)."""
        if self.loss == "squared":
            raise AttributeError("predict_proba needs loss='logistic' or 'cross_entropy'")
        Z = self.forward(X)
        if Z.shape[1] == 1:
            p = expit(Z[:, 0])
            return np.column_stack([1 - p, p])
        return softmax(Z, axis=1)

    def penalty(self, alpha=1.0) -> float:
        """``alpha/2 (||filters||^2 + ||biases||^2 + ||output_weights||^2)``."""
        tot = float((self.filters ** 2).sum() + (self.output_weights ** 2).sum())
        if self.biases is not None:
            tot += float((self.biases ** 2).sum())
        return 0.5 * alpha * tot

    def encode_targets(self, y) -> np.ndarray:
        """Targets encoded as the training loss sees them (``(n, c)``)."""
        y = np.asarray(y)
        if self.classes is None:
            Y = y.astype(np.float64)
            return Y[:, None] if Y.ndim == 1 else Y
        idx = np.searchsorted(self.classes, y)
        idx = np.clip(idx, 0, len(self.classes) - 1)
        if not np.all(self.classes[idx] == y):
            raise ValueError("y contains labels that are not in the network's classes")
        if self.n_outputs == 1:
            return np.where(idx == 1, 1.0, -1.0)[:, None]
        Y = np.zeros((len(y), self.n_outputs))
        Y[np.arange(len(y)), idx] = 1.0
        return Y

    def objective(self, X, y, alpha) -> float:
        """``L(f(X), Y) + alpha/2 (||filters||^2 + ||biases||^2 + ||output_weights||^2)``."""
        alpha = check_alpha(alpha)
        Z = self.forward(X)
        Y = self.encode_targets(check_y(y, Z.shape[0]))
        return get_loss(self.loss).value(Z, Y) + self.penalty(alpha)

    def __repr__(self):
        return (f"{type(self).__name__}(n_filters={self.n_filters}, "
                f"image_shape={self.image_shape}, patch_size={self.patch_size}, stride={self.stride}, padding={self.padding}, "
                f"loss={self.loss!r})")


class GatedTwoLayerReLUCNN(TwoLayerReLUCNN):
    """Gated CNN: ``f(x) = sum_j a_j sum_k 1[xa_k^T g_j > 0] (x_k^T u_j + b_j)``.

    ``gates`` has shape ``(m, h_a)`` (``h_a = h + 1`` when the network has
    biases: the gate acts on the patch augmented with a 1), one per filter, like
    :class:`cvxnn.GatedTwoLayerReLU`.
    """

    def __init__(self, filters, biases, output_weights, gates, **kwargs):
        super().__init__(filters, biases, output_weights, **kwargs)
        self.gates = _check_weight(gates, "gates", 2)
        h_a = self.filters.shape[1] + int(self.biases is not None)
        if self.gates.shape != (self.n_filters, h_a):
            raise ValueError(f"gates must have shape (n_filters, h_a) = ({self.n_filters}, "
                             f"{h_a}), got {self.gates.shape}")

    def _activations(self, P):
        A = P @ self.filters.T
        M = P @ self.gates[:, :P.shape[2]].T
        if self.biases is not None:
            A += self.biases
            M += self.gates[:, -1]
        return A * (M > 0)


def _network_from_blocks(U, G, sign):
    """Filters from convex blocks ``U`` (h_a, P, c); one neuron per non-zero block."""
    h_a, P, c = U.shape
    norms = group_norms(U)
    i, k = np.nonzero(norms > 0)
    scale = np.sqrt(norms[i, k])
    Wf = (U[:, i, k] / scale).T                       # (m, h_a)
    A = np.zeros((i.size, c))
    A[np.arange(i.size), k] = sign * scale
    return Wf, A, G[:, i].T


def network_from_convex(weights, G, *, bias, formulation, geometry_kwargs, classes, loss):
    """Build the CNN from convex weights ``{"U"}`` or ``{"V", "W"}`` (balanced)."""
    parts = ([(weights["U"], 1.0)] if formulation == "gated"
             else [(weights["V"], 1.0), (weights["W"], -1.0)])
    Ws, As, Gs = [], [], []
    for U, sg in parts:
        W, A, Gm = _network_from_blocks(U, G, sg)
        Ws.append(W), As.append(A), Gs.append(Gm)
    Wf, A, Gm = np.vstack(Ws), np.vstack(As), np.vstack(Gs)
    filters, biases = (Wf[:, :-1], Wf[:, -1]) if bias else (Wf, None)
    kw = dict(geometry_kwargs, classes=classes, loss=loss)
    if formulation == "gated":
        return GatedTwoLayerReLUCNN(filters, biases, A, Gm, **kw)
    return TwoLayerReLUCNN(filters, biases, A, **kw)


# ----------------------------------------------------------------------------
# solve


@dataclass
class CNNResult:
    """What :func:`solve_cnn` returns.

    ``objective`` is the convex objective at ``weights`` and equals
    ``network.objective(X, y, alpha)``; ``relative_gap`` certifies it over the
    patterns used (``certified_over``).  ``weights`` is ``{"U": (h_a, P, c)}``
    (gated) or ``{"V", "W"}`` (relu); ``gates`` has shape ``(h_a, P)``;
    ``n_active`` counts the non-zero blocks (= filters of ``network``).
    """

    network: object
    objective: float
    gap: float
    relative_gap: float
    converged: bool
    weights: dict
    gates: np.ndarray
    n_active: int
    certified_over: str
    time: float
    n_iter: int = 0
    constraint_violation: float = 0.0
    classes: np.ndarray | None = None
    history: list = field(default_factory=list)


def solve_cnn(X, y, alpha=1e-3, *, image_shape, patch_size, stride=1, padding=0,
              formulation="gated", loss="squared", gates=None, n_gates=100, bias=True, tol=1e-6,
              max_iter=None, random_state=None, verbose=0, classification=None,
              dtype="float64", time_limit=None, screen=True) -> CNNResult:
    """Train a two-layer convolutional ReLU network through its convex program.

    Objective (module docstring): ``L(f(X), Y) + alpha/2 sum_j (||u_j||^2 + b_j^2 +
    ||a_j||^2)``, solved exactly (over the joint patterns of ``gates``) as the
    gated or the cone-constrained (relu) group lasso on the stacked patches.

    Parameters
    ----------
    X : array-like (n, prod(image_shape))
    y : array-like (n,) or (n, c)
        Targets, encoded as in :func:`cvxnn.solve`.
    alpha : float
    image_shape, patch_size, stride, padding
        See :func:`extract_patches`.
    formulation : {"gated", "relu"}
    loss : {"squared", "logistic", "cross_entropy"}
    gates : None, array (h_a, P) or "enumerate"
        ``None`` samples ``n_gates`` Gaussian gates (:func:`sample_patch_gates`);
        ``"enumerate"`` uses every joint pattern (tiny problems only).
    bias : bool
    tol : float
        Target relative duality gap (and relative cone violation for relu).
    max_iter : int, optional
        FISTA iterations (default 10000 gated, 20000 relu in total).
    dtype : {"float64", "float32"}
        Precision of the products (gated only); certificates in float64.
    time_limit : float, optional
        Seconds; the solver stops at its next check after this budget.
    screen : bool
        Gap-safe screening in the gated solver.

    Returns
    -------
    CNNResult
    """
    from sklearn.exceptions import ConvergenceWarning

    t0 = time.perf_counter()
    X = check_X(X, "X")
    y = check_y(y, X.shape[0])
    alpha = check_alpha(alpha)
    g = _geometry(image_shape, patch_size, stride, padding, X.shape[1])
    if formulation not in ("gated", "relu"):
        raise ValueError(f"formulation must be 'gated' or 'relu', got {formulation!r}")
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    bias = _check_bool(bias, "bias")
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not tol > 0:
        raise ValueError(f"tol must be a number > 0, got {tol!r}")
    if max_iter is not None and (isinstance(max_iter, bool) or not isinstance(
            max_iter, numbers.Integral) or max_iter < 1):
        raise ValueError(f"max_iter must be None or an integer >= 1, got {max_iter!r}")
    if dtype not in ("float64", "float32", np.float64, np.float32):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    if formulation == "relu" and np.dtype(dtype) != np.float64:
        raise ValueError("dtype='float32' is only supported with formulation='gated'")
    Y, classes = encode_targets(y, loss, classification)
    K, h = g.n_patches, g.patch_dim
    Xa64 = _stacked(X, g, bias)
    h_a = Xa64.shape[1]
    if gates is None:
        G = sample_patch_gates(X, image_shape, patch_size, stride, padding, n_gates=n_gates,
                               bias=bias, random_state=random_state)
        certified = f"the {G.shape[1]} sampled joint patterns"
    elif isinstance(gates, str):
        if gates != "enumerate":
            raise ValueError(f"gates must be None, an array or 'enumerate', got {gates!r}")
        G = enumerate_patch_patterns(X, image_shape, patch_size, stride, padding, bias=bias)
        certified = "all joint activation patterns (enumerated)"
    else:
        G = np.asarray(gates, dtype=np.float64)
        if G.ndim != 2 or G.shape[0] != h_a or G.shape[1] < 1:
            raise ValueError(f"gates must have shape (h_a, P) = ({h_a}, P) (patch dimension "
                             f"{h}{' + 1 for the bias' if bias else ''}), got {G.shape}")
        if not np.all(np.isfinite(G)):
            raise ValueError("gates contains NaN or infinity")
        certified = f"the {G.shape[1]} given joint patterns"
    if G.shape[1] == 0:
        G = np.zeros((h_a, 1))
        G[-1] = 1.0
    D = patch_masks(Xa64, G)
    if formulation == "gated":
        Xa = Xa64 if np.dtype(dtype) == np.float64 else Xa64.astype(np.float32)
        del Xa64
        from .solvers.gated import solve_gated_fista

        problem = GatedCNNProblem(Xa, D, Y, loss, alpha, K)
        out = solve_gated_fista(problem, tol=tol, max_iter=max_iter or 10000, verbose=verbose,
                                time_limit=time_limit, screen=screen and alpha > 0)
        U = np.asarray(out["U"], dtype=np.float64)
        if Xa.dtype != np.float64:    # certificate and objective in float64
            problem = GatedCNNProblem(_stacked(X, g, bias), D, Y, loss, alpha, K)
            gap = problem.gap(U)
            if out["dual_point"] is not None:
                dual, _ = problem.dual_value_at(out["dual_point"])
                if dual > gap.dual:
                    gap = _make_gap(gap.primal, dual, gap.dual_scale)
        else:
            gap = out["gap"]
            gap = _make_gap(problem.objective(U), gap.dual, gap.dual_scale)
        weights = {"U": U}
        violation = 0.0
        n_active = int((group_norms(U) > 0).sum())
        n_iter, history = out["n_iter"], out["history"]
    else:
        problem = ReLUCNNProblem(Xa64, D, Y, loss, alpha, K)
        out = solve_relu_cnn(problem, tol=tol, max_iter=max_iter or 20000, verbose=verbose,
                             time_limit=time_limit)
        Q = out["Q"]
        weights = {"V": Q[:, 0].copy(), "W": Q[:, 1].copy()}
        gap, violation = out["gap"], out["violation"]
        n_active = int((group_norms(Q) > 0).sum())
        n_iter, history = out["n_iter"], out["history"]
    geom_kw = dict(image_shape=g.image_shape, patch_size=g.patch, stride=g.stride,
                   padding=g.padding)
    net = network_from_convex(weights, G, bias=bias, formulation=formulation,
                              geometry_kwargs=geom_kw, classes=classes, loss=loss)
    converged = gap.relative_gap <= tol
    if not converged:
        warnings.warn(f"solve_cnn stopped at relative duality gap {gap.relative_gap:.3g} > "
                      f"tol={tol:g}; raise max_iter or time_limit", ConvergenceWarning,
                      stacklevel=2)
    return CNNResult(net, float(gap.primal), float(gap.gap), float(gap.relative_gap), converged,
                     weights, G, n_active, certified, time.perf_counter() - t0, int(n_iter),
                     float(violation), classes, history)


# ----------------------------------------------------------------------------
# scikit-learn estimators (defined lazily-importing sklearn at module import is fine:
# scikit-learn is a core dependency of cvxnn)

from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin  # noqa: E402
from sklearn.utils.metaestimators import available_if  # noqa: E402
from sklearn.utils.multiclass import check_classification_targets  # noqa: E402
from sklearn.utils.validation import check_is_fitted  # noqa: E402

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover
    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)


class _ConvexCNNBase(BaseEstimator):
    _losses: tuple = ()

    def _geometry_for(self, n_features):
        shape = (n_features,) if self.image_shape is None else self.image_shape
        if isinstance(shape, numbers.Integral) and not isinstance(shape, (bool, np.bool_)):
            shape = (shape,)
        g0 = _geometry(shape, 1, 1, 0, n_features)
        if self.patch_size is None:
            patch = g0.spatial
        else:
            patch = self.patch_size
        return _geometry(shape, patch, self.stride, self.padding, n_features)

    def _fit(self, X, y, classification):
        if self.loss not in self._losses:
            raise ValueError(f"loss must be one of {list(self._losses)} for "
                             f"{type(self).__name__}, got {self.loss!r}")
        if isinstance(self.n_gates, bool) or not isinstance(self.n_gates, numbers.Integral) \
                or self.n_gates < 1:
            raise ValueError(f"n_gates must be an integer >= 1, got {self.n_gates!r}")
        g = self._geometry_for(X.shape[1])
        res = solve_cnn(X, y, self.alpha, image_shape=g.image_shape or g.spatial,
                        patch_size=g.patch, stride=g.stride, padding=g.padding,
                        formulation=self.formulation, loss=self.loss, n_gates=self.n_gates,
                        bias=self.bias, tol=self.tol, max_iter=self.max_iter,
                        random_state=self.random_state, verbose=self.verbose,
                        classification=classification)
        self.network_ = res.network
        self.objective_ = res.objective
        self.gap_ = res.gap
        self.relative_gap_ = res.relative_gap
        self.converged_ = res.converged
        self.n_iter_ = res.n_iter
        self.gates_ = res.gates
        self.n_filters_ = res.network.n_filters
        self.image_shape_ = g.image_shape or g.spatial
        self.patch_size_ = g.patch
        return res

    def _outputs(self, X):
        check_is_fitted(self)
        X = _validate_data(self, X, reset=False, dtype=np.float64)
        return self.network_.forward(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        return tags


_EST_DOC = """
    Parameters
    ----------
    image_shape : tuple or None, default=None
        ``(L,)``, ``(H, W)`` or ``(H, W, C)``; ``None`` treats each row as a 1-D
        signal of length ``n_features``.
    patch_size : int, tuple or None, default=None
        ``None``: the whole image (one patch, i.e. the fully connected network;
        this default lets scikit-learn's generic checks run on any data).
    stride, padding : int or tuple
    alpha : float, default=1e-3
    formulation : {"gated", "relu"}, default="gated"
    loss : str
    n_gates : int, default=100
    bias : bool, default=True
    tol : float, default=1e-6
        Relative duality gap.
    max_iter : int or None
    random_state : int, Generator or None
    verbose : int

    Attributes
    ----------
    network_ : TwoLayerReLUCNN or GatedTwoLayerReLUCNN
    objective_, gap_, relative_gap_ : float
    converged_ : bool
    n_features_in_ : int
    """


class ConvexCNNRegressor(RegressorMixin, _ConvexCNNBase):
    __doc__ = ("Two-layer convolutional ReLU regression network fit by its convex program "
               "(:func:`solve_cnn`, squared loss)." + _EST_DOC)
    _losses = ("squared",)

    def __init__(self, image_shape=None, patch_size=None, stride=1, padding=0, alpha=1e-3,
                 formulation="gated", loss="squared", n_gates=100, bias=True, tol=1e-6,
                 max_iter=None, random_state=None, verbose=0):
        self.image_shape = image_shape
        self.patch_size = patch_size
        self.stride = stride
        self.padding = padding
        self.alpha = alpha
        self.formulation = formulation
        self.loss = loss
        self.n_gates = n_gates
        self.bias = bias
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y):
        """Solve the convex CNN program on ``X`` (n, prod(image_shape)) and ``y``; returns ``self``."""
        X, y = _validate_data(self, X, y, dtype=np.float64, multi_output=True, y_numeric=True)
        self._fit(X, y, classification=False)
        return self

    def predict(self, X):
        """Predicted targets, shape ``(n,)`` (one output) or ``(n, c)``."""
        Z = self._outputs(X)
        return Z[:, 0] if Z.shape[1] == 1 else Z

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags


class ConvexCNNClassifier(ClassifierMixin, _ConvexCNNBase):
    __doc__ = ("Two-layer convolutional ReLU classifier fit by its convex program "
               "(:func:`solve_cnn`; cross-entropy, logistic or squared loss)." + _EST_DOC)
    _losses = ("cross_entropy", "logistic", "squared")

    def __init__(self, image_shape=None, patch_size=None, stride=1, padding=0, alpha=1e-3,
                 formulation="gated", loss="cross_entropy", n_gates=100, bias=True, tol=1e-6,
                 max_iter=None, random_state=None, verbose=0):
        self.image_shape = image_shape
        self.patch_size = patch_size
        self.stride = stride
        self.padding = padding
        self.alpha = alpha
        self.formulation = formulation
        self.loss = loss
        self.n_gates = n_gates
        self.bias = bias
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y):
        """Solve the convex CNN program on ``X`` (n, prod(image_shape)) and labels ``y``; returns ``self``."""
        X, y = _validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes in "
                             f"the data, but the data contains only one class: {classes[0]!r}")
        if self.loss == "logistic" and len(classes) > 2:
            raise ValueError("Only binary classification is supported with loss='logistic'; "
                             f"y has {len(classes)} classes. Use loss='cross_entropy'.")
        res = self._fit(X, y, classification=True)
        self.classes_ = np.asarray(res.classes)
        return self

    def decision_function(self, X):
        """Raw outputs of the fitted network (logits for classifiers)."""
        Z = self._outputs(X)
        if Z.shape[1] == 1:
            return Z[:, 0].copy()
        if len(self.classes_) == 2:
            return Z[:, 1] - Z[:, 0]
        return Z

    def predict(self, X):
        """Predicted class labels."""
        s = self.decision_function(X)
        if s.ndim == 1:
            return self.classes_[(s > 0).astype(np.intp)]
        return self.classes_[np.argmax(s, axis=1)]

    def _has_proba(self):
        return self.loss in ("cross_entropy", "logistic")

    @available_if(_has_proba)
    def predict_proba(self, X):
        """Class probabilities (``cross_entropy`` or ``logistic`` loss only)."""
        Z = self._outputs(X)
        if Z.shape[1] == 1:
            p = expit(Z[:, 0])
            return np.column_stack([1 - p, p])
        return softmax(Z, axis=1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = self.loss != "logistic"
        return tags
