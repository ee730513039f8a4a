"""FHIR R4 ``ServiceRequest`` (+ its ``Patient``) -> DICOM Modality Worklist items (PS3.4 K.6.1,
Table K.6-1; PS3.3 C.4.10 Scheduled Procedure Step, C.4.11 Requested Procedure, C.4.13 Imaging
Service Request; mapping table beside this file).

One worklist item per Scheduled Procedure Step: the ServiceRequests PixelHub makes from HL7 orders
(``hl7v2_to_servicerequest``) carry one identifier "Scheduled Procedure Step ID" per IPC segment
(or OBR-20), so an order with two IPC segments gives two items. An item is a plain dict keyed by
DICOM keyword: text values as ``str`` (DICOM encoding: DA ``YYYYMMDD``, TM ``HHMMSS``, PN with
``^``), ``ScheduledProcedureStepSequence`` and the code sequences as lists of such dicts.

The scheduled station (Scheduled Station AE Title (0040,0001), Scheduled Station Name
(0040,0010)) comes from the ``performer`` Devices, the Scheduled Procedure Step Location
(0040,0011) from ``locationCode``: the i-th for the i-th step when there are as many as steps, the
one for every step when there is one, else none (an item without a station AE title is for any
station).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mappings.interaction_to_auditevent import DICOM_AE

__all__ = [
    "WORKLIST_STATUSES",
    "is_worklist_order",
    "issuer_of_system",
    "servicerequest_to_worklist",
]

Resource = dict[str, Any]
WorklistItem = dict[str, Any]

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
DICOM_UID_SYSTEM = "urn:dicom:uid"
ISSUER_NAMESPACE = "urn:pixelhub:issuer"
REQUESTED_PROCEDURE_ID = "Requested Procedure ID"
SCHEDULED_STEP_ID = "Scheduled Procedure Step ID"
# ServiceRequest.status values whose steps are still to be performed (request-status).
WORKLIST_STATUSES = ("active",)
# Coding Scheme Designators (PS3.16 Table 8-1) of the code systems orders carry.
_DESIGNATORS = {
    "http://loinc.org": "LN",
    "http://snomed.info/sct": "SCT",
    "http://www.ama-assn.org/go/cpt": "C4",
    "http://hl7.org/fhir/sid/icd-10": "I10",
    "http://radlex.org": "RADLEX",
    DCM: "DCM",
}
# ServiceRequest.priority -> Requested Procedure Priority (0040,1003), PS3.3 C.4.11
_PRIORITY = {"stat": "STAT", "asap": "HIGH", "urgent": "HIGH", "routine": "ROUTINE"}
_SEX = {"male": "M", "female": "F", "other": "O"}
# DICOM Defined Terms of Modality (PS3.3 C.7.3.1.1.1) an order may name as its category (OBR-24)
_MODALITIES = frozenset(
    "BMD CR CT DG DX ECG EPS ES GM IO IVOCT IVUS MG MR NM OCT OP OPT PT PX RF SM US XA XC".split()
)
_SH_MAX = 16  # Short String (PS3.5 Table 6.2-1)
# Application Entity (PS3.5 Table 6.2-1): 16 characters of the default repertoire, no backslash
_AE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
_DATETIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2}))?)?")


def is_worklist_order(service_request: Mapping[str, Any]) -> bool:
    """A ServiceRequest that schedules imaging steps: ``active``, intent ``order`` (or a more
    specific order intent), with an accession number or a scheduled procedure step id."""
    if service_request.get("status") not in WORKLIST_STATUSES:
        return False
    if not str(service_request.get("intent") or "").endswith("order"):
        return False
    return bool(_accession(service_request) or _typed_text(service_request, SCHEDULED_STEP_ID))


def issuer_of_system(system: str, issuer_systems: Mapping[str, str], default_system: str) -> str:
    """The Issuer of Patient ID (0010,0021) for an ``Identifier.system``: the inverse of
    ``mappings.identifier_system.identifier_system`` (configured map, ``urn:oid:``,
    ``<default>:<namespace>``); empty for the default system or an unknown one."""
    for issuer, mapped in issuer_systems.items():
        if mapped == system:
            return issuer
    if system.startswith("urn:oid:"):
        return system[len("urn:oid:") :]
    for base in (default_system, ISSUER_NAMESPACE):
        if base and system.startswith(base + ":"):
            return system[len(base) + 1 :]
    return ""


def servicerequest_to_worklist(
    service_request: Mapping[str, Any],
    patient: Mapping[str, Any] | None,
    *,
    issuer_systems: Mapping[str, str] | None = None,
    default_patient_system: str = "urn:pixelhub:patient-id",
) -> list[WorklistItem]:
    """The worklist items of one order (one per Scheduled Procedure Step ID; one item without
    an id when the order names none)."""
    steps = _typed_text(service_request, SCHEDULED_STEP_ID) or [""]
    modalities = _modalities(service_request)
    start = _date_time(str(service_request.get("occurrenceDateTime") or ""))
    code = service_request.get("code") or {}
    description = _concept_text(code)
    accession = _accession(service_request)
    requested = _typed_text(service_request, REQUESTED_PROCEDURE_ID)
    uids = [
        str(i.get("value") or "").removeprefix("urn:oid:")
        for i in service_request.get("identifier") or []
        if i.get("system") == DICOM_UID_SYSTEM and i.get("value")
    ]
    common: WorklistItem = {
        "AccessionNumber": accession,
        "ReferringPhysicianName": _display_name(service_request.get("requester")),
        "RequestedProcedureID": requested[0] if requested else "",
        "RequestedProcedureDescription": description,
        "RequestedProcedureCodeSequence": _code_items(code),
        "RequestedProcedurePriority": _PRIORITY.get(str(service_request.get("priority")), ""),
        "StudyInstanceUID": uids[0] if uids else "",
        **_patient(patient, issuer_systems or {}, default_patient_system),
    }
    stations = [
        p
        for p in service_request.get("performer") or []
        if isinstance(p, Mapping) and p.get("type") == "Device"
    ]
    locations = list(service_request.get("locationCode") or [])
    items = []
    for index, step in enumerate(steps):
        modality = (
            modalities[index]
            if len(modalities) == len(steps)
            else (modalities[0] if modalities else "")
        )
        station = _for_step(stations, index, len(steps)) or {}
        sps = {
            "ScheduledStationAETitle": _ae_title(station),
            "ScheduledStationName": str(station.get("display") or "")[:_SH_MAX],
            "ScheduledProcedureStepLocation": _location(
                _for_step(locations, index, len(steps)) or {}
            ),
            "ScheduledProcedureStepStartDate": start[0],
            "ScheduledProcedureStepStartTime": start[1],
            "Modality": modality,
            "ScheduledPerformingPhysicianName": "",
            "ScheduledProcedureStepDescription": description,
            "ScheduledProcedureStepID": step,
            "ScheduledProcedureStepStatus": "SCHEDULED",
        }
        items.append({**common, "ScheduledProcedureStepSequence": [sps]})
    return items


def _for_step(values: list[Any], index: int, steps: int) -> Any:
    """The value of step ``index``: the i-th of as many as steps, or the only one."""
    if len(values) == steps:
        return values[index]
    return values[0] if len(values) == 1 else None


def _ae_title(station: Mapping[str, Any]) -> str:
    """The station's ``urn:dicom:ae`` identifier when it is a valid AE title (PS3.5 6.2)."""
    identifier = station.get("identifier") or {}
    title = str(identifier.get("value") or "").strip()
    return title if identifier.get("system") == DICOM_AE and _AE.match(title) else ""


