"""A ``PredictRequest``'s input tensors read from its wire bytes in one compiled pass.

gRPC ``serving_raw`` requests carry one tensor per feature. Reading them through the parsed
message costs a Python wrapper, attribute calls and a list per tensor (~2.5 µs each, ~40 µs for
a 16-feature row, on the event loop); `read_inputs` reads the same values from the message's
bytes: one compiled scan (`_scan`, numba) finds every input's name, dtype and values (a string's
byte range, an integer or bool decoded, a float or double run's place), and the Python left is
one cut or list per input (~8 µs in all for a row of strings).

It reads only the plain case: every input a ``DT_STRING`` tensor of ``string_val``, or a
``DT_FLOAT`` / ``DT_DOUBLE`` / ``DT_INT32`` / ``DT_INT64`` / ``DT_BOOL`` tensor of its own
repeated field (what ``tf.make_tensor_proto`` writes for one value; floats and doubles as one
packed run), with a shape of ``[n]`` or ``[n, 1]`` for its ``n`` values (a string tensor's may
also be absent or ``[]``; a number's then holds one value), each field sent once. For anything
else (``tensor_content``, other dtypes, other shapes, an int32 the parser would cut to 32 bits, a
field or map key sent twice, bytes that are not protobuf) it returns None and the caller reads
the parsed message, whose rules then decide: the values it returns are those, and of the Python
types, the parsed message's path gives (tests/serving/test_wire.py compares the two on generated
requests, hand-written wire variants and mutated messages).

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
def _length(buf: np.ndarray, i: int, end: int) -> tuple[int, int]:  # pragma: no cover
    """A length-delimited field's length at ``i`` and the index after it; index -1 where the
    length is malformed or runs past ``end``."""
    length, i = _varint(buf, i, end)
    if i < 0 or length < 0 or length > end - i:
        return 0, _FAIL
    return length, i


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
        length, i = _length(buf, i, end)
        if i < 0:
            return _FAIL
        return i + length
    return _FAIL


@_jit
def _shape_ok(  # pragma: no cover
    buf: np.ndarray, i: int, end: int, count: int, numeric: bool
) -> bool:
    """Whether the TensorShapeProto in ``buf[i:end]`` is ``[]`` (for a number, holding one
    value), ``[count]`` or ``[count, 1]``, each dim's size sent once (a dim's name and
    ``unknown_rank`` are ignored, as the parsed path ignores them)."""
    dims = 0
    first = -1
    second = -1
    while i < end:
        tag, i = _varint(buf, i, end)
        if i < 0:
            return False
        field, wire = tag >> 3, tag & 7
        if field == 2 and wire == 2:  # dim
            length, i = _length(buf, i, end)
            if i < 0:
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
        return not numeric or count == 1
    if dims == 1:
        return first == count
    return dims == 2 and first == count and second == 1


_INT32 = 2**31


# by dtype, the TensorProto field holding its values: DT_FLOAT float_val, DT_DOUBLE double_val,
# DT_INT32 int_val, DT_STRING string_val, DT_INT64 int64_val, DT_BOOL bool_val (-1: not read)
_FIELD_OF = np.array([-1, 5, 6, 7, -1, -1, -1, 8, -1, 10, 11], np.int64)


@_jit
def _field_of(dtype: int) -> int:  # pragma: no cover
    return _FIELD_OF[dtype] if 0 <= dtype < len(_FIELD_OF) else -1


@_jit
def _tensor(  # pragma: no cover
    buf: np.ndarray, i: int, end: int, spans: np.ndarray, at: int, ints: np.ndarray, held: int
) -> tuple[int, int, int, int, int]:
    """Read the TensorProto in ``buf[i:end]``: (dtype, first, count, next free span row, next
    free int) with its values where they go: a string's byte range in ``spans`` (first: its
    row), an integer or bool decoded into ``ints`` (first: its index), floats and doubles left
    where their one packed run is (first: its byte offset). dtype -1: not the plain case."""
    dtype = -1
    shape_at = -1
    shape_end = -1
    first_span = at
    first_int = held
    seen = 0  # the value field read
    run_at = 0
    run_bytes = 0
    while i < end:
        tag, i = _varint(buf, i, end)
        if i < 0:
            return -1, 0, 0, at, held
        field, wire = tag >> 3, tag & 7
        if field == 1 and wire == 0:  # dtype
            if dtype != -1:
                return -1, 0, 0, at, held
            dtype, i = _varint(buf, i, end)
        elif field == 2 and wire == 2:  # tensor_shape
            if shape_at != -1:
                return -1, 0, 0, at, held
            length, i = _length(buf, i, end)
            if i < 0:
                return -1, 0, 0, at, held
            shape_at, shape_end = i, i + length
            i = shape_end
        elif field == 3 and wire == 0:  # version_number
            _, i = _varint(buf, i, end)
        elif field == 8 and wire == 2:  # string_val
            if seen != 0 and seen != 8:
                return -1, 0, 0, at, held
            seen = 8
            length, i = _length(buf, i, end)
            if i < 0:
                return -1, 0, 0, at, held
            spans[at, 0] = i
            spans[at, 1] = i + length
            at += 1
            i += length
        elif (field == 5 or field == 6) and wire == 2:  # float_val, double_val: one packed run
            if seen != 0:
                return -1, 0, 0, at, held
            seen = field
            length, i = _length(buf, i, end)
            if i < 0 or length % (4 if field == 5 else 8):
                return -1, 0, 0, at, held
            run_at, run_bytes = i, length
            i += length
        elif field == 7 or field == 10 or field == 11:  # int_val, int64_val, bool_val
            if (seen != 0 and seen != field) or (wire != 0 and wire != 2):
                return -1, 0, 0, at, held
            seen = field
            stop = i + 1  # one varint
            if wire == 2:  # packed
                length, i = _length(buf, i, end)
                if i < 0:
                    return -1, 0, 0, at, held
                stop = i + length
            while i < stop:
                value, i = _varint(buf, i, stop if wire == 2 else end)
                if i < 0 or held >= len(ints):
                    return -1, 0, 0, at, held
                if field == 7 and (value < -_INT32 or value >= _INT32):
                    return -1, 0, 0, at, held  # the parser keeps 32 bits of it
                ints[held] = value
                held += 1
                if wire == 0:
                    break
        else:
            return -1, 0, 0, at, held
        if i < 0:
            return -1, 0, 0, at, held
    if dtype < 0 or _field_of(dtype) < 0 or (seen != 0 and seen != _field_of(dtype)):
        return -1, 0, 0, at, held
    if dtype == _STRING:
        first, count = first_span, at - first_span
    elif dtype == 1 or dtype == 2:
        first, count = run_at, run_bytes // (4 if dtype == 1 else 8)
    else:
        first, count = first_int, held - first_int
    if shape_at == -1:
        if dtype != _STRING and count != 1:  # a number's shape [] holds one value
            return -1, 0, 0, at, held
    elif not _shape_ok(buf, shape_at, shape_end, count, dtype != _STRING):
        return -1, 0, 0, at, held
    return dtype, first, count, at, held


@_jit
def _entry(  # pragma: no cover
    buf: np.ndarray, i: int, stop: int, spans: np.ndarray, at: int, ints: np.ndarray, held: int
) -> tuple[int, int, int, int, int, int, int]:
    """Read the ``inputs`` map entry in ``buf[i:stop]``: (name start, name end, then `_tensor`'s
    dtype, first, count, next span row, next int); dtype -1 where it is not the plain case."""
    key_at, key_end = i, i  # an absent key is ""
    keys = 0
    dtype = -2  # no tensor yet: an empty one, DT_INVALID
    first = 0
    count = 0
    while i < stop:
        tag, i = _varint(buf, i, stop)
        size = 0
        if i >= 0 and tag & 7 == 2:
            size, i = _length(buf, i, stop)
        if i < 0:
            return 0, 0, -1, 0, 0, at, held
        if tag == (1 << 3) | 2 and not keys:  # key
            key_at, key_end = i, i + size
            keys = 1
        elif tag == (2 << 3) | 2 and dtype == -2:  # value: the TensorProto
            dtype, first, count, at, held = _tensor(buf, i, i + size, spans, at, ints, held)
            if dtype < 0:
                return 0, 0, -1, 0, 0, at, held
        else:  # another field, or one sent twice
            return 0, 0, -1, 0, 0, at, held
        i += size
    if dtype == -2:
        return 0, 0, -1, 0, 0, at, held
    return key_at, key_end, dtype, first, count, at, held


@_jit
def _scan(  # pragma: no cover
    buf: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Every ``inputs`` entry of a serialized PredictRequest: rows of (name start, name end,
    dtype, first, count) (see `_tensor`), the string values' byte ranges, the integers; False
    where the request is not the plain case (see the module doc)."""
    n = len(buf)
    entries = np.empty((n // 2 + 1, 5), np.int64)  # an entry or a value takes >= 2 bytes
    spans = np.empty((n // 2 + 1, 2), np.int64)
    ints = np.empty(n // 2 + 1, np.int64)
    found = 0
    at = 0
    held = 0
    i = 0
    while i < n:
        tag, i = _varint(buf, i, n)
        if i >= 0 and tag == (2 << 3) | 2:  # an inputs map entry
            length, i = _length(buf, i, n)
            if i < 0:
                break
            row = _entry(buf, i, i + length, spans, at, ints, held)
            if row[2] < 0:
                break
            entries[found] = row[:5]
            found += 1
            at, held = row[5], row[6]
            i += length
        elif i >= 0:  # model_spec, output_filter, ...: read from the parsed message
            i = _skip(buf, i, n, tag & 7)
        if i < 0:
            break
    else:
        return entries[:found], spans[:at], ints[:held], True
    return entries[:0], spans[:0], ints[:0], False


def read_inputs(message: bytes) -> tuple[dict[str, Any], bool] | None:
    """Every input's values from a serialized ``PredictRequest`` whose inputs are all plain
    tensors (see the module doc), and whether they are all strings; None otherwise.

    As the parsed message's path reads them (`grpc_service._raw_texts` and `_values`): when
    every input is a string tensor, each a list of the client's bytes; otherwise strings as an
    object array of bytes, numbers as a list (floats widened from float32, ints, bools)."""
    entries, spans, ints, plain = _scan(np.frombuffer(message, np.uint8))
    if not plain:
        return None
    rows = entries.tolist()
    strings = sum(1 for row in rows if row[2] == _STRING)
    if len(spans) > _MOST_VALUES * strings:
        return None
    bounds = spans.tolist()
    numbers = ints.tolist()
    texts = strings == len(rows)
    columns: dict[str, Any] = {}
    try:
        for key_at, key_end, dtype, first, count in rows:
            if dtype == _STRING:
                if count == 1:
                    a, b = bounds[first]
                    values: Any = [message[a:b]]
                else:
                    values = [message[a:b] for a, b in bounds[first : first + count]]
                if not texts:
                    array = np.empty(count, object)
                    array[:] = values
                    values = array
            elif dtype == 1 or dtype == 2:
                kind = "<f4" if dtype == 1 else "<f8"  # protobuf's fixed32 / fixed64
                values = np.frombuffer(message, kind, count, first).tolist()
            elif dtype == 10:  # (any varint but 0 is True, as the parser reads it)
                values = (ints[first : first + count] != 0).tolist()
            else:
                values = numbers[first : first + count]
            columns[message[key_at:key_end].decode()] = values
    except UnicodeDecodeError:  # not a valid request: the parser says so
        return None
    if len(columns) != len(rows):  # a name sent twice: the parsed message keeps the last
        return None
    return columns, texts


def warm() -> None:
    """Compile (or load from the cache) the scan now, not on the first request."""
    read_inputs(b"\x12\x0a\n\x01a\x12\x05\x08\x07B\x01x")
