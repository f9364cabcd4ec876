"""Classify and Regress as TF Serving's clients call them, on real models served by a real
`beam-pipeline serve`: the taxi model (binary, Sigmoid), the bundled penguins model (3 classes,
Softmax) and the bundled penguins_mass regression; and the penguins model refusing an empty row
and a row missing a feature with one reason over REST, gRPC (raw values and tf.Examples) and
`score`.

Cost: the two penguins pipelines (`pipeline_fixtures.penguins_run`, about 20-30 s each on 2
cores; penguins_mass is shared with test_regression_example) and one server start.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.csv as pacsv
import pytest

from beam_pipeline.io.raw_inputs import RawColumn, RawSchema
from beam_pipeline.serving import inference
from beam_pipeline.serving.inference import CLASSIFY, REGRESS, RequestError, Task, Unsupported
from tests import pipeline_fixtures as pf
from tests.serving import _fixtures as sf

PENGUINS_CSV = pf.ROOT / "data" / "penguins" / "penguins_processed.csv"
REQUIRED = "missing value (the model requires it)"


def penguin_rows(n: int, skip: int = 0) -> tuple[list[dict[str, Any]], list[int]]:
    """Rows of the bundled penguins file (features; species apart)."""
    table = pacsv.read_csv(PENGUINS_CSV).slice(skip, n)
    species = table.column("species").to_pylist()
    return table.drop(["species"]).to_pylist(), species


def mass_rows(n: int, skip: int = 0) -> list[dict[str, Any]]:
    """Rows of the bundled penguins file as penguins_mass takes them (body mass is its label)."""
    return pacsv.read_csv(PENGUINS_CSV).slice(skip, n).drop(["body_mass_g"]).to_pylist()


def example(row: dict[str, Any]) -> bytes:
    import tensorflow as tf

    feature = {}
    for k, v in row.items():
        if isinstance(v, str):
            feature[k] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()]))
        elif isinstance(v, int):
            feature[k] = tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))
        else:
            feature[k] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(v)]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


# -- units -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "classify", "regress"),
    [
        (Task("predictions", 3, "Softmax"), None, "3-class classifier"),
        (Task("predictions", 1, "Sigmoid"), None, None),
        (Task("predictions", 1, "BiasAdd"), "has no classes", None),
        (Task("predictions", 4, "BiasAdd"), "neither class probabilities", "neither"),
        (Task("predictions", 3, "Sigmoid"), "neither", "neither"),
    ],
)
def test_what_each_output_supports(task: Task, classify: str | None, regress: str | None) -> None:
    for method, expected in ((CLASSIFY, classify), (REGRESS, regress)):
        why = task.refusal(method)
        assert (why is None) if expected is None else (expected in (why or "")), (method, why)


SCHEMA = RawSchema(
    (RawColumn("fare", "float", True), RawColumn("hour", "int"), RawColumn("pay", "string"))
)


def test_rest_examples_follow_tf_servings_json_rules() -> None:
    from tensorflow.core.example import example_pb2

    body = {
        "signature_name": "serving_default",
        "context": {"pay": "Cash", "hour": 3},
        "examples": [
            {"fare": 12, "hour": [7]},  # an integer in a float feature; a one-value list
            {"fare": 1.5, "pay": {"b64": base64.b64encode(b"Card").decode()}, "hour": True},
            {"fare": 2.0, "pay": 42},  # a number in a string feature: its text, as Predict
        ],
    }
    assert inference.rest_signature(body) == "serving_default"
    examples = inference.rest_examples(body, SCHEMA)
    parsed = [example_pb2.Example.FromString(x).features.feature for x in examples]
    assert parsed[0]["fare"].float_list.value == [12.0]
    assert parsed[0]["hour"].int64_list.value == [7]  # the example's own value wins
    assert parsed[0]["pay"].bytes_list.value == [b"Cash"]  # from the context
    assert parsed[1]["pay"].bytes_list.value == [b"Card"]
    assert parsed[1]["hour"].int64_list.value == [1]
    assert parsed[2]["pay"].bytes_list.value == [b"42"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([1], 'expected a JSON object with "examples"'),
        ({"examples": []}, '"examples": expected a non-empty list'),
        ({"examples": [{}], "instances": []}, "unknown field 'instances'"),
        ({"examples": [{"fair": 1.0}]}, "examples[0]: unknown feature 'fair'"),
        ({"examples": [{"fare": None}]}, "examples[0].fare: expected a float32 number"),
        ({"examples": [{"fare": 1e39}]}, "examples[0].fare: expected a float32 number"),
        ({"examples": [{"hour": 1.5}]}, "examples[0].hour: expected an int64 integer"),
        ({"examples": [{"hour": 2**63}]}, "examples[0].hour: expected an int64 integer"),
        ({"examples": [{"pay": None}]}, 'examples[0].pay: expected text or {"b64": ...}'),
        ({"examples": [{"pay": {"b64": "%%"}}]}, "examples[0].pay: b64 is not valid base64"),
        ({"examples": [{}], "context": [1]}, "context: expected an object"),
        ({"examples": [{}], "signature_name": 3}, "signature_name: expected a string"),
    ],
)
def test_rest_examples_refused_naming_the_field(body: Any, message: str) -> None:
    with pytest.raises(RequestError) as err:
        inference.rest_examples(body, SCHEMA) if inference.rest_signature(body) == "" else None
    assert message in str(err.value)
    assert not isinstance(err.value, Unsupported)


def test_rest_results_are_tf_servings_bodies() -> None:
    scores = np.array([[0.25, 0.75], [0.5, 0.5]], np.float32)
    assert inference.rest_results(CLASSIFY, scores) == {
        "results": [[["0", 0.25], ["1", 0.75]], [["0", 0.5], ["1", 0.5]]]
    }
    assert inference.rest_results(REGRESS, np.array([0.1], np.float32)) == {"results": [0.1]}


# -- a real server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models() -> dict[str, Path]:
    return {
        "taxi": sf.model_dirs()[1],
        "penguins": pf.penguins_run("penguins")["serving"] / "1",
        "penguins_mass": pf.penguins_run("penguins_mass")["serving"] / "1",
    }


@pytest.fixture(scope="module")
def server(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("infer")
    sf.push(models["taxi"], tmp / "serving" / "taxi", 1)
    extra = []
    for name in ("penguins", "penguins_mass"):
        sf.push(models[name], tmp / "other" / name, 1)
        extra += ["--model", f"{name}={tmp / 'other' / name}"]
    with sf.running(tmp, *extra) as s:
        yield s


@pytest.fixture(scope="module")
def in_process(models: dict[str, Path]) -> Any:
    """serving_default of each model, in this process."""
    import tensorflow as tf

    fns = {k: tf.saved_model.load(str(p)).signatures["serving_default"] for k, p in models.items()}

    def predict(model: str, rows: list[dict[str, Any]]) -> np.ndarray:
        examples = tf.constant([example(r) for r in rows])
        return fns[model](examples=examples)["predictions"].numpy()

    return predict


def post(server: sf.Server, path: str, body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", content=json.dumps(body), timeout=60)


def _classes(response: Any) -> tuple[list[list[str]], np.ndarray]:
    labels = [[c.label for c in x.classes] for x in response.result.classifications]
    scores = np.array([[c.score for c in x.classes] for x in response.result.classifications])
    return labels, scores


def test_classify_and_regress_over_rest_and_grpc(server: sf.Server, in_process: Any) -> None:
    import grpc
    from tensorflow.core.example import example_pb2
    from tensorflow_serving.apis import (
        classification_pb2,
        prediction_service_pb2_grpc,
        regression_pb2,
    )

    taxi = sf.raw_rows(3, skip=40)
    p = in_process("taxi", taxi)[:, 0]
    penguins, species = penguin_rows(6, skip=100)
    probabilities = in_process("penguins", penguins)
    measured = mass_rows(6, skip=100)
    mass = in_process("penguins_mass", measured)[:, 0]

    # REST: TF Serving's bodies; classes labelled by index, binary as [1 - p, p].
    r = post(server, "/v1/models/taxi:classify", {"examples": taxi})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"results"} and r.headers["x-model-version"] == "1"
    # One request is one batch of the same examples as in process: the same float32 numbers,
    # written as their shortest decimals.
    one = np.float32(1)
    assert body == {"results": [[["0", float(str(one - x))], ["1", float(str(x))]] for x in p]}
    r = post(server, "/v1/models/taxi/versions/1:regress", {"examples": taxi})
    assert r.status_code == 200, r.text
    assert r.json() == {"results": [float(str(x)) for x in p]}
    context = {"species": 1, "culmen_length_mm": measured[0]["culmen_length_mm"]}
    examples = [{k: row[k] for k in ("culmen_depth_mm", "flipper_length_mm")} for row in measured]
    r = post(server, "/v1/models/penguins_mass:regress", {"context": context, "examples": examples})
    assert r.status_code == 200, r.text
    merged = [{**context, **x} for x in examples]
    np.testing.assert_allclose(
        r.json()["results"], in_process("penguins_mass", merged)[:, 0], rtol=1e-6
    )
    r = post(server, "/v1/models/penguins:classify", {"examples": penguins})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "results": [[[str(j), float(str(x))] for j, x in enumerate(row)] for row in probabilities]
    }
    assert probabilities.argmax(axis=1).tolist() == species  # the real species of these penguins

    # gRPC, no signature name (TF Serving's default: serving_default).
    with grpc.insecure_channel(server.grpc) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = classification_pb2.ClassificationRequest()
        request.model_spec.name = "penguins"
        for row in penguins:
            request.input.example_list.examples.add().ParseFromString(example(row))
        response, call = stub.Classify.with_call(request, timeout=60)
        assert response.model_spec.signature_name == "serving_default"
        assert response.model_spec.version.value == 1
        labels, scores = _classes(response)
        assert labels == [["0", "1", "2"]] * 6
        np.testing.assert_allclose(scores, probabilities, rtol=1e-5, atol=1e-7)
        assert any(k == "x-request-id" for k, _ in call.trailing_metadata())

        request = regression_pb2.RegressionRequest()
        request.model_spec.name = "penguins_mass"
        listed = request.input.example_list_with_context
        listed.context.ParseFromString(example(context))
        for x in examples:
            listed.examples.add().ParseFromString(example(x))
        response = stub.Regress(request, timeout=60)
        values = [x.value for x in response.result.regressions]
        np.testing.assert_allclose(values, in_process("penguins_mass", merged)[:, 0], rtol=1e-5)
        request = regression_pb2.RegressionRequest()
        request.model_spec.name = "penguins_mass"
        for row in measured:
            request.input.example_list.examples.add().ParseFromString(example(row))
        values = [x.value for x in stub.Regress(request, timeout=60).result.regressions]
        np.testing.assert_allclose(values, mass, rtol=1e-5)

        request = classification_pb2.ClassificationRequest()
        request.model_spec.name = "taxi"
        for row in taxi:
            request.input.example_list.examples.add().ParseFromString(example(row))
        labels, scores = _classes(stub.Classify(request, timeout=60))
        assert labels == [["0", "1"]] * 3
        np.testing.assert_allclose(scores[:, 1], p, rtol=1e-6)

        # Models without the meaning: UNIMPLEMENTED naming why (REST: 400).
        for call_, message, model, why in (
            (stub.Regress, regression_pb2.RegressionRequest(), "penguins", "3-class classifier"),
            (
                stub.Classify,
                classification_pb2.ClassificationRequest(),
                "penguins_mass",
                "no classes",
            ),
        ):
            message.model_spec.name = model
            message.input.example_list.examples.add().ParseFromString(example(penguins[0]))
            with pytest.raises(grpc.RpcError) as err:
                call_(message, timeout=60)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
            assert why in err.value.details() and "version 1" in err.value.details()
        request = classification_pb2.ClassificationRequest()
        request.model_spec.name = "penguins"
        request.model_spec.signature_name = "serving_raw"
        request.input.example_list.examples.add().ParseFromString(example(penguins[0]))
        with pytest.raises(grpc.RpcError) as err:
            stub.Classify(request, timeout=60)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "takes raw values" in err.value.details()
        request.model_spec.signature_name = ""
        request.input.example_list.examples[0].ParseFromString(
            example_pb2.Example().SerializeToString()
        )
        with pytest.raises(grpc.RpcError) as err:
            stub.Classify(request, timeout=60)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details() == f"input.examples[0]: column 'body_mass_g': {REQUIRED}"

    r = post(server, "/v1/models/penguins:regress", {"examples": penguins[:1]})
    assert r.status_code == 400 and "3-class classifier" in r.json()["error"], r.text
    r = post(server, "/v1/models/penguins_mass:classify", {"examples": penguins[:1]})
    assert r.status_code == 400 and "no classes" in r.json()["error"], r.text

    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{server.url}/monitoring/prometheus/metrics", timeout=30).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    seen = {
        (s.labels["model"], s.labels["api"], s.labels["method"], s.labels["code"])
        for s in families["serving_requests"].samples
        if s.name.endswith("_total") and s.labels["version"] == "1"
    }
    assert {
        ("taxi", "rest", "classify", "200"),
        ("taxi", "rest", "regress", "200"),
        ("penguins", "grpc", "classify", "OK"),
        ("penguins_mass", "grpc", "regress", "OK"),
        ("penguins", "grpc", "regress", "UNIMPLEMENTED"),
        ("penguins", "grpc", "classify", "INVALID_ARGUMENT"),
        ("penguins", "rest", "regress", "400"),
    } <= seen, seen
    assert "Traceback" not in server.stderr()


def test_penguins_refuses_an_empty_row_and_a_missing_feature_everywhere_alike(
    server: sf.Server, tmp_path: Path
) -> None:
    """The bundled penguins model (its curated schema: every feature present) refuses an empty
    row and a row missing flipper_length_mm, with one reason, over REST (row, columnar and b64
    formats), gRPC (raw strings and serialized tf.Examples), :classify, and the score job."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    (good,), _ = penguin_rows(1, skip=7)
    partial = {k: v for k, v in good.items() if k != "flipper_length_mm"}
    cases = [({}, "body_mass_g"), (partial, "flipper_length_mm")]
    for row, column in cases:
        reason = f"column '{column}': {REQUIRED}"
        b64 = {"b64": base64.b64encode(example(row)).decode()}
        for path, body, where in (
            (":predict", {"instances": [good, row]}, "instances[1]"),
            (":predict", {"instances": [b64]}, "instances[0]"),
            (":predict", {"inputs": {"examples": [b64]}}, "inputs.examples[0]"),
            (":classify", {"examples": [good, row]}, "examples[1]"),
        ):
            r = post(server, f"/v1/models/penguins{path}", body)
            assert r.status_code == 400, (path, body, r.text)
            assert r.json() == {"error": f"{where}: {reason}"}
        with grpc.insecure_channel(server.grpc) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            raw = predict_pb2.PredictRequest()
            raw.model_spec.name = "penguins"
            for k in good:
                raw.inputs[k].CopyFrom(tf.make_tensor_proto([str(row.get(k, ""))]))
            examples = predict_pb2.PredictRequest()
            examples.model_spec.name = "penguins"
            examples.inputs["examples"].CopyFrom(tf.make_tensor_proto([example(row)]))
            for request, where in ((raw, "inputs row 0"), (examples, "inputs.examples[0]")):
                with pytest.raises(grpc.RpcError) as err:
                    stub.Predict(request, timeout=60)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert err.value.details() == f"{where}: {reason}"
    r = post(server, "/v1/models/penguins:predict", {"instances": [good]})
    assert r.status_code == 200, r.text

    # score: the same rows in a CSV file are rejected with the same reason.
    run = pf.penguins_run("penguins")
    header = "species,culmen_length_mm,culmen_depth_mm,flipper_length_mm,body_mass_g"
    values = [str(good[k]) for k in header.split(",")[1:]]
    data = tmp_path / "new.csv"
    data.write_text(
        "\n".join(
            [
                header,
                ",".join(["0", *values]),
                "0,,,,",
                ",".join(["0", values[0], values[1], "", values[3]]),
            ]
        )
        + "\n"
    )
    out = tmp_path / "scored"
    code, summary, err = pf.cli(
        "score", str(run["config"]), "--input", str(data), "--output", str(out), "--json"
    )
    assert code == 0, err[-3000:]
    rejected = [
        json.loads(line)
        for f in (out / "rejected").glob("*.jsonl")
        for line in f.read_text().splitlines()
        if line
    ]
    assert sorted(r["reason"] for r in rejected) == [
        f"row 1: column 'body_mass_g': {REQUIRED}",
        f"row 2: column 'flipper_length_mm': {REQUIRED}",
    ]
