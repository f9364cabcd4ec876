"""The notebooks run in a real Jupyter kernel (nbclient + ipykernel) on small budgets, and what
their cells display is checked: each artifact's view, the review, the report, the cache.

The cell tagged ``parameters`` is replaced with a temporary root and the budget below, like
papermill does; everything else runs as committed. The committed notebooks carry no outputs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"

pytestmark = pytest.mark.slow  # each runs a whole pipeline in a kernel


def execute(name: str, parameters: str) -> dict[str, dict[str, Any]]:
    """Run a notebook; each tagged cell's outputs as {"html": ..., "text": ..., "error": ...}."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    [cell] = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    cell.source = parameters
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()
    out: dict[str, dict[str, Any]] = {}
    for c in nb.cells:
        for tag in c.metadata.get("tags", []):
            html, text = [], []
            for o in c.get("outputs", []):
                data = o.get("data", {})
                html.append(data.get("text/html", ""))
                text.append(data.get("text/plain", "") + o.get("text", ""))
            out[tag] = {"html": "".join(html), "text": "".join(text)}
    return out


def test_committed_notebooks_have_no_outputs() -> None:
    for path in NOTEBOOKS.glob("*.ipynb"):
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            assert not cell.get("outputs") and cell.get("execution_count") is None, path


def test_taxi_notebook_walks_the_pipeline(tmp_path: Path) -> None:
    overrides = [
        f"pipeline.root={tmp_path / 'root'}",
        f"push.serving_dir={tmp_path / 'serving'}",
        "tune.enabled=false",
        "train.epochs=2",
        "train.steps_per_epoch=40",
    ]
    cells = execute(
        "taxi_interactive.ipynb",
        f"CONFIG = '../configs/taxi.yaml'\nOVERRIDES = {overrides!r}\nWORKDIR = '{tmp_path}'",
    )
    assert "Sample (train)" in cells["examples"]["html"]
    for cell in ("load", "examples"):  # the stack's start-up chatter stays out of the notebook
        assert not re.search(r"tensorflow|WARNING|crcmod|absl", cells[cell]["text"]), cells[cell]
    assert re.search(r"<td>train</td><td>\d[\d,]+</td>", cells["examples"]["html"])
    assert cells["statistics"]["html"].count('<svg class="chart histogram') >= 10
    assert "company" in cells["schema"]["html"]
    curated = (tmp_path / "schema.pbtxt").read_text()
    assert 'name: "company"' in curated
    assert "company" in cells["curated"]["html"]
    assert "Anomalies" in cells["anomalies"]["html"] and "blocking" in cells["anomalies"]["html"]
    assert "Transformed features" in cells["transform_graph"]["html"]
    assert "Sample (train)" in cells["transformed"]["html"]
    assert "defaults" in cells["hyperparameters"]["html"]
    model = cells["model"]["html"]
    assert "Training curves" in model and "serving_raw" in model
    assert "bp-live" in model and "epoch 2/2" in model  # the live progress display
    assert "(100%)" in model and "running" not in model.split("bp-live")[1][:2000]
    assert "Slices by payment_type" in cells["evaluation"]["html"]
    assert "BLESSED" in cells["blessing"]["html"]
    assert "('approved', 1)" in cells["approve"]["text"]
    assert "Pushed model" in cells["push"]["html"]
    assert "(1, True, 'approved', True)" in cells["models"]["text"]
    assert (tmp_path / "report.html").stat().st_size > 10_000
    statuses = re.findall(r"'(\w+)': '(\w+)'", cells["again"]["text"])
    assert len(statuses) == 9 and {s for _, s in statuses} == {"cached"}, statuses


def test_penguins_notebook_runs_and_shows_a_failure(tmp_path: Path) -> None:
    overrides = [
        f"pipeline.root={tmp_path / 'root'}",
        f"push.serving_dir={tmp_path / 'serving'}",
        "tune.max_trials=2",
        "tune.epochs=2",
        "tune.steps_per_epoch=5",
        "train.epochs=4",
    ]
    cells = execute(
        "penguins_interactive.ipynb",
        f"CONFIG = '../configs/penguins.yaml'\nOVERRIDES = {overrides!r}",
    )
    run = cells["run"]["html"]
    assert "completed" in run and "trial 2/2" in run and "(100%)" in run  # the final frame
    assert "best so far" in cells["run"]["html"]
    # One chart per feature, train and eval together: 5 columns
    assert cells["statistics"]["html"].count('<svg class="chart histogram') >= 5
    assert "no anomalies" in cells["anomalies"]["html"]
    hp = cells["hyperparameters"]["html"]
    assert "search" in hp and "trial 0:" in hp and "trial 1:" in hp
    assert "Training curves" in cells["model"]["html"]
    assert "Slices by culmen_length_mm" in cells["evaluation"]["html"]
    assert "BLESSED" in cells["blessing"]["html"]  # BLESSED or NOT BLESSED, with every check
    assert "accuracy" in cells["blessing"]["html"]
    assert "Pushed model" in cells["push"]["html"]
    failure = cells["failure"]["text"]
    assert "/no/such/model.py" in failure and re.search(r"(ConfigError|StageFailed) 2", failure)
