"""The one prediction-record writer (batch scoring and the serving log)."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from beam_pipeline.io.predictions import (
    FIELDS,
    iso_time,
    json_lines,
    json_record_bytes,
    json_values,
    record_header,
    string_buffers,
)
from beam_pipeline.io.raw_inputs import per_type


def test_json_lines_match_json_dumps_field_by_field() -> None:
    features = pa.RecordBatch.from_arrays(
        [
            pa.array([1, None, 3]),
            pa.array([1.5, float("nan"), None]),
            pa.array(['a"b\\c', None, "é\n"]),
        ],
        names=["n", "x", "s"],
    )
    text = json_lines(
        features,
        np.array([[0.25, 0.75], [1, 0], [0.5, 0.5]]),
        ["r/0", "r/1", "r/2"],
        "taxi",
        3,
        "2026-01-02T03:04:05.006Z",
    )
    assert text.endswith("\n") and text.count("\n") == 3
    rows = [json.loads(line) for line in text.splitlines()]
    assert [tuple(r) for r in rows] == [FIELDS] * 3
    assert rows[0] == {
        "request_id": "r/0",
        "model_name": "taxi",
        "model_version": 3,
        "time": "2026-01-02T03:04:05.006Z",
        "features": {"n": 1, "x": 1.5, "s": 'a"b\\c'},
        "prediction": [0.25, 0.75],
    }
    assert rows[1]["features"] == {"n": None, "x": None, "s": None}  # NaN is not JSON: null
    assert rows[2]["features"]["s"] == "é\n"


def test_one_output_is_a_number_and_an_empty_batch_is_empty() -> None:
    features = pa.RecordBatch.from_arrays([pa.array(["a"])], names=["c"])
    [row] = [
        json.loads(x) for x in json_lines(features, np.array([0.5]), ["r"], "m", 1).splitlines()
    ]
    assert row["prediction"] == 0.5
    empty = pa.RecordBatch.from_arrays([pa.array([], pa.string())], names=["c"])
    assert json_lines(empty, np.zeros((0, 1)), [], "m", 1) == ""


def test_request_ids_with_quotes_backslashes_or_controls_stay_json() -> None:
    """score makes ids from the input file's name (`<job>/<file>/<row>`): a name with a quote
    or a backslash broke the line's JSON."""
    features = pa.RecordBatch.from_arrays([pa.array(["a", "b", "c"])], names=["c"])
    ids = ['j/say "hi".csv/1', "j/back\\slash.csv/2", "j/tab\tname.csv/3"]
    text = json_lines(features, np.array([0.1, 0.2, 0.3]), ids, "m", 1)
    assert [json.loads(x)["request_id"] for x in text.splitlines()] == ids


