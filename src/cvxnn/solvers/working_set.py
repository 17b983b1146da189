"""Working-set second-order solver of the gated ReLU group lasso.

Problem (see :class:`~cvxnn.problems.GatedReLUProblem`)::

    min_U  L(Z, Y) + alpha * sum_{i,k} ||U[:, i, k]||_2,   Z[:, k] = sum_i D_i Xa U[:, i, k].

A *block* is a pair ``(i, k)`` (pattern ``i``, output ``k``); its columns in the
expanded design are ``D_i Xa`` (``n x d``).

Outer loop (working set, certified by the full duality gap)
-----------------------------------------------------------
The working set ``W`` starts with the nonzero blocks of the warm start plus the
``n_init`` blocks with the largest dual norms ``||Xa^T D_i Theta_k||`` (``Theta =
-grad L(Z)``).  Each round solves the problem restricted to ``W`` (all other
blocks fixed at zero) to a relative restricted gap ``inner_tol`` (a fraction of
``tol``), then computes the FULL duality gap with :meth:`GatedReLUProblem.gap`
-- the certificate; the solver stops when the relative gap is ``<= tol``.
Otherwise the blocks outside ``W`` whose dual norm exceeds ``alpha`` (the
violated dual constraints) are added, the most violated first, at most
``max(n_init, |W|)`` of them (geometric growth); blocks already in ``W`` stay.
If no block is violated (the restricted solve was not accurate enough),
``inner_tol`` is divided by 10.  The expanded ``n x Pd`` matrix of the full
problem is never formed; full products go through :mod:`cvxnn.operators`.

Restricted solver (one loop for all three losses)
-------------------------------------------------
Each iteration computes the block gradients ``g_b = Xa^T D_i R_k`` (``R =
grad L(Z)``) of the working set in one GEMM and the restricted duality gap
(stop when ``<= inner_tol``), then

1. **Newton step on the active manifold.**  On the active blocks ``A`` (``u_b !=
   0``) the objective is smooth; its Hessian is ``H_AA + blockdiag(alpha/||u_b||
   (I - u_b u_b^T / ||u_b||^2))`` with ``H_AA`` the loss Hessian restricted to
   ``A`` (``Xw^T W Xw`` with the per-sample loss curvature ``W``: ``1/n`` for the
   squared loss, ``p(1-p)/n`` logistic, ``(diag p - p p^T)/n`` cross-entropy).
   The Newton system is solved by a Jacobi-scaled Cholesky factorisation when
   it is small enough (the Hessian is formed by row chunks of the restricted
   design ``[D_i Xa]_{i in A}``, never more than ``chunk_bytes`` at a time), and
   otherwise matrix-free by preconditioned conjugate gradients (block-Jacobi
   preconditioner built from the exact block Grams).  A backtracking (Armijo)
   line search on the true restricted objective makes every step a descent
   step.  For the squared loss this is exactly Newton's method on the smooth
   part of the quadratic problem, and it doubles as iterative refinement: the
   gradient is always recomputed from the data residual, never from the Gram.
2. **Block coordinate descent (support changes).**  Blocks whose status may be
   wrong -- zero blocks with ``||g_b|| > alpha``, active blocks whose exact block
   minimiser is zero -- (all blocks on the first iteration of a round or after a
   damped Newton step) are updated by an exact block-majorisation step: with
   the block Gram ``G_i = Xa^T D_i Xa / n`` and the curvature bound ``beta`` of
   the loss (1 squared, 1/4 logistic and cross-entropy),
   ``u_b <- argmin_v 1/2 (v-u_b)^T beta G_i (v-u_b) + g_b^T (v-u_b) + alpha ||v||``.
   One eigendecomposition per pattern turns this into a 1-D secular equation,
   solved by a monotone Newton iteration; the step is exact in the block's own
   metric, hence insensitive to the scale of the columns of ``Xa``.  For the
   squared loss it is exact block minimisation.

Budget and counters
-------------------
``max_iter`` bounds the total number of restricted iterations (each one block
gradient evaluation plus a Newton step and/or a BCD sweep) summed over all
outer rounds; the number of outer rounds is bounded by ``max_outer``.
``n_iter`` reports that total.  ``n_grad_equiv`` converts the floating-point
work (gradients, Hessian formation, factorisations, BCD sweeps, gap
evaluations) into full-gradient equivalents, one being ``problem.apply`` +
``problem.adjoint`` (``2 n d P c`` multiply-adds).
"""

