"""The benchmark's raw load clients (`bench_serve.py`): closed loops of calls, each client on a
connection of its own sending its next call when the last is answered, with every request's bytes
built once. aiohttp's REST client costs ~120 µs of CPU a request and grpc.aio's client ~210 µs a
call on this machine, taken from the two cores the server is measured on; these a few tens.

- `HttpConnection` (REST, ``--rest-client raw``): one keep-alive HTTP/1.1 connection. It writes
  the pre-built request and reads the answer's head (status, ``Content-Length``) and body; no
  other header parsing, no JSON decoding.
- `GrpcConnection` (gRPC, ``--grpc-client raw``): unary calls over one HTTP/2 connection (h2c,
  RFC 9113): the preface and SETTINGS (push off, the largest receive windows, so the server never
  waits on this client), SETTINGS and PING acknowledged, the server's send windows and maximum
  frame size honoured (a request larger than a window is sent as the window opens). Each call is a
  new stream: HEADERS (literal fields, no HPACK state) and the gRPC message in DATA frames, the
  last with END_STREAM. An answer is complete when the server ends the stream; it is a success
  when it carried a gRPC message. A failed call (grpc-status != 0) is answered by trailers alone:
  counted as a failure, not decoded (its status is in HPACK fields this client keeps no state to
  read; ``--grpc-client grpcio`` says it). Its frames are built by the server's own framing
  functions (`beam_pipeline.serving.h2grpc`: `frame`, `field`, `data_frames`).
- `drive`: open the connections, warm up, then the measured window.
"""

from __future__ import annotations

import asyncio
import re
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

# HTTP/2's framing, as the server speaks it (`beam_pipeline.serving.h2grpc`)
from beam_pipeline.serving.h2grpc import (
    ACK,
    DATA,
    DEFAULT_WINDOW,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    MAX_WINDOW,
    PING,
    PREFACE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    data_frames,
    field,
    frame,
)

_HEAD = struct.Struct(">I")


class ClosedLoop(asyncio.Protocol):
    """A client's closed loop on its connection: `_call` sends a call, a subclass calls
    `_answered` when its answer is complete; latencies and failures go to the shared lists."""

    def __init__(self) -> None:
        self.sent = 0.0
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.stop_at = 0.0
        self.done: asyncio.Future[None] | None = None
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def start(
        self, latencies: list[float], failures: list[str], stop_at: float
    ) -> asyncio.Future[None]:
        self.latencies, self.failures, self.stop_at = latencies, failures, stop_at
        self.done = asyncio.get_running_loop().create_future()
        self._call()
        return self.done

    def _call(self) -> None:
        raise NotImplementedError

    def _answered(self, failure: str | None) -> None:
        now = time.perf_counter()
        if failure is not None:
            self.failures.append(failure)
        self.latencies.append(now - self.sent)
        if now < self.stop_at:
            self._call()
        elif self.done is not None and not self.done.done():
            self.done.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc)
        self.transport.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc or ConnectionError("the server closed the connection"))


async def drive(
    connect: Callable[[], Awaitable[ClosedLoop]],
    clients: int,
    seconds: float,
    warmup: float,
    measured: Callable[[Callable[[], Awaitable[None]]], Awaitable[Any]],
) -> Any:
    """``clients`` connections from ``connect``: ``warmup`` seconds unmeasured (connections,
    caches), then ``seconds`` inside ``measured(run)``; returns (latencies, failures, *what
    ``measured`` returns)."""
    opened = [await connect() for _ in range(clients)]
    latencies: list[float] = []
    failures: list[str] = []
    try:
        stop_at = time.perf_counter() + warmup
        await asyncio.gather(*(c.start(latencies, failures, stop_at) for c in opened))
        latencies.clear()
        failures.clear()

        async def run() -> None:
            stop_at = time.perf_counter() + seconds
            await asyncio.gather(*(c.start(latencies, failures, stop_at) for c in opened))

        return latencies, failures, *await measured(run)
    finally:
        for c in opened:
            c.transport.close()


_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


class HttpConnection(ClosedLoop):
    """One keep-alive HTTP/1.1 connection (REST)."""

    def __init__(self, request: bytes) -> None:
        super().__init__()
        self.request = request
        self.buffer = bytearray()
        self.need = -1  # the answer's end in the buffer, once its head is read
        self.body_at = 0
        self.status = 0

    def _call(self) -> None:
        self.sent = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if self.need < 0:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end])
            length = _LENGTH.search(head)
            if length is None:  # (chunked answers: not sent by the servers measured here)
                self._fail(ConnectionError(f"an answer without Content-Length: {head[:300]!r}"))
                return
            self.status = int(head[9:12])
            self.body_at = end + 4
            self.need = self.body_at + int(length.group(1))
        if len(buffer) < self.need:
            return
        failure = None
        if self.status != 200:
            failure = f"{self.status} {bytes(buffer[self.body_at : self.need])[:200]!r}"
        del buffer[: self.need]
        self.need = -1
        self._answered(failure)


