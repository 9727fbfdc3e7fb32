"""notebooks/eval.ipynb runs from top to bottom with the offline demo models."""

from __future__ import annotations

from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "eval.ipynb"


@pytest.mark.timeout(600)
def test_the_eval_notebook_runs_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code")
    # nbclient raises CellExecutionError at the first cell that fails.
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    results = [
        output["data"]
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.get("output_type") == "execute_result"
    ]
    table = results[0]["text/plain"]
    for name in ("member:demo-analyst", "member:demo-skeptic", "vote", "consortium"):
        assert name in table
    chart = results[-1]  # Altair's renderer here: HTML that embeds the Vega-Lite spec
    assert "Accuracy per condition" in chart.get("text/html", "")
