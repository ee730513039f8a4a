"""The same document by either route (issue 11 item 4): one sent by MHD ITI-65 (a FHIR
transaction with the SubmissionSet List, the DocumentReference and the Binary) is found by ITI-18
and retrieved by ITI-43; one sent by ITI-41 is found by MHD ITI-66 (List) and ITI-67
(DocumentReference, with the MADO study, accession and modality searches)."""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from adapters.xds._ebrim import parse_submit_objects
from adapters.xds._mhd import COMPREHENSIVE, MINIMAL
from adapters.xds._soap import Attachment
from mappings.xds_to_documentreference import (
    documententry_to_documentreference,
    submissionset_to_list,
)
from tests.e2e.support import assert_valid_r4
from tests.integration.dicomweb.conftest import WebHub
from tests.integration.xds.conftest import AFFINITY, new_submission, repository_id
from tests.integration.xds.test_xds_exchange import (
    APPROVED,
    FIND_DOCUMENTS,
    RIM,
    RS,
    SUCCESS,
    XDSB,
    patient,
    provide,
    read_mtom,
    retrieve,
    stored_query,
)

DCM = "http://dicom.nema.org/resources/ontology/DCM"


def test_a_document_sent_by_mhd_is_found_and_retrieved_by_xds(
    xds_hub: WebHub, tmp_path: Path
) -> None:
    submission = new_submission()
    who = patient(xds_hub, submission.patient_mrn)
    parsed = parse_submit_objects(submission.body)
    entry = replace(parsed.entries[0], entry_uuid=f"urn:uuid:{uuid.uuid4()}")
    binary_url, doc_url = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    doc = documententry_to_documentreference(entry, patient=who, content_url=binary_url)
    ss = replace(parsed.submission_set, entry_uuid=f"urn:uuid:{uuid.uuid4()}")
    bundle = {
        "resourceType": "Bundle",
        "meta": {"profile": [COMPREHENSIVE]},  # held to the MHD profile (adapters/xds/_mhd.py)
        "type": "transaction",
        "entry": [
            {
                "fullUrl": binary_url,
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "application/dicom",
                    "data": base64.b64encode(submission.document).decode(),
                },
                "request": {"method": "POST", "url": "Binary"},
            },
            {
                "fullUrl": doc_url,
                "resource": doc,
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": submissionset_to_list(ss, patient=who, entries=[doc_url]),
                "request": {"method": "POST", "url": "List"},
            },
        ],
    }
    with xds_hub.http() as c:
        r = c.post("/fhir", json=bundle)
        assert r.status_code == 200, r.text
        stored = c.get("/fhir/DocumentReference", params={"patient": who}).json()["entry"][0][
            "resource"
        ]
    assert stored["content"][0]["attachment"]["url"].startswith("Binary/")  # fullUrl resolved
    found = stored_query(
        xds_hub,
        FIND_DOCUMENTS,
        {
            "$XDSDocumentEntryPatientId": f"'{submission.patient_mrn}^^^&amp;{AFFINITY}&amp;ISO'",
            "$XDSDocumentEntryStatus": f"('{APPROVED}')",
        },
    )
    assert found.get("status") == SUCCESS
    [found_entry] = found.findall(f"{{{RIM}}}RegistryObjectList/{{{RIM}}}ExtrinsicObject")
    assert found_entry.get("id") == entry.entry_uuid
    answer = read_mtom(
        retrieve(xds_hub, repository_id(xds_hub), submission.unique_id), str(tmp_path)
    )
    assert answer.body.find(f"{{{RS}}}RegistryResponse").get("status") == SUCCESS
    content = answer.content_of(answer.body.find(f"{{{XDSB}}}DocumentResponse/{{{XDSB}}}Document"))
    assert isinstance(content, Attachment)
    assert hashlib.sha1(content.read()).hexdigest() == hashlib.sha1(submission.document).hexdigest()


def test_an_iti65_bundle_that_breaks_its_profile_is_refused_whole(xds_hub: WebHub) -> None:
    """ITI-65 with ``meta.profile`` Minimal ProvideBundle but no SubmissionSet and a document
    without masterIdentifier: 422 naming both, and nothing written (no Binary either)."""
    submission = new_submission()
    who = patient(xds_hub, submission.patient_mrn)
    entry = parse_submit_objects(submission.body).entries[0]
    binary_url = f"urn:uuid:{uuid.uuid4()}"
    doc = documententry_to_documentreference(entry, patient=who, content_url=binary_url)
    del doc["masterIdentifier"]
    marker = f"not-stored-{uuid.uuid4()}"
    bundle = {
        "resourceType": "Bundle",
        "meta": {"profile": [MINIMAL]},
        "type": "transaction",
        "entry": [
            {
                "fullUrl": binary_url,
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "text/plain",
                    "data": base64.b64encode(marker.encode()).decode(),
                },
                "request": {"method": "POST", "url": "Binary"},
            },
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": doc,
                "request": {"method": "POST", "url": "DocumentReference"},
            },
        ],
    }
    with xds_hub.http() as c:
        r = c.post("/fhir", json=bundle)
        assert r.status_code == 422, r.text
        issues = r.json()["issue"]
        assert {tuple(i["expression"]) for i in issues} == {
            ("Bundle.entry",),
            ("Bundle.entry[1].resource.masterIdentifier",),
        }
        assert all(i["code"] == "invariant" for i in issues)
        assert c.get("/fhir/DocumentReference", params={"patient": who}).json().get("total") == 0


def mhd_search(hub: WebHub, rtype: str, **params: str) -> list[dict[str, Any]]:
    with hub.http() as c:
        r = c.get(f"/fhir/{rtype}", params=params)
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


def test_a_document_sent_by_xds_is_found_by_mhd(xds_hub: WebHub) -> None:
    submission = new_submission()
    who = patient(xds_hub, submission.patient_mrn)
    assert provide(xds_hub, submission).get("status") == SUCCESS
    # ITI-66: the submission set
    [submission_set] = mhd_search(
        xds_hub,
        "List",
        patient=who,
        code="https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes|submissionset",
    )
    assert_valid_r4(submission_set)
    # ITI-67 with the MADO parameters: study, accession, modality
    [doc] = mhd_search(xds_hub, "DocumentReference", patient=who)
    study = next(
        r["identifier"]["value"]
        for r in doc["context"]["related"]
        if r.get("identifier", {}).get("system") == "urn:dicom:uid"
    )
    assert [
        d["id"] for d in mhd_search(xds_hub, "DocumentReference", patient=who, modality=f"{DCM}|CT")
    ] == [doc["id"]]
    assert mhd_search(xds_hub, "DocumentReference", patient=who, modality=f"{DCM}|MR") == []
    by_study = mhd_search(
        xds_hub,
        "DocumentReference",
        patient=who,
        **{"related:identifier": f"urn:dicom:uid|{study}"},
    )
    assert [d["id"] for d in by_study] == [doc["id"]]
    assert submission_set["entry"][0]["item"]["reference"] == f"DocumentReference/{doc['id']}"
