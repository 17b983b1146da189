"""Activation patterns: gate sampling, exact enumeration and masks.

A *gate* ``g`` defines the activation pattern (mask) ``1[Xa g > 0]`` of the
training rows, with the strict inequality.  ``Xa = [X, 1]`` when
``bias=True`` (ones column appended last) and ``Xa = X`` otherwise (see
:mod:`cvxnn._data`).  Gates are stored one per column: ``G`` has shape
``(d_aug, P)`` and the masks ``D = Xa @ G > 0`` have shape ``(n, P)``.

Two ways to obtain patterns (math spec, section 1.2):

* :func:`sample_gates` draws Gaussian gates and keeps one gate per distinct
  non-zero pattern.  This gives a subset of all patterns, i.e. a restriction of
  the convex program.
* :func:`enumerate_patterns` returns one gate in the interior of every
  full-dimensional cell of the hyperplane arrangement ``{u : x_j^T u = 0}``
  (all patterns).  The count grows like ``n^r`` with ``r = rank(Xa)``, so
  this is practical only for data of small rank.

Enumeration works in the ``r``-dimensional row space of ``Xa``, whitened.
Write ``Xa = U S V^T`` (SVD) and ``A = Xa V_r S_r^{-1} = U_r``.  A witness ``z`` of
a cell of the rows of ``A`` maps back to the gate ``g = V_r S_r^{-1} z``, and
``Xa g = A z``.  Whitening makes the result independent of how the columns of ``X``
are scaled, since ``X M`` (``M`` invertible) has the same ``U_r`` up to rotation.
It also measures the thinness of cells (``tol``) in a well-conditioned metric.

* ``r = 1``: two cells, ``z = +1`` and ``z = -1``.
* ``r = 2`` (which includes 1-D data with a bias column): angular sweep.  Each row
  has two critical angles; the midpoints of the arcs between consecutive
  angles give the cells, in ``O(n log n)``.
* ``r >= 3``: incremental enumeration.  A list of cells, each a sign prefix
  with an interior witness, is kept while the hyperplanes are added one at a
  time.  The spec's version tests the opposite child of every cell with a
  linear program, which needs ``O(n P)`` LPs.  Here hyperplane ``H_j`` splits
  exactly the cells that meet it, and these correspond one to one to the cells
  of the ``(r - 1)``-dimensional arrangement that the previous hyperplanes cut
  on ``H_j``.  That restricted arrangement is enumerated recursively (down to
  the angular sweep), and each of its witnesses ``w`` gives the new child
  ``w +- eps a_j``.  A final pass checks every witness against all rows.
  Witnesses whose relative margin is below ``10 * tol`` are re-centred with
  the spec's LP (HiGHS): ``max t`` s.t. ``s_l a_l^T z >= t``, ``-1 <= z <= 1``.
  The cell is dropped unless ``t > tol``.

Rows whose unit directions agree up to sign within ``tol`` define the same
hyperplane and are merged.  Zero rows of ``Xa`` have mask 0 for every gate.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from scipy.optimize import linprog
from sklearn.utils import check_random_state

from ._data import augment, check_X

__all__ = [
    "arrangement_count",
    "compute_masks",
    "enumerate_patterns",
    "sample_gates",
    "unique_patterns",
]


# ----------------------------------------------------------------------------
# argument checks


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _check_int(value, name: str, minimum: int) -> int:
    what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, numbers.Integral)
        or value < minimum
    ):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def _check_gates(G, n_rows: tuple[int, ...], name: str = "G") -> np.ndarray:
    expected = " or ".join(f"({r}, P)" for r in n_rows)
    arr = np.asarray(G)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"gates {name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(
            f"gates {name} must be a 2-D array of shape {expected} (one gate per column), "
            f"got shape {arr.shape}"
        )
    if arr.shape[0] not in n_rows:
        raise ValueError(
            f"gates {name} must have shape {expected} (one gate per column), got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"gates {name} contains NaN or infinity")
    return arr


# ----------------------------------------------------------------------------
# public API


def arrangement_count(n: int, r: int) -> int:
    """Number of cells of ``n`` central hyperplanes in general position in rank ``r``.

    ``2 * sum_{k=0}^{r-1} C(n - 1, k)`` (Cover / Winder).  This is an upper bound
    on the number of activation patterns of ``n`` rows of rank ``r``, and it is
    attained when the rows are in general position.

    Parameters
    ----------
    n : int
        Number of distinct hyperplanes (non-zero, pairwise non-parallel rows), ``n >= 0``.
    r : int
        Rank of the rows, ``r >= 0``.

    Returns
    -------
    count : int
        The number of cells (``1`` when ``n == 0`` or ``r == 0``: the whole space).
    """
    n = _check_int(n, "n", 0)
    r = _check_int(r, "r", 0)
    if n == 0 or r == 0:
        return 1
    return 2 * sum(math.comb(n - 1, k) for k in range(r))


def unique_patterns(D) -> tuple[np.ndarray, np.ndarray]:
    """Remove duplicate mask columns, keeping the first occurrence of each.

    Parameters
    ----------
    D : array-like of shape (n, P)
        Masks, one pattern per column (bool, or integers 0/1).

    Returns
    -------
    D_unique : ndarray of bool, shape (n, P_unique)
        The distinct columns in order of first appearance.
    index : ndarray of int, shape (P_unique,)
        Column indices into ``D`` with ``D_unique = D[:, index]`` (increasing).
    """
    arr = np.asarray(D)
    if arr.ndim != 2:
        raise ValueError(f"D must be a 2-D array of masks of shape (n, P), got shape {arr.shape}")
    if arr.dtype != bool:
        if arr.dtype.kind not in "biuf" or not np.all((arr == 0) | (arr == 1)):
            raise ValueError("D must contain only booleans or the values 0 and 1")
        arr = arr.astype(bool)
    if arr.shape[1] == 0:
        return arr.copy(), np.zeros(0, dtype=np.intp)
    packed = np.ascontiguousarray(np.packbits(arr, axis=0).T)  # one row of bytes per column
    keys = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, first = np.unique(keys, return_index=True)
    index = np.sort(first)
    return arr[:, index], index


def compute_masks(X, G, *, bias: bool = True) -> np.ndarray:
    """Activation masks ``1[Xa g > 0]`` of the gates ``G`` on the data ``X``.

    Parameters
    ----------
    X : array-like of shape (n, d)
        Data.
    G : array-like of shape (d + 1, P) or (d, P)
        Gates, one per column.  With ``bias=True``, gates with ``d + 1`` rows act
        on ``[X, 1]`` (the last row is the gate's bias), and gates with ``d`` rows act
        on ``X`` alone (zero bias).  With ``bias=False`` they must have ``d`` rows.
    bias : bool, default=True
        Whether the data carry the ones column ``Xa = [X, 1]``.

    Returns
    -------
    D : ndarray of bool, shape (n, P)
        ``D[j, i]`` is True when sample ``j`` is active for gate ``i`` (strictly
        positive pre-activation).
    """
    X = check_X(X, "X")
    bias = _check_bool(bias, "bias")
    d = X.shape[1]
    G = _check_gates(G, (d, d + 1) if bias else (d,))
    W, b = (G[:d], G[d]) if G.shape[0] == d + 1 else (G, None)
    n, P = X.shape[0], G.shape[1]
    D = np.empty((n, P), dtype=bool)
    step = max(1, (1 << 22) // max(P, 1))   # the float products, one row chunk at a time
    for start in range(0, n, step):
        Z = X[start:start + step] @ W
        if b is not None:
            Z += b
        np.greater(Z, 0, out=D[start:start + step])
    return D


def sample_gates(X, n_gates: int = 100, *, bias: bool = True, random_state=None) -> np.ndarray:
    """Draw Gaussian gates and keep one per distinct non-zero activation pattern.

    The gates are the columns of ``rng.standard_normal((n_gates, d_aug)).T``, with
    ``rng = check_random_state(random_state)`` (or ``random_state`` itself when it
    is a :class:`numpy.random.Generator`).  Gates whose mask is all zero are
    dropped, and among gates with the same mask only the first drawn is kept.
    The kept gates stay in draw order, so the same seed gives the same output.

    Parameters
    ----------
    X : array-like of shape (n, d)
        Data.
    n_gates : int, default=100
        Number of gates drawn (an upper bound on the number returned).
    bias : bool, default=True
        Gates act on ``Xa = [X, 1]`` (``d_aug = d + 1``) when True, on ``X``
        (``d_aug = d``) otherwise.
    random_state : int, RandomState, Generator or None, default=None
        Seed or random generator.

    Returns
    -------
    G : ndarray of shape (d_aug, P), float64
        Kept gates, ``P <= n_gates``.  Their masks are non-zero and pairwise distinct.
    """
    X = check_X(X, "X")
    bias = _check_bool(bias, "bias")
    n_gates = _check_int(n_gates, "n_gates", 1)
    if isinstance(random_state, np.random.Generator):
        rng = random_state
    else:
        try:
            rng = check_random_state(random_state)
        except ValueError:
            raise ValueError(
                "random_state must be None, an int, a numpy RandomState or Generator, "
                f"got {random_state!r}"
            ) from None
    Xa = augment(X, bias)
    G = np.ascontiguousarray(rng.standard_normal((n_gates, Xa.shape[1])).T)
    D = compute_masks(Xa, G, bias=False)
    nonzero = np.flatnonzero(D.any(axis=0))
    _, first = unique_patterns(D[:, nonzero])
    return np.ascontiguousarray(G[:, nonzero[first]])


def enumerate_patterns(
    X,
    *,
    bias: bool = True,
    include_zero: bool = False,
    max_patterns: int = 100_000,
    tol: float = 1e-9,
) -> np.ndarray:
    """One gate for every activation pattern of ``X``, computed exactly.

    Returns one gate in the interior of each full-dimensional cell of the
    hyperplane arrangement ``{u : xa_j^T u = 0}``, where the ``xa_j`` are the
    rows of ``Xa``.  So ``Xa @ g`` has no zero on a non-zero row, and distinct
    gates have distinct masks.  For data in general position there are
    ``arrangement_count(n, r)`` cells, with ``r = rank(Xa)``.  The method
    depends on ``r`` (1: trivial, 2: angular sweep, 3 and more: incremental
    enumeration with LP re-centring; see the module docstring).

    Parameters
    ----------
    X : array-like of shape (n, d)
        Data.
    bias : bool, default=True
        Enumerate the patterns of ``Xa = [X, 1]`` (gates of length ``d + 1``) when
        True, of ``X`` (gates of length ``d``) otherwise.
    include_zero : bool, default=False
        Keep the all-zero pattern (the cell where no sample is active), when the
        arrangement has it.
    max_patterns : int, default=100_000
        Refuse (``ValueError``) when the bound ``arrangement_count(k, r)`` exceeds
        this number.  Here ``k`` is the number of distinct hyperplanes.
    tol : float, default=1e-9
        Geometric tolerance.  Rows whose unit directions agree (up to sign)
        within ``tol`` define one hyperplane.  The LP keeps a cell only when its
        margin ``t`` exceeds ``tol``, and the angular sweep ignores arcs narrower
        than ``tol``.  Cells thinner than about ``tol`` (relative to the row
        norms) are therefore left out; lower ``tol`` or standardise badly scaled
        data to keep them.

    Returns
    -------
    G : ndarray of shape (d_aug, P), float64
        Unit-norm gates, one per pattern, with ``d_aug = d + 1`` if ``bias`` else ``d``.

    Raises
    ------
    ValueError
        If the pattern count bound exceeds ``max_patterns``; use
        :func:`sample_gates` instead.
    """
    X = check_X(X, "X")
    bias = _check_bool(bias, "bias")
    include_zero = _check_bool(include_zero, "include_zero")
    max_patterns = _check_int(max_patterns, "max_patterns", 1)
    if isinstance(tol, (bool, np.bool_)) or not isinstance(tol, numbers.Real) or not (
        0 < tol < 1
    ):
        raise ValueError(f"tol must be a number in (0, 1), got {tol!r}")
    tol = float(tol)

    Xa = augment(X, bias).astype(np.float64, copy=False)
    n, d_aug = Xa.shape
    _, s, Vt = np.linalg.svd(Xa, full_matrices=False)
    thresh = (s[0] if s.size else 0.0) * max(n, d_aug) * np.finfo(np.float64).eps
    r = int(np.sum(s > thresh))
    if r == 0:  # all rows are zero: one cell, whose mask is all zero
        G = np.zeros((d_aug, 1 if include_zero else 0))
        G[0, :] = 1.0
        return G
    Vr = Vt[:r].T
    B = Xa @ Vr
    nz = np.linalg.norm(B, axis=1) > thresh
    A = B[nz] / s[:r]  # whitened rows: the non-zero rows of U_r
    Ahat = A / np.linalg.norm(A, axis=1, keepdims=True)  # their unit normals
    to_gate = Vr / s[:r]  # witness z -> gate V_r S_r^{-1} z

    reps = _distinct_directions(Ahat)
    bound = arrangement_count(len(reps), r)
    if bound > max_patterns:
        data = "[X, 1]" if bias else "X"
        raise ValueError(
            f"exact enumeration is too large: {data} has rank r={r} and {len(reps)} distinct "
            f"hyperplanes, which can give up to {bound} activation patterns, more than "
            f"max_patterns={max_patterns}. The count grows like n^r, so exact enumeration "
            "only suits data of small rank; use sample_gates(X, n_gates=...) instead, "
            "reduce the rank (e.g. PCA), or raise max_patterns."
        )

    if r <= 2:
        Z, n_pos = _sweep(Ahat, tol) if r == 2 else _line(Ahat)
        G = to_gate @ Z.T
        if not include_zero:
            G = G[:, n_pos > 0]
    else:
        Z = _incremental(Ahat[reps], tol)
        G, D = _finalize(Xa, to_gate, Ahat, Z, tol)
        if not include_zero:
            G = G[:, D.any(axis=0)]
    G /= np.linalg.norm(G, axis=0)
    return np.ascontiguousarray(G)


# ----------------------------------------------------------------------------
# enumeration internals (rows are unit normals in the reduced space R^r)


def _distinct_directions(U: np.ndarray) -> np.ndarray:
    """Indices of one row per distinct line ``{t u}`` (approximate: rounding)."""
    if U.shape[0] == 0:
        return np.zeros(0, dtype=np.intp)
    lead = np.argmax(np.abs(U) > 1e-6, axis=1)
    sign = np.sign(U[np.arange(U.shape[0]), lead])
    key = np.round(U * sign[:, None], 9) + 0.0  # + 0.0 turns -0.0 into 0.0
    _, first = np.unique(key, axis=0, return_index=True)
    return np.sort(first)


def _line(U: np.ndarray):
    """Rank 1: the two cells ``z = +1`` and ``z = -1``, with their active counts."""
    Z = np.array([[1.0], [-1.0]])
    return Z, np.array([np.sum(U[:, 0] > 0), np.sum(U[:, 0] < 0)])


def _sweep(U: np.ndarray, tol: float):
    """Rank 2: cells of the lines ``u_j^T z = 0`` by an angular sweep.

    Returns the unit witnesses ``Z`` (P, 2), at the arc midpoints, and the
    number of rows active at each witness.
    """
    m = U.shape[0]
    if m == 0:
        return np.array([[1.0, 0.0]]), np.zeros(1, dtype=np.intp)
    psi = np.arctan2(U[:, 1], U[:, 0])
    # Row j is active on the open arc (psi_j - pi/2, psi_j + pi/2).
    ang = np.mod(np.concatenate([psi - np.pi / 2, psi + np.pi / 2]), 2 * np.pi)
    delta = np.concatenate([np.ones(m, np.intp), -np.ones(m, np.intp)])
    order = np.argsort(ang, kind="stable")
    ang, delta = ang[order], delta[order]
    # Start right after the widest gap, so that no group of angles wraps round.
    gaps = np.diff(np.append(ang, ang[0] + 2 * np.pi))
    shift = int(np.argmax(gaps)) + 1
    ang, delta = np.roll(ang, -shift), np.roll(delta, -shift)
    ang = np.where(ang < ang[0], ang + 2 * np.pi, ang)
    starts = np.flatnonzero(np.concatenate([[True], np.diff(ang) > tol]))
    ends = np.append(starts[1:] - 1, len(ang) - 1)
    nxt = np.append(ang[starts[1:]], ang[0] + 2 * np.pi)
    theta = 0.5 * (ang[ends] + nxt)  # arc g lies between group g and group g + 1
    Z = np.column_stack([np.cos(theta), np.sin(theta)])
    n_last = int(np.sum(U @ Z[-1] > 0))  # the widest arc: far from every critical angle
    n_pos = n_last + np.cumsum(np.add.reduceat(delta, starts))
    return Z, n_pos


def _restricted_cells(C: np.ndarray, tol: float) -> np.ndarray:
    """Unit witnesses of the cells of the rows of ``C`` (any rank, >= 2 columns)."""
    C = C / np.linalg.norm(C, axis=1, keepdims=True)
    return _sweep(C, tol)[0] if C.shape[1] == 2 else _incremental(C, tol)


def _incremental(U: np.ndarray, tol: float) -> np.ndarray:
    """Rank >= 3: unit witnesses of all cells of the hyperplanes ``u_j^T z = 0``.

    Cells are kept with a witness and a 64-bit hash of their sign prefix.
    Hyperplane ``j`` splits exactly the cells that contain a witness of the
    arrangement restricted to ``H_j``.
    """
    k, r = U.shape
    if k == 0:
        return np.eye(r)[:1]
    R = np.random.default_rng(0).integers(0, 2**64 - 1, size=k, dtype=np.uint64, endpoint=True)
    cap = 64
    Z = np.zeros((cap, r))
    H = np.zeros(cap, dtype=np.uint64)
    Z[0], Z[1], H[0], P = U[0], -U[0], R[0], 2
    for j in range(1, k):
        u = U[j]
        Q = np.linalg.qr(u[:, None], mode="complete")[0][:, 1:]  # basis of u's complement
        C = U[:j] @ Q
        if np.linalg.norm(C, axis=1).min() <= tol:
            continue  # the same hyperplane as an earlier row
        W = _restricted_cells(C, tol) @ Q.T  # witnesses on H_j, (m, r)
        V = U[:j] @ W.T  # (j, m)
        T = V > 0
        h = T.T.astype(np.uint64) @ R[:j]  # wraps modulo 2^64
        order = np.argsort(H[:P])
        pos = np.minimum(np.searchsorted(H[:P][order], h), P - 1)
        cand = order[pos]
        ok = H[cand] == h
        if ok.any():  # check the signs, not only the hashes
            ok[ok] = np.all((U[:j] @ Z[cand[ok]].T > 0) == T[:, ok], axis=0)
        sel = np.flatnonzero(ok)
        idx, first = np.unique(cand[sel], return_index=True)
        sel = sel[first]

        H_old = H[:P].copy()
        side = Z[:P] @ u > 0
        H[:P] += side.astype(np.uint64) * R[j]
        # Children w +- eps u: eps small enough to stay inside the split cell.
        a = np.abs(V[:, sel])
        b = np.abs(U[:j] @ u)[:, None]
        ratio = np.divide(a, b, out=np.full_like(a, np.inf), where=b > 0)
        eps = np.minimum(1.0, 0.5 * ratio.min(axis=0))
        fresh = np.minimum(eps, (a - eps * b).min(axis=0)) / np.sqrt(1 + eps**2)
        old = np.abs(U[: j + 1] @ Z[idx].T).min(axis=0)
        pm = np.where(side[idx], eps, -eps)[:, None] * u
        better = fresh > old  # re-centre the old child when that improves its margin
        Z[idx[better]] = _unit(W[sel[better]] + pm[better])
        if P + len(idx) > cap:
            cap = 2 * (P + len(idx))
            Z = np.resize(Z, (cap, r))
            H = np.resize(H, cap)
        Z[P : P + len(idx)] = _unit(W[sel] - pm)
        H[P : P + len(idx)] = H_old[idx] + (~side[idx]).astype(np.uint64) * R[j]
        P += len(idx)
    return Z[:P].copy()


def _unit(Z: np.ndarray) -> np.ndarray:
    return Z / np.linalg.norm(Z, axis=1, keepdims=True)


def _lp_witness(S: np.ndarray, tol: float):
    """Maximise ``t`` s.t. ``S z >= t``, ``-1 <= z <= 1``; return ``z`` if ``t > tol``.

    The margin ``min(S z)`` is recomputed from ``z``, because the LP solver's own
    feasibility tolerance (about 1e-7) is much looser than ``tol``.
    """
    m, r = S.shape
    c = np.zeros(r + 1)
    c[-1] = -1.0
    res = linprog(
        c,
        A_ub=np.hstack([-S, np.ones((m, 1))]),
        b_ub=np.zeros(m),
        bounds=[(-1.0, 1.0)] * r + [(None, 1.0)],
        method="highs",
    )
    if res.status != 0 or np.min(S @ res.x[:r]) <= tol:
        return None
    return res.x[:r]


def _finalize(Xa, to_gate, Ahat, Z, tol, chunk: int = 4096):
    """Check the witnesses against every row, LP re-centre thin ones, map to gates.

    Returns the gates (d_aug, P) and their masks on ``Xa`` (n, P).  Cells that the
    LP finds thinner than ``tol`` are removed, and so are duplicate masks.
    """
    G_all, D_all = [], []
    for start in range(0, Z.shape[0], chunk):
        Zc = _unit(Z[start : start + chunk])
        vals = Ahat @ Zc.T
        keep = np.ones(Zc.shape[0], dtype=bool)
        for i in np.flatnonzero(np.abs(vals).min(axis=0) <= 10 * tol):
            z = _lp_witness(np.where(vals[:, i] > 0, 1.0, -1.0)[:, None] * Ahat, tol)
            if z is None:
                keep[i] = False
            else:
                Zc[i] = z / np.linalg.norm(z)
        G = to_gate @ Zc[keep].T
        G_all.append(G)
        D_all.append(Xa @ G > 0)
    G, D = np.hstack(G_all), np.hstack(D_all)
    D, index = unique_patterns(D)
    return G[:, index], D


def _cells_lp(A, tol: float = 1e-9) -> np.ndarray:
    """Reference enumeration: the spec's incremental LP, one LP per cell and row.

    Slow (``O(n P)`` LPs), kept as an independent check of :func:`enumerate_patterns`.
    ``A`` has shape (n, r), and the returned unit witnesses have shape (P, r).
    """
    A = np.asarray(A, dtype=np.float64)
    A = A[np.linalg.norm(A, axis=1) > 0]
    A = A / np.linalg.norm(A, axis=1, keepdims=True)
    if A.shape[0] == 0:
        return np.eye(A.shape[1])[:1]
    cells = [(np.array([1.0]), A[0]), (np.array([-1.0]), -A[0])]
    for j in range(1, A.shape[0]):
        children = []
        for signs, z in cells:
            v = A[j] @ z
            for s in (1.0, -1.0):
                s_new = np.append(signs, s)
                if s * v > tol:
                    children.append((s_new, z))
                    continue
                w = _lp_witness(s_new[:, None] * A[: j + 1], tol)
                if w is not None:
                    children.append((s_new, w))
        cells = children
    return _unit(np.array([z for _, z in cells]))
