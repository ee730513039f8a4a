"""Issue 9, item 1: the C-FIND SCP (DICOM PS3.4 C.4.1, C.6) on the DIMSE port, queried with the
real dcmtk ``/usr/bin/findscu`` (``-S`` Study Root, ``-P`` Patient Root), after studies were sent
with dcmtk ``storescu``. Responses are extracted to files (``-X``) and read back with pydicom;
statuses are read from findscu's debug log (the DIMSE command dump)."""

from __future__ import annotations

import base64
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pynetdicom.association
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE

import adapters.dicom._find
from adapters.dicom._find import PATIENT_ROOT_FIND, STUDY_ROOT_FIND
from hub.ports import DicomInstanceRecord
from tests.e2e.support import assert_valid_r4
from tests.integration.dicom.conftest import Orthanc
from tests.integration.dicom.dicom_support import (
    AET,
    DCMTK_ENV,
    PEERS,
    DicomHub,
    make_ct,
    start_dicom_hub,
)
from tests.integration.dicom.test_dicom_audit import journal, journaled

MR_CLASS = "1.2.840.10008.5.1.4.1.1.4"
FIND_PEERS = [*PEERS, "FINDSCU"]


@dataclass(frozen=True)
class Spec:
    patient: str
    name: str
    date: str
    accession: str
    modality: str
    series: int
    description: str = "Head"
    charset: str | None = None


@dataclass
class Archive:
    hub: DicomHub | Any
    workdir: Path
    studies: dict[str, str]  # accession -> Study Instance UID
    series: dict[str, list[str]]  # accession -> Series Instance UIDs
    sops: dict[str, list[str]]  # accession -> SOP Instance UIDs


STUDIES = [
    Spec("PAT-A", "Doe^Jane", "20200115", "ACC-A1", "CT", 2, "CT Head"),
    Spec("PAT-A", "Doe^Jane", "20210610", "ACC-A2", "MR", 1, "MR Knee"),
    Spec("PAT-B", "Müller^Jörg", "20201231", "ACC-B1", "MR", 1, "MR Spine", "ISO_IR 192"),
    Spec("PAT-C", "Smith^Bob", "20190301", "ACC-C1", "CT", 1, "CT Chest"),
]


def make_files(workdir: Path) -> tuple[Archive, list[Path]]:
    studies: dict[str, str] = {}
    series: dict[str, list[str]] = {}
    sops: dict[str, list[str]] = {}
    files = []
    for spec in STUDIES:
        study = generate_uid()
        studies[spec.accession] = study
        series[spec.accession] = []
        sops[spec.accession] = []
        for number in range(1, spec.series + 1):
            series_uid = generate_uid()
            series[spec.accession].append(series_uid)
            # the first series of a two-series study holds two CT instances, the second one MR
            for instance in range(1, (3 if number == 1 and spec.series == 2 else 2)):
                sop = generate_uid()
                sops[spec.accession].append(sop)
                ds = make_ct(
                    sop=sop,
                    study=study,
                    series=series_uid,
                    patient_id=spec.patient,
                    name=spec.name,
                    charset=spec.charset,
                )
                if spec.modality == "MR" or number == 2:
                    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MR_CLASS
                    ds.Modality = "MR"
                ds.StudyDate = spec.date
                ds.AccessionNumber = spec.accession
                ds.StudyDescription = spec.description
                ds.StudyID = spec.accession[-2:]
                ds.ReferringPhysicianName = "House^Gregory"
                ds.SeriesNumber = number
                ds.SeriesDescription = f"series {number}"
                ds.InstanceNumber = instance
                path = workdir / f"{sop}.dcm"
                ds.save_as(path, enforce_file_format=True)
                files.append(path)
    return Archive(None, workdir, studies, series, sops), files


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    workdir = tmp_path_factory.mktemp("find")
    found, files = make_files(workdir)
    hub = start_dicom_hub(workdir / "data", dicom_allowed_peers=FIND_PEERS)
    try:
        sent = hub.storescu(*files)
        assert sent.returncode == 0, sent.stderr
        assert hub.store.count() == len(files) == 6
        found.hub = hub
        yield found
    finally:
        hub.close()


@dataclass
class Found:
    returncode: int
    log: str
    answers: list[Dataset]

    @property
    def status(self) -> str:
        """The final response's status as findscu's debug dump prints it (``0x0000``...)."""
        statuses = [
            line.split(":", 2)[2].strip().split(":")[0].lower()
            for line in self.log.splitlines()
            if line.startswith("D: DIMSE Status")
        ]
        assert statuses, self.log[-3000:]
        return statuses[-1]


