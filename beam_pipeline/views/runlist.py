"""The runs list: one row per run (a notebook session's stage-runs folded into one), with its
stages in pipeline order, metrics and parameters as columns, and sort, filter and paging.

Everything is computed on the server from ML Metadata (the list works without scripts): the UI
passes the query string in and gets the table, the pager and the filter form back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from beam_pipeline.core.stage_sections import STAGE_ORDER
from beam_pipeline.views.artifacts import Raw, esc, table
from beam_pipeline.views.runs import STATE, label_tags, overrides, when
from beam_pipeline.views.svg import fmt

if TYPE_CHECKING:
    from beam_pipeline.core.metadata import Store

STATUSES = ("completed", "failed", "stopped", "running", "canceled")
# Metrics shown as columns, in this order when present (the rest follow alphabetically).
METRIC_ORDER = ("auc", "accuracy", "precision", "recall", "log_loss", "rmse", "mae")
HIDDEN_METRICS = {"example_count", "label_mean", "prediction_mean"}
PER_PAGE = 25


@dataclass
class RunRow:
    """One line of the list: a run, or a notebook session (its stage-runs merged)."""

    run_id: str
    status: str
    started: float | None
    seconds: float | None
    stages: dict[str, str]  # stage -> status, in pipeline order
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    model_version: int | None = None
    command: str = ""
    user: str = ""
    session: str = ""
    members: list[str] = field(default_factory=list)  # a session's runs, oldest first

    def value(self, key: str) -> Any:
        """The cell a column sorts on: a field, ``metric:NAME`` or ``param:NAME``."""
        kind, _, name = key.partition(":")
        if kind == "metric":
            return self.metrics.get(name)
        if kind == "param":
            return self.params.get(name)
        return getattr(self, key, None)


@dataclass(frozen=True)
class RunsQuery:
    """What the list shows: ``?q=`` text filter, ``status=``, ``sort=`` (a column key),
    ``desc=1|0``, ``page=`` (from 1)."""

    q: str = ""
    status: str = ""
    sort: str = "started"
    desc: bool = True
    page: int = 1
    per_page: int = PER_PAGE

    @classmethod
    def parse(cls, params: Any) -> RunsQuery:
        def integer(name: str, default: int) -> int:
            text = str(params.get(name) or "")
            return int(text) if text.isdigit() and int(text) > 0 else default

        return cls(
            q=str(params.get("q") or "").strip(),
            status=str(params.get("status") or ""),
            sort=str(params.get("sort") or "started"),
            desc=str(params.get("desc", "1")) != "0",
            page=integer("page", 1),
            per_page=min(integer("per_page", PER_PAGE), 500),
        )

    def url(self, **changes: Any) -> str:
        d = {
            "q": self.q,
            "status": self.status,
            "sort": self.sort,
            "desc": "1" if self.desc else "0",
            "page": self.page,
        }
        d.update(changes)
        return "?" + urlencode({k: v for k, v in d.items() if v not in ("", None)})


def ordered_stages(statuses: dict[str, str]) -> dict[str, str]:
    """Stages in pipeline order (`STAGE_ORDER`), others after them in their own order."""
    rank = {name: i for i, name in enumerate(STAGE_ORDER)}
    names = sorted(statuses, key=lambda n: (rank.get(n, len(rank)), list(statuses).index(n)))
    return {n: statuses[n] for n in names}


def _stage_statuses(store: Store, record: dict[str, Any]) -> dict[str, str]:
    """From the run's summary; from its executions when it has none (a killed or running run)."""
    stages = (record.get("summary") or {}).get("stages") or {}
    if stages:
        return {k: str(v.get("status", "?")) for k, v in stages.items()}
    out = {}
    for ex in sorted(store.run_executions(record["id"]), key=lambda e: e.id):
        out[store.execution_type_name(ex)] = STATE.get(ex.last_known_state, "unknown")
    return out


