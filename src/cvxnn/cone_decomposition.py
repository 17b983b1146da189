"""Cone decompositions: turn a gated-ReLU solution into a ReLU solution (math spec 2.3, 5.2-5.4).

Shapes
------
* ``Xa``: data of shape ``(n, d)`` (with the ones column appended when a bias is used,
  see :mod:`cvxnn._data`);
* ``D``: activation masks of shape ``(n, P)`` (bool or 0/1), ``S = 2 D - 1``;
* ``U``: gated convex weights of shape ``(d, P, c)`` (or ``(d, P)`` for one output);
* ``V``, ``W``: ReLU convex weights of the same shape as ``U``.

A gated solution predicts ``Z[:, k] = sum_i D_i Xa U[:, i, k]``.  A *cone
decomposition* writes every block ``u = U[:, i, k]`` as ``u = v - w`` with ``v`` and
``w`` in the pattern cone ``K_i = {x : S_i * (Xa x) >= 0}``.  Then ``(V, W)`` is
feasible for the ReLU program of :mod:`cvxnn.problems` with exactly the same
training predictions (``D_i Xa v = (Xa v)_+`` on ``K_i``), and
:func:`cvxnn.network.network_from_relu` gives the ReLU network.  The group norm grows
from ``||u||`` to ``||v|| + ||w||``; the ratio is the *norm inflation* ``kappa``
(spec 5.3: the ReLU objective is at most ``kappa`` times the gated one).

Two methods (spec 5.4):

``method="exact"`` (CD-SOCP, min-l2), per block::

    min_v  ||v||_2 + ||v - u||_2   s.t.  S_i * (Xa v) >= 0,  S_i * (Xa (v - u)) >= 0,

and ``w = v - u``.  The two constraint sets combine into ``A v >= c`` with
``A = S_i * Xa`` (rows normalised) and ``c = (A u)_+``.  Blocks with ``u`` in ``K_i``
(``v = u``, ``w = 0``) or ``-u`` in ``K_i`` (``v = 0``, ``w = -u``) are solved in
closed form (inflation 1, optimal by the triangle inequality).  The others are
solved by an interior-point method written here (no cvxpy), batched over blocks:

1. *Phase 1* finds a point deep inside ``K_i``: ``max tau`` s.t. ``A g >= tau``
   (unit rows), ``||g|| <= 1``, from the strictly feasible ``g = 0, tau = -1``,
   stopped once ``tau >= 1/2`` of its dual upper bound.  A bound below ``1e-10``
   certifies (numerically) that ``K_i`` has no interior: such a block gets status
   ``"singular_cone"`` (the decomposition may not exist) and the best-effort
   approximate decomposition below.
2. *Phase 2* solves ``min t1 + t2`` s.t. ``A v >= c``, ``||v|| <= t1``,
   ``||v - u|| <= t2`` from the strictly feasible ``v0 = u + kappa g``.
   Both phases are feasible primal-dual path-following methods for the cone
   ``R^n_+ x Q^{d+1} (x Q^{d+1})`` with Nesterov-Todd scaling and Mehrotra's
   predictor-corrector (as in CVXOPT's ``coneqp``).  The Newton matrix of a block is
   ``Xa^T diag(z/s) Xa + (second-order-cone terms)`` of size ``d + 2``; for all blocks
   at once it is one GEMM ``(z/s) @ [x_j x_j^T]_j`` (or one GEMM per block when
   ``n d^2`` is large), followed by batched dense solves.  The slack step is taken
   from the linear equation (``ds = -G dx - r_z``), so the iterates stay exactly
   primal feasible.  A block stops at relative gap ``(s^T z) / (t1 + t2) <= tol``
   (default ``1e-10``), or when rounding in the cone norms stops progress (thin
   cones with large inflation typically end near ``1e-9``).
3. *Polish and certify* (a Python loop over blocks, ``O(n d + d^3)`` each): the rows
   with ``z_j > s_j`` define the active face ``A_E v = c_E``; on it the objective is
   smooth and a few null-space Newton steps converge to rounding.  The polished point
   is kept if it is feasible to rounding, not worse and its multipliers are
   ``>= 0``.  Every block's ``gap`` is then certified by weak duality: for
   ``lam >= 0`` and ``y1 + y2 = A^T lam`` with ``||y1||, ||y2|| <= 1``, the value
   ``c^T lam - u^T y2`` bounds the optimum from below; ``gap = (f(v) - bound) / f(v)``
   (typically ``1e-14``).  A block is ``"optimal"`` when ``gap <= tol``.
4. *Cleanup*: the final ``v`` is moved towards the strictly feasible start ``v0``
   by the smallest amount that removes any rounding-level violation.

``method="approximate"`` (CD-A, the approximate decomposition of scnn)::

    min_W  (1/(2n)) sum_b ||(b_b - A_b w_b)_+||^2 + rho sum_b ||w_b||_2,
    b_b = (-A_b u_b)_+,   A_b = S_{i_b} * Xa   (unnormalised rows),

solved by FISTA for all blocks at once (blocks are rows: the products are the GEMMs
``W @ Xa^T`` and ``(S * R) @ Xa`` plus the sign mask), from ``W = 0``, with a step
size, momentum, adaptive restart and stopping test per block (steps grow by 1.25 and
are halved on the quadratic upper-bound test, the line search of scnn's R-FISTA).
A block stops when its gradient mapping is ``tol`` times its value at ``w = 0``;
otherwise after ``max_iter`` iterations (defaults ``rho = 1e-10``, ``tol = 1e-10``,
``max_iter = 10000``).  Then ``v = u + w``.  The penalty is one-sided and
small, so a small violation can remain; with ``cleanup=True`` every block that
still violates a constraint is moved along a phase-1 interior direction ``g`` of its
cone, ``w <- w + theta g`` with the smallest ``theta`` that restores feasibility
(cheap: phase 1 only for those blocks).  With ``rho = 1e-10`` the iterates become
feasible quickly and then shrink towards the exact (minimal) decomposition very
slowly, so CD-A's inflation is above the exact method's and falls with ``max_iter``.
The violation before cleanup is kept in ``raw_violation``.

Violation measure
-----------------
``max_violation`` is ``max over blocks and rows of (-(S_i * Xa q))_+ / (||x_j|| ||q||)``
for ``q`` in ``{v, w}`` (the sine of the angle by which ``q`` leaves the cone), so
it is scale invariant and ``~1e-16`` means feasible to rounding.  It is never smaller
than :meth:`cvxnn.problems.ReLUProblem.violation` of ``(V, W)``, which divides by the
largest row and block norms instead.
"""

from __future__ import annotations

import numbers
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import blas as _blas
from scipy.linalg import cho_factor, cho_solve

from ._data import augment, check_X

__all__ = ["ConeDecomposition", "cone_decompose", "decompose_solution", "METHODS"]

METHODS = ("exact", "approximate")

#: largest ``n d^2`` for which the Newton matrices are formed by one GEMM
_XX_LIMIT = 1 << 22
#: phase 1: a cone whose best unit margin is below this has no (numerical) interior
_INTERIOR_TOL = 1e-10
#: status values of blocks that count as successfully decomposed
_OK = ("zero", "in_cone", "neg_in_cone", "optimal", "inaccurate")


