from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ml_metadata.proto import metadata_store_pb2 as pb

from beam_pipeline.core.config import load
from beam_pipeline.core.metadata import Store
from tests.conftest import REPO, run_cli, write_config


def _cfg(tmp_path: Path, source: Path) -> Path:
    return write_config(tmp_path, {"source": str(source), "max_rejected_fraction": 0.2})


def test_second_run_is_cached_and_touch_keeps_the_cache(tmp_path, tiny_csv, capsys) -> None:
    cfg = _cfg(tmp_path, tiny_csv)
    code, first, _ = run_cli(["run", str(cfg), "--only", "ingest", "--json"], capsys)
    assert code == 0 and first["stages"]["ingest"]["status"] == "completed"
    os.utime(tiny_csv, (1, 1))  # new mtime, same bytes
    code, second, _ = run_cli(["run", str(cfg), "--only", "ingest", "--json"], capsys)
    assert code == 0 and second["stages"]["ingest"]["status"] == "cached"
    out1 = first["stages"]["ingest"]["outputs"]["examples"]
    assert second["stages"]["ingest"]["outputs"]["examples"] == out1
    # --no-cache reruns, and a changed row is new data.
    code, third, _ = run_cli(["run", str(cfg), "--only", "ingest", "--json", "--no-cache"], capsys)
    assert third["stages"]["ingest"]["status"] == "completed"
    tiny_csv.write_text(tiny_csv.read_text().replace("oslo", "OSLO", 1))
    code, fourth, _ = run_cli(["run", str(cfg), "--only", "ingest", "--json"], capsys)
    assert fourth["stages"]["ingest"]["status"] == "completed"


def test_cache_follows_content_not_path(tmp_path, tiny_csv, capsys) -> None:
    cfg = _cfg(tmp_path, tiny_csv)
    run_cli(["run", str(cfg), "--only", "ingest", "--json"], capsys)
    moved = tiny_csv.with_name("renamed.csv")
    tiny_csv.rename(moved)
    code, out, _ = run_cli(
        ["run", str(cfg), "--only", "ingest", "--json", f"--set=ingest.source={moved}"], capsys
    )
    assert code == 0 and out["stages"]["ingest"]["status"] == "cached"


def test_killed_stage_leaves_nothing_live_and_resumes(
    tmp_path, tiny_csv, capsys, killed_at
) -> None:
    cfg = _cfg(tmp_path, tiny_csv)
    proc = killed_at("ingest:written", "cli", "run", str(cfg), "--only", "ingest", "--json")
    assert proc.returncode == -9, proc.stderr[-2000:]
    root = tmp_path / "root" / "ingest"
    staged = list(root.glob(".*.tmp"))
    assert staged, "the killed stage had written into its staging folder"
    store = Store(load(cfg))
    assert store.artifacts_of_type("Examples") == []
    [ex] = store.executions("ingest")
    assert ex.last_known_state == pb.Execution.RUNNING

    code, out, _ = run_cli(["run", str(cfg), "--only", "ingest", "--json"], capsys)
    assert code == 0 and out["stages"]["ingest"]["status"] == "completed"
    assert not list(root.glob(".*.tmp")), "the interrupted staging folder was removed"
    states = sorted(e.last_known_state for e in Store(load(cfg)).executions("ingest"))
    assert states == sorted([pb.Execution.CANCELED, pb.Execution.COMPLETE])
    [live] = Store(load(cfg)).artifacts_of_type("Examples")
    assert Path(live.uri).is_dir() and ".tmp" not in live.uri


def test_runs_and_lineage_commands(tmp_path, tiny_csv, capsys) -> None:
    cfg = _cfg(tmp_path, tiny_csv)
    _, out, _ = run_cli(["run", str(cfg), "--only", "ingest", "--json"], capsys)
    art_id = out["stages"]["ingest"]["outputs"]["examples"]["id"]
    code, _, _ = run_cli(["runs", str(cfg)], capsys)
    assert code == 0
    from beam_pipeline.cli import main

    assert main(["runs", str(cfg), "--json"]) == 0
    text = capsys.readouterr().out
    assert out["run_id"] in text and "completed" in text
    assert main(["lineage", str(cfg), "--artifact", str(art_id)]) == 0
    text = capsys.readouterr().out
    assert f"Examples #{art_id}" in text and "← ingest" in text
    assert main(["lineage", str(cfg), "--artifact", "999"]) == 2


def test_concurrent_runs_share_one_sqlite_store(tmp_path, tiny_csv) -> None:
    cfg = _cfg(tmp_path, tiny_csv)
    cmd = [
        sys.executable,
        "-m",
        "beam_pipeline.cli",
        "run",
        str(cfg),
        "--only",
        "ingest",
        "--json",
        "--no-cache",
    ]
    procs = [
        subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-1500:] for _, err in results]
    store = Store(load(cfg))
    assert len(store.runs()) == 3
    states = [e.last_known_state for e in store.executions("ingest")]
    assert states == [pb.Execution.COMPLETE] * 3
    assert len(store.artifacts_of_type("Examples")) == 3
