"""Command-line interface: ``cvxnn fit``, ``cvxnn predict``, ``cvxnn plot`` and ``cvxnn path``.

Usage::

    cvxnn fit --dataset breast_cancer --gates 50 --save model.npz
    cvxnn fit --csv data.csv --target price --alpha 1e-2 --json
    cvxnn predict model.npz --csv new.csv --output predictions.csv
    cvxnn path --dataset diabetes --n-alphas 20 --plot path.png

``cvxnn fit``
    Loads a bundled scikit-learn dataset (``--dataset``: breast_cancer, iris,
    wine, digits are classification sets, diabetes is regression) or a CSV file
    with a header row (``--csv FILE --target COLUMN``; every other column must
    be numeric, or be removed with ``--drop``), splits it with
    ``train_test_split(test_size, random_state)`` (stratified for
    classification when every class has two samples or more), solves the convex
    program on the training part and prints the certificate (objective,
    absolute and relative duality gap), the number of active neurons, the
    train and test scores (accuracy or R^2) and the time.  ``--json`` prints
    the same as one JSON object.

    Task (``--task auto``): the bundled datasets have a known task; a CSV target
    is a classification target when it is not numeric (strings, booleans), or
    when all its values are integers (``3`` or ``3.0``) and it has at most 20
    distinct values; otherwise it is a regression target.  Force either with
    ``--task classification`` / ``--task regression``.

    Loss (``--loss``): by default ``logistic`` for binary classification,
    ``cross_entropy`` for more classes, ``squared`` for regression.

    Standardization (``--standardize``, on by default): features are centred
    and scaled with the mean and standard deviation of the *training* split
    (constant features are only centred) before solving, because the
    first-order solvers converge far faster on standardized data; for
    regression the target is standardized too, so that ``--alpha`` does not
    depend on the target's units.  The printed objective and duality gap are
    those of the standardized problem.  The transform is folded exactly into
    the saved network (first-layer weights, biases and gates; the output
    weights are multiplied by the target's scale and the target's mean becomes
    one extra constant unit), so the saved model takes raw features and
    predicts in the target's units.  Without a bias (``--no-bias``) nothing is
    centred (a network without biases cannot absorb a shift) and features and
    target are divided by their root mean square.  ``--no-standardize`` solves
    on the data exactly as given.

    The model is written with ``--save FILE`` (an ``.npz`` file readable by
    :func:`cvxnn.load`); an existing file is replaced only with ``--overwrite``.
    When the solver stops before reaching ``--tol`` the fit still succeeds
    (exit code 0) and a ``cvxnn: warning: ...`` line is printed to stderr.

``cvxnn predict MODEL --csv FILE``
    Reads a CSV file with a header row and prints one prediction per line
    (class labels for classifiers, values for regression; comma-separated for
    several outputs), or writes them to ``--output OUT.csv`` (column
    ``prediction``, or ``prediction_<k>``).  ``--proba`` gives class
    probabilities instead (models trained with ``cross_entropy`` or
    ``logistic``).  If the model file stores the feature names it was trained
    on, those columns are selected by name; otherwise every column is used, in
    file order, after removing the ``--drop`` columns (for instance the
    target).  All used columns must be numeric.

``cvxnn plot spline|regions|ellipsoid|convergence --out FILE.png``
    Draws a picture with matplotlib (see :mod:`cvxnn.plotting`), reading data
    like ``cvxnn fit`` (``--dataset NAME`` or ``--csv FILE --target COLUMN``;
    ``--data`` is an alias of ``--csv``): ``spline`` fits :func:`cvxnn.spline1d`
    on one feature, ``regions`` fits a network on two features and draws its
    decision regions and neuron hyperplanes, ``ellipsoid`` draws the rectified
    ellipsoid of two rows (``--rows I J``; random data without a source) and
    ``convergence`` the relative duality gap of a solve against time.
    ``--features`` picks columns by name or 0-based index.

``cvxnn path``
    Reads and splits data like ``cvxnn fit`` (``--test-size`` is the validation
    part), standardizes with the training statistics (``--standardize``, on by
    default; objectives and gaps are those of the standardized problem) and
    calls :func:`cvxnn.path`: a decreasing grid of ``--n-alphas`` points from
    ``alpha_max`` down to ``--eps * alpha_max``, or ``--alphas A,B,...``, with
    the ``--gates`` sampled gates shared by every point.  Prints a table (alpha,
    objective, relative gap, active neurons, time, validation accuracy or R^2)
    or, with ``--json``, one JSON object with the same columns as lists;
    ``--plot FILE.png`` draws :func:`cvxnn.plotting.plot_path`.

CSV files are read with pandas when it is installed and with the standard
``csv`` module otherwise; the results are the same.

Exit codes
----------
0
    Success (including a fit that stopped before reaching ``--tol``: a warning
    line is printed to stderr).
1
    Internal error (a bug; rerun with ``cvxnn --debug ...`` to see the traceback).
2
    Bad input or usage: unknown option, missing or unreadable file,
    non-numeric or missing columns, invalid value such as a negative
    ``--alpha``, refusing to overwrite a file.  One line
    ``cvxnn: error: ...`` is printed to stderr, never a traceback.
130
    Interrupted (Ctrl-C).  During ``cvxnn fit`` the solve stops at its best
    iterate, which is still certified, reported and saved (``--save``); the exit
    code is 130 all the same.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_INTERNAL", "EXIT_USAGE", "EXIT_INTERRUPTED"]

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: bundled scikit-learn datasets: name -> task
DATASETS = {
    "breast_cancer": "classification",
    "iris": "classification",
    "wine": "classification",
    "digits": "classification",
    "diabetes": "regression",
}

#: a numeric CSV target with integer values and at most this many distinct
#: values is a classification target under ``--task auto``
MAX_CLASSES_AUTO = 20

_FORMULATIONS = ("relu", "gated")
_LOSSES = ("squared", "logistic", "cross_entropy")
_SOLVERS = ("auto", "fista", "al", "clarabel", "cvxpy")


class InputError(Exception):
    """Bad input or usage: reported as one line, exit code 2."""


class _UsageError(InputError):
    pass


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors become :class:`_UsageError` (no usage dump, no exit)."""

    def error(self, message: str):  # type: ignore[override]
        raise _UsageError(f"{message} (see '{self.prog} --help')")


