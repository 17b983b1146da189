"""Row-sharded gated solver (cvxnn.distributed) against single-process solves.

Two local processes (gloo backend, ``file://`` rendezvous) each hold a block of
the rows of real tables; the sharded objective must equal the single-process
FISTA and working-set optima, be certified on the full data by the serial
certificate, and the weights must be identical on both ranks.  One spawn runs
every two-rank scenario (module fixture); the children are joined with a
timeout and terminated if they hang.
"""

import inspect
import multiprocessing as mp
import os
import pickle
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import pytest

import cvxnn
from cvxnn._data import augment, encode_targets
from cvxnn.patterns import compute_masks
from cvxnn.problems import GatedReLUProblem
from tests.conftest import load_table, standardize

pytest.importorskip("torch")

TOL = 1e-7
JOIN_TIMEOUT = 240  # seconds for the whole two-rank job

# name -> (table, loss, alpha, extra solve kwargs, sort rows by label, rows of rank 0)
SCENARIOS = {
    # gates=None: rank 0 draws with random_state=0, the global patterns are deduplicated
    "squared_sampled_gates": ("522_pm10", "squared", 3e-2, {}, False, 230),
    "squared_pm1": ("breast_w", "squared", 3e-2, {"classification": True}, True, 350),
    "logistic_one_class_per_rank": ("haberman", "logistic", 1e-2, {}, True, 225),
    "cross_entropy": ("iris", "cross_entropy", 3e-2, {}, True, 75),
    "empty_rank": ("230_machine_cpu", "squared", 1e-1, {}, False, 0),
}


def _data(name):
    """``(X, y, loss, alpha, kwargs, rows of rank 0, gates)`` of a scenario."""
    table, loss, alpha, kw, sort, split = SCENARIOS[name]
    X, y = load_table(table)
    X = standardize(X)
    y = np.asarray(y)
    if loss == "squared" and not kw.get("classification"):
        y = (y - y.mean()) / y.std()
    if sort:  # ranks see different class sets
        order = np.argsort(y, kind="stable")
        X, y = X[order], y[order]
    G = cvxnn.sample_gates(X, 30, random_state=0)
    return X, y, loss, alpha, kw, split, G


# ----------------------------------------------------------------------------
# the child processes


