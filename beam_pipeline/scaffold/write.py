"""`beam-pipeline init`: a config, a transform module and a model module from a data profile.

The three files are plain text a user owns: every choice is a commented constant or key. The
modules follow the contract in docs/stages.md (user modules); the model module reads the
transformed features from the transform output, so editing the transform module rarely needs an
edit here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from beam_pipeline.core.errors import ConfigError
from beam_pipeline.io import filesystem
from beam_pipeline.scaffold.profile import Profile, profile

OBJECTIVE = {"regression": "val_rmse", "binary": "val_auc", "multiclass": "val_accuracy"}


@dataclass(frozen=True)
class Written:
    config: Path
    transform: Path
    model: Path
    profile: Profile

    def to_json(self) -> dict[str, object]:
        p = self.profile
        return {
            "config": str(self.config),
            "transform_module": str(self.transform),
            "model_module": str(self.model),
            "task": p.task,
            "label": p.label.name,
            "sample_rows": p.rows,
            "columns": {
                c.name: {"type": c.kind, "role": c.role, **({"why": c.why} if c.why else {})}
                for c in p.columns
            },
            "slices": p.slices,
        }


def init(
    name: str,
    data: str,
    label: str,
    folder: str = ".",
    task: str = "auto",
    fmt: str | None = None,
    force: bool = False,
) -> Written:
    """Profile ``data`` and write ``{folder}/configs|transforms|models/{name}.*``."""
    from beam_pipeline.core.config import PipelineSection

    try:
        PipelineSection(name=name)
    except ConfigError as exc:
        raise ConfigError(f"NAME: {exc}".replace("pipeline.name", "the pipeline name")) from None
    base = Path(folder).resolve()
    paths = Written(
        base / "configs" / f"{name}.yaml",
        base / "transforms" / f"{name}.py",
        base / "models" / f"{name}.py",
        None,  # type: ignore[arg-type]
    )
    existing = [str(p) for p in (paths.config, paths.transform, paths.model) if p.exists()]
    if existing and not force:
        raise ConfigError(f"init: {', '.join(existing)} exists; pass --force to overwrite")
    source = data if "://" in data else os.path.abspath(data)
    prof = profile(source, label, task, fmt)
    filesystem.write_text(paths.config, config_text(name, prof, paths.config.parent))
    filesystem.write_text(paths.transform, transform_text(name, prof))
    filesystem.write_text(paths.model, model_text(name, prof))
    return Written(paths.config, paths.transform, paths.model, prof)


def _rel(path: str, start: Path) -> str:
    if "://" in path:
        return path
    return os.path.relpath(path, start)


def _yaml_key(name: str) -> str:
    import yaml

    return yaml.safe_dump(name, default_style=None).strip().removesuffix("\n...").strip()


def config_text(name: str, p: Profile, config_dir: Path) -> str:
    """The pipeline config, with a comment on every choice."""
    rows = p.rows
    batch = 32 if rows < 2_000 else 64 if rows < 20_000 else 256
    train_rows = int(rows * 0.8)
    steps = max(1, min(100, -(-train_rows // batch)))
    objective = OBJECTIVE[p.task]
    columns = ", ".join(f"{_yaml_key(c.name)}: {c.kind}" for c in p.columns)
    dropped = [c for c in p.columns if c.role == "dropped"]
    lines = [
        f"# {name}: predict {p.label.name!r} ({p.task}) from {p.source}.",
        f"# Written by `beam-pipeline init` from {rows:,} sample rows; edit freely. Reference:",
        "# docs/config.md. Run it with: beam-pipeline run " + f"configs/{name}.yaml",
        "pipeline:",
        f"  name: {name}",
        f"  root: ../runs/{name}              # artifacts and the SQLite metadata store",
        "",
        "ingest:",
        f"  source: {_yaml_key(_rel(p.source, config_dir))}",
        f"  format: {p.format}",
        f"  columns: {{{columns}}}   # types inferred from the sample",
    ]
    if dropped:
        lines.append(f"  drop: [{', '.join(_yaml_key(c.name) for c in dropped)}]")
        lines += [f"  #   {c.name}: {c.why}" for c in dropped]
    lines += [
        "  split:",
        "    ratios: {train: 0.8, eval: 0.2}   # a deterministic hash of each row",
        "  max_rejected_fraction: 0.01        # rows that do not parse go to rejected/; more stops",
        "",
        "schema:",
        "  min_domain_mass: 0.99             # a new category in 1 % of rows is not an anomaly",
        "",
        "validation:",
        "  fail_on: [schema]                 # add skew, drift (with thresholds) to stop on them",
        "",
        "transform:",
        f"  module: ../transforms/{name}.py",
        "",
        "tune:",
        "  enabled: true",
        "  algorithm: random",
        "  max_trials: 5                     # more trials: a better search, a longer run",
        f"  objective: {objective}",
        "  epochs: 5                         # per trial",
        f"  steps_per_epoch: {steps}",
        "",
        "train:",
        f"  module: ../models/{name}.py",
        "  epochs: 50                        # the most; early stopping ends sooner",
        f"  batch_size: {batch}",
        f"  early_stopping_monitor: {objective}",
        "  early_stopping_patience: 8        # keeps the best epoch's weights",
        "",
        "evaluate:",
        f"  task: {p.task}",
    ]
    slices = p.slices
    if slices:
        lines.append(f"  slices: [{', '.join(_yaml_key(s) for s in slices)}]   # metrics per value")
    else:
        lines.append("  slices: []                        # e.g. [a_categorical_column]")
    lines.append("  thresholds:                       # a model that fails them is not pushed")
    if p.task == "regression":
        bound = _round(p.label_std)
        lines.append(
            f"    rmse: {{upper: {bound}}}   # the label's spread: better than predicting the mean"
        )
    elif p.task == "binary":
        lines.append("    auc: {lower: 0.6}               # better than chance")
    else:
        bound = _round(1 / len(p.classes))
        lines.append(f"    accuracy: {{lower: {bound}}}   # better than guessing a class")
    lines += [
        "",
        "push:",
        "  serving_dir: ../serving           # versions land in ../serving/" + f"{name}/N/",
        "",
    ]
    return "\n".join(lines)


def _round(value: float) -> float:
    return float(f"{value:.4g}")


def _lit(value: object) -> str:
    """A Python literal in the style of the repository (double quotes, one entry per line when
    long)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        inner = [_lit(v) for v in value]
        if isinstance(value, tuple):
            body = inner[0] + "," if len(inner) == 1 else ", ".join(inner)
            return f"({body})"
        return f"[{', '.join(inner)}]"
    if isinstance(value, dict):
        items = [f"{_lit(k)}: {_lit(v)}" for k, v in value.items()]
        one = "{" + ", ".join(items) + "}"
        if len(one) <= 80:
            return one
        return "{\n" + "".join(f"    {i},\n" for i in items) + "}"
    return repr(value)


