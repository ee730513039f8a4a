"""extract_instance_summary: required UIDs, character sets, person names, sequences, round trip."""

from __future__ import annotations

import json

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from mappings.dicom_to_imagingstudy import (
    CodedConcept,
    DicomMappingError,
    InstanceSummary,
    Issuer,
    PersonName,
    extract_instance_summary,
)
from tests.unit.mappings.dicom_support import (
    FIXTURES,
    code,
    decode,
    encode,
    make_dataset,
    roundtrip,
)

# --- required UIDs -> DicomMappingError (the SCP answers 0xA900 / 0xC000) ---------------------


@pytest.mark.parametrize(
    ("keyword", "tag"),
    [
        ("StudyInstanceUID", "(0020,000D)"),
        ("SeriesInstanceUID", "(0020,000E)"),
        ("SOPInstanceUID", "(0008,0018)"),
        ("SOPClassUID", "(0008,0016)"),
    ],
)
def test_missing_uid_is_a_dicom_mapping_error(keyword: str, tag: str) -> None:
    ds = make_dataset(**{keyword: None})
    with pytest.raises(DicomMappingError) as caught:
        extract_instance_summary(ds)
    assert isinstance(caught.value, ValueError)
    assert caught.value.tag == tag
    assert caught.value.keyword == keyword
    assert keyword in str(caught.value) and tag in str(caught.value)


def test_empty_uid_counts_as_missing() -> None:
    with pytest.raises(DicomMappingError, match="SOPInstanceUID"):
        extract_instance_summary(make_dataset(SOPInstanceUID=""))


@pytest.mark.parametrize("bad", ["1.2.abc", "1..2", "1.2.", "9" * 65])
def test_malformed_uid_is_rejected(bad: str) -> None:
    ds = Dataset()
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    # Assigned as raw text: pydicom would warn about the invalid UI value on assignment.
    ds.add_new(0x00080018, "UI", None)
    ds[0x00080018]._value = bad
    with pytest.raises(DicomMappingError, match="not a valid UID") as caught:
        extract_instance_summary(ds)
    assert caught.value.tag == "(0008,0018)"


def test_uids_and_numbers() -> None:
    ds = make_dataset(InstanceNumber="7", SeriesNumber="3", NumberOfFrames="12")
    summary = extract_instance_summary(ds)
    assert summary.study_instance_uid == "1.2.826.0.1.3680043.10.1234.1"
    assert summary.series_instance_uid.endswith(".1")
    assert summary.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
    assert (summary.instance_number, summary.series_number, summary.number_of_frames) == (7, 3, 12)


def test_transfer_syntax_from_file_meta_else_from_the_caller() -> None:
    read = roundtrip(make_dataset())
    assert extract_instance_summary(read).transfer_syntax_uid == "1.2.840.10008.1.2.1"
    bare = make_dataset()  # as received over DIMSE: no file meta
    summary = extract_instance_summary(bare, transfer_syntax_uid="1.2.840.10008.1.2.4.50")
    assert summary.transfer_syntax_uid == "1.2.840.10008.1.2.4.50"


# --- Specific Character Set (0008,0005), decoded from the raw bytes after a round trip --------


def test_iso_ir_100_latin1_accents() -> None:
    ds = make_dataset(
        SpecificCharacterSet="ISO_IR 100",
        PatientName="Müller^François^Hélène",
        StudyDescription="Épaule droite",
    )
    read = roundtrip(ds)
    raw = read.get_item("PatientName").value
    assert isinstance(raw, bytes) and b"\xfc" in raw  # ü as one Latin-1 byte on the wire
    summary = extract_instance_summary(read)
    assert summary.patient_name == PersonName(alphabetic="Müller^François^Hélène")
    assert summary.study_description == "Épaule droite"
    assert summary.specific_character_set == ("ISO_IR 100",)


