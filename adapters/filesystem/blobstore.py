"""``FileBlobStore``: content-addressed blobs on a local (or shared) filesystem.

A blob's key is ``[prefix/]<sha256 hex>``. Without a prefix it lives at
``<root>/objects/<aa>/<bb>/<sha256>``; with one, the prefix's last segment names the file:
``<root>/objects/<p1>/.../<pn-1>/<pn>.<sha256>`` (a DICOM instance:
``objects/dicom/<study>/<series>/<sop>.<sha256>``), so storing an object creates no directory of
its own. Blobs written by earlier versions under ``objects/[prefix/]<aa>/<bb>/<sha256>`` are still
found.

``put`` streams to a temporary file in ``<root>/tmp`` (same filesystem) while hashing, renames it
atomically into place, then fsyncs the file and its directory (and, the first time this process
uses a directory, the entries of the directory and its parents), so a blob is complete and durable
once ``put`` returns; storing the same content twice keeps one copy, after checking that the
file already there holds that content (a crash between rename and fsync can leave a partial file,
which no index row refers to).
Concurrent ``put`` calls into one directory share its fsync (group commit): one ``fsync`` of the
directory covers every rename made before it started.

OS errors become hub errors where they enter: no space (``ENOSPC``, ``EDQUOT``), I/O errors and a
read-only filesystem -> ``OutOfResources`` (503); a missing blob -> ``NotFound``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import os
import re
import threading
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


class _DirectorySync:
    """Group commit of one directory's fsync: a caller whose rename happened before a running
    fsync started waits for that one or the next, instead of issuing its own."""

    __slots__ = ("_cond", "_done", "_requested", "_running", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self._cond = threading.Condition()
        self._requested = 0  # tickets handed out
        self._done = 0  # every ticket up to this one is durable
        self._running = False

    def sync(self) -> None:
        with self._cond:
            self._requested += 1
            ticket = self._requested
            while self._done < ticket:
                if self._running:
                    self._cond.wait()
                    continue
                self._running = True
                covered = self._requested
                self._cond.release()
                try:
                    _fsync_dir(self.path)
                finally:
                    self._cond.acquire()
                    self._running = False
                    self._cond.notify_all()
                self._done = max(self._done, covered)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


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
        self._names = itertools.count()
        self._token = os.urandom(4).hex()  # temporary names never meet an earlier process's
        self._lock = threading.Lock()
        self._syncs: dict[str, _DirectorySync] = {}  # directories known durable, by path
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
        if not prefix:
            return os.path.join(self._objects, digest[:2], digest[2:4], digest)
        *folders, stem = prefix
        return os.path.join(self._objects, *folders, f"{stem}.{digest}")

    def _legacy_path(self, key: str) -> str:
        """Where versions before the flat layout kept a prefixed blob (``key`` well-formed)."""
        *prefix, digest = key.split("/")
        return os.path.join(self._objects, *prefix, digest[:2], digest[2:4], digest)

    def _existing(self, key: str) -> str | None:
        """The file holding ``key`` (current or legacy layout), or ``None``."""
        path = self._path(key)
        if path is None:
            return None
        if os.path.isfile(path):
            return path
        legacy = self._legacy_path(key)
        return legacy if legacy != path and os.path.isfile(legacy) else None

    def put(self, stream: BinaryIO, *, prefix: str = "") -> BlobRef:
        """Store ``stream``'s bytes, read in chunks; durable (fsynced) when this returns."""
        parts = _split_prefix(prefix)
        sha = hashlib.sha256()
        size = 0
        fd, tmp, placed = -1, "", ""
        try:
            tmp = os.path.join(self._tmp, f"blob-{self._token}-{next(self._names)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0))
            while chunk := stream.read(CHUNK):
                sha.update(chunk)
                _write_all(fd, chunk)
                size += len(chunk)
            digest = sha.hexdigest()
            key = "/".join([*parts, digest])
            final = self._path(key)
            assert final is not None
            found = self._existing(key)
            if found is not None and self._confirm(found, digest):
                return BlobRef(key=key, sha256=digest, size=size)
            directory = self._durable_directory(os.path.dirname(final))
            try:
                os.replace(tmp, final)
            except FileNotFoundError:  # the directory was removed behind our back: make it again
                self._forget_directories()
                directory = self._durable_directory(os.path.dirname(final))
                os.replace(tmp, final)
            # Renamed before the fsync: on journalling filesystems the file's fsync then commits
            # the rename too and the directory's fsync only has to flush. Until both return, the
            # name may hold a partial file; no index row points to it yet, and a later put of
            # the same key checks the content before trusting it (``_confirm``).
            tmp, placed = "", final
            os.fsync(fd)
            directory.sync()
            placed = ""
            return BlobRef(key=key, sha256=digest, size=size)
        except OSError as exc:
            raise _translate(exc, "writing a blob") from exc
        finally:
            if fd >= 0:
                os.close(fd)
            for leftover in (tmp, placed):  # a failed put leaves nothing behind
                if leftover:
                    with contextlib.suppress(OSError):
                        os.unlink(leftover)

    def _confirm(self, path: str, digest: str) -> bool:
        """Whether the file already at ``path`` holds the blob ``digest``; if so it is made
        durable too (a put of the same key may still be on its way to the disk, or a crash may
        have left a partial file under the name)."""
        sha = hashlib.sha256()
        with open(path, "rb") as existing:
            while chunk := existing.read(CHUNK):
                sha.update(chunk)
            if sha.hexdigest() != digest:
                return False
            os.fsync(existing.fileno())
        self._durable_directory(os.path.dirname(path)).sync()
        return True

    def _forget_directories(self) -> None:
        with self._lock:
            self._syncs.clear()

    def _durable_directory(self, directory: str) -> _DirectorySync:
        """``directory``, created if missing, with its entry and its parents' durable: done
        once per directory and process (another process may have created it and not yet
        fsynced its parent), then remembered."""
        found = self._syncs.get(directory)
        if found is not None:
            return found
        with self._lock:
            found = self._syncs.get(directory)
            if found is not None:
                return found
            chain = []
            d = directory
            while d != self._objects and d not in self._syncs:
                chain.append(d)
                d = os.path.dirname(d)
            for m in reversed(chain):
                with contextlib.suppress(FileExistsError):
                    os.mkdir(m)
            for m in chain:  # deepest first: each directory's entry lives in its parent
                _fsync_dir(os.path.dirname(m))
            if len(self._syncs) > 100_000:  # bounded: forgetting only costs an fsync
                self._syncs.clear()
            for m in chain:
                self._syncs[m] = _DirectorySync(m)
            return self._syncs.setdefault(directory, _DirectorySync(directory))

    def open(self, key: str) -> BinaryIO:
        """A binary file object reading the blob; ``NotFound`` if there is none."""
        path = self._existing(key)
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
        path = self._existing(key)
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
        return self._existing(key) is not None


if TYPE_CHECKING:  # mypy proves the store implements the port
    _store: BlobStore = FileBlobStore("")
