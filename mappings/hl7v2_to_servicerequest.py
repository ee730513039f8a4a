"""HL7 v2 orders -> FHIR R4 ``ServiceRequest`` (v2.5.1 ch. 4 §4.4-4.5 ORC/OBR, §4.5.6 IPC;
IHE RAD TF-2 RAD-4 "Procedure Scheduled" and RAD-13 "Procedure Update" for ORM^O01 / OMI^O23;
mapping table beside this file).

One ServiceRequest per order group (an ``ORC`` and the segments up to the next ``ORC``):
``ORM^O01``, ``OMI^O23`` (with ``IPC``) and ``OMG^O19`` all share it. ``ORC-1`` (order control)
and ``ORC-5`` (order status) set ``status``; placer, filler and accession numbers become
identifiers of types ``PLAC``, ``FILL`` and ``ACSN`` (HL7 table 0203), and the Study Instance UID
(``IPC-3`` or IHE's ``ZDS-1``) an identifier in ``urn:dicom:uid``. The scheduled station
(``IPC-9`` Scheduled AE Title, ``IPC-7`` Scheduled Station Name) becomes a ``performer``: a
logical reference to the station's ``Device`` (identifier ``urn:dicom:ae|<AE title>``, display the
station name), and ``IPC-8`` Scheduled Procedure Step Location a ``locationCode``; one per IPC
segment naming one, in IPC order (just one when every IPC names the same), so that
``servicerequest_to_worklist`` can give each step its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from mappings.hl7v2_model import (
    NULL,
    V2_0203,
    ErrorLocation,
    Hl7Message,
    IdentifierSystems,
    Mapped,
    MappingError,
    OffsetOf,
    Resource,
    Segment,
    cwe_concept,
    diagnostic_section,
    dtm_to_fhir,
    ei_identifier,
    segments_after,
    ts_field,
    xcn_reference,
)
from mappings.interaction_to_auditevent import DICOM_AE

DICOM_UID_SYSTEM = "urn:dicom:uid"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
Z_SEGMENT_EXTENSION = "urn:pixelhub:hl7v2:z-segment"

# HL7 table 0119 order control -> ServiceRequest.status (None: take it from ORC-5)
_CONTROL_STATUS: dict[str, str | None] = {
    "NW": "active",
    "XO": None,
    "XX": None,
    "SC": None,
    "SN": "active",
    "NA": "active",
    "RL": "active",
    "OK": "active",
    "CA": "revoked",
    "OC": "revoked",
    "CR": "revoked",
    "DC": "revoked",
    "OD": "revoked",
    "DR": "revoked",
    "HD": "on-hold",
    "OH": "on-hold",
    "CH": "active",
    "PA": "active",
    "RE": "completed",
}
# HL7 table 0038 order status -> ServiceRequest.status
_ORDER_STATUS = {
    "A": "active",
    "IP": "active",
    "SC": "active",
    "CM": "completed",
    "CA": "revoked",
    "DC": "revoked",
    "HD": "on-hold",
    "ER": "entered-in-error",
    "RP": "revoked",
}
# TQ1-9 / TQ.6 priority (HL7 table 0485) -> ServiceRequest.priority
_PRIORITY = {"S": "stat", "A": "asap", "R": "routine", "P": "urgent", "C": "urgent"}


@dataclass
class OrderMapping:
    """One order group mapped: the resource, and its identifiers in lookup order (placer,
    filler, accession) for finding an existing ServiceRequest."""

    mapped: Mapped
    keys: list[Resource]
    accession: Resource | None
    order_control: str


def order_groups(msg: Hl7Message) -> list[tuple[Segment, list[Segment]]]:
    """Each ``ORC`` with the segments of its group; an OBR before any ORC is error 100."""
    groups: list[tuple[Segment, list[Segment]]] = []
    for seg in msg.segments:
        if seg.name == "ORC":
            groups.append((seg, list(segments_after(msg, seg, ("ORC",)))))
        elif seg.name == "OBR" and not groups:
            raise MappingError(100, "OBR before any ORC", seg.at(0))
    if not groups:
        raise MappingError(100, "Required segment ORC is missing", ErrorLocation("ORC"))
    return groups


def hl7v2_to_servicerequest(
    msg: Hl7Message,
    patient_reference: str,
    order_systems: IdentifierSystems,
    accession_systems: IdentifierSystems,
    offset_of: OffsetOf | None = None,
    encounter_reference: str | None = None,
) -> list[OrderMapping]:
    """Every order group of an ORM/OMI/OMG message as a ServiceRequest."""
    return [
        _order(
            orc,
            group,
            patient_reference,
            order_systems,
            accession_systems,
            offset_of,
            encounter_reference,
        )
        for orc, group in order_groups(msg)
    ]


def _order(
    orc: Segment,
    group: list[Segment],
    patient_reference: str,
    order_systems: IdentifierSystems,
    accession_systems: IdentifierSystems,
    offset_of: OffsetOf | None,
    encounter_reference: str | None,
) -> OrderMapping:
    obr = next((s for s in group if s.name == "OBR"), None)
    if obr is None:
        raise MappingError(100, "Required segment OBR is missing in the order group", orc.at(0))
    ipcs = [s for s in group if s.name == "IPC"]
    tq1 = next((s for s in group if s.name == "TQ1"), None)
    control = orc.value(1).upper()
    if not control:
        raise MappingError(101, "ORC-1 (order control) is required", orc.at(1))
    if control not in _CONTROL_STATUS:
        raise MappingError(103, f"ORC-1 {control!r} is not a supported order control", orc.at(1))
    order_status = orc.value(5).upper()
    if order_status and order_status != NULL and order_status not in _ORDER_STATUS:
        raise MappingError(103, f"ORC-5 {order_status!r} is not in HL7 table 0038", orc.at(5))
    status = _CONTROL_STATUS[control] or _ORDER_STATUS.get(order_status) or "active"
    if control in ("NW", "XO", "SC", "SN", "NA") and order_status in _ORDER_STATUS:
        status = _ORDER_STATUS[order_status]

    identifiers: list[Resource] = []
    placer = ei_identifier(orc, 2, order_systems, "PLAC") or ei_identifier(
        obr, 2, order_systems, "PLAC"
    )
    filler = ei_identifier(orc, 3, order_systems, "FILL") or ei_identifier(
        obr, 3, order_systems, "FILL"
    )
    accession = None
    for ipc in ipcs:
        accession = ei_identifier(ipc, 1, accession_systems, "ACSN")
        if accession:
            break
    if accession is None and obr.value(18) and obr.value(18) != NULL:
        accession = {
            "type": {"coding": [{"system": V2_0203, "code": "ACSN"}]},
            "system": accession_systems.default_system,
            "value": obr.value(18),
        }
    for ident in (placer, filler, accession):
        if ident:
            identifiers.append(ident)
    if not identifiers:
        raise MappingError(
            101, "An order needs a placer (ORC-2), filler (ORC-3) or accession number", orc.at(2)
        )
    identifiers.extend(_imaging_identifiers(ipcs, group, obr))

    code = next((c for r in obr.repetitions(4) if (c := cwe_concept(r))), None)
    if code is None:
        raise MappingError(101, "OBR-4 (universal service identifier) is required", obr.at(4))
    out: Resource = {
        "resourceType": "ServiceRequest",
        "identifier": identifiers,
        "status": status,
        "intent": "instance-order" if control == "CH" else "order",
        "code": code,
        "subject": {"reference": patient_reference},
    }
    section = obr.value(24)
    if section and section != NULL:
        out["category"] = [diagnostic_section(section)]
    modalities = []
    for ipc in ipcs:
        for rep in ipc.repetitions(5):
            concept = cwe_concept(rep, default_system=DCM)
            if concept and concept not in modalities:
                modalities.append(concept)
    if modalities:
        out["orderDetail"] = modalities
    stations = _per_step([_station(ipc) for ipc in ipcs])
    if stations:
        out["performer"] = stations
    locations = _per_step([_location(ipc) for ipc in ipcs])
    if locations:
        out["locationCode"] = locations
    priority = tq1.value(9) if tq1 is not None else obr.value(27, 6)
    if priority.upper() in _PRIORITY:
        out["priority"] = _PRIORITY[priority.upper()]
    if encounter_reference:
        out["encounter"] = {"reference": encounter_reference}
    occurrence = (
        ts_field(tq1, 7, offset_of)
        if tq1 is not None and tq1.value(7)
        else _tq_start(obr, offset_of) or _tq_start(orc, offset_of, field=7)
    )
    if occurrence:
        out["occurrenceDateTime"] = occurrence
    authored = ts_field(orc, 9, offset_of)
    if authored:
        out["authoredOn"] = authored
    requester = next(
        (
            x
            for r in orc.repetitions(12) or obr.repetitions(16)
            if (x := xcn_reference(r, order_systems))
        ),
        None,
    )
    if requester:
        out["requester"] = requester
    reasons = [c for r in obr.repetitions(31) if (c := cwe_concept(r))]
    for dg1 in (s for s in group if s.name == "DG1"):
        reasons.extend(c for r in dg1.repetitions(3) if (c := cwe_concept(r)))
        if dg1.value(4) and not dg1.value(3):  # v2.3 DG1-4 free-text description
            reasons.append({"text": dg1.value(4)})
    if reasons:
        out["reasonCode"] = reasons
    notes = []
    if obr.value(13) and obr.value(13) != NULL:
        notes.append({"text": obr.value(13)})
    for nte in (s for s in group if s.name == "NTE"):
        text = "\n".join(r[0][0] for r in nte.repetitions(3) if r and r[0])
        if text:
            notes.append({"text": text})
    if notes:
        out["note"] = notes
    z_segments = [s for s in group if s.name.startswith("Z")]
    if z_segments:
        out["extension"] = [
            {"url": Z_SEGMENT_EXTENSION, "valueString": s.raw} for s in z_segments if s.raw
        ]
        if not out["extension"]:
            del out["extension"]
    keys = [i for i in (placer, filler, accession) if i]
    return OrderMapping(Mapped(out), keys, accession, control)


def _imaging_identifiers(ipcs: list[Segment], group: list[Segment], obr: Segment) -> list[Resource]:
    """Study Instance UID (IPC-3, IHE ZDS-1), requested procedure id (IPC-2 / OBR-19) and
    scheduled procedure step id (IPC-4 / OBR-20) as identifiers."""
    out: list[Resource] = []
    uids: list[str] = [ipc.value(3) for ipc in ipcs if ipc.value(3)]
    uids += [z.value(1) for z in group if z.name == "ZDS" and z.value(1)]
    for uid in uids:
        uid_ident: Resource = {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{uid}"}
        if uid != NULL and uid_ident not in out:
            out.append(uid_ident)
    rp_ids = [ipc.value(2) for ipc in ipcs] or [obr.value(19)]
    sps_ids = [ipc.value(4) for ipc in ipcs] or [obr.value(20)]
    for label, values in (
        ("Requested Procedure ID", rp_ids),
        ("Scheduled Procedure Step ID", sps_ids),
    ):
        for value in values:
            ident: Resource = {"type": {"text": label}, "value": value}
            if value and value != NULL and ident not in out:
                out.append(ident)
    return out


def _station(ipc: Segment) -> Resource | None:
    """IPC-9 Scheduled AE Title and IPC-7 Scheduled Station Name (v2.5.1 §4.5.6) as a logical
    reference to the station's Device; ``None`` when the IPC names no station."""
    title, name = ipc.value(9).strip(), ipc.value(7).strip()
    title, name = ("" if v == NULL else v for v in (title, name))
    if not (title or name):
        return None
    station: Resource = {"type": "Device"}
    if title:
        station["identifier"] = {"system": DICOM_AE, "value": title}
    if name:
        station["display"] = name
    return station


def _location(ipc: Segment) -> Resource | None:
    """IPC-8 Scheduled Procedure Step Location (CE, its first repetition) as a CodeableConcept."""
    repetitions = ipc.repetitions(8)
    return cwe_concept(repetitions[0]) if repetitions else None


def _per_step(values: list[Resource | None]) -> list[Resource]:
    """The values the IPC segments name, in IPC order; one when they are all the same."""
    named = [v for v in values if v]
    return named[:1] if all(v == named[0] for v in named) else named


def _tq_start(seg: Segment, offset_of: OffsetOf | None, field: int = 27) -> str | None:
    """TQ.4 start date/time of a v2.3-2.4 quantity/timing field (OBR-27, ORC-7)."""
    raw = seg.value(field, 4)
    if not raw or raw == NULL:
        return None
    return dtm_to_fhir(raw, seg.at(field, 4), offset_of)