def collect(store: Store) -> list[RunRow]:
    """Every run as a row, oldest first; runs of one notebook session (the Python API records a
    ``session`` on each run it makes) merge into one row."""
    records = store.runs()
    model_ids = {}
    for r in records:
        summary = r.get("summary") or {}
        out = ((summary.get("stages") or {}).get("train") or {}).get("outputs") or {}
        if (out.get("model") or {}).get("id") is not None:
            model_ids[r["run_id"]] = out["model"]["id"]
    models = {a.id: a for a in store.artifacts(sorted(set(model_ids.values())))}
    rows: list[RunRow] = []
    sessions: dict[str, RunRow] = {}
    for r in records:
        summary = r.get("summary") or {}
        params: dict[str, Any] = overrides(str(r.get("command") or ""))
        model = models.get(model_ids.get(r["run_id"]))
        hps = (model.properties if model else {}).get("hyperparameters") or {}
        for k, v in sorted(hps.items()):
            params.setdefault(k, v)
        metrics = {
            k: v
            for k, v in (summary.get("metrics") or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool) and k not in HIDDEN_METRICS
        }
        row = RunRow(
            run_id=r["run_id"],
            status=str(r.get("status") or "?"),
            started=r.get("started"),
            seconds=r.get("seconds"),
            stages=_stage_statuses(store, r),
            metrics=metrics,
            params=params,
            model_version=summary.get("model_version"),
            command=str(r.get("command") or ""),
            user=str(r.get("user") or ""),
            session=str(r.get("session") or ""),
            members=[r["run_id"]],
        )
        group = sessions.get(row.session) if row.session else None
        if group is None:
            rows.append(row)
            if row.session:
                sessions[row.session] = row
        else:
            _merge(group, row)
    return rows


def _merge(group: RunRow, run: RunRow) -> None:
    """A later stage-run of the same session: its stages replace the earlier ones they ran."""
    group.members.append(run.run_id)
    group.status = run.status
    for name, status in run.stages.items():
        if status != "skipped" or name not in group.stages:
            group.stages[name] = status
    group.metrics.update(run.metrics)
    group.params.update(run.params)
    group.model_version = run.model_version or group.model_version
    if run.started and group.started and run.seconds is not None:
        group.seconds = round(run.started + run.seconds - group.started, 3)


def _matches(row: RunRow, q: RunsQuery) -> bool:
    if q.status and row.status != q.status:
        return False
    if not q.q:
        return True
    text = " ".join(
        [
            *row.members,
            row.status,
            row.command,
            row.user,
            row.session,
            *(f"{k}={v}" for k, v in row.params.items()),
            *(f"{k}:{v}" for k, v in row.stages.items()),
        ]
    ).lower()
    return all(word in text for word in q.q.lower().split())


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None or value == "":
        return (2, 0)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, value)
    try:
        return (0, float(value))
    except (TypeError, ValueError):
        return (1, str(value).lower())


def select(rows: list[RunRow], q: RunsQuery) -> tuple[list[RunRow], int]:
    """The rows of the query's page (filtered, sorted) and how many matched in all."""
    kept = [r for r in rows if _matches(r, q)]
    present = [r for r in kept if r.value(q.sort) not in (None, "")]
    missing = [r for r in kept if r.value(q.sort) in (None, "")]  # always last
    present.sort(key=lambda r: _sort_key(r.value(q.sort)), reverse=q.desc)
    kept = present + missing
    start = (q.page - 1) * q.per_page
    return kept[start : start + q.per_page], len(kept)


def status_badge(status: str) -> Raw:
    return Raw(f'<span class="status {esc(status)}">{esc(status)}</span>')


def stage_chips(stages: dict[str, str]) -> Raw:
    chips = "".join(
        f'<span class="chip {esc(s)}" title="{esc(name)}: {esc(s)}" data-stage="{esc(name)}" '
        f'data-status="{esc(s)}">{esc(name)}</span>'
        for name, s in ordered_stages(stages).items()
    )
    return Raw(f'<span class="chips">{chips}</span>')


