"""Reading the prediction and feedback logs (the contract in the README's "Feedback loop").

Plain functions on files and Arrow tables; the Beam job (`job.py`) calls them per segment.

A segment is a JSON Lines file. It is parsed by pyarrow in one call; only a segment that fails
(a corrupt line, a line truncated by a crash, values of mixed JSON types) is re-read line by line,
so the lines that are valid still count and each bad one is reported with its file and line.

Open segments (``.part-….jsonl.inprogress``, still being written by a running server) are read
too, so the traffic of a running server is visible at once: up to their last complete line (the
writer appends whole lines; a partial last line is a record being written, not a bad one). An
open segment renamed to its final name between the listing and the read is read under that name;
each segment is listed once, under its final name when both exist. An open segment whose writer
is gone (``kill -9``) is read as it is, its cut line reported; ``serve`` and ``doctor`` finalize
such segments (`beam_pipeline.serving.log.finalize_orphans`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from beam_pipeline.core.liveness import pid_exists
from beam_pipeline.io.predictions import OPEN_SUFFIX, final_name, is_open, writer_pid  # noqa: F401
from beam_pipeline.io.readers import ARROW_TYPES, Rejected, json_objects, json_table
from beam_pipeline.monitoring.times import iso, parse_time  # noqa: F401  (light: config uses it)

PREDICTIONS, FEEDBACK = "predictions", "feedback"
META = ("request_id", "model_name", "model_version", "time")
TIME_TYPE = pa.timestamp("us", tz="UTC")
# part-<UTC yyyymmddTHHMMSSffffff>-<pid>-<seq>.jsonl: the time the segment was opened
_SEGMENT_TIME = re.compile(r"part-(\d{8}T\d{6})(\d{0,6})")


def _writer_alive(path: str) -> bool:
    pid = writer_pid(path)
    return pid is not None and pid_exists(pid)


@dataclass
class Segment:
    """One parsed segment: its rows (a table) and the lines that could not be used."""

    path: str
    table: pa.Table
    rejected: list[Rejected] = field(default_factory=list)
    lines: int = 0  # the lines that are not blank: a row each, or a rejected line


def log_dir(root: str | Path, kind: str, model_name: str) -> Path:
    """``{logs}/{predictions|feedback}/{model_name}``."""
    return Path(root) / kind / model_name


def segment_start(path: str) -> dt.datetime | None:
    """When a segment was opened, from its name (None when the name does not say)."""
    m = _SEGMENT_TIME.search(Path(path).name)
    if not m:
        return None
    micros = (m.group(2) or "0").ljust(6, "0")
    return dt.datetime.strptime(m.group(1) + micros, "%Y%m%dT%H%M%S%f").replace(tzinfo=dt.UTC)


def list_segments(
    folder: Path,
    until: dt.datetime | None = None,
    since: dt.datetime | None = None,
    live: bool = True,
) -> list[str]:
    """The segments of a log folder, oldest first: finished ones (``part-*.jsonl``) and, with
    ``live``, open ones (``.part-*.jsonl.inprogress``), each once (a name seen both ways, in
    the middle of its rename, is listed under its final name).

    A segment opened after ``until`` (its name says when) holds nothing of the window, nor does
    one last written before ``since`` (its modification time): both are left out.
    """
    import os

    if not folder.is_dir():
        return []
    names = os.listdir(folder)  # one snapshot of the folder
    finished = {n for n in names if n.startswith("part-") and n.endswith(".jsonl")}
    chosen = set(finished)
    if live:
        chosen |= {
            n
            for n in names
            if n.startswith(".part-")
            and n.endswith(".jsonl" + OPEN_SUFFIX)
            and n[1 : -len(OPEN_SUFFIX)] not in finished
        }
    out = []
    for name in sorted(chosen, key=lambda n: n.lstrip(".")):
        p = folder / name
        start = segment_start(str(p))
        if until is not None and start is not None and start > until:
            continue
        if since is not None:
            try:
                if p.stat().st_mtime < since.timestamp():
                    continue
            except FileNotFoundError:  # renamed since the listing: finished now
                p = Path(final_name(str(p)))
        out.append(str(p))
    return out


def batch_segments(
    store: Any, until: dt.datetime | None = None, since: dt.datetime | None = None
) -> list[str]:
    """The JSON Lines prediction files of LIVE InferenceResult artifacts (batch ``score`` jobs)
    that may hold rows of the window (written at or after ``since``)."""
    files: list[str] = []
    for art in store.artifacts_of_type("InferenceResult"):
        if art.properties.get("format", "jsonl") != "jsonl":
            continue
        for p in sorted(Path(art.uri).glob("predictions-*.jsonl")):
            if since is None or p.stat().st_mtime >= since.timestamp():
                files.append(str(p))
    return files


# ---------------------------------------------------------------------------------------------
# Parsing


def read_segment(path: str) -> Segment:
    """Parse one segment; corrupt lines become `Rejected` entries naming the file and line.

    An open segment is read up to its last complete line while its writer runs; one renamed
    since it was listed is read under its final name."""
    try:
        with open(path, "rb") as f:
            body = f.read()
    except FileNotFoundError:
        if not is_open(path):
            raise
        path = final_name(path)
        with open(path, "rb") as f:
            body = f.read()
    else:
        if is_open(path) and not body.endswith(b"\n") and _writer_alive(path):
            body = body[: body.rfind(b"\n") + 1]  # a record being written: the next read has it
    if not body or body.isspace():  # strip() would copy the segment
        return Segment(path, pa.table({}), [], 0)
    try:
        table = json_table(body)
        return Segment(path, table, [], table.num_rows)
    except pa.ArrowInvalid:
        pass
    rows: list[dict[str, Any]] = []
    rejected: list[Rejected] = []
    json_objects(body.split(b"\n"), path, 1, rows, rejected, max_raw=2000)
    return Segment(path, _table_of(rows), rejected, len(rows) + len(rejected))


def _table_of(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows whose values may mix JSON types: each column as one type (text where mixed)."""
    if not rows:
        return pa.table({})
    names: dict[str, None] = {}
    nested: dict[str, dict[str, None]] = {}
    for r in rows:
        names.update(dict.fromkeys(r))
        if isinstance(r.get("features"), dict):
            nested.setdefault("features", {}).update(dict.fromkeys(r["features"]))
    cols: dict[str, pa.Array] = {}
    for name in names:
        if name in nested:
            subs = nested[name]
            children = [
                _column(
                    [
                        (r.get(name) or {}).get(s) if isinstance(r.get(name), dict) else None
                        for r in rows
                    ]
                )
                for s in subs
            ]
            cols[name] = pa.StructArray.from_arrays(children, names=list(subs))
        else:
            cols[name] = _column([r.get(name) for r in rows])
    return pa.table(cols)


