from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pytest

from beam_pipeline.io import readers

T = TypeVar("T")


def _read(path: Path, types: dict[str, str]) -> tuple[dict, list[readers.Rejected]]:
    cols = readers.csv_header(str(path))
    rows: dict = {c: [] for c in cols}
    rejected: list[readers.Rejected] = []
    for chunk in readers.read_csv(str(path), cols, types, batch_rows=3):
        for c in cols:
            rows[c] += chunk.batch.column(c).to_pylist()
        rejected += chunk.rejected
    return rows, rejected


def test_quoted_newlines_and_commas_keep_exact_line_numbers(tmp_path: Path) -> None:
    p = tmp_path / "q.csv"
    p.write_bytes(b'a,b\n1,"x\ny"\n2,"p, q"\n3,\n4,bad,extra\n')
    rows, rejected = _read(p, {"a": "int", "b": "string"})
    assert rows == {"a": [1, 2, 3], "b": ["x\ny", "p, q", None]}
    assert [(r.line, r.raw) for r in rejected] == [(6, "4,bad,extra")]
    assert rejected[0].reason == "expected 2 fields; received 3"


def test_wrong_column_count_is_rejected_with_line(tmp_path: Path) -> None:
    p = tmp_path / "c.csv"
    p.write_text("a,b,c\n1,2,3\n4,5\n6,7,8\n")
    rows, rejected = _read(p, {"a": "int", "b": "int", "c": "int"})
    assert rows["a"] == [1, 6]
    assert (rejected[0].file, rejected[0].line, rejected[0].raw) == (str(p), 3, "4,5")


