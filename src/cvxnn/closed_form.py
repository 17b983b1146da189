"""Closed-form optimal networks and the spike-free two-neuron program (math spec 4.3, 4.6).

All networks here have no bias (``bias=False``, ``b1=None``) and a single
output; objectives are cvxnn's weight-decay objective with the squared loss::

    F(W1, W2) = ||f(X) - y||^2 / (2n) + alpha/2 (||W1||_F^2 + ||W2||^2),
    f(X) = relu(X W1^T) W2.

Multiplying ``F`` by ``n`` gives the papers' objective ``1/2 ||f - y||^2 +
beta/2 (...)`` with ``beta = n * alpha``; the closed forms below are written
with that ``beta``.  After balancing (``||u_j|| = |a_j|``) the penalty is the
path norm ``alpha * sum_j ||u_j|| |a_j|``.

* :func:`whitened` -- ``X X^T = I_n`` (``n <= d``): at most two neurons,
  ``u1 = X^T y+ / ||y+||`` with output ``(||y+|| - beta)_+`` and
  ``u2 = X^T y- / ||y-||`` with output ``-(||y-|| - beta)_+``.
* :func:`rank_one` -- ``X = c a^T``: the neurons ``+a`` and ``-a`` with outputs
  ``S_beta(c+^T y) / ||c+||^2`` and ``S_beta(c-^T y) / ||c-||^2``
  (``S_beta(z) = sign(z) (|z| - beta)_+``).
* :func:`spike_free` -- the two-neuron convex program (relaxation R2 of spec 4.6)::

      min_{w1, w2}  ||X w1 - X w2 - y||^2 / (2n) + alpha (||w1|| + ||w2||)
      s.t.  X w1 >= 0,  X w2 >= 0,

  solved by a small dense primal-dual interior-point method.  Its value equals
  the weight-decay objective of the network with units ``w1/sqrt||w1||``
  (output ``+sqrt||w1||``) and ``w2/sqrt||w2||`` (output ``-sqrt||w2||``); it
  is an upper bound on the optimal objective, and equal to it when ``X`` is
  spike-free (:func:`is_spike_free`).  With ``alpha = 0`` it solves the
  minimum-norm interpolation program ``min ||w1|| + ||w2|| s.t. X (w1 - w2) = y``.

Each function returns a :class:`ClosedFormResult`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg

from ._data import check_alpha, check_X, check_y
from .network import TwoLayerReLU

__all__ = ["ClosedFormResult", "whitened", "rank_one", "spike_free", "is_spike_free"]


@dataclass
class ClosedFormResult:
    """What :func:`whitened`, :func:`rank_one` and :func:`spike_free` return.

    Attributes
    ----------
    network : TwoLayerReLU
        The network (no bias, one output, balanced weights, at most two units).
    objective : float
        ``network.objective(X, y, alpha)``: the weight-decay objective (loss with
        ``1/(2n)``).
    lower_bound : float
        A dual lower bound (cvxnn scaling).  For :func:`whitened` and
        :func:`rank_one` it is a lower bound on the optimum over networks of any
        width, using the closed-form dual constraint of that data class; for
        :func:`spike_free` it bounds the two-neuron program from below (not the
        network optimum, unless ``X`` is spike-free).  With ``alpha = 0`` the
        spike-free bound is on the minimum path norm (``program_value``).
    gap : float
        ``objective - lower_bound`` (``program_value - lower_bound`` for
        ``spike_free`` with ``alpha = 0``).
    is_exact : bool
        Whether ``objective`` is known to be the global optimum.  Always true for
        the closed forms; for :func:`spike_free` true only when ``X`` is
        recognised as spike-free (orthonormal rows, or rank one with a one-signed
        left factor) or when ``certify=True`` certified it.
    method : str
        ``"whitened"``, ``"rank_one"`` or ``"spike_free"``.
    alpha : float
    statement : str
        One sentence on what the objective is (optimum or upper bound).
    program_value : float
        ``spike_free`` only: the two-neuron program's value at the returned
        weights (``alpha > 0``), or the path norm ``||w1|| + ||w2||`` of the
        interpolating solution (``alpha = 0``); NaN for the closed forms.
    info : dict
        Method details (``beta``, the neuron directions and outputs, solver
        iterations and residuals, ...).
    """

    network: TwoLayerReLU
    objective: float
    lower_bound: float
    gap: float
    is_exact: bool
    method: str
    alpha: float
    statement: str
    program_value: float = float("nan")
    info: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"ClosedFormResult(method={self.method!r}, objective={self.objective:.10g}, "
                f"gap={self.gap:.2e}, is_exact={self.is_exact}, "
                f"n_neurons={self.network.n_neurons})")


# ----------------------------------------------------------------------------
# shared helpers
# ----------------------------------------------------------------------------

def _check_data(X, y, alpha):
    X = check_X(X, "X").astype(np.float64, copy=False)
    y = check_y(y, X.shape[0], "y")
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D (a single regression target), got shape {y.shape}")
    if y.dtype.kind not in "iuf":
        raise TypeError(f"y must be numeric regression targets, got dtype {y.dtype}")
    return X, y.astype(np.float64), check_alpha(alpha)


def _check_positive(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
            or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _network(d, units):
    """Balanced network from ``[(direction u, output a)]``: rows ``sqrt|a| u/||u||``."""
    rows, outs = [], []
    for u, a in units:
        nu = float(np.linalg.norm(u))
        if a == 0 or nu == 0:
            continue
        rows.append(np.sqrt(abs(a)) * u / nu)
        outs.append(math.copysign(np.sqrt(abs(a)), a))
    W1 = np.array(rows).reshape(len(rows), d)
    return TwoLayerReLU(W1, None, np.array(outs, dtype=np.float64))


def _soft(z, t):
    """``S_t(z) = sign(z) (|z| - t)_+``."""
    return math.copysign(max(abs(z) - t, 0.0), z)


def _dual_bound(v, y, s_max, n):
    """Best value of ``(v'^T y - ||v'||^2 / 2) / n`` along ``v' = s v``, ``0 <= s <= s_max``."""
    vv = float(v @ v)
    s = s_max if vv == 0 else min(s_max, max(0.0, float(v @ y) / vv))
    return (s * float(v @ y) - 0.5 * s * s * vv) / n