def test_iso_ir_192_utf8() -> None:
    ds = make_dataset(
        SpecificCharacterSet="ISO_IR 192",
        PatientName="Ñandú^Zoë=Ωμέγα^Ζωή",
        InstitutionName="Клиника №1",
    )
    read = roundtrip(ds)
    assert "Ñ".encode() in read.get_item("PatientName").value
    summary = extract_instance_summary(read)
    assert summary.patient_name == PersonName(alphabetic="Ñandú^Zoë", ideographic="Ωμέγα^Ζωή")
    assert summary.institution_name == "Клиника №1"


def test_iso_2022_ir_87_japanese() -> None:
    ds = make_dataset(
        SpecificCharacterSet=["", "ISO 2022 IR 87"],
        PatientName="Yamada^Tarou=山田^太郎=やまだ^たろう",
    )
    read = roundtrip(ds)
    raw = read.get_item("PatientName").value
    assert b"\x1b$B" in raw  # the ISO 2022 escape to JIS X 0208
    summary = extract_instance_summary(read)
    assert summary.patient_name == PersonName(
        alphabetic="Yamada^Tarou", ideographic="山田^太郎", phonetic="やまだ^たろう"
    )
    assert summary.specific_character_set == ("", "ISO 2022 IR 87")


def test_undecodable_bytes_keep_the_instance() -> None:
    data = encode(make_dataset(SpecificCharacterSet="ISO_IR 192", PatientName="Doe^Jane"))
    read = decode(data.replace(b"Doe^Jane", b"Doe^J\xffne"))  # same length, not UTF-8
    with pytest.warns(UserWarning, match="decode"):
        summary = extract_instance_summary(read)
    assert summary.patient_name is not None
    assert summary.patient_name.alphabetic.startswith("Doe^J")
    assert "\ufffd" in summary.patient_name.alphabetic


# --- person names ----------------------------------------------------------------------------


def test_empty_or_caret_only_names_are_absent() -> None:
    summary = extract_instance_summary(
        make_dataset(PatientName="^^^^", ReferringPhysicianName="", OperatorsName=["", "^"])
    )
    assert summary.patient_name is None
    assert summary.referring_physician is None
    assert summary.operators == ()


def test_multivalued_names() -> None:
    summary = extract_instance_summary(
        make_dataset(
            PerformingPhysicianName=["Grey^Meredith", "Shepherd^Derek"],
            NameOfPhysiciansReadingStudy=["House^Gregory"],
            PatientName=["First^Value", "Second^Value"],  # malformed: VM 1
        )
    )
    assert [n.alphabetic for n in summary.performing_physicians] == [
        "Grey^Meredith",
        "Shepherd^Derek",
    ]
    assert summary.reading_physicians == (PersonName(alphabetic="House^Gregory"),)
    assert summary.patient_name == PersonName(alphabetic="First^Value")


# --- study, series, request attributes ---------------------------------------------------------


def test_issuers_and_identifiers() -> None:
    accession_issuer = Dataset()
    accession_issuer.LocalNamespaceEntityID = "RIS"
    accession_issuer.UniversalEntityID = "1.2.3.4"
    accession_issuer.UniversalEntityIDType = "ISO"
    qualifiers = Dataset()
    qualifiers.UniversalEntityID = "2.16.840.1.113883.19.5"
    qualifiers.UniversalEntityIDType = "ISO"
    other = Dataset()
    other.PatientID = "OTHER-9"
    other.IssuerOfPatientID = "CLINIC"
    other.TypeOfPatientID = "TEXT"
    admission_issuer = Dataset()
    admission_issuer.LocalNamespaceEntityID = "ADT"
    ds = make_dataset(
        AccessionNumber="ACC1",
        IssuerOfAccessionNumberSequence=Sequence([accession_issuer]),
        PatientID="MRN1",
        IssuerOfPatientID="HOSP",
        IssuerOfPatientIDQualifiersSequence=Sequence([qualifiers]),
        OtherPatientIDsSequence=Sequence([other]),
        AdmissionID="ADM1",
        IssuerOfAdmissionIDSequence=Sequence([admission_issuer]),
    )
    summary = extract_instance_summary(ds)
    assert summary.accession_issuer == Issuer("RIS", "1.2.3.4", "ISO")
    assert summary.patient_id_issuer == Issuer("HOSP", "2.16.840.1.113883.19.5", "ISO")
    assert summary.other_patient_ids[0].value == "OTHER-9"
    assert summary.other_patient_ids[0].issuer == Issuer("CLINIC")
    assert summary.other_patient_ids[0].type == "TEXT"
    assert (summary.admission_id, summary.admission_id_issuer) == ("ADM1", Issuer("ADT"))


