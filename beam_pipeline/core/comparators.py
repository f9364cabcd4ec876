"""Skew and drift comparators on a TFDV schema, shared by ``validate`` and ``monitor``.

Categorical features (strings, categorical ints) are compared by the L-infinity distance between
their value distributions; numeric features by the approximate Jensen-Shannon divergence of their
histograms. A threshold per feature (or one for all) is written into a copy of the schema as its
``skew_comparator`` or ``drift_comparator``; ``tfdv.validate_statistics`` does the comparing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from beam_pipeline.core.errors import ConfigError

if TYPE_CHECKING:  # the section is loaded with every config: no proto import for it
    from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

    from beam_pipeline.core.artifacts import Artifact
    from beam_pipeline.core.metadata import Store


@dataclass(frozen=True)
class ComparatorSection:
    """Thresholds of one comparator (``validation.skew`` or ``validation.drift``).

    Categorical features (strings, categorical ints) use the L-infinity distance between their
    value distributions; numeric features use the Jensen-Shannon divergence of their histograms.
    With neither ``threshold`` nor ``features`` set, the check is off.

    Attributes:
        threshold: the threshold for every feature of the schema; None: only ``features``.
        features: feature name -> its threshold (overrides ``threshold``).
    """

    threshold: float | None = None
    features: dict[str, float] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return self.threshold is not None or bool(self.features)

    def check(self, key: str) -> None:
        """Raise a ConfigError naming ``key`` (e.g. ``validation.skew``) for a bad threshold."""
        values = {f"{key}.threshold": self.threshold}
        values.update({f"{key}.features.{name}": t for name, t in self.features.items()})
        for where, value in values.items():
            if value is not None and not 0 < value <= 1:
                raise ConfigError(f"{where} must be in (0, 1]; received {value!r}")


def is_categorical(feature: schema_pb2.Feature) -> bool:
    """Strings and categorical ints are compared by value frequencies, not histograms."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    if feature.type == schema_pb2.BYTES:
        return True
    kind = feature.WhichOneof("domain_info")
    if kind in ("domain", "string_domain", "bool_domain"):
        return True
    return kind == "int_domain" and feature.int_domain.is_categorical


def with_comparators(
    schema: schema_pb2.Schema, comparator: ComparatorSection, which: str, key: str
) -> schema_pb2.Schema:
    """A copy of ``schema`` with ``skew_comparator`` or ``drift_comparator`` thresholds set.

    Args:
        schema: the pipeline's schema (left untouched).
        comparator: the thresholds.
        which: ``"skew"`` or ``"drift"``.
        key: the config key, for errors (``validation.skew``).

    Raises:
        ConfigError: ``comparator.features`` names a feature the schema does not have.
    """
    names = [f.name for f in schema.feature]
    unknown = sorted(set(comparator.features) - set(names))
    if unknown:
        raise ConfigError(
            f"{key}.features: unknown feature {unknown[0]!r}; the schema has {sorted(names)}"
        )
    from tensorflow_metadata.proto.v0 import schema_pb2

    out = schema_pb2.Schema()
    out.CopyFrom(schema)
    for feature in out.feature:
        threshold = comparator.features.get(feature.name, comparator.threshold)
        if threshold is None:
            continue
        target = feature.skew_comparator if which == "skew" else feature.drift_comparator
        if is_categorical(feature):
            target.infinity_norm.threshold = threshold
        else:
            target.jensen_shannon_divergence.threshold = threshold
    return out


# ---------------------------------------------------------------------------------------------
# Distances on the reference's own buckets (``monitor``: serving against training, window against
# window). TFDV's numeric comparator estimates Jensen-Shannon from two histograms with different
# boundaries: at a few thousand rows that estimate is noise (0.3 to 0.7 on a sample of the
# training data itself). Here both sides are counted exactly on one set of boundaries, the
# reference's deciles, so a sample of the reference distribution lands near 0.


def _feature_stats(stats: statistics_pb2.DatasetFeatureStatisticsList, name: str) -> Any:
    if not stats.datasets:
        return None
    for feature in stats.datasets[0].features:
        if feature.name == name or (feature.path.step and feature.path.step[-1] == name):
            return feature
    return None


def decile_boundaries(
    stats: statistics_pb2.DatasetFeatureStatisticsList, name: str
) -> list[float] | None:
    """The interior boundaries of a numeric feature's quantiles histogram (TFDV's deciles by
    default), without repeats; None when the statistics hold no quantiles for it.

    Values are bucketed ``[b_i, b_i+1)``: a point mass (a run of equal quantiles, e.g. many
    zero fares) is one bucket starting at its value.
    """
    from tensorflow_metadata.proto.v0 import statistics_pb2

    feature = _feature_stats(stats, name)
    if feature is None or not feature.HasField("num_stats"):
        return None
    for hist in feature.num_stats.histograms:
        if hist.type != statistics_pb2.Histogram.QUANTILES or not hist.buckets:
            continue
        edges = [b.low_value for b in hist.buckets][1:]
        out: list[float] = []
        for e in edges:
            if not out or e > out[-1]:
                out.append(float(e))
        return out
    return None


