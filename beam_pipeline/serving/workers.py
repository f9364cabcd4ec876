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
closes its log as a lone ``serve`` does) and the exit code is 0 once all have stopped cleanly. A
worker says it is ready (its REST port is serving) by writing its pid to a pipe this process
holds (``READY_FD_ENV`` names the pipe's end). A worker that dies after that is started again (the
new one finalizes the segment the dead one left open): at once the first time, and after
`restart_delay` when workers keep dying (1 s, doubling to 30 s while deaths come within a minute
of each other), so a crash loop does not spin. One that dies before it was ready (a port in use, a
broken config, a model that does not load) stops them all, with its exit code.
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
READY_FD_ENV = "BEAM_PIPELINE_SERVE_READY_FD"
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


def notify_ready() -> None:
    """In a worker whose REST port is serving: tell the supervisor (no-op when not supervised)."""
    fd = os.environ.get(READY_FD_ENV)
    if fd:
        os.write(int(fd), f"{os.getpid()}\n".encode())


CRASH_WINDOW = 60.0  # deaths this close together count as one crash loop
MAX_DELAY = 30.0


def restart_delay(deaths: list[float]) -> float:
    """Seconds to wait before starting a worker again, given the times workers died (the last
    is this death): none for a lone death, then 1 s doubling up to `MAX_DELAY` for each earlier
    death in the run of deaths less than `CRASH_WINDOW` apart."""
    run = 0
    for earlier, later in zip(reversed(deaths[:-1]), reversed(deaths[1:]), strict=True):
        if later - earlier >= CRASH_WINDOW:
            break
        run += 1
    return 0.0 if run == 0 else min(MAX_DELAY, 2.0 ** (run - 1))


def supervise(argv: list[str], workers: int, command: list[str] | None = None) -> int:
    """Run ``workers`` copies of ``beam-pipeline <argv> --worker`` (or of ``command``, a test's
    stand-in) until they stop."""
    metrics_dir = tempfile.mkdtemp(prefix="beam-pipeline-serve-metrics-")
    ready_r, ready_w = os.pipe()
    os.set_blocking(ready_r, False)
    env = {**os.environ, MULTIPROCESS_ENV: metrics_dir, READY_FD_ENV: str(ready_w)}
    command = command or [sys.executable, "-m", "beam_pipeline.cli", *argv, WORKER_FLAG]
    started: dict[int, subprocess.Popen[bytes]] = {}
    deaths: list[float] = []  # when workers that were ready died
    due: list[float] = []  # when to start the workers waiting to be started again
    ready: set[int] = set()
    stopping = False
    code = 0

    def start() -> None:
        proc = subprocess.Popen(  # noqa: PLW1509 - preexec only sets the death signal
            command, env=env, pass_fds=(ready_w,), preexec_fn=_die_with_parent
        )
        started[proc.pid] = proc

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for proc in started.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for _ in range(workers):
            start()
        log.info("serve: %d workers (pids %s)", workers, ", ".join(map(str, started)))
        while started or (due and not stopping):
            time.sleep(0.2)
            now = time.monotonic()
            for when in [w for w in due if w <= now and not stopping]:
                due.remove(when)
                start()
            ready.update(_read_pids(ready_r))
            for pid, proc in list(started.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                del started[pid]
                _mark_dead(pid, metrics_dir)
                was_ready = pid in ready
                ready.discard(pid)  # the kernel may give the pid to a later worker
                if stopping:
                    code = code or (rc if rc > 0 else 0)
                elif not was_ready:
                    log.error("serve: worker %d exited with %d while starting; stopping", pid, rc)
                    code = rc if rc > 0 else 1
                    stop(signal.SIGTERM, None)
                else:
                    deaths.append(time.monotonic())
                    del deaths[:-16]
                    delay = restart_delay(deaths)
                    log.error(
                        "serve: worker %d exited with %d; starting another in %.0f s",
                        pid,
                        rc,
                        delay,
                    )
                    due.append(deaths[-1] + delay)
        return code
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        os.close(ready_r)
        os.close(ready_w)
        filesystem.rmtree(metrics_dir)


def _read_pids(fd: int) -> list[int]:
    """The pids the workers wrote to the ready pipe since the last call."""
    text = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            break
        if not chunk:
            break
        text += chunk
    return [int(x) for x in text.split()]


def _mark_dead(pid: int, metrics_dir: str) -> None:
    """Drop a stopped worker's live gauges from the summed metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, metrics_dir)
