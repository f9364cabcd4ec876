"""Views over ML Metadata: runs and their stages, a run's DAG, lineage graphs, model versions.

Read-only and TensorFlow-free, so the web UI and `beam-pipeline report` stay light; the same
functions feed both.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ml_metadata.proto import metadata_store_pb2 as pb

from beam_pipeline.core.artifacts import Artifact
from beam_pipeline.core.errors import ConfigError
from beam_pipeline.core.metadata import props
from beam_pipeline.views import graph as g
from beam_pipeline.views.artifacts import Raw, esc, table
from beam_pipeline.views.svg import bar_chart, fmt

if TYPE_CHECKING:
    from beam_pipeline.core.metadata import Store

STATE = {
    pb.Execution.RUNNING: "running",
    pb.Execution.COMPLETE: "completed",
    pb.Execution.CACHED: "cached",
    pb.Execution.FAILED: "failed",
    pb.Execution.CANCELED: "canceled",
}


def when(ts: float | None) -> str:
    if not ts:
        return "-"
    return dt.datetime.fromtimestamp(float(ts)).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class StageRow:
    name: str
    status: str
    seconds: float | None = None
    execution: int | None = None
    error: str | None = None
    inputs: dict[str, Artifact] = field(default_factory=dict)
    outputs: dict[str, Artifact] = field(default_factory=dict)


@dataclass
class RunView:
    """One run: its properties (status, times, command, summary) and its stages in order."""

    run_id: str
    context_id: int
    properties: dict[str, Any]
    stages: list[StageRow]

    @property
    def status(self) -> str:
        return str(self.properties.get("status", "?"))

    @property
    def error(self) -> str | None:
        return (self.properties.get("summary") or {}).get("error")

    def outputs(self) -> dict[str, Artifact]:
        """Every output artifact of the run by ``stage.key``."""
        return {f"{s.name}.{k}": a for s in self.stages for k, a in s.outputs.items()}


def find_run(store: Store, run_id: str | None) -> dict[str, Any]:
    """A run's record (``None``: the newest); ConfigError naming the runs that exist."""
    runs = store.runs()
    if not runs:
        raise ConfigError(f"no runs of pipeline {store.pipeline_name!r} yet: run it first")
    if run_id is None:
        return runs[-1]
    for r in runs:
        if r["run_id"] == run_id:
            return r
    known = ", ".join(r["run_id"] for r in runs[-5:])
    raise ConfigError(f"--run: no run {run_id!r}; the latest are {known}")


def load_run(store: Store, record: dict[str, Any]) -> RunView:
    """A run with its stages: executions as they are now (a running run shows its progress),
    then stages the summary lists without an execution (skipped ones)."""
    rows: list[StageRow] = []
    for ex in sorted(store.run_executions(record["id"]), key=lambda e: e.id):
        p = props(ex)
        rows.append(
            StageRow(
                name=store.execution_type_name(ex),
                status=STATE.get(ex.last_known_state, "unknown"),
                seconds=p.get("seconds"),
                execution=ex.id,
                error=p.get("error"),
                inputs=store.execution_inputs(ex.id),
                outputs=store.execution_outputs(ex.id),
            )
        )
    summary = (record.get("summary") or {}).get("stages") or {}
    seen = {r.name for r in rows}
    for name, info in summary.items():
        if name not in seen:
            rows.append(StageRow(name=name, status=info.get("status", "?")))
        else:
            for r in rows:  # the summary knows "stopped" (the validation gate)
                if r.name == name and info.get("status") == "stopped":
                    r.status = "stopped"
    return RunView(record["run_id"], record["id"], record, rows)


