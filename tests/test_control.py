"""Progress callback, stop requests and Ctrl-C handling of :func:`cvxnn.solve`.

The certificates of stopped/interrupted solves are checked against an independent
oracle: the optimum of the same convex program (same gates) computed by cvxpy with
Clarabel.  A valid certificate has ``dual_bound <= p* <= objective``.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import cvxnn
from cvxnn import ConvexReLURegressor, _control, solve
from cvxnn._control import ProgressInfo, SolveInterruptedWarning, SolveMonitor
from cvxnn.losses import get_loss
from cvxnn.problems import GatedReLUProblem

pytest.importorskip("cvxpy")

ALPHA = 1e-2
CASES = [("gated", "auto", "squared"), ("gated", "auto", "logistic"),
         ("gated", "fista", "squared"), ("gated", "fista", "logistic"),
         ("relu", "auto", "squared"), ("relu", "auto", "logistic")]


@pytest.fixture(autouse=True)
def _forget_absorbed_interrupts():
    _control._last_absorbed["time"] = None
    yield
    _control._last_absorbed["time"] = None


@pytest.fixture
def python_sigint():
    """Python's default SIGINT handler for the test, whatever the process started with: a
    test run launched in the background by a non-interactive shell inherits SIGINT as
    ignored (``SIG_IGN``), and the guard rightly leaves an ignored SIGINT alone."""
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _data(n=60, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = np.sin(2 * X @ rng.standard_normal(d)) + 0.1 * rng.standard_normal(n)
    return X, y, np.where(y > 0, "b", "a")


def _targets(loss):
    X, y, labels = _data()
    return X, (y if loss == "squared" else labels)


def _zero_objective(y, loss):
    """Objective of the all-zero network (the solvers' starting point): L(0, Y)."""
    if loss == "squared":
        Y = np.asarray(y, dtype=float)[:, None]
    else:
        Y = np.where(np.asarray(y) == np.unique(y)[1], 1.0, -1.0)[:, None]
    return get_loss(loss).value(np.zeros_like(Y), Y)


def _reference_optimum(X, y, r):
    """Optimum over the same gates by the cvxpy/Clarabel reference."""
    ref = solve(X, y, r.alpha, formulation=r.formulation, loss=r.loss, gates=r.gates,
                solver="clarabel", patterns="sampled")
    return ref.objective


def _interrupt_after(k, calls):
    def cb(info):
        calls.append(info)
        if len(calls) >= k:
            raise KeyboardInterrupt
    return cb


def _check_valid(X, y, r):
    """The result's certificate is finite and brackets the reference optimum."""
    assert np.isfinite(r.gap) and np.isfinite(r.relative_gap) and r.gap >= 0
    # the objective is that of the returned network (recomputed independently)
    assert r.network.objective(X, y, r.alpha) == pytest.approx(r.objective, rel=1e-9)
    p_star = _reference_optimum(X, y, r)
    slack = 1e-6 * abs(p_star)
    assert r.objective >= p_star - slack
    assert r.dual_bound <= p_star + slack
    assert r.objective - r.gap == pytest.approx(r.dual_bound, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("formulation,solver,loss", CASES)
def test_interrupt_returns_best_certified_iterate(formulation, solver, loss):
    X, y = _targets(loss)
    k = 5 if solver == "fista" else 2
    calls = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = solve(X, y, ALPHA, formulation=formulation, solver=solver, loss=loss, n_gates=15,
                  random_state=0, patterns="sampled", tol=1e-8,
                  callback=_interrupt_after(k, calls))
    assert len(calls) == k
    assert r.interrupted and r.stopped == "keyboard_interrupt" and not r.converged
    kinds = [w.category for w in caught]
    assert kinds.count(SolveInterruptedWarning) == 1
    assert ConvergenceWarning not in kinds
    assert r.objective <= _zero_objective(y, loss) + 1e-12
    # the best iterate seen by the callback is at least as good as the one returned
    assert r.objective <= min(c.objective for c in calls) * (1 + 1e-9) + 1e-12
    if formulation == "relu":
        assert r.constraint_violation <= 1e-8
    _check_valid(X, y, r)


@pytest.mark.parametrize("formulation,solver,loss", CASES[::2] + [CASES[5]])
def test_callback_true_stops_cleanly(formulation, solver, loss):
    X, y = _targets(loss)
    calls = []

    def cb(info):
        calls.append(info)
        return len(calls) >= 1      # stop at the first evaluation (the starting point)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning at all for a requested stop
        r = solve(X, y, ALPHA, formulation=formulation, solver=solver, loss=loss, n_gates=15,
                  random_state=0, patterns="sampled", tol=1e-8, callback=cb)
    assert len(calls) == 1
    assert r.stopped == "callback" and not r.interrupted and not r.converged
    info = calls[0]
    assert isinstance(info, ProgressInfo)
    assert set(dict(zip(info.keys(), (info[k] for k in info.keys())))) == {
        "iteration", "time", "objective", "relative_gap", "constraint_violation", "solver"}
    assert info["objective"] == info.objective and info.time >= 0
    assert info.solver == r.solver
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.objective = 0.0
    assert r.objective <= _zero_objective(y, loss) + 1e-12
    _check_valid(X, y, r)


def test_stopiteration_stops_and_progress_is_reported_in_order():
    X, y = _targets("squared")
    calls = []

    def cb(info):
        calls.append(info)
        if info.iteration >= 50:
            raise StopIteration

    r = solve(X, y, ALPHA, formulation="gated", solver="fista", n_gates=15, random_state=0,
              tol=1e-12, callback=cb)
    assert r.stopped == "callback" and calls[-1].iteration >= 50
    its = [c.iteration for c in calls]
    times = [c.time for c in calls]
    assert its == sorted(its) and times == sorted(times)
    # the reported objective is the convex objective of the iterate: never above the start
    assert all(c.objective <= _zero_objective(y, "squared") + 1e-12 for c in calls)
    # history of the stopped result is the trace of the evaluations
    assert [h[0] for h in r.history] == its


def test_callback_that_never_stops_changes_nothing():
    X, y = _targets("squared")
    calls = []
    a = solve(X, y, ALPHA, formulation="gated", solver="fista", n_gates=15, random_state=0)
    b = solve(X, y, ALPHA, formulation="gated", solver="fista", n_gates=15, random_state=0,
              callback=calls.append)
    assert a.objective == b.objective and np.array_equal(a.weights["U"], b.weights["U"])
    assert len(calls) == len(b.history) and b.stopped is None and not b.interrupted


def test_interrupt_with_warm_start_never_worse_than_the_warm_start():
    X, y = _targets("squared")
    first = solve(X, y, ALPHA, n_gates=15, random_state=0, patterns="sampled", tol=1e-3)
    with pytest.warns(SolveInterruptedWarning):
        r = solve(X, y, ALPHA, gates=first.gates, patterns="sampled", warm_start=first.weights,
                  tol=1e-12, callback=_interrupt_after(1, []))
    assert r.interrupted
    assert r.objective <= first.objective * (1 + 1e-12)
    _check_valid(X, y, r)


def test_interrupt_relu_augmented_lagrangian_projects_to_feasibility():
    X, y = _targets("squared")
    with pytest.warns(SolveInterruptedWarning):
        r = solve(X, y, ALPHA, solver="al", n_gates=15, random_state=0, patterns="sampled",
                  callback=_interrupt_after(2, []))
    assert r.interrupted and r.constraint_violation <= 1e-8
    _check_valid(X, y, r)


def test_interrupt_float32_first_order_is_certified_in_float64():
    X, y = _targets("squared")
    with pytest.warns(SolveInterruptedWarning):
        r = solve(X, y, ALPHA, formulation="gated", dtype="float32", n_gates=15, random_state=0,
                  callback=_interrupt_after(4, []))
    assert r.interrupted and r.weights["U"].dtype == np.float64
    _check_valid(X, y, r)


def test_second_interrupt_during_recertification_propagates(monkeypatch):
    X, y = _targets("squared")
    state = {"armed": False}
    original = GatedReLUProblem.gap

    def gap(self, *args, **kwargs):
        if state["armed"]:
            raise KeyboardInterrupt   # the second Ctrl-C, while the certificate is recomputed
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GatedReLUProblem, "gap", gap)

    def cb(info):
        state["armed"] = True
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        solve(X, y, ALPHA, formulation="gated", solver="fista", n_gates=15, random_state=0,
              callback=cb)


@pytest.mark.skipif(os.name != "posix", reason="SIGINT delivery to the own process")
def test_real_sigint_during_a_long_solve(python_sigint):
    # a real Ctrl-C (SIGINT from another thread) at an arbitrary point of the iterations;
    # tol=1e-300 is never reached, so only the interrupt (or the time limit) ends the solve
    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 5))
    y = np.sin(X @ rng.standard_normal(5)) + 0.1 * rng.standard_normal(200)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.warns(SolveInterruptedWarning):
            r = solve(X, y, 1e-4, formulation="gated", solver="fista", n_gates=50,
                      random_state=0, tol=1e-300, max_iter=10**7, time_limit=30)
    finally:
        timer.cancel()
    assert r.interrupted and not r.converged and r.time < 25 and r.n_iter > 0
    assert r.objective <= _zero_objective(y, "squared")
    _check_valid(X, y, r)


