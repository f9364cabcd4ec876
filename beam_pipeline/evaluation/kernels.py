"""Compiled (numba) loops for the sliced metrics: what numpy can only do in several passes.

- `encode_bytes` / `encode_words`: each row's value -> a code per distinct value, in order of
  first appearance (what Arrow's ``dictionary_encode`` gives), through an open-addressing hash
  table (values up to 8 bytes are compared as one packed word). ~5x Arrow's hashing of short
  strings.
- `fold_binary` / `fold_multiclass`, then `scatter_hist`: a classifier's batch, from labels
  and scores, into Overall and each row's slice of every spec (counts, sums, confusion cells;
  then log losses and AUC histogram cells), with no numpy temporaries but the rows' histogram
  cells and likelihoods (numpy takes their log); `scatter`: counts and sums from per-row values
  computed by numpy (regression).
- `aucs`: the AUC of every [slice, class] histogram pair, in exact integers.

Compiled on first use and cached on disk next to this file (or, where that folder is
read-only, in numba's user-wide cache or ``NUMBA_CACHE_DIR``; with no writable place at all,
compiled in memory each process). Importing this module imports numba (~0.3 s): callers import
it when they first need it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba.extending import overload

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _jit(fn: Callable[..., Any]) -> Any:
    """`numba.njit` with the on-disk cache where numba finds a writable folder."""
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(nogil=True)(fn)


@_jit
def _mix(word: np.uint64, length: np.int64) -> np.uint64:
    h = (word ^ np.uint64(length)) * _GOLDEN
    return h ^ (h >> np.uint64(29))


@_jit
def _word(words: np.ndarray, a: np.int64, length: np.int64) -> np.uint64:  # pragma: no cover
    """The ``min(length, 8)`` bytes from byte `a` of `words` (the bytes, padded, as uint64),
    little-endian, zero above them: two aligned loads, not a loop over bytes."""
    q = np.uint64(a) >> np.uint64(3)  # unsigned indices: no code for negative ones
    shift = np.uint64((a & 7) * 8)
    # Branch-free (the alignment of a value is random): shifting by 63 - shift, then by 1,
    # gives 0 for an aligned value, where a shift by 64 would be undefined.
    w = (words[q] >> shift) | ((words[q + np.uint64(1)] << (np.uint64(63) - shift)) << np.uint64(1))
    half = np.uint64(4 * min(length, 8))
    return w & (((np.uint64(1) << half) << half) - np.uint64(1))


@_jit
def _short_key(words: np.ndarray, a: np.uint64, length: np.uint64) -> np.uint64:  # pragma: no cover
    """The key of a value shorter than 8 bytes at byte `a` of `words`: its bytes, as `_word`
    reads them (the mask in one shift: under 8 bytes, never a shift by 64), and its length in
    the top byte."""
    q = a >> np.uint64(3)
    shift = (a & np.uint64(7)) * np.uint64(8)
    w = (words[q] >> shift) | ((words[q + np.uint64(1)] << (np.uint64(63) - shift)) << np.uint64(1))
    return (w & ((np.uint64(1) << (length * np.uint64(8))) - np.uint64(1))) | (
        length << np.uint64(56)
    )


@_jit
def _encode_bytes(
    offsets: np.ndarray,
    words: np.ndarray,
    index: np.ndarray,
    present: np.ndarray,
    codes: np.ndarray,
    firsts: np.ndarray,
    slot_code: np.ndarray,
    slot_key: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """`encode_bytes` into preallocated arrays (no reallocation in the loop, where numba's
    reference counting of the rebound arrays cost a third of the time). Returns the number of
    codes, or -1 when `firsts` is full (the caller retries with more room)."""
    mask = len(slot_code) - 1
    n = 0
    for r in range(len(index)):
        if not present[r]:
            continue
        i = index[r]
        a = np.int64(offsets[i])
        length = np.int64(offsets[i + 1]) - a
        if length < 8:  # the value itself, with its length in the top byte, is the key
            key = _short_key(words, np.uint64(a), np.uint64(length))
        else:  # a hash of all its bytes, top byte 0xff (no short key has it); bytes compared
            key = _mix(_word(words, a, 8), length)
            for t in range(8, length, 8):
                key = _mix(key ^ _word(words, a + t, length - t), length)
            key |= np.uint64(0xFF) << np.uint64(56)
        s = np.int64((key * _GOLDEN) >> np.uint64(40)) & mask
        while True:
            c = slot_code[s]
            if c < 0:  # a new value
                if n == len(firsts):
                    return -1
                firsts[n] = i
                slot_code[s] = n
                slot_key[s] = key
                codes[r] = n
                n += 1
                break
            if slot_key[s] == key:
                same = True
                if length >= 8:
                    b = np.int64(offsets[firsts[c]])
                    if np.int64(offsets[firsts[c] + 1]) - b != length:
                        same = False
                    for t in range(0, length if same else 0, 8):
                        if _word(words, a + t, length - t) != _word(words, b + t, length - t):
                            same = False
                            break
                if same:
                    codes[r] = c
                    break
            s = (s + 1) & mask
    return n


@_jit
def _encode_words(
    values: np.ndarray,
    index: np.ndarray,
    present: np.ndarray,
    codes: np.ndarray,
    firsts: np.ndarray,
    slot_code: np.ndarray,
    slot_key: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """`_encode_bytes` for fixed-width values of up to 8 bytes, given as uint64 words."""
    mask = len(slot_code) - 1
    n = 0
    for r in range(len(index)):
        if not present[r]:
            continue
        i = index[r]
        key = values[i]
        s = np.int64(_mix(key, 8) >> np.uint64(40)) & mask
        while True:
            c = slot_code[s]
            if c < 0:
                if n == len(firsts):
                    return -1
                firsts[n] = i
                slot_code[s] = n
                slot_key[s] = key
                codes[r] = n
                n += 1
                break
            if slot_key[s] == key:
                codes[r] = c
                break
            s = (s + 1) & mask
    return n


@_jit
def _short_keys(
    offsets: np.ndarray, words: np.ndarray, index: np.ndarray, present: np.ndarray
) -> tuple[np.ndarray, np.int64]:  # pragma: no cover - compiled
    """Per row, its value ``bytes[offsets[i]:offsets[i + 1]]`` (``i = index[row]``) as one
    uint64 key when shorter than 8 bytes: the bytes, with the length in the top byte (0 where
    not `present`). Also returns the longest length: keys are only valid when it is < 8."""
    keys = np.zeros(len(index), np.uint64)
    longest = 0
    for r in range(len(index)):
        if present[r]:
            i = index[r]
            a = np.int64(offsets[i])
            length = np.int64(offsets[i + 1]) - a
            longest = max(longest, length)
            keys[r] = _word(words, a, length) | (np.uint64(min(length, 255)) << np.uint64(56))
    return keys, longest


@_jit
def _slot(
    key: np.uint64, slot_code: np.ndarray, slot_key: np.ndarray
) -> np.uint64:  # pragma: no cover - compiled
    """Where `key` is in the table of `intern` (`slot_code` -1: empty), or the empty slot
    where it goes: linear probing from its hash (the table is never full). Unsigned, as the
    indices of `intern_lists` (numba indexes with a signed integer as Python does, counting
    a negative one from the end: code on every access; ~25 % of that loop)."""
    mask = np.uint64(len(slot_code) - 1)
    s = ((key * _GOLDEN) >> np.uint64(32)) & mask
    while slot_code[s] >= 0 and slot_key[s] != key:
        s = (s + np.uint64(1)) & mask
    return s


SPARSE_SLOTS = 4096  # tables up to this size are kept at most 1/8 full (48 KB at most)


@_jit
def crowded(count: int, slots: int) -> bool:  # pragma: no cover - compiled
    """Whether a table of `intern` with `slots` slots is too full to hold `count` keys: over
    half full, or, while small, over 1/8 (a slice feature has a few hundred values; with fewer
    collisions the probe's branch is mispredicted less often: `intern_lists` ~20 % faster on
    150 values than with the table half full)."""
    return 2 * count > slots or (slots < SPARSE_SLOTS and 8 * count > slots)


@_jit
def _code(
    key: np.uint64,
    first: int,
    slot_code: np.ndarray,
    slot_key: np.ndarray,
    count: int,
    firsts: np.ndarray,
    new: int,
) -> int:  # pragma: no cover - compiled
    """The code of `key` in the table of `intern`. A key not there gets code `count` (the
    caller counts it), `first` (its row or value) going to ``firsts[new]``; -1 when the table
    is `crowded` or `firsts` is full (nothing is added: the caller grows them and retries)."""
    s = _slot(key, slot_code, slot_key)
    if slot_code[s] >= 0:
        return slot_code[s]
    if crowded(count + 1, len(slot_code)) or new == len(firsts):
        return -1
    slot_code[s] = count
    slot_key[s] = key
    firsts[new] = first
    return count


@_jit
def intern(
    keys: np.ndarray,
    present: np.ndarray,
    start: int,
    codes: np.ndarray,
    slot_code: np.ndarray,
    slot_key: np.ndarray,
    count: int,
    firsts: np.ndarray,
) -> tuple[int, int, int]:  # pragma: no cover - compiled
    """Codes of uint64 `keys` from a hash table kept between batches (`slot_code`, -1: empty,
    and `slot_key`), new keys numbered from `count` on, from row `start`.

    Returns (the row it stopped at, the number of codes, how many rows of `firsts` hold the
    rows of new codes): it stops early when the table is `crowded` or `firsts` is full; the
    caller grows them (`rehash`) and calls again from that row.
    """
    new = 0
    for r in range(start, len(keys)):
        if not present[r]:
            continue
        code = _code(keys[r], r, slot_code, slot_key, count, firsts, new)
        if code < 0:
            return r, count, new
        if code == count:  # a new key
            new += 1
            count += 1
        codes[r] = code
    return len(keys), count, new


@_jit
def intern_lists(
    list_offsets: np.ndarray,
    list_valid: np.ndarray | None,
    value_offsets: np.ndarray,
    value_valid: np.ndarray | None,
    words: np.ndarray,
    base: int,
    start: int,
    codes: np.ndarray,
    valid: np.ndarray,
    slot_code: np.ndarray,
    slot_key: np.ndarray,
    count: int,
    firsts: np.ndarray,
) -> tuple[int, int, int]:  # pragma: no cover - compiled
    """`intern` of each row's first value of a list column of bytes, in one pass: the row's
    value, its key (`_short_keys`) and its code, from the column's own buffers.

    Args:
        list_offsets: the rows' offsets into the values (rows + 1).
        list_valid, value_valid: the rows' and values' validity (None: all valid).
        value_offsets: the values' byte offsets; `words` holds their bytes from byte `base`
            (`padded`).
        codes, valid: per row, filled from row `start` (a row with no value is not valid).

    Returns `intern`'s triple; the row is -1 where a value has 8 bytes or more (the caller
    encodes the batch another way; the codes given so far stay in the table, in `firsts`).
    """
    new = 0
    # Unsigned indices (see `_slot`) and the validity checks' conditions outside the loop:
    # 5.0 -> 4.0 ms per 1M rows; numba compiles the checks out for a None validity.
    end, first = len(list_offsets) - 1, np.uint64(base)
    for row in range(max(start, 0), end):
        r = np.uint64(row)
        i = np.uint64(list_offsets[r])
        if (
            np.uint64(list_offsets[r + np.uint64(1)]) <= i
            or (list_valid is not None and not list_valid[r])
            or (value_valid is not None and not value_valid[i])
        ):
            valid[r] = False
            continue
        a = np.uint64(value_offsets[i])
        length = np.uint64(value_offsets[i + np.uint64(1)]) - a
        if length >= np.uint64(8):
            return -1, count, new
        key = _short_key(words, a - first, length)
        code = _code(key, i, slot_code, slot_key, count, firsts, new)
        if code < 0:
            return row, count, new
        if code == count:  # a new key
            new += 1
            count += 1
        codes[r] = code
        valid[r] = True
    return end, count, new


@_jit
def slice_ids(
    indices: np.ndarray, bitmap: np.ndarray, offset: int, ids: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover
    """``out[row] = ids[indices[row]]``, 0 where the Arrow validity `bitmap` (bits from bit
    `offset`; empty: all valid) says null: read as it is, not unpacked to booleans first."""
    for r in range(len(indices)):
        bit = np.uint64(offset + r)  # unsigned indices: see `_slot`
        if len(bitmap) == 0 or (bitmap[bit >> np.uint64(3)] >> (bit & np.uint64(7))) & 1:
            out[r] = ids[np.uint64(indices[r])]
        else:
            out[r] = 0


@_jit
def rehash(
    slot_code: np.ndarray, slot_key: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """The table of `intern` with `size` slots (a power of 2), holding the same codes."""
    code = np.full(size, -1, np.int32)
    keys = np.zeros(size, np.uint64)
    for t in range(len(slot_code)):
        if slot_code[t] >= 0:
            s = _slot(slot_key[t], code, keys)  # every key differs: its free slot
            code[s] = slot_code[t]
            keys[s] = slot_key[t]
    return code, keys


def short_keys(
    offsets: np.ndarray, data: np.ndarray, index: np.ndarray, present: np.ndarray
) -> np.ndarray | None:
    """`_short_keys`, or None when a present value has 8 bytes or more."""
    keys, longest = _short_keys(offsets, padded(data), index, present)
    return keys if longest < 8 else None


def padded(data: np.ndarray) -> np.ndarray:
    """Bytes as uint64 words, with 8 to 15 zero bytes after them (for `_word`)."""
    words = np.empty(len(data) // 8 + 2, np.uint64)
    words[-2:] = 0  # the words the bytes end in: the rest is overwritten (no memset of it)
    words.view(np.uint8)[: len(data)] = data
    return words


def encode_bytes(
    offsets: np.ndarray, data: np.ndarray, index: np.ndarray, present: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Codes of the variable-width values ``data[offsets[i]:offsets[i + 1]]`` picked by
    `index` (one per row; rows not `present` get code 0 and take no part), numbered in order
    of first appearance.

    Returns (per-row int32 code, the value index of each code's first row).
    """
    return _retried(_encode_bytes, (offsets, padded(data), index, present))


