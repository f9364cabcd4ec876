"""Blessing: evaluate's threshold checks, plain functions on metric dicts.

The thresholds and the rule that judges them are `beam_pipeline.evaluation.thresholds` (the
monitor's quality alerts use the same). A metric result is ``{"candidate": {metric: value},
"baseline": {...} | None, "difference": {...} | None}`` per slice (`assemble` builds it from
`MetricsAccumulator` results). `check` returns every check, passed or not, as a JSON-ready
dict; a model is blessed when all pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from beam_pipeline.evaluation.metrics import ALWAYS, OVERALL
from beam_pipeline.evaluation.slicing import canonical_slice
from beam_pipeline.evaluation.thresholds import (
    ABSOLUTE,
    MetricThreshold,
    SliceThreshold,
    judge,
)

CANDIDATE, BASELINE = "candidate", "baseline"


def assemble(
    candidate: Mapping[str, Mapping[str, float | None]],
    baseline: Mapping[str, Mapping[str, float | None]] | None,
    selected: Sequence[str],
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(overall, slices) as ``{"candidate", "baseline", "difference"}`` entries.

    Args:
        candidate: ``{slice key: metrics}`` of the candidate (`MetricsAccumulator.result`).
        baseline: the same for the baseline model, or None.
        selected: the metrics kept (besides `ALWAYS`).
    """
    keep = set(selected) | set(ALWAYS)
    by_slice: dict[str, dict[str, Any]] = {}
    for name, results in ((CANDIDATE, candidate), (BASELINE, baseline or {})):
        for key, metrics in results.items():
            entry = by_slice.setdefault(key, {CANDIDATE: {}, BASELINE: None})
            entry[name] = {k: v for k, v in metrics.items() if k in keep}
    for entry in by_slice.values():
        cand, base = entry[CANDIDATE], entry[BASELINE]
        entry["difference"] = (
            {
                k: (v - base[k]) if v is not None and base.get(k) is not None else None
                for k, v in cand.items()
            }
            if base
            else None
        )
    overall = by_slice.pop(OVERALL, {CANDIDATE: {}, BASELINE: None, "difference": None})
    return overall, dict(sorted(by_slice.items()))


def check(
    thresholds: Mapping[str, MetricThreshold],
    slice_thresholds: Sequence[SliceThreshold],
    overall: Mapping[str, Any],
    slices: Mapping[str, Mapping[str, Any]],
    has_baseline: bool,
) -> list[dict[str, Any]]:
    """Every threshold check, passed or not: ``{"slice", "metric", "kind", "threshold", "value",
    "baseline", "change", "passed", "message"}`` (``"skipped": true`` for a change check without
    a baseline; it passes). ``change``: the improvement over the baseline (``min_change_*``) or
    the drop from it (``max_drop*``)."""
    checks = []
    targets: list[tuple[str, Mapping[str, MetricThreshold], Mapping[str, Any] | None]] = [
        (OVERALL, thresholds, overall)
    ]
    for st in slice_thresholds:
        key = canonical_slice(st.slice)
        targets.append((key, st.thresholds, slices.get(key)))
    for slice_key, bounds, entry in targets:
        for metric, t in bounds.items():
            for kind, bound in t.bounds():
                checks.append(_check_one(slice_key, metric, kind, bound, entry, has_baseline))
    return checks


def blessed(checks: Sequence[Mapping[str, Any]]) -> bool:
    """True when every check passed."""
    return all(c["passed"] for c in checks)


def _check_one(
    slice_key: str,
    metric: str,
    kind: str,
    bound: float,
    entry: Mapping[str, Any] | None,
    has_baseline: bool,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "slice": slice_key,
        "metric": metric,
        "kind": kind,
        "threshold": bound,
        "value": None,
        "baseline": None,
        "change": None,
        "passed": False,
    }
    where = "" if slice_key == OVERALL else f" on slice {slice_key}"
    if entry is None:
        result["message"] = f"{metric}{where}: no eval rows in this slice"
        return result
    value = entry[CANDIDATE].get(metric)
    result["value"] = value
    if value is None:
        result["message"] = f"{metric}{where} is undefined for the candidate (too few rows?)"
        return result
    if kind in ABSOLUTE:
        verdict = judge(metric, kind, bound, value)
        result["passed"] = verdict.passed
        result["message"] = f"{metric}{where} {value:.4f} {verdict.text}"
        return result
    base = (entry.get(BASELINE) or {}).get(metric)
    result["baseline"] = base
    if not has_baseline or base is None:
        result["passed"] = True
        result["skipped"] = True
        why = "no baseline model" if not has_baseline else "undefined for the baseline"
        result["message"] = f"{metric}{where}: {kind} not checked: {why}"
        return result
    verdict = judge(metric, kind, bound, value, base)
    result["change"] = verdict.change
    result["passed"] = verdict.passed
    result["message"] = f"{metric}{where} {value:.4f} vs baseline {base:.4f}: {verdict.text}"
    return result
