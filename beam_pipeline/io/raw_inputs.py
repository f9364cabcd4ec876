"""One row check for every path that feeds a model raw features (score, the server, tests).

A model takes raw columns through two signatures: ``serving_default`` (serialized tf.Examples,
parsed with the transform graph's raw feature spec) and ``serving_raw`` (one CSV-like string per
column). `check_rows` decides, once and the same way for both, which rows can be served, and says
why the others cannot, naming the column:

* a column the spec declares fixed-length without a default, or that the schema says every
  example has (presence ``min_fraction`` 1, with or without a shape), is **required**: a
  missing value (null, absent, empty or whitespace-only text) rejects the row;
* an ``int`` column takes integers (``12``, ``"12"``, ``12.0``); a ``float`` column takes finite
  numbers and numeric text (NaN, ±Infinity and numbers beyond float64 such as ``1e400`` reject
  the row, as numbers or as text: "column 'fare': expected a finite float; received 'nan'"); a
  ``string`` column takes text (numbers are written as text);
* any other value rejects the row ("column 'fare': expected float; received 'abc'");
* columns the model does not take are ignored and listed in `CheckedRows.extra`.

The accepted rows come back typed (`CheckedRows.batch`), as ``serving_raw`` strings
(`CheckedRows.raw_strings`) and as serialized tf.Examples (`CheckedRows.examples`); both
signatures give the same predictions for them. The work is per column on Arrow arrays; a list of
row dicts (a JSON request) is turned into columns first.

The model's raw schema is saved beside the SavedModel as ``assets.extra/raw_schema.json`` by
train (`RawSchema.save`); `RawSchema.load` reads it back.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from beam_pipeline.core.errors import DataError

KINDS = ("int", "float", "string")
ARROW = {"int": pa.int64(), "float": pa.float64(), "string": pa.string()}
SCHEMA_FILE = "raw_schema.json"
_INT_TEXT = r"^[+-]?[0-9]+(\.0*)?$"
_INT64_MAX_DIGITS, _INT64_MIN_DIGITS = str(2**63 - 1), str(2**63)  # magnitudes, without a sign
_FLOAT_TEXT = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$|^[+-]?(inf|infinity|nan)$"


def strict_json(row: Mapping[str, Any]) -> str:
    """A row's values as strict JSON (a rejected row's record): NaN and ±Infinity, which JSON
    has not, as their text ("nan", "inf"); other non-JSON values as their ``str``."""
    return json.dumps(
        {k: str(v) if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()},
        default=str,
        allow_nan=False,
    )


def always_present(schema: Any) -> set[str]:
    """Features a ``tensorflow_metadata`` Schema says every example has: presence
    ``min_fraction`` 1 (``min_count`` alone only says some example has it, so it does not
    count)."""
    return {
        f.name for f in schema.feature if f.HasField("presence") and f.presence.min_fraction >= 1.0
    }


@dataclass(frozen=True)
class RawColumn:
    """One raw input of a model: ``kind`` is int, float or string."""

    name: str
    kind: str
    required: bool = False


@dataclass(frozen=True)
class RawSchema:
    """The raw columns a model takes (label columns excluded), in signature order."""

    columns: tuple[RawColumn, ...]

    @functools.cached_property
    def names(self) -> list[str]:
        """The column names (kept: the server reads them for every request)."""
        return [c.name for c in self.columns]

    @functools.cached_property
    def name_set(self) -> frozenset[str]:
        return frozenset(self.names)

    @classmethod
    def from_feature_spec(
        cls,
        spec: Mapping[str, Any],
        exclude: Sequence[str] = (),
        always_present: Collection[str] = (),
    ) -> RawSchema:
        """From a tf.Transform raw feature spec (``tft.TFTransformOutput.raw_feature_spec()``).

        A column is required when the spec makes it fixed-length without a default, or when it
        is in ``always_present`` (`always_present` of the schema: presence ``min_fraction`` 1,
        with or without a shape; a schema TFDV inferred says so of every feature the training
        statistics never saw missing)."""
        import tensorflow as tf

        columns = []
        for name in sorted(spec):
            if name in exclude:
                continue
            feature = spec[name]
            kind = (
                "string"
                if feature.dtype == tf.string
                else "int"
                if feature.dtype.is_integer
                else "float"
            )
            required = (
                isinstance(feature, tf.io.FixedLenFeature) and feature.default_value is None
            ) or name in always_present
            columns.append(RawColumn(name, kind, required))
        return cls(tuple(columns))

    def to_json(self) -> str:
        return json.dumps(
            {
                "columns": [
                    {"name": c.name, "kind": c.kind, "required": c.required} for c in self.columns
                ]
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> RawSchema:
        data = json.loads(text)
        return cls(
            tuple(RawColumn(c["name"], c["kind"], bool(c["required"])) for c in data["columns"])
        )

    def save(self, saved_model: str | Path) -> Path:
        """Writes ``{saved_model}/assets.extra/raw_schema.json``."""
        from beam_pipeline.io.filesystem import as_path

        path = as_path(saved_model) / "assets.extra" / SCHEMA_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, saved_model: str | Path) -> RawSchema | None:
        """The schema saved with a SavedModel (a local folder or an object-store URI); None for
        a model exported without one."""
        from beam_pipeline.io import filesystem

        path = filesystem.as_path(filesystem.join(str(saved_model), "assets.extra", SCHEMA_FILE))
        return cls.from_json(path.read_text()) if path.is_file() else None


@dataclass(frozen=True)
class Kind:
    """The columns of one kind as `check_json_columns` typed them, concatenated: column
    ``names[j]`` is rows ``j*n .. j*n+n`` of ``values``. ``json``: the same values as the JSON
    values they were typed from (a list), when those are exactly them (ints in an int column,
    numbers in a float column, text with no blank in a string column), else None."""

    names: tuple[str, ...]
    values: pa.Array
    json: list[Any] | None = None

    @functools.cached_property
    def number_texts(self) -> list[bytes]:
        """The JSON text of each of ``json``'s numbers (``null`` for a missing one), from one
        orjson call: a number kind's values as the server's inputs and its log both spell them."""
        if not self.json:
            return []
        return orjson.dumps(self.json)[1:-1].split(b",")


@dataclass
class CheckedRows:
    """The outcome of `check_rows`.

    Attributes:
        accepted: per input row, True when it can be served.
        rejected: ``(row index, reason)`` for every other row, in row order; the reason names
            the first column that failed.
        batch: the accepted rows, one typed column per schema column (int64, float64, string;
            null = missing).
        extra: input columns the model does not take (ignored).
        kinds: when `check_json_columns` typed every column by its shortcut and accepted every
            row: the columns of each kind concatenated (`Kind`; a server's batch is turned into
            inputs and log records from them, a few calls per kind, not per column).
    """

    accepted: np.ndarray
    rejected: list[tuple[int, str]]
    batch: pa.RecordBatch
    extra: list[str] = field(default_factory=list)
    kinds: tuple[Kind, ...] | None = None

    def raw_strings(self) -> dict[str, pa.Array]:
        """``serving_raw`` inputs: CSV-like text per column, ``""`` for a missing value.

        Columns of one type are cast and filled together (a few Arrow calls per batch, not two
        per column: at a server's batch of 15 rows the calls' fixed cost was the work)."""
        return per_type(self.batch, lambda values: pc.fill_null(_as_text(values), ""))

    def examples(self) -> pa.BinaryArray:
        """``serving_default`` inputs: one serialized tf.Example per accepted row."""
        from beam_pipeline.io.example_coder import encode

        return encode(self.batch)


def check_rows(
    data: pa.RecordBatch | pa.Table | Sequence[Mapping[str, Any]], schema: RawSchema
) -> CheckedRows:
    """Checks raw rows against a model's raw schema; see the module doc for the rules.

    Args:
        data: Arrow columns (typed or text), or a list of row dicts as a JSON API receives.
        schema: the model's `RawSchema`.
    """
    if isinstance(data, pa.RecordBatch | pa.Table):
        names = list(data.schema.names)
        rows = data.num_rows
        columns = {n: _combined(data.column(n)) for n in names}
    else:
        rows = len(data)
        names = []
        seen: set[str] = set()
        for record in data:
            if not isinstance(record, Mapping):
                raise DataError(f"expected each row to be an object; received {record!r}")
            for key in record:
                if key not in seen:
                    seen.add(key)
                    names.append(key)
        wanted = set(schema.names)
        columns = {n: json_column([r.get(n) for r in data]) for n in names if n in wanted}
    bad = np.zeros(rows, bool)
    reasons: dict[int, str] = {}
    typed = []
    for col in schema.columns:
        values = columns.get(col.name)
        if values is None:
            values = pa.nulls(rows, ARROW[col.kind])
        value, failed, why = _conform(values, col)
        for i in np.flatnonzero(failed & ~bad):
            reasons[int(i)] = why(int(i))
        bad |= failed
        typed.append(value)
    batch = pa.RecordBatch.from_arrays(typed, names=schema.names)
    if bad.any():
        batch = batch.filter(pa.array(~bad))
    known = set(schema.names)
    extra = [n for n in names if n not in known]
    return CheckedRows(~bad, sorted(reasons.items()), batch, extra)


def per_type(batch: pa.RecordBatch, fn: Any) -> dict[str, pa.Array]:
    """``fn`` applied to the columns of each type of ``batch`` at once (concatenated, then cut
    back into columns, zero-copy): ``{name: fn(column)}`` in the batch's column order. ``fn``
    must work value by value."""
    rows = batch.num_rows
    by_type: dict[pa.DataType, list[int]] = {}
    for i, f in enumerate(batch.schema):
        by_type.setdefault(f.type, []).append(i)
    out: dict[int, pa.Array] = {}
    for indices in by_type.values():
        columns = [_combined(batch.column(i)) for i in indices]
        done = fn(pa.concat_arrays(columns) if len(columns) > 1 else columns[0])
        for j, i in enumerate(indices):
            out[i] = done.slice(j * rows, rows) if len(indices) > 1 else done
    return {batch.schema.names[i]: out[i] for i in range(batch.num_columns)}


def _as_text(values: pa.Array) -> pa.Array:
    return values if pa.types.is_string(values.type) else pc.cast(values, pa.string())


_NONE = type(None)
_PLAIN = {"int": {int, _NONE}, "float": {int, float, _NONE}, "string": {str, _NONE}}


def check_json_columns(
    columns: Mapping[str, Sequence[Any]], rows: int, schema: RawSchema
) -> CheckedRows:
    """`check_rows` for JSON values given as one list per column (``rows`` values each; an
    absent column is missing in every row), with the same verdicts, messages and typed values.

    A shortcut for what a well-formed request sends: when every int column holds only ints,
    every float column only finite numbers and every string column only text (None: missing),
    the columns of each kind are typed together, in about five Arrow calls per batch instead
    of about eight per column; so are number columns that hold only text (gRPC's string
    tensors), parsed by `to_numbers` once per kind. Any other value (text in a number column,
    a bool, NaN, an int past int64...) sends the batch through `check_rows`, which decides it
    and words the message (tests/io/test_raw_inputs.py compares both on random batches)."""
    kinds: dict[str, list[RawColumn]] = {}
    for col in schema.columns:
        kinds.setdefault(col.kind, []).append(col)
    typed: dict[str, pa.Array] = {}
    grouped = []
    for kind, cols in kinds.items():
        values = [v for c in cols for v in (columns.get(c.name) or (None,) * rows)]
        types = set(map(type, values))
        text = kind != "string" and types <= _PLAIN["string"] and str in types
        if not (text or types <= _PLAIN[kind]):
            return _check_json_slowly(columns, rows, schema)
        try:
            array = pa.array(values, pa.string() if text else ARROW[kind])
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # past int64 / 2**53
            return _check_json_slowly(columns, rows, schema)
        exact = not text
        if kind == "string" or text:  # blank text is a missing value
            trimmed = pc.utf8_trim_whitespace(array)
            blank = pc.fill_null(pc.equal(trimmed, ""), False)
            if pc.any(blank).as_py():
                exact = False
                array = pc.if_else(blank, pa.scalar(None, pa.string()), array)
                trimmed = pc.if_else(blank, pa.scalar(None, pa.string()), trimmed)
            if text:  # numbers as text (gRPC's string tensors): one parse per kind
                array, invalid = to_numbers(trimmed, kind)
                if invalid.any():
                    return _check_json_slowly(columns, rows, schema)
        if kind == "float":
            numbers = array.to_numpy(zero_copy_only=False)
            if not np.isfinite(numbers[array.is_valid().to_numpy(zero_copy_only=False)]).all():
                return _check_json_slowly(columns, rows, schema)
        for j, c in enumerate(cols):
            typed[c.name] = array.slice(j * rows, rows)
        grouped.append(Kind(tuple(c.name for c in cols), array, values if exact else None))
    bad = np.zeros(rows, bool)
    reasons: dict[int, str] = {}
    for col in schema.columns:
        if col.required and typed[col.name].null_count:
            missing = ~typed[col.name].is_valid().to_numpy(zero_copy_only=False)
            for i in np.flatnonzero(missing & ~bad):
                reasons[int(i)] = f"column {col.name!r}: missing value (the model requires it)"
            bad |= missing
    batch = pa.RecordBatch.from_arrays([typed[n] for n in schema.names], names=schema.names)
    if bad.any():
        return CheckedRows(~bad, sorted(reasons.items()), batch.filter(pa.array(~bad)))
    return CheckedRows(~bad, [], batch, kinds=tuple(grouped))


# `check_text_columns`: one value per line of a kind's joined texts, an empty line for a missing
# value. Unambiguous and atomic per line (a hostile request cannot make the match backtrack).
# Text any other way (blank, a sign or ".0" on an int, past 18 digits, NaN...) is not plain.
_PLAIN_TEXT = {
    "int": rb"(?>-?[0-9]{1,18})?",
    "float": rb"(?>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)?",
}
_PLAIN_LINES = {k: re.compile(v + rb"(?:\n" + v + rb")*") for k, v in _PLAIN_TEXT.items()}
_BLANK_LINE = re.compile(r"^[^\S\n]+$", re.MULTILINE)  # Arrow's blanks are a subset of \s
_NUMPY = {"int": np.int64, "float": np.float64}


def check_text_columns(
    columns: Mapping[str, Sequence[bytes] | None], rows: int, schema: RawSchema
) -> CheckedRows | None:
    """`check_json_columns` for UTF-8 text as a gRPC client sends ``serving_raw`` (one bytes
    value per row and column, ``b""`` for missing; None: the column is absent), for batches
    whose every value is plain: a number column's values plain decimals (`_PLAIN_TEXT`), no
    string value blank, every row accepted. Then the columns of each kind are typed together
    from their joined text (one regex match, one numpy parse per number kind; one decode per
    text kind): no Python per value, no Arrow compute call. Returns None for any other batch
    (the caller decodes the values and calls `check_json_columns`, which decides it and words
    the message); when it returns, the verdicts, typed values and `Kind` values are those
    `check_json_columns` gives for the decoded values (tests/io/test_raw_inputs.py)."""
    kinds: dict[str, list[RawColumn]] = {}
    for col in schema.columns:
        kinds.setdefault(col.kind, []).append(col)
    absent = (b"",) * rows
    typed: dict[str, pa.Array] = {}
    grouped = []
    for kind, cols in kinds.items():
        texts = [v for c in cols for v in (columns.get(c.name) or absent)]
        joined = b"\n".join(texts)
        if joined.count(b"\n") != max(len(texts) - 1, 0):  # a value holds a line break
            return None
        if kind == "string":
            try:
                text = joined.decode("utf-8")
            except UnicodeDecodeError:
                return None
            if _BLANK_LINE.search(text):
                return None
            values = np.array(text.split("\n") if texts else [], dtype=object)
            values[values == ""] = None
            array = pa.array(values, pa.string())
        else:
            if not _PLAIN_LINES[kind].fullmatch(joined):
                return None
            strings = np.array(texts, dtype=bytes)
            missing = strings == b""
            strings[missing] = b"0"
            with np.errstate(over="ignore"):
                numbers = strings.astype(_NUMPY[kind]) if texts else np.zeros(0, _NUMPY[kind])
            if kind == "float" and not np.isfinite(numbers).all():  # 1e400
                return None
            array = pa.array(numbers, ARROW[kind], mask=missing if missing.any() else None)
            values = numbers.astype(object)
            values[missing] = None
        for j, c in enumerate(cols):
            column = array.slice(j * rows, rows)
            if c.required and column.null_count:
                return None
            typed[c.name] = column
        grouped.append(Kind(tuple(c.name for c in cols), array, values.tolist()))
    batch = pa.RecordBatch.from_arrays([typed[n] for n in schema.names], names=schema.names)
    return CheckedRows(np.ones(rows, bool), [], batch, kinds=tuple(grouped))


def _check_json_slowly(
    columns: Mapping[str, Sequence[Any]], rows: int, schema: RawSchema
) -> CheckedRows:
    table = pa.table(
        {n: json_column(list(columns.get(n) or [None] * rows)) for n in schema.names}
        if rows
        else {c.name: pa.array([], ARROW[c.kind]) for c in schema.columns}
    )
    return check_rows(table, schema)


def _combined(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def json_column(values: list[Any]) -> pa.Array:
    """A column from JSON values: typed when they agree, else text (checked per column later)."""
    try:
        array = pa.array(values)
        if not (pa.types.is_struct(array.type) or pa.types.is_list(array.type)):
            return array
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # mixed, nested, > int64
        pass
    return pa.array(
        [
            None if v is None else json.dumps(v) if isinstance(v, dict | list | bool) else str(v)
            for v in values
        ],
        pa.string(),
    )


def _conform(values: pa.Array, col: RawColumn) -> tuple[pa.Array, np.ndarray, Any]:
    """(typed values with nulls where missing, rows that fail, reason of a failing row)."""
    kind, name = col.kind, col.name
    if pa.types.is_boolean(values.type) or pa.types.is_null(values.type):
        values = pc.cast(values, pa.string()) if pa.types.is_boolean(values.type) else values
    if pa.types.is_null(values.type):
        values = pa.nulls(len(values), ARROW[kind])
    text = None
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        text = pc.utf8_trim_whitespace(values)
        empty = pc.equal(text, "")
        values = pc.if_else(
            empty, pa.scalar(None, values.type), values if kind == "string" else text
        )
    invalid = nonfinite = np.zeros(len(values), bool)
    if kind == "string":
        if not pa.types.is_string(values.type):
            values = pc.cast(values, pa.string())
        typed = values
    else:
        typed, invalid = to_numbers(values, kind)
        if kind == "float":  # NaN and ±Infinity are refused, as text or as numbers
            present = typed.is_valid().to_numpy(zero_copy_only=False)
            nonfinite = present & ~np.isfinite(typed.to_numpy(zero_copy_only=False))
            invalid = invalid | nonfinite
    missing = ~typed.is_valid().to_numpy(zero_copy_only=False) & ~invalid
    failed = invalid | (missing if col.required else False)
    shown = values

    def why(i: int) -> str:
        if invalid[i]:
            expected = "a finite float" if nonfinite[i] else kind
            return f"column {name!r}: expected {expected}; received {shown[i].as_py()!r}"
        return f"column {name!r}: missing value (the model requires it)"

    if failed.any():
        typed = pc.if_else(pa.array(failed), pa.scalar(None, typed.type), typed)
    return typed, failed, why


def to_numbers(values: pa.Array, kind: str) -> tuple[pa.Array, np.ndarray]:
    """Numbers of ``kind`` (int or float) from numbers or trimmed text (null = missing); returns
    (typed values, rows whose value does not fit: not a number, not whole, out of int64).

    Integers never pass through float: ``"9007199254740993"`` and ``"5.0"`` (integral) become
    int64 from their digits. Shared by ingest's readers and `check_rows`."""
    target = ARROW[kind]
    n = len(values)
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
        if kind == "float":  # an int past 2**53 is the float nearest it (Arrow's safe cast
            # refused it: a JSON Lines ingest failed, the servers answered 500/INTERNAL)
            return pc.cast(values, target, safe=False), np.zeros(n, bool)
        if pa.types.is_integer(values.type):
            return pc.cast(values, target), np.zeros(n, bool)
        numbers = values.to_numpy(zero_copy_only=False)
        present = values.is_valid().to_numpy(zero_copy_only=False)
        ok = np.isfinite(numbers) & (numbers == np.round(numbers)) & (np.abs(numbers) < 2.0**63)
        invalid = present & ~ok
        ints = np.where(ok, numbers, 0).astype(np.int64)
        return pa.array(ints, target, mask=~present | invalid), invalid
    if kind == "int":
        looks = pc.fill_null(pc.match_substring_regex(values, _INT_TEXT), True)
        invalid = ~looks.to_numpy(zero_copy_only=False)
        digits = pc.replace_substring_regex(values, r"\.0*$|^\+", "")  # Arrow's cast takes neither
        digits = pc.if_else(pa.array(invalid), pa.scalar(None, pa.string()), digits)
        try:
            return pc.cast(digits, target), invalid
        except (pa.ArrowInvalid, OverflowError):
            pass
        # Out of int64, decided on the digits (no Python per row): more than 19 significant
        # digits, or 19 that sort above the limit of their sign.
        magnitude = pc.replace_substring_regex(digits, r"^-?0*", "")
        length = pc.utf8_length(magnitude)
        limit = pc.if_else(pc.starts_with(digits, "-"), _INT64_MIN_DIGITS, _INT64_MAX_DIGITS)
        over = pc.or_(
            pc.greater(length, 19), pc.and_(pc.equal(length, 19), pc.greater(magnitude, limit))
        )
        over = pc.fill_null(over, False).to_numpy(zero_copy_only=False)
        invalid |= over
        digits = pc.if_else(pa.array(over), pa.scalar(None, pa.string()), digits)
        return pc.cast(digits, target), invalid
    looks = pc.fill_null(pc.match_substring_regex(values, _FLOAT_TEXT, ignore_case=True), True)
    invalid = ~looks.to_numpy(zero_copy_only=False)
    if invalid.any():
        values = pc.if_else(pa.array(invalid), pa.scalar(None, pa.string()), values)
    try:
        return pc.cast(values, target), invalid
    except pa.ArrowInvalid:  # a leading "+" ("+2.5"): the pattern takes it, Arrow's parser not
        return pc.cast(pc.replace_substring_regex(values, r"^\+", ""), target), invalid
