"""Interpretation of convex-trained networks: neurons as weighted sums of samples.

Objective and notation as in :func:`cvxnn.solve`::

    relu:  L(Z, Y) + alpha * sum_b ||q_b||,   Z[:, k] = sum_i D_i Xa (V_i - W_i)[:, k],
           s.t. (2 D_i - I) Xa q_b >= 0 for every block q_b = V[:, i, k] or W[:, i, k]

with ``L`` the squared loss ``||Z - Y||^2 / (2n)`` (or the mean logistic / softmax
cross-entropy loss) and ``Xa = [X, 1]`` with a bias.  Let ``Theta = -grad L(Z)``
(shape ``(n, c)``; ``(Y - Z) / n`` for the squared loss).  Stationarity of an active
block ``q`` of pattern ``i``, output ``k`` and sign ``sigma`` (``+1`` for ``V``,
``-1`` for ``W``) reads (math spec 2.4 (iii), 4.2)::

    alpha q / ||q|| = Xa^T (sigma D_i Theta_k + (2 D_i - I) lambda),   lambda >= 0,

with ``lambda`` the multipliers of the cone constraints (complementary slackness:
``lambda_r > 0`` only on rows where ``(2D_i - I) Xa q`` vanishes).  The network unit
built from ``q`` has first layer ``w = q / sqrt(||q||)`` (weights and bias) and output
weight ``a = sigma sqrt(||q||) e_k``, so that::

    w = Xa^T z,   z = (|a| / alpha) (sigma D_i Theta_k + (2 D_i - I) lambda)        (*)

exactly at an optimum: each neuron is a signed weighted sum of training samples
(the "convex autoencoder" view of Ergen & Pilanci).  In the papers' convention
(loss without ``1/n``, ``beta = n alpha``, residual ``r = y - yhat``) this is
``z = (|a| / beta) (sigma D_i r + (2 D_i - I) n lambda)``.  The gated program has no
cone, so ``z = (|a| / alpha) D_i Theta_k``.

Consequently the predictor depends on a new input only through the linear kernel
vector ``k(x) = Xa xa`` (math spec 4.4)::

    relu:   f(x) = sum_j a_j ((Xa xa)^T z_j)_+
    gated:  f(x) = sum_j a_j 1[xa^T g_j > 0] (Xa xa)^T z_j

:func:`neuron_sample_weights` computes the ``z_j``; :func:`kernel_decision_function`
evaluates the kernel form; :func:`min_cardinality` finds, on tiny problems, the
fewest neurons that interpolate the data (math spec 4.5).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from ._data import augment, check_X, check_y
from .patterns import compute_masks, enumerate_patterns
from .problems import GatedReLUProblem, ReLUProblem, group_norms

__all__ = [
    "NeuronSampleWeights", "neuron_sample_weights", "kernel_decision_function",
    "MinCardinality", "min_cardinality",
]


@dataclass
class NeuronSampleWeights:
    """Each neuron's first layer as a weighted sum of training samples.

    Attributes
    ----------
    sample_weights : ndarray of shape (m, n)
        ``z_j`` per neuron (row ``j`` matches unit ``j`` of ``result.network``).
    weights : ndarray of shape (m, d_aug)
        The units' first-layer weights ``[w_j, b_j]`` (bias last when ``bias``).
    reconstructed : ndarray of shape (m, d_aug)
        ``Xa^T z_j`` for every neuron (``sample_weights @ Xa``).
    residual : ndarray of shape (m,)
        ``||w_j - Xa^T z_j|| / ||w_j||``.  Zero at an exact optimum; otherwise the
        solver's (relative) stationarity residual.
    output_weights : ndarray of shape (m, c)
        The units' output rows ``a_j``.
    patterns : ndarray of shape (m,)
        Activation pattern (column of ``result.gates``) of each unit's block.
    signs : ndarray of shape (m,)
        ``+1`` for blocks of ``V`` (and gated blocks), ``-1`` for blocks of ``W``.
    outputs : ndarray of shape (m,)
        Output index ``k`` of each unit's block.
    multipliers : ndarray of shape (m, n)
        Cone multipliers ``lambda_j >= 0`` (zeros for the gated program).
    complementarity : ndarray of shape (m,)
        ``max_r lambda_jr * slack_jr / alpha`` with the slack of the unit direction,
        ``(2 D_i - I) Xa q / ||q||`` (zero for exact complementary slackness).
    theta : ndarray of shape (n, c)
        The dual point ``-grad L(Z)`` at the training predictions.
    scales : ndarray of shape (m,)
        ``|a_j| / alpha``: ``z_j = scales[j] * (sigma D_i Theta_k + (2D_i - I) lambda_j)``.
    gates : ndarray of shape (m, d_aug) or None
        Per-unit gates (gated formulation only).
    formulation : str
    bias : bool
    alpha : float
    """

    sample_weights: np.ndarray
    weights: np.ndarray
    reconstructed: np.ndarray
    residual: np.ndarray
    output_weights: np.ndarray
    patterns: np.ndarray
    signs: np.ndarray
    outputs: np.ndarray
    multipliers: np.ndarray
    complementarity: np.ndarray
    theta: np.ndarray
    scales: np.ndarray
    formulation: str
    bias: bool
    alpha: float
    gates: np.ndarray | None = None

    @property
    def n_neurons(self) -> int:
        """Number of neurons ``m`` (rows of ``sample_weights``)."""
        return self.sample_weights.shape[0]

    @property
    def max_residual(self) -> float:
        """Largest relative residual ``||w_j - Xa^T z_j|| / ||w_j||`` over the neurons."""
        return float(self.residual.max(initial=0.0))

    def top_samples(self, j: int, k: int = 10):
        """The ``k`` training samples with the largest ``|z_j|`` for neuron ``j``.

        Parameters
        ----------
        j : int
            Neuron index, ``0 <= j < n_neurons``.
        k : int, default=10
            Number of samples (at most ``n``).

        Returns
        -------
        indices : ndarray of shape (k,)
            Sample indices, by decreasing ``|z_j|``.
        weights : ndarray of shape (k,)
            The signed weights ``z_j[indices]``.
        """
        m, n = self.sample_weights.shape
        if isinstance(j, bool) or not isinstance(j, (int, np.integer)) or not -m <= j < m:
            raise ValueError(f"j must be a neuron index in [0, {m}), got {j!r}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        z = self.sample_weights[j]
        k = min(int(k), n)
        idx = np.argsort(-np.abs(z), kind="stable")[:k]
        return idx, z[idx]


def _check_result(result):
    for attr in ("weights", "gates", "formulation", "network", "alpha", "bias", "loss"):
        if not hasattr(result, attr):
            raise TypeError(
                f"result must be a cvxnn.SolveResult (returned by cvxnn.solve), got "
                f"{type(result).__name__}"
            )
    if result.formulation not in ("relu", "gated"):
        raise ValueError(
            f"result.formulation must be 'relu' or 'gated', got {result.formulation!r}")
    alpha = float(result.alpha)
    if not alpha > 0:
        raise ValueError(
            "the sample-weight identity needs alpha > 0 (it divides by alpha); "
            f"result.alpha = {alpha!r}"
        )
    return alpha


def _training_data(result, X, y):
    X = check_X(X, "X").astype(np.float64, copy=False)
    net = result.network
    if X.shape[1] != net.n_features_in:
        raise ValueError(
            f"X has {X.shape[1]} features but the network was trained on "
            f"{net.n_features_in}; pass the training data"
        )
    y = check_y(y, X.shape[0], "y")
    Y = net.encode_targets(y, result.loss)
    Xa = augment(X, bool(result.bias))
    D = compute_masks(X, result.gates, bias=bool(result.bias))
    return X, Xa, D, Y


def _active_units(norms: np.ndarray, threshold: float = 1e-12):
    """Flat list of active ``(pattern, output)`` blocks in the network's unit order."""
    M = float(norms.max(initial=0.0))
    keep = (norms > threshold * M) & (norms > 0)
    return np.argwhere(keep)  # pattern-major, as in cvxnn.network._units_from_blocks


