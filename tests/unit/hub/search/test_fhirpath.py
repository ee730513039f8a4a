"""The FHIRPath subset used by the R4 SearchParameters (hub.search.fhirpath; FHIR R4 fhirpath.html,
search.html#expressions)."""

from __future__ import annotations

import pytest

from hub.search.fhirpath import compile_expression
from hub.search.registry import SERVED_TYPES, default_registry

PATIENT = {
    "resourceType": "Patient",
    "id": "pat-1",
    "meta": {"tag": [{"system": "http://pixelhub.example/tag", "code": "demo"}]},
    "name": [
        {"family": "Müller", "given": ["Anna", "Maria"]},
        {"family": "Meier", "given": ["Anna"]},
    ],
    "telecom": [
        {"system": "phone", "value": "+41 44 123 45 67"},
        {"system": "email", "value": "anna@example.org"},
    ],
    "deceasedDateTime": "2024-03-05T14:30:00+01:00",
    "extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace", "valueString": "Bern"}
    ],
}

OBSERVATION = {
    "resourceType": "Observation",
    "id": "bp",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
    "subject": {"reference": "Patient/pat-1"},
    "effectivePeriod": {"start": "2024-03-05T10:00:00Z"},
    "valueQuantity": {"value": 120, "unit": "mm[Hg]"},
    "component": [
        {"code": {"text": "systolic"}, "valueQuantity": {"value": 120}},
        {"code": {"text": "finding"}, "valueCodeableConcept": {"text": "normal"}},
        {"code": {"text": "note"}, "valueString": "at rest"},
    ],
}


def evaluate(expression: str, resource: dict[str, object]) -> list[tuple[object, str | None]]:
    return compile_expression(expression)(resource)


def test_every_registry_expression_and_component_compiles() -> None:
    registry = default_registry()
    count = 0
    for resource_type in SERVED_TYPES:
        for definition in registry.for_type(resource_type):
            compile_expression(definition.expression)
            compile_expression(definition.expression, resource_type)
            for component in definition.components:
                compile_expression(component.expression)
            count += 1
    assert count > 300  # the whole official set for the served types, not an empty registry


def test_paths_flatten_lists_and_skip_missing_elements() -> None:
    assert evaluate("Patient.name.given", PATIENT) == [
        ("Anna", None),
        ("Maria", None),
        ("Anna", None),
    ]
    assert evaluate("Patient.name.suffix", PATIENT) == []
    assert evaluate("Patient.birthDate", PATIENT) == []


def test_null_entries_of_primitive_arrays_are_skipped() -> None:
    patient = {"resourceType": "Patient", "name": [{"given": ["Anna", None]}]}
    assert evaluate("Patient.name.given", patient) == [("Anna", None)]


def test_leading_type_name_filters_the_context() -> None:
    assert evaluate("Observation.status", PATIENT) == []
    assert evaluate("Observation.status", OBSERVATION) == [("final", None)]
    tag = {"system": "http://pixelhub.example/tag", "code": "demo"}
    assert evaluate("Resource.meta.tag", PATIENT) == [(tag, None)]
    assert evaluate("DomainResource.meta.tag", PATIENT) == [(tag, None)]


def test_context_type_drops_the_root_filter_it_guarantees() -> None:
    expression = compile_expression("Observation | Observation.component", "Observation")
    assert [v for v, _ in expression(OBSERVATION)] == [OBSERVATION, *OBSERVATION["component"]]
    # a filter on another type stays
    assert compile_expression("Patient.id", "Observation")(OBSERVATION) == []


def test_choice_element_is_found_and_typed_by_its_key_suffix() -> None:
    assert evaluate("Observation.value", OBSERVATION) == [
        ({"value": 120, "unit": "mm[Hg]"}, "Quantity")
    ]
    assert evaluate("Observation.effective", OBSERVATION) == [
        ({"start": "2024-03-05T10:00:00Z"}, "Period")
    ]
    assert evaluate("Patient.deceased", PATIENT) == [("2024-03-05T14:30:00+01:00", "dateTime")]