def http_request(method: str, host: str, port: int, path: str, body: bytes) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def header_block(authority: str, path: str) -> bytes:
    fields = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", path.encode()),
        (b":authority", authority.encode()),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]
    return b"".join(field(n, v) for n, v in fields)  # literal fields: no HPACK state


class GrpcConnection(ClosedLoop):
    """One HTTP/2 connection (gRPC), a call at a time."""

    def __init__(self, headers: bytes, message: bytes) -> None:
        super().__init__()
        self.headers = headers
        self.body = b"\x00" + _HEAD.pack(len(message)) + message  # gRPC's length prefix
        self.buffer = bytearray()
        self.stream = -1
        self.max_frame = 16_384
        self.stream_window_initial = DEFAULT_WINDOW
        self.connection_window = DEFAULT_WINDOW
        self.stream_window = 0
        self.pending = memoryview(b"")  # what is left of this call's message to send
        self.got_message = False
        self.received = 0

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        settings = struct.pack(">HIHI", 2, 0, 4, MAX_WINDOW)  # ENABLE_PUSH 0, INITIAL_WINDOW_SIZE
        increment = _HEAD.pack(MAX_WINDOW - DEFAULT_WINDOW)
        transport.write(
            PREFACE + frame(SETTINGS, 0, 0, settings) + frame(WINDOW_UPDATE, 0, 0, increment)
        )

    def _call(self) -> None:
        self.stream += 2
        self.stream_window = self.stream_window_initial
        self.got_message = False
        self.sent = time.perf_counter()
        self.transport.write(frame(HEADERS, END_HEADERS, self.stream, self.headers))
        self.pending = memoryview(self.body)
        self._send()

    def _send(self) -> None:
        """Send what the windows allow of the call's message; the last frame ends the stream."""
        before = len(self.pending)
        window = min(self.connection_window, self.stream_window)
        out, self.pending = data_frames(
            self.stream, self.pending, window, self.max_frame, END_STREAM
        )
        self.connection_window -= before - len(self.pending)
        self.stream_window -= before - len(self.pending)
        if out:
            self.transport.write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        at = 0
        end = len(buffer)
        failure = None
        while end - at >= 9:
            length = int.from_bytes(buffer[at : at + 3], "big")
            if end - at < 9 + length:
                break
            kind, flags = buffer[at + 3], buffer[at + 4]
            stream = _HEAD.unpack_from(buffer, at + 5)[0] & 0x7FFFFFFF
            payload = bytes(buffer[at + 9 : at + 9 + length]) if kind > DATA else b""
            at += 9 + length
            if kind == DATA:
                self.received += length
                if stream == self.stream and length >= 5:
                    self.got_message = True
            elif kind == SETTINGS and not flags & ACK:
                self._settings(payload)
            elif kind == PING and not flags & ACK:
                self.transport.write(frame(PING, ACK, 0, payload))
            elif kind == WINDOW_UPDATE:
                increment = _HEAD.unpack(payload)[0] & 0x7FFFFFFF
                if stream == 0:
                    self.connection_window += increment
                elif stream == self.stream:
                    self.stream_window += increment
                if self.pending:
                    self._send()
            elif kind == RST_STREAM and stream == self.stream:
                failure = f"RST_STREAM error code {_HEAD.unpack(payload)[0]}"
                flags |= END_STREAM
            elif kind == GOAWAY:
                self._fail(ConnectionError(f"GOAWAY {payload[8:200]!r}"))
                return
            if stream == self.stream and flags & END_STREAM and kind in (DATA, HEADERS, RST_STREAM):
                if failure is None and not self.got_message:
                    failure = "an answer without a message (gRPC's error form)"
                self._answered(failure)
                failure = None
        del buffer[:at]
        if self.received > 2**30:  # keep the connection's receive window open
            self.transport.write(frame(WINDOW_UPDATE, 0, 0, _HEAD.pack(self.received)))
            self.received = 0

    def _settings(self, payload: bytes) -> None:
        for i in range(0, len(payload) - 5, 6):
            key, value = struct.unpack_from(">HI", payload, i)
            if key == 4:  # INITIAL_WINDOW_SIZE: the open stream's window moves by the change
                self.stream_window += value - self.stream_window_initial
                self.stream_window_initial = value
            elif key == 5:  # MAX_FRAME_SIZE
                self.max_frame = value
        self.transport.write(frame(SETTINGS, ACK, 0))
        if self.pending:
            self._send()
