"""Progress on long work: tune trials, training epochs and the pipeline's stages.

One display at a time, chosen for where the process runs:

- a Jupyter kernel: a live HTML block, updated in place (`IPython.display` handle);
- an interactive terminal: `rich` progress bars on stderr;
- anything else (CI logs, pipes): plain log lines on the ``beam_pipeline.progress`` logger.

Stages call the few hooks below (`keras_callback`); the orchestrator's stage start/end lines are
picked up from its log records while a `session` is open. Nothing here imports TensorFlow until a
Keras callback is asked for.
"""

from __future__ import annotations

import contextlib
import html
import logging
import math
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class Task:
    """One piece of long work: ``tune`` (trials) or ``train`` (epochs)."""

    name: str
    total: int | None
    unit: str
    done: int = 0
    text: str = ""
    started: float = field(default_factory=time.time)
    finished: bool = False

    def line(self) -> str:
        of = f"/{self.total}" if self.total else ""
        return f"{self.name}: {self.unit} {self.done}{of}" + (f", {self.text}" if self.text else "")


class Display:
    """Plain lines: one per update that moves a task forward."""

    def start(self, task: Task) -> None:
        log.info("%s: started (%s %s)", task.name, task.total or "?", task.unit + "s")

    def update(self, task: Task, *, step: bool) -> None:
        if step:
            log.info("%s", task.line())

    def finish(self, task: Task) -> None:
        log.info("%s: done in %.1f s", task.name, time.time() - task.started)

    def stage(self, message: str) -> None:
        """A stage's start/end line (already logged by the orchestrator)."""

    def close(self) -> None:
        """Leave the display (a terminal's bars are stopped)."""


class RichDisplay(Display):
    """rich progress bars on stderr (an interactive terminal)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[text]}"),
            console=Console(stderr=True),
            transient=False,
        )
        self._ids: dict[str, Any] = {}
        self._progress.start()

    def start(self, task: Task) -> None:
        self._ids[task.name] = self._progress.add_task(
            f"{task.name} ({task.unit}s)", total=task.total, text=""
        )

    def update(self, task: Task, *, step: bool) -> None:
        self._progress.update(self._ids[task.name], completed=task.done, text=task.text)

    def finish(self, task: Task) -> None:
        self._progress.update(self._ids[task.name], completed=task.done, text=task.text)

    def close(self) -> None:
        self._progress.stop()


class NotebookDisplay(Display):
    """A live HTML block in a Jupyter output cell: stage lines and a bar per task."""

    def __init__(self) -> None:
        from IPython.display import HTML, display

        self._html = HTML
        self._tasks: dict[str, Task] = {}
        self._stages: list[str] = []
        self._handle = display(HTML(self._render()), display_id=True)

    def _render(self) -> str:
        rows = [f"<div>{html.escape(s)}</div>" for s in self._stages[-12:]]
        for t in self._tasks.values():
            share = t.done / t.total if t.total else 0.0
            rows.append(
                f"<div class='bp-progress' data-task='{t.name}'>"
                f"<progress value='{t.done}' max='{t.total or 1}' style='width:200px'></progress> "
                f"{html.escape(t.line())} ({share:.0%})</div>"
            )
        return "<div class='bp-live' style='font: 12px monospace'>" + "".join(rows) + "</div>"

    def _refresh(self) -> None:
        if self._handle is not None:
            self._handle.update(self._html(self._render()))

    def start(self, task: Task) -> None:
        self._tasks[task.name] = task
        self._refresh()

    def update(self, task: Task, *, step: bool) -> None:
        self._refresh()

    def finish(self, task: Task) -> None:
        self._refresh()

    def stage(self, message: str) -> None:
        self._stages.append(message)
        self._refresh()


_current: Display | None = None
_lock = threading.Lock()


def in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ip = shell.get_ipython()  # type: ignore[attr-defined]
    return ip is not None and getattr(ip, "kernel", None) is not None


def choose() -> Display:
    """The display for this process: notebook, terminal (rich) or plain lines."""
    if in_notebook():
        return NotebookDisplay()
    if sys.stderr.isatty():
        return RichDisplay()
    return Display()


def current() -> Display:
    global _current
    with _lock:
        if _current is None:
            _current = Display()
        return _current


class _StageLines(logging.Handler):
    """Feeds the orchestrator's "stage: started/completed/cached" lines to the display."""

    def __init__(self, display: Display) -> None:
        super().__init__(logging.INFO)
        self._display = display

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self._display.stage(record.getMessage())


