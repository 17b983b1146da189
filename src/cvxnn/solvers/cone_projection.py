"""Batched exact projections onto the polyhedral pattern cones.

For a block with pattern ``i`` the cone is ``K_i = {u : S_i Xa u >= 0}`` (rows
``n_j = S[j, i] x_j``).  :func:`project_cones` computes, for many blocks at
once, ``u_b = proj_{K_{i_b}}(g_b)`` together with multipliers ``lam_b >= 0``
such that::

    u_b = g_b + Xa^T (S_{i_b} * lam_b),      lam_b * (S_{i_b} Xa u_b) = 0.

Two uses in the ReLU solver:

* certificates and pricing: by Moreau's decomposition
  ``min_{a >= 0} ||g + Xa^T S_i a|| = ||proj_{K_i}(g)||``, so with
  ``g_b = +-Xa^T D_i Theta`` the returned ``lam_b`` are the cone multipliers
  that make the dual norm of block ``b`` as small as possible (the dual
  constraint of the block reads ``||proj_{K_i}(g_b)|| <= alpha``);
* feasibility restoration: projecting a nearly feasible block onto its cone
  removes the residual violation (to rounding).

Algorithm: the dual active-set method of Goldfarb and Idnani specialised to the
identity Hessian, run in lock-step over all blocks.  Each block keeps at most
``d`` linearly independent active normals; an iteration adds the most violated
constraint (after a sequence of partial steps that may drop active ones).  Per
iteration the cost is one GEMM ``Xa @ U`` for the blocks that need a new
constraint plus batched ``d x d`` solves.
"""

from __future__ import annotations

import numpy as np

__all__ = ["project_cones", "multipliers_dense"]


def project_cones(Xa, S, pattern, G, *, tol=1e-13, max_iter=None, row_norms=None, init_idx=None):
    """Project the columns of ``G`` onto their pattern cones.

    Parameters
    ----------
    Xa : ndarray (n, d)
    S : ndarray (n, P)
        Signs ``2 D - 1``.
    pattern : int ndarray (B,)
        Pattern index of each block.
    G : ndarray (d, B)
        Points to project.
    tol : float
        A constraint counts as violated when ``n_j^T u < -tol * ||x_j|| * scale``
        with ``scale = max(||g_b||, ||u_b||)``.
    max_iter : int, optional
        Cap on lock-step iterations (default ``20 d + 50``).
    row_norms : ndarray (n,), optional
        ``||x_j||`` (computed when not given).
    init_idx : int ndarray (k, B), optional
        A guess of the active rows of each projection (``-1`` for empty slots;
        ``k <= d``), e.g. from an earlier projection of a nearby point.  A block whose
        guessed rows are linearly independent and give non-negative multipliers for the
        projection onto their subspace starts the method there (a valid state of the
        dual active-set method: optimal for those rows as inequalities); any other
        block starts cold.  The result is the same projection either way.

    Returns
    -------
    U : ndarray (d, B)
        Projections (exactly ``G + Xa^T (S * Lam)`` up to rounding).
    idx : int ndarray (d, B)
        Row indices of the non-zero multipliers (``-1`` for empty slots).
    lam : ndarray (d, B)
        The multipliers (``0`` in empty slots).
    done : bool ndarray (B,)
        Whether the active-set method terminated for the block.
    """
    Xa = np.asarray(Xa, dtype=float)
    n, d = Xa.shape
    G = np.asarray(G, dtype=float)
    B = G.shape[1]
    pattern = np.asarray(pattern, dtype=np.intp)
    if max_iter is None:
        max_iter = 20 * d + 50
    if row_norms is None:
        row_norms = np.sqrt(np.einsum("nd,nd->n", Xa, Xa))
    U = G.T.copy()                      # (B, d)
    N = np.zeros((B, d, d))             # active normals as columns
    idx = np.full((B, d), -1, dtype=np.intp)
    lam = np.zeros((B, d))
    used = np.zeros((B, d), dtype=bool)
    pend = np.full(B, -1, dtype=np.intp)
    lam_p = np.zeros(B)
    done = np.zeros(B, dtype=bool)
    gnorm = np.sqrt(np.einsum("bd,bd->b", U, U))
    Ssub = S[:, pattern]                # (n, B) signs per block
    if init_idx is not None:
        _warm_start(Xa, Ssub, G, np.asarray(init_idx, dtype=np.intp), U, N, idx, lam, used)
    for _ in range(max_iter):
        need = ~done & (pend < 0)
        if np.any(need):
            nb = np.flatnonzero(need)
            C = (Xa @ U[nb].T) * Ssub[:, nb]            # (n, |nb|)
            p = np.argmin(C, axis=0)
            cp = C[p, np.arange(nb.size)]
            scale = np.maximum(gnorm[nb], np.sqrt(np.einsum("bd,bd->b", U[nb], U[nb])))
            ok = cp >= -tol * row_norms[p] * scale
            done[nb[ok]] = True
            pend[nb[~ok]] = p[~ok]
            lam_p[nb[~ok]] = 0.0
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        p = pend[act]
        npv = Xa[p] * Ssub[p, act][:, None]                 # (a, d) normal of pending constraint
        Na = N[act]
        ua = used[act]
        NaT = Na.transpose(0, 2, 1)
        Gram = NaT @ Na
        Gram[:, np.arange(d), np.arange(d)] += ~ua
        rhs = (NaT @ npv[:, :, None])
        try:
            r = np.linalg.solve(Gram, rhs)[..., 0]
        except np.linalg.LinAlgError:
            r = np.stack([np.linalg.lstsq(Gm, rh[:, 0], rcond=None)[0] for Gm, rh in zip(Gram, rhs)])
        r[~ua] = 0.0
        z = npv - (Na @ r[:, :, None])[..., 0]
        zz = np.einsum("bi,bi->b", z, npv)
        cur = np.einsum("bi,bi->b", npv, U[act])
        nn = np.einsum("bi,bi->b", npv, npv)
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = np.where(zz > 1e-12 * nn, -cur / zz, np.inf)
            rpos = ua & (r > 1e-12 * np.abs(r).max(axis=1, keepdims=True).clip(1e-300))
            ratios = np.where(rpos, lam[act] / np.where(rpos, r, 1.0), np.inf)
        j2 = np.argmin(ratios, axis=1)
        t2 = ratios[np.arange(act.size), j2]
        stuck = ~np.isfinite(t1) & ~np.isfinite(t2)
        t = np.minimum(t1, t2)
        t = np.where(stuck, 0.0, np.maximum(t, 0.0))
        U[act] += t[:, None] * z
        lam[act] -= t[:, None] * r
        lam_p[act] += t
        add = (t1 <= t2) & ~stuck
        drop = ~add & ~stuck
        # drop blocking constraints (keep the pending one)
        if np.any(drop):
            bd = act[drop]
            jd = j2[drop]
            N[bd, :, jd] = 0.0
            idx[bd, jd] = -1
            lam[bd, jd] = 0.0
            used[bd, jd] = False
        if np.any(add):
            ba = act[add]
            free = np.argmin(used[ba], axis=1)       # first free slot
            N[ba, :, free] = npv[add]
            idx[ba, free] = p[add]
            lam[ba, free] = lam_p[ba]
            used[ba, free] = True
            pend[ba] = -1
        if np.any(stuck):
            done[act[stuck]] = True
    lam = np.maximum(lam, 0.0)
    lam[~used] = 0.0
    # polish: make the active constraints hold with equality (when multipliers stay >= 0)
    NT = N.transpose(0, 2, 1)
    Gram = NT @ N
    Gram[:, np.arange(d), np.arange(d)] += ~used
    rhs = -(NT @ G.T[:, :, None])[..., 0]
    with np.errstate(all="ignore"):
        try:
            lam2 = np.linalg.solve(Gram, rhs[..., None])[..., 0]
        except np.linalg.LinAlgError:
            lam2 = None
    if lam2 is not None:
        lam2[~used] = 0.0
        good = np.all(np.isfinite(lam2), axis=1) & np.all(lam2 >= 0, axis=1) & done
        lam[good] = lam2[good]
    U = G.T + (N @ lam[:, :, None])[..., 0]
    idx = np.where(used, idx, -1)
    return U.T.copy(), idx.T.copy(), lam.T.copy(), done


