"""Differential test of the vectorised sliced metrics: every slice's metrics, from one pass over
all slices (several batches, two specs, merged partial accumulators, a pickle in between), equal
scikit-learn's on that slice's rows alone. Edge cases: rows missing the slice feature, a slice
with one class only, a slice with no rows (a dictionary entry no row uses), a single-row slice.
The accumulator takes no example weights, so none are tested. Fast (~1 s)."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pyarrow as pa
import pytest
from sklearn import metrics as skm

from beam_pipeline.evaluation import OVERALL, MetricsAccumulator, metrics, slice_keys

BUCKETS = 1000
ROWS = 3000


@pytest.fixture(autouse=True)
def _small_flushes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fold buffered rows every ~500 rows, so that slices first seen after a fold are tested."""
    monkeypatch.setattr(metrics, "FLUSH_ROWS", 500)


def _features(rng: np.random.Generator) -> tuple[pa.RecordBatch, np.ndarray, np.ndarray]:
    """A batch of tf.Example-like list columns; the per-row city and hour (None: missing)."""
    city = np.array([f"c{i}" for i in rng.integers(0, 12, ROWS)], dtype=object)
    city[-300:] = "late"  # a slice first seen after some rows were folded in
    city[rng.random(ROWS) < 0.08] = None  # rows in no city slice
    city[7] = "solo"  # a slice of one row
    hour = rng.integers(0, 5, ROWS).astype(object)
    hour[rng.random(ROWS) < 0.05] = None
    columns = [
        pa.array([[c.encode()] if c else [] for c in city], pa.large_list(pa.binary())),
        pa.array([[h] if h is not None else None for h in hour], pa.list_(pa.int64())),
    ]
    return pa.RecordBatch.from_arrays(columns, names=["city", "hour"]), city, hour


def _accumulate(kind: str, classes: int, batch: pa.RecordBatch, y: np.ndarray, p: np.ndarray):
    """Two partial accumulators over uneven batches, one pickled, merged: as Beam would."""
    parts = []
    for lo, hi in ((0, 1100), (1100, ROWS)):
        acc = MetricsAccumulator(kind, classes, buckets=BUCKETS)
        for start in range(lo, hi, 450):
            stop = min(start + 450, hi)
            part = batch.slice(start, stop - start)
            keys = [slice_keys(part, ("city",)), slice_keys(part, ("hour",))]
            acc.add(y[start:stop], p[start:stop], keys)
        parts.append(acc)
    return pickle.loads(pickle.dumps(parts[0])).merge(parts[1])


def _masks(city: np.ndarray, hour: np.ndarray) -> dict[str, np.ndarray]:
    masks = {OVERALL: np.ones(ROWS, bool)}
    masks.update({f"city={c}": city == c for c in set(city) - {None}})
    masks.update({f"hour={h}": hour == h for h in set(hour) - {None}})
    return masks


def _bucket(scores: np.ndarray) -> np.ndarray:
    """The AUC histogram's bucket of each score: AUC counts two rows in one bucket as a tie."""
    return np.clip((scores * BUCKETS).astype(np.int64), 0, BUCKETS - 1)


def _same(got: float | None, want: float) -> None:
    if math.isnan(want):
        assert got is None
    else:
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12)


def _auc(truth: np.ndarray, scores: np.ndarray) -> float:
    if truth.all() or not truth.any():
        return math.nan
    return skm.roc_auc_score(truth, _bucket(scores))


def test_binary_slices_equal_sklearn_on_each_slice() -> None:
    rng = np.random.default_rng(11)
    batch, city, hour = _features(rng)
    y = (rng.random(ROWS) < 0.4).astype(np.float64)
    y[city == "c3"] = 1.0  # a one-class slice: AUC undefined, precision/recall still defined
    p = np.clip(rng.normal(0.3 + 0.35 * y, 0.2), 0.01, 0.99)
    results = _accumulate("binary", 1, batch, y, p[:, None]).result()
    masks = _masks(city, hour)
    assert sorted(results) == sorted(masks) and next(iter(results)) == OVERALL
    for key, mask in masks.items():
        got, yt, ps = results[key], y[mask], p[mask]
        predicted = ps >= 0.5
        assert got["example_count"] == mask.sum(), key
        _same(got["accuracy"], skm.accuracy_score(yt, predicted))
        _same(got["precision"], skm.precision_score(yt, predicted, zero_division=np.nan))
        _same(got["recall"], skm.recall_score(yt, predicted, zero_division=np.nan))
        _same(got["log_loss"], skm.log_loss(yt, ps, labels=[0, 1]))
        _same(got["label_mean"], yt.mean())
        _same(got["prediction_mean"], ps.mean())
        _same(got["auc"], _auc(yt == 1, ps))
    assert results["city=c3"]["auc"] is None and results["city=solo"]["example_count"] == 1


