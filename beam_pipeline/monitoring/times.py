"""Times in the logs and the monitor config: ISO times and ages. Standard library only, so that
loading a config (the ``monitor`` section checks its window) imports no Beam, Arrow or pandas."""

from __future__ import annotations

import datetime as dt
import re


def parse_time(value: str | dt.datetime | None, now: dt.datetime | None = None) -> dt.datetime:
    """An ISO time (``2026-11-26T12:00:00Z``; no zone means UTC) or an age (``90m``, ``24h``,
    ``7d``: that long before ``now``), as an aware UTC datetime."""
    now = now or dt.datetime.now(dt.UTC)
    if value is None:
        return now
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    text = str(value).strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd])", text)
    if m:
        seconds = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return now - dt.timedelta(seconds=seconds)
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(
            f"expected an ISO time (2026-11-26T12:00:00Z) or an age (30m, 24h, 7d); "
            f"received {value!r}"
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
