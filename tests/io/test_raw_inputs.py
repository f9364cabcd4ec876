"""beam_pipeline.io.raw_inputs: one row check for serving_raw and serving_default."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

import beam_pipeline  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is used)
from beam_pipeline.io.raw_inputs import RawColumn, RawSchema, check_rows

SCHEMA = RawSchema(
    (
        RawColumn("fare", "float", required=True),
        RawColumn("hour", "int", required=True),
        RawColumn("payment", "string", required=False),
        RawColumn("tips", "float", required=False),
    )
)
ROWS = [
    {"fare": 12.5, "hour": 3, "payment": "Cash", "tips": 1.0},  # fine
    {"fare": "7", "hour": "4.0", "payment": None},  # fine: numeric text, integral "4.0"
    {"fare": None, "hour": 5, "payment": "Card"},  # missing required
    {"fare": "  ", "hour": 5},  # whitespace-only: missing
    {"fare": "abc", "hour": 5},  # wrong type
    {"fare": 1.0, "hour": 3.5},  # not an int
    {"fare": 1.0, "hour": 2, "payment": 7, "tips": "", "extra": "x"},  # number as text; extra
    {"hour": 2},  # absent required column
    {"fare": 2.0, "hour": 99999999999999999999},  # out of int64
    {"fare": True, "hour": 1},  # a boolean is not a number
]
WANT_REJECTED = [
    (2, "column 'fare': missing value (the model requires it)"),
    (3, "column 'fare': missing value (the model requires it)"),
    (4, "column 'fare': expected float; received 'abc'"),
    (5, "column 'hour': expected int; received '3.5'"),
    (7, "column 'fare': missing value (the model requires it)"),
    (8, "column 'hour': expected int; received '99999999999999999999'"),
    (9, "column 'fare': expected float; received 'true'"),
]


def test_row_dicts_are_accepted_or_rejected_naming_the_column() -> None:
    checked = check_rows(ROWS, SCHEMA)
    assert checked.rejected == WANT_REJECTED
    assert checked.accepted.tolist() == [True, True, False, False, False, False, True] + [False] * 3
    assert checked.extra == ["extra"]
    assert checked.batch.to_pylist() == [
        {"fare": 12.5, "hour": 3, "payment": "Cash", "tips": 1.0},
        {"fare": 7.0, "hour": 4, "payment": None, "tips": None},
        {"fare": 1.0, "hour": 2, "payment": "7", "tips": None},
    ]
    assert {k: v.to_pylist() for k, v in checked.raw_strings().items()} == {
        "fare": ["12.5", "7", "1"],
        "hour": ["3", "4", "2"],
        "payment": ["Cash", "", "7"],
        "tips": ["1", "", ""],
    }


def test_text_columns_give_the_same_verdicts_as_row_dicts() -> None:
    """A CSV-like batch (every value text, "" = missing) is checked exactly like the dicts."""
    names = ["fare", "hour", "payment", "tips", "extra"]
    text = {
        n: [
            None if r.get(n) is None else str(r[n]).lower() if isinstance(r[n], bool) else str(r[n])
            for r in ROWS
        ]
        for n in names
    }
    text["hour"][5] = "3.5"
    batch = pa.RecordBatch.from_arrays([pa.array(text[n], pa.string()) for n in names], names=names)
    checked = check_rows(batch, SCHEMA)
    assert checked.rejected == WANT_REJECTED
    assert checked.batch.equals(check_rows(ROWS, SCHEMA).batch)


def test_both_signature_inputs_parse_to_the_same_tensors() -> None:
    """raw_strings through serving_raw's parser and examples through parse_example agree."""
    import tensorflow as tf

    from beam_pipeline.stages.train import parse_raw

    spec = {
        "fare": tf.io.FixedLenFeature([1], tf.float32),
        "hour": tf.io.FixedLenFeature([1], tf.int64),
        "payment": tf.io.VarLenFeature(tf.string),
        "tips": tf.io.FixedLenFeature([1], tf.float32, default_value=[0.0]),
    }
    schema = RawSchema.from_feature_spec(spec)
    assert schema == RawSchema(SCHEMA.columns[:3] + (RawColumn("tips", "float", False),))
    rng = random.Random(0)

    def pick(*options: object) -> object:  # the first option (a good value) half of the time
        return options[0] if rng.random() < 0.5 else rng.choice(options[1:])

    rows = [
        {
            "fare": pick(round(rng.gauss(10, 3), 2), None, "", "x", "12.5"),
            "hour": pick(rng.randrange(24), None, 2.5, str(rng.randrange(24)), "7.0"),
            "payment": pick("Cash", None, " ", "Card", 3),
            "tips": pick(1.5, None, "2", "bad", ""),
            "other": pick("ignored", None),
        }
        for _ in range(300)
    ]
    checked = check_rows(rows, schema)
    assert 30 < checked.accepted.sum() < 270
    parsed = tf.io.parse_example(tf.constant(checked.examples().to_pylist()), spec)
    raw = {
        k: parse_raw(tf.constant(v.to_pylist()), spec[k], k)
        for k, v in checked.raw_strings().items()
    }
    for name in ("fare", "hour", "tips"):
        np.testing.assert_array_equal(raw[name].numpy(), parsed[name].numpy(), err_msg=name)
    assert raw["payment"].values.numpy().tolist() == parsed["payment"].values.numpy().tolist()
    assert raw["payment"].indices.numpy().tolist() == parsed["payment"].indices.numpy().tolist()
    # Every rejected row is refused by the serving_raw parser too, for the column named.
    for i, reason in checked.rejected:
        column = reason.split("'")[1]
        value = rows[i][column]
        text = "" if value is None else str(value)
        with pytest.raises(tf.errors.InvalidArgumentError):
            parse_raw(tf.constant([text]), spec[column], column)


