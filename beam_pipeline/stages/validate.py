"""The validate stage: anomalies against the schema, train/eval skew, drift, and the gate.

Three checks, each a plain TFDV function on statistics protos (no Beam job):

- ``schema``: every split's statistics against the schema (``tfdv.validate_statistics``);
- ``skew``: train against eval, with ``skew_comparator`` thresholds from ``validation.skew``;
- ``drift``: this run's train statistics against those of the previous run that passed the gate,
  with ``drift_comparator`` thresholds from ``validation.drift``.

A finding blocks when its category or its exact TFDV kind is listed in ``validation.fail_on``;
the gate then stops the run (exit 3). Outputs, under the ``ExampleAnomalies`` artifact folder:
``Split-{split}/SchemaDiff.pb`` (the split's ``Anomalies`` against the schema), ``SkewDiff.pb`` and
``DriftDiff.pb`` (the comparator ``Anomalies``, when those checks ran), ``anomalies.txt`` (one
readable line per finding) and ``anomalies.json`` (the same findings as a list of objects).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2

from beam_pipeline.core.artifacts import Artifact, load_schema, load_statistics, stats_path
from beam_pipeline.core.comparators import (  # noqa: F401
    ComparatorSection,
    acknowledged_drift,
    with_comparators,
)
from beam_pipeline.core.errors import ValidationFailed
from beam_pipeline.core.stage import Prepared, Stage, StageContext
from beam_pipeline.core.stage_sections import CATEGORIES, ValidationSection
from beam_pipeline.io import filesystem

if TYPE_CHECKING:
    from beam_pipeline.core.metadata import Store

log = logging.getLogger(__name__)

ANOMALY_KINDS = frozenset(anomalies_pb2.AnomalyInfo.Type.keys())
BASELINE = "baseline_statistics"
ACKNOWLEDGED = "acknowledged_drift"  # input keys acknowledged_drift_0, _1, ...
TRAIN, EVAL = "train", "eval"
SCHEMA_DIFF = "SchemaDiff.pb"
DATASET = "(dataset)"  # the "feature" of a dataset-level anomaly
MAX_WARNINGS = 200  # non-blocking findings kept in the artifact's properties (run --json)


# ---------------------------------------------------------------------------------------------
# Plain functions on protos


def findings(
    anomalies: anomalies_pb2.Anomalies,
    split: str,
    category: str,
    section: ValidationSection,
    comparator_only: bool = False,
) -> list[dict[str, Any]]:
    """One row per anomaly reason: split, feature, kind, category, description, blocking."""
    infos = sorted(anomalies.anomaly_info.items())
    if anomalies.HasField("dataset_anomaly_info"):
        infos.append((DATASET, anomalies.dataset_anomaly_info))
    rows = []
    for feature, info in infos:
        for reason in info.reason:
            kind = anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
            if comparator_only and not kind.startswith("COMPARATOR_"):
                continue
            rows.append(
                {
                    "split": split,
                    "feature": feature,
                    "kind": kind,
                    "category": category,
                    "description": reason.description or reason.short_description,
                    "blocking": section.blocks(category, kind),
                }
            )
    return rows


def find_baseline(store: Store, statistics: Artifact) -> Artifact | None:
    """The statistics of the newest run that passed the gate on other data, or None.

    Looks at ExampleAnomalies artifacts newest first; the first one that passed and whose
    statistics fingerprint differs from ``statistics``' names the baseline ExampleStatistics.
    """
    for anomalies in store.artifacts_of_type("ExampleAnomalies"):
        p = anomalies.properties
        if not p.get("passed") or p.get("statistics_fingerprint") == statistics.fingerprint:
            continue
        if p.get("statistics_id") is None:
            continue
        found = store.artifacts([int(p["statistics_id"])])
        if not found or found[0].properties.get("_state") != "LIVE":
            continue
        baseline = found[0]
        if TRAIN in baseline.splits and filesystem.exists(stats_path(baseline, TRAIN)):
            return baseline
    return None


# ---------------------------------------------------------------------------------------------
# The stage


def prepare(section: ValidationSection, inputs: dict[str, Artifact], ctx: StageContext) -> Prepared:
    """Find the drift baseline (only when drift is configured) and the drift acknowledged by a
    ``monitor --retrain`` for this data: inputs, so cache-key parts and lineage."""
    if not section.drift.enabled:
        return Prepared()
    baseline = find_baseline(ctx.store, inputs["statistics"])
    if baseline is None:
        return Prepared()
    acks = acknowledged_drift(ctx.store, inputs["statistics"])
    extra = {f"{ACKNOWLEDGED}_{i}": a for i, a in enumerate(acks)}
    return Prepared(inputs={BASELINE: baseline, **extra})


def run(
    section: ValidationSection, inputs: dict[str, Artifact], ctx: StageContext
) -> dict[str, Artifact]:
    """Validate the statistics. Returns ``{"anomalies": ExampleAnomalies}``."""
    t0 = time.time()
    stats_art = inputs["statistics"]
    schema = load_schema(inputs["schema"])
    out = ctx.output("anomalies", "ExampleAnomalies", splits=list(stats_art.splits))
    stats = {split: load_statistics(stats_art, split) for split in stats_art.splits}
    rows: list[dict[str, Any]] = []

    for split, split_stats in stats.items():
        result = tfdv.validate_statistics(split_stats, schema)
        _write(out.split_dir(split) / SCHEMA_DIFF, result)
        rows += findings(result, split, "schema", section)

    if section.skew.enabled:
        if TRAIN in stats and EVAL in stats:
            skew_schema = with_comparators(schema, section.skew, "skew", "validation.skew")
            result = tfdv.validate_statistics(
                stats[TRAIN], skew_schema, serving_statistics=stats[EVAL]
            )
            _write(out.path / "SkewDiff.pb", result)
            rows += findings(result, f"{TRAIN}/{EVAL}", "skew", section, comparator_only=True)
        else:
            log.warning("validate: skew check skipped: needs splits %r and %r", TRAIN, EVAL)

    baseline: Artifact | None = inputs.get(BASELINE)
    if section.drift.enabled and baseline is not None and TRAIN in stats:
        drift_schema = with_comparators(schema, section.drift, "drift", "validation.drift")
        previous = load_statistics(baseline, TRAIN)
        result = tfdv.validate_statistics(stats[TRAIN], drift_schema, previous_statistics=previous)
        _write(out.path / "DriftDiff.pb", result)
        drift_rows = findings(result, TRAIN, "drift", section, comparator_only=True)
        acks = [a for k, a in sorted(inputs.items()) if k.startswith(ACKNOWLEDGED)]
        if acks:  # the retraining responds to this drift: reported, never blocking
            reports = ", ".join(f"MonitoringReport #{a.properties.get('report_id')}" for a in acks)
            for row in drift_rows:
                row["blocking"] = False
                row["description"] += f" (acknowledged: {reports})"
            out.properties["acknowledged_drift"] = [a.properties.get("report_id") for a in acks]
        rows += drift_rows
        out.properties["baseline_statistics_id"] = baseline.id
        out.properties["baseline_statistics"] = stats_path(baseline, TRAIN)
    elif section.drift.enabled:
        log.info("validate: no drift baseline yet (no earlier run passed on other data)")

    blocking = [
        {k: r[k] for k in ("split", "feature", "kind", "description")}
        for r in rows
        if r["blocking"]
    ]
    warnings = [
        {k: r[k] for k in ("split", "feature", "kind", "category", "description")}
        for r in rows
        if not r["blocking"]
    ]
    counts = {c: sum(r["category"] == c for r in rows) for c in CATEGORIES}
    counts["blocking"] = len(blocking)
    filesystem.write_text(out.path / "anomalies.json", json.dumps(rows, indent=2) + "\n")
    filesystem.write_text(out.path / "anomalies.txt", _text(rows))
    out.properties.update(
        passed=not blocking,
        blocking=blocking,
        warnings=warnings[:MAX_WARNINGS],  # all of them are in anomalies.json
        counts=counts,
        statistics_fingerprint=stats_art.fingerprint,
        statistics_id=stats_art.id,
        schema_id=inputs["schema"].id,  # the pipeline's schema once this passes (schema stage)
    )
    log.info(
        "validate: %d anomalies (%d blocking): schema %d, skew %d, drift %d, %.1f s",
        len(rows),
        len(blocking),
        counts["schema"],
        counts["skew"],
        counts["drift"],
        time.time() - t0,
    )
    return {"anomalies": out}


def gate(section: ValidationSection, outputs: dict[str, Artifact]) -> None:
    """Stop the run when the anomalies artifact (fresh or cached) records blocking findings.

    Raises:
        ValidationFailed: with one entry (split, feature, kind, description) per blocking finding.
    """
    blocking = outputs["anomalies"].properties.get("blocking") or []
    if blocking:
        raise ValidationFailed(list(blocking))


def _write(path: Path, anomalies: anomalies_pb2.Anomalies) -> None:
    filesystem.write_bytes(path, anomalies.SerializeToString())


def _text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no anomalies\n"
    lines = [
        f"{'BLOCKS' if r['blocking'] else 'warns '}  {r['split']}: {r['feature']}: {r['kind']} "
        f"[{r['category']}]: {r['description']}"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


STAGE = Stage(
    name="validate",
    deterministic=True,
    section=ValidationSection,
    run=run,
    inputs={"statistics": "statistics.statistics", "schema": "schema.schema"},
    outputs={"anomalies": "ExampleAnomalies"},
    prepare=prepare,
    gate=gate,
    config_key="validation",
)
