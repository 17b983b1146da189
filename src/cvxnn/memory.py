"""Memory estimates, checked before a solve allocates anything large.

:func:`estimate_memory` returns an upper estimate of the peak memory that
:func:`cvxnn.solve` needs for a problem of a given size, with a breakdown by
item; :func:`check_memory` compares it with a limit and raises
:class:`InsufficientMemoryError` (a :class:`MemoryError`) with the options that
would fit, instead of letting the operating system kill the process half way.

The limit is, in order: the ``memory_limit`` argument of :func:`cvxnn.solve`
(bytes, or a string such as ``"4GB"``), the environment variable
``CVXNN_MEMORY_LIMIT`` (same format), or the memory the operating system
reports as available (``MemAvailable`` in ``/proc/meminfo``, otherwise physical
memory).  ``memory_limit=False`` (or ``CVXNN_MEMORY_LIMIT=0``) disables the check.

What is counted (``n`` samples, ``d`` features plus the bias column, ``P``
patterns, ``c`` outputs, ``b`` bytes per float of the products):

* the float64 data and its augmented copy, plus a float32 copy for
  ``dtype="float32"``;
* the activation masks, one byte per entry (``n P``), and the temporaries of the
  gate products, which :func:`cvxnn.compute_masks` makes one row chunk at a time;
* the targets, predictions and residuals (a few ``n c`` arrays);
* the row-chunk temporaries of the masked GEMMs (``2^22`` numbers, twice);
* the iterates: about 12 copies of the ``d P c`` convex weights for the gated
  solvers (accelerated gradient, working set), 24 for the relu program (two
  weights per block, interior-point slacks and multipliers, cone projections);
* the working-set Newton systems: dense matrices of side at most 8000 (larger
  systems use conjugate gradients) and an ``n x n`` Woodbury form when ``n c <= 3500``;
* for the relu interior-point method, the reduced Newton matrix: the cheaper of a
  dense ``(2 P d)^2`` block matrix and an ``n x n`` Woodbury form.

The estimate is deliberately on the high side (tests check it bounds the peak
traced by :mod:`tracemalloc`); it leaves out the interpreter and imported
libraries (about 150 MB).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from dataclasses import dataclass, field

import numpy as np

__all__ = ["MemoryEstimate", "InsufficientMemoryError", "estimate_memory", "check_memory",
           "available_memory", "parse_bytes", "format_bytes"]

_UNITS = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9,
          "T": 1e12, "TB": 1e12, "KIB": 2 ** 10, "MIB": 2 ** 20, "GIB": 2 ** 30, "TIB": 2 ** 40}

#: numbers in one row-chunk temporary of the masked products (see operators.py)
_CHUNK_ELEMENTS = 1 << 22
#: dense Newton budget of the working-set solvers (flops), see working_set.py
_DENSE_FLOPS = 3e9


class InsufficientMemoryError(MemoryError):
    """The estimated memory of a solve exceeds the limit.  ``estimate`` holds the figures."""

    def __init__(self, message: str, estimate: "MemoryEstimate", limit: int):
        super().__init__(message)
        self.estimate = estimate
        self.limit = limit


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak memory of a solve, in bytes, with its breakdown."""

    total: int
    items: dict = field(default_factory=dict)
    n: int = 0
    d: int = 0
    P: int = 0
    c: int = 1
    formulation: str = "gated"
    dtype: str = "float64"
    solver: str = "auto"

    def __str__(self) -> str:
        parts = ", ".join(f"{k} {format_bytes(v)}" for k, v in self.items.items() if v > 0)
        return f"{format_bytes(self.total)} ({parts})"


def parse_bytes(value, name: str = "memory_limit") -> int | None:
    """Bytes from an int/float or a string like ``"512MB"``, ``"4 GiB"``; ``None`` passes."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number of bytes or a string like '4GB', got {value!r}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", value)
        if m is None or m.group(2).upper() not in _UNITS:
            raise ValueError(f"{name} must look like '4GB', '512MiB' or a number of bytes, "
                             f"got {value!r}")
        v = float(m.group(1)) * _UNITS[m.group(2).upper()]
    else:
        raise TypeError(f"{name} must be a number of bytes or a string like '4GB', got {value!r}")
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a non-negative number of bytes, got {value!r}")
    return int(v)


def format_bytes(b: float) -> str:
    """``b`` bytes as a short decimal string (``"1.2 GB"``, ``"340 MB"``, ``"12 B"``)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= size:
            return f"{b / size:.3g} {unit}"
    return f"{int(b)} B"


