"""A ``PredictRequest``'s string tensors read from its wire bytes in one compiled pass.

gRPC ``serving_raw`` requests carry one string tensor per feature. Reading them through the
parsed message costs a Python wrapper, an attribute call and a list per tensor (~2.5 µs each, ~40
µs for a 16-feature row, on the event loop); `string_inputs` reads the same values from the
message's bytes: one compiled scan (`_scan`, numba) finds every input's name and the byte range of
each value, and the values are cut from the message as bytes (~8 µs in all).

It reads only the plain case: every input a ``DT_STRING`` tensor of ``string_val`` values whose
shape is absent, ``[]``, ``[n]`` or ``[n, 1]`` for its ``n`` values, each field sent once. For
anything else (another dtype, ``tensor_content``, another shape, a field or map key sent twice,
bytes that are not protobuf) it returns None and the caller reads the parsed message, whose rules
then decide: the values it returns are those the parsed message holds (tests/serving/test_wire.py
compares the two on generated requests).

Compiled on first use and cached on disk next to this file (`evaluation.kernels`' rule);
`warm` compiles it ahead of the first request.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

_STRING = 7  # DT_STRING
_FAIL = -1
# Values per input up to which cutting them here is faster than the parsed message's list (one
# slice ~0.16 µs a value, against ~0.03 plus ~2 µs a tensor there: even at ~11 values)
_MOST_VALUES = 8


def _jit(fn: Any) -> Any:
    """`numba.njit`, keeping the GIL: the scan takes ~2 µs, and handing the GIL to the model
    thread for it would let that thread hold it for up to a switch interval (5 ms) before the
    event loop gets it back."""
    try:
        return numba.njit(cache=True)(fn)
    except RuntimeError:  # no writable cache folder: compiled in memory each process
        return numba.njit()(fn)


@_jit
def _varint(buf: np.ndarray, i: int, end: int) -> tuple[int, int]:  # pragma: no cover
    """The varint at ``i`` (as int64: a negative int64 is 10 bytes) and the index after it;
    index -1 where it runs past ``end`` or over 10 bytes."""
    value = np.uint64(0)
    shift = np.uint64(0)
    while i < end and shift < 70:
        byte = np.uint64(buf[i])
        i += 1
        value |= (byte & np.uint64(0x7F)) << shift
        if byte < 0x80:
            return np.int64(value), i
        shift += np.uint64(7)
    return 0, _FAIL


@_jit
def _skip(buf: np.ndarray, i: int, end: int, wire: int) -> int:  # pragma: no cover
    """The index after a field's value of wire type ``wire`` (-1: malformed, or a group)."""
    if wire == 0:
        return _varint(buf, i, end)[1]
    if wire == 1:
        return i + 8 if i + 8 <= end else _FAIL
    if wire == 5:
        return i + 4 if i + 4 <= end else _FAIL
    if wire == 2:
        length, i = _varint(buf, i, end)
        if i < 0 or length < 0 or length > end - i:
            return _FAIL
        return i + length
    return _FAIL


@_jit
def _shape_ok(buf: np.ndarray, i: int, end: int, count: int) -> bool:  # pragma: no cover
    """Whether the TensorShapeProto in ``buf[i:end]`` is absent-like, ``[count]`` or
    ``[count, 1]``, each dim's size sent once (a dim's name and ``unknown_rank`` are ignored,
    as the parsed path ignores them)."""
    dims = 0
    first = -1
    second = -1
    while i < end:
        tag, i = _varint(buf, i, end)
        if i < 0:
            return False
        field, wire = tag >> 3, tag & 7
        if field == 2 and wire == 2:  # dim
            length, i = _varint(buf, i, end)
            if i < 0 or length < 0 or length > end - i:
                return False
            stop = i + length
            size = 0
            sizes = 0
            while i < stop:
                t, i = _varint(buf, i, stop)
                if i < 0:
                    return False
                if t == (1 << 3):  # size, varint
                    size, i = _varint(buf, i, stop)
                    sizes += 1
                elif t >> 3 == 2 and t & 7 == 2:  # name
                    i = _skip(buf, i, stop, 2)
                else:
                    return False
                if i < 0:
                    return False
            if sizes > 1:
                return False
            dims += 1
            if dims == 1:
                first = size
            elif dims == 2:
                second = size
        elif field == 3 and wire == 0:  # unknown_rank
            _, i = _varint(buf, i, end)
        else:
            return False
        if i < 0:
            return False
    if dims == 0:
        return True
    if dims == 1:
        return first == count
    return dims == 2 and first == count and second == 1


