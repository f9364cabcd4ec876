from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from beam_pipeline.stages.ingest import assign_splits
from tests.conftest import HEADER, run_cli, tiny_rows, write_config


def _examples(uri: str, split: str) -> list[tf.train.Example]:
    files = tf.io.gfile.glob(f"{uri}/Split-{split}/*.tfrecord.gz")
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return [tf.train.Example.FromString(r.numpy()) for r in ds]


def _ingest(tmp_path: Path, capsys, ingest: dict, *extra: str) -> tuple[int, dict, str]:
    cfg = write_config(tmp_path, ingest)
    return run_cli(["run", str(cfg), "--only", "ingest", "--json", *extra], capsys)


def test_under_the_limit_rows_land_in_rejected(tmp_path: Path, tiny_csv: Path, capsys) -> None:
    code, out, _ = _ingest(
        tmp_path,
        capsys,
        {"source": str(tiny_csv), "columns": {"amount": "float"}, "max_rejected_fraction": 0.1},
    )
    assert code == 0, out
    uri = out["stages"]["ingest"]["outputs"]["examples"]["uri"]
    n = len(_examples(uri, "train")) + len(_examples(uri, "eval"))
    assert n == 19
    [rej_file] = Path(uri, "rejected").glob("*.jsonl")
    [row] = [json.loads(line) for line in rej_file.read_text().splitlines()]
    assert row == {
        "file": str(tiny_csv),
        "line": 12,
        "reason": "column 'amount': expected float; received 'not-a-number'",
        "raw": '10,oslo,not-a-number,3,"bad"',
    }
    ex = _examples(uri, "train")[0]
    assert ex.features.feature["amount"].float_list.value
    assert ex.features.feature["note"].bytes_list.value[0].startswith(b"n, ")


def test_over_the_limit_fails_naming_first_bad_row(tmp_path: Path, tiny_csv: Path, capsys) -> None:
    code, out, err = _ingest(
        tmp_path, capsys, {"source": str(tiny_csv), "columns": {"amount": "float"}}
    )
    assert code == 1
    assert out["status"] == "failed" and out["stages"]["ingest"]["status"] == "failed"
    assert f"{tiny_csv}:12: column 'amount': expected float" in err
    assert "1 of 20 rows rejected" in err
    assert "resume with: beam-pipeline run" in err
    assert not list((tmp_path / "root" / "ingest").glob("[0-9]*")), "nothing published"


def test_missing_input(tmp_path: Path, capsys) -> None:
    code, _, err = _ingest(tmp_path, capsys, {"source": str(tmp_path / "nope" / "*.csv")})
    assert code == 1
    assert "ingest.source: no files match" in err and "nope" in err


