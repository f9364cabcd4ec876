"""Benchmark: `beam-pipeline serve` under concurrent load, judged against its own HTTP floor, the
model in-process and a naive unbatched server, all interleaved in one run on this machine; then
the prediction log's cost, serve against itself without the log in short paired windows.

    .venv/bin/python scripts/bench_serve.py CONFIG [--model-dir DIR] [--seconds 3] [--rounds 3]
        [--clients 1,8,32] [--sizes 1,64] [--apis rest,grpc] [--set KEY=VALUE] [--json FILE]
        [--rest-client raw|aiohttp] [--grpc-client raw|grpcio] [--grpc-channels K]
        [--grpc-inputs text|typed]
        [--compare-repo DIR]
        [--log-pairs 16] [--log-seconds 0.5] [--log-clients 1,32] [--log-sizes 1,64]
        [--log-apis rest]

CONFIG's served model (the highest version under ``push.serving_dir``) is copied into a temporary
serving folder, unless ``--model-dir`` names a SavedModel folder. The servers run side by side
for the whole benchmark (each started once):

- serve: `beam-pipeline serve` (REST and gRPC, adaptive batching, prediction log on);
- serve_no_log: the same with ``log_predictions: false`` (the log's cost; not with
  ``--log-pairs 0``);
- naive: a starlette endpoint that checks the rows with the shared row check and calls the model
  once per request on uvicorn's thread pool (what most hand-written servers do; REST only; not
  with ``--rounds 0``).

The load generator is its own process, on uvloop: for REST a pre-built request written on a raw
keep-alive connection, the answer's status and length read (``--rest-client aiohttp`` for
aiohttp); for gRPC pre-built HTTP/2 frames on a connection of its own per client (scripts/
raw_clients.py; ``--grpc-client grpcio`` for grpc.aio, each client a channel of its own unless
``--grpc-channels`` says fewer); a fixed number of clients each sending its next request when
the last is answered. A gRPC request is one string tensor per feature, values as in a CSV file
(``--grpc-inputs text``), or typed tensors as ``tf.make_tensor_proto`` makes them from the JSON
values (``typed``: string, int32, float; every case then uses rows with no missing value).
Each case reports the CPU per answered request of the server process (its threads' on-CPU time
from /proc) and of the load generator over the measured window (they share the machine's
cores). ``--compare-repo DIR`` adds a server ``base`` run from another checkout (e.g. main),
measured right after serve in every case.

Every round runs every case once, one after another, in the same order: ``GET /healthz`` on
serve (the HTTP floor: what this server and this load generator can do with no work at all),
``ModelService.GetModelStatus`` over gRPC (gRPC's floor, answered from memory), then serve and
naive for each API x row size x client count, and the in-process ceiling
(``serving_raw`` on pre-built tensors at batch 1, 32 and 64). So each ratio compares cases
measured under the same load of the machine, minutes apart at most. Prints one line per case
and round, then min and median over the rounds, the ratios (from medians) and the load average.

The log's cost: run seconds apart, serve and serve_no_log met different loads from other jobs
(the cost swung from -23 % to +24 % between the cases of one run). So each log-cost case (REST,
1 and 32 clients, 1- and 64-row requests by default) runs ``--log-pairs`` pairs of windows of
``--log-seconds``, log on then off, the next pair off then on; it reports, on and off, the
server's CPU per request and rows/s (min / median), the cost as the ratio of the medians, and the
median and quartiles of the pairs' own ratios. ``--rounds 0`` runs only that; ``--set
log_predictions=false`` turns the log off on both sides (an A/A run: the noise of the measure).
``--json`` writes every measurement and summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
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


def taxi_rows(n: int) -> list[dict[str, Any]]:
    """Rows of the bundled taxi CSV as JSON values (missing values left out), label dropped.

    pyarrow keeps an int column with gaps as int64 (pandas would make it float)."""
    import pyarrow.csv as pacsv

    csv = REPO / "data" / "chicago_taxi" / "data.csv"
    table = pacsv.read_csv(csv, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    table = table.slice(0, n).drop(
        [c for c in ("tips", "pickup_census_tract") if c in table.column_names]
    )
    return [{k: v for k, v in row.items() if v is not None} for row in table.to_pylist()]


def csv_columns(rows: list[dict[str, Any]], names: list[str]) -> dict[str, list[str]]:
    """serving_raw inputs as a CSV file holds them ("" for missing)."""
    return {k: ["" if r.get(k) is None else str(r[k]) for r in rows] for k in names}


# -- the load generator (its own process; one JSON command per stdin line) -------------------


def process_cpu(pid: int) -> float:
    """CPU seconds a process and its child processes (``serving.workers`` > 1: the workers) have
    used, from /proc (0.0 where there is no /proc)."""
    total = _own_cpu(pid)
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            try:
                children = Path(task.path, "children").read_text().split()
            except OSError:
                continue
            total += sum(_own_cpu(int(child)) for child in children)
    except OSError:
        pass
    return total


def _own_cpu(pid: int) -> float:
    """The sum of a process's threads' ``schedstat`` (nanoseconds on a CPU; the server's threads
    live as long as it does), else ``stat``'s user + system time (in clock ticks: 10 ms, 1-2 %
    of a 1 s window)."""
    total = 0
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            try:
                total += int(Path(task.path, "schedstat").read_text().split()[0])
            except (OSError, ValueError):
                continue  # a thread that ended between the listing and the read
        if total:
            return total / 1e9
    except OSError:
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measured(run: Any, server_pid: int) -> Any:
    """``run()`` (the measured window) and the CPU seconds the server and this load generator
    spent during it."""
    server0, own0 = process_cpu(server_pid), time.process_time()
    t0 = time.perf_counter()
    await run()
    elapsed = time.perf_counter() - t0
    return elapsed, process_cpu(server_pid) - server0, time.process_time() - own0


async def _rest_load_raw(
    url: str,
    body: bytes,
    method: str,
    clients: int,
    seconds: float,
    server_pid: int,
    warmup: float,
) -> Any:
    """The ``raw`` REST client: a `raw_clients.HttpConnection` per client."""
    from urllib.parse import urlsplit

    from scripts.raw_clients import HttpConnection, drive, http_request

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = http_request(method, host, port, parts.path, body)
    loop = asyncio.get_running_loop()

    async def connect() -> Any:
        return (await loop.create_connection(lambda: HttpConnection(request), host, port))[1]

    return await drive(connect, clients, seconds, warmup, lambda run: _measured(run, server_pid))


async def _rest_load(
    url: str,
    body: bytes,
    method: str,
    clients: int,
    seconds: float,
    server_pid: int,
    warmup: float,
) -> Any:
    """The ``aiohttp`` REST client (``--rest-client aiohttp``)."""
    import aiohttp

    latencies: list[float] = []
    failures: list[str] = []
    stop_at = 0.0

    async def client(session: aiohttp.ClientSession) -> None:
        headers = {"Content-Type": "application/json"}
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            async with session.request(method, url, data=body or None, headers=headers) as r:
                text = await r.read()
                if r.status != 200:
                    failures.append(f"{r.status} {text[:200]!r}")
            latencies.append(time.perf_counter() - t0)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        stop_at = time.perf_counter() + warmup  # connections, caches
        await asyncio.gather(*(client(session) for _ in range(clients)))
        latencies.clear()
        failures.clear()

        async def run() -> None:
            nonlocal stop_at
            stop_at = time.perf_counter() + seconds
            await asyncio.gather(*(client(session) for _ in range(clients)))

        return latencies, failures, *await _measured(run, server_pid)


GRPC_PATHS = {
    "Predict": "/tensorflow.serving.PredictionService/Predict",
    "GetModelStatus": "/tensorflow.serving.ModelService/GetModelStatus",
}


def typed_columns(rows: list[dict[str, Any]], names: list[str]) -> dict[str, list[Any]]:
    """serving_raw inputs as JSON values (`_grpc_message` makes typed tensors of them)."""
    return {k: [r[k] for r in rows] for k in names}


def complete_rows(n: int, names: list[str]) -> list[dict[str, Any]]:
    """``n`` rows of the bundled taxi CSV that have every feature in ``names``."""
    rows = [r for r in taxi_rows(50 * n) if all(k in r for k in names)]
    if len(rows) < n:
        raise SystemExit(f"--grpc-inputs typed: only {len(rows)} complete rows; wanted {n}")
    return rows[:n]


def _grpc_message(columns: dict[str, list[Any]], method: str) -> Any:
    """The request: ``columns`` as ``tf.make_tensor_proto`` makes tensors of them, as TF
    Serving's clients do (text: DT_STRING; ints: DT_INT32, floats: DT_FLOAT), or a
    GetModelStatus."""
    import tensorflow as tf
    from tensorflow_serving.apis import get_model_status_pb2, predict_pb2

    if method == "GetModelStatus":
        status = get_model_status_pb2.GetModelStatusRequest()
        status.model_spec.name = "bench"
        return status
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "bench"
    for k, values in columns.items():
        request.inputs[k].CopyFrom(tf.make_tensor_proto(values))
    return request


async def _grpc_load_raw(
    target: str,
    columns: dict[str, list[str]],
    clients: int,
    seconds: float,
    server_pid: int,
    warmup: float,
    method: str = "Predict",
) -> Any:
    """The ``raw`` gRPC client: a `raw_clients.GrpcConnection` per client."""
    from scripts.raw_clients import GrpcConnection, drive, header_block

    host, _, port = target.rpartition(":")
    headers = header_block(target, GRPC_PATHS[method])
    message = _grpc_message(columns, method).SerializeToString()
    loop = asyncio.get_running_loop()

    async def connect() -> Any:
        made = await loop.create_connection(
            lambda: GrpcConnection(headers, message), host, int(port)
        )
        return made[1]

    return await drive(connect, clients, seconds, warmup, lambda run: _measured(run, server_pid))


async def _grpc_load(
    target: str,
    columns: dict[str, list[str]],
    clients: int,
    seconds: float,
    server_pid: int,
    channels: int,
    warmup: float,
    method: str = "Predict",
) -> Any:
    """The ``grpcio`` gRPC client (grpc.aio). ``method`` "Predict" (the columns as string
    tensors) or "GetModelStatus" (the gRPC floor: a call that answers from memory, as ``GET
    /healthz`` is REST's)."""
    import grpc
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    message: Any = _grpc_message(columns, method)
    latencies: list[float] = []
    failures: list[str] = []
    stop_at = 0.0

    # One channel (one HTTP/2 connection) per client unless --grpc-channels says fewer: as the
    # REST clients each hold a keep-alive connection. 32 clients on one channel share one
    # connection's flow control and its one poller. Channels with the same target and arguments
    # share one connection through gRPC's global subchannel pool unless each has a pool of its
    # own: without it every channel would ride one connection (and reach one serve worker).
    local = [("grpc.use_local_subchannel_pool", 1)]
    opened = [grpc.aio.insecure_channel(target, options=local) for _ in range(channels or clients)]
    if method == "GetModelStatus":
        calls = [model_service_pb2_grpc.ModelServiceStub(c).GetModelStatus for c in opened]
    else:
        calls = [prediction_service_pb2_grpc.PredictionServiceStub(c).Predict for c in opened]

    async def client(call: Any) -> None:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                await call(message, timeout=30)
            except grpc.aio.AioRpcError as exc:
                failures.append(f"{exc.code().name} {exc.details()[:200]}")
            latencies.append(time.perf_counter() - t0)

    async def run() -> None:
        nonlocal stop_at
        stop_at = time.perf_counter() + seconds
        await asyncio.gather(*(client(calls[i % len(calls)]) for i in range(clients)))

    try:
        stop_at = time.perf_counter() + warmup
        await asyncio.gather(*(client(calls[i % len(calls)]) for i in range(clients)))
        latencies.clear()
        failures.clear()
        return latencies, failures, *await _measured(run, server_pid)
    finally:
        for c in opened:
            await c.close()


def load_generator() -> int:
    """Reads one command per line: {"api", "url"|"target", "body"|"columns", "clients",
    "seconds", "rows", "method", "pid", "channels", "warmup"?, "client"?, "grpc_client"?};
    writes one JSON result per line. REST's ``client``: "raw" (default;
    `raw_clients.HttpConnection` on uvloop) or "aiohttp"; ``grpc_client``: "raw" (default;
    `raw_clients.GrpcConnection` on uvloop) or "grpcio" (grpc.aio, sharing ``channels``).
    The warm-up (connections, caches; unmeasured) lasts ``min(1, seconds)`` unless given."""
    for line in sys.stdin:
        cmd = json.loads(line)
        warmup = cmd.get("warmup", min(1.0, cmd["seconds"]))
        loop_factory = None
        if cmd["api"] == "rest":
            raw = cmd.get("client", "raw") == "raw"
            if raw:
                import uvloop

                loop_factory = uvloop.new_event_loop
            run = (_rest_load_raw if raw else _rest_load)(
                cmd["url"],
                cmd["body"].encode(),
                cmd["method"],
                cmd["clients"],
                cmd["seconds"],
                cmd["pid"],
                warmup,
            )
        elif cmd.get("grpc_client", "raw") == "raw":
            import uvloop

            loop_factory = uvloop.new_event_loop
            run = _grpc_load_raw(
                cmd["target"],
                cmd["columns"],
                cmd["clients"],
                cmd["seconds"],
                cmd["pid"],
                warmup,
                cmd.get("method", "Predict"),
            )
        else:
            run = _grpc_load(
                cmd["target"],
                cmd["columns"],
                cmd["clients"],
                cmd["seconds"],
                cmd["pid"],
                cmd["channels"],
                warmup,
                cmd.get("method", "Predict"),
            )
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            latencies, failures, elapsed, server_cpu, own_cpu = runner.run(run)
        latencies.sort()
        n = len(latencies)
        result = {
            "rows_per_s": n * cmd["rows"] / elapsed,
            "requests_per_s": n / elapsed,
            "p50_ms": 1000 * latencies[n // 2] if n else 0.0,
            "p99_ms": 1000 * latencies[min(n - 1, int(n * 0.99))] if n else 0.0,
            "failures": len(failures),
            "first_failure": failures[0] if failures else None,
            # CPU per answered request (the server's every thread; the load generator's own)
            "server_us_per_request": 1e6 * server_cpu / n if n else 0.0,
            "client_us_per_request": 1e6 * own_cpu / n if n else 0.0,
        }
        print(json.dumps(result), flush=True)
    return 0


class LoadGenerator:
    def __init__(self, rest_client: str = "raw", grpc_client: str = "raw") -> None:
        self.rest_client = rest_client
        self.grpc_client = grpc_client
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--load-generator"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(
            json.dumps({"client": self.rest_client, "grpc_client": self.grpc_client, **cmd}) + "\n"
        )
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the load generator exited with {self.proc.wait()}")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(30)


# -- the servers ------------------------------------------------------------------------------


_GIVEN: set[int] = set()


def free_port() -> int:
    """A free port, never one this process gave before: the servers bind theirs later, so the
    kernel could hand the same free port out twice (it did: a server died on its bind while
    another answered its /readyz)."""
    import socket

    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} not ready in {timeout} s: {log.read_text()[-3000:]}")


