"""The ``cvxnn`` command, run in-process through ``cvxnn.cli.main``."""

import json
import re
import warnings

import numpy as np
import pytest

from cvxnn import load
from cvxnn.cli import _fold_standardization, main
from cvxnn.estimators import ConvexReLUClassifier, ConvexReLURegressor

# fast settings: gated program, few gates, loose tolerance
FAST = ["--formulation", "gated", "--gates", "20", "--tol", "1e-4", "--alpha", "1e-2"]


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _assert_usage_error(code, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("cvxnn: error: ")
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def _fields(out):
    """The text report as a dict: key -> value (columns separated by 2+ spaces)."""
    return dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in out.strip().splitlines())


def _write_csv(path, header, rows):
    with open(path, "w") as fh:
        fh.write(",".join(header) + "\n")
        for r in rows:
            fh.write(",".join(str(v) for v in r) + "\n")
    return path


@pytest.fixture(scope="module")
def iris_csv(tmp_path_factory):
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    species = np.array(["setosa", "versicolor", "virginica"])[y]
    path = tmp_path_factory.mktemp("data") / "iris.csv"
    _write_csv(path, names + ["species"], [list(x) + [s] for x, s in zip(X, species)])
    return path, X, species


# --------------------------------------------------------------------- fit
def test_fit_bundled_dataset_save_and_predict(tmp_path, capsys):
    model = tmp_path / "cancer.npz"
    code, out, err = _run(capsys, "fit", "--dataset", "breast_cancer", *FAST,
                          "--random-state", "0", "--save", model)
    assert code == 0, err
    for key in ("dataset", "breast_cancer", "569 (426 train, 143 test), 30 features",
                "formulation", "gated", "logistic", "alpha", "objective",
                "duality gap", "relative", "active neurons", "train accuracy",
                "test accuracy", "time", str(model)):
        assert key in out, key
    fields = _fields(out)
    assert float(fields["test accuracy"]) > 0.9
    assert fields["saved"] == str(model)
    assert model.exists()

    # the saved network takes raw features (the standardization is folded in)
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    net = load(model)
    assert np.mean(net.predict(X) == y) > 0.9
    data = tmp_path / "new.csv"
    _write_csv(data, [f"f{j}" for j in range(30)], X[:25])
    code, out, err = _run(capsys, "predict", model, "--csv", data)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 25
    np.testing.assert_array_equal([int(v) for v in lines], net.predict(X[:25]))

    # --output writes a CSV; an existing file is not overwritten unless asked
    dest = tmp_path / "pred.csv"
    code, out, err = _run(capsys, "predict", model, "--csv", data, "--output", dest)
    assert code == 0 and out == ""
    content = dest.read_text().splitlines()
    assert content[0] == "prediction" and len(content) == 26
    code, out, err = _run(capsys, "predict", model, "--csv", data, "--output", dest)
    _assert_usage_error(code, err, "already exists", "--overwrite")
    code, out, err = _run(capsys, "predict", model, "--csv", data, "--output", dest,
                          "--overwrite", "--proba")
    assert code == 0, err
    header = dest.read_text().splitlines()[0]
    assert header == "proba_0,proba_1"

    # --save refuses to replace the model
    code, out, err = _run(capsys, "fit", "--dataset", "breast_cancer", *FAST, "--save", model)
    _assert_usage_error(code, err, "already exists")


