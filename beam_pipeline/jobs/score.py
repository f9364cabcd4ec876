"""Batch scoring on Beam: raw files in, one prediction record per readable row out.

``beam-pipeline score CONFIG --input GLOB --output DIR [--model VERSION] [--format FMT]``

Each input file is read by the ingest readers (`beam_pipeline.io.readers`) as typed Arrow record
batches: column types are those the model's training data was ingested with (the ``columns`` of
the Examples in the model's lineage), so a value that ingest would have rejected is rejected here
too. Batches of ``batch_size`` rows go through the model's ``serving_raw`` signature (loaded once
per DoFn, on the formatting thread, while the first blocks are read); reading the next block
overlaps with the model call on a second thread. A CSV's int and float columns keep their own text
where it is a plain number (`beam_pipeline.io.number_text`): the model and the records get it as
it is (``1.50`` stays ``1.50``), with no parse-and-print round trip.
Before the model, every row passes `beam_pipeline.io.raw_inputs.check_rows` (the check the
server shares): a missing value in a column the model requires, a value of the wrong type, or a
NaN/±Infinity in a float column, is a rejected row naming the column, never a default (its raw
values are written as strict JSON, a non-finite float as its text). A batch the model still
refuses is bisected, so only the rows that fail are rejected.

Output record (JSON Lines, the default; the serving request log uses the same fields)::

    {"request_id": "<job>/<file>/<n>", "model_name": "taxi", "model_version": 3,
     "time": "2024-05-01T12:00:00.000Z", "features": {"fare": 12.45, ...}, "prediction": 0.83}

``n`` is the 0-based index of the row among the readable rows of its file; ``prediction`` is the
probability of the positive class for a binary model, the list of class probabilities for a
multi-class one. ``--format csv`` writes the same fields flat (features as columns; multi-class
as ``prediction_0..k``); ``parquet`` keeps ``features`` as a struct column; ``tfrecord`` writes
tf.Examples (features + ``prediction`` or ``prediction_0..k``, ``model_version``,
``request_id``).

On the DirectRunner in its ``in_memory`` mode with a local output, the same DoFn runs in this
process without a Beam pipeline (`run_in_process`; the same files and bytes, tested against the
Beam job); every other runner, ``multi_processing`` and object-store outputs run the Beam job.

Files: ``DIR/predictions-SSSSS-of-NNNNN.{jsonl,csv,parquet,tfrecord.gz}`` and
``DIR/rejected/rejected-*.jsonl`` (file, line, reason, raw). The job is recorded in ML Metadata
as a ``score`` execution: the Model as input, an ``InferenceResult`` artifact (``DIR``) as output,
with the input fingerprint, row counts and the model version.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics.metric import Metrics

from beam_pipeline.core import registry
from beam_pipeline.core.artifacts import Artifact, rejected_dir, rejected_prefix, saved_model_dir
from beam_pipeline.core.config import Config
from beam_pipeline.core.errors import ConfigError, DataError
from beam_pipeline.core.executor import Execution, Executor
from beam_pipeline.core.metadata import Store
from beam_pipeline.io import dead_letters, filesystem, readers
from beam_pipeline.io.dead_letters import WriteDeadLetters
from beam_pipeline.io.packed import Packed, PackedSignature, pack_arrays
from beam_pipeline.io.predictions import (
    iso_time,
    json_record_bytes,
    output_table,
    record_header,
)
from beam_pipeline.io.raw_inputs import RawColumn, RawSchema, check_rows, strict_json
from beam_pipeline.io.readers import Rejected
from beam_pipeline.runners.options import runs_in_process

log = logging.getLogger(__name__)

NAMESPACE = "score"
FORMATS = ("jsonl", "csv", "parquet", "tfrecord")
INPUT_FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
}
SUFFIX = {"jsonl": ".jsonl", "csv": ".csv", "parquet": ".parquet", "tfrecord": ".tfrecord.gz"}


@dataclass(frozen=True)
class ScoreJob:
    """What the Beam job needs (picklable)."""

    files: list[str]
    input_format: str
    columns: dict[str, str]  # every column read, in file order -> int | float | string
    raw_features: list[str]  # the inputs of serving_raw
    raw_schema: RawSchema  # what serving_raw takes: kinds, required columns
    saved_model: str
    model_name: str
    model_version: int
    output: str
    output_format: str = "jsonl"
    batch_size: int = 8192
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


# ---------------------------------------------------------------------------------------------
# Plain functions: batches to model inputs, predictions to records


def raw_strings(batch: pa.RecordBatch, features: list[str]) -> dict[str, pa.Array]:
    """CSV-like strings per raw feature ("" for a missing value), as serving_raw takes them."""
    out = {}
    for name in features:
        col = batch.column(name)
        if not pa.types.is_string(col.type):
            col = pc.cast(col, pa.string())
        out[name] = pc.fill_null(col, "")
    return out


def to_tensor(strings: pa.Array) -> Any:
    """A [n] tf.string tensor from an Arrow string array without a Python object per value.

    The array's data buffer becomes one scalar and ``tf.strings.substr`` cuts it at the offsets.
    """
    import tensorflow as tf

    _, offsets, data = strings.buffers()
    off = np.frombuffer(offsets, np.int32)[strings.offset : strings.offset + len(strings) + 1]
    blob = bytes(memoryview(data)[off[0] : off[-1]]) if data is not None else b""
    return tf.strings.substr(tf.constant(blob), off[:-1] - off[0], np.diff(off))


def number_texts(
    part: pa.RecordBatch, typed: pa.RecordBatch, read: dict[str, pa.Array] | None = None
) -> dict[str, pa.Array]:
    """The text of the batch's int and float columns (nulls stay null), for the model's string
    inputs and the JSON records alike: ``read``, the file's own plain text of a column
    (`readers.Chunk.number_texts`), or else Arrow's cast of the values. A model input only where
    the column of ``part`` (the rows as read) equals its ``typed`` model input (the checked rows:
    finite numbers), so both agree."""
    texts = {}
    read = read or {}
    inputs = set(typed.schema.names)
    for name in part.schema.names:
        column = typed.column(name) if name in inputs else part.column(name)
        numeric = pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
        if not numeric or (name in inputs and not part.column(name).equals(column)):
            continue
        if name in read:
            texts[name] = read[name]
        elif name in inputs:
            texts[name] = pc.cast(column, pa.string())
    return texts


def raw_inputs(batch: pa.RecordBatch, features: list[str]) -> dict[str, Any]:
    """The serving_raw inputs of a batch: one [n] string tensor per raw feature."""
    return {name: to_tensor(col) for name, col in raw_strings(batch, features).items()}


# ---------------------------------------------------------------------------------------------
# Beam


class ScoreFile(beam.DoFn):
    """A file name in; formatted prediction batches out; unreadable or unscorable rows tagged."""

    REJECTED = "rejected"

    def __init__(self, job: ScoreJob) -> None:
        self._job = job
        self._scored = Metrics.counter(NAMESPACE, "scored")
        self._rejected = Metrics.counter(NAMESPACE, "rejected")
        self.counts = {"scored": 0, "rejected": 0}  # the same counts, for `run_in_process`

    def _count(self, name: str, n: int = 1) -> None:
        (self._scored if name == "scored" else self._rejected).inc(n)
        self.counts[name] += n

    def setup(self) -> None:
        """Starts loading the model on the formatting thread (idle until the first batch is
        scored), so the first batches are read, checked and packed meanwhile."""
        import tensorflow as tf

        self._tf = tf
        filesystem.enable_tensorflow(self._job.saved_model)
        self._formatter = ThreadPoolExecutor(1, thread_name_prefix="score-format")
        self._loading = self._formatter.submit(self._load)

    def _load(self) -> tuple[Any, PackedSignature]:
        saved_model = self._tf.saved_model.load(self._job.saved_model)
        fn = saved_model.signatures["serving_raw"]
        packed = PackedSignature(fn, owner=saved_model)
        if packed.names != self.input_names:
            raise DataError(
                f"{self._job.saved_model}: serving_raw takes {packed.names}; the model's "
                f"raw_features are {sorted(self._job.raw_features)}"
            )
        return fn, packed

    @property
    def input_names(self) -> list[str]:
        """serving_raw's inputs in the order they are packed (the signature's, sorted)."""
        return sorted(self._job.raw_features)

    def teardown(self) -> None:
        self._formatter.shutdown(wait=True)

    def _parts(self, file: str) -> Iterator[tuple[list[Rejected], pa.RecordBatch, np.ndarray, Any]]:
        """(rejected rows, batch, row indices, model inputs): runs on the read-ahead thread."""
        job = self._job
        reader = {
            "csv": readers.read_csv,
            "parquet": readers.read_parquet,
            "jsonl": readers.read_jsonl,
        }[job.input_format]
        index = 0
        options = {"number_text": True} if job.input_format == "csv" else {}
        for chunk in reader(file, list(job.columns), job.columns, job.batch_size, **options):
            if not chunk.batch.num_rows:
                yield chunk.rejected, chunk.batch, np.arange(0), None
            for start in range(0, chunk.batch.num_rows, job.batch_size):
                part = chunk.batch.slice(start, job.batch_size)
                read = {k: v.slice(start, job.batch_size) for k, v in chunk.number_texts.items()}
                rows = np.arange(index, index + part.num_rows)
                index += part.num_rows
                rejected = list(chunk.rejected) if start == 0 else []
                # The row check every serving path shares: a row the model cannot take is a
                # dead letter naming the column, never a default value.
                checked = check_rows(part, job.raw_schema)
                if checked.rejected:
                    for i, reason in checked.rejected:
                        raw = strict_json(part.slice(i, 1).to_pylist()[0])
                        rejected.append(Rejected(file, -1, f"row {rows[i]}: {reason}", raw))
                    keep = pa.array(checked.accepted)
                    part, rows = part.filter(keep), rows[checked.accepted]
                    read = {k: v.filter(keep) for k, v in read.items()}
                texts = number_texts(part, checked.batch, read)
                inputs = pack_arrays(
                    [
                        texts[name] if name in texts else raw_strings(checked.batch, [name])[name]
                        for name in self.input_names
                    ]
                )
                yield rejected, part, rows, (inputs, texts)

    def process(self, file: str) -> Iterator[Any]:
        """Three stages overlap: reading and building inputs (a thread), the model call (here),
        and formatting the output (another thread, request ids included); outputs keep the
        input order."""
        base = f"{self._job.job_id}/{Path(file).name}/"
        pending = None
        for rejected, part, rows, model_in in readers.read_ahead(self._parts(file)):
            for r in rejected:
                self._count("rejected")
                yield beam.pvalue.TaggedOutput(self.REJECTED, r.to_json())
            if not part.num_rows:
                continue
            inputs, texts = model_in
            self._fn, self._packed = self._loading.result()
            predictions, good, failures = self.predict(part, inputs)
            for i, reason in failures:
                self._count("rejected")
                raw = strict_json(part.slice(i, 1).to_pylist()[0])
                yield beam.pvalue.TaggedOutput(
                    self.REJECTED, Rejected(file, -1, f"row {rows[i]}: {reason}", raw).to_json()
                )
            if good is not None:
                part, rows = part.filter(pa.array(good)), rows[good]
                texts = {k: v.filter(pa.array(good)) for k, v in texts.items()}
            if not part.num_rows:
                continue
            self._count("scored", part.num_rows)
            future = self._formatter.submit(self._format_rows, part, predictions, base, rows, texts)
            if pending is not None:
                yield pending.result()
            pending = future
        if pending is not None:
            yield pending.result()

    def predict(
        self, part: pa.RecordBatch, packed: Packed
    ) -> tuple[np.ndarray, np.ndarray | None, list[tuple[int, str]]]:
        """(predictions of the good rows, mask of good rows or None if all, [(row, reason)])."""
        tf = self._tf
        try:
            out = self._packed(packed)["predictions"]
            return out.numpy().reshape(packed.rows, -1), None, []
        except tf.errors.InvalidArgumentError:
            pass
        # Bisect: find the rows the model refuses, score the rest.
        inputs = self._packed.columns(packed)
        good = np.ones(part.num_rows, dtype=bool)
        failures: list[tuple[int, str]] = []
        results: dict[int, np.ndarray] = {}

        def go(lo: int, hi: int) -> None:
            sub = {k: v[lo:hi] for k, v in inputs.items()}
            try:
                results[lo] = self._fn(**sub)["predictions"].numpy().reshape(hi - lo, -1)
            except tf.errors.InvalidArgumentError as exc:
                if hi - lo == 1:
                    good[lo] = False
                    first = exc.message.splitlines()[0]
                    failures.append((lo, f"the model refused the row: {first}"))
                    return
                mid = (lo + hi) // 2
                go(lo, mid)
                go(mid, hi)

        go(0, part.num_rows)
        kept = [results[k] for k in sorted(results)]
        width = kept[0].shape[1] if kept else 1
        return (np.concatenate(kept) if kept else np.zeros((0, width))), good, failures

    def _format_rows(
        self,
        part: pa.RecordBatch,
        predictions: np.ndarray,
        base: str,
        rows: np.ndarray,
        texts: dict[str, pa.Array],
    ) -> Any:
        ids = pc.binary_join_element_wise(base, pc.cast(pa.array(rows), pa.string()), "")
        return self.format(part, predictions, ids, texts)

    def format(
        self,
        part: pa.RecordBatch,
        predictions: np.ndarray,
        ids: pa.Array,
        texts: dict[str, pa.Array] | None = None,
    ) -> Any:
        job = self._job
        now = iso_time()
        if job.output_format == "jsonl":
            header = record_header(job.model_name, job.model_version, now)
            return json_record_bytes(part, predictions, ids, header, texts)
        name, version = job.model_name, job.model_version
        if job.output_format == "parquet":
            return output_table(part, predictions, ids, name, version, now, nested=True)
        table = output_table(part, predictions, ids, name, version, now, nested=False)
        if job.output_format == "csv":
            import pyarrow.csv as pacsv

            buf = io.BytesIO()
            pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False))
            return buf.getvalue().rstrip(b"\n")
        from beam_pipeline.io.example_coder import encode
        from beam_pipeline.io.tfrecord import frame

        flat = table.drop(["model_name", "time"]).combine_chunks().to_batches()[0]
        return frame(encode(flat))  # WriteTFRecordBatches takes framed batches


class ScoreFiles(beam.PTransform):
    """Files -> (formatted prediction batches, rejected rows as JSON lines)."""

    def __init__(self, job: ScoreJob) -> None:
        super().__init__()
        self._job = job

    def expand(self, pbegin: beam.pvalue.PBegin) -> tuple[beam.PCollection, beam.PCollection]:
        out = (
            pbegin
            | "Files" >> beam.Create(self._job.files)
            | "Spread" >> beam.Reshuffle()
            | "Score"
            >> beam.ParDo(ScoreFile(self._job)).with_outputs(ScoreFile.REJECTED, main="scored")
        )
        return out.scored, out[ScoreFile.REJECTED]


class WritePredictions(beam.PTransform):
    """Formatted batches -> ``{output}/predictions-SSSSS-of-NNNNN{suffix}``."""

    def __init__(self, job: ScoreJob, schema: pa.Schema | None = None) -> None:
        super().__init__()
        self._job = job
        self._schema = schema

    def expand(self, batches: beam.PCollection) -> Any:
        job = self._job
        prefix = filesystem.join(job.output, "predictions")
        if job.output_format == "jsonl":
            return batches | beam.io.WriteToText(prefix, file_name_suffix=".jsonl")
        if job.output_format == "csv":
            return batches | beam.io.WriteToText(
                prefix, file_name_suffix=".csv", header=",".join(self._schema.names)
            )
        if job.output_format == "parquet":
            return batches | beam.io.WriteToParquetBatched(
                prefix, self._schema, file_name_suffix=".parquet"
            )
        from beam_pipeline.io.tfrecord import WriteTFRecordBatches

        return batches | WriteTFRecordBatches(prefix)


# ---------------------------------------------------------------------------------------------
# Resolving the job


def resolve_model(config: Config, store: Store, version: int | None) -> tuple[Artifact, int]:
    """The Model to score with: ``--model VERSION``, else the served version."""
    if version is None:
        served = registry.served_versions(registry.model_dir(config))
        if not served:
            raise ConfigError(
                f"--model: no model is served under {registry.model_dir(config)}; pass "
                "--model VERSION (see beam-pipeline models)"
            )
        version = served[-1]
    model = registry.model_by_version(store, version)
    if not saved_model_dir(model).is_dir():
        raise ConfigError(f"--model: version {version} has no saved_model/ at {model.uri}")
    return model, version


def training_columns(store: Store, model: Artifact) -> dict[str, str]:
    """The column types the model's training data was ingested with (from its lineage)."""
    producer = store.producer(model.id)
    examples = store.execution_inputs(producer).get("examples") if producer else None
    return dict((examples.properties.get("columns") if examples else None) or {})