def encode_words(
    values: np.ndarray, index: np.ndarray, present: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`encode_bytes` for fixed-width values of up to 8 bytes, given as uint64 words."""
    return _retried(_encode_words, (values, index, present))


def _retried(kernel: Any, args: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    rows = len(args[-2])
    codes = np.zeros(rows, np.int32)
    room = 256  # distinct values; a slice column has a few
    while True:
        room = min(room, max(rows, 1))
        firsts = np.empty(room, np.int64)
        slots = 1 << (2 * room - 1).bit_length()  # at most half full
        n = kernel(*args, codes, firsts, np.full(slots, -1, np.int32), np.zeros(slots, np.uint64))
        if n >= 0:
            return codes, firsts[:n]
        room *= 16


def _specs(groups: np.ndarray) -> int:
    """How many slice specs `groups` holds: ``[rows]`` (one) or ``[rows, specs]``."""
    return 1 if groups.ndim == 1 else groups.shape[1]


def _group(groups: np.ndarray, r: int, k: int) -> int:
    """The slice of row `r` in spec `k` (0: in none of its slices)."""
    return groups[r] if groups.ndim == 1 else groups[r, k]


# The kernels take a batch's slice ids as ``[rows]`` where there is one spec (the common case):
# numba compiles them for that shape apart, with no loop over specs (a loop of unknown length
# around a row's slice updates took fold_binary 3.8 -> 4.5 ms, scatter_hist 4.1 -> 6.2 ms per
# 1M rows). numba matches an overload's parameters to its implementation's, annotations
# included: none here.
@overload(_specs)
def _specs_compiled(groups):  # type: ignore[no-untyped-def]
    if groups.ndim == 1:
        return lambda groups: 1
    return lambda groups: groups.shape[1]


@overload(_group)
def _group_compiled(groups, r, k):  # type: ignore[no-untyped-def]
    if groups.ndim == 1:
        return lambda groups, r, k: groups[r]
    return lambda groups, r, k: groups[r, k]


@_jit
def scatter(
    groups: np.ndarray,
    cell: np.ndarray,
    stats: np.ndarray,
    n: np.ndarray,
    sums: np.ndarray,
    cells: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Adds each row to Overall (slice 0) and to its slice ``groups[row, spec]`` of every spec
    (0: in no slice of that spec; `groups` is ``[rows]`` for one spec: `_specs`), in one pass:
    its count, its cell ``cells[slice, cell[row]]`` (confusion matrix or residual histogram)
    and its four ``stats[:, row]`` into ``sums[slice]``.
    """
    rows, specs = len(groups), _specs(groups)
    # Overall's count and sums in registers: its row of `n` and `sums` would otherwise be a
    # chain of stores and loads through memory, one link per row. (A loop over the four sums,
    # rather than four statements, made this pass 4x slower.)
    t0 = t1 = t2 = t3 = 0.0
    for r in range(rows):
        x = cell[r]
        cells[0, x] += 1
        a, b, c, d = stats[0, r], stats[1, r], stats[2, r], stats[3, r]
        t0 += a
        t1 += b
        t2 += c
        t3 += d
        for k in range(specs):
            g = _group(groups, r, k)
            if g > 0:
                n[g] += 1
                cells[g, x] += 1
                sums[g, 0] += a
                sums[g, 1] += b
                sums[g, 2] += c
                sums[g, 3] += d
    n[0] += rows
    sums[0, 0] += t0
    sums[0, 1] += t1
    sums[0, 2] += t2
    sums[0, 3] += t3


_INT64_RANGE = 9.223372036854775808e18  # 2**63


@_jit
def scatter_hist(
    groups: np.ndarray,
    local: np.ndarray,
    logs: np.ndarray,
    sums: np.ndarray,
    low: np.ndarray,
    hist: np.ndarray,
    used: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """The second pass of `fold_binary` / `fold_multiclass`: adds each row to Overall (slice
    0) and to its slice of every spec (0: in none): its log loss (minus `logs`, the log of its
    likelihood) to column 2 of `sums`, and per class c, one to AUC histogram cell
    ``local[c, row]``.

    The counts' low bytes are in `low`: a cell that wraps to 0 carries 256 into `hist` (the
    count is ``hist + low``) and marks its slice in `used` (`aucs` reads the `hist` rows of
    marked slices only: the others are zero). The increments in loops of their own, with a
    short body (with the cell arithmetic or the losses, they took 2-3x as long: fewer of their
    cache misses in flight), on bytes: 150 slices x 20k cells are 3 MB of them, mostly in
    cache, where int32 counts (12 MB) missed it (2x as long).
    """
    rows, specs = len(groups), _specs(groups)
    total = 0.0
    for r in range(rows):
        v = logs[r]
        total -= v
        for k in range(specs):
            g = _group(groups, r, k)
            if g > 0:
                sums[g, 2] -= v
    sums[0, 2] += total
    for c in range(local.shape[0]):
        cells = local[c]
        for r in range(rows):
            cell = np.uint64(cells[r])  # unsigned: see `_slot`
            w = low[0, cell] + 1
            low[0, cell] = w  # wraps to 0 at 256
            if w == 256:
                hist[0, cell] += 256
            for k in range(specs):
                g = _group(groups, r, k)
                if g > 0:
                    w = low[g, cell] + 1
                    low[g, cell] = w
                    if w == 256:
                        hist[g, cell] += 256
                        used[g] = 1


@_jit
def _bucket(score: float, buckets: np.int64) -> np.int64:  # pragma: no cover - compiled
    """numpy's ``clip((score * buckets).astype(int64), 0, buckets - 1)``, for one score. A
    product int64 cannot hold (NaN, infinite, huge) converts to int64's minimum there (x86), so
    it lands in bucket 0; numba's conversion of it would be undefined."""
    x = score * buckets
    k = np.int64(x if -_INT64_RANGE <= x < _INT64_RANGE else 0.0)
    return min(max(k, np.int64(0)), buckets - 1)


@_jit
def fold_binary(
    labels: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    threshold: float,
    eps: float,
    buckets: int,
    n: np.ndarray,
    sums: np.ndarray,
    confusion: np.ndarray,
    local: np.ndarray,
    likelihood: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """A batch of a binary classifier into Overall (slice 0) and each row's slice of every
    spec (``groups[row, spec]``, 0: in none; ``[rows]`` for one spec: `_specs`), as
    `MetricsAccumulator` computes it with numpy for Overall alone, with no temporaries: label
    and score sums, confusion cell ``confusion[slice, 2 * truth + (score >= threshold)]``; the
    count, Overall's only (a slice's is the sum of its confusion matrix: the caller's; ~6 % of
    this pass).

    Per row, for `scatter_hist`: `local` (``[1, rows]``) gets its AUC histogram cell, ``truth *
    buckets + bucket``, and `likelihood` the probability given to its label (the score clipped
    to ``[eps, 1 - eps]``), whose log numpy takes in between (a call to libm's per row was a
    third of this pass). Written without branches on the data (~15 % faster)."""
    rows, specs = len(groups), _specs(groups)
    top = 1 - eps
    t0 = t1 = 0.0  # Overall's sums in registers (see `scatter`)
    for r in range(rows):
        y = labels[r]
        p = scores[r, 0]
        positive = y > 0.5
        truth = np.int64(positive)
        q = eps if p < eps else p  # np.clip: NaN stays NaN
        q = top if q > top else q
        likelihood[r] = q if positive else 1 - q
        x = 2 * truth + np.int64(p >= threshold)
        local[0, r] = truth * buckets + _bucket(p, buckets)
        confusion[0, x] += 1
        t0 += y
        t1 += p
        for k in range(specs):
            g = _group(groups, r, k)
            if g > 0:
                confusion[g, x] += 1
                sums[g, 0] += y
                sums[g, 1] += p
    n[0] += rows
    sums[0, 0] += t0
    sums[0, 1] += t1


@_jit
def fold_multiclass(
    labels: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    eps: float,
    buckets: int,
    n: np.ndarray,
    sums: np.ndarray,
    confusion: np.ndarray,
    local: np.ndarray,
    likelihood: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """`fold_binary` for ``[rows, classes]`` scores and integer labels (checked in range by the
    caller): Overall's count, label sums, confusion cell ``truth * classes + argmax``
    (numpy's argmax: the first maximum, or the first NaN); `likelihood`, the true class's score
    clipped to ``[eps, 1]``; `local` (``[classes, rows]``), per class c the histogram cell
    ``(2 * c + (truth == c)) * buckets + bucket``."""
    rows, specs = len(groups), _specs(groups)
    classes = scores.shape[1]
    t0 = 0.0
    for r in range(rows):
        y = labels[r]
        truth = np.int64(y)
        q = scores[r, truth]
        q = eps if q < eps else q
        q = 1.0 if q > 1.0 else q
        likelihood[r] = q
        best = 0
        top = scores[r, 0]
        if not np.isnan(top):
            for c in range(1, classes):
                v = scores[r, c]
                if np.isnan(v):
                    best = c
                    break
                if v > top:
                    best = c
                    top = v
        x = truth * classes + best
        for c in range(classes):
            local[c, r] = (2 * c + (truth == c)) * buckets + _bucket(scores[r, c], buckets)
        confusion[0, x] += 1
        t0 += y
        for k in range(specs):
            g = _group(groups, r, k)
            if g > 0:
                confusion[g, x] += 1
                sums[g, 0] += y
    n[0] += rows
    sums[0, 0] += t0


@_jit
def aucs(
    hist: np.ndarray, low: np.ndarray, used: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled
    """AUC per [slice, class] of [slice, class, negative|positive, bucket] histograms, the
    counts ``hist + low`` (`low`: their low bytes from `fold_binary`, or no slices: none); NaN
    where undefined (no positives or no negatives). With `low`, the `hist` row of a slice but
    Overall is read only where `used` marks it (`scatter_hist`), zero elsewhere: for 150
    slices, 12 MB of int32 zeros not read (AUCs 1.4 -> 0.7 ms).

    In integers (exact): each positive beats the negatives in lower buckets and ties (one half)
    those in its own bucket.
    """
    slices, classes, _, buckets = hist.shape
    lows = len(low) > 0
    out = np.empty((slices, classes), np.float64)
    for s in range(slices):
        full = not lows or s == 0 or used[s]
        for c in range(classes):
            below = 0
            twice = 0
            pos = 0
            if full:
                for b in range(buckets):
                    neg = np.int64(hist[s, c, 0, b])
                    hit = np.int64(hist[s, c, 1, b])
                    if lows:
                        neg += low[s, c, 0, b]
                        hit += low[s, c, 1, b]
                    twice += hit * (2 * below + neg)
                    below += neg
                    pos += hit
            else:  # the counts are their low bytes
                for b in range(buckets):
                    neg = np.int64(low[s, c, 0, b])
                    hit = np.int64(low[s, c, 1, b])
                    twice += hit * (2 * below + neg)
                    below += neg
                    pos += hit
            pairs = pos * below
            out[s, c] = twice / 2 / pairs if pairs > 0 else np.nan
    return out
