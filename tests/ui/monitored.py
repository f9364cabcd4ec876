"""A copy of the shared taxi pipeline that has been watched: two monitoring rounds over logged
traffic (a window like the training data, then a drifted one, 40 % labelled) and serving labels
(stable -> v1, canary -> v3). About 25 s (scoring 3,000 rows, two monitor rounds)."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
from pathlib import Path

import yaml

from tests import pipeline_fixtures as pf
from tests.monitoring import traffic

SCALED = ("fare", "trip_miles", "trip_seconds")


def monitored_pipeline(base: Path) -> Path:
    """The config of the copy (in ``base``)."""
    from beam_pipeline.cli import main
    from beam_pipeline.core.config import load
    from beam_pipeline.core.metadata import Store
    from beam_pipeline.monitoring import logs
    from beam_pipeline.monitoring.lineage import model_info

    monitor = yaml.safe_load((pf.ROOT / "configs" / "taxi.yaml").read_text())["monitor"]
    config = pf.copy_pipeline(base, monitor=monitor)
    root = base / "root"
    info = model_info(Store(load(config)), 3)
    now = dt.datetime.now(dt.UTC)
    frames = [traffic.taxi_rows(1500, seed=21), traffic.shifted_rows(1500, seed=8, scaled=SCALED)]
    windows = []
    for k, frame in enumerate(frames):
        start = now - dt.timedelta(minutes=90 - 40 * k)
        preds = traffic.scored(frame, info.saved_model, info.raw_features)
        recs = traffic.records(frame, preds, info.raw_features, 3, start, request=f"w{k}-")
        traffic.write_segments(logs.log_dir(root / "logs", "predictions", "taxi"), recs, 500)
        feedback = logs.log_dir(root / "logs", "feedback", "taxi")
        traffic.write_feedback(
            feedback / f"part-2026010{k + 1}T000000000000-1-00000{k + 1}.jsonl", recs, frame, 0.4
        )
        windows.append((start, start + dt.timedelta(minutes=30)))
    with contextlib.redirect_stdout(io.StringIO()):
        for since, until in windows:
            code = main(["monitor", str(config), "--since", since.isoformat(),
                         "--until", until.isoformat(), "--json"])  # fmt: skip
            assert code in (0, 4), code
        for label, version in (("stable", "1"), ("canary", "3")):
            assert main(["label", str(config), "--label", label, "--version", version]) == 0
    return config
