"""Issue 9, item 2: the C-MOVE and C-GET SCP (DICOM PS3.4 C.4.2, C.4.3) on the DIMSE port, driven
by dcmtk's ``/usr/bin/movescu`` and ``/usr/bin/getscu``, with dcmtk's ``/usr/bin/storescp`` (``+B``:
files written exactly as received) as the move destination, Orthanc moving from PixelHub to
itself, and pynetdicom as the SCU for C-CANCEL and crafted identifiers. Destinations that refuse,
vanish or go silent are small pynetdicom storage SCPs in their own processes (``PEER`` below)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pynetdicom.association
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import CTImageStorage

from adapters.dicom._part10 import read_file_meta
from adapters.dicom._retrieve import (
    PATIENT_ROOT_GET,
    PATIENT_ROOT_MOVE,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
)
from hub.blobs import open_blob_store
from tests.e2e.support import assert_valid_r4
from tests.integration.dicom.conftest import Orthanc, stop_process
from tests.integration.dicom.dicom_support import (
    AET,
    DCMTK_ENV,
    PEERS,
    DicomHub,
    free_port,
    make_ct,
    start_dicom_hub,
)
from tests.integration.dicom.test_dicom_audit import journal

RETRIEVE_PEERS = [*PEERS, "MOVESCU", "GETSCU"]

# A pynetdicom storage SCP in its own process: ``port delay die_after stall_first``. It sleeps
# ``delay`` s per C-STORE, exits the process (no response) on C-STORE number ``die_after + 1``,
# and leaves the first C-STORE unanswered for ``stall_first`` s.
PEER = """
import os, sys, time, threading
from pynetdicom import AE, AllStoragePresentationContexts, evt
port, delay, die_after, stall = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
count = [0]
lock = threading.Lock()
def store(event):
    with lock:
        count[0] += 1
        n = count[0]
    if die_after and n > die_after:
        os._exit(3)
    if stall and n == 1:
        time.sleep(stall)
    time.sleep(delay)
    return 0
