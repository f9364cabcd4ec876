"""Batched readers: a source file in, typed Arrow record batches and rejected rows out.

Every reader yields `Chunk`s. A chunk's batch holds only rows that were read cleanly; the rows that
could not be read are in `rejected`, each with the file, the line, the reason and the raw text.
The hot path is vectorised (numpy over raw bytes, pyarrow for parsing and casting); Python touches
single rows only for the rows that fail.
"""

from __future__ import annotations

import io
import json
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_pipeline.core.errors import ConfigError, DataError
from beam_pipeline.io.raw_inputs import to_numbers

T = TypeVar("T")
BLOCK_BYTES = 8 << 20
MAX_RECORD_BYTES = 64 << 20  # a quoted field still open after this many bytes never closes
BOM = b"\xef\xbb\xbf"
ARROW_TYPES = {"int": pa.int64(), "float": pa.float64(), "string": pa.string()}


@dataclass
class Rejected:
    file: str
    line: int
    reason: str
    raw: str

    def to_json(self) -> str:
        return json.dumps(self.__dict__, ensure_ascii=False)


@dataclass
class Chunk:
    batch: pa.RecordBatch
    rejected: list[Rejected] = field(default_factory=list)
    # read_csv(number_text=True): the file's own text of int and float columns whose values are
    # all plain numbers (`beam_pipeline.io.number_text`), as string arrays beside ``batch``
    number_texts: dict[str, pa.Array] = field(default_factory=dict)


