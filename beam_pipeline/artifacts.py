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
from typing import Any

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


def stage_dir(root: Path, stage: str, execution_id: int) -> Path:
    return root / stage / str(execution_id)


def staging_dir(root: Path, stage: str, execution_id: int) -> Path:
    return root / stage / f".{execution_id}.tmp"


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
