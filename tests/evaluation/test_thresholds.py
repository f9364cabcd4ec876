"""One threshold model for evaluate's blessing and the monitor's quality rules."""

from __future__ import annotations

import math

import pytest

from beam_pipeline.evaluation import canonical_slice, check
from beam_pipeline.evaluation.thresholds import MetricThreshold, improvement, judge
from beam_pipeline.monitoring import rules
from beam_pipeline.monitoring.config import MonitorSection


@pytest.mark.parametrize(
    ("metric", "value", "reference", "passed"),
    [
        ("auc", 0.88, 0.90, True),  # dropped 0.02: allowed
        ("auc", 0.87, 0.90, False),  # dropped 0.03
        ("rmse", 3.02, 3.00, True),  # a loss that rose by 0.02
        ("rmse", 3.03, 3.00, False),
        ("rmse", 2.00, 3.00, True),  # an error that fell: an improvement
    ],
)
def test_max_drop_is_min_change_abs_negated(
    metric: str, value: float, reference: float, passed: bool
) -> None:
    drop = judge(metric, "max_drop", 0.025, value, reference)
    change = judge(metric, "min_change_abs", -0.025, value, reference)
    assert drop.passed is change.passed is passed
    assert drop.change == pytest.approx(-change.change)  # type: ignore[operator]


def test_relative_change_of_a_zero_reference() -> None:
    assert improvement("mae", 0.0, 0.0, relative=True) == 0.0  # no change is no drop
    assert improvement("mae", 0.5, 0.0, relative=True) == -math.inf
    assert not judge("mae", "max_drop_rel", 0.1, 0.5, 0.0).passed


def test_both_jobs_read_one_threshold_the_same_way() -> None:
    threshold = {"log_loss": MetricThreshold(upper=0.5, max_drop_rel=0.1)}
    # evaluate: the candidate against the baseline model
    entry = {"candidate": {"log_loss": 0.45}, "baseline": {"log_loss": 0.40}}
    blessing = {c["kind"]: c for c in check(threshold, [], entry, {}, True)}
    # monitor: live traffic against the same version's evaluation-time value
    section = MonitorSection(quality=threshold, every_slice={}, min_labelled=1)
    live = {"Overall": {"example_count": 10.0, "log_loss": 0.45}}
    evaluated = {"Overall": {"log_loss": 0.40}}
    alerts = {
        c["kind"]: c for c in rules.quality_checks(section, 1, live, evaluated, canonical_slice)
    }
    for kind in ("upper", "max_drop_rel"):
        assert blessing[kind]["passed"] is not alerts[kind]["alert"]
    assert not blessing["max_drop_rel"]["passed"]  # 0.40 -> 0.45: 12.5 % worse > 10 %
    assert blessing["max_drop_rel"]["change"] == alerts["max_drop_rel"]["drop"]
    assert alerts["max_drop_rel"]["drop"] == pytest.approx(0.125)
    assert "drop +0.1250 (relative) > max_drop_rel 0.1" in blessing["max_drop_rel"]["message"]
    assert "drop +0.1250 (relative) > max_drop_rel 0.1" in alerts["max_drop_rel"]["message"]
