"""One entry point: :func:`solve` trains a two-layer ReLU network by convex optimisation."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from ._data import augment, check_alpha, check_X, check_y, encode_targets
from .losses import LOSSES
from .network import network_from_gated, network_from_relu
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
          time_limit=None, patterns="auto", search_options=None) -> SolveResult:
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
        Weight-decay strength (>= 0).
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

    Returns
    -------
    SolveResult
    """
    t0 = time.perf_counter()
    formulation = _check_choice(formulation, "formulation", FORMULATIONS)
    loss = _check_choice(loss, "loss", tuple(LOSSES))
    solver = _check_choice(solver, "solver", SOLVERS)
    X = check_X(X, "X", min_samples=2)
    y = check_y(y, X.shape[0], "y")
    alpha = check_alpha(alpha)
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
        return cutting_plane(X, y, alpha, formulation=formulation, loss=loss, gates=gates,
                             n_gates=n_gates, bias=bias, solver=solver, tol=tol, max_iter=max_iter,
                             random_state=random_state, verbose=verbose,
                             classification=classification, **opts)
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
    D = compute_masks(X, G, bias=bias)

    if formulation == "gated":
        problem = GatedReLUProblem(Xa, D, Y, loss, alpha)
    else:
        problem = ReLUProblem(Xa, D, Y, loss, alpha)
    if first_order:
        solver = "fista"

    # small GEMMs run faster on one BLAS thread (threads spin and contend on 2-core machines)
    size = Xa.shape[0] * Xa.shape[1] * D.shape[1] * Y.shape[1]
    with threadpool_limits(limits=1 if size <= SMALL_PROBLEM_SIZE else None, user_api="blas"):
        if first_order:
            return _solve_first_order(problem, G, D, loss, alpha, bias, tol, max_iter, verbose,
                                      warm_start, classes, exact, t0, dtype, device, time_limit)
        return _solve(problem, X, G, D, formulation, loss, alpha, bias, solver, tol, max_iter,
                      verbose, warm_start, classes, exact, t0, time_limit)


def _check_dtype(dtype):
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    return name


def _solve_first_order(problem64, G, D, loss, alpha, bias, tol, max_iter, verbose, warm_start,
                       classes, exact, t0, dtype, device, time_limit):
    """Gated program by FISTA in float32 and/or on a torch device; float64 certificate."""
    from .solvers.gated import solve_gated_fista

    Xa, Y = problem64.Xa, problem64.Y
    if device is not None:
        from .torch_backend import TorchGatedProblem

        work = TorchGatedProblem(Xa, D, Y, loss, alpha, device=device, dtype=dtype)
    elif dtype == "float32":
        work = GatedReLUProblem(Xa.astype(np.float32), D, Y, loss, alpha)
    else:
        work = problem64
    U0 = None if warm_start is None else warm_start.get("U")
    big = Xa.shape[0] * Xa.shape[1] * D.shape[1] * Y.shape[1] > 1e9
    out = solve_gated_fista(work, U0, tol=tol, max_iter=max_iter, verbose=verbose,
                            n_power=3 if big else 8, time_limit=time_limit)
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
                   alpha, bias, classes, exact, tol, t0,
                   "fista" if device is None else f"fista[torch:{work.device}]")


#: problems with n * d * P * c at most this size are solved with one BLAS thread
SMALL_PROBLEM_SIZE = 50_000_000


def _solve(problem, X, G, D, formulation, loss, alpha, bias, solver, tol, max_iter, verbose,
           warm_start, classes, exact, t0, time_limit=None):
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
        if solver == "fista":
            from .solvers.gated import solve_gated_fista

            out = solve_gated_fista(problem, U0, tol=tol, max_iter=max_iter, verbose=verbose,
                                    time_limit=time_limit)
        else:
            out = _solve_native_gated(problem, U0, tol, max_iter, verbose)
        U, gap, n_iter, converged, history = (out["U"], out["gap"], out["n_iter"],
                                              out["converged"], out["history"])
        used = "fista" if solver == "fista" else "working_set"
    else:
        Q0 = None
        if warm_start is not None and "V" in warm_start:
            Q0 = np.stack([warm_start["V"], warm_start["W"]], axis=1)
        if solver == "al":
            from .solvers.al import solve_relu_al_basic

            out = solve_relu_al_basic(problem, Q0, tol=tol, max_iter=max_iter, verbose=verbose)
        else:
            out = _solve_native_relu(problem, Q0, tol, max_iter, verbose)
        Q, gap, n_iter, converged, history = (out["Q"], out["gap"], out["n_iter"],
                                              out["converged"], out["history"])
        violation = out["violation"]
        used = "al" if solver == "al" else "ipm"
    weights = U if formulation == "gated" else Q
    return _finish(formulation, weights, gap, n_iter, converged, history, violation, G, loss,
                   alpha, bias, classes, exact, tol, t0, used)


def _finish(formulation, W, gap, n_iter, converged, history, violation, G, loss, alpha, bias,
            classes, exact, tol, t0, used):
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
    if not converged:
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


def _solve_native_gated(problem, U0, tol, max_iter, verbose):
    # working-set second-order solver (primal-dual interior point with barrier fallback
    # and an active-set Newton finish, on a growing set of blocks, certified by the
    # full duality gap); see solvers/working_set.py.  max_iter bounds its Newton steps.
    from .solvers.working_set import solve_gated_working_set

    return solve_gated_working_set(problem, U0, tol=tol, max_iter=max_iter, verbose=verbose)


def _solve_native_relu(problem, Q0, tol, max_iter, verbose):
    """Native ReLU solver: working-set interior point (``max_iter`` bounds its iterations).

    Falls back to the basic augmented Lagrangian for ``alpha = 0`` (no group
    penalty, so no second-order cone) or a loss without a Hessian.
    """
    from .solvers.relu_ipm import solve_relu_ipm, supports_loss

    if problem.alpha > 0 and supports_loss(problem.loss):
        return solve_relu_ipm(problem, Q0, tol=tol, max_iter=max_iter, verbose=verbose)
    from .solvers.al import solve_relu_al_basic

    return solve_relu_al_basic(problem, Q0, tol=tol, max_iter=max_iter, verbose=verbose)
