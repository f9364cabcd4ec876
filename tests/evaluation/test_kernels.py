"""Differential tests of the compiled kernels (beam_pipeline/evaluation/kernels.py) against the
Arrow and numpy operations they replace: the value encoders against ``dictionary_encode``,
`SliceMemo` against a Python dict over all batches, the scatters against ``np.bincount`` /
``np.add.at``, the AUCs against `auc_from_histograms`. Edge cases: empty batch, every row
missing, one value, values first seen in later batches, non-ASCII and long (> 8 bytes) strings,
integer columns, a table that has to grow."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from beam_pipeline.evaluation import OVERALL, MetricsAccumulator, SliceMemo, kernels, slice_keys
from beam_pipeline.evaluation.metrics import auc_from_histograms

WORDS = ["", "a", "é", "ab", "日本", "v149", "seven77", "eight888", "nine99999", "x" * 40, "x" * 41]


def _strings(rng: np.random.Generator, rows: int, vocabulary: list[str]) -> list[str | None]:
    picked = [vocabulary[i] for i in rng.integers(0, len(vocabulary), rows)]
    return [None if rng.random() < 0.1 else v for v in picked]


def _column(values: list, kind: pa.DataType) -> pa.Array:
    """A tf.Example-like list column: [value], [] for a missing one, and some null rows."""
    rows = [[v] if v is not None else ([] if i % 2 else None) for i, v in enumerate(values)]
    return pa.array(rows, pa.large_list(kind))


@pytest.mark.parametrize("kind", [pa.binary(), pa.string(), pa.large_binary()])
@pytest.mark.parametrize("seed", range(4))
def test_encode_bytes_equals_dictionary_encode(kind: pa.DataType, seed: int) -> None:
    rng = np.random.default_rng(seed)
    vocabulary = WORDS + [f"w{i}" for i in range(rng.integers(1, 3000))]
    texts = [w for w in vocabulary if w is not None]
    rows = int(rng.integers(1, 5000))
    values = [texts[i] for i in rng.integers(0, len(texts), rows)]
    data = [
        v.encode() if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) else v
        for v in values
    ]
    array = pa.array(data, kind)
    wide = pa.types.is_large_binary(kind)
    offsets = np.frombuffer(array.buffers()[1], np.int64 if wide else np.int32)[: rows + 1]
    raw = np.frombuffer(array.buffers()[2], np.uint8)[: offsets[-1]]
    present = rng.random(rows) > 0.2
    codes, firsts = kernels.encode_bytes(offsets, raw, np.arange(rows), present)
    encoded = array.filter(pa.array(present)).dictionary_encode()
    assert array.take(pa.array(firsts)).to_pylist() == encoded.dictionary.to_pylist()
    assert codes[present].tolist() == encoded.indices.to_pylist()


def test_encode_words_equals_dictionary_encode() -> None:
    rng = np.random.default_rng(5)
    numbers = rng.integers(-(2**63), 2**63 - 1, 50, dtype=np.int64)[rng.integers(0, 50, 4000)]
    numbers[:3] = [0, -1, 2**63 - 1]
    present = rng.random(len(numbers)) > 0.1
    codes, firsts = kernels.encode_words(numbers.view(np.uint64), np.arange(len(numbers)), present)
    encoded = pa.array(numbers[present]).dictionary_encode()
    assert numbers[firsts].tolist() == encoded.dictionary.to_pylist()
    assert codes[present].tolist() == encoded.indices.to_pylist()


@pytest.mark.parametrize("kind", [pa.binary(), pa.string(), pa.int64(), pa.int32()])
def test_slice_keys_with_a_memo_equal_slice_keys_without(kind: pa.DataType) -> None:
    """Batch after batch (values first seen late, an empty batch, one where every row misses
    the feature, sliced batches), with and without a memo: the same key on every row."""
    rng = np.random.default_rng(7)
    integer = pa.types.is_integer(kind)
    vocabulary = list(range(-5, 400)) if integer else WORDS + [f"é{i}" for i in range(400)]
    memo = SliceMemo()
    for size, words in [(300, 20), (0, 20), (500, 40), (200, 0), (3000, 405), (50, 1)]:
        values = _strings(rng, size, vocabulary[:words] if words else [None])  # type: ignore[list-item]
        if not integer and pa.types.is_binary(kind):
            values = [v.encode() if v is not None else None for v in values]
        batch = pa.RecordBatch.from_arrays(
            [_column(values, kind), pa.array(np.arange(size))], names=["f", "n"]
        )
        for lo, length in ((0, size), (size // 3, size // 2)):
            part = batch.slice(lo, length)
            for spec in (("f",), ("f", "n")):
                plain = slice_keys(part, spec).to_pylist()
                assert slice_keys(part, spec, memo=memo).to_pylist() == plain
            texts = [v.decode() if isinstance(v, bytes) else v for v in values[lo : lo + length]]
            expected = [None if v is None else f"f={v}" for v in texts]
            assert slice_keys(part, ("f",), memo=memo).to_pylist() == expected


def test_a_memo_keeps_its_dictionary_until_a_new_value_appears() -> None:
    memo = SliceMemo()
    first = pa.RecordBatch.from_arrays([_column(["a", "b", None], pa.string())], names=["f"])
    again = pa.RecordBatch.from_arrays([_column(["b", "b", "a"], pa.string())], names=["f"])
    new = pa.RecordBatch.from_arrays([_column(["c", "a", "a"], pa.string())], names=["f"])
    one = slice_keys(first, ("f",), memo=memo)
    two = slice_keys(again, ("f",), memo=memo)
    assert one.dictionary.buffers()[2].address == two.dictionary.buffers()[2].address
    assert two.indices.to_pylist() == [1, 1, 0]
    three = slice_keys(new, ("f",), memo=memo)
    assert three.dictionary.to_pylist() == ["f=a", "f=b", "f=c"]
    assert three.to_pylist() == ["f=c", "f=a", "f=a"]


def test_invalid_utf8_is_refused_with_or_without_a_memo() -> None:
    batch = pa.RecordBatch.from_arrays([_column([b"\xff"], pa.binary())], names=["f"])
    for memo in (None, SliceMemo()):
        with pytest.raises(pa.ArrowInvalid):
            slice_keys(batch, ("f",), memo=memo)


def _scattered(groups: np.ndarray, cell: np.ndarray, slices: int, size: int):
    """What `scatter` must add: per slice (0: every row), numpy's bincount and add.at."""
    n = np.zeros(slices, np.int64)
    cells = np.zeros((slices, size), np.int64)
    n[0] = len(cell)
    cells[0] = np.bincount(cell, minlength=size)
    for k in range(groups.shape[1]):
        on = groups[:, k] > 0
        n += np.bincount(groups[on, k], minlength=slices)
        np.add.at(cells, (groups[on, k], cell[on]), 1)
    return n, cells


