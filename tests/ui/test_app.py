"""The web UI's routes (in-process, through Starlette's test client) on a real pipeline's store."""

from __future__ import annotations

import getpass
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from beam_pipeline.core import registry
from beam_pipeline.core.config import load
from beam_pipeline.core.metadata import Store
from beam_pipeline.ui import create_app
from tests.conftest import run_cli
from tests.pipeline_fixtures import copy_pipeline, taxi_runs

pytestmark = pytest.mark.slow  # the shared pipeline (built once per session)


def client(config: Path, **options: object) -> TestClient:
    # The UI answers to IP literals and localhost only (DNS rebinding): not to "testserver".
    app = create_app(load(config), **options)  # type: ignore[arg-type]
    return TestClient(app, base_url="http://127.0.0.1:8080")


def token(page: str) -> str:
    found = re.search(r"name='token' value='([^']+)'", page)
    assert found, "the review form carries no token"
    return found.group(1)


def reviews(config: Path) -> int:
    return len(Store(load(config)).executions(registry.REVIEW))


def test_pages(tmp_path: Path) -> None:
    shared = taxi_runs()
    c = client(shared["config"])
    runs = c.get("/")
    assert runs.status_code == 200
    for r in shared["runs"]:
        assert f'href="/runs/{r["run_id"]}"' in runs.text
    assert "/static/ui.js" in runs.text and "http" not in runs.text.replace("xmlns", "")

    assert 'data-key="metric:auc"' in runs.text and 'data-key="param:train.seed"' in runs.text
    assert 'class="status completed"' in runs.text
    worst = c.get("/?sort=metric:auc&desc=0").text
    assert worst.index(shared["runs"][1]["run_id"]) < worst.index(shared["runs"][0]["run_id"])

    run = c.get(f"/runs/{shared['runs'][1]['run_id']}")
    assert run.status_code == 200 and 'data-status="cached"' in run.text
    assert 'href="/artifacts/' in run.text
    assert 'class="model-link" href="/models/2"' in run.text  # the version it produced
    assert "train.steps_per_epoch" in run.text and "learning_rate" in run.text  # params
    assert 'class="bp run-metrics"' in run.text

    stats_id = shared["runs"][0]["stages"]["statistics"]["outputs"]["statistics"]["id"]
    art = c.get(f"/artifacts/{stats_id}")
    assert art.status_code == 200 and "stats-hist" in art.text and "Lineage" in art.text
    assert 'data-selected="1"' in art.text  # the artifact itself, marked in its lineage

    models = c.get("/models")
    assert models.status_code == 200 and 'href="/models/3"' in models.text
    model = c.get("/models/3")
    assert "Slices by payment_type" in model.text and 'class="hbar"' in model.text
    assert "Training curves" in model.text and "review-form" not in model.text

    compare = c.get("/compare?v=1&v=2&v=3")
    assert compare.status_code == 200 and "hp: learning_rate" in compare.text
    assert "by slice" in compare.text and compare.text.count('class="chart bar-chart"') >= 4
    auc = re.search(r'<tr class="differs"><td>auc</td>(.*?)</tr>', compare.text)
    assert auc and auc.group(1).count('class="best"') == 1  # v2 is worse: marked differs
    assert 'class="chart xy-chart roc"' in compare.text
    one = c.get("/compare?v=2")
    assert one.status_code == 200 and "one version" in one.text
    assert c.get("/compare").status_code == 404

    monitoring = c.get("/monitoring")
    assert monitoring.status_code == 200 and "no monitoring reports yet" in monitoring.text

    assert c.get("/models/99").status_code == 404
    assert c.get("/runs/nope").status_code == 404
    assert c.get("/static/ui.css").headers["content-type"].startswith("text/css")


