"""Smoke-and-sanity tests of the data examples (examples/convex_vs_adam.py, examples/mnist.py).

Each example's ``main([...])`` runs with tiny settings on the shared data
(``../shared/data`` relative to the repository root; skipped when absent) and
its returned figures are checked against independent facts: weak duality
(cvxnn's certified lower bound is below any network's objective, here Adam's),
the objective formula (Adam's objective computed by torch equals
``GatedTwoLayerReLU.objective`` on the same weights), and plain accuracy
thresholds.
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / ".." / "shared" / "data"

needs_data = pytest.mark.skipif(not (DATA_DIR / "load.py").is_file(),
                                reason="shared data (../shared/data) not available")


def _example(name):
    spec = importlib.util.spec_from_file_location(f"cvxnn_example_{name}",
                                                  ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _assert_png_not_blank(path):
    import matplotlib.image as mpimg

    path = Path(path)
    assert path.is_file() and path.stat().st_size > 2000
    img = mpimg.imread(path)[..., :3]
    dark = (img.mean(axis=-1) < 0.5).mean()
    assert img.std() > 0.05 and dark > 0.001, f"{path} looks blank"


def test_missing_data_dir_is_a_clear_error(tmp_path):
    for name in ("convex_vs_adam", "mnist"):
        mod = _example(name)
        with pytest.raises(FileNotFoundError, match="--data-dir"):
            mod.main(["--data-dir", str(tmp_path), "--output-dir", str(tmp_path)])


@needs_data
def test_convex_vs_adam_tiny(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    mod = _example("convex_vs_adam")
    out = mod.main(["--datasets", "230_machine_cpu", "heart_statlog", "--n-gates", "20",
                    "--epochs", "150", "--n-samples", "150", "--output-dir", str(tmp_path)])
    rows = out["rows"]
    assert set(rows) == {"230_machine_cpu", "heart_statlog"}
    assert rows["230_machine_cpu"]["loss"] == "squared"
    assert rows["heart_statlog"]["loss"] == "logistic"
    for name, r in rows.items():
        assert r["n"] == 150 and 1 <= r["P"] <= 20
        # the certificate: small gap, and the bound sits below the attained objective
        assert r["cvxnn_relative_gap"] <= 1e-5, name
        assert r["certified_lower_bound"] <= r["cvxnn_objective"] * (1 + 1e-12), name
        # weak duality: no network with these gates (Adam's included) goes below the bound
        assert r["adam_objective"] >= r["certified_lower_bound"] * (1 - 1e-9), name
        # the claim: the convex program is at least as good as the best Adam run
        assert r["cvxnn_objective"] <= r["adam_objective"] * (1 + 1e-9) + 1e-12, name
        assert r["adam_excess"] >= -1e-9
        # the same formula: torch's objective == GatedTwoLayerReLU.objective on Adam's weights
        assert r["adam_objective"] == pytest.approx(r["adam_objective_torch"], rel=1e-10)
        assert min(r["adam_objective_per_lr"].values()) == pytest.approx(
            r["adam_objective_torch"], rel=1e-12)
        assert r["cvxnn_seconds"] > 0 and r["adam_seconds"] > 0
    _assert_png_not_blank(out["png"])


@needs_data
def test_convex_vs_adam_relu_tiny(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    mod = _example("convex_vs_adam")
    out = mod.main(["--datasets", "230_machine_cpu", "--n-gates", "20", "--epochs", "150",
                    "--n-samples", "100", "--relu", "--relu-width", "30",
                    "--output-dir", str(tmp_path)])
    r = out["relu_rows"]["230_machine_cpu"]
    assert r["formulation"] == "relu" and r["adam_width"] >= max(30, r["cvxnn_active_neurons"])
    assert r["cvxnn_relative_gap"] <= 1e-5
    assert r["cvxnn_objective"] <= r["adam_objective"] * (1 + 1e-6)
    # torch's ReLU objective == TwoLayerReLU.objective on Adam's weights
    assert r["adam_objective"] == pytest.approx(r["adam_objective_torch"], rel=1e-10)
    # --relu adds the ReLU comparison to the gated one
    assert set(out["rows"]) == {"230_machine_cpu"}
    _assert_png_not_blank(out["png"])


@needs_data
def test_mnist_tiny(tmp_path):
    pytest.importorskip("matplotlib")
    mod = _example("mnist")
    out = mod.main(["--n-train", "2000", "--time-limit", "6", "--n-gates", "50",
                    "--output-dir", str(tmp_path)])
    assert out["n_train"] == 2000 and out["n_test"] == 10000
    assert 0 < out["relative_gap"] < 1
    assert np.isfinite(out["objective"]) and out["objective"] > 0
    assert out["active_neurons"] > 0
    assert out["train_accuracy"] > 0.9
    assert out["test_accuracy"] > 0.8
    assert out["peak_memory_mib"] > 0
    _assert_png_not_blank(out["convergence_png"])
    _assert_png_not_blank(out["weights_png"])
