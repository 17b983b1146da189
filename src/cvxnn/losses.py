"""Loss functions of the convex programs: value, gradient and Fenchel dual.

Every loss acts on a prediction matrix ``Z`` of shape ``(n, c)`` and an encoded
target matrix ``Y`` of the same shape (see :func:`cvxnn._data.encode_targets`):

* ``squared``:        ``L(Z) = ||Z - Y||_F^2 / (2 n)``, ``Y`` real.
* ``logistic``:       ``L(Z) = mean_j log(1 + exp(-y_j z_j))``, ``c = 1``, ``Y`` in {-1, +1}.
* ``cross_entropy``:  ``L(Z) = mean_j [logsumexp(Z_j) - <Y_j, Z_j>]``, ``Y`` one-hot.

Duality convention used by the certificates.  For any ``Theta`` of shape
``(n, c)`` in the domain of the conjugate,

    L(Z) >= -<Theta, Z> - L^*(-Theta),

so ``dual_value(Theta, Y) = -L^*(-Theta)`` is a lower bound on the primal
objective whenever ``Theta`` also satisfies the penalty's dual constraints.  The
natural dual point is ``Theta = -grad L(Z)``; multiplying it by any ``s`` in
``[0, 1]`` keeps it in the conjugate's domain for all three losses.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, log_expit, logsumexp, softmax, xlogy

__all__ = ["Loss", "SquaredLoss", "LogisticLoss", "CrossEntropyLoss", "get_loss", "LOSSES"]


class Loss:
    """Base class of a smooth convex loss on predictions ``Z`` of shape ``(n, c)``."""

    name: str = ""
    #: whether ``predict_proba`` makes sense for this loss
    gives_probabilities: bool = False

    def value(self, Z: np.ndarray, Y: np.ndarray) -> float:  # pragma: no cover - abstract
        """Loss ``L(Z, Y)`` (a mean over the ``n`` samples) of predictions ``Z`` (n, c)."""
        raise NotImplementedError

    def gradient(self, Z: np.ndarray, Y: np.ndarray) -> np.ndarray:  # pragma: no cover
        """Gradient of :meth:`value` with respect to ``Z``, shape ``(n, c)``."""
        raise NotImplementedError

    def value_and_gradient(self, Z: np.ndarray, Y: np.ndarray) -> tuple[float, np.ndarray]:
        """``(value(Z, Y), gradient(Z, Y))``, sharing the work where possible."""
        return self.value(Z, Y), self.gradient(Z, Y)

    def dual_value(self, Theta: np.ndarray, Y: np.ndarray) -> float:  # pragma: no cover
        """Return ``-L^*(-Theta)`` (``-inf`` outside the conjugate's domain)."""
        raise NotImplementedError

    def curvature(self, n: int) -> float:
        """Upper bound on the Lipschitz constant of ``grad L`` in Frobenius norm."""
        raise NotImplementedError  # pragma: no cover

    def row_scale_slopes(self, Theta: np.ndarray, Y: np.ndarray) -> np.ndarray:  # pragma: no cover
        """Rate at which ``dual_value`` drops when the rows of ``Theta`` shrink.

        Returns ``r`` of shape ``(n,)`` with ``r_j = <grad dual_value(Theta)_j, Theta_j>``,
        so that ``dual_value((1 - delta) * Theta) ~ dual_value(Theta) - r @ delta`` for
        small row factors ``delta >= 0``.  Row scaling by factors in ``[0, 1]`` keeps
        ``Theta`` in the conjugate's domain for every loss here.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SquaredLoss(Loss):
    """``||Z - Y||_F^2 / (2 n)`` (the reference library's scaling for one output)."""

    name = "squared"

    def value(self, Z, Y):
        n = Z.shape[0]
        R = Z - Y
        return float(np.vdot(R, R).real) / (2.0 * n)

    def gradient(self, Z, Y):
        return (Z - Y) / Z.shape[0]

    def value_and_gradient(self, Z, Y):
        n = Z.shape[0]
        R = Z - Y
        return float(np.vdot(R, R).real) / (2.0 * n), R / n

    def dual_value(self, Theta, Y):
        n = Theta.shape[0]
        return float(np.vdot(Theta, Y).real) - 0.5 * n * float(np.vdot(Theta, Theta).real)

    def curvature(self, n):
        return 1.0 / n

    def row_scale_slopes(self, Theta, Y):
        n = Theta.shape[0]
        return np.einsum("jk,jk->j", Y - n * Theta, Theta)


class LogisticLoss(Loss):
    """``mean_j log(1 + exp(-y_j z_j))`` for labels ``y_j`` in {-1, +1}; ``c = 1``."""

    name = "logistic"
    gives_probabilities = True

    def value(self, Z, Y):
        return float(-np.mean(log_expit(Y * Z)))

    def gradient(self, Z, Y):
        return -Y * expit(-Y * Z) / Z.shape[0]

    def value_and_gradient(self, Z, Y):
        M = Y * Z
        return float(-np.mean(log_expit(M))), -Y * expit(-M) / Z.shape[0]

    def dual_value(self, Theta, Y):
        n = Theta.shape[0]
        q = n * Theta * Y
        tol = 1e-12
        if np.any(q < -tol) or np.any(q > 1 + tol):
            return -np.inf
        q = np.clip(q, 0.0, 1.0)
        return float(-(xlogy(q, q) + xlogy(1 - q, 1 - q)).sum() / n)

    def curvature(self, n):
        return 0.25 / n

    def row_scale_slopes(self, Theta, Y):
        n = Theta.shape[0]
        q = np.clip(n * Theta * Y, 0.0, 1.0)
        logit = np.log(np.maximum(q, 1e-300)) - np.log(np.maximum(1.0 - q, 1e-300))
        return -(q * np.clip(logit, -700.0, 700.0)).sum(axis=1) / n


class CrossEntropyLoss(Loss):
    """``mean_j [logsumexp(Z_j) - <Y_j, Z_j>]`` for one-hot rows ``Y_j``."""

    name = "cross_entropy"
    gives_probabilities = True

    def value(self, Z, Y):
        return float(np.mean(logsumexp(Z, axis=1) - np.sum(Y * Z, axis=1)))

    def gradient(self, Z, Y):
        return (softmax(Z, axis=1) - Y) / Z.shape[0]

    def value_and_gradient(self, Z, Y):
        lse = logsumexp(Z, axis=1, keepdims=True)
        val = float(np.mean(lse[:, 0] - np.sum(Y * Z, axis=1)))
        return val, (np.exp(Z - lse) - Y) / Z.shape[0]

    def dual_value(self, Theta, Y):
        n = Theta.shape[0]
        Q = Y - n * Theta
        tol = 1e-10
        if np.any(Q < -tol) or np.any(np.abs(Q.sum(axis=1) - 1.0) > 1e-8):
            return -np.inf
        Q = np.clip(Q, 0.0, None)
        return float(-xlogy(Q, Q).sum() / n)

    def curvature(self, n):
        return 0.5 / n

    def row_scale_slopes(self, Theta, Y):
        n = Theta.shape[0]
        Q = np.maximum(Y - n * Theta, 1e-300)
        return np.einsum("jk,jk->j", np.log(Q) + 1.0, Theta)


LOSSES: dict[str, type[Loss]] = {
    "squared": SquaredLoss,
    "logistic": LogisticLoss,
    "cross_entropy": CrossEntropyLoss,
}


def get_loss(loss: str | Loss) -> Loss:
    """Return a :class:`Loss` instance for a name in :data:`LOSSES` or an instance."""
    if isinstance(loss, Loss):
        return loss
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(
            f"loss must be one of {sorted(LOSSES)}, got {loss!r}"
        )
    return LOSSES[loss]()
