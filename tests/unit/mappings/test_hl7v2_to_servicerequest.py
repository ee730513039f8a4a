"""ORM^O01 / OMI^O23 / OMG^O19 -> ServiceRequest (mappings/hl7v2_to_servicerequest.md)."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest

from adapters.hl7v2._parser import parse_message
from mappings.hl7v2_model import Hl7Message, MappingError, merge_update
from mappings.hl7v2_to_servicerequest import OrderMapping, hl7v2_to_servicerequest
from tests.unit.mappings.hl7v2_support import (
    ACCESSION_SYSTEMS,
    ORDER_SYSTEMS,
    load,
    plus_one_hour,
)

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def orders(name: str) -> list[OrderMapping]:
    return hl7v2_to_servicerequest(
        load(name), "Patient/p1", ORDER_SYSTEMS, ACCESSION_SYSTEMS, plus_one_hour
    )


def typed(resource: dict[str, Any], code: str) -> list[dict[str, Any]]:
    return [
        i
        for i in resource["identifier"]
        if any(c.get("code") == code for c in i.get("type", {}).get("coding", []))
    ]


def test_omi_o23_ipc(collect_for_validation: Any) -> None:
    [order] = orders("omi_o23_v251_ihe_rad4.hl7")
    sr = order.mapped.resource
    assert typed(sr, "PLAC") == [
        {
            "type": {"coding": [{"system": V2_0203, "code": "PLAC"}]},
            "system": "urn:pixelhub:hl7v2:order:KIS",
            "value": "PO-9001",
        }
    ]
    assert typed(sr, "FILL")[0]["value"] == "FO-9001"
    assert typed(sr, "ACSN")[0] == {
        "type": {"coding": [{"system": V2_0203, "code": "ACSN"}]},
        "system": "urn:pixelhub:accession:NORTHRAD",
        "value": "ACC-NR-5001",
    }
    assert order.accession == typed(sr, "ACSN")[0]
    assert {
        "system": "urn:dicom:uid",
        "value": "urn:oid:1.2.276.0.7230010.3.1.2.8323329.5001",
    } in sr["identifier"]
    assert {"type": {"text": "Requested Procedure ID"}, "value": "RP-NR-5001"} in sr["identifier"]
    sps = [
        i["value"]
        for i in sr["identifier"]
        if i.get("type", {}).get("text") == "Scheduled Procedure Step ID"
    ]
    assert sps == ["SPS-NR-5001-1", "SPS-NR-5001-2"]
    assert sr["status"] == "active" and sr["intent"] == "order"
    assert sr["code"]["coding"][1] == {
        "system": "http://loinc.org",
        "code": "24725-4",
        "display": "CT Head",
    }
    assert [d["coding"][0]["code"] for d in sr["orderDetail"]] == ["CT", "SR"]
    assert sr["category"] == [
        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "CT"}]}
    ]
    assert sr["priority"] == "stat"  # TQ1-9 S
    assert sr["occurrenceDateTime"] == "2024-03-06T08:00:00+01:00"  # TQ1-7
    assert sr["authoredOn"] == "2024-03-05T10:15:00+01:00"  # ORC-9
    assert sr["requester"]["display"] == "Anna Weber"
    assert sr["reasonCode"][0]["coding"][0] == {
        "system": "http://hl7.org/fhir/sid/icd-10",
        "code": "S06.0",
        "display": "Gehirnerschütterung",
    }
    assert sr["note"] == [{"text": "Sturz, Kopfschmerz"}]
    # IPC-6 is the Protocol Code, not a station: no IPC names a station (IPC-7/8/9 empty)
    assert "performer" not in sr and "locationCode" not in sr
    collect_for_validation("hl7v2/servicerequest/omi-o23", {**sr, "id": "sr1"})


def test_orm_o01_ihe_rad4_v231(collect_for_validation: Any) -> None:
    [order] = orders("orm_o01_v231_ihe_rad4.hl7")
    sr = order.mapped.resource
    # v2.3.1 IHE RAD-4: accession in OBR-18, requested procedure OBR-19, SPS OBR-20
    assert typed(sr, "ACSN")[0]["value"] == "ACC-2024-0001"
    assert typed(sr, "ACSN")[0]["system"] == "urn:pixelhub:accession"
    assert {"type": {"text": "Requested Procedure ID"}, "value": "RP-0001"} in sr["identifier"]
    # IHE ZDS-1 carries the Study Instance UID; the Z-segment is kept verbatim
    assert {
        "system": "urn:dicom:uid",
        "value": "urn:oid:1.2.840.113619.2.55.3.2831164356.781.1710496200.1",
    } in sr["identifier"]
    assert sr["extension"][0]["valueString"].startswith("ZDS|1.2.840.113619")
    assert sr["occurrenceDateTime"] == "2024-03-16T09:00:00+01:00"  # OBR-27.4 (TQ)
    assert sr["priority"] == "routine"  # OBR-27.6
    assert sr["code"]["coding"][0]["system"] == "http://www.ama-assn.org/go/cpt"
    assert sr["reasonCode"] == [
        {
            "coding": [
                {"system": "http://hl7.org/fhir/sid/icd-10", "code": "R05", "display": "Cough"}
            ],
            "text": "Cough",
        }
    ]
    assert order.keys[0]["value"] == "ORD-77001" and order.order_control == "NW"
    collect_for_validation("hl7v2/servicerequest/orm-o01-v231", {**sr, "id": "sr2"})


def test_omg_o19_dg1_and_nte(collect_for_validation: Any) -> None:
    [order] = orders("omg_o19_v26_general.hl7")
    sr = order.mapped.resource
    assert [r["coding"][0]["code"] for r in sr["reasonCode"]] == ["R10.11", "K80.20"]
    assert {"text": "Patient fasting from midnight"} in sr["note"]
    assert sr["category"][0]["coding"][0]["code"] == "RAD" and sr["category"][0]["text"] == "US"
    assert not typed(sr, "FILL")
    collect_for_validation("hl7v2/servicerequest/omg-o19", {**sr, "id": "sr3"})


@pytest.mark.parametrize(
    ("control", "status", "expected"),
    [
        ("NW", "", "active"),
        ("NW", "SC", "active"),
        ("XO", "", "active"),
        ("SC", "IP", "active"),
        ("SC", "CM", "completed"),
        ("CA", "", "revoked"),
        ("OC", "CA", "revoked"),
        ("DC", "", "revoked"),
        ("HD", "", "on-hold"),
        ("SC", "ER", "entered-in-error"),
    ],
)
def test_order_control_and_status_drive_status(control: str, status: str, expected: str) -> None:
    msg = parse_message(
        f"MSH|^~\\&|RIS|F|PH|F|20240101||ORM^O01|1|P|2.4\rPID|1||1^^^X^MR\r"
        f"ORC|{control}|P1^RIS|F1^PACS||{status}\rOBR|1|P1^RIS|F1^PACS|X^Chest^L\r".encode()
    )
    [order] = hl7v2_to_servicerequest(msg, "Patient/p", ORDER_SYSTEMS, ACCESSION_SYSTEMS)
    assert order.mapped.resource["status"] == expected


def test_cancel_merges_into_stored_order() -> None:
    [new] = orders("orm_o01_v231_ihe_rad4.hl7")
    [cancel] = orders("orm_o01_v23_cancel.hl7")
    stored = {**new.mapped.resource, "id": "sr2"}
    merged = merge_update(stored, cancel.mapped)
    assert merged["status"] == "revoked"
    assert typed(merged, "ACSN")[0]["value"] == "ACC-2024-0001"  # kept: not in the CA message
    assert merged["occurrenceDateTime"] == stored["occurrenceDateTime"]


def test_unknown_order_control_is_103() -> None:
    msg = parse_message(
        b"MSH|^~\\&|RIS|F|PH|F|20240101||ORM^O01|1|P|2.4\rPID|1||1^^^X^MR\r"
        b"ORC|ZZ|P1^RIS\rOBR|1|P1^RIS||X^Chest^L\r"
    )
    with pytest.raises(MappingError) as err:
        hl7v2_to_servicerequest(msg, "Patient/p", ORDER_SYSTEMS, ACCESSION_SYSTEMS)
    assert err.value.code == 103


def test_missing_obr4_is_101_and_missing_orc_is_100() -> None:
    msg = parse_message(
        b"MSH|^~\\&|RIS|F|PH|F|20240101||ORM^O01|1|P|2.4\rPID|1||1^^^X^MR\rORC|NW|P1^RIS\rOBR|1|P1^RIS\r"
    )
    with pytest.raises(MappingError) as err:
        hl7v2_to_servicerequest(msg, "Patient/p", ORDER_SYSTEMS, ACCESSION_SYSTEMS)
    assert (err.value.code, err.value.location.field) == (101, 4)  # type: ignore[union-attr]
    msg = parse_message(
        b"MSH|^~\\&|RIS|F|PH|F|20240101||ORM^O01|1|P|2.4\rPID|1||1^^^X^MR\rOBR|1|P1^RIS||X^Y^L\r"
    )
    with pytest.raises(MappingError) as err:
        hl7v2_to_servicerequest(msg, "Patient/p", ORDER_SYSTEMS, ACCESSION_SYSTEMS)
    assert err.value.code == 100


def test_invalid_scheduled_time_is_102() -> None:
    msg = parse_message(
        b"MSH|^~\\&|RIS|F|PH|F|20240101||OMI^O23|1|P|2.5.1\rPID|1||1^^^X^MR\rORC|NW|P1^RIS\r"
        b"TQ1|1||||||20241332250000\rOBR|1|P1^RIS||X^Y^L\r"
    )
    with pytest.raises(MappingError) as err:
        hl7v2_to_servicerequest(msg, "Patient/p", ORDER_SYSTEMS, ACCESSION_SYSTEMS)
    assert err.value.code == 102 and err.value.location is not None
    assert (err.value.location.segment, err.value.location.field) == ("TQ1", 7)


def omi(*ipcs: str) -> Hl7Message:
    """An OMI^O23 (v2.5.1) with the given IPC segments."""
    return parse_message(
        (
            "MSH|^~\\&|RIS|NORTHRAD|PIXELHUB|NORTHRAD|20240305101500+0100||OMI^O23^OMI_O23|1|P|"
            "2.5.1\rPID|1||H-1^^^NORTHRAD^MR\rORC|NW|PO-1^KIS|FO-1^RIS||SC\r"
            "OBR|1|PO-1^KIS|FO-1^RIS|X^Exam^L\r" + "".join(f"{ipc}\r" for ipc in ipcs)
        ).encode()
    )


# IPC-5 modality, IPC-6 protocol, IPC-7 station name, IPC-8 location, IPC-9 AE title (§4.5.6)
IPC_CT = "IPC|ACC-1^NR|RP-1|1.2.3|SPS-1|CT^^DCM||CT Scanner 1|ROOM-1^CT room 1^L|CT1"
IPC_MR = "IPC|ACC-1^NR|RP-1|1.2.3|SPS-2|MR^^DCM||MR Scanner 1|ROOM-2^MR room^L|MR1"
CT1 = {"type": "Device", "identifier": {"system": "urn:dicom:ae", "value": "CT1"}}


def stations(*ipcs: str) -> dict[str, Any]:
    [order] = hl7v2_to_servicerequest(omi(*ipcs), "Patient/p", ORDER_SYSTEMS, ACCESSION_SYSTEMS)
    resource: dict[str, Any] = order.mapped.resource
    ServiceRequest.model_validate({**resource, "id": "sr"})  # valid R4 (R4B shares it)
    return resource


def test_ipc_stations_and_locations_one_per_step(collect_for_validation: Any) -> None:
    sr = stations(IPC_CT, IPC_MR)
    assert sr["performer"] == [
        {**CT1, "display": "CT Scanner 1"},
        {
            "type": "Device",
            "identifier": {"system": "urn:dicom:ae", "value": "MR1"},
            "display": "MR Scanner 1",
        },
    ]
    assert [c["coding"][0]["code"] for c in sr["locationCode"]] == ["ROOM-1", "ROOM-2"]
    assert sr["locationCode"][0]["text"] == "CT room 1"
    collect_for_validation("hl7v2/servicerequest/omi-o23-stations", {**sr, "id": "sr4"})


def test_ipc_stations_the_same_for_every_step_are_named_once() -> None:
    sr = stations(IPC_CT, IPC_CT.replace("SPS-1", "SPS-2"))
    assert sr["performer"] == [{**CT1, "display": "CT Scanner 1"}]
    assert len(sr["locationCode"]) == 1


@pytest.mark.parametrize(
    ("ipc", "performer"),
    [
        ("IPC|A^NR|R|1.2|S|CT^^DCM||||CT1", [CT1]),  # AE title only
        ("IPC|A^NR|R|1.2|S|CT^^DCM|||| CT1 ", [CT1]),  # spaces not significant (AE)
        ("IPC|A^NR|R|1.2|S|CT^^DCM||Room scanner", [{"type": "Device", "display": "Room scanner"}]),
        ('IPC|A^NR|R|1.2|S|CT^^DCM||""||""', None),  # HL7 null: no station
        ("IPC|A^NR|R|1.2|S|CT^^DCM|PROTO^Protocol", None),  # IPC-6 is no station
    ],
)
def test_ipc_station_fields(ipc: str, performer: list[dict[str, Any]] | None) -> None:
    sr = stations(ipc)
    assert sr.get("performer") == performer
    assert "locationCode" not in sr
