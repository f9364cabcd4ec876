"""``serving.workers`` > 1: several ``serve`` processes on the same REST and gRPC ports.

Each worker is a whole ``serve`` process (``beam-pipeline serve ... --worker``): its own event
loop, batchers, copy of each served version and folder poller, and its own log segments (the pid
is in their names). The ports are shared with ``SO_REUSEPORT``: the kernel hands each new
connection to one of the workers, so the Python GIL of one process no longer caps the server at
one core. Prometheus counters, histograms and gauges are summed over the workers
(prometheus_client's multiprocess mode, in a folder this process makes and removes), so
``/metrics`` answers the same totals whichever worker a scrape reaches; ``process_*`` are the
answering worker's own.

Chosen over a pre-fork server (one listening socket inherited by forked workers) because
TensorFlow must not run before a ``fork``, and each worker starts as a fresh interpreter anyway;
chosen over one process per port behind a proxy because clients keep one address. Each worker
polls the model folders itself (``serving.poll_seconds``), so after a push the workers change
version within one poll interval of each other.

This process only supervises: SIGTERM or SIGINT is passed to every worker (each drains and
closes its log as a lone ``serve`` does) and the exit code is 0 once all have stopped cleanly; a
worker that dies is started again, unless it dies within `STARTUP_SECONDS` of its start (a port in
use, a broken config), which stops them all.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from beam_pipeline.io import filesystem

log = logging.getLogger(__name__)

WORKER_FLAG = "--worker"
STARTUP_SECONDS = 20.0
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own variable


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT``, for uvicorn to listen on."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


def _die_with_parent() -> None:
    """In the worker, before exec: SIGTERM when the supervisor dies (Linux's PR_SET_PDEATHSIG),
    so a ``kill -9`` of the supervisor leaves no worker holding the ports."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the workers outlive a killed supervisor
        pass


def supervise(argv: list[str], workers: int) -> int:
    """Run ``workers`` copies of ``beam-pipeline <argv> --worker`` until they stop."""
    metrics_dir = tempfile.mkdtemp(prefix="beam-pipeline-serve-metrics-")
    env = {**os.environ, MULTIPROCESS_ENV: metrics_dir}
    command = [sys.executable, "-m", "beam_pipeline.cli", *argv, WORKER_FLAG]
    started: dict[int, tuple[subprocess.Popen[bytes], float]] = {}
    stopping = False
    code = 0

    def start() -> None:
        proc = subprocess.Popen(command, env=env, preexec_fn=_die_with_parent)  # noqa: PLW1509
        started[proc.pid] = (proc, time.monotonic())

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for proc, _ in started.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for _ in range(workers):
            start()
        log.info("serve: %d workers (pids %s)", workers, ", ".join(map(str, started)))
        while started:
            time.sleep(0.2)
            for pid, (proc, since) in list(started.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                del started[pid]
                _mark_dead(pid, metrics_dir)
                if stopping:
                    code = code or (rc if rc > 0 else 0)
                elif time.monotonic() - since < STARTUP_SECONDS:
                    log.error("serve: worker %d exited with %d while starting; stopping", pid, rc)
                    code = rc if rc > 0 else 1
                    stop(signal.SIGTERM, None)
                else:
                    log.error("serve: worker %d exited with %d; starting another", pid, rc)
                    start()
        return code
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        filesystem.rmtree(metrics_dir)


def _mark_dead(pid: int, metrics_dir: str) -> None:
    """Drop a stopped worker's live gauges from the summed metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, metrics_dir)
