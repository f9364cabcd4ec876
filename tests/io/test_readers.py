from __future__ import annotations

from pathlib import Path

from beam_pipeline.io import readers


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
    assert rows["a"] == [1]
    assert rejected[0].line == 3 and "unterminated" in rejected[0].reason


def test_type_inference(tmp_path: Path) -> None:
    p = tmp_path / "i.csv"
    p.write_text("a,b,c,d\n1,1.5,x,\n2,3,y,\n")
    assert readers.csv_sample_types(str(p), ["a", "b", "c", "d"]) == {
        "a": "int",
        "b": "float",
        "c": "string",
        "d": "string",
    }