def _result(net, X, y, alpha, lower, method, info, is_exact=True, statement=None,
            program_value=float("nan")):
    obj = net.objective(X, y, alpha)
    if statement is None:
        statement = (f"optimal objective over networks of any width (closed form for "
                     f"{method.replace('_', '-')} data)")
    top = program_value if (method == "spike_free" and alpha == 0) else obj
    return ClosedFormResult(net, obj, lower, max(top - lower, 0.0), is_exact, method, alpha,
                            statement, program_value, info)


# ----------------------------------------------------------------------------
# (1) whitened data
# ----------------------------------------------------------------------------

def whitened(X, y, alpha, *, check=True, tol=1e-8) -> ClosedFormResult:
    """Optimal network for whitened data ``X X^T = I_n`` (math spec 4.3 (1)).

    With ``beta = n * alpha``, ``y+ = max(y, 0)`` and ``y- = max(-y, 0)`` the
    optimum has at most two units::

        u1 = X^T y+ / ||y+||,  output (||y+|| - beta)_+,
        u2 = X^T y- / ||y-||,  output -(||y-|| - beta)_+,

    returned balanced (unit ``sqrt|a| u``, output ``sign(a) sqrt|a|``); the fit is
    ``(1 - beta/||y+||)_+ y+ - (1 - beta/||y-||)_+ y-``.  ``alpha = 0`` gives the
    minimum-norm interpolating network (cost ``||y+|| + ||y-||``).

    Parameters
    ----------
    X : array of shape (n, d), n <= d, with orthonormal rows
    y : array of shape (n,)
    alpha : float >= 0
    check : bool, default=True
        Verify ``max |X X^T - I_n| <= tol`` (raises ``ValueError`` naming ``X``).
        With ``check=False`` the formula is applied anyway and the result has
        ``is_exact=False`` when the test fails.
    tol : float, default=1e-8

    Returns
    -------
    ClosedFormResult
    """
    X, y, alpha = _check_data(X, y, alpha)
    n, d = X.shape
    err = float(np.max(np.abs(X @ X.T - np.eye(n))))
    if check:
        if n > d:
            raise ValueError(f"X must have orthonormal rows (X @ X.T = I_n), which needs "
                             f"n_samples <= n_features; got X of shape {X.shape}")
        if not err <= tol:
            raise ValueError(f"X must have orthonormal rows (X @ X.T = I_n) for the whitened "
                             f"closed form; max |X X^T - I| = {err:.3g} > tol = {tol:g}")
    beta = n * alpha
    yp, ym = np.maximum(y, 0.0), np.maximum(-y, 0.0)
    npos, nneg = float(np.linalg.norm(yp)), float(np.linalg.norm(ym))
    units = []
    a1 = max(npos - beta, 0.0)
    a2 = -max(nneg - beta, 0.0)
    if a1 > 0:
        units.append((X.T @ yp, a1))
    if a2 < 0:
        units.append((X.T @ ym, a2))
    net = _network(d, units)
    # dual certificate: v = y - f(X); for X X^T = I, max_{||u||<=1} v^T (Xu)_+ = ||v_+||
    v = y - net.forward(X)[:, 0]
    worst = max(np.linalg.norm(np.maximum(v, 0)), np.linalg.norm(np.maximum(-v, 0)))
    s_max = 1.0 if worst <= beta else beta / worst
    lower = _dual_bound(v, y, s_max, n)
    info = {"beta": beta, "outputs": (a1, a2), "norm_y_pos": npos, "norm_y_neg": nneg,
            "whitening_error": err}
    if err <= tol:
        return _result(net, X, y, alpha, lower, "whitened", info)
    statement = (f"closed form applied to X that is not whitened (max |X X^T - I| = {err:.2g}): "
                 "not guaranteed optimal, and lower_bound is not certified")
    return _result(net, X, y, alpha, lower, "whitened", info, is_exact=False, statement=statement)