def available_memory() -> int | None:
    """Memory the operating system reports as available, in bytes (``None`` if unknown)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def estimate_memory(n: int, d: int, P: int, c: int = 1, *, formulation: str = "gated",
                    bias: bool = True, dtype: str = "float64",
                    solver: str = "auto") -> MemoryEstimate:
    """Estimated peak memory (bytes) of :func:`cvxnn.solve` on ``n x d`` data.

    Parameters
    ----------
    n, d : int
        Samples and features (without the bias column).
    P : int
        Number of activation patterns (gates).
    c : int
        Outputs (1 for regression and binary classification, K for K-class
        cross-entropy or one-hot squared loss).
    formulation : {"gated", "relu"}
    bias : bool
    dtype : {"float64", "float32"}
        Precision of the products.
    solver : {"auto", "fista"}
        ``"fista"`` (also used for float32 and torch devices) needs no Newton systems.
    """
    n, d, P, c = (int(v) for v in (n, d, P, c))
    if min(n, d, c) < 1 or P < 0:
        raise ValueError(f"n, d and c must be positive and P >= 0, got {(n, d, P, c)}")
    if dtype == "float32":
        solver = "fista"
    if formulation not in ("gated", "relu"):
        raise ValueError(f"formulation must be 'gated' or 'relu', got {formulation!r}")
    da = d + int(bool(bias))
    f8 = 8
    items = {}
    items["data"] = n * d * f8 + n * da * f8 + (n * da * 4 if dtype == "float32" else 0)
    # masks (1 byte per entry) + the float chunk of X @ G while they are computed
    items["masks"] = n * P + min(n * P, _CHUNK_ELEMENTS) * f8
    items["targets and residuals"] = 8 * n * c * f8
    items["product chunks"] = 2 * _CHUNK_ELEMENTS * f8 + min(n * P * c, _CHUNK_ELEMENTS) * f8
    blocks = da * P * c
    if formulation == "gated":
        items["iterates"] = 12 * blocks * f8
    else:
        items["iterates"] = 24 * blocks * f8
    # working-set Newton systems (working_set.py): dense block-space matrices of side at
    # most MAX_DENSE_SIDE = 8000 (formed and factored: 3 copies) and the n x n Woodbury
    # form when n c <= 3500; none for the first-order solver
    if formulation == "gated":
        if solver == "fista":
            newton = 0
        else:
            m = min(blocks, 8000)
            newton = 3 * m * m * f8 + (3 * (n * c) ** 2 * f8 if n * c <= 3500 else 0)
    else:
        # relu interior point: the cheaper of the dense (2 P d c)^2 and n x n forms
        m2 = 2 * P * da * c
        newton = 3 * min(m2 * m2, n * n) * f8 + 4 * n * min(m2, 8000) * f8
    items["Newton systems"] = newton
    total = int(sum(items.values()))
    return MemoryEstimate(total=total, items=items, n=n, d=d, P=P, c=c,
                          formulation=formulation, dtype=dtype, solver=solver)


#: limit given to an outer solve (e.g. a pattern search) for the solves it runs
_OUTER_LIMIT: contextvars.ContextVar = contextvars.ContextVar("cvxnn_memory_limit", default=None)


@contextlib.contextmanager
def memory_limit_scope(memory_limit):
    """Make ``memory_limit`` the default of every :func:`check_memory` inside the block."""
    token = _OUTER_LIMIT.set(memory_limit)
    try:
        yield
    finally:
        _OUTER_LIMIT.reset(token)


def _resolve_limit(memory_limit) -> int | None:
    if memory_limit is None:
        memory_limit = _OUTER_LIMIT.get()
    if memory_limit is False:
        return None
    if memory_limit is None or memory_limit is True:
        env = os.environ.get("CVXNN_MEMORY_LIMIT")
        if env is not None and env.strip() != "":
            lim = parse_bytes(env, "CVXNN_MEMORY_LIMIT")
            return lim if lim > 0 else None
        return available_memory()
    lim = parse_bytes(memory_limit)
    return lim if lim > 0 else None


def _largest_P_that_fits(est: MemoryEstimate, limit: int, bias: bool) -> int:
    lo, hi = 0, est.P
    while lo < hi:
        mid = (lo + hi + 1) // 2
        e = estimate_memory(est.n, est.d, mid, est.c, formulation=est.formulation,
                            bias=bias, dtype=est.dtype, solver=est.solver).total
        if e <= limit:
            lo = mid
        else:
            hi = mid - 1
    return lo


def check_memory(n: int, d: int, P: int, c: int = 1, *, formulation: str = "gated",
                 bias: bool = True, dtype: str = "float64", solver: str = "auto",
                 memory_limit=None) -> MemoryEstimate:
    """Raise :class:`InsufficientMemoryError` when the estimate exceeds the limit.

    Returns the estimate otherwise.  See the module docstring for how the limit is
    chosen; ``memory_limit=False`` skips the check.
    """
    est = estimate_memory(n, d, P, c, formulation=formulation, bias=bias, dtype=dtype,
                          solver=solver)
    limit = _resolve_limit(memory_limit)
    if limit is None or est.total <= limit:
        return est
    options = []
    p_fit = _largest_P_that_fits(est, limit, bias)
    if 0 < p_fit < P:
        options.append(f"fewer gates (n_gates={p_fit} fits)")
    if formulation == "relu":
        g = estimate_memory(n, d, P, c, formulation="gated", bias=bias, dtype=dtype).total
        if g <= limit:
            options.append(f"formulation='gated' ({format_bytes(g)})")
    elif dtype == "float64":
        g = estimate_memory(n, d, P, c, formulation="gated", bias=bias, dtype="float32").total
        if g < est.total:
            options.append(f"dtype='float32' with the first-order solver ({format_bytes(g)})")
    options.append("fewer samples per process (cvxnn.distributed.solve_sharded shards rows)")
    options.append("a larger memory_limit (or CVXNN_MEMORY_LIMIT) if the estimate is too high")
    source = ("memory_limit" if memory_limit not in (None, True)
              else "CVXNN_MEMORY_LIMIT" if os.environ.get("CVXNN_MEMORY_LIMIT") else
              "the memory available on this machine")
    msg = (f"this solve needs an estimated {est} for n={n}, d={d}, P={P}, c={c}, "
           f"formulation={formulation!r}, more than {format_bytes(limit)} ({source}); "
           "options: " + "; ".join(options))
    raise InsufficientMemoryError(msg, est, limit)
