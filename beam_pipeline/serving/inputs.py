"""Request values to ``serving_raw`` inputs: one check for every online path (REST rows, REST
columns, gRPC tensors).

The feature types come from the model itself: the ``ParseExampleV2`` op of its
``serving_default`` signature lists every raw feature with its dtype, and a dense feature without
a default is one the training data always had (``serving_default`` refuses an Example without
it, so the raw path refuses the row too: both signatures treat a row the same way).

Accepted values: ``int`` features take integers (or integral numbers, or their text), ``float``
features numbers (or their text), ``string`` features text; ``null``, a missing key and ``""``
are a missing value. Anything else is a `RequestError` naming the row, the feature and the value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

_WANT = {"int": "an integer", "float": "a number", "string": "a string"}
_DTYPES = {1: "float", 2: "float", 19: "float", 7: "string", 9: "int", 3: "int"}


class RequestError(ValueError):
    """A request the model cannot take: the message names the field (answered with 400)."""


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str  # int | float | string
    required: bool


def feature_spec(saved_model: Any, raw_names: list[str]) -> dict[str, Feature]:
    """The raw features of a loaded SavedModel with their kinds (see the module doc).

    A model without a parse op in ``serving_default`` gets every raw input as optional text.
    """
    import tensorflow as tf

    found: dict[str, Feature] = {}
    fn = saved_model.signatures.get("serving_default")
    graph = fn.graph.as_graph_def() if fn is not None else None
    functions = list(graph.library.function) if graph is not None else []
    for function in functions:
        nodes = {n.name: n for n in function.node_def}
        for node in function.node_def:
            if node.op != "ParseExampleV2":
                continue

            def const(ref: str, nodes: dict[str, Any] = nodes) -> Any:
                source = nodes.get(ref.split(":")[0])
                if source is None or source.op != "Const":
                    return None
                return tf.make_ndarray(source.attr["value"].tensor)

            sparse = const(node.input[2])
            dense = const(node.input[3])
            if sparse is None or dense is None:
                continue
            defaults = [const(ref) for ref in node.input[5 : 5 + len(dense)]]
            for key, dtype in zip(sparse, node.attr["sparse_types"].list.type, strict=False):
                name = key.decode()
                found[name] = Feature(name, _DTYPES.get(dtype, "string"), False)
            for key, dtype, default in zip(
                dense, node.attr["Tdense"].list.type, defaults, strict=False
            ):
                name = key.decode()
                required = default is not None and default.size == 0
                found[name] = Feature(name, _DTYPES.get(dtype, "string"), required)
    return {name: found.get(name, Feature(name, "string", False)) for name in raw_names}


def _text(value: Any, feature: Feature, where: str) -> tuple[str, Any]:
    """(the CSV-like text serving_raw takes, the value as the log records it)."""
    kind = feature.kind
    if value is None or value == "":
        if feature.required:
            raise RequestError(
                f"{where}: feature {feature.name!r} is required by the model (the training data "
                "always had it); received no value"
            )
        return "", None
    if kind == "string":
        if isinstance(value, str):
            return value, value
        raise RequestError(
            f"{where}: feature {feature.name!r} expects a string; received {value!r}"
        )
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RequestError(
            f"{where}: feature {feature.name!r} expects {_WANT[kind]}; received {value!r}"
        )
    number: float | int
    if isinstance(value, str):
        try:
            number = (
                int(value)
                if kind == "int" and value.strip().lstrip("-").isdigit()
                else float(value)
            )
        except ValueError:
            raise RequestError(
                f"{where}: feature {feature.name!r} expects {_WANT[kind]}; received {value!r}"
            ) from None
    else:
        number = value
    if isinstance(number, float) and not math.isfinite(number):
        raise RequestError(f"{where}: feature {feature.name!r}: {value!r} is not a finite number")
    if kind == "int":
        if isinstance(number, float):
            if number != int(number):
                raise RequestError(
                    f"{where}: feature {feature.name!r} expects an integer; received {value!r}"
                )
            number = int(number)
        return str(number), number
    number = float(number)
    return repr(number), number


def _unknown(keys: Any, spec: dict[str, Feature], where: str) -> None:
    extra = [k for k in keys if k not in spec]
    if extra:
        raise RequestError(f"{where}: unknown feature {extra[0]!r}; the model takes {sorted(spec)}")


def check_rows(
    rows: list[Any], spec: dict[str, Feature], where: str = "instances"
) -> tuple[dict[str, list[str]], list[dict[str, Any]]]:
    """Row format: one object per row (a missing key is a missing value).

    Returns (serving_raw inputs as text per feature, each row's values as the log records them).
    """
    columns: dict[str, list[str]] = {name: [] for name in spec}
    logged: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        at = f"{where}[{i}]"
        if not isinstance(row, dict):
            raise RequestError(
                f"{at}: expected an object of feature values; received {_short(row)}"
            )
        _unknown(row, spec, at)
        values: dict[str, Any] = {}
        for name, feature in spec.items():
            text, value = _text(row.get(name), feature, at)
            columns[name].append(text)
            values[name] = value
        logged.append(values)
    return columns, logged


def check_columns(
    inputs: dict[str, Any], spec: dict[str, Feature], where: str = "inputs"
) -> tuple[dict[str, list[str]], list[dict[str, Any]]]:
    """Columnar format: one list per feature, all of one length (a missing feature is missing
    in every row). Returns what `check_rows` returns."""
    if not isinstance(inputs, dict):
        raise RequestError(
            f"{where}: expected an object of feature lists; received {_short(inputs)}"
        )
    _unknown(inputs, spec, where)
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
    columns: dict[str, list[str]] = {}
    logged: list[dict[str, Any]] = [{} for _ in range(n)]
    for name, feature in spec.items():
        values = inputs.get(name) or [None] * n
        texts = []
        for i, v in enumerate(values):
            text, value = _text(_flat(v), feature, f"{where}.{name}[{i}]")
            texts.append(text)
            logged[i][name] = value
        columns[name] = texts
    return columns, logged


def _flat(value: Any) -> Any:
    """A [1]-shaped value (``[12.5]``) is the value, as TF Serving's [batch, 1] inputs allow."""
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