def test_review_is_off_unless_allowed_and_recorded_like_the_cli(tmp_path: Path) -> None:
    config = copy_pipeline(tmp_path)
    c = client(config)
    assert c.post("/models/3/review", data={"decision": "approved"}).status_code == 403

    c = client(config, allow_review=True)
    before = c.get("/api/state").json()["state"]
    assert "review-form" in c.get("/models/3").text
    resp = c.post(
        "/models/3/review",
        data={
            "decision": "rejected",
            "comment": "slice drop",
            "token": token(c.get("/models/3").text),
        },
        headers={"Origin": "http://127.0.0.1:8080", "Sec-Fetch-Site": "same-origin"},
        follow_redirects=False,
    )
    assert resp.status_code == 303 and resp.headers["location"] == "/models/3"
    store = Store(load(config))
    review = registry.latest_review(store, registry.model_by_version(store, 3).id)
    assert review is not None
    assert (review["decision"], review["comment"], review["user"]) == (
        "rejected",
        "slice drop",
        getpass.getuser(),
    )
    assert review["model_version"] == 3 and review["execution"]
    assert c.get("/api/state").json()["state"] != before  # pages reload on it
    assert "latest review: <b>rejected</b>" in c.get("/models/3").text
    bad = c.post(
        "/models/3/review", data={"decision": "maybe", "token": token(c.get("/models/3").text)}
    )
    assert bad.status_code == 400 and "expected approved or rejected" in bad.text


def test_review_from_another_site_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    config = copy_pipeline(tmp_path)
    c = client(config, allow_review=True)
    page = c.get("/models/3")
    assert page.headers["x-frame-options"] == "DENY"  # the Approve button cannot be framed
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    good = token(page.text)
    form = {"decision": "approved", "comment": "csrf"}
    before = reviews(config)
    attempts = {
        "no token": ({}, form),
        "a wrong token": ({}, {**form, "token": "x" * len(good)}),
        "another site's Origin": ({"Origin": "https://evil.example"}, {**form, "token": good}),
        "another port's Origin": ({"Origin": "http://127.0.0.1:9999"}, {**form, "token": good}),
        "Origin null": ({"Origin": "null"}, {**form, "token": good}),
        "another site's Referer": ({"Referer": "https://evil.example/x"}, {**form, "token": good}),
        "Sec-Fetch-Site cross-site": ({"Sec-Fetch-Site": "cross-site"}, {**form, "token": good}),
        "a rebound Host": ({"Host": "evil.example"}, {**form, "token": good}),
        "a rebound Host and Origin": (
            {"Host": "evil.example:8080", "Origin": "http://evil.example:8080"},
            {**form, "token": good},
        ),
    }
    for what, (headers, data) in attempts.items():
        resp = c.post("/models/3/review", data=data, headers=headers, follow_redirects=False)
        assert resp.status_code == 403, (what, resp.status_code, resp.text[:300])
    assert reviews(config) == before  # nothing was recorded
    assert "latest review: <b>approved" not in c.get("/models/3").text
    # A rebound name cannot read pages either (a token would leak); localhost and IPs can.
    assert c.get("/models/3", headers={"Host": "evil.example"}).status_code == 403
    assert c.get("/", headers={"Host": "localhost:8080"}).status_code == 200
    assert c.get("/", headers={"Host": "[::1]:8080"}).status_code == 200
    named = client(config, allow_review=True, allowed_hosts=("ml.internal",))
    assert named.get("/", headers={"Host": "ml.internal:8080"}).status_code == 200

    # The same site, without Origin/Referer (curl, say) but with the token, still reviews.
    resp = c.post("/models/3/review", data={**form, "token": good}, follow_redirects=False)
    assert resp.status_code == 303 and reviews(config) == before + 1


def test_version_labels_appear_wherever_versions_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = copy_pipeline(tmp_path)
    code, _, err = run_cli(["label", str(config), "--label", "stable", "--version", "1"], capsys)
    assert code == 0, err
    tag = '<span class="version-label">stable</span>'
    c = client(config)
    run1 = taxi_runs()["runs"][0]["run_id"]
    for url in ("/", "/models", "/models/1", f"/runs/{run1}", "/compare?v=1&v=3"):
        page = c.get(url)
        assert page.status_code == 200 and tag in page.text, url
    assert tag not in c.get("/models/3").text
    report = tmp_path / "report.html"
    code, _, err = run_cli(["report", str(config), "--model", "1", "--output", str(report)], capsys)
    assert code == 0 and tag in report.read_text(), err
