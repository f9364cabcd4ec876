"""One HTML view per artifact type, read from the artifact's files and properties.

The notebook display (`_repr_html_`), `beam-pipeline report` and the web UI all call `render`:
one implementation, so the three show the same thing. Views import no TensorFlow: statistics,
schemas and anomalies are read with tensorflow_metadata's protos, sample rows with tfx_bsl's
decoder, and charts are inline SVG (`beam_pipeline.views.svg`).
"""

from __future__ import annotations

import gzip
import html
import json
import struct
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from beam_pipeline.core.artifacts import (
    SCHEMA_FILE,
    STATS_FILE,
    Artifact,
    metrics_path,
    rejected_dir,
)
from beam_pipeline.evaluation.catalog import OVERALL
from beam_pipeline.views import svg
from beam_pipeline.views.evaluation import evaluation_view, slice_pairs
from beam_pipeline.views.svg import fmt

SAMPLE_ROWS = 5
__all__ = ["evaluation_view", "render", "slice_pairs", "table"]

CSS = """
.bp-view { font: 13px system-ui, -apple-system, sans-serif; color: #222; }
.bp-view h3 { font-size: 15px; margin: 0.6em 0 0.3em; }
.bp-view h4 { font-size: 13px; margin: 0.8em 0 0.3em; }
.bp-view table.bp { border-collapse: collapse; margin: 0.3em 0 0.8em; }
.bp-view table.bp th, .bp-view table.bp td { padding: 3px 8px; border-bottom: 1px solid #e3e3e3;
  text-align: right; vertical-align: top; }
.bp-view table.bp th { background: #f4f4f4; font-weight: 600; }
.bp-view table.bp td:first-child, .bp-view table.bp th:first-child { text-align: left; }
.bp-view .left { text-align: left !important; }
.bp-view .bad, .bp-view tr.blocking td { color: #b00020; font-weight: 600; }
.bp-view tr.blocking { background: #fdecee; }
.bp-view .good { color: #1b7f2a; font-weight: 600; }
.bp-view .muted { color: #777; }
.bp-view .badge { display: inline-block; padding: 1px 8px; border-radius: 9px; font-size: 12px;
  background: #eee; }
.bp-view .badge.good { background: #d8f0d8; } .bp-view .badge.bad { background: #f8d0d0; }
.bp-view pre { background: #f7f7f7; padding: 6px; overflow-x: auto; max-height: 20em; }
.bp-view .charts { display: flex; flex-wrap: wrap; gap: 12px; }
.bp-view .status { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px;
  background: #eee; color: #333; }
.bp-view .status.completed, .bp-view .chip.completed { background: #d8f0d8; color: #1b5e20; }
.bp-view .status.cached, .bp-view .chip.cached { background: #dde8f8; color: #1a5fb4; }
.bp-view .status.failed, .bp-view .chip.failed { background: #f8d0d0; color: #b00020;
  font-weight: 600; }
.bp-view .status.stopped, .bp-view .chip.stopped { background: #fbe3c0; color: #8a4b00; }
.bp-view .status.running, .bp-view .chip.running { background: #fff5b8; color: #6b5200; }
.bp-view .status.canceled, .bp-view .chip.canceled { background: #e0e0e0; color: #555; }
.bp-view .chips { display: inline-flex; gap: 2px; flex-wrap: nowrap; }
.bp-view .chip { font-size: 10px; padding: 0 4px; border-radius: 3px; background: #f0f0f0;
  color: #999; white-space: nowrap; }
.bp-view .version-label { display: inline-block; padding: 0 6px; border-radius: 9px;
  font-size: 11px; background: #ede7f6; color: #4527a0; border: 1px solid #b39ddb; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def table(
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    row_class: Callable[[Sequence[Any]], str] | None = None,
    cls: str = "",
) -> str:
    """A table; cells (and headers) are escaped unless they are `Raw`."""
    out = [f'<table class="bp {cls}"><tr>' + "".join(f"<th>{_cell(h)}</th>" for h in header)]
    out.append("</tr>")
    for row in rows:
        rc = row_class(row) if row_class else ""
        out.append(f'<tr class="{rc}">' if rc else "<tr>")
        for cell in row:
            out.append(f"<td>{_cell(cell)}</td>")
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


class Raw(str):
    """HTML that a table cell takes as it is."""


def _cell(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, float | int) and not isinstance(value, bool):
        return fmt(value)
    if isinstance(value, dict | list):
        return esc(json.dumps(value, default=str))
    return esc("-" if value is None else value)


def badge(ok: bool | None, yes: str, no: str, unknown: str = "-") -> Raw:
    if ok is None:
        return Raw(f'<span class="badge">{esc(unknown)}</span>')
    return Raw(f'<span class="badge {"good" if ok else "bad"}">{esc(yes if ok else no)}</span>')


def wrap(body: str, *, css: bool = True) -> str:
    """A fragment: the view's markup, with its small stylesheet when shown on its own."""
    style = f"<style>{CSS}</style>" if css else ""
    return f'{style}<div class="bp-view">{body}</div>'


