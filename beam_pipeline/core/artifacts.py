"""Artifacts: typed outputs of stages, and the one place that knows their on-disk layout.

An artifact lives under ``{root}/{stage}/{execution_id}/{output_key}/``. While a stage runs it
writes into ``{root}/{stage}/.{execution_id}.tmp/``; the orchestrator renames that folder into
place and only then registers the artifacts LIVE in ML Metadata.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from beam_pipeline.core.errors import DataError

if TYPE_CHECKING:
    from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

# File and folder names inside artifacts: spelled here only; stages use the accessors below.
EXAMPLES_GLOB = "data-*.tfrecord.gz"  # Examples: Split-{split}/data-SSSSS-of-NNNNN.tfrecord.gz
EXAMPLES_PREFIX = "data"
STATS_FILE = "FeatureStats.pb"
SCHEMA_FILE = "schema.pbtxt"
SAVED_MODEL_DIR = "saved_model"
HYPERPARAMETERS_FILE = "best_hyperparameters.json"
METRICS_FILE = "metrics.json"  # ModelEvaluation
REJECTED_DIR = "rejected"  # dead letters of ingest, score and monitor: rejected/rejected-*.jsonl
REJECTED_PREFIX = "rejected"

# Artifact type name -> the layout of its folder (also the MLMD type's description).
TYPES: dict[str, str] = {
    "Examples": "Split-{split}/data-*.tfrecord.gz (gzip tf.Example); rejected/*.jsonl "
    "(file, line, reason, raw)",
    "ExampleStatistics": "Split-{split}/FeatureStats.pb (DatasetFeatureStatisticsList), "
    "Split-{split}/statistics.html (self-contained: inline SVG, no scripts)",
    "Schema": "schema.pbtxt (tensorflow_metadata Schema, text format)",
    "ExampleAnomalies": "Split-{split}/SchemaDiff.pb (Anomalies), SkewDiff.pb, DriftDiff.pb "
    "(comparator Anomalies, when run), anomalies.txt, anomalies.json",
    "TransformGraph": "the tf.Transform output directory (transform_fn/, transformed_metadata/)",
    "HyperParameters": "best_hyperparameters.json, trials.txt",
    "Model": "saved_model/ (SavedModel with serving_default on serialized tf.Example and "
    "serving_raw on raw features)",
    "ModelRun": "TensorBoard logs",
    "ModelEvaluation": "metrics.json",
    "ModelBlessing": "BLESSED or NOT_BLESSED (a file whose name is the verdict), reasons.json",
    "PushedModel": "push.json (pushed, pushed_version, serving_path, reason): a pointer to "
    "{serving_dir}/{model_name}/{version}/",
    "InferenceResult": "a batch scoring output folder: predictions-*.{jsonl,csv,parquet,"
    "tfrecord.gz}, rejected/*.jsonl (file, line, reason, raw)",
    "MonitoringReport": "report.json, report.txt, report.html (self-contained), FeatureStats.pb "
    "(statistics of the logged features), labelled/ (labelled rows as CSV), rejected/*.jsonl "
    "(file, line, reason, raw)",
    "DataSpan": "span-{N}/data.csv (labelled logged traffic: raw columns plus the label) and "
    "request_ids.txt (the served requests it came from)",
}


@dataclass
class Artifact:
    """One typed output: its type, where it lives and what is known about it.

    ``fingerprint`` identifies the content: equal fingerprints mean equal bytes or the same
    computation over equal inputs. Cache keys are built from fingerprints, never from ids.
    """

    type: str
    uri: str
    properties: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    id: int | None = None

    @property
    def path(self) -> Path:
        """The folder: a `Path`, or an `ObjectPath` (same API) for an object-store URI."""
        from beam_pipeline.io.filesystem import as_path

        return as_path(self.uri)  # type: ignore[return-value]

    def split_dir(self, split: str) -> Path:
        return self.path / f"Split-{split}"

    @property
    def splits(self) -> list[str]:
        return list(self.properties.get("splits", []))

    def brief(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "uri": self.uri}


# ---------------------------------------------------------------------------------------------
# Typed accessors: what a stage reads from (or writes into) another stage's artifact


def examples_pattern(examples: Artifact | str | Path, split: str) -> str:
    """The glob of one split's gzip TFRecord files of an ``Examples`` artifact (or folder)."""
    base = examples.path if isinstance(examples, Artifact) else _as_path(examples)
    return str(split_dir(base, split) / EXAMPLES_GLOB)


def examples_prefix(base: Path, split: str) -> str:
    """The shard prefix a stage writes one split of an ``Examples`` output under."""
    return str(split_dir(base, split) / EXAMPLES_PREFIX)


def stats_path(statistics: Artifact, split: str) -> str:
    """The ``DatasetFeatureStatisticsList`` file of one split of an ``ExampleStatistics``."""
    return str(statistics.split_dir(split) / STATS_FILE)


