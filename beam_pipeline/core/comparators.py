"""Skew and drift comparators on a TFDV schema, shared by ``validate`` and ``monitor``.

Categorical features (strings, categorical ints) are compared by the L-infinity distance between
their value distributions; numeric features by the approximate Jensen-Shannon divergence of their
histograms. A threshold per feature (or one for all) is written into a copy of the schema as its
``skew_comparator`` or ``drift_comparator``; ``tfdv.validate_statistics`` does the comparing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from beam_pipeline.core.errors import ConfigError

if TYPE_CHECKING:  # the section is loaded with every config: no proto import for it
    from tensorflow_metadata.proto.v0 import schema_pb2


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
