"""Regularisation paths: :func:`alpha_max` and :func:`path`.

The convex programs of :func:`cvxnn.solve` (blocks ``b = (i, k)``, one per
activation pattern ``i`` and output ``k``, ``A_i = D_i Xa``)::

    gated:  min_U    L(sum_i A_i U_i, Y) + alpha sum_{i,k} ||U[:, i, k]||
    relu:   min_{V,W} L(sum_i A_i (V_i - W_i), Y)
                      + alpha sum_{i,k} (||V[:, i, k]|| + ||W[:, i, k]||)
            s.t. (2 D_i - I) Xa V_i >= 0, (2 D_i - I) Xa W_i >= 0

are solved on a decreasing grid of ``alpha`` with the same activation patterns.

Zero solution.  With ``Theta0 = -grad_Z L(0, Y)`` (shape ``(n, c)``) the zero
weights are optimal iff ``Theta0`` is dual feasible, i.e. ``alpha >= alpha_max``
with

    gated:  alpha_max = max_{i,k} ||Xa^T D_i Theta0[:, k]||
    relu:   alpha_max = max_{i,k,s=+-1} max_{v in K_i, ||v|| <= 1} s Theta0[:, k]^T D_i Xa v
                      = max_{i,k,s} ||proj_{K_i}(s Xa^T D_i Theta0[:, k])||,

``K_i = {v : (2 D_i - I) Xa v >= 0}`` (Moreau's decomposition; the projection is
exact, :func:`cvxnn.solvers.cone_projection.project_cones`).

Path machinery (each point certified by the full duality gap of its program):

* warm starts: every solve starts from the previous solution;
* sequential screening: with the previous dual point ``Theta_prev`` (optimal at
  ``alpha_prev``) the strong rule keeps the patterns with some block norm
  ``>= 2 alpha - alpha_prev`` (plus the previous support), and the gap-safe rule
  (Ndiaye et al. 2017, see :mod:`cvxnn.screening`) removes blocks that are zero
  at every optimum.  The program is solved on the kept patterns, then certified
  on all of them; a pattern that violates its dual constraint is added back and
  the program re-solved, so a screening error never yields a false certificate;
* squared-loss gated paths with ``n >= 2 P d`` use the Gram matrix
  ``K = A^T A / n`` (computed once, ``P d x P d``) and an active-set Newton
  method on it; every point is still certified on the data themselves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ._data import augment, check_alpha, check_X, check_y, encode_targets
from .losses import LOSSES, get_loss
from .patterns import compute_masks, enumerate_patterns, sample_gates
from .problems import GatedReLUProblem, ReLUProblem, _best_dual, _make_gap, group_norms

__all__ = ["alpha_max", "path", "PathResult"]

#: largest Gram matrix (P d) used by the squared-loss gated path
GRAM_MAX_DIM = 3000


# ----------------------------------------------------------------------------
# inputs


def _check_choice(value, name, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def _check_gates_arg(gates, X, bias):
    d = X.shape[1]
    G = np.asarray(gates)
    if G.dtype.kind not in "iuf" or G.ndim != 2:
        raise ValueError(f"gates must be None, 'enumerate' or a 2-D numeric array (d, P) or "
                         f"(d + 1, P); got shape {G.shape} and dtype {G.dtype}")
    G = G.astype(np.float64)
    if not np.all(np.isfinite(G)):
        raise ValueError("gates contains NaN or infinity")
    rows_ok = (d, d + 1) if bias else (d,)
    if G.shape[0] not in rows_ok or G.shape[1] < 1:
        raise ValueError(f"gates must have {' or '.join(map(str, rows_ok))} rows and at least "
                         f"one column for X with {d} features (bias={bias}); got {G.shape}")
    if bias and G.shape[0] == d:
        G = np.vstack([G, np.zeros((1, G.shape[1]))])
    return G


def _setup(X, y, formulation, loss, gates, n_gates, bias, random_state, classification):
    """Validated arrays and the program's pieces: ``(X, y, Xa, Y, classes, G, D, exact)``."""
    _check_choice(formulation, "formulation", ("relu", "gated"))
    _check_choice(loss, "loss", tuple(LOSSES))
    if not isinstance(bias, (bool, np.bool_)):
        raise TypeError(f"bias must be True or False, got {bias!r}")
    if loss != "squared" and classification is False:
        raise ValueError(f"loss={loss!r} is a classification loss; classification=False is invalid")
    X = check_X(X, "X", min_samples=2).astype(np.float64, copy=False)
    y = check_y(y, X.shape[0], "y")
    Y, classes = encode_targets(y, loss, classification)
    Xa = augment(X, bias)
    exact = isinstance(gates, str)
    if exact:
        if gates != "enumerate":
            raise ValueError(f"gates must be an array, None or 'enumerate', got {gates!r}")
        G = enumerate_patterns(X, bias=bias)
    elif gates is None:
        G = sample_gates(X, n_gates, bias=bias, random_state=random_state)
    else:
        G = _check_gates_arg(gates, X, bias)
    D = compute_masks(X, G, bias=bias)
    return X, y, Xa, Y, classes, G, D, exact


