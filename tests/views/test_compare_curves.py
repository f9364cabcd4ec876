"""The compare page draws every class's curves of a multiclass model, not class 0's alone."""

from __future__ import annotations

from types import SimpleNamespace

from beam_pipeline.views.compare import _plots


def _curve(shift: float) -> dict[str, list[float]]:
    return {"fpr": [0.0, shift, 1.0], "tpr": [0.0, 0.9, 1.0], "precision": [1.0, 0.8, 0.5]}


def test_every_class_gets_its_roc_and_pr_chart() -> None:
    evaluation = {"plots": {"candidate": {"classes": [_curve(0.1), _curve(0.2), _curve(0.3)]}}}
    html = _plots([SimpleNamespace(version=1)], {1: evaluation})
    assert html.count('class="chart xy-chart roc"') == 3
    assert html.count('class="chart xy-chart pr"') == 3
    for c in range(3):
        assert f"ROC (class {c} vs rest)" in html


def test_a_binary_model_has_one_pair_without_a_class_suffix() -> None:
    evaluation = {"plots": {"candidate": {"classes": [_curve(0.1)]}}}
    html = _plots([SimpleNamespace(version=1), SimpleNamespace(version=2)], {1: evaluation})
    assert html.count('class="chart xy-chart roc"') == 1 and "vs rest" not in html
