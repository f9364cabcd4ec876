"""Drift told from noise, through a real server, with the bundled config's ``monitor:`` section
as shipped: a drifted window (fare, trip_miles and trip_seconds scaled 1.8x, 85 % card payments)
alerts naming those features; a window of the same size sampled from the training distribution
raises no alert at all. About 90 s on 2 cores (a server start, two monitor rounds)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import yaml

from tests import pipeline_fixtures as pf
from tests.monitoring import traffic
from tests.monitoring.test_closed_loop import instances, start_server, wait_for
from tests.serving._fixtures import terminate

ROWS = 1500
SCALED = ("fare", "trip_miles", "trip_seconds")


def shipped_monitor() -> dict[str, Any]:
    """configs/taxi.yaml's monitor section, as shipped."""
    return yaml.safe_load((pf.ROOT / "configs" / "taxi.yaml").read_text())["monitor"]


def send(url: str, frame: Any, features: list[str], labelled: float) -> None:
    import httpx
    import numpy as np

    ids: list[str] = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for start in range(0, len(frame), 100):
            part = frame.iloc[start : start + 100]
            r = client.post(
                "/v1/models/taxi:predict", json={"instances": instances(part[features])}
            )
            assert r.status_code == 200, r.text
            rid = r.headers["X-Request-Id"]  # row i of the request is logged as {rid}/{i}
            ids += [f"{rid}/{i}" for i in range(len(part))]
        chosen = np.flatnonzero(np.random.default_rng(3).random(len(ids)) < labelled)
        labels = [
            {"request_id": ids[i], "label": float(frame[traffic.LABEL].iloc[i])} for i in chosen
        ]
        r = client.post("/v1/models/taxi:feedback", json=labels)
        assert r.status_code == 200 and not r.json()["unknown_request_ids"], r.text


def logged(root: Path, rows: int) -> bool:
    """Every answered row is in a closed segment."""
    folder = root / "logs" / "predictions" / "taxi"
    return sum(len(p.read_text().splitlines()) for p in folder.glob("part-*.jsonl")) >= rows


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def monitor(config: Path, since: str, until: str, capsys: Any) -> tuple[int, dict[str, Any]]:
    from beam_pipeline.cli import main

    capsys.readouterr()
    code = main(["monitor", str(config), "--since", since, "--until", until, "--json"])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_drift_alerts_and_a_sample_of_the_training_data_does_not(
    tmp_path: Path, capsys: Any
) -> None:
    config = pf.copy_pipeline(
        tmp_path,
        serving={"poll_seconds": 0.5, "log_segment_seconds": 1.0},
        monitor=shipped_monitor(),
    )
    from beam_pipeline.core.config import load
    from beam_pipeline.core.metadata import Store
    from beam_pipeline.monitoring.lineage import model_info

    features = model_info(Store(load(config)), 3).raw_features
    proc, url = start_server(config, tmp_path / "server.log")
    try:
        t0 = now()
        send(url, traffic.taxi_rows(ROWS, seed=21), features, 0.4)
        wait_for(lambda: logged(tmp_path / "root", ROWS), 60, "the undrifted rows")
        t1 = now()
        send(url, traffic.shifted_rows(ROWS, seed=8, scaled=SCALED), features, 0.4)
        wait_for(lambda: logged(tmp_path / "root", 2 * ROWS), 60, "the drifted rows")
        t2 = now()
    finally:
        terminate(proc)

    code, clean = monitor(config, t0, t1, capsys)
    assert clean["traffic"]["predictions"] == ROWS
    assert code == 0 and clean["alerts"] == [], [a["message"] for a in clean["alerts"]]
    judged = [r for r in clean["skew"] if r["kind"] != "NOT_LOGGED"]
    assert {r["feature"] for r in judged} >= {"payment_type", "company", *SCALED}
    assert all(r["value"] is not None and r["value"] < r["threshold"] for r in judged), judged

    code, drifted = monitor(config, t1, t2, capsys)
    assert code == 4 and drifted["traffic"]["predictions"] == ROWS
    skewed = {a["feature"] for a in drifted["alerts"] if a["category"] == "skew"}
    assert skewed >= {"payment_type", *SCALED}, drifted["alerts"]
    for alert in drifted["alerts"]:  # each names its feature or slice, value, threshold, window
        assert alert["value"] is not None and alert["threshold"] is not None, alert
        assert t1[:16] in alert["message"], alert["message"]
    kinds = set(drifted["alert_kinds"])
    assert {"skew", "drift", "prediction_shift", "quality"} <= kinds, kinds
    print(
        "distances (undrifted | drifted):",
        {
            r["feature"]: (round(r["value"], 4), round(d["value"], 4))
            for r, d in zip(judged, drifted["skew"], strict=False)
            if r["feature"] == d["feature"]
        },
    )
