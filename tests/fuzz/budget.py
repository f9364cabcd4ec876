"""A fixed time budget for property-based fuzz tests (hypothesis).

Each fuzz test runs rounds of generated examples until its budget is spent (at least one round):
``FUZZ_SECONDS`` seconds per test, 15 by default, which CI uses. For a longer local hunt:
``FUZZ_SECONDS=600 .venv/bin/python -m pytest tests/fuzz -x -p no:randomly``. Every run draws new
examples (no example database is kept); a failure prints the smallest example hypothesis found
and a ``@reproduce_failure`` line to replay it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from hypothesis import HealthCheck, settings

FUZZ_ENV = "FUZZ_SECONDS"
DEFAULT_SECONDS = 15.0

ROUND = settings(
    max_examples=20,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def seconds() -> float:
    return float(os.environ.get(FUZZ_ENV, DEFAULT_SECONDS))


_END = [float("inf")]


def spent() -> bool:
    """Whether the running fuzz test's budget is spent: a generated example checks it first and
    returns at once, so that a round in progress ends within one example."""
    return time.monotonic() > _END[0]


def keep_looking(*rounds: Callable[[], None]) -> int:
    """Call each @given test (one round of examples each) in turn until the budget is spent;
    returns how many rounds ran."""
    _END[0] = time.monotonic() + seconds()
    done = 0
    try:
        while done == 0 or not spent():
            rounds[done % len(rounds)]()
            done += 1
    finally:
        _END[0] = float("inf")
    return done
