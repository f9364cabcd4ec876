"""Property-based fuzzing of the CSV and JSON Lines readers (issue 21), in a fixed time budget
(`tests.fuzz.budget`: ``FUZZ_SECONDS``, 15 s per test by default).

Generated files vary quoting, embedded newlines and CRLF, quotes, commas, wide fields, row widths,
encodings (UTF-8, a BOM, Latin-1 bytes that are invalid UTF-8), and the reader's block size and
batch size (so records straddle blocks). On every file, every row is checked against Python's csv
(and pyarrow where the file is valid) or Python's json, every rejected row by its line and
reason, rows in = rows out + rejected, and a read as byte ranges equals the sequential one.
Malformed bytes (unterminated quotes, NUL, stray CR) must be read to the end without a hang.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
from hypothesis import given
from hypothesis import strategies as st

from beam_pipeline.io import readers
from tests.fuzz.budget import ROUND, keep_looking, spent
from tests.io.test_byte_ranges import _split_read, _whole_read

CHARS = st.sampled_from(list('ab ,"\n\r\t.-0é€\u2028x'))
FIELD = st.one_of(
    st.text(CHARS, max_size=12),
    st.builds(lambda c, n: c * n, st.sampled_from(list('x",\né')), st.integers(0, 3000)),
)
BLOCKS = st.sampled_from([16, 64, 256, 4096, 8 << 20])


@contextmanager
def block_bytes(size: int) -> Iterator[None]:
    saved = readers.BLOCK_BYTES
    readers.BLOCK_BYTES = size
    try:
        yield
    finally:
        readers.BLOCK_BYTES = saved


def within(seconds: float, fn: Callable[[], Any]) -> Any:
    """fn() on a daemon thread: a hang fails the test instead of hanging the suite."""
    box: list[Any] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            box.append(fn())
        except BaseException as exc:  # noqa: BLE001 - re-raised on the test's thread
            errors.append(exc)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(seconds)
    if errors:
        raise errors[0]
    assert box, f"no answer within {seconds} s (hung)"
    return box[0]


def missing(value: str | None) -> str | None:
    return None if value is None or not value.strip() else value


def same_rejections(got: list[tuple[int, str]], want: list[tuple[int, str]]) -> bool:
    """The same lines, each reason starting with the expected one."""
    got, want = sorted(got), sorted(want)
    return len(got) == len(want) and all(
        g[0] == w[0] and g[1].startswith(w[1]) for g, w in zip(got, want, strict=True)
    )


# ---------------------------------------------------------------------------------------------
# CSV written by Python's csv: every row against Python's csv and pyarrow


@st.composite
def csv_files(draw: st.DrawFn) -> dict[str, Any]:
    ncols = draw(st.integers(1, 4))
    width = st.integers(0, ncols + 1)
    rows = draw(
        st.lists(width.flatmap(lambda n: st.lists(FIELD, min_size=n, max_size=n)), max_size=30)
    )
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1"]))
    header = ",".join(f"c{i}" for i in range(ncols)) + newline
    data = header.encode("utf-8-sig" if encoding == "utf-8-sig" else "utf-8")
    records: list[tuple[int, bytes, list[str]]] = []  # (line, bytes, fields) of each record
    line = 2
    for row in rows:
        out = io.StringIO()
        csv.writer(out, quoting=quoting, lineterminator=newline).writerow(row)
        raw = out.getvalue().encode("utf-8" if encoding != "latin-1" else "latin-1", "replace")
        records.append((line, raw, row))
        data += raw
        line += raw.count(b"\n")
    return {
        "ncols": ncols,
        "data": data,
        "records": records,
        "block": draw(BLOCKS),
        "batch_rows": draw(st.integers(1, 50)),
    }


def expected_csv(ncols: int, records: list[tuple[int, bytes, list[str]]]) -> tuple[list, list]:
    """Rows and (line, reason) rejections, one record at a time: the fields as written, then as
    Python's csv reads the record's bytes back.

    One rule of ours: a carriage return that is not part of a line end, outside quotes, rejects
    the record (Python's csv writer leaves it unquoted when lines end with \n alone, and then
    pyarrow and Python's csv reader split the record there).
    """
    rows, rejected = [], []
    for line, raw, fields in records:
        if not fields or raw in (b"\n", b"\r\n"):
            continue  # a blank line (a lone "\r" written unquoted reads as a CRLF line end)
        if len(fields) != ncols:
            rejected.append((line, f"expected {ncols} fields; received {len(fields)}"))
            continue
        if has_a_stray_carriage_return(raw, fields):
            rejected.append((line, "a carriage return inside an unquoted field"))
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            rejected.append((line, "invalid UTF-8"))
            continue
        [fields] = list(csv.reader(io.StringIO(text, newline="")))
        rows.append([missing(f) for f in fields])
    return rows, rejected


def has_a_stray_carriage_return(raw: bytes, fields: list[str]) -> bool:
    """An unquoted field holds a carriage return that is not a line end's. A last field ending in
    one, written unquoted before the writer's "\n", makes the bytes "\r\n": a CRLF line end
    (every reader, Python's csv too, reads the field without it)."""
    for i, f in enumerate(fields):
        if "\r" not in f or raw_is_quoted(raw, f):
            continue
        if i == len(fields) - 1 and f.find("\r") == len(f) - 1 and raw.endswith(b"\r\n"):
            continue
        return True
    return False


def raw_is_quoted(raw: bytes, field: str) -> bool:
    """Whether the writer quoted ``field`` in ``raw`` (it did if the quoted form is there)."""
    quoted = '"' + field.replace('"', '""') + '"'
    return quoted.encode("utf-8", "replace") in raw or quoted.encode("latin-1", "replace") in raw


@given(csv_files())
@ROUND
def csv_rows_match(case: dict[str, Any]) -> None:
    if spent():
        return
    ncols, data = case["ncols"], case["data"]
    columns = [f"c{i}" for i in range(ncols)]
    types = dict.fromkeys(columns, "string")
    want_rows, want_rejected = expected_csv(ncols, case["records"])
    with tempfile.TemporaryDirectory() as folder, block_bytes(case["block"]):
        path = Path(folder) / "f.csv"
        path.write_bytes(data)
        assert readers.csv_header(str(path)) == columns
        within(30, lambda: readers.csv_sample_types(str(path), columns))
        got: dict[str, list[Any]] = {c: [] for c in columns}
        rejected = []
        for chunk in within(
            60, lambda: list(readers.read_csv(str(path), columns, types, case["batch_rows"]))
        ):
            for c in columns:
                got[c] += chunk.batch.column(c).to_pylist()
            rejected += [(r.line, r.reason) for r in chunk.rejected]
        rows = [list(r) for r in zip(*(got[c] for c in columns), strict=True)] if columns else []
        assert rows == want_rows
        assert same_rejections(rejected, want_rejected), (rejected, want_rejected)
        records = sum(1 for _, raw, fields in case["records"] if fields and raw.strip(b"\r\n"))
        assert len(rows) + len(rejected) == records  # rows in = rows out + rejected
        if not want_rejected:  # a valid file: pyarrow reads the same rows
            table = pacsv.read_csv(
                io.BytesIO(data),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(columns, pa.string()), strings_can_be_null=False
                ),
            )
            arrow = [[missing(v) for v in r.values()] for r in table.to_pylist()]
            assert arrow == rows
        whole = _whole_read(path, "csv", types)
        assert _split_read(path, "csv", types, 3)["rows"] == whole["rows"]


# ---------------------------------------------------------------------------------------------
# Malformed CSV bytes: read to the end, accounted for, the same as byte ranges


@given(
    st.lists(
        st.one_of(
            st.sampled_from([b"a", b"1", b",", b'"', b"\n", b"\r", b" ", b"\xe9", b"\x00", b'""']),
            st.builds(
                lambda c, n: c * n, st.sampled_from([b"x", b'"', b"\n"]), st.integers(0, 5000)
            ),
        ),
        max_size=300,
    ).map(b"".join),
    BLOCKS,
    st.integers(1, 3),
)
@ROUND
def malformed_csv_is_read_to_the_end(body: bytes, block: int, ncols: int) -> None:
    if spent():
        return
    columns = [f"c{i}" for i in range(ncols)]
    types = dict.fromkeys(columns, "string")
    data = (",".join(columns) + "\n").encode() + body
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    with tempfile.TemporaryDirectory() as folder, block_bytes(block):
        saved = readers.MAX_RECORD_BYTES
        readers.MAX_RECORD_BYTES = 4 * block  # unterminated quotes resynchronise, often
        try:
            path = Path(folder) / "m.csv"
            path.write_bytes(data)
            within(30, lambda: readers.csv_sample_types(str(path), columns))
            whole = within(60, lambda: _whole_read(path, "csv", types))
            split = within(60, lambda: _split_read(path, "csv", types, 3))
        finally:
            readers.MAX_RECORD_BYTES = saved
    seen = [line for _, line, _, _ in whole["rejected"]]
    assert len(set(seen)) == len(seen) and all(2 <= n <= lines for n in seen), seen
    n_rows = len(whole["rows"][columns[0]])
    assert n_rows + len(seen) <= lines - 1  # a record starts on a line of its own
    assert split["rows"] == whole["rows"] and split["rejected"] == whole["rejected"]


def test_csv_fuzz() -> None:
    assert keep_looking(csv_rows_match, malformed_csv_is_read_to_the_end) >= 1


# ---------------------------------------------------------------------------------------------
# JSON Lines: every line against Python's json

INT64 = (-(2**63), 2**63 - 1)
VALUES_A = st.one_of(st.none(), st.integers(*INT64), st.integers(2**63, 2**65), st.just("seven"))
OBJECTS = st.fixed_dictionaries(
    {},
    optional={
        "a": VALUES_A,
        "b": st.one_of(st.none(), st.text(CHARS, max_size=20)),
        "z": st.integers(),
    },
)
# Known and left as it is: pyarrow's fast path ignores }, ], : or , after a whole object on a line
# ({"a": 1}} is a row), so random garbage here never starts with "{" (see docs/faults.md).
GARBAGE = st.one_of(
    st.text(st.sampled_from(list('{}[]":,ab1 \t')), max_size=15).filter(
        lambda g: not g.lstrip().startswith("{")
    ),
    st.sampled_from(["1", "[]", '"x"', "null", "{", '{"a": 1', "", "   "]),
)


@st.composite
def jsonl_files(draw: st.DrawFn) -> dict[str, Any]:
    items = draw(st.lists(st.one_of(OBJECTS, GARBAGE.map(lambda g: ("raw", g))), max_size=40))
    ascii_only = draw(st.booleans())
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    lines = [
        item[1] if isinstance(item, tuple) else json.dumps(item, ensure_ascii=ascii_only)
        for item in items
    ]
    return {"lines": lines, "newline": newline, "block": draw(BLOCKS)}


def expected_jsonl(lines: list[str]) -> tuple[list[list[Any]], list[tuple[int, str]]]:
    rows, rejected = [], []
    for n, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except ValueError:
            rejected.append((n, "invalid JSON"))
            continue
        if not isinstance(obj, dict):
            rejected.append((n, "invalid JSON"))
            continue
        a, b = obj.get("a"), obj.get("b")
        if a is not None and not (isinstance(a, int) and INT64[0] <= a <= INT64[1]):
            rejected.append((n, "column 'a'"))
            continue
        rows.append([a, missing(b)])
    return rows, rejected


@given(jsonl_files())
@ROUND
def jsonl_rows_match(case: dict[str, Any]) -> None:
    if spent():
        return
    types = {"a": "int", "b": "string"}
    want_rows, want_rejected = expected_jsonl(case["lines"])
    data = "".join(line + case["newline"] for line in case["lines"]).encode()
    with tempfile.TemporaryDirectory() as folder, block_bytes(case["block"]):
        path = Path(folder) / "f.jsonl"
        path.write_bytes(data)
        chunks = within(60, lambda: list(readers.read_jsonl(str(path), ["a", "b"], types)))
        whole = _whole_read(path, "jsonl", types)
        split = _split_read(path, "jsonl", types, 3)
    rows = [
        [a, missing(b)]
        for c in chunks
        for a, b in zip(
            c.batch.column("a").to_pylist(), c.batch.column("b").to_pylist(), strict=True
        )
    ]
    rejected = sorted((r.line, r.reason) for c in chunks for r in c.rejected)
    assert rows == want_rows
    assert same_rejections(rejected, want_rejected), (rejected, want_rejected)
    assert split["rows"] == whole["rows"] and split["rejected"] == whole["rejected"]


def test_jsonl_fuzz() -> None:
    assert keep_looking(jsonl_rows_match) >= 1