@contextlib.contextmanager
def session(enabled: bool = True) -> Iterator[Display]:
    """Show progress while the block runs (the CLI's ``run`` and `Pipeline.run` open one)."""
    global _current
    display = choose() if enabled else Display()
    orch_log = logging.getLogger("beam_pipeline.core.orchestrator")
    handler = _StageLines(display)
    level = orch_log.level
    orch_log.addHandler(handler)
    if orch_log.getEffectiveLevel() > logging.INFO:
        orch_log.setLevel(logging.INFO)
    previous, _current = _current, display
    try:
        yield display
    finally:
        _current = previous
        orch_log.removeHandler(handler)
        orch_log.setLevel(level)
        display.close()


# ---------------------------------------------------------------------------------------------
# Hooks for stages


def _fmt_logs(logs: dict[str, Any] | None) -> str:
    items = []
    for k, v in sorted((logs or {}).items()):
        with contextlib.suppress(TypeError, ValueError):
            v = float(v)
            if math.isfinite(v):
                items.append(f"{k} {v:.4g}")
    return ", ".join(items)


class _Tracker:
    """Shared state behind the Keras callbacks (keras-tuner deep-copies callbacks per trial)."""

    def __init__(
        self, kind: str, total: int | None, objective: str | None, direction: str | None
    ) -> None:
        unit = "trial" if kind == "tune" else "epoch"
        self.task = Task(kind, total, unit)
        self.objective = objective
        self.direction = direction
        self.best: float | None = None
        self.trial_value: float | None = None
        self.steps = 0
        self.display = current()
        self.display.start(self.task)

    def trial_begin(self) -> None:
        self.trial_value = None

    def trial_end(self) -> None:
        self.task.done += 1
        value = self.trial_value
        if value is not None and (
            self.best is None
            or (value > self.best if self.direction == "max" else value < self.best)
        ):
            self.best = value
        self.task.text = (
            f"last {self.objective} {_num(value)}, best so far {_num(self.best)}"
            if self.objective
            else ""
        )
        self.display.update(self.task, step=True)

    def epoch_end(self, logs: dict[str, Any] | None) -> None:
        if self.task.name == "tune":
            value = (logs or {}).get(self.objective or "")
            if value is not None:
                last = self.trial_value
                better = last is None or (value > last if self.direction == "max" else value < last)
                if better:
                    self.trial_value = float(value)
            return
        self.task.done += 1
        self.task.text = f"{self.steps} steps, {_fmt_logs(logs)}"
        self.display.update(self.task, step=True)

    def finish(self) -> None:
        if not self.task.finished:
            self.task.finished = True
            self.display.finish(self.task)


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def keras_callback(
    kind: str,
    total: int | None,
    *,
    objective: str | None = None,
    direction: str | None = None,
) -> Any:
    """A tf_keras callback reporting ``tune`` trials (i of n, best so far) or ``train`` epochs
    (epoch, steps, metrics) to the current display."""
    import tf_keras

    tracker = _Tracker(kind, total, objective, direction)

    class ProgressCallback(tf_keras.callbacks.Callback):  # type: ignore[misc]
        def __deepcopy__(self, memo: dict[int, Any]) -> Any:
            return self  # one tracker across keras-tuner's per-trial copies

        def on_train_begin(self, logs: Any = None) -> None:
            if kind == "tune":
                tracker.trial_begin()

        def on_train_end(self, logs: Any = None) -> None:
            if kind == "tune":
                tracker.trial_end()
                if total and tracker.task.done >= total:
                    tracker.finish()
            else:
                tracker.finish()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            # Steps come from fit's parameters: a batch-level hook would make Keras copy the
            # logs to numpy after every step, a sync on the training hot path.
            tracker.steps += int((self.params or {}).get("steps") or 0)
            tracker.epoch_end(logs)

    cb = ProgressCallback()
    cb.tracker = tracker
    return cb
