"""`beam-pipeline report`: one self-contained, offline HTML file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.pipeline_fixtures import taxi_runs

pytestmark = pytest.mark.slow  # the shared pipeline (built once per session)


def offline(page: str) -> None:
    """Nothing is fetched: no scripts, stylesheets, images or fonts from anywhere."""
    assert not re.search(r"<script|<link|<img|<iframe|@import|url\((?!#)", page)
    assert not re.search(r"(?:src|href)=['\"]?(?:https?:)?//", page)
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page)


def test_report_of_a_model_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shared = taxi_runs()
    out = tmp_path / "out" / "report.html"
    code, _, err = run_cli(
        ["report", str(shared["config"]), "--model", "3", "--output", str(out)], capsys
    )
    assert code == 0, err
    page = out.read_text()
    offline(page)
    assert shared["runs"][2]["run_id"] in page and "model version 3" in page
    for heading in ("Stages and timings", "Statistics", "Anomalies", "Evaluation", "Lineage"):
        assert f"<h2>{heading}" in page
    assert page.count('class="node execution') >= 9  # the run's DAG and the lineage graph
    assert "stage time (seconds)" in page
    assert "Training curves" in page and 'class="series"' in page
    assert "vs baseline v1" in page and 'class="hbar base"' in page  # candidate vs baseline
    assert "Slices by payment_type" in page
    assert page.count('class="chart histogram stats-hist"') >= 10  # train and eval on one chart
    for plot in ("roc", "pr", "calibration"):
        assert f'class="chart xy-chart {plot}"' in page
    assert "table class='bp confusion'" in page
    assert re.search(r'name="ev\d+-m"', page)  # the metric picker
    assert not list(out.parent.glob(".*.tmp"))


def test_report_of_a_run_and_unknown_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shared = taxi_runs()
    run_id = shared["runs"][0]["run_id"]
    out = tmp_path / "run.html"
    code, _, err = run_cli(
        ["report", str(shared["config"]), "--run", run_id, "--output", str(out)], capsys
    )
    assert code == 0, err
    assert f"run {run_id}" in out.read_text()

    code, _, err = run_cli(
        ["report", str(shared["config"]), "--run", "nope", "--output", str(out)], capsys
    )
    assert code == 2 and "no run 'nope'" in err
    code, _, err = run_cli(
        ["report", str(shared["config"]), "--model", "9", "--output", str(out)], capsys
    )
    assert code == 2 and "no model version 9" in err
