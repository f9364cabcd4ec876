"""The one prediction-record writer (batch scoring and the serving log)."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa

from beam_pipeline.io.predictions import FIELDS, iso_time, json_lines


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
