"""An unscheduled Modality Performed Procedure Step -> the R4 ``ServiceRequest`` it performs
(table: ``mpps_to_servicerequest.md``).

IHE RAD TF-2 4.6.4.1.2.2 (RAD-6, "unscheduled case"): a modality that performed a procedure
without a worklist item sends an MPPS N-CREATE whose Scheduled Step Attributes Sequence
(0040,0270) carries the Study Instance UID but no Accession Number, Requested Procedure ID or
Scheduled Procedure Step ID. PixelHub keeps every step on the order it performs
(``adapters.dicom._mpps``), so an unscheduled step gets an order of its own, made here from the
N-CREATE's attributes (PS3.3 C.4.13-C.4.15); the caller adds the step's identifier and state.
"""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

from mappings._dicom_fhir import DEFAULT_CODING_SYSTEMS, coding
from mappings.dicom_instance import InstanceSummary
from mappings.interaction_to_auditevent import DICOM_AE

DICOM_UID_SYSTEM = "urn:dicom:uid"
UNSCHEDULED_NOTE = "Unscheduled: performed without a scheduled order (DICOM MPPS, IHE RAD-6)"

Resource = dict[str, Any]


def is_unscheduled(steps: list[Dataset]) -> bool:
    """No item names an Accession Number, Requested Procedure ID or Scheduled Procedure Step
    ID (IHE RAD TF-2 Table 4.6-1, unscheduled case)."""
    keys = ("AccessionNumber", "RequestedProcedureID", "ScheduledProcedureStepID")
    return all(not str(step.get(key) or "").strip() for step in steps for key in keys)


def _text(ds: Dataset, keyword: str) -> str:
    return str(ds.get(keyword) or "").strip()


def unscheduled_servicerequest(
    attributes: Dataset, summary: InstanceSummary, *, patient_reference: str, start: str
) -> Resource:
    """The order of an unscheduled step (no ``id``: the caller's): ``summary`` is the step's
    (``extract_step_summary``), ``start`` its Performed Procedure Step Start Date and Time
    (``YYYYMMDDHHMMSS``)."""
    order: Resource = {
        "resourceType": "ServiceRequest",
        "identifier": [
            {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{summary.study_instance_uid}"}
        ],
        "status": "active",
        "intent": "order",
        "subject": {"reference": patient_reference},
        "note": [{"text": UNSCHEDULED_NOTE}],
    }
    code: Resource = {}
    codings = [c for c in (coding(p, DEFAULT_CODING_SYSTEMS) for p in summary.procedure_codes) if c]
    if codings:
        code["coding"] = codings
    description = _text(attributes, "PerformedProcedureStepDescription")
    if description:
        code["text"] = description
    if code:
        order["code"] = code
    if len(start) >= 8 and start[:8].isdigit():
        order["authoredOn"] = f"{start[:4]}-{start[4:6]}-{start[6:8]}"
    title, name = (
        _text(attributes, "PerformedStationAETitle"),
        _text(attributes, "PerformedStationName"),
    )
    if title or name:
        station: Resource = {"type": "Device"}
        if title:
            station["identifier"] = {"system": DICOM_AE, "value": title}
        if name:
            station["display"] = name
        order["performer"] = [station]
    location = _text(attributes, "PerformedLocation")
    if location:
        order["locationCode"] = [{"text": location}]
    return order
