"""One entry point: :func:`solve` trains a two-layer ReLU network by convex optimisation."""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import ThreadpoolController

from ._control import (ACTIVE_SEARCH, ProgressBar, SearchControl, SearchStopped,
                       SolveInterruptedWarning, SolveMonitor, check_callback)
from ._data import augment, check_alpha, check_X, check_y, encode_targets
from .losses import LOSSES
from .network import network_from_gated, network_from_relu
from .operators import release_workspace
from .memory import check_memory, memory_limit_scope, parse_bytes
from .patterns import compute_masks, enumerate_patterns, sample_gates
from .problems import Gap, GatedReLUProblem, ReLUProblem, group_norms

__all__ = ["solve", "SolveResult", "FORMULATIONS", "SOLVERS"]

FORMULATIONS = ("relu", "gated")
#: native solvers per formulation, and the cvxpy reference solvers
SOLVERS = ("auto", "fista", "al", "clarabel", "cvxpy")


@dataclass
class SolveResult:
    """What :func:`solve` returns.

    Attributes
    ----------
    network : TwoLayerReLU or GatedTwoLayerReLU
        The trained network (balanced weights), ready for ``predict``.
    objective : float
        Convex objective at the returned weights; equals
        ``network.objective(X, y, alpha)``.
    gap, relative_gap : float
        Duality gap certificate ``objective - dual_bound`` and ``gap / objective``.
        It certifies optimality over the patterns used (``certified_over``).  For
        the relu formulation it is NaN when the cone constraints are violated by
        more than ``tol`` (an infeasible point certifies nothing).
    certified_over : str
        ``"all activation patterns (enumerated)"`` when ``gates="enumerate"``,
        otherwise ``"the P sampled activation patterns"``: a program over sampled
        patterns is optimal over those patterns, not globally.
    weights : dict
        Convex weights: ``{"U": (d_aug, P, c)}`` (gated) or ``{"V", "W"}`` (ReLU).
    gates : ndarray of shape (d_aug, P)
    constraint_violation : float
        Relative cone-constraint violation (0 for the gated program).
    history : list of tuple
        Convergence trace, one ``(iteration, seconds, relative_gap, objective,
        constraint_violation)`` per certificate evaluation (empty for cvxpy).
    search : dict or None
        Pattern-search record (``patterns="search"``): rounds, the bound over
        all patterns and whether it is certified; see :func:`cvxnn.cutting_plane`.
    interrupted : bool
        ``True`` when the solve was interrupted (Ctrl-C): the result holds the best
        iterate reached, with a certificate computed for it (``converged=False``).
    stopped : str or None
        ``"callback"`` (the progress callback asked to stop), ``"keyboard_interrupt"``
        or ``None`` (the solver ended by itself).
    """

    network: object
    objective: float
    gap: float
    relative_gap: float
    n_iter: int
    time: float
    converged: bool
    weights: dict
    gates: np.ndarray
    classes: np.ndarray | None
    n_active: int
    formulation: str
    loss: str
    alpha: float
    bias: bool
    solver: str
    certified_over: str
    constraint_violation: float = 0.0
    dual_bound: float = float("nan")
    history: list = field(default_factory=list)
    search: dict | None = None
    interrupted: bool = False
    stopped: str | None = None

    def to_relu(self, X, method="exact", **kwargs):
        """ReLU network with the same training predictions, by cone decomposition.

        Only for gated results.  ``method="exact"`` solves the per-pattern
        min-norm program, ``"approximate"`` the one-sided penalty (CD-A); see
        :func:`cvxnn.cone_decomposition.cone_decompose`.  Returns ``(network,
        decomposition)``; ``decomposition.total_inflation`` is the norm growth.
        """
        from .cone_decomposition import decompose_solution

        return decompose_solution(X, self, method=method, **kwargs)

    def __repr__(self) -> str:
        return (f"SolveResult(formulation={self.formulation!r}, loss={self.loss!r}, "
                f"objective={self.objective:.8g}, relative_gap={self.relative_gap:.2e}, "
                f"n_active={self.n_active}, n_iter={self.n_iter}, time={self.time:.3f}s, "
                f"converged={self.converged})")


