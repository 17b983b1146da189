"""cvxnn against cvxpy + Clarabel on PMLB tables: objective agreement and time ratio.

For every problem of the design table ``PROBLEMS`` below (13 PMLB tables from
``../shared/data``, n from 252 to 20,000, P in {100, 500}, alpha in {1e-2, 1e-3,
1e-4}, squared loss on standardised regression targets, logistic loss on binary
tables) and both formulations (``gated`` and ``relu``) the script

* standardises X (zero mean, unit variance per column) and samples ``P``
  Gaussian gates once (``sample_gates(X, P, bias=True, random_state=0)``, bias
  column); both solvers get the *same* gates;
* runs ``cvxnn.solve(X, y, alpha, formulation=..., loss=..., gates=G, tol=1e-6)``
  (native solvers, ``solver="auto"``);
* runs the Clarabel oracle of :mod:`cvxnn.solvers.cvxpy_ref`
  (``solve_gated_cvxpy`` / ``solve_relu_cvxpy``) with the module's tight settings
  (``tol_gap_abs = tol_gap_rel = 1e-11``, ``tol_feas = tol_ktratio = 1e-8``,
  ``max_iter = 500``) and ``max_threads = --clarabel-threads`` (default 1, as
  cvxnn runs on one BLAS thread); its time includes cvxpy's compilation;
* evaluates both solutions with the objective of the cvxnn problem object
  (``GatedReLUProblem.objective`` / ``ReLUProblem.objective``) and reports
  ``obj_rel_diff = (f(cvxnn) - f(clarabel)) / |f(clarabel)|`` (agreement: at most
  1e-6 in absolute value), cvxnn's certified relative duality gap and relative
  cone violation, Clarabel's status, time, cone violation and gap, and the time
  ratios ``clarabel / cvxnn``.

Timing.  Each solver runs in a forked subprocess, under a cap (``--clarabel-cap``,
default 600 s; ``--cvxnn-cap``, default 1200 s) and an address-space limit
(``--mem-gb``).  The cap is measured in CPU seconds of the subprocess by default
(``--cap-clock cpu``; both solvers are single-threaded, so CPU time is the wall
time of an otherwise idle core, and it does not depend on what else runs on the
machine) or in wall seconds (``--cap-clock wall``).  Both CPU and wall times are
recorded; ``ratio_cpu`` is the primary ratio, ``ratio_wall`` is reported too.

Clarabel runs that would obviously not fit are not started:

* size guard: the estimated number of nonzeros of the cvxpy problem data
  (``n (d+1) P`` for gated, ``4 n (d+1) P`` for ReLU: prediction and the ``2 n P``
  cone constraints) above ``--max-nnz`` (default 2e8);
* extrapolation guard (``--no-extrapolate`` turns it off): a problem of the same
  formulation and loss with smaller estimated factorisation work
  ``n (k (d+1) P)^2`` (k = 1 gated, 2 ReLU; the KKT systems couple all ``k (d+1) P``
  weights through the n residuals) already ran past the cap in this process.

A Clarabel run that ran past the cap, out of memory, or was skipped is reported
as ``>cap`` and its ratio as a lower bound (marked ``>=``; ``cap / cvxnn`` for
skipped runs, the time used before the kill otherwise); such a problem never
counts as agreeing.  A Clarabel *failure* (solver error) has no ratio.  A cvxnn
run past its cap gives an upper bound (``<=``).  When both finish but the
objectives differ by more than 1e-6, the solver with the larger objective did not
reach the optimum in its time: the ratio is then a lower bound if that is
Clarabel and an upper bound if it is cvxnn.  The medians over ``n >= 500`` are
reported per formulation, marked ``>=`` when lower bounds can move them.

Usage (one BLAS thread)::

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/bench_clarabel.py \\
        [--quick] [--only NAME ...] [--formulation gated|relu] [--clarabel-cap 600] \\
        [--no-clarabel] [--out benchmarks/bench_clarabel.json]

``--quick`` runs the three smallest problems; ``--only`` takes table names
(repeatable).  Results are written to ``--out`` after every run (JSON with
``meta`` and ``records``).  ``--merge A.json B.json ...`` combines the records of
several runs (e.g. one per formulation, run side by side) into ``--out`` and
prints the table; ``--table-only`` reprints the table of ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import cvxnn  # noqa: E402
from cvxnn import solve  # noqa: E402
from cvxnn._data import augment, encode_targets  # noqa: E402
from cvxnn.patterns import compute_masks, sample_gates  # noqa: E402
from cvxnn.problems import GatedReLUProblem, ReLUProblem  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
DEFAULT_OUT = Path(__file__).with_name("bench_clarabel.json")

#: design table: (PMLB name, loss, P, alpha, row cap); tables larger than the row
#: cap are subsampled (seed 0).  Sorted by n.
PROBLEMS = [
    ("560_bodyfat", "squared", 100, 1e-3, None),              # n = 252,   d = 14
    ("wdbc", "logistic", 100, 1e-2, None),                    # n = 569,   d = 30
    ("pima", "logistic", 100, 1e-4, None),                    # n = 768,   d = 8
    ("1028_SWD", "squared", 500, 1e-4, None),                 # n = 1000,  d = 10
    ("Hill_Valley_with_noise", "logistic", 100, 1e-3, None),  # n = 1212,  d = 100
    ("kr_vs_kp", "logistic", 100, 1e-2, None),                # n = 3196,  d = 36
    ("529_pollen", "squared", 500, 1e-2, None),               # n = 3848,  d = 4
    ("503_wind", "squared", 100, 1e-4, None),                 # n = 6574,  d = 14
    ("mushroom", "logistic", 500, 1e-2, None),                # n = 8124,  d = 22
    ("225_puma8NH", "squared", 500, 1e-3, None),              # n = 8192,  d = 8
    ("201_pol", "squared", 100, 1e-2, None),                  # n = 15000, d = 48
    ("1199_BNG_echoMonths", "squared", 500, 1e-2, None),      # n = 17496, d = 9
    ("574_house_16H", "squared", 100, 1e-3, 20000),           # n = 22784 -> 20000, d = 16
]
QUICK = PROBLEMS[:3]
FORMULATIONS = ("gated", "relu")
TOL = 1e-6
OBJ_TOL = 1e-6
DONE = ("optimal", "optimal_inaccurate")
NO_RESULT = ("timeout", "out_of_memory", "crashed", "skipped_size", "skipped_extrapolated")


# ----------------------------------------------------------------------------- data
def _standardise(A):
    A = np.asarray(A, dtype=np.float64)
    sd = A.std(axis=0)
    return (A - A.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def load_table(name, loss, max_rows=None, seed=0):
    """Standardised X, the target and whether it is a class label."""
    sys.path.insert(0, str(DATA))
    from load import load

    X, y = load(name)
    if max_rows is not None and X.shape[0] > max_rows:
        idx = np.sort(np.random.default_rng(seed).choice(X.shape[0], max_rows, replace=False))
        X, y = X[idx], y[idx]
    X = _standardise(X)
    if loss == "squared" and not (y.dtype.kind in "iu" and len(np.unique(y)) <= 2):
        return X, _standardise(y.astype(float)), False
    return X, y, True


def make_instance(spec, formulation):
    name, loss, P, alpha, max_rows = spec
    X, y, classification = load_table(name, loss, max_rows)
    G = sample_gates(X, P, bias=True, random_state=0)
    D = compute_masks(X, G, bias=True)
    Y, _ = encode_targets(y, loss, classification)
    Xa = augment(X, True)
    cls = GatedReLUProblem if formulation == "gated" else ReLUProblem
    return X, y, classification, G, D, Xa, Y, cls(Xa, D, Y, loss, alpha)


def est_nnz(n, d_aug, P, c, formulation):
    base = n * d_aug * P * c
    return base if formulation == "gated" else 4 * base


def est_work(n, d_aug, P, c, formulation):
    k = 1 if formulation == "gated" else 2
    return float(n) * float(k * d_aug * P * c) ** 2


# ------------------------------------------------------------------ capped subprocess
def _proc_cpu_seconds(pid):
    """user + system CPU seconds of a live process and its threads (Linux /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _child_main(conn, fn, fn_args, mem_gb):
    try:
        if mem_gb and mem_gb > 0:
            import resource

            lim = int(mem_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
        out = fn(conn, *fn_args)
        conn.send(("done", out))
    except MemoryError:
        conn.send(("done", {"status": "out_of_memory", "error": f"MemoryError (limit {mem_gb} GiB)"}))
    except BaseException as exc:  # pragma: no cover - reported, not raised
        conn.send(("done", {"status": "error",
                            "error": (repr(exc) + " " + traceback.format_exc())[-600:]}))
    finally:
        conn.close()


def run_capped(fn, fn_args, cap, clock, mem_gb, wall_factor=8.0):
    """Run ``fn(conn, *fn_args)`` in a forked process under a CPU or wall cap.

    ``fn`` sends ``("start", None)`` over ``conn`` when the timed region begins and
    returns its result dict.  Returns that dict, or one with ``status`` ``timeout``
    / ``crashed`` and ``cpu_used_s`` / ``wall_used_s`` (of the timed region) when
    the process had to be stopped.  Under ``clock="cpu"`` a hard wall limit of
    ``wall_factor * cap`` still applies.
    """
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child_main, args=(child, fn, fn_args, mem_gb))
    p.start()
    child.close()
    t_start = time.perf_counter()
    cpu_start = 0.0
    started = False
    result = None
    limit_hit = None
    while True:
        if parent.poll(0.5):
            try:
                kind, payload = parent.recv()
            except EOFError:
                break
            if kind == "start":
                started = True
                t_start = time.perf_counter()
                cpu_start = _proc_cpu_seconds(p.pid) or 0.0
                continue
            result = payload
            break
        if not p.is_alive():
            break
        wall = time.perf_counter() - t_start
        cpu = (_proc_cpu_seconds(p.pid) or cpu_start) - cpu_start
        if started and clock == "cpu" and cpu > cap:
            limit_hit = "cpu"
        elif started and (wall > cap if clock == "wall" else wall > wall_factor * cap):
            limit_hit = "wall"
        elif not started and wall > max(120.0, cap):  # stuck before the timed region
            limit_hit = "setup"
        if limit_hit:
            break
    wall_used = time.perf_counter() - t_start
    cpu_used = (_proc_cpu_seconds(p.pid) or cpu_start) - cpu_start
    if p.is_alive():
        p.terminate()
        p.join(5)
        if p.is_alive():
            p.kill()
    p.join()
    if result is not None:
        return result
    if limit_hit:
        return {"status": "timeout", "limit": limit_hit, "cpu_used_s": cpu_used,
                "wall_used_s": wall_used}
    return {"status": "crashed", "error": f"exit code {p.exitcode} (likely out of memory)",
            "cpu_used_s": cpu_used, "wall_used_s": wall_used}


# ---------------------------------------------------------------------- the solvers
def _cvxnn_job(conn, X, y, classification, G, alpha, loss, formulation):
    conn.send(("start", None))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c0, t0 = time.process_time(), time.perf_counter()
        res = solve(X, y, alpha, formulation=formulation, loss=loss, gates=G, tol=TOL,
                    classification=classification if loss == "squared" else None)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "status": "done", "seconds": seconds, "cpu_s": cpu, "weights": res.weights,
        "reported_objective": float(res.objective), "rel_gap": float(res.relative_gap),
        "violation": float(res.constraint_violation), "converged": bool(res.converged),
        "n_iter": int(res.n_iter), "n_active": int(res.n_active), "solver": res.solver,
        "warnings": sorted({str(m.message)[:200] for m in caught}),
    }


