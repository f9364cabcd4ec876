"""Tiny fixtures shared by the statistics, schema and validate stage tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tensorflow as tf

from beam_pipeline.core.artifacts import Artifact
from beam_pipeline.core.config import Config, MetadataSection, PipelineSection
from beam_pipeline.core.metadata import Store
from beam_pipeline.core.stage import Stage, StageContext


def example(row: dict[str, Any]) -> bytes:
    """One serialized tf.Example from a dict of scalar str/int/float values."""
    feats = {}
    for name, value in row.items():
        if isinstance(value, str):
            feats[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        elif isinstance(value, int):
            feats[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        else:
            feats[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def write_examples(uri: Path, splits: dict[str, list[dict[str, Any]]], fp: str = "x") -> Artifact:
    """An Examples artifact at ``uri`` with one gzip TFRecord file per split."""
    for split, rows in splits.items():
        folder = uri / f"Split-{split}"
        folder.mkdir(parents=True, exist_ok=True)
        with tf.io.TFRecordWriter(str(folder / "data-00000-of-00001.tfrecord.gz"), "GZIP") as w:
            for row in rows:
                w.write(example(row))
    return Artifact("Examples", str(uri), {"splits": list(splits)}, fingerprint=fp)


def make_config(tmp_path: Path, stages: dict[str, Any]) -> Config:
    """A config with an in-memory metadata store and the given stage sections."""
    return Config(
        pipeline=PipelineSection(name="test", root=str(tmp_path / "runs")),
        metadata=MetadataSection(backend="memory"),
        stages=stages,
    )


def make_ctx(stage: Stage, config: Config, out: Path, store: Store | None = None) -> StageContext:
    """A context like the orchestrator's, writing under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    return StageContext(stage.name, config, store or Store(config), "run1", output_dir=out)


def penguin_rows(n: int, *, shift: float = 0.0, species: str = "Adelie") -> list[dict[str, Any]]:
    """``n`` fixed rows: two string, one int and one float feature (``shift`` moves the float)."""
    return [
        {
            "island": ["Biscoe", "Dream", "Torgersen"][i % 3],
            "species": species if i % 2 else "Gentoo",
            "count": i % 5,
            "weight": min(1.0, (i % 10) / 10 + shift),
        }
        for i in range(n)
    ]
