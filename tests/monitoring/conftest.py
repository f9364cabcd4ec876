"""Shared by the monitor tests: a copy of the shared taxi pipeline with logged traffic, and one
monitoring round over it (session-scoped: each is made once)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from beam_pipeline.monitoring import logs
from tests import pipeline_fixtures as pf
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


@pytest.fixture(scope="session")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A copy of the shared pipeline (v3 served) and 1,500 ordinary requests logged 30 minutes
    ago, a fifth of them labelled, plus every kind of bad input."""
    base = tmp_path_factory.mktemp("monitor")
    config = pf.copy_pipeline(base, monitor=MONITOR)
    root = base / "root"
    from beam_pipeline.core.config import load
    from beam_pipeline.core.metadata import Store
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


@pytest.fixture(scope="session")
def report(healthy: dict) -> dict:
    import contextlib
    import io

    from beam_pipeline.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["monitor", str(healthy["config"]), "--json"])
    return {"code": code, "body": json.loads(out.getvalue().strip().splitlines()[-1])}