def findscu(
    hub: DicomHub,
    workdir: Path,
    *keys: str,
    root: str = "-S",
    aet: str = "FINDSCU",
    extra: tuple[str, ...] = (),
    query_file: Path | None = None,
) -> Found:
    out = workdir / f"rsp-{generate_uid()}"
    out.mkdir()
    args = [item for key in keys for item in ("-k", key)]
    command = [
        "/usr/bin/findscu", "-d", root, "-X", "-od", str(out), *extra, "-aet", aet, "-aec", AET,
        *args, "127.0.0.1", str(hub.port), *([str(query_file)] if query_file else []),
    ]  # fmt: skip
    # run_tool, but the log may hold Latin-1 bytes: decoded leniently
    run = subprocess.run(command, capture_output=True, timeout=120, env=DCMTK_ENV, check=False)
    log = (run.stdout + run.stderr).decode("utf-8", "replace")
    answers = [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]
    return Found(run.returncode, log, answers)


def values(found: Found, keyword: str) -> list[Any]:
    return [str(a.get(keyword, "")) for a in found.answers]


# ------------------------------------------------------------------ Study Root, STUDY level


def test_study_level_exact_match_returns_the_required_keys(archive: Archive) -> None:
    found = findscu(
        archive.hub, archive.workdir,
        "QueryRetrieveLevel=STUDY", "AccessionNumber=ACC-A1", "StudyInstanceUID", "PatientID",
        "PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
        "StudyDescription", "ModalitiesInStudy", "ReferringPhysicianName",
        "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "SeriesDescription",
    )  # fmt: skip
    assert found.returncode == 0 and found.status == "0x0000", found.log[-2000:]
    (answer,) = found.answers
    assert answer.QueryRetrieveLevel == "STUDY"
    assert answer.RetrieveAETitle == AET
    assert answer.SpecificCharacterSet == "ISO_IR 100"
    assert answer.StudyInstanceUID == archive.studies["ACC-A1"]
    assert answer.AccessionNumber == "ACC-A1"
    assert (answer.PatientID, str(answer.PatientName)) == ("PAT-A", "Doe^Jane")
    assert (answer.PatientBirthDate, answer.PatientSex) == ("19700101", "F")
    assert (answer.StudyDate, answer.StudyTime, answer.StudyID) == ("20200115", "101500", "A1")
    assert answer.StudyDescription == "CT Head"
    assert list(answer.ModalitiesInStudy) == ["CT", "MR"]
    assert str(answer.ReferringPhysicianName) == "House^Gregory"
    assert int(answer.NumberOfStudyRelatedSeries) == 2
    assert int(answer.NumberOfStudyRelatedInstances) == 3
    # a key below the query level is returned empty, not matched
    assert "SeriesDescription" in answer and answer.SeriesDescription in ("", None)


def test_study_level_universal_returns_every_study(archive: Archive) -> None:
    found = findscu(archive.hub, archive.workdir, "QueryRetrieveLevel=STUDY", "StudyInstanceUID")
    assert found.status == "0x0000"
    assert sorted(values(found, "StudyInstanceUID")) == sorted(archive.studies.values())


def test_study_level_wildcards(archive: Archive) -> None:
    found = findscu(
        archive.hub, archive.workdir, "QueryRetrieveLevel=STUDY", "AccessionNumber=ACC-A?",
        "StudyInstanceUID",
    )  # fmt: skip
    assert sorted(values(found, "AccessionNumber")) == ["ACC-A1", "ACC-A2"]
    # case-sensitive on LO: lower case finds nothing
    found = findscu(
        archive.hub, archive.workdir, "QueryRetrieveLevel=STUDY", "StudyDescription=ct*"
    )
    assert found.status == "0x0000" and found.answers == []
    found = findscu(
        archive.hub, archive.workdir, "QueryRetrieveLevel=STUDY", "StudyDescription=*Head"
    )
    assert values(found, "StudyDescription") == ["CT Head"]
    # PN: case-insensitive (PS3.4 C.2.2.2.1 allows it for PN; chosen here)
    found = findscu(
        archive.hub, archive.workdir, "QueryRetrieveLevel=STUDY", "PatientName=doe*",
        "AccessionNumber",
    )  # fmt: skip
    assert sorted(values(found, "AccessionNumber")) == ["ACC-A1", "ACC-A2"]