def test_interrupt_inside_the_pattern_search_returns_best_restricted_solution():
    X, y = _targets("squared")
    calls = []
    with pytest.warns(SolveInterruptedWarning):
        r = solve(X, y, ALPHA, n_gates=15, random_state=0, callback=_interrupt_after(2, calls))
    assert len(calls) == 2
    assert r.interrupted and not r.converged and r.search["stopped"] == "keyboard_interrupt"
    assert "not a certificate over all patterns" in r.certified_over
    _check_valid(X, y, r)


def test_estimator_callback_stops_fit():
    X, y = _targets("squared")
    calls = []

    def cb(info):
        calls.append(info)
        return info.iteration >= 20

    est = ConvexReLURegressor(alpha=ALPHA, formulation="gated", solver="fista", n_gates=15,
                              random_state=0, callback=cb).fit(X, y)
    assert est.stopped_ == "callback" and not est.converged_
    assert np.isfinite(est.relative_gap_) and est.predict(X).shape == (X.shape[0],)
    assert calls[-1].iteration >= 20
    with pytest.raises(TypeError, match="callback"):
        ConvexReLURegressor(callback=3).fit(X, y)


def test_bad_callback_is_rejected():
    X, y = _targets("squared")
    with pytest.raises(TypeError, match="callback"):
        solve(X, y, ALPHA, formulation="gated", callback="print")