@pytest.mark.parametrize("rows,specs", [(0, 1), (1, 1), (4000, 1), (4000, 2), (300, 0)])
def test_scatter_equals_bincounts(rows: int, specs: int) -> None:
    rng = np.random.default_rng(rows + specs)
    slices, size = 12, 4
    groups = rng.integers(0, slices, (rows, specs))
    cell = rng.integers(0, size, rows)
    stats = rng.random((4, rows))
    n, sums, cells = (
        np.zeros(slices, np.int64),
        np.zeros((slices, 4)),
        np.zeros((slices, size), np.int64),
    )
    kernels.scatter(groups, cell, stats, n, sums, cells)
    want_n, want_cells = _scattered(groups, cell, slices, size)
    if specs == 1:  # one spec's ids as [rows] (compiled apart): the same sums, bit for bit
        again = np.zeros(slices, np.int64), np.zeros((slices, 4)), np.zeros_like(cells)
        kernels.scatter(groups[:, 0].copy(), cell, stats, *again)
        assert [a.tolist() for a in again] == [n.tolist(), sums.tolist(), cells.tolist()]
    assert (n == want_n).all() and (cells == want_cells).all()
    for g in range(slices):  # a row is in its slice of every spec (twice if two say so)
        ins = [np.ones(rows, bool)] if g == 0 else [groups[:, k] == g for k in range(specs)]
        total = sum(stats[:, i].sum(axis=1) for i in ins) + np.zeros(4)
        assert sums[g] == pytest.approx(total, rel=1e-12, abs=1e-12)


def _scores(rng: np.random.Generator, rows: int, classes: int) -> np.ndarray:
    """Scores with the edge cases of the bucket and clip arithmetic: 0, 1, the threshold,
    bucket edges, out of [0, 1], infinite, NaN and huge."""
    p = rng.random((rows, classes))
    special = np.array([0.0, 1.0, 0.5, 0.25, -0.3, 1.7, np.inf, -np.inf, np.nan, 1e300, 1e-9])
    picked = rng.random((rows, classes)) < 0.2
    p[picked] = special[rng.integers(0, len(special), picked.sum())]
    return p


