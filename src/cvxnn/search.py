"""Pattern search: column generation / cutting planes over activation patterns.

A convex program over sampled activation patterns is optimal over those
patterns only.  :func:`cutting_plane` grows the pattern set with the separation
oracle of :mod:`cvxnn.oracle` (math spec section 4.7, finite exact variant):

1. solve the program on the current patterns (warm started);
2. form the dual point ``Theta = -grad L(Z)`` of the solution and ask the
   oracle for the cells whose dual constraint value
   ``max_{u in K_i, ||u|| <= 1} s Theta_k^T D_i Xa u`` exceeds ``alpha``;
3. the scaled point ``Theta * min(1, alpha / sigma)`` gives the lower bound
   ``-L*(-Theta s)`` on the optimum over *all* patterns (rigorous when the
   oracle enumerates; an estimate otherwise); stop when the relative gap of
   the restricted optimum to this bound is below ``tol``, when no new violating
   cell is found, or on the round, pattern or time budget;
4. add the violating cells' patterns (their whole blocks) and repeat.

Blocks that stay zero for ``patience`` consecutive rounds are dropped so the
program stays small; the restricted objective still decreases monotonically,
because the previous solution remains feasible.  Without dropping, the method
terminates after finitely many rounds and, with the exact oracle, ends at the
fully enumerated optimum.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ._data import augment, check_alpha, check_X, check_y, encode_targets
from .losses import get_loss
from .oracle import separation_oracle
from .patterns import compute_masks, sample_gates, unique_patterns
from .problems import _best_dual, group_norms

__all__ = ["cutting_plane", "polish"]


def _pattern_keys(D: np.ndarray) -> list[bytes]:
    return [bytes(col) for col in np.packbits(D, axis=0).T]


def _block_activity(res) -> np.ndarray:
    """Per-pattern norm of all its blocks, shape (P,)."""
    if res.formulation == "gated":
        U = res.weights["U"]                       # (d, P, c)
        return group_norms(U).sum(axis=-1)
    V, W = res.weights["V"], res.weights["W"]      # (d, P, c) each
    return (group_norms(V) + group_norms(W)).sum(axis=-1)


def _embed(res, keep: np.ndarray, n_new: int) -> dict:
    """Warm start: the kept patterns' weights followed by zeros for ``n_new`` new patterns."""
    out = {}
    for key, A in res.weights.items():
        A = A[:, keep]
        pad = np.zeros((A.shape[0], n_new, A.shape[2]))
        out[key] = np.concatenate([A, pad], axis=1)
    return out


def _local_starts(res, rng, scales=(0.05, 0.2, 0.5)) -> np.ndarray:
    """Starting directions near the active units: optimal units of the full program
    often sit in cells next to those of the current solution."""
    blocks = [res.weights[k] for k in ("U", "V", "W") if k in res.weights]
    A = np.concatenate([b.reshape(b.shape[0], -1) for b in blocks], axis=1)
    nrm = np.linalg.norm(A, axis=0)
    A = A[:, nrm > 0] / nrm[nrm > 0]
    if A.shape[1] == 0:
        return A
    out = [A]
    for s in scales:
        E = rng.standard_normal(A.shape)
        out.append(A + s * E / np.linalg.norm(E, axis=0))
    return np.concatenate(out, axis=1)


