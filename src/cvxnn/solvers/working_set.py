"""Working-set second-order solver of the gated ReLU group lasso.

Problem (see :class:`~cvxnn.problems.GatedReLUProblem`)::

    min_U  L(Z, Y) + alpha * sum_{i,k} ||U[:, i, k]||_2,   Z[:, k] = sum_i D_i Xa U[:, i, k].

A *block* is a pair ``(i, k)`` (pattern ``i``, output ``k``); its columns in the
expanded design are ``D_i Xa`` (``n x d``).

Outer loop: a growing working set, certified by the full duality gap
--------------------------------------------------------------------
The working set ``W`` starts with the nonzero blocks of the warm start plus the
blocks with the largest dual norms ``||Xa^T D_i Theta_k||`` (``Theta = -grad
L(Z)``): at least ``n_init`` of them, and all of them when a Newton step on all
blocks is cheap (``newton_flops``).  Each round solves the problem restricted
to ``W`` (other blocks fixed at zero) and then computes the FULL duality gap
with :meth:`GatedReLUProblem.gap` -- the certificate; the solver stops when
the relative gap is ``<= tol``.  Otherwise the next working set is the nonzero
blocks plus the blocks whose dual constraint is violated (dual norm >
``alpha``), the most violated first, at most ``max(n_init, |W|)`` new ones per
round (geometric growth).  Rounds that leave violated blocks out are solved
loosely (restricted gap ``0.1 x`` the current full gap), the others to
``inner_frac * tol``.  The expanded ``n x Pd`` matrix of the full problem is never
formed; full products go through :mod:`cvxnn.operators`.

Restricted solver
-----------------
On ``W`` the problem is the second-order cone program ``min L(Z) + alpha sum_b
t_b`` s.t. ``||u_b|| <= t_b``, small enough for Newton-type methods whose cost
does not depend on the conditioning of the data:

1. **Primal-dual interior point** (:meth:`_WorkingSetSolver.pd_solve`):
   Mehrotra predictor-corrector with Nesterov-Todd scaling.  Eliminating ``t``
   and the cone multipliers leaves one system ``(H + blockdiag(c1 I - c2 v v^T))
   du = rhs`` per iteration, with ``H`` the loss Hessian on ``W`` (``Xw^T diag(w)
   Xw``; per-sample curvature ``w = 1/n`` squared, ``p(1-p)/n`` logistic,
   ``(diag p - p p^T)/n`` cross-entropy).  For nonlinear losses a step may not
   raise the objective by more than the current gap.
2. **Barrier fallback**: if the primal-dual iterations stall (floating-point
   noise floor of very ill-conditioned problems, or a nonlinear loss defeating
   the predictor-corrector), damped Newton on the primal barrier ``L + sum_b
   min_{t > ||u_b||} (alpha t - mu log(t^2 - ||u_b||^2))`` (a smooth, Armijo
   line-searched path following) takes over from the best point.
3. **Active-set finish** (:meth:`_WorkingSetSolver.polish`): once the gap is
   below 1e-3 (and at the start of warm-started rounds, after exact block
   steps on the newly violated blocks), the blocks whose exact block minimiser
   is zero are set to zero and Newton steps on the active manifold (exact
   penalty Hessian ``alpha/||u|| (I - u u^T/||u||^2)``, Armijo search along a path
   that zeroes blocks crossing the origin) converge quadratically.  This also
   makes the solution exactly group sparse.

The Newton systems are solved in sample space by a Woodbury identity (``O(n^2
|W| + n^3)``, for moderate ``n``), by a Jacobi-scaled dense Cholesky in block
space (``O(n (|W| d)^2 + (|W| d)^3)``; the squared-loss Hessian is formed once per
round), or, when both are too expensive, by block-Jacobi preconditioned CG
(exact block Grams ``Xa^T D_i Xa / n``: insensitive to the scale of the
columns).  Direct solves are verified on their first use (an unusable
factorisation hands over to the next back end) and refined with exact products.
Mixed precision (``P c d >= MIXED_MIN_SIDE``): the dense loss Hessians are
formed and the dense systems factored in float32 -- GEMM and Cholesky twice as
fast -- and each solve is brought to a float64 residual by CG preconditioned
with the float32 factor; a factor that cannot get there switches the solve to
float64.  Iterates, products and the certificate are always float64.
Each block Gram is eigendecomposed once; the exact block
minimisation ``argmin_v 1/2 v^T M v + q^T v + alpha ||v||`` used to activate
blocks is then a 1-D secular equation solved by a monotone Newton iteration.

Budget and counters
-------------------
``max_iter`` bounds the total number of restricted iterations (interior-point,
barrier or manifold Newton steps; each costs one factorisation) summed over
all rounds; ``max_outer`` bounds the rounds.  ``n_iter`` reports that total.
``n_grad_equiv`` converts the floating-point work (gradients, Hessian
formation, factorisations, CG, gap evaluations) into full-gradient equivalents,
one being ``problem.apply`` + ``problem.adjoint`` (``2 n d P c`` multiply-adds).
"""

from __future__ import annotations

import time

import numpy as np
import scipy.linalg as sla
from scipy.linalg import blas as _blas
from scipy.special import expit, softmax

from ..problems import GatedReLUProblem
from .dense_solve import cho_solve_fast as _cho_solve

__all__ = ["solve_gated_working_set"]

#: largest side of a dense block-space Newton matrix (8000^2 float64 = 512 MB); larger
#: systems use preconditioned CG (memory is checked up front by cvxnn.memory)
MAX_DENSE_SIDE = 8000
#: a masked Hessian-vector product runs at a small fraction of the flop rate of a dense
#: Cholesky (memory-bound masking vs BLAS-3): measured ~0.7 vs ~20 GFLOP/s on puma8NH
#: (n = 8192, 2700 columns), so CG flops are weighted by this factor when the direct
#: and iterative Newton solves are compared
CG_FLOP_PENALTY = 10.0

#: curvature bound of each loss along one output (majoriser of the block Hessian
#: in units of ``Xa^T D_i Xa / n``)
_BETA = {"squared": 1.0, "logistic": 0.25, "cross_entropy": 0.25}


# ----------------------------------------------------------------------------- helpers
#: blocks with radial curvature ``c1 - c2 r^2 < FLAT_RADIAL c1`` get the exact
#: (saddle-point) treatment in the sample-space factorisation
FLAT_RADIAL = 1e-4
#: relative radial curvature added to the exact penalty Hessian of the manifold step
MANIFOLD_RADIAL_REG = 1e-6
#: direct Newton solves are refined (exact products) down to this relative residual;
#: interior-point and manifold Newton steps need no more (inexact Newton)
REFINE_RTOL = 1e-10
#: a factorisation whose first, unrefined solve leaves a larger relative residual is
#: discarded for the next back end (ill-conditioning)
PROBE_RESIDUAL = 1e-3
#: mixed precision: the dense loss Hessians (the squared loss's working-set cache) are
#: formed and the dense Newton systems factored in float32 (GEMM and Cholesky twice as
#: fast, half the memory) when the largest possible working set has at least this many
#: unknowns; the solves are then refined to ``REFINE_RTOL`` by CG preconditioned with
#: the float32 factor, with exact float64 products (see ``_WorkingSetSolver._factor``)
MIXED_MIN_SIDE = 1200
#: float32 factor: largest unrefined relative residual of a usable preconditioner, CG
#: iterations allowed, and the residual a solve must reach (else float64 from then on)
MIXED_PROBE_RESIDUAL = 0.5
MIXED_MAX_CG = 30
MIXED_ACCEPT = 1e-8


def _gram_upper(A, w):
    """``A diag(w) A^T`` (``A`` (n, k)); with ``w >= 0`` only its upper triangle is
    computed (``dsyrk``, half the flops of a GEMM) and the lower one is zero."""
    if A.dtype == np.float64 and w.size and w.min() >= 0:
        return _blas.dsyrk(1.0, (A * np.sqrt(w)).T, trans=1)
    return (A * w) @ A.T


def _pcg(hvp, prec, x, res, rn, atol, max_it):
    """Conjugate gradients on ``hvp(x) = rhs`` continued from ``x`` (its residual ``res =
    rhs - hvp(x)``, of norm ``rn``), preconditioned by ``prec``, until ``||res|| <=
    atol`` (recursive residual) or ``max_it`` steps; returns ``(x, ||res||)``."""
    if rn <= atol:
        return x, rn
    z = prec(res)
    p = z
    rz = float(np.vdot(res, z))
    for _ in range(max_it):
        Ap = hvp(p)
        pAp = float(np.vdot(p, Ap))
        if not (pAp > 0 and rz > 0):
            break
        a = rz / pAp
        x = x + a * p
        res = res - a * Ap
        rn = float(np.linalg.norm(res))
        if rn <= atol:
            break
        z = prec(res)
        rz_new = float(np.vdot(res, z))
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x, rn


