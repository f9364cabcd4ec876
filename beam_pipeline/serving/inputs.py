"""Request values to model inputs, in two halves.

On the event loop, per request, only the shape of the request is looked at (`rows_inputs`,
`columns_inputs`, `examples_inputs`, and `grpc_service`'s tensors): a list of objects, lists of
one length, no feature the model does not take. Nothing is typed there.

On the model's worker thread, once per batch, `prepare_raw` checks and types the values of every
request in the batch together: the shared row check of `beam_pipeline.io.raw_inputs` (the one
`score` uses, so the server accepts and refuses exactly the rows score does) runs once over the
concatenated columns, and the ``serving_raw`` tensors are built from its Arrow columns. A refused
row fails its own request only (400 naming the row and the feature, e.g. ``instances[3]: column
'fare': expected float; received 'twelve'``); the other requests of the batch are answered.

The model's raw schema is the ``assets.extra/raw_schema.json`` train saves beside the SavedModel.
A model exported without one (an older model, or one from elsewhere) gets it from the model
itself: the ``ParseExampleV2`` op of its ``serving_default`` signature lists every raw feature
with its dtype, and a dense feature without a default is required.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from beam_pipeline.core.errors import DataError
from beam_pipeline.io import raw_inputs
from beam_pipeline.io.raw_inputs import RawColumn, RawSchema

_DTYPES = {1: "float", 2: "float", 19: "float", 7: "string", 9: "int", 3: "int"}


class RequestError(ValueError):
    """A request the model cannot take: the message names the field (answered with 400)."""


@dataclass
class Inputs:
    """One request's rows as the event loop parsed them (checked later, with their batch).

    Exactly one of ``records`` (row format: one object per row), ``columns`` (one list of values
    per feature; for gRPC, a tensor's values) and ``examples`` (serialized tf.Examples) is set.
    ``texts``: every column is a gRPC string tensor's values, a list of UTF-8 bytes (typed with
    the batch by `raw_inputs.check_text_columns`). ``tensors``: the columns are gRPC tensors'
    values (lists of numbers, or arrays), never a REST column's nested ``[value]``. ``where``
    formats a row's place in the request for messages (``instances[{}]``).
    """

    rows: int
    where: str
    records: list[dict[str, Any]] | None = None
    columns: dict[str, Any] | None = None
    examples: list[bytes] | None = None
    offset: int = 0  # the first row's index in the request (a request cut into parts)
    request_id: str = ""  # row i is logged as {request_id}/{offset + i}
    texts: bool = False
    tensors: bool = False

    def part(self, start: int, end: int) -> Inputs:
        return Inputs(
            end - start,
            self.where,
            None if self.records is None else self.records[start:end],
            None if self.columns is None else {k: v[start:end] for k, v in self.columns.items()},
            None if self.examples is None else self.examples[start:end],
            self.offset + start,
            self.request_id,
            self.texts,
            self.tensors,
        )

    def row(self, index: int) -> str:
        return self.where.format(self.offset + index)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _unknown(names: set[str], schema: RawSchema, where: str) -> None:
    extra = names.difference(schema.name_set)
    if extra:
        raise RequestError(
            f"{where}: unknown feature {sorted(extra)[0]!r}; the model takes {schema.names}"
        )


def rows_inputs(instances: Any, schema: RawSchema, where: str = "instances") -> Inputs:
    """Row format: a non-empty list of objects (a missing key is a missing value)."""
    if not isinstance(instances, list) or not instances:
        raise RequestError(f'"{where}": expected a non-empty list of rows')
    for i, row in enumerate(instances):
        if type(row) is not dict:
            raise RequestError(
                f"{where}[{i}]: expected an object of feature values; received {_short(row)}"
            )
    _unknown(set().union(*instances), schema, where)
    return Inputs(len(instances), where + "[{}]", records=instances)


def columns_inputs(inputs: Any, schema: RawSchema, where: str = "inputs") -> Inputs:
    """Columnar format: one list per feature, all of one length (a missing feature is missing in
    every row); a ``[1]``-shaped value stands for the value, as TF Serving's [batch, 1] allow."""
    if not isinstance(inputs, dict):
        raise RequestError(
            f"{where}: expected an object of feature lists; received {_short(inputs)}"
        )
    lengths = set()
    for name, values in inputs.items():
        if not isinstance(values, list):
            raise RequestError(
                f"{where}.{name}: expected a list (one value per row); received {_short(values)}"
            )
        lengths.add(len(values))
    if len(lengths) > 1:
        sizes = {name: len(v) for name, v in inputs.items()}
        raise RequestError(
            f"{where}: every feature needs the same number of rows; received {sizes}"
        )
    n = lengths.pop() if lengths else 0
    if n == 0:
        raise RequestError(f"{where}: expected at least one row")
    _unknown(set(inputs), schema, where)
    return Inputs(n, where + " row {}", columns=inputs)