def test_multiclass_slices_equal_sklearn_macro_averages() -> None:
    rng = np.random.default_rng(12)
    batch, city, hour = _features(rng)
    y = rng.integers(0, 3, ROWS).astype(np.float64)
    y[city == "c5"] = 2.0  # one class only
    p = rng.dirichlet([1, 1, 1], ROWS)
    p[np.arange(ROWS), y.astype(int)] += 0.4
    p /= p.sum(axis=1, keepdims=True)
    results = _accumulate("multiclass", 3, batch, y, p).result()
    for key, mask in _masks(city, hour).items():
        got, yt, ps = results[key], y[mask].astype(int), p[mask]
        predicted = ps.argmax(axis=1)
        assert got["example_count"] == mask.sum(), key
        _same(got["accuracy"], skm.accuracy_score(yt, predicted))
        # Macro averages over the classes where the metric is defined (sklearn: nan elsewhere).
        for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score)):
            per_class = fn(yt, predicted, labels=[0, 1, 2], average=None, zero_division=np.nan)
            _same(got[name], np.nanmean(per_class) if not np.isnan(per_class).all() else np.nan)
        q = np.clip(ps[np.arange(len(yt)), yt], 1e-7, 1.0)
        _same(got["log_loss"], float(-np.log(q).mean()))
        aucs = [_auc(yt == c, ps[:, c]) for c in range(3)]
        _same(got["auc"], np.nanmean(aucs) if not np.isnan(aucs).all() else np.nan)
    assert results["city=c5"]["auc"] is None


def test_regression_slices_equal_sklearn() -> None:
    rng = np.random.default_rng(13)
    batch, city, hour = _features(rng)
    y = rng.normal(50, 20, ROWS)
    p = y + rng.normal(0, 4, ROWS)
    results = _accumulate("regression", 1, batch, y, p[:, None]).result()
    for key, mask in _masks(city, hour).items():
        got = results[key]
        assert got["example_count"] == mask.sum(), key
        _same(got["rmse"], math.sqrt(skm.mean_squared_error(y[mask], p[mask])))
        _same(got["mae"], skm.mean_absolute_error(y[mask], p[mask]))
        _same(got["label_mean"], y[mask].mean())


def test_a_slice_with_no_rows_and_a_spec_feature_no_row_has() -> None:
    """A key in the dictionary that no row uses is a slice of 0 examples (no other metric);
    a spec whose feature is absent puts every row in no slice: Overall is unchanged."""
    rng = np.random.default_rng(14)
    y = (rng.random(40) < 0.5).astype(np.float64)
    p = rng.random(40)[:, None]
    keys = pa.DictionaryArray.from_arrays(
        pa.array([0] * 20 + [None] * 20, pa.int32()), pa.array(["k=a", "k=empty"])
    )
    batch = pa.RecordBatch.from_arrays([pa.array(range(40))], names=["other"])
    acc = MetricsAccumulator("binary", buckets=BUCKETS)
    acc.add(y, p, [keys, slice_keys(batch, ("absent",))])
    results = acc.result()
    assert results["k=empty"] == {"example_count": 0.0}
    plain = MetricsAccumulator("binary", buckets=BUCKETS)
    plain.add(y, p)
    assert results[OVERALL] == pytest.approx(plain.result()[OVERALL])  # sums in another order
    alone = MetricsAccumulator("binary", buckets=BUCKETS)
    alone.add(y[:20], p[:20])
    assert results["k=a"] == pytest.approx(alone.result()[OVERALL])


