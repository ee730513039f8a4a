"""Issue 9, item 3: the Storage Commitment Push Model SCP (DICOM PS3.4 J.3). Instances are sent
with dcmtk's ``/usr/bin/storescu``; a pynetdicom SCU asks for the commitment (N-ACTION) and
receives the N-EVENT-REPORT on the same association or, once it has gone, as a pynetdicom SCP
(the requester's AE, in ``dicom_destinations``) on a new association PixelHub opens. An
acknowledged request is on disk (``<data dir>/dicom/commitments``) until its report is delivered,
so it survives a stop, and a crash of a ``pixelhub serve`` process."""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.events import Event

from adapters.dicom._commitment import STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE
from adapters.dicom._scp import drop_late_pdata
from tests.integration.dicom.dicom_support import (
    AET,
    CT_CLASS,
    PEERS,
    DicomHub,
    free_port,
    make_ct,
    run_tool,
    start_dicom_hub,
)
from tests.integration.dicom.test_dicom_audit import journaled

MR_CLASS = "1.2.840.10008.5.1.4.1.1.4"


class Reports:
    """N-EVENT-REPORTs received (event type, event information)."""

    def __init__(self) -> None:
        self.received: list[tuple[int, Dataset]] = []
        self.arrived = threading.Event()

    def handle(self, event: Event) -> tuple[int, None]:
        self.received.append((int(event.event_type), event.event_information))
        self.arrived.set()
        return 0x0000, None

    def wait(self, timeout: float = 20) -> tuple[int, Dataset]:
        assert self.arrived.wait(timeout), "no N-EVENT-REPORT"
        return self.received[-1]

    def wait_for(self, transaction: str, timeout: float = 30) -> tuple[int, Dataset]:
        """The report of ``transaction`` (others may come first: a report whose answer was
        lost in an abort is sent again on a new association)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [r for r in self.received if r[1].TransactionUID == transaction]
            if found:
                return found[-1]
            time.sleep(0.05)
        raise AssertionError(f"no N-EVENT-REPORT for {transaction}")


@pytest.fixture(scope="module")
def requester_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def archive(
    tmp_path_factory: pytest.TempPathFactory, requester_port: int
) -> Iterator[tuple[DicomHub, list[str]]]:
    workdir = tmp_path_factory.mktemp("commitment")
    hub = start_dicom_hub(
        workdir / "data",
        dicom_allowed_peers=[*PEERS, "MODALITY", "REQUESTER", "GONE"],
        dicom_destinations=[f"REQUESTER=127.0.0.1:{requester_port}"],
    )
    try:
        study, sops = generate_uid(), [generate_uid(), generate_uid()]
        files = []
        for sop in sops:
            path = workdir / f"{sop}.dcm"
            make_ct(sop=sop, study=study).save_as(path, enforce_file_format=True)
            files.append(path)
        sent = hub.storescu(*files)
        assert sent.returncode == 0, sent.stderr
        yield hub, sops
    finally:
        hub.close()


def request(transaction: str, *references: tuple[str, str]) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = transaction
    items = []
    for sop_class, sop in references:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop
        items.append(item)
    ds.ReferencedSOPSequence = DicomSequence(items)
    return ds


def associate(hub: DicomHub | int, aet: str, reports: Reports | None = None) -> Any:
    ae = AE(ae_title=aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(STORAGE_COMMITMENT, ExplicitVRLittleEndian)
    handlers = [(evt.EVT_N_EVENT_REPORT, reports.handle)] if reports else []
    port = hub if isinstance(hub, int) else hub.port
    assoc = ae.associate("127.0.0.1", port, ae_title=AET, evt_handlers=handlers)
    assert assoc.is_established
    drop_late_pdata(assoc.dul)  # a report answered as the test leaves: no error in its thread
    return assoc


def pending(data_dir: Path, transaction: str = "") -> list[Path]:
    """The pending request files (of ``transaction``)."""
    return sorted((data_dir / "dicom" / "commitments").glob(f"{transaction}*.json"))


def failed(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "dicom" / "commitments" / "failed").glob("*"))


def eventually_nothing_pending(data_dir: Path, transaction: str, timeout: float = 10) -> None:
    """The file is removed just after the report is acknowledged: wait for it."""
    deadline = time.monotonic() + timeout
    while pending(data_dir, transaction):
        assert time.monotonic() < deadline, f"{transaction} still pending"
        time.sleep(0.05)


def requester(port: int, reports: Reports) -> Any:
    """The requester's own SCP, taking the N-EVENT-REPORT on a new association (J.3.3)."""
    scp = AE(ae_title="REQUESTER")
    scp.add_supported_context(
        STORAGE_COMMITMENT, ExplicitVRLittleEndian, scu_role=False, scp_role=True
    )
    return scp.start_server(
        ("127.0.0.1", port), block=False,
        evt_handlers=[(evt.EVT_N_EVENT_REPORT, reports.handle)],
    )  # fmt: skip