def tensor_inputs(
    columns: dict[str, np.ndarray] | dict[str, list[bytes]], schema: RawSchema, texts: bool = False
) -> Inputs:
    """gRPC: one tensor of values per feature (strings as bytes, typed per batch); ``texts``:
    every tensor is a string tensor, its values a list of bytes."""
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise RequestError(
            f"inputs: every tensor needs the same number of rows; received {lengths}"
        )
    if not columns or not next(iter(lengths.values())):
        raise RequestError("inputs: expected at least one row")
    _unknown(set(columns), schema, "inputs")
    n = next(iter(lengths.values()))
    return Inputs(n, "inputs row {}", columns=columns, texts=texts, tensors=True)


def examples_inputs(examples: list[bytes], where: str) -> Inputs:
    if not examples:
        raise RequestError(f"{where}: expected a non-empty list of serialized tf.Examples")
    return Inputs(len(examples), where + "[{}]", examples=examples)


# -- on the model thread, once per batch ------------------------------------------------------


@dataclass
class Prepared:
    """A batch ready for the model: its tensors' values, and per request either its error or
    its rows' place in the batch (start, end) and their typed values (for the log)."""

    inputs: dict[str, np.ndarray]
    errors: list[RequestError | None]
    spans: list[tuple[int, int]]
    typed: pa.RecordBatch | None
    kinds: tuple[raw_inputs.Kind, ...] | None = None  # `CheckedRows.kinds`


def _flat(value: Any) -> Any:
    if type(value) is list and len(value) == 1:
        return value[0]
    return value


def _segment(item: Inputs, name: str) -> list[Any]:
    """One request's values of one feature, as JSON-like values (None: missing)."""
    if item.records is not None:
        return [r.get(name) for r in item.records]
    assert item.columns is not None
    values = item.columns.get(name)
    if values is None:
        return [None] * item.rows
    if item.tensors and not item.texts and type(values) is list:  # gRPC numbers, as they are
        return values
    if item.texts or isinstance(values, np.ndarray):  # a gRPC tensor's values
        if item.texts or values.dtype.kind in ("S", "O"):
            out = []
            for i, v in enumerate(values if item.texts else values.tolist()):
                try:
                    out.append(v.decode("utf-8") if isinstance(v, bytes) else v)
                except UnicodeDecodeError:
                    raise RequestError(
                        f"{item.where.split(' ')[0]}.{name}[{item.offset + i}]: "
                        "not valid UTF-8 text"
                    ) from None
            return out
        return values.tolist()
    return [_flat(v) for v in values]


