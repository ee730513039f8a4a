"""Issue 4: ``pixelhub serve`` receiving DICOM in more than one process (``dicom_processes``):
every process serves associations on the one port, their instances make one study, their
audit events go into the hub's one hash chain, every process answers C-FIND, C-GET, C-MOVE and
storage commitment, a receiving process that dies is replaced, and SIGTERM stops them all."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, build_role, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import CTImageStorage

from adapters.dicom._commitment import STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE
from adapters.dicom._find import STUDY_ROOT_FIND
from adapters.dicom._retrieve import STUDY_ROOT_GET, STUDY_ROOT_MOVE
from hub.cli import main as cli_main
from tests.e2e.test_serve import TOKEN, running_hub
from tests.integration.dicom.dicom_support import CT_CLASS, free_port, make_ct
from tests.support.processes import children

DCM = "http://dicom.nema.org/resources/ontology/DCM"


def _receivers(parent: int) -> list[int]:
    """The DICOM receiving processes started by ``parent``."""
    return [c.pid for c in children(parent) if c.name.startswith("pixelhub-dicom")]


def _connections_to(port: int) -> set[int]:
    """Socket inodes of the established TCP connections whose local port is ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "01":
                found.add(int(cols[9]))
    return found


def _sockets_of(pid: int) -> set[int]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(int(target[8:-1]))
    return found


def _study_uid() -> str:
    return f"1.2.826.0.1.3680043.8.498.{time.time_ns() // 1000}"  # room for ".n.i" after it


