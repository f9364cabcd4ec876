from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import tensorflow as tf
from apache_beam.io.tfrecordio import _TFRecordUtil

from beam_pipeline.io.example_coder import encode
from beam_pipeline.io.tfrecord import frame


def _expected(batch: pa.RecordBatch, row: int) -> tf.train.Example:
    ex = tf.train.Example()
    for name, col in zip(batch.schema.names, batch.columns, strict=True):
        value = col[row].as_py()
        if value is None:
            continue
        feature = ex.features.feature[name]
        if pa.types.is_integer(col.type):
            feature.int64_list.value.append(value)
        elif pa.types.is_floating(col.type):
            feature.float_list.value.append(value)
        else:
            feature.bytes_list.value.append(value.encode() if isinstance(value, str) else value)
    return ex


def test_encode_matches_protobuf_for_every_kind_of_value() -> None:
    long_name = "a_feature_name_that_is_long_" * 5  # > 127 bytes: multi-byte varint lengths
    batch = pa.RecordBatch.from_arrays(
        [
            pa.array([0, -1, 2**62, None, 127, 128, -(2**63)], pa.int64()),
            pa.array([1.5, None, float("nan"), -0.0, 3.4e38, 1e-30, 2.0], pa.float64()),
            pa.array(["", "Cash", "é" * 200, None, "x" * 127, "y" * 128, "z"], pa.string()),
            pa.array([1, 2, 3, 4, 5, None, 7], pa.int64()),
            pa.array([None] * 7, pa.string()),
        ],
        names=["i", "f", "s", long_name, "empty"],
    )
    out = encode(batch).to_pylist()
    for row, data in enumerate(out):
        got = tf.train.Example.FromString(data)
        want = _expected(batch, row)
        if row == 2:  # NaN != NaN: compare the rest, then the NaN itself
            assert np.isnan(got.features.feature["f"].float_list.value[0])
            del got.features.feature["f"], want.features.feature["f"]
        assert got == want, row


def test_encode_is_parsed_by_tensorflow() -> None:
    batch = pa.RecordBatch.from_arrays(
        [pa.array([1, None, 3]), pa.array(["a", "b", None])], names=["n", "s"]
    )
    parsed = tf.io.parse_example(
        encode(batch).to_pylist(),
        {"n": tf.io.VarLenFeature(tf.int64), "s": tf.io.VarLenFeature(tf.string)},
    )
    assert tf.sparse.to_dense(parsed["n"]).numpy().ravel().tolist() == [1, 0, 3]
    assert parsed["s"].values.numpy().tolist() == [b"a", b"b"]


def test_frame_matches_beams_tfrecord_framing() -> None:
    records = [b"hello", b"", b"x" * 300, bytes(range(256))]
    expected = io.BytesIO()
    for r in records:
        _TFRecordUtil.write_record(expected, r)
    assert frame(records) == expected.getvalue()
    assert frame(pa.array(records, pa.binary()).slice(1)) == expected.getvalue()[21:]
