"""The log writer: hidden segments while written, immutable once closed, drained, drops counted."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa

from beam_pipeline.io.predictions import json_lines
from beam_pipeline.io.raw_inputs import Kind
from beam_pipeline.serving import log as plog


def item(model: str, n: int, start: int = 0, gate: threading.Event | None = None) -> plog.Item:
    def render() -> str:
        if gate is not None:
            gate.wait(10)
        return "".join(json.dumps({"request_id": f"r/{start + i}"}) + "\n" for i in range(n))

    return plog.Item(plog.PREDICTIONS, model, n, render)


def test_segments_are_hidden_while_written_and_renamed_when_closed(tmp_path: Path) -> None:
    writer = plog.LogWriter(tmp_path, segment_bytes=400)
    for i in range(10):
        assert writer.submit(item("taxi", 3, 3 * i))
    writer.close()
    folder = tmp_path / "logs" / "predictions" / "taxi"
    segments = sorted(folder.glob("part-*.jsonl"))
    assert len(segments) > 1  # rotated by size
    assert list(folder.glob(".*")) == []
    records, problems = plog.read_records(folder)
    assert problems == []
    assert [r["request_id"] for r in records] == [f"r/{i}" for i in range(30)]
    assert writer.written == 30 and writer.dropped == 0


def test_segments_rotate_by_age(tmp_path: Path) -> None:
    writer = plog.LogWriter(tmp_path, segment_seconds=0.2)
    writer.submit(item("taxi", 1))
    folder = tmp_path / "logs" / "predictions" / "taxi"
    import time

    deadline = time.monotonic() + 10
    while not list(folder.glob("part-*.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(list(folder.glob("part-*.jsonl"))) == 1  # closed while the writer still runs
    writer.close()


def test_a_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    dropped: list[int] = []
    gate = threading.Event()
    writer = plog.LogWriter(
        tmp_path, queue_size=2, on_dropped=lambda kind, model, n: dropped.append(n)
    )
    writer.submit(item("taxi", 1, 0, gate))  # the writer blocks on this one
    accepted = [writer.submit(item("taxi", 5, 10 * i)) for i in range(1, 6)]
    assert accepted.count(False) >= 3
    gate.set()
    writer.close()
    records, _ = plog.read_records(tmp_path / "logs" / "predictions" / "taxi")
    assert writer.dropped == sum(dropped) == 5 * accepted.count(False)
    assert len(records) == 1 + 5 * accepted.count(True)


def test_readers_skip_and_name_a_corrupt_line(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "part-1.jsonl").write_text('{"a": 1}\n{"a": \n{"a": 3}\n')
    (folder / ".part-2.jsonl.inprogress").write_text('{"a": 4}\n')
    records, problems = plog.read_records(folder)
    assert records == [{"a": 1}, {"a": 3}]
    assert problems == [f"{folder / 'part-1.jsonl'}:2: not a JSON record"]


def test_feedback_ids_are_normalised_to_rows() -> None:
    text = plog.feedback_lines([("abc", 1), ("abc/2", "yes")], "t")
    assert [json.loads(x) for x in text.splitlines()] == [
        {"request_id": "abc/0", "label": 1, "time": "t"},
        {"request_id": "abc/2", "label": "yes", "time": "t"},
    ]


def test_render_batch_writes_json_lines_text_from_batches_and_groups() -> None:
    """The server's renderer gives score's bytes (`json_lines`), whatever the mix of requests,
    row offsets (a request cut into parts), nulls, NaN, escapes and excluded features."""
    rng = random.Random(0)
    for _ in range(50):
        counts = [rng.randint(1, 4) for _ in range(rng.randint(1, 5))]
        offsets = [rng.choice([0, 0, 64, 130]) for _ in counts]
        n = sum(counts)
        batch = pa.RecordBatch.from_arrays(
            [
                pa.array([rng.choice([None, 1, -5, 2**40]) for _ in range(n)], pa.int64()),
                pa.array([rng.choice([None, 1.5, 1e20, float("nan"), 1.0]) for _ in range(n)]),
                pa.array([rng.choice([None, "a", 'q"x', "b\\c", "é\n", ""]) for _ in range(n)]),
                pa.array([rng.choice([None, 3, 4]) for _ in range(n)], pa.int64()),
            ],
            names=["n", "x", "s", "m"],
        )
        predictions = np.random.default_rng(0).random((n, rng.choice([1, 3]))).astype(np.float32)
        pairs = enumerate(zip(counts, offsets, strict=True))
        ids = [f"r{k}/{o + i}" for k, (c, o) in pairs for i in range(c)]
        want = json_lines(batch, predictions, ids, "taxi", 3, "2026-01-01T00:00:00.000Z")
        rids = [f"r{k}" for k in range(len(counts))]
        args = (predictions, rids, counts, offsets, "taxi", 3, "2026-01-01T00:00:00.000Z")
        assert plog.render_batch(batch, *args) == want.encode()
        kinds = [Kind(("n", "m"), pa.concat_arrays([batch.column(0), batch.column(3)]))]
        kinds += [Kind(("x",), batch.column(1)), Kind(("s",), batch.column(2))]
        assert plog.render_batch(kinds, *args, ["n", "x", "s", "m"]) == want.encode()
        kept = plog.without(kinds, {"m", "x"}, n)
        narrow = pa.RecordBatch.from_arrays([batch.column(0), batch.column(2)], names=["n", "s"])
        want = json_lines(narrow, predictions, ids, "taxi", 3, "2026-01-01T00:00:00.000Z")
        assert plog.render_batch(kept, *args, ["n", "s"]) == want.encode()


def test_render_batch_from_json_values_gives_the_same_records() -> None:
    """A well-formed request's own JSON values (`Kind.json`) are rendered with orjson, no Arrow:
    the same JSON values as score's writer (numbers may be spelled otherwise: 1.0 for 1)."""
    rng = random.Random(1)
    for _ in range(50):
        counts = [rng.randint(1, 4) for _ in range(rng.randint(1, 5))]
        offsets = [rng.choice([0, 0, 64, 130]) for _ in counts]
        n = sum(counts)
        ints = [rng.choice([None, 1, -5, 2**40]) for _ in range(2 * n)]
        floats = [1.0] + [rng.choice([None, 1.5, 1e20, 2.5e-05, 3, 0.1]) for _ in range(n - 1)]
        # (the fast path splits orjson's indented text at ",\n  " and fills a "%" template)
        texts = [rng.choice([None, "a", 'q"x', "b\\c", "é\n", ",", ",\n  %b"]) for _ in range(n)]
        kinds = [
            Kind(("n", "m%"), pa.array(ints, pa.int64()), ints),
            Kind(("x",), pa.array(floats, pa.float64()), floats),
            Kind(("%s",), pa.array(texts, pa.string()), texts),
        ]
        predictions = np.random.default_rng(0).random((n, 1)).astype(np.float32)
        rids = [f"r{k}" for k in range(len(counts))]
        args = (predictions, rids, counts, offsets, "t%bx", 3, "2026-01-01T00:00:00.000Z")
        order = ["%s", "n", "x", "m%"]
        fast = plog.render_batch(kinds, *args, order)
        arrow = plog.render_batch([Kind(k.names, k.values) for k in kinds], *args, order)
        assert fast != arrow  # the orjson path was taken (1.0 is spelled "1" by Arrow)
        fast_lines, arrow_lines = fast.decode().splitlines(), arrow.decode().splitlines()
        assert [json.loads(x) for x in fast_lines] == [json.loads(x) for x in arrow_lines]
        assert [list(json.loads(x)["features"]) for x in fast_lines] == [order] * n


