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

RATIOS = {"train": 0.7, "eval": 0.3}


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
    # The dead letters outlive the failed stage, and the message says where they are.
    [kept] = (tmp_path / "root" / "dead_letters").glob("ingest-*")
    assert f"every rejected row is kept in {kept}" in err
    [row] = [json.loads(x) for f in kept.glob("*.jsonl") for x in f.read_text().splitlines()]
    assert (row["file"], row["line"]) == (str(tiny_csv), 12)


def test_missing_input(tmp_path: Path, capsys) -> None:
    code, _, err = _ingest(tmp_path, capsys, {"source": str(tmp_path / "nope" / "*.csv")})
    assert code == 2  # a config that names no data: found before the stage runs
    assert "ingest.source: no file matches" in err and "nope" in err


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


@pytest.mark.parametrize("split_bytes", [None, 300])
def test_wrong_column_count_and_bad_encoding(tmp_path: Path, capsys, split_bytes) -> None:
    """Also read as byte ranges of 300 bytes (``ingest.split_bytes``): the same rows and lines,
    with a quoted newline in every row so that ranges start inside quoted fields."""
    rows = [r.replace('"n, ', '"n,\n') for r in tiny_rows(40)]
    f = tmp_path / "mixed.csv"
    body = "\n".join([HEADER, *rows]).encode()
    body += b"\n99,lima,1.0\n98,caf\xe9,2.0,1,x\n"
    f.write_bytes(body)
    ingest = {"source": str(f), "max_rejected_fraction": 0.1}
    if split_bytes:
        ingest["split_bytes"] = split_bytes
    code, out, _ = _ingest(tmp_path, capsys, ingest)
    assert code == 0
    uri = out["stages"]["ingest"]["outputs"]["examples"]["uri"]
    examples = _examples(uri, "train") + _examples(uri, "eval")
    notes = sorted(e.features.feature["note"].bytes_list.value[0] for e in examples)
    assert notes == sorted(f"n,\n{i}".encode() for i in range(40))
    rejected = [
        json.loads(x)
        for p in Path(uri, "rejected").glob("*.jsonl")
        for x in p.read_text().splitlines()
    ]
    by_line = {r["line"]: r["reason"] for r in rejected}
    assert by_line == {82: "expected 5 fields; received 3", 83: "invalid UTF-8 at byte 6"}


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


def test_a_nullable_int_key_over_many_blocks_never_lands_in_two_splits() -> None:
    """An int key in a block that also holds a null used to hash as a float (3 vs 3.0)."""
    n = 3000
    keys = [None if i % 97 == 0 else i % 40 for i in range(n)]
    batch = pa.RecordBatch.from_arrays([pa.array(keys, pa.int64()), pa.array(range(n))], ["k", "v"])
    per_key: dict[object, set[int]] = {}
    for start in range(0, n, 7):
        part = batch.slice(start, 7)
        for k, w in zip(part.column(0).to_pylist(), assign_splits(part, RATIOS, "k"), strict=True):
            per_key.setdefault(k, set()).add(int(w))
    assert all(len(s) == 1 for s in per_key.values()), per_key
    # The key's text decides: an int key and the same key read as float or text agree.
    as_float = pa.RecordBatch.from_arrays([pa.array([3.0, 17.0])], ["k"])
    as_text = pa.RecordBatch.from_arrays([pa.array(["3", "17"])], ["k"])
    as_int = pa.RecordBatch.from_arrays([pa.array([3, 17])], ["k"])
    want = assign_splits(as_int, RATIOS, "k").tolist()
    assert assign_splits(as_float, RATIOS, "k").tolist() == want
    assert assign_splits(as_text, RATIOS, "k").tolist() == want


def test_split_key_in_drop_is_a_config_error() -> None:
    from beam_pipeline.core.errors import ConfigError
    from beam_pipeline.core.stage_sections import IngestSection, SplitSection

    with pytest.raises(ConfigError, match="ingest.split.key: column 'k' is also in ingest.drop"):
        IngestSection(source="x.csv", drop=["k"], split=SplitSection(key="k"))


