"""The monitor's Beam job: logged predictions in a window, joined with their labels, summarised.

::

    prediction segments ─ ReadPredictions ─ JoinLabels ─┬─ tfdv.GenerateStatistics (features)
    (online and batch)                      (labels     ├─ CountBuckets (numeric features on
                                             read up    │  the training data's deciles)
                                             front)     ├─ Summarize (traffic, histograms)
                                                        ├─ LabelAndSlice ─ metrics per slice
                                                        └─ LabelledRows (CSV for retraining)

Every element is an Arrow record batch (one per segment part): no per-row Python on the hot path.
On the DirectRunner in_memory the same DoFns run without a runner (`run_in_process`).
The feedback log is small next to the prediction log (a label per labelled request), so it is
read and deduplicated before the pipeline starts (`read_feedback`) and travels inside the join's
DoFn: the read, the join and every branch after it fuse into one stage, and no joined batch is
pickled between stages. Bad input is counted (Beam counters) and written to ``rejected/`` with
its file and line.
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
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics.metric import Metrics

from beam_pipeline.core.artifacts import STATS_FILE, rejected_dir
from beam_pipeline.evaluation.combine import AccumulateMetrics
from beam_pipeline.io import dead_letters, filesystem
from beam_pipeline.io.dead_letters import WriteDeadLetters
from beam_pipeline.monitoring import logs
from beam_pipeline.monitoring.lineage import ModelInfo

NAMESPACE = "monitor"
OVERALL = "Overall"
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
    buckets: dict[str, list[float]] = field(default_factory=dict)  # numeric feature -> deciles
    float_columns: list[str] = field(default_factory=list)  # stored as float32 in tf.Examples


class Counting:
    """Beam counters of the monitor's namespace, also summed in ``counts``: outside a pipeline
    (`run_in_process`) Beam's counters count nothing, and the run reads ``counts`` instead."""

    counts: dict[str, int]

    def _inc(self, name: str, n: int = 1) -> None:
        Metrics.counter(NAMESPACE, name).inc(n)
        self.counts[name] = self.counts.get(name, 0) + n


# ---------------------------------------------------------------------------------------------
# Reading


# Record batches travel typed: Beam then codes them with TFDV's Arrow IPC coder, which also
# sizes the sampled elements. Untyped, each sampled batch (nearly all of them: a segment makes
# few, large elements) was pickled with its parent's whole buffers: 10 GB, 5-16 s at 1M rows.
@beam.typehints.with_output_types(pa.RecordBatch)
class ReadPredictions(Counting, beam.DoFn):
    """A segment path in; typed record batches of its rows in the window out; bad lines tagged."""

    REJECTED = "rejected"

    def __init__(self, job: MonitorJob) -> None:
        self._job = job
        self.counts: dict[str, int] = {}

    def process(self, path: str) -> Iterator[Any]:
        for item in self.parts(path):
            yield item if isinstance(item, beam.pvalue.TaggedOutput) else own(item)

    def parts(self, path: str) -> Iterator[Any]:
        """`process` without the copies Beam needs (`own`): slices of the segment's batch."""
        job = self._job
        segment = logs.read_segment(path)
        self._inc("segments")
        part = logs.predictions(segment, job.model_name, job.columns, job.since, job.until)
        if segment.rejected:
            self._inc("corrupt_segments")
            self._inc("corrupt_lines", len(segment.rejected))
            for r in segment.rejected:
                yield beam.pvalue.TaggedOutput(self.REJECTED, r.to_json())
        self._inc("rows_read", part.rows_read)
        self._inc("outside_window", part.outside_window)
        self._inc("other_model", part.wrong_model)
        self._inc("bad_values", part.bad_values)
        batch = part.batch
        if job.only_version is not None:
            mine = pc.fill_null(pc.equal(batch.column("model_version"), job.only_version), False)
            self._inc("other_model", batch.num_rows - int(pc.sum(mine).as_py() or 0))
            batch = batch.filter(mine)
        self._inc("predictions", batch.num_rows)
        for start in range(0, batch.num_rows, ROW_BATCH):
            yield batch.slice(start, ROW_BATCH)


def own(part: pa.RecordBatch) -> pa.RecordBatch:
    """A slice as a batch with buffers of its own: a slice keeps its parent's buffers alive and
    Beam, sizing the few large elements it samples, would code them whole (70 MB per element
    at 1M rows, inside TFDV too)."""
    return part.take(pa.array(np.arange(part.num_rows)))