def test_fit_json_regression(capsys):
    code, out, err = _run(capsys, "fit", "--dataset", "diabetes", *FAST, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["task"] == "regression"
    assert report["loss"] == "squared"
    assert report["score"] == "r2"
    assert report["n_samples"] == 442 and report["n_features"] == 10
    assert report["n_train"] + report["n_test"] == 442
    assert report["alpha"] == 1e-2
    for key in ("objective", "gap", "relative_gap", "n_active", "train_score", "test_score",
                "time", "converged", "n_iter"):
        assert key in report
    assert report["train_score"] > 0.5
    assert report["relative_gap"] <= 1e-4 and report["converged"] is True
    assert report["saved"] is None


def test_fit_csv_string_labels_logistic_no_split(tmp_path, capsys, iris_csv):
    path, X, species = iris_csv
    model = tmp_path / "iris.npz"
    code, out, err = _run(capsys, "fit", "--csv", path, "--target", "species", *FAST,
                          "--test-size", "0", "--save", model, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["task"] == "classification" and report["n_classes"] == 3
    assert report["loss"] == "cross_entropy"
    assert report["n_test"] == 0 and report["test_score"] is None
    assert report["train_score"] > 0.9
    assert report["features"] == ["sepal_length", "sepal_width", "petal_length", "petal_width"]

    # predict on the same file, dropping the target column
    code, out, err = _run(capsys, "predict", model, "--csv", path, "--drop", "species")
    assert code == 0, err
    pred = out.strip().splitlines()
    assert set(pred) <= set(species)
    assert np.mean(np.array(pred) == species) > 0.9
    # without --drop the column count does not match
    code, out, err = _run(capsys, "predict", model, "--csv", path)
    _assert_usage_error(code, err, "5 feature column(s)", "expects 4", "--drop")

    # logistic is binary: a clear error for three classes
    code, out, err = _run(capsys, "fit", "--csv", path, "--target", "species", *FAST,
                          "--loss", "logistic")
    _assert_usage_error(code, err, "binary")


def test_fit_relu_without_pandas(tmp_path, capsys, monkeypatch):
    # pandas is optional: the csv-module reader gives the same data
    import cvxnn.cli as cli

    monkeypatch.setattr(cli, "_import_pandas", lambda: None)
    rng = np.random.RandomState(0)
    X = rng.randn(60, 3)
    y = (X[:, 0] + X[:, 1] ** 2 > 0.5).astype(int)
    path = _write_csv(tmp_path / "d.csv", ["a", "b", "c", "label"],
                      [list(x) + [v] for x, v in zip(X, y)])
    model = tmp_path / "m.npz"
    code, out, err = _run(capsys, "fit", "--csv", path, "--target", "label",
                          "--formulation", "relu", "--gates", "10", "--alpha", "1e-2",
                          "--tol", "1e-3", "--max-iter", "3000", "--loss", "logistic",
                          "--save", model)
    assert code == 0, err
    fields = _fields(out)
    assert fields["formulation"] == "relu" and fields["loss"] == "logistic"
    assert fields["dataset"].endswith("(classification, 2 classes)")
    assert "constraint violation" in fields
    code, out, err = _run(capsys, "predict", model, "--csv", path, "--drop", "label")
    assert code == 0, err
    np.testing.assert_array_equal([int(v) for v in out.split()], load(model).predict(X))


def test_task_rule_and_forced_task(tmp_path, capsys):
    rng = np.random.RandomState(1)
    X = rng.randn(40, 2)
    counts = rng.randint(0, 30, size=40)  # integers with more than 20 values
    path = _write_csv(tmp_path / "c.csv", ["a", "b", "n"],
                      [list(x) + [v] for x, v in zip(X, counts)])
    code, out, err = _run(capsys, "fit", "--csv", path, "--target", "n", *FAST, "--json")
    assert code == 0, err
    assert json.loads(out)["task"] == "regression"
    code, out, err = _run(capsys, "fit", "--csv", path, "--target", "n", *FAST, "--json",
                          "--test-size", "0", "--task", "classification")
    assert code == 0, err
    assert json.loads(out)["task"] == "classification"
    # scikit-learn's "more than 50% unique classes" warning, as one line
    assert err.startswith("cvxnn: warning: ") and "Traceback" not in err


def test_non_convergence_is_a_warning(capsys):
    code, out, err = _run(capsys, "fit", "--dataset", "iris", "--formulation", "gated",
                          "--gates", "10", "--tol", "1e-12", "--max-iter", "5")
    assert code == 0
    assert _fields(out)["converged"].startswith("no")
    assert "constraint violation" not in _fields(out)  # gated: no constraints
    assert err.startswith("cvxnn: warning: ") and len(err.strip().splitlines()) == 1


def test_standardization_is_folded_exactly():
    rng = np.random.RandomState(0)
    X = rng.randn(50, 3) * [1.0, 100.0, 0.01] + [5.0, -300.0, 2.0]
    mean, scale = X.mean(axis=0), X.std(axis=0)
    Xs = (X - mean) / scale
    y = Xs[:, 0] - np.abs(Xs[:, 1]) + 0.1 * rng.randn(50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for formulation in ("gated", "relu"):
            reg = ConvexReLURegressor(formulation=formulation, n_gates=10, alpha=1e-2, tol=1e-3,
                                      max_iter=300, random_state=0).fit(Xs, y)
            net = _fold_standardization(reg.network_, mean, scale, 7.0, 3.0)
            np.testing.assert_allclose(net.predict(X), 7.0 + 3.0 * reg.predict(Xs),
                                       rtol=1e-10, atol=1e-10)
            clf = ConvexReLUClassifier(formulation=formulation, n_gates=10, alpha=1e-2,
                                       tol=1e-3, max_iter=300, random_state=0)
            clf.fit(Xs, y > 0)
            net = _fold_standardization(clf.network_, mean, scale)
            np.testing.assert_allclose(net.predict_proba(X), clf.predict_proba(Xs), atol=1e-10)


# ------------------------------------------------------------------ errors
def test_non_numeric_feature_column(tmp_path, capsys):
    path = _write_csv(tmp_path / "bad.csv", ["x", "color", "city", "y"],
                      [[1.0, "red", "Paris", 0], [2.0, "blue", "Rome", 1],
                       [3.0, "red", "Oslo", 0], [4.0, "blue", "Lima", 1]])
    code, out, err = _run(capsys, "fit", "--csv", path, "--target", "y", *FAST)
    _assert_usage_error(code, err, "non-numeric", "'color'", "'city'")
    assert out == ""


def test_missing_target_column(tmp_path, capsys):
    path = _write_csv(tmp_path / "d.csv", ["a", "b", "label"], [[1, 2, 0], [3, 4, 1]])
    code, out, err = _run(capsys, "fit", "--csv", path, "--target", "price", *FAST)
    _assert_usage_error(code, err, "'price'", "not found", "available columns", "'a'", "'b'",
                        "'label'")


def test_missing_files(tmp_path, capsys):
    code, out, err = _run(capsys, "fit", "--csv", tmp_path / "nope.csv", "--target", "y")
    _assert_usage_error(code, err, "not found", "nope.csv")
    data = _write_csv(tmp_path / "d.csv", ["a"], [[1.0]])
    code, out, err = _run(capsys, "predict", tmp_path / "missing.npz", "--csv", data)
    _assert_usage_error(code, err, "model file not found", "missing.npz")
    # a file that is not a model
    code, out, err = _run(capsys, "predict", data, "--csv", data)
    _assert_usage_error(code, err, "not a cvxnn network file")


@pytest.mark.parametrize("alpha", ["-1", "-0.5", "nan", "abc"])
def test_bad_alpha(capsys, alpha):
    code, out, err = _run(capsys, "fit", "--dataset", "iris", f"--alpha={alpha}")
    _assert_usage_error(code, err, "--alpha")


@pytest.mark.parametrize(
    "argv, fragment",
    [
        ([], "required"),
        (["fit"], "--dataset"),
        (["fit", "--dataset", "mnist"], "invalid choice"),
        (["fit", "--dataset", "iris", "--csv", "x.csv"], "not allowed with"),
        (["fit", "--dataset", "iris", "--gates", "0"], "--gates"),
        (["fit", "--dataset", "iris", "--test-size", "1.5"], "--test-size"),
        (["fit", "--dataset", "iris", "--target", "y"], "--target is only used with --csv"),
        (["fit", "--csv", "x.csv"], "--target"),
        (["fit", "--dataset", "diabetes", "--loss", "logistic"], "regression"),
        (["predict", "m.npz"], "--csv"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_usage_errors(capsys, tmp_path, monkeypatch, argv, fragment):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, *argv)
    _assert_usage_error(code, err, fragment)


def test_missing_values_and_drop_errors(tmp_path, capsys):
    path = tmp_path / "m.csv"
    path.write_text("a,b,y\n1,2,0\n,3,1\n4,5,0\n6,7,1\n")
    code, out, err = _run(capsys, "fit", "--csv", path, "--target", "y", *FAST)
    _assert_usage_error(code, err, "missing values", "'a'")
    code, out, err = _run(capsys, "fit", "--csv", path, "--target", "y", "--drop", "zzz")
    _assert_usage_error(code, err, "'zzz'", "available columns")


def test_help_exits_zero(capsys):
    assert main(["--help"]) == 0
    assert "fit" in capsys.readouterr().out
    assert main(["fit", "--help"]) == 0
    assert "--alpha" in capsys.readouterr().out


def test_internal_error_is_one_line(capsys, monkeypatch):
    import cvxnn.cli as cli

    def boom(args):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(cli, "_load_dataset", lambda name: boom(None))
    code, out, err = _run(capsys, "fit", "--dataset", "iris")
    assert code == 1
    assert err.startswith("cvxnn: internal error: RuntimeError: unexpected")
    assert "Traceback" not in err
    with pytest.raises(RuntimeError):
        main(["--debug", "fit", "--dataset", "iris"])


def test_keyboard_interrupt_returns_130(capsys, monkeypatch):
    import cvxnn.cli as cli

    def interrupted(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_load_dataset", interrupted)
    code, out, err = _run(capsys, "fit", "--dataset", "iris")
    assert code == 130
    assert "interrupted" in err


def test_fit_pattern_search_and_sampled(capsys):
    base = ["fit", "--dataset", "diabetes", "--gates", "20", "--alpha", "1e-2", "--json"]
    code, out, err = _run(capsys, *base, "--patterns", "sampled")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["search"] is None and "20" in rep["certified_over"]
    code, out, err = _run(capsys, *base, "--patterns", "search", "--search-time", "5")
    assert code == 0, err
    srch = json.loads(out)
    assert srch["search"]["n_patterns"] >= 1 and srch["search"]["exact"] is False
    assert "searched" in srch["certified_over"] or "units" in srch["certified_over"]
    assert srch["objective"] <= rep["objective"] * (1 + 1e-9)
    code, out, err = _run(capsys, "fit", "--dataset", "diabetes", "--patterns", "everything")
    _assert_usage_error(code, err, "--patterns")


def test_ctrl_c_during_fit_reports_saves_and_exits_130(tmp_path, capsys, monkeypatch):
    """Ctrl-C inside the solve: the best iterate is reported and saved, exit code 130."""
    import cvxnn.estimators as estimators

    real = estimators._solve
    calls = {"n": 0}

    def interrupt_on_second_check(info):
        calls["n"] += 1
        if calls["n"] >= 2:
            raise KeyboardInterrupt

    def solve_with_ctrl_c(*args, **kwargs):
        kwargs["callback"] = interrupt_on_second_check
        return real(*args, **kwargs)

    monkeypatch.setattr(estimators, "_solve", solve_with_ctrl_c)
    path = tmp_path / "model.npz"
    code, out, err = _run(capsys, "fit", "--dataset", "breast_cancer", "--formulation", "gated",
                          "--solver", "fista", "--save", str(path))
    assert code == 130
    assert "warning" in err and "interrupted" in err
    assert "stopped: keyboard_interrupt" in out
    assert path.exists()
    import cvxnn

    assert cvxnn.load(path).n_features_in == 30