def _check_choice(value, name, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def _check_gates(gates, X, bias):
    d = X.shape[1]
    G = np.asarray(gates)
    if G.dtype.kind not in "iuf" or G.ndim != 2:
        raise ValueError(
            f"gates must be a 2-D numeric array of shape (d, P) or (d + 1, P) with one gate per "
            f"column; got shape {G.shape} and dtype {G.dtype}"
        )
    G = G.astype(np.float64)
    if not np.all(np.isfinite(G)):
        raise ValueError("gates contains NaN or infinity")
    rows_ok = (d, d + 1) if bias else (d,)
    if G.shape[0] not in rows_ok:
        raise ValueError(
            f"gates must have {' or '.join(map(str, rows_ok))} rows for X with {d} features "
            f"(bias={bias}); got {G.shape[0]}"
        )
    if G.shape[1] < 1:
        raise ValueError("gates must contain at least one gate (column)")
    if bias and G.shape[0] == d:
        G = np.vstack([G, np.zeros((1, G.shape[1]))])
    return G


def solve(X, y, alpha=1e-3, *, formulation="relu", loss="squared", gates=None, n_gates=100,
          bias=True, solver="auto", tol=1e-6, max_iter=None, random_state=None, verbose=0,
          classification=None, warm_start=None, dtype="float64", device=None,
          time_limit=None, patterns="auto", search_options=None, memory_limit=None, progress=False, callback=None) -> SolveResult:
    """Train a two-layer ReLU network by solving its convex reformulation.

    Objective (one convention everywhere; ``c`` outputs, blocks per pattern and output)::

        gated:  L(sum_i D_i Xa U_i, Y) + alpha * sum_{i,k} ||U[:, i, k]||_2
        relu:   L(sum_i D_i Xa (V_i - W_i), Y) + alpha * sum_{i,k} (||V[:, i, k]|| + ||W[:, i, k]||)
                s.t. (2 D_i - I) Xa V_i >= 0, (2 D_i - I) Xa W_i >= 0

    with ``L`` the squared loss ``||Z - Y||^2 / (2n)``, the mean logistic loss or the
    mean softmax cross-entropy, ``Xa = [X, 1]`` when ``bias`` (the bias is the last
    entry of each block and is regularised) and ``D_i = diag(1[Xa g_i > 0])``.  The
    returned network's weight-decay objective
    ``L + alpha/2 (||W1||^2 + ||b1||^2 + ||W2||^2)`` equals the convex objective.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Regression targets (squared loss, numeric ``y``) or class labels of any
        sortable type (logistic: 2 classes; cross_entropy: 2 or more; squared loss
        on labels when ``classification=True`` or ``y`` is non-numeric: two classes
        map to -1/+1, more to one-hot).
    alpha : float, default=1e-3
        Weight-decay strength (> 0; see :func:`cvxnn.spline1d` and :mod:`cvxnn.closed_form` for
        minimum-norm interpolants at alpha = 0).
    formulation : {"relu", "gated"}, default="relu"
    loss : {"squared", "logistic", "cross_entropy"}, default="squared"
    gates : array of shape (d, P) or (d + 1, P), or "enumerate", default=None
        Gate vectors, one per column, acting on ``X`` (``d`` rows) or on ``[X, 1]``
        (``d + 1`` rows, only with ``bias=True``).  ``"enumerate"`` uses every
        activation pattern (exact, only for data of small rank).  ``None`` samples
        ``n_gates`` Gaussian gates with ``random_state``.
    n_gates : int, default=100
    bias : bool, default=True
    solver : {"auto", "fista", "al", "clarabel", "cvxpy"}, default="auto"
        ``auto`` picks the native second-order working-set solvers (certified by
        the full duality gap); ``fista`` is plain accelerated proximal gradient
        (gated only), ``al`` the basic augmented Lagrangian (relu only; slow);
        ``clarabel``/``cvxpy`` use the interior-point reference through cvxpy
        (needs ``cvxnn[cvx]``; small problems).
    tol : float, default=1e-6
        Target relative duality gap (and relative constraint violation for relu).
    max_iter : int, optional
        Iteration budget of the native solvers (default 20000).
    random_state : int, Generator or None
    verbose : int, default=0
    classification : bool, optional
        Force (or forbid) label encoding for the squared loss.
    warm_start : dict, optional
        Convex weights from a previous result with the same gates
        (``result.weights``).
    dtype : {"float64", "float32"}, default="float64"
        Precision of the products (GEMMs) and of the iterates.  ``"float32"``
        halves memory and roughly doubles GEMM speed on large problems; it is
        supported for the gated formulation (accelerated proximal gradient).  The
        reported objective and certificate are always recomputed in float64.
    device : str or torch.device, optional
        Run the products with PyTorch on this device (``"cpu"``, ``"cuda"``,
        ``"cuda:1"``...); needs ``cvxnn[torch]``.  Gated formulation only.  ``None``
        (default) uses numpy.
    time_limit : float, optional
        Wall-clock budget in seconds for the first-order solver (``solver="fista"``,
        float32 or ``device``); it stops at the next gap check after the budget and
        reports the gap reached.  With ``patterns="search"`` it bounds the search.
    progress : bool, default=False
        Show a tqdm progress bar (stderr) over the digits of the relative gap, from 1
        down to ``tol``, with the objective and gap at each certificate evaluation.
    memory_limit : int, str or False, optional
        Refuse the solve with :class:`cvxnn.memory.InsufficientMemoryError` (a
        ``MemoryError`` naming the options that fit, e.g. fewer gates) when its
        estimated peak memory (:func:`cvxnn.memory.estimate_memory`) exceeds this
        many bytes (``"4GB"`` strings accepted).  Default: the environment variable
        ``CVXNN_MEMORY_LIMIT``, else the memory available on the machine; ``False``
        skips the check.  With ``patterns="search"`` it applies to every restricted
        program the search solves.
    patterns : {"auto", "search", "sampled", "enumerate"}, default="auto"
        Which activation patterns the program uses.  ``"search"`` starts from the
        sampled (or given) gates and adds the patterns of units that violate the
        dual constraint (:func:`cvxnn.cutting_plane`), so the network is optimal
        over all patterns when the oracle is exact (data of small rank) and the
        best the search finds otherwise; ``"sampled"`` uses the sampled or given
        gates only; ``"enumerate"`` every pattern (small rank only; same as
        ``gates="enumerate"``).  ``"auto"`` is ``"search"`` for the relu
        formulation with sampled gates, and ``"sampled"`` otherwise (the gated
        program, given gates, float32 or a device).
    search_options : dict, optional
        Extra keyword arguments for :func:`cvxnn.cutting_plane` (``max_rounds``,
        ``max_patterns``, ``oracle``, ``max_add``...).
    callback : callable, optional
        ``callback(info)`` is called at every certificate evaluation of the native
        solvers with a read-only :class:`cvxnn._control.ProgressInfo` (``iteration``,
        ``time``, ``objective``, ``relative_gap``, ``constraint_violation``,
        ``solver``; also readable as ``info["objective"]``).  Returning ``True`` (or
        raising ``StopIteration``) stops the solve: the result holds the best iterate
        with a certificate recomputed for it, ``converged=False`` and
        ``stopped="callback"``.  With ``patterns="search"`` it is called by each
        restricted solve, and stopping returns the best restricted solution so far.
        Not called by the cvxpy solvers.

    Returns
    -------
    SolveResult

    Notes
    -----
    Ctrl-C (``KeyboardInterrupt``) during a native solve does not lose the work:
    ``solve`` returns the best iterate so far with a freshly computed (valid)
    certificate, ``interrupted=True`` and ``converged=False``, and emits a
    :class:`~cvxnn._control.SolveInterruptedWarning`.  A second Ctrl-C propagates:
    while that certificate is computed, or within 5 seconds of the first (so that
    pressing Ctrl-C twice also stops a loop of solves).  With ``patterns="search"`` the best
    restricted program solved so far is returned (the interrupt propagates when
    none has finished yet, e.g. during the unit phase).
    """
    if progress:
        kwargs = dict(locals())
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (tol > 0):
            raise ValueError(f"tol must be a positive number, got {tol!r}")
        bar = ProgressBar(tol, check_callback(callback))
        kwargs.update(progress=False, callback=bar)
        try:
            return solve(**kwargs)
        finally:
            bar.close()
    t0 = time.perf_counter()
    formulation = _check_choice(formulation, "formulation", FORMULATIONS)
    loss = _check_choice(loss, "loss", tuple(LOSSES))
    solver = _check_choice(solver, "solver", SOLVERS)
    X = check_X(X, "X", min_samples=2)
    y = check_y(y, X.shape[0], "y")
    alpha = check_alpha(alpha)
    if alpha == 0:
        raise ValueError(
            "alpha must be > 0 for cvxnn.solve: at alpha=0 the program is unregularised "
            "interpolation, whose group-norm dual gives no certificate; use a small alpha "
            "(e.g. 1e-6 * cvxnn.alpha_max(X, y)), or the minimum-norm interpolants of "
            "cvxnn.spline1d(x, y, alpha=0) (1-D data) and cvxnn.closed_form (whitened data)")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    if max_iter is None:
        max_iter = 20000
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer or None, got {max_iter!r}")
    if not isinstance(bias, (bool, np.bool_)):
        raise TypeError(f"bias must be True or False, got {bias!r}")
    if loss != "squared" and classification is False:
        raise ValueError(f"loss={loss!r} is a classification loss; classification=False is invalid")
    callback = check_callback(callback)
    outer_search = ACTIVE_SEARCH.get()   # set when this solve runs inside a pattern search
    if outer_search is not None and callback is None:
        callback = outer_search.callback
    if solver == "fista" and formulation == "relu":
        raise ValueError("solver='fista' solves the gated program; use 'al' or 'auto' for formulation='relu'")
    if solver == "al" and formulation == "gated":
        raise ValueError("solver='al' solves the relu program; use 'fista' or 'auto' for formulation='gated'")
    dtype = _check_dtype(dtype)
    first_order = device is not None or dtype == "float32"
    if first_order and (formulation != "gated" or solver not in ("auto", "fista")):
        what = f"device={device!r}" if device is not None else "dtype='float32'"
        raise ValueError(
            f"{what} is supported for formulation='gated' with solver 'auto' or 'fista' "
            f"(got formulation={formulation!r}, solver={solver!r}); use the default float64 "
            "numpy backend for the relu program"
        )
    if time_limit is not None:
        if isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)) or not time_limit > 0:
            raise ValueError(f"time_limit must be a positive number of seconds or None, got {time_limit!r}")

    if memory_limit is not False:
        parse_bytes(memory_limit, "memory_limit")   # validate early (None passes)
    patterns = _check_choice(patterns, "patterns", ("auto", "search", "sampled", "enumerate"))
    if patterns == "enumerate":
        if gates is not None and not (isinstance(gates, str) and gates == "enumerate"):
            raise ValueError("patterns='enumerate' and explicit gates are exclusive; pass one")
        gates = "enumerate"
    if patterns == "auto":
        patterns = ("search" if formulation == "relu" and gates is None and dtype == "float64"
                    and device is None and solver == "auto" else "sampled")
    if patterns == "search":
        if isinstance(gates, str):
            raise ValueError("patterns='search' starts from sampled or given gates, not "
                             f"gates={gates!r}")
        if first_order:
            raise ValueError("patterns='search' runs on the float64 numpy backend")
        if warm_start is not None:
            raise ValueError("warm_start needs patterns='sampled' with the same gates "
                             "(the search chooses its own patterns)")
        from .search import cutting_plane

        opts = dict(search_options or {})
        if time_limit is not None:
            opts.setdefault("time_limit", time_limit)
        control = SearchControl(callback)
        token = ACTIVE_SEARCH.set(control)
        try:
            with memory_limit_scope(memory_limit):
                found = cutting_plane(X, y, alpha, formulation=formulation, loss=loss, gates=gates,
                                     n_gates=n_gates, bias=bias, solver=solver, tol=tol,
                                     max_iter=max_iter, random_state=random_state,
                                     verbose=verbose, classification=classification, **opts)
            _warn_search_gap(found, tol)
            return found
        except SearchStopped as stop:
            return _stopped_search(control, stop.result, stop.reason)
        except KeyboardInterrupt:
            if control.best_result() is None:
                raise
            return _stopped_search(control, None, "keyboard_interrupt")
        finally:
            ACTIVE_SEARCH.reset(token)
    elif search_options is not None:
        raise ValueError("search_options is only used with patterns='search'")

    Y, classes = encode_targets(y, loss, classification)
    X = X.astype(np.float64, copy=False)
    Xa = augment(X, bias)
    exact = isinstance(gates, str)
    if exact:
        if gates != "enumerate":
            raise ValueError(f"gates must be an array, None or 'enumerate', got {gates!r}")
        G = enumerate_patterns(X, bias=bias)
    elif gates is None:
        G = sample_gates(X, n_gates, bias=bias, random_state=random_state)
    else:
        G = _check_gates(gates, X, bias)
    if G.shape[1] == 0:
        raise ValueError(
            f"no activation pattern to solve over: the gates ({'n_gates=' + str(n_gates) if gates is None else 'gates'}) "
            "activate no sample; increase n_gates or pass gates that activate some samples")
    # refuse up front (with the options that fit) rather than be killed half way
    check_memory(X.shape[0], X.shape[1], G.shape[1], Y.shape[1], formulation=formulation,
                 bias=bias, dtype=dtype, solver="fista" if first_order or solver == "fista"
                 else "auto", memory_limit=memory_limit)
    D = compute_masks(X, G, bias=bias)

    if formulation == "gated":
        problem = GatedReLUProblem(Xa, D, Y, loss, alpha)
    else:
        problem = ReLUProblem(Xa, D, Y, loss, alpha)
    if first_order:
        solver = "fista"

    # small GEMMs run faster on one BLAS thread (threads spin and contend on 2-core machines)
    size = Xa.shape[0] * Xa.shape[1] * D.shape[1] * Y.shape[1]
    with _blas_threads(1 if size <= SMALL_PROBLEM_SIZE else None):
        try:
            if first_order:
                result = _solve_first_order(problem, G, D, loss, alpha, bias, tol, max_iter,
                                            verbose, warm_start, classes, exact, t0, dtype,
                                            device, time_limit, callback)
            else:
                result = _solve(problem, X, G, D, formulation, loss, alpha, bias, solver, tol,
                                max_iter, verbose, warm_start, classes, exact, t0, time_limit,
                                callback)
        finally:
            release_workspace()  # the scratch buffers of the masked products
    if outer_search is not None:
        if result.stopped is not None:
            raise SearchStopped(result, result.stopped)
        outer_search.record(result)
    elif result.interrupted:
        _warn_interrupted(result)
    return result


