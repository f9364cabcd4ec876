"""`coalesce.CoalescingTransport`: a response's writes leave in one system call; nothing is held
past the turn of the event loop, lost on close, or sent after an abort. And through uvicorn: a
REST answer arrives as one piece, a ``100 Continue`` is sent before the body is read."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn

from beam_pipeline.serving.coalesce import CoalescingTransport
from beam_pipeline.serving.http1 import CoalescingHttpToolsProtocol


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


def test_writes_of_one_turn_go_out_as_one() -> None:
    async def main() -> FakeTransport:
        real = FakeTransport()
        t = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        t.write(b"")
        t.writelines([b"o", b"k"])
        assert real.writes == []  # kept until the turn ends
        assert t.get_write_buffer_size() == 40
        await asyncio.sleep(0)
        assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]
        t.write(b"next")  # a later turn: a write of its own
        await asyncio.sleep(0)
        assert t.get_extra_info("peername") == ("127.0.0.1", 1)  # the rest is the transport's
        return real

    assert asyncio.run(main()).writes[1:] == [b"next"]


def test_close_sends_what_is_kept_and_abort_drops_it() -> None:
    async def main() -> tuple[FakeTransport, FakeTransport]:
        loop = asyncio.get_running_loop()
        closed, aborted = FakeTransport(), FakeTransport()
        a = CoalescingTransport(closed, loop)  # type: ignore[arg-type]
        a.write(b"bye")
        a.close()
        b = CoalescingTransport(aborted, loop)  # type: ignore[arg-type]
        b.write(b"lost")
        b.abort()
        await asyncio.sleep(0)  # the scheduled flushes find nothing (more) to send
        return closed, aborted

    closed, aborted = asyncio.run(main())
    assert (closed.writes, closed.closed) == ([b"bye"], True)
    assert (aborted.writes, aborted.aborted) == ([], True)


async def _app(scope: Any, receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    answer = b'{"received": %d}' % len(body)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(answer)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": answer})


def _recv_all(sock: socket.socket, until: bytes) -> list[bytes]:
    pieces = []
    data = b""
    while until not in data:
        piece = sock.recv(65536)
        if not piece:
            break
        pieces.append(piece)
        data += piece
    return pieces


def test_through_uvicorn_an_answer_arrives_whole_and_100_continue_is_not_held() -> None:
    async def main() -> tuple[list[list[bytes]], bytes, bytes]:
        config = uvicorn.Config(
            _app, host="127.0.0.1", port=0, http=CoalescingHttpToolsProtocol, log_level="error"
        )
        server = uvicorn.Server(config)
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        task = asyncio.create_task(server.serve(sockets=[listener]))
        while not server.started:
            await asyncio.sleep(0.01)
        port = listener.getsockname()[1]

        def client() -> tuple[list[list[bytes]], bytes, bytes]:
            with socket.create_connection(("127.0.0.1", port)) as s:
                answers = []
                for _ in range(20):  # each answer's head and body come in one segment
                    s.sendall(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc")
                    answers.append(_recv_all(s, b"}"))
                s.sendall(
                    b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n"
                    b"expect: 100-continue\r\n\r\n"
                )
                s.settimeout(5)
                interim = s.recv(65536)  # sent while the body is awaited, not kept
                s.sendall(b"abcd")
                final = b"".join(_recv_all(s, b"}"))
            return answers, interim, final

        try:
            return await asyncio.to_thread(client)
        finally:
            server.should_exit = True
            await task

    answers, interim, final = asyncio.run(main())
    assert all(len(pieces) == 1 for pieces in answers), answers
    assert answers[0][0].startswith(b"HTTP/1.1 200 OK") and answers[0][0].endswith(
        b'{"received": 3}'
    )
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert final.endswith(b'{"received": 4}')
