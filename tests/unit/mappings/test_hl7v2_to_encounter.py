"""PV1/PV2 -> Encounter (mappings/hl7v2_to_encounter.md)."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.hl7v2._parser import parse_message
from mappings.hl7v2_model import Mapped, MappingError, merge_update
from mappings.hl7v2_to_encounter import complete_new_encounter, hl7v2_to_encounter
from tests.unit.mappings.hl7v2_support import PATIENT_SYSTEMS, load, plus_one_hour

PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"


def encounter(name: str) -> Mapped | None:
    msg = load(name)
    return hl7v2_to_encounter(msg, msg.trigger_event, "Patient/p1", PATIENT_SYSTEMS, plus_one_hour)


def test_a01_admit(collect_for_validation: Any) -> None:
    mapped = encounter("adt_a01_v23_inpatient.hl7")
    assert mapped is not None
    e = mapped.resource
    assert e["status"] == "in-progress"
    assert e["class"]["code"] == "IMP"
    assert e["identifier"] == [
        {
            "type": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "VN"}
                ]
            },
            "system": "urn:oid:2.16.840.1.113883.3.1",
            "value": "V-STM-1001",
        }
    ]
    assert e["subject"] == {"reference": "Patient/p1"}
    assert e["location"] == [{"location": {"display": "STMARY, 3WEST, room 312, bed B"}}]
    roles = [
        (p["type"][0]["coding"][0]["code"], p["individual"]["display"]) for p in e["participant"]
    ]
    assert roles == [
        ("ATND", "DR ROBERT A JONES"),
        ("REF", "DR SUSAN LEE"),
        ("ADM", "DR ANIL PATEL"),
    ]
    assert e["participant"][0]["individual"]["identifier"] == {
        "system": "urn:pixelhub:hl7v2:practitioner",
        "value": "1122",
    }
    # v2.3 admit time without a zone: the sender's offset is applied
    assert e["period"] == {"start": "2004-03-15T10:00:00+01:00"}
    assert e["reasonCode"] == [
        {"coding": [{"code": "CHEST PAIN", "display": "Chest pain"}], "text": "Chest pain"}
    ]
    collect_for_validation("hl7v2/encounter/a01", {**e, "id": "e1"})


def test_a04_register_outpatient(collect_for_validation: Any) -> None:
    mapped = encounter("adt_a04_v231_outpatient_latin1.hl7")
    assert mapped is not None
    assert mapped.resource["status"] == "arrived"
    assert mapped.resource["class"]["code"] == "AMB"
    collect_for_validation("hl7v2/encounter/a04", {**mapped.resource, "id": "e2"})


def test_a03_discharge_then_a13_cancel_discharge(collect_for_validation: Any) -> None:
    admitted = {**encounter("adt_a01_v23_inpatient.hl7").resource, "id": "e1"}  # type: ignore[union-attr]
    discharge = encounter("adt_a03_v251_discharge.hl7")
    assert discharge is not None
    assert discharge.resource["status"] == "finished"
    after_a03 = merge_update(admitted, discharge)
    assert after_a03["period"] == {
        "start": "2024-03-15T10:00:00-05:00",
        "end": "2024-03-18T11:30:00-05:00",
    }
    cancel = encounter("adt_a13_v251_cancel_discharge.hl7")
    assert cancel is not None
    assert cancel.cleared == frozenset({"period.end"})
    after_a13 = merge_update(after_a03, cancel)
    assert after_a13["status"] == "in-progress"
    assert after_a13["period"] == {"start": "2024-03-15T10:00:00-05:00"}
    collect_for_validation("hl7v2/encounter/a13", after_a13)


def test_a11_cancel_admit() -> None:
    mapped = encounter("adt_a11_v251_cancel_admit.hl7")
    assert mapped is not None and mapped.resource["status"] == "cancelled"


def test_a08_keeps_status_and_new_encounter_gets_required_elements() -> None:
    mapped = encounter("adt_a08_v24_update_null.hl7")
    assert mapped is not None and "status" not in mapped.resource
    created = complete_new_encounter(merge_update(None, mapped))
    assert created["status"] == "unknown"
    assert created["class"]["code"] == "IMP"


def test_person_events_have_no_encounter() -> None:
    assert encounter("adt_a28_v25_add_person.hl7") is None
    assert encounter("adt_a31_v26_update_person.hl7") is None


def test_visit_event_without_visit_number_is_101() -> None:
    msg = parse_message(
        b"MSH|^~\\&|A|F|B|G|20240101||ADT^A03|1|P|2.5.1\rPID|1||1^^^X^MR\rPV1|1|I\r"
    )
    with pytest.raises(MappingError) as err:
        hl7v2_to_encounter(msg, "A03", "Patient/p", PATIENT_SYSTEMS, plus_one_hour)
    assert err.value.code == 101
    assert err.value.location is not None and err.value.location.field == 19


def test_unknown_patient_class_is_103() -> None:
    msg = parse_message(
        b"MSH|^~\\&|A|F|B|G|20240101||ADT^A01|1|P|2.5.1\rPID|1||1^^^X^MR\r"
        b"PV1|1|Z|||||||||||||||||V1\r"
    )
    with pytest.raises(MappingError) as err:
        hl7v2_to_encounter(msg, "A01", "Patient/p", PATIENT_SYSTEMS, plus_one_hour)
    assert err.value.code == 103
