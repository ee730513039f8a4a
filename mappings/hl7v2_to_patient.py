"""HL7 v2 PID segment -> FHIR R4 ``Patient`` (v2.5.1 ch. 3 §3.4.2; mapping table beside this file).

Pure: the parsed message in, a ``Mapped`` Patient out. Elements whose PID field was ``""`` are in
``Mapped.cleared``; empty fields are simply not in the result ("no change", ch. 2 §2.5.3).
"""

from __future__ import annotations

from typing import Any

from mappings.hl7v2_model import (
    NULL,
    Hl7Message,
    IdentifierSystems,
    Mapped,
    MappingError,
    OffsetOf,
    Repetition,
    Resource,
    Segment,
    comp,
    hd_parts,
    require,
    ts_field,
    type_code,
    xpn_name,
)

# HL7 table 0001 administrative sex -> FHIR administrative-gender
_GENDER = {"M": "male", "F": "female", "O": "other", "A": "other", "N": "other", "U": "unknown"}
# HL7 table 0200 name type -> HumanName.use
_NAME_USE = {"L": "official", "D": "usual", "M": "maiden", "N": "nickname", "A": "anonymous"}
# HL7 table 0190 address type -> Address.use / Address.type
_ADDRESS_USE = {"H": "home", "B": "work", "O": "work", "C": "temp", "BA": "old"}
_ADDRESS_TYPE = {"M": "postal", "SH": "physical"}
# HL7 table 0201 telecom use / 0202 equipment type -> ContactPoint.use / ContactPoint.system
_TELECOM_USE = {"PRN": "home", "ORN": "home", "WPN": "work", "VHN": "temp", "ASN": "temp"}
_TELECOM_SYSTEM = {"PH": "phone", "CP": "phone", "FX": "fax", "Internet": "email", "BP": "pager"}


def hl7v2_to_patient(
    msg: Hl7Message, systems: IdentifierSystems, offset_of: OffsetOf | None = None
) -> Mapped:
    """The message's PID as a Patient; PID-3 is required (error 101)."""
    pid = require(msg.first("PID"), "PID")
    return pid_to_patient(pid, systems, offset_of)


def pid_to_patient(pid: Segment, systems: IdentifierSystems, offset_of: OffsetOf | None) -> Mapped:
    identifiers = pid_identifiers(pid, systems)
    if not identifiers:
        raise MappingError(101, "PID-3 (patient identifier list) is required", pid.at(3))
    out: Resource = {"resourceType": "Patient", "identifier": identifiers, "active": True}
    cleared: set[str] = set()

    def put(key: str, n: int, value: Any) -> None:
        state = pid.state(n)
        if state == "null":
            cleared.add(key)
        elif state == "present" and value:
            out[key] = value

    put("name", 5, [n for r in pid.repetitions(5) if (n := _human_name(r))])
    put("birthDate", 7, ts_field(pid, 7, offset_of, date_only=True))
    sex = pid.value(8)
    if sex and sex != NULL and sex.upper() not in _GENDER:
        raise MappingError(
            103, f"PID-8 {sex!r} is not in HL7 table 0001 (administrative sex)", pid.at(8)
        )
    put("gender", 8, _GENDER.get(sex.upper()))
    put("address", 11, [a for r in pid.repetitions(11) if (a := _address(r))])
    telecom = [t for r in pid.repetitions(13) if (t := _telecom(r, "home"))]
    telecom += [t for r in pid.repetitions(14) if (t := _telecom(r, "work"))]
    if pid.state(13) == "null" and pid.state(14) in ("null", "absent"):
        cleared.add("telecom")
    elif telecom:
        out["telecom"] = telecom
    if pid.state(29) in ("present", "null"):
        put("deceasedDateTime", 29, ts_field(pid, 29, offset_of))
    elif pid.value(30).upper() in ("Y", "N"):
        out["deceasedBoolean"] = pid.value(30).upper() == "Y"
    return Mapped(out, frozenset(cleared))


def pid_identifiers(pid: Segment, systems: IdentifierSystems) -> list[Resource]:
    """PID-3 CX repetitions (id^check digit^scheme^authority^type, ch. 2A.14) -> identifiers."""
    out = []
    for rep in pid.repetitions(3):
        ident = cx_identifier(rep, systems)
        if ident:
            out.append(ident)
    return out


def cx_identifier(rep: Repetition, systems: IdentifierSystems) -> Resource | None:
    value = comp(rep, 1)
    if not value or value == NULL:
        return None
    ns, uid, utype = hd_parts(rep, 4)
    ident: Resource = {}
    id_type = comp(rep, 5)
    if id_type:
        ident["type"] = type_code(id_type)
    ident["system"] = systems.system(ns, uid, utype)
    ident["value"] = value
    return ident


def _human_name(rep: Repetition) -> Resource | None:
    """XPN (family^given^middle^suffix^prefix^degree^name type, ch. 2A.88) -> HumanName; the
    family name is FN.1 (v2.3 ST and v2.4+ FN share component 1)."""
    family, given, middle, suffix, prefix, degree = (comp(rep, n) for n in range(1, 7))
    return xpn_name(family, given, middle, suffix, prefix, degree, _NAME_USE.get(comp(rep, 7)))


def _address(rep: Repetition) -> Resource | None:
    """XAD (street^other^city^state^zip^country^type, ch. 2A.87) -> Address."""
    lines = [x for x in (comp(rep, 1), comp(rep, 2)) if x]
    addr: Resource = {}
    kind = comp(rep, 7)
    if kind in _ADDRESS_USE:
        addr["use"] = _ADDRESS_USE[kind]
    if kind in _ADDRESS_TYPE:
        addr["type"] = _ADDRESS_TYPE[kind]
    if lines:
        addr["line"] = lines
    for key, n in (("city", 3), ("state", 4), ("postalCode", 5), ("country", 6)):
        if comp(rep, n):
            addr[key] = comp(rep, n)
    return addr if set(addr) - {"use", "type"} else None


def _telecom(rep: Repetition, default_use: str) -> Resource | None:
    """XTN ([formatted number]^use^equipment^email^country^area^local^extension, ch. 2A.89)."""
    equipment = comp(rep, 3)
    email = comp(rep, 4)
    if email or equipment == "Internet":
        value = email or comp(rep, 1)
        return {"system": "email", "value": value} if value else None
    value = comp(rep, 1)
    if not value and comp(rep, 7):
        area = f"+{comp(rep, 5)} " if comp(rep, 5) else ""
        area += f"({comp(rep, 6)}) " if comp(rep, 6) else ""
        ext = f" x{comp(rep, 8)}" if comp(rep, 8) else ""
        value = f"{area}{comp(rep, 7)}{ext}"
    if not value:
        return None
    point: Resource = {"system": _TELECOM_SYSTEM.get(equipment, "phone"), "value": value}
    use = "mobile" if equipment == "CP" else _TELECOM_USE.get(comp(rep, 2), default_use)
    point["use"] = use
    return point