# ---------------------------------------------------------------------------------------------
# Reading files without TensorFlow


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def tfrecords(path: Path, limit: int) -> list[bytes]:
    """The first ``limit`` records of a (gzip) TFRecord file; CRCs are not checked."""
    opener = gzip.open if path.name.endswith(".gz") else open
    out: list[bytes] = []
    with opener(path, "rb") as f:
        while len(out) < limit:
            head = f.read(12)
            if len(head) < 12:
                break
            (length,) = struct.unpack("<Q", head[:8])
            out.append(f.read(length))
            f.read(4)
    return out


def sample_rows(split_dir: Path, limit: int = SAMPLE_ROWS) -> list[dict[str, Any]]:
    """The first rows of a split of an Examples artifact, decoded with tfx_bsl (no TF)."""
    files = sorted(split_dir.glob("*.tfrecord*"))
    records: list[bytes] = []
    for f in files:
        records += tfrecords(f, limit - len(records))
        if len(records) >= limit:
            break
    if not records:
        return []
    from tfx_bsl.coders import example_coder

    batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(records)
    rows = batch.to_pylist()
    return [
        {k: (v[0] if isinstance(v, list) and len(v) == 1 else v) for k, v in row.items()}
        for row in rows
    ]


def _decoded(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list):
        return [_decoded(x) for x in v]
    return v


def sample_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return '<p class="muted">no rows</p>'
    cols = sorted({k for r in rows for k in r})
    return table(cols, ([_decoded(r.get(c)) for c in cols] for r in rows))


# ---------------------------------------------------------------------------------------------
# Views, by artifact type


def _props(art: Artifact) -> dict[str, Any]:
    return {k: v for k, v in art.properties.items() if not k.startswith("_")}


def _head(art: Artifact, title: str = "") -> str:
    state = art.properties.get("_state")
    bits = [f"<h3>{esc(title or art.type)} <span class='muted'>#{esc(art.id)}</span></h3>"]
    bits.append(f"<div class='muted'>{esc(art.uri)}" + (f" · {esc(state)}" if state else ""))
    bits.append("</div>")
    return "".join(bits)


def view_examples(art: Artifact) -> str:
    p = art.properties
    counts = p.get("row_counts") or {}
    parts = [_head(art, "Examples")]
    rows = [[s, counts.get(s)] for s in art.splits]
    parts.append(table(["split", "rows"], rows))
    rejected = p.get("rejected")
    if rejected is not None:
        cls = "bad" if rejected else "good"
        parts.append(f"<p>rejected rows: <span class='{cls}'>{fmt(rejected)}</span></p>")
    if p.get("columns"):
        parts.append("<h4>Columns</h4>" + table(["column", "type"], sorted(p["columns"].items())))
    if p.get("data_fingerprint"):
        parts.append(
            f"<p class='muted'>data fingerprint {esc(str(p['data_fingerprint'])[:16])}"
            + (f" · span {esc(p['span'])}" if p.get("span") is not None else "")
            + "</p>"
        )
    if art.splits:
        split = art.splits[0]
        try:
            sample = sample_rows(art.split_dir(split))
        except Exception as exc:  # a view must not fail on a damaged file: say so instead
            sample_html = f"<p class='bad'>cannot read a sample: {esc(exc)}</p>"
        else:
            sample_html = sample_table(sample)
        parts.append(f"<h4>Sample ({esc(split)})</h4>{sample_html}")
    bad = sorted(rejected_dir(art).glob("*.jsonl")) if art.path.is_dir() else []
    lines: list[dict[str, Any]] = []
    for f in bad:
        for line in f.read_text().splitlines():
            if line.strip() and len(lines) < SAMPLE_ROWS:
                lines.append(json.loads(line))
    if lines:
        parts.append(
            "<h4>Rejected rows</h4>"
            + table(
                ["file", "line", "reason"],
                [[Path(r.get("file", "")).name, r.get("line"), r.get("reason")] for r in lines],
            )
        )
    return "".join(parts)


def load_stats(art: Artifact, split: str) -> Any:
    from tensorflow_metadata.proto.v0 import statistics_pb2

    data = (art.split_dir(split) / STATS_FILE).read_bytes()
    return statistics_pb2.DatasetFeatureStatisticsList.FromString(data)


