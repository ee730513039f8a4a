"""The FHIR validator harness itself: valid resources pass, broken ones fail where they break.

The invalid cases matter as much as the valid ones: a validator that lost its definitions would
pass everything, so each broken resource must yield an error at the expected location. All cases
go to the JVM as one batch. The last test validates whatever the whole run collected.
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import pytest

# The first test to need the validator may build it (a cold Maven cache takes minutes).
pytestmark = pytest.mark.timeout(1800)

BASE = "http://localhost:8080/fhir"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
STUDY_UID = "1.2.840.113619.2.55.3.604688119.969.1268071029.320"

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": "MRN-0001"}],
    "name": [{"family": "Doe", "given": ["Jane"]}],
    "gender": "female",
    "birthDate": "1970-01-31",
}

IMAGING_STUDY: dict[str, Any] = {
    "resourceType": "ImagingStudy",
    "id": "s1",
    "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{STUDY_UID}"}],
    "status": "available",
    "modality": [{"system": DCM, "code": "CT"}],
    "subject": {"reference": "Patient/p1"},
    "started": "2024-03-01T10:15:00+01:00",
    "endpoint": [{"reference": "Endpoint/wado"}],
    "numberOfSeries": 1,
    "numberOfInstances": 2,
    "description": "CT chest without contrast",
    "series": [
        {
            "uid": f"{STUDY_UID}.1",
            "number": 1,
            "modality": {"system": DCM, "code": "CT"},
            "description": "Axial 1 mm",
            "numberOfInstances": 2,
            "bodySite": {"system": "http://snomed.info/sct", "code": "51185008"},
            "instance": [
                {
                    "uid": f"{STUDY_UID}.1.{n}",
                    "sopClass": {
                        "system": "urn:ietf:rfc:3986",
                        "code": "urn:oid:1.2.840.10008.5.1.4.1.1.2",
                    },
                    "number": n,
                }
                for n in (1, 2)
            ],
        }
    ],
}

DOCUMENT_REFERENCE: dict[str, Any] = {
    "resourceType": "DocumentReference",
    "id": "d1",
    "status": "current",
    "type": {"coding": [{"system": "http://loinc.org", "code": "18748-4"}]},
    "subject": {"reference": "Patient/p1"},
    "date": "2024-03-01T11:00:00Z",
    "content": [
        {
            "attachment": {
                "contentType": "application/pdf",
                "url": "Binary/b1",
                "title": "CT chest report",
            }
        }
    ],
    "context": {"related": [{"reference": "ImagingStudy/s1"}]},
}

OPERATION_OUTCOME: dict[str, Any] = {
    "resourceType": "OperationOutcome",
    "issue": [
        {
            "severity": "error",
            "code": "not-found",
            "details": {"text": "ImagingStudy/unknown is not known"},
            "diagnostics": "no ImagingStudy with id 'unknown'",
        }
    ],
}

SEARCHSET: dict[str, Any] = {
    "resourceType": "Bundle",
    "type": "searchset",
    "total": 1,
    "link": [{"relation": "self", "url": f"{BASE}/ImagingStudy?patient=p1&_include=*"}],
    "entry": [
        {
            "fullUrl": f"{BASE}/ImagingStudy/s1",
            "resource": IMAGING_STUDY,
            "search": {"mode": "match"},
        },
        {"fullUrl": f"{BASE}/Patient/p1", "resource": PATIENT, "search": {"mode": "include"}},
    ],
}


def changed(resource: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A deep copy of ``resource`` with top-level ``fields`` set (``None`` removes one)."""
    result = copy.deepcopy(resource)
    for key, value in fields.items():
        if value is None:
            result.pop(key)
        else:
            result[key] = value
    return result


def with_full_url(full_url: str) -> dict[str, Any]:
    bundle = copy.deepcopy(SEARCHSET)
    bundle["entry"][0]["fullUrl"] = full_url
    return bundle


VALID: dict[str, dict[str, Any]] = {
    "valid/imaging-study": IMAGING_STUDY,
    "valid/patient": PATIENT,
    "valid/document-reference": DOCUMENT_REFERENCE,
    "valid/operation-outcome": OPERATION_OUTCOME,
    "valid/searchset-bundle": SEARCHSET,
    # Codes we cannot check offline (a local system) give warnings at most, never errors.
    "valid/local-code-system": changed(
        DOCUMENT_REFERENCE,
        type={"coding": [{"system": "urn:pixelhub:doc-kind", "code": "wound-photo"}]},
    ),
}

