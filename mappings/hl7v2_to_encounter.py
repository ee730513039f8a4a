"""HL7 v2 ADT PV1/PV2 -> FHIR R4 ``Encounter`` (v2.5.1 ch. 3 §3.4.3 PV1, §3.3 trigger events;
mapping table beside this file).

The trigger event sets the status: A01 admit -> ``in-progress``, A04 register -> ``arrived``,
A03 discharge -> ``finished``, A11 cancel admit/visit -> ``cancelled``, A13 cancel discharge ->
``in-progress`` (and the discharge time is removed), A08 update leaves the status alone unless
PV1-45 says the patient left.
"""

from __future__ import annotations

from mappings.hl7v2_model import (
    NULL,
    Hl7Message,
    IdentifierSystems,
    Mapped,
    MappingError,
    OffsetOf,
    Resource,
    Segment,
    comp,
    cwe_concept,
    hd_parts,
    require,
    ts_field,
    type_code,
    xcn_reference,
)

V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
V3_NULL_FLAVOR = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"

# HL7 table 0004 patient class -> v3 ActEncounterCode (FHIR R4 v3-ActEncounterCode)
_CLASS = {
    "E": ("EMER", "emergency"),
    "I": ("IMP", "inpatient encounter"),
    "O": ("AMB", "ambulatory"),
    "P": ("PRENC", "pre-admission"),
    "R": ("AMB", "ambulatory"),
    "B": ("IMP", "inpatient encounter"),
}
_STATUS = {
    "A01": "in-progress",
    "A04": "arrived",
    "A03": "finished",
    "A11": "cancelled",
    "A13": "in-progress",
}
ENCOUNTER_EVENTS = frozenset({"A01", "A03", "A04", "A08", "A11", "A13"})
_PARTICIPANTS = ((7, "ATND", "attender"), (8, "REF", "referrer"), (17, "ADM", "admitter"))


def visit_identifier(pv1: Segment, systems: IdentifierSystems) -> Resource | None:
    """PV1-19 visit number (CX) -> ``Encounter.identifier`` of type ``VN``."""
    reps = pv1.repetitions(19)
    if not reps:
        return None
    rep = reps[0]
    value = comp(rep, 1)
    if not value or value == NULL:
        return None
    ns, uid, utype = hd_parts(rep, 4)
    return {"type": type_code("VN"), "system": systems.system(ns, uid, utype), "value": value}


def hl7v2_to_encounter(
    msg: Hl7Message,
    event: str,
    patient_reference: str,
    systems: IdentifierSystems,
    offset_of: OffsetOf | None = None,
) -> Mapped | None:
    """The visit of an ADT message, or ``None`` when the event carries no visit (A28, A31, A08
    without PV1-19). Events that act on a visit need PV1-19 (error 101)."""
    if event not in ENCOUNTER_EVENTS:
        return None
    pv1 = msg.first("PV1")
    if pv1 is None and event == "A08":
        return None
    pv1 = require(pv1, "PV1")
    ident = visit_identifier(pv1, systems)
    if ident is None:
        if event == "A08":
            return None
        raise MappingError(101, f"PV1-19 (visit number) is required for ADT^{event}", pv1.at(19))
    out: Resource = {
        "resourceType": "Encounter",
        "identifier": [ident],
        "subject": {"reference": patient_reference},
    }
    cleared: set[str] = set()
    status = _STATUS.get(event)
    patient_class = pv1.value(2).upper()
    if patient_class in _CLASS:
        code, display = _CLASS[patient_class]
        out["class"] = {"system": V3_ACT_CODE, "code": code, "display": display}
    elif patient_class and patient_class != NULL and patient_class not in ("N", "U", "C"):
        raise MappingError(
            103, f"PV1-2 {patient_class!r} is not in HL7 table 0004 (patient class)", pv1.at(2)
        )
    location = _location(pv1)
    if location:
        out["location"] = [{"location": {"display": location}}]
    elif pv1.state(3) == "null":
        cleared.add("location")
    participants = []
    for n, code, display in _PARTICIPANTS:
        for rep in pv1.repetitions(n):
            who = xcn_reference(rep, systems)
            if who:
                participants.append(
                    {
                        "type": [
                            {
                                "coding": [
                                    {"system": V3_PARTICIPATION, "code": code, "display": display}
                                ]
                            }
                        ],
                        "individual": who,
                    }
                )
    if participants:
        out["participant"] = participants
    period: Resource = {}
    start = ts_field(pv1, 44, offset_of)
    end = ts_field(pv1, 45, offset_of)
    if start:
        period["start"] = start
    if end and event != "A13":
        period["end"] = end
        status = status or "finished"
    if event == "A13" or pv1.state(45) == "null":
        cleared.add("period.end")
    if period:
        out["period"] = period
    if status:
        out["status"] = status
    pv2 = msg.first("PV2")
    if pv2 is not None:
        reasons = [c for r in pv2.repetitions(3) if (c := cwe_concept(r))]
        if reasons:
            out["reasonCode"] = reasons
    return Mapped(out, frozenset(cleared))


def complete_new_encounter(resource: Resource) -> Resource:
    """An Encounter created by an event that does not set them still needs R4's required
    ``status`` and ``class`` (1..1): ``unknown`` and v3 NullFlavor ``UNK``."""
    resource.setdefault("status", "unknown")
    resource.setdefault("class", {"system": V3_NULL_FLAVOR, "code": "UNK", "display": "unknown"})
    return resource


def _location(pv1: Segment) -> str:
    """PV1-3 PL (point of care^room^bed^facility^status^type^building^floor), as display text."""
    reps = pv1.repetitions(3)
    if not reps:
        return ""
    rep = reps[0]
    parts = [comp(rep, 4), comp(rep, 7), comp(rep, 8), comp(rep, 1), comp(rep, 2), comp(rep, 3)]
    labels = ["", "building ", "floor ", "", "room ", "bed "]
    text = ", ".join(f"{label}{p}" for label, p in zip(labels, parts, strict=True) if p)
    return text if text != NULL else ""
