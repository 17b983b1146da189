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

from ..dual_refine import rescale_rows
from ..operators import _row_chunks, _scratch, auto_chunk_elements
from ..problems import GatedReLUProblem, _best_dual, _make_gap, group_norms, group_soft_threshold
from ..screening import gap_safe_screen
from .fista import estimate_lipschitz, fista

__all__ = ["solve_gated_fista", "BlockSubproblem"]


class BlockSubproblem:
    """The gated program restricted to a list of blocks ``(pattern, output)``.

    Variables ``V`` of shape ``(d, B)`` (block ``b`` is pattern ``pat[b]`` feeding
    output ``out[b]``; every other block of the parent is fixed at zero), so that
    ``Z[:, k] = sum_{b: out[b] = k} D_{pat[b]} Xa V[:, b]``.  Products are one GEMM on
    the ``B`` block columns plus a mask, by row chunks, in the parent's precision;
    with few active blocks they cost ``B / (P c)`` of the full products.  Provides the
    interface :func:`~cvxnn.solvers.fista.fista` needs.
    """

    def __init__(self, parent: GatedReLUProblem, pat, out, chunk_elements=None):
        self.Xa, self.Y, self.loss, self.alpha = parent.Xa, parent.Y, parent.loss, parent.alpha
        self.pat = np.asarray(pat, dtype=np.intp)
        self.out = np.asarray(out, dtype=np.intp)
        self.Dw = np.ascontiguousarray(parent.D[:, self.pat])
        self.dtype = parent.Xa.dtype
        self.n_samples = parent.n_samples
        c = parent.Y.shape[1]
        self.onehot = np.zeros((self.pat.size, c), dtype=self.dtype)
        self.onehot[np.arange(self.pat.size), self.out] = 1.0
        self.chunk = int(auto_chunk_elements(parent.Xa.shape[1]) if chunk_elements is None
                         else chunk_elements)

    def apply(self, V):
        n, B = self.n_samples, self.pat.size
        V = np.asarray(V, dtype=self.dtype)
        Z = np.empty((n, self.Y.shape[1]), dtype=self.dtype)
        for sl in _row_chunks(n, B, self.chunk):
            rows = sl.stop - sl.start
            XV = _scratch("xu", (rows, B), self.dtype)
            np.matmul(self.Xa[sl], V, out=XV)
            Dm = _scratch("mask", (rows, B), self.dtype)
            np.copyto(Dm, self.Dw[sl])
            XV *= Dm
            Z[sl] = XV @ self.onehot
        return Z.astype(np.float64, copy=False)

    def adjoint(self, R):
        n, B = self.n_samples, self.pat.size
        R = np.asarray(R, dtype=self.dtype)
        G = np.zeros((self.Xa.shape[1], B), dtype=self.dtype)
        for sl in _row_chunks(n, B, self.chunk):
            rows = sl.stop - sl.start
            M = _scratch("masked", (rows, B), self.dtype)
            np.take(R[sl], self.out, axis=1, out=M)
            Dm = _scratch("mask", (rows, B), self.dtype)
            np.copyto(Dm, self.Dw[sl])
            M *= Dm
            G += self.Xa[sl].T @ M
        return G

    def smooth_value(self, Z):
        return self.loss.value(Z, self.Y)

    def smooth_value_and_gradient(self, Z):
        return self.loss.value_and_gradient(Z, self.Y)

    def penalty(self, V):
        return self.alpha * float(group_norms(V).sum(dtype=np.float64))

    def prox(self, V, step):
        return group_soft_threshold(V, step * self.alpha)


