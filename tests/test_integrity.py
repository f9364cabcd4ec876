"""Trust the metadata: cache identity, crash windows, run states, repairs (issue 10, items 1-4).

The orchestrator is driven with two tiny real stages (files on disk, a real SQLite store): `make`
writes random bytes (like a training: same inputs, different content each time) and `use` copies
what it read (like an evaluation of that model).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from ml_metadata.proto import metadata_store_pb2 as pb

from beam_pipeline.cli import main
from beam_pipeline.core import liveness
from beam_pipeline.core.artifacts import Artifact
from beam_pipeline.core.config import load
from beam_pipeline.core.metadata import Store
from beam_pipeline.core.orchestrator import Orchestrator
from beam_pipeline.core.stage import Stage, StageContext
from tests.conftest import REPO, run_cli, write_config


@dataclass(frozen=True)
class MakeSection:
    size: int = 16


@dataclass(frozen=True)
class UseSection:
    pass


FILL_ENV = "TOY_FILL_DISK"  # a file to grow until its disk is full (the ENOSPC test)


def _make(section: MakeSection, inputs: dict[str, Artifact], ctx: StageContext) -> dict[str, Any]:
    out = ctx.output("model", "Model")
    (out.path / "weights").write_bytes(secrets.token_bytes(section.size))
    if os.environ.get(FILL_ENV):
        _fill(Path(os.environ[FILL_ENV]))
    return {"model": out}


def _fill(file: Path) -> None:
    """Write zeros into ``file`` until the disk refuses (ENOSPC)."""
    import errno

    with open(file, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


def _use(section: UseSection, inputs: dict[str, Artifact], ctx: StageContext) -> dict[str, Any]:
    out = ctx.output("evaluation", "ModelEvaluation", model_id=inputs["model"].id)
    (out.path / "weights").write_bytes((inputs["model"].path / "weights").read_bytes())
    return {"evaluation": out}


TOY = {
    "make": Stage("make", MakeSection, _make, inputs={}, outputs={"model": "Model"}),
    "use": Stage(
        "use",
        UseSection,
        _use,
        inputs={"model": "make.model"},
        outputs={"evaluation": "ModelEvaluation"},
    ),
}
TOY_SECTIONS = {"make": MakeSection, "use": UseSection}


def toy_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(yaml.safe_dump({"pipeline": {"name": "toy", "root": str(tmp_path / "root")}}))
    return cfg


def toy_run(cfg: Path, use_cache: bool = True, **selection: Any) -> Any:
    orch = Orchestrator(load(cfg, sections=TOY_SECTIONS), TOY, use_cache=use_cache)
    try:
        return orch.run(selection.get("from_"), selection.get("to"), selection.get("only"))
    finally:
        orch.store.close()


def test_a_downstream_cache_hit_is_for_the_exact_upstream_artifact(tmp_path) -> None:
    cfg = toy_config(tmp_path)
    toy_run(cfg)
    toy_run(cfg, use_cache=False)  # a second model from the same inputs
    toy_run(cfg, use_cache=False, to="make")  # a third, not evaluated
    last = toy_run(cfg)
    assert last.status == "completed", last.error
    model = last.stages["make"]["outputs"]["model"]
    evaluation = last.stages["use"]["outputs"]["evaluation"]
    weights = Path(model["uri"]) / "weights"
    evaluated = Path(evaluation["uri"]) / "weights"
    assert last.stages["make"]["status"] == "cached"
    assert evaluated.read_bytes() == weights.read_bytes(), "the evaluation is of another model"
    assert last.stages["use"]["status"] == "completed"
    again = toy_run(cfg)  # and now that exact pair is cached
    assert again.stages["use"]["status"] == "cached"
    assert again.stages["use"]["outputs"]["evaluation"]["id"] == evaluation["id"]


def test_deterministic_stages_keep_a_key_fingerprint() -> None:
    from beam_pipeline.core.orchestrator import output_fingerprint

    det = Stage("d", MakeSection, _make, inputs={}, outputs={}, deterministic=True)
    assert output_fingerprint(det, "k", "o", "r1", 1) == output_fingerprint(det, "k", "o", "r2", 2)
    assert output_fingerprint(TOY["make"], "k", "o", "r1", 1) != output_fingerprint(
        TOY["make"], "k", "o", "r2", 2
    )


# ---------------------------------------------------------------------------------------------
# Crash windows and run states (items 3 and 4)


def _ingest_cfg(tmp_path: Path, source: Path) -> Path:
    return write_config(tmp_path, {"source": str(source), "max_rejected_fraction": 0.2})


def test_kill_between_rename_and_record_is_cleaned_and_the_run_reads_canceled(
    tmp_path, tiny_csv, capsys, killed_at
) -> None:
    cfg = _ingest_cfg(tmp_path, tiny_csv)
    proc = killed_at("ingest:published", "cli", "run", str(cfg), "--to", "ingest")
    assert proc.returncode == -9, proc.stderr[-2000:]
    [published] = [p for p in (tmp_path / "root" / "ingest").iterdir() if p.name.isdigit()]
    assert Store(load(cfg)).artifacts_of_type("Examples") == [], "published, never registered"

    [killed] = main_json(["runs", str(cfg), "--json"], capsys)["runs"]
    assert (killed["status"], killed["stage"]) == ("canceled", "ingest")
    assert "canceled in ingest" in main_text(["runs", str(cfg)], capsys)

    code, out, _ = run_cli(["run", str(cfg), "--to", "ingest", "--json"], capsys)
    assert code == 0 and out["stages"]["ingest"]["status"] == "completed"
    assert not published.exists(), "the unregistered folder was removed"
    store = Store(load(cfg))
    states = sorted(e.last_known_state for e in store.executions("ingest"))
    assert states == sorted([pb.Execution.CANCELED, pb.Execution.COMPLETE])
    [first, second] = store.runs()
    assert (first["status"], first["stage"]) == ("canceled", "ingest"), "recorded by the next run"
    assert second["status"] == "completed"


def main_json(args: list[str], capsys: Any) -> Any:
    capsys.readouterr()
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


def main_text(args: list[str], capsys: Any) -> str:
    capsys.readouterr()
    assert main(args) == 0
    return capsys.readouterr().out


def test_a_reused_pid_or_a_stale_lease_is_not_alive() -> None:
    me = liveness.identity()
    assert liveness.alive(me)
    # Container pid 1 (or any reused pid): the pid exists, but it is another process now.
    pid1 = {**me, "pid": 1, "start_ticks": (liveness.start_ticks(1) or 0) + 12345}
    assert not liveness.alive(pid1)
    assert not liveness.alive({**me, "boot_id": "another-boot"})  # rebooted: not the same pid
    # Another host or container: only the lease tells.
    there = {**me, "host": socket.gethostname() + "-elsewhere", "heartbeat": time.time()}
    assert liveness.alive(there)
    assert not liveness.alive({**there, "heartbeat": time.time() - liveness.LEASE_S - 1})


def test_a_dead_pid_1_execution_is_canceled_by_the_next_run(tmp_path) -> None:
    cfg = toy_config(tmp_path)
    config = load(cfg, sections=TOY_SECTIONS)
    store = Store(config)
    run_ctx = store.run_context("old", started=0.0, status="running")
    stale = {
        **liveness.identity(),
        "pid": 1,
        "start_ticks": (liveness.start_ticks(1) or 0) + 12345,
        "run_id": "old",
    }
    exec_id = store.start_execution("make", run_ctx, stale)
    store.run_context("old", **{k: v for k, v in stale.items() if k != "run_id"})
    staged = tmp_path / "root" / "make" / f".{exec_id}.tmp"
    staged.mkdir(parents=True)
    store.close()

    assert toy_run(cfg).status == "completed"
    store = Store(config)
    assert store.execution(exec_id).last_known_state == pb.Execution.CANCELED
    assert not staged.exists()
    old = [r for r in store.runs() if r["run_id"] == "old"][0]
    assert (old["status"], old["stage"]) == ("canceled", "make")


# ---------------------------------------------------------------------------------------------
# A failing metadata write, and the doctor (item 2)


def test_a_full_disk_during_the_metadata_write_leaves_a_consistent_store(tmp_path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        import pytest

        pytest.skip(f"a small tmpfs cannot be mounted here: {mounted.stderr.decode().strip()}")
    try:
        cfg = tmp_path / "toy.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "pipeline": {"name": "toy", "root": str(tmp_path / "root")},
                    "metadata": {"path": str(disk / "metadata.sqlite")},
                }
            )
        )
        script = (
            "import json, sys; from pathlib import Path\n"
            f"sys.path.insert(0, {str(REPO)!r})\n"
            "from tests.test_integrity import toy_run\n"
            f"r = toy_run(Path({str(cfg)!r}))\n"
            "print(json.dumps({'status': r.status, 'error': r.error, 'code': r.exit_code}))\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, FILL_ENV: str(disk / "filler")},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert result["status"] == "failed" and result["code"] == 1, result
        assert "stage 'make' failed: metadata: cannot record the outputs" in result["error"]
        assert "full" in result["error"], result["error"]
        assert not [p for p in (tmp_path / "root" / "make").iterdir() if p.name.isdigit()], (
            "nothing unregistered stays published"
        )
        (disk / "filler").unlink()  # the disk has room again

        again = toy_run(cfg)  # the store is consistent: the next run just works
        assert again.status == "completed", again.error
        store = Store(load(cfg, sections=TOY_SECTIONS))
        [model] = store.artifacts_of_type("Model")
        assert Path(model.uri).is_dir()
        states = sorted(e.last_known_state for e in store.executions("make"))
        assert pb.Execution.RUNNING not in states and pb.Execution.COMPLETE in states
        [failed, done] = store.settle_runs(write=False)
        assert failed["status"] in ("failed", "canceled") and done["status"] == "completed"
        store.close()
        from beam_pipeline.jobs.doctor import examine

        assert examine(load(cfg, sections=TOY_SECTIONS)) == []
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


@pytest.mark.parametrize("free_kb", [0, 48, 512, 1536])
def test_a_disk_full_at_each_fill_level_fails_cleanly_and_recovers(tmp_path, free_kb) -> None:
    """Root and store on a 4 MB tmpfs filled to leave ``free_kb``: 0 and 48 (the store cannot
    be created: at its first table, at its commit), 512 (the first stage's 1 MB output cannot be
    written), 1536 (the first stage completes, the second's output cannot be written). The run
    fails with one error line naming the cause; nothing half-made is LIVE; once the disk has room
    the next run completes and doctor finds nothing (a full disk at the metadata write itself is
    the test above)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"a small tmpfs cannot be mounted here: {mounted.stderr.decode().strip()}")
    try:
        cfg = tmp_path / "toy.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "pipeline": {"name": "toy", "root": str(disk / "root")},
                    "metadata": {"path": str(disk / "metadata.sqlite")},
                    "make": {"size": 1 << 20},
                }
            )
        )
        filler = disk / "filler"
        _fill(filler)
        with open(filler, "r+b") as f:
            f.truncate(max(filler.stat().st_size - free_kb * 1024, 0))
        script = (
            "import json, sys; from pathlib import Path\n"
            f"sys.path.insert(0, {str(REPO)!r})\n"
            "from tests.test_integrity import toy_run\n"
            "try:\n"
            f"    r = toy_run(Path({str(cfg)!r}))\n"
            "    print(json.dumps({'status': r.status, 'error': r.error}))\n"
            "except Exception as exc:\n"
            "    print(json.dumps({'status': 'raised', 'error': str(exc)}))\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert result["status"] in ("failed", "raised"), result
        assert "full" in result["error"] or "No space" in result["error"], result["error"]
        assert "Traceback" not in result["error"]
        filler.unlink()  # the disk has room again

        from beam_pipeline.jobs.doctor import examine

        config = load(cfg, sections=TOY_SECTIONS)
        examine(config)  # repairs what the failure left (an empty store, say)
        assert toy_run(cfg).status == "completed"
        store = Store(config)
        live = [a for a in store.artifacts_of_type("Model") if a.properties.get("_state") == "LIVE"]
        assert len(live) == 1 and Path(live[0].uri).is_dir(), live
        store.close()
        assert examine(config) == []
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_doctor_repairs_dangling_references_dead_executions_and_orphans(tmp_path) -> None:
    import sqlite3

    cfg = toy_config(tmp_path)
    assert toy_run(cfg).status == "completed"
    config = load(cfg, sections=TOY_SECTIONS)
    store = Store(config)
    [evaluation] = store.artifacts_of_type("ModelEvaluation")
    run_ctx = store.run_context("old", started=0.0, status="running")
    dead = {**liveness.identity(), "pid": 1, "start_ticks": (liveness.start_ticks(1) or 0) + 9}
    exec_id = store.start_execution("make", run_ctx, {**dead, "run_id": "old"})
    store.run_context("old", **dead)
    store.close()
    published = tmp_path / "root" / "make" / str(exec_id)  # renamed, never registered
    (published / "model").mkdir(parents=True)
    orphan = tmp_path / "root" / "use" / ".977.tmp"
    orphan.mkdir(parents=True)
    with sqlite3.connect(tmp_path / "root" / "metadata.sqlite") as db:  # a write cut short
        db.execute("DELETE FROM Artifact WHERE id = ?", (evaluation.id,))

    from beam_pipeline.jobs.doctor import examine

    findings = examine(config, dry_run=True)
    assert {f["kind"] for f in findings} == {
        "dangling reference",
        "dead execution",
        "dead run",
        "orphan folder",
    }, findings
    assert published.exists() and orphan.exists(), "--dry-run repairs nothing"

    assert examine(config) and not published.exists() and not orphan.exists()
    store = Store(config)
    assert store.artifacts_of_type("ModelEvaluation") == []  # no "Results missing for ids"
    assert store.execution(exec_id).last_known_state == pb.Execution.CANCELED
    assert [r["status"] for r in store.runs() if r["run_id"] == "old"] == ["canceled"]
    store.close()
    assert examine(config) == [], "a second pass finds nothing"
    assert toy_run(cfg).status == "completed"


def test_doctor_command(tmp_path, tiny_csv, capsys) -> None:
    cfg = write_config(tmp_path, {"source": str(tiny_csv)})
    assert run_cli(["doctor", str(cfg), "--json"], capsys)[:2] == (
        0,
        {"findings": [], "dry_run": False},
    )
    assert "nothing to repair" in main_text(["doctor", str(cfg)], capsys)
    assert not (tmp_path / "root").exists()


def test_doctor_removes_the_staging_folder_of_a_killed_push_only(tmp_path) -> None:
    """kill -9 between a push's copy and its rename leaves ``.V.tmp-PID`` in the serving folder
    (issue 21); doctor removes it, and keeps the staging folder of a push still running."""
    cfg = toy_config(tmp_path)
    assert toy_run(cfg).status == "completed"
    config = load(cfg, sections=TOY_SECTIONS)
    source = tmp_path / "saved_model"
    (source / "variables").mkdir(parents=True)
    (source / "saved_model.pb").write_bytes(b"pb")
    serving = tmp_path / "serving" / "toy"
    script = (
        "import os, signal, sys; from pathlib import Path\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from beam_pipeline.stages import push\n"
        "os.rename = lambda *a: os.kill(os.getpid(), signal.SIGKILL)  # killed before the rename\n"
        f"push.copy_atomically(Path({str(source)!r}), Path({str(serving / '3')!r}))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    assert proc.wait(timeout=120) == -9
    [left] = serving.iterdir()
    assert left.name == f".3.tmp-{proc.pid}" and (left / "saved_model.pb").is_file()

    store = Store(config)  # a push running now, in this process, with its own staging folder
    run_ctx = store.run_context("live", started=time.time(), status="running")
    store.start_execution("push", run_ctx, {**liveness.identity(), "run_id": "live"})
    store.close()
    held = serving / f".4.tmp-{os.getpid()}"
    held.mkdir()

    from beam_pipeline.jobs.doctor import examine

    [finding] = examine(config, dry_run=True)
    assert finding["kind"] == "push leftover" and str(left) in finding["what"], finding
    assert left.exists()
    assert examine(config) == [finding]
    assert not left.exists() and held.exists()
    assert examine(config) == []


def test_doctor_removes_the_labels_file_of_a_killed_label_command_only(tmp_path) -> None:
    """kill -9 between ``label``'s write and its rename leaves ``.labels.json.tmp-PID`` in the
    serving folder; doctor removes it, and keeps the one of a ``label`` still running."""
    cfg = toy_config(tmp_path)
    assert toy_run(cfg).status == "completed"
    config = load(cfg, sections=TOY_SECTIONS)
    serving = tmp_path / "serving" / "toy"
    script = (
        "import os, signal, sys; from pathlib import Path\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from beam_pipeline.serving.models import write_labels\n"
        "os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)  # killed before the rename\n"
        f"write_labels(Path({str(serving)!r}), {{'stable': 3}})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    assert proc.wait(timeout=120) == -9
    [left] = serving.iterdir()
    assert left.name == f".labels.json.tmp-{proc.pid}"
    held = serving / f".labels.json.tmp-{os.getpid()}"  # a label command running now
    held.write_text("{}")

    from beam_pipeline.jobs.doctor import examine

    [finding] = examine(config, dry_run=True)
    assert finding["kind"] == "label leftover" and str(left) in finding["what"], finding
    assert left.exists()
    assert examine(config) == [finding]
    assert not left.exists() and held.exists()
    assert examine(config) == []


def _doctor(cfg: Path, capsys: Any) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["doctor", str(cfg)])
    out, err = capsys.readouterr()
    return code, out, err


def test_doctor_on_a_store_cut_short_at_creation_names_it_and_the_remedy(tmp_path, capsys) -> None:
    """A store whose creation met a full disk is an empty file (ML Metadata creates its tables in
    one transaction); doctor said ``OperationalError: no such table: Attribution`` (issue 21)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(disk)], capture_output=True
    )
    store_file = disk / "metadata.sqlite"
    cfg = write_config(tmp_path, {"source": "unused.csv"}, metadata={"path": str(store_file)})
    try:
        if mounted.returncode == 0:  # the real thing: the disk fills while the store is created
            import pytest

            from beam_pipeline.core.metadata import MetadataError

            with pytest.raises(MetadataError, match="full"):
                Store(load(cfg))
        else:
            store_file.write_bytes(b"")
        assert store_file.stat().st_size == 0
        code, out, err = _doctor(cfg, capsys)
        assert code == 0, err
        assert f"empty store: sqlite store at {store_file} (no tables" in out
        assert "removed; the next run creates it" in out
        assert not store_file.exists()
        assert _doctor(cfg, capsys)[:2] == (0, "nothing to repair\n")
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)

    import sqlite3

    store_file.write_bytes(b"")
    with sqlite3.connect(store_file) as db:  # some of the tables only
        db.execute("CREATE TABLE Artifact (id INTEGER PRIMARY KEY)")
    code, _, err = _doctor(cfg, capsys)
    assert code == 1 and f"the sqlite store at {store_file} is incomplete" in err
    assert "no table Association, Attribution, Context" in err
    assert f"mv {store_file} {store_file}.broken" in err and store_file.exists()

    store_file.write_bytes(b"not a database, but long enough to look like one" * 40)
    code, _, err = _doctor(cfg, capsys)
    assert code == 1 and f"cannot read the sqlite store at {store_file}" in err
    assert f"mv {store_file} {store_file}.broken" in err


def test_concurrent_runs_then_a_plain_rerun_pair_the_exact_artifacts(tmp_path) -> None:
    cfg = toy_config(tmp_path)
    script = (
        "import sys; from pathlib import Path\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from tests.test_integrity import toy_run\n"
        f"r = toy_run(Path({str(cfg)!r}), use_cache=False)\n"
        "sys.exit(0 if r.status == 'completed' else 1)\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    last = toy_run(cfg)
    assert last.status == "completed"
    model = Path(last.stages["make"]["outputs"]["model"]["uri"])
    evaluation = Path(last.stages["use"]["outputs"]["evaluation"]["uri"])
    assert (evaluation / "weights").read_bytes() == (model / "weights").read_bytes()
    store = Store(load(cfg, sections=TOY_SECTIONS))
    fingerprints = [m.fingerprint for m in store.artifacts_of_type("Model")]
    assert len(fingerprints) == len(set(fingerprints)) == 3, "three models, three identities"


def _note(section: UseSection, inputs: dict[str, Artifact], ctx: StageContext) -> dict[str, Any]:
    assert set(inputs) == set(), "an `after` stage's outputs are not handed to the stage"
    out = ctx.output("note", "Note")
    (out.path / "note").write_text("written after make")
    return {"note": out}


def test_an_after_stage_shows_in_lineage_but_not_in_the_cache_key(tmp_path) -> None:
    """transform runs after validate without reading it: lineage still reaches validate's
    anomalies, and a new upstream artifact does not invalidate the ordered stage's cache."""
    stages = {
        "make": TOY["make"],
        "note": Stage("note", UseSection, _note, {}, {"note": "Note"}, after=frozenset({"make"})),
    }
    sections = {"make": MakeSection, "note": UseSection}
    cfg = toy_config(tmp_path)

    def run(use_cache: bool = True) -> Any:
        orch = Orchestrator(load(cfg, sections=sections), stages, use_cache=use_cache)
        try:
            return orch.run(None, None, None)
        finally:
            orch.store.close()

    first = run()
    assert first.stages["note"]["status"] == "completed", first.error
    note_id = first.stages["note"]["outputs"]["note"]["id"]
    model_id = first.stages["make"]["outputs"]["model"]["id"]
    store = Store(load(cfg, sections=sections))
    tree = store.lineage(note_id)["produced_by"]
    assert tree["inputs"]["after:make.model"]["artifact"]["id"] == model_id
    store.close()
    # `make` retrains (different content), `note` is still cached: ordering is not an input.
    second = run(use_cache=False)
    assert second.stages["note"]["status"] == "completed"
    third = run()
    assert third.stages["make"]["status"] == "cached"
    assert third.stages["note"]["status"] == "cached"