def _location(concept: Mapping[str, Any]) -> str:
    """A location CodeableConcept as SH: its first code, else its text."""
    code = next((str(c["code"]) for c in concept.get("coding") or [] if c.get("code")), "")
    return (code or str(concept.get("text") or ""))[:_SH_MAX]


def _typed_text(resource: Mapping[str, Any], label: str) -> list[str]:
    return [
        str(i["value"])
        for i in resource.get("identifier") or []
        if (i.get("type") or {}).get("text") == label and i.get("value")
    ]


def _accession(resource: Mapping[str, Any]) -> str:
    for ident in resource.get("identifier") or []:
        codings = (ident.get("type") or {}).get("coding") or []
        if any(c.get("system") == V2_0203 and c.get("code") == "ACSN" for c in codings):
            return str(ident.get("value") or "")
    return ""


def _modalities(resource: Mapping[str, Any]) -> list[str]:
    """IPC-5 modalities (``orderDetail`` in DCM), else a category naming a modality (OBR-24)."""
    found = [
        str(c["code"])
        for detail in resource.get("orderDetail") or []
        for c in detail.get("coding") or []
        if c.get("system") == DCM and c.get("code")
    ]
    if found:
        return found
    for category in resource.get("category") or []:
        for candidate in [category.get("text")] + [
            c.get("code") for c in category.get("coding") or []
        ]:
            if str(candidate or "") in _MODALITIES:
                return [str(candidate)]
    return []


