"""Solve one convex program with the reference library ``scnn`` (PyPI ``pyscnn`` 0.0.10).

This script runs INSIDE the reference virtual environment (it imports ``scnn``,
not ``cvxnn``); :mod:`bench_reference` starts it as a subprocess::

    /work/refvenv/bin/python benchmarks/_reference_runner.py IN.npz OUT.npz

``IN.npz`` holds ``X`` (n, d) -- already carrying the ones column when a bias is
wanted --, ``y`` (n,), the gates ``G`` (d, P), ``lam``, ``formulation``
(``"gated"`` or ``"relu"``) and ``cap`` (CPU seconds of the solve; 0 = none).  The reference is
called the way its own ``scnn.optimize`` does (``ConvexGatedReLU`` + ``RFISTA``
or ``ConvexReLU`` + ``AL``, default solver settings, default ``Metrics()``),
but with the given gates, ``NeuronGL1(lam)``, ``bias=False``,
``unitize_data=False``, ``dtype="float64"`` and ``return_convex=True``.

``OUT.npz`` receives the solve time (wall clock and process CPU time around
``optimize_model``), the
convex weights in scnn's layout ((c, p, d) gated, (2, c, p, d) relu), the gates
scnn kept (it filters duplicate/zero patterns and reorders them), its own
objective at those weights and the last entries of its metrics.  When the
solve uses more than ``cap`` CPU seconds the script writes ``timed_out=1`` and exits.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402


def main(argv):
    src, dst = argv[1], argv[2]
    with np.load(src, allow_pickle=False) as z:
        X = np.ascontiguousarray(z["X"], dtype=np.float64)
        y = np.ascontiguousarray(z["y"], dtype=np.float64)
        G = np.ascontiguousarray(z["G"], dtype=np.float64)
        lam = float(z["lam"])
        formulation = str(z["formulation"])
        cap = float(z["cap"])

    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # scnn's numpy backend does not need torch at run time
        pass
    from scnn.metrics import Metrics
    from scnn.models import ConvexGatedReLU, ConvexReLU
    from scnn.optimize import optimize_model
    from scnn.regularizers import NeuronGL1
    from scnn.solvers import AL, RFISTA

    if formulation == "gated":
        model = ConvexGatedReLU(G, c=1, bias=False)
        solver = RFISTA(model)
    elif formulation == "relu":
        model = ConvexReLU(G, c=1, bias=False)
        solver = AL(model)
    else:
        raise ValueError(formulation)
    metrics = Metrics()

    start = {}

    def _on_cap(signum, frame):
        np.savez(dst, timed_out=1, cap=cap, time=time.perf_counter() - start["wall"],
                 cpu_time=time.process_time() - start["cpu"])
        sys.stdout.flush()
        os._exit(0)

    # the cap counts CPU seconds of this process (ITIMER_PROF), so that other load on
    # the machine does not make the reference hit it early
    if cap > 0:
        signal.signal(signal.SIGPROF, _on_cap)
        signal.setitimer(signal.ITIMER_PROF, cap)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start.update(wall=time.perf_counter(), cpu=time.process_time())
        model, metrics = optimize_model(
            model, solver, metrics, X, y, regularizer=NeuronGL1(lam), return_convex=True,
            unitize_data=False, verbose=False, device="cpu", dtype="float64",
        )
        elapsed = time.perf_counter() - start["wall"]
        cpu = time.process_time() - start["cpu"]
    if cap > 0:
        signal.setitimer(signal.ITIMER_PROF, 0)

    params = [np.asarray(p, dtype=np.float64) for p in model.parameters]
    if formulation == "gated":
        weights = params[0]                                   # (c, p, d)
        Z = np.einsum("ij,lkj,ik->il", X, weights, (X @ model.G > 0).astype(float))
        penalty = lam * np.linalg.norm(weights, axis=-1).sum()
    else:
        weights = np.stack([params[0], params[1]])            # (2, c, p, d)
        Z = model(X)
        penalty = lam * np.linalg.norm(weights, axis=-1).sum()
    # scnn's objective convention: ||Z - y||^2 / (2 n c) + lam * sum of block norms
    own_objective = float(np.sum((Z[:, 0] - y) ** 2) / (2 * X.shape[0]) + penalty)

    def last(name):
        arr = np.asarray(getattr(metrics, name, []), dtype=float).ravel()
        return float(arr[-1]) if arr.size else float("nan")

    np.savez(
        dst, timed_out=0, time=elapsed, cpu_time=cpu, weights=weights, G=np.asarray(model.G, dtype=np.float64),
        own_objective=own_objective, metrics_objective=last("objective"),
        metrics_grad_norm=last("grad_norm"), metrics_time=last("time"),
        n_metric_records=len(np.asarray(getattr(metrics, "objective", [])).ravel()),
    )


if __name__ == "__main__":
    main(sys.argv)
