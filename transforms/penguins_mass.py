"""Regression on the bundled penguins: a penguin's body mass from its other measurements.

Same contract as ``transforms/penguins.py``: ``preprocessing_fn(inputs)`` returns dense
``[batch]`` tensors; ``RAW_LABEL_KEYS`` names the raw columns that only feed the label. The label
``body_mass`` is the raw ``body_mass_g`` column (scaled to [0, 1] in the bundled file), kept in its
own units so that RMSE and MAE read in them.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

LABEL_KEY = "body_mass"
RAW_LABEL_KEYS = ("body_mass_g",)
FEATURES = ("culmen_length_mm", "culmen_depth_mm", "flipper_length_mm")


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
    outputs["species"] = tf.cast(fill(inputs["species"], 0), tf.int64)
    outputs[LABEL_KEY] = tf.cast(fill(inputs["body_mass_g"], 0), tf.float32)
    return outputs