def _block_prox(lam, Q, q, alpha):
    """Minimise ``1/2 v^T M v + q^T v + alpha ||v||`` with ``M = Q diag(lam) Q^T`` PSD.

    For ``||q|| <= alpha`` the minimiser is 0.  Otherwise ``v = -(M + sigma I)^{-1} q``
    with ``sigma = alpha/||v||``, i.e. the root of the concave, eventually
    decreasing ``h(sigma) = 1/||v(sigma)|| - sigma/alpha``, found by Newton's method
    started to the right of the root (monotone convergence; ``1/||v(sigma)||`` is
    concave for ``sigma > 0`` even when ``M`` is singular).  With ``alpha = 0`` the
    minimum-norm solution ``-M^+ q`` is returned.
    """
    qn = float(np.sqrt(q @ q))
    if qn <= alpha:
        return np.zeros_like(q)
    qt = Q.T @ q
    lam = np.maximum(lam, 0.0)
    lmax = float(lam[-1]) if lam.size else 0.0
    if lmax <= 0.0:
        return np.zeros_like(q)
    if alpha <= 0.0:
        keep = lam > 1e-13 * lmax
        vt = np.zeros_like(qt)
        vt[keep] = -qt[keep] / lam[keep]
        return Q @ vt
    lk, qk = lam, qt
    q2 = qk * qk
    qkn = float(np.sqrt(q2.sum()))
    if qkn <= alpha:
        return np.zeros_like(q)
    sig = lmax * alpha / (qkn - alpha)
    inv_a = 1.0 / alpha
    for _ in range(100):
        den = lk + sig
        r = q2 / (den * den)
        v2 = float(r.sum())
        vn = np.sqrt(v2)
        h = 1.0 / vn - sig * inv_a
        hp = float((r / den).sum()) / (v2 * vn) - inv_a
        new = sig - h / hp
        if not new > 0.0:
            new = 0.5 * sig
        if abs(new - sig) <= 1e-14 * sig:
            sig = new
            break
        sig = new
    return Q @ (-qk / (lk + sig))


class _Curvature:
    """Per-sample loss curvature at ``Z``: ``diag`` (n, c) and optional ``off`` (n, c, c)."""

    def __init__(self, name, Z, Y):
        n, c = Z.shape
        self.off = None
        if name == "squared":
            self.diag = np.full((n, c), 1.0 / n)
        elif name == "logistic":
            p = expit(Z)
            self.diag = p * (1.0 - p) / n
        elif name == "cross_entropy":
            S = softmax(Z, axis=1)
            self.probs = S
            self.diag = S * (1.0 - S) / n
            if c > 1:
                self.off = -(S[:, :, None] * S[:, None, :]) / n
        else:  # pragma: no cover - guarded in the solver
            raise ValueError(name)

    def apply(self, dZ):
        """``W dZ`` per sample (``(n, c)``)."""
        if self.off is None:
            return self.diag * dZ
        out = np.einsum("nkl,nl->nk", self.off, dZ)
        out += (self.diag - np.einsum("nkk->nk", self.off)) * dZ
        return out


