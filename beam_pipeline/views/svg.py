"""Inline SVG charts: no plotting library, no scripts, nothing fetched.

Every chart is a self-contained ``<svg>`` string that a notebook, the report and the UI embed as
they are. Numbers are formatted once here so that the three look the same.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def fmt(x: float | int | None) -> str:
    """A number for people: 4 significant digits, thousands separated; '-' for nothing."""
    if x is None:
        return "-"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if math.isnan(x):
        return "nan"
    return f"{x:,.4g}"


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _empty(width: int) -> str:
    return f'<svg class="chart" width="{width}" height="40"><text x="4" y="20">no data</text></svg>'


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if hi <= lo:
        return [lo]
    return [lo + (hi - lo) * i / n for i in range(n + 1)]


def line_chart(
    series: dict[str, Sequence[float]],
    *,
    title: str = "",
    x_label: str = "epoch",
    width: int = 360,
    height: int = 200,
    x_start: int = 1,
) -> str:
    """One line per named series over a shared integer x axis (epochs, steps)."""
    values = [v for s in series.values() for v in s if v is not None and math.isfinite(v)]
    if not values:
        return _empty(width)
    lo, hi = min(values), max(values)
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    n = max(len(s) for s in series.values())
    left, right, top, bottom = 48, 10, 34, 34
    pw, ph = width - left - right, height - top - bottom

    def px(i: int) -> float:
        return left + (pw * i / (n - 1) if n > 1 else pw / 2)

    def py(v: float) -> float:
        return top + ph * (1 - (v - lo) / (hi - lo))

    parts = [
        f'<svg class="chart line-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(title)}">',
        f'<text x="{left}" y="14" font-size="12" font-weight="600">{_esc(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#ccc"/>',
    ]
    for t in _ticks(lo, hi):
        y = py(t)
        parts.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{fmt(t)}</text>'
        )
    step = max(1, math.ceil(n / 8))
    for i in range(0, n, step):
        parts.append(
            f'<text x="{px(i):.1f}" y="{top + ph + 14}" font-size="10" '
            f'text-anchor="middle">{i + x_start}</text>'
        )
    parts.append(
        f'<text x="{left + pw / 2}" y="{height - 4}" font-size="10" '
        f'text-anchor="middle">{_esc(x_label)}</text>'
    )
    for k, (name, s) in enumerate(series.items()):
        color = PALETTE[k % len(PALETTE)]
        pts = [
            f"{px(i):.1f},{py(v):.1f}"
            for i, v in enumerate(s)
            if v is not None and math.isfinite(v)
        ]
        if len(pts) > 1:
            parts.append(
                f'<polyline class="series" data-name="{_esc(name)}" fill="none" '
                f'stroke="{color}" stroke-width="2" points="{" ".join(pts)}"/>'
            )
        for p in pts:
            x, y = p.split(",")
            parts.append(f'<circle cx="{x}" cy="{y}" r="2.5" fill="{color}"/>')
        parts.append(
            f'<text x="{left + 6 + 110 * k}" y="{top - 6}" font-size="10" '
            f'fill="{color}">{_esc(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    bars: Sequence[tuple[str, float]],
    *,
    title: str = "",
    width: int = 420,
    bar_height: int = 16,
    compare: Sequence[float | None] | None = None,
    compare_label: str = "baseline",
    value_label: str = "",
    value_name: str = "candidate",
) -> str:
    """Horizontal bars (a label and a value each); ``compare`` draws a second, thinner bar."""
    if not bars:
        return _empty(width)
    label_w = max(60, 7 * max(len(str(b[0])) for b in bars))  # the whole label, never cut
    width = max(width, label_w + 200)
    vals = [abs(v) for _, v in bars if v is not None and math.isfinite(v)]
    vals += [abs(v) for v in (compare or []) if v is not None and math.isfinite(v)]
    hi = max(vals) if vals else 1.0
    hi = hi or 1.0
    plot_w = width - label_w - 60
    row = bar_height + (8 if compare else 4)
    height = 24 + row * len(bars) + (16 if compare else 4)
    parts = [
        f'<svg class="chart bar-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(title)}">',
        f'<text x="0" y="14" font-size="12" font-weight="600">{_esc(title)}</text>',
    ]
    for i, (label, v) in enumerate(bars):
        y = 22 + i * row
        w = plot_w * abs(v) / hi if v is not None and math.isfinite(v) else 0
        parts.append(
            f'<text x="{label_w - 4}" y="{y + bar_height - 4}" font-size="11" '
            f'text-anchor="end">{_esc(label)}</text>'
            f'<rect class="bar" data-label="{_esc(label)}" data-value="{v}" x="{label_w}" '
            f'y="{y}" width="{w:.1f}" height="{bar_height}" fill="{PALETTE[0]}">'
            f"<title>{_esc(label)}: {fmt(v)}{_esc(value_label)}</title></rect>"
            f'<text x="{label_w + w + 4:.1f}" y="{y + bar_height - 4}" '
            f'font-size="10">{fmt(v)}</text>'
        )
        if compare and i < len(compare) and compare[i] is not None:
            c = compare[i]
            cw = plot_w * abs(c) / hi if math.isfinite(c) else 0
            parts.append(
                f'<rect class="bar-compare" x="{label_w}" y="{y + bar_height + 1}" '
                f'width="{cw:.1f}" height="4" fill="{PALETTE[1]}">'
                f"<title>{_esc(compare_label)}: {fmt(c)}</title></rect>"
            )
    if compare:
        parts.append(
            f'<rect x="{label_w}" y="{height - 12}" width="10" height="8" fill="{PALETTE[0]}"/>'
            f'<text x="{label_w + 14}" y="{height - 4}" font-size="10">{_esc(value_name)}</text>'
            f'<rect x="{label_w + 80}" y="{height - 12}" width="10" height="8" '
            f'fill="{PALETTE[1]}"/><text x="{label_w + 94}" y="{height - 4}" '
            f'font-size="10">{_esc(compare_label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def histogram(
    buckets: Sequence[tuple[float, float, float]], *, width: int = 160, height: int = 48
) -> str:
    """A sparkline histogram of (low, high, count) buckets."""
    if not buckets:
        return ""
    top = max(c for _, _, c in buckets) or 1
    bw = width / len(buckets)
    parts = [
        f'<svg class="hist" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">'
    ]
    for i, (lo, hi, c) in enumerate(buckets):
        h = (height - 2) * c / top
        parts.append(
            f'<rect x="{i * bw:.1f}" y="{height - h:.1f}" width="{max(bw - 1, 1):.1f}" '
            f'height="{h:.1f}" fill="{PALETTE[0]}"><title>[{fmt(lo)}, {fmt(hi)}): '
            f"{fmt(c)}</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)


def xy_chart(
    series: dict[str, Sequence[tuple[float, float]]],
    *,
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    width: int = 300,
    height: int = 260,
    diagonal: bool = False,
    markers: bool = False,
    css: str = "",
    domain: tuple[float, float, float, float] = (0.0, 1.0, 0.0, 1.0),
) -> str:
    """Lines of (x, y) points on fixed axes (``domain``: x0, x1, y0, y1; rates by default),
    with ticks, axis names, a legend and the y = x diagonal where asked (ROC, calibration)."""
    x0, x1, y0, y1 = domain
    left, right, top, bottom = 44, 10, 34, 36
    pw, ph = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + pw * (x - x0) / ((x1 - x0) or 1)

    def py(y: float) -> float:
        return top + ph * (1 - (y - y0) / ((y1 - y0) or 1))

    parts = [
        f'<svg class="chart xy-chart {_esc(css)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{_esc(title)}">',
        f'<text x="4" y="13" font-size="12" font-weight="600">{_esc(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#ccc"/>',
    ]
    for t in _ticks(y0, y1):
        parts.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#eee"/>'
            f'<text x="{left - 4}" y="{py(t) + 4:.1f}" font-size="10" '
            f'text-anchor="end">{fmt(t)}</text>'
        )
    for t in _ticks(x0, x1):
        parts.append(
            f'<text x="{px(t):.1f}" y="{top + ph + 13}" font-size="10" '
            f'text-anchor="middle">{fmt(t)}</text>'
        )
    parts.append(
        f'<text x="{left + pw / 2}" y="{height - 4}" font-size="10" '
        f'text-anchor="middle">{_esc(x_label)}</text>'
        f'<text x="10" y="{top + ph / 2}" font-size="10" text-anchor="middle" '
        f'transform="rotate(-90 10 {top + ph / 2})">{_esc(y_label)}</text>'
    )
    if diagonal:
        parts.append(
            f'<line class="diagonal" x1="{px(x0):.1f}" y1="{py(y0):.1f}" x2="{px(x1):.1f}" '
            f'y2="{py(y1):.1f}" stroke="#bbb" stroke-dasharray="4 3"/>'
        )
    for k, (name, points) in enumerate(series.items()):
        color = PALETTE[k % len(PALETTE)]
        pts = [
            (px(x), py(y))
            for x, y in points
            if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)
        ]
        if len(pts) > 1:
            parts.append(
                f'<polyline class="series" data-name="{_esc(name)}" fill="none" '
                f'stroke="{color}" stroke-width="2" '
                f'points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in pts)}"/>'
            )
        if markers or len(pts) == 1:
            parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>' for x, y in pts]
        parts.append(
            f'<rect x="{left + 4 + 90 * k}" y="21" width="10" height="8" fill="{color}"/>'
            f'<text x="{left + 18 + 90 * k}" y="29" font-size="10">{_esc(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def grouped_histogram(
    buckets: Sequence[tuple[float, float]],
    series: dict[str, Sequence[float]],
    *,
    title: str = "",
    y_label: str = "share",
    width: int = 420,
    height: int = 200,
    css: str = "",
    percent: bool = True,
) -> str:
    """Bars per bucket, one per series side by side (train and eval, candidate and baseline),
    with a y axis, bucket bounds under the x axis and each bar's range and value on hover."""
    if not buckets or not series:
        return _empty(width)
    left, right, top, bottom = 44, 8, 30, 34
    pw, ph = width - left - right, height - top - bottom
    hi = max((v for s in series.values() for v in s if v is not None), default=0) or 1.0
    n, m = len(buckets), len(series)
    slot = pw / n
    bw = max(1.0, (slot - 2) / m)

    def label(v: float) -> str:
        return fmt(v) if math.isfinite(v) else ("-∞" if v < 0 else "∞")

    parts = [
        f'<svg class="chart histogram {_esc(css)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{_esc(title)}">',
        f'<text x="4" y="13" font-size="12" font-weight="600">{_esc(title)}</text>',
    ]
    for t in _ticks(0, hi, 3):
        y = top + ph * (1 - t / hi)
        text = f"{t:.0%}" if percent else fmt(t)
        parts.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{text}</text>'
        )
    parts.append(
        f'<text x="10" y="{top + ph / 2}" font-size="10" text-anchor="middle" '
        f'transform="rotate(-90 10 {top + ph / 2})">{_esc(y_label)}</text>'
        f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" stroke="#888"/>'
    )
    for k, (name, values) in enumerate(series.items()):
        color = PALETTE[k % len(PALETTE)]
        for i, v in enumerate(values):
            if v is None:
                continue
            h = ph * v / hi
            lo_b, hi_b = buckets[i]
            value = f"{v:.1%}" if percent else fmt(v)
            parts.append(
                f'<rect class="bar" data-series="{_esc(name)}" '
                f'x="{left + i * slot + 1 + k * bw:.1f}" y="{top + ph - h:.1f}" '
                f'width="{bw:.1f}" height="{h:.1f}" fill="{color}">'
                f"<title>{_esc(name)} [{label(lo_b)}, {label(hi_b)}): {value}</title></rect>"
            )
        parts.append(
            f'<rect x="{left + 4 + 70 * k}" y="18" width="10" height="8" fill="{color}"/>'
            f'<text x="{left + 18 + 70 * k}" y="26" font-size="10">{_esc(name)}</text>'
        )
    step = max(1, math.ceil(n / 4))
    for i in range(0, n + 1, step):
        bound = buckets[i][0] if i < n else buckets[-1][1]
        x = left + i * slot
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + ph}" y2="{top + ph + 3}" stroke="#888"/>'
            f'<text x="{x:.1f}" y="{top + ph + 14}" font-size="10" '
            f'text-anchor="middle">{label(bound)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
