"""The prediction and feedback logs: rotated, immutable JSON Lines segments (see CONTRACT.md).

Layout: ``{root}/logs/{kind}/{model}/part-<UTC yyyymmddTHHMMSSffffff>-<pid>-<seq:06d>.jsonl``.
The segment being written is hidden (``.part-....jsonl.inprogress`` in the same folder) and is
renamed to its final name when it is rotated (size or age) or the writer closes; a final name is
never written again. JSON Lines rather than Parquet: a record is appended as soon as it is
answered (Parquet needs whole row groups, so a crash would lose a buffer of answers), `score`
already writes the same records as JSON Lines, and Beam's ``ReadFromText`` splits them.

Predictions are appended by the model's worker thread, a batch's records with one
``os.write`` to the open segment *before* the batch's answers are released (`LogWriter.append`):
once a client has its answer, its records are in the kernel's page cache, which a ``kill -9``
of the server does not lose (the next ``serve`` or ``doctor`` renames the segment the dead
process left open; ``monitor`` reads open segments too). Feedback goes through a background
thread behind a bounded queue (`submit` never blocks; when the queue is full the records are
counted as dropped). That thread also closes segments (``fsync``, then the rename), so no
request waits for a disk flush. `close` drains the queue and closes every open segment.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from beam_pipeline.core.liveness import pid_exists
from beam_pipeline.io.predictions import (
    final_name,
    iso_time,
    json_values,
    open_name,
    prediction_strings,
    segment_name,
    writer_pid,
)
from beam_pipeline.io.raw_inputs import Kind

log = logging.getLogger(__name__)

PREDICTIONS = "predictions"
FEEDBACK = "feedback"


def now_iso() -> str:
    """UTC time as the records carry it: ``2026-11-26T12:00:00.000Z`` (`io.predictions.iso_time`,
    the one format of every prediction record)."""
    return iso_time()


def log_dir(root: str | os.PathLike[str], kind: str, model: str) -> Path:
    return Path(root) / "logs" / kind / model


def normalise_request_id(request_id: str) -> str:
    """A bare request id ``R`` names its first row, ``R/0``."""
    return request_id if "/" in request_id else f"{request_id}/0"


class Segment:
    """One open segment file: hidden while written, renamed into place by `close`."""

    _seq = 0
    _seq_lock = threading.Lock()

    def __init__(self, folder: Path) -> None:
        with Segment._seq_lock:
            Segment._seq += 1
            seq = Segment._seq
        self.name = segment_name(os.getpid(), seq)
        folder.mkdir(parents=True, exist_ok=True)
        self.final = folder / self.name
        self.hidden = folder / open_name(self.name)
        self.fd = os.open(self.hidden, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.opened = time.monotonic()
        self.bytes = 0
        self.records = 0

    def write(self, data: bytes, records: int) -> None:
        """Appends whole records with one system call (unbuffered: in the page cache when it
        returns)."""
        view = memoryview(data)
        while view:  # a regular file takes it in one call; a short write continues
            view = view[os.write(self.fd, view) :]
        self.bytes += len(data)
        self.records += records

    def close(self) -> Path:
        os.fsync(self.fd)
        os.close(self.fd)
        os.rename(self.hidden, self.final)
        return self.final


def write_segment(
    root: str | os.PathLike[str], kind: str, model: str, text: str, records: int
) -> Path:
    """Write one whole segment synchronously (bulk imports); returns its final path."""
    segment = Segment(log_dir(root, kind, model))
    segment.write(text.encode("utf-8"), records)
    return segment.close()


@dataclass
class Item:
    """What a request hands the writer: formatting happens on the writer's thread."""

    kind: str
    model: str
    rows: int
    render: Callable[[], str]  # the JSON lines of these rows, newline-terminated