def test_a_second_ctrl_c_soon_after_an_absorbed_one_propagates():
    first = SolveMonitor()
    with first.guard():
        raise KeyboardInterrupt          # a real Ctrl-C: absorbed
    assert first.stopped == "keyboard_interrupt"
    with pytest.raises(KeyboardInterrupt):
        with SolveMonitor().guard():     # the next one, at once: propagates (stops loops)
            raise KeyboardInterrupt
    # ... and after the window, a new Ctrl-C is absorbed again
    _control._last_absorbed["time"] = (
        __import__("time").monotonic() - 2 * _control.DOUBLE_INTERRUPT_SECONDS)
    third = SolveMonitor()
    with third.guard():
        raise KeyboardInterrupt
    assert third.stopped == "keyboard_interrupt"


@pytest.mark.skipif(os.name != "posix", reason="SIGINT delivery to the own process")
def test_a_swallowed_ctrl_c_is_acted_on_at_the_next_evaluation(python_sigint):
    # C code that runs a Python callback may swallow the KeyboardInterrupt of a Ctrl-C;
    # the guard's handler records the press, and the next certificate evaluation raises
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    monitor = SolveMonitor()
    reached = []
    with monitor.guard():
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        try:
            os.kill(os.getpid(), signal.SIGINT)
            __import__("time").sleep(5)
        except KeyboardInterrupt:
            pass                                  # swallowed on its way up
        monitor(3, np.zeros(2), 1.0, 0.5)          # the solver's next evaluation
        reached.append(True)
    assert monitor.stopped == "keyboard_interrupt" and not reached
    assert monitor.n_evaluations == 0
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert _control._pending_interrupt["time"] is None


def test_guard_leaves_a_users_sigint_handler_and_other_threads_alone(python_sigint):
    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGINT, mine)
    try:
        with SolveMonitor().guard():
            assert signal.getsignal(signal.SIGINT) is mine
    finally:
        signal.signal(signal.SIGINT, previous)
    seen = []

    def worker():
        m = SolveMonitor()
        with m.guard():                    # signal.signal would raise in a thread
            seen.append(signal.getsignal(signal.SIGINT))
            raise KeyboardInterrupt
        seen.append(m.stopped)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [signal.default_int_handler, "keyboard_interrupt"]


def test_callback_interrupts_do_not_count_as_double_ctrl_c():
    X, y = _targets("squared")
    for _ in range(3):
        with pytest.warns(SolveInterruptedWarning):
            r = solve(X, y, ALPHA, formulation="gated", n_gates=15, random_state=0,
                      callback=_interrupt_after(1, []))
        assert r.interrupted
    assert _control._last_absorbed["time"] is None


def test_progress_objectives_are_those_of_the_original_problem_with_duplicate_rows():
    # duplicate samples with different targets: the relu solver merges them, and its
    # internal objective differs from the true one by the within-group variance
    rng = np.random.default_rng(7)
    X0 = rng.standard_normal((20, 2))
    X = np.repeat(X0, 3, axis=0)
    y = np.sin(2 * X[:, 0]) + 0.5 * rng.standard_normal(X.shape[0])
    calls = []
    r = solve(X, y, ALPHA, n_gates=10, random_state=0, patterns="sampled", callback=calls.append)
    assert r.converged and calls
    p_star = _reference_optimum(X, y, r)
    for info in calls:                       # every reported point is feasible: >= optimum
        assert info.objective >= p_star * (1 - 1e-6)
    best = min(c.objective for c in calls)
    assert best == pytest.approx(r.objective, rel=1e-7)


def test_progress_bar_shows_the_gap_and_keeps_the_result(capsys):
    """progress=True draws a tqdm bar on stderr and changes nothing in the result."""
    pytest.importorskip("tqdm")
    rng = np.random.default_rng(3)
    X = rng.standard_normal((80, 4))
    y = X[:, 0] - np.abs(X[:, 1])
    seen = []
    plain = cvxnn.solve(X, y, 1e-3, formulation="gated", solver="fista", n_gates=10,
                        random_state=0)
    shown = cvxnn.solve(X, y, 1e-3, formulation="gated", solver="fista", n_gates=10,
                        random_state=0, progress=True, callback=seen.append)
    err = capsys.readouterr().err
    assert "cvxnn.solve" in err and "100%" in err and "gap" in err
    assert seen, "the user's callback still runs under the bar"
    assert shown.objective == plain.objective and shown.relative_gap == plain.relative_gap
    with pytest.raises(ValueError, match="tol"):
        cvxnn.solve(X, y, 1e-3, progress=True, tol=-1)
