"""Row-sharded gated ReLU solver: data spread over several processes or machines.

Every process (rank) holds a block of rows ``(X_r, y_r)``; nothing but vectors of
size ``d_aug * P * c`` and a few scalars ever crosses the network.  The program is
the gated one of :func:`cvxnn.solve` (``formulation="gated"``) on the union of
the blocks::

    min_U  L(Z, Y) + alpha * sum_{i,k} ||U[:, i, k]||_2,   Z[:, k] = sum_i D_i Xa U[:, i, k]

with ``L`` the mean loss over all ``n = sum_r n_r`` rows.  Because ``L`` is a sum
over rows, everything the accelerated proximal gradient method needs splits
into per-rank terms that are summed with one all-reduce:

* the loss ``L = sum_r L_r`` (each ``L_r`` already divided by the global ``n``);
* the gradient ``Xa^T D_i grad L = sum_r Xa_r^T (D_{r,i} grad L_r)``, of shape
  ``(d_aug, P, c)``: the local adjoint kernel of :mod:`cvxnn.operators`, summed;
* the dual bound of the certificate: its block norms ``||Xa^T D_i Theta_k||``
  are norms of the same summed adjoint (with ``Theta = -grad L``), and the dual
  objective ``-L^*(-s Theta)`` is again a sum over rows.

The weights ``U``, the step size and the momentum are replicated: every rank
applies the same proximal step to the same all-reduced gradient, so all ranks
follow the same iterates and stop together on the same certified relative
duality gap.  The control decisions (backtracking test, restart test) use
scalars taken from rank 0 inside the all-reduce, so ranks cannot take
different branches even if their floating-point rounding differed, and the
final weights are broadcast from rank 0.  The method is the single-process
:func:`cvxnn.solvers.gated.solve_gated_fista` (same step-size rule, restart,
gap check every ``check_every`` iterations, dynamic gap-safe screening, dual
extrapolation, same initial step from the same random power iteration), so the
iterates agree with a single-process ``cvxnn.solve(..., formulation="gated",
solver="fista")`` up to the summation order of the all-reduce.

Collectives per iteration: one all-reduce of ``d_aug * P * c + 1`` float64 (the
gradient and the loss at the extrapolated point) and one of 4 float64 per
line-search trial; every ``check_every`` iterations one more of
``d_aug * P * c + 2`` (the dual certificate; the ``K x K`` Gram matrix of the
dual extrapolation rides along) and one of the same size for the extrapolated
dual point.  ``P`` shrinks as screening removes patterns.  Communication uses
:mod:`torch.distributed` (the gloo backend, CPU tensors); torch is imported
lazily and is needed only when a process group is initialised (a single process
runs without it).  See ``docs/distributed.md``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, fields

import numpy as np
from threadpoolctl import threadpool_limits

from ._data import augment, check_alpha, check_X, is_numeric_labels
from .losses import LOSSES, get_loss
from .operators import adjoint, forward
from .problems import _make_gap, group_norms, group_soft_threshold
from .screening import gap_safe_screen
from .solve import SolveResult, _check_gates, _finish
from .solvers.fista import inner

__all__ = ["solve_sharded", "ShardedSolveResult", "ShardedGatedProblem", "Communicator"]


# ----------------------------------------------------------------------------
# communication


class Communicator:
    """Sum-all-reduce, broadcast and all-gather of numpy data over a process group.

    Parameters
    ----------
    group : torch.distributed.ProcessGroup or None
        ``None`` uses the default group when :mod:`torch.distributed` is
        initialised, and a single process (every collective is the identity)
        otherwise.
    local : bool, default=False
        Never communicate (this process alone), even inside a process group.

    Attributes
    ----------
    rank, world_size : int
        This process's rank within the group and the group's size.
    n_allreduce, n_floats : int
        Number of all-reduce calls and float64 values all-reduced so far.
    """

    def __init__(self, group=None, local=False):
        self.group = group
        self.dist = None
        self.rank, self.world_size, self.root = 0, 1, 0
        self.n_allreduce = 0
        self.n_floats = 0
        if local:
            return
        dist = _torch_distributed(required=group is not None)
        if dist is not None and dist.is_initialized():
            backend = str(dist.get_backend(group))
            if backend == "nccl":
                raise ValueError(
                    "solve_sharded exchanges CPU tensors; initialise the process group with "
                    "backend='gloo' (or 'cpu:gloo,cuda:nccl'), not 'nccl'")
            self.dist = dist
            self.rank = dist.get_rank(group)
            self.world_size = dist.get_world_size(group)
            self.root = 0 if group is None else dist.get_global_rank(group, 0)

    def allreduce(self, buf: np.ndarray) -> np.ndarray:
        """Sum a contiguous float64 array over all ranks, in place; returns it."""
        self.n_allreduce += 1
        self.n_floats += buf.size
        if self.dist is not None and self.world_size > 1:
            import torch

            self.dist.all_reduce(torch.from_numpy(buf), op=self.dist.ReduceOp.SUM, group=self.group)
        return buf

    def sum_scalars(self, *values) -> np.ndarray:
        """All-reduced sums of a few scalars (one collective), as a float64 array."""
        return self.allreduce(np.array(values, dtype=np.float64))

    def root_only(self, *values):
        """``values`` on rank 0 and zeros elsewhere: summed, every rank gets rank 0's."""
        return values if self.rank == 0 else (0.0,) * len(values)

    def broadcast(self, arr: np.ndarray) -> np.ndarray:
        """Rank 0's float64 array on every rank (same shape everywhere; in place)."""
        if self.dist is not None and self.world_size > 1:
            import torch

            arr = np.ascontiguousarray(arr, dtype=np.float64)
            self.dist.broadcast(torch.from_numpy(arr), src=self.root, group=self.group)
        return arr

    def broadcast_object(self, obj):
        """Rank 0's picklable ``obj`` on every rank."""
        if self.dist is None or self.world_size == 1:
            return obj
        box = [obj]
        self.dist.broadcast_object_list(box, src=self.root, group=self.group)
        return box[0]

    def allgather_object(self, obj) -> list:
        """List of every rank's picklable ``obj``, in rank order."""
        if self.dist is None or self.world_size == 1:
            return [obj]
        out = [None] * self.world_size
        self.dist.all_gather_object(out, obj, group=self.group)
        return out

    def agree(self, func, *args):
        """Run ``func(*args)`` on every rank; if it raises on any rank, raise on all.

        Without this a validation error on one rank would leave the others
        waiting forever in the next collective.  The failing rank re-raises its
        own exception; the others raise a ``ValueError`` quoting it.
        """
        try:
            value, err = func(*args), None
        except (ValueError, TypeError) as exc:
            value, err = None, exc
        msgs = self.allgather_object(None if err is None else f"{type(err).__name__}: {err}")
        if err is not None:
            raise err
        bad = [(r, m) for r, m in enumerate(msgs) if m is not None]
        if bad:
            r, m = bad[0]
            raise ValueError(f"solve_sharded failed on rank {r}: {m}")
        return value


