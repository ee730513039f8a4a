"""Search contract for ``_content`` and ``_text`` (FHIR R4 search.html#content, #text): the words
of a resource's text, and of its narrative, found by word prefix, every word of a value required,
values ORed; identical on every engine."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from hub.errors import InvalidSearch, UnknownSearchParameter

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
DCM = "http://dicom.nema.org/resources/ontology/DCM"


def _narrative(xhtml: str) -> dict[str, str]:
    return {
        "status": "generated",
        "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{xhtml}</div>',
    }


PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "identifier": [{"system": "urn:mrn", "value": "MRN77"}],
    "name": [{"family": "Gómez", "given": ["Ana", "Lucía"]}],
    "birthDate": "1961-07-02",
}

STUDY: dict[str, Any] = {
    "resourceType": "ImagingStudy",
    "id": "ct-chest",
    "status": "available",
    "subject": {"reference": "Patient/p1"},
    "started": "2024-03-05T10:00:00Z",
    "modality": [{"system": DCM, "code": "CT"}],
    "description": "CT chest with contrast",
    "series": [
        {
            "uid": "1.2.826.0.1.3680043.8.498.1",
            "modality": {"system": DCM, "code": "CT"},
            "description": "Axial 1.25 mm",
            "bodySite": {"system": SNOMED, "code": "44029006", "display": "Left lung"},
        }
    ],
}

REPORT: dict[str, Any] = {
    "resourceType": "DiagnosticReport",
    "id": "ct-chest-report",
    "status": "final",
    "text": _narrative("<p>CT chest report for <b>José Pérez</b>, signed.</p>"),
    "code": {"coding": [{"system": LOINC, "code": "24627-2", "display": "CT Chest"}]},
    "subject": {"reference": "Patient/p1"},
    "imagingStudy": [{"reference": "ImagingStudy/ct-chest"}],
    "presentedForm": [
        {
            "contentType": "text/plain; charset=utf-8",
            "language": "en",
            "data": base64.b64encode(b"Spiculated nodule in the right upper lobe").decode(),
        }
    ],
}

DOCUMENT: dict[str, Any] = {
    "resourceType": "DocumentReference",
    "id": "wound-photo",
    "status": "current",
    "subject": {"reference": "Patient/p1"},
    "type": {"coding": [{"system": LOINC, "code": "72170-4", "display": "Photographic image"}]},
    "content": [
        {
            "attachment": {
                "contentType": "image/jpeg",
                "url": "Binary/wound-photo-jpeg",
                "title": "Décubitus ulcer, left heel",
            }
        }
    ],
}

# Only codes and identifiers: nothing for _content, however the words are spelled.
CODED: dict[str, Any] = {
    "resourceType": "DiagnosticReport",
    "id": "coded",
    "status": "final",
    "identifier": [{"system": "urn:accession", "value": "nodule"}],
    "code": {"coding": [{"system": LOINC, "code": "chest"}]},
    "subject": {"reference": "Patient/p1"},
}


@pytest.fixture
def texts(store: Any) -> Any:
    store.put(PATIENT, STUDY, REPORT, DOCUMENT, CODED)
    return store


@pytest.mark.parametrize(
    ("resource_type", "qs", "expected"),
    [
        # one word, anywhere in the readable text
        ("DiagnosticReport", "_content=nodule", {"ct-chest-report"}),  # the text/plain report
        ("ImagingStudy", "_content=lung", {"ct-chest"}),  # series bodySite display
        ("ImagingStudy", "_content=contrast", {"ct-chest"}),  # description
        ("DocumentReference", "_content=ulcer", {"wound-photo"}),  # attachment title
        ("DocumentReference", "_content=photographic", {"wound-photo"}),  # type display
        # prefixes of words, not parts inside them
        ("DiagnosticReport", "_content=nod", {"ct-chest-report"}),
        ("DiagnosticReport", "_content=odule", set()),
        # every word of a value, in any order
        ("DiagnosticReport", "_content=right lobe", {"ct-chest-report"}),
        ("DiagnosticReport", "_content=lobe right", {"ct-chest-report"}),
        ("DiagnosticReport", "_content=left lobe", set()),
        ("ImagingStudy", "_content=left lung", {"ct-chest"}),
        # values ORed
        ("ImagingStudy", "_content=chest,nodule", {"ct-chest"}),
        ("DiagnosticReport", "_content=chest,nodule", {"ct-chest-report"}),
        ("DiagnosticReport", "_content=heel,right lobe", {"ct-chest-report"}),
        ("DocumentReference", "_content=heel,right lobe", {"wound-photo"}),
        # case and accents folded, in the resource and in the value
        ("DiagnosticReport", "_content=NODULE", {"ct-chest-report"}),
        ("DiagnosticReport", "_content=jose perez", {"ct-chest-report"}),
        ("DiagnosticReport", "_content=Pérez", {"ct-chest-report"}),
        ("DocumentReference", "_content=decubitus", {"wound-photo"}),
        ("DocumentReference", "_content=DÉCUBITUS", {"wound-photo"}),
        # not matching: an absent word, codes, identifiers, references
        ("DiagnosticReport", "_content=pneumothorax", set()),
        ("DiagnosticReport", "_content=24627", set()),
        ("DiagnosticReport", "_content=p1", set()),
        ("ImagingStudy", "_content=44029006", set()),
        # _text: the narrative only
        ("DiagnosticReport", "_text=signed", {"ct-chest-report"}),
        ("DiagnosticReport", "_text=perez jose", {"ct-chest-report"}),
        ("DiagnosticReport", "_text=nodule", set()),  # in the report, not in the narrative
        ("ImagingStudy", "_text=chest", set()),  # no narrative
        # with other criteria
        ("DiagnosticReport", "_content=nodule&status=final", {"ct-chest-report"}),
        ("DiagnosticReport", "_content=nodule&status=preliminary", set()),
    ],
)
def test_content_and_text(texts: Any, resource_type: str, qs: str, expected: set[str]) -> None:
    assert texts.idset(resource_type, qs) == expected, qs


def test_content_through_has(texts: Any) -> None:
    assert texts.idset("Patient", "_has:DiagnosticReport:subject:_content=right lobe") == {"p1"}
    assert texts.idset("Patient", "_has:DiagnosticReport:subject:_content=left lobe") == set()


@pytest.mark.parametrize("resource_type", ["Patient", "AuditEvent", None])
def test_content_is_served_on_the_imaging_record_types_only(
    texts: Any, resource_type: str | None
) -> None:
    with pytest.raises(UnknownSearchParameter):
        texts.query(resource_type, "_content=gomez")


def test_content_follows_updates_and_deletes(texts: Any) -> None:
    changed = {**STUDY, "description": "MR knee", "series": []}
    texts.put(changed)
    assert texts.idset("ImagingStudy", "_content=contrast") == set()
    assert texts.idset("ImagingStudy", "_content=knee") == {"ct-chest"}
    texts.delete("ImagingStudy", "ct-chest")
    assert texts.idset("ImagingStudy", "_content=knee") == set()


@pytest.mark.parametrize(
    "qs", ["_content=", "_content=a", "_content=-", "_content:missing=true", "_content:exact=x"]
)
def test_content_without_words_or_with_a_modifier_is_invalid(texts: Any, qs: str) -> None:
    with pytest.raises(InvalidSearch):
        texts.query("DiagnosticReport", qs)
