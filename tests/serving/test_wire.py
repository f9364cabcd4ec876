"""`wire.read_inputs` against the parsed message (upb, read by `grpc_service._raw_texts` and
`_values`): on generated requests (string, float, double, int32, int64 and bool tensors),
hand-written wire variants, and mutated bytes, it gives the parsed message's values, of the same
Python types, or None (the caller then reads the parsed message), never other values."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from google.protobuf.message import DecodeError
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import predict_pb2

from beam_pipeline.serving import wire
from beam_pipeline.serving.grpc_service import _raw_texts, _values


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
    """What the proto path reads (as `grpc_service._parse`): all string tensors' lists, or each
    tensor's values; or the exception it raises."""
    request = predict_pb2.PredictRequest.FromString(message)
    try:
        texts = _raw_texts(request.inputs)
        if texts is not None:
            return texts, True
        return {k: _values(k, t) for k, t in request.inputs.items()}, False
    except Exception as exc:  # noqa: BLE001 - compared, not hidden
        return exc


def _typed(columns: dict[str, Any]) -> dict[str, Any]:
    """Values with their container and Python types (-0.0, NaN and True vs 1 kept apart)."""
    out = {}
    for name, values in columns.items():
        container = "array" if isinstance(values, np.ndarray) else type(values).__name__
        items = values.tolist() if isinstance(values, np.ndarray) else values
        out[name] = (container, [(type(x).__name__, repr(x)) for x in items])
    return out


def _agrees(message: bytes) -> Any:
    fast = wire.read_inputs(message)
    if fast is not None:
        slow = _parsed(message)
        assert not isinstance(slow, Exception), (message, slow)
        assert fast[1] == slow[1], message
        assert _typed(fast[0]) == _typed(slow[0]), message
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


_FLOATS = [0.0, -0.0, 1.5, -2.25e-8, 3.4e38, float("inf"), float("-inf"), float("nan"), 0.1]
_NUMBERS = {  # dtype: (field, values)
    1: ("float_val", _FLOATS),
    2: ("double_val", [*_FLOATS, 1e300, 5e-324]),
    3: ("int_val", [0, 1, -1, 2**31 - 1, -(2**31), 300]),
    9: ("int64_val", [0, -1, 2**63 - 1, -(2**63), 2**40]),
    10: ("bool_val", [True, False]),
}


