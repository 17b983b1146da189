"""Separation oracle, certificates, pattern search and polishing (issue 4).

Oracles used: brute-force evaluation of the dual constraint on a dense grid of
unit vectors (2-D data plus bias lives on the 2-sphere), exact enumeration of
all activation patterns with the ReLU program solved on all of them, and
cvxpy/Clarabel for the feature lasso.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import cvxnn
from cvxnn._data import augment
from cvxnn.losses import get_loss
from cvxnn.oracle import separation_oracle
from cvxnn.patterns import compute_masks, enumerate_patterns
from cvxnn.search import cutting_plane, polish


def _data(n=30, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2))
    y = np.sin(2 * X[:, 0]) + 0.3 * X[:, 1] ** 2
    return X, y


def _sphere(m, seed=0):
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((3, m))
    return U / np.linalg.norm(U, axis=0)


def _brute(X, theta, m=300_000):
    U = _sphere(m)
    v = theta @ np.maximum(augment(X, True) @ U, 0.0)
    return max(v.max(), (-v).max())


@pytest.fixture(scope="module")
def enumerated():
    X, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = cvxnn.solve(X, y, 1e-2, gates="enumerate", formulation="relu")
    return X, y, res


def test_exact_oracle_matches_brute_force_and_is_attained():
    X, _ = _data(40, seed=3)
    theta = np.random.default_rng(0).standard_normal(40) / 40
    orc = separation_oracle(X, theta, method="enumerate", threshold=0.0, max_neurons=5)
    brute = _brute(X, theta)
    assert orc.exact and orc.method == "enumerate"
    # exact maximum: at least every sampled value, and only slightly above the dense grid
    assert orc.value >= brute - 1e-12
    assert orc.value <= brute * (1 + 2e-3)
    # the returned unit attains the value, and the gate reproduces a cell next to it
    u = orc.directions[:, 0]
    s = orc.signs[0]
    Xa = augment(X, True)
    assert abs(s * theta @ np.maximum(Xa @ u, 0) - orc.value) <= 1e-10 * orc.value
    assert np.all(np.diff(orc.values) <= 1e-15)
    assert orc.upper_bound == orc.value


def test_search_oracle_finds_exact_maximum_on_small_data():
    X, _ = _data(40, seed=4)
    theta = np.random.default_rng(1).standard_normal(40) / 40
    ex = separation_oracle(X, theta, method="enumerate")
    se = separation_oracle(X, theta, method="search", random_state=0)
    assert not se.exact and np.isnan(se.upper_bound)
    assert se.value <= ex.value * (1 + 1e-10)
    assert se.value >= ex.value * (1 - 1e-6)


def test_gated_oracle_is_the_largest_block_norm():
    X, _ = _data(25, seed=5)
    theta = np.random.default_rng(2).standard_normal(25) / 25
    orc = separation_oracle(X, theta, method="enumerate", cone=False)
    G = enumerate_patterns(X)
    D = compute_masks(X, G)
    Xa = augment(X, True)
    norms = np.linalg.norm(Xa.T @ (D * theta[:, None]), axis=0)
    assert orc.value == pytest.approx(norms.max(), rel=1e-12)
    # the gated constraint is never below the cone-constrained one
    assert orc.value >= separation_oracle(X, theta, method="enumerate").value - 1e-12


def test_oracle_rejects_bad_input():
    X, _ = _data(10)
    with pytest.raises(ValueError, match="Theta"):
        separation_oracle(X, np.ones(9))
    with pytest.raises(ValueError, match="method"):
        separation_oracle(X, np.ones(10), method="magic")
    with pytest.raises(ValueError, match="candidates"):
        separation_oracle(X, np.ones(10), candidates=np.ones((2, 3)))


def test_certify_optimal_network_from_enumeration(enumerated):
    X, y, res = enumerated
    cert = cvxnn.certify(res.network, X, y, 1e-2)
    assert cert.exact and cert.is_optimal
    assert cert.relative_gap <= 1e-6
    assert cert.violating_neuron is None or cert.violating_neuron["value"] <= 1e-2 * (1 + 1e-6)
    assert cert.lower_bound <= res.objective + 1e-12
    assert "certified" in cert.statement


def test_certify_gradient_descent_network_is_suboptimal_and_improvable(enumerated):
    X, y, res = enumerated
    p_star = res.objective
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(),
                                torch.nn.Linear(8, 1, bias=False)).double()
    Xt = torch.tensor(X)
    yt = torch.tensor(y)[:, None]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        pen = sum((p ** 2).sum() for p in model.parameters())
        obj = ((model(Xt) - yt) ** 2).sum() / (2 * len(y)) + 1e-2 / 2 * pen
        obj.backward()
        opt.step()
    cert = cvxnn.certify(model, X, y, 1e-2)
    true_subopt = cert.objective - p_star
    assert cert.exact
    assert true_subopt > 0
    assert cert.gap >= true_subopt - 1e-12          # the gap bounds the true suboptimality
    assert not cert.is_optimal
    assert cert.violating_neuron is not None
    better = cert.improve()
    assert better.objective(X, y, 1e-2) < cert.balanced_objective
    assert better.n_neurons == 9


def test_certify_accepts_tuples_and_checks_them(enumerated):
    X, y, res = enumerated
    net = res.network
    W1b = np.hstack([net.W1, net.b1[:, None]])
    c1 = cvxnn.certify((W1b, net.W2), X, y, 1e-2)
    c2 = cvxnn.certify((net.W1, net.b1, net.W2), X, y, 1e-2)
    assert c1.objective == pytest.approx(res.objective, rel=1e-10)
    assert c2.gap == pytest.approx(c1.gap, rel=1e-8, abs=1e-14)
    with pytest.raises(ValueError, match="W1"):
        cvxnn.certify((np.ones((3, 5)), np.ones(3)), X, y, 1e-2)
    with pytest.raises(ValueError, match="alpha"):
        cvxnn.certify(net, X, y, 0.0)
    with pytest.raises(TypeError, match="network"):
        cvxnn.certify("net", X, y, 1e-2)


def test_certify_refuses_output_bias():
    torch = pytest.importorskip("torch")
    X, y = _data(10)
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    with torch.no_grad():
        model[2].bias.fill_(0.5)
    with pytest.raises(ValueError, match="output Linear layer has a non-zero bias"):
        cvxnn.certify(model, X, y, 1e-2)


def test_heuristic_certificate_is_labelled(enumerated):
    X, y, res = enumerated
    cert = cvxnn.certify(res.network, X, y, 1e-2, oracle="search")
    assert not cert.exact and not cert.is_optimal
    assert "not certified" in cert.statement


def test_cutting_plane_reaches_enumerated_optimum_with_few_patterns(enumerated):
    X, y, res = enumerated
    P_all = res.gates.shape[1]
    out = cutting_plane(X, y, 1e-2, n_gates=20, oracle="enumerate", random_state=0,
                        patience=None)
    assert out.search["exact"]
    assert out.objective == pytest.approx(res.objective, rel=1e-6)
    assert out.relative_gap <= 1e-6
    assert out.certified_over.startswith("all activation patterns")
    assert out.search["n_patterns"] < P_all / 5
    # block rounds alone (no unit phase) also terminate at the optimum
    out2 = cutting_plane(X, y, 1e-2, n_gates=20, oracle="enumerate", random_state=0,
                         unit_phase=False, patience=None)
    assert out2.objective == pytest.approx(res.objective, rel=1e-6)


def test_search_default_in_solve(enumerated):
    X, y, res = enumerated
    out = cvxnn.solve(X, y, 1e-2, n_gates=20, random_state=0)
    assert out.search is not None
    assert out.objective <= cvxnn.solve(X, y, 1e-2, n_gates=20, random_state=0,
                                        patterns="sampled").objective + 1e-12
    assert out.objective == pytest.approx(res.objective, rel=1e-4)
    # the network matches the reported objective
    assert out.network.objective(X, y, 1e-2) == pytest.approx(out.objective, rel=1e-8)
    with pytest.raises(ValueError, match="patterns"):
        cvxnn.solve(X, y, 1e-2, patterns="all")
    with pytest.raises(ValueError, match="search_options"):
        cvxnn.solve(X, y, 1e-2, patterns="sampled", search_options={"max_rounds": 2})


def test_search_is_reproducible():
    X, y = _data(50, seed=7)
    a = cvxnn.solve(X, y, 1e-2, n_gates=10, random_state=3, search_options={"oracle": "search",
                                                                             "max_unit_rounds": 5})
    b = cvxnn.solve(X, y, 1e-2, n_gates=10, random_state=3, search_options={"oracle": "search",
                                                                             "max_unit_rounds": 5})
    assert a.objective == b.objective
    np.testing.assert_array_equal(a.gates, b.gates)


def test_polish_never_worse_and_certified(enumerated):
    X, y, res = enumerated
    rng = np.random.default_rng(0)
    W1 = rng.standard_normal((5, 2))
    b1 = rng.standard_normal(5)
    W2 = 0.5 * rng.standard_normal(5)
    net = cvxnn.TwoLayerReLU(W1, b1, W2)
    before = net.objective(X, y, 1e-2)
    only = polish(net, X, y, 1e-2, search=False)
    assert only.objective <= before + 1e-12
    full = polish(net, X, y, 1e-2, oracle="enumerate")
    assert full.objective <= only.objective + 1e-9
    assert full.objective == pytest.approx(res.objective, rel=1e-5)
    assert full.network.objective(X, y, 1e-2) == pytest.approx(full.objective, rel=1e-8)


def test_feature_lasso_solvers_match_clarabel():
    cp = pytest.importorskip("cvxpy")
    from cvxnn.solvers.lasso import solve_feature_lasso, solve_feature_lasso_newton

    rng = np.random.default_rng(0)
    n, m = 120, 60
    X = rng.standard_normal((n, 4))
    A = np.maximum(X @ rng.standard_normal((4, m)), 0)
    y = np.sign(rng.standard_normal(n))[:, None]
    for name in ("squared", "logistic"):
        loss = get_loss(name)
        w = cp.Variable(m)
        if name == "squared":
            f = cp.sum_squares(A @ w - y[:, 0]) / (2 * n)
        else:
            f = cp.sum(cp.logistic(-cp.multiply(y[:, 0], A @ w))) / n
        prob = cp.Problem(cp.Minimize(f + 1e-2 * cp.norm1(w)))
        prob.solve(solver="CLARABEL")
        for solver in (solve_feature_lasso, solve_feature_lasso_newton):
            out = solver(A, y, loss, 1e-2, tol=1e-8)
            assert out["primal"] == pytest.approx(prob.value, rel=1e-6)
            assert out["dual"] <= prob.value + 1e-9


def test_certify_several_outputs_joint_and_separate():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((24, 2))
    y = np.argmax(X @ rng.standard_normal((2, 3)) + 0.3 * rng.standard_normal((24, 3)), axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = cvxnn.solve(X, y, 1e-2, loss="cross_entropy", gates="enumerate")
    sep = cvxnn.certify(res.network, X, y, 1e-2, outputs="separate")
    joint = cvxnn.certify(res.network, X, y, 1e-2)
    # one-vs-all optimum, certified over all patterns for one-vs-all networks
    assert sep.exact and sep.relative_gap <= 1e-5
    # the joint (vector weight decay) bound is rigorous but refers to a larger class
    assert joint.exact and joint.lower_bound <= joint.objective
    assert joint.lower_bound <= sep.lower_bound + 1e-12
    heur = cvxnn.certify(res.network, X, y, 1e-2, oracle="search")
    assert not heur.exact and heur.sigma <= joint.sigma * (1 + 1e-9)
