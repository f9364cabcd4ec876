"""Fixtures for the transform/tune/train tests: Examples and a Schema made straight from a CSV.

They follow the upstream contracts (ingest's ``Examples``: ``Split-{split}/data-*.tfrecord.gz``
with splits/row_counts/columns; schema's ``schema.pbtxt`` as TFDV infers it: always-present
columns get shape [1], the others none) without running those stages, so these tests do not
depend on them.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from beam_pipeline.core.artifacts import Artifact

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
    csv: Path,
    out: Path,
    *,
    rows: int | None = None,
    eval_fraction: float = 0.2,
    shards: int = 3,
    seed: int = 7,
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
        "Examples",
        str(out / "examples"),
        {"splits": ["train", "eval"], "row_counts": counts, "columns": columns},
        fingerprint=f"examples-{csv.name}-{rows}",
    )
    schema = schema_pb2.Schema()
    for name, kind in columns.items():
        feature = schema.feature.add(name=name)
        feature.type = {
            "string": schema_pb2.BYTES,
            "int": schema_pb2.INT,
            "float": schema_pb2.FLOAT,
        }[kind]
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
    from beam_pipeline.core.config import Config, MetadataSection, PipelineSection
    from beam_pipeline.core.stage import StageContext

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

    job = {
        "examples": [examples.uri, examples.properties],
        "schema": [schema.uri, schema.properties],
        "module": str(module),
        "out": str(out),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tests.ml_fixtures", "transform", json.dumps(job)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
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

    from beam_pipeline.core.errors import PipelineError
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


def _train_main(job_text: str) -> None:
    """Runs train.train_model (or tune.search) as described by a JSON job; writes result.json."""
    import json

    job = json.loads(job_text)
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    if job["kind"] == "train":
        from beam_pipeline.stages import train

        section = train.TrainSection(**job["section"])
        result = train.train_model(
            section, train.TrainInputs(**job["inputs"]), out / "model", out / "run"
        )
    else:
        from beam_pipeline.stages import tune

        result = tune.search(
            tune.TuneSection(**job["section"]), tune.SearchInputs(**job["inputs"]), job["directory"]
        )
    (out / "result.json").write_text(json.dumps(result, default=str))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_job(job: dict, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.Popen:
    """Starts ``_train_main`` in a child process (the caller waits on it with a timeout)."""
    import json

    log = open(Path(job["out"]).with_suffix(".log"), "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "tests.ml_fixtures", "job", json.dumps(job)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
    )


def wait_all(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    """Waits for every process; kills all of them once ``timeout`` seconds have passed."""
    import time

    deadline = time.monotonic() + timeout
    codes = []
    try:
        for proc in procs:
            codes.append(proc.wait(timeout=max(1.0, deadline - time.monotonic())))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return codes


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _check_model_main(model_dir: str, csv: str, rows: int) -> None:
    """Loads a SavedModel and predicts the CSV's first rows through both signatures."""
    import json

    model = tf.saved_model.load(model_dir)
    raw_fn = model.signatures["serving_raw"]
    names = sorted(raw_fn.structured_input_signature[1])
    frame = pd.read_csv(csv, nrows=rows, dtype=str, keep_default_na=False)
    raw = raw_fn(**{k: tf.constant(frame[k].tolist()) for k in names})["predictions"].numpy()
    typed = pd.read_csv(csv, nrows=rows, dtype={"payment_type": object, "company": object})
    columns = {c: _kind(typed[c]) for c in typed.columns}
    part = typed.astype(object).where(typed.notna(), None)
    serialized = [_example(r, columns) for r in part.to_dict("records")]
    examples = model.signatures["serving_default"](examples=tf.constant(serialized))
    from_examples = examples["predictions"].numpy()
    print(json.dumps({"raw": raw.tolist(), "examples": from_examples.tolist()}))
    sys.stdout.flush()
    os._exit(0)


def check_model(model_dir: Path, csv: Path, rows: int = 40, timeout: float = 120) -> dict:
    """Predictions of a reloaded SavedModel (fresh process) from raw values and from tf.Example."""
    import json

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.ml_fixtures",
            "check-model",
            str(model_dir),
            str(csv),
            str(rows),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@functools.cache
def transformed(dataset: str, rows: int | None = None) -> dict[str, Artifact]:
    """Examples + Schema + transform outputs for a bundled dataset, made once per test session."""
    csv = {"taxi": TAXI_CSV, "penguins": PENGUINS_CSV}[dataset]
    base = Path(tempfile.mkdtemp(prefix=f"fixture-{dataset}-"))
    atexit.register(shutil.rmtree, base, True)
    examples, schema = make_examples(csv, base / "in", rows=rows)
    code, err, outputs = run_transform_subprocess(
        examples, schema, ROOT / "transforms" / f"{dataset}.py", base / "out"
    )
    assert code == 0 and outputs, err
    return {"examples": examples, "schema": schema, **outputs}


if __name__ == "__main__":
    # python -m tests.ml_fixtures examples CSV OUT   (a full-size fixture, by hand)
    # python -m tests.ml_fixtures transform JOB_JSON (run_transform_subprocess)
    # python -m tests.ml_fixtures job JOB_JSON       (run_job: training or tuning)
    # python -m tests.ml_fixtures check-model DIR CSV ROWS
    command = sys.argv[1]
    if command == "examples":
        make_examples(Path(sys.argv[2]), Path(sys.argv[3]))
    elif command == "transform":
        _transform_main(sys.argv[2])
    elif command == "job":
        _train_main(sys.argv[2])
    else:
        _check_model_main(sys.argv[2], sys.argv[3], int(sys.argv[4]))
