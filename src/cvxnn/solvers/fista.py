"""Accelerated proximal gradient (FISTA) with backtracking, step growth and restart.

Solves ``min_x f(A x) + g(x)`` for a problem object providing

* ``apply(x)``: the linear map ``A x`` (the "outputs");
* ``adjoint(G)``: ``A^T G``;
* ``smooth_value(out)`` and ``smooth_value_and_gradient(out)``: ``f`` on outputs;
* ``prox(x, step)`` and ``penalty(x)``: the non-smooth part ``g``.

Because ``A`` is linear the outputs of the extrapolated point are a linear
combination of stored outputs, so each iteration costs one ``apply`` per
backtracking trial and one ``adjoint``.  Momentum uses the standard
``t+ = (1 + sqrt(1 + 4 t^2)) / 2``; restart is the gradient-mapping rule of
O'Donoghue and Candes; the step grows by ``growth`` when the local curvature
allows (Lassplore-type test).  Stopping is decided by a user ``check``
callable (typically a duality gap), evaluated every ``check_every`` iterations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["fista", "FistaState", "estimate_lipschitz", "inner"]


def inner(a, b) -> float:
    """``<a, b>`` in double precision for numpy arrays or torch tensors."""
    if isinstance(a, np.ndarray):
        if a.dtype != np.float64:
            return float(np.dot(a.ravel().astype(np.float64), b.ravel().astype(np.float64)))
        return float(np.vdot(a, b))
    return float((a.double() * b.double()).sum())  # torch tensors


def _eps(x) -> float:
    """Machine epsilon of the iterate's floating type (numpy or torch)."""
    if isinstance(x, np.ndarray):
        return float(np.finfo(x.dtype).eps) if x.dtype.kind == "f" else float(np.finfo(float).eps)
    import torch

    return float(torch.finfo(x.dtype).eps)


@dataclass
class FistaState:
    x: np.ndarray
    out: np.ndarray
    step: float
    n_iter: int = 0
    converged: bool = False
    info: dict = field(default_factory=dict)
    x_prev: object = None  # previous iterate and momentum parameter (to resume the momentum)
    t: float = 1.0


def estimate_lipschitz(problem, curvature: float, out_shape, rng=None, n_power: int = 8) -> float:
    """Power-iteration estimate of ``curvature * ||A||^2`` (a step-size hint).

    Starts from ``A^T r`` with ``r`` a random numpy array of ``out_shape`` (the
    outputs' shape), so it works for any backend whose ``adjoint`` accepts numpy.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    x = problem.adjoint(rng.standard_normal(out_shape))
    lam = 0.0
    for _ in range(n_power):
        nx = np.sqrt(inner(x, x))
        if nx == 0:
            return curvature
        y = problem.adjoint(problem.apply(x / nx))
        lam = np.sqrt(inner(y, y))
        x = y
    return curvature * max(lam, 1e-300)


def fista(problem, x0, *, step, check, max_iter=10000, check_every=10,
          growth=1.25, shrink=0.5, restart=True, callback=None, state_info=None,
          x_prev=None, t0=1.0, probe=None) -> FistaState:
    """Run FISTA from ``x0``; return the final :class:`FistaState`.

    Parameters
    ----------
    problem : object
        See the module docstring.
    x0 : ndarray
        Starting point (any shape the problem accepts).
    step : float
        Initial step size (grown or shrunk by the line search).
    check : callable ``(x, out, n_iter) -> (bool, dict)``
        Stopping test; ``True`` stops.  Evaluated at the start, every
        ``check_every`` iterations, and at the end.
    max_iter : int, default=10000
    callback : callable ``(state) -> None``, optional
        Called after each check.
    x_prev, t0 : optional
        Resume the momentum of an earlier run: the previous iterate and the momentum
        parameter ``t`` (as returned in :class:`FistaState`); the first extrapolated
        point is ``x0 + (t0 - 1)/t1 (x0 - x_prev)``.
    probe : callable ``(out_y, grad_out, grad_x) -> None``, optional
        Called after every gradient evaluation with the outputs of the extrapolated
        point, the gradient of ``f`` there and its adjoint (the gradient in ``x``);
        lets a caller read a dual candidate off every iteration at no extra product.
    """
    x = x0
    out_x = problem.apply(x)
    y, out_y = x, out_x
    t = 1.0
    done, info = check(x, out_x, 0)
    state = FistaState(x=x, out=out_x, step=step, info=info, converged=done, x_prev=x, t=t)
    if done:
        return state
    if x_prev is not None and t0 > 1.0:
        t = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t0 * t0))
        beta = (t0 - 1.0) / t
        y = x + beta * (x - x_prev)
        out_y = problem.apply(y)
    fy, gout = problem.smooth_value_and_gradient(out_y)
    gy = problem.adjoint(gout)
    if probe is not None:
        probe(out_y, gout, gy)
    # the descent test tolerates rounding of the iterate's precision (float32 needs slack)
    pdt = getattr(problem, "dtype", None)  # precision of the products (may differ from x)
    eps = float(np.finfo(pdt).eps) if pdt is not None else _eps(x)
    rel_slack = 1e-12 if eps < 1e-10 else 50 * eps
    k = 0
    while k < max_iter:
        k += 1
        # backtracking on the quadratic upper bound
        for _ in range(60):
            x_new = problem.prox(y - step * gy, step)
            dx = x_new - y
            out_new = problem.apply(x_new)
            f_new = problem.smooth_value(out_new)
            lin = inner(gy, dx)
            sq = inner(dx, dx)
            slack = rel_slack * max(abs(fy), 1e-300)
            if f_new <= fy + lin + sq / (2 * step) + slack:
                break
            step *= shrink
        curv_ok = sq > 0 and (f_new - fy - lin) * 2 * step * 5.0 < sq
        # momentum and restart
        if restart and inner(x_new - x, y - x_new) > 0:
            t = 1.0
            y, out_y = x_new, out_new
        else:
            t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
            beta = (t - 1.0) / t_new
            y = x_new + beta * (x_new - x)
            out_y = out_new + beta * (out_new - out_x)
            t = t_new
        x_old, x, out_x = x, x_new, out_new
        if curv_ok:
            step *= growth
        if k % check_every == 0 or k == max_iter:
            done, info = check(x, out_x, k)
            state = FistaState(x=x, out=out_x, step=step, n_iter=k, converged=done, info=info,
                               x_prev=x_old, t=t)
            if callback is not None:
                callback(state)
            if done:
                return state
        fy, gout = problem.smooth_value_and_gradient(out_y)
        gy = problem.adjoint(gout)
        if probe is not None:
            probe(out_y, gout, gy)
    if state.n_iter != k:
        done, info = check(x, out_x, k)
        state = FistaState(x=x, out=out_x, step=step, n_iter=k, converged=done, info=info,
                           x_prev=x_old, t=t)
    return state
