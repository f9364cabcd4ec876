"""beam_pipeline.evaluation: metrics against tf_keras.metrics, scikit-learn and numpy; slicing;
thresholds."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import beam_pipeline  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is used)
from beam_pipeline import evaluation as E
from beam_pipeline.core.errors import DataError
from tests.evaluation.references import binary_reference, exact_auc


def _binary_data(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1).astype(np.float32)
    return y, p


def test_binary_metrics_match_tf_keras_and_sklearn() -> None:
    import tf_keras
    from sklearn import metrics as skm

    y, p = _binary_data(0, 5000)
    # Two partial accumulators merged, as Beam's combiner lifting does.
    a = E.MetricsAccumulator("binary", buckets=10_000)
    a.add(y[:1234], p[:1234, None])
    b = E.MetricsAccumulator("binary", buckets=10_000)
    b.add(y[1234:], p[1234:])
    got = a.merge(b).result()[E.OVERALL]

    def keras(metric: object) -> float:
        metric.update_state(y, p)
        return float(metric.result())

    assert got["auc"] == pytest.approx(keras(tf_keras.metrics.AUC(num_thresholds=10_000)), 1e-4)
    assert got["auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=2e-4)
    assert got["precision"] == pytest.approx(keras(tf_keras.metrics.Precision()), 1e-6)
    assert got["recall"] == pytest.approx(keras(tf_keras.metrics.Recall()), 1e-6)
    assert got["accuracy"] == pytest.approx(keras(tf_keras.metrics.BinaryAccuracy()), 1e-6)
    assert got["precision"] == pytest.approx(skm.precision_score(y, p >= 0.5), 1e-12)
    assert got["recall"] == pytest.approx(skm.recall_score(y, p >= 0.5), 1e-12)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, p >= 0.5), 1e-12)
    q = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, q), 1e-9)
    assert got["example_count"] == 5000
    assert got["prediction_mean"] == pytest.approx(p.mean(), 1e-6)


def test_multiclass_and_regression_match_sklearn() -> None:
    from sklearn import metrics as skm

    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 900)
    logits = rng.normal(size=(900, 3)) + 2 * np.eye(3)[y]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    acc = E.MetricsAccumulator("multiclass", 3, buckets=1000)
    acc.add(y, p)
    got = acc.result()[E.OVERALL]
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, p.argmax(1)))
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, p), 1e-9)
    assert got["recall"] == pytest.approx(skm.recall_score(y, p.argmax(1), average="macro"))
    assert got["precision"] == pytest.approx(skm.precision_score(y, p.argmax(1), average="macro"))
    aucs = [exact_auc((y == c).astype(int), p[:, c]) for c in range(3)]
    assert got["auc"] == pytest.approx(np.mean(aucs), abs=2e-3)
    assert got["auc"] == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr"), abs=2e-3)

    target = rng.normal(size=400)
    pred = target + rng.normal(scale=0.5, size=400)
    reg = E.MetricsAccumulator("regression")
    reg.add(target, pred[:, None])
    m = reg.result()[E.OVERALL]
    assert m["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(target, pred)))
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(target, pred))
    assert m["label_mean"] == pytest.approx(target.mean())


def test_every_slice_equals_the_metrics_of_its_rows_alone() -> None:
    """One vectorised pass over 150 slices in two specs gives, for each slice, exactly what an
    accumulator fed only that slice's rows gives (the per-slice mask it replaces)."""
    y, p = _binary_data(2, 6000)
    rng = np.random.default_rng(3)
    city = np.array([f"c{i}" for i in rng.integers(0, 140, len(y))], dtype=object)
    city[rng.random(len(y)) < 0.05] = None  # rows in no slice of this spec
    hour = rng.integers(0, 10, len(y))
    batch = pa.RecordBatch.from_arrays([pa.array(city), pa.array(hour)], names=["city", "hour"])
    acc = E.MetricsAccumulator("binary", buckets=1000)
    for start in range(0, len(y), 700):  # several batches: slices appear in any order
        part = batch.slice(start, 700)
        keys = [E.slice_keys(part, ("city",)), E.slice_keys(part, ("hour",))]
        acc.add(y[start : start + 700], p[start : start + 700], keys)
    results = acc.result()
    assert len(results) == 1 + 140 + 10
    for key, got in results.items():
        if key == E.OVERALL:
            mask = np.ones(len(y), bool)
        elif key.startswith("city="):
            mask = city == key[5:]
        else:
            mask = hour == int(key[5:])
        alone = E.MetricsAccumulator("binary", buckets=1000)
        alone.add(y[mask], p[mask])
        assert got == pytest.approx(alone.result()[E.OVERALL]), key
    want = binary_reference(y[city == "c7"], p[city == "c7"])
    assert results["city=c7"]["log_loss"] == pytest.approx(want["log_loss"])


