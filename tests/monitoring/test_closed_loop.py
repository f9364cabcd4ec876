"""The closed loop on taxi, end to end, with the bundled config's ``validation:`` and
``monitor:`` sections as shipped (no retrain overrides): serve → log → label → detect → retrain
→ bless → push, while the server keeps running.

1. ``run`` trains and pushes v1 on the bundled data (small budget);
2. ``serve`` starts on 127.0.0.1; shifted traffic (mostly card payments, fares scaled 1.8×;
   fixed seed) goes through its REST API, and most rows' labels (their ``tips``) through its
   ``:feedback`` endpoint; the server writes both logs;
3. ``monitor`` exits 4 naming the shifted features (payment_type and fare skew);
4. a ``monitor --retrain`` killed inside its training stage (a crash after the span was written);
5. ``monitor --retrain`` again: the span is reused (no duplicate), validate reports the
   acknowledged drift without stopping, v2 is trained on the span, evaluated against v1 on the
   span's eval split, blessed and pushed;
6. the running server answers with v2 within a minute (no restart); ``lineage --model 2`` walks
   back to the DataSpan and the MonitoringReport.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import pipeline_fixtures as pf
from tests.monitoring import traffic
from tests.serving._fixtures import launch, terminate

pytestmark = pytest.mark.slow


def loop_config(base: Path) -> Path:
    shipped = yaml.safe_load((pf.ROOT / "configs" / "taxi.yaml").read_text())
    cfg = pf.taxi_config(
        base,
        evaluate={"slice_thresholds": []},
        serving={"poll_seconds": 0.5, "log_segment_seconds": 1.0, "batch_timeout_ms": 5.0},
    )
    cfg["validation"] = shipped["validation"]  # fail_on schema, skew and drift
    cfg["monitor"] = {**shipped["monitor"], "window": "1h"}
    path = base / "taxi.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def start_server(config: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """``beam-pipeline serve`` on a free 127.0.0.1 port (no gRPC); waits for /readyz."""
    from tests.ml_fixtures import free_port

    port = free_port()
    return launch(config, log, port, 0), f"http://127.0.0.1:{port}"


def instances(frame: Any) -> list[dict[str, Any]]:
    """Rows as a client sends them: JSON numbers and strings, missing values left out."""
    rows = []
    for record in frame.astype(object).where(frame.notna(), None).to_dict("records"):
        rows.append(
            {
                k: (int(v) if isinstance(v, float) and v.is_integer() else v)
                for k, v in record.items()
                if v is not None
            }
        )
    return rows


def replay(url: str, features: list[str], rows: int, labelled: float) -> tuple[int, int]:
    """Shifted traffic through :predict (100 rows a request), then labels through :feedback.
    Returns (rows answered, labels posted)."""
    import httpx
    import numpy as np

    frame = traffic.shifted_rows(rows)
    ids: list[str] = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for start in range(0, rows, 100):
            part = frame.iloc[start : start + 100]
            r = client.post(
                "/v1/models/taxi:predict", json={"instances": instances(part[features])}
            )
            assert r.status_code == 200, r.text
            assert r.headers["X-Model-Version"] == "1"
            rid = r.headers["X-Request-Id"]  # row i of the request is logged as {rid}/{i}
            ids += [f"{rid}/{i}" for i in range(len(part))]
        chosen = np.flatnonzero(np.random.default_rng(3).random(rows) < labelled)
        labels = [
            {"request_id": ids[i], "label": float(frame[traffic.LABEL].iloc[i])} for i in chosen
        ]
        for start in range(0, len(labels), 500):
            r = client.post("/v1/models/taxi:feedback", json=labels[start : start + 500])
            assert r.status_code == 200 and not r.json()["unknown_request_ids"], r.text
    return len(ids), len(labels)


def logs_closed(root: Path) -> bool:
    """Every log segment rotated (serving.log_segment_seconds): none hidden, some written."""
    folder = root / "logs"
    return not list(folder.rglob(".*.inprogress")) and bool(list(folder.rglob("part-*.jsonl")))


def killed_mid_retrain(config: Path, log: Path) -> None:
    """``monitor --retrain`` in a child process, killed (SIGKILL) while its pipeline runs: once
    its DataSpan is recorded and a few seconds into the run."""
    import os
    import signal

    from beam_pipeline.core.config import load
    from beam_pipeline.core.metadata import Store

    proc = subprocess.Popen(
        [sys.executable, "-m", "beam_pipeline.cli", "monitor", str(config), "--retrain"],
        cwd=pf.ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),  # noqa: SIM115 - the file outlives this call with the process
        env={**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    try:
        wait_for(
            lambda: proc.poll() is None and Store(load(config)).artifacts_of_type("DataSpan"),
            300,
            "the span to be recorded",
        )
        time.sleep(3)
        assert proc.poll() is None, log.read_text()[-3000:]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)


def test_closed_loop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t0 = time.time()

    def step(name: str) -> None:  # progress past pytest's capture: the test is long
        print(f"closed loop: {name} at {time.time() - t0:.1f} s", file=sys.__stderr__)

    config = loop_config(tmp_path)
    code, run, err = pf.cli("run", str(config), "--json", timeout=1800)
    step("v1 trained and pushed")
    assert code == 0 and run["pushed_version"] == 1, err[-3000:]

    from beam_pipeline.core.config import load
    from beam_pipeline.core.metadata import Store
    from beam_pipeline.monitoring.lineage import model_info

    info = model_info(Store(load(config)), 1)
    proc, url = start_server(config, tmp_path / "server.log")
    try:
        step("server ready")
        answered, labels = replay(url, info.raw_features, 3000, 0.7)
        assert answered == 3000
        wait_for(lambda: logs_closed(tmp_path / "root"), 60, "the log segments to rotate")
        step("traffic replayed")
        loop(config, tmp_path, url, labels, capsys, step)
    finally:
        terminate(proc)


def loop(config: Path, tmp_path: Path, url: str, labels: int, capsys: Any, step: Any) -> None:
    from beam_pipeline.cli import main

    capsys.readouterr()
    code = main(["monitor", str(config), "--json"])  # in-process: no tf.Transform here
    out, err = capsys.readouterr()
    body = json.loads(out.strip().splitlines()[-1])
    step("monitor")
    assert code == 4, err[-3000:]
    skewed = {a["feature"] for a in body["alerts"] if a["category"] == "skew"}
    assert {"payment_type", "fare"} <= skewed, body["alerts"]
    assert body["traffic"]["labelled"] == labels

    killed_mid_retrain(config, tmp_path / "killed.log")
    step("monitor --retrain killed")
    spans = tmp_path / "root" / "monitor" / "spans"
    assert [p.name for p in spans.iterdir()] == ["span-1"]

    code, body, err = pf.cli("monitor", str(config), "--retrain", "--json", timeout=1800)
    step("monitor --retrain")
    assert code == 4, err[-3000:]  # the alert still stands; the retraining is the answer to it
    r: dict[str, Any] = body["retrain"]
    assert r["span"] == 1 and r["span_reused"] and r["rows"] == labels, r
    assert r["retrained"] and r["pushed"] and r["status"] == "completed", r
    assert r["model_version"] == 2 and r["blessed"] and r["pushed_version"] == 2, r
    assert {"payment_type", "fare"} <= set(r["acknowledged"]["features"]), r["acknowledged"]
    assert [p.name for p in spans.iterdir()] == ["span-1"]  # no duplicate span
    from beam_pipeline.core.config import load
    from beam_pipeline.core.metadata import Store

    assert len(Store(load(config)).artifacts_of_type("DataSpan")) == 1
    assert (tmp_path / "serving" / "taxi" / "2" / "saved_model.pb").is_file()

    import httpx

    def answered_by_v2() -> bool:
        row = instances(traffic.taxi_rows(1)[list(body["features"])])
        r = httpx.post(f"{url}/v1/models/taxi:predict", json={"instances": row}, timeout=30)
        return r.status_code == 200 and r.headers["X-Model-Version"] == "2"

    wait_for(answered_by_v2, 60, "the server to swap to v2")
    step("served by v2")

    capsys.readouterr()
    text = json.dumps(pf.json_output(["lineage", str(config), "--model", "2", "--json"], capsys))
    assert '"type": "DataSpan"' in text and '"type": "MonitoringReport"' in text
    tree = pf.json_output(["lineage", str(config), "--model", "1", "--json"], capsys)
    kinds = [d["kind"] for d in tree["downstream"]]
    assert kinds.count("monitor") == 3 and "evaluate" in kinds  # the killed attempt too
