"""TFDV's ``GenerateStatistics`` over record batches in this process, without a Beam runner.

The same generators as the Beam transform, with the same options, and the same result:

- TFDV's combiner generators (``BasicStatsGenerator``: counts, numeric statistics, quantile
  histograms) through TFDV's own batching CombineFn (``_CombinerStatsGeneratorsCombineFn``);
- the exact top-k and unique counts of string features, which TFDV's ``TopKUniquesStatsGenerator``
  computes as a Beam sub-pipeline: here from the same per-batch value counts (TFDV's
  ``_to_topk_tuples``), ranked as ``beam.combiners.Top`` ranks them ((count, value), largest
  first) and made into protos by TFDV's own helpers;
- the protos merged as the transform merges them (``merge_dataset_feature_statistics``), an
  empty dataset when no batch came (the transform's placeholder).

Not ``tfdv.generate_statistics_in_memory``: that one replaces the exact top-k and unique counts
with sketches (Misra-Gries, KMV), whose values can differ from the Beam job's. Only TFDV's
default generators are supported (no schema, weights, slicing or custom generators: the
monitor uses none); anything else is refused. tests/monitoring/test_in_process.py compares the
two paths on the same records; TFDV is pinned (constraints.txt), the private names used here are
those of that version.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa


class InProcessStatistics:
    """Add record batches (`add`), then take the statistics (`result`)."""

    def __init__(self, options: Any) -> None:
        from tensorflow_data_validation.statistics import stats_impl
        from tensorflow_data_validation.statistics.generators.top_k_uniques_stats_generator import (  # noqa: E501
            TopKUniquesStatsGenerator,
        )

        if (
            options.schema is not None
            or options.generators
            or options.slicing_config
            or options.experimental_slice_functions
            or options.experimental_slice_sqls
            or options.feature_allowlist
            or options.enable_semantic_domain_stats
            or options.example_weight_map.all_weight_features()
            or options.experimental_num_feature_partitions != 1
        ):
            raise ValueError("InProcessStatistics: only TFDV's default statistics options")
        generators = stats_impl.get_generators(options)
        transform, combiners, _ = stats_impl._split_generator_types(generators, 1)
        if [type(g) for g in transform] != [TopKUniquesStatsGenerator]:
            raise ValueError(f"InProcessStatistics: unexpected generators {transform}")
        self._options = options
        self._combine = stats_impl._CombinerStatsGeneratorsCombineFn(
            combiners, options.desired_batch_size
        )
        self._combine.setup()
        self._acc = self._combine.create_accumulator()
        self._counts: dict[tuple[tuple[str, ...], Any], int] = {}
        self._batches = 0

    def add(self, batch: pa.RecordBatch) -> None:
        """One record batch (list columns, as TFDV takes them)."""
        from tensorflow_data_validation.statistics.generators import top_k_uniques_stats_generator
        from tensorflow_data_validation.utils.example_weight_map import ExampleWeightMap

        self._batches += 1
        self._acc = self._combine.add_input(self._acc, batch)
        counts = self._counts
        for (_, path, value), (count, _) in top_k_uniques_stats_generator._to_topk_tuples(
            (None, batch),
            bytes_features=frozenset(),
            categorical_numeric_types={},
            example_weight_map=ExampleWeightMap(),
        ):
            key = (path, value)
            counts[key] = counts.get(key, 0) + count

    def result(self) -> Any:
        """The ``DatasetFeatureStatisticsList`` `tfdv.GenerateStatistics` makes of the batches."""
        from tensorflow_data_validation.utils import top_k_uniques_stats_util as topk
        from tensorflow_metadata.proto.v0 import statistics_pb2
        from tfx_bsl.statistics import merge_util

        if not self._batches:
            return merge_util.merge_dataset_feature_statistics(
                [statistics_pb2.DatasetFeatureStatistics()]
            )
        o = self._options
        protos = [self._combine.extract_output(self._acc)]
        per_feature: dict[tuple[str, ...], list[tuple[int, Any]]] = {}
        for (path, value), count in self._counts.items():
            per_feature.setdefault(path, []).append((count, value))
        keep = max(o.num_top_values, o.num_rank_histogram_buckets)
        for path, pairs in per_feature.items():
            top = sorted(pairs, reverse=True)[:keep]  # beam.combiners.Top: the largest first
            protos.append(
                topk.make_dataset_feature_stats_proto_topk_single(
                    feature_path_tuple=path,
                    value_count_list=[topk.FeatureValueCount(v, c) for c, v in top],
                    is_weighted_stats=False,
                    num_top_values=o.num_top_values,
                    frequency_threshold=o.frequency_threshold,
                    num_rank_histogram_buckets=o.num_rank_histogram_buckets,
                )
            )
            protos.append(
                topk.make_dataset_feature_stats_proto_unique_single(
                    feature_path_tuple=path, num_uniques=len(pairs)
                )
            )
        return merge_util.merge_dataset_feature_statistics(protos)