def _fit_multipliers(M: np.ndarray, t: np.ndarray, slack: np.ndarray, rtol: float,
                     tiers=(1e-10, 1e-7, 1e-4, 1e-2, np.inf)):
    """Nonnegative ``lam`` (n,) with ``M lam ~= t`` using rows of small slack first.

    ``M`` (d, n) has the signed samples ``(2D_i - I)_r xa_r`` as columns.  The
    candidate rows are those whose normalised slack is below a growing threshold, so
    that complementary slackness holds as tightly as the data allow; stops at the
    first tier whose residual ``||M lam - t||`` is at most ``rtol``.
    """
    from scipy.optimize import nnls

    n = M.shape[1]
    best_lam, best_res = np.zeros(n), float(np.linalg.norm(t))
    if best_res <= rtol:
        return best_lam, best_res
    tried = 0
    for tier in tiers:
        rows = np.flatnonzero(slack <= tier)
        if rows.size == 0 or rows.size == tried:
            continue
        tried = rows.size
        sol, _ = nnls(M[:, rows], t, maxiter=max(50, 10 * rows.size))
        lam = np.zeros(n)
        lam[rows] = sol
        res = float(np.linalg.norm(M @ lam - t))
        if res < best_res:
            best_lam, best_res = lam, res
        if best_res <= rtol:
            break
    return best_lam, best_res


