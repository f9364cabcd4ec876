"""TF Serving's gRPC API (``PredictionService.Predict``/``GetModelMetadata``,
``ModelService.GetModelStatus``) as grpc.aio servicers, served by `serving.h2grpc` (or by
grpc.aio itself: ``serving.grpc_server: grpcio``), sharing the REST server's event loop, batchers
and log.

``Predict`` picks the signature as TF Serving does: ``model_spec.signature_name`` when given;
otherwise ``serving_default`` when the only input is ``examples`` (serialized tf.Examples), and
``serving_raw`` for named raw features (one string tensor per feature, values as in a CSV file,
``""`` for missing; numeric tensors are accepted too). The tensors are only read on the event
loop; their values are decoded, checked and typed with their batch on the model thread.
``output_filter`` names outputs to return (an unknown name is INVALID_ARGUMENT). Every decode
error is INVALID_ARGUMENT naming the input. The request id is the ``x-request-id`` metadata when
sent (else a new one); it comes back in the trailing metadata (``x-request-id``, errors
included; sent with the status, where initial metadata cost a batch of its own per call), and
the rows are logged as ``R/i`` like REST requests. ``Classify`` and ``Regress`` read serialized
tf.Examples through ``serving_default`` (`beam_pipeline.serving.inference`: UNIMPLEMENTED,
without a traceback, where the model's output has no such meaning); ``MultiInference`` answers
UNIMPLEMENTED.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from beam_pipeline.serving import inference, wire
from beam_pipeline.serving.batching import ModelRefused, Overloaded, TooManyRows
from beam_pipeline.serving.inputs import (
    Inputs,
    RequestError,
    examples_inputs,
    tensor_inputs,
)
from beam_pipeline.serving.models import EXAMPLES, RAW, NotFound, Version
from beam_pipeline.serving.service import Service, request_id

log = logging.getLogger(__name__)

_STATES = get_model_status_pb2.ModelVersionStatus.State
_STRING = 7  # DT_STRING
_FLOAT = 1  # DT_FLOAT


ID_KEY = "x-request-id"  # the request id, as REST's X-Request-Id header


def _given_id(context: Any) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == ID_KEY:
            return str(value)
    return None


async def _abort(context: Any, code: grpc.StatusCode, details: str, rid: str) -> None:
    await context.abort(code, details, ((ID_KEY, rid),) if rid else ())


def _version(service: Service, spec: Any) -> Version:
    which = spec.WhichOneof("version_choice")
    version = spec.version.value if which == "version" else None
    label = spec.version_label if which == "version_label" else None
    return service.manager.resolve(spec.name, version, label)


def _raw_texts(tensors: Any) -> dict[str, list[bytes]] | None:
    """Every input's values as the client's bytes (typed with their batch), when every input
    is a string tensor (None otherwise); one pass over the map (each pass cost ~0.7 us an input)."""
    texts = {}
    for name, proto in tensors.items():
        if proto.dtype != _STRING or proto.tensor_content:
            return None
        values = texts[name] = list(proto.string_val)
        _check_shape(name, proto, len(values))
    return texts


@functools.lru_cache(maxsize=256)
def _row_shape(n: int) -> bytes:
    """The serialized TensorShapeProto ``[n]`` (a tensor of one value per row)."""
    return tensor_shape_pb2.TensorShapeProto(dim=[{"size": n}]).SerializeToString()


def _check_shape(name: str, proto: Any, n: int) -> None:
    shape = proto.tensor_shape
    if shape.SerializeToString() == _row_shape(n):  # the usual [rows], without a dim's wrapper
        return
    dims = [d.size for d in shape.dim]
    if dims and (len(dims) > 2 or (len(dims) == 2 and dims[1] != 1) or dims[0] != n):
        raise RequestError(
            f"inputs.{name}: expected shape [rows] or [rows, 1]; received {dims} holding {n} values"
        )


# dtype -> (numpy type, the repeated field holding its values): what tf.make_ndarray reads
_NUMERIC = {
    1: (np.float32, "float_val"),  # DT_FLOAT
    2: (np.float64, "double_val"),  # DT_DOUBLE
    3: (np.int32, "int_val"),  # DT_INT32
    4: (np.uint8, "int_val"),  # DT_UINT8
    5: (np.int16, "int_val"),  # DT_INT16
    6: (np.int8, "int_val"),  # DT_INT8
    9: (np.int64, "int64_val"),  # DT_INT64
    10: (np.bool_, "bool_val"),  # DT_BOOL
}
# dtypes whose repeated field holds exactly the values make_ndarray gives (a narrower integer
# type's ``int_val`` is an int32 that make_ndarray casts): read as a list, no numpy array
_AS_LIST = frozenset((1, 2, 3, 9, 10))


def _numeric(proto: Any) -> np.ndarray | list[Any] | None:
    """A numeric tensor's values, flat, as ``tf.make_ndarray`` gives them, read from the proto
    directly (`_values` takes ~1.9-2.5 µs a tensor this way where ``make_ndarray`` alone took
    7-12 µs, on the event loop: a request of 17 numeric inputs spent ~150 µs there): a list
    where the repeated field holds them as they are (the request's values, checked with their
    batch as REST's are), else an array; None where its rule is not the plain one (a value count
    other than the shape's, which it fills; other dtypes)."""
    kind = _NUMERIC.get(proto.dtype)
    if kind is None:
        return None
    dtype, field = kind
    content = proto.tensor_content
    values: np.ndarray | list[Any]
    if content:
        if len(content) % np.dtype(dtype).itemsize:
            return None
        values = np.frombuffer(content, dtype).copy()
    elif proto.dtype in _AS_LIST:
        values = list(getattr(proto, field))
        if proto.tensor_shape.SerializeToString() == _row_shape(len(values)):
            return values  # the usual [rows]
    else:
        values = np.array(getattr(proto, field), dtype)
    size = 1
    for dim in proto.tensor_shape.dim:
        size *= dim.size
    return values if len(values) == size else None


def _values(name: str, proto: Any) -> np.ndarray:
    """A tensor's values, flat (strings stay bytes: decoded with their batch)."""
    if proto.dtype == _STRING and not proto.tensor_content:
        values = np.empty(len(proto.string_val), dtype=object)
        values[:] = list(proto.string_val)
    else:
        values = _numeric(proto)
        if values is None:
            import tensorflow as tf

            try:
                values = tf.make_ndarray(proto).reshape(-1)
            except (TypeError, ValueError) as exc:
                raise RequestError(f"inputs.{name}: not a readable tensor: {exc}") from None
    _check_shape(name, proto, len(values))
    return values


def _tensor(value: np.ndarray) -> Any:
    """``tf.make_tensor_proto``'s proto for an output (see `_fill`)."""
    proto = tensor_pb2.TensorProto()
    _fill(proto, value)
    return proto


def _fill(proto: Any, value: np.ndarray) -> None:
    """Make the empty ``proto`` what ``tf.make_tensor_proto(value)`` builds: a float32 output
    directly, in place (``make_tensor_proto`` and a copy into the response cost ~15 us a request
    on the event loop); other dtypes through it."""
    if value.dtype != np.float32:
        import tensorflow as tf

        proto.CopyFrom(tf.make_tensor_proto(value))
        return
    proto.dtype = _FLOAT
    dim = proto.tensor_shape.dim
    for size in value.shape:
        dim.add(size=size)
    if value.size > 1:
        proto.tensor_content = np.ascontiguousarray(value).tobytes()
    else:
        proto.float_val.extend(value.ravel().tolist())


def _parse(request: Any, v: Version, message: bytes) -> tuple[str, Inputs]:
    """The signature and inputs of a Predict ``request``; ``message``: its serialized bytes
    (the inputs are read from them when they are plain tensors: `wire`)."""
    found = wire.read_inputs(message)
    names = set(found[0] if found is not None else request.inputs)
    signature = request.model_spec.signature_name
    if not signature:
        takes_examples = names == {"examples"} and "examples" not in v.spec.names
        signature = EXAMPLES if takes_examples else RAW
    if signature not in (RAW, EXAMPLES) or signature not in v.signatures:
        raise RequestError(
            f"signature_name: {signature!r} is not a signature of {v.name} version "
            f"{v.version}; signatures are {sorted(v.signatures)}"
        )
    unknown = [k for k in request.output_filter if k not in v.outputs]
    if unknown:
        raise RequestError(
            f"output_filter: {unknown[0]!r} is not an output of {v.name} version {v.version}; "
            f"outputs are {sorted(v.outputs)}"
        )
    if signature == RAW:
        if found is not None:
            columns, all_text = found
            return signature, tensor_inputs(columns, v.spec, texts=all_text)
        texts = _raw_texts(request.inputs)
        if texts is not None:
            return signature, tensor_inputs(texts, v.spec, texts=True)
        columns = {k: _values(k, t) for k, t in request.inputs.items()}
        return signature, tensor_inputs(columns, v.spec)
    if names != {"examples"}:
        raise RequestError(
            f"inputs: serving_default takes one input, 'examples'; received {sorted(names)}"
        )
    proto = request.inputs["examples"]
    if proto.dtype != _STRING:
        raise RequestError("inputs.examples: expected a string tensor of serialized tf.Examples")
    return signature, examples_inputs(list(proto.string_val), "inputs.examples")


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, service: Service) -> None:
        self.service = service
        self._children: dict[tuple[str, ...], Any] = {}  # metric children (labels() locks)

    def _child(self, metric: str, *labels: str) -> Any:
        """``service.metrics.<metric>.labels(*labels)``, cached."""
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = getattr(self.service.metrics, metric).labels(*labels)
            self._children[key] = child
        return child

    def _count(self, name: str, version: str, method: str, code: str) -> None:
        known = name in self.service.manager.models
        labels = (name, version) if known else ("?", "?")
        self._child("requests", *labels, "grpc", method, code).inc()

    async def Predict(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC's name
        service = self.service
        t0 = time.perf_counter()
        code = "OK"
        name = request.model_spec.name
        version = "?"
        rid = ""
        try:
            rid = request_id(_given_id(context))
            # The id goes back in the trailing metadata, sent with the status in the call's last
            # batch; initial metadata would be a batch of its own per call.
            context.set_trailing_metadata(((ID_KEY, rid),))
            v = _version(service, request.model_spec)
            version = str(v.version)
            # our transport keeps the message's bytes; grpc.aio's does not (~4 µs to write)
            message = getattr(context, "request_bytes", None) or request.SerializeToString()
            signature, inputs = _parse(request, v, message)
            service.manager.acquire(v)
            try:
                answer = await service.predict(v, signature, inputs, rid)
            finally:
                service.manager.release(v)
            response = predict_pb2.PredictResponse()
            spec = response.model_spec
            spec.name = v.name
            spec.version.value = v.version
            spec.signature_name = signature
            wanted = request.output_filter
            outputs = response.outputs
            for key, value in answer.outputs.items():
                if not wanted or key in wanted:
                    _fill(outputs[key], np.asarray(value))
            return response
        except (RequestError, ModelRefused, TooManyRows) as exc:
            code = "INVALID_ARGUMENT"
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc), rid)
        except NotFound as exc:
            code = "NOT_FOUND"
            await _abort(context, grpc.StatusCode.NOT_FOUND, str(exc), rid)
        except Overloaded as exc:
            code = "RESOURCE_EXHAUSTED"
            await _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc), rid)
        except Exception:
            code = "INTERNAL"
            log.exception("serve: gRPC Predict for %r failed (request %s)", name, rid)
            await _abort(
                context, grpc.StatusCode.INTERNAL, "internal error; see the server log", rid
            )
        finally:
            self._count(name, version, "predict", code)
            if name in service.manager.models:
                self._child("latency", name, "grpc").observe(time.perf_counter() - t0)

    async def GetModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        name, version, code = request.model_spec.name, "?", "OK"
        try:
            try:
                v = _version(self.service, request.model_spec)
            except NotFound as exc:
                code = "NOT_FOUND"
                await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            version = str(v.version)
            fields = list(request.metadata_field) or ["signature_def"]
            if fields != ["signature_def"]:
                code = "INVALID_ARGUMENT"
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"metadata_field: only 'signature_def' is available; received {fields}",
                )
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = v.name
            response.model_spec.version.value = v.version
            response.metadata["signature_def"].Pack(v.signature_defs)
            return response
        finally:
            self._count(name, version, "metadata", code)

    async def _infer(self, method: str, request: Any, context: Any) -> Any:
        """Classify / Regress (`inference`), with Predict's errors and counting."""
        service = self.service
        t0 = time.perf_counter()
        name, version, code = request.model_spec.name, "?", "OK"
        rid = ""
        try:
            rid = request_id(_given_id(context))
            context.set_trailing_metadata(((ID_KEY, rid),))
            v = _version(service, request.model_spec)
            version = str(v.version)
            task = inference.check_method(v, method, request.model_spec.signature_name)
            examples = inference.grpc_examples(request)
            service.manager.acquire(v)
            try:
                values = await inference.infer(
                    service, v, task, method, examples, "input.examples", rid
                )
            finally:
                service.manager.release(v)
            return inference.grpc_response(method, v, values)
        except inference.Unsupported as exc:
            code = "UNIMPLEMENTED"
            await _abort(context, grpc.StatusCode.UNIMPLEMENTED, str(exc), rid)
        except (RequestError, ModelRefused, TooManyRows) as exc:
            code = "INVALID_ARGUMENT"
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc), rid)
        except NotFound as exc:
            code = "NOT_FOUND"
            await _abort(context, grpc.StatusCode.NOT_FOUND, str(exc), rid)
        except Overloaded as exc:
            code = "RESOURCE_EXHAUSTED"
            await _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc), rid)
        except Exception:
            code = "INTERNAL"
            log.exception("serve: gRPC %s for %r failed (request %s)", method, name, rid)
            await _abort(
                context, grpc.StatusCode.INTERNAL, "internal error; see the server log", rid
            )
        finally:
            self._count(name, version, method, code)
            if name in service.manager.models:
                self._child("latency", name, "grpc").observe(time.perf_counter() - t0)

    async def Classify(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await self._infer(inference.CLASSIFY, request, context)

    async def Regress(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await self._infer(inference.REGRESS, request, context)

    async def MultiInference(self, request: Any, context: Any) -> Any:  # noqa: N802
        spec = (
            request.tasks[0].model_spec
            if request.tasks
            else predict_pb2.PredictRequest().model_spec
        )
        self._count(spec.name, "?", "multi_inference", "UNIMPLEMENTED")
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "multi_inference: the served models export predict signatures only; use Predict",
        )


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, service: Service) -> None:
        self.service = service

    async def GetModelStatus(self, request: Any, context: Any) -> Any:  # noqa: N802
        manager = self.service.manager
        spec = request.model_spec
        code, version = "OK", "all"
        try:
            try:
                model = manager.get(spec.name)
                which = spec.WhichOneof("version_choice")
                wanted = None
                if which == "version":
                    wanted = spec.version.value
                elif which == "version_label":
                    wanted = manager.resolve(spec.name, label=spec.version_label).version
            except NotFound as exc:
                code = "NOT_FOUND"
                await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            items = sorted(model.status.values(), key=lambda s: -s.version)
            if wanted is not None:
                version = str(wanted)
                items = [s for s in items if s.version == wanted]
                if not items:
                    code = "NOT_FOUND"
                    await context.abort(
                        grpc.StatusCode.NOT_FOUND,
                        f"Could not find version {wanted} of {spec.name!r}",
                    )
            response = get_model_status_pb2.GetModelStatusResponse()
            for s in items:
                item = response.model_version_status.add()
                item.version = s.version
                item.state = _STATES.Value(s.state)
                item.status.SetInParent()  # TF Serving always sends it: OK is error_code 0
                if s.error:
                    item.status.error_code = 2  # UNKNOWN
                    item.status.error_message = s.error
            return response
        finally:
            known = spec.name in manager.models
            self.service.metrics.requests.labels(
                spec.name if known else "?", version if known else "?", "grpc", "status", code
            ).inc()


async def start_grpc(service: Service, host: str, port: int, shared: bool = False) -> Any:
    """The gRPC server on ``serving.grpc_server``'s transport (`h2grpc`, or grpc.aio); both have
    ``stop(grace)``. ``shared``: the port is shared with the other workers (`serving.workers`)."""
    wire.warm()  # compiled (or loaded from numba's cache) now, not on the first call
    if service.section.grpc_server == "h2":
        from beam_pipeline.serving.h2grpc import H2GrpcServer

        h2 = H2GrpcServer(service.section.max_body_bytes)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionService(service), h2
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(service), h2)
        try:
            await h2.start(host, port, reuse_port=shared)
        except OSError as exc:
            from beam_pipeline.core.errors import ConfigError

            raise ConfigError(f"--grpc-port: cannot listen on {host}:{port}: {exc}") from None
        return h2
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", service.section.max_body_bytes),
            ("grpc.so_reuseport", 1 if shared else 0),
        ]
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(service), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(service), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        from beam_pipeline.core.errors import ConfigError

        raise ConfigError(f"--grpc-port: cannot listen on {host}:{port}")
    await server.start()
    return server
