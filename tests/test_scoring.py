"""Batch scoring: one record per readable row, the same predictions as in-process, dead letters."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import beam_pipeline  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is used)
from beam_pipeline.io import predictions
from beam_pipeline.jobs import score as scoring
from tests import pipeline_fixtures as pf
from tests.conftest import run_cli


def test_json_values_escape_like_json_dumps() -> None:
    values = ["plain", 'say "hi"', "back\\slash", "tab\tand\nnewline", "ünï", None]
    text = predictions.json_values(pa.array(values)).to_pylist()
    assert [json.loads(t) for t in text] == values
    # Without control characters (escaped in Arrow), and with nothing to escape (quoted only).
    for values in (['say "hi"', "back\\slash", "ünï", None, ""], ["plain", None, "a b"]):
        text = predictions.json_values(pa.array(values)).to_pylist()
        assert text == [json.dumps(v, ensure_ascii=False) for v in values]
    numbers = predictions.json_values(pa.array([1.5, None, float("nan"), 12.45])).to_pylist()
    assert numbers == ["1.5", "null", "null", "12.45"]
    assert predictions.json_values(pa.array([3, None], pa.int64())).to_pylist() == ["3", "null"]


def test_to_tensor_keeps_values_offsets_and_empty_strings() -> None:
    import tensorflow as tf

    arr = pa.array(["a", "", "Credit Card", None, "x"]).fill_null("")
    sliced = arr.slice(1, 3)
    assert scoring.to_tensor(sliced).numpy().tolist() == [b"", b"Credit Card", b""]
    assert scoring.to_tensor(pa.array(["", ""])).numpy().tolist() == [b"", b""]
    assert tf.is_tensor(scoring.to_tensor(arr))


def test_json_records_are_one_valid_object_per_row() -> None:
    batch = pa.RecordBatch.from_arrays(
        [pa.array([1, None]), pa.array(['a"b', None])], names=["n", "s"]
    )
    text = predictions.json_records(
        batch,
        np.array([[0.25], [0.75]], np.float32),
        pa.array(["j/f/0", "j/f/1"]),
        '","time":"t","features":',
    )
    rows = [json.loads(line) for line in text.split("\n")]
    assert rows == [
        {"request_id": "j/f/0", "time": "t", "features": {"n": 1, "s": 'a"b'}, "prediction": 0.25},
        {
            "request_id": "j/f/1",
            "time": "t",
            "features": {"n": None, "s": None},
            "prediction": 0.75,
        },
    ]


# ---------------------------------------------------------------------------------------------
# End to end on the shared taxi pipeline


@pytest.fixture(scope="module")
def taxi() -> dict:
    return pf.taxi_runs()


@pytest.fixture(scope="module")
def scored(taxi: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The bundled taxi CSV plus two bad rows, scored with version 1 (JSON Lines)."""
    base = tmp_path_factory.mktemp("score")
    data = base / "in" / "taxi.csv"
    data.parent.mkdir()
    lines = pf.TAXI_CSV.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    bad_fields = "1,2,3"
    bad_number = rows[5].split(",")
    bad_number[1] = "twelve"  # fare
    data.write_text(
        "\n".join([header, *rows[:100], bad_fields, *rows[100:], ",".join(bad_number)]) + "\n"
    )
    out = base / "out"
    from beam_pipeline.cli import main

    code = main(
        [
            "score",
            str(taxi["config"]),
            "--input",
            str(data),
            "--output",
            str(out),
            "--model",
            "1",
            "--json",
        ]
    )
    assert code == 0
    return {"data": data, "out": out, "rows": len(rows)}


def _records(out: Path) -> list[dict]:
    records = []
    for f in sorted(out.glob("predictions-*.jsonl")):
        records += [json.loads(line) for line in f.read_text().splitlines() if line]
    return sorted(records, key=lambda r: int(r["request_id"].rsplit("/", 1)[1]))


def in_process(model_dir: Path, csv: Path) -> np.ndarray:
    """serving_raw called directly on the CSV's values as strings ("" for missing)."""
    import tensorflow as tf

    fn = tf.saved_model.load(str(model_dir)).signatures["serving_raw"]
    names = sorted(fn.structured_input_signature[1])
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    return fn(**{k: tf.constant(frame[k].tolist()) for k in names})["predictions"].numpy()