def test_schema_round_trips_beside_a_saved_model(tmp_path) -> None:
    SCHEMA.save(tmp_path)
    assert RawSchema.load(tmp_path) == SCHEMA
    assert RawSchema.load(tmp_path / "nothing") is None


def test_schema_loads_from_a_model_on_an_object_store(s3_server) -> None:
    from beam_pipeline.io import filesystem

    filesystem.configure(s3_server.beam_options)
    model = s3_server.bucket("raw-schema") + "/models/7/saved_model"
    filesystem.write_text(f"{model}/assets.extra/raw_schema.json", SCHEMA.to_json())
    assert RawSchema.load(model) == SCHEMA
    assert RawSchema.load(s3_server.bucket("raw-schema-none") + "/saved_model") is None


def test_int_text_matches_python_int_at_the_int64_edges() -> None:
    """Differential: `to_numbers` against Python's int on generated digits (signs, leading
    zeros, `.0`, 1 to 21 digits) and the exact int64 limits."""
    import re

    from beam_pipeline.io.raw_inputs import to_numbers

    texts = [str(2**63 - 1), str(2**63), str(-(2**63)), str(-(2**63) - 1), "+5", "-0", "007"]
    texts += ["0009223372036854775807", "12.000", "1.5", "abc", None]
    rng = random.Random(0)
    for _ in range(3000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 21)))
        texts.append(rng.choice(["", "-", "+"]) + digits + rng.choice(["", ".0", ".00"]))
    got, invalid = to_numbers(pa.array(texts, pa.string()), "int")
    for text, value, bad in zip(texts, got.to_pylist(), invalid, strict=True):
        if text is None:
            assert value is None and not bad
        elif not re.fullmatch(r"[+-]?[0-9]+(\.0*)?", text):
            assert bad and value is None, text
        elif -(2**63) <= int(text.split(".")[0]) < 2**63:
            assert value == int(text.split(".")[0]) and not bad, text
        else:
            assert value is None and bad, text