def test_rows_split_the_same_at_any_batch_size_and_in_every_format(tmp_path: Path) -> None:
    from beam_pipeline.io import readers

    n = 1500
    table = pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "count": pa.array([None if i % 11 == 0 else i * 3 for i in range(n)], pa.int64()),
            "fare": pa.array([i / 4 for i in range(n)], pa.float64()),
            "kind": pa.array([None if i % 13 == 0 else f"k{i % 9}" for i in range(n)]),
        }
    )
    types = {"id": "int", "count": "int", "fare": "float", "kind": "string"}
    csv_path, pq_path, js_path = tmp_path / "d.csv", tmp_path / "d.parquet", tmp_path / "d.jsonl"
    import pyarrow.csv as pacsv

    pacsv.write_csv(table, csv_path)
    pq.write_table(table, pq_path)
    js_path.write_text("".join(json.dumps(r) + "\n" for r in table.to_pylist()))
    readers_by_format = {
        csv_path: readers.read_csv,
        pq_path: readers.read_parquet,
        js_path: readers.read_jsonl,
    }
    results = {}
    for path, read in readers_by_format.items():
        for size in (7, 1000, 65536):
            split_of = {}
            for chunk in read(str(path), list(types), types, size):
                assert not chunk.rejected
                ids = chunk.batch.column("id").to_pylist()
                which = assign_splits(chunk.batch, RATIOS, None)
                split_of.update(zip(ids, which.tolist(), strict=True))
            results[path.suffix, size] = split_of
    first = results[".csv", 7]
    assert len(first) == n and 0.5 < sum(v == 0 for v in first.values()) / n < 0.9
    for where, split_of in results.items():
        assert split_of == first, where


def test_span_latest_is_selected(tmp_path: Path, capsys) -> None:
    for span in (1, 2, 10):
        d = tmp_path / f"span-{span}"
        d.mkdir()
        (d / "part.csv").write_text("\n".join([HEADER, *tiny_rows(10 * span, seed=span)]) + "\n")
    code, out, _ = _ingest(tmp_path, capsys, {"source": str(tmp_path / "span-{SPAN}" / "*.csv")})
    assert code == 0
    uri = out["stages"]["ingest"]["outputs"]["examples"]["uri"]
    assert len(_examples(uri, "train")) + len(_examples(uri, "eval")) == 100


def test_a_span_that_does_not_exist_is_a_config_error(tmp_path: Path, capsys) -> None:
    for span in (1, 2):
        d = tmp_path / f"span-{span}"
        d.mkdir()
        (d / "part.csv").write_text("\n".join([HEADER, *tiny_rows(5, seed=span)]) + "\n")
    source = str(tmp_path / "span-{SPAN}" / "*.csv")
    code, _, err = _ingest(tmp_path, capsys, {"source": source, "span": 7})
    assert code == 2
    assert "ingest.span: span 7 not found; available spans [1, 2]" in err
    assert "Traceback" not in err


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


def test_tfrecord_honours_key_drop_rejections_and_the_exact_files(tmp_path: Path, capsys) -> None:
    """TFRecord goes through the same record-batch path as the other formats: split.key decides
    the split, drop removes the column, a record that is not a tf.Example is a dead letter, and
    only the fingerprinted files are read (span-3 shares their prefix and is not read)."""
    for span in (1, 2, 3):
        d = tmp_path / f"span-{span}"
        d.mkdir()
        with tf.io.TFRecordWriter(str(d / "data.tfrecord.gz"), options="GZIP") as w:
            for i in range(20):
                if span == 2 and i == 5:
                    w.write(b"\x0a\xffnot an example")
                ex = tf.train.Example()
                ex.features.feature["id"].int64_list.value.append(span * 100 + i)
                ex.features.feature["k"].int64_list.value.append(i)
                ex.features.feature["secret"].bytes_list.value.append(b"label leak")
                w.write(ex.SerializeToString())
    ingest = {
        "source": str(tmp_path / "span-{SPAN}" / "data.tfrecord.gz"),
        "format": "tfrecord",
        "span": 2,
        "spans": 2,
        "drop": ["secret"],
        "split": {"ratios": RATIOS, "key": "k"},
        "max_rejected_fraction": 0.1,
    }
    code, out, err = _ingest(tmp_path, capsys, ingest)
    assert code == 0, err
    uri = out["stages"]["ingest"]["outputs"]["examples"]["uri"]
    splits = {s: _examples(uri, s) for s in RATIOS}
    ids = sorted(e.features.feature["id"].int64_list.value[0] for s in splits for e in splits[s])
    assert ids == [*range(100, 120), *range(200, 220)]
    keys = {
        s: {e.features.feature["k"].int64_list.value[0] for e in examples}
        for s, examples in splits.items()
    }
    assert keys["train"] and keys["eval"] and not keys["train"] & keys["eval"]
    assert not any("secret" in e.features.feature for s in splits for e in splits[s])
    [rej] = [
        json.loads(x)
        for p in Path(uri, "rejected").glob("*.jsonl")
        for x in p.read_text().splitlines()
    ]
    assert rej["file"].endswith("span-2/data.tfrecord.gz") and rej["line"] == 6
    assert rej["reason"] == "not a serialized tf.Example"