@pytest.mark.slow
def test_score_writes_one_record_per_readable_row_with_in_process_predictions(
    taxi: dict, scored: dict
) -> None:
    records = _records(scored["out"])
    assert len(records) == scored["rows"] == 15002  # every readable row, once
    assert [int(r["request_id"].rsplit("/", 1)[1]) for r in records] == list(range(15002))
    first = records[0]
    assert set(first) == {
        "request_id",
        "model_name",
        "model_version",
        "time",
        "features",
        "prediction",
    }
    assert (first["model_name"], first["model_version"]) == ("taxi", 1)
    assert first["features"]["payment_type"] == "Credit Card"
    assert first["features"]["pickup_community_area"] is None
    assert first["features"]["trip_start_hour"] == 19  # ints stay ints

    model = pf.stage_output(taxi["runs"][0], "train", "model") / "saved_model"
    want = in_process(model, pf.TAXI_CSV)[:, 0]
    got = np.array([r["prediction"] for r in records], np.float32)
    np.testing.assert_allclose(got, want, atol=1e-6)

    rejected = [
        json.loads(line)
        for f in (scored["out"] / "rejected").glob("*.jsonl")
        for line in f.read_text().splitlines()
        if line
    ]
    reasons = sorted((r["line"], r["reason"]) for r in rejected)
    assert reasons == [
        (102, "expected 18 fields; received 3"),
        (15005, "column 'fare': expected float; received 'twelve'"),
    ]


@pytest.mark.slow
def test_score_job_is_recorded_in_metadata(taxi: dict, scored: dict) -> None:
    from beam_pipeline.core import registry
    from beam_pipeline.core.artifacts import file_digest
    from beam_pipeline.core.config import load
    from beam_pipeline.core.metadata import Store

    store = Store(load(taxi["config"]))
    model = registry.model_by_version(store, 1)
    jobs = [d for d in registry.downstream(store, model) if d["kind"] == "score"]
    job = next(j for j in jobs if j["outputs"]["result"]["uri"] == str(scored["out"]))
    assert (job["rows"], job["rejected"]) == (15002, 2)
    [result] = store.artifacts([job["outputs"]["result"]["id"]])
    assert result.type == "InferenceResult"
    assert result.properties["input_fingerprint"] == file_digest([str(scored["data"])])
    assert result.properties["model_version"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "parquet", "tfrecord"])
