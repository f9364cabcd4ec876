"""Real `beam-pipeline serve` processes on 127.0.0.1 over models of the shared taxi pipeline.

The models are those `tests.pipeline_fixtures.taxi_runs` trains once per session (run 1 and run
3: two different models); each server gets its own serving folder and pipeline root, so tests
can push (an atomic rename, as `push` does) and roll back (move a version away) freely.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow.csv as pacsv
import yaml

from tests import pipeline_fixtures as pf
from tests.ml_fixtures import free_port

ROOT = Path(__file__).resolve().parents[2]


def model_dirs() -> dict[int, Path]:
    """Two trained taxi SavedModels: {1: run 1's model, 3: run 3's model}."""
    runs = pf.taxi_runs()["runs"]
    return {
        1: pf.stage_output(runs[0], "train", "model") / "saved_model",
        3: pf.stage_output(runs[2], "train", "model") / "saved_model",
    }


def push(model: Path, base: Path, version: int) -> Path:
    """What `push` does: copy beside, then one rename into ``base/version``."""
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".{version}.tmp-test"
    shutil.copytree(model, tmp)
    os.rename(tmp, base / str(version))
    return base / str(version)


def raw_rows(n: int, skip: int = 0) -> list[dict[str, Any]]:
    """Rows of the bundled taxi CSV as JSON values (missing values left out), label dropped.

    pyarrow keeps an int column with gaps as int64 (pandas would make it float)."""
    table = pacsv.read_csv(
        pf.TAXI_CSV, convert_options=pacsv.ConvertOptions(strings_can_be_null=True)
    )
    table = table.slice(skip, n).drop(["tips", "pickup_census_tract"])
    return [{k: v for k, v in row.items() if v is not None} for row in table.to_pylist()]


def csv_strings(rows: list[dict[str, Any]], names: list[str]) -> dict[str, list[str]]:
    """serving_raw inputs for rows, written as a CSV file would hold them."""
    out: dict[str, list[str]] = {k: [] for k in names}
    for row in rows:
        for k in names:
            v = row.get(k)
            out[k].append("" if v is None else str(v))
    return out


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    grpc: str
    root: Path
    base: Path  # the model base path (serving/taxi)
    log: Path

    def stderr(self) -> str:
        return self.log.read_text()[-4000:]


def write_config(tmp: Path, **serving: Any) -> Path:
    config = {
        "pipeline": {"name": "taxi", "root": str(tmp / "root")},
        "ingest": {"source": str(pf.TAXI_CSV)},
        "push": {"serving_dir": str(tmp / "serving")},
        "serving": {"poll_seconds": 0.5, **serving},
    }
    path = tmp / "taxi.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def launch(
    config: Path,
    log: Path,
    port: int,
    grpc_port: int,
    *extra: str,
    timeout: float = 240,
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """``beam-pipeline serve CONFIG`` on 127.0.0.1 (``grpc_port`` 0: no gRPC), its stderr in
    ``log``; returns once /readyz answers 200, or stops it and fails with the log's tail."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "beam_pipeline.cli",
            "serve",
            str(config),
            "--port",
            str(port),
            "--grpc-port",
            str(grpc_port),
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),  # noqa: SIM115 - the file outlives this call with the process
        env={**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {log.read_text()[-4000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    terminate(proc)
    raise AssertionError(f"server not ready in {timeout} s: {log.read_text()[-4000:]}")


def start(
    tmp: Path,
    *extra: str,
    timeout: float = 240,
    env: dict[str, str] | None = None,
    **serving: Any,
) -> Server:
    """Start a server on free ports (``env``: more environment) and wait for /readyz."""
    config = write_config(tmp, **serving)
    port, grpc_port = free_port(), free_port()
    log = tmp / "server.log"
    proc = launch(config, log, port, grpc_port, *extra, timeout=timeout, env=env)
    return Server(
        proc,
        f"http://127.0.0.1:{port}",
        f"127.0.0.1:{grpc_port}",
        tmp / "root",
        tmp / "serving" / "taxi",
        log,
    )


def terminate(proc: subprocess.Popen, timeout: float = 60) -> int:
    """SIGTERM, then wait; kill if it does not stop. Returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def stop(server: Server, timeout: float = 60) -> int:
    return terminate(server.proc, timeout)


@contextmanager
def running(
    tmp: Path, *extra: str, env: dict[str, str] | None = None, **serving: Any
) -> Iterator[Server]:
    server = start(tmp, *extra, env=env, **serving)
    try:
        yield server
    finally:
        stop(server)


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
