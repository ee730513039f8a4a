"""Index extraction (hub.search.extract; FHIR R4 search.html by parameter type).

The sample resources are realistic R4 instances, each checked against the ``fhir.resources.R4B``
models (R4B has the same structure as R4 for every type used here) and handed to the validator
harness.
"""

from __future__ import annotations

import copy
import dataclasses
from datetime import datetime
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from hub.search.extract import date_range, extract_index_entries, number_range, split_reference
from hub.search.model import (
    DateEntry,
    IndexEntry,
    NumberEntry,
    QuantityEntry,
    ReferenceEntry,
    StringEntry,
    TokenEntry,
    UriEntry,
)
from hub.search.registry import SearchParameterDef, SearchParameterRegistry

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"


def ms(text: str) -> int:
    """Epoch milliseconds of an ISO timestamp with zone, computed without the code under test."""
    return round(datetime.fromisoformat(text).timestamp() * 1000)


# -- sample resources --------------------------------------------------------------------------

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "pat-1",
    "meta": {
        "versionId": "1",
        "lastUpdated": "2024-03-01T09:00:00Z",
        "source": "http://ris.example.org/fhir",
        "profile": ["http://hl7.org/fhir/StructureDefinition/Patient"],
        "security": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                "code": "R",
                "display": "restricted",
            }
        ],
        "tag": [{"system": "http://pixelhub.example/tag", "code": "demo"}],
    },
    "identifier": [
        {
            "use": "usual",
            "type": {"coding": [{"system": V2_0203, "code": "MR"}], "text": "Medical record"},
            "system": "http://hospital.example/mrn",
            "value": "MRN-0042",
        },
        {"system": "urn:oid:2.16.756.5.32", "value": "756.1234.5678.97"},
    ],
    "active": True,
    "name": [
        {"use": "official", "family": "Müller", "given": ["Anna", "Maria"], "prefix": ["Dr."]},
        {"use": "nickname", "text": "Annie"},
    ],
    "telecom": [
        {"system": "phone", "value": "+41 44 123 45 67", "use": "work", "rank": 1},
        {"system": "email", "value": "anna.mueller@example.org"},
    ],
    "gender": "female",
    "birthDate": "1984-02-29",
    "deceasedDateTime": "2024-03-05T14:30:00+01:00",
    "address": [
        {
            "use": "home",
            "line": ["Bahnhofstrasse 1", "Apt 3"],
            "city": "Zürich",
            "district": "ZH",
            "postalCode": "8001",
            "country": "CH",
        }
    ],
    "communication": [
        {
            "language": {
                "coding": [
                    {"system": "urn:ietf:bcp:47", "code": "de-CH", "display": "Swiss German"}
                ],
                "text": "German",
            }
        }
    ],
    "generalPractitioner": [
        {"reference": "https://gp.example.org/fhir/Practitioner/gp-7/_history/2"}
    ],
    "managingOrganization": {
        "identifier": {"system": "urn:oid:2.51.1.3", "value": "7601000000000"},
        "display": "Spital Zürich",
    },
    "link": [{"other": {"reference": "Patient/pat-0"}, "type": "replaces"}],
}


def _series(number: int, modality: str, sop_class: str) -> dict[str, Any]:
    uid = f"1.2.840.113619.2.55.3.604688119.969.1268071029.{number}"
    return {
        "uid": uid,
        "number": number,
        "modality": {"system": DCM, "code": modality},
        "description": "AX T2",
        "numberOfInstances": 2,
        "endpoint": [{"reference": "Endpoint/wado"}],
        "bodySite": {"system": SNOMED, "code": "69536005", "display": "Head"},
        "performer": [{"actor": {"reference": "Practitioner/tech-1"}}],
        "started": "2024-03-05T10:01:00+01:00",
        "instance": [
            {"uid": f"{uid}.{i}", "sopClass": {"system": "urn:ietf:rfc:3986", "code": sop_class}}
            for i in (1, 2)
        ],
    }


CT = "urn:oid:1.2.840.10008.5.1.4.1.1.2"
SR = "urn:oid:1.2.840.10008.5.1.4.1.1.88.22"
STUDY_UID = "urn:oid:1.2.840.113619.2.55.3.604688119.969.1268071029"

IMAGING_STUDY: dict[str, Any] = {
    "resourceType": "ImagingStudy",
    "id": "ct-head",
    "meta": {"tag": [{"system": "http://pixelhub.example/tag", "code": "radiology"}]},
    "identifier": [
        {"system": "urn:dicom:uid", "value": STUDY_UID},
        {
            "type": {"coding": [{"system": V2_0203, "code": "ACSN"}]},
            "system": "http://hospital.example/accession",
            "value": "ACC-1001",
        },
    ],
    "status": "available",
    "modality": [{"system": DCM, "code": "CT"}],
    "subject": {"reference": "Patient/pat-1", "display": "Müller, Anna"},
    "encounter": {"reference": "Encounter/enc-1"},
    "started": "2024-03-05T10:00:00+01:00",
    "basedOn": [
        {
            "reference": "ServiceRequest/sr-1",
            "identifier": {"system": "http://hospital.example/accession", "value": "ACC-1001"},
        }
    ],
    "referrer": {"reference": "Practitioner/ref-1"},
    "interpreter": [{"reference": "Practitioner/rad-1"}],
    "endpoint": [{"reference": "Endpoint/wado"}],
    "numberOfSeries": 3,
    "numberOfInstances": 6,
    "reasonCode": [
        {
            "coding": [{"system": SNOMED, "code": "25064002", "display": "Headache"}],
            "text": "Cephalgia",
        }
    ],
    "description": "CT HEAD WO CONTRAST",
    "series": [_series(1, "CT", CT[8:]), _series(2, "CT", CT[8:]), _series(3, "SR", SR[8:])],
}