def test_study_level_date_ranges(archive: Archive) -> None:
    def accessions(date: str) -> list[str]:
        found = findscu(
            archive.hub, archive.workdir, "QueryRetrieveLevel=STUDY", f"StudyDate={date}",
            "AccessionNumber",
        )  # fmt: skip
        assert found.status == "0x0000", found.log[-2000:]
        return sorted(values(found, "AccessionNumber"))

    assert accessions("20200101-20201231") == ["ACC-A1", "ACC-B1"]
    assert accessions("20201231-") == ["ACC-A2", "ACC-B1"]
    assert accessions("-20200115") == ["ACC-A1", "ACC-C1"]
    assert accessions("20190301") == ["ACC-C1"]
    assert accessions("20220101-") == []

    def times(time_range: str) -> int:
        found = findscu(
            archive.hub, archive.workdir, "QueryRetrieveLevel=STUDY", f"StudyTime={time_range}"
        )
        assert found.status == "0x0000", found.log[-2000:]
        return len(found.answers)

    # every study was made at 10:15:00
    assert times("1000-1100") == times("10-") == times("-1015") == times("101500") == 4
    assert times("1016-") == times("-1014") == times("0900-1000") == 0


def test_study_level_uid_list_and_modalities(archive: Archive) -> None:
    wanted = [archive.studies["ACC-A2"], archive.studies["ACC-C1"], "1.2.3.999"]
    found = findscu(
        archive.hub, archive.workdir, "QueryRetrieveLevel=STUDY",
        "StudyInstanceUID=" + "\\".join(wanted), "AccessionNumber",
    )  # fmt: skip
    assert sorted(values(found, "AccessionNumber")) == ["ACC-A2", "ACC-C1"]
    found = findscu(
        archive.hub, archive.workdir, "QueryRetrieveLevel=STUDY", "ModalitiesInStudy=MR",
        "AccessionNumber", "NumberOfStudyRelatedInstances",
    )  # fmt: skip
    by_accession = {a.AccessionNumber: int(a.NumberOfStudyRelatedInstances) for a in found.answers}
    # ACC-A1 has an MR series besides its CT one; its count covers all three instances
    assert by_accession == {"ACC-A1": 3, "ACC-A2": 1, "ACC-B1": 1}


def test_specific_character_set_in_and_out(archive: Archive) -> None:
    found = findscu(
        archive.hub, archive.workdir, "QueryRetrieveLevel=STUDY", "SpecificCharacterSet=ISO_IR 192",
        "PatientName=Müller*", "PatientID",
    )  # fmt: skip
    (answer,) = found.answers
    assert answer.SpecificCharacterSet == "ISO_IR 192"
    assert str(answer.PatientName) == "Müller^Jörg" and answer.PatientID == "PAT-B"
    # the same name asked in Latin-1 (ISO_IR 100, a query file) is decoded before matching
    query = Dataset()
    query.SpecificCharacterSet = "ISO_IR 100"
    query.QueryRetrieveLevel = "STUDY"
    query.PatientName = "MÜLLER^JÖRG"
    query.PatientID = ""
    path = archive.workdir / "latin1-query.dcm"
    query.save_as(path, implicit_vr=False, little_endian=True)
    assert "MÜLLER".encode("latin-1") in path.read_bytes()
    found = findscu(archive.hub, archive.workdir, query_file=path)
    assert values(found, "PatientID") == ["PAT-B"], found.log[-2000:]


# ------------------------------------------------------------------ SERIES and IMAGE levels


def test_series_level(archive: Archive) -> None:
    found = findscu(
        archive.hub, archive.workdir, "QueryRetrieveLevel=SERIES",
        f"StudyInstanceUID={archive.studies['ACC-A1']}", "SeriesInstanceUID", "Modality",
        "SeriesNumber", "SeriesDescription", "NumberOfSeriesRelatedInstances",
    )  # fmt: skip
    assert found.status == "0x0000"
    rows = sorted(
        (
            int(a.SeriesNumber),
            a.Modality,
            a.SeriesDescription,
            int(a.NumberOfSeriesRelatedInstances),
        )
        for a in found.answers
    )
    assert rows == [(1, "CT", "series 1", 2), (2, "MR", "series 2", 1)]
    assert sorted(values(found, "SeriesInstanceUID")) == sorted(archive.series["ACC-A1"])
    assert all(a.QueryRetrieveLevel == "SERIES" for a in found.answers)
    # Modality matching across studies
    found = findscu(
        archive.hub, archive.workdir, "QueryRetrieveLevel=SERIES", "Modality=MR",
        "StudyInstanceUID",
    )  # fmt: skip
    assert sorted(values(found, "StudyInstanceUID")) == sorted(
        archive.studies[a] for a in ("ACC-A1", "ACC-A2", "ACC-B1")
    )


