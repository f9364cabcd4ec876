"""evaluate: sliced metrics of the candidate and the baseline model on the raw eval split; blessing.

A Beam job reads the raw eval split (``Split-eval/*.tfrecord.gz`` of the ingested Examples) in
Arrow record batches through tfx_bsl's ``TFExampleRecord`` (as statistics does), keeping each
batch's serialized tf.Examples in a raw-record column. One DoFn loads each SavedModel once and runs
the candidate and the baseline through their ``serving_default`` signature a batch at a time.
Labels come from the candidate's own transform graph (the ``TransformGraph`` its train execution
read, found in ML Metadata): the graph's ``label_key`` output is exactly the label the model was
trained on (``big_tipper`` is derived from tips and fare inside ``preprocessing_fn``). A label
that is a raw column of the examples and not a transform output is read as it is. Metrics of
every slice are accumulated per model by `beam_pipeline.evaluation.MetricsAccumulator` (one
``bincount`` over slice x bucket per batch); the metric definitions are documented there.

The baseline is the latest blessed Model of this pipeline (`registry.baseline`: not rejected in
review, not rolled back); it is resolved in `prepare`, so it is an input of the execution (lineage)
and part of its cache key. A first model has no baseline and is judged on absolute bounds alone.

Outputs:
    evaluation (ModelEvaluation): ``metrics.json``: ``overall`` and ``slices`` (slice key ->
        ``{"candidate", "baseline", "difference"}``), the model and baseline versions, the task,
        and ``plots`` (per model, the Overall data of `MetricsAccumulator.plots`).
        Properties: ``metrics`` (overall candidate), ``model_version``, ``baseline_version``.
    blessing (ModelBlessing): an empty file ``BLESSED`` or ``NOT_BLESSED``, and ``reasons.json``:
        every check (slice, metric, kind, threshold, value, baseline, change, passed, message).
        Properties: ``blessed``, ``metrics``, ``model_version``, ``model_id``,
        ``baseline_version``, ``require_approval``, ``failed`` (messages of failed checks).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics.metric import Metrics, MetricsFilter

from beam_pipeline import progress
from beam_pipeline.core import registry
from beam_pipeline.core.artifacts import Artifact, examples_pattern, metrics_path, saved_model_dir
from beam_pipeline.core.errors import ConfigError, DataError
from beam_pipeline.core.stage import Prepared, Stage, StageContext
from beam_pipeline.core.stage_sections import EvaluateSection
from beam_pipeline.evaluation import (
    ALWAYS,
    BASELINE,
    CANDIDATE,
    DEFAULT_METRICS,
    OVERALL,
    MetricsAccumulator,
    MetricThreshold,
    SliceMemo,
    SliceThreshold,
    assemble,
    check,
    first_values,
    slice_keys,
)
from beam_pipeline.evaluation.combine import AccumulateMetrics
from beam_pipeline.io import filesystem

log = logging.getLogger(__name__)

NAMESPACE = "evaluate"
RAW_RECORD = "__raw_record__"  # the serialized tf.Example column of each record batch
READ_BATCH = 16_384  # rows per record batch read and sliced; the model sees batch_size at a time

__all__ = ["STAGE", "EvaluateSection", "MetricThreshold", "SliceThreshold", "gate_text"]


# ---------------------------------------------------------------------------------------------
# Beam


@dataclass(frozen=True)
class EvalJob:
    """Everything the Beam job needs (picklable: strings and numbers)."""

    examples: str  # file pattern of the serialized raw tf.Examples
    models: dict[str, str]  # candidate / baseline -> saved_model dir
    transform_graph: str | None
    label_key: str
    slice_specs: list[tuple[str, ...]]
    boundaries: dict[str, list[float]]
    task: str
    batch_size: int = 1024
    buckets: int = 10_000
    threshold: float = 0.5
    raw_label_keys: tuple[str, ...] = ()  # rows missing one are not evaluated (never filled)


class PredictAndSlice(beam.DoFn):
    """A record batch of raw examples -> (model, (labels, predictions, slice keys per spec)).

    The SavedModels and the label function are loaded once per DoFn instance, in `setup`.
    """

    def __init__(self, job: EvalJob) -> None:
        self._job = job
        self._rows = Metrics.counter(NAMESPACE, "rows")
        self._unlabeled = Metrics.counter(NAMESPACE, "unlabeled")

    def setup(self) -> None:
        import tensorflow as tf

        self._tf = tf
        self._memo = SliceMemo()  # slice codes kept from batch to batch
        for path in self._job.models.values():
            filesystem.enable_tensorflow(path)
        self._models = {
            name: tf.saved_model.load(path).signatures["serving_default"]
            for name, path in self._job.models.items()
        }
        self._labels = None
        if self._job.transform_graph:
            import tensorflow_transform as tft

            output = tft.TFTransformOutput(self._job.transform_graph)
            if self._job.label_key in output.transformed_feature_spec():
                layer = output.transform_features_layer()
                spec = output.raw_feature_spec()
                key = self._job.label_key

                @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
                def labels(serialized: tf.Tensor) -> tf.Tensor:
                    return layer(tf.io.parse_example(serialized, spec))[key]

                self._labels = labels

    def process(self, batch: pa.RecordBatch) -> Iterator[tuple[str, Any]]:
        if self._job.raw_label_keys:
            from beam_pipeline.core.labels import labeled

            mask = labeled(batch, self._job.raw_label_keys)
            if not mask.all():
                self._unlabeled.inc(int((~mask).sum()))
                if not mask.any():
                    return
                batch = batch.filter(pa.array(mask))
        records = pc.list_flatten(batch.column(RAW_RECORD)).to_numpy(zero_copy_only=False)
        serialized = self._tf.constant(records)
        rows = len(records)
        labels = self._label_values(serialized, batch)
        boundaries, memo = self._job.boundaries, self._memo
        keys = [slice_keys(batch, spec, boundaries, memo) for spec in self._job.slice_specs]
        self._rows.inc(rows)
        progress.count("evaluate", rows)  # the live count beside the spinner
        size = self._job.batch_size
        for name, fn in self._models.items():
            chunks = [
                fn(examples=serialized[i : i + size])["predictions"]
                .numpy()
                .reshape(min(size, rows - i), -1)
                for i in range(0, rows, size)
            ]
            predictions = np.concatenate(chunks)
            yield name, (labels, predictions, keys)

    def _label_values(self, serialized: Any, batch: pa.RecordBatch) -> np.ndarray:
        if self._labels is not None:
            return self._labels(serialized).numpy().reshape(-1).astype(np.float64)
        key = self._job.label_key
        if key not in batch.schema.names:
            names = [n for n in batch.schema.names if n != RAW_RECORD]
            raise DataError(
                f"evaluate: label {key!r} is neither an output of the model's transform graph "
                f"nor a column of the eval examples (columns: {names})"
            )
        values = pc.cast(first_values(batch.column(key)), pa.float64())
        if values.null_count:
            raise DataError(f"evaluate: label {key!r} is missing in {values.null_count} eval rows")
        return values.to_numpy(zero_copy_only=False)


def _model_result(acc: MetricsAccumulator | None) -> dict[str, Any]:
    if acc is None:
        return {"kind": None, "slices": {OVERALL: {"example_count": 0.0}}}
    return {"kind": acc.kind, "slices": acc.result(), "plots": acc.plots()}


class EvaluateModels(beam.PTransform):
    """Raw eval examples -> JSON lines ``{"model", "kind", "slices"}``, one per model."""

    def __init__(self, job: EvalJob) -> None:
        super().__init__()
        self._job = job

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        from tfx_bsl.public import tfxio

        job = self._job
        source = tfxio.TFExampleRecord(file_pattern=job.examples, raw_record_column_name=RAW_RECORD)
        return (
            pbegin
            | "Read" >> source.BeamSource(batch_size=max(job.batch_size, READ_BATCH))
            | "PredictAndSlice" >> beam.ParDo(PredictAndSlice(job))
            | "Metrics"
            >> beam.CombinePerKey(AccumulateMetrics(job.task, job.buckets, job.threshold))
            | "ToJson"
            >> beam.MapTuple(lambda model, acc: json.dumps({"model": model, **_model_result(acc)}))
        )


# ---------------------------------------------------------------------------------------------
# The stage


def _task(section: EvaluateSection, model: Artifact) -> str:
    if section.task != "auto":
        return section.task
    trained = " ".join(model.properties.get("metrics") or {})
    classification = re.search(r"auc|accuracy|precision|recall|crossentropy", trained)
    return "classification" if classification else "regression"


def prepare(section: EvaluateSection, inputs: dict[str, Artifact], ctx: StageContext) -> Prepared:
    model, examples = inputs["model"], inputs["examples"]
    section.check_task(_task(section, model))
    label_key = section.label_key or model.properties.get("label_key")
    if not label_key:
        raise ConfigError(
            f"evaluate.label_key: the model {model.uri} has no label_key property; set it"
        )
    columns = examples.properties.get("columns") or {}
    if columns:
        for i, spec in enumerate(section.slice_specs):
            unknown = [f for f in spec if f not in columns]
            if unknown:
                raise ConfigError(
                    f"evaluate.slices[{i}]: no feature {unknown[0]!r} in the examples; "
                    f"features are {sorted(columns)}"
                )
    extra: dict[str, Artifact] = {}
    state: dict[str, Any] = {
        "label_key": label_key,
        "version": None,
        "baseline_version": None,
    }
    store = ctx.store
    if store is not None and model.id is not None:
        state["version"] = registry.version_of(store, model)
        producer = store.producer(model.id)
        graph = store.execution_inputs(producer).get("transform_graph") if producer else None
        if graph is not None:
            extra["transform_graph"] = graph
        base = (
            registry.baseline(store, exclude_id=model.id) if section.compare_to_baseline else None
        )
        if base is not None:
            extra["baseline_model"] = base
            state["baseline_version"] = registry.version_of(store, base)
    return Prepared(inputs=extra, state=state)


def run(
    section: EvaluateSection, inputs: dict[str, Artifact], ctx: StageContext
) -> dict[str, Artifact]:
    """Evaluate and bless. Returns {"evaluation": ModelEvaluation, "blessing": ModelBlessing}."""
    t0 = time.time()
    state = dict(ctx.prepared)
    model, examples = inputs["model"], inputs["examples"]
    baseline = inputs.get("baseline_model")  # the Model `prepare` resolved, if any
    graph = inputs.get("transform_graph")
    pattern = examples_pattern(examples, section.split)
    models = {CANDIDATE: str(saved_model_dir(model))}
    if baseline is not None:
        models[BASELINE] = str(saved_model_dir(baseline))
    job = EvalJob(
        examples=pattern,
        models=models,
        transform_graph=graph.uri if graph is not None else None,
        label_key=state.get("label_key") or section.label_key or model.properties["label_key"],
        slice_specs=section.slice_specs,
        boundaries=section.bucket_boundaries,
        task=_task(section, model),
        batch_size=section.batch_size,
        buckets=section.auc_buckets,
        threshold=section.decision_threshold,
        raw_label_keys=tuple(graph.properties.get("raw_label_keys") or []) if graph else (),
    )
    evaluation = ctx.output("evaluation", "ModelEvaluation")
    blessing = ctx.output("blessing", "ModelBlessing")
    results = evaluate_models(job, ctx.output_dir / "_results", ctx)
    kind = results["kind"]
    selected = list(section.metrics) or DEFAULT_METRICS[kind]
    overall, slices = assemble(results[CANDIDATE], results.get(BASELINE), selected)
    has_baseline = baseline is not None
    checks = check(section.thresholds, section.slice_thresholds, overall, slices, has_baseline)
    blessed = all(c["passed"] for c in checks)
    version, base_version = state.get("version"), state.get("baseline_version")
    report = {
        "task": kind,
        "label_key": job.label_key,
        "split": section.split,
        "model": {"version": version, "id": model.id, "uri": model.uri},
        "baseline": (
            {"version": base_version, "id": baseline.id, "uri": baseline.uri}
            if baseline is not None
            else None
        ),
        "metrics": selected,
        "slice_specs": [list(s) for s in job.slice_specs],
        "overall": overall,
        "slices": slices,
        "plots": results.get("plots") or {},  # Overall: ROC, PR, calibration, confusion; residuals
    }
    filesystem.write_text(metrics_path(evaluation), json.dumps(report, indent=1, default=_json))
    verdict = "BLESSED" if blessed else "NOT_BLESSED"
    filesystem.write_text(blessing.path / verdict, "")
    filesystem.write_text(
        blessing.path / "reasons.json",
        json.dumps(
            {
                "blessed": blessed,
                "model_version": version,
                "baseline_version": base_version,
                "checks": checks,
            },
            indent=1,
            default=_json,
        ),
    )
    headline = {k: v for k, v in overall[CANDIDATE].items() if k in selected or k in ALWAYS}
    failed = [c["message"] for c in checks if not c["passed"]]
    evaluation.properties.update(
        metrics=headline,
        model_version=version,
        baseline_version=base_version,
        task=kind,
        unlabeled=results.get("unlabeled", 0),  # eval rows without a label: not evaluated
    )
    blessing.properties.update(
        blessed=blessed,
        metrics=headline,
        model_version=version,
        model_id=model.id,
        baseline_version=base_version,
        require_approval=section.require_approval,
        failed=failed,
        checks=len(checks),
    )
    shown = ", ".join(
        f"{k} {v:.4f}"
        + (
            f" ({overall['difference'][k]:+.4f})"
            if overall["difference"] and overall["difference"].get(k) is not None
            else ""
        )
        for k, v in headline.items()
        if v is not None and k in selected
    )
    log.info(
        "evaluate: model v%s vs %s on %s %s rows, %d slices: %s; %s, %.1f s",
        version,
        f"baseline v{base_version}" if has_baseline else "no baseline",
        f"{int(overall[CANDIDATE].get('example_count', 0)):,}",
        section.split,
        len(slices),
        shown,
        verdict,
        time.time() - t0,
    )
    for message in failed:
        log.warning("evaluate: not blessed: %s", message)
    return {"evaluation": evaluation, "blessing": blessing}


def evaluate_models(job: EvalJob, scratch: Path, ctx: StageContext | None = None) -> dict[str, Any]:
    """Runs the Beam job; returns ``{"candidate": {slice: metrics}, "baseline": ... (if any),
    "kind", "count"}``."""
    from apache_beam.options.pipeline_options import PipelineOptions

    options = ctx.beam_options() if ctx is not None else PipelineOptions(["--runner=DirectRunner"])
    filesystem.makedirs(scratch)
    with beam.Pipeline(options=options) as p:
        _ = (
            p
            | "Evaluate" >> EvaluateModels(job)
            | "Write" >> beam.io.WriteToText(str(scratch / "results"), file_name_suffix=".jsonl")
        )
    counters = p.result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    count = sum(
        int(c.committed or c.attempted or 0) for c in counters if c.key.metric.name == "rows"
    )
    unlabeled = sum(
        int(c.committed or c.attempted or 0) for c in counters if c.key.metric.name == "unlabeled"
    )
    lines = []
    for f in sorted(scratch.glob("results*.jsonl")):
        lines += [json.loads(line) for line in f.read_text().splitlines() if line]
    filesystem.rmtree(scratch)
    out: dict[str, Any] = {line["model"]: line["slices"] for line in lines}
    plots = {line["model"]: line.get("plots") for line in lines}
    if unlabeled and not count:
        from beam_pipeline.core.labels import no_label_message

        raise DataError(no_label_message("evaluate", "eval", job.raw_label_keys, unlabeled))
    if CANDIDATE not in out or not count:
        raise DataError(f"evaluate: no eval examples match {job.examples}")
    out["kind"] = next(line["kind"] for line in lines if line["model"] == CANDIDATE)
    out["count"] = count
    out["unlabeled"] = unlabeled
    out["plots"] = plots
    return out


def _json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def gate_text(blessing: Artifact) -> str:
    """One line saying why a model was not blessed (for push and the CLI)."""
    failed = blessing.properties.get("failed") or []
    return "; ".join(failed) if failed else "not blessed"


STAGE = Stage(
    name="evaluate",
    section=EvaluateSection,
    run=run,
    prepare=prepare,
    inputs={"examples": "ingest.examples", "model": "train.model", "schema": "schema.schema"},
    outputs={"evaluation": "ModelEvaluation", "blessing": "ModelBlessing"},
)
