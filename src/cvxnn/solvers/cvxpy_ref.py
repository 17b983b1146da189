"""Reference solvers of the convex programs through cvxpy (interior point, Clarabel).

These solvers are slow but accurate (relative error ~1e-8 with the default
tolerances).  They exist to validate the fast first-order solvers on small
problems and are not meant for production use.  cvxpy is an optional
dependency (``pip install cvxnn[cvx]``) and is imported lazily.

Shapes
------
* ``Xa``: data of shape ``(n, d)`` (with the ones column when a bias is used);
* ``D``: activation masks of shape ``(n, P)`` (bool or 0/1), ``S = 2 D - 1``;
* ``Y``: encoded targets of shape ``(n, c)`` (see :func:`cvxnn._data.encode_targets`);
* ``U``, ``V``, ``W``: convex weights of shape ``(d, P, c)``.

Programs
--------
Gated ReLU (C-GReLU, spec section 5.1 and 3.2)::

    min_U  L(Z, Y) + alpha * sum_{i,k} ||U[:, i, k]||_2,
    Z[:, k] = sum_i D_i Xa U[:, i, k].

ReLU (C-ReLU, spec sections 2.2 and 3.2)::

    min_{V,W}  L(Z, Y) + alpha * sum_{i,k} (||V[:, i, k]||_2 + ||W[:, i, k]||_2),
    Z[:, k] = sum_i D_i Xa (V - W)[:, i, k],
    s.t.  S[:, i] * (Xa V[:, i, k]) >= 0,  S[:, i] * (Xa W[:, i, k]) >= 0.

Dual sign convention of the cone multipliers
--------------------------------------------
:func:`solve_relu_cvxpy` returns the multipliers ``A_V, A_W >= 0`` of shape
``(n, P, c)``, in the units of the objective above (loss as a *mean*, not a
sum).  With ``Theta = -grad L(Z*)`` the KKT stationarity conditions (spec 2.4)
read, for every block ``(i, k)``::

    Xa^T (D_i Theta_k) + Xa^T (S_i * A_V[:, i, k]) = alpha * V_ik / ||V_ik||   (V_ik != 0)
   -Xa^T (D_i Theta_k) + Xa^T (S_i * A_W[:, i, k]) = alpha * W_ik / ||W_ik||   (W_ik != 0)

and the left-hand sides have norm ``<= alpha`` for zero blocks;
complementary slackness is ``A_V * S * (Xa V) = 0`` (same for ``W``).  These
are exactly cvxpy's dual values of the constraints ``S * (Xa V_k) >= 0``, which
cvxpy defines through the Lagrangian ``f(x) - <A, g(x)>`` for ``g(x) >= 0``;
no rescaling is needed because the objective handed to cvxpy is the objective
above, unscaled.  The convention is checked in ``tests/test_cvxpy_ref.py``.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from ..losses import Loss, get_loss
from ..operators import forward

__all__ = ["solve_gated_cvxpy", "solve_relu_cvxpy", "max_constraint_violation"]

#: Clarabel settings used unless overridden through ``**solver_options``.
_CLARABEL_DEFAULTS = {
    "tol_gap_abs": 1e-11,
    "tol_gap_rel": 1e-11,
    "tol_feas": 1e-8,
    "tol_ktratio": 1e-8,
    "max_iter": 500,
}


def _import_cvxpy():
    try:
        import cvxpy as cp
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the cvxpy reference solvers need cvxpy and clarabel, which are optional "
            "dependencies of cvxnn; install them with `pip install cvxnn[cvx]`"
        ) from None
    return cp


def _check_inputs(Xa, D, Y, alpha, loss):
    Xa = np.ascontiguousarray(np.asarray(Xa, dtype=np.float64))
    if Xa.ndim != 2:
        raise ValueError(f"Xa must be 2-D of shape (n, d), got shape {Xa.shape}")
    n, _ = Xa.shape
    D = np.asarray(D)
    if D.ndim != 2 or D.shape[0] != n:
        raise ValueError(f"D must have shape (n, P) = ({n}, P), got {D.shape}")
    D = D.astype(bool)
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[0] != n:
        raise ValueError(f"Y must have shape (n, c) = ({n}, c), got {Y.shape}")
    alpha = float(alpha)
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    loss_obj = get_loss(loss)
    if loss_obj.name == "logistic" and Y.shape[1] != 1:
        raise ValueError(f"the logistic loss needs Y of shape (n, 1), got {Y.shape}")
    return Xa, D, Y, alpha, loss_obj


def _cvx_loss(cp, loss: Loss, Zcols, Y):
    """cvxpy expression of ``loss`` for the prediction columns ``Zcols`` (list of (n,))."""
    n, c = Y.shape
    if loss.name == "squared":
        return sum(cp.sum_squares(Zcols[k] - Y[:, k]) for k in range(c)) / (2.0 * n)
    if loss.name == "logistic":
        return cp.sum(cp.logistic(cp.multiply(-Y[:, 0], Zcols[0]))) / n
    if loss.name == "cross_entropy":
        Zt = cp.vstack(Zcols)  # (c, n)
        return (cp.sum(cp.log_sum_exp(Zt, axis=0)) - cp.sum(cp.multiply(Y.T, Zt))) / n
    raise ValueError(f"loss {loss.name!r} is not supported by the cvxpy reference solver")


def _solve(cp, prob, solver, verbose, solver_options):
    opts = dict(solver_options)
    if str(solver).upper() == "CLARABEL":
        opts = {**_CLARABEL_DEFAULTS, **opts}
    try:
        with warnings.catch_warnings():
            # cvxpy warns itself on inaccurate solutions; we emit our own warning below
            warnings.filterwarnings("ignore", message="Solution may be inaccurate")
            prob.solve(solver=solver, verbose=verbose, **opts)
    except cp.error.SolverError as exc:
        raise RuntimeError(f"cvxpy solver {solver} failed: {exc}") from exc
    status = prob.status
    if status == cp.OPTIMAL_INACCURATE:
        warnings.warn(
            f"cvxpy solver {solver} returned status {status!r}; the reference "
            "solution may be less accurate than requested",
            RuntimeWarning,
            stacklevel=3,
        )
    elif status != cp.OPTIMAL:
        raise RuntimeError(f"cvxpy solver {solver} failed with status {status!r}")
    return status


def _group_norm_sum(U: np.ndarray) -> float:
    return float(np.linalg.norm(U, axis=0).sum())


def solve_gated_cvxpy(Xa, D, Y, alpha, loss, *, solver="CLARABEL", verbose=False,
                      **solver_options) -> dict:
    """Solve the gated-ReLU convex program (C-GReLU) with cvxpy.

    Parameters
    ----------
    Xa : ndarray of shape (n, d)
        Data, already augmented with a ones column if a bias is used.
    D : ndarray of shape (n, P), bool
        Activation masks of the gates.
    Y : ndarray of shape (n, c)
        Encoded targets (real for ``squared``, ``(n, 1)`` in {-1, +1} for
        ``logistic``, one-hot for ``cross_entropy``).
    alpha : float
        Group-lasso regularisation strength (>= 0).
    loss : str or Loss
        ``'squared'``, ``'logistic'`` or ``'cross_entropy'`` (or an instance).
    solver : str, default "CLARABEL"
        cvxpy solver name.
    verbose : bool, default False
        Print the solver log.
    **solver_options
        Passed to :meth:`cvxpy.Problem.solve`; for Clarabel they override
        tight defaults (``tol_gap_abs = tol_gap_rel = 1e-11``,
        ``tol_feas = tol_ktratio = 1e-8``, ``max_iter = 500``).

    Returns
    -------
    dict
        ``U``: ndarray (d, P, c) float64; ``objective``: float, the objective
        recomputed in numpy at ``U``; ``status``: cvxpy status string;
        ``solve_time``: wall-clock seconds (formulation + solve).

    Raises
    ------
    RuntimeError
        If the solver fails (status other than optimal / optimal_inaccurate;
        the latter only emits a :class:`RuntimeWarning`).
    """
    cp = _import_cvxpy()
    Xa, D, Y, alpha, loss_obj = _check_inputs(Xa, D, Y, alpha, loss)
    n, d = Xa.shape
    P = D.shape[1]
    c = Y.shape[1]
    Df = D.astype(np.float64)

    t0 = time.perf_counter()
    Us = [cp.Variable((d, P), name=f"U{k}") for k in range(c)]
    Zcols = [cp.sum(cp.multiply(Df, Xa @ Uk), axis=1) for Uk in Us]
    obj = _cvx_loss(cp, loss_obj, Zcols, Y)
    if alpha > 0:
        obj = obj + alpha * sum(cp.sum(cp.norm(Uk, 2, axis=0)) for Uk in Us)
    prob = cp.Problem(cp.Minimize(obj))
    status = _solve(cp, prob, solver, verbose, solver_options)
    solve_time = time.perf_counter() - t0

    U = np.stack([np.asarray(Uk.value, dtype=np.float64) for Uk in Us], axis=2)
    Z = forward(Xa, D, U)
    objective = loss_obj.value(Z, Y) + alpha * _group_norm_sum(U)
    return {"U": U, "objective": float(objective), "status": status,
            "solve_time": solve_time}


def solve_relu_cvxpy(Xa, D, Y, alpha, loss, *, solver="CLARABEL", verbose=False,
                     **solver_options) -> dict:
    """Solve the cone-constrained ReLU convex program (C-ReLU) with cvxpy.

    Parameters
    ----------
    Xa : ndarray of shape (n, d)
        Data, already augmented with a ones column if a bias is used.
    D : ndarray of shape (n, P), bool
        Activation patterns; ``S = 2 D - 1`` defines the cones.
    Y : ndarray of shape (n, c)
        Encoded targets.
    alpha : float
        Regularisation strength (>= 0).
    loss : str or Loss
        ``'squared'``, ``'logistic'`` or ``'cross_entropy'`` (or an instance).
    solver : str, default "CLARABEL"
        cvxpy solver name.
    verbose : bool, default False
        Print the solver log.
    **solver_options
        Passed to :meth:`cvxpy.Problem.solve` (see :func:`solve_gated_cvxpy`).

    Returns
    -------
    dict
        ``V``, ``W``: ndarrays (d, P, c); ``objective``: float recomputed in
        numpy; ``status``; ``solve_time`` (wall seconds); ``A_V``, ``A_W``:
        ndarrays (n, P, c) >= 0, the multipliers of the cone constraints
        ``S * (Xa V) >= 0`` and ``S * (Xa W) >= 0``, with the sign convention
        of the module docstring (``Theta = -grad L(Z)``)::

            Xa^T (D_i Theta_k) + Xa^T (S_i * A_V[:, i, k]) = alpha V_ik / ||V_ik||
           -Xa^T (D_i Theta_k) + Xa^T (S_i * A_W[:, i, k]) = alpha W_ik / ||W_ik||

    Raises
    ------
    RuntimeError
        If the solver fails.
    """
    cp = _import_cvxpy()
    Xa, D, Y, alpha, loss_obj = _check_inputs(Xa, D, Y, alpha, loss)
    n, d = Xa.shape
    P = D.shape[1]
    c = Y.shape[1]
    Df = D.astype(np.float64)
    S = 2.0 * Df - 1.0

    t0 = time.perf_counter()
    Vs = [cp.Variable((d, P), name=f"V{k}") for k in range(c)]
    Ws = [cp.Variable((d, P), name=f"W{k}") for k in range(c)]
    Zcols = [cp.sum(cp.multiply(Df, Xa @ (Vk - Wk)), axis=1) for Vk, Wk in zip(Vs, Ws)]
    obj = _cvx_loss(cp, loss_obj, Zcols, Y)
    if alpha > 0:
        obj = obj + alpha * sum(cp.sum(cp.norm(Vk, 2, axis=0)) + cp.sum(cp.norm(Wk, 2, axis=0))
                                for Vk, Wk in zip(Vs, Ws))
    cons_V = [cp.multiply(S, Xa @ Vk) >= 0 for Vk in Vs]
    cons_W = [cp.multiply(S, Xa @ Wk) >= 0 for Wk in Ws]
    prob = cp.Problem(cp.Minimize(obj), cons_V + cons_W)
    status = _solve(cp, prob, solver, verbose, solver_options)
    solve_time = time.perf_counter() - t0

    V = np.stack([np.asarray(v.value, dtype=np.float64) for v in Vs], axis=2)
    W = np.stack([np.asarray(w.value, dtype=np.float64) for w in Ws], axis=2)

    def _duals(cons):
        vals = []
        for con in cons:
            dv = con.dual_value
            if dv is None:  # pragma: no cover - solver without duals
                raise RuntimeError(f"solver {solver} returned no dual values")
            vals.append(np.reshape(np.asarray(dv, dtype=np.float64), (n, P)))
        return np.stack(vals, axis=2)

    A_V = _duals(cons_V)
    A_W = _duals(cons_W)
    Z = forward(Xa, D, V - W)
    objective = loss_obj.value(Z, Y) + alpha * (_group_norm_sum(V) + _group_norm_sum(W))
    return {"V": V, "W": W, "objective": float(objective), "status": status,
            "solve_time": solve_time, "A_V": A_V, "A_W": A_W}


def max_constraint_violation(Xa, D, V) -> float:
    """Return ``max (-(S * (Xa V)))_+`` over all entries, ``S = 2 D - 1``.

    Parameters
    ----------
    Xa : ndarray of shape (n, d)
    D : ndarray of shape (n, P)
    V : ndarray of shape (d, P, c) or (d, P)

    Returns
    -------
    float
        ``0.0`` when every block ``V[:, i, k]`` lies in its cone ``K_i``.
    """
    Xa = np.asarray(Xa, dtype=np.float64)
    D = np.asarray(D).astype(bool)
    V = np.asarray(V, dtype=np.float64)
    if V.ndim == 2:
        V = V[:, :, None]
    d, P, c = V.shape
    S = np.where(D, 1.0, -1.0)
    SXV = (Xa @ V.reshape(d, P * c)).reshape(-1, P, c) * S[:, :, None]
    return float(max(0.0, -SXV.min())) if SXV.size else 0.0
