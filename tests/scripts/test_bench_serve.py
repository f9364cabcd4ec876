"""`./scripts/bench serve` at a tiny size, so the benchmark cannot rot (it once did not even
import for months): every case runs, the ratios and the log's cost come out, nothing fails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.serving import _fixtures as sf

ROOT = Path(__file__).resolve().parents[2]


def _bench(tmp_path: Path, *args: str) -> tuple[dict[str, Any], str]:
    """Run the benchmark on the test model with ``args``: its --json result and its stdout."""
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_serve.py")]
        + ["--model-dir", str(sf.model_dirs()[1]), *args, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads(out.read_text()), run.stdout


def test_bench_serve_runs_every_case_interleaved(tmp_path: Path) -> None:
    result, stdout = _bench(
        tmp_path,
        *["--rounds", "2", "--seconds", "0.2", "--clients", "2", "--sizes", "1,3"],
        *["--log-pairs", "2", "--log-seconds", "0.2", "--log-clients", "2", "--log-sizes", "1,3"],
    )
    cases = set(result["runs"])
    for api in ("rest", "grpc"):
        for size in (1, 3):
            assert f"serve {api} {size}row 2c" in cases
    assert {
        "floor GET /healthz 2c",
        "floor grpc GetModelStatus 2c",
        "naive rest 1row 2c",
        "ceiling batch 32",
    } <= cases
    assert all(len(runs) == 2 for runs in result["runs"].values())  # every case, every round
    assert all(s.get("failures", 0) == 0 for s in result["summary"].values()), stdout[-3000:]
    assert set(result["ratios"]) == {
        "serve_rest_vs_healthz_floor_2c",
        "serve_rest_vs_naive_2c",
        "serve_rest_vs_ceiling_batch32_2c",
        "serve_grpc_vs_rest_2c",
        "serve_grpc_vs_grpc_floor_2c",
        "grpc_floor_vs_healthz_floor_2c",
    }
    assert "load average" in stdout
    # the log's cost: serve and serve_no_log in pairs of windows, REST only by default
    assert set(result["log_runs"]) == {
        f"{name} rest {size}row 2c" for name in ("serve", "serve_no_log") for size in (1, 3)
    }
    assert all(len(runs) == 2 for runs in result["log_runs"].values())
    assert set(result["log_cost"]) == {"rest 1row 2c", "rest 3row 2c"}
    for cost in result["log_cost"].values():
        assert cost["pairs"] == 2 and cost["failures"] == 0, cost
        assert cost["server_us_per_request_on"][1] > 0 and cost["rows_per_s_off"][1] > 0, cost
        assert len(cost["cost_cpu_pairs"]) == 3 and -1 < cost["cost_rows_per_s"] < 1, cost


def test_bench_serve_with_two_workers_and_typed_grpc_tensors(tmp_path: Path) -> None:
    """``--set workers=2``: every worker started before the first case, the server's CPU counted
    over the workers (the supervisor itself does no serving work). ``--grpc-inputs typed``: the
    gRPC requests are tf.make_tensor_proto tensors (string, int32, float), answered without a
    failure."""
    result, _ = _bench(
        tmp_path,
        *["--set", "workers=2", "--rounds", "1", "--seconds", "0.3", "--clients", "4"],
        *["--sizes", "1,3", "--grpc-inputs", "typed", "--log-pairs", "0"],
    )
    serve = result["runs"]["serve rest 1row 4c"][0]
    assert serve["failures"] == 0
    # a supervisor's own CPU is ~0: a figure this size is the workers' predict work
    assert serve["server_us_per_request"] > 50, serve
    for size in (1, 3):
        typed = result["runs"][f"serve grpc {size}row 4c"][0]
        assert typed["failures"] == 0 and typed["rows_per_s"] > 0, typed
