"""The tune stage: Keras Tuner searches, the defaults when tuning is off, the summary."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import beam_pipeline  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is used)
from beam_pipeline.core.errors import ConfigError
from beam_pipeline.stages import train, tune
from beam_pipeline.training import modeling
from tests import ml_fixtures


@pytest.fixture(scope="module")
def penguins() -> dict:
    return ml_fixtures.transformed("penguins")


def _ctx(tmp_path: Path, **train_values: object) -> object:
    ctx = ml_fixtures.context("tune", tmp_path)
    section = train.TrainSection(
        module=str(ml_fixtures.ROOT / "models" / "penguins.py"), batch_size=32, **train_values
    )
    ctx.config = dataclasses.replace(ctx.config, stages={"train": section})  # type: ignore[attr-defined]
    return ctx


def _inputs(fixture: dict) -> dict:
    return {k: fixture[k] for k in ("transform_graph", "transformed_examples")}


@pytest.mark.parametrize("algorithm", ["random", "bayesian", "hyperband"])
def test_search_writes_best_hyperparameters_and_trials(
    penguins: dict, tmp_path: Path, algorithm: str
) -> None:
    section = tune.TuneSection(
        algorithm=algorithm,
        max_trials=2,
        epochs=2,
        steps_per_epoch=3,
        objective="val_accuracy",
    )
    ctx = _ctx(tmp_path, hyperparameters={"hidden_layers": 1})
    out = tune.run(section, _inputs(penguins), ctx)["hyperparameters"]  # type: ignore[arg-type]

    document = json.loads((out.path / modeling.HYPERPARAMETERS_FILE).read_text())
    assert document["source"] == "search"
    assert document["direction"] == "max"
    assert set(document["values"]) >= {"units", "learning_rate", "hidden_layers"}
    assert document["values"]["hidden_layers"] == 1  # fixed in train.hyperparameters
    assert 0 <= document["score"] <= 1
    trials = (out.path / "trials.txt").read_text().splitlines()
    assert trials[0].endswith("objective val_accuracy (max)")
    assert len(trials) - 1 == out.properties["trials"] >= 2
    if algorithm != "hyperband":
        assert out.properties["trials"] == 2
    assert not list(tmp_path.glob("tuner-*"))  # the tuner's scratch folder is gone


def test_disabled_gives_the_defaults_with_fixed_values(penguins: dict, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, hyperparameters={"units": 8})
    out = tune.run(tune.TuneSection(enabled=False), _inputs(penguins), ctx)["hyperparameters"]  # type: ignore[arg-type]
    values = modeling.read_hyperparameters(out)
    assert values == {"units": 8, "hidden_layers": 2, "learning_rate": 0.01}
    assert out.properties["source"] == "defaults"


def test_unknown_objective_fails_the_stage(penguins: dict, tmp_path: Path) -> None:
    """An objective the model does not log is a config error (exit 2) naming the key."""
    section = tune.TuneSection(max_trials=1, epochs=1, steps_per_epoch=2, objective="val_auc")
    with pytest.raises(ConfigError, match="tune.objective: no trial reported 'val_auc'"):
        tune.run(section, _inputs(penguins), _ctx(tmp_path))  # type: ignore[arg-type]


def test_section_checks_values() -> None:
    with pytest.raises(ConfigError, match="tune.max_trials must be >= 1; received 0"):
        tune.TuneSection(max_trials=0)
    assert tune.TuneSection(objective="val_auc").objective_direction == "max"
    assert tune.TuneSection(objective="val_loss").objective_direction == "min"


def test_worker_needs_the_keras_tuner_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KERASTUNER_ORACLE_IP", raising=False)
    with pytest.raises(ConfigError, match="expected KERASTUNER_ORACLE_IP"):
        tune.run_worker("configs/nope.yaml")
