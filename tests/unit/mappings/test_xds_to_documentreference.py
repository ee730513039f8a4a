"""XDS DocumentEntry/SubmissionSet <-> MHD DocumentReference/List with the MADO imaging rules
(mappings/xds_to_documentreference.md)."""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from mappings.xds_model import (
    APPROVED,
    DEPRECATED,
    KOS_FORMAT,
    Author,
    Code,
    DocumentEntry,
    SubmissionSet,
)
from mappings.xds_to_documentreference import (
    cx_to_identifier,
    documententry_to_documentreference,
    documentreference_to_documententry,
    dtm_to_fhir,
    fhir_to_dtm,
    identifier_to_cx,
    list_to_submissionset,
    scheme_to_system,
    submissionset_to_list,
    system_to_scheme,
)

LOINC_OID = "2.16.840.1.113883.6.1"
SNOMED_OID = "2.16.840.1.113883.6.96"
DCM_OID = "1.2.840.10008.2.16.4"
DCMUID_OID = "1.2.840.10008.2.6.1"
CONF_OID = "2.16.840.1.113883.5.25"
ROLE_OID = "2.16.840.1.113883.5.111"
IHE_FORMAT_OID = "1.3.6.1.4.1.19376.1.2.3"
LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
DCMUID = "http://dicom.nema.org/resources/ontology/DCMUID"
RFC3986 = "urn:ietf:rfc:3986"

AFFINITY = "1.3.6.1.4.1.21367.13.20.1000"  # the affinity domain's patient id authority
PATIENT_ID = f"IHEBLUE-2741^^^&{AFFINITY}&ISO"
STUDY_UID = "1.3.6.1.4.1.21367.201599.1.201604020954048"
KOS_UID = "1.3.6.1.4.1.21367.201599.2.201604020954049.1"
ACCESSION_AUTHORITY = "1.3.6.1.4.1.21367.13.20.3000"
KOS_BYTES = b"DICM-manifest-bytes-for-the-test"
KOS_SHA1 = hashlib.sha1(KOS_BYTES).hexdigest()


def fhir_valid(resource: dict[str, Any]) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def kos_entry(**changes: Any) -> DocumentEntry:
    """The KOS manifest entry of an XDS-I.b submission (RAD-68): a CT of the chest."""
    fields: dict[str, Any] = {
        "entry_uuid": "urn:uuid:0a2a6f2e-8f0b-4b83-9c0e-4d7f2b8d9e11",
        "unique_id": KOS_UID,
        "patient_id": PATIENT_ID,
        "mime_type": "application/dicom",
        "class_code": Code("18748-4", LOINC_OID, "Diagnostic imaging study"),
        "type_code": Code("55113-5", LOINC_OID, "Key images Document Radiology"),
        "format_code": Code(KOS_FORMAT, DCMUID_OID, "Key Object Selection Document"),
        "healthcare_facility_type": Code("HOSP", ROLE_OID, "Hospital"),
        "practice_setting": Code("394914008", SNOMED_OID, "Radiology"),
        "confidentiality": (Code("N", CONF_OID, "normal"),),
        "creation_time": "20160402095500",
        "language": "en-US",
        "source_patient_id": "MRN-2741^^^&1.3.6.1.4.1.21367.13.20.2000&ISO",
        "source_patient_info": (
            "PID-3|MRN-2741^^^&1.3.6.1.4.1.21367.13.20.2000&ISO",
            "PID-3|X-99^^^HOSP_A",
            "PID-5|BLUE^JANE^M",
            "PID-7|19700315",
            "PID-8|F",
            "PID-11|1 Main St^^Springfield^IL^62701^USA",
        ),
        "event_codes": (
            Code("CT", DCM_OID, "Computed Tomography"),
            Code("51185008", SNOMED_OID, "Thoracic structure"),
        ),
        "service_start": "20160402094800",
        "service_stop": "20160402095400",
        "title": "CT chest manifest",
        "comments": "Key object selection for the chest CT",
        "hash": KOS_SHA1,
        "size": len(KOS_BYTES),
        "repository_unique_id": "1.3.6.1.4.1.21367.13.40.1",
        "reference_ids": (
            f"{STUDY_UID}^^^^urn:ihe:iti:xds:2016:studyInstanceUID",
            f"ACC-5521^^^&{ACCESSION_AUTHORITY}&ISO^urn:ihe:iti:xds:2013:accession",
        ),
        "authors": (
            Author(
                person="r77^Wel^Marcus^^^Dr^^^&1.3.6.1.4.1.21367.13.20.4000&ISO",
                institutions=("Springfield Imaging^^^^^&1.3.6.1.4.1.21367.13.20.5000&ISO^^^^IMG1",),
                roles=("Attending",),
                specialties=("Radiology",),
                telecoms=("^^Internet^mwel@imaging.example.org",),
            ),
            Author(person="dev1^CT Scanner One"),
        ),
    }
    fields.update(changes)
    return DocumentEntry(**fields)


