"""Working-set interior-point solver for the cone-constrained ReLU program.

The ReLU program (see :mod:`cvxnn.problems`) has ``2 P c`` blocks of size
``d`` but its solutions use few of them.  The solver alternates

1. a primal-dual interior-point method (IPM) on the program *restricted* to a
   working set ``B`` of blocks (the other blocks fixed at zero), and
2. pricing on the full program: with ``Theta = -grad L(Z)`` at the restricted
   solution, the dual constraint of block ``b = (s, i, k)`` is
   ``rho_b = min_{a >= 0} || +-Xa^T D_i Theta_k + Xa^T S_i a || <= alpha``
   and ``rho_b = ||proj_{K_i}(+-Xa^T D_i Theta_k)||`` is computed exactly by
   :func:`~cvxnn.solvers.cone_projection.project_cones`, which also returns the
   minimising multipliers ``a``.  Blocks with ``rho_b > alpha`` join ``B``.

The loop stops when the full duality gap of :meth:`ReLUProblem.gap` (dual point
``Theta`` and the projection multipliers of *all* blocks) and the relative
constraint violation are below ``tol``.  The IPM iterates satisfy the cone
constraints only up to the residual of ``S_i Xa q_b = s_b``; at the end every
block is projected exactly onto its cone (a change of the order of that
residual), so the returned weights are feasible to rounding and the network
built from them reproduces the convex objective.

Restricted program (``m`` blocks, block ``b`` with pattern ``i_b``, sign
``sigma_b = +1`` for ``V`` and ``-1`` for ``W`` and output ``k_b``)::

    min_{q, tau}  L(Z) + alpha sum_b tau_b
    Z[:, k] = sum_{b: k_b = k} sigma_b D_{i_b} Xa q_b
    s.t.  S_{i_b} Xa q_b >= 0   (n linear constraints per block)
          ||q_b|| <= tau_b      (one second-order cone per block)

The IPM is the infeasible primal-dual path-following method with
Nesterov-Todd scaling and Mehrotra's predictor-corrector (as in CVXOPT's
``coneqp``), with the smooth loss entering through its gradient and Hessian
at the current point (a Newton step on the perturbed KKT conditions).  After
eliminating the slacks, the multipliers and the ``tau`` variables the Newton
system has size ``m d``:

    H_loss + blockdiag_b( Xa^T diag(z_b / s_b) Xa + SOC_b )

``Xa^T diag(.) Xa`` needs no sign because ``S_i^2 = I``; ``H_loss`` is built
over the distinct patterns of the working set (``V_i`` and ``W_i`` share
``D_i Xa``) and cached for the squared loss.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.special import expit, softmax

from ..problems import ReLUProblem, group_norms
from .cone_projection import multipliers_dense, project_cones

__all__ = ["solve_relu_ipm", "RestrictedIPM", "price_blocks"]

_CHUNK = 1 << 22


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
def _soc_nt(s, z):
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


def _soc_step(u, du):
    """Largest ``a >= 0`` with ``u + a du`` in the SOC (row-wise; ``inf`` if none)."""
    a = du[:, 0] ** 2 - np.einsum("bi,bi->b", du[:, 1:], du[:, 1:])
    b = 2.0 * (u[:, 0] * du[:, 0] - np.einsum("bi,bi->b", u[:, 1:], du[:, 1:]))
    c = np.maximum(u[:, 0] ** 2 - np.einsum("bi,bi->b", u[:, 1:], u[:, 1:]), 0.0)
    out = np.full(u.shape[0], np.inf)
    disc = b * b - 4.0 * a * c
    sq = np.sqrt(np.maximum(disc, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        qq = -0.5 * (b + np.where(b >= 0, sq, -sq))
        r1 = np.where(qq != 0, c / qq, np.inf)
        r2 = np.where(a != 0, qq / a, np.inf)
        roots = np.stack([r1, r2], axis=1)
        roots = np.where(np.isfinite(roots) & (roots > 0), roots, np.inf)
        small = roots.min(axis=1)
        lin = np.where(b < 0, -c / b, np.inf)
    neg = a < 0
    out[neg] = small[neg]
    pos = (a > 0) & (disc >= 0) & (b < 0)
    out[pos] = small[pos]
    zero = a == 0
    out[zero] = lin[zero]
    # the first component must stay non-negative as well
    with np.errstate(divide="ignore", invalid="ignore"):
        t0 = np.where(du[:, 0] < 0, -u[:, 0] / du[:, 0], np.inf)
    return np.minimum(out, t0)


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
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(du < 0, -u / du, np.inf)
    return float(r.min(initial=np.inf))


# ----------------------------------------------------------------- restricted IPM
class RestrictedIPM:
    """IPM for the ReLU program restricted to the blocks ``blocks`` (flat ids of ``(2, P, c)``)."""

    def __init__(self, problem: ReLUProblem, blocks, Xkr=None):
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
        self.upat, self.ub = np.unique(self.pat, return_inverse=True)
        self.Dp = problem.Df[:, self.pat]            # (n, m)
        self.Sp = problem.S[:, self.pat]             # (n, m)
        self.E = np.zeros((self.m, c))
        self.E[np.arange(self.m), self.out] = 1.0
        self.Xkr = Xkr
        self._H_cache = None
        self.alpha = problem.alpha

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

    # -- Hessians
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

    def loss_hessian(self, Z):
        """Loss Hessian wrt ``q`` of shape (m d, m d) (cached for the squared loss)."""
        loss = self.pr.loss
        if loss.name == "squared" and self._H_cache is not None:
            return self._H_cache
        hw = _loss_hessian(loss, Z, self.pr.Y)
        n, d, m = self.n, self.d, self.m
        p = self.upat.size
        Xa = self.pr.Xa
        Df = self.pr.Df[:, self.upat]
        H = np.zeros((m, d, m, d))
        rows = max(1, _CHUNK // max(p * d, 1))
        sig = self.sigma
        for (k1, k2), w in hw.items():
            b1 = np.flatnonzero(self.out == k1)
            b2 = np.flatnonzero(self.out == k2)
            if b1.size == 0 or b2.size == 0:
                continue
            Hp = np.zeros((p * d, p * d))
            for st in range(0, n, rows):
                sl = slice(st, min(n, st + rows))
                Mp = (Df[sl, :, None] * Xa[sl, None, :]).reshape(-1, p * d)
                Hp += Mp.T @ (w[sl, None] * Mp)
            Hp = Hp.reshape(p, d, p, d)
            blk = Hp[self.ub[b1]][:, :, self.ub[b2]]          # (|b1|, d, |b2|, d)
            blk = blk * (sig[b1][:, None, None, None] * sig[b2][None, None, :, None])
            H[np.ix_(b1, np.arange(d), b2, np.arange(d))] = blk
            if k1 != k2:
                H[np.ix_(b2, np.arange(d), b1, np.arange(d))] = blk.transpose(2, 3, 0, 1)
        H = H.reshape(m * d, m * d)
        if loss.name == "squared":
            self._H_cache = H
        return H

    # -- the solver
    def solve(self, x0=None, *, tol=1e-9, max_iter=80, verbose=0, zfac=1.0, sfac=1.0, tfac=0.5):
        """Run the IPM; returns a dict with ``q`` (m, d), ``tau``, ``zL`` (n, m), status info."""
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
        SL0 = self.Sp * XQ
        rn = np.sqrt(np.einsum('nd,nd->n', Xa, Xa))
        v0 = sfac * rn[:, None] * tau_scale
        sL = np.maximum(SL0, 0.0) + v0
        zL = np.broadcast_to(zfac * max(alpha, 1e-12) * tau_scale / v0, (n, m)).copy()
        nu = m * n + m
        hist = []
        status = "max_iter"
        it = 0
        H_reg = 0.0
        Kfac = None
        for it in range(1, max_iter + 1):
            XQ = self.products(q)
            Z = self.predictions(XQ)
            fval, GZ = loss.value_and_gradient(Z, Y)
            fobj = fval + alpha * float(tau.sum())
            gq = self.grad_q(GZ)
            # residuals
            rxq = gq - self.lp_adjoint(zL) - zC[:, 1:]
            rxt = alpha - zC[:, 0]
            rpL = self.Sp * XQ - sL
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
                print(f"   ipm {it:3d} f {fobj:.12g} gap {relgap:.2e} pinf {pinf:.2e} dinf {dinf:.2e}")
            if relgap <= tol and pinf <= tol and dinf <= tol:
                status = "optimal"
                break
            # ---- scaling
            wL = zL / sL                      # W^{-2} of the LP cones
            lamL = np.sqrt(sL * zL)
            Wc, Wci, lamC = _soc_nt(sC, zC)
            W2i = np.einsum("bij,bjk->bik", Wci, Wci)     # W^{-2}
            # ---- Newton matrix
            Hl = self.loss_hessian(Z)
            K = Hl.copy() if loss.name == "squared" else Hl
            Gb = self._gram_weighted(wL)                   # (m, d, d)
            a_t = W2i[:, 0, 0]
            c_t = W2i[:, 1:, 0]
            Eb = W2i[:, 1:, 1:] - c_t[:, :, None] * c_t[:, None, :] / a_t[:, None, None]
            blk = Gb + Eb
            K4 = K.reshape(m, d, m, d)
            ar = np.arange(m)
            K4[ar, :, ar, :] += blk
            diagK = np.diagonal(K).copy()
            Kfac = None
            reg = 0.0
            for _ in range(6):
                try:
                    if reg > 0:
                        K[np.diag_indices_from(K)] = diagK + reg
                    Kfac = cho_factor(K, lower=True, overwrite_a=False, check_finite=False)
                    break
                except np.linalg.LinAlgError:
                    reg = max(reg * 100, 1e-14 * float(diagK.max()))
            if Kfac is None:
                status = "numerical"
                break

            def newton(tL, tC):
                """Solve for (dq, dtau, dzL, dzC, dsL, dsC) given t = W^{-2}(-r_p + W d_s)."""
                rq = -rxq + self.lp_adjoint(tL) + tC[:, 1:]
                rt = -rxt + tC[:, 0]
                rq_red = rq - c_t * (rt / a_t)[:, None]
                dq = cho_solve(Kfac, rq_red.ravel(), check_finite=False).reshape(m, d)
                dtau = (rt - np.einsum("bi,bi->b", c_t, dq)) / a_t
                GdL = self.Sp * self.products(dq)
                dzL = tL - wL * GdL
                GdC = np.column_stack([dtau, dq])
                dzC = tC - np.einsum("bij,bj->bi", W2i, GdC)
                dsL = rpL + GdL
                dsC = rpC + GdC
                return dq, dtau, dzL, dzC, dsL, dsC

            def max_step(dsL, dsC, dzL, dzC):
                a1 = min(_lp_step(sL, dsL), _lp_step(zL, dzL))
                vs = np.einsum("bij,bj->bi", Wci, dsC)
                vz = np.einsum("bij,bj->bi", Wc, dzC)
                a2 = min(float(_soc_step_scaled(lamC, vs).min(initial=np.inf)),
                         float(_soc_step_scaled(lamC, vz).min(initial=np.inf)))
                return min(a1, a2)

            # ---- predictor
            WlamC = np.einsum("bij,bj->bi", Wc, lamC)    # = sC
            tL = wL * (-rpL - sL)
            tC = np.einsum("bij,bj->bi", W2i, -rpC - WlamC)
            dq, dtau, dzL, dzC, dsL, dsC = newton(tL, tC)
            a_aff = min(1.0, max_step(dsL, dsC, dzL, dzC))
            gap_aff = float(np.vdot(sL + a_aff * dsL, zL + a_aff * dzL)
                            + np.vdot(sC + a_aff * dsC, zC + a_aff * dzC))
            sigma = min(1.0, max(0.0, gap_aff / max(gap, 1e-300))) ** 3
            dsL_a, dzL_a = dsL, dzL
            # ---- corrector
            rcL = -lamL * lamL + sigma * mu - dsL * dzL
            dsL_sc = rcL / lamL                            # lambda \ rc
            WdL = np.sqrt(sL / zL) * dsL_sc
            a1 = np.einsum("bij,bj->bi", Wci, dsC)
            a2 = np.einsum("bij,bj->bi", Wc, dzC)
            e = np.zeros((m, d + 1))
            e[:, 0] = 1.0
            rcC = -_jprod(lamC, lamC) + sigma * mu * e - _jprod(a1, a2)
            dsC_sc = _jinv(lamC, rcC)
            WdC = np.einsum("bij,bj->bi", Wc, dsC_sc)
            tL = wL * (-rpL + WdL)
            tC = np.einsum("bij,bj->bi", W2i, -rpC + WdC)
            dq, dtau, dzL, dzC, dsL, dsC = newton(tL, tC)
            if verbose >= 4:
                # check the linearised KKT equations
                Hdq = (Hl @ dq.ravel()).reshape(m, d)
                e1 = Hdq - self.lp_adjoint(dzL) - dzC[:, 1:] + rxq
                e2 = -dzC[:, 0] + rxt
                e3 = zL * dsL + sL * dzL - (-sL * zL + sigma * mu - dsL_a * dzL_a)
                lhs = _jprod(lamC, np.einsum("bij,bj->bi", Wci, dsC) + np.einsum("bij,bj->bi", Wc, dzC))
                e4 = lhs - rcC
                print("      kkt check", np.abs(e1).max(), np.abs(e2).max(), np.abs(e3).max() / max(mu, 1e-300),
                      np.abs(e4).max() / max(mu, 1e-300), "scale", np.abs(rxq).max())
            step = min(1.0, 0.99 * max_step(dsL, dsC, dzL, dzC))
            if verbose >= 3:
                print(f"      a_aff {a_aff:.3e} sigma {sigma:.3e} step {step:.3e} "
                      f"steps LP s {_lp_step(sL, dsL):.2e} z {_lp_step(zL, dzL):.2e} "
                      f"SOC s {float(_soc_step_scaled(lamC, np.einsum('bij,bj->bi', Wci, dsC)).min()):.2e} "
                      f"z {float(_soc_step_scaled(lamC, np.einsum('bij,bj->bi', Wc, dzC)).min()):.2e}")
            q = q + step * dq
            tau = tau + step * dtau
            sL = sL + step * dsL
            sC = sC + step * dsC
            zL = zL + step * dzL
            zC = zC + step * dzC
        return {"q": q, "tau": tau, "zL": zL, "zC": zC, "sL": sL, "sC": sC, "n_iter": it,
                "status": status, "history": hist}