# ----------------------------------------------------------------------------
# (2) rank-one data
# ----------------------------------------------------------------------------

def rank_one(X, y, alpha, *, rtol=1e-9) -> ClosedFormResult:
    """Optimal network for rank-one data ``X = c a^T`` (math spec 4.3 (2)).

    ``a`` (unit norm) and ``c = X a`` come from the SVD.  With ``beta = n * alpha``,
    ``c+ = max(c, 0)``, ``c- = max(-c, 0)`` and ``S_beta(z) = sign(z)(|z| - beta)_+``
    the optimum has at most two units::

        u = +a,  output S_beta(c+^T y) / ||c+||^2;
        u = -a,  output S_beta(c-^T y) / ||c-||^2,

    returned balanced.  ``alpha = 0`` gives the least-squares fit on
    ``span{c+, c-}``.

    Parameters
    ----------
    X : array of shape (n, d) of rank one
        Detected by ``sigma_2 <= rtol * sigma_1``; otherwise ``ValueError``.
    y : array of shape (n,)
    alpha : float >= 0
    rtol : float, default=1e-9

    Returns
    -------
    ClosedFormResult
    """
    X, y, alpha = _check_data(X, y, alpha)
    n, d = X.shape
    _, s, Vt = np.linalg.svd(X, full_matrices=False)
    if s[0] == 0:
        raise ValueError("X must have rank one for the rank-one closed form; X is zero (rank 0)")
    if s.size > 1 and s[1] > rtol * s[0]:
        raise ValueError(f"X must have rank one (X = c a^T) for the rank-one closed form; its "
                         f"second singular value is {s[1] / s[0]:.3g} times the first "
                         f"(> rtol = {rtol:g})")
    beta = n * alpha
    a = Vt[0]
    c = X @ a
    cp, cm = np.maximum(c, 0.0), np.maximum(-c, 0.0)
    outs = []
    for ck in (cp, cm):
        nc2 = float(ck @ ck)
        outs.append(_soft(float(ck @ y), beta) / nc2 if nc2 > 0 else 0.0)
    net = _network(d, [(a, outs[0]), (-a, outs[1])])
    # dual certificate: for X = c a^T, max_{||u||<=1} |v^T (Xu)_+| = max(|c+^T v|, |c-^T v|)
    v = y - net.forward(X)[:, 0]
    worst = max(abs(float(cp @ v)), abs(float(cm @ v)))
    s_max = 1.0 if worst <= beta else beta / worst
    lower = _dual_bound(v, y, s_max, n)
    info = {"beta": beta, "a": a, "c": c, "outputs": tuple(outs)}
    return _result(net, X, y, alpha, lower, "rank_one", info)


# ----------------------------------------------------------------------------
# (3) spike-free program: a dense primal-dual interior-point method
# ----------------------------------------------------------------------------

def _soc_blocks(n_lp, soc_dims):
    out, start = [], n_lp
    for q in soc_dims:
        out.append((start, start + q))
        start += q
    return out


def _jdet(u):
    """``u0^2 - ||u1||^2`` computed as ``(u0 - ||u1||)(u0 + ||u1||)``."""
    r = float(np.linalg.norm(u[1:]))
    return (u[0] - r) * (u[0] + r)


class _Scaling:
    """Block-diagonal scaling matrix: a diagonal on the LP part, dense blocks on the cones."""

    def __init__(self, diag, blocks, socs):
        self.diag, self.blocks, self.socs = diag, blocks, socs

    def mul(self, v, transpose=False):
        out = np.empty_like(v)
        n_lp = self.diag.size
        out[:n_lp] = self.diag * v[:n_lp]
        for (a, b), B in zip(self.socs, self.blocks):
            out[a:b] = (B.T if transpose else B) @ v[a:b]
        return out

    def gram(self):
        """Dense ``W^T W``."""
        m = self.diag.size + sum(b - a for a, b in self.socs)
        out = np.zeros((m, m))
        i = np.arange(self.diag.size)
        out[i, i] = self.diag ** 2
        for (a, b), B in zip(self.socs, self.blocks):
            out[a:b, a:b] = B.T @ B
        return out

    def then(self, other):
        """The product ``other @ self``."""
        return _Scaling(other.diag * self.diag,
                        [O @ B for O, B in zip(other.blocks, self.blocks)], self.socs)

    def before(self, other):
        """The product ``self @ other``."""
        return _Scaling(self.diag * other.diag,
                        [B @ O for B, O in zip(self.blocks, other.blocks)], self.socs)


