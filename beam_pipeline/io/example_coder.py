"""A columnar tf.Example encoder: an Arrow record batch in, serialized tf.Examples out.

tf.Example is a small, fixed protobuf shape, so a whole column's map entries can be laid out at
once with numpy (numbers: fixed templates plus varint bytes) and Arrow's element-wise binary
joins (strings); the rows are then joined column by column. There is no per-row Python. A null
value leaves the feature out of that row's Example (the usual meaning of "missing").

Wire format written, per present value (all lengths are varints):

    Features.feature entry:  0a len | 0a len key | 12 len Feature
    Feature.bytes_list:      0a len | 0a len value
    Feature.float_list:      12 06  | 0a 04 <float32 little-endian>
    Feature.int64_list:      1a len | 0a len <varint(value)>          (packed)
    Example:                 0a len <entries>
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_EMPTY = pa.scalar(b"", pa.binary())
_SHIFTS = np.arange(10, dtype=np.uint64) * np.uint64(7)
_LIMITS = np.uint64(1) << (np.arange(1, 10, dtype=np.uint64) * np.uint64(7))


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def binary_array(flat: np.ndarray, lengths: np.ndarray) -> pa.BinaryArray:
    """A BinaryArray over concatenated bytes and per-row lengths (no copy of the bytes)."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(flat))]
    return pa.BinaryArray.from_buffers(pa.binary(), len(lengths), buffers)


