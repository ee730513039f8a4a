"""Issue 9, item 3: the Modality Performed Procedure Step SCP (DICOM PS3.4 F.7), with a pynetdicom
SCU as the modality (dcmtk has no MPPS SCU), after the orders arrived as real HL7 messages over
MLLP; the order's (ServiceRequest) and the study's (ImagingStudy) status are read back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.association import Association

from adapters.dicom._mpps import MPPS_SOP_CLASS
from hub.imaging.study_aggregator import study_resource_id
from tests.e2e.support import assert_valid_r4
from tests.integration.dicom.dicom_support import AET, DicomHub, make_ct
from tests.integration.dicom.order_support import OMI, ORM, send_orders, start_order_hub
from tests.integration.dicom.test_dicom_audit import journal

OMI_STUDY = "1.2.276.0.7230010.3.1.2.8323329.5001"
ORM_STUDY = "1.2.840.113619.2.55.3.2831164356.781.1710496200.1"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DicomHub]:
    h, mllp = start_order_hub(tmp_path_factory.mktemp("mpps") / "data")
    try:
        send_orders(mllp, OMI, ORM)
        yield h
    finally:
        h.close()


@pytest.fixture
def assoc(hub: DicomHub) -> Iterator[Association]:
    ae = AE(ae_title="MODALITY")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(MPPS_SOP_CLASS, ExplicitVRLittleEndian)
    association = ae.associate("127.0.0.1", hub.port, ae_title=AET)
    assert association.is_established
    yield association
    if association.is_established:
        association.release()


def in_progress(accession: str, requested: str, study: str, **changes: Any) -> Dataset:
    ds = Dataset()
    item = Dataset()
    item.AccessionNumber = accession
    item.RequestedProcedureID = requested
    item.StudyInstanceUID = study
    item.ScheduledProcedureStepID = "SPS"
    ds.ScheduledStepAttributesSequence = DicomSequence([item])
    ds.PatientID = "H-112233"
    ds.PerformedProcedureStepID = "PPS-1"
    ds.PerformedStationAETitle = "MODALITY"
    ds.PerformedProcedureStepStartDate = "20240306"
    ds.PerformedProcedureStepStartTime = "081500"
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.Modality = "CT"
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def final(status: str) -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = "20240306"
    ds.PerformedProcedureStepEndTime = "083000"
    return ds


def store_and_wait(hub: DicomHub, image: Dataset, folder: Path) -> dict[str, Any]:
    """C-STORE ``image`` with dcmtk; its ImagingStudy once aggregated as ``available``."""
    path = folder / f"{image.SOPInstanceUID}.dcm"
    image.save_as(path, enforce_file_format=True)
    assert hub.storescu(path).returncode == 0
    deadline = time.monotonic() + 30
    while (study := hub.read(f"ImagingStudy/{study_resource_id(image.StudyInstanceUID)}"))[
        "status"
    ] != "available":
        assert time.monotonic() < deadline, study
        time.sleep(0.05)
    return study


def order(hub: DicomHub, accession: str) -> dict[str, Any]:
    (found,) = hub.search("ServiceRequest", ("identifier", accession))
    return found


def test_in_progress_then_completed(hub: DicomHub, assoc: Association) -> None:
    uid = generate_uid()
    status, _ = assoc.send_n_create(
        in_progress("ACC-NR-5001", "RP-NR-5001", OMI_STUDY), MPPS_SOP_CLASS, uid
    )
    assert status.Status == 0x0000
    sr = order(hub, "ACC-NR-5001")
    assert sr["status"] == "active"
    assert {"type": {"text": "Performed Procedure Step SOP Instance UID"},
            "system": "urn:dicom:uid", "value": f"urn:oid:{uid}"} in sr["identifier"]  # fmt: skip
    assert hub.search("ServiceRequest", ("identifier", f"urn:dicom:uid|urn:oid:{uid}"))
    study = hub.read(f"ImagingStudy/{study_resource_id(OMI_STUDY)}")
    assert study["status"] == "registered"
    assert_valid_r4(sr)
    assert_valid_r4(study)
    assert study["basedOn"] == [{"reference": f"ServiceRequest/{sr['id']}"}]
    # a duplicate N-CREATE
    status, _ = assoc.send_n_create(
        in_progress("ACC-NR-5001", "RP-NR-5001", OMI_STUDY), MPPS_SOP_CLASS, uid
    )
    assert status.Status == 0x0111
    status, _ = assoc.send_n_set(final("COMPLETED"), MPPS_SOP_CLASS, uid)
    assert status.Status == 0x0000
    assert order(hub, "ACC-NR-5001")["status"] == "completed"
    # after COMPLETED the step may no longer be updated (PS3.4 F.7.2.2.2)
    status, _ = assoc.send_n_set(final("DISCONTINUED"), MPPS_SOP_CLASS, uid)
    assert status.Status == 0x0110
    assert order(hub, "ACC-NR-5001")["status"] == "completed"
    # each N-CREATE / N-SET is a Procedure Record audit event (PS3.15 A.5.3)
    events = [
        e
        for e in journal(hub, "110111", count=4)
        if any(uid in orjson.dumps(x).decode() for x in e.get("entity", []))
    ]
    assert [(e["action"], e["outcome"]) for e in events] == [
        ("C", "0"),
        ("C", "4"),
        ("U", "0"),
        ("U", "4"),
    ]
    assert {"reference": f"ServiceRequest/{sr['id']}"} in [x["what"] for x in events[0]["entity"]]


def test_discontinued_keeps_the_order_and_cancels_the_empty_study(
    hub: DicomHub, assoc: Association
) -> None:
    uid = generate_uid()
    status, _ = assoc.send_n_create(
        in_progress("ACC-2024-0001", "RP-0001", ORM_STUDY), MPPS_SOP_CLASS, uid
    )
    assert status.Status == 0x0000
    assert hub.read(f"ImagingStudy/{study_resource_id(ORM_STUDY)}")["status"] == "registered"
    status, _ = assoc.send_n_set(final("IN PROGRESS"), MPPS_SOP_CLASS, uid)
    assert status.Status == 0x0000
    status, _ = assoc.send_n_set(final("DISCONTINUED"), MPPS_SOP_CLASS, uid)
    assert status.Status == 0x0000
    sr = order(hub, "ACC-2024-0001")
    assert sr["status"] == "active"
    (state,) = [e for e in sr["extension"] if e["url"] == "urn:pixelhub:dicom:mpps"]
    fields = {e["url"]: e["valueString"] for e in state["extension"]}
    assert fields["status"] == "DISCONTINUED"
    assert fields["end"] == "20240306083000"
    assert_valid_r4(sr)
    assert hub.read(f"ImagingStudy/{study_resource_id(ORM_STUDY)}")["status"] == "cancelled"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"PerformedProcedureStepStatus": "COMPLETED"}, 0x0106),
        ({"PerformedProcedureStepStatus": None}, 0x0120),
        ({"ScheduledStepAttributesSequence": None}, 0x0120),
        ({"PerformedProcedureStepStartDate": ""}, 0x0121),
        # no Study Instance UID (Type 1 in the item, PS3.4 Table F.7.2-1)
        ({"ScheduledStepAttributesSequence": DicomSequence([Dataset()])}, 0x0121),
    ],
)
def test_bad_n_create(
    hub: DicomHub, assoc: Association, changes: dict[str, Any], expected: int
) -> None:
    ds = in_progress("ACC-NR-5001", "RP-NR-5001", OMI_STUDY, **changes)
    status, _ = assoc.send_n_create(ds, MPPS_SOP_CLASS, generate_uid())
    assert status.Status == expected


def test_malformed_attribute_lists(hub: DicomHub) -> None:
    for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(MPPS_SOP_CLASS, syntax)
        association = ae.associate("127.0.0.1", hub.port, ae_title=AET)
        assert association.is_established
        try:
            ds = in_progress("ACC-NR-5001", "RP-NR-5001", OMI_STUDY)
            del ds.ScheduledStepAttributesSequence
            # a sequence sent as text: wrong VR (explicit), undecodable bytes (implicit)
            ds.add_new(0x00400270, "LO", "oops")
            status, _ = association.send_n_create(ds, MPPS_SOP_CLASS, generate_uid())
            assert status.Status == 0x0106
            modification = Dataset()
            modification.add_new(0x00400281, "LO", "oops")  # discontinuation reason sequence
            modification.PerformedProcedureStepStatus = "DISCONTINUED"
            status, _ = association.send_n_set(modification, MPPS_SOP_CLASS, generate_uid())
            assert status.Status in (0x0106, 0x0112)
        finally:
            association.release()
    hub.assert_still_serving()


def test_unknown_orders_and_steps(hub: DicomHub, assoc: Association) -> None:
    ds = in_progress("NO-SUCH-ACC", "", "1.2.3.4")  # names an order nobody placed
    status, _ = assoc.send_n_create(ds, MPPS_SOP_CLASS, generate_uid())
    assert status.Status == 0x0110
    status, _ = assoc.send_n_set(final("COMPLETED"), MPPS_SOP_CLASS, generate_uid())
    assert status.Status == 0x0112
    uid = generate_uid()
    ds = in_progress("ACC-NR-5001", "RP-NR-5001", OMI_STUDY)
    assert assoc.send_n_create(ds, MPPS_SOP_CLASS, uid)[0].Status == 0x0000
    status, _ = assoc.send_n_set(final("DONE"), MPPS_SOP_CLASS, uid)
    assert status.Status == 0x0106


def test_an_unscheduled_step_gets_an_order_of_its_own(
    hub: DicomHub, assoc: Association, tmp_path: Path
) -> None:
    """IHE RAD-6 unscheduled case: no accession, requested procedure or scheduled step. The
    step gets an order (ServiceRequest) for the patient its images will be filed under; the
    study is registered, completed by the N-SET, and its images join it."""
    study_uid, uid = generate_uid(), generate_uid()
    ds = in_progress("", "", study_uid, PatientID="WALK-IN-7", PatientName="Walk^In")
    ds.ScheduledStepAttributesSequence[0].ScheduledProcedureStepID = ""
    ds.PatientBirthDate, ds.PatientSex = "19800101", "F"
    ds.PerformedProcedureStepDescription = "CT head without contrast"
    procedure = Dataset()
    procedure.CodeValue, procedure.CodingSchemeDesignator = "30799-1", "LN"
    procedure.CodeMeaning = "CT Head WO contrast"
    ds.ProcedureCodeSequence = DicomSequence([procedure])
    ds.PerformedStationName = "CT-ER"
    assert assoc.send_n_create(ds, MPPS_SOP_CLASS, uid)[0].Status == 0x0000
    (sr,) = hub.search("ServiceRequest", ("identifier", f"urn:dicom:uid|urn:oid:{uid}"))
    assert_valid_r4(sr)
    assert (sr["status"], sr["intent"]) == ("active", "order")
    assert {"system": "urn:dicom:uid", "value": f"urn:oid:{study_uid}"} in sr["identifier"]
    assert sr["code"] == {
        "coding": [
            {"system": "http://loinc.org", "code": "30799-1", "display": "CT Head WO contrast"}
        ],
        "text": "CT head without contrast",
    }
    assert sr["performer"] == [
        {"type": "Device", "identifier": {"system": "urn:dicom:ae", "value": "MODALITY"},
         "display": "CT-ER"}
    ]  # fmt: skip
    assert "Unscheduled" in sr["note"][0]["text"]
    patient = hub.read(sr["subject"]["reference"])  # made from the step's demographics
    assert_valid_r4(patient)
    assert patient["identifier"][0]["value"] == "WALK-IN-7"
    assert (patient["birthDate"], patient["gender"]) == ("1980-01-01", "female")
    study = hub.read(f"ImagingStudy/{study_resource_id(study_uid)}")
    assert study["status"] == "registered"
    assert study["basedOn"] == [{"reference": f"ServiceRequest/{sr['id']}"}]
    assert assoc.send_n_set(final("COMPLETED"), MPPS_SOP_CLASS, uid)[0].Status == 0x0000
    (done,) = hub.search("ServiceRequest", ("identifier", f"urn:dicom:uid|urn:oid:{uid}"))
    assert done["status"] == "completed"
    # the images arrive: same Patient, the study keeps its order
    image = make_ct(sop=generate_uid(), study=study_uid, patient_id="WALK-IN-7", name="Walk^In")
    image.PatientBirthDate, image.PatientSex = "19800101", "F"
    study = store_and_wait(hub, image, tmp_path)
    assert study["subject"] == sr["subject"]
    assert {"reference": f"ServiceRequest/{sr['id']}"} in study["basedOn"]
    assert not hub.search("Flag", ("subject", sr["subject"]["reference"]))
    # a second unscheduled step on the same study joins its order
    again = generate_uid()
    ds2 = in_progress("", "", study_uid, PatientID="WALK-IN-7")
    ds2.ScheduledStepAttributesSequence[0].ScheduledProcedureStepID = ""
    assert assoc.send_n_create(ds2, MPPS_SOP_CLASS, again)[0].Status == 0x0000
    (same,) = hub.search("ServiceRequest", ("identifier", f"urn:dicom:uid|urn:oid:{again}"))
    assert same["id"] == sr["id"]


def test_an_n_create_without_a_uid_gets_one(hub: DicomHub, assoc: Association) -> None:
    def steps() -> int:
        return sum(
            i.get("type", {}).get("text") == "Performed Procedure Step SOP Instance UID"
            for i in order(hub, "ACC-NR-5001")["identifier"]
        )

    before = steps()
    ds = in_progress("ACC-NR-5001", "RP-NR-5001", OMI_STUDY)
    status, _ = assoc.send_n_create(ds, MPPS_SOP_CLASS)
    assert status.Status == 0x0000
    assert steps() == before + 1


def test_a_vanishing_modality_leaves_the_scp_serving(hub: DicomHub, tmp_path: Path) -> None:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(MPPS_SOP_CLASS, ExplicitVRLittleEndian)
    association = ae.associate("127.0.0.1", hub.port, ae_title=AET)
    assert association.is_established
    association.abort()
    hub.assert_still_serving()


def test_the_registered_study_becomes_available_when_its_images_arrive(
    hub: DicomHub, assoc: Association, tmp_path: Path
) -> None:
    study_uid = generate_uid()
    uid = generate_uid()
    ds = in_progress("ACC-NR-5001", "RP-NR-5001", study_uid)
    assert assoc.send_n_create(ds, MPPS_SOP_CLASS, uid)[0].Status == 0x0000
    registered = hub.read(f"ImagingStudy/{study_resource_id(study_uid)}")
    assert registered["status"] == "registered"
    image = make_ct(sop=generate_uid(), study=study_uid, patient_id="H-112233")
    image.AccessionNumber = "ACC-NR-5001"
    study = store_and_wait(hub, image, tmp_path)
    assert study["numberOfInstances"] == 1
    assert registered["basedOn"][0] in study["basedOn"]
