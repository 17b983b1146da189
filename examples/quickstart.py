"""Quick start: train a two-layer ReLU network to a certified optimum.

Run:  python examples/quickstart.py
"""

from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import cvxnn

X, y = load_breast_cancer(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)

alpha = 1e-3
for formulation in ("gated", "relu"):
    res = cvxnn.solve(X_train, y_train, alpha, formulation=formulation, loss="logistic",
                      n_gates=100, random_state=0)
    net = res.network
    print(f"{formulation:5s}  objective {res.objective:.6f}  relative gap {res.relative_gap:.1e}  "
          f"neurons {net.n_neurons:3d}  time {res.time:.2f}s  "
          f"train acc {(net.predict(X_train) == y_train).mean():.3f}  "
          f"test acc {(net.predict(X_test) == y_test).mean():.3f}")
    print(f"       certified over {res.certified_over}")
    # the network's weight-decay objective equals the convex optimum
    print(f"       network objective {net.objective(X_train, y_train, alpha):.6f}")
