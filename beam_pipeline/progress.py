"""Progress on long work: the pipeline's stages, tune trials and training epochs and steps.

One display at a time, chosen for where the process runs:

- a Jupyter kernel: a live HTML block, updated in place (`IPython.display` handle), whose last
  frame is the true final state (a run stopped early reads "stopped early", at 100 %);
- an interactive terminal: `rich` on stderr, sharing one console with the log lines so they never
  glue onto a bar: a spinner with the elapsed time while a stage runs (Beam stages included),
  a bar with steps and an ETA for tune and train; finished work leaves one line, not a bar, and
  every column is cut to the terminal's width rather than wrapped;
- anything else (CI logs, pipes, ``--json``): plain log lines on the ``beam_pipeline.progress``
  logger, one per trial or epoch.

Stages call `keras_callback`; the orchestrator's stage start/end lines are picked up from its log
records while a `session` is open. Nothing here imports TensorFlow until a Keras callback is asked
for. `quiet_stack` keeps the stack's start-up chatter (TensorFlow's C++ log, Beam's and absl's
notices, library warnings) out of the console and notebooks unless verbose.
"""

from __future__ import annotations

import contextlib
import html
import logging
import math
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

VERBOSE_ENV = "BEAM_PIPELINE_VERBOSE"  # set (to anything but "" or 0) to see the stack's chatter
REFRESH_S = 0.25  # the least time between two step updates of a display

# Import-time notices of the stack that say nothing about the user's run.
NOISE = (
    "crcmod package not found",
    "Unable to import IPython",
    "TFDV visualization APIs",
)
NOISY_LOGGERS = ("apache_beam", "absl", "tensorflow", "tfx_bsl", "h5py", "keras_tuner", "tf_keras")
NOISY_MODULES = (
    r"(apache_beam|tensorflow|tensorflow_transform|tensorflow_data_validation|tfx_bsl|tf_keras|"
    r"keras|keras_tuner|absl|ml_metadata|google)(\..*)?"
)
_quieted: dict[str, Any] = {}


def verbose_requested() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def _drop_noise(record: logging.LogRecord) -> bool:
    return not any(n in str(record.msg) for n in NOISE)


def quiet_stack(verbose: bool = False) -> None:
    """Keep TensorFlow's C++ start-up log, the stack's import notices and library warnings out
    of the console and notebooks (``verbose``: leave them). Call before TensorFlow loads for the
    C++ part; idempotent."""
    if verbose or _quieted:
        return
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        _quieted["env"] = True
    root = logging.getLogger()
    if _drop_noise not in root.filters:
        root.addFilter(_drop_noise)  # Beam logs its crcmod notice on the root logger
    _quieted["levels"] = {n: logging.getLogger(n).level for n in NOISY_LOGGERS}
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=NOISY_MODULES)
    _quieted["warning"] = warnings.filters[0]


def unquiet() -> None:
    """Undo `quiet_stack` (the CLI's ``-v``, decided after ``import beam_pipeline``)."""
    if not _quieted:
        return
    if _quieted.get("env"):
        os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
    logging.getLogger().removeFilter(_drop_noise)
    for name, level in _quieted.get("levels", {}).items():
        logging.getLogger(name).setLevel(level)
    with contextlib.suppress(ValueError):
        warnings.filters.remove(_quieted.get("warning"))  # type: ignore[arg-type]
    _quieted.clear()


_console: Any = None


