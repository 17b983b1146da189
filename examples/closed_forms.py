"""Closed-form optimal networks vs. the exact convex program (math spec 4.3, 4.6).

For whitened data, rank-one data and the spike-free two-neuron program, print the
closed-form objective, the optimum of the exact convex program over all
activation patterns (Clarabel, needs ``cvxnn[cvx]``) and their relative difference.
The spike-free program is exact on spike-free data and an upper bound otherwise.

Run:  python examples/closed_forms.py
"""

import warnings

import numpy as np

import cvxnn
from cvxnn.closed_form import is_spike_free, rank_one, spike_free, whitened

warnings.filterwarnings("ignore", message="cvxpy solver CLARABEL returned status")


def clarabel(X, y, alpha):
    return cvxnn.solve(X, y, alpha, formulation="relu", gates="enumerate", bias=False,
                       solver="clarabel").objective


rng = np.random.default_rng(0)
n, d = 6, 8
Xw = np.linalg.qr(rng.standard_normal((d, n)))[0].T            # X X^T = I
y = rng.standard_normal(n)
c, a = rng.standard_normal(n), rng.standard_normal(3)
c[:2] = [1.0, -1.0]                                              # both signs
X1 = np.outer(c, a)
X1pos = np.outer(np.abs(c), a)
Xg = rng.standard_normal((n, 3))

cases = [
    ("whitened", whitened, Xw),
    ("rank_one (mixed c)", rank_one, X1),
    ("spike_free on whitened X", spike_free, Xw),
    ("spike_free on rank-one X, c >= 0", spike_free, X1pos),
    ("spike_free on rank-one X, mixed c", spike_free, X1),
    ("spike_free on Gaussian X", spike_free, Xg),
]
print(f"{'case':36s} {'alpha':>6s} {'closed form':>14s} {'Clarabel':>14s} {'rel. diff':>10s} "
      f"{'neurons':>7s}  exact?")
for alpha in (0.01, 0.1):
    for name, fn, X in cases:
        res = fn(X, y, alpha)
        ref = clarabel(X, y, alpha)
        print(f"{name:36s} {alpha:6.2f} {res.objective:14.10f} {ref:14.10f} "
              f"{(res.objective - ref) / ref:10.2e} {res.network.n_neurons:7d}  {res.is_exact}")

print("\nsampled spike-free test (max ||X^+ (Xu)_+|| found, inf = left the range of X):")
for name, X in [("whitened", Xw), ("rank one, c >= 0", X1pos), ("rank one, mixed c", X1),
                ("Gaussian", Xg)]:
    ok, worst = is_spike_free(X, n_samples=2000, random_state=0, return_max=True)
    print(f"  {name:18s} spike-free: {str(ok):5s}  max ratio {worst:.4f}")

print("\nreplication (X = I_k, y = 10 N(0,1), alpha = 0): "
      "||W1||^2 + ||W2||^2 over the program value")
for k in range(2, 7):
    yk = 10 * rng.standard_normal(k)
    res = spike_free(np.eye(k), yk, 0.0)
    sq = np.sum(res.network.W1 ** 2) + np.sum(res.network.W2 ** 2)
    print(f"  k={k}: program value {res.program_value:9.5f}  ratio {sq / res.program_value:.10f}")
