"""TF Serving's Classify and Regress (gRPC ``PredictionService.Classify``/``Regress``, REST
``:classify``/``:regress``) over the model's tf.Example signature, ``serving_default``.

The models export predict signatures; TF Serving answers Classify and Regress from
classification and regression signatures. What a model's output means is read from the model
itself, once per version (`task_of`): the op that makes ``serving_default``'s output, followed
through identities and function calls.

* ``Softmax`` over K >= 2 columns: a K-class classifier. Classify answers every class, labelled
  by its index (``"0"`` .. ``"K-1"``, as an Estimator classifier without a vocabulary labels
  them), with its probability. Regress is refused: there is no single value.
* ``Sigmoid`` over one column: a binary classifier. Classify answers ``[["0", 1 - p], ["1",
  p]]``; Regress answers ``p`` (an Estimator's binary classifier exports the logistic as its
  regression output too).
* any other op over one column: a regression. Regress answers the value; Classify is refused.
* anything else: both are refused.

A refused method is `Unsupported` (gRPC UNIMPLEMENTED, REST 400) naming the model, the version,
its output and why; never a traceback. The examples go through `Service.predict` on
``serving_default``, batched and logged as Predict requests are; a missing required feature is
refused by the model's parse op (400 / INVALID_ARGUMENT).

Requests, as TF Serving takes them: gRPC ``input.example_list`` or
``input.example_list_with_context`` (the context's features join every example; an example's own
feature wins, as with TF Serving's concatenated serializations); REST ``{"signature_name":
optional, "context": optional {feature: value}, "examples": [{feature: value or [values]}, ...]}``
with TF Serving's JSON to tf.Example rules (text and ``{"b64": ...}`` are bytes, integers int64,
decimals float), typed by the model's raw schema as REST Predict types them (a float feature
takes integers, a string feature numbers as their text; a feature the model does not take is
refused by name). Answers: REST ``{"results": [[[label,
score], ...], ...]}`` / ``{"results": [value, ...]}``; gRPC ``ClassificationResponse`` /
``RegressionResponse`` with ``model_spec`` (name, version, ``serving_default``).
"""

from __future__ import annotations

import base64
import binascii
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from beam_pipeline.io.raw_inputs import RawSchema
from beam_pipeline.serving.inputs import RequestError, examples_inputs
from beam_pipeline.serving.models import EXAMPLES, Version
from beam_pipeline.serving.service import Service, short_floats

CLASSIFY = "classify"
REGRESS = "regress"
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_INT64 = (-(2**63), 2**63 - 1)
_PASS_THROUGH = {"Identity", "IdentityN", "Snapshot", "StopGradient", "PreventGradient"}
_CALLS = {"StatefulPartitionedCall", "PartitionedCall"}


class Unsupported(RequestError):
    """The model has no meaning for this method (gRPC UNIMPLEMENTED, REST 400)."""


@dataclass(frozen=True)
class Task:
    """What ``serving_default``'s output means: the output's name, its width, the op making it."""

    output: str
    width: int
    activation: str

    @property
    def kind(self) -> str | None:
        if self.activation == "Softmax" and self.width >= 2:
            return "multiclass"
        if self.activation == "Sigmoid" and self.width == 1:
            return "binary"
        if self.width == 1 and self.activation not in ("Softmax", "Sigmoid"):
            return "regression"
        return None

    def refusal(self, method: str) -> str | None:
        """Why ``method`` does not apply, or None when it does."""
        kind = self.kind
        if method == CLASSIFY and kind in ("multiclass", "binary"):
            return None
        if method == REGRESS and kind in ("regression", "binary"):
            return None
        made = f"output {self.output!r} ({self.width} column(s), made by {self.activation})"
        if kind == "multiclass":
            return f"{made} is a {self.width}-class classifier's: it has no single value to regress"
        if kind == "regression":
            return f"{made} is a regression's: it has no classes"
        return (
            f"{made} is neither class probabilities (Softmax over 2 or more columns, Sigmoid over "
            "one) nor a single regression value"
        )


_TASKS: weakref.WeakKeyDictionary[Any, Task] = weakref.WeakKeyDictionary()