def test_reasons_from_top_level_and_request_attributes() -> None:
    request = Dataset()
    request.ReasonForTheRequestedProcedure = "Suspected fracture"
    request.ReasonForRequestedProcedureCodeSequence = Sequence(
        [code("125605004", "SCT", "Fracture of bone")]
    )
    ds = make_dataset(
        RequestAttributesSequence=Sequence([request]),
        ReasonForPerformedProcedureCodeSequence=Sequence([code("22253000", "SCT", "Pain")]),
        ProcedureCodeSequence=Sequence([code("RPID16", "RADLEX", "CT HEAD WO IV CONTRAST")]),
    )
    summary = extract_instance_summary(ds)
    assert summary.reasons == ("Suspected fracture",)
    assert summary.reason_codes == (
        CodedConcept("22253000", "SCT", "Pain"),
        CodedConcept("125605004", "SCT", "Fracture of bone"),
    )
    assert summary.procedure_codes == (CodedConcept("RPID16", "RADLEX", "CT HEAD WO IV CONTRAST"),)


def test_long_code_value_and_code_items_without_value() -> None:
    long_code = Dataset()
    long_code.LongCodeValue = "A" * 20
    long_code.CodingSchemeDesignator = "99LOCAL"
    long_code.CodeMeaning = "Long"
    empty = Dataset()
    empty.CodeMeaning = "no value"
    summary = extract_instance_summary(
        make_dataset(ProcedureCodeSequence=Sequence([long_code, empty]))
    )
    assert summary.procedure_codes == (CodedConcept("A" * 20, "99LOCAL", "Long"),)


@pytest.mark.parametrize(
    ("attributes", "title"),
    [
        ({"DocumentTitle": "Report", "ContentLabel": "SEG"}, "Report"),
        (
            {
                "ConceptNameCodeSequence": Sequence([code("113000", "DCM", "Of Interest")]),
                "ContentLabel": "LABEL",
            },
            "Of Interest",
        ),
        ({"ContentLabel": "LIVER_SEG"}, "LIVER_SEG"),
        ({}, ""),
    ],
)
def test_title_precedence(attributes: dict[str, object], title: str) -> None:
    assert extract_instance_summary(make_dataset(**attributes)).title == title


def test_laterality_and_anatomy_from_functional_groups() -> None:
    anatomy = Dataset()
    anatomy.FrameLaterality = "L"
    anatomy.AnatomicRegionSequence = Sequence([code("76752008", "SCT", "Breast")])
    shared = Dataset()
    shared.FrameAnatomySequence = Sequence([anatomy])
    summary = extract_instance_summary(
        make_dataset(SharedFunctionalGroupsSequence=Sequence([shared]))
    )
    assert summary.image_laterality == "L"
    assert summary.anatomic_regions == (CodedConcept("76752008", "SCT", "Breast"),)


def test_unconvertible_values_are_absent_not_fatal() -> None:
    ds = make_dataset()
    ds.add_new(0x00200013, "IS", None)
    ds[0x00200013]._value = "seven"  # InstanceNumber: not an integer string
    summary = extract_instance_summary(ds)
    assert summary.instance_number is None


# --- the summary as a stored record ----------------------------------------------------------


def test_json_round_trip_of_a_rich_summary() -> None:
    path = FIXTURES / "sm-colon-he.dcm"
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    ds.OtherPatientIDsSequence = Sequence([Dataset()])
    ds.OtherPatientIDsSequence[0].PatientID = "X1"
    summary = extract_instance_summary(ds)
    assert summary.specimens and summary.specimens[0].steps
    stored = json.loads(json.dumps(summary.to_json_dict()))
    assert InstanceSummary.from_json_dict(stored) == summary
