"""The skew reference: the model's training data counted on its own deciles.

The training statistics give the bucket boundaries (their quantiles); the counts come from the
train split itself, read once per (statistics, boundaries) and cached next to the reports, so a
value on a boundary (a point mass: many trips of exactly 5.25) falls in the same bucket on both
sides. The window is counted the same way by the monitor job (`job.count_buckets`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from beam_pipeline.core.comparators import bucket_counts
from beam_pipeline.io import filesystem

log = logging.getLogger(__name__)
BATCH = 16384


def training_buckets(
    pattern: str | None, buckets: dict[str, list[float]], cache: Path, key: str
) -> dict[str, list[int]]:
    """Feature -> counts of the train split's values on ``buckets`` (feature -> boundaries).

    Args:
        pattern: the train split's tf.Example files (gzipped TFRecords); None: no reference.
        buckets: the boundaries per numeric feature.
        cache: folder of cached results.
        key: what identifies the training data (its statistics artifact id).
    """
    if not pattern or not buckets:
        return {}
    digest = hashlib.sha256(json.dumps([key, buckets], sort_keys=True).encode()).hexdigest()[:16]
    file = cache / f"train-buckets-{digest}.json"
    if file.is_file():
        return json.loads(file.read_text())
    import tensorflow as tf
    from tfx_bsl.coders.example_coder import ExamplesToRecordBatchDecoder

    t0 = time.time()
    files = tf.io.gfile.glob(pattern)
    if not files:
        return {}
    decoder = ExamplesToRecordBatchDecoder()
    totals = {name: np.zeros(len(edges) + 1, dtype=np.int64) for name, edges in buckets.items()}
    rows = 0
    data = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(BATCH)
    for serialized in data.as_numpy_iterator():
        batch = decoder.DecodeBatch(list(serialized))
        rows += batch.num_rows
        for name, edges in buckets.items():
            idx = batch.schema.get_field_index(name)
            if idx < 0:
                continue
            totals[name] += bucket_counts(_values(batch.column(idx)), edges)
    out = {name: c.tolist() for name, c in totals.items()}
    filesystem.write_text_atomic(file, json.dumps(out))
    log.info(
        "monitor: training data counted on its deciles (%s rows, %d features), %.1f s",
        f"{rows:,}",
        len(out),
        time.time() - t0,
    )
    return out


def _values(column: Any) -> np.ndarray:
    """The values of a list column (one per row where present) as float64."""
    import pyarrow as pa
    import pyarrow.compute as pc

    flat = pc.list_flatten(column)
    return pc.cast(flat, pa.float64()).to_numpy(zero_copy_only=False)
