"""``serve --workers 2``: two processes on the same REST and gRPC ports (SO_REUSEPORT), their
metrics summed, each answered row in its worker's log, a killed worker replaced (its open log
segment finalized), a clean stop; a worker that cannot start stops the server instead of being
restarted forever. About 60 s on 2 cores (five server processes load TensorFlow)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from beam_pipeline.cli import _without_flag, main
from beam_pipeline.core.errors import ConfigError
from beam_pipeline.serving.section import ServingSection
from tests.ml_fixtures import free_port
from tests.serving import _fixtures as sf


def test_two_workers_share_the_ports_sum_their_metrics_and_stop_cleanly(tmp_path: Path) -> None:
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    sf.push(sf.model_dirs()[1], tmp_path / "serving" / "taxi", 1)
    server = sf.start(tmp_path, "--workers", "2")
    answered: list[str] = []
    try:
        sf.wait_for(
            lambda: server.log.read_text().count("serve: REST on") == 2, 180, "both workers"
        )
        rows = sf.raw_rows(2)

        def predict(ids: range) -> None:
            for i in ids:  # a connection each: the kernel spreads them over the workers
                with httpx.Client(base_url=server.url, timeout=30) as http:
                    r = http.post(
                        "/v1/models/taxi:predict",
                        json={"instances": rows},
                        headers={"X-Request-Id": f"r{i}"},
                    )
                assert r.status_code == 200, r.text
                assert len(r.json()["predictions"]) == 2
                answered.extend([f"r{i}/0", f"r{i}/1"])

        predict(range(30))
        for _ in range(6):  # gRPC on the shared port too, a channel (a connection) each
            with grpc.insecure_channel(server.grpc) as channel:
                stub = model_service_pb2_grpc.ModelServiceStub(channel)
                status = stub.GetModelStatus(
                    get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "taxi"}),
                    timeout=30,
                )
                assert [s.version for s in status.model_version_status] == [1]
        pids = re.search(r"serve: 2 workers \(pids (\d+), (\d+)\)", server.log.read_text())
        assert pids is not None, server.stderr()
        os.kill(int(pids.group(1)), signal.SIGKILL)  # its open segment is left behind
        sf.wait_for(
            lambda: server.log.read_text().count("serve: REST on") == 3, 180, "a new worker"
        )
        assert f"worker {pids.group(1)} exited with -9; starting another" in server.log.read_text()
        predict(range(30, 40))
        metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
        total = re.search(
            r'^serving_requests_total\{api="rest",code="200",method="predict",model="taxi",'
            r'version="1"\} (\S+)$',
            metrics,
            re.MULTILINE,
        )
        assert total is not None and float(total.group(1)) == 40.0, metrics
        assert re.search(
            r'^serving_loaded_versions\{model="taxi",version="1"\} 1\.0$', metrics, re.M
        )
        assert "process_cpu_seconds_total" in metrics
    finally:
        code = sf.stop(server)
    assert code == 0, server.stderr()
    folder = server.root / "logs" / "predictions" / "taxi"
    assert not list(folder.glob(".part-*")), "a worker left an open segment"
    segments = list(folder.glob("part-*.jsonl"))
    assert len({p.name.split("-")[2] for p in segments}) >= 2, segments  # one pid each
    logged = [json.loads(x)["request_id"] for p in segments for x in p.read_text().splitlines()]
    assert sorted(logged) == sorted(answered)


def test_a_worker_that_cannot_start_stops_the_server(tmp_path: Path) -> None:
    sf.push(sf.model_dirs()[1], tmp_path / "serving" / "taxi", 1)
    config = sf.write_config(tmp_path)
    with socket.socket() as taken:  # a listener without SO_REUSEPORT: no worker can join it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "beam_pipeline.cli", "serve", str(config)]
            + ["--port", str(port), "--grpc-port", str(free_port()), "--workers", "2"],
            cwd=sf.ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode != 0
    assert "while starting; stopping" in done.stderr, done.stderr[-3000:]


def test_workers_setting_and_flag() -> None:
    assert ServingSection().workers == 1
    with pytest.raises(ConfigError, match="serving.workers"):
        ServingSection(workers=0)
    argv = ["serve", "c.yaml", "--workers", "2", "--port", "1", "--workers=3"]
    assert _without_flag(argv, "--workers") == ["serve", "c.yaml", "--port", "1"]


def test_several_workers_need_a_fixed_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = sf.write_config(tmp_path)
    assert main(["serve", str(config), "--port", "0", "--workers", "2"]) == 2
    assert "several workers share a fixed REST port" in capsys.readouterr().err
    assert main(["serve", str(config), "--workers", "0"]) == 2
    assert "--workers: expected >= 1" in capsys.readouterr().err


def test_workers_get_sigterm_when_the_supervisor_is_killed() -> None:
    """``PR_SET_PDEATHSIG``: a supervisor killed with SIGKILL leaves no worker holding the ports
    (the mechanism alone, on a child that sleeps)."""
    parent = subprocess.Popen(
        [sys.executable, "-c"]
        + [
            "import subprocess, sys, time\n"
            "from beam_pipeline.serving.workers import _die_with_parent\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'],"
            " preexec_fn=_die_with_parent)\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(120)\n"
        ],
        cwd=sf.ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait(30)
    sf.wait_for(lambda: not _alive(child), 30, "the worker to stop")


def _alive(pid: int) -> bool:
    """``pid`` runs (a zombie, reaped by init once its parent is gone, does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_restart_delay_backs_off_while_workers_keep_dying() -> None:
    from beam_pipeline.serving.workers import MAX_DELAY, restart_delay

    assert restart_delay([5.0]) == 0  # a lone death: at once
    assert restart_delay([5.0, 100.0]) == 0  # the one before was long ago
    assert [restart_delay([10.0 * i for i in range(n)]) for n in range(2, 6)] == [1, 2, 4, 8]
    assert restart_delay([1.0 * i for i in range(20)]) == MAX_DELAY
    assert restart_delay([0.0, 1.0, 2.0, 200.0, 201.0]) == 1  # a new run of deaths


def test_a_crash_looping_worker_is_restarted_with_a_back_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Workers that say they are ready and die 0.3 s later, for 4.5 s: without the back-off the
    supervisor would start one every ~0.5 s."""
    import threading

    from beam_pipeline.serving.workers import READY_FD_ENV, supervise

    fake = (
        "import os, time; "
        f"os.write(int(os.environ['{READY_FD_ENV}']), f'{{os.getpid()}}\\n'.encode()); "
        "time.sleep(0.3); raise SystemExit(3)"
    )
    timer = threading.Timer(4.5, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        with caplog.at_level("INFO", logger="beam_pipeline.serving.workers"):
            code = supervise([], 1, command=[sys.executable, "-c", fake])
    finally:
        timer.cancel()
    deaths = caplog.text.count("exited with 3")
    assert 2 <= deaths <= 4, caplog.text
    assert "starting another in 1 s" in caplog.text
    assert code in (0, 3)
