"""The HTML views of every artifact type, on the shared taxi pipeline's real artifacts.

`tests.pipeline_fixtures.taxi_runs` trains three models (v1 blessed and pushed, v2 worse and not
blessed, v3 judged against v1); the views are read from their files and ML Metadata.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from beam_pipeline.core.artifacts import Artifact
from beam_pipeline.core.config import load
from beam_pipeline.core.metadata import Store
from beam_pipeline.views import graph as g
from beam_pipeline.views import render, svg
from beam_pipeline.views import runs as rv
from beam_pipeline.views.artifacts import slice_pairs
from tests.pipeline_fixtures import taxi_runs

pytestmark = pytest.mark.slow  # the shared pipeline (built once per session)


@pytest.fixture(scope="module")
def store() -> Store:
    shared = taxi_runs()
    return Store(load(shared["config"]))


def outputs(run: int) -> dict[str, Artifact]:
    """Output artifacts of the shared pipeline's run ``run`` (0, 1, 2) by ``stage.key``."""
    shared = taxi_runs()
    summary = shared["runs"][run]
    st = Store(load(shared["config"]))
    ids = {
        f"{s}.{k}": o["id"]
        for s, info in summary["stages"].items()
        for k, o in (info.get("outputs") or {}).items()
    }
    by_id = {a.id: a for a in st.artifacts(list(ids.values()))}
    return {k: by_id[i] for k, i in ids.items()}


def text(html: str) -> str:
    return re.sub(r"<[^>]+>", " ", html)


def test_every_output_of_a_run_has_a_view() -> None:
    arts = outputs(0)
    views = {k: render(a) for k, a in arts.items()}
    ex = views["ingest.examples"]
    assert "Sample (train)" in ex and "payment_type" in ex and "rejected rows" in ex
    assert re.search(r"<td>\d[\d,]+</td>", ex)  # split row counts
    stats = views["statistics.statistics"]
    assert "train: " in stats and "eval: " in stats
    charts = re.findall(r'<svg class="chart histogram stats-hist".*?</svg>', stats)
    assert len(charts) >= 5 and all('data-series="eval"' in c for c in charts)  # one chart
    assert re.search(r"<title>train \[[-\d.,e+]+, [-\d.,e+]+\): [\d.]+%</title>", charts[0])
    assert "Credit Card" in stats  # top values of a string feature
    assert "payment_type" in views["schema.schema"] and "BYTES" in views["schema.schema"]
    assert "no anomalies" in views["validate.anomalies"]
    assert "Transformed features" in views["transform.transform_graph"]
    assert "Sample (train)" in views["transform.transformed_examples"]
    hp = views["tune.hyperparameters"]
    assert "defaults" in hp and "learning_rate" in text(hp)
    model = views["train.model"]
    assert "Training curves" in model and 'class="series"' in model
    assert "serving_default" in model and "serving_raw" in model and "trip_miles" in model
    ev = views["evaluate.evaluation"]
    assert "Slices by payment_type" in ev and "Slices by payment_type × trip_start_hour" in ev
    assert 'class="hbar"' in ev and "no baseline" in ev
    for plot in ("roc", "pr", "calibration"):
        assert f'class="chart xy-chart {plot}"' in ev
    rows = re.findall(r'<td class="slice">([^<]*)</td>', ev)
    fare = [r for r in rows if r.startswith("[")]
    assert fare == ["[-inf, 5)", "[5, 10)", "[10, 20)", "[20, inf)"]  # buckets by bound
    hours = [r for r in rows if r.startswith("payment_type=Cash, trip_start_hour=")][:12]
    assert [int(h.rsplit("=", 1)[1]) for h in hours] == list(range(12))  # hours by number
    assert "<th>log_loss</th>" in ev and "<th>recall</th>" in ev  # every metric
    assert "BLESSED" in views["evaluate.blessing"]
    assert "pushed as v1" in views["push.pushed_model"]
    for html in views.values():
        assert "<script" not in html and "http://" not in html.replace('xmlns="http://', "")


