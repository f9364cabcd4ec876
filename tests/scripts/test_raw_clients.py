"""The benchmark's raw load clients (scripts/raw_clients.py) against real servers: a grpc.aio
server (calls answered and timed, a message larger than the server's flow-control windows and
frame size sent as they open, an error answer counted as a failure) and an HTTP/1.1 server
(answers cut across reads, a non-200 answer counted as a failure)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from beam_pipeline.serving.h2grpc import frame
from scripts.raw_clients import (
    ClosedLoop,
    GrpcConnection,
    HttpConnection,
    drive,
    header_block,
    http_request,
)


async def _timed(run: Callable[[], Awaitable[None]]) -> tuple[float]:
    t0 = time.perf_counter()
    await run()
    return (time.perf_counter() - t0,)


async def _drive(port: int, make: Callable[[], ClosedLoop], seconds: float) -> Any:
    loop = asyncio.get_running_loop()

    async def connect() -> ClosedLoop:
        return (await loop.create_connection(make, "127.0.0.1", port))[1]

    return await asyncio.wait_for(drive(connect, 3, seconds, 0.05, _timed), 30)


class _Predict(prediction_service_pb2_grpc.PredictionServiceServicer):
    async def Predict(self, request: predict_pb2.PredictRequest, context: object) -> object:
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        return response


class _Status(model_service_pb2_grpc.ModelServiceServicer):
    async def GetModelStatus(self, request: object, context: grpc.aio.ServicerContext) -> object:
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such model")


async def _grpc_calls(message: bytes, path: str, seconds: float) -> Any:
    server = grpc.aio.server()
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_Predict(), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(_Status(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    headers = header_block(f"127.0.0.1:{port}", path)
    try:
        return await _drive(port, lambda: GrpcConnection(headers, message), seconds)
    finally:
        await server.stop(0)


def _predict(value_bytes: int) -> bytes:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.inputs["x"].dtype = 7  # DT_STRING
    request.inputs["x"].string_val.append(b"v" * value_bytes)
    return request.SerializeToString()


PREDICT = "/tensorflow.serving.PredictionService/Predict"


def test_grpc_calls_are_answered_and_timed() -> None:
    latencies, failures, elapsed = asyncio.run(_grpc_calls(_predict(10), PREDICT, 0.3))
    assert failures == []
    assert len(latencies) >= 30 and all(0 < t < 5 for t in latencies)
    assert 0.3 <= elapsed < 5


def test_a_grpc_message_larger_than_the_windows_is_sent_as_they_open() -> None:
    # 300 KB: over the server's 64 KiB initial windows and its 16 KiB frames
    latencies, failures, _ = asyncio.run(_grpc_calls(_predict(300_000), PREDICT, 0.5))
    assert failures == []
    assert len(latencies) >= 6


def test_a_grpc_error_answer_is_a_failure() -> None:
    message = get_model_status_pb2.GetModelStatusRequest().SerializeToString()
    latencies, failures, _ = asyncio.run(
        _grpc_calls(message, "/tensorflow.serving.ModelService/GetModelStatus", 0.2)
    )
    assert latencies and len(failures) == len(latencies)
    assert failures[0].startswith("an answer without a message")


async def _http_calls(status: int, seconds: float) -> Any:
    """A keep-alive server whose answers arrive in two pieces (the head cut in the middle)."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                seen.append(head + await reader.readexactly(length))
                body = b'{"predictions": [1]}'
                answer = (
                    f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(body)}\r\n\r\n"
                ).encode() + body
                writer.write(answer[:20])
                await writer.drain()
                await asyncio.sleep(0)
                writer.write(answer[20:])
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    request = http_request("POST", "127.0.0.1", port, "/v1/models/m:predict", b'{"instances": []}')
    try:
        return *await _drive(port, lambda: HttpConnection(request), seconds), seen
    finally:
        server.close()


def test_http_answers_cut_across_reads_are_counted() -> None:
    latencies, failures, _, seen = asyncio.run(_http_calls(200, 0.3))
    assert failures == [] and len(latencies) >= 30
    assert seen[0].startswith(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: 127.0.0.1:")
    assert seen[0].endswith(b'Content-Length: 17\r\n\r\n{"instances": []}')


def test_a_non_200_http_answer_is_a_failure() -> None:
    latencies, failures, _, _ = asyncio.run(_http_calls(503, 0.2))
    assert latencies and len(failures) == len(latencies)
    assert failures[0].startswith("503 ")


async def _reset_calls(seconds: float) -> Any:
    """An HTTP/2 server that resets every stream once its request has arrived (RST_STREAM)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readexactly(24)  # the client's preface
            writer.write(frame(4, 0, 0))  # SETTINGS, empty
            while True:
                head = await reader.readexactly(9)
                length = int.from_bytes(head[:3], "big")
                await reader.readexactly(length)
                stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
                if head[3] == 0 and length:  # DATA read: the connection's window reopens
                    writer.write(frame(8, 0, 0, length.to_bytes(4, "big")))  # WINDOW_UPDATE
                if head[3] == 0 and head[4] & 1:  # the request's last DATA frame
                    writer.write(frame(3, 0, stream, (2).to_bytes(4, "big")))  # INTERNAL_ERROR
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    headers = header_block(f"127.0.0.1:{port}", PREDICT)
    try:
        return await _drive(port, lambda: GrpcConnection(headers, _predict(10)), seconds)
    finally:
        server.close()


def test_a_reset_stream_is_one_failure() -> None:
    latencies, failures, _ = asyncio.run(_reset_calls(0.2))
    assert latencies and len(failures) == len(latencies)
    assert failures[0] == "RST_STREAM error code 2"