def _feature_name(f: Any) -> str:
    return f.path.step[-1] if f.path.step else f.name


def _histogram(num_stats: Any) -> str:
    for h in num_stats.histograms:
        if h.type == h.STANDARD and h.buckets:
            return svg.histogram([(b.low_value, b.high_value, b.sample_count) for b in h.buckets])
    return ""


def statistics_tables(stats: Any) -> str:
    """Numeric and string feature tables of one split's statistics, with histograms."""
    if not stats.datasets:
        return "<p class='muted'>no statistics</p>"
    data = stats.datasets[0]
    total = int(data.num_examples)
    numeric, strings = [], []
    for f in sorted(data.features, key=_feature_name):
        name = _feature_name(f)
        if f.HasField("num_stats"):
            n = f.num_stats
            missing = n.common_stats.num_missing / total if total else 0.0
            numeric.append(
                [
                    name,
                    Raw(_pct(missing)),
                    n.mean,
                    n.std_dev,
                    n.min,
                    n.median,
                    n.max,
                    Raw(_pct(n.num_zeros / total if total else 0.0, warn=False)),
                    Raw(_histogram(n)),
                ]
            )
        elif f.HasField("string_stats"):
            s = f.string_stats
            missing = s.common_stats.num_missing / total if total else 0.0
            top = [(v.value, v.frequency) for v in s.top_values[:5]]
            chart = svg.histogram([(0, 0, c) for _, c in top]) if top else ""
            strings.append(
                [
                    name,
                    Raw(_pct(missing)),
                    int(s.unique),
                    s.avg_length,
                    Raw(
                        '<span class="left">'
                        + ", ".join(f"{esc(v)} ({fmt(int(c))})" for v, c in top)
                        + "</span>"
                    ),
                    Raw(chart),
                ]
            )
    parts = [f"<p>{fmt(total)} examples, {len(data.features)} features</p>"]
    if numeric:
        parts.append(
            "<h4>Numeric features</h4>"
            + table(
                ["feature", "missing", "mean", "std dev", "min", "median", "max", "zeros", ""],
                numeric,
            )
        )
    if strings:
        parts.append(
            "<h4>String features</h4>"
            + table(["feature", "missing", "unique", "avg length", "top values", ""], strings)
        )
    return "".join(parts)


def _pct(share: float, warn: bool = True) -> str:
    text = f"{share:.1%}"
    return f'<span class="bad">{text}</span>' if warn and share > 0.5 else text


def view_statistics(art: Artifact) -> str:
    from beam_pipeline.views.statistics import statistics_splits

    parts = [_head(art, "Statistics")]
    stats = {}
    for split in art.splits:
        try:
            stats[split] = load_stats(art, split)
        except OSError as exc:
            parts.append(f"<p class='bad'>cannot read statistics of {esc(split)}: {esc(exc)}</p>")
    parts.append(statistics_splits(stats))
    return "".join(parts)


def statistics_page(stats: Any, title: str) -> str:
    """A whole, self-contained HTML page of one split's statistics (no scripts, nothing fetched)."""
    return page(title, statistics_tables(stats))


def page(title: str, body: str, extra_css: str = "") -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{esc(title)}</title><style>body {{ margin: 2em; }} {CSS} {extra_css}</style>"
        f"</head><body><div class='bp-view'><h1>{esc(title)}</h1>{body}</div></body></html>"
    )


def _domain(feature: Any, schema: Any) -> str:
    kind = feature.WhichOneof("domain_info")
    if kind == "domain":
        for d in schema.string_domain:
            if d.name == feature.domain:
                return _values(d.value)
        return feature.domain
    if kind == "string_domain":
        return _values(feature.string_domain.value)
    if kind == "int_domain":
        d = feature.int_domain
        return f"[{d.min if d.HasField('min') else ''}, {d.max if d.HasField('max') else ''}]"
    if kind == "float_domain":
        d = feature.float_domain
        return f"[{d.min if d.HasField('min') else ''}, {d.max if d.HasField('max') else ''}]"
    return kind or ""


def _values(values: Sequence[str]) -> str:
    shown = ", ".join(values[:8])
    return shown + (f", … ({len(values)} values)" if len(values) > 8 else "")


