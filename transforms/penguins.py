"""Palmer penguins preprocessing for tf.Transform: z-scored measurements and the species label.

Same contract as ``transforms/taxi.py``: ``preprocessing_fn(inputs)`` returns dense ``[batch]``
tensors; ``RAW_LABEL_KEYS`` names the raw columns that only feed the label.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

LABEL_KEY = "species"
RAW_LABEL_KEYS = ("species",)
FEATURES = ("culmen_length_mm", "culmen_depth_mm", "flipper_length_mm", "body_mass_g")


def fill(x: tf.Tensor | tf.SparseTensor, default: float | int) -> tf.Tensor:
    """A dense ``[batch]`` tensor: missing values (absent sparse entries) become ``default``."""
    if isinstance(x, tf.SparseTensor):
        x = tf.sparse.to_dense(
            tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), tf.cast(default, x.dtype)
        )
    if x.shape.rank == 2:
        x = tf.squeeze(x, axis=1)
    return x


def preprocessing_fn(inputs: dict[str, tf.Tensor | tf.SparseTensor]) -> dict[str, tf.Tensor]:
    outputs = {
        key: tft.scale_to_z_score(tf.cast(fill(inputs[key], 0), tf.float32)) for key in FEATURES
    }
    outputs[LABEL_KEY] = tf.cast(fill(inputs[LABEL_KEY], 0), tf.int64)
    return outputs
