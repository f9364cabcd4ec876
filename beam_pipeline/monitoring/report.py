"""The monitoring report as text (``report.txt``) and as one self-contained HTML page
(``report.html``: inline CSS and SVG, no script, nothing loaded from the web)."""

from __future__ import annotations

import html as _html
from typing import Any

from beam_pipeline.evaluation.catalog import OVERALL

TEXT_SLICES = 12  # the largest slices; report.html and report.json have them all
SHOWN = ("example_count", "auc", "accuracy", "precision", "recall", "log_loss", "rmse", "mae")


def _f(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and v.is_integer() and abs(v) >= 1:
        return f"{int(v):,}"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def text(body: dict[str, Any]) -> str:
    """The readable report."""
    w, t, fb, bad = body["window"], body["traffic"], body["feedback"], body["bad_input"]
    out = [
        f"monitoring report: {body['model_name']}, window [{w['since']}, {w['until']})",
        f"status: {'ALERT' if body['alerts'] else 'healthy'}"
        + (f" ({', '.join(body['alert_kinds'])})" if body["alerts"] else ""),
        "",
        "alerts:" if body["alerts"] else "alerts: none",
    ]
    out += [f"  ALERT {a['message']}" for a in body["alerts"]]
    out += [
        "",
        "traffic:",
        f"  predictions {t['predictions']:,}, labelled {t['labelled']:,} "
        f"(coverage {t['coverage']:.1%})",
    ]
    for v, pv in t["per_version"].items():
        out.append(
            f"  v{v}: {pv['predictions']:,} predictions, {pv['labelled']:,} labelled "
            f"({pv['coverage']:.1%})"
        )
    if t.get("unknown_versions"):
        out.append(f"  predictions of unknown model versions: {t['unknown_versions']}")
    out += [
        "",
        f"feedback (label column {fb['label_column']!r}):",
        f"  records {fb['records']:,}, distinct labelled ids {fb['labels']:,}, duplicates "
        f"{fb['duplicates']:,} (last wins), wrong type {fb['wrong_type']:,}, "
        f"unknown request ids {fb['unknown_ids']:,} (of {fb['in_window']:,} written in the window)",
        "",
        "bad input:",
        f"  corrupt lines {bad['corrupt_lines']:,} in {bad['corrupt_segments']} segments "
        f"(of {bad['segments']}), bad feature values {bad['bad_feature_values']:,}, "
        f"rows outside the window {bad['outside_window']:,}, other models {bad['other_model']:,}, "
        f"bad-input rate {bad.get('rate', 0.0):.4f}",
    ]
    out += [f"  skipped lines in: {f}" for f in bad["rejected_files"]]
    out += ["", "predictions (window vs eval split):"]
    for v, d in body["predictions"].items():
        out.append(
            f"  v{v}: mean {_f(d.get('mean'))} vs {_f(d.get('eval_mean'))}, "
            f"shift (Jensen-Shannon) {_f(d.get('shift'), 3)}"
        )
        if d.get("histogram"):
            out.append(f"    histogram {d['histogram']}")
            out.append(f"    eval      {d.get('eval_histogram')}")
        if d.get("classes"):
            out.append(f"    classes {d['classes']} (eval {d.get('eval_classes')})")
    out += ["", "live quality (labelled traffic) vs evaluation time:"]
    for v, q in body["quality"].items():
        out.append(f"  v{v}:")
        out.append(_metric_line(OVERALL, q["overall"]))
        shown = [(k, e) for k, e in q["slices"].items() if e["live"]]
        shown.sort(key=lambda ke: -(ke[1]["live"].get("example_count") or 0))
        for key, entry in shown[:TEXT_SLICES]:
            out.append(_metric_line(key, entry))
        if len(shown) > TEXT_SLICES:
            out.append(
                f"    … {len(shown) - TEXT_SLICES} smaller slices in report.html and report.json"
            )
    for ch in body.get("quality_checks", []):
        out.append(f"  {'ALERT' if ch['alert'] else 'ok   '} {ch['message']}")
    for kind in ("skew", "drift"):
        rows = body[kind]
        where = "training data" if kind == "skew" else "previous window"
        if kind == "drift" and not body.get("drift_baseline"):
            out += ["", "drift: no previous window yet"]
            continue
        out += ["", f"{kind} (against the {where}):" + ("" if rows else " no findings")]
        out += [
            f"  {'ALERT' if r.get('alert') else 'ok   '} {r['feature']}: {r['description']}"
            for r in rows
        ]
    return "\n".join(out) + "\n"


def _metric_line(name: str, entry: dict[str, Any]) -> str:
    live, then = entry["live"], entry["evaluated"]
    parts = [
        f"{m} {_f(live.get(m))} ({_f(then.get(m))})"
        for m in SHOWN
        if live.get(m) is not None or then.get(m) is not None
    ]
    return f"    {name}: " + ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# HTML


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.alert{color:#a00;font-weight:600}.ok{color:#070}.bar{fill:#4a7bd0}.eval{fill:#bbb}
"""


def _e(v: Any) -> str:
    return _html.escape(str(v))


def _table(head: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _bars(live: list[int] | None, ref: list[int] | None) -> str:
    """Two normalised histograms side by side as inline SVG (live: blue, eval: grey)."""
    if not live:
        return ""
    n = len(live)
    a = [x / (sum(live) or 1) for x in live]
    b = [x / (sum(ref) or 1) for x in ref] if ref and len(ref) == n else [0.0] * n
    top = max(a + b) or 1
    w, h, step = 400, 120, 400 / n
    rects = []
    for i in range(n):
        for j, (vals, cls) in enumerate(((a, "bar"), (b, "eval"))):
            bh = vals[i] / top * (h - 10)
            x = i * step + j * step / 2
            rects.append(
                f'<rect class="{cls}" x="{x:.1f}" y="{h - bh:.1f}" width="{step / 2 - 1:.1f}" '
                f'height="{bh:.1f}"/>'
            )
    return f'<svg width="{w}" height="{h}" role="img">{"".join(rects)}</svg>'


def html(body: dict[str, Any]) -> str:
    """The report as one offline HTML page."""
    w, t, fb, bad = body["window"], body["traffic"], body["feedback"], body["bad_input"]
    status = (
        f'<p class="alert">ALERT: {_e(", ".join(body["alert_kinds"]))}</p>'
        if body["alerts"]
        else '<p class="ok">healthy</p>'
    )
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>monitor: "
        f"{_e(body['model_name'])}</title><style>{CSS}</style></head><body>",
        f"<h1>Monitoring report: {_e(body['model_name'])}</h1>",
        f"<p>window [{_e(w['since'])}, {_e(w['until'])})</p>",
        status,
    ]
    if body["alerts"]:
        parts.append(
            "<ul>"
            + "".join(f"<li class='alert'>{_e(a['message'])}</li>" for a in body["alerts"])
            + "</ul>"
        )
    parts.append("<h2>Traffic</h2>")
    parts.append(
        _table(
            ["version", "predictions", "labelled", "coverage"],
            [["all", t["predictions"], t["labelled"], f"{t['coverage']:.1%}"]]
            + [
                [f"v{v}", pv["predictions"], pv["labelled"], f"{pv['coverage']:.1%}"]
                for v, pv in t["per_version"].items()
            ],
        )
    )
    parts.append("<h2>Feedback and bad input</h2>")
    parts.append(
        _table(
            ["count", "value"],
            [
                ["feedback records", fb["records"]],
                ["distinct labelled request ids", fb["labels"]],
                ["duplicate labels (last wins)", fb["duplicates"]],
                ["labels of the wrong type", fb["wrong_type"]],
                ["labels for unknown request ids", fb["unknown_ids"]],
                ["corrupt lines skipped", bad["corrupt_lines"]],
                ["segments with corrupt lines", bad["corrupt_segments"]],
                ["bad feature values", bad["bad_feature_values"]],
            ],
        )
    )
    if bad["rejected_files"]:
        parts.append(
            "<p>skipped lines in: " + ", ".join(_e(f) for f in bad["rejected_files"]) + "</p>"
        )
    parts.append("<h2>Predictions (blue: window, grey: eval split)</h2>")
    for v, d in body["predictions"].items():
        parts.append(
            f"<p>v{_e(v)}: mean {_f(d.get('mean'))} vs {_f(d.get('eval_mean'))}; shift "
            f"(Jensen-Shannon) {_f(d.get('shift'), 3)}</p>"
        )
        parts.append(
            _bars(
                d.get("histogram") or d.get("classes"),
                d.get("eval_histogram") or d.get("eval_classes"),
            )
        )
    parts.append("<h2>Live quality vs evaluation time</h2>")
    for v, q in body["quality"].items():
        rows = [[OVERALL] + _pairs(q["overall"])]
        rows += [[k] + _pairs(e) for k, e in q["slices"].items() if e["live"]]
        parts.append(f"<p>v{_e(v)} (live / at evaluation)</p>")
        parts.append(_table(["slice", *SHOWN], rows))
    checks = body.get("quality_checks") or []
    if checks:
        parts.append(
            _table(
                ["check", "result"],
                [[c["message"], "ALERT" if c["alert"] else "ok"] for c in checks],
            )
        )
    for kind in ("skew", "drift"):
        parts.append(f"<h2>{kind.capitalize()}</h2>")
        rows = [
            [
                r["feature"],
                r["kind"],
                _f(r.get("value")),
                _f(r.get("threshold")),
                "ALERT" if r.get("alert") else "ok",
                r["description"],
            ]
            for r in body[kind]
        ]
        head = ["feature", "distance", "value", "threshold", "result", "description"]
        parts.append(_table(head, rows) if rows else "<p>no findings</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _pairs(entry: dict[str, Any]) -> list[str]:
    live, then = entry["live"], entry["evaluated"]
    return [f"{_f(live.get(m))} / {_f(then.get(m))}" for m in SHOWN]
