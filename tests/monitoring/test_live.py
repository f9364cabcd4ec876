"""A running server's traffic is visible to ``monitor`` at once (its open log segment is read),
and after ``kill -9`` every answered prediction is still counted, before and after ``doctor``
finalizes the segment the dead server left open. About 60 s on 2 cores (a server start, two
monitor rounds)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from tests import pipeline_fixtures as pf
from tests.monitoring import traffic
from tests.monitoring.test_closed_loop import instances, start_server

ROWS = 600


def _monitor(config: Path, capsys: Any) -> tuple[int, dict[str, Any]]:
    from beam_pipeline.cli import main

    capsys.readouterr()
    code = main(["monitor", str(config), "--since", "1h", "--json"])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_live_traffic_is_seen_and_kill_9_loses_nothing(tmp_path: Path, capsys: Any) -> None:
    import httpx

    # The default rotation (300 s): the traffic stays in the open segment while the server runs.
    config = pf.copy_pipeline(tmp_path)
    from beam_pipeline.core.config import load
    from beam_pipeline.core.metadata import Store
    from beam_pipeline.monitoring.lineage import model_info

    features = model_info(Store(load(config)), 3).raw_features
    frame = traffic.taxi_rows(ROWS, seed=4)
    folder = tmp_path / "root" / "logs" / "predictions" / "taxi"
    proc, url = start_server(config, tmp_path / "server.log")
    try:
        answered = 0
        with httpx.Client(base_url=url, timeout=60) as client:
            for start in range(0, ROWS, 50):
                part = instances(frame.iloc[start : start + 50][features])
                r = client.post("/v1/models/taxi:predict", json={"instances": part})
                assert r.status_code == 200, r.text
                answered += len(r.json()["predictions"])
        time.sleep(1.0)  # the log thread writes (and flushes) what was answered
        assert not list(folder.glob("part-*.jsonl")), "a segment was closed: not a live test"
        code, live = _monitor(config, capsys)
        assert live["traffic"]["predictions"] == answered == ROWS, live.get("message")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)

    [orphan] = folder.glob(".part-*.jsonl.inprogress")
    code, after_kill = _monitor(config, capsys)
    assert after_kill["traffic"]["predictions"] == answered

    from beam_pipeline.cli import main

    assert main(["doctor", str(config)]) == 0
    assert "open log segment" in capsys.readouterr().out
    assert not orphan.exists() and (folder / orphan.name[1 : -len(".inprogress")]).is_file()
    code, finalized = _monitor(config, capsys)
    assert finalized["traffic"]["predictions"] == answered