# ============================================================================ result
@dataclass
class ConeDecomposition:
    """Result of :func:`cone_decompose`.

    Attributes
    ----------
    V, W : ndarray of shape (d, P, c) (or (d, P) when ``U`` was 2-D)
        The decomposition ``U = V - W`` (to rounding), ``V, W`` in the pattern cones.
    method : str
        ``"exact"`` or ``"approximate"``.
    status : ndarray of str, shape (P, c)
        Per block: ``"zero"`` (``u = 0``, skipped), ``"in_cone"`` (``u`` in ``K_i``),
        ``"neg_in_cone"`` (``-u`` in ``K_i``), ``"optimal"`` (exact, gap ``<= tol``),
        ``"inaccurate"`` (exact, feasible, but the certified gap is above ``tol``),
        ``"singular_cone"`` (``K_i`` has no interior; best effort, may be infeasible),
        ``"failed"`` (numerical failure; best effort), ``"feasible"`` / ``"infeasible"``
        (approximate: after cleanup, violation ``<= feasibility_tol`` or not).
    inflation : ndarray of shape (P, c)
        ``(||v|| + ||w||) / ||u||`` per block (NaN for zero blocks).
    total_inflation : float
        ``sum (||v|| + ||w||) / sum ||u||`` (1 when ``U = 0``).
    gated_norm, relu_norm : float
        ``sum ||u||`` and ``sum (||v|| + ||w||)``.
    max_violation : float
        Largest relative cone violation (see the module docstring).
    raw_violation : float
        Approximate method: the same before the feasibility cleanup.  Exact method:
        equal to ``max_violation``.
    gap : ndarray of shape (P, c)
        Exact method: relative duality gap of each block's SOCP (0 for closed-form
        blocks, NaN where not solved); approximate: NaN.
    time : float
        Wall-clock seconds.
    success : bool
        Every block decomposed feasibly (status in ``zero, in_cone, neg_in_cone,
        optimal, inaccurate, feasible``) and ``max_violation <= feasibility_tol``.
    n_iter : int
        Interior-point iterations (phase 1 + phase 2, max over blocks) or FISTA iterations.
    feasibility_tol : float
        The tolerance used for ``success``.
    relu_objective : float or None
        Set by :func:`decompose_solution`: the ReLU objective of ``(V, W)``
        (same loss as the gated solution, penalty ``alpha * relu_norm``).
    info : dict
        Iteration counts of the phases (``phase1_iter``, ``phase2_iter``) and, for the
        approximate method, the number of blocks that needed cleanup (``cleanup_blocks``).
    """

    V: np.ndarray
    W: np.ndarray
    method: str
    status: np.ndarray
    inflation: np.ndarray
    total_inflation: float
    gated_norm: float
    relu_norm: float
    max_violation: float
    raw_violation: float
    gap: np.ndarray
    time: float
    success: bool
    n_iter: int
    feasibility_tol: float = 1e-10
    relu_objective: float | None = None
    info: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        counts = {}
        for s in self.status.ravel():
            counts[str(s)] = counts.get(str(s), 0) + 1
        return (f"ConeDecomposition(method={self.method!r}, success={self.success}, "
                f"total_inflation={self.total_inflation:.6g}, "
                f"max_violation={self.max_violation:.2e}, time={self.time:.3f}s, "
                f"status={counts})")


# ============================================================================ checks
def _check_inputs(Xa, D, U):
    Xa = check_X(Xa, "Xa")
    Xa = Xa.astype(np.float64, copy=False)
    n, d = Xa.shape
    Darr = np.asarray(D)
    if Darr.ndim != 2 or Darr.shape[0] != n:
        raise ValueError(
            f"D must be an array of shape (n, P) = ({n}, P) matching Xa's {n} rows, "
            f"got shape {Darr.shape}"
        )
    if Darr.dtype.kind not in "biuf":
        raise ValueError(f"D must be a boolean or 0/1 array, got dtype {Darr.dtype}")
    if Darr.dtype.kind != "b":
        if not np.all(np.isfinite(Darr)) or not np.all((Darr == 0) | (Darr == 1)):
            raise ValueError("D must contain only 0/1 (or boolean) values")
    Darr = Darr.astype(bool)
    P = Darr.shape[1]
    Uarr = np.asarray(U)
    if Uarr.dtype.kind not in "biuf":
        raise ValueError(f"U must be a real numeric array, got dtype {Uarr.dtype}")
    if Uarr.ndim not in (2, 3) or Uarr.shape[:2] != (d, P):
        raise ValueError(
            f"U must have shape (d, P, c) or (d, P) = ({d}, {P}[, c]) to match Xa "
            f"{Xa.shape} and D {Darr.shape}, got {Uarr.shape}"
        )
    Uarr = Uarr.astype(np.float64)
    if not np.all(np.isfinite(Uarr)):
        raise ValueError("U contains NaN or infinity")
    return Xa, Darr, Uarr


def _check_pos(value, name, *, integer=False, allow_zero=False):
    bad = isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real)
    if integer:
        bad = bad or not isinstance(value, numbers.Integral)
    if not bad:
        value = int(value) if integer else float(value)
        bad = not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero)
    if bad:
        what = "a positive integer" if integer else (
            "a finite number >= 0" if allow_zero else "a positive finite number")
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


# ============================================================================ helpers
def _violation_per_block(Xa, rown, S, pat, Q):
    """Relative violation ``max_j (-(S x_j^T q))_+ / (||x_j|| ||q||)`` of each column of ``Q``."""
    if Q.shape[1] == 0:
        return np.zeros(0)
    qn = np.linalg.norm(Q, axis=0)
    C = (Xa @ Q) * S[:, pat]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(rown[:, None] > 0, -C / rown[:, None], 0.0)
    worst = np.maximum(rel.max(axis=0, initial=0.0), 0.0)
    return np.where(qn > 0, worst / np.where(qn > 0, qn, 1.0), 0.0)


# ---------------------------------------------------------------- second-order cone algebra
# Vectors of the cone Q = {(x0, x1) : x0 >= ||x1||} are the rows of (B, m) arrays.

def _jdot(x, y):
    return x[:, 0] * y[:, 0] - np.einsum("bi,bi->b", x[:, 1:], y[:, 1:])


def _jnorm(x):
    n1 = np.linalg.norm(x[:, 1:], axis=1)
    return np.sqrt(np.maximum((x[:, 0] - n1) * (x[:, 0] + n1), 0.0))


def _soc_prod(x, y):
    """Jordan product ``x o y = (x^T y, x0 y1 + y0 x1)``."""
    out = np.empty_like(x)
    out[:, 0] = np.einsum("bi,bi->b", x, y)
    out[:, 1:] = x[:, :1] * y[:, 1:] + y[:, :1] * x[:, 1:]
    return out


def _soc_div(lam, r):
    """``a`` with ``lam o a = r``."""
    a = np.empty_like(r)
    det = _jdot(lam, lam)
    a[:, 0] = (lam[:, 0] * r[:, 0] - np.einsum("bi,bi->b", lam[:, 1:], r[:, 1:])) / det
    a[:, 1:] = (r[:, 1:] - a[:, :1] * lam[:, 1:]) / lam[:, :1]
    return a


