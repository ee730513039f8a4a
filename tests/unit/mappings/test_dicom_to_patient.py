"""dicom_to_patient (identifiers by issuer, names, sex, birth date) and identity conflicts."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B.patient import Patient
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from mappings.dicom_to_imagingstudy import extract_instance_summary
from mappings.dicom_to_patient import dicom_to_patient, patient_identity_conflicts
from tests.unit.mappings.dicom_support import make_dataset, roundtrip

SYSTEMS = {"HOSP-A": "http://hospital-a.example.org/mrn"}
DEFAULT = "urn:oid:2.16.840.1.113883.19.5.2"
MR = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}


def patient_of(**attributes: Any) -> dict[str, Any]:
    summary = extract_instance_summary(roundtrip(make_dataset(**attributes)))
    patient = dicom_to_patient(summary, issuer_systems=SYSTEMS, default_system=DEFAULT)
    Patient.model_validate(patient)
    return patient


# --- identifiers: PatientID + IssuerOfPatientID -> system ----------------------------------


def test_issuer_in_the_map() -> None:
    patient = patient_of(PatientID="123", IssuerOfPatientID="HOSP-A")
    assert patient["identifier"] == [{"type": MR, "system": SYSTEMS["HOSP-A"], "value": "123"}]


def test_oid_issuer_becomes_urn_oid() -> None:
    patient = patient_of(PatientID="123", IssuerOfPatientID="2.16.840.1.113883.19.5")
    assert patient["identifier"][0]["system"] == "urn:oid:2.16.840.1.113883.19.5"
    assert "assigner" not in patient["identifier"][0]


def test_no_issuer_uses_the_default_system() -> None:
    assert patient_of(PatientID="123")["identifier"][0]["system"] == DEFAULT


def test_universal_entity_id_of_type_iso() -> None:
    qualifiers = Dataset()
    qualifiers.UniversalEntityID = "1.2.40.0.10.1"
    qualifiers.UniversalEntityIDType = "ISO"
    patient = patient_of(
        PatientID="123",
        IssuerOfPatientID="CLINIC-B",
        IssuerOfPatientIDQualifiersSequence=Sequence([qualifiers]),
    )
    assert patient["identifier"][0]["system"] == "urn:oid:1.2.40.0.10.1"
    assert patient["identifier"][0]["assigner"] == {"display": "CLINIC-B"}


def test_unknown_issuer_gets_its_own_namespace_shared_with_hl7() -> None:
    """Not folded into the default system (no collision with another issuer's patient 123), and
    the same system the HL7 v2 mappings give that authority, so both channels match."""
    from mappings.hl7v2_model import IdentifierSystems

    identifier = patient_of(PatientID="123", IssuerOfPatientID="ELSEWHERE")["identifier"][0]
    expected = IdentifierSystems(SYSTEMS, DEFAULT).system("ELSEWHERE")
    assert identifier == {
        "type": MR,
        "system": expected,
        "value": "123",
        "assigner": {"display": "ELSEWHERE"},
    }
    assert expected not in (DEFAULT, *SYSTEMS.values())


def test_other_patient_ids() -> None:
    first = Dataset()
    first.PatientID = "B-9"
    first.IssuerOfPatientID = "HOSP-A"
    second = Dataset()
    second.PatientID = "123"  # the same identifier as the main one, after mapping: not repeated
    third = Dataset()
    third.PatientID = "C-7"
    third.IssuerOfPatientID = "1.2.3"
    patient = patient_of(PatientID="123", OtherPatientIDsSequence=Sequence([first, second, third]))
    assert patient["identifier"] == [
        {"type": MR, "system": DEFAULT, "value": "123"},
        {"system": SYSTEMS["HOSP-A"], "value": "B-9"},
        {"system": "urn:oid:1.2.3", "value": "C-7"},
    ]


def test_no_patient_id_no_identifier() -> None:
    assert "identifier" not in patient_of(PatientName="Doe^Jane")


# --- demographics --------------------------------------------------------------------------


def test_name_components() -> None:
    patient = patient_of(PatientName="Smith^John^Adam^Dr^Jr")
    assert patient["name"] == [
        {
            "use": "official",
            "text": "Dr John Adam Smith Jr",
            "family": "Smith",
            "given": ["John", "Adam"],
            "prefix": ["Dr"],
            "suffix": ["Jr"],
        }
    ]


def test_malformed_names() -> None:
    # Surplus components are kept in the suffix; spaces are normalised; a lone
    # component is the family name (PS3.5 6.2.1.1).
    assert patient_of(PatientName="Doe^Jane^^^Jr^III")["name"][0]["suffix"] == ["Jr III"]
    assert patient_of(PatientName="  Doe   Smith ^ Jane ")["name"][0]["family"] == "Doe Smith"
    assert patient_of(PatientName="Madonna")["name"][0] == {
        "use": "official",
        "text": "Madonna",
        "family": "Madonna",
    }
    assert "name" not in patient_of(PatientName="^^^^")


def test_japanese_name_groups_carry_their_representation() -> None:
    patient = patient_of(
        SpecificCharacterSet=["", "ISO 2022 IR 87"],
        PatientName="Yamada^Tarou=山田^太郎=やまだ^たろう",
    )
    alphabetic, ideographic, phonetic = patient["name"]
    assert alphabetic["use"] == "official" and alphabetic["family"] == "Yamada"
    representation = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"
    assert ideographic["extension"] == [{"url": representation, "valueCode": "IDE"}]
    assert (ideographic["family"], ideographic["given"], ideographic["text"]) == (
        "山田",
        ["太郎"],
        "山田 太郎",
    )
    assert phonetic["extension"][0]["valueCode"] == "SYL"


@pytest.mark.parametrize(
    ("sex", "gender"), [("M", "male"), ("F", "female"), ("O", "other"), ("X", "unknown")]
)
def test_gender(sex: str, gender: str) -> None:
    assert patient_of(PatientSex=sex)["gender"] == gender


def test_absent_sex_and_invalid_birth_date_are_left_out() -> None:
    patient = patient_of(PatientSex="", PatientBirthDate="19700230")
    assert "gender" not in patient and "birthDate" not in patient
    assert patient_of(PatientBirthDate="19700131")["birthDate"] == "1970-01-31"


# --- identity conflicts: flagged, never merged ---------------------------------------------


def person(family: str, given: str, birth: str | None = None, gender: str | None = None) -> dict:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "name": [{"use": "official", "family": family, "given": [given]}],
    }
    if birth:
        resource["birthDate"] = birth
    if gender:
        resource["gender"] = gender
    return resource


def test_same_person_no_conflict() -> None:
    existing = person("Müller", "José", "1970-01-31", "male")
    assert patient_identity_conflicts(existing, person("MULLER", "jose", "1970-01-31")) == []
    assert patient_identity_conflicts(existing, {"resourceType": "Patient"}) == []


def test_conflicts_are_named_without_phi() -> None:
    existing = person("Doe", "Jane", "1970-01-31", "female")
    incoming = person("Roe", "Janet", "1971-02-01", "male")
    conflicts = patient_identity_conflicts(existing, incoming)
    assert conflicts == [
        "Patient.name.family differs from the existing Patient's",
        "Patient.name.given differs from the existing Patient's",
        "Patient.birthDate differs from the existing Patient's",
        "Patient.gender differs from the existing Patient's",
    ]
    for value in ("Doe", "Roe", "Jane", "1970", "1971"):
        assert not any(value in message for message in conflicts)


def test_unknown_gender_and_ideographic_names_do_not_conflict() -> None:
    existing = person("Yamada", "Tarou", gender="unknown")
    incoming = patient_of(
        SpecificCharacterSet=["", "ISO 2022 IR 87"],
        PatientName="Yamada^Tarou=山田^太郎",
        PatientSex="M",
    )
    assert patient_identity_conflicts(existing, incoming) == []


def test_conflict_between_mapped_patients() -> None:
    existing = patient_of(PatientID="1", PatientName="Doe^Jane", PatientBirthDate="19700131")
    incoming = patient_of(PatientID="1", PatientName="Doe^Jane", PatientBirthDate="19700113")
    assert patient_identity_conflicts(existing, incoming) == [
        "Patient.birthDate differs from the existing Patient's"
    ]
