"""The gRPC response tensors are the protos ``tf.make_tensor_proto`` builds (clients read them
with ``tf.make_ndarray`` or ``float_val``)."""

import numpy as np
import pytest
import tensorflow as tf

from beam_pipeline.serving.grpc_service import _tensor


@pytest.mark.parametrize(
    "value",
    [
        np.full((1, 1), 0.3, np.float32),
        np.arange(192, dtype=np.float32).reshape(64, 3),
        np.zeros((3,), np.float32),
        np.arange(4, dtype=np.float32).reshape(2, 2)[:, :1],  # not contiguous
        np.zeros((2, 1), np.int64),
    ],
)
def test_tensor_is_make_tensor_proto(value: np.ndarray) -> None:
    assert _tensor(value) == tf.make_tensor_proto(value)
    np.testing.assert_array_equal(tf.make_ndarray(_tensor(value)), value)


def _protos() -> list[tuple[str, object]]:
    """Request tensors as clients build them: ``tf.make_tensor_proto`` of numpy arrays and of
    lists (repeated fields or ``tensor_content``), and hand-made ones (a filled shape, a value
    count that does not match, no shape, a broken ``tensor_content``)."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2

    rng = np.random.default_rng(7)
    cases: list[tuple[str, object]] = []
    for dtype in (np.float32, np.float64, np.int32, np.uint8, np.int16, np.int8, np.int64, bool):
        for shape in ((1,), (5,), (3, 1), (1, 4), (0,), ()):
            size = int(np.prod(shape))
            if dtype is bool:
                value = rng.random(size) > 0.5
            elif np.issubdtype(dtype, np.floating):
                value = rng.normal(size=size) * 1e3
            else:
                info = np.iinfo(dtype)
                value = rng.integers(info.min, info.max, size=size, endpoint=True)
            value = np.asarray(value, dtype).reshape(shape)
            cases.append((f"array {np.dtype(dtype).name}{shape}", tf.make_tensor_proto(value)))
            cases.append(
                (
                    f"list {np.dtype(dtype).name}{shape}",
                    tf.make_tensor_proto(value.tolist(), dtype=tf.as_dtype(dtype)),
                )
            )
    for field, dtype in (("float_val", 1), ("int_val", 3), ("int64_val", 9), ("double_val", 2)):
        filled = tensor_pb2.TensorProto(dtype=dtype)  # one value for a shape of 4: repeated
        filled.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(dim=[{"size": 4}]))
        getattr(filled, field).append(2)
        cases.append((f"filled {field}", filled))
        empty = tensor_pb2.TensorProto(dtype=dtype)  # no values for a shape of 3: zeros
        empty.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(dim=[{"size": 3}]))
        cases.append((f"empty {field}", empty))
        unshaped = tensor_pb2.TensorProto(dtype=dtype)  # values and no shape: a scalar's
        getattr(unshaped, field).extend([1, 2])
        cases.append((f"unshaped {field}", unshaped))
    broken = tensor_pb2.TensorProto(dtype=1, tensor_content=b"\x00" * 7)
    broken.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(dim=[{"size": 2}]))
    cases.append(("content not a multiple of 4 bytes", broken))
    half = tf.make_tensor_proto(np.ones(3, np.float16))  # a dtype read by tf.make_ndarray only
    cases.append(("float16", half))
    return cases


@pytest.mark.parametrize("case", range(len(_protos())))
def test_numeric_tensors_read_as_tf_make_ndarray_reads_them(case: int) -> None:
    """`_values` reads numeric tensors itself: the same values and dtype as tf.make_ndarray, or
    the same refusal (a RequestError where make_ndarray raises)."""
    from beam_pipeline.serving.grpc_service import _values
    from beam_pipeline.serving.inputs import RequestError

    label, proto = _protos()[case]
    try:
        expected = tf.make_ndarray(proto).reshape(-1)
    except (TypeError, ValueError):
        with pytest.raises(RequestError):
            _values("x", proto)
        return
    try:
        got = _values("x", proto)
    except RequestError as err:  # only a shape that is not [rows] or [rows, 1]
        assert "expected shape" in str(err), label
        return
    if isinstance(got, np.ndarray):
        assert got.dtype == expected.dtype, label
    else:  # read as a list: the values make_ndarray gives, as Python numbers
        assert all(type(v) in (int, float, bool) for v in got), label
    assert len(got) == len(expected) and list(got) == expected.tolist(), label