# name -> (resource, where the error must be, a piece of its message)
INVALID: dict[str, tuple[dict[str, Any], str, str]] = {
    "invalid/imaging-study-without-status": (
        changed(IMAGING_STUDY, status=None),
        "ImagingStudy",
        "ImagingStudy.status: minimum required = 1",
    ),
    "invalid/imaging-study-unknown-status": (
        changed(IMAGING_STUDY, status="done"),
        "ImagingStudy.status",
        "'done'",
    ),
    "invalid/patient-birthdate-2024-02-30": (
        changed(PATIENT, birthDate="2024-02-30"),
        "Patient.birthDate",
        "2024-02-30",
    ),
    "invalid/patient-unknown-element": (
        changed(PATIENT, foo="bar"),
        "Patient",
        "Unrecognized property 'foo'",
    ),
    "invalid/patient-gender-as-array": (
        changed(PATIENT, gender=["female"]),
        "Patient.gender",
        "not an Array",
    ),
    "invalid/document-reference-without-content": (
        changed(DOCUMENT_REFERENCE, content=None),
        "DocumentReference",
        "DocumentReference.content: minimum required = 1",
    ),
    "invalid/document-reference-bad-reference": (
        changed(DOCUMENT_REFERENCE, subject={"reference": "Patient 123"}),
        "DocumentReference.subject",
        "not a valid reference",
    ),
    "invalid/bundle-full-url-not-absolute": (
        with_full_url("not a url"),
        "Bundle.entry[0]",
        "must be an absolute URL",
    ),
    "invalid/bundle-full-url-with-version": (
        with_full_url(f"{BASE}/ImagingStudy/s1/_history/2"),
        "Bundle.entry[0]",
        "bdl-8",
    ),
}


@pytest.fixture(scope="module")
def report(fhir_validator: Any) -> dict[str, Any]:
    batch = dict(VALID)
    batch.update({name: case[0] for name, case in INVALID.items()})
    result: dict[str, Any] = fhir_validator.validate_now(batch)
    return result


def test_validator_is_hapi_on_fhir_r4(fhir_validator: Any) -> None:
    assert fhir_validator.info["fhirVersion"] == "4.0.1"
    assert fhir_validator.info["hapi"].split(".")[0] == "8"


def test_every_resource_comes_back_under_its_name(report: dict[str, Any]) -> None:
    assert set(report) == set(VALID) | set(INVALID)


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_resource_has_no_errors(report: dict[str, Any], name: str) -> None:
    errors = [str(issue) for issue in report[name] if issue.is_error]
    assert errors == []


def test_unknown_code_system_is_a_warning(report: dict[str, Any]) -> None:
    warnings = [i for i in report["valid/local-code-system"] if i.severity == "warning"]
    assert any("urn:pixelhub:doc-kind" in i.message for i in warnings), report


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_resource_fails_where_it_is_broken(report: dict[str, Any], name: str) -> None:
    _, location, fragment = INVALID[name]
    errors = [issue for issue in report[name] if issue.is_error]
    assert any(e.location == location and fragment in e.message for e in errors), (
        f"no error at {location} mentioning {fragment!r}; got:\n"
        + "\n".join(str(issue) for issue in report[name])
    )
    # Nothing else is wrong with the resource: every error is at (or under) that place.
    stray = [str(e) for e in errors if not e.location.startswith(location)]
    assert stray == []


def test_assert_valid_lists_every_error(fhir_validator: Any) -> None:
    with pytest.raises(AssertionError, match=r"2 FHIR validation error\(s\)") as caught:
        fhir_validator.assert_valid(
            {
                "ok": PATIENT,
                "bad": changed(PATIENT, birthDate="1970-13-01", foo=1),
            }
        )
    assert "bad: error: Patient.birthDate" in str(caught.value)
    assert "Unrecognized property 'foo'" in str(caught.value)


def test_collector_keeps_names_unique(collect_for_validation: Any, fhir_validator: Any) -> None:
    collect_for_validation("harness/patient", PATIENT)
    collect_for_validation("harness/patient", copy.deepcopy(PATIENT))  # same content: fine
    with pytest.raises(ValueError, match="already collected"):
        collect_for_validation("harness/patient", changed(PATIENT, gender="male"))
    with pytest.raises(ValueError, match="not a FHIR resource"):
        collect_for_validation("harness/not-a-resource", {"id": "x"})
    fhir_validator.submit("harness/searchset", SEARCHSET)


@pytest.mark.validate_collected_last
def test_collected_resources_are_valid(
    collect_for_validation: Any, request: pytest.FixtureRequest
) -> None:
    """Runs last: every resource any test collected, validated in one batch."""
    resources = collect_for_validation.resources
    if not resources:
        return
    validator = request.getfixturevalue("fhir_validator")
    report = validator.validate_now(resources)

    errors: list[str] = []
    warnings: Counter[str] = Counter()
    for name, issues in sorted(report.items()):
        for issue in issues:
            if issue.is_error:
                origin = collect_for_validation.origin(name)
                errors.append(f"{name} (from {origin}): {issue.location}: {issue.message}")
            elif issue.severity == "warning":
                warnings[issue.message] += 1

    summary = validator.summary
    summary.append(
        f"{len(resources)} collected resource(s) validated: {len(errors)} error(s), "
        f"{sum(warnings.values())} warning(s) (HAPI {validator.info['hapi']}, "
        f"FHIR {validator.info['fhirVersion']})"
    )
    summary.extend(f"ERROR {line}" for line in errors)
    summary.extend(f"warning x{count}: {message}" for message, count in warnings.most_common())
    if errors:
        pytest.fail(f"{len(errors)} FHIR validation error(s):\n" + "\n".join(errors), pytrace=False)
