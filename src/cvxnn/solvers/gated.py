"""Gated ReLU solver: FISTA with gap-safe screening, stopped on the relative duality gap.

Problem (see :class:`~cvxnn.problems.GatedReLUProblem`)::

    min_U  L(sum_i D_i Xa U[:, i, :], Y) + alpha * sum_{i,k} ||U[:, i, k]||_2,   U: (d, P, c)

Each iteration costs one forward product per line-search trial and one adjoint
(GEMM + mask, :mod:`cvxnn.operators`); every ``check_every`` iterations the
duality gap is evaluated (one more adjoint).  The gap also drives *dynamic
gap-safe screening* (:mod:`cvxnn.screening`): patterns whose blocks are provably
zero at every optimum are removed from the products, so later iterations are
cheaper.  The solution returned is certified by the gap of the FULL problem.
"""

from __future__ import annotations

import time

import numpy as np

from ..problems import GatedReLUProblem, _make_gap
from ..screening import gap_safe_screen
from .fista import estimate_lipschitz, fista

__all__ = ["solve_gated_fista"]


def solve_gated_fista(problem: GatedReLUProblem, U0=None, *, tol=1e-6, max_iter=10000,
                      check_every=10, verbose=0, callback=None, n_power=8,
                      time_limit=None, screen=True, screen_fraction=0.05, monitor=None) -> dict:
    """Minimise the gated ReLU program to a relative duality gap ``tol``.

    Parameters
    ----------
    problem : GatedReLUProblem or TorchGatedProblem
        numpy (float64 or float32 products) or torch backend; the weights stay in
        the problem's array type.
    U0 : array of shape (d, P, c), optional
        Warm start.
    tol : float
        Target relative duality gap of the full problem.
    max_iter : int
        Iteration budget (summed over screening rounds).
    check_every : int
        Iterations between gap evaluations (stopping test, screening, history).
    n_power : int
        Power iterations for the initial step size.
    time_limit : float, optional
        Seconds; stops at the next gap check after the budget.
    screen : bool
        Dynamic gap-safe screening of whole patterns.
    screen_fraction : float
        Shrink the problem once at least this fraction of the remaining patterns
        (and at least one) can be screened.
    monitor : cvxnn._control.SolveMonitor, optional
        Called at every gap evaluation with the full-problem weights (best
        iterate, progress callback); it may raise to stop the solve.

    Returns
    -------
    dict with ``U`` (d, P, c), ``gap`` (:class:`~cvxnn.problems.Gap` of the full
    problem; its dual bound is the best over all iterates), ``n_iter``,
    ``converged``, ``timed_out``, ``n_screened`` (patterns removed), ``dual_point``
    (the best dual feasible ``Theta``, numpy (n, c)) and ``history`` (list of
    ``(iter, seconds, relative_gap, objective, 0.0)``).
    """
    t0 = time.perf_counter()
    full = problem
    d, P, c = full.shape
    U = full.zeros() if U0 is None else full.asweights(U0)
    n = full.n_samples
    beta = full.loss.curvature(n)
    step = 1.0 / max(estimate_lipschitz(full, beta, (n, c), n_power=n_power), 1e-300)
    screen = bool(screen) and full.alpha > 0
    frob = full.block_frobenius() if screen else None
    idx = np.arange(P)
    cur = full
    history = []
    last = {"timed_out": False, "best_dual": -np.inf, "dual_point": None}
    offset = 0

    def check(Ux, Z, k):
        g_own, norms = cur.gap(Ux, Z, with_norms=True)
        g = g_own
        # any dual feasible point bounds the optimum: keep the best one seen
        if g.dual > last["best_dual"]:
            last["best_dual"] = g.dual
            last["dual_point"] = -g.dual_scale * cur.loss.gradient(Z, cur.Y)
        if last["best_dual"] > g.dual:
            g = _make_gap(g.primal, last["best_dual"], g.dual_scale)
        history.append((offset + k, time.perf_counter() - t0, g.relative_gap, g.primal, 0.0))
        if monitor is not None:
            monitor(offset + k, lambda: full.to_numpy(Ux if cur is full else full.embed(Ux, idx, P)),
                    g.primal, g.relative_gap)
        last["gap"] = g
        last["drop"] = None
        if verbose >= 2 or (verbose and (offset + k) % (check_every * 50) == 0):
            print(f"[gated fista] iter {offset + k:6d}  patterns {idx.size:6d}  "
                  f"objective {g.primal:.10g}  rel. gap {g.relative_gap:.3e}", flush=True)
        if g.relative_gap <= tol:
            return True, {"gap": g}
        if time_limit is not None and time.perf_counter() - t0 > time_limit:
            last["timed_out"] = True
            return True, {"gap": g}
        if screen:
            # the safe sphere is centred at this iterate's own dual point, so its radius
            # must come from that point's gap (a better bound from another point would
            # make the sphere too small)
            drop = gap_safe_screen(norms, g_own.dual_scale, g_own.gap, cur.alpha, beta,
                                   frob[idx]).all(axis=1)
            if drop.sum() >= max(1, screen_fraction * idx.size):
                last["drop"] = drop
                return True, {"gap": g}
        return False, {"gap": g}

    while True:
        state = fista(cur, U, step=step, check=check, max_iter=max_iter - offset,
                      check_every=check_every, callback=callback)
        offset += state.n_iter
        U, step = state.x, state.step
        drop = last.get("drop")
        if drop is None or last["timed_out"]:
            break
        keep = np.flatnonzero(~drop)
        if verbose:
            print(f"[gated fista] screening removes {int(drop.sum())} patterns "
                  f"({keep.size} remain)", flush=True)
        U = cur.take(U, keep)
        idx = idx[keep]
        if idx.size == 0:
            break
        cur = full.restrict(idx)
        if offset >= max_iter:
            break

    if cur is not full:
        U = full.embed(U, idx, P) if idx.size else full.zeros()
        gap = full.gap(U)
        if last["best_dual"] > gap.dual:  # safe screening: same optimum, so the bound holds
            gap = _make_gap(gap.primal, last["best_dual"], gap.dual_scale)
        if gap.relative_gap > tol and not last["timed_out"] and offset < max_iter:
            # the reduced certificate did not transfer (rare): finish on the full problem
            screen = False
            cur, idx = full, np.arange(P)
            state = fista(full, U, step=step, check=check, max_iter=max_iter - offset,
                          check_every=check_every, callback=callback)
            offset += state.n_iter
            U = state.x
            gap = last["gap"]
    else:
        gap = last["gap"]
    return {"U": U, "gap": gap, "n_iter": offset, "converged": gap.relative_gap <= tol,
            "history": history, "timed_out": last["timed_out"], "n_screened": P - idx.size,
            "dual_point": last["dual_point"]}
