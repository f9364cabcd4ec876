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

from beam_pipeline.evaluation.direction import lower_is_better, metric_direction
from beam_pipeline.evaluation.metrics import (
    ALWAYS,
    DEFAULT_METRICS,
    KNOWN_METRICS,
    OVERALL,
    MetricsAccumulator,
    auc_from_histograms,
    kind_of,
    metrics_for,
)
from beam_pipeline.evaluation.slicing import (
    bucket_labels,
    canonical_slice,
    first_values,
    slice_keys,
)
from beam_pipeline.evaluation.thresholds import (
    BASELINE,
    CANDIDATE,
    LOWER_IS_BETTER,
    MetricThreshold,
    SliceThreshold,
    assemble,
    blessed,
    check,
)

__all__ = [
    "ALWAYS",
    "BASELINE",
    "CANDIDATE",
    "DEFAULT_METRICS",
    "KNOWN_METRICS",
    "LOWER_IS_BETTER",
    "OVERALL",
    "MetricThreshold",
    "MetricsAccumulator",
    "SliceThreshold",
    "assemble",
    "auc_from_histograms",
    "blessed",
    "bucket_labels",
    "canonical_slice",
    "check",
    "first_values",
    "kind_of",
    "lower_is_better",
    "metric_direction",
    "metrics_for",
    "slice_keys",
]
