"""The FHIR R4 Patient compartment, and access restrictions as search criteria.

``compartmentdefinition-patient.html`` names, for each resource type, the search parameters that
put a resource in a patient's compartment when they refer to that patient (``ImagingStudy``:
``patient``; ``DocumentReference``: ``subject``, ``author``...). The data is
``conformance/compartment_patient.json``, generated from the official definition by
``conformance/scripts/generate_compartment_patient.py``. A Patient is in its own compartment by
id, and so is a Patient whose ``link`` refers to it.

``restriction_criterion`` turns what the access policy grants (``hub.auth.Access``) into one
``AnyOfCriterion`` that any search engine answers: each rule is the AND of the compartment and of
the SMART v2 scope's search restriction (scopes-and-launch-context.html, "Finer-grained resource
constraints using search parameters"); several rules OR together.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from importlib import resources
from typing import TYPE_CHECKING

import orjson

from hub.errors import HubError
from hub.search.model import (
    AnyCriterion,
    AnyOfCriterion,
    Criterion,
    ParamRef,
    ReferenceValue,
    TokenValue,
)
from hub.search.query import parse_search
from hub.search.registry import SearchParameterRegistry

if TYPE_CHECKING:
    from hub.auth import Access

__all__ = [
    "compartment_criterion",
    "compartment_params",
    "patient_compartment",
    "restriction_criterion",
]

# Not allowed in a SMART scope's restriction: result parameters (``_count``, ``_include``...),
# which would change the answer's shape rather than its content, and ``_has``.
_RESULT_PARAMS = frozenset(
    "_sort _count _offset _total _summary _elements _include _revinclude _format _pretty _type"
    " _has".split()
)
# Matches nothing: the OR of no branches.
NOTHING = AnyOfCriterion(())


@functools.cache
def patient_compartment() -> Mapping[str, tuple[str, ...]]:
    """Resource type -> the parameters that put it in a patient's compartment (empty: never)."""
    raw = resources.files("conformance").joinpath("compartment_patient.json").read_bytes()
    return {t: tuple(params) for t, params in orjson.loads(raw)["resource"].items()}


def compartment_params(resource_type: str) -> tuple[str, ...] | None:
    """The compartment parameters of ``resource_type``; ``None`` when it is never in a patient's
    compartment (reference data such as Practitioner, Organization, Endpoint, Binary)."""
    params = patient_compartment().get(resource_type, ())
    return params or None


def compartment_criterion(resource_type: str, patient_id: str) -> AnyCriterion:
    """``resource_type`` resources in ``Patient/patient_id``'s compartment: any compartment
    parameter refers to the patient (or, for Patient, the id is the patient's)."""
    target = (ReferenceValue(target_type="Patient", target_id=patient_id),)
    branches: list[tuple[AnyCriterion, ...]] = [
        (Criterion(ParamRef(p, "reference", ("Patient",)), target),)
        for p in compartment_params(resource_type) or ()
    ]
    if resource_type == "Patient":
        branches.insert(0, (Criterion(ParamRef("_id", "token"), (TokenValue(code=patient_id),)),))
    return AnyOfCriterion(tuple(branches)) if branches else NOTHING


def scope_query_criteria(
    resource_type: str,
    query: tuple[tuple[str, str], ...],
    registry: SearchParameterRegistry,
    base_url: str | None,
) -> tuple[AnyCriterion, ...] | None:
    """The criteria of a scope's search restriction for ``resource_type``; ``None`` when the
    restriction does not apply to the type (unknown parameter, bad value, result parameter):
    such a scope then grants nothing for the type (fail closed)."""
    if any(name.partition(":")[0] in _RESULT_PARAMS for name, _ in query):
        return None
    try:
        parsed = parse_search(
            resource_type, query, registry=registry, strict=True, base_url=base_url
        )
    except HubError:
        return None
    return parsed.criteria


@functools.lru_cache(maxsize=1024)
def restriction_criterion(
    access: Access, registry: SearchParameterRegistry, base_url: str | None
) -> AnyCriterion | None:
    """The criterion that confines ``access`` to what it grants; ``None`` when unrestricted.
    Cached: the same token asks the same question on every request."""
    if access.rules is None:
        return None
    branches: list[tuple[AnyCriterion, ...]] = []
    for rule in access.rules:
        branch: list[AnyCriterion] = []
        if rule.patient is not None:
            branch.append(compartment_criterion(access.resource_type, rule.patient))
        if rule.query:
            criteria = scope_query_criteria(access.resource_type, rule.query, registry, base_url)
            if criteria is None:
                continue
            branch.extend(criteria)
        if not branch:  # a rule with neither: unrestricted (AccessPolicy never makes one)
            return None
        branches.append(tuple(branch))
    return AnyOfCriterion(tuple(branches))
