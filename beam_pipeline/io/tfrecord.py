"""Writing TFRecords a batch at a time, gzip-compressed on a background thread.

Beam's TFRecord sink frames one record per call and compresses inline at zlib level 6. Here a
whole batch is framed in one pass and compressed at level 1 on a second thread (zlib releases the
GIL), so encoding the next batch and compressing this one overlap on two cores.
"""

from __future__ import annotations

import queue
import struct
import threading
import zlib
from typing import Any

import apache_beam as beam
from apache_beam.io import filebasedsink
from apache_beam.io.filesystem import CompressionTypes

try:
    from google_crc32c import value as _crc32c
except ImportError:  # pragma: no cover - google-crc32c comes with apache-beam[gcp]
    from apache_beam.io.tfrecordio import _default_crc32c_fn as _crc32c

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
GZIP_LEVEL = 1


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(records: list[bytes]) -> bytes:
    """TFRecord framing of a batch: length, masked crc(length), data, masked crc(data)."""
    parts = []
    for r in records:
        length = _U64.pack(len(r))
        parts += (length, _U32.pack(_masked(_crc32c(length))), r, _U32.pack(_masked(_crc32c(r))))
    return b"".join(parts)


class ThreadedGzipWriter:
    """A write-only gzip stream whose compression runs on its own thread."""

    def __init__(self, raw: Any, level: int = GZIP_LEVEL, depth: int = 4) -> None:
        self._raw = raw
        self._z = zlib.compressobj(level, zlib.DEFLATED, 31)
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            while (data := self._queue.get()) is not None:
                self._raw.write(self._z.compress(data))
            self._raw.write(self._z.flush())
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


class _TFRecordBatchSink(filebasedsink.FileBasedSink):
    """Each element is a list of serialized records, written as gzip TFRecords."""

    def __init__(self, prefix: str, shards: int) -> None:
        super().__init__(
            prefix, coder=None, file_name_suffix=".tfrecord.gz", num_shards=shards,
            mime_type="application/octet-stream", compression_type=CompressionTypes.UNCOMPRESSED,
        )

    def open(self, temp_path: str) -> ThreadedGzipWriter:
        return ThreadedGzipWriter(super().open(temp_path))

    def write_record(self, file_handle: ThreadedGzipWriter, value: list[bytes]) -> None:
        file_handle.write(frame(value))


def WriteTFRecordBatches(prefix: str, shards: int = 0) -> beam.PTransform:  # noqa: N802
    """Write a PCollection of record lists to ``{prefix}-SSSSS-of-NNNNN.tfrecord.gz``."""
    return beam.io.Write(_TFRecordBatchSink(prefix, shards))