GROUP_STUDY: dict[str, Any] = {
    "resourceType": "ImagingStudy",
    "id": "phantom-qa",
    "status": "available",
    "subject": {"reference": "Group/qa-phantoms"},
}

BLOOD_PRESSURE: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "bp-1",
    "status": "final",
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "vital-signs",
                }
            ]
        }
    ],
    "code": {
        "coding": [
            {"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"},
            {"system": SNOMED, "code": "75367002"},
        ],
        "text": "Blood pressure",
    },
    "subject": {"reference": "Patient/pat-1"},
    "effectivePeriod": {"start": "2024-03-05T09:30:00Z"},
    "component": [
        {
            "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
            "valueQuantity": {"value": 120, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
        },
        {
            "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
            "valueQuantity": {"value": 80.5, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
        },
    ],
}

FINDING: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "finding-1",
    "status": "preliminary",
    "code": {"coding": [{"system": LOINC, "code": "59776-5", "display": "Procedure findings"}]},
    "subject": {"reference": "Group/cohort-1"},
    "effectiveDateTime": "2024-03-05",
    "valueCodeableConcept": {
        "coding": [{"system": SNOMED, "code": "17621005", "display": "Normal"}],
        "text": "Unremarkable",
    },
    "derivedFrom": [{"reference": "ImagingStudy/ct-head"}],
}

NOTE_OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "note-1",
    "status": "final",
    "code": {"text": "Technologist note"},
    "effectiveInstant": "2024-03-05T10:15:00.25Z",
    "valueString": "Patient moved during series 2",
}

ECG: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "ecg-1",
    "status": "final",
    "code": {"coding": [{"system": LOINC, "code": "131328", "display": "MDC_ECG_ELEC_POTL"}]},
    "valueSampledData": {
        "origin": {"value": 2048},
        "period": 10,
        "dimensions": 1,
        "data": "2041 2043 2047",
    },
}

DATE_VALUED: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "lmp-1",
    "status": "final",
    "code": {"coding": [{"system": LOINC, "code": "8665-2"}]},
    "valueDateTime": "2024-02",
}

KOS_REFERENCE: dict[str, Any] = {
    "resourceType": "DocumentReference",
    "id": "kos-1",
    "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.3.4.5"},
    "identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:a4bb3a4e-8b48-4c62-9d3c"}],
    "status": "current",
    "type": {
        "coding": [{"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}]
    },
    "category": [
        {"coding": [{"system": "http://ihe.net/xds/connectathon/classCodes", "code": "IMG"}]}
    ],
    "subject": {"reference": "https://hub.example.org/fhir/Patient/pat-1"},
    "date": "2024-03-05T10:30:00.123+01:00",
    "author": [{"reference": "Organization/radiology"}],
    "custodian": {"reference": "Organization/hospital"},
    "relatesTo": [
        {"code": "replaces", "target": {"reference": "DocumentReference/kos-0"}},
        {"code": "appends", "target": {"reference": "DocumentReference/report-1"}},
    ],
    "description": "Key images",
    "securityLabel": [
        {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}
            ]
        }
    ],
    "content": [
        {
            "attachment": {
                "contentType": "application/dicom",
                "language": "en",
                "url": "https://pacs.example.org/wado/studies/1.2.3",
            },
            "format": {
                "system": "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode",
                "code": "1.2.840.10008.5.1.4.1.1.88.59",
            },
        }
    ],
    "context": {
        "encounter": [{"reference": "Encounter/enc-1"}],
        "period": {"start": "2024-03-05"},
        "related": [{"reference": "ImagingStudy/ct-head"}],
    },
}

ORDER: dict[str, Any] = {
    "resourceType": "ServiceRequest",
    "id": "sr-1",
    "contained": [
        {"resourceType": "Practitioner", "id": "on-call", "name": [{"family": "Oncall"}]}
    ],
    "instantiatesCanonical": ["http://example.org/fhir/PlanDefinition/ct-head-protocol|2.1"],
    "instantiatesUri": ["http://example.org/protocols/ct-head.pdf"],
    "basedOn": [
        {"type": "ServiceRequest", "identifier": {"system": "urn:placer", "value": "PL-77"}}
    ],
    "requisition": {"system": "http://hospital.example/requisition", "value": "REQ-5"},
    "status": "active",
    "intent": "order",
    "priority": "stat",
    "code": {"coding": [{"system": LOINC, "code": "24725-4", "display": "CT Head"}]},
    "orderDetail": [{"text": "without contrast"}],
    "subject": {"reference": "Patient/pat-1"},
    "occurrenceTiming": {
        "event": ["2024-03-05T10:00:00Z"],
        "repeat": {
            "boundsPeriod": {"start": "2024-03-05", "end": "2024-03-06"},
            "frequency": 1,
            "period": 1,
            "periodUnit": "d",
        },
    },
    "authoredOn": "2024-03-04T16:20:00+01:00",
    "requester": {"reference": "urn:uuid:6b2c0e53-1a0c-4a35-a8f2-4a1f3b6a8c11"},
    "performer": [{"reference": "#on-call"}],
}