def _torch_distributed(required: bool):
    try:
        import torch.distributed as dist
    except ImportError as exc:
        if required:
            raise ImportError("solve_sharded(group=...) needs PyTorch; install it with "
                              "`pip install \"cvxnn[torch]\"`") from exc
        return None
    if not dist.is_available():
        if required:
            raise ImportError("this PyTorch build has no torch.distributed support")
        return None
    return dist


# ----------------------------------------------------------------------------
# the sharded problem


class ShardedGatedProblem:
    """The gated program on this rank's rows, with global reductions.

    Parameters
    ----------
    Xa : ndarray of shape (n_r, d_aug)
        This rank's rows (ones column appended when there is a bias).
    D : ndarray of bool, shape (n_r, P)
        Their activation masks.
    Y : ndarray of shape (n_r, c)
        Encoded targets.
    loss : str or Loss
    alpha : float
    comm : Communicator
    n_samples : int
        Global number of rows ``n = sum_r n_r``.

    Notes
    -----
    ``apply`` (forward product) is local: ``Z_r`` of shape ``(n_r, c)``.
    ``local_loss(Z_r)`` and ``local_gradient(Z_r)`` are this rank's terms of the
    global mean loss and the rows of its gradient (both divided by the global
    ``n``); ``gradient_and_loss`` and ``gap`` all-reduce the local adjoints.
    """

    def __init__(self, Xa, D, Y, loss, alpha, comm, n_samples):
        self.Xa, self.D, self.Y = Xa, D, Y
        self.loss = get_loss(loss)
        self.alpha = float(alpha)
        self.comm = comm
        self.n_samples = int(n_samples)
        self.n_local = Xa.shape[0]
        self.shape = (Xa.shape[1], D.shape[1], Y.shape[1])
        self.weight = self.n_local / self.n_samples  # local mean -> share of the global mean

    def restrict(self, idx):
        """The same program on the patterns ``idx`` (local column copy of the masks)."""
        return ShardedGatedProblem(self.Xa, self.D[:, idx], self.Y, self.loss, self.alpha,
                                   self.comm, self.n_samples)

    def apply(self, U):
        """Local predictions ``Z_r`` of shape ``(n_r, c)``."""
        return forward(self.Xa, self.D, U)

    def local_adjoint(self, R):
        """``Xa_r^T (D_{r,i} R[:, k])`` of shape ``(d_aug, P, c)`` (no communication)."""
        if self.n_local == 0:
            return np.zeros(self.shape)
        return adjoint(self.Xa, self.D, R)

    def local_loss(self, Z):
        """This rank's term of the global mean loss."""
        if self.n_local == 0:
            return 0.0
        return self.loss.value(Z, self.Y) * self.weight

    def local_gradient(self, Z):
        """Local rows of the gradient of the global mean loss, shape ``(n_r, c)``."""
        if self.n_local == 0:
            return np.zeros((0, self.shape[2]))
        return self.loss.gradient(Z, self.Y) * self.weight

    def local_dual(self, Theta):
        """This rank's term of ``-L^*(-Theta)`` for the global mean loss (``-inf`` if infeasible)."""
        if self.n_local == 0:
            return 0.0
        # each loss's dual is a sum over rows with n inside: rescale to the global n
        return self.loss.dual_value(Theta / self.weight, self.Y) * self.weight

    def gradient_and_loss(self, Z):
        """All-reduced ``(Xa^T D_i grad L, L)`` at the local predictions ``Z`` (one collective)."""
        if self.n_local:
            f, R = self.loss.value_and_gradient(Z, self.Y)
            f, R = f * self.weight, R * self.weight
        else:
            f, R = 0.0, None
        buf = np.empty(int(np.prod(self.shape)) + 1)
        buf[:-1] = self.local_adjoint(R).ravel()
        buf[-1] = f
        self.comm.allreduce(buf)
        return buf[:-1].reshape(self.shape), float(buf[-1])

    def penalty(self, U):
        """``alpha * sum_{i,k} ||U[:, i, k]||`` (the weights are the same on every rank)."""
        return self.alpha * float(group_norms(U).sum(dtype=np.float64))

    def prox(self, U, step):
        """Proximal map of ``step * penalty``: block soft-thresholding."""
        return group_soft_threshold(U, step * self.alpha)

    def block_frobenius(self):
        """``||D_i Xa||_F`` over all ranks, shape ``(P,)`` (one collective)."""
        row_sq = np.einsum("nd,nd->n", self.Xa, self.Xa, dtype=np.float64)
        sq = np.ascontiguousarray(row_sq @ self.D.astype(np.float64, copy=False), dtype=np.float64)
        return np.sqrt(np.maximum(self.comm.allreduce(sq), 0.0))

    def dual_bound(self, Theta, extra=None):
        """Lower bound on the optimum from the dual candidate ``Theta`` (local rows ``(n_r, c)``).

        ``Theta`` is scaled into the dual feasible set ``||Xa^T D_i s Theta_k|| <= alpha``
        and, for the squared loss, along the ray to the best scale (as
        :meth:`cvxnn.problems.GatedReLUProblem.dual_value_at`).  One all-reduce of
        ``d_aug*P*c + 2`` floats (plus ``extra``, a local float64 array summed in
        the same call), and one scalar all-reduce for the logistic and
        cross-entropy losses.

        Returns
        -------
        dual : float
        scale : float
        norms : ndarray of shape (P, c)
            ``||Xa^T D_i Theta_k||`` of the unscaled candidate.
        extra_sum : ndarray or None
        """
        size = int(np.prod(self.shape))
        m = 0 if extra is None else extra.size
        buf = np.empty(size + 2 + m)
        buf[:size] = self.local_adjoint(Theta).ravel()
        buf[size] = float(np.vdot(Theta, self.Y))
        buf[size + 1] = float(np.vdot(Theta, Theta))
        if m:
            buf[size + 2:] = extra.ravel()
        self.comm.allreduce(buf)
        norms = group_norms(buf[:size].reshape(self.shape))
        cmax = float(norms.max(initial=0.0))
        s_max = 1.0 if cmax <= self.alpha else self.alpha / cmax
        if self.loss.name == "squared":  # best scale along Theta in closed form
            ty, tt = buf[size], buf[size + 1]
            s = s_max if tt <= 0 else min(s_max, max(0.0, ty / (self.n_samples * tt)))
            dual = s * ty - 0.5 * self.n_samples * s * s * tt
        else:
            s = s_max
            dual = float(self.comm.sum_scalars(self.local_dual(s * Theta))[0])
        extra_sum = buf[size + 2:].reshape(extra.shape) if m else None
        return dual, s, norms, extra_sum

    def gap(self, U, Z, f, extra=None):
        """Duality gap at ``U`` (local predictions ``Z``, global loss ``f``).

        The dual candidate is ``Theta = -grad L(Z)``.  Returns ``(Gap, dual norms
        (P, c), extra_sum)``; the collectives are those of :meth:`dual_bound`.
        Same certificate as :meth:`cvxnn.problems.GatedReLUProblem.gap`.
        """
        dual, s, norms, extra_sum = self.dual_bound(-self.local_gradient(Z), extra)
        return _make_gap(f + self.penalty(U), dual, s), norms, extra_sum


