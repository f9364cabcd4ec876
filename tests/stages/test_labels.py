"""Missing labels are never filled (issue 10, item 5): transform drops and counts unlabeled rows,
and a label missing everywhere is a stage error whatever the validation gate says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from beam_pipeline.core.labels import labeled
from tests import ml_fixtures

pytestmark = pytest.mark.slow
MODULE = ml_fixtures.ROOT / "transforms" / "penguins.py"


def _penguins(tmp_path: Path, blank: slice | None) -> Path:
    frame = pd.read_csv(ml_fixtures.PENGUINS_CSV)
    frame["species"] = frame["species"].astype(float)
    frame.loc[frame.index[blank] if blank else frame.index, "species"] = np.nan
    csv = tmp_path / "penguins.csv"
    frame.to_csv(csv, index=False)
    return csv


def test_labeled_mask() -> None:
    batch = pa.RecordBatch.from_pydict(
        {"y": pa.array([[1.0], None, [], [0.0]], pa.list_(pa.float32())), "x": [1, 2, 3, 4]}
    )
    assert labeled(batch, ["y"]).tolist() == [True, False, False, True]
    assert labeled(batch, ["missing"]).tolist() == [False] * 4


def test_unlabeled_rows_are_dropped_and_counted(tmp_path) -> None:
    csv = _penguins(tmp_path, slice(0, 40))
    examples, schema = ml_fixtures.make_examples(csv, tmp_path / "in")
    code, err, outputs = ml_fixtures.run_transform_subprocess(
        examples, schema, MODULE, tmp_path / "out"
    )
    assert code == 0 and outputs, err[-3000:]
    props = outputs["transformed_examples"].properties
    raw = examples.properties["row_counts"]
    assert sum(props["unlabeled"].values()) == 40
    for split in ("train", "eval"):
        assert props["row_counts"][split] == raw[split] - props["unlabeled"][split]


def test_a_label_missing_everywhere_is_a_stage_error(tmp_path) -> None:
    csv = _penguins(tmp_path, None)
    examples, schema = ml_fixtures.make_examples(csv, tmp_path / "in")
    code, err, outputs = ml_fixtures.run_transform_subprocess(
        examples, schema, MODULE, tmp_path / "out"
    )
    assert code == 1 and not outputs, err
    error = (tmp_path / "out" / "error.txt").read_text()
    assert error.startswith("DataError: transform: the label ['species'] is missing in"), error
    assert "never filled" in error


def test_evaluate_skips_and_counts_rows_without_a_label(tmp_path) -> None:
    import tensorflow as tf

    from beam_pipeline.core.errors import DataError
    from beam_pipeline.stages import evaluate as ev
    from tests import pipeline_fixtures as pf

    run1 = pf.taxi_runs()["runs"][0]
    examples = pf.stage_output(run1, "ingest", "examples")
    files = sorted(str(p) for p in (examples / "Split-eval").glob("*.tfrecord.gz"))
    records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]

    def write(name: str, unlabeled: int) -> str:
        path = tmp_path / f"{name}.tfrecord"
        with tf.io.TFRecordWriter(str(path)) as writer:
            for i, record in enumerate(records):
                example = tf.train.Example.FromString(record)
                if i < unlabeled:
                    del example.features.feature["tips"]
                writer.write(example.SerializeToString())
        return str(path)

    job = ev.EvalJob(
        examples=write("some", 50),
        models={ev.CANDIDATE: str(pf.stage_output(run1, "train", "model") / "saved_model")},
        transform_graph=str(pf.stage_output(run1, "transform", "transform_graph")),
        label_key="big_tipper",
        slice_specs=[],
        boundaries={},
        task="binary",
        raw_label_keys=("tips",),
    )
    results = ev.evaluate_models(job, tmp_path / "scratch")
    assert results["unlabeled"] == 50 and results["count"] == len(records) - 50
    assert results[ev.CANDIDATE][ev.OVERALL]["example_count"] == len(records) - 50

    import dataclasses

    none = dataclasses.replace(job, examples=write("none", len(records)))
    with pytest.raises(DataError, match=r"evaluate: the label \['tips'\] is missing in all"):
        ev.evaluate_models(none, tmp_path / "scratch2")