class Server:
    def __init__(self, proc: subprocess.Popen, port: int, grpc_port: int, log: Path) -> None:
        self.proc, self.port, self.grpc_port, self.log = proc, port, grpc_port, log
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_serve(
    work: Path, name: str, model_dir: Path, serving: dict[str, Any], repo: Path = REPO
) -> Server:
    import yaml

    folder = work / name
    base = folder / "serving" / "bench"
    base.parent.mkdir(parents=True)
    shutil.copytree(model_dir, base / "1")
    config = folder / "bench.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "pipeline": {"name": "bench", "root": str(folder / "root")},
                "ingest": {"source": "unused.csv"},
                "push": {"serving_dir": str(folder / "serving")},
                "serving": {"poll_seconds": 60, **serving},
            }
        )
    )
    port, grpc_port = free_port(), free_port()
    log = folder / "server.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "beam_pipeline.cli", "serve", str(config)]
        + ["--port", str(port), "--grpc-port", str(grpc_port)],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),  # noqa: SIM115 - outlives this call with the process
    )
    return Server(proc, port, grpc_port, log)


def start_naive(work: Path, model_dir: Path) -> Server:
    port = free_port()
    log = work / "naive.log"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--naive-server", str(model_dir), "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),  # noqa: SIM115
    )
    return Server(proc, port, 0, log)


