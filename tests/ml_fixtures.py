"""Fixtures for the transform/tune/train tests: Examples and a Schema made straight from a CSV.

They follow the upstream contracts (ingest's ``Examples``: ``Split-{split}/data-*.tfrecord.gz``
with splits/row_counts/columns; schema's ``schema.pbtxt`` as TFDV infers it: always-present
columns get shape [1], the others none) without running those stages, so these tests do not
depend on them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from beam_pipeline.artifacts import Artifact

ROOT = Path(__file__).resolve().parent.parent
TAXI_CSV = ROOT / "data" / "chicago_taxi" / "data.csv"
PENGUINS_CSV = ROOT / "data" / "penguins" / "penguins_processed.csv"


def _kind(column: pd.Series) -> str:
    if column.dtype == object:
        return "string"
    present = column.dropna()
    if column.dtype.kind == "i" or (len(present) and np.all(present == np.round(present))):
        return "int"
    return "float"


def _example(row: dict[str, object], columns: dict[str, str]) -> bytes:
    features = {}
    for name, kind in columns.items():
        value = row[name]
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        if kind == "string":
            f = tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(value).encode()]))
        elif kind == "int":
            f = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
        else:
            f = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
        features[name] = f
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def make_examples(
    csv: Path, out: Path, *, rows: int | None = None, eval_fraction: float = 0.2,
    shards: int = 3, seed: int = 7,
) -> tuple[Artifact, Artifact]:
    """Writes Examples and a Schema under ``out``; returns both artifacts."""
    frame = pd.read_csv(csv, nrows=rows, dtype={"payment_type": object, "company": object})
    columns = {name: _kind(frame[name]) for name in frame.columns}
    is_eval = np.random.default_rng(seed).random(len(frame)) < eval_fraction
    counts = {}
    for split, mask in (("train", ~is_eval), ("eval", is_eval)):
        part = frame[mask].astype(object).where(frame[mask].notna(), None)
        records = [_example(r, columns) for r in part.to_dict("records")]
        counts[split] = len(records)
        folder = out / "examples" / f"Split-{split}"
        folder.mkdir(parents=True, exist_ok=True)
        options = tf.io.TFRecordOptions(compression_type="GZIP")
        for i in range(shards):
            name = folder / f"data-{i:05d}-of-{shards:05d}.tfrecord.gz"
            with tf.io.TFRecordWriter(str(name), options) as writer:
                for record in records[i::shards]:
                    writer.write(record)
    examples = Artifact(
        "Examples", str(out / "examples"),
        {"splits": ["train", "eval"], "row_counts": counts, "columns": columns},
        fingerprint=f"examples-{csv.name}-{rows}",
    )
    schema = schema_pb2.Schema()
    for name, kind in columns.items():
        feature = schema.feature.add(name=name)
        feature.type = {"string": schema_pb2.BYTES, "int": schema_pb2.INT, "float": schema_pb2.FLOAT}[
            kind
        ]
        feature.value_count.min = feature.value_count.max = 1
        if frame[name].notna().all():
            feature.presence.min_fraction = 1.0
            feature.shape.dim.add(size=1)
        feature.presence.min_count = 1
    (out / "schema").mkdir(parents=True, exist_ok=True)
    (out / "schema" / "schema.pbtxt").write_text(text_format.MessageToString(schema))
    schema_artifact = Artifact(
        "Schema", str(out / "schema"), {}, fingerprint=f"schema-{csv.name}-{rows}"
    )
    return examples, schema_artifact




# ---------------------------------------------------------------------------------------------
# Running a stage function outside the orchestrator


def context(stage: str, out: Path, root: Path | None = None) -> object:
    """A StageContext with an in-memory store whose outputs land under ``out``."""
    from beam_pipeline.config import Config, MetadataSection, PipelineSection
    from beam_pipeline.stage import StageContext

    config = Config(
        pipeline=PipelineSection(name="test", root=str(root or out)),
        metadata=MetadataSection(backend="memory"),
    )
    out.mkdir(parents=True, exist_ok=True)
    return StageContext(stage, config, None, "test-run", out)  # type: ignore[arg-type]


def run_transform_subprocess(
    examples: Artifact, schema: Artifact, module: Path, out: Path, timeout: float = 240
) -> tuple[int, str, dict[str, Artifact]]:
    """Runs the transform stage in a child process (tf.Transform processes crash at exit).

    Returns (exit code, stderr tail, outputs read back from ``out/outputs.json``).
    """
    import json
    import subprocess
    import sys

    job = {
        "examples": [examples.uri, examples.properties],
        "schema": [schema.uri, schema.properties],
        "module": str(module),
        "out": str(out),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tests.ml_fixtures", "transform", json.dumps(job)],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    result = out / "outputs.json"
    outputs = {}
    if result.is_file():
        for key, (type_, uri, props) in json.loads(result.read_text()).items():
            outputs[key] = Artifact(type_, uri, props, fingerprint=f"{key}-{uri}")
    return proc.returncode, proc.stderr[-3000:], outputs


def _transform_main(job_text: str) -> None:
    import json

    from beam_pipeline.errors import PipelineError
    from beam_pipeline.stages import transform

    job = json.loads(job_text)
    out = Path(job["out"])
    inputs = {
        "examples": Artifact("Examples", job["examples"][0], job["examples"][1]),
        "schema": Artifact("Schema", job["schema"][0], job["schema"][1]),
    }
    section = transform.TransformSection(module=job["module"], shards=3)
    ctx = context("transform", out)
    try:
        transform.prepare(section, inputs, ctx)  # type: ignore[arg-type]
        outputs = transform.run(section, inputs, ctx)  # type: ignore[arg-type]
    except PipelineError as exc:
        (out / "error.txt").write_text(f"{type(exc).__name__}: {exc}")
        sys.stderr.flush()
        os._exit(exc.exit_code)
    (out / "outputs.json").write_text(
        json.dumps({k: [a.type, a.uri, a.properties] for k, a in outputs.items()})
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # tf.Transform processes may segfault at interpreter shutdown


if __name__ == "__main__":
    # python -m tests.ml_fixtures examples CSV OUT   (a full-size fixture, by hand)
    # python -m tests.ml_fixtures transform JOB_JSON (used by run_transform_subprocess)
    if sys.argv[1] == "examples":
        make_examples(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        _transform_main(sys.argv[2])
