"""Separation oracle for the dual constraint of two-layer ReLU networks.

Given a dual point ``Theta`` of shape ``(n, c)`` (for a network with outputs
``Z``, ``Theta = -grad L(Z)``, i.e. the residual over ``n`` for the squared
loss), the dual constraint of weight-decay training over *all* hidden units
(math spec sections 2.1, 2.4 and 4.7) reads ``sigma(Theta) <= alpha`` with

* ``outputs="separate"`` (scalar outputs, and the one-vs-all program that
  :func:`cvxnn.solve` uses for several outputs: every unit feeds one output)::

      sigma(Theta) = max_k max_{s = +-1} max_{||u|| <= 1}  s * Theta[:, k]^T (Xa u)_+

* ``outputs="joint"`` (weight decay on vector output weights, a unit feeds all
  outputs)::

      sigma(Theta) = max_{||u|| <= 1} || Theta^T (Xa u)_+ ||_2

with ``Xa = [X, 1]`` when ``bias`` (the bias is part of ``u``).  For one
output both are the same.  The gated program replaces ``(Xa u)_+`` by
``D_i Xa u`` for a free ``u`` (``cone=False``); its constraint is
``max_i ||Xa^T D_i Theta_k|| <= alpha``.

Inside the cell ``K_i = {u : (2 D_i - I) Xa u >= 0}`` of the hyperplane
arrangement, ``(Xa u)_+ = D_i Xa u`` is linear, so with ``g_i = s Xa^T D_i
Theta_k`` the separate maximum over the cell is ``max_{u in K_i, ||u|| <= 1}
g_i^T u = ||proj_{K_i}(g_i)||`` (Moreau), attained at the normalised
projection.  This module evaluates it

* exactly (``method="enumerate"``): over every cell of the arrangement, which
  :func:`cvxnn.patterns.enumerate_patterns` lists for data of small rank; the
  per-cell maxima are the norms of batched exact cone projections
  (:func:`cvxnn.solvers.cone_projection.project_cones`), computed only for the
  cells whose cheap bound ``||g_i||`` can matter;
* approximately (``method="search"``): multi-start ascent with the fixed-point
  step ``u <- normalise(Xa^T D(u) s Theta_k)``, ``D(u) = diag(1[Xa u > 0])``,
  from random unit vectors, the given candidates (e.g. a network's units) and
  the samples with the largest ``|Theta|``, followed by the exact cell maximum of
  every cell the ascent visited.  The value found is a lower estimate of
  ``sigma``; a bound built from it is not a certificate.

For ``outputs="joint"`` and several outputs the cell maximum
``max_{u in K_i} ||Theta^T D_i Xa u||`` is not a projection; the exact method
then bounds it by the spectral norm ``||Theta^T D_i Xa||_2`` (a rigorous but
conservative upper bound), and the search evaluates ``f`` directly.

All products are GEMMs with the data (``Xa @ U`` and ``Xa^T (M * T)``) over
batches of candidates; the ``n x P d`` expanded matrix is never formed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from ._data import augment, check_X
from .patterns import arrangement_count, enumerate_patterns

__all__ = ["OracleResult", "separation_oracle", "neuron_values"]

#: exact enumeration is used by ``method="auto"`` when the arrangement has at most this many cells
AUTO_ENUMERATION_LIMIT = 20_000


@dataclass
class OracleResult:
    """What :func:`separation_oracle` returns.

    Attributes
    ----------
    value : float
        Largest constraint value found, ``max s Theta_k^T (Xa u)_+`` (or the
        joint norm).  With ``exact`` it is the exact maximum over all units for
        ``outputs="separate"``.
    upper_bound : float
        A proven upper bound on ``sigma(Theta)`` when ``exact`` (equal to
        ``value`` for ``outputs="separate"``), ``nan`` otherwise.
    exact : bool
        Whether every cell of the arrangement was examined, i.e. whether
        ``upper_bound`` is rigorous.
    method : str
        ``"enumerate"`` or ``"search"``.
    values : ndarray of shape (m,)
        Constraint values of the returned units, in decreasing order: the best
        unit of each distinct cell found above ``threshold`` (at least the best
        one), at most ``max_neurons``.
    directions : ndarray of shape (d_aug, m)
        Unit-norm maximisers ``u`` (they may lie on a cell boundary).
    gates : ndarray of shape (d_aug, m)
        A gate in the interior of each unit's cell: ``1[Xa g > 0]`` is the
        cell's activation pattern (use these to add the patterns to a program).
    outputs : ndarray of int, shape (m,)
        Output index ``k`` of each unit (``-1`` for ``outputs="joint"``).
    signs : ndarray of shape (m,)
        ``s = +1`` or ``-1``: the unit's output weight has this sign (for
        ``outputs="joint"`` the sign is +1 and ``output_directions`` holds the
        unit output vector).
    output_directions : ndarray of shape (c, m)
        Unit output direction of each unit (``s e_k`` for separate outputs,
        ``Theta^T (Xa u)_+`` normalised for joint outputs).
    n_cells : int
        Number of cells (enumerate) or distinct cells visited (search).
    """

    value: float
    upper_bound: float
    exact: bool
    method: str
    values: np.ndarray
    directions: np.ndarray
    gates: np.ndarray
    outputs: np.ndarray
    signs: np.ndarray
    output_directions: np.ndarray
    n_cells: int
    info: dict = field(default_factory=dict)

    @property
    def n_neurons(self) -> int:
        """Number of units returned (columns of ``directions``)."""
        return int(self.values.size)

    def __repr__(self) -> str:
        return (f"OracleResult(value={self.value:.6g}, exact={self.exact}, method={self.method!r}, "
                f"n_neurons={self.n_neurons}, n_cells={self.n_cells})")


def _as_theta(Theta, n: int) -> np.ndarray:
    T = np.asarray(Theta, dtype=np.float64)
    if T.ndim == 1:
        T = T[:, None]
    if T.ndim != 2 or T.shape[0] != n:
        raise ValueError(f"Theta must have shape ({n},) or ({n}, c), got {np.shape(Theta)}")
    if not np.all(np.isfinite(T)):
        raise ValueError("Theta contains NaN or infinity")
    return T


def neuron_values(Xa: np.ndarray, Theta: np.ndarray, U: np.ndarray, *, outputs="separate"):
    """Constraint values of the units ``U`` (columns, any norm; they are normalised).

    Returns ``(values, best)``: for ``outputs="separate"`` ``values`` has shape
    ``(2, c, m)`` (sign, output, unit) with ``values[0] = Theta^T (Xa u)_+`` and
    ``values[1] = -values[0]``; for ``"joint"`` shape ``(m,)``.
    """
    norms = np.linalg.norm(U, axis=0)
    Un = U / np.where(norms > 0, norms, 1.0)
    H = np.maximum(Xa @ Un, 0.0)                       # (n, m)
    V = Theta.T @ H                                    # (c, m)
    if outputs == "joint":
        return np.linalg.norm(V, axis=0)
    return np.stack([V, -V])


# ----------------------------------------------------------------------------
# exact cell maxima


def _cell_maxima(Xa, S, pattern, Gv, row_norms):
    """``||proj_{K_i}(g)||`` and the unit maximiser for each column ``g`` of ``Gv``.

    ``S`` (n, B') are the signs ``2 D - 1`` of the cells, ``pattern`` (B,) the
    cell of each column.  Columns already inside their cone are not projected.
    """
    from .solvers.cone_projection import project_cones

    B = Gv.shape[1]
    vals = np.linalg.norm(Gv, axis=0)
    dirs = Gv.copy()
    if B == 0:
        return vals, dirs
    C = (Xa @ Gv) * S[:, pattern]
    inside = np.all(C >= -1e-12 * row_norms[:, None] * np.maximum(vals, 1e-300), axis=0)
    out = np.flatnonzero(~inside)
    if out.size:
        Pj, _, _, _ = project_cones(Xa, S, pattern[out], Gv[:, out], row_norms=row_norms)
        # the projection lies in the cone, so its value g^T u / ||u|| is attained
        pn = np.linalg.norm(Pj, axis=0)
        vals[out] = pn
        dirs[:, out] = Pj
    dn = np.linalg.norm(dirs, axis=0)
    dirs /= np.where(dn > 0, dn, 1.0)
    return vals, dirs


def _exact_values_direct(Xa, T, dirs, ks, ss):
    """Re-evaluate ``s Theta_k^T (Xa u)_+`` at unit directions (guards against rounding)."""
    H = np.maximum(Xa @ dirs, 0.0)
    return ss * np.einsum("nm,nm->m", T[:, ks], H)


class _Collector:
    """Keeps the best unit per distinct (cell, output, sign) above a threshold."""

    def __init__(self, d, c):
        self.d, self.c = d, c
        self.parts: list[tuple] = []

    def add(self, vals, dirs, gates, ks, ss, odirs, keys):
        self.parts.append((vals, dirs, gates, ks, ss, odirs, keys))

    def result(self, threshold, max_neurons):
        if not self.parts:
            z = np.zeros
            return (z(0), z((self.d, 0)), z((self.d, 0)), z(0, dtype=int), z(0), z((self.c, 0)))
        vals = np.concatenate([p[0] for p in self.parts])
        dirs = np.concatenate([p[1] for p in self.parts], axis=1)
        gates = np.concatenate([p[2] for p in self.parts], axis=1)
        ks = np.concatenate([p[3] for p in self.parts])
        ss = np.concatenate([p[4] for p in self.parts])
        odirs = np.concatenate([p[5] for p in self.parts], axis=1)
        keys = np.concatenate([p[6] for p in self.parts])
        order = np.argsort(-vals, kind="stable")
        seen, keep = set(), []
        for j in order:
            if keep and (vals[j] <= threshold or len(keep) >= max_neurons):
                break
            key = keys[j]
            if key in seen:
                continue
            seen.add(key)
            # adjacent cells share boundary maximisers: keep one unit per direction
            same = [i for i in keep if ks[i] == ks[j] and ss[i] == ss[j]
                    and float(dirs[:, i] @ dirs[:, j]) > 1 - 1e-10]
            if same:
                continue
            keep.append(j)
        keep = np.asarray(keep, dtype=np.intp)
        return vals[keep], dirs[:, keep], gates[:, keep], ks[keep], ss[keep], odirs[:, keep]


def _mask_keys(M: np.ndarray, extra: np.ndarray) -> np.ndarray:
    """Key per column of the bool mask ``M`` (n, B) combined with ``extra`` (B,).

    A 64-bit BLAKE2 digest, the same in every process (Python's ``hash`` of bytes is
    salted per process, which made the order of equal-valued units, and so the
    search, differ between runs).
    """
    packed = np.packbits(M, axis=0).T
    extra = np.asarray(extra, dtype=np.int64)
    return np.array([int.from_bytes(hashlib.blake2b(row.tobytes() + e.tobytes(),
                                                    digest_size=8).digest(), "little", signed=True)
                     for row, e in zip(packed, extra)], dtype=np.int64)


def _enumerate(Xa, X, T, bias, cone, outputs, threshold, max_neurons, max_patterns, chunk):
    n, d = Xa.shape
    c = T.shape[1]
    G = enumerate_patterns(X, bias=bias, max_patterns=max_patterns)
    P = G.shape[1]
    row_norms = np.sqrt(np.einsum("nd,nd->n", Xa, Xa))
    col = _Collector(d, c)
    best = 0.0
    upper = 0.0
    for start in range(0, P, chunk):
        Gc = G[:, start:start + chunk]
        D = Xa @ Gc > 0
        Df = D.astype(np.float64)
        S = np.where(D, 1.0, -1.0)
        keys_base = np.arange(start, start + Gc.shape[1])
        if outputs == "joint" and c > 1:
            # rigorous bound: ||Theta^T D_i Xa u|| <= ||Theta^T D_i Xa||_2 for ||u|| <= 1
            Mi = np.einsum("nc,np,nd->pcd", T, Df, Xa, optimize=True)   # (p, c, d)
            upper = max(upper, float(np.linalg.norm(Mi, ord=2, axis=(1, 2)).max(initial=0.0)))
            # best unit: ascent started at every cell's gate
            vals, dirs, gts, odirs, keysj = _joint_ascent(Xa, T, Gc, iters=20)
            col.add(vals, dirs, gts, -np.ones(vals.size, dtype=int), np.ones(vals.size), odirs,
                    keysj)
            best = max(best, float(vals.max(initial=0.0)))
            continue
        for k in range(c):
            Gk = Xa.T @ (Df * T[:, k:k + 1])                  # (d, p)
            for s in (1.0, -1.0):
                Gv = s * Gk
                cheap = np.linalg.norm(Gv, axis=0)
                if not cone:
                    vals, dirs = cheap, Gv / np.where(cheap > 0, cheap, 1.0)
                    sel = np.arange(Gv.shape[1])
                else:
                    # cells whose g lies in the cone need no projection: value ||g||
                    C = (Xa @ Gv) * S
                    inside = np.all(C >= -1e-12 * row_norms[:, None] * np.maximum(cheap, 1e-300),
                                    axis=0)
                    best = max(best, float(cheap[inside].max(initial=0.0)))
                    floor = best if threshold is None else min(best, threshold)
                    sel = np.flatnonzero(inside | (cheap > floor))
                    vals, dirs = _cell_maxima(Xa, S, sel, Gv[:, sel], row_norms)
                    vals = np.minimum(vals, cheap[sel])
                if sel.size:
                    kk = np.full(sel.size, k)
                    ss = np.full(sel.size, s)
                    od = np.zeros((c, sel.size))
                    od[k] = s
                    col.add(vals, dirs, Gc[:, sel], kk, ss, od,
                            keys_base[sel] * (2 * c) + 2 * k + (s < 0))
                    best = max(best, float(vals.max(initial=0.0)))
    upper = max(upper, best) if (outputs == "joint" and c > 1) else best
    return col, best, upper, P


# ----------------------------------------------------------------------------
# search


def _joint_ascent(Xa, T, U0, iters=30):
    """Fixed-point ascent of ``||Theta^T (Xa u)_+||`` from the columns of ``U0``."""
    U = U0 / np.maximum(np.linalg.norm(U0, axis=0), 1e-300)
    best_v = np.full(U.shape[1], -np.inf)
    best_u = U.copy()
    best_g = U.copy()
    best_M = np.zeros((Xa.shape[0], U.shape[1]), dtype=bool)
    best_h = np.zeros((T.shape[1], U.shape[1]))
    for _ in range(iters):
        Z = Xa @ U
        M = Z > 0
        H = T.T @ (M * Z)                                  # (c, B)
        v = np.linalg.norm(H, axis=0)
        better = v > best_v
        best_v[better] = v[better]
        best_u[:, better] = U[:, better]
        best_g[:, better] = U[:, better]
        best_M[:, better] = M[:, better]
        best_h[:, better] = H[:, better]
        Gr = Xa.T @ (M * (T @ (H / np.maximum(v, 1e-300))))
        gn = np.linalg.norm(Gr, axis=0)
        U = np.where(gn > 0, Gr / np.maximum(gn, 1e-300), U)
    odirs = best_h / np.maximum(np.linalg.norm(best_h, axis=0), 1e-300)
    keys = _mask_keys(best_M, np.full(U.shape[1], -1))
    return np.maximum(best_v, 0.0), best_u, best_g, odirs, keys


def _search(Xa, T, cone, outputs, threshold, max_neurons, n_starts, max_iter, candidates, rng,
            chunk_elements):
    n, d = Xa.shape
    c = T.shape[1]
    col = _Collector(d, c)
    # starting points: random directions, given candidates, samples with large |Theta|
    starts = [rng.standard_normal((d, n_starts))]
    if candidates is not None and candidates.shape[1]:
        starts.append(candidates)
    n_data = min(n, max(4, n_starts // 4))
    score = np.abs(T).sum(axis=1)
    top = np.argpartition(-score, n_data - 1)[:n_data] if n_data < n else np.arange(n)
    starts.append(Xa[top].T)
    U0 = np.concatenate(starts, axis=1)
    U0 = U0[:, np.linalg.norm(U0, axis=0) > 0]
    m0 = U0.shape[1]
    if outputs == "joint" and c > 1:
        vals, dirs, gts, odirs, keys = _joint_ascent(Xa, T, U0, iters=max_iter)
        col.add(vals, dirs, gts, -np.ones(vals.size, dtype=int), np.ones(vals.size), odirs, keys)
        return col, float(vals.max(initial=0.0)), len(set(keys.tolist()))
    # one ascent per (start, output, sign); columns ordered (k, s, start)
    objs = [(k, s) for k in range(c) for s in (1.0, -1.0)]
    width = max(1, min(len(objs) * m0, chunk_elements // max(n, 1)))
    row_norms = np.sqrt(np.einsum("nd,nd->n", Xa, Xa))
    best = 0.0
    n_cells = 0
    # chunks of starts that share one output k (the dual column broadcasts)
    chunks = []
    for k in range(c):
        jobs = [(s, j) for s in (1.0, -1.0) for j in range(m0)]
        for b0 in range(0, len(jobs), width):
            chunks.append((k, jobs[b0:b0 + width]))
    for k, part in chunks:
        ss = np.array([p[0] for p in part])
        ks = np.full(len(part), k)
        U = U0[:, [p[1] for p in part]]
        U = U / np.linalg.norm(U, axis=0)
        Tk = T[:, k:k + 1]
        B = U.shape[1]
        best_v = np.full(B, -np.inf)
        best_gate = U.copy()
        best_g = np.zeros((d, B))
        best_M = np.zeros((n, B), dtype=bool)
        live = np.arange(B)                                 # starts still moving
        M = (Xa @ U) > 0
        for _ in range(max_iter):
            Ul = U[:, live]
            sl = ss[live]
            Gr = (Xa.T @ (M * Tk)) * sl                     # gradient of the cell's linear piece
            v = np.einsum("db,db->b", Gr, Ul)               # f(U) on its own cell
            better = v > best_v[live]
            bl = live[better]
            best_v[bl] = v[better]
            best_gate[:, bl] = Ul[:, better]
            best_g[:, bl] = Gr[:, better]
            best_M[:, bl] = M[:, better]
            gn = np.linalg.norm(Gr, axis=0)
            Un = np.where(gn > 0, Gr / np.maximum(gn, 1e-300), Ul)
            Mn = (Xa @ Un) > 0
            # a start has converged when its step no longer changes its cell
            moving = np.any(Mn != M, axis=0)
            U[:, live] = Un
            live = live[moving]
            M = Mn[:, moving]
            if live.size == 0:
                break
        # exact maximum over each visited best cell
        keys = _mask_keys(best_M, ks * 2 + (ss < 0))
        _, first = np.unique(keys, return_index=True)
        n_cells += first.size
        if cone:
            S = np.where(best_M[:, first], 1.0, -1.0)
            Gf = best_g[:, first]
            cheap = np.linalg.norm(Gf, axis=0)
            C = (Xa @ Gf) * S
            inside = np.all(C >= -1e-12 * row_norms[:, None] * np.maximum(cheap, 1e-300), axis=0)
            floor = max(best, float(cheap[inside].max(initial=0.0)))
            if threshold is not None:
                floor = min(floor, threshold)
            # only cells that can hold the maximum or a violator are projected
            first = first[inside | (cheap > floor)]
            S = np.where(best_M[:, first], 1.0, -1.0)
            vals, dirs = _cell_maxima(Xa, S, np.arange(first.size), best_g[:, first], row_norms)
        else:
            gn = np.linalg.norm(best_g[:, first], axis=0)
            vals, dirs = gn, best_g[:, first] / np.maximum(gn, 1e-300)
        if cone:
            vals = np.maximum(_exact_values_direct(Xa, T, dirs, ks[first], ss[first]), 0.0)
        od = np.zeros((c, first.size))
        od[ks[first], np.arange(first.size)] = ss[first]
        col.add(vals, dirs, best_gate[:, first], ks[first], ss[first], od, keys[first])
        best = max(best, float(vals.max(initial=0.0)))
    return col, best, n_cells


# ----------------------------------------------------------------------------
# public entry point


def separation_oracle(X, Theta, *, bias=True, method="auto", outputs="separate", cone=True,
                      threshold=None, max_neurons=50, n_starts=64, max_iter=30, candidates=None,
                      max_patterns=100_000, random_state=None, chunk_elements=4_000_000,
                      _Xa=None) -> OracleResult:
    """Find the units that violate the dual constraint most (see module docstring).

    Parameters
    ----------
    X : array of shape (n, d)
        Training data (without the ones column; ``bias`` adds it).
    Theta : array of shape (n,) or (n, c)
        Dual point, e.g. ``-grad L(Z)`` at a network's outputs ``Z``.
    bias : bool, default=True
    method : {"auto", "enumerate", "search"}, default="auto"
        ``auto`` enumerates when the arrangement has at most 20,000 cells
        (``arrangement_count(n, rank([X, 1]))``) and searches otherwise.
    outputs : {"separate", "joint"}, default="separate"
    cone : bool, default=True
        ``False`` evaluates the gated constraint ``||Xa^T D_i Theta_k||``.
    threshold : float, optional
        Return every distinct cell whose value exceeds it (typically ``alpha``),
        up to ``max_neurons``; by default only the best unit.
    max_neurons : int, default=50
    n_starts : int, default=64
        Random starting directions per (output, sign) for the search.
    max_iter : int, default=30
        Fixed-point steps per start.
    candidates : array of shape (d_aug, m), optional
        Extra starting directions (e.g. the units of a network, or gates).
    max_patterns : int, default=100000
        Enumeration limit passed to :func:`cvxnn.patterns.enumerate_patterns`.
    random_state : int, Generator or None

    Returns
    -------
    OracleResult
    """
    if method not in ("auto", "enumerate", "search"):
        raise ValueError(f"method must be 'auto', 'enumerate' or 'search', got {method!r}")
    if outputs not in ("separate", "joint"):
        raise ValueError(f"outputs must be 'separate' or 'joint', got {outputs!r}")
    X = check_X(X, "X")
    Xa = augment(X.astype(np.float64, copy=False), bias) if _Xa is None else _Xa
    n, d = Xa.shape
    T = _as_theta(Theta, n)
    if threshold is not None and not (np.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold must be a non-negative number or None, got {threshold!r}")
    if not isinstance(max_neurons, (int, np.integer)) or max_neurons < 1:
        raise ValueError(f"max_neurons must be a positive integer, got {max_neurons!r}")
    if not isinstance(n_starts, (int, np.integer)) or n_starts < 1:
        raise ValueError(f"n_starts must be a positive integer, got {n_starts!r}")
    if candidates is not None:
        candidates = np.asarray(candidates, dtype=np.float64)
        if candidates.ndim != 2 or candidates.shape[0] != d:
            raise ValueError(f"candidates must have shape ({d}, m), got {candidates.shape}")
    if method == "auto":
        r = int(np.linalg.matrix_rank(Xa))
        method = "enumerate" if arrangement_count(n, r) <= AUTO_ENUMERATION_LIMIT else "search"
    if method == "enumerate":
        col, best, upper, n_cells = _enumerate(Xa, X, T, bias, cone, outputs, threshold,
                                               max_neurons, max_patterns, chunk=2048)
        exact = True
    else:
        if isinstance(random_state, np.random.Generator):
            rng = random_state
        else:
            from sklearn.utils import check_random_state

            rng = np.random.default_rng(check_random_state(random_state).randint(2**31))
        col, best, n_cells = _search(Xa, T, cone, outputs, threshold, max_neurons, n_starts,
                                     max_iter, candidates, rng, chunk_elements)
        # local refinement: maxima often sit on cell boundaries; restart next to the best units
        _, top, _, _, _, _ = col.result(-np.inf, 16)
        if top.shape[1]:
            near = [top + sc * rng.standard_normal(top.shape) / np.sqrt(d)
                    for sc in (1e-4, 1e-3, 1e-2, 1e-1) for _ in range(2)]
            col2, best2, n2 = _search(Xa, T, cone, outputs, threshold, max_neurons, 1, max_iter,
                                      np.concatenate(near, axis=1), rng, chunk_elements)
            col.parts.extend(col2.parts)
            best, n_cells = max(best, best2), n_cells + n2
        upper, exact = float("nan"), False
    thr = best if threshold is None else threshold
    vals, dirs, gates, ks, ss, odirs = col.result(thr, max_neurons)
    return OracleResult(value=float(best), upper_bound=float(upper), exact=exact, method=method,
                        values=vals, directions=dirs, gates=gates, outputs=ks, signs=ss,
                        output_directions=odirs, n_cells=int(n_cells))
