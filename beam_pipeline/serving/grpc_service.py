"""TF Serving's gRPC API (``PredictionService.Predict``/``GetModelMetadata``,
``ModelService.GetModelStatus``) on ``grpc.aio``, sharing the REST server's event loop, batchers
and log.

``Predict`` takes the inputs of the signature named in ``model_spec.signature_name``: by default
``serving_raw`` (one string tensor per raw feature, values as in a CSV file, ``""`` for
missing; numeric tensors are accepted too), or ``serving_default`` (``examples``: serialized
tf.Examples). The request id is the ``x-request-id`` metadata when sent; it comes back in the
initial metadata, and the rows are logged as ``R/i`` like REST requests.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import grpc
import numpy as np
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from beam_pipeline.serving.batching import ModelRefused, Overloaded
from beam_pipeline.serving.inputs import RequestError, check_columns
from beam_pipeline.serving.models import EXAMPLES, RAW, NotFound, Version
from beam_pipeline.serving.service import Service, request_id

log = logging.getLogger(__name__)

_STATES = get_model_status_pb2.ModelVersionStatus.State


def _version(service: Service, spec: Any) -> Version:
    which = spec.WhichOneof("version_choice")
    version = spec.version.value if which == "version" else None
    label = spec.version_label if which == "version_label" else None
    return service.manager.resolve(spec.name, version, label)


def _column(proto: Any) -> list[Any]:
    import tensorflow as tf

    values = (
        tf.make_ndarray(proto).reshape(-1)
        if proto.tensor_shape.dim
        else tf.make_ndarray(proto).reshape(1)
    )
    if values.dtype.kind in ("S", "O"):
        return [v.decode("utf-8") if isinstance(v, bytes) else v for v in values.tolist()]
    return values.tolist()


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, service: Service) -> None:
        self.service = service

    async def Predict(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC's name
        import tensorflow as tf

        service = self.service
        t0 = time.perf_counter()
        code = "OK"
        name = request.model_spec.name
        try:
            given = dict(context.invocation_metadata() or ()).get("x-request-id")
            rid = request_id(given)
            v = _version(service, request.model_spec)
            signature = request.model_spec.signature_name or RAW
            if signature not in (RAW, EXAMPLES) or signature not in v.signatures:
                raise RequestError(
                    f"signature_name: {signature!r} is not a signature of {v.name} version "
                    f"{v.version}; signatures are {sorted(v.signatures)}"
                )
            if signature == RAW:
                columns = {k: _column(t) for k, t in request.inputs.items()}
                inputs, logged = check_columns(columns, v.spec)
                rows = len(logged)
            else:
                if set(request.inputs) != {"examples"}:
                    raise RequestError(
                        f"inputs: serving_default takes one input, 'examples'; received "
                        f"{sorted(request.inputs)}"
                    )
                examples = tf.make_ndarray(request.inputs["examples"]).reshape(-1).tolist()
                inputs, logged, rows = {"examples": examples}, None, len(examples)
            service.manager.acquire(v)
            try:
                answer = await service.predict(v, signature, inputs, rows, rid, logged)
            finally:
                service.manager.release(v)
            await context.send_initial_metadata((("x-request-id", rid),))
            response = predict_pb2.PredictResponse()
            response.model_spec.name = v.name
            response.model_spec.version.value = v.version
            response.model_spec.signature_name = signature
            for key, value in answer.outputs.items():
                response.outputs[key].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
            return response
        except (RequestError, ModelRefused) as exc:
            code = "INVALID_ARGUMENT"
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except NotFound as exc:
            code = "NOT_FOUND"
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except Overloaded as exc:
            code = "RESOURCE_EXHAUSTED"
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        finally:
            known = name in service.manager.models
            label = name if known else "?"
            service.metrics.requests.labels(label, "grpc", "predict", code).inc()
            if known:
                service.metrics.latency.labels(label, "grpc").observe(time.perf_counter() - t0)

    async def GetModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        try:
            v = _version(self.service, request.model_spec)
        except NotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        fields = list(request.metadata_field) or ["signature_def"]
        if fields != ["signature_def"]:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"metadata_field: only 'signature_def' is available; received {fields}",
            )
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = v.name
        response.model_spec.version.value = v.version
        response.metadata["signature_def"].Pack(v.signature_defs)
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, service: Service) -> None:
        self.service = service

    async def GetModelStatus(self, request: Any, context: Any) -> Any:  # noqa: N802
        manager = self.service.manager
        spec = request.model_spec
        try:
            model = manager.get(spec.name)
            which = spec.WhichOneof("version_choice")
            wanted = None
            if which == "version":
                wanted = spec.version.value
            elif which == "version_label":
                wanted = manager.resolve(spec.name, label=spec.version_label).version
        except NotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        items = sorted(model.status.values(), key=lambda s: -s.version)
        if wanted is not None:
            items = [s for s in items if s.version == wanted]
            if not items:
                await context.abort(
                    grpc.StatusCode.NOT_FOUND, f"Could not find version {wanted} of {spec.name!r}"
                )
        response = get_model_status_pb2.GetModelStatusResponse()
        for s in items:
            item = response.model_version_status.add()
            item.version = s.version
            item.state = _STATES.Value(s.state)
            if s.error:
                item.status.error_code = 2  # UNKNOWN
                item.status.error_message = s.error
        return response


async def start_grpc(service: Service, host: str, port: int) -> Any:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", service.section.max_body_bytes),
            ("grpc.so_reuseport", 0),
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
