import pytest

from hub.smart.scopes import ResourceScope, parse_scope, parse_scopes


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        (
            "patient/ImagingStudy.read",
            ResourceScope("patient", "ImagingStudy", frozenset("rs"), version=1),
        ),
        ("user/*.*", ResourceScope("user", "*", frozenset("cruds"), version=1)),
        ("system/*.read", ResourceScope("system", "*", frozenset("rs"), version=1)),
        ("user/Patient.write", ResourceScope("user", "Patient", frozenset("cud"), version=1)),
        ("patient/ImagingStudy.rs", ResourceScope("patient", "ImagingStudy", frozenset("rs"))),
        ("system/*.cruds", ResourceScope("system", "*", frozenset("cruds"))),
        ("user/Observation.u", ResourceScope("user", "Observation", frozenset("u"))),
        (
            "system/DocumentReference.r?category=http://loinc.org|18748-4",
            ResourceScope(
                "system",
                "DocumentReference",
                frozenset("r"),
                (("category", "http://loinc.org|18748-4"),),
            ),
        ),
    ],
)
def test_v1_and_v2_parse_into_one_model(scope: str, expected: ResourceScope) -> None:
    assert parse_scope(scope) == expected


@pytest.mark.parametrize(
    "scope",
    [
        "openid",
        "fhirUser",
        "launch/patient",
        "offline_access",
        "patient/ImagingStudy.sr",  # v2 letters out of order
        "patient/ImagingStudy.rrs",  # repeated
        "patient/ImagingStudy.x",
        "patient/ImagingStudy.",
        "patient/imagingStudy.rs",  # not a resource type
        "clinic/ImagingStudy.rs",
        "patient/ImagingStudy.read?category=x",  # queries exist only in v2
        "system/ImagingStudy.rs?",
    ],
)
def test_other_scopes_are_not_clinical(scope: str) -> None:
    assert parse_scope(scope) is None


def test_parse_scopes_keeps_clinical_ones() -> None:
    parsed = parse_scopes("openid fhirUser patient/Patient.r  system/*.rs")
    assert [(s.context, s.resource_type) for s in parsed] == [
        ("patient", "Patient"),
        ("system", "*"),
    ]


def test_covers() -> None:
    scope = parse_scope("system/ImagingStudy.rs")
    assert scope is not None
    assert scope.covers("ImagingStudy", "s")
    assert not scope.covers("ImagingStudy", "c")
    assert not scope.covers("Patient", "r")
    wildcard = parse_scope("system/*.r")
    assert wildcard is not None and wildcard.covers("Patient", "r")


def test_a_wildcard_never_reaches_the_audit_log() -> None:
    """Issue 7: auditors need ``user/AuditEvent.rs``; ``user/*.rs`` reads everything else."""
    wildcard = parse_scope("user/*.rs")
    audit = parse_scope("user/AuditEvent.rs")
    assert wildcard is not None and audit is not None
    assert wildcard.covers("ImagingStudy", "r") and not wildcard.covers("AuditEvent", "r")
    assert audit.covers("AuditEvent", "s") and not audit.covers("AuditEvent", "u")