def _date_time(value: str) -> tuple[str, str]:
    """A FHIR dateTime as DICOM DA and TM, in the local time it was written in."""
    found = _DATETIME.match(value)
    if found is None:
        return "", ""
    year, month, day, hour, minute, second = found.groups()
    time = f"{hour}{minute}{second or '00'}" if hour else ""
    return f"{year}{month}{day}", time


def _concept_text(concept: Mapping[str, Any]) -> str:
    if concept.get("text"):
        return str(concept["text"])
    return next((str(c["display"]) for c in concept.get("coding") or [] if c.get("display")), "")


def _code_items(concept: Mapping[str, Any]) -> list[WorklistItem]:
    """Code Sequence items (PS3.3 Table 8.8-1) for the codings of known coding schemes."""
    return [
        {
            "CodeValue": str(c["code"]),
            "CodingSchemeDesignator": _DESIGNATORS[c["system"]],
            "CodeMeaning": str(c.get("display") or c["code"]),
        }
        for c in concept.get("coding") or []
        if c.get("system") in _DESIGNATORS and c.get("code")
    ]


def _display_name(reference: Any) -> str:
    """A Reference's display as a one-component PN (the order carries no name parts)."""
    if not isinstance(reference, Mapping):
        return ""
    return str(reference.get("display") or "").replace("^", " ")


def _person_name(name: Mapping[str, Any]) -> str:
    """HumanName -> PN ``family^given^middle^prefix^suffix`` (PS3.5 6.2.1)."""
    given = [str(g) for g in name.get("given") or []]
    parts = [
        str(name.get("family") or ""),
        given[0] if given else "",
        " ".join(given[1:]),
        " ".join(str(p) for p in name.get("prefix") or []),
        " ".join(str(s) for s in name.get("suffix") or []),
    ]
    return "^".join(parts).rstrip("^")


def _patient(
    patient: Mapping[str, Any] | None, issuer_systems: Mapping[str, str], default_system: str
) -> WorklistItem:
    patient = patient or {}
    identifiers = [i for i in patient.get("identifier") or [] if i.get("value")]
    medical_record = [
        i
        for i in identifiers
        if any(c.get("code") == "MR" for c in (i.get("type") or {}).get("coding") or [])
    ]
    chosen = (medical_record or identifiers or [{}])[0]
    names = patient.get("name") or []
    official = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    return {
        "PatientName": _person_name(official),
        "PatientID": str(chosen.get("value") or ""),
        "IssuerOfPatientID": issuer_of_system(
            str(chosen.get("system") or ""), issuer_systems, default_system
        )
        if chosen
        else "",
        "PatientBirthDate": str(patient.get("birthDate") or "").replace("-", "")[:8],
        "PatientSex": _SEX.get(str(patient.get("gender")), ""),
    }
