"""The executor's guarantees, step by step: a failure or a kill at each step leaves nothing
half-published and records nothing that is not there; on a local root and on S3 (moto)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from beam_pipeline.core import executor as executor_mod
from beam_pipeline.core.config import load
from beam_pipeline.core.executor import Executor, RecordFailed
from beam_pipeline.core.metadata import Store
from tests.conftest import write_config
from tests.crash import toy_write

FAILING_STEPS = ("started", "written", "published")


class Boom(RuntimeError):
    pass


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_config(tmp_path, {"source": "unused.csv"})


@pytest.fixture
def fail_at(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``fail_at("toy", step)``: the next execution of kind toy raises `Boom` at ``step``."""

    def arm(kind: str, step: str) -> None:
        def watcher(k: str, s: str) -> None:
            if (k, s) == (kind, step):
                raise Boom(f"injected at {step}")

        monkeypatch.setattr(executor_mod, "_watchers", [watcher])

    return arm


def _states(store: Store, kind: str = "toy") -> list[str]:
    return [pb.Execution.State.Name(e.last_known_state) for e in store.executions(kind)]


def _visible(folder: Path) -> list[str]:
    """Every entry under ``folder``'s parent: what a reader of the destination's folder sees."""
    return sorted(str(p.relative_to(folder.parent)) for p in folder.parent.rglob("*"))


def test_an_execution_publishes_then_records(config_file: Path, tmp_path: Path) -> None:
    store = Store(load(config_file))
    dest = tmp_path / "out" / "job"
    seen: list[Path] = []

    def write(execution: Any) -> dict[str, Any]:
        seen.append(execution.output_dir)
        assert execution.output_dir != dest and not dest.exists(), "staged beside, not in place"
        execution.properties["rows"] = 2
        return toy_write(execution)

    done = Executor(store).execute("toy", write, destination=dest, properties={"input": "x"})
    assert not seen[0].exists(), "the staging folder became the destination"
    [art] = store.artifacts_of_type("Toy")
    assert art.uri == str(dest / "out") and art.id == done.outputs["out"].id
    assert (dest / "out" / "a.txt").read_text() == "a\n"
    [ex] = store.executions("toy")
    assert ex.last_known_state == pb.Execution.COMPLETE
    recorded = {k: v.string_value or v.int_value for k, v in ex.custom_properties.items()}
    assert recorded["input"] == "x" and recorded["rows"] == 2
    assert _visible(dest) == ["job", "job/out", "job/out/a.txt", "job/out/b.txt"]


@pytest.mark.parametrize("step", FAILING_STEPS)
def test_a_failure_at_each_step_leaves_nothing_and_records_failed(
    config_file: Path, tmp_path: Path, fail_at: Any, step: str
) -> None:
    store = Store(load(config_file))
    dest = tmp_path / "out" / "job"
    dest.parent.mkdir()
    fail_at("toy", step)
    with pytest.raises(Boom, match=step):
        Executor(store).execute("toy", toy_write, destination=dest)
    assert _visible(dest) == [], "no staging folder, no destination"
    assert _states(store) == ["FAILED"]
    assert store.artifacts_of_type("Toy") == []


