"""``FileBlobStore``: content-addressed blobs on a local (or shared) filesystem.

A blob's key is ``[prefix/]<sha256 hex>`` and it lives at
``<root>/objects/[prefix/]<aa>/<bb>/<sha256>``. ``put`` streams to a temporary file in
``<root>/tmp`` (same filesystem) while hashing, fsyncs it, renames it atomically into place and
fsyncs the directories it touched, so a blob is either absent or complete and durable once ``put``
returns; storing the same content twice keeps one copy.

OS errors become hub errors where they enter: no space (``ENOSPC``, ``EDQUOT``), I/O errors and a
read-only filesystem -> ``OutOfResources`` (503); a missing blob -> ``NotFound``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import tempfile
from typing import TYPE_CHECKING, BinaryIO

from hub.errors import HubError, NotFound, OutOfResources
from hub.ports import BlobRef

if TYPE_CHECKING:
    from hub.ports import BlobStore

CHUNK = 1024 * 1024
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SHA = re.compile(r"[0-9a-f]{64}")
_OUT_OF_RESOURCES = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EMFILE, errno.ENFILE}


def _translate(exc: OSError, doing: str) -> HubError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutOfResources(f"Blob store full while {doing} ({exc.strerror})")
    if exc.errno in _OUT_OF_RESOURCES:
        return OutOfResources(f"Blob store unavailable while {doing} ({exc.strerror})")
    return HubError(f"Blob store error while {doing}: {exc}")


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _split_prefix(prefix: str) -> list[str]:
    parts = [p for p in prefix.strip("/").split("/") if p]
    for p in parts:
        if not _SEGMENT.fullmatch(p):
            raise ValueError(f"Invalid blob prefix segment {p!r} in {prefix!r}")
    return parts


class FileBlobStore:
    """BlobStore (``hub.ports``) on a directory tree under ``root``."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self._objects = os.path.join(self.root, "objects")
        self._tmp = os.path.join(self.root, "tmp")
        try:
            os.makedirs(self._objects, exist_ok=True)
            os.makedirs(self._tmp, exist_ok=True)
        except OSError as exc:
            raise _translate(exc, f"creating {self.root}") from exc

    def _path(self, key: str) -> str | None:
        """The file of ``key``, or ``None`` if ``key`` is not a well-formed key."""
        *prefix, digest = key.split("/")
        if not _SHA.fullmatch(digest) or not all(_SEGMENT.fullmatch(p) for p in prefix):
            return None
        return os.path.join(self._objects, *prefix, digest[:2], digest[2:4], digest)

    def put(self, stream: BinaryIO, *, prefix: str = "") -> BlobRef:
        """Store ``stream``'s bytes, read in chunks; durable (fsynced) when this returns."""
        parts = _split_prefix(prefix)
        sha = hashlib.sha256()
        size = 0
        fd, tmp = -1, ""
        try:
            fd, tmp = tempfile.mkstemp(dir=self._tmp, prefix="blob-")
            with os.fdopen(fd, "wb") as out:
                fd = -1
                while chunk := stream.read(CHUNK):
                    sha.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = sha.hexdigest()
            key = "/".join([*parts, digest])
            final = self._path(key)
            assert final is not None
            if os.path.exists(final):
                os.unlink(tmp)
                tmp = ""
                return BlobRef(key=key, sha256=digest, size=size)
            directory = os.path.dirname(final)
            created = self._make_dirs(directory)
            os.replace(tmp, final)
            tmp = ""
            for d in [directory, *created]:
                _fsync_dir(d)
            return BlobRef(key=key, sha256=digest, size=size)
        except OSError as exc:
            raise _translate(exc, "writing a blob") from exc
        finally:
            if fd >= 0:
                os.close(fd)
            if tmp:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _make_dirs(self, directory: str) -> list[str]:
        """Create ``directory`` and missing parents; the parents of new directories (to fsync)."""
        missing = []
        d = directory
        while not os.path.isdir(d):
            missing.append(d)
            d = os.path.dirname(d)
        for m in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(m)
        return [os.path.dirname(m) for m in missing]

    def open(self, key: str) -> BinaryIO:
        """A binary file object reading the blob; ``NotFound`` if there is none."""
        path = self._path(key)
        if path is None:
            raise NotFound(f"No blob {key!r}")
        try:
            return open(path, "rb")  # the caller closes it
        except FileNotFoundError as exc:
            raise NotFound(f"No blob {key!r}") from exc
        except OSError as exc:
            raise _translate(exc, "reading a blob") from exc

    def delete(self, key: str) -> None:
        """Remove the blob; deleting a missing blob is not an error."""
        path = self._path(key)
        if path is None:
            return
        try:
            os.unlink(path)
            _fsync_dir(os.path.dirname(path))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _translate(exc, "deleting a blob") from exc

    def exists(self, key: str) -> bool:
        path = self._path(key)
        return path is not None and os.path.isfile(path)


if TYPE_CHECKING:  # mypy proves the store implements the port
    _store: BlobStore = FileBlobStore("")