def run_graph(run: RunView, href: str = "") -> g.Graph:
    """Stages as nodes (status-coloured), an edge where one stage's output is another's input."""
    graph = g.Graph()
    produced: dict[int, str] = {}
    for s in run.stages:
        detail = s.status + (f" · {s.seconds:.1f} s" if s.seconds is not None else "")
        graph.add(
            g.Node(
                s.name,
                s.name,
                status=s.status,
                detail=detail,
                href=href.format(stage=s.name) if href else "",
            )
        )
        for a in s.outputs.values():
            produced[a.id] = s.name  # type: ignore[index]
    for s in run.stages:
        for a in s.inputs.values():
            src = produced.get(a.id)  # type: ignore[arg-type]
            if src and src != s.name:
                graph.link(src, s.name)
    return graph


def stage_table(run: RunView, artifact_href: str = "") -> str:
    rows = []
    for s in run.stages:
        outs = ", ".join(
            f'<a href="{artifact_href.format(id=a.id)}">{esc(k)} #{a.id}</a>'
            if artifact_href
            else f"{esc(k)} #{a.id}"
            for k, a in s.outputs.items()
        )
        rows.append(
            [
                s.name,
                Raw(f'<span class="status {esc(s.status)}">{esc(s.status)}</span>'),
                s.seconds,
                Raw(outs),
                s.error or "",
            ]
        )
    return table(
        ["stage", "status", "seconds", "outputs", "error"],
        rows,
        row_class=lambda r: "blocking" if "failed" in r[1] else "",
        cls="stages",
    )


def timing_chart(run: RunView) -> str:
    bars = [(s.name, float(s.seconds)) for s in run.stages if s.seconds is not None]
    return bar_chart(bars, title="stage time (seconds)")


def runs_table(store: Store, run_href: str = "") -> str:
    rows = []
    for r in reversed(store.runs()):
        stages = (r.get("summary") or {}).get("stages") or {}
        brief = " ".join(f"{k}:{v.get('status', '?')}" for k, v in stages.items())
        link = (
            Raw(
                f'<a class="run-link" href="{run_href.format(run=esc(r["run_id"]))}">'
                f"{esc(r['run_id'])}</a>"
            )
            if run_href
            else r["run_id"]
        )
        rows.append([link, r.get("status"), when(r.get("started")), r.get("seconds"), brief])
    if not rows:
        return "<p class='muted'>no runs yet</p>"
    return table(
        ["run", "status", "started", "seconds", "stages"],
        rows,
        row_class=lambda r: "blocking" if r[1] == "failed" else "",
        cls="runs",
    )


# ---------------------------------------------------------------------------------------------
# Lineage as a graph


def _artifact_node(a: dict[str, Any], href: str) -> g.Node:
    detail = ""
    if a.get("metrics"):
        m = a["metrics"]
        key = next((k for k in ("auc", "accuracy", "rmse") if k in m), next(iter(m), None))
        detail = f"{key} {fmt(m[key])}" if key else ""
    elif a.get("row_counts"):
        detail = " / ".join(f"{k} {fmt(v)}" for k, v in a["row_counts"].items())
    elif "blessed" in a:
        detail = "blessed" if a["blessed"] else "not blessed"
    return g.Node(
        f"a{a['id']}",
        f"{a['type']} #{a['id']}",
        kind="artifact",
        detail=detail,
        href=href.format(id=a["id"]) if href else "",
    )


def lineage_graph(
    store: Store, artifact_id: int, href: str = "", downstream: list[dict[str, Any]] | None = None
) -> g.Graph:
    """What produced an artifact, recursively (artifacts and executions), and, for a model,
    what came after it (``registry.downstream``)."""
    graph = g.Graph()

    def walk(node: dict[str, Any]) -> str:
        a = node["artifact"]
        nid = f"a{a['id']}"
        if any(n.id == nid for n in graph.nodes):
            return nid
        graph.add(_artifact_node(a, href))
        prod = node.get("produced_by")
        if prod:
            eid = f"e{prod['execution']}"
            graph.add(
                g.Node(
                    eid,
                    prod["stage"],
                    status=prod["state"],
                    detail=f"execution {prod['execution']}",
                )
            )
            graph.link(eid, nid)
            for child in prod["inputs"].values():
                graph.link(walk(child), eid)
        return nid

    root = walk(store.lineage(artifact_id))
    for item in downstream or []:
        eid = f"e{item['execution']}"
        graph.add(
            g.Node(eid, item["kind"], status=item["state"], detail=f"execution {item['execution']}")
        )
        graph.link(root, eid)
        for out in item.get("outputs", {}).values():
            graph.add(_artifact_node(out, href))
            graph.link(eid, f"a{out['id']}")
    return graph