def varint_matrix(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, w) varint bytes with continuation bits, and each value's byte count (int64 as u64).

    w is the longest varint in the column (at most 10), so small numbers stay cheap.
    """
    v = values.astype(np.int64).view(np.uint64)
    nb = np.ones(len(v), dtype=np.int64)
    for limit in _LIMITS:
        over = v >= limit
        if not over.any():
            break
        nb += over
    width = int(nb.max()) if len(nb) else 1
    groups = ((v[:, None] >> _SHIFTS[:width]) & np.uint64(0x7F)).astype(np.uint8)
    groups[np.arange(width)[None, :] < (nb[:, None] - 1)] |= 0x80
    return groups, nb


def _varints(values: np.ndarray) -> pa.BinaryArray:
    if not values.size or (values.max() < 128 and values.min() >= 0):
        return binary_array(values.astype(np.uint8), np.ones(len(values), dtype=np.int32))
    groups, nb = varint_matrix(values)
    return binary_array(groups[np.arange(groups.shape[1])[None, :] < nb[:, None]], nb)


def _prefixed(x: pa.Array) -> list[pa.Array]:
    """[varint(len(x_i)), x_i] as two columns, for a length-delimited field."""
    return [_varints(pc.binary_length(x).to_numpy(zero_copy_only=False)), x]


def _join(*parts: pa.Array | pa.Scalar) -> pa.Array:
    return pc.binary_join_element_wise(*parts, _EMPTY)


def _tag(b: bytes) -> pa.Scalar:
    return pa.scalar(b, pa.binary())


def _float_entries(key: bytes, col: pa.Array, valid: np.ndarray) -> pa.Array:
    n = len(col)
    values = col.fill_null(0).cast(pa.float32()).to_numpy(zero_copy_only=False)
    inner = key + b"\x12\x08\x12\x06\x0a\x04"
    template = np.frombuffer(b"\x0a" + varint(len(inner) + 4) + inner, dtype=np.uint8)
    width = len(template) + 4
    m = np.empty((n, width), dtype=np.uint8)
    m[:, :-4] = template
    m[:, -4:] = values.view(np.uint8).reshape(n, 4)
    return binary_array(m if valid.all() else m[valid], np.where(valid, width, 0).astype(np.int32))


def _int_entries(key: bytes, col: pa.Array, valid: np.ndarray) -> pa.Array:
    n = len(col)
    groups, nb = varint_matrix(col.fill_null(0).to_numpy(zero_copy_only=False))
    p = len(key)
    if p + 16 >= 128:  # the entry's own length would need two varint bytes
        return _generic_int_entries(key, col)
    # 0a L(entry) | key | 12 L(feature) | 1a L(list) | 0a L(packed) | varint
    width = groups.shape[1]
    m = np.empty((n, p + 8 + width), dtype=np.uint8)
    m[:, 0] = 0x0A
    m[:, 1] = p + 6 + nb
    m[:, 2 : 2 + p] = np.frombuffer(key, dtype=np.uint8)
    m[:, p + 2] = 0x12
    m[:, p + 3] = nb + 4
    m[:, p + 4] = 0x1A
    m[:, p + 5] = nb + 2
    m[:, p + 6] = 0x0A
    m[:, p + 7] = nb
    m[:, p + 8 :] = groups
    lengths = np.where(valid, p + 8 + nb, 0).astype(np.int32)
    if nb.min() == width:  # every varint is as wide as the widest: fixed-width rows
        return binary_array(m if valid.all() else m[valid], lengths)
    keep = (np.arange(p + 8 + width)[None, :] < (p + 8 + nb)[:, None]) & valid[:, None]
    return binary_array(m[keep], lengths)


def _generic_int_entries(key: bytes, col: pa.Array) -> pa.Array:
    groups, nb = varint_matrix(col.fill_null(0).to_numpy(zero_copy_only=False))
    packed = binary_array(groups[np.arange(groups.shape[1])[None, :] < nb[:, None]], nb)
    feature = _join(_tag(b"\x1a"), *_prefixed(_join(_tag(b"\x0a"), *_prefixed(packed))))
    return _entry(key, feature, col)


def _bytes_entries(key: bytes, col: pa.Array) -> pa.Array:
    values = col.cast(pa.binary()).fill_null(b"")
    size = pc.binary_length(values).to_numpy(zero_copy_only=False).astype(np.int64)
    p = len(key)
    if p + 8 + (int(size.max()) if len(size) else 0) < 128:
        # Every length fits one varint byte: a fixed-width header per row, then the value.
        # 0a L(entry) | key | 12 L(feature) | 0a L(list) | 0a L(value) | value
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        h = np.empty((len(size), p + 8), dtype=np.uint8)
        h[:, 0] = 0x0A
        h[:, 1] = p + 6 + size
        h[:, 2 : 2 + p] = np.frombuffer(key, dtype=np.uint8)
        h[:, p + 2] = 0x12
        h[:, p + 3] = size + 4
        h[:, p + 4] = 0x0A
        h[:, p + 5] = size + 2
        h[:, p + 6] = 0x0A
        h[:, p + 7] = size
        head = binary_array(h if valid.all() else h[valid], np.where(valid, p + 8, 0))
        return _join(head, values)  # null rows: empty header and empty value
    feature = _join(_tag(b"\x0a"), *_prefixed(_join(_tag(b"\x0a"), *_prefixed(values))))
    return _entry(key, feature, col)


def _entry(key: bytes, feature: pa.Array, col: pa.Array) -> pa.Array:
    inner = _join(_tag(key + b"\x12"), *_prefixed(feature))
    entry = _join(_tag(b"\x0a"), *_prefixed(inner))
    return pc.if_else(col.is_valid(), entry, _EMPTY)


def encode(batch: pa.RecordBatch) -> pa.BinaryArray:
    """Serialized tf.Example per row: int columns -> int64_list, floats -> float_list (float32),
    strings/binary -> bytes_list. Nulls are left out."""
    entries = []
    for name, col in zip(batch.schema.names, batch.columns, strict=True):
        raw = name.encode()
        key = b"\x0a" + varint(len(raw)) + raw
        if pa.types.is_floating(col.type) or pa.types.is_integer(col.type):
            valid = col.is_valid().to_numpy(zero_copy_only=False)
            if pa.types.is_floating(col.type):
                entries.append(_float_entries(key, col, valid))
            else:
                entries.append(_int_entries(key, col, valid))
        elif pa.types.is_string(col.type) or pa.types.is_binary(col.type):
            entries.append(_bytes_entries(key, col))
        else:
            raise TypeError(f"column {name!r}: cannot encode Arrow type {col.type} as tf.Example")
    if not entries:
        return pa.array([b"\x0a\x00"] * batch.num_rows, pa.binary())
    # One join builds each Example: its tag, the length of all its entries, then the entries.
    total = np.zeros(batch.num_rows, dtype=np.int64)
    for entry in entries:
        total += pc.binary_length(entry).to_numpy(zero_copy_only=False)
    return _join(_tag(b"\x0a"), _varints(total), *entries)