def _warn_search_gap(result, tol):
    """A pattern search that ends above ``tol`` says so (never a silent weak certificate)."""
    gap = result.relative_gap
    if result.converged and np.isfinite(gap) and gap <= tol:
        return
    info = result.search or {}
    what = ("certified" if info.get("exact") else "estimated by the heuristic oracle")
    warnings.warn(
        f"cvxnn.solve (patterns='search') did not reach tol={tol:g}: relative duality gap "
        f"{gap:.3e} over {result.certified_over} ({what}; search stopped: "
        f"{info.get('stopped', 'unknown')}).  The objective {result.objective:.10g} is "
        "attained by the returned network; badly scaled features (column scales far "
        "apart) are a common cause: standardise X", ConvergenceWarning, stacklevel=3)


def _warn_interrupted(result):
    warnings.warn(
        f"cvxnn.solve was interrupted (KeyboardInterrupt): returning the best iterate reached "
        f"(objective {result.objective:.10g}, relative duality gap {result.relative_gap:.3e}, "
        f"certified over {result.certified_over})", SolveInterruptedWarning, stacklevel=3)


def _stopped_search(control, extra, reason):
    """Best restricted solution of a pattern search stopped by the callback or Ctrl-C."""
    res = control.best_result(extra)
    P = res.gates.shape[1]
    res.converged = False
    res.stopped = reason
    res.interrupted = reason == "keyboard_interrupt"
    res.certified_over = (f"the {P} activation patterns of the best restricted program solved "
                          f"before the pattern search was stopped ({reason}); not a certificate "
                          "over all patterns")
    res.search = {"stopped": reason, "n_patterns": int(P), "exact": False,
                  "relative_gap": float("nan"), "lower_bound": float("nan"),
                  "n_restricted_solves": len(control.results) + (extra is not None)}
    if res.interrupted:
        _warn_interrupted(res)
    return res


