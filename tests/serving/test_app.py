"""The REST app in-process (starlette's TestClient): what needs no loaded model."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():  # starlette 1.x prefers httpx2 for its TestClient; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from beam_pipeline.serving.app import build_app
from beam_pipeline.serving.metrics import Metrics
from beam_pipeline.serving.models import ModelManager
from beam_pipeline.serving.section import ServingSection
from beam_pipeline.serving.service import Service


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    manager = ModelManager({"empty": tmp_path / "serving" / "empty"})
    manager.poll()
    service = Service(ServingSection(), manager, str(tmp_path / "root"), Metrics())
    with TestClient(build_app(service)) as c:
        yield c
    service.writer.close()


def test_not_ready_until_a_version_is_loaded(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["models"] == {"empty": False}
    r = client.post("/v1/models/empty:predict", json={"instances": [{}]})
    assert r.status_code == 404 and "no version loaded" in r.json()["error"]


def test_a_bad_request_id_header_is_400(client: TestClient) -> None:
    r = client.post(
        "/v1/models/empty:predict", json={"instances": [{}]}, headers={"X-Request-Id": "a/b"}
    )
    assert r.status_code == 400 and "X-Request-Id" in r.json()["error"]


def test_feedback_for_an_unknown_model_is_404_and_wrong_methods_405(client: TestClient) -> None:
    r = client.post("/v1/models/nope:feedback", json={"request_id": "a", "label": 1})
    assert r.status_code == 404
    assert client.get("/v1/models/empty:predict").status_code == 405
    assert client.get("/nothing").status_code == 404
    assert set(client.get("/nothing").json()) == {"error"}
