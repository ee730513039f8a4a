"""IHE XDS.b / XDS-I.b against a real ``pixelhub serve`` (issue 11): ITI-41 Provide and Register
of a KOS manifest over MTOM, found by ITI-18 and by MHD (ITI-67), retrieved by ITI-43 and MHD
(ITI-68) byte for byte; the XDS errors and SOAP faults of bad submissions, nothing half-stored."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from lxml import etree

from adapters.xds._soap import Attachment, SoapRequest, read_request
from tests.e2e.support import assert_valid_r4
from tests.integration.dicomweb.conftest import WebHub
from tests.integration.xds.conftest import (
    AFFINITY,
    ITI18,
    ITI43,
    Submission,
    new_submission,
    repository_id,
)

RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
QUERY = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
XDSB = "urn:ihe:iti:xds-b:2007"
SOAP = "http://www.w3.org/2003/05/soap-envelope"
SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
GET_DOCUMENTS = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"
APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"


def patient(hub: WebHub, mrn: str) -> str:
    with hub.http() as c:
        r = c.post("/fhir/Patient", json={
            "resourceType": "Patient",
            "identifier": [{"system": f"urn:oid:{AFFINITY}", "value": mrn}],
        })  # fmt: skip
    assert r.status_code == 201, r.text
    return f"Patient/{r.json()['id']}"


def post(
    hub: WebHub, path: str, content_type: str, body: bytes, token: str | None = None
) -> httpx.Response:
    with hub.http(token) if token else hub.http() as c:
        return c.post(path, content=body, headers={"Content-Type": content_type})


def soap_body(response: httpx.Response) -> etree._Element:
    assert response.headers["content-type"].startswith("application/soap+xml"), response.text
    root = etree.fromstring(response.content)
    return root.find(f"{{{SOAP}}}Body")[0]


def provide(hub: WebHub, submission: Submission, document: bytes | None = None) -> etree._Element:
    content_type, body = submission.mtom(document=document)
    r = post(hub, "/xds/repository", content_type, body)
    assert r.status_code == 200, r.text
    return soap_body(r)


def errors_of(response: etree._Element) -> list[str]:
    return [e.get("errorCode", "") for e in response.iter(f"{{{RS}}}RegistryError")]


def documents_of(hub: WebHub, mrn: str) -> list[dict[str, Any]]:
    with hub.http() as c:
        bundle = c.get("/fhir/DocumentReference",
                       params={"patient.identifier": f"urn:oid:{AFFINITY}|{mrn}"}).json()  # fmt: skip
    return [e["resource"] for e in bundle.get("entry", [])]


def stored_query_xml(query_id: str, slots: dict[str, str], leaf: bool = True) -> bytes:
    """The SOAP envelope of an ITI-18 AdhocQueryRequest (slot values as written in XML)."""
    slot_xml = "".join(
        f'<rim:Slot name="{name}"><rim:ValueList><rim:Value>{value}</rim:Value></rim:ValueList>'
        "</rim:Slot>"
        for name, value in slots.items()
    )
    return_type = "LeafClass" if leaf else "ObjectRef"
    request = (
        f'<query:AdhocQueryRequest xmlns:query="{QUERY}" xmlns:rim="{RIM}">'
        f'<query:ResponseOption returnComposedObjects="true" returnType="{return_type}"/>'
        f'<rim:AdhocQuery id="{query_id}">{slot_xml}</rim:AdhocQuery></query:AdhocQueryRequest>'
    )
    return (
        f'<env:Envelope xmlns:env="{SOAP}" xmlns:wsa="http://www.w3.org/2005/08/addressing">'
        f"<env:Header><wsa:Action>{ITI18}</wsa:Action><wsa:MessageID>urn:uuid:{uuid.uuid4()}"
        f"</wsa:MessageID></env:Header><env:Body>{request}</env:Body></env:Envelope>"
    ).encode()


def stored_query(
    hub: WebHub, query_id: str, slots: dict[str, str], leaf: bool = True
) -> etree._Element:
    envelope = stored_query_xml(query_id, slots, leaf)
    r = post(hub, "/xds/registry", "application/soap+xml; charset=UTF-8", envelope)
    assert r.status_code == 200, r.text
    return soap_body(r)


def retrieve(hub: WebHub, repository: str, unique_id: str) -> httpx.Response:
    envelope = (
        f'<env:Envelope xmlns:env="{SOAP}" xmlns:wsa="http://www.w3.org/2005/08/addressing">'
        f"<env:Header><wsa:Action>{ITI43}</wsa:Action><wsa:MessageID>urn:uuid:{uuid.uuid4()}"
        f'</wsa:MessageID></env:Header><env:Body><xdsb:RetrieveDocumentSetRequest xmlns:xdsb="{XDSB}">'
        f"<xdsb:DocumentRequest><xdsb:RepositoryUniqueId>{repository}</xdsb:RepositoryUniqueId>"
        f"<xdsb:DocumentUniqueId>{unique_id}</xdsb:DocumentUniqueId></xdsb:DocumentRequest>"
        f"</xdsb:RetrieveDocumentSetRequest></env:Body></env:Envelope>"
    ).encode()
    return post(hub, "/xds/repository", "application/soap+xml", envelope)


async def _chunks(data: bytes) -> Any:
    yield data


def read_mtom(response: httpx.Response, tmp: str) -> SoapRequest:
    return asyncio.run(read_request(response.headers["content-type"], _chunks(response.content),
                                    spool_dir=tmp, limit=1 << 30))  # fmt: skip


# --------------------------------------------------------------------------- the happy path


def test_a_kos_manifest_goes_in_by_iti41_and_out_by_every_route(
    xds_hub: WebHub, tmp_path: Any
) -> None:
    submission = new_submission()
    who = patient(xds_hub, submission.patient_mrn)
    response = provide(xds_hub, submission)
    assert response.get("status") == SUCCESS, etree.tostring(response)
    # MHD ITI-67: the DocumentReference, MADO-shaped
    [doc] = documents_of(xds_hub, submission.patient_mrn)
    assert_valid_r4(doc)
    assert doc["subject"]["reference"] == who
    assert doc["masterIdentifier"]["value"] == f"urn:oid:{submission.unique_id}"
    assert doc["content"][0]["format"]["code"] == "1.2.840.10008.5.1.4.1.1.88.59"
    assert doc["content"][0]["attachment"]["contentType"] == "application/dicom"
    related = [r.get("identifier", {}) for r in doc["context"]["related"]]
    assert any(i.get("system") == "urn:dicom:uid" for i in related)
    assert any(i.get("value") == "ACC-2024-0042" for i in related)
    # MHD ITI-68: the Binary, byte for byte
    with xds_hub.http() as c:
        binary = c.get(f"/fhir/{doc['content'][0]['attachment']['url']}")
    assert binary.content == submission.document
    # ITI-18 FindDocuments: the entry, LeafClass
    found = stored_query(xds_hub, FIND_DOCUMENTS, {
        "$XDSDocumentEntryPatientId": f"'{submission.patient_mrn}^^^&amp;{AFFINITY}&amp;ISO'",
        "$XDSDocumentEntryStatus": f"('{APPROVED}')",
    })  # fmt: skip
    assert found.get("status") == SUCCESS, etree.tostring(found)
    objects = found.findall(f"{{{RIM}}}RegistryObjectList/{{{RIM}}}ExtrinsicObject")
    assert len(objects) == 1
    unique = [e.get("value") for e in objects[0].findall(f"{{{RIM}}}ExternalIdentifier")]
    assert submission.unique_id in unique
    # ITI-43: the document, MTOM, byte for byte
    answer = retrieve(xds_hub, repository_id(xds_hub), submission.unique_id)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("multipart/related")
    soap = read_mtom(answer, str(tmp_path))
    status = soap.body.find(f"{{{RS}}}RegistryResponse").get("status")
    assert status == SUCCESS
    item = soap.body.find(f"{{{XDSB}}}DocumentResponse")
    content = soap.content_of(item.find(f"{{{XDSB}}}Document"))
    assert isinstance(content, Attachment) and content.read() == submission.document
    assert item.findtext(f"{{{XDSB}}}mimeType") == "application/dicom"


def test_get_documents_by_unique_id_and_object_refs(xds_hub: WebHub) -> None:
    submission = new_submission()
    patient(xds_hub, submission.patient_mrn)
    assert provide(xds_hub, submission).get("status") == SUCCESS
    found = stored_query(xds_hub, GET_DOCUMENTS,
                         {"$XDSDocumentEntryUniqueId": f"('{submission.unique_id}')"})  # fmt: skip
    assert len(found.findall(f"{{{RIM}}}RegistryObjectList/{{{RIM}}}ExtrinsicObject")) == 1
    refs = stored_query(xds_hub, FIND_DOCUMENTS, {
        "$XDSDocumentEntryPatientId": f"'{submission.patient_mrn}^^^&amp;{AFFINITY}&amp;ISO'",
        "$XDSDocumentEntryStatus": f"('{APPROVED}')",
    }, leaf=False)  # fmt: skip
    assert len(refs.findall(f"{{{RIM}}}RegistryObjectList/{{{RIM}}}ObjectRef")) == 1


# --------------------------------------------------------------------------- errors


def test_an_unknown_patient_is_refused_and_nothing_stored(xds_hub: WebHub) -> None:
    submission = new_submission()  # no Patient with this id
    response = provide(xds_hub, submission)
    assert response.get("status") == FAILURE
    assert errors_of(response) == ["XDSUnknownPatientId"]
    assert documents_of(xds_hub, submission.patient_mrn) == []


def test_a_hash_or_size_that_does_not_match_is_refused(xds_hub: WebHub) -> None:
    submission = new_submission()
    patient(xds_hub, submission.patient_mrn)
    response = provide(xds_hub, submission, document=submission.document + b"\x00\x00")
    assert errors_of(response) == ["XDSRepositoryMetadataError", "XDSRepositoryMetadataError"]
    assert documents_of(xds_hub, submission.patient_mrn) == []


def test_a_unique_id_registered_twice_is_refused(xds_hub: WebHub) -> None:
    submission = new_submission()
    patient(xds_hub, submission.patient_mrn)
    assert provide(xds_hub, submission).get("status") == SUCCESS
    again = provide(xds_hub, submission)
    assert errors_of(again) == ["XDSDuplicateUniqueIdInRegistry"]
    assert len(documents_of(xds_hub, submission.patient_mrn)) == 1


def test_invalid_metadata_is_a_registry_metadata_error(xds_hub: WebHub) -> None:
    submission = new_submission()
    patient(xds_hub, submission.patient_mrn)
    slot = submission.slot("creationTime").getparent().getparent()
    slot.getparent().remove(slot)
    response = provide(xds_hub, submission)
    assert "XDSRegistryMetadataError" in errors_of(response)
    assert documents_of(xds_hub, submission.patient_mrn) == []


def test_a_document_without_its_part_is_missing(xds_hub: WebHub) -> None:
    submission = new_submission()
    patient(xds_hub, submission.patient_mrn)
    document = submission.body.find(f"{{{XDSB}}}Document")
    submission.body.remove(document)
    response = provide(xds_hub, submission)
    assert errors_of(response) == ["XDSMissingDocument"]


def test_retrieving_an_unknown_document_or_repository_fails(xds_hub: WebHub) -> None:
    answer = soap_body(retrieve(xds_hub, repository_id(xds_hub), "2.25.1"))
    assert errors_of(answer.find(f"{{{RS}}}RegistryResponse")) == ["XDSMissingDocument"]
    answer = soap_body(retrieve(xds_hub, "2.999.404", "2.25.1"))
    assert errors_of(answer.find(f"{{{RS}}}RegistryResponse")) == ["XDSUnknownRepositoryId"]


def test_an_unknown_stored_query_fails(xds_hub: WebHub) -> None:
    found = stored_query(xds_hub, "urn:uuid:00000000-0000-0000-0000-000000000000", {})
    assert found.get("status") == FAILURE
    assert errors_of(found) == ["XDSUnknownStoredQuery"]


def fault_of(response: httpx.Response) -> tuple[str, ...]:
    root = etree.fromstring(response.content)
    return tuple(v.text or "" for v in root.iter(f"{{{SOAP}}}Value"))


def test_the_wrong_action_is_a_fault(xds_hub: WebHub) -> None:
    submission = new_submission()
    content_type, body = submission.mtom(action=ITI18)
    r = post(xds_hub, "/xds/repository", content_type, body)
    assert r.status_code == 400
    assert fault_of(r) == ("env:Sender", "wsa:ActionNotSupported")


def test_malformed_soap_is_a_sender_fault(xds_hub: WebHub) -> None:
    for content_type, body in (
        ("application/soap+xml", b"<broken"),
        ("text/plain", b"hello"),
        ('multipart/related; boundary=x; type="application/xop+xml"', b"--x\r\n\r\n<a/>"),
    ):
        r = post(xds_hub, "/xds/repository", content_type, body)
        assert r.status_code == 400, r.text
        assert fault_of(r)[0] == "env:Sender"
    assert not any((xds_hub.data_dir / "xds-spool").glob("*"))


def test_without_a_token_nothing_is_answered(xds_hub: WebHub) -> None:
    submission = new_submission()
    content_type, body = submission.mtom()
    with httpx.Client(base_url=xds_hub.url) as c:
        r = c.post("/xds/repository", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 401
    reader = xds_hub.token("user/*.rs")
    patient(xds_hub, submission.patient_mrn)
    r = post(xds_hub, "/xds/repository", content_type, body, token=reader)
    assert r.status_code == 403
    assert documents_of(xds_hub, submission.patient_mrn) == []


def test_each_transaction_is_audited(xds_hub: WebHub) -> None:
    submission = new_submission()
    patient(xds_hub, submission.patient_mrn)
    assert provide(xds_hub, submission).get("status") == SUCCESS

    def iti41(event: dict[str, Any]) -> bool:
        return any(s.get("code") == "ITI-41" for s in event.get("subtype", []))

    assert xds_hub.audit("110107", iti41)
