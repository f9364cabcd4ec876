"""`./scripts/bench monitor` at a tiny size (2,000 rows, 2 rounds) on a copy of the shared taxi
pipeline, so the benchmark cannot rot: the logs are made with the real model, both sides run
interleaved, the ratios come out. About 60 s on 2 cores (a scoring job, two monitor rounds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests import pipeline_fixtures as pf

ROOT = Path(__file__).resolve().parents[2]


def test_bench_monitor_runs_interleaved_rounds(tmp_path: Path) -> None:
    config = pf.copy_pipeline(tmp_path)
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_monitor.py"), str(config)]
        + ["--rows", "2000", "--rounds", "2", "--data", str(tmp_path / "bench" / "data.csv")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(run.stdout)
    assert result["predictions"] == result["logs"]["predictions"] == 2000
    assert len(result["monitor_seconds"]["rounds"]) == 2
    assert len(result["tfdv_direct_seconds"]["rounds"]) == 2
    assert len(result["tfdv_in_process_seconds"]["rounds"]) == 2
    assert result["monitor_vs_tfdv_min"] > 0 and result["join"]["matched"] == result["labelled"]
    assert len(result["load_average_before"]) == 3
