"""cvxnn: two-layer ReLU networks trained to a certified global optimum.

The training problem of a two-layer ReLU network with weight decay is solved
through its exact convex reformulation (Pilanci & Ergen, ICML 2020) or through
the gated ReLU relaxation (Mishkin, Sahiner & Pilanci, ICML 2022).  Every solve
returns a duality-gap certificate.

Main entry points: :func:`solve`, :class:`ConvexReLURegressor`,
:class:`ConvexReLUClassifier`, :class:`TwoLayerReLU`, :func:`load`,
:func:`sample_gates`, :func:`enumerate_patterns`; :func:`path` and
:func:`alpha_max` (regularization paths), :class:`ConvexReLURegressorCV` and
:class:`ConvexReLUClassifierCV` (alpha by cross-validation);
:func:`decompose_solution` (gated solution to a ReLU network by cone
decomposition); :func:`certify` (optimality certificate of any ReLU network);
:func:`cutting_plane` / :func:`polish` (pattern search with the dual separation
oracle); :mod:`cvxnn.closed_form` (closed-form optimal networks),
:mod:`cvxnn.spline1d` (exact 1-D networks), :mod:`cvxnn.interpret` (neurons as
weighted sums of samples), :mod:`cvxnn.plotting`, :mod:`cvxnn.distributed`
(row-sharded solves), :mod:`cvxnn.memory` (memory estimates) and
:mod:`cvxnn.linear` (linear and circular convolutional networks as lasso and
nuclear-norm programs: :func:`circular_cnn`, :func:`linear_network`,
:func:`linear_cnn`); :mod:`cvxnn.cnn` (two-layer ReLU CNNs as convex programs:
:func:`solve_cnn`, :class:`ConvexCNNClassifier`, :class:`ConvexCNNRegressor`).
"""

from ._control import ProgressInfo, SolveInterruptedWarning
from .certify import Certificate, certify
from .closed_form import ClosedFormResult, is_spike_free, rank_one, spike_free, whitened
from .cone_decomposition import ConeDecomposition, cone_decompose, decompose_solution
from .interpret import kernel_decision_function, min_cardinality, neuron_sample_weights
from .linear import circular_cnn, linear_cnn, linear_network
from .network import GatedTwoLayerReLU, TwoLayerReLU, load
from .oracle import OracleResult, separation_oracle
from .path import PathResult, alpha_max, path
from .patterns import arrangement_count, compute_masks, enumerate_patterns, sample_gates
from .search import cutting_plane, polish
from .spline1d import Spline1D, spline1d
from .solve import SolveResult, solve

__version__ = "0.1.0"

__all__ = [
    "solve", "SolveResult", "TwoLayerReLU", "GatedTwoLayerReLU", "load",
    "sample_gates", "enumerate_patterns", "compute_masks", "arrangement_count",
    "ConvexReLURegressor", "ConvexReLUClassifier",
    "cone_decompose", "decompose_solution", "ConeDecomposition",
    "certify", "Certificate", "cutting_plane", "polish", "separation_oracle", "OracleResult",
    "whitened", "rank_one", "spike_free", "is_spike_free", "ClosedFormResult",
    "ProgressInfo", "SolveInterruptedWarning",
    "neuron_sample_weights", "kernel_decision_function", "min_cardinality",
    "alpha_max", "path", "PathResult", "ConvexReLURegressorCV", "ConvexReLUClassifierCV",
    "spline1d", "Spline1D", "circular_cnn", "linear_cnn", "linear_network",
    "solve_cnn", "ConvexCNNClassifier", "ConvexCNNRegressor", "TwoLayerReLUCNN",
    "GatedTwoLayerReLUCNN", "extract_patches",
]

_CNN_NAMES = ("solve_cnn", "ConvexCNNClassifier", "ConvexCNNRegressor", "TwoLayerReLUCNN",
              "GatedTwoLayerReLUCNN", "extract_patches")


def __getattr__(name):
    # the estimators import scikit-learn's estimator machinery; load them on first use
    if name in ("ConvexReLURegressor", "ConvexReLUClassifier"):
        from . import estimators

        return getattr(estimators, name)
    if name in ("ConvexReLURegressorCV", "ConvexReLUClassifierCV"):
        from . import estimators_cv

        return getattr(estimators_cv, name)
    if name in _CNN_NAMES:
        from . import cnn

        return getattr(cnn, name)
    raise AttributeError(f"module 'cvxnn' has no attribute {name!r}")
