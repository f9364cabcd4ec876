"""Chicago taxi preprocessing for tf.Transform: the label and the features of the tip model.

Contract (every ``transforms/*.py`` module):

- ``preprocessing_fn(inputs) -> dict``: ``inputs`` maps each raw column to a batch of values: a
  dense ``[batch]`` or ``[batch, 1]`` tensor for columns the schema says are always present, a
  ``tf.SparseTensor`` of dense shape ``[batch, 1]`` (absent = missing) for the others. It returns
  dense ``[batch]`` tensors: the model's features and its label. Full-pass analyzers (``tft.*``)
  see the train split only.
- ``RAW_LABEL_KEYS``: raw columns that only feed the label. The exported model's serving
  signatures do not ask for them (the transform graph prunes what depends on them).

Outputs here: z-scored numerics (``fare``, ``trip_miles``, ``trip_seconds`` on a log scale),
bucketized coordinates (``*_latitude``/``*_longitude``, 10 quantile buckets), vocabularies
(``payment_type``, ``company``), hour/day/month and community areas as categorical integers, and
the label ``big_tipper`` (tips > 20 % of the fare).
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

LABEL_KEY = "big_tipper"
RAW_LABEL_KEYS = ("tips",)

NUMERIC = ("fare", "trip_miles", "trip_seconds")
COORDINATES = ("pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude")
VOCABULARY = ("payment_type", "company")
# Categorical integers and the number of values each can take (value 0 = missing/out of range).
CATEGORICAL = {
    "trip_start_hour": 24,
    "trip_start_day": 8,
    "trip_start_month": 13,
    "pickup_community_area": 78,
    "dropoff_community_area": 78,
}
COORDINATE_BUCKETS = 10
VOCABULARY_TOP_K = 1000


def fill(x: tf.Tensor | tf.SparseTensor, default: float | int | str) -> tf.Tensor:
    """A dense ``[batch]`` tensor: missing values (absent sparse entries) become ``default``."""
    if isinstance(x, tf.SparseTensor):
        default_value = (
            tf.constant(default, dtype=x.dtype)
            if x.dtype == tf.string
            else tf.cast(default, x.dtype)
        )
        x = tf.sparse.to_dense(
            tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default_value
        )
    if x.shape.rank == 2:
        x = tf.squeeze(x, axis=1)
    return x


def _number(x: tf.Tensor | tf.SparseTensor, default: float = 0.0) -> tf.Tensor:
    return tf.cast(fill(x, default if x.dtype.is_floating else int(default)), tf.float32)


def _integer(x: tf.Tensor | tf.SparseTensor, size: int) -> tf.Tensor:
    value = tf.cast(_number(x, 0.0), tf.int64)
    return tf.where((value >= 0) & (value < size), value, tf.zeros_like(value))


def preprocessing_fn(inputs: dict[str, tf.Tensor | tf.SparseTensor]) -> dict[str, tf.Tensor]:
    outputs: dict[str, tf.Tensor] = {}
    for key in NUMERIC:
        outputs[key] = tft.scale_to_z_score(tf.math.log1p(tf.maximum(_number(inputs[key]), 0.0)))
    for key in COORDINATES:
        outputs[key] = tft.bucketize(_number(inputs[key]), COORDINATE_BUCKETS)
    for key in VOCABULARY:
        outputs[key] = tft.compute_and_apply_vocabulary(
            fill(inputs[key], ""), top_k=VOCABULARY_TOP_K, num_oov_buckets=1, vocab_filename=key
        )
    for key, size in CATEGORICAL.items():
        outputs[key] = _integer(inputs[key], size)
    tips = _number(inputs["tips"])
    fare = _number(inputs["fare"])
    outputs[LABEL_KEY] = tf.cast(tips > 0.2 * fare, tf.int64)
    return outputs