def test_unparseable_typed_value_names_column_and_value(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("a,b\n1,2.5\n2,abc\n3,\n")
    rows, rejected = _read(p, {"a": "int", "b": "float"})
    assert rows == {"a": [1, 3], "b": [2.5, None]}
    assert rejected[0].line == 3
    assert rejected[0].reason == "column 'b': expected float; received 'abc'"


def test_non_utf8_bytes_are_rejected(tmp_path: Path) -> None:
    p = tmp_path / "u.csv"
    p.write_bytes(b"a,b\n1,ok\n2,caf\xe9\n3,fine\n")
    rows, rejected = _read(p, {"a": "int", "b": "string"})
    assert rows["a"] == [1, 3]
    assert rejected[0].line == 3 and "invalid UTF-8" in rejected[0].reason


def test_last_row_without_newline_and_crlf(tmp_path: Path) -> None:
    p = tmp_path / "n.csv"
    p.write_bytes(b"a,b\r\n1,x\r\n2,y")
    rows, rejected = _read(p, {"a": "int", "b": "string"})
    assert rows == {"a": [1, 2], "b": ["x", "y"]} and rejected == []


def test_unterminated_quote_is_rejected(tmp_path: Path) -> None:
    p = tmp_path / "o.csv"
    p.write_text('a,b\n1,x\n2,"never closed\n3,z\n')
    rows, rejected = _read(p, {"a": "int", "b": "string"})
    assert rows["a"] == [1, 3]  # reading resumes on the line after the one that opened it
    [r] = rejected
    assert r.line == 3 and "unterminated" in r.reason and r.raw == '2,"never closed'


def test_type_inference(tmp_path: Path) -> None:
    p = tmp_path / "i.csv"
    p.write_text("a,b,c,d\n1,1.5,x,\n2,3,y,\n")
    assert readers.csv_sample_types(str(p), ["a", "b", "c", "d"]) == {
        "a": "int",
        "b": "float",
        "c": "string",
        "d": "string",
    }


def test_a_bad_value_is_rejected_wherever_it_sits_not_retyping_the_column(tmp_path: Path) -> None:
    """Majority-type inference: "n/a" inside the type sample no longer makes fare a string; it
    is rejected there as it is after the sample."""
    rows = [f"{i},{i % 7}.25" for i in range(30)]
    rows[3] = "3,n/a"  # inside the sample
    rows[25] = "25,n/a"  # after the sample (sample_rows=20 below)
    p = tmp_path / "m.csv"
    p.write_text("id,fare\n" + "\n".join(rows) + "\n")
    types = readers.csv_sample_types(str(p), ["id", "fare"], sample_rows=20)
    assert types == {"id": "int", "fare": "float"}
    got, rejected = _read(p, types)
    assert len(got["fare"]) == 28
    assert [(r.line, r.reason) for r in rejected] == [
        (5, "column 'fare': expected float; received 'n/a'"),
        (27, "column 'fare': expected float; received 'n/a'"),
    ]
    # A column that is mostly text stays text; an empty one is text.
    assert readers.infer_kind(pa.array(["a", "1", "b", None, " "])) == "string"
    assert readers.infer_kind(pa.array(["1", "2", "x"])) == "int"
    assert readers.infer_kind(pa.array(["1", "2.5", "x"])) == "float"


def test_ints_stay_exact_and_out_of_range_ints_are_rejected(tmp_path: Path) -> None:
    p = tmp_path / "big.csv"
    p.write_text("a\n9007199254740993\n5.0\n99999999999999999999\n-9223372036854775808\n7\n")
    got, rejected = _read(p, {"a": "int"})
    assert got["a"] == [9007199254740993, 5, -9223372036854775808, 7]
    assert [(r.line, r.reason) for r in rejected] == [
        (4, "column 'a': expected int; received '99999999999999999999'")
    ]


def test_duplicate_header_names_are_a_config_error(tmp_path: Path) -> None:
    from beam_pipeline.core.errors import ConfigError

    p = tmp_path / "dup.csv"
    p.write_text("a,b,a\n1,2,3\n")
    with pytest.raises(ConfigError, match=r"dup.csv:1: the header names column 'a' twice"):
        readers.csv_header(str(p))


# ---------------------------------------------------------------------------------------------
# Differential: our CSV reader against pyarrow and Python's csv on generated files (issue 9, 2)


def _field(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.35:
        return rng.choice(["Cash", "Card", "12.5", "7", "", "x y", "Credit Card"])
    if kind < 0.55:  # quoted, with commas, newlines, CRLF and escaped quotes inside
        inner = rng.choice(["a,b", "two\nlines", "crlf\r\nin", 'say ""hi""', "", "plain"])
        return f'"{inner}"'
    if kind < 0.75:  # a stray quote inside an unquoted field: an ordinary character
        return rng.choice(['5" screen', 'ab"', 'it"s', 'x""y', '12"'])
    return rng.choice(["  ", " padded ", "é", "0"])


def _generated_csv(seed: int, rows: int = 400) -> bytes:
    rng = random.Random(seed)
    newline = rng.choice(["\n", "\r\n"])
    lines = ["a,b,c"]
    for _ in range(rows):
        if rng.random() < 0.05:
            lines.append("")  # a blank line: skipped by all three
        lines.append(",".join(_field(rng) for _ in range(3)))
    bom = "\ufeff" if rng.random() < 0.5 else ""
    return (bom + newline.join(lines) + newline).encode()


def _missing(value: str | None) -> str | None:
    """The one null rule: empty or whitespace-only text is a missing value."""
    return None if value is None or not value.strip() else value


@pytest.mark.parametrize("seed", range(6))
def test_csv_rows_match_pyarrow_and_python_csv(tmp_path: Path, seed: int) -> None:
    import csv
    import io

    import pyarrow.csv as pacsv

    data = _generated_csv(seed)
    p = tmp_path / "g.csv"
    p.write_bytes(data)
    ours, rejected = _read(p, dict.fromkeys("abc", "string"))
    assert rejected == []
    assert readers.csv_header(str(p)) == ["a", "b", "c"]  # no BOM in the first name
    text = data.decode("utf-8-sig")
    reference = [r for r in csv.reader(io.StringIO(text, newline="")) if r][1:]
    want = {c: [_missing(r[i]) for r in reference] for i, c in enumerate("abc")}
    assert ours == want
    table = pacsv.read_csv(
        io.BytesIO(data),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys("abc", pa.string()), strings_can_be_null=False
        ),
    )
    assert {c: [_missing(v) for v in table.column(c).to_pylist()] for c in "abc"} == ours


def test_a_stray_quote_costs_no_rows_and_lines_stay_exact(tmp_path: Path) -> None:
    body = [f"{i},row {i}" for i in range(1, 2001)]
    body[10] = '11,5" screen'  # a stray quote early: must not swallow the rest of the file
    body[30] = "31,not a number,extra"
    p = tmp_path / "s.csv"
    p.write_text("n,s\n" + "\n".join(body) + "\n")
    rows, rejected = _read(p, {"n": "int", "s": "string"})
    assert len(rows["n"]) == 1999 and rows["s"][10] == '5" screen'
    assert [(r.line, r.reason) for r in rejected] == [(32, "expected 2 fields; received 3")]


def test_whitespace_only_strings_are_missing_on_fast_and_slow_paths(tmp_path: Path) -> None:
    fast = tmp_path / "f.csv"
    fast.write_text("n,s\n1,  \n2,x\n")
    slow = tmp_path / "s.csv"
    slow.write_text("n,s\n1,  \n2,x\nbad,y\n")  # a bad int sends the chunk to the slow path
    assert _read(fast, {"n": "int", "s": "string"})[0]["s"] == [None, "x"]
    assert _read(slow, {"n": "int", "s": "string"})[0]["s"] == [None, "x"]


# ---------------------------------------------------------------------------------------------
# Wide records (issue 21): a 5 or 50 MB field is one row, read without hanging


def _within(seconds: float, fn: Callable[[], T]) -> T:
    """fn() on a daemon thread: a deadlock inside pyarrow fails the test instead of hanging it."""
    box: list[Any] = []
    worker = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert box, f"no answer within {seconds} s (hung)"
    return box[0]


@pytest.mark.parametrize("mb", [5, 50])
def test_a_wide_field_is_one_row_in_csv_and_json_lines(tmp_path: Path, mb: int) -> None:
    wide = "ab, cd\n" * ((mb << 20) // 7)  # commas and newlines, quoted in CSV
    csv_file = tmp_path / "w.csv"
    csv_file.write_text(f'a,b,c\n1,2.5,x\n2,3.5,"{wide}"\n3,4.5,z\n')
    cols = readers.csv_header(str(csv_file))
    types = _within(60, lambda: readers.csv_sample_types(str(csv_file), cols))
    assert types == {"a": "int", "b": "float", "c": "string"}
    rows, rejected = _within(120, lambda: _read(csv_file, types))
    assert rows["a"] == [1, 2, 3] and rows["c"][1] == wide and rejected == []

    jsonl = tmp_path / "w.jsonl"
    lines = [{"a": 1, "c": "x"}, {"a": 2, "c": wide}, {"a": 3, "c": "z"}]
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in lines))
    types = readers.jsonl_columns(str(jsonl))

    def read() -> list[Any]:
        return [c for c in readers.read_jsonl(str(jsonl), ["a", "c"], types)]

    chunks = _within(60, read)
    assert sum(c.batch.num_rows for c in chunks) == 3 and not any(c.rejected for c in chunks)
    assert chunks[0].batch.column("c")[1].as_py() == wide


