"""`serving.h2grpc` (gRPC's unary calls over HTTP/2 without grpc.aio) against grpcio's own client
and the ``h2`` library's HTTP/2 client: what a TF Serving client sees (metadata, statuses,
details, compression, flow control on large answers, concurrent calls, cancellation, a graceful
stop), and the protocol's edge (padding, CONTINUATION, a bad preface). The whole server is
driven through the serving stack in tests/serving/test_server.py and friends."""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from beam_pipeline.serving import h2grpc

LIMIT = 1 << 20


class _Models(model_service_pb2_grpc.ModelServiceServicer):
    async def GetModelStatus(self, request: Any, context: Any) -> Any:  # noqa: N802
        given = dict(context.invocation_metadata())
        if request.model_spec.name == "missing":
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                "no model 'missing' (ünï % code)",
                (("x-request-id", "r1"),),
            )
        if request.model_spec.name == "broken":
            raise RuntimeError("a bug")
        answer = get_model_status_pb2.GetModelStatusResponse()
        answer.model_version_status.add().version = len(request.model_spec.name)
        context.set_trailing_metadata(
            (("x-request-id", given.get("x-request-id", "none")), ("echo-bin", b"\x00\xff"))
        )
        return answer


class _Predictions(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self) -> None:
        self.cancelled = 0

    async def Predict(self, request: Any, context: Any) -> Any:  # noqa: N802
        try:
            await asyncio.sleep(float(request.model_spec.signature_name or 0))
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        answer = predict_pb2.PredictResponse()
        answer.model_spec.name = request.model_spec.name
        for key, tensor in request.inputs.items():  # echoed: an answer as large as its request
            answer.outputs[key].CopyFrom(tensor)
        return answer


