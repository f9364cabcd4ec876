"""Writing TFRecords a batch at a time, gzip-compressed on a background thread.

Beam's TFRecord sink frames one record per call and compresses inline at zlib level 6. Here a
whole batch is framed in one pass and compressed at level 1 on a second thread (zlib releases the
GIL), so encoding the next batch and compressing this one overlap on two cores.
"""

from __future__ import annotations

import queue
import threading
import zlib
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io import filebasedsink
from apache_beam.io.filesystem import CompressionTypes

from beam_pipeline.io.example_coder import binary_array

try:
    from google_crc32c import value as _crc32c
except ImportError:  # pragma: no cover - google-crc32c comes with apache-beam[gcp]
    from apache_beam.io.tfrecordio import _default_crc32c_fn as _crc32c

GZIP_LEVEL = 1


def _crc_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table[i] = crc
    return table


_CRC_TABLE = _crc_table()


def _masked(crc: np.ndarray) -> np.ndarray:
    c = crc.astype(np.uint64)
    return ((((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF).astype("<u4")


def _crc32c_rows(rows: np.ndarray) -> np.ndarray:
    """crc32c of each row of a (n, k) uint8 matrix, all rows at once (k is small)."""
    crc = np.full(len(rows), 0xFFFFFFFF, dtype=np.uint32)
    for j in range(rows.shape[1]):
        crc = _CRC_TABLE[(crc ^ rows[:, j]) & 0xFF] ^ (crc >> 8)
    return crc ^ np.uint32(0xFFFFFFFF)


def frame(records: pa.BinaryArray | list[bytes]) -> bytes:
    """TFRecord framing of a batch: length, masked crc(length), data, masked crc(data).

    Lengths and their checksums are computed for the whole batch with numpy; only the data
    checksum is one C call per record.
    """
    if not isinstance(records, pa.Array):
        records = pa.array(records, pa.binary())
    if records.offset:
        records = pa.concat_arrays([records])  # a slice: copy it to offset 0
    n = len(records)
    if n == 0:
        return b""
    offsets = np.frombuffer(records.buffers()[1], dtype=np.int32)[: n + 1]
    data = records.buffers()[2].to_pybytes() if n else b""
    bounds = offsets.tolist()
    data_crc = np.fromiter(
        (_crc32c(data[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)),
        dtype=np.uint32,
        count=n,
    )
    lengths = np.diff(offsets).astype("<u8").view(np.uint8).reshape(n, 8)
    head = np.empty((n, 12), dtype=np.uint8)
    head[:, :8] = lengths
    head[:, 8:] = _masked(_crc32c_rows(lengths)).view(np.uint8).reshape(n, 4)
    tail = _masked(data_crc).view(np.uint8).reshape(n, 4)
    framed = pc.binary_join_element_wise(
        binary_array(head.ravel(), np.full(n, 12, dtype=np.int32)),
        records,
        binary_array(tail.ravel(), np.full(n, 4, dtype=np.int32)),
        pa.scalar(b"", pa.binary()),
    )
    end = int(np.frombuffer(framed.buffers()[1], dtype=np.int32)[n])
    return framed.buffers()[2].to_pybytes()[:end]


class ThreadedWriter:
    """A write-only stream whose writes (and `_encode`) run on its own thread: the caller hands
    over a buffer and goes on (writing hundreds of megabytes costs a core-second)."""

    def __init__(self, raw: Any, depth: int = 4) -> None:
        self._raw = raw
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._thread.start()

    def _encode(self, data: bytes) -> bytes:
        return data

    def _flush(self) -> bytes:
        return b""

    def _work(self) -> None:
        try:
            while (data := self._queue.get()) is not None:
                self._raw.write(self._encode(data))
            self._raw.write(self._flush())
        except BaseException as exc:  # re-raised in the writing thread by write/close
            self._error = exc
            while self._queue.get() is not None:
                pass

    def write(self, data: bytes) -> None:
        if self._error:
            raise self._error
        self._queue.put(data)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._raw.close()
        if self._error:
            raise self._error


class ThreadedGzipWriter(ThreadedWriter):
    """A write-only gzip stream whose compression runs on its own thread."""

    def __init__(self, raw: Any, level: int = GZIP_LEVEL, depth: int = 4) -> None:
        self._z = zlib.compressobj(level, zlib.DEFLATED, 31)
        super().__init__(raw, depth)

    def _encode(self, data: bytes) -> bytes:
        return self._z.compress(data)

    def _flush(self) -> bytes:
        return self._z.flush()


class _TFRecordBatchSink(filebasedsink.FileBasedSink):
    """Each element is a batch of records already framed by `frame`, written as gzip TFRecords."""

    def __init__(self, prefix: str, shards: int) -> None:
        super().__init__(
            prefix,
            coder=None,
            file_name_suffix=".tfrecord.gz",
            num_shards=shards,
            mime_type="application/octet-stream",
            compression_type=CompressionTypes.UNCOMPRESSED,
        )

    def open(self, temp_path: str) -> ThreadedGzipWriter:
        return ThreadedGzipWriter(super().open(temp_path))

    def write_record(self, file_handle: ThreadedGzipWriter, value: bytes) -> None:
        file_handle.write(value)


def WriteTFRecordBatches(prefix: str, shards: int = 0) -> beam.PTransform:  # noqa: N802
    """Write a PCollection of framed batches to ``{prefix}-SSSSS-of-NNNNN.tfrecord.gz``."""
    return beam.io.Write(_TFRecordBatchSink(prefix, shards))
