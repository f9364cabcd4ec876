"""The UI's routes. Pages are rendered on the server from `beam_pipeline.views`."""

from __future__ import annotations

import getpass
import hashlib
import html
import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from beam_pipeline.core import registry
from beam_pipeline.core.artifacts import Artifact, metrics_path
from beam_pipeline.core.errors import ConfigError, PipelineError
from beam_pipeline.core.metadata import Store
from beam_pipeline.ui.assets import CSS as UI_CSS
from beam_pipeline.ui.assets import JS as UI_JS
from beam_pipeline.ui.guard import FRAME_HEADERS, HostGuard, Token, allowed_names, cross_site_reason
from beam_pipeline.views import artifacts as av
from beam_pipeline.views import compare, runlist
from beam_pipeline.views import graph as g
from beam_pipeline.views import monitoring as mv
from beam_pipeline.views import runs as rv

if TYPE_CHECKING:
    from beam_pipeline.core.config import Config

esc = av.esc


class UI:
    """The state behind the routes: the config, one store (MLMD handles are not thread-safe,
    so every request holds the lock while it reads or writes) and the options."""

    def __init__(self, config: Config, *, allow_review: bool, poll: float) -> None:
        self.config = config
        self.store = Store(config)
        self.lock = threading.Lock()
        self.allow_review = allow_review
        self.poll = poll
        self.token = Token()  # in every review form; a page on another site cannot read it

    # ---- page frame ----------------------------------------------------------------------------

    def page(self, title: str, body: str, *, state: str = "") -> HTMLResponse:
        name = esc(self.config.pipeline.name)
        doc = (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{esc(title)} · {name}</title>"
            "<link rel='stylesheet' href='/static/ui.css'>"
            "<script src='/static/ui.js' defer></script></head>"
            f"<body data-state='{esc(state)}' data-poll='{self.poll}'>"
            f"<header><b>{name}</b> <a href='/'>Runs</a> <a href='/models'>Models</a> "
            "<a href='/monitoring'>Monitoring</a>"
            f"<span class='live' id='live'></span></header>"
            f"<main class='bp-view'><h1>{esc(title)}</h1>{body}</main></body></html>"
        )
        return HTMLResponse(doc, headers=FRAME_HEADERS)

    def state(self) -> str:
        """A token that changes whenever the store does in a way a page shows."""
        runs = self.store.runs()
        parts: list[Any] = [(r["run_id"], r.get("status")) for r in runs]
        for r in runs[-3:]:
            parts += [(e.id, e.last_known_state) for e in self.store.run_executions(r["id"])]
        parts.append(len(self.store.executions(registry.REVIEW)))
        parts.append(len(self.store.executions(registry.ROLLBACK)))
        parts.append(len(self.store.artifacts_of_type(mv.REPORT_TYPE)))
        return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]

    # ---- pages ---------------------------------------------------------------------------------

    def runs(self, request: Request) -> Response:
        query = runlist.RunsQuery.parse(request.query_params)
        body = runlist.runs_page(
            self.store,
            query,
            run_href="/runs/{run}",
            model_href="/models/{version}",
            labels=rv.version_labels(self.config),
        )
        return self.page("Runs", body, state=self.state())

    def run(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        run = rv.load_run(self.store, rv.find_run(self.store, run_id))
        err = f"<pre class='bad error'>{esc(run.error)}</pre>" if run.error else ""
        dag = g.render(rv.run_graph(run, store=self.store), title="stages")
        body = (
            rv.run_overview(
                self.store,
                run,
                model_href="/models/{version}",
                run_href="/runs/{run}",
                labels=rv.version_labels(self.config),
            )
            + err
            + f"<h2>Stages</h2><div class='scroll dag'>{dag}</div>"
            + rv.stage_table(run, artifact_href="/artifacts/{id}")
            + rv.timing_chart(run)
        )
        return self.page(f"Run {run_id}", body, state=self.state())

    def artifact(self, request: Request) -> Response:
        art_id = int(request.path_params["artifact_id"])
        arts = self.store.artifacts([art_id])
        if not arts:
            raise ConfigError(f"no artifact with id {art_id}")
        art = arts[0]
        lineage = rv.lineage_graph(self.store, art_id, href="/artifacts/{id}")
        body = (
            av.render(art, css=False)
            + "<h2>Lineage</h2><div class='scroll lineage'>"
            + g.render(lineage, rankdir="TB", selected=f"a{art_id}")
            + "</div>"
        )
        return self.page(f"{art.type} #{art_id}", body, state=self.state())

    def models(self, request: Request) -> Response:
        records = registry.describe(self.config, self.store)
        body = (
            "<form method='get' action='/compare' id='compare-form'>"
            + rv.models_table(
                records,
                model_href="/models/{version}",
                compare=True,
                labels=rv.version_labels(self.config),
            )
            + "<button type='submit'>Compare selected</button></form>"
            if records
            else "<p class='muted'>no models yet: run the pipeline first</p>"
        )
        return self.page("Model versions", body, state=self.state())

    def _evaluation(self, model: Artifact) -> tuple[Artifact | None, Artifact | None]:
        """The newest evaluation and blessing of a model as the candidate."""
        items = [
            d
            for d in registry.downstream(self.store, model)
            if d["kind"] == "evaluate" and d.get("role") == "model" and d["outputs"]
        ]
        if not items:
            return None, None
        outs = max(items, key=lambda d: d["execution"])["outputs"]
        ids = [o["id"] for o in outs.values()]
        by_type = {a.type: a for a in self.store.artifacts(ids)}
        return by_type.get("ModelEvaluation"), by_type.get("ModelBlessing")

    def model(self, request: Request) -> Response:
        version = int(request.path_params["version"])
        model = registry.model_by_version(self.store, version)
        record = next(r for r in registry.describe(self.config, self.store) if r.version == version)
        evaluation, blessing = self._evaluation(model)
        review = registry.latest_review(self.store, model.id)  # type: ignore[arg-type]
        parts = [rv.models_table([record], labels=rv.version_labels(self.config))]
        if review:
            parts.append(
                f"<p class='review'>latest review: <b>{esc(review['decision'])}</b> by "
                f"{esc(review['user'])} at {rv.when(review['time'])}: "
                f"{esc(review.get('comment') or '')}</p>"
            )
        if self.allow_review:
            parts.append(
                f"<form method='post' action='/models/{version}/review' class='review-form'>"
                f"<input type='hidden' name='token' value='{esc(self.token.value)}'>"
                "<input name='comment' id='comment' placeholder='comment' size='50'> "
                "<button name='decision' value='approved' id='approve'>Approve</button> "
                "<button name='decision' value='rejected' id='reject'>Reject</button></form>"
            )
        if evaluation is not None:
            parts.append(_section("evaluation", av.render(evaluation, css=False)))
        if blessing is not None:
            parts.append(_section("blessing", av.render(blessing, css=False)))
        parts.append(_section("model", av.render(model, css=False)))
        lineage = rv.lineage_graph(
            self.store,
            model.id,  # type: ignore[arg-type]
            href="/artifacts/{id}",
            downstream=registry.downstream(self.store, model),
        )
        parts.append(
            "<section id='lineage'><h2>Lineage</h2><div class='scroll lineage'>"
            + g.render(
                lineage, title=f"model version {version}", rankdir="TB", selected=f"a{model.id}"
            )
            + "</div></section>"
        )
        return self.page(f"Model version {version}", "".join(parts), state=self.state())

    async def review(self, request: Request) -> Response:
        if not self.allow_review:
            return self.page_error(403, "reviews are off: start the UI with --allow-review")
        cross = cross_site_reason(request.scope)
        if cross:
            return self.page_error(403, f"review refused: {cross}")
        version = int(request.path_params["version"])
        # An HTML form posts application/x-www-form-urlencoded: parsed here, so that the UI needs
        # no multipart parser.
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        decision = form.get("decision", [""])[0]
        comment = form.get("comment", [""])[0]
        if not self.token.matches(form.get("token", [""])[0]):
            return self.page_error(403, "review refused: the form's token is missing or stale")
        with self.lock:
            try:  # the CLI's own call: same properties, same events, same user
                registry.record_review(self.store, version, decision, comment, getpass.getuser())
            except ConfigError as exc:
                return self.page_error(400, str(exc))
        return RedirectResponse(f"/models/{version}", status_code=303)

    def compare(self, request: Request) -> Response:
        wanted = [int(v) for v in request.query_params.getlist("v") if v.isdigit()]
        records = [r for r in registry.describe(self.config, self.store) if r.version in wanted]
        if not records:
            raise ConfigError("pick one or more versions to compare (?v=1&v=2)")
        evaluations: dict[int, dict[str, Any] | None] = {}
        hps: dict[int, dict[str, Any]] = {}
        for r in records:
            model = registry.model_by_version(self.store, r.version)
            hps[r.version] = dict(model.properties.get("hyperparameters") or {})
            evaluation, _ = self._evaluation(model)
            evaluations[r.version] = av.read_json(metrics_path(evaluation)) if evaluation else None
        body = compare.compare_models(
            records,
            evaluations,
            hps,
            labels=rv.version_labels(self.config),
            model_href="/models/{version}",
        )
        title = "Compare " + " · ".join(f"v{r.version}" for r in records)
        return self.page(title, body, state=self.state())

    def monitoring(self, request: Request) -> Response:
        body = mv.monitoring_page(self.store, artifact_href="/artifacts/{id}")
        return self.page("Monitoring", body, state=self.state())

    def api_state(self, request: Request) -> Response:
        return JSONResponse({"state": self.state()})

    def page_error(self, status: int, message: str) -> HTMLResponse:
        resp = self.page("Error", f"<p class='bad'>{html.escape(message)}</p>")
        resp.status_code = status
        return resp


def create_app(
    config: Config,
    *,
    allow_review: bool = False,
    poll: float = 2.0,
    host: str = "127.0.0.1",
    allowed_hosts: tuple[str, ...] = (),
) -> Starlette:
    """The ASGI app for one pipeline's store. It answers to IP literals, `localhost`, `host`
    (the address it binds to) and `allowed_hosts`, and to no other `Host` (DNS rebinding)."""
    ui = UI(config, allow_review=allow_review, poll=poll)

    def locked(fn: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            with ui.lock:
                try:
                    return fn(request)
                except (ConfigError, KeyError, ValueError) as exc:
                    return ui.page_error(404, str(exc).strip("'\""))
                except PipelineError as exc:
                    return ui.page_error(500, str(exc))

        return endpoint

    def static(body: str, media: str) -> Callable[[Request], Response]:
        return lambda request: Response(body, media_type=media)

    routes = [
        Route("/", locked(ui.runs)),
        Route("/runs/{run_id}", locked(ui.run)),
        Route("/artifacts/{artifact_id:int}", locked(ui.artifact)),
        Route("/models", locked(ui.models)),
        Route("/models/{version:int}", locked(ui.model)),
        Route("/models/{version:int}/review", ui.review, methods=["POST"]),
        Route("/compare", locked(ui.compare)),
        Route("/monitoring", locked(ui.monitoring)),
        Route("/api/state", locked(ui.api_state)),
        Route("/healthz", lambda request: JSONResponse({"ok": True})),
        Route("/static/ui.css", static(av.CSS + UI_CSS, "text/css")),
        Route("/static/ui.js", static(UI_JS, "application/javascript")),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
    ]
    guard = Middleware(HostGuard, names=allowed_names(host, allowed_hosts))
    app = Starlette(routes=routes, middleware=[guard])
    app.state.ui = ui
    return app


def serve(
    config: Config,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    allow_review: bool = False,
    poll: float = 2.0,
    allowed_hosts: tuple[str, ...] = (),
) -> None:
    """Run the UI until interrupted."""
    import logging

    import uvicorn

    app = create_app(
        config, allow_review=allow_review, poll=poll, host=host, allowed_hosts=allowed_hosts
    )
    logging.getLogger("beam_pipeline").info(
        "UI of %s on http://%s:%d/ (reviews %s)",
        config.pipeline.name,
        host,
        port,
        "on" if allow_review else "off",
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _section(anchor: str, body: str) -> str:
    return f"<section id='{anchor}'>{body}</section>"
