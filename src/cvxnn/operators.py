"""Masked matrix products of the convex programs, as GEMMs plus a mask.

Shapes used throughout:

* ``Xa``: data of shape ``(n, d)`` (with the ones column appended when a bias is used);
* ``D``: activation masks of shape ``(n, P)``, bool or uint8 (one byte per entry; a
  float copy of the masks is only ever made one row chunk at a time),
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

import numpy as np

__all__ = ["forward", "adjoint", "signed_products", "cone_adjoint", "DEFAULT_CHUNK_ELEMENTS"]

#: upper bound on the number of floats in one temporary (``rows x P x c``)
DEFAULT_CHUNK_ELEMENTS = 1 << 22


def _row_chunks(n: int, width: int, chunk_elements: int):
    rows = max(1, min(n, chunk_elements // max(width, 1)))
    for start in range(0, n, rows):
        yield slice(start, min(n, start + rows))


def forward(Xa: np.ndarray, D: np.ndarray, U: np.ndarray,
            chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> np.ndarray:
    """Return ``Z`` of shape ``(n, c)`` with ``Z[:, k] = sum_i D_i Xa U[:, i, k]``."""
    n = Xa.shape[0]
    d, P, c = U.shape
    U2 = np.asarray(U, dtype=Xa.dtype).reshape(d, P * c)
    Z = np.empty((n, c), dtype=Xa.dtype)
    for sl in _row_chunks(n, P * c, chunk_elements):
        XU = (Xa[sl] @ U2).reshape(-1, P, c)
        Z[sl] = np.einsum("jpc,jp->jc", XU, D[sl].astype(XU.dtype, copy=False))
    return Z


def adjoint(Xa: np.ndarray, D: np.ndarray, R: np.ndarray,
            chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> np.ndarray:
    """Return ``G`` of shape ``(d, P, c)`` with ``G[:, i, k] = Xa^T (D_i R[:, k])``."""
    n, d = Xa.shape
    P = D.shape[1]
    R = np.asarray(R, dtype=Xa.dtype)
    c = R.shape[1]
    G = np.zeros((d, P * c), dtype=Xa.dtype)
    for sl in _row_chunks(n, P * c, chunk_elements):
        M = D[sl].astype(G.dtype, copy=False)[:, :, None] * R[sl][:, None, :]
        if sl.start == 0 and sl.stop == n:
            G = Xa.T @ M.reshape(-1, P * c)
        else:
            G += Xa[sl].T @ M.reshape(-1, P * c)
    return G.reshape(d, P, c)


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