def console() -> Any:
    """The one rich console on stderr that log lines and progress share."""
    global _console
    if _console is None:
        from rich.console import Console

        class MarginConsole(Console):
            """Leaves the last column free: a line that fills the whole width makes many
            terminals wrap at the next carriage return, which re-prints every refreshed bar
            into the scrollback (seen in a 150-column terminal)."""

            @property
            def width(self) -> int:
                return max(20, Console.width.fget(self) - 1)  # type: ignore[attr-defined]

            @width.setter
            def width(self, value: int) -> None:
                Console.width.fset(self, value)  # type: ignore[attr-defined]

        _console = MarginConsole(stderr=True)
    return _console


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class Task:
    """One piece of long work: ``tune`` (trials) or ``train`` (epochs, each of ``steps``)."""

    name: str
    total: int | None
    unit: str
    done: int = 0
    text: str = ""
    step: int = 0  # steps done in the current epoch (or trial)
    steps: int | None = None  # steps per epoch, when Keras knows it
    steps_done: int = 0  # all steps so far
    eta: float | None = None  # seconds left, at most (early stopping may end sooner)
    started: float = field(default_factory=time.time)
    finished: bool = False
    stopped_early: bool = False

    def line(self) -> str:
        of = f"/{self.total}" if self.total else ""
        head = f"{self.name}: {self.unit} {self.done}{of}"
        if self.stopped_early:
            head += f" (stopped early; at most {self.total})"
        return head + (f", {self.text}" if self.text else "")

    def share(self) -> float:
        if self.finished:
            return 1.0
        if not self.total:
            return 0.0
        within = self.step / self.steps if self.steps else 0.0
        return min(1.0, (self.done + within) / self.total)


class Display:
    """Plain lines: one per trial or epoch."""

    def start(self, task: Task) -> None:
        log.info("%s: started (%s %s)", task.name, task.total or "?", task.unit + "s")

    def update(self, task: Task, *, step: bool) -> None:
        if step:
            eta = f" (ETA {duration(task.eta)})" if task.eta is not None and task.total else ""
            log.info("%s%s", task.line(), eta)

    def progress(self, task: Task) -> None:
        """Steps within an epoch or trial (throttled by the caller); plain lines skip them."""

    def finish(self, task: Task) -> None:
        log.info("%s: done in %s", task.name, duration(time.time() - task.started))

    def stage(self, message: str) -> None:
        """A stage's start/end line (already logged by the orchestrator)."""

    def count(self, stage: str, total: int, unit: str) -> None:
        """A running stage's element count so far (plain lines wait for the stage's end line,
        which carries its counts)."""

    def close(self) -> None:
        """Leave the display (a terminal's live region is stopped)."""


_STARTED = re.compile(r"^(\w+): started\b")
_ENDED = re.compile(r"^(\w+): (completed|cached|failed|stopped|skipped)\b")