def test_undefined_metrics_are_none_not_nan() -> None:
    acc = E.MetricsAccumulator("binary", buckets=100)
    acc.add(np.zeros(4), np.full((4, 1), 0.2))  # no positives, nothing predicted
    m = acc.result()[E.OVERALL]
    assert m["auc"] is None and m["precision"] is None and m["recall"] is None
    assert m["accuracy"] == 1.0


def _binary_slice_by_slice(acc: E.MetricsAccumulator) -> dict[str, dict[str, float | None]]:
    """A binary accumulator's metrics as `result` computed them before `_binary_metrics`: in
    Python numbers, one slice at a time."""
    acc._flush()
    aucs = acc._aucs()[:, 0].tolist()
    out = {}
    for i in [0, *sorted(range(1, len(acc.keys)), key=acc.keys.__getitem__)]:
        n = int(acc.n[i])
        label_sum, pred_sum, loss_sum, _ = acc.sums[i].tolist()
        (tn, fp), (fn, tp) = acc.confusion[i].tolist()
        m: dict[str, float | None] = {"example_count": float(n)}
        if n:
            m["accuracy"] = float(tn + tp) / n
            m["log_loss"] = loss_sum / n
            m["label_mean"] = label_sum / n
            m["prediction_mean"] = pred_sum / n
            m["precision"] = float(tp) / float(tp + fp) if tp + fp else None
            m["recall"] = float(tp) / float(tp + fn) if tp + fn else None
            m["auc"] = None if np.isnan(aucs[i]) else aucs[i]
        out[acc.keys[i]] = m
    return out


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")  # NaN scores
@pytest.mark.parametrize("seed", range(4))
def test_binary_results_of_all_slices_at_once_equal_slice_by_slice(seed: int) -> None:
    """`result` of a binary classifier (numpy, every slice at once) against the same formulas
    in Python numbers slice by slice: repr-equal (values bit for bit, key order). Slices with
    no rows, no positives, nothing predicted positive, one row; labels other than 0/1, NaN and
    out-of-range scores; sliced and not."""
    rng = np.random.default_rng(seed)
    rows = int(rng.integers(1, 3000))
    y = rng.integers(0, 2, rows).astype(np.float64)
    y[rng.random(rows) < 0.05] = 0.7  # counts as positive, sums as 0.7
    p = rng.random((rows, 1))
    p[rng.random(rows) < 0.02] = np.nan
    p[rng.random(rows) < 0.02] = 1.5
    city = rng.integers(0, 12, rows)
    y[city == 1] = 0.0  # no positives: recall and AUC undefined
    p[city == 2] = 0.1  # nothing predicted positive: precision undefined
    city[np.flatnonzero(city == 3)[1:]] = 4  # one row
    names = np.array([f"c{i}" for i in range(13)])  # c12: in the dictionary, no rows
    keys = pa.DictionaryArray.from_arrays(
        pa.array(city, pa.int32(), mask=rng.random(rows) < 0.1), pa.array(names)
    )
    for slices in ([keys], []):
        acc = E.MetricsAccumulator("binary", buckets=int(rng.integers(2, 200)))
        for lo in range(0, rows, 700):
            acc.add(y[lo : lo + 700], p[lo : lo + 700], [s[lo : lo + 700] for s in slices])
        want = _binary_slice_by_slice(acc)
        got = acc.result()
        assert repr(got) == repr(want)
    assert got[E.OVERALL]["example_count"] == rows
    sliced = E.MetricsAccumulator("binary", buckets=10)
    sliced.add(y, p, [keys])
    results = sliced.result()
    assert results["c12"] == {"example_count": 0.0}
    assert results["c1"]["recall"] is None and results["c1"]["auc"] is None
    assert results["c2"]["precision"] is None


