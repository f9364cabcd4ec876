"""``beam-pipeline monitor`` on the shared taxi pipeline: a healthy window with bad input mixed in,
an empty window, and the MonitoringReport in ML Metadata and lineage."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from beam_pipeline.monitoring import logs
from tests import pipeline_fixtures as pf
from tests.conftest import run_cli
from tests.monitoring import traffic

MONITOR = {
    "window": "2h",
    "min_labelled": 50,
    "quality": {"auc": {"lower": 0.7, "max_drop": 0.1}},
    # Categorical features: TFDV's Jensen-Shannon estimate of numeric ones (fare) is dominated by
    # outliers (the eval split itself is 0.31 away from train), see the README.
    "skew": {"features": {"payment_type": 0.1, "company": 0.3}},
    "drift": {"features": {"payment_type": 0.1, "company": 0.3}},
    "prediction_shift": 0.2,
}


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A copy of the shared pipeline (v3 served) and 1,500 ordinary requests logged 30 minutes
    ago, a fifth of them labelled, plus every kind of bad input."""
    base = tmp_path_factory.mktemp("monitor")
    config = pf.copy_pipeline(base, monitor=MONITOR)
    root = base / "root"
    from beam_pipeline.config import load
    from beam_pipeline.metadata import Store
    from beam_pipeline.monitoring.lineage import model_info

    info = model_info(Store(load(config)), 3)
    frame = traffic.taxi_rows(1500)
    preds = traffic.scored(frame, info.saved_model, info.raw_features)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
    recs = traffic.records(frame, preds, info.raw_features, 3, start)
    pred_dir = logs.log_dir(root / "logs", "predictions", "taxi")
    traffic.write_segments(pred_dir, recs, per_segment=500)
    # A segment a crash cut short: two good rows, a corrupt line and a truncated last line.
    old = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    extra = traffic.records(frame.head(2), preds[:2], info.raw_features, 3, old, request="zz")
    corrupt = pred_dir / "part-20200101T000000000000-77-000001.jsonl"
    corrupt.write_text(
        "".join(json.dumps(r) + "\n" for r in extra) + "{oops\n" + json.dumps(extra[0])[:40]
    )
    (pred_dir / ".part-29991231T000000000000-77-000002.jsonl.inprogress").write_text("{half")
    fb_dir = logs.log_dir(root / "logs", "feedback", "taxi")
    labels = traffic.write_feedback(
        fb_dir / "part-20260101T000000000000-1-000001.jsonl", recs, frame, 0.2
    )
    first = labels[0]
    later = (start + dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    early = (start - dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    odd = [
        {"request_id": first["request_id"], "label": 999.0, "time": early},  # overwritten below
        {"request_id": "nobody/0", "label": 1.0, "time": later},  # unknown request id
        {"request_id": recs[1]["request_id"], "label": "a lot", "time": later},  # wrong type
        {**first, "time": later},  # the same label again, last: wins
    ]
    (fb_dir / "part-20260101T000000000000-1-000002.jsonl").write_text(
        "".join(json.dumps(x) + "\n" for x in odd)
    )
    return {"config": config, "root": root, "labels": len(labels), "info": info, "corrupt": corrupt}


@pytest.fixture(scope="module")
def report(healthy: dict) -> dict:
    import contextlib
    import io

    from beam_pipeline.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["monitor", str(healthy["config"]), "--json"])
    return {"code": code, "body": json.loads(out.getvalue().strip().splitlines()[-1])}


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