ENCOUNTER: dict[str, Any] = {
    "resourceType": "Encounter",
    "id": "enc-1",
    "status": "finished",
    "class": {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        "code": "AMB",
        "display": "ambulatory",
    },
    "subject": {"reference": "Patient/pat-1"},
    "participant": [
        {
            "type": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                            "code": "ATND",
                        }
                    ]
                }
            ],
            "individual": {"reference": "Practitioner/rad-1"},
        },
        {"individual": {"reference": "RelatedPerson/mother"}},
    ],
    "period": {"start": "2024-03-05T09:00:00+01:00", "end": "2024-03-05T11:00:00+01:00"},
    "length": {"value": 120, "unit": "min", "system": UCUM, "code": "min"},
    "location": [
        {
            "location": {"reference": "Location/ct-room-2"},
            "period": {"start": "2024-03-05T09:55:00+01:00"},
        }
    ],
}

PROVENANCE: dict[str, Any] = {
    "resourceType": "Provenance",
    "id": "prov-1",
    "target": [{"reference": "ImagingStudy/ct-head"}, {"reference": "Patient/pat-1"}],
    "occurredPeriod": {"start": "2024-03-05T10:00:00Z", "end": "2024-03-05T10:20:00Z"},
    "recorded": "2024-03-05T10:21:00Z",
    "agent": [{"who": {"reference": "Device/ct-scanner"}}],
}

LOCATION: dict[str, Any] = {
    "resourceType": "Location",
    "id": "ct-room-2",
    "status": "active",
    "name": "CT Room 2",
    "alias": ["CT2", "Computed Tomography 2"],
    "address": {"use": "work", "city": "Zürich", "country": "CH"},
}

SAMPLES: list[dict[str, Any]] = [
    PATIENT,
    IMAGING_STUDY,
    GROUP_STUDY,
    BLOOD_PRESSURE,
    FINDING,
    NOTE_OBSERVATION,
    ECG,
    DATE_VALUED,
    KOS_REFERENCE,
    ORDER,
    ENCOUNTER,
    PROVENANCE,
    LOCATION,
]


@pytest.mark.parametrize("resource", SAMPLES, ids=lambda r: f"{r['resourceType']}/{r['id']}")
def test_sample_resources_are_valid_fhir(
    resource: dict[str, Any], collect_for_validation: Any
) -> None:
    model = get_fhir_model_class(resource["resourceType"])
    model.model_validate(copy.deepcopy(resource))
    collect_for_validation(f"search-extract/{resource['resourceType']}-{resource['id']}", resource)


def entries(resource: dict[str, Any], param: str) -> list[IndexEntry]:
    """The entries of one parameter; composite groups renumbered 1, 2... in order of appearance
    (group numbers are unique per resource, across every composite parameter)."""
    found = [e for e in extract_index_entries(resource) if e.param == param]
    groups: dict[int, int] = {}
    for e in found:
        if e.group:
            groups.setdefault(e.group, len(groups) + 1)
    return [dataclasses.replace(e, group=groups[e.group]) if e.group else e for e in found]


# -- date_range and number_range --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("2024", "2024-01-01T00:00:00+00:00", "2024-12-31T23:59:59.999+00:00"),
        ("2024-02", "2024-02-01T00:00:00+00:00", "2024-02-29T23:59:59.999+00:00"),  # leap
        ("2023-02", "2023-02-01T00:00:00+00:00", "2023-02-28T23:59:59.999+00:00"),
        ("1900-02", "1900-02-01T00:00:00+00:00", "1900-02-28T23:59:59.999+00:00"),  # not leap
        ("2000-02", "2000-02-01T00:00:00+00:00", "2000-02-29T23:59:59.999+00:00"),  # leap
        ("2024-12", "2024-12-01T00:00:00+00:00", "2024-12-31T23:59:59.999+00:00"),
        ("2024-02-29", "2024-02-29T00:00:00+00:00", "2024-02-29T23:59:59.999+00:00"),
        ("2024-03-05T10:00", "2024-03-05T10:00:00+00:00", "2024-03-05T10:00:59.999+00:00"),
        ("2024-03-05T10:00Z", "2024-03-05T10:00:00+00:00", "2024-03-05T10:00:59.999+00:00"),
        ("2024-03-05T10:00:00", "2024-03-05T10:00:00+00:00", "2024-03-05T10:00:00.999+00:00"),
        ("2024-03-05T10:00:00Z", "2024-03-05T10:00:00+00:00", "2024-03-05T10:00:00.999+00:00"),
        ("2024-03-05T10:00:00+02:00", "2024-03-05T08:00:00+00:00", "2024-03-05T08:00:00.999+00:00"),
        ("2024-03-05T01:00:00+05:30", "2024-03-04T19:30:00+00:00", "2024-03-04T19:30:00.999+00:00"),
        ("2024-12-31T22:00:00-05:00", "2025-01-01T03:00:00+00:00", "2025-01-01T03:00:00.999+00:00"),
        (
            "2024-03-05T10:00:00.1Z",
            "2024-03-05T10:00:00.100+00:00",
            "2024-03-05T10:00:00.199+00:00",
        ),
        (
            "2024-03-05T10:00:00.12Z",
            "2024-03-05T10:00:00.120+00:00",
            "2024-03-05T10:00:00.129+00:00",
        ),
        (
            "2024-03-05T10:00:00.123+02:00",
            "2024-03-05T08:00:00.123+00:00",
            "2024-03-05T08:00:00.123+00:00",
        ),
        (
            "2024-03-05T10:00:00.123456Z",
            "2024-03-05T10:00:00.123+00:00",
            "2024-03-05T10:00:00.123+00:00",
        ),
        ("1969-12-31T23:59:59Z", "1969-12-31T23:59:59+00:00", "1969-12-31T23:59:59.999+00:00"),
    ],
)
def test_date_range_by_precision(text: str, low: str, high: str) -> None:
    assert date_range(text) == (ms(low), ms(high))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "24",
        "2024-3",
        "2024-03-5",
        "2024-02-30",
        "2023-02-29",
        "2024-13",
        "2024-00",
        "2024-04-31",
        "0000",
        "2024-03-05T10",
        "2024-03-05T24:00",
        "2024-03-05T10:60",
        "2024-03-05T10:00:60",
        "2024-03-05T10:00:00+15:00",
        "2024-03-05T10:00:00+02",
        "2024-03-05T10:00:00.",
        "2024-03-05Z",
        "2024-03-05 10:00:00",
        "2024-03-05T10:00:00ZZ",
        "ge2024",
        "10:00:00",
        "\uff12\uff10\uff12\uff14-03-05",  # fullwidth digits
    ],
)
def test_date_range_rejects_what_is_not_a_fhir_date(text: str) -> None:
    with pytest.raises(ValueError):
        date_range(text)


