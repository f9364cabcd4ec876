"""The evaluate stage: metrics against numpy, slicing, thresholds, and three runs end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import beam_pipeline  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is used)
from beam_pipeline.errors import ConfigError
from beam_pipeline.stages import evaluate as ev
from tests import pipeline_fixtures as pf

# ---------------------------------------------------------------------------------------------
# numpy references (no sklearn in the stack)


def exact_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney AUC with average ranks for ties."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos = labels == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def binary_reference(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    pred = p >= 0.5
    tp, fp, fn = np.sum(pred & (y == 1)), np.sum(pred & (y == 0)), np.sum(~pred & (y == 1))
    q = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return {
        "accuracy": float(np.mean(pred == (y == 1))),
        "precision": tp / (tp + fp),
        "recall": tp / (tp + fn),
        "log_loss": float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))),
        "auc": exact_auc(y, p),
        "example_count": float(len(y)),
    }


# ---------------------------------------------------------------------------------------------
# Plain functions


def test_binary_accumulator_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1).astype(np.float32)
    fn = ev.SliceMetricsCombineFn("classification", 10_000, 0.5)
    # Two partial accumulators merged, as Beam's combiner lifting does.
    a = fn.add_input(fn.create_accumulator(), (y[:1234].astype(float), p[:1234, None]))
    b = fn.add_input(fn.create_accumulator(), (y[1234:].astype(float), p[1234:, None]))
    got = fn.extract_output(fn.merge_accumulators([a, None, b]))
    want = binary_reference(y, p)
    for key in ("accuracy", "precision", "recall", "log_loss", "example_count"):
        assert got[key] == pytest.approx(want[key], rel=1e-9), key
    assert got["auc"] == pytest.approx(want["auc"], abs=2e-4)  # bucketed: ties within 1e-4


def test_multiclass_and_regression_accumulators_match_numpy() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 900)
    logits = rng.normal(size=(900, 3)) + 2 * np.eye(3)[y]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    acc = ev.Accumulator("multiclass", 3, 1000)
    acc.add(y.astype(float), p, 0.5, 1000)
    got = acc.metrics()
    assert got["accuracy"] == pytest.approx(np.mean(p.argmax(1) == y))
    assert got["log_loss"] == pytest.approx(-np.mean(np.log(p[np.arange(900), y])))
    recall = np.mean([np.mean(p.argmax(1)[y == c] == c) for c in range(3)])
    assert got["recall"] == pytest.approx(recall)
    aucs = [exact_auc((y == c).astype(int), p[:, c]) for c in range(3)]
    assert got["auc"] == pytest.approx(np.mean(aucs), abs=2e-3)

    target = rng.normal(size=400)
    pred = target + rng.normal(scale=0.5, size=400)
    reg = ev.Accumulator("regression", 1, 10)
    reg.add(target, pred[:, None], 0.5, 10)
    m = reg.metrics()
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((pred - target) ** 2)))
    assert m["mae"] == pytest.approx(np.mean(np.abs(pred - target)))


def test_undefined_metrics_are_none_not_nan() -> None:
    acc = ev.Accumulator("binary", 1, 100)
    acc.add(np.zeros(4), np.full((4, 1), 0.2), 0.5, 100)  # no positives, nothing predicted
    m = acc.metrics()
    assert m["auc"] is None and m["precision"] is None and m["recall"] is None
    assert m["accuracy"] == 1.0


def test_multiclass_label_out_of_range_names_the_value() -> None:
    acc = ev.Accumulator("multiclass", 3, 10)
    with pytest.raises(Exception, match="label value 7 is out of range for a 3-class model"):
        acc.add(np.array([0.0, 7.0]), np.full((2, 3), 1 / 3), 0.5, 10)


def test_slice_keys_crosses_buckets_and_missing_values() -> None:
    batch = pa.RecordBatch.from_arrays(
        [
            pa.array([[b"Cash"], [b"Card"], None, [b"Cash"]], pa.large_list(pa.binary())),
            pa.array([[3], [13], [23], []], pa.large_list(pa.int64())),
            pa.array([[4.5], [12.0], [99.0], [10.0]], pa.large_list(pa.float32())),
        ],
        names=["payment_type", "hour", "fare"],
    )
    bounds = {"fare": [5.0, 10.0, 20.0]}
    assert ev.slice_keys(batch, ("payment_type",), bounds).to_pylist() == [
        "payment_type=Cash",
        "payment_type=Card",
        None,
        "payment_type=Cash",
    ]
    assert ev.slice_keys(batch, ("hour", "payment_type"), bounds).to_pylist() == [
        "hour=3,payment_type=Cash",
        "hour=13,payment_type=Card",
        None,
        None,
    ]
    assert ev.slice_keys(batch, ("fare",), bounds).to_pylist() == [
        "fare=[-inf, 5)",
        "fare=[10, 20)",
        "fare=[20, inf)",
        "fare=[10, 20)",
    ]
    assert ev.canonical_slice({"payment_type": "Cash", "hour": 3}) == "hour=3,payment_type=Cash"


def _entry(cand: dict, base: dict | None) -> dict:
    return {"candidate": cand, "baseline": base, "difference": None}


def test_thresholds_absolute_and_change_in_both_directions() -> None:
    section = ev.EvaluateSection(
        thresholds={
            "auc": ev.MetricThreshold(lower=0.8, min_change_abs=-0.01),
            "log_loss": ev.MetricThreshold(upper=0.5, min_change_rel=0.0),
        }
    )
    overall = _entry({"auc": 0.85, "log_loss": 0.45}, {"auc": 0.90, "log_loss": 0.40})
    checks = {(c["metric"], c["kind"]): c for c in ev.check(section, overall, {}, True)}
    assert checks["auc", "lower"]["passed"]
    assert not checks["auc", "min_change_abs"]["passed"]
    assert checks["auc", "min_change_abs"]["change"] == pytest.approx(-0.05)
    assert "auc 0.8500 vs baseline 0.9000" in checks["auc", "min_change_abs"]["message"]
    assert "min_change_abs -0.01" in checks["auc", "min_change_abs"]["message"]
    assert checks["log_loss", "upper"]["passed"]
    # log loss went up from 0.40 to 0.45: a 12.5 % regression for a lower-is-better metric.
    assert not checks["log_loss", "min_change_rel"]["passed"]
    assert checks["log_loss", "min_change_rel"]["change"] == pytest.approx(-0.125)
    # Without a baseline the change checks are recorded, skipped and do not block.
    first = ev.check(section, _entry({"auc": 0.85, "log_loss": 0.45}, None), {}, False)
    assert all(c["passed"] for c in first)
    assert [c.get("skipped", False) for c in first] == [False, True, False, True]


def test_slice_thresholds_fail_when_the_slice_is_missing() -> None:
    section = ev.EvaluateSection(
        slices=["payment_type"],
        slice_thresholds=[
            ev.SliceThreshold({"payment_type": "Cash"}, {"accuracy": ev.MetricThreshold(lower=0.9)})
        ],
    )
    [c] = ev.check(section, _entry({}, None), {}, False)
    assert not c["passed"] and "no eval rows" in c["message"]
    slices = {"payment_type=Cash": _entry({"accuracy": 0.95}, None)}
    [c] = ev.check(section, _entry({}, None), slices, False)
    assert c["passed"] and c["slice"] == "payment_type=Cash"


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
    from beam_pipeline.config import load

    config = tmp_path / "c.yaml"
    config.write_text(
        "pipeline: {name: t}\ningest: {source: x.csv}\nevaluate: {thresholds: {auc: {}}}\n"
    )
    with pytest.raises(ConfigError, match="evaluate thresholds: expected at least one of"):
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
    assert metrics["overall"]["candidate"]["example_count"] == 3026  # the whole eval split
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
