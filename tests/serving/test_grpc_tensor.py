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