def test_a_5_mb_field_is_ingested_not_hung(tmp_path: Path) -> None:
    """The type sampler read a 5 MB field with pyarrow's 1 MiB blocks and deadlocked on the GIL
    (issue 21). In a child process with a timeout, so that a hang fails instead of hanging; 50 MB
    fields are read in tests/io/test_readers.py."""
    from tests.pipeline_fixtures import cli

    five = '"' + "ab, cd\n" * ((5 << 20) // 7) + '"'  # quoted, with commas and newlines
    rows = tiny_rows(4)
    rows[1] = f"1,lima,2.5,3,{five}"
    f = tmp_path / "wide.csv"
    f.write_text("\n".join([HEADER, *rows]) + "\n")
    config = write_config(tmp_path, {"source": str(f)})
    code, out, err = cli("run", str(config), "--only", "ingest", "--json", timeout=180)
    assert code == 0, err[-3000:]
    uri = out["stages"]["ingest"]["outputs"]["examples"]["uri"]
    examples = _examples(uri, "train") + _examples(uri, "eval")
    by_id = {e.features.feature["id"].int64_list.value[0]: e.features.feature for e in examples}
    assert sorted(by_id) == [0, 1, 2, 3]  # every row in
    assert by_id[1]["note"].bytes_list.value[0] == five[1:-1].encode()
    assert by_id[1]["amount"].float_list.value[0] == 2.5  # the other columns still typed
    assert not any(p.read_text() for p in Path(uri, "rejected").glob("*.jsonl"))


def test_a_column_name_no_model_can_take_is_refused_before_any_stage(
    tmp_path: Path, capsys
) -> None:
    """Spaces, <, " in a header passed ingest and transform, then train failed with TensorFlow's
    "non-flat/non-unique argument names" (issue 21). Now: exit 2 at once, naming each column;
    dropping them is the other way out."""
    from beam_pipeline.core.config import load
    from beam_pipeline.core.errors import ConfigError
    from beam_pipeline.stages.ingest import resolve_columns

    f = tmp_path / "names.csv"
    rows = "".join(f"{i},2.5,x,y,z\n" for i in range(20))
    f.write_text('id,trip miles,a<b,"say ""x""",ok\n' + rows)
    code, out, err = _ingest(tmp_path, capsys, {"source": str(f)})
    assert code == 2, err
    message = out["error"]
    assert "3 problems found before any stage ran" in message
    assert f"column 'trip miles' in {f} cannot be a model input" in message
    assert "(e.g. 'trip_miles')" in message and "ingest.drop: ['trip miles']" in message
    assert "column 'a<b'" in message and "column 'say \"x\"'" in message
    assert not (tmp_path / "root" / "ingest").exists()

    drop = {"source": str(f), "drop": ["trip miles", "a<b", 'say "x"']}
    code, _, err = _ingest(tmp_path, capsys, drop)
    assert code == 0, err[-2000:]
    # The stage checks too (a source preflight cannot open: remote, a span pattern).
    section = load(write_config(tmp_path, {"source": str(f)})).section("ingest")
    with pytest.raises(ConfigError, match="ingest: column 'trip miles' in .* cannot be"):
        resolve_columns(section, [str(f)])