def test_the_penguins_schema_makes_every_feature_required_without_a_shape() -> None:
    """The curated penguins schema has presence min_fraction 1 and no shape, so tf.Transform's
    spec is VarLen (no default) for all four features; required must still mean required, so
    an empty row and a row missing a feature are refused (REST, gRPC and score share this)."""
    from pathlib import Path

    import tensorflow as tf
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tensorflow_transform.tf_metadata import schema_utils

    from beam_pipeline.io.raw_inputs import always_present

    path = Path(__file__).resolve().parents[2] / "configs" / "penguins" / "schema.pbtxt"
    proto = text_format.Parse(path.read_text(), schema_pb2.Schema())
    spec = schema_utils.schema_as_feature_spec(proto).feature_spec
    assert all(isinstance(f, tf.io.VarLenFeature) for f in spec.values())
    schema = RawSchema.from_feature_spec(
        spec, exclude=["species"], always_present=always_present(proto)
    )
    assert [c.name for c in schema.columns if c.required] == schema.names
    assert len(schema.names) == 4
    full = {"culmen_length_mm": 0.5, "culmen_depth_mm": 0.5, "flipper_length_mm": 0.5}
    full["body_mass_g"] = 0.5
    partial = {k: v for k, v in full.items() if k != "body_mass_g"}
    checked = check_rows([{}, partial, full], schema)
    assert checked.accepted.tolist() == [False, False, True]
    assert checked.rejected[1] == (1, "column 'body_mass_g': missing value (the model requires it)")
    assert not RawSchema.from_feature_spec(spec, exclude=["species"]).columns[0].required


def test_non_finite_floats_are_refused_and_rejected_rows_stay_strict_json() -> None:
    import json
    import math

    from beam_pipeline.io.raw_inputs import strict_json

    schema = RawSchema((RawColumn("fare", "float", True),))
    rows = [{"fare": 1.5}, {"fare": math.nan}, {"fare": "inf"}, {"fare": "1e400"}, {"fare": 1e30}]
    checked = check_rows(rows, schema)
    assert checked.accepted.tolist() == [True, False, False, False, True]
    assert all("expected a finite float" in reason for _, reason in checked.rejected)
    text = strict_json({"fare": -math.inf, "n": 1})
    assert json.loads(text) == {"fare": "-inf", "n": 1}


def test_json_columns_shortcut_decides_as_check_rows_on_random_batches(monkeypatch) -> None:
    """check_json_columns (typed per kind, falling back to check_rows on any unusual value) and
    check_rows give the same verdicts, messages, typed values and serving_raw strings."""
    from beam_pipeline.io import raw_inputs
    from beam_pipeline.io.raw_inputs import check_json_columns

    slowly = []
    original = raw_inputs._check_json_slowly
    monkeypatch.setattr(
        raw_inputs, "_check_json_slowly", lambda *a: slowly.append(1) or original(*a)
    )

    plain = {
        "fare": [12.5, 7, None, 0.1, -3.25, 1e300],
        "hour": [3, 0, None, -12, 2**62],
        "payment": ["Cash", " Card ", None, "é", "   ", ""],
        "tips": [1.0, 2, None],
    }
    odd = ["7", " 4.0 ", "abc", True, "nan", 2**70, 3.5, "", "1e400", "-0"]
    as_text = {"fare": ["7.5", " 1 ", "", "1e3", "+2.5"], "hour": ["4", " 5 ", "", "4.0"]}
    rng = random.Random(7)
    for trial in range(300):
        rows = rng.randint(0, 12)
        style = rng.choice(["plain", "plain", "text", "odd"])
        columns: dict[str, list] = {}
        for col in SCHEMA.columns:
            if rng.random() < 0.1:
                continue  # absent: missing in every row
            pool = plain[col.name]
            if style == "text" and col.name in as_text:
                pool = as_text[col.name] + [None]
            values = [rng.choice(pool) for _ in range(rows)]
            if style == "odd" and rows:
                values[rng.randrange(rows)] = rng.choice(odd)
            columns[col.name] = values
        fast = check_json_columns(columns, rows, SCHEMA)
        records = [{k: v[i] for k, v in columns.items() if v[i] is not None} for i in range(rows)]
        slow = check_rows(records, SCHEMA)
        where = f"trial {trial}: {columns}"
        assert fast.rejected == slow.rejected, where
        assert fast.accepted.tolist() == slow.accepted.tolist(), where
        assert fast.batch.to_pydict() == slow.batch.to_pydict(), where
        fast_text = {k: v.to_pylist() for k, v in fast.raw_strings().items()}
        assert fast_text == {k: v.to_pylist() for k, v in slow.raw_strings().items()}, where
    assert len(slowly) < 130  # the odd batches (about a quarter); the rest took the shortcut