def _check_dtype(dtype):
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    return name


def _solve_first_order(problem64, G, D, loss, alpha, bias, tol, max_iter, verbose, warm_start,
                       classes, exact, t0, dtype, device, time_limit, callback=None):
    """Gated program by FISTA in float32 and/or on a torch device; float64 certificate."""
    from .solvers.gated import solve_gated_fista

    Xa, Y = problem64.Xa, problem64.Y
    U0 = U0_given = None if warm_start is None else warm_start.get("U")
    # features that are zero on every training sample (blank MNIST pixels) carry zero
    # weights at every optimum (they change no prediction and only add to the norms):
    # the products run without them and the weights are embedded back (exact)
    used_cols = np.flatnonzero(np.any(Xa != 0, axis=0))
    reduce_cols = 0 < used_cols.size < Xa.shape[1] and (device is not None or dtype == "float32")
    if reduce_cols:
        Xw = Xa[:, used_cols]
        if U0 is not None:
            U0 = np.asarray(U0, dtype=np.float64).reshape(problem64.shape)[used_cols]
        if verbose:
            print(f"[cvxnn] {Xa.shape[1] - used_cols.size} all-zero feature columns left out "
                  "of the products (their weights are zero at the optimum)")
    else:
        Xw = Xa
    if device is not None:
        from .torch_backend import TorchGatedProblem

        work = TorchGatedProblem(Xw, D, Y, loss, alpha, device=device, dtype=dtype)
    elif dtype == "float32":
        work = GatedReLUProblem(Xw.astype(np.float32), D, Y, loss, alpha)
    else:
        work = problem64
    if reduce_cols:
        # weights leave the solver (progress monitor, result) with every feature row
        to_reduced_numpy = work.to_numpy

        def to_full_numpy(U):
            Ur = to_reduced_numpy(U)
            Uf = np.zeros((Xa.shape[1],) + Ur.shape[1:])
            Uf[used_cols] = Ur
            return Uf

        work.to_numpy = to_full_numpy
    big = Xa.shape[0] * Xa.shape[1] * D.shape[1] * Y.shape[1] > 1e9
    used = "fista" if device is None else f"fista[torch:{work.device}]"
    monitor = SolveMonitor(callback, used, t0)
    with monitor.guard():
        out = solve_gated_fista(work, U0, tol=tol, max_iter=max_iter, verbose=verbose,
                                n_power=3 if big else 8, time_limit=time_limit, monitor=monitor)
    if monitor.stopped is not None:
        return _stopped_result(problem64, "gated", monitor, U0_given, G, loss, alpha, bias,
                               classes, exact, tol, t0)
    U = work.to_numpy(out["U"])
    # the certificate is always evaluated in float64 on the host
    if work is problem64:
        gap = out["gap"]
    else:
        gap = problem64.gap(U)
        if out.get("dual_point") is not None:  # re-verify the best dual point in float64
            dual, _ = problem64.dual_value_at(out["dual_point"])
            if dual > gap.dual:
                gap = Gap(gap.primal, dual, max(gap.primal - dual, 0.0),
                          max(gap.primal - dual, 0.0) / max(abs(gap.primal), 1e-300), gap.dual_scale)
    converged = gap.relative_gap <= tol
    return _finish("gated", U, gap, out["n_iter"], converged, out["history"], 0.0, G, loss,
                   alpha, bias, classes, exact, tol, t0, used)