def schema_table(schema: Any) -> str:
    from tensorflow_metadata.proto.v0 import schema_pb2

    rows = []
    for f in schema.feature:
        presence = (
            f"{f.presence.min_fraction:g}" if f.presence.HasField("min_fraction") else "optional"
        )
        if f.presence.HasField("min_count"):
            presence += f" (min count {f.presence.min_count})"
        valency = ""
        if f.HasField("value_count"):
            valency = f"{f.value_count.min}..{f.value_count.max}"
        elif f.HasField("shape"):
            valency = "×".join(str(d.size) for d in f.shape.dim) or "scalar"
        rows.append(
            [f.name, schema_pb2.FeatureType.Name(f.type), presence, valency, _domain(f, schema)]
        )
    return table(["feature", "type", "presence", "values", "domain"], rows)


def load_schema(path: Path) -> Any:
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    return text_format.Parse(path.read_text(), schema_pb2.Schema())


def view_schema(art: Artifact) -> str:
    parts = [_head(art, "Schema")]
    path = art.path / SCHEMA_FILE
    if path.is_file():
        parts.append(schema_table(load_schema(path)))
    else:
        parts.append(f"<p class='bad'>{esc(path)} is missing</p>")
    return "".join(parts)


def anomaly_rows(art: Artifact) -> list[dict[str, Any]]:
    return read_json(art.path / "anomalies.json") or []


def view_anomalies(art: Artifact) -> str:
    p = art.properties
    rows = anomaly_rows(art)
    blocking = [r for r in rows if r.get("blocking")]
    parts = [_head(art, "Anomalies")]
    parts.append(
        "<p>"
        + badge(not blocking, "passed", f"{len(blocking)} blocking")
        + f" {len(rows)} findings"
        + "</p>"
    )
    if rows:
        keys = ["split", "feature", "category", "kind", "description", "blocking"]
        parts.append(
            table(
                keys,
                ([r.get(k) for k in keys] for r in rows),
                row_class=lambda r: "blocking" if r[-1] else "",
            )
        )
    elif p.get("passed") is False:
        parts.append("<p class='bad'>validation failed (no details written)</p>")
    else:
        parts.append("<p class='good'>no anomalies</p>")
    return "".join(parts)


def view_transform_graph(art: Artifact) -> str:
    parts = [_head(art, "Transform graph")]
    for name, title in (("transformed_metadata", "Transformed features"), ("metadata", "Raw")):
        path = art.path / name / SCHEMA_FILE
        if path.is_file():
            parts.append(f"<h4>{title}</h4>{schema_table(load_schema(path))}")
    return "".join(parts)


def view_hyperparameters(art: Artifact) -> str:
    doc = read_json(art.path / "best_hyperparameters.json") or {}
    values = doc.get("values") or art.properties.get("values") or {}
    parts = [_head(art, "Hyperparameters")]
    source = doc.get("source") or art.properties.get("source")
    score = doc.get("score")
    parts.append(
        f"<p>source: <b>{esc(source)}</b>"
        + (f" · best {esc(doc.get('objective'))} = {fmt(score)}" if score is not None else "")
        + (f" · {fmt(art.properties['trials'])} trials" if art.properties.get("trials") else "")
        + "</p>"
    )
    parts.append(table(["hyperparameter", "value"], sorted(values.items())))
    trials = art.path / "trials.txt"
    if trials.is_file():
        parts.append(f"<h4>Trials</h4><pre>{esc(trials.read_text())}</pre>")
    return "".join(parts)


def history_of(model: Artifact) -> dict[str, list[float]]:
    """Per-epoch metrics of a Model (its sibling ModelRun's ``history.json``) or a ModelRun."""
    for path in (model.path / "history.json", model.path.parent / "model_run" / "history.json"):
        data = read_json(path)
        if isinstance(data, dict):
            return data
    return {}


def training_curves(history: dict[str, list[float]]) -> str:
    """One chart per metric: train and validation over epochs."""
    names = sorted({k.removeprefix("val_") for k in history})
    charts = []
    for name in names:
        series = {}
        if name in history:
            series["train"] = history[name]
        if f"val_{name}" in history:
            series["validation"] = history[f"val_{name}"]
        charts.append(svg.line_chart(series, title=name))
    return f"<div class='charts training-curves'>{''.join(charts)}</div>"


def view_model(art: Artifact) -> str:
    p = art.properties
    parts = [_head(art, "Model")]
    if p.get("metrics"):
        parts.append(
            "<h4>Eval metrics (after training)</h4>"
            + table(["metric", "value"], sorted(p["metrics"].items()))
        )
    history = history_of(art)
    if history:
        parts.append("<h4>Training curves</h4>" + training_curves(history))
    sigs = p.get("signatures") or []
    raw = p.get("raw_features") or []
    if sigs:
        rows = []
        for s in sigs:
            inputs = "examples: string [batch] (serialized tf.Example)"
            if s == "serving_raw":
                inputs = ", ".join(raw) + " (string [batch] each)"
            rows.append([s, inputs, "predictions"])
        parts.append("<h4>Signatures</h4>" + table(["signature", "inputs", "outputs"], rows))
    info = [
        [k, p[k]]
        for k in ("label_key", "epochs", "steps_per_epoch", "train_seconds", "strategy")
        if k in p
    ]
    if info:
        parts.append("<h4>Training</h4>" + table(["", ""], info))
    if p.get("hyperparameters"):
        parts.append(
            "<h4>Hyperparameters</h4>"
            + table(["hyperparameter", "value"], sorted(p["hyperparameters"].items()))
        )
    return "".join(parts)


