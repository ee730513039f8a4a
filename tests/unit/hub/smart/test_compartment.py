"""The Patient compartment data (FHIR R4 compartmentdefinition-patient.html) and the access rules
of ``AccessPolicy.check`` (SMART scopes-and-launch-context.html)."""

from __future__ import annotations

import pytest

from hub.auth import Access, AccessPolicy, Principal, Rule
from hub.errors import Forbidden
from hub.search.model import AnyOfCriterion, Criterion, ReferenceValue, TokenValue
from hub.search.registry import SERVED_TYPES, default_registry
from hub.smart.compartment import (
    compartment_criterion,
    compartment_params,
    patient_compartment,
    restriction_criterion,
)

POLICY = AccessPolicy(demo=False, tokens=[])


def test_every_served_type_is_in_the_data_and_its_params_are_references() -> None:
    data = patient_compartment()
    assert set(data) == set(SERVED_TYPES)
    registry = default_registry()
    for rtype, params in data.items():
        for code in params:
            ref = registry.ref(rtype, code)
            assert ref is not None and ref.type == "reference", (rtype, code)
            assert "Patient" in ref.targets, (rtype, code)


def test_the_official_membership() -> None:
    assert compartment_params("ImagingStudy") == ("patient",)
    assert compartment_params("DocumentReference") == ("author", "subject")
    assert compartment_params("Observation") == ("performer", "subject")
    assert compartment_params("Patient") == ("link",)
    for never in ("Practitioner", "Organization", "Endpoint", "Binary", "Device", "Location"):
        assert compartment_params(never) is None


def test_compartment_criterion_shapes() -> None:
    crit = compartment_criterion("DocumentReference", "p1")
    assert isinstance(crit, AnyOfCriterion)
    names = [branch[0].param.name for branch in crit.branches if isinstance(branch[0], Criterion)]
    assert names == ["author", "subject"]
    first = crit.branches[0][0]
    assert isinstance(first, Criterion)
    assert first.values == (ReferenceValue(target_type="Patient", target_id="p1"),)
    me = compartment_criterion("Patient", "p1")
    assert isinstance(me, AnyOfCriterion)
    by_id = me.branches[0][0]
    assert isinstance(by_id, Criterion)
    assert by_id.param.name == "_id" and by_id.values == (TokenValue(code="p1"),)
    assert compartment_criterion("Practitioner", "p1") == AnyOfCriterion(())


def _principal(*scopes: str, patient: str | None = "p1") -> Principal:
    return Principal("u", scopes=frozenset(scopes), patient=patient)


def test_patient_scopes_confine_to_the_compartment() -> None:
    access = POLICY.check(_principal("patient/ImagingStudy.rs"), "read", "ImagingStudy")
    assert access == Access("ImagingStudy", (Rule(patient="p1"),))
    assert access.restricted
    with pytest.raises(Forbidden):
        POLICY.check(_principal("patient/ImagingStudy.rs"), "create", "ImagingStudy")
    with pytest.raises(Forbidden):  # no patient context: nothing
        POLICY.check(_principal("patient/*.rs", patient=None), "read", "ImagingStudy")


def test_user_or_system_scope_lifts_the_restriction() -> None:
    both = _principal("patient/*.rs", "user/ImagingStudy.r")
    assert not POLICY.check(both, "read", "ImagingStudy").restricted
    assert POLICY.check(both, "search", "ImagingStudy").restricted  # user/ grants r, not s
    assert not POLICY.check(_principal("*"), "read", "ImagingStudy").restricted


def test_non_compartment_types_under_patient_scopes() -> None:
    p = _principal("patient/*.cruds")
    assert not POLICY.check(p, "read", "Practitioner").restricted
    assert not POLICY.check(p, "search", "Endpoint").restricted
    for interaction in ("create", "update", "delete"):
        with pytest.raises(Forbidden):
            POLICY.check(p, interaction, "Organization")  # type: ignore[arg-type]
    with pytest.raises(Forbidden):
        POLICY.check(p, "read", "Binary")


def test_query_restricted_scopes() -> None:
    p = _principal("system/DocumentReference.rs?category=http://loinc.org|X", patient=None)
    access = POLICY.check(p, "search", "DocumentReference")
    assert access.rules == (Rule(query=(("category", "http://loinc.org|X"),)),)
    crit = restriction_criterion(access, default_registry(), None)
    assert isinstance(crit, AnyOfCriterion) and len(crit.branches) == 1
    (only,) = crit.branches[0]
    assert isinstance(only, Criterion) and only.param.name == "category"
    assert only.values == (TokenValue(system="http://loinc.org", code="X", bar=True),)
    # patient/ and a query: both, ANDed in one branch
    both = _principal("patient/Observation.rs?category=laboratory")
    crit = restriction_criterion(
        POLICY.check(both, "search", "Observation"), default_registry(), None
    )
    assert isinstance(crit, AnyOfCriterion) and len(crit.branches[0]) == 2


@pytest.mark.parametrize(
    "query", ["no-such-param=1", "_count=1", "_include=DocumentReference:subject", "_has:X:y:z=1"]
)
def test_a_restriction_that_does_not_parse_matches_nothing(query: str) -> None:
    p = _principal(f"system/DocumentReference.rs?{query}", patient=None)
    access = POLICY.check(p, "search", "DocumentReference")
    assert restriction_criterion(access, default_registry(), None) == AnyOfCriterion(())


def test_patient_claim_reaches_the_principal() -> None:
    def verify(token: str) -> dict[str, object]:
        return {"sub": "u", "client_id": "c", "scope": "patient/*.rs", "patient": token}

    policy = AccessPolicy(demo=False, tokens=[], verify_token=verify)
    assert policy.authenticate_bearer("Bearer p-1", None).patient == "p-1"
    # a patient claim that is no FHIR id is dropped, so patient/ scopes grant nothing
    assert policy.authenticate_bearer("Bearer a/b", None).patient is None
