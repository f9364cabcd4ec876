"""Is the process that holds a RUNNING execution (or a run) still there?

A pid alone lies: in a container every run is pid 1, and pids are reused after a reboot. A holder
is recorded as host name, boot id (``/proc/sys/kernel/random/boot_id``), pid and the process's
start time (``/proc/PID/stat``, clock ticks since boot), and it refreshes a heartbeat while it
runs. On the same host and boot, the holder is alive when a process with that pid and that start
time exists. Elsewhere (another host, another container, another boot) only the lease can tell:
the holder is dead once its heartbeat is older than `LEASE_S`.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

HEARTBEAT_S = 30.0  # how often a running orchestrator refreshes its heartbeat
LEASE_S = 300.0  # a holder whose heartbeat is older than this, seen from elsewhere, is dead


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def start_ticks(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot; None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])  # field 22 of stat(5), counted from field 3


def identity() -> dict[str, Any]:
    """This process, as recorded with what it holds."""
    pid = os.getpid()
    return {
        "pid": pid,
        "host": socket.gethostname(),
        "boot_id": boot_id(),
        "start_ticks": start_ticks(pid) or 0,
        "heartbeat": time.time(),
    }


def alive(holder: dict[str, Any], now: float | None = None) -> bool:
    """Whether the process described by ``holder`` (properties written by `identity`) runs."""
    pid = int(holder.get("pid") or 0)
    same_host = holder.get("host") == socket.gethostname()
    if same_host and holder.get("boot_id") and holder.get("boot_id") != boot_id():
        return False  # recorded before this machine booted: every process of then is gone
    same_machine = same_host
    if same_machine and pid > 0:
        if not pid_exists(pid):
            return False
        recorded = int(holder.get("start_ticks") or 0)
        if recorded and start_ticks(pid) not in (None, recorded):
            return False  # the pid now belongs to another process (a container's pid 1, reuse)
        if recorded or not holder.get("heartbeat"):
            return True
    beat = holder.get("heartbeat")
    if beat is None:
        return not same_machine  # an old record from elsewhere: nothing tells; keep it
    return ((now or time.time()) - float(beat)) < LEASE_S


def pid_exists(pid: int) -> bool:
    """A process with this pid exists here (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