def _clarabel_job(conn, Xa, D, Y, alpha, loss, formulation, threads):
    import cvxpy  # noqa: F401  (imported before the timed region)

    from cvxnn.solvers import cvxpy_ref

    stats = {}
    orig = cvxpy_ref._solve

    def _solve_recording(cp, prob, solver, verbose, solver_options):
        try:
            return orig(cp, prob, solver, verbose, solver_options)
        finally:
            ss = prob.solver_stats
            if ss is not None:
                stats["solver_s"] = ss.solve_time
                stats["n_iter"] = ss.num_iters
            try:
                stats["compile_s"] = prob.compilation_time
            except Exception:  # pragma: no cover
                pass

    cvxpy_ref._solve = _solve_recording
    opts = {"max_threads": int(threads)} if threads else {}
    conn.send(("start", None))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c0, t0 = time.process_time(), time.perf_counter()
        try:
            if formulation == "gated":
                out = cvxpy_ref.solve_gated_cvxpy(Xa, D, Y, alpha, loss, **opts)
                sol = {"U": out["U"]}
            else:
                out = cvxpy_ref.solve_relu_cvxpy(Xa, D, Y, alpha, loss, **opts)
                sol = {"V": out["V"], "W": out["W"], "A_V": out["A_V"], "A_W": out["A_W"]}
        except RuntimeError as exc:
            return {"status": "failed", "error": str(exc)[:300], "seconds": time.perf_counter() - t0,
                    "cpu_s": time.process_time() - c0, **stats}
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"status": out["status"], "seconds": seconds, "cpu_s": cpu, **stats, **sol}


