"""The train stage: training on transformed examples, the exported signatures, bad model modules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import beam_pipeline  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is used)
from beam_pipeline.core.artifacts import Artifact
from beam_pipeline.core.errors import ConfigError
from beam_pipeline.stages import train
from beam_pipeline.training import modeling
from tests import ml_fixtures

ROWS = 1500


@pytest.fixture(scope="module")
def taxi() -> dict:
    return ml_fixtures.transformed("taxi", ROWS)


def _hyperparameters(folder: Path, values: dict) -> Artifact:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / modeling.HYPERPARAMETERS_FILE).write_text(json.dumps({"values": values}))
    return Artifact("HyperParameters", str(folder), {"values": values})


def _inputs(fixture: dict, tmp_path: Path, values: dict | None = None) -> dict[str, Artifact]:
    return {
        "transform_graph": fixture["transform_graph"],
        "transformed_examples": fixture["transformed_examples"],
        "hyperparameters": _hyperparameters(tmp_path / "hp", values or {}),
    }


def test_train_exports_a_model_that_serves_raw_values_and_examples(
    taxi: dict, tmp_path: Path
) -> None:
    section = train.TrainSection(
        module=str(ml_fixtures.ROOT / "models" / "taxi.py"),
        epochs=2,
        steps_per_epoch=15,
        batch_size=128,
        hyperparameters={"units": 64},
    )
    ctx = ml_fixtures.context("train", tmp_path / "stage")
    outputs = train.run(section, _inputs(taxi, tmp_path, {"units": 32, "hidden_layers": 1}), ctx)

    model, run = outputs["model"], outputs["model_run"]
    assert model.properties["metrics"]["auc"] > 0.75  # a short budget: a loose floor
    assert set(model.properties["metrics"]) >= {"loss", "auc", "accuracy"}
    assert model.properties["hyperparameters"]["units"] == 64  # the config beats the tuner
    assert model.properties["hyperparameters"]["hidden_layers"] == 1
    assert model.properties["signatures"] == ["serving_default", "serving_raw"]
    assert "tips" not in model.properties["raw_features"]
    assert model.properties["epochs"] == 2
    assert list((run.path / "logs").glob("train/events.out.tfevents.*"))
    assert list((run.path / "checkpoints").glob("epoch-002*"))
    assert len(json.loads((run.path / "history.json").read_text())["loss"]) == 2

    # Reloaded in a fresh process: raw CSV strings (missing values included) and serialized
    # tf.Example give the same predictions.
    predictions = ml_fixtures.check_model(model.path / "saved_model", ml_fixtures.TAXI_CSV)
    raw, examples = np.array(predictions["raw"]), np.array(predictions["examples"])
    assert raw.shape == (40, 1)
    np.testing.assert_allclose(raw, examples, atol=1e-6)
    assert 0 <= raw.min() and raw.max() <= 1 and raw.std() > 0


def test_mirrored_strategy_trains_penguins(tmp_path: Path) -> None:
    penguins = ml_fixtures.transformed("penguins")
    section = train.TrainSection(
        module=str(ml_fixtures.ROOT / "models" / "penguins.py"),
        strategy="mirrored",
        epochs=15,
        batch_size=32,
        early_stopping_patience=0,
    )
    outputs = train.run(
        section, _inputs(penguins, tmp_path), ml_fixtures.context("train", tmp_path)
    )
    model = outputs["model"]
    assert model.properties["replicas"] >= 1
    assert model.properties["metrics"]["accuracy"] > 0.8
    predictions = ml_fixtures.check_model(
        model.path / "saved_model", ml_fixtures.PENGUINS_CSV, rows=10
    )
    raw = np.array(predictions["raw"])
    assert raw.shape == (10, 3)
    np.testing.assert_allclose(raw.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(raw, np.array(predictions["examples"]), atol=1e-6)


def test_parse_raw_matches_parse_example() -> None:
    import tensorflow as tf

    text = tf.constant(["3", "", "7"])
    with_default = tf.io.FixedLenFeature([1], tf.int64, default_value=[0])
    dense = train.parse_raw(text, with_default)
    assert dense.numpy().tolist() == [[3], [0], [7]]
    # A required column (no default): a missing value is refused, as parse_example refuses it.
    required = tf.io.FixedLenFeature([1], tf.int64)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Feature: hour is required"):
        train.parse_raw(tf.constant(["3", " "]), required, "hour")
    empty = tf.train.Example().SerializeToString()
    with pytest.raises(tf.errors.InvalidArgumentError, match="hour"):
        tf.io.parse_example(tf.constant([empty]), {"hour": required})
    # An int column takes integers only ("3.5" is not silently 3).
    with pytest.raises(tf.errors.InvalidArgumentError):
        train.parse_raw(tf.constant(["3.5"]), required, "hour")
    sparse = train.parse_raw(tf.constant(["1.5", "", "x"])[:2], tf.io.VarLenFeature(tf.float32))
    assert sparse.indices.numpy().tolist() == [[0, 0]]
    assert sparse.values.numpy().tolist() == [1.5]
    words = train.parse_raw(tf.constant(["Cash", ""]), tf.io.VarLenFeature(tf.string))
    assert words.values.numpy().tolist() == [b"Cash"]


# ---------------------------------------------------------------------------------------------
# Bad model modules


def _module(tmp_path: Path, body: str, label: str = "big_tipper") -> str:
    file = tmp_path / "model_module.py"
    file.write_text(
        "import tf_keras\n"
        f"LABEL_KEY = {label!r}\n"
        "def _inputs():\n"
        "    x = tf_keras.Input(shape=(), name='fare')\n"
        "    return x, tf_keras.layers.Dense(1)(tf_keras.layers.Reshape((1,))(x))\n" + body
    )
    return str(file)


def _build(module_file: str, fixture: dict) -> None:
    import tensorflow_transform as tft

    module = modeling.load_model_module(module_file)
    output = tft.TFTransformOutput(fixture["transform_graph"].uri)
    module.check_label(output)
    module.build(modeling.hyperparameters(), output)


def test_builder_returning_an_uncompiled_model(taxi: dict, tmp_path: Path) -> None:
    module = _module(
        tmp_path,
        "def build_model(hp, tf_transform_output):\n"
        "    x, y = _inputs()\n"
        "    return tf_keras.Model(x, y)\n",
    )
    with pytest.raises(ConfigError, match=r"model_module.py: expected a compiled .*not compiled"):
        _build(module, taxi)


def test_builder_returning_something_else(taxi: dict, tmp_path: Path) -> None:
    module = _module(tmp_path, "def build_model(hp, tf_transform_output):\n    return 'model'\n")
    with pytest.raises(
        ConfigError, match=r"expected a compiled tf_keras.Model; received builtins.str"
    ):
        _build(module, taxi)


def test_model_inputs_must_be_transformed_features(taxi: dict, tmp_path: Path) -> None:
    module = _module(
        tmp_path,
        "def build_model(hp, tf_transform_output):\n"
        "    x = tf_keras.Input(shape=(), name='tip_amount')\n"
        "    m = tf_keras.Model(x, tf_keras.layers.Dense(1)(tf_keras.layers.Reshape((1,))(x)))\n"
        "    m.compile('adam', 'mse')\n"
        "    return m\n",
    )
    with pytest.raises(ConfigError, match=r"model inputs \['tip_amount'\] are not transformed"):
        _build(module, taxi)


def test_label_missing_from_transformed_features(taxi: dict, tmp_path: Path) -> None:
    module = _module(tmp_path, "def build_model(hp, t):\n    pass\n", label="tips_share")
    with pytest.raises(ConfigError, match=r"LABEL_KEY 'tips_share' in .* is not a transformed"):
        _build(module, taxi)


def test_module_without_builder_or_label(tmp_path: Path) -> None:
    no_builder = tmp_path / "a.py"
    no_builder.write_text("LABEL_KEY = 'y'\n")
    with pytest.raises(ConfigError, match=r"a.py must define build_model \(a function\)"):
        modeling.load_model_module(str(no_builder))
    no_label = tmp_path / "b.py"
    no_label.write_text("def build_model(hp, t):\n    pass\n")
    with pytest.raises(ConfigError, match=r"b.py must define LABEL_KEY \(a module constant\)"):
        modeling.load_model_module(str(no_label))
    with pytest.raises(ConfigError, match=r"train.module: user module file not found"):
        modeling.load_model_module(str(tmp_path / "missing.py"))


def test_section_checks_values() -> None:
    with pytest.raises(ConfigError, match="train.batch_size must be >= 1; received 0"):
        train.TrainSection(batch_size=0)
    with pytest.raises(ConfigError, match="train.steps_per_epoch must be >= 1 or null"):
        train.TrainSection(steps_per_epoch=0)


def test_autograph_leaves_graph_mode_libraries_but_converts_user_code() -> None:
    import tensorflow_transform as tft
    import tf_keras
    from tensorflow.python.autograph.impl import conversion

    from models import taxi

    modeling.exempt_libraries_from_autograph()
    modeling.exempt_libraries_from_autograph()  # idempotent
    assert conversion.is_allowlisted(tf_keras.Model.train_step)
    assert conversion.is_allowlisted(tft.TFTransformOutput.transform_features_layer)
    assert not conversion.is_allowlisted(taxi.build_model)
