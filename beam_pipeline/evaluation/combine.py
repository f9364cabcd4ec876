"""The Beam side of `MetricsAccumulator`: one CombineFn for evaluate (the eval split) and the
monitor (live traffic), so both compute the same metrics, slices and AUC buckets.

Kept out of the package's ``__init__`` so that importing `beam_pipeline.evaluation` needs no Beam.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam

from beam_pipeline.evaluation.metrics import MetricsAccumulator, kind_of


class AccumulateMetrics(beam.CombineFn):
    """(labels, predictions, slice keys) batches of one model -> its `MetricsAccumulator`, or
    None when no batch came (callers say what an empty result means to them)."""

    def __init__(self, task: str, buckets: int, threshold: float) -> None:
        self._task = task  # classification | regression | binary | multiclass
        self._buckets = buckets
        self._threshold = threshold

    def create_accumulator(self) -> MetricsAccumulator | None:
        return None  # the kind and width are known from the first batch

    def add_input(self, acc: MetricsAccumulator | None, element: Any) -> MetricsAccumulator:
        labels, predictions, keys = element
        if acc is None:
            width = predictions.shape[1]
            acc = MetricsAccumulator(
                kind_of(self._task, width), width, self._buckets, self._threshold
            )
        acc.add(labels, predictions, keys)
        return acc

    def merge_accumulators(self, accumulators: Any) -> MetricsAccumulator | None:
        merged = None
        for acc in accumulators:
            if acc is not None:
                merged = acc if merged is None else merged.merge(acc)
        return merged

    def extract_output(self, acc: MetricsAccumulator | None) -> MetricsAccumulator | None:
        return acc
