"""Two-layer *linear* networks trained with weight decay, as convex programs (math spec 3.4).

Three architectures, each with weight decay ``alpha/2 * (sum of squared
Frobenius norms of both layers)`` and a loss ``L`` in cvxnn's scaling
(squared ``||Z - Y||^2 / (2 n)``, mean logistic, mean cross-entropy):

Circular CNN, full-length filters (:func:`circular_cnn`)
    ``f(x) = sum_j a_j^T (x (*) u_j)`` with ``(x (*) u)_t = sum_s x_s u_{(t - s) mod d}``
    (circular convolution), ``u_j, a_j in R^d``.  Then ``f(x) = x^T w`` with
    ``F w = sqrt(d) * conj(F u_j) * (F a_j)`` summed over ``j`` (``F`` the unitary
    DFT), and by AM-GM per frequency

        min_{u, a : w} 1/2 sum_j (||u_j||^2 + ||a_j||^2) = ||F w||_1 / sqrt(d),

    attained by a single channel.  Training is therefore the lasso in DFT features

        min_{w_hat conj-symmetric}  L(X F^H w_hat, y) + (alpha / sqrt(d)) ||w_hat||_1.

    It is solved in a real orthonormal basis ``B`` (cosines and sines): ``w = B b``
    with ``b = [w_hat_0, sqrt(2) Re w_hat_1, sqrt(2) Im w_hat_1, ..., w_hat_{d/2}]``,
    a group lasso whose groups are the DC and Nyquist coefficients (size 1, weight
    1) and the (cos, sin) pairs of each conjugate pair of frequencies (size 2,
    weight ``sqrt(2)``: ``sqrt(2) ||(b_cos, b_sin)|| = |w_hat_k| + |w_hat_{d-k}|``).

Fully connected linear network (:func:`linear_network`)
    ``f(X) = X W1 W2`` (``W1`` of shape ``(d, m)``, ``W2`` of shape ``(m, c)``).  Since
    ``min_{W1 W2 = W} 1/2 (||W1||^2 + ||W2||^2) = ||W||_*`` (nuclear norm), training is
    ``min_W L(X W, Y) + alpha ||W||_*``.  Recovery from ``W = P S Q^T``:
    ``W1 = P sqrt(S)``, ``W2 = sqrt(S) Q^T``.

Linear CNN with per-patch output weights (:func:`linear_cnn`)
    Patches ``x_k in R^h`` (``k = 1..K``), filters ``u_j in R^h`` and output weights
    ``a_j in R^K``: ``f(x) = sum_j sum_k (x_k^T u_j) a_jk = sum_k x_k^T Z[:, k]`` with
    ``Z = sum_j u_j a_j^T`` of shape ``(h, K)``; training is
    ``min_Z L(f, y) + alpha ||Z||_*`` and ``u_j = sqrt(s_j) p_j``, ``a_j = sqrt(s_j) q_j``.

All three convex programs are solved by cvxnn's accelerated proximal gradient
(:func:`cvxnn.solvers.fista.fista`: backtracking, gradient-mapping restarts)
with group soft-thresholding or singular-value thresholding, and stop on the
relative duality gap ``(primal - dual) / |primal| <= tol``.  The dual point is
``Theta = -grad L(f)`` scaled into ``{Theta : ||A^T Theta||_dual <= alpha}``, the dual
norm being the weighted group-``l_inf`` norm (circular CNN) or the spectral norm.
The papers' ``beta`` (squared loss without ``1/n``) is ``n * alpha`` here.
:func:`alpha_max` gives the smallest ``alpha`` with a zero optimal network.
"""

from __future__ import annotations

import numbers
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ._data import check_alpha, check_X, check_y, decode_outputs, encode_targets
from .losses import get_loss
from .problems import _best_dual, _make_gap
from .solvers.fista import estimate_lipschitz, fista

__all__ = [
    "circular_cnn", "CircularCNNResult", "circular_cnn_forward", "circular_cnn_objective",
    "dft_basis", "coef_to_w_hat",
    "linear_network", "LinearNetworkResult", "linear_network_objective",
    "linear_cnn", "LinearCNNResult", "linear_cnn_forward", "linear_cnn_objective",
    "extract_patches", "alpha_max",
]


# ---------------------------------------------------------------------------------------------
# input checks
# ---------------------------------------------------------------------------------------------

def _check_common(X, y, alpha, loss, tol, max_iter, *, multi_output):
    X = check_X(X).astype(np.float64, copy=False)
    y = check_y(y, X.shape[0])
    alpha = check_alpha(alpha)
    if alpha == 0:
        raise ValueError("alpha must be > 0 (the duality-gap certificate needs a positive "
                         "weight decay); got 0")
    loss_obj = get_loss(loss)
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not tol > 0:
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    Y, classes = encode_targets(y, loss_obj.name)
    if not multi_output and Y.shape[1] != 1:
        raise ValueError(
            f"y must give a single output for this network (got {Y.shape[1]} output columns "
            f"with loss={loss_obj.name!r}); use loss='logistic' for two classes")
    return X, Y, classes, alpha, loss_obj, float(tol), int(max_iter)


