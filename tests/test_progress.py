"""The progress display: trial i of n with the best so far, epochs with steps and metrics."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys

import pytest

from beam_pipeline import progress


def test_plain_lines_for_tune_and_train(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="beam_pipeline.progress")
    with progress.session() as display:  # not a terminal, not a notebook: plain lines
        assert type(display) is progress.Display
        tune = progress._Tracker("tune", 3, "val_auc", "max")
        for values in ([0.7, 0.8], [0.6, 0.65], [0.9, 0.85]):
            tune.trial_begin()
            for v in values:
                tune.epoch_end({"val_auc": v, "loss": 0.5})
            tune.trial_end()
        tune.finish()
        train = progress._Tracker("train", 2, None, None)
        for epoch in range(2):
            train.steps += 5
            train.epoch_end({"loss": 0.4 - epoch / 10, "val_auc": 0.9})
        train.finish()
    lines = [r.getMessage() for r in caplog.records]
    assert "tune: trial 1/3, last val_auc 0.8, best so far 0.8" in lines
    assert "tune: trial 2/3, last val_auc 0.65, best so far 0.8" in lines
    assert "tune: trial 3/3, last val_auc 0.9, best so far 0.9" in lines
    assert "train: epoch 1/2, 5 steps, loss 0.4, val_auc 0.9" in lines
    assert "train: epoch 2/2, 10 steps, loss 0.3, val_auc 0.9" in lines
    assert any(line.startswith("train: done in") for line in lines)


def test_lower_is_better_for_losses() -> None:
    tune = progress._Tracker("tune", 2, "val_loss", "min")
    for v in (0.5, 0.3):
        tune.trial_begin()
        tune.epoch_end({"val_loss": v})
        tune.trial_end()
    assert tune.best == 0.3


def test_stage_lines_reach_the_display() -> None:
    seen: list[str] = []

    class Recording(progress.Display):
        def stage(self, message: str) -> None:
            seen.append(message)

    orig = progress.choose
    progress.choose = lambda: Recording()  # type: ignore[assignment]
    try:
        with progress.session():
            logging.getLogger("beam_pipeline.core.orchestrator").info(
                "ingest: started (execution 1)"
            )
    finally:
        progress.choose = orig  # type: ignore[assignment]
    logging.getLogger("beam_pipeline.core.orchestrator").info("after the session")
    assert seen == ["ingest: started (execution 1)"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _terminal(monkeypatch: pytest.MonkeyPatch, columns: int) -> Terminal:
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.setattr(progress, "_console", None)  # a console for this terminal
    return term


def _screen(term: Terminal, columns: int) -> list[str]:
    """What the terminal shows once the output has been played on it (pyte emulates one)."""
    import pyte

    screen = pyte.Screen(columns, 400)
    screen.set_mode(pyte.modes.LNM)  # a newline also returns the carriage, as a tty does
    pyte.Stream(screen).feed(term.getvalue())
    return [line.rstrip() for line in screen.display if line.strip()]


@pytest.mark.parametrize("columns", [40, 150])
def test_a_terminal_gets_spinners_bars_and_clean_lines(
    monkeypatch: pytest.MonkeyPatch, columns: int
) -> None:
    term = _terminal(monkeypatch, columns)
    from rich.logging import RichHandler

    logger = logging.getLogger(f"test_progress.terminal{columns}")
    logger.propagate = False
    logger.handlers = [RichHandler(console=progress.console(), show_path=False)]
    orch = logging.getLogger("beam_pipeline.core.orchestrator")
    with progress.session() as display:
        assert isinstance(display, progress.RichDisplay)
        orch.info("transform: started (execution 5)")
        assert list(display._stages) == ["transform"]  # a spinner with the elapsed time
        orch.info("transform: completed in 11.2 s → /x")
        assert display._stages == {}
        tune = progress._Tracker("tune", 2, "val_accuracy", "max")
        for v in (0.8, 0.9):
            tune.trial_begin()
            tune.fit_begin({"steps": 4, "epochs": 1})
            for _ in range(4):
                tune.batch_end()
            logger.warning("a log line while a bar is shown " + "x" * 30)
            tune.epoch_end({"val_accuracy": v})
            tune.trial_end()
        tune.finish()
    lines = _screen(term, columns)
    logged = [ln for ln in lines if "a log line" in ln]
    assert len(logged) == 2 and not any("━" in ln for ln in logged), lines
    assert not any("━" in ln for ln in lines), f"a finished bar left on the screen: {lines}"
    final = [ln for ln in lines if ln.startswith("tune: trial 2/2")]
    assert final, lines
    if columns >= 100:
        assert "best so far 0.9" in final[-1]
    assert sum(ln.startswith("tune: trial 2/2") for ln in lines) == 1, "one line, not a bar"


def test_steps_give_an_eta(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    caplog.set_level(logging.INFO, logger="beam_pipeline.progress")
    clock = [1000.0]
    monkeypatch.setattr(progress.time, "time", lambda: clock[0])
    train = progress._Tracker("train", 10, None, None)
    train.task.started = clock[0]
    train.fit_begin({"steps": 5, "epochs": 10})
    for _ in range(5):
        clock[0] += 2.0  # 2 s a step
        train.batch_end()
    train.steps += 5
    train.epoch_end({"loss": 0.5})
    assert train.task.eta == pytest.approx(9 * 5 * 2.0)  # nine epochs of five 2 s steps left
    assert "train: epoch 1/10, 5 steps, loss 0.5 (ETA 1m30s)" in caplog.messages
    assert progress.duration(3725) == "1h02m"


def test_the_notebook_frame_ends_at_the_final_state() -> None:
    """Early stopping after 4 of 10 epochs: the last frame reads 100 %, not 40 %."""
    nb = object.__new__(progress.NotebookDisplay)
    nb._html, nb._handle, nb._tasks, nb._stages, nb._running, nb._last = str, None, {}, [], {}, 0
    nb._counts = {}
    train = progress.Task("train", 10, "epoch", done=4)
    nb.start(train)
    nb.stage("train: started (execution 7)")
    assert "train: running" in nb._render() and "(40%)" in nb._render()
    progress._settle(train)
    nb.stage("train: completed in 3.0 s → /x")
    nb.close()
    frame = nb._render()
    assert "(100%)" in frame and "stopped early; at most 10" in frame
    assert "running" not in frame and "train: completed in 3.0 s" in frame


def test_the_stack_is_quiet_unless_verbose(tmp_path) -> None:
    """TensorFlow's C++ start-up log and Beam's notices stay out of a notebook's first cell."""
    code = "import beam_pipeline, tensorflow, apache_beam, tensorflow_transform"
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",)}
    quiet = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert quiet.returncode == 0 and quiet.stderr.strip() == "", quiet.stderr[-3000:]
    loud = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, progress.VERBOSE_ENV: "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "crcmod" in loud.stderr or "tensorflow" in loud.stderr, "the check can fail"


def test_a_running_stage_shows_its_element_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beam DoFns in this process (DirectRunner in memory) count beside the stage's spinner."""
    _terminal(monkeypatch, 100)
    orch = logging.getLogger("beam_pipeline.core.orchestrator")
    with progress.session() as display:
        orch.info("ingest: started (execution 1)")
        progress.count("ingest", 60_000)
        progress.count("ingest", 5_000)
        task = display._progress._tasks[display._stages["ingest"]]
        assert task.fields["text"] == "running · 65,000 rows"
        orch.info("ingest: completed in 2.0 s → /x")
        orch.info("ingest: started (execution 2)")  # a new run of the stage counts from 0
        progress.count("ingest", 7)
        task = display._progress._tasks[display._stages["ingest"]]
        assert task.fields["text"] == "running · 7 rows"
    progress.count("ingest", 1)  # no display: nothing to show, nothing raised