def prepare_raw(schema: RawSchema, items: list[Inputs]) -> Prepared:
    """Check and type the rows of every request of a batch at once (see the module doc)."""
    errors: list[RequestError | None] = [None] * len(items)
    names = schema.names
    starts = []
    total = 0
    if items and all(item.texts for item in items):  # gRPC string tensors: typed per kind
        prepared = _prepared_texts(schema, items)
        if prepared is not None:
            return prepared
    if all(item.records is not None for item in items):  # row format: one pass per feature
        records = [r for item in items for r in item.records or ()]
        columns: dict[str, list[Any]] = {n: [r.get(n) for r in records] for n in names}
        for i, item in enumerate(items):
            starts.append((i, total))
            total += item.rows
    else:
        columns = {n: [] for n in names}
        for i, item in enumerate(items):
            try:
                segments = {n: _segment(item, n) for n in names}
            except RequestError as exc:
                errors[i] = exc
                continue
            for n, values in segments.items():
                columns[n].extend(values)
            starts.append((i, total))
            total += item.rows
    try:
        checked = raw_inputs.check_json_columns(columns, total, schema)
    except DataError as exc:  # the values as a whole (cannot happen for JSON values)
        raise RequestError(str(exc)) from None
    if checked.kinds is not None:  # every row typed by the shortcut and accepted
        return _prepared_by_kind(checked.kinds, items, errors, starts, checked.batch, total)
    if checked.rejected:
        owner = np.zeros(total, np.int64)
        first = np.zeros(len(items), np.int64)
        for i, start in starts:
            owner[start : start + items[i].rows] = i
            first[i] = start
        for row, reason in checked.rejected:
            i = int(owner[row])
            if errors[i] is None:
                errors[i] = RequestError(f"{items[i].row(row - int(first[i]))}: {reason}")
        ok = np.array([e is None for e in errors], bool)
        keep = ok[owner][checked.accepted]
        typed = checked.batch if keep.all() else checked.batch.filter(pa.array(keep))
    else:
        typed = checked.batch
    spans: list[tuple[int, int]] = [(0, 0)] * len(items)
    at = 0
    for i, _ in starts:
        if errors[i] is None:
            spans[i] = (at, at + items[i].rows)
            at += items[i].rows
    strings = raw_inputs.CheckedRows(checked.accepted, [], typed).raw_strings()
    inputs = {k: v.to_numpy(zero_copy_only=False) for k, v in strings.items()}
    return Prepared(inputs, errors, spans, typed)


def _prepared_texts(schema: RawSchema, items: list[Inputs]) -> Prepared | None:
    """A batch of gRPC string tensors by `raw_inputs.check_text_columns` (None: not plain, or
    a row refused; `prepare_raw` then decodes the values one by one and words the message)."""
    starts = []
    total = 0
    for i, item in enumerate(items):
        starts.append((i, total))
        total += item.rows
    columns: dict[str, list[bytes]] = {}
    for name in schema.names:
        if any(item.columns and name in item.columns for item in items):
            column = columns[name] = []
            for item in items:
                assert item.columns is not None
                column += item.columns.get(name) or (b"",) * item.rows
    checked = raw_inputs.check_text_columns(columns, total, schema)
    if checked is None or checked.kinds is None:
        return None
    errors: list[RequestError | None] = [None] * len(items)
    return _prepared_by_kind(checked.kinds, items, errors, starts, checked.batch, total)


def _prepared_by_kind(
    kinds: tuple[raw_inputs.Kind, ...],
    items: list[Inputs],
    errors: list[RequestError | None],
    starts: list[tuple[int, int]],
    typed: pa.RecordBatch,
    total: int,
) -> Prepared:
    """The ``serving_raw`` strings of each kind's columns at once, each column a view.

    From the requests' own JSON values when the check kept them (`raw_inputs.Kind.json`):
    orjson writes a kind's numbers in one call (``null`` becomes ``""``, the missing value),
    text is taken as it is; no Arrow call (each cost ~50 µs cold in the running server).
    orjson spells some numbers otherwise than Arrow's cast (``1.0`` for ``1``, ``0.000025`` for
    ``2.5e-05``): the same decimal, so the model parses the same number. Otherwise one cast,
    fill and numpy conversion per kind."""
    inputs: dict[str, np.ndarray] = {}
    for kind in kinds:
        names, values = kind.names, kind.values
        strings = np.empty(len(values), object)
        if kind.json is not None and pa.types.is_string(values.type):
            strings[:] = kind.json
            strings[strings == None] = ""  # noqa: E711 - numpy's elementwise comparison
        elif kind.json is not None:
            strings[:] = kind.number_texts
            strings[strings == b"null"] = b""
        else:
            text = values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
            strings = pc.fill_null(text, "").to_numpy(zero_copy_only=False)
        by_column = strings.reshape(len(names), total)
        for j, name in enumerate(names):
            inputs[name] = by_column[j]
    spans: list[tuple[int, int]] = [(0, 0)] * len(items)
    for i, start in starts:
        spans[i] = (start, start + items[i].rows)
    return Prepared(inputs, errors, spans, typed, kinds)


