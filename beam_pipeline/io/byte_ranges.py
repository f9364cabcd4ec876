"""Splittable reads: one large CSV or JSON Lines file shared by several workers, by byte ranges.

A file is cut into nominal ranges of about ``split_bytes``. A range owns the records whose first
byte lies in it, so its reader must know where its first record starts and that record's line
number. JSON Lines records are lines; a CSV record may hold quoted newlines, so the state at a
nominal offset (inside a quoted field or not) depends on everything before it. Two passes, each
reading every byte once, in parallel:

1. `scan_range` (one task per range): align the range to the byte after a newline, then scan it
   with `readers.scan_csv` twice: once as if it starts at a record, once as if it starts inside a
   quoted field (a ``"`` put in front). Each scan gives where the first record starts, whether a
   quoted field is still open at the end, and the longest record; the range's newline count does
   not depend on the state.
2. `plan` (cheap, per file): chain the summaries from the file's first record (its state is
   known) to get every range's real first record and its line number, then each range's reader
   (`readers.read_csv(..., byte_range=...)`) reads whole records from there, lines exact.

The rules are `read_csv`'s, so the result equals one sequential read. Where `read_csv` would
resynchronise after an unterminated quoted field (one that never closes, or a record longer than
``MAX_RECORD_BYTES``), the state at later offsets is not the scanners' state: `plan` then gives
one range for the whole file (read sequentially, still exact). Compressed files are not split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_pipeline.io import readers

LINE_PROBE = 1 << 16


@dataclass(frozen=True)
class Scan:
    """One range read from its aligned start in one assumed state (see `scan_range`).

    Attributes:
        first: offset of the first record that starts in the range (None: none ends in it).
        lines_before_first: newlines between the range's start and ``first``.
        tail: bytes of the last, unfinished record at the range's end.
        longest: the longest record that starts and ends in the range (bytes).
        open: a quoted field is still open at the range's end.
    """

    first: int | None
    lines_before_first: int
    tail: int
    longest: int
    open: bool


@dataclass(frozen=True)
class RangeScan:
    """A range aligned to record lines, scanned in both states (``plain``: at a record start;
    ``quoted``: inside a quoted field)."""

    path: str
    index: int
    start: int
    end: int
    newlines: int
    plain: Scan
    quoted: Scan | None  # None for JSON Lines


@dataclass(frozen=True)
class ByteRange:
    """What one reader reads: whole records in ``[start, end)``, the first on line ``line``."""

    path: str
    start: int
    end: int
    line: int


def splittable(path: str) -> bool:
    return CompressionTypes.detect_compression_type(path) == CompressionTypes.UNCOMPRESSED


def nominal_ranges(path: str, split_bytes: int, splits: int | None = None) -> list[tuple[int, int]]:
    """``[(start, end)]`` of about ``split_bytes`` each (or exactly ``splits`` of them)."""
    size = _size(path)
    n = splits if splits else max(1, -(-size // split_bytes))
    if not splittable(path):
        n = 1
    edges = [size * i // n for i in range(n + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def scan_range(path: str, fmt: str, index: int, start: int, end: int) -> RangeScan:
    """Pass 1 for the nominal range ``[start, end)`` of ``path`` (range ``index``)."""
    size = _size(path)
    with readers.open_uncompressed(path) as f:
        floor = 0 if fmt == "jsonl" else len(f.readline())  # CSV: the header is no record
        begin = floor if index == 0 else max(_aligned(f, start), floor)
        stop = max(_aligned(f, end), floor) if end < size else size
        stop = max(stop, begin)
        f.seek(begin)
        if fmt == "jsonl":
            newlines = _count_newlines(f, stop - begin)
            plain = Scan(begin if stop > begin else None, 0, 0, 0, False)
            return RangeScan(path, index, begin, stop, newlines, plain, None)
        plain, newlines = _scan_csv(f, begin, stop, quoted=False)
        f.seek(begin)
        quoted, _ = _scan_csv(f, begin, stop, quoted=True)
    return RangeScan(path, index, begin, stop, newlines, plain, quoted)


def plan(scans: list[RangeScan], size: int | None = None) -> list[ByteRange]:
    """Pass 2's ranges of one file: each starts at a record, with its exact line number.

    One range for the whole file where `read_csv` would resynchronise (see the module doc).
    """
    scans = sorted(scans, key=lambda s: s.index)
    path = scans[0].path
    size = _size(path) if size is None else size
    header = scans[0].start
    first_line = 2 if scans[0].quoted is not None else 1
    whole = [ByteRange(path, header, size, first_line)]
    starts: list[tuple[int, int]] = []
    line = first_line
    quoted = False
    carry = 0  # bytes of the record still open at the current offset
    for s in scans:
        scan = s.quoted if quoted and s.quoted is not None else s.plain
        if scan.first is None:  # the whole range is inside one record
            carry += s.end - s.start
        else:
            if quoted:
                carry += scan.first - s.start
            if max(carry, scan.longest) >= readers.MAX_RECORD_BYTES:
                return whole
            starts.append((scan.first, line + scan.lines_before_first))
            carry = scan.tail
        line += s.newlines
        quoted = scan.open
    if quoted or carry >= readers.MAX_RECORD_BYTES:
        return whole  # a quoted field that never closes: read_csv resynchronises after it
    if not starts:
        return whole
    ends = [b for b, _ in starts[1:]] + [size]
    return [ByteRange(path, b, e, n) for (b, n), e in zip(starts, ends, strict=True) if e > b]


# ---------------------------------------------------------------------------------------------


def _size(path: str) -> int:
    [result] = FileSystems.match([path])
    return int(result.metadata_list[0].size_in_bytes)


def _aligned(f: Any, offset: int) -> int:
    """The offset of the first byte after a newline at or after ``offset - 1``."""
    if offset == 0:
        return 0
    f.seek(offset - 1)
    pos = offset - 1
    while True:
        probe = f.read(LINE_PROBE)
        if not probe:
            return pos
        at = probe.find(b"\n")
        if at >= 0:
            return pos + at + 1
        pos += len(probe)


def _count_newlines(f: Any, length: int) -> int:
    count = 0
    while length > 0:
        block = f.read(min(readers.BLOCK_BYTES, length))
        if not block:
            break
        length -= len(block)
        count += block.count(b"\n")
    return count


def _scan_csv(f: Any, start: int, stop: int, quoted: bool) -> tuple[Scan, int]:
    """The records of ``[start, stop)``, read from ``f`` (at ``start``) in blocks; an unfinished
    record is carried into the next block, as `read_csv` does. ``quoted``: the range starts
    inside a quoted field (scanned with a ``"`` in front). Returns the scan and the newline count.
    """
    first = None if quoted else start
    lines_before_first = 0
    longest = 0
    newlines = 0
    # ``data``: the bytes from offset ``data_at`` (a record start, or the synthetic quote) on.
    data, data_at = (b'"', start - 1) if quoted else (b"", start)
    record = None if quoted else start  # where the current record starts (None: carried in)
    left = stop - start
    while left > 0:
        block = f.read(min(readers.BLOCK_BYTES, left))
        if not block:
            break
        left -= len(block)
        newlines += block.count(b"\n")
        data += block
        ends = readers.scan_csv(data).ends
        if not ends.size:
            continue
        after = ends.astype(np.int64) + data_at + 1  # the offset after each record's newline
        if record is None:  # the carried-in record ends: the first record of the range starts
            first = record = int(after[0])
            lines_before_first = data[: int(ends[0]) + 1].count(b"\n")
            after = after[1:]
        if after.size:
            longest = max(longest, int(np.diff(after, prepend=record).max()))
            record = int(after[-1])
        cut = int(ends[-1]) + 1
        data, data_at = data[cut:], data_at + cut
    if stop == start:
        first = None
    tail = stop - record if record is not None else 0
    is_open = bool(data) and readers.scan_csv(data).open_at is not None
    return Scan(first, lines_before_first, tail, longest, is_open), newlines