def _problem(formulation, Xa, D, Y, loss, alpha):
    cls = GatedReLUProblem if formulation == "gated" else ReLUProblem
    return cls(Xa, D, Y, loss, alpha)


def _block_norms(problem, formulation, Theta, screen=None):
    """Dual block norms at ``Theta``: shape ``(P, c)`` (relu: max over the two signs).

    Exact, except with ``screen`` (relu): a norm whose unprojected upper bound
    ``||Xa^T D_i Theta_k||`` is at most ``screen`` is reported as that bound.
    """
    if formulation == "gated":
        return problem.dual_norms(Theta)
    from .solvers.relu_ipm import price_blocks

    _, _, P, c = problem.shape
    rho, _, _ = price_blocks(problem, Theta, screen=screen)
    return rho.reshape(2, P, c).max(axis=0)


def alpha_max(X, y, *, formulation="gated", loss="squared", gates=None, n_gates=100, bias=True,
              random_state=None, classification=None) -> float:
    """Smallest ``alpha`` at which the zero network is optimal (closed form).

    With ``Theta0 = -grad_Z L(0, Y)`` of shape ``(n, c)``::

        gated: max_{i,k} ||Xa^T D_i Theta0[:, k]||
        relu:  max_{i,k,s=+-1} ||proj_{K_i}(s Xa^T D_i Theta0[:, k])||

    (see the module docstring).  For ``alpha >= alpha_max`` the solution of the
    program over the same patterns is zero, for ``alpha < alpha_max`` it is not.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
    formulation : {"gated", "relu"}, default="gated"
    loss : {"squared", "logistic", "cross_entropy"}, default="squared"
    gates : array of shape (d, P) or (d + 1, P), "enumerate" or None
        As in :func:`cvxnn.solve`; ``None`` samples ``n_gates`` gates with
        :func:`cvxnn.sample_gates` and ``random_state`` (the same gates as
        ``cvxnn.solve`` with the same seed).
    n_gates : int, default=100
    bias : bool, default=True
    random_state : int, Generator or None
    classification : bool, optional
        Label encoding for the squared loss (as in :func:`cvxnn.solve`).

    Returns
    -------
    float
    """
    X, y, Xa, Y, classes, G, D, _ = _setup(X, y, formulation, loss, gates, n_gates, bias,
                                           random_state, classification)
    return _alpha_max_from(formulation, Xa, D, Y, loss)


def _alpha_max_from(formulation, Xa, D, Y, loss):
    Theta0 = -get_loss(loss).gradient(np.zeros_like(Y), Y)
    problem = _problem(formulation, Xa, D, Y, loss, 1.0)
    return float(_block_norms(problem, formulation, Theta0).max(initial=0.0))


# ----------------------------------------------------------------------------
# results