def test_iso_time_is_utc_with_milliseconds() -> None:
    when = dt.datetime(2026, 1, 2, 4, 4, 5, 6789, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert iso_time(when) == "2026-01-02T03:04:05.006Z"
    assert len(iso_time()) == len("2026-01-02T03:04:05.006Z") and iso_time().endswith("Z")


# ---------------------------------------------------------------------------------------------
# json_record_bytes (a compiled loop) against the Arrow joins it replaced, on generated batches


def _arrow_json_record_bytes(
    batch: pa.RecordBatch,
    predictions: np.ndarray,
    ids: pa.Array,
    header: str,
    number_texts: dict[str, pa.Array] | None = None,
) -> bytes:
    """The records as they were built before the compiled loop (7f07d85): one Arrow
    ``binary_join_element_wise`` of every field's text. The reference for the bytes."""
    texts = number_texts or {}
    rest = [n for n in batch.schema.names if n not in texts]
    part = pa.RecordBatch.from_arrays([batch.column(n) for n in rest], rest)
    values = per_type(part, json_values) if rest else {}
    parts: list = []
    for i, name in enumerate(batch.schema.names):
        text = texts.get(name)
        value = pc.fill_null(text, "null") if text is not None else values[name]
        parts += [("{" if i == 0 else ",") + json.dumps(name) + ":", value]
    if not parts:
        parts = ["{"]
    _, id_bytes = string_buffers(ids)
    if ((id_bytes < 0x20) | (id_bytes == 0x22) | (id_bytes == 0x5C)).any():
        ids = pa.array([json.dumps(v)[1:-1] for v in ids.to_pylist()], pa.string())
    cols = [
        pc.cast(pa.array(predictions[:, i].astype(np.float32)), pa.string())
        for i in range(predictions.shape[1])
    ]
    if len(cols) == 1:
        prediction = cols[0]
    else:
        prediction = pc.binary_join_element_wise(
            "[", pc.binary_join_element_wise(*cols, ","), "]", ""
        )
    joined = pc.binary_join_element_wise(
        '{"request_id":"', ids, header, *parts, '},"prediction":', prediction, "}\n", ""
    )
    return string_buffers(joined)[1].tobytes()[:-1]


_TEXT_POOL = [
    "plain",
    "",
    " ",
    'say "hi"',
    "back\\slash",
    '\\"',
    "ünï cödé",
    "日本語",
    "emoji 🚕",
    "trailing\\",
    '"',
    "x" * 5000,  # longer than any buffer the loop copies at once
    "Chicago Elite Cab Corp. (Chicago Carriag",
]
_CONTROL_POOL = ["tab\tand\nnewline", "bell\x07", "cr\r", "\x1f"]


def _random_batch(rng: np.random.Generator, rows: int, controls: bool) -> pa.RecordBatch:
    def nulls(n: int) -> np.ndarray:
        return rng.random(n) < rng.choice([0.0, 0.2, 0.9])

    floats = rng.choice(
        [0.0, -0.0, 1.5, 12.45, 1e-7, 1e21, -3.25e-300, 41.878865584, np.nan, np.inf, -np.inf],
        rows,
    ) * rng.choice([1.0, 1.0, 3.0, 1e-3], rows)
    ints = rng.integers(-(2**62), 2**62, rows) // rng.choice([1, 10**6, 2**61], rows)
    pool = _TEXT_POOL + (_CONTROL_POOL if controls else [])
    strings = [pool[i] for i in rng.integers(0, len(pool), rows)]
    strings_b = [pool[i] for i in rng.integers(0, len(_TEXT_POOL), rows)]
    columns = {
        "fare": pa.array(floats, mask=nulls(rows)),
        "hour": pa.array(ints, pa.int64(), mask=nulls(rows)),
        "company": pa.array(strings, mask=nulls(rows)),
        'odd "name" é': pa.array(strings_b, mask=nulls(rows)),
        "flag": pa.array(rng.random(rows) < 0.5, mask=nulls(rows)),
        "tips": pa.array(rng.random(rows) * 100, mask=nulls(rows)),
    }
    names = list(columns)
    keep = sorted(rng.choice(len(names), rng.integers(0, len(names) + 1), replace=False))
    return pa.RecordBatch.from_arrays([columns[names[i]] for i in keep], [names[i] for i in keep])


@pytest.mark.parametrize("seed", range(40))
def test_json_record_bytes_match_the_arrow_joins_byte_for_byte(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = int(rng.choice([0, 1, 2, 7, 300]))
    batch = _random_batch(rng, rows, controls=seed % 4 == 0)
    if seed % 5 == 1 and rows:  # a slice: offsets that do not start at 0
        batch = batch.slice(1)
        rows -= 1
    outputs = int(rng.choice([1, 1, 2, 5]))
    predictions = rng.random((rows, outputs)).astype(np.float32)
    if seed % 7 == 3 and rows:
        predictions[0, 0] = np.float32(1e-8)
    names = ['j/say "hi".csv/', "j/back\\slash.csv/", "j/tab\tname.csv/", "0123/data.csv/"]
    ids = pa.array([f"{names[seed % 4]}{i}" for i in range(rows)], pa.string())
    header = record_header('taxi "v"', 3, "2026-01-02T03:04:05.006Z")
    texts = {}
    for name in batch.schema.names:  # score's texts: finite numbers cast once
        column = batch.column(name)
        numeric = pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
        if numeric and seed % 2 and pc.all(pc.is_finite(column)).as_py() is not False:
            texts[name] = pc.cast(column, pa.string())
    for given in (None, texts):
        expected = _arrow_json_record_bytes(batch, predictions, ids, header, given)
        assert json_record_bytes(batch, predictions, ids, header, given) == expected
    for line in expected.splitlines():
        json.loads(line)  # valid JSON (NaN and infinities are null)
