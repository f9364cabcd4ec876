"""The model manager: which versions are served, loading, warm-up, hot swap and release.

Each served model is a base folder in TF Serving's layout (integer version folders; other names,
such as a push's ``.3.tmp-PID``, are ignored). The served versions are the highest one plus any
named by a version label (``serving.version_labels``, or ``{base}/.labels.json`` written by
``beam-pipeline label``). A poller thread lists the folders every ``poll_seconds``; a version that
appears (a push) is loaded and warmed up (the model's most recent real request, replayed, or an
empty batch) on that thread, then swapped in with one assignment: requests already running keep
the version they started with. A version that disappears (``rollback``) keeps serving until its
replacement is ready, and is released when its last request has finished. A version that fails
to load is reported (log line, ``/v1/models/{name}`` status, metric) and the current one keeps
serving.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from beam_pipeline.io.packed import PackedSignature, flat_call, pack_values
from beam_pipeline.io.raw_inputs import RawSchema
from beam_pipeline.serving.batching import Answered
from beam_pipeline.serving.inputs import (
    Inputs,
    model_schema,
    prepare_examples,
    prepare_raw,
)

log = logging.getLogger(__name__)

RAW = "serving_raw"
EXAMPLES = "serving_default"
LABELS_FILE = ".labels.json"


class NotFound(LookupError):
    """An unknown model, version or label (answered with 404)."""


@dataclass
class Version:
    """One loaded version of a model."""

    name: str
    version: int
    path: Path
    model: Any
    signatures: dict[str, Any]
    spec: RawSchema  # the raw columns serving_raw takes (the shared row check's schema)
    outputs: dict[str, int]  # output name -> width
    signature_defs: Any  # SignatureDefMap proto (metadata endpoints)
    inflight: int = 0
    retired: bool = False
    batchers: dict[str, Any] = field(default_factory=dict)
    last_inputs: list[Inputs] | None = None  # the last batch answered (warm-up replays it)
    _packed: PackedSignature | None = None  # serving_raw's, made on first use

    def packed(self) -> PackedSignature:
        """``serving_raw`` called with a batch's strings in one buffer (`io.packed`)."""
        if self._packed is None:
            self._packed = PackedSignature(self.signatures[RAW])
        return self._packed

    def call(
        self, signature: str, record: Record | None = None
    ) -> Callable[[list[Inputs]], list[Answered | BaseException]]:
        """The batch call for ``signature``: checks and types the requests of a batch together
        (on the model's worker thread), runs the model once, hands the answered rows to
        ``record`` (the prediction log, written before the answers are released), answers each
        request."""
        import tensorflow as tf

        fn = flat_call(self.signatures[signature])

        def run(items: list[Inputs]) -> list[Answered | BaseException]:
            if signature == RAW:
                prepared = prepare_raw(self.spec, items)
            else:
                prepared = prepare_examples(items, self.spec)
            results: list[Answered | BaseException] = [
                e if e is not None else Answered({}) for e in prepared.errors
            ]
            if items and all(e is not None for e in prepared.errors):
                return results
            if signature == RAW:
                packed = self.packed()
                out = packed(pack_values([prepared.inputs[n] for n in packed.names]))
            else:
                out = fn({k: tf.constant(v, tf.string) for k, v in prepared.inputs.items()})
            arrays = {k: v.numpy() for k, v in out.items()}
            answered = [
                (items[i], start, end)
                for i, (start, end) in enumerate(prepared.spans)
                if prepared.errors[i] is None
            ]
            if record is not None and answered:  # the log: by kind when the check typed so
                logged = prepared.kinds if prepared.kinds is not None else prepared.typed
                record(self, answered, logged, arrays)
            for i, (start, end) in enumerate(prepared.spans):
                if prepared.errors[i] is None:
                    results[i] = Answered({k: a[start:end] for k, a in arrays.items()})
            if signature == RAW and items:
                self.last_inputs = [x for x, e in zip(items, prepared.errors, strict=True) if not e]
            return results

        return run


