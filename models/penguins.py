"""The penguin species model: a small dense 3-class classifier over z-scored measurements.

Same contract as ``models/taxi.py``: ``LABEL_KEY`` and ``build_model(hp, tf_transform_output)``
returning a compiled tf_keras model whose inputs are named after transformed features.
"""

from __future__ import annotations

import keras_tuner
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

LABEL_KEY = "species"
FEATURES = ("culmen_length_mm", "culmen_depth_mm", "flipper_length_mm", "body_mass_g")
CLASSES = 3


def build_model(
    hp: keras_tuner.HyperParameters, tf_transform_output: tft.TFTransformOutput
) -> tf_keras.Model:
    units = hp.Choice("units", [8, 16, 32, 64], default=32)
    layers = hp.Int("hidden_layers", 1, 3, default=2)
    learning_rate = hp.Float("learning_rate", 1e-3, 3e-2, sampling="log", default=1e-2)

    inputs = {key: tf_keras.Input(shape=(), name=key, dtype=tf.float32) for key in FEATURES}
    x = tf_keras.layers.concatenate([tf_keras.layers.Reshape((1,))(v) for v in inputs.values()])
    for _ in range(layers):
        x = tf_keras.layers.Dense(units, activation="relu")(x)
    output = tf_keras.layers.Dense(CLASSES, activation="softmax")(x)

    model = tf_keras.Model(inputs=inputs, outputs=output)
    model.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=[tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model
