"""Benchmark: `beam-pipeline serve` under concurrent load, against the model in-process and a
naive unbatched server, all in one run on this machine.

    .venv/bin/python scripts/bench_serve.py CONFIG [--model-dir DIR] [--seconds 5]

CONFIG's served model (the highest version under ``push.serving_dir``) is copied into a temporary
serving folder, unless ``--model-dir`` names a SavedModel folder. Measured, each for ``--seconds``
after a warm-up:

- ceiling: ``serving_raw`` called in-process on pre-built batches of 1, 32 and 64 rows;
- serve: `beam-pipeline serve` (REST, adaptive batching, prediction log on), then the same with
  the log off (the log's cost);
- naive: a starlette endpoint that checks the rows the same way and calls the model once per
  request on uvicorn's thread pool (what most hand-written servers do);

with a bounded async load generator (aiohttp, keep-alive) at 1, 8 and 32 concurrent clients,
single-row and 64-row ``instances`` requests. Prints one line per case and a JSON summary; the
floors: at 32 clients with single-row requests serve >= 60 % of the in-process ceiling at batch 32
and >= 5x naive; the log costs <= 5 % of throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CLIENTS = (1, 8, 32)
SIZES = (1, 64)


def taxi_rows(n: int) -> list[dict[str, Any]]:
    import pandas as pd

    csv = REPO / "data" / "chicago_taxi" / "data.csv"
    frame = pd.read_csv(csv, nrows=n, dtype={"payment_type": object, "company": object})
    frame = frame.drop(columns=[c for c in ("tips", "pickup_census_tract") if c in frame])
    ints = {
        c for c in frame.columns if c.startswith("trip_start") or c.endswith(("_area", "_tract"))
    }
    ints.add("trip_seconds")
    rows = []
    for rec in frame.astype(object).where(frame.notna(), None).to_dict("records"):
        rows.append({k: (int(v) if k in ints else v) for k, v in rec.items() if v is not None})
    return rows


def ceiling(model_dir: Path, rows: list[dict[str, Any]], seconds: float) -> dict[int, float]:
    """Rows/s of serving_raw in-process on pre-built batches (model time only)."""
    import tensorflow as tf

    from beam_pipeline.serving.inputs import check_rows, feature_spec

    model = tf.saved_model.load(str(model_dir))
    fn = model.signatures["serving_raw"]
    spec = feature_spec(model, sorted(fn.structured_input_signature[1]))
    out = {}
    for size in (1, 32, 64):
        columns, _ = check_rows((rows * 64)[:size], spec)
        tensors = {k: tf.constant(v) for k, v in columns.items()}
        fn(**tensors)["predictions"].numpy()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            fn(**tensors)["predictions"].numpy()
            n += size
        out[size] = n / (time.perf_counter() - t0)
    return out


async def load(
    url: str, body: bytes, rows: int, clients: int, seconds: float, method: str = "POST"
) -> dict[str, float]:
    import aiohttp

    latencies: list[float] = []
    failures = 0
    first_failure: list[str] = []
    stop_at = 0.0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            headers = {"Content-Type": "application/json"}
            async with session.request(method, url, data=body or None, headers=headers) as r:
                text = await r.read()
                if r.status != 200:
                    failures += 1
                    if not first_failure:
                        first_failure.append(f"{r.status} {text[:200]!r}")
            latencies.append(time.perf_counter() - t0)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        stop_at = time.perf_counter() + 1.0  # warm-up
        await asyncio.gather(*(client(session) for _ in range(clients)))
        latencies.clear()
        failures = 0
        t0 = time.perf_counter()
        stop_at = t0 + seconds
        await asyncio.gather(*(client(session) for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    latencies.sort()
    n = len(latencies)
    if first_failure:
        print(f"  first failure: {first_failure[0]}", flush=True)
    return {
        "rows_per_s": n * rows / elapsed,
        "requests_per_s": n / elapsed,
        "p50_ms": 1000 * latencies[n // 2] if n else 0.0,
        "p99_ms": 1000 * latencies[min(n - 1, int(n * 0.99))] if n else 0.0,
        "failures": failures,
    }


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} not ready in {timeout} s")


def start_serve(
    work: Path, model_dir: Path, log_on: bool, serving: dict[str, Any]
) -> tuple[subprocess.Popen, str]:
    import yaml

    folder = work / ("log" if log_on else "nolog")
    base = folder / "serving" / "bench"
    base.parent.mkdir(parents=True, exist_ok=True)
    if not base.exists():
        shutil.copytree(model_dir, base / "1")
    config = folder / "bench.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "pipeline": {"name": "bench", "root": str(folder / "root")},
                "ingest": {"source": "unused.csv"},
                "push": {"serving_dir": str(folder / "serving")},
                "serving": {"log_predictions": log_on, "poll_seconds": 60, **serving},
            }
        )
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "beam_pipeline.cli",
            "serve",
            str(config),
            "--port",
            str(port),
            "--grpc-port",
            "0",
        ],
        cwd=REPO,
        stderr=open(folder / "server.log", "w"),  # noqa: SIM115
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/readyz", proc)
    return proc, f"{url}/v1/models/bench:predict"


def start_naive(work: Path, model_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--naive-server", str(model_dir), "--port", str(port)],
        cwd=REPO,
        stderr=open(work / "naive.log", "w"),  # noqa: SIM115
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/readyz", proc)
    return proc, f"{url}/v1/models/bench:predict"


def naive_server(model_dir: str, port: int) -> None:
    """One model call per request, on uvicorn's thread pool: no batching, no log."""
    import tensorflow as tf
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from beam_pipeline.serving.inputs import check_rows, feature_spec

    model = tf.saved_model.load(model_dir)
    fn = model.signatures["serving_raw"]
    spec = feature_spec(model, sorted(fn.structured_input_signature[1]))

    def predict_sync(body: bytes) -> list[Any]:
        columns, _ = check_rows(json.loads(body)["instances"], spec)
        out = fn(**{k: tf.constant(v) for k, v in columns.items()})["predictions"].numpy()
        return out.tolist()

    async def predict(request: Request) -> JSONResponse:
        from starlette.concurrency import run_in_threadpool

        return JSONResponse(
            {"predictions": await run_in_threadpool(predict_sync, await request.body())}
        )

    async def ready(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ready"})

    app = Starlette(
        routes=[
            Route("/readyz", ready),
            Route("/v1/models/bench:predict", predict, methods=["POST"]),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def find_model(config_file: str) -> Path:
    from beam_pipeline.core.config import load
    from beam_pipeline.serving.models import versions_on_disk
    from beam_pipeline.serving.server import model_sources

    config = load(config_file)
    base = model_sources(config, [])[config.pipeline.name]
    versions = versions_on_disk(base)
    if not versions:
        raise SystemExit(f"no served version under {base}: run the pipeline first")
    return base / str(max(versions))


def say(name: str, size: int, clients: int, r: dict[str, float]) -> None:
    print(
        f"{name:13} {size:>2}-row x {clients:>2} clients: {r['rows_per_s']:>8,.0f} rows/s "
        f"{r['requests_per_s']:>7,.0f} req/s  p50 {r['p50_ms']:6.1f} ms  "
        f"p99 {r['p99_ms']:6.1f} ms  failures {r['failures']}",
        flush=True,
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("config", nargs="?")
    p.add_argument("--model-dir")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a serving: key for the measured server, e.g. --set batch_threads=2",
    )
    p.add_argument("--naive-server", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.naive_server:
        naive_server(args.naive_server, args.port)
        return 0
    if not args.config and not args.model_dir:
        p.error("give CONFIG or --model-dir")
    model_dir = Path(args.model_dir) if args.model_dir else find_model(args.config)
    rows = taxi_rows(64)
    bodies = {size: json.dumps({"instances": rows[:size]}).encode() for size in SIZES}
    print(f"model {model_dir}; {os.cpu_count()} CPUs; {args.seconds:.0f} s per case", flush=True)
    ceil = ceiling(model_dir, rows, args.seconds)
    print(
        "in-process ceiling: " + ", ".join(f"batch {k}: {v:,.0f} rows/s" for k, v in ceil.items()),
        flush=True,
    )
    import yaml

    serving = {k: yaml.safe_load(v) for k, _, v in (x.partition("=") for x in args.set)}
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    results: dict[str, Any] = {"ceiling_rows_per_s": {str(k): round(v) for k, v in ceil.items()}}
    try:
        for name, start in (
            ("serve", lambda: start_serve(work, model_dir, True, serving)),
            ("serve_no_log", lambda: start_serve(work, model_dir, False, serving)),
            ("naive", lambda: start_naive(work, model_dir)),
        ):
            proc, url = start()
            try:
                if name == "serve":  # what the load generator itself can do on this machine
                    health = url.split("/v1/")[0] + "/healthz"
                    r = asyncio.run(load(health, b"", 1, 32, args.seconds, "GET"))
                    results["client_ceiling_healthz_32c"] = {k: round(v, 1) for k, v in r.items()}
                    say("GET /healthz", 0, 32, r)
                for size in SIZES:
                    for clients in CLIENTS:
                        r = asyncio.run(load(url, bodies[size], size, clients, args.seconds))
                        results[f"{name}/{size}row/{clients}c"] = {
                            k: round(v, 1) for k, v in r.items()
                        }
                        say(name, size, clients, r)
            finally:
                stop(proc)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    serve32 = results["serve/1row/32c"]["rows_per_s"]
    floors = {
        "serve_vs_ceiling_batch32": round(serve32 / ceil[32], 3),
        "serve_vs_naive": round(serve32 / max(results["naive/1row/32c"]["rows_per_s"], 1e-9), 2),
        "log_cost": round(
            1 - serve32 / max(results["serve_no_log/1row/32c"]["rows_per_s"], 1e-9), 3
        ),
    }
    results["floors"] = floors
    print(
        f"32 clients, single-row: serve = {floors['serve_vs_ceiling_batch32']:.0%} of the "
        f"in-process ceiling at batch 32 (floor 60 %), {floors['serve_vs_naive']:.1f}x naive "
        f"(floor 5x); the log costs {floors['log_cost']:.1%} (floor <= 5 %)"
    )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