def _neuron_phase(X, Xa, Y, lossf, alpha, U, *, oracle, tol, max_rounds, max_add, n_starts,
                  patience, rng, t0, time_limit, verbose, W0=None, stall=1e-4):
    """Cutting planes over single units (lasso on fixed ReLU features, math spec 4.6-4.7).

    ``U`` (d_aug, m): initial unit directions.  Each round solves the lasso on
    the features ``(Xa U)_+`` (warm started, to a tolerance tied to the current
    gap) and adds the oracle's violating directions.  Cheap rounds: the lasso
    has ``m`` scalar weights per output instead of cone-constrained blocks.
    Returns ``(U, W, rounds, stop)`` with the active units only.
    """
    from .solvers.lasso import solve_feature_lasso_newton

    c = Y.shape[1]
    nrm = np.linalg.norm(U, axis=0)
    keep0 = nrm > 0
    U = U[:, keep0] / nrm[keep0]
    W = np.zeros((U.shape[1], c)) if W0 is None else np.asarray(W0, dtype=float)[keep0]
    idle = np.zeros(U.shape[1], dtype=int)
    rounds, stop = [], "max_rounds"
    gap_prev = 1.0
    for it in range(max_rounds):
        A = np.maximum(Xa @ U, 0.0)
        lt = max(tol * 0.1, min(1e-3, 0.05 * gap_prev))
        tl = time.perf_counter()
        out = solve_feature_lasso_newton(A, Y, lossf, alpha, W, tol=lt)
        tl = time.perf_counter() - tl
        W = out["W"]
        Theta = -lossf.gradient(out["Z"], Y)
        act = np.abs(W).sum(axis=1) > 0
        tl0 = time.perf_counter()
        Ua = U[:, act]
        E = rng.standard_normal(Ua.shape)
        cand = np.concatenate([Ua + 0.05 * E / np.maximum(np.linalg.norm(E, axis=0), 1e-300),
                               Ua + 0.3 * E / np.maximum(np.linalg.norm(E, axis=0), 1e-300)], axis=1)
        orc = separation_oracle(X, Theta, method=oracle, outputs="separate", threshold=alpha,
                                max_neurons=max_add, n_starts=n_starts, random_state=rng, _Xa=Xa,
                                candidates=cand)
        to = time.perf_counter() - tl0
        sigma = orc.upper_bound if orc.exact else orc.value
        bound, _ = _best_dual(lossf, Theta, Y, 1.0 if sigma <= alpha else alpha / sigma)
        primal = out["primal"]
        gap_all = max(primal - bound, 0.0) / max(abs(primal), np.finfo(float).tiny)
        gap_prev = gap_all
        viol = np.flatnonzero(orc.values > alpha * (1 + 1e-9))
        new = []
        for j in viol:
            u = orc.directions[:, j]
            if np.max(U.T @ u, initial=-1.0) < 1 - 1e-10 and all(
                    float(orc.directions[:, k] @ u) < 1 - 1e-10 for k in new):
                new.append(j)
        rounds.append({"round": it, "phase": "neurons", "n_units": int(U.shape[1]),
                       "objective": float(primal), "lower_bound": float(bound),
                       "relative_gap": float(gap_all),
                       "restricted_relative_gap": float(out["relative_gap"]),
                       "sigma_over_alpha": float(sigma / alpha), "added": len(new),
                       "exact": bool(orc.exact), "seconds": time.perf_counter() - t0})
        if verbose:
            print(f"[cvxnn.search] units round {it}: m={U.shape[1]} (active {int(act.sum())}) "
                  f"objective {primal:.10g} bound {bound:.10g} rel.gap {gap_all:.2e} "
                  f"sigma/alpha {sigma / alpha:.6f} (+{len(new)}) {time.perf_counter() - t0:.1f}s "
                  f"[lasso {tl:.2f}s {out['n_iter']} it, oracle {to:.2f}s]")
        if gap_all <= tol:
            stop = "gap"
            break
        if not new:
            stop = "no_new_units"
            break
        if len(rounds) > 3 and rounds[-4]["objective"] - primal <= stall * abs(primal):
            stop = "stalled"
            break
        if time_limit is not None and time.perf_counter() - t0 > time_limit:
            stop = "time_limit"
            break
        idle = np.where(act, 0, idle + 1)
        keep = idle < patience
        U = np.concatenate([U[:, keep], orc.directions[:, new]], axis=1)
        W = np.concatenate([W[keep], np.zeros((len(new), c))], axis=0)
        idle = np.concatenate([idle[keep], np.zeros(len(new), dtype=int)])
    act = np.abs(W).sum(axis=1) > 0
    return U[:, act], W[act], rounds, stop