def naive_server(model_dir: str, port: int) -> None:
    """One model call per request, on uvicorn's thread pool: no batching, no log."""
    import tensorflow as tf
    import uvicorn
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from beam_pipeline.io import raw_inputs
    from beam_pipeline.serving.inputs import model_schema

    model = tf.saved_model.load(model_dir)
    fn = model.signatures["serving_raw"]
    schema = model_schema(model, model_dir, sorted(fn.structured_input_signature[1]))

    def predict_sync(body: bytes) -> list[Any]:
        checked = raw_inputs.check_rows(json.loads(body)["instances"], schema)
        columns = {k: v.to_pylist() for k, v in checked.raw_strings().items()}
        out = fn(**{k: tf.constant(v) for k, v in columns.items()})["predictions"].numpy()
        return out.tolist()

    async def predict(request: Request) -> JSONResponse:
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


# -- the in-process ceiling -------------------------------------------------------------------


class Ceiling:
    """serving_raw called in this process on pre-built tensors (model time only)."""

    def __init__(self, model_dir: Path, rows: list[dict[str, Any]]) -> None:
        import tensorflow as tf

        model = tf.saved_model.load(str(model_dir))
        self.fn = model.signatures["serving_raw"]
        names = sorted(self.fn.structured_input_signature[1])
        self.tensors = {}
        for size in (1, 32, 64):
            columns = csv_columns((rows * 64)[:size], names)
            self.tensors[size] = {k: tf.constant(v) for k, v in columns.items()}
            self.fn(**self.tensors[size])["predictions"].numpy()

    def run(self, size: int, seconds: float) -> dict[str, float]:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            self.fn(**self.tensors[size])["predictions"].numpy()
            n += 1
        elapsed = time.perf_counter() - t0
        return {"rows_per_s": n * size / elapsed, "requests_per_s": n / elapsed}


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


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def summarize(results: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    out = {}
    for case, runs in results.items():
        rates = [r["rows_per_s"] for r in runs]
        summary = {"min": round(min(rates), 1), "median": round(statistics.median(rates), 1)}
        if "p99_ms" in runs[0]:
            summary["p99_ms_median"] = round(statistics.median(r["p99_ms"] for r in runs), 1)
            summary["failures"] = sum(r["failures"] for r in runs)
            for key in ("server_us_per_request", "client_us_per_request"):
                summary[f"{key}_median"] = round(statistics.median(r[key] for r in runs))
        out[case] = summary
    return out


def log_cost(on: list[dict[str, Any]], off: list[dict[str, Any]]) -> dict[str, Any]:
    """The log's cost on one case from its paired windows (``on[i]`` and ``off[i]`` run one right
    after the other): server CPU per request (what the log adds to the server's work) and rows/s
    (what the clients see). Each as the ratio of the medians, with min / median of both sides,
    and as the quartiles of the pairs' own ratios (a pair's two windows meet the same load of the
    machine, the pairs do not: their median is the steadier figure)."""

    def spread(runs: list[dict[str, Any]], key: str) -> list[float]:
        values = [r[key] for r in runs]
        return [round(min(values), 1), round(statistics.median(values), 1)]

    def quartiles(values: list[float]) -> list[float]:
        if len(values) < 2:
            return [round(values[0], 3)] * 3
        q1, q2, q3 = statistics.quantiles(values, n=4)
        return [round(q1, 3), round(q2, 3), round(q3, 3)]

    key = "server_us_per_request"
    cpu_on, cpu_off = spread(on, key), spread(off, key)
    rate_on, rate_off = spread(on, "rows_per_s"), spread(off, "rows_per_s")
    pairs = list(zip(on, off, strict=True))
    return {
        "pairs": len(pairs),
        "server_us_per_request_on": cpu_on,  # min, median
        "server_us_per_request_off": cpu_off,
        "rows_per_s_on": rate_on,
        "rows_per_s_off": rate_off,
        "cost_cpu": round(cpu_on[1] / cpu_off[1] - 1, 3),  # of the medians
        "cost_rows_per_s": round(1 - rate_on[1] / rate_off[1], 3),
        "cost_cpu_pairs": quartiles([a[key] / b[key] - 1 for a, b in pairs]),  # q1, median, q3
        "cost_rows_per_s_pairs": quartiles(
            [1 - a["rows_per_s"] / b["rows_per_s"] for a, b in pairs]
        ),
        "failures": sum(r["failures"] for r in on + off),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("config", nargs="?")
    p.add_argument("--model-dir")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=3, help="0: the log's cost only")
    p.add_argument("--clients", type=ints, default=[1, 8, 32])
    p.add_argument("--sizes", type=ints, default=[1, 64])
    p.add_argument("--apis", default="rest,grpc")
    p.add_argument(
        "--log-pairs",
        type=int,
        default=16,
        help="pairs of windows (log on, log off, alternating which goes first) per log-cost case; "
        "0: no log-cost cases",
    )
    p.add_argument("--log-seconds", type=float, default=0.5, help="one log-cost window")
    p.add_argument("--log-clients", type=ints, default=[1, 32])
    p.add_argument("--log-sizes", type=ints, default=[1, 64])
    p.add_argument("--log-apis", default="rest")
    p.add_argument("--json", help="write every measurement and the summary to this file")
    p.add_argument(
        "--grpc-channels",
        type=int,
        default=0,
        help="gRPC channels (HTTP/2 connections) the clients share; 0 (default): one per client",
    )
    p.add_argument(
        "--compare-repo",
        type=Path,
        help="also serve from this checkout (e.g. main) as case 'base', interleaved with serve",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a serving: key for the measured servers, e.g. --set batch_threads=2",
    )
    p.add_argument(
        "--rest-client",
        choices=["raw", "aiohttp"],
        default="raw",
        help="the REST load generator: raw (pre-built requests on uvloop; default) or aiohttp",
    )
    p.add_argument(
        "--grpc-client",
        choices=["raw", "grpcio"],
        default="raw",
        help="the gRPC load generator: raw (pre-built HTTP/2 frames on uvloop, a connection per "
        "client; default) or grpcio (grpc.aio, --grpc-channels applies)",
    )
    p.add_argument(
        "--grpc-inputs",
        choices=["text", "typed"],
        default="text",
        help="gRPC request tensors: text (a string tensor per feature, CSV values; default) or "
        "typed (tf.make_tensor_proto of the JSON values: string, int32 and float tensors; rows "
        "with no missing value)",
    )
    p.add_argument("--naive-server", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--load-generator", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.load_generator:
        return load_generator()
    if args.naive_server:
        naive_server(args.naive_server, args.port)
        return 0
    if not args.config and not args.model_dir:
        p.error("give CONFIG or --model-dir")
    import yaml

    apis = [a for a in args.apis.split(",") if a]
    log_apis = [a for a in args.log_apis.split(",") if a] if args.log_pairs else []
    model_dir = Path(args.model_dir) if args.model_dir else find_model(args.config)
    rows = taxi_rows(max(args.sizes + args.log_sizes))
    names = sorted({k for r in rows for k in r})
    grpc_columns = csv_columns
    if args.grpc_inputs == "typed":
        rows = complete_rows(max(args.sizes + args.log_sizes), names)
        grpc_columns = typed_columns
    serving = {k: yaml.safe_load(v) for k, _, v in (x.partition("=") for x in args.set)}
    print(
        f"model {model_dir}; {os.cpu_count()} CPUs; {args.rounds} rounds x {args.seconds:g} s "
        f"per case; {args.log_pairs} log-cost pairs x 2 x {args.log_seconds:g} s per case; "
        f"load average {os.getloadavg()}",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    servers: dict[str, Server] = {}
    loadgen = LoadGenerator(args.rest_client, args.grpc_client)
    results: dict[str, list[dict[str, Any]]] = {}
    log_runs: dict[str, list[dict[str, Any]]] = {}
    try:
        servers["serve"] = start_serve(work, "serve", model_dir, serving)
        if log_apis:
            servers["serve_no_log"] = start_serve(
                work, "serve_no_log", model_dir, {**serving, "log_predictions": False}
            )
        if args.rounds:
            servers["naive"] = start_naive(work, model_dir)
            if args.compare_repo:
                servers["base"] = start_serve(
                    work, "base", model_dir, serving, args.compare_repo.resolve()
                )
            ceiling = Ceiling(model_dir, rows)  # while the servers load (started at once)
        for s in servers.values():
            wait_ready(f"{s.url}/readyz", s.proc, s.log)
        workers = int(serving.get("workers", 1))  # --set workers=N: wait for every worker
        deadline = time.monotonic() + 300
        while any(
            s.log.read_text().count("serve: REST on") < workers
            for name, s in servers.items()
            if name != "naive"
        ):
            if time.monotonic() > deadline:
                raise SystemExit(f"not every one of {workers} workers started in 300 s")
            time.sleep(0.5)

        def measure(
            name: str, api: str, size: int, clients: int, seconds: float, **extra: Any
        ) -> dict[str, Any]:
            s = servers[name]
            if api == "rest":
                r = loadgen.run(
                    api="rest",
                    url=f"{s.url}/v1/models/bench:predict",
                    body=json.dumps({"instances": rows[:size]}),
                    method="POST",
                    clients=clients,
                    seconds=seconds,
                    rows=size,
                    pid=s.proc.pid,
                    **extra,
                )
            else:
                r = loadgen.run(
                    api="grpc",
                    target=f"127.0.0.1:{s.grpc_port}",
                    columns=grpc_columns(rows[:size], names),
                    clients=clients,
                    seconds=seconds,
                    rows=size,
                    pid=s.proc.pid,
                    channels=args.grpc_channels,
                    **extra,
                )
            if s.proc.poll() is not None:
                raise SystemExit(
                    f"{name} exited with {s.proc.returncode}: {s.log.read_text()[-3000:]}"
                )
            return r

        def record(case: str, r: dict[str, Any]) -> None:
            results.setdefault(case, []).append(r)
            extra = (
                f" p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms  failures {r['failures']}"
                f"  CPU us/req server {r['server_us_per_request']:4.0f}"
                f" client {r['client_us_per_request']:4.0f}"
                if "p99_ms" in r
                else ""
            )
            print(
                f"  {case:32} {r['rows_per_s']:>9,.0f} rows/s {r['requests_per_s']:>8,.0f} "
                f"req/s{extra}",
                flush=True,
            )
            if r.get("first_failure"):
                print(f"    first failure: {r['first_failure']}", flush=True)

        for round_ in range(1, args.rounds + 1):
            print(f"round {round_} (load average {os.getloadavg()[0]:.2f})", flush=True)
            for clients in args.clients:
                r = loadgen.run(
                    api="rest",
                    url=f"{servers['serve'].url}/healthz",
                    body="",
                    method="GET",
                    clients=clients,
                    seconds=args.seconds,
                    rows=1,
                    pid=servers["serve"].proc.pid,
                )
                record(f"floor GET /healthz {clients}c", r)
                if "grpc" in apis:
                    r = loadgen.run(
                        api="grpc",
                        target=f"127.0.0.1:{servers['serve'].grpc_port}",
                        columns={},
                        method="GetModelStatus",
                        clients=clients,
                        seconds=args.seconds,
                        rows=1,
                        pid=servers["serve"].proc.pid,
                        channels=args.grpc_channels,
                    )
                    record(f"floor grpc GetModelStatus {clients}c", r)
            for api in apis:
                for size in args.sizes:
                    for clients in args.clients:
                        for name in ("serve", "base", "naive"):
                            if name not in servers or (api == "grpc" and name == "naive"):
                                continue
                            r = measure(name, api, size, clients, args.seconds)
                            record(f"{name} {api} {size}row {clients}c", r)
            for size in (1, 32, 64):
                record(f"ceiling batch {size}", ceiling.run(size, args.seconds))

        # The log's cost: serve and serve_no_log in short windows one right after the other,
        # which one goes first alternating, so both sides of a pair meet the same load of the
        # machine (the rounds above put them seconds apart: the cost swung from -23 % to +24 %).
        if log_apis:
            print(
                f"log cost (load average {os.getloadavg()[0]:.2f}): per pair, log on then off "
                "(or off then on), rows/s and server CPU us/request",
                flush=True,
            )
        for api in log_apis:
            for size in args.log_sizes:
                for clients in args.log_clients:
                    case = f"{api} {size}row {clients}c"
                    for i in range(args.log_pairs):
                        order = ("serve", "serve_no_log")[:: 1 if i % 2 == 0 else -1]
                        pair = {}
                        for name in order:
                            pair[name] = measure(
                                name,
                                api,
                                size,
                                clients,
                                args.log_seconds,
                                warmup=min(0.2, args.log_seconds),
                            )
                            log_runs.setdefault(f"{name} {case}", []).append(pair[name])
                        on, off = pair["serve"], pair["serve_no_log"]
                        failures = on["failures"] + off["failures"]
                        print(
                            f"  {case:20} on {on['rows_per_s']:>9,.0f} rows/s "
                            f"{on['server_us_per_request']:6.0f} us  off "
                            f"{off['rows_per_s']:>9,.0f} rows/s "
                            f"{off['server_us_per_request']:6.0f} us"
                            + (f"  failures {failures}" if failures else ""),
                            flush=True,
                        )
    finally:
        loadgen.close()
        for s in servers.values():
            s.stop()
        shutil.rmtree(work, ignore_errors=True)

    summary = summarize(results)
    if summary:
        print("summary (rows/s over the rounds: min / median; p99 is the median of the rounds)")
    for case, s in summary.items():
        p99 = (
            f"  p99 {s['p99_ms_median']:.1f} ms  CPU us/req server "
            f"{s['server_us_per_request_median']} client {s['client_us_per_request_median']}"
            if "p99_ms_median" in s
            else ""
        )
        print(f"  {case:32} {s['min']:>9,.0f} / {s['median']:>9,.0f}{p99}")
    costs = {
        case[len("serve ") :]: log_cost(runs, log_runs[f"serve_no_log {case[len('serve ') :]}"])
        for case, runs in log_runs.items()
        if case.startswith("serve ")
    }
    if costs:
        print(
            f"log cost ({args.log_pairs} pairs of {args.log_seconds:g} s windows; min / median): "
            "server CPU us/request on vs off, rows/s on vs off; cost: of the medians (the pairs' "
            "own ratios: median, quartiles)"
        )
    for case, c in costs.items():
        cpu_on, cpu_off = c["server_us_per_request_on"], c["server_us_per_request_off"]
        rate_on, rate_off = c["rows_per_s_on"], c["rows_per_s_off"]
        cpu_q, rate_q = c["cost_cpu_pairs"], c["cost_rows_per_s_pairs"]
        print(
            f"  {case:16} CPU us/req {cpu_on[0]:,.0f} / {cpu_on[1]:,.0f} vs {cpu_off[0]:,.0f} / "
            f"{cpu_off[1]:,.0f}: {100 * c['cost_cpu']:+.1f} % (pairs {100 * cpu_q[1]:+.1f} %, "
            f"quartiles {100 * cpu_q[0]:+.1f} .. {100 * cpu_q[2]:+.1f})   rows/s "
            f"{rate_on[0]:,.0f} / {rate_on[1]:,.0f} vs {rate_off[0]:,.0f} / {rate_off[1]:,.0f}: "
            f"{100 * c['cost_rows_per_s']:+.1f} % (pairs {100 * rate_q[1]:+.1f} %, quartiles "
            f"{100 * rate_q[0]:+.1f} .. {100 * rate_q[2]:+.1f})"
            + (f"  failures {c['failures']}" if c["failures"] else "")
        )
    ratios = {}
    top = max(args.clients)
    med = {case: s["median"] for case, s in summary.items()}
    one = min(args.sizes)
    rest = med.get(f"serve rest {one}row {top}c")
    if rest:
        ratios[f"serve_rest_vs_healthz_floor_{top}c"] = round(
            rest / med[f"floor GET /healthz {top}c"], 3
        )
        ratios[f"serve_rest_vs_naive_{top}c"] = round(rest / med[f"naive rest {one}row {top}c"], 2)
        ratios[f"serve_rest_vs_ceiling_batch32_{top}c"] = round(rest / med["ceiling batch 32"], 3)
        grpc = med.get(f"serve grpc {one}row {top}c")
        if grpc:
            ratios[f"serve_grpc_vs_rest_{top}c"] = round(grpc / rest, 2)
            ratios[f"serve_grpc_vs_grpc_floor_{top}c"] = round(
                grpc / med[f"floor grpc GetModelStatus {top}c"], 3
            )
            ratios[f"grpc_floor_vs_healthz_floor_{top}c"] = round(
                med[f"floor grpc GetModelStatus {top}c"] / med[f"floor GET /healthz {top}c"], 3
            )
        base_rest, base_grpc = (med.get(f"base {a} {one}row {top}c") for a in ("rest", "grpc"))
        if base_rest and base_grpc:
            ratios[f"base_grpc_vs_rest_{top}c"] = round(base_grpc / base_rest, 2)
    if ratios:
        print(f"ratios (medians, {one}-row requests, {top} clients): {json.dumps(ratios)}")
    print(f"load average at the end: {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "runs": results,
                    "summary": summary,
                    "ratios": ratios,
                    "log_runs": log_runs,
                    "log_cost": costs,
                    "argv": sys.argv[1:],
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
