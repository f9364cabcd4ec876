"""What REST and gRPC share: resolve the version, check the inputs, batch, answer, log.

`Service.predict` is the one path for every prediction: the request's rows are queued on the
version's batcher unchecked, checked and typed with their batch on the model thread (raw values
by `inputs.prepare_raw`; serialized tf.Examples are checked by the model), and answered. The
batch's records (one per row, ``request_id`` ``R/i``) are rendered together (`log.render_batch`)
and written to the prediction log on the model thread, with one system call, before any answer
of the batch is released (`Service.record`): an answered row is in the log even if the server is
killed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from beam_pipeline.serving import log as plog
from beam_pipeline.serving.batching import Batcher, Overloaded
from beam_pipeline.serving.inputs import Inputs, RequestError
from beam_pipeline.serving.metrics import Metrics
from beam_pipeline.serving.models import ModelManager, Version
from beam_pipeline.serving.section import ServingSection

log = logging.getLogger(__name__)

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
RECENT_REQUESTS = 200_000  # request ids remembered per process, to flag unknown feedback ids


_PREFIX = uuid.uuid4().hex[:16]  # this process's; ids are unique across processes and restarts
_COUNTER = itertools.count()


def request_id(given: str | None) -> str:
    """The client's ``X-Request-Id`` (checked) or a new one: this process's random prefix and a
    counter (a uuid4 per request cost a system call on the event loop)."""
    if given is None or given == "":
        return f"{_PREFIX}{next(_COUNTER):016x}"
    if not REQUEST_ID.match(given):
        raise RequestError(
            "header X-Request-Id: expected 1-128 letters, digits, '.', '_', ':' or '-' (a row id "
            f"'/N' is added per row); received {given[:80]!r}"
        )
    return given


@dataclass
class Answer:
    version: Version
    outputs: dict[str, np.ndarray]


class Service:
    def __init__(
        self, section: ServingSection, manager: ModelManager, root: str, metrics: Metrics
    ) -> None:
        self.section = section
        self.manager = manager
        self.metrics = metrics
        self.executor = ThreadPoolExecutor(section.batch_threads, thread_name_prefix="model")
        self._written: dict[tuple[str, str], Any] = {}  # log_written's children
        self.writer = plog.LogWriter(
            root,
            queue_size=section.log_queue_size,
            segment_bytes=section.log_segment_bytes,
            segment_seconds=section.log_segment_seconds,
            on_written=self._count_written,
            on_dropped=lambda kind, model, n: metrics.log_dropped.labels(kind, model).inc(n),
        )
        self.root = Path(root)
        self._recent: dict[str, OrderedDict[str, int]] = {}
        self._gauges: dict[str, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.excluded = set(section.log_exclude_features)

    def _count_written(self, kind: str, model: str, rows: int) -> None:
        counter = self._written.get((kind, model))
        if counter is None:  # labels() takes a lock per call (on the model thread, per batch)
            counter = self._written[kind, model] = self.metrics.log_written.labels(kind, model)
        counter.inc(rows)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.manager.release_hook = lambda v: loop.call_soon_threadsafe(self._release, v)

    def _release(self, v: Version) -> None:
        if not (v.retired and v.inflight == 0):
            return
        batchers = list(v.batchers.values())
        v.batchers.clear()
        for b in batchers:
            asyncio.get_running_loop().create_task(b.close())
        self.metrics.loaded.labels(v.name, str(v.version)).set(0)
        log.info("serve: %s version %d released", v.name, v.version)

    def batcher(self, v: Version, signature: str) -> Batcher:
        b = v.batchers.get(signature)
        if b is None:
            s = self.section
            model = v.name
            b = v.batchers[signature] = Batcher(
                v.call(signature, self.record if s.log_predictions else None),
                self.executor,
                max_batch_size=s.max_batch_size,
                timeout_ms=s.batch_timeout_ms,
                threads=s.batch_threads,
                max_queued_rows=s.max_queued_rows,
                on_batch=lambda rows, sec: (
                    self.metrics.batch_rows.labels(model).observe(rows),
                    self.metrics.batch_seconds.labels(model).observe(sec),
                ),
                refused=_refused_errors(),
            )
        return b

    async def predict(self, v: Version, signature: str, inputs: Inputs, rid: str) -> Answer:
        """Run a request's rows through ``signature`` of ``v`` (checked with their batch, on the
        model thread); log them; the caller holds ``v``."""
        inputs.request_id = rid
        b = self.batcher(v, signature)
        gauge = self._gauges.get(v.name)
        if gauge is None:  # labels() takes a lock per call
            gauge = self._gauges[v.name] = self.metrics.queued_rows.labels(v.name)
        try:
            answered = await b.submit(inputs, inputs.rows)
        finally:
            gauge.set(b.queued_rows)
        self._remember(v.name, rid, inputs.rows)
        return Answer(v, answered.outputs)

    def record(
        self,
        v: Version,
        answered: list[tuple[Inputs, int, int]],
        typed: pa.RecordBatch | plog.Groups | None,
        outputs: dict[str, np.ndarray],
    ) -> None:
        """Write a batch's records to the log (on the model thread, before its answers leave):
        rendered together by `log.render_batch`, appended with one system call."""
        key = "predictions" if "predictions" in outputs else next(iter(outputs))
        predictions = outputs[key]
        if typed is None:  # serialized tf.Examples: their values parsed for the log
            examples = [e for item, _, _ in answered for e in item.examples or ()]
            typed = _examples_batch(v, examples)
        names = v.spec.names if not isinstance(typed, pa.RecordBatch) else typed.schema.names
        if self.excluded:
            typed = plog.without(typed, self.excluded, len(predictions))
            names = [n for n in names if n not in self.excluded]
        data = plog.render_batch(
            typed,
            predictions.reshape(len(predictions), -1),
            [item.request_id for item, _, _ in answered],
            [end - start for _, start, end in answered],
            [item.offset for item, _, _ in answered],
            v.name,
            v.version,
            plog.now_iso(),
            names,
        )
        self.writer.append(plog.PREDICTIONS, v.name, data, len(predictions))

    def _remember(self, model: str, rid: str, rows: int) -> None:
        recent = self._recent.setdefault(model, OrderedDict())
        recent[rid] = rows
        if len(recent) > RECENT_REQUESTS:
            recent.popitem(last=False)

    def known(self, model: str, row_id: str) -> bool:
        rid, _, index = row_id.rpartition("/")
        rows = self._recent.get(model, {}).get(rid)
        return rows is not None and index.isdigit() and int(index) < rows

    def feedback(self, model: str, items: list[tuple[str, Any]]) -> list[str]:
        """Queue feedback records; returns the row ids this process never answered."""
        self.manager.get(model)  # 404 for an unknown model
        normalised = [(plog.normalise_request_id(r), label) for r, label in items]
        text = plog.feedback_lines(normalised, plog.now_iso())
        if not self.writer.submit(plog.Item(plog.FEEDBACK, model, len(items), lambda: text)):
            raise Overloaded("the feedback log queue is full; retry later")
        return [r for r, _ in normalised if not self.known(model, r)]

    async def close(self) -> None:
        """Answer what is queued, then drain the log (clean shutdown)."""
        for model in self.manager.models.values():
            versions = list(model.versions.values())
            for v in versions:
                for b in list(v.batchers.values()):
                    await b.close()
        self.manager.stop()
        await asyncio.get_running_loop().run_in_executor(None, self.writer.close)
        self.executor.shutdown(wait=True)


def _refused_errors() -> tuple[type[BaseException], ...]:
    import tensorflow as tf

    return (tf.errors.InvalidArgumentError,)


def short_floats(values: np.ndarray) -> list[Any]:
    """float32 values as the shortest decimals that read back to them (as `score` writes)."""
    if values.dtype == np.float32:
        return values.astype(str).astype(float).tolist()
    return values.tolist()


def _examples_batch(v: Version, examples: list[bytes]) -> pa.RecordBatch:
    rows = examples_features(v, examples)
    names = v.spec.names
    return (
        pa.RecordBatch.from_pylist(rows)
        if rows
        else pa.RecordBatch.from_pydict({k: [] for k in names})
    )


def examples_features(v: Version, examples: list[bytes]) -> list[dict[str, Any]]:
    """The raw feature values of serialized tf.Examples (for the log), parsed in one batch."""
    import tensorflow as tf

    if not examples:
        return []
    kinds = {"int": tf.int64, "float": tf.float32, "string": tf.string}
    spec = {c.name: tf.io.VarLenFeature(kinds[c.kind]) for c in v.spec.columns}
    parsed = tf.io.parse_example(tf.constant(examples), spec)
    rows: list[dict[str, Any]] = [{} for _ in examples]
    for name, sparse in parsed.items():
        index = sparse.indices.numpy()
        values = sparse.values.numpy()
        for (row, col), value in zip(index, values, strict=True):
            if col == 0:
                rows[row][name] = value.decode() if isinstance(value, bytes) else value.item()
        for r in rows:
            r.setdefault(name, None)
    return rows