class RichDisplay(Display):
    """rich on stderr (an interactive terminal): stage spinners, tune and train bars."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.table import Column

        self._console = console()
        self._progress = Progress(
            SpinnerColumn(finished_text=" "),
            TextColumn("{task.description}", table_column=Column(no_wrap=True, min_width=6)),
            BarColumn(bar_width=24),
            TextColumn("{task.fields[count]}", table_column=Column(no_wrap=True)),
            TimeElapsedColumn(),
            TextColumn(
                "{task.fields[text]}",
                table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1),
            ),
            console=self._console,
            transient=True,  # the live region is cleared; finished work leaves one line
            expand=True,
            refresh_per_second=8,
        )
        self._ids: dict[str, Any] = {}
        self._stages: dict[str, Any] = {}
        self._progress.start()

    def _fields(self, task: Task) -> dict[str, Any]:
        count = f"{task.done}/{task.total or '?'} {task.unit}s"
        if task.steps and not task.finished:
            count += f" · step {task.step}/{task.steps}"
        text = task.text
        if task.eta is not None and task.total and not task.finished:
            text = f"ETA ≤ {duration(task.eta)}" + (f" · {text}" if text else "")
        return {"count": count, "text": text}

    def start(self, task: Task) -> None:
        if task.name in self._stages:  # the stage's bar replaces its spinner
            self._progress.update(self._stages[task.name], visible=False)
        self._ids[task.name] = self._progress.add_task(
            task.name, total=(task.total or 1) * 1000, **self._fields(task)
        )

    def _show(self, task: Task) -> None:
        if task.name in self._ids:
            done = task.share() * (task.total or 1) * 1000
            self._progress.update(self._ids[task.name], completed=done, **self._fields(task))

    def update(self, task: Task, *, step: bool) -> None:
        self._show(task)

    def progress(self, task: Task) -> None:
        self._show(task)

    def finish(self, task: Task) -> None:
        if task.name in self._ids:
            self._progress.remove_task(self._ids.pop(task.name))
        self._console.print(f"{task.line()} · {duration(time.time() - task.started)}")

    def stage(self, message: str) -> None:
        started = _STARTED.match(message)
        ended = _ENDED.match(message)
        if started:  # a spinner with the elapsed time until the stage's end line
            self._stages[started.group(1)] = self._progress.add_task(
                started.group(1), total=None, count="", text="running"
            )
        elif ended and ended.group(1) in self._stages:
            self._progress.remove_task(self._stages.pop(ended.group(1)))

    def count(self, stage: str, total: int, unit: str) -> None:
        if stage in self._stages:
            self._progress.update(self._stages[stage], text=f"running · {total:,} {unit}")

    def close(self) -> None:
        for task_id in [*self._stages.values(), *self._ids.values()]:
            self._progress.remove_task(task_id)
        self._progress.stop()


def _settle(task: Task) -> None:
    """A task the run left unfinished (a search that ran out of trials, a failed stage) ends
    where it stopped, not at a stale share."""
    if not task.finished:
        task.stopped_early = bool(task.total and task.done < task.total)
        task.finished = True
        task.eta = None


class NotebookDisplay(Display):
    """A live HTML block in a Jupyter output cell: stage lines and a bar per task."""

    def __init__(self) -> None:
        from IPython.display import HTML, display

        self._html = HTML
        self._tasks: dict[str, Task] = {}
        self._stages: list[str] = []
        self._running: dict[str, float] = {}
        self._counts: dict[str, str] = {}
        self._last = 0.0
        self._handle = display(HTML(self._render()), display_id=True)

    def _render(self) -> str:
        rows = [f"<div>{html.escape(s)}</div>" for s in self._stages[-12:]]
        for name, since in self._running.items():
            counted = f" · {self._counts[name]}" if name in self._counts else ""
            rows.append(
                f"<div class='bp-stage' data-stage='{html.escape(name)}'>{html.escape(name)}: "
                f"running ({duration(time.time() - since)}){html.escape(counted)}</div>"
            )
        for t in self._tasks.values():
            share = t.share()
            eta = (
                f", ETA ≤ {duration(t.eta)}"
                if t.eta is not None and not t.finished and t.total
                else ""
            )
            rows.append(
                f"<div class='bp-progress' data-task='{t.name}'>"
                f"<progress value='{share:.4f}' max='1' style='width:200px'></progress> "
                f"{html.escape(t.line())}{eta} ({share:.0%})</div>"
            )
        return "<div class='bp-live' style='font: 12px monospace'>" + "".join(rows) + "</div>"

    def _refresh(self) -> None:
        self._last = time.time()
        if self._handle is not None:
            self._handle.update(self._html(self._render()))

    def start(self, task: Task) -> None:
        self._tasks[task.name] = task
        self._refresh()

    def update(self, task: Task, *, step: bool) -> None:
        self._refresh()

    def progress(self, task: Task) -> None:
        if time.time() - self._last >= 1.0:  # a notebook redraw costs more than a terminal's
            self._refresh()

    def finish(self, task: Task) -> None:
        self._refresh()

    def stage(self, message: str) -> None:
        started = _STARTED.match(message)
        ended = _ENDED.match(message)
        if started:
            self._running[started.group(1)] = time.time()
        else:
            if ended:
                self._running.pop(ended.group(1), None)
            self._stages.append(message)
        self._refresh()

    def count(self, stage: str, total: int, unit: str) -> None:
        self._counts[stage] = f"{total:,} {unit}"
        if time.time() - self._last >= 1.0:
            self._refresh()

    def close(self) -> None:
        self._running.clear()
        for task in self._tasks.values():
            _settle(task)
        self._refresh()  # the last frame is the final state


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
            message = record.getMessage()
            started = _STARTED.match(message)
            if started:
                _reset_counts(started.group(1))
            self._display.stage(message)


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

_counts: dict[tuple[str, str], int] = {}
_counts_lock = threading.Lock()


def count(stage: str, n: int, unit: str = "rows") -> None:
    """Add ``n`` elements to a running stage's count, shown beside its spinner. Called once per
    batch from a Beam DoFn: it reaches the display when the DoFn runs in this process
    (DirectRunner in memory); in worker processes there is no display and it costs a dict
    update."""
    with _counts_lock:
        key = (stage, unit)
        _counts[key] = total = _counts.get(key, 0) + n
    display = _current
    if display is not None:
        display.count(stage, total, unit)


def _reset_counts(stage: str) -> None:
    with _counts_lock:
        for key in [k for k in _counts if k[0] == stage]:
            del _counts[key]


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
        self.steps = 0  # train: steps of finished epochs (from fit's parameters)
        self.epochs_in_trial: int | None = None
        self.epoch = 0  # tune: epochs done in the current trial
        self._shown = 0.0
        self.display = current()
        self.display.start(self.task)

    # ---- steps and the ETA

    def fit_begin(self, params: dict[str, Any] | None) -> None:
        params = params or {}
        self.task.steps = int(params["steps"]) if params.get("steps") else None
        self.epochs_in_trial = int(params["epochs"]) if params.get("epochs") else None
        self.task.step = 0
        self.epoch = 0

    def batch_end(self) -> None:
        self.task.step += 1
        self.task.steps_done += 1
        now = time.time()
        if now - self._shown >= REFRESH_S:
            self._shown = now
            self._estimate()
            self.display.progress(self.task)

    def _estimate(self) -> None:
        """Seconds left if every remaining epoch (trial) runs in full, at the pace so far."""
        t = self.task
        if not t.total or not t.steps or not t.steps_done:
            t.eta = None
            return
        per_step = (time.time() - t.started) / t.steps_done
        if t.name == "train":
            left = (t.total - t.done) * t.steps - t.step
        else:  # tune: trials of epochs_in_trial epochs
            epochs = self.epochs_in_trial or 1
            left = ((t.total - t.done) * epochs - self.epoch) * t.steps - t.step
        t.eta = max(0.0, left * per_step)

    # ---- trials and epochs

    def trial_begin(self) -> None:
        self.trial_value = None

    def trial_end(self) -> None:
        self.task.done += 1
        self.task.step = 0
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
        self._estimate()
        self.display.update(self.task, step=True)

    def epoch_end(self, logs: dict[str, Any] | None) -> None:
        if self.task.name == "tune":
            self.epoch += 1
            self.task.step = 0
            value = (logs or {}).get(self.objective or "")
            if value is not None:
                last = self.trial_value
                better = last is None or (value > last if self.direction == "max" else value < last)
                if better:
                    self.trial_value = float(value)
            return
        self.task.done += 1
        self.task.step = 0
        self.task.text = f"{self.steps} steps, {_fmt_logs(logs)}"
        self._estimate()
        self.display.update(self.task, step=True)

    def finish(self) -> None:
        if not self.task.finished:
            _settle(self.task)
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
    (epoch, steps, metrics), with the step within the epoch and an ETA, to the current display."""
    import tf_keras

    tracker = _Tracker(kind, total, objective, direction)

    class ProgressCallback(tf_keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            # Keras hands this callback its logs as tensors, unread: the batch hook below counts
            # steps without making Keras copy the logs to numpy after every step (a sync on the
            # training hot path).
            self._supports_tf_logs = True

        def __deepcopy__(self, memo: dict[int, Any]) -> Any:
            return self  # one tracker across keras-tuner's per-trial copies

        def on_train_begin(self, logs: Any = None) -> None:
            tracker.fit_begin(self.params)
            if kind == "tune":
                tracker.trial_begin()

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            tracker.batch_end()

        def on_train_end(self, logs: Any = None) -> None:
            if kind == "tune":
                tracker.trial_end()
                if total and tracker.task.done >= total:
                    tracker.finish()
            else:
                tracker.finish()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            tracker.steps += int((self.params or {}).get("steps") or 0)
            tracker.epoch_end(_plain_logs(logs))

    cb = ProgressCallback()
    cb.tracker = tracker
    return cb


def _plain_logs(logs: Any) -> dict[str, Any]:
    """Epoch logs as Python numbers (once per epoch: they may be tensors here)."""
    out = {}
    for k, v in (logs or {}).items():
        with contextlib.suppress(TypeError, ValueError, AttributeError):
            out[k] = float(v.numpy() if hasattr(v, "numpy") else v)
    return out