def _nt_scaling(s, z, n_lp, socs):
    """Nesterov-Todd scaling ``W`` (symmetric) with ``W z = W^{-1} s = lam``.

    Returns ``(W, W^{-1}, lam)`` as :class:`_Scaling` objects and an array.
    """
    dl = np.sqrt(s[:n_lp] / z[:n_lp])
    blocks, inv_blocks = [], []
    for a, b in socs:
        ss, zz = s[a:b], z[a:b]
        js, jz = max(_jdet(ss), 1e-300), max(_jdet(zz), 1e-300)
        sb, zb = ss / np.sqrt(js), zz / np.sqrt(jz)
        gam = np.sqrt(max((1.0 + sb @ zb) / 2.0, 1e-300))
        zJ = zb.copy()
        zJ[1:] *= -1.0
        wb = (sb + zJ) / (2.0 * gam)
        eta = (js / jz) ** 0.25
        w0, w1 = wb[0], wb[1:]
        M = np.empty((b - a, b - a))
        M[0, 0] = w0
        M[0, 1:] = w1
        M[1:, 0] = w1
        M[1:, 1:] = np.eye(b - a - 1) + np.outer(w1, w1) / (1.0 + w0)
        Mi = M.copy()
        Mi[0, 1:] *= -1.0
        Mi[1:, 0] *= -1.0
        blocks.append(eta * M)
        inv_blocks.append(Mi / eta)
    W = _Scaling(dl, blocks, socs)
    return W, _Scaling(1.0 / dl, inv_blocks, socs), W.mul(z)


def _jprod(u, v, n_lp, socs):
    """Jordan product: elementwise on the LP part, ``(u^T v, u0 v1 + v0 u1)`` per cone."""
    out = u * v
    for a, b in socs:
        out[a] = u[a:b] @ v[a:b]
        out[a + 1:b] = u[a] * v[a + 1:b] + v[a] * u[a + 1:b]
    return out


def _jsolve(lam, r, n_lp, socs):
    """Solve ``lam o x = r`` for ``x``."""
    x = r.copy()
    x[:n_lp] = r[:n_lp] / lam[:n_lp]
    for a, b in socs:
        l0, l1, r0, r1 = lam[a], lam[a + 1:b], r[a], r[a + 1:b]
        x0 = (l0 * r0 - l1 @ r1) / _jdet(lam[a:b])
        x[a] = x0
        x[a + 1:b] = (r1 - x0 * l1) / l0
    return x


def _max_step(lam, dv, n_lp, socs):
    """Largest ``t`` with ``lam + t dv`` in the cone (``lam`` interior)."""
    t = np.inf
    neg = dv[:n_lp] < 0
    if np.any(neg):
        t = float(np.min(-lam[:n_lp][neg] / dv[:n_lp][neg]))
    for a, b in socs:
        l, d = lam[a:b], dv[a:b]
        jn = np.sqrt(max(_jdet(l), 1e-300))
        l0, l1 = l[0] / jn, l[1:] / jn
        # Lorentz boost taking l/jn to e, applied to d/jn
        dot = l1 @ d[1:]
        r0 = (l0 * d[0] - dot) / jn
        r1 = (d[1:] - l1 * d[0] + l1 * dot / (1.0 + l0)) / jn
        worst = float(np.linalg.norm(r1)) - r0
        if worst > 0:
            t = min(t, 1.0 / worst)
    return t


def _unit_shift(u, n_lp, socs):
    """Smallest ``t`` such that ``u + t e`` lies on the cone's boundary (max of -eigenvalues)."""
    t = float(np.max(-u[:n_lp], initial=-np.inf))
    for a, b in socs:
        t = max(t, float(np.linalg.norm(u[a + 1:b]) - u[a]))
    return t


