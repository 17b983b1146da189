"""Masked matrix products of the convex programs, as GEMMs plus a mask.

Shapes used throughout:

* ``Xa``: data of shape ``(n, d)`` (with the ones column appended when a bias is used);
* ``D``: activation masks of shape ``(n, P)``, bool or uint8 (one byte per entry; a
  float copy of the masks is only ever made one row chunk at a time), or floats of
  the type of ``Xa`` (used as they are: small problems keep such a copy),
  ``D[j, i] = 1[x_j^T g_i > 0]``;
* ``U``: convex weights of shape ``(d, P, c)``, one ``d``-block per (pattern, output);
* ``Z``, ``R``: predictions / residual-like matrices of shape ``(n, c)``.

The forward product is ``Z[:, k] = sum_i D_i Xa U[:, i, k]`` and the adjoint is
``G[:, i, k] = Xa^T (D_i R[:, k])``.  Both are one GEMM ``Xa @ U`` (``n x Pc``)
followed by a mask and a reduction; the expanded ``n x Pd`` matrix is never
formed.  Rows are processed in chunks so that temporaries stay below
``chunk_elements`` numbers.

Precision: the products run in the floating type of ``Xa`` (float64 or float32);
``U`` and ``R`` are cast to it, so a float32 ``Xa`` gives single-precision GEMMs
(about twice as fast) whatever the type of the loss-side arrays.
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["forward", "adjoint", "signed_products", "cone_adjoint", "DEFAULT_CHUNK_ELEMENTS",
           "auto_chunk_elements", "release_workspace"]

#: upper bound on the number of floats in one temporary (``rows x P x c``)
DEFAULT_CHUNK_ELEMENTS = 1 << 22
#: smallest automatic chunk (floats): ``64K`` float64 numbers fill half of a 1 MB L2 cache
_MIN_AUTO_CHUNK = 1 << 16


def auto_chunk_elements(d: int) -> int:
    """Chunk size (floats per temporary) for masked products with ``d`` features.

    With few features the GEMM does ``2 d`` flops per number of ``Xa @ U`` and the
    mask passes that follow are memory-bound: chunks that stay in the L2 cache
    (``64K`` numbers) make them run from cache (house_16H-like shape, d = 17,
    500 gates: 2.2x -> 1.1x two GEMMs).  With many features the products are
    compute-bound and the adjoint's accumulation ``G += Xa[rows].T @ M`` wants
    tall chunks (full MNIST, d = 785: 4M numbers).  Hence ``4096 d`` clipped to
    ``[64K, DEFAULT_CHUNK_ELEMENTS]``.
    """
    return int(min(DEFAULT_CHUNK_ELEMENTS, max(_MIN_AUTO_CHUNK, 4096 * int(d))))

_local = threading.local()


def _scratch(name: str, shape: tuple, dtype) -> np.ndarray:
    """A reusable, uninitialised scratch array (one per name, dtype and thread).

    The chunk temporaries of the products are megabytes; allocating them afresh on
    every call makes the allocator map and unmap them, and the page faults cost more
    than the GEMM on problems of a few thousand samples (kr_vs_kp, n = 3196: 4.4 ms
    per forward product instead of 1.2 ms).  The buffers only ever hold one row chunk
    (``<= chunk_elements`` numbers); :func:`release_workspace` frees them.
    """
    bufs = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = _local.bufs = {}
    dtype = np.dtype(dtype)
    size = 1
    for k in shape:
        size *= int(k)
    buf = bufs.get((name, dtype))
    if buf is None or buf.size < size:
        buf = bufs[(name, dtype)] = np.empty(max(size, 1), dtype=dtype)
    return buf[:size].reshape(shape)


def release_workspace() -> None:
    """Free the scratch buffers of the masked products held by the calling thread."""
    _local.bufs = {}


def _mask_rows(D: np.ndarray, sl: slice, dtype) -> np.ndarray:
    """Rows ``sl`` of the masks as floats of ``dtype``: a view when ``D`` already has that
    type (small problems keep such a copy, see ``GatedReLUProblem``), else a scratch copy."""
    if D.dtype == dtype:
        return D[sl]
    Dm = _scratch("mask", (sl.stop - sl.start, D.shape[1]), dtype)
    np.copyto(Dm, D[sl])
    return Dm


def _row_chunks(n: int, width: int, chunk_elements: int):
    rows = max(1, min(n, chunk_elements // max(width, 1)))
    for start in range(0, n, rows):
        yield slice(start, min(n, start + rows))


def forward(Xa: np.ndarray, D: np.ndarray, U: np.ndarray,
            chunk_elements: int | None = None) -> np.ndarray:
    """Return ``Z`` of shape ``(n, c)`` with ``Z[:, k] = sum_i D_i Xa U[:, i, k]``.

    ``chunk_elements``: floats per row-chunk temporary (default
    :func:`auto_chunk_elements`).
    """
    n = Xa.shape[0]
    d, P, c = U.shape
    if chunk_elements is None:
        chunk_elements = auto_chunk_elements(d)
    Z = np.empty((n, c), dtype=Xa.dtype)
    if d < P:
        # fewer features than patterns: Z[j, k] = x_j . (sum_i D_ji U[:, i, k]), one GEMM
        # of the mask with U (n x P x c d) and a reduction over n c d numbers instead of
        # a mask pass and a reduction over n P c
        Ut = np.ascontiguousarray(np.asarray(U).transpose(1, 2, 0), dtype=Xa.dtype).reshape(P, c * d)
        if D.dtype == Xa.dtype:
            # float masks need no conversion pass, and the only temporary is n x c d
            # (smaller than the masks): one chunk, no per-chunk overhead
            W = np.matmul(D, Ut)
            if c == 1:
                Z[:, 0] = np.einsum("jd,jd->j", W, Xa)
            else:
                Z[:] = np.einsum("jkd,jd->jk", W.reshape(n, c, d), Xa)
            return Z
        for sl in _row_chunks(n, max(P, c * d), chunk_elements):
            rows = sl.stop - sl.start
            Dm = _mask_rows(D, sl, Xa.dtype)
            W = _scratch("xu", (rows, c * d), Xa.dtype)
            np.matmul(Dm, Ut, out=W)
            Z[sl] = np.einsum("jkd,jd->jk", W.reshape(rows, c, d), Xa[sl])
        return Z
    # columns ordered (output, pattern) so that the masked reduction over patterns is a
    # batched product on contiguous rows (a strided einsum is 5x slower for c = 3)
    Uc = np.ascontiguousarray(np.asarray(U).transpose(0, 2, 1), dtype=Xa.dtype).reshape(d, c * P)
    for sl in _row_chunks(n, P * c, chunk_elements):
        rows = sl.stop - sl.start
        XU = _scratch("xu", (rows, c * P), Xa.dtype)
        np.matmul(Xa[sl], Uc, out=XU)
        Dm = _mask_rows(D, sl, Xa.dtype)
        if c == 1:
            Z[sl, 0] = np.einsum("jp,jp->j", XU, Dm)
        else:
            Z[sl] = np.matmul(XU.reshape(rows, c, P), Dm[:, :, None])[:, :, 0]
    return Z


def adjoint(Xa: np.ndarray, D: np.ndarray, R: np.ndarray,
            chunk_elements: int | None = None, XaT: np.ndarray | None = None) -> np.ndarray:
    """Return ``G`` of shape ``(d, P, c)`` with ``G[:, i, k] = Xa^T (D_i R[:, k])``.

    ``chunk_elements``: as in :func:`forward`.  ``XaT``: optionally a C-contiguous
    copy of ``Xa.T``, shape ``(d, n)`` (used when ``d < P`` and ``D`` is a float
    mask: the scaled data ``(R[:, k] * Xa)^T`` is then formed on contiguous rows).
    """
    n, d = Xa.shape
    if chunk_elements is None:
        chunk_elements = auto_chunk_elements(d)
    P = D.shape[1]
    R = np.asarray(R, dtype=Xa.dtype)
    c = R.shape[1]
    # G[:, i, k] = (R[:, k] * Xa)^T D_i: with fewer features than patterns, scaling the
    # data rows (n d numbers per output) is cheaper than scaling the mask columns
    # (n P), and a broadcast along a short trailing axis is slow in numpy
    scale_data = d < P
    if scale_data and D.dtype == Xa.dtype:
        # float masks: one chunk (the only temporary is d x n); scaling the columns of
        # the contiguous transpose is 2x faster than scaling the rows of Xa
        G = np.empty((d, c * P), dtype=Xa.dtype)
        XRt = _scratch("xr", (d, n), Xa.dtype)
        src = XaT if XaT is not None else Xa.T
        for k in range(c):
            np.multiply(src, R[:, k], out=XRt)
            np.matmul(XRt, D, out=G[:, k * P:(k + 1) * P])
        if c == 1:
            return G.reshape(d, P, 1)
        return np.ascontiguousarray(G.reshape(d, c, P).transpose(0, 2, 1))
    G = np.zeros((d, c * P), dtype=Xa.dtype)
    for sl in _row_chunks(n, P * c, chunk_elements):
        rows = sl.stop - sl.start
        Dm = _mask_rows(D, sl, Xa.dtype)
        if scale_data:
            XR = _scratch("xr", (rows, d), Xa.dtype)
            for k in range(c):
                np.multiply(Xa[sl], R[sl, k:k + 1], out=XR)
                if sl.start == 0 and sl.stop == n:
                    np.matmul(XR.T, Dm, out=G[:, k * P:(k + 1) * P])
                else:
                    G[:, k * P:(k + 1) * P] += XR.T @ Dm
            continue
        # columns ordered (output, pattern): contiguous writes (broadcasting into a
        # trailing axis of length c is several times slower)
        M = _scratch("masked", (rows, c, P), Xa.dtype)
        for k in range(c):
            np.multiply(Dm, R[sl, k:k + 1], out=M[:, k, :])
        if sl.start == 0 and sl.stop == n:
            G = Xa.T @ M.reshape(rows, c * P)
        else:
            G += Xa[sl].T @ M.reshape(rows, c * P)
    if c == 1:
        return G.reshape(d, P, 1)
    return np.ascontiguousarray(G.reshape(d, c, P).transpose(0, 2, 1))


def signed_products(Xa: np.ndarray, S: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Return ``(2 D_i - I) Xa V[:, i, k]`` stacked as an array of shape ``(n, P, c)``.

    ``S`` is the sign matrix ``2 D - 1`` of shape ``(n, P)``.  The cone constraint
    of the ReLU program is ``signed_products(Xa, S, V) >= 0``.
    """
    d, P, c = V.shape
    XV = (Xa @ V.reshape(d, P * c)).reshape(-1, P, c)
    XV *= S[:, :, None]
    return XV


def cone_adjoint(Xa: np.ndarray, S: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Return ``G[:, i, k] = Xa^T ((2 D_i - I) A[:, i, k])`` for ``A`` of shape ``(n, P, c)``."""
    n, P, c = A.shape
    M = A * S[:, :, None]
    return (Xa.T @ M.reshape(n, P * c)).reshape(Xa.shape[1], P, c)
