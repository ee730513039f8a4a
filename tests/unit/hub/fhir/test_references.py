"""Walking the objects of a resource for its references and attachments (FHIR R4
references.html, datatypes.html#Attachment)."""

from __future__ import annotations

from hub.fhir.references import is_attachment, iter_objects, location


def test_every_object_comes_with_its_fhirpath_location() -> None:
    report = {
        "resourceType": "DiagnosticReport",
        "subject": {"reference": "Patient/1"},
        "result": [{"reference": "Observation/2"}, {"extension": [{"reference": "Group/3"}]}],
        "code": {"text": "no reference here", "reference": 7},
    }
    found = {location("DR", place): obj.get("reference") for obj, place in iter_objects(report)}
    assert found == {
        "DR": None,
        "DR.subject": "Patient/1",
        "DR.result[0]": "Observation/2",
        "DR.result[1]": None,
        "DR.result[1].extension[0]": "Group/3",
        "DR.code": 7,
    }


def test_attachments_are_objects_with_a_url_and_attachment_elements() -> None:
    doc = {
        "resourceType": "DocumentReference",
        "extension": [{"url": "http://example.org/ext", "valueString": "x"}],
        "content": [{"attachment": {"url": "urn:uuid:1", "contentType": "image/jpeg"}}],
    }
    assert [o["url"] for o, _ in iter_objects(doc) if is_attachment(o)] == ["urn:uuid:1"]