@pytest.mark.parametrize(
    ("text", "value", "low", "high"),
    [
        ("100", 100, 99.5, 100.5),
        ("1.50", 1.5, 1.495, 1.505),
        ("1.5", 1.5, 1.45, 1.55),
        ("0", 0, -0.5, 0.5),
        ("-3.25", -3.25, -3.255, -3.245),
        ("1e2", 100, 50, 150),
        ("1.00e-3", 0.001, 0.000995, 0.001005),
    ],
)
def test_number_range_by_significant_figures(
    text: str, value: float, low: float, high: float
) -> None:
    assert number_range(text) == (pytest.approx(value), pytest.approx(low), pytest.approx(high))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1,5",
        "abc",
        "1.",
        ".5",
        "NaN",
        "Infinity",
        "--1",
        "0x10",
        "+1",
        "\uff11",
        "1e400",
        "1e-999999999",
    ],
)
def test_number_range_rejects_non_decimals(text: str) -> None:
    with pytest.raises(ValueError):
        number_range(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Patient/pat-1", ("Patient", "pat-1", None, None)),
        ("Patient/pat-1/_history/4", ("Patient", "pat-1", None, "4")),
        (
            "https://hub.example.org/fhir/Patient/pat-1",
            ("Patient", "pat-1", "https://hub.example.org/fhir/Patient/pat-1", None),
        ),
        (
            "https://hub.example.org/fhir/Patient/pat-1/_history/4",
            ("Patient", "pat-1", "https://hub.example.org/fhir/Patient/pat-1", "4"),
        ),
        (
            "http://example.org/fhir/PlanDefinition/ct|2.1",
            ("PlanDefinition", "ct", "http://example.org/fhir/PlanDefinition/ct", "2.1"),
        ),
        (
            "https://pacs.example.org/wado/studies/1.2.3",
            (None, None, "https://pacs.example.org/wado/studies/1.2.3", None),
        ),
        ("urn:uuid:6b2c0e53-1a0c-4a35", (None, None, "urn:uuid:6b2c0e53-1a0c-4a35", None)),
        ("urn:oid:1.2.3", (None, None, "urn:oid:1.2.3", None)),
        ("#contained", None),
        ("fhir/Patient/pat-1", (None, None, "fhir/Patient/pat-1", None)),
        ("", None),
    ],
)
def test_split_reference(text: str, expected: object) -> None:
    assert split_reference(text) == expected


# -- token --------------------------------------------------------------------------------------


def test_token_identifier_with_and_without_type() -> None:
    assert entries(PATIENT, "identifier") == [
        TokenEntry(
            "identifier",
            "http://hospital.example/mrn",
            "MRN-0042",
            "Medical record",
            V2_0203,
            "MR",
        ),
        TokenEntry("identifier", "urn:oid:2.16.756.5.32", "756.1234.5678.97"),
    ]


def test_token_codeable_concept_codings_and_text() -> None:
    assert entries(PATIENT, "language") == [
        TokenEntry("language", "urn:ietf:bcp:47", "de-CH", "Swiss German"),
        TokenEntry("language", None, None, "German"),
    ]
    # a coding without display takes the CodeableConcept's text
    assert entries(IMAGING_STUDY, "reason") == [
        TokenEntry("reason", SNOMED, "25064002", "Headache"),
        TokenEntry("reason", None, None, "Cephalgia"),
    ]
    assert entries(BLOOD_PRESSURE, "code") == [
        TokenEntry("code", LOINC, "85354-9", "Blood pressure panel"),
        TokenEntry("code", SNOMED, "75367002", "Blood pressure"),
        TokenEntry("code", None, None, "Blood pressure"),
    ]
    assert entries(NOTE_OBSERVATION, "code") == [
        TokenEntry("code", None, None, "Technologist note")
    ]


def test_token_coding_code_and_boolean() -> None:
    assert entries(IMAGING_STUDY, "modality") == [
        TokenEntry("modality", DCM, "CT"),
        TokenEntry("modality", DCM, "SR"),
    ]
    assert entries(ENCOUNTER, "class") == [
        TokenEntry("class", "http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB", "ambulatory")
    ]
    assert entries(PATIENT, "gender") == [TokenEntry("gender", None, "female")]
    assert entries(PATIENT, "active") == [TokenEntry("active", None, "true")]
    assert entries(PATIENT, "address-use") == [TokenEntry("address-use", None, "home")]
    assert entries(KOS_REFERENCE, "contenttype") == [
        TokenEntry("contenttype", None, "application/dicom")
    ]
    assert entries(ORDER, "order-detail") == [TokenEntry("order-detail", None, "without contrast")]


