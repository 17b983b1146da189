"""The README's tour and command lines run as written (issue 7: "the README commands
run as written").  The Python block runs in a subprocess in a temporary folder; the
``cvxnn ...`` lines of the tour's bash block run through ``cvxnn.cli.main``."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _tour_blocks():
    text = README.read_text()
    start = text.index("## Five-minute tour")
    end = text.index("\n## ", start + 10)
    tour = text[start:end]
    python = re.findall(r"```python\n(.*?)```", tour, re.S)
    bash = re.findall(r"```bash\n(.*?)```", tour, re.S)
    return python, bash


def test_readme_starts_with_install_and_test_commands():
    text = README.read_text()
    first = re.search(r"```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()
    assert len(first) == 2
    assert "pip install" in first[0] and "cvxnn fit" in first[0]
    assert "pip install" in first[1] and "pytest" in first[1]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "-m pytest -q" in ci and "-m pytest -q" in first[1]


@pytest.mark.slow
def test_readme_python_tour_runs(tmp_path):
    pytest.importorskip("torch")
    python, _ = _tour_blocks()
    assert len(python) == 2
    run = subprocess.run([sys.executable, "-c", "\n".join(python)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=900, env={"OPENBLAS_NUM_THREADS": "1",
                                                      "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "model.npz").exists()


def test_readme_command_lines_run(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    from cvxnn.cli import main

    _, bash = _tour_blocks()
    lines = [ln for ln in bash[0].splitlines() if ln.startswith("cvxnn ")]
    assert len(lines) >= 4
    monkeypatch.chdir(tmp_path)
    for line in lines:
        argv = shlex.split(line)[1:]
        assert main(argv) == 0, (line, capsys.readouterr().err[-2000:])
    for png in ("path.png", "regions.png", "spline.png", "convergence.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_api_reference_covers_every_public_name():
    """docs/make_api.py documents every name in cvxnn.__all__ (with a docstring)."""
    import importlib.util

    import cvxnn

    spec = importlib.util.spec_from_file_location(
        "make_api", README.parent / "docs" / "make_api.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = mod.build()
    for name in cvxnn.__all__:
        assert f"`cvxnn.{name}" in text, name
        assert (getattr(cvxnn, name).__doc__ or "").strip(), f"{name} has no docstring"
    assert "(no docstring)" not in text
