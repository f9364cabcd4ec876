"""Which way a metric improves: one answer for tune's objective, train's early stopping and
evaluate's change thresholds.

An explicit ``min``/``max`` in the config wins. Otherwise the name decides, after dropping Keras'
``val_`` prefix and ``_1`` suffixes: losses, errors and cross-entropies are minimised, accuracies,
AUC, precision and recall maximised, and any other name Keras knows is asked of KerasTuner's
``infer_metric_direction``. A name nobody knows is a config error naming the key: guessing
``max`` for ``val_rmse`` restored the worst epoch.
"""

from __future__ import annotations

import re

from beam_pipeline.core.errors import ConfigError
from beam_pipeline.evaluation.catalog import ALWAYS

LOWER = {
    "loss",
    "log_loss",
    "rmse",
    "mse",
    "mae",
    "mape",
    "msle",
    "hinge",
    "squared_hinge",
    "categorical_hinge",
    "logcosh",
    "log_cosh",
    "poisson",
    "kld",
    "kl_divergence",
    "kullback_leibler_divergence",
    "huber",
}
HIGHER = {
    "auc",
    "prc",
    "accuracy",
    "acc",
    "binary_accuracy",
    "categorical_accuracy",
    "sparse_categorical_accuracy",
    "top_k_categorical_accuracy",
    "sparse_top_k_categorical_accuracy",
    "precision",
    "recall",
    "f1_score",
    "fbeta_score",
    "r2_score",
    "r2",
    "true_positives",
    "true_negatives",
}


def metric_direction(name: str, explicit: str | None = None, key: str = "metric") -> str:
    """``min`` or ``max`` for a metric name (``val_rmse``, ``auc``, ``val_auc_1``).

    Args:
        name: the metric as Keras logs it or evaluate names it.
        explicit: ``min``/``max`` from the config (wins), or None/``auto``.
        key: the config key to name in the error for an unknown metric.
    """
    if explicit in ("min", "max"):
        return explicit
    base = re.sub(r"_\d+$", "", name.lower().removeprefix("val_"))
    if base in LOWER or re.search(r"loss|error|crossentropy", base):
        return "min"
    if base in HIGHER or re.search(r"accuracy|auc|precision|recall", base):
        return "max"
    if base not in ALWAYS:  # counts and means improve neither way: no need to ask KerasTuner
        found = _keras_direction(base)
        if found in ("min", "max"):
            return found
    raise ConfigError(
        f"{key}: cannot tell whether {name!r} improves up or down; expected a known Keras "
        "metric or an explicit direction (min or max)"
    )


def _keras_direction(base: str) -> str | None:
    try:
        from keras_tuner.engine.metrics_tracking import infer_metric_direction

        return infer_metric_direction(base)
    except (ImportError, ValueError, TypeError):
        return None


def lower_is_better(name: str) -> bool:
    """True for metrics minimised (losses, errors)."""
    return metric_direction(name) == "min"
