"""gRPC's unary calls over HTTP/2 (h2c, RFC 9113, gRPC's "PROTOCOL-HTTP2"), on the event loop,
without grpc.aio: ``serving.grpc_server: h2`` (the default; ``grpcio`` keeps grpc.aio).

Why: grpc.aio took ~600 µs of server CPU for a Predict call on this machine, ~360 of them in its
own machinery under the event loop and ~145 in its poller thread; a trivial grpc.aio handler cost
230-280 µs a call where uvicorn answers ``/healthz`` in ~30 (docs/serving.md). Here a call is a
few frames parsed from the connection's buffer, one task for the handler, and one write of the
answer's frames, sent with the connection's other writes at the end of the loop's turn
(`coalesce`).

What it speaks (the server side of what gRPC clients send over a cleartext connection):

- the connection: the client preface, SETTINGS both ways (acknowledged), PING answered,
  WINDOW_UPDATE, GOAWAY both ways (``stop`` sends it and lets open calls finish), RST_STREAM
  (cancels the call's handler), PRIORITY ignored, HEADERS + CONTINUATION, padding;
- flow control: this server opens its receive windows wide (the largest stream window, the
  connection's kept open as data arrives) and never makes a client wait; the answers honour the
  client's windows and frame size (an answer larger than a window waits for WINDOW_UPDATE); a
  connection holds at most ``max_pending`` bytes of unfinished requests (4 messages' worth): the
  call whose bytes pass it is RESOURCE_EXHAUSTED;
- HPACK: request headers through ``hpack``'s decoder (one per connection: its dynamic table);
  answers use literal fields without indexing, so they need no encoder state and are mostly built
  once;
- gRPC: one length-prefixed message per call (``identity``, ``gzip`` or ``deflate`` compressed), a
  message larger than ``max_message`` is RESOURCE_EXHAUSTED, an unknown method UNIMPLEMENTED, a
  message that does not parse INTERNAL (as grpcio's server answers); the answer is HEADERS, DATA
  and trailers (``grpc-status``, ``grpc-message`` percent-encoded, the trailing metadata), or
  trailers alone for an error. Metadata keys ending in ``-bin`` are base64 both ways.

Handlers are grpc.aio's: the generated ``add_*Servicer_to_server`` registers a servicer's
``async def Method(request, context)`` methods as it does on grpc.aio
(`H2GrpcServer.add_generic_rpc_handlers`), and `Context` has the calls they make
(``invocation_metadata``, ``set_trailing_metadata``, ``abort``, ``set_code``, ``set_details``).
Not spoken: TLS, streaming calls, server push, ``grpc-timeout`` (the client ends a late call
itself: RST_STREAM, which cancels the handler).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import socket
import struct
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import hpack

from beam_pipeline.serving.coalesce import CoalescingTransport

log = logging.getLogger(__name__)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0, 1, 2, 3, 4
PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 5, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR = 0, 1, 3, 6
REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = 7, 8, 9
MAX_WINDOW = 2**31 - 1
DEFAULT_WINDOW = 65_535
MAX_FRAME = 16_384  # what this server receives (HTTP/2's default: no SETTINGS needed)
MAX_STREAMS = 1_000
MAX_HEADER_BYTES = 64 * 1024

# gRPC status codes (grpc.StatusCode's numbers)
OK, UNKNOWN, RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL = 0, 2, 8, 12, 13

_U32 = struct.Struct(">I")
_FRAME = struct.Struct(">HBBBI")  # length (high 16 bits, low 8 bits), type, flags, stream
# headers grpc.aio leaves out of ``invocation_metadata``
_TRANSPORT_KEYS = frozenset(
    (b"content-type", b"te", b"grpc-timeout", b"grpc-encoding", b"grpc-accept-encoding")
)


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _FRAME.pack(n >> 8, n & 0xFF, kind, flags, stream) + payload


def data_frames(
    sid: int, pending: memoryview, window: int, max_frame: int, last_flags: int = 0
) -> tuple[list[bytes], memoryview]:
    """DATA frames for as much of ``pending`` as ``window`` bytes allow (the smaller of the
    connection's and the stream's), each at most ``max_frame``; the frame that sends the last
    byte gets ``last_flags`` (END_STREAM where nothing follows). Returns them and what is left;
    the caller takes what was sent off both windows."""
    out = []
    while pending and window > 0:
        piece, pending = pending[: min(window, max_frame)], pending[min(window, max_frame) :]
        window -= len(piece)
        out.append(frame(DATA, 0 if pending else last_flags, sid, bytes(piece)))
    return out, pending


def _integer(value: int, bits: int, first: int = 0) -> bytes:
    """HPACK's integer with a ``bits``-bit prefix (RFC 7541 5.1), ``first`` the prefix's flags."""
    limit = (1 << bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(name: bytes, value: bytes) -> bytes:
    """A header as a literal field without indexing, new name (RFC 7541 6.2.2): no Huffman, no
    dynamic table, so the bytes mean the same on every connection."""
    return b"\x00" + _integer(len(name), 7) + name + _integer(len(value), 7) + value


_HEAD = b"\x88" + field(b"content-type", b"application/grpc")  # :status 200 (static index 8)
_STATUS_OK = field(b"grpc-status", b"0")
_UNSUPPORTED_TYPE = field(b":status", b"415")  # not a gRPC request (gRPC's HTTP answer)
_SAFE = frozenset(range(0x20, 0x7F)) - {ord("%")}


def _percent(details: str) -> bytes:
    """``grpc-message``'s percent-encoding of the UTF-8 text."""
    raw = details.encode("utf-8", "replace")
    if all(b in _SAFE for b in raw):
        return raw
    return b"".join(bytes((b,)) if b in _SAFE else b"%%%02X" % b for b in raw)