def model_raw_schema(
    model: Artifact, raw_features: list[str], columns: dict[str, str]
) -> RawSchema:
    """The raw schema saved with the model; for a model exported before it was saved, its
    raw features typed as read, none required (the model itself then refuses a missing value)."""
    saved = RawSchema.load(saved_model_dir(model))
    if saved is not None:
        return saved
    return RawSchema(tuple(RawColumn(n, columns.get(n, "string"), False) for n in raw_features))


def input_columns(files: list[str], fmt: str, known: dict[str, str]) -> dict[str, str]:
    """Columns of the first file (all files must share them) with their reader types."""
    # CSV columns the model does not know stay strings: scoring must not reject a row over them.
    inferred = readers.columns_of(files, fmt, infer_csv_types=False)
    return {name: known.get(name, kind) for name, kind in inferred.items()}


def score(
    config: Config,
    input_glob: str,
    output: str,
    *,
    model_version: int | None = None,
    output_format: str = "jsonl",
    input_format: str | None = None,
    batch_size: int = 8192,
    beam_args: list[str] | None = None,
    store: Store | None = None,
) -> dict[str, Any]:
    """Run the scoring job through the executor (`beam_pipeline.core.executor`): the files are
    written into a staging folder (an object store: the output prefix), published at once, and
    recorded as a ``score`` execution; returns the summary."""
    from beam_pipeline.runners.options import beam_args as all_beam_args

    t0 = time.time()
    filesystem.configure(all_beam_args(config, beam_args), [input_glob, output])
    if output_format not in FORMATS:
        raise ConfigError(f"--format: expected one of {list(FORMATS)}; received {output_format!r}")
    files = readers.match_files(input_glob)
    if not files:
        raise ConfigError(f"--input: no files match {input_glob!r}")
    fmt = input_format or INPUT_FORMATS.get(filesystem.as_path(files[0]).suffix.lower())
    if fmt not in ("csv", "parquet", "jsonl"):
        raise ConfigError(
            f"--input: cannot tell the format of {files[0]}; expected .csv, .parquet or .jsonl "
            "(or pass --input-format)"
        )
    # The input's fingerprint (a local file's bytes: ~0.1 s a 128 MB file) is hashed beside the
    # job; hashlib lets go of the GIL.
    hashing = ThreadPoolExecutor(1, thread_name_prefix="score-fingerprint")
    fingerprint = hashing.submit(filesystem.fingerprint, files)
    hashing.shutdown(wait=False)
    out = filesystem.as_path(output)
    if out.exists() and any(out.glob("predictions-*")):
        raise ConfigError(f"--output: {out} already holds predictions; choose an empty folder")
    store = store or Store(config)
    model, version = resolve_model(config, store, model_version)
    raw_features = list(model.properties.get("raw_features") or [])
    if not raw_features:
        raise ConfigError(f"--model: version {version} ({model.uri}) lists no raw_features")
    columns = input_columns(files, fmt, training_columns(store, model))
    missing = [f for f in raw_features if f not in columns]
    if missing:
        raise DataError(
            f"{files[0]}: missing the model's input columns {missing}; columns are {list(columns)}"
        )
    job = ScoreJob(
        files=files,
        input_format=fmt,
        columns=columns,
        raw_features=raw_features,
        raw_schema=model_raw_schema(model, raw_features, columns),
        saved_model=str(saved_model_dir(model)),
        model_name=config.pipeline.name,
        model_version=version,
        output="",
        output_format=output_format,
        batch_size=batch_size,
    )
    summary: dict[str, Any] = {
        "job_id": job.job_id,
        "input": input_glob,
        "files": len(files),
        "input_fingerprint": "",  # set from `fingerprint` when the job has run
        "model_version": version,
        "model_id": model.id,
        "output": str(out),
        "format": output_format,
    }

    def write(execution: Execution) -> dict[str, Artifact]:
        counters = run_job(
            dataclasses.replace(job, output=str(execution.output_dir)), model, config, beam_args
        )
        summary["input_fingerprint"] = fingerprint.result()
        summary["rows"] = counters.get("scored", 0)
        summary["rejected"] = counters.get("rejected", 0)
        summary["seconds"] = round(time.time() - t0, 3)
        execution.properties.update({**summary, "time": time.time()})
        result = Artifact(
            "InferenceResult",
            str(execution.output_dir),
            dict(summary),
            fingerprint=summary["input_fingerprint"][:32] + f"-v{version}",
        )
        return {"result": result}

    done = Executor(store).execute(
        registry.SCORE,
        write,
        destination=out,  # type: ignore[arg-type]
        inputs={"model": model},
        properties={"job_id": job.job_id, "input": input_glob, "output": str(out)},
    )
    summary["execution"] = done.id
    summary["artifact"] = done.outputs["result"].id
    log.info(
        "score: %s rows scored, %s rejected, model v%s, %.1f s (%.0f rows/s) → %s",
        f"{summary['rows']:,}",
        summary["rejected"],
        version,
        summary["seconds"],
        summary["rows"] / max(summary["seconds"], 1e-9),
        out,
    )
    return summary


