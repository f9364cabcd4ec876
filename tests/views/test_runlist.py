"""The runs list: columns, pipeline order, sort, filter, paging and notebook sessions, on runs
recorded in a real (SQLite) ML Metadata store. Fast: no pipeline runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from beam_pipeline.core.config import load
from beam_pipeline.core.metadata import Store
from beam_pipeline.views import runlist
from tests.conftest import write_config


def summary(status: str, stages: dict[str, str], **extra: object) -> dict[str, object]:
    return {"status": status, "stages": {k: {"status": v} for k, v in stages.items()}, **extra}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    st = Store(load(write_config(tmp_path, {"source": "x.csv"})))
    full = {"push": "completed", "ingest": "cached", "train": "completed", "evaluate": "completed"}
    for i, (auc, command) in enumerate(
        [(0.9, "beam-pipeline run p.yaml"), (0.5, "beam-pipeline run p.yaml --set train.epochs=1")]
    ):
        st.run_context(
            f"cli-{i}",
            started=100.0 + i,
            seconds=10.0,
            status="completed",
            command=command,
            summary=summary("completed", full, metrics={"auc": auc, "example_count": 9.0}),
        )
    gate = summary("stopped", {"ingest": "cached", "validate": "stopped"})
    st.run_context("gate", started=103.0, status="stopped", command="run", summary=gate)
    # A notebook: three stage-runs of one session.
    for i, stage in enumerate(["ingest", "statistics", "train"]):
        st.run_context(
            f"nb-{i}",
            started=200.0 + i,
            seconds=1.0,
            status="completed",
            session="kernel-1",
            command="beam-pipeline run p.yaml --set=tune.enabled=false",
            summary=summary("completed", {stage: "completed", "push": "skipped"}),
        )
    return st


def test_sessions_merge_and_stages_are_in_pipeline_order(store: Store) -> None:
    rows = runlist.collect(store)
    assert [r.run_id for r in rows] == ["cli-0", "cli-1", "gate", "nb-0"]
    nb = rows[-1]
    assert nb.members == ["nb-0", "nb-1", "nb-2"] and nb.seconds == 3.0
    assert list(runlist.ordered_stages(nb.stages)) == ["ingest", "statistics", "train", "push"]
    assert nb.stages["train"] == "completed" and nb.params == {"tune.enabled": "false"}
    assert list(runlist.ordered_stages(rows[0].stages)) == ["ingest", "train", "evaluate", "push"]
    assert rows[1].params == {"train.epochs": "1"} and rows[1].metrics == {"auc": 0.5}


def test_sort_filter_and_page(store: Store) -> None:
    rows = runlist.collect(store)
    by_auc, total = runlist.select(rows, runlist.RunsQuery(sort="metric:auc", desc=False))
    assert [r.run_id for r in by_auc][:2] == ["cli-1", "cli-0"] and total == 4  # no auc: last
    stopped, total = runlist.select(rows, runlist.RunsQuery(status="stopped"))
    assert [r.run_id for r in stopped] == ["gate"] and total == 1
    found, _ = runlist.select(rows, runlist.RunsQuery(q="train.epochs=1"))
    assert [r.run_id for r in found] == ["cli-1"]
    found, _ = runlist.select(rows, runlist.RunsQuery(q="validate:stopped"))
    assert [r.run_id for r in found] == ["gate"]
    page2, total = runlist.select(rows, runlist.RunsQuery(per_page=3, page=2))
    assert [r.run_id for r in page2] == ["cli-0"] and total == 4  # newest first


def test_the_page_html(store: Store) -> None:
    query = runlist.RunsQuery.parse({"sort": "metric:auc", "desc": "1", "per_page": "2"})
    html = runlist.runs_page(store, query, model_href="/models/{version}")
    assert "4 of 4 runs · page 1 of 2" in html and "rel='next'" in html
    header = re.search(r"<tr>(.*?)</tr>", html).group(1)  # type: ignore[union-attr]
    assert "auc ▼" in header and "train.epochs" in header and "example_count" not in header
    assert 'class="status completed"' in html
    assert re.findall(r'class="run-link" href="/runs/([^"]+)"', html) == ["cli-0", "cli-1"]
    nb = runlist.runs_page(store, runlist.RunsQuery(q="kernel-1"))
    assert "notebook session · 3 stage-runs" in nb and nb.count('class="member"') == 3


def test_overrides_of_a_command() -> None:
    assert runlist.overrides("beam-pipeline run c.yaml --set a.b=1 --set=c.d=x=y --json") == {
        "a.b": "1",
        "c.d": "x=y",
    }
    assert runlist.overrides("unbalanced 'quote") == {}


@pytest.mark.slow  # the shared pipeline (built once per session)
def test_a_notebooks_stage_runs_are_one_row(tmp_path: Path) -> None:
    import beam_pipeline as bp
    from tests.pipeline_fixtures import copy_pipeline, taxi_runs

    p = bp.load(copy_pipeline(tmp_path))
    first = p.run_stage("schema", progress=False)  # cached: cheap
    second = p.with_overrides("tune.enabled=false").run_stage("statistics", progress=False)
    rows = runlist.collect(p.store)
    cli = [r["run_id"] for r in taxi_runs()["runs"]]
    assert [r.members for r in rows] == [[c] for c in cli] + [[first.run_id, second.run_id]]
    notebook = rows[-1]
    assert notebook.stages["schema"] == "cached" and notebook.stages["statistics"] == "cached"
    assert notebook.stages["ingest"] == "skipped"
