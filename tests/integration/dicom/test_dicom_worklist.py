"""Issue 9, item 3: the Modality Worklist C-FIND SCP (DICOM PS3.4 K.6), built from the orders a
RIS sent as real HL7 messages over MLLP, queried with dcmtk's ``/usr/bin/findscu -W`` (queries
written with ``/usr/bin/dump2dcm``, or given as ``-k`` keys) and, for crafted bad identifiers,
with a pynetdicom SCU."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import hl7.client
import pytest
from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom import AE

from adapters.dicom._worklist import MODALITY_WORKLIST_FIND
from tests.integration.dicom.dicom_support import AET, DicomHub, run_tool
from tests.integration.dicom.order_support import (
    CANCEL,
    OMI,
    ORM,
    send_orders,
    start_order_hub,
)
from tests.integration.dicom.test_dicom_audit import journal
from tests.integration.dicom.test_dicom_find import Found, findscu
from tests.integration.hl7v2.hl7_support import ack_segments, msa

QUERY_DUMP = """\
(0008,0005) CS [ISO_IR 192]
(0008,0050) SH []
(0008,0090) PN []
(0010,0010) PN []
(0010,0020) LO []
(0010,0021) LO []
(0010,0030) DA []
(0010,0040) CS []
(0020,000d) UI []
(0032,1060) LO []
(0040,1001) SH []
(0040,1003) SH []
(0040,0100) SQ
(fffe,e000) -
(0008,0060) CS [{modality}]
(0040,0001) AE [CT_SCANNER1]
(0040,0002) DA [{date}]
(0040,0003) TM []
(0040,0006) PN []
(0040,0007) LO []
(0040,0009) SH []
(fffe,e00d) -
(fffe,e0dd) -
"""


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DicomHub, Path]]:
    workdir = tmp_path_factory.mktemp("worklist")
    hub, mllp = start_order_hub(workdir / "data", dicom_max_find_results=3)
    try:
        send_orders(mllp, OMI, ORM)
        yield hub, workdir
    finally:
        hub.close()


def query_file(workdir: Path, name: str, *, modality: str = "", date: str = "") -> Path:
    dump = workdir / f"{name}.dump"
    dump.write_text(QUERY_DUMP.format(modality=modality, date=date), encoding="utf-8")
    target = workdir / f"{name}.wl"
    made = run_tool("/usr/bin/dump2dcm", "--write-dataset", str(dump), str(target))
    assert made.returncode == 0, made.stderr
    return target


def worklist(hub: DicomHub, workdir: Path, *keys: str, file: Path | None = None) -> Found:
    return findscu(hub, workdir, *keys, root="-W", query_file=file)


def steps(found: Found) -> list[str]:
    return sorted(
        str(a.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID) for a in found.answers
    )


def test_a_modality_finds_its_ct_step_with_the_order_and_patient(
    scheduled: tuple[DicomHub, Path],
) -> None:
    hub, workdir = scheduled
    found = worklist(hub, workdir, file=query_file(workdir, "ct", modality="CT", date="20240306"))
    assert found.returncode == 0 and found.status == "0x0000", found.log[-2000:]
    (answer,) = found.answers
    assert answer.SpecificCharacterSet == "ISO_IR 192"
    assert str(answer.PatientName) == "Müller^Hans^^Dr."
    assert (answer.PatientID, answer.IssuerOfPatientID) == ("H-112233", "NORTHRAD")
    assert (answer.PatientBirthDate, answer.PatientSex) == ("19700101", "M")
    assert answer.AccessionNumber == "ACC-NR-5001"
    assert answer.StudyInstanceUID == "1.2.276.0.7230010.3.1.2.8323329.5001"
    assert answer.RequestedProcedureID == "RP-NR-5001"
    assert answer.RequestedProcedureDescription == "CT Schädel nativ"
    assert answer.RequestedProcedurePriority == "STAT"
    assert str(answer.ReferringPhysicianName) == "Anna Weber"
    (step,) = answer.ScheduledProcedureStepSequence
    assert step.Modality == "CT"
    assert step.ScheduledProcedureStepID == "SPS-NR-5001-1"
    assert (step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime) == (
        "20240306",
        "080000",
    )
    assert step.ScheduledProcedureStepDescription == "CT Schädel nativ"
    # the station asked for is not known from the order: returned as asked, empty
    assert step.ScheduledStationAETitle in ("", None)
    # one audit event per query (PS3.15 A.5.3.10)
    assert journal(hub, "110112")


def test_universal_query_lists_every_scheduled_step(scheduled: tuple[DicomHub, Path]) -> None:
    hub, workdir = scheduled
    found = worklist(hub, workdir, file=query_file(workdir, "all"))
    assert found.status == "0x0000", found.log[-2000:]
    assert steps(found) == ["SPS-0001", "SPS-NR-5001-1", "SPS-NR-5001-2"]


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (("ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=20240316-",), ["SPS-0001"]),
        (("ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=-20240306",), ["SPS-NR-5001-1", "SPS-NR-5001-2"]),
        (("ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime=0830-1000",), ["SPS-0001"]),
        (("PatientName=o'brien*",), ["SPS-0001"]),
        (("PatientID=H-112233", "ScheduledProcedureStepSequence[0].Modality=SR"), ["SPS-NR-5001-2"]),
        (("AccessionNumber=ACC-2024-0001",), ["SPS-0001"]),
        (("AccessionNumber=ACC-*",), ["SPS-0001", "SPS-NR-5001-1", "SPS-NR-5001-2"]),
        (("StudyInstanceUID=1.2.276.0.7230010.3.1.2.8323329.5001",), ["SPS-NR-5001-1", "SPS-NR-5001-2"]),
        (("ScheduledProcedureStepSequence[0].ScheduledStationAETitle=OTHER",), ["SPS-0001", "SPS-NR-5001-1", "SPS-NR-5001-2"]),
        (("ScheduledProcedureStepSequence[0].Modality=MR",), []),
        (("AccessionNumber=NOPE",), []),
    ],
)  # fmt: skip
def test_matching(
    scheduled: tuple[DicomHub, Path], keys: tuple[str, ...], expected: list[str]
) -> None:
    hub, workdir = scheduled
    sps = "ScheduledProcedureStepSequence[0].ScheduledProcedureStepID"
    found = worklist(hub, workdir, *keys, sps)
    assert found.status == "0x0000", found.log[-2000:]
    assert steps(found) == expected


def _find(hub: DicomHub, identifier: Dataset) -> list[int]:
    ae = AE(ae_title="FINDSCU")
    ae.add_requested_context(MODALITY_WORKLIST_FIND, ImplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", hub.port, ae_title=AET)
    assert assoc.is_established
    try:
        return [s.Status for s, _ in assoc.send_c_find(identifier, MODALITY_WORKLIST_FIND) if s]
    finally:
        assoc.release()


def test_bad_identifiers_get_their_status_and_the_scp_keeps_serving(
    scheduled: tuple[DicomHub, Path],
) -> None:
    hub, workdir = scheduled
    two_items = Dataset()
    two_items.ScheduledProcedureStepSequence = DicomSequence([Dataset(), Dataset()])
    assert _find(hub, two_items) == [0xA900]
    bad_date = Dataset()
    step = Dataset()
    step.add(DataElement(0x00400002, "DA", "2024XX01", validation_mode=config.IGNORE))
    bad_date.ScheduledProcedureStepSequence = DicomSequence([step])
    assert _find(hub, bad_date) == [0xC000]
    step.ScheduledProcedureStepStartDate = "20241399"  # eight digits, no such day
    assert _find(hub, bad_date) == [0xC000]
    bad_uid = Dataset()
    bad_uid.add(DataElement(0x0020000D, "UI", "1.2.abc", validation_mode=config.IGNORE))
    assert _find(hub, bad_uid) == [0xC000]
    # in Implicit VR the sequence's bytes "oops" cannot be decoded: a malformed identifier
    not_a_sequence = Dataset()
    not_a_sequence.add_new(0x00400100, "LO", "oops")
    assert _find(hub, not_a_sequence) == [0xC000]
    # past the result cap (3 here): the first answers, then "out of resources"
    everything = Dataset()
    everything.PatientID = ""
    assert _find(hub, everything) == [0xFF00, 0xFF00, 0xFF00, 0x0000]
    found = worklist(hub, workdir, "AccessionNumber=ACC-2024-0001")
    assert found.status == "0x0000" and len(found.answers) == 1
    hub.assert_still_serving()


def test_the_result_cap(tmp_path: Path) -> None:
    hub, mllp = start_order_hub(tmp_path / "data", dicom_max_find_results=2)
    try:
        send_orders(mllp, OMI, ORM)
        everything = Dataset()
        everything.AccessionNumber = ""
        assert _find(hub, everything) == [0xFF00, 0xFF00, 0xA700]
    finally:
        hub.close()


def test_a_cancelled_order_leaves_the_worklist(tmp_path: Path) -> None:
    hub, mllp = start_order_hub(tmp_path / "data")
    try:
        send_orders(mllp, ORM)
        sps = "ScheduledProcedureStepSequence[0].ScheduledProcedureStepID"
        assert steps(worklist(hub, tmp_path, "AccessionNumber", sps)) == ["SPS-0001"]
        send_orders(mllp, CANCEL)
        found = worklist(hub, tmp_path, "AccessionNumber", sps)
        assert found.status == "0x0000" and found.answers == []
    finally:
        hub.close()


def test_a_zero_item_sequence_returns_every_step_attribute(
    scheduled: tuple[DicomHub, Path],
) -> None:
    hub, _ = scheduled
    identifier = Dataset()
    identifier.AccessionNumber = "ACC-2024-0001"
    identifier.ScheduledProcedureStepSequence = DicomSequence([])
    identifier.RequestedProcedureCodeSequence = DicomSequence([])
    ae = AE(ae_title="FINDSCU")
    ae.add_requested_context(MODALITY_WORKLIST_FIND, ImplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", hub.port, ae_title=AET)
    try:
        answers = [
            ds for status, ds in assoc.send_c_find(identifier, MODALITY_WORKLIST_FIND)
            if status and status.Status == 0xFF00
        ]  # fmt: skip
    finally:
        assoc.release()
    (answer,) = answers
    (step,) = answer.ScheduledProcedureStepSequence
    assert step.ScheduledProcedureStepID == "SPS-0001"
    assert step.Modality == "CR"
    assert step.ScheduledProcedureStepStatus == "SCHEDULED"
    (code,) = answer.RequestedProcedureCodeSequence
    assert (code.CodeValue, code.CodingSchemeDesignator) == ("71020", "C4")


def station_order(accession: str, modality: str, title: str, name: str, room: str) -> bytes:
    """An OMI^O23 (HL7 v2.5.1, IHE RAD-4) whose IPC names the scheduled station: IPC-7 Scheduled
    Station Name, IPC-8 Scheduled Procedure Step Location, IPC-9 Scheduled AE Title (§4.5.6)."""
    segments = [
        f"MSH|^~\\&|RIS|NORTHRAD|PIXELHUB|NORTHRAD|20240305101500+0100||OMI^O23^OMI_O23|"
        f"MSG-{accession}|P|2.5.1|||||DE||UNICODE UTF-8",
        f"PID|1||P-{accession}^^^NORTHRAD^MR||Station^{modality}||19800101|F",
        f"ORC|NW|PO-{accession}^KIS|FO-{accession}^RIS||SC||||20240305101500+0100",
        "TQ1|1||||||20240308090000+0100||R",
        f"OBR|1|PO-{accession}^KIS|FO-{accession}^RIS|X-{modality}^{modality} exam^99RIS"
        f"||||||||||||||||||||{modality}",
        f"IPC|{accession}^NORTHRAD|RP-{accession}|1.2.826.0.1.3680043.2.1125.{len(accession)}"
        f".{ord(modality[0])}|SPS-{accession}|{modality}^^DCM||{name}|{room}^^L|{title}",
    ]
    return "\r".join(segments).encode()


def test_a_station_finds_only_the_steps_scheduled_on_it(tmp_path: Path) -> None:
    hub, mllp = start_order_hub(tmp_path / "data")
    try:
        for message in (
            station_order("ACC-CT1", "CT", "CT1", "CT Scanner 1", "CT-ROOM-1"),
            station_order("ACC-MR1", "MR", "MR1", "MR Scanner 1", "MR-ROOM-1"),
        ):
            with hl7.client.MLLPClient("127.0.0.1", mllp) as client:
                client.socket.settimeout(10)
                ack = ack_segments(client.send_message(message))
            assert msa(ack)[1] == "AA", ack
        sps = "ScheduledProcedureStepSequence[0]"
        asked = (f"{sps}.ScheduledProcedureStepID", f"{sps}.ScheduledStationName",
                 f"{sps}.ScheduledProcedureStepLocation", "AccessionNumber")  # fmt: skip
        found = worklist(hub, tmp_path, f"{sps}.ScheduledStationAETitle=CT1", *asked)
        assert found.status == "0x0000", found.log[-2000:]
        (answer,) = found.answers
        assert answer.AccessionNumber == "ACC-CT1"
        (step,) = answer.ScheduledProcedureStepSequence
        assert step.ScheduledStationAETitle == "CT1"
        assert (step.ScheduledStationName, step.ScheduledProcedureStepLocation) == (
            "CT Scanner 1",
            "CT-ROOM-1",
        )
        # wildcard matching (PS3.4 C.2.2.2.4); AE titles match case-sensitively (C.2.2.2.1)
        assert steps(worklist(hub, tmp_path, f"{sps}.ScheduledStationAETitle=MR*", *asked)) == [
            "SPS-ACC-MR1"
        ]
        assert steps(worklist(hub, tmp_path, f"{sps}.ScheduledStationAETitle=*1", *asked)) == [
            "SPS-ACC-CT1",
            "SPS-ACC-MR1",
        ]
        assert worklist(hub, tmp_path, f"{sps}.ScheduledStationAETitle=ct1", *asked).answers == []
        # an order naming no station stays on every station's worklist
        send_orders(mllp, ORM)
        assert steps(worklist(hub, tmp_path, f"{sps}.ScheduledStationAETitle=CT1", *asked)) == [
            "SPS-0001",
            "SPS-ACC-CT1",
        ]
    finally:
        hub.close()
