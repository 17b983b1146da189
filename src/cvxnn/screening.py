"""Gap-safe screening of the gated ReLU group lasso.

For the program ``min_U L(Z) + alpha sum_b ||u_b||`` (blocks ``b = (i, k)``, design
block ``A_i = D_i Xa``) the dual is ``max_Theta -L*(-Theta)`` subject to
``||A_i^T Theta_k|| <= alpha``.  The loss is ``beta``-smooth (``beta =
loss.curvature(n)``: ``1/n`` squared, ``1/(4n)`` logistic, ``1/(2n)`` cross-entropy),
so the dual objective is ``1/beta``-strongly concave and every dual optimum lies
in the ball ``||Theta - Theta_hat|| <= r = sqrt(2 beta gap)`` around any feasible
``Theta_hat`` whose duality gap is ``gap`` (Ndiaye et al., "Gap safe screening
rules", 2017).  Hence block ``b`` is zero at *every* primal optimum when

    ||A_i^T Theta_hat_k|| + r ||A_i||_2 < alpha,

and ``||A_i||_2 <= ||A_i||_F = sqrt(sum_j D_ji ||x_j||^2)`` costs one
matrix-vector product with the masks.  Screened blocks can be removed from the
problem without changing its optimum; the rule is safe (never removes an active
block) whatever the accuracy of ``U``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["block_frobenius_norms", "gap_safe_screen"]


def block_frobenius_norms(Xa: np.ndarray, D: np.ndarray) -> np.ndarray:
    """``||D_i Xa||_F`` for every pattern ``i``: an array of shape ``(P,)``."""
    row_sq = np.einsum("nd,nd->n", Xa, Xa, dtype=np.float64)
    return np.sqrt(np.maximum(row_sq @ D.astype(np.float64, copy=False), 0.0))


def gap_safe_screen(dual_norms: np.ndarray, dual_scale: float, gap: float, alpha: float,
                    beta: float, frob: np.ndarray) -> np.ndarray:
    """Boolean mask of shape ``(P, c)``: ``True`` where block ``(i, k)`` is provably zero.

    Parameters
    ----------
    dual_norms : ndarray of shape (P, c)
        ``||A_i^T Theta_k||`` for the unscaled dual candidate ``Theta = -grad L(Z)``.
    dual_scale : float
        The factor ``s`` making ``s Theta`` dual feasible (``Gap.dual_scale``).
    gap : float
        The absolute duality gap of ``(U, s Theta)``.
    alpha : float
        Regularisation strength; nothing is screened when ``alpha <= 0``.
    beta : float
        Smoothness constant of the loss (``loss.curvature(n)``).
    frob : ndarray of shape (P,)
        ``||D_i Xa||_F`` (see :func:`block_frobenius_norms`).
    """
    if alpha <= 0 or not np.isfinite(gap):
        return np.zeros(dual_norms.shape, dtype=bool)
    radius = np.sqrt(2.0 * beta * max(gap, 0.0))
    bound = dual_scale * dual_norms + radius * frob[:, None]
    # a relative safety margin for rounding in the products
    return bound < alpha * (1.0 - 1e-9)