def test_bad_labels_and_widths_name_the_value() -> None:
    acc = E.MetricsAccumulator("multiclass", 3, buckets=10)
    with pytest.raises(DataError, match="label value 7 is out of range for a 3-class model"):
        acc.add(np.array([0.0, 7.0]), np.full((2, 3), 1 / 3))
    with pytest.raises(DataError, match="expected predictions of width 3; received 1"):
        acc.add(np.array([0.0]), np.array([0.5]))
    with pytest.raises(DataError, match="expected 2 slice keys; received 1"):
        acc.add(np.array([0.0, 1.0]), np.full((2, 3), 1 / 3), [["a"]])


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
    assert E.slice_keys(batch, ("payment_type",), bounds).to_pylist() == [
        "payment_type=Cash",
        "payment_type=Card",
        None,
        "payment_type=Cash",
    ]
    assert E.slice_keys(batch, ("hour", "payment_type"), bounds).to_pylist() == [
        "hour=3,payment_type=Cash",
        "hour=13,payment_type=Card",
        None,
        None,
    ]
    assert E.slice_keys(batch, ("fare",), bounds).to_pylist() == [
        "fare=[-inf, 5)",
        "fare=[10, 20)",
        "fare=[20, inf)",
        "fare=[10, 20)",
    ]
    assert E.canonical_slice({"payment_type": "Cash", "hour": 3}) == "hour=3,payment_type=Cash"
    # Plain (JSON-like) columns slice the same way as tf.Example list columns.
    plain = pa.RecordBatch.from_arrays([pa.array([3.0, None])], names=["hour"])
    assert E.slice_keys(plain, ("hour",)).to_pylist() == ["hour=3", None]


def _entry(cand: dict, base: dict | None) -> dict:
    return {"candidate": cand, "baseline": base, "difference": None}


def test_thresholds_absolute_and_change_in_both_directions() -> None:
    thresholds = {
        "auc": E.MetricThreshold(lower=0.8, min_change_abs=-0.01),
        "log_loss": E.MetricThreshold(upper=0.5, min_change_rel=0.0),
    }
    overall = _entry({"auc": 0.85, "log_loss": 0.45}, {"auc": 0.90, "log_loss": 0.40})
    checks = {(c["metric"], c["kind"]): c for c in E.check(thresholds, [], overall, {}, True)}
    assert checks["auc", "lower"]["passed"]
    assert not checks["auc", "min_change_abs"]["passed"]
    assert checks["auc", "min_change_abs"]["change"] == pytest.approx(-0.05)
    assert "auc 0.8500 vs baseline 0.9000" in checks["auc", "min_change_abs"]["message"]
    assert "min_change_abs -0.01" in checks["auc", "min_change_abs"]["message"]
    assert checks["log_loss", "upper"]["passed"]
    # log loss went up from 0.40 to 0.45: a 12.5 % regression for a lower-is-better metric.
    assert not checks["log_loss", "min_change_rel"]["passed"]
    assert checks["log_loss", "min_change_rel"]["change"] == pytest.approx(-0.125)
    assert not E.blessed(list(checks.values()))
    # Without a baseline the change checks are recorded, skipped and do not block.
    first = E.check(thresholds, [], _entry({"auc": 0.85, "log_loss": 0.45}, None), {}, False)
    assert E.blessed(first)
    assert [c.get("skipped", False) for c in first] == [False, True, False, True]


def test_slice_thresholds_fail_when_the_slice_is_missing() -> None:
    st = [E.SliceThreshold({"payment_type": "Cash"}, {"accuracy": E.MetricThreshold(lower=0.9)})]
    [c] = E.check({}, st, _entry({}, None), {}, False)
    assert not c["passed"] and "no eval rows" in c["message"]
    slices = {"payment_type=Cash": _entry({"accuracy": 0.95}, None)}
    [c] = E.check({}, st, _entry({}, None), slices, False)
    assert c["passed"] and c["slice"] == "payment_type=Cash"


def test_assemble_pairs_candidate_and_baseline_per_slice() -> None:
    cand = {E.OVERALL: {"auc": 0.8, "example_count": 10.0}, "a=1": {"auc": 0.7}}
    base = {E.OVERALL: {"auc": 0.75, "example_count": 10.0}}
    overall, slices = E.assemble(cand, base, ["auc"])
    assert overall["difference"]["auc"] == pytest.approx(0.05)
    assert slices["a=1"] == {"candidate": {"auc": 0.7}, "baseline": None, "difference": None}
