"""The push stage: atomic copies, the push decision, manual review and rollback end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from beam_pipeline.core.artifacts import Artifact
from beam_pipeline.stages import push
from tests import pipeline_fixtures as pf
from tests.conftest import run_cli


def test_copy_is_atomic_and_leaves_no_temporary_folder(tmp_path: Path) -> None:
    source = tmp_path / "saved_model"
    (source / "variables").mkdir(parents=True)
    (source / "saved_model.pb").write_bytes(b"pb")
    target = tmp_path / "serving" / "taxi" / "4"
    push.copy_atomically(source, target)
    assert (target / "saved_model.pb").read_bytes() == b"pb"
    assert sorted(p.name for p in target.parent.iterdir()) == ["4"]


def test_a_failed_copy_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        push.copy_atomically(tmp_path / "missing", tmp_path / "serving" / "taxi" / "1")
    assert list((tmp_path / "serving" / "taxi").iterdir()) == []


def _blessing(**props: object) -> Artifact:
    return Artifact("ModelBlessing", "/b", {"model_id": 5, "model_version": 2, **props}, id=9)


def test_push_decision() -> None:
    approved = {"decision": "approved", "user": "ann", "comment": ""}
    rejected = {"decision": "rejected", "user": "bob", "comment": "drifting"}
    assert push.decide(_blessing(blessed=True), 5, None, False) is None
    assert (
        push.decide(_blessing(blessed=False, failed=["auc 0.5 < lower bound 0.7"]), 5, None, False)
        == "not blessed: auc 0.5 < lower bound 0.7"
    )
    assert "is for model artifact 5, not 6" in push.decide(_blessing(blessed=True), 6, None, False)
    waiting = push.decide(_blessing(blessed=True, require_approval=True), 5, None, False)
    assert waiting.startswith("awaiting approval: beam-pipeline approve CONFIG --model 2")
    assert push.decide(_blessing(blessed=True, require_approval=True), 5, approved, False) is None
    assert push.decide(_blessing(blessed=True), 5, rejected, False) == "rejected by bob: drifting"
    assert "rolled back" in push.decide(_blessing(blessed=True), 5, approved, True)


# ---------------------------------------------------------------------------------------------
# End to end, on copies of the shared pipeline


@pytest.mark.slow
def test_approval_path_pending_rejected_then_approved(tmp_path: Path, capsys) -> None:
    config = str(
        pf.copy_pipeline(
            tmp_path,
            evaluate={"require_approval": True},
            push={"serving_dir": str(tmp_path / "srv")},
        )
    )
    # Evaluate v3 again (the config changed): blessed, but it has to wait for a person.
    code, summary, err = pf.cli("run", config, "--only", "evaluate", "--json")
    assert code == 0, err[-3000:]
    assert (summary["blessed"], summary["model_version"]) == (True, 3)

    code, summary, _ = run_cli(["run", config, "--only", "push", "--json"], capsys)
    assert code == 0 and summary["pushed_version"] is None
    pushed = _pushed(summary)
    waiting = f"awaiting approval: beam-pipeline approve {config} --model 3"
    assert pushed["reason"].startswith(waiting)
    code, listed, _ = run_cli(["models", config, "--json"], capsys)
    models = listed["models"]
    assert models[2]["approval"] == "pending"

    code, review, _ = run_cli(
        ["reject", config, "--model", "3", "--comment", "too risky", "--json"], capsys
    )
    assert code == 0 and review["decision"] == "rejected" and review["user"]
    code, summary, _ = run_cli(["run", config, "--only", "push", "--json"], capsys)
    assert summary["stages"]["push"]["status"] == "completed"  # not the cached "awaiting" one
    assert summary["pushed_version"] is None
    assert _pushed(summary)["reason"] == f"rejected by {review['user']}: too risky"
    assert not (tmp_path / "srv" / "taxi" / "3").exists()

    code, review, _ = run_cli(
        ["approve", config, "--model", "3", "--comment", "ok", "--json"], capsys
    )
    assert code == 0 and review["decision"] == "approved"
    code, summary, _ = run_cli(["run", config, "--only", "push", "--json"], capsys)
    assert summary["pushed_version"] == 3
    assert (tmp_path / "srv" / "taxi" / "3" / "saved_model.pb").is_file()
    # Pushing again is a cache hit; a served folder someone removed is pushed again.
    code, again, _ = run_cli(["run", config, "--only", "push", "--json"], capsys)
    assert again["stages"]["push"]["status"] == "cached" and again["pushed_version"] == 3
    shutil.rmtree(tmp_path / "srv" / "taxi" / "3")
    code, again, _ = run_cli(["run", config, "--only", "push", "--json"], capsys)
    assert again["stages"]["push"]["status"] == "completed" and again["pushed_version"] == 3
    assert (tmp_path / "srv" / "taxi" / "3" / "saved_model.pb").is_file()

    code, listed, _ = run_cli(["models", config, "--json"], capsys)
    models = listed["models"]
    v3 = models[2]
    assert (v3["approval"], v3["pushed"], v3["served"]) == ("approved", True, True)
    tree = pf.json_output(["lineage", config, "--model", "3", "--json"], capsys)
    reviews = [d for d in tree["downstream"] if d["kind"] == "review"]
    assert [(r["decision"], r["comment"]) for r in reviews] == [
        ("rejected", "too risky"),
        ("approved", "ok"),
    ]


def _pushed(summary: dict) -> dict:
    uri = Path(summary["stages"]["push"]["outputs"]["pushed_model"]["uri"])
    return json.loads((uri / "push.json").read_text())


@pytest.mark.slow
def test_rollback_serves_an_older_version_and_is_recorded(tmp_path: Path, capsys) -> None:
    config = str(pf.copy_pipeline(tmp_path))
    serving = tmp_path / "serving" / "taxi"
    assert sorted(p.name for p in serving.iterdir()) == ["1", "3"]

    code, record, _ = run_cli(
        ["rollback", config, "--to", "1", "--comment", "bad", "--json"], capsys
    )
    assert code == 0 and record["retired"] == [3]
    assert sorted(p.name for p in serving.iterdir()) == ["1"]  # TF Serving now serves 1
    assert (tmp_path / "serving" / ".retired" / "taxi" / "3" / "saved_model.pb").is_file()
    code, listed, _ = run_cli(["models", config, "--json"], capsys)
    models = listed["models"]
    assert [(m["model_version"], m["served"], m["retired"]) for m in models] == [
        (1, True, False),
        (2, False, False),
        (3, False, True),
    ]

    # A rerun of push does not bring the rolled-back version back.
    code, summary, _ = run_cli(["run", config, "--only", "push", "--json"], capsys)
    assert summary["pushed_version"] is None and "rolled back" in _pushed(summary)["reason"]
    assert sorted(p.name for p in serving.iterdir()) == ["1"]

    # The baseline of the next evaluation is the served model again, not the rolled-back one.
    from beam_pipeline.core import registry
    from beam_pipeline.core.config import load
    from beam_pipeline.core.metadata import Store

    store = Store(load(config))
    assert registry.version_of(store, registry.baseline(store)) == 1

    code, record, _ = run_cli(["rollback", config, "--to", "3", "--json"], capsys)
    assert record["restored"] == [3] and record["retired"] == []
    assert sorted(p.name for p in serving.iterdir()) == ["1", "3"]
    assert registry.version_of(store, registry.baseline(store)) == 3

    code, _, err = run_cli(["rollback", config, "--to", "2"], capsys)
    assert code == 2 and "version 2 was never pushed" in err