def test_a_refused_record_removes_the_published_output(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(load(config_file))
    dest = tmp_path / "out" / "job"
    dest.parent.mkdir()
    finish = store.finish_execution

    def refuse_complete(exec_id: int, state: int, *args: Any) -> None:
        if state == pb.Execution.COMPLETE:
            assert dest.is_dir(), "the record comes after the publish"
            raise OSError("database is locked")
        finish(exec_id, state, *args)

    monkeypatch.setattr(store, "finish_execution", refuse_complete)
    with pytest.raises(RecordFailed, match="cannot record the outputs of toy: database is locked"):
        Executor(store).execute("toy", toy_write, destination=dest)
    assert _visible(dest) == []
    assert _states(store) == ["FAILED"] and store.artifacts_of_type("Toy") == []


def test_an_empty_result_publishes_nothing(config_file: Path, tmp_path: Path) -> None:
    store = Store(load(config_file))
    dest = tmp_path / "out" / "job"
    dest.parent.mkdir()
    done = Executor(store).execute("toy", lambda e: {}, destination=dest)
    assert done.outputs == {} and _visible(dest) == [] and _states(store) == ["CANCELED"]


def test_a_missing_declared_output_fails(config_file: Path, tmp_path: Path) -> None:
    store = Store(load(config_file))
    dest = tmp_path / "job"
    with pytest.raises(Exception, match=r"did not produce outputs \['model'\]"):
        Executor(store).execute("toy", toy_write, destination=dest, expected=["out", "model"])
    assert not dest.exists() and _states(store) == ["FAILED"]


def test_a_user_folder_receives_the_entries_and_is_kept(config_file: Path, tmp_path: Path) -> None:
    store = Store(load(config_file))
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine\n")
    Executor(store).execute("toy", toy_write, destination=dest)
    assert sorted(p.name for p in dest.iterdir()) == ["notes.txt", "out"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ---------------------------------------------------------------------------------------------
# Killed (SIGKILL: no cleanup runs) at each step, then abandoned by the next execution


@pytest.mark.parametrize("step", [*FAILING_STEPS, "recorded"])
def test_a_kill_at_each_step_is_cleaned_by_the_next_execution(
    config_file: Path, tmp_path: Path, killed_at: Any, step: str
) -> None:
    dest = tmp_path / "out" / "job"
    dest.parent.mkdir()
    proc = killed_at(f"toy:{step}", "toy", str(config_file), str(dest))
    assert proc.returncode == -9, proc.stderr[-2000:]
    store = Store(load(config_file))
    if step == "recorded":  # killed after the commit point: published and recorded alike
        assert _states(store) == ["COMPLETE"] and len(store.artifacts_of_type("Toy")) == 1
        assert (dest / "out" / "a.txt").is_file()
        return
    assert _states(store) == ["RUNNING"] and store.artifacts_of_type("Toy") == []
    assert (step == "published") == dest.exists(), "published, never recorded"
    [dead] = Executor(store).abandon_dead("toy")
    assert _visible(dest) == [], "its staging folder and unrecorded output were removed"
    assert _states(store) == ["CANCELED"]


def test_a_kill_while_moving_into_a_user_folder_keeps_the_folder(
    config_file: Path, tmp_path: Path, killed_at: Any
) -> None:
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine\n")
    proc = killed_at("toy:published", "toy", str(config_file), str(dest))
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (dest / "out").is_dir()
    store = Store(load(config_file))
    Executor(store).abandon_dead("toy")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "pipeline.yaml") == [
        "mine",
        "root",
    ]
    assert [p.name for p in dest.iterdir()] == ["notes.txt"]


# ---------------------------------------------------------------------------------------------
# An object-store destination: the execution's own prefix, the record as the commit point


@pytest.fixture
def s3_config(tmp_path: Path, s3_server: Any) -> tuple[Path, str]:
    from beam_pipeline.io import filesystem

    bucket = s3_server.bucket(f"executor-{tmp_path.name.lower().replace('_', '-')[-40:]}")
    filesystem.configure(s3_server.beam_options, [bucket])
    return write_config(tmp_path, {"source": "unused.csv"}), bucket


def test_on_s3_a_failure_removes_the_prefix_and_a_success_is_recorded(
    s3_server: Any, s3_config: tuple[Path, str], fail_at: Any
) -> None:
    config_file, bucket = s3_config
    store = Store(load(config_file))
    name = bucket.removeprefix("s3://")
    fail_at("toy", "written")
    with pytest.raises(Boom):
        Executor(store).execute("toy", toy_write, destination=f"{bucket}/jobs/1")
    assert s3_server.keys(name) == [] and _states(store) == ["FAILED"]

    executor_mod._watchers.clear()
    done = Executor(store).execute("toy", toy_write, destination=f"{bucket}/jobs/2")
    assert done.outputs["out"].uri == f"{bucket}/jobs/2/out"
    assert s3_server.keys(name) == ["jobs/2/out/a.txt", "jobs/2/out/b.txt"]
    with pytest.raises(Exception, match="must be an empty prefix"):
        Executor(store).execute("toy", toy_write, destination=f"{bucket}/jobs/2")


def test_on_s3_a_killed_execution_is_abandoned(
    s3_server: Any, s3_config: tuple[Path, str], killed_at: Any
) -> None:
    from tests.object_store import child_env

    config_file, bucket = s3_config
    name = bucket.removeprefix("s3://")
    proc = killed_at(
        "toy:written",
        "toy",
        str(config_file),
        f"{bucket}/jobs/1",
        *s3_server.beam_options,
        env=child_env(s3_server),
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert s3_server.keys(name) == ["jobs/1/out/a.txt", "jobs/1/out/b.txt"]
    store = Store(load(config_file))
    assert store.artifacts_of_type("Toy") == [], "written in place but not LIVE: not there"
    Executor(store).abandon_dead("toy")
    assert s3_server.keys(name) == [] and _states(store) == ["CANCELED"]
