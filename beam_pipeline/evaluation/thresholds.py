"""The threshold model: bounds on a metric and the one rule that judges them.

Used by evaluate's blessing (the candidate against absolute bounds and against the baseline
model) and by the monitor's live quality alerts (live traffic against absolute bounds and against
the same version's evaluation-time value). Import-light: the config sections hold these types.

A `MetricThreshold` has absolute bounds (``lower``, ``upper``) and bounds on the change against
a reference value of the same metric, read the way the metric improves
(`beam_pipeline.evaluation.direction`: lower is better for losses and errors). A change bound has
two spellings, whichever reads better: ``min_change_abs`` / ``min_change_rel``, the least
improvement (a negative value allows that much regression), or ``max_drop`` / ``max_drop_rel``,
the most worsening; ``max_drop: 0.02`` is ``min_change_abs: -0.02``. Relative changes are divided
by ``|reference|``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from beam_pipeline.core.errors import ConfigError
from beam_pipeline.evaluation.catalog import ALWAYS, KNOWN_METRICS
from beam_pipeline.evaluation.direction import lower_is_better

ABSOLUTE = ("lower", "upper")
CHANGE = ("min_change_abs", "min_change_rel", "max_drop", "max_drop_rel")
KINDS = ABSOLUTE + CHANGE
# The two spellings of one bound: max_drop d == min_change_abs -d.
SAME_BOUND = {"max_drop": "min_change_abs", "max_drop_rel": "min_change_rel"}


@dataclass(frozen=True)
class MetricThreshold:
    """Bounds on one metric (see the module docstring). ``lower``/``upper``: absolute.
    ``min_change_abs``/``min_change_rel``: the least improvement over the reference;
    ``max_drop``/``max_drop_rel``: the most worsening. The reference is the baseline model at
    evaluate and the evaluation-time value at monitor."""

    lower: float | None = None
    upper: float | None = None
    min_change_abs: float | None = None
    min_change_rel: float | None = None
    max_drop: float | None = None
    max_drop_rel: float | None = None

    def bounds(self) -> list[tuple[str, float]]:
        """``(kind, bound)`` of every bound set, in `KINDS` order."""
        return [(kind, v) for kind in KINDS if (v := getattr(self, kind)) is not None]


@dataclass(frozen=True)
class SliceThreshold:
    """Thresholds for one slice, named by its feature values: ``{payment_type: Cash}``."""

    slice: dict[str, Any]
    thresholds: dict[str, MetricThreshold]


def check_thresholds(thresholds: Mapping[str, MetricThreshold], where: str) -> None:
    """Raise a `ConfigError` naming the key for a threshold with no bound, a bound given in both
    spellings, an unknown metric, or a change bound on a metric that improves neither way."""
    for metric, t in thresholds.items():
        key = f"{where}.{metric}"
        if metric not in KNOWN_METRICS:
            raise ConfigError(
                f"{key}: unknown metric {metric!r}; expected one of {sorted(KNOWN_METRICS)}"
            )
        kinds = [kind for kind, _ in t.bounds()]
        if not kinds:
            raise ConfigError(f"{key}: expected at least one of {', '.join(KINDS)}; received none")
        for drop, change in SAME_BOUND.items():
            if drop in kinds and change in kinds:
                raise ConfigError(
                    f"{key}: {drop} and {change} are one bound ({drop}: d is {change}: -d); "
                    "expected one of them; received both"
                )
        changes = [k for k in kinds if k in CHANGE]
        if changes and metric in ALWAYS:
            raise ConfigError(
                f"{key}.{changes[0]}: {metric!r} is neither better higher nor lower; "
                "expected lower or upper bounds only"
            )


@dataclass(frozen=True)
class Judgement:
    """One bound judged. ``change``: the improvement (``min_change_*``) or the worsening
    (``max_drop*``) against the reference, relative for ``*_rel``; None for absolute bounds.
    ``text``: the comparison, to follow the value (``>= lower bound 0.7``) or the reference
    (``improvement -0.0500 < min_change_abs -0.01``)."""

    passed: bool
    change: float | None
    text: str


def judge(
    metric: str, kind: str, bound: float, value: float, reference: float | None = None
) -> Judgement:
    """Judge ``value`` of ``metric`` against one bound (``reference`` needed for change kinds)."""
    if kind == "lower":
        passed = value >= bound
        return Judgement(passed, None, f"{'>=' if passed else '<'} lower bound {bound:g}")
    if kind == "upper":
        passed = value <= bound
        return Judgement(passed, None, f"{'<=' if passed else '>'} upper bound {bound:g}")
    if kind not in CHANGE:
        raise ValueError(f"threshold kind: expected one of {KINDS}; received {kind!r}")
    if reference is None:
        raise ValueError(f"{metric} {kind}: a change bound needs a reference value")
    change = improvement(metric, value, reference, relative=kind.endswith("_rel"))
    unit = " (relative)" if kind.endswith("_rel") else ""
    if kind in SAME_BOUND:  # max_drop*: the worsening may not exceed the bound
        drop = -change
        passed = bool(drop <= bound)
        text = f"drop {drop:+.4f}{unit} {'<=' if passed else '>'} {kind} {bound:g}"
        return Judgement(passed, drop, text)
    passed = bool(change >= bound)
    text = f"improvement {change:+.4f}{unit} {'>=' if passed else '<'} {kind} {bound:g}"
    return Judgement(passed, change, text)


def improvement(metric: str, value: float, reference: float, relative: bool = False) -> float:
    """How much better ``value`` is than ``reference`` (negative: worse); divided by
    ``|reference|`` when ``relative`` (an infinite ratio, signed, when the reference is 0)."""
    change = (reference - value) if lower_is_better(metric) else (value - reference)
    if not relative:
        return change
    if reference:
        return change / abs(reference)
    return math.copysign(math.inf, change) if change else 0.0