def test_text_columns_shortcut_types_as_check_rows_on_random_batches() -> None:
    """check_text_columns (a gRPC client's UTF-8 text, typed per kind from the joined text)
    either declines (None) or gives check_rows' verdicts and typed values, and its `Kind`
    values are those typed values; it takes the plain batches and declines every odd one."""
    from beam_pipeline.io.raw_inputs import check_text_columns

    plain = {
        "fare": ["12.5", "7", "0.1", "-3.25", "1e300", ".5", "1.", "+2E-3", "0000.10"],
        "hour": ["3", "0", "-12", "007", "-0", str(10**18 - 1)],
        "payment": ["Cash", " Card ", "é", "a b", "", "0"],
        "tips": ["1.0", "2", "", "3.14159265358979311"],
    }
    odd = ["nan", "inf", " 4", "4.0", "+5", "abc", "1e400", "   ", "\xa0", "a\nb", "\udcff"]
    rng = random.Random(11)
    taken = declined_odd = 0
    for trial in range(400):
        rows = rng.randint(0, 10)
        is_odd = rng.random() < 0.3 and rows > 0
        columns: dict[str, list[bytes] | None] = {}
        for col in SCHEMA.columns:
            if rng.random() < 0.1 and not col.required:
                continue  # absent: missing in every row
            columns[col.name] = [rng.choice(plain[col.name]).encode() for _ in range(rows)]
        if is_odd:
            name = rng.choice([c.name for c in SCHEMA.columns if c.name in columns])
            value = rng.choice(odd)
            text = value.encode("utf-8", "surrogateescape") if value != "\udcff" else b"\xff"
            columns[name][rng.randrange(rows)] = text  # type: ignore[index]
        fast = check_text_columns(columns, rows, SCHEMA)
        decoded = {
            k: [x.decode("utf-8", "replace") or None for x in v] for k, v in columns.items() if v
        }
        slow = check_rows(
            [{k: v[i] for k, v in decoded.items() if v[i] is not None} for i in range(rows)],
            SCHEMA,
        )
        where = f"trial {trial}: {columns}"
        if fast is None:
            assert is_odd or not slow.accepted.all(), where  # plain batches are taken
            declined_odd += is_odd
            continue
        taken += 1
        assert fast.rejected == slow.rejected == [], where
        assert fast.accepted.tolist() == slow.accepted.tolist(), where
        assert fast.batch.to_pydict() == slow.batch.to_pydict(), where
        assert fast.kinds is not None
        for kind in fast.kinds:
            assert kind.json == kind.values.to_pylist(), where
    assert taken > 200 and declined_odd > 60, (taken, declined_odd)


def test_text_columns_parse_numbers_as_arrow_does() -> None:
    """numpy's parse of plain decimal text (check_text_columns) gives Arrow's values (check_rows)
    for random decimals of every length and exponent, and ints up to 18 digits."""
    from beam_pipeline.io.raw_inputs import check_text_columns

    rng = random.Random(5)
    n = 3000
    floats = []
    for _ in range(n):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 25)))
        cut = rng.randint(0, len(digits))
        text = f"{rng.choice(['', '-', '+'])}{digits[:cut]}.{digits[cut:]}".rstrip(".") or "0"
        if rng.random() < 0.5:
            text += f"e{rng.randint(-340, 280)}"  # subnormals and zeros too; all under 1e308
        floats.append(text.encode())
    ints = [str(rng.randint(-(10**18) + 1, 10**18 - 1)).encode() for _ in range(n)]
    columns = {"fare": floats, "hour": ints}
    fast = check_text_columns(columns, n, SCHEMA)
    slow = check_rows(pa.table({k: [x.decode() for x in v] for k, v in columns.items()}), SCHEMA)
    assert fast is not None and slow.accepted.all()
    assert fast.batch.column("fare").to_pylist() == slow.batch.column("fare").to_pylist()
    assert fast.batch.column("hour").to_pylist() == slow.batch.column("hour").to_pylist()
