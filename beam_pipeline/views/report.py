"""`beam-pipeline report`: one self-contained HTML page about a run or a model version.

Everything is inline (CSS, SVG charts and graphs; no scripts, no fonts, no images fetched), so
the file opens offline, on a plane or as a CI artifact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from beam_pipeline.core import registry
from beam_pipeline.core.artifacts import Artifact
from beam_pipeline.core.metadata import props
from beam_pipeline.views import artifacts as av
from beam_pipeline.views import graph as g
from beam_pipeline.views import runs as rv

if TYPE_CHECKING:
    from beam_pipeline.core.config import Config
    from beam_pipeline.core.metadata import Store

REPORT_CSS = """
body { margin: 0; background: #fafafa; }
.bp-view { max-width: 1200px; margin: 0 auto; padding: 1.5em 2em; background: #fff; }
section { border-top: 1px solid #ddd; padding-top: 0.5em; margin-top: 1.2em; }
.scroll { overflow-x: auto; }
nav a { margin-right: 1em; }
.status.failed { color: #b00020; font-weight: 600; }
"""

# The artifacts a report shows, in this order: (stage.output, heading).
SHOWN = (
    ("ingest.examples", "Examples"),
    ("statistics.statistics", "Statistics"),
    ("validate.anomalies", "Anomalies"),
    ("schema.schema", "Schema"),
    ("tune.hyperparameters", "Hyperparameters"),
    ("train.model", "Model and training curves"),
    ("evaluate.evaluation", "Evaluation"),
    ("evaluate.blessing", "Blessing"),
    ("push.pushed_model", "Push"),
)


def build(
    config: Config, store: Store, *, run_id: str | None = None, model: int | None = None
) -> str:
    """The report of a run (``run_id``), of the run that trained model version ``model``, or of
    the newest run when neither is given."""
    version_record = None
    if model is not None:
        art = registry.model_by_version(store, model)
        producer = store.producer(art.id)  # type: ignore[arg-type]
        run_id = props(store.execution(producer)).get("run_id") if producer else None
        version_record = next(r for r in registry.describe(config, store) if r.version == model)
    run = rv.load_run(store, rv.find_run(store, run_id))
    name = config.pipeline.name
    title = f"{name}: " + (f"model version {model}" if model else f"run {run.run_id}")
    sections: list[tuple[str, str, str]] = []  # (anchor, heading, html)

    labels = rv.version_labels(config)
    overview = av.table(["", ""], [["pipeline", name], ["run", run.run_id]])
    overview += rv.run_overview(store, run, labels=labels)
    if run.error:
        overview += f"<p class='bad'>{av.esc(run.error)}</p>"
    if version_record is not None:
        overview += "<h3>Model version</h3>" + rv.models_table([version_record], labels=labels)
    sections.append(("overview", "Overview", overview))
    sections.append(
        (
            "stages",
            "Stages and timings",
            "<div class='scroll'>"
            + g.render(rv.run_graph(run, store=store), title="pipeline")
            + "</div>"
            + rv.stage_table(run)
            + rv.timing_chart(run),
        )
    )
    outputs = run.outputs()
    for key, heading in SHOWN:
        art = outputs.get(key)
        if art is not None:
            sections.append((key.replace(".", "-"), heading, av.render(art, css=False)))
    model_art: Artifact | None = outputs.get("train.model")
    if model_art is not None and model_art.id is not None:
        downstream = registry.downstream(store, model_art)
        lineage = rv.lineage_graph(store, model_art.id, downstream=downstream)
        sections.append(
            (
                "lineage",
                "Lineage of the model",
                "<div class='scroll'>"
                + g.render(
                    lineage,
                    title=f"Model #{model_art.id}",
                    rankdir="TB",
                    selected=f"a{model_art.id}",
                )
                + "</div>",
            )
        )
    version = model if model is not None else rv.produced_version(store, run)
    if version is not None:
        from beam_pipeline.views import monitoring

        watched = monitoring.monitoring_page(store, version=version)
        if watched:
            sections.append(("monitoring", f"Monitoring of v{version}", watched))
    nav = "<nav>" + "".join(f"<a href='#{a}'>{av.esc(h)}</a>" for a, h, _ in sections) + "</nav>"
    body = nav + "".join(
        f"<section id='{a}'><h2>{av.esc(h)}</h2>{html}</section>" for a, h, html in sections
    )
    return av.page(title, body, extra_css=REPORT_CSS)