@pytest.mark.parametrize(
    "kind,classes,rows,specs",
    [
        ("binary", 1, 0, 1),
        ("binary", 1, 1, 1),
        ("binary", 1, 3000, 1),
        ("binary", 1, 3000, 3),
        ("multiclass", 3, 0, 1),
        ("multiclass", 3, 3000, 1),
        ("multiclass", 4, 3000, 2),
    ],
)
def test_fold_equals_the_numpy_path_on_each_slice(
    kind: str, classes: int, rows: int, specs: int
) -> None:
    """`fold_binary` / `fold_multiclass`, then `scatter_hist`: each slice's counts, confusion matrix
    and AUC histogram (exactly; 4 buckets, so that cells pass 256 and carry out of the low
    byte) and sums equal those of the numpy path (an unsliced accumulator) on its rows alone;
    rows in no slice of a spec, one slice, a slice no row is in."""
    rng = np.random.default_rng(rows + specs + classes)
    slices, buckets = 6, 4
    groups = rng.integers(0, slices - 1, (rows, specs))  # slice 5: no rows
    y = rng.integers(0, classes if kind == "multiclass" else 2, rows).astype(np.float64)
    p = _scores(rng, rows, classes)
    width = 2 if kind == "binary" else classes
    n, sums = np.zeros(slices, np.int64), np.zeros((slices, 4))
    confusion = np.zeros((slices, width * width), np.int64)
    hist = np.zeros((slices, 2 * (1 if kind == "binary" else classes) * buckets), np.int32)
    low = np.zeros(hist.shape, np.uint8)
    used = np.zeros(slices, np.uint8)
    for lo, hi in ((0, rows // 3), (rows // 3, rows)):  # two batches
        local = np.empty((hist.shape[1] // (2 * buckets), hi - lo), np.int64)
        likelihood = np.empty(hi - lo)
        # One spec's ids as [rows] in the second batch (compiled apart), as [rows, 1] in the first
        ids = groups[lo:hi, 0].copy() if specs == 1 and lo else groups[lo:hi]
        part = (y[lo:hi], p[lo:hi], ids)
        if kind == "binary":
            kernels.fold_binary(*part, 0.5, 1e-7, buckets, n, sums, confusion, local, likelihood)
        else:
            kernels.fold_multiclass(*part, 1e-7, buckets, n, sums, confusion, local, likelihood)
        kernels.scatter_hist(ids, local, np.log(likelihood), sums, low, hist, used)
        assert not n[1:].any()  # Overall's count only; a slice's is its confusion matrix's sum
    n[1:] = confusion[1:].sum(axis=1)
    # `used` marks the slices but Overall whose `hist` row a carry reached, and `aucs` reads
    # those rows only
    assert used[1:].tolist() == (hist[1:] != 0).any(axis=1).tolist()
    shape = (slices, -1, 2, buckets)
    got = kernels.aucs(hist.reshape(shape), low.reshape(shape), used)
    want = kernels.aucs((hist + low).reshape(shape), low[:0].reshape(0, 1, 2, 1), used)
    np.testing.assert_array_equal(got, want)
    hist += low
    for g in range(slices):
        want = MetricsAccumulator(kind, classes, buckets=buckets)
        ins = [np.ones(rows, bool)] if g == 0 else [groups[:, k] == g for k in range(specs)]
        for i in ins:
            want.add(y[i], p[i])
        want._flush()
        assert n[g] == want.n[0], g
        assert confusion[g].tolist() == want.confusion[0].reshape(-1).tolist(), g
        assert hist[g].tolist() == want.hist[0].reshape(-1).tolist(), g
        assert sums[g] == pytest.approx(want.sums[0], rel=1e-12, abs=1e-12, nan_ok=True), g
    assert rows < 3000 or hist.max() > 256  # the carry was tested


def test_aucs_equal_auc_from_histograms() -> None:
    rng = np.random.default_rng(3)
    hist = rng.integers(0, 5, (6, 3, 2, 200))
    hist[1] = 0  # an empty slice
    hist[2, :, 1] = 0  # no positives
    every = np.ones(6, np.uint8)
    got = kernels.aucs(hist, np.zeros((0, 1, 2, 1), np.uint8), every * 0)  # no low: all read
    low = rng.integers(0, 256, hist.shape).astype(np.uint8)
    want = kernels.aucs(hist + low, low[:0], every)
    np.testing.assert_array_equal(kernels.aucs(hist, low, every), want)
    # Where `used` is 0, the slice's `hist` row is taken as zero (Overall's is always read).
    used = np.array([0, 1, 0, 1, 0, 1], np.uint8)
    read = (used | (np.arange(6) == 0))[:, None, None, None]
    want = kernels.aucs(np.where(read, hist, 0) + low, low[:0], every)
    np.testing.assert_array_equal(kernels.aucs(hist, low, used), want)
    for s in range(6):
        for c in range(3):
            want = auc_from_histograms(hist[s, c, 0], hist[s, c, 1])
            assert (np.isnan(got[s, c]) and want is None) or got[s, c] == pytest.approx(want)


def test_sliced_metrics_with_a_memo_equal_those_without() -> None:
    rng = np.random.default_rng(9)
    results = []
    for memo in (None, SliceMemo()):
        acc = MetricsAccumulator("binary", buckets=100)
        rng = np.random.default_rng(9)
        for size in (500, 0, 700, 300):
            values = _strings(rng, size, WORDS + [f"w{i}" for i in range(30 if size > 600 else 5)])
            batch = pa.RecordBatch.from_arrays([_column(values, pa.string())], names=["f"])
            y = rng.integers(0, 2, size)
            p = rng.random(size)
            acc.add(y, p[:, None], [slice_keys(batch, ("f",), memo=memo)])
        results.append(acc.result())
    assert results[0] == results[1] and results[0][OVERALL]["example_count"] == 1500


def test_the_disk_cache_is_optional(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where numba finds no writable folder for its cache, the kernels compile in memory."""
    import numba

    real = numba.njit

    def refusing(*args, **kwargs):
        if kwargs.get("cache"):
            raise RuntimeError("cannot cache function: no locator available")
        return real(*args, **kwargs)

    monkeypatch.setattr(numba, "njit", refusing)
    double = kernels._jit(lambda x: 2 * x)
    assert double(21) == 42
    assert pc.sum(pa.array([1])).as_py() == 1


def test_a_null_value_inside_a_list_is_a_missing_key() -> None:
    column = pa.array([[None], ["a"], [None, "a"], ["b", None], None, []], pa.list_(pa.string()))
    batch = pa.RecordBatch.from_arrays([column], names=["f"])
    want = [None, "f=a", None, "f=b", None, None]
    assert slice_keys(batch, ("f",)).to_pylist() == want
    memo = SliceMemo()
    for _ in range(2):
        assert slice_keys(batch, ("f",), memo=memo).to_pylist() == want


@pytest.mark.parametrize("offset", [0, 3, 11])
def test_slice_ids_read_the_arrow_validity_bitmap(offset: int) -> None:
    """`slice_ids` of a sliced dictionary array with nulls, from its bitmap as it is."""
    rng = np.random.default_rng(offset)
    codes = rng.integers(0, 5, 100)
    valid = rng.random(100) > 0.3
    ids = np.array([7, 3, 9, 1, 4])
    whole = pa.array(codes, pa.int32(), mask=~valid)
    part = whole.slice(offset, 60)
    bits = np.frombuffer(part.buffers()[0], np.uint8)
    got = np.full(60, -1)
    kernels.slice_ids(codes[offset : offset + 60], bits, part.offset, ids, got)
    want = np.where(valid, ids[codes], 0)[offset : offset + 60]
    assert got.tolist() == want.tolist()
    everyone = np.full((100, 2), -1)
    kernels.slice_ids(codes, np.zeros(0, np.uint8), 0, ids, everyone[:, 1])  # a column
    assert everyone[:, 1].tolist() == ids[codes].tolist() and (everyone[:, 0] == -1).all()


@pytest.mark.parametrize("seed", range(3))
def test_interned_first_values_equal_a_dict_of_first_appearances(seed: int) -> None:
    """`kernels.intern_lists` through `_Interned.first_values`, batch after batch: each row's
    first value numbered in order of first appearance across batches, as a Python dict does.
    Null rows, empty lists, null values (and batches with neither, whose validity is None),
    several values per row, sliced columns (offsets), every length under 8 bytes, more new
    values than one call's room and a table that grows; a value of 8 bytes makes it give up
    (None)."""
    from beam_pipeline.evaluation.slicing import _Interned

    rng = np.random.default_rng(seed)
    vocabulary = [b"", b"a", b"\x00", b"\x00\x00", b"ab", b"abc1234", "é".encode()]
    vocabulary += [f"k{i}".encode() for i in range(700)]
    interned, seen = _Interned(), {}
    for size, nulls in ((0, True), (40, True), (1000, False), (3000, True), (500, False)):
        rows: list[list[bytes | None] | None] = []
        for _ in range(size):
            u = rng.random()
            picks = [vocabulary[i] for i in rng.integers(0, len(vocabulary), rng.integers(1, 3))]
            if u < 0.05:
                rows.append(None if nulls else [])
            elif u < 0.13:
                rows.append([] if u < 0.1 else [None] if nulls else picks)
            else:
                rows.append(picks)
        column = pa.array(rows, pa.list_(pa.binary()))
        if not nulls:  # no validity bitmaps: the kernel compiled without their checks
            assert column.null_count == 0 and column.values.null_count == 0
        lo = int(rng.integers(0, 5)) if size else 0
        part = column.slice(lo, max(size - 2 * lo, 0))
        codes, valid = interned.first_values(part)
        want = []
        for row in part.to_pylist():
            first = row[0] if row else None
            if first is not None:
                seen.setdefault(first, len(seen))
            want.append(seen.get(first) if first is not None else None)
        assert [int(c) if v else None for c, v in zip(codes, valid, strict=True)] == want
        assert interned.texts().to_pylist() == [v.decode() for v in seen]
    long = pa.array([[b"a"], [b"12345678"]], pa.list_(pa.binary()))
    assert interned.first_values(long) is None
