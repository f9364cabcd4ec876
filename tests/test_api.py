"""The public Python API: the same orchestrator, cache, store and errors as the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

import beam_pipeline as bp
from beam_pipeline.core.errors import StageFailed
from tests.conftest import run_cli
from tests.pipeline_fixtures import copy_pipeline, json_output, taxi_runs

pytestmark = pytest.mark.slow  # the shared pipeline (built once per session)


def test_a_notebook_run_and_a_cli_run_see_each_other(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = copy_pipeline(tmp_path)
    p = bp.load(config)
    cli_runs = [r["run_id"] for r in p.runs()]
    assert cli_runs == [r["run_id"] for r in taxi_runs()["runs"]]

    run = p.run_stage("schema", progress=False)  # the CLI's cache: nothing recomputed
    assert run.status == "completed" and run.stages["schema"]["status"] == "cached"
    schema = run.output("schema")
    assert isinstance(schema, bp.Artifact) and schema.type == "Schema"
    assert "payment_type" in schema._repr_html_() and "<table" in schema._repr_html_()
    assert "schema" in run._repr_html_() and run.run_id in run._repr_html_()

    listed = json_output(["runs", str(config), "--json"], capsys)["runs"]
    assert [r["run_id"] for r in listed] == [*cli_runs, run.run_id]

    v3 = p.model(3)
    assert "Training curves" in v3._repr_html_()
    assert p.latest("ModelEvaluation").properties["model_version"] == 3
    assert [m["model_version"] for m in p.models()] == [1, 2, 3]


def test_a_failing_stage_raises_what_the_cli_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = copy_pipeline(tmp_path)
    broken = tmp_path / "broken.py"
    # The config check passes (the module defines preprocessing_fn); the stage itself fails.
    broken.write_text("def preprocessing_fn(inputs):\n    raise ValueError('no fare_amount')\n")
    override = f"transform.module={broken}"
    p = bp.load(config, overrides=[override])
    with pytest.raises(StageFailed) as caught:
        p.run_stage("transform", progress=False)
    assert caught.value.stage == "transform" and "no fare_amount" in str(caught.value)

    code, _, err = run_cli(["run", str(config), "--only", "transform", "--set", override], capsys)
    assert code == caught.value.exit_code == 1  # the stage failed
    # The same message; the resume line differs: the CLI's repeats the user's own command line.
    assert f"error: stage 'transform' failed: {caught.value.message}" in err
    assert caught.value.resume and "resume with: " in err
    # The kernel (this process) goes on: the store still answers.
    assert p.runs()[-1]["status"] == "failed"


def test_approve_from_the_api_is_a_cli_review(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = copy_pipeline(tmp_path)
    p = bp.load(config)
    review = p.approve(3, comment="checked the slices")
    assert review["decision"] == "approved"
    models = json_output(["models", str(config), "--json"], capsys)["models"]
    assert models[2]["approval"] == "approved"
    lineage = json_output(["lineage", str(config), "--model", "3", "--json"], capsys)
    reviews = [d for d in lineage["downstream"] if d["kind"] == "review"]
    assert reviews[-1]["comment"] == "checked the slices"


def test_report_from_the_api(tmp_path: Path) -> None:
    p = bp.load(taxi_runs()["config"])
    path = p.report(tmp_path / "r.html", model=1)
    assert path.read_text().startswith("<!doctype html>")
