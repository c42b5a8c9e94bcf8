"""Run the notebooks in place, keeping their outputs, and write each one's figure to ``figures/``.

A notebook's figure is the one its cell tagged ``figure`` draws (else its first).

    python notebooks/execute.py            # every notebook
    python notebooks/execute.py 03 05      # those whose names start so

The test suite runs the same notebooks in memory (``tests/test_notebooks.py``) and writes
nothing; this script is how the committed outputs and the README's figures are made.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
FIGURES = HERE / "figures"


def notebooks(prefixes: list[str] | None = None) -> list[Path]:
    paths = sorted(HERE.glob("[0-9][0-9]_*.ipynb"))
    return [p for p in paths if not prefixes or any(p.name.startswith(x) for x in prefixes)]


def execute(path: Path, timeout: int = 600) -> nbformat.NotebookNode:
    """The notebook at ``path``, run top to bottom in a fresh kernel with the notebooks folder as its directory."""
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    return notebook


def figure(notebook: nbformat.NotebookNode) -> bytes | None:
    """The PNG of the cell tagged ``figure``, else of the first cell that draws one."""
    tagged = [c for c in notebook.cells if "figure" in c.get("metadata", {}).get("tags", [])]
    for cell in tagged + notebook.cells:
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png:
                return base64.b64decode(png)
    return None


def main(prefixes: list[str]) -> None:
    FIGURES.mkdir(exist_ok=True)
    for path in notebooks(prefixes):
        notebook = execute(path)
        for cell in notebook.cells:  # keep the diff to what the notebook computed
            cell.get("metadata", {}).pop("execution", None)
        nbformat.write(notebook, path)
        png = figure(notebook)
        if png:
            (FIGURES / f"{path.stem}.png").write_bytes(png)
        print(f"ran {path.name}")


if __name__ == "__main__":
    main(sys.argv[1:])
