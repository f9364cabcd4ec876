"""The progress display: trial i of n with the best so far, epochs with steps and metrics."""

from __future__ import annotations

import logging

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


def test_rich_bars_in_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    with progress.session() as display:
        assert isinstance(display, progress.RichDisplay)
        tune = progress._Tracker("tune", 2, "val_accuracy", "max")
        for v in (0.8, 0.9):
            tune.trial_begin()
            tune.epoch_end({"val_accuracy": v})
            tune.trial_end()
        tune.finish()
    out = term.getvalue()
    assert "tune (trials)" in out and "2/2" in out and "best so far 0.9" in out
