"""Search contract, per parameter type, modifier and prefix (FHIR R4 search.html), each with
values that must match and values that must not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hub.search.model import (
    Criterion,
    NumberEntry,
    NumberValue,
    ParamRef,
    Prefix,
    SearchQuery,
)
from hub.search.registry import default_registry

Case = tuple[str, str, set[str]]
DCM = "http://dicom.nema.org/resources/ontology/DCM"


def check(store: Any, resource_type: str, cases: list[tuple[str, set[str]]]) -> None:
    for qs, expected in cases:
        assert store.idset(resource_type, qs) == expected, qs


# -- token (search.html#token) ---------------------------------------------------------------


def test_token_code_system_and_bar(loaded: Any) -> None:
    check(
        loaded,
        "Patient",
        [
            ("gender=female", {"p1", "p3"}),
            ("gender=male", {"p2"}),
            ("gender=other", set()),
            ("gender=male,other", {"p2"}),
            ("identifier=MRN1", {"p1", "p3"}),
            ("identifier=urn:oid:1.2.3|MRN1", {"p1"}),
            ("identifier=urn:oid:9.9|MRN1", {"p3"}),
            ("identifier=urn:oid:7.7|MRN1", set()),
            ("identifier=urn:oid:1.2.3|", {"p1", "p2"}),
            ("identifier=|MRN1", set()),  # both MRN1 identifiers have a system
            ("identifier=mrn1", set()),  # codes are case-sensitive
            ("active=true", {"p1"}),
            ("active=false", set()),
        ],
    )
    check(
        loaded,
        "ImagingStudy",
        [
            ("status=|available", {"s1", "s2"}),  # a code element has no system
            ("status=http://hl7.org/fhir/imagingstudy-status|available", set()),
            ("modality=CT", {"s1", "s3"}),
            (f"modality={'http://dicom.nema.org/resources/ontology/DCM'}|PT", {"s1"}),
            ("modality=http://other|CT", set()),
        ],
    )


def test_token_not_includes_resources_without_the_element(loaded: Any) -> None:
    check(
        loaded,
        "Patient",
        [
            ("gender:not=male", {"p1", "p3", "p4"}),
            ("gender:not=male,female", {"p4"}),
            ("identifier:not=urn:oid:1.2.3|MRN1", {"p2", "p3", "p4"}),
        ],
    )
    check(loaded, "ImagingStudy", [("modality:not=CT", {"s2", "s4"})])


def test_token_text_and_of_type(loaded: Any) -> None:
    check(
        loaded,
        "DocumentReference",
        [
            ("type:text=imaging", {"d1"}),  # Coding.display
            ("type:text=DIAGNOSTIC", {"d1"}),
            ("type:text=consult", {"d2"}),  # CodeableConcept.text
            ("type:text=radiology", set()),
        ],
    )
    check(
        loaded,
        "Patient",
        [
            (
                f"identifier:of-type={'http://terminology.hl7.org/CodeSystem/v2-0203'}|MR|MRN1",
                {"p1"},
            ),
            ("identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|MRN2", set()),
            ("identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|DL|MRN1", set()),
        ],
    )


def test_token_text_over_repeated_and_long_displays(store: Any) -> None:
    """``:text`` walks the distinct displays of a parameter (hub.search.sql): every resource
    whose display contains the text is found, however many share that display, and a display
    longer than an index key (200 characters) is matched beyond the key."""
    long_display = "x" * 230 + " Lumbar spine"
    sites = ["Chest", "Left knee", "Structure of chest wall", long_display, "Abdomen"]
    store.put(
        *(
            {
                "resourceType": "ImagingStudy",
                "id": f"b{i}",
                "status": "available" if i % 2 else "registered",
                "subject": {"reference": "Patient/p1"},
                "series": [
                    {
                        "uid": f"1.2.3.{i}",
                        "modality": {"system": DCM, "code": "CT"},
                        "bodySite": {"system": "http://snomed.info/sct", "code": str(i % 5),
                                     "display": sites[i % 5]},
                    }
                ],
            }
            for i in range(40)
        )
    )  # fmt: skip
    every = {i: f"b{i}" for i in range(40)}
    check(
        store,
        "ImagingStudy",
        [
            ("bodysite:text=chest", {b for i, b in every.items() if i % 5 in (0, 2)}),
            ("bodysite:text=CHEST WALL", {b for i, b in every.items() if i % 5 == 2}),
            ("bodysite:text=lumbar", {b for i, b in every.items() if i % 5 == 3}),
            ("bodysite:text=knee,abdomen", {b for i, b in every.items() if i % 5 in (1, 4)}),
            ("bodysite:text=pelvis", set()),
            (
                "bodysite:text=chest&status=available",
                {b for i, b in every.items() if i % 5 in (0, 2) and i % 2},
            ),
        ],
    )


# -- string (search.html#string) ---------------------------------------------------------------


def test_string_default_exact_contains(loaded: Any) -> None:
    check(
        loaded,
        "Patient",
        [
            ("family=mul", {"p1", "p3"}),  # starts-with, accents and case folded
            ("family=MÜL", {"p1", "p3"}),
            ("family=muller", {"p1"}),
            ("family=ller", set()),  # not a prefix
            ("family:contains=ller", {"p1"}),
            ("family:contains=LIN", {"p3"}),
            ("family:contains=xyz", set()),
            ("family:exact=Müller", {"p1"}),
            ("family:exact=müller", set()),
            ("family:exact=Mül", set()),
            ("family:exact=Muller", set()),
            ("name=ann", {"p1"}),  # given Ånna
            ("given=kate,john", {"p2", "p3"}),
            ("address-city=sao paulo", {"p1"}),
            ("address-city=paulo", set()),
        ],
    )
    check(
        loaded,
        "DocumentReference",
        [("description=echographie", {"d2"}), ("description:exact=CT chest report", {"d1"})],
    )


# -- date (search.html#date, #prefix) ----------------------------------------------------------


def test_date_prefixes_on_instants(loaded: Any) -> None:
    # s1 2021-03-04T10:00:00Z, s2 2019-06-01 (a whole day), s3 2022-01-15T07:30Z, s4 no date.
    check(
        loaded,
        "ImagingStudy",
        [
            ("started=2021-03-04", {"s1"}),
            ("started=eq2021-03", {"s1"}),
            ("started=2021", {"s1"}),
            ("started=2021-03-05", set()),
            ("started=2021-03-04T10:00:00Z", {"s1"}),
            ("started=2021-03-04T11:00:00+01:00", {"s1"}),
            ("started=2021-03-04T10:00:01Z", set()),
            ("started=ne2021-03-04", {"s2", "s3"}),
            ("started=gt2021-03-04", {"s3"}),
            ("started=ge2021-03-04", {"s1", "s3"}),
            ("started=lt2021-03-04", {"s2"}),
            ("started=le2021-03-04", {"s1", "s2"}),
            ("started=sa2021-03-04", {"s3"}),
            ("started=eb2021-03-04", {"s2"}),
            ("started=gt2022-01-15T07:30:00Z", set()),
            ("started=ge2022-01-15T07:30:00Z", {"s3"}),
            ("started=lt2019-06-01", set()),
            ("started=le2019-06-01", {"s2"}),
            ("started=ge2020-01-01&started=lt2022", {"s1"}),
            ("started=lt2020,gt2021", {"s2", "s3"}),
            ("started=gt2022", set()),  # 2022-01-15 does not reach beyond the year 2022
        ],
    )


def test_date_prefixes_on_partial_dates(loaded: Any) -> None:
    # p1 born 1970-05-01, p2 born "1985" (the whole year), p3/p4 no birth date.
    check(
        loaded,
        "Patient",
        [
            ("birthdate=1985", {"p2"}),
            ("birthdate=1985-06-01", set()),  # a day does not contain the year
            ("birthdate=ne1985-06-01", {"p1", "p2"}),
            ("birthdate=gt1985-06-01", {"p2"}),  # the year reaches beyond that day
            ("birthdate=lt1985-06-01", {"p1", "p2"}),
            ("birthdate=ge1985-06-01", {"p2"}),
            ("birthdate=le1985-06-01", {"p1", "p2"}),
            ("birthdate=sa1985-06-01", set()),
            ("birthdate=eb1985-06-01", {"p1"}),
            ("birthdate=sa1984", {"p2"}),
            ("birthdate=eb1986", {"p1", "p2"}),
            ("birthdate=1970-05-01", {"p1"}),
            ("birthdate=1970-05-01T12:00:00Z", set()),
        ],
    )


def test_date_periods_with_open_ends(loaded: Any) -> None:
    # d1 period 2021-01-01..2021-12-31, d3 period from 2022-01-01 with no end, d2 none.
    check(
        loaded,
        "DocumentReference",
        [
            ("period=2021", {"d1"}),
            ("period=2021-06", set()),
            ("period=gt2030-01-01", {"d3"}),
            ("period=lt2021-06-01", {"d1"}),
            ("period=ge2021-06-01", {"d1", "d3"}),
            ("period=eb2022-01-01", {"d1"}),
            ("period=sa2021-12-31", {"d3"}),
            ("period=sa2022-01-01", set()),
            ("period=eb2021-01-01", set()),
            ("period=ne2021", {"d3"}),
        ],
    )


def _stay(id: str, *periods: dict[str, str]) -> dict[str, Any]:
    """An Encounter with one location per period (``location-period`` has several entries)."""
    locations = [
        {"location": {"reference": f"Location/l{i}"}, "period": p} for i, p in enumerate(periods)
    ]
    return {"resourceType": "Encounter", "id": id, "status": "finished",
            "class": {"code": "IMP"}, "location": locations}  # fmt: skip


def test_date_window_bounds_met_by_different_entries(store: Any) -> None:
    """Each bound is its own criterion (search.html#prefix): a lower and an upper bound may be
    met by different entries, by an entry with an open end or by one wider than the window."""
    before = {"start": "2019-01-01", "end": "2019-01-31"}
    after = {"start": "2023-06-01", "end": "2023-06-30"}
    store.put(
        _stay("both", before, after),  # 2023 meets the lower bound, 2019 the upper
        _stay("inside", {"start": "2020-05-01", "end": "2020-05-31"}),
        _stay("open", {"start": "2012-06-01"}),  # no end
        _stay("until", {"end": "2020-03-01"}),  # no start
        _stay("wide", {"start": "2018-01-01", "end": "2022-12-31"}),
        *(_stay(f"b{i}", {"start": f"201{i}-02-01", "end": f"201{i}-02-02"}) for i in range(4)),
        *(
            _stay(f"a{i}", {"start": f"202{i + 2}-02-01", "end": f"202{i + 2}-02-02"})
            for i in range(4)
        ),
    )
    check(
        store,
        "Encounter",
        [
            ("location-period=ge2020-01-01&location-period=lt2021-01-01", {"both", "inside", "open", "until", "wide"}),
            ("location-period=sa2019-12-31&location-period=eb2021-01-01", {"both", "inside"}),
            ("location-period=gt2020-04-30&location-period=le2020-05-31", {"both", "inside", "open", "wide"}),
            ("location-period=ge2020-01-01&location-period=lt2021-01-01&_id=b1,inside", {"inside"}),
        ],
    )  # fmt: skip


def test_date_ap_is_relative_to_now(store: Any) -> None:
    today = datetime.now(UTC).date()
    target = today - timedelta(days=3650)
    near = target + timedelta(days=100)  # inside 10% of a ten-year gap
    far = target - timedelta(days=1100)
    store.put(
        {"resourceType": "Patient", "id": "near", "birthDate": near.isoformat()},
        {"resourceType": "Patient", "id": "far", "birthDate": far.isoformat()},
        {"resourceType": "Patient", "id": "none"},
    )
    assert store.idset("Patient", f"birthdate=ap{target.isoformat()}") == {"near"}
    assert store.idset("Patient", f"birthdate=ap{far.isoformat()}") == {"far"}


def test_last_updated(engine: Any, store: Any) -> None:
    with engine.repository.transaction() as tx:
        for i, stamp in enumerate(["2020-01-01T00:00:00Z", "2021-01-01T00:00:00Z"]):
            body = {"resourceType": "Patient", "id": f"u{i}"}
            tx.put("Patient", f"u{i}", body, [], last_updated=stamp)
    check(
        store,
        "Patient",
        [
            ("_lastUpdated=gt2020-06-01", {"u1"}),
            ("_lastUpdated=lt2020-06-01", {"u0"}),
            ("_lastUpdated=2020-01-01", {"u0"}),
            ("_lastUpdated=2020-01-01T00:00:00.000Z", {"u0"}),
            ("_lastUpdated=ge2022", set()),
            ("_lastUpdated=ne2020", {"u1"}),
            ("_lastUpdated=ge2019&_lastUpdated=le2021", {"u0", "u1"}),
        ],
    )
    assert store.idset(None, "_lastUpdated=2021") == {"u1"}


# -- number (search.html#number): no served parameter is a number, so hand-made entries -----------


@pytest.mark.parametrize(
    ("prefix", "value", "low", "high", "expected"),
    [
        ("eq", 100.0, 99.5, 100.5, {"n100", "n100.2"}),
        ("eq", 100.0, 99.95, 100.05, {"n100"}),
        ("eq", 100.2, 100.15, 100.25, {"n100.2"}),
        ("eq", 1e2, 50.0, 150.0, {"n100", "n100.2"}),
        ("ne", 100.0, 99.5, 100.5, {"n3", "n250"}),
        ("gt", 100.0, 99.5, 100.5, {"n100.2", "n250"}),
        ("ge", 100.0, 99.5, 100.5, {"n100", "n100.2", "n250"}),
        ("lt", 100.0, 99.5, 100.5, {"n3"}),
        ("le", 100.0, 99.5, 100.5, {"n3", "n100"}),
        ("sa", 100.2, 100.15, 100.25, {"n250"}),
        ("eb", 100.0, 99.5, 100.5, {"n3"}),
        ("ap", 240.0, 239.5, 240.5, {"n250"}),
        ("ap", 3.5, 3.45, 3.55, set()),
    ],
)
def test_number_prefixes(
    store: Any, prefix: Prefix, value: float, low: float, high: float, expected: set[str]
) -> None:
    for n in (3.0, 100.0, 100.2, 250.0):
        name = f"n{n:g}"
        store.put_entries("Observation", name, [NumberEntry("score", n, n - 0.05, n + 0.05)])
    store.put_entries("Observation", "blank", [])
    crit = Criterion(ParamRef("score", "number"), (NumberValue(prefix, value, low, high),))
    found = store.run(SearchQuery("Observation", (crit,)))
    assert {i for _, i in found.matches} == expected
    missing = Criterion(ParamRef("score", "number"), modifier="missing", missing=True)
    found = store.run(SearchQuery("Observation", (missing,)))
    assert [i for _, i in found.matches] == ["blank"]


# -- quantity (search.html#quantity) -----------------------------------------------------------


def test_quantity(loaded: Any) -> None:
    ucum = "http://unitsofmeasure.org"
    check(
        loaded,
        "Observation",
        [
            ("value-quantity=72", {"o1"}),
            ("value-quantity=72.0", {"o1"}),
            ("value-quantity=72.4", set()),
            (f"value-quantity=72|{ucum}|/min", {"o1"}),
            (f"value-quantity=72|{ucum}|kg", set()),
            ("value-quantity=72|http://other|/min", set()),
            ("value-quantity=80.5||kg", {"o2"}),  # code, any system
            ("value-quantity=150||lb", {"o4"}),  # a unit without a code
            ("value-quantity=150||kg", set()),
            ("value-quantity=gt75", {"o2", "o4"}),
            ("value-quantity=ge80.5", {"o2", "o4"}),
            ("value-quantity=lt75", {"o1"}),
            ("value-quantity=le72", {"o1"}),
            ("value-quantity=ne72", {"o2", "o4"}),
            ("value-quantity=sa80.5", {"o4"}),
            ("value-quantity=eb80.5", {"o1"}),
            ("value-quantity=ap82", {"o2"}),  # 82 +- 8.2
            ("value-quantity=ap80", {"o1", "o2"}),  # 80 +- 8 reaches 72
            ("value-quantity=ap60", set()),
            (f"value-quantity=gt50|{ucum}|kg", {"o2"}),
        ],
    )


# -- reference (search.html#reference) ----------------------------------------------------------


def test_reference_forms(loaded: Any) -> None:
    check(
        loaded,
        "ImagingStudy",
        [
            ("patient=Patient/p1", {"s1", "s2"}),
            ("patient=p1", {"s1", "s2"}),
            ("patient=http://hub.example/fhir/Patient/p1", {"s1", "s2"}),
            ("patient=Patient/p9", set()),
            ("patient=p2", {"s3"}),  # stored as Patient/p2/_history/1
            ("patient=Patient/p2/_history/1", {"s3"}),
            ("patient=Patient/p2/_history/2", set()),
            ("subject=p1", {"s1", "s2"}),  # any target type
            ("subject=dev1", {"s4"}),
            ("subject:Patient=p1", {"s1", "s2"}),
            ("subject:Device=p1", set()),
            ("subject:Device=dev1", {"s4"}),
            ("subject=Device/dev1", {"s4"}),
            ("referrer=Practitioner/dr1", {"s1"}),
            ("patient=p1,p2", {"s1", "s2", "s3"}),
        ],
    )
    check(
        loaded,
        "DocumentReference",
        [
            ("author:identifier=urn:npi|999", {"d2"}),
            ("author:identifier=999", {"d2"}),
            ("author:identifier=urn:other|999", set()),
            ("author=Organization/org1", {"d1"}),
            ("custodian=http://other.example/fhir/Organization/ext1", {"d2"}),
            ("custodian=http://other.example/fhir/Organization/ext2", set()),
            ("relatesto=d2", {"d1"}),
        ],
    )


# -- uri (search.html#uri) ---------------------------------------------------------------------


def test_uri(loaded: Any) -> None:
    check(
        loaded,
        "Device",
        [
            ("url=http://devices.example/ct/scanner-1", {"dev1"}),
            ("url=http://devices.example/ct", set()),
            ("url:below=http://devices.example/ct", {"dev1"}),
            ("url:below=http://devices.example/", {"dev1", "dev2"}),
            ("url:below=http://other.example/", set()),
            ("url:above=http://devices.example/ct/scanner-1/v2", {"dev1"}),
            ("url:above=http://devices.example/ct/scanner-1", {"dev1"}),
            ("url:above=http://devices.example/", set()),
        ],
    )
    check(
        loaded,
        "DocumentReference",
        [
            ("location=http://hub.example/files/d1.pdf", {"d1"}),
            ("location:below=http://hub.example/files/", {"d1", "d3"}),
        ],
    )


# -- composite (search.html#composite) ----------------------------------------------------------


def test_composite_components_match_within_one_group(loaded: Any) -> None:
    check(
        loaded,
        "Observation",
        [
            ("code-value-quantity=http://loinc.org|8867-4$72", {"o1"}),
            ("code-value-quantity=http://loinc.org|8867-4$80.5", set()),
            ("code-value-quantity=http://loinc.org|29463-7$gt80", {"o2", "o4"}),
            (
                "code-value-quantity=http://loinc.org|29463-7$gt80|http://unitsofmeasure.org|kg",
                {"o2"},
            ),
            ("component-code-value-quantity=http://loinc.org|8480-6$120", {"o3"}),
            ("component-code-value-quantity=http://loinc.org|8480-6$80", set()),  # diastolic's
            ("component-code-value-quantity=http://loinc.org|8462-4$80", {"o3"}),
            ("component-code-value-quantity=http://loinc.org|8462-4$lt100", {"o3"}),
            ("component-code-value-quantity=http://loinc.org|8480-6$lt100", set()),
        ],
    )
    check(
        loaded,
        "DocumentReference",
        [
            ("relationship=DocumentReference/d2$appends", {"d1"}),
            ("relationship=DocumentReference/d2$replaces", set()),
        ],
    )


# -- :missing (search.html#missing), for every type ----------------------------------------------


def test_missing_on_every_type(loaded: Any) -> None:
    cases: list[Case] = [
        ("Patient", "birthdate:missing=true", {"p3", "p4"}),  # date
        ("Patient", "birthdate:missing=false", {"p1", "p2"}),
        ("Patient", "gender:missing=true", {"p4"}),  # token
        ("Patient", "given:missing=true", {"p4"}),  # string
        ("Patient", "given:missing=false", {"p1", "p2", "p3"}),
        ("ImagingStudy", "patient:missing=true", {"s4"}),  # reference
        ("ImagingStudy", "patient:missing=false", {"s1", "s2", "s3"}),
        ("Observation", "value-quantity:missing=true", {"o3"}),  # quantity
        ("DocumentReference", "location:missing=false", {"d1", "d2", "d3"}),  # uri
    ]
    for rtype, qs, expected in cases:
        assert loaded.idset(rtype, qs) == expected, qs
    # composite and _id: the query parser refuses :missing there, the engine still answers it
    registry = default_registry()
    hand: list[tuple[str, str, bool, set[str]]] = [
        ("DocumentReference", "relationship", False, {"d1"}),
        ("DocumentReference", "relationship", True, {"d2", "d3"}),
        ("Patient", "_id", False, {"p1", "p2", "p3", "p4"}),
        ("Patient", "_id", True, set()),
    ]
    for rtype, name, missing, expected in hand:
        ref = registry.ref(rtype, name)
        assert ref is not None
        query = SearchQuery(rtype, (Criterion(ref, modifier="missing", missing=missing),))
        found = loaded.run(query)
        assert {i for _, i in found.matches} == expected, (name, missing)


# -- _id ----------------------------------------------------------------------------------------


def test_id(loaded: Any) -> None:
    check(
        loaded,
        "Patient",
        [
            ("_id=p1", {"p1"}),
            ("_id=p1,p3,nope", {"p1", "p3"}),
            ("_id=s1", set()),  # another type's id
            ("_id:not=p1", {"p2", "p3", "p4"}),
            ("_id=p1,p2&gender=male", {"p2"}),
        ],
    )


def test_updates_replace_and_deletes_remove_index_entries(loaded: Any) -> None:
    p1 = loaded.json("Patient", "p1")
    p1["gender"] = "male"
    loaded.put(p1)
    assert loaded.idset("Patient", "gender=female") == {"p3"}
    assert loaded.idset("Patient", "gender=male") == {"p1", "p2"}
    loaded.delete("ImagingStudy", "s2")
    assert loaded.idset("ImagingStudy", "patient=p1") == {"s1"}
    assert loaded.idset("ImagingStudy", "modality=MR") == set()
    assert loaded.idset("ImagingStudy", "modality:not=CT") == {"s4"}
    assert loaded.idset("ImagingStudy", "modality:missing=true") == set()
    assert loaded.idset("ImagingStudy", "_id=s2") == set()