# ----------------------------------------------------------------------------- main
def bench_one(spec, formulation, args, timed_out):
    name, loss, P, alpha, max_rows = spec
    X, y, classification, G, D, Xa, Y, problem = make_instance(spec, formulation)
    n, d_aug = Xa.shape
    c = Y.shape[1]
    nnz = est_nnz(n, d_aug, D.shape[1], c, formulation)
    work = est_work(n, d_aug, D.shape[1], c, formulation)
    rec = {"data": name, "n": n, "d": d_aug - 1, "P_drawn": P, "P": int(D.shape[1]),
           "loss": loss, "alpha": alpha, "formulation": formulation, "est_nnz": nnz,
           "est_work": work, "cap_clock": args.cap_clock, "cvxnn_cap_s": args.cvxnn_cap,
           "clarabel_cap_s": args.clarabel_cap}

    # ---- cvxnn
    cv = run_capped(_cvxnn_job, (X, y, classification, G, alpha, loss, formulation),
                    args.cvxnn_cap, args.cap_clock, args.mem_gb)
    rec["cvxnn_status"] = cv["status"]
    if cv["status"] == "done":
        w = cv["weights"]
        Qc = w["U"] if formulation == "gated" else np.stack([w["V"], w["W"]], axis=1)
        rec.update({
            "cvxnn_s": cv["seconds"], "cvxnn_cpu_s": cv["cpu_s"],
            "cvxnn_objective": float(problem.objective(Qc)),
            "cvxnn_reported_objective": cv["reported_objective"],
            "cvxnn_rel_gap": cv["rel_gap"], "cvxnn_violation": cv["violation"],
            "cvxnn_converged": cv["converged"], "cvxnn_n_iter": cv["n_iter"],
            "cvxnn_n_active": cv["n_active"], "cvxnn_solver": cv["solver"],
            "cvxnn_warnings": cv["warnings"],
        })
        t_cpu, t_wall, cv_bound = cv["cpu_s"], cv["seconds"], False
    else:
        rec["cvxnn_error"] = cv.get("error")
        rec["cvxnn_cpu_s"] = cv.get("cpu_used_s")
        rec["cvxnn_s"] = cv.get("wall_used_s")
        t_cpu, t_wall, cv_bound = cv.get("cpu_used_s"), cv.get("wall_used_s"), True
    print(f"# {name:24s} {formulation:5s} cvxnn {cv['status']} cpu {_f(t_cpu, '.2f')}s "
          f"wall {_f(t_wall, '.2f')}s gap {_f(rec.get('cvxnn_rel_gap'), '.1e')} "
          f"viol {_f(rec.get('cvxnn_violation'), '.1e')}", file=sys.stderr, flush=True)

    # ---- Clarabel
    cap = args.clarabel_cap
    key = (formulation, loss)
    if args.no_clarabel:
        rec["clarabel_status"] = "not_run"
        return rec
    if nnz > args.max_nnz:
        cl = {"status": "skipped_size",
              "error": f"estimated {nnz:.2e} nonzeros > --max-nnz {args.max_nnz:.1e}"}
    elif not args.no_extrapolate and key in timed_out and work >= timed_out[key][0]:
        cl = {"status": "skipped_extrapolated",
              "error": f"{timed_out[key][1]} ({formulation}, {loss}) with smaller estimated "
                       f"work {timed_out[key][0]:.2e} <= {work:.2e} already ran past the cap"}
    else:
        cl = run_capped(_clarabel_job, (Xa, D, Y, alpha, loss, formulation, args.clarabel_threads),
                        cap, args.cap_clock, args.mem_gb)
        if cl["status"] in ("timeout", "out_of_memory", "crashed"):
            if key not in timed_out or work < timed_out[key][0]:
                timed_out[key] = (work, name)
    status = cl["status"]
    rec["clarabel_status"] = status
    for k_src, k_dst in (("seconds", "clarabel_s"), ("cpu_s", "clarabel_cpu_s"),
                         ("cpu_used_s", "clarabel_cpu_used_s"),
                         ("wall_used_s", "clarabel_wall_used_s"), ("limit", "clarabel_limit_hit"),
                         ("solver_s", "clarabel_solver_s"), ("compile_s", "cvxpy_compile_s"),
                         ("n_iter", "clarabel_n_iter"), ("error", "clarabel_error")):
        if cl.get(k_src) is not None:
            rec[k_dst] = cl[k_src]

    rec["obj_agree"] = None
    rec["ratio_cpu"] = rec["ratio_wall"] = None
    rec["ratio_kind"] = "none"
    if status in DONE:
        if formulation == "gated":
            Qr = cl["U"]
            rec["clarabel_violation"] = 0.0
            rec["clarabel_rel_gap"] = float(problem.gap(Qr).relative_gap)
        else:
            Qr = np.stack([cl["V"], cl["W"]], axis=1)
            A = np.maximum(np.stack([cl["A_V"], cl["A_W"]], axis=1), 0.0)
            rec["clarabel_violation"] = float(problem.violation(Qr))
            rec["clarabel_rel_gap"] = float(problem.gap(Qr, A=A, refine_iter=200).relative_gap)
        f_r = float(problem.objective(Qr))
        rec["clarabel_objective"] = f_r
        if cv["status"] == "done":
            rec["obj_rel_diff"] = (rec["cvxnn_objective"] - f_r) / max(abs(f_r), np.finfo(float).tiny)
            rec["obj_agree"] = bool(abs(rec["obj_rel_diff"]) <= OBJ_TOL)
        if t_cpu:
            rec["ratio_cpu"] = cl["cpu_s"] / t_cpu
            rec["ratio_wall"] = cl["seconds"] / t_wall
            rec["ratio_kind"] = "upper" if cv_bound else "exact"
            if rec["obj_agree"] is False:
                # the solver with the larger objective stopped short of the optimum: its time
                # is a lower bound of the time it needs (Clarabel) or cvxnn's is (upper bound)
                rec["ratio_kind"] = "upper" if rec["obj_rel_diff"] > 0 else "lower"
    elif status in NO_RESULT and not cv_bound and t_cpu:
        if status.startswith("skipped"):
            cl_cpu = cl_wall = cap
        else:
            cl_cpu, cl_wall = cl.get("cpu_used_s") or 0.0, cl.get("wall_used_s") or 0.0
        rec["ratio_cpu"] = cl_cpu / t_cpu
        rec["ratio_wall"] = cl_wall / t_wall
        rec["ratio_kind"] = "lower"
    print(f"# {name:24s} {formulation:5s} clarabel {status} cpu {_f(cl.get('cpu_s'), '.2f')}s "
          f"wall {_f(cl.get('seconds'), '.2f')}s", file=sys.stderr, flush=True)
    return rec


