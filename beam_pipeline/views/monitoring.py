"""Monitoring: the MonitoringReport artifacts of ``beam-pipeline monitor`` over time.

The report's JSON (``report.json``) is rendered generically, so that the page keeps up with what
the monitor writes: alerts (any keys), every finding that carries a ``threshold`` with its
distance against it (``value``, ``distance``, ``shift``; else the number TFDV's description
states), live metrics of every report (``quality.{version}.overall.live``) as lines over time
beside the values at evaluation time, and the whole JSON as nested tables.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

from beam_pipeline.views import svg
from beam_pipeline.views.svg import fmt

if TYPE_CHECKING:
    from beam_pipeline.core.artifacts import Artifact
    from beam_pipeline.core.metadata import Store

REPORT_TYPE = "MonitoringReport"
VALUE_KEYS = ("drop", "value", "distance", "shift", "divergence")  # first one present wins
LONG_KEYS = {"description", "window"}  # said by the message or the report's window already
_STATED = re.compile(r"\bis (-?\d+(?:\.\d+)?(?:e-?\d+)?)", re.I)
MAX_DEPTH = 4
MAX_ROWS = 200

CSS = """
.bp-view .distance { display: inline-block; position: relative; width: 160px; height: 10px;
  background: #f0f0f0; vertical-align: middle; }
.bp-view .distance i { position: absolute; left: 0; top: 0; bottom: 0; background: #1f77b4; }
.bp-view .distance i.over { background: #d62728; }
.bp-view .distance b { position: absolute; top: -3px; bottom: -3px; width: 2px; background: #333; }
.bp-view dl.json { margin: 0; } .bp-view dl.json dt { font-weight: 600; margin-top: 4px; }
.bp-view dl.json dd { margin-left: 1.2em; }
.bp-view details.raw summary { cursor: pointer; color: #1a5fb4; }
.bp-view table.alerts td { font-weight: 400; } .bp-view table.alerts td.message { min-width: 30em; }
"""


def esc(value: Any) -> str:
    import html

    return html.escape(str(value), quote=True)


def load(art: Artifact) -> dict[str, Any]:
    try:
        data = json.loads((art.path / "report.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


# ---------------------------------------------------------------------------------------------
# Findings against thresholds


def findings(body: Any, path: str = "") -> list[dict[str, Any]]:
    """Every object in the report with a numeric ``threshold``: where it is, its distance (a
    value key, or the number its description states) and whether it is over."""
    out: list[dict[str, Any]] = []
    if isinstance(body, dict):
        threshold = _number(body.get("threshold"))
        if threshold is not None and not path.startswith("alerts"):
            value = next((_number(body.get(k)) for k in VALUE_KEYS if _number(body.get(k))
                          is not None), None)  # fmt: skip
            stated = False
            if value is None:
                match = _STATED.search(str(body.get("description") or ""))
                value, stated = (float(match.group(1)), True) if match else (None, False)
            out.append(
                {
                    "where": path,
                    "what": " · ".join(
                        str(body[k])
                        for k in ("category", "version", "feature", "metric", "slice", "kind")
                        if body.get(k) not in (None, "")
                    ),
                    "value": value,
                    "threshold": threshold,
                    "stated": stated,
                    "alert": body.get("alert"),
                    "over": (
                        bool(body["alert"])
                        if isinstance(body.get("alert"), bool)
                        else value is not None and value > threshold
                    ),
                }
            )
        for k, v in body.items():
            out += findings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(body, list):
        for i, v in enumerate(body):
            out += findings(v, f"{path}[{i}]")
    return out


def distance_bar(value: float | None, threshold: float, over: bool) -> str:
    if value is None:
        return ""
    top = max(abs(value), abs(threshold)) * 1.25 or 1.0
    return (
        f'<span class="distance" title="{fmt(value)} vs threshold {fmt(threshold)}">'
        f'<i class="{"over" if over else ""}" style="width: {100 * abs(value) / top:.1f}%"></i>'
        f'<b style="left: {100 * abs(threshold) / top:.1f}%"></b></span>'
    )


def findings_table(body: dict[str, Any]) -> str:
    rows = findings(body)
    if not rows:
        return "<p class='muted'>no findings with a threshold in this report</p>"
    out = []
    for r in rows[:MAX_ROWS]:
        cls = "blocking" if r["over"] else ""
        out.append(
            f'<tr class="{cls}"><td>{esc(r["what"] or r["where"])}</td>'
            f"<td>{fmt(r['value'])}{' (stated)' if r['stated'] else ''}</td>"
            f"<td>{fmt(r['threshold'])}</td>"
            f"<td>{distance_bar(r['value'], r['threshold'], r['over'])}</td>"
            f"<td class='muted'>{esc(r['where'])}</td></tr>"
        )
    return (
        "<table class='bp findings'><tr><th>finding</th><th>distance</th><th>threshold</th>"
        "<th></th><th>in report</th></tr>" + "".join(out) + "</table>"
    )


# ---------------------------------------------------------------------------------------------
# Alerts, and any JSON as tables


def alerts_table(alerts: list[Any]) -> str:
    if not alerts:
        return "<p class='good'>no alerts</p>"
    keys = ["message"]
    for a in alerts:
        if isinstance(a, dict):
            keys += [k for k in a if k not in keys and k not in LONG_KEYS]
    head = "".join(f"<th>{esc(k)}</th>" for k in keys)
    rows = "".join(
        "<tr class='blocking'>"
        + "".join(
            f"<td class='left{' message' if k == 'message' else ''}'>"
            f"{_leaf(a.get(k) if isinstance(a, dict) else a)}</td>"
            for k in keys
        )
        + "</tr>"
        for a in alerts[:MAX_ROWS]
    )
    return f"<div class='scroll'><table class='bp alerts'><tr>{head}</tr>{rows}</table></div>"


def _leaf(v: Any) -> str:
    if isinstance(v, float | int) and not isinstance(v, bool):
        return fmt(v)
    if isinstance(v, dict | list):
        text = json.dumps(v, default=str)
        return esc(text if len(text) <= 120 else text[:117] + "…")
    return esc("-" if v is None else v)


def json_view(value: Any, depth: int = 0) -> str:
    """Nested tables: an object as names and values, a list of objects as one table."""
    if depth >= MAX_DEPTH:
        return _leaf(value)
    if isinstance(value, dict):
        if not value:
            return "<span class='muted'>{}</span>"
        items = "".join(
            f"<dt>{esc(k)}</dt><dd>{json_view(v, depth + 1)}</dd>" for k, v in value.items()
        )
        return f"<dl class='json'>{items}</dl>"
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            keys: list[str] = []
            for v in value:
                keys += [k for k in v if k not in keys]
            head = "".join(f"<th>{esc(k)}</th>" for k in keys)
            rows = "".join(
                "<tr>" + "".join(f"<td class='left'>{_leaf(v.get(k))}</td>" for k in keys) + "</tr>"
                for v in value[:MAX_ROWS]
            )
            return f"<table class='bp'><tr>{head}</tr>{rows}</table>"
        return _leaf(value)
    return _leaf(value)


def report_view(body: dict[str, Any]) -> str:
    """One report: status, alerts, findings against thresholds, live metrics, then all of it."""
    if not body:
        return "<p class='bad'>report.json is missing or not an object</p>"
    alerts = body.get("alerts") or []
    window = body.get("window") or {}
    status = (
        f"<span class='badge bad'>ALERT · {len(alerts)}</span>"
        if alerts
        else "<span class='badge good'>healthy</span>"
    )
    head = (
        f"<p>{status} model {esc(body.get('model_name'))} · window "
        f"{esc(window.get('since'))} → {esc(window.get('until'))} · versions "
        f"{esc(', '.join(f'v{v}' for v in body.get('versions') or []))}"
        + (" · <b>no traffic in the window</b>" if body.get("empty") else "")
        + "</p>"
    )
    parts = [f"<style>{CSS}</style>", head, "<h4>Alerts</h4>", alerts_table(alerts)]
    parts += ["<h4>Distances against thresholds</h4>", findings_table(body)]
    quality = body.get("quality") or {}
    for version, q in quality.items():
        overall = (q or {}).get("overall") or {}
        live, evaluated = overall.get("live") or {}, overall.get("evaluated") or {}
        names = [k for k in live if _number(live[k]) is not None]
        if names:
            rows = "".join(
                f"<tr><td>{esc(k)}</td><td>{fmt(_number(live.get(k)))}</td>"
                f"<td>{fmt(_number(evaluated.get(k)))}</td></tr>"
                for k in names
            )
            parts.append(
                f"<h4>Live metrics of v{esc(version)}</h4><table class='bp live'><tr><th>metric"
                f"</th><th>live</th><th>at evaluation</th></tr>{rows}</table>"
            )
    parts.append(
        "<details class='raw'><summary>the whole report</summary>"
        + json_view({k: v for k, v in body.items() if k != "alerts"})
        + "</details>"
    )
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# Over time


def _versions(art: Artifact, body: dict[str, Any]) -> list[int]:
    found = body.get("versions") or art.properties.get("versions") or []
    return [int(v) for v in found if isinstance(v, int | str) and str(v).isdigit()]


def live_series(bodies: list[dict[str, Any]]) -> dict[str, dict[str, list[float | None]]]:
    """metric -> series name (``v3 live``, ``v3 at evaluation``) -> one value per report."""
    out: dict[str, dict[str, list[float | None]]] = {}
    n = len(bodies)
    for i, body in enumerate(bodies):
        for version, q in (body.get("quality") or {}).items():
            overall = (q or {}).get("overall") or {}
            for side, label in (("live", "live"), ("evaluated", "at evaluation")):
                for metric, v in (overall.get(side) or {}).items():
                    if _number(v) is None or metric == "example_count" and side == "evaluated":
                        continue
                    series = out.setdefault(metric, {}).setdefault(
                        f"v{version} {label}", [None] * n
                    )
                    series[i] = _number(v)
    return out


def monitoring_page(store: Store, artifact_href: str = "", version: int | None = None) -> str:
    """Every MonitoringReport (oldest to newest): a table, live metrics over time, and the
    newest report in full. ``version``: only the reports that watched it ("" when none did)."""
    arts = sorted(store.artifacts_of_type(REPORT_TYPE), key=lambda a: a.id or 0)
    bodies = [load(a) for a in arts]
    if version is not None:
        kept = [(a, b) for a, b in zip(arts, bodies, strict=True) if version in _versions(a, b)]
        if not kept:
            return ""
        arts, bodies = [a for a, _ in kept], [b for _, b in kept]
    if not arts:
        return (
            "<p class='muted'>no monitoring reports yet: serve the model, then run "
            "<code>beam-pipeline monitor CONFIG</code></p>"
        )
    rows = []
    for a, body in zip(reversed(arts), reversed(bodies), strict=True):
        p = a.properties
        w = p.get("window") or body.get("window") or {}
        link = (
            f'<a href="{esc(artifact_href.format(id=a.id))}">#{a.id}</a>'
            if artifact_href
            else f"#{a.id}"
        )
        alerts = body.get("alerts") or []
        kinds = ", ".join(str(k) for k in body.get("alert_kinds") or p.get("alert_kinds") or [])
        status = (
            f"<span class='badge bad'>{len(alerts)} alerts</span> {esc(kinds)}"
            if alerts
            else "<span class='badge good'>healthy</span>"
        )
        rows.append(
            f"<tr class='{'blocking' if alerts else ''}'><td>{link}</td>"
            f"<td>{esc(w.get('since'))}</td><td>{esc(w.get('until'))}</td>"
            f"<td>{esc(', '.join(f'v{v}' for v in p.get('versions') or []))}</td>"
            f"<td>{fmt(p.get('predictions'))}</td><td>{fmt(p.get('labelled'))}</td>"
            f"<td class='left'>{status}</td></tr>"
        )
    table = (
        "<table class='bp reports'><tr><th>report</th><th>since</th><th>until</th>"
        "<th>versions</th><th>predictions</th><th>labelled</th><th>status</th></tr>"
        + "".join(rows)
        + "</table>"
    )
    series = live_series(bodies)
    charts = "".join(
        svg.line_chart(s, title=metric, x_label="report (oldest → newest)")
        for metric, s in sorted(series.items())
    )
    over_time = (
        f"<div class='charts live-over-time'>{charts}</div>"
        if charts
        else "<p class='muted'>no live metrics yet (no feedback labels in any window)</p>"
    )
    newest = arts[-1]
    return (
        f"<style>{CSS}</style><h2>Reports</h2>{table}<h2>Live metrics over time</h2>{over_time}"
        f"<h2>Newest report #{newest.id}</h2>{report_view(bodies[-1])}"
    )
