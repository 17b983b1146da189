"""Benchmark cvxnn against the reference library ``scnn`` (PyPI ``pyscnn`` 0.0.10).

Both libraries get exactly the same data, gates and lambda, squared loss and one
output:

* ``X`` has standardised columns and a column of ones appended by hand (the bias
  is done this way because scnn's own bias handling is buggy), so both are called
  with no bias: cvxnn ``bias=False``, scnn ``bias=False``;
* binary labels are encoded as -1/+1, regression targets are standardised;
* the gates are ``cvxnn.patterns.sample_gates(X1, P, bias=False, random_state=seed)``
  (Gaussian gates acting on ``X1 = [X, 1]``; zero and duplicate patterns dropped,
  which is also what scnn does internally);
* objective, both libraries: ``||Z - y||^2 / (2 n) + alpha * sum of block norms``
  (scnn divides by ``2 n c``; ``c = 1`` here).

The reference runs in its own virtual environment (``--reference-python``) as a
subprocess (:file:`_reference_runner.py`) with its default solvers and settings
(R-FISTA for the gated program, augmented Lagrangian for the ReLU program),
``float64``, ``unitize_data=False``.  Its convex weights are read back and its
objective and constraint violation are evaluated with cvxnn's own code
(:class:`cvxnn.problems.GatedReLUProblem` / :class:`cvxnn.problems.ReLUProblem`).
cvxnn runs :func:`cvxnn.solve` with its default solvers (working-set second-order
method for the gated program, working-set interior point for the ReLU program) at
``tol=1e-6`` (relative duality gap, and relative cone violation for ReLU).

Times are wall-clock seconds around the solve call only (imports, data transfer
and the subprocess start are excluded); process CPU times are recorded as well
because they are less sensitive to other load on the machine.  Run both sides on
one core::

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \\
        .venv/bin/python benchmarks/bench_reference.py [--quick] [--cap 600]

Setting up the reference environment (outside the repository)::

    python3 -m venv /work/refvenv
    /work/refvenv/bin/pip install torch==2.13.0 cvxpy scikit-learn tqdm opt-einsum linalg-backends
    /work/refvenv/bin/pip install --no-deps pyscnn==0.0.10

(pin torch: an unpinned torch pulls several GB of CUDA wheels; ``linalg-backends``
provides the ``lab`` module that pyscnn imports but does not declare.)

Output: one JSON record per (problem, formulation), a table, and the records in
``--out`` (default :file:`benchmarks/bench_reference.json`).  Record fields:

``ref_time``/``cvxnn_time`` (wall s; cvxnn's the median of ``--repeat`` solves,
default 3, all in ``cvxnn_times``; the reference runs once), ``ref_cpu_time``/``cvxnn_cpu_time``,
``ref_objective``/``cvxnn_objective`` (both evaluated by cvxnn),
``ref_violation``/``cvxnn_violation`` (relative cone violation,
``ReLUProblem.violation``; 0 for gated), ``ref_rel_gap`` (cvxnn's duality-gap
certificate at the reference's weights; gated only), ``cvxnn_rel_gap``,
``time_ratio = ref_time / cvxnn_time`` and ``cpu_ratio`` (the same with CPU
times), ``objective_rel_diff =
(cvxnn_objective - ref_objective) / |ref_objective|`` (negative: cvxnn lower),
``cvxnn_time_to_ref`` (time of a cvxnn solve whose duality-gap tolerance is set so
that its objective is certified to be no worse than the reference's final
objective; only when the reference's objective lies above cvxnn's optimum) and
``time_to_ref_ratio = ref_time / cvxnn_time_to_ref``.

Cap (``--cap``, default 600): a reference solve that uses more than ``cap`` CPU
seconds is stopped (CPU rather than wall seconds, so that other load on a shared
machine does not trigger it); it is reported with ``ref_time = ">cap"``, its wall
and CPU time at the cap in ``ref_time_at_cap``/``ref_cpu_time_at_cap``, and
``time_ratio``/``cpu_ratio`` computed from those, flagged by
``time_ratio_is_lower_bound``.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import cvxnn  # noqa: E402
from cvxnn.patterns import compute_masks, sample_gates  # noqa: E402
from cvxnn.problems import GatedReLUProblem, ReLUProblem  # noqa: E402

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "_reference_runner.py"
DATA = Path("/work/shared/data")
DEFAULT_REF_PYTHON = "/work/refvenv/bin/python"

INSTALL_HELP = """\
The reference library (scnn, PyPI pyscnn 0.0.10) was not found at {python!r}.
Create its virtual environment outside the repository with:

    python3 -m venv /work/refvenv
    /work/refvenv/bin/pip install torch==2.13.0 cvxpy scikit-learn tqdm opt-einsum linalg-backends
    /work/refvenv/bin/pip install --no-deps pyscnn==0.0.10