def _cone_qp(P, q, G, h, n_lp, soc_dims, *, offset=0.0, tol=1e-10, max_iter=100):
    """``min 1/2 x^T P x + q^T x  s.t.  G x + s = h,  s in R_+^{n_lp} x SOC(soc_dims)``.

    ``offset`` is a constant added to the objective; the relative gap is taken
    with respect to ``|1/2 x^T P x + q^T x + offset|``.

    Dense infeasible-start primal-dual interior-point method with Nesterov-Todd
    scaling (kept in product form ``W <- W_new W`` so that iterates close to the
    cone boundary keep their accuracy) and a Mehrotra corrector.  ``P + G^T G``
    must be positive definite.  Returns ``(x, s, z, info)``.
    """
    socs = _soc_blocks(n_lp, soc_dims)
    m = G.shape[0]
    e = np.zeros(m)
    e[:n_lp] = 1.0
    for a, _ in socs:
        e[a] = 1.0
    degree = n_lp + len(socs)

    def spd_solver(H):
        try:
            L = np.linalg.cholesky(H)
            return lambda r: np.linalg.solve(L.T, np.linalg.solve(L, r))
        except np.linalg.LinAlgError:
            return lambda r: np.linalg.lstsq(H, r, rcond=None)[0]

    x = spd_solver(P + G.T @ G)(-q + G.T @ h)
    s = h - G @ x
    z = -s.copy()
    for u in (s, z):
        t = _unit_shift(u, n_lp, socs)
        if t >= -1e-8 * max(np.linalg.norm(u), 1.0):
            u += (1.0 + t) * e
    # scaling: W^{-T} s = W z = lam
    W, Winv, lam = _nt_scaling(s, z, n_lp, socs)
    scale_x = max(1.0, float(np.linalg.norm(q)))
    scale_z = max(1.0, float(np.linalg.norm(h)))
    status, it = "max_iter", 0
    best = None
    for it in range(1, max_iter + 1):
        rx = P @ x + q + G.T @ z
        rz = G @ x + s - h
        gap = float(lam @ lam)
        pcost = 0.5 * float(x @ P @ x) + float(q @ x)
        pres = float(np.linalg.norm(rz)) / scale_z
        dres = float(np.linalg.norm(rx)) / scale_x
        rgap = gap / max(abs(pcost + offset), 1e-15 * max(1.0, abs(offset)))
        merit = max(pres, dres, rgap)
        if best is None or merit < best[0]:
            best = (merit, x.copy(), s.copy(), z.copy(), pres, dres, gap)
        if merit <= tol:
            status = "optimal"
            break
        # Newton system [P G^T; G -W^T W] [dx; dz] = [bx; bz - W^T u], solved by LU
        # (better conditioned than the Schur complement P + G^T (W^T W)^{-1} G)
        k = x.size
        K = np.block([[P, G.T], [G, -W.gram()]])
        try:
            lu = scipy.linalg.lu_factor(K, check_finite=False)
        except (ValueError, np.linalg.LinAlgError):  # pragma: no cover - singular system
            lu = None

        def kkt(r):
            if lu is None:  # pragma: no cover
                return np.linalg.lstsq(K, r, rcond=None)[0]
            return scipy.linalg.lu_solve(lu, r, check_finite=False)

        def newton(bx, bz, bs):
            rhs = np.concatenate([bx, bz - W.mul(_jsolve(lam, bs, n_lp, socs), transpose=True)])
            sol = kkt(rhs)
            for _ in range(2):                  # iterative refinement
                res = rhs - K @ sol
                if not np.linalg.norm(res) > 1e-15 * np.linalg.norm(rhs):
                    break
                sol = sol + kkt(res)
            dx, dz = sol[:k], sol[k:]
            ds = bz - G @ dx                    # exact linearised primal residual
            return dx, dz, ds, Winv.mul(ds, transpose=True), W.mul(dz)

        def step(dst, dzt):
            return min(_max_step(lam, dst, n_lp, socs), _max_step(lam, dzt, n_lp, socs))

        ll = _jprod(lam, lam, n_lp, socs)
        _, _, _, dst, dzt = newton(-rx, -rz, -ll)
        ta = min(1.0, step(dst, dzt))
        sigma = (1.0 - ta) ** 3
        bs = -ll - _jprod(dst, dzt, n_lp, socs) + sigma * (gap / degree) * e
        dx, dz, ds, dst, dzt = newton(-rx, -rz, bs)
        t = min(1.0, 0.99 * step(dst, dzt))
        if not np.isfinite(t) or t < 1e-12 or not np.all(np.isfinite(dx)):
            status = "stalled"
            break
        x = x + t * dx
        z = z + t * dz
        s = s + t * ds
        Wt, Wtinv, lam_new = _nt_scaling(lam + t * dst, lam + t * dzt, n_lp, socs)
        if not np.all(np.isfinite(lam_new)):
            status = "stalled"
            break
        W, Winv, lam = W.then(Wt), Winv.before(Wtinv), lam_new
    if status != "optimal":
        merit, x, s, z, pres, dres, gap = best
        status = "optimal_inaccurate" if merit <= 1e-6 else "failed"
    info = {"status": status, "n_iter": it, "primal_residual": pres,
            "dual_residual": dres, "complementarity": gap}
    return x, s, z, info


def _spike_free_program(A, y, beta, tol, max_iter):
    """Two-neuron program on reduced data ``A`` (n, r), full column rank, in paper units.

    ``beta > 0``: ``min 1/2 ||A (b1 - b2) - y||^2 + beta (||b1|| + ||b2||)``;
    ``beta == 0``: ``min ||b1|| + ||b2|| s.t. A (b1 - b2) = y``; both with
    ``A b1 >= 0, A b2 >= 0``.  Returns ``(b1, b2, lam1, lam2, info)``; ``lam`` are
    the multipliers of the sign constraints (rows of ``A``).
    """
    n, r = A.shape
    Z = np.zeros
    if beta > 0:
        # x = (b1, b2, t1, t2)
        M = np.hstack([A, -A, Z((n, 2))])
        P = M.T @ M
        q = np.concatenate([-A.T @ y, A.T @ y, [beta, beta]])
        k = 2 * r + 2
        G = Z((2 * n + 2 * (r + 1), k))
        G[:n, :r] = -A
        G[n:2 * n, r:2 * r] = -A
        o = 2 * n
        G[o, 2 * r] = -1.0
        G[o + 1:o + 1 + r, :r] = -np.eye(r)
        o += r + 1
        G[o, 2 * r + 1] = -1.0
        G[o + 1:o + 1 + r, r:2 * r] = -np.eye(r)
        h = Z(G.shape[0])
        x, s, z, info = _cone_qp(P, q, G, h, 2 * n, [r + 1, r + 1], offset=0.5 * float(y @ y),
                                 tol=tol, max_iter=max_iter)
        return x[:r], x[r:2 * r], z[:n], z[n:2 * n], info
    # beta == 0: b2 = b1 - c0 with A c0 = y; x = (b1, t1, t2)
    c0 = np.linalg.lstsq(A, y, rcond=None)[0]
    P = Z((r + 2, r + 2))
    q = np.concatenate([Z(r), [1.0, 1.0]])
    G = Z((2 * n + 2 * (r + 1), r + 2))
    h = Z(G.shape[0])
    G[:n, :r] = -A
    G[n:2 * n, :r] = -A
    h[n:2 * n] = -y
    o = 2 * n
    G[o, r] = -1.0
    G[o + 1:o + 1 + r, :r] = -np.eye(r)
    o += r + 1
    G[o, r + 1] = -1.0
    G[o + 1:o + 1 + r, :r] = -np.eye(r)
    h[o + 1:o + 1 + r] = -c0
    x, s, z, info = _cone_qp(P, q, G, h, 2 * n, [r + 1, r + 1], tol=tol, max_iter=max_iter)
    b1 = x[:r]
    lam1, lam2 = np.maximum(z[:n], 0.0), np.maximum(z[n:2 * n], 0.0)
    # multiplier v of A (b1 - b2) = y: stationarity gives A^T (v + lam1) = -z_soc1[1:]
    g = -z[2 * n + 1:2 * n + 1 + r] - A.T @ lam1
    v = A @ np.linalg.solve(A.T @ A, g)
    info["interpolation_multiplier"] = v
    return b1, b1 - c0, lam1, lam2, info


