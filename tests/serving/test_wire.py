"""`wire.string_inputs` against the parsed message (upb, read by `grpc_service._raw_texts`): on
generated requests, hand-written wire variants, and mutated bytes, it gives the parsed message's
values or None (the caller then reads the parsed message), never other values."""

from __future__ import annotations

import random
from typing import Any

import pytest
from google.protobuf.message import DecodeError
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import predict_pb2

from beam_pipeline.serving import wire
from beam_pipeline.serving.grpc_service import _raw_texts
from beam_pipeline.serving.inputs import RequestError


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _int(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _parsed(message: bytes) -> Any:
    """What the proto path reads: the values, or the RequestError it raises, or None."""
    request = predict_pb2.PredictRequest.FromString(message)
    try:
        return _raw_texts(request.inputs)
    except RequestError as exc:
        return exc


def _agrees(message: bytes) -> dict[str, list[bytes]] | None:
    fast = wire.string_inputs(message)
    if fast is not None:
        assert fast == _parsed(message), message
    return fast


def _value(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return b""
    if kind == 1:
        return str(rng.uniform(-1e6, 1e6)).encode()
    if kind == 2:
        return "".join(rng.choice("aé€\n\t ,\"'") for _ in range(rng.randrange(1, 9))).encode()
    if kind == 3:  # not UTF-8: the values are bytes here, checked with their batch
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 6)))
    if kind == 4:
        return b"x" * rng.choice((127, 128, 300))  # length prefixes of one and two bytes
    return str(rng.randrange(-(2**40), 2**40)).encode()


def _request(rng: random.Random) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = rng.choice(("bench", "taxi", ""))
    if rng.random() < 0.3:
        request.model_spec.signature_name = "serving_raw"
    if rng.random() < 0.2:
        request.output_filter.append("predictions")
    rows = rng.randrange(0, 9)
    for f in range(rng.randrange(0, 20)):
        name = rng.choice((f"f{f}", f"feature_{f}", f"é{f}", "x" * 130 + str(f)))
        tensor = request.inputs[name]
        tensor.dtype = 7
        tensor.string_val.extend(_value(rng) for _ in range(rows))
        shape = rng.randrange(4)
        if shape == 1:
            tensor.tensor_shape.dim.add(size=rows)
        elif shape == 2:
            tensor.tensor_shape.dim.add(size=rows)
            tensor.tensor_shape.dim.add(size=1)
        elif shape == 3:
            tensor.tensor_shape.SetInParent()  # a scalar's shape, []
        if rng.random() < 0.1:
            tensor.version_number = rng.randrange(3)
    return request


def test_generated_requests_read_as_the_parsed_message() -> None:
    rng = random.Random(3)
    read = 0
    for _ in range(1500):
        request = _request(rng)
        message = request.SerializeToString()
        fast = _agrees(message)
        expected = _raw_texts(request.inputs)
        if len(request.inputs) and all(len(t.string_val) <= 8 for t in request.inputs.values()):
            assert fast == expected  # the plain case is read, not handed back
            read += 1
    assert read > 1000


def _tensor(*values: bytes, dims: tuple[int, ...] | None = None, extra: bytes = b"") -> bytes:
    shape = b"" if dims is None else _field(2, b"".join(_field(2, _int(1, d)) for d in dims))
    return _int(1, 7) + shape + b"".join(_field(8, v) for v in values) + extra


def _entry(name: bytes, tensor: bytes, reverse: bool = False) -> bytes:
    parts = [_field(1, name), _field(2, tensor)]
    return _field(2, b"".join(reversed(parts) if reverse else parts))


SPEC = _field(1, _field(1, b"bench"))


@pytest.mark.parametrize(
    "message",
    [
        SPEC + _entry(b"a", _tensor(b"1", dims=(1,))) + _entry(b"b", _tensor(b"x", dims=(1, 1))),
        _entry(b"a", _tensor(b"1"), reverse=True) + SPEC,  # value before key; spec last
        SPEC + _field(3, b"predictions") + _entry(b"a", _tensor(b"1", b"2", dims=(2,))),
        SPEC + _int(9, 5) + _entry(b"a", _tensor(b"", dims=(1,))),  # an unknown top field
        SPEC + _entry(b"a", _tensor(b"1", dims=(), extra=_int(3, 2))),  # version_number
        SPEC + _field(2, _field(2, _tensor(b"1"))),  # no key: the name ""
        SPEC
        + _entry(
            b"a",
            _int(1, 7) + _field(2, _field(2, _int(1, 1) + _field(2, b"rows"))) + _field(8, b"1"),
        ),
        SPEC + _entry(b"a", _int(1, 7) + _field(2, _int(3, 1)) + _field(8, b"1")),  # unknown_rank
    ],
)
def test_wire_variants_are_read(message: bytes) -> None:
    assert _agrees(message) is not None