class LogWriter:
    """A background thread that appends records to per-(kind, model) segments."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        queue_size: int = 10_000,
        segment_bytes: int = 64 << 20,
        segment_seconds: float = 300.0,
        on_written: Callable[[str, str, int], None] | None = None,
        on_dropped: Callable[[str, str, int], None] | None = None,
    ) -> None:
        self.root = Path(root)
        self.segment_bytes = segment_bytes
        self.segment_seconds = segment_seconds
        self.written = 0
        self.dropped = 0
        self._on_written = on_written or (lambda kind, model, n: None)
        self._on_dropped = on_dropped or (lambda kind, model, n: None)
        self._queue: queue.Queue[Item | None] = queue.Queue(maxsize=queue_size)
        self._segments: dict[tuple[str, str], Segment] = {}
        self._lock = threading.Lock()  # the open segments (model threads and the writer)
        self._full: list[Segment] = []  # segments at segment_bytes, for the writer to close
        self._last_drop_warning = 0.0
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._closed = False
        finalize_orphans(self.root)  # segments a killed server left open
        self._thread.start()

    def depth(self) -> int:
        return self._queue.qsize()

    def submit(self, item: Item) -> bool:
        """Enqueue without blocking; False (and counted as dropped) when the queue is full."""
        if self._closed:
            self._drop(item)
            return False
        try:
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            self._drop(item)
            return False

    def append(self, kind: str, model: str, data: bytes, rows: int) -> bool:
        """Write ``rows`` records now, on the caller's thread, with one system call (see the
        module doc); a full segment is handed to the writer thread to be closed. False (and
        counted as dropped, with a log line) when the write fails."""
        key = (kind, model)
        try:
            with self._lock:
                segment = self._segments.get(key)
                if segment is None:
                    segment = self._segments[key] = Segment(log_dir(self.root, *key))
                segment.write(data, rows)
                if segment.bytes >= self.segment_bytes:  # closed by the writer thread
                    self._full.append(self._segments.pop(key))
        except OSError:
            log.exception("prediction log: could not write %d records of %s", rows, model)
            self._drop(Item(kind, model, rows, str))
            return False
        self.written += rows
        self._on_written(kind, model, rows)
        return True

    def _drop(self, item: Item) -> None:
        self.dropped += item.rows
        self._on_dropped(item.kind, item.model, item.rows)
        now = time.monotonic()
        if now - self._last_drop_warning > 10:
            self._last_drop_warning = now
            log.warning(
                "prediction log: queue full, %d records dropped so far (serving.log_queue_size)",
                self.dropped,
            )

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                self._rotate_old()
                continue
            if item is None:
                break
            self._write(item)
            self._rotate_old()
        with self._lock:
            segments, self._segments = [*self._full, *self._segments.values()], {}
            self._full = []
        for segment in segments:
            self._close(segment)

    def _write(self, item: Item) -> None:
        try:
            data = item.render().encode("utf-8")
        except Exception:  # the writer must outlive one bad record; it is counted, not hidden
            log.exception("prediction log: could not write %d records of %s", item.rows, item.model)
            self._drop(item)
            return
        self.append(item.kind, item.model, data, item.rows)

    def _rotate_old(self) -> None:
        now = time.monotonic()
        with self._lock:
            old = [
                self._segments.pop(key)
                for key, segment in list(self._segments.items())
                if now - segment.opened >= self.segment_seconds
            ]
            old += self._full
            self._full = []
        for segment in old:
            self._close(segment)

    def _close(self, segment: Segment) -> None:
        try:
            path = segment.close()
        except OSError:
            log.exception("prediction log: could not close %s", segment.hidden)
            return
        log.debug("log segment closed: %s (%d records)", path, segment.records)

    def close(self, timeout: float = 60.0) -> None:
        """Write everything queued, close the open segments, stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)  # blocks only while the queue is full; the writer is draining it
        self._thread.join(timeout)


Groups = Sequence[Kind]
"""Feature columns by kind (`io.raw_inputs.Kind`: the row check's per-kind arrays)."""