class Refusals(Reports):
    """A requester that takes no report: each is answered 0x0110 Processing failure."""

    def handle(self, event: Event) -> tuple[int, None]:
        super().handle(event)
        return 0x0110, None


def ask(port: int, aet: str, transaction: str, *sops: str) -> int:
    """N-ACTION from ``aet``, which leaves at once (abort) and refuses a report that comes before
    (0x0110): the N-ACTION's status."""
    assoc = associate(port, aet, Refusals())
    try:
        status, _ = assoc.send_n_action(
            request(transaction, *((CT_CLASS, s) for s in sops)),
            1, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE,
        )  # fmt: skip
        return int(status.Status)
    finally:
        assoc.abort()


def refs(info: Dataset, keyword: str) -> list[tuple[str, str, int | None]]:
    return [
        (i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID, i.get("FailureReason"))
        for i in info.get(keyword) or []
    ]


def test_report_on_the_same_association_with_failures(
    archive: tuple[DicomHub, list[str]],
) -> None:
    hub, (sop_a, sop_b) = archive
    reports = Reports()
    assoc = associate(hub, "MODALITY", reports)
    unknown, transaction = generate_uid(), generate_uid()
    try:
        status, _ = assoc.send_n_action(
            request(
                transaction, (CT_CLASS, sop_a), (CT_CLASS, unknown), (MR_CLASS, sop_b)
            ),
            1, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE,
        )  # fmt: skip
        assert status.Status == 0x0000
        event_type, info = reports.wait()
    finally:
        assoc.release()
    assert event_type == 2
    assert info.TransactionUID == transaction
    assert refs(info, "ReferencedSOPSequence") == [(CT_CLASS, sop_a, None)]
    assert refs(info, "FailedSOPSequence") == [
        (CT_CLASS, unknown, 0x0112),
        (MR_CLASS, sop_b, 0x0119),
    ]
    eventually_nothing_pending(hub.data_dir, transaction)  # delivered: nothing left behind
    assert not failed(hub.data_dir)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        audited = [e for e in journaled(hub, "110104") if e.get("action") == "R"]
        if audited:
            break
        time.sleep(0.05)
    assert audited and audited[-1]["outcome"] == "4"


def test_report_on_a_new_association_when_the_requester_has_gone(
    archive: tuple[DicomHub, list[str]], requester_port: int
) -> None:
    hub, sops = archive
    reports = Reports()
    # the requester accepts PixelHub as SCP of Storage Commitment (PS3.4 J.3.3)
    server = requester(requester_port, reports)
    try:
        # PixelHub answers on the requesting association while it is open: the requester leaves
        # right after the N-ACTION response, and on a loaded machine the report can still win
        # that race; such a run is not this case, so the request is made again (a few times).
        for _ in range(5):
            early = Reports()
            assoc = associate(hub, "REQUESTER", early)
            transaction = generate_uid()
            status, _ = assoc.send_n_action(
                request(transaction, *((CT_CLASS, s) for s in sops)),
                1, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE,
            )  # fmt: skip
            assert status.Status == 0x0000
            assoc.abort()  # gone before the report
            if not early.received:
                break
        event_type, info = reports.wait_for(transaction)
    finally:
        server.shutdown()
    assert event_type == 1
    assert info.TransactionUID == transaction
    assert sorted(refs(info, "ReferencedSOPSequence")) == sorted((CT_CLASS, s, None) for s in sops)
    assert "FailedSOPSequence" not in info
    eventually_nothing_pending(hub.data_dir, transaction)