def bucket_counts(values: Any, boundaries: list[float], float32: bool = False) -> Any:
    """How many of ``values`` fall in each bucket ``(-inf, b0), [b0, b1), ..., [bk, inf)``
    (``len(boundaries) + 1`` int64 counts; NaN and missing values are not counted).

    ``float32``: round the values to float32 first, as a tf.Example stores them, so that a value
    on a boundary lands where the same value of the reference data landed.
    """
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    if float32:
        x = x.astype(np.float32).astype(np.float64)
    x = x[~np.isnan(x)]
    edges = np.asarray(boundaries, dtype=np.float64)
    return np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1)


def js_divergence(p: Any, q: Any) -> float | None:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of two histograms on the same buckets;
    None when either is empty or their shapes differ."""
    import numpy as np

    a, b = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if a.shape != b.shape or a.sum() <= 0 or b.sum() <= 0:
        return None
    a, b = a / a.sum(), b / b.sum()
    m = (a + b) / 2

    def kl(x: Any) -> float:
        nz = x > 0
        return float((x[nz] * np.log2(x[nz] / m[nz])).sum())

    return max(0.0, (kl(a) + kl(b)) / 2)


def value_counts(stats: statistics_pb2.DatasetFeatureStatisticsList, name: str) -> dict[str, float]:
    """A categorical feature's value -> count (TFDV's rank histogram of its values)."""
    feature = _feature_stats(stats, name)
    if feature is None:
        return {}
    string_stats = feature.string_stats if feature.HasField("string_stats") else None
    if string_stats is None:
        return {}
    buckets = string_stats.rank_histogram.buckets
    if buckets:
        return {b.label: float(b.sample_count) for b in buckets}
    return {v.value: float(v.frequency) for v in string_stats.top_values}


def linf_distance(p: dict[str, float], q: dict[str, float]) -> tuple[float, str] | None:
    """L-infinity distance of two value distributions (TFDV's categorical comparator) and the
    value where it is reached; None when either is empty."""
    tp, tq = sum(p.values()), sum(q.values())
    if tp <= 0 or tq <= 0:
        return None
    diffs = {k: abs(p.get(k, 0.0) / tp - q.get(k, 0.0) / tq) for k in set(p) | set(q)}
    worst = max(sorted(diffs), key=lambda k: diffs[k])
    return diffs[worst], worst


def present_count(stats: statistics_pb2.DatasetFeatureStatisticsList, name: str) -> int:
    """How many examples hold a value of the feature."""
    feature = _feature_stats(stats, name)
    if feature is None:
        return 0
    which = feature.WhichOneof("stats")
    common = getattr(feature, which).common_stats if which else None
    return int(common.num_non_missing) if common is not None else 0


def js_noise_floor(buckets: int, n: int, m: int, z: float = 3.09) -> float:
    """The Jensen-Shannon divergence that two samples of ``n`` and ``m`` values of one
    distribution, counted on ``buckets`` buckets, exceed only once in a thousand (``z``).

    For small differences JS (base 2) ~ chi2(buckets - 1) * (1/n + 1/m) / (8 ln 2); the
    chi-square quantile is Wilson and Hilferty's approximation.
    """
    import math

    d = max(1, buckets - 1)
    q = d * (1 - 2 / (9 * d) + z * math.sqrt(2 / (9 * d))) ** 3
    return q * (1 / max(n, 1) + 1 / max(m, 1)) / (8 * math.log(2))


# ---------------------------------------------------------------------------------------------
# Acknowledged drift (``monitor --retrain``)

ACK_TYPE = "DriftAcknowledgement"


def acknowledged_drift(store: Store, statistics: Artifact) -> list[Artifact]:
    """The DriftAcknowledgement artifacts that cover the data behind ``statistics``.

    ``monitor --retrain`` writes a DataSpan of served traffic and records, with the id of the
    MonitoringReport that triggered it, that the report's drift is acknowledged: the retraining
    run exists because of that drift, so its validation reports drift and does not stop on it.
    Found through lineage: statistics <- examples <- ingest <- DataSpan(s) (by content digest).
    """
    producer = store.producer(statistics.id) if statistics.id is not None else None
    examples = store.execution_inputs(producer).get("examples") if producer else None
    ingest = store.producer(examples.id) if examples is not None else None
    spans = (
        [a for a in store.execution_inputs(ingest).values() if a.type == "DataSpan"]
        if (ingest)
        else []
    )
    digests = {s.properties.get("content_digest") for s in spans} - {None}
    if not digests:
        return []
    return [
        a
        for a in store.artifacts_of_type(ACK_TYPE)
        if a.properties.get("content_digest") in digests
    ]