def test_candidate_against_baseline_and_a_failed_blessing() -> None:
    worse = outputs(1)  # v2: one step of training, judged against v1
    ev = render(worse["evaluate.evaluation"])
    assert "vs baseline v1" in ev and "difference" in ev and 'class="hbar base"' in ev
    assert 'class="delta worse"' in ev  # v2 is worse than v1: red differences
    assert ev.count('data-series="baseline"') == 0 and ev.count('data-name="baseline"') >= 3
    blessing = render(worse["evaluate.blessing"])
    assert "NOT BLESSED" in blessing and 'class="blocking"' in blessing and "fail" in blessing
    assert "not pushed" in render(worse["push.pushed_model"])


def test_blocking_anomalies_are_red(tmp_path: Path) -> None:
    art = Artifact("ExampleAnomalies", str(tmp_path), {"passed": False})
    rows = [
        {"split": "eval", "feature": "fare", "category": "schema", "blocking": True,
         "kind": "ENUM_TYPE_UNEXPECTED_STRING_VALUES", "description": "Unexpected values"},
        {"split": "train", "feature": "company", "category": "drift", "blocking": False,
         "kind": "COMPARATOR_L_INFTY_HIGH", "description": "L-infinity 0.3"},
    ]  # fmt: skip
    (tmp_path / "anomalies.json").write_text(json.dumps(rows))
    html = render(art)
    assert "1 blocking" in html and "2 findings" in html
    blocking = re.findall(r'<tr class="blocking">(.*?)</tr>', html)
    assert len(blocking) == 1 and "fare" in blocking[0]


def test_run_dag_and_lineage_graph(store: Store) -> None:
    run = rv.load_run(store, rv.find_run(store, taxi_runs()["runs"][2]["run_id"]))
    dag = rv.run_graph(run)
    names = {n.id: n.status for n in dag.nodes}
    assert names["ingest"] == "cached" and names["train"] == "completed"
    assert ("transform", "train") in dag.edges and ("ingest", "statistics") in dag.edges
    drawn = g.render(dag)
    assert drawn.count('class="node execution') == 9 and 'data-status="cached"' in drawn

    model = outputs(2)["train.model"]
    graph = rv.lineage_graph(store, model.id)
    labels = {n.label for n in graph.nodes}
    assert {"train", "transform", "ingest", f"Model #{model.id}"} <= labels
    assert any(label.startswith("Examples #") for label in labels)


def test_slice_keys_with_bucket_commas() -> None:
    assert slice_pairs("fare=[5, 10),payment_type=Cash") == [
        ("fare", "[5, 10)"),
        ("payment_type", "Cash"),
    ]


def test_charts_are_plain_svg() -> None:
    line = svg.line_chart({"train": [0.5, 0.7, 0.8], "validation": [0.4, 0.6, float("nan")]})
    assert line.startswith("<svg") and line.count("<polyline") == 2
    assert svg.bar_chart([]).startswith("<svg")


def test_import_is_light() -> None:
    """``import beam_pipeline`` and the API's names do not load TensorFlow."""
    code = (
        "import sys, beam_pipeline as bp; bp.load; bp.Pipeline; import beam_pipeline.views; "
        "import beam_pipeline.views.report; import beam_pipeline.ui; "
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "False"


def test_stages_that_did_not_run_are_drawn_where_they_belong(store: Store) -> None:
    """A gate-stopped run: validate stopped, the later stages skipped (no executions); their
    edges come from the store's newest executions of each stage."""
    from beam_pipeline.core.stage_sections import STAGE_ORDER

    rows = [rv.StageRow(name, "skipped") for name in reversed(STAGE_ORDER)]
    rows[-1].status = "completed"
    run = rv.RunView("stopped", 0, {"summary": {"stages": {}}}, rows)
    dag = rv.run_graph(run, store=store)
    assert [n.id for n in dag.nodes] == list(reversed(STAGE_ORDER))  # as given
    for edge in [("ingest", "statistics"), ("statistics", "schema"), ("schema", "validate"),
                 ("transform", "train"), ("tune", "train"), ("train", "evaluate"),
                 ("evaluate", "push")]:  # fmt: skip
        assert edge in dag.edges, (edge, dag.edges)
    record = {"id": rv.find_run(store, None)["id"], "run_id": "x", "summary": {}}
    loaded = rv.load_run(store, record)
    assert [s.name for s in loaded.stages] == STAGE_ORDER  # pipeline order, not execution order