ae = AE(ae_title="PEER")
ae.supported_contexts = AllStoragePresentationContexts
ae.start_server(("127.0.0.1", port), block=True, evt_handlers=[(evt.EVT_C_STORE, store)])
"""


@dataclass
class World:
    hub: DicomHub
    workdir: Path
    received: Path  # storescp's output directory
    ports: dict[str, int]  # destination AE title -> port
    studies: dict[str, str]  # name -> Study Instance UID
    series: dict[str, str]
    sops: dict[str, list[str]]  # study name -> SOP Instance UIDs


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"peer on {port} exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def storescp(port: int, out: Path, *extra: str, compressed: bool = True) -> subprocess.Popen[bytes]:
    """dcmtk's storescp; ``compressed`` False: it accepts the uncompressed syntaxes only."""
    accept = ["+xa"] if compressed else []
    process = subprocess.Popen(
        ["/usr/bin/storescp", "-aet", "DEST", "-od", str(out), "+B", *accept, *extra, str(port)],
        env=DCMTK_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    _wait_port(port, process)
    return process


def peer(port: int, *, delay: float = 0, die_after: int = 0, stall: float = 0) -> Any:
    process = subprocess.Popen(
        [sys.executable, "-c", PEER, str(port), str(delay), str(die_after), str(stall)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    _wait_port(port, process)
    return process


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, orthanc: Orthanc) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("retrieve")
    received = workdir / "received"
    received.mkdir()
    names = ("DEST", "REFUSER", "GONE", "DYING", "SLOW", "STALL", "MOVESCU")
    ports = {name: free_port() for name in names}
    destinations = [f"{name}=127.0.0.1:{port}" for name, port in ports.items()]
    destinations.append(f"ORTHANC=127.0.0.1:{orthanc.dicom_port}")
    dest = storescp(ports["DEST"], received)
    refuser = storescp(ports["REFUSER"], received, "--refuse")
    hub = start_dicom_hub(
        workdir / "data", dicom_allowed_peers=RETRIEVE_PEERS, dicom_destinations=destinations,
        dicom_suboperation_timeout=1.5, dicom_pending_interval=0,
    )  # fmt: skip
    studies, series, sops = {}, {}, {}
    files = []
    # PAT-R1: S1 (series A: 2 instances, B: 1), S2 (1); PAT-R2: S3 (1)
    for study, patient, layout in (
        ("S1", "PAT-R1", (2, 1)),
        ("S2", "PAT-R1", (1,)),
        ("S3", "PAT-R2", (1,)),
    ):
        studies[study] = generate_uid()
        sops[study] = []
        for index, count in enumerate(layout):
            series_uid = series[f"{study}{'AB'[index]}"] = generate_uid()
            for n in range(count):
                sop = generate_uid()
                sops[study].append(sop)
                ds = make_ct(sop=sop, study=studies[study], series=series_uid, patient_id=patient)
                ds.InstanceNumber = n + 1
                path = workdir / f"{sop}.dcm"
                ds.save_as(path, enforce_file_format=True)
                files.append(path)
    try:
        sent = hub.storescu(*files)
        assert sent.returncode == 0, sent.stderr
        yield World(hub, workdir, received, ports, studies, series, sops)
    finally:
        hub.close()
        stop_process(dest)
        stop_process(refuser)


# ------------------------------------------------------------------ dcmtk helpers


@dataclass
class Retrieved:
    returncode: int
    log: str

    def _final(self) -> str:
        blocks = self.log.split("INCOMING DIMSE MESSAGE")
        assert len(blocks) > 1, self.log[-3000:]
        return blocks[-1]

    @property
    def status(self) -> str:
        found = re.search(r"DIMSE Status\s*:\s*(0x[0-9a-f]{4})", self._final())
        assert found, self.log[-3000:]
        return found.group(1)

    def count(self, what: str) -> int:
        found = re.search(rf"{what} Suboperations\s*:\s*(\d+)", self._final())
        return int(found.group(1)) if found else -1

    @property
    def pending(self) -> int:
        return self.log.count("0xff00")


def movescu(
    world: World, *keys: str, root: str = "-S", dest: str = "DEST", aet: str = "MOVESCU"
) -> Retrieved:
    args = [item for key in keys for item in ("-k", key)]
    run = subprocess.run(
        ["/usr/bin/movescu", "-d", root, "-aet", aet, "-aec", AET, "-aem", dest, *args,
         "127.0.0.1", str(world.hub.port)],
        capture_output=True, timeout=120, env=DCMTK_ENV, check=False,
    )  # fmt: skip
    return Retrieved(run.returncode, (run.stdout + run.stderr).decode("utf-8", "replace"))


def getscu(world: World, out: Path, *keys: str, root: str = "-S") -> Retrieved:
    out.mkdir(parents=True, exist_ok=True)
    args = [item for key in keys for item in ("-k", key)]
    run = subprocess.run(
        ["/usr/bin/getscu", "-d", root, "-aet", "GETSCU", "-aec", AET, "-od", str(out), "+B",
         *args, "127.0.0.1", str(world.hub.port)],
        capture_output=True, timeout=120, env=DCMTK_ENV, check=False,
    )  # fmt: skip
    return Retrieved(run.returncode, (run.stdout + run.stderr).decode("utf-8", "replace"))


def data_set(raw: bytes) -> bytes:
    """The data set of a Part 10 file: what follows its file meta."""
    import io

    offset, _meta = read_file_meta(io.BytesIO(raw))
    return raw[offset:]


def assert_received(world: World, folder: Path, sops: list[str], *, prefix: str = "CT.") -> None:
    """Each instance arrived with the data set bytes PixelHub stored (and nothing else)."""
    for sop in sops:
        path = folder / f"{prefix}{sop}"
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        record = world.hub.store.get(sop)
        assert data_set(path.read_bytes()) == data_set(world.hub.blob(record.blob_key)), sop


# ------------------------------------------------------------------ C-MOVE to storescp


def test_pending_responses_are_paced(world: World) -> None:
    """With a pending interval, one pending response follows the first sub-operation and no
    other comes before the interval has passed (PS3.4 C.4.2.3.1: pending responses are
    optional); the final response still carries every count."""
    retrieve = world.hub.hub.channels[0].scp.retrieve  # type: ignore[attr-defined]
    retrieve.pending_interval = 3600
    try:
        moved = movescu(
            world, "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={world.studies['S1']}"
        )
    finally:
        retrieve.pending_interval = 0
    assert moved.status == "0x0000", moved.log[-3000:]
    assert moved.pending == 1
    assert "Remaining Suboperations       : 2" in moved.log
    assert (moved.count("Completed"), moved.count("Failed"), moved.count("Warning")) == (3, 0, 0)
    assert_received(world, world.received, world.sops["S1"])


def test_move_study_series_and_image_levels_study_root(world: World) -> None:
    s1 = world.sops["S1"]
    moved = movescu(world, "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={world.studies['S1']}")
    assert moved.status == "0x0000", moved.log[-3000:]
    assert (moved.count("Completed"), moved.count("Failed"), moved.count("Warning")) == (3, 0, 0)
    assert moved.pending == 2  # interval 0: a pending after each sub-operation but the last
    assert "Remaining Suboperations       : 2" in moved.log
    assert_received(world, world.received, s1)

    moved = movescu(
        world, "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={world.studies['S1']}",
        f"SeriesInstanceUID={world.series['S1B']}",
    )  # fmt: skip
    assert moved.status == "0x0000" and moved.count("Completed") == 1, moved.log[-3000:]
    assert_received(world, world.received, [s1[2]])

    moved = movescu(
        world, "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={world.studies['S1']}",
        f"SeriesInstanceUID={world.series['S1A']}", f"SOPInstanceUID={s1[0]}\\{s1[1]}",
    )  # fmt: skip
    assert moved.status == "0x0000" and moved.count("Completed") == 2, moved.log[-3000:]
    assert_received(world, world.received, s1[:2])


def test_move_patient_root(world: World) -> None:
    moved = movescu(world, "QueryRetrieveLevel=PATIENT", "PatientID=PAT-R1", root="-P")
    assert moved.status == "0x0000", moved.log[-3000:]
    assert moved.count("Completed") == 4
    assert_received(world, world.received, world.sops["S1"] + world.sops["S2"])
    moved = movescu(
        world, "QueryRetrieveLevel=STUDY", "PatientID=PAT-R2",
        f"StudyInstanceUID={world.studies['S3']}", root="-P",
    )  # fmt: skip
    assert moved.status == "0x0000" and moved.count("Completed") == 1, moved.log[-3000:]
    # a unique key above the level narrows: PAT-R2 has no S1
    moved = movescu(
        world, "QueryRetrieveLevel=STUDY", "PatientID=PAT-R2",
        f"StudyInstanceUID={world.studies['S1']}", root="-P",
    )  # fmt: skip
    assert moved.status == "0x0000" and moved.count("Completed") == 0, moved.log[-3000:]


# ------------------------------------------------------------------ C-GET


def test_get_study_series_image_and_patient_root(world: World, tmp_path: Path) -> None:
    got = getscu(world, tmp_path / "a", "QueryRetrieveLevel=STUDY",
                 f"StudyInstanceUID={world.studies['S1']}")  # fmt: skip
    assert got.status == "0x0000", got.log[-3000:]
    assert got.count("Completed") == 3 and got.count("Failed") == 0
    assert_received(world, tmp_path / "a", world.sops["S1"], prefix="")
    assert len(list((tmp_path / "a").iterdir())) == 3

    got = getscu(
        world, tmp_path / "b", "QueryRetrieveLevel=SERIES",
        f"StudyInstanceUID={world.studies['S1']}", f"SeriesInstanceUID={world.series['S1A']}",
    )  # fmt: skip
    assert got.status == "0x0000" and got.count("Completed") == 2, got.log[-3000:]
    assert_received(world, tmp_path / "b", world.sops["S1"][:2], prefix="")

    sop = world.sops["S3"][0]
    got = getscu(
        world, tmp_path / "c", "QueryRetrieveLevel=IMAGE", "PatientID=PAT-R2",
        f"StudyInstanceUID={world.studies['S3']}", f"SeriesInstanceUID={world.series['S3A']}",
        f"SOPInstanceUID={sop}", root="-P",
    )  # fmt: skip
    assert got.status == "0x0000" and got.count("Completed") == 1, got.log[-3000:]
    assert_received(world, tmp_path / "c", [sop], prefix="")

    got = getscu(world, tmp_path / "d", "QueryRetrieveLevel=PATIENT", "PatientID=PAT-R1", root="-P")
    assert got.status == "0x0000" and got.count("Completed") == 4, got.log[-3000:]


def test_stored_syntax_to_destinations_converted_for_get_requesters(
    dicom_hub_factory: Callable[..., DicomHub], world: World, tmp_path: Path
) -> None:
    """A JPEG Baseline instance goes as stored to a storescp that accepts JPEG and,
    decompressed into the uncompressed syntax they accepted, to one that does not and to
    getscu (which proposes no compressed syntax); an instance whose JPEG stream cannot be
    decoded fails there."""
    plain_port, plain_out = free_port(), tmp_path / "plain"
    plain_out.mkdir()
    plain = storescp(plain_port, plain_out, compressed=False)
    hub = dicom_hub_factory(
        dicom_allowed_peers=RETRIEVE_PEERS,
        dicom_destinations=[
            f"DEST=127.0.0.1:{world.ports['DEST']}",
            f"PLAIN=127.0.0.1:{plain_port}",
        ],
    )
    study, ct, sc = generate_uid(), generate_uid(), generate_uid()
    make_ct(sop=ct, study=study).save_as(tmp_path / "ct.dcm", enforce_file_format=True)
    jpeg = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    jpeg.StudyInstanceUID, jpeg.SOPInstanceUID = study, sc
    jpeg.file_meta.MediaStorageSOPInstanceUID = sc
    jpeg.save_as(tmp_path / "sc.dcm", enforce_file_format=True)
    damaged = pydicom.dcmread(tmp_path / "sc.dcm")  # its JPEG stream is noise: cannot decode
    bad = damaged.SOPInstanceUID = damaged.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    damaged.PixelData = encapsulate([b"\xff\xd8" + bytes(range(256)) * 4 + b"\xff\xd9"])
    damaged.save_as(tmp_path / "bad.dcm", enforce_file_format=True)
    for name in ("ct.dcm", "sc.dcm", "bad.dcm"):
        assert hub.dcmsend(tmp_path / name).returncode == 0
    assert hub.store.get(sc).transfer_syntax_uid == "1.2.840.10008.1.2.4.50"
    mixed = World(hub, tmp_path, world.received, world.ports, {}, {}, {})
    moved = movescu(mixed, "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study}")
    assert moved.status == "0x0000" and moved.count("Completed") == 3, moved.log[-3000:]
    assert_received(mixed, world.received, [ct])
    assert_received(mixed, world.received, [sc, bad], prefix="SC.")
    got = getscu(mixed, tmp_path / "got", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study}")
    assert got.status == "0xb000", got.log[-3000:]
    assert (got.count("Completed"), got.count("Failed")) == (2, 1), got.log[-3000:]
    assert sorted(p.name for p in (tmp_path / "got").iterdir()) == sorted([ct, sc])
    try:
        to_plain = movescu(
            mixed, "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study}", dest="PLAIN"
        )
    finally:
        stop_process(plain)
    assert to_plain.status == "0xb000", to_plain.log[-3000:]
    assert (to_plain.count("Completed"), to_plain.count("Failed")) == (2, 1)
    for converted in (
        pydicom.dcmread(tmp_path / "got" / sc),
        pydicom.dcmread(plain_out / f"SC.{sc}"),
    ):
        assert not converted.file_meta.TransferSyntaxUID.is_compressed
        assert converted.SOPInstanceUID == sc  # a lossless change of syntax keeps it (PS3.5 8.2)
        assert (converted.pixel_array == jpeg.pixel_array).all()


def test_the_requester_as_its_own_destination(world: World, tmp_path: Path) -> None:
    """movescu receiving its own move (``--port``), the usual way a workstation retrieves."""
    out = tmp_path / "own"
    out.mkdir()
    run = subprocess.run(
        ["/usr/bin/movescu", "-S", "-aet", "MOVESCU", "-aec", AET, "-aem", "MOVESCU",
         "--port", str(world.ports["MOVESCU"]), "-od", str(out), "-k", "QueryRetrieveLevel=STUDY",
         "-k", f"StudyInstanceUID={world.studies['S3']}", "127.0.0.1", str(world.hub.port)],
        capture_output=True, timeout=120, env=DCMTK_ENV, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert_received(world, out, world.sops["S3"])


# ------------------------------------------------------------------ Orthanc


def test_orthanc_moves_a_study_from_pixelhub_to_itself(world: World, orthanc: Orthanc) -> None:
    orthanc.add_modality("pixelhub-retrieve", AET, world.hub.port)
    study = world.studies["S1"]
    with orthanc.client() as c:
        r = c.post(
            "/modalities/pixelhub-retrieve/move",
            json={"Level": "Study", "Resources": [{"StudyInstanceUID": study}],
                  "TargetAet": "ORTHANC", "Synchronous": True},
        )  # fmt: skip
        assert r.status_code == 200, r.text
        found = c.post("/tools/find", json={"Level": "Instance", "Query": {"StudyInstanceUID": study},
                                            "Expand": True}).json()  # fmt: skip
    got = {i["MainDicomTags"]["SOPInstanceUID"]: i["ID"] for i in found}
    assert set(got) == set(world.sops["S1"])
    with orthanc.client() as c:
        for sop, orthanc_id in got.items():
            stored = world.hub.blob(world.hub.store.get(sop).blob_key)
            assert data_set(c.get(f"/instances/{orthanc_id}/file").content) == data_set(stored)


# ------------------------------------------------------------------ destinations that fail


def test_unknown_destination_and_unknown_caller(world: World) -> None:
    stranger = movescu(
        world, "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={world.studies['S2']}",
        aet="STRANGER",
    )  # fmt: skip
    assert stranger.returncode != 0 and "Association Rejected" in stranger.log
    moved = movescu(
        world, "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={world.studies['S2']}", dest="NOWHERE"
    )
    assert moved.status == "0xa801", moved.log[-3000:]


def test_destination_refusing_or_unreachable(world: World) -> None:
    for dest in ("REFUSER", "GONE"):
        moved = movescu(
            world, "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={world.studies['S1']}", dest=dest
        )
        assert moved.status == "0xa702", moved.log[-3000:]
        assert (moved.count("Completed"), moved.count("Failed")) == (0, 3)
        assert "Failed SOP Instance UID List" in moved.log or "(0008,0058)" in moved.log


def test_destination_vanishing_mid_move(world: World) -> None:
    process = peer(world.ports["DYING"], die_after=2)
    try:
        started = time.monotonic()
        moved = movescu(
            world, "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={world.studies['S1']}",
            dest="DYING",
        )  # fmt: skip
        assert time.monotonic() - started < 15
    finally:
        process.kill()
        process.wait()
    assert moved.status == "0xb000", moved.log[-3000:]
    assert (moved.count("Completed"), moved.count("Failed")) == (2, 1)
    # sent in SOP Instance UID order: the last one failed (the Failed SOP Instance UID List)
    assert sorted(world.sops["S1"])[2] in moved.log
    # the hub serves the next association
    again = movescu(world, "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={world.studies['S2']}")
    assert again.status == "0x0000" and again.count("Completed") == 1
    world.hub.assert_still_serving()


def test_a_silent_sub_operation_is_aborted_and_retried(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """The guard against a C-STORE response that never comes (pynetdicom 3.0's sender race shows
    this way): the first C-STORE is left unanswered; after 1.5 s the association is aborted,
    reopened and the instance sent again."""
    process = peer(world.ports["STALL"], stall=20)
    try:
        started = time.monotonic()
        moved = movescu(
            world, "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={world.studies['S1']}",
            dest="STALL",
        )  # fmt: skip
        elapsed = time.monotonic() - started
    finally:
        process.kill()
        process.wait()
    assert moved.status == "0x0000", moved.log[-3000:]
    assert moved.count("Completed") == 3
    assert 1.5 < elapsed < 10
    assert any("no C-STORE response" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ pynetdicom as the SCU


def _associate(world: World, *contexts: str, syntax: str = ExplicitVRLittleEndian) -> Any:
    ae = AE(ae_title="PYSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for context in contexts or (STUDY_ROOT_MOVE, PATIENT_ROOT_MOVE, STUDY_ROOT_GET):
        ae.add_requested_context(context, [syntax])
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    assoc = ae.associate(
        "127.0.0.1",
        world.hub.port,
        ae_title=AET,
        ext_neg=[build_role(CTImageStorage, scp_role=True)],
    )
    assert assoc.is_established
    return assoc


def test_cancel_stops_the_sub_operations(world: World) -> None:
    process = peer(world.ports["SLOW"], delay=0.4)
    assoc = _associate(world)
    try:
        query = Dataset()
        query.QueryRetrieveLevel = "PATIENT"
        query.PatientID = "PAT-R1"
        responses = assoc.send_c_move(query, "SLOW", PATIENT_ROOT_MOVE, msg_id=21)
        statuses = []
        for status, _identifier in responses:
            statuses.append(status)
            if len(statuses) == 1:
                context = assoc._get_valid_context(PATIENT_ROOT_MOVE, "", "scu")
                assoc.send_c_cancel(21, context.context_id)
    finally:
        assoc.release()
        process.kill()
        process.wait()
    assert statuses[0].Status == 0xFF00
    final = statuses[-1]
    assert final.Status == 0xFE00
    assert final.NumberOfRemainingSuboperations >= 1
    assert final.NumberOfCompletedSuboperations + final.NumberOfRemainingSuboperations == 4


def _get_scu(world: World, store: Callable[[Any], int]) -> Any:
    """A C-GET SCU taking CT images with ``store`` (SCP role for CT Image Storage)."""
    ae = AE(ae_title="PYSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for model in (PATIENT_ROOT_GET, STUDY_ROOT_GET):
        ae.add_requested_context(model, [ExplicitVRLittleEndian])
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    assoc = ae.associate(
        "127.0.0.1", world.hub.port, ae_title=AET,
        ext_neg=[build_role(CTImageStorage, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, store)],
    )  # fmt: skip
    assert assoc.is_established
    return assoc


def test_cancel_stops_a_get(world: World) -> None:
    """C-GET sub-operations come back to the SCU, whose C-STORE handler is slow here."""
    received: list[str] = []

    def store(event: Any) -> int:
        received.append(str(event.request.AffectedSOPInstanceUID))
        time.sleep(0.3)
        return 0x0000

    assoc = _get_scu(world, store)
    try:
        query = _query(QueryRetrieveLevel="PATIENT", PatientID="PAT-R1")
        statuses = []
        for status, _identifier in assoc.send_c_get(query, PATIENT_ROOT_GET, msg_id=31):
            statuses.append(status)
            if len(statuses) == 1:
                context = assoc._get_valid_context(PATIENT_ROOT_GET, "", "scu")
                assoc.send_c_cancel(31, context.context_id)
    finally:
        assoc.release()
    assert statuses[0].Status == 0xFF00
    final = statuses[-1]
    assert final.Status == 0xFE00 and final.NumberOfRemainingSuboperations >= 1
    assert final.NumberOfCompletedSuboperations == len(received) < 4


def _move(world: World, query: Dataset, model: str = STUDY_ROOT_MOVE) -> list[Any]:
    assoc = _associate(world)
    try:
        return [s for s, _i in assoc.send_c_move(query, "DEST", model)]
    finally:
        assoc.release()


def _query(**keys: str) -> Dataset:
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def test_bad_identifiers(world: World) -> None:
    study = world.studies["S1"]
    cases = [
        (_query(StudyInstanceUID=study), 0xA900, "No Query/Retrieve Level"),
        (_query(QueryRetrieveLevel="FRAME", StudyInstanceUID=study), 0xA900, "FRAME"),
        (_query(QueryRetrieveLevel="STUDY"), 0xA900, "No StudyInstanceUID"),
        (_query(QueryRetrieveLevel="STUDY", StudyInstanceUID=""), 0xA900, "No StudyInstanceUID"),
        (_query(QueryRetrieveLevel="SERIES", StudyInstanceUID=study), 0xA900, "SeriesInstanceUID"),
        (
            _query(QueryRetrieveLevel="STUDY", StudyInstanceUID=study, PatientName="Doe^Jane"),
            0xA900,
            "PatientName is not a unique key",
        ),
        (
            _query(QueryRetrieveLevel="STUDY", StudyInstanceUID=study, SOPInstanceUID="1.2.3"),
            0xA900,
            "below the STUDY level",
        ),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns while the test builds the bad UID
        cases.append(
            (_query(QueryRetrieveLevel="STUDY", StudyInstanceUID="1.2.abc"), 0xC000, "1.2.a")
        )
    for query, status, text in cases:
        (final,) = _move(world, query)
        assert final.Status == status, (query, final)
        assert text in final.ErrorComment, (query, final.ErrorComment)
    # the PATIENT level is not in the Study Root model; wildcards are not unique keys
    (final,) = _move(world, _query(QueryRetrieveLevel="PATIENT", PatientID="PAT-R1"))
    assert final.Status == 0xA900
    query = _query(QueryRetrieveLevel="PATIENT", PatientID="PAT-*")
    (final,) = _move(world, query, PATIENT_ROOT_MOVE)
    assert final.Status == 0xA900 and "Wildcards" in final.ErrorComment
    # C-GET answers the same way
    assoc = _associate(world, PATIENT_ROOT_GET, STUDY_ROOT_GET)
    try:
        (final,) = [
            s for s, _i in assoc.send_c_get(_query(QueryRetrieveLevel="IMAGE"), STUDY_ROOT_GET)
        ]
    finally:
        assoc.release()
    assert final.Status == 0xA900 and "No SOPInstanceUID" in final.ErrorComment
    world.hub.assert_still_serving()


def test_malformed_identifier_bytes(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = b"\x08\x00\x52\x00\x00\x00\xff\xffSTUDY "  # (0008,0052), length 0xFFFF0000
    monkeypatch.setattr(pynetdicom.association, "encode", lambda *_args, **_kw: broken)
    assoc = _associate(world, STUDY_ROOT_MOVE, syntax=ImplicitVRLittleEndian)
    try:
        responses = [s for s, _i in assoc.send_c_move(_query(QueryRetrieveLevel="STUDY"), "DEST",
                                                       STUDY_ROOT_MOVE)]  # fmt: skip
    finally:
        assoc.release()
    monkeypatch.undo()
    (final,) = responses
    assert final.Status == 0xC000 and "Cannot decode identifier" in final.ErrorComment
    world.hub.assert_still_serving()


# ------------------------------------------------------------------ cap, audit


def test_more_instances_than_the_cap(
    dicom_hub_factory: Callable[..., DicomHub], world: World, tmp_path: Path
) -> None:
    hub = dicom_hub_factory(
        dicom_allowed_peers=RETRIEVE_PEERS, dicom_max_retrieve_instances=2,
        dicom_destinations=[f"DEST=127.0.0.1:{world.ports['DEST']}"],
    )  # fmt: skip
    study = generate_uid()
    files = []
    for n in range(3):
        path = tmp_path / f"{n}.dcm"
        make_ct(sop=generate_uid(), study=study).save_as(path, enforce_file_format=True)
        files.append(path)
    assert hub.storescu(*files).returncode == 0
    capped = World(hub, tmp_path, world.received, world.ports, {}, {}, {})
    moved = movescu(capped, "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study}")
    assert moved.status == "0xa702", moved.log[-3000:]
    assert "More than 2 instances" in moved.log
    got = getscu(capped, tmp_path / "got", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study}")
    assert got.status == "0xa702", got.log[-3000:]
    assert not list((tmp_path / "got").iterdir())


def test_an_unreadable_stored_instance_fails_its_sub_operation_only(
    dicom_hub_factory: Callable[..., DicomHub], world: World, tmp_path: Path
) -> None:
    hub = dicom_hub_factory(
        dicom_allowed_peers=RETRIEVE_PEERS,
        dicom_destinations=[f"DEST=127.0.0.1:{world.ports['DEST']}"],
    )
    study, sops, files = generate_uid(), [], []
    for n in range(3):
        sops.append(generate_uid())
        path = tmp_path / f"{n}.dcm"
        make_ct(sop=sops[-1], study=study).save_as(path, enforce_file_format=True)
        files.append(path)
    assert hub.storescu(*files).returncode == 0
    lost = sorted(sops)[1]
    open_blob_store(hub.data_dir).delete(hub.store.get(lost).blob_key)
    broken = World(hub, tmp_path, world.received, world.ports, {}, {}, {})
    moved = movescu(broken, "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study}")
    assert moved.status == "0xb000", moved.log[-3000:]
    assert (moved.count("Completed"), moved.count("Failed")) == (2, 1) and lost in moved.log
    got = getscu(broken, tmp_path / "got", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study}")
    assert got.count("Completed") == 2 and got.count("Failed") == 1, got.log[-3000:]
    # the final response's Failed SOP Instance UID List, as pynetdicom's SCU decodes it
    assoc = _get_scu(broken, lambda _event: 0x0000)
    try:
        query = _query(QueryRetrieveLevel="STUDY", StudyInstanceUID=study)
        *_, (final, identifier) = assoc.send_c_get(query, STUDY_ROOT_GET)
    finally:
        assoc.release()
    assert final.Status == 0xB000 and final.NumberOfFailedSuboperations == 1
    assert identifier.FailedSOPInstanceUIDList == lost
    assert sorted(p.name for p in (tmp_path / "got").iterdir()) == sorted(set(sops) - {lost})


def test_a_move_longer_than_the_network_timeout(
    dicom_hub_factory: Callable[..., DicomHub], world: World, tmp_path: Path
) -> None:
    """The requester sends nothing while its move runs: that is no idle association."""
    hub = dicom_hub_factory(
        dicom_allowed_peers=RETRIEVE_PEERS, dicom_network_timeout=1,
        dicom_destinations=[f"SLOW=127.0.0.1:{world.ports['SLOW']}"],
    )  # fmt: skip
    study = generate_uid()
    files = []
    for n in range(4):
        path = tmp_path / f"{n}.dcm"
        make_ct(sop=generate_uid(), study=study).save_as(path, enforce_file_format=True)
        files.append(path)
    assert hub.storescu(*files).returncode == 0
    process = peer(world.ports["SLOW"], delay=0.5)
    try:
        slow = World(hub, tmp_path, world.received, world.ports, {}, {}, {})
        moved = movescu(slow, "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study}", dest="SLOW")
    finally:
        process.kill()
        process.wait()
    assert moved.status == "0x0000" and moved.count("Completed") == 4, moved.log[-3000:]
    assert moved.returncode == 0 and "Association Release Failed" not in moved.log


def test_each_retrieve_is_audited(world: World) -> None:
    before = len([e for e in journal(world.hub, "110104", 0) if e["action"] == "R"])
    moved = movescu(world, "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={world.studies['S2']}")
    assert moved.status == "0x0000"
    unknown = movescu(
        world, "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={world.studies['S2']}", dest="NOWHERE"
    )
    assert unknown.status == "0xa801"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        events = [e for e in journal(world.hub, "110104", 0) if e["action"] == "R"][before:]
        if len(events) >= 2:
            break
        time.sleep(0.05)
    good, refused = events[-2:]
    assert good["outcome"] == "0"
    assert good["agent"][0]["who"]["identifier"] == {"system": "urn:dicom:ae", "value": "MOVESCU"}
    assert "1 instance(s) sent to DEST, 0 failed" in good["outcomeDesc"]
    studies = [e for e in good["entity"] if e["role"]["code"] == "3"]
    assert studies[0]["what"]["identifier"]["value"] == f"urn:oid:{world.studies['S2']}"
    assert studies[0]["description"] == "1 instance(s) sent, 0 failed"
    patients = [e for e in good["entity"] if e["role"]["code"] == "1"]
    assert patients and patients[0]["what"]["identifier"]["value"] == "PAT-R1"
    assert refused["outcome"] == "4" and "0xA801" in refused["outcomeDesc"]
    for event in (good, refused):
        assert_valid_r4(event)