def _reference(sop: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = CT_CLASS
    item.ReferencedSOPInstanceUID = sop
    return item


def _associate(port: int, count: int) -> list[Association]:
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(CT_CLASS, ExplicitVRLittleEndian)
    assocs = [ae.associate("127.0.0.1", port, ae_title="PIXELHUB") for _ in range(count)]
    assert all(a.is_established for a in assocs)
    return assocs


def _wait(what: str, check: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout} s")
        time.sleep(0.1)


@pytest.fixture
def two_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXELHUB_DICOM_PROCESSES", "2")
    monkeypatch.setenv("PIXELHUB_DICOM_ALLOWED_PEERS", "PYSCU")
    monkeypatch.setenv("PIXELHUB_CHANNELS", "dicom")


@pytest.mark.usefixtures("two_processes")
def test_every_process_serves_associations_into_one_study_and_one_audit_chain(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    study = _study_uid()
    with running_hub(data) as (proc, url):
        port = int(json.loads((data / "ports.json").read_text())["dicom"])
        [worker] = _receivers(proc.pid)
        assocs = _associate(port, 6)
        _wait("6 connections", lambda: len(_connections_to(port)) == 6)
        connections = _connections_to(port)
        served = {pid: len(_sockets_of(pid) & connections) for pid in (proc.pid, worker)}
        assert served == {proc.pid: 3, worker: 3}, served  # taken in turns
        for n, assoc in enumerate(assocs):
            for i in range(4):
                sop = f"{study}.{n}.{i + 1}"
                answer = assoc.send_c_store(make_ct(sop=sop, study=study))
                assert answer.Status == 0x0000, answer
            assoc.release()
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            found: dict[str, object] = {}

            def aggregated() -> bool:
                nonlocal found
                found = client.get(
                    "/fhir/ImagingStudy", params={"identifier": f"urn:dicom:uid|urn:oid:{study}"}
                ).json()
                entries = found.get("entry") or []
                return bool(entries) and entries[0]["resource"]["numberOfInstances"] == 24

            _wait(f"the study with 24 instances ({found})", aggregated)

            def audited() -> bool:
                events = client.get("/fhir/AuditEvent", params={"type": f"{DCM}|110104"}).json()
                return events.get("total") == 6

            _wait("one 'instances transferred' event per association", audited)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    _wait("the receiving process to end with the hub", lambda: not Path(f"/proc/{worker}").exists())
    verified = CliRunner().invoke(cli_main, ["audit", "verify", "--data-dir", str(data)])
    assert verified.exit_code == 0, verified.output


def test_every_process_answers_find_get_move_and_commitment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two associations, one per process, each asks C-FIND, C-GET, C-MOVE and storage
    commitment (its report on the same association) for a study stored on a third: the
    receiving process reads the store its own connection opened."""
    monkeypatch.setenv("PIXELHUB_DICOM_PROCESSES", "2")
    monkeypatch.setenv("PIXELHUB_DICOM_ALLOWED_PEERS", "PYSCU")
    monkeypatch.setenv("PIXELHUB_CHANNELS", "dicom")
    dest_port = free_port()
    monkeypatch.setenv("PIXELHUB_DICOM_DESTINATIONS", f"DEST=127.0.0.1:{dest_port}")
    moved: list[str] = []

    def keep(into: list[str]) -> object:
        def store(event: object) -> int:
            into.append(str(event.request.AffectedSOPInstanceUID))  # type: ignore[attr-defined]
            return 0x0000

        return store

    dest = AE(ae_title="DEST")
    dest.add_supported_context(CTImageStorage, ExplicitVRLittleEndian)
    server = dest.start_server(
        ("127.0.0.1", dest_port), block=False, evt_handlers=[(evt.EVT_C_STORE, keep(moved))]
    )
    data = tmp_path / "data"
    study = _study_uid()
    sops = [f"{study}.1.{i}" for i in range(1, 4)]
    try:
        with running_hub(data) as (proc, _url):
            port = int(json.loads((data / "ports.json").read_text())["dicom"])
            [worker] = _receivers(proc.pid)
            [storer] = _associate(port, 1)
            for sop in sops:
                assert storer.send_c_store(make_ct(sop=sop, study=study)).Status == 0x0000
            storer.release()
            _wait("no connection", lambda: not _connections_to(port))
            got: list[str] = []
            reports: list[tuple[int, list[str]]] = []

            def reported(event: object) -> tuple[int, None]:
                info = event.event_information  # type: ignore[attr-defined]
                refs = [str(i.ReferencedSOPInstanceUID) for i in info.ReferencedSOPSequence]
                reports.append((int(event.event_type), refs))  # type: ignore[attr-defined]
                return 0x0000, None

            ae = AE(ae_title="PYSCU")
            ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
            for model in (STUDY_ROOT_FIND, STUDY_ROOT_GET, STUDY_ROOT_MOVE, STORAGE_COMMITMENT):
                ae.add_requested_context(model, ExplicitVRLittleEndian)
            ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
            assocs: list[Association] = []

            def one_on_each() -> bool:  # once the receiving process has started (it is quiet)
                assocs[:] = [
                    ae.associate(
                        "127.0.0.1", port, ae_title="PIXELHUB",
                        ext_neg=[build_role(CTImageStorage, scp_role=True)],
                        evt_handlers=[(evt.EVT_C_STORE, keep(got)),
                                      (evt.EVT_N_EVENT_REPORT, reported)],
                    )
                    for _ in range(2)
                ]  # fmt: skip
                assert all(a.is_established for a in assocs)
                _wait("2 connections", lambda: len(_connections_to(port)) == 2)
                if len(_sockets_of(worker) & _connections_to(port)) == 1:
                    return True
                for assoc in assocs:
                    assoc.release()
                _wait("no connection", lambda: not _connections_to(port))
                return False

            _wait("one association on each process", one_on_each)
            query = Dataset()
            query.QueryRetrieveLevel = "STUDY"
            query.StudyInstanceUID = study
            for assoc in assocs:
                find = Dataset()
                find.QueryRetrieveLevel = "STUDY"
                find.StudyInstanceUID = study
                find.NumberOfStudyRelatedInstances = ""
                answers = list(assoc.send_c_find(find, STUDY_ROOT_FIND))
                matches = [i for s, i in answers if s.Status == 0xFF00]
                assert answers[-1][0].Status == 0x0000 and len(matches) == 1, answers
                assert int(matches[0].NumberOfStudyRelatedInstances) == 3
                final = list(assoc.send_c_get(query, STUDY_ROOT_GET))[-1][0]
                assert final.Status == 0x0000 and final.NumberOfCompletedSuboperations == 3
                final = list(assoc.send_c_move(query, "DEST", STUDY_ROOT_MOVE))[-1][0]
                assert final.Status == 0x0000 and final.NumberOfCompletedSuboperations == 3
                commit = Dataset()
                commit.TransactionUID = f"{study}.9{len(reports)}"
                commit.ReferencedSOPSequence = [_reference(sop) for sop in sops]
                status, _ = assoc.send_n_action(
                    commit, 1, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE
                )
                assert status.Status == 0x0000
                count = len(reports)
                _wait("the commitment report", lambda n=count: len(reports) > n)
                assert reports[-1] == (1, sops), "every instance committed"
                assoc.release()
            assert sorted(got) == sorted(moved) == sorted(sops * 2)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
    finally:
        server.shutdown()


@pytest.mark.usefixtures("two_processes")
def test_a_receiving_process_that_dies_is_replaced(tmp_path: Path) -> None:
    data = tmp_path / "data"
    study = _study_uid()
    with running_hub(data) as (proc, _url):
        port = int(json.loads((data / "ports.json").read_text())["dicom"])
        [worker] = _receivers(proc.pid)
        os.kill(worker, signal.SIGKILL)
        _wait("a new receiving process", lambda: _receivers(proc.pid) not in ([], [worker]))
        [replacement] = _receivers(proc.pid)

        def replacement_serves() -> bool:  # once it has started (it announces nothing)
            pair = _associate(port, 2)
            _wait("2 connections", lambda: len(_connections_to(port)) == 2)
            served = len(_sockets_of(replacement) & _connections_to(port))
            for assoc in pair:
                assoc.release()
            _wait("no connection", lambda: not _connections_to(port))
            return served == 1

        _wait("the new process to take its turn", replacement_serves)
        assocs = _associate(port, 4)
        _wait("4 connections", lambda: len(_connections_to(port)) == 4)
        assert len(_sockets_of(replacement) & _connections_to(port)) == 2
        for n, assoc in enumerate(assocs):
            answer = assoc.send_c_store(make_ct(sop=f"{study}.{n + 1}", study=study))
            assert answer.Status == 0x0000, answer
            assoc.release()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        out = proc.stdout.read() if proc.stdout else ""
    assert "DICOM receiving process 1 ended (exit code -9); starting it again" in out