def load_statistics(
    statistics: Artifact, split: str
) -> statistics_pb2.DatasetFeatureStatisticsList:
    """The statistics of one split; DataError naming the artifact or file when absent or bad."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    path = stats_path(statistics, split)
    if split not in statistics.splits and not statistics.split_dir(split).is_dir():
        raise DataError(
            f"{statistics.uri}: no statistics for split {split!r}; "
            f"expected one of {statistics.splits}"
        )
    try:
        from beam_pipeline.io import filesystem

        return statistics_pb2.DatasetFeatureStatisticsList.FromString(filesystem.read_bytes(path))
    except Exception as exc:  # OSError or a DecodeError: name the file either way
        raise DataError(f"{path}: cannot read statistics: {exc}") from exc


def schema_path(schema: Artifact) -> Path:
    return schema.path / SCHEMA_FILE


def load_schema(schema: Artifact) -> schema_pb2.Schema:
    """The Schema proto of a ``Schema`` artifact; DataError naming the file when unreadable."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    from beam_pipeline.io import filesystem

    file = schema_path(schema)
    try:
        return text_format.Parse(filesystem.read_text(str(file)), schema_pb2.Schema())
    except (OSError, text_format.ParseError) as exc:
        raise DataError(f"{file}: cannot read the schema: {exc}") from exc


def saved_model_dir(model: Artifact | Path) -> Path:
    """The SavedModel folder of a ``Model`` artifact (or of its folder)."""
    return (model.path if isinstance(model, Artifact) else _as_path(model)) / SAVED_MODEL_DIR


def metrics_path(evaluation: Artifact | Path) -> Path:
    """The ``metrics.json`` of a ``ModelEvaluation`` artifact (or of its folder)."""
    return (evaluation.path if isinstance(evaluation, Artifact) else _as_path(evaluation)) / (
        METRICS_FILE
    )


def rejected_dir(base: Artifact | Path | str) -> Path:
    """The dead-letter folder of an output (``rejected/``: one JSON object per rejected row)."""
    return (base.path if isinstance(base, Artifact) else _as_path(base)) / REJECTED_DIR


def rejected_prefix(base: Artifact | Path | str) -> str:
    """The shard prefix dead letters are written under (``rejected/rejected-SSSSS-of-N.jsonl``)."""
    return str(rejected_dir(base) / REJECTED_PREFIX)


def hyperparameters_path(hyperparameters: Artifact | Path) -> Path:
    base = hyperparameters.path if isinstance(hyperparameters, Artifact) else hyperparameters
    return _as_path(base) / HYPERPARAMETERS_FILE


def _as_path(where: str | Path) -> Path:
    """A local `Path`, or an `ObjectPath` for an object-store URI (or an ObjectPath as is)."""
    from beam_pipeline.io.filesystem import as_path

    return as_path(where)  # type: ignore[return-value]


def exists(uri: str) -> bool:
    """Whether an artifact's folder (local or remote, through Beam's FileSystems) exists."""
    from beam_pipeline.io import filesystem

    return filesystem.exists(uri)


def usable(art: Artifact) -> bool:
    """LIVE in ML Metadata and still on disk: safe to hand to a stage."""
    return art.properties.get("_state") == "LIVE" and exists(art.uri)


def stage_dir(root: Path, stage: str, execution_id: int) -> Path:
    return root / stage / str(execution_id)


def staging_dir(root: Path, stage: str, execution_id: int) -> Path:
    return root / stage / f".{execution_id}.tmp"


def staging_path(final: Path, execution_id: int) -> Path:
    """Where an execution stages its output before the rename onto ``final``: a hidden folder
    beside it (``{root}/{stage}/.{execution_id}.tmp`` for a stage; ``.{name}.{id}.tmp`` for a
    named destination, so that two executions aimed at one folder never share a staging one)."""
    name = final.name if final.name == str(execution_id) else f"{final.name}.{execution_id}"
    return final.parent / f".{name}.tmp"


# The monitor's folders: {root}/monitor/{report}/ (report.json|txt|html, FeatureStats.pb,
# rejected/, labelled/), cache/, retrain.lock, spans/span-N/ (data.csv, request_ids.txt).
REPORT_FILES = ("report.json", "report.txt", "report.html")


def monitor_dir(root: Path | str) -> Path:
    return _as_path(root) / "monitor"


def monitor_cache(root: Path | str) -> Path:
    """Results the monitor computes once per model (eval predictions, training deciles)."""
    return monitor_dir(root) / "cache"


def span_path(folder: Path, span: int) -> Path:
    """A retraining span: ``{folder}/span-{span}/`` holding ``data.csv`` and ``request_ids.txt``."""
    return folder / f"span-{span}"


def split_dir(base: Path, split: str) -> Path:
    return base / f"Split-{split}"


def digest(*parts: Any) -> str:
    """A stable sha256 over JSON-able parts."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def file_digest(paths: list[str]) -> str:
    """sha256 over the bytes of files, in the given order (names do not count, bytes do)."""
    from apache_beam.io.filesystems import FileSystems

    h = hashlib.sha256()
    for p in paths:
        with FileSystems.open(p, compression_type="uncompressed") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()