def test_token_contact_point_matches_its_value() -> None:
    assert entries(PATIENT, "telecom") == [
        TokenEntry("telecom", None, "+41 44 123 45 67"),
        TokenEntry("telecom", None, "anna.mueller@example.org"),
    ]
    assert entries(PATIENT, "email") == [TokenEntry("email", None, "anna.mueller@example.org")]
    assert entries(PATIENT, "phone") == [TokenEntry("phone", None, "+41 44 123 45 67")]


@pytest.mark.parametrize(
    ("deceased", "code"),
    [
        ({"deceasedDateTime": "2024-03-05"}, "true"),
        ({"deceasedBoolean": True}, "true"),
        ({"deceasedBoolean": False}, "false"),
        ({}, "false"),
    ],
)
def test_token_from_boolean_expression(deceased: dict[str, Any], code: str) -> None:
    patient = {"resourceType": "Patient", "id": "p", **deceased}
    assert entries(patient, "deceased") == [TokenEntry("deceased", None, code)]


def test_token_identifier_from_master_identifier_and_identifier() -> None:
    assert entries(KOS_REFERENCE, "identifier") == [
        TokenEntry("identifier", "urn:ietf:rfc:3986", "urn:oid:1.2.3.4.5"),
        TokenEntry("identifier", "urn:ietf:rfc:3986", "urn:uuid:a4bb3a4e-8b48-4c62-9d3c"),
    ]
    assert entries(ORDER, "requisition") == [
        TokenEntry("requisition", "http://hospital.example/requisition", "REQ-5")
    ]


# -- string -------------------------------------------------------------------------------------


def test_string_human_name_parts() -> None:
    assert entries(PATIENT, "name") == [
        StringEntry("name", "Müller"),
        StringEntry("name", "Anna"),
        StringEntry("name", "Maria"),
        StringEntry("name", "Dr."),
        StringEntry("name", "Annie"),
    ]
    assert entries(PATIENT, "family") == [StringEntry("family", "Müller")]
    assert entries(PATIENT, "given") == [
        StringEntry("given", "Anna"),
        StringEntry("given", "Maria"),
    ]
    assert entries(PATIENT, "phonetic") == [
        StringEntry("phonetic", v) for v in ("Müller", "Anna", "Maria", "Dr.", "Annie")
    ]


def test_string_address_parts() -> None:
    assert entries(PATIENT, "address") == [
        StringEntry("address", v)
        for v in ("Bahnhofstrasse 1", "Apt 3", "Zürich", "ZH", "8001", "CH")
    ]
    assert entries(PATIENT, "address-city") == [StringEntry("address-city", "Zürich")]
    assert entries(LOCATION, "address") == [
        StringEntry("address", "Zürich"),
        StringEntry("address", "CH"),
    ]


def test_string_union_of_elements() -> None:
    assert entries(LOCATION, "name") == [
        StringEntry("name", "CT Room 2"),
        StringEntry("name", "CT2"),
        StringEntry("name", "Computed Tomography 2"),
    ]
    assert entries(KOS_REFERENCE, "description") == [StringEntry("description", "Key images")]


def test_string_value_choices() -> None:
    assert entries(NOTE_OBSERVATION, "value-string") == [
        StringEntry("value-string", "Patient moved during series 2")
    ]
    assert entries(FINDING, "value-string") == [StringEntry("value-string", "Unremarkable")]


# -- date ---------------------------------------------------------------------------------------


def test_date_primitives() -> None:
    assert entries(PATIENT, "birthdate") == [
        DateEntry("birthdate", ms("1984-02-29T00:00:00+00:00"), ms("1984-02-29T23:59:59.999+00:00"))
    ]
    assert entries(PATIENT, "death-date") == [
        DateEntry(
            "death-date", ms("2024-03-05T13:30:00+00:00"), ms("2024-03-05T13:30:00.999+00:00")
        )
    ]
    assert entries(IMAGING_STUDY, "started") == [
        DateEntry("started", ms("2024-03-05T09:00:00+00:00"), ms("2024-03-05T09:00:00.999+00:00"))
    ]
    assert entries(KOS_REFERENCE, "date") == [
        DateEntry("date", ms("2024-03-05T09:30:00.123+00:00"), ms("2024-03-05T09:30:00.123+00:00"))
    ]
    assert entries(NOTE_OBSERVATION, "date") == [
        DateEntry("date", ms("2024-03-05T10:15:00.250+00:00"), ms("2024-03-05T10:15:00.259+00:00"))
    ]


def test_date_period_closed_and_open() -> None:
    assert entries(ENCOUNTER, "date") == [
        DateEntry("date", ms("2024-03-05T08:00:00+00:00"), ms("2024-03-05T10:00:00.999+00:00"))
    ]
    assert entries(ENCOUNTER, "location-period") == [
        DateEntry("location-period", ms("2024-03-05T08:55:00+00:00"), None)
    ]
    assert entries(BLOOD_PRESSURE, "date") == [
        DateEntry("date", ms("2024-03-05T09:30:00+00:00"), None)
    ]
    assert entries(KOS_REFERENCE, "period") == [
        DateEntry("period", ms("2024-03-05T00:00:00+00:00"), None)
    ]
    only_end = {"resourceType": "Flag", "id": "f", "period": {"end": "2024-03"}}
    assert entries(only_end, "date") == [
        DateEntry("date", None, ms("2024-03-31T23:59:59.999+00:00"))
    ]


def test_date_timing_events_and_bounds() -> None:
    assert entries(ORDER, "occurrence") == [
        DateEntry(
            "occurrence", ms("2024-03-05T10:00:00+00:00"), ms("2024-03-05T10:00:00.999+00:00")
        ),
        DateEntry(
            "occurrence", ms("2024-03-05T00:00:00+00:00"), ms("2024-03-06T23:59:59.999+00:00")
        ),
    ]