def task_of(v: Version) -> Task:
    """The meaning of ``v``'s ``serving_default`` output (read once per loaded model)."""
    task = _TASKS.get(v.model)
    if task is None:
        task = _TASKS[v.model] = _read_task(v)
    return task


def _read_task(v: Version) -> Task:
    fn = v.signatures.get(EXAMPLES)
    if fn is None:
        return Task("?", 0, f"no {EXAMPLES} signature")
    outputs = fn.structured_outputs
    name = next(iter(outputs)) if len(outputs) == 1 else "predictions"
    if name not in outputs:
        return Task(f"one of {sorted(outputs)}", 0, "several outputs, none named 'predictions'")
    shape = outputs[name].shape
    width = int(shape[-1]) if shape.rank == 2 and shape[-1] is not None else 0
    if shape.rank == 1:
        width = 1
    # fn.outputs are the graph's tensors in the flattened (sorted) order of structured_outputs
    tensor = fn.outputs[sorted(outputs).index(name)]
    return Task(name, width, producer_op(fn, tensor))


def producer_op(fn: Any, tensor: Any) -> str:
    """The type of the op that computes ``tensor`` of concrete function ``fn``, looking through
    identities and into called functions (``"?"`` when the trail leaves the graph)."""
    graph = fn.graph.as_graph_def()
    functions = {f.signature.name: f for f in graph.library.function}
    nodes = {n.name: n for n in graph.node}
    node_name, index, inside = tensor.op.name, tensor.value_index, False
    for _ in range(1000):  # a trail, not a search: bounded for safety
        node = nodes.get(node_name)
        if node is None:
            return "?"
        if node.op in _CALLS:
            called = functions.get(node.attr["f"].func.name)
            if called is None or index >= len(called.signature.output_arg):
                return "?"
            ref = called.ret[called.signature.output_arg[index].name]
            nodes, inside = {n.name: n for n in called.node_def}, True
        elif node.op in _PASS_THROUGH:
            inputs = [r for r in node.input if not r.startswith("^")]
            ref = inputs[index if node.op == "IdentityN" else 0]
        else:
            return str(node.op)
        parts = ref.split(":")
        if inside and len(parts) == 1:
            return "?"  # a function argument: the value comes from outside
        node_name, index = parts[0], int(parts[-1]) if len(parts) > 1 else 0
    return "?"


def check_method(v: Version, method: str, signature: str) -> Task:
    """The task, when ``method`` applies to ``v`` through ``signature``; else `RequestError`
    (an unknown signature) or `Unsupported`."""
    if signature and signature != EXAMPLES:
        known = signature in v.signatures
        raise (Unsupported if known else RequestError)(
            f"signature_name: {method} reads tf.Examples through {EXAMPLES!r}; {signature!r} "
            + ("takes raw values: use :predict" if known else "is not a signature of the model")
            + f" ({v.name} version {v.version}; signatures are {sorted(v.signatures)})"
        )
    task = task_of(v)
    why = task.refusal(method)
    if why is not None:
        raise Unsupported(f"{method}: {v.name} version {v.version}: {why}; use predict")
    return task


async def infer(
    service: Service,
    v: Version,
    task: Task,
    method: str,
    examples: list[bytes],
    where: str,
    rid: str,
) -> np.ndarray:
    """Scores ``[n, classes]`` (classify) or values ``[n]`` (regress); the caller holds ``v``."""
    answer = await service.predict(v, EXAMPLES, examples_inputs(examples, where), rid)
    out = np.asarray(answer.outputs[task.output], dtype=np.float32).reshape(len(examples), -1)
    if method == REGRESS:
        return out[:, 0]
    if task.kind == "binary":
        return np.concatenate([1 - out, out], axis=1)
    return out


def labels(scores: np.ndarray) -> list[str]:
    return [str(i) for i in range(scores.shape[1])]


# -- REST ---------------------------------------------------------------------------------------


def rest_signature(body: Any) -> str:
    """The ``signature_name`` of a REST classify/regress body ("" when absent); checks its
    fields."""
    if not isinstance(body, dict):
        raise RequestError('expected a JSON object with "examples"')
    unknown = sorted(set(body) - {"signature_name", "context", "examples"})
    if unknown:
        raise RequestError(
            f'unknown field {unknown[0]!r}; expected "examples" and optionally "context" and '
            '"signature_name"'
        )
    signature = body.get("signature_name") or ""
    if not isinstance(signature, str):
        raise RequestError(f"signature_name: expected a string; received {signature!r}")
    return signature