def pdf_entry(**changes: Any) -> DocumentEntry:
    """A radiology report as PDF: no MADO rules, an IHE format code, a deprecated entry."""
    fields: dict[str, Any] = {
        "entry_uuid": "urn:uuid:6b1b1c0a-9b3e-4f55-8e3a-2b9f1f0b7c22",
        "unique_id": "1.3.6.1.4.1.21367.2016.7.55^report-9",
        "patient_id": PATIENT_ID,
        "mime_type": "application/pdf",
        "class_code": Code("REPORTS", "1.3.6.1.4.1.19376.1.2.6.1", "Reports"),
        "type_code": Code("18782-3", LOINC_OID, "Radiology Study observation (narrative)"),
        "format_code": Code(
            "urn:ihe:iti:xds:2017:mimeTypeSufficient", IHE_FORMAT_OID, "mimeType Sufficient"
        ),
        "healthcare_facility_type": Code("HOSP", ROLE_OID, "Hospital"),
        "practice_setting": Code("394914008", SNOMED_OID, "Radiology"),
        "confidentiality": (
            Code("R", CONF_OID, "restricted"),
            Code("ETH", "2.16.840.1.113883.5.4"),
        ),
        "creation_time": "2016040210",
        "language": "de-CH",
        "title": "Befund CT Thorax",
        "status": DEPRECATED,
        "authors": (Author(institutions=("Springfield Imaging",)),),
    }
    fields.update(changes)
    return DocumentEntry(**fields)


def kos_doc(**changes: Any) -> dict[str, Any]:
    return documententry_to_documentreference(
        kos_entry(**changes),
        patient="Patient/p1",
        content_url="Binary/kos1",
        study="ImagingStudy/s1",
    )


def back(doc: dict[str, Any], entry: DocumentEntry) -> DocumentEntry:
    return documentreference_to_documententry(
        doc,
        patient_id=entry.patient_id,
        repository_unique_id=entry.repository_unique_id,
        entry_uuid=entry.entry_uuid,
    )


def contained(doc: dict[str, Any], rid: str) -> dict[str, Any]:
    (found,) = [r for r in doc["contained"] if r["id"] == rid]
    return found


# --------------------------------------------------------------------------------------------
# DocumentEntry -> DocumentReference (MADO)


