"""Alert rules: skew, drift, live quality, prediction shift and bad input (plain functions).

Skew compares the window's logged features with the model's training data; drift compares them
with the previous monitoring window. Numeric features: both sides counted on the reference's own
deciles (the training statistics' quantile boundaries), compared by the Jensen-Shannon
divergence of those counts (`beam_pipeline.core.comparators`). Categorical features: the
L-infinity distance of their value frequencies, TFDV's comparator, whose anomaly message the row
keeps. A feature with fewer than ``min_count`` values on either side is listed, not compared.
"""

from __future__ import annotations

from typing import Any

from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from beam_pipeline.core import comparators
from beam_pipeline.core.comparators import ComparatorSection, with_comparators
from beam_pipeline.evaluation.catalog import OVERALL
from beam_pipeline.evaluation.thresholds import ABSOLUTE, SAME_BOUND, MetricThreshold, judge
from beam_pipeline.monitoring.config import ALERT_KINDS, DistanceRule, MonitorSection

NUMERIC, CATEGORICAL = "JENSEN_SHANNON_ON_DECILES", "L_INFINITY"
js_divergence = comparators.js_divergence


def logged_schema(schema: schema_pb2.Schema, features: list[str]) -> schema_pb2.Schema:
    """The schema restricted to the features the log holds (labels are not logged)."""
    out = schema_pb2.Schema()
    out.CopyFrom(schema)
    del out.feature[:]
    out.feature.extend([f for f in schema.feature if f.name in features])
    return out


def categorical_features(schema: schema_pb2.Schema | None, columns: dict[str, str]) -> set[str]:
    """Logged features compared by value frequencies: the schema's categorical ones, and text."""
    found = {f.name for f in schema.feature if comparators.is_categorical(f)} if schema else set()
    return found | {name for name, kind in columns.items() if kind == "string"}


def numeric_buckets(
    reference: statistics_pb2.DatasetFeatureStatisticsList,
    columns: dict[str, str],
    categorical: set[str],
) -> dict[str, list[float]]:
    """Numeric logged feature -> the reference statistics' decile boundaries (the buckets the
    window is counted on)."""
    out = {}
    for name in columns:
        if name in categorical:
            continue
        edges = comparators.decile_boundaries(reference, name)
        if edges:
            out[name] = edges
    return out


def _tfdv_messages(
    kind: str,
    current: statistics_pb2.DatasetFeatureStatisticsList,
    reference: statistics_pb2.DatasetFeatureStatisticsList,
    schema: schema_pb2.Schema | None,
    thresholds: dict[str, float],
) -> dict[str, str]:
    """TFDV's comparator messages for the categorical features (feature -> description)."""
    import tensorflow_data_validation as tfdv

    if schema is None or not thresholds:
        return {}
    pruned = logged_schema(schema, list(thresholds))
    known = {f.name for f in pruned.feature}
    section = ComparatorSection(None, {k: v for k, v in thresholds.items() if k in known})
    if not section.features:
        return {}
    checked = with_comparators(pruned, section, kind, f"monitor.{kind}")
    if kind == "skew":
        result = tfdv.validate_statistics(reference, checked, serving_statistics=current)
    else:
        result = tfdv.validate_statistics(current, checked, previous_statistics=reference)
    out = {}
    for feature, info in result.anomaly_info.items():
        for reason in info.reason:
            if anomalies_pb2.AnomalyInfo.Type.Name(reason.type).startswith("COMPARATOR_"):
                out[feature] = reason.description or reason.short_description
    return out


def distances(
    kind: str,
    rule: DistanceRule,
    current: statistics_pb2.DatasetFeatureStatisticsList,
    reference: statistics_pb2.DatasetFeatureStatisticsList,
    current_buckets: dict[str, list[int]],
    reference_buckets: dict[str, list[int]],
    categorical: set[str],
    features: list[str],
    schema: schema_pb2.Schema | None,
    window: str,
) -> list[dict[str, Any]]:
    """One row per logged feature (``kind``: ``skew`` or ``drift``): its distance, threshold,
    counts, and whether it alerts. Unknown names in ``rule.features`` get a NOT_LOGGED row."""
    rows = []
    where = "the training data" if kind == "skew" else "the previous window"
    tfdv_thresholds = {
        f: t for f in features if f in categorical and (t := rule.threshold_of(f, True)) is not None
    }
    messages = _tfdv_messages(kind, current, reference, schema, tfdv_thresholds)
    for name in features:
        is_cat = name in categorical
        threshold = rule.threshold_of(name, is_cat)
        row: dict[str, Any] = {
            "category": kind,
            "feature": name,
            "kind": CATEGORICAL if is_cat else NUMERIC,
            "threshold": threshold,
            "window": window,
            "alert": False,
        }
        if is_cat:
            count = comparators.present_count(current, name)
            ref_count = comparators.present_count(reference, name)
            found = comparators.linf_distance(
                comparators.value_counts(current, name), comparators.value_counts(reference, name)
            )
            value, at = found if found else (None, None)
            metric = "L-infinity distance"
        else:
            cur, ref = current_buckets.get(name), reference_buckets.get(name)
            count = int(sum(cur)) if cur else 0
            ref_count = int(sum(ref)) if ref else 0
            value = comparators.js_divergence(cur, ref) if cur and ref else None
            if value is not None and threshold is not None:  # never below sampling noise
                floor = comparators.js_noise_floor(len(cur or []), count, ref_count)
                row["noise_floor"] = floor
                threshold = max(threshold, floor)
                row["threshold"] = threshold
            at = None
            metric = "Jensen-Shannon divergence on the training data's deciles"
        row.update(value=value, count=count, reference_count=ref_count)
        if value is None:
            row["description"] = f"not compared: no {metric} (no values or no reference)"
        elif threshold is None:
            row["description"] = f"{metric} {value:.4f} (no threshold)"
        elif min(count, ref_count) < rule.min_count:
            row["description"] = (
                f"{metric} {value:.4f} not judged: {min(count, ref_count):,} values < "
                f"monitor.{kind}.min_count {rule.min_count:,}"
            )
        else:
            row["alert"] = bool(value > threshold)
            sign = ">" if row["alert"] else "<="
            text = (
                f"{metric} from {where} {value:.4f} {sign} threshold {threshold:g} "
                f"({count:,} values in the window {window}"
                + (f"; largest difference at {at!r}" if at is not None else "")
                + ")"
            )
            if row["alert"] and name in messages:
                text += f"; TFDV: {messages[name]}"
            row["description"] = text
        rows.append(row)
    for name in sorted(set(rule.features) - set(features)):
        rows.append(
            {
                "category": kind,
                "feature": name,
                "kind": "NOT_LOGGED",
                "description": f"monitor.{kind}.features names {name!r}, which is not logged",
                "threshold": rule.features[name],
                "window": window,
                "alert": False,
            }
        )
    return rows


