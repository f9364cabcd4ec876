"""Loaded wherever the pipeline touches ``s3://``: in the launcher by `filesystem.configure`, in
Beam workers through ``--beam_plugins`` (which `beam.beam_args` adds when the root or the data is
on S3).

- Registers tensorflow-io's ``s3://`` filesystem with TensorFlow (tf.Transform, SavedModels, TFDV's
  statistics files, tf.data all read and write through it).
- Mends Beam 2.72's S3 writer for empty files: it completes a multipart upload with no part, which
  S3 rejects (MalformedXML), so an empty output (say, no rejected rows) failed the write. One
  zero-byte part, which S3 accepts as the last part, makes it an ordinary empty object.
"""

from __future__ import annotations

from typing import Any

import tensorflow_io  # noqa: F401  (registers s3:// with tf.io.gfile)
from apache_beam.io.aws import s3io

_finish = s3io.S3Uploader.finish


def _finish_with_a_part(self: Any) -> None:
    if not self.parts and not self.buffer and self.last_error is None:
        self._write_to_s3(b"")
    _finish(self)


if not getattr(s3io.S3Uploader.finish, "_beam_pipeline", False):
    _finish_with_a_part._beam_pipeline = True  # type: ignore[attr-defined]
    s3io.S3Uploader.finish = _finish_with_a_part  # type: ignore[method-assign]