def test_kos_entry_is_a_valid_mado_documentreference() -> None:
    doc = kos_doc()
    fhir_valid(doc)
    assert doc["masterIdentifier"] == {
        "use": "usual",
        "system": RFC3986,
        "value": f"urn:oid:{KOS_UID}",
    }
    assert doc["identifier"] == [
        {
            "use": "official",
            "system": RFC3986,
            "value": "urn:uuid:0a2a6f2e-8f0b-4b83-9c0e-4d7f2b8d9e11",
        }
    ]
    assert doc["status"] == "current"
    assert doc["type"] == {
        "coding": [{"system": LOINC, "code": "55113-5", "display": "Key images Document Radiology"}]
    }
    assert doc["category"] == [
        {"coding": [{"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}]}
    ]
    assert doc["subject"] == {"reference": "Patient/p1"}
    assert doc["description"] == "Key object selection for the chest CT"
    assert doc["securityLabel"] == [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                    "code": "N",
                    "display": "normal",
                }
            ]
        }
    ]
    (content,) = doc["content"]
    assert content["format"] == {
        "system": DCMUID,
        "code": KOS_FORMAT,
        "display": "Key Object Selection Document",
    }
    assert content["attachment"] == {
        "contentType": "application/dicom",
        "language": "en-US",
        "url": "Binary/kos1",
        "size": len(KOS_BYTES),
        "hash": base64.b64encode(hashlib.sha1(KOS_BYTES).digest()).decode(),
        "title": "CT chest manifest",
        "creation": "2016-04-02T09:55:00Z",
    }
    context = doc["context"]
    assert context["event"] == [
        {"coding": [{"system": DCM, "code": "CT", "display": "Computed Tomography"}]},
        {"coding": [{"system": SCT, "code": "51185008", "display": "Thoracic structure"}]},
    ]
    assert context["period"] == {"start": "2016-04-02T09:48:00Z", "end": "2016-04-02T09:54:00Z"}
    assert context["facilityType"] == {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                "code": "HOSP",
                "display": "Hospital",
            }
        ]
    }
    assert context["practiceSetting"] == {
        "coding": [{"system": SCT, "code": "394914008", "display": "Radiology"}]
    }
    assert context["related"] == [
        {"identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{STUDY_UID}"}},
        {
            "identifier": {
                "value": "ACC-5521",
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}
                    ]
                },
                "system": f"urn:oid:{ACCESSION_AUTHORITY}",
            }
        },
        {"reference": "ImagingStudy/s1"},
    ]
    # repositoryUniqueId and homeCommunityId have no place in FHIR
    assert "1.3.6.1.4.1.21367.13.40.1" not in repr(doc)


def test_kos_authors_are_contained_practitioner_role_and_practitioner() -> None:
    doc = kos_doc()
    assert doc["author"] == [{"reference": "#author1"}, {"reference": "#author2"}]
    role = contained(doc, "author1")
    assert role == {
        "resourceType": "PractitionerRole",
        "id": "author1",
        "practitioner": {"reference": "#author1-person"},
        "organization": {"reference": "#author1-org"},
        "code": [{"text": "Attending"}],
        "specialty": [{"text": "Radiology"}],
        "telecom": [{"system": "email", "value": "mwel@imaging.example.org"}],
    }
    assert contained(doc, "author1-person") == {
        "resourceType": "Practitioner",
        "id": "author1-person",
        "identifier": [{"value": "r77", "system": "urn:oid:1.3.6.1.4.1.21367.13.20.4000"}],
        "name": [{"family": "Wel", "given": ["Marcus"], "prefix": ["Dr"]}],
    }
    assert contained(doc, "author1-org") == {
        "resourceType": "Organization",
        "id": "author1-org",
        "identifier": [{"value": "IMG1", "system": "urn:oid:1.3.6.1.4.1.21367.13.20.5000"}],
        "name": "Springfield Imaging",
    }
    assert contained(doc, "author2")["resourceType"] == "Practitioner"
    assert contained(doc, "author2")["name"] == [{"family": "CT Scanner One"}]


def test_kos_source_patient_is_a_contained_patient() -> None:
    doc = kos_doc()
    assert doc["context"]["sourcePatientInfo"] == {"reference": "#source-patient"}
    patient = contained(doc, "source-patient")
    fhir_valid(patient)
    assert patient["identifier"] == [
        {"system": "urn:oid:1.3.6.1.4.1.21367.13.20.2000", "value": "MRN-2741"},
        {"value": "X-99", "system": "urn:pixelhub:issuer:HOSP_A"},
    ]
    assert patient["name"] == [{"family": "BLUE", "given": ["JANE", "M"]}]
    assert patient["birthDate"] == "1970-03-15"
    assert patient["gender"] == "female"
    assert patient["address"] == [
        {
            "line": ["1 Main St"],
            "city": "Springfield",
            "state": "IL",
            "postalCode": "62701",
            "country": "USA",
        }
    ]


