"""A transport whose writes of one turn of the event loop go out in one system call.

`CoalescingTransport` keeps the writes made during one turn of the event loop and sends them
together at the end of the turn (one ``call_soon`` a turn in which something was written).
Everything else is the connection's own transport: closing sends what is kept first, aborting
drops it. Used by both servers: uvicorn's HTTP/1.1 protocol (`http1`: an answer's head and body
in one ``send``, not two) and the gRPC transport (`h2grpc`: the answers a model batch releases
are all put together before the first is sent, rather than each ``send`` waking the client while
the others are still being written).
"""

from __future__ import annotations

import asyncio
from typing import Any


class CoalescingTransport:
    """A transport whose writes of one event-loop turn go out in one system call."""

    __slots__ = ("_transport", "_loop", "_pending")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        self._pending = []
        if not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:  # pause_reading, get_extra_info, ...
        return getattr(self._transport, name)