def median_with_bounds(vals):
    """Median of ``(value, kind)`` pairs; the mark says whether bounds can move it."""
    if not vals:
        return None, ""
    vals = sorted(vals, key=lambda v: v[0])
    m = len(vals)
    hi = m // 2
    lo = hi if m % 2 else hi - 1
    med = 0.5 * (vals[lo][0] + vals[hi][0])
    lower = any(k == "lower" for _, k in vals[: hi + 1])
    upper = any(k == "upper" for _, k in vals[lo:])
    mark = "~" if (lower and upper) else ">=" if lower else "<=" if upper else ""
    return med, mark


def _f(x, spec, none="-"):
    return none if x is None else format(x, spec)


def _mark(kind):
    return {"lower": ">=", "upper": "<="}.get(kind, "")


def print_table(records, out=sys.stdout):
    hdr = (f"{'data':22s} {'n':>6s} {'d':>4s} {'P':>4s} {'loss':8s} {'alpha':>6s} {'form':5s} | "
           f"{'cvxnn cpu':>9s} {'wall':>7s} {'rel.gap':>8s} {'viol':>8s} | "
           f"{'clar. cpu':>9s} {'wall':>8s} {'status':>18s} | "
           f"{'ratio cpu':>9s} {'wall':>8s} {'obj rel.diff':>12s} {'agree':>5s}")
    print(hdr, file=out)
    print("-" * len(hdr), file=out)
    for r in records:
        st = r.get("clarabel_status", "-")
        if r.get("clarabel_cpu_s") is not None and st in DONE + ("failed",):
            ccpu, cwall = f"{r['clarabel_cpu_s']:9.1f}", f"{r['clarabel_s']:8.1f}"
        elif st in NO_RESULT:
            cap = format(r["clarabel_cap_s"], "g")
            ccpu = f"{'>' + cap:>9s}" if r.get("cap_clock") == "cpu" else f"{'-':>9s}"
            cwall = f"{'>' + cap:>8s}" if r.get("cap_clock") == "wall" else f"{'-':>8s}"
            if st == "timeout" and r.get("clarabel_wall_used_s") and r.get("cap_clock") == "cpu":
                cwall = f"{'>' + format(r['clarabel_wall_used_s'], '.0f'):>8s}"
        else:
            ccpu, cwall = f"{'-':>9s}", f"{'-':>8s}"
        if r.get("cvxnn_status", "done") == "done":
            vcpu, vwall = f"{r['cvxnn_cpu_s']:9.2f}", f"{r['cvxnn_s']:7.1f}"
        else:
            vcpu, vwall = f"{'>' + format(r['cvxnn_cap_s'], 'g'):>9s}", f"{'-':>7s}"
        mk = _mark(r.get("ratio_kind"))
        rcpu = "-" if r.get("ratio_cpu") is None else mk + f"{r['ratio_cpu']:.1f}"
        rwall = "-" if r.get("ratio_wall") is None else mk + f"{r['ratio_wall']:.1f}"
        agree = {True: "yes", False: "NO", None: "-"}[r.get("obj_agree")]
        gap = _f(r.get("cvxnn_rel_gap"), "8.1e")
        if r.get("cvxnn_converged") is False:
            gap = gap.strip() + "!"
        print(f"{r['data'][:22]:22s} {r['n']:6d} {r['d']:4d} {r['P']:4d} {r['loss']:8s} "
              f"{r['alpha']:6.0e} {r['formulation']:5s} | {vcpu} {vwall} "
              f"{gap:>8s} {_f(r.get('cvxnn_violation'), '8.1e'):>8s} | "
              f"{ccpu} {cwall} {st[:18]:>18s} | {rcpu:>9s} {rwall:>8s} "
              f"{_f(r.get('obj_rel_diff'), '12.1e'):>12s} {agree:>5s}", file=out)
    print("(! = cvxnn stopped without reaching tol; >= / <= = lower / upper bound; "
          "times in seconds, ratios clarabel / cvxnn)", file=out)
    print(file=out)
    summary = {}
    for form in FORMULATIONS:
        sel = [r for r in records if r["formulation"] == form and r["n"] >= 500]
        if not sel:
            continue
        vc = [(r["ratio_cpu"], r["ratio_kind"]) for r in sel if r.get("ratio_cpu") is not None]
        vw = [(r["ratio_wall"], r["ratio_kind"]) for r in sel if r.get("ratio_wall") is not None]
        med_c, mark_c = median_with_bounds(vc)
        med_w, mark_w = median_with_bounds(vw)
        no_ratio = [f"{r['data']} ({r.get('clarabel_status')})" for r in sel
                    if r.get("ratio_cpu") is None and r.get("clarabel_status") != "not_run"]
        forms = [r for r in records if r["formulation"] == form]
        n_agree = sum(1 for r in forms if r.get("obj_agree") is True)
        n_cmp = sum(1 for r in forms if r.get("obj_agree") is not None)
        summary[form] = {
            "median_ratio_cpu_n_ge_500": med_c, "median_ratio_cpu_mark": mark_c,
            "median_ratio_wall_n_ge_500": med_w, "median_ratio_wall_mark": mark_w,
            "n_problems_with_ratio": len(vc),
            "n_exact": sum(k == "exact" for _, k in vc),
            "n_lower_bounds": sum(k == "lower" for _, k in vc),
            "n_upper_bounds": sum(k == "upper" for _, k in vc),
            "no_ratio": no_ratio, "objective_agree": f"{n_agree}/{n_cmp}",
        }
        if med_c is None:
            print(f"{form:5s}: no ratios with n >= 500"
                  f"{'; no ratio: ' + ', '.join(no_ratio) if no_ratio else ''}", file=out)
            continue
        s = summary[form]
        print(f"{form:5s}: median ratio clarabel/cvxnn over n >= 500: {mark_c}{med_c:.1f} (CPU), "
              f"{mark_w}{_f(med_w, '.1f')} (wall); {len(vc)} problems: {s['n_exact']} measured, "
              f"{s['n_lower_bounds']} lower bounds, {s['n_upper_bounds']} upper bounds"
              f"{'; no ratio: ' + ', '.join(no_ratio) if no_ratio else ''}; "
              f"objectives within {OBJ_TOL:g}: {n_agree}/{n_cmp} compared", file=out)
    return summary


