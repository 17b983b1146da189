"""Gated ReLU solver: FISTA stopped on the relative duality gap."""

from __future__ import annotations

import time

import numpy as np

from ..problems import GatedReLUProblem
from .fista import estimate_lipschitz, fista

__all__ = ["solve_gated_fista"]


def solve_gated_fista(problem: GatedReLUProblem, U0=None, *, tol=1e-6, max_iter=10000,
                      check_every=10, verbose=0, callback=None) -> dict:
    """Minimise the gated ReLU program to a relative duality gap ``tol``.

    Returns a dict with ``U`` (d, P, c), ``gap`` (:class:`~cvxnn.problems.Gap`),
    ``n_iter``, ``converged`` and ``history`` (list of ``(iter, seconds, relative_gap)``).
    """
    t0 = time.perf_counter()
    U0 = np.zeros(problem.shape) if U0 is None else np.array(U0, dtype=float)
    n = problem.Xa.shape[0]
    step = 1.0 / max(estimate_lipschitz(problem, problem.loss.curvature(n), problem.shape), 1e-300)
    history = []
    last = {}

    def check(U, Z, k):
        g = problem.gap(U, Z)
        history.append((k, time.perf_counter() - t0, g.relative_gap))
        last["gap"] = g
        if verbose >= 2 or (verbose and k % (check_every * 50) == 0):
            print(f"[gated fista] iter {k:6d}  objective {g.primal:.10g}  rel. gap {g.relative_gap:.3e}")
        return g.relative_gap <= tol, {"gap": g}

    state = fista(problem, U0, step=step, check=check, max_iter=max_iter,
                  check_every=check_every, callback=callback)
    return {"U": state.x, "gap": last["gap"], "n_iter": state.n_iter,
            "converged": state.converged, "history": history}