def read_ahead(chunks: Iterable[T], depth: int = 2) -> Iterator[T]:
    """The same items, produced on a background thread while the caller works on the previous one.

    Parsing (numpy and pyarrow, which release the GIL) then overlaps with encoding or scoring. An
    error in the producer is raised here, in the caller's thread.
    """
    q: queue.Queue[tuple[T | None, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[T | None, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False  # the consumer went away

    def work() -> None:
        try:
            for chunk in chunks:
                if not put((chunk, None)):
                    return
            put((None, None))
        except BaseException as exc:  # handed to the consuming thread
            put((None, exc))

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while True:
            chunk, error = q.get()
            if error is not None:
                raise error
            if chunk is None:
                return
            yield chunk
    finally:
        stop.set()
        thread.join()


def match_files(pattern: str) -> list[str]:
    """The files a path or glob names, sorted (any filesystem Beam knows; none: [])."""
    try:
        [result] = FileSystems.match([pattern])
    except Exception:  # noqa: BLE001 - Beam raises BeamIOError for "no match" on some filesystems
        return []
    return sorted(m.path for m in result.metadata_list if not m.path.endswith("/"))


def columns_of(files: list[str], fmt: str, infer_csv_types: bool = True) -> dict[str, str]:
    """Column names (in file order) and reader types of files that share one layout.

    CSV headers must all match the first file's; CSV types come from a sample of the first file
    (or are all strings when ``infer_csv_types`` is false); Parquet from its schema, JSON Lines
    from a sample.
    """
    first = files[0]
    if fmt == "csv":
        names = csv_header(first)
        for f in files[1:]:
            other = csv_header(f)
            if other != names:
                raise DataError(f"{f}:1: header {other} differs from {first}'s {names}")
        return csv_sample_types(first, names) if infer_csv_types else dict.fromkeys(names, "string")
    if fmt == "parquet":
        return parquet_columns(first)
    if fmt == "jsonl":
        return jsonl_columns(first)
    raise ValueError(f"no column reader for format {fmt!r}")


def _open(path: str) -> Any:
    return FileSystems.open(path, compression_type="auto")


def open_uncompressed(path: str) -> Any:
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def open_range(path: str, start: int, end: int) -> io.BufferedReader:
    """Bytes ``[start, end)`` of an uncompressed file, as a file of their own."""
    return io.BufferedReader(RangeFile(open_uncompressed(path), start, end), buffer_size=1 << 20)


class RangeFile(io.RawIOBase):
    """``[start, end)`` of a seekable file, as a file of its own (for `io.BufferedReader`)."""

    def __init__(self, f: Any, start: int, end: int) -> None:
        super().__init__()
        f.seek(start)
        self._f = f
        self._left = end - start

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._left <= 0:
            return 0
        data = self._f.read(min(len(buffer), self._left))
        buffer[: len(data)] = data
        self._left -= len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._f.close()
        super().close()


def _open_range(path: str, byte_range: tuple[int, int, int] | None) -> Any:
    """The whole file, or bytes ``[start, end)`` of it as a file of their own."""
    if byte_range is None:
        return _open(path)
    return open_range(path, byte_range[0], byte_range[1])


# ---------------------------------------------------------------------------------------------
# CSV


def csv_header(path: str) -> list[str]:
    """The column names of a CSV file (its first record; a UTF-8 byte-order mark is dropped)."""
    with _open(path) as f:
        first = f.readline()
    first = first.removeprefix(BOM)
    if not first.strip():
        raise DataError(f"{path}: empty file (expected a header line)")
    try:
        text = first.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}:1: header is not UTF-8: {exc}") from exc
    names = next(iter(_csv_rows(text)))
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(
                f"{path}:1: the header names column {name!r} twice; every column needs its own "
                "name (rename one in the file)"
            )
        seen.add(name)
    return names


def _csv_rows(text: str) -> Iterator[list[str]]:
    import csv

    return csv.reader(io.StringIO(text))


@dataclass
class Scan:
    """Where the records of a buffer end, as RFC 4180 reads it (see `scan_csv`).

    Attributes:
        ends: offsets of the newlines that end a record (outside quoted fields).
        inside: per byte, True inside a quoted field (None when the buffer has no quotes).
        open_at: offset of a quote that opens a field which does not close in the buffer.
    """

    ends: np.ndarray
    inside: np.ndarray | None
    open_at: int | None


def scan_csv(buf: bytes) -> Scan:
    """Finds the records of ``buf`` (which starts at a record), as pyarrow and Python's csv do.

    A quote opens a quoted field only at the start of a field (after a comma or a newline, or at
    the start); inside one, ``""`` is a quote and a lone quote closes it. A quote anywhere else is
    an ordinary character (``5" screen``). Commas and newlines inside quoted fields do not count.

    The common case is vectorised: quote parity, then a check that every quote the parity calls
    opening starts a field (or continues a ``""``) and every closing one ends it. Only a buffer
    that fails the check (stray quotes) is walked quote by quote.
    """
    arr = np.frombuffer(buf, dtype=np.uint8)
    if b'"' not in buf:  # memchr: most files quote nothing
        return Scan(np.flatnonzero(arr == 10), None, None)
    newline = arr == 10
    quotes = np.flatnonzero(arr == 34)
    opening, closing = quotes[0::2], quotes[1::2]
    before = arr[np.maximum(opening - 1, 0)]
    escaped = np.zeros(len(opening), bool)
    escaped[1:] = closing[: len(opening) - 1] == opening[1:] - 1
    opens_ok = (opening == 0) | (before == 44) | (before == 10) | escaped
    after = np.append(arr, np.uint8(10))[closing + 1]
    closes_ok = (after == 44) | (after == 10) | (after == 13) | (after == 34)
    if opens_ok.all() and closes_ok.all():
        inside = (np.cumsum(arr == 34, dtype=np.uint8) & 1).astype(bool)
        open_at = int(opening[-1]) if len(opening) > len(closing) else None
    else:
        inside, open_at = _walk_quotes(arr, quotes)
    ends = np.flatnonzero(newline & ~inside)
    return Scan(ends, inside, open_at)


def _walk_quotes(arr: np.ndarray, quotes: np.ndarray) -> tuple[np.ndarray, int | None]:
    """The quoted-field mask, one quote at a time (buffers with stray quotes only)."""
    marks = np.zeros(len(arr) + 1, np.int8)
    q = quotes.tolist()
    i, n, open_at = 0, len(q), None
    while i < n:
        start = q[i]
        if start and arr[start - 1] not in (44, 10):
            i += 1  # a quote inside an unquoted field: an ordinary character
            continue
        j = i + 1
        while j < n and j + 1 < n and q[j + 1] == q[j] + 1:
            j += 2  # "" inside a quoted field
        if j >= n:
            open_at = start
            marks[start] += 1
            break
        marks[start] += 1
        marks[q[j]] -= 1
        i = j + 1
    return np.cumsum(marks[:-1]).astype(bool), open_at


def read_csv(
    path: str,
    columns: list[str],
    types: dict[str, str],
    batch_rows: int = 65536,
    byte_range: tuple[int, int, int] | None = None,
    number_text: bool = False,
) -> Iterator[Chunk]:
    """Stream a CSV file (header, RFC 4180 quoting, quoted newlines) as typed record batches.

    Records are found with `scan_csv` (pyarrow's and Python's csv rules), so every row keeps its
    exact line number. Rows with the wrong number of fields, invalid UTF-8 or values that do not
    parse as their column's type are rejected; the rest are parsed by pyarrow in bulk. A quoted
    field that does not close within MAX_RECORD_BYTES (or by the end of the file) rejects the line
    it starts on, and reading resumes at the next line. A chunk is one block of about
    BLOCK_BYTES (``batch_rows`` caps its rows).

    ``byte_range`` ``(start, end, line)``: only the records in those bytes of an uncompressed
    file, the first on line ``line`` (a range from `byte_ranges.plan`).
    ``number_text``: keep the text of plain numbers (`Chunk.number_texts`) where a chunk has
    nothing to reject; the batch is the same.
    """
    with _open_range(path, byte_range) as f:
        if byte_range is None:
            f.readline()  # the header; the caller read the column names from it
        line = 2 if byte_range is None else byte_range[2]  # the line number of the next record
        data = b""
        eof = False
        while True:
            if not eof:
                block = f.read(BLOCK_BYTES)
                eof = not block
                data += block
                if eof and data and not data.endswith(b"\n"):
                    data += b"\n"  # a last record without a newline
            if not data:
                break
            found = scan_csv(data)
            ends = found.ends
            if found.open_at is not None:
                ends = ends[ends < found.open_at]
            pos = 0  # the records before it are parsed (one copy of the rest per block)
            while ends.size:
                take = ends[:batch_rows] - pos
                cut = int(take[-1]) + 1
                body = data[pos : pos + cut]
                inside = found.inside[pos : pos + cut] if found.inside is not None else None
                starts = np.concatenate(([0], take[:-1] + 1))
                # without quotes every newline ends a record
                newlines = len(take) if inside is None else body.count(b"\n")
                if newlines == len(take):  # no quoted newlines: one line per record
                    lines = line + np.arange(len(take))
                else:  # a record's line = the first line + the newlines before its first byte
                    at = np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == 10)
                    lines = line + np.searchsorted(at, starts)
                line += newlines
                yield _parse_csv(
                    path, body, inside, starts, take, lines, columns, types, number_text
                )
                ends = ends[batch_rows:]
                pos += cut
            data = data[pos:]
            if found.open_at is not None:
                found.open_at -= pos
            if found.open_at is None:
                if eof:
                    break
                continue  # a partial record (or nothing) is left: read on
            if not eof and len(data) < MAX_RECORD_BYTES:
                continue  # the quoted field may close in the next block
            # A quoted field that never closes: reject its first line, resynchronise after it.
            reason = "unterminated quoted field (no closing quote"
            reason += (
                " before the end of the file)" if eof else f" within {MAX_RECORD_BYTES} bytes)"
            )
            first = data.find(b"\n") + 1
            raw = data[: min(first or len(data), 10000)].decode("utf-8", "replace")
            while not first and not eof:  # that line is longer still: skip to its end
                data = f.read(BLOCK_BYTES)
                eof = not data
                first = data.find(b"\n") + 1
            yield Chunk(
                _empty_batch(columns, types), [Rejected(path, line, reason, raw.rstrip("\r\n"))]
            )
            data = data[first:] if first else b""
            line += 1


def _parse_csv(
    path: str,
    body: bytes,
    inside: np.ndarray | None,
    starts: np.ndarray,
    ends: np.ndarray,
    lines: np.ndarray,
    columns: list[str],
    types: dict[str, str],
    number_text: bool = False,
) -> Chunk:
    ncols = len(columns)
    if ncols > 1 and b"\r" not in body and not (ends == starts).any():
        # The common case without counting fields: pyarrow refuses a record with the wrong
        # number of fields, so a typed read without error and with one row per record has
        # nothing to reject. A blank line (pyarrow makes it a row of nulls) or a carriage
        # return (a lone one ends a record for pyarrow but not for the line count) takes the
        # exact path.
        if number_text:
            batch, texts = _typed_batch_and_texts(body, columns, types)
        else:
            batch, texts = _typed_batch(body, columns, types), {}
        if batch is not None and batch.num_rows == len(ends):
            return Chunk(batch, [], texts)
    arr = np.frombuffer(body, dtype=np.uint8)
    # Fields per record: commas outside quoted fields + 1, counted per record with one bincount.
    comma = arr == 44
    commas = np.flatnonzero(comma & ~inside if inside is not None else comma)
    fields = np.bincount(np.searchsorted(ends, commas), minlength=len(ends)) + 1
    lengths = ends - starts
    blank = (lengths == 0) | ((lengths == 1) & (arr[np.maximum(ends - 1, 0)] == 13))
    bad = (fields != ncols) & ~blank
    rejected: list[Rejected] = []
    for i in np.flatnonzero(bad):
        raw = body[starts[i] : ends[i]].decode("utf-8", "replace").rstrip("\r")
        rejected.append(
            Rejected(path, int(lines[i]), f"expected {ncols} fields; received {fields[i]}", raw)
        )
    # A carriage return not followed by a newline, outside quotes, ends a record for pyarrow
    # (and Python's csv) but not for the line count: such a record is rejected (it made a
    # phantom row, or failed the whole read).
    cr = np.flatnonzero(arr == 13)
    if cr.size:
        lone = cr[arr[cr + 1] != 10]  # the body ends with a newline: cr + 1 is in it
        if inside is not None:
            lone = lone[~inside[lone]]
        stray = np.zeros(len(ends), bool)
        stray[np.searchsorted(ends, lone)] = True
        stray &= ~bad & ~blank
        for i in np.flatnonzero(stray):
            raw = body[starts[i] : ends[i]].decode("utf-8", "replace").rstrip("\r")
            reason = "a carriage return inside an unquoted field (quote the field)"
            rejected.append(Rejected(path, int(lines[i]), reason, raw))
        bad |= stray
    keep = ~bad & ~blank
    if not keep.all():
        body = b"".join(body[starts[i] : ends[i] + 1] for i in np.flatnonzero(keep))
        starts, ends, lines = _packed(starts[keep], ends[keep]) + (lines[keep],)
    # Invalid UTF-8 is rare: check the whole chunk at C speed, find the rows only if it fails.
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        good = np.ones(len(starts), bool)
        for i, (s, e) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
            try:
                body[s : e + 1].decode("utf-8")
            except UnicodeDecodeError as exc:
                good[i] = False
                raw = body[s:e].decode("utf-8", "replace").rstrip("\r")
                rejected.append(
                    Rejected(path, int(lines[i]), f"invalid UTF-8 at byte {exc.start}", raw)
                )
        body = b"".join(body[s : e + 1] for s, e in zip(starts[good], ends[good], strict=True))
        starts, ends, lines = _packed(starts[good], ends[good]) + (lines[good],)
    if not body:
        return Chunk(_empty_batch(columns, types), rejected)
    batch = _typed_batch(body, columns, types)
    if batch is not None:
        return Chunk(batch, rejected)
    # some value does not parse: read strings and find the rows
    read_options = pacsv.ReadOptions(column_names=columns, block_size=max(len(body) + 1, 1 << 20))
    parse_options = pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False)
    table = pacsv.read_csv(
        io.BytesIO(body),
        read_options=read_options,
        parse_options=parse_options,
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in columns},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    batch, bad_rows = _type_columns(table, types)
    rejected.extend(
        Rejected(
            path, int(lines[i]), reason, body[starts[i] : ends[i]].decode("utf-8").rstrip("\r")
        )
        for i, reason in bad_rows.items()
    )
    return Chunk(batch, rejected)