def view_model_run(art: Artifact) -> str:
    history = history_of(art)
    body = training_curves(history) if history else "<p class='muted'>no history</p>"
    return _head(art, "Model run") + body


def view_evaluation(art: Artifact) -> str:
    report = read_json(metrics_path(art))
    if not isinstance(report, dict):
        return _head(art, "Evaluation") + "<p class='bad'>metrics.json is missing</p>"
    return _head(art, "Evaluation") + evaluation_view(report, title="")


def blessing_view(reasons: dict[str, Any]) -> str:
    checks = reasons.get("checks") or []
    rows = [
        [
            c.get("slice") or OVERALL,
            c.get("metric"),
            c.get("kind"),
            c.get("threshold"),
            c.get("value"),
            c.get("baseline"),
            Raw(badge(bool(c.get("passed")), "pass", "fail")),
        ]
        for c in checks
    ]
    return table(
        ["slice", "metric", "check", "threshold", "value", "baseline", ""],
        rows,
        row_class=lambda r: "" if "good" in r[-1] else "blocking",
    )


def view_blessing(art: Artifact) -> str:
    reasons = read_json(art.path / "reasons.json") or {}
    blessed = art.properties.get("blessed", reasons.get("blessed"))
    parts = [_head(art, "Blessing")]
    parts.append(
        "<p>"
        + badge(bool(blessed) if blessed is not None else None, "BLESSED", "NOT BLESSED")
        + f" model v{esc(art.properties.get('model_version'))}"
        + (
            f" vs baseline v{esc(art.properties.get('baseline_version'))}"
            if art.properties.get("baseline_version")
            else ""
        )
        + "</p>"
    )
    parts.append(blessing_view(reasons))
    return "".join(parts)


def view_pushed(art: Artifact) -> str:
    p = art.properties
    parts = [_head(art, "Pushed model")]
    parts.append(
        "<p>"
        + badge(bool(p.get("pushed")), f"pushed as v{p.get('pushed_version')}", "not pushed")
        + f" {esc(p.get('reason'))}</p>"
    )
    parts.append(table(["", ""], [[k, p.get(k)] for k in ("model_version", "serving_path")]))
    return "".join(parts)


def view_generic(art: Artifact) -> str:
    """Any other type (monitoring reports, scoring results): its properties and JSON files."""
    parts = [_head(art)]
    props = _props(art)
    if props:
        parts.append(table(["property", "value"], sorted(props.items())))
    if art.path.is_dir():
        for f in sorted(art.path.glob("*.json"))[:3]:
            text = f.read_text()
            parts.append(f"<h4>{esc(f.name)}</h4><pre>{esc(text[:4000])}</pre>")
        files = sorted(p.name for p in art.path.iterdir())[:20]
        parts.append(f"<p class='muted'>files: {esc(', '.join(files))}</p>")
    return "".join(parts)


def view_monitoring(art: Artifact) -> str:
    from beam_pipeline.views import monitoring

    return _head(art, "Monitoring report") + monitoring.report_view(monitoring.load(art))


VIEWS: dict[str, Callable[[Artifact], str]] = {
    "Examples": view_examples,
    "ExampleStatistics": view_statistics,
    "Schema": view_schema,
    "ExampleAnomalies": view_anomalies,
    "TransformGraph": view_transform_graph,
    "HyperParameters": view_hyperparameters,
    "Model": view_model,
    "ModelRun": view_model_run,
    "ModelEvaluation": view_evaluation,
    "ModelBlessing": view_blessing,
    "PushedModel": view_pushed,
    "MonitoringReport": view_monitoring,
}


def render(art: Artifact, *, css: bool = True) -> str:
    """The HTML view of any artifact (a fragment; with its stylesheet unless ``css=False``)."""
    view = VIEWS.get(art.type, view_generic)
    if not art.path.exists() and "://" not in art.uri:
        body = _head(art) + f"<p class='bad'>{esc(art.uri)} no longer exists</p>"
    else:
        body = view(art)
    return wrap(body, css=css)
