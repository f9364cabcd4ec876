"""Number texts that can stand for their value as they are: plain decimals.

`score` sends each row's numbers to the model as text and writes them into JSON records. Read
as numbers and printed again, they cost a float-to-text conversion per value (the larger part
of a million rows' reading). A CSV's own text can be used instead when it is *plain*:

- an int: ``-?(0|[1-9][0-9]*)``, not ``-0``: Arrow prints the parsed value with the same
  characters;
- a float: ``-?(0|[1-9][0-9]*)(\\.[0-9]+)?`` with at most 15 significant digits. Such a
  decimal is the same number as the shortest text of the double it parses to (any decimal of
  15 digits or fewer survives a round trip through a double), so a parser (Arrow's, TensorFlow's,
  a JSON reader's) makes of it exactly what it makes of Arrow's printed text; and it is valid
  JSON. ``1.50`` stays ``1.50`` where Arrow would print ``1.5``: the same JSON value.

Anything else (exponents, ``+``, leading zeros, ``.5``, whitespace, ``nan``, more digits, an
empty text) is not plain, and the caller reads and prints the values as before. `parse_plain`
types plain texts in the same pass that checks them (the numbers Arrow's parser makes of them:
tests/io compares the two). Compiled on first use and cached on disk, as
`beam_pipeline.io.json_kernel` is.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from beam_pipeline.io.json_kernel import _jit
from beam_pipeline.io.predictions import string_buffers

MAX_DIGITS = 15  # DBL_DIG: decimals this short round-trip through a double


_POW10 = np.array([10.0**k for k in range(MAX_DIGITS + 1)])


@_jit
def _parse_plain(
    offsets: np.ndarray, data: np.ndarray, valid: np.ndarray, integer: bool, out: np.ndarray
) -> bool:
    """Parses plain texts into ``out`` (a missing value: 0); False at the first other text.
    ``valid``: Arrow's validity bits, from bit 0 (empty: no value is missing).
    A float is its digits as an integer (< 10**15, exact in a double) divided by a power of ten
    (exact up to 10**22): one correctly rounded division, as a strtod makes of it."""
    for i in range(len(offsets) - 1):
        a, b = offsets[i], offsets[i + 1]
        if len(valid) and not (valid[i >> 3] >> (i & 7)) & 1:
            out[i] = 0
            continue
        if a == b:
            return False  # "" (not missing)
        j = a
        negative = data[j] == 45  # -
        if negative:
            j += 1
        if j == b:
            return False
        mantissa = 0
        digits = 0  # significant digits
        first = data[j]
        if first == 48:  # a leading 0 is the whole integer part
            j += 1
            if integer and (negative or j != b):
                return False
        elif 49 <= first <= 57:
            while j < b and 48 <= data[j] <= 57:
                mantissa = mantissa * 10 + (data[j] - 48)
                j += 1
                digits += 1
                if digits > 18:
                    return False
        else:
            return False
        scale = 0
        if j != b:
            if integer or data[j] != 46 or j + 1 == b:  # only "." and a digit may follow
                return False
            j += 1
            while j < b and 48 <= data[j] <= 57:
                if mantissa or data[j] != 48:
                    digits += 1
                    if digits > MAX_DIGITS:
                        return False
                mantissa = mantissa * 10 + (data[j] - 48)
                scale += 1
                j += 1
            if j != b:
                return False
        if integer:
            out[i] = -mantissa if negative else mantissa
        else:
            if digits > MAX_DIGITS or scale > MAX_DIGITS:
                return False
            value = np.float64(mantissa) / _POW10[scale]
            out[i] = -value if negative else value
    return True


def parse_plain(texts: pa.Array, integer: bool) -> pa.Array | None:
    """The int64 (``integer``) or float64 array of a string array whose values are all plain
    (nulls stay null), or None if one is not."""
    kind = pa.int64() if integer else pa.float64()
    if not len(texts):
        return pa.array([], kind)
    if texts.offset and texts.null_count:  # a slice: its validity bits start at 0 in a copy
        texts = pa.concat_arrays([texts])
    validity = texts.buffers()[0] if texts.null_count else None
    valid = np.frombuffer(validity, np.uint8) if validity is not None else np.zeros(0, np.uint8)
    offsets, data = string_buffers(texts)
    values = np.empty(len(texts), np.int64 if integer else np.float64)
    if not _parse_plain(offsets, data, valid, integer, values):
        return None
    return pa.Array.from_buffers(
        kind, len(texts), [validity, pa.py_buffer(values)], texts.null_count
    )