@_jit
def _tensor(  # pragma: no cover
    buf: np.ndarray, i: int, end: int, spans: np.ndarray, at: int
) -> int:
    """Read the TensorProto in ``buf[i:end]``: its string values' byte ranges go to ``spans``
    from row ``at``; returns the next free row (-1: not the plain string tensor)."""
    dtype = -1
    shape_at = -1
    shape_end = -1
    start = at
    while i < end:
        tag, i = _varint(buf, i, end)
        if i < 0:
            return _FAIL
        field, wire = tag >> 3, tag & 7
        if field == 1 and wire == 0:  # dtype
            if dtype != -1:
                return _FAIL
            dtype, i = _varint(buf, i, end)
        elif field == 2 and wire == 2:  # tensor_shape
            if shape_at != -1:
                return _FAIL
            length, i = _varint(buf, i, end)
            if i < 0 or length < 0 or length > end - i:
                return _FAIL
            shape_at, shape_end = i, i + length
            i = shape_end
        elif field == 3 and wire == 0:  # version_number
            _, i = _varint(buf, i, end)
        elif field == 8 and wire == 2:  # string_val
            length, i = _varint(buf, i, end)
            if i < 0 or length < 0 or length > end - i:
                return _FAIL
            spans[at, 0] = i
            spans[at, 1] = i + length
            at += 1
            i += length
        else:
            return _FAIL
        if i < 0:
            return _FAIL
    if dtype != _STRING:
        return _FAIL
    if shape_at != -1 and not _shape_ok(buf, shape_at, shape_end, at - start):
        return _FAIL
    return at


@_jit
def _scan(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:  # pragma: no cover
    """Every ``inputs`` entry of a serialized PredictRequest: rows of (name start, name end,
    first value row, value count), and the values' byte ranges; False where the request is not
    the plain case (see the module doc)."""
    n = len(buf)
    entries = np.empty((n // 2 + 1, 4), np.int64)  # an entry or a value takes >= 2 bytes
    spans = np.empty((n // 2 + 1, 2), np.int64)
    found = 0
    at = 0
    i = 0
    while i < n:
        tag, i = _varint(buf, i, n)
        if i < 0:
            return entries[:0], spans[:0], False
        field, wire = tag >> 3, tag & 7
        if field == 2 and wire == 2:  # an inputs map entry
            length, i = _varint(buf, i, n)
            if i < 0 or length < 0 or length > n - i:
                return entries[:0], spans[:0], False
            stop = i + length
            key_at, key_end = i, i  # an absent key is ""
            keys = 0
            first = -1
            while i < stop:
                t, i = _varint(buf, i, stop)
                if i < 0:
                    return entries[:0], spans[:0], False
                if t == (1 << 3) | 2:  # key
                    size, i = _varint(buf, i, stop)
                    if i < 0 or size < 0 or size > stop - i or keys:
                        return entries[:0], spans[:0], False
                    key_at, key_end = i, i + size
                    keys = 1
                    i += size
                elif t == (2 << 3) | 2:  # value: the TensorProto
                    size, i = _varint(buf, i, stop)
                    if i < 0 or size < 0 or size > stop - i or first != -1:
                        return entries[:0], spans[:0], False
                    first = at
                    at = _tensor(buf, i, i + size, spans, at)
                    if at < 0:
                        return entries[:0], spans[:0], False
                    i += size
                else:
                    return entries[:0], spans[:0], False
            if first == -1:  # no tensor: an empty one, DT_INVALID
                return entries[:0], spans[:0], False
            entries[found, 0] = key_at
            entries[found, 1] = key_end
            entries[found, 2] = first
            entries[found, 3] = at - first
            found += 1
        else:  # model_spec, output_filter, ...: read from the parsed message
            i = _skip(buf, i, n, wire)
            if i < 0:
                return entries[:0], spans[:0], False
    return entries[:found], spans[:at], True


def string_inputs(message: bytes) -> dict[str, list[bytes]] | None:
    """Every input's values as the client's bytes, from a serialized ``PredictRequest`` whose
    inputs are all plain string tensors (see the module doc); None otherwise."""
    entries, spans, plain = _scan(np.frombuffer(message, np.uint8))
    if not plain or len(spans) > _MOST_VALUES * len(entries):
        return None
    bounds = spans.tolist()
    texts: dict[str, list[bytes]] = {}
    try:
        for key_at, key_end, first, count in entries.tolist():
            if count == 1:
                a, b = bounds[first]
                values = [message[a:b]]
            else:
                values = [message[a:b] for a, b in bounds[first : first + count]]
            texts[message[key_at:key_end].decode()] = values
    except UnicodeDecodeError:  # not a valid request: the parser says so
        return None
    if len(texts) != len(entries):  # a name sent twice: the parsed message keeps the last
        return None
    return texts


def warm() -> None:
    """Compile (or load from the cache) the scan now, not on the first request."""
    string_inputs(b"\x12\x0a\n\x01a\x12\x05\x08\x07B\x01x")