def rest_examples(body: dict[str, Any], schema: RawSchema) -> list[bytes]:
    """The serialized tf.Examples of a REST classify/regress body (after `rest_signature`)."""
    examples = body.get("examples")
    if not isinstance(examples, list) or not examples:
        raise RequestError('"examples": expected a non-empty list of objects')
    kinds = {c.name: c.kind for c in schema.columns}
    context = _example(body["context"], kinds, "context") if "context" in body else b""
    return [context + _example(x, kinds, f"examples[{i}]") for i, x in enumerate(examples)]


def _example(obj: Any, kinds: dict[str, str], where: str) -> bytes:
    from tensorflow.core.example import example_pb2

    if type(obj) is not dict:
        raise RequestError(f"{where}: expected an object of feature values; received {obj!r:.80}")
    example = example_pb2.Example()
    for name, value in obj.items():
        kind = kinds.get(name)
        if kind is None:
            raise RequestError(
                f"{where}: unknown feature {name!r}; the model takes {sorted(kinds)}"
            )
        values = value if type(value) is list else [value]
        feature = example.features.feature[name]
        at = f"{where}.{name}"
        if kind == "float":
            feature.float_list.value.extend(_float(x, at) for x in values)
        elif kind == "int":
            feature.int64_list.value.extend(_int(x, at) for x in values)
        else:
            feature.bytes_list.value.extend(_bytes(x, at) for x in values)
    return example.SerializeToString()


def _float(x: Any, where: str) -> float:
    if type(x) in (int, float) and abs(x) <= _FLOAT32_MAX:
        return float(x)
    raise RequestError(f"{where}: expected a float32 number; received {x!r:.80}")


def _int(x: Any, where: str) -> int:
    if type(x) is bool:
        return int(x)  # TF Serving: true/false are 1/0
    if type(x) is int and _INT64[0] <= x <= _INT64[1]:
        return x
    raise RequestError(f"{where}: expected an int64 integer; received {x!r:.80}")


def _bytes(x: Any, where: str) -> bytes:
    if type(x) is str:
        return x.encode()
    if type(x) in (int, float):  # as Predict takes a number for a string feature: its text
        return str(x).encode()
    if type(x) is dict and set(x) == {"b64"} and type(x["b64"]) is str:
        try:
            return base64.b64decode(x["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(f"{where}: b64 is not valid base64") from None
    raise RequestError(f'{where}: expected text or {{"b64": ...}}; received {x!r:.80}')


def rest_results(method: str, values: np.ndarray) -> dict[str, Any]:
    """TF Serving's REST answer."""
    if method == REGRESS:
        return {"results": short_floats(values)}
    names = labels(values)
    return {"results": [[[names[j], s] for j, s in enumerate(row)] for row in short_floats(values)]}


# -- gRPC ---------------------------------------------------------------------------------------


def grpc_examples(request: Any) -> list[bytes]:
    """The serialized tf.Examples of a ClassificationRequest / RegressionRequest."""
    which = request.input.WhichOneof("kind")
    if which == "example_list":
        found = [e.SerializeToString() for e in request.input.example_list.examples]
    elif which == "example_list_with_context":
        listed = request.input.example_list_with_context
        context = listed.context.SerializeToString()
        found = [context + e.SerializeToString() for e in listed.examples]
    else:
        raise RequestError("input: expected example_list or example_list_with_context")
    if not found:
        raise RequestError(f"input.{which}: expected at least one example")
    return found


def grpc_response(method: str, v: Version, values: np.ndarray) -> Any:
    from tensorflow_serving.apis import classification_pb2, regression_pb2

    if method == REGRESS:
        response = regression_pb2.RegressionResponse()
        for value in values.tolist():
            response.result.regressions.add(value=value)
    else:
        response = classification_pb2.ClassificationResponse()
        names = labels(values)
        for row in values.tolist():
            classes = response.result.classifications.add().classes
            for name, score in zip(names, row, strict=True):
                classes.add(label=name, score=score)
    response.model_spec.name = v.name
    response.model_spec.version.value = v.version
    response.model_spec.signature_name = EXAMPLES
    return response