def _columns(rows: list[RunRow]) -> tuple[list[str], list[str]]:
    metrics = {k for r in rows for k in r.metrics}
    metric_cols = [m for m in METRIC_ORDER if m in metrics] + sorted(metrics - set(METRIC_ORDER))
    params = sorted({k for r in rows for k in r.params})
    return metric_cols, params


def runs_page(
    store: Store,
    query: RunsQuery,
    *,
    run_href: str = "/runs/{run}",
    model_href: str = "",
    labels: dict[int, list[str]] | None = None,
) -> str:
    """The filter form, the table of the page (headers sort) and the pager."""
    rows = collect(store)
    if not rows:
        return "<p class='muted'>no runs yet: run the pipeline first</p>"
    shown, total = select(rows, query)
    metric_cols, param_cols = _columns(rows)
    columns = [
        ("run_id", "run"),
        ("status", "status"),
        ("started", "started"),
        ("seconds", "seconds"),
        ("model_version", "model"),
        *((f"metric:{m}", m) for m in metric_cols),
        *((f"param:{p}", p) for p in param_cols),
    ]
    header = []
    for key, label in columns:
        desc = not query.desc if query.sort == key else key != "run_id"
        arrow = (" ▼" if query.desc else " ▲") if query.sort == key else ""
        cls = "param" if key.startswith("param:") else "metric" if key.startswith("metric:") else ""
        header.append(
            Raw(
                f'<a class="sort {cls}" data-key="{esc(key)}" '
                f'href="{esc(query.url(sort=key, desc="1" if desc else "0", page=1))}">'
                f"{esc(label)}{arrow}</a>"
            )
        )
    header.insert(5, Raw("stages"))
    body = []
    for r in shown:
        if len(r.members) > 1:
            links = " ".join(
                f'<a class="member" href="{esc(run_href.format(run=m))}">{esc(m)}</a>'
                for m in r.members
            )
            first = Raw(
                f'<details class="session"><summary>notebook session · {len(r.members)} '
                f"stage-runs</summary>{links}</details>"
            )
        else:
            first = Raw(
                f'<a class="run-link" href="{esc(run_href.format(run=r.run_id))}">'
                f"{esc(r.run_id)}</a>"
            )
        version: Any = r.model_version
        if version is not None:
            tags = label_tags(labels or {}, version)
            link = f"v{version}"
            if model_href:
                link = f'<a href="{esc(model_href.format(version=version))}">v{version}</a>'
            version = Raw(link + tags)
        body.append(
            [
                first,
                status_badge(r.status),
                when(r.started),
                r.seconds,
                version,
                stage_chips(r.stages),
                *(r.metrics.get(m) for m in metric_cols),
                *(_param(r.params.get(p)) for p in param_cols),
            ]
        )
    form = (
        "<form class='filter' method='get'>"
        f"<input type='search' name='q' value='{esc(query.q)}' placeholder='filter: run, "
        "user, stage:status, param=value' size='40' id='filter'> "
        "<select name='status' id='status-filter'><option value=''>any status</option>"
        + "".join(
            f"<option{' selected' if s == query.status else ''}>{esc(s)}</option>" for s in STATUSES
        )
        + "</select>"
        f"<input type='hidden' name='sort' value='{esc(query.sort)}'>"
        f"<input type='hidden' name='desc' value='{'1' if query.desc else '0'}'>"
        " <button type='submit'>Filter</button></form>"
    )
    pages = max(1, -(-total // query.per_page))
    pager = f"<p class='pager'>{fmt(total)} of {fmt(len(rows))} runs · page {query.page} of {pages}"
    if query.page > 1:
        pager += f" <a rel='prev' href='{esc(query.url(page=query.page - 1))}'>← newer</a>"
    if query.page < pages:
        pager += f" <a rel='next' href='{esc(query.url(page=query.page + 1))}'>older →</a>"
    pager += "</p>"
    grid = table(
        header, body, cls="runs", row_class=lambda row: "blocking" if "failed" in row[1] else ""
    )
    return form + pager + f"<div class='scroll'>{grid}</div>"


def _param(value: Any) -> Any:
    if isinstance(value, float):
        return fmt(value)
    return value