def test_image_level(archive: Archive) -> None:
    series = archive.series["ACC-A1"][0]
    found = findscu(
        archive.hub, archive.workdir, "QueryRetrieveLevel=IMAGE",
        f"StudyInstanceUID={archive.studies['ACC-A1']}", f"SeriesInstanceUID={series}",
        "SOPInstanceUID", "SOPClassUID", "InstanceNumber",
    )  # fmt: skip
    assert found.status == "0x0000"
    assert sorted(values(found, "SOPInstanceUID")) == sorted(archive.sops["ACC-A1"][:2])
    assert {a.SOPClassUID for a in found.answers} == {"1.2.840.10008.5.1.4.1.1.2"}
    assert sorted(int(a.InstanceNumber) for a in found.answers) == [1, 2]
    one = archive.sops["ACC-C1"][0]
    found = findscu(
        archive.hub, archive.workdir, "QueryRetrieveLevel=IMAGE", f"SOPInstanceUID={one}",
        "PatientID",
    )  # fmt: skip
    assert values(found, "PatientID") == ["PAT-C"]


# ------------------------------------------------------------------ Patient Root


def test_patient_root(archive: Archive) -> None:
    found = findscu(
        archive.hub, archive.workdir, "QueryRetrieveLevel=PATIENT", "PatientID", "PatientName",
        "PatientBirthDate", "PatientSex", "NumberOfPatientRelatedStudies", root="-P",
    )  # fmt: skip
    assert found.status == "0x0000", found.log[-2000:]
    rows = {a.PatientID: int(a.NumberOfPatientRelatedStudies) for a in found.answers}
    assert rows == {"PAT-A": 2, "PAT-B": 1, "PAT-C": 1}
    found = findscu(
        archive.hub, archive.workdir, "QueryRetrieveLevel=PATIENT", "PatientName=S*",
        "PatientID", root="-P",
    )  # fmt: skip
    assert values(found, "PatientID") == ["PAT-C"]
    found = findscu(
        archive.hub, archive.workdir, "QueryRetrieveLevel=STUDY", "PatientID=PAT-A",
        "StudyDate", root="-P",
    )  # fmt: skip
    assert sorted(values(found, "StudyDate")) == ["20200115", "20210610"]


# ------------------------------------------------------------------ refusals and bad input


def test_unknown_calling_ae_is_refused(archive: Archive) -> None:
    found = findscu(
        archive.hub, archive.workdir, "QueryRetrieveLevel=STUDY", "StudyInstanceUID",
        aet="INTRUDER",
    )  # fmt: skip
    assert found.returncode != 0
    assert "Calling AE Title Not Recognized" in found.log
    assert found.answers == []


def test_unsupported_levels_fail(archive: Archive) -> None:
    for root, level in (("-S", "PATIENT"), ("-S", "FRAME"), ("-P", "WORKLIST")):
        found = findscu(archive.hub, archive.workdir, f"QueryRetrieveLevel={level}", root=root)
        assert found.status == "0xa900", (level, found.log[-2000:])
        assert found.answers == []
    found = findscu(archive.hub, archive.workdir, "PatientID=PAT-A")  # no level at all
    assert found.status == "0xa900" and found.answers == []


def test_bad_key_values_fail(archive: Archive) -> None:
    for key in ("StudyDate=2020-01-01", "StudyDate=yesterday", "StudyInstanceUID=1.2.abc"):
        found = findscu(archive.hub, archive.workdir, "QueryRetrieveLevel=STUDY", key)
        assert found.status == "0xc000", (key, found.log[-2000:])
        assert "Invalid" in found.log
    archive.hub.assert_still_serving()


