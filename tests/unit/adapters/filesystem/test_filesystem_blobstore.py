"""FileBlobStore: content addressing, streaming, atomic durable writes, errors."""

from __future__ import annotations

import errno
import hashlib
import io
import os
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from adapters.filesystem import FileBlobStore
from adapters.filesystem import blobstore as module
from hub.errors import NotFound, OutOfResources


class Trickle(io.RawIOBase):
    """A stream that hands out at most ``step`` bytes per read, like a socket."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._pos, self._step = data, 0, step

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        n = self._step if size < 0 else min(size, self._step)
        out = self._data[self._pos : self._pos + n]
        self._pos += len(out)
        return out


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_put_is_content_addressed_and_round_trips(tmp_path: Path) -> None:
    store = FileBlobStore(str(tmp_path))
    data = os.urandom(3 * module.CHUNK + 123)
    ref = store.put(Trickle(data, 70_000), prefix="dicom/ct")
    digest = hashlib.sha256(data).hexdigest()
    assert ref.sha256 == digest and ref.size == len(data)
    assert ref.key == f"dicom/ct/{digest}"
    assert store.exists(ref.key)
    with store.open(ref.key) as f:
        assert f.read() == data
    expected = tmp_path / "objects" / "dicom" / "ct" / digest[:2] / digest[2:4] / digest
    assert expected.is_file()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_same_content_is_stored_once(tmp_path: Path) -> None:
    store = FileBlobStore(str(tmp_path))
    a = store.put(io.BytesIO(b"same"))
    b = store.put(io.BytesIO(b"same"))
    assert a == b and a.key == hashlib.sha256(b"same").hexdigest()
    assert len(files_under(tmp_path / "objects")) == 1
    assert list((tmp_path / "tmp").iterdir()) == []


def test_empty_blob(tmp_path: Path) -> None:
    store = FileBlobStore(str(tmp_path))
    ref = store.put(io.BytesIO(b""))
    assert ref.size == 0
    with store.open(ref.key) as f:
        assert f.read() == b""


def test_missing_and_malformed_keys(tmp_path: Path) -> None:
    store = FileBlobStore(str(tmp_path))
    with pytest.raises(NotFound):
        store.open("0" * 64)
    for bad in ("../../etc/passwd", "x/../" + "0" * 64, "", "/" + "0" * 64, "abc"):
        assert not store.exists(bad)
        with pytest.raises(NotFound):
            store.open(bad)
        store.delete(bad)  # no error, nothing happens


@pytest.mark.parametrize("prefix", ["../up", "a/../b", "sp ace", ".hidden"])
def test_bad_prefix_is_refused(tmp_path: Path, prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        FileBlobStore(str(tmp_path)).put(io.BytesIO(b"x"), prefix=prefix)


def test_delete_is_idempotent(tmp_path: Path) -> None:
    store = FileBlobStore(str(tmp_path))
    ref = store.put(io.BytesIO(b"bye"), prefix="media")
    store.delete(ref.key)
    assert not store.exists(ref.key)
    store.delete(ref.key)
    with pytest.raises(NotFound):
        store.open(ref.key)


def test_disk_full_is_out_of_resources_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileBlobStore(str(tmp_path))

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(module.os, "fsync", full)
    with pytest.raises(OutOfResources) as info:
        store.put(io.BytesIO(b"payload"))
    assert info.value.status == 503 and "full" in info.value.message
    assert files_under(tmp_path) == []


def test_io_error_while_reading_the_source_leaves_no_temp_file(tmp_path: Path) -> None:
    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            raise OSError(errno.EIO, "Input/output error")

    store = FileBlobStore(str(tmp_path))
    with pytest.raises(OutOfResources):
        store.put(Broken())
    assert files_under(tmp_path) == []


def test_registered_as_the_file_blobstore() -> None:
    (ep,) = [e for e in entry_points(group="pixelhub.blobstores") if e.name == "file"]
    assert ep.load() is FileBlobStore