def _records_one_by_one(
    kinds: list[Kind],
    predictions: np.ndarray,
    rids: list[str],
    counts: list[int],
    offsets: list[int],
    order: list[str],
    model: str,
    version: int,
    time_text: str,
) -> bytes:
    """The reference for `render_batch`'s JSON-values path: each piece of each record in Python,
    each value written by orjson alone (the prediction as a float32)."""
    import orjson

    n = len(predictions)
    layout = plog._layout(model, version, tuple(order), tuple(k.names for k in kinds))
    constants = [c.encode() for c in layout.constants.to_pylist()]
    values = {}
    for kind in kinds:
        for j, name in enumerate(kind.names):
            values[name] = [orjson.dumps(v) for v in (kind.json or [])[j * n : j * n + n]]
    out = []
    row = 0
    for rid, count, offset in zip(rids, counts, offsets, strict=True):
        for i in range(count):
            slots = {
                layout.id_at: rid.encode(),
                layout.number_at: str(offset + i).encode(),
                layout.time_at: time_text.encode(),
                layout.prediction_at: orjson.dumps(
                    predictions[row : row + 1, 0].astype(np.float32),
                    option=orjson.OPT_SERIALIZE_NUMPY,
                )[1:-1],
            }
            for j, at in enumerate(layout.value_at.tolist()):
                slots[at] = values[order[j]][row]
            out += [
                slots.get(p, constants[c] if c >= 0 else b"") for p, c in enumerate(layout.pieces)
            ]
            row += 1
    return b"".join(out)


