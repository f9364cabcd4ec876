"""The compiled (numba) loop that lays out a batch's JSON Lines records in one buffer.

`io.predictions.json_record_bytes` hands it every value's JSON text (or, for a string that
only needs quoting, the string itself) as one Arrow string array, ``fields`` values per row,
field after field; the loop copies the pieces of each record end to end, quoting and escaping
``"`` and ``\\`` where a field asks for it. Two passes: the exact size, then the bytes (one
allocation, no joins of intermediate arrays). Compiled on first use and cached on disk, as
`beam_pipeline.evaluation.kernels` is; importing this module imports numba (~0.3 s).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba.core import cgutils, types
from numba.extending import intrinsic


def _jit(fn: Callable[..., Any]) -> Any:
    """`numba.njit` with the on-disk cache where numba finds a writable folder."""
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(nogil=True)(fn)


_QUOTE = np.uint8(34)
_BACKSLASH = np.uint8(92)
_NULL = np.frombuffer(b"null" + bytes(16), np.uint8)  # and spare bytes to read (`_put`)
_NULL_SIZE = 4


@_jit
def _value_size(data: np.ndarray, a: np.int64, b: np.int64, quoted: bool) -> np.int64:
    if not quoted:
        return b - a
    size = b - a + 2
    for i in range(a, b):
        c = data[i]
        if c == _QUOTE or c == _BACKSLASH:
            size += 1
    return size


@intrinsic
def _memcpy(typingctx: Any, dst: Any, dst_at: Any, src: Any, src_at: Any, n: Any) -> Any:
    """``dst[dst_at : dst_at + n] = src[src_at : src_at + n]`` as one ``memcpy`` (numba's slice
    assignment is a strided loop; a byte loop takes 2-3 cycles a byte)."""
    sig = types.void(dst, dst_at, src, src_at, n)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> None:
        d, d_at, s, s_at, count = args
        d_ptr = context.make_array(signature.args[0])(context, builder, d).data
        s_ptr = context.make_array(signature.args[2])(context, builder, s).data
        cgutils.raw_memcpy(
            builder, builder.gep(d_ptr, [d_at]), builder.gep(s_ptr, [s_at]), count, 1
        )

    return sig, codegen


@intrinsic
def _copy16(typingctx: Any, dst: Any, dst_at: Any, src: Any, src_at: Any) -> Any:
    """``dst[dst_at : dst_at + 16] = src[src_at : src_at + 16]`` as two 8-byte moves (a
    ``memcpy`` of a constant size, which LLVM inlines)."""
    sig = types.void(dst, dst_at, src, src_at)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> None:
        d, d_at, s, s_at = args
        d_ptr = context.make_array(signature.args[0])(context, builder, d).data
        s_ptr = context.make_array(signature.args[2])(context, builder, s).data
        count = context.get_constant(types.intp, SHORT)
        cgutils.raw_memcpy(
            builder, builder.gep(d_ptr, [d_at]), builder.gep(s_ptr, [s_at]), count, 1
        )

    return sig, codegen


SHORT = 16  # a piece this short is copied with 16 fixed bytes: `out` has this many spare


@_jit
def _put(out: np.ndarray, at: np.int64, piece: np.ndarray, a: np.int64, b: np.int64) -> np.int64:
    """Copies ``piece[a:b]`` to ``out[at:]``. Most pieces (a key, a number) are a few bytes: a
    libc call for each costs more than the bytes; those are copied as 16 fixed bytes (the bytes
    past the piece are overwritten by the next one, or fall in ``out``'s spare bytes)."""
    if b - a <= SHORT and a + SHORT <= len(piece):
        _copy16(out, at, piece, a)
    else:
        _memcpy(out, at, piece, a, b - a)
    return at + b - a


@_jit
def _put_value(
    out: np.ndarray, at: np.int64, data: np.ndarray, a: np.int64, b: np.int64, quoted: bool
) -> np.int64:
    if not quoted:
        return _put(out, at, data, a, b)
    out[at] = _QUOTE
    at += 1
    start = a  # copied in runs between the bytes to escape
    for i in range(a, b):
        c = data[i]
        if c == _QUOTE or c == _BACKSLASH:
            at = _put(out, at, data, start, i)
            out[at] = _BACKSLASH
            at += 1
            start = i
    at = _put(out, at, data, start, b)
    out[at] = _QUOTE
    return at + 1


@_jit
def _records(
    rows: np.int64,
    offsets: np.ndarray,
    data: np.ndarray,
    null: np.ndarray,
    quoted: np.ndarray,
    seps: np.ndarray,
    sep_offsets: np.ndarray,
    null_text: np.ndarray,
) -> np.ndarray:  # pragma: no cover - compiled
    """Each row: ``sep[0] value[0] sep[1] value[1] ... sep[f-1] value[f-1] sep[f]``, rows joined
    by a newline. Field ``j`` of row ``r`` is value ``j * rows + r`` (``offsets`` into
    ``data``; ``null`` writes ``null_text``); ``quoted[j]``: quote it and escape ``"`` and ``\\``.
    """
    fields = len(quoted)
    fixed = sep_offsets[fields + 1] - sep_offsets[0]
    size = rows * (fixed + 1) - 1 if rows else 0
    for j in range(fields):
        q = quoted[j]
        first = j * rows
        if not q:  # the values' bytes, a null's replaced by null_text
            size += np.int64(offsets[first + rows]) - np.int64(offsets[first])
        for v in range(first, first + rows):
            if null[v]:
                size += _NULL_SIZE - (0 if q else offsets[v + 1] - offsets[v])
            elif q:
                size += _value_size(data, np.int64(offsets[v]), np.int64(offsets[v + 1]), q)
    out = np.empty(size + SHORT, np.uint8)
    at = np.int64(0)
    for r in range(rows):
        if r:
            out[at] = 10
            at += 1
        for j in range(fields):
            at = _put(out, at, seps, sep_offsets[j], sep_offsets[j + 1])
            v = j * rows + r
            if null[v]:
                at = _put(out, at, null_text, 0, _NULL_SIZE)
            else:
                a, b = np.int64(offsets[v]), np.int64(offsets[v + 1])
                at = _put_value(out, at, data, a, b, quoted[j])
        at = _put(out, at, seps, sep_offsets[fields], sep_offsets[fields + 1])
    return out[:size]


def records(
    rows: int,
    offsets: np.ndarray,
    data: np.ndarray,
    null: np.ndarray,
    quoted: np.ndarray,
    seps: list[bytes],
) -> np.ndarray:
    """The records of `_records` as uint8; ``seps``: the ``fields + 1`` texts around the values
    (the first before field 0, the last after the last field)."""
    sep_offsets = np.zeros(len(seps) + 1, np.int64)
    sep_offsets[1:] = np.cumsum([len(s) for s in seps])
    joined = np.frombuffer(b"".join(seps) + bytes(SHORT), np.uint8)  # spare bytes to read
    return _records(np.int64(rows), offsets, data, null, quoted, joined, sep_offsets, _NULL)
