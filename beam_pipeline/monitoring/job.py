"""The monitor's Beam job: logged predictions in a window, joined with their labels, summarised.

::

    prediction segments ─ ReadPredictions ─┐
    (online and batch)                     ├─ JoinLabels ─┬─ tfdv.GenerateStatistics (features)
    feedback ─ ReadFeedback ─ LatestLabels ┘              ├─ Summarize (traffic, histograms)
                              (side input)                ├─ LabelAndSlice ─ metrics per slice
                                                          └─ LabelledRows (CSV for retraining)

Every element is an Arrow record batch (one per segment part): no per-row Python on the hot path.
The feedback log is small next to the prediction log (a label per labelled request), so the
join is map-side: the deduplicated labels are one side input, indexed once per worker.
Bad input is counted (Beam counters) and written to ``rejected/`` with its file and line.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics.metric import Metrics, MetricsFilter

from beam_pipeline.core.artifacts import STATS_FILE
from beam_pipeline.evaluation.combine import AccumulateMetrics
from beam_pipeline.monitoring import logs
from beam_pipeline.monitoring.lineage import ModelInfo

NAMESPACE = "monitor"
OVERALL = "Overall"
COUNTERS = (
    "segments",
    "rows_read",
    "predictions",
    "outside_window",
    "other_model",
    "bad_values",
    "corrupt_lines",
    "corrupt_segments",
    "labelled",
    "labelled_in_window",
    "unlabelable",
    "feedback_segments",
)
ROW_BATCH = 65536  # rows per element after a segment is read


@dataclass(frozen=True)
class MonitorJob:
    """Everything the Beam job needs (picklable)."""

    segments: list[str]
    feedback: list[str]
    model_name: str
    columns: dict[str, str]  # logged raw features -> int | float | string
    label_column: str
    label_kind: str
    since: dt.datetime
    until: dt.datetime
    models: dict[int, ModelInfo]
    output: str  # the report folder (statistics, rejected lines, results)
    label_values: dict[str, Any] = field(default_factory=dict)
    slice_specs: list[tuple[str, ...]] = field(default_factory=list)
    boundaries: dict[str, list[float]] = field(default_factory=dict)
    task: str = "classification"
    auc_buckets: int = 10_000
    threshold: float = 0.5
    bins: int = 10
    only_version: int | None = None  # --model: the rows of this version alone


def _counter(name: str) -> Any:
    return Metrics.counter(NAMESPACE, name)


# ---------------------------------------------------------------------------------------------
# Reading


class ReadPredictions(beam.DoFn):
    """A segment path in; typed record batches of its rows in the window out; bad lines tagged."""

    REJECTED = "rejected"

    def __init__(self, job: MonitorJob) -> None:
        self._job = job
        self._c = {name: _counter(name) for name in COUNTERS}

    def process(self, path: str) -> Iterator[Any]:
        job = self._job
        segment = logs.read_segment(path)
        self._c["segments"].inc()
        part = logs.predictions(segment, job.model_name, job.columns, job.since, job.until)
        if segment.rejected:
            self._c["corrupt_segments"].inc()
            self._c["corrupt_lines"].inc(len(segment.rejected))
            for r in segment.rejected:
                yield beam.pvalue.TaggedOutput(self.REJECTED, r.to_json())
        self._c["rows_read"].inc(part.rows_read)
        self._c["outside_window"].inc(part.outside_window)
        self._c["other_model"].inc(part.wrong_model)
        self._c["bad_values"].inc(part.bad_values)
        batch = part.batch
        if job.only_version is not None:
            mine = pc.fill_null(pc.equal(batch.column("model_version"), job.only_version), False)
            self._c["other_model"].inc(batch.num_rows - int(pc.sum(mine).as_py() or 0))
            batch = batch.filter(mine)
        self._c["predictions"].inc(batch.num_rows)
        for start in range(0, batch.num_rows, ROW_BATCH):
            yield batch.slice(start, ROW_BATCH)


class ReadFeedback(beam.DoFn):
    """A feedback segment in; (request_id, label, time) tables out; bad lines tagged."""

    REJECTED = "rejected"

    def __init__(self, job: MonitorJob) -> None:
        self._job = job
        self._corrupt = _counter("corrupt_lines")
        self._corrupt_segments = _counter("corrupt_segments")
        self._segments = _counter("feedback_segments")
        self._wrong = _counter("feedback_wrong_type")
        self._records = _counter("feedback_records")

    def process(self, path: str) -> Iterator[Any]:
        segment = logs.read_segment(path)
        self._segments.inc()
        table, wrong = logs.feedback_table(segment, self._job.label_kind, self._job.label_values)
        if segment.rejected:
            self._corrupt_segments.inc()
            self._corrupt.inc(len(segment.rejected))
            for r in segment.rejected:
                yield beam.pvalue.TaggedOutput(self.REJECTED, r.to_json())
        self._wrong.inc(wrong)
        self._records.inc(segment.table.num_rows)
        yield table


class LatestLabelsFn(beam.CombineFn):
    """Feedback tables -> (one label per request id, the last written wins; duplicates dropped)."""

    def __init__(self, label_kind: str) -> None:
        self._kind = label_kind

    def create_accumulator(self) -> list[pa.Table]:
        return []

    def add_input(self, acc: list[pa.Table], table: pa.Table) -> list[pa.Table]:
        acc.append(table)
        return acc

    def merge_accumulators(self, accs: Any) -> list[pa.Table]:
        return [t for acc in accs for t in acc]

    def extract_output(self, acc: list[pa.Table]) -> tuple[pa.Table, int]:
        return logs.latest_labels(acc, self._kind)


def labels_summary(labels: tuple[pa.Table, int], since: dt.datetime, until: dt.datetime) -> str:
    """JSON: deduplicated labels, duplicates dropped, labels written inside the window."""
    table, duplicates = labels
    inside = logs.in_window(table.column("time").combine_chunks(), since, until)
    count = int(pc.sum(inside).as_py() or 0) if table.num_rows else 0
    return json.dumps({"labels": table.num_rows, "duplicates": duplicates, "in_window": count})


# ---------------------------------------------------------------------------------------------
# Joining


class JoinLabels(beam.DoFn):
    """A prediction batch and the labels (side input) -> the batch with a ``__label__`` column.

    The labels' request ids are indexed once per worker (a pandas hash index), then every batch
    is looked up in one vectorised call.
    """

    def __init__(self, job: MonitorJob) -> None:
        self._job = job
        self._labelled = _counter("labelled")
        self._in_window = _counter("labelled_in_window")
        self._index: Any = None
        self._key: Any = None

    def process(self, batch: pa.RecordBatch, labels: tuple[pa.Table, int]) -> Iterator[Any]:
        table = labels[0]
        if self._key is not table:
            self._key = table
            self._index = pd.Index(table.column("request_id").to_pandas())
            self._values = table.column("label").combine_chunks()
            self._times = table.column("time").combine_chunks()
        yield join(batch, self._index, self._values, self._times, self._job, self._count)

    def _count(self, labelled: int, in_window: int) -> None:
        self._labelled.inc(labelled)
        self._in_window.inc(in_window)


LABEL = "__label__"


def join(
    batch: pa.RecordBatch,
    index: pd.Index,
    values: pa.Array,
    times: pa.Array,
    job: MonitorJob,
    count: Any = None,
) -> pa.RecordBatch:
    """The batch plus its labels (null where a request has none)."""
    positions = index.get_indexer(batch.column("request_id").to_pandas())
    found = positions >= 0
    take = pa.array(np.where(found, positions, 0))
    mask = pa.array(~found)
    label = (
        pc.if_else(mask, pa.scalar(None, values.type), values.take(take))
        if len(values)
        else (pa.nulls(batch.num_rows, values.type))
    )
    if count is not None and found.any():
        when = times.take(pa.array(positions[found]))
        count(
            int(found.sum()), int(pc.sum(logs.in_window(when, job.since, job.until)).as_py() or 0)
        )
    return pa.RecordBatch.from_arrays([*batch.columns, label], names=[*batch.schema.names, LABEL])


# ---------------------------------------------------------------------------------------------
# Summaries


def features_of(batch: pa.RecordBatch, columns: list[str]) -> pa.RecordBatch:
    """The logged features as TFDV wants them: one list value per row (null stays missing)."""
    arrays = []
    for name in columns:
        col = batch.column(name)
        offsets = pa.array(np.arange(len(col) + 1, dtype=np.int32))
        lists = pa.ListArray.from_arrays(offsets, col)
        arrays.append(pc.if_else(col.is_valid(), lists, pa.scalar(None, lists.type)))
    return pa.RecordBatch.from_arrays(arrays, names=columns)


class Summarize(beam.DoFn):
    """A joined batch -> (version, {rows, labelled, histogram, prediction_sum, classes})."""

    def __init__(self, bins: int) -> None:
        self._bins = bins

    def process(self, batch: pa.RecordBatch) -> Iterator[tuple[int, dict[str, Any]]]:
        versions = pc.fill_null(batch.column("model_version"), -1).to_numpy(zero_copy_only=False)
        preds = logs.prediction_matrix(batch.column("prediction"))
        labelled = batch.column(LABEL).is_valid().to_numpy(zero_copy_only=False)
        for v in np.unique(versions):
            rows = versions == v
            yield int(v), summary(preds[rows], labelled[rows], self._bins)


def summary(preds: np.ndarray, labelled: np.ndarray, bins: int) -> dict[str, Any]:
    """Sufficient statistics of one version's predictions (merged by `merge_summaries`)."""
    out: dict[str, Any] = {"rows": int(len(preds)), "labelled": int(labelled.sum())}
    finite = preds[np.isfinite(preds).all(axis=1)] if len(preds) else preds
    if preds.shape[1] == 1:
        p = finite[:, 0]
        out["prediction_sum"] = float(p.sum())
        out["histogram"] = np.histogram(np.clip(p, 0, 1), bins=bins, range=(0, 1))[0].tolist()
    else:
        out["classes"] = np.bincount(finite.argmax(axis=1), minlength=preds.shape[1]).tolist()
    return out


