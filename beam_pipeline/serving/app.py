"""TF Serving's REST API on starlette (plus feedback, health and metrics).

    GET  /v1/models/{name}[/versions/{v}|/labels/{label}]            version status
    GET  /v1/models/{name}[/versions/{v}|/labels/{label}]/metadata   signature defs
    POST /v1/models/{name}[/versions/{v}|/labels/{label}]:predict    {"instances": [...]} or
         {"inputs": {...}}, optional "signature_name"
    POST /v1/models/{name}[/versions/{v}|/labels/{label}]:classify | :regress
         {"examples": [...], "context": {...}}: TF Serving's classify/regress (`inference`)
    POST /v1/models/{name}:feedback                    {"request_id": R, "label": L} or a list
    GET  /healthz  /readyz  /metrics  /monitoring/prometheus/metrics (TF Serving's path)

The signature, as TF Serving picks it: ``signature_name`` when given; otherwise
``serving_default`` (serialized tf.Examples) when the request carries them (``{"b64": ...}``
instances, or an ``examples`` input), and ``serving_raw`` for named raw features. Answers are TF
Serving's bodies exactly (``{"predictions": ...}`` / ``{"outputs": ...}``); the request id is the
``X-Request-Id`` header (the client's, or a new one) and row ``i`` is logged as ``{id}/{i}``.

Errors are TF Serving's ``{"error": "..."}``: 400 for a bad request (the field is named; that
includes NaN, Infinity and numbers beyond float64, which strict JSON has not), 404 for an unknown
model, version or label, 413 for a body over ``serving.max_body_bytes`` (read to its end first,
so a client that sends its whole body before reading gets the answer) or a request with more rows
than ``serving.max_queued_rows``, 503 while the queue is full; an unexpected failure is a 500
with the request id, its traceback only in the server's log. Model names are looked up among the
configured models only, never used as paths.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
from typing import Any

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from beam_pipeline.serving import inference
from beam_pipeline.serving.batching import ModelRefused, Overloaded, TooManyRows
from beam_pipeline.serving.inputs import (
    Inputs,
    RequestError,
    columns_inputs,
    examples_inputs,
    nonfinite_path,
    rows_inputs,
)
from beam_pipeline.serving.models import EXAMPLES, RAW, Model, NotFound, Version
from beam_pipeline.serving.service import Service, request_id, short_floats

log = logging.getLogger(__name__)

TARGET = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_-]*)"
    r"(?:/versions/(?P<version>[0-9]{1,18})|/labels/(?P<label>[A-Za-z0-9][A-Za-z0-9_-]*))?"
    r"(?::(?P<verb>[a-z]+)|/(?P<meta>metadata))?$"
)


class TooLarge(Exception):
    pass


MODELS = "/v1/models/"
DRAIN_BYTES = 256 << 20  # a body over the limit is read (and dropped) up to this, then closed


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def loads(body: bytes) -> Any:
    """Strict JSON (orjson). NaN, Infinity and numbers beyond float64 are refused naming where
    they are (found with Python's lenient parser, on this error path only)."""
    try:
        return orjson.loads(body or b"null")
    except orjson.JSONDecodeError as exc:
        where = None
        try:
            where = nonfinite_path(json.loads(body))
        except (ValueError, RecursionError):
            pass
        if where:
            raise RequestError(
                f"{where}: NaN, Infinity and numbers beyond float64 (such as 1e400) are not "
                "valid JSON numbers; send a finite number, or null for a missing value"
            ) from None
        raise RequestError(f"malformed JSON body: {exc}") from None


def _error(message: str, status: int, rid: str | None = None) -> Response:
    return _json({"error": message}, status, {"X-Request-Id": rid} if rid else None)


class Disconnected(Exception):
    """The client went away before its request's body arrived (nothing is answered)."""


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def _body(scope: Scope, receive: Receive, limit: int) -> bytes:
    chunks, size = [], 0
    declared = _header(scope, b"content-length")
    over = bool(declared and declared.isdigit() and int(declared) > limit)
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > limit:
            over = True
        if over:  # keep reading, so the client (sending before it reads) gets the 413
            if size > DRAIN_BYTES:
                break
            continue
        chunks.append(chunk)
    if over:
        raise TooLarge
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


Reply = tuple[int, bytes, list[tuple[bytes, bytes]]]  # status, JSON body, extra headers


def _reply(
    data: Any, status: int = 200, rid: str | None = None, version: int | None = None
) -> Reply:
    headers = [] if rid is None else [(b"x-request-id", rid.encode())]
    if version is not None:
        headers.append((b"x-model-version", str(version).encode()))
    return status, orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY), headers