class _Server:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.predictions = _Predictions()
        self.server = h2grpc.H2GrpcServer(LIMIT)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(_Models(), self.server)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            self.predictions, self.server
        )
        self.port = self.loop.run_until_complete(self.server.start("127.0.0.1", 0))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def stop(self, grace: float) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(grace), self.loop).result(30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture()
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.stop(0)
    s.close()


@pytest.fixture()
def channel(server: _Server) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


def _status(name: str) -> Any:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    return request


def _predict(name: str = "m", values: int = 0, sleep: float = 0) -> Any:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if sleep:
        request.model_spec.signature_name = str(sleep)
    if values:
        request.inputs["x"].string_val.extend([b"v" * 1000] * values)
    return request


def test_answers_with_metadata_both_ways(channel: grpc.Channel) -> None:
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    answer, call = stub.GetModelStatus.with_call(
        _status("abc"), metadata=(("x-request-id", "given-1"),), timeout=10
    )
    assert answer.model_version_status[0].version == 3
    trailing = dict(call.trailing_metadata())
    assert trailing == {"x-request-id": "given-1", "echo-bin": b"\x00\xff"}
    assert call.code() == grpc.StatusCode.OK
    for rid in ["a", "b", "a", "c", "c"] * 3:  # header blocks repeated and new (see `_head`)
        _, call = stub.GetModelStatus.with_call(
            _status("x" * len(rid)), metadata=(("x-request-id", rid),), timeout=10
        )
        assert dict(call.trailing_metadata())["x-request-id"] == rid


def test_errors_carry_code_details_and_trailing_metadata(
    channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.GetModelStatus(_status("missing"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == "no model 'missing' (ünï % code)"
    assert dict(err.value.trailing_metadata()) == {"x-request-id": "r1"}
    with pytest.raises(grpc.RpcError) as err:  # a method the servicer leaves to its base class
        stub.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as err:  # a method no servicer has
        channel.unary_unary("/no.Such/Method")(b"", timeout=10)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "/no.Such/Method" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:  # bytes that are not a PredictRequest
        channel.unary_unary("/tensorflow.serving.PredictionService/Predict")(
            b"\xff\xff", timeout=10
        )
    assert err.value.code() == grpc.StatusCode.INTERNAL
    with caplog.at_level("ERROR"), pytest.raises(grpc.RpcError) as err:  # a handler's bug
        stub.GetModelStatus(_status("broken"), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNKNOWN
    assert "a bug" in caplog.text  # logged with its traceback, not sent


def test_message_limit_compression_and_large_answers(channel: grpc.Channel) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    # ~900 KB each way: more than the client's first windows (64 KiB) and frame size (16 KiB)
    answer = stub.Predict(_predict(values=900), timeout=20)
    assert len(answer.outputs["x"].string_val) == 900
    answer = stub.Predict(_predict(values=900), timeout=20, compression=grpc.Compression.Gzip)
    assert len(answer.outputs["x"].string_val) == 900
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(_predict(values=1100), timeout=20)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"vs. {LIMIT}" in err.value.details()
    assert stub.Predict(_predict("after"), timeout=10).model_spec.name == "after"


def test_concurrent_calls_and_cancellation(server: _Server, channel: grpc.Channel) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    calls = [stub.Predict.future(_predict(f"m{i}", values=i % 3), timeout=20) for i in range(300)]
    assert [c.result().model_spec.name for c in calls] == [f"m{i}" for i in range(300)]
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(_predict(sleep=5), timeout=0.3)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    deadline = time.monotonic() + 5
    while server.predictions.cancelled == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.predictions.cancelled == 1  # the client's RST_STREAM cancelled the handler
    assert stub.Predict(_predict("still"), timeout=10).model_spec.name == "still"


def test_stop_lets_open_calls_finish_and_refuses_new_ones(server: _Server) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        assert stub.Predict(_predict("warm"), timeout=10).model_spec.name == "warm"
        slow = stub.Predict.future(_predict("slow", sleep=1.0), timeout=20)
        time.sleep(0.3)
        server.stop(10)
        assert slow.result().model_spec.name == "slow"
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", server.port)) != 0  # no longer listening


def _h2_client(port: int) -> tuple[Any, socket.socket]:
    import h2.config
    import h2.connection

    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    import h2.events

    seen: set[type] = set()  # the server's SETTINGS and its connection window, before any call
    while not {h2.events.RemoteSettingsChanged, h2.events.WindowUpdated} <= seen:
        seen.update(type(e) for e in conn.receive_data(sock.recv(65536)))
    sock.sendall(conn.data_to_send())
    return conn, sock


def _events(conn: Any, sock: socket.socket, stream: int) -> list[Any]:
    import h2.events

    seen: list[Any] = []
    while not any(isinstance(e, h2.events.StreamEnded) for e in seen):
        data = sock.recv(65536)
        assert data, "connection closed"
        for event in conn.receive_data(data):
            if getattr(event, "stream_id", stream) == stream:
                seen.append(event)
            if isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        sock.sendall(conn.data_to_send())
    return seen


def test_padding_continuation_and_a_second_stream(server: _Server) -> None:
    import h2.events

    conn, sock = _h2_client(server.port)
    with sock:
        message = _predict("padded").SerializeToString()
        body = b"\x00" + len(message).to_bytes(4, "big") + message
        for stream, extra in ((1, ""), (3, "x" * 40_000)):  # 40 kB of metadata: CONTINUATION
            conn.send_headers(
                stream,
                [
                    (":method", "POST"),
                    (":scheme", "http"),
                    (":path", "/tensorflow.serving.PredictionService/Predict"),
                    (":authority", "localhost"),
                    ("content-type", "application/grpc"),
                    ("te", "trailers"),
                    ("big", extra or "small"),
                ],
            )
            conn.send_data(stream, body[:7], pad_length=20)
            conn.send_data(stream, body[7:], end_stream=True, pad_length=3)
            sock.sendall(conn.data_to_send())
            events = _events(conn, sock, stream)
            data = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
            answer = predict_pb2.PredictResponse.FromString(data[5:])
            assert answer.model_spec.name == "padded"
            trailers = [e for e in events if isinstance(e, h2.events.TrailersReceived)]
            assert (b"grpc-status", b"0") in trailers[0].headers


def test_not_http2_is_answered_goaway_and_closed(server: _Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while chunk := sock.recv(4096):  # until the server closes
            received += chunk
    kinds = []
    while received:
        length = int.from_bytes(received[:3], "big")
        kinds.append((received[3], received[9 : 9 + length]))
        received = received[9 + length :]
    assert [k for k, _ in kinds] == [h2grpc.SETTINGS, h2grpc.WINDOW_UPDATE, h2grpc.GOAWAY]
    assert int.from_bytes(kinds[-1][1][4:8], "big") == h2grpc.PROTOCOL_ERROR


def test_a_connection_holds_a_bounded_amount_of_unfinished_requests(server: _Server) -> None:
    """Four ~0.9 MB requests left one frame short fit in the 4 MB a connection may hold (4 x the
    1 MB message limit); the fifth that passes it is RESOURCE_EXHAUSTED; the four then end and
    are answered."""
    import h2.events

    conn, sock = _h2_client(server.port)
    with sock:
        message = _predict("big", values=900).SerializeToString()
        body = b"\x00" + len(message).to_bytes(4, "big") + message
        head = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/tensorflow.serving.PredictionService/Predict"),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
        ]
        for stream in (1, 3, 5, 7, 9):
            conn.send_headers(stream, head)
            for at in range(0, len(body) - 10, 16_384):
                conn.send_data(stream, body[at : min(at + 16_384, len(body) - 10)])
            sock.sendall(conn.data_to_send())
        answer = [  # trailers alone: they arrive as the response's headers
            h
            for e in _events(conn, sock, 9)
            if isinstance(e, (h2.events.ResponseReceived, h2.events.TrailersReceived))
            for h in e.headers
        ]
        assert (b"grpc-status", b"8") in answer, answer  # RESOURCE_EXHAUSTED
        for stream in (1, 3, 5, 7):
            conn.send_data(stream, body[-10:], end_stream=True)
            sock.sendall(conn.data_to_send())
            events = _events(conn, sock, stream)
            data = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
            answered = predict_pb2.PredictResponse.FromString(data[5:])
            assert len(answered.outputs["x"].string_val) == 900


@pytest.mark.parametrize("size", [0, 1, 126, 127, 128, 254, 255, 256, 16_383, 16_384, 70_000])
def test_literal_fields_decode_with_hpack(size: int) -> None:
    """`h2grpc.field` writes HPACK by hand (RFC 7541 6.2.2, integers 5.1): the `hpack` library
    reads back the same name and value, around every prefix boundary of the length integers."""
    import hpack

    name, value = (
        b"x-" + b"n" * (size % 300),
        bytes(range(32, 127)) * (size // 95) + b"v" * (size % 95),
    )
    assert len(value) == size
    decoder = hpack.Decoder()
    decoder.max_header_list_size = 1 << 20
    assert decoder.decode(h2grpc.field(name, value), raw=True) == [(name, value)]
    trailers = h2grpc.metadata_fields([("X-Id", "abc"), ("blob-bin", b"\x00\xff" * size)])
    decoded = hpack.Decoder()
    decoded.max_header_list_size = 1 << 20
    (k1, v1), (k2, v2) = decoded.decode(trailers, raw=True)
    assert (k1, v1) == (b"x-id", b"abc")
    assert k2 == b"blob-bin" and base64.b64decode(v2 + b"=" * (-len(v2) % 4)) == b"\x00\xff" * size