def test_an_empty_source_patient_name_gives_no_name() -> None:
    """``PID-5|`` (or only separators) names nobody: an empty HumanName is not valid R4."""
    doc = kos_doc(source_patient_info=("PID-5|", "PID-5|^^^", "PID-5|GREEN^^^^DR^MD"))
    patient = contained(doc, "source-patient")
    fhir_valid(patient)
    assert patient["name"] == [{"family": "GREEN", "prefix": ["DR"], "suffix": ["MD"]}]


def test_kos_round_trip_gives_the_same_entry() -> None:
    entry = kos_entry()
    assert back(kos_doc(), entry) == entry


def test_without_study_no_imagingstudy_reference() -> None:
    doc = documententry_to_documentreference(
        kos_entry(), patient="Patient/p1", content_url="Binary/k"
    )
    assert {"reference": "ImagingStudy/s1"} not in doc["context"]["related"]
    assert len(doc["context"]["related"]) == 2


def test_kos_must_be_application_dicom() -> None:
    with pytest.raises(ValueError, match="application/dicom"):
        kos_doc(mime_type="application/pdf")


def test_symbolic_entry_uuid_is_not_an_identifier() -> None:
    doc = kos_doc(entry_uuid="Document01")
    assert "identifier" not in doc
    fhir_valid(doc)


def test_other_reference_ids_keep_their_type() -> None:
    order = "ORD-1^^^&1.2.3.9&ISO^urn:ihe:iti:xds:2013:order"
    named = "ENC-7^^^HOSP_A^urn:ihe:iti:xds:2015:encounterId"
    entry = kos_entry(reference_ids=(order, named))
    doc = documententry_to_documentreference(entry, patient="Patient/p1", content_url="Binary/k")
    fhir_valid(doc)
    assert doc["context"]["related"] == [
        {
            "identifier": {
                "value": "ORD-1",
                "type": {"text": "urn:ihe:iti:xds:2013:order"},
                "system": "urn:oid:1.2.3.9",
            }
        },
        {
            "identifier": {
                "value": "ENC-7",
                "type": {"text": "urn:ihe:iti:xds:2015:encounterId"},
                "assigner": {"display": "HOSP_A"},
            }
        },
    ]
    assert back(doc, entry) == entry


# --------------------------------------------------------------------------------------------
# A PDF report (not MADO)


def test_pdf_report_entry() -> None:
    entry = pdf_entry()
    doc = documententry_to_documentreference(entry, patient="Patient/p1", content_url="Binary/r1")
    fhir_valid(doc)
    assert doc["status"] == "superseded"
    assert doc["masterIdentifier"] == {
        "use": "usual",
        "system": "urn:oid:1.3.6.1.4.1.21367.2016.7.55",
        "value": "report-9",
    }
    assert doc["content"][0]["format"] == {
        "system": "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode",
        "code": "urn:ihe:iti:xds:2017:mimeTypeSufficient",
        "display": "mimeType Sufficient",
    }
    assert doc["content"][0]["attachment"]["creation"] == "2016-04-02T10:00:00Z"
    assert doc["content"][0]["attachment"]["language"] == "de-CH"
    assert doc["category"][0]["coding"][0]["system"] == "urn:oid:1.3.6.1.4.1.19376.1.2.6.1"
    assert [c["coding"][0]["code"] for c in doc["securityLabel"]] == ["R", "ETH"]
    assert "related" not in doc["context"]
    assert "sourcePatientInfo" not in doc["context"]
    (org_role,) = [r for r in doc["contained"] if r["id"] == "author1"]
    assert org_role["organization"] == {"reference": "#author1-org"}
    assert contained(doc, "author1-org") == {
        "resourceType": "Organization",
        "id": "author1-org",
        "name": "Springfield Imaging",
    }
    # the DTM to the hour comes back to the second; everything else is the same
    assert back(doc, entry) == dataclasses.replace(entry, creation_time="20160402100000")


