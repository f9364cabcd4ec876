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

import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
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

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

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
    """

    accepted: np.ndarray
    rejected: list[tuple[int, str]]
    batch: pa.RecordBatch
    extra: list[str] = field(default_factory=list)

    def raw_strings(self) -> dict[str, pa.Array]:
        """``serving_raw`` inputs: CSV-like text per column, ``""`` for a missing value."""
        out = {}
        for name in self.batch.schema.names:
            column = self.batch.column(name)
            if not pa.types.is_string(column.type):
                column = pc.cast(column, pa.string())
            out[name] = pc.fill_null(column, "")
        return out

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
    return pc.cast(values, target), invalid