def test_histogram_counts_widen_to_int64_before_int32_could_overflow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The AUC histograms are int32 until Overall's count (a bound on every cell) could pass
    `HIST_COUNT_MAX`, in a batch or a merge; the results do not change."""
    rng = np.random.default_rng(15)
    batch, _, _ = _features(rng)
    y = (rng.random(ROWS) < 0.4).astype(np.float64)
    p = rng.random(ROWS)[:, None]
    want = _accumulate("binary", 1, batch, y, p)
    assert want.hist.dtype == np.int32
    for limit, wide in ((ROWS - 1, True), (1200, True), (ROWS, False)):
        monkeypatch.setattr(metrics, "HIST_COUNT_MAX", limit)
        got = _accumulate("binary", 1, batch, y, p)  # parts of 1,100 and 1,900 rows, merged
        assert (got.hist.dtype == np.int64) is wide, limit
        assert got.result() == want.result()
        assert (got.hist[: len(got.keys)] == want.hist[: len(want.keys)]).all()


def test_slices_first_seen_after_folds_grow_the_histograms_low_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """New slices in every batch, folds every 10 rows: the arrays (the AUC histograms' low
    bytes among them) grow after rows were folded in, and every slice still equals an
    accumulator of its rows alone (AUCs and counts exactly)."""
    monkeypatch.setattr(metrics, "FLUSH_ROWS", 10)
    rng = np.random.default_rng(16)
    acc = MetricsAccumulator("binary", buckets=50)
    alone: dict[str, MetricsAccumulator] = {}
    for b in range(20):
        keys = [f"k={b}-{i % 3}" for i in range(30)]
        y = rng.integers(0, 2, 30).astype(np.float64)
        p = rng.random((30, 1))
        acc.add(y, p, [pa.array(keys)])
        for i in range(3):
            alone.setdefault(f"k={b}-{i}", MetricsAccumulator("binary", buckets=50))
            alone[f"k={b}-{i}"].add(y[i::3], p[i::3])
    results = acc.result()
    assert acc._capacity > 8 and acc._low is not None and len(acc._low) == acc._capacity
    for key, part in alone.items():
        want = part.result()[OVERALL]
        assert results[key]["auc"] == want["auc"] and results[key]["example_count"] == 10
        assert results[key].keys() == want.keys()
        for metric, value in want.items():  # sums in another order: rounding only
            assert results[key][metric] == (
                value if value is None else pytest.approx(value, rel=1e-12)
            )


def test_aucs_skip_only_histogram_rows_that_hold_zeros(monkeypatch: pytest.MonkeyPatch) -> None:
    """`aucs` reads a slice's int32 histogram row only where it may be nonzero (`_hist_used`):
    after a carry out of the low bytes (4 buckets: cells pass 256), a merge, a `plots` call (which
    settles), or a pickle. Slices first seen after each of those, and ones that never carry,
    still equal an accumulator of their rows alone (AUCs and counts exactly)."""
    monkeypatch.setattr(metrics, "FLUSH_ROWS", 200)
    rng = np.random.default_rng(17)
    alone: dict[str, MetricsAccumulator] = {}

    def fed(acc: MetricsAccumulator, step: int) -> MetricsAccumulator:
        rows = 700
        # "big": ~500 rows a batch over 8 cells (carries); "s<step>-<i>": a few, new each step
        names = np.where(rng.random(rows) < 0.7, "big", [f"s{step}-{i % 4}" for i in range(rows)])
        keys = pa.array(names.tolist()).to_pylist()
        keys[::50] = [None] * len(keys[::50])  # rows in no slice
        y = rng.integers(0, 2, rows).astype(np.float64)
        p = rng.random((rows, 1))
        acc.add(y, p, [pa.array([None if k is None else f"k={k}" for k in keys], pa.string())])
        for key in set(keys) - {None}:
            mask = np.array([k == key for k in keys])
            alone.setdefault(f"k={key}", MetricsAccumulator("binary", buckets=4))
            alone[f"k={key}"].add(y[mask], p[mask])
        return acc

    a = fed(fed(MetricsAccumulator("binary", buckets=4), 0), 1)
    a.plots("k=big")  # settles: every row of `hist` may hold counts now
    a = fed(a, 2)
    b = pickle.loads(pickle.dumps(fed(MetricsAccumulator("binary", buckets=4), 3)))
    a = fed(a.merge(fed(b, 4)), 5)
    results = a.result()
    assert a._hist_used[: len(a.keys)].any() and not a._hist_used[: len(a.keys)].all()
    for key, part in alone.items():
        want = part.result()[OVERALL]
        assert results[key]["auc"] == want["auc"], key
        assert results[key]["example_count"] == want["example_count"], key
