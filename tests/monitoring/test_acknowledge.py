"""Drift acknowledged by ``monitor --retrain``: found through lineage, reported by validate and
never blocking there. A memory store and two 48-row statistics jobs: about 20 s."""

from __future__ import annotations

from pathlib import Path

from beam_pipeline.core.artifacts import Artifact
from beam_pipeline.core.comparators import ACK_TYPE, ComparatorSection, acknowledged_drift
from beam_pipeline.core.metadata import Store
from beam_pipeline.stages import schema as schema_stage
from beam_pipeline.stages import statistics, validate
from beam_pipeline.stages.schema import SchemaSection
from beam_pipeline.stages.statistics import StatisticsSection
from beam_pipeline.stages.validate import ValidationSection
from tests.stages._fixtures import make_config, make_ctx, penguin_rows, write_examples


def _lineage(store: Store, digest: str) -> tuple[Artifact, Artifact]:
    """span -> ingest -> examples -> statistics; an acknowledgement of the span's bytes."""
    span = Artifact("DataSpan", "/spans/span-1", {"span": 1, "content_digest": digest}, "f1")
    examples = Artifact("Examples", "/ex", {}, "f2")
    stats = Artifact("ExampleStatistics", "/st", {}, "f3")
    store.record_execution("ingest", {}, {"data_span_1": span}, {"examples": examples})
    store.record_execution("statistics", {}, {"examples": examples}, {"statistics": stats})
    ack = Artifact(ACK_TYPE, "/spans/span-1", {"report_id": 12, "content_digest": digest}, "f4")
    report = Artifact("MonitoringReport", "/r", {}, "f5")
    store.record_execution("retrain_span", {}, {"report": report}, {"acknowledged": ack})
    return stats, ack


def test_the_acknowledgement_is_found_through_lineage(tmp_path: Path) -> None:
    store = Store(make_config(tmp_path, {}))
    stats, ack = _lineage(store, "abc")
    assert [a.id for a in acknowledged_drift(store, stats)] == [ack.id]
    other = Artifact("ExampleStatistics", "/other", {}, "f9")  # data from no span
    store.record_execution("statistics", {}, {}, {"statistics": other})
    assert acknowledged_drift(store, other) == []


def test_acknowledged_drift_is_reported_and_does_not_block(tmp_path: Path) -> None:
    def stats(name: str, shift: float) -> Artifact:
        examples = write_examples(
            tmp_path / name, {"train": penguin_rows(40, shift=shift), "eval": penguin_rows(8)}
        )
        ctx = make_ctx(statistics.STAGE, make_config(tmp_path, {}), tmp_path / f"{name}-out")
        art = statistics.run(StatisticsSection(html=False), {"examples": examples}, ctx)
        return art["statistics"]

    before, now = stats("before", 0.0), stats("now", 0.5)
    ctx = make_ctx(schema_stage.STAGE, make_config(tmp_path, {}), tmp_path / "schema")
    schema = schema_stage.run(SchemaSection(), {"statistics": before}, ctx)["schema"]
    section = ValidationSection(drift=ComparatorSection(features={"weight": 0.1}))
    inputs = {"statistics": now, "schema": schema, "baseline_statistics": before}

    def run(extra: dict[str, Artifact], where: str) -> Artifact:
        config = make_config(tmp_path, {"validation": section})
        ctx = make_ctx(validate.STAGE, config, tmp_path / where)
        return validate.run(section, {**inputs, **extra}, ctx)["anomalies"]

    stopped = run({}, "plain")
    assert [r["feature"] for r in stopped.properties["blocking"]] == ["weight"]
    ack = Artifact(ACK_TYPE, "/spans/span-1", {"report_id": 12}, "f", id=5)
    passed = run({"acknowledged_drift_0": ack}, "acked")
    assert passed.properties["passed"] and passed.properties["acknowledged_drift"] == [12]
    [warning] = [w for w in passed.properties["warnings"] if w["category"] == "drift"]
    assert warning["feature"] == "weight" and "MonitoringReport #12" in warning["description"]
