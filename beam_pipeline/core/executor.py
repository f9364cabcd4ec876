"""The one execution path of every job that writes artifacts.

A training stage, ``score``, ``monitor`` and the retrain span writer all run through
`Executor.execute`, which gives each the same guarantees::

    executor = Executor(store)
    done = executor.execute(
        "score",                                  # the MLMD execution type
        write,                                    # write(execution) -> {key: Artifact}
        destination=Path("preds"),                # or a function of the execution id
        inputs={"model": model},                  # recorded as INPUT events (lineage)
        properties={"input": "in/*.csv"},         # recorded when the execution starts
    )
    done.id, done.outputs["result"].id, done.destination

1. **Start**: a RUNNING execution (with the process's identity, `core.liveness`, and the
   folders it will write) before any byte is written; RUNNING executions of the same type whose
   process is gone are first abandoned: marked CANCELED and what they wrote removed.
2. **Write**: ``write(execution)`` writes only under ``execution.output_dir``: a hidden staging
   folder beside the destination (local), or the destination itself, the execution's own prefix
   (object store: a prefix cannot be renamed). It returns the output artifacts (their URIs under
   ``output_dir``), or ``{}`` to publish nothing (the execution is then CANCELED, its folder gone).
3. **Publish** (local): one rename of the staging folder onto the destination; a destination
   that already exists (a user's empty output folder) receives the staged entries one rename
   each, their names recorded first so that a crash in between can still be cleaned up.
4. **Record**: COMPLETE with inputs, outputs (registered LIVE) and their events in one metadata
   write. That write is the commit point: an artifact is published exactly when it is recorded.

Any failure before the record removes what the execution wrote and records it FAILED (the error
is then raised as it was); a failed record removes the published output too. A process killed at
any point leaves a RUNNING execution that the next execution of the same type (or `doctor`)
abandons. Cache hits go through `cached` and `reuse`; fingerprints through `cache_key`.

Tests inject faults with `watch`: ``fn(kind, step)`` runs at each step of `STEPS` (a test may
raise or kill the process there); production code never sets one.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml_metadata.proto import metadata_store_pb2 as pb

from beam_pipeline import __version__
from beam_pipeline.core import liveness
from beam_pipeline.core.artifacts import (
    Artifact,
    digest,
    stage_dir,
    staging_dir,
    staging_path,
    usable,
)
from beam_pipeline.core.errors import ConfigError, PipelineError
from beam_pipeline.core.metadata import Store, encode, props
from beam_pipeline.io import filesystem

log = logging.getLogger(__name__)

STEPS = ("started", "written", "published", "recorded")
Watcher = Callable[[str, str], None]
_watchers: list[Watcher] = []


def watch(fn: Watcher) -> Callable[[], None]:
    """Test seam: call ``fn(kind, step)`` at each of `STEPS`; returns the function that stops it."""
    _watchers.append(fn)
    return lambda: _watchers.remove(fn)


def _step(kind: str, step: str) -> None:
    for fn in list(_watchers):
        fn(kind, step)


class RecordFailed(PipelineError):
    """The outputs were written but ML Metadata refused their record: they were removed."""


@dataclass
class Execution:
    """What ``write`` receives: where to write, and a place for properties known at the end."""

    id: int
    kind: str
    output_dir: Path  # a `Path`, or an `ObjectPath` on an object store (same API)
    destination: Path
    properties: dict[str, Any] = field(default_factory=dict)  # recorded with the outputs
    inputs: dict[str, Artifact] = field(default_factory=dict)  # inputs found while writing

    def output(self, key: str, type_name: str, **properties: Any) -> Artifact:
        """A new output artifact whose folder is ``{output_dir}/{key}`` (created here)."""
        uri = self.output_dir / key
        filesystem.makedirs(uri)
        return Artifact(type_name, str(uri), dict(properties))


@dataclass(frozen=True)
class Executed:
    """A recorded execution: its id, its outputs (with ids, URIs at the destination)."""

    id: int
    outputs: dict[str, Artifact]
    destination: Path
    seconds: float


def cache_key(kind: str, config: dict[str, Any], *parts: Any, inputs: dict[str, Artifact]) -> str:
    """What decides a cache hit: the kind, its config, extra material (a user module's source
    hash, a baseline), the package version and the inputs' fingerprints (never their ids)."""
    return digest(
        kind, config, __version__, *parts, {k: a.fingerprint for k, a in sorted(inputs.items())}
    )


