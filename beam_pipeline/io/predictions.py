"""The prediction record: one writer for batch scoring and the serving log, column by column.

A record (one per scored row)::

    {"request_id": "<id>", "model_name": "taxi", "model_version": 3,
     "time": "2024-05-01T12:00:00.000Z", "features": {"fare": 12.45, ...}, "prediction": 0.83}

``prediction`` is a number for a one-output model, a list for several. Every record is built from
Arrow columns, never a Python object per row: `json_lines` for JSON Lines (each value's text from
Arrow, the records laid out by the compiled loop of `beam_pipeline.io.json_kernel`),
`output_table` for CSV, Parquet and tf.Example. ``time`` is always `iso_time` (UTC,
milliseconds, ``Z``).
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"  # then milliseconds and "Z": see `iso_time`
FIELDS = ("request_id", "model_name", "model_version", "time", "features", "prediction")


# A log segment: part-<UTC yyyymmddTHHMMSSffffff>-<pid>-<seq:06d>.jsonl, written under its open name
# (".{name}.inprogress") and renamed to its name when closed. The server writes them, monitor
# and doctor read them.
OPEN_SUFFIX = ".inprogress"


def segment_name(pid: int, seq: int, when: dt.datetime | None = None) -> str:
    """The final name of a log segment opened now (or at ``when``) by process ``pid``."""
    stamp = (when or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%S%f")
    return f"part-{stamp}-{pid}-{seq:06d}.jsonl"


def open_name(name: str) -> str:
    """The hidden name a segment has while it is written."""
    return f".{name}{OPEN_SUFFIX}"


def is_open(path: str) -> bool:
    """An open segment: ``.part-….jsonl.inprogress``."""
    name = path.rsplit("/", 1)[-1]
    return name.startswith(".") and name.endswith(OPEN_SUFFIX)


def final_name(path: str) -> str:
    """The name an open segment gets when its writer closes it (a closed one's own name)."""
    if not is_open(path):
        return path
    folder, _, name = path.rpartition("/")
    return f"{folder}/{name[1 : -len(OPEN_SUFFIX)]}" if folder else name[1 : -len(OPEN_SUFFIX)]


def writer_pid(path: str) -> int | None:
    """The pid of the process that wrote a segment, from its name; None for another name."""
    try:
        return int(final_name(path).rsplit("/", 1)[-1].rsplit("-", 2)[1])
    except (IndexError, ValueError):
        return None


def iso_time(when: dt.datetime | None = None) -> str:
    """A record's time: UTC with milliseconds, ``2026-11-26T12:00:00.000Z`` (now by default)."""
    when = (when or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return when.strftime(TIME_FORMAT)[:-3] + "Z"


def record_header(model_name: str, model_version: int, time_text: str) -> str:
    """The JSON text of the fields every record of a batch shares (for `json_records`)."""
    return (
        f'","model_name":{json.dumps(model_name)},"model_version":{int(model_version)},'
        f'"time":"{time_text}","features":'
    )


def json_lines(
    features: pa.RecordBatch,
    predictions: np.ndarray,
    request_ids: pa.Array | list[str],
    model_name: str,
    model_version: int,
    time_text: str | None = None,
) -> str:
    """The records of a batch as JSON Lines, each line newline-terminated.

    Args:
        features: the logged features, one column each (nulls are ``null``).
        predictions: ``[rows]`` or ``[rows, outputs]`` numbers.
        request_ids: one id per row.
        time_text: the records' time (`iso_time` by default).
    """
    if not features.num_rows:
        return ""
    ids = request_ids if isinstance(request_ids, pa.Array) else pa.array(request_ids, pa.string())
    preds = np.asarray(predictions).reshape(features.num_rows, -1)
    header = record_header(model_name, model_version, time_text or iso_time())
    return json_records(features, preds, ids, header) + "\n"


def prediction_strings(predictions: np.ndarray) -> pa.Array:
    """JSON text of each row's prediction: a number (one output) or a list (several)."""
    cols = prediction_texts(predictions)
    if len(cols) == 1:
        return cols[0]
    return pc.binary_join_element_wise("[", pc.binary_join_element_wise(*cols, ","), "]", "")


def json_values(column: pa.Array) -> pa.Array:
    """JSON text of every value of a column (``null`` for a missing one), computed column-wise."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        escaped = column
        # One scan for anything JSON escapes; most text columns have none and are only quoted.
        _, data = string_buffers(column)
        if _needs_escape(data):
            if (data < 0x20).any():
                return pa.array(
                    [json.dumps(v) if v is not None else None for v in column.to_pylist()],
                    pa.string(),
                ).fill_null("null")
            escaped = pc.replace_substring(pc.replace_substring(column, "\\", "\\\\"), '"', '\\"')
        text = pc.binary_join_element_wise('"', escaped, '"', "")
    elif pa.types.is_floating(column.type):
        text = pc.cast(column, pa.string())
        finite = pc.is_finite(column)
        if not pc.all(finite).as_py():  # NaN, ±Infinity: JSON has none, they are null
            text = pc.if_else(finite, text, pa.scalar(None, pa.string()))
    elif pa.types.is_boolean(column.type) or pa.types.is_integer(column.type):
        text = pc.cast(column, pa.string())
    else:
        text = pa.array(
            [json.dumps(v, default=str) if v is not None else None for v in column.to_pylist()],
            pa.string(),
        )
    return pc.fill_null(text, "null")


def json_records(batch: pa.RecordBatch, predictions: np.ndarray, ids: pa.Array, header: str) -> str:
    """One JSON object per row, newline-separated (no final newline); built column by column
    (`json_record_bytes`). ``header`` is the JSON text between the request id's value and the
    features' object (`record_header` makes it)."""
    return json_record_bytes(batch, predictions, ids, header).decode("utf-8")


def json_record_bytes(
    batch: pa.RecordBatch,
    predictions: np.ndarray,
    ids: pa.Array,
    header: str,
    number_texts: dict[str, pa.Array] | None = None,
) -> bytes:
    """`json_records` as UTF-8 bytes, as a file receives them (no decoding and re-encoding of a
    batch's hundreds of megabytes). ``number_texts``: for int or float columns whose values are
    all finite, their ``pc.cast(column, pa.string())`` when the caller made it already (score
    casts them for the model's inputs): the JSON text is that, ``null`` for a missing value.

    Every value's text comes from Arrow (`json_values`, `prediction_strings`); a string column is
    passed as it is when quoting it is all it needs, and the compiled loop of
    `beam_pipeline.io.json_kernel` quotes it and lays the records out in one buffer."""
    from beam_pipeline.io import json_kernel
    from beam_pipeline.io.raw_inputs import per_type

    rows = len(ids)  # a batch of no columns has no row count
    if not rows:
        return b""
    texts = number_texts or {}
    rest = [n for n in batch.schema.names if n not in texts]
    strings = [n for n in rest if pa.types.is_string(batch.column(n).type)]
    quoted = set(strings)
    for name in strings:  # a control character anywhere: json_values' json.dumps for them all
        if (string_buffers(batch.column(name))[1] < 0x20).any():
            quoted = set()
            break
    # the other columns of one type at once (a few Arrow calls per batch, not per column)
    others = [n for n in rest if n not in quoted]
    part = pa.RecordBatch.from_arrays([batch.column(n) for n in others], others)
    values = per_type(part, json_values) if others else {}
    fields: list[pa.Array] = [_escaped_ids(ids)]
    seps = ['{"request_id":"']  # seps[j] comes before fields[j]; one more closes the record
    after = header + "{"  # what comes after the previous value, before the next key
    for name in batch.schema.names:
        fields.append(texts.get(name, batch.column(name) if name in quoted else values.get(name)))
        seps.append(after + json.dumps(name) + ":")
        after = ","
    outputs = prediction_texts(predictions)
    several = len(outputs) > 1
    seps.append(("" if after == "," else after) + '},"prediction":' + ("[" if several else ""))
    seps += [","] * (len(outputs) - 1) + [("]" if several else "") + "}"]
    fields += outputs
    flags = [False] + [n in quoted for n in batch.schema.names] + [False] * len(outputs)
    joined = pa.concat_arrays(
        [f if f.type == pa.string() else pc.cast(f, pa.string()) for f in fields]
    )
    offsets, data = string_buffers(joined)
    null = joined.is_null().to_numpy(zero_copy_only=False)
    out = json_kernel.records(
        rows, offsets, data, null, np.array(flags), [s.encode("utf-8") for s in seps]
    )
    return out.tobytes()


def _escaped_ids(ids: pa.Array) -> pa.Array:
    """Request ids as JSON string content: escaped only when one needs it (ids made from a file
    name with a quote or a backslash; rare, and short)."""
    _, id_bytes = string_buffers(ids)
    if _needs_escape(id_bytes):
        return pa.array([json.dumps(v)[1:-1] for v in ids.to_pylist()], pa.string())
    return ids


def _needs_escape(data: np.ndarray) -> bool:
    """Whether UTF-8 bytes hold anything JSON escapes in a string: a control character, a quote
    or a backslash (one vectorised scan)."""
    return bool(((data < 0x20) | (data == 0x22) | (data == 0x5C)).any())


def prediction_texts(predictions: np.ndarray) -> list[pa.Array]:
    """The JSON text of each output of each row (Arrow's float32 text), one array per output."""
    return [
        pc.cast(pa.array(predictions[:, i].astype(np.float32)), pa.string())
        for i in range(predictions.shape[1])
    ]


def string_buffers(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A string array's ``[len + 1]`` value offsets (from 0) and the bytes they point into (its
    data buffer between the first and last offset, as uint8; bytes of null values, if any,
    included), without a copy."""
    if not len(strings):
        return np.zeros(1, np.int32), np.zeros(0, np.uint8)
    _, offsets, data = strings.buffers()
    kind = np.int64 if pa.types.is_large_string(strings.type) else np.int32
    off = np.frombuffer(offsets, kind)[strings.offset : strings.offset + len(strings) + 1]
    if data is None:
        return off - off[0], np.zeros(0, np.uint8)
    return off - off[0], np.frombuffer(data, np.uint8)[off[0] : off[-1]]


def _bytes_of(strings: pa.Array) -> bytes:
    """The concatenation of a string array (one copy of its data buffer; no per-row Python)."""
    return string_buffers(strings)[1].tobytes()


def output_table(
    batch: pa.RecordBatch,
    predictions: np.ndarray,
    ids: pa.Array,
    model_name: str,
    model_version: int,
    now: str,
    nested: bool,
) -> pa.Table:
    """The records as an Arrow table: features nested (parquet) or flat (csv, tf.Example)."""
    n = batch.num_rows
    meta = {
        "request_id": ids,
        "model_name": pa.array([model_name] * n),
        "model_version": pa.array(np.full(n, model_version, np.int64)),
        "time": pa.array([now] * n),
    }
    if nested:
        features = pa.StructArray.from_arrays(batch.columns, names=batch.schema.names)
        cols = {**meta, "features": features}
    else:
        cols = {**meta, **{f"{c}": batch.column(c) for c in batch.schema.names if c not in meta}}
    if predictions.shape[1] == 1:
        cols["prediction"] = pa.array(predictions[:, 0].astype(np.float32))
    elif nested:
        cols["prediction"] = pa.FixedSizeListArray.from_arrays(
            pa.array(predictions.astype(np.float32).reshape(-1)), predictions.shape[1]
        )
    else:
        for i in range(predictions.shape[1]):
            cols[f"prediction_{i}"] = pa.array(predictions[:, i].astype(np.float32))
    return pa.Table.from_pydict(cols)
