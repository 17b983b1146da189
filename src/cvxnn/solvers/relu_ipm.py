"""Interior-point solver of the cone-constrained ReLU program, with exact polishing.

Program (see :mod:`cvxnn.problems`; ``2 P c`` blocks ``q_b`` of size ``d``, block
``b = (s, i, k)`` with pattern ``i``, sign ``sigma_b = +1`` for ``V`` and ``-1`` for
``W`` and output ``k``)::

    min_{q, tau}  L(Z) + alpha sum_b tau_b,   Z[:, k] = sum_{b: k_b = k} sigma_b D_i Xa q_b
    s.t.  S_i Xa q_b >= 0   (n linear constraints per block)
          ||q_b|| <= tau_b  (one second-order cone per block)

Algorithm
---------
1. **Primal-dual interior point** (infeasible start, Nesterov-Todd scaling,
   Mehrotra predictor-corrector plus Gondzio centrality correctors, as in
   CVXOPT's ``coneqp``; the smooth loss enters through its gradient and Hessian
   at the current point).  Eliminating the slacks, the multipliers and ``tau``
   (analytically, without cancellation) leaves the Newton system
   ``K = H_loss + blockdiag_b(B_b)``, ``B_b = Xa^T diag(z_b / s_b) Xa + SOC_b``
   (no sign: ``S_i^2 = I``).  ``V_i`` and ``W_i`` share the columns ``D_i Xa``, so
   the blocks are eliminated onto *column* variables (one per pattern and output,
   parallel sums of the two blocks) and :class:`_NewtonSystem` solves a system of
   size ``p d`` (``p`` columns) by dense Cholesky, or of size ``n`` by the Woodbury
   identity when that is cheaper (one output), each followed by iterative
   refinement with the exact operator.
2. **Polishing.**  Once the interior-point gap is small (``<= 1e-5``, then every
   decade), :func:`polish_on_face` identifies the active blocks and, per block,
   the active cone constraints, and solves the program exactly on that face by a
   primal active-set Newton method (the norms are smooth there); constraints are
   added or released until the point is certified.  The result satisfies the
   cone constraints to rounding (relative violation ~1e-16), the zero blocks are
   exactly zero, and the gap is typically 1e-9 .. 1e-15.  Without polishing the
   final iterate is projected exactly onto the cones (:func:`_restore_feasibility`).
3. **Certificate.**  With ``Theta = -grad L(Z)`` the dual constraint of block ``b``
   is ``rho_b = min_{a >= 0} ||sigma_b Xa^T D_i Theta_k + Xa^T S_i a|| <= alpha``; by
   Moreau's decomposition ``rho_b = ||proj_{K_i}(sigma_b Xa^T D_i Theta_k)||``, which
   :func:`~cvxnn.solvers.cone_projection.project_cones` computes exactly together
   with the minimising multipliers.  The returned gap is
   :meth:`ReLUProblem.gap` with these multipliers (no refinement needed).
4. **Working set** (large problems).  When one interior-point iteration on all
   blocks would be expensive, the program is solved on a working set of blocks
   (the largest ``rho_b`` at zero, plus both blocks of every pattern active in a
   rough solution of the gated program, which is cheap and predicts the ReLU
   support), the full certificate prices the other blocks, the violated ones
   (``rho_b > alpha``) join the set together with the nearly violated ones
   (``rho_b > ENTER_NEAR alpha``; each new set restarts the interior-point method),
   and the loop repeats.  Blocks outside the set are also priced while the method
   runs (from a gap of 1e-2), so that a round whose set is too small stops early.
   A first set that already costs ``FULL_FRACTION`` of an iteration on every block
   is replaced by every block (wdbc, 500 gates: 902 of 1000 blocks seeded, 2 rounds
   in 44.8 s before, one run on all blocks in 27.7 s).

The stopping test is the one of the package: relative duality gap ``<= tol`` and
relative violation (:meth:`ReLUProblem.violation`) ``<= tol``.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.linalg import blas as _blas
from scipy.linalg import cho_factor, cho_solve
from scipy.special import expit, softmax

from ..problems import ReLUProblem, group_norms
from .cone_projection import multipliers_dense, project_cones
from .dense_solve import cho_solve_fast

__all__ = ["solve_relu_ipm", "RestrictedIPM", "price_blocks"]

_CHUNK = 1 << 22

#: relative gap of the gated solve whose support seeds the ReLU working set
GATED_SEED_TOL = 1e-3
#: when some blocks outside the ReLU working set violate their dual constraint, those
#: with dual norm above ``ENTER_NEAR * alpha`` enter with them
ENTER_NEAR = 0.8
#: working-set mode: when the first working set already costs this fraction of an
#: interior-point iteration on every block, every block is put in at once
FULL_FRACTION = 0.8

#: ``finish`` tries zeroing the blocks whose interior-point dual norm is at most
#: ``alpha (1 - DUAL_ZERO_MARGIN)`` (their dual constraint holds strictly)
DUAL_ZERO_MARGIN = 1e-7
#: ``finish`` tries the zero network when the penalty is at most this fraction of the
#: objective
ZERO_NETWORK_PENALTY = 1e-6


# ----------------------------------------------------------------- loss Hessians
def _loss_hessian(loss, Z, Y):
    """Per-sample Hessian of the loss wrt ``Z``: dict ``{(k, k'): weights (n,)}``.

    Only pairs ``k <= k'`` are returned.  ``None`` for an unsupported loss.
    """
    n, c = Z.shape
    if loss.name == "squared":
        w = np.full(n, 1.0 / n)
        return {(k, k): w for k in range(c)}
    if loss.name == "logistic":
        p = expit(Y[:, 0] * Z[:, 0])
        return {(0, 0): p * (1.0 - p) / n}
    if loss.name == "cross_entropy":
        Pm = softmax(Z, axis=1)
        out = {}
        for k in range(c):
            out[(k, k)] = Pm[:, k] * (1.0 - Pm[:, k]) / n
            for k2 in range(k + 1, c):
                out[(k, k2)] = -Pm[:, k] * Pm[:, k2] / n
        return out
    return None


def supports_loss(loss) -> bool:
    return getattr(loss, "name", None) in ("squared", "logistic", "cross_entropy")


# ----------------------------------------------------------------- SOC helpers
def _soc_nt(s, z, full=False):
    """Nesterov-Todd scaling of second-order cones, one per row.

    Returns ``W``, ``Winv`` (each (m, p, p)) and ``lam = W z = Winv s``.
    """
    m, p = s.shape
    J = np.ones(p)
    J[1:] = -1.0
    ns = np.sqrt(np.einsum("bi,bi->b", s[:, 1:], s[:, 1:]))
    nz = np.sqrt(np.einsum("bi,bi->b", z[:, 1:], z[:, 1:]))
    sJs = (s[:, 0] - ns) * (s[:, 0] + ns)
    zJz = (z[:, 0] - nz) * (z[:, 0] + nz)
    sJs = np.maximum(sJs, 1e-300)
    zJz = np.maximum(zJz, 1e-300)
    sb = s / np.sqrt(sJs)[:, None]
    zb = z / np.sqrt(zJz)[:, None]
    gam = np.sqrt(np.maximum((1.0 + np.einsum("bi,bi->b", zb, sb)) / 2.0, 1e-300))
    wb = (sb + zb * J) / (2.0 * gam)[:, None]
    eta = (sJs / zJz) ** 0.25
    w0 = wb[:, 0]
    w1 = wb[:, 1:]
    core = np.eye(p - 1)[None] + w1[:, :, None] * w1[:, None, :] / (1.0 + w0)[:, None, None]
    W = np.empty((m, p, p))
    W[:, 0, 0] = w0
    W[:, 0, 1:] = w1
    W[:, 1:, 0] = w1
    W[:, 1:, 1:] = core
    Winv = W.copy()
    Winv[:, 0, 1:] *= -1.0
    Winv[:, 1:, 0] *= -1.0
    W *= eta[:, None, None]
    Winv /= eta[:, None, None]
    lam = np.einsum("bij,bj->bi", W, z)
    if full:
        return W, Winv, lam, w0, w1, eta
    return W, Winv, lam


def _jprod(u, v):
    out = np.empty_like(u)
    out[:, 0] = np.einsum("bi,bi->b", u, v)
    out[:, 1:] = u[:, :1] * v[:, 1:] + v[:, :1] * u[:, 1:]
    return out


def _jinv(lam, r):
    """Solve ``lam o x = r`` (Jordan product of the SOC) row-wise."""
    l0 = lam[:, 0]
    l1 = lam[:, 1:]
    det = l0 * l0 - np.einsum("bi,bi->b", l1, l1)
    x0 = (l0 * r[:, 0] - np.einsum("bi,bi->b", l1, r[:, 1:])) / det
    x = np.empty_like(r)
    x[:, 0] = x0
    x[:, 1:] = (r[:, 1:] - x0[:, None] * l1) / l0[:, None]
    return x


def _soc_step_scaled(lam, v):
    """Largest ``a >= 0`` with ``lam + a v`` in the SOC for a well-centred ``lam`` (row-wise).

    Maps ``lam`` to a multiple of ``e`` by a hyperbolic rotation that preserves the cone.
    """
    nrm = np.sqrt(np.einsum("bi,bi->b", lam[:, 1:], lam[:, 1:]))
    jn = np.sqrt(np.maximum((lam[:, 0] - nrm) * (lam[:, 0] + nrm), 1e-300))
    lb = lam / jn[:, None]
    l0 = lb[:, 0]
    l1 = lb[:, 1:]
    dot = np.einsum("bi,bi->b", l1, v[:, 1:])
    rho0 = (l0 * v[:, 0] - dot) / jn
    rho1 = (v[:, 1:] - l1 * v[:, :1] + l1 * (dot / (1.0 + l0))[:, None]) / jn[:, None]
    worst = np.sqrt(np.einsum("bi,bi->b", rho1, rho1)) - rho0
    with np.errstate(divide="ignore"):
        return np.where(worst > 0, 1.0 / np.where(worst > 0, worst, 1.0), np.inf)


def _lp_step(u, du):
    """Largest ``a >= 0`` with ``u + a du >= 0`` for ``u > 0``: ``1 / max(-du / u)``."""
    worst = float((du / u).min(initial=0.0))
    return np.inf if worst >= 0 else -1.0 / worst


def _spd_inv(B):
    """Inverses of a stack of SPD matrices, with diagonal equilibration and a jitter fallback."""
    dg = np.sqrt(np.maximum(np.einsum("bii->bi", B), 1e-300))
    Bt = B / dg[:, :, None] / dg[:, None, :]
    eye = np.eye(B.shape[1])
    out = None
    for jit in (0.0, 1e-14, 1e-12, 1e-10):
        try:
            with np.errstate(all="ignore"):
                out = np.linalg.inv(Bt + jit * eye)
            if np.all(np.isfinite(out)):
                break
        except np.linalg.LinAlgError:
            out = None
    if out is None:
        return np.full_like(B, np.nan)
    out = out / dg[:, :, None] / dg[:, None, :]
    return 0.5 * (out + out.transpose(0, 2, 1))


# ----------------------------------------------------------------- Newton systems
class _NewtonSystem:
    """Solver of ``K x = r``, ``K = E^T H_col E + blockdiag(B_b)`` for the restricted IPM.

    ``E`` maps the block variables to *column* variables ``y_col = sum_{b in col} sigma_b q_b``
    (a column is a (pattern, output) pair; the ``V`` and ``W`` blocks of a pattern share
    it) and ``H_col`` is the loss Hessian in the column variables.  Eliminating the
    blocks gives the reduced system ``(H_col + P) y = P sum_b sigma_b B_b^{-1} r_b`` with
    ``P_col = (sum_{b in col} B_b^{-1})^{-1}``, solved either densely (Cholesky of
    size ``p d``) or, when ``p d`` exceeds ``n`` (one output), with the Woodbury
    identity around ``P`` (Cholesky of size ``n``).  The result is polished by
    iterative refinement with the exact operator, which absorbs the rounding
    errors of the (very ill-conditioned) interior-point blocks.
    """

    def __init__(self, ipm):
        self.ipm = ipm
        pr = ipm.pr
        n, d = pr.Xa.shape
        c = ipm.c
        key = ipm.pat * c + ipm.out
        self.ucol, self.col = np.unique(key, return_inverse=True)
        self.p = self.ucol.size
        self.cpat = self.ucol // c
        self.cout = self.ucol % c
        self.Dc = pr.Df[:, self.cpat]                # (n, p)
        cost_dense = (self.p * d) ** 3 / 3.0
        cost_wood = n * n * self.p * d + n ** 3 / 3.0
        if pr.loss.name != "squared":
            cost_dense += n * (self.p * d) ** 2
        self.mode = "woodbury" if (c == 1 and cost_wood < cost_dense) else "dense"
        # pairs: columns holding two blocks (V and W of a pattern)
        order = np.argsort(self.col, kind="stable")
        counts = np.bincount(self.col, minlength=self.p)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.first = order[starts]
        two = counts == 2
        self.pair_cols = np.flatnonzero(two)
        self.pair_a = order[starts[two]]
        self.pair_b = order[starts[two] + 1]
        self._Hcol = None
        self.hw = None
        self.reg = 1e-9
        self.live_tol = 1e-13
        self.debug = False

    # ---- column maps
    def col_predict(self, y):
        """``Z`` (n, c) from column variables ``y`` (p, d): ``Z[:, k] = rowsum(Xa * (D_k y_k))``
        (the mask multiplies the weights first: no ``n x p`` temporary)."""
        Xa = self.ipm.pr.Xa
        c = self.ipm.c
        Z = np.zeros((Xa.shape[0], c))
        for k in range(c):
            if c == 1:
                W = self.Dc @ y
            else:
                sel = self.cout == k
                if not np.any(sel):
                    continue
                W = self.Dc[:, sel] @ y[sel]
            Z[:, k] = np.einsum("nd,nd->n", W, Xa)
        return Z

    def col_adjoint(self, GZ):
        """``(p, d)`` column gradients ``Xa^T (D_col GZ[:, k_col])``, as ``(GZ_k * Xa)^T D``."""
        Xa = self.ipm.pr.Xa
        c = self.ipm.c
        if c == 1:
            return ((Xa * GZ[:, :1]).T @ self.Dc).T
        out = np.empty((self.p, Xa.shape[1]))
        for k in range(c):
            sel = np.flatnonzero(self.cout == k)
            if sel.size:
                out[sel] = ((Xa * GZ[:, k:k + 1]).T @ self.Dc[:, sel]).T
        return out

    def hess_weights_apply(self, Zy):
        out = np.zeros_like(Zy)
        for (k1, k2), w in self.hw.items():
            out[:, k1] += w * Zy[:, k2]
            if k1 != k2:
                out[:, k2] += w * Zy[:, k1]
        return out

    def H_apply(self, y):
        if self._Hcol is not None:
            return (self._Hcol @ y.ravel()).reshape(y.shape)
        return self.col_adjoint(self.hess_weights_apply(self.col_predict(y)))

    def set_hessian(self, hw, reuse=False):
        self.hw = hw
        if self.mode != "dense" or (reuse and self._Hcol is not None):
            return
        pr = self.ipm.pr
        n, d = pr.Xa.shape
        p = self.p
        Xa = pr.Xa
        H = np.zeros((p, d, p, d))
        rows = max(1, _CHUNK // max(p * d, 1))
        for (k1, k2), w in hw.items():
            c1 = np.flatnonzero(self.cout == k1)
            c2 = np.flatnonzero(self.cout == k2)
            if c1.size == 0 or c2.size == 0:
                continue
            blk = np.zeros((c1.size * d, c2.size * d))
            diag = k1 == k2 and bool(np.all(w >= 0))
            sw = np.sqrt(w) if diag else None
            for st in range(0, n, rows):
                sl = slice(st, min(n, st + rows))
                M1 = (self.Dc[sl][:, c1, None] * Xa[sl, None, :]).reshape(-1, c1.size * d)
                if diag:
                    # symmetric rank-k update of curvature-scaled rows (syrk: half the flops)
                    M1 *= sw[sl, None]
                    blk += M1.T @ M1
                elif k1 == k2:
                    blk += M1.T @ (w[sl, None] * M1)
                else:
                    M2 = (self.Dc[sl][:, c2, None] * Xa[sl, None, :]).reshape(-1, c2.size * d)
                    blk += M1.T @ (w[sl, None] * M2)
            blk = blk.reshape(c1.size, d, c2.size, d)
            H[np.ix_(c1, np.arange(d), c2, np.arange(d))] = blk
            if k1 != k2:
                H[np.ix_(c2, np.arange(d), c1, np.arange(d))] = blk.transpose(2, 3, 0, 1)
        self._Hcol = H.reshape(p * d, p * d)

    # ---- factorisation
    def factor(self, B):
        """Factor for the block matrices ``B`` (m, d, d); returns False on failure."""
        m, d, _ = B.shape
        self.B = B
        pa, pb = self.pair_a, self.pair_b
        single = np.ones(m, dtype=bool)
        single[pa] = False
        single[pb] = False
        self.single = np.flatnonzero(single)
        # pairs: S = B_a + B_b, P = B_a S^{-1} B_b (parallel sum)
        if pa.size:
            self.Sinv = _spd_inv(B[pa] + B[pb])
            if not np.all(np.isfinite(self.Sinv)):
                return False
            Ppair = B[pa] @ self.Sinv @ B[pb]
            Ppair = 0.5 * (Ppair + Ppair.transpose(0, 2, 1))
        Pc = np.zeros((self.p, d, d))
        Pc[self.col[self.single]] = B[self.single]
        if pa.size:
            Pc[self.pair_cols] = Ppair
        self.Pc = Pc
        try:
            if self.mode == "dense":
                K = self._Hcol.copy()
                K4 = K.reshape(self.p, d, self.p, d)
                ar = np.arange(self.p)
                K4[ar, :, ar, :] += Pc
                self.Kfac = self._chol(K)
            else:
                # static regularisation of the (nearly singular) block part; the
                # refinement with the exact operator removes its effect
                Xa = self.ipm.pr.Xa
                w = self.hw[(0, 0)]
                Wd = self.Dc * w[:, None]
                if self.ipm.Xkr is not None:
                    Hd = (Wd.T @ self.ipm.Xkr).reshape(self.p, d, d)
                else:
                    Hd = np.einsum("np,nd,ne->pde", Wd, Xa, Xa)
                scale = (np.einsum("bii->b", Pc) + np.einsum("bii->b", Hd)) / d
                # F = (P + reg)^{-1} = V diag(1/lam) V^T from a symmetric eigendecomposition,
                # with the square root L = V diag(lam^-1/2) for a symmetric rank-k update
                lam, V = np.linalg.eigh(Pc)
                lam = np.maximum(lam, 0.0) + (self.reg * scale)[:, None]
                if not (np.all(np.isfinite(lam)) and np.all(lam > 0)):
                    return False
                F = (V / lam[:, None, :]) @ V.transpose(0, 2, 1)
                self.F = F
                n = Xa.shape[0]
                C = np.zeros((n, n), order="F")
                # C = sum_j D_j Xa F_j Xa^T D_j = T T^T with one column of T per eigen-
                # direction e of column j: D_j Xa L_j[:, e], L_j = V_j diag(lam_j^-1/2);
                # directions with a negligible 1/lam are dropped (CG absorbs them)
                il = 1.0 / lam
                jj, ee = np.nonzero(il > self.live_tol * float(il.max(initial=0.0)))
                L = V / np.sqrt(lam)[:, None, :]
                step = max(1, _CHUNK // max(n, 1))
                for st in range(0, jj.size, step):
                    j, e = jj[st:st + step], ee[st:st + step]
                    T = Xa @ L[j, :, e].T                      # (n, r): one GEMM
                    T *= self.Dc[:, j]
                    C = _blas.dsyrk(1.0, T.T, beta=1.0, c=C, trans=1, lower=1, overwrite_c=1)
                C[np.diag_indices_from(C)] += 1.0 / np.maximum(w, 1e-300)
                self.Kfac = self._chol(C)
        except np.linalg.LinAlgError:
            return False
        return self.Kfac is not None

    @staticmethod
    def _chol(K):
        diag = np.diagonal(K).copy()
        reg = 0.0
        for _ in range(8):
            try:
                if reg > 0:
                    K = K.copy()
                    K[np.diag_indices_from(K)] = diag + reg
                return cho_factor(K, lower=True, overwrite_a=False, check_finite=False)
            except np.linalg.LinAlgError:
                reg = max(reg * 100, 1e-15 * float(np.abs(diag).max()))
        return None

    # ---- solves
    def K_apply(self, x):
        ipm = self.ipm
        y = np.zeros((self.p, x.shape[1]))
        np.add.at(y, self.col, ipm.sigma[:, None] * x)
        Hy = self.H_apply(y)
        return ipm.sigma[:, None] * Hy[self.col] + np.einsum("bij,bj->bi", self.B, x)

    def _precond(self, r):
        ipm = self.ipm
        sig = ipm.sigma
        B = self.B
        v = np.zeros((self.p, r.shape[1]))
        si = self.single
        v[self.col[si]] = sig[si, None] * r[si]
        pa, pb = self.pair_a, self.pair_b
        if pa.size:
            Sr_a = np.einsum("bij,bj->bi", self.Sinv, r[pa])
            Sr_b = np.einsum("bij,bj->bi", self.Sinv, r[pb])
            v[self.pair_cols] = (sig[pa, None] * np.einsum("bij,bj->bi", B[pb], Sr_a)
                                 + sig[pb, None] * np.einsum("bij,bj->bi", B[pa], Sr_b))
        if self.mode == "dense":
            y = cho_solve_fast(self.Kfac, v.ravel()).reshape(v.shape)
        else:
            u = np.einsum("bij,bj->bi", self.F, v)
            Mr = self.col_predict(u)[:, 0]
            wv = cho_solve_fast(self.Kfac, Mr)
            MT = self.col_adjoint(wv[:, None])
            y = u - np.einsum("bij,bj->bi", self.F, MT)
        x = sig[:, None] * y[self.col]
        if pa.size:
            h = self.H_apply(y)
            hc = h[self.pair_cols]
            ta = r[pa] - sig[pa, None] * hc
            tb = r[pb] - sig[pb, None] * hc
            yc = y[self.pair_cols]
            a = np.einsum("bij,bj->bi", self.Sinv,
                          sig[pa, None] * ta - sig[pb, None] * tb + np.einsum("bij,bj->bi", B[pb], yc))
            x[pa] = sig[pa, None] * a
            x[pb] = sig[pb, None] * (yc - a)
        return x

    def solve(self, r, n_refine=6, rtol=1e-11, max_cg=40):
        """Solve ``K x = r`` by conjugate gradients preconditioned with the factorisation.

        The factorisation (dense Cholesky or Woodbury, with a small static
        regularisation) is nearly exact, so a few preconditioned CG steps with the
        exact operator reach ``rtol`` (relative, max-norm).  Unlike plain iterative
        refinement, CG keeps converging when the interior-point blocks become very
        ill-conditioned near the optimum (where the preconditioner is only accurate
        to a few digits).  ``n_refine`` is kept for compatibility (``0``: no
        correction at all).
        """
        x = self._precond(r)
        rn = max(float(np.abs(r).max(initial=0.0)), 1e-300)
        if n_refine <= 0:
            return x
        res = r - self.K_apply(x)
        e = float(np.abs(res).max(initial=0.0))
        hist = [e / rn]
        best_e, best_x = e, x
        if e > rtol * rn:
            z = self._precond(res)
            p = z
            rz = float(np.vdot(res, z))
            for it in range(max_cg):
                Kp = self.K_apply(p)
                pKp = float(np.vdot(p, Kp))
                if not (pKp > 0 and rz > 0 and np.isfinite(pKp)):
                    break
                a = rz / pKp
                x = x + a * p
                res = res - a * Kp
                if it % 8 == 7:
                    res = r - self.K_apply(x)       # limit the drift of the recursive residual
                e = float(np.abs(res).max(initial=0.0))
                hist.append(e / rn)
                if e < best_e:
                    best_e, best_x = e, x
                if e <= rtol * rn:
                    break
                z = self._precond(res)
                rz_new = float(np.vdot(res, z))
                p = z + (rz_new / rz) * p
                rz = rz_new
        x = best_x
        if self.debug:
            res = r - self.K_apply(x)
            hist.append(float(np.abs(res).max(initial=0.0)) / rn)
            print("        kkt solve residuals", " ".join(f"{h:.1e}" for h in hist))
        return x


# ----------------------------------------------------------------- restricted IPM
class RestrictedIPM:
    """IPM for the ReLU program restricted to the blocks ``blocks`` (flat ids of ``(2, P, c)``)."""

    def __init__(self, problem: ReLUProblem, blocks, Xkr=None, row_keep=None):
        """``row_keep`` (n, P) bool, optional: the cone rows of pattern ``i`` that enter the
        method (:func:`screen_cone_rows`); the others are left out of the barrier (zero
        multipliers), so the method solves a relaxation whose solution the caller must
        check against every row (the face polish and the certificate do)."""
        self.pr = problem
        Xa = problem.Xa
        self.n, self.d = Xa.shape
        _, _, P, c = problem.shape
        self.P, self.c = P, c
        self.blocks = np.asarray(blocks, dtype=np.intp)
        s_idx, i_idx, k_idx = np.unravel_index(self.blocks, (2, P, c))
        self.sigma = 1.0 - 2.0 * s_idx
        self.pat = i_idx
        self.out = k_idx
        self.m = self.blocks.size
        self.Dp = problem.Df[:, self.pat]            # (n, m)
        self.Sp = problem.S[:, self.pat]             # (n, m)
        self.E = np.zeros((self.m, c))
        self.E[np.arange(self.m), self.out] = 1.0
        self.Xkr = Xkr
        self.alpha = problem.alpha
        self.keep = None if row_keep is None else np.ascontiguousarray(row_keep[:, self.pat], dtype=bool)
        self.kkt = _NewtonSystem(self)

    # -- linear maps
    def products(self, q):
        return self.pr.Xa @ q.T                       # (n, m)

    def predictions(self, XQ):
        return (self.Dp * XQ * self.sigma) @ self.E   # (n, c)

    def grad_q(self, GZ):
        M = self.Dp * (GZ @ self.E.T) * self.sigma
        return (self.pr.Xa.T @ M).T                   # (m, d)

    def lp_adjoint(self, zL):
        return (self.pr.Xa.T @ (self.Sp * zL)).T      # (m, d)

    def _gram_weighted(self, W):
        """``Xa^T diag(W[:, b]) Xa`` for every column, shape (m, d, d)."""
        n, d = self.n, self.d
        if self.Xkr is not None:
            T = W.T @ self.Xkr
            return T.reshape(-1, d, d)
        out = np.zeros((W.shape[1], d * d))
        rows = max(1, _CHUNK // (d * d))
        Xa = self.pr.Xa
        for st in range(0, n, rows):
            sl = slice(st, min(n, st + rows))
            Xk = (Xa[sl, :, None] * Xa[sl, None, :]).reshape(-1, d * d)
            out += W[sl].T @ Xk
        return out.reshape(-1, d, d)

    def certificate_gap(self, q, Z, GZ, rxq, zC):
        """Relative duality gap of the restricted program at ``q`` with ``Theta = -grad L``.

        The cone multipliers are the IPM's; the dual norm of block ``b`` is then
        ``||r_x,b + zC_b[1:]||`` (no extra products needed).
        """
        from ..problems import _best_dual

        pr = self.pr
        cn = np.sqrt(np.einsum("bi,bi->b", rxq + zC[:, 1:], rxq + zC[:, 1:]))
        cmax = float(cn.max(initial=0.0))
        s_max = 1.0 if cmax <= self.alpha else self.alpha / cmax
        primal = pr.loss.value(Z, pr.Y) + self.alpha * float(np.sqrt(np.einsum("bi,bi->b", q, q)).sum())
        dual, _ = _best_dual(pr.loss, -GZ, pr.Y, s_max)
        return max(primal - dual, 0.0) / max(abs(primal), np.finfo(float).tiny)

    # -- the solver
    def solve(self, x0=None, *, tol=1e-9, max_iter=80, verbose=0, zfac=0.1, sfac=0.1, tfac=0.5, n_corr=0,
              cert_tol=None, polish=None, polish_from=1e-5, refine=0):
        """Run the interior-point method on the restricted program.

        Parameters
        ----------
        x0 : dict, optional
            ``{"q": (m, d)}`` starting blocks (the slacks are centred around them).
        tol : float
            Stop when the interior-point gap ``s^T z / |f|`` and the scaled residuals
            are below ``tol``.
        cert_tol : float, optional
            Also stop when the duality gap of the restricted program with
            ``Theta = -grad L`` (see :meth:`certificate_gap`) is below ``cert_tol``.
        polish : callable ``(state) -> bool``, optional
            Called when the gap first drops below ``polish_from`` and then at every
            further decade (and once at the end); ``True`` stops the method.
        zfac, sfac, tfac : float
            Scales of the starting multipliers, linear slacks and cone slacks.
        n_corr : int
            Maximum number of Gondzio centrality correctors per iteration (default
            none: on the 10 small reference tables 2 correctors saved 0-3 iterations
            of 14-35 but cost more than they saved, 18.9 s against 17.3 s in all,
            interleaved medians of 3; the same or slower on 7 larger tables).
        refine : int
            Steps of iterative refinement of the corrector direction on the full KKT rows
            (default none: the reduced system is already solved by CG to ``1e-11``
            with the exact operator; on 10 reference tables one step changed no
            iteration count and cost 13 % of the time).

        Returns
        -------
        dict with ``q`` (m, d), ``tau``, ``zL`` (n, m), ``zC``, ``sL``, ``sC``, ``n_iter``
        (rows left out of the method: ``zL = 0``, ``sL = 1``),
        ``status`` (``optimal``, ``polished``, ``stalled``, ``numerical`` or ``max_iter``),
        ``history`` and ``dual_norms`` (the interior-point dual norm of every block).
        """
        pr = self.pr
        loss, Y = pr.loss, pr.Y
        n, d, m = self.n, self.d, self.m
        alpha = self.alpha
        Xa = pr.Xa
        rown = float(np.sqrt(np.einsum("nd,nd->n", Xa, Xa)).max())
        # ---- starting point
        Z0 = np.zeros((n, pr.Y.shape[1]))
        L0 = loss.value(Z0, Y)
        if x0 is not None and x0.get("q") is not None:
            q = np.array(x0["q"], dtype=float)
            tau_scale = max(float(np.sqrt((q * q).sum(axis=1)).max(initial=0.0)), 1e-12)
        else:
            q = np.zeros((m, d))
            tau_scale = None
        if tau_scale is None or tau_scale <= 1e-12:
            sig_max = float(np.linalg.norm(Xa, 2))
            tau_scale = np.sqrt(2.0 * max(L0, 1e-12) * n) / max(sig_max, 1e-300)
        qn = np.sqrt((q * q).sum(axis=1))
        tau = np.maximum(1.5 * qn, tfac * tau_scale) + 1e-300
        sC = np.zeros((m, d + 1))
        sC[:, 0] = np.maximum(tau, qn * 1.5 + tfac * tau_scale)
        sC[:, 1:] = q
        zC = np.zeros((m, d + 1))
        zC[:, 0] = max(alpha, 1e-12)
        XQ = self.products(q)
        rn = np.sqrt(np.einsum('nd,nd->n', Xa, Xa))
        # The linear cone rows in the method are stored as a list of entries (row, block)
        # with flat indices ``ent`` (row * m + block) into the (n, m) arrays: every row
        # when ``self.keep`` is None (``ent = None``: the identity), else the kept rows,
        # to which the rows the iterates violate are appended.  Slacks, multipliers
        # and every elementwise operation of the method live on the entries; the
        # products ``Xa q^T`` and the adjoints stay dense GEMMs (gather / scatter).
        KP = None if self.keep is None else self.keep.copy()   # (n, m) bool: rows in
        ent = None if KP is None else np.flatnonzero(KP.ravel())
        Sflat = self.Sp.ravel()

        def gather(A):
            return A.ravel() if ent is None else A.ravel()[ent]

        def scatter(v):
            if ent is None:
                return v.reshape(n, m)
            out = np.zeros(n * m)
            out[ent] = v
            return out.reshape(n, m)

        def dense(v, ent_v, fill):
            """(n, m) array of entry values ``v`` at flat indices ``ent_v``, ``fill`` elsewhere."""
            if ent_v is None:
                return v.reshape(n, m).copy()
            out = np.full(n * m, float(fill))
            out[ent_v] = v
            return out.reshape(n, m)

        def lp_adjoint(z):
            """``(Xa^T (S * z))^T`` (m, d) for multipliers ``z`` on the entries."""
            return (Xa.T @ scatter(s_e * z)).T

        s_e = gather(self.Sp).copy()                             # entry signs
        v0 = sfac * tau_scale * (np.repeat(rn, m) if ent is None else rn[ent // m])
        sL = np.maximum(s_e * gather(XQ), 0.0) + v0
        zL = zfac * max(alpha, 1e-12) * tau_scale / v0
        nu = float(sL.size + m)
        hist = []
        good = None
        status = "max_iter"
        it = 0
        t_start = time.process_time()
        n_added = 0
        for it in range(1, max_iter + 1):
            it_time = (time.process_time() - t_start) / max(it - 1, 1)
            XQ = self.products(q)
            Z = self.predictions(XQ)
            if KP is not None:
                # left-out rows the iterate violates join the barrier, centred at the
                # current complementarity (an infeasible start for them)
                qn_b = np.sqrt(np.einsum("bi,bi->b", q, q))
                SXd = self.Sp * XQ
                bad = ~KP & (SXd < -1e-9 * rown * qn_b[None, :])
                if bad.any():
                    mu_now = float(np.vdot(sL, zL) + np.vdot(sC, zC)) / nu
                    KP |= bad
                    new = np.flatnonzero(bad.ravel())
                    s_new = np.maximum(SXd.ravel()[new], 0.0) + sfac * rn[new // m] * tau_scale
                    ent = np.concatenate([ent, new])
                    s_e = np.concatenate([s_e, Sflat[new]])
                    sL = np.concatenate([sL, s_new])
                    zL = np.concatenate([zL, mu_now / s_new])
                    n_added += new.size
                    nu = float(sL.size + m)
            SX = s_e * gather(XQ)                            # cone row values (entries)
            fval, GZ = loss.value_and_gradient(Z, Y)
            fobj = fval + alpha * float(tau.sum())
            gq = self.grad_q(GZ)
            # residuals
            rxq = gq - lp_adjoint(zL) - zC[:, 1:]
            rxt = alpha - zC[:, 0]
            rpL = SX - sL
            rpC = np.column_stack([tau, q]) - sC
            gap = float(np.vdot(sL, zL) + np.vdot(sC, zC))
            mu = gap / nu
            qmax = max(float(np.sqrt((q * q).sum(axis=1)).max(initial=0.0)), 1e-300)
            pinf = max(float(np.abs(rpL).max(initial=0.0)) / (rown * max(qmax, tau_scale * 1e-6)),
                       float(np.abs(rpC).max(initial=0.0)) / max(float(tau.max(initial=0.0)), tau_scale * 1e-6))
            dinf = max(float(np.abs(rxq).max(initial=0.0)), float(np.abs(rxt).max(initial=0.0))) / max(alpha, 1e-300)
            relgap = gap / max(abs(fobj), 1e-300)
            hist.append((it, fobj, relgap, pinf, dinf))
            if verbose >= 2:
                added = "" if KP is None else f" rows {sL.size} (+{n_added})"
                print(f"   ipm {it:3d} f {fobj:.12g} gap {relgap:.2e} pinf {pinf:.2e} dinf {dinf:.2e}{added}")
            cert = None
            if cert_tol is not None and relgap <= 1e3 * cert_tol:
                cert = self.certificate_gap(q, Z, GZ, rxq, zC)
            hist[-1] = hist[-1] + (cert,)
            if dinf <= 1e-2 and pinf <= 1e-3 and (good is None or relgap < good["relgap"]):
                good = {"q": q, "tau": tau, "sL": sL, "zL": zL, "zC": zC, "relgap": relgap,
                        "it": it, "dinf": dinf, "ent": ent}
            # numerical breakdown: the gap stagnates (while the dual residual typically grows)
            if it > 6 and relgap <= 1e-5 and relgap > 0.5 * min(h[2] for h in hist[-7:-1]):
                status = "stalled"
                break
            if polish is not None and relgap <= polish_from and pinf <= 1e-3:
                polish_from = relgap * 0.1
                t_pol = time.process_time()
                ok_pol = polish({"q": q, "tau": tau, "sL": dense(sL, ent, 1.0), "zL": dense(zL, ent, 0.0),
                                 "zC": zC, "relgap": relgap, "it_time": it_time})
                t_start += time.process_time() - t_pol      # keep the iteration time clean
                if ok_pol:
                    status = "polished"
                    break
            if verbose >= 2 and cert is not None:
                print(f"       certificate rel. gap {cert:.2e}")
            if cert is not None and cert <= cert_tol and pinf <= 1e-2 * cert_tol:
                status = "optimal"
                break
            if relgap <= tol and pinf <= tol and dinf <= tol:
                status = "optimal"
                break
            if relgap <= 1e-14 or not np.isfinite(relgap):
                status = "optimal" if (pinf <= 1e3 * tol and dinf <= 1e3 * tol) else "stalled"
                break
            # ---- scaling (Nesterov-Todd); LP: W = diag(omega), lambda = sqrt(s z)
            lamL = np.sqrt(sL * zL)
            omega = np.sqrt(sL / zL)
            lamLs = lamL
            Wc, Wci, lamC, w0, w1, eta = _soc_nt(sC, zC, full=True)
            # SOC part of G^T W^{-2} G after eliminating tau (analytic, no cancellation):
            #   W^{-2} = eta^-2 [[2w0^2-1, -2 w0 w1^T], [-2 w0 w1, I + 2 w1 w1^T]]
            den = 2.0 * w0 * w0 - 1.0
            a_t = den / eta ** 2
            c_over_a = -2.0 * w0[:, None] * w1 / den[:, None]
            # eta^-2 (I - 2 w1 w1^T / den) = eta^-2 ((I - u u^T) + u u^T / den), u = w1 / ||w1||
            w1n = np.sqrt(np.einsum("bi,bi->b", w1, w1))
            u = w1 / np.maximum(w1n, 1e-300)[:, None]
            uu = u[:, :, None] * u[:, None, :]
            Sb = (np.eye(d)[None] - uu + uu / den[:, None, None]) / (eta ** 2)[:, None, None]
            # ---- Newton matrix
            hw = _loss_hessian(loss, Z, Y)
            self.kkt.set_hessian(hw, reuse=(loss.name == "squared"))
            Gb = self._gram_weighted(scatter(zL / sL))      # (m, d, d)
            ok = self.kkt.factor(Gb + Sb)
            if not ok and self.kkt.mode == "woodbury":
                self.kkt.mode = "dense"
                self.kkt.set_hessian(hw)
                ok = self.kkt.factor(Gb + Sb)
            if not ok:
                status = "numerical"
                break

            def H_q(dq):
                return self.kkt.K_apply(dq) - np.einsum("bij,bj->bi", self.kkt.B, dq)

            # the LP scaling enters every direction through 1/omega and S/omega
            inv_om = 1.0 / omega
            S_om = s_e * inv_om

            def solve_kkt(rx_q, rx_t, rp_L, rp_C, dsL_sc, dsC_sc):
                """Newton direction for residuals ``(r_x, r_p)`` and scaled complementarity
                ``d_s``; ``rp_L``/``rp_C`` ``None`` mean zero.  Also returns ``Xa dq`` (entries)."""
                rhoL = dsL_sc if rp_L is None else dsL_sc - rp_L * inv_om
                rhoC = dsC_sc if rp_C is None else dsC_sc - np.einsum("bij,bj->bi", Wci, rp_C)
                WrC = np.einsum("bij,bj->bi", Wci, rhoC)
                rq = -rx_q + (Xa.T @ scatter(S_om * rhoL)).T + WrC[:, 1:]
                rt = -rx_t + WrC[:, 0]
                rq_red = rq - c_over_a * rt[:, None]
                dq = self.kkt.solve(rq_red)
                dtau = rt / a_t - np.einsum("bi,bi->b", c_over_a, dq)
                XdQ = gather(self.products(dq))
                dzLt = rhoL - S_om * XdQ
                GdC = np.column_stack([dtau, dq])
                dzCt = rhoC - np.einsum("bij,bj->bi", Wci, GdC)
                return dq, dtau, dzLt, dzCt, XdQ

            def newton(dsL_sc, dsC_sc, refine=1, homogeneous=False):
                """Direction with ``refine`` steps of iterative refinement on the stationarity rows.

                Returns (dq, dtau, dsL, dzL, dsC, dzC, dsLt, dzLt, dsCt, dzCt) (``t``: scaled).
                ``homogeneous``: zero residuals (a corrector).
                """
                if homogeneous:
                    r_xq, r_xt = np.zeros_like(rxq), np.zeros_like(rxt)
                    r_pL, r_pC = None, None
                else:
                    r_xq, r_xt, r_pL, r_pC = rxq, rxt, rpL, rpC
                dq, dtau, dzLt, dzCt, XdQ = solve_kkt(r_xq, r_xt, r_pL, r_pC, dsL_sc, dsC_sc)
                for _ in range(refine):
                    dzL_ = dzLt * inv_om
                    dzC_ = np.einsum("bij,bj->bi", Wci, dzCt)
                    e_q = H_q(dq) - lp_adjoint(dzL_) - dzC_[:, 1:] + r_xq
                    e_t = -dzC_[:, 0] + r_xt
                    cq, ct, czL, czC, XcQ = solve_kkt(e_q, e_t, None, None, np.zeros_like(dsL_sc),
                                                      np.zeros_like(dsC_sc))
                    dq = dq + cq
                    dtau = dtau + ct
                    dzLt = dzLt + czL
                    dzCt = dzCt + czC
                    XdQ = XdQ + XcQ
                dsLt = dsL_sc - dzLt
                dsCt = dsC_sc - dzCt
                GdL = s_e * XdQ
                dsL_ = GdL if r_pL is None else r_pL + GdL
                dzL_ = dzLt * inv_om
                GdC = np.column_stack([dtau, dq])
                dsC_ = GdC if r_pC is None else r_pC + GdC
                dzC_ = np.einsum("bij,bj->bi", Wci, dzCt)
                return dq, dtau, dsL_, dzL_, dsC_, dzC_, dsLt, dzLt, dsCt, dzCt

            def max_step(dsLt, dzLt, dsCt, dzCt):
                a1 = min(_lp_step(lamLs, dsLt), _lp_step(lamLs, dzLt))
                a2 = min(float(_soc_step_scaled(lamC, dsCt).min(initial=np.inf)),
                         float(_soc_step_scaled(lamC, dzCt).min(initial=np.inf)))
                return min(a1, a2)

            # ---- predictor (d_s = -lambda)
            dir_a = newton(-lamL, -lamC, refine=0)
            dsLt_a, dzLt_a, dsCt_a, dzCt_a = dir_a[6:]
            a_aff = min(1.0, max_step(dsLt_a, dzLt_a, dsCt_a, dzCt_a))
            lamp = lamL + a_aff * dsLt_a
            lamd = lamL + a_aff * dzLt_a
            gap_aff = float(np.vdot(lamp, lamd))
            lamp = lamC + a_aff * dsCt_a
            lamd = lamC + a_aff * dzCt_a
            gap_aff += float(np.vdot(lamp, lamd))
            sigma = min(1.0, max(0.0, gap_aff / max(gap, 1e-300))) ** 3
            # ---- corrector
            dsL_sc = (-lamL * lamL + sigma * mu - dsLt_a * dzLt_a) / lamLs
            e = np.zeros((m, d + 1))
            e[:, 0] = 1.0
            rcC = -_jprod(lamC, lamC) + sigma * mu * e - _jprod(dsCt_a, dzCt_a)
            dsC_sc = _jinv(lamC, rcC)
            dirn = newton(dsL_sc, dsC_sc, refine=refine)
            amax = max_step(*dirn[6:])
            # ---- Gondzio's multiple centrality correctors (LP products only)
            for _ in range(n_corr):
                if amax >= 1.0:
                    break
                a_t_ = min(1.0, 1.5 * amax + 0.1)
                dsLt, dzLt = dirn[6], dirn[7]
                v = (lamL + a_t_ * dsLt) * (lamL + a_t_ * dzLt)
                lo, hi = 0.1 * sigma * mu, 10.0 * sigma * mu
                tgt = np.clip(v, lo, hi)
                r = np.maximum(tgt - v, -hi)
                corr = newton(r / lamLs, np.zeros_like(lamC), refine=0, homogeneous=True)
                trial = tuple(a + b for a, b in zip(dirn, corr))
                amax_t = max_step(*trial[6:])
                if amax_t >= amax + 0.1 * (a_t_ - amax):
                    dirn, amax = trial, amax_t
                else:
                    break
            dq, dtau, dsL, dzL, dsC, dzC, dsLt, dzLt, dsCt, dzCt = dirn
            step = min(1.0, 0.99 * amax)
            if verbose >= 3:
                print(f"      a_aff {a_aff:.3e} sigma {sigma:.3e} step {step:.3e} | LPs {_lp_step(lamLs, dsLt):.2e} LPz {_lp_step(lamLs, dzLt):.2e} "
                      f"SOCs {float(_soc_step_scaled(lamC, dsCt).min()):.2e} SOCz {float(_soc_step_scaled(lamC, dzCt).min()):.2e}")
            if not (step >= 1e-10) or not np.all(np.isfinite(dq)):
                status = "stalled"
                break
            q = q + step * dq
            tau = tau + step * dtau
            sL = sL + step * dsL
            zL = zL + step * dzL
            sC = sC + step * np.einsum("bij,bj->bi", Wc, dsCt)
            zC = zC + step * dzC
        if status not in ("polished", "optimal") and good is not None:
            # numerical trouble: fall back to the last well-behaved iterate
            q, tau, sL, zL, zC, ent = (good["q"], good["tau"], good["sL"], good["zL"], good["zC"],
                                       good["ent"])
        if polish is not None and status not in ("polished",) and good is not None:
            if polish(dict(good, it_time=None, sL=dense(good["sL"], good["ent"], 1.0),
                           zL=dense(good["zL"], good["ent"], 0.0))):
                status = "polished"
        XQ = self.products(q)
        Z = self.predictions(XQ)
        GZ = loss.gradient(Z, Y)
        sL, zL = dense(sL, ent, 1.0), dense(zL, ent, 0.0)
        rxq = self.grad_q(GZ) - self.lp_adjoint(zL) - zC[:, 1:]
        dual_norms = np.sqrt(np.einsum("bi,bi->b", rxq + zC[:, 1:], rxq + zC[:, 1:]))
        return {"q": q, "tau": tau, "zL": zL, "zC": zC, "sL": sL, "sC": sC, "n_iter": it,
                "status": status, "history": hist, "dual_norms": dual_norms}


# ----------------------------------------------------------------- row screening
#: the interior-point method starts, per pattern, on the ``ROWS_PER_DIM x d`` cone rows
#: nearest (in angle) to the pattern's gate (when the gates are known and this leaves out
#: at least half of the rows); see :func:`screen_cone_rows`
ROWS_PER_DIM = 12


def screen_cone_rows(problem: ReLUProblem, gates, per_dim=None):
    """Cone rows that enter the interior-point method, per pattern: ``(n, P)`` bool or None.

    The cone of pattern ``i`` is the chamber ``{v : S_i Xa v >= 0}`` of the hyperplane
    arrangement that contains its gate ``g_i``; most of its ``n`` rows are redundant (in
    dimension ``d = 9`` a chamber of 768 hyperplanes has 25-50 facets).  The facets are
    walls seen from inside, and the walls nearest to ``g_i`` in angle (smallest
    ``s_j x_j^T g_i / ||x_j||``) are kept: ``per_dim x d`` of them (default
    ``ROWS_PER_DIM``).  On pima (100 gates) the 100 nearest rows held every facet of
    all 100 chambers, and the method took 14 iterations instead of 22 to the same
    certified optimum.

    This is a heuristic: the method then solves a relaxation, and its result is only
    accepted once the face polish (which keeps every row satisfied) or the exact
    certificate over every row confirms it (the caller falls back to every row
    otherwise).  Returns None when no gates are given, they do not reproduce the
    masks, or fewer than half of the rows would be left out.
    """
    if gates is None:
        return None
    Xa = problem.Xa
    n, d = Xa.shape
    P = problem.shape[2]
    G = np.asarray(gates, dtype=np.float64)
    if G.ndim != 2 or G.shape[1] != P:
        return None
    if G.shape[0] == d - 1:
        G = np.vstack([G, np.zeros((1, P))])   # gates without a bias act on [X, 1] with bias 0
    if G.shape[0] != d:
        return None
    k = (ROWS_PER_DIM if per_dim is None else per_dim) * d
    if 2 * k > n:
        return None
    XG = Xa @ G                                          # (n, P)
    consistent = np.all((XG > 0) == problem.Df.astype(bool), axis=0)
    if not np.any(consistent):
        return None
    rn = np.maximum(np.sqrt(np.einsum("nd,nd->n", Xa, Xa)), np.finfo(float).tiny)
    dist = np.abs(XG) / rn[:, None]                      # distance of g_i to the hyperplane of row j
    near = np.argpartition(dist, k - 1, axis=0)[:k]      # (k, P)
    keep = np.zeros((n, P), dtype=bool)
    keep[near, np.arange(P)[None, :]] = True
    keep[:, ~consistent] = True
    return keep


# ----------------------------------------------------------------- pricing / certificate
def price_blocks(problem: ReLUProblem, Theta, blocks=None, row_norms=None, screen=None,
                 init_idx=None):
    """Exact dual norms ``rho_b = ||proj_{K_i}(+-Xa^T D_i Theta_k)||`` and their multipliers.

    Returns ``rho`` (nb,), ``idx`` and ``lam`` (d, nb) as from :func:`project_cones`, for the
    flat block ids ``blocks`` (default: all ``2 P c`` blocks, in ``(2, P, c)`` order).
    With ``screen`` (a threshold), blocks with ``||g_b|| <= screen`` are not projected:
    their ``rho`` is the upper bound ``||g_b||`` and their multipliers are zero (which
    is then a valid choice, with dual norm ``||g_b|| <= screen``).
    ``init_idx`` (k, len(blocks)), optional: guessed active rows of the projections
    (:func:`~cvxnn.solvers.cone_projection.project_cones`).
    """
    d, _, P, c = problem.shape
    if blocks is None:
        blocks = np.arange(2 * P * c)
    blocks = np.asarray(blocks, dtype=np.intp)
    G = problem.adjoint(Theta).reshape(d, -1)[:, blocks]
    _, i_idx, _ = np.unravel_index(blocks, (2, P, c))
    if screen is None:
        U, idx, lam, _ = project_cones(problem.Xa, problem.S, i_idx, G, row_norms=row_norms,
                                       init_idx=init_idx)
        rho = np.sqrt(np.einsum("db,db->b", U, U))
        return rho, idx, lam
    rho = np.sqrt(np.einsum("db,db->b", G, G))
    idx = np.full((d, blocks.size), -1, dtype=np.intp)
    lam = np.zeros((d, blocks.size))
    sel = np.flatnonzero(rho > screen)
    if sel.size:
        U, idx_s, lam_s, _ = project_cones(problem.Xa, problem.S, i_idx[sel], G[:, sel],
                                           row_norms=row_norms,
                                           init_idx=None if init_idx is None else init_idx[:, sel])
        rho[sel] = np.sqrt(np.einsum("db,db->b", U, U))
        idx[:, sel] = idx_s
        lam[:, sel] = lam_s
    return rho, idx, lam


def _certify(problem, Q, A, Z, row_norms):
    """Gap at ``Q``; multipliers of blocks whose dual norm exceeds ``alpha`` are replaced
    by the optimal (projection) ones.  ``A`` (n, 2, P, c) is updated in place."""
    alpha = problem.alpha
    Theta = -problem.loss.gradient(Z, problem.Y)
    norms = problem.dual_norms(Theta, A).ravel()
    bad = np.flatnonzero(norms > alpha * (1 + 1e-12))
    if bad.size:
        rho, idx, lam = price_blocks(problem, Theta, bad, row_norms=row_norms)
        better = rho < norms[bad]
        n = A.shape[0]
        Af = A.reshape(n, -1)
        Af[:, bad[better]] = multipliers_dense(n, idx[:, better], lam[:, better])
    return problem.gap(Q, A=A, Z=Z, refine_iter=0)


def _restore_feasibility(problem, Q, blocks, row_norms):
    """Project the blocks ``blocks`` of ``Q`` exactly onto their cones (in place)."""
    d, _, P, c = problem.shape
    Qf = Q.reshape(d, -1)
    if len(blocks) == 0:
        return Q
    _, i_idx, _ = np.unravel_index(blocks, (2, P, c))
    U, _, _, _ = project_cones(problem.Xa, problem.S, i_idx, Qf[:, blocks], row_norms=row_norms)
    Qf[:, blocks] = U
    return Q


# ----------------------------------------------------------------- active-face polishing
def _entering_blocks(pr, blocks, ab, GZ, row_norms, max_new=None):
    """Zero blocks of ``blocks`` (positions not in ``ab``) whose dual constraint is violated.

    For each such block ``b`` the exact projection ``u_b = proj_{K_i}(sigma_b Xa^T D_i Theta_k)``
    (``Theta = -GZ``) is the steepest descent direction that stays in the cone; the
    objective decreases along it at rate ``||u_b|| - alpha``.  Returns ``None`` when no
    dual constraint is violated, else ``(positions, q_new, faces_new)`` with the
    starting blocks ``q_new = t_b u_b / ||u_b||`` (``t_b`` the minimiser of the quadratic
    model along the direction) and their faces (the rows active at ``u_b``).
    """
    d, _, P, c = pr.shape
    alpha = pr.alpha
    zero = np.setdiff1d(np.arange(len(blocks)), ab)
    if zero.size == 0:
        return None
    ids = np.asarray(blocks)[zero]
    G = pr.adjoint(-GZ).reshape(d, -1)[:, ids]
    s_z, i_z, k_z = np.unravel_index(ids, (2, P, c))
    # cheap screen: ||proj(g)|| <= ||g||
    gn = np.sqrt(np.einsum("db,db->b", G, G))
    sel = np.flatnonzero(gn > alpha * (1 + 1e-9))
    if sel.size == 0:
        return None
    U, idx, lam, _ = project_cones(pr.Xa, pr.S, i_z[sel], G[:, sel], row_norms=row_norms)
    rho = np.sqrt(np.einsum("db,db->b", U, U))
    viol = np.flatnonzero(rho > alpha * (1 + 1e-9))
    if viol.size == 0:
        return None
    viol = viol[np.argsort(-rho[viol])]
    if max_new is not None:
        viol = viol[:max_new]
    pos, q_new, faces_new = [], [], []
    n = pr.Xa.shape[0]
    for j in viol:
        b = sel[j]
        u = U[:, j] / rho[j]
        zdir = pr.Df[:, i_z[b]] * (pr.Xa @ u)
        curv = float(zdir @ zdir) * pr.loss.curvature(n)
        t = (rho[j] - alpha) / max(curv, 1e-300)
        pos.append(int(zero[b]))
        q_new.append(t * u)
        rows = idx[:, j][(idx[:, j] >= 0) & (lam[:, j] > 0)]
        faces_new.append([int(r) for r in rows])
    return np.asarray(pos, dtype=np.intp), np.asarray(q_new), faces_new


def _weighted_gram(M, w):
    """Lower triangle of ``M^T diag(w) M`` (``M`` (n, m), ``w >= 0`` (n,)) by a rank-k
    update; the strict upper triangle is zero (callers factor with ``lower=True``)."""
    Ms = M * np.sqrt(w)[:, None]
    if Ms.dtype != np.float64:
        return np.tril(Ms.T @ Ms)
    return _blas.dsyrk(1.0, Ms.T, trans=0, lower=1)


#: a face optimum whose certificate (face multipliers for the active blocks) has a
#: relative gap ``<= POLISH_ACCEPT * tol`` ends the face polish; between that and ``tol``
#: the polish goes on releasing rows with negative multipliers (was
#: ``1e-3``: on degenerate data such as tic_tac_toe the releases cycled back to the
#: same face for 6 more Newton steps and 3 certificates, 1.63 -> 1.32 s)
POLISH_ACCEPT = 0.1
#: the face Newton system is solved in sample space when ``n < ratio x`` face dimension
FACE_SAMPLE_SPACE_RATIO = 0.7
#: the face polish tries a projected search (steps 1, 1/4, 1/16, ... down to
#: ``PROJECTED_SEARCH_MIN``) when the ratio step is shorter than ``PROJECTED_SEARCH_BELOW``;
#: shorter projected steps mostly swap face rows back and forth
PROJECTED_SEARCH_BELOW = 1e-2
PROJECTED_SEARCH_MIN = 0.25 ** 6
#: ... until this many searches in a row found no step (each costs up to 7 projections)
PROJECTED_SEARCH_FAILURES = 2
#: rows that block the face Newton step within this fraction of it are met at once
#: (nearly active rows the interior-point iterate left off the face; meeting them
#: one ratio step at a time costs a Newton step each)
BLOCKING_AT_ONCE = 1e-6
#: relative radial curvature added to the penalty Hessian of a face Newton step solved in
#: sample space (with more active blocks than samples the exact system is singular)
FACE_RADIAL_REG = 1e-6


def _face_newton_sample_space(MN, sw, offs, c1, u, g, reg=FACE_RADIAL_REG):
    """Newton direction ``-K^{-1} g`` of the face program, through an ``n x n`` system.

    ``K = J^T J + blockdiag_t c1_t (I - (1 - reg) u_t u_t^T)`` with ``J = diag(sw) MN``
    (``n x m``), blocks ``t`` in columns ``offs[t]:offs[t + 1]`` and ``u`` (m,) the unit
    block directions.  With ``B0 = blockdiag(c1_t I)`` the radial terms join ``J`` in
    a Woodbury update whose capacitance matrix is the saddle point
    ``[[I + J B0^{-1} J^T, E], [E^T, -diag(reg / (c1 (1 - reg)))]]``, ``E = J U / c1``;
    it is solved through the Cholesky factors of its ``(1, 1)`` block and of the Schur
    complement, with one step of iterative refinement: ``O(n^2 m)`` flops instead of the
    ``O(n m^2 + m^3)`` of the dense face Hessian.  Returns None when a factorisation
    fails or the refined residual is not small (the caller then solves densely).
    """
    n, m = MN.shape
    dims = np.diff(offs)
    J = MN * sw[:, None]
    ic = np.repeat(1.0 / c1, dims)
    M0 = _blas.dsyrk(1.0, (J * np.sqrt(ic)).T, trans=1, lower=1)  # lower triangle
    M0[np.diag_indices(n)] += 1.0
    starts = offs[:-1]
    Ju = np.add.reduceat(J * u, starts, axis=1)                      # (n, a): J U
    E = Ju / c1
    try:
        f0 = cho_factor(M0, lower=True, overwrite_a=True, check_finite=False)
        ME = cho_solve(f0, E, check_finite=False)
        Sc = E.T @ ME
        Sc[np.diag_indices_from(Sc)] += reg / (c1 * (1.0 - reg))
        ds = np.sqrt(np.maximum(np.diag(Sc), 1e-300))
        Sc /= ds[:, None]
        Sc /= ds[None, :]
        fs = cho_factor(Sc, lower=True, overwrite_a=True, check_finite=False)
    except (np.linalg.LinAlgError, ValueError):
        return None
    radial = (1.0 - reg) * c1

    def K_apply(x):
        ux = np.add.reduceat(u * x, starts)
        return J.T @ (J @ x) + np.repeat(c1, dims) * x - u * np.repeat(radial * ux, dims)

    def K_solve(r):
        y = ic * r
        z = cho_solve_fast(f0, J @ y)
        b = np.add.reduceat(u * y, starts)
        w = cho_solve_fast(fs, (E.T @ z - b) / ds) / ds
        z -= ME @ w
        return y - ic * (J.T @ z + u * np.repeat(w, dims))

    x = K_solve(-g)
    res = -g - K_apply(x)
    x += K_solve(res)
    res = -g - K_apply(x)
    if not np.all(np.isfinite(x)) or np.linalg.norm(res) > 1e-6 * np.linalg.norm(g):
        return None
    return x


def polish_on_face(problem, blocks, q, sL, zL, zC, row_norms, *, max_steps=300, verbose=0,
                   accept=None, max_expand=8, time_budget=None):
    """Finish an interior-point iterate with a primal active-set Newton method.

    The blocks are classified active/zero from the iterate, and for each active
    block the nearly active cone constraints (Tapia-type indicator: normalised
    slack below normalised multiplier) are fixed as equalities.  With
    ``q_b = N_b v_b`` (``N_b`` an orthonormal basis of the null space of the fixed
    rows) the program restricted to the face is smooth in ``v`` and is minimised
    by Newton's method with an Armijo line search, keeping every other cone
    constraint satisfied (a step that would cross one stops on it and adds it to
    the face; rows that block it within ``BLOCKING_AT_ONCE`` of the step -- nearly
    active rows the interior-point iterate left off the face -- join together;
    when it would cross several, a projected search along the Newton
    direction projects the blocks that leave their cones back exactly and takes the
    active rows of the projections as their faces, instead of meeting the
    constraints one step at a time).  When Newton has converged on the face, constraints whose
    multipliers are negative are released; blocks driven to zero are removed.
    ``accept(Q)`` (optional) is asked at every face optimum; ``True`` ends the search
    there (e.g. when ``Q`` is already certified).  Returns ``Q`` (d, 2, P, c) --
    feasible to rounding -- or ``None`` on failure.

    Robustness: a block whose guessed face cannot be made feasible starts from the
    exact projection of its interior-point value onto its cone; blocks that Newton
    drives through the origin are dropped (set to zero) instead of being followed one
    constraint at a time; at a face optimum, zero blocks whose dual constraint is
    violated re-enter along their steepest feasible direction (at most ``max_expand``
    times, :func:`_entering_blocks`).  ``max_steps`` and ``time_budget`` (CPU seconds)
    bound the work.
    """
    pr = problem
    Xa = pr.Xa
    n, d = Xa.shape
    _, _, P, c = pr.shape
    nb = 2 * P * c
    alpha = pr.alpha
    loss, Y = pr.loss, pr.Y
    Df = pr.Df
    Sx = pr.S
    blocks = np.asarray(blocks)
    qn = np.sqrt(np.einsum("bi,bi->b", q, q))
    qmax = float(qn.max(initial=0.0))
    if qmax <= 0:
        return None
    dual_slack = (zC[:, 0] - np.sqrt(np.einsum("bi,bi->b", zC[:, 1:], zC[:, 1:]))) / max(alpha, 1e-300)
    ab = np.flatnonzero((qn / qmax > dual_slack) & (qn > 1e-10 * qmax))
    f0 = pr.loss.value(np.zeros_like(pr.Y), pr.Y)
    if ab.size == 0:
        # every block looks inactive: the candidate is the zero solution
        return np.zeros(pr.shape)
    if alpha * float(qn.sum()) <= 1e-6 * max(abs(f0), 1e-300) and accept is not None:
        # the weights barely matter: try the zero solution first
        if accept(np.zeros(pr.shape), {}):
            return np.zeros(pr.shape)
    s_idx, i_idx, k_idx = np.unravel_index(blocks[ab], (2, P, c))
    sig = 1.0 - 2.0 * s_idx
    qa = q[ab].copy()                                     # (a, d) current block values
    faces = []
    for t, b in enumerate(ab):
        sbar = sL[:, b] / (row_norms * max(qn[b], 1e-300))
        zbar = zL[:, b] * row_norms / max(alpha, 1e-300)
        cand = np.flatnonzero(sbar < zbar)
        faces.append(list(cand[np.argsort(sbar[cand] / np.maximum(zbar[cand], 1e-300))]))

    basis_cache = {}
    eye_d = np.eye(d)

    def basis(t):
        """Independent prefix of the face rows of block ``t`` (stored back in ``faces[t]``)
        and the null-space basis of those rows, (d, d - k).

        Cached per (pattern, rows); the cache also holds ``pinv`` (k, d), the map
        ``r -> argmin ||A^T lam - r||`` of the kept rows ``A`` (the face multipliers).
        """
        key = (int(i_idx[t]), tuple(faces[t]))
        hit = basis_cache.get(key)
        if hit is None:
            rows = np.asarray(faces[t], dtype=np.intp)
            hit = (list(key[1]), eye_d, None)
            if rows.size:
                A = Xa[rows] * Sx[rows, i_idx[t]][:, None]
                an = np.linalg.norm(A, axis=1)
                k = min(rows.size, d)
                Qf, R = np.linalg.qr(A[:k].T, mode="complete")
                ok = np.abs(np.diagonal(R[:k, :k])) > 1e-8 * an[:k]
                keep = [int(r) for r, o in zip(rows[:k], ok) if o][: d - 1]
                kk = len(keep)
                if kk and not np.all(ok[:kk]):
                    # a dependent row inside the prefix: factor the kept rows alone
                    Ak = Xa[keep] * Sx[keep, i_idx[t]][:, None]
                    Qf, R = np.linalg.qr(Ak.T, mode="complete")
                if kk:
                    # the first kk columns of a Householder QR are those of the prefix
                    pinv = np.linalg.solve(R[:kk, :kk], Qf[:, :kk].T)
                    hit = (keep, Qf[:, kk:], pinv)
                else:
                    hit = ([], eye_d, None)
            basis_cache[key] = hit
            basis_cache[(key[0], tuple(hit[0]))] = hit
        faces[t] = list(hit[0])
        return hit[1]

    def face_pinv(t):
        return basis_cache[(int(i_idx[t]), tuple(faces[t]))][2]

    def face_multipliers(qa_, GZ_):
        """Least-squares multipliers of the face rows of every active block (list of (k,)):
        ``A_t^T lam_t = grad_q f + alpha q_t / ||q_t||`` (the face stationarity)."""
        GQ = (Xa.T @ (Df[:, i_idx] * GZ_[:, k_idx])) * sig          # (d, a)
        Rhs = GQ.T + alpha * qa_ / np.sqrt(np.einsum("bi,bi->b", qa_, qa_))[:, None]
        out = []
        for t in range(ab.size):
            P_t = face_pinv(t) if faces[t] else None
            out.append(np.zeros(0) if P_t is None else P_t @ Rhs[t])
        return out

    layout = {}

    def set_layout():
        """Padded stack of the bases (a, d, dmax) and the (block, slot) of every face
        coordinate: block values and face coordinates convert with one einsum."""
        dims_ = np.array([N.shape[1] for N in Ns], dtype=np.intp)
        dmax = int(dims_.max(initial=1))
        Npad = np.zeros((len(Ns), d, dmax))
        for t, N in enumerate(Ns):
            Npad[t, :, :N.shape[1]] = N
        colblk = np.repeat(np.arange(len(Ns)), dims_)
        offs_ = np.concatenate([[0], np.cumsum(dims_)])
        colloc = np.arange(colblk.size) - offs_[colblk]
        # the entries of the diagonal blocks (the penalty Hessian)
        sz2 = dims_ * dims_
        bt = np.repeat(np.arange(len(Ns)), sz2)
        loc = np.arange(int(sz2.sum())) - np.repeat(np.cumsum(sz2) - sz2, sz2)
        li, lj = loc // dims_[bt], loc % dims_[bt]
        layout.update(Npad=Npad, colblk=colblk, colloc=colloc, dmax=dmax, bd_t=bt,
                      bd_r=offs_[bt] + li, bd_c=offs_[bt] + lj, bd_eye=(li == lj).astype(float))

    def to_blocks(vec):
        """Block values (a, d) of face coordinates ``vec`` (current layout)."""
        vp = np.zeros((layout["Npad"].shape[0], layout["dmax"]))
        vp[layout["colblk"], layout["colloc"]] = vec
        return np.einsum("tij,tj->ti", layout["Npad"], vp)

    def to_coords(qa_):
        """Face coordinates of block values ``qa_`` (a, d) (current layout)."""
        return np.einsum("tij,ti->tj", layout["Npad"], qa_)[layout["colblk"], layout["colloc"]]

    Ns = [basis(t) for t in range(ab.size)]
    n_expand = 0

    xn_cache = {}

    def assemble():
        """Face coordinates: sizes, offsets, the map ``v -> Z`` (``MN``) and output of each column.

        The products ``Xa @ N_t`` are cached per basis (most steps change one face only).
        """
        dims = np.array([N.shape[1] for N in Ns])
        offs = np.concatenate([[0], np.cumsum(dims)])
        parts = []
        for N, t_sig, t_pat in zip(Ns, sig, i_idx):
            hit = xn_cache.get(id(N))
            if hit is None or hit[0] is not N or hit[2] != (t_sig, t_pat):
                hit = (N, (Xa @ N) * (Df[:, t_pat] * t_sig)[:, None], (t_sig, t_pat))
            parts.append(hit)
        xn_cache.clear()
        for hit in parts:
            xn_cache[id(hit[0])] = hit
        MN = np.concatenate([hit[1] for hit in parts], axis=1)
        set_layout()
        return dims, offs, MN, k_idx[layout["colblk"]]

    def predictions(MN, outcol, v):
        Z = np.zeros((n, c))
        for k in range(c):
            sel = outcol == k
            Z[:, k] = MN[:, sel] @ v[sel]
        return Z

    def face_objective(qa_):
        """Objective at block values ``qa_`` (a, d) of the active blocks."""
        contrib = (Xa @ qa_.T) * Df[:, i_idx] * sig
        Z = np.zeros((n, c))
        for k in range(c):
            Z[:, k] = contrib[:, k_idx == k].sum(axis=1)
        return loss.value(Z, Y) + alpha * float(np.sqrt(np.einsum("bi,bi->b", qa_, qa_)).sum())

    def cons(qa_):
        """Cone constraint values of the active blocks (n, a), normalised per row."""
        return (Xa @ qa_.T) * Sx[:, i_idx] / row_norms[:, None]

    # the projection onto the face may violate other constraints: fix the worst ones
    for _ in range(d):
        set_layout()
        qa = to_blocks(to_coords(qa))
        C = cons(qa)
        nq = np.sqrt(np.einsum("bi,bi->b", qa, qa))
        bad = C < -1e-12 * nq[None, :]
        if not bad.any():
            break
        for t in np.flatnonzero(bad.any(axis=0)):
            if len(faces[t]) < d - 1:
                faces[t] = list(faces[t]) + [int(np.argmin(C[:, t]))]
                Ns[t] = basis(t)
    else:
        # some blocks cannot be made feasible on their guessed face: start them from the
        # exact projection of the interior-point block onto its cone instead, on the
        # face of the projection's active rows
        bad_t = np.flatnonzero(bad.any(axis=0))
        U, pidx, plam, _ = project_cones(Xa, Sx, i_idx[bad_t], q[ab[bad_t]].T, row_norms=row_norms)
        for j, t in enumerate(bad_t):
            rows = pidx[:, j][(pidx[:, j] >= 0) & (plam[:, j] > 0)]
            faces[t] = [int(r) for r in rows]
            Ns[t] = basis(t)
            qa[t] = Ns[t] @ (Ns[t].T @ U[:, j])
        C = cons(qa)
        nq = np.sqrt(np.einsum("bi,bi->b", qa, qa))
        if np.any(C < -1e-10 * nq[None, :]):
            if verbose >= 2:
                print("        polish: no feasible starting face")
            return None
    dims, offs, MN, outcol = assemble()
    v = to_coords(qa)
    Hl = None
    proj_failures = 0              # consecutive projected searches that found no step
    t_begin = time.process_time()
    for step_no in range(max_steps):
        if time_budget is not None and time.process_time() - t_begin > time_budget:
            # the face guess is poor (many constraints still to be met one by one): give
            # up and let the interior-point method get closer first
            if verbose >= 2:
                print(f"        polish: time budget {time_budget:.2f}s spent after {step_no} steps")
            return None
        nrm = np.sqrt(np.add.reduceat(v * v, offs[:-1]))
        small = np.flatnonzero(nrm <= 1e-9 * nrm.max(initial=0.0))
        if small.size:
            keep_t = np.setdiff1d(np.arange(ab.size), small)
            if keep_t.size == 0:
                if verbose >= 2:
                    print('        polish: no active block left')
                return None
            ab, sig, i_idx, k_idx = ab[keep_t], sig[keep_t], i_idx[keep_t], k_idx[keep_t]
            faces = [faces[t] for t in keep_t]
            Ns = [Ns[t] for t in keep_t]
            v = np.concatenate([v[offs[t]:offs[t + 1]] for t in keep_t])
            dims, offs, MN, outcol = assemble()
            Hl = None
            continue
        Z = predictions(MN, outcol, v)
        fv = loss.value(Z, Y) + alpha * float(nrm.sum())
        GZ = loss.gradient(Z, Y)
        g = np.zeros(v.size)
        for k in range(c):
            sel = outcol == k
            g[sel] = MN[:, sel].T @ GZ[:, k]
        u = v / np.repeat(nrm, dims)
        g += alpha * u
        dv = None
        if c == 1 and n < FACE_SAMPLE_SPACE_RATIO * v.size:
            # more face coordinates than samples: Newton system solved in sample space
            hw = _loss_hessian(loss, Z, Y)
            dv = _face_newton_sample_space(MN, np.sqrt(hw[(0, 0)]), offs, alpha / nrm, u, g)
        if dv is None:
            if Hl is None or loss.name != "squared":
                hw = _loss_hessian(loss, Z, Y)
                if c == 1:
                    # one output: the face Hessian is one weighted Gram (no scatter)
                    Hl = _weighted_gram(MN, hw[(0, 0)])
                else:
                    Hl = np.zeros((v.size, v.size))
                    for (k1, k2), w in hw.items():
                        s1, s2 = outcol == k1, outcol == k2
                        blk = MN[:, s1].T @ (w[:, None] * MN[:, s2])
                        Hl[np.ix_(s1, s2)] += blk
                        if k1 != k2:
                            Hl[np.ix_(s2, s1)] += blk.T
            H = Hl.copy(order="K")
            r_, c_ = layout["bd_r"], layout["bd_c"]
            H[r_, c_] += alpha * (layout["bd_eye"] - u[r_] * u[c_]) / nrm[layout["bd_t"]]
            H[np.diag_indices(v.size)] += 1e-14 * np.trace(H) / max(v.size, 1)
            try:
                fac = cho_factor(H, lower=True, overwrite_a=True, check_finite=False)
                dv = -cho_solve_fast(fac, g)
            except np.linalg.LinAlgError:
                if verbose >= 2:
                    print('        polish: face Newton system not positive definite')
                return None
        dec = float(-g @ dv)
        if verbose >= 3:
            print(f"      polish {step_no} f {fv:.15g} decrement {dec:.2e} blocks {ab.size} dim {v.size}")
        if dec <= 1e-16 * max(abs(fv), 1e-300):
            # converged on the face: done if certified, else release fixed rows with
            # negative multipliers
            qa = to_blocks(v)
            # multipliers of the fixed rows (least squares on the face stationarity)
            lams = face_multipliers(qa, GZ)
            if accept is not None:
                Q = np.zeros((d, nb))
                Q[:, blocks[ab]] = qa.T
                face_mult = {int(blocks[ab[t]]): (np.asarray(faces[t], dtype=np.intp),
                                                  np.maximum(lams[t], 0.0))
                             for t in range(ab.size)}
                if accept(Q.reshape(pr.shape), face_mult):
                    return Q.reshape(pr.shape)
            released = False
            for t in range(ab.size):
                rows = faces[t]
                if not rows:
                    continue
                scaled = lams[t] * row_norms[rows] / max(alpha, 1e-300)
                if scaled.min() < -1e-8:
                    del faces[t][int(np.argmin(scaled))]
                    released = True
            if not released:
                new = None
                if n_expand < max_expand:
                    n_expand += 1
                    new = _entering_blocks(pr, blocks, ab, GZ, row_norms)
                if new is None:
                    Q = np.zeros((d, nb))
                    Q[:, blocks[ab]] = qa.T
                    return Q.reshape(pr.shape)
                # zero blocks whose dual constraint is violated enter along their
                # steepest feasible descent direction, on the face of that direction
                pos, q_new, faces_new = new
                if verbose >= 3:
                    print(f"      polish: {pos.size} blocks enter")
                s_n, i_n, k_n = np.unravel_index(blocks[pos], (2, P, c))
                ab = np.concatenate([ab, pos])
                sig = np.concatenate([sig, 1.0 - 2.0 * s_n])
                i_idx = np.concatenate([i_idx, i_n])
                k_idx = np.concatenate([k_idx, k_n])
                faces = faces + faces_new
                qa = np.vstack([qa, q_new])
                Ns = Ns + [basis(t) for t in range(ab.size - pos.size, ab.size)]
                dims, offs, MN, outcol = assemble()
                v = to_coords(qa)
                Hl = None
                continue
            Ns = [basis(t) for t in range(ab.size)]
            dims, offs, MN, outcol = assemble()
            v = to_coords(qa)
            Hl = None
            continue
        # ratio test: keep the non-fixed cone constraints satisfied
        qa = to_blocks(v)
        dqa = to_blocks(dv)
        C0 = np.maximum(cons(qa), 0.0)
        dC = cons(dqa)
        for t in range(ab.size):
            if faces[t]:
                dC[faces[t], t] = 0.0
        dqn = np.sqrt(np.einsum("bi,bi->b", dqa, dqa))
        with np.errstate(divide="ignore", invalid="ignore"):
            # rows dependent on the face rows have dC ~ rounding: ignore them
            ratio = np.where(dC < -1e-10 * dqn[None, :], C0 / -dC, np.inf)
        flat = int(np.argmin(ratio))
        t_max = float(ratio.flat[flat])
        step = min(1.0, t_max)
        if t_max < 1.0:
            # blocks whose Newton step is longer than the block itself and points back
            # through the origin want to vanish (the norm is not smooth at zero): drop
            # them instead of crawling along their cone one constraint at a time
            qn_a = np.sqrt(np.einsum("bi,bi->b", qa, qa))
            shrink = (np.einsum("bi,bi->b", qa, dqa) < 0) & (dqn > qn_a) & (ratio.min(axis=0) < 1.0)
            if np.any(shrink):
                vc = v.copy()
                for t in np.flatnonzero(shrink):
                    vc[offs[t]:offs[t + 1]] = 0.0
                nrm_c = np.array([np.linalg.norm(vc[offs[t]:offs[t + 1]]) for t in range(ab.size)])
                f_c = loss.value(predictions(MN, outcol, vc), Y) + alpha * float(nrm_c.sum())
                # only drop when it does not raise the objective (else take the ratio step)
                if f_c <= fv:
                    v = vc
                    if verbose >= 3:
                        print(f"      polish: dropping {int(shrink.sum())} vanishing blocks")
                    continue
            near = ratio <= BLOCKING_AT_ONCE
            if t_max <= BLOCKING_AT_ONCE and int(near.sum()) >= 2:
                # several rows block the step at once (within a negligible move): put
                # them all on their faces, nearest first, and take a new Newton step
                added = 0
                for t in np.flatnonzero(near.any(axis=0)):
                    rows_t = np.flatnonzero(near[:, t])
                    rows_t = rows_t[np.argsort(ratio[rows_t, t])]
                    room = d - 1 - len(faces[t])
                    if room <= 0:
                        continue
                    faces[t] = list(faces[t]) + [int(r) for r in rows_t[:room]]
                    Ns[t] = basis(t)
                    added += 1
                if added:
                    dims, offs, MN, outcol = assemble()
                    v = to_coords(qa)
                    Hl = None
                    if verbose >= 3:
                        print(f"      polish: {int(near.sum())} blocking rows join their faces")
                    continue
            projected = None
            s_try = 1.0
            f_ratio = None
            if t_max < PROJECTED_SEARCH_BELOW and proj_failures < PROJECTED_SEARCH_FAILURES:
                # the ratio step would crawl: the objective there is the bar to beat
                v_r = v + t_max * dv
                f_ratio = loss.value(predictions(MN, outcol, v_r), Y) + alpha * float(
                    np.sqrt(np.add.reduceat(v_r * v_r, offs[:-1])).sum())
            while (f_ratio is not None and s_try >= PROJECTED_SEARCH_MIN and s_try > 4 * t_max
                   and int((ratio < s_try).sum()) >= 2):
                # the step crosses several constraints: instead of meeting them one ratio
                # step at a time, project the blocks that leave their cones back exactly
                # (a projected search along the Newton direction) and take the
                # projection's active rows as their new faces
                out_t = np.flatnonzero((ratio < s_try).any(axis=0))
                q_try = qa + s_try * dqa
                U, pidx, plam, _ = project_cones(Xa, Sx, i_idx[out_t], q_try[out_t].T,
                                                 row_norms=row_norms)
                q_try[out_t] = U.T
                f_try = face_objective(q_try)
                if f_try <= fv - 1e-4 * s_try * dec and f_try < f_ratio:
                    projected = (out_t, q_try, pidx, plam)
                    break
                s_try *= 0.25
            if f_ratio is not None:
                proj_failures = 0 if projected is not None else proj_failures + 1
            if projected is not None:
                out_t, q_try, pidx, plam = projected
                for j, t in enumerate(out_t):
                    rows = pidx[:, j][(pidx[:, j] >= 0) & (plam[:, j] > 0)]
                    faces[t] = [int(r) for r in rows]
                    Ns[t] = basis(t)
                dims, offs, MN, outcol = assemble()
                v = to_coords(q_try)
                Hl = None
                if verbose >= 3:
                    print(f"      polish: projected step {s_try:.3g} ({out_t.size} blocks "
                          f"left their cones)")
                continue
        if verbose >= 4:
            row_, t_ = np.unravel_index(flat, ratio.shape)
            print(f"        ratio test: step {t_max:.3e} block {t_} |q| {np.linalg.norm(qa[t_]):.3e} "
                  f"|dq| {dqn[t_]:.3e} face size {len(faces[t_])}")
        if step <= 1e-12:
            # degenerate: a constraint at zero blocks the direction; fix it and retry
            row, t = np.unravel_index(flat, ratio.shape)
            if int(row) in faces[t] or len(faces[t]) >= d - 1:
                if verbose >= 2:
                    print('        polish: degenerate step at a full face')
                return None
            faces[t] = list(faces[t]) + [int(row)]
            Ns[t] = basis(t)
            dims, offs, MN, outcol = assemble()
            v = to_coords(qa)
            Hl = None
            continue
        # Armijo backtracking on the face objective
        while step > 1e-12:
            v_new = v + step * dv
            nrm_new = np.sqrt(np.add.reduceat(v_new * v_new, offs[:-1]))
            Z_new = predictions(MN, outcol, v_new)
            f_new = loss.value(Z_new, Y) + alpha * float(nrm_new.sum())
            if f_new <= fv - 1e-4 * step * dec:
                break
            step *= 0.5
        else:
            if verbose >= 2:
                print('        polish: line search failed')
            return None
        v = v_new
        if step >= t_max * (1 - 1e-12) and np.isfinite(t_max):
            row, t = np.unravel_index(flat, ratio.shape)
            qa = to_blocks(v)
            faces[t] = list(faces[t]) + [int(row)]
            Ns[t] = basis(t)
            dims, offs, MN, outcol = assemble()
            v = to_coords(qa)
            Hl = None
    if verbose >= 2:
        print('        polish: step limit reached')
    return None


def _ipm_cost(n, d, ncols, c, squared):
    """Rough flop count of one IPM iteration with ``ncols`` columns (see :class:`_NewtonSystem`)."""
    pd = ncols * d
    dense = pd ** 3 / 3.0 + (0 if squared else n * pd ** 2)
    wood = n * n * pd + n ** 3 / 3.0
    return min(dense, wood) if c == 1 else dense


def _compress_rows(problem: ReLUProblem, min_saving=0.1):
    """Merge duplicate samples of a squared-loss problem into weighted rows.

    Samples ``j`` with identical rows of ``Xa`` and of the masks ``D`` give identical
    cone constraints and share their predictions, so with the group means ``ybar_g``
    and sizes ``w_g``::

        ||Z - Y||^2 / (2 n) = sum_g w_g ||z_g - ybar_g||^2 / (2 n) + const.

    Scaling the representative row of group ``g`` (and ``ybar_g``) by
    ``s_g = sqrt(w_g m / n)`` (``m`` groups) turns the first term into the squared loss
    of an ``m``-sample problem, and leaves the cone constraints unchanged (positive
    row scaling).  The variables ``Q`` are the same in both problems.  Returns
    ``None`` when the loss is not squared or fewer than ``min_saving n`` rows merge,
    else ``(reduced problem, first, scale)`` (``first``: representative rows).
    """
    if problem.loss.name != "squared":
        return None
    Xa = problem.Xa
    n = Xa.shape[0]
    key = np.ascontiguousarray(np.hstack([Xa.astype(np.float64), problem.Df.astype(np.float64)]))
    _, first, inv, counts = np.unique(key, axis=0, return_index=True, return_inverse=True,
                                      return_counts=True)
    m = first.size
    if m > (1.0 - min_saving) * n:
        return None
    inv = np.asarray(inv).ravel()
    Y = problem.Y
    Ybar = np.zeros((m, Y.shape[1]))
    np.add.at(Ybar, inv, Y)
    Ybar /= counts[:, None]
    scale = np.sqrt(counts * m / n)
    red = ReLUProblem(Xa[first] * scale[:, None].astype(Xa.dtype), problem.D[first],
                      Ybar * scale[:, None], problem.loss, problem.alpha)
    return red, first, scale


def solve_relu_ipm(problem: ReLUProblem, Q0=None, *, tol=1e-6, max_iter=1000, verbose=0,
                   full=None, init_size=None, max_rounds=30, callback=None, ipm_options=None,
                   monitor=None, gated_seed=True, gates=None) -> dict:
    """Solve the ReLU program (see :func:`_solve_relu_ipm` for the parameters and results).

    Squared-loss problems with duplicate samples are solved on the merged rows
    (:func:`_compress_rows`) and certified on the original problem.
    """
    with np.errstate(all="ignore"):
        comp = _compress_rows(problem)
        if comp is None:
            out = _solve_relu_ipm(problem, Q0, tol=tol, max_iter=max_iter, verbose=verbose,
                                  full=full, init_size=init_size, max_rounds=max_rounds,
                                  callback=callback, ipm_options=ipm_options, monitor=monitor,
                                  gated_seed=gated_seed, gates=gates)
            return _keep_better_warm_start(problem, Q0, out, tol, verbose)
        red, first, scale = comp
        if verbose:
            print(f"[relu ipm] {problem.Xa.shape[0]} samples merged into {red.Xa.shape[0]} distinct rows")
        if monitor is not None:
            monitor = _shifted_monitor(monitor, problem, red)
        out = _solve_relu_ipm(red, Q0, tol=tol, max_iter=max_iter, verbose=verbose, full=full,
                              init_size=init_size, max_rounds=max_rounds, callback=callback,
                              ipm_options=ipm_options, monitor=monitor, gated_seed=gated_seed,
                              gates=gates)
        return _keep_better_warm_start(problem, Q0, _lift_result(problem, out, first, scale, tol),
                                       tol, verbose)


def _shifted_monitor(monitor, problem, red):
    """Report objectives of the merged problem ``red`` as those of ``problem``.

    The two squared losses differ by a constant (the within-group variance);
    the weights ``Q`` are the same variables.
    """
    Z0 = np.zeros_like(problem.Y)
    shift = problem.loss.value(Z0, problem.Y) - red.loss.value(np.zeros_like(red.Y), red.Y)
    tiny = np.finfo(float).tiny

    def shifted(iteration, Q, objective, relative_gap, violation=0.0):
        gap = relative_gap * max(abs(objective), tiny)
        obj = objective + shift
        monitor(iteration, Q, obj, gap / max(abs(obj), tiny), violation)

    return shifted


def _keep_better_warm_start(problem, Q0, out, tol, verbose=0):
    """Return the feasible warm start instead of a worse, unconverged IPM result."""
    if Q0 is None or out.get("converged"):
        return out
    Q = np.array(Q0, dtype=float).reshape(problem.shape)
    viol = problem.violation(Q)
    if viol > 1e-9 or not problem.objective(Q) < out["gap"].primal:
        return out
    gap = problem.gap(Q, refine_iter=300)
    if verbose:
        print(f"[relu ipm] the IPM ended above its warm start: returning the warm start "
              f"(objective {gap.primal:.10g}, rel. gap {gap.relative_gap:.3e})")
    res = dict(out)
    A = problem.refine_multipliers(-problem.loss.gradient(problem.predict(Q), problem.Y), None,
                                   n_iter=300)
    res.update(Q=Q, gap=gap, violation=viol, converged=bool(gap.relative_gap <= tol),
               multipliers=A)
    return res


def _lift_result(problem, out, first, scale, tol):
    """Certificate on the original problem of a solution of the merged problem.

    A multiplier ``a'_g`` of the scaled row ``s_g x_g`` is the multiplier ``s_g a'_g`` of
    the representative sample; blocks whose dual norm still exceeds ``alpha`` get their
    exact (projection) multipliers, as in :func:`_certify`.
    """
    n = problem.Xa.shape[0]
    Q = np.array(out["Q"], dtype=float)
    row_norms = np.sqrt(np.einsum("nd,nd->n", problem.Xa, problem.Xa))
    A = np.zeros((n,) + problem.shape[1:])
    if out.get("multipliers") is not None:
        A[first] = out["multipliers"] * scale[:, None, None, None]
    viol = problem.violation(Q)
    if viol > 0:
        support = np.flatnonzero(group_norms(Q).ravel() > 0)
        Q = _restore_feasibility(problem, Q, support, row_norms)
        viol = problem.violation(Q)
    Z = problem.predict(Q)
    gap = _certify(problem, Q, A, Z, row_norms)
    res = dict(out)
    res.update(Q=Q, gap=gap, violation=viol, multipliers=A,
               converged=bool(gap.relative_gap <= tol and viol <= tol))
    return res


def _gated_seed_blocks(problem: ReLUProblem, verbose=0):
    """Flat ids of both ReLU blocks ``(s, i, k)``, ``s = 0, 1``, of every pattern-output
    pair ``(i, k)`` active in a rough (relative gap ``GATED_SEED_TOL``) solution of the
    gated program on the same data, patterns, loss and ``alpha``.

    The gated program is the ReLU program without its cone constraints; its active
    patterns predict the ReLU support well, and it is solved in a fraction of one ReLU
    round (201_pol, 100 gates: 62 active patterns, 124 seeded blocks in 13 s; the ReLU
    solve then needed 2 interior-point rounds instead of more than 3).
    """
    from ..problems import GatedReLUProblem
    from .working_set import solve_gated_working_set

    _, _, P, c = problem.shape
    gp = GatedReLUProblem(problem.Xa, problem.D, problem.Y, problem.loss, problem.alpha)
    out = solve_gated_working_set(gp, tol=GATED_SEED_TOL, verbose=max(verbose - 1, 0))
    active = np.flatnonzero(group_norms(out["U"]).ravel() > 0)        # flat (i, k)
    return np.concatenate([active, P * c + active]).astype(np.intp)


def _solve_relu_ipm(problem: ReLUProblem, Q0=None, *, tol=1e-6, max_iter=1000, verbose=0,
                    full=None, init_size=None, max_rounds=30, callback=None, ipm_options=None,
                    monitor=None, gated_seed=True, gates=None) -> dict:
    """Interior-point solver of the ReLU program, with a working set of blocks when large.

    Parameters
    ----------
    problem : ReLUProblem
    Q0 : ndarray (d, 2, P, c), optional
        Warm start; returned at once (``n_iter = 0``) when it already satisfies the
        stopping test, otherwise its support seeds the working set.
    tol : float
        Target for the relative duality gap and the relative violation.
    max_iter : int
        Budget of IPM iterations over all rounds.
    full : bool, optional
        Put every block in the IPM (default: when one IPM iteration on all blocks is
        cheap enough).  Working-set mode also puts every block in when its first set
        already costs ``FULL_FRACTION`` of an iteration on every block.
    monitor : cvxnn._control.SolveMonitor, optional
        Called with every certified point (``Q``, objective, relative gap,
        violation): after each round and each polish; it may raise to stop.
    gated_seed : bool
        Working-set mode without a warm start: the first working set also holds both
        blocks of every pattern active in a rough solution of the gated program on the
        same patterns (:func:`_gated_seed_blocks`), so that the interior-point method
        is not restarted once per batch of entering blocks.
    gates : ndarray (d, P), optional
        The gates of the patterns (``D[:, i] = 1[Xa g_i > 0]``; ``d - 1`` rows: no bias
        entry).  They select the cone rows the interior-point method starts on
        (:func:`screen_cone_rows`); rows its iterates violate join on the way, every
        result is certified over every row, and a run (or, in working-set mode, a
        round with no block left to enter) that ends uncertified is redone on every row.

    Returns
    -------
    dict with ``Q``, ``gap`` (:class:`~cvxnn.problems.Gap`), ``violation``,
    ``multipliers`` (n, 2, P, c), ``n_iter`` (IPM iterations), ``converged``,
    ``history`` (``(n_iter, seconds, rel_gap, violation)`` per round), ``n_rounds``.
    """
    t0 = time.perf_counter()
    d, _, P, c = problem.shape
    nb = 2 * P * c
    n = problem.Xa.shape[0]
    alpha = problem.alpha
    row_norms = np.sqrt(np.einsum("nd,nd->n", problem.Xa, problem.Xa))
    squared = problem.loss.name == "squared"
    Xkr = None
    if n * d * d <= 4_000_000:
        Xkr = (problem.Xa[:, :, None] * problem.Xa[:, None, :]).reshape(n, d * d)
    if full is None:
        full = _ipm_cost(n, d, P * c, c, squared) <= 3e9
    row_keep = screen_cone_rows(problem, gates)
    history = []
    total = 0

    def finish(Q, A_work, work, rho_info, dual_norms=None):
        """Restore feasibility, drop zero blocks, certify; returns ``(Q, gap, violation, A)``.

        ``dual_norms``: the interior-point dual norms of the blocks ``work``.  Blocks whose
        dual constraint holds strictly (``dual_norms <= alpha (1 - DUAL_ZERO_MARGIN)``, so
        they vanish at the optimum) or that are negligible are set to zero when the
        certified gap stays within ``max(tol, gap)``; so is the whole network when its
        penalty is negligible (``alpha`` just above ``alpha_max``).
        """
        qn = group_norms(Q).ravel()
        keep = np.flatnonzero(qn > 0)
        Q = _restore_feasibility(problem, Q, keep, row_norms)
        A = np.zeros((n, nb))
        if A_work is not None:
            A[:, work] = A_work
        if rho_info is not None:
            others, idx, lam = rho_info
            A[:, others] = multipliers_dense(n, idx, lam)
        A = A.reshape((n,) + problem.shape[1:])
        Z = problem.predict(Q)
        gap = _certify(problem, Q, A, Z, row_norms)
        # interior-point iterates are never exactly sparse: zero the blocks that vanish at
        # the optimum (first those whose dual constraint holds strictly, then the
        # negligible ones); the first candidate whose certificate is no worse wins
        qn = group_norms(Q).ravel()
        candidates = []
        f_abs = max(abs(gap.primal), np.finfo(float).tiny)
        if alpha * float(qn.sum()) <= ZERO_NETWORK_PENALTY * f_abs:
            candidates.append(qn > 0)                    # the zero network
        if dual_norms is not None:
            dn = np.full(nb, np.inf)
            dn[work] = dual_norms
            candidates.append((qn > 0) & (dn <= alpha * (1.0 - DUAL_ZERO_MARGIN)))
        candidates += [(qn > 0) & (qn <= thr * qn.max(initial=0.0)) for thr in (1e-5, 1e-7, 1e-9)]
        for tiny in candidates:
            if not np.any(tiny):
                continue
            Q2 = Q.copy()
            Q2.reshape(d, -1)[:, tiny] = 0.0
            Z2 = problem.predict(Q2)
            A2 = A.copy()
            gap2 = _certify(problem, Q2, A2, Z2, row_norms)
            if gap2.relative_gap <= max(tol, gap.relative_gap):
                Q, Z, gap, A = Q2, Z2, gap2, A2
                break
        viol = problem.violation(Q)
        return Q, gap, viol, A

    # ---- warm start: certify Q0 directly
    work = np.zeros(0, dtype=np.intp)
    if Q0 is not None:
        Q = np.array(Q0, dtype=float).reshape(problem.shape)
        support = np.flatnonzero(group_norms(Q).ravel() > 0)
        Q = _restore_feasibility(problem, Q, support, row_norms)
        Z = problem.predict(Q)
        Theta = -problem.loss.gradient(Z, problem.Y)
        rho, idx, lam = price_blocks(problem, Theta, row_norms=row_norms)
        Qc, gap, viol, A = finish(Q, None, work, (np.arange(nb), idx, lam))
        history.append((0, time.perf_counter() - t0, gap.relative_gap, gap.primal, viol))
        if monitor is not None:
            monitor(0, Qc, gap.primal, gap.relative_gap, viol)
        if verbose:
            print(f"[relu ipm] warm start: objective {gap.primal:.10g} rel. gap {gap.relative_gap:.3e} "
                  f"violation {viol:.3e}")
        if gap.relative_gap <= tol and viol <= tol:
            return {"Q": Qc, "gap": gap, "violation": viol, "multipliers": A, "n_iter": 0,
                    "converged": True, "history": history, "n_rounds": 0}
    else:
        Q = np.zeros(problem.shape)
        support = np.zeros(0, dtype=np.intp)
        rho = None

    cert_tol = 1e-3 * tol
    ipm_kw = dict(tol=min(1e-9, 1e-3 * tol), cert_tol=cert_tol, **(ipm_options or {}))
    def exact_certificate(Qp):
        """Certificate of a polished point: optimal multipliers of every block."""
        Zp = problem.predict(Qp)
        Theta = -problem.loss.gradient(Zp, problem.Y)
        rho_p, idx, lam = price_blocks(problem, Theta, row_norms=row_norms)
        A = multipliers_dense(n, idx, lam).reshape((n,) + problem.shape[1:])
        return problem.gap(Qp, A=A, Z=Zp, refine_iter=0), A, rho_p

    price_memo = {}

    def cheap_certificate(Qc, face_mult, zL_work, work):
        """Certificate with the face multipliers (active blocks) and the interior-point
        multipliers (other working blocks); only blocks whose dual norm then exceeds
        ``alpha`` are priced exactly.  Returns ``(gap, A, rho)`` (``rho``: dual norms)."""
        Af = np.zeros((n, nb))
        Af[:, work] = zL_work
        for b, (rows, lam) in face_mult.items():
            Af[:, b] = 0.0
            Af[rows, b] = lam
        A = Af.reshape((n,) + problem.shape[1:])
        Zc = problem.predict(Qc)
        Theta = -problem.loss.gradient(Zc, problem.Y)
        norms = problem.dual_norms(Theta, A).ravel()
        bad = np.flatnonzero(norms > alpha * (1 + 1e-4 * tol))
        if bad.size:
            # successive certificates price mostly the same blocks at nearby points: the
            # last projection's active rows are the guess to start from; otherwise the
            # d - 1 rows with the largest (scaled) interior-point multipliers
            guess = np.full((d, bad.size), -1, dtype=np.intp)
            k_top = min(d - 1, n)
            for j, b in enumerate(bad):
                if b in price_memo:
                    guess[:, j] = price_memo[b]
                elif k_top > 0:
                    w = Af[:, b] * row_norms
                    top = np.argpartition(-w, k_top - 1)[:k_top]
                    top = top[w[top] > 0]
                    guess[:top.size, j] = top
            rho_b, idx, lam = price_blocks(problem, Theta, bad, row_norms=row_norms,
                                           init_idx=guess)
            for j, b in enumerate(bad):
                price_memo[b] = idx[:, j]
            better = rho_b < norms[bad]
            Af[:, bad[better]] = multipliers_dense(n, idx[:, better], lam[:, better])
            norms[bad[better]] = rho_b[better]
        return problem.gap(Qc, A=A, Z=Zc, refine_iter=0), A, norms

    def make_polisher(work, best):
        def polisher(state):
            found = {}

            def accept(Qc, face_mult):
                gc, Ac, rho_c = cheap_certificate(Qc, face_mult, state["zL"], work)
                if not found or gc.relative_gap < found["gap"].relative_gap:
                    found.update(Q=Qc, gap=gc, A=Ac, rho=rho_c)
                return gc.relative_gap <= POLISH_ACCEPT * tol

            # while the interior-point method runs, a poor face guess (many constraints
            # to meet one at a time) is abandoned early: a later, closer iterate gives a
            # better guess; the last attempt (after the method) may take longer
            steps = 40 if state.get("it_time") is not None else 300
            Qp = polish_on_face(problem, work, state["q"], state["sL"], state["zL"], state["zC"],
                                row_norms, verbose=verbose, accept=accept, max_steps=steps)
            if found and (Qp is None or found["gap"].relative_gap <= tol):
                Qp = found["Q"]
            if Qp is None:
                if verbose >= 2:
                    print(f"   polish at ipm gap {state['relgap']:.1e}: face solve failed")
                return False
            if found and found["Q"] is Qp:
                gp, Ap, rho_p = found["gap"], found["A"], found["rho"]
            else:
                gp, Ap, rho_p = cheap_certificate(Qp, {}, state["zL"], work)
            vp = problem.violation(Qp)
            # the restricted program is solved when its own blocks are dual feasible
            restricted_ok = bool(rho_p[work].max(initial=0.0) <= alpha * (1 + 1e-3 * tol))
            if verbose >= 2:
                print(f"   polish at ipm gap {state['relgap']:.1e}: rel. gap {gp.relative_gap:.3e} "
                      f"violation {vp:.1e} restricted optimal {restricted_ok}")
            if best.get("gap") is None or gp.relative_gap < best["gap"].relative_gap:
                best.update(Q=Qp, gap=gp, viol=vp, A=Ap, rho=rho_p, restricted_ok=restricted_ok)
            if monitor is not None:
                monitor(total, Qp, gp.primal, gp.relative_gap, vp)
            # all blocks in the working set: only a certified point ends the method
            return (gp.relative_gap <= tol and vp <= tol) or (restricted_ok and work.size < nb)
        return polisher

    def solve_full():
        """One interior-point run on every block (on the screened cone rows first, when
        there are any; on every row if that run does not end certified)."""
        nonlocal total
        work = np.arange(nb)
        for keep in ([row_keep, None] if row_keep is not None else [None]):
            ipm = RestrictedIPM(problem, work, Xkr=Xkr, row_keep=keep)
            best = {}
            res = ipm.solve(None, max_iter=min(200, max(1, max_iter - total)),
                            verbose=max(verbose - 1, 0), polish=make_polisher(work, best), **ipm_kw)
            total += res["n_iter"]
            if best.get("gap") is not None and best["gap"].relative_gap <= tol and best["viol"] <= tol:
                Q, gap, viol, A = best["Q"], best["gap"], best["viol"], best["A"]
            else:
                Q = res["q"].T.reshape(problem.shape).copy()
                Q, gap, viol, A = finish(Q, res["zL"], work, None, res["dual_norms"])
                if best.get("gap") is not None and best["gap"].relative_gap < gap.relative_gap:
                    Q, gap, viol, A = best["Q"], best["gap"], best["viol"], best["A"]
            history.append((total, time.perf_counter() - t0, gap.relative_gap, gap.primal, viol))
            if monitor is not None:
                monitor(total, Q, gap.primal, gap.relative_gap, viol)
            converged = gap.relative_gap <= tol and viol <= tol
            if verbose:
                rows = "" if keep is None else f" on {int(keep.sum())} of {keep.size} cone rows"
                print(f"[relu ipm] full IPM{rows}: {res['n_iter']} iterations ({res['status']}) "
                      f"objective {gap.primal:.12g} rel. gap {gap.relative_gap:.3e} violation "
                      f"{viol:.3e} time {time.perf_counter() - t0:.2f}s")
            if converged:
                break
        return {"Q": Q, "gap": gap, "violation": viol, "multipliers": A, "n_iter": total,
                "converged": bool(converged), "history": history, "n_rounds": 1}

    if full:
        return solve_full()

    # ---- working set
    if rho is None:
        Theta = -problem.loss.gradient(problem.predict(Q), problem.Y)
        rho, _, _ = price_blocks(problem, Theta, row_norms=row_norms)
    if init_size is None:
        # as many columns as one cheap IPM iteration allows
        init_size = 8
        while init_size < nb and _ipm_cost(n, d, init_size, c, squared) <= 1e9:
            init_size *= 2
        init_size = max(8, min(nb, init_size))
    cand = np.argsort(-rho)
    cand = cand[rho[cand] > alpha]
    work = np.union1d(support, cand[:max(0, init_size - support.size)]).astype(np.intp)
    if gated_seed and Q0 is None:
        seed = _gated_seed_blocks(problem, verbose)
        if verbose:
            print(f"[relu ipm] gated seed: {seed.size} blocks, {np.setdiff1d(seed, work).size} "
                  f"beyond the {work.size} most violated ({time.perf_counter() - t0:.2f}s)")
        work = np.union1d(work, seed).astype(np.intp)
    _, w_pat, w_out = np.unravel_index(work, (2, P, c))
    ncols = np.unique(w_pat * c + w_out).size
    if _ipm_cost(n, d, ncols, c, squared) >= FULL_FRACTION * _ipm_cost(n, d, P * c, c, squared):
        # the working set is nearly everything: a restart for a few late violators would
        # cost more than the blocks left out
        if verbose:
            print(f"[relu ipm] the working set has {ncols} of {P * c} columns: every block enters")
        return solve_full()
    converged = False
    n_rounds = 0
    ws_keep = row_keep          # screened cone rows, until a round fails with every block priced
    screen_from = 1e-2
    res = None
    gap = None
    viol = np.inf
    A = None
    while n_rounds < max_rounds and total < max_iter:
        n_rounds += 1
        ipm = RestrictedIPM(problem, work, Xkr=Xkr, row_keep=ws_keep)
        others = np.setdiff1d(np.arange(nb), work)
        best = {}
        polisher = make_polisher(work, best)
        entering = {}

        def hook(state, others=others, polisher=polisher, entering=entering, work=work):
            """Price the blocks outside the working set at every decade of the gap (from
            ``screen_from``); stop the round as soon as some must enter, else polish."""
            if "add" in entering:
                return True
            if others.size and not entering.get("clean"):
                Qf = np.zeros((d, nb))
                Qf[:, work] = state["q"].T
                Zs = problem.predict(Qf.reshape(problem.shape))
                Theta_s = -problem.loss.gradient(Zs, problem.Y)
                rho_s, _, _ = price_blocks(problem, Theta_s, others, row_norms=row_norms,
                                           screen=ENTER_NEAR * alpha)
                mask = rho_s > alpha * (1 + 1e-3)
                if verbose >= 2:
                    print(f"   screening at ipm gap {state['relgap']:.1e}: {int(mask.sum())} violators")
                if np.any(mask):
                    # the round restarts: let the nearly violated blocks enter too (they
                    # would otherwise often force one more cold restart later)
                    near = rho_s > ENTER_NEAR * alpha
                    add = others[near]
                    entering["add"] = add[np.argsort(-rho_s[near])]
                    entering["n_violators"] = int(mask.sum())
                    return True
                if state["relgap"] <= 1e-5:
                    entering["clean"] = True
            if state["relgap"] <= 1e-5:
                return polisher(state)
            return False

        res = ipm.solve(None, max_iter=min(200, max_iter - total), verbose=max(verbose - 1, 0),
                        polish=hook, polish_from=screen_from if others.size else 1e-5, **ipm_kw)
        total += res["n_iter"]
        if "add" in entering:
            add = entering["add"]
            history.append((total, time.perf_counter() - t0, np.nan, np.nan, np.nan))
            if verbose:
                print(f"[relu ipm] round {n_rounds:2d} |W| {work.size:4d} ipm {res['n_iter']:3d} "
                      f"(screening) violators {entering['n_violators']} entering {add.size} "
                      f"time {time.perf_counter() - t0:.2f}s")
            work = np.union1d(work, add[:max(8, 3 * work.size)]).astype(np.intp)
            continue
        if best.get("gap") is not None:
            Q, gap, viol, A = best["Q"], best["gap"], best["viol"], best["A"]
            rho_o = best["rho"][others]
        else:
            Qf = np.zeros((d, nb))
            Qf[:, work] = res["q"].T
            Q = Qf.reshape(problem.shape)
            Z = problem.predict(Q)
            Theta = -problem.loss.gradient(Z, problem.Y)
            rho_o, idx, lam = price_blocks(problem, Theta, others, row_norms=row_norms)
            Q, gap, viol, A = finish(Q, res["zL"], work, (others, idx, lam), res["dual_norms"])
        history.append((total, time.perf_counter() - t0, gap.relative_gap, gap.primal, viol))
        if monitor is not None:
            monitor(total, Q, gap.primal, gap.relative_gap, viol)
        viol_mask = rho_o > alpha
        if verbose:
            print(f"[relu ipm] round {n_rounds:2d} |W| {work.size:4d} ipm {res['n_iter']:3d} ({res['status']}) "
                  f"objective {gap.primal:.12g} rel. gap {gap.relative_gap:.3e} violation {viol:.3e} "
                  f"violators {int(viol_mask.sum())} time {time.perf_counter() - t0:.2f}s")
        if callback is not None:
            callback({"Q": Q, "gap": gap, "violation": viol, "n_iter": total})
        converged = gap.relative_gap <= tol and viol <= tol
        if converged:
            break
        add = others[viol_mask]
        if add.size:
            viol_mask = rho_o > ENTER_NEAR * alpha         # nearly violated blocks enter too
            add = others[viol_mask]
        if add.size == 0:
            # every dual constraint holds: only the restricted solve can be improved
            if ws_keep is not None:
                # first on every cone row (the screened rows gave a relaxation only)
                if verbose:
                    print("[relu ipm] the round on the screened cone rows is not certified: "
                          "every row from now on")
                ws_keep = None
                continue
            if ipm_kw["cert_tol"] <= 1e-3 * tol * 1e-4:
                break
            ipm_kw = dict(ipm_kw, tol=ipm_kw["tol"] * 1e-2, cert_tol=ipm_kw["cert_tol"] * 1e-2)
            continue
        add = add[np.argsort(-rho_o[viol_mask])]
        cap = max(8, work.size)
        work = np.union1d(work, add[:cap]).astype(np.intp)
    return {"Q": Q, "gap": gap, "violation": viol, "multipliers": A, "n_iter": total,
            "converged": bool(converged), "history": history, "n_rounds": n_rounds}