def _check_factor(arr, name, shape_hint):
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be a finite 2-D array of shape {shape_hint}, "
                         f"got shape {arr.shape}")
    return arr


# ---------------------------------------------------------------------------------------------
# problems for the shared FISTA loop
# ---------------------------------------------------------------------------------------------

class _Problem:
    """``min_x L(A x, Y) + alpha * R(x)``: the interface of :func:`cvxnn.solvers.fista.fista`.

    Subclasses provide ``apply``, ``adjoint``, ``penalty`` (``R``), ``prox`` and
    ``dual_norm`` (the dual norm of ``R``).
    """

    def __init__(self, loss, Y, alpha):
        self.loss, self.Y, self.alpha = loss, Y, alpha

    def smooth_value(self, out):
        return self.loss.value(out, self.Y)

    def smooth_value_and_gradient(self, out):
        return self.loss.value_and_gradient(out, self.Y)

    def objective(self, x, out=None):
        out = self.apply(x) if out is None else out
        return self.loss.value(out, self.Y) + self.alpha * self.penalty(x)

    def dual_bound(self, out):
        """Lower bound on the optimum from ``Theta = -grad L(out)`` (scaled to be feasible)."""
        Theta = -self.loss.gradient(out, self.Y)
        cmax = self.dual_norm(self.adjoint(Theta))
        s_max = 1.0 if cmax <= self.alpha else self.alpha / cmax
        return _best_dual(self.loss, Theta, self.Y, s_max)


class _GroupDFTProblem(_Problem):
    """Group lasso ``L(Phi b, Y) + lam * sum_g sqrt(|g|) ||b_g||`` with ``lam = alpha / sqrt(d)``.

    ``alpha`` of the base class is set to ``lam``; groups are given by ``gid`` (d,).
    """

    def __init__(self, Phi, Y, loss, lam, gid):
        super().__init__(loss, Y, lam)
        self.Phi, self.gid = Phi, gid
        self.n_groups = int(gid.max()) + 1
        self.weights = np.sqrt(np.bincount(gid, minlength=self.n_groups).astype(float))

    def apply(self, b):
        return self.Phi @ b

    def adjoint(self, G):
        return self.Phi.T @ G

    def _norms(self, b):
        return np.sqrt(np.bincount(self.gid, weights=(b * b).sum(axis=1),
                                   minlength=self.n_groups))

    def penalty(self, b):
        return float(self.weights @ self._norms(b))

    def prox(self, v, step):
        norms = self._norms(v)
        thr = step * self.alpha * self.weights
        scale = np.where(norms > thr, 1.0 - thr / np.maximum(norms, 1e-300), 0.0)
        return v * scale[self.gid][:, None]

    def dual_norm(self, G):
        return float(np.max(self._norms(G) / self.weights))


class _NuclearProblem(_Problem):
    """``L(A(W), Y) + alpha ||W||_*`` for a linear map ``A`` given by two callables."""

    def __init__(self, apply, adjoint, Y, loss, alpha):
        super().__init__(loss, Y, alpha)
        self.apply, self.adjoint = apply, adjoint

    def penalty(self, W):
        return float(np.linalg.svd(W, compute_uv=False).sum())

    def prox(self, V, step):
        P, s, Qt = np.linalg.svd(V, full_matrices=False)
        s = np.maximum(s - step * self.alpha, 0.0)
        r = int(np.count_nonzero(s))
        return (P[:, :r] * s[:r]) @ Qt[:r]

    def dual_norm(self, G):
        return float(np.linalg.norm(G, 2)) if G.size else 0.0


@dataclass
class _Solution:
    x: np.ndarray
    primal: float
    lower_bound: float
    relative_gap: float
    n_iter: int
    converged: bool
    history: list = field(default_factory=list)


