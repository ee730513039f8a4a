"""dicom_to_imagingstudy rule by rule: date/time zones, counting, modality union, ordering,
laterality, body site, people, codes, specimens; plus dicom_to_specimen and dicom_endpoint."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

import pytest
from fhir.resources.R4B.imagingstudy import ImagingStudy
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from mappings.dicom_to_imagingstudy import (
    CodedConcept,
    InstanceSummary,
    SpecimenSummary,
    dicom_datetime_to_fhir,
    dicom_endpoint,
    dicom_to_imagingstudy,
    dicom_to_specimen,
    issuer_system,
)
from tests.unit.mappings.dicom_support import code, summary

DCM = "http://dicom.nema.org/resources/ontology/DCM"
SCT = "http://snomed.info/sct"


def study_of(instances: list[InstanceSummary], **kwargs: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "study_id": "study-1",
        "patient_reference": "Patient/p1",
        "endpoint_reference": "Endpoint/e1",
        "accession_system": "urn:oid:2.16.840.1.113883.19.5.3",
    }
    arguments.update(kwargs)
    result = dicom_to_imagingstudy(instances, **arguments)
    ImagingStudy.model_validate(result)
    return result


# --- dates, times and zones ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("date", "time", "offset", "expected"),
    [
        ("20240305", "101500", "+0100", "2024-03-05T10:15:00+01:00"),
        ("20240305", "101500", "-0500", "2024-03-05T10:15:00-05:00"),
        ("20240305", "101500.123456", "+0000", "2024-03-05T10:15:00.123456+00:00"),
        ("20240305", "1015", "+0530", "2024-03-05T10:15:00+05:30"),
        ("20240305", "10", "+1400", "2024-03-05T10:00:00+14:00"),
        ("2024.03.05", "10:15:30", "+0100", "2024-03-05T10:15:30+01:00"),  # ACR-NEMA forms
        ("20161231", "235960", "+0000", "2016-12-31T23:59:60+00:00"),  # leap second
        ("20240305", "101500", "", "2024-03-05"),  # no zone: the date alone
        ("20240305", "101500", "+2500", "2024-03-05"),  # offset out of range
        ("20240305", "101500", "-1300", "2024-03-05"),  # PS3.3: -1200 at least
        ("20240305", "101500", "0100", "2024-03-05"),  # offset without sign
        ("20240305", "", "+0100", "2024-03-05"),  # no time
        ("20240305", "256000", "+0100", "2024-03-05"),  # invalid time
        ("20240230", "101500", "+0100", None),  # invalid date
        ("", "101500", "+0100", None),
        ("2024", "", "", None),
    ],
)
def test_dicom_datetime_to_fhir(date: str, time: str, offset: str, expected: str | None) -> None:
    assert dicom_datetime_to_fhir(date, time, offset) == expected


class SummerTime(tzinfo):
    """+01:00, or +02:00 from April to October: enough to see DST honoured, with no tz data."""

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=2 if dt is not None and 4 <= dt.month <= 10 else 1)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def tzname(self, dt: datetime | None) -> str:
        return "test"


def test_default_timezone_applies_only_without_an_offset() -> None:
    zone = SummerTime()
    assert dicom_datetime_to_fhir("20240105", "0800", default_timezone=zone) == (
        "2024-01-05T08:00:00+01:00"
    )
    assert dicom_datetime_to_fhir("20240705", "0800", default_timezone=zone) == (
        "2024-07-05T08:00:00+02:00"
    )
    assert dicom_datetime_to_fhir("20240705", "0800", "-0300", default_timezone=zone) == (
        "2024-07-05T08:00:00-03:00"
    )


def test_started_uses_each_instance_offset_or_the_default_zone() -> None:
    with_offset = summary(StudyDate="20240305", StudyTime="0930", TimezoneOffsetFromUTC="+0100")
    assert study_of([with_offset])["started"] == "2024-03-05T09:30:00+01:00"
    without = summary(StudyDate="20240305", StudyTime="0930", SeriesDate="20240305")
    assert study_of([without])["started"] == "2024-03-05"
    zoned = study_of([without], default_timezone=timezone(timedelta(hours=-4)))
    assert zoned["started"] == "2024-03-05T09:30:00-04:00"
    assert zoned["series"][0]["started"] == "2024-03-05"  # series date without a time


# --- counting, modality union, ordering ------------------------------------------------------


def three_series() -> list[InstanceSummary]:
    return [
        summary(series="2", instance="1", SeriesNumber=2, InstanceNumber=1),
        summary(series="2", instance="2", SeriesNumber=2, InstanceNumber=2),
        summary(series="2", instance="3", SeriesNumber=2, InstanceNumber=3),
        summary(series="1", instance="1", SeriesNumber=1, InstanceNumber=1),
        summary(
            series="9",
            instance="1",
            SeriesNumber=99,
            Modality="PR",
            sop_class="1.2.840.10008.5.1.4.1.1.11.1",
        ),
    ]


def test_counts_are_counted_not_trusted() -> None:
    instances = three_series()
    # Number of Study Related Series/Instances, as a sender might get them wrong: ignored.
    instances[0] = summary(
        series="2",
        instance="1",
        SeriesNumber=2,
        InstanceNumber=1,
        NumberOfStudyRelatedSeries=1,
        NumberOfStudyRelatedInstances=1,
    )
    study = study_of(instances)
    assert study["numberOfSeries"] == 3
    assert study["numberOfInstances"] == 5
    assert [s["numberOfInstances"] for s in study["series"]] == [1, 3, 1]


def test_modality_is_the_union_of_series_modalities_not_modalities_in_study() -> None:
    instances = [
        summary(series="1", Modality="CT", ModalitiesInStudy=["CT", "MR", "US"]),
        summary(series="2", Modality="PR", ModalitiesInStudy=["CT", "MR", "US"]),
        summary(series="3", Modality="CT"),
    ]
    study = study_of(instances)
    assert [m["code"] for m in study["modality"]] == ["CT", "PR"]
    assert all(m["system"] == DCM for m in study["modality"])
    assert study["series"][1]["modality"] == {
        "system": DCM,
        "code": "PR",
        "display": "Presentation State",
    }


@pytest.mark.parametrize("modality", ["", "DOC", "NOTACODE"])
def test_missing_or_non_r4_modality_becomes_ot(modality: str) -> None:
    instance = summary(Modality=modality or None)
    study = study_of([instance])
    assert study["series"][0]["modality"]["code"] == "OT"
    assert [m["code"] for m in study["modality"]] == ["OT"]


def test_any_order_gives_the_same_resource() -> None:
    instances = three_series()
    expected = study_of(instances)
    for permutation in itertools.permutations(instances):
        assert study_of(list(permutation)) == expected


def test_series_and_instances_sorted_by_number_then_uid() -> None:
    instances = [
        summary(series="10", instance="1", SeriesNumber=1),
        summary(series="9", instance="1", SeriesNumber=1),
        summary(series="3", instance="1"),  # no number: last
        summary(series="2", instance="1", SeriesNumber=-1),  # negative: not unsignedInt
        summary(series="1", instance="20", SeriesNumber=5, InstanceNumber=1),
        summary(series="1", instance="3", SeriesNumber=5, InstanceNumber=2),
        summary(series="1", instance="100", SeriesNumber=5, InstanceNumber=2),
        summary(series="1", instance="4", SeriesNumber=5),
    ]
    study = study_of(instances)
    assert [s["uid"].rsplit(".", 1)[1] for s in study["series"]] == ["9", "10", "1", "2", "3"]
    assert [s.get("number") for s in study["series"]] == [1, 1, 5, None, None]
    series_one = study["series"][2]
    assert [i["uid"].rsplit(".", 1)[1] for i in series_one["instance"]] == ["20", "3", "100", "4"]


def test_duplicates_and_foreign_instances() -> None:
    one = summary(instance="1", InstanceNumber=1)
    assert study_of([one, one]) == study_of([one])
    changed = dataclasses.replace(one, instance_number=2)
    with pytest.raises(ValueError, match="two different summaries"):
        study_of([one, changed])
    with pytest.raises(ValueError, match="more than one study"):
        study_of([one, summary(study="1.2.3.4")])
    with pytest.raises(ValueError, match="at least one instance"):
        study_of([])
    with pytest.raises(ValueError, match="not a FHIR id"):
        study_of([one], study_id="not an id!")


# --- identifiers, references, people ---------------------------------------------------------


def test_identifiers_and_references() -> None:
    issuer = Dataset()
    issuer.LocalNamespaceEntityID = "RIS-A"
    instance = summary(
        AccessionNumber="A123",
        IssuerOfAccessionNumberSequence=Sequence([issuer]),
        ReferringPhysicianName="Welby^Marcus^^Dr",
        NameOfPhysiciansReadingStudy=["House^Gregory", "House^Gregory", "Wilson^James"],
        StudyDescription="CT head",
    )
    study = study_of(
        [instance],
        encounter_reference="Encounter/e9",
        based_on=["ServiceRequest/b", "ServiceRequest/a", "ServiceRequest/b"],
        location_reference="Location/ct-1",
    )
    assert study["identifier"] == [
        {"system": "urn:dicom:uid", "value": "urn:oid:1.2.826.0.1.3680043.10.1234.1"},
        {
            "type": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}
                ]
            },
            "system": "urn:oid:2.16.840.1.113883.19.5.3",
            "value": "A123",
            "assigner": {"display": "RIS-A"},
        },
    ]
    assert study["status"] == "available"
    assert study["subject"] == {"reference": "Patient/p1"}
    assert study["encounter"] == {"reference": "Encounter/e9"}
    assert study["basedOn"] == [
        {"reference": "ServiceRequest/a"},
        {"reference": "ServiceRequest/b"},
    ]
    assert study["location"] == {"reference": "Location/ct-1"}
    assert study["endpoint"] == [{"reference": "Endpoint/e1"}]
    assert study["referrer"] == {"display": "Dr Marcus Welby"}
    assert study["interpreter"] == [{"display": "Gregory House"}, {"display": "James Wilson"}]
    assert study["description"] == "CT head"


def test_optional_references_are_left_out() -> None:
    study = study_of([summary()], endpoint_reference=None)
    for element in ("endpoint", "encounter", "basedOn", "referrer", "interpreter", "location"):
        assert element not in study
    assert [i["system"] for i in study["identifier"]] == ["urn:dicom:uid"]


def test_performers_and_operators() -> None:
    instances = [
        summary(instance="1", PerformingPhysicianName="Grey^Meredith", OperatorsName="Tech^Terry"),
        summary(instance="2", PerformingPhysicianName="Grey^Meredith", OperatorsName="^"),
    ]
    performers = study_of(instances)["series"][0]["performer"]
    assert [(p["function"]["coding"][0]["code"], p["actor"]) for p in performers] == [
        ("PRF", {"display": "Meredith Grey"}),
        ("SPRF", {"display": "Terry Tech"}),
    ]


# --- codes -----------------------------------------------------------------------------------


def test_procedure_and_reason_codes() -> None:
    request = Dataset()
    request.ReasonForTheRequestedProcedure = "Headache"
    instance = summary(
        ProcedureCodeSequence=Sequence(
            [code("RPID16", "RADLEX", "CT HEAD"), code("CTH", "99LOCAL", "CT head local")]
        ),
        ReasonForPerformedProcedureCodeSequence=Sequence([code("25064002", "SCT", "Headache")]),
        RequestAttributesSequence=Sequence([request]),
    )
    study = study_of([instance, dataclasses.replace(instance)])
    assert study["procedureCode"] == [
        {"coding": [{"system": "http://www.radlex.org", "code": "RPID16", "display": "CT HEAD"}]},
        {"text": "CT head local"},  # a scheme without a known URI keeps its meaning only
    ]
    assert study["reasonCode"] == [
        {"coding": [{"system": SCT, "code": "25064002", "display": "Headache"}]},
        {"text": "Headache"},
    ]
    local = study_of([instance], coding_systems={"99LOCAL": "http://hospital.example.org/proc"})
    assert local["procedureCode"][1] == {
        "coding": [
            {
                "system": "http://hospital.example.org/proc",
                "code": "CTH",
                "display": "CT head local",
            }
        ]
    }


def test_instance_elements() -> None:
    instance = summary(
        InstanceNumber=-3,
        DocumentTitle="Discharge letter",
        sop_class="1.2.840.10008.5.1.4.1.1.104.1",
        Modality="DOC",
    )
    entry = study_of([instance])["series"][0]["instance"][0]
    assert entry == {
        "uid": "1.2.826.0.1.3680043.10.1234.1.1.1",
        "sopClass": {
            "system": "urn:ietf:rfc:3986",
            "code": "urn:oid:1.2.840.10008.5.1.4.1.1.104.1",
            "display": "Encapsulated PDF Storage",
        },
        "title": "Discharge letter",
    }
    private = summary(sop_class="1.2.826.0.1.3680043.9.9999.1")  # no pydicom name: no display
    assert "display" not in study_of([private])["series"][0]["instance"][0]["sopClass"]


# --- anatomy -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lateralities", "expected"),
    [
        ([("R", "")], "24028007"),
        ([("", "L")], "7771000"),
        ([("", "R"), ("", "L")], "51440002"),  # both breasts in one series: right and left
        ([("B", "")], "51440002"),
        ([("", "U")], None),
        ([("", "")], None),
    ],
)
def test_series_laterality(lateralities: list[tuple[str, str]], expected: str | None) -> None:
    instances = [
        dataclasses.replace(summary(instance=str(n + 1)), laterality=lat, image_laterality=img)
        for n, (lat, img) in enumerate(lateralities)
    ]
    series = study_of(instances)["series"][0]
    if expected is None:
        assert "laterality" not in series
    else:
        assert series["laterality"]["system"] == SCT
        assert series["laterality"]["code"] == expected


def test_body_site_precedence() -> None:
    region = Sequence([code("818981001", "SCT", "Abdomen")])
    coded = summary(BodyPartExamined="CHEST", AnatomicRegionSequence=region)
    assert study_of([coded])["series"][0]["bodySite"]["code"] == "818981001"
    # Senders' variants of a defined term ("c-spine" is not even a valid CS value).
    by_term = dataclasses.replace(summary(), body_part_examined="c-spine")
    assert study_of([by_term])["series"][0]["bodySite"] == {
        "system": SCT,
        "code": "122494005",
        "display": "Cervical spine",
    }
    legacy = summary(
        BodyPartExamined="NOT A TERM",
        AnatomicRegionSequence=Sequence([code("T-D4000", "SRT", "Abdomen")]),
    )
    assert study_of([legacy])["series"][0]["bodySite"] == {
        "system": "http://snomed.info/srt",
        "code": "T-D4000",
        "display": "Abdomen",
    }
    unknown = summary(BodyPartExamined="SOMEWHERE")
    assert "bodySite" not in study_of([unknown])["series"][0]


# --- specimens -----------------------------------------------------------------------------


def slide_summary() -> InstanceSummary:
    specimen = SpecimenSummary(
        identifier="S1",
        uid="1.2.3.4.5",
        specimen_type=CodedConcept("430856003", "SCT", "Tissue section"),
        anatomic_structures=(CodedConcept("71854001", "SCT", "Colon"),),
        container_identifier="SLIDE-1",
    )
    other = SpecimenSummary(identifier="S2")
    return dataclasses.replace(
        summary(Modality="SM", sop_class="1.2.840.10008.5.1.4.1.1.77.1.6"),
        specimens=(specimen, other),
    )


def test_series_specimen_references_only_for_known_specimens() -> None:
    series = study_of([slide_summary()], specimen_references={"S1": "Specimen/s1"})["series"][0]
    assert series["specimen"] == [{"reference": "Specimen/s1"}]
    assert series["bodySite"]["code"] == "71854001"  # from the specimen's primary structure
    assert "specimen" not in study_of([slide_summary()])["series"][0]


def test_dicom_to_specimen() -> None:
    specimens = dicom_to_specimen(slide_summary(), patient_reference="Patient/p1")
    assert [s["identifier"][0]["value"] for s in specimens] == ["S1", "S2"]
    first = specimens[0]
    assert first["identifier"][1] == {"system": "urn:dicom:uid", "value": "urn:oid:1.2.3.4.5"}
    assert first["type"] == {
        "coding": [{"system": SCT, "code": "430856003", "display": "Tissue section"}]
    }
    assert first["subject"] == {"reference": "Patient/p1"}
    assert first["collection"]["bodySite"]["coding"][0]["code"] == "71854001"
    assert first["container"] == [{"identifier": [{"value": "SLIDE-1"}]}]
    assert dicom_to_specimen(summary(), patient_reference="Patient/p1") == []


# --- issuer -> system, endpoint ----------------------------------------------------------------


def test_issuer_system() -> None:
    from mappings.dicom_to_imagingstudy import Issuer

    systems = {"RIS-A": "http://hospital.example.org/accession"}
    assert issuer_system(None, systems, "urn:default") == "urn:default"
    assert issuer_system(Issuer("RIS-A"), systems, "urn:default") == systems["RIS-A"]
    assert issuer_system(Issuer("1.2.3.4"), systems, "urn:default") == "urn:oid:1.2.3.4"
    assert issuer_system(Issuer("X", "1.2.5", "ISO"), systems, "d") == "urn:oid:1.2.5"
    assert issuer_system(Issuer("X", "https://x.example/id", "URI"), systems, "d") == (
        "https://x.example/id"
    )
    assert issuer_system(Issuer("UNKNOWN"), systems, "urn:default") == "urn:default:UNKNOWN"
    assert issuer_system(Issuer("UNKNOWN"), systems, "") is None
    assert issuer_system(Issuer("A B"), systems, "urn:oid:1.2.3") == "urn:pixelhub:issuer:A_B"


def test_dicom_endpoint() -> None:
    endpoint = dicom_endpoint("https://hub.example.org:8443/")
    assert endpoint["address"] == "https://hub.example.org:8443/dicomweb"
    assert endpoint["status"] == "active"
    assert endpoint["connectionType"]["code"] == "dicom-wado-rs"
    assert endpoint["connectionType"]["system"] == (
        "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
    )
    with pytest.raises(ValueError, match="absolute"):
        dicom_endpoint("hub.example.org")
