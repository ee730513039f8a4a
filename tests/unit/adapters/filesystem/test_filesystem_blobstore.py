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
    expected = tmp_path / "objects" / "dicom" / f"ct.{digest}"  # the last segment names the file
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


def test_a_failed_fsync_after_the_rename_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileBlobStore(str(tmp_path))
    kept = store.put(io.BytesIO(b"first"), prefix="dicom/st/se/sop1")  # directories known

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(module.os, "fsync", failing)
    with pytest.raises(OutOfResources):
        store.put(io.BytesIO(b"second"), prefix="dicom/st/se/sop2")
    expected = tmp_path / "objects" / "dicom" / "st" / "se" / f"sop1.{kept.sha256}"
    assert files_under(tmp_path) == [expected]


def test_a_partial_file_left_under_the_name_is_replaced_not_trusted(tmp_path: Path) -> None:
    store = FileBlobStore(str(tmp_path))
    data = b"complete content"
    digest = hashlib.sha256(data).hexdigest()
    path = tmp_path / "objects" / "dicom" / "st" / "se" / f"sop.{digest}"
    path.parent.mkdir(parents=True)
    path.write_bytes(data[:5])  # a crash between rename and fsync
    ref = store.put(io.BytesIO(data), prefix="dicom/st/se/sop")
    assert ref.key == f"dicom/st/se/sop/{digest}" and path.read_bytes() == data
    assert store.put(io.BytesIO(data), prefix="dicom/st/se/sop") == ref  # now trusted
    assert list((tmp_path / "tmp").iterdir()) == []


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


def test_unprefixed_blobs_fan_out_and_legacy_prefixed_blobs_are_still_found(
    tmp_path: Path,
) -> None:
    store = FileBlobStore(str(tmp_path))
    ref = store.put(io.BytesIO(b"plain"))
    assert (tmp_path / "objects" / ref.key[:2] / ref.key[2:4] / ref.key).is_file()
    digest = hashlib.sha256(b"old").hexdigest()
    old = tmp_path / "objects" / "dicom" / "1.2" / "1.2.3" / digest[:2] / digest[2:4] / digest
    old.parent.mkdir(parents=True)
    old.write_bytes(b"old")
    key = f"dicom/1.2/1.2.3/{digest}"
    assert store.exists(key)
    with store.open(key) as f:
        assert f.read() == b"old"
    assert store.put(io.BytesIO(b"old"), prefix="dicom/1.2/1.2.3").key == key
    assert not (tmp_path / "objects" / "dicom" / "1.2" / f"1.2.3.{digest}").exists()
    store.delete(key)
    assert not old.exists() and not store.exists(key)


def test_directories_are_made_durable_once_then_each_put_syncs_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real = module._fsync_dir
    monkeypatch.setattr(module, "_fsync_dir", lambda path: (synced.append(path), real(path)))
    store = FileBlobStore(str(tmp_path))
    objects = str(tmp_path / "objects")
    store.put(io.BytesIO(b"a"), prefix="dicom/st/se/sop1")
    series = os.path.join(objects, "dicom", "st", "se")
    # new directories se, st, dicom: their entries (in st, dicom, objects), then the rename in se
    assert synced == [os.path.join(objects, "dicom", "st"), os.path.join(objects, "dicom"), objects,
                      series]  # fmt: skip
    synced.clear()
    store.put(io.BytesIO(b"b"), prefix="dicom/st/se/sop2")
    assert synced == [series]


def test_concurrent_puts_into_one_directory_share_its_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    store = FileBlobStore(str(tmp_path))
    store.put(io.BytesIO(b"first"), prefix="dicom/st/se/sop0")  # directories exist and are known
    calls: list[str] = []

    def slow(path: str) -> None:
        calls.append(path)
        time.sleep(0.05)

    monkeypatch.setattr(module, "_fsync_dir", slow)
    threads = [
        threading.Thread(target=store.put, args=(io.BytesIO(b"x%d" % i),),
                         kwargs={"prefix": f"dicom/st/se/sop{i + 1}"})
        for i in range(8)
    ]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= len(calls) < 8  # one running fsync covers the renames made before it started
    assert len(list((tmp_path / "objects" / "dicom" / "st" / "se").iterdir())) == 9


def test_a_directory_removed_behind_the_stores_back_is_made_again(tmp_path: Path) -> None:
    import shutil

    store = FileBlobStore(str(tmp_path))
    store.put(io.BytesIO(b"one"), prefix="dicom/st/se/sop1")
    shutil.rmtree(tmp_path / "objects" / "dicom")
    ref = store.put(io.BytesIO(b"two"), prefix="dicom/st/se/sop2")
    with store.open(ref.key) as f:
        assert f.read() == b"two"
