"""ML Metadata: the store, the types, and the few queries the platform needs.

Contexts: one ``pipeline`` context per pipeline name and one ``run`` context per run. Executions:
one per stage per run (type = the stage name). Artifacts: the types in `artifacts.TYPES`. Events
tie them together; that is the lineage.

All values are stored as custom properties; structured ones as JSON strings.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from ml_metadata import errors as mlmd_errors
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

from beam_pipeline.core import liveness
from beam_pipeline.core.artifacts import TYPES, Artifact
from beam_pipeline.core.config import Config, MetadataSection
from beam_pipeline.core.errors import ConfigError, PipelineError
from beam_pipeline.io import filesystem

log = logging.getLogger(__name__)
T = TypeVar("T")

PIPELINE_CONTEXT = "pipeline"
RUN_CONTEXT = "run"
RETRIES = 20  # SQLite "database is locked" while another run writes: wait and retry


class MetadataError(PipelineError):
    """The metadata store cannot be reached or refused a write."""


def sqlite_path(section: MetadataSection, root: Path) -> Path:
    return Path(section.path) if section.path else root / "metadata.sqlite"


def connection_config(
    section: MetadataSection, root: Path, create: bool = True
) -> pb.ConnectionConfig:
    """How to reach the store. ``create=False`` (read-only commands): a SQLite file that does not
    exist yet is not created; an empty in-memory store stands in for it."""
    cfg = pb.ConnectionConfig()
    if section.backend == "memory":
        cfg.fake_database.SetInParent()
    elif section.backend == "sqlite":
        if not section.path and "://" in str(root):
            raise ConfigError(
                f"metadata.path: SQLite needs a local file, and pipeline.root is {root}; set "
                "metadata.path to a local file (one launcher) or use backend mysql/postgresql"
            )
        path = sqlite_path(section, root)
        if not create and not path.is_file():
            cfg.fake_database.SetInParent()
            return cfg
        filesystem.makedirs(path.parent)
        cfg.sqlite.filename_uri = str(path)
        cfg.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    elif section.backend == "mysql":
        cfg.mysql.host = section.host
        cfg.mysql.port = section.port or 3306
        cfg.mysql.database = section.database
        cfg.mysql.user = section.user
        cfg.mysql.password = section.password()
    elif section.backend == "postgresql":
        cfg.postgresql.host = section.host
        cfg.postgresql.port = str(section.port or 5432)
        cfg.postgresql.dbname = section.database
        cfg.postgresql.user = section.user
        cfg.postgresql.password = section.password()
    else:  # pragma: no cover - the config loader checks the literal
        raise ConfigError(f"metadata.backend: unknown backend {section.backend!r}")
    return cfg


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__name__", "a call")


def _is_transient(exc: Exception) -> bool:
    text = str(exc).lower()
    return isinstance(exc, mlmd_errors.AbortedError) or "locked" in text or "busy" in text


# ML Metadata's PostgreSQL backend builds SQL text with an escaping that a backslash breaks
# (`InternalError: syntax error`), and JSON escapes quotes with backslashes. A string holding one
# is stored base64-encoded under this prefix on every backend, so all of them read the same.
_B64 = "b64:"


def encode(value: Any) -> pb.Value:
    v = pb.Value()
    if isinstance(value, bool):  # read back as a boolean, not 1/0 (JSON output, lineage)
        text = "json:" + json.dumps(value)
    elif isinstance(value, int):
        v.int_value = value
        return v
    elif isinstance(value, float):
        v.double_value = value
        return v
    elif isinstance(value, str):
        text = value
    else:
        text = "json:" + json.dumps(value, sort_keys=True, default=str)
    if "\\" in text or text.startswith(_B64):
        text = _B64 + base64.b64encode(text.encode()).decode()
    v.string_value = text
    return v


def decode(v: pb.Value) -> Any:
    kind = v.WhichOneof("value")
    if kind == "string_value":
        s = v.string_value
        if s.startswith(_B64):
            s = base64.b64decode(s[len(_B64) :]).decode()
        return json.loads(s[5:]) if s.startswith("json:") else s
    return getattr(v, kind) if kind else None


def props(message: Any) -> dict[str, Any]:
    return {k: decode(v) for k, v in message.custom_properties.items()}


class Store:
    """A thin, retrying wrapper over `MetadataStore` speaking the platform's terms."""

    def __init__(self, config: Config, *, create: bool = True) -> None:
        """Open the store of a config; ``create=False`` for commands that only read, so that a
        wrong or early command leaves no store (and no pipeline root) behind."""
        self.pipeline_name = config.pipeline.name
        section = config.metadata
        try:
            self._store = metadata_store.MetadataStore(
                connection_config(section, config.root, create)
            )
        except ConfigError:
            raise
        except Exception as exc:  # MLMD raises its own status errors; name the backend
            where = (
                f"{section.host}:{section.port}/{section.database}"
                if section.backend in ("mysql", "postgresql")
                else section.path or config.root / "metadata.sqlite"
            )
            raise MetadataError(
                f"metadata: cannot open the {section.backend} store at {where}: {exc}"
            ) from exc
        self._type_ids: dict[tuple[str, str], int] = {}

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one store call, retrying while SQLite reports a lock held by another run."""
        delay = 0.05
        for attempt in range(RETRIES):
            try:
                return fn(*args, **kwargs)
            except mlmd_errors.StatusError as exc:
                if not _is_transient(exc) or attempt == RETRIES - 1:
                    if _is_transient(exc):
                        raise MetadataError(
                            f"metadata store still locked after {RETRIES} tries: {exc}"
                        ) from exc
                    if isinstance(exc, (mlmd_errors.NotFoundError, mlmd_errors.AlreadyExistsError)):
                        raise  # answers that callers handle
                    raise MetadataError(f"metadata store refused {_name(fn)}: {exc}") from exc
                log.debug("metadata store busy (%s); retrying in %.2fs", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")

    # ---- types ----------------------------------------------------------------------------

    def _type_id(self, kind: str, name: str) -> int:
        key = (kind, name)
        if key not in self._type_ids:
            if kind == "artifact":
                t = pb.ArtifactType(name=name, description=TYPES.get(name, ""))
                self._type_ids[key] = self.call(self._store.put_artifact_type, t)
            elif kind == "execution":
                self._type_ids[key] = self.call(
                    self._store.put_execution_type, pb.ExecutionType(name=name)
                )
            else:
                self._type_ids[key] = self.call(
                    self._store.put_context_type, pb.ContextType(name=name)
                )
        return self._type_ids[key]

    # ---- contexts -------------------------------------------------------------------------

    def _context(
        self, kind: str, name: str, properties: dict[str, Any] | None = None
    ) -> pb.Context:
        type_id = self._type_id("context", kind)
        ctx = self.call(self._store.get_context_by_type_and_name, kind, name)
        if ctx is None:
            ctx = pb.Context(type_id=type_id, name=name)
        for k, v in (properties or {}).items():
            ctx.custom_properties[k].CopyFrom(encode(v))
        try:
            [ctx.id] = self.call(self._store.put_contexts, [ctx])
        except mlmd_errors.AlreadyExistsError:  # a concurrent run created it first
            ctx = self.call(self._store.get_context_by_type_and_name, kind, name)
        return ctx

    def pipeline_context(self) -> pb.Context:
        return self._context(PIPELINE_CONTEXT, self.pipeline_name)

    def run_context(self, run_id: str, **properties: Any) -> pb.Context:
        return self._context(RUN_CONTEXT, f"{self.pipeline_name}.{run_id}", properties)

    def runs(self) -> list[dict[str, Any]]:
        """Every run of this pipeline, oldest first."""
        out = []
        for ctx in self.call(self._store.get_contexts_by_type, RUN_CONTEXT):
            if ctx.name.startswith(self.pipeline_name + "."):
                out.append({"id": ctx.id, "run_id": ctx.name.split(".", 1)[1], **props(ctx)})
        return sorted(out, key=lambda r: r.get("started", 0))

    def heartbeat(self, run_id: str) -> None:
        """Refresh a run's lease (see `beam_pipeline.core.liveness`)."""
        ctx = self.call(
            self._store.get_context_by_type_and_name, RUN_CONTEXT, f"{self.pipeline_name}.{run_id}"
        )
        if ctx is not None:
            ctx.custom_properties["heartbeat"].CopyFrom(encode(time.time()))
            self.call(self._store.put_contexts, [ctx])

    def settle_runs(self, write: bool = True) -> list[dict[str, Any]]:
        """Every run, where a ``running`` run whose process is gone reads as what its executions
        say: ``failed`` (a FAILED execution; ``stage`` names it) or ``canceled`` (killed; ``stage``
        names the stage it was in). ``write``: record that in the store, so it is said once."""
        runs = self.runs()
        for run in runs:
            if run.get("status") != "running" or "pid" not in run or liveness.alive(run):
                continue
            run["status"], run["stage"], run["settled"] = "canceled", "", True
            for ex in sorted(self.run_executions(run["id"]), key=lambda e: e.id):
                if ex.last_known_state == pb.Execution.FAILED:
                    run["status"], run["stage"] = "failed", self.execution_type_name(ex)
                    break
                if ex.last_known_state in (pb.Execution.RUNNING, pb.Execution.CANCELED):
                    run["stage"] = self.execution_type_name(ex)
            if write:
                self.run_context(run["run_id"], status=run["status"], stage=run["stage"])
        return runs

    # ---- executions -----------------------------------------------------------------------

    def dead_executions(self, stage: str) -> list[pb.Execution]:
        """RUNNING executions of ``stage`` whose process is gone (pid, start time, host, boot,
        and the run's heartbeat as the lease; see `beam_pipeline.core.liveness`)."""
        running = [e for e in self.executions(stage) if e.last_known_state == pb.Execution.RUNNING]
        if not running:
            return []
        beats = {r["run_id"]: r.get("heartbeat") for r in self.runs()}
        dead = []
        for ex in running:
            holder = props(ex)
            beat = [b for b in (holder.get("heartbeat"), beats.get(holder.get("run_id"))) if b]
            holder["heartbeat"] = max(beat) if beat else None
            if "pid" in holder and not liveness.alive(holder):
                dead.append(ex)
        return dead

    def start_execution(
        self, stage: str, run_ctx: pb.Context | None, properties: dict[str, Any]
    ) -> int:
        """A RUNNING execution in the pipeline context (and the run's, inside a run)."""
        ex = pb.Execution(type_id=self._type_id("execution", stage))
        ex.last_known_state = pb.Execution.RUNNING
        for k, v in properties.items():
            ex.custom_properties[k].CopyFrom(encode(v))
        exec_id, _, _ = self.call(
            self._store.put_execution,
            ex,
            [],
            self._contexts(run_ctx),
            reuse_context_if_already_exist=True,
        )
        return exec_id

    def finish_execution(
        self,
        exec_id: int,
        state: int,
        run_ctx: pb.Context | None,
        inputs: dict[str, Artifact],
        outputs: dict[str, Artifact],
        properties: dict[str, Any],
    ) -> None:
        """Record the end of an execution, its events and (new) output artifacts in one write."""
        [ex] = self.call(self._store.get_executions_by_id, [exec_id])
        ex.last_known_state = state
        self._write(ex, properties, inputs, outputs, self._contexts(run_ctx))

    def _contexts(self, run_ctx: pb.Context | None) -> list[pb.Context]:
        return [self.pipeline_context(), *([run_ctx] if run_ctx is not None else [])]

    def record_execution(
        self,
        kind: str,
        properties: dict[str, Any],
        inputs: dict[str, Artifact] | None = None,
        outputs: dict[str, Artifact] | None = None,
    ) -> int:
        """One COMPLETE execution of type ``kind`` outside a run (a review, a rollback, a scoring
        job), in the pipeline context, with its events. Returns its id."""
        ex = pb.Execution(type_id=self._type_id("execution", kind))
        ex.last_known_state = pb.Execution.COMPLETE
        return self._write(ex, properties, inputs or {}, outputs or {}, [self.pipeline_context()])

    def _write(
        self,
        ex: pb.Execution,
        properties: dict[str, Any],
        inputs: dict[str, Artifact],
        outputs: dict[str, Artifact],
        contexts: list[pb.Context],
    ) -> int:
        """Put an execution with its events. Artifacts that already have an id are linked as they
        are stored (their properties untouched); new ones are registered LIVE and get their id."""
        for k, v in properties.items():
            ex.custom_properties[k].CopyFrom(encode(v))
        pairs = []
        for kind, arts in ((pb.Event.INPUT, inputs), (pb.Event.OUTPUT, outputs)):
            for key, art in arts.items():
                pairs.append((self._stored_or_new(art), _event(kind, key)))
        exec_id, art_ids, _ = self.call(
            self._store.put_execution, ex, pairs, contexts, reuse_context_if_already_exist=True
        )
        for art, art_id in zip([*inputs.values(), *outputs.values()], art_ids, strict=True):
            art.id = art_id
        return exec_id

    def _stored_or_new(self, art: Artifact) -> pb.Artifact:
        if art.id is not None:
            [proto] = self.call(self._store.get_artifacts_by_id, [art.id])
            return proto
        return self._to_proto(art)

    def update_execution(self, ex: pb.Execution) -> None:
        self.call(self._store.put_executions, [ex])

    def execution(self, exec_id: int) -> pb.Execution:
        [ex] = self.call(self._store.get_executions_by_id, [exec_id])
        return ex

    def executions(self, stage: str) -> list[pb.Execution]:
        try:
            return list(self.call(self._store.get_executions_by_type, stage))
        except mlmd_errors.NotFoundError:
            return []

    def execution_outputs(self, exec_id: int) -> dict[str, Artifact]:
        events = self.call(self._store.get_events_by_execution_ids, [exec_id])
        outs = {_key(e): e.artifact_id for e in events if e.type == pb.Event.OUTPUT}
        arts = self.artifacts(list(outs.values()))
        by_id = {a.id: a for a in arts}
        return {k: by_id[i] for k, i in outs.items() if i in by_id}

    def latest_outputs(self, stage: str, required: bool = False) -> dict[str, Artifact]:
        """Outputs (key -> artifact) of the newest COMPLETE or CACHED execution of ``stage`` whose
        outputs are all still usable; {} when there is none (a ConfigError when ``required``).
        The one rule for ``--from``/``--only`` and for tuning and training workers."""
        from beam_pipeline.core.artifacts import usable

        for ex in sorted(self.executions(stage), key=lambda e: -e.id):
            if ex.last_known_state in (pb.Execution.COMPLETE, pb.Execution.CACHED):
                outs = self.execution_outputs(ex.id)
                if outs and all(usable(a) for a in outs.values()):
                    return outs
        if required:
            raise ConfigError(
                f"no completed {stage!r} execution in the metadata store; run it first"
            )
        return {}

    def execution_inputs(self, exec_id: int) -> dict[str, Artifact]:
        events = self.call(self._store.get_events_by_execution_ids, [exec_id])
        ins = {_key(e): e.artifact_id for e in events if e.type == pb.Event.INPUT}
        by_id = {a.id: a for a in self.artifacts(list(ins.values()))}
        return {k: by_id[i] for k, i in ins.items() if i in by_id}

    def run_executions(self, run_ctx_id: int) -> list[pb.Execution]:
        return list(self.call(self._store.get_executions_by_context, run_ctx_id))

    def execution_types(self) -> list[str]:
        """Every execution type the store knows (stages, reviews, scoring jobs...)."""
        return sorted(t.name for t in self.call(self._store.get_execution_types))

    def execution_type_name(self, ex: pb.Execution) -> str:
        [t] = self.call(self._store.get_execution_types_by_id, [ex.type_id])
        return t.name

    # ---- artifacts ------------------------------------------------------------------------

    def _to_proto(self, art: Artifact) -> pb.Artifact:
        a = pb.Artifact(type_id=self._type_id("artifact", art.type), uri=art.uri)
        if art.id is not None:
            a.id = art.id
        a.state = pb.Artifact.LIVE
        for k, v in {**art.properties, "fingerprint": art.fingerprint}.items():
            if not k.startswith("_"):  # "_state" and the like are read back, never stored
                a.custom_properties[k].CopyFrom(encode(v))
        return a

    def artifacts(self, ids: Iterable[int]) -> list[Artifact]:
        ids = list(ids)
        if not ids:
            return []
        protos = self.call(self._store.get_artifacts_by_id, ids)
        type_names = {
            t.id: t.name
            for t in self.call(
                self._store.get_artifact_types_by_id, list({a.type_id for a in protos})
            )
        }
        out = []
        for a in protos:
            p = props(a)
            fingerprint = p.pop("fingerprint", "")
            art = Artifact(type_names[a.type_id], a.uri, p, fingerprint, a.id)
            art.properties["_state"] = pb.Artifact.State.Name(a.state)
            out.append(art)
        return out

    def artifacts_of_type(self, type_name: str, live_only: bool = True) -> list[Artifact]:
        """Artifacts of a type in this pipeline (LIVE ones unless told otherwise), newest first."""
        ctx = self.pipeline_context()
        arts = self.call(self._store.get_artifacts_by_context, ctx.id)
        type_id = self._type_id("artifact", type_name)
        ids = [
            a.id
            for a in arts
            if a.type_id == type_id and (a.state == pb.Artifact.LIVE or not live_only)
        ]
        return sorted(self.artifacts(ids), key=lambda a: -(a.id or 0))

    def mark_deleted(self, art: Artifact) -> None:
        [a] = self.call(self._store.get_artifacts_by_id, [art.id])
        a.state = pb.Artifact.DELETED
        self.call(self._store.put_artifacts, [a])

    # ---- lineage --------------------------------------------------------------------------

    def producer(self, artifact_id: int) -> int | None:
        """The execution that output this artifact first (cached executions reuse it later)."""
        events = self.call(self._store.get_events_by_artifact_ids, [artifact_id])
        outs = sorted(e.execution_id for e in events if e.type == pb.Event.OUTPUT)
        return outs[0] if outs else None

    def consumers(self, artifact_id: int) -> list[int]:
        events = self.call(self._store.get_events_by_artifact_ids, [artifact_id])
        return sorted({e.execution_id for e in events if e.type == pb.Event.INPUT})

    def lineage(self, artifact_id: int) -> dict[str, Any]:
        """An artifact and, recursively, the execution that produced it and that one's inputs."""
        [art] = self.artifacts([artifact_id])
        node: dict[str, Any] = {"artifact": _describe(art)}
        exec_id = self.producer(artifact_id)
        if exec_id is not None:
            [ex] = self.call(self._store.get_executions_by_id, [exec_id])
            p = props(ex)
            node["produced_by"] = {
                "execution": exec_id,
                "stage": self.execution_type_name(ex),
                "state": pb.Execution.State.Name(ex.last_known_state),
                "run_id": p.get("run_id"),
                "cache_key": p.get("cache_key", "")[:16],
                "module_hash": p.get("module_hash", "")[:16] or None,
                "config": p.get("config"),
                "inputs": {
                    key: self.lineage(a.id)  # type: ignore[arg-type]
                    for key, a in self.execution_inputs(exec_id).items()
                },
            }
        return node

    def close(self) -> None:
        self._store = None  # type: ignore[assignment]


def _event(kind: int, key: str) -> pb.Event:
    e = pb.Event(type=kind)
    e.path.steps.add().key = key
    return e


def _key(e: pb.Event) -> str:
    return e.path.steps[0].key if e.path.steps else ""


def _describe(art: Artifact) -> dict[str, Any]:
    shown = {k: v for k, v in art.properties.items() if not k.startswith("_")}
    return {
        "id": art.id,
        "type": art.type,
        "uri": art.uri,
        "fingerprint": art.fingerprint[:16],
        "state": art.properties.get("_state"),
        **shown,
    }