def test_other_formats_hold_the_same_predictions(
    taxi: dict, scored: dict, tmp_path: Path, fmt: str, capsys
) -> None:
    small = tmp_path / "small.csv"
    small.write_text("\n".join(pf.TAXI_CSV.read_text().splitlines()[:201]) + "\n")
    out = tmp_path / "out"
    code, summary, err = run_cli(
        [
            "score",
            str(taxi["config"]),
            "--input",
            str(small),
            "--output",
            str(out),
            "--model",
            "1",
            "--format",
            fmt,
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    assert summary["rows"] == 200
    want = np.array([r["prediction"] for r in _records(scored["out"])[:200]], np.float32)
    [file] = out.glob(f"predictions-*{scoring.SUFFIX[fmt]}")
    if fmt == "csv":
        table = pd.read_csv(file)
        assert list(table.columns[:4]) == ["request_id", "model_name", "model_version", "time"]
    elif fmt == "parquet":
        table = pd.read_parquet(file)
        assert table["features"][0]["payment_type"] == "Credit Card"
    else:
        import tensorflow as tf

        parsed = [
            tf.train.Example.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(str(file), compression_type="GZIP")
        ]
        table = pd.DataFrame(
            {
                "request_id": [
                    e.features.feature["request_id"].bytes_list.value[0].decode() for e in parsed
                ],
                "prediction": [
                    e.features.feature["prediction"].float_list.value[0] for e in parsed
                ],
            }
        )
    table = table.assign(n=table["request_id"].str.rsplit("/", n=1).str[1].astype(int))
    np.testing.assert_allclose(table.sort_values("n")["prediction"].to_numpy(), want, atol=1e-6)


@pytest.mark.slow
def test_score_refuses_bad_requests(taxi: dict, scored: dict, tmp_path: Path, capsys) -> None:
    config = str(taxi["config"])
    code, _, err = run_cli(
        [
            "score",
            config,
            "--input",
            str(scored["data"]),
            "--output",
            str(tmp_path / "o"),
            "--model",
            "9",
        ],
        capsys,
    )
    assert code == 2 and "--model: no model version 9; versions are 1..3" in err
    code, _, err = run_cli(
        [
            "score",
            config,
            "--input",
            str(scored["data"]),
            "--output",
            str(scored["out"]),
            "--model",
            "1",
        ],
        capsys,
    )
    assert code == 2 and "already holds predictions" in err
    partial = tmp_path / "partial.csv"
    partial.write_text("fare,company\n1.0,x\n")
    code, _, err = run_cli(
        ["score", config, "--input", str(partial), "--output", str(tmp_path / "p"), "--model", "1"],
        capsys,
    )
    assert code == 1 and "missing the model's input columns" in err and "partial.csv" in err
    code, _, err = run_cli(
        ["score", config, "--input", str(tmp_path / "none*.csv"), "--output", str(tmp_path / "q")],
        capsys,
    )
    assert code == 2 and "no files match" in err  # a user error (issue 10, item 10)


@pytest.mark.slow
def test_both_signatures_serve_or_refuse_the_same_rows(taxi: dict) -> None:
    """Generated rows with missing, empty, wrong-typed and extra values: through the shared row
    check, serving_raw and serving_default give the same predictions for the rows it accepts,
    and serving_default refuses each row it rejects, as serving_raw does for a missing required
    value (serving_raw's graph prunes the parsing of a column the model does not use, so on its
    own it would take a wrong-typed value there; the shared check is what rejects it)."""
    import random

    import tensorflow as tf

    from beam_pipeline.io.raw_inputs import RawSchema, check_rows

    saved = pf.stage_output(taxi["runs"][0], "train", "model") / "saved_model"
    schema = RawSchema.load(saved)
    assert schema is not None and any(c.required for c in schema.columns)
    model = tf.saved_model.load(str(saved))
    raw_fn, example_fn = model.signatures["serving_raw"], model.signatures["serving_default"]
    frame = pd.read_csv(pf.TAXI_CSV, nrows=400, dtype=str, keep_default_na=False)
    rng = random.Random(3)
    rows = []
    for record in frame.to_dict("records"):
        row: dict = {k: v if v != "" else None for k, v in record.items()}
        column = rng.choice(schema.columns)
        row[column.name] = rng.choice([row[column.name], None, "", "  ", "n/a", "1.5", "7"])
        if rng.random() < 0.3:
            row["extra_column"] = "x"
        rows.append(row)
    checked = check_rows(rows, schema)
    assert 50 < len(checked.rejected) < 350 and "extra_column" in checked.extra
    raw = raw_fn(**{k: tf.constant(v.to_pylist()) for k, v in checked.raw_strings().items()})
    by_example = example_fn(examples=tf.constant(checked.examples().to_pylist()))
    np.testing.assert_allclose(
        raw["predictions"].numpy(), by_example["predictions"].numpy(), rtol=1e-5, atol=1e-6
    )
    kinds = {c.name: c.kind for c in schema.columns}
    for i, reason in checked.rejected[:40]:
        name = reason.split("'")[1]
        text = {c: "" if rows[i].get(c) is None else str(rows[i][c]) for c in kinds}
        if "missing value" in reason:  # an assert: it runs even for a column the model ignores
            with pytest.raises(tf.errors.InvalidArgumentError):
                raw_fn(**{k: tf.constant([v]) for k, v in text.items()})
        example = tf.train.Example()  # the other columns typed, this one as it came (text)
        for c, kind in kinds.items():
            v = rows[i].get(c)
            if v is None or not str(v).strip():
                continue
            feature = example.features.feature[c]
            if c == name or kind == "string":
                feature.bytes_list.value.append(str(v).encode())
            elif kind == "int":
                feature.int64_list.value.append(int(v))
            else:
                feature.float_list.value.append(float(v))
        with pytest.raises(tf.errors.InvalidArgumentError):
            example_fn(examples=tf.constant([example.SerializeToString()]))


@pytest.fixture(scope="module")
def small_with_bad_rows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 taxi rows, a short row (unreadable) and a row with a non-number fare (refused)."""
    lines = pf.TAXI_CSV.read_text().splitlines()
    bad_number = lines[6].split(",")
    bad_number[1] = "twelve"  # fare
    data = tmp_path_factory.mktemp("small") / "small.csv"
    data.write_text("\n".join([*lines[:151], "1,2,3", *lines[151:301], ",".join(bad_number)]))
    return data


def _normalized(out: Path) -> dict[str, bytes]:
    """Every file under a score output, by relative name; record times blanked (they differ
    between two runs), gzip TFRecords decompressed, Parquet files as their table's IPC bytes."""
    import gzip
    import re

    import pyarrow.parquet as pq

    files: dict[str, bytes] = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        name = str(path.relative_to(out))
        if name.endswith(".parquet"):
            table = pq.read_table(path).drop(["time"])
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            data = sink.getvalue().to_pybytes()
        elif name.endswith(".gz"):
            data = gzip.decompress(path.read_bytes())
        else:
            data = re.sub(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", b"TIME", path.read_bytes())
        files[name] = data
    return files


@pytest.mark.slow
@pytest.mark.parametrize("fmt", scoring.FORMATS)
def test_in_process_path_writes_what_the_beam_job_writes(
    taxi: dict, small_with_bad_rows: Path, tmp_path: Path, fmt: str, monkeypatch
) -> None:
    """The DirectRunner in-memory shortcut (`run_in_process`) against the Beam job: the same
    files, the same bytes per record (times aside), the same counts in the summary."""
    from beam_pipeline.core.config import load

    config = load(taxi["config"])
    assert scoring.runs_in_process(config, None, str(tmp_path))
    processes = dataclasses.replace(
        config, beam=dataclasses.replace(config.beam, direct_running_mode="multi_processing")
    )
    assert not scoring.runs_in_process(processes, None, str(tmp_path))
    assert not scoring.runs_in_process(config, ["--runner=PortableRunner"], str(tmp_path))
    assert not scoring.runs_in_process(config, None, "s3://bucket/out")

    class SameId:  # both jobs get the same job id, so request ids (and TFRecord CRCs) agree
        @staticmethod
        def uuid4() -> object:
            return type("U", (), {"hex": "0123456789abcdef"})()

    monkeypatch.setattr(scoring, "uuid", SameId)
    summaries, outputs = [], []
    for in_process_path in (True, False):
        monkeypatch.setattr(scoring, "runs_in_process", lambda *a, _v=in_process_path: _v)
        out = tmp_path / f"out-{in_process_path}"
        summary = scoring.score(
            config, str(small_with_bad_rows), str(out), model_version=1, output_format=fmt
        )
        summaries.append((summary["rows"], summary["rejected"]))
        outputs.append(_normalized(out))
    assert summaries[0] == summaries[1] == (300, 2)  # rows in = rows out + rows rejected
    assert outputs[0].keys() == outputs[1].keys()
    assert f"predictions-00000-of-00001{scoring.SUFFIX[fmt]}" in outputs[0]
    for name in outputs[0]:
        assert outputs[0][name] == outputs[1][name], name


def test_number_texts_give_the_json_text_json_values_gives() -> None:
    """score casts the model's numeric inputs to text once, for the model and for the records:
    the records must read as they do when each column is formatted on its own."""
    part = pa.RecordBatch.from_pydict(
        {
            "fare": pa.array([12.45, None, 1e-7, 3.0]),
            "hour": pa.array([19, 0, None, -3], pa.int64()),
            "company": pa.array(["a", None, 'q"', ""]),
            "tips": pa.array([float("nan"), 1.0, 2.5, None]),  # not a model input
        }
    )
    typed = pa.RecordBatch.from_pydict(
        {
            "fare": part.column("fare"),
            "hour": part.column("hour"),
            "company": part.column("company"),
            "tips": pa.array([0.0, 1.0, 2.5, None]),  # differs from the row as read: not shared
        }
    )
    texts = scoring.number_texts(part, typed)
    assert sorted(texts) == ["fare", "hour"]
    preds, ids = np.array([[0.5], [0.25], [1.0], [0.0]]), pa.array(["a", "b", "c", "d"])
    header = predictions.record_header("taxi", 1, "t")
    shared = predictions.json_record_bytes(part, preds, ids, header, texts)
    assert shared == predictions.json_records(part, preds, ids, header).encode()
    assert [json.loads(line)["features"]["fare"] for line in shared.splitlines()] == [
        12.45,
        None,
        1e-7,
        3.0,
    ]


def test_number_texts_take_the_file_text_where_it_stands_for_the_value() -> None:
    """A CSV's plain number texts (`readers.Chunk.number_texts`) go to the model and the records
    as they are, for a model input equal to its checked column and for a column that is no
    model input; a model input the check changed is printed from its checked values."""
    part = pa.RecordBatch.from_pydict(
        {
            "fare": pa.array([1.5, None]),
            "hour": pa.array([19, 0], pa.int64()),
            "tips": pa.array([0.0, 2.5]),  # not a model input
        }
    )
    typed = pa.RecordBatch.from_pydict(
        {"fare": part.column("fare"), "hour": pa.array([19, 1], pa.int64())}
    )
    read = {
        "fare": pa.array(["1.50", None]),
        "hour": pa.array(["19", "0"]),
        "tips": pa.array(["0.0", "2.5"]),
    }
    texts = scoring.number_texts(part, typed, read)
    assert sorted(texts) == ["fare", "tips"]
    assert texts["fare"].to_pylist() == ["1.50", None] and texts["tips"] is read["tips"]
    preds, ids = np.array([[0.5], [0.25]]), pa.array(["a", "b"])
    header = predictions.record_header("taxi", 1, "t")
    lines = predictions.json_record_bytes(part, preds, ids, header, texts).splitlines()
    assert b'"fare":1.50,' in lines[0] and b'"tips":0.0}' in lines[0]
    want = [
        json.loads(line)["features"]
        for line in predictions.json_records(part, preds, ids, header).splitlines()
    ]
    assert [json.loads(line)["features"] for line in lines] == want