def test_as_keeps_only_the_named_type() -> None:
    assert evaluate("(Observation.value as Quantity)", OBSERVATION) == [
        ({"value": 120, "unit": "mm[Hg]"}, "Quantity")
    ]
    assert evaluate("(Observation.value as CodeableConcept)", OBSERVATION) == []
    assert evaluate("Observation.value.as(Quantity).unit", OBSERVATION) == [("mm[Hg]", None)]
    assert evaluate("(Patient.deceased as dateTime)", PATIENT) == [
        ("2024-03-05T14:30:00+01:00", "dateTime")
    ]
    assert evaluate("Patient.deceased.as(DateTime)", PATIENT) == [
        ("2024-03-05T14:30:00+01:00", "dateTime")
    ]
    assert evaluate("Patient.deceased.as(FHIR.dateTime)", PATIENT) == [
        ("2024-03-05T14:30:00+01:00", "dateTime")
    ]
    assert evaluate("(Patient.deceased as boolean)", PATIENT) == []


def test_as_and_oftype_on_component_choices() -> None:
    assert evaluate("(Observation.component.value as CodeableConcept).text", OBSERVATION) == [
        ("normal", None)
    ]
    assert evaluate("Observation.component.value.ofType(string)", OBSERVATION) == [
        ("at rest", "string")
    ]
    assert evaluate("Observation.component.value.ofType(Quantity)", OBSERVATION) == [
        ({"value": 120}, "Quantity")
    ]


def test_relative_expression_on_an_element_with_its_type() -> None:
    component = OBSERVATION["component"][1]
    assert compile_expression("value.as(CodeableConcept)")(component) == [
        ({"text": "normal"}, "CodeableConcept")
    ]
    assert compile_expression("$this as Quantity")({"value": 1}, "Age") == [({"value": 1}, "Age")]
    assert compile_expression("$this as Quantity")({"value": 1}) == []  # unknown type: not kept


def test_where_with_equality_filter() -> None:
    assert evaluate("Patient.telecom.where(system='email')", PATIENT) == [
        ({"system": "email", "value": "anna@example.org"}, None)
    ]
    assert evaluate("Patient.telecom.where(system='fax')", PATIENT) == []


@pytest.mark.parametrize(
    ("reference", "matches"),
    [
        ("Patient/pat-1", True),
        ("Patient/pat-1/_history/3", True),
        ("https://hospital.example/fhir/Patient/pat-1", True),
        ("https://hospital.example/fhir/Patient/pat-1/_history/3", True),
        ("Group/cohort-1", False),
        ("https://hospital.example/fhir/Group/cohort-1", False),
        ("urn:uuid:6b2c0e53-1a0c-4a35-a8f2-4a1f3b6a8c11", False),
        ("#contained-patient", False),
        ("patient-without-type", False),
        ("fhir/Patient/pat-1", False),  # neither Type/id nor an absolute URL
    ],
)
def test_where_resolve_is_type(reference: str, matches: bool) -> None:
    study = {"resourceType": "ImagingStudy", "subject": {"reference": reference}}
    found = evaluate("ImagingStudy.subject.where(resolve() is Patient)", study)
    assert found == ([({"reference": reference}, None)] if matches else [])


def test_resolve_returns_a_typed_stub() -> None:
    study = {"resourceType": "ImagingStudy", "subject": {"reference": "Group/cohort-1"}}
    assert evaluate("ImagingStudy.subject.resolve()", study) == [
        ({"resourceType": "Group", "id": "cohort-1"}, "Group")
    ]


def test_logical_reference_does_not_resolve() -> None:
    study = {
        "resourceType": "ImagingStudy",
        "subject": {"type": "Patient", "identifier": {"system": "urn:mrn", "value": "1"}},
    }
    assert evaluate("ImagingStudy.subject.where(resolve() is Patient)", study) == []


@pytest.mark.parametrize(
    ("deceased", "expected"),
    [
        ({}, [(False, "boolean")]),
        ({"deceasedBoolean": False}, [(False, "boolean")]),
        ({"deceasedBoolean": True}, [(True, "boolean")]),
        ({"deceasedDateTime": "2024-03-05"}, [(True, "boolean")]),
    ],
)
def test_deceased_expression_three_valued_logic(
    deceased: dict[str, object], expected: list[tuple[object, str]]
) -> None:
    patient = {"resourceType": "Patient", **deceased}
    expression = "Patient.deceased.exists() and Patient.deceased != false"
    assert evaluate(expression, patient) == expected


