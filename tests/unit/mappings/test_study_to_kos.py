"""Golden and conformance tests for ``mappings/study_to_kos.py``: the XDS-I.b / MADO imaging
manifest (DICOM PS3.3 A.35.4 Key Object Selection Document, TID 2010, IHE RAD TF-3 4.68.4.1.2.2),
checked with dciodvfy both as a plain KOS and against its IHE XDS-I manifest profile."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from mappings.study_to_kos import (
    KOS_SOP_CLASS,
    KosReference,
    ManifestInput,
    ManifestInstance,
    ManifestPatient,
    content_value_type,
    kos_references,
    study_to_kos,
)
from tests.support.dciodvfy import dciodvfy_path

CT = "1.2.840.10008.5.1.4.1.1.2"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
PDF = "1.2.840.10008.5.1.4.1.1.104.1"
STUDY = "2.25.100"
CT_SERIES, SR_SERIES, PDF_SERIES = "2.25.101", "2.25.102", "2.25.103"
REPOSITORY = "1.3.6.1.4.1.21367.13.80.110"
WADO_STUDY = f"https://hub.example.org/dicomweb/studies/{STUDY}"
EST = timezone(timedelta(hours=-5))

# What dciodvfy says about Retrieve URL (0008,1190) at series level (MADO): it knows the attribute
# but not in the Hierarchical Series Reference Macro, so the object is "Standard Extended".
RETRIEVE_URL_WARNINGS = {
    "Warning - Attribute is not present in standard DICOM IOD - (0x0008,0x1190) UR Retrieve URL",
    "Warning - Dicom dataset contains attributes not present in standard DICOM IOD - this is a "
    "Standard Extended SOP Class",
}


def fifty_instances() -> tuple[ManifestInstance, ...]:
    """48 CT images in one series, a Comprehensive SR and an Encapsulated PDF in two more."""
    ct = [ManifestInstance(CT_SERIES, CT, f"2.25.101{n:03d}", "CT") for n in range(1, 49)]
    return (
        *ct,
        ManifestInstance(SR_SERIES, COMPREHENSIVE_SR, "2.25.102001", "SR"),
        ManifestInstance(PDF_SERIES, PDF, "2.25.103001", "DOC"),
    )


def manifest(**changes: Any) -> ManifestInput:
    base = ManifestInput(
        patient=ManifestPatient("MRN-42", "HOSP", "Doe^Jane", "19800102", "F"),
        study_uid=STUDY,
        study_date="20260304",
        study_time="101112",
        accession="ACC-7",
        accession_issuer="HOSP-RIS",
        study_description="CT chest",
        study_id="S-1",
        referring_physician="Who^Doctor",
        instances=(
            ManifestInstance(CT_SERIES, CT, "2.25.101001", "CT"),
            ManifestInstance(SR_SERIES, COMPREHENSIVE_SR, "2.25.102001", "SR"),
            ManifestInstance(CT_SERIES, CT, "2.25.101002", "CT"),
        ),
        retrieve_location_uid=REPOSITORY,
        retrieve_ae_title="PIXELHUB",
        retrieve_url=WADO_STUDY,
        manifest_series_uid="2.25.900",
        manifest_sop_uid="2.25.901",
        content_datetime=datetime(2026, 3, 4, 15, 16, 17, tzinfo=EST),
        institution="General Hospital",
        series_number=99,
        instance_number=3,
    )
    return dataclasses.replace(base, **changes)


def write_part10(ds: Dataset, path: Path) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    dcmwrite(path, ds, enforce_file_format=True)
    return path


def xdsi_profile_errors(path: Path) -> list[str]:
    """dciodvfy's IHE XDS-I manifest profile (``-profile IHEXDSIManifest``): the KOS IOD plus
    Retrieve AE Title and Retrieve Location UID (type 1) on every referenced series."""
    completed = subprocess.run(
        [dciodvfy_path(), "-profile", "IHEXDSIManifest", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=60,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert "KeyObjectSelectionDocumentIHEXDSIManifest" in output, output
    return [line.strip() for line in output.splitlines() if "Error - " in line]


def code(item: Dataset) -> tuple[str, str, str]:
    return (item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning)


# --- golden: every attribute -------------------------------------------------------------------


def test_golden_every_attribute() -> None:
    ds = study_to_kos(manifest())

    assert set(ds.dir()) == {
        "AccessionNumber",
        "ConceptNameCodeSequence",
        "ContentDate",
        "ContentSequence",
        "ContentTemplateSequence",
        "ContentTime",
        "ContinuityOfContent",
        "CurrentRequestedProcedureEvidenceSequence",
        "InstanceCreationDate",
        "InstanceCreationTime",
        "InstanceNumber",
        "InstitutionName",
        "IssuerOfAccessionNumberSequence",
        "IssuerOfPatientID",
        "Manufacturer",
        "Modality",
        "PatientBirthDate",
        "PatientID",
        "PatientName",
        "PatientSex",
        "ReferencedPerformedProcedureStepSequence",
        "ReferencedRequestSequence",
        "ReferringPhysicianName",
        "SOPClassUID",
        "SOPInstanceUID",
        "SeriesInstanceUID",
        "SeriesNumber",
        "StudyDate",
        "StudyDescription",
        "StudyID",
        "StudyInstanceUID",
        "StudyTime",
        "TimezoneOffsetFromUTC",
        "ValueType",
    }
    assert not hasattr(ds, "file_meta")  # the data set only: the caller adds File Meta
    # Patient
    assert (ds.PatientName, ds.PatientID, ds.IssuerOfPatientID) == ("Doe^Jane", "MRN-42", "HOSP")
    assert (ds.PatientBirthDate, ds.PatientSex) == ("19800102", "F")
    # General Study
    assert (ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime) == (STUDY, "20260304", "101112")
    assert (ds.ReferringPhysicianName, ds.StudyID) == ("Who^Doctor", "S-1")
    assert (ds.AccessionNumber, ds.StudyDescription) == ("ACC-7", "CT chest")
    assert len(ds.IssuerOfAccessionNumberSequence) == 1
    assert ds.IssuerOfAccessionNumberSequence[0].dir() == ["LocalNamespaceEntityID"]
    assert ds.IssuerOfAccessionNumberSequence[0].LocalNamespaceEntityID == "HOSP-RIS"
    # Key Object Document Series
    assert (ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber) == ("KO", "2.25.900", 99)
    assert len(ds.ReferencedPerformedProcedureStepSequence) == 0
    # General Equipment
    assert (ds.Manufacturer, ds.InstitutionName) == ("PixelHub", "General Hospital")
    # Key Object Document
    assert (ds.InstanceNumber, ds.ContentDate, ds.ContentTime) == (3, "20260304", "151617")
    (request,) = ds.ReferencedRequestSequence
    assert set(request.dir()) == {
        "AccessionNumber",
        "FillerOrderNumberImagingServiceRequest",
        "IssuerOfAccessionNumberSequence",
        "PlacerOrderNumberImagingServiceRequest",
        "ReferencedStudySequence",
        "RequestedProcedureCodeSequence",
        "RequestedProcedureDescription",
        "RequestedProcedureID",
        "StudyInstanceUID",
    }
    assert (request.StudyInstanceUID, request.AccessionNumber) == (STUDY, "ACC-7")
    assert request.IssuerOfAccessionNumberSequence[0].LocalNamespaceEntityID == "HOSP-RIS"
    assert len(request.ReferencedStudySequence) == len(request.RequestedProcedureCodeSequence) == 0
    assert request.RequestedProcedureID == request.RequestedProcedureDescription == ""
    assert request.PlacerOrderNumberImagingServiceRequest == ""
    assert request.FillerOrderNumberImagingServiceRequest == ""
    (study,) = ds.CurrentRequestedProcedureEvidenceSequence
    assert sorted(study.dir()) == ["ReferencedSeriesSequence", "StudyInstanceUID"]
    assert study.StudyInstanceUID == STUDY
    ct_series, sr_series = study.ReferencedSeriesSequence  # first-seen order, grouped
    for series, uid in ((ct_series, CT_SERIES), (sr_series, SR_SERIES)):
        assert set(series.dir()) == {
            "ReferencedSOPSequence",
            "RetrieveAETitle",
            "RetrieveLocationUID",
            "RetrieveURL",
            "SeriesInstanceUID",
        }
        assert series.SeriesInstanceUID == uid
        assert series.RetrieveLocationUID == REPOSITORY
        assert series.RetrieveAETitle == "PIXELHUB"
        assert series.RetrieveURL == f"{WADO_STUDY}/series/{uid}"
    assert [
        (i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID)
        for i in ct_series.ReferencedSOPSequence
    ] == [
        (CT, "2.25.101001"),
        (CT, "2.25.101002"),
    ]
    assert [
        (i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID)
        for i in sr_series.ReferencedSOPSequence
    ] == [(COMPREHENSIVE_SR, "2.25.102001")]
    # SR Document Content: the TID 2010 root
    assert ds.ValueType == "CONTAINER"
    assert [code(c) for c in ds.ConceptNameCodeSequence] == [("113030", "DCM", "Manifest")]
    assert ds.ContinuityOfContent == "SEPARATE"
    (template,) = ds.ContentTemplateSequence
    assert (template.MappingResource, template.TemplateIdentifier) == ("DCMR", "2010")
    assert template.MappingResourceUID == "1.2.840.10008.8.1.1"
    rows = [
        (
            item.RelationshipType,
            item.ValueType,
            item.ReferencedSOPSequence[0].ReferencedSOPClassUID,
            item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID,
            len(item.ReferencedSOPSequence),
            sorted(item.dir()),
        )
        for item in ds.ContentSequence
    ]
    keys = ["ReferencedSOPSequence", "RelationshipType", "ValueType"]
    assert rows == [  # input order; no concept name on the rows (TID 2010)
        ("CONTAINS", "IMAGE", CT, "2.25.101001", 1, keys),
        ("CONTAINS", "COMPOSITE", COMPREHENSIVE_SR, "2.25.102001", 1, keys),
        ("CONTAINS", "IMAGE", CT, "2.25.101002", 1, keys),
    ]
    # SOP Common
    assert (ds.SOPClassUID, ds.SOPInstanceUID) == (KOS_SOP_CLASS, "2.25.901")
    assert (ds.InstanceCreationDate, ds.InstanceCreationTime) == ("20260304", "151617")
    assert ds.TimezoneOffsetFromUTC == "-0500"
    assert "SpecificCharacterSet" not in ds  # all ASCII: the default repertoire


def test_optional_attributes_left_out_and_type_2_kept_empty() -> None:
    ds = study_to_kos(
        manifest(
            patient=ManifestPatient("MRN-42"),
            study_date="",
            study_time="",
            accession="",
            accession_issuer="",
            study_description="",
            study_id="",
            referring_physician="",
            retrieve_ae_title="",
            retrieve_url="",
            institution="",
            content_datetime=datetime(2026, 3, 4, 20, 16, 17, tzinfo=UTC),
        )
    )
    for absent in (
        "IssuerOfPatientID",
        "IssuerOfAccessionNumberSequence",
        "StudyDescription",
        "InstitutionName",
        "ReferencedRequestSequence",  # 1C: no accession, no known Requested Procedure
    ):
        assert absent not in ds
    for empty in (
        "PatientName",
        "PatientBirthDate",
        "PatientSex",
        "StudyDate",
        "StudyTime",
        "ReferringPhysicianName",
        "StudyID",
        "AccessionNumber",
    ):
        assert ds[empty].value in ("", None), empty
    series = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert sorted(series.dir()) == [
        "ReferencedSOPSequence",
        "RetrieveLocationUID",
        "SeriesInstanceUID",
    ]
    assert (ds.ContentTime, ds.TimezoneOffsetFromUTC) == ("201617", "+0000")


def test_a_sex_outside_the_enumerated_values_is_written_unknown() -> None:
    ds = study_to_kos(manifest(patient=ManifestPatient("MRN-42", sex="U")))
    assert ds.PatientSex == ""


@pytest.mark.parametrize(
    ("sop_class", "value_type"),
    [
        (CT, "IMAGE"),
        ("1.2.840.10008.5.1.4.1.1.1", "IMAGE"),  # CR
        ("1.2.840.10008.5.1.4.1.1.1.2", "IMAGE"),  # Digital Mammography, a prefix family
        ("1.2.840.10008.5.1.4.1.1.2.1", "IMAGE"),  # Enhanced CT
        ("1.2.840.10008.5.1.4.1.1.4", "IMAGE"),  # MR
        ("1.2.840.10008.5.1.4.1.1.4.2", "COMPOSITE"),  # MR Spectroscopy: no pixels
        ("1.2.840.10008.5.1.4.1.1.6.1", "IMAGE"),  # US
        ("1.2.840.10008.5.1.4.1.1.7", "IMAGE"),  # Secondary Capture
        ("1.2.840.10008.5.1.4.1.1.12.1", "IMAGE"),  # XA
        ("1.2.840.10008.5.1.4.1.1.66.4", "IMAGE"),  # Segmentation
        ("1.2.840.10008.5.1.4.1.1.77.1.4", "IMAGE"),  # VL Photographic
        ("1.2.840.10008.5.1.4.1.1.77.1.6", "IMAGE"),  # VL Whole Slide Microscopy
        ("1.2.840.10008.5.1.4.1.1.77.1.5.3", "COMPOSITE"),  # Stereometric Relationship
        ("1.2.840.10008.5.1.4.1.1.128", "IMAGE"),  # PET
        ("1.2.840.10008.5.1.4.1.1.9.1.1", "WAVEFORM"),  # 12-lead ECG
        ("1.2.840.10008.5.1.4.1.1.11.1", "COMPOSITE"),  # Grayscale Softcopy Presentation State
        (COMPREHENSIVE_SR, "COMPOSITE"),
        (KOS_SOP_CLASS, "COMPOSITE"),
        (PDF, "COMPOSITE"),
        ("1.2.840.10008.5.1.4.1.1.481.5", "COMPOSITE"),  # RT Plan
        ("1.2.840.10008.5.1.4.1.1.11", "COMPOSITE"),  # not the "1.1." family
        ("1.2.3.4.5", "COMPOSITE"),  # private
    ],
)
def test_content_value_type(sop_class: str, value_type: str) -> None:
    assert content_value_type(sop_class) == value_type


# --- the 50-instance study, as Part 10, judged by dciodvfy -------------------------------------


def test_fifty_instance_study_conforms_and_round_trips(
    tmp_path: Path, assert_dicom_conforms: Callable[..., Any]
) -> None:
    instances = fifty_instances()
    path = write_part10(study_to_kos(manifest(instances=instances)), tmp_path / "kos.dcm")

    result = assert_dicom_conforms(path)
    assert result.iod == "KeyObjectSelectionDocument"
    assert result.errors == []
    assert {w.strip() for w in result.warnings} <= RETRIEVE_URL_WARNINGS, result.warnings
    assert xdsi_profile_errors(path) == []

    kos = pydicom.dcmread(path)
    assert kos.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert kos.file_meta.MediaStorageSOPClassUID == KOS_SOP_CLASS
    assert [
        s.SeriesInstanceUID
        for s in kos.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
    ] == [
        CT_SERIES,
        SR_SERIES,
        PDF_SERIES,
    ]
    assert [item.ValueType for item in kos.ContentSequence] == ["IMAGE"] * 48 + ["COMPOSITE"] * 2
    assert kos_references(kos) == [
        KosReference(
            STUDY, i.series_uid, i.sop_class_uid, i.sop_instance_uid, REPOSITORY, "PIXELHUB"
        )
        for i in instances
    ]


def test_without_retrieve_url_dciodvfy_has_no_warnings(
    tmp_path: Path, assert_dicom_conforms: Callable[..., Any]
) -> None:
    path = write_part10(
        study_to_kos(manifest(instances=fifty_instances(), retrieve_url="")), tmp_path / "kos.dcm"
    )
    result = assert_dicom_conforms(path)
    assert (result.errors, result.warnings) == ([], [])
    assert xdsi_profile_errors(path) == []


def test_xdsi_profile_fails_without_retrieve_location(tmp_path: Path) -> None:
    # The check can fail: XDS-I needs the repository uniqueId on every series (RAD-69).
    path = write_part10(
        study_to_kos(manifest(retrieve_location_uid="", retrieve_url="")), tmp_path / "kos.dcm"
    )
    errors = xdsi_profile_errors(path)
    assert errors and all("RetrieveLocationUID" in e for e in errors)


def test_non_ascii_patient_name_is_utf8(
    tmp_path: Path, assert_dicom_conforms: Callable[..., Any]
) -> None:
    patient = ManifestPatient("MRN-42", "HOSP", "Müller^José", "19800102", "M")
    ds = study_to_kos(
        manifest(patient=patient, study_description="Thorax ärztlich", retrieve_url="")
    )
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    path = write_part10(ds, tmp_path / "kos.dcm")
    assert "Müller^José".encode() in path.read_bytes()
    result = assert_dicom_conforms(path)
    assert (result.errors, result.warnings) == ([], [])
    back = pydicom.dcmread(path)
    assert (str(back.PatientName), back.StudyDescription) == ("Müller^José", "Thorax ärztlich")


# --- kos_references -----------------------------------------------------------------------------


def test_kos_references_prefers_the_instance_item_and_takes_the_first_ae() -> None:
    ds = study_to_kos(manifest(retrieve_url=""))
    series = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    series.RetrieveAETitle = ["FIRST", "SECOND"]
    series.ReferencedSOPSequence[1].RetrieveLocationUID = "1.2.3"
    refs = kos_references(ds)
    assert [(r.sop_instance_uid, r.retrieve_location_uid, r.retrieve_ae_title) for r in refs] == [
        ("2.25.101001", REPOSITORY, "FIRST"),
        ("2.25.101002", "1.2.3", "FIRST"),
        ("2.25.102001", REPOSITORY, "PIXELHUB"),
    ]


def test_kos_references_rejects_what_is_not_a_kos() -> None:
    ct = Dataset()
    ct.SOPClassUID = CT
    ct.SOPInstanceUID = "2.25.1"
    with pytest.raises(ValueError, match="not a Key Object Selection Document"):
        kos_references(ct)
    with pytest.raises(ValueError, match="not a Key Object Selection Document"):
        kos_references(Dataset())
    bare = Dataset()
    bare.SOPClassUID = KOS_SOP_CLASS
    with pytest.raises(ValueError, match="Current Requested Procedure Evidence"):
        kos_references(bare)
    broken = study_to_kos(manifest())
    del (
        broken.CurrentRequestedProcedureEvidenceSequence[0]
        .ReferencedSeriesSequence[0]
        .SeriesInstanceUID
    )
    with pytest.raises(ValueError, match="SeriesInstanceUID"):
        kos_references(broken)


# --- bad input ----------------------------------------------------------------------------------


def test_empty_instance_list_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least one instance"):
        study_to_kos(manifest(instances=()))


@pytest.mark.parametrize(
    "changes",
    [
        {"study_uid": "1.2.03"},  # leading zero in a component
        {"study_uid": "1.2.3."},
        {"study_uid": "1.2.840.abc"},
        {"study_uid": ""},
        {"study_uid": "1." + "2" * 63},  # 65 characters
        {"manifest_series_uid": "2.25 .900"},
        {"manifest_sop_uid": "urn:oid:2.25.901"},
        {"retrieve_location_uid": "repository-1"},
        {"instances": (ManifestInstance("2.25.101", "CT", "2.25.101001"),)},
        {"instances": (ManifestInstance("2.25.101", CT, "2.25.101001\x00"),)},
        {"instances": (ManifestInstance("02.25.101", CT, "2.25.101001"),)},
    ],
    ids=lambda c: next(iter(c)),
)
def test_malformed_uid_is_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="not a valid DICOM UID"):
        study_to_kos(manifest(**changes))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"instances": (ManifestInstance(CT_SERIES, CT, "2.25.1"),) * 2},
            "listed twice",
        ),
        ({"instances": (ManifestInstance(CT_SERIES, CT, "2.25.901"),)}, "reference itself"),
        ({"content_datetime": datetime(2026, 3, 4, 15, 16, 17)}, "time zone"),
        ({"accession": "A" * 17}, "accession"),
        ({"patient": ManifestPatient("MRN\\42")}, "patient.patient_id"),
        ({"study_date": "2026-03-04"}, "study_date"),
        ({"study_time": "10:11"}, "study_time"),
        ({"patient": ManifestPatient("MRN-42", birth_date="1980")}, "birth_date"),
        ({"retrieve_ae_title": "A" * 17}, "retrieve_ae_title"),
        ({"retrieve_url": "https://hub.example.org/dicomweb/studies/2.25.999"}, "retrieve_url"),
        ({"series_number": -1}, "series_number"),
    ],
)
def test_other_bad_input_is_rejected(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        study_to_kos(manifest(**changes))