def _local_gram(outs):
    """Local part of ``R R^T`` for the differences ``R`` of the stored outputs, ``(K, K)``."""
    Zs = np.stack([z.ravel() for z in outs])
    R = np.diff(Zs, axis=0)
    return np.ascontiguousarray(R @ R.T)


def _extrapolated_outputs(outs, M):
    """Anderson-type limit ``sum_i c_i z_i`` of the stored local outputs (``None`` if degenerate).

    ``M`` is the all-reduced Gram matrix of the differences; the weights solve
    ``min ||R c||`` s.t. ``sum(c) = 1`` (Massias, Gramfort & Salmon 2018), so
    they are identical on every rank and the extrapolated outputs are this
    rank's rows of the single-process extrapolation.
    """
    scale = float(np.trace(M))
    if not np.isfinite(scale) or scale <= 0:
        return None
    try:
        z = np.linalg.solve(M + 1e-12 * scale * np.eye(M.shape[0]), np.ones(M.shape[0]))
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(z)) or abs(z.sum()) < 1e-300:
        return None
    coef = z / z.sum()
    Zs = np.stack([z_.ravel() for z_ in outs[1:]])
    return (coef @ Zs).reshape(outs[-1].shape)


def _random_rows(offset: int, rows: int, c: int, seed: int = 0) -> np.ndarray:
    """Rows ``[offset, offset + rows)`` of ``default_rng(seed).standard_normal((n, c))``.

    The draws before ``offset`` are generated and discarded in chunks, so the
    result is the slice of the single-process matrix without forming it.
    """
    rng = np.random.default_rng(seed)
    chunk = 1 << 20
    left = offset
    while left > 0:
        k = min(left, chunk)
        rng.standard_normal((k, c))
        left -= k
    return rng.standard_normal((rows, c))