async def _send(send: Send, reply: Reply) -> None:
    """A JSON answer straight to the ASGI server (starlette's Response cost ~10 % of a predict
    request on the event loop)."""
    status, body, headers = reply
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _status_json(model: Model, version: int | None) -> dict[str, Any]:
    items = sorted(model.status.values(), key=lambda s: -s.version)
    if version is not None:
        items = [s for s in items if s.version == version]
        if not items:
            raise NotFound(f"Could not find version {version} of model {model.name!r}")
    return {
        "model_version_status": [
            {
                "version": str(s.version),
                "state": s.state,
                "status": {
                    "error_code": "UNKNOWN" if s.error else "OK",
                    "error_message": s.error,
                },
            }
            for s in items
        ]
    }


def _metadata_json(v: Version) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    return {
        "model_spec": {"name": v.name, "signature_name": "", "version": str(v.version)},
        "metadata": {
            "signature_def": MessageToDict(v.signature_defs, preserving_proto_field_name=True)
        },
    }


def shape_outputs(outputs: dict[str, Any], rows: bool) -> Any:
    """TF Serving's answer: ``predictions`` (row format) or ``outputs`` (columnar).

    One output: its values (a list per row); several: an object per row / per output name.
    Numbers are left as numpy arrays for orjson, which writes a float32 as the shortest decimal
    that reads back to it (as `score` writes them), with no Python object per value."""
    if len(outputs) == 1:
        return np.ascontiguousarray(next(iter(outputs.values())))
    if not rows:
        return {k: np.ascontiguousarray(v) for k, v in outputs.items()}
    lists = {k: short_floats(v) for k, v in outputs.items()}
    n = len(next(iter(lists.values())))
    return [{k: v[i] for k, v in lists.items()} for i in range(n)]


def _b64(value: Any, where: str) -> bytes:
    if isinstance(value, dict) and set(value) == {"examples"}:
        value = value["examples"]
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not (isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str)):
        raise RequestError(
            f'{where}: serving_default takes serialized tf.Examples as {{"b64": "..."}}; '
            f"received {str(value)[:80]!r}"
        )
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"{where}: b64 is not valid base64") from None


def _carries_examples(data: Any) -> bool:
    """TF Serving's default: serialized tf.Examples go to serving_default."""
    if isinstance(data, dict):
        return set(data) == {"examples"}
    if isinstance(data, list) and data:
        first = data[0]
        return isinstance(first, dict) and (set(first) == {"b64"} or set(first) == {"examples"})
    return False


def parse_predict(body: Any, v: Version) -> tuple[str, Inputs, bool]:
    """(signature, the request's rows, row format?): the shape only; values are checked with
    their batch on the model thread."""
    if not isinstance(body, dict):
        raise RequestError('expected a JSON object with "instances" or "inputs"')
    if "instances" in body and "inputs" in body:
        raise RequestError('"instances" and "inputs" cannot be mixed: send one of them')
    unknown = sorted(set(body) - {"instances", "inputs", "signature_name"})
    if unknown:
        raise RequestError(
            f'unknown field {unknown[0]!r}; expected "instances" or "inputs" and optionally '
            '"signature_name"'
        )
    if "instances" not in body and "inputs" not in body:
        raise RequestError('missing "instances" (row format) or "inputs" (columnar format)')
    rows_format = "instances" in body
    data = body["instances"] if rows_format else body["inputs"]
    signature = body.get("signature_name")
    if signature is not None and not isinstance(signature, str):
        raise RequestError(f"signature_name: expected a string; received {signature!r}")
    if not signature:
        raw_names = set(v.spec.names)
        examples = _carries_examples(data) and not (
            isinstance(data, dict) and raw_names == {"examples"}
        )
        signature = EXAMPLES if examples else RAW
    if signature not in (RAW, EXAMPLES) or signature not in v.signatures:
        raise RequestError(
            f"signature_name: {signature!r} is not a signature of {v.name} version {v.version}; "
            f"signatures are {sorted(v.signatures)}"
        )
    if signature == RAW:
        if rows_format:
            return signature, rows_inputs(data, v.spec), rows_format
        return signature, columns_inputs(data, v.spec), rows_format
    where = "instances" if rows_format else "inputs"
    if not rows_format and isinstance(data, dict):
        if set(data) != {"examples"}:
            raise RequestError(
                f'inputs: serving_default takes one input, "examples"; received {sorted(data)}'
            )
        data, where = data["examples"], "inputs.examples"
    if not isinstance(data, list) or not data:
        raise RequestError(f"{where}: expected a non-empty list of serialized tf.Examples")
    examples = [_b64(x, f"{where}[{i}]") for i, x in enumerate(data)]
    return signature, examples_inputs(examples, where), rows_format