def neuron_sample_weights(result, X, y, *, rtol: float = 1e-12) -> NeuronSampleWeights:
    """Write each neuron's first-layer weights as a weighted sum of training samples.

    For a :class:`cvxnn.SolveResult` of the relu or gated program, returns for every
    unit ``j`` of ``result.network`` the vector ``z_j`` (length ``n``) with
    ``[w_j, b_j] = Xa^T z_j`` (exact at an optimum; see the module docstring for the
    derivation and the scaling ``|a_j| / alpha`` in cvxnn's ``1/n`` convention)::

        relu:   z_j = (|a_j| / alpha) (sigma_j D_i Theta_k + (2 D_i - I) lambda_j),  lambda_j >= 0
        gated:  z_j = (|a_j| / alpha) D_i Theta_k

    ``Theta = -grad L(Z)`` is the dual point at the convex predictions ``Z``.  The
    cone multipliers ``lambda_j`` are not stored by the solvers; they are recomputed
    per active block by nonnegative least squares, first on the rows where the cone
    constraint is active (complementary slackness) and on more rows only if needed.
    The identity then holds up to the solver's stationarity residual (reported in
    ``residual``; solve with a tight ``tol`` such as ``1e-10`` for ``1e-8``).

    Parameters
    ----------
    result : SolveResult
        From :func:`cvxnn.solve` with ``alpha > 0``.
    X : array-like of shape (n, d)
        The training data the result was computed on.
    y : array-like of shape (n,) or (n, c)
        The training targets or labels.
    rtol : float, default=1e-12
        Target of the multiplier fit: ``||alpha q/||q|| - Xa^T(...)|| <= rtol * alpha``.

    Returns
    -------
    NeuronSampleWeights
    """
    alpha = _check_result(result)
    if not (isinstance(rtol, (int, float)) and not isinstance(rtol, bool) and rtol > 0):
        raise ValueError(f"rtol must be a positive number, got {rtol!r}")
    X, Xa, D, Y = _training_data(result, X, y)
    n, d_aug = Xa.shape
    c = Y.shape[1]
    if result.formulation == "gated":
        U = np.asarray(result.weights["U"], dtype=np.float64)
        problem = GatedReLUProblem(Xa, D, Y, result.loss, alpha)
        blocks = [(U, +1.0)]
        Z = problem.apply(U)
    else:
        V = np.asarray(result.weights["V"], dtype=np.float64)
        W = np.asarray(result.weights["W"], dtype=np.float64)
        problem = ReLUProblem(Xa, D, Y, result.loss, alpha)
        Z = problem.predict(np.stack([V, W], axis=1))
        blocks = [(V, +1.0), (W, -1.0)]
    if blocks[0][0].shape != (d_aug, D.shape[1], c):
        raise ValueError(
            f"result.weights have shape {blocks[0][0].shape}, expected {(d_aug, D.shape[1], c)} "
            "for this X, y and result.gates"
        )
    Theta = -problem.loss.gradient(Z, Y)
    M_all = max(float(group_norms(B).max(initial=0.0)) for B, _ in blocks)

    pats, outs, sgns, Q = [], [], [], []
    for B, s in blocks:
        nb = group_norms(B)
        keep = (nb > 1e-12 * M_all) & (nb > 0)  # network_from_relu/gated threshold
        for i, k in np.argwhere(keep):
            pats.append(int(i))
            outs.append(int(k))
            sgns.append(s)
            Q.append(B[:, i, k])
    m = len(Q)
    pats = np.asarray(pats, dtype=np.intp)
    outs = np.asarray(outs, dtype=np.intp)
    sgns = np.asarray(sgns, dtype=np.float64)
    Q = np.asarray(Q, dtype=np.float64).reshape(m, d_aug)
    rho = np.linalg.norm(Q, axis=1)
    root = np.sqrt(rho)
    weights = Q / root[:, None] if m else Q
    out_w = np.zeros((m, c))
    out_w[np.arange(m), outs] = sgns * root
    Dm = D[:, pats].T.astype(np.float64)                    # (m, n)
    base = sgns[:, None] * Dm * Theta[:, outs].T            # sigma D_i Theta_k, (m, n)
    lam = np.zeros((m, n))
    compl = np.zeros(m)
    if result.formulation == "relu" and m:
        # vectorised: blocks whose target is met with lambda = 0 need no fit
        target = alpha * Q / rho[:, None] - base @ Xa        # (m, d_aug)
        res0 = np.linalg.norm(target, axis=1)
        Sg = 2.0 * Dm - 1.0                                   # (m, n)
        rown = np.maximum(np.linalg.norm(Xa, axis=1), np.finfo(float).tiny)
        slack = Sg * (Q @ Xa.T) / rho[:, None] / rown[None, :]  # normalised, (m, n)
        for j in np.flatnonzero(res0 > rtol * alpha):
            Mj = (Xa * Sg[j][:, None]).T                     # (d_aug, n)
            lam[j], _ = _fit_multipliers(Mj, target[j], slack[j], rtol * alpha)
        compl = np.max(lam * np.maximum(slack, 0.0) * rown[None, :], axis=1, initial=0.0) / alpha
        z_dir = base + Sg * lam
    else:
        z_dir = base
    scales = root / alpha
    Zs = scales[:, None] * z_dir
    recon = Zs @ Xa
    wn = np.maximum(np.linalg.norm(weights, axis=1), np.finfo(float).tiny)
    residual = np.linalg.norm(weights - recon, axis=1) / wn
    gates = None
    if result.formulation == "gated":
        G = np.asarray(result.gates, dtype=np.float64)
        if G.shape[0] == d_aug - 1:  # gates on X only: zero bias
            G = np.vstack([G, np.zeros((1, G.shape[1]))])
        gates = G[:, pats].T
    return NeuronSampleWeights(
        sample_weights=Zs, weights=weights, reconstructed=recon, residual=residual,
        output_weights=out_w, patterns=pats, signs=sgns, outputs=outs, multipliers=lam,
        complementarity=compl, theta=Theta, scales=scales, formulation=result.formulation,
        bias=bool(result.bias), alpha=alpha, gates=gates,
    )


