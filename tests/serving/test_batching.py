"""The batcher on its own: rows of concurrent requests share model calls and come back in order."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from beam_pipeline.serving.batching import Answered, Batcher, ModelRefused, Overloaded, TooManyRows


class X:
    """A request's rows (the batcher cuts a large one with ``part``)."""

    def __init__(self, values: list[float]) -> None:
        self.values = list(values)

    def part(self, start: int, end: int) -> X:
        return X(self.values[start:end])


class Model:
    """Doubles its input; refuses a negative value (as a model raises InvalidArgumentError)."""

    def __init__(self, seconds: float = 0.02) -> None:
        self.batches: list[int] = []
        self.seconds = seconds
        self.threads: set[str] = set()

    def __call__(self, requests: list[X]) -> list[Answered | BaseException]:
        x = np.array([v for r in requests for v in r.values], dtype=float)
        if (x < 0).any():
            raise ValueError("negative input")
        self.batches.append(len(x))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.seconds)
        y = (x * 2).reshape(-1, 1)
        ends = np.cumsum([len(r.values) for r in requests])
        return [Answered({"y": part}) for part in np.split(y, ends[:-1])]


async def submit(b: Batcher, values: list[float]) -> dict[str, np.ndarray]:
    return (await b.submit(X(values), len(values))).outputs


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_concurrent_requests_share_batches_and_get_their_own_rows() -> None:
    model = Model()

    async def go() -> list[np.ndarray]:
        b = Batcher(model, ThreadPoolExecutor(1, thread_name_prefix="model"), max_batch_size=16)
        sizes = [1, 3, 2, 1, 5, 1, 1, 2] * 4
        starts = np.cumsum([0, *sizes[:-1]])
        results = await asyncio.gather(
            *(submit(b, list(range(s, s + n))) for s, n in zip(starts, sizes, strict=True))
        )
        await b.close()
        for (s, n), r in zip(zip(starts, sizes, strict=True), results, strict=True):
            np.testing.assert_array_equal(r["y"][:, 0], 2 * np.arange(s, s + n))
        return results

    run(go())
    assert sum(model.batches) == 4 * 16
    assert max(model.batches) <= 16
    assert len(model.batches) < 32 / 2  # batched: far fewer calls than requests
    assert all(name.startswith("model") for name in model.threads)  # never on the event loop


def test_a_request_larger_than_a_batch_is_cut_and_reassembled() -> None:
    model = Model(0)

    async def go() -> np.ndarray:
        b = Batcher(model, ThreadPoolExecutor(1), max_batch_size=8)
        out = await submit(b, list(range(20)))
        await b.close()
        return out["y"][:, 0]

    np.testing.assert_array_equal(run(go()), 2 * np.arange(20))
    assert max(model.batches) <= 8


def test_a_refused_request_fails_alone() -> None:
    model = Model()

    async def go() -> list[Any]:
        b = Batcher(model, ThreadPoolExecutor(1), max_batch_size=64, refused=(ValueError,))
        first = asyncio.ensure_future(submit(b, [1]))  # occupies the model
        await asyncio.sleep(0)
        results = await asyncio.gather(
            submit(b, [2]),
            submit(b, [-1]),
            submit(b, [3, 4]),
            return_exceptions=True,
        )
        await first
        await b.close()
        return results

    good, bad, also_good = run(go())
    assert good["y"][0, 0] == 4 and list(also_good["y"][:, 0]) == [6, 8]
    assert isinstance(bad, ModelRefused) and "negative input" in str(bad)


def test_too_many_queued_rows_are_refused_not_queued() -> None:
    model = Model(0.05)

    async def go() -> list[Any]:
        b = Batcher(model, ThreadPoolExecutor(1), max_batch_size=4, max_queued_rows=6)
        results = await asyncio.gather(
            *(submit(b, [i, i]) for i in range(6)), return_exceptions=True
        )
        await b.close()
        return results

    results = run(go())
    refused = [r for r in results if isinstance(r, Overloaded)]
    assert refused and "max_queued_rows" in str(refused[0])
    assert all(isinstance(r, dict) for r in results if not isinstance(r, Overloaded))


def test_a_large_request_is_admitted_or_refused_as_a_whole() -> None:
    model = Model(0)

    async def go() -> np.ndarray:
        b = Batcher(model, ThreadPoolExecutor(1), max_batch_size=4, max_queued_rows=10)
        out = await submit(b, list(range(10)))  # three parts, all admitted
        with pytest.raises(TooManyRows, match="serving.max_queued_rows"):
            await submit(b, list(range(11)))  # can never fit: 413, not "retry later"
        await b.close()
        return out["y"][:, 0]

    np.testing.assert_array_equal(run(go()), 2 * np.arange(10))


def test_close_answers_everything_queued() -> None:
    model = Model(0.01)

    async def go() -> list[Any]:
        b = Batcher(model, ThreadPoolExecutor(1), max_batch_size=2)
        futures = [asyncio.ensure_future(submit(b, [i])) for i in range(9)]
        await asyncio.sleep(0)
        await b.close()
        return [f.result() for f in futures]

    assert [r["y"][0, 0] for r in run(go())] == [2 * i for i in range(9)]


def closed_loop(timeout_ms: float, clients: int, rounds: int) -> list[int]:
    """``clients`` clients, client n sending its next one-row request n ms after its answer."""
    model = Model(0.002)

    async def client(b: Batcher, n: int) -> None:
        for i in range(rounds):
            await submit(b, [n * 1000 + i])
            await asyncio.sleep(0.001 * n)  # the client's side of the round trip

    async def go() -> None:
        b = Batcher(model, ThreadPoolExecutor(1), max_batch_size=64, timeout_ms=timeout_ms)
        await asyncio.gather(*(client(b, n) for n in range(clients)))
        await b.close()

    run(go())
    return model.batches


def test_a_batch_waits_for_the_clients_the_last_one_answered() -> None:
    # without the wait the returning clients straggle into small batches; with it, once the
    # first batches are past, every batch holds every client
    assert closed_loop(100, clients=8, rounds=6)[-3:] == [8, 8, 8]
    assert min(closed_loop(0, clients=8, rounds=6)[2:]) < 8


def test_a_lone_client_never_waits_for_company() -> None:
    t0 = time.perf_counter()
    assert closed_loop(1000, clients=1, rounds=5) == [1] * 5
    assert time.perf_counter() - t0 < 1.0  # not one 1 s wait