def _associate(hub: DicomHub, *, syntax: str = ExplicitVRLittleEndian) -> Any:
    ae = AE(ae_title="PYSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(STUDY_ROOT_FIND, [syntax])
    ae.add_requested_context(PATIENT_ROOT_FIND, [syntax])
    assoc = ae.associate("127.0.0.1", hub.port, ae_title=AET)
    assert assoc.is_established
    return assoc


def test_a_malformed_identifier_fails_and_the_scp_keeps_serving(
    archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes that are not a data set (an element whose length runs past the end) -> 0xC000.
    pynetdicom's SCU is made to send them by replacing its identifier encoder."""
    broken = b"\x08\x00\x52\x00\x00\x00\xff\xffSTUDY "  # (0008,0052), length 0xFFFF0000
    monkeypatch.setattr(pynetdicom.association, "encode", lambda *_args, **_kw: broken)
    assoc = _associate(archive.hub, syntax=ImplicitVRLittleEndian)
    try:
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        responses = list(assoc.send_c_find(query, STUDY_ROOT_FIND))
    finally:
        assoc.release()
    monkeypatch.undo()
    ((status, identifier),) = responses
    assert status.Status == 0xC000 and identifier is None
    assert "Cannot decode identifier" in status.ErrorComment
    archive.hub.assert_still_serving()


# ------------------------------------------------------------------ cancel, cap, audit


def _fill(hub: DicomHub, study: str, count: int) -> None:
    """``count`` index rows of one study, written to the instance store directly (a C-FIND
    reads only the index; there is no need for the bytes)."""
    series = generate_uid()
    for n in range(count):
        sop = f"{study[:50]}.{n + 1}"
        hub.store.store(
            DicomInstanceRecord(
                sop_instance_uid=sop,
                study_instance_uid=study,
                series_instance_uid=series,
                sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                transfer_syntax_uid=ExplicitVRLittleEndian,
                blob_key=f"none/{sop}",
                sha256=f"{n:064d}",
                size=1,
                summary={
                    "sop_instance_uid": sop,
                    "study_instance_uid": study,
                    "series_instance_uid": series,
                    "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
                    "patient_id": "BULK",
                    "modality": "CT",
                    "instance_number": n + 1,
                },
            )
        )


@pytest.fixture
def bulk_hub(
    dicom_hub_factory: Callable[..., DicomHub],
) -> DicomHub:
    return dicom_hub_factory(dicom_allowed_peers=FIND_PEERS, dicom_max_find_results=1000)


def _slow_pages(hub: DicomHub, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small, slow pages of matches, so the SCP is still answering when the requester acts
    (otherwise hundreds of small responses fit in the socket buffers before it reads one)."""
    store = hub.store
    find = store.find

    def slow_find(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.02)
        return find(*args, **kwargs)

    monkeypatch.setattr(adapters.dicom._find, "PAGE", 5)
    monkeypatch.setattr(store, "find", slow_find)


def test_cancel_stops_the_answers(
    bulk_hub: DicomHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = generate_uid()
    _fill(bulk_hub, study, 300)
    _slow_pages(bulk_hub, monkeypatch)
    # dcmtk findscu --cancel 3: C-CANCEL after the third pending response
    found = findscu(
        bulk_hub, tmp_path, "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={study}",
        "SOPInstanceUID", extra=("--cancel", "3"),
    )  # fmt: skip
    assert found.status == "0xfe00", found.log[-3000:]
    assert 3 <= len(found.answers) < 300
    # pynetdicom as the SCU: send_c_cancel after the first pending response
    assoc = _associate(bulk_hub)
    try:
        query = Dataset()
        query.QueryRetrieveLevel = "IMAGE"
        query.StudyInstanceUID = study
        query.SOPInstanceUID = ""
        responses = assoc.send_c_find(query, STUDY_ROOT_FIND, msg_id=11)
        statuses = []
        for status, _identifier in responses:
            statuses.append(status.Status)
            if len(statuses) == 1:
                context = assoc._get_valid_context(STUDY_ROOT_FIND, "", "scu")
                assoc.send_c_cancel(11, context.context_id)
        assert statuses[0] == 0xFF00 and statuses[-1] == 0xFE00
        assert len(statuses) < 301
    finally:
        assoc.release()


def test_a_requester_vanishing_mid_answer(
    bulk_hub: DicomHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SCU aborts after the first pending response: the SCP stops answering, audits the
    query as ended by the association (with the matches sent), and keeps serving others."""
    study = generate_uid()
    _fill(bulk_hub, study, 200)
    _slow_pages(bulk_hub, monkeypatch)
    assoc = _associate(bulk_hub)
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = study
    query.SOPInstanceUID = ""
    for status, _identifier in assoc.send_c_find(query, STUDY_ROOT_FIND):
        assert status.Status == 0xFF00
        assoc.abort()
        break
    deadline = time.monotonic() + 10
    while not (ended := [e for e in journaled(bulk_hub, "110112") if e["outcome"] == "8"]):
        assert time.monotonic() < deadline, [
            (e["outcome"], e.get("outcomeDesc"), e["entity"][0].get("description"))
            for e in journaled(bulk_hub, "110112")
        ]
        time.sleep(0.05)
    (event,) = ended
    assert "association ended" in event["outcomeDesc"]
    sent = int(event["outcomeDesc"].split(" match")[0])
    assert 1 <= sent < 200
    monkeypatch.undo()
    bulk_hub.assert_still_serving()
    assoc = _associate(bulk_hub)
    try:
        answers = [s.Status for s, _ in assoc.send_c_find(query, STUDY_ROOT_FIND)]
    finally:
        assoc.release()
    assert answers.count(0xFF00) == 200 and answers[-1] == 0x0000


def test_result_cap(dicom_hub_factory: Callable[..., DicomHub], tmp_path: Path) -> None:
    hub = dicom_hub_factory(dicom_allowed_peers=FIND_PEERS, dicom_max_find_results=2)
    for n in range(3):
        _fill(hub, generate_uid(), 1 + n)
    found = findscu(hub, tmp_path, "QueryRetrieveLevel=STUDY", "StudyInstanceUID")
    assert found.status == "0xa700", found.log[-3000:]
    assert len(found.answers) == 2
    assert "More than 2 matches" in found.log
    # under the cap: success
    found = findscu(hub, tmp_path, "QueryRetrieveLevel=SERIES", "SeriesInstanceUID")
    assert found.status == "0xa700" and len(found.answers) == 2
    study_series = findscu(
        hub, tmp_path, "QueryRetrieveLevel=PATIENT", "PatientID", root="-P"
    )  # one patient (BULK)
    assert study_series.status == "0x0000" and values(study_series, "PatientID") == ["BULK"]


def test_each_query_is_audited(dicom_hub_factory: Callable[..., DicomHub], tmp_path: Path) -> None:
    hub = dicom_hub_factory(dicom_allowed_peers=FIND_PEERS)
    _fill(hub, generate_uid(), 2)
    ok = findscu(hub, tmp_path, "QueryRetrieveLevel=IMAGE", "SOPInstanceUID")
    assert ok.status == "0x0000" and len(ok.answers) == 2
    bad = findscu(hub, tmp_path, "QueryRetrieveLevel=FRAME")
    assert bad.status == "0xa900"
    events = journal(hub, "110112", count=2)
    assert len(events) == 2
    good, refused = events
    assert good["action"] == "E" and good["outcome"] == "0"
    assert good["agent"][0]["who"]["identifier"] == {"system": "urn:dicom:ae", "value": "FINDSCU"}
    (entity,) = good["entity"]
    assert entity["role"]["code"] == "24"
    assert entity["what"]["identifier"]["value"] == f"urn:oid:{STUDY_ROOT_FIND}"
    assert entity["description"] == "2 match(es)"
    sent = base64.b64decode(entity["query"])
    assert b"IMAGE" in sent  # the identifier as received
    assert refused["outcome"] == "4" and "0xA900" in refused["outcomeDesc"]
    for event in events:
        assert_valid_r4(event)


# ------------------------------------------------------------------ Orthanc as the SCU


def test_orthanc_queries_pixelhub(orthanc: Orthanc, tmp_path: Path) -> None:
    hub = start_dicom_hub(tmp_path / "data", dicom_allowed_peers=FIND_PEERS)
    try:
        files = []
        study = generate_uid()
        for n, patient in enumerate(("ORTH-1", "ORTH-1", "OTHER-2")):
            ds = make_ct(
                sop=generate_uid(), study=study if n < 2 else generate_uid(), patient_id=patient
            )
            ds.AccessionNumber = "ACC-ORTH"
            path = tmp_path / f"{n}.dcm"
            ds.save_as(path, enforce_file_format=True)
            files.append(path)
        assert hub.storescu(*files).returncode == 0
        orthanc.add_modality("pixelhub-find", AET, hub.port)
        with orthanc.client() as c:
            r = c.post(
                "/modalities/pixelhub-find/query",
                json={"Level": "Study", "Query": {"PatientID": "ORTH*", "AccessionNumber": ""}},
            )
            r.raise_for_status()
            query_id = r.json()["ID"]
            answers = c.get(f"/queries/{query_id}/answers?expand").json()
        assert len(answers) == 1, answers
        content = answers[0]
        tags = {v["Name"]: v["Value"] for v in content.values() if isinstance(v, dict)}
        assert tags["StudyInstanceUID"] == study
        assert tags["AccessionNumber"] == "ACC-ORTH"
        assert tags["PatientID"] == "ORTH-1"
    finally:
        hub.close()