def _meta(args, argv):
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:  # pragma: no cover
        pass
    import clarabel
    import cvxpy

    return {
        "command": "python benchmarks/bench_clarabel.py " + " ".join(argv),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "tol": TOL, "objective_tol": OBJ_TOL, "cap_clock": args.cap_clock,
        "clarabel_cap_s": args.clarabel_cap, "cvxnn_cap_s": args.cvxnn_cap,
        "mem_gb": args.mem_gb, "clarabel_threads": args.clarabel_threads,
        "max_nnz": args.max_nnz, "extrapolate": not args.no_extrapolate,
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "cpu": cpu, "n_cpu": os.cpu_count(), "loadavg_start": os.getloadavg(),
        "python": platform.python_version(), "numpy": np.__version__,
        "cvxpy": cvxpy.__version__, "clarabel": getattr(clarabel, "__version__", "?"),
        "cvxnn": getattr(cvxnn, "__version__", "?"),
        "ratios": "clarabel / cvxnn in CPU seconds (ratio_cpu, primary) and wall seconds "
                  "(ratio_wall); Clarabel's time includes cvxpy's compilation",
    }


def _order(records):
    pos = {s[0]: i for i, s in enumerate(PROBLEMS)}
    return sorted(records, key=lambda r: (pos.get(r["data"], 99), FORMULATIONS.index(r["formulation"])))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__)
    ap.add_argument("--quick", action="store_true", help="only the three smallest problems")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="table name to run (repeatable)")
    ap.add_argument("--formulation", choices=FORMULATIONS, action="append",
                    help="formulation(s) to run (default: both)")
    ap.add_argument("--clarabel-cap", type=float, default=600.0,
                    help="cap of one Clarabel run in seconds (default 600)")
    ap.add_argument("--cvxnn-cap", type=float, default=1200.0,
                    help="cap of one cvxnn run in seconds (default 1200)")
    ap.add_argument("--cap-clock", choices=("cpu", "wall"), default="cpu",
                    help="measure the caps in CPU seconds of the subprocess (default) or wall "
                         "seconds; with 'cpu' a hard wall limit of 8 x cap applies")
    ap.add_argument("--mem-gb", type=float, default=12.0,
                    help="address-space limit of each solver subprocess (GiB, 0 = none)")
    ap.add_argument("--clarabel-threads", type=int, default=1,
                    help="Clarabel's max_threads (default 1; 0 = Clarabel's automatic choice)")
    ap.add_argument("--max-nnz", type=float, default=2e8,
                    help="skip Clarabel when the estimated problem nonzeros exceed this")
    ap.add_argument("--no-extrapolate", action="store_true",
                    help="run Clarabel even where a smaller problem already ran past the cap")
    ap.add_argument("--no-clarabel", action="store_true", help="time cvxnn only")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="JSON output file")
    ap.add_argument("--table-only", action="store_true", help="reprint the table of --out")
    ap.add_argument("--merge", nargs="+", metavar="JSON",
                    help="merge the records of these output files into --out and print the table")
    args = ap.parse_args(argv)

    if args.table_only:
        print_table(json.loads(Path(args.out).read_text())["records"])
        return
    if args.merge:
        parts = [json.loads(Path(f).read_text()) for f in args.merge]
        records = _order([r for p in parts for r in p["records"]])
        summary = print_table(records)
        meta = {"merged_from": [{"file": f, **p["meta"]} for f, p in zip(args.merge, parts)],
                "summary": summary}
        Path(args.out).write_text(json.dumps({"meta": meta, "records": records}, indent=1))
        print(f"\nmerged {len(records)} records into {args.out}")
        return

    specs = QUICK if args.quick else PROBLEMS
    if args.only:
        unknown = set(args.only) - {s[0] for s in PROBLEMS}
        if unknown:
            ap.error(f"unknown table(s) {sorted(unknown)}; choose from {[s[0] for s in PROBLEMS]}")
        specs = [s for s in PROBLEMS if s[0] in args.only]
    forms = args.formulation or list(FORMULATIONS)

    # warm-up in the parent (imports, first-call overheads; the solver children are forked)
    Xw = np.random.default_rng(0).standard_normal((50, 3))
    for form in forms:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            solve(Xw, Xw[:, 0], 1e-2, formulation=form, n_gates=5, random_state=0)

    meta = _meta(args, argv)
    records = []
    timed_out = {}
    t_start = time.perf_counter()
    for spec in specs:
        for form in forms:
            rec = bench_one(spec, form, args, timed_out)
            records.append(rec)
            print(json.dumps(rec), flush=True)
            meta["total_wall_s"] = time.perf_counter() - t_start
            Path(args.out).write_text(json.dumps({"meta": meta, "records": records}, indent=1))
    print()
    meta["summary"] = print_table(records)
    meta["total_wall_s"] = time.perf_counter() - t_start
    meta["loadavg_end"] = os.getloadavg()
    Path(args.out).write_text(json.dumps({"meta": meta, "records": records}, indent=1))
    print(f"\ntotal wall time {meta['total_wall_s']:.0f} s; results in {args.out}")


if __name__ == "__main__":
    main()