@dataclass
class Feedback:
    """The feedback log, read up front: one label per request id, and what was wrong with it."""

    labels: pa.Table  # request_id, label, time
    counters: dict[str, int]
    summary: dict[str, int]
    rejected: list[str]  # JSON lines (file, line, reason, raw)


def read_feedback(job: MonitorJob) -> Feedback:
    """Every feedback segment parsed, typed and deduplicated (the last label written wins)."""
    tables, rejected = [], []
    counters = dict.fromkeys(
        ("feedback_segments", "feedback_records", "feedback_wrong_type", "corrupt_lines"), 0
    )
    counters["corrupt_segments"] = 0
    for path in job.feedback:
        segment = logs.read_segment(path)
        table, wrong = logs.feedback_table(segment, job.label_kind, job.label_values)
        counters["feedback_segments"] += 1
        counters["feedback_records"] += segment.table.num_rows
        counters["feedback_wrong_type"] += wrong
        if segment.rejected:
            counters["corrupt_segments"] += 1
            counters["corrupt_lines"] += len(segment.rejected)
            rejected += [r.to_json() for r in segment.rejected]
        tables.append(table)
    table, duplicates = logs.latest_labels(tables, job.label_kind)
    inside = logs.in_window(table.column("time").combine_chunks(), job.since, job.until)
    count = int(pc.sum(inside).as_py() or 0) if table.num_rows else 0
    summary = {"labels": table.num_rows, "duplicates": duplicates, "in_window": count}
    return Feedback(table, counters, summary, rejected)


# ---------------------------------------------------------------------------------------------
# Joining


@beam.typehints.with_output_types(pa.RecordBatch)
class JoinLabels(Counting, beam.DoFn):
    """A prediction batch -> the batch with a ``__label__`` column (the labels travel with the
    DoFn; their request ids are indexed once per worker, then every batch is looked up in one
    vectorised call)."""

    def __init__(self, job: MonitorJob, labels: pa.Table) -> None:
        self._job = job
        self._labels = labels
        self.counts: dict[str, int] = {}

    def setup(self) -> None:
        table = self._labels
        self._index = table.column("request_id").combine_chunks()
        self._values = table.column("label").combine_chunks()
        self._times = table.column("time").combine_chunks()

    def process(self, batch: pa.RecordBatch) -> Iterator[Any]:
        yield join(batch, self._index, self._values, self._times, self._job, self._count)

    def _count(self, labelled: int, in_window: int) -> None:
        self._inc("labelled", labelled)
        self._inc("labelled_in_window", in_window)


LABEL = "__label__"


def join(
    batch: pa.RecordBatch,
    index: pa.Array,
    values: pa.Array,
    times: pa.Array,
    job: MonitorJob,
    count: Any = None,
) -> pa.RecordBatch:
    """The batch plus its labels (null where a request has none). ``index``: the labels'
    request ids (unique), looked up with Arrow's hash kernel, no Python string per row."""
    ids = batch.column("request_id")
    if not len(index):
        label = pa.nulls(batch.num_rows, values.type)
        return pa.RecordBatch.from_arrays(
            [*batch.columns, label], names=[*batch.schema.names, LABEL]
        )
    positions = pc.index_in(ids, value_set=index)  # null where there is no label
    label = values.take(positions)
    found = positions.drop_null()
    if count is not None and len(found):
        when = times.take(found)
        count(len(found), int(pc.sum(logs.in_window(when, job.since, job.until)).as_py() or 0))
    return pa.RecordBatch.from_arrays([*batch.columns, label], names=[*batch.schema.names, LABEL])


# ---------------------------------------------------------------------------------------------
# Summaries


def features_of(batch: pa.RecordBatch, columns: list[str]) -> pa.RecordBatch:
    """The logged features as TFDV wants them: one list value per row (null stays missing)."""
    arrays = []
    for name in columns:
        col = batch.column(name)
        offsets = pa.array(np.arange(len(col) + 1, dtype=np.int32))
        if col.null_count:  # a missing value is a null list, not a list holding a null
            mask = col.is_null()
            lists = pa.ListArray.from_arrays(offsets, col.fill_null(_filler(col.type)), mask=mask)
        else:
            lists = pa.ListArray.from_arrays(offsets, col)
        arrays.append(lists)
    return pa.RecordBatch.from_arrays(arrays, names=columns)