def _column(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array(
            [None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values],
            pa.string(),
        )


def times(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """The ``time`` column as UTC timestamps (unparseable values become null)."""
    col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_timestamp(col.type):
        return pc.cast(col, TIME_TYPE)
    col = pc.cast(col, pa.string()) if not pa.types.is_string(col.type) else col
    try:
        return pc.cast(col, TIME_TYPE)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        parsed = pd.to_datetime(col.to_pandas(), utc=True, errors="coerce", format="ISO8601")
        return pa.array(parsed, TIME_TYPE)


def in_window(t: pa.Array, since: dt.datetime, until: dt.datetime) -> pa.Array:
    """since <= t < until, false where t is null."""
    lo = pa.scalar(since.astimezone(dt.UTC), TIME_TYPE)
    hi = pa.scalar(until.astimezone(dt.UTC), TIME_TYPE)
    return pc.fill_null(pc.and_(pc.greater_equal(t, lo), pc.less(t, hi)), False)


def typed(column: pa.Array, kind: str) -> tuple[pa.Array, int]:
    """A column cast to ``int | float | string``; values that do not fit become null.

    Returns (the column, how many present values did not fit).
    """
    target = ARROW_TYPES[kind]
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.type == target:
        return column, 0
    if pa.types.is_null(column.type):
        return pa.nulls(len(column), target), 0
    if kind == "string":
        if pa.types.is_boolean(column.type):
            column = pc.cast(column, pa.int64())
        return pc.cast(column, pa.string()), 0
    if pa.types.is_boolean(column.type):
        column = pc.cast(column, pa.int64())
    try:
        return pc.cast(column, target), 0
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    present = column.is_valid().to_numpy(zero_copy_only=False)
    numbers = pd.to_numeric(column.to_pandas(), errors="coerce").to_numpy(dtype=np.float64)
    ok = ~np.isnan(numbers)
    if kind == "int":
        ok &= numbers == np.round(numbers)
    bad = int((present & ~ok).sum())
    values = pa.array(np.where(ok, numbers, np.nan), pa.float64(), mask=~ok)
    return pc.cast(values, target), bad


def request_ids(column: pa.Array) -> pa.Array:
    """Request ids as strings; a bare id ``R`` (no ``/``) means row ``R/0`` (the contract)."""
    col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    col = pc.cast(col, pa.string()) if not pa.types.is_string(col.type) else col
    bare = pc.invert(pc.fill_null(pc.match_substring(col, "/"), True))
    return pc.if_else(bare, pc.binary_join_element_wise(col, "/0", ""), col)


# ---------------------------------------------------------------------------------------------
# Predictions: one table per segment, features flattened and typed


@dataclass
class Predictions:
    """The usable prediction rows of one segment inside the window, typed."""

    batch: pa.RecordBatch  # request_id, model_version, time, prediction, <features...>
    rows_read: int = 0
    outside_window: int = 0
    bad_values: int = 0
    wrong_model: int = 0


def predictions(
    segment: Segment,
    model_name: str,
    columns: dict[str, str],
    since: dt.datetime,
    until: dt.datetime,
) -> Predictions:
    """The rows of a prediction segment for ``model_name`` inside [since, until), features typed
    as the model's training data was ingested (``columns``: name -> int | float | string)."""
    t = segment.table
    n = t.num_rows
    empty = Predictions(_empty_batch(columns), n)
    if not n:
        return empty
    needed = {"request_id", "time", "prediction", "features"}
    if not needed <= set(t.column_names):
        segment.rejected.append(
            Rejected(
                segment.path,
                0,
                f"not a prediction record: fields {sorted(t.column_names)}; expected "
                f"{sorted(needed | {'model_name', 'model_version'})}",
                "",
            )
        )
        return Predictions(empty.batch, n, 0, n)
    when = times(t.column("time"))
    keep = in_window(when, since, until)
    outside = n - pc.sum(keep).as_py() if n else 0
    if "model_name" in t.column_names:
        mine = pc.fill_null(
            pc.equal(pc.cast(t.column("model_name"), pa.string()), model_name), True
        )
        wrong = int(pc.sum(pc.and_(keep, pc.invert(mine))).as_py() or 0)
        keep = pc.and_(keep, mine)
    else:
        wrong = 0
    if isinstance(keep, pa.ChunkedArray):
        keep = keep.combine_chunks()
    t = t.filter(keep)
    when = when.filter(keep)
    features = t.column("features").combine_chunks()
    if not pa.types.is_struct(features.type):
        features = pa.StructArray.from_arrays([], names=[]) if not len(features) else features
    present = (
        {features.type.field(i).name: i for i in range(features.type.num_fields)}
        if (pa.types.is_struct(features.type))
        else {}
    )
    arrays: dict[str, pa.Array] = {
        "request_id": pc.cast(t.column("request_id"), pa.string()).combine_chunks(),
        "model_version": typed(
            t.column("model_version")
            if "model_version" in t.column_names
            else pa.nulls(t.num_rows),
            "int",
        )[0],
        "time": when,
        "prediction": _predictions(t.column("prediction").combine_chunks()),
    }
    bad = 0
    for name, kind in columns.items():
        if name in present:
            col, b = typed(features.field(present[name]), kind)
            bad += b
        else:
            col = pa.nulls(t.num_rows, ARROW_TYPES[kind])
        arrays[name] = col
    batch = pa.RecordBatch.from_arrays(list(arrays.values()), names=list(arrays))
    return Predictions(batch, n, int(outside), bad, wrong)


def _predictions(col: pa.Array) -> pa.Array:
    """Predictions as float64 (one output) or a list<float64> (several)."""
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        return pc.cast(col, pa.list_(pa.float64()))
    if pa.types.is_fixed_size_list(col.type):
        return pc.cast(col, pa.list_(pa.float64()))
    return typed(col, "float")[0]


def _empty_batch(columns: dict[str, str]) -> pa.RecordBatch:
    arrays = [
        pa.array([], pa.string()),
        pa.array([], pa.int64()),
        pa.array([], TIME_TYPE),
        pa.array([], pa.float64()),
    ]
    arrays += [pa.array([], ARROW_TYPES[k]) for k in columns.values()]
    names = ["request_id", "model_version", "time", "prediction", *columns]
    return pa.RecordBatch.from_arrays(arrays, names=names)


def prediction_matrix(col: pa.Array) -> np.ndarray:
    """[n, width] float64 predictions from the prediction column."""
    if pa.types.is_list(col.type):
        n = len(col)
        flat = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.float64)
        return flat.reshape(n, -1) if n else np.zeros((0, 1))
    return col.to_numpy(zero_copy_only=False).astype(np.float64).reshape(-1, 1)


# ---------------------------------------------------------------------------------------------
# Feedback: the latest label per request id


def feedback_table(
    segment: Segment, label_kind: str, values: dict[str, Any]
) -> tuple[pa.Table, int]:
    """(request_id, label, time) rows of a feedback segment; and how many labels had the wrong
    type (they are dropped). ``values`` maps feedback labels to column values first."""
    t = segment.table
    if not t.num_rows:
        return _empty_labels(label_kind), 0
    if not {"request_id", "label"} <= set(t.column_names):
        segment.rejected.append(
            Rejected(
                segment.path,
                0,
                f"not a feedback record: fields {sorted(t.column_names)}; "
                "expected request_id, label, time",
                "",
            )
        )
        return _empty_labels(label_kind), 0
    label = t.column("label").combine_chunks()
    if values:
        text = pc.cast(label, pa.string()) if not pa.types.is_string(label.type) else label
        keys = pa.array(list(values), pa.string())
        idx = pc.index_in(text, value_set=keys)
        mapped = pa.array([values[k] for k in values])
        label = pc.if_else(
            pc.is_null(idx), pa.scalar(None, mapped.type), mapped.take(pc.fill_null(idx, 0))
        )
    present = label.is_valid()
    typed_label, _ = typed(label, label_kind)
    ok = pc.and_(present, typed_label.is_valid())
    wrong = int(pc.sum(pc.and_(present, pc.invert(typed_label.is_valid()))).as_py() or 0)
    when = times(t.column("time")) if "time" in t.column_names else pa.nulls(t.num_rows, TIME_TYPE)
    out = pa.table(
        {"request_id": request_ids(t.column("request_id")), "label": typed_label, "time": when}
    ).filter(ok)
    return out, wrong


def _empty_labels(kind: str) -> pa.Table:
    return pa.table(
        {
            "request_id": pa.array([], pa.string()),
            "label": pa.array([], ARROW_TYPES[kind]),
            "time": pa.array([], TIME_TYPE),
        }
    )


def latest_labels(tables: list[pa.Table], kind: str) -> tuple[pa.Table, int]:
    """One row per request id, the last written (by time, then by order read) winning; and the
    number of duplicates dropped."""
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return _empty_labels(kind), 0
    t = pa.concat_tables(tables)
    order = np.arange(t.num_rows)
    frame = pd.DataFrame(
        {"id": t.column("request_id").to_pandas(), "t": t.column("time").to_pandas(), "o": order}
    )
    frame = frame.sort_values(["t", "o"], kind="stable", na_position="first")
    last = frame.drop_duplicates("id", keep="last")["o"].to_numpy()
    return t.take(pa.array(np.sort(last))), t.num_rows - len(last)
