"""Request values to ``serving_raw`` inputs: the shared row check of `beam_pipeline.io.raw_inputs`
(the one `score` uses), so the server accepts and refuses exactly the rows score does.

The model's raw schema is the ``assets.extra/raw_schema.json`` train saves beside the SavedModel.
A model exported without one (an older model, or one from elsewhere) gets it from the model
itself: the ``ParseExampleV2`` op of its ``serving_default`` signature lists every raw feature
with its dtype, and a dense feature without a default is required.

On top of the shared check, the server refuses a request naming a feature the model does not
take (a misspelt feature must not pass as a missing value), and answers the first rejected row's
reason, prefixed with where it is (``instances[3]: column 'fare': expected float; received
'twelve'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from beam_pipeline.core.errors import DataError
from beam_pipeline.io import raw_inputs
from beam_pipeline.io.raw_inputs import RawColumn, RawSchema

_DTYPES = {1: "float", 2: "float", 19: "float", 7: "string", 9: "int", 3: "int"}


class RequestError(ValueError):
    """A request the model cannot take: the message names the field (answered with 400)."""


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


def _checked(
    data: Any, schema: RawSchema, where: str, row_where: str
) -> tuple[dict[str, list[str]], list[dict[str, Any]]]:
    try:
        checked = raw_inputs.check_rows(data, schema)
    except DataError as exc:
        raise RequestError(f"{where}: {exc}") from None
    if checked.extra:
        raise RequestError(
            f"{where}: unknown feature {checked.extra[0]!r}; the model takes {schema.names}"
        )
    if checked.rejected:
        row, reason = checked.rejected[0]
        raise RequestError(f"{row_where.format(row)}: {reason}")
    columns = {k: v.to_pylist() for k, v in checked.raw_strings().items()}
    return columns, checked.batch.to_pylist()


def check_rows(
    rows: list[Any], schema: RawSchema, where: str = "instances"
) -> tuple[dict[str, list[str]], list[dict[str, Any]]]:
    """Row format: one object per row (a missing key is a missing value).

    Returns (serving_raw inputs as text per feature, each row's values as the log records them).
    """
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RequestError(
                f"{where}[{i}]: expected an object of feature values; received {_short(row)}"
            )
    return _checked(rows, schema, where, where + "[{}]")


def check_columns(
    inputs: Any, schema: RawSchema, where: str = "inputs"
) -> tuple[dict[str, list[str]], list[dict[str, Any]]]:
    """Columnar format: one list per feature, all of one length (a missing feature is missing
    in every row). Returns what `check_rows` returns."""
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
    # Column by column into Arrow, as `check_rows` would build them from rows.
    table = pa.table({k: raw_inputs.json_column([_flat(x) for x in v]) for k, v in inputs.items()})
    return _checked(table, schema, where, where + " row {}")


def _flat(value: Any) -> Any:
    """A [1]-shaped value (``[12.5]``) is the value, as TF Serving's [batch, 1] inputs allow."""
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


__all__ = ["RequestError", "RawSchema", "check_columns", "check_rows", "model_schema", "pa"]