def _tuple(items: list[str]) -> str:
    return _lit(tuple(items))


def transform_text(name: str, p: Profile) -> str:
    numeric = {c.name: c.feature for c in p.of_role("numeric")}
    categorical = {c.name: c.feature for c in p.of_role("categorical")}
    log_scaled = [c.name for c in p.of_role("numeric") if c.log_scale]
    if p.task == "regression":
        label_doc = f"the raw value as a float (missing: the sample mean, {_round(p.label_mean)})"
        label_consts = f"LABEL_FILL = {_round(p.label_mean)!r}  # for rows without a label\n"
        label_code = "    outputs[LABEL_KEY] = _dense(tf.cast(label, tf.float32), LABEL_FILL)\n"
    elif p.task == "binary":
        label_doc = f"1 where the raw value is {p.positive!r}, else 0"
        label_consts = f"POSITIVE = {_lit(p.positive)}  # the class predicted as 1\n"
        label_code = (
            "    value = _dense(label, _blank(label.dtype))\n"
            "    outputs[LABEL_KEY] = tf.cast(tf.equal(value, POSITIVE), tf.int64)\n"
        )
    else:
        label_doc = "the index of the raw value in CLASSES (a value not listed: 0)"
        label_consts = (
            f"CLASSES = {_lit(p.classes)}  # the label's values; the model predicts an index\n"
        )
        label_code = (
            "    value = _dense(label, _blank(label.dtype))\n"
            "    classes = tf.constant(CLASSES, dtype=value.dtype)\n"
            "    matches = tf.equal(tf.expand_dims(value, 1), tf.expand_dims(classes, 0))\n"
            "    outputs[LABEL_KEY] = tf.argmax(tf.cast(matches, tf.int64), axis=1)\n"
        )
    return f'''"""tf.Transform preprocessing of the {name} pipeline (by `beam-pipeline init`).

Contract (docs/stages.md, "User modules"): ``preprocessing_fn(inputs)`` gets a batch of every raw
column (a dense tensor when the schema says the column is always present, a ``tf.SparseTensor``
with holes for missing values otherwise) and returns dense ``[batch]`` tensors: the features and
the label. Full-pass analyzers (``tft.*``) see the train split only.

What it does, column by column (edit the dictionaries to change it):

- numbers (``NUMERIC``): z-scored with the train split's mean and standard deviation (on
  ``log1p`` for the skewed non-negative ones in ``LOG_SCALED``); a missing value becomes the mean
  (0 after scaling), and a ``<feature>_missing`` 0/1 feature tells the model it was missing;
- text (``CATEGORICAL``): an integer id from a vocabulary of the train split's values (the
  ``VOCABULARY_TOP_K`` most frequent; rarer or unseen values share one id; missing is its own);
- the label ``{p.label.name}``: {label_doc}.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

LABEL_KEY = {_lit(p.label.feature)}  # the transformed label (the model module predicts it)
RAW_LABEL_KEYS = {_lit((p.label.name,))}  # raw columns only the label needs (serving does not)
{label_consts}
# raw column -> transformed feature
NUMERIC = {_lit(numeric)}
LOG_SCALED = {_tuple(log_scaled)}
CATEGORICAL = {_lit(categorical)}
VOCABULARY_TOP_K = 1000


def _blank(dtype: tf.DType) -> str | int:
    return "" if dtype == tf.string else 0


def _dense(x: tf.Tensor | tf.SparseTensor, default: float | int | str) -> tf.Tensor:
    """A dense ``[batch]`` tensor; values missing from a sparse input become ``default``."""
    if isinstance(x, tf.SparseTensor):
        x = tf.sparse.to_dense(
            tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]),
            tf.constant(default, dtype=x.dtype),
        )
    return tf.reshape(x, [-1])


def _scaled(x: tf.Tensor | tf.SparseTensor, log: bool) -> tuple[tf.Tensor, tf.Tensor | None]:
    """z-scored values (missing: 0, the mean) and a 0/1 missing indicator (None: never missing)."""
    sparse = isinstance(x, tf.SparseTensor)
    values = tf.cast(x.values if sparse else tf.reshape(x, [-1]), tf.float32)
    if log:
        values = tf.math.log1p(tf.maximum(values, 0.0))
    mean = tft.mean(values)
    std = tf.sqrt(tft.var(values))
    z = (values - mean) / tf.where(std > 0, std, tf.ones_like(std))
    if not sparse:
        return z, None
    shape = [x.dense_shape[0], 1]
    dense = tf.sparse.to_dense(tf.SparseTensor(x.indices, z, shape), 0.0)
    present = tf.sparse.to_dense(tf.SparseTensor(x.indices, tf.ones_like(z), shape), 0.0)
    return tf.reshape(dense, [-1]), 1.0 - tf.reshape(present, [-1])


def preprocessing_fn(inputs: dict[str, tf.Tensor | tf.SparseTensor]) -> dict[str, tf.Tensor]:
    outputs: dict[str, tf.Tensor] = {{}}
    for column, feature in NUMERIC.items():
        outputs[feature], missing = _scaled(inputs[column], column in LOG_SCALED)
        if missing is not None:
            outputs[feature + "_missing"] = missing
    for column, feature in CATEGORICAL.items():
        outputs[feature] = tft.compute_and_apply_vocabulary(
            _dense(inputs[column], ""),
            top_k=VOCABULARY_TOP_K,
            num_oov_buckets=1,
            vocab_filename=feature,
        )
    label = inputs[RAW_LABEL_KEYS[0]]
{label_code}    return outputs
'''


