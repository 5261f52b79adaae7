"""The notebooks: committed without outputs, and each runs top to bottom without an error.

The execution tests (marker ``notebooks``) start a Jupyter kernel of this environment
(``python3``, from ipykernel in the venv) in ``notebooks/``, as ``make lab`` does, and run every
cell. pytest's warning filter does not reach the kernel, so they also check that no cell printed
a warning, and that each notebook drew the figures it promises.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
#: Every notebook shipped: the least number of figures its cells draw, and a line it prints
#: only when its main step came through (the randomised tests pass their sample-ratio check,
#: the comparison valued the oracle, the weekly loop wrote its report).
FIGURES = {
    "01_quickstart.ipynb": 3,
    "02_holdout_design.ipynb": 3,
    "03_model_comparison.ipynb": 2,
    "04_weekly_review.ipynb": 7,
}
PRINTS = {
    "01_quickstart.ipynb": "sample ratio: passed",
    "02_holdout_design.ipynb": "sample ratio check: passed",
    "03_model_comparison.ipynb": "true net value per order: oracle",
    "04_weekly_review.ipynb": "newest report:",
}
# Each notebook runs in well under two minutes; no single cell should take more than this.
CELL_TIMEOUT = 120


def _code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _execute(name: str) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, on the first error
    return notebook


def _outputs(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [output for cell in _code_cells(notebook) for output in cell.outputs]


def test_every_notebook_is_listed() -> None:
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(FIGURES)


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_notebook_is_committed_without_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    dirty = [
        index
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, (
        f"notebooks/{name}: cells {dirty} hold outputs or execution counts; clear them before "
        "committing (JupyterLab: Edit > Clear Outputs of All Cells, then save)"
    )


@pytest.mark.notebooks
@pytest.mark.parametrize("name", sorted(FIGURES))
def test_notebook_runs_cleanly(
    name: str, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel inherits the environment: the notebooks' temporary folders (logs, the demo
    # store, models) land in pytest's tmp_path, which pytest cleans up.
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    notebook = _execute(name)
    outputs = _outputs(notebook)
    warnings = [o.text for o in outputs if o.output_type == "stream" and "Warning" in o.text]
    assert not warnings, f"notebooks/{name} printed warnings:\n" + "\n".join(warnings)
    printed = "".join(o.text for o in outputs if o.output_type == "stream")
    assert PRINTS[name] in printed
    figures = sum("image/png" in o.get("data", {}) for o in outputs)
    assert figures >= FIGURES[name]
    last = _code_cells(notebook)[-1].outputs
    assert any(
        "image/png" in o.get("data", {}) or "text/html" in o.get("data", {}) for o in last
    ), f"notebooks/{name}: the last cell shows neither a figure nor a table"


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_notebook_uses_the_public_api_only(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    for cell in _code_cells(notebook):
        source = "\n".join(
            line for line in cell.source.splitlines() if not line.startswith(("%", "!"))
        )
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("uplift"):
                assert node.module == "uplift", f"{name} imports from {node.module}"