def kernel_decision_function(interpretation, X, X_new, y=None) -> np.ndarray:
    """Evaluate the network through the linear kernel ``k(x) = Xa xa`` only.

    ``f(x) = sum_j a_j ((Xa xa)^T z_j)_+`` (relu) or
    ``sum_j a_j 1[xa^T g_j > 0] (Xa xa)^T z_j`` (gated), with the sample weights
    ``z_j`` of :func:`neuron_sample_weights`.  Equals
    ``result.network.decision_function(X_new)`` up to the residual of the
    sample-weight identity.

    Parameters
    ----------
    interpretation : NeuronSampleWeights or SolveResult
        Sample weights, or a result (then ``y`` is required to compute them).
    X : array-like of shape (n, d)
        Training data.
    X_new : array-like of shape (n_new, d)
        Inputs to evaluate.
    y : array-like of shape (n,), optional
        Training targets; only needed when ``interpretation`` is a result.

    Returns
    -------
    scores : ndarray of shape (n_new,) or (n_new, c)
    """
    if isinstance(interpretation, NeuronSampleWeights):
        nsw = interpretation
    else:
        if y is None:
            raise ValueError("y (the training targets) is required when passing a SolveResult")
        nsw = neuron_sample_weights(interpretation, X, y)
    X = check_X(X, "X").astype(np.float64, copy=False)
    X_new = check_X(X_new, "X_new").astype(np.float64, copy=False)
    if X.shape[0] != nsw.sample_weights.shape[1]:
        raise ValueError(
            f"X has {X.shape[0]} samples but the sample weights have length "
            f"{nsw.sample_weights.shape[1]}; pass the training data"
        )
    if X_new.shape[1] != X.shape[1]:
        raise ValueError(f"X_new has {X_new.shape[1]} features, X has {X.shape[1]}")
    Xa = augment(X, nsw.bias)
    Xn = augment(X_new, nsw.bias)
    K = Xn @ Xa.T                                  # kernel vectors k(x), (n_new, n)
    pre = K @ nsw.sample_weights.T                 # (n_new, m)
    if nsw.formulation == "gated":
        H = np.where(Xn @ nsw.gates.T > 0, pre, 0.0)
    else:
        H = np.maximum(pre, 0.0)
    F = H @ nsw.output_weights
    return F[:, 0] if F.shape[1] == 1 else F


