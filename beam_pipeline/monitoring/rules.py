"""Alert rules: skew, drift, live quality and prediction shift (plain functions on results).

Skew and drift use the validate stage's comparators (`beam_pipeline.core.comparators`): a threshold
per feature written into a copy of the model's schema, compared by ``tfdv.validate_statistics``
(L-infinity distance for categorical features, Jensen-Shannon divergence for numeric ones).
Skew compares the window's logged features with the model's training data; drift compares them
with the previous monitoring window. Thresholds come from ``monitor.skew`` / ``monitor.drift``,
or, when those are empty, from ``validation.skew`` / ``validation.drift``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from beam_pipeline.core.comparators import ComparatorSection, with_comparators
from beam_pipeline.monitoring.config import LOWER_IS_BETTER, MonitorSection, QualityRule

OVERALL = "Overall"


def comparator(section: MonitorSection, validation: Any, which: str) -> ComparatorSection:
    """``monitor.skew`` / ``monitor.drift``, else the validate stage's thresholds."""
    own: ComparatorSection = getattr(section, which)
    if own.enabled or validation is None:
        return own
    return getattr(validation, which, own)


def logged_schema(schema: schema_pb2.Schema, features: list[str]) -> schema_pb2.Schema:
    """The schema restricted to the features the log holds (labels are not logged)."""
    out = schema_pb2.Schema()
    out.CopyFrom(schema)
    del out.feature[:]
    out.feature.extend([f for f in schema.feature if f.name in features])
    return out


def compare(
    kind: str,
    current: statistics_pb2.DatasetFeatureStatisticsList,
    reference: statistics_pb2.DatasetFeatureStatisticsList,
    schema: schema_pb2.Schema,
    thresholds: ComparatorSection,
    features: list[str],
) -> list[dict[str, Any]]:
    """Comparator findings (``kind`` is ``skew`` or ``drift``): feature, kind, description."""
    import tensorflow_data_validation as tfdv

    if not thresholds.enabled:
        return []
    pruned = logged_schema(schema, features)
    unknown = sorted(set(thresholds.features) - {f.name for f in pruned.feature})
    usable = ComparatorSection(
        thresholds.threshold, {k: v for k, v in thresholds.features.items() if k not in unknown}
    )
    checked = with_comparators(pruned, usable, kind, f"monitor.{kind}")
    if kind == "skew":
        result = tfdv.validate_statistics(reference, checked, serving_statistics=current)
    else:
        result = tfdv.validate_statistics(current, checked, previous_statistics=reference)
    rows = []
    for feature, info in sorted(result.anomaly_info.items()):
        for reason in info.reason:
            name = anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
            if not name.startswith("COMPARATOR_"):
                continue
            rows.append(
                {
                    "category": kind,
                    "feature": feature,
                    "kind": name,
                    "description": reason.description or reason.short_description,
                    "threshold": thresholds.features.get(feature, thresholds.threshold),
                }
            )
    for name in unknown:
        rows.append(
            {
                "category": kind,
                "feature": name,
                "kind": "NOT_LOGGED",
                "description": f"monitor.{kind}.features names {name!r}, which is not logged",
                "threshold": thresholds.features[name],
                "alert": False,
            }
        )
    return rows


def js_divergence(p: list[float] | np.ndarray, q: list[float] | np.ndarray) -> float | None:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of two histograms; None if either is empty."""
    a, b = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if a.sum() <= 0 or b.sum() <= 0 or a.shape != b.shape:
        return None
    a, b = a / a.sum(), b / b.sum()
    m = (a + b) / 2

    def kl(x: np.ndarray) -> float:
        nz = x > 0
        return float((x[nz] * np.log2(x[nz] / m[nz])).sum())

    return max(0.0, (kl(a) + kl(b)) / 2)


def quality_checks(
    section: MonitorSection,
    version: int,
    live: dict[str, dict[str, Any]],
    evaluated: dict[str, dict[str, Any]],
    canonical: Any,
) -> list[dict[str, Any]]:
    """Every configured quality rule for one version: live metrics (slice -> metrics) against
    bounds and against evaluation time (slice -> metrics). ``canonical`` names a config slice."""
    targets: list[tuple[str, dict[str, QualityRule]]] = [(OVERALL, section.quality)]
    targets += [(canonical(s.slice), s.thresholds) for s in section.slice_quality]
    checks = []
    for slice_key, rules in targets:
        now, then = live.get(slice_key) or {}, evaluated.get(slice_key) or {}
        count = int(now.get("example_count") or 0)
        for metric, rule in rules.items():
            for kind in ("lower", "upper", "max_drop", "max_drop_rel"):
                bound = getattr(rule, kind)
                if bound is None:
                    continue
                checks.append(
                    _check(
                        version,
                        slice_key,
                        metric,
                        kind,
                        bound,
                        now.get(metric),
                        then.get(metric),
                        count,
                        section.min_labelled,
                    )
                )
    return checks


def _check(
    version: int,
    slice_key: str,
    metric: str,
    kind: str,
    bound: float,
    value: float | None,
    evaluated: float | None,
    count: int,
    min_labelled: int,
) -> dict[str, Any]:
    where = f"v{version} {metric}" + ("" if slice_key == OVERALL else f" on slice {slice_key}")
    row: dict[str, Any] = {
        "category": "quality",
        "version": version,
        "slice": slice_key,
        "metric": metric,
        "kind": kind,
        "threshold": bound,
        "value": value,
        "evaluated": evaluated,
        "labelled": count,
        "alert": False,
    }
    if count < min_labelled:
        row["message"] = (
            f"{where}: not checked: {count} labelled rows < min_labelled {min_labelled}"
        )
        return row
    if value is None:
        row["message"] = f"{where}: undefined on the labelled traffic"
        return row
    if kind == "lower":
        row["alert"] = value < bound
        row["message"] = (
            f"{where} {value:.4f} {'<' if row['alert'] else '>='} lower bound {bound:g}"
        )
        return row
    if kind == "upper":
        row["alert"] = value > bound
        row["message"] = (
            f"{where} {value:.4f} {'>' if row['alert'] else '<='} upper bound {bound:g}"
        )
        return row
    if evaluated is None:
        row["message"] = f"{where}: {kind} not checked: no evaluation-time value"
        return row
    drop = (value - evaluated) if metric in LOWER_IS_BETTER else (evaluated - value)
    if kind == "max_drop_rel":
        drop = drop / abs(evaluated) if evaluated else math.copysign(math.inf, drop)
    row["drop"] = drop
    row["alert"] = bool(drop > bound)
    unit = " (relative)" if kind == "max_drop_rel" else ""
    row["message"] = (
        f"{where} {value:.4f} vs {evaluated:.4f} at evaluation: drop {drop:+.4f}{unit} "
        f"{'>' if row['alert'] else '<='} {kind} {bound:g}"
    )
    return row


def alert_kinds(alerts: list[dict[str, Any]]) -> list[str]:
    """The distinct categories of the alerts that fired, in a stable order."""
    fired = {a["category"] for a in alerts}
    return [k for k in ("skew", "drift", "quality", "prediction_shift") if k in fired]