def merge_summaries(items: Any) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for s in items:
        for k, v in s.items():
            if isinstance(v, list):
                old = merged.get(k) or [0] * len(v)
                width = max(len(old), len(v))
                old = old + [0] * (width - len(old))
                merged[k] = [a + b for a, b in zip(old, v + [0] * (width - len(v)), strict=True)]
            else:
                merged[k] = merged.get(k, 0) + v
    return merged


class LabelAndSlice(beam.DoFn):
    """A joined batch -> (version, (labels, predictions, slice keys per spec)), labelled rows.

    The label is computed as at evaluation time: the logged raw features plus the label column
    are encoded as tf.Examples and run through the version's transform graph, whose ``label_key``
    output is the label the model was trained on (taxi: ``big_tipper`` from ``tips`` and
    ``fare``). A label that is not a transform output is the label column itself.
    """

    def __init__(self, job: MonitorJob) -> None:
        self._job = job
        self._unlabelable = _counter("unlabelable")
        self._fns: dict[int, Any] = {}
        self._required: dict[int, list[str]] = {}

    def setup(self) -> None:
        import tensorflow as tf

        self._tf = tf

    def _label_fn(self, version: int) -> Any:
        if version in self._fns:
            return self._fns[version]
        info = self._job.models.get(version)
        fn = None
        if info is not None and info.transform_graph and info.label_key:
            import tensorflow_transform as tft

            tf = self._tf
            output = tft.TFTransformOutput(info.transform_graph)
            if info.label_key in output.transformed_feature_spec():
                layer = output.transform_features_layer()
                spec = output.raw_feature_spec()
                key = info.label_key

                @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
                def labels(serialized: Any) -> Any:
                    return layer(tf.io.parse_example(serialized, spec))[key]

                fn = labels
                self._required[version] = [
                    name
                    for name, f in spec.items()
                    if isinstance(f, tf.io.FixedLenFeature) and f.default_value is None
                ]
        self._fns[version] = fn
        return fn

    def process(self, batch: pa.RecordBatch) -> Iterator[tuple[int, Any]]:
        from beam_pipeline.evaluation import slice_keys

        job = self._job
        labelled = batch.column(LABEL).is_valid()
        if not pc.any(labelled).as_py():
            return
        batch = batch.filter(labelled)
        versions = pc.fill_null(batch.column("model_version"), -1).to_numpy(zero_copy_only=False)
        for v in np.unique(versions):
            part = batch.filter(pa.array(versions == v))
            labels, good = self._labels(int(v), part)
            if good is not None:
                part, labels = part.filter(pa.array(good)), labels[good]
            if not part.num_rows:
                continue
            preds = logs.prediction_matrix(part.column("prediction"))
            keys = [slice_keys(part, spec, job.boundaries) for spec in job.slice_specs]
            yield int(v), (labels, preds, keys)

    def _labels(self, version: int, part: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray | None]:
        job = self._job
        fn = self._label_fn(version)
        raw = part.column(LABEL)
        if fn is None:
            values = pc.cast(raw, pa.float64()) if job.label_kind != "string" else raw
            if pa.types.is_string(values.type):
                self._unlabelable.inc(part.num_rows)
                return np.zeros(part.num_rows), np.zeros(part.num_rows, dtype=bool)
            return values.to_numpy(zero_copy_only=False), None
        from beam_pipeline.io.example_coder import encode

        names = [c for c in job.columns if c != job.label_column]
        cols = [part.column(c) for c in names] + [raw]
        batch = pa.RecordBatch.from_arrays(cols, names=[*names, job.label_column])
        # A feature the transform needs in every row (dense in the raw spec, no default) but
        # missing from a logged row: that row cannot be labelled. Found column-wise, up front.
        good = np.ones(part.num_rows, dtype=bool)
        for name in self._required.get(version, []):
            if name in batch.schema.names:
                good &= batch.column(name).is_valid().to_numpy(zero_copy_only=False)
        examples = encode(batch).to_pylist()
        tf = self._tf
        values = np.zeros(part.num_rows)
        rows = np.flatnonzero(good)

        def run(idx: np.ndarray) -> None:  # bisect: only the rows the transform refuses drop
            if not len(idx):
                return
            try:
                out = fn(tf.constant([examples[i] for i in idx]))
                values[idx] = out.numpy().reshape(-1).astype(np.float64)
            except tf.errors.InvalidArgumentError:
                if len(idx) == 1:
                    good[idx[0]] = False
                    return
                run(idx[: len(idx) // 2])
                run(idx[len(idx) // 2 :])

        run(rows)
        bad = int((~good).sum())
        if bad:
            self._unlabelable.inc(bad)
            return values, good
        return values, None


class LabelledRows(beam.DoFn):
    """A joined batch -> its labelled rows as CSV text (raw columns, then the label column);
    their request ids go to a tagged output. `retrain.py` turns them into a new span."""

    IDS = "request_ids"

    def __init__(self, job: MonitorJob) -> None:
        self._job = job

    def process(self, batch: pa.RecordBatch) -> Iterator[Any]:
        import pyarrow.csv as pacsv

        labelled = batch.column(LABEL).is_valid()
        if not pc.any(labelled).as_py():
            return
        part = batch.filter(labelled)
        names = list(self._job.columns)
        table = pa.Table.from_arrays(
            [part.column(c) for c in names] + [part.column(LABEL)],
            names=[*names, self._job.label_column],
        )
        buf = pa.BufferOutputStream()
        pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False))
        yield buf.getvalue().to_pybytes().decode().rstrip("\n")
        ids = part.column("request_id")
        yield beam.pvalue.TaggedOutput(self.IDS, "\n".join(ids.to_pylist()))


def csv_header(job: MonitorJob) -> str:
    return ",".join([*job.columns, job.label_column])


# ---------------------------------------------------------------------------------------------
# The pipeline


class MonitorLogs(beam.PTransform):
    """Segments -> writes statistics, summaries, metric rows and rejected lines under output."""

    def __init__(self, job: MonitorJob) -> None:
        super().__init__()
        self._job = job

    def expand(self, pbegin: beam.pvalue.PBegin) -> Any:
        import tensorflow_data_validation as tfdv

        job = self._job
        out = Path(job.output)
        read = (
            pbegin
            | "Segments" >> beam.Create(job.segments)
            | "Spread" >> beam.Reshuffle()
            | "Read"
            >> beam.ParDo(ReadPredictions(job)).with_outputs(ReadPredictions.REJECTED, main="rows")
        )
        feedback = (
            pbegin
            | "FeedbackSegments" >> beam.Create(job.feedback)
            | "ReadFeedback"
            >> beam.ParDo(ReadFeedback(job)).with_outputs(ReadFeedback.REJECTED, main="labels")
        )
        labels = feedback.labels | "Latest" >> beam.CombineGlobally(LatestLabelsFn(job.label_kind))
        _ = (
            labels
            | "LabelsSummary" >> beam.Map(labels_summary, job.since, job.until)
            | "WriteLabels" >> beam.io.WriteToText(str(out / "_labels"), shard_name_template="")
        )
        joined = read.rows | "Join" >> beam.ParDo(JoinLabels(job), beam.pvalue.AsSingleton(labels))
        names = list(job.columns)
        _ = (
            joined
            | "Features" >> beam.Map(features_of, names)
            | "Statistics" >> tfdv.GenerateStatistics(tfdv.StatsOptions())
            | "WriteStatistics" >> tfdv.WriteStatisticsToBinaryFile(str(out / STATS_FILE))
        )
        _ = (
            joined
            | "Summarize" >> beam.ParDo(Summarize(job.bins))
            | "PerVersion" >> beam.CombinePerKey(merge_summaries)
            | "SummaryJson" >> beam.MapTuple(lambda v, s: json.dumps({"version": v, **s}))
            | "WriteSummary"
            >> beam.io.WriteToText(str(out / "_traffic"), file_name_suffix=".jsonl")
        )
        _ = (
            joined
            | "LabelAndSlice" >> beam.ParDo(LabelAndSlice(job))
            | "Metrics"
            >> beam.CombinePerKey(AccumulateMetrics(job.task, job.auc_buckets, job.threshold))
            | "MetricsJson"
            >> beam.FlatMapTuple(lambda v, acc: _metric_lines(v, acc.result() if acc else {}))
            | "WriteMetrics"
            >> beam.io.WriteToText(str(out / "_quality"), file_name_suffix=".jsonl")
        )
        labelled = joined | "Labelled" >> beam.ParDo(LabelledRows(job)).with_outputs(
            LabelledRows.IDS, main="rows"
        )
        _ = labelled.rows | "WriteLabelled" >> beam.io.WriteToText(
            str(out / "labelled" / "rows"), file_name_suffix=".csv", header=csv_header(job)
        )
        _ = labelled[LabelledRows.IDS] | "WriteIds" >> beam.io.WriteToText(
            str(out / "labelled" / "request_ids"), file_name_suffix=".txt"
        )
        rejected = (
            read[ReadPredictions.REJECTED],
            feedback[ReadFeedback.REJECTED],
        ) | beam.Flatten()
        return rejected | "WriteRejected" >> beam.io.WriteToText(
            str(out / "rejected" / "rejected"), file_name_suffix=".jsonl"
        )


def _metric_lines(version: int, results: dict[str, dict[str, Any]]) -> Iterator[str]:
    for key, metrics in results.items():
        yield json.dumps({"version": version, "slice": key, "metrics": metrics})


def run_job(job: MonitorJob, options: Any) -> dict[str, Any]:
    """Run the Beam job; returns counters, per-version traffic, metric rows and label counts."""
    out = Path(job.output)
    (out / "rejected").mkdir(parents=True, exist_ok=True)
    with beam.Pipeline(options=options) as p:
        _ = p | "Monitor" >> MonitorLogs(job)
    counters = {
        c.key.metric.name: int(c.committed or c.attempted or 0)
        for c in p.result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    }
    traffic = [json.loads(x) for f in sorted(out.glob("_traffic*")) for x in _lines(f)]
    quality = [json.loads(x) for f in sorted(out.glob("_quality*")) for x in _lines(f)]
    labels = json.loads((out / "_labels").read_text())
    for f in [*out.glob("_traffic*"), *out.glob("_quality*"), out / "_labels"]:
        f.unlink()
    for f in (out / "rejected").glob("*.jsonl"):
        if not f.stat().st_size:
            f.unlink()
    return {"counters": counters, "traffic": traffic, "quality": quality, "labels": labels}


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line]