def _filler(kind: pa.DataType) -> Any:
    return "" if pa.types.is_string(kind) else 0


def count_buckets(batch: pa.RecordBatch, job: MonitorJob) -> dict[str, list[int]]:
    """Numeric features counted on the reference's deciles (`comparators.bucket_counts`)."""
    from beam_pipeline.core.comparators import bucket_counts

    floats = set(job.float_columns)
    out = {}
    for name, edges in job.buckets.items():
        col = batch.column(name)
        values = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)  # null -> NaN
        out[name] = bucket_counts(values, edges, float32=name in floats).tolist()
    return out


def sum_buckets(items: Any) -> dict[str, list[int]]:
    total: dict[str, list[int]] = {}
    for counts in items:
        for name, c in counts.items():
            old = total.get(name)
            total[name] = c if old is None else [a + b for a, b in zip(old, c, strict=True)]
    return total


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


class LabelAndSlice(Counting, beam.DoFn):
    """A joined batch -> (version, (labels, predictions, slice keys per spec)), labelled rows.

    The label is computed as at evaluation time: the logged raw features plus the label column
    are encoded as tf.Examples and run through the version's transform graph, whose ``label_key``
    output is the label the model was trained on (taxi: ``big_tipper`` from ``tips`` and
    ``fare``). A label that is not a transform output is the label column itself.
    """

    def __init__(self, job: MonitorJob) -> None:
        self._job = job
        self.counts: dict[str, int] = {}
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

                # One trace per version and worker: a fixed signature, no autograph (the
                # function is straight-line TensorFlow; autograph only adds conversion time).
                @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
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
                self._inc("unlabelable", part.num_rows)
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
            self._inc("unlabelable", bad)
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

    def __init__(self, job: MonitorJob, labels: pa.Table) -> None:
        super().__init__()
        self._job = job
        self._labels = labels

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
        joined = read.rows | "Join" >> beam.ParDo(JoinLabels(job, self._labels))
        names = list(job.columns)
        _ = (
            joined
            | "Features" >> beam.Map(features_of, names).with_output_types(pa.RecordBatch)
            | "Statistics" >> tfdv.GenerateStatistics(tfdv.StatsOptions())
            | "WriteStatistics" >> tfdv.WriteStatisticsToBinaryFile(str(out / STATS_FILE))
        )
        _ = (
            joined
            | "CountBuckets" >> beam.Map(count_buckets, job)
            | "SumBuckets" >> beam.CombineGlobally(sum_buckets)
            | "BucketsJson" >> beam.Map(json.dumps)
            | "WriteBuckets" >> beam.io.WriteToText(str(out / "_buckets"), shard_name_template="")
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
        return read[ReadPredictions.REJECTED] | "WriteRejected" >> WriteDeadLetters(out)


def _metric_lines(version: int, results: dict[str, dict[str, Any]]) -> Iterator[str]:
    for key, metrics in results.items():
        yield json.dumps({"version": version, "slice": key, "metrics": metrics})


def run_job(job: MonitorJob, options: Any, in_process: bool = False) -> dict[str, Any]:
    """Run the job (the Beam pipeline, or with ``in_process`` `run_in_process`); returns
    counters, per-version traffic, metric rows, label counts and the numeric features' decile
    counts."""
    out = Path(job.output)
    feedback = read_feedback(job)
    if feedback.rejected:
        filesystem.write_text(
            rejected_dir(out) / "feedback.jsonl", "\n".join(feedback.rejected) + "\n"
        )
    if in_process:
        results = run_in_process(job, feedback.labels)
    else:
        results = _run_beam(job, feedback.labels, options)
    counters = results["counters"]
    for name, value in feedback.counters.items():
        counters[name] = counters.get(name, 0) + value
    for f in rejected_dir(out).glob("*.jsonl"):
        if not f.stat().st_size:
            filesystem.remove(f)
    return {**results, "labels": feedback.summary}


def _run_beam(job: MonitorJob, labels: pa.Table, options: Any) -> dict[str, Any]:
    out = Path(job.output)
    with beam.Pipeline(options=options) as p:
        _ = p | "Monitor" >> MonitorLogs(job, labels)
    counters = dead_letters.counters(p.result, NAMESPACE)
    traffic = [json.loads(x) for f in sorted(out.glob("_traffic*")) for x in _lines(f)]
    quality = [json.loads(x) for f in sorted(out.glob("_quality*")) for x in _lines(f)]
    buckets = json.loads((out / "_buckets").read_text() or "{}") if job.buckets else {}
    for f in [*out.glob("_traffic*"), *out.glob("_quality*"), out / "_buckets"]:
        filesystem.remove(f)
    return {"counters": counters, "traffic": traffic, "quality": quality, "buckets": buckets}


def run_in_process(job: MonitorJob, labels: pa.Table) -> dict[str, Any]:
    """`MonitorLogs` without a runner: the same DoFns and combiners over the segments in turn,
    in this process (the in-memory DirectRunner runs them in one thread anyway), TFDV's
    statistics by `statistics.InProcessStatistics`. Writes what the Beam job writes, to the
    single shard the in-memory DirectRunner writes (statistics, rejected lines, labelled rows and
    their ids); returns what `_run_beam` returns, read from the same JSON.
    tests/monitoring/test_in_process.py compares the two. Saves Beam's pipeline construction
    (pickling every DoFn, the labels inside the join's), bundle set-up and shard renames: about
    4 s of the 10 s at 1M rows."""
    from concurrent.futures import Future, ThreadPoolExecutor

    import tensorflow_data_validation as tfdv

    from beam_pipeline.core.artifacts import rejected_prefix
    from beam_pipeline.monitoring.statistics import InProcessStatistics

    out = Path(job.output)
    shard = "-00000-of-00001"
    names = list(job.columns)
    read, joiner, label = ReadPredictions(job), JoinLabels(job, labels), LabelAndSlice(job)
    joiner.setup()
    label.setup()
    summarize, labelled = Summarize(job.bins), LabelledRows(job)
    metrics = AccumulateMetrics(job.task, job.auc_buckets, job.threshold)
    stats = InProcessStatistics(tfdv.StatsOptions())
    summaries: dict[int, dict[str, Any]] = {}
    accs: dict[int, Any] = {}
    buckets: dict[str, list[int]] = {}
    filesystem.makedirs(rejected_dir(out))
    filesystem.makedirs(out / "labelled")
    # TFDV's statistics in a second thread, batch after batch in order (the same result as one
    # thread), while this one labels, counts and writes: both spend most of their time in
    # Arrow, NumPy and TensorFlow kernels that let go of the GIL.
    pending: Future[None] | None = None
    with (
        ThreadPoolExecutor(1, thread_name_prefix="monitor-statistics") as pool,
        filesystem.open_write(rejected_prefix(out) + shard + ".jsonl") as dead,
        filesystem.open_write(out / "labelled" / f"rows{shard}.csv") as rows,
        filesystem.open_write(out / "labelled" / f"request_ids{shard}.txt") as ids,
    ):
        rows.write((csv_header(job) + "\n").encode())
        for path in job.segments:
            for item in read.parts(path):
                if isinstance(item, beam.pvalue.TaggedOutput):
                    dead.write(item.value.encode() + b"\n")
                    continue
                [batch] = joiner.process(item)
                if pending is not None:
                    pending.result()
                pending = pool.submit(stats.add, features_of(batch, names))
                if job.buckets:
                    buckets = sum_buckets([buckets, count_buckets(batch, job)])
                for v, s in summarize.process(batch):
                    summaries[v] = merge_summaries([summaries.get(v, {}), s])
                for v, element in label.process(batch):
                    accs[v] = metrics.add_input(accs.get(v, metrics.create_accumulator()), element)
                for text in labelled.process(batch):
                    sink = ids if isinstance(text, beam.pvalue.TaggedOutput) else rows
                    value = text.value if isinstance(text, beam.pvalue.TaggedOutput) else text
                    sink.write(value.encode() + b"\n")
        if pending is not None:
            pending.result()
    filesystem.write_bytes(out / STATS_FILE, stats.result().SerializeToString())
    # The JSON the Beam job's files hold, read back the same way.
    traffic = [json.dumps({"version": v, **s}) for v, s in summaries.items()]
    quality = [x for v, acc in accs.items() for x in _metric_lines(v, acc.result() if acc else {})]
    return {
        "counters": {**read.counts, **joiner.counts, **label.counts},
        "traffic": [json.loads(x) for x in traffic],
        "quality": [json.loads(x) for x in quality],
        "buckets": json.loads(json.dumps(buckets)) if job.buckets else {},
    }


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line]
