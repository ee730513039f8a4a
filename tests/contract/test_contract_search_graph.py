"""Search contract across references: chains (search.html#chaining), ``_has`` (#has),
``_include``/``_revinclude`` with ``:iterate`` (#include)."""

from __future__ import annotations

from typing import Any


def test_chains(loaded: Any) -> None:
    cases = [
        ("patient.family=smith", {"s3"}),
        ("patient.family=nobody", set()),
        ("patient.identifier=urn:oid:1.2.3|MRN1", {"s1", "s2"}),
        ("patient.identifier=urn:oid:9.9|MRN1", set()),  # p3 has no study
        ("subject:Patient.gender=female", {"s1", "s2"}),
        ("subject:Device.url:below=http://devices.example/ct", {"s4"}),
        ("patient.organization.name=general", {"s1", "s2"}),  # two levels
        ("patient.organization.name=city", {"s3"}),
        ("patient.organization.name=nowhere", set()),
        ("patient.birthdate=lt1980&modality=CT", {"s1"}),
        ("patient.gender:missing=true", set()),
        ("patient.general-practitioner.family=house", {"s1", "s2"}),
    ]
    for qs, expected in cases:
        assert loaded.idset("ImagingStudy", qs) == expected, qs


def test_chain_to_a_deleted_target_does_not_match(loaded: Any) -> None:
    loaded.delete("Organization", "org2")
    assert loaded.idset("ImagingStudy", "patient.organization.name=city") == set()
    assert loaded.idset("ImagingStudy", "patient.family=smith") == {"s3"}


def test_has(loaded: Any) -> None:
    cases = [
        ("Patient", "_has:ImagingStudy:patient:modality=CT", {"p1", "p2"}),
        ("Patient", "_has:ImagingStudy:patient:modality=MR", {"p1"}),
        ("Patient", "_has:ImagingStudy:patient:modality=US", set()),  # s4's subject is a Device
        ("Patient", "_has:Observation:subject:value-quantity=gt100", {"p3"}),
        ("Patient", "_has:ImagingStudy:patient:started=lt2020&gender=female", {"p1"}),
        ("Patient", "_has:ImagingStudy:patient:_id=s3", {"p2"}),
        ("Patient", "_has:DocumentReference:patient:type:text=consult", {"p2"}),
        # nested: organizations with a patient who has an MR study
        (
            "Organization",
            "_has:Patient:organization:_has:ImagingStudy:patient:modality=MR",
            {"org1"},
        ),
        ("Organization", "_has:Patient:organization:_has:ImagingStudy:patient:modality=XA", set()),
        ("Practitioner", "_has:ImagingStudy:referrer:patient.family=muller", {"dr1"}),
    ]
    for rtype, qs, expected in cases:
        assert loaded.idset(rtype, qs) == expected, qs
    loaded.delete("ImagingStudy", "s3")
    assert loaded.idset("Patient", "_has:ImagingStudy:patient:modality=CT") == {"p1"}


def test_include(loaded: Any) -> None:
    r = loaded.search("ImagingStudy", "_id=s1&_include=ImagingStudy:patient")
    assert r.matches == [("ImagingStudy", "s1")]
    assert r.included == [("Patient", "p1")]
    assert r.total == 1

    r = loaded.search("ImagingStudy", "patient=p1&_include=ImagingStudy:patient")
    assert set(r.matches) == {("ImagingStudy", "s1"), ("ImagingStudy", "s2")}
    assert r.included == [("Patient", "p1")], "no duplicates"

    r = loaded.search("ImagingStudy", "_id=s1,s4&_include=ImagingStudy:subject:Device")
    assert r.included == [("Device", "dev1")]
    r = loaded.search("ImagingStudy", "_id=s4&_include=ImagingStudy:subject:Patient")
    assert r.included == []

    r = loaded.search("ImagingStudy", "_id=s1&_include=ImagingStudy:*")
    assert set(r.included) == {("Patient", "p1"), ("Practitioner", "dr1")}

    r = loaded.search(
        "ImagingStudy", "_id=s1&_include=ImagingStudy:patient&_include=ImagingStudy:referrer"
    )
    assert set(r.included) == {("Patient", "p1"), ("Practitioner", "dr1")}

    # an include that reaches a match does not repeat it
    r = loaded.search("DocumentReference", "_id=d1,d2&_include=DocumentReference:relatesto")
    assert r.included == []
    r = loaded.search("DocumentReference", "_id=d1&_include=DocumentReference:relatesto")
    assert r.included == [("DocumentReference", "d2")]

    # a source of another type is not followed
    r = loaded.search("ImagingStudy", "_id=s1&_include=Patient:organization")
    assert r.included == []


