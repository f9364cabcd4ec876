"""The evaluation view on metrics.json documents: natural slice order, the metric selector and
minimum-examples filter (CSS rules, no script), whole labels, regression residuals. Fast."""

from __future__ import annotations

import re

import numpy as np

from beam_pipeline.evaluation.metrics import MetricsAccumulator
from beam_pipeline.views.evaluation import evaluation_view, slice_order


def test_natural_order_of_slice_values() -> None:
    keys = ["fare=[10, 20)", "fare=[-inf, 5)", "fare=[5, 10)", "fare=[20, inf)"]
    assert sorted(keys, key=slice_order) == [keys[1], keys[2], keys[0], keys[3]]
    hours = [f"h={h}" for h in (10, 2, 1, 23)]
    assert sorted(hours, key=slice_order) == ["h=1", "h=2", "h=10", "h=23"]
    assert sorted(["c=b", "c=10", "c=A"], key=slice_order) == ["c=10", "c=A", "c=b"]


def regression_report() -> dict[str, object]:
    rng = np.random.default_rng(0)
    y = rng.normal(50, 10, 3000)
    keys = np.where(y > 50, "a" * 60, "b")  # a long label
    acc = MetricsAccumulator("regression")
    acc.add(y, y + rng.normal(0, 2, 3000), [[f"city={k}" for k in keys]])
    acc.add(y[:5], y[:5], [["city=tiny"] * 5])
    result = acc.result()
    return {
        "task": "regression",
        "metrics": ["rmse", "mae"],
        "model": {"version": 1},
        "baseline": None,
        "overall": {"candidate": result["Overall"], "baseline": None, "difference": None},
        "slices": {k: {"candidate": v} for k, v in result.items() if k != "Overall"},
        "plots": {"candidate": acc.plots()},
    }


def test_selector_filter_labels_and_residuals() -> None:
    html = evaluation_view(regression_report())
    uid = re.search(r'name="(ev\d+)-m"', html).group(1)  # type: ignore[union-attr]
    picks = re.findall(rf'name="{uid}-m" id="[^"]+" class="pick-metric" value="(\w+)"', html)
    assert picks[:2] == ["rmse", "mae"] and "label_mean" in picks
    assert f"#{uid}-m-1:checked ~ .ev-body .mcol:not(.m1) {{ display: none; }}" in html
    assert f"#{uid}-n-10:checked ~ .ev-body tr.lt10 {{ display: none; }}" in html
    assert re.search(
        r'<tr class="lt10 lt100 lt1000" data-examples="5"><td class="slice">tiny', html
    )
    assert f'<td class="slice">{"a" * 60}</td>' in html  # whole, not cut
    assert '<svg class="chart histogram ' in html and "residuals (prediction − label)" in html
    assert "ROC" not in html and "<script" not in html
