"""An encounter-based capture (a photo, video, audio clip or scanned document) -> an R4
``DocumentReference`` (FHIR R4 documentreference.html), after the IHE Encounter-Based Imaging
Workflow and the MHD/MADO way of describing images as documents, so the same record can later be
shared over XDS/MHD. See ``media_to_documentreference.md`` for the table.

- ``category`` names the ology (clinical specialty: PixelHub's ology code plus the SNOMED CT
  practice setting where one exists), ``context.practiceSetting`` the same SNOMED code;
- ``context.event`` carries the acquisition codes as XDS eventCodeList does for imaging (MADO):
  the modality (DICOM CID 29), the body site and its laterality (SNOMED CT);
- ``content`` holds the original and its renditions (preview, thumbnail, a DICOM wrap), each an
  ``Attachment`` whose ``url`` is where PixelHub serves it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mappings.dicom_bodysite import SNOMED_SYSTEM as SCT
from mappings.dicom_bodysite import laterality_coding
from mappings.dicom_to_imagingstudy import r4_modality

__all__ = [
    "BLOB_EXTENSION",
    "OLOGIES",
    "Capture",
    "Ology",
    "Rendition",
    "media_to_documentreference",
]

Resource = dict[str, Any]
Kind = Literal["image", "video", "audio", "document"]

DCM = "http://dicom.nema.org/resources/ontology/DCM"
LOINC = "http://loinc.org"
MEDIA_TYPE = "http://terminology.hl7.org/CodeSystem/media-type"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
FORMAT_CODE = "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode"
OLOGY_SYSTEM = "urn:pixelhub:ology"
DICOM_UID = "urn:dicom:uid"
# Where PixelHub keeps a rendition's bytes (its blob key): read by the media service only.
BLOB_EXTENSION = "urn:pixelhub:media:blob"


@dataclass(frozen=True)
class Ology:
    display: str
    specialty: tuple[str, str] | None  # SNOMED CT practice setting (code, display)


# The ologies of the enterprise imaging record (DESIGN.md), each a category code of its own and,
# where SNOMED CT has the specialty, its practice setting code (XDS practiceSettingCode).
OLOGIES: dict[str, Ology] = {
    "radiology": Ology("Radiology", ("394914008", "Radiology")),
    "cardiology": Ology("Cardiology", ("394579002", "Cardiology")),
    "pathology": Ology("Pathology", ("394915009", "General pathology")),
    "dermatology": Ology("Dermatology", ("394582007", "Dermatology")),
    "wound-care": Ology("Wound care", None),
    "ophthalmology": Ology("Ophthalmology", ("394594003", "Ophthalmology")),
    "endoscopy": Ology("Endoscopy", ("394584008", "Gastroenterology")),
    "pocus": Ology("Point-of-care ultrasound", None),
}

# DocumentReference.type per kind: LOINC for a photo, R4 media-type otherwise.
_TYPE: dict[str, tuple[str, str, str]] = {
    "image": (LOINC, "72170-4", "Photographic image Unspecified body region Document"),
    "video": (MEDIA_TYPE, "video", "Video"),
    "audio": (MEDIA_TYPE, "audio", "Audio"),
}


@dataclass(frozen=True)
class Rendition:
    """One representation of the capture: the original as received, or one PixelHub made."""

    role: Literal["original", "preview", "thumbnail", "dicom"]
    content_type: str
    url: str
    blob_key: str | None = None
    size: int | None = None
    sha1: str | None = None  # base64 SHA-1 of the bytes (Attachment.hash)
    title: str | None = None


@dataclass(frozen=True)
class Capture:
    """What the uploader said and what PixelHub found in the bytes."""

    identifier: str  # urn:uuid:..., stable for the same bytes and patient
    patient: str  # "Patient/<id>"
    kind: Kind
    recorded: str  # instant of the upload
    renditions: Sequence[Rendition]
    encounter: str | None = None  # "Encounter/<id>"
    ology: str | None = None  # a key of OLOGIES
    body_site: tuple[str, str, str] | None = None  # (system, code, display)
    laterality: str | None = None  # DICOM laterality: "L", "R" or "B" (PS3.16 CID 244)
    modality: str | None = None  # DICOM modality code (DCM)
    view: str | None = None
    operator: str | None = None  # "Practitioner/<id>" or "PractitionerRole/<id>"
    device: str | None = None  # "Device/<id>", or a device's name (e.g. from EXIF)
    captured: str | None = None  # dateTime the capture was taken
    description: str | None = None
    accession: str | None = None
    study_uid: str | None = None  # the DICOM study of the wrapped object


def _concept(system: str, code: str, display: str | None = None) -> Resource:
    coding: Resource = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def _attachment(rendition: Rendition, captured: str | None) -> Resource:
    attachment: Resource = {"contentType": rendition.content_type, "url": rendition.url}
    if rendition.blob_key:
        attachment["extension"] = [{"url": BLOB_EXTENSION, "valueString": rendition.blob_key}]
    if rendition.size is not None:
        attachment["size"] = rendition.size
    if rendition.sha1:
        attachment["hash"] = rendition.sha1
    if rendition.title:
        attachment["title"] = rendition.title
    if captured and rendition.role == "original":
        attachment["creation"] = captured
    return attachment


def _content(rendition: Rendition, captured: str | None) -> Resource:
    content: Resource = {"attachment": _attachment(rendition, captured)}
    if rendition.role == "original":
        content["format"] = {
            "system": FORMAT_CODE,
            "code": "urn:ihe:iti:xds:2017:mimeTypeSufficient",
            "display": "mimeType Sufficient",
        }
    return content


def _events(capture: Capture) -> list[Resource]:
    events: list[Resource] = []
    if capture.modality:
        events.append(_concept(DCM, r4_modality(capture.modality)))
    if capture.body_site:
        events.append(_concept(*capture.body_site))
    lateral = laterality_coding(capture.laterality or "")
    if lateral:
        events.append({"coding": [lateral]})
    if capture.view:
        events.append({"text": f"View: {capture.view}"})
    return events


def _related(capture: Capture) -> list[Resource]:
    related: list[Resource] = []
    if capture.accession:
        related.append(
            {
                "identifier": {
                    "type": _concept(V2_0203, "ACSN"),
                    "value": capture.accession,
                }
            }
        )
    if capture.study_uid:
        related.append(
            {"identifier": {"system": DICOM_UID, "value": f"urn:oid:{capture.study_uid}"}}
        )
    return related


def _authors(capture: Capture) -> list[Resource]:
    authors: list[Resource] = []
    if capture.operator:
        authors.append({"reference": capture.operator})
    if capture.device:
        if capture.device.startswith("Device/"):
            authors.append({"reference": capture.device})
        else:
            authors.append({"display": capture.device})
    return authors


def media_to_documentreference(capture: Capture) -> Resource:
    """The ``DocumentReference`` of one capture (see the module docstring and the table)."""
    doc: Resource = {
        "resourceType": "DocumentReference",
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": capture.identifier}],
        "status": "current",
    }
    if capture.kind in _TYPE:
        doc["type"] = _concept(*_TYPE[capture.kind])
    else:
        doc["type"] = {"text": "Scanned document"}
    ology = OLOGIES.get(capture.ology or "")
    if ology is not None:
        category = _concept(OLOGY_SYSTEM, capture.ology or "", ology.display)
        if ology.specialty:
            category["coding"].append(_concept(SCT, *ology.specialty)["coding"][0])
        doc["category"] = [category]
    doc["subject"] = {"reference": capture.patient}
    doc["date"] = capture.recorded
    authors = _authors(capture)
    if authors:
        doc["author"] = authors
    if capture.description:
        doc["description"] = capture.description
    doc["content"] = [_content(r, capture.captured) for r in capture.renditions]
    context: Resource = {}
    if capture.encounter:
        context["encounter"] = [{"reference": capture.encounter}]
    events = _events(capture)
    if events:
        context["event"] = events
    if capture.captured:
        # A capture is an instant: a period without an end would be "still going" (search.html).
        context["period"] = {"start": capture.captured, "end": capture.captured}
    if ology is not None and ology.specialty:
        context["practiceSetting"] = _concept(SCT, *ology.specialty)
    related = _related(capture)
    if related:
        context["related"] = related
    if context:
        doc["context"] = context
    return doc
