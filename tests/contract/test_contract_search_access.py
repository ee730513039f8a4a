"""Search contract for access restrictions: ``AnyOfCriterion`` (an OR of ANDs, e.g. a patient
compartment, compartmentdefinition-patient.html) and ``SearchQuery.include_access`` (what
``_include``/``_revinclude`` may bring, search.html#include)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hub.search.model import AnyOfCriterion, ChainedCriterion, HasCriterion, SearchQuery
from hub.smart.compartment import compartment_criterion


def _query(store: Any, rtype: str, qs: str, *extra: Any, **changes: Any) -> SearchQuery:
    q: SearchQuery = store.query(rtype, qs)
    return replace(q, criteria=(*q.criteria, *extra), **changes)


def _ids(store: Any, query: SearchQuery) -> set[str]:
    return {i for _, i in store.run(query).matches}


def test_compartment_criterion(loaded: Any) -> None:
    p1 = compartment_criterion("ImagingStudy", "p1")
    assert _ids(loaded, _query(loaded, "ImagingStudy", "", p1)) == {"s1", "s2"}
    # versioned reference (s3 -> Patient/p2/_history/1) is in p2's compartment
    p2 = compartment_criterion("ImagingStudy", "p2")
    assert _ids(loaded, _query(loaded, "ImagingStudy", "", p2)) == {"s3"}
    assert _ids(loaded, _query(loaded, "ImagingStudy", "modality=MR", p1)) == {"s2"}
    assert _ids(loaded, _query(loaded, "ImagingStudy", "modality=MR", p2)) == set()
    # DocumentReference: subject OR author
    docs = compartment_criterion("DocumentReference", "p1")
    assert _ids(loaded, _query(loaded, "DocumentReference", "", docs)) == {"d1"}
    me = compartment_criterion("Patient", "p1")
    assert _ids(loaded, _query(loaded, "Patient", "", me)) == {"p1"}


def test_any_of_counts_and_drives(loaded: Any) -> None:
    p1 = compartment_criterion("Observation", "p1")
    result = loaded.run(_query(loaded, "Observation", "_count=1", p1, total="accurate"))
    assert result.total == 2 and len(result.matches) == 1
    counted = loaded.run(_query(loaded, "Observation", "_summary=count", p1, count=0))
    assert counted.total == 2


def test_any_of_branches(loaded: Any) -> None:
    ct = loaded.query("ImagingStudy", "modality=CT").criteria
    mr = loaded.query("ImagingStudy", "modality=MR").criteria
    p2 = loaded.query("ImagingStudy", "patient=Patient/p2").criteria
    either = AnyOfCriterion((mr, (*ct, *p2)))  # MR, or CT of p2
    assert _ids(loaded, _query(loaded, "ImagingStudy", "", either)) == {"s2", "s3"}
    assert _ids(loaded, _query(loaded, "ImagingStudy", "", AnyOfCriterion(()))) == set()
    everything = AnyOfCriterion(((),))
    assert _ids(loaded, _query(loaded, "ImagingStudy", "", everything)) == {"s1", "s2", "s3", "s4"}
    # negated and :missing criteria inside a branch (not index-driven)
    missing = loaded.query("ImagingStudy", "started:missing=true").criteria
    assert _ids(loaded, _query(loaded, "ImagingStudy", "", AnyOfCriterion((missing,)))) == {"s4"}


def test_any_of_inside_chains_and_has(loaded: Any) -> None:
    chain = loaded.query("ImagingStudy", "patient.gender=female").criteria[0]
    assert isinstance(chain, ChainedCriterion)
    only_p2 = compartment_criterion("Patient", "p2")
    confined = replace(chain, inner=AnyOfCriterion(((chain.inner, only_p2),)))
    assert _ids(loaded, _query(loaded, "ImagingStudy", "", chain)) == {"s1", "s2"}
    assert _ids(loaded, _query(loaded, "ImagingStudy", "", confined)) == set()
    has = loaded.query("Patient", "_has:ImagingStudy:patient:modality=CT").criteria[0]
    assert isinstance(has, HasCriterion)
    only_p1 = compartment_criterion("ImagingStudy", "p1")
    confined_has = replace(has, inner=AnyOfCriterion(((has.inner, only_p1),)))
    assert _ids(loaded, _query(loaded, "Patient", "", has)) == {"p1", "p2"}
    assert _ids(loaded, _query(loaded, "Patient", "", confined_has)) == {"p1"}


def test_include_access(loaded: Any) -> None:
    def included(qs: str, access: Any) -> set[str]:
        q = _query(loaded, "ImagingStudy", qs, include_access=access)
        return {f"{t}/{i}" for t, i in loaded.run(q).included}

    qs = "_id=s1,s3&_include=ImagingStudy:subject"
    assert included(qs, None) == {"Patient/p1", "Patient/p2"}
    p1 = compartment_criterion("Patient", "p1")
    assert included(qs, (("Patient", p1), ("ImagingStudy", None))) == {"Patient/p1"}
    assert included(qs, (("ImagingStudy", None),)) == set()  # Patient not allowed at all
    # a hidden resource does not lead further with :iterate
    iterate = "_id=s1,s3&_include=ImagingStudy:subject&_include:iterate=Patient:organization"
    assert "Organization/org2" in included(iterate, None)
    allowed = (("Patient", p1), ("Organization", None))
    assert "Organization/org2" not in included(iterate, allowed)