# (the version, the answered requests with their rows' place in the batch, the batch's typed
# raw values (a record batch, or `log.Groups` by kind; None for serialized examples), the batch's
# outputs)
Record = Callable[["Version", list[tuple[Inputs, int, int]], Any, dict[str, np.ndarray]], None]


@dataclass
class Status:
    version: int
    state: str  # LOADING | AVAILABLE | UNLOADING | END (TF Serving's names)
    error: str = ""


@dataclass
class Model:
    name: str
    base: Path
    config_labels: dict[str, int]
    versions: dict[int, Version] = field(default_factory=dict)
    status: dict[int, Status] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    latest: Version | None = None
    failed: dict[int, float] = field(default_factory=dict)  # version -> folder mtime that failed


def load_version(name: str, version: int, path: Path) -> Version:
    """Load a SavedModel folder and describe its signatures."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    model = tf.saved_model.load(str(path))
    signatures = dict(model.signatures)
    if RAW not in signatures and EXAMPLES not in signatures:
        raise ValueError(f"{path}: no {RAW} or {EXAMPLES} signature; found {sorted(signatures)}")
    raw_names = sorted(signatures[RAW].structured_input_signature[1]) if RAW in signatures else []
    spec = model_schema(model, path, raw_names)
    any_fn = signatures.get(RAW) or signatures[EXAMPLES]
    outputs = {
        k: int(v.shape[-1]) if v.shape.rank and v.shape.rank > 1 and v.shape[-1] else 1
        for k, v in any_fn.structured_outputs.items()
    }
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    from tensorflow_serving.apis import get_model_metadata_pb2

    defs = get_model_metadata_pb2.SignatureDefMap()
    for key, sig in proto.meta_graphs[0].signature_def.items():
        if not key.startswith("__"):
            defs.signature_def[key].CopyFrom(sig)
    return Version(name, version, path, model, signatures, spec, outputs, defs)


def warm_up(v: Version, sample: list[Inputs] | None) -> None:
    """Run the model once before it takes traffic (TensorFlow builds its kernels on first use):
    the previous version's last batch replayed, or an empty batch."""
    if RAW in v.signatures:
        try:
            v.call(RAW)(sample or [])
        except Exception:  # a replayed request the new version refuses: an empty batch instead
            v.call(RAW)([])
    if EXAMPLES in v.signatures:
        v.call(EXAMPLES)([])


def versions_on_disk(base: Path) -> dict[int, float]:
    """Integer version folders (with a saved_model.pb) -> their mtime."""
    found = {}
    try:
        entries = list(base.iterdir())
    except OSError:
        return {}
    for p in entries:
        if p.name.isdigit() and (p / "saved_model.pb").is_file():
            found[int(p.name)] = p.stat().st_mtime
    return found


def read_labels(base: Path) -> dict[str, int]:
    path = base / LABELS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        return {str(k): int(v) for k, v in data.items()}
    except (ValueError, TypeError, AttributeError):
        log.error("serve: %s is not a JSON object of label -> version; ignored", path)
        return {}


def write_labels(base: Path, labels: dict[str, int]) -> Path:
    """Write ``{base}/.labels.json`` atomically (the server picks it up at its next poll)."""
    import os

    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f"{LABELS_FILE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(labels, sort_keys=True))
    os.replace(tmp, base / LABELS_FILE)
    return base / LABELS_FILE


