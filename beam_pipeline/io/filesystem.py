"""Every file operation of the pipeline, on local paths and object stores (s3://, gs://) alike.

Local paths stay `pathlib.Path`. An object-store URI becomes an `ObjectPath`: the small part of
pathlib's API the stages use (``/``, ``name``, ``parent``, ``exists``, ``is_dir``, ``glob``,
``read_text``, ``write_bytes``, ...), done through Beam's `FileSystems`, so that the launcher and
every worker reach the same store with the same options. TensorFlow reaches ``s3://`` through
tensorflow-io's filesystem plugin, which `enable_tensorflow` registers.

Object stores have no folders and cannot rename a prefix: a "folder" exists when some object lies
under it, ``mkdir`` is a no-op, and publishing writes in place under an execution's own prefix
(the orchestrator deletes it when the stage fails; ML Metadata's LIVE mark is the commit point).

Endpoints and credentials never come from the pipeline's YAML: Beam reads them from its options
(``--s3_endpoint_url``, ``--s3_access_key_id``, ... or Google's default credentials), boto3
and tensorflow-io from the environment (``AWS_*``, ``S3_ENDPOINT``, ``S3_USE_HTTPS``,
``S3_VERIFY_SSL``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from beam_pipeline.io.s3_writer import mend_s3_writer

REMOTE_SCHEMES = ("s3://", "gs://", "hdfs://")


def is_remote(uri: str | os.PathLike[str]) -> bool:
    """Whether a path names an object store (anything Beam's FileSystems reach by scheme)."""
    return "://" in str(uri) and not str(uri).startswith("file://")


def as_path(uri: str | os.PathLike[str]) -> Path | ObjectPath:
    """A `Path` for a local path, an `ObjectPath` for an object-store URI."""
    if isinstance(uri, (Path, ObjectPath)):
        return uri
    text = str(uri)
    if text.startswith("file://"):
        return Path(text[len("file://") :])
    return ObjectPath(text) if is_remote(text) else Path(text)


def join(base: str | os.PathLike[str], *parts: str) -> str:
    """``base/part/...`` as a string, for local paths and URIs."""
    return str(as_path(base).joinpath(*parts)) if parts else str(base)


class ObjectPath:
    """A pathlib-like handle on an object-store URI (``s3://bucket/key``), through Beam."""

    def __init__(self, uri: str) -> None:
        scheme, rest = uri.split("://", 1)
        self._scheme = scheme
        self._key = rest.rstrip("/")

    # -- names --------------------------------------------------------------------------------

    def __str__(self) -> str:
        return f"{self._scheme}://{self._key}"

    def __repr__(self) -> str:
        return f"ObjectPath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __truediv__(self, part: str | os.PathLike[str]) -> ObjectPath:
        return ObjectPath(f"{self}/{str(part).strip('/')}")

    def joinpath(self, *parts: str) -> ObjectPath:
        p = self
        for part in parts:
            p = p / part
        return p

    @property
    def name(self) -> str:
        return posixpath.basename(self._key)

    @property
    def suffix(self) -> str:
        return posixpath.splitext(self.name)[1]

    @property
    def parent(self) -> ObjectPath:
        head = posixpath.dirname(self._key)
        return ObjectPath(f"{self._scheme}://{head or self._key}")

    def relative_to(self, other: ObjectPath | str) -> str:
        prefix = str(other).rstrip("/") + "/"
        if not str(self).startswith(prefix):
            raise ValueError(f"{self} is not under {other}")
        return str(self)[len(prefix) :]

    def is_absolute(self) -> bool:
        return True

    def resolve(self) -> ObjectPath:
        return self

    # -- queries ------------------------------------------------------------------------------

    def _objects(self) -> list[Any]:
        """FileMetadata of every object under this prefix (recursively)."""
        return _match(f"{self}/**")

    def is_file(self) -> bool:
        from apache_beam.io.filesystems import FileSystems

        return FileSystems.exists(str(self))

    def is_dir(self) -> bool:
        return bool(self._objects())

    def exists(self) -> bool:
        return self.is_file() or self.is_dir()

    def iterdir(self) -> Iterator[ObjectPath]:
        """The direct children (objects and "folders") of this prefix."""
        seen: set[str] = set()
        base = str(self) + "/"
        for m in self._objects():
            child = m.path[len(base) :].split("/", 1)[0]
            if child and child not in seen:
                seen.add(child)
                yield self / child

    def glob(self, pattern: str) -> Iterator[ObjectPath]:
        """Objects under this prefix whose relative key matches ``pattern`` (``*`` stays in a
        folder, as pathlib's does)."""
        base = str(self) + "/"
        depth = pattern.count("/")
        for m in self._objects():
            rel = m.path[len(base) :]
            if rel.count("/") == depth and fnmatch.fnmatchcase(rel, pattern):
                yield ObjectPath(m.path)

    # -- reading and writing ------------------------------------------------------------------

    def read_bytes(self) -> bytes:
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.open(str(self), compression_type="uncompressed") as f:
            return f.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> int:
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.create(str(self), compression_type="uncompressed") as f:
            f.write(data)
        return len(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        return self.write_bytes(text.encode(encoding))

    def touch(self, exist_ok: bool = True) -> None:
        self.write_bytes(b"")

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """A no-op: object stores have no folders; a prefix exists once an object lies under it."""

    def unlink(self, missing_ok: bool = False) -> None:
        from apache_beam.io.filesystems import FileSystems

        if missing_ok and not self.is_file():
            return
        FileSystems.delete([str(self)])


# ---------------------------------------------------------------------------------------------
# Functions over local paths and URIs


def exists(uri: str | os.PathLike[str]) -> bool:
    return as_path(uri).exists()


def is_dir(uri: str | os.PathLike[str]) -> bool:
    return as_path(uri).is_dir()


def read_bytes(uri: str | os.PathLike[str]) -> bytes:
    return as_path(uri).read_bytes()


def read_text(uri: str | os.PathLike[str]) -> str:
    return as_path(uri).read_text()


def write_text(uri: str | os.PathLike[str], text: str) -> None:
    p = as_path(uri)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def write_bytes(uri: str | os.PathLike[str], data: bytes) -> None:
    p = as_path(uri)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


def open_append(path: str | os.PathLike[str]) -> Any:
    """A local file opened for appending bytes (its folder made): a child process's log."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return open(p, "ab")  # the caller closes it (it outlives this call)


def open_write(path: str | os.PathLike[str]) -> Any:
    """A local file opened for writing bytes (its folder made): a job's output file, written in
    pieces (the caller closes it)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return open(p, "wb")


def copy_folder_atomically(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    staging: str,
    last: Iterable[str] = (),
) -> None:
    """Copy a folder to ``target`` whole or not at all.

    Local: through the hidden sibling ``staging`` (a name in ``target``'s folder) and one rename;
    the sibling is removed when the copy fails. Object store, which cannot rename: the files are
    copied in place, the names in ``last`` after all the others (a reader that waits for them
    sees a whole tree).
    """
    src, dst = as_path(source), as_path(target)
    if not (isinstance(src, Path) and isinstance(dst, Path)):
        copytree(src, dst, last=last)
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / staging
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(src, tmp)
        os.rename(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text_atomic(uri: str | os.PathLike[str], text: str) -> None:
    """Write a file whole or not at all: a hidden sibling renamed into place (local); an object
    store's single PUT is atomic already."""
    p = as_path(uri)
    if not isinstance(p, Path):
        p.write_text(text)
        return
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, p)


def remove(uri: str | os.PathLike[str]) -> None:
    """Delete a file, or a folder with everything under it; absent: nothing."""
    p = as_path(uri)
    if p.is_dir():
        rmtree(p)
    else:
        p.unlink(missing_ok=True)


def makedirs(uri: str | os.PathLike[str]) -> None:
    as_path(uri).mkdir(parents=True, exist_ok=True)


def rmtree(uri: str | os.PathLike[str]) -> None:
    """Delete a folder (local) or every object under a prefix (object store); absent: nothing."""
    p = as_path(uri)
    if isinstance(p, Path):
        shutil.rmtree(p, ignore_errors=True)
        return
    from apache_beam.io.filesystems import FileSystems

    objects = [m.path for m in p._objects()]
    if objects:
        FileSystems.delete(objects)


def copy_file(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    src, dst = as_path(source), as_path(target)
    if isinstance(src, Path) and isinstance(dst, Path):
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        return
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(str(src), compression_type="uncompressed") as r:
        with FileSystems.create(str(dst), compression_type="uncompressed") as w:
            while chunk := r.read(1 << 22):
                w.write(chunk)


def files_under(uri: str | os.PathLike[str]) -> list[str]:
    """Relative names of every file under a folder or prefix, sorted."""
    p = as_path(uri)
    if isinstance(p, Path):
        return sorted(str(f.relative_to(p)) for f in p.rglob("*") if f.is_file())
    base = str(p) + "/"
    return sorted(m.path[len(base) :] for m in p._objects())


def copytree(
    source: str | os.PathLike[str], target: str | os.PathLike[str], last: Iterable[str] = ()
) -> None:
    """Copy every file under ``source`` to the same relative name under ``target``; the names in
    ``last`` are copied after all the others (a reader that waits for them sees a whole tree)."""
    names = files_under(source)
    tail = [n for n in names if n in set(last)]
    for name in [n for n in names if n not in tail] + tail:
        copy_file(join(source, name), join(target, name))


def move(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Rename a folder (local: one atomic rename; object store: copy, then delete the source)."""
    src, dst = as_path(source), as_path(target)
    if isinstance(src, Path) and isinstance(dst, Path):
        os.rename(src, dst)
        return
    copytree(src, dst, last=["saved_model.pb"])
    rmtree(src)


def glob(pattern: str) -> list[str]:
    """The files a path or glob names, sorted (any filesystem Beam knows; none: [])."""
    return sorted(m.path for m in _match(pattern) if not m.path.endswith("/"))


def _match(pattern: str) -> list[Any]:
    from apache_beam.io.filesystem import BeamIOError
    from apache_beam.io.filesystems import FileSystems

    try:
        [result] = FileSystems.match([pattern])
    except BeamIOError:
        return []
    return list(result.metadata_list)


# ---------------------------------------------------------------------------------------------
# Fingerprints without reading the data in the launcher


def fingerprint(files: list[str]) -> str:
    """A data fingerprint over files, in the given order; names do not count.

    Local files: their bytes (read from the local disk; no download). Object-store files: their
    size and the store's checksum (S3's ETag, GCS's CRC32C/MD5), from the store's metadata: no
    byte is read. Equal content keeps the fingerprint on either kind (a copy or ``touch`` does not
    change it); a rewrite with other bytes changes it.
    """
    h = hashlib.sha256()
    for f in files:
        if is_remote(f):
            h.update(_object_identity(f).encode())
        else:
            with open(f, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def _object_identity(uri: str) -> str:
    from apache_beam.io.filesystems import FileSystems

    meta = next((m for m in _match(uri) if m.path == uri), None)
    size = meta.size_in_bytes if meta is not None else -1
    try:
        checksum = FileSystems.checksum(uri)
    except Exception:  # a store without checksums: fall back to the modification time
        checksum = f"mtime={meta.last_updated_in_seconds if meta is not None else 0}"
    return f"{size}:{checksum}"


# ---------------------------------------------------------------------------------------------
# Wiring: Beam's options and TensorFlow's filesystems


def configure(beam_args: list[str], uris: Iterable[str] = ()) -> None:
    """Give Beam's FileSystems the run's options (S3 endpoint, credentials, project) in this
    process, and register TensorFlow's ``s3://`` filesystem when any of ``uris`` needs it."""
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    FileSystems.set_options(PipelineOptions(beam_args))
    mend_s3_writer()
    for uri in uris:
        enable_tensorflow(uri)


def enable_tensorflow(uri: str) -> None:
    """Register tensorflow-io's ``s3://`` filesystem with TensorFlow (a no-op for other URIs);
    see `beam_pipeline.io.s3_plugin`."""
    if str(uri).startswith("s3://"):
        import beam_pipeline.io.s3_plugin  # noqa: F401
