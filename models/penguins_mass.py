"""The penguin body-mass regression model: a small dense network, mean squared error.

Same contract as ``models/penguins.py``. It logs ``rmse`` and ``mae`` (Keras names whose direction
the pipeline knows: lower is better), so ``train.early_stopping_monitor: val_rmse`` keeps the epoch
with the lowest validation RMSE.
"""

from __future__ import annotations

import keras_tuner
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

LABEL_KEY = "body_mass"
FEATURES = ("culmen_length_mm", "culmen_depth_mm", "flipper_length_mm")
SPECIES = 3


def build_model(
    hp: keras_tuner.HyperParameters, tf_transform_output: tft.TFTransformOutput
) -> tf_keras.Model:
    units = hp.Choice("units", [8, 16, 32], default=16)
    learning_rate = hp.Float("learning_rate", 1e-3, 3e-2, sampling="log", default=1e-2)

    inputs = {key: tf_keras.Input(shape=(), name=key, dtype=tf.float32) for key in FEATURES}
    inputs["species"] = tf_keras.Input(shape=(), name="species", dtype=tf.int64)
    species = tf_keras.layers.CategoryEncoding(SPECIES, output_mode="one_hot")(
        tf_keras.layers.Reshape((1,))(inputs["species"])
    )
    numbers = [tf_keras.layers.Reshape((1,))(inputs[key]) for key in FEATURES]
    x = tf_keras.layers.concatenate([*numbers, species])
    x = tf_keras.layers.Dense(units, activation="relu")(x)
    output = tf_keras.layers.Dense(1)(x)

    model = tf_keras.Model(inputs=inputs, outputs=output)
    model.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate),
        loss="mse",
        metrics=[
            tf_keras.metrics.RootMeanSquaredError(name="rmse"),
            tf_keras.metrics.MeanAbsoluteError(name="mae"),
        ],
    )
    return model
