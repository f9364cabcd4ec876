"""The per-row-Python ingest baseline that scripts/bench.py times our ingest stage against.

It does what TFX's CsvExampleGen does: ``ReadFromText`` yields one CSV line at a time, a DoFn parses
it with the ``csv`` module and builds one ``tf.train.Example`` per row (typed like our ingest types
the columns), a per-row hash of the serialized example picks the split (TFX's
``_GeneratePartitionKey`` uses ``farmhash.fingerprint64``; the installed pyfarmhash only takes
str, so this uses ``zlib.crc32``, also C; into 10,000 buckets, in the same DoFn, which saves the
baseline a Partition step) and ``WriteToTFRecord`` writes gzip shards
per split. Deliberately left out, which only makes the baseline faster: TFX's column-type inference
pass over the data and its ``Reshuffle`` before the write.

This module imports nothing from ``beam_pipeline`` so that Beam pickles its DoFns by reference.
"""

from __future__ import annotations

import csv
import os
import zlib
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import Metrics, MetricsFilter

NAMESPACE = "bench_baseline"
BUCKETS = 10_000


class CsvLineToExample(beam.DoFn):
    """One CSV line in, one serialized tf.train.Example out, tagged with its split."""

    def __init__(
        self, names: list[str], types: dict[str, str], keep: list[str], ratios: dict[str, float]
    ) -> None:
        self._names = names
        self._types = types
        self._keep = set(keep)
        self._splits = list(ratios)
        total = sum(ratios.values())
        self._edges, acc = [], 0.0
        for r in ratios.values():
            acc += r
            self._edges.append(acc / total * BUCKETS)
        self._rows = {s: Metrics.counter(NAMESPACE, f"rows_{s}") for s in self._splits}
        self._rejected = Metrics.counter(NAMESPACE, "rejected")

    def setup(self) -> None:
        import tensorflow as tf

        self._example = tf.train.Example
        self._feature = tf.train.Feature
        self._hash = zlib.crc32

    def process(self, line: str) -> Iterator[Any]:
        cells = next(csv.reader([line]), [])
        if len(cells) != len(self._names):
            if line.strip():
                self._rejected.inc()
            return
        example = self._example()
        feature = example.features.feature
        try:
            for name, cell in zip(self._names, cells, strict=True):
                if name not in self._keep:
                    continue
                cell = cell.strip()
                if not cell:
                    feature[name].CopyFrom(self._feature())  # missing value: an empty feature
                    continue
                kind = self._types[name]
                if kind == "int":
                    feature[name].int64_list.value.append(_to_int(cell))
                elif kind == "float":
                    feature[name].float_list.value.append(float(cell))
                else:
                    feature[name].bytes_list.value.append(cell.encode("utf-8"))
        except ValueError:
            self._rejected.inc()
            return
        record = example.SerializeToString(deterministic=True)
        split = self._split(self._hash(record) % BUCKETS)  # TFX's _GeneratePartitionKey
        self._rows[split].inc()
        yield beam.pvalue.TaggedOutput(split, record)

    def _split(self, bucket: int) -> str:
        for split, edge in zip(self._splits, self._edges, strict=True):
            if bucket < edge:
                return split
        return self._splits[-1]


def _to_int(cell: str) -> int:
    try:
        return int(cell)
    except ValueError:
        f = float(cell)
        if not f.is_integer():
            raise
        return int(f)


def run(
    csv_path: str,
    out_dir: str,
    names: list[str],
    types: dict[str, str],
    keep: list[str],
    ratios: dict[str, float],
    options: Any,
) -> dict[str, int]:
    """Run the baseline; returns rows written per split and ``rejected``."""
    splits = list(ratios)
    with beam.Pipeline(options=options) as p:
        parts = (
            p
            | "ReadFromText" >> beam.io.ReadFromText(csv_path, skip_header_lines=1)
            | "ToTFExample"
            >> beam.ParDo(CsvLineToExample(names, types, keep, ratios)).with_outputs(*splits)
        )
        for split in splits:
            _ = parts[split] | f"Write[{split}]" >> beam.io.WriteToTFRecord(
                os.path.join(out_dir, f"Split-{split}", "data"), file_name_suffix=".gz"
            )
    counters = {
        r.key.metric.name: r.committed
        for r in p.result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    }
    counts = {s: int(counters.get(f"rows_{s}", 0)) for s in splits}
    counts["rejected"] = int(counters.get("rejected", 0))
    return counts