def _worker(rank, world, init_file, outdir):
    """One rank: run every scenario on its rows, pickle the results (or the traceback)."""
    import torch.distributed as dist

    from cvxnn.distributed import solve_sharded

    out = {}
    try:
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                                world_size=world, timeout=__import__("datetime").timedelta(seconds=60))
        for name in SCENARIOS:
            X, y, loss, alpha, kw, split, G = _data(name)
            rows = slice(0, split) if rank == 0 else slice(split, None)
            opts = (dict(n_gates=30, random_state=0) if name == "squared_sampled_gates"
                    else dict(gates=G))
            if name == "empty_rank":  # an explicit process group
                opts["group"] = dist.new_group([0, 1])
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a ConvergenceWarning fails the scenario
                r = solve_sharded(X[rows], y[rows], alpha, loss=loss, tol=TOL, **opts, **kw)
            out[name] = {"objective": r.objective, "relative_gap": r.relative_gap,
                         "U": r.weights["U"], "gates": r.gates, "n_iter": r.n_iter,
                         "classes": r.classes, "converged": r.converged,
                         "n_samples": r.n_samples, "world_size": r.world_size,
                         "predict": r.network.predict(X), "communication": r.communication,
                         "seconds": time.perf_counter() - t0}
        # a bad block on one rank must raise on every rank (not hang the others)
        X, y, *_ = _data("squared_sampled_gates")
        Xbad = X[:10] if rank == 0 else X[:10, :-1]
        try:
            solve_sharded(Xbad, y[:10], 1e-2, gates=np.ones((X.shape[1] + 1, 2)))
            out["error"] = None
        except ValueError as exc:
            out["error"] = str(exc)
        dist.destroy_process_group()
    except BaseException:
        out["traceback"] = traceback.format_exc()
    with open(os.path.join(outdir, f"rank{rank}.pkl"), "wb") as fh:
        pickle.dump(out, fh)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Results of every scenario on both ranks: ``[rank0 dict, rank1 dict]``."""
    load_table("iris")  # skip early when the data are absent
    tmp = tmp_path_factory.mktemp("dist")
    # fork reuses the parent's imports (torch + cvxnn take ~10 s to import on a busy
    # 2-core machine); spawn where fork does not exist
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    procs = [ctx.Process(target=_worker, args=(r, 2, str(tmp / "rendezvous"), str(tmp)))
             for r in range(2)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + JOIN_TIMEOUT
    try:
        for p in procs:
            p.join(max(1.0, deadline - time.monotonic()))
        hung = [p for p in procs if p.is_alive()]
    finally:
        for p in procs:  # never leave a child behind, whatever happened
            if p.is_alive():
                p.terminate()
                p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)
    if hung:
        pytest.fail(f"two-rank job did not finish within {JOIN_TIMEOUT} s")
    results = []
    for r in range(2):
        path = tmp / f"rank{r}.pkl"
        assert path.exists(), f"rank {r} wrote no result (exit code {procs[r].exitcode})"
        res = pickle.loads(path.read_bytes())
        assert "traceback" not in res, f"rank {r} failed:\n{res['traceback']}"
        results.append(res)
    return results


@pytest.fixture(scope="module")
def serial():
    """Single-process references per scenario: FISTA and the working-set default."""
    refs = {}
    for name in SCENARIOS:
        X, y, loss, alpha, kw, _, G = _data(name)
        common = dict(formulation="gated", gates=G, loss=loss, tol=TOL, **kw)
        refs[name] = {"fista": cvxnn.solve(X, y, alpha, solver="fista", **common),
                      "auto": cvxnn.solve(X, y, alpha, **common), "G": G}
    return refs


# ----------------------------------------------------------------------------
# two ranks


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_two_ranks_match_single_process(two_ranks, serial, name):
    r0, r1 = two_ranks[0][name], two_ranks[1][name]
    ref = serial[name]
    X, y, loss, alpha, kw, _, _ = _data(name)
    # same global problem, same optimum (both solvers certified to TOL)
    for r in (r0, r1):
        assert r["world_size"] == 2 and r["n_samples"] == X.shape[0]
        assert r["converged"] and r["relative_gap"] <= TOL
        np.testing.assert_allclose(r["objective"], ref["fista"].objective, rtol=1e-6)
        np.testing.assert_allclose(r["objective"], ref["auto"].objective, rtol=1e-6)
    np.testing.assert_array_equal(r0["gates"], ref["G"])
    # identical results on both ranks
    assert r0["objective"] == r1["objective"] and r0["n_iter"] == r1["n_iter"]
    np.testing.assert_array_equal(r0["U"], r1["U"])
    np.testing.assert_array_equal(r0["predict"], r1["predict"])
    # independent check of the distributed certificate: the serial gap on all rows
    Y, _ = encode_targets(y, loss, kw.get("classification"))
    problem = GatedReLUProblem(augment(X, True), compute_masks(X, ref["G"]), Y, loss, alpha)
    gap = problem.gap(r0["U"])
    np.testing.assert_allclose(gap.primal, r0["objective"], rtol=1e-10)
    # (its own dual point only: the sharded bound may come from an extrapolated point)
    assert gap.relative_gap <= 100 * TOL
    # certified against the working-set solver's dual bound (each within TOL of the optimum)
    assert (r0["objective"] - ref["auto"].dual_bound) / r0["objective"] <= 2.5 * TOL
    # (iteration counts are not compared: reordering the rows' sums alone moves the
    # serial FISTA's count by tens of percent on these problems)


def test_two_ranks_agree_on_classes(two_ranks, serial):
    # haberman sorted by label: rank 0 sees only class 1, rank 1 only class 2
    r = two_ranks[0]["logistic_one_class_per_rank"]
    np.testing.assert_array_equal(r["classes"], [1, 2])
    X = _data("logistic_one_class_per_rank")[0]
    ref = serial["logistic_one_class_per_rank"]["fista"].network.predict(X)
    # same label mapping (a flipped -1/+1 encoding would disagree almost everywhere)
    assert np.mean(r["predict"] == ref) >= 0.98
    ce = two_ranks[1]["cross_entropy"]
    np.testing.assert_array_equal(ce["classes"], [0, 1, 2])
    assert ce["U"].shape[2] == 3


def test_two_ranks_clarabel_oracle(two_ranks):
    pytest.importorskip("cvxpy")
    X, y, loss, alpha, kw, _, G = _data("squared_sampled_gates")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = cvxnn.solve(X, y, alpha, formulation="gated", gates=G, loss=loss, solver="clarabel")
    np.testing.assert_allclose(two_ranks[0]["squared_sampled_gates"]["objective"], ref.objective, rtol=1e-6)


def test_error_on_one_rank_raises_on_all(two_ranks):
    e0, e1 = two_ranks[0]["error"], two_ranks[1]["error"]
    assert e0 is not None and e1 is not None
    assert "number of features" in e0 and "number of features" in e1


# ----------------------------------------------------------------------------
# one process


def _small(name="squared_sampled_gates"):
    X, y, loss, alpha, kw, _, G = _data(name)
    return X, y, loss, alpha, kw, G


@pytest.mark.parametrize("name", ["squared_sampled_gates", "logistic_one_class_per_rank"])
def test_world_size_one_equals_serial(name, tmp_path, monkeypatch):
    import torch.distributed as dist

    from cvxnn.distributed import solve_sharded
    from cvxnn.solvers.gated import solve_gated_fista as serial

    # the sharded solver mirrors serial FISTA on all blocks (no block working set) with
    # dual bounds from its gap checks only (no per-iteration dual probe)
    monkeypatch.setitem(serial.__kwdefaults__, "working_set", False)
    monkeypatch.setitem(serial.__kwdefaults__, "dual_probe", False)
    X, y, loss, alpha, kw, G = _small(name)
    ref = cvxnn.solve(X, y, alpha, formulation="gated", gates=G, loss=loss, solver="fista",
                      tol=TOL, **kw)
    # mirror the serial solver's dual extrapolation (when it has one)
    from cvxnn.solvers.gated import solve_gated_fista

    param = inspect.signature(solve_gated_fista).parameters.get("extrapolate")
    kw = dict(kw, extrapolate=0 if param is None else param.default)
    # without a process group, and with a gloo group of one rank
    plain = solve_sharded(X, y, alpha, gates=G, loss=loss, tol=TOL, **kw)
    assert not dist.is_initialized()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rdv'}", rank=0,
                            world_size=1)
    try:
        one = solve_sharded(X, y, alpha, gates=G, loss=loss, tol=TOL, **kw)
    finally:
        dist.destroy_process_group()
    for r in (plain, one):
        assert r.world_size == 1 and r.converged
        assert r.n_iter == ref.n_iter
        np.testing.assert_allclose(r.objective, ref.objective, rtol=1e-12)
        # the serial kernels sum in another order (d < P: mask times U first), and FISTA
        # amplifies rounding differences in the flat directions of the optimum
        scale = np.abs(ref.weights["U"]).max()
        np.testing.assert_allclose(r.weights["U"], ref.weights["U"], rtol=0, atol=1e-5 * scale)
        np.testing.assert_allclose(r.network.objective(X, y, alpha), r.objective, rtol=1e-10)
    assert one.communication["n_allreduce"] > 0


def test_sampled_gates_match_sample_gates():
    from cvxnn.distributed import solve_sharded

    X, y, loss, alpha, kw, _ = _small()
    r = solve_sharded(X, y, alpha, n_gates=30, random_state=3, loss=loss, tol=1e-4, extrapolate=0)
    assert r.converged
    np.testing.assert_array_equal(r.gates, cvxnn.sample_gates(X, 30, random_state=3))


def test_bad_input_raises_clear_errors():
    from cvxnn.distributed import solve_sharded

    X, y, loss, alpha, kw, G = _small()
    with pytest.raises(ValueError, match="loss must be one of"):
        solve_sharded(X, y, alpha, gates=G, loss="hinge")
    with pytest.raises(ValueError, match="gates"):
        solve_sharded(X, y, alpha, gates=G[:3])
    with pytest.raises(ValueError, match="y_local"):
        solve_sharded(X, y[:-1], alpha, gates=G)
    with pytest.raises(ValueError, match="binary"):
        Xi, yi, *_ = _small("cross_entropy")
        solve_sharded(Xi, yi, 1e-2, loss="logistic", n_gates=5, random_state=0)
    with pytest.raises(ValueError, match="not in classes"):
        solve_sharded(X[:20], np.arange(20) % 3, alpha, loss="cross_entropy", classes=[0, 1],
                      n_gates=5)
    with pytest.raises(ValueError, match="warm_start"):
        solve_sharded(X, y, alpha, gates=G, warm_start={"U": np.zeros((2, 2, 1))})


# ----------------------------------------------------------------------------
# the example script under torchrun


@pytest.mark.slow
def test_example_under_torchrun(tmp_path):
    load_table("iris")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(root / "examples" / "distributed_gated.py"), "--table", "522_pm10",
           "--alpha", "1e-2", "--n-gates", "30", "--check-serial"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "matches the single-process solve" in proc.stdout
