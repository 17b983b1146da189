"""Basic augmented Lagrangian solver for the cone-constrained ReLU program.

This first-order method is kept for comparison and as a fallback (``alpha = 0``
or a loss without a Hessian); the default native solver of the ReLU program is
the working-set interior-point method of :mod:`cvxnn.solvers.relu_ipm`, which is
one to two orders of magnitude faster at ``tol = 1e-6``.

For multipliers ``Gamma >= 0`` (shape ``(n, 2, P, c)``) and penalty ``delta`` the
subproblem is::

    min_Q  L(Z(Q)) + delta/2 ||(Gamma/delta - C(Q))_+||^2 + alpha sum ||Q blocks||,

with ``C(Q) = (2D_i - I) Xa Q`` the constraint values.  It is a group lasso
solved by FISTA and stopped on its own duality gap: with ``Theta_C = (Gamma -
delta C)_+`` the conjugate of the penalty term is explicit, so the subproblem
dual value is ``loss.dual_value(s Theta_Z) + <s Theta_C, Gamma>/delta -
||s Theta_C||^2 / (2 delta)``.  After each subproblem the textbook multiplier
update ``Gamma <- (Gamma - delta C)_+`` is applied (the multipliers can shrink
as well as grow); ``delta`` grows by 10x when the violation stalls.

The outer loop stops when the relative duality gap of the ReLU program (dual
point from the residual, cone multipliers from ``Gamma``) and the relative
constraint violation (see :meth:`~cvxnn.problems.ReLUProblem.violation`) are
both below ``tol``.
"""

from __future__ import annotations

import time

import numpy as np

from ..problems import ReLUProblem, group_norms
from .fista import estimate_lipschitz, fista

__all__ = ["solve_relu_al_basic", "solve_relu_al"]


class _ALSubproblem:
    def __init__(self, relu: ReLUProblem, Gamma: np.ndarray, delta: float):
        self.relu, self.Gamma, self.delta = relu, Gamma, delta
        self.Sx = relu.S[:, None, :, None]
        self.sign = relu._sign[None, :, None, None]
        self.Dx = relu.Df[:, None, :, None]

    def apply(self, Q):
        return self.relu.products(Q)

    def adjoint(self, G):
        n = G.shape[0]
        Xa = self.relu.Xa
        return (Xa.T @ G.reshape(n, -1)).reshape((Xa.shape[1],) + G.shape[1:])

    def _parts(self, XQ):
        Z = self.relu.predictions_from_products(XQ)
        ThetaC = np.maximum(self.Gamma - self.delta * (XQ * self.Sx), 0.0)
        return Z, ThetaC

    def smooth_value(self, XQ):
        Z, ThetaC = self._parts(XQ)
        return self.relu.loss.value(Z, self.relu.Y) + float(np.vdot(ThetaC, ThetaC)) / (2 * self.delta)

    def smooth_value_and_gradient(self, XQ):
        Z, ThetaC = self._parts(XQ)
        val, gZ = self.relu.loss.value_and_gradient(Z, self.relu.Y)
        val += float(np.vdot(ThetaC, ThetaC)) / (2 * self.delta)
        G = self.Dx * gZ[:, None, None, :] * self.sign - self.Sx * ThetaC
        return val, G

    def penalty(self, Q):
        return self.relu.penalty(Q)

    def prox(self, Q, step):
        return self.relu.prox(Q, step)

    def gap(self, Q, XQ):
        """Relative duality gap of the subproblem and the updated multipliers."""
        relu = self.relu
        Z, ThetaC = self._parts(XQ)
        primal = (relu.loss.value(Z, relu.Y) + float(np.vdot(ThetaC, ThetaC)) / (2 * self.delta)
                  + relu.penalty(Q))
        ThetaZ = -relu.loss.gradient(Z, relu.Y)
        cmax = float(group_norms(relu.adjoint(ThetaZ, ThetaC)).max(initial=0.0))
        s = 1.0 if cmax <= relu.alpha else relu.alpha / cmax
        dual = (relu.loss.dual_value(s * ThetaZ, relu.Y) + s * float(np.vdot(ThetaC, self.Gamma)) / self.delta
                - s * s * float(np.vdot(ThetaC, ThetaC)) / (2 * self.delta))
        rel = max(primal - dual, 0.0) / max(abs(primal), np.finfo(float).tiny)
        return rel, ThetaC, Z


