"""ingest: read CSV / Parquet / JSON Lines / TFRecord into split, gzip tf.Example TFRecords.

Output `Examples`: ``Split-{split}/data-*.tfrecord.gz`` and ``rejected/rejected-*.jsonl`` (one JSON
object per unreadable row: file, line, reason, raw). Properties: splits, row_counts, rejected,
span, data_fingerprint, columns (name -> int|float|string), files.

Rows are read in Arrow record batches, typed and encoded to tf.Example a batch at a time by a
columnar encoder (`io.example_coder`); the split is a hash of the row's serialized tf.Example
(or of `split.key`'s text), so a rerun on the same data splits the same way at any batch size and
from any format, and one key never lands in two splits.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import Metrics

from beam_pipeline import progress
from beam_pipeline.core.artifacts import Artifact, examples_prefix, rejected_dir
from beam_pipeline.core.errors import ConfigError, DataError
from beam_pipeline.core.stage import Prepared, Stage, StageContext
from beam_pipeline.core.stage_sections import IngestSection
from beam_pipeline.io import byte_ranges, dead_letters, example_coder, filesystem, readers
from beam_pipeline.io import names as tensor_names
from beam_pipeline.io.dead_letters import WriteDeadLetters
from beam_pipeline.io.tfrecord import WriteTFRecordBatches, frame

if TYPE_CHECKING:
    from beam_pipeline.core.metadata import Store

log = logging.getLogger(__name__)

SPAN = "{SPAN}"
BUCKETS = 10_000
NAMESPACE = "ingest"


# ---------------------------------------------------------------------------------------------
# Resolving the input: files, span, columns


def resolve_files(source: str, span: int | None, count: int = 1) -> tuple[list[str], int | None]:
    """The files the source names (sorted) and the span they belong to; with ``count`` > 1,
    also the files of the ``count - 1`` spans below it (those that exist)."""
    if SPAN not in source:
        files = readers.match_files(source)
        if not files:
            raise DataError(f"ingest.source: no files match {source!r}")
        return files, None
    pattern = source.replace(SPAN, "*")
    regex = re.compile(
        re.escape(source)
        .replace(re.escape(SPAN), r"(\d+)")
        .replace(r"\*", "[^/]*")
        .replace(r"\?", "[^/]")
        + "$"
    )
    spans: dict[int, list[str]] = {}
    for f in readers.match_files(pattern):
        m = regex.search(f)
        if m:
            spans.setdefault(int(m.group(1)), []).append(f)
    if not spans:
        raise DataError(f"ingest.source: no files match {pattern!r} (span pattern {source!r})")
    chosen = max(spans) if span is None else span
    if chosen not in spans:
        raise ConfigError(f"ingest.span: span {chosen} not found; available spans {sorted(spans)}")
    read = sorted(n for n in spans if n <= chosen)[-count:]
    return sorted(f for n in read for f in spans[n]), chosen


def resolve_columns(section: IngestSection, files: list[str]) -> dict[str, str]:
    """Column names in file order with their types: from the config, else inferred from a sample."""
    first = files[0]
    if section.format == "tfrecord":
        inferred = _tfrecord_columns(first)
    else:
        inferred = readers.columns_of(files, section.format)
    for key, names in (("columns", list(section.columns)), ("drop", section.drop)):
        unknown = [n for n in names if n not in inferred]
        if unknown:
            raise ConfigError(
                f"ingest.{key}: no column {unknown[0]!r} in {first}; columns are {list(inferred)}"
            )
    if section.split.key and section.split.key not in inferred:
        raise ConfigError(f"ingest.split.key: no column {section.split.key!r} in {first}")
    bad = tensor_names.unsafe(inferred, section.drop)
    if bad:
        raise ConfigError("ingest: " + tensor_names.problem(bad[0], first))
    return {name: section.columns.get(name, kind) for name, kind in inferred.items()}


def _tfrecord_columns(path: str) -> dict[str, str]:
    import tensorflow as tf

    compression = "GZIP" if path.endswith(".gz") else ""
    kinds: dict[str, str] = {}
    for i, raw in enumerate(tf.data.TFRecordDataset(path, compression_type=compression)):
        if i >= 1000:
            break
        try:
            ex = tf.train.Example.FromString(raw.numpy())
        except Exception:  # noqa: BLE001 - DecodeError: rejected when read
            continue
        for name, feat in ex.features.feature.items():
            kind = feat.WhichOneof("kind")
            if kind:
                kinds[name] = {"int64_list": "int", "float_list": "float"}.get(kind, "string")
    if not kinds:
        raise DataError(f"{path}: no tf.Example records")
    return dict(sorted(kinds.items()))


def prepare(section: IngestSection, inputs: dict[str, Artifact], ctx: StageContext) -> Prepared:
    files, span = resolve_files(section.source, section.span, section.spans)
    columns = resolve_columns(section, files)  # every column, as the reader parses them
    fingerprint = filesystem.fingerprint(files)  # object stores: metadata only, no download
    return Prepared(
        key={"data_fingerprint": fingerprint, "span": span},
        inputs=data_spans(ctx.store, files),
        state={"files": files, "span": span, "columns": columns, "fingerprint": fingerprint},
    )


def data_spans(store: Store | None, files: list[str]) -> dict[str, Artifact]:
    """The DataSpan artifacts (spans ``monitor --retrain`` made from logged traffic) whose folder
    holds some of the files: inputs of the execution, so lineage walks back to the logs."""
    if store is None or not files:
        return {}
    found: dict[str, Artifact] = {}
    folders = {str(filesystem.as_path(f).parent) for f in files}
    for art in store.artifacts_of_type("DataSpan"):
        if art.uri in folders:
            found[f"data_span_{art.properties.get('span', art.id)}"] = art
    return found


# ---------------------------------------------------------------------------------------------
# Batched encoding and splitting (plain functions: unit tests call them without a runner)


def assign_splits(
    batch: pa.RecordBatch,
    ratios: dict[str, float],
    key: str | None,
    serialized: pa.BinaryArray | None = None,
) -> np.ndarray:
    """The split index of every row: a stable hash of a canonical form of the row.

    The form does not depend on the batch or on the file format: with ``key``, the key's text
    (``3`` whether the column is int, float or text, so one key never lands in two splits);
    without, the row's serialized tf.Example (``serialized``, encoded here if not given).
    """
    if key:
        text = pc.cast(batch.column(key), pa.string())
        values = text.to_numpy(zero_copy_only=False)
    else:
        if serialized is None:
            serialized = example_coder.encode(batch)
        values = serialized.to_numpy(zero_copy_only=False)
    return _split_of(pd.util.hash_array(values), ratios)


def _split_of(hashes: np.ndarray, ratios: dict[str, float]) -> np.ndarray:
    buckets = hashes % np.uint64(BUCKETS)
    weights = np.array(list(ratios.values()), dtype=np.float64)
    edges = np.cumsum(weights / weights.sum()) * BUCKETS
    return np.minimum(np.searchsorted(edges, buckets, side="right"), len(ratios) - 1)


class ReadAndEncode(beam.DoFn):
    """A file name in; (split, framed TFRecord bytes) per batch out; rejected rows tagged."""

    REJECTED = "rejected"

    def __init__(
        self,
        fmt: str,
        columns: dict[str, str],
        ratios: dict[str, float],
        key: str | None,
        batch_size: int,
        drop: list[str] | None = None,
    ) -> None:
        self._fmt = fmt
        self._keep = [c for c in columns if c not in (drop or [])]
        self._columns = columns
        self._ratios = ratios
        self._key = key
        self._batch_size = batch_size
        self._rows = {s: Metrics.counter(NAMESPACE, f"rows_{s}") for s in ratios}
        self._rejected = Metrics.counter(NAMESPACE, "rejected")

    def process(self, part: str | byte_ranges.ByteRange) -> Iterator[Any]:
        reader = {
            "csv": readers.read_csv,
            "parquet": readers.read_parquet,
            "jsonl": readers.read_jsonl,
            "tfrecord": readers.read_tfrecord,
        }[self._fmt]
        names = list(self._columns)
        splits = list(self._ratios)
        if isinstance(part, byte_ranges.ByteRange):  # one range of a large file
            chunks = reader(
                part.path,
                names,
                self._columns,
                self._batch_size,
                byte_range=(part.start, part.end, part.line),
            )
        else:
            chunks = reader(part, names, self._columns, self._batch_size)
        for chunk in readers.read_ahead(chunks):
            for r in chunk.rejected:
                self._rejected.inc()
                yield beam.pvalue.TaggedOutput(self.REJECTED, r.to_json())
            if chunk.batch.num_rows == 0:
                continue
            batch = chunk.batch
            if len(self._keep) < batch.num_columns:
                batch = pa.RecordBatch.from_arrays(
                    [batch.column(c) for c in self._keep], names=self._keep
                )
            serialized = example_coder.encode(batch)
            which = assign_splits(batch, self._ratios, self._key, serialized)
            for i, split in enumerate(splits):
                mask = which == i
                if mask.any():
                    self._rows[split].inc(int(mask.sum()))
                    yield split, frame(serialized.filter(pa.array(mask)))
            progress.count("ingest", batch.num_rows)  # the live count beside the spinner


class WriteExamples(beam.PTransform):
    """(split, framed records) batches -> gzip TFRecords under Split-{split}/."""

    def __init__(self, out: str, splits: list[str], shards: int) -> None:
        super().__init__()
        self._out = out
        self._splits = splits
        self._shards = shards

    def expand(self, batches: beam.PCollection) -> dict[str, Any]:
        results = {}
        for split in self._splits:
            prefix = examples_prefix(filesystem.as_path(self._out), split)
            results[split] = (
                batches
                | f"Only{split}" >> beam.Filter(lambda kv, s=split: kv[0] == s)
                | f"Values{split}" >> beam.Values()
                | f"Write{split}" >> WriteTFRecordBatches(prefix, self._shards)
            )
        return results


class ReadExamples(beam.PTransform):
    """Files -> (split, framed tf.Example records) batches, plus rejected rows as JSON lines."""

    def __init__(self, section: IngestSection, files: list[str], columns: dict[str, str]) -> None:
        super().__init__()
        self._section = section
        self._files = files
        self._columns = columns

    def expand(self, pbegin: beam.pvalue.PBegin) -> tuple[beam.PCollection, beam.PCollection]:
        s = self._section
        files = pbegin | "Files" >> beam.Create(self._files)
        if s.format in ("csv", "jsonl"):
            files = files | "SplitLargeFiles" >> SplitLargeFiles(s.format, s.split_bytes)
        out = (
            files
            | "Spread" >> beam.Reshuffle()
            | "ReadAndEncode"
            >> beam.ParDo(
                ReadAndEncode(
                    s.format, self._columns, s.split.ratios, s.split.key, s.batch_size, s.drop
                )
            ).with_outputs(ReadAndEncode.REJECTED, main="batches")
        )
        return out.batches, out[ReadAndEncode.REJECTED]


class SplitLargeFiles(beam.PTransform):
    """File names -> the same names (files up to ``split_bytes``) and `ByteRange`s of the larger
    ones, each starting at a record with its exact line number (see `io.byte_ranges`): a pass
    over each nominal range, in parallel, then a plan per file."""

    def __init__(self, fmt: str, split_bytes: int) -> None:
        super().__init__()
        self._fmt = fmt
        self._split_bytes = split_bytes

    def expand(self, files: beam.PCollection) -> beam.PCollection:
        fmt, split_bytes = self._fmt, self._split_bytes
        parts = files | "Ranges" >> beam.ParDo(_NominalRanges(split_bytes)).with_outputs(
            _NominalRanges.WHOLE, main="ranges"
        )
        planned = (
            parts.ranges
            | "SpreadScans" >> beam.Reshuffle()
            | "Scan" >> beam.MapTuple(lambda f, i, a, b: byte_ranges.scan_range(f, fmt, i, a, b))
            | "ByFile" >> beam.GroupBy(lambda scan: scan.path)
            | "Plan" >> beam.FlatMap(lambda kv: byte_ranges.plan(list(kv[1])))
        )
        return (parts[_NominalRanges.WHOLE], planned) | "Parts" >> beam.Flatten()


class _NominalRanges(beam.DoFn):
    WHOLE = "whole"

    def __init__(self, split_bytes: int) -> None:
        self._split_bytes = split_bytes

    def process(self, file: str) -> Iterator[Any]:
        ranges = byte_ranges.nominal_ranges(file, self._split_bytes)
        if len(ranges) == 1:
            yield beam.pvalue.TaggedOutput(self.WHOLE, file)
            return
        for i, (a, b) in enumerate(ranges):
            yield file, i, a, b


# ---------------------------------------------------------------------------------------------


def run(
    section: IngestSection, inputs: dict[str, Artifact], ctx: StageContext
) -> dict[str, Artifact]:
    t0 = time.time()
    state = ctx.prepared
    files: list[str] = state["files"]
    columns: dict[str, str] = state["columns"]
    splits = list(section.split.ratios)
    kept = {c: t for c, t in columns.items() if c not in section.drop}
    examples = ctx.output(
        "examples",
        "Examples",
        splits=splits,
        span=state["span"],
        columns=kept,
        data_fingerprint=state["fingerprint"],
        files=files,
    )
    with beam.Pipeline(options=ctx.beam_options()) as p:
        batches, rejected = p | "Read" >> ReadExamples(section, files, columns)
        _ = batches | "Write" >> WriteExamples(examples.uri, splits, section.shards)
        _ = rejected | "WriteRejected" >> WriteDeadLetters(examples)
    counters = dead_letters.counters(p.result, NAMESPACE)
    counts = {s: int(counters.get(f"rows_{s}", 0)) for s in splits}
    n_rejected = int(counters.get("rejected", 0))
    total = sum(counts.values()) + n_rejected
    if total == 0:
        raise DataError(f"ingest.source: {', '.join(files)}: no data rows")
    if n_rejected and n_rejected / total > section.max_rejected_fraction:
        first = first_rejected(examples)
        kept = keep_dead_letters(examples, ctx)
        raise DataError(
            f"{n_rejected} of {total} rows rejected ({n_rejected / total:.2%}), above "
            f"ingest.max_rejected_fraction={section.max_rejected_fraction}; first: "
            f"{first['file']}:{first['line']}: {first['reason']}; every rejected row is kept "
            f"in {kept}"
        )
    if any(counts[s] == 0 for s in splits):
        empty = [s for s in splits if counts[s] == 0]
        raise DataError(
            f"ingest: split(s) {empty} got no rows out of {total}; add data or "
            "change ingest.split.ratios"
        )
    examples.properties.update(row_counts=counts, rejected=n_rejected)
    parts = " / ".join(f"{s} {n:,}" for s, n in counts.items())
    log.info(
        "ingest: %s rows → %s, %s rejected, %.1f s",
        f"{total:,}",
        parts,
        n_rejected,
        time.time() - t0,
    )
    return {"examples": examples}


def keep_dead_letters(examples: Artifact, ctx: StageContext) -> str:
    """Copy the rejected rows of a failing ingest out of its staging folder (removed with the
    failed stage) to ``{pipeline.root}/dead_letters/ingest-{run id}/``; returns that folder."""
    target = filesystem.join(str(ctx.config.root), "dead_letters", f"ingest-{ctx.run_id}")
    source = str(rejected_dir(examples))
    for name in filesystem.files_under(source):
        filesystem.copy_file(filesystem.join(source, name), filesystem.join(target, name))
    return target


def first_rejected(examples: Artifact) -> dict[str, Any]:
    """The rejected row with the smallest (file, line)."""
    rows = []
    for f in readers.match_files(str(rejected_dir(examples) / "*.jsonl")):
        with FileSystems.open(f) as fh:
            rows += [json.loads(line) for line in fh.read().decode().splitlines() if line]
    return min(rows, key=lambda r: (r["file"], r["line"]))


STAGE = Stage(
    name="ingest",
    deterministic=True,
    section=IngestSection,
    run=run,
    inputs={},
    outputs={"examples": "Examples"},
    prepare=prepare,
    cache_exempt=frozenset({"source"}),
)