def run_job(
    job: ScoreJob, model: Artifact, config: Config, beam_args: list[str] | None
) -> dict[str, int]:
    """The Beam job: predictions and rejected rows under ``job.output``; returns its counters."""
    from beam_pipeline.runners.options import pipeline_options

    output_format = job.output_format
    schema = _schema(job, model) if output_format in ("csv", "parquet") else None
    if runs_in_process(config, beam_args, job.output):
        return run_in_process(job, schema)
    with beam.Pipeline(options=pipeline_options(config, beam_args)) as p:
        scored, rejected = p | "Score" >> ScoreFiles(job)
        _ = scored | "Write" >> WritePredictions(job, schema)
        _ = rejected | "WriteRejected" >> WriteDeadLetters(job.output)
    return dead_letters.counters(p.result, NAMESPACE)


def _schema(job: ScoreJob, model: Artifact) -> pa.Schema:
    """The output table schema (csv header / parquet schema), from a 1-row dry format."""
    import tensorflow as tf

    empty = pa.RecordBatch.from_arrays(
        [pa.nulls(1, readers.ARROW_TYPES[t]) for t in job.columns.values()], names=list(job.columns)
    )
    fn = tf.saved_model.load(job.saved_model).signatures["serving_raw"]
    width = int(fn.structured_outputs["predictions"].shape[-1] or 1)
    preds = np.zeros((1, width), np.float32)
    table = output_table(
        empty,
        preds,
        pa.array(["x"]),
        job.model_name,
        job.model_version,
        "t",
        nested=job.output_format == "parquet",
    )
    return table.schema


