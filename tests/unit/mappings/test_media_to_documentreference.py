"""Encounter-based capture -> DocumentReference (mappings/media_to_documentreference.md)."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from mappings.media_to_documentreference import (
    BLOB_EXTENSION,
    OLOGIES,
    Capture,
    Rendition,
    media_to_documentreference,
)

SCT = "http://snomed.info/sct"
DCM = "http://dicom.nema.org/resources/ontology/DCM"


def renditions() -> list[Rendition]:
    return [
        Rendition(
            "original",
            "image/jpeg",
            "https://h/media/d1/original",
            "media/ab/cd",
            1234,
            "qUqP5cyxm6YcTAhz05Hph5gvu9M=",
            "wound.jpg",
        ),
        Rendition("preview", "image/jpeg", "https://h/media/d1/preview", "media/ef", 99),
        Rendition("thumbnail", "image/jpeg", "https://h/media/d1/thumbnail", "media/01", 9),
    ]


def photo(**changes: Any) -> Capture:
    fields: dict[str, Any] = {
        "identifier": "urn:uuid:0b7e0c0e-2c6c-5d8e-9d3f-3f0b1e9a8c11",
        "patient": "Patient/p1",
        "kind": "image",
        "recorded": "2026-11-28T10:00:00.000Z",
        "renditions": renditions(),
        "encounter": "Encounter/e1",
        "ology": "dermatology",
        "body_site": (SCT, "56459004", "Foot"),
        "laterality": "L",
        "modality": "XC",
        "view": "plantar",
        "operator": "Practitioner/n1",
        "device": "Apple iPhone 15",
        "captured": "2026-11-27T16:50:00+01:00",
        "description": "Wound, left foot",
        "accession": "ACC-7",
        "study_uid": "1.2.3.4",
    }
    fields.update(changes)
    return Capture(**fields)


def valid(resource: dict[str, Any]) -> dict[str, Any]:
    get_fhir_model_class("DocumentReference").model_validate(resource)
    return resource


def codes(concepts: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for concept in concepts for c in concept.get("coding", [])}


def test_a_photo_maps_every_field_to_its_element() -> None:
    doc = valid(media_to_documentreference(photo()))
    assert doc["identifier"] == [
        {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:0b7e0c0e-2c6c-5d8e-9d3f-3f0b1e9a8c11"}
    ]
    assert doc["status"] == "current"
    assert doc["type"]["coding"][0]["code"] == "72170-4"
    assert codes(doc["category"]) == {("urn:pixelhub:ology", "dermatology"), (SCT, "394582007")}
    assert doc["subject"] == {"reference": "Patient/p1"}
    assert doc["date"] == "2026-11-28T10:00:00.000Z"
    assert doc["author"] == [{"reference": "Practitioner/n1"}, {"display": "Apple iPhone 15"}]
    assert doc["description"] == "Wound, left foot"
    context = doc["context"]
    assert context["encounter"] == [{"reference": "Encounter/e1"}]
    assert context["period"] == {
        "start": "2026-11-27T16:50:00+01:00",
        "end": "2026-11-27T16:50:00+01:00",
    }
    assert codes(context["event"]) == {(DCM, "XC"), (SCT, "56459004"), (SCT, "7771000")}
    assert {"text": "View: plantar"} in context["event"]
    assert codes([context["practiceSetting"]]) == {(SCT, "394582007")}
    related = [r["identifier"] for r in context["related"]]
    assert related[0]["value"] == "ACC-7"
    assert related[0]["type"]["coding"][0]["code"] == "ACSN"
    assert related[1] == {"system": "urn:dicom:uid", "value": "urn:oid:1.2.3.4"}


def test_the_original_and_its_renditions_are_the_content() -> None:
    doc = media_to_documentreference(photo())
    original, preview, thumbnail = (c["attachment"] for c in doc["content"])
    assert original["contentType"] == "image/jpeg"
    assert original["url"] == "https://h/media/d1/original"
    assert original["size"] == 1234
    assert original["hash"] == "qUqP5cyxm6YcTAhz05Hph5gvu9M="
    assert original["title"] == "wound.jpg"
    assert original["creation"] == "2026-11-27T16:50:00+01:00"
    assert original["extension"] == [{"url": BLOB_EXTENSION, "valueString": "media/ab/cd"}]
    assert doc["content"][0]["format"]["code"] == "urn:ihe:iti:xds:2017:mimeTypeSufficient"
    assert "creation" not in preview and "format" not in doc["content"][1]
    assert thumbnail["url"].endswith("/thumbnail")


def test_a_bare_capture_has_only_what_was_given() -> None:
    doc = valid(
        media_to_documentreference(
            Capture(
                identifier="urn:uuid:1",
                patient="Patient/p",
                kind="document",
                recorded="2026-11-28T10:00:00Z",
                renditions=renditions()[:1],
            )
        )
    )
    assert doc["type"] == {"text": "Scanned document"}
    assert "context" not in doc and "author" not in doc and "category" not in doc


@pytest.mark.parametrize("kind", ["video", "audio"])
def test_video_and_audio_are_typed_by_the_r4_media_type(kind: str) -> None:
    doc = valid(media_to_documentreference(photo(kind=kind)))
    coding = doc["type"]["coding"][0]
    assert (coding["system"], coding["code"]) == (
        "http://terminology.hl7.org/CodeSystem/media-type",
        kind,
    )


@pytest.mark.parametrize("ology", sorted(OLOGIES))
def test_every_ology_is_a_category(ology: str) -> None:
    doc = valid(media_to_documentreference(photo(ology=ology)))
    assert ("urn:pixelhub:ology", ology) in codes(doc["category"])
    specialty = OLOGIES[ology].specialty
    assert ("practiceSetting" in doc["context"]) == (specialty is not None)


def test_a_device_resource_is_an_author_reference() -> None:
    doc = media_to_documentreference(photo(device="Device/d9", operator=None))
    assert doc["author"] == [{"reference": "Device/d9"}]
