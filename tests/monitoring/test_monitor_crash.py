"""monitor runs through the one executor: a failure at any step publishes and records nothing,
and a monitor killed after publishing is cleaned up by the next one (issue 19, item 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from beam_pipeline.core import executor as executor_mod
from beam_pipeline.core.config import load
from beam_pipeline.core.metadata import Store
from beam_pipeline.monitoring.monitor import EXECUTION, REPORT_TYPE, monitor


class Boom(RuntimeError):
    pass


def _folders(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "monitor").iterdir() if p.name != "cache")


def _reports(store: Store) -> list[int]:
    return sorted(a.id for a in store.artifacts_of_type(REPORT_TYPE))


def _state(store: Store, exec_id: int) -> str:
    return pb.Execution.State.Name(store.execution(exec_id).last_known_state)


@pytest.mark.parametrize("step", ["started", "written", "published"])
def test_a_failure_at_any_step_leaves_no_report(
    healthy: dict, report: dict, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    def watcher(kind: str, at: str) -> None:
        if (kind, at) == (EXECUTION, step):
            raise Boom(step)

    monkeypatch.setattr(executor_mod, "_watchers", [watcher])
    config = load(healthy["config"])
    store = Store(config)
    folders, reports = _folders(healthy["root"]), _reports(store)
    with pytest.raises(Boom):
        monitor(config)
    assert _folders(healthy["root"]) == folders, "nothing staged or published is left"
    assert _reports(store) == reports, "no MonitoringReport recorded"
    newest = max(e.id for e in store.executions(EXECUTION))
    assert _state(store, newest) == "FAILED"


def test_a_monitor_killed_after_publishing_is_cleaned_up_by_the_next(
    healthy: dict, report: dict, killed_at: Any
) -> None:
    config = load(healthy["config"])
    store = Store(config)
    folders, reports = _folders(healthy["root"]), _reports(store)
    child = killed_at(f"{EXECUTION}:published", "cli", "monitor", str(healthy["config"]))
    assert child.returncode == -9, child.stderr[-2000:]
    [dead] = [e for e in store.executions(EXECUTION) if _state(store, e.id) == "RUNNING"]
    assert len(_folders(healthy["root"])) == len(folders) + 1, "published, not recorded"
    assert _reports(store) == reports

    body = monitor(config)  # the next monitor abandons the dead one first
    assert _state(store, dead.id) == "CANCELED"
    assert _folders(healthy["root"]) == sorted([*folders, Path(body["report_dir"]).name])
    assert _reports(store) == sorted([*reports, body["artifact"]])