@pytest.mark.parametrize(
    ("action", "instance", "info", "expected"),
    [
        (2, STORAGE_COMMITMENT_INSTANCE, "good", 0x0123),
        (1, "1.2.3.4", "good", 0x0112),
        (1, STORAGE_COMMITMENT_INSTANCE, "no-transaction", 0x0115),
        (1, STORAGE_COMMITMENT_INSTANCE, "no-references", 0x0115),
        (1, STORAGE_COMMITMENT_INSTANCE, "bad-uid", 0x0115),
    ],
)
def test_bad_requests(
    archive: tuple[DicomHub, list[str]], action: int, instance: str, info: str, expected: int
) -> None:
    hub, (sop_a, _) = archive
    ds = request(generate_uid(), (CT_CLASS, sop_a))
    if info == "no-transaction":
        del ds.TransactionUID
    elif info == "no-references":
        ds.ReferencedSOPSequence = DicomSequence([])
    elif info == "bad-uid":
        bad = DataElement(0x00081155, "UI", "1.2.x", validation_mode=config.IGNORE)
        ds.ReferencedSOPSequence[0].add(bad)
    assoc = associate(hub, "MODALITY")
    try:
        status, _ = assoc.send_n_action(ds, action, STORAGE_COMMITMENT, instance)
        assert status.Status == expected
    finally:
        assoc.release()


def test_an_unreachable_requester_leaves_the_scp_serving(
    archive: tuple[DicomHub, list[str]], tmp_path: Path
) -> None:
    hub, (sop_a, _) = archive
    assoc = associate(hub, "GONE")  # not in dicom_destinations
    status, _ = assoc.send_n_action(
        request(generate_uid(), (CT_CLASS, sop_a)), 1, STORAGE_COMMITMENT,
        STORAGE_COMMITMENT_INSTANCE,
    )  # fmt: skip
    assert status.Status == 0x0000
    assoc.abort()
    hub.assert_still_serving()


def test_a_requester_that_cannot_be_reached_gets_retries_then_an_audited_failure(
    tmp_path: Path,
) -> None:
    down = free_port()  # nothing listens there
    hub = start_dicom_hub(
        tmp_path / "data",
        dicom_allowed_peers=[*PEERS, "DOWN"],
        dicom_destinations=[f"DOWN=127.0.0.1:{down}"],
    )
    try:
        (channel,) = hub.hub.channels
        channel.scp.commitment.retry_delay = 0.05  # type: ignore[attr-defined]
        assoc = associate(hub, "DOWN")
        transaction = generate_uid()
        status, _ = assoc.send_n_action(
            request(transaction, (CT_CLASS, generate_uid())), 1, STORAGE_COMMITMENT,
            STORAGE_COMMITMENT_INSTANCE,
        )  # fmt: skip
        assert status.Status == 0x0000
        assoc.abort()
        deadline = time.monotonic() + 20
        while not (
            audited := [
                e
                for e in journaled(hub, "110104")
                if e.get("action") == "R" and transaction in orjson.dumps(e).decode()
            ]
        ):
            assert time.monotonic() < deadline, "no audit of the undelivered report"
            time.sleep(0.05)
        assert audited[0]["outcome"] == "8"
        # given up: kept for an operator, no longer pending
        assert not pending(hub.data_dir, transaction)
        assert [p.name.startswith(transaction) for p in failed(hub.data_dir)] == [True]
        gc.collect()  # a socket left open by a failed connect would warn here
        hub.assert_still_serving()
    finally:
        hub.close()


def store_ct(port: int, workdir: Path) -> str:
    """C-STORE one CT with ``/usr/bin/storescu``; its SOP Instance UID."""
    ct = make_ct(sop=generate_uid(), study=generate_uid())
    path = workdir / f"{ct.SOPInstanceUID}.dcm"
    ct.save_as(path, enforce_file_format=True)
    sent = run_tool("/usr/bin/storescu", "-aet", "STORESCU", "-aec", AET, "127.0.0.1", str(port),
                    str(path))  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    return str(ct.SOPInstanceUID)