class ModelManager:
    """Every served model; `poll` (on the poller thread) loads, swaps and releases versions."""

    def __init__(
        self,
        sources: dict[str, Path],
        labels: dict[str, dict[str, int]] | None = None,
        *,
        poll_seconds: float = 2.0,
        on_event: Callable[[str, str, int], None] | None = None,
    ) -> None:
        labels = labels or {}
        self.models = {
            name: Model(name, Path(base), dict(labels.get(name, {})))
            for name, base in sources.items()
        }
        self.poll_seconds = poll_seconds
        self._on_event = on_event or (lambda event, name, version: None)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.release_hook: Callable[[Version], None] = lambda v: None

    # -- lookups (event loop) --------------------------------------------------------------

    def get(self, name: str) -> Model:
        model = self.models.get(name)
        if model is None:
            raise NotFound(f"Servable not found for request: Latest({name})")
        return model

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> Version:
        model = self.get(name)
        if label is not None:
            if label not in model.labels:
                raise NotFound(
                    f"Unrecognized servable version label: {label} (model {name!r} has labels "
                    f"{sorted(model.labels)})"
                )
            version = model.labels[label]
        if version is None:
            if model.latest is None:
                raise NotFound(f"Servable not found for request: Latest({name}): no version loaded")
            return model.latest
        found = model.versions.get(version)
        if found is None:
            raise NotFound(
                f"Servable not found for request: Specific({name}, {version}); loaded versions: "
                f"{sorted(model.versions)}"
            )
        return found

    def ready(self) -> dict[str, bool]:
        return {name: m.latest is not None for name, m in self.models.items()}

    def acquire(self, v: Version) -> None:
        v.inflight += 1

    def release(self, v: Version) -> None:
        v.inflight -= 1
        if v.retired and v.inflight == 0:
            self.release_hook(v)

    # -- the poller thread -----------------------------------------------------------------

    def start(self) -> None:
        self.poll()
        self._thread = threading.Thread(target=self._run, name="model-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception:  # the poller must keep running; the failure is logged
                log.exception("serve: polling the serving folders failed")

    def poll(self) -> None:
        for model in self.models.values():
            self._poll_model(model)

    def _poll_model(self, model: Model) -> None:
        on_disk = versions_on_disk(model.base)
        labels = {**model.config_labels, **read_labels(model.base)}
        wanted = set(labels.values()) & set(on_disk)
        if on_disk:
            wanted.add(max(on_disk))
        for label, version in labels.items():
            if version not in on_disk and model.labels.get(label) != version:
                log.warning(
                    "serve: %s label %r names version %d, which is not in %s",
                    model.name,
                    label,
                    version,
                    model.base,
                )
        for version in sorted(wanted - set(model.versions)):
            mtime = on_disk[version]
            if model.failed.get(version) == mtime:
                continue  # failed before and unchanged since
            self._load(model, version)
        with self._lock:
            loaded = set(model.versions)
            serving = wanted & loaded
            latest = max(serving) if serving else None
            if latest is None and model.latest is not None:
                latest = model.latest.version  # nothing new is ready: keep answering
            new_latest = model.versions.get(latest) if latest is not None else None
            if new_latest is not model.latest:
                old = model.latest
                model.latest = new_latest
                log.info(
                    "serve: %s now answers with version %s (was %s)",
                    model.name,
                    new_latest.version if new_latest else None,
                    old.version if old else None,
                )
                self._on_event("swap", model.name, new_latest.version if new_latest else 0)
            model.labels = {k: v for k, v in labels.items() if v in loaded}
            keep = serving | ({model.latest.version} if model.latest else set())
            keep |= set(model.labels.values())
            for version in sorted(loaded - keep):
                self._retire(model, version)

    def _load(self, model: Model, version: int) -> None:
        path = model.base / str(version)
        model.status[version] = Status(version, "LOADING")
        t0 = time.time()
        try:
            v = load_version(model.name, version, path)
            sample = model.latest.last_inputs if model.latest is not None else None
            warm_up(v, sample)
        except Exception as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            model.status[version] = Status(version, "END", f"load failed: {message}")
            model.failed[version] = versions_on_disk(model.base).get(version, 0.0)
            log.error(
                "serve: %s version %d failed to load from %s: %s",
                model.name,
                version,
                path,
                message,
            )
            self._on_event("load_failed", model.name, version)
            return
        with self._lock:
            model.versions[version] = v
            model.status[version] = Status(version, "AVAILABLE")
        log.info(
            "serve: %s version %d loaded and warmed up in %.1f s",
            model.name,
            version,
            time.time() - t0,
        )
        self._on_event("loaded", model.name, version)

    def _retire(self, model: Model, version: int) -> None:
        v = model.versions.pop(version)
        v.retired = True
        model.status[version] = Status(version, "END")
        log.info(
            "serve: %s version %d retired (%d requests still running)",
            model.name,
            version,
            v.inflight,
        )
        self._on_event("retired", model.name, version)
        if v.inflight == 0:
            self.release_hook(v)