def _initial_step(problem: ShardedGatedProblem, offset: int, n_power: int) -> float:
    """``1 / (curvature * ||A||^2)`` by the power iteration of :func:`cvxnn.solvers.fista.estimate_lipschitz`.

    Starts from the same global random matrix as the single-process solver.
    """
    beta = problem.loss.curvature(problem.n_samples)
    d, P, c = problem.shape
    x = problem.comm.allreduce(np.ascontiguousarray(
        problem.local_adjoint(_random_rows(offset, problem.n_local, c)).ravel())).reshape(d, P, c)
    lam = 0.0
    for _ in range(n_power):
        nx = np.sqrt(inner(x, x))
        if nx == 0:
            return 1.0 / max(beta, 1e-300)
        R = problem.apply(x / nx)
        y = problem.comm.allreduce(np.ascontiguousarray(
            problem.local_adjoint(R).ravel())).reshape(d, P, c)
        lam = np.sqrt(inner(y, y))
        x = y
    return 1.0 / max(beta * max(lam, 1e-300), 1e-300)


# ----------------------------------------------------------------------------
# the solver


def _fista_sharded(problem: ShardedGatedProblem, x, *, step, check, max_iter, check_every,
                   growth=1.25, shrink=0.5):
    """FISTA of :func:`cvxnn.solvers.fista.fista` with all-reduced loss and gradient.

    ``check(x, Z, f, k) -> bool`` stops the run.  Returns ``(x, step, n_iter)``.
    """
    comm = problem.comm
    out_x = problem.apply(x)
    f_x = float(comm.sum_scalars(problem.local_loss(out_x))[0])
    if check(x, out_x, f_x, 0):
        return x, step, 0
    y, out_y, t = x, out_x, 1.0
    gy, fy = problem.gradient_and_loss(out_y)
    rel_slack = 1e-12
    k = 0
    checked = 0
    while k < max_iter:
        k += 1
        for _ in range(60):  # backtracking on the quadratic upper bound
            x_new = problem.prox(y - step * gy, step)
            dx = x_new - y
            out_new = problem.apply(x_new)
            # the replicated inner products are taken from rank 0 (identical branches)
            f_new, lin, sq, ip = comm.sum_scalars(
                problem.local_loss(out_new),
                *comm.root_only(inner(gy, dx), inner(dx, dx), inner(x_new - x, y - x_new)))
            slack = rel_slack * max(abs(fy), 1e-300)
            if f_new <= fy + lin + sq / (2 * step) + slack:
                break
            step *= shrink
        curv_ok = sq > 0 and (f_new - fy - lin) * 2 * step * 5.0 < sq
        if ip > 0:  # gradient-mapping restart (O'Donoghue and Candes)
            t = 1.0
            y, out_y = x_new, out_new
        else:
            t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
            mom = (t - 1.0) / t_new
            y = x_new + mom * (x_new - x)
            out_y = out_new + mom * (out_new - out_x)
            t = t_new
        x, out_x, f_x = x_new, out_new, float(f_new)
        if curv_ok:
            step *= growth
        if k % check_every == 0 or k == max_iter:
            checked = k
            if check(x, out_x, f_x, k):
                return x, step, k
        gy, fy = problem.gradient_and_loss(out_y)
    if checked != k:
        check(x, out_x, f_x, k)
    return x, step, k