_THREADPOOLS: list = []


def _blas_threads(limit):
    """Context limiting the BLAS thread pools to ``limit`` threads (None: no change).

    The libraries are found once per process (a scan of the loaded shared objects
    costs milliseconds, as much as a whole small solve's setup); BLAS libraries
    loaded later are rescanned for when none was found before.
    """
    if limit is None:
        return contextlib.nullcontext()
    if not _THREADPOOLS or not _THREADPOOLS[0].select(user_api="blas").lib_controllers:
        _THREADPOOLS[:] = [ThreadpoolController()]
    return _THREADPOOLS[0].limit(limits=limit, user_api="blas")


#: problems with n * d * P * c at most this size are solved with one BLAS thread
SMALL_PROBLEM_SIZE = 50_000_000


def _solve(problem, X, G, D, formulation, loss, alpha, bias, solver, tol, max_iter, verbose,
           warm_start, classes, exact, t0, time_limit=None, callback=None):
    Xa, Y = problem.Xa, problem.Y
    history: list = []
    violation = 0.0
    if solver in ("clarabel", "cvxpy"):
        from .solvers import cvxpy_ref

        if formulation == "gated":
            out = cvxpy_ref.solve_gated_cvxpy(Xa, D, Y, alpha, loss, verbose=bool(verbose))
            U = out["U"]
            gap = problem.gap(U)
        else:
            out = cvxpy_ref.solve_relu_cvxpy(Xa, D, Y, alpha, loss, verbose=bool(verbose))
            Q = np.stack([out["V"], out["W"]], axis=1)
            A = np.stack([out["A_V"], out["A_W"]], axis=1)
            gap = problem.gap(Q, A=A, refine_iter=200)
            violation = problem.violation(Q)
        n_iter = 0
        converged = gap.relative_gap <= tol and violation <= max(tol, 1e-8)
        used = "clarabel"
    elif formulation == "gated":
        U0 = None if warm_start is None else warm_start.get("U")
        used = "fista" if solver == "fista" else "working_set"
        monitor = SolveMonitor(callback, used, t0)
        with monitor.guard():
            if solver == "fista":
                from .solvers.gated import solve_gated_fista

                out = solve_gated_fista(problem, U0, tol=tol, max_iter=max_iter, verbose=verbose,
                                        time_limit=time_limit, monitor=monitor)
            else:
                out = _solve_native_gated(problem, U0, tol, max_iter, verbose, monitor)
        if monitor.stopped is not None:
            return _stopped_result(problem, "gated", monitor, U0, G, loss, alpha, bias, classes,
                                   exact, tol, t0)
        U, gap, n_iter, converged, history = (out["U"], out["gap"], out["n_iter"],
                                              out["converged"], out["history"])
    else:
        Q0 = None
        if warm_start is not None and "V" in warm_start:
            Q0 = np.stack([warm_start["V"], warm_start["W"]], axis=1)
        used = "al" if solver == "al" else "ipm"
        monitor = SolveMonitor(callback, used, t0, feasibility_tol=max(tol, 1e-8))
        with monitor.guard():
            if solver == "al":
                from .solvers.al import solve_relu_al_basic

                out = solve_relu_al_basic(problem, Q0, tol=tol, max_iter=max_iter,
                                          verbose=verbose, monitor=monitor)
            else:
                out = _solve_native_relu(problem, Q0, tol, max_iter, verbose, monitor, gates=G)
        if monitor.stopped is not None:
            return _stopped_result(problem, "relu", monitor, Q0, G, loss, alpha, bias, classes,
                                   exact, tol, t0)
        Q, gap, n_iter, converged, history = (out["Q"], out["gap"], out["n_iter"],
                                              out["converged"], out["history"])
        violation = out["violation"]
    weights = U if formulation == "gated" else Q
    return _finish(formulation, weights, gap, n_iter, converged, history, violation, G, loss,
                   alpha, bias, classes, exact, tol, t0, used)