def metadata_fields(metadata: Iterable[tuple[str, Any]]) -> bytes:
    out = []
    for key, value in metadata:
        name = key.lower().encode("ascii")
        if name.endswith(b"-bin"):
            raw = value if isinstance(value, bytes) else str(value).encode()
            data = base64.b64encode(raw).rstrip(b"=")
        else:
            data = value if isinstance(value, bytes) else str(value).encode("ascii", "replace")
        out.append(field(name, data))
    return b"".join(out)


class Abort(Exception):
    """`Context.abort`: ends the call with ``code`` (a grpc.StatusCode) and ``details``."""

    def __init__(self, code: Any, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class Context:
    """What a grpc.aio handler calls on its ``context``."""

    __slots__ = ("_metadata", "trailing", "code", "details", "request_bytes")

    def __init__(self, metadata: tuple[tuple[str, Any], ...], request_bytes: bytes = b"") -> None:
        self._metadata = metadata
        self.request_bytes = request_bytes  # the message as received (uncompressed)
        self.trailing: tuple[tuple[str, Any], ...] = ()
        self.code: Any = None
        self.details = ""

    def invocation_metadata(self) -> tuple[tuple[str, Any], ...]:
        return self._metadata

    def set_trailing_metadata(self, metadata: Iterable[tuple[str, Any]]) -> None:
        self.trailing = tuple(metadata)

    def set_code(self, code: Any) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    async def abort(self, code: Any, details: str = "", trailing_metadata: Any = ()) -> None:
        if trailing_metadata:
            self.trailing = tuple(trailing_metadata)
        raise Abort(code, details)


Handler = Callable[[Any, Context], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    """One unary method: its handler, and how its request is read and its answer written."""

    handler: Handler
    parse: Callable[[bytes], Any]
    serialize: Callable[[Any], bytes]


@dataclass(frozen=True)
class _CallDetails:
    """grpc.HandlerCallDetails, for a generic handler's ``service``."""

    method: str
    invocation_metadata: tuple[tuple[str, Any], ...] = ()


def _code(status: Any) -> int:
    """A grpc.StatusCode (or an int) as its number."""
    return status if isinstance(status, int) else int(status.value[0])


class _Head(NamedTuple):
    """What a call's request headers say."""

    path: bytes
    content_type: bytes
    encoding: bytes
    metadata: tuple[tuple[str, Any], ...]

    @classmethod
    def read(cls, headers: Iterable[tuple[bytes, bytes]]) -> _Head:
        path = content_type = b""
        encoding = b"identity"
        metadata: list[tuple[str, Any]] = []
        for name, value in headers:
            if name[:1] == b":":
                if name == b":path":
                    path = value
            elif name == b"content-type":
                content_type = value
            elif name == b"grpc-encoding":
                encoding = value
            elif name not in _TRANSPORT_KEYS:
                key = name.decode("ascii", "replace")
                if name.endswith(b"-bin"):
                    try:
                        metadata.append((key, base64.b64decode(value + b"=" * (-len(value) % 4))))
                    except binascii.Error:
                        metadata.append((key, value))  # not base64: the bytes as sent
                else:
                    metadata.append((key, value.decode("ascii", "replace")))
        return cls(path, content_type, encoding, tuple(metadata))


class _Stream:
    __slots__ = ("id", "head", "route", "data", "ended", "task", "window", "pending", "trailers")

    def __init__(self, sid: int, head: _Head, window: int) -> None:
        self.id = sid
        self.head = head
        self.route: Route | None = None
        self.data = bytearray()
        self.ended = False  # the client ended its side (END_STREAM)
        self.task: asyncio.Task[None] | None = None
        self.window = window  # what this server may still send on the stream
        self.pending = memoryview(b"")  # answer bytes waiting for a window
        self.trailers = b""


class ProtocolError(Exception):
    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code = code


class Connection(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: H2GrpcServer) -> None:
        self.server = server
        self.transport: Any = None
        self.loop = asyncio.get_running_loop()  # made by the listening server, on its loop
        self.buffer = bytearray()
        self.preface = False
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = MAX_HEADER_BYTES
        self.streams: dict[int, _Stream] = {}
        self.last_stream = 0
        self.window = DEFAULT_WINDOW  # the connection's send window
        self.initial_window = DEFAULT_WINDOW  # the client's stream windows
        self.max_frame = MAX_FRAME  # the client's largest frame
        self.received = 0  # bytes since this server last opened its receive window
        self.pending = 0  # bytes of requests not yet complete, over the open streams
        self.block_stream = 0  # a header block waiting for CONTINUATION
        self.block = bytearray()
        self.block_ends = False
        self.blocked: dict[int, _Stream] = {}  # answers waiting for a window
        self.heads: dict[tuple[bytes, int], _Head] = {}  # see `_head`
        self.table_version = 0
        self.going_away = False

    # -- the connection --------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        # the writes of one turn of the loop in one system call (`coalesce`)
        self.transport = CoalescingTransport(transport, asyncio.get_running_loop())
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.server.connections.add(self)
        settings = struct.pack(">HIHIHI", 3, MAX_STREAMS, 4, MAX_WINDOW, 6, MAX_HEADER_BYTES)
        transport.write(
            frame(SETTINGS, 0, 0, settings)
            + frame(WINDOW_UPDATE, 0, 0, _U32.pack(MAX_WINDOW - DEFAULT_WINDOW))
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        for stream in self.streams.values():
            if stream.task is not None:
                stream.task.cancel()
        self.streams.clear()
        self.blocked.clear()
        self.server.changed()

    def goaway(self, code: int = NO_ERROR, why: str = "") -> None:
        """Refuse new calls; the open ones finish (``code`` != 0: close now)."""
        if self.transport is None or self.transport.is_closing():
            return
        self.going_away = True
        payload = _U32.pack(self.last_stream) + _U32.pack(code) + why.encode()[:200]
        self.transport.write(frame(GOAWAY, 0, 0, payload))
        if code != NO_ERROR or not self.streams:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        try:
            if not self.preface:
                if len(buffer) < len(PREFACE):
                    if not PREFACE.startswith(bytes(buffer)):
                        raise ProtocolError(PROTOCOL_ERROR, "not an HTTP/2 client preface")
                    return
                if buffer[: len(PREFACE)] != PREFACE:
                    raise ProtocolError(PROTOCOL_ERROR, "not an HTTP/2 client preface")
                del buffer[: len(PREFACE)]
                self.preface = True
            at, end = 0, len(buffer)
            while end - at >= 9:
                length = int.from_bytes(buffer[at : at + 3], "big")
                if length > MAX_FRAME:
                    raise ProtocolError(FRAME_SIZE_ERROR, f"a frame of {length} bytes")
                if end - at < 9 + length:
                    break
                kind, flags = buffer[at + 3], buffer[at + 4]
                sid = _U32.unpack_from(buffer, at + 5)[0] & 0x7FFFFFFF
                payload = bytes(buffer[at + 9 : at + 9 + length])
                at += 9 + length
                if self.block_stream and kind != CONTINUATION:
                    raise ProtocolError(PROTOCOL_ERROR, "a header block without its CONTINUATION")
                self._frame(kind, flags, sid, payload)
                if self.transport.is_closing():
                    return
            del buffer[:at]
        except ProtocolError as exc:
            self.goaway(exc.code, str(exc))
            return
        if self.received > 2**30:
            self.transport.write(frame(WINDOW_UPDATE, 0, 0, _U32.pack(self.received)))
            self.received = 0

    def _frame(self, kind: int, flags: int, sid: int, payload: bytes) -> None:
        if kind == DATA:
            self._data(flags, sid, payload)
        elif kind == HEADERS:
            self._headers(flags, sid, payload)
        elif kind == CONTINUATION:
            if sid != self.block_stream:
                raise ProtocolError(PROTOCOL_ERROR, "CONTINUATION on another stream")
            self.block += payload
            if len(self.block) > MAX_HEADER_BYTES:
                raise ProtocolError(PROTOCOL_ERROR, "a header block over 64 KiB")
            if flags & END_HEADERS:
                self.block_stream = 0
                self._header_block(sid, bytes(self.block), self.block_ends)
        elif kind == SETTINGS:
            if sid:
                raise ProtocolError(PROTOCOL_ERROR, "SETTINGS on a stream")
            if not flags & ACK:
                self._settings(payload)
        elif kind == PING:
            if not flags & ACK:
                self.transport.write(frame(PING, ACK, 0, payload))
        elif kind == WINDOW_UPDATE:
            if len(payload) != 4:
                raise ProtocolError(FRAME_SIZE_ERROR, "WINDOW_UPDATE of other than 4 bytes")
            increment = _U32.unpack(payload)[0] & 0x7FFFFFFF
            if sid == 0:
                self.window += increment
                if self.window > MAX_WINDOW:
                    raise ProtocolError(FLOW_CONTROL_ERROR, "the connection's window overflowed")
            else:
                stream = self.streams.get(sid)
                if stream is not None:
                    stream.window += increment
            if self.blocked:
                self._flush()
        elif kind == RST_STREAM:
            stream = self.streams.pop(sid, None)
            self.blocked.pop(sid, None)
            if stream is not None:
                self._release(stream)
                if stream.task is not None:
                    stream.task.cancel()
            self.server.changed()
        elif kind == GOAWAY:
            self.going_away = True
            if not self.streams:
                self.transport.close()
        elif kind == PUSH_PROMISE:
            raise ProtocolError(PROTOCOL_ERROR, "PUSH_PROMISE from a client")
        # PRIORITY and unknown frame types are ignored (RFC 9113 5.5)

    def _settings(self, payload: bytes) -> None:
        if len(payload) % 6:
            raise ProtocolError(FRAME_SIZE_ERROR, "SETTINGS of a length not a multiple of 6")
        for i in range(0, len(payload), 6):
            key, value = struct.unpack_from(">HI", payload, i)
            if key == 4:  # INITIAL_WINDOW_SIZE: every open stream's window moves by the change
                if value > MAX_WINDOW:
                    raise ProtocolError(FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE over 2^31-1")
                for stream in self.streams.values():
                    stream.window += value - self.initial_window
                self.initial_window = value
            elif key == 5:  # MAX_FRAME_SIZE
                if not MAX_FRAME <= value <= 2**24 - 1:
                    raise ProtocolError(PROTOCOL_ERROR, f"MAX_FRAME_SIZE {value}")
                self.max_frame = value
        self.transport.write(frame(SETTINGS, ACK, 0))
        if self.blocked:
            self._flush()

    @staticmethod
    def _unpad(flags: int, payload: bytes) -> bytes:
        if flags & PADDED:
            if not payload or payload[0] >= len(payload):
                raise ProtocolError(PROTOCOL_ERROR, "padding longer than its frame")
            return payload[1 : len(payload) - payload[0]]
        return payload

    # -- a call's frames -------------------------------------------------------------------

    def _headers(self, flags: int, sid: int, payload: bytes) -> None:
        if sid == 0:
            raise ProtocolError(PROTOCOL_ERROR, "HEADERS on stream 0")
        payload = self._unpad(flags, payload)
        if flags & PRIORITY_FLAG:
            payload = payload[5:]
        if flags & END_HEADERS:
            self._header_block(sid, payload, bool(flags & END_STREAM))
        else:
            self.block_stream, self.block, self.block_ends = (
                sid,
                bytearray(payload),
                bool(flags & END_STREAM),
            )

    def _head(self, block: bytes) -> _Head:
        """A header block's request head. A block whose decoding left the HPACK table as it was
        means the same while the table stays so: it is kept (a client repeating its headers, as
        grpc's clients do once they are indexed, is not decoded again: ~16-28 µs a call)."""
        key = (block, self.table_version)
        head = self.heads.get(key)
        if head is not None:
            return head
        entries = self.decoder.header_table.dynamic_entries
        size, first = len(entries), entries[0] if entries else None
        try:
            head = _Head.read(self.decoder.decode(block, raw=True))
        except hpack.HPACKError as exc:
            raise ProtocolError(COMPRESSION_ERROR, f"HPACK: {exc}") from None
        if len(entries) != size or (entries[0] if entries else None) is not first:
            self.table_version += 1
            self.heads.clear()
        elif len(self.heads) < 64:
            self.heads[key] = head
        return head

    def _header_block(self, sid: int, block: bytes, ends: bool) -> None:
        head = self._head(block)
        stream = self.streams.get(sid)
        if stream is not None:  # the client's trailers: its message is complete
            if ends and stream.task is None:
                stream.ended = True
                self._call(stream)
            return
        if sid % 2 == 0 or sid <= self.last_stream:
            raise ProtocolError(PROTOCOL_ERROR, f"HEADERS opening stream {sid}")
        self.last_stream = sid
        if self.going_away or len(self.streams) >= MAX_STREAMS:
            self.transport.write(frame(RST_STREAM, 0, sid, _U32.pack(REFUSED_STREAM)))
            return
        stream = _Stream(sid, head, self.initial_window)
        self.streams[sid] = stream
        if not head.content_type.startswith(b"application/grpc"):
            self._end(stream, _UNSUPPORTED_TYPE)
            return
        stream.route = self.server.route(head.path)
        if stream.route is None:
            path = head.path.decode(errors="replace")
            self._error(stream, UNIMPLEMENTED, f"Method not found: {path}")
            return
        if ends:
            stream.ended = True
            self._call(stream)

    def _data(self, flags: int, sid: int, payload: bytes) -> None:
        self.received += len(payload)  # flow control counts the whole frame, padding included
        if sid == 0:
            raise ProtocolError(PROTOCOL_ERROR, "DATA on stream 0")
        stream = self.streams.get(sid)
        if stream is None or stream.ended:
            return  # a call already answered or reset: its late frames are dropped
        data = self._unpad(flags, payload)
        stream.data += data
        self.pending += len(data)
        if self.pending > self.server.max_pending:
            self._release(stream)
            self._error(
                stream,
                RESOURCE_EXHAUSTED,
                f"this connection holds over {self.server.max_pending} bytes of unfinished "
                "requests",
            )
            return
        if flags & END_STREAM:
            stream.ended = True
            self._call(stream)
        elif self._too_large(stream.data):  # answered now; the client may stop sending
            self._call(stream)

    def _too_large(self, data: bytearray) -> bool:
        """A message over ``max_message``, by its length prefix or by the bytes it came with."""
        limit = self.server.max_message
        return len(data) >= 5 and (_U32.unpack_from(data, 1)[0] > limit or len(data) > limit + 5)

    def _call(self, stream: _Stream) -> None:
        """The request is complete (or too large already): read its message, start its
        handler."""
        limit = self.server.max_message
        data = stream.data
        self._release(stream)
        if self._too_large(data):
            size = _U32.unpack_from(data, 1)[0]
            self._error(
                stream, RESOURCE_EXHAUSTED, f"Received message larger than max ({size} vs. {limit})"
            )
            return
        if len(data) < 5 or _U32.unpack_from(data, 1)[0] != len(data) - 5:
            self._error(stream, INTERNAL, "expected one length-prefixed request message")
            return
        message = bytes(data[5:])
        if data[0]:
            encoding = stream.head.encoding
            try:
                if encoding == b"gzip":
                    message = zlib.decompress(message, 16 + zlib.MAX_WBITS)
                elif encoding == b"deflate":
                    message = zlib.decompress(message)
                else:
                    self._error(
                        stream,
                        UNIMPLEMENTED,
                        f"Compression {encoding.decode(errors='replace')!r} is not supported",
                    )
                    return
            except zlib.error as exc:
                self._error(stream, INTERNAL, f"Cannot decompress the request: {exc}")
                return
        assert stream.route is not None
        try:
            request = stream.route.parse(message)
        except Exception:  # protobuf's DecodeError, and whatever a broken message raises
            self._error(stream, INTERNAL, "Exception deserializing request!")
            return
        stream.task = self.loop.create_task(self._run(stream, stream.route, request, message))

    async def _run(self, stream: _Stream, route: Route, request: Any, message: bytes) -> None:
        context = Context(stream.head.metadata, message)
        try:
            response = await route.handler(request, context)
        except Abort as exc:
            self._error(stream, _code(exc.code), exc.details, context.trailing)
            return
        except asyncio.CancelledError:
            return  # the client reset the call, or the connection is gone
        except Exception as exc:
            if context.code is None or _code(context.code) == OK:  # not a set code (a base
                # servicer's UNIMPLEMENTED raises NotImplementedError after setting it)
                log.exception("serve: gRPC handler %s failed", route.handler.__name__)
                self._error(stream, UNKNOWN, f"Unexpected {type(exc).__name__}", context.trailing)
                return
            response = None
        if context.code is not None and _code(context.code) != OK:
            self._error(stream, _code(context.code), context.details, context.trailing)
            return
        if response is None:
            self._error(stream, INTERNAL, "the handler returned no answer", context.trailing)
            return
        self._answer(stream, route.serialize(response), context.trailing)

    # -- answers ---------------------------------------------------------------------------

    def _answer(self, stream: _Stream, message: bytes, trailing: tuple[Any, ...]) -> None:
        if self.streams.get(stream.id) is not stream or self.transport.is_closing():
            return
        sid = stream.id
        trailers = frame(
            HEADERS, END_HEADERS | END_STREAM, sid, _STATUS_OK + metadata_fields(trailing)
        )
        body = b"\x00" + _U32.pack(len(message)) + message
        head = frame(HEADERS, END_HEADERS, sid, _HEAD)
        n = len(body)
        if n <= self.max_frame and n <= self.window and n <= stream.window:
            self.window -= n
            self.transport.write(head + frame(DATA, 0, sid, body) + trailers)
            self._closed(stream)
            return
        self.transport.write(head)
        stream.pending = memoryview(body)
        stream.trailers = trailers
        self.blocked[sid] = stream
        self._flush()

    def _flush(self) -> None:
        """Send what the windows allow of the answers waiting for them."""
        out = []
        finished = []
        for sid, stream in list(self.blocked.items()):
            before = len(stream.pending)
            frames, stream.pending = data_frames(
                sid, stream.pending, min(self.window, stream.window), self.max_frame
            )
            out += frames
            self.window -= before - len(stream.pending)
            stream.window -= before - len(stream.pending)
            if not stream.pending:
                out.append(stream.trailers)
                del self.blocked[sid]
                finished.append(stream)
            if self.window <= 0:
                break
        if out:
            self.transport.write(b"".join(out))
        for stream in finished:  # after the write: the last may close a connection going away
            self._closed(stream)

    def _error(
        self, stream: _Stream, code: int, details: str, trailing: tuple[Any, ...] = ()
    ) -> None:
        """Trailers alone (gRPC's "Trailers-Only" answer)."""
        block = _HEAD + field(b"grpc-status", str(code).encode())
        if details:
            block += field(b"grpc-message", _percent(details[:4096]))
        self._end(stream, block + metadata_fields(trailing))

    def _end(self, stream: _Stream, block: bytes) -> None:
        if self.streams.get(stream.id) is not stream or self.transport.is_closing():
            return
        sid = stream.id
        first, rest = block[: self.max_frame], block[self.max_frame :]
        flags = END_STREAM | (0 if rest else END_HEADERS)
        out = [frame(HEADERS, flags, sid, first)]
        while rest:
            piece, rest = rest[: self.max_frame], rest[self.max_frame :]
            out.append(frame(CONTINUATION, 0 if rest else END_HEADERS, sid, piece))
        if not stream.ended:  # answered before the request ended: the client may stop
            out.append(frame(RST_STREAM, 0, sid, _U32.pack(NO_ERROR)))
        self.transport.write(b"".join(out))
        self._closed(stream)

    def _release(self, stream: _Stream) -> None:
        """Forget a request's unfinished bytes (its message is read, or it is answered)."""
        self.pending -= len(stream.data)
        stream.data = bytearray()

    def _closed(self, stream: _Stream) -> None:
        self._release(stream)
        self.streams.pop(stream.id, None)
        if self.going_away and not self.streams:
            self.transport.close()
        self.server.changed()


class H2GrpcServer:
    """The listening side: `Connection`s, and a graceful `stop`."""

    def __init__(self, max_message: int, max_pending: int | None = None) -> None:
        """``max_message``: the largest request message; ``max_pending``: the bytes of
        unfinished requests a connection may hold (4 x ``max_message`` by default): the receive
        windows are wide open, so this bounds a connection's memory."""
        self.max_message = max_message
        self.max_pending = max_pending or 4 * max_message
        self._handlers: list[Any] = []
        self._routes: dict[bytes, Route | None] = {}
        self.connections: set[Connection] = set()
        self._server: asyncio.AbstractServer | None = None
        self._idle: asyncio.Event | None = None

    def add_generic_rpc_handlers(self, handlers: Iterable[Any]) -> None:
        """As grpc's servers: what the generated ``add_*Servicer_to_server`` calls."""
        self._handlers.extend(handlers)
        self._routes.clear()

    def route(self, path: bytes) -> Route | None:
        """The unary method at ``path`` (``/package.Service/Method``), None when there is none."""
        if path in self._routes:
            return self._routes[path]
        found = None
        details = _CallDetails(path.decode("ascii", "replace"))
        for handler in self._handlers:
            method = handler.service(details)
            if method is not None:
                if method.unary_unary is not None:
                    found = Route(
                        method.unary_unary, method.request_deserializer, method.response_serializer
                    )
                break
        self._routes[path] = found
        return found

    async def start(self, host: str, port: int, reuse_port: bool = False) -> int:
        """Listen; returns the port (``port`` 0: one the system picked)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Connection(self), host, port, reuse_port=reuse_port or None, backlog=1024
        )
        return int(self._server.sockets[0].getsockname()[1])

    def changed(self) -> None:
        if self._idle is not None and not any(c.streams for c in self.connections):
            self._idle.set()

    async def stop(self, grace: float | None) -> None:
        """Stop listening, send GOAWAY, let open calls finish for ``grace`` seconds, close."""
        if self._server is not None:
            self._server.close()
        self._idle = asyncio.Event()
        for connection in list(self.connections):
            connection.goaway()
        self.changed()
        if grace:
            try:
                await asyncio.wait_for(self._idle.wait(), grace)
            except TimeoutError:
                pass
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()
