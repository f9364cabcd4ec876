"""``beam-pipeline monitor`` on the shared taxi pipeline: a healthy window with bad input mixed in,
an empty window, and the MonitoringReport in ML Metadata and lineage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli


def test_healthy_window_exits_0_and_counts_traffic(healthy: dict, report: dict) -> None:
    body = report["body"]
    assert report["code"] == 0, body["alerts"]
    assert body["alerts"] == [] and body["versions"] == [3]
    t = body["traffic"]
    assert t["predictions"] == 1500 and t["per_version"]["3"]["predictions"] == 1500
    assert t["labelled"] == healthy["labels"]
    assert t["coverage"] == pytest.approx(healthy["labels"] / 1500)


def test_bad_input_is_counted_and_named(healthy: dict, report: dict) -> None:
    body = report["body"]
    bad, fb = body["bad_input"], body["feedback"]
    assert bad["corrupt_lines"] == 2 and bad["corrupt_segments"] == 1
    assert bad["rejected_files"] == [str(healthy["corrupt"])]
    assert bad["outside_window"] == 2  # the corrupt segment's good rows are from 2020
    assert fb["duplicates"] == 2  # the first label, twice more: last wins
    assert fb["wrong_type"] == 1 and fb["unknown_ids"] == 1
    rejected = Path(body["report_dir"]) / "rejected"
    lines = [json.loads(x) for f in rejected.glob("*.jsonl") for x in f.read_text().splitlines()]
    assert sorted(r["line"] for r in lines) == [3, 4]


def test_live_quality_matches_evaluation_time(healthy: dict, report: dict) -> None:
    q = report["body"]["quality"]["3"]["overall"]
    live, evaluated = q["live"], q["evaluated"]
    assert live["example_count"] == healthy["labels"]
    # Same data distribution, same model: the live AUC is the evaluation AUC, within noise.
    assert live["auc"] == pytest.approx(evaluated["auc"], abs=0.04)
    assert live["accuracy"] == pytest.approx(evaluated["accuracy"], abs=0.05)
    slices = report["body"]["quality"]["3"]["slices"]
    assert slices["payment_type=Cash"]["live"]["example_count"] > 0


def test_report_files_artifact_and_lineage(healthy: dict, report: dict, capsys) -> None:
    body = report["body"]
    folder = Path(body["report_dir"])
    text = (folder / "report.txt").read_text()
    assert "status: healthy" in text and "coverage" in text
    page = (folder / "report.html").read_text()
    assert "<svg" in page and "http://" not in page and "https://" not in page
    assert (folder / "FeatureStats.pb").stat().st_size > 0
    from beam_pipeline.cli import main

    assert main(["lineage", str(healthy["config"]), "--model", "3"]) == 0
    printed = capsys.readouterr().out
    assert "monitor (execution" in printed and f"MonitoringReport #{body['artifact']}" in printed


def test_empty_window_exits_0_and_writes_nothing(healthy: dict, report: dict, capsys) -> None:
    before = sorted(p.name for p in (healthy["root"] / "monitor").iterdir())
    code, data, _ = run_cli(
        [
            "monitor",
            str(healthy["config"]),
            "--since",
            "2021-01-01T00:00:00Z",
            "--until",
            "2021-01-02T00:00:00Z",
            "--json",
        ],
        capsys,
    )
    assert code == 0 and data["empty"] is True
    assert "no predictions logged in the window" in data["message"]
    assert sorted(p.name for p in (healthy["root"] / "monitor").iterdir()) == before


def test_unknown_model_version_is_a_config_error(healthy: dict, capsys) -> None:
    code, _, err = run_cli(["monitor", str(healthy["config"]), "--model", "99"], capsys)
    assert code == 2 and "no model version 99" in err