# ---------------------------------------------------------------- arguments
def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"alpha must be a finite number >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def _test_size(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not (0.0 <= value < 1.0):
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def _add_data_arguments(parser, *, required, data_alias=True,
                        task_help="default: auto (as for 'cvxnn fit')"):
    """The data-source options shared by ``fit``, ``plot`` and ``path``."""
    src = parser.add_mutually_exclusive_group(required=required)
    src.add_argument("--dataset", choices=sorted(DATASETS), metavar="NAME",
                     help="bundled scikit-learn dataset: " + ", ".join(sorted(DATASETS)))
    names = ("--csv", "--data") if data_alias else ("--csv",)
    src.add_argument(*names, dest="csv", metavar="FILE", help="CSV file with a header row")
    parser.add_argument("--target", metavar="COLUMN", help="target column of --csv")
    parser.add_argument("--drop", metavar="COLUMN", action="append", default=[],
                        help="CSV column to ignore (repeatable)")
    parser.add_argument("--task", choices=("auto", "regression", "classification"),
                        default="auto", help=task_help)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``cvxnn`` command."""
    parser = _Parser(
        prog="cvxnn",
        description="Train two-layer ReLU networks to a certified global optimum "
        "(convex reformulation) and predict with them.",
        epilog="Exit codes: 0 ok, 1 internal error, 2 bad input or usage, 130 interrupted.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                parser_class=_Parser)

    fit = sub.add_parser(
        "fit", help="fit a network on a bundled dataset or a CSV file",
        description="Fit a network and print its optimality certificate and scores.",
    )
    _add_data_arguments(fit, required=True, data_alias=False,
                        task_help="default: auto (see the module documentation)")
    fit.add_argument("--alpha", type=_alpha, default=1e-3,
                     help="regularisation strength >= 0 (default: 1e-3)")
    fit.add_argument("--formulation", choices=_FORMULATIONS, default="relu",
                     help="exact ReLU program or gated-ReLU relaxation (default: relu)")
    fit.add_argument("--loss", choices=_LOSSES, default=None,
                     help="default: logistic for two classes, cross_entropy for more, "
                     "squared for regression")
    fit.add_argument("--gates", type=_positive_int, default=100, metavar="N",
                     help="number of sampled gates / activation patterns (default: 100)")
    fit.add_argument("--patterns", choices=("auto", "search", "sampled", "enumerate"),
                     default="auto",
                     help="activation patterns: 'search' adds the patterns of units that "
                     "violate the dual constraint (default for relu), 'sampled' keeps the "
                     "--gates sampled ones, 'enumerate' uses all (small rank only) "
                     "(default: auto)")
    fit.add_argument("--search-time", type=_positive_float, default=None, metavar="SECONDS",
                     help="time budget of the pattern search (default: none)")
    fit.add_argument("--test-size", type=_test_size, default=0.25, metavar="FRACTION",
                     help="fraction held out for testing, 0 for none (default: 0.25)")
    fit.add_argument("--bias", action=argparse.BooleanOptionalAction, default=True,
                     help="hidden-layer biases (default: --bias)")
    fit.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=True,
                     help="standardize features with training statistics; the transform is "
                     "folded into the saved network (default: --standardize)")
    fit.add_argument("--solver", choices=_SOLVERS, default="auto", help="default: auto")
    fit.add_argument("--tol", type=_positive_float, default=1e-6,
                     help="target relative duality gap (default: 1e-6)")
    fit.add_argument("--max-iter", type=_positive_int, default=None, metavar="N",
                     help="iteration budget of the solver (default: the solver's)")
    fit.add_argument("--random-state", type=_seed, default=0, metavar="SEED",
                     help="seed of the split and of the gates (default: 0)")
    fit.add_argument("--save", metavar="MODEL", help="write the network to this .npz file")
    fit.add_argument("--overwrite", action="store_true", help="replace an existing --save file")
    fit.add_argument("--json", action="store_true", help="print one JSON object")
    fit.add_argument("--verbose", "-v", action="count", default=0,
                     help="solver progress on stderr (repeat for more)")
    fit.set_defaults(func=_cmd_fit)

    pred = sub.add_parser(
        "predict", help="predict with a saved network",
        description="Print (or write) the predictions of a saved network on a CSV file.",
    )
    pred.add_argument("model", metavar="MODEL", help="network file written by 'cvxnn fit --save'")
    pred.add_argument("--csv", metavar="FILE", required=True, help="CSV file with a header row")
    pred.add_argument("--drop", metavar="COLUMN", action="append", default=[],
                      help="CSV column to ignore, e.g. the target (repeatable)")
    pred.add_argument("--output", "-o", metavar="OUT", help="write a CSV file instead of printing")
    pred.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    pred.add_argument("--proba", action="store_true",
                      help="class probabilities instead of labels")
    pred.set_defaults(func=_cmd_predict)
    _add_plot_parser(sub)
    _add_path_parser(sub)
    return parser


# ------------------------------------------------------------------ tables
class _Table:
    """Columns of a CSV file: ``names`` and one 1-D array per column.

    A column is a float64 array when every value parses as a number (empty
    cells become NaN), otherwise an object array of strings.
    """

    def __init__(self, path: str, names: list[str], columns: list[np.ndarray]):
        self.path = path
        self.names = names
        self.columns = columns

    @property
    def n_rows(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def column(self, name: str) -> np.ndarray:
        return self.columns[self.names.index(name)]

    def is_numeric(self, name: str) -> bool:
        return self.column(name).dtype.kind in "biuf"


def _fmt_names(names: Sequence[str], limit: int = 20) -> str:
    shown = [repr(str(n)) for n in names[:limit]]
    if len(names) > limit:
        shown.append(f"... ({len(names) - limit} more)")
    return ", ".join(shown)


def _check_readable(path: str, what: str) -> None:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} not found: {path}")
    if p.is_dir():
        raise InputError(f"{what} is a directory, not a file: {path}")


def _import_pandas():
    """pandas if it is installed, else None (it is an optional dependency)."""
    try:
        import pandas
    except ImportError:
        return None
    return pandas


def _read_csv(path: str) -> _Table:
    """Read a CSV file with a header row (pandas if importable, else the csv module)."""
    _check_readable(path, "CSV file")
    pd = _import_pandas()
    if pd is not None:
        try:
            df = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            raise InputError(f"CSV file is empty: {path}") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"cannot parse CSV file {path}: {first}") from None
        names = [str(c) for c in df.columns]
        columns = []
        for c in df.columns:
            s = df[c]
            if pd.api.types.is_bool_dtype(s):
                columns.append(s.to_numpy(dtype=np.float64))
            elif pd.api.types.is_numeric_dtype(s):
                columns.append(s.to_numpy(dtype=np.float64, na_value=np.nan))
            else:
                columns.append(np.array([None if _is_missing(v) else str(v) for v in s],
                                        dtype=object))
        table = _Table(path, names, columns)
    else:
        table = _read_csv_stdlib(path)
    if not table.names:
        raise InputError(f"CSV file has no columns: {path}")
    if table.n_rows == 0:
        raise InputError(f"CSV file has a header but no data rows: {path}")
    return table


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


_MISSING_TOKENS = {"", "na", "nan", "n/a", "null", "none", "<na>"}


def _read_csv_stdlib(path: str) -> _Table:
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError:
        raise InputError(f"cannot parse CSV file {path}: not UTF-8 text") from None
    except csv.Error as exc:
        raise InputError(f"cannot parse CSV file {path}: {exc}") from None
    rows = [r for r in rows if r]  # skip blank lines, as pandas does
    if not rows:
        raise InputError(f"CSV file is empty: {path}")
    names = [h.strip() for h in rows[0]]
    body = rows[1:]
    for i, r in enumerate(body):
        if len(r) != len(names):
            raise InputError(
                f"cannot parse CSV file {path}: line {i + 2} has {len(r)} fields, "
                f"the header has {len(names)}"
            )
    columns = []
    for j in range(len(names)):
        raw = [r[j].strip() for r in body]
        values = []
        numeric = True
        for v in raw:
            if v.lower() in _MISSING_TOKENS:
                values.append(math.nan)
                continue
            low = v.lower()
            if low in ("true", "false"):
                values.append(1.0 if low == "true" else 0.0)
                continue
            try:
                values.append(float(v))
            except ValueError:
                numeric = False
                break
        if numeric:
            columns.append(np.array(values, dtype=np.float64))
        else:
            columns.append(np.array(
                [None if v.lower() in _MISSING_TOKENS else v for v in raw], dtype=object))
    return _Table(path, names, columns)


def _features(table: _Table, names: Sequence[str]) -> np.ndarray:
    """Stack the named columns as float64, or raise naming the offending columns."""
    if not names:
        raise InputError(f"no feature columns left in {table.path}")
    bad = [n for n in names if not table.is_numeric(n)]
    if bad:
        raise InputError(
            f"non-numeric column(s) in {table.path}: {_fmt_names(bad)}; all feature "
            "columns must be numbers (remove the others with --drop)"
        )
    X = np.column_stack([table.column(n) for n in names]).astype(np.float64)
    missing = [n for j, n in enumerate(names) if np.isnan(X[:, j]).any()]
    if missing:
        raise InputError(
            f"missing values in column(s) {_fmt_names(missing)} of {table.path}; "
            "remove or impute them first"
        )
    if not np.isfinite(X).all():
        bad = [n for j, n in enumerate(names) if not np.isfinite(X[:, j]).all()]
        raise InputError(f"infinite values in column(s) {_fmt_names(bad)} of {table.path}")
    return X


def _check_drop(table: _Table, drop: Sequence[str]) -> None:
    unknown = [c for c in drop if c not in table.names]
    if unknown:
        raise InputError(
            f"--drop column(s) {_fmt_names(unknown)} not in {table.path}; available "
            f"columns: {_fmt_names(table.names)}"
        )


# --------------------------------------------------------------------- fit
def _load_dataset(name: str):
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    X = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target)
    names = [str(f) for f in getattr(bunch, "feature_names", [])] or None
    return X, y, names


def _integral(values: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))


def _csv_task(y: np.ndarray) -> str:
    """The ``--task auto`` rule for a CSV target column (see the module docstring)."""
    if y.dtype.kind not in "biuf":
        return "classification"
    if _integral(y) and len(np.unique(y)) <= MAX_CLASSES_AUTO:
        return "classification"
    return "regression"


def _load_csv_data(args):
    if args.target is None:
        raise InputError("--csv needs --target COLUMN (the column to predict)")
    table = _read_csv(args.csv)
    if args.target not in table.names:
        raise InputError(
            f"target column {args.target!r} not found in {args.csv}; available "
            f"columns: {_fmt_names(table.names)}"
        )
    _check_drop(table, args.drop)
    if args.target in args.drop:
        raise InputError(f"--drop {args.target!r} removes the target column")
    feature_names = [c for c in table.names if c != args.target and c not in args.drop]
    X = _features(table, feature_names)
    y = table.column(args.target)
    if y.dtype.kind == "f":
        if np.isnan(y).any():
            raise InputError(f"target column {args.target!r} has missing values")
    elif any(v is None for v in y):
        raise InputError(f"target column {args.target!r} has missing values")
    task = _csv_task(y) if args.task == "auto" else args.task
    if task == "regression" and y.dtype.kind not in "biuf":
        raise InputError(
            f"target column {args.target!r} is not numeric; regression needs numbers "
            "(use --task classification)"
        )
    if task == "classification" and y.dtype.kind == "f" and _integral(y):
        y = y.astype(np.int64)  # labels 0.0, 1.0 -> 0, 1
    return X, y, feature_names, task


def _jsonable(value):
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _fold_standardization(network, mean: np.ndarray, scale: np.ndarray,
                          y_mean: float = 0.0, y_scale: float = 1.0):
    """Network on raw data equal to ``y_mean + y_scale * network((X - mean) / scale)``.

    For every unit ``w . (x - mean) / scale + b = (w / scale) . x + (b - (w / scale) . mean)``
    and gates transform the same way; the output scale multiplies ``W2``; a
    target mean (regression, only with a bias) becomes one extra unit with zero
    weights, bias 1 (and gate ``[0, ..., 0, 1]``), which outputs the constant 1,
    and output weights ``y_mean``.  The result is exact up to rounding.
    """
    data = network.to_dict()
    d = mean.shape[0]
    data["W2"] = np.asarray(data["W2"], dtype=np.float64) * y_scale
    if y_mean != 0.0:
        if data["b1"] is None:  # pragma: no cover - the caller only centres with a bias
            raise ValueError("a target mean can only be folded into a network with biases")
        c = data["W2"].shape[1]
        data["W1"] = np.vstack([data["W1"], np.zeros((1, d))])
        data["b1"] = np.append(data["b1"], 1.0)
        data["W2"] = np.vstack([data["W2"], np.full((1, c), y_mean)])
        if data.get("gates") is not None:
            gate = np.zeros((1, d + 1))
            gate[0, d] = 1.0
            data["gates"] = np.vstack([data["gates"], gate])
    W1 = np.asarray(data["W1"], dtype=np.float64) / scale
    if data["b1"] is not None:
        data["b1"] = np.asarray(data["b1"], dtype=np.float64) - W1 @ mean
    data["W1"] = W1
    if data.get("gates") is not None:
        G = np.array(data["gates"], dtype=np.float64)
        Gx = G[:, :d] / scale
        if G.shape[1] > d:
            G[:, d] = G[:, d] - Gx @ mean
        G[:, :d] = Gx
        data["gates"] = G
    return type(network).from_dict(data)


def _cmd_fit(args) -> int:
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split

    from .estimators import ConvexReLUClassifier, ConvexReLURegressor

    if args.dataset is not None and args.target is not None:
        raise InputError("--target is only used with --csv")
    if args.save is not None:
        save_path = Path(args.save)
        if save_path.exists() and not args.overwrite:
            raise InputError(f"{args.save} already exists; pass --overwrite to replace it")
        parent = save_path.parent if str(save_path.parent) else Path(".")
        if not parent.is_dir():
            raise InputError(f"cannot save to {args.save}: directory {parent} does not exist")

    if args.dataset is not None:
        if args.drop:
            raise InputError("--drop is only used with --csv")
        X, y, feature_names = _load_dataset(args.dataset)
        source = args.dataset
        task = DATASETS[args.dataset] if args.task == "auto" else args.task
    else:
        X, y, feature_names, task = _load_csv_data(args)
        source = args.csv
    n, d = X.shape
    classification = task == "classification"
    if args.loss:
        loss = args.loss
    elif classification:
        # binary: one output and half the blocks of a two-class softmax
        loss = "logistic" if len(np.unique(np.asarray(y).astype(str))) == 2 else "cross_entropy"
    else:
        loss = "squared"
    if not classification and loss != "squared":
        raise InputError(
            f"--loss {loss} is a classification loss but the task is regression "
            "(use --loss squared, or --task classification)"
        )
    if n < 2:
        raise InputError(f"{source} has {n} sample(s); at least 2 are needed")

    # ---- split
    if args.test_size > 0:
        stratify = None
        if classification:
            _, counts = np.unique(y, return_counts=True)
            if counts.min() >= 2:
                stratify = y
        n_test = int(math.ceil(args.test_size * n))
        if n - n_test < 2 or n_test < 1:
            raise InputError(
                f"--test-size {args.test_size} leaves too few samples to train and test "
                f"({n} samples)"
            )
        if stratify is not None and (n_test < len(np.unique(y)) or n - n_test < len(np.unique(y))):
            stratify = None
        X_tr, X_te, y_tr, y_te = train_test_split(
            X, y, test_size=args.test_size, random_state=args.random_state, stratify=stratify
        )
    else:
        X_tr, y_tr, X_te, y_te = X, y, X[:0], y[:0]

    # ---- standardization (training statistics only)
    y_mean, y_scale = 0.0, 1.0
    ys_tr = y_tr
    if args.standardize:
        mean, scale, y_mean, y_scale = _standardizer(X_tr, y_tr, args.bias, classification)
        Xs_tr = (X_tr - mean) / scale
        if not classification:
            y_tr = np.asarray(y_tr, dtype=np.float64)
            ys_tr = (y_tr - y_mean) / y_scale
    else:
        mean, scale = np.zeros(d), np.ones(d)
        Xs_tr = X_tr

    Est = ConvexReLUClassifier if classification else ConvexReLURegressor
    est = Est(
        alpha=args.alpha, formulation=args.formulation, loss=loss, n_gates=args.gates,
        bias=args.bias, solver=args.solver, tol=args.tol, max_iter=args.max_iter,
        random_state=args.random_state, verbose=args.verbose, patterns=args.patterns,
        search_options=(None if args.search_time is None or args.patterns not in ("auto", "search")
                        else {"time_limit": args.search_time}),
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # solver progress goes to stderr so that stdout stays parseable (--json)
        with contextlib.redirect_stdout(sys.stderr):
            est.fit(Xs_tr, ys_tr)
    elapsed = time.perf_counter() - t0
    for w in caught:  # one line each, like the errors
        print(f"cvxnn: warning: {_one_line(w.message)}", file=sys.stderr)

    network = est.network_
    if args.standardize:
        network = _fold_standardization(network, mean, scale, y_mean, y_scale)

    def score(Xp, yp):
        if len(yp) == 0 or (not classification and len(yp) < 2):
            return None
        pred = network.predict(Xp)
        return float(accuracy_score(yp, pred) if classification else r2_score(yp, pred))

    train_score, test_score = score(X_tr, y_tr), score(X_te, y_te)
    saved = None
    if args.save is not None:
        saved = str(network.save(args.save, overwrite=args.overwrite))

    report: dict[str, Any] = {
        "dataset": source,
        "task": task,
        "n_samples": n,
        "n_train": int(len(y_tr)),
        "n_test": int(len(y_te)),
        "n_features": d,
        "n_classes": int(len(est.classes_)) if classification else None,
        "formulation": args.formulation,
        "loss": loss,
        "alpha": args.alpha,
        "bias": args.bias,
        "standardize": args.standardize,
        "n_gates": args.gates,
        "objective": est.objective_,
        "gap": est.gap_,
        "relative_gap": est.relative_gap_,
        "constraint_violation": est.constraint_violation_,
        "converged": est.converged_,
        "stopped": getattr(est, "stopped_", None),
        "n_iter": est.n_iter_,
        "n_active": est.n_active_,
        "n_neurons": est.n_neurons_,
        "certified_over": est.certified_over_,
        "search": None if est.search_ is None else {
            k: est.search_[k] for k in ("relative_gap", "lower_bound", "exact", "stopped",
                                        "n_patterns", "time") if k in est.search_},
        "score": "accuracy" if classification else "r2",
        "train_score": train_score,
        "test_score": test_score,
        "time": elapsed,
        "saved": saved,
        "features": feature_names,
    }
    if args.json:
        print(json.dumps(_jsonable(report), indent=2))
    else:
        _print_report(report)
    # Ctrl-C: the best iterate was reported (and saved); the exit code still says so
    return EXIT_INTERRUPTED if report["stopped"] == "keyboard_interrupt" else EXIT_OK


def _one_line(message) -> str:
    return " ".join(str(message).split())


def _print_report(r: dict) -> None:
    score = "accuracy" if r["task"] == "classification" else "R^2"
    task = r["task"] + (f", {r['n_classes']} classes" if r["n_classes"] else "")

    def num(v, spec=".6g"):
        return "n/a" if v is None else format(v, spec)

    lines = [
        ("dataset", f"{r['dataset']} ({task})"),
        ("samples", f"{r['n_samples']} ({r['n_train']} train, {r['n_test']} test), "
                    f"{r['n_features']} features"),
        ("formulation", r["formulation"]),
        ("loss", r["loss"]),
        ("alpha", format(r["alpha"], "g")),
        ("bias", "yes" if r["bias"] else "no"),
        ("standardize", "yes (training mean/std, folded into the model)"
         if r["standardize"] else "no"),
        ("objective", num(r["objective"], ".10g")),
        ("duality gap", f"{num(r['gap'], '.3e')} (relative {num(r['relative_gap'], '.3e')})"),
        ("converged", f"{'yes' if r['converged'] else 'no'} ({r['n_iter']} iterations)"
                      + (f", stopped: {r['stopped']}" if r.get("stopped") else "")),
        ("certified over", r["certified_over"]),
    ]
    if r.get("search"):
        srch = r["search"]
        kind = "certified" if srch.get("exact") else "estimated, heuristic oracle"
        lines.append(("pattern search", f"{srch.get('n_patterns')} patterns, stopped: "
                                        f"{srch.get('stopped')}; gap to all patterns "
                                        f"{num(srch.get('relative_gap'), '.2e')} ({kind})"))
    if r["formulation"] == "relu":
        lines.append(("constraint violation", f"{num(r['constraint_violation'], '.3e')} "
                                              "(relative, cone constraints)"))
    lines += [
        ("active neurons", f"{r['n_neurons']} ({r['n_active']} nonzero blocks, "
                           f"{r['n_gates']} gates sampled)"),
        (f"train {score}", num(r["train_score"], ".4f")),
        (f"test {score}", num(r["test_score"], ".4f")),
        ("time", f"{r['time']:.2f} s"),
    ]
    if r["saved"]:
        lines.append(("saved", r["saved"]))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key:<{width}}  {value}")


# ----------------------------------------------------------------- predict
def _format_value(v) -> str:
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, np.generic):
        return str(v.item())
    return str(v)


def _cmd_predict(args) -> int:
    from .network import load

    _check_readable(args.model, "model file")
    if args.output is not None and Path(args.output).exists() and not args.overwrite:
        raise InputError(f"{args.output} already exists; pass --overwrite to replace it")
    try:
        network = load(args.model)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    table = _read_csv(args.csv)
    _check_drop(table, args.drop)
    stored = getattr(network, "feature_names_in", None)
    if stored is None:
        stored = getattr(network, "feature_names", None)
    if stored is not None:
        names = [str(c) for c in stored]
        absent = [c for c in names if c not in table.names]
        if absent:
            raise InputError(
                f"{args.csv} lacks the model's feature column(s) {_fmt_names(absent)}; "
                f"available columns: {_fmt_names(table.names)}"
            )
    else:
        names = [c for c in table.names if c not in args.drop]
        if len(names) != network.n_features_in:
            raise InputError(
                f"{args.csv} has {len(names)} feature column(s) but the model expects "
                f"{network.n_features_in}; remove extra columns (e.g. the target) with --drop"
            )
    X = _features(table, names)

    if args.proba:
        if network.classes is None or network.loss == "squared":
            raise InputError(
                f"--proba needs a classifier trained with loss 'cross_entropy' or "
                f"'logistic'; this model has loss {network.loss!r}"
            )
        values = network.predict_proba(X)
        header = [f"proba_{_format_value(c)}" for c in network.classes]
    else:
        values = network.predict(X)
        if values.ndim == 2:
            header = [f"prediction_{k}" for k in range(values.shape[1])]
        else:
            header = ["prediction"]
    rows = values if values.ndim == 2 else values[:, None]

    if args.output is not None:
        import csv

        out = Path(args.output)
        tmp = out.with_name(f".{out.name}.tmp")
        try:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow(header)
                for row in rows:
                    writer.writerow([_format_value(v) for v in row])
            if args.overwrite:
                os.replace(tmp, out)
            else:
                if out.exists():
                    raise InputError(f"{args.output} already exists; pass --overwrite to replace it")
                os.replace(tmp, out)
        finally:
            if tmp.exists():
                tmp.unlink()
    else:
        for row in rows:
            print(",".join(_format_value(v) for v in row))
    return EXIT_OK


# -------------------------------------------------------------------- plot
PLOT_KINDS = ("spline", "regions", "ellipsoid", "convergence")


def _add_plot_parser(sub) -> None:
    plot = sub.add_parser(
        "plot", help="draw a picture: 1-D spline fit, 2-D decision regions, rectified "
        "ellipsoid or solver convergence",
        description="Fit (where needed) and draw a picture into an image file.  "
        "spline: 1-D fit with its knots (one feature, numeric target); regions: decision "
        "regions and neuron hyperplanes on two features; ellipsoid: the rectified "
        "ellipsoid of two samples (rows), random ones without data; convergence: "
        "relative duality gap against time of a solve.",
    )
    plot.add_argument("kind", choices=PLOT_KINDS, help="what to draw")
    _add_data_arguments(plot, required=False)
    plot.add_argument("--features", nargs="+", metavar="COLUMN",
                      help="feature columns by name or 0-based index (spline: 1, regions: 2; "
                      "default: the first ones)")
    plot.add_argument("--rows", nargs=2, type=int, default=None, metavar=("I", "J"),
                      help="ellipsoid: the two samples (0-based rows, default: 0 1)")
    plot.add_argument("--alpha", type=_alpha, default=1e-3,
                      help="regularisation strength >= 0 (default: 1e-3)")
    plot.add_argument("--formulation", choices=_FORMULATIONS, default="relu",
                      help="default: relu")
    plot.add_argument("--loss", choices=_LOSSES, default=None,
                      help="default: as for 'cvxnn fit' (spline: squared or logistic)")
    plot.add_argument("--gates", type=_positive_int, default=100, metavar="N",
                      help="number of sampled gates (default: 100)")
    plot.add_argument("--patterns", choices=("auto", "search", "sampled", "enumerate"),
                      default="auto", help="activation patterns (default: auto)")
    plot.add_argument("--bias", action=argparse.BooleanOptionalAction, default=True,
                      help="hidden-layer biases (default: --bias)")
    plot.add_argument("--spline-bias", choices=("regularized", "free", "none"), default=None,
                      help="spline: bias treatment (default: regularized, or none with "
                      "--no-bias)")
    plot.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=True,
                      help="regions/convergence: solve on standardized features (the "
                      "picture stays in the raw units) (default: --standardize)")
    plot.add_argument("--solver", choices=_SOLVERS, default="auto", help="default: auto")
    plot.add_argument("--tol", type=_positive_float, default=1e-6,
                      help="target relative duality gap (default: 1e-6)")
    plot.add_argument("--max-iter", type=_positive_int, default=None, metavar="N")
    plot.add_argument("--random-state", type=_seed, default=0, metavar="SEED",
                      help="seed of the gates (and of the random ellipsoid) (default: 0)")
    plot.add_argument("--out", "-o", metavar="FILE", required=True,
                      help="image file to write (.png; any format matplotlib writes)")
    plot.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    plot.add_argument("--size", nargs=2, type=_positive_float, default=(6.4, 4.8),
                      metavar=("W", "H"), help="figure size in inches (default: 6.4 4.8)")
    plot.add_argument("--dpi", type=_positive_int, default=100,
                      help="resolution: the image is W*dpi x H*dpi pixels (default: 100)")
    plot.set_defaults(func=_cmd_plot)


def _plot_table(args, need_target: bool):
    """``(X, y or None, feature names, task)`` from ``--dataset`` or ``--csv``."""
    if args.dataset is None and args.csv is None:
        raise InputError(f"'cvxnn plot {args.kind}' needs data: --dataset NAME or --csv FILE")
    if args.dataset is not None:
        if args.target is not None:
            raise InputError("--target is only used with --csv")
        if args.drop:
            raise InputError("--drop is only used with --csv")
        X, y, names = _load_dataset(args.dataset)
        task = DATASETS[args.dataset] if args.task == "auto" else args.task
        return X, y, names or [f"x{j}" for j in range(X.shape[1])], task
    if args.target is None and not need_target:
        table = _read_csv(args.csv)
        _check_drop(table, args.drop)
        names = [c for c in table.names if c not in args.drop]
        return _features(table, names), None, names, None
    X, y, names, task = _load_csv_data(args)
    return X, y, names, task


def _select_features(X, names, wanted, count: int, what: str):
    """Columns ``wanted`` (names or 0-based indices), or the first ``count`` columns."""
    if wanted is None:
        if X.shape[1] < count:
            raise InputError(f"{what} needs {count} feature(s); the data have {X.shape[1]}")
        if X.shape[1] > count:
            print(f"cvxnn: note: {what} uses the first {count} feature(s) "
                  f"{_fmt_names(names[:count])} (choose with --features)", file=sys.stderr)
        return X[:, :count], list(names[:count])
    if len(wanted) != count:
        raise InputError(f"{what} needs exactly {count} --features, got {len(wanted)}")
    cols = []
    for w in wanted:
        if w in names:
            cols.append(names.index(w))
        elif w.isdigit() and int(w) < X.shape[1]:
            cols.append(int(w))
        else:
            raise InputError(
                f"--features {w!r} is neither a column name nor an index below "
                f"{X.shape[1]}; available: {_fmt_names(names)}"
            )
    return X[:, cols], [names[c] for c in cols]


def _default_loss(args, y, classification: bool) -> str:
    if args.loss:
        if not classification and args.loss != "squared":
            raise InputError(
                f"--loss {args.loss} is a classification loss but the task is regression "
                "(use --loss squared, or --task classification)"
            )
        return args.loss
    if classification:
        return "logistic" if len(np.unique(np.asarray(y).astype(str))) == 2 else "cross_entropy"
    return "squared"


def _plot_fit(args, X, y, task):
    """Solve on (optionally standardized) data; return the result and the raw-unit network."""
    from .solve import solve

    classification = task == "classification"
    loss = _default_loss(args, y, classification)
    y_mean, y_scale = 0.0, 1.0
    yt = y
    if args.standardize:
        mean, scale, y_mean, y_scale = _standardizer(X, y, args.bias, classification)
        Xs = (X - mean) / scale
        if not classification:
            yt = (np.asarray(y, dtype=np.float64) - y_mean) / y_scale
    else:
        Xs = X
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with contextlib.redirect_stdout(sys.stderr):
            result = solve(Xs, yt, args.alpha, formulation=args.formulation, loss=loss,
                           n_gates=args.gates, bias=args.bias, solver=args.solver, tol=args.tol,
                           max_iter=args.max_iter, random_state=args.random_state,
                           patterns=args.patterns, classification=classification)
    for w in caught:
        print(f"cvxnn: warning: {_one_line(w.message)}", file=sys.stderr)
    network = result.network
    if args.standardize:
        network = _fold_standardization(network, mean, scale, y_mean, y_scale)
    return result, network


def _check_out(args) -> Path:
    out = Path(args.out)
    if out.is_dir():
        raise InputError(f"--out {args.out} is a directory")
    if out.exists() and not args.overwrite:
        raise InputError(f"{args.out} already exists; pass --overwrite to replace it")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"cannot write {args.out}: directory {parent} does not exist")
    return out


def _cmd_plot(args) -> int:
    out = _check_out(args)
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("'cvxnn plot' needs matplotlib (pip install matplotlib)") from None
    fig = Figure(figsize=tuple(args.size), dpi=args.dpi)
    fmt = out.suffix[1:].lower()
    if fmt not in fig.canvas.get_supported_filetypes():
        raise InputError(
            f"--out {args.out}: unknown image format {out.suffix or '(none)'!r}; use one of "
            f"{', '.join(sorted(fig.canvas.get_supported_filetypes()))}"
        )
    ax = fig.subplots()
    from . import plotting

    kind = args.kind
    if kind == "ellipsoid":
        if args.dataset is None and args.csv is None:
            X2 = np.random.default_rng(args.random_state).standard_normal((2, 3))
            title = f"random 2 x 3 data (seed {args.random_state})"
        else:
            X, _, names, _ = _plot_table(args, need_target=False)
            if args.features is not None:
                X, _ = _select_features(X, names, args.features, len(args.features), "ellipsoid")
            rows = [0, 1] if args.rows is None else list(args.rows)
            if any(r < 0 or r >= X.shape[0] for r in rows) or rows[0] == rows[1]:
                raise InputError(f"--rows must be two distinct rows in [0, {X.shape[0]}), "
                                 f"got {rows}")
            X2 = X[rows]
            title = f"rows {rows[0]} and {rows[1]}"
        plotting.plot_rectified_ellipsoid(X2, ax=ax)
        ax.set_title(f"rectified ellipsoid: {title}", fontsize="small")
    elif kind == "spline":
        X, y, names, task = _plot_table(args, need_target=True)
        x1, used = _select_features(X, names, args.features, 1, "spline")
        try:
            from .spline1d import spline1d
        except ImportError:
            raise InputError("this cvxnn installation has no cvxnn.spline1d") from None
        classification = task == "classification"
        loss = args.loss or ("logistic" if classification else "squared")
        if loss not in ("squared", "logistic"):
            raise InputError(f"spline supports --loss squared or logistic, got {loss}")
        if classification and len(np.unique(np.asarray(y).astype(str))) != 2:
            raise InputError("spline classification needs exactly two classes")
        bias = args.spline_bias or ("regularized" if args.bias else "none")
        sp = spline1d(x1[:, 0], y, args.alpha, bias=bias, loss=loss,
                      random_state=args.random_state)
        plotting.plot_spline1d(sp, ax=ax)
        ax.set_xlabel(used[0])
        ax.set_title(f"spline1d (bias={bias}, alpha={args.alpha:g}): {sp.n_knots} knots",
                     fontsize="small")
    elif kind == "regions":
        X, y, names, task = _plot_table(args, need_target=True)
        X2, used = _select_features(X, names, args.features, 2, "regions")
        result, network = _plot_fit(args, X2, y, task)
        yplot = np.asarray(y) if task == "classification" else np.asarray(y, dtype=float)
        plotting.plot_decision_regions(network, X2, yplot, ax=ax)
        ax.set_xlabel(used[0])
        ax.set_ylabel(used[1])
        ax.set_title(f"{args.formulation}, alpha={args.alpha:g}: {network.n_neurons} neurons, "
                     f"relative gap {result.relative_gap:.1e}", fontsize="small")
    else:  # convergence
        X, y, names, task = _plot_table(args, need_target=True)
        if args.features is not None:
            X, _ = _select_features(X, names, args.features, len(args.features), "convergence")
        result, _ = _plot_fit(args, X, y, task)
        plotting.plot_convergence(result, ax=ax)
    fig.tight_layout()
    fig.savefig(out, dpi=args.dpi)
    print(f"wrote {out}")
    return EXIT_OK


# -------------------------------------------------------------------- path
def _alpha_list(text: str) -> list:
    """``--alphas a,b,c``: finite numbers > 0, at least one."""
    parts = [p.strip() for p in text.split(",")]
    if not parts or any(p == "" for p in parts):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers > 0 such as 1e-1,1e-2, got {text!r}")
    return [_positive_float(p) for p in parts]


def _eps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not (0.0 < value < 1.0):
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text}")
    return value


def _add_path_parser(sub) -> None:
    pth = sub.add_parser(
        "path", help="solve on a decreasing grid of alpha (regularization path)",
        description="Solve the convex program on a decreasing grid of alpha with shared "
        "activation patterns (warm starts and screening), print the objective, relative "
        "duality gap, active neurons and validation score per alpha, and optionally "
        "draw the path (--plot).",
    )
    _add_data_arguments(pth, required=True)
    pth.add_argument("--formulation", choices=_FORMULATIONS, default="gated",
                     help="gated-ReLU relaxation or exact ReLU program on the sampled "
                     "patterns (default: gated)")
    pth.add_argument("--loss", choices=_LOSSES, default=None,
                     help="default: as for 'cvxnn fit'")
    pth.add_argument("--gates", type=_positive_int, default=100, metavar="N",
                     help="number of sampled gates, shared by the whole path (default: 100)")
    pth.add_argument("--n-alphas", type=_positive_int, default=None, metavar="N",
                     help="grid points from alpha_max down to eps * alpha_max (default: 20)")
    pth.add_argument("--eps", type=_eps, default=None,
                     help="alpha_min / alpha_max, in (0, 1) (default: 1e-3)")
    pth.add_argument("--alphas", type=_alpha_list, default=None, metavar="A,B,...",
                     help="explicit grid (comma-separated; sorted decreasingly); excludes "
                     "--n-alphas and --eps")
    pth.add_argument("--test-size", type=_test_size, default=0.25, metavar="FRACTION",
                     help="fraction held out for the validation score, 0 for none "
                     "(default: 0.25)")
    pth.add_argument("--bias", action=argparse.BooleanOptionalAction, default=True,
                     help="hidden-layer biases (default: --bias)")
    pth.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=True,
                     help="standardize features (and a regression target) with training "
                     "statistics, as 'cvxnn fit' does (default: --standardize)")
    pth.add_argument("--tol", type=_positive_float, default=1e-6,
                     help="target relative duality gap at every point (default: 1e-6)")
    pth.add_argument("--max-iter", type=_positive_int, default=None, metavar="N",
                     help="iteration budget of each solve (default: the solver's)")
    pth.add_argument("--warm-start", action=argparse.BooleanOptionalAction, default=True,
                     help="start each solve from the previous solution (default: --warm-start)")
    pth.add_argument("--screening", action=argparse.BooleanOptionalAction, default=True,
                     help="strong and gap-safe screening rules (warm paths only) "
                     "(default: --screening)")
    pth.add_argument("--random-state", type=_seed, default=0, metavar="SEED",
                     help="seed of the split and of the gates (default: 0)")
    pth.add_argument("--plot", metavar="OUT", default=None,
                     help="draw the path (block norms, active neurons, scores) into this "
                     "image file (.png; any format matplotlib writes)")
    pth.add_argument("--size", nargs=2, type=_positive_float, default=(7.5, 8.4),
                     metavar=("W", "H"), help="--plot figure size in inches (default: 7.5 8.4)")
    pth.add_argument("--dpi", type=_positive_int, default=100,
                     help="--plot resolution: W*dpi x H*dpi pixels (default: 100)")
    pth.add_argument("--overwrite", action="store_true", help="replace an existing --plot file")
    pth.add_argument("--json", action="store_true", help="print one JSON object")
    pth.add_argument("--verbose", "-v", action="count", default=0,
                     help="one line per alpha on stderr (-vv: also the solvers' output)")
    pth.set_defaults(func=_cmd_path)


def _check_image_out(name: str, overwrite: bool, option: str):
    """Validate an image output path before any work: ``(Path, Figure class)``."""
    out = Path(name)
    if out.is_dir():
        raise InputError(f"{option} {name} is a directory")
    if out.exists() and not overwrite:
        raise InputError(f"{name} already exists; pass --overwrite to replace it")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"cannot write {name}: directory {parent} does not exist")
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError(f"{option} needs matplotlib (pip install matplotlib)") from None
    supported = Figure().canvas.get_supported_filetypes()
    if out.suffix[1:].lower() not in supported:
        raise InputError(
            f"{option} {name}: unknown image format {out.suffix or '(none)'!r}; use one of "
            f"{', '.join(sorted(supported))}"
        )
    return out, Figure


def _split(X, y, test_size: float, random_state: int, classification: bool, source: str):
    """``train_test_split`` as in ``cvxnn fit`` (stratified when possible)."""
    from sklearn.model_selection import train_test_split

    n = X.shape[0]
    if test_size <= 0:
        return X, y, X[:0], y[:0]
    n_test = int(math.ceil(test_size * n))
    if n - n_test < 2 or n_test < 1:
        raise InputError(f"--test-size {test_size} leaves too few samples to train and "
                         f"validate ({n} samples in {source})")
    stratify = None
    if classification:
        labels, counts = np.unique(y, return_counts=True)
        if counts.min() >= 2 and n_test >= len(labels) and n - n_test >= len(labels):
            stratify = y
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=test_size,
                                              random_state=random_state, stratify=stratify)
    return X_tr, y_tr, X_te, y_te


def _standardizer(X_tr, y_tr, bias: bool, classification: bool):
    """Training statistics ``(mean, scale, y_mean, y_scale)`` as in ``cvxnn fit``."""
    d = X_tr.shape[1]
    mean = X_tr.mean(axis=0) if bias else np.zeros(d)
    scale = X_tr.std(axis=0) if bias else np.sqrt(np.mean(X_tr ** 2, axis=0))
    scale[~(scale > 1e-12 * max(1.0, float(np.abs(X_tr).max(initial=0.0))))] = 1.0
    y_mean, y_scale = 0.0, 1.0
    if not classification:
        yf = np.asarray(y_tr, dtype=np.float64)
        y_mean = float(yf.mean()) if bias else 0.0
        y_scale = float(yf.std()) if bias else float(np.sqrt(np.mean(yf ** 2)))
        if not y_scale > 1e-12 * max(1.0, abs(y_mean)):
            y_scale = 1.0
    return mean, scale, y_mean, y_scale


def _cmd_path(args) -> int:
    from .path import path as solve_path
    from .plotting import path_validation_scores

    if args.alphas is not None and (args.n_alphas is not None or args.eps is not None):
        raise InputError("--alphas gives the grid; it cannot be combined with --n-alphas or --eps")
    plot_out = Figure = None
    if args.plot is not None:
        plot_out, Figure = _check_image_out(args.plot, args.overwrite, "--plot")
    if args.dataset is not None:
        if args.target is not None:
            raise InputError("--target is only used with --csv")
        if args.drop:
            raise InputError("--drop is only used with --csv")
        X, y, _ = _load_dataset(args.dataset)
        source = args.dataset
        task = DATASETS[args.dataset] if args.task == "auto" else args.task
    else:
        X, y, _, task = _load_csv_data(args)
        source = args.csv
    n, d = X.shape
    if n < 2:
        raise InputError(f"{source} has {n} sample(s); at least 2 are needed")
    classification = task == "classification"
    loss = _default_loss(args, y, classification)

    X_tr, y_tr, X_va, y_va = _split(X, y, args.test_size, args.random_state, classification,
                                    source)
    if args.standardize:
        mean, scale, y_mean, y_scale = _standardizer(X_tr, y_tr, args.bias, classification)
    else:
        mean, scale, y_mean, y_scale = np.zeros(d), np.ones(d), 0.0, 1.0
    Xs_tr, Xs_va = (X_tr - mean) / scale, (X_va - mean) / scale
    if classification:
        ys_tr, ys_va = y_tr, y_va
    else:
        ys_tr = (np.asarray(y_tr, dtype=np.float64) - y_mean) / y_scale
        ys_va = (np.asarray(y_va, dtype=np.float64) - y_mean) / y_scale

    grid = dict(alphas=args.alphas) if args.alphas is not None else dict(
        n_alphas=20 if args.n_alphas is None else args.n_alphas,
        eps=1e-3 if args.eps is None else args.eps)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # progress goes to stderr so that stdout stays parseable (--json)
        with contextlib.redirect_stdout(sys.stderr):
            result = solve_path(
                Xs_tr, ys_tr, **grid, formulation=args.formulation, loss=loss,
                n_gates=args.gates, bias=args.bias, tol=args.tol, warm_start=args.warm_start,
                screening=args.screening, random_state=args.random_state,
                verbose=2 * min(args.verbose, 1) + max(args.verbose - 1, 0),
                classification=classification, max_iter=args.max_iter)
    seen = set()
    for w in caught:  # one line each, like the errors; repeated ones once
        text = _one_line(w.message)
        if text not in seen:
            seen.add(text)
            print(f"cvxnn: warning: {text}", file=sys.stderr)

    scores = None
    score_kind = "accuracy" if classification else "r2"
    if len(y_va) >= (1 if classification else 2):
        scores, score_kind = path_validation_scores(result, Xs_va, ys_va)

    if plot_out is not None:
        from .plotting import plot_path

        fig = Figure(figsize=tuple(args.size), dpi=args.dpi)
        axes = fig.subplots(3, 1, sharex=True)
        if scores is None:
            plot_path(result, axes=axes)
        else:
            plot_path(result, X_val=Xs_va, y_val=ys_va, axes=axes)
        fig.tight_layout()
        fig.savefig(plot_out, dpi=args.dpi)

    report: dict[str, Any] = {
        "dataset": source,
        "task": task,
        "n_samples": n,
        "n_train": int(len(y_tr)),
        "n_validation": int(len(y_va)),
        "n_features": d,
        "formulation": args.formulation,
        "loss": loss,
        "bias": args.bias,
        "standardize": args.standardize,
        "n_gates": args.gates,
        "tol": args.tol,
        "warm_start": args.warm_start,
        "screening": bool(args.screening and args.warm_start),
        "alpha_max": result.alpha_max,
        "alphas": result.alphas,
        "objectives": result.objectives,
        "gaps": result.gaps,
        "n_active": result.n_active,
        "n_kept": result.n_kept,
        "times": result.times,
        "total_time": float(result.info.get("total_time", float(np.sum(result.times)))),
        "score": score_kind,
        "validation_scores": scores,
        "plot": None if plot_out is None else str(plot_out),
    }
    if args.json:
        print(json.dumps(_jsonable(report), indent=2))
    else:
        _print_path_report(report)
    return EXIT_OK


def _print_path_report(r: dict) -> None:
    score = "accuracy" if r["score"] == "accuracy" else "R^2"
    print(f"dataset      {r['dataset']} ({r['task']}): {r['n_samples']} samples "
          f"({r['n_train']} train, {r['n_validation']} validation), {r['n_features']} features")
    print(f"program      {r['formulation']}, {r['loss']} loss, {r['n_gates']} sampled gates, "
          f"bias {'yes' if r['bias'] else 'no'}, standardize {'yes' if r['standardize'] else 'no'}")
    print(f"alpha_max    {r['alpha_max']:.6g} (the zero network is optimal above it)")
    print(f"path         {len(r['alphas'])} alphas, warm start "
          f"{'yes' if r['warm_start'] else 'no'}, screening {'yes' if r['screening'] else 'no'}, "
          f"{r['total_time']:.2f} s")
    header = f"{'#':>3}  {'alpha':>11}  {'objective':>14}  {'rel. gap':>9}  {'active':>6}  " \
             f"{'time (s)':>8}  {'val. ' + score:>14}"
    print()
    print(header)
    print("-" * len(header))
    vals = r["validation_scores"]
    for i, a in enumerate(r["alphas"]):
        gap = r["gaps"][i]
        gap_s = "nan" if not np.isfinite(gap) else f"{gap:.2e}"
        v = "n/a" if vals is None or not np.isfinite(vals[i]) else f"{vals[i]:.4f}"
        print(f"{i:>3}  {a:>11.4e}  {r['objectives'][i]:>14.8g}  {gap_s:>9}  "
              f"{int(r['n_active'][i]):>6}  {r['times'][i]:>8.3f}  {v:>14}")
    if r["plot"]:
        print()
        print(f"wrote {r['plot']}")


# -------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cvxnn`` command; return its exit code (see the module docstring)."""
    parser = build_parser()
    debug = "--debug" in (sys.argv[1:] if argv is None else list(argv))
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help / --version
            return exc.code if isinstance(exc.code, int) else EXIT_OK
        debug = args.debug
        return args.func(args)
    except KeyboardInterrupt:
        print("cvxnn: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `cvxnn predict ... | head`
        with contextlib.suppress(Exception):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except InputError as exc:
        if debug:
            raise
        print(f"cvxnn: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
            FileExistsError) as exc:
        if debug:
            raise
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        text = exc.strerror if getattr(exc, "strerror", None) else str(exc)
        print(f"cvxnn: error: {_one_line(text)}{where}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        # invalid data or parameters detected by the library (its documented errors)
        if debug:
            raise
        print(f"cvxnn: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - last resort: no traceback for users
        if debug:
            raise
        print(
            f"cvxnn: internal error: {type(exc).__name__}: {_one_line(exc)} "
            "(rerun with 'cvxnn --debug ...' for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