(torch must be pinned: an unpinned torch pulls multi-GB CUDA wheels; pyscnn needs
linalg-backends for its undeclared `lab` import) and pass
--reference-python /path/to/that/venv/bin/python if it lives elsewhere.
Import error: {err}"""

#: (table, alpha, number of gates drawn); regression tables get standardised targets
PROBLEMS = [
    ("wdbc", 1e-3, 100),
    ("wdbc", 1e-2, 100),
    ("wdbc", 1e-4, 100),
    ("wdbc", 1e-3, 500),
    ("pima", 1e-3, 100),
    ("australian", 1e-3, 100),
    ("diabetes", 1e-3, 100),
    ("breast_w", 1e-3, 100),
    ("tic_tac_toe", 1e-3, 100),
    ("1028_SWD", 1e-3, 100),
    ("522_pm10", 1e-3, 100),
]
QUICK = [("wdbc", 1e-3, 100), ("pima", 1e-3, 100)]
#: larger tables (n from 1,000 to 22,784; the sizes of the Clarabel benchmark), ``--large``
LARGE = [
    ("1028_SWD", 1e-3, 500),
    ("kr_vs_kp", 1e-3, 100),
    ("529_pollen", 1e-3, 100),
    ("503_wind", 1e-3, 100),
    ("mushroom", 1e-3, 100),
    ("225_puma8NH", 1e-3, 100),
    ("201_pol", 1e-3, 100),
    ("1199_BNG_echoMonths", 1e-3, 100),
    ("574_house_16H", 1e-3, 100),
]
FORMULATIONS = ("gated", "relu")


# ----------------------------------------------------------------------------- data
def _standardize(X):
    X = np.asarray(X, dtype=np.float64)
    s = X.std(axis=0)
    s[s == 0] = 1.0
    return (X - X.mean(axis=0)) / s


def load_problem(table):
    """Standardised ``X`` with a ones column appended, and targets (+-1 or standardised)."""
    if table == "diabetes":
        from sklearn.datasets import load_diabetes

        X, y = load_diabetes(return_X_y=True)
        regression = True
    else:
        if str(DATA) not in sys.path:
            sys.path.insert(0, str(DATA))
        from load import list_datasets, load

        X, y = load(table)
        regression = table in list_datasets("regression")
    X = _standardize(X)
    y = np.asarray(y, dtype=np.float64)
    if regression:
        y = (y - y.mean()) / y.std()
    else:
        labels = np.unique(y)
        if labels.size != 2:
            raise ValueError(f"{table}: expected binary labels, got {labels.size} classes")
        y = np.where(y == labels[1], 1.0, -1.0)
    X1 = np.hstack([X, np.ones((X.shape[0], 1))])
    return X1, y


# ------------------------------------------------------------------------ reference
def check_reference(python):
    if not Path(python).exists():
        return f"{python} does not exist"
    proc = subprocess.run([python, "-c", "import lab, scnn.optimize"], capture_output=True,
                          text=True, timeout=300)
    if proc.returncode != 0:
        return proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
    return None


def run_reference(python, X1, y, G, alpha, formulation, cap, workdir):
    src, dst = Path(workdir) / "in.npz", Path(workdir) / "out.npz"
    if dst.exists():
        dst.unlink()
    np.savez(src, X=X1, y=y, G=G, lam=alpha, formulation=formulation, cap=float(cap or 0.0))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    # the runner stops itself after `cap` CPU seconds of solve time; the wall-clock
    # subprocess timeout is only a backstop (the machine may be shared)
    backstop = None if not cap else 20 * cap + 300
    try:
        proc = subprocess.run([python, str(RUNNER), str(src), str(dst)], capture_output=True,
                              text=True, env=env, timeout=backstop)
    except subprocess.TimeoutExpired:
        return {"timed_out": True, "time": float(backstop), "cpu_time": float("nan")}
    if proc.returncode != 0 or not dst.exists():
        raise RuntimeError(f"reference runner failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    with np.load(dst, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    out["timed_out"] = bool(out["timed_out"])
    return out


def _pattern_keys(D):
    return [bytes(col) for col in np.packbits(D, axis=0).T]


def align_reference(out, X1, G, formulation):
    """Reference weights in cvxnn's layout and gate order.

    scnn filters duplicate/zero patterns and sorts the patterns (``np.unique``);
    its weights are matched to cvxnn's gates through the activation patterns.
    """
    D = compute_masks(X1, G, bias=False)
    Dref = compute_masks(X1, out["G"], bias=False)
    keys, ref_keys = _pattern_keys(D), _pattern_keys(Dref)
    where = {k: j for j, k in enumerate(ref_keys)}
    same = sorted(keys) == sorted(ref_keys)
    W = out["weights"]
    d, P = X1.shape[1], G.shape[1]
    if formulation == "gated":
        U = np.zeros((d, P, 1))
        for i, k in enumerate(keys):
            if k in where:
                U[:, i, 0] = W[0, where[k], :]
        return U, same
    Q = np.zeros((d, 2, P, 1))
    for i, k in enumerate(keys):
        if k in where:
            Q[:, 0, i, 0] = W[0, 0, where[k], :]
            Q[:, 1, i, 0] = W[1, 0, where[k], :]
    return Q, same


# ---------------------------------------------------------------------------- cvxnn
def run_cvxnn(X1, y, G, alpha, formulation, tol, repeat=1):
    """cvxnn's solve, timed ``repeat`` times: ``(result, median wall s, median CPU s, walls)``.

    The solves are deterministic (the same result each time); repeating only steadies
    the timing of sub-second solves on a noisy machine.
    """
    walls, cpus = [], []
    for _ in range(max(1, repeat)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0, c0 = time.perf_counter(), time.process_time()
            res = cvxnn.solve(X1, y, alpha, formulation=formulation, loss="squared", gates=G,
                              bias=False, tol=tol, classification=False)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    return res, float(np.median(walls)), float(np.median(cpus)), walls


def time_to_reference(X1, y, G, alpha, formulation, ref_objective, opt_objective, repeat=1):
    """Time of a cvxnn solve certified to end no worse than ``ref_objective``.

    A relative gap ``<= t`` gives ``F <= F*/(1 - t)``; with
    ``t = (ref - F_cvxnn)/ref <= (ref - F*)/ref`` this is ``<= ref``.
    """
    t = (ref_objective - opt_objective) / abs(ref_objective)
    if not t > 1e-6:
        return None
    res, wall, cpu, _ = run_cvxnn(X1, y, G, alpha, formulation, tol=min(t, 0.5), repeat=repeat)
    return {"time": wall, "cpu_time": cpu, "objective": res.objective,
            "violation": res.constraint_violation, "tol": min(t, 0.5),
            "reached": bool(res.objective <= ref_objective)}


# ----------------------------------------------------------------------------- main
def bench_one(args, table, alpha, n_gates, formulation, X1, y, G, workdir):
    n, d = X1.shape
    P = G.shape[1]
    rec = {"table": table, "n": n, "d": d, "P": P, "n_gates_drawn": n_gates, "alpha": alpha,
           "formulation": formulation}
    Y = y[:, None]
    D = compute_masks(X1, G, bias=False)
    problem = (GatedReLUProblem if formulation == "gated" else ReLUProblem)(X1, D, Y, "squared", alpha)

    out = run_reference(args.reference_python, X1, y, G, alpha, formulation, args.cap, workdir)
    if out["timed_out"]:
        rec.update(ref_time=">cap", ref_cap=args.cap, ref_time_at_cap=float(out["time"]),
                   ref_cpu_time=">cap", ref_cpu_time_at_cap=float(out["cpu_time"]),
                   ref_objective=None, ref_violation=None, ref_rel_gap=None)
    else:
        Wref, same = align_reference(out, X1, G, formulation)
        ref_obj = float(problem.objective(Wref))
        rec.update(ref_time=float(out["time"]), ref_cpu_time=float(out["cpu_time"]),
                   ref_objective=ref_obj,
                   ref_violation=float(problem.violation(Wref)) if formulation == "relu" else 0.0,
                   ref_rel_gap=(float(problem.gap(Wref).relative_gap) if formulation == "gated"
                                else None),
                   ref_own_objective=float(out["own_objective"]),
                   ref_metrics_grad_norm=float(out["metrics_grad_norm"]),
                   ref_same_patterns=bool(same), ref_P=int(out["G"].shape[1]))

    res, wall, cpu, walls = run_cvxnn(X1, y, G, alpha, formulation, args.tol, repeat=args.repeat)
    rec.update(cvxnn_time=wall, cvxnn_cpu_time=cpu, cvxnn_times=walls, cvxnn_objective=float(res.objective),
               cvxnn_rel_gap=float(res.relative_gap),
               cvxnn_violation=float(res.constraint_violation), cvxnn_converged=bool(res.converged),
               cvxnn_solver=res.solver, cvxnn_n_iter=int(res.n_iter))
    # check that cvxnn's objective evaluation agrees with the returned value
    W = res.weights["U"] if formulation == "gated" else np.stack([res.weights["V"], res.weights["W"]], 1)
    rec["cvxnn_objective_check"] = float(problem.objective(W))

    if out["timed_out"]:
        cpu_at_cap = rec["ref_cpu_time_at_cap"]
        rec.update(time_ratio=rec["ref_time_at_cap"] / wall, time_ratio_is_lower_bound=True,
                   cpu_ratio=(cpu_at_cap / cpu if cpu > 0 and np.isfinite(cpu_at_cap) else None),
                   objective_rel_diff=None, cvxnn_time_to_ref=None, time_to_ref_ratio=None)
        return rec
    rec.update(time_ratio=rec["ref_time"] / wall, time_ratio_is_lower_bound=False,
               cpu_ratio=rec["ref_cpu_time"] / cpu if cpu > 0 else None,
               objective_rel_diff=(rec["cvxnn_objective"] - rec["ref_objective"])
               / abs(rec["ref_objective"]))
    ttr = None
    if not args.no_time_to_ref:
        ttr = time_to_reference(X1, y, G, alpha, formulation, rec["ref_objective"],
                                rec["cvxnn_objective"], repeat=args.repeat)
    rec["cvxnn_time_to_ref"] = ttr
    rec["time_to_ref_ratio"] = (rec["ref_time"] / ttr["time"]
                                if ttr is not None and ttr["reached"] else None)
    return rec


def _fmt(x, spec):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    return format(x, spec)


def print_table(records, file=sys.stdout):
    head = (f"{'table':12s} {'alpha':>6s} {'P':>4s} {'form':5s} {'ref[s]':>8s} {'cvxnn[s]':>8s} "
            f"{'ratio':>7s} {'cpu-r':>6s} {'->ref[s]':>8s} {'ref obj':>13s} {'cvxnn obj':>13s} "
            f"{'obj diff':>9s} {'ref viol':>8s} {'ref gap':>8s} {'cvx gap':>8s} {'cvx viol':>8s}")
    print(head, file=file)
    print("-" * len(head), file=file)
    for r in records:
        ttr = r.get("cvxnn_time_to_ref")
        ratio = _fmt(r["time_ratio"], "7.1f") + (">" if r.get("time_ratio_is_lower_bound") else "")
        print(f"{r['table']:12s} {r['alpha']:6.0e} {r['P']:4d} {r['formulation']:5s} "
              f"{_fmt(r['ref_time'], '8.2f'):>8s} {r['cvxnn_time']:8.2f} {ratio:>7s} "
              f"{_fmt(r.get('cpu_ratio'), '5.1f') + ('>' if r.get('time_ratio_is_lower_bound') else ''):>6s} "
              f"{_fmt(ttr['time'] if ttr else None, '8.2f'):>8s} "
              f"{_fmt(r['ref_objective'], '13.8f'):>13s} {r['cvxnn_objective']:13.8f} "
              f"{_fmt(r['objective_rel_diff'], '9.1e'):>9s} {_fmt(r['ref_violation'], '8.1e'):>8s} "
              f"{_fmt(r.get('ref_rel_gap'), '8.1e'):>8s} {r['cvxnn_rel_gap']:8.1e} "
              f"{r['cvxnn_violation']:8.1e}", file=file)
    print(file=file)
    print("ratio = ref wall time / cvxnn wall time ('>' = reference hit the cap, lower bound); "
          "cpu-r = same with process CPU times;", file=file)
    print("->ref = cvxnn wall time to an objective certified <= the reference's; obj diff = "
          "(cvxnn - ref)/|ref| (negative: cvxnn lower);", file=file)
    print("viol = relative cone violation (ReLUProblem.violation); gap = relative duality gap "
          "(cvxnn's certificate).", file=file)
    print(file=file)
    print(f"{'formulation':11s} {'problems':>8s} {'median ratio':>12s} {'min':>7s} {'max':>7s} "
          f"{'median cpu-r':>12s} {'median ->ref ratio':>18s} {'cvxnn obj <= ref':>16s}", file=file)
    for form in FORMULATIONS:
        rs = [r for r in records if r["formulation"] == form]
        if not rs:
            continue
        ratios = [r["time_ratio"] for r in rs]
        cpu = [r["cpu_ratio"] for r in rs if r.get("cpu_ratio")]
        ttr = [r["time_to_ref_ratio"] for r in rs if r.get("time_to_ref_ratio")]
        n_lb = sum(bool(r.get("time_ratio_is_lower_bound")) for r in rs)
        ok = sum(r["ref_objective"] is not None and r["cvxnn_objective"] <= r["ref_objective"]
                 for r in rs)
        known = sum(r["ref_objective"] is not None for r in rs)
        med = f"{np.median(ratios):.1f}" + (f" ({n_lb} lb)" if n_lb else "")
        print(f"{form:11s} {len(rs):8d} {med:>12s} {min(ratios):7.1f} {max(ratios):7.1f} "
              f"{_fmt(np.median(cpu) if cpu else None, '12.1f'):>12s} "
              f"{_fmt(np.median(ttr) if ttr else None, '18.1f'):>18s} {f'{ok}/{known}':>16s}",
              file=file)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference-python", default=DEFAULT_REF_PYTHON,
                    help=f"python of the venv holding pyscnn 0.0.10 (default {DEFAULT_REF_PYTHON})")
    ap.add_argument("--quick", action="store_true", help="two problems only (wdbc and pima, alpha 1e-3)")
    ap.add_argument("--large", action="store_true",
                    help="the larger tables instead (n = 1,000 .. 22,784, alpha 1e-3)")
    ap.add_argument("--cap", type=float, default=600.0,
                    help="cap on one reference solve, in CPU seconds of its process (0: none; "
                         "default 600); a capped solve is reported as '>cap' and its time "
                         "ratio is a lower bound")
    ap.add_argument("--tol", type=float, default=1e-6, help="cvxnn tolerance (default 1e-6)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="cvxnn solves timed per problem; the median is reported (default 3; "
                         "the reference, at seconds to minutes per solve, runs once)")
    ap.add_argument("--seed", type=int, default=0, help="random_state of sample_gates (default 0)")
    ap.add_argument("--formulation", choices=FORMULATIONS, action="append",
                    help="formulations to run (default both)")
    ap.add_argument("--filter", default="", help="only tables whose name contains this")
    ap.add_argument("--no-time-to-ref", action="store_true",
                    help="skip the extra cvxnn solve timing the reference's objective")
    ap.add_argument("--out", default=str(HERE / "bench_reference.json"),
                    help="JSON output (default benchmarks/bench_reference.json); '' to skip")
    args = ap.parse_args(argv)

    err = check_reference(args.reference_python)
    if err is not None:
        print(INSTALL_HELP.format(python=args.reference_python, err=err), file=sys.stderr)
        return 2
    forms = args.formulation or list(FORMULATIONS)
    problems = QUICK if args.quick else LARGE if args.large else PROBLEMS
    problems = [p for p in problems if args.filter in p[0]]

    records = []
    with tempfile.TemporaryDirectory(prefix="bench_reference_") as workdir:
        for table, alpha, n_gates in problems:
            X1, y = load_problem(table)
            G = sample_gates(X1, n_gates, bias=False, random_state=args.seed)
            for form in forms:
                rec = bench_one(args, table, alpha, n_gates, form, X1, y, G, workdir)
                records.append(rec)
                print(f"# {table} alpha={alpha:g} P={rec['P']} {form}: ref {_fmt(rec['ref_time'], '.2f')} s, "
                      f"cvxnn {rec['cvxnn_time']:.2f} s, ratio {rec['time_ratio']:.1f}",
                      file=sys.stderr, flush=True)
                if args.out:
                    Path(args.out).write_text(json.dumps(records, indent=1) + "\n")
    meta = {"cvxnn_version": getattr(cvxnn, "__version__", None), "tol": args.tol,
            "seed": args.seed, "cap": args.cap, "threads": 1, "cvxnn_repeat": args.repeat}
    print(json.dumps(records, indent=1))
    print()
    print(f"# settings: {json.dumps(meta)}")
    print_table(records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
