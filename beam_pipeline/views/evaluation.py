"""The evaluation view (a ModelEvaluation's ``metrics.json``): every metric, candidate against
baseline, the Overall plots (ROC, precision-recall, calibration and confusion matrix for
classifiers; residuals for regression), and every slicing as a table with a bar per slice.

No scripts (the report and notebooks must work without them): the metric selector and the
minimum-examples filter are radio buttons whose ``:checked`` state CSS rules of this view turn
into shown and hidden columns and rows. Slices are listed in their natural order: numeric buckets
by their lower bound, numbers by value, text alphabetically; labels are shown whole.
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Any

from beam_pipeline.views import svg
from beam_pipeline.views.svg import fmt

MIN_EXAMPLES = (10, 100, 1000)  # the filter's choices (besides "all"), where a slice is smaller
_ids = itertools.count(1)
_PAIR = re.compile(r",(?=[A-Za-z_][\w.]*=)")
_BUCKET = re.compile(r"^\[\s*(-?inf|[-+\d.eE]+)\s*,\s*(-?inf|[-+\d.eE]+)\s*\)$")

CSS = """
.bp-view .ev-pick { margin: 4px 0; font-size: 12px; }
.bp-view .ev-pick label { margin-right: 10px; cursor: pointer; }
.bp-view .ev-pick input { margin: 0 2px 0 0; vertical-align: middle; }
.bp-view table.slices td.slice { text-align: left; white-space: normal; max-width: 420px; }
.bp-view table.slices td.bar { width: 260px; min-width: 200px; }
.bp-view .hbar { height: 11px; background: #1f77b4; }
.bp-view .hbar.base { height: 4px; background: #ff7f0e; margin-top: 1px; }
.bp-view .delta { font-size: 11px; display: block; }
.bp-view .better { color: #1b7f2a; } .bp-view .worse { color: #b00020; }
.bp-view table.confusion td { text-align: center; min-width: 56px; }
.bp-view .legend span { margin-right: 12px; font-size: 11px; }
.bp-view .legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
"""


def esc(value: Any) -> str:
    import html

    return html.escape(str(value), quote=True)


# ---------------------------------------------------------------------------------------------
# Slice keys


def slice_pairs(key: str) -> list[tuple[str, str]]:
    """``"a=x,b=[1, 2)"`` -> ``[("a", "x"), ("b", "[1, 2)")]`` (bucket labels hold commas)."""
    return [tuple(part.split("=", 1)) for part in _PAIR.split(key) if "=" in part]  # type: ignore[misc]


def slice_spec(key: str) -> str:
    return " × ".join(name for name, _ in slice_pairs(key)) or key


def slice_label(key: str) -> str:
    """The whole label: the value for one feature, ``a=x, b=y`` for a cross."""
    pairs = slice_pairs(key)
    if len(pairs) == 1:
        return pairs[0][1]
    return ", ".join(f"{k}={v}" for k, v in pairs) or key


def value_order(value: str) -> tuple[int, float, str]:
    """Natural order of one slice value: buckets by lower bound, numbers by value, then text."""
    m = _BUCKET.match(value.strip())
    if m:
        return (0, float(m.group(1)), value)
    try:
        number = float(value)
    except ValueError:
        return (1, 0.0, value.lower())
    return (0, number, value) if math.isfinite(number) else (1, 0.0, value.lower())


def slice_order(key: str) -> list[tuple[int, float, str]]:
    return [value_order(v) for _, v in slice_pairs(key)]


# ---------------------------------------------------------------------------------------------
# The view


def _direction(metric: str) -> int:
    """+1 when higher is better, -1 when lower is, 0 when unknown."""
    from beam_pipeline.core.errors import ConfigError
    from beam_pipeline.evaluation.direction import metric_direction

    try:
        return 1 if metric_direction(metric) == "max" else -1
    except ConfigError:
        return 0


def delta(metric: str, diff: float | None) -> str:
    """A difference, green when it is an improvement, red when it is worse."""
    if diff is None or not isinstance(diff, int | float):
        return ""
    sign = _direction(metric)
    cls = "" if not sign or diff == 0 else ("better" if diff * sign > 0 else "worse")
    return f'<span class="delta {cls}">{"+" if diff > 0 else ""}{fmt(diff)}</span>'


def metric_names(report: dict[str, Any]) -> list[str]:
    """Every metric of the report: the selected ones first, then the rest (example_count last)."""
    cand = ((report.get("overall") or {}).get("candidate")) or {}
    names = [m for m in report.get("metrics") or [] if m in cand]
    names += sorted(m for m in cand if m not in names and m != "example_count")
    return names


def evaluation_view(report: dict[str, Any], title: str = "Evaluation") -> str:
    """Overall metrics and plots, then every slicing, candidate against baseline."""
    uid = f"ev{next(_ids)}"
    overall = report.get("overall") or {}
    cand = overall.get("candidate") or {}
    base = overall.get("baseline") or {}
    diff = overall.get("difference") or {}
    metrics = metric_names(report)
    model = report.get("model") or {}
    baseline = report.get("baseline") or {}
    parts = [
        f"<style>{CSS}</style>",
        f"<p>task: <b>{esc(report.get('task'))}</b> · label {esc(report.get('label_key'))} · "
        f"split {esc(report.get('split'))} · model v{esc(model.get('version'))}"
        + (
            f" vs baseline v{esc(baseline.get('version'))}"
            if baseline
            else " (no baseline: absolute bounds only)"
        )
        + "</p>",
    ]
    rows = []
    for m in [*metrics, "example_count"]:
        if m not in cand:
            continue
        cells = f"<td>{esc(m)}</td><td>{fmt(cand.get(m))}</td>"
        if base:
            cells += f"<td>{fmt(base.get(m))}</td><td>{delta(m, diff.get(m))}</td>"
        rows.append(f"<tr>{cells}</tr>")
    head = "<th>metric</th><th>candidate</th>" + (
        "<th>baseline</th><th>difference</th>" if base else ""
    )
    parts.append(
        f'<h4>Overall</h4><table class="bp overall"><tr>{head}</tr>{"".join(rows)}</table>'
    )
    parts.append(plots_view(report))
    slices = report.get("slices") or {}
    if slices:
        parts.append(slices_view(uid, slices, metrics, bool(base), baseline.get("version")))
    return (f"<h3>{esc(title)}</h3>" if title else "") + "".join(parts)


def slices_view(
    uid: str,
    slices: dict[str, Any],
    metrics: list[str],
    has_baseline: bool,
    baseline_version: Any,
) -> str:
    """The metric selector, the minimum-examples filter and one table per slicing."""
    groups: dict[str, list[str]] = {}
    for key in slices:
        groups.setdefault(slice_spec(key), []).append(key)
    counts = [int(((v.get("candidate") or {}).get("example_count")) or 0) for v in slices.values()]
    mins = [t for t in MIN_EXAMPLES if any(c < t for c in counts)]
    shown = metrics or ["example_count"]
    pick = ["<b>metric</b> "]
    for i, m in enumerate(shown):
        pick.append(
            f'<input type="radio" name="{uid}-m" id="{uid}-m-{i}" class="pick-metric" '
            f'value="{esc(m)}"{" checked" if i == 0 else ""}>'
            f'<label for="{uid}-m-{i}">{esc(m)}</label>'
        )
    pick.append("<br><b>min. examples</b> ")
    pick.append(
        f'<input type="radio" name="{uid}-n" id="{uid}-n-0" class="pick-min" value="0" checked>'
        f'<label for="{uid}-n-0">all</label>'
    )
    for t in mins:
        pick.append(
            f'<input type="radio" name="{uid}-n" id="{uid}-n-{t}" class="pick-min" '
            f'value="{t}"><label for="{uid}-n-{t}">≥ {fmt(t)}</label>'
        )
    # The radios are siblings before .ev-body, so that these rules reach into it.
    rules = [
        f"#{uid}-m-{i}:checked ~ .ev-body .mcol:not(.m{i}) {{ display: none; }}"
        for i in range(len(shown))
    ]
    rules += [f"#{uid}-n-{t}:checked ~ .ev-body tr.lt{t} {{ display: none; }}" for t in mins]
    tables = []
    for spec, keys in groups.items():
        keys.sort(key=slice_order)
        tables.append(
            f"<h4>Slices by {esc(spec)}</h4>"
            + slice_table(keys, slices, shown, mins, has_baseline, baseline_version)
        )
    legend = (
        "<p class='legend'><span><i style='background:#1f77b4'></i>candidate</span>"
        f"<span><i style='background:#ff7f0e'></i>baseline v{esc(baseline_version)}</span></p>"
        if has_baseline
        else ""
    )
    return (
        f"<style>{' '.join(rules)}</style>"
        f"<div class='ev-slices ev-pick' id='{uid}'>{''.join(pick)}"
        f"<div class='ev-body'>{legend}{''.join(tables)}</div></div>"
    )


def slice_table(
    keys: list[str],
    slices: dict[str, Any],
    metrics: list[str],
    mins: list[int],
    has_baseline: bool,
    baseline_version: Any,
) -> str:
    """Rows: slices (natural order); columns: examples, every metric (with its difference to
    the baseline), and the selected metric's bar."""
    top: dict[str, float] = {}
    for m in metrics:
        values = [
            abs(v)
            for k in keys
            for side in ("candidate", "baseline")
            for v in [((slices[k].get(side) or {}).get(m))]
            if isinstance(v, int | float) and math.isfinite(v)
        ]
        top[m] = max(values, default=0.0) or 1.0
    head = "<th>slice</th><th>examples</th>" + "".join(f"<th>{esc(m)}</th>" for m in metrics)
    head += "".join(f'<th class="mcol m{i} bar">{esc(m)}</th>' for i, m in enumerate(metrics))
    rows = []
    for k in keys:
        c = slices[k].get("candidate") or {}
        b = slices[k].get("baseline") or {}
        d = slices[k].get("difference") or {}
        n = int(c.get("example_count") or 0)
        cls = " ".join(f"lt{t}" for t in mins if n < t)
        cells = f'<td class="slice">{esc(slice_label(k))}</td><td>{fmt(n)}</td>'
        for m in metrics:
            cells += f"<td>{fmt(c.get(m))}{delta(m, d.get(m)) if has_baseline else ''}</td>"
        for i, m in enumerate(metrics):
            cells += f'<td class="mcol m{i} bar">{_bar(c.get(m), top[m], m)}'
            if has_baseline:
                cells += _bar(b.get(m), top[m], f"{m} baseline v{baseline_version}", base=True)
            cells += "</td>"
        rows.append(f'<tr class="{cls}" data-examples="{n}">{cells}</tr>')
    return (
        f'<div class="scroll"><table class="bp slices"><tr>{head}</tr>{"".join(rows)}</table></div>'
    )


def _bar(value: Any, top: float, what: str, base: bool = False) -> str:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return ""
    width = 100.0 * abs(value) / top
    return (
        f'<div class="hbar{" base" if base else ""}" style="width: {width:.1f}%" '
        f'title="{esc(what)}: {fmt(value)}" data-value="{value}"></div>'
    )


# ---------------------------------------------------------------------------------------------
# Plots


def plots_view(report: dict[str, Any]) -> str:
    """ROC, PR, calibration and confusion (classifiers) or residuals (regression), candidate
    against baseline; a line saying why when the report has no plot data (written before
    evaluate recorded it)."""
    plots = report.get("plots") or {}
    cand = plots.get("candidate") or {}
    base = plots.get("baseline") or {}
    if not cand:
        return "<p class='muted'>no plot data in this evaluation (evaluate it again to get it)</p>"
    names = {"candidate": cand, **({"baseline": base} if base else {})}
    if cand.get("kind") == "regression":
        return "<h4>Residuals</h4><div class='charts plots'>" + residuals_chart(names) + "</div>"
    charts = []
    classes = len(cand.get("classes") or [])
    for c in range(classes):
        suffix = f" (class {c} vs rest)" if classes > 1 else ""
        curves = {k: (v.get("classes") or [{}])[c] for k, v in names.items()}
        cal = {
            k: [
                (b["mean_prediction"], b["positive_rate"])
                for b in v.get("calibration") or []
                if b.get("mean_prediction") is not None
            ]
            for k, v in curves.items()
        }
        charts.extend(roc_pr_charts(curves, suffix))
        charts.append(
            svg.xy_chart(
                cal,
                title="calibration" + suffix,
                x_label="mean prediction",
                y_label="observed positive rate",
                diagonal=True,
                markers=True,
                css="calibration",
            )  # fmt: skip
        )
    confusion = "".join(
        confusion_table(v.get("confusion") or [], f"{k} (threshold {fmt(v.get('threshold'))})")
        for k, v in names.items()
    )
    return (
        "<h4>Plots</h4><div class='charts plots'>"
        + "".join(charts)
        + f"</div><h4>Confusion matrix</h4><div class='charts'>{confusion}</div>"
    )


def roc_pr_charts(curves: dict[str, dict[str, Any]], suffix: str = "") -> list[str]:
    """The ROC and the precision-recall chart of one class, a line per named curve (its
    ``fpr``, ``tpr`` and ``precision`` lists; points with a missing value left out)."""
    roc = {k: _points(v.get("fpr"), v.get("tpr")) for k, v in curves.items()}
    pr = {k: _points(v.get("tpr"), v.get("precision")) for k, v in curves.items()}
    return [
        svg.xy_chart(
            roc,
            title="ROC" + suffix,
            x_label="false positive rate",
            y_label="true positive rate",
            diagonal=True,
            css="roc",
        ),
        svg.xy_chart(
            pr, title="precision-recall" + suffix, x_label="recall", y_label="precision", css="pr"
        ),
    ]


def _points(xs: Any, ys: Any) -> list[tuple[float, float]]:
    return [
        (x, y) for x, y in zip(xs or [], ys or [], strict=False) if x is not None and y is not None
    ]


def confusion_table(matrix: list[list[int]], title: str) -> str:
    """Counts with their share of the true class (row), shaded by that share."""
    if not matrix:
        return ""
    head = "".join(f"<th>pred {j}</th>" for j in range(len(matrix)))
    rows = []
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        cells = "".join(
            f'<td style="background: rgba(31,119,180,{0.08 + 0.6 * v / total:.2f})" '
            f'title="true {i}, predicted {j}">{fmt(int(v))}<br>'
            f"<span class='muted'>{v / total:.1%}</span></td>"
            for j, v in enumerate(row)
        )
        rows.append(f"<tr><th>true {i}</th>{cells}</tr>")
    return (
        f"<div><b>{esc(title)}</b><table class='bp confusion'><tr><th></th>{head}</tr>"
        + "".join(rows)
        + "</table></div>"
    )


def residuals_chart(plots: dict[str, dict[str, Any]]) -> str:
    """Share of examples per residual bucket (prediction - label), one series per model."""
    first = next(iter(plots.values()))["residuals"]
    edges = first["edges"]
    series = {k: v["residuals"]["counts"] for k, v in plots.items()}
    used = [i for i in range(len(edges) + 1) if any(s[i] for s in series.values())]
    if not used:
        return svg.grouped_histogram([], {}, title="residuals")
    lo, hi = min(used), max(used)
    bounds = [-math.inf, *edges, math.inf]
    buckets = [(bounds[i], bounds[i + 1]) for i in range(lo, hi + 1)]
    shares = {k: [c / (sum(s) or 1) for c in s[lo : hi + 1]] for k, s in series.items()}
    return svg.grouped_histogram(
        buckets, shares, title="residuals (prediction − label)", y_label="share of examples"
    )
