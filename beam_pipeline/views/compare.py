"""Model versions side by side: metrics as a table and as charts, the values that differ
highlighted (the best of each metric marked), hyperparameters, data and review, the versions'
ROC or residual plots on shared axes, and the main metric slice by slice. One version alone is
shown as it is, with a hint to pick another."""

from __future__ import annotations

import math
from typing import Any

from beam_pipeline.views import svg
from beam_pipeline.views.evaluation import (
    _direction,
    residuals_chart,
    roc_pr_charts,
    slice_order,
    slice_pairs,
    slice_spec,
)
from beam_pipeline.views.runs import label_tags
from beam_pipeline.views.svg import fmt

CSS = """
.bp-view table.compare td.best { color: #1b7f2a; font-weight: 600; }
.bp-view table.compare tr.differs td { background: #fff8e1; }
.bp-view table.compare tr.differs td:first-child { border-left: 3px solid #f0a500; }
"""
HIDDEN = {"example_count", "label_mean", "prediction_mean", "loss"}


def esc(value: Any) -> str:
    import html

    return html.escape(str(value), quote=True)


def _cell(value: Any) -> str:
    if isinstance(value, float | int) and not isinstance(value, bool):
        return fmt(value)
    return esc("-" if value is None else value)


def _row(name: str, values: list[Any], *, metric: bool = False, direction_of: str = "") -> str:
    """A row; ``differs`` when the versions disagree; for a metric the best cell is marked."""
    shown = [_cell(v) for v in values]
    differs = len(set(shown)) > 1
    best: set[int] = set()
    numbers = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
    if metric and differs and len(numbers) > 1:
        sign = _direction(direction_of or name)
        if sign:
            target = max(numbers) if sign > 0 else min(numbers)
            best = {i for i, v in enumerate(values) if v == target}
    cells = "".join(
        f'<td class="{"best" if i in best else ""}">{c}</td>' for i, c in enumerate(shown)
    )
    return f'<tr class="{"differs" if differs else "same"}"><td>{esc(name)}</td>{cells}</tr>'


def compare_models(
    records: list[Any],
    evaluations: dict[int, dict[str, Any] | None],
    hyperparameters: dict[int, dict[str, Any]],
    labels: dict[int, list[str]] | None = None,
    model_href: str = "",
) -> str:
    if not records:
        return "<p class='muted'>no versions</p>"
    labels = labels or {}

    def metrics_of(r: Any) -> dict[str, Any]:
        return dict(r.eval_metrics or r.train_metrics)

    keys: list[str] = []
    for r in records:
        keys += [k for k in metrics_of(r) if k not in keys]
    names = [k for k in keys if k not in HIDDEN] + [k for k in keys if k in HIDDEN]
    head = "".join(
        "<th>"
        + (
            f'<a href="{esc(model_href.format(version=r.version))}">v{r.version}</a>'
            if model_href
            else f"v{r.version}"
        )  # fmt: skip
        + label_tags(labels, r.version)
        + "</th>"
        for r in records
    )
    rows = [_row(k, [metrics_of(r).get(k) for r in records], metric=True) for k in names]
    rows += [
        _row("blessed", [{True: "yes", False: "no", None: "-"}[r.blessed] for r in records]),
        _row("review", [r.approval or "-" for r in records]),
        _row("pushed", ["yes" if r.pushed else "no" for r in records]),
        _row("data", [(r.data_fingerprint or "-")[:12] for r in records]),
        _row("span", [r.span for r in records]),
        _row("run", [r.run_id for r in records]),
    ]
    hp_keys = sorted({k for r in records for k in hyperparameters.get(r.version, {})})
    rows += [
        _row(f"hp: {k}", [hyperparameters.get(r.version, {}).get(k) for r in records])
        for k in hp_keys
    ]
    parts = [f"<style>{CSS}</style>"]
    if len(records) == 1:
        parts.append("<p class='muted'>one version: tick another on the Models page to compare</p>")
    parts.append(
        f"<table class='bp compare'><tr><th></th>{head}</tr>{''.join(rows)}</table>"
        "<p class='muted'>highlighted rows differ between the versions; the best value of a "
        "metric is green</p>"
    )
    charts = [
        svg.bar_chart(
            [
                (f"v{r.version}", metrics_of(r)[k])
                for r in records
                if metrics_of(r).get(k) is not None
            ],
            title=k,
            width=260,
            value_name="",
        )
        for k in names
        if k not in HIDDEN and any(isinstance(metrics_of(r).get(k), int | float) for r in records)
    ]
    parts.append("<h3>Metrics</h3><div class='charts compare-charts'>" + "".join(charts) + "</div>")
    parts.append(_plots(records, evaluations))
    parts.append(_slices(records, evaluations))
    return "".join(parts)


def _plots(records: list[Any], evaluations: dict[int, dict[str, Any] | None]) -> str:
    """Each version's own (candidate) ROC curve, or its residuals, on one chart."""
    cands = {
        f"v{r.version}": ((evaluations.get(r.version) or {}).get("plots") or {}).get("candidate")
        for r in records
    }
    cands = {k: v for k, v in cands.items() if v}
    if not cands:
        return ""
    if all(v.get("kind") == "regression" for v in cands.values()):
        return "<h3>Residuals</h3><div class='charts'>" + residuals_chart(cands) + "</div>"
    classes = max(len(v.get("classes") or [{}]) for v in cands.values())
    charts = []
    for c in range(classes):  # one ROC and one PR chart per class (one-vs-rest when several)
        suffix = f" (class {c} vs rest)" if classes > 1 else ""
        curves = {
            name: (v.get("classes") or [{}])[c]
            for name, v in cands.items()
            if c < len(v.get("classes") or [{}])
        }
        charts.append("".join(roc_pr_charts(curves, suffix)))
    return "<h3>Curves</h3><div class='charts'>" + "".join(charts) + "</div>"


def _slices(records: list[Any], evaluations: dict[int, dict[str, Any] | None]) -> str:
    """The main metric of each version's evaluation, slice by slice (natural order)."""
    slice_keys: list[str] = []
    main = ""
    for r in records:
        ev = evaluations.get(r.version) or {}
        slice_keys += [k for k in ev.get("slices") or {} if k not in slice_keys]
        cand = (ev.get("overall") or {}).get("candidate") or {}
        main = main or next((m for m in ("auc", "accuracy", "rmse") if m in cand), "")
    if not slice_keys or not main:
        return ""
    slice_keys.sort(key=lambda k: (slice_spec(k), slice_order(k)))
    rows = []
    for k in slice_keys:
        values = [
            (
                (((evaluations.get(r.version) or {}).get("slices") or {}).get(k) or {}).get(
                    "candidate"
                )
                or {}
            ).get(main)  # fmt: skip
            for r in records
        ]
        if all(v is None for v in values):
            continue  # undefined for every version (no positives in the slice)
        label = ", ".join(f"{name}={value}" for name, value in slice_pairs(k))
        rows.append(_row(label or k, values, metric=True, direction_of=main))
    head = "".join(f"<th>v{r.version}</th>" for r in records)
    return (
        f"<h3>{esc(main)} by slice</h3><table class='bp compare compare-slices'>"
        f"<tr><th>slice</th>{head}</tr>{''.join(rows)}</table>"
    )
