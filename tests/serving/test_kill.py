"""``kill -9`` of a server under traffic: every prediction a client received is in the log
(the batch's records are written before its answers leave; the page cache outlives the
process). About 20 s on 2 cores (one server start)."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import httpx

from tests.serving import _fixtures as sf


def test_kill_9_under_traffic_loses_no_answered_prediction(tmp_path: Path) -> None:
    sf.push(sf.model_dirs()[1], tmp_path / "serving" / "taxi", 1)
    server = sf.start(tmp_path)
    rows = sf.raw_rows(8)
    answered: list[str] = []
    stop = threading.Event()

    def client(n: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            i = 0
            while not stop.is_set():
                rid = f"c{n}-{i}"
                i += 1
                try:
                    r = http.post(
                        "/v1/models/taxi:predict",
                        json={"instances": [rows[i % len(rows)]]},
                        headers={"X-Request-Id": rid},
                    )
                except httpx.HTTPError:  # the server is gone
                    return
                if r.status_code == 200:
                    answered.append(f"{rid}/0")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    try:
        for t in threads:
            t.start()
        sf.wait_for(lambda: len(answered) >= 300, 60, "300 answered requests")
        os.kill(server.proc.pid, signal.SIGKILL)  # mid-traffic: requests are in flight
        server.proc.wait(30)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        sf.terminate(server.proc)
    folder = server.root / "logs" / "predictions" / "taxi"
    logged = set()
    for path in folder.glob("*part-*.jsonl*"):  # open (.inprogress) and closed segments
        for line in path.read_text().splitlines():
            logged.add(json.loads(line)["request_id"])
    missing = [r for r in answered if r not in logged]
    assert not missing, f"{len(missing)} of {len(answered)} answered rows not logged: {missing[:5]}"
    assert len(answered) >= 300
