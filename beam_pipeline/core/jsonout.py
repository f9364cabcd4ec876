"""Machine output (``--json``): one object per command, one time format, no internal fields.

Every command's ``--json`` goes through `dumps`: epoch seconds under `TIME_KEYS` and ISO-8601
strings in other spellings (``...Z``) become ``2026-11-26T22:30:11+00:00`` (UTC, ``+00:00``,
milliseconds only where the source has a fraction); a list result is wrapped in an object by the
command (``{"runs": [...]}``). The shapes are documented per
command in docs/cli.md and checked by tests/test_json_shapes.py.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

TIME_KEYS = frozenset({"started", "finished", "created", "time", "heartbeat"})
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")

# Run record fields that only the liveness check and the orchestrator read.
INTERNAL_RUN_FIELDS = frozenset(
    {"id", "boot_id", "start_ticks", "pid", "heartbeat", "summary", "settled"}
)


def iso_time(seconds: float) -> str:
    """An ISO-8601 UTC time, to the second: ``2026-11-26T22:30:11+00:00``."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


def _iso(text: str) -> str:
    """UTC with ``+00:00``; milliseconds kept where the text has a fraction (a monitor window's
    bounds: the next window starts exactly there)."""
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)
    return when.isoformat(timespec="milliseconds" if when.microsecond else "seconds")


def machine(value: Any, key: str = "") -> Any:
    """Plain JSON data with every time in the one format."""
    if isinstance(value, dict):
        return {str(k): machine(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [machine(v) for v in value]
    if key in TIME_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
        return iso_time(value) if value else None
    if isinstance(value, str) and ISO.match(value):
        return _iso(value)
    return value


def dumps(value: Any) -> str:
    return json.dumps(machine(value), default=str)


def public_run(record: dict[str, Any]) -> dict[str, Any]:
    """A run record without the fields only the liveness check reads."""
    return {k: v for k, v in record.items() if k not in INTERNAL_RUN_FIELDS}
