"""uvicorn's httptools protocol on a `coalesce.CoalescingTransport`.

uvicorn writes a response's head (``http.response.start``) and its body apart: two ``send``
system calls a REST answer, each ~10-14 µs of CPU on this machine's loopback, with the GIL held.
On the coalescing transport they leave in one, at the end of the event loop's turn.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from beam_pipeline.serving.coalesce import CoalescingTransport


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's ``httptools`` protocol on a `CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