def _typed_batch(body: bytes, columns: list[str], types: dict[str, str]) -> pa.RecordBatch | None:
    """The records of ``body`` typed by pyarrow itself ("" and blank text are missing values);
    None when a value does not parse as its column's type (or a record is malformed)."""
    try:
        table = pacsv.read_csv(
            io.BytesIO(body),
            read_options=pacsv.ReadOptions(
                column_names=columns, block_size=max(len(body) + 1, 1 << 20)
            ),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types={c: ARROW_TYPES[types.get(c, "string")] for c in columns},
                null_values=[""],
                strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid:
        return None
    return _null_blank_strings(table.combine_chunks().to_batches()[0])


def _typed_batch_and_texts(
    body: bytes, columns: list[str], types: dict[str, str]
) -> tuple[pa.RecordBatch | None, dict[str, pa.Array]]:
    """`_typed_batch` and the text of its int and float columns: read as strings and typed by
    `number_text.parse_plain` when every value is plain. Another text in any of them: the
    typed read, and no texts."""
    from beam_pipeline.io.number_text import parse_plain

    numeric = {c: types[c] for c in columns if types.get(c) in ("int", "float")}
    if not numeric:
        return _typed_batch(body, columns, types), {}
    try:
        table = pacsv.read_csv(
            io.BytesIO(body),
            read_options=pacsv.ReadOptions(
                column_names=columns, block_size=max(len(body) + 1, 1 << 20)
            ),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types={
                    c: pa.string() if c in numeric else ARROW_TYPES[types.get(c, "string")]
                    for c in columns
                },
                null_values=[""],
                strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid:
        return None, {}
    if not table.num_rows:
        return _typed_batch(body, columns, types), {}
    read = table.combine_chunks().to_batches()[0]
    texts = {c: read.column(c) for c in numeric}
    arrays = []
    for name in columns:
        if name not in numeric:
            arrays.append(read.column(name))
            continue
        typed = parse_plain(texts[name], numeric[name] == "int")
        if typed is None:
            return _typed_batch(body, columns, types), {}
        arrays.append(typed)
    batch = pa.RecordBatch.from_arrays(arrays, names=columns)
    return _null_blank_strings(batch), texts


def _packed(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the same records laid end to end (after others were dropped)."""
    size = ends - starts + 1
    new_ends = np.cumsum(size) - 1
    return new_ends - size + 1, new_ends


def _null_blank_strings(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Whitespace-only strings are missing values, as on the slow path (one null rule)."""
    arrays = []
    for col in batch.columns:
        if pa.types.is_string(col.type) and len(col):
            blank = pc.fill_null(pc.utf8_is_space(col), False)
            if pc.any(blank).as_py():
                col = pc.if_else(blank, pa.scalar(None, pa.string()), col)
        arrays.append(col)
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def _empty_batch(columns: list[str], types: dict[str, str]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array([], ARROW_TYPES[types.get(c, "string")]) for c in columns], names=columns
    )


def _type_columns(table: pa.Table, types: dict[str, str]) -> tuple[pa.RecordBatch, dict[int, str]]:
    """Cast string columns to their types; empty strings become nulls (missing values).

    Returns the batch of good rows and, for each row whose value did not parse, the reason
    (naming the column and the value).
    """
    n = table.num_rows
    arrays: dict[str, pa.Array] = {}
    bad = np.zeros(n, dtype=bool)
    reasons: dict[int, str] = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        kind = types.get(name, "string")
        if pa.types.is_string(col.type):
            stripped = pc.utf8_trim_whitespace(col)
            col = pc.if_else(pc.equal(stripped, ""), pa.scalar(None, pa.string()), col)
            if kind != "string":
                col = pc.if_else(pc.is_null(col), col, stripped)
        target = ARROW_TYPES[kind]
        if col.type == target:
            arrays[name] = col
            continue
        try:
            arrays[name] = pc.cast(col, target)
            continue
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        # A chunk with a value the plain cast refuses ("5.0" or an out-of-range int in an int
        # column, "abc" in a number column): type it from its text, never through float, and
        # reject the rows whose value does not fit.
        typed, invalid = to_numbers(col, kind)
        for i in np.flatnonzero(invalid & ~bad):
            reasons[int(i)] = f"column {name!r}: expected {kind}; received {col[int(i)].as_py()!r}"
        bad |= invalid
        arrays[name] = typed
    batch = pa.RecordBatch.from_arrays(
        [arrays[c] for c in table.column_names], names=table.column_names
    )
    if bad.any():
        batch = batch.filter(pa.array(~bad))
    return batch, reasons


def _rows_as_text(table: pa.Table) -> list[str]:
    return [json.dumps(row, default=str) for row in table.to_pylist()]


# ---------------------------------------------------------------------------------------------
# JSON Lines, Parquet, TFRecord


def read_jsonl(
    path: str,
    columns: list[str],
    types: dict[str, str],
    batch_rows: int = 65536,
    byte_range: tuple[int, int, int] | None = None,
) -> Iterator[Chunk]:
    """Stream JSON Lines: parsed by pyarrow in bulk; a chunk that fails is re-read line by line.

    ``byte_range`` ``(start, end, line)``: only those bytes, as in `read_csv`.
    """
    with _open_range(path, byte_range) as f:
        line_no = 1 if byte_range is None else byte_range[2]
        while True:
            lines = f.readlines(BLOCK_BYTES)
            if not lines:
                break
            start = line_no
            line_no += len(lines)
            rows: list[dict[str, Any]] = []
            rejected: list[Rejected] = []
            body = b"".join(lines)
            try:
                table = json_table(body)
                if any(  # pyarrow reads an int past int64 as a float: exact on the slow path
                    pa.types.is_floating(table.schema.field(c).type)
                    for c in columns
                    if c in table.column_names and types.get(c, "string") != "float"
                ):
                    raise pa.ArrowInvalid("a float where no float column is")
                lines_of_rows = start + _nonblank_lines(body)
                yield _conform(table, columns, types, path, lines_of_rows, rejected)
                continue
            except pa.ArrowInvalid:
                pass
            good_lines = json_objects(lines, path, start, rows, rejected)
            table = _table_of(rows) if rows else pa.table({})
            yield _conform(table, columns, types, path, np.array(good_lines), rejected)


def json_objects(
    lines: Iterable[bytes],
    path: str,
    first_line: int,
    rows: list[dict[str, Any]],
    rejected: list[Rejected],
    max_raw: int | None = None,
) -> list[int]:
    """JSON Lines read one line at a time (when pyarrow refused the block): each object is
    appended to ``rows``, each line that is not one to ``rejected`` (the file, its line number,
    the reason and the line, cut to ``max_raw`` characters when given); blank lines are skipped.
    Returns the line numbers of ``rows``."""
    numbers: list[int] = []
    for i, raw in enumerate(lines, start=first_line):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
            if not isinstance(obj, dict):
                raise ValueError("expected a JSON object")
            rows.append(obj)
            numbers.append(i)
        except (ValueError, UnicodeDecodeError) as exc:
            text = raw.decode("utf-8", "replace").rstrip("\n")
            rejected.append(Rejected(path, i, f"invalid JSON: {exc}", text[:max_raw]))
    return numbers


_PADDING = np.array([32, 9, 13], dtype=np.uint8)  # what may precede a line's first character


def _lines(body: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each line of ``body``: where it starts, where it stops (its newline or the end), and its
    first byte that is not a space, tab or CR (10, a newline, for a blank line).

    Column-wise: one pass for the newlines; only a line starting with padding is looked at in
    Python (``body.strip()``, a regex or a cumulative sum over every byte cost 15-25 s on a
    600 MB log segment)."""
    arr = np.frombuffer(body, dtype=np.uint8)
    ends = np.flatnonzero(arr == 10)
    starts = np.concatenate(([0], ends + 1))
    stops = np.concatenate((ends, [len(arr)]))
    first = np.full(len(starts), 10, dtype=np.uint8)
    filled = stops > starts
    first[filled] = arr[starts[filled]]
    for i in np.flatnonzero(np.isin(first, _PADDING)):
        rest = body[starts[i] : stops[i]].lstrip(b" \t\r")
        first[i] = rest[0] if rest else 10
    return starts, stops, first


def _nonblank_lines(body: bytes) -> np.ndarray:
    """0-based indexes of the lines of ``body`` that hold more than whitespace."""
    return np.flatnonzero(_lines(body)[2] != 10)


JSON_BLOCK_ROWS = 50_000  # pyarrow's JSON parser refuses 100,000 rows in one block


def json_table(body: bytes) -> pa.Table:
    """JSON Lines bytes as a table, one row per line, or `pa.ArrowInvalid` (the caller then
    reads line by line).

    Read in blocks of about `JSON_BLOCK_ROWS` lines (pyarrow 10 refuses 100,000 rows in one
    block), never smaller than twice the longest line: with pyarrow's default 1 MiB blocks a line
    straddling two blocks fails the read, and pyarrow can then deadlock on the GIL or abort at
    exit while its reader threads let go of the buffer (a 50 MB line hung for good). Only bytes
    whose every non-blank line starts with ``{`` reach pyarrow 10, and its row count must be
    theirs: it crashes the process on a file of ``null`` lines and reads a line such as ``}1``
    as no row at all (found by tests/fuzz). Used by ingest's JSON Lines reader and by monitor's
    prediction-log reader.
    """
    starts, stops, first = _lines(body)
    nonblank = first != 10
    if (first[nonblank] != ord("{")).any():
        raise pa.ArrowInvalid("a line that is not a JSON object")
    rows = int(nonblank.sum())
    longest = int((stops - starts).max()) + 1  # with its newline
    block = max(len(body) * JSON_BLOCK_ROWS // max(rows, 1), 2 * longest + 1, 1 << 16)
    options = pajson.ReadOptions(block_size=min(block, len(body) + 1))
    table = pajson.read_json(pa.BufferReader(pa.py_buffer(body)), read_options=options)
    if table.num_rows != rows:
        raise pa.ArrowInvalid("pyarrow read a different number of rows than lines")
    return table


def _table_of(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows as a table; a column whose values mix types (``7`` and ``"seven"``) as text, so that
    the typing step rejects the rows that do not parse instead of failing the chunk."""
    # Column by column over every row's keys: pyarrow 10's Table.from_pylist takes the columns
    # of the first row only (a key missing there was dropped from every row) and counts no rows
    # when they have no keys (found by tests/fuzz).
    names = list(dict.fromkeys(k for r in rows for k in r))
    if not names:  # only {} rows: no column, but the rows count
        return pa.table({"": pa.nulls(len(rows))})
    arrays = []
    for name in names:
        values = [r.get(name) for r in rows]
        try:
            arrays.append(pa.array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # overflow: past int64
            text = [v if v is None or isinstance(v, str) else json.dumps(v) for v in values]
            arrays.append(pa.array(text, pa.string()))
    return pa.Table.from_arrays(arrays, names=names)


def _conform(
    table: pa.Table,
    columns: list[str],
    types: dict[str, str],
    path: str,
    lines: np.ndarray,
    rejected: list[Rejected],
) -> Chunk:
    """Select and order the expected columns (missing ones as nulls), then cast to their types."""
    n = table.num_rows
    arrays = []
    for c in columns:
        if c in table.column_names:
            col = table.column(c).combine_chunks()
            if types.get(c, "string") == "string" and not pa.types.is_string(col.type):
                col = pc.cast(col, pa.string())
            arrays.append(col)
        else:
            arrays.append(pa.nulls(n, ARROW_TYPES[types.get(c, "string")]))
    t = pa.Table.from_arrays(arrays, names=columns)
    batch, bad = _type_columns(t, types)
    if bad:
        raws = _rows_as_text(t.take(pa.array(list(bad))))
        rejected = rejected + [
            Rejected(path, int(lines[i]), reason, raw)
            for (i, reason), raw in zip(bad.items(), raws, strict=True)
        ]
    return Chunk(batch, rejected)


def read_parquet(
    path: str, columns: list[str], types: dict[str, str], batch_rows: int = 65536
) -> Iterator[Chunk]:
    """Stream a Parquet file by row groups; "line" in a rejection is the 1-based row number."""
    with _open(path) as f:
        pf = pq.ParquetFile(f)
        row = 1
        for batch in pf.iter_batches(batch_size=batch_rows):
            table = pa.Table.from_batches([batch])
            lines = np.arange(row, row + table.num_rows)
            row += table.num_rows
            yield _conform(table, columns, types, path, lines, [])


def read_tfrecord(
    path: str, columns: list[str], types: dict[str, str], batch_rows: int = 65536
) -> Iterator[Chunk]:
    """Stream a TFRecord file of tf.Examples (``.gz``: gzip) in batches, decoded by tfx_bsl's
    `ExamplesToRecordBatchDecoder` into the same typed columns as the other formats. "line" in
    a rejection is the 1-based record number. A record that is not a tf.Example, or a feature
    with more than one value, is rejected (the raw record is kept base64-encoded); a damaged
    file (bad framing or checksum) fails with its name."""
    import base64

    import tensorflow as tf
    from tfx_bsl.coders.example_coder import ExamplesToRecordBatchDecoder

    from beam_pipeline.io import filesystem

    filesystem.enable_tensorflow(path)
    decoder = ExamplesToRecordBatchDecoder()
    compression = "GZIP" if path.endswith(".gz") else ""
    dataset = tf.data.TFRecordDataset(path, compression_type=compression).batch(batch_rows)
    first = 1
    try:
        for tensor in dataset:
            records = tensor.numpy().tolist()
            lines = np.arange(first, first + len(records))
            first += len(records)
            rejected: list[Rejected] = []
            try:
                decoded = decoder.DecodeBatch(records)
            except RuntimeError:  # some record is not a tf.Example: find which (rare path)
                good = []
                for i, record in enumerate(records):
                    try:
                        decoder.DecodeBatch([record])
                        good.append(i)
                    except RuntimeError:
                        raw = base64.b64encode(record[:10000]).decode()
                        rejected.append(
                            Rejected(path, int(lines[i]), "not a serialized tf.Example", raw)
                        )
                lines = lines[good]
                decoded = decoder.DecodeBatch([records[i] for i in good])
            table, bad = _scalar_columns(decoded)
            if bad:
                keep = np.ones(table.num_rows, bool)
                for i, reason in bad.items():
                    keep[i] = False
                    raw = base64.b64encode(records[i][:10000]).decode()
                    rejected.append(Rejected(path, int(lines[i]), reason, raw))
                table, lines = table.filter(pa.array(keep)), lines[keep]
            yield _conform(table, columns, types, path, lines, rejected)
    except tf.errors.DataLossError as exc:
        raise DataError(f"{path}: damaged TFRecord file: {exc.message}") from None


def _scalar_columns(decoded: pa.RecordBatch) -> tuple[pa.Table, dict[int, str]]:
    """tfx_bsl's list columns as one value per row (an empty or absent list is missing);
    (table, {row: reason} for rows with a feature holding several values)."""
    arrays = []
    bad: dict[int, str] = {}
    for name, col in zip(decoded.schema.names, decoded.columns, strict=True):
        lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(lengths > 1):
            bad.setdefault(int(i), f"column {name!r}: expected one value; received {lengths[i]}")
        values = pc.list_element(
            pc.if_else(pa.array(lengths == 1), col, pa.scalar(None, col.type)), 0
        )
        if pa.types.is_large_binary(values.type) or pa.types.is_binary(values.type):
            try:
                values = pc.cast(values, pa.string())
            except pa.ArrowInvalid:  # invalid UTF-8 somewhere: replaced, as CSV text is read
                text = [None if v is None else v.decode("utf-8", "replace") for v in values]
                values = pa.array(text, pa.string())
        elif pa.types.is_floating(values.type):
            values = pc.cast(values, pa.float64())
        arrays.append(values)
    return pa.Table.from_arrays(arrays, names=decoded.schema.names), bad


def parquet_columns(path: str) -> dict[str, str]:
    with _open(path) as f:
        schema = pq.ParquetFile(f).schema_arrow
    out = {}
    for fld in schema:
        t = fld.type
        out[fld.name] = (
            "int" if pa.types.is_integer(t) else "float" if pa.types.is_floating(t) else "string"
        )
    return out


def jsonl_columns(path: str, sample_lines: int = 10000) -> dict[str, str]:
    with _open(path) as f:
        lines = [ln for _, ln in zip(range(sample_lines), f, strict=False) if ln.strip()]
    rows = []
    for ln in lines:
        try:
            obj = json.loads(ln)
        except ValueError:
            continue
        if isinstance(obj, dict):
            rows.append(obj)
    names: dict[str, None] = {}
    for r in rows:
        names.update(dict.fromkeys(r))
    return infer_types({n: [r.get(n) for r in rows] for n in names})


def infer_types(samples: dict[str, list[Any]]) -> dict[str, str]:
    """Each column's kind from sample values (JSON values or text), by `infer_kind`."""
    out = {}
    for name, values in samples.items():
        text = [
            v if v is None or isinstance(v, str) else json.dumps(v, default=str) for v in values
        ]
        out[name] = infer_kind(pa.array(text, pa.string()))
    return out


_STRICT_INT = r"^[+-]?[0-9]+$"
_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$|^[+-]?(inf|infinity|nan)$"


def infer_kind(sample: pa.Array) -> str:
    """The majority type of a text column's sample (blank = missing): a number column when more
    than half of its non-empty values are numbers (int when every one of those is a whole
    number written without a point, else float), otherwise string. Values that do not fit
    the inferred type are rejected when read, wherever they sit in the file, rather than
    changing the column's type (one ``"n/a"`` in a fare column no longer makes it text)."""
    text = pc.utf8_trim_whitespace(sample)
    present = pc.fill_null(pc.not_equal(text, ""), False)
    n = pc.sum(present).as_py() or 0
    if n == 0:
        return "string"
    numbers = pc.and_(present, pc.match_substring_regex(text, _NUMBER, ignore_case=True))
    count = pc.sum(pc.fill_null(numbers, False)).as_py() or 0
    if 2 * count <= n:
        return "string"
    ints = pc.fill_null(pc.and_(numbers, pc.match_substring_regex(text, _STRICT_INT)), False)
    return "int" if pc.sum(ints).as_py() == count else "float"


def csv_sample_types(path: str, columns: list[str], sample_rows: int = 20000) -> dict[str, str]:
    """Column types inferred from the first rows of a CSV file: each column's majority type
    (`infer_kind`); a column that is empty in the whole sample is a string.
    """
    with _open(path) as f:
        f.readline()
        data = f.read(BLOCK_BYTES)
        ends = scan_csv(data).ends
        if not ends.size and len(data) == BLOCK_BYTES:  # the first record is longer than a block
            data += f.read(MAX_RECORD_BYTES - BLOCK_BYTES)
            ends = scan_csv(data).ends
            if not ends.size and f.read(1):
                # No record ends within MAX_RECORD_BYTES: nothing whole to sample (the reader
                # reads such a record as one row, or rejects its line if a quote never closes).
                return dict.fromkeys(columns, "string")
    if not data.strip():
        return dict.fromkeys(columns, "string")
    if ends.size:
        data = data[: int(ends[min(sample_rows, ends.size) - 1]) + 1]
    # One block holding the whole sample, read on this thread: with the default 1 MiB block a
    # record straddling two blocks fails the read, and pyarrow then deadlocks on the GIL while
    # its reader thread lets go of the Python buffer (a 5 MB field hung ingest for good).
    table = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(
            column_names=columns, encoding="latin-1", block_size=len(data) + 1, use_threads=False
        ),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=_skip),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(columns, pa.string()),
            null_values=[""],
            strings_can_be_null=True,
        ),
    )
    return {name: infer_kind(table.column(name).combine_chunks()) for name in columns}


def _skip(row: Any) -> str:
    return "skip"
