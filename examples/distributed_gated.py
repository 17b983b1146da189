"""Gated ReLU network trained on rows spread over several processes or machines.

Each process (rank) holds a block of the rows; the ranks all-reduce gradients and
certificates (``cvxnn.distributed.solve_sharded``) and all end with the same
network, certified by the duality gap on the union of the rows.

One machine, two processes, a PMLB table from ../shared/data split in two::

    torchrun --standalone --nproc_per_node=2 examples/distributed_gated.py \\
        --table 522_pm10 --alpha 1e-2 --check-serial

Several machines, each rank reading its own shard ``part-<rank>.npz`` (arrays
``X`` and ``y``; write them with ``--write-shards``), run on every machine::

    torchrun --nnodes=2 --nproc_per_node=4 --node_rank=<0 or 1> \\
        --master_addr=<address of node 0> --master_port=29500 \\
        examples/distributed_gated.py --shards '/data/part-{rank}.npz' --alpha 1e-3

Without torchrun (no RANK / WORLD_SIZE in the environment) it runs in one process.
See docs/distributed.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--table", default="522_pm10",
                     help="PMLB table name (read with ../shared/data/load.py); split by rows")
    src.add_argument("--shards", help="per-rank .npz files with X and y, e.g. 'part-{rank}.npz'")
    p.add_argument("--data-dir", default=None,
                   help="folder with load.py (default: $CVXNN_DATA or ../shared/data)")
    p.add_argument("--write-shards", metavar="DIR",
                   help="write --table split into --n-shards files DIR/part-<r>.npz and exit")
    p.add_argument("--n-shards", type=int, default=2)
    p.add_argument("--loss", default="squared", choices=["squared", "logistic", "cross_entropy"])
    p.add_argument("--alpha", type=float, default=1e-2)
    p.add_argument("--n-gates", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tol", type=float, default=1e-6)
    p.add_argument("--max-iter", type=int, default=20000)
    p.add_argument("--save", metavar="PATH", help="rank 0 saves the network here (.npz)")
    p.add_argument("--check-serial", action="store_true",
                   help="rank 0 also solves the whole table in one process and compares")
    p.add_argument("--verbose", type=int, default=0)
    return p.parse_args(argv)


def load_table(name, data_dir=None):
    """A PMLB table ``(X, y)`` through the shared data folder's ``load.py``."""
    here = Path(__file__).resolve().parent
    folder = Path(data_dir or os.environ.get("CVXNN_DATA") or here.parents[1] / "shared" / "data")
    if not (folder / "load.py").exists():
        sys.exit(f"no load.py in {folder}; pass --data-dir or --shards")
    sys.path.insert(0, str(folder))
    from load import load

    X, y = load(name)
    return np.asarray(X, dtype=np.float64), np.asarray(y)


def standardize_global(X_local, comm):
    """Standardise the columns with the mean and std of ALL ranks' rows (one all-reduce)."""
    d = X_local.shape[1]
    buf = np.concatenate([[X_local.shape[0]], X_local.sum(axis=0), (X_local ** 2).sum(axis=0)])
    comm.allreduce(buf)
    n = buf[0]
    mean = buf[1:1 + d] / n
    std = np.sqrt(np.maximum(buf[1 + d:] / n - mean ** 2, 0.0))
    std[std == 0] = 1.0
    return (X_local - mean) / std


def prepare_targets(y, loss, comm):
    """Regression targets standardised with global moments; labels unchanged."""
    if loss != "squared" or y.dtype.kind not in "fiu" or np.unique(y).size <= 2:
        return y
    buf = np.array([y.size, y.sum(), (y ** 2).sum()], dtype=np.float64)
    comm.allreduce(buf)
    mean = buf[1] / buf[0]
    std = np.sqrt(max(buf[2] / buf[0] - mean ** 2, 1e-300))
    return (y.astype(np.float64) - mean) / std


def main(argv=None):
    args = parse_args(argv)
    if args.write_shards:
        X, y = load_table(args.table, args.data_dir)
        out = Path(args.write_shards)
        out.mkdir(parents=True, exist_ok=True)
        for r, rows in enumerate(np.array_split(np.arange(len(y)), args.n_shards)):
            np.savez(out / f"part-{r}.npz", X=X[rows], y=y[rows])
        print(f"wrote {args.n_shards} shards of {args.table} to {out}")
        return

    import torch.distributed as dist

    from cvxnn.distributed import Communicator, solve_sharded

    launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    if launched:  # torchrun sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (env:// rendezvous)
        dist.init_process_group(backend="gloo", init_method="env://")
    comm = Communicator()
    rank, world = comm.rank, comm.world_size

    if args.shards:
        with np.load(args.shards.format(rank=rank), allow_pickle=False) as f:
            X_local, y_local = f["X"].astype(np.float64), f["y"]
    else:  # every rank reads the table and keeps its contiguous block of rows
        X, y = load_table(args.table, args.data_dir)
        rows = np.array_split(np.arange(len(y)), world)[rank]
        X_local, y_local = X[rows], y[rows]
    X_local = standardize_global(X_local, comm)
    y_local = prepare_targets(np.asarray(y_local), args.loss, comm)

    t0 = time.perf_counter()
    res = solve_sharded(X_local, y_local, args.alpha, n_gates=args.n_gates,
                        random_state=args.seed, loss=args.loss, tol=args.tol,
                        max_iter=args.max_iter, verbose=args.verbose)
    seconds = time.perf_counter() - t0
    print(f"[rank {rank}/{world}] rows {X_local.shape[0]}  objective {res.objective:.10g}  "
          f"relative gap {res.relative_gap:.2e}  iterations {res.n_iter}", flush=True)

    if rank == 0:
        net = res.network
        print(f"{world} rank(s), {res.n_samples} rows in all: objective {res.objective:.10g}, "
              f"relative gap {res.relative_gap:.2e} (certified over {res.certified_over}), "
              f"{net.n_neurons} neurons, {res.n_iter} iterations, {seconds:.2f} s")
        comm_info = res.communication
        print(f"communication per rank: {comm_info['n_allreduce']} all-reduces, "
              f"{comm_info['megabytes']:.2f} MB")
        if args.save:
            net.save(args.save, overwrite=True)
            print(f"saved the network to {args.save}")
        if args.check_serial and not args.shards:
            import cvxnn

            single = Communicator(local=True)  # same preprocessing, this process only
            X_all = standardize_global(X, single)
            y_all = prepare_targets(np.asarray(y), args.loss, single)
            ref = cvxnn.solve(X_all, y_all, args.alpha, formulation="gated", gates=res.gates,
                              loss=args.loss, solver="fista", tol=args.tol)
            rel = abs(ref.objective - res.objective) / abs(ref.objective)
            status = "matches" if rel <= 2 * args.tol else "DIFFERS FROM"
            print(f"{status} the single-process solve: objective {ref.objective:.10g} "
                  f"(relative difference {rel:.1e})")
            if status != "matches":
                sys.exit(1)
    if launched:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