def test_include_skips_deleted_targets(loaded: Any) -> None:
    loaded.delete("Organization", "org2")
    r = loaded.search("Patient", "_id=p1,p2&_include=Patient:organization")
    assert r.included == [("Organization", "org1")]


def test_revinclude(loaded: Any) -> None:
    r = loaded.search("Patient", "_id=p1&_revinclude=ImagingStudy:patient")
    assert r.matches == [("Patient", "p1")]
    assert set(r.included) == {("ImagingStudy", "s1"), ("ImagingStudy", "s2")}

    r = loaded.search("Patient", "_id=p4&_revinclude=ImagingStudy:patient")
    assert r.included == []

    r = loaded.search(
        "Patient", "_id=p1&_revinclude=ImagingStudy:patient&_revinclude=Observation:subject"
    )
    assert set(r.included) == {
        ("ImagingStudy", "s1"),
        ("ImagingStudy", "s2"),
        ("Observation", "o1"),
        ("Observation", "o3"),
    }

    r = loaded.search("Patient", "_id=p1&_revinclude=DocumentReference:*")
    assert r.included == [("DocumentReference", "d1")]

    loaded.delete("ImagingStudy", "s2")
    r = loaded.search("Patient", "_id=p1&_revinclude=ImagingStudy:patient")
    assert r.included == [("ImagingStudy", "s1")]


def test_include_iterate(loaded: Any) -> None:
    # without :iterate, Patient:organization applies to the matches (studies) only
    r = loaded.search(
        "ImagingStudy", "_id=s1&_include=ImagingStudy:patient&_include=Patient:organization"
    )
    assert r.included == [("Patient", "p1")]
    r = loaded.search(
        "ImagingStudy",
        "_id=s1&_include=ImagingStudy:patient&_include:iterate=Patient:organization",
    )
    assert set(r.included) == {("Patient", "p1"), ("Organization", "org1")}

    # reverse, two hops: organization <- patients <- studies
    r = loaded.search(
        "Organization",
        "_id=org1&_revinclude=Patient:organization&_revinclude:iterate=ImagingStudy:patient",
    )
    assert set(r.included) == {
        ("Patient", "p1"),
        ("ImagingStudy", "s1"),
        ("ImagingStudy", "s2"),
    }

    # mixed, three hops: study -> patient -> organization, patient <- documents
    r = loaded.search(
        "ImagingStudy",
        "_id=s3&_include=ImagingStudy:patient&_include:iterate=Patient:organization"
        "&_revinclude:iterate=DocumentReference:patient",
    )
    assert set(r.included) == {
        ("Patient", "p2"),
        ("Organization", "org2"),
        ("DocumentReference", "d2"),
    }


def test_include_iterate_stops_on_cycles(store: Any) -> None:
    # A chain of linked patients a -> b -> c -> a: iterating terminates, each one once.
    for me, other in (("a", "b"), ("b", "c"), ("c", "a")):
        store.put(
            {
                "resourceType": "Patient",
                "id": me,
                "link": [{"other": {"reference": f"Patient/{other}"}, "type": "seealso"}],
            }
        )
    r = store.search("Patient", "_id=a&_include:iterate=Patient:link")
    assert r.matches == [("Patient", "a")]
    assert sorted(r.included) == [("Patient", "b"), ("Patient", "c")]