# ----------------------------------------------------------------------------- solver
class _WorkingSetSolver:
    def __init__(self, problem: GatedReLUProblem, *, chunk_bytes, dense_flops, verbose,
                 mixed_precision=True):
        self.pb = problem
        self.Xa = np.ascontiguousarray(problem.Xa, dtype=np.float64)
        self.D = problem.D
        self.Y = np.asarray(problem.Y, dtype=np.float64)
        self.loss = problem.loss
        self.name = self.loss.name
        if self.name not in _BETA:
            raise ValueError(f"working-set solver does not support loss {self.name!r}")
        self.beta = _BETA[self.name]
        self.alpha = problem.alpha
        self.n, self.d = self.Xa.shape
        self.P = self.D.shape[1]
        self.c = self.Y.shape[1]
        self.chunk_elems = max(1, int(chunk_bytes) // 8)
        self.dense_flops = dense_flops
        self.verbose = verbose
        self.flops = 0.0
        self.fge_unit = 2.0 * self.n * self.d * self.P * self.c
        self._eig = {}  # pattern -> (lam, Q) of Xa^T D_i Xa / n
        # squared loss: the Hessian J^T J / n does not depend on the point, so the blocks
        # computed for one working set are kept for the next ones (``_ws_hessian``)
        self._hc_keys = np.empty(0, dtype=np.intp)  # block keys (pattern * c + output)
        # mixed precision (large working sets): dense Hessians (and the squared loss's
        # cache) in float32
        self.mixed = bool(mixed_precision and self.P * self.c * self.d >= MIXED_MIN_SIDE)
        self.n_mixed_fallbacks = 0
        self._hc = np.zeros((0, 0), dtype=self._hdtype)
        self._K0 = None  # Xa Xa^T (sample-space Newton solves)
        self.cg_rtol = 1e-2
        self.stalled = False
        self.max_dual_n = 3500

    @property
    def _hdtype(self):
        return np.float32 if self.mixed else np.float64

    def _disable_mixed(self):
        """A float32 factor was not accurate enough: float64 from now on (the Hessian
        cache is dropped and formed again in float64)."""
        self.mixed = False
        self.n_mixed_fallbacks += 1
        self._hc_keys, self._hc = np.empty(0, dtype=np.intp), np.zeros((0, 0))
        self._hcache = None
        if self.verbose >= 3:
            print("      float32 factor not accurate enough: float64 from now on")

    # ------------------------------------------------------------- block Grams
    def _ensure_eig(self, pats):
        new = [int(i) for i in np.unique(pats) if int(i) not in self._eig]
        if not new:
            return
        n, d = self.n, self.d
        Dn = self.D[:, new].astype(np.float64)
        G = np.zeros((len(new), d * d))
        rows = max(1, self.chunk_elems // max(d * d, 1))
        for s in range(0, n, rows):
            sl = slice(s, min(n, s + rows))
            XX = (self.Xa[sl, :, None] * self.Xa[sl, None, :]).reshape(-1, d * d)
            G += Dn[sl].T @ XX
        G = G.reshape(-1, d, d) / n
        G = 0.5 * (G + G.transpose(0, 2, 1))
        lam, Q = np.linalg.eigh(G)
        lam = np.maximum(lam, 0.0)
        for j, i in enumerate(new):
            self._eig[i] = (lam[j], Q[j])
        self.flops += len(new) * (n * d * d + 4 * d ** 3)

    # ------------------------------------------------------------- restricted maps
    def set_working_set(self, pat, out, u):
        self.pat = np.asarray(pat, dtype=np.intp)
        self.out = np.asarray(out, dtype=np.intp)
        self.u = np.array(u, dtype=np.float64).reshape(len(self.pat), self.d)
        self.Dw = self.D[:, self.pat].astype(np.float64)
        self.onehot = np.zeros((len(self.pat), self.c))
        self.onehot[np.arange(len(self.pat)), self.out] = 1.0
        self._hcache = None  # block Grams are eigendecomposed lazily (_ensure_eig)
        self._stale = None  # last direct factorisation on this working set (see _pcg_stale)
        self._rgap = 1.0  # restricted gap at the last _state

    def _mask_columns(self, idx):
        """Mask columns of the blocks ``idx`` (no copy when ``idx`` is the whole set in order)."""
        if idx is None or (len(idx) == self.Dw.shape[1]
                           and np.array_equal(idx, np.arange(len(idx)))):
            return self.Dw
        return self.Dw[:, idx]

    def _by_output(self, idx):
        """``[(k, positions in idx of the blocks of output k)]``."""
        outs = self.out if idx is None else self.out[idx]
        if self.c == 1:
            return [(0, slice(None))]
        return [(k, np.flatnonzero(outs == k)) for k in range(self.c)]

    def forward_w(self, idx, V):
        """``Z`` contribution of blocks ``idx`` with weights ``V`` (len(idx), d).

        ``Z[:, k] = rowsum(Xa * (D_idx V))`` over the blocks of output ``k``: the mask
        multiplies the (few) weights first, so no ``n x len(idx)`` temporary is formed.
        """
        Z = np.zeros((self.n, self.c))
        if len(idx) == 0:
            return Z
        Dm = self._mask_columns(idx)
        for k, pos in self._by_output(idx):
            W = Dm @ V if self.c == 1 else Dm[:, pos] @ V[pos]
            Z[:, k] = np.einsum("nd,nd->n", W, self.Xa)
        self.flops += self.n * self.d * len(idx)
        return Z

    def grads_w(self, R, idx=None):
        """Block gradients ``Xa^T (D_i R[:, k])`` for blocks ``idx`` (default: all of W),
        as ``(R[:, k] * Xa)^T D`` (data rows scaled, not mask columns)."""
        Dm = self._mask_columns(idx)
        m = Dm.shape[1]
        G = np.empty((m, self.d))
        for k, pos in self._by_output(idx):
            XR = self.Xa * R[:, k:k + 1]
            if self.c == 1:
                G[:] = (XR.T @ Dm).T
            else:
                G[pos] = (XR.T @ Dm[:, pos]).T
        self.flops += self.n * self.d * m
        return G

    def value(self, Z, u):
        return self.loss.value(Z, self.Y) + self.alpha * float(np.sqrt(np.einsum("bd,bd->b", u, u)).sum())

    def restricted_gap(self, F, R, gnorms):
        """Relative duality gap of the problem restricted to W (same rules as problem.gap)."""
        Theta = -R
        cmax = float(gnorms.max(initial=0.0))
        s_max = 1.0 if cmax <= self.alpha else self.alpha / cmax
        s = s_max
        if self.name == "squared":
            tt = float(np.vdot(Theta, Theta))
            if tt > 0:
                s = min(s_max, max(0.0, float(np.vdot(Theta, self.Y)) / (self.n * tt)))
        dual = self.loss.dual_value(s * Theta, self.Y)
        return max(F - dual, 0.0) / max(abs(F), np.finfo(float).tiny)

    # ------------------------------------------------------------- BCD sweep
    def bcd_sweep(self, Z, idx):
        """Exact block-majorisation steps over blocks ``idx`` in order; returns new Z
        (the input ``Z`` is not modified)."""
        alpha, beta, Xa, Y = self.alpha, self.beta, self.Xa, self.Y
        Z = Z.copy()
        u = self.u
        self._ensure_eig(self.pat[np.asarray(idx, dtype=np.intp)])
        sq = self.name == "squared"
        n, d = self.n, self.d
        if sq:
            R = (Z - Y) / n
        for b in idx:
            i, k = self.pat[b], self.out[b]
            lam, Q = self._eig[i]
            Dcol = self.Dw[:, b]
            if sq:
                rk = R[:, k]
            else:
                rk = self.loss.gradient(Z, Y)[:, k]
            g = Xa.T @ (Dcol * rk)
            ub = u[b]
            if ub.any():
                Mu = Q @ (beta * lam * (Q.T @ ub))
                q = g - Mu
            else:
                q = g
            v = _block_prox(beta * lam, Q, q, alpha)
            dv = v - ub
            self.flops += 2 * n * d + 4 * d * d
            if not dv.any():
                continue
            dz = Dcol * (Xa @ dv)
            Z[:, k] += dz
            if sq:
                R[:, k] += dz / n
            u[b] = v
        return Z

    # ------------------------------------------------------------- barrier terms
    def _psi(self, u, mu):
        """Barrier-smoothed penalty of the blocks ``u`` (b, d) at barrier weight ``mu``.

        ``psi(r) = min_{t > r} alpha t - mu log(t^2 - r^2)`` with ``r = ||u_b||``; the
        minimiser is ``t = (mu + s)/alpha``, ``s = sqrt(mu^2 + alpha^2 r^2)``.  Returns
        ``(values, c1, c2)`` with ``grad psi = c1 u`` and ``hess psi = c1 I - c2 u u^T``
        (``c1 = alpha/t``, ``c2 = alpha^2/(s t^2)``; ``c1 - c2 r^2 > 0``).
        """
        a = self.alpha
        r2 = np.einsum("bd,bd->b", u, u)
        s = np.sqrt(mu * mu + a * a * r2)
        t = (mu + s) / a
        val = a * t - mu * np.log(2.0 * mu * t / a)
        c1 = a / t
        c2 = a * a / (s * t * t)
        return val, c1, c2

    # ------------------------------------------------------------- Newton systems
    def _dense_hessian(self, A, curv):
        """Loss Hessian restricted to blocks ``A`` (``|A| d`` square), by row chunks.

        Blocks are grouped by output so that every (output, output) product is one
        GEMM on contiguous columns (the diagonal ones a symmetric rank-k update of the
        rows scaled by the square roots of the curvatures: half the flops); the result
        is permuted back to the order of ``A``.  In mixed precision (``self.mixed``) it
        is formed in float32.
        """
        n, d = self.n, self.d
        A = np.asarray(A)
        m = len(A) * d
        outs = self.out[A]
        order = np.argsort(outs, kind="stable")
        Ao = A[order]
        bounds = np.searchsorted(outs[order], np.arange(self.c + 1))
        groups = [(k, slice(bounds[k] * d, bounds[k + 1] * d)) for k in range(self.c)
                  if bounds[k + 1] > bounds[k]]
        dt = self._hdtype
        H = np.zeros((m, m), dtype=dt)
        rows = max(1, self.chunk_elems // max(m, 1))
        DA = self.Dw[:, Ao]
        Xh = self.Xa.astype(dt, copy=False)
        # per-sample curvatures are >= 0 (logistic p(1-p)/n, softmax diagonal p(1-p)/n)
        sw = np.sqrt(np.maximum(curv.diag, 0.0)).astype(dt)
        for s in range(0, n, rows):
            sl = slice(s, min(n, s + rows))
            Xc = np.multiply(DA[sl, :, None], Xh[sl, None, :], dtype=dt).reshape(-1, m)
            for a, (k, ck) in enumerate(groups):
                Xk = Xc[:, ck]
                Ws = Xk * sw[sl, k:k + 1]
                H[ck, ck] += Ws.T @ Ws  # numpy uses ?syrk for a.T @ a
                if curv.off is not None:
                    for (l, cl) in groups[a + 1:]:
                        blk = Xk.T @ (curv.off[sl, k, l:l + 1].astype(dt) * Xc[:, cl])
                        H[ck, cl] += blk
                        H[cl, ck] += blk.T
        self.flops += n * m * m
        if np.any(order != np.arange(len(A))):
            inv = np.empty(len(A), dtype=np.intp)
            inv[order] = np.arange(len(A))
            ix = (inv[:, None] * d + np.arange(d)[None, :]).ravel()
            H = H[np.ix_(ix, ix)]
        return H

    def _uncached_columns(self):
        """Columns of the working set's squared-loss Hessian not yet in ``_hc``."""
        keys = self.pat * self.c + self.out
        return int((~np.isin(keys, self._hc_keys)).sum()) * self.d

    def _ws_hessian(self):
        """Squared-loss Hessian ``J_W^T J_W / n`` of the working set, in its block order.

        Only the rows of blocks not seen in earlier working sets are computed (``n
        |new| d |cache| d`` flops, blocks of different outputs do not couple); the
        cache is restarted when it would exceed ``MAX_DENSE_SIDE`` columns.
        """
        n, d, c = self.n, self.d, self.c
        keys = self.pat * c + self.out
        new = np.setdiff1d(keys, self._hc_keys)
        if new.size:
            dt = self._hdtype
            if (self._hc_keys.size + new.size) * d > MAX_DENSE_SIDE:
                self._hc_keys, self._hc = np.empty(0, dtype=np.intp), np.zeros((0, 0), dtype=dt)
                new = np.unique(keys)
            old_m = self._hc_keys.size * d
            all_keys = np.concatenate([self._hc_keys, new])
            m = all_keys.size * d
            H = np.zeros((m, m), dtype=dt)
            Xh = self.Xa.astype(dt, copy=False)
            H[:old_m, :old_m] = self._hc
            outs = all_keys % c
            is_new = np.arange(all_keys.size) >= self._hc_keys.size
            for k in np.unique(outs[is_new]):
                bk = np.flatnonzero(outs == k)  # every cached or new block of output k
                nk = bk[is_new[bk]]
                cols = (bk[:, None] * d + np.arange(d)).ravel()
                ncols = (nk[:, None] * d + np.arange(d)).ravel()
                pats_new = all_keys[nk] // c
                ok = bk[~is_new[bk]]
                ocols = (ok[:, None] * d + np.arange(d)).ravel()
                pats_old = all_keys[ok] // c
                rows = max(1, self.chunk_elems // max(cols.size, 1))
                hnn = np.zeros((ncols.size, ncols.size), dtype=dt)
                hno = np.zeros((ncols.size, ocols.size), dtype=dt)
                def masked(sl, pats):
                    """Rows ``sl`` of ``[D_i Xa for i in pats]`` (rows, len(pats) d)."""
                    Dm = self.D[sl][:, pats].astype(dt)
                    return (Dm[:, :, None] * Xh[sl][:, None, :]).reshape(Dm.shape[0], -1)

                for s in range(0, n, rows):
                    sl = slice(s, min(n, s + rows))
                    Jnew = masked(sl, pats_new)
                    hnn += Jnew.T @ Jnew  # numpy uses a symmetric rank-k update here
                    if ok.size:
                        hno += Jnew.T @ masked(sl, pats_old)
                H[np.ix_(ncols, ncols)] = hnn / n
                if ok.size:
                    H[np.ix_(ncols, ocols)] = hno / n
                    H[np.ix_(ocols, ncols)] = hno.T / n
                self.flops += n * ncols.size * (ncols.size / 2.0 + ocols.size)
            self._hc_keys, self._hc = all_keys, H
        pos = np.searchsorted(self._hc_keys, keys, sorter=np.argsort(self._hc_keys))
        pos = np.argsort(self._hc_keys)[pos]
        ix = (pos[:, None] * d + np.arange(d)).ravel()
        return self._hc[np.ix_(ix, ix)]

    def _hessian(self, A, curv):
        """Loss Hessian on blocks ``A``; for the squared loss the Hessian of the whole
        working set is formed once per working set (reusing the blocks of earlier
        working sets) and sliced."""
        if self.name != "squared" or len(self.pat) * self.d > MAX_DENSE_SIDE:
            return self._dense_hessian(A, curv)
        if self._hcache is None:
            self._hcache = self._ws_hessian()
        if len(A) == len(self.pat):
            return self._hcache
        ix = (np.asarray(A)[:, None] * self.d + np.arange(self.d)[None, :]).ravel()
        return self._hcache[np.ix_(ix, ix)]

    def _factor_dense(self, A, curv, uA, c1, c2):
        """Factor ``H_AA + blockdiag(c1 I - c2 u u^T)`` (Jacobi-scaled Cholesky);
        returns ``solve(rhs)`` for rhs of shape (|A|, d), or None."""
        d = self.d
        m = len(A) * d
        H = self._hessian(A, curv)
        K = H.copy()  # float32 in mixed precision (then a preconditioner for CG, see _factor)
        idx = np.arange(m)
        K[idx, idx] += np.repeat(c1, d)
        for j in np.flatnonzero(c2 > 0):
            sl = slice(j * d, (j + 1) * d)
            K[sl, sl] -= c2[j] * np.outer(uA[j], uA[j])
        dg = np.diag(K).copy()
        dmax = float(dg.max(initial=0.0))
        if not dmax > 0:
            return None
        s = 1.0 / np.sqrt(np.maximum(dg.astype(np.float64), 1e-300 + 1e-14 * dmax))
        K *= s[:, None].astype(K.dtype)
        K *= s[None, :].astype(K.dtype)
        self.flops += m ** 3 / 3.0
        ridge = 0.0
        while True:
            try:
                Kr = K
                if ridge:
                    Kr = K.copy()
                    Kr[idx, idx] += ridge
                cf = sla.cho_factor(Kr, lower=False, check_finite=False)
                if np.all(np.isfinite(cf[0].diagonal())):
                    break
            except (np.linalg.LinAlgError, sla.LinAlgError, ValueError):
                pass
            ridge = (1e-13 if K.dtype == np.float64 else 1e-6) if ridge == 0 else ridge * 100.0
            if ridge > 1e-2:
                return None

        def solve(rhs):
            x = _cho_solve(cf, (rhs.ravel() * s).astype(K.dtype, copy=False))
            return (x * s).reshape(len(A), d)

        solve.single = K.dtype == np.float32
        return solve

    def _solve_cg(self, A, grad, curv, uA, c1, c2, max_cg=300):
        """Matrix-free solve of the same system by block-Jacobi preconditioned CG.

        Inexact Newton: CG stops at the relative residual ``self.cg_rtol`` (set from
        the current restricted gap, Eisenstat-Walker style) or after ``max_cg``
        iterations; CG iterates started from 0 are descent directions."""
        rtol = self.cg_rtol
        # block preconditioner: (w_b G_i + c1 I - c2 u u^T)^{-1}, w_b the mean
        # curvature of the block's samples (exact blocks for the squared loss)
        self._ensure_eig(self.pat[A])
        DA = self.Dw[:, A]
        cnt = np.maximum(DA.sum(axis=0), 1.0)
        wb = (DA * curv.diag[:, self.out[A]]).sum(axis=0) / cnt * self.n
        lam = np.stack([self._eig[i][0] for i in self.pat[A]])
        Q = np.stack([self._eig[i][1] for i in self.pat[A]])
        lamc = wb[:, None] * lam + c1[:, None]
        uq = np.einsum("bdk,bd->bk", Q, uA)
        wq = uq / lamc
        denom = 1.0 - c2 * np.einsum("bk,bk->b", uq, wq)
        denom = np.where(denom > 1e-300, denom, 1e-300)

        def precond(r):
            rq = np.einsum("bdk,bd->bk", Q, r)
            a = rq / lamc
            a += (c2 * np.einsum("bk,bk->b", wq, rq) / denom)[:, None] * wq
            return np.einsum("bdk,bk->bd", Q, a)

        def hvp(v):
            Hv = self.grads_w(curv.apply(self.forward_w(A, v)), A)
            Hv += c1[:, None] * v - (c2 * np.einsum("bd,bd->b", uA, v))[:, None] * uA
            return Hv

        b = -grad
        x = np.zeros_like(b)
        r = b.copy()
        z = precond(r)
        p = z.copy()
        rz = float(np.vdot(r, z))
        if not rz > 0:
            return None
        r0 = np.sqrt(rz)
        for k_cg in range(max_cg):
            Ap = hvp(p)
            pAp = float(np.vdot(p, Ap))
            if not pAp > 0:
                break
            a = rz / pAp
            x += a * p
            r -= a * Ap
            z = precond(r)
            rz_new = float(np.vdot(r, z))
            if np.sqrt(max(rz_new, 0.0)) <= rtol * r0:
                break
            p = z + (rz_new / rz) * p
            rz = rz_new
        if self.verbose >= 3:
            print(f"      cg: {k_cg + 1} iterations, rel. residual {np.sqrt(max(rz_new, 0)) / r0:.2e}")
        return x if np.any(x) else None

    def cheap_blocks(self, budget):
        """Largest number of blocks whose direct Newton solve costs ``<= budget`` flops."""
        n, d = self.n, self.d
        k_dual = 0
        if n <= self.max_dual_n:
            k_dual = int(max(0.0, (budget - n ** 3 / 3.0) / (2.0 * n * n)))
        # dense: n (k d)^2 + (k d)^3 / 3 <= budget
        m = 1.0
        while n * (2 * m) ** 2 + (2 * m) ** 3 / 3.0 <= budget:
            m *= 2
        k_dense = int(m // d)
        return max(k_dual, k_dense)

    def _kernel(self):
        if self._K0 is None:
            self._K0 = self.Xa @ self.Xa.T
            self.flops += self.n * self.n * self.d
        return self._K0

    def _factor_woodbury(self, A, curv, uA, c1, c2):
        """Factor the Newton system in sample space (Woodbury), for diagonal curvature.

        With ``B = blockdiag(c1 I - c2 u u^T)`` (inverted per block by Sherman-Morrison)
        and ``J`` the curvature-weighted restricted design (per output ``k``, columns
        ``sqrt(w_k) D_i Xa``), ``(B + J^T J)^{-1} = B^{-1} - B^{-1} J^T M^{-1} J B^{-1}``
        with ``M = I + J B^{-1} J^T = I + K0 o (S C S^T) + V G V^T`` (``K0 = Xa Xa^T``,
        ``S`` the weighted masks, ``V`` the weighted block outputs): ``O(n^2 |A|)``
        flops instead of ``O((|A| d)^3)``.

        Blocks whose radial curvature ``c1 - c2 r^2`` is (nearly) zero -- all blocks
        of the exact penalty Hessian of the manifold step -- would make ``B^{-1}``
        huge; for them ``B = c1 I - g uhat uhat^T`` (``g = c2 r^2``) keeps ``c1 I`` in
        the base and the radial term joins the low-rank part.  The capacitance
        matrix is then the saddle point ``[[M, E], [E^T, diag(1/c1 - 1/g)]]``
        (``E = J uhat / c1``), solved through ``M`` and the Schur complement
        ``E^T M^{-1} E + diag(1/g - 1/c1)`` (positive definite): exact, with no
        floor on the curvature.  Returns ``solve(rhs)`` or None.
        """
        K0 = self._kernel()
        n = self.n
        r2 = np.einsum("bd,bd->b", uA, uA)
        den = c1 - c2 * r2
        ic1 = 1.0 / c1
        # (nearly) flat radial directions: treated exactly in the capacitance matrix
        flat = den < FLAT_RADIAL * c1
        gam = np.where(flat, 0.0, c2 / np.where(flat, 1.0, den))
        outs = self.out[A]
        parts = []
        for k in np.unique(outs):
            sel = np.flatnonzero(outs == k)
            Ak = A[sel]
            u_k = uA[sel]
            sw = np.sqrt(curv.diag[:, k])
            S = self.Dw[:, Ak] * sw[:, None]
            V = (self.Xa @ u_k.T) * S
            ic, gm, fl = ic1[sel], gam[sel], flat[sel]
            # only the upper triangle is formed and read (symmetric rank-k updates)
            M = K0 * _gram_upper(S, ic)
            if not fl.all():
                M += _gram_upper(V[:, ~fl], ic[~fl] * gm[~fl])
            M[np.diag_indices(n)] += 1.0
            self.flops += 2 * n * n * len(sel) + n ** 3 / 3.0 + n * self.d * len(sel)
            dg = np.sqrt(np.diag(M))
            M /= dg[:, None]
            M /= dg[None, :]
            try:
                cf = sla.cho_factor(M, lower=False, check_finite=False, overwrite_a=True)
            except (np.linalg.LinAlgError, sla.LinAlgError, ValueError):
                return None

            def minv(R, cf=cf, dg=dg):
                return _cho_solve(cf, R / (dg if R.ndim == 1 else dg[:, None])) / (
                    dg if R.ndim == 1 else dg[:, None])

            schur = None
            if fl.any():
                r = np.sqrt(r2[sel][fl])
                uhat = u_k[fl] / r[:, None]
                E = V[:, fl] / (r * c1[sel][fl])
                ME = minv(E)
                g = c2[sel][fl] * r2[sel][fl]
                # 1/g - 1/c1 >= 0 on flat blocks (rounding may leave it slightly negative)
                t = np.maximum(1.0 / np.maximum(g, 1e-300) - ic[fl], 0.0)
                Sc = E.T @ ME
                Sc[np.diag_indices_from(Sc)] += t
                self.flops += 2 * n * n * fl.sum() + n * fl.sum() ** 2 + fl.sum() ** 3 / 3.0
                ds = np.sqrt(np.maximum(np.diag(Sc), 1e-300))
                Sc /= ds[:, None]
                Sc /= ds[None, :]
                Sc[np.diag_indices_from(Sc)] += 1e-13
                try:
                    cs = sla.cho_factor(Sc, lower=False, check_finite=False, overwrite_a=True)
                except (np.linalg.LinAlgError, sla.LinAlgError, ValueError):
                    return None
                schur = (uhat, E, ME, ds, cs)
            parts.append((sel, S, u_k, ic, gm, fl, minv, schur))

        def solve(rhs):
            x = np.empty_like(rhs)
            for sel, S, u_k, ic, gm, fl, minv, schur in parts:
                def binv(R):
                    return ic[:, None] * (R + (gm * np.einsum("bd,bd->b", u_k, R))[:, None] * u_k)
                y = binv(rhs[sel])
                z = minv(np.einsum("nb,nb->n", S, self.Xa @ y.T))
                if schur is not None:
                    uhat, E, ME, ds, cs = schur
                    b = np.einsum("bd,bd->b", uhat, y[fl])
                    w = _cho_solve(cs, (E.T @ z - b) / ds) / ds
                    z = z - ME @ w
                corr = (self.Xa.T @ (S * z[:, None])).T
                if schur is not None:
                    corr[fl] += w[:, None] * uhat
                x[sel] = y - binv(corr)
            return x

        return solve

    def _factor_woodbury_full(self, A, curv, uA, c1, c2):
        """Sample-space (Woodbury) factorisation for the cross-entropy curvature.

        Per sample the curvature ``(diag p - p p^T)/n = L_j L_j^T`` with
        ``L_j = (diag(sqrt p) - p sqrt(p)^T)/sqrt(n)``, so ``J`` has ``n c`` rows and
        ``M = I + J B^{-1} J^T = I + sum_k diag(l_k) (T_k kron 1 1^T) diag(l_k)``
        with ``T_k`` the (unweighted) kernel of the blocks of output ``k``:
        ``O(n^2 |A| + (n c)^3)`` flops instead of ``O((|A| d)^3)``.
        """
        K0 = self._kernel()
        n, c = self.n, self.c
        Pr = curv.probs
        sq = np.sqrt(Pr)
        # L[j, k, a] = sq[j, a] (delta_ka - p[j, k]) / sqrt(n)
        L = (np.eye(c)[None, :, :] - Pr[:, :, None]) * sq[:, None, :] / np.sqrt(n)
        r2 = np.einsum("bd,bd->b", uA, uA)
        den = np.maximum(c1 - c2 * r2, 1e-6 * c1)
        ic1 = 1.0 / c1
        gam = c2 / den
        outs = self.out[A]
        nc = n * c
        M = np.zeros((nc, nc))
        for k in np.unique(outs):
            sel = np.flatnonzero(outs == k)
            Sk = self.Dw[:, A[sel]]
            V = (self.Xa @ uA[sel].T) * Sk
            T = K0 * ((Sk * ic1[sel]) @ Sk.T)
            T += (V * (ic1[sel] * gam[sel])) @ V.T
            lk = L[:, k, :]
            M += (lk[:, :, None, None] * T[:, None, :, None] * lk[None, None, :, :]).reshape(nc, nc)
            self.flops += 2 * n * n * len(sel) + nc * nc
        M[np.diag_indices(nc)] += 1.0
        self.flops += nc ** 3 / 3.0
        dg = np.sqrt(np.diag(M))
        M /= dg[:, None]
        M /= dg[None, :]
        try:
            cf = sla.cho_factor(M, lower=False, check_finite=False, overwrite_a=True)
        except (np.linalg.LinAlgError, sla.LinAlgError, ValueError):
            return None

        def binv(R):
            return ic1[:, None] * (R + (gam * np.einsum("bd,bd->b", uA, R))[:, None] * uA)

        def solve(rhs):
            y = binv(rhs)
            q = self.forward_w(A, y)  # (n, c)
            Jy = np.einsum("jka,jk->ja", L, q).ravel()
            z = (_cho_solve(cf, Jy / dg) / dg).reshape(n, c)
            Lz = np.einsum("jka,ja->jk", L, z)
            return y - binv(self.grads_w(Lz, A))

        return solve

    def _hvp(self, A, curv, uA, c1, c2, v):
        Hv = self.grads_w(curv.apply(self.forward_w(A, v)), A)
        Hv += c1[:, None] * v - (c2 * np.einsum("bd,bd->b", uA, v))[:, None] * uA
        return Hv

    def _direction(self, A, grad, curv, uA, c1, c2, reuse=False):
        """Newton direction ``-(H_AA + blockdiag(c1 I - c2 u u^T))^{-1} grad``.

        With ``reuse``, the last direct factorisation on the same blocks preconditions
        CG first (:meth:`_pcg_stale`); a new factorisation is made only when that fails.
        """
        if reuse:
            x = self._pcg_stale(A, grad, curv, uA, c1, c2)
            if x is not None:
                return x
        return self._factor(A, curv, uA, c1, c2)(-grad)

    def _pcg_stale(self, A, grad, curv, uA, c1, c2):
        """Solve the Newton system by CG preconditioned with an earlier factorisation.

        Successive manifold Newton steps on the same blocks change only the penalty
        curvature (block diagonal) and, for nonlinear losses, the sample weights, so
        the previous factorisation ``K_old^{-1}`` is a close preconditioner of the new
        system ``K`` (exact matrix-free products).  CG may spend at most half the
        flops of a new factorisation; returns ``None`` when it does not reach the
        relative residual ``0.1 x`` the restricted gap (inexact-Newton forcing term;
        at most 1e-2) within that budget, or stagnates early.
        """
        rtol = float(np.clip(0.1 * self._rgap, 1e-12, 1e-2))
        if self._stale is None:
            return None
        A0, base, fact_cost, solve_cost = self._stale
        if A0.shape != np.shape(A) or not np.array_equal(A0, A):
            return None
        it_cost = 4.0 * self.n * self.d * len(A) + solve_cost
        cap = int(min(40, 0.5 * fact_cost / (CG_FLOP_PENALTY * it_cost)))
        if cap < 2:
            return None
        b = -grad
        r0 = float(np.linalg.norm(b))
        if not r0 > 0:
            return None
        x = np.zeros_like(b)
        r = b.copy()
        z = base(r)
        p = z.copy()
        rz = float(np.vdot(r, z))
        for k in range(cap):
            Ap = self._hvp(A, curv, uA, c1, c2, p)
            pAp = float(np.vdot(p, Ap))
            self.flops += it_cost
            if not (pAp > 0 and rz > 0):
                return None
            a = rz / pAp
            x += a * p
            r -= a * Ap
            rn = float(np.linalg.norm(r))
            if rn <= rtol * r0:
                if self.verbose >= 3:
                    print(f"      stale-factor CG: {k + 1} iterations")
                return x
            if k >= 4 and rn > 1e-3 * r0:
                return None
            z = base(r)
            rz_new = float(np.vdot(r, z))
            p = z + (rz_new / rz) * p
            rz = rz_new
        return None

    # ------------------------------------------------------------- barrier Newton step
    def barrier_step(self, Z, G, mu):
        """Damped Newton step on ``L + sum_b psi_mu(||u_b||)`` over the working set.

        Returns ``(Z, lambda^2)`` with ``lambda^2`` the Newton decrement (0 on failure).
        """
        u = self.u
        allb = np.arange(len(self.pat))
        if self.alpha > 0:
            val, c1, c2 = self._psi(u, mu)
        else:
            val, c1, c2 = np.zeros(len(u)), np.zeros(len(u)), np.zeros(len(u))
        grad = G + c1[:, None] * u
        curv = _Curvature(self.name, Z, self.Y)
        delta = self._direction(allb, grad, curv, u, c1, c2)
        if delta is None:
            return Z, 0.0
        lam2 = -float(np.vdot(grad, delta))
        if not lam2 > 0:
            return Z, 0.0
        dZ = self.forward_w(allb, delta)
        phi0 = self.loss.value(Z, self.Y) + float(val.sum())
        slack = 1e-13 * max(abs(phi0), 1e-300)
        step = 1.0
        for _ in range(60):
            ut = u + step * delta
            Zt = Z + step * dZ
            pv = self._psi(ut, mu)[0].sum() if self.alpha > 0 else 0.0
            phi = self.loss.value(Zt, self.Y) + float(pv)
            if phi <= phi0 - 1e-4 * step * lam2 + slack:
                self.u = ut
                if self.verbose >= 3:
                    print(f"      barrier mu={mu:.3e} step={step:.3g} lambda^2={lam2:.3e}")
                return Zt, lam2
            step *= 0.5
        return Z, 0.0

    # ------------------------------------------------------------- manifold Newton
    def manifold_step(self, Z, G):
        """Newton step on the active manifold (exact penalty Hessian) of the nonzero
        blocks, with an Armijo search on the true objective along the projected path
        (a block whose radial coordinate turns non-positive is set to zero, the
        group analogue of the orthant projection of OWL-QN).  Returns ``(Z, ok)``."""
        A = np.flatnonzero(self.u.any(axis=1))
        if A.size == 0:
            return Z, 0.0
        uA = self.u[A]
        r = np.sqrt(np.einsum("bd,bd->b", uA, uA))
        c1 = self.alpha / r
        # exact penalty Hessian c1 (I - uhat uhat^T), plus a radial curvature of
        # MANIFOLD_RADIAL_REG c1: with more active blocks than samples the exact Newton
        # system is singular (radial combinations in the null space of the design)
        c2 = self.alpha / r ** 3 * (1.0 - MANIFOLD_RADIAL_REG)
        grad = G[A] + self.alpha / r[:, None] * uA
        curv = _Curvature(self.name, Z, self.Y)
        delta = self._direction(A, grad, curv, uA, c1, c2, reuse=True)
        if delta is None:
            return Z, 0.0
        dd = float(np.vdot(grad, delta))
        if not dd < 0:
            return Z, 0.0
        rad1 = np.einsum("bd,bd->b", uA, delta) / r
        XU = self.Xa @ uA.T
        XU *= self.Dw[:, A]
        XD = self.Xa @ delta.T
        XD *= self.Dw[:, A]
        self.flops += 2 * self.n * self.d * len(A)
        OA = self.onehot[A]
        Z_rest = Z - XU @ OA
        F0 = self.value(Z, self.u)
        slack = 1e-13 * max(abs(F0), 1e-300)
        t = 1.0
        for _ in range(30):
            keep = r + t * rad1 > 0
            V = uA + t * delta
            V[~keep] = 0.0
            Zt = Z_rest + ((XU + t * XD) * keep) @ OA
            Ft = self.value(Zt, V)
            if Ft <= F0 + 1e-4 * t * dd + slack:
                self.u[A] = V
                if self.verbose >= 3:
                    print(f"      manifold Newton t={t:.3g} decrease={F0 - Ft:.3e} "
                          f"zeroed {int((~keep).sum())}")
                return Zt, t
            t *= 0.5
        return Z, 0.0

    def _state(self, Z):
        R = self.loss.gradient(Z, self.Y)
        G = self.grads_w(R)
        gn = np.sqrt(np.einsum("bd,bd->b", G, G))
        F = self.value(Z, self.u)
        rgap = self.restricted_gap(F, R, gn)
        # forcing term of the inexact (CG) Newton solves
        self.cg_rtol = float(np.clip(0.1 * np.sqrt(rgap), 1e-10, 0.1))
        self._rgap = rgap
        return G, F, rgap

    def zero_candidates(self, Z, G):
        """Nonzero blocks ``b`` with ``||g_b - H_bb u_b|| <= alpha``: their exact block
        minimiser (quadratic model with the current curvature) is zero."""
        A = np.flatnonzero(self.u.any(axis=1))
        if A.size == 0:
            return A
        curv = _Curvature(self.name, Z, self.Y)
        XU = self.Xa @ self.u[A].T
        XU *= self.Dw[:, A] * curv.diag[:, self.out[A]]
        Hu = (self.Xa.T @ XU).T
        self.flops += 2 * self.n * self.d * A.size
        q = G[A] - Hu
        return A[np.einsum("bd,bd->b", q, q) <= self.alpha ** 2]

    def polish(self, Z, G, target, max_steps=6):
        """Active-set finish: manifold Newton alternated with exact BCD activation.

        First the blocks whose exact block minimiser (given the other blocks, with
        the current loss curvature) is zero are set to zero
        (:meth:`zero_candidates`).  Then each step is a manifold Newton step on the
        nonzero blocks followed by block-majorisation steps on the zero blocks
        whose dual constraint is violated.  Stops when the restricted gap reaches
        ``target`` or stops improving.  Returns ``(Z, rgap, steps, ok)``; when the
        objective or the gap got worse than at the start, the state is restored.
        """
        u_save = self.u.copy()
        Z_save = Z
        F0 = self.value(Z, self.u)
        rgap0 = self._state(Z)[2]
        idx = self.zero_candidates(Z, G)
        if idx.size:
            Z = Z - self.forward_w(idx, self.u[idx])
            self.u[idx] = 0.0
        G, F, rgap = self._state(Z)
        steps = 0
        best = rgap
        stall = 0
        while steps < max_steps and rgap > target:
            Z, t = self.manifold_step(Z, G)
            ok = t >= 0.5  # a damped manifold step: far from the quadratic regime
            steps += 1
            G, F, rgap = self._state(Z)
            gn = np.sqrt(np.einsum("bd,bd->b", G, G))
            viol = np.flatnonzero(~self.u.any(axis=1) & (gn > self.alpha * (1 + 1e-12)))
            if viol.size and rgap > target:
                Z = self.bcd_sweep(Z, viol[np.argsort(-gn[viol])])
                G, F, rgap = self._state(Z)
            if self.verbose >= 2:
                print(f"    [ws polish] step {steps}  F {F:.12g}  restricted gap {rgap:.3e}  "
                      f"activated {viol.size}")
            if rgap < 0.5 * best:
                best, stall = rgap, 0
            else:
                stall += 1
                if stall >= 2 or not ok:
                    break
        if rgap <= target:
            return Z, rgap, steps, True
        if F <= F0 and rgap <= rgap0:
            return Z, rgap, steps, False
        self.u = u_save
        return Z_save, rgap0, steps, False

    # ------------------------------------------------------------- restricted solve
    def solve_restricted(self, Z, inner_tol, budget, kappa=5.0, polish_below=1e-3,
                         center=0.1, patience=15, method="pd"):
        """Solve on the working set until the restricted relative gap is ``<= inner_tol``.

        1. Warm start (some blocks nonzero): exact block steps on the violated zero
           blocks, then one active-set attempt (:meth:`polish`) -- enough when the
           support is nearly known (e.g. a few blocks added to the previous round).
        2. ``method="pd"``: primal-dual interior point (:meth:`pd_solve`).
        3. If it stalls (or ``method="barrier"``): barrier path following
           (:meth:`barrier_step`) from the best point; ``mu`` starts at ``gap/|W|``
           and is divided by ``kappa`` once the Newton decrement satisfies
           ``lambda^2 <= 2 center |W| mu`` (the barrier's own gap is about ``|W| mu``),
           down to a floor where that gap is negligible; once the gap is below
           ``polish_below`` an active-set finish is tried whenever the gap has
           dropped tenfold.  ``patience`` iterations without progress at the floor
           set ``self.stalled`` (floating-point noise floor).
        Returns ``(Z, n_iter, restricted_rel_gap)``.
        """
        nW = len(self.pat)
        it = 0
        mu = None
        rgap = np.inf
        polish_gap = np.inf
        self.stalled = False
        if self.alpha > 0 and self.u.any() and budget > 0:
            G, F, rgap = self._state(Z)
            if rgap <= inner_tol:
                return Z, it, rgap
            gn = np.sqrt(np.einsum("bd,bd->b", G, G))
            viol = np.flatnonzero(~self.u.any(axis=1) & (gn > self.alpha))
            if viol.size:
                Z = self.bcd_sweep(Z, viol[np.argsort(-gn[viol])])
                G, F, rgap = self._state(Z)
            it += 1
            Z, rgap, k, ok = self.polish(Z, G, inner_tol, max_steps=min(6, budget - it))
            it += k
            if ok:
                return Z, it, rgap
        if method == "pd" and self.alpha > 0:
            Z, k, rgap = self.pd_solve(Z, inner_tol, budget - it, polish_below=polish_below,
                                       patience=patience)
            it += k
            if rgap <= inner_tol or not self.pd_failed:
                return Z, it, rgap
            if self.verbose:
                print(f"    [ws] primal-dual steps stalled at gap {rgap:.3e}; barrier fallback")
        best = (np.inf, None, None)
        since_best = 0
        while it < budget:
            G, F, rgap = self._state(Z)
            if self.verbose >= 2:
                print(f"    [ws inner] it {it:4d}  |W| {nW:5d}  F {F:.12g}  "
                      f"restricted gap {rgap:.3e}  mu {mu if mu is not None else 0:.3e}")
            if rgap <= inner_tol:
                break
            mu_floor = 1e-3 * inner_tol * abs(F) / max(nW, 1)
            if rgap < 0.9 * best[0]:
                best, since_best = (rgap, self.u.copy(), Z), 0
            elif mu is not None and mu <= 1.5 * mu_floor:
                # stall counter: only once mu has reached its floor
                since_best += 1
                if since_best >= patience:
                    # no progress: the gap is at the floating-point noise floor of this
                    # (very ill-conditioned) problem; return the best point seen
                    self.stalled = True
                    if rgap > best[0]:
                        rgap, self.u, Z = best
                    if self.verbose:
                        print(f"    [ws inner] stalled at restricted gap {rgap:.3e}")
                    break
            if mu is None:
                mu = max(rgap * abs(F) / max(nW, 1), 1e-300)
            if self.alpha > 0 and rgap <= min(polish_below, polish_gap):
                Z, rgap, k, ok = self.polish(Z, G, inner_tol, max_steps=min(6, budget - it))
                it += k
                if ok:
                    return Z, it, rgap
                polish_gap = 0.1 * rgap  # retry once the gap has dropped tenfold
                if it >= budget:
                    break
                G, F, rgap = self._state(Z)
            it += 1
            Z, lam2 = self.barrier_step(Z, G, mu)
            if self.alpha == 0 and lam2 <= 1e-15 * abs(F):
                # unregularised: a stationary point is all Newton can give (the gap
                # certificate needs alpha > 0 unless the loss reaches its infimum)
                self.stalled = True
                break
            # mu is not decreased below the level where the barrier's own gap
            # (about |W| mu) is negligible against the target
            if lam2 <= 2.0 * center * nW * mu:
                mu = max(mu / kappa, mu_floor)
        return Z, it, rgap

    # ------------------------------------------------------------- primal-dual IPM
    def _factor(self, A, curv, vecs, c1, c2):
        """Factor ``K = H_AA + blockdiag(c1 I - c2 v v^T)``; returns ``solve(rhs) = K^{-1} rhs``.

        ``H_AA`` is the loss Hessian on the blocks ``A``.  Back ends, cheapest first
        among those costing less than ``max(dense_flops, ~200 CG iterations)``:
        sample-space Woodbury factorisation (``n <= max_dual_n``; preferred only
        when 2x cheaper, the Jacobi-scaled block-space Cholesky being numerically
        more robust), dense block-space Cholesky, and otherwise block-Jacobi
        preconditioned CG.  Direct solves get up to 3 steps of iterative refinement
        with exact matrix-vector products (down to the relative residual
        ``REFINE_RTOL``); a factorisation whose first solve, unrefined, leaves a
        relative residual above ``PROBE_RESIDUAL`` (ill-conditioning) is replaced by
        the next back end.  Back ends are factored lazily, at the first solve.
        """
        m = len(A) * self.d
        n = self.n
        if self.name == "squared":
            mw = len(self.pat) * self.d
            # formed once per working set, reused by every Newton step of the round
            form = 0.0 if self._hcache is not None else n * mw * self._uncached_columns() / 10.0
        else:
            form = n * m * m
        primal_cost = form + m ** 3 / 3.0
        if self.mixed:
            primal_cost *= 0.5  # float32 GEMM and Cholesky (CG refinement is cheap)
        if curv.off is None:
            woodbury, dual_ok = self._factor_woodbury, n <= self.max_dual_n
            dual_cost = 2.0 * n * n * len(A) + self.c * n ** 3 / 3.0
        else:
            woodbury, dual_ok = self._factor_woodbury_full, n * self.c <= self.max_dual_n
            dual_cost = 2.0 * n * n * len(A) + (n * self.c) ** 3 / 3.0 + self.c ** 3 * n * n
        if not dual_ok:
            dual_cost = np.inf
        order = []
        # direct solves when cheaper than ~200 CG iterations (or within dense_flops)
        budget = max(self.dense_flops, CG_FLOP_PENALTY * 400.0 * n * m) if self.dense_flops > 0 else 0.0
        if dual_cost <= budget and 2.0 * dual_cost < primal_cost:
            order.append(woodbury)
        if primal_cost <= budget and m <= MAX_DENSE_SIDE:
            order.append(self._factor_dense)
        if dual_cost <= budget and woodbury not in order:
            order.append(woodbury)

        def hvp(v):
            return self._hvp(A, curv, vecs, c1, c2, v)

        def solve_cg(rhs):
            x = self._solve_cg(A, -rhs, curv, vecs, c1, c2)
            return np.zeros_like(rhs) if x is None else x

        state = {"base": None, "pending": list(order)}

        def next_base():
            """Factor with the next back end in ``order`` (None when none is left)."""
            while state["pending"]:
                factor = state["pending"].pop(0)
                base = factor(A, curv, vecs, c1, c2)
                if base is None:
                    continue
                if factor is self._factor_dense:
                    cost, solve_cost = primal_cost, 2.0 * m * m
                else:
                    cost, solve_cost = dual_cost, 2.0 * self.c * n * n + 4.0 * n * m
                return base, cost, solve_cost
            return None

        def solve(rhs):
            """``K^{-1} rhs`` refined with exact products.

            The factorisation is verified on its first use: an unrefined relative
            residual above ``PROBE_RESIDUAL`` (ill-conditioning) moves on to the next
            back end (finally CG) -- no separate probe solve is paid for.  A float64
            factor is refined by up to 3 steps of iterative refinement (while each
            gains 4x), a float32 one (mixed precision) by CG preconditioned with it;
            a float32 factor that does not bring the residual to ``MIXED_ACCEPT``
            switches the solver to float64 (:meth:`_disable_mixed`).
            """
            rn0 = float(np.linalg.norm(rhs))
            if not rn0 > 0:
                return np.zeros_like(rhs)
            while True:
                if state["base"] is None:
                    got = next_base()
                    if got is None:
                        return solve_cg(rhs)
                    state["base"], cost, solve_cost = got
                    state["new"] = (cost, solve_cost)
                base = state["base"]
                single = getattr(base, "single", False)
                x = base(rhs)
                res = rhs - hvp(x)
                rn = float(np.linalg.norm(res))
                ok = bool(np.all(np.isfinite(x)))
                if single:
                    if ok and rn <= MIXED_PROBE_RESIDUAL * rn0:
                        x, rn = _pcg(hvp, base, x, res, rn, REFINE_RTOL * rn0, MIXED_MAX_CG)
                    ok = ok and rn <= MIXED_ACCEPT * rn0
                    if not ok:
                        self._disable_mixed()
                        state["pending"].insert(0, self._factor_dense)
                        state["base"] = None
                        state.pop("new", None)
                        continue
                elif "new" in state and not (ok and rn <= PROBE_RESIDUAL * rn0):
                    state["base"] = None
                    del state["new"]
                    continue
                if "new" in state:
                    cost, solve_cost = state.pop("new")
                    self._stale = (np.array(A, copy=True), base, cost, solve_cost)
                if single:
                    return x
                break
            # refinement: until REFINE_RTOL, while each step gains at least 4x
            for _ in range(3):
                if rn <= REFINE_RTOL * rn0:
                    break
                x_new = x + base(res)
                res_new = rhs - hvp(x_new)
                rn_new = float(np.linalg.norm(res_new))
                if not rn_new < rn:
                    break
                gain = rn / rn_new
                x, res, rn = x_new, res_new, rn_new
                if gain < 4.0:
                    break
            return x

        return solve

    @staticmethod
    def _soc_max_step(x0, x1, d0, d1):
        """Largest ``a >= 0`` with ``x + a dx`` in the second-order cone (per block)."""
        A = d0 * d0 - np.einsum("bd,bd->b", d1, d1)
        B = x0 * d0 - np.einsum("bd,bd->b", x1, d1)
        r = np.sqrt(np.einsum("bd,bd->b", x1, x1))
        Cc = np.maximum((x0 - r) * (x0 + r), 0.0)
        disc = np.sqrt(np.maximum(B * B - A * Cc, 0.0))
        out = np.full(x0.shape, np.inf)
        neg = A < 0
        with np.errstate(divide="ignore", invalid="ignore"):
            a1 = np.where(B < 0, Cc / (disc - B), (B + disc) / (-A))
            out = np.where(neg, a1, out)
            a2 = Cc / (disc - B)
            out = np.where(~neg & (B < 0), a2, out)
        out = np.where(np.isnan(out), 0.0, out)
        return np.maximum(out, 0.0)

    def pd_solve(self, Z, inner_tol, budget, polish_below=1e-3, patience=15):
        """Primal-dual interior-point (Mehrotra predictor-corrector, Nesterov-Todd
        scaling) on the working set for ``min L + alpha sum t_b, ||u_b|| <= t_b``.

        Dual variables ``s_b = (alpha, z_b)`` (``||z_b|| < alpha``; the first entry is
        fixed by the ``t`` equation).  Eliminating ``t`` and ``z`` leaves the
        Newton system ``(H + blockdiag(Theta_b)) du = rhs`` with ``Theta_b = eta^2
        (I - 8 (1 + rho)/(1 + 8 rho + 8 rho^2) v v^T)`` (``W = eta (2 v v^T - J)``
        the NT scaling of block ``b``, ``rho = ||v_1||^2``): the same structure as
        the barrier system, solved by the same back ends (one factorisation, two
        solves per iteration).  Stops on the restricted gap computed from the data
        (not from ``z``); tries the active-set finish below ``polish_below``.
        """
        alpha = self.alpha
        nb = len(self.pat)
        it = 0
        self.pd_failed = False
        G, F, rgap = self._state(Z)
        if rgap <= inner_tol:
            return Z, it, rgap
        u = self.u
        r = np.sqrt(np.einsum("bd,bd->b", u, u))
        gn = np.sqrt(np.einsum("bd,bd->b", G, G))
        mu0 = max(rgap * abs(F) / max(nb, 1), 1e-300)
        z = G * np.minimum(1.0, 0.9 * alpha / np.maximum(gn, 1e-300))[:, None]
        t = r + mu0 / alpha
        best = (rgap, u.copy(), Z)
        since_best = 0
        polish_gap = np.inf
        while it < budget:
            if self.verbose >= 2:
                mu = float((alpha * t + np.einsum("bd,bd->b", self.u, z)).sum()) / nb
                print(f"    [ws pd] it {it:4d}  |W| {nb:5d}  F {F:.12g}  restricted gap "
                      f"{rgap:.3e}  mu {mu:.3e}")
            if alpha > 0 and rgap <= min(polish_below, polish_gap):
                Zp, rg, k, ok = self.polish(Z, G, inner_tol, max_steps=min(6, budget - it))
                it += k
                if ok:
                    return Zp, it, rg
                polish_gap = 0.1 * rgap
                if Zp is not Z:
                    # polish kept an improved point: restart the dual variables there
                    Z = Zp
                    G, F, rgap = self._state(Z)
                    u = self.u
                    r = np.sqrt(np.einsum("bd,bd->b", u, u))
                    gn = np.sqrt(np.einsum("bd,bd->b", G, G))
                    mu_now = max(rgap * abs(F) / max(nb, 1), 1e-300)
                    z = G * np.minimum(1.0, 0.99 * alpha / np.maximum(gn, 1e-300))[:, None]
                    t = r + mu_now / alpha
                if it >= budget:
                    break
            it += 1
            u = self.u
            ru = G - z  # dual residual of the stationarity equation
            # ---- Nesterov-Todd scaling
            r = np.sqrt(np.einsum("bd,bd->b", u, u))
            zr = np.sqrt(np.einsum("bd,bd->b", z, z))
            xn = np.sqrt(np.maximum((t - r) * (t + r), 1e-300))
            sn = np.sqrt(np.maximum((alpha - zr) * (alpha + zr), 1e-300))
            xb0, xb1 = t / xn, u / xn[:, None]
            sb0, sb1 = alpha / sn, z / sn[:, None]
            gam = np.sqrt(0.5 * (1.0 + xb0 * sb0 + np.einsum("bd,bd->b", xb1, sb1)))
            wb0 = (sb0 + xb0) / (2 * gam)
            wb1 = (sb1 - xb1) / (2 * gam)[:, None]
            v0 = np.sqrt(0.5 * (wb0 + 1.0))
            v1 = wb1 / np.sqrt(2.0 * (wb0 + 1.0))[:, None]
            eta = np.sqrt(sn / xn)
            rho = np.einsum("bd,bd->b", v1, v1)

            def Wmul(y0, y1):
                vy = v0 * y0 + np.einsum("bd,bd->b", v1, y1)
                return eta * (2 * v0 * vy - y0), eta[:, None] * (2 * v1 * vy[:, None] + y1)

            def Winv(y0, y1):
                q = v0 * y0 - np.einsum("bd,bd->b", v1, y1)
                return (2 * v0 * q - y0) / eta, -(2 * v1 * q[:, None] - y1) / eta[:, None]

            l0, l1 = Wmul(t, u)
            e2 = eta * eta
            c1 = e2
            c2 = e2 * 8.0 * (1.0 + rho) / (1.0 + 8.0 * rho + 8.0 * rho * rho)
            a_ = e2 * (1.0 + 8.0 * rho + 8.0 * rho * rho)
            b_ = (e2 * 4.0 * v0 * (1.0 + 2.0 * rho))[:, None] * v1
            cw = e2 * 8.0 * (1.0 + rho)
            curv = _Curvature(self.name, Z, self.Y)
            allb = np.arange(nb)
            solve = self._factor(allb, curv, v1, c1, c2)

            def direction(rc0, rc1):
                det = l0 * l0 - np.einsum("bd,bd->b", l1, l1)
                dc0 = (l0 * rc0 - np.einsum("bd,bd->b", l1, rc1)) / det
                dc1 = (rc1 - dc0[:, None] * l1) / l0[:, None]
                q0, q1 = Wmul(dc0, dc1)
                rhs = -ru + q1 - b_ * (q0 / a_)[:, None]
                du = solve(rhs)
                dt = (q0 - np.einsum("bd,bd->b", b_, du)) / a_
                Cdu = e2[:, None] * du + (cw * np.einsum("bd,bd->b", v1, du))[:, None] * v1
                dz = q1 - b_ * dt[:, None] - Cdu
                return du, dt, dz

            def steps(du, dt, dz):
                ap = self._soc_max_step(t, u, dt, du).min(initial=np.inf)
                ad = self._soc_max_step(np.full(nb, alpha), z, np.zeros(nb), dz).min(initial=np.inf)
                return ap, ad

            mu = float((alpha * t + np.einsum("bd,bd->b", u, z)).sum()) / nb
            # predictor (affine scaling): rc = -lambda o lambda  ->  d_c = -lambda
            ll0 = l0 * l0 + np.einsum("bd,bd->b", l1, l1)
            ll1 = 2.0 * l0[:, None] * l1
            du_a, dt_a, dz_a = direction(-ll0, -ll1)
            ap, ad = steps(du_a, dt_a, dz_a)
            ap, ad = min(1.0, ap), min(1.0, ad)
            mu_aff = float((alpha * (t + ap * dt_a) + np.einsum(
                "bd,bd->b", u + ap * du_a, z + ad * dz_a)).sum()) / nb
            sigma = float(np.clip(mu_aff / mu, 0.0, 1.0)) ** 3
            # corrector: rc = sigma mu e - lambda o lambda - (W^-1 ds_a) o (W dx_a)
            p0, p1 = Winv(np.zeros(nb), dz_a)
            q0, q1 = Wmul(dt_a, du_a)
            cc0 = p0 * q0 + np.einsum("bd,bd->b", p1, q1)
            cc1 = p0[:, None] * q1 + q0[:, None] * p1
            du, dt, dz = direction(sigma * mu - ll0 - cc0, -ll1 - cc1)
            ap, ad = steps(du, dt, dz)
            step = min(1.0, 0.99 * min(ap, ad))
            dZ = self.forward_w(allb, du)
            # safeguard (nonlinear losses, noise): F may rise, but not by more than the
            # current gap (which bounds F - F*); otherwise shorten the step
            gap_abs = rgap * abs(F)
            for _ in range(30):
                Zt = Z + step * dZ
                if self.value(Zt, u + step * du) <= F + gap_abs:
                    break
                step *= 0.5
            else:
                self.pd_failed = True
                break
            if step < 1e-4:
                self.pd_failed = True
                break
            self.u = u + step * du
            t = t + step * dt
            z = z + step * dz
            Z = Z + step * dZ
            if self.verbose >= 3:
                print(f"      pd sigma={sigma:.2e} step={step:.3g}")
            G, F, rgap = self._state(Z)
            if rgap <= inner_tol:
                return Z, it, rgap
            if rgap < 0.9 * best[0]:
                best, since_best = (rgap, self.u.copy(), Z), 0
            else:
                since_best += 1
                if since_best >= patience:
                    self.pd_failed = True
                    break
        if rgap > best[0]:
            rgap, self.u, Z = best
        return Z, it, rgap


def _sparsify(problem, S, U, Z, gap, tol, pat, out):
    """Set to exactly zero the blocks left tiny by the barrier ("barrier dust") when
    their exact block minimiser is zero, if the certificate stays within ``tol``."""
    G = S.grads_w(problem.loss.gradient(Z, problem.Y))
    idx = S.zero_candidates(Z, G)
    if idx.size == 0:
        return U, Z, gap
    U2 = U.copy()
    U2[:, pat[idx], out[idx]] = 0.0
    Z2 = problem.apply(U2)
    gap2 = problem.gap(U2, Z2)
    S.flops += 1.5 * S.fge_unit
    if gap2.relative_gap <= tol:
        S.u[idx] = 0.0
        return U2, Z2, gap2
    return U, Z, gap


def solve_gated_working_set(problem: GatedReLUProblem, U0=None, *, tol=1e-6, max_iter=10000,
                            max_outer=100, n_init=32, inner_frac=0.25,
                            chunk_bytes=50 * 2 ** 20, dense_flops=None, newton_flops=3e8,
                            kappa=5.0, center=0.1, max_dual_n=3500, method="pd",
                            mixed_precision=True, verbose=0, monitor=None) -> dict:
    """Minimise the gated ReLU program to a relative duality gap ``tol`` (see module doc).

    Parameters
    ----------
    problem : GatedReLUProblem
    U0 : ndarray of shape (d, P, c), optional
        Warm start (any previous solution with the same patterns).
    tol : float
        Target relative duality gap of the full problem (the certificate).
    max_iter : int
        Budget of restricted iterations summed over all outer rounds.
    max_outer : int
        Maximum number of working-set rounds.
    n_init : int
        Minimum number of blocks added per round (initial working-set size).
    inner_frac : float
        Restricted problems are solved to a relative gap ``inner_frac * tol``.
    chunk_bytes : int
        Memory bound of the temporaries (restricted design chunks).
    dense_flops : float, optional
        Cost (multiply-adds) up to which a Newton system is always factorised
        directly (beyond it, only when cheaper than ~200 CG iterations);
        ``0`` forces preconditioned CG.  Default ``max(3e9, 20 * full-gradient cost)``.
    newton_flops : float
        The first working set holds every violated block when a Newton
        factorisation over that many blocks costs at most this.
    kappa, center : float
        Barrier fallback: ``mu`` is divided by ``kappa`` once the Newton decrement
        satisfies ``lambda^2 <= 2 center |W| mu``.
    max_dual_n : int
        Largest ``n`` (``n c`` for the cross-entropy) for the sample-space
        (Woodbury) Newton solves; ``0`` disables them.
    method : {"pd", "barrier"}
        Restricted solver: primal-dual interior point with barrier fallback, or
        the barrier method alone.
    mixed_precision : bool
        Problems with at least ``MIXED_MIN_SIDE`` unknowns: form the dense loss
        Hessians and factor the dense Newton systems in float32, refining every
        solve by CG with exact float64 products (the certificate and the iterates
        stay float64).  A factor that cannot reach ``MIXED_ACCEPT`` switches the
        solve to float64 for good.
    verbose : int
        1: one line per round; 2: per restricted iteration; 3: line searches,
        linear-solver residuals.
    monitor : cvxnn._control.SolveMonitor, optional
        Called at every gap evaluation (once per round) with ``U``; it may
        raise to stop the solve.

    Returns
    -------
    dict with ``U``, ``gap`` (:class:`~cvxnn.problems.Gap` of the full problem),
    ``n_iter``, ``n_outer``, ``n_grad_equiv``, ``converged``, ``history``
    (list of ``(iter, seconds, relative_gap, objective, 0.0)`` after each round) and
    ``n_mixed_fallbacks`` (float32 factors found too inaccurate: 0 or 1).
    """
    t0 = time.perf_counter()
    d, P, c = problem.shape
    n = problem.Xa.shape[0]
    U = np.zeros((d, P, c)) if U0 is None else np.array(U0, dtype=np.float64).reshape(d, P, c)
    fge = 2.0 * n * d * P * c
    if dense_flops is None:
        dense_flops = max(3e9, 20.0 * fge)
    S = _WorkingSetSolver(problem, chunk_bytes=chunk_bytes, dense_flops=dense_flops,
                          verbose=verbose, mixed_precision=mixed_precision)
    S.max_dual_n = max_dual_n
    alpha = problem.alpha
    history = []
    n_iter = 0
    Z = problem.apply(U)
    S.flops += fge / 2
    inner_tol = inner_frac * tol
    in_W = np.zeros((P, c), dtype=bool)
    n_cheap = S.cheap_blocks(newton_flops)
    gap = None
    converged = False
    n_outer = 0
    pat = out = None  # the last working set (set in the loop before any use)
    while True:
        gap = problem.gap(U, Z)
        Theta = -problem.loss.gradient(Z, problem.Y)
        norms = problem.dual_norms(Theta)  # (P, c)
        S.flops += fge
        history.append((n_iter, time.perf_counter() - t0, gap.relative_gap, gap.primal, 0.0))
        if monitor is not None:
            monitor(n_iter, U, gap.primal, gap.relative_gap)
        if verbose:
            print(f"[gated ws] round {n_outer:3d}  iter {n_iter:6d}  |W| {int(in_W.sum()):6d}  "
                  f"objective {gap.primal:.10g}  rel. gap {gap.relative_gap:.3e}")
        if gap.relative_gap <= tol:
            converged = True
            if n_outer and alpha > 0:
                U, Z, gap = _sparsify(problem, S, U, Z, gap, tol, pat, out)
            break
        if n_outer >= max_outer or n_iter >= max_iter:
            break
        # grow the working set
        unorm = np.sqrt(np.einsum("dpc,dpc->pc", U, U))
        in_W = unorm > 0
        cand = (~in_W) & (norms > alpha)
        ncand = int(cand.sum())
        left_out = False
        if ncand:
            n_add = max(n_init, n_cheap, int(in_W.sum())) if alpha > 0 else P * c
            flat = np.flatnonzero(cand.ravel())
            if flat.size > n_add:
                top = np.argpartition(-norms.ravel()[flat], n_add - 1)[:n_add]
                flat = flat[top]
                left_out = True
            in_W.ravel()[flat] = True
        else:
            if S.stalled:
                # the restricted problem is already at its floating-point noise floor
                break
            inner_tol *= 0.1
            if inner_tol < 1e-3 * tol * 1e-6:
                break
        pat, out = np.nonzero(in_W)
        S.set_working_set(pat, out, U[:, pat, out].T)
        # early rounds (working set still growing) are solved loosely
        target = inner_tol if not left_out else max(inner_tol, 0.1 * min(gap.relative_gap, 1.0))
        Z, k, _ = S.solve_restricted(Z, target, max_iter - n_iter, kappa=kappa, center=center,
                                        method=method)
        n_iter += k
        n_outer += 1
        U = np.zeros((d, P, c))
        U[:, pat, out] = S.u.T
        # recompute outputs from scratch (avoids drift of the incremental updates)
        Z = problem.apply(U)
        S.flops += fge / 2
    return {"U": U, "gap": gap, "n_iter": n_iter, "n_outer": n_outer,
            "n_grad_equiv": S.flops / fge, "converged": converged, "history": history,
            "n_mixed_fallbacks": S.n_mixed_fallbacks}
