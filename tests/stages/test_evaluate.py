"""The evaluate stage: its config, and three runs end to end (metrics against numpy)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import beam_pipeline  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is used)
from beam_pipeline.core.errors import ConfigError
from beam_pipeline.stages import evaluate as ev
from tests import pipeline_fixtures as pf
from tests.evaluation.references import binary_reference

# ---------------------------------------------------------------------------------------------
# Config


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metrics": ["auc", "f1"]}, "evaluate.metrics: unknown metric 'f1'"),
        ({"slices": [["a", 3]]}, r"evaluate.slices\[0\]: expected a feature name"),
        ({"bucket_boundaries": {"fare": [10, 5]}}, "evaluate.bucket_boundaries.fare"),
        (
            {"metrics": ["auc"], "thresholds": {"rmse": ev.MetricThreshold(upper=1)}},
            "evaluate.thresholds.rmse: metric 'rmse' is not computed",
        ),
        (
            {
                "slices": ["a"],
                "slice_thresholds": [
                    ev.SliceThreshold({"b": 1}, {"auc": ev.MetricThreshold(lower=0.5)})
                ],
            },
            r"evaluate.slice_thresholds\[0\].slice: features \['b'\] are not one of",
        ),
    ],
)
def test_bad_config_names_the_key(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ev.EvaluateSection(**kwargs)


def test_empty_threshold_is_a_config_error(tmp_path: Path) -> None:
    from beam_pipeline.core.config import load

    config = tmp_path / "c.yaml"
    config.write_text(
        "pipeline: {name: t}\ningest: {source: x.csv}\nevaluate: {thresholds: {auc: {}}}\n"
    )
    with pytest.raises(ConfigError, match="evaluate.thresholds.auc: expected at least one of"):
        load(config)


# ---------------------------------------------------------------------------------------------
# End to end on taxi (the shared pipeline: three runs)


@pytest.fixture(scope="module")
def taxi() -> dict:
    return pf.taxi_runs()


def _blessing(summary: dict) -> tuple[dict, list[str]]:
    folder = pf.stage_output(summary, "evaluate", "blessing")
    return json.loads((folder / "reasons.json").read_text()), sorted(
        p.name for p in folder.iterdir()
    )


def _metrics(summary: dict) -> dict:
    folder = pf.stage_output(summary, "evaluate", "evaluation")
    return json.loads((folder / "metrics.json").read_text())


@pytest.mark.slow
def test_first_model_is_judged_on_absolute_bounds_and_pushed(taxi: dict) -> None:
    run1 = taxi["runs"][0]
    assert (run1["blessed"], run1["model_version"], run1["pushed_version"]) == (True, 1, 1)
    assert run1["metrics"]["auc"] > 0.9
    reasons, files = _blessing(run1)
    assert files == ["BLESSED", "reasons.json"]
    assert reasons["baseline_version"] is None
    change = [c for c in reasons["checks"] if c["kind"] == "min_change_abs"]
    assert change and all(c.get("skipped") and c["passed"] for c in change)
    metrics = _metrics(run1)
    assert metrics["baseline"] is None and metrics["overall"]["baseline"] is None
    assert metrics["overall"]["candidate"]["example_count"] == 3063  # the whole eval split
    assert "payment_type=Credit Card,trip_start_hour=19" in metrics["slices"]
    assert "fare=[10, 20)" in metrics["slices"]
    assert (taxi["serving"] / "taxi" / "1" / "saved_model.pb").is_file()


@pytest.mark.slow
def test_worse_model_is_compared_to_v1_not_blessed_not_pushed(taxi: dict) -> None:
    run2 = taxi["runs"][1]
    assert (run2["blessed"], run2["model_version"], run2["pushed_version"]) == (False, 2, None)
    reasons, files = _blessing(run2)
    assert files == ["NOT_BLESSED", "reasons.json"]
    assert reasons["baseline_version"] == 1
    failed = {(c["metric"], c["kind"]): c for c in reasons["checks"] if not c["passed"]}
    assert ("auc", "min_change_abs") in failed and ("auc", "lower") in failed
    assert failed["auc", "min_change_abs"]["threshold"] == -0.02
    assert "auc" in failed["auc", "lower"]["message"]
    assert "lower bound 0.7" in failed["auc", "lower"]["message"]
    metrics = _metrics(run2)
    assert metrics["baseline"]["version"] == 1
    diff = metrics["overall"]["difference"]["auc"]
    assert diff == pytest.approx(
        metrics["overall"]["candidate"]["auc"] - metrics["overall"]["baseline"]["auc"]
    )
    assert diff < -0.2
    pushed = json.loads((pf.stage_output(run2, "push", "pushed_model") / "push.json").read_text())
    assert pushed["pushed"] is False and pushed["reason"].startswith("not blessed: auc")
    assert not (taxi["serving"] / "taxi" / "2").exists()


@pytest.mark.slow
def test_third_run_compares_to_v1_and_is_pushed(taxi: dict) -> None:
    run3 = taxi["runs"][2]
    assert (run3["blessed"], run3["model_version"], run3["pushed_version"]) == (True, 3, 3)
    reasons, _ = _blessing(run3)
    assert reasons["baseline_version"] == 1  # v2 was not blessed
    [change] = [c for c in reasons["checks"] if c["kind"] == "min_change_abs"]
    assert change["passed"] and not change.get("skipped") and change["baseline"] is not None
    assert sorted(p.name for p in (taxi["serving"] / "taxi").iterdir()) == ["1", "3"]


@pytest.mark.slow
def test_a_sliced_metric_matches_numpy_on_the_same_predictions(taxi: dict) -> None:
    """Recompute the 'payment_type=Credit Card' slice of model v1 independently: labels from the
    raw tips and fare (not through the transform graph), predictions from the SavedModel."""
    import tensorflow as tf

    run1 = taxi["runs"][0]
    examples = pf.stage_output(run1, "ingest", "examples")
    files = sorted(str(p) for p in (examples / "Split-eval").glob("*.tfrecord.gz"))
    records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    spec = {
        "payment_type": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "tips": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
        "fare": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
    }
    parsed = tf.io.parse_example(tf.constant(records), spec)
    labels = (parsed["tips"].numpy() > np.float32(0.2) * parsed["fare"].numpy()).astype(int)
    model = tf.saved_model.load(str(pf.stage_output(run1, "train", "model") / "saved_model"))
    predictions = model.signatures["serving_default"](examples=tf.constant(records))
    p = predictions["predictions"].numpy()[:, 0]
    mask = parsed["payment_type"].numpy() == b"Credit Card"
    want = binary_reference(labels[mask], p[mask])

    got = _metrics(run1)["slices"]["payment_type=Credit Card"]["candidate"]
    assert got["example_count"] == want["example_count"] > 500
    for key in ("accuracy", "precision", "recall", "log_loss"):
        assert got[key] == pytest.approx(want[key], abs=1e-6), key
    assert got["auc"] == pytest.approx(want["auc"], abs=1e-3)
