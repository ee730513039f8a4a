import pytest

from hub.errors import InvalidResource
from hub.fhir.validation import (
    check_depth,
    is_resource_type,
    summary_elements,
    validate_resource,
)


def test_valid_resource_passes() -> None:
    validate_resource({"resourceType": "Patient", "birthDate": "1970-01-01"}, "Patient")


@pytest.mark.parametrize(
    ("resource", "location"),
    [
        ({"resourceType": "Patient", "birthDate": "2024-02-30"}, "Patient.birthDate"),
        ({"resourceType": "Patient", "foo": 1}, "Patient.foo"),
        ({"resourceType": "Patient", "name": [{"given": [1]}]}, "Patient.name[0].given[0]"),
        (
            {"resourceType": "ImagingStudy", "subject": {"reference": "Patient/1"}},
            "ImagingStudy.status",
        ),
        ({"resourceType": "Patient", "gender": "robot"}, "Patient.gender"),
    ],
)
def test_errors_carry_locations(resource: dict[str, object], location: str) -> None:
    with pytest.raises(InvalidResource) as exc:
        validate_resource(resource, str(resource["resourceType"]))
    assert location in {e for i in exc.value.issues for e in i.expression}


def test_codes_beyond_an_abbreviated_value_set_list_are_accepted() -> None:
    """fhir.resources lists DiagnosticReport.status as [..., 'final', '+']: 'corrected' is valid."""
    report = {
        "resourceType": "DiagnosticReport",
        "status": "corrected",
        "code": {"text": "CT chest"},
    }
    validate_resource(report, "DiagnosticReport")


def test_depth_limit() -> None:
    node: object = 1
    for _ in range(100):
        node = [node]
    with pytest.raises(InvalidResource):
        check_depth(node)
    check_depth([[[1]]])


def test_summary_elements_from_r4_definitions() -> None:
    keys = summary_elements("ImagingStudy")
    assert {"status", "subject", "started", "modality", "series"} <= keys
    assert "text" not in keys


@pytest.mark.parametrize("kind", ["Nope", "Resource", "DomainResource", "CodeableConcept"])
def test_contained_resource_of_unknown_type_is_located(kind: str) -> None:
    """Found probing the API for issue 3: the models raise a bare ``KeyError`` (a 500) on a
    contained resource whose ``resourceType`` they do not know."""
    patient = {
        "resourceType": "Patient",
        "contained": [{"resourceType": "Patient"}, {"resourceType": kind}],
    }
    with pytest.raises(InvalidResource) as exc:
        validate_resource(patient, "Patient")
    assert exc.value.issues[0].expression == ("Patient.contained[1].resourceType",)
    assert kind in exc.value.issues[0].diagnostics


def test_is_resource_type() -> None:
    assert is_resource_type("Patient") and is_resource_type("Bundle") and is_resource_type("Binary")
    for name in (
        "Nope",
        "patient",
        "",
        "Resource",
        "DomainResource",
        "Coding",
        "ImagingStudySeries",
    ):
        assert not is_resource_type(name), name
