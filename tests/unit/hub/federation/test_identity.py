"""The patient anchor of a federated search and its translation per partner
(hub.federation.identity)."""

from __future__ import annotations

import pytest

from hub.errors import InvalidSearch
from hub.federation.identity import Anchor, escape, partner_identifiers, split_anchor
from hub.federation.partners import Partner

BASE = "http://hub.example/fhir"
NATIONAL = "urn:oid:2.16.840.1.113883.4.1"


def test_a_local_reference_anchors_the_search() -> None:
    anchor, rest = split_anchor(
        "ImagingStudy", [("patient", "Patient/p1"), ("modality", "CT")], BASE
    )
    assert anchor == Anchor(local_ids=("p1",))
    assert rest == [("modality", "CT")]
    anchor, _ = split_anchor("DocumentReference", [("subject", f"{BASE}/Patient/p2")], BASE)
    assert anchor == Anchor(local_ids=("p2",))
    anchor, _ = split_anchor("Patient", [("_id", "p1,p3")], BASE)
    assert anchor == Anchor(local_ids=("p1", "p3"))


def test_identifiers_anchor_the_search_with_escaping() -> None:
    anchor, _ = split_anchor(
        "ImagingStudy", [("patient.identifier", rf"{NATIONAL}|1\,2,urn:x|y")], BASE
    )
    assert anchor == Anchor(identifiers=((NATIONAL, "1,2"), ("urn:x", "y")))
    anchor, _ = split_anchor("Patient", [("identifier", "urn:x|y")], BASE)
    assert anchor == Anchor(identifiers=(("urn:x", "y"),))
    assert escape("a|b,c$d\\e") == "a\\|b\\,c\\$d\\\\e"


def test_no_anchor_passes_the_query_through() -> None:
    assert split_anchor("ImagingStudy", [("started", "ge2024")], BASE) == (
        None,
        [("started", "ge2024")],
    )


@pytest.mark.parametrize(
    ("resource_type", "key", "value"),
    [
        ("Patient", "name", "Garcia"),
        ("Patient", "family:exact", "Garcia"),
        ("Patient", "birthdate", "1968"),
        ("Patient", "address-city", "Leeds"),
        ("Patient", "_content", "Garcia"),
        ("ImagingStudy", "patient.name", "Garcia"),
        ("ImagingStudy", "subject:Patient.birthdate", "1968"),
        ("DiagnosticReport", "patient.gender", "female"),
    ],
)
def test_demographics_are_refused(resource_type: str, key: str, value: str) -> None:
    with pytest.raises(InvalidSearch, match="never by demographics"):
        split_anchor(resource_type, [(key, value)], BASE)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ([("patient.identifier", "12345")], "system|value"),
        ([("patient.identifier", "|12345")], "system|value"),
        ([("patient", "http://other.example/fhir/Patient/1")], "a Patient of this hub"),
        ([("patient", "Group/1")], "a Patient of this hub"),
        ([("patient", "p1"), ("patient.identifier", "urn:x|1")], "names its patient once"),
        ([("patient.identifier", "")], "names no patient"),
    ],
)
def test_bad_anchors_are_refused(params: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(InvalidSearch, match=message.replace("|", r"\|")):
        split_anchor("ImagingStudy", params, BASE)


def partner(**kwargs: object) -> Partner:
    return Partner("b", "https://b.example/fhir", "client", **kwargs)  # type: ignore[arg-type]


def test_identifiers_are_translated_by_the_partners_mapping() -> None:
    ids = [("urn:oid:1.1", "A-1"), (NATIONAL, "123")]
    assert partner_identifiers(partner(), ids) == ids
    assert partner_identifiers(partner(identifier_systems=(NATIONAL,)), ids) == [(NATIONAL, "123")]
    mapped = partner(identifier_systems=("urn:oid:9.9",), system_map={"urn:oid:1.1": "urn:oid:9.9"})
    assert partner_identifiers(mapped, ids) == [("urn:oid:9.9", "A-1")]
    assert partner_identifiers(partner(identifier_systems=("urn:none",)), ids) == []