def _solve_gated_sharded(full: ShardedGatedProblem, U, *, tol, max_iter, check_every, screen,
                         screen_fraction, n_power, offset_rows, verbose, extrapolate=5):
    """Screening driver of :func:`cvxnn.solvers.gated.solve_gated_fista`, sharded."""
    t0 = time.perf_counter()
    d, P, c = full.shape
    say = verbose and full.comm.rank == 0
    beta = full.loss.curvature(full.n_samples)
    step = _initial_step(full, offset_rows, n_power)
    screen = bool(screen) and full.alpha > 0
    frob = full.block_frobenius() if screen else None
    idx = np.arange(P)
    cur = full
    history = []
    last = {"best_dual": -np.inf, "gap": None, "drop": None}
    done_iter = 0

    outs = []  # local outputs at the last checks, for the extrapolated dual point

    def check(Ux, Z, f, k):
        trial = (outs + [Z])[-(extrapolate + 1):] if extrapolate else []
        gram = _local_gram(trial) if len(trial) >= 3 else None  # summed with the gap
        g_own, norms, M = cur.gap(Ux, Z, f, extra=gram)
        if g_own.dual > last["best_dual"]:  # any dual feasible point bounds the optimum
            last["best_dual"] = g_own.dual
        if extrapolate and g_own.relative_gap > tol:
            outs[:] = trial
            Zx = None if M is None else _extrapolated_outputs(outs, M)
            if Zx is not None:
                dual_x, _, _, _ = cur.dual_bound(-cur.local_gradient(Zx))
                last["best_dual"] = max(last["best_dual"], dual_x)
        g = g_own
        if last["best_dual"] > g.dual:
            g = _make_gap(g.primal, last["best_dual"], g.dual_scale)
        history.append((done_iter + k, time.perf_counter() - t0, g.relative_gap, g.primal, 0.0))
        last["gap"], last["drop"] = g, None
        if say and (verbose >= 2 or (done_iter + k) % (check_every * 50) == 0):
            print(f"[sharded fista x{full.comm.world_size}] iter {done_iter + k:6d}  patterns "
                  f"{idx.size:6d}  objective {g.primal:.10g}  rel. gap {g.relative_gap:.3e}",
                  flush=True)
        if g.relative_gap <= tol:
            return True
        if screen:
            # the safe sphere is centred at this iterate's own dual point, so its radius
            # comes from that point's gap (a better bound from another point would
            # make the sphere too small)
            drop = gap_safe_screen(norms, g_own.dual_scale, g_own.gap, cur.alpha, beta,
                                   frob[idx]).all(axis=1)
            if drop.sum() >= max(1, screen_fraction * idx.size):
                last["drop"] = drop
                return True
        return False

    while True:
        U, step, k = _fista_sharded(cur, U, step=step, check=check, max_iter=max_iter - done_iter,
                                    check_every=check_every)
        done_iter += k
        drop = last["drop"]
        if drop is None:
            break
        keep = np.flatnonzero(~drop)
        if say:
            print(f"[sharded fista] screening removes {int(drop.sum())} patterns "
                  f"({keep.size} remain)", flush=True)
        U = U[:, keep]
        idx = idx[keep]
        if idx.size == 0:
            break
        cur = full.restrict(idx)
        if done_iter >= max_iter:
            break

    if cur is not full:
        Ufull = np.zeros((d, P, c))
        Ufull[:, idx] = U
        U = Ufull
        Z = full.apply(U)
        f = float(full.comm.sum_scalars(full.local_loss(Z))[0])
        gap, _, _ = full.gap(U, Z, f)
        if last["best_dual"] > gap.dual:  # safe screening: same optimum, so the bound holds
            gap = _make_gap(gap.primal, last["best_dual"], gap.dual_scale)
        if gap.relative_gap > tol and done_iter < max_iter:
            # the reduced certificate did not transfer (rare): finish on the full problem
            screen = False
            cur, idx = full, np.arange(P)
            U, step, k = _fista_sharded(full, U, step=step, check=check,
                                        max_iter=max_iter - done_iter, check_every=check_every)
            done_iter += k
            gap = last["gap"]
    else:
        gap = last["gap"]
    return {"U": U, "gap": gap, "n_iter": done_iter, "converged": gap.relative_gap <= tol,
            "history": history, "n_screened": P - idx.size}


