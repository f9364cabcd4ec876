"""A mend of Beam's S3 writer, applied by `filesystem.configure` in the launcher and by
`s3_plugin` in Beam workers (a module of its own so that neither imports the other)."""

from __future__ import annotations

from typing import Any


def mend_s3_writer() -> None:
    """Beam 2.72's S3 writer completes a multipart upload with no part for an empty file, which
    S3 rejects (MalformedXML): an empty output (no rejected rows) failed its write. One zero-byte
    part, which S3 accepts as the last part, makes it an ordinary empty object."""
    from apache_beam.io.aws import s3io

    finish = s3io.S3Uploader.finish
    if getattr(finish, "_mended", False):
        return

    def finish_with_a_part(self: Any) -> None:
        if not self.parts and not self.buffer and self.last_error is None:
            self._write_to_s3(b"")
        finish(self)

    finish_with_a_part._mended = True  # type: ignore[attr-defined]
    s3io.S3Uploader.finish = finish_with_a_part  # type: ignore[method-assign]
