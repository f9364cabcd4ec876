"""Adaptive batching across requests.

Each model version has one `Batcher` per signature. A request's rows join a queue; a batch is
cut as soon as a model worker is free: everything queued (up to ``max_batch_size`` rows). While
the model runs one batch the next one fills, so batches grow with the load. The rows the last
batch answered that have not come back yet (their clients are most likely sending their next
request) are waited for, at most ``batch_timeout_ms`` (default 0: no wait): a model call costs
about the same at 12 rows as at 32 (~1 ms of TensorFlow per call on the taxi model), so under
load fewer, larger batches cost less CPU per row, for some latency (docs/serving.md). A lone
client, already back, never waits. The model call runs on a
worker thread (TensorFlow releases the GIL), never on the event loop; each caller gets its own
rows back, in order. The call gets the requests of a batch (each request's own inputs, unchecked)
and answers each one, or fails it alone (a refused row fails its own request only, see
`inputs.prepare_raw`); a batch the model itself refuses is retried request by request, so one
bad request fails alone. A request larger than ``max_queued_rows`` can never be queued: it is
refused with `TooManyRows` (413), not told to retry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Overloaded(RuntimeError):
    """More rows are waiting than ``serving.max_queued_rows`` allows (answered with 503)."""


class TooManyRows(ValueError):
    """One request holds more rows than ``serving.max_queued_rows`` (answered with 413)."""


class ModelRefused(ValueError):
    """The model raised on this request's own rows (answered with 400)."""


@dataclass
class Answered:
    """One request's answer: its rows of every output."""

    outputs: dict[str, np.ndarray]


Call = Callable[[list[Any]], list["Answered | BaseException"]]


@dataclass
class _Item:
    payload: Any  # has .part(start, end) -> payload of those rows
    rows: int
    future: asyncio.Future[Answered] = field(repr=False)


class Batcher:
    def __init__(
        self,
        call: Call,
        executor: Executor,
        *,
        max_batch_size: int = 64,
        timeout_ms: float = 0.0,
        threads: int = 1,
        max_queued_rows: int = 10_000,
        on_batch: Callable[[int, float], None] | None = None,
        refused: tuple[type[BaseException], ...] = (),
    ) -> None:
        self._call = call
        self._executor = executor
        self.max_batch_size = max_batch_size
        self._timeout = timeout_ms / 1000.0
        self._slots = asyncio.Semaphore(threads)
        self._max_queued = max_queued_rows
        self._on_batch = on_batch or (lambda rows, seconds: None)
        self._refused = refused
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._carry: _Item | None = None
        self.queued_rows = 0
        self._returning = 0  # rows the last batch answered, less the rows queued since
        self._waiting: tuple[asyncio.Future[None], int] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def submit(self, payload: Any, rows: int) -> Answered:
        """This request's answer (``[rows, ...]`` per output name)."""
        if rows > self._max_queued:
            raise TooManyRows(
                f"{rows} rows in one request; at most serving.max_queued_rows "
                f"({self._max_queued}) rows fit: send them in smaller requests"
            )
        if self.queued_rows + rows > self._max_queued:
            raise Overloaded(
                f"{self.queued_rows} rows are waiting for the model (serving.max_queued_rows "
                f"{self._max_queued}); retry later"
            )
        if rows <= self.max_batch_size:
            return await self._enqueue(payload, rows)
        step = self.max_batch_size  # cut into batch-sized parts (admitted as a whole, above)
        parts = await asyncio.gather(
            *(
                self._enqueue(payload.part(i, min(i + step, rows)), min(step, rows - i))
                for i in range(0, rows, step)
            )
        )
        return Answered(
            {k: np.concatenate([p.outputs[k] for p in parts]) for k in parts[0].outputs}
        )

    async def _enqueue(self, payload: Any, rows: int) -> Answered:
        future: asyncio.Future[Answered] = asyncio.get_running_loop().create_future()
        self.queued_rows += rows
        self._returning = max(0, self._returning - rows)
        self._queue.put_nowait(_Item(payload, rows, future))
        waiting = self._waiting
        if waiting is not None and self.queued_rows >= waiting[1] and not waiting[0].done():
            waiting[0].set_result(None)
        return await future

    async def _next(self) -> _Item | None:
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        return await self._queue.get()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._next()
            if first is None:
                return
            await self._slots.acquire()
            wanted = min(self.queued_rows + self._returning, self.max_batch_size)
            if self._timeout > 0 and self.queued_rows < wanted:
                await self._company(loop, wanted)
            batch, rows = [first], first.rows
            stop = False
            while rows < self.max_batch_size:
                item = self._carry
                if item is not None:
                    self._carry = None
                else:
                    try:
                        item = self._queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                if item is None:
                    stop = True
                    break
                if rows + item.rows > self.max_batch_size:
                    self._carry = item
                    break
                batch.append(item)
                rows += item.rows
            for item in batch:
                self.queued_rows -= item.rows
            task = loop.create_task(self._run(batch, rows))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            if stop:
                return

    async def _company(self, loop: asyncio.AbstractEventLoop, rows: int) -> None:
        """Wait until ``rows`` rows are queued, at most the batch timeout."""
        done: asyncio.Future[None] = loop.create_future()
        self._waiting = (done, rows)
        timer = loop.call_later(self._timeout, lambda: done.done() or done.set_result(None))
        try:
            await done
        finally:
            timer.cancel()
            self._waiting = None

    async def _run(self, batch: list[_Item], rows: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            t0 = time.perf_counter()
            try:
                results = await loop.run_in_executor(
                    self._executor, self._call, [item.payload for item in batch]
                )
            except self._refused as exc:
                if len(batch) == 1:
                    _fail(batch[0], ModelRefused(_first_line(exc)))
                    return
                await self._one_by_one(batch)
                return
            except BaseException as exc:
                for item in batch:
                    _fail(item, exc)
                return
            self._on_batch(rows, time.perf_counter() - t0)
            for item, result in zip(batch, results, strict=True):
                _answer(item, result)
            self._returning = rows
        finally:
            self._slots.release()

    async def _one_by_one(self, batch: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        for item in batch:
            try:
                (result,) = await loop.run_in_executor(self._executor, self._call, [item.payload])
            except self._refused as exc:
                _fail(item, ModelRefused(_first_line(exc)))
            except BaseException as exc:
                _fail(item, exc)
            else:
                _answer(item, result)

    async def close(self) -> None:
        """Answer everything queued, then stop."""
        self._queue.put_nowait(None)
        await self._task
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)


def _answer(item: _Item, result: Answered | BaseException) -> None:
    if item.future.done():
        return
    if isinstance(result, BaseException):
        item.future.set_exception(result)
    else:
        item.future.set_result(result)


def _fail(item: _Item, exc: BaseException) -> None:
    if not item.future.done():
        item.future.set_exception(exc)


def _first_line(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return message.strip().splitlines()[0] if message.strip() else type(exc).__name__