# --------------------------------------------------------------------------------------------
# DocumentReference -> DocumentEntry: what XDS requires


REQUIRED = [
    ("classCode=category", lambda d: d.pop("category")),
    ("typeCode=type", lambda d: d.pop("type")),
    ("formatCode=content.format", lambda d: d["content"][0].pop("format")),
    ("healthcareFacilityType=context.facilityType", lambda d: d["context"].pop("facilityType")),
    ("practiceSetting=context.practiceSetting", lambda d: d["context"].pop("practiceSetting")),
    ("confidentiality=securityLabel", lambda d: d.pop("securityLabel")),
    (
        "creationTime=content.attachment.creation",
        lambda d: d["content"][0]["attachment"].pop("creation"),
    ),
    (
        "mimeType=content.attachment.contentType",
        lambda d: d["content"][0]["attachment"].pop("contentType"),
    ),
    ("masterIdentifier=uniqueId", lambda d: d.pop("masterIdentifier")),
]


@pytest.mark.parametrize(("element", "drop"), REQUIRED, ids=[r[0] for r in REQUIRED])
def test_missing_required_element_is_named(element: str, drop: Any) -> None:
    doc = kos_doc()
    drop(doc)
    with pytest.raises(ValueError, match=element.replace(".", r"\.")):
        back(doc, kos_entry())


def test_every_missing_element_is_named_at_once() -> None:
    doc = kos_doc()
    for _element, drop in REQUIRED:
        drop(doc)
    with pytest.raises(ValueError) as raised:
        back(doc, kos_entry())
    for element, _drop in REQUIRED:
        assert element in str(raised.value)


def test_coding_without_system_does_not_count() -> None:
    doc = kos_doc()
    doc["type"] = {"coding": [{"code": "55113-5"}], "text": "Key images"}
    with pytest.raises(ValueError, match="typeCode=type"):
        back(doc, kos_entry())


def test_entered_in_error_has_no_availability_status() -> None:
    doc = kos_doc()
    doc["status"] = "entered-in-error"
    with pytest.raises(ValueError, match="entered-in-error"):
        back(doc, kos_entry())


def test_hash_must_be_a_base64_sha1() -> None:
    doc = kos_doc()
    doc["content"][0]["attachment"]["hash"] = base64.b64encode(b"short").decode()
    with pytest.raises(ValueError, match="SHA-1"):
        back(doc, kos_entry())
    with pytest.raises(ValueError, match="SHA-1"):
        kos_doc(hash="abcd")


def test_fhir_client_document_with_offsets_and_display_author() -> None:
    """An ITI-65 DocumentReference written by a FHIR client: times with offsets, an author only
    by display, the entryUUID from the caller."""
    doc = copy.deepcopy(kos_doc())
    doc.pop("contained")
    doc["context"].pop("sourcePatientInfo")
    doc["author"] = [{"display": "Dr Marcus Wel"}, {"reference": "Practitioner/123"}]
    doc["content"][0]["attachment"]["creation"] = "2016-04-02T11:55:00.123+02:00"
    doc["context"]["period"] = {"start": "2016-04-01T23:48:00-05:00"}
    entry = back(doc, kos_entry())
    assert entry.creation_time == "20160402095500"
    assert entry.service_start == "20160402044800"
    assert entry.service_stop == ""
    assert entry.authors == (Author(person="^Dr Marcus Wel"),)
    assert entry.source_patient_id == ""
    assert entry.source_patient_info == ()
    assert entry.home_community_id == ""


# --------------------------------------------------------------------------------------------
# SubmissionSet <-> List