def _finish(formulation, W, gap, n_iter, converged, history, violation, G, loss, alpha, bias,
            classes, exact, tol, t0, used, warn=True):
    """Build the network and the :class:`SolveResult` from convex weights ``W``.

    ``W`` is ``U`` of shape (d, P, c) for the gated program, ``Q`` of shape
    (d, 2, P, c) for the ReLU program.
    """
    U = Q = W
    if formulation == "relu" and violation > max(tol, 1e-8):
        # an infeasible iterate can sit below the optimum: its gap certifies nothing
        gap = Gap(gap.primal, gap.dual, float("nan"), float("nan"), gap.dual_scale)
        converged = False
    if formulation == "gated":
        weights = {"U": U}
        network = network_from_gated(U, G, bias=bias, classes=classes, loss=loss)
        n_active = int(np.count_nonzero(group_norms(U)))
    else:
        weights = {"V": Q[:, 0], "W": Q[:, 1]}
        network = network_from_relu(Q[:, 0], Q[:, 1], bias=bias, classes=classes, loss=loss)
        n_active = int(np.count_nonzero(group_norms(Q)))
    if not converged and warn:
        msg = (f"cvxnn.solve did not reach tol={tol:g}: relative duality gap "
               f"{gap.relative_gap:.3e}")
        if formulation == "relu":
            msg += f", relative constraint violation {violation:.3e}"
        msg += f" after {n_iter} iterations; increase max_iter or loosen tol"
        warnings.warn(msg, ConvergenceWarning, stacklevel=3)
    certified_over = ("all activation patterns (enumerated)" if exact
                      else f"the {G.shape[1]} given/sampled activation patterns")
    return SolveResult(
        network=network, objective=gap.primal, gap=gap.gap, relative_gap=gap.relative_gap,
        n_iter=n_iter, time=time.perf_counter() - t0, converged=bool(converged), weights=weights,
        gates=G, classes=classes, n_active=n_active, formulation=formulation, loss=loss,
        alpha=alpha, bias=bool(bias), solver=used, certified_over=certified_over,
        constraint_violation=float(violation), dual_bound=gap.dual, history=history,
    )


