"""A Beam-native ML pipeline platform: ingest, validate, transform, train, evaluate, push."""

import os

# tf.Transform, keras-tuner and our training code must agree on one Keras: tf_keras (Keras 2).
# This must be set before TensorFlow is first imported anywhere in the process.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"
