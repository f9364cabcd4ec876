"""Real engines: `scripts/cluster` starts a Spark standalone cluster and a Flink session cluster on
127.0.0.1, runs a job of each engine on them, and stops them; and SparkRunner/FlinkRunner never let
Beam download a job-server jar.

The engine tests need the engines in the cache (`scripts/cluster spark fetch`, `... flink fetch`:
.ci/run does it before the suite, into CI's own cache folder). Without them they skip, except in CI
(BEAM_PIPELINE_CI=1), where a missing engine is a failure.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

import pytest

from beam_pipeline.core.config import load
from beam_pipeline.core.errors import ConfigError
from beam_pipeline.runners import engines
from beam_pipeline.runners.cluster import listening
from beam_pipeline.runners.options import beam_args
from tests.conftest import REPO, run_cli, write_config

CLUSTER = REPO / "scripts" / "cluster"


# ---- job-server jars: from the cache or named, never downloaded by Beam -----------------------


def _config(tmp_path: Path, tiny_csv: Path) -> Path:
    return write_config(tmp_path, {"source": str(tiny_csv), "max_rejected_fraction": 0.2})


def test_beam_version_matches_the_sdk() -> None:
    import apache_beam

    assert engines.BEAM_VERSION == apache_beam.__version__


@pytest.mark.parametrize("runner", ["SparkRunner", "FlinkRunner"])
def test_engine_runner_without_a_cached_job_server_is_exit_2(
    tmp_path, tiny_csv, capsys, monkeypatch, runner
) -> None:
    monkeypatch.setenv(engines.CACHE_ENV, str(tmp_path / "empty-cache"))
    args = ["run", str(_config(tmp_path, tiny_csv)), "--only", "ingest", "--runner", runner]
    code, _, err = run_cli(args, capsys)
    engine = engines.BY_RUNNER[runner]
    assert code == 2, err
    assert f"{engine.job_server.split(':')[1]}-{engines.BEAM_VERSION}.jar" in err
    assert str(tmp_path / "empty-cache" / "jobservers") in err
    assert f"scripts/cluster {engine.name} fetch" in err


@pytest.mark.parametrize("runner", ["SparkRunner", "FlinkRunner"])
def test_engine_runner_takes_the_cached_jar_and_boots_workers_as_processes(
    tmp_path, tiny_csv, monkeypatch, runner
) -> None:
    cache = tmp_path / "cache"
    engine = engines.BY_RUNNER[runner]
    jar = engine.job_server_jar(cache)
    jar.parent.mkdir(parents=True)
    jar.write_bytes(b"PK")
    monkeypatch.setenv(engines.CACHE_ENV, str(cache))
    cfg = load(_config(tmp_path, tiny_csv))
    args = beam_args(cfg, [f"--runner={runner}"])
    assert f"{engine.jar_flag}={jar}" in args
    assert "--environment_type=PROCESS" in args
    [env] = [a for a in args if a.startswith("--environment_config=")]
    boot = Path(json.loads(env.split("=", 1)[1])["command"])
    assert boot == REPO / "scripts" / "beam-worker" and os.access(boot, os.X_OK)
    # What the user names wins: their own jar or job server, their own environment.
    own = beam_args(cfg, [f"--runner={runner}", f"{engine.jar_flag}=/opt/js.jar"])
    assert [a for a in own if a.startswith(engine.jar_flag)] == [f"{engine.jar_flag}=/opt/js.jar"]
    endpoint = beam_args(cfg, [f"--runner={runner}", "--job_endpoint=host:8099"])
    assert not any(a.startswith(engine.jar_flag) for a in endpoint)
    external = ["--environment_type=EXTERNAL", "--environment_config=localhost:50000"]
    kept = beam_args(cfg, [f"--runner={runner}", *external])
    assert [a for a in kept if a.startswith("--environment")] == external


def test_find_job_server_names_the_jar_and_what_to_do(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"beam-runners-spark-3-job-server-2\.72\.0\.jar"):
        engines.find_job_server("SparkRunner", tmp_path)
    jar = engines.FLINK.job_server_jar(tmp_path)
    jar.parent.mkdir(parents=True)
    jar.write_bytes(b"PK")
    assert engines.find_job_server("FlinkRunner", tmp_path) == jar


# ---- fetch: the engine's files unpacked from the package's deps/ folder ------------------------


def _sdist(path: Path, members: dict[str, bytes]) -> None:
    import io

    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))


def test_fetch_unpacks_deps_from_the_downloaded_archive(tmp_path) -> None:
    engine = engines.Engine("toy", "toy-engine", "1.0", "g:a", "ToyRunner", "--toy_jar")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    _sdist(
        downloads / "toy_engine-1.0.tar.gz",
        {"toy_engine-1.0/setup.py": b"", "toy_engine-1.0/deps/lib/toy.jar": b"PK",
         "toy_engine-1.0/deps/bin/run": b"#!/bin/sh\n"},
    )  # fmt: skip
    home = engines.fetch(engine, tmp_path, log=lambda _: None)
    assert (home / "lib" / "toy.jar").read_bytes() == b"PK"
    assert os.access(home / "bin" / "run", os.X_OK)
    assert not (home / "setup.py").exists() and engines.fetched(engine, tmp_path)


def test_fetch_rejects_an_archive_without_the_engine(tmp_path) -> None:
    engine = engines.Engine("toy", "toy-engine", "1.0", "g:a", "ToyRunner", "--toy_jar")
    (tmp_path / "downloads").mkdir()
    _sdist(tmp_path / "downloads" / "toy_engine-1.0.tar.gz", {"toy_engine-1.0/setup.py": b""})
    with pytest.raises(ConfigError, match="expected the engine's files under deps/"):
        engines.fetch(engine, tmp_path, log=lambda _: None)
    assert not engines.fetched(engine, tmp_path)


# ---- the clusters themselves ----------------------------------------------------------------


def _free_ports(n: int) -> int:
    """A port p such that p .. p+n-1 are free on 127.0.0.1 (Spark's workers take rest+1, +2)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n < 65000 and all(_free(base + i) for i in range(n)):
            return base
    raise RuntimeError("no run of free ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster(*args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLUSTER), *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


def _need(engine: engines.Engine) -> Path:
    cache = engines.cache_dir()
    if not engines.fetched(engine, cache):
        message = f"{engine.name} is not in {cache}: run `scripts/cluster {engine.name} fetch`"
        if os.environ.get("BEAM_PIPELINE_CI") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return cache


def _pids(run_dir: Path) -> list[int]:
    state = json.loads((run_dir / "cluster.json").read_text())
    return [p["pid"] for p in state["procs"]]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("engine", [engines.SPARK, engines.FLINK], ids=["spark", "flink"])
def test_cluster_up_runs_a_job_and_down_leaves_nothing(tmp_path, engine) -> None:
    """`up` (master + 2 workers, each its own folder) → the REST API lists both workers → a job of
    the engine itself finishes and is listed as FINISHED → `down` stops every process and port."""
    _need(engine)
    run_dir = tmp_path / "run"
    rest_port = _free_ports(3)
    port = _free_ports(1)
    flags = ["--run-dir", str(run_dir), "--port", str(port), "--rest-port", str(rest_port)]
    done = _cluster(engine.name, "up", "--workers", "2", *flags)
    try:
        assert done.returncode == 0, done.stderr[-4000:]
        lines = dict(line.split("=", 1) for line in done.stdout.splitlines())
        if engine is engines.SPARK:
            assert lines == {
                "master": f"spark://127.0.0.1:{port}",
                "rest": f"http://127.0.0.1:{rest_port}/json/",
            }
        else:
            assert lines == {
                "master": f"127.0.0.1:{rest_port}",
                "rest": f"http://127.0.0.1:{rest_port}/overview",
            }
        assert len(_pids(run_dir)) == 3
        folders = {p.name for p in run_dir.iterdir() if p.is_dir()}
        assert {"worker-1", "worker-2"} <= folders or {"taskmanager-1", "taskmanager-2"} <= folders
        with urllib.request.urlopen(lines["rest"], timeout=10) as response:
            body = json.loads(response.read())
        if engine is engines.SPARK:
            assert [w["state"] for w in body["workers"]] == ["ALIVE", "ALIVE"]
            assert all(w["host"] == "127.0.0.1" for w in body["workers"])
        else:
            assert body["taskmanagers"] == 2 and body["jobs-finished"] == 0

        status = _cluster(engine.name, "status", *flags)
        assert status.returncode == 0 and (
            "alive_workers=2" in status.stdout or "taskmanagers=2" in status.stdout
        ), status.stdout
        smoke = _cluster(engine.name, "smoke", "--name", "tests-smoke", *flags)
        assert smoke.returncode == 0, smoke.stderr[-4000:]
        finished = json.loads(smoke.stdout.split("finished=", 1)[1])
        assert finished["name"] == "tests-smoke" and finished["state"] == "FINISHED"
        status = _cluster(engine.name, "status", *flags)
        assert "completed_apps=1" in status.stdout or "jobs_finished=1" in status.stdout
        if engine is engines.FLINK:  # the job's output landed in the TaskManagers' own logs
            outs = "".join(p.read_text() for p in run_dir.glob("taskmanager-*/*.out"))
            assert "167167000" in outs and "166666500" in outs
        # A second `up` from the same folder refuses while the first cluster runs.
        again = _cluster(engine.name, "up", *flags)
        assert again.returncode == 1 and "is still running" in again.stderr
    finally:
        pids = _pids(run_dir) if (run_dir / "cluster.json").exists() else []
        down = _cluster(engine.name, "down", *flags)
    assert down.returncode == 0, down.stderr
    assert pids and not any(_alive(pid) for pid in pids)
    assert not any(listening(p) for p in (port, rest_port, rest_port + 1, rest_port + 2))
    assert not (run_dir / "cluster.json").exists()
    assert _cluster(engine.name, "status", *flags).returncode == 1


def test_cluster_cli_rejects_unknown_engines() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "beam_pipeline.runners.cluster", "storm", "up"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 2 and "invalid choice: 'storm'" in done.stderr