class Executor:
    """Runs executions against one metadata store, inside a run (``run_ctx``) or outside one.

    ``root`` (the pipeline root) lets `abandon_dead` find the folders of stage executions recorded
    before executions kept their folders in their own properties.
    """

    def __init__(
        self, store: Store, run_ctx: pb.Context | None = None, root: Path | None = None
    ) -> None:
        self.store = store
        self.run_ctx = run_ctx
        self.root = root

    # ---- the one path ---------------------------------------------------------------------------

    def execute(
        self,
        kind: str,
        write: Callable[[Execution], dict[str, Artifact]],
        *,
        destination: Path | str | Callable[[int], Path],
        inputs: dict[str, Artifact] | None = None,
        properties: dict[str, Any] | None = None,
        expected: Iterable[str] = (),
        fingerprint: Callable[[str, int], str] | None = None,
    ) -> Executed:
        """Start, write, publish and record one execution of ``kind`` (see the module doc).

        Args:
            kind: the MLMD execution type ("ingest", "score", "monitor", ...).
            write: writes under ``execution.output_dir``; returns the output artifacts.
            destination: the published folder, or ``f(execution_id)`` for one per execution.
                An explicit one on an object store must be empty (it is the execution's prefix).
            inputs: input artifacts (already recorded, with ids) for lineage.
            properties: recorded when the execution starts (the cache key among them).
            expected: output keys ``write`` must return.
            fingerprint: ``f(key, execution_id)`` for outputs that have none; the default names
                the execution (two executions are two artifacts).

        Raises:
            Whatever ``write`` raised (after cleaning up); `RecordFailed` when the record failed.
        """
        t0 = time.time()
        inputs = dict(inputs or {})
        explicit = not callable(destination)
        self.abandon_dead(kind)
        if explicit and filesystem.is_remote(destination):
            if filesystem.files_under(destination):
                raise ConfigError(f"{destination}: an object-store output must be an empty prefix")
        exec_id = self._start(kind, {**(properties or {}), **liveness.identity()})
        final = filesystem.as_path(destination(exec_id) if callable(destination) else destination)
        remote = filesystem.is_remote(final)
        tmp = final if remote else staging_path(final, exec_id)
        # Where this execution writes, so that a crash can be cleaned up by whoever finds it.
        owned = remote or not final.exists()  # a folder the user made is kept, emptied
        self._update(exec_id, {"destination": str(final), "staging": str(tmp), "owned": owned})
        execution = Execution(exec_id, kind, tmp, final)  # type: ignore[arg-type]
        published: list[str] = []
        try:
            if not remote:
                filesystem.rmtree(tmp)
                filesystem.makedirs(tmp)
            _step(kind, "started")
            outputs = write(execution)
            missing = set(expected) - set(outputs)
            if missing:
                raise PipelineError(f"{kind}: did not produce outputs {sorted(missing)}")
            _step(kind, "written")
            if not outputs:
                filesystem.rmtree(tmp)
                self._finish(exec_id, pb.Execution.CANCELED, inputs, {}, {"reason": "no output"})
                return Executed(exec_id, {}, final, time.time() - t0)  # type: ignore[arg-type]
            if not remote:
                published = self._publish(exec_id, tmp, final)  # type: ignore[arg-type]
            _step(kind, "published")
        except BaseException as exc:
            self._discard(tmp, final, published, remote)
            error = {"error": f"{type(exc).__name__}: {exc}", "seconds": round(time.time() - t0, 3)}
            with contextlib.suppress(Exception):  # the store may be the reason; say what we can
                self._finish(exec_id, pb.Execution.FAILED, inputs, {}, error)
            raise
        for key, art in outputs.items():
            if not remote:
                art.uri = str(final / filesystem.as_path(art.uri).relative_to(tmp))
            art.fingerprint = art.fingerprint or (
                fingerprint(key, exec_id) if fingerprint else digest(kind, exec_id, key)
            )
        seconds = time.time() - t0
        inputs.update(execution.inputs)
        try:
            self._finish(
                exec_id,
                pb.Execution.COMPLETE,
                inputs,
                outputs,
                {**execution.properties, "seconds": round(seconds, 3)},
            )
        except Exception as exc:
            # Not recorded, so not published: remove it, then try to say FAILED. If the store
            # refuses that too, the execution stays RUNNING under this process, and the next
            # execution (or `doctor`) finds the process gone and cleans up after it.
            self._discard(tmp, final, published, remote)
            with contextlib.suppress(Exception):
                self._finish(
                    exec_id, pb.Execution.FAILED, inputs, {}, {"error": f"record failed: {exc}"}
                )
            raise RecordFailed(f"metadata: cannot record the outputs of {kind}: {exc}") from exc
        _step(kind, "recorded")
        return Executed(exec_id, outputs, final, seconds)  # type: ignore[arg-type]

    # ---- the cache ------------------------------------------------------------------------------

    def cached(self, kind: str, key: str, outputs: Iterable[str]) -> dict[str, Artifact] | None:
        """The outputs of the newest COMPLETE execution of ``kind`` with cache key ``key`` whose
        outputs (at least ``outputs``) are all still LIVE and on disk; None when there is none."""
        for ex in sorted(self.store.executions(kind), key=lambda e: -e.id):
            if ex.last_known_state != pb.Execution.COMPLETE or props(ex).get("cache_key") != key:
                continue
            found = self.store.execution_outputs(ex.id)
            if set(found) >= set(outputs) and all(usable(a) for a in found.values()):
                return found
        return None

    def reuse(
        self,
        kind: str,
        outputs: dict[str, Artifact],
        *,
        inputs: dict[str, Artifact],
        properties: dict[str, Any],
    ) -> int:
        """Record a CACHED execution of ``kind`` that produced ``outputs`` (found by `cached`)."""
        t0 = time.time()
        exec_id = self._start(kind, {**properties, **liveness.identity()})
        self._finish(
            exec_id, pb.Execution.CACHED, inputs, outputs, {"seconds": round(time.time() - t0, 3)}
        )
        return exec_id

    # ---- crashes --------------------------------------------------------------------------------

    def abandon_dead(self, kind: str) -> list[pb.Execution]:
        """Mark RUNNING executions of ``kind`` whose process is gone CANCELED and remove what
        they wrote: the staging folder, and a destination published but never recorded.
        Returns those executions."""
        dead = self.store.dead_executions(kind)
        for ex in dead:
            p = props(ex)
            if p.get("staging"):
                folders = [p["staging"]] + ([p["destination"]] if p.get("owned") else [])
            else:
                root = self.root
                folders = (
                    []
                    if root is None
                    else [
                        str(staging_dir(root, kind, ex.id)),
                        str(stage_dir(root, kind, ex.id)),
                    ]
                )
            where = filesystem.as_path(p.get("destination", ""))
            for path in folders + [str(where / n) for n in p.get("moved") or []]:
                filesystem.remove(path)
            ex.last_known_state = pb.Execution.CANCELED
            self.store.update_execution(ex)
            log.info("%s: execution %s was interrupted; its output was removed", kind, ex.id)
        return dead

    # ---- helpers --------------------------------------------------------------------------------

    def _start(self, kind: str, properties: dict[str, Any]) -> int:
        return self.store.start_execution(kind, self.run_ctx, properties)

    def _update(self, exec_id: int, properties: dict[str, Any]) -> None:
        ex = self.store.execution(exec_id)
        for k, v in properties.items():
            ex.custom_properties[k].CopyFrom(encode(v))
        self.store.update_execution(ex)

    def _finish(
        self,
        exec_id: int,
        state: int,
        inputs: dict[str, Artifact],
        outputs: dict[str, Artifact],
        properties: dict[str, Any],
    ) -> None:
        self.store.finish_execution(exec_id, state, self.run_ctx, inputs, outputs, properties)

    def _publish(self, exec_id: int, tmp: Path, final: Path) -> list[str]:
        """Move the staged folder into place; returns what became visible."""
        if not final.exists():
            filesystem.move(tmp, final)
            return [str(final)]
        names = sorted(p.name for p in tmp.iterdir())
        self._update(exec_id, {"moved": names})  # before the first rename: a crash is cleanable
        moved = []
        for name in names:
            target = final / name
            if target.is_dir() and not any(target.iterdir()):
                filesystem.rmtree(target)  # an empty folder the user made: replaced
            filesystem.move(tmp / name, target)
            moved.append(str(target))
        filesystem.rmtree(tmp)
        return moved

    @staticmethod
    def _discard(tmp: Path, final: Path, published: list[str], remote: bool) -> None:
        """Remove what an execution wrote: its staging folder (or own prefix) and anything of it
        already published."""
        filesystem.rmtree(tmp)
        for path in published:
            filesystem.remove(path)
        if remote:
            filesystem.rmtree(final)