@pytest.mark.parametrize(
    "message",
    [
        SPEC + _entry(b"a", _int(1, 1) + _field(2, b"") + _varint(5 << 3 | 5) + b"\0\0\x80?"),
        SPEC + _entry(b"a", _tensor(extra=_field(4, b"\0\0\0\0"))),  # tensor_content
        SPEC + _entry(b"a", _tensor(b"1", dims=(2,))),  # a shape other than its values
        SPEC + _entry(b"a", _tensor(b"1", b"2", dims=(2, 2))),
        SPEC + _entry(b"a", _tensor(b"1", dims=(1, 1, 1))),
        SPEC + _entry(b"a", _tensor(b"1", dims=(-1,))),
        SPEC + _entry(b"a", _tensor(b"1")) + _entry(b"a", _tensor(b"2")),  # a name twice
        SPEC + _entry(b"a", _int(1, 7) + _int(1, 7) + _field(8, b"1")),  # dtype twice
        SPEC + _entry(b"a", _tensor(b"1", dims=(1,)) + _field(2, b"")),  # shape twice
        SPEC + _field(2, _field(1, b"a") + _field(1, b"b") + _field(2, _tensor(b"1"))),
        SPEC + _field(2, _field(1, b"a")),  # no tensor: DT_INVALID
        SPEC + _entry(b"a", _tensor(b"1", extra=_varint(5 << 3 | 5) + b"\0\0\0\0")),
        SPEC + _entry(b"a", _tensor(*[b"1"] * 9)),  # more values than worth cutting here
        SPEC + _entry(b"a", _int(1, 9) + _field(8, b"1")),  # DT_INT64
    ],
)
def test_other_requests_are_left_to_the_parsed_message(message: bytes) -> None:
    predict_pb2.PredictRequest.FromString(message)  # a valid message
    assert wire.string_inputs(message) is None


def test_broken_bytes_are_not_read() -> None:
    good = SPEC + _entry(b"a", _tensor(b"12", dims=(1,)))
    for cut in range(1, len(good)):
        assert wire.string_inputs(good[:cut]) in (None, {})  # never a value from past the end
    assert wire.string_inputs(good + _varint(3 << 3 | 3)) is None  # a group
    assert wire.string_inputs(good + b"\xff" * 11) is None  # a varint over 10 bytes


def test_mutated_messages_read_as_the_parsed_message_or_not_at_all() -> None:
    """Random byte flips, insertions and cuts of real requests: whenever upb still parses the
    bytes, the scan gives exactly its values or None."""
    rng = random.Random(11)
    parsed = 0
    for _ in range(4000):
        message = bytearray(_request(rng).SerializeToString() or SPEC)
        for _ in range(rng.randrange(1, 4)):
            at = rng.randrange(len(message))
            op = rng.randrange(3)
            if op == 0:
                message[at] = rng.randrange(256)
            elif op == 1:
                message.insert(at, rng.randrange(256))
            else:
                del message[at]
            if not message:
                message = bytearray(SPEC)
        data = bytes(message)
        try:
            predict_pb2.PredictRequest.FromString(data)
        except DecodeError:
            continue
        parsed += 1
        _agrees(data)
    assert parsed > 500


def test_a_tensor_proto_built_by_tensorflow_is_read() -> None:
    import tensorflow as tf

    request = predict_pb2.PredictRequest()
    request.inputs["fare"].CopyFrom(tf.make_tensor_proto([b"12.5", b""], tf.string))
    request.inputs["company"].CopyFrom(tf.make_tensor_proto([["Flash Cab"], [""]], tf.string))
    assert isinstance(request.inputs["fare"], tensor_pb2.TensorProto)
    assert wire.string_inputs(request.SerializeToString()) == {
        "fare": [b"12.5", b""],
        "company": [b"Flash Cab", b""],
    }
