"""ML Metadata on real database servers: MariaDB/MySQL and PostgreSQL.

The servers come from the environment (``.ci/run`` starts both and sets these):

    MLMD_MYSQL_HOST / MLMD_MYSQL_PORT        (default 127.0.0.1:13306)
    MLMD_POSTGRES_HOST / MLMD_POSTGRES_PORT  (default 127.0.0.1:15432)
    MLMD_USER (mlmd)  MLMD_PASSWORD  MLMD_DATABASE (mlmd)

A server that cannot be reached skips its tests, except under ``BEAM_PIPELINE_CI=1``, where it
fails them: CI must not pass by skipping. Every test works in a database of its own, named fresh
for the test, which ML Metadata creates itself (the user may create databases) and the fixture drops
afterwards.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from beam_pipeline.core.artifacts import Artifact
from beam_pipeline.core.config import Config, MetadataSection, PipelineSection
from beam_pipeline.core.metadata import MetadataError, Store

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("BEAM_PIPELINE_CI") == "1"
DATA_STAGES = ("ingest", "statistics", "schema", "validate")


@dataclass(frozen=True)
class Server:
    backend: str  # "mysql" | "postgresql", as in the config's metadata.backend
    host: str
    port: int
    user: str
    password: str
    database: str  # the database the user can always connect to (for create/drop)


SERVERS = {
    # backend: (host variable, port variable, default port)
    "mysql": ("MLMD_MYSQL_HOST", "MLMD_MYSQL_PORT", 13306),
    "postgresql": ("MLMD_POSTGRES_HOST", "MLMD_POSTGRES_PORT", 15432),
}


def unavailable(reason: str) -> None:
    """Skip, or fail under CI, where the servers are part of the job."""
    if IN_CI:
        pytest.fail(f"{reason} (BEAM_PIPELINE_CI=1: the CI job must provide this server)")
    pytest.skip(f"{reason}; start the servers with .ci/run or set the MLMD_* variables")


def server_for(backend: str) -> Server:
    host_var, port_var, default_port = SERVERS[backend]
    host = os.environ.get(host_var, "127.0.0.1")
    port = int(os.environ.get(port_var, default_port))
    try:
        with socket.create_connection((host, port), timeout=3):
            pass
    except OSError as exc:
        unavailable(f"{backend} server not reachable at {host}:{port} ({exc})")
    return Server(
        backend=backend,
        host=host,
        port=port,
        user=os.environ.get("MLMD_USER", "mlmd"),
        password=os.environ.get("MLMD_PASSWORD", ""),
        database=os.environ.get("MLMD_DATABASE", "mlmd"),
    )


def drop_database(server: Server, name: str) -> None:
    """Drop a test database through the Python clients of the [mysql] / [postgresql] extras."""
    if server.backend == "mysql":
        import pymysql

        conn = pymysql.connect(
            host=server.host,
            port=server.port,
            user=server.user,
            password=server.password,
            connect_timeout=10,
            read_timeout=60,
            write_timeout=60,
            autocommit=True,
        )
        try:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            conn.close()
    else:
        import pg8000.native

        conn = pg8000.native.Connection(
            user=server.user,
            password=server.password,
            host=server.host,
            port=server.port,
            database=server.database,
            timeout=60,
        )
        try:
            conn.run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            conn.close()


@pytest.fixture(params=sorted(SERVERS))
def server(request: pytest.FixtureRequest) -> Server:
    return server_for(request.param)


@pytest.fixture
def database(server: Server) -> Iterator[str]:
    """A fresh database name; ML Metadata creates the database on first connection."""
    name = f"bp_test_{uuid.uuid4().hex[:12]}"
    yield name
    try:
        drop_database(server, name)
    except Exception as exc:  # a leftover database must not fail the test that used it
        import warnings

        warnings.warn(f"could not drop test database {name}: {exc}", stacklevel=1)


def make_config(server: Server, database: str, root: Path, password_env: str) -> Config:
    return Config(
        pipeline=PipelineSection(name="backend_test", root=str(root)),
        metadata=MetadataSection(
            backend=server.backend,  # type: ignore[arg-type]
            host=server.host,
            port=server.port,
            database=database,
            user=server.user,
            password_env=password_env,
        ),
    )


QUOTED = 'it\'s C:\\data\\"taxi"\\n.csv b64:'


# ---- the store's round trip -----------------------------------------------------------------


def test_round_trip_and_lineage(
    server: Server, database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The password travels through the variable the config names, never through the config.
    monkeypatch.setenv("BP_TEST_DB_PASSWORD", server.password)
    config = make_config(server, database, tmp_path, "BP_TEST_DB_PASSWORD")

    store = Store(config)
    pipeline_ctx = store.pipeline_context()
    run_ctx = store.run_context("run-1", started=time.time(), status="running")
    assert pipeline_ctx.id and run_ctx.id

    ingest_id = store.start_execution(
        "ingest", run_ctx, {"run_id": "run-1", "cache_key": "a" * 64, "config": {"format": "csv"}}
    )
    examples = Artifact(
        "Examples",
        str(tmp_path / "ingest" / str(ingest_id) / "examples"),
        {
            "splits": ["train", "eval"],
            "rows": {"train": 8, "eval": 2},
            "rejected": 0,
            "source": QUOTED,  # a backslash broke PostgreSQL's statement (InternalError)
            "error": {"message": QUOTED},
        },
        fingerprint="f" * 64,
    )
    store.finish_execution(
        ingest_id, pb.Execution.COMPLETE, run_ctx, {}, {"examples": examples}, {"seconds": 1.5}
    )
    assert examples.id is not None

    stats_id = store.start_execution("statistics", run_ctx, {"run_id": "run-1"})
    stats = Artifact(
        "ExampleStatistics",
        str(tmp_path / "statistics" / str(stats_id) / "statistics"),
        {"splits": ["train", "eval"]},
        fingerprint="s" * 64,
    )
    store.finish_execution(
        stats_id,
        pb.Execution.COMPLETE,
        run_ctx,
        {"examples": examples},
        {"statistics": stats},
        {"seconds": 0.5},
    )
    assert stats.id is not None and stats.id != examples.id
    store.close()

    # A second connection (a later process) reads everything back from the server.
    store = Store(config)
    assert [r["run_id"] for r in store.runs()] == ["run-1"]
    assert store.runs()[0]["status"] == "running"

    [ingest] = store.executions("ingest")
    assert ingest.id == ingest_id
    assert ingest.last_known_state == pb.Execution.COMPLETE
    assert store.execution_type_name(ingest) == "ingest"
    assert ingest.custom_properties["cache_key"].string_value == "a" * 64
    assert store.executions("train") == []  # unknown execution type: empty, not an error

    outputs = store.execution_outputs(ingest_id)
    assert set(outputs) == {"examples"}
    back = outputs["examples"]
    assert (back.id, back.uri, back.fingerprint) == (examples.id, examples.uri, "f" * 64)
    assert back.properties["rows"] == {"train": 8, "eval": 2}
    assert back.properties["source"] == QUOTED
    assert back.properties["error"] == {"message": QUOTED}
    assert back.splits == ["train", "eval"]
    assert back.properties["_state"] == "LIVE"

    assert set(store.execution_inputs(stats_id)) == {"examples"}
    assert store.producer(examples.id) == ingest_id
    assert store.consumers(examples.id) == [stats_id]
    assert [a.id for a in store.artifacts_of_type("Examples")] == [examples.id]
    assert {e.id for e in store.run_executions(run_ctx.id)} == {ingest_id, stats_id}

    lineage = store.lineage(stats.id)
    assert lineage["artifact"]["type"] == "ExampleStatistics"
    produced = lineage["produced_by"]
    assert (produced["execution"], produced["stage"], produced["state"]) == (
        stats_id,
        "statistics",
        "COMPLETE",
    )
    upstream = produced["inputs"]["examples"]
    assert upstream["artifact"]["id"] == examples.id
    assert upstream["produced_by"]["stage"] == "ingest"
    assert upstream["produced_by"]["config"] == {"format": "csv"}

    store.mark_deleted(back)
    assert store.artifacts_of_type("Examples") == []
    store.close()


def test_wrong_password_is_a_metadata_error(
    server: Server, database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BP_TEST_DB_PASSWORD", server.password + "-wrong")
    config = make_config(server, database, tmp_path, "BP_TEST_DB_PASSWORD")
    with pytest.raises(MetadataError) as info:
        Store(config)
    message = str(info.value)
    assert server.backend in message and f"{server.host}:{server.port}/{database}" in message
    assert server.password not in message or not server.password


def test_unreachable_server_is_a_metadata_error(tmp_path: Path) -> None:
    """No server needed: a closed port must give a clear error quickly, not hang."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends
    for backend in sorted(SERVERS):
        dead = Server(backend, "127.0.0.1", port, "mlmd", "x", "mlmd")
        started = time.monotonic()
        with pytest.raises(MetadataError, match=f"{backend} store at 127.0.0.1:{port}/mlmd"):
            Store(make_config(dead, "mlmd", tmp_path, "BP_TEST_NO_SUCH_VARIABLE"))
        assert time.monotonic() - started < 60