def test_date_choice_as_datetime_skips_a_period() -> None:
    assert entries(PROVENANCE, "when") == []
    assert entries(PROVENANCE, "recorded") == [
        DateEntry("recorded", ms("2024-03-05T10:21:00+00:00"), ms("2024-03-05T10:21:00.999+00:00"))
    ]
    provenance = {**PROVENANCE, "occurredDateTime": "2024-03-05T10:00:00Z"}
    del provenance["occurredPeriod"]
    assert entries(provenance, "when") == [
        DateEntry("when", ms("2024-03-05T10:00:00+00:00"), ms("2024-03-05T10:00:00.999+00:00"))
    ]


def test_date_value_date_from_datetime() -> None:
    assert entries(DATE_VALUED, "value-date") == [
        DateEntry(
            "value-date", ms("2024-02-01T00:00:00+00:00"), ms("2024-02-29T23:59:59.999+00:00")
        )
    ]


def test_malformed_dates_are_skipped_not_raised() -> None:
    bad = {
        "resourceType": "Encounter",
        "id": "e",
        "period": {"start": "2024-02-30", "end": "2024-03-01"},
        "location": [{"period": {"start": "yesterday"}}],
    }
    study = {"resourceType": "ImagingStudy", "id": "s", "started": "05.03.2024"}
    assert entries(bad, "date") == []
    assert entries(bad, "location-period") == []
    assert entries(study, "started") == []


# -- quantity and number -----------------------------------------------------------------------


def test_quantity_duration_and_precision() -> None:
    assert entries(ENCOUNTER, "length") == [
        QuantityEntry("length", 120, 119.5, 120.5, UCUM, "min", "min")
    ]
    [systolic, diastolic] = entries(BLOOD_PRESSURE, "component-value-quantity")
    assert systolic == QuantityEntry(
        "component-value-quantity", 120, 119.5, 120.5, UCUM, "mm[Hg]", "mmHg"
    )
    assert (diastolic.value, diastolic.system, diastolic.code) == (80.5, UCUM, "mm[Hg]")
    assert (diastolic.low, diastolic.high) == (pytest.approx(80.45), pytest.approx(80.55))


def test_quantity_skips_sampled_data() -> None:
    assert entries(ECG, "value-quantity") == []
    assert entries(ECG, "combo-value-quantity") == []
    # also when the path names the JSON key, so the type is not known from a choice
    registry = SearchParameterRegistry(
        [
            SearchParameterDef(
                url="http://pixelhub.example/SearchParameter/Observation-sampled",
                base="Observation",
                code="sampled",
                type="quantity",
                expression="Observation.valueSampledData | Observation.valueSampledData.origin",
            )
        ]
    )
    assert extract_index_entries(ECG, registry) == [
        QuantityEntry("sampled", 2048, 2047.5, 2048.5, None, None, None)
    ]


def test_quantity_skips_money() -> None:
    registry = SearchParameterRegistry(
        [
            SearchParameterDef(
                url="http://pixelhub.example/SearchParameter/Patient-amounts",
                base="Patient",
                code="amount",
                type="quantity",
                expression="Patient.extension.valueMoney | Patient.extension.value",
            )
        ]
    )
    patient = {
        "resourceType": "Patient",
        "id": "p",
        "extension": [
            {
                "url": "http://pixelhub.example/copay",
                "valueMoney": {"value": 20, "currency": "CHF"},
            },
            {"url": "http://pixelhub.example/weight", "valueQuantity": {"value": 70, "unit": "kg"}},
        ],
    }
    get_fhir_model_class("Patient").model_validate(patient)
    assert extract_index_entries(patient, registry) == [
        QuantityEntry("amount", 70, 69.5, 70.5, None, None, "kg")
    ]


def test_number_via_a_custom_parameter() -> None:
    registry = SearchParameterRegistry(
        [
            SearchParameterDef(
                url="http://pixelhub.example/SearchParameter/ImagingStudy-series-count",
                base="ImagingStudy",
                code="series-count",
                type="number",
                expression="ImagingStudy.numberOfSeries",
            ),
            SearchParameterDef(
                url="http://pixelhub.example/SearchParameter/Observation-component-number",
                base="Observation",
                code="component-number",
                type="number",
                expression="(Observation.component.value as Quantity).value",
            ),
        ]
    )
    assert extract_index_entries(IMAGING_STUDY, registry) == [
        NumberEntry("series-count", 3, 2.5, 3.5)
    ]
    [first, second] = extract_index_entries(BLOOD_PRESSURE, registry)
    assert first == NumberEntry("component-number", 120, 119.5, 120.5)
    assert (second.value, second.low, second.high) == (80.5, 80.45, pytest.approx(80.55))


def test_non_finite_numbers_are_skipped() -> None:
    study = {"resourceType": "ImagingStudy", "id": "s", "numberOfSeries": float("inf")}
    registry = SearchParameterRegistry(
        [
            SearchParameterDef(
                url="http://pixelhub.example/SearchParameter/ImagingStudy-series-count",
                base="ImagingStudy",
                code="series-count",
                type="number",
                expression="ImagingStudy.numberOfSeries",
            )
        ]
    )
    assert extract_index_entries(study, registry) == []


def test_unsupported_expression_in_a_custom_registry_fails_loudly() -> None:
    registry = SearchParameterRegistry(
        [
            SearchParameterDef(
                url="http://pixelhub.example/SearchParameter/Patient-name-count",
                base="Patient",
                code="name-count",
                type="number",
                expression="Patient.name.count()",
            )
        ]
    )
    with pytest.raises(ValueError, match=r"Patient-name-count .*count\(\)"):
        extract_index_entries(PATIENT, registry)