def _solve_native_gated(problem, U0, tol, max_iter, verbose, monitor=None):
    # working-set second-order solver (primal-dual interior point with barrier fallback
    # and an active-set Newton finish, on a growing set of blocks, certified by the
    # full duality gap); see solvers/working_set.py.  max_iter bounds its Newton steps.
    from .solvers.working_set import solve_gated_working_set

    reduced = _merge_duplicate_rows(problem)
    if reduced is not None:
        # duplicate samples (same row of Xa and of the masks): solve the merged squared-loss
        # problem (same minimisers), then certify on the original rows; if that does not
        # reach tol, finish on the original problem from the merged solution
        shift = problem.objective(problem.zeros()) - reduced.objective(reduced.zeros())
        def shifted_monitor(it, W, obj, rel_gap, violation=0.0):
            # report objectives and gaps of the original problem (a constant apart)
            tiny = np.finfo(float).tiny
            gap_abs = rel_gap * max(abs(obj), tiny)
            monitor(it, W, obj + shift, gap_abs / max(abs(obj + shift), tiny), violation)

        out = solve_gated_working_set(reduced, U0, tol=tol, max_iter=max_iter, verbose=verbose,
                                      monitor=None if monitor is None else shifted_monitor)
        gap = problem.gap(out["U"])
        if gap.relative_gap <= tol:
            if monitor is not None:
                monitor(out["n_iter"], out["U"], gap.primal, gap.relative_gap)
            hist = [(it, t, gap.relative_gap if k == len(out["history"]) - 1 else g, o, v)
                    for k, (it, t, g, o, v) in enumerate(out["history"])]
            return dict(out, gap=gap, converged=True, history=hist)
        U0 = out["U"]
    return solve_gated_working_set(problem, U0, tol=tol, max_iter=max_iter, verbose=verbose,
                                   monitor=monitor)


