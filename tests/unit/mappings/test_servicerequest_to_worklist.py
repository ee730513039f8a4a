"""ServiceRequest + Patient -> Modality Worklist items (mappings/servicerequest_to_worklist.md),
golden on the real HL7 orders of tests/fixtures/hl7v2 run through the HL7 mappings first."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.hl7v2._parser import parse_message
from mappings.hl7v2_to_patient import hl7v2_to_patient
from mappings.hl7v2_to_servicerequest import hl7v2_to_servicerequest
from mappings.servicerequest_to_worklist import (
    is_worklist_order,
    issuer_of_system,
    servicerequest_to_worklist,
)
from tests.unit.mappings.hl7v2_support import (
    ACCESSION_SYSTEMS,
    ORDER_SYSTEMS,
    PATIENT_SYSTEMS,
    load,
    plus_one_hour,
)

ISSUERS = {"STMARY": "urn:oid:2.16.840.1.113883.3.1"}


def worklist(name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    msg = load(name)
    patient = hl7v2_to_patient(msg, PATIENT_SYSTEMS, plus_one_hour).resource
    orders = [
        o.mapped.resource
        for o in hl7v2_to_servicerequest(
            msg, "Patient/p1", ORDER_SYSTEMS, ACCESSION_SYSTEMS, plus_one_hour
        )
    ]
    items = [
        item
        for order in orders
        for item in servicerequest_to_worklist(order, patient, issuer_systems=ISSUERS)
    ]
    return orders, items


def step(sps_id: str, modality: str, description: str, date: str, time: str) -> dict[str, str]:
    return {
        "ScheduledStationAETitle": "",
        "ScheduledStationName": "",
        "ScheduledProcedureStepLocation": "",
        "ScheduledProcedureStepStartDate": date,
        "ScheduledProcedureStepStartTime": time,
        "Modality": modality,
        "ScheduledPerformingPhysicianName": "",
        "ScheduledProcedureStepDescription": description,
        "ScheduledProcedureStepID": sps_id,
        "ScheduledProcedureStepStatus": "SCHEDULED",
    }


def test_omi_o23_two_ipc_segments_give_two_steps() -> None:
    orders, items = worklist("omi_o23_v251_ihe_rad4.hl7")
    assert [is_worklist_order(o) for o in orders] == [True]
    common = {
        "AccessionNumber": "ACC-NR-5001",
        "ReferringPhysicianName": "Anna Weber",
        "RequestedProcedureID": "RP-NR-5001",
        "RequestedProcedureDescription": "CT Schädel nativ",
        "RequestedProcedureCodeSequence": [
            {"CodeValue": "24725-4", "CodingSchemeDesignator": "LN", "CodeMeaning": "CT Head"}
        ],
        "RequestedProcedurePriority": "STAT",
        "StudyInstanceUID": "1.2.276.0.7230010.3.1.2.8323329.5001",
        "PatientName": "Müller^Hans^^Dr.",
        "PatientID": "H-112233",
        "IssuerOfPatientID": "NORTHRAD",
        "PatientBirthDate": "19700101",
        "PatientSex": "M",
    }
    assert items == [
        {
            **common,
            "ScheduledProcedureStepSequence": [
                step("SPS-NR-5001-1", "CT", "CT Schädel nativ", "20240306", "080000")
            ],
        },
        {
            **common,
            "ScheduledProcedureStepSequence": [
                step("SPS-NR-5001-2", "SR", "CT Schädel nativ", "20240306", "080000")
            ],
        },
    ]


def test_orm_o01_v231_obr_fields_and_zds() -> None:
    orders, items = worklist("orm_o01_v231_ihe_rad4.hl7")
    assert [is_worklist_order(o) for o in orders] == [True]
    assert items == [
        {
            "AccessionNumber": "ACC-2024-0001",
            "ReferringPhysicianName": "DR ROBERT A JONES",
            "RequestedProcedureID": "RP-0001",
            "RequestedProcedureDescription": "XR CHEST 2 VIEWS",
            "RequestedProcedureCodeSequence": [
                {
                    "CodeValue": "71020",
                    "CodingSchemeDesignator": "C4",
                    "CodeMeaning": "XR CHEST 2 VIEWS",
                }
            ],
            "RequestedProcedurePriority": "ROUTINE",
            "StudyInstanceUID": "1.2.840.113619.2.55.3.2831164356.781.1710496200.1",
            "PatientName": "O'BRIEN^MARY^ANNE^MRS",
            "PatientID": "4455667",
            "IssuerOfPatientID": "STMARY",
            "PatientBirthDate": "19550612",
            "PatientSex": "F",
            "ScheduledProcedureStepSequence": [
                step("SPS-0001", "CR", "XR CHEST 2 VIEWS", "20240316", "090000")
            ],
        }
    ]


def test_cancelled_and_status_change_orders_are_not_on_the_worklist() -> None:
    cancelled, _ = worklist("orm_o01_v23_cancel.hl7")
    assert [o["status"] for o in cancelled] == ["revoked"]
    assert not any(is_worklist_order(o) for o in cancelled)
    assert not is_worklist_order({**cancelled[0], "status": "completed"})
    assert not is_worklist_order({**cancelled[0], "status": "active", "intent": "proposal"})
    assert not is_worklist_order({"status": "active", "intent": "order", "identifier": []})


def test_sparse_order_and_no_patient() -> None:
    order = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "identifier": [{"type": {"text": "Scheduled Procedure Step ID"}, "value": "S1"}],
        "occurrenceDateTime": "2024-05",
        "requester": {"display": "A^B"},
    }
    [item] = servicerequest_to_worklist(order, None)
    assert item["PatientID"] == item["PatientName"] == item["IssuerOfPatientID"] == ""
    assert item["ReferringPhysicianName"] == "A B"
    sps = item["ScheduledProcedureStepSequence"][0]
    assert sps["ScheduledProcedureStepStartDate"] == sps["Modality"] == ""
    assert sps["ScheduledProcedureStepID"] == "S1"


def test_issuer_of_system_inverts_identifier_system() -> None:
    default = "urn:pixelhub:patient-id"
    assert issuer_of_system("urn:oid:2.16.840.1.113883.3.1", ISSUERS, default) == "STMARY"
    assert issuer_of_system("urn:oid:1.2.3", {}, default) == "1.2.3"
    assert issuer_of_system("urn:pixelhub:patient-id:NORTHRAD", {}, default) == "NORTHRAD"
    assert issuer_of_system("urn:pixelhub:issuer:X", {}, "urn:oid:1.2") == "X"
    assert issuer_of_system(default, {}, default) == ""
    assert issuer_of_system("http://elsewhere", {}, default) == ""


def omi_with_stations(*stations: tuple[str, str, str]) -> dict[str, Any]:
    """The ServiceRequest of an OMI^O23 whose IPC segments name (AE title, station name,
    location) of one step each."""
    ipcs = "".join(
        f"IPC|ACC-7^NR|RP-7|1.2.3|SPS-{n}|CT^^DCM||{name}|{location}^^L|{title}\r"
        for n, (title, name, location) in enumerate(stations, 1)
    )
    msg = parse_message(
        (
            "MSH|^~\\&|RIS|NR|PIXELHUB|NR|20240305101500||OMI^O23^OMI_O23|1|P|2.5.1\r"
            "PID|1||H-7^^^NR^MR\rORC|NW|PO-7^KIS||||||||20240305101500\r"
            "OBR|1|PO-7^KIS||X^Exam^L\r" + ipcs
        ).encode()
    )
    [order] = hl7v2_to_servicerequest(msg, "Patient/p", ORDER_SYSTEMS, ACCESSION_SYSTEMS)
    resource: dict[str, Any] = order.mapped.resource
    return resource


def stations_of(order: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [
        (
            s["ScheduledProcedureStepID"],
            s["ScheduledStationAETitle"],
            s["ScheduledStationName"],
            s["ScheduledProcedureStepLocation"],
        )
        for item in servicerequest_to_worklist(order, None)
        for s in item["ScheduledProcedureStepSequence"]
    ]


def test_each_step_gets_the_station_its_ipc_names() -> None:
    order = omi_with_stations(("CT1", "CT Scanner 1", "ROOM-1"), ("MR1", "MR Scanner", "ROOM-2"))
    assert stations_of(order) == [
        ("SPS-1", "CT1", "CT Scanner 1", "ROOM-1"),
        ("SPS-2", "MR1", "MR Scanner", "ROOM-2"),
    ]


def test_one_station_is_every_steps_station() -> None:
    order = omi_with_stations(("CT1", "CT Scanner 1", "ROOM-1"), ("CT1", "CT Scanner 1", "ROOM-1"))
    assert stations_of(order) == [
        ("SPS-1", "CT1", "CT Scanner 1", "ROOM-1"),
        ("SPS-2", "CT1", "CT Scanner 1", "ROOM-1"),
    ]


def test_stations_that_cannot_be_told_apart_name_none() -> None:
    # three steps, two of them on one station: as many stations as steps, each its own
    order = omi_with_stations(("CT1", "", ""), ("MR1", "", ""), ("CT1", "", ""))
    assert [s[1] for s in stations_of(order)] == ["CT1", "MR1", "CT1"]
    # two stations for three steps (one IPC names none): which is whose is unknown
    order = omi_with_stations(("CT1", "", ""), ("MR1", "", ""), ("", "", ""))
    assert [s[1] for s in stations_of(order)] == ["", "", ""]


@pytest.mark.parametrize(
    ("performer", "expected"),
    [
        ({"type": "Device", "identifier": {"system": "urn:dicom:ae", "value": "CT1"}}, "CT1"),
        ({"type": "Device", "identifier": {"system": "urn:dicom:ae", "value": "A" * 17}}, ""),
        ({"type": "Device", "identifier": {"system": "urn:dicom:ae", "value": "C\\T"}}, ""),
        ({"type": "Device", "identifier": {"system": "urn:other", "value": "CT1"}}, ""),
        ({"type": "Practitioner", "identifier": {"system": "urn:dicom:ae", "value": "CT1"}}, ""),
    ],
)
def test_only_a_valid_ae_title_of_a_device_is_the_station(
    performer: dict[str, Any], expected: str
) -> None:
    order = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "identifier": [{"type": {"text": "Scheduled Procedure Step ID"}, "value": "S1"}],
        "performer": [performer],
        "locationCode": [{"text": "Radiology, 2nd floor, room 12"}],
    }
    [item] = servicerequest_to_worklist(order, None)
    (sps,) = item["ScheduledProcedureStepSequence"]
    assert sps["ScheduledStationAETitle"] == expected
    assert sps["ScheduledProcedureStepLocation"] == "Radiology, 2nd f"  # SH: 16 characters
