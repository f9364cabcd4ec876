"""Alert rules and the ``monitor:`` section: plain functions, no Beam."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from beam_pipeline.core.config import load
from beam_pipeline.core.errors import ConfigError
from beam_pipeline.evaluation import canonical_slice
from beam_pipeline.evaluation.thresholds import MetricThreshold, SliceThreshold
from beam_pipeline.monitoring import rules
from beam_pipeline.monitoring.config import MonitorSection
from beam_pipeline.sections import all_sections


def test_js_divergence_bounds() -> None:
    assert rules.js_divergence([1, 2, 3], [2, 4, 6]) == pytest.approx(0.0)
    assert rules.js_divergence([1, 0], [0, 1]) == pytest.approx(1.0)
    assert 0 < rules.js_divergence([5, 5], [9, 1]) < 1
    assert rules.js_divergence([0, 0], [1, 1]) is None


def section(**kw: object) -> MonitorSection:
    return MonitorSection(**kw)  # type: ignore[arg-type]


def test_quality_rules_against_bounds_and_evaluation_time() -> None:
    s = section(
        quality={
            "auc": MetricThreshold(lower=0.8, max_drop=0.05),
            "log_loss": MetricThreshold(max_drop=0.1),
        },
        slice_quality=[
            SliceThreshold({"payment_type": "Cash"}, {"accuracy": MetricThreshold(lower=0.9)})
        ],
        min_labelled=10,
        min_slice_labelled=10,
    )
    live = {
        "Overall": {"example_count": 500.0, "auc": 0.85, "log_loss": 0.45},
        "payment_type=Cash": {"example_count": 5.0, "accuracy": 0.5},
    }
    evaluated = {"Overall": {"auc": 0.95, "log_loss": 0.30}}
    checks = rules.quality_checks(s, 2, live, evaluated, canonical_slice)
    by = {(c["slice"], c["metric"], c["kind"]): c for c in checks}
    assert not by[("Overall", "auc", "lower")]["alert"]
    assert by[("Overall", "auc", "max_drop")]["alert"]  # 0.95 -> 0.85: dropped 0.10 > 0.05
    assert by[("Overall", "auc", "max_drop")]["drop"] == pytest.approx(0.10)
    assert by[("Overall", "log_loss", "max_drop")]["alert"]  # a loss that rose by 0.15
    cash = by[("payment_type=Cash", "accuracy", "lower")]
    assert not cash["alert"] and "min_slice_labelled 10" in cash["message"]  # too few rows to judge


def test_alert_kinds_are_ordered_and_distinct() -> None:
    alerts = [{"category": "quality"}, {"category": "skew"}, {"category": "skew"}]
    assert rules.alert_kinds(alerts) == ["skew", "quality"]


def _config(tmp_path: Path, monitor: dict) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "pipeline": {"name": "t", "root": str(tmp_path)},
                "ingest": {"source": "x.csv"},
                "monitor": monitor,
            }
        )
    )
    return path


def test_monitor_section_loads_with_every_key(tmp_path: Path) -> None:
    config = load(
        _config(
            tmp_path,
            {
                "window": "6h",
                "logs": "logs",
                "batch_results": False,
                "label_column": "tips",
                "label_type": "float",
                "label_values": {"big": 1},
                "min_labelled": 50,
                "quality": {"auc": {"lower": 0.7, "max_drop": 0.05}},
                "slice_quality": [
                    {"slice": {"payment_type": "Cash"}, "thresholds": {"accuracy": {"lower": 0.6}}}
                ],
                "skew": {"threshold": 0.2, "features": {"fare": 0.1}},
                "drift": {"features": {"company": 0.3}},
                "prediction_shift": 0.1,
                "bins": 20,
                "retrain_on": ["skew", "quality"],
                "retrain": {
                    "span_dir": "spans",
                    "spans": 2,
                    "min_rows": 10,
                    "overrides": ["tune.enabled=false"],
                },
                "watch_interval": 60,
            },
        ),
        sections=all_sections(),
    )
    m = config.section("monitor")
    assert m.skew.features == {"fare": 0.1} and m.retrain.spans == 2
    assert m.logs == str(tmp_path / "logs") and m.retrain.span_dir == str(tmp_path / "spans")


@pytest.mark.parametrize(
    ("monitor", "match"),
    [
        ({"windw": "1h"}, "unknown key 'monitor.windw'"),
        ({"retrain": {"every": 2}}, "unknown key 'monitor.retrain.every'"),
        ({"window": "soon"}, "monitor.window"),
        ({"retrain_on": ["rain"]}, r"monitor.retrain_on\[0\]"),
        ({"skew": {"threshold": 2}}, "monitor.skew.threshold must be in"),
        ({"quality": {"auc": {}}}, "monitor.quality.auc: expected at least one of"),
        ({"quality": {"acu": {"lower": 0.5}}}, "monitor.quality.acu: unknown metric 'acu'"),
        (
            {"quality": {"auc": {"max_drop": 0.1, "min_change_abs": -0.1}}},
            "max_drop and min_change_abs are one bound",
        ),
        (
            {"slice_quality": [{"slice": {"a": 1}, "thresholds": {"label_mean": {"max_drop": 1}}}]},
            r"slice_quality\[0\].thresholds.label_mean.max_drop: 'label_mean' is neither",
        ),
        ({"retrain": {"overrides": ["nodot"]}}, r"monitor.retrain.overrides\[0\]"),
    ],
)
def test_bad_monitor_keys_are_rejected(tmp_path: Path, monitor: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load(_config(tmp_path, monitor), sections=all_sections())


def test_js_divergence_bucket_counts_and_noise_floor_against_scipy_and_numpy() -> None:
    """Differential: our distances against scipy's, our bucketing against numpy's digitize."""
    import numpy as np
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import chi2

    from beam_pipeline.core import comparators

    rng = np.random.default_rng(7)
    for _ in range(200):
        k = int(rng.integers(1, 12))
        p = rng.integers(0, 5, k) * rng.integers(0, 2, k)  # zeros in either, both or neither
        q = rng.integers(0, 5, k)
        ours = comparators.js_divergence(p, q)
        if p.sum() == 0 or q.sum() == 0:
            assert ours is None
            continue
        assert ours == pytest.approx(jensenshannon(p, q, base=2) ** 2, abs=1e-12)

    for _ in range(50):
        edges = sorted(set(rng.normal(size=int(rng.integers(1, 10))).round(1).tolist()))
        values = np.r_[rng.normal(size=200).round(1), edges, np.nan]  # values on the edges too
        expected = np.bincount(
            np.digitize(values[~np.isnan(values)], edges), minlength=len(edges) + 1
        )
        assert comparators.bucket_counts(values, edges).tolist() == expected.tolist()

    for buckets in (2, 5, 10, 30):  # Wilson-Hilferty against the exact chi-square quantile:
        n = m = 1000  # high by 3 % at 2 buckets, 0.2 % at 30 (it errs toward fewer alarms)
        exact = chi2.ppf(0.999, buckets - 1) * (1 / n + 1 / m) / (8 * np.log(2))
        floor = comparators.js_noise_floor(buckets, n, m)
        assert exact <= floor <= exact * 1.035