# ------------------------------------------------------------------ l0 (fewest neurons)
@dataclass
class MinCardinality:
    """Fewest ReLU neurons that interpolate ``y`` exactly (brute force).

    Attributes
    ----------
    n_neurons : int
        Minimum number of neurons (``0`` when ``y = 0``).
    blocks : list of (int, int)
        ``(pattern, sign)`` of each neuron: pattern index into ``masks`` and the
        sign of its output weight.
    network : TwoLayerReLU
        An interpolating network with ``n_neurons`` units.
    masks : ndarray of shape (n, P)
        The enumerated activation patterns.
    n_lps : int
        Number of feasibility LPs solved.
    max_error : float
        ``max_j |f(x_j) - y_j|`` of the returned network.
    """

    n_neurons: int
    blocks: list
    network: object
    masks: np.ndarray
    n_lps: int
    max_error: float
    subsets_checked: dict = field(default_factory=dict)


def _bitmask(cols: np.ndarray) -> np.ndarray:
    """Encode boolean columns (n, P) as integers (n <= 62)."""
    w = (1 << np.arange(cols.shape[0], dtype=np.int64))
    return (cols.astype(np.int64) * w[:, None]).sum(axis=0)


def _feasible(Xa, Dm, Sg, sig, y, tol):
    """LP feasibility of ``sum_b sig_b D_b Xa v_b = y``, ``(2D_b - I) Xa v_b >= 0``."""
    from scipy.optimize import linprog

    k = len(sig)
    n, d = Xa.shape
    A_eq = np.hstack([sig[b] * Dm[:, b:b + 1] * Xa for b in range(k)])
    A_ub = np.zeros((k * n, k * d))
    for b in range(k):
        A_ub[b * n:(b + 1) * n, b * d:(b + 1) * d] = -(Sg[:, b:b + 1] * Xa)
    # bounded box keeps the LP well posed; the scale is set by the caller
    res = linprog(np.zeros(k * d), A_ub=A_ub, b_ub=np.zeros(k * n), A_eq=A_eq, b_eq=y,
                  bounds=[(-1e6, 1e6)] * (k * d), method="highs")
    if res.status != 0:
        return None
    v = res.x.reshape(k, d)
    # HiGHS works to ~1e-9 feasibility: check the interpolation error explicitly
    fit = np.einsum("bn,nd,bd->n", Dm.T * sig[:, None], Xa, v)
    if np.max(np.abs(fit - y)) > tol:
        return None
    return v


