"""Progress callbacks and Ctrl-C handling for the native solvers of :func:`cvxnn.solve`.

Every native solver evaluates a duality-gap certificate from time to time (the
points where it appends to its ``history``).  At each such evaluation it calls a
:class:`SolveMonitor`, which

* remembers the best iterate seen so far (lowest objective; for the relu
  program, among the iterates that satisfy the cone constraints to ``tol``);
* calls the user's ``callback`` with a read-only :class:`ProgressInfo`;
  ``True`` (or ``StopIteration``) asks the solver to stop.

:meth:`SolveMonitor.guard` is a context manager put around the solver call: it
turns a stop request or a ``KeyboardInterrupt`` (Ctrl-C, or raised by the
callback) into ``monitor.stopped`` instead of an exception, so that
:func:`cvxnn.solve` can return the best iterate with a freshly computed
certificate.  A second Ctrl-C propagates: while that certificate is computed,
and also when it comes within :data:`DOUBLE_INTERRUPT_SECONDS` of a Ctrl-C
that a solve already absorbed (so a loop of solves, such as a regularisation
path, is stopped by pressing Ctrl-C twice).  A ``KeyboardInterrupt`` raised by
the callback itself (a deterministic "Ctrl-C") does not count for that rule.

While a guard is active in the main thread and Python's default SIGINT handler is
installed, the guard installs its own handler, which records the press and then
raises ``KeyboardInterrupt`` as usual.  A ``KeyboardInterrupt`` raised while C code
runs a Python callback (a finaliser, an attribute lookup) can be swallowed by that
code; the record makes the next certificate evaluation raise it again, so a Ctrl-C
is never lost.  A handler the user installed is left alone.

Nested solves (the restricted programs solved by the pattern search inside
one :func:`cvxnn.solve` call) share the outer call's callback through a
context variable, :data:`ACTIVE_SEARCH`; see :class:`SearchControl`.
"""

from __future__ import annotations

import contextlib
import contextvars
import signal
import threading
import time
from dataclasses import dataclass

import numpy as np

__all__ = ["ProgressInfo", "SolveMonitor", "SolveInterruptedWarning", "SearchControl",
           "SearchStopped", "check_callback"]


class SolveInterruptedWarning(UserWarning):
    """A solve was interrupted (Ctrl-C) and returned its best iterate so far."""


# the control-flow exceptions derive from BaseException, like KeyboardInterrupt, so that
# solver code catching Exception (numerical fallbacks) never swallows them
class _StopRequested(BaseException):
    """Raised inside a solver when the callback asks to stop (caught by the guard)."""


class _CallbackInterrupt(BaseException):
    """A ``KeyboardInterrupt`` raised by the callback (caught by the guard)."""


#: a Ctrl-C within this many seconds of one absorbed by a solve propagates
DOUBLE_INTERRUPT_SECONDS = 5.0
_last_absorbed = {"time": None}
#: a Ctrl-C recorded by the guard's SIGINT handler and not yet acted on
_pending_interrupt = {"time": None}


def _record_and_raise(signum, frame):
    _pending_interrupt["time"] = time.monotonic()
    raise KeyboardInterrupt