def prepare_examples(items: list[Inputs], schema: RawSchema | None = None) -> Prepared:
    """Serialized tf.Examples of a batch, checked as raw rows are: their values are read into
    columns in one parse (`example_columns`) and go through the shared row check, so an example
    missing a required feature is refused with the same reason as a raw row (not filled in by
    the model's parse op); the accepted requests' examples go to the model unchanged."""
    examples: list[bytes] = []
    owner: list[int] = []
    for i, item in enumerate(items):
        assert item.examples is not None
        examples.extend(item.examples)
        owner.extend([i] * item.rows)
    errors: list[RequestError | None] = [None] * len(items)
    if schema is None or not examples:
        spans, at = [], 0
        for item in items:
            spans.append((at, at + item.rows))
            at += item.rows
        return Prepared({"examples": np.array(examples, dtype=object)}, errors, spans, None)
    table, unreadable = example_columns(schema, examples)
    checked = raw_inputs.check_rows(table, schema)
    first = np.cumsum([0] + [item.rows for item in items])
    for row, reason in sorted({**dict(checked.rejected), **unreadable}.items()):
        i = owner[row]
        if errors[i] is None:
            errors[i] = RequestError(f"{items[i].row(row - int(first[i]))}: {reason}")
    keep = np.array([errors[i] is None for i in owner], bool)
    typed = checked.batch.filter(pa.array(keep[checked.accepted]))
    spans = [(0, 0)] * len(items)
    at = 0
    for i, item in enumerate(items):
        if errors[i] is None:
            spans[i] = (at, at + item.rows)
            at += item.rows
    kept = np.array(examples, dtype=object)[keep]
    return Prepared({"examples": kept}, errors, spans, typed)


_TF_KINDS = {"int": "int64", "float": "float32", "string": "string"}
_TF_NOISE = re.compile(r"^\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\]$")


def example_columns(schema: RawSchema, examples: list[bytes]) -> tuple[pa.Table, dict[int, str]]:
    """The raw columns of serialized tf.Examples (null where a feature is absent), parsed in one
    batch; and the rows that cannot be read as the model's raw features, with the reason (not a
    tf.Example, a feature of another type, several values where the model takes one, text that
    is not UTF-8)."""
    import tensorflow as tf

    parse = _parser(schema)
    unreadable: dict[int, str] = {}
    try:
        parsed = parse(tf.constant(examples, tf.string))
    except (tf.errors.InvalidArgumentError, UnicodeDecodeError):  # the bad rows, one by one
        for i, x in enumerate(examples):
            try:
                parse(tf.constant([x], tf.string))
            except tf.errors.InvalidArgumentError as exc:
                message = _TF_NOISE.sub("", exc.message.strip().splitlines()[0])
                unreadable[i] = f"not a tf.Example of the model's features: {message}"
            except UnicodeDecodeError:  # TensorFlow could not even quote the bytes back
                unreadable[i] = "not a serialized tf.Example"
        good = [b"" if i in unreadable else x for i, x in enumerate(examples)]
        parsed = parse(tf.constant(good, tf.string))
    n = len(examples)
    columns = {}
    for c in schema.columns:
        rows, values = (t.numpy() for t in parsed[c.name])
        counts = np.bincount(rows, minlength=n)
        present = counts > 0
        values = values[np.searchsorted(rows, np.flatnonzero(present))]
        for row in np.flatnonzero(counts > 1):
            unreadable.setdefault(
                int(row), f"column {c.name!r}: expected one value; received {counts[row]}"
            )
        if c.kind == "string":
            full = np.full(n, None, dtype=object)
            full[present] = values
            columns[c.name] = _texts(full, c.name, unreadable)
        else:
            full = np.zeros(n, values.dtype)
            full[present] = values
            columns[c.name] = pa.array(full, mask=~present).cast(raw_inputs.ARROW[c.kind])
    return pa.table(columns), unreadable


