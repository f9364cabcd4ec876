"""Runs the stage DAG: topological order, content-keyed caching, staged publishing, MLMD records."""

from __future__ import annotations

import dataclasses
import getpass
import logging
import shlex
import threading
import time
import uuid
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

from ml_metadata.proto import metadata_store_pb2 as pb

from beam_pipeline.core import liveness
from beam_pipeline.core.artifacts import Artifact, digest, stage_dir
from beam_pipeline.core.config import Config, to_dict
from beam_pipeline.core.errors import ConfigError, PipelineError, StageFailed, ValidationFailed
from beam_pipeline.core.executor import Execution, Executor, cache_key
from beam_pipeline.core.metadata import Store
from beam_pipeline.core.stage import Prepared, Stage, StageContext
from beam_pipeline.io import filesystem

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """The machine-readable summary `run --json` prints (DESIGN.md fixes its shape)."""

    run_id: str
    status: str = "running"
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    anomalies: list[dict[str, str]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    blessed: bool | None = None
    model_version: int | None = None
    pushed_version: int | None = None
    push_reason: str | None = None  # why the model was (not) pushed: "not blessed: auc ..."
    error: str | None = None
    exit_code: int = 0

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("exit_code")
        return d


def order(stages: dict[str, Stage]) -> list[str]:
    graph = {
        name: {ref.split(".")[0] for ref in s.inputs.values()} | set(s.after)
        for name, s in stages.items()
    }
    graph = {name: deps & set(stages) for name, deps in graph.items()}
    return list(TopologicalSorter(graph).static_order())


def select(names: list[str], from_: str | None, to: str | None, only: str | None) -> list[str]:
    for flag, value in (("--from", from_), ("--to", to), ("--only", only)):
        if value is not None and value not in names:
            raise ConfigError(f"{flag}: unknown stage {value!r}; expected one of {names}")
    if only:
        return [only]
    start = names.index(from_) if from_ else 0
    end = names.index(to) + 1 if to else len(names)
    return names[start:end]


def _after_outputs(stage: Stage, available: dict[str, Artifact]) -> dict[str, Artifact]:
    """Outputs of the stages ``stage`` runs after, from this run, keyed ``after:{stage}.{key}``."""
    return {
        f"after:{ref}": art for ref, art in available.items() if ref.split(".")[0] in stage.after
    }


def resume_command(command: str, stage: str) -> str:
    """The user's own command line (runner, Beam options, ``--set``, ``--to``, ``--json``...) with
    ``--from STAGE`` in place of any ``--from``; unchanged when it names ``--only``."""
    words = shlex.split(command)
    if "--only" in words or any(w.startswith("--only=") for w in words):
        return command
    kept: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word == "--from":
            skip = True
        elif not word.startswith("--from="):
            kept.append(word)
    return shlex.join([*kept, "--from", stage])


class Orchestrator:
    def __init__(
        self,
        config: Config,
        stages: dict[str, Stage],
        *,
        beam_args: list[str] | None = None,
        use_cache: bool = True,
        command: str = "",
        store: Store | None = None,
    ) -> None:
        self.config = config
        self.stages = stages
        self.beam_args = beam_args or []
        self.use_cache = use_cache
        self.command = command or f"beam-pipeline run {config.source_file}"
        self.store = store or Store(config)
        from beam_pipeline.runners.options import beam_args as all_beam_args

        filesystem.configure(all_beam_args(config, self.beam_args), _uris(config))

    # ------------------------------------------------------------------------------------------

    def run(
        self, from_: str | None = None, to: str | None = None, only: str | None = None
    ) -> RunResult:
        names = order(self.stages)
        selected = select(names, from_, to, only)
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        result = RunResult(run_id)
        started = time.time()
        self._reconcile()
        run_ctx = self.store.run_context(
            run_id,
            started=started,
            status="running",
            command=self.command,
            user=getpass.getuser(),
            config=self.config.source_file,
            **liveness.identity(),
        )
        needed = self._needed(selected)
        available: dict[str, Artifact] = {}
        heartbeat = _Heartbeat(self.config, run_id)
        try:
            for name in names:
                stage = self.stages[name]
                if name not in selected:
                    if name in needed:
                        available.update(self._latest_outputs(stage))
                    result.stages[name] = {"status": "skipped"}
                    continue
                if result.status != "running":
                    result.stages[name] = {"status": "skipped"}
                    continue
                self._run_stage(stage, run_ctx, available, result)
            if result.status == "running":
                result.status = "completed"
        except PipelineError as exc:
            result.error = str(exc)
            result.exit_code = exc.exit_code
            if isinstance(exc, ValidationFailed):
                result.status = "stopped"
                result.anomalies = result.anomalies or [
                    {**a, "blocking": True} for a in exc.anomalies
                ]
            else:
                result.status = "failed"
            for name in names:
                result.stages.setdefault(name, {"status": "skipped"})
        except BaseException as exc:  # Ctrl-C, a bug: the run does not stay "running"
            result.status = "canceled" if isinstance(exc, KeyboardInterrupt) else "failed"
            result.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            heartbeat.stop()
            failed = [n for n, s in result.stages.items() if s.get("status") == "failed"]
            self._close_run(
                run_id,
                status=result.status,
                stage=failed[0] if failed else "",
                finished=time.time(),
                seconds=round(time.time() - started, 3),
                summary=result.to_json(),
            )
        return result

    def _close_run(self, run_id: str, **properties: Any) -> None:
        """The run's final record; a store that refuses it leaves the run to be settled later
        (its process will be gone), which is said, not raised over the run's own outcome."""
        try:
            self.store.run_context(run_id, **properties)
        except Exception as exc:
            log.error("metadata: cannot record the end of run %s: %s", run_id, exc)

    def _resume(self, stage: Stage) -> str:
        return resume_command(self.command, stage.name)

    def _needed(self, selected: list[str]) -> set[str]:
        """Stages outside the selection whose outputs the selected stages read."""
        needed: set[str] = set()
        for name in selected:
            for ref in self.stages[name].inputs.values():
                needed.add(ref.split(".")[0])
        return needed - set(selected)

    def _latest_outputs(self, stage: Stage) -> dict[str, Artifact]:
        """Outputs of the newest completed execution of a stage (for --from/--only)."""
        outs = self.store.latest_outputs(stage.name)
        return {f"{stage.name}.{k}": a for k, a in outs.items()}

    # ------------------------------------------------------------------------------------------

    def _run_stage(
        self, stage: Stage, run_ctx: pb.Context, available: dict[str, Artifact], result: RunResult
    ) -> None:
        t0 = time.time()
        inputs: dict[str, Artifact] = {}
        for key, ref in stage.inputs.items():
            if ref in available:
                inputs[key] = available[ref]
            elif key not in stage.optional_inputs:
                raise StageFailed(
                    stage.name,
                    f"input {key!r} ({ref}) has no completed result; "
                    f"run {ref.split('.')[0]!r} first",
                    self._resume(stage),
                )
        section = self.config.section(stage.section_name)
        ctx = StageContext(
            stage.name, self.config, self.store, result.run_id, Path(), self.beam_args
        )
        try:
            prepared = stage.prepare(section, inputs, ctx) if stage.prepare else Prepared()
        except PipelineError as exc:
            result.stages[stage.name] = {"status": "failed", "seconds": round(time.time() - t0, 2)}
            raise StageFailed(stage.name, str(exc), self._resume(stage), exc.exit_code) from exc
        except Exception as exc:
            result.stages[stage.name] = {"status": "failed", "seconds": round(time.time() - t0, 2)}
            raise StageFailed(
                stage.name, f"{type(exc).__name__}: {exc}", self._resume(stage)
            ) from exc
        all_inputs = {**inputs, **prepared.inputs}
        # What the stage ran after (validate's anomalies for transform) is recorded as an input
        # for lineage only: the stage does not read it and it is not part of the cache key.
        recorded = {**all_inputs, **_after_outputs(stage, available)}
        keyed_config = {k: v for k, v in to_dict(section).items() if k not in stage.cache_exempt}
        key = cache_key(stage.name, keyed_config, prepared.key, inputs=all_inputs)
        base_props = {
            "run_id": result.run_id,
            "cache_key": key,
            "config": to_dict(section),
            "module_hash": prepared.key.get("module_hash", ""),
            "started": t0,
        }
        executor = Executor(self.store, run_ctx, self.config.root)
        executor.abandon_dead(stage.name)
        cached = executor.cached(stage.name, key, stage.outputs) if self.use_cache else None
        if cached is not None:
            exec_id = executor.reuse(stage.name, cached, inputs=recorded, properties=base_props)
            log.info("%s: cached (execution %s)", stage.name, exec_id)
            self._record(stage, result, "cached", t0, cached, available)
            return

        def write(execution: Execution) -> dict[str, Artifact]:
            log.info("%s: started (execution %s)", stage.name, execution.id)
            run_ctx_ = dataclasses.replace(
                ctx, output_dir=execution.output_dir, prepared=prepared.state
            )
            return stage.run(section, all_inputs, run_ctx_)

        try:
            done = executor.execute(
                stage.name,
                write,
                destination=lambda exec_id: stage_dir(self.config.root, stage.name, exec_id),
                inputs=recorded,
                properties=base_props,
                expected=stage.outputs,
                fingerprint=lambda out, exec_id: output_fingerprint(
                    stage, key, out, result.run_id, exec_id
                ),
            )
        except BaseException as exc:
            result.stages[stage.name] = {"status": "failed", "seconds": round(time.time() - t0, 2)}
            if isinstance(exc, StageFailed):
                raise StageFailed(
                    stage.name, exc.message, self._resume(stage), exc.exit_code
                ) from exc
            if isinstance(exc, PipelineError):
                raise StageFailed(stage.name, str(exc), self._resume(stage), exc.exit_code) from exc
            if isinstance(exc, Exception):
                raise StageFailed(
                    stage.name, f"{type(exc).__name__}: {exc}", self._resume(stage)
                ) from exc
            raise
        log.info("%s: completed in %.1f s → %s", stage.name, time.time() - t0, done.destination)
        self._record(stage, result, "completed", t0, done.outputs, available)

    def _record(
        self,
        stage: Stage,
        result: RunResult,
        status: str,
        t0: float,
        outputs: dict[str, Artifact],
        available: dict[str, Artifact],
    ) -> None:
        result.stages[stage.name] = {
            "status": status,
            "seconds": round(time.time() - t0, 2),
            "outputs": {k: a.brief() for k, a in outputs.items()},
        }
        for key, art in outputs.items():
            available[f"{stage.name}.{key}"] = art
            _summarize(art, result)
        if stage.gate is not None:
            try:
                stage.gate(self.config.section(stage.section_name), outputs)
            except ValidationFailed:
                result.stages[stage.name]["status"] = "stopped"
                raise

    def _reconcile(self) -> None:
        """Before a run: executions and runs whose process is gone are marked as what they are."""
        executor = Executor(self.store, root=self.config.root)
        for name in self.stages:
            executor.abandon_dead(name)
        self.store.settle_runs()


def output_fingerprint(stage: Stage, cache_key: str, key: str, run_id: str, exec_id: int) -> str:
    """What identifies an output: its cache key when the stage is deterministic; otherwise also the
    execution that produced it, so that two trainings from the same inputs (``--no-cache``,
    concurrent runs) are two models, and a downstream cache hit is for the exact artifact."""
    if stage.deterministic:
        return digest(cache_key, key)
    return digest(cache_key, key, run_id, exec_id)


def _summarize(art: Artifact, result: RunResult) -> None:
    """Copy what the run summary reports (metrics, blessing, versions) from output properties."""
    p = art.properties
    if isinstance(p.get("metrics"), dict):
        result.metrics.update(p["metrics"])
    if "blessed" in p:
        result.blessed = bool(p["blessed"])
    if "model_version" in p:
        result.model_version = int(p["model_version"])
    if "pushed_version" in p and p["pushed_version"] is not None:
        result.pushed_version = int(p["pushed_version"])
    if "pushed" in p and "reason" in p:
        result.push_reason = str(p["reason"])
    if isinstance(p.get("blocking"), list) and isinstance(p.get("counts"), dict):  # validate's
        warnings = list(p.get("warnings") or [])
        result.anomalies = [{**a, "blocking": True} for a in p["blocking"]] + [
            {**w, "blocking": False} for w in warnings
        ]


def _uris(config: Config) -> list[str]:
    """The configured locations that may need a filesystem registered with TensorFlow."""
    uris = [config.pipeline.root]
    for name in ("ingest", "push"):
        section = config.stages.get(name)
        uris += [str(v) for v in vars(section).values() if isinstance(v, str)] if section else []
    return uris


class _Heartbeat:
    """Refreshes the run's heartbeat (its lease) from a thread with its own store connection,
    so that another machine can tell a live run from a dead one
    (see `beam_pipeline.core.liveness`)."""

    def __init__(self, config: Config, run_id: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, args=(config, run_id), name="heartbeat", daemon=True
        )
        self._thread.start()

    def _beat(self, config: Config, run_id: str) -> None:
        store: Store | None = None
        while not self._stop.wait(liveness.HEARTBEAT_S):
            try:
                store = store or Store(config)
                store.heartbeat(run_id)
            except Exception as exc:  # a missed beat only shortens the lease; say so
                log.warning("heartbeat of run %s failed: %s", run_id, exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
