"""The plot data evaluate writes (ROC, PR, calibration, confusion; residuals), checked against
direct numpy computations on the same predictions. Fast."""

from __future__ import annotations

import numpy as np

from beam_pipeline.evaluation.metrics import RESIDUAL_EDGES, MetricsAccumulator
from tests.evaluation.references import exact_auc


def binary_data(n: int = 5000, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.float64)
    p = np.clip(0.3 * y + rng.random(n) * 0.7, 0, 1)
    return y, p


def test_binary_curves_and_confusion() -> None:
    y, p = binary_data()
    acc = MetricsAccumulator("binary", buckets=10_000)
    acc.add(y[:2000], p[:2000], [["a"] * 2000])
    acc.add(y[2000:], p[2000:], [["b"] * 3000])
    plots = acc.plots()
    [curves] = plots["classes"]
    t = np.array(curves["threshold"])
    assert len(t) == 100 and curves["positives"] == int(y.sum())
    for j in (0, 17, 50, 83):  # every point is the rate at its threshold, computed directly
        pred = p >= t[j]
        tp, fp = np.sum(pred & (y == 1)), np.sum(pred & (y == 0))
        assert curves["tpr"][j] == round(tp / y.sum(), 6)
        assert curves["fpr"][j] == round(fp / (len(y) - y.sum()), 6)
        assert curves["precision"][j] == round(tp / (tp + fp), 6)
    fpr, tpr = np.array(curves["fpr"] + [0.0]), np.array(curves["tpr"] + [0.0])
    area = float(np.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2))
    assert abs(area - exact_auc(y, p)) < 0.01  # 100 thresholds: the trapezoids' area
    bins = plots["classes"][0]["calibration"]
    assert sum(b["count"] for b in bins) == len(y)
    inside = (p >= 0.7) & (p < 0.8)
    assert abs(bins[7]["positive_rate"] - y[inside].mean()) < 1e-9
    assert abs(bins[7]["mean_prediction"] - p[inside].mean()) < 1e-3  # fine buckets' midpoints
    pred = (p >= 0.5).astype(int)
    truth = y.astype(int)
    expected = [[int(np.sum((truth == a) & (pred == b))) for b in (0, 1)] for a in (0, 1)]
    assert plots["confusion"] == expected
    assert acc.plots("a")["confusion"] != expected and acc.plots("nope") == {}


def test_multiclass_one_curve_per_class() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600).astype(np.float64)
    p = rng.dirichlet([1, 1, 1], 600)
    acc = MetricsAccumulator("multiclass", classes=3, buckets=1000)
    acc.add(y, p)
    plots = acc.plots()
    assert len(plots["classes"]) == 3 and np.array(plots["confusion"]).sum() == 600
    assert [c["positives"] for c in plots["classes"]] == [int(np.sum(y == k)) for k in range(3)]
    for k, curves in enumerate(plots["classes"]):  # class k vs rest, on p[:, k]
        t = np.array(curves["threshold"])
        for j in (0, 25, 60, 90):
            pred, truth = p[:, k] >= t[j], y == k
            assert curves["tpr"][j] == round(np.sum(pred & truth) / truth.sum(), 6)
            assert curves["fpr"][j] == round(np.sum(pred & ~truth) / (~truth).sum(), 6)


def test_regression_residuals_merge() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(100, 30, 4000)
    pred = y + rng.normal(0, 5, 4000)
    a, b = MetricsAccumulator("regression"), MetricsAccumulator("regression")
    a.add(y[:1000], pred[:1000])
    b.add(y[1000:], pred[1000:])
    res = a.merge(b).plots()["residuals"]
    assert sum(res["counts"]) == 4000 and res["edges"] == RESIDUAL_EDGES.tolist()
    err = pred - y
    cells = np.searchsorted(RESIDUAL_EDGES, err, side="right")
    assert res["counts"] == np.bincount(cells, minlength=len(RESIDUAL_EDGES) + 1).tolist()