def run_in_process(job: ScoreJob, schema: pa.Schema | None) -> dict[str, int]:
    """The Beam job's work without the runner: the same `ScoreFile` DoFn over the files in turn,
    its batches written to the single shard the in-memory DirectRunner writes
    (``predictions-00000-of-00001``, ``rejected/rejected-00000-of-00001.jsonl``), the same bytes
    per record as `WritePredictions` and `WriteDeadLetters` (tests/test_scoring.py compares the
    two paths). Saves Beam's pipeline construction, bundle set-up and temporary-shard renames."""
    shard = "-00000-of-00001"
    out = filesystem.as_path(job.output)
    filesystem.makedirs(rejected_dir(job.output))
    scorer = ScoreFile(job)
    scorer.setup()
    sink = _PredictionFile(
        str(out / f"predictions{shard}{SUFFIX[job.output_format]}"), job.output_format, schema
    )
    try:
        with filesystem.open_write(rejected_prefix(job.output) + shard + ".jsonl") as dead:
            for file in job.files:
                for item in scorer.process(file):
                    if isinstance(item, beam.pvalue.TaggedOutput):
                        dead.write(item.value.encode("utf-8") + b"\n")
                    else:
                        sink.write(item)
        sink.close()
    finally:
        sink.abort()
        scorer.teardown()
    return dict(scorer.counts)