def _warm_start(Xa, Ssub, G, init_idx, U, N, idx, lam, used):
    """Start the blocks whose guessed active rows ``init_idx`` (k, B) are a valid state of
    the dual active-set method (see :func:`project_cones`); updates ``U``, ``N``, ``idx``,
    ``lam`` and ``used`` in place for those blocks."""
    d = Xa.shape[1]
    k, B = init_idx.shape
    if k > d:
        raise ValueError(f"init_idx has {k} rows; at most d = {d} active rows per block")
    if k == 0 or B == 0:
        return
    valid = (init_idx >= 0).T                                  # (B, k)
    rows = np.where(valid, init_idx.T, 0)
    Nw = Xa[rows] * (np.take_along_axis(Ssub.T, rows, axis=1) * valid)[:, :, None]  # (B, k, d)
    NwT = Nw.transpose(0, 2, 1)                                # (B, d, k) normals as columns
    cand = valid.any(axis=1)
    for _ in range(k + 1):
        Gram = Nw @ NwT
        Gram[:, np.arange(k), np.arange(k)] += ~valid
        nrm = np.sqrt(np.diagonal(Gram, axis1=1, axis2=2))
        # independence: the row-normalised Gram must be well conditioned
        ev = np.linalg.eigvalsh(Gram / nrm[:, :, None] / nrm[:, None, :])[:, 0]
        ok = cand & (ev > 1e-10)
        rhs = -(Nw @ G.T[:, :, None])[..., 0]                  # (B, k)
        with np.errstate(all="ignore"):
            lam0 = np.linalg.solve(np.where(ok[:, None, None], Gram, np.eye(k)), rhs[..., None])[..., 0]
        lam0[~valid] = 0.0
        neg = valid & (lam0 < 0)
        if not np.any(neg & ok[:, None]):
            break
        # rows with negative multipliers are not active: leave them out and retry
        valid = valid & ~neg
        Nw = Nw * valid[:, :, None]
        NwT = Nw.transpose(0, 2, 1)
        cand = cand & valid.any(axis=1)
    ok = ok & np.all(np.isfinite(lam0), axis=1) & np.all(lam0 >= 0, axis=1)
    if not np.any(ok):
        return
    b = np.flatnonzero(ok)
    U[b] = G.T[b] + (NwT[b] @ lam0[b][:, :, None])[..., 0]
    N[b, :, :k] = NwT[b]
    idx[b, :k] = np.where(valid[b], init_idx.T[b], -1)
    lam[b, :k] = lam0[b]
    used[b, :k] = valid[b]


def multipliers_dense(n, idx, lam):
    """Dense ``(n, B)`` multiplier matrix from the sparse ``(idx, lam)`` of :func:`project_cones`."""
    d, B = idx.shape
    A = np.zeros((n, B))
    cols = np.broadcast_to(np.arange(B), (d, B))
    m = idx >= 0
    np.add.at(A, (idx[m], cols[m]), lam[m])
    return A
