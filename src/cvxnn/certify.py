"""Optimality certificates for any two-layer ReLU network, whoever trained it.

For a network ``f(X) = relu(Xa W1a^T) W2`` (``W1a = [W1, b1]``) with outputs
``Z`` and weight-decay objective ``F = L(Z, Y) + alpha/2 (||W1a||^2 + ||W2||^2)``,
weak duality (math spec sections 2.1 and 2.4) gives, for every ``Theta`` with
``sigma(Theta) <= alpha`` (the dual constraint over *all* hidden units, see
:mod:`cvxnn.oracle`), the lower bound ``p* >= -L*(-Theta)`` on the optimum over
networks of every width.  :func:`certify` takes ``Theta = s * (-grad L(Z))``
with ``s = min(1, alpha / sigma)`` (and the best smaller ``s`` for the squared
loss), so that

    gap = F(network) - (-L*(-Theta)) >= F(network) - p*,

an upper bound on the network's suboptimality.  When the oracle is exact
(enumerated cells) the bound is rigorous; otherwise ``sigma`` is only a lower
estimate, the "lower bound" may be too high and the certificate says so
(``exact=False``).  If ``sigma > alpha`` the oracle's best unit, added to the
network with a small output weight, lowers the objective at rate
``sigma - alpha`` (:meth:`Certificate.improve` does it with a line search).

Several outputs: with ``outputs="joint"`` (default) the certificate is for
weight decay on vector output weights, the objective
:meth:`cvxnn.TwoLayerReLU.objective` computes; its cell maxima are bounded by
spectral norms when enumerating.  ``outputs="separate"`` certifies against the
one-vs-all class of networks (every unit feeds one output) that
:func:`cvxnn.solve` optimises.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._data import augment, check_alpha, check_X, check_y, encode_targets
from .losses import get_loss
from .network import GatedTwoLayerReLU, TwoLayerReLU
from .oracle import OracleResult, separation_oracle
from .problems import _best_dual

__all__ = ["certify", "Certificate", "as_network"]


@dataclass
class Certificate:
    """What :func:`certify` returns.

    Attributes
    ----------
    objective : float
        Weight-decay objective of the network as given.
    balanced_objective : float
        Objective after balancing (``<= objective``); the same predictions.
    lower_bound : float
        Dual value: a lower bound on the optimal objective over networks of any
        width when ``exact`` (otherwise an estimate, not a certified bound).
    gap, relative_gap : float
        ``objective - lower_bound`` and ``gap / objective``: upper bounds on
        the (relative) suboptimality when ``exact``.
    exact : bool
        Whether the separation oracle examined every activation pattern, i.e.
        whether ``lower_bound`` is certified.
    is_optimal : bool
        ``exact`` and ``relative_gap <= tol``.
    sigma : float
        Largest dual-constraint value found, ``max_u |theta^T (Xa u)_+|``
        (``<= alpha`` means the residual is dual feasible).
    alpha : float
    violating_neuron : dict or None
        When ``sigma > alpha``: ``{"direction": (d_aug,) unit first-layer vector
        (bias last), "output": (c,) unit output vector, "value": sigma}``.
    oracle : OracleResult
    statement : str
        One sentence stating what is (or is not) certified.
    """

    objective: float
    balanced_objective: float
    lower_bound: float
    gap: float
    relative_gap: float
    exact: bool
    is_optimal: bool
    sigma: float
    alpha: float
    violating_neuron: dict | None
    oracle: OracleResult
    statement: str
    network: TwoLayerReLU
    _X: np.ndarray
    _y: np.ndarray

    def improve(self, max_halvings=60) -> TwoLayerReLU:
        """The balanced network plus the violating unit, with a line-searched weight.

        The unit ``(sqrt(t) u, sqrt(t) o)`` adds ``t (Xa u)_+ o^T`` to the
        outputs at cost ``alpha t``; ``t`` starts at the minimiser of the
        quadratic model and is halved until the objective decreases.  Raises
        ``ValueError`` when there is no violating unit.
        """
        if self.violating_neuron is None:
            raise ValueError("no violating neuron: sigma <= alpha, nothing to add")
        net = self.network.balance()
        X, y = self._X, self._y
        u = self.violating_neuron["direction"]
        o = self.violating_neuron["output"]
        Xa = augment(X, net.bias)
        h = np.maximum(Xa @ u, 0.0)
        n = X.shape[0]
        curv = get_loss(net.loss).curvature(n) * float(h @ h) * float(o @ o)
        excess = self.violating_neuron["value"] - self.alpha
        t = excess / curv if curv > 0 else 1.0
        base = net.objective(X, y, self.alpha)
        A = net._first_layer()
        for _ in range(max_halvings):
            A2 = np.vstack([A, np.sqrt(t) * u[None, :]])
            W22 = np.vstack([np.array(net.W2), np.sqrt(t) * o[None, :]])
            cand = net._replace(A2, W22)      # certify only holds (non-gated) ReLU networks
            if cand.objective(X, y, self.alpha) < base:
                return cand
            t *= 0.5
        raise RuntimeError("line search failed to lower the objective (rounding level excess)")

    def __repr__(self) -> str:
        tag = "certified" if self.exact else "NOT certified (heuristic oracle)"
        return (f"Certificate(objective={self.objective:.8g}, lower_bound={self.lower_bound:.8g}, "
                f"relative_gap={self.relative_gap:.3e}, is_optimal={self.is_optimal}, "
                f"sigma/alpha={self.sigma / self.alpha if self.alpha > 0 else np.inf:.6g}, {tag})")


def _from_torch(module):
    """``(W1, b1, W2)`` from a ``Linear -> ReLU -> Linear`` torch module."""
    layers = [m for m in module.modules() if len(list(m.children())) == 0]
    kinds = [type(m).__name__ for m in layers]
    if kinds != ["Linear", "ReLU", "Linear"]:
        raise ValueError(
            "network: a torch module must be Linear -> ReLU -> Linear (e.g. "
            f"torch.nn.Sequential(Linear(d, m), ReLU(), Linear(m, c, bias=False))); got {kinds}"
        )
    first, _, second = layers
    W1 = first.weight.detach().cpu().double().numpy()
    b1 = None if first.bias is None else first.bias.detach().cpu().double().numpy()
    W2 = second.weight.detach().cpu().double().numpy().T
    if second.bias is not None and np.any(second.bias.detach().cpu().double().numpy() != 0):
        raise ValueError(
            "network: the output Linear layer has a non-zero bias; cvxnn's networks (and the "
            "convex reformulation) have no output bias. Use Linear(m, c, bias=False)."
        )
    return W1, b1, W2


def as_network(network, n_features: int, loss: str = "squared", classes=None) -> TwoLayerReLU:
    """Convert ``network`` to a :class:`cvxnn.TwoLayerReLU`.

    Accepts a ``TwoLayerReLU``, a tuple ``(W1, W2)`` (``W1`` of shape
    ``(m, d)``, or ``(m, d + 1)`` with the biases in the last column) or
    ``(W1, b1, W2)``, with ``W2`` of shape ``(m,)`` or ``(m, c)``, or a PyTorch
    ``Linear -> ReLU -> Linear`` module (no output bias).
    """
    if isinstance(network, GatedTwoLayerReLU):
        raise TypeError(
            "network is a gated ReLU network; certify applies to ReLU networks. Convert a gated "
            "solution first with SolveResult.to_relu(X)."
        )
    if isinstance(network, TwoLayerReLU):
        return network
    if isinstance(network, (tuple, list)):
        if len(network) == 2:
            W1, W2 = (np.asarray(a, dtype=np.float64) for a in network)
            if W1.ndim != 2:
                raise ValueError(f"network: W1 must be 2-D (m, d), got shape {W1.shape}")
            if W1.shape[1] == n_features + 1:
                W1, b1 = W1[:, :n_features], W1[:, n_features]
            elif W1.shape[1] == n_features:
                b1 = None
            else:
                raise ValueError(
                    f"network: W1 must have shape (m, {n_features}) or (m, {n_features + 1}) "
                    f"(biases in the last column) for X with {n_features} features; got {W1.shape}"
                )
        elif len(network) == 3:
            W1, b1, W2 = network
            b1 = None if b1 is None else np.asarray(b1, dtype=np.float64)
        else:
            raise ValueError(f"network: a tuple must be (W1, W2) or (W1, b1, W2), got {len(network)} items")
        return TwoLayerReLU(W1, b1, W2, classes=classes, loss=loss)
    if hasattr(network, "modules") and hasattr(network, "parameters"):
        W1, b1, W2 = _from_torch(network)
        return TwoLayerReLU(W1, b1, W2, classes=classes, loss=loss)
    raise TypeError(
        "network must be a cvxnn.TwoLayerReLU, a tuple (W1, W2) or (W1, b1, W2), or a torch "
        f"Linear-ReLU-Linear module; got {type(network).__name__}"
    )


def certify(network, X, y, alpha, *, loss=None, oracle="auto", outputs="joint", tol=1e-6,
            n_starts=64, random_state=0, classification=None) -> Certificate:
    """Certify (or refute) the global optimality of a two-layer ReLU network.

    Parameters
    ----------
    network : TwoLayerReLU, tuple or torch module
        See :func:`as_network`.
    X : array of shape (n, d)
    y : array of shape (n,) or (n, c)
        Targets or labels, encoded as the loss expects (as in :func:`cvxnn.solve`).
    alpha : float
        Weight decay of the objective ``L + alpha/2 (||W1||^2 + ||b1||^2 + ||W2||^2)``;
        must be positive.
    loss : {"squared", "logistic", "cross_entropy"}, optional
        Defaults to the network's loss (``"squared"`` for tuples and torch modules).
    oracle : {"auto", "enumerate", "search"}, default="auto"
        ``enumerate`` examines every activation pattern (data of small rank) and
        makes the bound rigorous; ``search`` is the multi-start heuristic.
    outputs : {"joint", "separate"}, default="joint"
        Class of networks the bound refers to when there are several outputs
        (see the module docstring).
    tol : float, default=1e-6
        ``is_optimal`` threshold on the relative gap.
    n_starts, random_state
        Passed to :func:`cvxnn.oracle.separation_oracle`.
    classification : bool, optional
        Label encoding for the squared loss (as in :func:`cvxnn.solve`).

    Returns
    -------
    Certificate
    """
    X = check_X(X, "X").astype(np.float64, copy=False)
    y = check_y(y, X.shape[0], "y")
    alpha = check_alpha(alpha)
    if alpha <= 0:
        raise ValueError("alpha must be positive to certify (alpha = 0 has no dual constraint)")
    if outputs not in ("joint", "separate"):
        raise ValueError(f"outputs must be 'joint' or 'separate', got {outputs!r}")
    if isinstance(network, TwoLayerReLU):
        net = as_network(network, X.shape[1])
        name = net.loss if loss is None else loss
        Y = net.encode_targets(y, name)
    else:
        name = "squared" if loss is None else loss
        Y, classes = encode_targets(y, name, classification)
        net = as_network(network, X.shape[1], loss=name, classes=classes)
    if net.n_features_in != X.shape[1]:
        raise ValueError(f"X has {X.shape[1]} features, but the network expects {net.n_features_in}")
    if Y.shape[1] != net.n_outputs:
        raise ValueError(f"y encodes {Y.shape[1]} output(s) for loss={name!r}, but the network "
                         f"has {net.n_outputs}")
    lossf = get_loss(name)
    objective = net.objective(X, y, alpha, loss=name)
    bal = net.balance()
    balanced = bal.objective(X, y, alpha, loss=name)
    Z = np.asarray(bal.forward(X), dtype=np.float64)
    Theta = -lossf.gradient(Z, Y)
    Xa = augment(X, net.bias)
    cand = bal._first_layer().T.astype(np.float64)
    cand = cand[:, np.linalg.norm(cand, axis=0) > 0]
    orc = separation_oracle(X, Theta, bias=net.bias, method=oracle, outputs=outputs,
                            candidates=cand, n_starts=n_starts, random_state=random_state, _Xa=Xa)
    sigma = orc.upper_bound if orc.exact else orc.value
    s_max = 1.0 if sigma <= alpha else alpha / sigma
    lower, _ = _best_dual(lossf, Theta, Y, s_max)
    gap = max(objective - lower, 0.0)
    rel = gap / max(abs(objective), np.finfo(float).tiny)
    vn = None
    if orc.value > alpha and orc.n_neurons:
        vn = {"direction": orc.directions[:, 0].copy(), "output": orc.output_directions[:, 0].copy(),
              "value": float(orc.values[0])}
    is_opt = bool(orc.exact and rel <= tol)
    if orc.exact:
        statement = (f"certified: the objective is within {gap:.3e} ({rel:.2e} relative) of the "
                     "global optimum over two-layer ReLU networks of any width"
                     + (" (one-vs-all outputs)" if outputs == "separate" and net.n_outputs > 1 else ""))
    else:
        statement = ("not certified: the heuristic oracle found no unit violating the dual constraint "
                     f"by more than sigma/alpha = {sigma / alpha:.6g}; the gap {rel:.2e} assumes it "
                     "found the worst unit" if sigma <= alpha else
                     f"not certified, and suboptimal: a unit with value sigma/alpha = {sigma / alpha:.6g} "
                     "> 1 lowers the objective when added")
    return Certificate(objective=float(objective), balanced_objective=float(balanced),
                       lower_bound=float(lower), gap=float(gap), relative_gap=float(rel),
                       exact=bool(orc.exact), is_optimal=is_opt, sigma=float(sigma), alpha=alpha,
                       violating_neuron=vn, oracle=orc, statement=statement, network=net,
                       _X=X, _y=y)
