"""The text fields of an upload (``POST /media``), checked and normalised; 400 for a field that
is unknown, malformed or out of its value set, so a typo never silently drops metadata."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hub.errors import InvalidRequest
from mappings.dicom_bodysite import SNOMED_SYSTEM, body_part_coding
from mappings.media_to_documentreference import OLOGIES

_ID = r"[A-Za-z0-9\-.]{1,64}"
_REFERENCE = re.compile(rf"(?:(?P<type>[A-Z][A-Za-z]+)/)?(?P<id>{_ID})")
# FHIR dateTime (datatypes.html#dateTime): a time needs a zone.
_DATETIME = re.compile(
    r"[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01])"
    r"(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]{1,9})?"
    r"(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?"
)
_MODALITY = re.compile(r"[A-Z0-9_]{1,16}")
_LATERALITY = {"l": "L", "left": "L", "r": "R", "right": "R", "b": "B", "bilateral": "B"}
_WRAP = ("dicom", "none")
FIELDS = frozenset(
    {
        "patient",
        "encounter",
        "ology",
        "bodySite",
        "laterality",
        "modality",
        "view",
        "operator",
        "device",
        "captured",
        "description",
        "accession",
        "wrap",
    }
)


@dataclass(frozen=True)
class CaptureFields:
    patient: str  # "Patient/<id>" or an identifier "system|value"
    encounter: str | None = None  # "Encounter/<id>"
    ology: str | None = None
    body_site: tuple[str, str, str] | None = None
    laterality: str | None = None  # "L", "R", "B"
    modality: str | None = None
    view: str | None = None
    operator: str | None = None  # "Practitioner/<id>" or "PractitionerRole/<id>"
    device: str | None = None  # "Device/<id>" or a name
    captured: str | None = None
    description: str | None = None
    accession: str | None = None
    wrap: str | None = None  # "dicom", "none", or None for the department policy


def _reference(name: str, value: str, types: tuple[str, ...]) -> str:
    """``Type/id`` (or a bare id of the first type) of one of ``types``."""
    match = _REFERENCE.fullmatch(value)
    if match is None or (match["type"] or types[0]) not in types:
        raise InvalidRequest(f"{name}: expected {' or '.join(t + '/<id>' for t in types)}")
    return f"{match['type'] or types[0]}/{match['id']}"


def _body_site(value: str) -> tuple[str, str, str]:
    """``system|code``, a SNOMED CT code, or a DICOM Body Part Examined term (PS3.16 Annex L)."""
    system, bar, code = value.rpartition("|")
    if bar:
        if not system or not code:
            raise InvalidRequest("bodySite: expected system|code")
        return system, code, ""
    if value.isdigit():
        return SNOMED_SYSTEM, value, ""
    coding = body_part_coding(value)
    if coding is None:
        raise InvalidRequest(f"bodySite: {value!r} is neither a code nor a DICOM body part term")
    return coding["system"], coding["code"], coding["display"]


def capture_fields(fields: dict[str, str]) -> CaptureFields:
    """The upload's fields as a ``CaptureFields``; ``InvalidRequest`` (400) names the field."""
    unknown = sorted(set(fields) - FIELDS)
    if unknown:
        raise InvalidRequest(f"Unknown field(s): {', '.join(unknown)}")
    given = {k: v for k, v in fields.items() if v}
    patient = given.get("patient")
    if not patient:
        raise InvalidRequest("patient: required (Patient/<id> or an identifier system|value)")
    if "|" not in patient:
        patient = _reference("patient", patient, ("Patient",))
    ology = given.get("ology")
    if ology is not None and ology not in OLOGIES:
        raise InvalidRequest(f"ology: one of {', '.join(OLOGIES)}")
    laterality = given.get("laterality")
    if laterality is not None:
        if laterality.lower() not in _LATERALITY:
            raise InvalidRequest("laterality: left, right or bilateral (or L, R, B)")
        laterality = _LATERALITY[laterality.lower()]
    modality = given.get("modality")
    if modality is not None and not _MODALITY.fullmatch(modality.upper()):
        raise InvalidRequest("modality: a DICOM modality code (e.g. XC, ES, OP, US, GM)")
    captured = given.get("captured")
    if captured is not None and not _DATETIME.fullmatch(captured):
        raise InvalidRequest("captured: a FHIR dateTime (e.g. 2026-11-28T10:15:00+01:00)")
    wrap = given.get("wrap")
    if wrap is not None and wrap not in _WRAP:
        raise InvalidRequest("wrap: dicom or none")
    device = given.get("device")
    if device is not None and device.startswith("Device/"):
        device = _reference("device", device, ("Device",))
    encounter = given.get("encounter")
    operator = given.get("operator")
    return CaptureFields(
        patient=patient,
        encounter=_reference("encounter", encounter, ("Encounter",)) if encounter else None,
        ology=ology,
        body_site=_body_site(given["bodySite"]) if "bodySite" in given else None,
        laterality=laterality,
        modality=modality.upper() if modality else None,
        view=given.get("view"),
        operator=(
            _reference("operator", operator, ("Practitioner", "PractitionerRole"))
            if operator
            else None
        ),
        device=device,
        captured=captured,
        description=given.get("description"),
        accession=given.get("accession"),
        wrap=wrap,
    )


__all__ = ["FIELDS", "CaptureFields", "capture_fields"]