# ---- end to end: the data half of the taxi pipeline through the CLI ---------------------------


def cli() -> Path:
    for candidate in (
        Path(sys.executable).with_name("beam-pipeline"),
        REPO / ".venv" / "bin" / "beam-pipeline",
    ):
        if candidate.exists():
            return candidate
    pytest.fail("the beam-pipeline console script is not installed: run ./scripts/bootstrap")


def run_cli(args: list[str], env: dict[str, str]) -> dict:
    proc = subprocess.run(
        [str(cli()), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    context = (
        f"exit code {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n"
        f"--- stderr\n{proc.stderr[-6000:]}"
    )
    assert proc.returncode == 0, context
    out = proc.stdout.strip()
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        last = [line for line in out.splitlines() if line.startswith("{")]
        assert last, f"no JSON object on stdout\n{context}"
        return json.loads(last[-1])


@pytest.mark.slow
def test_taxi_data_stages_through_cli(server: Server, database: str, tmp_path: Path) -> None:
    env = {**os.environ, "MLMD_PASSWORD": server.password, "PYTHONUNBUFFERED": "1"}
    args = [
        "run",
        "configs/taxi.yaml",
        "--to",
        "validate",
        "--json",
        "--set",
        f"metadata.backend={server.backend}",
        "--set",
        f"metadata.host={server.host}",
        "--set",
        f"metadata.port={server.port}",
        "--set",
        f"metadata.database={database}",
        "--set",
        f"metadata.user={server.user}",
        "--set",
        f"pipeline.root={tmp_path / 'root'}",
    ]

    first = run_cli(args, env)
    assert first["status"] == "completed", first
    assert {s: first["stages"][s]["status"] for s in DATA_STAGES} == dict.fromkeys(
        DATA_STAGES, "completed"
    ), first["stages"]

    second = run_cli(args, env)
    assert second["status"] == "completed", second
    assert {s: second["stages"][s]["status"] for s in DATA_STAGES} == dict.fromkeys(
        DATA_STAGES, "cached"
    ), second["stages"]
    assert second["run_id"] != first["run_id"]
    # A cached stage reports the artifacts of the run that made them.
    assert second["stages"]["schema"]["outputs"] == first["stages"]["schema"]["outputs"]


def test_doctor_repairs_dangling_references_on_the_server(
    server: Server, database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A metadata write cut short leaves events and attributions to a missing artifact: every
    later query fails ("Results missing for ids") until `doctor` deletes them."""
    from beam_pipeline.jobs.doctor import _connect, examine

    monkeypatch.setenv("BP_TEST_DB_PASSWORD", server.password)
    config = make_config(server, database, tmp_path, "BP_TEST_DB_PASSWORD")
    store = Store(config)
    run_ctx = store.run_context("run-1", started=time.time(), status="completed")
    exec_id = store.start_execution("ingest", run_ctx, {"run_id": "run-1"})
    kept = Artifact("Examples", str(tmp_path / "kept"), {}, fingerprint="k" * 64)
    lost = Artifact("Examples", str(tmp_path / "lost"), {}, fingerprint="l" * 64)
    store.finish_execution(
        exec_id, pb.Execution.COMPLETE, run_ctx, {}, {"a": kept, "b": lost}, {"seconds": 1.0}
    )
    store.close()
    db = _connect(config)
    try:
        db.cursor().execute(f"DELETE FROM Artifact WHERE id = {int(lost.id or 0)}")
        db.commit()
    finally:
        db.close()

    found = examine(config, dry_run=True)
    assert {"Attribution", "Event"} <= {
        f["what"].split()[1] for f in found if f["kind"] == "dangling reference"
    }, found
    examine(config)
    store = Store(config)
    assert [a.id for a in store.artifacts_of_type("Examples")] == [kept.id]
    assert set(store.execution_outputs(exec_id)) == {"a"}
    store.close()
    assert [f for f in examine(config) if f["kind"] == "dangling reference"] == []
