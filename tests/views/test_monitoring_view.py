"""The Monitoring page, from MonitoringReport artifacts recorded in a real (SQLite) store; the
report JSON has the monitor's shape (alerts, skew rows with a TFDV description, prediction shift,
live quality) and is rendered generically. Fast: no pipeline, no server."""

from __future__ import annotations

import json
import re
from pathlib import Path

from beam_pipeline.core.artifacts import Artifact
from beam_pipeline.core.config import load
from beam_pipeline.core.metadata import Store
from beam_pipeline.views import monitoring, render
from tests.conftest import write_config

SKEW = {
    "category": "skew",
    "feature": "company",
    "kind": "COMPARATOR_L_INFTY_HIGH",
    "description": "The Linfty distance between training and serving is 0.31 (up to six "
    "significant digits), above the threshold 0.1.",
    "threshold": 0.1,
    "alert": True,
}


def report(auc: float, alerts: list[dict[str, object]], i: int) -> dict[str, object]:
    return {
        "model_name": "taxi",
        "window": {
            "since": f"2026-12-0{i}T00:00:00+00:00",
            "until": f"2026-12-0{i}T01:00:00+00:00",
        },
        "versions": [3],
        "quality": {
            "3": {
                "overall": {"live": {"auc": auc, "example_count": 50.0}, "evaluated": {"auc": 0.95}}
            }
        },  # fmt: skip
        "predictions": {"3": {"shift": 0.02}},
        "skew": [SKEW] if alerts else [],
        "alerts": alerts,
        "alert_kinds": ["skew"] if alerts else [],
        "new_key_from_the_loop": {"anything": [1, 2]},
    }


def test_reports_over_time_alerts_and_distances(tmp_path: Path) -> None:
    store = Store(load(write_config(tmp_path, {"source": "x.csv"})))
    bodies = [report(0.9, [], 1), report(0.7, [{**SKEW, "message": "skew: company: far"}], 2)]
    for i, body in enumerate(bodies):
        folder = tmp_path / f"report{i}"
        folder.mkdir()
        (folder / "report.json").write_text(json.dumps(body))
        art = Artifact("MonitoringReport", str(folder), {"versions": [3], "predictions": 100})
        store.record_execution("monitor", {}, outputs={"report": art})
    page = monitoring.monitoring_page(store, artifact_href="/artifacts/{id}")
    assert page.count('href="/artifacts/') == 2 and "1 alerts</span> skew" in page
    chart = re.search(r'<svg class="chart line-chart".*?</svg>', page, flags=re.S)
    assert chart and 'aria-label="auc"' in chart.group(0)
    assert 'data-name="v3 live"' in chart.group(
        0
    ) and 'data-name="v3 at evaluation"' in chart.group(0)
    finding = re.search(r"<tr class=\"blocking\"><td>skew · company · COMPARATOR_L_INFTY_HIGH"
                        r"</td><td>0.31 \(stated\)</td><td>0.1</td>", page)  # fmt: skip
    assert finding, page
    assert "skew: company: far" in page and "new_key_from_the_loop" in page
    newest = store.artifacts_of_type("MonitoringReport")[0]
    assert "Monitoring report" in render(newest) and "ALERT · 1" in render(newest)


def test_no_reports_says_how_to_get_one(tmp_path: Path) -> None:
    store = Store(load(write_config(tmp_path, {"source": "x.csv"})))
    assert "beam-pipeline monitor CONFIG" in monitoring.monitoring_page(store)
