"""Model-quality metrics, slicing and threshold checks: pure functions on numpy and Arrow.

Shared by the evaluate stage (batch eval split) and the monitor (live metrics on logged
traffic). Nothing here imports a stage, Beam or TensorFlow.

    acc = MetricsAccumulator("binary", buckets=10_000, threshold=0.5)
    for batch, labels, predictions in ...:  # Arrow features, numpy labels and predictions
        acc.add(labels, predictions, [slice_keys(batch, ("payment_type",))])
    results = acc.result()  # {"Overall": {...}, "payment_type=Cash": {...}}
    overall, slices = assemble(results, None, DEFAULT_METRICS["binary"])
    checks = check({"auc": MetricThreshold(lower=0.7)}, [], overall, slices, has_baseline=False)
"""

import importlib
from typing import Any

# Names resolved on first use (PEP 562): the config imports `evaluation.catalog`, and that must
# not load numpy or Arrow (the sections hold the light threshold model, `thresholds`).
_WHERE = {
    "lower_is_better": "direction",
    "metric_direction": "direction",
    "ALWAYS": "catalog",
    "DEFAULT_METRICS": "catalog",
    "KNOWN_METRICS": "catalog",
    "metrics_for": "catalog",
    "OVERALL": "catalog",
    "MetricsAccumulator": "metrics",
    "auc_from_histograms": "metrics",
    "kind_of": "metrics",
    "bucket_labels": "slicing",
    "canonical_slice": "slicing",
    "first_values": "slicing",
    "slice_keys": "slicing",
    "SliceMemo": "slicing",
    "BASELINE": "blessing",
    "CANDIDATE": "blessing",
    "assemble": "blessing",
    "blessed": "blessing",
    "check": "blessing",
    "MetricThreshold": "thresholds",
    "SliceThreshold": "thresholds",
    "check_thresholds": "thresholds",
    "judge": "thresholds",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


__all__ = [
    "ALWAYS",
    "BASELINE",
    "CANDIDATE",
    "DEFAULT_METRICS",
    "KNOWN_METRICS",
    "OVERALL",
    "MetricThreshold",
    "MetricsAccumulator",
    "SliceMemo",
    "SliceThreshold",
    "assemble",
    "auc_from_histograms",
    "blessed",
    "bucket_labels",
    "canonical_slice",
    "check",
    "check_thresholds",
    "first_values",
    "judge",
    "kind_of",
    "lower_is_better",
    "metric_direction",
    "metrics_for",
    "slice_keys",
]