def test_boolean_operators_and_functions() -> None:
    assert evaluate("Patient.name.exists()", PATIENT) == [(True, "boolean")]
    assert evaluate("Patient.photo.exists()", PATIENT) == [(False, "boolean")]
    assert evaluate("Patient.name.exists(family = 'Meier')", PATIENT) == [(True, "boolean")]
    assert evaluate("Patient.photo.empty()", PATIENT) == [(True, "boolean")]
    assert evaluate("Patient.photo.exists().not()", PATIENT) == [(True, "boolean")]
    assert evaluate("Patient.photo.not()", PATIENT) == []
    assert evaluate("Patient.photo.exists() or Patient.name.exists()", PATIENT) == [
        (True, "boolean")
    ]
    assert evaluate("Patient.photo.exists() or Patient.gender = 'x'", PATIENT) == []
    assert evaluate("Patient.photo.exists() and Patient.gender = 'x'", PATIENT) == [
        (False, "boolean")
    ]
    # ``and`` binds tighter than ``or``
    expression = "Patient.name.exists() or Patient.photo.exists() and Patient.gender.exists()"
    assert evaluate(expression, PATIENT) == [(True, "boolean")]
    assert evaluate("Patient.name.given.first()", PATIENT) == [("Anna", None)]
    assert evaluate("Patient.id = 'pat-1'", PATIENT) == [(True, "boolean")]
    assert evaluate("Patient.id != 'pat-1'", PATIENT) == [(False, "boolean")]
    assert evaluate("Patient.id = 1", PATIENT) == [(False, "boolean")]  # types differ


def test_union_and_literals() -> None:
    assert evaluate("Patient.name.family | Patient.id", PATIENT) == [
        ("Müller", None),
        ("Meier", None),
        ("pat-1", None),
    ]
    assert evaluate("'it\\'s'", PATIENT) == [("it's", "string")]
    assert evaluate("'\\u00e9t\\u00e9'", PATIENT) == [("été", "string")]
    assert evaluate("1.5", PATIENT) == [(1.5, "decimal")]
    assert evaluate("true", PATIENT) == [(True, "boolean")]


def test_extension_by_url() -> None:
    expression = "Patient.extension('http://hl7.org/fhir/StructureDefinition/patient-birthPlace')"
    assert evaluate(expression + ".value", PATIENT) == [("Bern", "string")]
    assert evaluate("Patient.extension('http://other').value", PATIENT) == []


def test_backticked_names() -> None:
    assert evaluate("Patient.`name`.family", PATIENT) == [("Müller", None), ("Meier", None)]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("Patient.name[0]", "unsupported syntax at position 12"),
        ("Patient.name.count() + 1", "unsupported syntax"),
        ("Patient.name.count()", "unsupported function count()"),
        ("Patient.name.where()", "wrong number of arguments to where()"),
        ("Patient.name.where(given = 'a', family = 'b')", "wrong number of arguments"),
        ("Patient.", "expected a name"),
        ("Patient.name as", "expected a type name"),
        ("Patient.name.as(Quantity", "expected ')'"),
        ("(Patient.name", "expected ')'"),
        ("Patient.name.Given", "expected an element name"),
        ("Patient.extension(url)", "extension() needs a string literal"),
        ("Patient.name 'x'", "unsupported \"'x'\""),
        ("'unterminated", "unsupported syntax at position 0"),
        ("Patient.name.given > 'a'", "unsupported syntax"),
        ("%resource.id", "unsupported syntax"),
    ],
)
def test_unsupported_expressions_fail_at_compile_time(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match="FHIRPath") as raised:
        compile_expression(expression)
    assert message in str(raised.value)
    assert repr(expression) in str(raised.value)


def test_compiled_expressions_are_shared() -> None:
    assert compile_expression("Patient.name") is compile_expression("Patient.name")
    assert repr(compile_expression("Patient.name")) == "Expression('Patient.name')"