def _run(problem, x0, out_shape, tol, max_iter, verbose, name):
    """Run FISTA on ``problem`` until the relative duality gap is ``<= tol``."""
    t0 = time.perf_counter()
    history = []
    best = {"dual": -np.inf}

    def check(x, out, k):
        primal = problem.objective(x, out)
        dual, s = problem.dual_bound(out)
        best["dual"] = max(best["dual"], dual)
        gap = _make_gap(primal, best["dual"], s)
        history.append((k, time.perf_counter() - t0, gap.relative_gap, primal))
        if verbose >= 2:
            print(f"[{name}] iter {k:6d}  objective {primal:.10g}  relative gap "
                  f"{gap.relative_gap:.3e}")
        return gap.relative_gap <= tol, {"gap": gap}

    lip = estimate_lipschitz(problem, problem.loss.curvature(out_shape[0]), out_shape)
    state = fista(problem, x0, step=1.0 / max(lip, 1e-300), check=check, max_iter=max_iter)
    gap = state.info["gap"]
    if not state.converged:
        from sklearn.exceptions import ConvergenceWarning

        warnings.warn(f"{name}: relative duality gap {gap.relative_gap:.3e} > tol={tol:g} "
                      f"after max_iter={max_iter} iterations", ConvergenceWarning, stacklevel=3)
    if verbose >= 1:
        print(f"[{name}] {state.n_iter} iterations, objective {gap.primal:.12g}, "
              f"relative gap {gap.relative_gap:.3e}, {time.perf_counter() - t0:.2f} s")
    return _Solution(state.x, gap.primal, gap.dual, gap.relative_gap, state.n_iter,
                     state.converged, history)


# ---------------------------------------------------------------------------------------------
# circular CNN  <->  lasso in DFT features
# ---------------------------------------------------------------------------------------------

def _dft_groups(d):
    K = (d - 1) // 2
    gid = np.empty(d, dtype=np.intp)
    gid[0] = 0
    gid[1:1 + 2 * K] = np.repeat(np.arange(1, K + 1), 2)
    if d % 2 == 0:
        gid[-1] = K + 1
    return gid


def dft_basis(d: int) -> np.ndarray:
    """Real orthonormal Fourier basis ``B`` of shape ``(d, d)`` (columns).

    Column order: DC ``1/sqrt(d)``; for ``k = 1..(d-1)//2`` the pair
    ``sqrt(2/d) cos(2 pi k t / d)``, ``-sqrt(2/d) sin(2 pi k t / d)``; for even ``d``
    the Nyquist column ``(-1)^t / sqrt(d)``.  With coefficients ``b``, ``B b`` equals
    ``F^H w_hat`` for ``w_hat = coef_to_w_hat(b)`` (``F`` the unitary DFT).
    """
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d must be a positive integer, got {d!r}")
    d = int(d)
    t = np.arange(d)
    K = (d - 1) // 2
    ang = 2.0 * np.pi * np.outer(t, np.arange(1, K + 1)) / d
    B = np.empty((d, d))
    B[:, 0] = 1.0 / np.sqrt(d)
    B[:, 1:1 + 2 * K:2] = np.sqrt(2.0 / d) * np.cos(ang)
    B[:, 2:2 + 2 * K:2] = -np.sqrt(2.0 / d) * np.sin(ang)
    if d % 2 == 0:
        B[:, -1] = (1.0 - 2.0 * (t % 2)) / np.sqrt(d)
    return B


