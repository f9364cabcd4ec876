"""The metric catalog: which metrics each kind of model gets (config and evaluation read it).

Import-light on purpose (no numpy, no Arrow): the config checks metric names against it.
"""

from __future__ import annotations

KINDS = ("binary", "multiclass", "regression")
DEFAULT_METRICS = {
    "binary": ["auc", "accuracy", "precision", "recall", "log_loss"],
    "multiclass": ["accuracy", "log_loss", "auc", "precision", "recall"],
    "regression": ["rmse", "mae"],
}
ALWAYS = ["example_count", "label_mean", "prediction_mean"]
OVERALL = "Overall"  # the key of every row's slice (beside its own, named by feature values)
KNOWN_METRICS = {m for ms in DEFAULT_METRICS.values() for m in ms} | set(ALWAYS)


def metrics_for(kind: str) -> set[str]:
    """Every metric a kind computes."""
    return (
        set(DEFAULT_METRICS[kind])
        | {"example_count"}
        | (set() if kind == "multiclass" else {"label_mean", "prediction_mean"})
    )