# ----------------------------------------------------------------------------
# setup: validation, class set, gates


def _local_inputs(X_local, y_local, loss, classification, bias):
    """Validate this rank's block; return ``(X, y, meta)`` (``meta`` is gathered)."""
    X = check_X(X_local, "X_local", min_samples=0).astype(np.float64, copy=False)
    y = np.asarray(y_local)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
        raise ValueError(f"y_local must have shape ({X.shape[0]},) or ({X.shape[0]}, c) to "
                         f"match X_local, got {y.shape}")
    numeric = is_numeric_labels(y)
    if numeric and y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise ValueError("y_local contains NaN or infinity")
    if loss != "squared" and classification is False:
        raise ValueError(f"loss={loss!r} is a classification loss; classification=False is invalid")
    if classification is not None:
        cls = bool(classification)
    elif loss != "squared":
        cls = True
    else:  # an empty block cannot tell regression from labels: the other ranks decide
        cls = None if y.size == 0 else not numeric
    labels = None
    if cls:
        if y.ndim != 1:
            raise ValueError(f"class labels must be 1-D, got y_local of shape {y.shape}")
        try:
            labels = np.unique(y)
        except TypeError:
            raise TypeError("y_local mixes label types that cannot be compared") from None
    meta = {"n": X.shape[0], "d": X.shape[1], "classification": cls, "labels": labels,
            "c": None if cls else (1 if y.ndim == 1 else y.shape[1])}
    return X, y, meta


def _agreed_setup(metas, classes, loss):
    """Check that the ranks' blocks fit together; return ``(n, classes or None, c)``."""
    for key, what in (("d", "number of features"), ("classification", "target type"),
                      ("settings", "settings (loss, alpha, bias, tol, max_iter, check_every, "
                                   "screen, extrapolate, gates given or sampled)")):
        vals = [m[key] for m in metas if m[key] is not None]
        if len(set(vals)) > 1:
            raise ValueError(f"the ranks disagree on the {what}: {[m[key] for m in metas]}")
    n = sum(m["n"] for m in metas)
    if n < 2:
        raise ValueError(f"the ranks hold {n} sample(s) in all; at least 2 required")
    if not any(m["classification"] for m in metas):
        cs = {m["c"] for m in metas if m["n"] > 0}
        if len(cs) > 1:
            raise ValueError(f"the ranks disagree on the number of outputs: {sorted(cs)}")
        return n, None, cs.pop()
    seen = [m["labels"] for m in metas if m["labels"] is not None and m["labels"].size]
    try:
        union = np.unique(np.concatenate(seen))
    except TypeError:
        raise TypeError("the ranks' labels mix types that cannot be compared") from None
    if classes is None:
        classes = union
    else:
        classes = np.unique(np.asarray(classes))
        missing = np.setdiff1d(union, classes)
        if missing.size:
            raise ValueError(f"labels {missing.tolist()} are not in classes={classes.tolist()}")
    K = len(classes)
    if K < 2:
        raise ValueError(f"the labels hold a single class ({classes[0]!r}); "
                         "classification needs at least 2 classes")
    if loss == "logistic" and K != 2:
        raise ValueError(f"loss='logistic' is binary but there are {K} classes; "
                         "use loss='cross_entropy'")
    c = 1 if (K == 2 and loss in ("logistic", "squared")) else K
    return n, classes, c


def _encode(y, classes, c):
    """Encode local targets with the global class set (same rule as ``encode_targets``)."""
    if classes is None:
        Y = np.asarray(y, dtype=np.float64)
        return (Y[:, None] if Y.ndim == 1 else Y).reshape(len(y), c)
    idx = np.searchsorted(classes, y)
    if c == 1:
        return np.where(idx == 1, 1.0, -1.0)[:, None]
    Y = np.zeros((len(y), c))
    Y[np.arange(len(y)), idx] = 1.0
    return Y


def _draw_gates(n_gates, d_aug, random_state):
    """The Gaussian draws of :func:`cvxnn.sample_gates` (same generator rule)."""
    from sklearn.utils import check_random_state

    if isinstance(n_gates, bool) or not isinstance(n_gates, (int, np.integer)) or n_gates < 1:
        raise ValueError(f"n_gates must be a positive integer, got {n_gates!r}")
    if isinstance(random_state, np.random.Generator):
        rng = random_state
    else:
        try:
            rng = check_random_state(random_state)
        except ValueError:
            raise ValueError("random_state must be None, an int, a numpy RandomState or "
                             f"Generator, got {random_state!r}") from None
    return np.ascontiguousarray(rng.standard_normal((int(n_gates), d_aug)).T)


