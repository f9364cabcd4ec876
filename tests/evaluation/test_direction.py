"""One metric-direction rule for tune, train, evaluate, monitor and the views (issue 9)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from beam_pipeline.core.errors import ConfigError
from beam_pipeline.evaluation import MetricThreshold, metric_direction


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("val_rmse", "min"),
        ("val_mae", "min"),
        ("val_loss", "min"),
        ("log_loss", "min"),
        ("val_root_mean_squared_error", "min"),
        ("val_mean_absolute_percentage_error", "min"),
        ("val_auc", "max"),
        ("val_auc_1", "max"),
        ("val_accuracy", "max"),
        ("val_binary_accuracy", "max"),
        ("precision", "max"),
        ("val_recall", "max"),
    ],
)
def test_direction_from_the_name(name: str, want: str) -> None:
    assert metric_direction(name) == want


def test_explicit_direction_wins_and_unknown_names_are_config_errors() -> None:
    assert metric_direction("val_rmse", "max") == "max"
    assert metric_direction("val_custom_score", "min") == "min"
    with pytest.raises(ConfigError, match="tune.objective: cannot tell whether 'val_custom_score'"):
        metric_direction("val_custom_score", "auto", "tune.objective")


def test_tune_train_and_evaluate_share_it() -> None:
    from beam_pipeline.evaluation import check
    from beam_pipeline.stages.train import TrainSection
    from beam_pipeline.stages.tune import TuneSection

    assert TuneSection(objective="val_rmse").objective_direction == "min"
    assert TuneSection(objective="val_mae").objective_direction == "min"
    with pytest.raises(ConfigError, match="train.early_stopping_monitor"):
        TrainSection(early_stopping_monitor="val_something_odd")
    TrainSection(early_stopping_monitor="val_rmse")  # known: fine
    entry = {"candidate": {"rmse": 554.0}, "baseline": {"rmse": 939.0}, "difference": None}
    [c] = check({"rmse": MetricThreshold(min_change_abs=0.0)}, [], entry, {}, True)
    assert c["passed"] and c["change"] == pytest.approx(385.0)


def test_a_metric_that_does_not_fit_the_task_is_a_config_error() -> None:
    from beam_pipeline.stages.evaluate import EvaluateSection

    with pytest.raises(
        ConfigError, match="evaluate.thresholds.auc: 'auc' does not apply to a regr"
    ):
        EvaluateSection(task="regression", thresholds={"auc": MetricThreshold(lower=0.7)})
    section = EvaluateSection(thresholds={"rmse": MetricThreshold(upper=5)})
    with pytest.raises(ConfigError, match="evaluate.thresholds.rmse: 'rmse' does not apply"):
        section.check_task("classification")


def test_counts_and_means_have_no_direction_without_asking_keras() -> None:
    # The views ask for every metric's direction: example_count must not import TensorFlow.
    code = (
        "import sys\n"
        "from beam_pipeline.core.errors import ConfigError\n"
        "from beam_pipeline.evaluation.direction import metric_direction\n"
        "for name in ('example_count', 'label_mean', 'prediction_mean'):\n"
        "    try:\n"
        "        metric_direction(name)\n"
        "        raise SystemExit(name + ' has a direction')\n"
        "    except ConfigError:\n"
        "        pass\n"
        "assert 'keras_tuner' not in sys.modules and 'tensorflow' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