@functools.lru_cache(maxsize=32)
def _parser(schema: RawSchema) -> Any:
    """A traced parse of serialized tf.Examples into (row of each value, values) per raw column
    (eager ``parse_example`` spent 2 ms of Python per call on a 16-feature spec)."""
    import tensorflow as tf

    spec = {c.name: tf.io.VarLenFeature(getattr(tf, _TF_KINDS[c.kind])) for c in schema.columns}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def parse(examples: Any) -> Any:
        parsed = tf.io.parse_example(examples, spec)
        return {k: (v.indices[:, 0], v.values) for k, v in parsed.items()}

    return parse


def _texts(values: np.ndarray, name: str, unreadable: dict[int, str]) -> pa.Array:
    binary = pa.array(values.tolist(), pa.binary())
    try:
        return binary.cast(pa.string())
    except pa.ArrowInvalid:  # not UTF-8 somewhere: find it (this path only)
        out = []
        for row, v in enumerate(values.tolist()):
            try:
                out.append(None if v is None else v.decode("utf-8"))
            except UnicodeDecodeError:
                unreadable.setdefault(row, f"column {name!r}: not valid UTF-8 text")
                out.append(None)
        return pa.array(out, pa.string())


# -- NaN and Infinity in a JSON body ----------------------------------------------------------


def nonfinite_path(value: Any, path: str = "body", depth: int = 0) -> str | None:
    """Where a NaN, Infinity or out-of-range number (``1e400``) sits in a body parsed by Python's
    lenient `json` (strict JSON has none of them; the server refuses them with 400 naming this
    place)."""
    if depth > 64:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return path
    if isinstance(value, dict):
        for k, v in value.items():
            found = nonfinite_path(v, f"{k}" if path == "body" else f"{path}.{k}", depth + 1)
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = nonfinite_path(v, f"{path}[{i}]", depth + 1)
            if found:
                return found
    return None


# -- the model's raw schema -------------------------------------------------------------------


def model_schema(saved_model: Any, path: str | Path, raw_names: list[str]) -> RawSchema:
    """The raw schema saved with the model, else the one its serving_default parse op implies."""
    saved = RawSchema.load(path)
    if saved is not None and (not raw_names or set(saved.names) == set(raw_names)):
        return saved
    return _schema_from_graph(saved_model, raw_names)


def _schema_from_graph(saved_model: Any, raw_names: list[str]) -> RawSchema:
    import tensorflow as tf

    found: dict[str, RawColumn] = {}
    fn = saved_model.signatures.get("serving_default")
    graph = fn.graph.as_graph_def() if fn is not None else None
    for function in list(graph.library.function) if graph is not None else []:
        nodes = {n.name: n for n in function.node_def}

        def const(ref: str, nodes: dict[str, Any] = nodes) -> Any:
            source = nodes.get(ref.split(":")[0])
            if source is None or source.op != "Const":
                return None
            return tf.make_ndarray(source.attr["value"].tensor)

        for node in function.node_def:
            if node.op != "ParseExampleV2":
                continue
            sparse, dense = const(node.input[2]), const(node.input[3])
            if sparse is None or dense is None:
                continue
            defaults = [const(ref) for ref in node.input[5 : 5 + len(dense)]]
            for key, dtype in zip(sparse, node.attr["sparse_types"].list.type, strict=False):
                found[key.decode()] = RawColumn(key.decode(), _DTYPES.get(dtype, "string"), False)
            for key, dtype, default in zip(
                dense, node.attr["Tdense"].list.type, defaults, strict=False
            ):
                required = default is not None and default.size == 0
                found[key.decode()] = RawColumn(
                    key.decode(), _DTYPES.get(dtype, "string"), required
                )
    return RawSchema(
        tuple(found.get(name, RawColumn(name, "string", False)) for name in sorted(raw_names))
    )