def test_empty_file(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    code, _, err = _ingest(tmp_path, capsys, {"source": str(empty)})
    assert code == 1 and f"{empty}: empty file" in err


def test_header_only_file(tmp_path: Path, capsys) -> None:
    f = tmp_path / "header.csv"
    f.write_text(HEADER + "\n")
    code, _, err = _ingest(tmp_path, capsys, {"source": str(f)})
    assert code == 1 and "no data rows" in err


def test_wrong_column_count_and_bad_encoding(tmp_path: Path, capsys) -> None:
    rows = tiny_rows(40)
    f = tmp_path / "mixed.csv"
    body = "\n".join([HEADER, *rows]).encode()
    body += b"\n99,lima,1.0\n98,caf\xe9,2.0,1,x\n"
    f.write_bytes(body)
    code, out, _ = _ingest(tmp_path, capsys, {"source": str(f), "max_rejected_fraction": 0.1})
    assert code == 0
    uri = out["stages"]["ingest"]["outputs"]["examples"]["uri"]
    rejected = [
        json.loads(x)
        for p in Path(uri, "rejected").glob("*.jsonl")
        for x in p.read_text().splitlines()
    ]
    by_line = {r["line"]: r["reason"] for r in rejected}
    assert by_line == {42: "expected 5 fields; received 3", 43: "invalid UTF-8 at byte 6"}


def test_key_split_never_puts_one_key_in_two_splits() -> None:
    keys = [f"k{i % 50}" for i in range(2000)]
    batch = pa.RecordBatch.from_arrays([pa.array(keys), pa.array(range(2000))], ["key", "v"])
    which = assign_splits(batch, {"train": 0.7, "eval": 0.3}, "key")
    per_key: dict[str, set[int]] = {}
    for k, w in zip(keys, which, strict=True):
        per_key.setdefault(k, set()).add(int(w))
    assert all(len(s) == 1 for s in per_key.values())
    assert 0.5 < (which == 0).mean() < 0.9
    again = assign_splits(batch, {"train": 0.7, "eval": 0.3}, "key")
    assert (again == which).all(), "deterministic"


def test_span_latest_is_selected(tmp_path: Path, capsys) -> None:
    for span in (1, 2, 10):
        d = tmp_path / f"span-{span}"
        d.mkdir()
        (d / "part.csv").write_text("\n".join([HEADER, *tiny_rows(10 * span, seed=span)]) + "\n")
    code, out, _ = _ingest(tmp_path, capsys, {"source": str(tmp_path / "span-{SPAN}" / "*.csv")})
    assert code == 0
    uri = out["stages"]["ingest"]["outputs"]["examples"]["uri"]
    assert len(_examples(uri, "train")) + len(_examples(uri, "eval")) == 100


def test_several_spans_are_read_together(tmp_path: Path) -> None:
    from beam_pipeline.stages.ingest import resolve_files

    for span in (1, 2, 3, 10):
        d = tmp_path / f"span-{span}"
        d.mkdir()
        (d / "part.csv").write_text(HEADER + "\n")
    pattern = str(tmp_path / "span-{SPAN}" / "*.csv")
    files, span = resolve_files(pattern, None, 2)
    assert span == 10 and [Path(f).parent.name for f in files] == ["span-10", "span-3"]
    files, span = resolve_files(pattern, 2, 5)
    assert span == 2 and [Path(f).parent.name for f in files] == ["span-1", "span-2"]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "tfrecord"])
def test_other_formats(tmp_path: Path, capsys, fmt: str) -> None:
    n = 30
    table = pa.table(
        {"id": list(range(n)), "name": [f"n{i}" for i in range(n)], "x": [i / 2 for i in range(n)]}
    )
    src = tmp_path / f"in.{fmt}"
    if fmt == "parquet":
        pq.write_table(table, src)
    elif fmt == "jsonl":
        lines = [json.dumps(r) for r in table.to_pylist()]
        lines.insert(5, "{not json")
        src.write_text("\n".join(lines) + "\n")
    else:
        src = tmp_path / "in.tfrecord.gz"
        with tf.io.TFRecordWriter(str(src), options="GZIP") as w:
            for r in table.to_pylist():
                ex = tf.train.Example()
                ex.features.feature["id"].int64_list.value.append(r["id"])
                ex.features.feature["name"].bytes_list.value.append(r["name"].encode())
                ex.features.feature["x"].float_list.value.append(r["x"])
                w.write(ex.SerializeToString())
    code, out, err = _ingest(
        tmp_path, capsys, {"source": str(src), "format": fmt, "max_rejected_fraction": 0.1}
    )
    assert code == 0, err
    uri = out["stages"]["ingest"]["outputs"]["examples"]["uri"]
    examples = _examples(uri, "train") + _examples(uri, "eval")
    assert sorted(e.features.feature["id"].int64_list.value[0] for e in examples) == list(range(n))
    if fmt == "jsonl":
        [rej] = [
            json.loads(x)
            for p in Path(uri, "rejected").glob("*.jsonl")
            for x in p.read_text().splitlines()
        ]
        assert rej["line"] == 6 and rej["raw"] == "{not json"


def test_gzip_output_is_valid(tmp_path: Path, tiny_csv: Path, capsys) -> None:
    code, out, _ = _ingest(
        tmp_path, capsys, {"source": str(tiny_csv), "max_rejected_fraction": 0.5}
    )
    uri = out["stages"]["ingest"]["outputs"]["examples"]["uri"]
    for f in Path(uri).glob("Split-*/*.tfrecord.gz"):
        with gzip.open(f) as fh:
            assert fh.read(8)