def test_a_request_pending_at_a_stop_is_reported_after_the_restart(tmp_path: Path) -> None:
    data, port = tmp_path / "data", free_port()  # the requester does not listen yet
    settings: dict[str, Any] = {
        "dicom_allowed_peers": [*PEERS, "REQUESTER"],
        "dicom_destinations": [f"REQUESTER=127.0.0.1:{port}"],
    }
    hub = start_dicom_hub(data, **settings)
    try:
        (channel,) = hub.hub.channels
        channel.scp.commitment.retry_delay = 1.0  # type: ignore[attr-defined]
        sop = store_ct(hub.port, tmp_path)
        transaction = generate_uid()
        assert ask(hub.port, "REQUESTER", transaction, sop) == 0x0000
        assert len(pending(data, transaction)) == 1  # on disk before the answer came
    finally:
        stopping = time.monotonic()
        hub.close()
    assert time.monotonic() - stopping < 10
    time.sleep(2.5)  # past the 3 attempts 1 s apart: the stop ended them, nothing was given up
    assert len(pending(data, transaction)) == 1 and not failed(data)

    reports = Reports()
    server = requester(port, reports)
    try:
        hub = start_dicom_hub(data, **settings)  # the same data dir
        try:
            event_type, info = reports.wait(30)
            eventually_nothing_pending(data, transaction)
        finally:
            hub.close()
    finally:
        server.shutdown()
    assert event_type == 1
    assert info.TransactionUID == transaction
    assert refs(info, "ReferencedSOPSequence") == [(CT_CLASS, sop, None)]
    assert not failed(data)


def serve(data: Path, requester_port: int) -> tuple[subprocess.Popen[bytes], int]:
    """``pixelhub serve`` (its own process) with the DICOM channel; it and its DICOM port."""
    (data / "ports.json").unlink(missing_ok=True)
    env = {
        **os.environ,
        "PIXELHUB_DATA_DIR": str(data),
        "PIXELHUB_HTTP_PORT": "0",
        "PIXELHUB_DICOM_PORT": "0",
        "PIXELHUB_CHANNELS": "dicom",
        "PIXELHUB_DICOM_ALLOWED_PEERS": "STORESCU,REQUESTER",
        "PIXELHUB_DICOM_DESTINATIONS": f"REQUESTER=127.0.0.1:{requester_port}",
        "PIXELHUB_AUTH_TOKENS": "t0k3n-for-the-test",
    }
    data.mkdir(exist_ok=True)
    with open(data.parent / "serve.log", "ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "hub", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 60
    while not (data / "ports.json").exists():
        assert server.poll() is None, (data.parent / "serve.log").read_text()
        assert time.monotonic() < deadline, "pixelhub serve did not start"
        time.sleep(0.1)
    return server, int(json.loads((data / "ports.json").read_text())["dicom"])


def test_a_crash_of_pixelhub_serve_loses_no_acknowledged_request(tmp_path: Path) -> None:
    data, port = tmp_path / "data", free_port()  # the requester does not listen yet
    server, dicom_port = serve(data, port)
    try:
        sop = store_ct(dicom_port, tmp_path)
        transaction = generate_uid()
        assert ask(dicom_port, "REQUESTER", transaction, sop) == 0x0000
    finally:
        server.send_signal(signal.SIGKILL)  # a crash, while the report is undelivered
        server.wait(30)
    assert len(pending(data, transaction)) == 1

    reports = Reports()
    listening = requester(port, reports)
    server, _ = serve(data, port)
    try:
        event_type, info = reports.wait(30)
        eventually_nothing_pending(data, transaction)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        listening.shutdown()
    assert (event_type, info.TransactionUID) == (1, transaction)
    assert refs(info, "ReferencedSOPSequence") == [(CT_CLASS, sop, None)]


def test_a_corrupt_pending_file_is_moved_aside_and_the_hub_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    directory = data / "dicom" / "commitments"
    directory.mkdir(parents=True)
    (directory / "1.2.3-cut.json").write_bytes(b'{"transaction_uid": "1.2.3", "refer')
    with caplog.at_level(logging.ERROR, "pixelhub.dicom.commitment"):
        hub = start_dicom_hub(data)
    try:
        assert [p.name for p in failed(data)] == ["1.2.3-cut.json.corrupt"]
        assert not pending(data)
        assert any("1.2.3-cut.json cannot be read" in r.getMessage() for r in caplog.records)
        hub.assert_still_serving()
    finally:
        hub.close()


def test_a_request_that_cannot_be_recorded_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    hub = start_dicom_hub(data, dicom_allowed_peers=[*PEERS, "MODALITY"])
    try:
        sop = store_ct(hub.port, tmp_path)
        directory = data / "dicom" / "commitments"
        shutil.rmtree(directory)
        directory.write_text("not a directory")  # every write under it fails (ENOTDIR)
        # nothing can be promised: 0x0110 Processing failure (PS3.7 C.5), not success
        assert ask(hub.port, "MODALITY", generate_uid(), sop) == 0x0110
        hub.assert_still_serving()
    finally:
        hub.close()