def min_cardinality(X, y, *, bias: bool = True, max_neurons: int | None = None,
                    tol: float = 1e-7, max_lps: int = 200_000) -> MinCardinality:
    """Fewest two-layer ReLU neurons that interpolate ``y`` exactly (tiny problems only).

    Brute force over subsets of the ``2P`` (pattern, sign) blocks of the enumerated
    activation patterns, in increasing size: a subset ``B`` is feasible when the LP
    ``sum_{b in B} sigma_b D_b Xa v_b = y``, ``(2 D_b - I) Xa v_b >= 0`` has a
    solution (one neuron ``v_b`` per block; any ReLU neuron is such a block).
    Subsets whose positive (negative) blocks do not cover the samples with
    ``y_j > 0`` (``y_j < 0``) are skipped without an LP.  The answer is the
    ``l0`` counterpart of the weight-decay (``l1``) network as ``alpha -> 0``
    (math spec 4.5); compare it with ``cvxnn.solve(...).n_active``.

    Parameters
    ----------
    X : array-like of shape (n, d)
        Data; ``n`` should be at most about 6 (the number of subsets grows quickly).
    y : array-like of shape (n,)
        Real targets to interpolate.
    bias : bool, default=True
        Neurons with a (free) bias, ``Xa = [X, 1]``.
    max_neurons : int, optional
        Largest subset size tried (default ``n + 1``, always enough).
    tol : float, default=1e-7
        Interpolation accuracy required, relative to ``max(1, max |y|)``.
    max_lps : int, default=200_000
        Refuse (``ValueError``) before solving more feasibility LPs than this.

    Returns
    -------
    MinCardinality

    Raises
    ------
    ValueError
        If no subset of at most ``max_neurons`` blocks interpolates ``y``, or the
        search would exceed ``max_lps``.
    """
    from .network import TwoLayerReLU

    X = check_X(X, "X").astype(np.float64, copy=False)
    y = np.asarray(check_y(y, X.shape[0], "y"))
    if y.ndim != 1 or y.dtype.kind not in "iuf":
        raise ValueError(f"y must be a 1-D array of real targets, got shape {y.shape}")
    y = y.astype(np.float64)
    n, d = X.shape
    if n > 62:
        raise ValueError(f"min_cardinality is a brute force for tiny problems; X has n={n} rows")
    if max_neurons is None:
        max_neurons = n + 1
    if isinstance(max_neurons, bool) or not isinstance(max_neurons, (int, np.integer)) \
            or max_neurons < 1:
        raise ValueError(f"max_neurons must be a positive integer, got {max_neurons!r}")
    Xa = augment(X, bool(bias))
    G = enumerate_patterns(X, bias=bool(bias))
    Dp = compute_masks(X, G, bias=bool(bias))
    Dp = np.unique(Dp[:, Dp.any(axis=0)], axis=1)
    P = Dp.shape[1]
    scale = max(1.0, float(np.abs(y).max(initial=0.0)))
    ys = y / scale
    atol = tol
    # blocks: (pattern, sign)
    pat = np.repeat(np.arange(P), 2)
    sig = np.tile([1.0, -1.0], P)
    Dm = Dp[:, pat].astype(np.float64)
    Sg = 2.0 * Dm - 1.0
    bits = _bitmask(Dp[:, pat])
    need_pos = int(_bitmask((ys > atol)[:, None])[0])
    need_neg = int(_bitmask((ys < -atol)[:, None])[0])
    checked = {}
    n_lps = 0
    if need_pos == 0 and need_neg == 0 and np.all(np.abs(ys) <= atol):
        net = TwoLayerReLU(np.zeros((0, d)), np.zeros(0) if bias else None, np.zeros((0, 1)))
        return MinCardinality(0, [], net, Dp, 0, float(np.abs(y).max(initial=0.0)), checked)
    nb = 2 * P
    for k in range(1, int(max_neurons) + 1):
        if k > nb:
            break
        combos = np.array(list(itertools.combinations(range(nb), k)), dtype=np.intp)
        sel_sig = sig[combos]
        pos_cover = np.bitwise_or.reduce(np.where(sel_sig > 0, bits[combos], 0), axis=1)
        neg_cover = np.bitwise_or.reduce(np.where(sel_sig < 0, bits[combos], 0), axis=1)
        ok = ((pos_cover & need_pos) == need_pos) & ((neg_cover & need_neg) == need_neg)
        cand = combos[ok]
        checked[k] = int(cand.shape[0])
        if n_lps + cand.shape[0] > max_lps:
            raise ValueError(
                f"min_cardinality would solve more than max_lps={max_lps} LPs at size {k} "
                f"({cand.shape[0]} candidate subsets of {nb} blocks); the problem is too large"
            )
        for subset in cand:
            n_lps += 1
            v = _feasible(Xa, Dm[:, subset], Sg[:, subset], sig[subset], ys, atol)
            if v is None:
                continue
            v = v * scale
            norms = np.linalg.norm(v, axis=1)
            root = np.sqrt(np.maximum(norms, np.finfo(float).tiny))
            A = v / root[:, None]
            W2 = (sig[subset] * root)[:, None]
            net = TwoLayerReLU(A[:, :d], A[:, d] if bias else None, W2)
            err = float(np.max(np.abs(net.decision_function(X) - y)))
            blocks = [(int(pat[b]), int(sig[b])) for b in subset]
            return MinCardinality(k, blocks, net, Dp, n_lps, err, checked)
    raise ValueError(f"no network with at most {max_neurons} neurons interpolates y "
                     f"(to tol={tol:g})")