def _sampled_gates(comm, Xa, n_gates, random_state):
    """Rank 0 draws; keep one gate per distinct non-zero *global* pattern, in draw order.

    Matches :func:`cvxnn.sample_gates` on the union of the rows: a pattern is
    non-zero if it is on some rank, and two gates share a pattern when their
    masks agree on every rank (compared through per-rank digests).
    """
    d_aug = Xa.shape[1]
    drawn = comm.agree(lambda: _draw_gates(n_gates, d_aug, random_state) if comm.rank == 0 else None)
    G = comm.broadcast_object(drawn)
    D = Xa @ G > 0
    active = comm.allreduce(np.ascontiguousarray(D.sum(axis=0), dtype=np.float64)) > 0
    packed = np.ascontiguousarray(np.packbits(D, axis=0).T)
    digests = [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in packed]
    every = comm.allgather_object(digests)
    keys = [b"".join(rank_digests[i] for rank_digests in every) for i in range(G.shape[1])]
    seen, keep = set(), []
    for i in np.flatnonzero(active):
        if keys[i] not in seen:
            seen.add(keys[i])
            keep.append(i)
    return np.ascontiguousarray(G[:, keep])


def _given_gates(gates, d, bias):
    """Validated gates (zero bias row added when needed) and their digest."""
    G = _check_gates(gates, np.empty((0, d)), bias)  # only the feature count is read
    return G, hashlib.blake2b(np.ascontiguousarray(G).tobytes(), digest_size=16).hexdigest()


def _masks(X, G, bias):
    """``compute_masks`` (same arithmetic) for a block that may have no rows."""
    d = X.shape[1]
    if G.shape[0] == d + 1:
        return X @ G[:d] + G[d] > 0
    return X @ G > 0


# ----------------------------------------------------------------------------
# public entry point


@dataclass
class ShardedSolveResult(SolveResult):
    """:class:`cvxnn.SolveResult` of :func:`solve_sharded`, identical on every rank.

    Extra attributes
    ----------------
    world_size : int
        Number of ranks.
    n_samples : int
        Global number of rows.
    n_screened : int
        Patterns removed by gap-safe screening.
    communication : dict
        ``n_allreduce`` (calls), ``floats`` (float64 values all-reduced, per rank)
        and ``megabytes`` (their size).
    """

    world_size: int = 1
    n_samples: int = 0
    n_screened: int = 0
    communication: dict = field(default_factory=dict)