# -- reference ----------------------------------------------------------------------------------


def test_reference_relative_with_identifier() -> None:
    assert entries(IMAGING_STUDY, "basedon") == [
        ReferenceEntry(
            "basedon",
            "ServiceRequest",
            "sr-1",
            identifier_system="http://hospital.example/accession",
            identifier_value="ACC-1001",
        )
    ]


def test_reference_absolute_versioned_and_identifier_only() -> None:
    assert entries(PATIENT, "general-practitioner") == [
        ReferenceEntry(
            "general-practitioner",
            "Practitioner",
            "gp-7",
            url="https://gp.example.org/fhir/Practitioner/gp-7",
            version="2",
        )
    ]
    assert entries(PATIENT, "organization") == [
        ReferenceEntry(
            "organization",
            None,
            None,
            identifier_system="urn:oid:2.51.1.3",
            identifier_value="7601000000000",
        )
    ]
    assert entries(ORDER, "based-on") == [
        ReferenceEntry(
            "based-on", None, None, identifier_system="urn:placer", identifier_value="PL-77"
        )
    ]


def test_reference_urn_canonical_and_contained() -> None:
    assert entries(ORDER, "requester") == [
        ReferenceEntry("requester", None, None, url="urn:uuid:6b2c0e53-1a0c-4a35-a8f2-4a1f3b6a8c11")
    ]
    assert entries(ORDER, "instantiates-canonical") == [
        ReferenceEntry(
            "instantiates-canonical",
            "PlanDefinition",
            "ct-head-protocol",
            url="http://example.org/fhir/PlanDefinition/ct-head-protocol",
            version="2.1",
        )
    ]
    assert entries(ORDER, "performer") == []  # "#on-call" is contained


def test_reference_resolve_filters_by_target_type() -> None:
    assert entries(IMAGING_STUDY, "patient") == [ReferenceEntry("patient", "Patient", "pat-1")]
    assert entries(GROUP_STUDY, "patient") == []
    assert entries(GROUP_STUDY, "subject") == [ReferenceEntry("subject", "Group", "qa-phantoms")]
    assert entries(FINDING, "patient") == []
    assert entries(KOS_REFERENCE, "patient") == [
        ReferenceEntry(
            "patient", "Patient", "pat-1", url="https://hub.example.org/fhir/Patient/pat-1"
        )
    ]
    assert entries(PROVENANCE, "patient") == [ReferenceEntry("patient", "Patient", "pat-1")]
    assert entries(ENCOUNTER, "practitioner") == [
        ReferenceEntry("practitioner", "Practitioner", "rad-1")
    ]
    assert entries(ENCOUNTER, "participant") == [
        ReferenceEntry("participant", "Practitioner", "rad-1"),
        ReferenceEntry("participant", "RelatedPerson", "mother"),
    ]


# -- uri and resource-level parameters --------------------------------------------------------


def test_uri_values() -> None:
    assert entries(KOS_REFERENCE, "location") == [
        UriEntry("location", "https://pacs.example.org/wado/studies/1.2.3")
    ]
    assert entries(ORDER, "instantiates-uri") == [
        UriEntry("instantiates-uri", "http://example.org/protocols/ct-head.pdf")
    ]


def test_meta_parameters() -> None:
    found = [
        e
        for e in extract_index_entries(PATIENT)
        if e.param.startswith("_") and e.param not in ("_content", "_text")
    ]
    assert found == [
        UriEntry("_profile", "http://hl7.org/fhir/StructureDefinition/Patient"),
        TokenEntry(
            "_security",
            "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
            "R",
            "restricted",
        ),
        UriEntry("_source", "http://ris.example.org/fhir"),
        TokenEntry("_tag", "http://pixelhub.example/tag", "demo"),
    ]


def test_id_and_last_updated_are_left_to_the_engine() -> None:
    params = {e.param for e in extract_index_entries(PATIENT)}
    assert "_id" not in params
    assert "_lastUpdated" not in params


# -- composite ----------------------------------------------------------------------------------


def test_composite_code_value_quantity_per_component() -> None:
    found = entries(BLOOD_PRESSURE, "component-code-value-quantity")
    p = "component-code-value-quantity"
    assert found == [
        TokenEntry(p, LOINC, "8480-6", group=1, component=0),
        QuantityEntry(p, 120, 119.5, 120.5, UCUM, "mm[Hg]", "mmHg", group=1, component=1),
        TokenEntry(p, LOINC, "8462-4", group=2, component=0),
        QuantityEntry(
            p, 80.5, found[3].low, found[3].high, UCUM, "mm[Hg]", "mmHg", group=2, component=1
        ),
    ]
    # the panel itself has no value: no code-value-quantity combination
    assert entries(BLOOD_PRESSURE, "code-value-quantity") == []


