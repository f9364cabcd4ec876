"""The benchmark's ``raw`` gRPC client: unary calls over one HTTP/2 connection (h2c, RFC 9113)
per client, with the request's frames built once, as the ``raw`` REST client writes a pre-built
HTTP/1.1 request. grpc.aio's client costs ~210 µs of CPU a call on this machine, taken from the
two cores the server is measured on; this one a few tens (`bench_serve.py --grpc-client`).

What it does of HTTP/2: the preface and SETTINGS (push off, the largest receive windows, so the
server never waits on this client), SETTINGS and PING acknowledged, the server's send windows and
maximum frame size honoured (a request larger than a window is sent as the window opens). Each
call is a new stream: HEADERS (literal fields, no HPACK state) and the gRPC message in DATA frames,
the last with END_STREAM. An answer is complete when the server ends the stream; it is a success
when it carried a gRPC message (a DATA frame with the 5-byte prefix). A failed call (grpc-status
!= 0) is answered by trailers alone in gRPC: counted as a failure, not decoded (its status is in
HPACK fields this client does not keep the state to read; grpc.aio's client says it:
``--grpc-client grpcio``).
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
MAX_WINDOW = 2**31 - 1
DEFAULT_WINDOW = 65_535
_HEAD = struct.Struct(">I")


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame: 24-bit length, type, flags, 31-bit stream id, payload."""
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + _HEAD.pack(stream) + payload


def _literal(name: bytes, value: bytes) -> bytes:
    """An HPACK literal header field without indexing, new name, no Huffman (RFC 7541 6.2.2);
    names and values here are under 127 bytes, one-byte lengths."""
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes((len(name),)) + name + bytes((len(value),)) + value


def header_block(authority: str, path: str) -> bytes:
    fields = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", path.encode()),
        (b":authority", authority.encode()),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]
    return b"".join(_literal(n, v) for n, v in fields)


class GrpcConnection(asyncio.Protocol):
    """One client: a call at a time on its own connection, the next sent when the last is
    answered, until ``stop_at``."""

    def __init__(self, headers: bytes, message: bytes) -> None:
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
        self.sent = 0.0
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.stop_at = 0.0
        self.done: asyncio.Future[None] | None = None
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        settings = struct.pack(">HIHI", 2, 0, 4, MAX_WINDOW)  # ENABLE_PUSH 0, INITIAL_WINDOW_SIZE
        increment = _HEAD.pack(MAX_WINDOW - DEFAULT_WINDOW)
        transport.write(
            PREFACE + frame(SETTINGS, 0, 0, settings) + frame(WINDOW_UPDATE, 0, 0, increment)
        )

    def start(
        self, latencies: list[float], failures: list[str], stop_at: float
    ) -> asyncio.Future[None]:
        self.latencies, self.failures, self.stop_at = latencies, failures, stop_at
        self.done = asyncio.get_running_loop().create_future()
        self._call()
        return self.done

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
        out = []
        while self.pending:
            room = min(self.connection_window, self.stream_window, self.max_frame)
            if room <= 0:
                break
            piece = self.pending[:room]
            self.pending = self.pending[len(piece) :]
            self.connection_window -= len(piece)
            self.stream_window -= len(piece)
            out.append(frame(DATA, 0 if self.pending else END_STREAM, self.stream, bytes(piece)))
        if out:
            self.transport.write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        at = 0
        end = len(buffer)
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
                self.failures.append(f"RST_STREAM {payload.hex()}")
                flags |= END_STREAM
            elif kind == GOAWAY:
                self._fail(ConnectionError(f"GOAWAY {payload[8:200]!r}"))
                return
            if stream == self.stream and flags & END_STREAM and kind in (DATA, HEADERS, RST_STREAM):
                self._answered()
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

    def _answered(self) -> None:
        now = time.perf_counter()
        if not self.got_message:
            self.failures.append("an answer without a message (gRPC's error form)")
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