def solve_gated_fista(problem: GatedReLUProblem, U0=None, *, tol=1e-6, max_iter=10000,
                      check_every=10, verbose=0, callback=None, n_power=8,
                      time_limit=None, screen=True, screen_fraction=0.05, monitor=None,
                      working_set=True, ws_gap=0.05, ws_margin=0.02,
                      ws_max_fraction=0.6, dual_probe=True, refine_dual=True, refine_from=3e-2,
                      refine_share=0.1, refine_min_size=10_000_000) -> dict:
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
    working_set : bool
        Block working set (numpy :class:`GatedReLUProblem` only): once the relative gap
        is ``<= ws_gap`` and the nonzero blocks plus the blocks whose dual norm is
        ``>= (1 - ws_margin) alpha`` are at most ``ws_max_fraction`` of all blocks,
        FISTA continues on those blocks only (:class:`BlockSubproblem`: products on
        the working set's columns), with the FULL gap evaluated every
        ``check_every`` iterations as the certificate; blocks outside the set whose
        dual constraint is violated join it (momentum restarts), and the set is
        rebuilt smaller when the nonzero and nearly active blocks fill at most 80 %
        of it.  Same iterates as long as the set holds the support, at a fraction of
        the cost per iteration.
        ``callback`` is only called before the switch.
    dual_probe : bool
        Also read a dual candidate off every iteration (numpy problems, full or safely
        screened): the gradient FISTA computes at its extrapolated point is
        ``-Xa^T D_i Theta_k`` for ``Theta = -grad L``, so its block norms are that
        point's dual norms and ``Theta`` scaled into the dual feasible set bounds the
        optimum at the cost of one loss conjugate, no product.  The best bound over
        all iterations enters the certificate (on ill-conditioned problems the bound
        of single iterates is erratic, so sampling every iteration tightens it).
    refine_dual : bool
        Row-rescaled dual points (:func:`cvxnn.dual_refine.rescale_rows`, numpy
        problems): once the relative gap is ``<= refine_from``, at gap checks, the
        dual candidate of the iterate is repaired row by row instead of scaled
        uniformly (a few small linear programs and adjoint products), at most a
        ``refine_share`` of the elapsed time, and once more at the last check before
        ``max_iter`` or before ``time_limit`` runs out (started when the time left is
        about the previous repair's duration).  Only for problems with
        ``n d P c >= refine_min_size`` (on tiny problems a linear program costs
        hundreds of gradients).

    Returns
    -------
    dict with ``U`` (d, P, c), ``gap`` (:class:`~cvxnn.problems.Gap` of the full
    problem; its dual bound is the best over all iterates), ``n_iter``,
    ``converged``, ``timed_out``, ``n_screened`` (patterns removed), ``dual_point``
    (the best dual feasible ``Theta``, numpy (n, c)), ``working_set_blocks`` (size of
    the last block working set; 0 when FISTA ran on all blocks) and ``history`` (list
    of ``(iter, seconds, relative_gap, objective, 0.0)``).
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
    last = {"timed_out": False, "best_dual": -np.inf, "dual_point": None, "ws_blocks": 0,
            "refine_end": t0, "refine_cost": 0.0}
    use_refine = (bool(refine_dual) and type(full) is GatedReLUProblem and full.alpha > 0
                  and full.n_samples * d * P * c >= refine_min_size)
    offset = 0

    def evaluate(Ux, Z, k, what, from_probe=False):
        """Full gap at ``Ux`` (of ``cur``): best dual so far, history, monitor, log.

        Returns ``(own gap, gap with the best dual, dual norms, stop)``; ``stop`` when
        the tolerance or the time limit is reached.
        """
        pr = last.get("probe")
        if from_probe and pr is not None and pr[0] is cur:
            # the latest probe is a dual feasible point of this problem with known dual
            # norms: pair it with this iterate's objective (no extra product)
            _, norms, dual, s = pr
            g_own = _make_gap(cur.objective(Ux, Z), dual, s)
        else:
            g_own, norms = cur.gap(Ux, Z, with_norms=True)
        g = g_own
        # any dual feasible point bounds the optimum: keep the best one seen
        if g.dual > last["best_dual"]:
            last["best_dual"] = g.dual
            last["dual_point"] = -g.dual_scale * cur.loss.gradient(Z, cur.Y)
        if last["best_dual"] > g.dual:
            g = _make_gap(g.primal, last["best_dual"], g.dual_scale)
        if use_refine and tol < g.relative_gap <= refine_from:
            g = refine(Z, k, g)
        history.append((offset + k, time.perf_counter() - t0, g.relative_gap, g.primal, 0.0))
        if monitor is not None:
            monitor(offset + k, lambda: full.to_numpy(Ux if cur is full else full.embed(Ux, idx, P)),
                    g.primal, g.relative_gap)
        last["gap"] = g
        if verbose >= 2 or (verbose and (offset + k) % (check_every * 50) == 0):
            print(f"[gated fista] iter {offset + k:6d}  {what}  "
                  f"objective {g.primal:.10g}  rel. gap {g.relative_gap:.3e}", flush=True)
        stop = g.relative_gap <= tol
        if not stop and time_limit is not None and time.perf_counter() - t0 > time_limit:
            last["timed_out"] = stop = True
        return g_own, g, norms, stop

    def refine(Z, k, g):
        """Row-rescaled dual point at this iterate, when its time share allows or the
        solve is about to stop; returns the gap with the best bound."""
        now = time.perf_counter()
        # the last repair of a budgeted solve starts early enough to end within the limit
        final = not last.get("final_refined") and (
            (time_limit is not None and now - t0 + last["refine_cost"] > time_limit)
            or offset + k >= max_iter)
        if not final and now - last["refine_end"] < last["refine_cost"] / refine_share:
            return g
        last["final_refined"] = final
        r = rescale_rows(cur, -cur.loss.gradient(Z, cur.Y))
        last["refine_end"] = time.perf_counter()
        last["refine_cost"] = last["refine_end"] - now
        if verbose >= 2:
            print(f"[gated fista] row-rescaled dual: {r['rounds']} repairs in "
                  f"{last['refine_cost']:.2f}s, bound {r['dual']:.10g}", flush=True)
        if r["dual"] > last["best_dual"]:
            last["best_dual"] = r["dual"]
            last["dual_point"] = r["theta"]
            g = _make_gap(g.primal, r["dual"], g.dual_scale)
        return g

    def probe(Zy, gout, gy):
        """Dual bound at the extrapolated point from the gradient FISTA just computed."""
        norms = group_norms(gy).astype(np.float64, copy=False)
        cmax = float(norms.max(initial=0.0))
        if not np.isfinite(cmax):
            return
        s_max = 1.0 if cmax <= cur.alpha else cur.alpha / cmax
        dual, s = _best_dual(cur.loss, -gout, cur.Y, s_max)
        last["probe"] = (cur, norms, dual, s)
        if dual > last["best_dual"]:
            last["best_dual"] = dual
            last["dual_point"] = -s * np.asarray(gout, dtype=np.float64)

    def check(Ux, Z, k):
        last["drop"] = None
        g_own, g, norms, stop = evaluate(Ux, Z, k, f"patterns {idx.size:6d}", from_probe=True)
        if stop:
            return True, {"gap": g}
        if block_ws and g.relative_gap <= ws_gap:
            W = (group_norms(Ux) > 0) | (norms >= (1.0 - ws_margin) * cur.alpha)
            if W.sum() <= ws_max_fraction * W.size:
                last["switch"] = W
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

    block_ws = bool(working_set) and type(full) is GatedReLUProblem and full.alpha > 0

    def check_blocks(W, pat, out, V, Z, k):
        """Full-problem gap at the working-set iterate; grows ``W`` on violations."""
        Ux = cur.zeros()
        Ux[:, pat, out] = V
        _, g, norms, stop = evaluate(Ux, Z, k, f"blocks {pat.size:8d}")
        if stop:
            return True, {"gap": g}
        near = (group_norms(Ux) > 0) | (norms >= (1.0 - ws_margin) * cur.alpha)
        if np.any(~W & (norms > cur.alpha)):
            # violated dual constraints outside the set: they join it (momentum restarts)
            last["grow"], last["keep_momentum"] = W | near, False
            return True, {"gap": g}
        if near.sum() <= 0.8 * W.sum():
            # the support has shrunk well inside the set: continue on the smaller one
            last["grow"], last["keep_momentum"] = near, True
            return True, {"gap": g}
        return False, {"gap": g}

    def block_phase(U, step, U_prev, t_mom):
        """FISTA on a growing block working set, certified by the full gap (the momentum
        of the full-problem run carries over to the first working set)."""
        nonlocal offset
        W = last.pop("switch")
        while True:
            pat, out = np.nonzero(W)
            if verbose:
                print(f"[gated fista] working set: {pat.size} of {W.size} blocks", flush=True)
            sub = BlockSubproblem(cur, pat, out)
            last["grow"], last["ws_blocks"] = None, int(pat.size)
            state = fista(sub, U[:, pat, out], step=step, max_iter=max_iter - offset,
                          check=lambda V, Z, k, W=W, pat=pat, out=out: check_blocks(W, pat, out, V, Z, k),
                          check_every=check_every,
                          x_prev=None if U_prev is None else U_prev[:, pat, out], t0=t_mom)
            offset += state.n_iter
            U = cur.zeros()
            U[:, pat, out] = state.x
            step = state.step
            if last["grow"] is None or last["timed_out"] or offset >= max_iter:
                return U, step
            W = last["grow"]
            U_prev, t_mom = None, 1.0
            if last["keep_momentum"]:
                U_prev = cur.zeros()
                U_prev[:, pat, out] = state.x_prev
                t_mom = state.t

    use_probe = bool(dual_probe) and type(full) is GatedReLUProblem and full.alpha > 0
    while True:
        state = fista(cur, U, step=step, check=check, max_iter=max_iter - offset,
                      check_every=check_every, callback=callback,
                      probe=probe if use_probe else None)
        offset += state.n_iter
        U, step = state.x, state.step
        if last.get("switch") is not None:
            if not last["timed_out"] and offset < max_iter:
                U, step = block_phase(U, step, state.x_prev, state.t)
            break
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
            screen = block_ws = False
            cur, idx = full, np.arange(P)
            state = fista(full, U, step=step, check=check, max_iter=max_iter - offset,
                          check_every=check_every, callback=callback)
            offset += state.n_iter
            U = state.x
            gap = last["gap"]
    else:
        gap = last["gap"]
        if use_probe and gap.relative_gap > 0:
            # the checks paired the iterates with probe points: the returned iterate's
            # own dual point may still be better (one more adjoint)
            Z = full.apply(U)
            own = full.gap(U, Z)
            if own.dual > last["best_dual"]:
                last["best_dual"] = own.dual
                last["dual_point"] = -own.dual_scale * full.loss.gradient(Z, full.Y)
            gap = _make_gap(own.primal, last["best_dual"], own.dual_scale)
    return {"U": U, "gap": gap, "n_iter": offset, "converged": gap.relative_gap <= tol,
            "history": history, "timed_out": last["timed_out"], "n_screened": P - idx.size,
            "dual_point": last["dual_point"], "working_set_blocks": last["ws_blocks"]}
