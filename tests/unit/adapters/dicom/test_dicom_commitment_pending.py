"""The pending Storage Commitment requests (``adapters/dicom/_commitment.py``): recorded before
N-ACTION success (DICOM PS3.4 J.3.2.1), read back at start, removed or kept in ``failed/``."""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Any, cast

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from adapters.dicom._commitment import (
    STORAGE_COMMITMENT_INSTANCE,
    CommitmentError,
    CommitmentRequest,
    PendingCommitments,
    StorageCommitment,
)

CT = "1.2.840.10008.5.1.4.1.1.2"


def request(transaction: str = "1.2.3", *sops: str) -> CommitmentRequest:
    return CommitmentRequest(transaction, [(CT, s) for s in sops or ("1.2.3.4",)], "MOD", "::1")


def test_a_saved_request_reads_back_the_same(tmp_path: Path) -> None:
    store = PendingCommitments(tmp_path / "pending")
    store.prepare()
    saved = request("1.2.3", "1.2.3.4", "1.2.3.5")
    store.save(saved)
    assert saved.key.startswith("1.2.3-") and saved.received
    assert [p.name for p in store.directory.iterdir()] == [f"{saved.key}.json"]
    (loaded,) = store.load()
    assert loaded == saved


def test_done_removes_and_give_up_keeps_in_failed(tmp_path: Path) -> None:
    store = PendingCommitments(tmp_path)
    delivered, undelivered = request("1.1"), request("1.2")
    store.save(delivered)
    store.save(undelivered)
    store.done(delivered)
    kept = store.give_up(undelivered)
    assert kept == tmp_path / "failed" / f"{undelivered.key}.json"
    assert store.load() == []
    assert PendingCommitments(tmp_path / "failed").load() == [undelivered]


def test_unreadable_files_are_moved_aside_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = PendingCommitments(tmp_path)
    good = request("1.9")
    store.save(good)
    full = (tmp_path / f"{good.key}.json").read_bytes()
    (tmp_path / "truncated.json").write_bytes(full[: len(full) // 2])
    (tmp_path / "bad-uid.json").write_bytes(full.replace(b'"1.2.3.4"', b'"1.2.x"'))
    (tmp_path / "not-an-object.json").write_bytes(b"[1, 2]")
    (tmp_path / ".interrupted.tmp").write_bytes(full[:10])  # never acknowledged
    with caplog.at_level(logging.ERROR, "pixelhub.dicom.commitment"):
        assert store.load() == [good]
    assert sorted(p.name for p in (tmp_path / "failed").iterdir()) == [
        "bad-uid.json.corrupt",
        "not-an-object.json.corrupt",
        "truncated.json.corrupt",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["failed", f"{good.key}.json"])
    assert sum("cannot be read" in r.getMessage() for r in caplog.records) == 3


def test_load_is_oldest_first(tmp_path: Path) -> None:
    store = PendingCommitments(tmp_path)
    later, earlier = request("9.9"), request("1.1")
    later.received, earlier.received = (
        "2024-01-02T00:00:00.000+00:00",
        "2024-01-01T00:00:00.000+00:00",
    )
    store.save(later)
    store.save(earlier)
    assert [r.transaction_uid for r in store.load()] == ["1.1", "9.9"]


def test_a_failed_write_leaves_nothing_and_raises(tmp_path: Path) -> None:
    store = PendingCommitments(tmp_path / "missing")
    with pytest.raises(OSError):
        store.save(request())
    assert not (tmp_path / "missing").exists()


def action(transaction: str = "1.2.3") -> Dataset:
    ds = Dataset()
    ds.TransactionUID = transaction
    item = Dataset()
    item.ReferencedSOPClassUID = CT
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    ds.ReferencedSOPSequence = DicomSequence([item])
    return ds


def scp(directory: Path) -> StorageCommitment:
    return StorageCommitment(
        cast(Any, None), ae_title="PIXELHUB", destinations={}, directory=directory
    )


def test_accept_records_before_it_answers(tmp_path: Path) -> None:
    commitment = scp(tmp_path)
    accepted = commitment.accept(
        commitment.check(1, STORAGE_COMMITMENT_INSTANCE, action(), "MOD", None)
    )
    assert (tmp_path / f"{accepted.key}.json").is_file()


@pytest.mark.parametrize(
    ("code", "status"),
    [(errno.ENOSPC, 0x0213), (errno.EDQUOT, 0x0213), (errno.EIO, 0x0110)],
)
def test_accept_refuses_what_it_cannot_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, status: int
) -> None:
    commitment = scp(tmp_path)

    def fail(_: CommitmentRequest) -> None:
        raise OSError(code, "simulated")

    monkeypatch.setattr(commitment.pending, "save", fail)
    with pytest.raises(CommitmentError) as refused:
        commitment.accept(commitment.check(1, STORAGE_COMMITMENT_INSTANCE, action(), "MOD", None))
    assert refused.value.status == status
