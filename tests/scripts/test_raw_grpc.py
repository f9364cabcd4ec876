"""The benchmark's raw gRPC client (scripts/raw_grpc.py) against a real grpc.aio server: calls
answered and timed, a message larger than the server's flow-control windows and frame size sent
as they open, an error answer counted as a failure."""

from __future__ import annotations

import asyncio
import time

import grpc
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from scripts.raw_grpc import GrpcConnection, header_block


class _Predict(prediction_service_pb2_grpc.PredictionServiceServicer):
    async def Predict(self, request: predict_pb2.PredictRequest, context: object) -> object:
        response = predict_pb2.PredictResponse()
        size = sum(len(v) for t in request.inputs.values() for v in t.string_val)
        response.model_spec.name = f"{request.model_spec.name}:{size}"
        return response


class _Status(model_service_pb2_grpc.ModelServiceServicer):
    async def GetModelStatus(self, request: object, context: grpc.aio.ServicerContext) -> object:
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such model")


async def _calls(message: bytes, path: str, seconds: float) -> tuple[list[float], list[str]]:
    server = grpc.aio.server()
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_Predict(), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(_Status(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    target = f"127.0.0.1:{port}"
    loop = asyncio.get_running_loop()
    connections = [
        (
            await loop.create_connection(
                lambda: GrpcConnection(header_block(target, path), message), "127.0.0.1", port
            )
        )[1]
        for _ in range(3)
    ]
    latencies: list[float] = []
    failures: list[str] = []
    try:
        stop_at = time.perf_counter() + seconds
        await asyncio.wait_for(
            asyncio.gather(*(c.start(latencies, failures, stop_at) for c in connections)), 30
        )
    finally:
        for c in connections:
            c.transport.close()
        await server.stop(0)
    return latencies, failures


def _predict(value_bytes: int) -> bytes:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.inputs["x"].dtype = 7  # DT_STRING
    request.inputs["x"].string_val.append(b"v" * value_bytes)
    return request.SerializeToString()


def test_calls_are_answered_and_timed() -> None:
    latencies, failures = asyncio.run(
        _calls(_predict(10), "/tensorflow.serving.PredictionService/Predict", 0.3)
    )
    assert failures == []
    assert len(latencies) >= 30 and all(0 < t < 5 for t in latencies)


def test_a_message_larger_than_the_windows_is_sent_as_they_open() -> None:
    # 300 KB: over the server's 64 KiB initial windows and its 16 KiB frames
    latencies, failures = asyncio.run(
        _calls(_predict(300_000), "/tensorflow.serving.PredictionService/Predict", 0.5)
    )
    assert failures == []
    assert len(latencies) >= 6


def test_an_error_answer_is_a_failure() -> None:
    message = get_model_status_pb2.GetModelStatusRequest().SerializeToString()
    latencies, failures = asyncio.run(
        _calls(message, "/tensorflow.serving.ModelService/GetModelStatus", 0.2)
    )
    assert latencies and len(failures) == len(latencies)
    assert failures[0].startswith("an answer without a message")