def solve_sharded(X_local, y_local, alpha=1e-3, *, gates=None, n_gates=100, random_state=None,
                  loss="squared", bias=True, tol=1e-6, max_iter=20000, classes=None,
                  classification=None, warm_start=None, check_every=10, screen=True,
                  extrapolate=5, group=None, verbose=0) -> ShardedSolveResult:
    """Solve the gated ReLU program on data whose rows are spread over processes.

    Call it on every rank of the process group with that rank's rows; all ranks
    return the same result.  Objective (the one of :func:`cvxnn.solve` with
    ``formulation="gated"`` on the union of the rows, ``n`` rows in all)::

        L(sum_i D_i Xa U[:, i, :], Y) + alpha * sum_{i,k} ||U[:, i, k]||_2,   U: (d_aug, P, c)

    with ``L`` the squared loss ``||Z - Y||^2 / (2n)``, the mean logistic loss or
    the mean softmax cross-entropy, ``Xa = [X, 1]`` when ``bias`` and
    ``D_i = diag(1[Xa g_i > 0])``.  Solved by accelerated proximal gradient with
    backtracking, restart and gap-safe screening, stopped when the relative
    duality gap (a certificate over the ``P`` patterns) is at most ``tol``.

    Parameters
    ----------
    X_local : array-like of shape (n_r, d)
        This rank's rows (``n_r`` may differ between ranks, and may be 0).
    y_local : array-like of shape (n_r,) or (n_r, c)
        Their targets (numbers for regression, class labels otherwise; see
        :func:`cvxnn.solve` for the encoding).
    alpha : float, default=1e-3
        Weight-decay strength (>= 0).
    gates : array of shape (d, P) or (d + 1, P), optional
        Gates shared by all ranks (must be the same array on every rank; checked).
        ``None`` draws ``n_gates`` Gaussian gates on rank 0 with
        ``random_state`` (the draws of :func:`cvxnn.sample_gates`), broadcasts
        them and keeps one gate per distinct non-zero pattern of the global data.
    n_gates : int, default=100
    random_state : int, RandomState, Generator or None
        Used on rank 0 only, for the gates.
    loss : {"squared", "logistic", "cross_entropy"}, default="squared"
    bias : bool, default=True
    tol : float, default=1e-6
        Target relative duality gap.
    max_iter : int, default=20000
    classes : array-like, optional
        The class set; by default the union of the ranks' labels (all-gathered).
    classification : bool, optional
        Force (or forbid) label encoding for the squared loss.
    warm_start : dict, optional
        ``{"U": (d_aug, P, c)}`` from a previous result with the same gates
        (rank 0's copy is used).
    check_every : int, default=10
        Iterations between duality-gap evaluations.
    screen : bool, default=True
        Dynamic gap-safe screening of patterns (shrinks the all-reduces).
    extrapolate : int, default=5
        Dual extrapolation: at every gap check the local outputs of the last
        ``extrapolate + 1`` checks are combined (Anderson-type, Massias, Gramfort
        & Salmon 2018; the ``K x K`` Gram matrix of their differences rides on
        the gap's all-reduce) into a second dual candidate, whose bound is kept
        when better.  Costs one more all-reduce of ``d_aug*P*c + 2`` floats per
        check; ``0`` turns it off.
    group : torch.distributed.ProcessGroup, optional
        Default: the default group if :mod:`torch.distributed` is initialised,
        else a single process.  The backend must handle CPU tensors (gloo).
    verbose : int, default=0
        Progress on rank 0.

    Returns
    -------
    ShardedSolveResult
        A :class:`cvxnn.SolveResult` (network from the global weights, objective,
        relative gap, ``weights={"U": ...}``, gates...) plus ``world_size``,
        ``n_samples``, ``n_screened`` and ``communication``.
    """
    t0 = time.perf_counter()
    comm = Communicator(group)
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    alpha = check_alpha(alpha)
    if alpha == 0:
        raise ValueError("alpha must be > 0: without the group penalty the dual constraints "
                         "force a zero dual point and no duality gap can certify the solution")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0:
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    for name, val, low in (("max_iter", max_iter, 1), ("check_every", check_every, 1),
                           ("extrapolate", extrapolate, 0)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {val!r}")
    if not isinstance(bias, (bool, np.bool_)):
        raise TypeError(f"bias must be True or False, got {bias!r}")

    X, y, meta = comm.agree(_local_inputs, X_local, y_local, loss, classification, bias)
    meta["settings"] = (loss, alpha, bool(bias), float(tol), int(max_iter), int(check_every),
                        bool(screen), int(extrapolate), gates is None)
    metas = comm.allgather_object(meta)
    n, classes, c = comm.agree(_agreed_setup, metas, classes, loss)
    offset = sum(m["n"] for m in metas[:comm.rank])
    Y = _encode(y, classes, c)
    Xa = augment(X, bias)

    if gates is None:
        G = _sampled_gates(comm, Xa, n_gates, random_state)
        if G.shape[1] == 0:
            raise ValueError("no sampled gate has a non-zero activation pattern")
    else:
        G, digest = comm.agree(_given_gates, gates, X.shape[1], bias)
        if len(set(comm.allgather_object(digest))) > 1:
            raise ValueError("gates differ between ranks; pass the same array everywhere "
                             "(or gates=None to broadcast rank 0's draws)")
    D = _masks(X, G, bias)
    problem = ShardedGatedProblem(Xa, D, Y, loss, alpha, comm, n)

    U0 = np.zeros(problem.shape)
    if any(comm.allgather_object(warm_start is not None)):
        def _warm():
            if comm.rank != 0:
                return U0
            if not isinstance(warm_start, dict) or "U" not in warm_start:
                raise ValueError("warm_start must be a result's weights {'U': array} on rank 0")
            U = np.array(warm_start["U"], dtype=np.float64)
            if U.shape != problem.shape:
                raise ValueError(f"warm_start['U'] must have shape {problem.shape}, got {U.shape}")
            return U

        U0 = comm.broadcast(comm.agree(_warm))

    size = max(problem.n_local, 1) * Xa.shape[1] * G.shape[1] * c
    with threadpool_limits(limits=1 if size <= 50_000_000 else None, user_api="blas"):
        out = _solve_gated_sharded(problem, U0, tol=tol, max_iter=int(max_iter),
                                   check_every=int(check_every), screen=screen,
                                   screen_fraction=0.05, n_power=8, offset_rows=offset,
                                   verbose=verbose, extrapolate=int(extrapolate))
    U = comm.broadcast(out["U"])  # bitwise identical weights (and network) everywhere
    res = _finish("gated", U, out["gap"], out["n_iter"], out["converged"], out["history"], 0.0,
                  G, loss, alpha, bias, classes, False, tol, t0, f"fista[sharded x{comm.world_size}]")
    base = {f.name: getattr(res, f.name) for f in fields(SolveResult)}
    return ShardedSolveResult(
        **base, world_size=comm.world_size, n_samples=n, n_screened=out["n_screened"],
        communication={"n_allreduce": comm.n_allreduce, "floats": comm.n_floats,
                       "megabytes": comm.n_floats * 8 / 1e6})