def _soc_step(x, dx):
    """Largest ``alpha >= 0`` with ``x + alpha dx`` in Q (``x`` interior); ``inf`` if none."""
    scale = _jnorm(x)
    scale = np.where(scale > 0, scale, 1.0)[:, None]
    x = x / scale
    dx = dx / scale
    cc = _jdot(x, x)
    b = 2.0 * _jdot(x, dx)
    a = _jdot(dx, dx)
    disc = b * b - 4.0 * a * cc
    hit = (a < 0) | ((b < 0) & (disc >= 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = 2.0 * cc / (-b + np.sqrt(np.maximum(disc, 0.0)))
    return np.where(hit, alpha, np.inf)


def _lp_step(s, ds):
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(ds < 0, -s / ds, np.inf)
    return r.min(axis=1, initial=np.inf)


class _NT:
    """Nesterov-Todd scaling of a batch of second-order cones, never formed densely.

    ``W = beta (2 v v^T - J)`` with ``W z = W^{-1} s = lam`` (CVXOPT's convention; for
    the nonnegative orthant it would be ``W = diag(sqrt(s / z))``), built from
    ``wbar = (sbar + J zbar) / (2 gamma)`` (``sbar = s / sqrt(s^T J s)``, same for ``z``,
    ``gamma = sqrt((1 + sbar^T zbar) / 2)``), ``v = (wbar + e) / sqrt(2 (wbar_0 + 1))``
    and ``beta = (s^T J s / z^T J z)^{1/4}``.  With ``a = J v``:
    ``W^{-1} = (2 a a^T - J) / beta`` and
    ``W^{-2} = (I + 4 (a^T a) a a^T - 2 a v^T - 2 v a^T) / beta^2``.
    """

    def __init__(self, z, s):
        sn = _jnorm(s)
        zn = _jnorm(z)
        sb = s / sn[:, None]
        zb = z / zn[:, None]
        gamma = np.sqrt(np.maximum((1.0 + np.einsum("bi,bi->b", sb, zb)) / 2.0, 0.0))
        w = -zb
        w[:, 0] = -w[:, 0]
        w += sb
        w /= (2.0 * gamma)[:, None]          # w = (sb + J zb) / (2 gamma), w^T J w = 1
        v = w
        v[:, 0] += 1.0
        v /= np.sqrt(2.0 * v[:, :1])         # (w + e) / sqrt(2 (w_0 + 1))
        self.v = v
        self.a = v.copy()
        self.a[:, 1:] *= -1.0
        self.beta = np.sqrt(sn / zn)
        self.lam = self.W(z)

    @staticmethod
    def _J(x):
        y = -x
        y[:, 0] = x[:, 0]
        return y

    def W(self, x):
        return self.beta[:, None] * (2.0 * self.v * np.einsum("bi,bi->b", self.v, x)[:, None]
                                     - self._J(x))

    def Wi(self, x):
        return (2.0 * self.a * np.einsum("bi,bi->b", self.a, x)[:, None]
                - self._J(x)) / self.beta[:, None]

    def M(self, x):
        """``W^{-2} x``."""
        return self.Wi(self.Wi(x))

    def M_dense(self):
        a, v = self.a, self.v
        B, m = a.shape
        aa = np.einsum("bi,bi->b", a, a)
        M = (4.0 * aa)[:, None, None] * a[:, :, None] * a[:, None, :]
        av = a[:, :, None] * v[:, None, :]
        M -= 2.0 * (av + np.swapaxes(av, 1, 2))
        M[:, np.arange(m), np.arange(m)] += 1.0
        M /= (self.beta ** 2)[:, None, None]
        return M


# ============================================================================ IPM
class _Cone:
    """One second-order cone ``s = (pi . y + eta, v - beta)`` of the block programs."""

    def __init__(self, pi, eta, beta=None):
        self.pi = np.asarray(pi, dtype=float)
        self.eta = float(eta)
        self.beta = beta        # (B, d) or None


def _newton_vv(Xn, XX, Wl):
    """``Xn^T diag(Wl[b]) Xn`` for every row of ``Wl`` (B, n) -> (B, d, d)."""
    B = Wl.shape[0]
    d = Xn.shape[1]
    if XX is not None:
        return (Wl @ XX).reshape(B, d, d)
    out = np.empty((B, d, d))
    iu = np.triu_indices(d, 1)
    for b in range(B):
        # symmetric rank-n update (half the flops of a GEMM), then mirror
        # (Xn * sqrt(w)).T is Fortran-ordered: dsyrk(trans=0) uses it without a copy
        C = _blas.dsyrk(1.0, (Xn * np.sqrt(Wl[b])[:, None]).T, trans=0)
        C[iu[1], iu[0]] = C[iu]
        out[b] = C
    return out


class _Solver:
    """Solves with a batch of symmetric positive definite Newton matrices.

    Large blocks (``m >= 32``) are factored once by Cholesky and solved twice per
    iteration (predictor and corrector) per block with LAPACK; small ones use a
    batched LU solve each time (cheaper than a Python loop).  A block whose matrix
    is not numerically positive definite falls back to least squares.
    """

    def __init__(self, H):
        self.H = H
        self.chol = None
        if H.shape[1] >= 32:
            try:
                self.chol = [cho_factor(Hb, lower=True, check_finite=False) for Hb in H]
            except (np.linalg.LinAlgError, ValueError):
                self.chol = None

    def solve(self, rhs):
        if self.chol is not None:
            return np.stack([cho_solve(cf, r, check_finite=False)
                             for cf, r in zip(self.chol, rhs)])
        try:
            return np.linalg.solve(self.H, rhs[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            return np.stack([np.linalg.lstsq(Hb, rb, rcond=None)[0]
                             for Hb, rb in zip(self.H, rhs)])


def _ipm(*args, **kwargs):
    # near the optimum the cone norms may cancel to 0; such steps are rejected below
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _ipm_impl(*args, **kwargs)


def _ipm_impl(Xn, XX, Sb, hL, ell, cones, phi, v, y, zL, zs, *, tol, max_iter, phase1=False,
              verbose=0, label=""):
    """Feasible primal-dual interior-point method for the batched block programs.

    Block ``b`` has variables ``x = (v, y)`` (``v`` in R^d, ``y`` in R^q) and solves::

        min phi . y   s.t.  s_L = S_b * (Xn v) + ell y - hL_b >= 0,
                             s_k = (pi_k . y + eta_k, v - beta_k) in Q^{d+1}.

    The start ``(v, y)`` must be strictly feasible and ``(zL, zs)`` strictly dual
    feasible.  With ``phase1`` the objective is ``-tau`` (``q = 1``) and a block stops
    once ``tau >= max(1/2 upper bound, 0)`` with ``tau > 0``, or once its upper bound
    is ``<= _INTERIOR_TOL``.

    Returns ``v, y, zL, zs, status, gap, n_iter`` with status 0 = converged,
    1 = iteration limit, 2 = no interior (phase 1), 3 = numerical failure.
    """
    B, n = Sb.shape
    d = Xn.shape[1]
    q = y.shape[1]
    K = len(cones)
    nu = n + K
    m = d + 1
    status = np.full(B, 1, dtype=int)
    gap = np.full(B, np.nan)
    active = np.ones(B, dtype=bool)
    it_done = 0

    def slacks(idx, v_, y_):
        sL = Sb[idx] * (v_ @ Xn.T) - hL[idx]
        if ell is not None:
            sL = sL + y_ @ ell.T
        ss = []
        for cone in cones:
            s = np.empty((len(idx), m))
            s[:, 0] = y_ @ cone.pi + cone.eta
            s[:, 1:] = v_ if cone.beta is None else v_ - cone.beta[idx]
            ss.append(s)
        return sL, ss

    cone_pis = [cone.pi for cone in cones]
    sL_all, ss_all = slacks(np.arange(B), v, y)
    for it in range(max_iter + 1):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        Sa = Sb[idx]
        va, ya = v[idx], y[idx]
        sL, zLa = sL_all[idx], zL[idx]
        ss = [s[idx] for s in ss_all]
        zz = [z[idx] for z in zs]
        Ba = idx.size

        # residuals: rx = G^T z + f, rz = G x + s - h (zero up to rounding)
        AzL = (Sa * zLa) @ Xn
        rxv = -AzL - sum(z[:, 1:] for z in zz)
        rxy = -sum(z[:, :1] * cone.pi for z, cone in zip(zz, cones)) + phi
        if ell is not None:
            rxy = rxy - zLa @ ell
        sL_x, ss_x = slacks(idx, va, ya)
        rzL = sL - sL_x
        rzs = [s - sx for s, sx in zip(ss, ss_x)]

        comp = np.einsum("bn,bn->b", sL, zLa) + sum(np.einsum("bi,bi->b", s, z)
                                                     for s, z in zip(ss, zz))
        mu = comp / nu
        pobj = ya @ phi
        if phase1:
            tau = ya[:, 0]
            upper = tau + comp          # dual bound on tau (feasible start)
            gap[idx] = comp
            done_ok = (tau > 0) & (tau >= 0.5 * upper)
            done_sing = upper <= _INTERIOR_TOL
            done = done_ok | done_sing
            status[idx[done_ok]] = 0
            status[idx[done_sing & ~done_ok]] = 2
        else:
            rel = comp / np.maximum(np.abs(pobj), 1.0)
            gap[idx] = rel
            resid = np.sqrt(np.einsum("bi,bi->b", rxv, rxv) + np.einsum("bi,bi->b", rxy, rxy))
            done = (rel <= tol) & (resid <= 1e-9 * (1.0 + np.abs(pobj)))
            status[idx[done]] = 0
        if verbose >= 2:
            print(f"  {label} it {it:3d}: active {Ba:4d}, max gap {np.max(gap[idx]):.2e}")
        if it == max_iter:
            break
        keep = ~done
        active[idx[done]] = False
        if not np.any(keep):
            break
        # restrict to the blocks still running
        sel = np.flatnonzero(keep)
        idx = idx[sel]
        Sa, va, ya, sL, zLa = Sa[sel], va[sel], ya[sel], sL[sel], zLa[sel]
        ss = [s[sel] for s in ss]
        zz = [z[sel] for z in zz]
        rxv, rxy, rzL = rxv[sel], rxy[sel], rzL[sel]
        rzs = [r[sel] for r in rzs]
        mu = mu[sel]
        Ba = idx.size
        it_done = it + 1

        # scalings
        dL = np.sqrt(sL / zLa)                 # W_L = diag(dL), lam_L = sqrt(s z)
        lamL = np.sqrt(sL * zLa)
        mL = zLa / sL
        scal = [_NT(z, s) for s, z in zip(ss, zz)]

        # Newton matrix H = G^T M G, variables (v, y)
        H = np.zeros((Ba, d + q, d + q))
        H[:, :d, :d] = _newton_vv(Xn, XX, mL)
        if ell is not None:
            for j in range(q):
                H[:, :d, d + j] = (Sa * (mL * ell[:, j])) @ Xn
                for k in range(q):
                    H[:, d + j, d + k] = mL @ (ell[:, j] * ell[:, k])
        for sc, cone in zip(scal, cones):
            # W^{-2} = (I + 4 (a.a) a a^T - 2 a v^T - 2 v a^T) / beta^2, split into the
            # head (index 0, the cone's scalar) and the tail (the v part)
            a, vv = sc.a, sc.v
            ib2 = 1.0 / sc.beta ** 2
            aa = np.einsum("bi,bi->b", a, a)
            UT = np.stack([a[:, 1:], vv[:, 1:]], axis=2)                 # (Ba, d, 2)
            C = np.empty((Ba, 2, 2))
            C[:, 0, 0] = 4.0 * aa * ib2
            C[:, 0, 1] = C[:, 1, 0] = -2.0 * ib2
            C[:, 1, 1] = 0.0
            H[:, :d, :d] += UT @ C @ np.swapaxes(UT, 1, 2)
            H[:, np.arange(d), np.arange(d)] += ib2[:, None]
            m_tail_head = UT @ (C @ np.stack([a[:, 0], vv[:, 0]], axis=1)[:, :, None])
            m_head = ib2 * (1.0 + 4.0 * aa * a[:, 0] ** 2 - 4.0 * a[:, 0] * vv[:, 0])
            H[:, :d, d:] += m_tail_head * cone.pi[None, None, :]
            H[:, d:, d:] += m_head[:, None, None] * np.outer(cone.pi, cone.pi)[None]
        H[:, d:, :d] = np.swapaxes(H[:, :d, d:], 1, 2)
        solver = _Solver(H)

        def direction(rsL, rss):
            qL = rsL / lamL
            qs = [_soc_div(sc.lam, r) for sc, r in zip(scal, rss)]
            hatL = mL * rzL + qL / dL
            hats = [sc.M(rz) + sc.Wi(qk) for sc, rz, qk in zip(scal, rzs, qs)]
            rhs_v = -rxv + (Sa * hatL) @ Xn + sum(h[:, 1:] for h in hats)
            rhs_y = -rxy + sum(h[:, :1] * cone.pi for h, cone in zip(hats, cones))
            if ell is not None:
                rhs_y = rhs_y + hatL @ ell
            rhs = np.concatenate([rhs_v, rhs_y], axis=1)
            dx = solver.solve(rhs)
            dv, dy = dx[:, :d], dx[:, d:]
            GdxL = -(Sa * (dv @ Xn.T))
            if ell is not None:
                GdxL = GdxL - dy @ ell.T
            dzL = mL * GdxL + hatL
            # ds from the linear equation G dx + ds = -rz (exact primal feasibility; the
            # equivalent W (q - W dz) loses accuracy when W is ill-conditioned)
            dsL = -GdxL - rzL
            dzs, dss = [], []
            for sc, h, rz in zip(scal, hats, rzs):
                Ex = np.empty((Ba, m))
                Ex[:, 0] = dy @ cone_pis[len(dzs)]
                Ex[:, 1:] = dv
                dzs.append(h - sc.M(Ex))
                dss.append(Ex - rz)
            return dv, dy, dsL, dzL, dss, dzs

        def max_step(dsL, dzL, dss, dzs):
            a = np.minimum(_lp_step(sL, dsL), _lp_step(zLa, dzL))
            for s, z, ds, dz in zip(ss, zz, dss, dzs):
                a = np.minimum(a, np.minimum(_soc_step(s, ds), _soc_step(z, dz)))
            return a

        # predictor
        rsL = -lamL * lamL
        rss = [-_soc_prod(sc.lam, sc.lam) for sc in scal]
        dv, dy, dsL, dzL, dss, dzs = direction(rsL, rss)
        a_aff = np.minimum(max_step(dsL, dzL, dss, dzs), 1.0)
        sigma = np.clip(1.0 - a_aff, 0.0, 1.0) ** 3
        # corrector (Mehrotra): second-order term and centring
        rsL = -lamL * lamL - (dsL / dL) * (dzL * dL) + (sigma * mu)[:, None]
        rss = []
        for sc, ds, dz in zip(scal, dss, dzs):
            r = -_soc_prod(sc.lam, sc.lam) - _soc_prod(sc.Wi(ds), sc.W(dz))
            r[:, 0] += sigma * mu
            rss.append(r)
        dv, dy, dsL, dzL, dss, dzs = direction(rsL, rss)
        alpha = np.minimum(0.99 * max_step(dsL, dzL, dss, dzs), 1.0)
        bad = (~np.isfinite(alpha) | ~np.all(np.isfinite(dv), axis=1)
               | ~np.all(np.isfinite(dy), axis=1) | (alpha <= 1e-14))
        alpha = np.where(bad, 0.0, alpha)
        if np.any(bad):
            # numerical limit reached (cancellation in the cone norms near the optimum):
            # keep the current, strictly feasible iterate
            status[idx[bad]] = 1
            active[idx[bad]] = False
            dv, dy, dsL, dzL = (np.where(bad[:, None], 0.0, a) for a in (dv, dy, dsL, dzL))
            dss = [np.where(bad[:, None], 0.0, a) for a in dss]
            dzs = [np.where(bad[:, None], 0.0, a) for a in dzs]
        a_ = alpha[:, None]
        v[idx] = va + a_ * dv
        y[idx] = ya + a_ * dy
        sL_all[idx] = sL + a_ * dsL
        zL[idx] = zLa + a_ * dzL
        for k in range(K):
            ss_all[k][idx] = ss[k] + a_ * dss[k]
            zs[k][idx] = zz[k] + a_ * dzs[k]
    return v, y, zL, zs, status, gap, it_done


def _phase1(Xn, XX, Sb, *, max_iter, verbose=0):
    """Interior directions ``g`` (B, d) with ``||g|| <= 1`` and margins ``tau``: ``A g >= tau``."""
    B, n = Sb.shape
    d = Xn.shape[1]
    v = np.zeros((B, d))
    y = -np.ones((B, 1))
    zL = np.full((B, n), 1.0 / n)
    AzL = (Sb * zL) @ Xn
    z1 = np.empty((B, d + 1))
    z1[:, 0] = np.linalg.norm(AzL, axis=1) + 1.0
    z1[:, 1:] = -AzL
    cone = _Cone([0.0], 1.0, None)
    v, y, zL, zs, status, gap, it = _ipm(
        Xn, XX, Sb, np.zeros((B, n)), -np.ones((n, 1)), [cone], np.array([-1.0]), v, y, zL, [z1],
        tol=0.0, max_iter=max_iter, phase1=True, verbose=verbose, label="phase 1")
    # the exact margin of the returned direction
    tau = np.min(Sb * (v @ Xn.T), axis=1)
    return v, tau, status, it


def _phase2(Xn, XX, Sb, Un, g, tau, *, tol, max_iter, verbose=0):
    """Solve ``min ||v|| + ||v - u||`` s.t. ``S_b Xn v >= (S_b Xn u)_+`` (rows of ``Un``)."""
    B, n = Sb.shape
    AU = Sb * (Un @ Xn.T)
    c = np.maximum(AU, 0.0)
    need = np.max(np.maximum(-AU, 0.0), axis=1)
    kappa = 1.5 * need / tau
    v0 = Un + kappa[:, None] * g
    s0 = Sb * (v0 @ Xn.T) - c
    # the start must be strictly feasible; enlarge kappa if rounding says otherwise
    for _ in range(5):
        low = s0.min(axis=1) <= 0.25 * need
        if not np.any(low):
            break
        kappa = np.where(low, 2.0 * kappa, kappa)
        v0 = Un + kappa[:, None] * g
        s0 = Sb * (v0 @ Xn.T) - c
    t1 = np.linalg.norm(v0, axis=1)
    t2 = np.linalg.norm(v0 - Un, axis=1)
    y = np.stack([t1 + 1.0, t2 + 1.0], axis=1)
    # dual start: zL = mu0 / sL scaled so that ||A^T zL|| <= 1, z_k = (1, -A^T zL / 2)
    inv = 1.0 / s0
    Ainv = np.linalg.norm((Sb * inv) @ Xn, axis=1)
    mu0 = np.minimum(1.0, 1.0 / np.maximum(Ainv, 1e-300))
    zL = mu0[:, None] * inv
    AzL = (Sb * zL) @ Xn
    z1 = np.empty((B, Xn.shape[1] + 1))
    z1[:, 0] = 1.0
    z1[:, 1:] = -0.5 * AzL
    z2 = z1.copy()
    cones = [_Cone([1.0, 0.0], 0.0, None), _Cone([0.0, 1.0], 0.0, Un)]
    v, y, zL, zs, status, gap, it = _ipm(
        Xn, XX, Sb, c, None, cones, np.array([1.0, 1.0]), v0.copy(), y, zL, [z1, z2],
        tol=tol, max_iter=max_iter, verbose=verbose, label="phase 2")
    # polish on the active face, and a certified lower bound for every block
    sL = Sb * (v @ Xn.T) - c
    v, lower = _polish_and_bound(Xn, Sb, c, Un, v, sL, zL)
    # cleanup: move towards the strictly feasible start until every constraint holds
    slack = Sb * (v @ Xn.T) - c
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.where(slack < 0, -slack / (s0 - slack), 0.0)
    theta = np.clip(theta.max(axis=1, initial=0.0), 0.0, 1.0)
    moved = theta > 0
    if np.any(moved):
        t = theta[moved][:, None]
        v[moved] = (1.0 - t) * v[moved] + t * v0[moved]
    bad = ~np.all(np.isfinite(v), axis=1)
    v[bad] = v0[bad]
    f = _objective(Un, v)
    gap = np.maximum(f - lower, 0.0) / f
    status = np.where(gap <= tol, 0, 1)
    status[bad] = 3
    return v, status, gap, it


def _objective(Un, v):
    return np.linalg.norm(v, axis=-1) + np.linalg.norm(v - Un, axis=-1)


def _dual_bound(A, c, u, v, lam):
    """Lower bound on ``min ||x|| + ||x - u||`` s.t. ``A x >= c`` from multipliers ``lam``.

    Weak duality: for ``lam >= 0`` and ``y1 + y2 = A^T lam`` with ``||y1||, ||y2|| <= 1``
    the value ``c^T lam - u^T y2`` is a lower bound.  ``y2`` is taken as the unit
    vector of ``v - u`` plus half the residual ``A^T lam - v/||v|| - (v-u)/||v-u||``, and
    everything is scaled by ``1 / max(1, ||y1||, ||y2||)`` to be exactly feasible.
    """
    lam = np.maximum(lam, 0.0)
    g = A.T @ lam
    nv = np.linalg.norm(v)
    w = v - u
    nw = np.linalg.norm(w)
    vh = v / nv if nv > 0 else np.zeros_like(v)
    wh = w / nw if nw > 0 else np.zeros_like(w)
    r = g - vh - wh
    y2 = wh + 0.5 * r
    y1 = g - y2
    scale = max(1.0, float(np.linalg.norm(y1)), float(np.linalg.norm(y2)))
    return (float(c @ lam) - float(u @ y2)) / scale


def _polish_and_bound(Xn, Sb, c, Un, v, sL, zL):
    """Newton polish of each block on its active face, and a certified lower bound.

    The active rows ``E = {j : z_j > s_j}`` of the interior-point solution define the
    face ``A_E x = c_E``; on it the objective is smooth (``v != 0``, ``v != u``) and a
    few Newton steps in the null space of ``A_E`` converge to rounding.  The polished
    point is kept when it is feasible (to rounding), not worse and has multipliers
    ``>= 0``.  The lower bound is the best of the bounds from the interior-point
    multipliers and the polished ones (:func:`_dual_bound`).
    """
    B, d = v.shape
    lower = np.full(B, -np.inf)
    out = v.copy()
    for b in range(B):
        u = Un[b]
        A = Sb[b][:, None] * Xn
        cb = c[b]
        f_ipm = float(np.linalg.norm(v[b]) + np.linalg.norm(v[b] - u))
        best_lb = _dual_bound(A, cb, u, v[b], zL[b])
        E = np.flatnonzero(zL[b] > sL[b])
        x = v[b].copy()
        # primal active-set rounds: drop the most negative multiplier, or add the most
        # violated row, until the face's minimiser satisfies the KKT conditions
        for _ in range(10):
            if E.size == 0:
                break
            cand = _newton_face(A[E], cb[E], u, x)
            if cand is None or not np.all(np.isfinite(cand[0])):
                break
            x, lamE = cand
            slack = A @ x - cb
            scale = max(1.0, float(np.linalg.norm(x)))
            j = int(np.argmin(slack))
            if slack[j] < -1e-12 * scale:
                E = np.union1d(E, [j])
                continue
            k = int(np.argmin(lamE))
            if lamE[k] < -1e-9 * max(1.0, float(np.abs(lamE).max())):
                E = np.delete(E, k)
                continue
            fx = float(np.linalg.norm(x) + np.linalg.norm(x - u))
            if fx <= f_ipm * (1 + 1e-12):
                lam = np.zeros_like(cb)
                lam[E] = lamE
                best_lb = max(best_lb, _dual_bound(A, cb, u, x, lam))
                out[b] = x
            break
        lower[b] = best_lb
    return out, lower


def _newton_face(AE, cE, u, x, max_iter=30):
    """Minimise ``||x|| + ||x - u||`` on ``{A_E x = c_E}`` from ``x``; returns ``(x, lam_E)``."""
    d = x.size
    Um, sv, Vt = np.linalg.svd(AE, full_matrices=True)
    rank = int(np.sum(sv > sv.max(initial=0.0) * 1e-12 * max(AE.shape)))
    if rank == 0:
        return None
    # project onto the face (least squares on the range of A_E)
    pinv_apply = lambda r: Vt[:rank].T @ ((Um[:, :rank].T @ r) / sv[:rank])  # noqa: E731
    x = x + pinv_apply(cE - AE @ x)
    N = Vt[rank:].T                                  # null-space basis (d, d - rank)

    def f_grad_hess(z):
        nz, nw = np.linalg.norm(z), np.linalg.norm(z - u)
        if nz == 0 or nw == 0:
            return None
        zh, wh = z / nz, (z - u) / nw
        H = (np.eye(d) - np.outer(zh, zh)) / nz + (np.eye(d) - np.outer(wh, wh)) / nw
        return nz + nw, zh + wh, H

    fgh = f_grad_hess(x)
    if fgh is None:
        return None
    if N.shape[1]:
        for _ in range(max_iter):
            fx, g, H = fgh
            gN = N.T @ g
            HN = N.T @ H @ N
            HN[np.diag_indices_from(HN)] += 1e-14 * max(1.0, float(np.trace(HN)))
            try:
                step = -np.linalg.solve(HN, gN)
            except np.linalg.LinAlgError:
                return None
            dec = float(-gN @ step)
            if dec <= 1e-30 * max(fx, 1.0):
                break
            a = 1.0
            while a > 1e-10:
                xn = x + a * (N @ step)
                fn = f_grad_hess(xn)
                if fn is not None and fn[0] <= fx - 0.25 * a * dec:
                    break
                a *= 0.5
            else:
                break
            x, fgh = xn, fn
            if dec <= 1e-28 * max(fx, 1.0):
                break
    fx, g, _ = fgh
    lamE = Um[:, :rank] @ ((Vt[:rank] @ g) / sv[:rank])   # least-squares A_E^T lam = grad
    return x, lamE


# ============================================================================ approximate
def _fista_cda(Xa, Sb, Ub, rho, tol, max_iter, verbose=0):
    """CD-A for the columns of ``Ub`` (d, B): returns ``Wb`` (d, B) and the iteration count.

    FISTA run for all blocks in lock-step, with a step size, momentum, adaptive
    restart (O'Donoghue & Candes) and stopping test per block.  Steps start at
    ``1/L`` (``L = ||Xa||_2^2 / n``, always accepted), grow by 1.25 per iteration and
    are halved while the quadratic upper-bound test fails (as R-FISTA's line search).
    Internally blocks are rows (``(B, d)`` weights, ``(B, n)`` products), so each
    iteration is the GEMMs ``W @ Xa^T`` and ``(S * R) @ Xa`` plus elementwise work;
    the products at the extrapolated point are obtained by linearity.  A block stops
    when its gradient mapping is ``tol`` times its value at ``w = 0``.
    """
    n, d = Xa.shape
    B = Ub.shape[1]
    Wout = np.zeros((d, B))
    if B == 0:
        return Wout, 0
    XaT = np.ascontiguousarray(Xa.T)
    bfull = np.maximum(-(Sb.T * (Ub.T @ XaT)), 0.0)      # (B, n)
    L = float(np.linalg.norm(Xa, 2)) ** 2 / n
    run = np.flatnonzero(np.any(bfull > 0, axis=1))     # blocks already feasible stay at 0
    if L == 0 or run.size == 0:
        return Wout, 0
    tiny = np.finfo(float).tiny
    Lmin = 1.0 / L

    def value(b, S, Z):
        R = S * Z
        np.subtract(b, R, out=R)
        np.maximum(R, 0.0, out=R)
        return np.einsum("bn,bn->b", R, R) / (2.0 * n), R

    def prox(Wm, thr):
        nrm = np.linalg.norm(Wm, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(nrm > thr, 1.0 - thr / np.where(nrm > 0, nrm, 1.0), 0.0)
        return Wm * scale[:, None]

    b = np.ascontiguousarray(bfull[run])
    S = np.ascontiguousarray(Sb.T[run])
    nb = run.size
    Wk = np.zeros((nb, d))
    ZW = np.zeros((nb, n))           # Wk @ Xa^T
    Yk = Wk.copy()
    ZY = ZW.copy()                   # Yk @ Xa^T
    t = np.ones(nb)
    eta = np.full(nb, Lmin)
    g0 = None
    it = 0
    for it in range(1, max_iter + 1):
        fY, R = value(b, S, ZY)
        R *= S
        G = (R @ Xa) * (-1.0 / n)
        eta = eta * 1.25
        Wn = prox(Yk - eta[:, None] * G, eta * rho)
        ZN = Wn @ XaT
        # per-block backtracking on the quadratic upper bound (after the first round
        # only the failing blocks are re-evaluated)
        fN, _r = value(b, S, ZN)
        Dl = Wn - Yk
        bound = fY + np.einsum("bd,bd->b", G, Dl) + np.einsum("bd,bd->b", Dl, Dl) / (2 * eta)
        bad = (fN > bound + 1e-15 * np.maximum(fY, tiny)) & (eta > Lmin)
        chk = np.flatnonzero(bad)
        for _ in range(60):
            if chk.size == 0:
                break
            eta[chk] = np.maximum(0.5 * eta[chk], Lmin)
            Wn[chk] = prox(Yk[chk] - eta[chk, None] * G[chk], eta[chk] * rho)
            ZN[chk] = Wn[chk] @ XaT
            fN, _r = value(b[chk], S[chk], ZN[chk])
            Dl = Wn[chk] - Yk[chk]
            bound = (fY[chk] + np.einsum("bd,bd->b", G[chk], Dl)
                     + np.einsum("bd,bd->b", Dl, Dl) / (2 * eta[chk]))
            bad = (fN > bound + 1e-15 * np.maximum(fY[chk], tiny)) & (eta[chk] > Lmin)
            chk = chk[bad]
        Dl = Yk - Wn
        gm = np.linalg.norm(Dl, axis=1) / eta       # gradient mapping at Yk
        if g0 is None:
            g0 = np.maximum(gm, tiny)
        done = gm <= tol * g0
        # adaptive restart: momentum against the gradient mapping
        restart = np.einsum("bd,bd->b", Dl, Wn - Wk) > 0
        tn = np.where(restart, 1.0, 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t)))
        mom = np.where(restart, 0.0, (t - 1.0) / tn)[:, None]
        Yk = Wn + mom * (Wn - Wk)
        ZY = ZN - ZW
        ZY *= mom
        ZY += ZN
        Wk, ZW, t = Wn, ZN, tn
        if verbose >= 2 and it % 500 == 0:
            print(f"  CD-A it {it:5d}: running {nb}, max gradient mapping "
                  f"{np.max(gm / g0):.2e}")
        if np.any(done):
            Wout[:, run[done]] = Wk[done].T
            keep = ~done
            run, b, S = run[keep], b[keep], S[keep]
            Wk, ZW, Yk, ZY = Wk[keep], ZW[keep], Yk[keep], ZY[keep]
            t, eta, g0 = t[keep], eta[keep], g0[keep]
            nb = run.size
            if nb == 0:
                break
        if it % 200 == 0:           # refresh the products (linearity drifts by rounding)
            ZW = Wk @ XaT
            ZY = Yk @ XaT
    if run.size:
        Wout[:, run] = Wk.T
    return Wout, it


# ============================================================================ public
def cone_decompose(Xa, D, U, *, method="exact", tol=None, max_iter=None, rho=1e-10,
                   cleanup=True, feasibility_tol=1e-10, verbose=0) -> ConeDecomposition:
    """Decompose a gated-ReLU solution ``U`` into ReLU weights ``V - W = U`` on the cones.

    See the module docstring for the programs and algorithms.

    Parameters
    ----------
    Xa : array of shape (n, d)
        Training data, with the ones column appended when a bias is used.
    D : array of shape (n, P), bool or 0/1
        Activation masks of the gated solution.
    U : array of shape (d, P, c) or (d, P)
        Gated convex weights.
    method : {"exact", "approximate"}, default="exact"
        ``"exact"``: per-block min-l2 SOCP (CD-SOCP), solved by the interior-point
        method of this module; training predictions are preserved to rounding.
        ``"approximate"``: CD-A (one-sided quadratic penalty, FISTA).
    tol : float, optional
        Exact: relative duality gap of each block (default 1e-10).  Approximate:
        FISTA stops when the gradient mapping is ``tol`` times its initial value
        (default 1e-10).
    max_iter : int, optional
        Exact: interior-point iterations per phase (default 100).  Approximate:
        FISTA iterations (default 10000).
    rho : float, default=1e-10
        Approximate only: weight of the group penalty ``rho sum ||w_b||``.
    cleanup : bool, default=True
        Approximate only: restore feasibility of violating blocks along an interior
        direction of their cone (phase 1 of the exact method).
    feasibility_tol : float, default=1e-10
        Relative violation accepted as feasible when reporting ``success``.
    verbose : int, default=0
        1: summary line; 2: iteration log.

    Returns
    -------
    ConeDecomposition
    """
    t0 = time.perf_counter()
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    Xa, D, U = _check_inputs(Xa, D, U)
    exact = method == "exact"
    tol = (1e-10 if tol is None else _check_pos(tol, "tol"))
    max_iter = ((100 if exact else 10000) if max_iter is None
                else _check_pos(max_iter, "max_iter", integer=True))
    rho = _check_pos(rho, "rho", allow_zero=True)
    feasibility_tol = _check_pos(feasibility_tol, "feasibility_tol", allow_zero=True)
    if not isinstance(cleanup, (bool, np.bool_)):
        raise TypeError(f"cleanup must be True or False, got {cleanup!r}")
    was_2d = U.ndim == 2
    U3 = U[:, :, None] if was_2d else U
    d, P, c = U3.shape

    S = np.where(D, 1.0, -1.0)
    rown = np.linalg.norm(Xa, axis=1)
    rows = rown > 0
    Xn = Xa[rows] / rown[rows, None]
    Sn = S[rows]
    nn = Xn.shape[0]
    XX = None
    if exact and nn * d * d <= _XX_LIMIT:
        XX = (Xn[:, :, None] * Xn[:, None, :]).reshape(nn, d * d)

    Ub = U3.reshape(d, P * c)
    pat = np.repeat(np.arange(P), c)                  # block b = (i, k) -> pattern i
    unorm = np.linalg.norm(Ub, axis=0)
    Vb = np.zeros_like(Ub)
    Wb = np.zeros_like(Ub)
    status = np.full(P * c, "zero", dtype=object)
    gap = np.full(P * c, np.nan)
    nz = np.flatnonzero(unorm > 0)
    n_iter = 0
    info: dict = {}

    if exact:
        gap[unorm == 0] = 0.0
        Un = (Ub[:, nz] / unorm[nz]).T                   # (B, d), unit blocks
        Sb = Sn[:, pat[nz]].T                           # (B, n)
        AU = Sb * (Un @ Xn.T)
        inc = np.all(AU >= 0, axis=1)
        neg = np.all(AU <= 0, axis=1) & ~inc
        Vb[:, nz[inc]] = Ub[:, nz[inc]]
        Wb[:, nz[neg]] = -Ub[:, nz[neg]]
        status[nz[inc]] = "in_cone"
        status[nz[neg]] = "neg_in_cone"
        gap[nz[inc | neg]] = 0.0
        rest = np.flatnonzero(~(inc | neg))
        fallback = np.zeros(0, dtype=int)
        if rest.size:
            g, tau, st1, it1 = _phase1(Xn, XX, Sb[rest], max_iter=max_iter, verbose=verbose)
            # any direction with a positive margin is a valid start; no interior is
            # reported only when phase 1 certified it
            ok1 = (tau > 0) & (st1 != 2)
            status[nz[rest[~ok1 & (st1 == 2)]]] = "singular_cone"
            status[nz[rest[~ok1 & (st1 != 2)]]] = "failed"
            go = rest[ok1]
            it2 = 0
            if go.size:
                v, st2, gp, it2 = _phase2(Xn, XX, Sb[go], Un[go], g[ok1], tau[ok1], tol=tol,
                                          max_iter=max_iter, verbose=verbose)
                blocks = nz[go]
                Vb[:, blocks] = (v * unorm[blocks][:, None]).T
                Wb[:, blocks] = Vb[:, blocks] - Ub[:, blocks]
                gap[blocks] = gp
                status[blocks] = np.where(st2 == 0, "optimal",
                                          np.where(st2 == 3, "failed", "inaccurate"))
            n_iter = it1 + it2
            fallback = nz[rest[~ok1]]
            info["phase1_iter"], info["phase2_iter"] = it1, it2
        if fallback.size:
            # best effort for singular cones: the approximate decomposition
            Wf, _ = _fista_cda(Xa, S[:, pat[fallback]], Ub[:, fallback], rho, 1e-10, 2000)
            Wb[:, fallback] = Wf
            Vb[:, fallback] = Ub[:, fallback] + Wf
        raw = None
    else:
        Wf, n_iter = _fista_cda(Xa, S[:, pat[nz]], Ub[:, nz], rho, tol, max_iter, verbose)
        Wb[:, nz] = Wf
        Vb[:, nz] = Ub[:, nz] + Wf
        viol = np.maximum(_violation_per_block(Xa, rown, S, pat[nz], Vb[:, nz]),
                          _violation_per_block(Xa, rown, S, pat[nz], Wb[:, nz]))
        raw = float(viol.max(initial=0.0))
        fix = np.flatnonzero(viol > 0) if cleanup else np.zeros(0, dtype=int)
        if fix.size:
            blocks = nz[fix]
            Sb = Sn[:, pat[blocks]].T
            g, tau, st1, it1 = _phase1(Xn, XX, Sb, max_iter=100, verbose=verbose)
            info["cleanup_blocks"] = int(fix.size)
            info["phase1_iter"] = it1
            ok = tau > 0
            if np.any(ok):
                bl = blocks[ok]
                Sok = Sb[ok]
                # need S Xn w >= (-S Xn u)_+ , i.e. w + theta g with theta = max deficit / (S Xn g)
                Aw = Sok * (Wb[:, bl].T @ Xn.T)
                Au = Sok * (Ub[:, bl].T @ Xn.T)
                deficit = np.maximum(np.maximum(-Au, 0.0) - Aw, 0.0)
                Ag = Sok * (g[ok] @ Xn.T)
                theta = 1.0000001 * (deficit / Ag).max(axis=1)
                Wb[:, bl] += (theta[:, None] * g[ok]).T
                Vb[:, bl] = Ub[:, bl] + Wb[:, bl]
        viol = np.maximum(_violation_per_block(Xa, rown, S, pat[nz], Vb[:, nz]),
                          _violation_per_block(Xa, rown, S, pat[nz], Wb[:, nz]))
        status[nz] = np.where(viol <= feasibility_tol, "feasible", "infeasible")

    viol_all = np.zeros(P * c)
    if nz.size:
        viol_all[nz] = np.maximum(_violation_per_block(Xa, rown, S, pat[nz], Vb[:, nz]),
                                  _violation_per_block(Xa, rown, S, pat[nz], Wb[:, nz]))
    max_violation = float(viol_all.max(initial=0.0))
    raw_violation = max_violation if raw is None else raw
    vn = np.linalg.norm(Vb, axis=0)
    wn = np.linalg.norm(Wb, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        infl = np.where(unorm > 0, (vn + wn) / np.where(unorm > 0, unorm, 1.0), np.nan)
    gated_norm = float(unorm.sum())
    relu_norm = float((vn + wn).sum())
    total = relu_norm / gated_norm if gated_norm > 0 else 1.0
    ok_status = set(_OK) | {"feasible"}
    success = bool(all(s in ok_status for s in status) and max_violation <= feasibility_tol)

    shape = (d, P) if was_2d else (d, P, c)
    res = ConeDecomposition(
        V=Vb.reshape(shape), W=Wb.reshape(shape), method=method,
        status=status.astype(str).reshape(P, c), inflation=infl.reshape(P, c),
        total_inflation=float(total), gated_norm=gated_norm, relu_norm=relu_norm,
        max_violation=max_violation, raw_violation=float(raw_violation),
        gap=gap.reshape(P, c), time=time.perf_counter() - t0, success=success,
        n_iter=int(n_iter), feasibility_tol=float(feasibility_tol), info=info,
    )
    if verbose:
        print(res)
    return res


def decompose_solution(X, res, *, method="exact", threshold=1e-12, **kwargs):
    """ReLU network from a gated :func:`cvxnn.solve` result, by a cone decomposition.

    Parameters
    ----------
    X : array-like of shape (n, d)
        The training data the gated result was computed on (the masks are rebuilt
        from ``res.gates`` with :func:`cvxnn.patterns.compute_masks`).
    res : SolveResult
        A result with ``formulation="gated"`` (``res.weights["U"]`` of shape
        ``(d_aug, P, c)``).
    method : {"exact", "approximate"}, default="exact"
    threshold : float, default=1e-12
        Passed to :func:`cvxnn.network.network_from_relu` (relative block norm
        below which units are dropped).
    **kwargs
        Passed to :func:`cone_decompose` (``tol``, ``max_iter``, ``rho``, ...).

    Returns
    -------
    network : TwoLayerReLU
        Its outputs on ``X`` equal the gated model's (exact method: to rounding).
    decomposition : ConeDecomposition
        With ``relu_objective = res.objective + alpha (relu_norm - gated_norm)``, the
        objective of ``network`` (same loss, larger penalty).

    Examples
    --------
    >>> res = cvxnn.solve(X, y, 1e-3, formulation="gated")          # doctest: +SKIP
    >>> net, dec = decompose_solution(X, res)                        # doctest: +SKIP
    >>> dec.success, dec.total_inflation, dec.relu_objective         # doctest: +SKIP
    """
    from .network import network_from_relu
    from .patterns import compute_masks

    formulation = getattr(res, "formulation", None)
    weights = getattr(res, "weights", None)
    if formulation != "gated" or not isinstance(weights, dict) or "U" not in weights:
        raise ValueError(
            "res must be a gated cvxnn.solve result (formulation='gated' with weights['U']), "
            f"got formulation={formulation!r}"
        )
    X = check_X(X, "X").astype(np.float64, copy=False)
    U = np.asarray(weights["U"])
    G = np.asarray(res.gates)
    d_aug = X.shape[1] + int(res.bias)
    if G.shape[0] != d_aug or U.shape[0] != d_aug:
        raise ValueError(
            f"X has {X.shape[1]} features, so the gated result (bias={res.bias}) should have "
            f"gates/blocks of length {d_aug}; got gates {G.shape} and U {U.shape}"
        )
    Xa = augment(X, res.bias)
    D = compute_masks(X, G, bias=res.bias)
    dec = cone_decompose(Xa, D, U, method=method, **kwargs)
    network = network_from_relu(dec.V, dec.W, bias=res.bias, classes=res.classes,
                                loss=res.loss, threshold=threshold)
    alpha = float(res.alpha)
    dec.relu_objective = float(res.objective + alpha * (dec.relu_norm - dec.gated_norm))
    return network, dec