def _local_refine(Xa, Y, lossf, alpha, U, W, max_iter=500):
    """Local descent (L-BFGS) on the non-convex weight-decay objective from the unit network.

    One output only.  The units ``(U, W)`` (directions, output weights) become
    the balanced network ``a_j = u_j sqrt|w_j|``, ``b_j = sign(w_j) sqrt|w_j|``;
    after the descent they are returned in unit form again.  The objective never
    increases (L-BFGS keeps the best point), so the unit lasso warm started at
    the result is at most the unit phase's objective; its patterns then feed
    further cutting-plane rounds.
    """
    from scipy.optimize import minimize

    n, d = Xa.shape
    m = U.shape[1]
    r = np.sqrt(np.abs(W[:, 0]))
    A0 = (U * r).T                                   # (m, d)
    b0 = np.sign(W[:, 0]) * r                        # (m,)

    def fun(x):
        A = x[:m * d].reshape(m, d)
        b = x[m * d:]
        P = Xa @ A.T
        H = np.maximum(P, 0.0)
        Z = (H @ b)[:, None]
        val, G = lossf.value_and_gradient(Z, Y)
        g = G[:, 0]
        gb = H.T @ g + alpha * b
        gA = ((P > 0) * np.outer(g, b)).T @ Xa + alpha * A
        return val + 0.5 * alpha * (float(np.vdot(A, A)) + float(b @ b)), np.concatenate(
            [gA.ravel(), gb])

    x0 = np.concatenate([A0.ravel(), b0])
    out = minimize(fun, x0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    x = out.x if out.fun <= fun(x0)[0] else x0
    A = x[:m * d].reshape(m, d)
    b = x[m * d:]
    an = np.linalg.norm(A, axis=1)
    live = (an > 0) & (b != 0)
    U2 = (A[live] / an[live, None]).T
    W2 = (an[live] * b[live])[:, None]
    return U2, W2


def _units_to_blocks(X, U, W, bias):
    """Pattern gates and relu warm start ``{"V", "W"}`` from units ``U`` with outputs ``W``.

    Units sharing an activation pattern are summed into one block (the cone is
    convex, and the block norm is at most the sum of the units' weights).
    """
    D = compute_masks(X, U, bias=bias)
    Du, first = unique_patterns(D)
    keys = {k: i for i, k in enumerate(_pattern_keys(Du))}
    idx = np.array([keys[k] for k in _pattern_keys(D)], dtype=np.intp)
    d, P, c = U.shape[0], Du.shape[1], W.shape[1]
    Vb = np.zeros((d, P, c))
    Wb = np.zeros((d, P, c))
    for k in range(c):
        pos = np.maximum(W[:, k], 0.0)
        neg = np.maximum(-W[:, k], 0.0)
        np.add.at(Vb[:, :, k].T, idx, (U * pos).T)
        np.add.at(Wb[:, :, k].T, idx, (U * neg).T)
    return U[:, first], {"V": Vb, "W": Wb}


def _result_from_units(X, Y, G, warm, lossf, loss, alpha, bias, tol, t0, classes, n_rounds):
    """SolveResult for the unit network embedded in the ReLU program on its patterns."""
    from .problems import ReLUProblem
    from .solve import _finish

    D = compute_masks(X, G, bias=bias)
    problem = ReLUProblem(augment(X, bias), D, Y, lossf, alpha)
    Q = np.stack([warm["V"], warm["W"]], axis=1)
    gap = problem.gap(Q, refine_iter=300)
    violation = problem.violation(Q)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return _finish("relu", Q, gap, n_rounds, gap.relative_gap <= tol, [], violation, G, loss,
                       alpha, bias, classes, False, tol, t0, "search-units")


def cutting_plane(X, y, alpha=1e-3, *, formulation="relu", loss="squared", gates=None,
                  n_gates=100, bias=True, oracle="auto", tol=1e-6, max_rounds=None, max_add=None,
                  max_patterns=2000, time_limit=None, patience=2, n_starts=64, solver="auto",
                  max_iter=None, random_state=None, verbose=0, classification=None,
                  unit_phase=True, max_unit_rounds=60, max_add_units=150, units=None,
                  max_block_patterns=200,
                  max_block_size=3_000_000, block_stall=1e-5, refine=True):
    """Solve the convex program with activation patterns found by the separation oracle.

    Parameters
    ----------
    X, y, alpha, formulation, loss, bias, classification, solver, max_iter
        As in :func:`cvxnn.solve`.
    gates : array of shape (d_aug, P), optional
        Initial patterns; by default ``n_gates`` sampled gates.
    n_gates : int, default=100
    oracle : {"auto", "enumerate", "search"}, default="auto"
        Separation oracle (see :func:`cvxnn.oracle.separation_oracle`);
        ``enumerate`` makes the final bound a certificate over all patterns.
    tol : float, default=1e-6
        Relative gap to the bound over all patterns at which the search stops
        (and tolerance of each restricted solve).
    max_rounds : int, optional
        Rounds over pattern blocks (after the unit phase; default 10 with the
        exact oracle, 2 with the heuristic one, as block rounds cost a full
        solve of the ReLU program each); they stop early when
        a round lowers the objective by less than ``block_stall`` (relative)
        and the oracle is heuristic (with the exact oracle they run until the
        gap over all patterns is below ``tol``).
    max_add : int, optional
        Patterns added per round (default ``max(10, n_gates // 4)``).
    max_patterns : int, default=2000
        Budget on the number of patterns in the program.
    time_limit : float, optional
        Wall-clock budget in seconds (checked between rounds).
    patience : int or None, default=2
        Drop a pattern whose blocks were zero for this many consecutive rounds;
        ``None`` keeps every pattern (finite termination, exact with an exact oracle).
    n_starts : int, default=64
        Random starts per output and sign of the search oracle.
    unit_phase : bool, default=True
        For the relu formulation, first run cutting planes over single units
        (a lasso on fixed ReLU features; cheap rounds, stops when the objective
        improves by less than 1e-4 relative over three rounds), then the
        block rounds above start from the units' patterns.
    max_unit_rounds : int, default=60
    max_add_units : int, default=150
        Units added per round of the unit phase.
    max_block_patterns : int, default=200
        After the unit phase, the block program is solved (``max_rounds``
        rounds) only when the units use at most this many patterns; otherwise
        the unit network is returned with the certificate of the block program
        evaluated at it (the block solves grow as ``P^2`` to ``P^3``).
    max_block_size : int, default=3,000,000
        The same rule on ``n * P * d_aug * c``.
    refine : bool, default=True
        One output only: seed the unit phase with a local descent (L-BFGS, 2000
        iterations) from a random network of ``max(n_gates, 200)`` units, and after
        the unit phase run the same descent from the unit network, then
        more unit rounds from the refined units (the heuristic oracle can miss
        violating units in higher dimension; the descent finds nearby better
        ones).  The objective never increases; the certificate is unchanged in
        nature (over the units/patterns found).
    units : tuple (U, W), optional
        Initial units for the unit phase: directions ``U`` (d_aug, m) and
        output weights ``W`` (m, c) (``W`` scaled by the norms of ``U``'s
        columns gives the network); used by :func:`polish`.
    random_state : int, Generator or None
    verbose : int, default=0

    Returns
    -------
    SolveResult
        The last restricted solve (``n_iter`` counts the search rounds), with
        ``search`` filled in: a dict with
        ``rounds`` (one dict per round: patterns, objective, lower bound,
        relative gap, sigma/alpha, added, seconds), ``lower_bound`` and
        ``relative_gap`` over all patterns, ``exact`` (oracle), ``stopped``
        (reason) and ``n_patterns``.  When the oracle is exact, ``gap``,
        ``relative_gap`` and ``dual_bound`` of the result are the bound over
        all patterns and ``certified_over`` says so; otherwise they certify the
        searched patterns only.
    """
    from .solve import solve

    t0 = time.perf_counter()
    X = check_X(X, "X", min_samples=2).astype(np.float64, copy=False)
    y = check_y(y, X.shape[0], "y")
    alpha = check_alpha(alpha)
    if alpha <= 0:
        raise ValueError("alpha must be positive for the pattern search (the oracle compares "
                         "dual constraint values with alpha)")
    if formulation not in ("relu", "gated"):
        raise ValueError(f"formulation must be 'relu' or 'gated', got {formulation!r}")
    if oracle not in ("auto", "enumerate", "search"):
        raise ValueError(f"oracle must be 'auto', 'enumerate' or 'search', got {oracle!r}")
    if oracle == "auto":
        from .oracle import AUTO_ENUMERATION_LIMIT
        from .patterns import arrangement_count

        Xa0 = augment(X, bias)
        small = arrangement_count(X.shape[0], int(np.linalg.matrix_rank(Xa0))) <= AUTO_ENUMERATION_LIMIT
        oracle = "enumerate" if small else "search"
    if max_rounds is None:
        max_rounds = 10 if oracle == "enumerate" else 2
    for name, val, lo in (("max_rounds", max_rounds, 1), ("max_patterns", max_patterns, 1),
                          ("n_starts", n_starts, 1)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < lo:
            raise ValueError(f"{name} must be a positive integer, got {val!r}")
    if max_add is None:
        max_add = max(10, int(n_gates) // 4)
    if patience is not None and (not isinstance(patience, (int, np.integer)) or patience < 1):
        raise ValueError(f"patience must be a positive integer or None, got {patience!r}")
    if time_limit is not None and not (isinstance(time_limit, (int, float)) and time_limit > 0):
        raise ValueError(f"time_limit must be a positive number or None, got {time_limit!r}")
    if isinstance(random_state, np.random.Generator):
        rng = random_state
    else:
        from sklearn.utils import check_random_state

        rng = np.random.default_rng(check_random_state(random_state).randint(2**31))

    Y, _ = encode_targets(y, loss, classification)
    lossf = get_loss(loss)
    Xa = augment(X, bias)
    if gates is None:
        G = sample_gates(X, n_gates, bias=bias, random_state=rng)
    else:
        from .solve import _check_gates

        G = _check_gates(gates, X, bias)
        G = G[:, unique_patterns(compute_masks(X, G, bias=bias))[1]]
    warm = None
    rounds: list[dict] = []
    if units is not None and not (unit_phase and formulation == "relu"):
        raise ValueError("units needs unit_phase=True and formulation='relu'")
    if unit_phase and formulation == "relu":
        U_init, W_init = (G, None) if units is None else units
        if refine and Y.shape[1] == 1 and units is None:
            # a local descent from a random network of the sampled directions seeds the
            # units: the cutting planes then start next to a good local minimum
            tr = time.perf_counter()
            Gn = G / np.linalg.norm(G, axis=0)
            width = max(G.shape[1], 200)
            Ur = rng.standard_normal((Xa.shape[1], width))
            Ur /= np.linalg.norm(Ur, axis=0)
            W_rand = rng.standard_normal((width, 1)) / np.sqrt(width)
            Ul, Wl = _local_refine(Xa, Y, lossf, alpha, Ur, W_rand, max_iter=2000)
            U_init = np.concatenate([Ul, Gn], axis=1)
            W_init = np.concatenate([Wl, np.zeros((G.shape[1], 1))], axis=0)
            if verbose:
                print(f"[cvxnn.search] local descent from a random network of {width} "
                      f"units: {time.perf_counter() - tr:.1f}s")
        Uu, Wu, rounds, stop_units = _neuron_phase(
            X, Xa, Y, lossf, alpha, U_init, oracle=oracle, tol=tol, max_rounds=max_unit_rounds,
            max_add=max_add_units, n_starts=n_starts, patience=patience or 10**9, rng=rng,
            t0=t0, time_limit=time_limit, verbose=verbose, W0=W_init)
        if refine and Y.shape[1] == 1 and Uu.shape[1] and (
                time_limit is None or time.perf_counter() - t0 < time_limit):
            # escape the heuristic oracle's blind spots: local descent on the network,
            # then more cutting-plane rounds from the refined units
            tr = time.perf_counter()
            Ur, Wr = _local_refine(Xa, Y, lossf, alpha, Uu, Wu)
            if verbose:
                print(f"[cvxnn.search] local refinement of {Uu.shape[1]} units: "
                      f"{time.perf_counter() - tr:.1f}s")
            Uu, Wu, more, stop_units = _neuron_phase(
                X, Xa, Y, lossf, alpha, Ur, oracle=oracle, tol=tol,
                max_rounds=max(1, max_unit_rounds // 3), max_add=max_add_units,
                n_starts=n_starts, patience=patience or 10**9, rng=rng, t0=t0,
                time_limit=time_limit, verbose=verbose, W0=Wr)
            for rd in more:
                rd["round"] += len(rounds)
                rd["phase"] = "units after refinement"
            rounds += more
        if Uu.shape[1]:
            G, warm = _units_to_blocks(X, Uu, Wu, bias)
    keys = set(_pattern_keys(compute_masks(X, G, bias=bias)))
    idle = np.zeros(G.shape[1], dtype=int)
    stopped = "max_rounds"
    exact_all = True
    res = None
    for it in range(max_rounds):
        too_big = (G.shape[1] > max_block_patterns
                   or X.shape[0] * G.shape[1] * Xa.shape[1] * Y.shape[1] > max_block_size)
        if warm is not None and it == 0 and too_big:
            # too many patterns for the block program: keep the unit network
            res = _result_from_units(X, Y, G, warm, lossf, loss, alpha, bias, tol, t0,
                                     encode_targets(y, loss, classification)[1], len(rounds))
            stopped = "units_only"
            why_units = (f"block program skipped: {G.shape[1]} patterns exceed "
                         "max_block_patterns or max_block_size")
            break
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            res = solve(X, y, alpha, formulation=formulation, loss=loss, gates=G, bias=bias,
                        solver=solver, tol=tol, max_iter=max_iter, warm_start=warm,
                        classification=classification, patterns="sampled")
        if it == 0 and warm is not None and rounds:
            start = _result_from_units(X, Y, G, warm, lossf, loss, alpha, bias, tol, t0,
                                       encode_targets(y, loss, classification)[1], len(rounds))
            if res.objective > start.objective:
                # the block solve ended above its own feasible warm start (not converged):
                # keep the unit network rather than a worse point
                res = start
                stopped = "units_only"
                why_units = "the block solve did not improve on the units"
                break
        Z = np.asarray(res.network.forward(X), dtype=np.float64)
        Theta = -lossf.gradient(Z, Y)
        orc = separation_oracle(X, Theta, bias=bias, method=oracle, outputs="separate",
                                cone=formulation == "relu", threshold=alpha,
                                max_neurons=max_add, n_starts=n_starts, random_state=rng, _Xa=Xa,
                                candidates=_local_starts(res, rng))
        exact_all &= orc.exact
        sigma = orc.upper_bound if orc.exact else orc.value
        bound, _ = _best_dual(lossf, Theta, Y, 1.0 if sigma <= alpha else alpha / sigma)
        primal = res.objective
        gap_all = max(primal - bound, 0.0) / max(abs(primal), np.finfo(float).tiny)
        # new violating cells not yet in the program
        new = []
        if orc.n_neurons:
            viol = orc.values > alpha * (1 + 1e-9)
            Dn = compute_masks(X, orc.gates[:, viol], bias=bias)
            for j, key in zip(np.flatnonzero(viol), _pattern_keys(Dn)):
                if key not in keys:
                    keys.add(key)
                    new.append(j)
        rounds.append({"round": it, "n_patterns": int(G.shape[1]), "objective": float(primal),
                       "lower_bound": float(bound), "relative_gap": float(gap_all),
                       "restricted_relative_gap": float(res.relative_gap),
                       "sigma_over_alpha": float(sigma / alpha), "added": len(new),
                       "exact": bool(orc.exact), "seconds": time.perf_counter() - t0})
        if verbose:
            print(f"[cvxnn.search] round {it}: P={G.shape[1]} objective {primal:.10g} "
                  f"bound {bound:.10g} rel.gap {gap_all:.2e} sigma/alpha {sigma / alpha:.6f} "
                  f"(+{len(new)}) {time.perf_counter() - t0:.1f}s")
        if gap_all <= tol:
            stopped = "gap"
            break
        if not new:
            stopped = "no_new_patterns"
            break
        if (not orc.exact and len(rounds) > 1
                and rounds[-2]["objective"] - primal <= block_stall * abs(primal)):
            stopped = "stalled"
            break
        if time_limit is not None and time.perf_counter() - t0 > time_limit:
            stopped = "time_limit"
            break
        if it == max_rounds - 1:
            break
        # drop long-inactive patterns, then add the new ones
        active = _block_activity(res) > 0
        idle = np.where(active, 0, idle + 1)
        keep = np.ones(G.shape[1], dtype=bool) if patience is None else idle < patience
        room = max_patterns - int(keep.sum())
        if room <= 0:
            stopped = "max_patterns"
            break
        new = new[:room]
        Gk = G[:, keep]
        dropped = compute_masks(X, G[:, ~keep], bias=bias)
        for key in _pattern_keys(dropped):
            keys.discard(key)
        warm = _embed(res, np.flatnonzero(keep), len(new))
        G = np.concatenate([Gk, orc.gates[:, new]], axis=1)
        idle = np.concatenate([idle[keep], np.zeros(len(new), dtype=int)])

    if stopped == "units_only":
        last = rounds[-1]
        res.search = {"rounds": rounds, "lower_bound": last["lower_bound"],
                      "relative_gap": last["relative_gap"], "exact": bool(last["exact"]),
                      "stopped": f"units ({stop_units}); {why_units}",
                      "n_patterns": int(G.shape[1]), "oracle": oracle,
                      "time": time.perf_counter() - t0}
        res.time = res.search["time"]
        res.certified_over = (f"the units found by the search ({G.shape[1]} patterns; the gap "
                              "certifies the block program on those patterns; gap to all patterns "
                              f"{last['relative_gap']:.2e}, "
                              + ("certified)" if last["exact"] else "estimated)"))
        return res
    res.n_iter = len(rounds)            # search rounds (units and blocks)
    last = rounds[-1]
    search = {"rounds": rounds, "lower_bound": last["lower_bound"],
              "relative_gap": last["relative_gap"], "exact": bool(exact_all),
              "stopped": stopped, "n_patterns": int(G.shape[1]), "oracle": oracle,
              "time": time.perf_counter() - t0}
    res.search = search
    res.time = search["time"]
    P = res.gates.shape[1]
    if exact_all and rounds[-1]["exact"]:
        res.dual_bound = float(last["lower_bound"])
        res.gap = max(res.objective - last["lower_bound"], 0.0)
        res.relative_gap = last["relative_gap"]
        res.certified_over = ("all activation patterns (exact separation oracle; "
                              f"{P} patterns in the program)")
    else:
        res.certified_over = (f"the {P} searched activation patterns (a heuristic oracle found no "
                              f"better pattern: sigma/alpha = {last['sigma_over_alpha']:.6g}; "
                              "not a global certificate)"
                              if stopped in ("gap", "no_new_patterns") else
                              f"the {P} searched activation patterns (search stopped: {stopped}; "
                              f"estimated gap to all patterns {last['relative_gap']:.2e})")
    return res


def polish(network, X, y, alpha, *, loss=None, search=True, tol=1e-6, random_state=0, verbose=0,
           classification=None, **search_options):
    """Improve any two-layer ReLU network by convex optimisation over its own patterns.

    The network's units define the starting point: as single units (directions
    and output weights) they are a feasible point of the unit lasso, and their
    activation patterns define blocks of the ReLU program.  With ``search``
    (default) the separation oracle adds better units and patterns
    (:func:`cutting_plane` with ``units=``); otherwise the ReLU program is
    solved on the network's own patterns only.  The result's objective is never
    above the input network's weight-decay objective (for one output; with
    several outputs the program is one-vs-all, and when that is worse the
    balanced input network is returned, with ``search["kept_input"] = True``).

    Parameters
    ----------
    network : TwoLayerReLU, tuple or torch module
        See :func:`cvxnn.certify.as_network`.
    X, y, alpha, loss, classification
        Data and objective, as in :func:`cvxnn.solve`.
    search : bool, default=True
    tol, random_state, verbose, **search_options
        Passed to :func:`cutting_plane`.

    Returns
    -------
    SolveResult
    """
    from .certify import as_network
    from .network import TwoLayerReLU
    from .solve import solve

    X = check_X(X, "X", min_samples=2).astype(np.float64, copy=False)
    y = check_y(y, X.shape[0], "y")
    if isinstance(network, TwoLayerReLU):
        net = as_network(network, X.shape[1])
        name = net.loss if loss is None else loss
    else:
        name = "squared" if loss is None else loss
        _, classes = encode_targets(y, name, classification)
        net = as_network(network, X.shape[1], loss=name, classes=classes)
    bal = net.balance()
    before = bal.objective(X, y, alpha, loss=name)
    A = bal._first_layer().T.astype(np.float64)           # (d_aug, m)
    r = np.linalg.norm(A, axis=0)
    live = r > 0
    U = A[:, live] / r[live]
    W = np.asarray(bal.W2, dtype=np.float64)[live] * r[live][:, None]
    if U.shape[1] == 0:
        raise ValueError("network has no active unit to polish")
    bias = bal.bias
    if search:
        res = cutting_plane(X, y, alpha, loss=name, bias=bias, tol=tol, random_state=random_state,
                            verbose=verbose, classification=classification, units=(U, W),
                            gates=U, **search_options)
    else:
        G, warm = _units_to_blocks(X, U, W, bias)
        res = solve(X, y, alpha, loss=name, gates=G, bias=bias, tol=tol, warm_start=warm,
                    classification=classification, verbose=verbose, patterns="sampled")
        res.search = {"rounds": [], "stopped": "no_search", "exact": False,
                      "n_patterns": int(G.shape[1])}
    res.search["input_objective"] = float(before)
    res.search["kept_input"] = False
    if res.objective > before:
        # one-vs-all program (several outputs) worse than the input network: keep the input
        res.network = bal
        res.objective = float(before)
        res.search["kept_input"] = True
        res.certified_over = "nothing (the input network was kept: the one-vs-all program was worse)"
        res.gap = res.relative_gap = float("nan")
    return res
