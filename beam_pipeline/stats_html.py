"""A self-contained HTML page of one split's statistics (no scripts, nothing fetched).

TFDV's own view (Facets) loads its code from the web when opened; this page does not, so it
also opens on an offline machine or as a CI artifact.
"""

from __future__ import annotations

import html
from typing import Any

from tensorflow_metadata.proto.v0 import statistics_pb2

_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 2em; }
th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
.warn { color: #b00; font-weight: 600; }
"""


def _name(feature: statistics_pb2.FeatureNameStatistics) -> str:
    return feature.path.step[-1] if feature.path.step else feature.name


def _fmt(x: float) -> str:
    return f"{x:,.4g}"


def _missing(common: Any, total: int) -> str:
    if not total:
        return "-"
    share = common.num_missing / total
    text = f"{share:.1%}"
    return f'<span class="warn">{text}</span>' if share > 0.5 else text


def render(stats: statistics_pb2.DatasetFeatureStatisticsList, title: str) -> str:
    """The page: a table of numeric features and one of string features."""
    if not stats.datasets:
        return f"<!doctype html><title>{html.escape(title)}</title><p>no statistics</p>"
    data = stats.datasets[0]
    total = int(data.num_examples)
    numeric, strings = [], []
    for f in sorted(data.features, key=_name):
        name = html.escape(_name(f))
        if f.HasField("num_stats"):
            n = f.num_stats
            numeric.append(
                f"<tr><td>{name}</td><td>{_missing(n.common_stats, total)}</td>"
                f"<td>{_fmt(n.mean)}</td><td>{_fmt(n.std_dev)}</td><td>{_fmt(n.min)}</td>"
                f"<td>{_fmt(n.median)}</td><td>{_fmt(n.max)}</td>"
                f"<td>{n.num_zeros / total:.1%}</td></tr>"
                if total
                else f"<tr><td>{name}</td></tr>"
            )
        elif f.HasField("string_stats"):
            s = f.string_stats
            top = ", ".join(
                f"{html.escape(v.value)} ({int(v.frequency):,})" for v in s.top_values[:5]
            )
            strings.append(
                f"<tr><td>{name}</td><td>{_missing(s.common_stats, total)}</td>"
                f"<td>{int(s.unique):,}</td><td>{_fmt(s.avg_length)}</td>"
                f'<td style="text-align:left">{top}</td></tr>'
            )
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
        f"<p>{total:,} examples, {len(data.features)} features</p>",
    ]
    if numeric:
        parts += [
            "<h2>Numeric features</h2><table><tr><th>feature</th><th>missing</th><th>mean</th>",
            "<th>std dev</th><th>min</th><th>median</th><th>max</th><th>zeros</th></tr>",
            *numeric,
            "</table>",
        ]
    if strings:
        parts += [
            "<h2>String features</h2><table><tr><th>feature</th><th>missing</th>",
            "<th>unique</th><th>avg length</th><th>top values</th></tr>",
            *strings,
            "</table>",
        ]
    parts.append("</body></html>")
    return "\n".join(parts)