@dataclass
class PathResult:
    """What :func:`path` returns.

    Attributes
    ----------
    alphas : ndarray of shape (n_alphas,)
        The grid, decreasing.
    objectives, gaps : ndarray of shape (n_alphas,)
        Objective and *relative* duality gap (over the path's patterns) per alpha.
    n_active : ndarray of int, shape (n_alphas,)
        Non-zero blocks of each solution (active neurons).
    results : list of SolveResult
        One per alpha (``network``, ``weights``, certificate...).
    times : ndarray of shape (n_alphas,)
        Wall-clock seconds per alpha.
    alpha_max : float
        Smallest alpha with the zero solution (see :func:`alpha_max`).
    gates : ndarray of shape (d_aug, P)
        The activation gates shared by the whole path.
    n_kept : ndarray of int, shape (n_alphas,)
        Patterns in the program actually solved after screening (``P`` without).
    formulation, loss : str
    """

    alphas: np.ndarray
    objectives: np.ndarray
    gaps: np.ndarray
    n_active: np.ndarray
    results: list
    times: np.ndarray
    alpha_max: float
    gates: np.ndarray
    n_kept: np.ndarray
    formulation: str
    loss: str
    info: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"PathResult(formulation={self.formulation!r}, loss={self.loss!r}, "
                f"n_alphas={len(self.alphas)}, alpha_max={self.alpha_max:.6g}, "
                f"max_gap={np.nanmax(self.gaps) if len(self.gaps) else float('nan'):.2e}, "
                f"time={float(np.sum(self.times)):.3f}s)")


# ----------------------------------------------------------------------------
# certificates on the full set of patterns


class _Certifier:
    """Full duality gap and dual block norms of one formulation at one ``alpha``."""

    def __init__(self, formulation, Xa, D, Y, loss):
        self.formulation = formulation
        self.Xa, self.D, self.Y, self.loss = Xa, D, Y, get_loss(loss)
        self.base = _problem(formulation, Xa, D, Y, loss, 1.0)
        self.n, self.P, self.c = Xa.shape[0], D.shape[1], Y.shape[1]

    def at(self, alpha):
        self.base.alpha = float(alpha)
        return self.base

    def certify(self, weights, alpha):
        """``(gap, norms (P, c), Theta, violation)`` of the full program at ``weights``."""
        pr = self.at(alpha)
        if self.formulation == "gated":
            U = weights
            Z = pr.apply(U)
            violation = 0.0
        else:
            U = weights
            Z = pr.predict(U)
            violation = pr.violation(U)
        primal = pr.objective(U, Z)
        Theta = -self.loss.gradient(Z, self.Y)
        # upper bounds (<= alpha/2) in place of exact relu norms leave the certificate
        # unchanged and only make the screening rules keep more patterns
        norms = _block_norms(pr, self.formulation, Theta, screen=0.5 * alpha)
        cmax = float(norms.max(initial=0.0))
        s_max = 1.0 if cmax <= alpha else alpha / cmax
        dual, s = _best_dual(self.loss, Theta, self.Y, s_max)
        return _make_gap(primal, dual, s), norms, Theta, violation

    def gap_safe(self, weights, Theta, norms, alpha):
        """Boolean ``(P, c)``: blocks that are zero at every optimum at ``alpha``.

        Uses the primal point ``weights`` and the dual candidate ``Theta`` with its
        exact block norms ``norms`` (from another alpha); the relu cone norms are
        1-Lipschitz in ``Theta`` like the gated ones (projections are non-expansive).
        """
        from .screening import block_frobenius_norms, gap_safe_screen

        pr = self.at(alpha)
        Z = pr.apply(weights) if self.formulation == "gated" else pr.predict(weights)
        primal = pr.objective(weights, Z)
        cmax = float(norms.max(initial=0.0))
        s_max = 1.0 if cmax <= alpha else alpha / cmax
        dual, s = _best_dual(self.loss, Theta, self.Y, s_max)
        if not hasattr(self, "_frob"):
            self._frob = block_frobenius_norms(self.Xa, self.D)
        return gap_safe_screen(norms, s, max(primal - dual, 0.0), alpha,
                               self.loss.curvature(self.n), self._frob)


# ----------------------------------------------------------------------------
# squared-loss gated programs on the Gram matrix


