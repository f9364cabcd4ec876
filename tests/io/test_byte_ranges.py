"""Splittable reads: one file read as 1, 3 or 7 byte ranges gives the same rows, values and
rejections (file, line, reason, raw) as one sequential read."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from beam_pipeline.io import byte_ranges, readers
from tests.io.test_readers import _generated_csv


def _split_read(path: Path, fmt: str, types: dict[str, str], splits: int) -> dict[str, Any]:
    """Pass 1 over each nominal range, the plan, then pass 2 range by range (in file order)."""
    p = str(path)
    nominal = byte_ranges.nominal_ranges(p, split_bytes=1 << 30, splits=splits)
    scans = [byte_ranges.scan_range(p, fmt, i, a, b) for i, (a, b) in enumerate(nominal)]
    ranges = byte_ranges.plan(scans)
    read = readers.read_csv if fmt == "csv" else readers.read_jsonl
    rows: dict[str, list[Any]] = {c: [] for c in types}
    rejected = []
    for r in ranges:
        for chunk in read(p, list(types), types, 7, byte_range=(r.start, r.end, r.line)):
            for c in types:
                rows[c] += chunk.batch.column(c).to_pylist()
            rejected += [(x.file, x.line, x.reason, x.raw) for x in chunk.rejected]
    resynced = sum(r.start != s.start for r, s in zip(ranges, scans, strict=False))
    return {"rows": rows, "rejected": sorted(rejected), "ranges": ranges, "resynced": resynced}


def _whole_read(path: Path, fmt: str, types: dict[str, str]) -> dict[str, Any]:
    read = readers.read_csv if fmt == "csv" else readers.read_jsonl
    rows: dict[str, list[Any]] = {c: [] for c in types}
    rejected = []
    for chunk in read(str(path), list(types), types, 7):
        for c in types:
            rows[c] += chunk.batch.column(c).to_pylist()
        rejected += [(x.file, x.line, x.reason, x.raw) for x in chunk.rejected]
    return {"rows": rows, "rejected": sorted(rejected)}


def _messy_csv(seed: int) -> bytes:
    """Quoted fields with newlines, CRLF, escaped and stray quotes, blank lines, and rows that are
    rejected: a wrong field count, a bad int, invalid UTF-8."""
    body = _generated_csv(seed, rows=600).split(b"\n", 1)[1]
    rng = random.Random(seed)
    lines = body.split(b"\n")
    for i in rng.sample(range(1, len(lines) - 1), 12):
        lines[i] = rng.choice([b"1,2", b"1,2,3,4", b'x,"caf\xe9",y'])
    numbered = []
    for i, line in enumerate(lines):  # an int column in front: some values do not parse
        if not line or line.endswith(b"\r") and len(line) == 1:
            numbered.append(line)
        else:
            numbered.append((b"oops" if i % 97 == 5 else str(i).encode()) + b"," + line)
    return b"n,a,b,c\n" + b"\n".join(numbered)


@pytest.mark.parametrize("seed", range(4))
def test_csv_split_reads_equal_one_read(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "messy.csv"
    path.write_bytes(_messy_csv(seed))
    types = {"n": "int", "a": "string", "b": "string", "c": "string"}
    whole = _whole_read(path, "csv", types)
    assert len(whole["rows"]["n"]) > 400 and len(whole["rejected"]) >= 12
    resynced = 0
    for splits in (1, 3, 7):
        got = _split_read(path, "csv", types, splits)
        assert len(got["ranges"]) == splits
        assert got["rows"] == whole["rows"], splits
        assert got["rejected"] == whole["rejected"], splits
        resynced += got["resynced"]
    assert resynced  # some nominal offset fell inside a quoted field


def test_a_quoted_newline_at_a_range_start_and_exact_lines(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    rows = [f'{i},"line one\nline two\n{i}, not a record"' for i in range(300)]
    rows[150] = "150,too,many"
    path.write_text("n,s\n" + "\n".join(rows) + "\n")
    types = {"n": "int", "s": "string"}
    for splits in (1, 3, 7):
        got = _split_read(path, "csv", types, splits)
        assert got["rows"]["n"] == [i for i in range(300) if i != 150]
        assert got["rows"]["s"][0] == "line one\nline two\n0, not a record"
        assert [(line, raw) for _, line, _, raw in got["rejected"]] == [
            (2 + 150 * 3, "150,too,many")
        ]


def test_an_unterminated_quote_is_read_as_one_range(tmp_path: Path) -> None:
    path = tmp_path / "open.csv"
    rows = [f"{i},x" for i in range(200)]
    rows[120] = '120,"never closed'
    path.write_text("n,s\n" + "\n".join(rows) + "\n")
    types = {"n": "int", "s": "string"}
    whole = _whole_read(path, "csv", types)
    got = _split_read(path, "csv", types, 7)
    assert len(got["ranges"]) == 1  # read_csv resynchronises after it: no state to split on
    assert got["rows"] == whole["rows"] and got["rejected"] == whole["rejected"]
    assert [line for _, line, _, _ in got["rejected"]] == [122]


def test_jsonl_split_reads_equal_one_read(tmp_path: Path) -> None:
    rng = random.Random(3)
    lines = []
    for i in range(800):
        pick = rng.random()
        if pick < 0.02:
            lines.append("{not json")
        elif pick < 0.04:
            lines.append(json.dumps({"n": "seven", "s": "x"}))
        elif pick < 0.06:
            lines.append("")
        else:
            lines.append(json.dumps({"n": i, "s": rng.choice(["a", "b,c", 'q"uote', "é"])}))
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(lines) + "\n")
    types = {"n": "int", "s": "string"}
    whole = _whole_read(path, "jsonl", types)
    assert len(whole["rejected"]) >= 10
    for splits in (1, 3, 7):
        got = _split_read(path, "jsonl", types, splits)
        assert len(got["ranges"]) == splits
        assert got["rows"] == whole["rows"] and got["rejected"] == whole["rejected"], splits


def test_compressed_files_are_not_split(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "a.csv.gz"
    path.write_bytes(gzip.compress(b"n\n" + b"1\n" * 1000))
    assert byte_ranges.nominal_ranges(str(path), split_bytes=10) == [(0, path.stat().st_size)]