def model_text(name: str, p: Profile) -> str:
    categorical = tuple(c.feature for c in p.of_role("categorical"))
    if p.task == "regression":
        consts = (
            "# The label's mean and standard deviation in the sample: the output layer starts at\n"
            "# the mean, in the label's own units (so RMSE and predictions read in them).\n"
            f"LABEL_MEAN = {_round(p.label_mean)!r}\n"
            f"LABEL_STD = {_round(p.label_std)!r}\n"
        )
        head = (
            "    output = tf_keras.layers.Dense(1)(x)\n"
            "    output = tf_keras.layers.Rescaling(LABEL_STD, offset=LABEL_MEAN)(output)\n"
        )
        loss = '"mse"'
        metrics = (
            '[\n            tf_keras.metrics.RootMeanSquaredError(name="rmse"),\n'
            '            tf_keras.metrics.MeanAbsoluteError(name="mae"),\n        ]'
        )
        what = "a regression\n(mean squared error; it reports rmse and mae)"
    elif p.task == "binary":
        consts = ""
        head = '    output = tf_keras.layers.Dense(1, activation="sigmoid")(x)\n'
        loss = '"binary_crossentropy"'
        metrics = (
            '[\n            tf_keras.metrics.AUC(name="auc"),\n'
            '            tf_keras.metrics.BinaryAccuracy(name="accuracy"),\n        ]'
        )
        what = "a binary classifier\n(a sigmoid output: the probability of the positive class)"
    else:
        consts = f"NUM_CLASSES = {len(p.classes)}  # len(CLASSES) in the transform module\n"
        head = '    output = tf_keras.layers.Dense(NUM_CLASSES, activation="softmax")(x)\n'
        loss = '"sparse_categorical_crossentropy"'
        metrics = '[tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")]'
        what = "a multi-class classifier\n(a softmax over the classes)"
    return f'''"""The {name} model, written by `beam-pipeline init`: {what}.

Contract (docs/stages.md, "User modules"): ``LABEL_KEY`` names the transformed label;
``build_model(hp, tf_transform_output)`` returns a compiled tf_keras model whose inputs are named
after transformed features. Every ``hp.*`` call declares the tuner's search space and its
``default`` is what training uses when tuning is off (``tune.enabled: false``).

The network: every float feature of the transform output as it is (z-scored), every integer id in
``CATEGORICAL`` through an embedding, then ``hidden_layers`` dense ReLU layers with dropout. It
reads the feature list from the transform output, so a feature added in the transform module is
used here without an edit.
"""

from __future__ import annotations

import keras_tuner
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

LABEL_KEY = {_lit(p.label.feature)}
CATEGORICAL = {_tuple(list(categorical))}  # vocabulary ids made by the transform module
{consts}

def build_model(
    hp: keras_tuner.HyperParameters, tf_transform_output: tft.TFTransformOutput
) -> tf_keras.Model:
    units = hp.Choice("units", [32, 64, 128, 256], default=128)
    hidden_layers = hp.Int("hidden_layers", 1, 3, default=2)
    dropout = hp.Float("dropout", 0.0, 0.3, step=0.1, default=0.1)
    learning_rate = hp.Float("learning_rate", 1e-4, 3e-2, sampling="log", default=3e-3)
    embedding_dim = hp.Choice("embedding_dim", [4, 8, 16], default=8)

    spec = tf_transform_output.transformed_feature_spec()
    inputs: dict[str, tf_keras.Input] = {{}}
    parts = []
    for key in sorted(spec):
        if key == LABEL_KEY:
            continue
        inputs[key] = tf_keras.Input(shape=(), name=key, dtype=spec[key].dtype)
        if key in CATEGORICAL:
            size = tf_transform_output.num_buckets_for_transformed_feature(key)
            dim = min(embedding_dim, size)
            parts.append(tf_keras.layers.Embedding(size, dim)(inputs[key]))
        else:
            parts.append(tf_keras.layers.Reshape((1,))(tf.cast(inputs[key], tf.float32)))
    x = tf_keras.layers.concatenate(parts) if len(parts) > 1 else parts[0]
    for _ in range(hidden_layers):
        x = tf_keras.layers.Dense(units, activation="relu")(x)
        if dropout:
            x = tf_keras.layers.Dropout(dropout)(x)
{head}
    model = tf_keras.Model(inputs=inputs, outputs=output)
    model.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate),
        loss={loss},
        metrics={metrics},
    )
    return model
'''
