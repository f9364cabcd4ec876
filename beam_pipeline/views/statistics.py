"""Statistics of every split side by side: one row per feature and split, one chart per feature
with every split on it (train and eval as neighbouring bars), with axes and bucket ranges.

TFDV computes each split's standard histogram on that split's own range, so the buckets of train
and eval differ; to draw them on one axis both are re-binned onto shared equal-width buckets
over the union of the ranges, each count spread evenly over the part of its bucket that a shared
bucket covers (exact when the buckets coincide). Bars are shares of the split's examples, so
splits of different sizes compare.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from beam_pipeline.views import svg
from beam_pipeline.views.svg import fmt

BUCKETS = 10
TOP_VALUES = 8


def esc(value: Any) -> str:
    import html

    return html.escape(str(value), quote=True)


def _name(f: Any) -> str:
    return f.path.step[-1] if f.path.step else f.name


def _standard(num_stats: Any) -> list[tuple[float, float, float]]:
    for h in num_stats.histograms:
        if h.type == h.STANDARD and h.buckets:
            return [(b.low_value, b.high_value, b.sample_count) for b in h.buckets]
    return []


def rebin(buckets: list[tuple[float, float, float]], edges: np.ndarray) -> np.ndarray:
    """Counts of (low, high, count) buckets spread onto ``edges`` by overlap."""
    out = np.zeros(len(edges) - 1)
    for lo, hi, count in buckets:
        if hi <= lo:  # a point mass: all in the bucket that holds it
            i = min(max(int(np.searchsorted(edges, lo, side="right")) - 1, 0), len(out) - 1)
            out[i] += count
            continue
        overlap = np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0, None)
        out += count * overlap / (hi - lo)
    return out


def numeric_chart(feature: str, per_split: dict[str, Any]) -> str:
    hists = {s: _standard(n) for s, n in per_split.items()}
    hists = {s: h for s, h in hists.items() if h}
    if not hists:
        return ""
    lo = min(b[0] for h in hists.values() for b in h)
    hi = max(b[1] for h in hists.values() for b in h)
    if not np.isfinite(lo) or not np.isfinite(hi):
        return ""
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, BUCKETS + 1)
    shares = {}
    for split, h in hists.items():
        counts = rebin(h, edges)
        shares[split] = (counts / (counts.sum() or 1.0)).tolist()
    buckets = [(float(edges[i]), float(edges[i + 1])) for i in range(BUCKETS)]
    return svg.grouped_histogram(
        buckets, shares, title=feature, y_label="share", width=330, height=150, css="stats-hist"
    )


def string_chart(feature: str, per_split: dict[str, Any], totals: dict[str, int]) -> str:
    first = next(iter(per_split.values()))
    values = [v.value for v in first.top_values[:TOP_VALUES]]
    if not values:
        return ""
    series = {}
    for split, s in per_split.items():
        freq = {v.value: v.frequency for v in s.top_values}
        total = totals.get(split) or 1
        series[split] = [freq.get(v, 0.0) / total for v in values]
    names = list(series)
    return svg.bar_chart(
        [(v, series[names[0]][i]) for i, v in enumerate(values)],
        title=f"{feature}: top values (share)",
        width=330,
        compare=series[names[1]] if len(names) > 1 else None,
        compare_label=names[1] if len(names) > 1 else "",
        value_name=names[0],
    )


def statistics_splits(stats: dict[str, Any]) -> str:
    """Numeric and string features of every split: per feature one row per split and one chart."""
    datasets = {s: st.datasets[0] for s, st in stats.items() if st.datasets}
    if not datasets:
        return "<p class='muted'>no statistics</p>"
    totals = {s: int(d.num_examples) for s, d in datasets.items()}
    features: dict[str, dict[str, Any]] = {}
    for split, data in datasets.items():
        for f in data.features:
            features.setdefault(_name(f), {})[split] = f
    parts = [
        "<p>"
        + ", ".join(f"{esc(s)}: {fmt(n)} examples" for s, n in totals.items())
        + f" · {len(features)} features</p>"
    ]
    numeric, strings = [], []
    for name in sorted(features):
        per = features[name]
        if all(f.HasField("num_stats") for f in per.values()):
            numeric.append(_numeric_rows(name, {s: f.num_stats for s, f in per.items()}, totals))
        elif all(f.HasField("string_stats") for f in per.values()):
            strings.append(_string_rows(name, {s: f.string_stats for s, f in per.items()}, totals))
    if numeric:
        head = "".join(
            f"<th>{h}</th>"
            for h in (
                "feature",
                "split",
                "missing",
                "mean",
                "std dev",
                "min",
                "median",
                "max",
                "zeros",
                "distribution",
            )  # fmt: skip
        )
        parts.append(
            f"<h4>Numeric features</h4><table class='bp stats numeric'><tr>{head}</tr>"
            + "".join(numeric)
            + "</table>"
        )
    if strings:
        head = "".join(
            f"<th>{h}</th>"
            for h in ("feature", "split", "missing", "unique", "avg length", "top values", "")
        )
        parts.append(
            f"<h4>String features</h4><table class='bp stats strings'><tr>{head}</tr>"
            + "".join(strings)
            + "</table>"
        )
    return "".join(parts)


def _missing(common: Any, total: int) -> str:
    share = common.num_missing / total if total else 0.0
    text = f"{share:.1%}"
    return f'<span class="bad">{text}</span>' if share > 0.5 else text


def _numeric_rows(name: str, per: dict[str, Any], totals: dict[str, int]) -> str:
    cells_per_split = []
    for split, n in per.items():
        total = totals.get(split, 0)
        cells = [
            esc(split),
            _missing(n.common_stats, total),
            fmt(n.mean),
            fmt(n.std_dev),
            fmt(n.min),
            fmt(n.median),
            fmt(n.max),
            f"{(n.num_zeros / total if total else 0.0):.1%}",
        ]
        cells_per_split.append(cells)
    return _feature_rows(name, numeric_chart(name, per), cells_per_split)


def _string_rows(name: str, per: dict[str, Any], totals: dict[str, int]) -> str:
    cells_per_split = []
    for split, s in per.items():
        top = ", ".join(f"{esc(v.value)} ({fmt(int(v.frequency))})" for v in s.top_values[:5])
        cells = [
            esc(split),
            _missing(s.common_stats, totals.get(split, 0)),
            fmt(int(s.unique)),
            fmt(s.avg_length),
            f'<span class="left">{top}</span>',
        ]
        cells_per_split.append(cells)
    return _feature_rows(name, string_chart(name, per, totals), cells_per_split)


def _feature_rows(name: str, chart: str, cells_per_split: list[list[str]]) -> str:
    """One table row per split; the feature's name and its chart span them all."""
    span = len(cells_per_split)
    rows = []
    for i, cells in enumerate(cells_per_split):
        first = f'<td rowspan="{span}">{esc(name)}</td>' if i == 0 else ""
        last = f'<td rowspan="{span}" class="chart-cell">{chart}</td>' if i == 0 else ""
        rows.append(f"<tr>{first}{''.join(f'<td>{c}</td>' for c in cells)}{last}</tr>")
    return "".join(rows)