def test_composite_cartesian_product_and_unique_groups() -> None:
    observation = copy.deepcopy(BLOOD_PRESSURE)
    observation["valueQuantity"] = {"value": 1, "system": UCUM, "code": "1"}
    combo = entries(observation, "combo-code-value-quantity")
    # the observation's two codings x its value, then each component's code x its value
    assert [(e.group, e.component, getattr(e, "code", None)) for e in combo] == [
        (1, 0, "85354-9"),
        (1, 1, "1"),
        (2, 0, "75367002"),
        (2, 1, "1"),
        (3, 0, "8480-6"),
        (3, 1, "mm[Hg]"),
        (4, 0, "8462-4"),
        (4, 1, "mm[Hg]"),
    ]
    found = extract_index_entries(observation)
    assert {e.param for e in found if e.group} == {
        "code-value-quantity",
        "combo-code-value-quantity",
        "component-code-value-quantity",
    }
    groups_by_param: dict[int, set[str]] = {}
    for entry in found:
        if entry.group:
            groups_by_param.setdefault(entry.group, set()).add(entry.param)
    assert all(len(params) == 1 for params in groups_by_param.values())  # unique per resource
    assert all(e.group == 0 and e.component == 0 for e in found if "-value-" not in e.param)


def test_composite_code_value_concept_and_date_and_string() -> None:
    p = "code-value-concept"
    assert entries(FINDING, p) == [
        TokenEntry(p, LOINC, "59776-5", "Procedure findings", group=1, component=0),
        TokenEntry(p, SNOMED, "17621005", "Normal", group=1, component=1),
    ]
    p = "code-value-date"
    assert entries(DATE_VALUED, p) == [
        TokenEntry(p, LOINC, "8665-2", group=1, component=0),
        DateEntry(
            p,
            ms("2024-02-01T00:00:00+00:00"),
            ms("2024-02-29T23:59:59.999+00:00"),
            group=1,
            component=1,
        ),
    ]
    # a code with text only has no token to combine
    assert entries(NOTE_OBSERVATION, "code-value-string") == []


def test_composite_relationship_reads_target_and_code() -> None:
    p = "relationship"
    assert entries(KOS_REFERENCE, p) == [
        ReferenceEntry(p, "DocumentReference", "kos-0", group=1, component=0),
        TokenEntry(p, None, "replaces", group=1, component=1),
        ReferenceEntry(p, "DocumentReference", "report-1", group=2, component=0),
        TokenEntry(p, None, "appends", group=2, component=1),
    ]
    assert entries(KOS_REFERENCE, "relation") == [
        TokenEntry("relation", None, "replaces"),
        TokenEntry("relation", None, "appends"),
    ]


# -- whole resources -------------------------------------------------------------------------


def test_imaging_study_entries_are_exact_and_deduplicated() -> None:
    found = extract_index_entries(IMAGING_STUDY)
    assert len(found) == len(set(found))
    by_param: dict[str, list[IndexEntry]] = {}
    for entry in found:
        by_param.setdefault(entry.param, []).append(entry)
    assert sorted(by_param) == [
        "_content",
        "_tag",
        "basedon",
        "bodysite",
        "dicom-class",
        "encounter",
        "endpoint",
        "identifier",
        "instance",
        "interpreter",
        "modality",
        "patient",
        "performer",
        "reason",
        "referrer",
        "series",
        "started",
        "status",
        "subject",
    ]
    assert by_param["dicom-class"] == [
        TokenEntry("dicom-class", "urn:ietf:rfc:3986", CT[8:]),
        TokenEntry("dicom-class", "urn:ietf:rfc:3986", SR[8:]),
    ]
    assert by_param["bodysite"] == [TokenEntry("bodysite", SNOMED, "69536005", "Head")]
    assert by_param["endpoint"] == [ReferenceEntry("endpoint", "Endpoint", "wado")]
    assert by_param["performer"] == [ReferenceEntry("performer", "Practitioner", "tech-1")]
    assert by_param["series"] == [
        TokenEntry("series", None, f"1.2.840.113619.2.55.3.604688119.969.1268071029.{n}")
        for n in (1, 2, 3)
    ]
    assert len(by_param["instance"]) == 6
    assert by_param["identifier"] == [
        TokenEntry("identifier", "urn:dicom:uid", STUDY_UID),
        TokenEntry(
            "identifier", "http://hospital.example/accession", "ACC-1001", None, V2_0203, "ACSN"
        ),
    ]
    assert by_param["status"] == [TokenEntry("status", None, "available")]
    # description, subject display, reason text and display, series description and body site:
    # no UIDs, codes, systems, references or dates
    words = "ct head wo contrast muller anna cephalgia headache ax t2".split()
    assert by_param["_content"] == [StringEntry("_content", w) for w in words]
    assert len(found) == 29 + len(words)


def test_extraction_does_not_modify_the_resource() -> None:
    before = copy.deepcopy(IMAGING_STUDY)
    extract_index_entries(IMAGING_STUDY)
    assert before == IMAGING_STUDY


def _paths(node: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*prefix, i))
    return found


@pytest.mark.parametrize("resource", SAMPLES, ids=lambda r: f"{r['resourceType']}/{r['id']}")
def test_malformed_shapes_degrade_without_raising(resource: dict[str, Any]) -> None:
    """Stored data that skipped validation must not stop the indexer: every element in turn is
    replaced by values of the wrong shape."""
    for path in _paths(resource):
        if path == ("resourceType",):
            continue
        for junk in (1, 1.5, "x", True, None, [], {}, [1, "x", None, {}, []], {"a": {}}):
            broken = copy.deepcopy(resource)
            node = broken
            for step in path[:-1]:
                node = node[step]
            node[path[-1]] = junk
            for entry in extract_index_entries(broken):
                for field in dataclasses.fields(entry):
                    value = getattr(entry, field.name)
                    assert value is None or isinstance(value, str | int | float), (path, entry)


def test_unknown_or_unserved_type_has_no_entries() -> None:
    assert extract_index_entries({"resourceType": "Basic", "id": "b"}) == []
    assert extract_index_entries({"id": "no-type"}) == []
    assert extract_index_entries({"resourceType": ["Patient"], "id": "bad-type"}) == []
