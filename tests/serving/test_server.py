"""`beam-pipeline serve` as a real process on 127.0.0.1: REST, gRPC, errors, log, feedback."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from beam_pipeline.serving.log import read_records
from tests.serving import _fixtures as sf

ROWS = 40


@pytest.fixture(scope="module")
def models() -> dict[int, Path]:
    return sf.model_dirs()


@pytest.fixture(scope="module")
def server(models: dict[int, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("serve")
    sf.push(models[1], tmp / "serving" / "taxi", 1)
    extra = tmp / "other"
    sf.push(models[3], extra, 7)
    with sf.running(
        tmp,
        "--model",
        f"other={extra}",
        max_body_bytes=200_000,
        log_exclude_features=["company"],
        version_labels={"other": {"stable": 7}},
    ) as s:
        yield s


@pytest.fixture(scope="module")
def in_process(models: dict[int, Path]) -> Any:
    """serving_raw of version 1, called in this process on the same rows as CSV strings."""
    import tensorflow as tf

    fn = tf.saved_model.load(str(models[1])).signatures["serving_raw"]
    names = sorted(fn.structured_input_signature[1])

    def predict(rows: list[dict[str, Any]]) -> np.ndarray:
        inputs = sf.csv_strings(rows, names)
        return fn(**{k: tf.constant(v) for k, v in inputs.items()})["predictions"].numpy()

    return predict


def post(server: sf.Server, path: str, body: Any, **kw: Any) -> httpx.Response:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return httpx.post(f"{server.url}{path}", content=data, timeout=60, **kw)


def test_rest_row_and_columnar_formats_equal_the_saved_model_in_process(
    server: sf.Server, in_process: Any
) -> None:
    rows = sf.raw_rows(ROWS)
    expected = in_process(rows)
    r = post(server, "/v1/models/taxi:predict", {"instances": rows})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"predictions"}  # TF Serving's body exactly; the id is in the header
    np.testing.assert_allclose(np.array(body["predictions"]), expected, rtol=1e-6)
    assert r.headers["x-request-id"]
    assert r.headers["x-model-version"] == "1"

    names = sorted({k for row in rows for k in row})
    columns = {k: [row.get(k) for row in rows] for k in names}
    r = post(server, "/v1/models/taxi/versions/1:predict", {"inputs": columns})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json()["outputs"]), expected, rtol=1e-6)


def test_serving_default_takes_b64_examples_like_tf_serving(
    server: sf.Server, in_process: Any
) -> None:
    rows = sf.raw_rows(5)
    examples = [{"b64": base64.b64encode(_example(row)).decode()} for row in rows]
    r = post(
        server,
        "/v1/models/taxi:predict",
        {"signature_name": "serving_default", "instances": examples},
    )
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json()["predictions"]), in_process(rows), rtol=1e-5)


def test_grpc_prediction_service_client_gets_the_same_numbers(
    server: sf.Server, in_process: Any
) -> None:
    _grpc_client_checks(server, in_process)  # the default transport, `serving.h2grpc`


def test_the_grpcio_transport_answers_the_same(
    models: dict[int, Path], in_process: Any, tmp_path: Path
) -> None:
    sf.push(models[1], tmp_path / "serving" / "taxi", 1)
    # a PROMETHEUS_MULTIPROC_DIR left in the environment (another server's) is not used by a
    # lone process: its metrics stay its own
    other = tmp_path / "other-app-metrics"
    other.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(other)}
    with sf.running(tmp_path, env=env, grpc_server="grpcio") as server:
        _grpc_client_checks(server, in_process)
        metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
        assert any(
            x.startswith("serving_requests_total") and 'api="grpc"' in x and 'code="OK"' in x
            for x in metrics.splitlines()
        ), metrics
        assert "process_cpu_seconds_total" in metrics
    assert not list(other.iterdir())


def _grpc_client_checks(server: sf.Server, in_process: Any) -> None:
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    rows = sf.raw_rows(ROWS)
    names = sorted({k for row in rows for k in row})
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "taxi"
    request.model_spec.signature_name = "serving_raw"
    for k, values in sf.csv_strings(rows, names).items():
        request.inputs[k].CopyFrom(tf.make_tensor_proto(values))
    with grpc.insecure_channel(server.grpc) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response, call = stub.Predict.with_call(
            request, timeout=60, metadata=(("x-request-id", "grpc-test"),)
        )
        got = tf.make_ndarray(response.outputs["predictions"])
        np.testing.assert_allclose(got, in_process(rows), rtol=1e-6)
        assert response.model_spec.version.value == 1
        # the request id comes back in the trailing metadata (as REST's X-Request-Id header)
        assert ("x-request-id", "grpc-test") in tuple(call.trailing_metadata())
        assert not any(k == "x-request-id" for k, _ in call.initial_metadata())
        _, call = stub.Predict.with_call(request, timeout=60)
        assert [k for k, _ in call.trailing_metadata()].count("x-request-id") == 1  # a new one

        meta = stub.GetModelMetadata(
            get_model_metadata_pb2.GetModelMetadataRequest(
                model_spec={"name": "taxi"}, metadata_field=["signature_def"]
            )
        )
        defs = get_model_metadata_pb2.SignatureDefMap()
        meta.metadata["signature_def"].Unpack(defs)
        assert {"serving_default", "serving_raw"} <= set(defs.signature_def)

        status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "taxi"})
        )
        assert [(s.version, s.state) for s in status.model_version_status] == [
            (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)
        ]

        request.inputs["fare"].CopyFrom(tf.make_tensor_proto(["twelve"] * ROWS))
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(request, timeout=60)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "'fare'" in err.value.details() and "twelve" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(request, timeout=60, metadata=(("x-request-id", "grpc-bad"),))
        assert ("x-request-id", "grpc-bad") in tuple(err.value.trailing_metadata())
        request.model_spec.name = "nope"
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(request, timeout=60)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_status_metadata_labels_and_other_models(server: sf.Server) -> None:
    r = httpx.get(f"{server.url}/v1/models/taxi", timeout=30)
    assert r.json() == {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    r = httpx.get(f"{server.url}/v1/models/taxi/versions/1", timeout=30)
    assert r.json()["model_version_status"][0]["state"] == "AVAILABLE"
    assert httpx.get(f"{server.url}/v1/models/taxi/versions/2", timeout=30).status_code == 404
    meta = httpx.get(f"{server.url}/v1/models/taxi/metadata", timeout=30).json()
    assert meta["model_spec"] == {"name": "taxi", "signature_name": "", "version": "1"}
    raw = meta["metadata"]["signature_def"]["signature_def"]["serving_raw"]
    assert "fare" in raw["inputs"] and raw["inputs"]["fare"]["dtype"] == "DT_STRING"
    r = post(server, "/v1/models/other/labels/stable:predict", {"instances": sf.raw_rows(2)})
    assert r.status_code == 200 and r.headers["x-model-version"] == "7", r.text
    r = httpx.get(f"{server.url}/v1/models/other/labels/stable", timeout=30)
    assert r.json()["model_version_status"][0]["version"] == "7"
    assert httpx.get(f"{server.url}/healthz", timeout=30).status_code == 200
    assert httpx.get(f"{server.url}/readyz", timeout=30).json()["models"] == {
        "taxi": True,
        "other": True,
    }


BASE = sf.raw_rows(1)[0]  # a valid row; each bad request spoils one thing
BAD_REQUESTS = [
    ("malformed JSON", b'{"instances": [', 400, "malformed JSON"),
    ("not an object", [1, 2], 400, '"instances" or "inputs"'),
    ("mixed formats", {"instances": [{}], "inputs": {}}, 400, "cannot be mixed"),
    ("misspelt feature", {"instances": [{**BASE, "fair": 1.0}]}, 400, "unknown feature 'fair'"),
    (
        "missing required feature",
        {"instances": [{"fare": 1.0}]},
        400,
        "column 'payment_type': missing value",
    ),
    (
        "wrong type",
        {"instances": [BASE, {**BASE, "fare": "twelve"}]},
        400,
        "instances[1]: column 'fare': expected float; received 'twelve'",
    ),
    (
        "not an integer",
        {"instances": [{**BASE, "trip_start_hour": 1.5}]},
        400,
        "column 'trip_start_hour': expected int",
    ),
    ("unknown top-level field", {"instances": [{}], "extra": 1}, 400, "unknown field 'extra'"),
    (
        "unequal columns",
        {"inputs": {"fare": [1.0], "trip_miles": [1.0, 2.0]}},
        400,
        "same number of rows",
    ),
    ("unknown signature", {"signature_name": "nope", "instances": [{}]}, 400, "signature_name"),
    (
        "bad base64",
        {"signature_name": "serving_default", "instances": [{"b64": "%%"}]},
        400,
        "base64",
    ),
]


@pytest.mark.parametrize(
    ("case", "body", "code", "message"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS]
)
def test_bad_requests_get_tf_serving_errors_naming_the_field(
    server: sf.Server, case: str, body: Any, code: int, message: str
) -> None:
    r = post(server, "/v1/models/taxi:predict", body)
    assert r.status_code == code, r.text
    assert set(r.json()) == {"error"}
    assert message in r.json()["error"]
    assert "Traceback" not in r.text


@pytest.mark.parametrize(
    ("path", "code", "message"),
    [
        ("/v1/models/nope:predict", 404, "nope"),
        ("/v1/models/taxi/versions/9:predict", 404, "Specific(taxi, 9)"),
        ("/v1/models/taxi/labels/canary:predict", 404, "canary"),
        ("/v1/models/..%2F..%2Fetc:predict", 404, "no such model"),
        ("/v1/models/%2Fetc%2Fpasswd:predict", 404, "no such model"),
        ("/v1/models/taxi:classify", 400, "unknown field 'instances'"),
        ("/v1/models/taxi:explain", 404, "unknown method :explain"),
    ],
)
def test_unknown_models_versions_labels_and_paths(
    server: sf.Server, path: str, code: int, message: str
) -> None:
    r = post(server, path, {"instances": sf.raw_rows(1)})
    assert r.status_code == code, r.text
    assert message in r.json()["error"]


def test_a_body_over_the_limit_is_413(server: sf.Server) -> None:
    rows = sf.raw_rows(1) * 2000  # about 0.6 MB; the limit here is 200 kB
    r = post(server, "/v1/models/taxi:predict", {"instances": rows})
    assert r.status_code == 413 and "max_body_bytes" in r.json()["error"]


def test_predictions_are_logged_and_feedback_joins_by_request_id(
    server: sf.Server, in_process: Any
) -> None:
    rows = sf.raw_rows(3, skip=100)
    r = post(
        server, "/v1/models/taxi:predict", {"instances": rows}, headers={"X-Request-Id": "req-7"}
    )
    assert r.status_code == 200 and r.headers["x-request-id"] == "req-7"
    fb = post(
        server,
        "/v1/models/taxi:feedback",
        [
            {"request_id": "req-7", "label": 1},  # a bare id means row 0
            {"request_id": "req-7/2", "label": 0},
            {"request_id": "never-seen/0", "label": 1},
        ],
    )
    assert fb.status_code == 200, fb.text
    assert fb.json() == {"accepted": 3, "unknown_request_ids": ["never-seen/0"]}
    bad = post(server, "/v1/models/taxi:feedback", {"request_id": "x"})
    assert bad.status_code == 400 and "label" in bad.json()["error"]

    folder = server.root / "logs" / "predictions" / "taxi"
    feedback = server.root / "logs" / "feedback" / "taxi"

    def logged() -> list[dict[str, Any]]:  # the open segment is hidden; read it as a peer would
        out = []
        for p in sorted(folder.glob(".part-*.inprogress")) + sorted(folder.glob("part-*.jsonl")):
            out += [json.loads(x) for x in p.read_text().splitlines() if x.endswith("}")]
        return out

    sf.wait_for(lambda: any(x["request_id"] == "req-7/2" for x in logged()), 20, "the log")
    records = {x["request_id"]: x for x in logged() if x["request_id"].startswith("req-7/")}
    assert sorted(records) == ["req-7/0", "req-7/1", "req-7/2"]
    first = records["req-7/0"]
    assert set(first) == {
        "request_id",
        "model_name",
        "model_version",
        "time",
        "features",
        "prediction",
    }
    assert (first["model_name"], first["model_version"]) == ("taxi", 1)
    assert "company" not in first["features"]  # serving.log_exclude_features
    assert first["features"]["fare"] == rows[0]["fare"]
    expected = in_process(rows)[:, 0]
    got = [records[f"req-7/{i}"]["prediction"] for i in range(3)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)

    def labels() -> dict[str, Any]:
        out = {}
        for p in sorted(feedback.glob(".part-*.inprogress")) + sorted(
            feedback.glob("part-*.jsonl")
        ):
            for line in p.read_text().splitlines():
                if line.endswith("}"):
                    x = json.loads(line)
                    out[x["request_id"]] = x["label"]
        return out

    sf.wait_for(lambda: "req-7/2" in labels(), 20, "the feedback log")
    joined = {
        rid: (records[rid]["prediction"], label)
        for rid, label in labels().items()
        if rid in records
    }
    assert sorted(joined) == ["req-7/0", "req-7/2"]


def test_metrics_in_prometheus_text_format(server: sf.Server) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    post(server, "/v1/models/taxi:predict", {"instances": sf.raw_rows(2)})
    post(server, "/v1/models/taxi:predict", {"instances": [{"fair": 1}]})
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "serving_requests",
        "serving_request_seconds",
        "serving_batch_rows",
        "serving_queued_rows",
        "serving_loaded_versions",
        "serving_log_records_written",
        "serving_log_records_dropped",
        "serving_log_queue_depth",
    ):
        assert name in families, name
    codes = {
        s.labels["code"]
        for s in families["serving_requests"].samples
        if s.labels.get("model") == "taxi" and s.name.endswith("_total")
    }
    assert {"200", "400"} <= codes
    loaded = {
        (s.labels["model"], s.labels["version"]): s.value
        for s in families["serving_loaded_versions"].samples
    }
    assert loaded[("taxi", "1")] == 1


def test_feedback_cli_imports_a_csv_as_one_segment(tmp_path: Path) -> None:
    from beam_pipeline.cli import main

    config = sf.write_config(tmp_path)
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,label\nabc,1\nabc/3,0\nxyz/1,yes\n")
    assert main(["feedback", str(config), "--input", str(labels)]) == 0
    records, problems = read_records(tmp_path / "root" / "logs" / "feedback" / "taxi")
    assert problems == []
    assert [(r["request_id"], r["label"]) for r in records] == [
        ("abc/0", 1),
        ("abc/3", 0),
        ("xyz/1", "yes"),
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("id,label\nabc,1\n")
    assert main(["feedback", str(config), "--input", str(bad)]) == 1


def test_score_rest_and_grpc_accept_and_refuse_the_same_rows(
    server: sf.Server, models: dict[int, Path]
) -> None:
    """Generated rows with missing, empty, blank, wrong-typed and multi-valued values: the check
    score runs (`raw_inputs.check_rows` over all rows at once) and the server (one row per REST
    and per gRPC request) accept the same rows and refuse the others with the same reason."""
    import grpc
    import pyarrow as pa
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from beam_pipeline.io.raw_inputs import RawSchema, check_rows

    schema = RawSchema.load(models[1])
    assert schema is not None
    rng = np.random.default_rng(9)
    spoils = [None, "", "  ", "abc", 1.5, True, [1, 2], "7", -3]
    rows = []
    for row in sf.raw_rows(24, skip=200):
        for _ in range(int(rng.integers(0, 3))):
            column = schema.names[int(rng.integers(len(schema.names)))]
            spoil = spoils[int(rng.integers(len(spoils)))]
            if spoil is None:
                row.pop(column, None)
            else:
                row[column] = spoil
        rows.append(row)
    base = sf.raw_rows(1, skip=300)[0]
    rows += [  # an empty row, a row missing a required feature, a non-finite float
        {},
        {k: v for k, v in base.items() if k != "fare"},
        {**base, "fare": "nan"},
        {**base, "fare": "-Infinity"},
    ]
    texts = [{k: v for k, v in r.items() if not isinstance(v, list)} for r in rows]

    def verdicts(checked: Any) -> list[str]:
        reasons = dict(checked.rejected)
        return [reasons.get(i, "accepted") for i in range(len(rows))]

    by_json = verdicts(check_rows(rows, schema))
    columns = sf.csv_strings(texts, schema.names)
    by_text = verdicts(check_rows(pa.table(columns), schema))
    assert 4 < by_json.count("accepted") < len(rows) - 4, by_json  # both kinds are exercised
    assert "missing value" in by_json[-4] and "'fare': missing value" in by_json[-3]
    assert "finite float" in by_json[-2] and "finite float" in by_json[-1]

    with grpc.insecure_channel(server.grpc) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for i, row in enumerate(rows):
            r = post(server, "/v1/models/taxi:predict", {"instances": [row]})
            if by_json[i] == "accepted":
                assert r.status_code == 200, (row, r.text)
            else:
                assert r.status_code == 400, (row, by_json[i])
                assert r.json()["error"] == f"instances[0]: {by_json[i]}"
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "taxi"
            for k in schema.names:
                request.inputs[k].CopyFrom(tf.make_tensor_proto([columns[k][i]]))
            if by_text[i] == "accepted":
                stub.Predict(request, timeout=60)
            else:
                with pytest.raises(grpc.RpcError) as err:
                    stub.Predict(request, timeout=60)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert err.value.details() == f"inputs row 0: {by_text[i]}"


def _example(row: dict[str, Any]) -> bytes:
    import tensorflow as tf

    feature = {}
    for k, v in row.items():
        if isinstance(v, str):
            feature[k] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()]))
        elif isinstance(v, int):
            feature[k] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))
        else:
            feature[k] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(v)]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_tf_serving_client_conventions_work_unchanged(server: sf.Server, in_process: Any) -> None:
    """What a TF Serving client sends, with no signature name: serialized tf.Examples go to
    serving_default (REST b64 instances or an examples input; gRPC examples tensor); exact
    bodies; Classify/Regress; GetModelStatus.status; output_filter checked; the
    Prometheus path, with a version label on the request counters."""
    import grpc
    import tensorflow as tf
    from prometheus_client.parser import text_string_to_metric_families
    from tensorflow_serving.apis import (
        classification_pb2,
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
        regression_pb2,
    )

    rows = sf.raw_rows(4, skip=20)
    expected = in_process(rows)
    serialized = [_example(row) for row in rows]
    b64 = [{"b64": base64.b64encode(x).decode()} for x in serialized]
    r = post(server, "/v1/models/taxi:predict", {"instances": b64})
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"predictions"}
    np.testing.assert_allclose(np.array(r.json()["predictions"]), expected, rtol=1e-5)
    r = post(server, "/v1/models/taxi:predict", {"inputs": {"examples": b64}})
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"outputs"}
    np.testing.assert_allclose(np.array(r.json()["outputs"]), expected, rtol=1e-5)

    with grpc.insecure_channel(server.grpc) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "taxi"
        request.inputs["examples"].CopyFrom(tf.make_tensor_proto(serialized))
        response = stub.Predict(request, timeout=60)
        assert response.model_spec.signature_name == "serving_default"
        got = tf.make_ndarray(response.outputs["predictions"])
        np.testing.assert_allclose(got, expected, rtol=1e-5)

        request.output_filter.append("nosuch")
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(request, timeout=60)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "output_filter" in err.value.details()

        for call, message in (  # the binary taxi model: Classify and Regress (test_inference)
            (stub.Classify, classification_pb2.ClassificationRequest()),
            (stub.Regress, regression_pb2.RegressionRequest()),
        ):
            message.model_spec.name = "taxi"
            message.input.example_list.examples.add().ParseFromString(serialized[0])
            call(message, timeout=60)

        status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "taxi"})
        )
        assert status.model_version_status[0].HasField("status")
        assert status.model_version_status[0].status.error_code == 0

    text = httpx.get(f"{server.url}/monitoring/prometheus/metrics", timeout=30).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert "process_cpu_seconds" in families
    seen = {
        (s.labels["api"], s.labels["method"], s.labels["version"], s.labels["code"])
        for s in families["serving_requests"].samples
        if s.labels.get("model") == "taxi" and s.name.endswith("_total")
    }
    assert ("rest", "predict", "1", "200") in seen
    assert ("grpc", "predict", "1", "OK") in seen
    assert ("grpc", "predict", "1", "INVALID_ARGUMENT") in seen
    assert ("grpc", "classify", "1", "OK") in seen
    assert any(api == "grpc" and method == "status" for api, method, _, _ in seen)
    assert "Traceback" not in server.stderr()


HOSTILE = [
    ("deep nesting", b"[" * 90_000 + b"]" * 90_000, "malformed JSON"),
    ("NaN", b'{"instances": [{"fare": NaN}]}', "instances[0].fare: NaN, Infinity"),
    ("Infinity", b'{"instances": [{"fare": -Infinity}]}', "instances[0].fare: NaN, Infinity"),
    ("1e400", b'{"inputs": {"fare": [1.0, 1e400]}}', "inputs.fare[1]: NaN, Infinity"),
    ("NaN as text", {"instances": [{**BASE, "fare": "nan"}]}, "expected a finite float"),
    ("int overflow", {"instances": [{**BASE, "trip_seconds": 10**30}]}, "expected int"),
    ("empty row", {"instances": [{}]}, "missing value"),
    ("rows over the queue", {"inputs": {"fare": [1.0] * 10_001}}, "serving.max_queued_rows"),
]


@pytest.mark.parametrize(("case", "body", "message"), HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_requests_are_4xx(server: sf.Server, case: str, body: Any, message: str) -> None:
    r = post(server, "/v1/models/taxi:predict", body)
    assert 400 <= r.status_code < 500, r.text
    assert message in r.json()["error"]


def test_hostile_requests_leave_no_traceback_and_gauges_at_zero(server: sf.Server) -> None:
    import urllib.error
    import urllib.request

    import grpc
    import tensorflow as tf
    from prometheus_client.parser import text_string_to_metric_families
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    # A client that sends its whole body before reading (urllib) still gets the 413.
    request = urllib.request.Request(
        f"{server.url}/v1/models/taxi:predict", data=b"x" * (16 << 20), method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=60)
    assert err.value.code == 413 and b"max_body_bytes" in err.value.read()

    fb = post(server, "/v1/models/taxi:feedback", b'[{"request_id": "a/0", "label": NaN}]')
    assert fb.status_code == 400 and "body[0].label" in fb.json()["error"], fb.text

    with grpc.insecure_channel(server.grpc) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for name, proto in (
            ("company", tf.make_tensor_proto([b"\xff\xfe"])),  # not UTF-8
            ("fare", tf.make_tensor_proto([float("nan")])),
        ):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "taxi"
            for k, values in sf.csv_strings([BASE], sorted(BASE)).items():
                request.inputs[k].CopyFrom(tf.make_tensor_proto(values))
            request.inputs[name].CopyFrom(proto)
            with pytest.raises(grpc.RpcError) as rpc:
                stub.Predict(request, timeout=60)
            assert rpc.value.code() == grpc.StatusCode.INVALID_ARGUMENT, rpc.value.details()
            assert name in rpc.value.details()

    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert all(s.value == 0 for s in families["serving_queued_rows"].samples)
    codes = {s.labels["code"] for s in families["serving_requests"].samples}
    assert not {c for c in codes if c.startswith("5") or c in ("INTERNAL", "UNKNOWN")}, codes
    assert "Traceback" not in server.stderr()