def render_batch(
    features: pa.RecordBatch | Groups,
    predictions: np.ndarray,
    request_ids: Sequence[str],
    rows: Sequence[int],
    offsets: Sequence[int],
    model_name: str,
    model_version: int,
    time_text: str,
    names: Sequence[str] | None = None,
) -> bytes:
    """A served batch's records as JSON Lines bytes, with no Python per row (a fixed number of
    calls whatever the batch's rows; `_format_json` one C call a row through ``map``).

    ``features``: the logged values, a record batch or the row check's columns by kind;
    ``names``: the order of the features in a record (the batch's, by default).
    ``request_ids[k]`` answered ``rows[k]`` rows of the batch, in order, its first one being row
    ``offsets[k]`` of its request (row ids ``R/i`` are made here, not per row).

    When every kind carries its JSON values (`Kind.json`: a well-formed request's) and the model
    has one output, the value texts come from orjson (one call per kind) and each record is a
    ``bytes % values`` template filled with its row's texts (`_format_json`). Numbers are then
    written as orjson writes them (``1.0``, ``0.000025``), score's writer (Arrow) as ``1``,
    ``2.5e-05``: the same JSON values. Otherwise (serialized examples, text numbers, blanks,
    several outputs) every record is cut into pieces (constants, id, row number, time, one value
    text per feature, the prediction), the value texts are `io.predictions.json_values` (score's
    text) and the pieces are gathered by one Arrow ``take``, byte for byte
    `io.predictions.json_lines`. In a running server, between model calls, each Arrow call cost
    ~50 µs of cold dispatch; the ~15 of that path came to ~0.7 ms a batch."""
    predictions = np.asarray(predictions)
    n = len(predictions)  # (a batch with every feature excluded from the log has no columns)
    if not n:
        return b""
    if isinstance(features, pa.RecordBatch):
        names = names or features.schema.names
        features = _by_type(features)
    groups = tuple(kind.names for kind in features)
    order = tuple(names) if names is not None else tuple(n for g in groups for n in g)
    predictions = predictions.reshape(n, -1)
    if predictions.shape[1] == 1 and all(kind.json is not None for kind in features):
        template = _template(model_name, int(model_version), order, groups)
        return _format_json(
            features, predictions, request_ids, rows, offsets, order, template, time_text
        )
    layout = _layout(model_name, int(model_version), order, groups)
    counts = np.asarray(rows, np.int64)
    starts = np.asarray(offsets, np.int64)
    owner = np.repeat(np.arange(len(counts)), counts)
    row_numbers = starts[owner] + (np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts))
    top = int(row_numbers.max()) + 1
    pool = pa.concat_arrays(
        [
            layout.constants,
            pa.array([time_text], pa.string()),
            pa.array(request_ids, pa.string()),
            _row_numbers(top)[1].slice(0, top),
            *(json_values(kind.values) for kind in features),
            prediction_strings(predictions),
        ]
    )
    # where each piece of a record comes from, row by row
    at_time = len(layout.constants)
    at_ids = at_time + 1
    at_numbers = at_ids + len(counts)
    at_values = at_numbers + top
    at_predictions = at_values + n * len(layout.value_at)
    arange = np.arange(n)
    index = np.empty((n, len(layout.pieces)), np.int64)
    index[:] = layout.pieces
    index[:, layout.id_at] = at_ids + owner
    index[:, layout.number_at] = at_numbers + row_numbers
    index[:, layout.time_at] = at_time
    index[:, layout.value_at] = at_values + layout.value_from * n + arange[:, None]
    index[:, layout.prediction_at] = at_predictions + arange
    joined = pool.take(pa.array(index.reshape(-1)))
    _, offsets_buffer, data = joined.buffers()
    ends = np.frombuffer(offsets_buffer, np.int32)[[joined.offset, joined.offset + len(joined)]]
    return bytes(memoryview(data)[ends[0] : ends[1]])


