"""Reading the prediction and feedback logs: segments, bad lines, windows, labels."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pytest

from beam_pipeline.io import readers
from beam_pipeline.monitoring import logs

T0 = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
COLUMNS = {"fare": "float", "payment_type": "string", "trip_start_hour": "int"}


def record(i: int, **over: object) -> dict:
    rec = {
        "request_id": f"r{i // 2}/{i % 2}",
        "model_name": "taxi",
        "model_version": 1,
        "time": logs.iso(T0 + dt.timedelta(minutes=i)),
        "features": {"fare": 5.0 + i, "payment_type": "Cash", "trip_start_hour": i % 24},
        "prediction": 0.1 * (i % 10),
    }
    rec.update(over)
    return rec


def write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_a_clean_segment_is_parsed_in_one_call(tmp_path: Path) -> None:
    f = write(tmp_path / "part-a.jsonl", [json.dumps(record(i)) for i in range(5)])
    seg = logs.read_segment(str(f))
    assert seg.table.num_rows == 5 and seg.rejected == [] and seg.lines == 5


def test_corrupt_and_truncated_lines_are_skipped_and_named(tmp_path: Path) -> None:
    lines = [json.dumps(record(i)) for i in range(4)]
    lines.insert(2, "{not json")
    body = "\n".join(lines) + '\n{"request_id": "r9/0", "time": "2026-11'  # a crash mid-write
    f = tmp_path / "part-b.jsonl"
    f.write_text(body)
    seg = logs.read_segment(str(f))
    assert seg.table.num_rows == 4
    assert [(r.file, r.line) for r in seg.rejected] == [(str(f), 3), (str(f), 6)]
    assert all(r.reason.startswith("invalid JSON") for r in seg.rejected)


def test_mixed_value_types_do_not_lose_rows(tmp_path: Path) -> None:
    a = record(0)
    b = record(1)
    b["features"]["fare"] = "12.5"  # a client sent text
    c = record(2)
    c["features"]["fare"] = "twelve"
    f = write(tmp_path / "part-c.jsonl", [json.dumps(r) for r in (a, b, c)])
    seg = logs.read_segment(str(f))
    assert seg.table.num_rows == 3 and not seg.rejected
    part = logs.predictions(seg, "taxi", COLUMNS, T0, T0 + dt.timedelta(hours=1))
    assert part.batch.column("fare").to_pylist() == [5.0, 12.5, None]
    assert part.bad_values == 1


def test_window_model_name_and_typing(tmp_path: Path) -> None:
    recs = [record(i) for i in range(6)]
    recs[5]["model_name"] = "other"
    f = write(tmp_path / "part-d.jsonl", [json.dumps(r) for r in recs])
    seg = logs.read_segment(str(f))
    part = logs.predictions(
        seg, "taxi", COLUMNS, T0 + dt.timedelta(minutes=1), T0 + dt.timedelta(minutes=5, seconds=1)
    )
    assert part.batch.column("request_id").to_pylist() == ["r0/1", "r1/0", "r1/1", "r2/0"]
    assert part.outside_window == 1 and part.wrong_model == 1
    assert part.batch.schema.field("trip_start_hour").type == pa.int64()
    assert part.batch.column("prediction").type == pa.float64()


def test_multiclass_predictions_become_a_matrix(tmp_path: Path) -> None:
    recs = [record(i, prediction=[0.2, 0.5, 0.3]) for i in range(3)]
    f = write(tmp_path / "part-e.jsonl", [json.dumps(r) for r in recs])
    part = logs.predictions(
        logs.read_segment(str(f)), "taxi", COLUMNS, T0, T0 + dt.timedelta(hours=1)
    )
    assert logs.prediction_matrix(part.batch.column("prediction")).shape == (3, 3)


def test_open_segments_are_listed_once_future_and_other_hidden_ones_not(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    write(folder / "part-20261126T110000000000-1-000001.jsonl", ["{}"])
    write(folder / "part-20261126T130000000000-1-000002.jsonl", ["{}"])  # opened after until
    write(folder / ".part-20261126T115000000000-1-000003.jsonl.inprogress", ["{"])  # open
    write(folder / ".part-20261126T114000000000-1-000004.jsonl", ["{"])  # not a segment name
    # caught in the middle of its rename: listed once, under its final name
    write(folder / ".part-20261126T113000000000-1-000005.jsonl.inprogress", ["{}"])
    write(folder / "part-20261126T113000000000-1-000005.jsonl", ["{}"])
    found = [Path(f).name for f in logs.list_segments(folder, until=T0)]
    assert found == [
        "part-20261126T110000000000-1-000001.jsonl",
        "part-20261126T113000000000-1-000005.jsonl",
        ".part-20261126T115000000000-1-000003.jsonl.inprogress",
    ]
    assert logs.list_segments(folder, until=T0, live=False)[-1].endswith("000005.jsonl")
    assert logs.segment_start(str(folder / found[0])) == T0 - dt.timedelta(hours=1)


def _dead_pid() -> int:
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_an_open_segment_is_read_to_its_last_complete_line(tmp_path: Path) -> None:
    import os

    lines = [json.dumps(record(i)) for i in range(3)]
    body = "\n".join(lines) + '\n{"request_id": "r9/0", "ti'  # the writer is mid-line
    live = tmp_path / f".part-20261126T120000000000-{os.getpid()}-000001.jsonl.inprogress"
    live.write_text(body)
    seg = logs.read_segment(str(live))
    assert seg.table.num_rows == 3 and seg.rejected == []
    dead = tmp_path / f".part-20261126T120000000000-{_dead_pid()}-000002.jsonl.inprogress"
    dead.write_text(body)  # its writer was killed: the cut line is reported, not hidden
    seg = logs.read_segment(str(dead))
    assert seg.table.num_rows == 3 and [r.line for r in seg.rejected] == [4]


def test_an_open_segment_renamed_after_the_listing_is_read_under_its_final_name(
    tmp_path: Path,
) -> None:
    hidden = tmp_path / ".part-20261126T120000000000-1-000001.jsonl.inprogress"
    write(hidden, [json.dumps(record(i)) for i in range(2)])
    [listed] = logs.list_segments(tmp_path)
    hidden.rename(tmp_path / "part-20261126T120000000000-1-000001.jsonl")
    seg = logs.read_segment(listed)
    assert seg.table.num_rows == 2 and seg.path.endswith(
        "part-20261126T120000000000-1-000001.jsonl"
    )


def test_orphan_segments_of_dead_servers_are_finalized(tmp_path: Path) -> None:
    import os

    from beam_pipeline.serving.log import finalize_orphans

    folder = tmp_path / "logs" / "predictions" / "taxi"
    dead = write(
        folder / f".part-20261126T120000000000-{_dead_pid()}-000001.jsonl.inprogress", ["{}"]
    )
    mine = write(folder / f".part-20261126T120000000000-{os.getpid()}-000002.jsonl.inprogress", [])
    assert finalize_orphans(tmp_path, dry_run=True) == [folder / dead.name[1:-11]]
    assert dead.exists()
    assert finalize_orphans(tmp_path) == [folder / dead.name[1:-11]]
    assert not dead.exists() and (folder / dead.name[1:-11]).read_text() == "{}\n"
    assert mine.exists()  # its writer (this process) is alive


def test_segments_last_written_before_the_window_are_not_read(tmp_path: Path) -> None:
    import os

    old = write(tmp_path / "part-20261126T080000000000-1-000001.jsonl", ["{}"])
    new = write(tmp_path / "part-20261126T090000000000-1-000002.jsonl", ["{}"])
    os.utime(old, (T0.timestamp() - 7200, T0.timestamp() - 7200))
    os.utime(new, (T0.timestamp() - 60, T0.timestamp() - 60))
    found = logs.list_segments(tmp_path, since=T0 - dt.timedelta(hours=1))
    assert found == [str(new)]


def test_feedback_last_label_wins_bare_ids_and_wrong_types(tmp_path: Path) -> None:
    lines = [
        {"request_id": "a/0", "label": 1.0, "time": "2026-11-26T12:00:00Z"},
        {"request_id": "a", "label": 3.5, "time": "2026-11-26T12:05:00Z"},  # bare id = a/0
        {"request_id": "b/1", "label": "lots", "time": "2026-11-26T12:00:00Z"},
        {"request_id": "c/0", "label": 2, "time": "2026-11-26T12:01:00Z"},
    ]
    f = write(tmp_path / "fb.jsonl", [json.dumps(x) for x in lines])
    table, wrong = logs.feedback_table(logs.read_segment(str(f)), "float", {})
    assert wrong == 1
    latest, dups = logs.latest_labels([table], "float")
    assert dups == 1
    got = dict(
        zip(
            latest.column("request_id").to_pylist(), latest.column("label").to_pylist(), strict=True
        )
    )
    assert got == {"a/0": 3.5, "c/0": 2.0}


def test_feedback_label_mapping(tmp_path: Path) -> None:
    lines = [{"request_id": "a/0", "label": "yes"}, {"request_id": "b/0", "label": "no"}]
    f = write(tmp_path / "fb.jsonl", [json.dumps(x) for x in lines])
    table, wrong = logs.feedback_table(logs.read_segment(str(f)), "int", {"yes": 1, "no": 0})
    assert table.column("label").to_pylist() == [1, 0] and wrong == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-26T12:00:00Z", T0),
        ("2026-11-26T13:00:00+01:00", T0),
        ("2026-11-26 12:00:00", T0),
        ("90m", T0 - dt.timedelta(minutes=90)),
        ("2d", T0 - dt.timedelta(days=2)),
    ],
)
def test_parse_time(text: str, expected: dt.datetime) -> None:
    assert logs.parse_time(text, now=T0) == expected


def test_parse_time_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="expected an ISO time"):
        logs.parse_time("yesterday")


def test_the_next_server_finalizes_what_a_dead_one_left_open(tmp_path: Path) -> None:
    from beam_pipeline.serving.log import LogWriter

    folder = tmp_path / "logs" / "predictions" / "taxi"
    dead = write(
        folder / f".part-20261126T120000000000-{_dead_pid()}-000001.jsonl.inprogress", ["{}"]
    )
    writer = LogWriter(tmp_path)  # what `serve` starts
    writer.close()
    assert not dead.exists() and (folder / dead.name[1 : -len(".inprogress")]).is_file()


def test_a_segment_longer_than_a_parser_block_is_read_in_pieces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyarrow's JSON parser takes fewer than 100,000 rows per block: a long segment is read in
    pieces (it fell back to Python line by line: 13 s for 100,000 records instead of 1 s)."""
    monkeypatch.setattr(readers, "JSON_BLOCK_ROWS", 3)
    f = write(tmp_path / "part-f.jsonl", [json.dumps(record(i)) for i in range(10)])
    seg = logs.read_segment(str(f))
    assert seg.table.num_rows == 10 and not seg.rejected
    assert seg.table.column("request_id").to_pylist()[-1] == "r4/1"
    mixed = [json.dumps(record(i)) for i in range(6)]
    mixed[4] = json.dumps(record(4, prediction="high"))  # the second piece disagrees on a type
    seg = logs.read_segment(str(write(tmp_path / "part-g.jsonl", mixed)))
    assert seg.table.num_rows == 6 and not seg.rejected


def test_a_segment_with_a_5_mb_line_is_read(tmp_path: Path) -> None:
    """Blocks are never smaller than twice the longest line: no line straddles two (that failed
    the read, and pyarrow could then hang)."""
    recs = [json.dumps(record(i)) for i in range(4)]
    big = record(9)
    big["features"]["payment_type"] = "x" * (5 << 20)
    recs.insert(2, json.dumps(big))
    seg = logs.read_segment(str(write(tmp_path / "part-h.jsonl", recs)))
    assert seg.table.num_rows == 5 and not seg.rejected