def submission_set(**changes: Any) -> SubmissionSet:
    fields: dict[str, Any] = {
        "entry_uuid": "urn:uuid:9d3c2b1a-1111-4e8f-9a77-0c6e5d4b3a21",
        "unique_id": "1.3.6.1.4.1.21367.201599.3.201604020955001",
        "source_id": "1.3.6.1.4.1.21367.13.20.6000",
        "patient_id": PATIENT_ID,
        "submission_time": "20160402095600",
        "content_type": Code("18748-4", LOINC_OID, "Diagnostic imaging study"),
        "authors": (Author(person="r77^Wel^Marcus^^^Dr^^^&1.3.6.1.4.1.21367.13.20.4000&ISO"),),
        "title": "CT chest for HIE",
        "comments": "RAD-68 submission",
        "intended_recipients": ("Some Hospital^^^^^^^^^1.2.3.9.1789.45|^Wel^Marcus^^^Dr^MD",),
    }
    fields.update(changes)
    return SubmissionSet(**fields)


def test_submission_set_to_list() -> None:
    lst = submissionset_to_list(
        submission_set(),
        patient="Patient/p1",
        entries=["DocumentReference/kos1", "DocumentReference/r1"],
    )
    fhir_valid(lst)
    assert lst["code"] == {
        "coding": [
            {
                "system": "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes",
                "code": "submissionset",
            }
        ]
    }
    assert lst["mode"] == "working"
    assert lst["status"] == "current"
    assert lst["identifier"] == [
        {
            "use": "usual",
            "system": RFC3986,
            "value": "urn:oid:1.3.6.1.4.1.21367.201599.3.201604020955001",
        },
        {
            "use": "official",
            "system": RFC3986,
            "value": "urn:uuid:9d3c2b1a-1111-4e8f-9a77-0c6e5d4b3a21",
        },
    ]
    sd = "https://profiles.ihe.net/ITI/MHD/StructureDefinition"
    assert lst["extension"] == [
        {
            "url": f"{sd}/ihe-designationType",
            "valueCodeableConcept": {
                "coding": [
                    {"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}
                ]
            },
        },
        {
            "url": f"{sd}/ihe-sourceId",
            "valueIdentifier": {"system": RFC3986, "value": "urn:oid:1.3.6.1.4.1.21367.13.20.6000"},
        },
        {
            "url": f"{sd}/ihe-intendedRecipient",
            "valueReference": {
                "display": "Some Hospital^^^^^^^^^1.2.3.9.1789.45|^Wel^Marcus^^^Dr^MD"
            },
        },
    ]
    assert lst["subject"] == {"reference": "Patient/p1"}
    assert lst["date"] == "2016-04-02T09:56:00Z"
    assert lst["title"] == "CT chest for HIE"
    assert lst["note"] == [{"text": "RAD-68 submission"}]
    assert lst["source"] == {"reference": "#author1"}
    assert contained(lst, "author1") == {
        "resourceType": "PractitionerRole",
        "id": "author1",
        "practitioner": {"reference": "#author1-person"},
    }
    assert lst["entry"] == [
        {"item": {"reference": "DocumentReference/kos1"}},
        {"item": {"reference": "DocumentReference/r1"}},
    ]


def test_submission_set_round_trip() -> None:
    ss = submission_set()
    lst = submissionset_to_list(ss, patient="Patient/p1", entries=["DocumentReference/kos1"])
    assert list_to_submissionset(lst, patient_id=PATIENT_ID, entry_uuid=ss.entry_uuid) == ss


def test_submission_set_with_institution_author_round_trips() -> None:
    ss = submission_set(
        authors=(Author(institutions=("Springfield Imaging^^^^^&1.2.7&ISO^^^^IMG1",)),),
        intended_recipients=(),
    )
    lst = submissionset_to_list(ss, patient="Patient/p1", entries=[])
    fhir_valid(lst)
    assert "entry" not in lst
    assert list_to_submissionset(lst, patient_id=PATIENT_ID, entry_uuid=ss.entry_uuid) == ss


def test_list_from_a_fhir_client() -> None:
    lst: dict[str, Any] = {
        "resourceType": "List",
        "extension": [
            {
                "url": "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-sourceId",
                "valueIdentifier": {"value": "urn:oid:1.2.3.4"},
            },
            {
                "url": "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-designationType",
                "valueCodeableConcept": {
                    "coding": [
                        {
                            "system": SCT,
                            "code": "225728007",
                            "display": "Accident and Emergency department",
                        }
                    ]
                },
            },
        ],
        "identifier": [{"use": "usual", "system": RFC3986, "value": "urn:oid:1.2.3.4.5"}],
        "status": "current",
        "mode": "working",
        "code": {
            "coding": [
                {
                    "system": "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes",
                    "code": "submissionset",
                }
            ]
        },
        "date": "2016-04-02T11:56:00+02:00",
        "entry": [{"item": {"reference": "urn:uuid:1"}}],
    }
    fhir_valid(lst)
    ss = list_to_submissionset(lst, patient_id=PATIENT_ID, entry_uuid="urn:uuid:abc")
    assert ss == SubmissionSet(
        entry_uuid="urn:uuid:abc",
        unique_id="1.2.3.4.5",
        source_id="1.2.3.4",
        patient_id=PATIENT_ID,
        submission_time="20160402095600",
        content_type=Code("225728007", SNOMED_OID, "Accident and Emergency department"),
        status=APPROVED,
    )


def test_list_missing_what_xds_requires() -> None:
    lst = submissionset_to_list(submission_set(), patient="Patient/p1", entries=[])
    for key in ("extension", "identifier", "date"):
        lst.pop(key)
    with pytest.raises(ValueError) as raised:
        list_to_submissionset(lst, patient_id=PATIENT_ID, entry_uuid="urn:uuid:abc")
    for element in ("uniqueId", "sourceId", "contentTypeCode", "submissionTime"):
        assert element in str(raised.value)


def test_folder_list_is_not_a_submission_set() -> None:
    lst = submissionset_to_list(submission_set(), patient="Patient/p1", entries=[])
    lst["code"]["coding"][0]["code"] = "folder"
    with pytest.raises(ValueError, match="submissionset"):
        list_to_submissionset(lst, patient_id=PATIENT_ID, entry_uuid="urn:uuid:abc")


# --------------------------------------------------------------------------------------------
# Coding schemes


SCHEMES = [
    (LOINC_OID, LOINC),
    (SNOMED_OID, SCT),
    (DCM_OID, DCM),
    (DCMUID_OID, DCMUID),
    (CONF_OID, "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"),
    ("2.16.840.1.113883.5.4", "http://terminology.hl7.org/CodeSystem/v3-ActCode"),
    (ROLE_OID, "http://terminology.hl7.org/CodeSystem/v3-RoleCode"),
    (IHE_FORMAT_OID, "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode"),
    ("2.16.840.1.113883.6.256", "http://www.radlex.org"),
    ("2.16.840.1.113883.6.8", "http://unitsofmeasure.org"),
    ("2.16.840.1.113883.6.3", "http://hl7.org/fhir/sid/icd-10"),
    ("2.16.840.1.113883.6.12", "http://www.ama-assn.org/go/cpt"),
    ("1.3.6.1.4.1.19376.1.2.6.1", "urn:oid:1.3.6.1.4.1.19376.1.2.6.1"),
    ("http://example.org/codes", "http://example.org/codes"),
    ("Connect-a-thon classCodes", "urn:pixelhub:xds:codingscheme:Connect-a-thon%20classCodes"),
]


@pytest.mark.parametrize(("scheme", "system"), SCHEMES)
def test_scheme_system_table_round_trips(scheme: str, system: str) -> None:
    assert scheme_to_system(scheme) == system
    assert system_to_scheme(system) == scheme


@pytest.mark.parametrize(
    ("name", "system"),
    [
        ("LOINC", LOINC),
        ("LN", LOINC),
        ("SNOMED CT", SCT),
        ("SCT", SCT),
        ("DCM", DCM),
        ("DCMUID", DCMUID),
        ("RadLex", "http://www.radlex.org"),
    ],
)
def test_scheme_names_give_the_system_and_come_back_as_oid(name: str, system: str) -> None:
    assert scheme_to_system(name) == system
    assert system_to_scheme(system).startswith(("1.", "2."))


def test_empty_scheme_and_system_are_errors() -> None:
    with pytest.raises(ValueError):
        scheme_to_system("")
    with pytest.raises(ValueError):
        system_to_scheme("")


# --------------------------------------------------------------------------------------------
# DTM


@pytest.mark.parametrize(
    ("dtm", "fhir"),
    [
        ("2016", "2016"),
        ("201604", "2016-04"),
        ("20160402", "2016-04-02"),
        ("20160402095500", "2016-04-02T09:55:00Z"),
        ("20000229235959", "2000-02-29T23:59:59Z"),
    ],
)
def test_dtm_round_trips_at_its_precision(dtm: str, fhir: str) -> None:
    assert dtm_to_fhir(dtm) == fhir
    assert fhir_to_dtm(fhir) == dtm


@pytest.mark.parametrize(
    ("dtm", "fhir"),
    [("2016040209", "2016-04-02T09:00:00Z"), ("201604020955", "2016-04-02T09:55:00Z")],
)
def test_dtm_to_the_hour_or_minute_gets_seconds(dtm: str, fhir: str) -> None:
    assert dtm_to_fhir(dtm) == fhir
    assert fhir_to_dtm(fhir) == dtm.ljust(14, "0")


@pytest.mark.parametrize(
    ("fhir", "dtm"),
    [
        ("2016-04-02T11:55:00+02:00", "20160402095500"),
        ("2016-04-01T23:30:00-05:00", "20160402043000"),
        ("2016-01-01T00:30:00+01:00", "20151231233000"),
        ("2016-04-02T09:55:00.999Z", "20160402095500"),
        ("2016-04-02T05:25:00+05:30", "20160401235500"),
        ("2016-04-02T09:55:00-00:00", "20160402095500"),
    ],
)
def test_fhir_offsets_are_converted_to_utc(fhir: str, dtm: str) -> None:
    assert fhir_to_dtm(fhir) == dtm


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "16",
        "20161",
        "2016-04-02",
        "20161302",
        "20160230",
        "2016040224",
        "201604020955001",
        "\uff12\uff10\uff11\uff16",  # full-width digits
    ],
)
def test_bad_dtm(bad: str) -> None:
    with pytest.raises(ValueError):
        dtm_to_fhir(bad)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "20160402",
        "2016-13",
        "2016-04-02T09:55:00",
        "2016-04-02T09:55Z",
        "2016-04-02 09:55:00Z",
        "2016-02-30T00:00:00Z",
        "\uff12\uff10\uff11\uff16",
    ],
)
def test_bad_fhir_datetime(bad: str) -> None:
    with pytest.raises(ValueError):
        fhir_to_dtm(bad)