def _request(rng: random.Random) -> tuple[predict_pb2.PredictRequest, bool]:
    """A request, and whether the scan reads it (else: it is left to the parsed message)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = rng.choice(("bench", "taxi", ""))
    if rng.random() < 0.3:
        request.model_spec.signature_name = "serving_raw"
    if rng.random() < 0.2:
        request.output_filter.append("predictions")
    rows = rng.randrange(0, 9)
    numeric = rng.random() < 0.5  # some tensors of numbers
    plain = True
    for f in range(rng.randrange(0, 20)):
        name = rng.choice((f"f{f}", f"feature_{f}", f"é{f}", "x" * 130 + str(f)))
        if name in request.inputs:
            continue
        tensor = request.inputs[name]
        dtype = rng.choice(list(_NUMBERS)) if numeric and rng.random() < 0.6 else 7
        tensor.dtype = dtype
        if dtype == 7:
            tensor.string_val.extend(_value(rng) for _ in range(rows))
        else:
            field, pool = _NUMBERS[dtype]
            getattr(tensor, field).extend(rng.choice(pool) for _ in range(rows))
        shape = rng.randrange(4)
        if shape == 1:
            tensor.tensor_shape.dim.add(size=rows)
        elif shape == 2:
            tensor.tensor_shape.dim.add(size=rows)
            tensor.tensor_shape.dim.add(size=1)
        elif shape == 3:
            tensor.tensor_shape.SetInParent()  # a scalar's shape, []
        if dtype != 7 and shape in (0, 3) and rows != 1:  # a number's [] holds one value
            plain = False
        if rng.random() < 0.1:
            tensor.version_number = rng.randrange(3)
    return request, plain


def test_generated_requests_read_as_the_parsed_message() -> None:
    rng = random.Random(3)
    read = typed = 0
    for _ in range(2000):
        request, plain = _request(rng)
        fast = _agrees(request.SerializeToString())
        assert (fast is not None) == plain  # the plain case is read, not handed back
        read += fast is not None
        typed += fast is not None and not fast[1]
    assert read > 1000 and typed > 120


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
        SPEC + _entry(b"a", _int(1, 1) + _field(5, b"\0\0\x80?")),  # DT_FLOAT [] 1.0
        SPEC
        + _entry(
            b"a",
            _int(1, 3) + _field(7, _varint(-5) + _varint(7)) + _field(2, _field(2, _int(1, 2))),
        ),
        SPEC + _entry(b"a", _int(1, 10) + _int(11, 2)),  # DT_BOOL, one unpacked value
        SPEC + _entry(b"a", _int(1, 9) + _int(10, -(2**63))) + _entry(b"b", _tensor(b"x")),
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
        SPEC + _entry(b"a", _int(1, 3) + _field(7, _varint(2**40))),  # int32: the parser cuts it
        SPEC + _entry(b"a", _int(1, 1) + _field(5, b"\0\0\x80?") + _field(5, b"\0\0\x80?")),
    ],
)
def test_other_requests_are_left_to_the_parsed_message(message: bytes) -> None:
    predict_pb2.PredictRequest.FromString(message)  # a valid message
    assert wire.read_inputs(message) is None


def test_broken_bytes_are_not_read() -> None:
    good = SPEC + _entry(b"a", _tensor(b"12", dims=(1,)))
    for cut in range(1, len(good)):
        assert wire.read_inputs(good[:cut]) in (None, ({}, True))  # never a value past the end
    assert wire.read_inputs(good + _varint(3 << 3 | 3)) is None  # a group
    assert wire.read_inputs(good + b"\xff" * 11) is None  # a varint over 10 bytes


def test_mutated_messages_read_as_the_parsed_message_or_not_at_all() -> None:
    """Random byte flips, insertions and cuts of real requests: whenever upb still parses the
    bytes, the scan gives exactly its values or None."""
    rng = random.Random(11)
    parsed = 0
    for _ in range(4000):
        message = bytearray(_request(rng)[0].SerializeToString() or SPEC)
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
    assert parsed > 400


def test_a_tensor_proto_built_by_tensorflow_is_read() -> None:
    import tensorflow as tf

    request = predict_pb2.PredictRequest()
    request.inputs["fare"].CopyFrom(tf.make_tensor_proto([b"12.5", b""], tf.string))
    request.inputs["company"].CopyFrom(tf.make_tensor_proto([["Flash Cab"], [""]], tf.string))
    assert isinstance(request.inputs["fare"], tensor_pb2.TensorProto)
    assert wire.read_inputs(request.SerializeToString()) == (
        {"fare": [b"12.5", b""], "company": [b"Flash Cab", b""]},
        True,
    )
    typed = predict_pb2.PredictRequest()  # as TF Serving's clients send one row's numbers
    typed.inputs["fare"].CopyFrom(tf.make_tensor_proto([12.5]))
    typed.inputs["trip_start_hour"].CopyFrom(tf.make_tensor_proto([-7]))
    typed.inputs["tolls"].CopyFrom(tf.make_tensor_proto([2**40]))
    typed.inputs["company"].CopyFrom(tf.make_tensor_proto(["Flash Cab"]))
    typed.inputs["cash"].CopyFrom(tf.make_tensor_proto([True]))
    columns, texts = _agrees(typed.SerializeToString())
    assert not texts
    assert {k: v for k, v in columns.items() if k != "company"} == {
        "fare": [12.5],
        "trip_start_hour": [-7],
        "tolls": [2**40],
        "cash": [True],
    }
    assert columns["company"].tolist() == [b"Flash Cab"]
    several = predict_pb2.PredictRequest()  # more than one number: tensor_content, not read
    several.inputs["fare"].CopyFrom(tf.make_tensor_proto([12.5, 3.0]))
    assert wire.read_inputs(several.SerializeToString()) is None
