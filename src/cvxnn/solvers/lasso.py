"""Lasso over fixed ReLU features: the neuron-level restricted primal of the cutting plane.

For unit directions ``u_1..u_m`` (columns of ``U``) the features are
``A = (Xa U)_+`` of shape ``(n, m)`` and the restricted problem (math spec
section 4.6, relaxation R1, one-vs-all outputs) is

    min_W  L(A W, Y) + alpha * sum_{j,k} |W[j, k]|,      W of shape (m, c).

Its value upper-bounds the optimum over all networks; any solution is a
network (unit ``j`` with first layer ``u_j`` and output row ``W[j]``).  Solved
by FISTA with backtracking and gradient-mapping restarts, stopping on the
relative duality gap of the restricted problem.
"""

from __future__ import annotations

import numpy as np

from ..problems import _best_dual

__all__ = ["solve_feature_lasso"]


def _soft(W, t):
    return np.sign(W) * np.maximum(np.abs(W) - t, 0.0)


def _gap(A, W, Y, loss, alpha, Z=None):
    if Z is None:
        Z = A @ W
    primal = loss.value(Z, Y) + alpha * float(np.abs(W).sum())
    Theta = -loss.gradient(Z, Y)
    cmax = float(np.abs(A.T @ Theta).max(initial=0.0))
    s_max = 1.0 if cmax <= alpha else alpha / cmax
    dual, _ = _best_dual(loss, Theta, Y, s_max)
    return primal, dual, Theta


def solve_feature_lasso(A, Y, loss, alpha, W0=None, *, tol=1e-6, max_iter=5000, check_every=10):
    """FISTA for ``min_W L(A W, Y) + alpha ||W||_1``.

    Parameters
    ----------
    A : ndarray (n, m)
        Features.
    Y : ndarray (n, c)
    loss : Loss
    alpha : float
    W0 : ndarray (m, c), optional
        Warm start.
    tol : float
        Relative duality gap target.

    Returns
    -------
    dict with ``W``, ``Z`` (= A W), ``primal``, ``dual``, ``relative_gap``, ``n_iter``.
    """
    n, m = A.shape
    c = Y.shape[1]
    W = np.zeros((m, c)) if W0 is None else np.array(W0, dtype=float)
    if m == 0:
        Z = np.zeros_like(Y)
        primal = loss.value(Z, Y)
        return {"W": W, "Z": Z, "primal": primal, "dual": primal, "relative_gap": 0.0, "n_iter": 0}
    # Lipschitz estimate: curvature * ||A||_2^2 by power iteration
    v = np.ones(m) / np.sqrt(m)
    for _ in range(15):
        w = A.T @ (A @ v)
        nv = np.linalg.norm(w)
        if nv == 0:
            break
        v = w / nv
    Lip = max(loss.curvature(n) * float(np.linalg.norm(A @ v)) ** 2, 1e-300)
    step = 1.0 / Lip
    Wy, t = W.copy(), 1.0
    Z = A @ W
    Zy = Z.copy()
    best = None
    rel = np.inf
    it = 0
    for it in range(1, max_iter + 1):
        fy, gy = loss.value_and_gradient(Zy, Y)
        Gy = A.T @ gy
        while True:
            Wn = _soft(Wy - step * Gy, step * alpha)
            Dw = Wn - Wy
            Zn = A @ Wn
            fn = loss.value(Zn, Y)
            if (fn <= fy + float(np.vdot(Gy, Dw)) + 0.5 / step * float(np.vdot(Dw, Dw))
                    + 1e-13 * abs(fy)) or step < 1e-30:
                break
            step *= 0.5
        # restart when the momentum points uphill (gradient-mapping test)
        if float(np.vdot(Wy - Wn, Wn - W)) > 0:
            t = 1.0
        t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        beta = (t - 1.0) / t_new
        Wy = Wn + beta * (Wn - W)
        Zy = A @ Wy                                  # recomputed: no drift between Zy and Wy
        W, Z, t = Wn, Zn, t_new
        step *= 1.1
        if it % check_every == 0:
            primal, dual, _ = _gap(A, W, Y, loss, alpha, Zn)
            if best is None or dual > best:
                best = dual
            rel = max(primal - best, 0.0) / max(abs(primal), 1e-300)
            if rel <= tol:
                break
    Z = A @ W
    primal, dual, _ = _gap(A, W, Y, loss, alpha, Z)
    dual = max(dual, best if best is not None else -np.inf)
    rel = max(primal - dual, 0.0) / max(abs(primal), 1e-300)
    return {"W": W, "Z": Z, "primal": primal, "dual": dual, "relative_gap": rel, "n_iter": it}


def _qobj(H, b, w, alpha):
    return 0.5 * float(w @ (H @ w)) - float(b @ w) + alpha * float(np.abs(w).sum())


