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
    left, right, top, bottom = 48, 10, 22, 34
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
            f'<text x="{left + 6 + 90 * k}" y="{top + 12}" font-size="10" '
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
) -> str:
    """Horizontal bars (a label and a value each); ``compare`` draws a second, thinner bar."""
    if not bars:
        return _empty(width)
    label_w = min(220, max(60, 7 * max(len(str(b[0])) for b in bars)))
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
            f'<text x="{label_w + 14}" y="{height - 4}" font-size="10">candidate</text>'
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
