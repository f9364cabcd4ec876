"""Views over ML Metadata: runs and their stages, a run's DAG, lineage graphs, model versions.

Read-only and TensorFlow-free, so the web UI and `beam-pipeline report` stay light; the same
functions feed both.
"""

from __future__ import annotations

import datetime as dt
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ml_metadata.proto import metadata_store_pb2 as pb

from beam_pipeline.core.artifacts import Artifact
from beam_pipeline.core.errors import ConfigError
from beam_pipeline.core.metadata import props
from beam_pipeline.core.stage_sections import STAGE_ORDER
from beam_pipeline.views import graph as g
from beam_pipeline.views.artifacts import Raw, esc, table
from beam_pipeline.views.svg import bar_chart, fmt

if TYPE_CHECKING:
    from beam_pipeline.core.config import Config
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
    rank = {name: i for i, name in enumerate(STAGE_ORDER)}
    rows.sort(key=lambda r: rank.get(r.name, len(rank)))  # pipeline order; stable otherwise
    return RunView(record["run_id"], record["id"], record, rows)


def stage_dependencies(store: Store, stages: list[str]) -> set[tuple[str, str]]:
    """(upstream, downstream) stage pairs as the store last saw them: for each stage, the
    stages that produced the inputs of its newest execution. Draws a stage that did not run in
    this run (skipped after a gate stop) where it belongs; a stage never run anywhere is chained
    to the one before it in pipeline order."""
    pairs: set[tuple[str, str]] = set()
    for i, name in enumerate(stages):
        executions = store.executions(name)
        if not executions:
            if i:
                pairs.add((stages[i - 1], name))
            continue
        newest = max(executions, key=lambda e: e.id)
        for art in store.execution_inputs(newest.id).values():
            producer = store.producer(art.id) if art.id is not None else None
            if producer is not None:
                upstream = store.execution_type_name(store.execution(producer))
                if upstream != name and upstream in stages:
                    pairs.add((upstream, name))
    return pairs


def run_graph(run: RunView, href: str = "", store: Store | None = None) -> g.Graph:
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
    if store is not None:  # stages fed by no stage of this run: linked as the store knows them
        fed = {dst for _, dst in graph.edges}
        names = [s.name for s in run.stages]
        for src, dst in sorted(stage_dependencies(store, names)):
            if dst not in fed:
                graph.link(src, dst)
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


def models_table(
    records: list[Any],
    model_href: str = "",
    compare: bool = False,
    labels: dict[int, list[str]] | None = None,
) -> str:
    rows = []
    for r in records:
        metrics = r.eval_metrics or r.train_metrics
        shown = ", ".join(
            f"{k} {fmt(v)}"
            for k, v in metrics.items()
            if isinstance(v, float) and k not in ("example_count", "label_mean", "prediction_mean")
        )
        pushed = "served" if r.served else "retired" if r.retired else ("yes" if r.pushed else "no")
        tags = label_tags(labels or {}, r.version)
        version: Any = Raw(f"v{r.version}{tags}")
        if model_href:
            version = Raw(
                f'<a href="{model_href.format(version=r.version)}">v{r.version}</a>{tags}'
            )
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


# ---------------------------------------------------------------------------------------------
# A run's overview: what it was asked to do (params), what it measured, what it produced


def overrides(command: str) -> dict[str, str]:
    """``--set section.key=value`` pairs of a recorded command line."""
    try:
        words = shlex.split(command or "")
    except ValueError:
        return {}
    out: dict[str, str] = {}
    for i, word in enumerate(words):
        item = None
        if word == "--set" and i + 1 < len(words):
            item = words[i + 1]
        elif word.startswith("--set="):
            item = word[len("--set=") :]
        if item and "=" in item:
            key, _, value = item.partition("=")
            out[key] = value
    return out


def run_params(store: Store, run: RunView) -> dict[str, Any]:
    """The run's ``--set`` overrides, then the hyperparameters of the model it trained."""
    params: dict[str, Any] = dict(overrides(str(run.properties.get("command") or "")))
    model = run.outputs().get("train.model")
    for k, v in sorted(((model.properties if model else {}).get("hyperparameters") or {}).items()):
        params.setdefault(k, v)
    return params


def produced_version(store: Store, run: RunView) -> int | None:
    """The registry version of the model the run trained (or reused from the cache)."""
    summary = run.properties.get("summary") or {}
    if summary.get("model_version") is not None:
        return int(summary["model_version"])
    model = run.outputs().get("train.model")
    if model is None:
        return None
    from beam_pipeline.core import registry
    from beam_pipeline.core.errors import ConfigError

    try:
        return registry.version_of(store, model)
    except ConfigError:  # a model of another pipeline in a shared store: no version here
        return None


def run_overview(
    store: Store,
    run: RunView,
    *,
    model_href: str = "",
    run_href: str = "",
    labels: dict[int, list[str]] | None = None,
) -> str:
    """Status, times and command; the model version it produced; its metrics and params; for a
    notebook stage-run, the other stage-runs of its session."""
    p = run.properties
    summary = p.get("summary") or {}
    version = produced_version(store, run)
    model: Any = "-"
    if version is not None:
        tags = label_tags(labels or {}, version)
        link = (
            f'<a class="model-link" href="{esc(model_href.format(version=version))}">v{version}</a>'
            if model_href
            else f"v{version}"
        )
        model = Raw(link + tags)
    blessed = summary.get("blessed")
    rows: list[list[Any]] = [
        ["status", Raw(f"<span class='status {esc(run.status)}'>{esc(run.status)}</span>")],
        ["started", when(p.get("started"))],
        ["seconds", p.get("seconds")],
        ["command", p.get("command")],
        ["user", p.get("user")],
        ["model version", model],
        ["blessed", {True: "yes", False: "no"}.get(blessed, "-")],
        ["pushed as", summary.get("pushed_version")],
    ]
    session = p.get("session")
    if session and run_href:
        members = [r["run_id"] for r in store.runs() if r.get("session") == session]
        if len(members) > 1:
            links = " ".join(
                f'<a href="{esc(run_href.format(run=m))}">{esc(m)}</a>'
                if m != run.run_id
                else f"<b>{esc(m)}</b>"
                for m in members
            )
            rows.append(["notebook session", Raw(links)])
    parts = [table(["", ""], rows, cls="run-overview")]
    metrics = {
        k: v
        for k, v in (summary.get("metrics") or {}).items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    params = run_params(store, run)
    parts.append("<div class='side-by-side'>")
    if metrics:
        parts.append(
            "<div><h3>Metrics</h3>"
            + table(["metric", "value"], sorted(metrics.items()), cls="run-metrics")
            + "</div>"
        )
    if params:
        parts.append(
            "<div><h3>Params</h3>"
            + table(["param", "value"], list(params.items()), cls="run-params")
            + "</div>"
        )
    parts.append("</div>")
    return "".join(parts)


def version_labels(config: Config) -> dict[int, list[str]]:
    """Version -> its serving labels (``beam-pipeline label --label stable``), as the server
    reads them from the model's base folder; {} when there are none."""
    from beam_pipeline.core import registry
    from beam_pipeline.serving.models import read_labels

    out: dict[int, list[str]] = {}
    for label, version in sorted(read_labels(registry.model_dir(config)).items()):
        out.setdefault(version, []).append(label)
    return out


def label_tags(labels: dict[int, list[str]], version: int) -> str:
    return "".join(f' <span class="version-label">{esc(t)}</span>' for t in labels.get(version, []))