def _format_json(
    features: Groups,
    predictions: np.ndarray,
    request_ids: Sequence[str],
    rows: Sequence[int],
    offsets: Sequence[int],
    order: tuple[str, ...],
    template: tuple[bytes, bytes],
    time_text: str,
) -> bytes:
    """`render_batch` from the requests' own JSON values: each record is the batch's ``%``
    template (`_template`, the time filled in once) filled with its row's texts, one C call a
    row (``bytes.__mod__`` through ``map``); one orjson call per kind. On the model thread of a
    running server (its CPU time, one client; docs/serving.md): ~130 µs a 64-row batch, ~55 µs a
    1-row one, where object arrays of pieces put together by numpy calls and one
    ``orjson.dumps`` per text value (~1.5 µs a call on distinct strings) took ~290 and ~125."""
    n = len(predictions)
    columns: dict[str, list[bytes]] = {}
    for kind in features:
        assert kind.json is not None
        # (the array's class, not its .type: no Arrow call, ~10 µs of them between model calls)
        if isinstance(kind.values, (pa.StringArray, pa.LargeStringArray)):
            texts = _string_texts(kind.json)
        else:  # numbers and nulls, as the model's inputs were made of them
            texts = kind.number_texts
        for j, name in enumerate(kind.names):
            columns[name] = texts[j * n : j * n + n]
    numbers = _number_texts(max(o + c for o, c in zip(offsets, rows, strict=True)))
    ids: list[bytes] = []
    for rid, start, count in zip(request_ids, offsets, rows, strict=True):
        ids += map(f"{rid}/".encode().__add__, numbers[start : start + count])
    column = np.ascontiguousarray(predictions[:, 0], np.float32)
    text = orjson.dumps(column, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")
    head, tail = template
    record = head + time_text.encode().replace(b"%", b"%%") + tail  # the batch's time, once
    values = zip(ids, *(columns[k] for k in order), text, strict=True)
    return b"".join(map(record.__mod__, values))


def _row_numbers(top: int) -> tuple[np.ndarray, pa.Array]:
    """The texts of row numbers ``0 ..`` (at least ``top`` of them; a request's rows are ``R/0``,
    ``R/1``...), as bytes objects and as an Arrow array: built once per power of two."""
    return _numbers(max(64, 1 << (top - 1).bit_length()))


def without(features: pa.RecordBatch | Groups, excluded: set[str], rows: int) -> Groups:
    """``features`` less the ``excluded`` ones (``serving.log_exclude_features``)."""
    if isinstance(features, pa.RecordBatch):
        features = _by_type(features)
    kept: list[Kind] = []
    for kind in features:
        keep = [j for j, name in enumerate(kind.names) if name not in excluded]
        if len(keep) == len(kind.names):
            kept.append(kind)
        elif keep:
            values = pa.concat_arrays([kind.values.slice(j * rows, rows) for j in keep])
            json = kind.json
            if json is not None:
                json = [v for j in keep for v in json[j * rows : j * rows + rows]]
            kept.append(Kind(tuple(kind.names[j] for j in keep), values, json))
    return kept


def _by_type(batch: pa.RecordBatch) -> list[Kind]:
    """A record batch's columns as `Groups`: those of one type concatenated."""
    names = batch.schema.names
    columns = batch.columns
    groups: dict[pa.DataType, list[int]] = {}
    for i, column in enumerate(columns):
        groups.setdefault(column.type, []).append(i)
    return [
        Kind(
            tuple(names[i] for i in group),
            pa.concat_arrays([columns[i] for i in group]) if len(group) > 1 else columns[group[0]],
        )
        for group in groups.values()
    ]


@dataclass(frozen=True)
class _Layout:
    """How the records of a batch are cut into pieces (see `render_batch`)."""

    constants: pa.Array  # the constant pieces, in the order of their first use
    pieces: np.ndarray  # per piece of a record: the constant's index (overwritten elsewhere)
    template: np.ndarray  # per piece of a record: the constant's bytes (objects)
    id_at: int
    number_at: int
    time_at: int
    value_at: np.ndarray  # the piece of each feature's value
    value_from: np.ndarray  # its column's place among the pooled value texts (in rows)
    prediction_at: int


@functools.lru_cache(maxsize=64)
def _layout(
    model_name: str,
    model_version: int,
    names: tuple[str, ...],
    groups: tuple[tuple[str, ...], ...],
) -> _Layout:
    pooled = {name: i for i, name in enumerate(n for group in groups for n in group)}
    if set(pooled) != set(names) or len(pooled) != len(names):
        raise ValueError(f"the record's features {names} are not those given {groups}")
    head = f'","model_name":{json.dumps(model_name)},"model_version":{model_version},"time":"'
    keys = [("{" if i == 0 else ",") + json.dumps(name) + ":" for i, name in enumerate(names)]
    constants = ['{"request_id":"', "/", head, '","features":', *keys]
    constants += ["}" if keys else "{}", ',"prediction":', "}\n"]
    k = len(keys)
    # a record: {"request_id":" R / i head T ","features": {"a": v , "b": v } ,"prediction": p }
    pieces = [0, -1, 1, -1, 2, -1, 3]
    for j in range(k):
        pieces += [4 + j, -1]
    pieces += [4 + k, 5 + k, -1, 6 + k]
    template = np.empty(len(pieces), object)
    template[:] = [constants[i].encode() if i >= 0 else b"" for i in pieces]
    return _Layout(
        pa.array(constants, pa.string()),
        np.array(pieces, np.int64),
        template,
        id_at=1,
        number_at=3,
        time_at=5,
        value_at=np.arange(k, dtype=np.int64) * 2 + 8,
        value_from=np.array([pooled[name] for name in names], np.int64),
        prediction_at=len(pieces) - 2,
    )


@functools.lru_cache(maxsize=64)
def _template(
    model_name: str,
    model_version: int,
    names: tuple[str, ...],
    groups: tuple[tuple[str, ...], ...],
) -> tuple[bytes, bytes]:
    """A record as a ``bytes % values`` template (`_format_json`), cut where the batch's time
    goes: ``%b`` for the row id (``R/i``), each feature's value in ``names`` order and the
    prediction; the constant texts are `_layout`'s (a ``%`` in a name doubled)."""
    layout = _layout(model_name, model_version, names, groups)
    parts = [c.replace(b"%", b"%%") for c in layout.template.tolist()]
    for at in (layout.id_at, *layout.value_at.tolist(), layout.prediction_at):
        parts[at] = b"%b"
    head, tail = parts[: layout.time_at], parts[layout.time_at + 1 :]
    del head[layout.id_at + 1 : layout.number_at + 1]  # "/" and the row number: in the id
    return b"".join(head), b"".join(tail)


def _string_texts(values: list[str | None]) -> list[bytes]:
    """The JSON text of each value (``null`` for None), from one orjson call: indented, the
    values are separated by ``,\n  ``, which no JSON string holds (its newlines are escaped)."""
    if not values:
        return []
    return orjson.dumps(values, option=orjson.OPT_INDENT_2)[4:-2].split(b",\n  ")


def _number_texts(top: int) -> tuple[bytes, ...]:
    """The texts of row numbers ``0 ..`` (at least ``top`` of them), built once per power of
    two."""
    return _number_bytes(max(64, 1 << (top - 1).bit_length()))


@functools.lru_cache(maxsize=8)
def _number_bytes(size: int) -> tuple[bytes, ...]:
    return tuple(str(i).encode() for i in range(size))


@functools.lru_cache(maxsize=8)
def _numbers(size: int) -> tuple[np.ndarray, pa.Array]:
    texts = [str(i).encode() for i in range(size)]
    objects = np.empty(size, object)
    objects[:] = texts
    return objects, pa.array(texts, pa.string())


def feedback_lines(records: Iterable[tuple[str, Any]], time_text: str) -> str:
    return "".join(
        json.dumps({"request_id": normalise_request_id(rid), "label": label, "time": time_text})
        + "\n"
        for rid, label in records
    )


def read_records(folder: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every record of the closed segments of a folder, and the problems met (file named)."""
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    for path in sorted(folder.glob("part-*.jsonl")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                problems.append(f"{path}:{n}: not a JSON record")
    return records, problems


def finalize_orphans(root: str | os.PathLike[str], dry_run: bool = False) -> list[Path]:
    """Rename to its final name every open segment (``.part-…-<pid>-<seq>.jsonl.inprogress``)
    under ``{root}/logs`` whose writer process is gone (a ``kill -9``, a crash): its records
    were answered, so they belong in the log. A line the crash cut short stays as it is (the
    monitor skips it and names it). Returns the final paths. The next ``serve`` and ``doctor``
    call this."""
    done = []
    for hidden in sorted(Path(root, "logs").glob(f"*/*/{open_name('part-*.jsonl')}")):
        pid = writer_pid(str(hidden))
        if pid is None or pid == os.getpid() or pid_exists(pid):
            continue
        final = Path(final_name(str(hidden)))
        if not dry_run:
            try:
                os.rename(hidden, final)
            except FileNotFoundError:  # another process finalized it first
                continue
            log.warning("prediction log: finalized %s, left open by process %d", final, pid)
        done.append(final)
    return done