from __future__ import annotations

import time

import numpy as np
import scipy.linalg as sla
from scipy.special import expit, softmax

from ..problems import GatedReLUProblem

__all__ = ["solve_gated_working_set"]

#: curvature bound of each loss along one output (majoriser of the block Hessian
#: in units of ``Xa^T D_i Xa / n``)
_BETA = {"squared": 1.0, "logistic": 0.25, "cross_entropy": 0.25}


# ----------------------------------------------------------------------------- helpers
def _block_prox(lam, Q, q, alpha):
    """Minimise ``1/2 v^T M v + q^T v + alpha ||v||`` with ``M = Q diag(lam) Q^T`` PSD.

    For ``||q|| <= alpha`` the minimiser is 0.  Otherwise ``v = -(M + sigma I)^{-1} q``
    with ``sigma = alpha/||v||``, i.e. the root of the concave, eventually
    decreasing ``h(sigma) = 1/||v(sigma)|| - sigma/alpha``, found by Newton's method
    started to the right of the root (monotone convergence).  Components of ``q``
    in the numerical null space of ``M`` are dropped (they vanish in exact
    arithmetic because ``q`` lies in the range of the block's columns).
    """
    qn = float(np.sqrt(q @ q))
    if qn <= alpha:
        return np.zeros_like(q)
    qt = Q.T @ q
    lmax = float(lam[-1]) if lam.size else 0.0
    if lmax <= 0.0:
        return np.zeros_like(q)
    keep = lam > 1e-13 * lmax
    lk, qk = lam[keep], qt[keep]
    q2 = qk * qk
    if alpha <= 0.0:
        vt = np.zeros_like(qt)
        vt[keep] = -qk / lk
        return Q @ vt
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
    vt = np.zeros_like(qt)
    vt[keep] = -qk / (lk + sig)
    return Q @ vt


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
    def __init__(self, problem: GatedReLUProblem, *, chunk_bytes, dense_flops, verbose):
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
        self._ensure_eig(self.pat)
        self._hcache = None

    def forward_w(self, idx, V):
        """``Z`` contribution of blocks ``idx`` with weights ``V`` (len(idx), d)."""
        if len(idx) == 0:
            return np.zeros((self.n, self.c))
        XV = self.Xa @ V.T
        XV *= self.Dw[:, idx]
        self.flops += self.n * self.d * len(idx)
        return XV @ self.onehot[idx]

    def grads_w(self, R, idx=None):
        """Block gradients ``Xa^T (D_i R[:, k])`` for blocks ``idx`` (default: all of W)."""
        if idx is None:
            M = self.Dw * R[:, self.out]
        else:
            M = self.Dw[:, idx] * R[:, self.out[idx]]
        self.flops += self.n * self.d * M.shape[1]
        return (self.Xa.T @ M).T

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
        """Exact block-majorisation steps over blocks ``idx`` in order; returns new Z."""
        alpha, beta, Xa, Y = self.alpha, self.beta, self.Xa, self.Y
        u = self.u
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

    # ------------------------------------------------------------- Newton step
    def _dense_hessian(self, A, curv):
        """Loss Hessian restricted to blocks ``A`` (``|A| d`` square), by row chunks."""
        n, d = self.n, self.d
        m = len(A) * d
        H = np.zeros((m, m))
        outs = self.out[A]
        groups = [(k, np.flatnonzero(outs == k)) for k in range(self.c)]
        groups = [(k, g) for k, g in groups if g.size]
        colidx = {k: (g[:, None] * d + np.arange(d)[None, :]).ravel() for k, g in groups}
        rows = max(1, self.chunk_elems // max(m, 1))
        DA = self.Dw[:, A]
        for s in range(0, n, rows):
            sl = slice(s, min(n, s + rows))
            Xc = (DA[sl, :, None] * self.Xa[sl, None, :]).reshape(-1, m)
            for a, (k, _) in enumerate(groups):
                Xk = Xc[:, colidx[k]]
                blk = Xk.T @ (curv.diag[sl, k:k + 1] * Xk)
                H[np.ix_(colidx[k], colidx[k])] += blk
                if curv.off is not None:
                    for (l, _) in groups[a + 1:]:
                        Xl = Xc[:, colidx[l]]
                        blk = Xk.T @ (curv.off[sl, k, l:l + 1] * Xl)
                        H[np.ix_(colidx[k], colidx[l])] += blk
                        H[np.ix_(colidx[l], colidx[k])] += blk.T
        self.flops += n * m * m
        return H

    def _penalty_blocks(self, uA):
        nu = np.sqrt(np.einsum("bd,bd->b", uA, uA))
        ut = uA / nu[:, None]
        sig = self.alpha / nu
        return nu, ut, sig

    def _newton_dense(self, A, gradF, curv, uA, theta):
        d = self.d
        m = len(A) * d
        key = (self.name == "squared", tuple(A))
        if key[0] and self._hcache is not None and self._hcache[0] == key:
            H = self._hcache[1]
        else:
            H = self._dense_hessian(A, curv)
            if key[0]:
                self._hcache = (key, H)
        _, ut, sig = self._penalty_blocks(uA)
        K = H.copy()
        for j in range(len(A)):
            sl = slice(j * d, (j + 1) * d)
            K[sl, sl] += sig[j] * (np.eye(d) - theta * np.outer(ut[j], ut[j]))
        dg = np.diag(K).copy()
        dmax = float(dg.max(initial=0.0))
        if not dmax > 0:
            return None
        s = 1.0 / np.sqrt(np.maximum(dg, 1e-300 + 1e-14 * dmax))
        Ks = K * s[:, None] * s[None, :]
        rhs = -gradF.ravel() * s
        ridge = 1e-13
        self.flops += m ** 3 / 3.0
        while ridge < 1e-2:
            try:
                Ks[np.diag_indices(m)] += ridge
                cf = sla.cho_factor(Ks, lower=False, check_finite=False)
                x = sla.cho_solve(cf, rhs, check_finite=False)
                if np.all(np.isfinite(x)):
                    return (x * s).reshape(len(A), d)
            except (np.linalg.LinAlgError, sla.LinAlgError):
                pass
            Ks[np.diag_indices(m)] -= ridge
            ridge *= 100.0
        return None

    def _newton_cg(self, A, gradF, curv, uA, theta, max_cg=200, rtol=1e-3):
        """Matrix-free Newton direction by block-Jacobi preconditioned CG."""
        d = self.d
        _, ut, sig = self._penalty_blocks(uA)
        # block preconditioner: (c_b G_i + sig (I - u u^T))^{-1} with c_b the mean
        # curvature of the block's samples (exact for the squared loss)
        cnt = np.maximum(self.Dw[:, A].sum(axis=0), 1.0)
        cb = (self.Dw[:, A] * curv.diag[:, self.out[A]]).sum(axis=0) / cnt * self.n
        lam = np.stack([self._eig[i][0] for i in self.pat[A]])
        Q = np.stack([self._eig[i][1] for i in self.pat[A]])
        lamc = cb[:, None] * lam + sig[:, None]  # eigenvalues of c_b G + sig I
        uq = np.einsum("bdk,bd->bk", Q, ut)  # ut in eigenbasis

        def precond(r):
            rq = np.einsum("bdk,bd->bk", Q, r)
            a = rq / lamc
            # Sherman-Morrison for the rank-one correction -sig ut ut^T
            w = uq / lamc
            denom = 1.0 - theta * sig * np.einsum("bk,bk->b", uq, w)
            denom = np.where(denom > 1e-12, denom, 1e-12)
            a = a + (theta * sig * np.einsum("bk,bk->b", uq, a) / denom)[:, None] * w
            return np.einsum("bdk,bk->bd", Q, a)

        def hvp(v):
            dZ = self.forward_w(A, v)
            WdZ = curv.apply(dZ)
            Hv = self.grads_w(WdZ, A)
            Hv += sig[:, None] * (v - theta * np.einsum("bd,b->bd", ut, np.einsum("bd,bd->b", ut, v)))
            return Hv

        b = -gradF
        x = np.zeros_like(b)
        r = b.copy()
        z = precond(r)
        p = z.copy()
        rz = float(np.vdot(r, z))
        r0 = np.sqrt(rz)
        for _ in range(max_cg):
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
        return x if np.any(x) else None

    def newton_step(self, Z, G, A, theta=1.0):
        """One Newton step on active blocks ``A``; returns (Z, accepted_full_step).

        ``theta = 1`` uses the Hessian of the penalty, ``alpha/||u|| (I - u u^T/||u||^2)``;
        ``theta = 0`` its isotropic majoriser ``alpha/||u|| I`` (an MM / reweighted
        ridge step, always a descent step of unit length for the squared loss).
        """
        u = self.u
        uA = u[A]
        nu = np.sqrt(np.einsum("bd,bd->b", uA, uA))
        gradF = G[A] + self.alpha * uA / nu[:, None]
        curv = _Curvature(self.name, Z, self.Y)
        m = len(A) * self.d
        dense_cost = self.n * m * m + m ** 3 / 3.0
        if dense_cost <= self.dense_flops:
            delta = self._newton_dense(A, gradF, curv, uA, theta)
        else:
            delta = None
        if delta is None:
            delta = self._newton_cg(A, gradF, curv, uA, theta)
        if delta is None:
            return Z, False
        dd = float(np.vdot(gradF, delta))
        if not dd < 0:
            return Z, False
        # Projected path: a block whose radial coordinate u_b^T w_b(t) / ||u_b|| turns
        # non-positive has crossed the origin of its (linearised) norm and is set to 0
        # -- the group analogue of the orthant projection of OWL-QN.
        ut = uA / nu[:, None]
        rad0 = nu  # radial coordinate at t = 0
        rad1 = np.einsum("bd,bd->b", ut, delta)  # its derivative in t
        XU = self.Xa @ uA.T
        XU *= self.Dw[:, A]
        XD = self.Xa @ delta.T
        XD *= self.Dw[:, A]
        self.flops += 2 * self.n * self.d * len(A)
        OA = self.onehot[A]
        Z_rest = Z - XU @ OA
        F0 = self.value(Z, u)
        pen_rest = 0.0  # inactive blocks of W are zero
        slack = 1e-13 * max(abs(F0), 1e-300)
        t = 1.0
        for _ in range(40 if theta < 1 else 1):
            keep = rad0 + t * rad1 > 0
            V = uA + t * delta
            V[~keep] = 0.0
            Zt = Z_rest + ((XU + t * XD) * keep) @ OA
            Ft = self.loss.value(Zt, self.Y) + pen_rest + self.alpha * float(
                np.sqrt(np.einsum("bd,bd->b", V, V)).sum())
            if Ft <= F0 + 1e-4 * t * dd + slack:
                if self.verbose >= 3:
                    print(f"      newton(theta={theta:g}) t={t:.3g} dd={dd:.3e} F0-Ft={F0 - Ft:.3e} "
                          f"zeroed {int((~keep).sum())}")
                self.u[A] = V
                return Zt, t == 1.0
            t *= 0.5
        return Z, False

    # ------------------------------------------------------------- restricted solve
    def solve_restricted(self, Z, inner_tol, budget, t0, history_cb):
        """Solve on the current working set; returns (Z, n_iter, restricted_rel_gap)."""
        alpha = self.alpha
        nW = len(self.pat)
        it = 0
        sweep_all = True
        rgap = np.inf
        while it < budget:
            R = self.loss.gradient(Z, self.Y)
            G = self.grads_w(R)
            gn = np.sqrt(np.einsum("bd,bd->b", G, G))
            F = self.value(Z, self.u)
            rgap = self.restricted_gap(F, R, gn)
            if self.verbose >= 2:
                print(f"    [ws inner] it {it:4d}  |W| {nW:5d}  active "
                      f"{int(np.count_nonzero(self.u.any(axis=1))):5d}  F {F:.12g}  "
                      f"restricted gap {rgap:.3e}")
            if rgap <= inner_tol:
                break
            it += 1
            unorm = np.sqrt(np.einsum("bd,bd->b", self.u, self.u))
            A = np.flatnonzero(unorm > 0)
            full = False
            if A.size and not sweep_all:
                Z, full = self.newton_step(Z, G, A, 1.0)
                if not full:
                    Z, full = self.newton_step(Z, G, A, 0.0)
            if sweep_all or (not full and A.size == 0):
                idx = np.argsort(-gn, kind="stable")
                sweep_all = False
            else:
                # blocks whose status may change: violated zero blocks, and active
                # blocks whose exact block minimiser is zero
                zero = unorm == 0
                viol = zero & (gn > alpha)
                cand = np.flatnonzero(~zero)
                if cand.size:
                    sus = []
                    for b in cand:
                        lam, Q = self._eig[self.pat[b]]
                        qb = G[b] - Q @ (self.beta * lam * (Q.T @ self.u[b]))
                        if qb @ qb <= alpha * alpha:
                            sus.append(b)
                    viol[np.asarray(sus, dtype=np.intp)] = True
                idx = np.flatnonzero(viol)
                idx = idx[np.argsort(-gn[idx], kind="stable")]
            if idx.size:
                if self.verbose >= 3:
                    print(f"      bcd on {idx.size} blocks")
                Z = self.bcd_sweep(Z, idx)
        return Z, it, rgap


def solve_gated_working_set(problem: GatedReLUProblem, U0=None, *, tol=1e-6, max_iter=10000,
                            max_outer=100, n_init=32, inner_frac=0.25,
                            chunk_bytes=50 * 2 ** 20, dense_flops=None, verbose=0) -> dict:
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
        Largest cost (multiply-adds) of forming and factorising a Newton system
        densely; larger systems are solved by preconditioned CG.  Default:
        ``max(3e9, 20 * full-gradient cost)``.

    Returns
    -------
    dict with ``U``, ``gap`` (:class:`~cvxnn.problems.Gap` of the full problem),
    ``n_iter``, ``n_outer``, ``n_grad_equiv``, ``converged`` and ``history``
    (list of ``(iter, seconds, relative_gap)`` after each round).
    """
    t0 = time.perf_counter()
    d, P, c = problem.shape
    n = problem.Xa.shape[0]
    U = np.zeros((d, P, c)) if U0 is None else np.array(U0, dtype=np.float64).reshape(d, P, c)
    fge = 2.0 * n * d * P * c
    if dense_flops is None:
        dense_flops = max(3e9, 20.0 * fge)
    S = _WorkingSetSolver(problem, chunk_bytes=chunk_bytes, dense_flops=dense_flops,
                          verbose=verbose)
    alpha = problem.alpha
    history = []
    n_iter = 0
    Z = problem.apply(U)
    S.flops += fge / 2
    inner_tol = inner_frac * tol
    in_W = np.zeros((P, c), dtype=bool)
    gap = None
    converged = False
    n_outer = 0
    while True:
        gap = problem.gap(U, Z)
        Theta = -problem.loss.gradient(Z, problem.Y)
        norms = problem.dual_norms(Theta)  # (P, c)
        S.flops += fge
        history.append((n_iter, time.perf_counter() - t0, gap.relative_gap))
        if verbose:
            print(f"[gated ws] round {n_outer:3d}  iter {n_iter:6d}  |W| {int(in_W.sum()):6d}  "
                  f"objective {gap.primal:.10g}  rel. gap {gap.relative_gap:.3e}")
        if gap.relative_gap <= tol:
            converged = True
            break
        if n_outer >= max_outer or n_iter >= max_iter:
            break
        # grow the working set
        unorm = np.sqrt(np.einsum("dpc,dpc->pc", U, U))
        in_W |= unorm > 0
        cand = (~in_W) & (norms > alpha)
        ncand = int(cand.sum())
        if ncand:
            n_add = max(n_init, int(in_W.sum()))
            flat = np.flatnonzero(cand.ravel())
            if flat.size > n_add:
                top = np.argpartition(-norms.ravel()[flat], n_add - 1)[:n_add]
                flat = flat[top]
            in_W.ravel()[flat] = True
        else:
            inner_tol *= 0.1
            if inner_tol < 1e-3 * tol * 1e-6:
                break
        pat, out = np.nonzero(in_W)
        S.set_working_set(pat, out, U[:, pat, out].T)
        Z, k, rgap = S.solve_restricted(Z, inner_tol, max_iter - n_iter, t0, None)
        n_iter += k
        n_outer += 1
        U = np.zeros((d, P, c))
        U[:, pat, out] = S.u.T
        # recompute outputs from scratch (avoids drift of the incremental updates)
        Z = problem.apply(U)
        S.flops += fge / 2
    return {"U": U, "gap": gap, "n_iter": n_iter, "n_outer": n_outer,
            "n_grad_equiv": S.flops / fge, "converged": converged, "history": history}
