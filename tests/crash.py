"""Test-only fault injection: run a job in this process and SIGKILL it at one executor step.

    python -m tests.crash KIND:STEP cli ARGS...          # ``beam-pipeline ARGS``
    python -m tests.crash KIND:STEP toy CONFIG DEST [BEAM_OPTION...]   # `toy_execution`

The kill goes through `beam_pipeline.core.executor.watch` (the steps are its `STEPS`): production
code reads no environment variable for it. Tests call it through the ``killed_at`` fixture.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any


def kill_at(point: str) -> None:
    """SIGKILL this process when an execution of KIND reaches STEP (``point`` = "KIND:STEP")."""
    from beam_pipeline.core import executor

    kind, _, step = point.partition(":")
    if step not in executor.STEPS:
        raise SystemExit(f"tests.crash: expected KIND:STEP, STEP in {executor.STEPS}; got {point}")

    def watcher(k: str, s: str) -> None:
        if (k, s) == (kind, step):
            os.kill(os.getpid(), signal.SIGKILL)

    executor.watch(watcher)


def toy_write(execution: Any) -> dict[str, Any]:
    """A job that writes two files under its output folder and returns one artifact."""
    art = execution.output("out", "Toy", rows=2)
    (art.path / "a.txt").write_text("a\n")
    (art.path / "b.txt").write_text("b\n")
    return {"out": art}


def toy_execution(config_file: str, destination: str, beam_args: list[str]) -> Any:
    from beam_pipeline.core.config import load
    from beam_pipeline.core.executor import Executor
    from beam_pipeline.core.metadata import Store
    from beam_pipeline.io import filesystem

    config = load(config_file)
    filesystem.configure(beam_args, [destination])
    return Executor(Store(config)).execute("toy", toy_write, destination=destination)


def main(argv: list[str]) -> int:
    point, command, *rest = argv
    kill_at(point)
    if command == "cli":
        from beam_pipeline.cli import main as cli_main

        return cli_main(rest)
    toy_execution(rest[0], rest[1], rest[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
