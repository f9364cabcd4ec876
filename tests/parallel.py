"""The suite on several workers (pytest-xdist; ``./scripts/test`` runs ``-n 2 --dist loadgroup``).

Units of work are whole test files, except files that share a session-scoped build, which form
one unit so that it is built once: the monitoring window (``healthy``/``report``), the S3
pipeline (``s3_runs``) and the transformed data sets of `tests.ml_fixtures.transformed`. The
shared taxi pipeline (`tests.pipeline_fixtures.taxi_runs`) is used by many files on every worker:
it is built once per session into a folder the controller makes (``BEAM_PIPELINE_TEST_SHARED``),
under a file lock, and removed at the end.

Order: the long, independent units go first, one of them starting the taxi build at once, so that
no worker waits for the build and no long unit starts last.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import pytest

SHARED_ENV = "BEAM_PIPELINE_TEST_SHARED"
_SHARED = pytest.StashKey[str]()

# file (or folder prefix) -> the unit it belongs to; other files are units of their own
GROUPS = {
    "tests/monitoring/test_monitor.py": "monitoring",
    "tests/monitoring/test_retrain.py": "monitoring",
    "tests/monitoring/test_in_process.py": "monitoring",
    "tests/test_object_store.py": "s3",
    "tests/test_portable.py": "s3",
    "tests/stages/test_train.py": "ml",
    "tests/stages/test_tune.py": "ml",
    "tests/stages/test_transform.py": "ml",
    "tests/test_distributed.py": "ml",
}
# Units started first, in this order (the first builds the shared taxi pipeline).
FIRST = [
    "tests/test_registry.py",
    "tests/test_engines.py",
    "s3",
    "tests/monitoring/test_closed_loop.py",
    "tests/test_notebooks.py",
    "ml",
    "tests/test_bench_smoke.py",  # about 9 minutes, one benchmark after another
]


def unit(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    return GROUPS.get(path, path)


def pytest_configure(config: pytest.Config) -> None:
    controller = not hasattr(config, "workerinput")
    if controller and getattr(config.option, "numprocesses", None):
        shared = tempfile.mkdtemp(prefix="pipeline-tests-")
        os.environ[SHARED_ENV] = shared  # the workers start after this and inherit it
        config.stash[_SHARED] = shared


def pytest_unconfigure(config: pytest.Config) -> None:
    shared = config.stash.get(_SHARED, None)
    if shared:
        shutil.rmtree(shared, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[Any]) -> None:
    if not (hasattr(config, "workerinput") or getattr(config.option, "numprocesses", None)):
        return  # one process: collection order, as pytest has it
    rank = {name: i for i, name in enumerate(FIRST)}
    for item in items:
        item.add_marker(pytest.mark.xdist_group(unit(item.nodeid)))
    items.sort(key=lambda item: rank.get(unit(item.nodeid), len(FIRST)))  # stable