def _drop_tiny(X, y, alpha, w1, w2, w_scale):
    """Zero neurons of interior-point size when that does not worsen the program.

    A neuron is tiny when ``||w|| <= 1e-6 max(||w1||, ||w2||)`` or
    ``||w|| <= 1e-8 w_scale`` (``w_scale = ||y|| / sigma_1``, the natural size of ``w``).
    """
    n = X.shape[0]

    def value(a, b):
        r = X @ (a - b) - y
        path = float(np.linalg.norm(a) + np.linalg.norm(b))
        if alpha == 0:
            return float(np.linalg.norm(r)), path
        return 0.0, 0.5 * float(r @ r) / n + alpha * path

    norms = (float(np.linalg.norm(w1)), float(np.linalg.norm(w2)))
    tiny = [0 < nk <= max(1e-6 * max(norms), 1e-8 * w_scale) for nk in norms]
    base = value(w1, w2)
    zero = np.zeros_like(w1)
    cands = []
    if all(tiny):
        cands.append((zero, zero))
    if tiny[0]:
        cands.append((zero, w2))
    if tiny[1]:
        cands.append((w1, zero))
    for a, b in cands:                   # fewest neurons first
        res, val = value(a, b)
        if (res <= base[0] + 1e-10 * max(np.linalg.norm(y), 1e-300)
                and val <= base[1] + 1e-13 * abs(base[1])):
            return a, b
    return w1, w2


def _known_spike_free(X, rtol=1e-9, tol=1e-8):
    """Whether ``X`` is spike-free by structure.

    True for orthonormal rows, or rank one with a one-signed left factor ``c``.
    """
    n, d = X.shape
    if n <= d and np.max(np.abs(X @ X.T - np.eye(n))) <= tol:
        return True, "orthonormal rows"
    s = np.linalg.svd(X, compute_uv=False)
    if s[0] == 0:
        return True, "zero matrix"
    if s.size == 1 or s[1] <= rtol * s[0]:
        _, _, Vt = np.linalg.svd(X, full_matrices=False)
        c = X @ Vt[0]
        cut = 1e-12 * np.max(np.abs(c))
        if np.all(c >= -cut) or np.all(c <= cut):
            return True, "rank one with a one-signed left factor"
    return False, ""


