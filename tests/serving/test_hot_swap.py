"""Hot swap, labels, a failed load, rollback and SIGTERM, each under concurrent load, on one real
server process (one start keeps the suite fast; each phase asserts on its own)."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from beam_pipeline.cli import main
from tests.serving import _fixtures as sf

CLIENTS = 6


class Load:
    """CLIENTS threads posting 1-3 row requests until stopped; every answer is kept."""

    def __init__(self, server: sf.Server, rows: list[dict[str, Any]]) -> None:
        self.server = server
        self.rows = rows
        self.answers: list[tuple[int, str, str, list[float]]] = []  # code, version, id, preds
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(CLIENTS)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def _run(self, i: int) -> None:
        n = 1 + i % 3
        body = json.dumps({"instances": self.rows[:n]})
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                try:
                    r = client.post(f"{self.server.url}/v1/models/taxi:predict", content=body)
                except httpx.TransportError as exc:  # only expected once the server stops
                    with self._lock:
                        self.errors.append(repr(exc))
                    if self.server.proc.poll() is not None or self._stop.is_set():
                        return
                    time.sleep(0.05)
                    continue
                preds = [p[0] for p in r.json()["predictions"]] if r.status_code == 200 else []
                with self._lock:
                    self.answers.append(
                        (
                            r.status_code,
                            r.headers.get("x-model-version", ""),
                            r.headers.get("x-request-id", ""),
                            preds,
                        )
                    )

    def snapshot(self) -> list[tuple[int, str, str, list[float]]]:
        with self._lock:
            return list(self.answers)

    def wait_version(self, version: str, timeout: float) -> None:
        sf.wait_for(
            lambda: any(a[1] == version for a in self.snapshot()[-CLIENTS * 3 :]),
            timeout,
            f"answers from version {version}",
        )


def _status(server: sf.Server) -> dict[str, tuple[str, str]]:
    body = httpx.get(f"{server.url}/v1/models/taxi", timeout=30).json()
    return {
        s["version"]: (s["state"], s["status"]["error_message"])
        for s in body["model_version_status"]
    }


@pytest.mark.slow
def test_hot_swap_labels_failed_load_rollback_and_sigterm_under_load(tmp_path: Path) -> None:
    models = sf.model_dirs()
    sf.push(models[1], tmp_path / "serving" / "taxi", 1)
    server = sf.start(tmp_path)
    rows = sf.raw_rows(3, skip=40)
    try:
        with Load(server, rows) as load:
            sf.wait_for(lambda: len(load.snapshot()) >= CLIENTS * 3, 60, "the first answers")
            assert {a[1] for a in load.snapshot()} == {"1"}

            # 1. push version 3 while requests run: no failure, answers switch to 3
            sf.push(models[3], server.base, 3)
            load.wait_version("3", 120)
            time.sleep(0.5)
            answers = load.snapshot()
            assert [a for a in answers if a[0] != 200] == []
            versions = [a[1] for a in answers]
            switched = versions.index("3")
            assert set(versions[switched + CLIENTS * 2 :]) == {"3"}  # none go back once swapped
            by_version: dict[str, set[float]] = {}
            for _, version, _, preds in answers:
                by_version.setdefault(version, set()).add(preds[0])
            for values in by_version.values():  # row 0, whatever the batch it ran in
                assert max(values) - min(values) <= 1e-3 * max(values)
            one, three = min(by_version["1"]), min(by_version["3"])
            assert abs(one - three) > 1e-2 * max(one, three)  # a different model answers

            # 2. a label, set by the CLI, keeps version 1 loaded beside the latest
            config = str(tmp_path / "taxi.yaml")
            assert main(["label", config, "--label", "stable", "--version", "1"]) == 0
            sf.wait_for(
                lambda: (
                    httpx.post(
                        f"{server.url}/v1/models/taxi/labels/stable:predict",
                        json={"instances": rows[:1]},
                        timeout=30,
                    ).headers.get("x-model-version")
                    == "1"
                ),
                60,
                "label stable -> 1",
            )
            assert main(["label", config, "--label", "stable", "--remove"]) == 0

            # 3. a version that cannot load is reported; version 3 keeps serving
            broken = server.base / ".9.tmp"
            broken.mkdir()
            (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
            os.rename(broken, server.base / "9")
            sf.wait_for(lambda: _status(server).get("9", ("", ""))[0] == "END", 60, "load failure")
            state, error = _status(server)["9"]
            assert "load failed" in error
            assert _status(server)["3"][0] == "AVAILABLE"
            shutil.rmtree(server.base / "9")

            # 4. rollback (what `beam-pipeline rollback --to 1` does): answers go back to 1
            retired = tmp_path / "serving" / ".retired" / "taxi"
            retired.mkdir(parents=True)
            before = len(load.snapshot())
            os.rename(server.base / "3", retired / "3")
            load.wait_version("1", 120)
            time.sleep(0.5)
            after = load.snapshot()[before:]
            assert [a for a in after if a[0] != 200] == []
            assert after[-1][1] == "1"
            sf.wait_for(lambda: _status(server).get("3", ("",))[0] == "END", 30, "3 retired")
            metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
            assert 'serving_load_failures_total{model="taxi"} 1.0' in metrics

            # 5. SIGTERM under load: every answered request has its records in the log
            time.sleep(0.5)
            code = sf.stop(server)
            load.stop()
            assert code == 0, server.stderr()
    finally:
        sf.stop(server)
    answered = [a for a in load.answers if a[0] == 200]
    assert [a for a in load.answers if a[0] != 200] == []
    folder = server.root / "logs" / "predictions" / "taxi"
    assert list(folder.glob(".*")) == []  # every segment closed on shutdown
    logged = set()
    for path in folder.glob("part-*.jsonl"):
        logged |= {json.loads(line)["request_id"] for line in path.read_text().splitlines()}
    expected = {f"{rid}/{i}" for _, _, rid, preds in answered for i in range(len(preds))}
    assert len(answered) > 50
    assert expected <= logged, f"{len(expected - logged)} answered rows missing from the log"