def build_app(service: Service) -> ASGIApp:
    section = service.section
    manager = service.manager
    metrics = service.metrics

    def target(path: str) -> re.Match[str]:
        m = TARGET.match(path)
        if m is None:
            raise NotFound(f"no such model path: {path[:100]!r}")
        return m

    def pick(m: re.Match[str]) -> Version:
        version = int(m["version"]) if m["version"] else None
        return manager.resolve(m["name"], version, m["label"])

    counters: dict[tuple[str, str, str, int], Any] = {}  # labels() took a lock per call
    latencies: dict[str, Any] = {}

    def count(name: str, version: str, method: str, code: int) -> None:
        key = (name, version, method, code)
        counter = counters.get(key)
        if counter is None:
            known = name in manager.models
            if len(counters) > 10_000:  # unknown names are "?"; versions come and go
                counters.clear()
            counter = counters[key] = metrics.requests.labels(
                name if known else "?", version if known else "?", "rest", method, str(code)
            )
        counter.inc()

    def observe(name: str, seconds: float) -> None:
        histogram = latencies.get(name)
        if histogram is None:
            histogram = latencies[name] = metrics.latency.labels(name, "rest")
        histogram.observe(seconds)

    async def get_model(request: Request) -> Response:
        name, version, method, code = "?", "?", "status", 200
        try:
            m = target(request.scope["path"][len(MODELS) :])
            name = m["name"]
            if m["verb"]:
                code = 405
                return _error(f"use POST for :{m['verb']}", 405)
            if m["meta"]:
                method = "metadata"
                v = pick(m)
                version = str(v.version)
                return _json(_metadata_json(v))
            model = manager.get(m["name"])
            wanted = int(m["version"]) if m["version"] else None
            if m["label"]:
                wanted = manager.resolve(m["name"], label=m["label"]).version
            version = str(wanted) if wanted is not None else "all"
            return _json(_status_json(model, wanted))
        except NotFound as exc:
            code = 404
            return _error(str(exc), 404)
        finally:
            count(name, version, method, code)

    async def post_model(scope: Scope, receive: Receive) -> Reply | None:
        """A POST under /v1/models/ on raw ASGI (no starlette Request/Response on this path);
        None when the client went away before its body arrived."""
        t0 = time.perf_counter()
        rid = None
        name, verb, code = "?", "?", 500
        served = ["?"]  # the version that answered (set by _predict)
        path = scope["path"]
        try:
            rid = request_id(_header(scope, b"x-request-id"))
            m = target(path[len(MODELS) :])
            name, verb = m["name"], m["verb"] or "?"
            manager.get(name)
            if m["meta"] or not m["verb"]:
                raise NotFound(f"no such endpoint: POST {path[:100]}")
            body = loads(await _body(scope, receive, section.max_body_bytes))
            if verb == "predict":
                reply = await _predict(m, body, rid, served)
            elif verb == "feedback":
                reply = _feedback(name, body, rid)
            elif verb in (inference.CLASSIFY, inference.REGRESS):
                reply = await _infer(m, verb, body, rid, served)
            else:
                raise NotFound(
                    f"unknown method :{verb}; expected :predict, :classify, :regress or :feedback"
                )
            code = reply[0]
            return reply
        except RequestError as exc:
            code = 400
            return _reply({"error": str(exc)}, 400, rid)
        except ModelRefused as exc:
            code = 400
            return _reply({"error": f"the model refused the input: {exc}"}, 400, rid)
        except NotFound as exc:
            code = 404
            return _reply({"error": str(exc)}, 404, rid)
        except TooLarge:
            code = 413
            return _reply(
                {
                    "error": f"request body over serving.max_body_bytes ({section.max_body_bytes} "
                    "bytes)"
                },
                413,
                rid,
            )
        except TooManyRows as exc:
            code = 413
            return _reply({"error": str(exc)}, 413, rid)
        except Overloaded as exc:
            code = 503
            return _reply({"error": str(exc)}, 503, rid)
        except Disconnected:
            code = 499  # nginx's "client closed request"; nothing is sent
            return None
        except Exception:
            log.exception("serve: request %s failed", rid)
            return _reply(
                {"error": f"internal error; see the server log for request {rid}"}, 500, rid
            )
        finally:
            known = name in manager.models
            count(name, served[0], verb if known else "?", code)
            if known and verb in ("predict", "classify", "regress"):
                observe(name, time.perf_counter() - t0)

    async def _predict(m: re.Match[str], body: Any, rid: str, served: list[str]) -> Reply:
        v = pick(m)
        served[0] = str(v.version)
        manager.acquire(v)
        try:
            signature, inputs, rows_format = parse_predict(body, v)
            answer = await service.predict(v, signature, inputs, rid)
        finally:
            manager.release(v)
        if rows_format:
            data = {"predictions": shape_outputs(answer.outputs, True)}
        else:
            data = {"outputs": shape_outputs(answer.outputs, False)}
        return _reply(data, 200, rid, v.version)

    async def _infer(
        m: re.Match[str], method: str, body: Any, rid: str, served: list[str]
    ) -> Reply:
        v = pick(m)
        served[0] = str(v.version)
        task = inference.check_method(v, method, inference.rest_signature(body))
        examples = inference.rest_examples(body, v.spec)
        manager.acquire(v)
        try:
            values = await inference.infer(service, v, task, method, examples, "examples", rid)
        finally:
            manager.release(v)
        return _reply(inference.rest_results(method, values), 200, rid, v.version)

    def _feedback(name: str, body: Any, rid: str) -> Reply:
        items = body if isinstance(body, list) else [body]
        if not items:
            raise RequestError("expected a feedback object or a non-empty list of them")
        pairs = []
        for i, item in enumerate(items):
            where = f"[{i}]" if isinstance(body, list) else "body"
            if not isinstance(item, dict) or set(item) != {"request_id", "label"}:
                raise RequestError(
                    f'{where}: expected {{"request_id": ..., "label": ...}}; '
                    f"received {str(item)[:80]!r}"
                )
            r, label = item["request_id"], item["label"]
            if not isinstance(r, str) or not r or len(r) > 200:
                raise RequestError(
                    f"{where}.request_id: expected a request id string; received {r!r}"
                )
            if isinstance(label, dict | list) or label is None:
                raise RequestError(
                    f"{where}.label: expected a number, string or boolean; received {label!r}"
                )
            pairs.append((r, label))
        unknown = service.feedback(name, pairs)
        return _reply({"accepted": len(pairs), "unknown_request_ids": unknown}, 200, rid)

    async def healthz(request: Request) -> Response:
        return _json({"status": "alive"})

    async def readyz(request: Request) -> Response:
        ready = manager.ready()
        if ready and all(ready.values()):
            return _json({"status": "ready", "models": ready})
        return _json({"status": "not ready", "models": ready}, 503)

    async def metrics_endpoint(request: Request) -> Response:
        metrics.log_queue.set(service.writer.depth())
        return Response(metrics.text(), media_type="text/plain; version=0.0.4")

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(f"no such endpoint: {request.method} {request.url.path[:100]}", 404)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return _error(f"method {request.method} is not allowed here", 405)

    routes = {
        ("GET", "/healthz"): healthz,
        ("GET", "/readyz"): readyz,
        ("GET", "/metrics"): metrics_endpoint,
        ("GET", "/monitoring/prometheus/metrics"): metrics_endpoint,
    }
    fallback = Starlette(  # 404 and 405 for everything else
        routes=[
            *(Route(path, handler, methods=[method]) for (method, path), handler in routes.items()),
            Route("/v1/models/{path:path}", get_model, methods=["GET"]),
        ],
        exception_handlers={404: not_found, 405: not_allowed},
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        """Known paths straight to their handler (Starlette's router cost a fifth of a predict
        request on the event loop); the rest through Starlette."""
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            handler = routes.get((method, path))
            if handler is None and path.startswith(MODELS):
                if method == "POST":
                    reply = await post_model(scope, receive)
                    if reply is not None:
                        await _send(send, reply)
                    return
                handler = get_model if method == "GET" else None
            if handler is not None:
                response = await handler(Request(scope, receive))
                await response(scope, receive, send)
                return
        await fallback(scope, receive, send)

    return app