def spike_free(X, y, alpha, *, tol=1e-10, max_iter=100, rtol=1e-12,
               certify=False) -> ClosedFormResult:
    """Two-neuron convex program of spike-free data (math spec 4.3 (3), relaxation R2 of 4.6).

    Solves, for ``alpha > 0``::

        min_{w1, w2}  ||X w1 - X w2 - y||^2 / (2n) + alpha (||w1|| + ||w2||)
        s.t.  X w1 >= 0,  X w2 >= 0,

    and returns the network with units ``w1/sqrt||w1||`` (output ``+sqrt||w1||``)
    and ``w2/sqrt||w2||`` (output ``-sqrt||w2||``).  Because ``X w_k >= 0`` the
    ReLU is the identity on the data and the network's weight-decay objective
    equals the program's value.  That value is an **upper bound** on the optimal
    objective over all networks, and equals it when ``X`` is spike-free
    (``{(Xu)_+ : ||u|| <= 1}`` inside ``{Xz : ||z|| <= 1}``), e.g. for orthonormal
    rows or rank-one ``X = c a^T`` with ``c >= 0``.

    With ``alpha = 0`` it solves the minimum-norm interpolation program
    ``min ||w1|| + ||w2|| s.t. X (w1 - w2) = y, X w1 >= 0, X w2 >= 0`` (needs ``y``
    in the range of ``X``); the network interpolates and
    ``||W1||^2 + ||W2||^2 = 2 (||w1|| + ||w2||)``.

    The program is solved on the row space of ``X`` (thin SVD, ranks below
    ``rtol * sigma_1`` dropped) by a dense primal-dual interior-point method
    (Nesterov-Todd scaling, Mehrotra corrector); its dual iterate gives a
    rigorous lower bound on the program (``lower_bound``).

    Parameters
    ----------
    X : array of shape (n, d)
    y : array of shape (n,)
    alpha : float >= 0
    tol : float, default=1e-10
        Relative residual and complementarity tolerance of the interior-point method.
    max_iter : int, default=100
    rtol : float, default=1e-12
        Relative singular-value cut for the row space of ``X``.
    certify : bool, default=False
        Also run :func:`cvxnn.certify` on the network (``alpha > 0``); when it is
        exact and the relative gap is below ``1e-7``, ``is_exact`` is set.  The
        certificate is stored under ``info["certificate"]``.

    Returns
    -------
    ClosedFormResult
        ``program_value`` is the program's value at the returned weights,
        ``lower_bound`` a certified lower bound on the program's optimum.
    """
    X, y, alpha = _check_data(X, y, alpha)
    _check_positive(tol, "tol")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    n, d = X.shape
    beta = n * alpha
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    r = int(np.sum(s > rtol * s[0])) if s[0] > 0 else 0
    ynorm = float(np.linalg.norm(y))
    info = {"beta": beta, "rank": r}
    if r == 0 and alpha == 0 and ynorm > 0:
        raise ValueError("alpha=0 (minimum-norm interpolation) needs y in the range of X; "
                         "X is zero")
    if r > 0:
        A = U[:, :r] * s[:r]
        if alpha == 0:
            resid = y - A @ np.linalg.lstsq(A, y, rcond=None)[0]
            if np.linalg.norm(resid) > 1e-8 * max(ynorm, 1e-300):
                raise ValueError("alpha=0 (minimum-norm interpolation) needs y in the range of X; "
                                 f"the residual of y outside it is {np.linalg.norm(resid):.3g}")
    if r == 0 or ynorm == 0:
        w1 = w2 = np.zeros(d)
        lam1 = lam2 = np.zeros(n)
        info.update(status="trivial", n_iter=0)
    else:
        keep = np.max(np.abs(A), axis=1) > 1e-14 * s[0]   # rows of zeros carry no sign constraint
        Ak = A[keep] / s[0]
        yk = y[keep] / ynorm
        b1, b2, l1, l2, ipm = _spike_free_program(Ak, yk, beta / (s[0] * ynorm), tol, max_iter)
        info.update(ipm)
        scale = ynorm / s[0]
        w1 = Vt[:r].T @ (b1 * scale)
        w2 = Vt[:r].T @ (b2 * scale)
        if alpha == 0:
            viol = max(0.0, -np.min(X @ w1), -np.min(X @ w2)) / ynorm
            if ipm["status"] == "failed" or viol > 1e-6:
                raise ValueError(
                    "alpha=0 (minimum-norm interpolation) needs y = X w1 - X w2 with X w1 >= 0 "
                    "and X w2 >= 0; no such pair was found for this y (e.g. X rank one with "
                    "mixed-sign c); use alpha > 0")
        if ipm["status"] == "failed":
            warnings.warn(f"spike_free: the interior-point method did not converge "
                          f"(residuals {ipm['primal_residual']:.1e}, {ipm['dual_residual']:.1e}); "
                          "see result.gap", RuntimeWarning, stacklevel=2)
        lam1 = np.zeros(n)
        lam2 = np.zeros(n)
        # dual variables scale like y (alpha > 0) or like 1 / sigma_1 (alpha = 0)
        dscale = ynorm if alpha > 0 else 1.0 / s[0]
        lam1[keep] = np.maximum(l1, 0.0) * dscale
        lam2[keep] = np.maximum(l2, 0.0) * dscale
        if alpha == 0:
            v0 = np.zeros(n)
            v0[keep] = info.pop("interpolation_multiplier") * dscale
    w1, w2 = _drop_tiny(X, y, alpha, w1, w2, ynorm / s[0] if s[0] > 0 else 0.0)
    n1, n2 = float(np.linalg.norm(w1)), float(np.linalg.norm(w2))
    net = _network(d, [(w1, n1), (w2, -n2)])
    info.update(w1=w1, w2=w2, multipliers=(lam1, lam2),
                sign_violation=float(max(0.0, -np.min(X @ w1), -np.min(X @ w2))))
    # certified lower bound on the program from (v, lam1, lam2)
    if alpha > 0:
        v = y - X @ (w1 - w2)
        program = 0.5 * float(v @ v) / n + alpha * (n1 + n2)
        worst = max(np.linalg.norm(X.T @ (v + lam1)), np.linalg.norm(X.T @ (lam2 - v)))
        s_max = 1.0 if worst <= beta else beta / worst
        lower = _dual_bound(v, y, s_max, n)
    else:
        # dual of the interpolation program:
        #   max v^T y  s.t.  ||X^T (v + lam1)|| <= 1, ||X^T (lam2 - v)|| <= 1, lam >= 0
        program = n1 + n2
        v = np.zeros(n) if r == 0 or ynorm == 0 else v0
        worst = max(np.linalg.norm(X.T @ (v + lam1)), np.linalg.norm(X.T @ (lam2 - v)), 1e-300)
        lower = min(1.0, 1.0 / worst) * float(v @ y) if ynorm > 0 else 0.0
    known, why = _known_spike_free(X)
    is_exact = known
    if known:
        statement = (f"optimal objective over networks of any width: X is spike-free ({why}), "
                     "so the two-neuron program is exact")
    else:
        statement = ("upper bound on the optimal objective (value of the two-neuron spike-free "
                     "program); it equals the optimum only if X is spike-free")
    if certify and alpha > 0:
        from .certify import certify as _certify

        cert = _certify(net, X, y, alpha)
        info["certificate"] = cert
        if cert.exact and cert.relative_gap <= 1e-7:
            is_exact = True
            statement = ("optimal objective over networks of any width, certified by the "
                         "exact separation oracle")
    if alpha == 0:
        statement += "; alpha=0: minimum path norm interpolation (program_value is the path norm)"
    return _result(net, X, y, alpha, lower, "spike_free", info, is_exact, statement, program)