def coef_to_w_hat(b: np.ndarray) -> np.ndarray:
    """Map real coefficients ``b`` (d,) in :func:`dft_basis` to the conjugate-symmetric
    unitary DFT ``w_hat`` (d,) complex, so that ``B b = F^H w_hat``."""
    b = np.asarray(b, dtype=np.float64).ravel()
    d = b.size
    K = (d - 1) // 2
    w_hat = np.zeros(d, dtype=np.complex128)
    w_hat[0] = b[0]
    pair = (b[1:1 + 2 * K:2] + 1j * b[2:2 + 2 * K:2]) / np.sqrt(2.0)
    w_hat[1:K + 1] = pair
    w_hat[d - K:] = np.conj(pair[::-1])
    if d % 2 == 0:
        w_hat[d // 2] = b[-1]
    return w_hat


def _balanced_factors(w_hat):
    """One-channel balanced real factors ``(u, a)`` with ``conj(F u) * F a * sqrt(d) = w_hat``
    and ``|F u| = |F a| = sqrt(|w_hat| / sqrt(d))`` (half of the phase on each)."""
    d = w_hat.size
    rho = np.sqrt(np.abs(w_hat) / np.sqrt(d))
    half = 0.5 * np.angle(w_hat)
    u_hat = rho * np.exp(-1j * half)
    a_hat = rho * np.exp(1j * half)
    K = (d - 1) // 2
    # conjugate pairs: take frequency k's half-phase, mirror it on d - k
    u_hat[d - K:] = np.conj(u_hat[1:K + 1][::-1])
    a_hat[d - K:] = np.conj(a_hat[1:K + 1][::-1])
    # self-conjugate frequencies (DC, Nyquist): real, the sign goes to a
    selfc = [0] + ([d // 2] if d % 2 == 0 else [])
    for k in selfc:
        u_hat[k] = rho[k]
        a_hat[k] = np.sign(w_hat[k].real) * rho[k]
    u = np.fft.ifft(u_hat, norm="ortho").real
    a = np.fft.ifft(a_hat, norm="ortho").real
    return u, a


def circular_cnn_forward(X, filters, output_weights) -> np.ndarray:
    """Outputs ``f(x) = sum_j a_j^T (x (*) u_j)`` of a linear circular CNN, shape ``(n,)``.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    filters : ndarray of shape (m, d)
        Filters ``u_j`` (a 1-D array is one filter).
    output_weights : ndarray of shape (m, d)
        Output weights ``a_j``.
    """
    X = check_X(X).astype(np.float64, copy=False)
    U = _check_factor(filters, "filters", "(m, d)")
    A = _check_factor(output_weights, "output_weights", "(m, d)")
    d = X.shape[1]
    if U.shape != A.shape or U.shape[1] != d:
        raise ValueError(f"filters and output_weights must both have shape (m, {d}) for X with "
                         f"{d} features; got {U.shape} and {A.shape}")
    H = np.fft.ifft(np.fft.fft(X)[:, None, :] * np.fft.fft(U)[None], axis=-1).real  # (n, m, d)
    return np.einsum("nmd,md->n", H, A)


def circular_cnn_objective(X, y, alpha, filters, output_weights, *, loss="squared") -> float:
    """``L(f(X), y) + alpha/2 (||U||_F^2 + ||A||_F^2)`` of a linear circular CNN."""
    X = check_X(X)
    y = check_y(y, X.shape[0])
    alpha = check_alpha(alpha)
    lo = get_loss(loss)
    Y, _ = encode_targets(y, lo.name)
    f = circular_cnn_forward(X, filters, output_weights)[:, None]
    U, A = np.asarray(filters, float), np.asarray(output_weights, float)
    return lo.value(f, Y) + 0.5 * alpha * float((U * U).sum() + (A * A).sum())


@dataclass
class CircularCNNResult:
    """Globally optimal two-layer linear circular CNN (see :func:`circular_cnn`).

    Attributes
    ----------
    w_hat : ndarray of shape (d,), complex
        Unitary DFT of the end-to-end weights (conjugate symmetric).
    w : ndarray of shape (d,)
        End-to-end weights: ``f(x) = x^T w``.
    coef : ndarray of shape (d,)
        The same in the real basis :func:`dft_basis` (``w = B coef``).
    filters, output_weights : ndarray of shape (1, d)
        Balanced one-channel factors ``u``, ``a`` with ``f(x) = a^T (x (*) u)``.
    objective : float
        Network objective ``L + alpha/2 (||u||^2 + ||a||^2)`` at the recovered factors.
    lasso_objective : float
        Objective of the DFT lasso at ``coef`` (equal to ``objective`` up to rounding).
    lower_bound : float
        Certified lower bound on the optimum (dual value).
    relative_gap : float
        ``(lasso_objective - lower_bound) / |lasso_objective|``.
    """

    w_hat: np.ndarray
    w: np.ndarray
    coef: np.ndarray
    filters: np.ndarray
    output_weights: np.ndarray
    alpha: float
    loss: str
    objective: float
    lasso_objective: float
    lower_bound: float
    relative_gap: float
    n_iter: int
    converged: bool
    classes: np.ndarray | None = None
    history: list = field(default_factory=list, repr=False)

    def decision_function(self, X) -> np.ndarray:
        """``X @ w``, shape ``(n,)``."""
        X = check_X(X)
        if X.shape[1] != self.w.size:
            raise ValueError(f"X has {X.shape[1]} features, the network expects {self.w.size}")
        return X @ self.w

    def forward(self, X) -> np.ndarray:
        """Outputs of the recovered network (same as :meth:`decision_function`)."""
        return circular_cnn_forward(X, self.filters, self.output_weights)

    def predict(self, X) -> np.ndarray:
        """Targets (regression) or class labels (classification)."""
        return decode_outputs(self.decision_function(X)[:, None], self.classes)


def _circular_problem(X, Y, lo, alpha):
    d = X.shape[1]
    B = dft_basis(d)
    return _GroupDFTProblem(X @ B, Y, lo, alpha / np.sqrt(d), _dft_groups(d)), B


def circular_cnn(X, y, alpha, *, loss="squared", tol=1e-8, max_iter=20000,
                 verbose=0) -> CircularCNNResult:
    """Train a two-layer linear circular CNN to global optimality via the DFT lasso.

    Solves ``min_{u_j, a_j} L(sum_j a_j^T (x (*) u_j), y) + alpha/2 sum_j (||u_j||^2 + ||a_j||^2)``
    through its equivalent convex program
    ``min_{w_hat} L(X F^H w_hat, y) + (alpha / sqrt(d)) ||w_hat||_1`` (see module docstring).

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Signals of length ``d`` (circular convolution wraps around).
    y : ndarray of shape (n,)
        Targets (squared loss) or two class labels (``loss='logistic'``, or squared
        loss on non-numeric labels, mapped to -1/+1).
    alpha : float
        Weight decay, > 0.
    loss : {"squared", "logistic"}, default="squared"
    tol : float, default=1e-8
        Target relative duality gap of the lasso.
    max_iter : int, default=20000
    verbose : int, default=0

    Returns
    -------
    CircularCNNResult
    """
    X, Y, classes, alpha, lo, tol, max_iter = _check_common(X, y, alpha, loss, tol, max_iter,
                                                            multi_output=False)
    n, d = X.shape
    problem, B = _circular_problem(X, Y, lo, alpha)
    sol = _run(problem, np.zeros((d, 1)), (n, 1), tol, max_iter, verbose, "circular_cnn")
    coef = sol.x[:, 0]
    w_hat = coef_to_w_hat(coef)
    w = B @ coef
    u, a = _balanced_factors(w_hat)
    U, A = u[None, :], a[None, :]
    f = circular_cnn_forward(X, U, A)[:, None]
    objective = lo.value(f, Y) + 0.5 * alpha * float(u @ u + a @ a)
    return CircularCNNResult(w_hat=w_hat, w=w, coef=coef, filters=U, output_weights=A,
                             alpha=alpha, loss=lo.name, objective=objective,
                             lasso_objective=sol.primal, lower_bound=sol.lower_bound,
                             relative_gap=sol.relative_gap, n_iter=sol.n_iter,
                             converged=sol.converged, classes=classes, history=sol.history)


# ---------------------------------------------------------------------------------------------
# nuclear-norm programs: fully connected linear network and linear CNN
# ---------------------------------------------------------------------------------------------

def _factor_svd(W, rtol=1e-14):
    """``(L, R)`` with ``L @ R = W`` (to ``rtol``) and ``||L||^2 = ||R||^2 = ||W||_*``."""
    P, s, Qt = np.linalg.svd(W, full_matrices=False)
    keep = s > rtol * (s[0] if s.size else 0.0)
    r = np.sqrt(s[keep])
    return P[:, keep] * r, r[:, None] * Qt[keep]


def linear_network_objective(X, y, alpha, W1, W2, *, loss="squared") -> float:
    """``L(X W1 W2, Y) + alpha/2 (||W1||_F^2 + ||W2||_F^2)``; ``W1`` (d, m), ``W2`` (m, c)."""
    X = check_X(X)
    y = check_y(y, X.shape[0])
    alpha = check_alpha(alpha)
    lo = get_loss(loss)
    Y, _ = encode_targets(y, lo.name)
    W1 = np.asarray(W1, float)
    W2 = np.asarray(W2, float).reshape(W1.shape[1], -1)
    return lo.value(X @ W1 @ W2, Y) + 0.5 * alpha * float((W1 * W1).sum() + (W2 * W2).sum())


@dataclass
class LinearNetworkResult:
    """Globally optimal two-layer linear network ``f(X) = X W1 W2`` (see :func:`linear_network`).

    Attributes
    ----------
    W : ndarray of shape (d, c)
        End-to-end weights, solution of the nuclear-norm program.
    W1 : ndarray of shape (d, r), W2 : ndarray of shape (r, c)
        Balanced factors (``r = rank W``), ``W1 W2 = W``.
    objective : float
        Network objective at ``(W1, W2)``.
    convex_objective, lower_bound, relative_gap : float
        Nuclear-norm objective at ``W``, certified lower bound, relative duality gap.
    """

    W: np.ndarray
    W1: np.ndarray
    W2: np.ndarray
    alpha: float
    loss: str
    objective: float
    convex_objective: float
    lower_bound: float
    relative_gap: float
    n_iter: int
    converged: bool
    classes: np.ndarray | None = None
    history: list = field(default_factory=list, repr=False)

    def decision_function(self, X) -> np.ndarray:
        """``X W``, shape ``(n, c)`` (``(n,)`` when ``c = 1``)."""
        X = check_X(X)
        if X.shape[1] != self.W.shape[0]:
            raise ValueError(f"X has {X.shape[1]} features, the network expects "
                             f"{self.W.shape[0]}")
        Z = X @ self.W
        return Z[:, 0] if Z.shape[1] == 1 else Z

    def predict(self, X) -> np.ndarray:
        """Targets (regression), or class labels (argmax / sign of the outputs)."""
        Z = self.decision_function(X)
        return decode_outputs(Z[:, None] if Z.ndim == 1 else Z, self.classes)


def _fc_problem(X, Y, lo, alpha):
    return _NuclearProblem(lambda W: X @ W, lambda G: X.T @ G, Y, lo, alpha)


def linear_network(X, Y, alpha, *, loss="squared", tol=1e-8, max_iter=20000,
                   verbose=0) -> LinearNetworkResult:
    """Train a two-layer linear network ``f(X) = X W1 W2`` to global optimality.

    Solves ``min_{W1, W2} L(X W1 W2, Y) + alpha/2 (||W1||_F^2 + ||W2||_F^2)`` through
    ``min_W L(X W, Y) + alpha ||W||_*`` (accelerated proximal gradient with
    singular-value thresholding; stop on the relative duality gap, spectral-norm dual).

    Parameters
    ----------
    X : ndarray of shape (n, d)
    Y : ndarray of shape (n,) or (n, c)
        Targets (squared loss), or class labels (``logistic``: two classes;
        ``cross_entropy``: one-hot outputs).
    alpha : float
        Weight decay, > 0.
    loss : {"squared", "logistic", "cross_entropy"}, default="squared"
    tol : float, default=1e-8
        Target relative duality gap.
    max_iter : int, default=20000
    verbose : int, default=0

    Returns
    -------
    LinearNetworkResult
    """
    X, Yenc, classes, alpha, lo, tol, max_iter = _check_common(X, Y, alpha, loss, tol, max_iter,
                                                               multi_output=True)
    n, d = X.shape
    c = Yenc.shape[1]
    problem = _fc_problem(X, Yenc, lo, alpha)
    sol = _run(problem, np.zeros((d, c)), (n, c), tol, max_iter, verbose, "linear_network")
    W1, W2 = _factor_svd(sol.x)
    objective = lo.value(X @ W1 @ W2, Yenc) + 0.5 * alpha * float((W1 * W1).sum()
                                                                + (W2 * W2).sum())
    return LinearNetworkResult(W=sol.x, W1=W1, W2=W2, alpha=alpha, loss=lo.name,
                               objective=objective, convex_objective=sol.primal,
                               lower_bound=sol.lower_bound, relative_gap=sol.relative_gap,
                               n_iter=sol.n_iter, converged=sol.converged, classes=classes,
                               history=sol.history)


def _pair(v, name):
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        v = (int(v), int(v))
    try:
        v = tuple(int(t) for t in v)
    except TypeError:
        raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}") from None
    if len(v) != 2 or min(v) < 1:
        raise ValueError(f"{name} must be a positive int or a pair of positive ints, got {v!r}")
    return v


def extract_patches(X, patch_size, *, stride=1, image_shape=None) -> np.ndarray:
    """Sliding-window patches of signals or images, shape ``(n, K, h)``.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        1-D signals (``image_shape=None``) or flattened images.
    patch_size : int, or pair of ints for images
        Window length (signals) or ``(height, width)`` (images).
    stride : int, or pair of ints for images, default=1
    image_shape : None, ``(H, W)`` or ``(C, H, W)``, default=None
        Shape of one image (row-major, channels first); ``prod(image_shape) = d``.

    Returns
    -------
    ndarray of shape (n, K, h)
        Patch ``k`` of sample ``i`` is ``[i, k]``; patches are ordered row by row and
        flattened channel-first (``h = C * height * width``).
    """
    X = check_X(X).astype(np.float64, copy=False)
    n, d = X.shape
    win = np.lib.stride_tricks.sliding_window_view
    if image_shape is None:
        if isinstance(patch_size, bool) or not isinstance(patch_size, (int, np.integer)) \
                or not 1 <= patch_size <= d:
            raise ValueError(f"patch_size must be an int between 1 and d={d} for 1-D signals, "
                             f"got {patch_size!r}")
        if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
            raise ValueError(f"stride must be a positive int for 1-D signals, got {stride!r}")
        return np.ascontiguousarray(win(X, int(patch_size), axis=1)[:, ::int(stride)])
    try:
        shape = tuple(int(s) for s in image_shape)
    except TypeError:
        raise TypeError(f"image_shape must be (H, W) or (C, H, W), got {image_shape!r}") from None
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"image_shape must be (H, W) or (C, H, W) of positive ints, "
                         f"got {image_shape!r}")
    if int(np.prod(shape)) != d:
        raise ValueError(f"image_shape {shape} has {int(np.prod(shape))} pixels but X has "
                         f"{d} features")
    C, H, W = (1,) + shape if len(shape) == 2 else shape
    ph, pw = _pair(patch_size, "patch_size")
    sh, sw = _pair(stride, "stride")
    if ph > H or pw > W:
        raise ValueError(f"patch_size {(ph, pw)} is larger than the image ({H}, {W})")
    imgs = X.reshape(n, C, H, W)
    P = win(imgs, (ph, pw), axis=(2, 3))[:, :, ::sh, ::sw]      # (n, C, Kh, Kw, ph, pw)
    Kh, Kw = P.shape[2], P.shape[3]
    return np.ascontiguousarray(P.transpose(0, 2, 3, 1, 4, 5).reshape(n, Kh * Kw, C * ph * pw))


def _check_patches(P, name="X"):
    P = np.asarray(P)
    if P.ndim != 3:
        raise ValueError(f"{name} must be a patch array of shape (n, K, h), got shape {P.shape}")
    flat = check_X(P.reshape(P.shape[0], -1), name=name)
    return flat.astype(np.float64, copy=False).reshape(P.shape)


def linear_cnn_forward(patches, filters, output_weights) -> np.ndarray:
    """``f(x) = sum_j sum_k (x_k^T u_j) a_jk``, shape ``(n,)``.

    Parameters
    ----------
    patches : ndarray of shape (n, K, h)
    filters : ndarray of shape (m, h)
    output_weights : ndarray of shape (m, K)
    """
    P = _check_patches(patches, "patches")
    U = _check_factor(filters, "filters", "(m, h)")
    A = _check_factor(output_weights, "output_weights", "(m, K)")
    n, K, h = P.shape
    if U.shape[1] != h or A.shape[1] != K or U.shape[0] != A.shape[0]:
        raise ValueError(f"filters must have shape (m, {h}) and output_weights (m, {K}); "
                         f"got {U.shape} and {A.shape}")
    return np.einsum("nkh,mh,mk->n", P, U, A, optimize=True)


def linear_cnn_objective(patches, y, alpha, filters, output_weights, *, loss="squared") -> float:
    """``L(f, y) + alpha/2 (||U||_F^2 + ||A||_F^2)`` of a linear CNN on ``patches`` (n, K, h)."""
    f = linear_cnn_forward(patches, filters, output_weights)
    y = check_y(y, f.shape[0])
    alpha = check_alpha(alpha)
    lo = get_loss(loss)
    Y, _ = encode_targets(y, lo.name)
    U, A = np.asarray(filters, float), np.asarray(output_weights, float)
    return lo.value(f[:, None], Y) + 0.5 * alpha * float((U * U).sum() + (A * A).sum())


@dataclass
class LinearCNNResult:
    """Globally optimal two-layer linear CNN with per-patch output weights (:func:`linear_cnn`).

    Attributes
    ----------
    Z : ndarray of shape (h, K)
        End-to-end weights: ``f(x) = sum_k x_k^T Z[:, k]``.
    filters : ndarray of shape (r, h), output_weights : ndarray of shape (r, K)
        Balanced factors ``u_j = sqrt(s_j) p_j``, ``a_j = sqrt(s_j) q_j``
        (``Z = P S Q^T``, ``r = rank Z``).
    objective : float
        Network objective at the factors.
    convex_objective, lower_bound, relative_gap : float
        Nuclear-norm objective at ``Z``, certified lower bound, relative duality gap.
    patch_size, stride, image_shape :
        The patch extractor applied to raw inputs (``None`` if patches were given).
    """

    Z: np.ndarray
    filters: np.ndarray
    output_weights: np.ndarray
    alpha: float
    loss: str
    objective: float
    convex_objective: float
    lower_bound: float
    relative_gap: float
    n_iter: int
    converged: bool
    patch_size: object = None
    stride: object = 1
    image_shape: tuple | None = None
    classes: np.ndarray | None = None
    history: list = field(default_factory=list, repr=False)

    def patches(self, X) -> np.ndarray:
        """Patches ``(n, K, h)`` of ``X`` (raw inputs, or already a patch array)."""
        if np.ndim(X) == 3:
            P = _check_patches(X)
        elif self.patch_size is None:
            raise ValueError("this network was trained on patch arrays; pass X of shape "
                             "(n, K, h)")
        else:
            P = extract_patches(X, self.patch_size, stride=self.stride,
                                image_shape=self.image_shape)
        if P.shape[1:] != (self.Z.shape[1], self.Z.shape[0]):
            raise ValueError(f"X gives patches of shape {P.shape[1:]}, the network expects "
                             f"{(self.Z.shape[1], self.Z.shape[0])}")
        return P

    def decision_function(self, X) -> np.ndarray:
        """``sum_k x_k^T Z[:, k]``, shape ``(n,)``."""
        return np.einsum("nkh,hk->n", self.patches(X), self.Z)

    def predict(self, X) -> np.ndarray:
        """Targets (regression) or class labels (classification)."""
        return decode_outputs(self.decision_function(X)[:, None], self.classes)


def _cnn_problem(P, Y, lo, alpha):
    return _NuclearProblem(lambda Z: np.einsum("nkh,hk->n", P, Z)[:, None],
                           lambda G: np.einsum("nkh,n->hk", P, G[:, 0]), Y, lo, alpha)


def _patches_from(X, patch_size, stride, image_shape):
    if np.ndim(X) == 3:
        if patch_size is not None or image_shape is not None:
            raise ValueError("X is already a patch array (n, K, h): leave patch_size and "
                             "image_shape at None")
        return _check_patches(X)
    if patch_size is None:
        raise ValueError("patch_size is required when X is 2-D (n, d); or pass X as a patch "
                         "array of shape (n, K, h)")
    return extract_patches(X, patch_size, stride=stride, image_shape=image_shape)


def linear_cnn(X, y, alpha, *, patch_size=None, stride=1, image_shape=None, loss="squared",
               tol=1e-8, max_iter=20000, verbose=0) -> LinearCNNResult:
    """Train a two-layer linear CNN with per-patch output weights to global optimality.

    Solves ``min_{u_j, a_j} L(sum_j sum_k (x_k^T u_j) a_jk, y) + alpha/2 sum_j (||u_j||^2 +
    ||a_j||^2)`` through ``min_Z L(sum_k X_k Z[:, k], y) + alpha ||Z||_*``.

    Parameters
    ----------
    X : ndarray of shape (n, K, h), or (n, d) with ``patch_size``
        Patch array, or raw signals / flattened images cut by :func:`extract_patches`.
    y : ndarray of shape (n,)
        Targets (squared loss) or two class labels.
    alpha : float
        Weight decay, > 0.
    patch_size, stride, image_shape :
        Passed to :func:`extract_patches` when ``X`` is 2-D.
    loss : {"squared", "logistic"}, default="squared"
    tol : float, default=1e-8
        Target relative duality gap.
    max_iter : int, default=20000
    verbose : int, default=0

    Returns
    -------
    LinearCNNResult
    """
    P = _patches_from(X, patch_size, stride, image_shape)
    n, K, h = P.shape
    _, Y, classes, alpha, lo, tol, max_iter = _check_common(
        P.reshape(n, -1), y, alpha, loss, tol, max_iter, multi_output=False)
    problem = _cnn_problem(P, Y, lo, alpha)
    sol = _run(problem, np.zeros((h, K)), (n, 1), tol, max_iter, verbose, "linear_cnn")
    L, R = _factor_svd(sol.x)
    U, A = L.T, R
    f = np.einsum("nkh,mh,mk->n", P, U, A, optimize=True)[:, None]
    objective = lo.value(f, Y) + 0.5 * alpha * float((U * U).sum() + (A * A).sum())
    return LinearCNNResult(Z=sol.x, filters=U, output_weights=A, alpha=alpha, loss=lo.name,
                           objective=objective, convex_objective=sol.primal,
                           lower_bound=sol.lower_bound, relative_gap=sol.relative_gap,
                           n_iter=sol.n_iter, converged=sol.converged,
                           patch_size=None if np.ndim(X) == 3 else patch_size,
                           stride=stride, image_shape=image_shape, classes=classes,
                           history=sol.history)


# ---------------------------------------------------------------------------------------------
# smallest weight decay with a zero network
# ---------------------------------------------------------------------------------------------

def alpha_max(X, y, *, model="circular_cnn", loss="squared", patch_size=None, stride=1,
              image_shape=None) -> float:
    """Smallest ``alpha`` for which the zero network is optimal (closed form).

    ``alpha_max = D(A^T grad L(0))`` with ``D`` the dual norm of the program's
    penalty: ``sqrt(d) * max_k |w_hat-gradient_k|`` (group-``l_inf`` in the DFT basis)
    for ``model="circular_cnn"``, the spectral norm for ``"linear_network"`` and
    ``"linear_cnn"``.  For ``alpha >= alpha_max`` the solution is exactly zero.

    Parameters
    ----------
    X, y, loss, patch_size, stride, image_shape :
        As in :func:`circular_cnn`, :func:`linear_network` or :func:`linear_cnn`.
    model : {"circular_cnn", "linear_network", "linear_cnn"}, default="circular_cnn"
    """
    models = ("circular_cnn", "linear_network", "linear_cnn")
    if model not in models:
        raise ValueError(f"model must be one of {models}, got {model!r}")
    if model == "linear_cnn":
        P = _patches_from(X, patch_size, stride, image_shape)
        Xf = P.reshape(P.shape[0], -1)
    else:
        Xf = X
    Xf, Y, _, _, lo, _, _ = _check_common(Xf, y, 1.0, loss, 1.0, 1,
                                          multi_output=model == "linear_network")
    if model == "circular_cnn":
        problem, _ = _circular_problem(Xf, Y, lo, 1.0)
        scale = np.sqrt(Xf.shape[1])
    elif model == "linear_network":
        problem, scale = _fc_problem(Xf, Y, lo, 1.0), 1.0
    else:
        problem, scale = _cnn_problem(P, Y, lo, 1.0), 1.0
    Theta = -lo.gradient(np.zeros_like(Y), Y)
    return float(scale * problem.dual_norm(problem.adjoint(Theta)))
