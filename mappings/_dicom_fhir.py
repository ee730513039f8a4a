"""DICOM value -> FHIR datatype conversions shared by the DICOM mappings (private).

- Code Sequence items -> ``Coding``/``CodeableConcept``: the Coding Scheme Designator (PS3.16
  Table 8-1) is turned into a FHIR system URI (FHIR R4 ``terminologies-systems.html``).
- PN -> ``HumanName`` (PS3.5 6.2.1.1; FHIR R4 ``datatypes.html#HumanName``), with the
  ``iso21090-EN-representation`` extension on ideographic and phonetic groups.
- DA/TM + Timezone Offset From UTC -> FHIR ``dateTime`` (PS3.5 Table 6.2-1; PS3.3 C.12.1.1.8).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta, tzinfo
from types import MappingProxyType
from typing import Any, Final

from mappings.dicom_instance import CodedConcept, PersonName

DCM_SYSTEM: Final = "http://dicom.nema.org/resources/ontology/DCM"
SNOMED_SYSTEM: Final = "http://snomed.info/sct"

DEFAULT_CODING_SYSTEMS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "DCM": DCM_SYSTEM,
        "SCT": SNOMED_SYSTEM,
        "SRT": "http://snomed.info/srt",
        "LN": "http://loinc.org",
        "UCUM": "http://unitsofmeasure.org",
        "RADLEX": "http://www.radlex.org",
        "I10": "http://hl7.org/fhir/sid/icd-10",
        "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
        "C4": "http://www.ama-assn.org/go/cpt",
        "UMLS": "http://www.nlm.nih.gov/research/umls",
    }
)
"""Coding Scheme Designator -> FHIR system URI, for the schemes PixelHub knows."""

EN_REPRESENTATION: Final = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"


def coding(concept: CodedConcept, systems: Mapping[str, str]) -> dict[str, str] | None:
    """The FHIR Coding for a DICOM coded concept, or None if its scheme has no known URI."""
    system = systems.get(concept.scheme)
    if system is None:
        return None
    result = {"system": system, "code": concept.code}
    if concept.scheme_version:
        result["version"] = concept.scheme_version
    if concept.meaning:
        result["display"] = concept.meaning
    return result


def codeable_concept(concept: CodedConcept, systems: Mapping[str, str]) -> dict[str, Any]:
    """A CodeableConcept: the Coding when the scheme is known, else only the meaning as text."""
    found = coding(concept, systems)
    if found is not None:
        return {"coding": [found]}
    return {"text": concept.meaning or concept.code}


# --------------------------------------------------------------------------------------------
# Person names


def name_components(group: str) -> tuple[str, str, str, str, str]:
    """Family, given, middle, prefix, suffix of one PN component group (PS3.5 6.2.1.1).

    Surplus components (a malformed value with more than five) are kept in the suffix.
    """
    parts = [" ".join(p.split()) for p in group.split("^")]
    parts += [""] * (5 - len(parts))
    suffix = " ".join(p for p in parts[4:] if p)
    return parts[0], parts[1], parts[2], parts[3], suffix


def _human_name(group: str, *, family_first: bool = False) -> dict[str, Any] | None:
    family, given, middle, prefix, suffix = name_components(group)
    name: dict[str, Any] = {}
    order = (
        (prefix, family, given, middle, suffix)
        if family_first
        else (prefix, given, middle, family, suffix)
    )
    text = " ".join(p for p in order if p)
    if not text:
        return None
    name["text"] = text
    if family:
        name["family"] = family
    givens = [g for g in (given, middle) if g]
    if givens:
        name["given"] = givens
    if prefix:
        name["prefix"] = [prefix]
    if suffix:
        name["suffix"] = [suffix]
    return name


def human_names(name: PersonName) -> list[dict[str, Any]]:
    """One HumanName per non-empty PN component group.

    The alphabetic group is ``use: official``; ideographic and phonetic groups carry the
    ``iso21090-EN-representation`` extension (``IDE``, ``SYL``) so that readers can tell them
    apart, and their ``text`` puts the family name first, as the languages that use those
    groups (Japanese, Korean, Chinese) write it.
    """
    names: list[dict[str, Any]] = []
    for group, representation in (
        (name.alphabetic, ""),
        (name.ideographic, "IDE"),
        (name.phonetic, "SYL"),
    ):
        human = _human_name(group, family_first=bool(representation))
        if human is None:
            continue
        if representation:
            human = {
                "extension": [{"url": EN_REPRESENTATION, "valueCode": representation}],
                **human,
            }
        else:
            human = {"use": "official", **human}
        names.append(human)
    return names


def display_name(name: PersonName) -> str:
    """A one-line display for a PN: the first non-empty group ("prefix given middle family")."""
    for group, family_first in (
        (name.alphabetic, False),
        (name.ideographic, True),
        (name.phonetic, True),
    ):
        human = _human_name(group, family_first=family_first)
        if human is not None:
            return str(human["text"])
    return ""


# --------------------------------------------------------------------------------------------
# Dates and times

_DA_RE: Final = re.compile(r"^(\d{4})\.?(\d{2})\.?(\d{2})$")  # YYYYMMDD; ACR-NEMA YYYY.MM.DD
_TM_RE: Final = re.compile(r"^(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?$")
_TZ_RE: Final = re.compile(r"^([+-])(\d{2})(\d{2})$")


def _parse_date(value: str) -> date | None:
    match = _DA_RE.match(value.strip())
    if match is None:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def _parse_time(value: str) -> tuple[int, int, int, str] | None:
    match = _TM_RE.match(value.strip())
    if match is None:
        return None
    hour, minute, second = int(match[1]), int(match[2] or 0), int(match[3] or 0)
    # 60 is allowed for a leap second (PS3.5 Table 6.2-1 TM), as in FHIR's dateTime.
    if hour > 23 or minute > 59 or second > 60:
        return None
    return hour, minute, second, match[4] or ""


def _format_offset(offset: timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _parse_offset(value: str) -> str | None:
    match = _TZ_RE.match(value.strip())
    if match is None:
        return None
    hours, minutes = int(match[2]), int(match[3])
    # PS3.3 C.12.1.1.8: -1200 to +1400.
    if minutes > 59 or hours > 14 or (match[1] == "-" and hours > 12):
        return None
    return f"{match[1]}{hours:02d}:{minutes:02d}"


def dicom_date_to_fhir(value: str) -> str | None:
    """DA (``YYYYMMDD``, or the ACR-NEMA ``YYYY.MM.DD``) -> FHIR ``date``; None if invalid."""
    parsed = _parse_date(value)
    return parsed.isoformat() if parsed is not None else None


def dicom_datetime_to_fhir(
    date_value: str,
    time_value: str = "",
    timezone_offset: str = "",
    *,
    default_timezone: tzinfo | None = None,
) -> str | None:
    """DA + TM + Timezone Offset From UTC (0008,0201) -> FHIR ``dateTime``; None if no date.

    FHIR requires a zone whenever a time is given (R4 ``datatypes.html#dateTime``), and DICOM
    times are local (PS3.5 Table 6.2-1). The zone is the ``timezone_offset`` (``+HHMM``) when
    valid, else ``default_timezone`` applied to that local time (so daylight saving time is
    honoured), else the time is dropped and only the date is returned: a date is true, a time
    with a guessed zone might not be. An invalid time likewise gives the date alone.
    """
    parsed_date = _parse_date(date_value)
    if parsed_date is None:
        return None
    day = parsed_date.isoformat()
    parsed_time = _parse_time(time_value) if time_value.strip() else None
    if parsed_time is None:
        return day
    hour, minute, second, fraction = parsed_time
    zone = _parse_offset(timezone_offset) if timezone_offset.strip() else None
    if zone is None and default_timezone is not None:
        local = datetime.combine(parsed_date, datetime.min.time()).replace(
            hour=hour, minute=minute, second=min(second, 59)
        )
        offset = default_timezone.utcoffset(local)
        zone = _format_offset(offset) if offset is not None else None
    if zone is None:
        return day
    clock = f"{hour:02d}:{minute:02d}:{second:02d}" + (f".{fraction}" if fraction else "")
    return f"{day}T{clock}{zone}"
