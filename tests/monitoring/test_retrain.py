"""Retraining pieces without a pipeline run: spans, the lock, the retrain_span record, --watch."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from beam_pipeline.monitoring import retrain


def _labelled(report_dir: Path, parts: list[list[str]]) -> None:
    folder = report_dir / "labelled"
    folder.mkdir(parents=True)
    for i, rows in enumerate(parts):
        (folder / f"rows-{i:05d}-of-{len(parts):05d}.csv").write_text(
            "\n".join(["fare,payment_type,tips", *rows]) + "\n"
        )
        (folder / f"request_ids-{i:05d}.txt").write_text(f"r{i}/0\n")


def test_write_span_numbers_spans_and_keeps_one_header(tmp_path: Path) -> None:
    _labelled(tmp_path / "report", [["1.5,Cash,0", "2.5,Cash,1"], [], ["3.0,Credit Card,2"]])
    spans = tmp_path / "spans"
    (spans / "span-4").mkdir(parents=True)
    assert retrain.next_span(spans) == 5
    folder = tmp_path / "staged"
    rows = retrain.write_span(tmp_path / "report", folder)
    assert rows == 3
    lines = (folder / "data.csv").read_text().splitlines()  # rows sorted: the same bytes always
    assert lines == ["fare,payment_type,tips", "1.5,Cash,0", "2.5,Cash,1", "3.0,Credit Card,2"]
    assert (folder / "request_ids.txt").read_text().split() == ["r0/0", "r1/0", "r2/0"]


def _hold(root: str, ready: Any, release: Any) -> None:
    with retrain.retrain_lock(root):
        ready.set()
        release.wait(30)


def test_the_lock_keeps_a_second_monitor_out(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    other = ctx.Process(target=_hold, args=(str(tmp_path), ready, release))
    other.start()
    try:
        assert ready.wait(30)
        with pytest.raises(retrain.Busy, match=f"pid {other.pid}"):
            with retrain.retrain_lock(tmp_path):
                pass
    finally:
        release.set()
        other.join(30)
    with retrain.retrain_lock(tmp_path):  # free again once the holder is gone
        pass


def test_retrain_records_the_span_and_runs_the_pipeline_on_it(
    healthy: dict,
    report: dict,
) -> None:
    from beam_pipeline.core.config import load
    from beam_pipeline.core.metadata import Store

    config = load(healthy["config"], ["monitor.retrain.min_rows=10", "monitor.retrain.spans=3"])
    body = report["body"]
    seen: list[list[str]] = []

    class Result:
        exit_code = 0

        def to_json(self) -> dict[str, Any]:
            return {
                "run_id": "r",
                "status": "completed",
                "model_version": 4,
                "blessed": True,
                "pushed_version": 4,
            }

    def run_pipeline(overrides: list[str]) -> Result:
        seen.append(overrides)
        with pytest.raises(retrain.Busy):  # the lock is held while the pipeline runs
            with retrain.retrain_lock(config.pipeline.root):
                pass
        return Result()

    out = retrain.retrain(config, body, run_pipeline)
    assert out["retrained"] and out["pushed"] and out["span"] == 1 and not out["span_reused"]
    assert out["rows"] == body["traffic"]["labelled"] and out["model_version"] == 4
    span_csv = Path(out["span_dir"]) / "data.csv"
    header = span_csv.read_text().splitlines()[0].split(",")
    assert header[-1] == "tips" and "fare" in header and "request_id" not in header
    [overrides] = seen
    assert f"ingest.source={Path(out['span_dir']).parent}/span-{{SPAN}}/data.csv" in overrides
    assert "ingest.span=1" in overrides and "ingest.spans=3" in overrides
    store = Store(config)
    [span] = store.artifacts_of_type("DataSpan")
    assert span.uri == out["span_dir"] and span.properties["rows"] == out["rows"]
    producer = store.producer(span.id)
    assert store.execution_inputs(producer)["report"].id == body["artifact"]
    [ack] = store.artifacts_of_type("DriftAcknowledgement")
    assert ack.properties["report_id"] == body["artifact"]
    assert store.execution_outputs(producer)["acknowledged"].id == ack.id

    config = load(healthy["config"], ["monitor.retrain.min_rows=1000000"])
    out = retrain.retrain(config, body, run_pipeline)
    assert not out["retrained"] and "min_rows" in out["reason"] and len(seen) == 1


def test_a_failed_retraining_says_so_and_a_second_attempt_reuses_its_span(
    healthy: dict, report: dict, tmp_path: Path
) -> None:
    """The JSON tells the truth about a stopped run; the next attempt on the same traffic
    writes no second span (the same bytes: the span is reused, its acknowledgement renewed)."""
    from beam_pipeline.core.config import load
    from beam_pipeline.core.metadata import Store

    spans = tmp_path / "spans"
    config = load(
        healthy["config"], ["monitor.retrain.min_rows=10", f"monitor.retrain.span_dir={spans}"]
    )
    body = report["body"]

    class Stopped:
        exit_code = 3

        def to_json(self) -> dict[str, Any]:
            return {"run_id": "r1", "status": "stopped", "error": "validation: fare drift"}

    first = retrain.retrain(config, body, lambda overrides: Stopped())
    assert not first["retrained"] and not first["pushed"] and first["model_version"] is None
    assert first["status"] == "stopped" and "validation: fare drift" in first["reason"]
    second = retrain.retrain(config, body, lambda overrides: Stopped())
    assert second["span"] == first["span"] and second["span_reused"]
    assert second["data_span"] == first["data_span"]
    assert sorted(p.name for p in spans.iterdir()) == [f"span-{first['span']}"]
    store = Store(config)
    mine = [s for s in store.artifacts_of_type("DataSpan") if s.uri.startswith(str(spans))]
    assert len(mine) == 1
    acks = [a for a in store.artifacts_of_type("DriftAcknowledgement") if a.uri == mine[0].uri]
    assert len(acks) == 2 and {a.properties["report_id"] for a in acks} == {body["artifact"]}


def test_watch_runs_rounds_back_to_back(healthy: dict, capsys) -> None:
    from beam_pipeline.cli import main

    code = main(
        [
            "monitor",
            str(healthy["config"]),
            "--watch",
            "--rounds",
            "2",
            "--model",
            "2",
            "--set",
            "monitor.watch_interval=0.1",
            "--json",
        ]
    )
    rounds = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert code == 0 and len(rounds) == 2 and all(r["empty"] for r in rounds)
    assert rounds[1]["window"]["since"] == rounds[0]["window"]["until"]


def test_rounds_needs_watch(healthy: dict, capsys) -> None:
    from tests.conftest import run_cli

    code, _, err = run_cli(["monitor", str(healthy["config"]), "--rounds", "2"], capsys)
    assert code == 2 and "--rounds" in err


def test_a_span_written_but_never_recorded_is_not_written_twice(
    healthy: dict, report: dict, tmp_path: Path, killed_at: Any
) -> None:
    """A monitor killed between publishing span-N and recording it: the next retrain removes
    that folder (the executor abandons the dead execution) and writes span-N once, recorded."""
    from beam_pipeline.core.config import load
    from beam_pipeline.core.metadata import Store

    spans = tmp_path / "spans"
    sets = ["monitor.retrain.min_rows=10", f"monitor.retrain.span_dir={spans}"]
    config = load(healthy["config"], sets)
    args = ["monitor", str(healthy["config"]), "--retrain", "--set", sets[0], "--set", sets[1]]
    child = killed_at(f"{retrain.SPAN_EXECUTION}:published", "cli", *args)
    assert child.returncode == -9, child.stderr[-2000:]
    [left] = list(spans.iterdir())  # published, never recorded
    assert not [s for s in Store(config).artifacts_of_type("DataSpan") if s.uri == str(left)]

    class Done:
        exit_code = 0

        def to_json(self) -> dict[str, Any]:
            return {"run_id": "r", "status": "completed", "model_version": 5}

    out = retrain.retrain(config, report["body"], lambda overrides: Done())
    assert out["span_dir"] == str(left) and not out["span_reused"]
    assert sorted(p.name for p in spans.iterdir()) == [left.name]
    recorded = [s for s in Store(config).artifacts_of_type("DataSpan") if s.uri == str(left)]
    assert len(recorded) == 1