def _merge_duplicate_rows(problem, min_saving=0.1):
    """The gated squared-loss problem with duplicate samples merged, or ``None``.

    Samples with identical rows of ``Xa`` and of the masks share their predictions, so
    with group sizes ``w_g``, group means ``ybar_g`` and ``m`` groups, scaling the
    representative rows and targets by ``sqrt(w_g m / n)`` gives an ``m``-sample
    problem whose objective differs from the original by a constant (same weights
    ``U``, same alpha).  ``None`` unless the loss is squared and at least
    ``min_saving n`` rows merge.
    """
    if problem.loss.name != "squared":
        return None
    Xa = problem.Xa
    n = Xa.shape[0]
    key = np.hstack([Xa.astype(np.float64), problem.D.astype(np.float64)])
    _, first, inv, counts = np.unique(key, axis=0, return_index=True, return_inverse=True,
                                      return_counts=True)
    m = first.size
    if m > (1.0 - min_saving) * n:
        return None
    inv = np.asarray(inv).ravel()
    Ybar = np.zeros((m, problem.Y.shape[1]))
    np.add.at(Ybar, inv, problem.Y)
    Ybar /= counts[:, None]
    scale = np.sqrt(counts * m / n)
    return GatedReLUProblem(Xa[first] * scale[:, None].astype(Xa.dtype), problem.D[first],
                            Ybar * scale[:, None], problem.loss, problem.alpha)


def _solve_native_relu(problem, Q0, tol, max_iter, verbose, monitor=None, gates=None):
    """Native ReLU solver: working-set interior point (``max_iter`` bounds its iterations).

    Falls back to the basic augmented Lagrangian for ``alpha = 0`` (no group
    penalty, so no second-order cone) or a loss without a Hessian.
    """
    from .solvers.relu_ipm import solve_relu_ipm, supports_loss

    if problem.alpha > 0 and supports_loss(problem.loss):
        return solve_relu_ipm(problem, Q0, tol=tol, max_iter=max_iter, verbose=verbose,
                              monitor=monitor, gates=gates)
    from .solvers.al import solve_relu_al_basic

    return solve_relu_al_basic(problem, Q0, tol=tol, max_iter=max_iter, verbose=verbose,
                               monitor=monitor)


def _stopped_result(problem, formulation, monitor, W0, G, loss, alpha, bias, classes, exact,
                    tol, t0):
    """Result of a solve stopped by the callback or interrupted: the best iterate, certified anew.

    Candidates are the monitor's best iterate and the starting point (``W0`` or
    zeros); the one with the lower objective is returned.  For the relu program
    each candidate is first projected exactly onto the cones of its nonzero
    blocks, so that the certificate (exact multipliers of every block whose dual
    constraint fails, :func:`cvxnn.solvers.relu_ipm._certify`) is valid.
    """
    shape = problem.shape
    cands = [] if monitor.best is None else [np.array(monitor.best["weights"], dtype=np.float64)]
    cands.append(np.zeros(shape) if W0 is None else np.array(W0, dtype=np.float64).reshape(shape))
    violation = 0.0
    if formulation == "gated":
        objs = [problem.objective(U) for U in cands]
        W = cands[int(np.argmin(objs))]
        gap = problem.gap(W)
    else:
        from .solvers.relu_ipm import _certify, _restore_feasibility

        row_norms = np.sqrt(np.einsum("nd,nd->n", problem.Xa, problem.Xa))
        for Q in cands:
            if problem.violation(Q) > 0:
                _restore_feasibility(problem, Q, np.flatnonzero(group_norms(Q).ravel() > 0),
                                     row_norms)
        objs = [problem.objective(Q) for Q in cands]
        W = cands[int(np.argmin(objs))]
        A = np.zeros((problem.Xa.shape[0],) + shape[1:])
        gap = _certify(problem, W, A, problem.predict(W), row_norms)
        violation = problem.violation(W)
    result = _finish(formulation, W, gap, monitor.iteration, False, list(monitor.history),
                     violation, G, loss, alpha, bias, classes, exact, tol, t0, monitor.solver,
                     warn=False)
    result.stopped = monitor.stopped
    result.interrupted = monitor.stopped == "keyboard_interrupt"
    return result