# ----------------------------------------------------------------------------
# spike-free test
# ----------------------------------------------------------------------------

def is_spike_free(X, n_samples=2000, random_state=None, *, tol=1e-8, n_ascent=20,
                  rtol=1e-12, return_max=False):
    """Sampled test of the spike-free property ``(X B)_+ <= X B`` (math spec 4.3 (3)).

    ``X`` is spike-free when ``(Xu)_+`` lies in ``{Xz : ||z|| <= 1}`` for every
    unit ``u``: for full-row-rank ``X`` that is ``max_{||u||<=1} ||X^+ (Xu)_+|| <= 1``;
    in general ``(Xu)_+`` must also lie in the range of ``X``.  This is a
    **sampled check, not a proof**: it draws ``n_samples`` unit directions in the
    row space of ``X`` (the rest of ``u`` only shrinks ``Xu``), improves each by
    ``n_ascent`` fixed-point ascent steps ``u <- normalise(M_D^T M_D u)`` with
    ``M_D = X^+ D(u) X`` on the current activation pattern, and reports whether
    the largest ratio found is ``<= 1 + tol``.  ``False`` is conclusive (a
    witness was found); ``True`` means no violation was found.  For ``X`` of
    rank one the two directions ``+-a`` are checked and the test is exact.

    Parameters
    ----------
    X : array of shape (n, d)
    n_samples : int, default=2000
    random_state : int, Generator or None
    tol : float, default=1e-8
        Slack on the ratio and on the relative distance of ``(Xu)_+`` to the range.
    n_ascent : int, default=20
    rtol : float, default=1e-12
        Relative singular-value cut defining the rank of ``X``.
    return_max : bool, default=False
        Also return the largest ratio found (``inf`` when ``(Xu)_+`` left the range).

    Returns
    -------
    bool, or (bool, float) with ``return_max``
    """
    X = check_X(X, "X").astype(np.float64, copy=False)
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) \
            or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    _check_positive(tol, "tol")
    rng = np.random.default_rng(random_state)
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    if s[0] == 0:
        return (True, 0.0) if return_max else True
    r = int(np.sum(s > rtol * s[0]))
    Ur, sr = U[:, :r], s[:r]
    # in the row-space coordinates c (u = V_r c): X u = Ur (sr * c)
    if r == 1:
        C = np.array([[1.0, -1.0]])       # the only two unit directions: the test is exact
    else:
        C = rng.standard_normal((r, n_samples))
        C /= np.linalg.norm(C, axis=0)
    for _ in range(n_ascent):
        Pm = np.maximum(Ur @ (sr[:, None] * C), 0.0)          # (Xu)_+, (n, N)
        Z = (Ur.T @ Pm) / sr[:, None]                          # X^+ (Xu)_+ in row coordinates
        # gradient of ||Z||^2 / 2 on the current pattern: M^T M c, M = diag(1/s) Ur^T D Ur diag(s)
        Dm = Pm > 0
        G = sr[:, None] * (Ur.T @ (Dm * (Ur @ (Z / sr[:, None]))))
        nrm = np.linalg.norm(G, axis=0)
        ok = nrm > 0
        C[:, ok] = G[:, ok] / nrm[ok]
    Pm = np.maximum(Ur @ (sr[:, None] * C), 0.0)
    proj = Ur @ (Ur.T @ Pm)
    size = np.maximum(np.linalg.norm(Pm, axis=0), 1e-300)
    outside = np.linalg.norm(Pm - proj, axis=0) > tol * size
    ratio = np.linalg.norm((Ur.T @ Pm) / sr[:, None], axis=0)
    best = float("inf") if np.any(outside) else float(ratio.max(initial=0.0))
    ok = best <= 1.0 + tol
    return (ok, best) if return_max else ok