class _PredictionFile:
    """One output file written as `WritePredictions` writes a shard: text lines (JSON Lines,
    CSV with its header), a Parquet file of the given schema, or framed gzip TFRecords."""

    def __init__(self, path: str, output_format: str, schema: pa.Schema | None) -> None:
        from beam_pipeline.io.tfrecord import ThreadedGzipWriter, ThreadedWriter

        self._format = output_format
        self._raw: Any = filesystem.open_write(path)
        self._parquet: Any = None
        if output_format == "csv":
            assert schema is not None
            self._raw.write(",".join(schema.names).encode("utf-8") + b"\n")
        elif output_format == "parquet":
            import pyarrow.parquet as pq

            self._parquet = pq.ParquetWriter(self._raw, schema, compression="none")
        elif output_format == "tfrecord":
            self._raw = ThreadedGzipWriter(self._raw)
        if output_format in ("jsonl", "csv"):  # hundreds of MB: off the thread calling the model
            self._raw = ThreadedWriter(self._raw)

    def write(self, item: Any) -> None:
        if self._format in ("jsonl", "csv"):  # bytes, as `WriteToText` writes them
            self._raw.write(item)
            self._raw.write(b"\n")
        elif self._parquet is not None:
            self._parquet.write_table(item)
        else:
            self._raw.write(item)

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        raw, self._raw = self._raw, None
        if raw is not None:
            raw.close()

    def abort(self) -> None:
        """Closes what is still open after a failure (the executor removes the staging)."""
        try:
            self.close()
        except Exception:  # the job's own error is the one to report
            log.debug("closing a failed prediction file", exc_info=True)
