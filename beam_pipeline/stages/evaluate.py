"""evaluate: sliced metrics of the candidate and the baseline model on the raw eval split; blessing.

A Beam job reads the raw eval split (``Split-eval/*.tfrecord.gz`` of the ingested Examples),
batches the serialized tf.Examples and, in one DoFn that loads each SavedModel once, runs the
candidate and the baseline through their ``serving_default`` signature a batch at a time. Labels
come from the candidate's own transform graph (the ``TransformGraph`` its train execution read,
found in ML Metadata): the graph's ``label_key`` output is exactly the label the model was trained
on (``big_tipper`` is derived from tips and fare inside ``preprocessing_fn``). A label that is a
raw column of the examples and not a transform output is read as it is. Metrics are combined per
(model, slice) by `SliceMetricsCombineFn`.

The baseline is the latest blessed Model of this pipeline (`registry.baseline`: not rejected in
review, not rolled back); it is resolved in `prepare`, so it is an input of the execution (lineage)
and part of its cache key. A first model has no baseline and is judged on absolute bounds alone.

Metrics. Binary classification (``[batch, 1]`` probabilities): ``auc``, ``accuracy``,
``precision``, ``recall`` (at ``decision_threshold``), ``log_loss``; multi-class
(``[batch, classes]``): ``accuracy``, ``log_loss``, and macro-averaged one-vs-rest ``auc``,
``precision``, ``recall``; regression: ``rmse``, ``mae``. Always: ``example_count``,
``label_mean``, ``prediction_mean`` (binary/regression). AUC is computed from ``auc_buckets``
(10,000) equal-width histogram buckets of the predicted probability, as TFMA's default
``num_thresholds``: it equals the exact (Mann-Whitney) AUC except that two predictions in the same
1e-4-wide bucket count as a tie. Every other metric is exact.

Outputs:
    evaluation (ModelEvaluation): ``metrics.json``: ``overall`` and ``slices`` (slice key ->
        ``{"candidate", "baseline", "difference"}``), the model and baseline versions, the task.
        Properties: ``metrics`` (overall candidate), ``model_version``, ``baseline_version``.
    blessing (ModelBlessing): an empty file ``BLESSED`` or ``NOT_BLESSED``, and ``reasons.json``:
        every check (slice, metric, kind, threshold, value, baseline, change, passed, message).
        Properties: ``blessed``, ``metrics``, ``model_version``, ``model_id``,
        ``baseline_version``, ``require_approval``, ``failed`` (messages of failed checks).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics.metric import Metrics, MetricsFilter

from beam_pipeline import registry
from beam_pipeline.artifacts import Artifact, split_dir
from beam_pipeline.errors import ConfigError, DataError
from beam_pipeline.stage import Prepared, Stage, StageContext

log = logging.getLogger(__name__)

NAMESPACE = "evaluate"
OVERALL = "Overall"
CANDIDATE, BASELINE = "candidate", "baseline"
EPSILON = 1e-7  # probabilities are clipped to [eps, 1 - eps] for log loss (as Keras does)

DEFAULT_METRICS = {
    "binary": ["auc", "accuracy", "precision", "recall", "log_loss"],
    "multiclass": ["accuracy", "log_loss", "auc", "precision", "recall"],
    "regression": ["rmse", "mae"],
}
ALWAYS = ["example_count", "label_mean", "prediction_mean"]
KNOWN_METRICS = {m for ms in DEFAULT_METRICS.values() for m in ms} | set(ALWAYS)
LOWER_IS_BETTER = {"log_loss", "rmse", "mae"}


# ---------------------------------------------------------------------------------------------
# Config


@dataclass(frozen=True)
class MetricThreshold:
    """Bounds on one metric. ``lower``/``upper``: absolute. ``min_change_abs``/``min_change_rel``:
    the least improvement over the baseline, where improvement is ``candidate - baseline`` for
    metrics where higher is better and ``baseline - candidate`` for losses and errors; a negative
    value allows that much regression (``auc: {min_change_abs: -0.01}``). Relative changes are
    divided by ``|baseline|``."""

    lower: float | None = None
    upper: float | None = None
    min_change_abs: float | None = None
    min_change_rel: float | None = None

    def __post_init__(self) -> None:
        if all(v is None for v in self.__dict__.values()):
            raise ConfigError(
                "evaluate thresholds: expected at least one of lower, upper, min_change_abs, "
                "min_change_rel; received none"
            )


@dataclass(frozen=True)
class SliceThreshold:
    """Thresholds for one slice, named by its feature values: ``{payment_type: Cash}``."""

    slice: dict[str, Any]
    thresholds: dict[str, MetricThreshold]


@dataclass(frozen=True)
class EvaluateSection:
    """``evaluate:`` in the config.

    Attributes:
        task: ``auto`` (classification when the model's training metrics include auc or
            accuracy, else regression; binary or multi-class from the prediction width),
            ``binary``, ``multiclass`` or ``regression``.
        metrics: metrics to report and check; empty: the task's defaults.
        label_key: the label; null: the Model's ``label_key`` property.
        slices: feature names or feature crosses (lists): ``[payment_type, [payment_type,
            trip_start_hour]]``. Rows missing a slice feature are in no slice of that spec.
        bucket_boundaries: numeric slice features sliced by buckets ``[a, b)``:
            ``{fare: [5, 10, 20]}``.
        thresholds: metric -> `MetricThreshold` on the whole eval split.
        slice_thresholds: per-slice thresholds (the slice's features must be one of ``slices``).
        require_approval: a blessed model waits for ``beam-pipeline approve`` before push.
        compare_to_baseline: false: absolute bounds only, even when a blessed model exists.
        split: the split evaluated.
        batch_size: examples per model call.
        decision_threshold: binary predictions >= this are positive (accuracy/precision/recall).
        auc_buckets: histogram buckets for AUC.
    """

    task: Literal["auto", "binary", "multiclass", "regression"] = "auto"
    metrics: list[str] = field(default_factory=list)
    label_key: str | None = None
    slices: list[Any] = field(default_factory=list)
    bucket_boundaries: dict[str, list[float]] = field(default_factory=dict)
    thresholds: dict[str, MetricThreshold] = field(default_factory=dict)
    slice_thresholds: list[SliceThreshold] = field(default_factory=list)
    require_approval: bool = False
    compare_to_baseline: bool = True
    split: str = "eval"
    batch_size: int = 1024
    decision_threshold: float = 0.5
    auc_buckets: int = 10_000

    def __post_init__(self) -> None:
        unknown = [m for m in self.metrics if m not in KNOWN_METRICS]
        if unknown:
            raise ConfigError(
                f"evaluate.metrics: unknown metric {unknown[0]!r}; expected some of "
                f"{sorted(KNOWN_METRICS)}"
            )
        specs = self.slice_specs  # checks the shape of every entry
        for name, bounds in self.bucket_boundaries.items():
            if list(bounds) != sorted(bounds) or len(set(bounds)) != len(bounds) or not bounds:
                raise ConfigError(
                    f"evaluate.bucket_boundaries.{name}: expected strictly increasing numbers; "
                    f"received {bounds!r}"
                )
        for metric in self.thresholds:
            self._check_metric(metric, f"evaluate.thresholds.{metric}")
        for i, st in enumerate(self.slice_thresholds):
            where = f"evaluate.slice_thresholds[{i}]"
            if tuple(sorted(st.slice)) not in specs:
                raise ConfigError(
                    f"{where}.slice: features {sorted(st.slice)} are not one of evaluate.slices "
                    f"{[list(s) for s in specs]}"
                )
            for metric in st.thresholds:
                self._check_metric(metric, f"{where}.thresholds.{metric}")
        if self.batch_size < 1 or self.auc_buckets < 2:
            raise ConfigError(
                "evaluate.batch_size must be >= 1 and evaluate.auc_buckets >= 2; received "
                f"{self.batch_size!r}, {self.auc_buckets!r}"
            )
        if not 0 < self.decision_threshold < 1:
            raise ConfigError(
                f"evaluate.decision_threshold must be in (0, 1); received {self.decision_threshold}"
            )

    def _check_metric(self, metric: str, where: str) -> None:
        allowed = set(self.metrics) | set(ALWAYS) if self.metrics else KNOWN_METRICS
        if metric not in allowed:
            raise ConfigError(
                f"{where}: metric {metric!r} is not computed; expected one of {sorted(allowed)}"
            )

    @property
    def slice_specs(self) -> list[tuple[str, ...]]:
        """Every slice spec as a sorted tuple of feature names."""
        specs = []
        for i, s in enumerate(self.slices):
            names = [s] if isinstance(s, str) else s
            if (
                not isinstance(names, list)
                or not names
                or not all(isinstance(n, str) and n for n in names)
            ):
                raise ConfigError(
                    f"evaluate.slices[{i}]: expected a feature name or a list of feature names; "
                    f"received {s!r}"
                )
            specs.append(tuple(sorted(names)))
        return specs


# ---------------------------------------------------------------------------------------------
# Slices (plain functions on Arrow batches)


def first_values(column: pa.Array) -> pa.Array:
    """The first value of each row of a list column as strings; null where the row has none."""
    n = len(column)
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
        flat = pc.list_flatten(column)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        has = lengths > 0
        indices = np.where(has, starts, 0)
        taken = flat.take(pa.array(indices)) if len(flat) else pa.nulls(n, flat.type)
        column = pc.if_else(pa.array(has), taken, pa.scalar(None, taken.type))
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        return pc.cast(column, pa.string())
    return column


def bucket_labels(boundaries: list[float]) -> list[str]:
    edges = ["-inf", *(f"{b:g}" for b in boundaries), "inf"]
    return [f"[{lo}, {hi})" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]


def slice_keys(
    batch: pa.RecordBatch, spec: tuple[str, ...], boundaries: dict[str, list[float]]
) -> pa.Array:
    """One slice key per row (``a=x,b=y``, features sorted); null where a feature is missing."""
    parts: list[Any] = []
    for i, name in enumerate(spec):
        if name not in batch.schema.names:
            values: pa.Array = pa.nulls(batch.num_rows, pa.string())
        else:
            values = first_values(batch.column(name))
        if name in boundaries:
            numbers = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
            labels = np.array(bucket_labels(boundaries[name]), dtype=object)
            present = ~np.isnan(numbers)
            idx = np.digitize(np.where(present, numbers, 0.0), boundaries[name])
            values = pa.array(np.where(present, labels[idx], None), pa.string())
        elif not pa.types.is_string(values.type):
            values = pc.cast(values, pa.string())
        parts += [("," if i else "") + f"{name}=", values]
    return pc.binary_join_element_wise(*parts, "")


def canonical_slice(values: dict[str, Any]) -> str:
    """The key of a slice named in the config: ``{trip_start_hour: 19, payment_type: Cash}``."""
    return ",".join(f"{k}={_text(values[k])}" for k in sorted(values))


def _text(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


# ---------------------------------------------------------------------------------------------
# Metrics: an accumulator per (model, slice), merged by a CombineFn


class Accumulator:
    """Sufficient statistics for every metric of one (model, slice).

    ``hist[c, 0|1, b]``: counts of negatives/positives for class c whose predicted probability
    falls into bucket b (binary: one class, the positive one). ``confusion[label, predicted]``.
    """

    def __init__(self, kind: str, classes: int, buckets: int) -> None:
        self.kind = kind
        self.n = 0
        self.label_sum = 0.0
        self.pred_sum = 0.0
        self.loss_sum = 0.0  # log loss, or squared error for regression
        self.abs_sum = 0.0
        width = 2 if kind == "binary" else classes
        self.confusion = np.zeros((width, width), np.int64) if kind != "regression" else None
        hist_classes = 1 if kind == "binary" else classes
        self.hist = np.zeros((hist_classes, 2, buckets), np.int64) if kind != "regression" else None

    def add(
        self, labels: np.ndarray, predictions: np.ndarray, threshold: float, buckets: int
    ) -> None:
        n = len(labels)
        if not n:
            return
        self.n += n
        self.label_sum += float(labels.sum())
        if self.kind == "regression":
            p = predictions[:, 0].astype(np.float64)
            err = p - labels
            self.pred_sum += float(p.sum())
            self.loss_sum += float((err * err).sum())
            self.abs_sum += float(np.abs(err).sum())
            return
        if self.kind == "binary":
            p = predictions[:, 0].astype(np.float64)
            y = (labels > 0.5).astype(np.int64)
            self.pred_sum += float(p.sum())
            pc_ = np.clip(p, EPSILON, 1 - EPSILON)
            self.loss_sum += float(-(y * np.log(pc_) + (1 - y) * np.log(1 - pc_)).sum())
            np.add.at(self.confusion, (y, (p >= threshold).astype(np.int64)), 1)
            self.hist[0] += _histograms(p, y, buckets)
            return
        classes = predictions.shape[1]
        y = labels.astype(np.int64)
        bad = (y < 0) | (y >= classes)
        if bad.any():
            raise DataError(
                f"evaluate: label value {int(y[bad][0])} is out of range for a {classes}-class "
                f"model (expected 0..{classes - 1})"
            )
        p = predictions.astype(np.float64)
        self.loss_sum += float(-np.log(np.clip(p[np.arange(n), y], EPSILON, 1.0)).sum())
        np.add.at(self.confusion, (y, p.argmax(axis=1)), 1)
        for c in range(classes):
            self.hist[c] += _histograms(p[:, c], (y == c).astype(np.int64), buckets)

    def merge(self, other: Accumulator) -> None:
        self.n += other.n
        self.label_sum += other.label_sum
        self.pred_sum += other.pred_sum
        self.loss_sum += other.loss_sum
        self.abs_sum += other.abs_sum
        if self.confusion is not None:
            self.confusion += other.confusion
            self.hist += other.hist

    def metrics(self) -> dict[str, float | None]:
        """Every metric of this kind; None where undefined (no positives, empty slice...)."""
        n = self.n
        out: dict[str, float | None] = {"example_count": float(n)}
        if not n:
            return out
        out["label_mean"] = self.label_sum / n
        if self.kind == "regression":
            out.update(
                prediction_mean=self.pred_sum / n,
                rmse=math.sqrt(self.loss_sum / n),
                mae=self.abs_sum / n,
            )
            return out
        cm = self.confusion
        out["accuracy"] = float(np.trace(cm)) / n
        out["log_loss"] = self.loss_sum / n
        if self.kind == "binary":
            tp, fp, fn = cm[1, 1], cm[0, 1], cm[1, 0]
            out["prediction_mean"] = self.pred_sum / n
            out["precision"] = _ratio(tp, tp + fp)
            out["recall"] = _ratio(tp, tp + fn)
            out["auc"] = auc_from_histograms(self.hist[0, 0], self.hist[0, 1])
            return out
        del out["label_mean"]  # class ids have no meaningful mean
        precision = [_ratio(cm[c, c], cm[:, c].sum()) for c in range(len(cm))]
        recall = [_ratio(cm[c, c], cm[c, :].sum()) for c in range(len(cm))]
        aucs = [auc_from_histograms(self.hist[c, 0], self.hist[c, 1]) for c in range(len(cm))]
        out["precision"] = _mean(precision)
        out["recall"] = _mean(recall)
        out["auc"] = _mean(aucs)
        return out


def _histograms(p: np.ndarray, positive: np.ndarray, buckets: int) -> np.ndarray:
    b = np.clip((p * buckets).astype(np.int64), 0, buckets - 1)
    return np.stack(
        [
            np.bincount(b[positive == 0], minlength=buckets),
            np.bincount(b[positive == 1], minlength=buckets),
        ]
    )


def auc_from_histograms(negatives: np.ndarray, positives: np.ndarray) -> float | None:
    """P(score of a positive > score of a negative), ties (same bucket) counting one half."""
    pos, neg = positives.sum(), negatives.sum()
    if not pos or not neg:
        return None
    below = np.cumsum(negatives) - negatives
    return float((positives * (below + 0.5 * negatives)).sum() / (pos * neg))


def _ratio(a: float, b: float) -> float | None:
    return float(a) / float(b) if b else None


def _mean(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


class SliceMetricsCombineFn(beam.CombineFn):
    """(labels, predictions) batches of one (model, slice) -> its metrics dict."""

    def __init__(self, task: str, buckets: int, threshold: float) -> None:
        self._task = task  # classification | regression | binary | multiclass
        self._buckets = buckets
        self._threshold = threshold

    def create_accumulator(self) -> Accumulator | None:
        return None  # the kind and width are known from the first batch

    def add_input(
        self, acc: Accumulator | None, element: tuple[np.ndarray, np.ndarray]
    ) -> Accumulator:
        labels, predictions = element
        if acc is None:
            acc = Accumulator(
                _kind(self._task, predictions.shape[1]), predictions.shape[1], self._buckets
            )
        acc.add(labels, predictions, self._threshold, self._buckets)
        return acc

    def merge_accumulators(self, accumulators: Any) -> Accumulator | None:
        merged = None
        for acc in accumulators:
            if acc is None:
                continue
            if merged is None:
                merged = acc
            else:
                merged.merge(acc)
        return merged

    def extract_output(self, acc: Accumulator | None) -> dict[str, float | None]:
        return acc.metrics() if acc is not None else {"example_count": 0.0}


def _kind(task: str, width: int) -> str:
    if task in ("binary", "multiclass", "regression"):
        return task
    if task == "classification":
        return "binary" if width == 1 else "multiclass"
    raise ConfigError(f"evaluate.task: unknown task {task!r}")


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


class PredictAndSlice(beam.DoFn):
    """A batch of serialized examples -> ((model, slice key), (labels, predictions)) per slice.

    The SavedModels and the label function are loaded once per DoFn instance, in `setup`.
    """

    def __init__(self, job: EvalJob) -> None:
        self._job = job
        self._rows = Metrics.counter(NAMESPACE, "rows")

    def setup(self) -> None:
        import tensorflow as tf
        from tfx_bsl.coders import example_coder

        self._tf = tf
        self._decoder = example_coder.ExamplesToRecordBatchDecoder()
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

    def process(self, records: list[bytes]) -> Iterator[tuple[tuple[str, str], Any]]:
        tf = self._tf
        serialized = tf.constant(records)
        batch = self._decoder.DecodeBatch(records)
        labels = self._label_values(serialized, batch)
        predictions = {
            name: fn(examples=serialized)["predictions"].numpy().reshape(len(records), -1)
            for name, fn in self._models.items()
        }
        self._rows.inc(len(records))
        groups: list[tuple[str, np.ndarray | None]] = [(OVERALL, None)]
        for spec in self._job.slice_specs:
            keys = slice_keys(batch, spec, self._job.boundaries).dictionary_encode()
            codes = keys.indices.to_numpy(zero_copy_only=False)
            valid = keys.indices.is_valid().to_numpy(zero_copy_only=False)
            for code, key in enumerate(keys.dictionary.to_pylist()):
                groups.append((key, np.flatnonzero(valid & (codes == code))))
        for key, rows in groups:
            for name, preds in predictions.items():
                if rows is None:
                    yield (name, key), (labels, preds)
                elif len(rows):
                    yield (name, key), (labels[rows], preds[rows])

    def _label_values(self, serialized: Any, batch: pa.RecordBatch) -> np.ndarray:
        if self._labels is not None:
            return self._labels(serialized).numpy().reshape(-1).astype(np.float64)
        key = self._job.label_key
        if key not in batch.schema.names:
            raise DataError(
                f"evaluate: label {key!r} is neither an output of the model's transform graph "
                f"nor a column of the eval examples (columns: {batch.schema.names})"
            )
        values = pc.cast(first_values(batch.column(key)), pa.float64())
        if values.null_count:
            raise DataError(f"evaluate: label {key!r} is missing in {values.null_count} eval rows")
        return values.to_numpy(zero_copy_only=False)


class EvaluateModels(beam.PTransform):
    """Raw eval examples -> JSON lines ``{"model", "slice", "metrics"}``, one per (model, slice)."""

    def __init__(self, job: EvalJob) -> None:
        super().__init__()
        self._job = job

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        job = self._job
        return (
            pbegin
            | "Read" >> beam.io.ReadFromTFRecord(job.examples)
            | "Batch"
            >> beam.BatchElements(min_batch_size=job.batch_size, max_batch_size=job.batch_size)
            | "PredictAndSlice" >> beam.ParDo(PredictAndSlice(job))
            | "Metrics"
            >> beam.CombinePerKey(SliceMetricsCombineFn(job.task, job.buckets, job.threshold))
            | "ToJson" >> beam.MapTuple(_result_line)
        )


def _result_line(key: tuple[str, str], metrics: dict[str, float | None]) -> str:
    return json.dumps({"model": key[0], "slice": key[1], "metrics": metrics})


# ---------------------------------------------------------------------------------------------
# Thresholds (plain functions)


def assemble(
    rows: list[dict[str, Any]], selected: list[str]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(overall, slices) as ``{"candidate", "baseline", "difference"}`` dicts of metrics."""
    by_slice: dict[str, dict[str, Any]] = {}
    for row in rows:
        metrics = {k: v for k, v in row["metrics"].items() if k in selected or k in ALWAYS}
        by_slice.setdefault(row["slice"], {})[row["model"]] = metrics
    for entry in by_slice.values():
        cand, base = entry.setdefault(CANDIDATE, {}), entry.get(BASELINE)
        entry.setdefault(BASELINE, None)
        entry["difference"] = (
            {
                k: (v - base[k]) if v is not None and base.get(k) is not None else None
                for k, v in cand.items()
            }
            if base
            else None
        )
    overall = by_slice.pop(OVERALL, {CANDIDATE: {}, BASELINE: None, "difference": None})
    return overall, dict(sorted(by_slice.items()))


def check(
    section: EvaluateSection,
    overall: dict[str, Any],
    slices: dict[str, dict[str, Any]],
    has_baseline: bool,
) -> list[dict[str, Any]]:
    """Every threshold check, passed or not."""
    checks = []
    targets: list[tuple[str, dict[str, MetricThreshold], dict[str, Any] | None]] = [
        (OVERALL, section.thresholds, overall)
    ]
    for st in section.slice_thresholds:
        key = canonical_slice(st.slice)
        targets.append((key, st.thresholds, slices.get(key)))
    for slice_key, thresholds, entry in targets:
        for metric, t in thresholds.items():
            for kind in ("lower", "upper", "min_change_abs", "min_change_rel"):
                bound = getattr(t, kind)
                if bound is not None:
                    checks.append(_check_one(slice_key, metric, kind, bound, entry, has_baseline))
    return checks


def _check_one(
    slice_key: str,
    metric: str,
    kind: str,
    bound: float,
    entry: dict[str, Any] | None,
    has_baseline: bool,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "slice": slice_key,
        "metric": metric,
        "kind": kind,
        "threshold": bound,
        "value": None,
        "baseline": None,
        "change": None,
        "passed": False,
    }
    where = "" if slice_key == OVERALL else f" on slice {slice_key}"
    if entry is None:
        result["message"] = f"{metric}{where}: no eval rows in this slice"
        return result
    value = entry[CANDIDATE].get(metric)
    result["value"] = value
    if value is None:
        result["message"] = f"{metric}{where} is undefined for the candidate (too few rows?)"
        return result
    if kind == "lower":
        result["passed"] = value >= bound
        op = ">=" if result["passed"] else "<"
        result["message"] = f"{metric}{where} {value:.4f} {op} lower bound {bound:g}"
        return result
    if kind == "upper":
        result["passed"] = value <= bound
        op = "<=" if result["passed"] else ">"
        result["message"] = f"{metric}{where} {value:.4f} {op} upper bound {bound:g}"
        return result
    base = (entry.get(BASELINE) or {}).get(metric)
    result["baseline"] = base
    if not has_baseline or base is None:
        result["passed"] = True
        result["skipped"] = True
        why = "no baseline model" if not has_baseline else "undefined for the baseline"
        result["message"] = f"{metric}{where}: {kind} not checked: {why}"
        return result
    improvement = (base - value) if metric in LOWER_IS_BETTER else (value - base)
    if kind == "min_change_rel":
        improvement = improvement / abs(base) if base else math.copysign(math.inf, improvement)
    result["change"] = improvement
    result["passed"] = bool(improvement >= bound)
    op = ">=" if result["passed"] else "<"
    unit = " (relative)" if kind == "min_change_rel" else ""
    result["message"] = (
        f"{metric}{where} {value:.4f} vs baseline {base:.4f}: improvement {improvement:+.4f}"
        f"{unit} {op} {kind} {bound:g}"
    )
    return result


# ---------------------------------------------------------------------------------------------
# The stage


def _task(section: EvaluateSection, model: Artifact) -> str:
    if section.task != "auto":
        return section.task
    trained = set(model.properties.get("metrics") or {})
    classification = trained & {"auc", "accuracy", "precision", "recall"}
    return "classification" if classification else "regression"


def prepare(section: EvaluateSection, inputs: dict[str, Artifact], ctx: StageContext) -> Prepared:
    model, examples = inputs["model"], inputs["examples"]
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
    pattern = f"{split_dir(examples.path, section.split)}/*.tfrecord*"
    models = {CANDIDATE: str(model.path / "saved_model")}
    if baseline is not None:
        models[BASELINE] = str(baseline.path / "saved_model")
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
    )
    evaluation = ctx.output("evaluation", "ModelEvaluation")
    blessing = ctx.output("blessing", "ModelBlessing")
    results = evaluate_models(job, ctx.output_dir / "_results", ctx)
    kind = results["kind"]
    selected = list(section.metrics) or DEFAULT_METRICS[kind]
    overall, slices = assemble(results["rows"], selected)
    has_baseline = baseline is not None
    checks = check(section, overall, slices, has_baseline)
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
    }
    (evaluation.path / "metrics.json").write_text(json.dumps(report, indent=1, default=_json))
    verdict = "BLESSED" if blessed else "NOT_BLESSED"
    (blessing.path / verdict).touch()
    (blessing.path / "reasons.json").write_text(
        json.dumps(
            {
                "blessed": blessed,
                "model_version": version,
                "baseline_version": base_version,
                "checks": checks,
            },
            indent=1,
            default=_json,
        )
    )
    headline = {k: v for k, v in overall[CANDIDATE].items() if k in selected or k in ALWAYS}
    failed = [c["message"] for c in checks if not c["passed"]]
    evaluation.properties.update(
        metrics=headline, model_version=version, baseline_version=base_version, task=kind
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
    """Runs the Beam job; returns {"rows": [{"model", "slice", "metrics"}], "kind", "count"}."""
    from apache_beam.options.pipeline_options import PipelineOptions

    options = ctx.beam_options() if ctx is not None else PipelineOptions(["--runner=DirectRunner"])
    scratch.mkdir(parents=True, exist_ok=True)
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
    rows = []
    for f in sorted(scratch.glob("results*.jsonl")):
        rows += [json.loads(line) for line in f.read_text().splitlines() if line]
    for f in scratch.iterdir():
        f.unlink()
    scratch.rmdir()
    if not rows:
        raise DataError(f"evaluate: no eval examples match {job.examples}")
    overall = next(r for r in rows if r["slice"] == OVERALL and r["model"] == CANDIDATE)
    m = overall["metrics"]
    kind = "regression" if "rmse" in m else "binary" if "prediction_mean" in m else "multiclass"
    return {"rows": rows, "kind": kind, "count": count}


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