# --------------------------------------------------------------------------------------------
# CX


def test_cx_round_trip() -> None:
    identifier = cx_to_identifier(PATIENT_ID)
    assert identifier == {"system": f"urn:oid:{AFFINITY}", "value": "IHEBLUE-2741"}
    assert identifier_to_cx(identifier) == PATIENT_ID


def test_cx_namespace_is_accepted_and_dropped() -> None:
    assert cx_to_identifier("77^^^NS&1.2.3&ISO") == {"system": "urn:oid:1.2.3", "value": "77"}


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "77",
        "77^^^",
        "^^^&1.2.3&ISO",
        "77^^^HOSP_A",
        "77^^^&1.2.3",
        "77^^^&1.2.3&DNS",
        "77^^^&not.an.oid&ISO",
        "77^^^&1.2.3&ISO&x",
        "77^1^^&1.2.3&ISO",
        "77^^^&1.2.3&ISO^PI",
    ],
)
def test_cx_errors(bad: str) -> None:
    with pytest.raises(ValueError):
        cx_to_identifier(bad)


@pytest.mark.parametrize(
    "bad",
    [
        {"system": "http://hospital.example.org/mrn", "value": "77"},
        {"system": "urn:oid:not-an-oid", "value": "77"},
        {"system": "urn:oid:1.2.3", "value": ""},
        {"system": "urn:oid:1.2.3", "value": "7^7"},
        {"value": "77"},
    ],
)
def test_identifier_to_cx_errors(bad: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        identifier_to_cx(bad)