@contextlib.contextmanager
def _recording_sigint():
    """Install :func:`_record_and_raise` for SIGINT while the block runs (main thread,
    default handler only; nested uses and other threads change nothing)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    previous = signal.signal(signal.SIGINT, _record_and_raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class SearchStopped(BaseException):
    """A restricted solve inside a pattern search was stopped; carries its result."""

    def __init__(self, result, reason):
        super().__init__(reason)
        self.result = result
        self.reason = reason


@dataclass(frozen=True)
class ProgressInfo:
    """What a progress ``callback`` receives at each certificate evaluation (read-only).

    Attributes
    ----------
    iteration : int
        Solver iteration count at the evaluation.
    time : float
        Seconds since the solve started.
    objective : float
        Objective of the convex program at the current iterate.
    relative_gap : float
        Relative duality gap at the current iterate (NaN when not available).
    constraint_violation : float
        Relative cone-constraint violation (0 for the gated program).
    solver : str
        Native solver name (``"fista"``, ``"working_set"``, ``"ipm"``, ``"al"``).

    Also readable as a mapping: ``info["objective"]``, ``dict(info)``.
    """

    iteration: int
    time: float
    objective: float
    relative_gap: float
    constraint_violation: float
    solver: str

    def __getitem__(self, key):
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def keys(self):
        """Field names, so that ``dict(info)`` works."""
        return tuple(self.__dataclass_fields__)


def check_callback(callback):
    """Validate a ``callback`` argument (``None`` or a callable)."""
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be None or a callable taking one argument, got {callback!r}")
    return callback


class ProgressBar:
    """A tqdm progress bar over the digits of the relative duality gap (``progress=True``).

    The bar runs from 0 % (relative gap 1) to 100 % (relative gap ``tol``) on a log
    scale, never moves backwards, and shows the objective, the gap and the solver
    in its postfix.  It is a callback: it chains to the user's ``callback``, whose
    return value (stop or not) it passes on.  tqdm is imported on creation.
    """

    def __init__(self, tol, callback=None, desc="cvxnn.solve", file=None):
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm ships with the dev/plot extras
            raise ImportError("progress=True needs tqdm: pip install tqdm") from None
        self.callback = callback
        self.digits = max(-np.log10(float(tol)), 1e-12)
        self.bar = tqdm(total=100, desc=desc, unit="%", file=file, leave=True,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} {postfix}")
        self.done = 0

    def __call__(self, info):
        gap = info.relative_gap
        if np.isfinite(gap):
            frac = 1.0 if gap <= 0 else min(1.0, max(0.0, -np.log10(gap) / self.digits))
            pos = int(round(100 * frac))
            if pos > self.done:
                self.bar.update(pos - self.done)
                self.done = pos
        self.bar.set_postfix_str(f"{info.solver} it {info.iteration} objective "
                                 f"{info.objective:.8g} gap {gap:.2e}", refresh=True)
        return None if self.callback is None else self.callback(info)

    def close(self):
        self.bar.close()


class SolveMonitor:
    """Best-iterate bookkeeping, user callback and Ctrl-C guard for one native solve.

    Parameters
    ----------
    callback : callable or None
        ``callback(info: ProgressInfo) -> bool or None``; ``True`` stops the solve.
    solver : str
        Name reported in :class:`ProgressInfo`.
    t0 : float
        ``time.perf_counter()`` at the start of the solve.
    feasibility_tol : float
        Largest constraint violation of an iterate eligible as "best" (relu program).

    Attributes
    ----------
    best : dict or None
        ``{"weights", "objective", "violation", "iteration"}`` of the best iterate:
        ``weights`` is a float64 numpy copy, ``U`` (d, P, c) or ``Q`` (d, 2, P, c).
    n_evaluations : int
        Certificate evaluations seen.
    iteration : int
        Solver iteration count at the last evaluation.
    history : list of tuple
        ``(iteration, seconds, relative_gap, objective, violation)`` per evaluation.
    stopped : None, "callback" or "keyboard_interrupt"
    """

    def __init__(self, callback=None, solver="", t0=None, feasibility_tol=0.0):
        self.callback = callback
        self.solver = solver
        self.t0 = time.perf_counter() if t0 is None else t0
        self.feasibility_tol = float(feasibility_tol)
        self.best = None
        self.iteration = 0
        self.history = []
        self.n_evaluations = 0
        self.stopped = None

    def __call__(self, iteration, weights, objective, relative_gap, violation=0.0):
        """Record one certificate evaluation; may raise to stop the solver.

        ``weights`` is either a float64 numpy array (copied when it becomes the
        best iterate) or a zero-argument callable returning one (called only
        then, e.g. to embed a screened iterate into the full problem).
        """
        if _pending_interrupt["time"] is not None:
            # a Ctrl-C whose KeyboardInterrupt was swallowed on its way up: act on it now
            raise KeyboardInterrupt
        self.n_evaluations += 1
        self.iteration = int(iteration)
        objective = float(objective)
        violation = float(violation)
        self.history.append((self.iteration, time.perf_counter() - self.t0, float(relative_gap),
                             objective, violation))
        feasible = violation <= self.feasibility_tol
        best = self.best
        better = np.isfinite(objective) and (
            best is None
            or (feasible and (best["violation"] > self.feasibility_tol
                              or objective < best["objective"]))
            or (not feasible and best["violation"] > self.feasibility_tol
                and violation < best["violation"]))
        if better:
            W = weights() if callable(weights) else weights
            self.best = {"weights": np.array(W, dtype=np.float64), "objective": objective,
                         "violation": violation, "iteration": int(iteration)}
        if self.callback is not None:
            info = ProgressInfo(iteration=int(iteration), time=time.perf_counter() - self.t0,
                                objective=objective, relative_gap=float(relative_gap),
                                constraint_violation=violation, solver=self.solver)
            try:
                stop = self.callback(info)
            except StopIteration:
                stop = True
            except KeyboardInterrupt:
                raise _CallbackInterrupt from None
            if stop is True:
                raise _StopRequested

    @contextlib.contextmanager
    def guard(self):
        """Turn a stop request or a ``KeyboardInterrupt`` into :attr:`stopped`."""
        _pending_interrupt["time"] = None
        try:
            with _recording_sigint():
                yield self
        except _StopRequested:
            self.stopped = "callback"
        except _CallbackInterrupt:
            self.stopped = "keyboard_interrupt"
        except KeyboardInterrupt:
            _pending_interrupt["time"] = None
            now = time.monotonic()
            last = _last_absorbed["time"]
            if last is not None and now - last < DOUBLE_INTERRUPT_SECONDS:
                _last_absorbed["time"] = None
                raise
            _last_absorbed["time"] = now
            self.stopped = "keyboard_interrupt"


class SearchControl:
    """Shared state of the restricted solves run by one pattern search.

    The outer :func:`cvxnn.solve` call sets :data:`ACTIVE_SEARCH` to an instance;
    each nested solve reports its finished result (:meth:`record`) and uses
    :attr:`callback`.  When a nested solve is stopped it raises
    :class:`SearchStopped`, and the outer call returns :meth:`best_result`.
    """

    def __init__(self, callback=None):
        self.callback = callback
        self.results = []

    def record(self, result):
        self.results.append(result)

    def best_result(self, extra=None):
        """Lowest-objective result among the finished ones (and ``extra``), or None."""
        pool = list(self.results) + ([] if extra is None else [extra])
        pool = [r for r in pool if r.objective == r.objective]
        return min(pool, key=lambda r: r.objective) if pool else None


#: the :class:`SearchControl` of the pattern search being run, if any
ACTIVE_SEARCH: contextvars.ContextVar = contextvars.ContextVar("cvxnn_active_search", default=None)
