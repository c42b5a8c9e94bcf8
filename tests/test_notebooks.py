"""The notebooks run top to bottom, their closing checks pass, and what is committed is what they compute.

Each notebook is executed headless (``nbclient``, the ``python3`` kernel of ``ipykernel``) in
memory: nothing is written back, so the working tree stays as it is. Lint is ruff's, with the
project's configuration, which includes the notebooks.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("execute_notebooks", ROOT / "notebooks" / "execute.py")
execute_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(execute_notebooks)

NOTEBOOKS = execute_notebooks.notebooks()


def test_the_six_notebooks_are_there():
    assert [p.name[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_", "04_", "05_", "06_"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_its_checks_pass(path):
    notebook = execute_notebooks.execute(path)  # a failing cell raises CellExecutionError
    printed = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
    assert "all checks passed" in printed
    assert execute_notebooks.figure(notebook) is not None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_with_its_outputs_and_figure(path):
    notebook = execute_notebooks.nbformat.read(path, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "run notebooks/execute.py before committing"
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    figure = ROOT / "notebooks" / "figures" / f"{path.stem}.png"
    assert figure.exists() and figure.stat().st_size < 200_000
    assert path.stat().st_size < 1_000_000


def test_code_and_notebooks_pass_ruff():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