def test_an_unclosed_quote_on_a_line_longer_than_the_limit_is_one_rejected_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resynchronising after a quoted field that does not close within MAX_RECORD_BYTES skips
    to the end of its line even when that line is longer than the buffer (it used to reject a
    phantom empty line per block, with line numbers running ahead)."""
    monkeypatch.setattr(readers, "BLOCK_BYTES", 64)
    monkeypatch.setattr(readers, "MAX_RECORD_BYTES", 256)
    p = tmp_path / "long.csv"
    p.write_text('a,b\n1,x\n2,"' + "y" * 1000 + "\n3,z\n4,w")
    rows, rejected = _read(p, {"a": "int", "b": "string"})
    assert rows["a"] == [1, 3, 4]
    [r] = rejected
    assert r.line == 3 and "within 256 bytes" in r.reason and r.raw.startswith('2,"yyy')
    # at the end of the file, with no newline after it
    p.write_text('a,b\n1,x\n2,"' + "y" * 1000)
    rows, rejected = _read(p, {"a": "int", "b": "string"})
    assert rows["a"] == [1] and [r.line for r in rejected] == [3]


# ---------------------------------------------------------------------------------------------
# What tests/fuzz found (issue 21)


def test_a_bare_carriage_return_in_an_unquoted_field_rejects_its_row(tmp_path: Path) -> None:
    """pyarrow ends a record at a lone CR; the line count does not: the whole read failed with
    ArrowInvalid ("Expected 2 columns, got 1") or a phantom row of nulls appeared."""
    p = tmp_path / "cr.csv"
    p.write_bytes(b'a,b\n1,x\ry\n2,"in\rquotes"\n3,z\r\r\n4,w\r\n')
    rows, rejected = _read(p, {"a": "int", "b": "string"})
    assert rows == {"a": [2, 4], "b": ["in\rquotes", "w"]}
    assert [(r.line, r.reason) for r in rejected] == [
        (2, "a carriage return inside an unquoted field (quote the field)"),
        (4, "a carriage return inside an unquoted field (quote the field)"),
    ]


def _jsonl(path: Path, text: str) -> tuple[list[list[Any]], list[tuple[int, str]]]:
    path.write_text(text)
    types = {"a": "int", "b": "string"}
    rows, rejected = [], []
    for chunk in readers.read_jsonl(str(path), ["a", "b"], types):
        rows += [list(r.values()) for r in chunk.batch.to_pylist()]
        rejected += [(r.line, r.reason) for r in chunk.rejected]
    return rows, rejected


def test_json_lines_that_pyarrow_misreads(tmp_path: Path) -> None:
    p = tmp_path / "j.jsonl"
    # pyarrow 10 crashed the process (SIGSEGV) on a block of "null" lines
    assert _within(30, lambda: _jsonl(p, "null\nnull\n")) == (
        [],
        [(1, "invalid JSON: expected a JSON object"), (2, "invalid JSON: expected a JSON object")],
    )
    # "}1" was no row at all, not a rejected one
    assert _jsonl(p, '{"a": 1}\n}1\n')[0] == [[1, None]]
    assert [n for n, _ in _jsonl(p, '{"a": 1}\n}1\n')[1]] == [2]
    # only the first row's keys were kept on the slow path; {} rows were dropped
    assert _jsonl(p, '{"b": "x"}\n{"a": 2}\n{}\n7\n')[0] == [[None, "x"], [2, None], [None, None]]
    # an int past int64 in a column nobody reads failed the read (OverflowError)
    assert _jsonl(p, '{"a": 1, "z": 9223372036854775808}\n7\n')[0] == [[1, None]]
    # a blank line before a bad value shifted the line it was reported on
    rows, rejected = _jsonl(p, '\n{"a": 9223372036854775808}\n{"a": 3}\n')
    assert rows == [[3, None]]
    assert rejected == [(2, "column 'a': expected int; received '9223372036854775808'")]


def test_an_int_past_2_53_in_a_float_column_is_its_nearest_float(tmp_path: Path) -> None:
    """Arrow's safe int -> float cast refused it: a JSON Lines ingest failed with ArrowInvalid,
    and the servers answered INTERNAL / 500 (found by tests/fuzz's gRPC fuzzer)."""
    p = tmp_path / "f.jsonl"
    p.write_text('{"a": 9007199254740993}\n{"a": -4611686018427387904}\n')
    [chunk] = list(readers.read_jsonl(str(p), ["a"], {"a": "float"}))
    assert chunk.batch.column("a").to_pylist() == [2.0**53, -(2.0**62)] and not chunk.rejected


def test_json_lines_past_pyarrows_rows_per_block_stay_on_the_bulk_path(tmp_path: Path) -> None:
    """pyarrow 10 refuses 100,000 rows in one block: a chunk of 8 MB of short lines (about
    200,000) was one block, failed, and went row by row through Python."""
    lines = [json.dumps({"a": i, "b": f"x{i % 7}", "c": i * 0.5}) for i in range(150_000)]
    body = ("\n".join(lines) + "\n").encode()
    table = readers.json_table(body)  # raised ArrowInvalid("Exceeded maximum rows") before
    assert table.num_rows == 150_000
    assert table.column("a").to_pylist()[-1] == 149_999
    path = tmp_path / "big.jsonl"
    path.write_bytes(body)
    chunks = list(
        readers.read_jsonl(str(path), ["a", "b", "c"], {"a": "int", "b": "string", "c": "float"})
    )
    assert sum(c.batch.num_rows for c in chunks) == 150_000
    assert not any(c.rejected for c in chunks)


def test_nonblank_lines_match_a_line_by_line_reference() -> None:
    rng = random.Random(5)
    pieces = [b"", b" ", b"\t", b"\r", b'{"a": 1}', b" x "]
    for _ in range(300):
        body = b"\n".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        body += rng.choice([b"", b"\n"])
        expected = [i for i, line in enumerate(body.split(b"\n")) if line.strip(b" \t\r")]
        assert readers._nonblank_lines(body).tolist() == expected, body
