from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from tensorflow_metadata.proto.v0 import anomalies_pb2

from beam_pipeline.core.artifacts import Artifact
from beam_pipeline.core.config import Config, MetadataSection, PipelineSection, load
from beam_pipeline.core.errors import ConfigError, ValidationFailed
from beam_pipeline.core.orchestrator import Orchestrator
from beam_pipeline.core.stage import Stage, StageContext
from beam_pipeline.stages import schema as schema_stage
from beam_pipeline.stages import statistics, validate
from beam_pipeline.stages.schema import SchemaSection
from beam_pipeline.stages.statistics import StatisticsSection
from beam_pipeline.stages.validate import ComparatorSection, ValidationSection, gate
from tests.stages._fixtures import make_config, make_ctx, penguin_rows, write_examples

CURATED = """
feature { name: "species" type: BYTES domain: "species" }
feature { name: "island" type: BYTES }
feature { name: "count" type: INT }
feature { name: "weight" type: FLOAT }
string_domain { name: "species" value: "Adelie" value: "Gentoo" }
"""


def _stats(
    tmp: Path, train: list[dict[str, Any]], eval_: list[dict[str, Any]], fp: str
) -> Artifact:
    examples = write_examples(tmp / "examples", {"train": train, "eval": eval_})
    ctx = make_ctx(statistics.STAGE, make_config(tmp, {}), tmp / "out")
    art = statistics.run(StatisticsSection(html=False), {"examples": examples}, ctx)["statistics"]
    art.fingerprint, art.id = fp, 7
    return art


@pytest.fixture(scope="module")
def curated(tmp_path_factory) -> Artifact:
    tmp = tmp_path_factory.mktemp("schema")
    file = tmp / "schema.pbtxt"
    file.write_text(CURATED)
    ctx = make_ctx(schema_stage.STAGE, make_config(tmp, {}), tmp / "out")
    return schema_stage.run(SchemaSection(path=str(file)), {}, ctx)["schema"]


@pytest.fixture(scope="module")
def unseen_species(tmp_path_factory) -> Artifact:
    """Eval holds a species the curated schema does not know; its weights are shifted too."""
    eval_ = penguin_rows(40, shift=0.6, species="Chinstrap")
    return _stats(tmp_path_factory.mktemp("s1"), penguin_rows(40), eval_, "fp-unseen")


def _validate(tmp: Path, section: ValidationSection, inputs: dict[str, Artifact], **prepared: Any):
    ctx = make_ctx(validate.STAGE, make_config(tmp, {"validation": section}), tmp / "out")
    ctx.prepared = prepared
    return validate.run(section, inputs, ctx)["anomalies"]


def test_domain_violation_blocks_and_gate_names_the_feature(tmp_path, curated, unseen_species):
    section = ValidationSection()
    out = _validate(tmp_path, section, {"statistics": unseen_species, "schema": curated})

    [row] = [r for r in out.properties["blocking"] if r["split"] == "eval"]
    assert row["feature"] == "species"
    assert row["kind"] == "ENUM_TYPE_UNEXPECTED_STRING_VALUES"
    assert "Chinstrap" in row["description"]
    assert out.properties["passed"] is False
    assert out.properties["counts"]["schema"] == 1
    assert out.properties["statistics_fingerprint"] == "fp-unseen"
    assert out.properties["statistics_id"] == 7
    with pytest.raises(ValidationFailed, match="eval: species: ENUM_TYPE_UNEXPECTED_STRING") as e:
        gate(section, {"anomalies": out})
    assert e.value.exit_code == 3

    diff = anomalies_pb2.Anomalies.FromString(
        (out.split_dir("eval") / "SchemaDiff.pb").read_bytes()
    )
    assert list(diff.anomaly_info) == ["species"]
    train = anomalies_pb2.Anomalies.FromString(
        (out.split_dir("train") / "SchemaDiff.pb").read_bytes()
    )
    assert list(train.anomaly_info) == []
    rows = json.loads((out.path / "anomalies.json").read_text())
    assert rows[0] | {"description": ""} == {
        "split": "eval", "feature": "species", "kind": "ENUM_TYPE_UNEXPECTED_STRING_VALUES",
        "category": "schema", "description": "", "blocking": True,
    }  # fmt: skip
    assert (out.path / "anomalies.txt").read_text().startswith("BLOCKS  eval: species: ENUM_TYPE")


def test_fail_on_other_kinds_only_reports(tmp_path, curated, unseen_species):
    section = ValidationSection(fail_on=["FLOAT_TYPE_HAS_NAN", "drift"])
    out = _validate(tmp_path, section, {"statistics": unseen_species, "schema": curated})
    assert out.properties["passed"] is True
    assert out.properties["blocking"] == []
    assert out.properties["counts"]["schema"] == 1
    gate(section, {"anomalies": out})  # does not raise
    assert (out.path / "anomalies.txt").read_text().startswith("warns   eval: species")


def test_skew_over_threshold(tmp_path, curated, unseen_species):
    section = ValidationSection(
        fail_on=["skew"], skew=ComparatorSection(threshold=0.2, features={"island": 0.9})
    )
    out = _validate(tmp_path, section, {"statistics": unseen_species, "schema": curated})
    skew = {(r["feature"], r["kind"]) for r in out.properties["blocking"]}
    assert skew == {
        ("species", "COMPARATOR_L_INFTY_HIGH"),  # categorical: L-infinity
        ("weight", "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH"),  # numeric: Jensen-Shannon
    }  # island has the same distribution; count too
    assert {r["split"] for r in out.properties["blocking"]} == {"train/eval"}
    assert out.properties["counts"] == {"schema": 1, "skew": 2, "drift": 0, "blocking": 2}
    assert (out.path / "SkewDiff.pb").is_file()