class _GramGroupLasso:
    """``min_u 1/2 u^T K u - b^T u + alpha sum_j ||u_j||`` (blocks of ``d`` entries).

    ``K = A^T A / n`` with ``A = [D_1 Xa, ..., D_P Xa]`` and ``b = A^T y / n`` for
    one output ``y``: equal to the gated squared-loss objective minus
    ``||y||^2 / (2 n)``.  Solved by an active-set Newton method: block updates
    (exact zeroing, proximal entry) identify the support, Newton steps with a
    backtracking line search on the smooth problem over the non-zero blocks
    converge quadratically.
    """

    def __init__(self, Xa, D, chunk_elements=1 << 23):
        n, d = Xa.shape
        P = D.shape[1]
        m = P * d
        K = np.zeros((m, m))
        rows = max(1, chunk_elements // m)
        for start in range(0, n, rows):
            sl = slice(start, min(n, start + rows))
            A = (D[sl].astype(np.float64)[:, :, None] * Xa[sl][:, None, :]).reshape(-1, m)
            K += A.T @ A
        self.K = K / n
        self.d, self.P, self.n = d, P, n
        Kb = self.K.reshape(P, d, P, d)
        diag = Kb[np.arange(P), :, np.arange(P), :]  # (P, d, d)
        self.Lb = np.maximum(np.linalg.eigvalsh(diag)[:, -1], 1e-300)

    def solve(self, b, alpha, u0, blocks, *, kkt_tol=1e-10, max_outer=60, max_newton=60):
        """Minimise over the blocks ``blocks`` (others fixed at zero); returns ``u`` (m,)."""
        d = self.d
        cols = (np.asarray(blocks)[:, None] * d + np.arange(d)).ravel()
        K = self.K[np.ix_(cols, cols)]
        bw = b[cols]
        nb = len(blocks)
        u = np.array(u0[cols], dtype=np.float64)
        Lb = self.Lb[blocks]
        Ku = K @ u
        scale = max(alpha, float(np.abs(bw).max(initial=0.0)), 1e-300)
        diagK = self._diag_blocks(K, nb)
        for _ in range(max_outer):
            # block pass: exact zeroing of blocks whose optimum given the others is zero,
            # proximal entry of the zero blocks that violate their optimality condition
            changed = False
            for j in range(nb):
                sl = slice(j * d, (j + 1) * d)
                uj = u[sl]
                gj = bw[sl] - Ku[sl]
                if uj.any():
                    rj = gj + diagK[j] @ uj
                    if float(np.linalg.norm(rj)) <= alpha:
                        Ku -= K[:, sl] @ uj
                        u[sl] = 0.0
                        changed = True
                else:
                    gn = float(np.linalg.norm(gj))
                    if gn > alpha * (1 + kkt_tol):
                        step = (1.0 - alpha / gn) * gj / Lb[j]
                        u[sl] = step
                        Ku += K[:, sl] @ step
                        changed = True
            converged = self._newton(K, diagK, bw, alpha, u, Ku, nb, max_newton, kkt_tol * scale)
            if converged and not changed:
                break
        out = np.zeros_like(u0, dtype=np.float64)
        out[cols] = u
        return out

    def _zero_blocks(self, K, diagK, bw, alpha, u, Ku, blocks):
        """Set to zero the blocks of ``blocks`` whose block optimum is zero (sequentially)."""
        d = self.d
        U = u.reshape(-1, d)
        R = (bw - Ku).reshape(-1, d)[blocks] + np.einsum("jab,jb->ja", diagK[blocks], U[blocks])
        cand = blocks[np.sqrt(np.einsum("jd,jd->j", R, R)) <= alpha * (1 + 1e-12)]
        done = False
        for j in cand:
            sl = slice(j * d, (j + 1) * d)
            uj = u[sl]
            if not uj.any():
                continue
            rj = bw[sl] - Ku[sl] + diagK[j] @ uj
            if float(np.linalg.norm(rj)) <= alpha:
                Ku -= K[:, sl] @ uj
                u[sl] = 0.0
                done = True
        return done

    @staticmethod
    def _diag_blocks(K, nb):
        d = K.shape[0] // max(nb, 1)
        Kb = K.reshape(nb, d, nb, d)
        return Kb[np.arange(nb), :, np.arange(nb), :]

    def _newton(self, K, diagK, bw, alpha, u, Ku, nb, max_newton, gtol):
        """Newton on the non-zero blocks (in place on ``u`` and ``Ku``); True when converged."""
        from scipy.linalg import LinAlgError, cho_factor, cho_solve

        d = self.d

        def objective(uu, Kuu):
            nrm = np.sqrt(np.einsum("jd,jd->j", uu.reshape(nb, d), uu.reshape(nb, d)))
            return 0.5 * float(uu @ Kuu) - float(bw @ uu) + alpha * float(nrm.sum())

        F = objective(u, Ku)
        for _ in range(max_newton):
            U = u.reshape(nb, d)
            unorm = np.sqrt(np.einsum("jd,jd->j", U, U))
            act = np.flatnonzero(unorm > 0)
            if not act.size:
                return True
            cols = (act[:, None] * d + np.arange(d)).ravel()
            Ua = U[act] / unorm[act, None]
            grad = (Ku[cols] - bw[cols]) + alpha * Ua.ravel()
            if float(np.linalg.norm(grad.reshape(-1, d), axis=1).max()) <= gtol:
                return True
            H = K[np.ix_(cols, cols)].copy()
            Hb = H.reshape(len(act), d, len(act), d)
            radial = Ua[:, :, None] * Ua[:, None, :]
            curv = (np.eye(d)[None] - radial) * (alpha / unorm[act])[:, None, None]
            Hb[np.arange(len(act)), :, np.arange(len(act)), :] += curv
            ridge = 0.0
            for _ in range(6):
                try:
                    Hr = H.copy() if ridge == 0.0 else H + ridge * np.eye(len(cols))
                    fac = cho_factor(Hr, check_finite=False, overwrite_a=True)
                    break
                except LinAlgError:
                    # K restricted to the active blocks is singular (more columns than
                    # independent rows): a small ridge keeps the step a descent direction
                    ridge = max(ridge * 100, 1e-12 * float(np.trace(H)) / len(cols))
            else:
                return False
            step = -cho_solve(fac, grad, check_finite=False)
            dec = -float(grad @ step)
            if dec <= 1e-15 * max(abs(F), 1e-300):
                return True
            Kd = K[:, cols] @ step
            # a block whose Newton step passes through zero: try the step up to the
            # point closest to zero with that block removed (active-set breakpoint)
            S = step.reshape(len(act), d)
            cross = -np.einsum("jd,jd->j", U[act], S)
            ss = np.maximum(np.einsum("jd,jd->j", S, S), 1e-300)
            tb = cross / ss
            rest = unorm[act] ** 2 - cross * tb  # squared norm at the closest point
            cand = np.flatnonzero((cross > 0) & (tb <= 1.0) & (rest <= 0.25 * unorm[act] ** 2))
            if cand.size:
                jb = cand[np.argmin(tb[cand])]
                t = float(tb[jb])
                un = u.copy()
                un[cols] += t * step
                sl = slice(act[jb] * d, (act[jb] + 1) * d)
                Kun = Ku + t * Kd - K[:, sl] @ un[sl]
                un[sl] = 0.0
                Fn = objective(un, Kun)
                if Fn < F:
                    u[:] = un
                    Ku[:] = Kun
                    F = Fn
                    continue
            t = 1.0
            while True:
                un = u.copy()
                un[cols] += t * step
                Fn = objective(un, Ku + t * Kd)
                if Fn <= F - 1e-4 * t * dec or t < 1e-6:
                    break
                t *= 0.5
            if not Fn < F:
                return True  # no further decrease in floating point
            u[cols] += t * step
            Ku += t * Kd
            F = Fn
            # Newton only shrinks a block geometrically towards zero: zero it exactly
            # (block minimisation) once zero is its optimum given the other blocks
            if self._zero_blocks(K, diagK, bw, alpha, u, Ku, act):
                F = objective(u, Ku)
        return False


def _to_blocks(U, k):
    """``U[:, :, k]`` of shape (d, P) as a block-major vector (P d,)."""
    return np.ascontiguousarray(U[:, :, k].T).ravel()


# ----------------------------------------------------------------------------
# the path


def _validate_grid(alphas, n_alphas, eps, amax):
    if alphas is None:
        if (isinstance(n_alphas, bool) or not isinstance(n_alphas, (int, np.integer))
                or n_alphas < 1):
            raise ValueError(f"n_alphas must be a positive integer, got {n_alphas!r}")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
            raise ValueError(f"eps must be a number in (0, 1), got {eps!r}")
        if not amax > 0:
            return None  # the zero network fits y exactly: no natural grid
        return amax * np.geomspace(1.0, eps, int(n_alphas))
    arr = np.asarray(alphas, dtype=np.float64).ravel() if not np.isscalar(alphas) else None
    if arr is None or arr.size < 1:
        raise ValueError(f"alphas must be a non-empty 1-D sequence of numbers > 0, got {alphas!r}")
    for a in arr:
        check_alpha(float(a), "alphas")
    if np.any(arr == 0):
        raise ValueError("alphas must be > 0: at alpha=0 there is no certificate "
                         "(see cvxnn.solve); use a small positive alpha instead")
    return np.sort(arr)[::-1].copy()


def path(X, y, alphas=None, *, n_alphas=20, eps=1e-3, formulation="gated", loss="squared",
         gates=None, n_gates=100, bias=True, tol=1e-6, warm_start=True, screening=True,
         random_state=None, verbose=0, n_jobs=None, callback=None, classification=None,
         max_iter=None, solver="auto") -> PathResult:
    """Solve the convex program on a decreasing grid of ``alpha`` with shared patterns.

    Objective at each ``alpha`` (see :func:`cvxnn.solve`; blocks per pattern and output)::

        gated: L(sum_i D_i Xa U_i, Y) + alpha sum_{i,k} ||U[:, i, k]||
        relu:  the same with U = V - W, penalty on V and W, cone constraints on both

    with ``L`` the squared loss ``||Z - Y||^2 / (2 n)``, the mean logistic loss or
    the mean softmax cross-entropy.  The gates are drawn once (``random_state``)
    and shared by every point; every point is certified by the full duality gap
    over those patterns (``gaps``), whatever screening did.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
    alphas : array-like, optional
        Grid (sorted decreasingly).  Default: ``n_alphas`` points geometrically
        spaced from ``alpha_max`` down to ``eps * alpha_max``.
    n_alphas : int, default=20
    eps : float, default=1e-3
        ``alpha_min = eps * alpha_max``.
    formulation : {"gated", "relu"}, default="gated"
        The relu program uses the sampled (or given) patterns only
        (``patterns="sampled"`` in :func:`cvxnn.solve`).
    loss : {"squared", "logistic", "cross_entropy"}, default="squared"
    gates : array of shape (d, P) or (d + 1, P), "enumerate" or None
    n_gates : int, default=100
    bias : bool, default=True
    tol : float, default=1e-6
        Target relative duality gap at every point.
    warm_start : bool, default=True
        Start each solve from the previous solution.
    screening : bool, default=True
        Sequential strong rule and gap-safe rule from the previous dual point
        (only with ``warm_start``); see the module docstring.
    random_state : int, Generator or None
        Seed of the gates.
    verbose : int, default=0
        1: a progress bar (tqdm); 2: one line per alpha; 3: also the solvers' output.
    n_jobs : int, optional
        Processes (joblib) for the independent solves of a cold path
        (``warm_start=False``); a warm-started path is sequential.
    callback : callable, optional
        ``callback(index, alpha, result)`` after each point.
    classification : bool, optional
        Label encoding for the squared loss (as in :func:`cvxnn.solve`).
    max_iter : int, optional
        Iteration budget of each native solve.
    solver : {"auto", "native"}, default="auto"
        ``"auto"`` uses the Gram-matrix Newton method for warm-started squared-loss
        gated paths when ``n >= 2 P d`` and ``P d <= 3000``; ``"native"`` always
        calls :func:`cvxnn.solve`'s solvers.

    Returns
    -------
    PathResult
    """
    t_start = time.perf_counter()
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0:
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    if not isinstance(warm_start, (bool, np.bool_)):
        raise TypeError(f"warm_start must be True or False, got {warm_start!r}")
    if not isinstance(screening, (bool, np.bool_)):
        raise TypeError(f"screening must be True or False, got {screening!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {callback!r}")
    if isinstance(verbose, bool) or not isinstance(verbose, (int, np.integer)) or verbose < 0:
        raise ValueError(f"verbose must be an integer >= 0, got {verbose!r}")
    _check_choice(solver, "solver", ("auto", "native"))
    X, y, Xa, Y, classes, G, D, exact = _setup(X, y, formulation, loss, gates, n_gates, bias,
                                               random_state, classification)
    amax = _alpha_max_from(formulation, Xa, D, Y, loss)
    grid = _validate_grid(alphas, n_alphas, eps, amax)
    if grid is None:
        raise ValueError("alpha_max is 0 (the zero network fits y exactly); pass alphas explicitly")
    common = dict(formulation=formulation, loss=loss, bias=bias, tol=tol,
                  classification=classification, max_iter=max_iter, patterns="sampled",
                  verbose=max(int(verbose) - 2, 0))

    bar = _progress(len(grid), verbose)
    if not warm_start:
        results, times = _cold_path(X, y, grid, G, exact, common, n_jobs, bar, verbose, callback)
        kept = np.full(len(grid), G.shape[1])
    else:
        runner = _WarmPath(X, y, Xa, Y, classes, G, D, exact, formulation, loss, bias, tol,
                           screening, common, amax, solver)
        results, times, kept = [], [], []
        for i, a in enumerate(grid):
            t0 = time.perf_counter()
            res, n_kept = runner.step(float(a))
            times.append(time.perf_counter() - t0)
            results.append(res)
            kept.append(n_kept)
            _report(i, a, res, verbose, bar, callback)
    if bar is not None:
        bar.close()
    return PathResult(
        alphas=np.asarray(grid, dtype=np.float64),
        objectives=np.array([r.objective for r in results]),
        gaps=np.array([r.relative_gap for r in results]),
        n_active=np.array([r.n_active for r in results], dtype=int),
        results=results, times=np.asarray(times, dtype=np.float64), alpha_max=amax, gates=G,
        n_kept=np.asarray(kept, dtype=int), formulation=formulation, loss=loss,
        info={"total_time": time.perf_counter() - t_start, "warm_start": bool(warm_start),
              "screening": bool(screening and warm_start)},
    )


def _progress(total, verbose):
    if verbose != 1:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is optional
        return None
    return tqdm(total=total, desc="cvxnn path", leave=False)


def _report(i, alpha, res, verbose, bar, callback):
    if bar is not None:
        bar.update(1)
    if verbose >= 2:
        print(f"[path] {i:3d}  alpha {alpha:.4e}  objective {res.objective:.10g}  "
              f"rel. gap {res.relative_gap:.2e}  active {res.n_active}  {res.time:.3f}s")
    if callback is not None:
        callback(i, alpha, res)


def _solve_one(X, y, alpha, gates, common, warm=None):
    from .solve import solve

    return solve(X, y, alpha, gates=gates, warm_start=warm, **common)


def _cold_path(X, y, grid, G, exact, common, n_jobs, bar, verbose, callback):
    from joblib import Parallel, delayed

    def timed(a):
        t0 = time.perf_counter()
        r = _solve_one(X, y, float(a), "enumerate" if exact else G, common)
        return r, time.perf_counter() - t0

    if n_jobs in (None, 1):
        out = []
        for i, a in enumerate(grid):
            out.append(timed(a))
            _report(i, a, out[-1][0], verbose, bar, callback)
    else:
        out = Parallel(n_jobs=n_jobs)(delayed(timed)(a) for a in grid)
        for i, (a, (r, _)) in enumerate(zip(grid, out)):
            _report(i, a, r, verbose, bar, callback)
    return [r for r, _ in out], [t for _, t in out]


class _WarmPath:
    """State of a warm-started (optionally screened) path: previous solution and dual point."""

    def __init__(self, X, y, Xa, Y, classes, G, D, exact, formulation, loss, bias, tol,
                 screening, common, amax, solver):
        self.X, self.y, self.Xa, self.Y, self.classes = X, y, Xa, Y, classes
        self.G, self.D, self.exact = G, D, exact
        self.formulation, self.loss, self.bias, self.tol = formulation, loss, bias, tol
        self.screening, self.common = screening, common
        self.cert = _Certifier(formulation, Xa, D, Y, loss)
        P, c = D.shape[1], Y.shape[1]
        d = Xa.shape[1]
        shape = (d, P, c) if formulation == "gated" else (d, 2, P, c)
        self.weights = np.zeros(shape)
        # at alpha_max the zero network is optimal with the dual point Theta0
        self.Theta = -get_loss(loss).gradient(np.zeros_like(Y), Y)
        self.norms = _block_norms(self.cert.at(1.0), formulation, self.Theta)
        self.alpha_prev = max(amax, 1e-300)
        n = Xa.shape[0]
        self.gram = None
        if (solver == "auto" and formulation == "gated" and loss == "squared"
                and P * d <= GRAM_MAX_DIM and n >= 2 * P * d):
            self.gram = _GramGroupLasso(Xa, D)
            self.bvec = [_to_blocks(GatedReLUProblem(Xa, D, Y, loss, 1.0).adjoint(Y / n), k)
                         for k in range(c)]

    # -- screening ---------------------------------------------------------
    def _keep(self, alpha):
        """Boolean (P,) of the patterns to solve on: strong rule, support, minus gap-safe."""
        P = self.D.shape[1]
        if not self.screening:
            return np.ones(P, dtype=bool)
        support = group_norms(self.weights)
        if self.formulation == "relu":
            support = support.max(axis=0)
        support = (support > 0).any(axis=1)
        # the strong rule on the scaled previous dual point (optimal at alpha_prev)
        cmax = float(self.norms.max(initial=0.0))
        s = 1.0 if cmax <= self.alpha_prev else self.alpha_prev / cmax
        strong = (s * self.norms >= 2 * alpha - self.alpha_prev).any(axis=1)
        keep = strong | support
        safe = self.cert.gap_safe(self.weights, self.Theta, self.norms, alpha).all(axis=1)
        keep &= ~safe
        if not keep.any():
            keep[int(np.argmax(self.norms.max(axis=1)))] = True
        return keep

    # -- one point -----------------------------------------------------------
    def step(self, alpha):
        from .solve import _finish

        t0 = time.perf_counter()
        keep = self._keep(alpha)
        n_kept = int(keep.sum())
        for _round in range(20):
            idx = np.flatnonzero(keep)
            if self.gram is not None:
                W = self._solve_gram(alpha, idx)
                used, n_iter = "gram_newton", 0
            else:
                sub = self._solve_native(alpha, idx)
                W, used, n_iter = self._embed(sub.weights, idx), sub.solver, sub.n_iter
            gap, norms, Theta, violation = self.cert.certify(W, alpha)
            viol_pat = (norms > alpha * (1 + 1e-9)).any(axis=1) & ~keep
            ok = gap.relative_gap <= self.tol and violation <= max(self.tol, 1e-8)
            if ok or not viol_pat.any():
                break
            keep |= viol_pat
            n_kept = int(keep.sum())
        if not ok and self.gram is not None:
            # the Gram solve did not certify (e.g. rounding): finish with the native solver
            sub = self._solve_native(alpha, np.arange(self.D.shape[1]), W)
            W, used, n_iter = sub.weights["U"], sub.solver, sub.n_iter
            gap, norms, Theta, violation = self.cert.certify(W, alpha)
            n_kept = self.D.shape[1]
        self.weights, self.Theta, self.norms, self.alpha_prev = W, Theta, norms, alpha
        converged = gap.relative_gap <= self.tol and violation <= max(self.tol, 1e-8)
        res = _finish(self.formulation, W, gap, n_iter, converged, [], violation, self.G,
                      self.loss, alpha, self.bias, self.classes, self.exact, self.tol, t0, used)
        return res, n_kept

    def _embed(self, weights, idx):
        full = np.zeros_like(self.weights)
        if self.formulation == "gated":
            full[:, idx] = weights["U"]
        else:
            full[:, 0, idx] = weights["V"]
            full[:, 1, idx] = weights["W"]
        return full

    def _solve_native(self, alpha, idx, start=None):
        W = self.weights if start is None else start
        if self.formulation == "gated":
            warm = {"U": W[:, idx]}
        else:
            warm = {"V": W[:, 0, idx], "W": W[:, 1, idx]}
        return _solve_one(self.X, self.y, alpha, self.G[:, idx], self.common, warm)

    def _solve_gram(self, alpha, idx):
        d, P, c = self.weights.shape
        U = np.zeros_like(self.weights)
        for k in range(c):
            u0 = _to_blocks(self.weights, k)
            u = self.gram.solve(self.bvec[k], alpha, u0, idx)
            U[:, :, k] = u.reshape(P, d).T
        return U