def solve_relu_al_basic(problem: ReLUProblem, Q0=None, *, tol=1e-6, max_iter=20000, delta0=None,
                        max_outer=200, check_every=10, verbose=0, callback=None,
                        monitor=None) -> dict:
    """Minimise the ReLU program with an augmented Lagrangian method.

    Parameters
    ----------
    problem : ReLUProblem
    Q0 : ndarray of shape (d, 2, P, c), optional
        Warm start (``V = Q0[:, 0]``, ``W = Q0[:, 1]``).
    tol : float, default=1e-6
        Target for both the relative duality gap and the relative violation.
    max_iter : int, default=20000
        Total budget of FISTA iterations over all subproblems.
    delta0 : float, optional
        Initial penalty; default ``10 * curvature(loss)``.
    monitor : cvxnn._control.SolveMonitor, optional
        Called after every outer iteration (best iterate, progress callback);
        it may raise to stop the solve.

    Returns
    -------
    dict with ``Q``, ``gap`` (:class:`~cvxnn.problems.Gap`), ``violation``,
    ``multipliers`` (n, 2, P, c), ``n_iter``, ``n_outer``, ``converged``, ``history``.
    """
    t0 = time.perf_counter()
    n = problem.Xa.shape[0]
    Q = np.zeros(problem.shape) if Q0 is None else np.array(Q0, dtype=float)
    Gamma = np.zeros((n,) + problem.shape[1:])
    curv = problem.loss.curvature(n)
    delta = 10.0 * curv if delta0 is None else float(delta0)
    base_L = estimate_lipschitz(_ProductsMap(problem), 1.0,
                               (problem.Xa.shape[0],) + problem.shape[1:])
    eps_inner = 1e-3
    total = 0
    history = []
    prev_viol = np.inf
    gap = None
    viol = np.inf
    converged = False
    step = None
    n_outer = 0
    for n_outer in range(1, max_outer + 1):
        sub = _ALSubproblem(problem, Gamma, delta)
        if step is None:
            step = 1.0 / max((curv + delta) * base_L, 1e-300)
        holder = {}

        def check(Qx, XQ, k, sub=sub, eps=eps_inner):
            rel, ThetaC, Z = sub.gap(Qx, XQ)
            holder.update(ThetaC=ThetaC, Z=Z, XQ=XQ)
            return rel <= eps, {}

        budget = max(max_iter - total, 1)
        state = fista(sub, Q, step=step, check=check, max_iter=budget, check_every=check_every)
        total += state.n_iter
        Q, step = state.x, state.step
        Gamma = holder["ThetaC"]
        gap = problem.gap(Q, A=Gamma, Z=holder["Z"], refine_iter=20)
        viol = problem.violation(Q, holder["XQ"])
        history.append((total, time.perf_counter() - t0, gap.relative_gap, gap.primal, viol))
        if monitor is not None:
            monitor(total, Q, gap.primal, gap.relative_gap, viol)
        if verbose:
            print(f"[relu al] outer {n_outer:3d} iters {total:6d} objective {gap.primal:.10g} "
                  f"rel. gap {gap.relative_gap:.3e} violation {viol:.3e} delta {delta:.3g}")
        if callback is not None:
            callback({"Q": Q, "gap": gap, "violation": viol, "n_iter": total})
        if gap.relative_gap <= tol and viol <= tol:
            converged = True
            break
        if total >= max_iter:
            break
        if viol > 0.25 * prev_viol and viol > tol:
            delta *= 10.0
            step = step / 10.0
        prev_viol = min(prev_viol, viol)
        eps_inner = max(min(eps_inner * 0.1, max(gap.relative_gap, viol)), tol * 0.1)
    # final certificate with more refinement of the multipliers
    gap = problem.gap(Q, A=Gamma, refine_iter=500)
    if gap.relative_gap <= tol and viol <= tol:
        converged = True
    return {"Q": Q, "gap": gap, "violation": viol, "multipliers": Gamma, "n_iter": total,
            "n_outer": n_outer, "converged": converged, "history": history}


class _ProductsMap:
    """View ``Q -> Xa Q`` of a ReLU problem as a linear map for power iteration."""

    def __init__(self, problem: ReLUProblem):
        self.p = problem

    def apply(self, Q):
        return self.p.products(Q)

    def adjoint(self, G):
        n = G.shape[0]
        return (self.p.Xa.T @ G.reshape(n, -1)).reshape((self.p.Xa.shape[1],) + G.shape[1:])


#: backwards-compatible name of the basic augmented Lagrangian solver
solve_relu_al = solve_relu_al_basic
