"""`runs`: a killed run lists the stages it completed (issue 21, item 8), as the UI's run page
shows them; no internal fields in its JSON."""

from __future__ import annotations

import json
from pathlib import Path

from ml_metadata.proto import metadata_store_pb2 as pb

from beam_pipeline.cli import main
from beam_pipeline.core import liveness
from beam_pipeline.core.config import load
from beam_pipeline.core.metadata import Store
from beam_pipeline.views.runs import load_run
from tests.conftest import write_config


def _killed_in_statistics(tmp_path: Path, source: Path) -> Path:
    """A run whose process died in statistics after ingest completed (as kill -9 leaves it)."""
    cfg = write_config(tmp_path, {"source": str(source)})
    store = Store(load(cfg))
    dead = {
        **liveness.identity(),
        "pid": 1,
        "start_ticks": (liveness.start_ticks(1) or 0) + 12345,  # pid 1 is another process
    }
    run = store.run_context("killed", started=1.0e9, status="running", **dead)
    ingest = store.start_execution("ingest", run, {**dead, "run_id": "killed"})
    store.finish_execution(ingest, pb.Execution.COMPLETE, run, {}, {}, {"seconds": 1.5})
    store.start_execution("statistics", run, {**dead, "run_id": "killed"})
    store.close()
    return cfg


def test_a_killed_run_lists_its_completed_stages(tmp_path: Path, tiny_csv: Path, capsys) -> None:
    cfg = _killed_in_statistics(tmp_path, tiny_csv)
    capsys.readouterr()
    assert main(["runs", str(cfg), "--json"]) == 0
    [run] = json.loads(capsys.readouterr().out)["runs"]
    assert (run["status"], run["stage"]) == ("canceled", "statistics")
    assert run["stages"] == {
        "ingest": {"status": "completed", "seconds": 1.5},
        "statistics": {"status": "canceled", "seconds": None},
    }
    assert run["started"] == "2001-09-09T01:46:40+00:00"
    assert not {"id", "pid", "boot_id", "start_ticks", "heartbeat", "summary"} & set(run)

    assert main(["runs", str(cfg)]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert "canceled in statistics" in line
    assert line.endswith("ingest:completed statistics:canceled")

    # The UI's run page reads the same executions.
    store = Store(load(cfg), create=False)
    page = load_run(store, store.runs()[0])
    assert [s.name for s in page.stages] == list(run["stages"])
