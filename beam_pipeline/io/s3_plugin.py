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

import tensorflow_io  # noqa: F401  (registers s3:// with tf.io.gfile)

from beam_pipeline.io.s3_writer import mend_s3_writer

mend_s3_writer()
