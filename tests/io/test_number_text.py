"""Plain number texts (`io.number_text`) against Arrow's own parser, and the CSV reader that
keeps them (`readers.read_csv(number_text=True)`) against the one that does not."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beam_pipeline.io import readers
from beam_pipeline.io.number_text import parse_plain

PLAIN_FLOATS = ["0", "-0", "-0.0", "1.50", "0.000123", "12345678901234.5", "0.000000000000001"]
PLAIN_INTS = ["0", "7", "-12", "1438133400", "999999999999999999"]
NOT_PLAIN = [
    "05",
    ".5",
    "1.",
    "1e5",
    "+1",
    " 1",
    "1 ",
    "nan",
    "inf",
    "-",
    "",
    "1,5",
    "0x10",
    "1.2.3",
    "123456789012345.6",  # 16 significant digits
    "0.0000000000000001",  # 16 decimals
]
NOT_PLAIN_INTS = ["-0", "1.0", "1234567890123456789"]  # the last: 19 digits


def _same(got: pa.Array, want: pa.Array) -> bool:
    """Equal values, nulls in the same places, and -0.0 told from 0.0."""
    return [repr(v) for v in got.to_pylist()] == [repr(v) for v in want.to_pylist()]


def test_plain_and_not() -> None:
    for text in PLAIN_FLOATS:
        assert _same(parse_plain(pa.array([text]), False), pc.cast(pa.array([text]), pa.float64()))
    for text in PLAIN_INTS:
        assert _same(parse_plain(pa.array([text]), True), pc.cast(pa.array([text]), pa.int64()))
    for text in NOT_PLAIN:
        assert parse_plain(pa.array([text, "1"]), False) is None, text
        assert parse_plain(pa.array(["1", text]), True) is None, text
    for text in NOT_PLAIN_INTS:
        assert parse_plain(pa.array([text]), True) is None, text
    # missing values stay missing, in a slice too
    texts = pa.array(["1.5", None, "2", None, "-3.25"])
    for part in (texts, texts.slice(1), texts.slice(1, 3)):
        assert _same(parse_plain(part, False), pc.cast(part, pa.float64()))
    assert len(parse_plain(pa.array([], pa.string()), True)) == 0


_float_texts = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.builds(
        lambda x, d: f"{x:.{d}f}",
        st.floats(-1e9, 1e9, allow_nan=False),
        st.integers(0, 16),
    ),
    st.builds(lambda z, n: f"0.{'0' * z}{n}", st.integers(0, 16), st.integers(1, 10**9)),
    st.integers(-(10**20), 10**20).map(str),
    st.text("0123456789.-+e ", min_size=0, max_size=8),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.none(), _float_texts), min_size=1, max_size=8))
def test_parse_plain_agrees_with_arrow(texts: list[str | None]) -> None:
    array = pa.array(texts, pa.string())
    for integer, kind in ((False, pa.float64()), (True, pa.int64())):
        got = parse_plain(array, integer)
        if got is None:
            continue
        assert _same(got, pc.cast(array, kind))
        printed = pc.cast(got, pa.string()).to_pylist()
        for text, value, arrow_text in zip(texts, got.to_pylist(), printed, strict=True):
            if text is None:
                continue
            # valid JSON, of the same value as the text Arrow prints for the parsed number
            assert json.loads(text) == value and json.loads(arrow_text) == value
            if not integer:  # a model parsing either text to float32 gets the same number
                assert np.float32(text) == np.float32(arrow_text) or math.isnan(value)


def _write(path: Path, rows: list[str]) -> str:
    path.write_text("a,b,c\n" + "".join(r + "\n" for r in rows))
    return str(path)


TYPES = {"a": "int", "b": "float", "c": "string"}


def _both(path: str) -> tuple[list[readers.Chunk], list[readers.Chunk]]:
    plain = list(readers.read_csv(path, list(TYPES), TYPES, 3))
    kept = list(readers.read_csv(path, list(TYPES), TYPES, 3, number_text=True))
    assert len(plain) == len(kept)
    for p, k in zip(plain, kept, strict=True):
        assert p.batch.equals(k.batch)
        assert [(r.line, r.reason) for r in p.rejected] == [(r.line, r.reason) for r in k.rejected]
    return plain, kept


def test_reader_keeps_the_file_text(tmp_path: Path) -> None:
    rows = ["1,1.50,x", "-2,,y", ",0.000123,", "40,-0.0,z", "5,12,w"]
    _, kept = _both(_write(tmp_path / "plain.csv", rows))
    assert [sorted(c.number_texts) for c in kept] == [["a", "b"], ["a", "b"]]  # 3 rows a chunk
    texts = {k: sum((c.number_texts[k].to_pylist() for c in kept), []) for k in "ab"}
    assert texts["a"] == ["1", "-2", None, "40", "5"]
    assert texts["b"] == ["1.50", None, "0.000123", "-0.0", "12"]
    assert repr(kept[1].batch.column("b").to_pylist()[0]) == "-0.0"


@pytest.mark.parametrize(
    "odd",
    ["7,1e5,x", "7, 1.5,x", "007,1.5,x", "7,+1.5,x", "7,1.5\r,x"],
)
def test_reader_falls_back_where_a_number_is_not_plain(tmp_path: Path, odd: str) -> None:
    """Another spelling anywhere in a chunk: the typed read as before, and no texts."""
    plain, kept = _both(_write(tmp_path / "odd.csv", ["1,2.5,a", odd, "3,4,b"]))
    assert all(not c.number_texts for c in kept)


def test_reader_without_texts_where_rows_are_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.csv", ["1,2.5,a", "x,1,b", "3,4,c", "1,2", "5,6,d"])
    plain, kept = _both(path)
    assert sum(len(c.rejected) for c in kept) == 2
    assert sum(c.batch.num_rows for c in kept) + 2 == 5  # rows in = rows out + rejected
    assert all(not c.number_texts for c in kept if c.rejected)