def test_json_values_records_are_the_pieces_put_together_one_by_one() -> None:
    """`render_batch` from JSON values (orjson's texts in a ``%`` template) against each record's
    pieces written one by one: byte for byte, on generated batches (row numbers of 1 to 7 digits,
    every kind of text, escapes, '%', ',' and line breaks in texts and names, empty strings,
    nulls, excluded features)."""
    rng = random.Random(5)
    words = [None, "", "a", 'q"x', "b\\c", "é\n", ",", ",\n  %b", "\u2028", "x" * 200, "}\n{"]
    for case in range(300):
        counts = [rng.randint(1, 70 if case % 10 == 0 else 4) for _ in range(rng.randint(1, 6))]
        offsets = [rng.choice([0, 0, 9, 64, 130, 99_999, 1_234_567]) for _ in counts]
        n = sum(counts)
        ints = [rng.choice([None, 0, 1, -5, 2**40, -(2**63)]) for _ in range(2 * n)]
        floats = [rng.choice([None, 1.5, 1e20, 2.5e-05, 3, 0.1, -0.0, 1.0]) for _ in range(n)]
        texts = [rng.choice(words) for _ in range(3 * n)]
        kinds = [
            Kind(("n", "m%"), pa.array(ints, pa.int64()), ints),
            Kind(("x",), pa.array(floats, pa.float64()), floats),
            Kind(("%s", "é", "a,b"), pa.array(texts, pa.string()), texts),
        ]
        rng.shuffle(kinds)
        order = ["%s", "n", "x", "m%", "é", "a,b"]
        rng.shuffle(order)
        predictions = np.random.default_rng(case).normal(size=(n, 1)).astype(np.float32) * 1e3
        rids = [
            rng.choice(["r", "abc-1", "x" * 128, "a.b_c:d"]) + str(k) for k in range(len(counts))
        ]
        model = rng.choice(["taxi", 't%bx"\\', "é"])
        args = (predictions, rids, counts, offsets, model, 7, "2026-01-01T00:00:00.000Z")
        want = _records_one_by_one(
            kinds, predictions, rids, counts, offsets, order, model, 7, args[-1]
        )
        assert plog.render_batch(kinds, *args, order) == want
        kept = plog.without(kinds, {"x", "é"}, n)
        narrow = [name for name in order if name not in {"x", "é"}]
        want = _records_one_by_one(
            kept, predictions, rids, counts, offsets, narrow, model, 7, args[-1]
        )
        assert plog.render_batch(kept, *args, narrow) == want
