"""The model registry: versions, `models`, `lineage --model`, reviews."""

from __future__ import annotations

from pathlib import Path

import pytest

from beam_pipeline.core import registry
from beam_pipeline.core.config import load
from beam_pipeline.core.errors import ConfigError
from beam_pipeline.core.metadata import Store
from tests import pipeline_fixtures as pf
from tests.conftest import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def taxi() -> dict:
    return pf.taxi_runs()


def test_versions_are_the_rank_of_the_model_artifacts(taxi: dict) -> None:
    store = Store(load(taxi["config"]))
    models = registry.models(store)
    assert len(models) == 3
    assert [m.id for m in models] == sorted(m.id for m in models)
    for version, run in enumerate(taxi["runs"], start=1):
        model_id = run["stages"]["train"]["outputs"]["model"]["id"]
        assert registry.version_of(store, registry.model_by_version(store, version)) == version
        assert registry.model_by_version(store, version).id == model_id
    with pytest.raises(ConfigError, match="--model: no model version 9; versions are 1..3"):
        registry.model_by_version(store, 9)


def test_models_lists_metrics_blessing_approval_push_and_data(taxi: dict, capsys) -> None:
    code, listed, _ = run_cli(["models", str(taxi["config"]), "--json"], capsys)
    models = listed["models"]
    assert code == 0
    rows = [
        (m["model_version"], m["blessed"], m["baseline_version"], m["pushed"], m["served"])
        for m in models
    ]
    assert rows == [
        (1, True, None, True, False),
        (2, False, 1, False, False),
        (3, True, 1, True, True),
    ]
    fingerprint = taxi["runs"][0]["stages"]["ingest"]["outputs"]["examples"]
    store = Store(load(taxi["config"]))
    [examples] = store.artifacts([fingerprint["id"]])
    assert {m["data_fingerprint"] for m in models} == {examples.properties["data_fingerprint"]}
    assert all(m["approval"] is None for m in models)  # no review was asked for
    assert models[0]["eval_metrics"]["auc"] == pytest.approx(taxi["runs"][0]["metrics"]["auc"])


def test_models_table_is_readable(taxi: dict, capsys) -> None:
    from beam_pipeline.cli import main

    assert main(["models", str(taxi["config"])]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["ver", "created", "blessed", "vs"]
    assert out[3].split()[0] == "3" and "served" in out[3] and "auc=" in out[3]


def test_lineage_of_a_model_version_goes_both_ways(taxi: dict, capsys) -> None:
    from beam_pipeline.cli import main

    tree = pf.json_output(["lineage", str(taxi["config"]), "--model", "1", "--json"], capsys)
    assert tree["model_version"] == 1
    produced = tree["upstream"]["produced_by"]
    assert produced["stage"] == "train" and produced["module_hash"]
    assert set(produced["inputs"]) >= {"transform_graph", "hyperparameters", "schema", "examples"}
    examples = produced["inputs"]["examples"]["artifact"]
    assert examples["data_fingerprint"] and "row_counts" in examples
    graph = produced["inputs"]["transform_graph"]["produced_by"]
    assert graph["stage"] == "transform" and "examples" in graph["inputs"]
    after = {(d["kind"], d["role"]) for d in tree["downstream"]}
    # v1 was evaluated and pushed, and then served as the baseline of runs 2 and 3.
    assert {("evaluate", "model"), ("push", "model"), ("evaluate", "baseline_model")} <= after

    assert main(["lineage", str(taxi["config"]), "--model", "1"]) == 0
    text = capsys.readouterr().out
    for needle in (
        "model version 1 of taxi",
        "what produced it:",
        "← train",
        "TransformGraph",
        "HyperParameters",
        "ExampleAnomalies",
        "Schema",
        "data_fingerprint:",
        "module ",
        "config ",
        "what came after:",
        "evaluate (execution",
        "push (execution",
        "as baseline_model",
        "pushed_version: 1",
    ):
        assert needle in text, needle

    code, _, err = run_cli(["lineage", str(taxi["config"]), "--model", "7"], capsys)
    assert code == 2 and "no model version 7" in err


def test_reviews_are_recorded_and_the_latest_counts(tmp_path: Path) -> None:
    config = load(pf.copy_pipeline(tmp_path))
    store = Store(config)
    first = registry.record_review(store, 2, "approved", "looks fine", user="ann")
    second = registry.record_review(store, 2, "rejected", "changed my mind", user="bob")
    latest = registry.latest_review(store, registry.model_by_version(store, 2).id)
    assert latest["execution"] == second["execution"] > first["execution"]
    assert (latest["decision"], latest["user"], latest["comment"]) == (
        "rejected",
        "bob",
        "changed my mind",
    )
    assert latest["time"] >= first["time"]
    with pytest.raises(ConfigError, match="expected approved or rejected; received 'maybe'"):
        registry.record_review(store, 2, "maybe")
    # A rejected model is never the baseline: v3 rejected, so the baseline falls back to v1.
    registry.record_review(store, 3, "rejected", user="bob")
    assert registry.version_of(store, registry.baseline(store)) == 1
