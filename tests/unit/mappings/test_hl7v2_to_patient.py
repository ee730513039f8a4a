"""PID -> Patient (mappings/hl7v2_to_patient.md) on the corpus in tests/fixtures/hl7v2."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.hl7v2._parser import parse_message
from mappings.hl7v2_model import Mapped, MappingError, merge_update
from mappings.hl7v2_to_patient import hl7v2_to_patient
from tests.unit.mappings.hl7v2_support import PATIENT_SYSTEMS, load, plus_one_hour

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def patient(name: str) -> Mapped:
    return hl7v2_to_patient(load(name), PATIENT_SYSTEMS, plus_one_hour)


def with_id(resource: dict[str, Any]) -> dict[str, Any]:
    return {**resource, "id": "p1"}


def test_v23_identifiers_names_address_phones(collect_for_validation: Any) -> None:
    mapped = patient("adt_a01_v23_inpatient.hl7")
    p = mapped.resource
    assert p["identifier"] == [
        {
            "type": {"coding": [{"system": V2_0203, "code": "MR"}]},
            "system": "urn:oid:2.16.840.1.113883.3.1",  # mapped authority STMARY
            "value": "4455667",
        },
        {
            "type": {"coding": [{"system": V2_0203, "code": "SS"}]},
            "system": "urn:pixelhub:patient-id:SSA",  # unmapped authority: under the default
            "value": "123-45-6789",
        },
    ]
    assert p["name"] == [{"family": "O'BRIEN", "given": ["MARY", "ANNE"], "prefix": ["MRS"]}]
    assert p["birthDate"] == "1955-06-12"
    assert p["gender"] == "female"
    assert p["address"] == [
        {
            "use": "home",
            "line": ["123 ELM ST", "APT 4"],
            "city": "SPRINGFIELD",
            "state": "IL",
            "postalCode": "62701",
            "country": "USA",
        }
    ]
    # v2.3 XTN: the formatted number in component 1; PID-13 home, PID-14 business
    assert p["telecom"] == [
        {"system": "phone", "value": "(217)555-0134", "use": "home"},
        {"system": "phone", "value": "(217)555-0199", "use": "work"},
    ]
    assert mapped.cleared == frozenset()
    collect_for_validation("hl7v2/patient/a01-v23", with_id(p))


def test_latin1_charset_and_escaped_field_separator(collect_for_validation: Any) -> None:
    p = patient("adt_a04_v231_outpatient_latin1.hl7").resource
    assert p["name"][0]["family"] == "Lefèvre"
    assert p["name"][0]["given"] == ["Zoé"]
    assert p["birthDate"] == "1988-02-29"  # a real leap day
    assert p["address"][0]["line"] == ["Rue de l'Église 7|B"]  # \F\ is the field separator
    assert p["address"][0]["city"] == "Liège"
    # v2.5 XTN components: country 32, area 4, local number
    assert p["telecom"] == [{"system": "phone", "value": "+32 (4) 1234567", "use": "home"}]
    collect_for_validation("hl7v2/patient/a04-v231-latin1", with_id(p))


def test_utf8_without_msh18_iso_authority_and_email(collect_for_validation: Any) -> None:
    p = patient("adt_a28_v25_add_person.hl7").resource
    assert p["identifier"][0]["system"] == "urn:oid:1.2.276.0.7230010.3.1.4"  # HD universal id
    assert p["identifier"][0]["type"]["coding"][0]["code"] == "PI"
    assert p["name"][0]["given"] == ["Jürgen"]
    assert p["address"][0]["line"] == ["Hauptstraße 12"]
    assert {"system": "email", "value": "j.schmidt@example.org"} in p["telecom"]
    assert p["gender"] == "male"
    collect_for_validation("hl7v2/patient/a28-v25", with_id(p))


def test_name_type_code_sets_use() -> None:
    p = patient("adt_a31_v26_update_person.hl7").resource
    assert p["name"] == [
        {"use": "official", "family": "Schmidt", "given": ["Jürgen", "Karl"], "prefix": ["Dr."]}
    ]


def test_null_deletes_and_empty_keeps() -> None:
    """v2 ch. 2 §2.5.3: "" deletes the stored value, an empty field changes nothing."""
    stored = with_id(patient("adt_a01_v23_inpatient.hl7").resource)
    stored["meta"] = {"versionId": "1"}
    update = patient("adt_a08_v24_update_null.hl7")
    assert update.cleared == frozenset({"address", "telecom"})
    merged = merge_update(stored, update)
    assert "address" not in merged and "telecom" not in merged
    assert merged["birthDate"] == "1955-06-12"
    assert "meta" not in merged
    # the SS identifier the A08 did not repeat is kept
    assert [i["value"] for i in merged["identifier"]] == ["4455667", "123-45-6789"]


def test_missing_pid3_is_error_101() -> None:
    with pytest.raises(MappingError) as err:
        patient("bad/missing_pid3.hl7")
    assert err.value.code == 101
    assert (err.value.location.segment, err.value.location.field) == ("PID", 3)  # type: ignore[union-attr]


def test_invalid_birth_date_is_error_102() -> None:
    with pytest.raises(MappingError) as err:
        patient("bad/invalid_date.hl7")
    assert err.value.code == 102
    assert err.value.location is not None and err.value.location.field == 7


def test_unknown_sex_is_error_103() -> None:
    msg = parse_message(
        b"MSH|^~\\&|A|F|B|G|20240101||ADT^A28|1|P|2.5.1\rPID|1||1^^^X^MR||Doe^J||19800101|Q\r"
    )
    with pytest.raises(MappingError) as err:
        hl7v2_to_patient(msg, PATIENT_SYSTEMS, plus_one_hour)
    assert err.value.code == 103


def test_missing_pid_segment_is_error_100() -> None:
    msg = parse_message(b"MSH|^~\\&|A|F|B|G|20240101||ADT^A28|1|P|2.5.1\rPV1|1|O\r")
    with pytest.raises(MappingError) as err:
        hl7v2_to_patient(msg, PATIENT_SYSTEMS, plus_one_hour)
    assert err.value.code == 100
