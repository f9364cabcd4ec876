"""What the tune and train stages share: the model module, hyperparameters and the tf.data input.

The model module contract (see ``models/taxi.py``): ``LABEL_KEY`` names a transformed feature;
``build_model(hp, tf_transform_output)`` returns a compiled tf_keras model whose inputs are named
after transformed features. Keras is tf_keras everywhere (``TF_USE_LEGACY_KERAS=1``, set by
``beam_pipeline/__init__.py`` before TensorFlow is imported).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from beam_pipeline.core.artifacts import (
    HYPERPARAMETERS_FILE,
    Artifact,
    examples_pattern,
    hyperparameters_path,
)
from beam_pipeline.core.errors import ConfigError
from beam_pipeline.core.user_modules import load_module, module_hash, require

if TYPE_CHECKING:
    import keras_tuner
    import tensorflow as tf
    import tensorflow_transform as tft
    import tf_keras

MODULE_KEY = "train.module"

# Libraries written for graph mode, as Keras and TensorFlow are, that TensorFlow's autograph does
# not know: it exempts modules named ``keras*`` and ``tensorflow*`` but not ``tf_keras`` or
# ``tensorflow_transform``, so every model's first train step converted the whole of tf_keras'
# training loop, metrics and optimizer source (about 40 s of a 50 s first epoch on the taxi model)
# and exporting converted tf.Transform's layer.
GRAPH_MODE_LIBRARIES = ("tf_keras", "tensorflow_transform")


def exempt_libraries_from_autograph() -> None:
    """Give `GRAPH_MODE_LIBRARIES` the treatment autograph gives Keras (idempotent). User code
    (model and transform modules) is still converted."""
    from tensorflow.python.autograph.core import config as autograph_config

    rules = tuple(autograph_config.CONVERSION_RULES)
    known = {str(rule) for rule in rules}
    extra = tuple(
        rule
        for rule in map(autograph_config.DoNotConvert, GRAPH_MODE_LIBRARIES)
        if str(rule) not in known
    )
    autograph_config.CONVERSION_RULES = extra + rules


@dataclass(frozen=True)
class ModelModule:
    """A loaded ``models/*.py``."""

    file: str
    label_key: str
    build_model: Callable[..., Any]

    def build(
        self, hp: keras_tuner.HyperParameters, tft_output: tft.TFTransformOutput
    ) -> tf_keras.Model:
        """Calls the builder and checks what it returned (ConfigError naming the file)."""
        import tf_keras

        model = self.build_model(hp, tft_output)
        if not isinstance(model, tf_keras.Model):
            raise ConfigError(
                f"{MODULE_KEY}: build_model in {self.file}: expected a compiled tf_keras.Model; "
                f"received {type(model).__module__}.{type(model).__name__}"
                " (build it with `import tf_keras`, not tf.keras or keras)"
            )
        if model.optimizer is None or getattr(model, "compiled_loss", None) is None:
            raise ConfigError(
                f"{MODULE_KEY}: build_model in {self.file}: expected a compiled tf_keras.Model; "
                "received a model that was not compiled (call model.compile(...))"
            )
        features = set(tft_output.transformed_feature_spec()) - {self.label_key}
        unknown = sorted(set(model.input_names) - features)
        if unknown:
            raise ConfigError(
                f"{MODULE_KEY}: build_model in {self.file}: model inputs {unknown} are not "
                f"transformed features; expected names from {sorted(features)}"
            )
        return model

    def check_label(self, tft_output: tft.TFTransformOutput) -> None:
        features = sorted(tft_output.transformed_feature_spec())
        if self.label_key not in features:
            raise ConfigError(
                f"{MODULE_KEY}: LABEL_KEY {self.label_key!r} in {self.file} is not a transformed "
                f"feature; the transform produced {features}"
            )


def load_model_module(path: str | None) -> ModelModule:
    """Loads and checks a model module (ConfigError naming the file and the missing name)."""
    module = load_module(path, MODULE_KEY)
    label = require(module, "LABEL_KEY", MODULE_KEY, callable_=False)
    if not isinstance(label, str):
        raise ConfigError(
            f"{MODULE_KEY}: LABEL_KEY in {module.__file__}: expected a str; received {label!r}"
        )
    build = require(module, "build_model", MODULE_KEY)
    return ModelModule(str(module.__file__), label, build)


def model_module_hash(path: str | None) -> str:
    return module_hash(path, MODULE_KEY)


# ---------------------------------------------------------------------------------------------
# Hyperparameters


def hyperparameters(
    values: dict[str, Any] | None = None, fixed: dict[str, Any] | None = None
) -> keras_tuner.HyperParameters:
    """HyperParameters holding ``values`` (tuned or default) with ``fixed`` on top, as Fixed."""
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    for name, value in {**(values or {}), **(fixed or {})}.items():
        hp.Fixed(name, value)
    return hp


def default_values(
    module: ModelModule, tft_output: tft.TFTransformOutput, fixed: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The search space's defaults (values in ``fixed`` win): build once, read ``hp.values``."""
    import tf_keras

    hp = hyperparameters(fixed=fixed)
    module.build(hp, tft_output)
    tf_keras.backend.clear_session()
    return dict(hp.values)


def read_hyperparameters(artifact: Artifact) -> dict[str, Any]:
    file = hyperparameters_path(artifact)
    if not file.is_file():
        raise ConfigError(f"hyperparameters artifact has no {HYPERPARAMETERS_FILE}: {file}")
    return dict(json.loads(file.read_text())["values"])


# ---------------------------------------------------------------------------------------------
# Input


def make_dataset(
    file_pattern: str,
    tft_output: tft.TFTransformOutput,
    label_key: str,
    batch_size: int,
    *,
    feature_keys: list[str] | None = None,
    training: bool = True,
    shuffle_buffer: int = 10_000,
    seed: int = 42,
    num_workers: int = 1,
    cache: bool = False,
) -> tf.data.Dataset:
    """(features, label) batches from transformed TFRecords, never materialised in Python.

    Files are interleaved in parallel; records are batched first and parsed per batch with
    ``tf.io.parse_example``; the result is prefetched. ``training``: shuffle and repeat forever.
    ``cache``: keep the parsed batches in memory after the first pass, so later epochs skip
    reading, decompressing and parsing (for splits that fit in memory); the batches' order is
    reshuffled every epoch, their composition is the first pass's.
    """
    import tensorflow as tf

    spec = tft_output.transformed_feature_spec()
    keys = set(feature_keys) if feature_keys is not None else set(spec)
    spec = {k: v for k, v in spec.items() if k in keys or k == label_key}
    files = tf.io.gfile.glob(file_pattern)
    if not files:
        raise ConfigError(f"no transformed examples match {file_pattern}")

    ds = tf.data.Dataset.from_tensor_slices(sorted(files))
    if training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
        cycle_length=min(len(files), 8),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=not training,
    )
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed)
        if not cache:
            ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=training)

    def parse(serialized: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        features = tf.io.parse_example(serialized, spec)
        label = features.pop(label_key)
        return features, label

    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        # Parsed batches stay in memory after the first pass; later epochs reshuffle the order of
        # the batches (their composition is fixed by the first pass's record shuffle).
        ds = ds.cache()
        if training:
            ds = ds.shuffle(256, seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    if num_workers > len(files):
        # Fewer files than workers: shard by record instead of by file.
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
    return ds.with_options(options)


def train_eval_datasets(
    examples: Artifact | str,
    tft_output: tft.TFTransformOutput,
    label_key: str,
    batch_size: int,
    *,
    eval_steps: int | None = None,
    feature_keys: list[str] | None = None,
    num_workers: int = 1,
    **train_options: Any,
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """The train split (shuffled, repeated; ``train_options`` go to `make_dataset`) and the eval
    split (in order, ``eval_steps`` batches at most) of transformed Examples."""
    common = {"feature_keys": feature_keys, "num_workers": num_workers}
    train = make_dataset(
        examples_pattern(examples, "train"),
        tft_output,
        label_key,
        batch_size,
        **common,
        **train_options,
    )
    evaluation = make_dataset(
        examples_pattern(examples, "eval"),
        tft_output,
        label_key,
        batch_size,
        training=False,
        **common,
    )
    return train, evaluation.take(eval_steps) if eval_steps else evaluation


def steps_for(rows: int, batch_size: int) -> int:
    return max(1, math.ceil(rows / batch_size))