def quality_checks(
    section: MonitorSection,
    version: int,
    live: dict[str, dict[str, Any]],
    evaluated: dict[str, dict[str, Any]],
    canonical: Any,
) -> list[dict[str, Any]]:
    """Every configured quality rule for one version: live metrics (slice -> metrics) against
    bounds and against evaluation time (slice -> metrics). ``canonical`` names a config slice."""
    targets: list[tuple[str, dict[str, MetricThreshold], int]] = [
        (OVERALL, section.quality, section.min_labelled)
    ]
    named = {canonical(s.slice) for s in section.slice_quality}
    targets += [
        (canonical(s.slice), s.thresholds, section.min_slice_labelled)
        for s in section.slice_quality
    ]
    if section.every_slice:  # every evaluated slice with enough labelled rows to judge
        for key in sorted(set(live) - {OVERALL} - named):
            if int((live.get(key) or {}).get("example_count") or 0) >= section.min_slice_labelled:
                targets.append((key, section.every_slice, section.min_slice_labelled))
    checks = []
    for slice_key, rules, minimum in targets:
        now, then = live.get(slice_key) or {}, evaluated.get(slice_key) or {}
        count = int(now.get("example_count") or 0)
        for metric, rule in rules.items():
            if now.get(metric) is None and then.get(metric) is None and count:
                continue  # not a metric of this task (auc of a regression, rmse of a classifier)
            for kind, bound in rule.bounds():
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
                        minimum,
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
            f"{where}: not checked: {count} labelled rows < monitor."
            f"{'min_labelled' if slice_key == OVERALL else 'min_slice_labelled'} {min_labelled}"
        )
        return row
    if value is None:
        row["message"] = f"{where}: undefined on the labelled traffic"
        return row
    if kind in ABSOLUTE:
        verdict = judge(metric, kind, bound, value)
        row["alert"] = not verdict.passed
        row["message"] = f"{where} {value:.4f} {verdict.text}"
        return row
    if evaluated is None:
        row["message"] = f"{where}: {kind} not checked: no evaluation-time value"
        return row
    verdict = judge(metric, kind, bound, value, evaluated)
    row["drop" if kind in SAME_BOUND else "change"] = verdict.change
    row["alert"] = not verdict.passed
    row["message"] = f"{where} {value:.4f} vs {evaluated:.4f} at evaluation: {verdict.text}"
    return row


def alert_kinds(alerts: list[dict[str, Any]]) -> list[str]:
    """The distinct categories of the alerts that fired, in a stable order."""
    fired = {a["category"] for a in alerts}
    return [k for k in ALERT_KINDS if k in fired]


def bad_input(section: MonitorSection, bad: dict[str, Any], rows_read: int) -> dict[str, Any]:
    """The bad-input rate of the window: corrupt lines and feature values of the wrong type per
    logged record; ``alert`` when above ``monitor.bad_input_rate``."""
    problems = int(bad["corrupt_lines"]) + int(bad["bad_feature_values"])
    records = rows_read + int(bad["corrupt_lines"])
    rate = problems / records if records else 0.0
    limit = section.bad_input_rate
    alert = limit is not None and records > 0 and rate > limit
    return {
        "category": "bad_input",
        "feature": "(records)",
        "value": rate,
        "threshold": limit,
        "count": records,
        "alert": alert,
        "message": f"bad input: {problems:,} corrupt lines or bad feature values in "
        f"{records:,} logged records, rate {rate:.4f} "
        + (f"{'>' if alert else '<='} {limit:g}" if limit is not None else "(no threshold)"),
    }