# ---------------------------------------------------------------------------------------------
# Model versions


def models_table(records: list[Any], model_href: str = "", compare: bool = False) -> str:
    rows = []
    for r in records:
        metrics = r.eval_metrics or r.train_metrics
        shown = ", ".join(
            f"{k} {fmt(v)}"
            for k, v in metrics.items()
            if isinstance(v, float) and k not in ("example_count", "label_mean", "prediction_mean")
        )
        pushed = "served" if r.served else "retired" if r.retired else ("yes" if r.pushed else "no")
        version: Any = r.version
        if model_href:
            version = Raw(f'<a href="{model_href.format(version=r.version)}">v{r.version}</a>')
        row = [
            version,
            when(r.created),
            {True: "yes", False: "no", None: "-"}[r.blessed],
            r.approval or "-",
            pushed,
            (r.data_fingerprint or "-")[:12],
            shown,
        ]
        if compare:
            row.insert(
                0,
                Raw(f'<input type="checkbox" name="v" value="{r.version}" class="compare-box">'),
            )
        rows.append(row)
    header = ["version", "created", "blessed", "review", "pushed", "data", "metrics"]
    if compare:
        header.insert(0, "")
    return table(header, rows, cls="models")


def compare_models(
    records: list[Any],
    evaluations: dict[int, dict[str, Any] | None],
    hyperparameters: dict[int, dict[str, Any]],
) -> str:
    """Versions side by side: metrics, blessing, review, data and hyperparameters, then slices."""
    if not records:
        return "<p class='muted'>no versions</p>"
    keys: list[str] = []
    for r in records:
        for k in r.eval_metrics or r.train_metrics:
            if k not in keys:
                keys.append(k)
    header = ["", *(f"v{r.version}" for r in records)]
    rows: list[list[Any]] = [
        [k, *((r.eval_metrics or r.train_metrics).get(k) for r in records)] for k in keys
    ]
    rows += [
        ["blessed", *({True: "yes", False: "no", None: "-"}[r.blessed] for r in records)],
        ["review", *(r.approval or "-" for r in records)],
        ["pushed", *("yes" if r.pushed else "no" for r in records)],
        ["data", *((r.data_fingerprint or "-")[:12] for r in records)],
        ["span", *(r.span for r in records)],
        ["run", *(r.run_id for r in records)],
    ]
    hp_keys = sorted({k for r in records for k in hyperparameters.get(r.version, {})})
    rows += [
        [f"hp: {k}", *(hyperparameters.get(r.version, {}).get(k) for r in records)] for k in hp_keys
    ]
    parts = [table(header, rows, cls="compare")]
    # Slices: the main metric of each version's evaluation, slice by slice.
    slice_keys: list[str] = []
    main = ""
    for r in records:
        ev = evaluations.get(r.version) or {}
        for k in ev.get("slices") or {}:
            if k not in slice_keys:
                slice_keys.append(k)
        cand = (ev.get("overall") or {}).get("candidate") or {}
        main = main or next((m for m in ("auc", "accuracy", "rmse") if m in cand), "")
    if slice_keys and main:
        srows = []
        for k in slice_keys:
            srows.append(
                [
                    k,
                    *(
                        (((evaluations.get(r.version) or {}).get("slices") or {}).get(k) or {})
                        .get("candidate", {})
                        .get(main)
                        for r in records
                    ),
                ]
            )
        parts.append(f"<h4>{esc(main)} by slice</h4>" + table(header, srows, cls="compare-slices"))
    return "".join(parts)