def _active_set_quadratic(H, b, w, alpha, max_steps=2000, add_at_once=20):
    """Exact minimiser of ``1/2 w^T H w - b^T w + alpha ||w||_1`` by a feature-sign active set.

    Each step solves the smooth problem on the support with the signs fixed
    (``H_SS w_S = b_S - alpha sign_S``) and moves to the best point of the
    segment towards it, checking every zero crossing (so the true objective
    decreases); coordinates that violate ``|g_j| <= alpha`` off the support are
    added, the most violated first.  Warm starts with a nearly right support
    converge in a few steps.
    """
    m = w.size
    w = w.copy()
    scale = max(float(np.abs(b).max(initial=0.0)), alpha, 1e-300)
    f = _qobj(H, b, w, alpha)
    k_add = add_at_once
    for _ in range(max_steps):
        g = H @ w - b
        S = np.flatnonzero(w)
        sgn = np.sign(w)
        # optimality on the support and off it
        on = np.abs(g[S] + alpha * sgn[S]).max(initial=0.0)
        off_mask = np.ones(m, dtype=bool)
        off_mask[S] = False
        viol = np.flatnonzero(off_mask & (np.abs(g) > alpha * (1 + 1e-12)))
        if on <= 1e-10 * scale and viol.size == 0:
            break
        if on <= 1e-10 * scale or S.size == 0:
            top = viol[np.argsort(-np.abs(g[viol]))[:k_add]]
            sgn[top] = -np.sign(g[top])
            S = np.union1d(S, top)
        th = sgn[S]
        HS = H[np.ix_(S, S)]
        try:
            target = np.linalg.solve(HS + 1e-14 * np.trace(HS) / max(S.size, 1) * np.eye(S.size),
                                     b[S] - alpha * th)
        except np.linalg.LinAlgError:
            target = np.linalg.lstsq(HS, b[S] - alpha * th, rcond=None)[0]
        d = target - w[S]
        # candidate step sizes: 1 and every zero crossing in (0, 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            tz = -w[S] / d
        ts = np.concatenate([[1.0], tz[(tz > 0) & (tz < 1)]])
        best_f, best_w = f, None
        for t in ts:
            cand = w.copy()
            cand[S] = w[S] + t * d
            cand[S[np.abs(cand[S]) <= 1e-15 * np.abs(w[S] + d).max(initial=1.0)]] = 0.0
            fc = _qobj(H, b, cand, alpha)
            if fc < best_f - 1e-16 * abs(best_f):
                best_f, best_w = fc, cand
        if best_w is None:
            if k_add > 1:
                k_add = 1                     # fall back to the one-at-a-time rule
                continue
            break
        w, f = best_w, best_f
        k_add = add_at_once
    return w


def solve_feature_lasso_newton(A, Y, loss, alpha, W0=None, *, tol=1e-6, max_outer=50):
    """Proximal Newton with an exact active-set inner solver for ``min_W L(A W, Y) + alpha ||W||_1``.

    For the squared loss the problem is exactly quadratic (Gram ``A^T A / n``):
    one active-set solve per output.  For the logistic loss each outer
    step minimises the second-order model (weighted Gram ``A^T diag(h) A``)
    exactly by the active-set method, with a backtracking line search on the true objective.
    Other losses (cross-entropy) use :func:`solve_feature_lasso`.  Stops on the
    relative duality gap of the restricted problem.
    """
    if loss.name not in ("squared", "logistic"):
        return solve_feature_lasso(A, Y, loss, alpha, W0, tol=tol)
    n, m = A.shape
    c = Y.shape[1]
    W = np.zeros((m, c)) if W0 is None else np.array(W0, dtype=float)
    if m == 0:
        return solve_feature_lasso(A, Y, loss, alpha, W, tol=tol)
    best = -np.inf
    it = 0
    for it in range(1, max_outer + 1):
        Z = A @ W
        if loss.name == "squared":
            H = (A.T @ A) / n
            B = (A.T @ Y) / n
            for k in range(c):
                W[:, k] = _active_set_quadratic(H, B[:, k], W[:, k], alpha)
        else:  # logistic, one output
            f0 = loss.value(Z, Y) + alpha * float(np.abs(W).sum())
            grad = loss.gradient(Z, Y)[:, 0]                      # dL/dz, includes 1/n
            p = 1.0 / (1.0 + np.exp(-Y[:, 0] * Z[:, 0]))
            h = np.maximum(p * (1.0 - p), 1e-12) / n              # d2L/dz2
            H = (A.T * h) @ A
            b = H @ W[:, 0] - A.T @ grad
            w_new = _active_set_quadratic(H, b, W[:, 0].copy(), alpha)
            step = 1.0
            dw = w_new - W[:, 0]
            fc = np.inf
            for _ in range(12):
                cand = W[:, 0] + step * dw
                fc = loss.value(A @ cand[:, None], Y) + alpha * float(np.abs(cand).sum())
                if fc < f0:
                    break
                step *= 0.5
            if fc < f0:
                W[:, 0] = cand
            if not fc < f0 or step < 1e-2:
                # nearly singular Hessian (confident predictions): proximal gradient steps
                out = solve_feature_lasso(A, Y, loss, alpha, W, tol=tol, max_iter=2000)
                W = out["W"]
        primal, dual, _ = _gap(A, W, Y, loss, alpha)
        best = max(best, dual)
        rel = max(primal - best, 0.0) / max(abs(primal), 1e-300)
        if rel <= tol:
            break
        if loss.name == "squared":
            break
    Z = A @ W
    primal, dual, _ = _gap(A, W, Y, loss, alpha, Z)
    dual = max(dual, best)
    rel = max(primal - dual, 0.0) / max(abs(primal), 1e-300)
    return {"W": W, "Z": Z, "primal": primal, "dual": dual, "relative_gap": rel, "n_iter": it}
