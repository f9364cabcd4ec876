"""Every `./scripts/bench` subcommand at a tiny size, so that no benchmark can rot: each one
runs to the end with exit 0 and prints (or writes) its figures and the load average.

`serve` and `monitor` have their own smoke tests (tests/scripts/); `test_every_subcommand_has_a
_smoke_test` holds this list to `scripts/bench`'s own, so a new subcommand needs one. Measured
one after another on 2 cores at load average 6-14: evaluate 1 s, cli 13 s, score 19 s,
all (ingest + statistics) 49 s, profile 34 s, init 92 s, trace 88 s, train 119 s, scale 129 s:
about 9 minutes in all, most of it fixed start-up (Beam, TensorFlow, a pipeline run), not rows.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import pipeline_fixtures as pf

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
COVERED_ELSEWHERE = {
    "serve": "tests/scripts/test_bench_serve.py",
    "monitor": "tests/scripts/test_bench_monitor.py",
}


def bench(script: str, *args: str, timeout: float = 600) -> str:
    """``scripts/SCRIPT ARGS`` in a child process; its stdout (fails with the output's tail)."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout


def last_json(text: str) -> dict:
    """The JSON object a bench prints last."""
    start = text.rindex("\n{\n") + 1 if "\n{\n" in text else text.index("{")
    return json.loads(text[start:])


def test_every_subcommand_has_a_smoke_test() -> None:
    script = (ROOT / "scripts" / "bench").read_text()
    subcommands = set(re.findall(r"^\s+(\w+)\) shift; exec", script, re.M))
    here = {name[len("test_bench_") :] for name in globals() if name.startswith("test_bench_")}
    assert subcommands - set(COVERED_ELSEWHERE) <= here, subcommands - here
    for path in COVERED_ELSEWHERE.values():
        assert (ROOT / path).is_file(), path


def test_bench_all(tmp_path: Path) -> None:  # ingest and statistics (scripts/bench.py)
    out = bench("bench.py", "all", "--rows", "2000", "--workdir", str(tmp_path), "--no-memory")
    assert "statistics seconds" in out
    result = json.loads((tmp_path / "bench-results.json").read_text())
    assert result["rows"] == 2000 and {"ingest", "statistics"} <= set(result)


def test_bench_profile(tmp_path: Path) -> None:
    out = bench("bench.py", "profile", "--rows", "2000", "--workdir", str(tmp_path))
    assert "cumtime" in out or "ncalls" in out


def test_bench_evaluate() -> None:
    out = bench("bench_evaluate.py", "--rows", "5000", "--slices", "5", "--rounds", "2")
    result = last_json(out)
    assert result["rounds"] == 2 and result["sliced_s"]["min"] > 0 and result["load_average"]


def test_bench_cli(tmp_path: Path) -> None:
    config = pf.copy_pipeline(tmp_path)
    out = bench("bench_cli.py", str(config), "--repeat", "1")
    for command in ("--help", "runs", "models", "lineage --model 1"):
        assert re.search(rf"^{re.escape(command)}\s+\d", out, re.M), out


def test_bench_score(tmp_path: Path) -> None:
    config = pf.copy_pipeline(tmp_path)
    data = tmp_path / "bench" / "data.csv"
    out = bench(
        "bench_score.py",
        str(config),
        "--rows",
        "2000",
        "--rounds",
        "1",
        "--data",
        str(data),
        "--beam-too",
    )
    result = last_json(out)
    assert result["score_job"]["rows"] == 2000 and len(result["load_average"]) == 3
    assert result["score_job"]["beam_direct_runner_seconds"]["min"] > 0


def test_bench_trace(tmp_path: Path) -> None:
    config = pf.copy_pipeline(tmp_path)
    result = last_json(bench("bench_trace.py", str(config), "--steps", "2", "--batch-size", "32"))
    assert result["first_epoch_speedup"] > 0 and result["export_after_s"] > 0


def test_bench_init(tmp_path: Path) -> None:
    out = bench("bench_init.py", "--data", "penguins", "--rounds", "1", "--workdir", str(tmp_path))
    assert "init/GBT RMSE ratio" in out and "load average" in out


def test_bench_train(tmp_path: Path) -> None:
    bench(
        "bench_train.py",
        *("--rows", "2000", "--steps", "2", "--epochs", "2", "--input-batches", "5"),
        *("--workdir", str(tmp_path)),
    )
    result = json.loads((tmp_path / "bench-train-results.json").read_text())
    assert result["load_average"]["end"]


def test_bench_scale(tmp_path: Path) -> None:
    out = bench(
        "bench_scale.py",
        *("--rows", "2000", "--workers", "1", "--workdir", str(tmp_path), "--timeout", "300"),
    )
    assert "baseline" in out
