"""The taxi big-tipper model: a wide-and-deep binary classifier over the transformed features.

Contract (every ``models/*.py`` module):

- ``LABEL_KEY``: the transformed feature the model predicts (made by the transform module).
- ``build_model(hp, tf_transform_output) -> tf_keras.Model``: returns a *compiled* tf_keras model
  whose inputs are named after transformed features (each a ``[batch]`` tensor, as in
  ``tf_transform_output.transformed_feature_spec()``), label excluded. ``hp`` is a
  ``keras_tuner.HyperParameters``; every ``hp.Choice/Int/Float/Boolean`` call both declares the
  search space and reads the value, and its ``default`` is what training uses when tuning is off.
  Metrics compiled in under the names ``auc``/``accuracy`` are reported by the train stage.
- Import Keras as ``tf_keras`` (never ``tf.keras``, never ``keras``): one Keras for the whole chain.
"""

from __future__ import annotations

import keras_tuner
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

LABEL_KEY = "big_tipper"

NUMERIC = ("fare", "trip_miles", "trip_seconds")
# Categorical features and their sizes; those set to None are read from the transform output.
CATEGORICAL: dict[str, int | None] = {
    "payment_type": None,
    "company": None,
    "pickup_latitude": None,
    "pickup_longitude": None,
    "dropoff_latitude": None,
    "dropoff_longitude": None,
    "trip_start_hour": 24,
    "trip_start_day": 8,
    "trip_start_month": 13,
    "pickup_community_area": 78,
    "dropoff_community_area": 78,
}


def build_model(
    hp: keras_tuner.HyperParameters, tf_transform_output: tft.TFTransformOutput
) -> tf_keras.Model:
    units = hp.Choice("units", [32, 64, 128, 256], default=128)
    layers = hp.Int("hidden_layers", 1, 3, default=2)
    dropout = hp.Float("dropout", 0.0, 0.4, step=0.1, default=0.1)
    learning_rate = hp.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=3e-3)
    embedding_dim = hp.Choice("embedding_dim", [4, 8, 16], default=8)

    inputs: dict[str, tf_keras.Input] = {}
    wide, deep = [], []
    for key in NUMERIC:
        inputs[key] = tf_keras.Input(shape=(), name=key, dtype=tf.float32)
        deep.append(tf_keras.layers.Reshape((1,))(inputs[key]))
    for key, size in CATEGORICAL.items():
        size = size or tf_transform_output.num_buckets_for_transformed_feature(key)
        inputs[key] = tf_keras.Input(shape=(), name=key, dtype=tf.int64)
        wide.append(tf_keras.layers.CategoryEncoding(size, output_mode="one_hot")(inputs[key]))
        embedded = tf_keras.layers.Embedding(size, embedding_dim)(inputs[key])
        deep.append(embedded)

    x = tf_keras.layers.concatenate(deep)
    for _ in range(layers):
        x = tf_keras.layers.Dense(units, activation="relu")(x)
        if dropout:
            x = tf_keras.layers.Dropout(dropout)(x)
    x = tf_keras.layers.concatenate([x, *wide])
    output = tf_keras.layers.Dense(1, activation="sigmoid")(x)

    model = tf_keras.Model(inputs=inputs, outputs=output)
    model.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=[
            tf_keras.metrics.AUC(name="auc"),
            tf_keras.metrics.BinaryAccuracy(name="accuracy"),
        ],
    )
    return model
