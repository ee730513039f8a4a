"""The typed input of the HL7 v2 mappings: a parsed ER7 message, and the v2 data types they read.

HL7 v2.5.1 ch. 2 §2.5-§2.7: a message is segments, a segment is fields, a field is repetitions,
a repetition is components, a component is subcomponents. ``Hl7Message`` holds them already split
and unescaped (the ER7 parser lives in ``adapters.hl7v2``); every accessor is 1-based like the
standard's ``PID-3.4.1`` notation and returns ``""`` for anything absent.

The v2 null rule (ch. 2 §2.5.3): an *empty* field means "no change", the two characters ``""``
mean "delete this value". ``FieldState`` tells them apart and ``Mapped.cleared`` carries the
deletions to ``merge_update``.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from mappings.identifier_system import identifier_system

Resource = dict[str, Any]
Component = list[str]  # subcomponents
Repetition = list[Component]  # components
Field = list[Repetition]  # repetitions

NULL = '""'
PRACTITIONER_SYSTEM = "urn:pixelhub:hl7v2:practitioner"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
FieldState = Literal["absent", "null", "present"]
# The local UTC offset of a sender's wall-clock time (injected: mappings have no clock or zone db).
OffsetOf = Callable[[datetime], timedelta]


@dataclass(frozen=True)
class ErrorLocation:
    """HL7 ``ERL`` (v2.5.1 ch. 2 §2.A.27): segment id, its sequence, field, repetition,
    component, subcomponent; 0 means "not applicable"."""

    segment: str
    sequence: int = 1
    field: int = 0
    repetition: int = 0
    component: int = 0
    subcomponent: int = 0


class MappingError(Exception):
    """The input cannot be mapped; ``code`` is an HL7 table 0357 error condition code
    (100 segment sequence, 101 required field missing, 102 data type, 103 table value not found,
    200/201 unsupported message type/event, 204 unknown key, 207 application internal error)."""

    def __init__(self, code: int, message: str, location: ErrorLocation | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.location = location


@dataclass
class Segment:
    """One segment; ``fields[n]`` is field ``n`` (for MSH, ``fields[1]`` is MSH-1, the field
    separator, and ``fields[2]`` MSH-2, the encoding characters, both kept verbatim)."""

    name: str
    fields: list[Field]
    sequence: int = 1  # 1 for the first segment of this name in the message, 2 for the next...
    raw: str = ""  # the segment as received (escaped ER7), kept for Z-segments

    def field(self, n: int) -> Field:
        return self.fields[n] if 0 < n < len(self.fields) else []

    def state(self, n: int) -> FieldState:
        f = self.field(n)
        if not f or all(not any(any(c) for c in rep) for rep in f):
            return "absent"
        if len(f) == 1 and len(f[0]) == 1 and f[0][0] == [NULL]:
            return "null"
        return "present"

    def value(self, n: int, component: int = 1, sub: int = 1, rep: int = 1) -> str:
        """``SEG-n.component.sub`` of repetition ``rep``, ``""`` when absent."""
        f = self.field(n)
        if rep > len(f):
            return ""
        comps = f[rep - 1]
        if component > len(comps):
            return ""
        subs = comps[component - 1]
        return subs[sub - 1] if sub <= len(subs) else ""

    def repetitions(self, n: int) -> list[Repetition]:
        """The non-empty repetitions of field ``n``."""
        return [r for r in self.field(n) if any(any(c) for c in r)]

    def at(self, n: int, component: int = 0, rep: int = 0) -> ErrorLocation:
        return ErrorLocation(self.name, self.sequence, n, rep, component)


@dataclass
class Hl7Message:
    """A parsed message; ``segments[0]`` is ``MSH``."""

    segments: list[Segment]
    encoding_characters: str = "^~\\&"
    field_separator: str = "|"
    charset: str = "ascii"  # Python codec chosen from MSH-18

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def first(self, name: str) -> Segment | None:
        for seg in self.segments:
            if seg.name == name:
                return seg
        return None

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]

    @property
    def message_code(self) -> str:
        return self.msh.value(9, 1)

    @property
    def trigger_event(self) -> str:
        return self.msh.value(9, 2)

    @property
    def control_id(self) -> str:
        return self.msh.value(10)

    @property
    def version(self) -> str:
        return self.msh.value(12, 1)

    @property
    def sending_application(self) -> str:
        return self.msh.value(3, 1)

    @property
    def sending_facility(self) -> str:
        return self.msh.value(4, 1)


@dataclass
class Mapped:
    """A mapping's result: the resource built from the fields that were present, and the
    top-level elements whose source field was ``""`` (delete)."""

    resource: Resource
    cleared: frozenset[str] = frozenset()


@dataclass(frozen=True)
class IdentifierSystems:
    """Assigning authority (HD namespace or universal id) -> identifier system."""

    authorities: Mapping[str, str] = field(default_factory=dict)
    default_system: str = "urn:pixelhub:patient-id"

    def system(self, namespace: str, universal_id: str = "", id_type: str = "") -> str:
        """v2.5.1 ch. 2A HD -> ``Identifier.system`` (the rule shared with DICOM:
        ``mappings/identifier_system.md``)."""
        found = identifier_system(
            namespace, universal_id, id_type, self.authorities, self.default_system
        )
        return found or self.default_system


def _uri_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._~-]", "_", text)


def type_code(code: str) -> dict[str, Any]:
    """An ``Identifier.type`` from HL7 table 0203 (identifier type)."""
    return {"coding": [{"system": V2_0203, "code": code}]}


# ---------------------------------------------------------------------- date/time (ch. 2A DTM)

_DTM = re.compile(
    r"(?P<y>\d{4})(?:(?P<mo>\d{2})(?:(?P<d>\d{2})(?:(?P<h>\d{2})(?:(?P<mi>\d{2})"
    r"(?:(?P<s>\d{2})(?:\.(?P<f>\d{1,4}))?)?)?)?)?)?(?P<tz>[+-]\d{4})?"
)


def dtm_to_fhir(
    value: str, location: ErrorLocation, offset_of: OffsetOf | None, *, date_only: bool = False
) -> str:
    """HL7 v2.5.1 ch. 2A.22 DTM (``YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]``) -> FHIR
    ``dateTime`` (or ``date``). A time without a zone gets the sender's local offset from
    ``offset_of``; FHIR R4 datatypes.html#dateTime requires a zone once a time is given."""
    m = _DTM.fullmatch(value.strip())
    if not m:
        raise MappingError(102, f"{value!r} is not an HL7 date/time (DTM)", location)
    y, mo, d = int(m["y"]), m["mo"], m["d"]
    if mo is not None and not 1 <= int(mo) <= 12:
        raise MappingError(102, f"{value!r}: month out of range", location)
    if d is not None and not 1 <= int(d) <= calendar.monthrange(y, int(mo or 1))[1]:
        raise MappingError(102, f"{value!r}: day out of range", location)
    if y < 1800:
        raise MappingError(102, f"{value!r}: year out of range", location)
    h, mi, s = m["h"], m["mi"], m["s"]
    if (h and int(h) > 23) or (mi and int(mi) > 59) or (s and int(s) > 59):
        raise MappingError(102, f"{value!r}: time out of range", location)
    out = m["y"]
    if mo is not None:
        out += f"-{mo}"
    if d is not None:
        out += f"-{d}"
    if h is None or date_only:
        return out
    out += f"T{h}:{mi or '00'}:{s or '00'}"
    if m["f"]:
        out += f".{m['f']}"
    tz = m["tz"]
    if tz is not None:
        if int(tz[1:3]) > 14 or int(tz[3:]) > 59:
            raise MappingError(102, f"{value!r}: zone offset out of range", location)
        return out + f"{tz[:3]}:{tz[3:]}"
    if offset_of is None:
        return out + "Z"
    naive = datetime(y, int(mo or 1), int(d or 1), int(h), int(mi or 0), int(s or 0))
    minutes = int(offset_of(naive).total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return out + f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def ts_field(
    seg: Segment, n: int, offset_of: OffsetOf | None, *, date_only: bool = False
) -> str | None:
    """The DTM in ``SEG-n`` (TS/DTM: component 1), ``None`` when absent or ``""``."""
    raw = seg.value(n, 1)
    if not raw or raw == NULL:
        return None
    return dtm_to_fhir(raw, seg.at(n, 1), offset_of, date_only=date_only)


# ---------------------------------------------------------------------- shared data types


def hd_parts(rep: Repetition, component: int) -> tuple[str, str, str]:
    """An HD nested as subcomponents of ``component`` (e.g. CX.4): namespace, universal id,
    universal id type."""
    subs = rep[component - 1] if component <= len(rep) else []
    padded = [*subs, "", "", ""]
    return padded[0], padded[1], padded[2]


def comp(rep: Repetition, n: int, sub: int = 1) -> str:
    """Component ``n`` (subcomponent ``sub``) of one repetition."""
    if n > len(rep):
        return ""
    subs = rep[n - 1]
    return subs[sub - 1] if sub <= len(subs) else ""


def ei_identifier(
    seg: Segment, n: int, systems: IdentifierSystems, type_code_value: str, *, rep: int = 1
) -> Resource | None:
    """HL7 EI (entity id^namespace^universal id^type, ch. 2A.26) -> ``Identifier`` of the given
    v2-0203 type; ``None`` when absent."""
    reps = seg.repetitions(n)
    if len(reps) < rep:
        return None
    r = reps[rep - 1]
    value = comp(r, 1)
    if not value or value == NULL:
        return None
    system = systems.system(comp(r, 2), comp(r, 3), comp(r, 4))
    return {"type": type_code(type_code_value), "system": system, "value": value}


def xpn_name(
    family: str,
    given: str,
    middle: str,
    suffix: str,
    prefix: str,
    degree: str = "",
    use: str | None = None,
) -> Resource | None:
    """The FHIR ``HumanName`` of XPN name components (v2.5.1 ch. 2 §2.A.88: family, given,
    further given names, suffix, prefix, degree), also those of an XCN after its id (§2.A.89);
    ``None`` when neither a family nor a given name is there."""
    given_names = [g for g in (given, middle) if g]
    if not family and not given_names:
        return None
    name: Resource = {"use": use} if use else {}
    if family:
        name["family"] = family
    if given_names:
        name["given"] = given_names
    if prefix:
        name["prefix"] = [prefix]
    suffixes = [s for s in (suffix, degree) if s]
    if suffixes:
        name["suffix"] = suffixes
    return name


def xcn_reference(rep: Repetition, systems: IdentifierSystems) -> Resource | None:
    """HL7 XCN (id^family^given^middle^suffix^prefix^degree^source table^assigning authority,
    ch. 2A.89) -> a logical ``Reference`` with the identifier and a display name."""
    ident, family, given = comp(rep, 1), comp(rep, 2), comp(rep, 3)
    middle, suffix, prefix = comp(rep, 4), comp(rep, 5), comp(rep, 6)
    name = " ".join(p for p in (prefix, given, middle, family, suffix) if p)
    if not ident and not name:
        return None
    ref: Resource = {}
    if ident:
        ns, uid, utype = hd_parts(rep, 9)
        system = systems.system(ns, uid, utype) if ns or uid else PRACTITIONER_SYSTEM
        ref["identifier"] = {"system": system, "value": ident}
    if name:
        ref["display"] = name
    return ref


def cwe_concept(
    rep: Repetition, default_system: str | None = None, systems: Mapping[str, str] | None = None
) -> Resource | None:
    """HL7 CE/CWE (id^text^coding system^alt id^alt text^alt system, ch. 2A.13) ->
    ``CodeableConcept``; coding systems go through ``systems`` (e.g. ``LN`` -> LOINC)."""
    known = {**CODING_SYSTEMS, **(systems or {})}
    codings = []
    for code_i, text_i, sys_i in ((1, 2, 3), (4, 5, 6)):
        code = comp(rep, code_i)
        if not code or code == NULL:
            continue
        sys_name = comp(rep, sys_i)
        system = known.get(sys_name) or (
            f"urn:pixelhub:hl7v2:codesystem:{_uri_safe(sys_name)}" if sys_name else default_system
        )
        coding: Resource = {"code": code}
        if system:
            coding = {"system": system, **coding}
        text = comp(rep, text_i)
        if text:
            coding["display"] = text
        codings.append(coding)
    text = comp(rep, 2) or comp(rep, 5)
    if not codings and not text:
        return None
    out: Resource = {}
    if codings:
        out["coding"] = codings
    if text:
        out["text"] = text
    return out


# HL7 table 0396 coding system names -> FHIR system URIs (FHIR R4 terminologies-systems.html)
CODING_SYSTEMS: dict[str, str] = {
    "LN": "http://loinc.org",
    "SCT": "http://snomed.info/sct",
    "SNM": "http://snomed.info/sct",
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9": "http://hl7.org/fhir/sid/icd-9-cm",
    "C4": "http://www.ama-assn.org/go/cpt",
    "CPT4": "http://www.ama-assn.org/go/cpt",
    "DCM": "http://dicom.nema.org/resources/ontology/DCM",
    "RADLEX": "http://radlex.org",
    "RID": "http://radlex.org",
    "UCUM": "http://unitsofmeasure.org",
}


# HL7 table 0074 diagnostic service section ids, as in FHIR R4's v2-0074 code system
DIAGNOSTIC_SECTIONS = frozenset(
    "AU BG BLB CG CH CP CT CTH CUS EC EN HM ICU IMM LAB MB MCB MYC NMR NMS NRS OSL OT OTH OUS "
    "PF PHR PHY PT RAD RC RT RUS RX SP SR TX VR VUS XRC".split()
)
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"


def diagnostic_section(code: str) -> Resource:
    """OBR-24 as a ``category``: a table 0074 code as is; anything else (feeds often put the
    modality there, e.g. ``CR``, ``US``) -> ``RAD`` with the sender's value as text."""
    if code in DIAGNOSTIC_SECTIONS:
        return {"coding": [{"system": V2_0074, "code": code}]}
    out: Resource = {"coding": [{"system": V2_0074, "code": "RAD", "display": "Radiology"}]}
    if code and code != NULL:
        out["text"] = code
    return out


def merge_update(
    existing: Resource | None,
    mapped: Mapped,
    *,
    keep: Sequence[str] = (),
    deep: Sequence[str] = ("period",),
) -> Resource:
    """Apply a v2 update to a stored resource (ch. 2 §2.5.3): elements the message carries
    replace the stored ones, ``""`` fields delete them, absent fields leave them alone.
    ``identifier`` lists are united (a message never drops an identifier another channel gave);
    ``deep`` elements (e.g. ``period``) merge key by key, and a cleared ``"period.end"`` removes
    just that key; ``keep`` names elements the message must never overwrite (``link``)."""
    if existing is None:
        out: Resource = {}
    else:
        out = {k: v for k, v in existing.items() if k not in ("meta", "text")}
    for key in mapped.cleared:
        top, _, sub = key.partition(".")
        if top in keep:
            continue
        if sub and isinstance(out.get(top), dict):
            rest = {k: v for k, v in out[top].items() if k != sub}
            if rest:
                out[top] = rest
            else:
                out.pop(top)
        elif not sub:
            out.pop(top, None)
    for key, value in mapped.resource.items():
        if key in keep and key in out:
            continue
        if key == "identifier" and "identifier" in out:
            out["identifier"] = unite_identifiers(out["identifier"], value)
        elif key in deep and isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def unite_identifiers(old: list[Resource], new: list[Resource]) -> list[Resource]:
    """``new`` identifiers replace old ones with the same system+value; others are kept."""
    keys = {(i.get("system"), i.get("value")) for i in new}
    return [*new, *(i for i in old if (i.get("system"), i.get("value")) not in keys)]


def segments_after(msg: Hl7Message, start: Segment, stop: Sequence[str]) -> Iterator[Segment]:
    """The segments after ``start`` up to (excluding) the next one named in ``stop``."""
    idx = next(i for i, s in enumerate(msg.segments) if s is start)
    for seg in msg.segments[idx + 1 :]:
        if seg.name in stop:
            return
        yield seg


def require(seg: Segment | None, name: str) -> Segment:
    """The segment, or a 100 (segment sequence error) naming the missing one."""
    if seg is None:
        raise MappingError(100, f"Required segment {name} is missing", ErrorLocation(name))
    return seg