def test_no_skew_below_threshold(tmp_path, curated, unseen_species):
    section = ValidationSection(skew=ComparatorSection(features={"island": 0.01, "count": 0.01}))
    out = _validate(tmp_path, section, {"statistics": unseen_species, "schema": curated})
    assert out.properties["counts"]["skew"] == 0


def test_drift_against_a_baseline(tmp_path, curated, unseen_species):
    current = _stats(tmp_path / "c", penguin_rows(40, shift=0.5), penguin_rows(8), "fp-now")
    section = ValidationSection(drift=ComparatorSection(features={"weight": 0.1}))
    inputs = {"statistics": current, "schema": curated}
    out = _validate(tmp_path, section, {**inputs, "baseline_statistics": unseen_species})
    assert [(r["split"], r["feature"], r["kind"]) for r in out.properties["blocking"]] == [
        ("train", "weight", "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH")
    ]
    assert out.properties["baseline_statistics_id"] == 7
    # Without a baseline (the first run) there is nothing to drift from.
    out = _validate(tmp_path / "first", section, inputs)
    assert out.properties["passed"] is True


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fail_on": ["schema", "oops"]}, r"validation.fail_on\[1\] must be one of .*'oops'"),
        (
            {"skew": ComparatorSection(threshold=2)},
            r"validation.skew.threshold must be in \(0, 1\]",
        ),
        (
            {"drift": ComparatorSection(features={"fare": 0})},
            r"validation.drift.features.fare must be in \(0, 1\]; received 0",
        ),
    ],
)
def test_section_is_checked(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ValidationSection(**kwargs)


def test_section_loads_from_yaml(tmp_path):
    file = tmp_path / "p.yaml"
    file.write_text(
        "pipeline: {name: p}\n"
        "validation:\n  fail_on: [schema, ENUM_TYPE_UNEXPECTED_STRING_VALUES]\n"
        "  skew: {threshold: 0.3, features: {fare: 0.1}}\n"
    )
    section = load(file, sections={"validation": ValidationSection}).section("validation")
    assert section.skew == ComparatorSection(threshold=0.3, features={"fare": 0.1})
    assert section.drift.enabled is False
    assert validate.STAGE.section_name == "validation"


def test_unknown_comparator_feature_is_named(tmp_path, curated, unseen_species):
    section = ValidationSection(skew=ComparatorSection(features={"fare": 0.1}))
    with pytest.raises(ConfigError, match="validation.skew.features: unknown feature 'fare'"):
        _validate(tmp_path, section, {"statistics": unseen_species, "schema": curated})


# ---- end to end: the orchestrator finds the baseline, records it, and the gate stops the run ----


@dataclass(frozen=True)
class FakeIngestSection:
    shift: float = 0.0


def _fake_ingest(section: FakeIngestSection, inputs: dict[str, Artifact], ctx: StageContext):
    rows = penguin_rows(40, shift=section.shift)
    out = write_examples(ctx.output_dir / "examples", {"train": rows, "eval": rows[:10]}, fp="")
    return {"examples": out}


FAKE_INGEST = Stage("ingest", FakeIngestSection, _fake_ingest, {}, {"examples": "Examples"})
STAGES = {
    "ingest": FAKE_INGEST,
    "statistics": statistics.STAGE,
    "schema": schema_stage.STAGE,
    "validate": validate.STAGE,
}


def test_drift_end_to_end(tmp_path):
    section = ValidationSection(drift=ComparatorSection(threshold=0.1))
    config = Config(
        pipeline=PipelineSection(name="drift", root=str(tmp_path / "root")),
        metadata=MetadataSection(backend="sqlite"),
        stages={
            "ingest": FakeIngestSection(),
            "statistics": StatisticsSection(html=False),
            "schema": SchemaSection(),
            "validation": section,
        },
    )
    first = Orchestrator(config, STAGES).run()
    assert first.status == "completed", first.error

    shifted = replace(config, stages={**config.stages, "ingest": FakeIngestSection(shift=0.5)})
    second = Orchestrator(shifted, STAGES).run()
    assert second.status == "stopped"
    assert second.exit_code == 3
    assert ("train", "weight") in {(a["split"], a["feature"]) for a in second.anomalies}

    orch = Orchestrator(shifted, STAGES)
    [anomalies] = [
        a for a in orch.store.artifacts_of_type("ExampleAnomalies") if not a.properties["passed"]
    ]
    first_stats = first.stages["statistics"]["outputs"]["statistics"]["id"]
    assert anomalies.properties["baseline_statistics_id"] == first_stats
    [ex] = [
        e for e in orch.store.executions("validate") if e.id == orch.store.producer(anomalies.id)
    ]
    assert orch.store.execution_inputs(ex.id)["baseline_statistics"].id == first_stats

    third = orch.run()  # same data, same baseline: the cached verdict still stops the run
    assert third.stages["validate"]["status"] == "stopped"
    assert third.exit_code == 3
