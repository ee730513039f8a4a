"""IHE RAD-69 Retrieve Imaging Document Set (RAD TF-3 4.69) against a real ``pixelhub serve``:
CT instances stored with STOW-RS come back by RAD-69 byte for byte in an MTOM answer (read with
the hub's own MTOM reader, parsed by dcmtk's ``dcmdump``); the per-document errors (transfer
syntax not stored, unknown instance, wrong study or series, wrong repository), the FHIR read policy
(a token of another patient gets nothing), the SOAP faults and the audit record."""

from __future__ import annotations

import asyncio
import io
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from lxml import etree
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from adapters.xds._soap import Attachment, SoapRequest, read_request
from tests.integration.dicomweb.conftest import DICOM_MULTIPART, WebHub
from tests.integration.xds.conftest import ITI43, repository_id

RAD69 = "urn:ihe:rad:2009:RetrieveImagingDocumentSet"
IHERAD = "urn:ihe:rad:xdsi-b:2009"
XDSB = "urn:ihe:iti:xds-b:2007"
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
SOAP = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
PARTIAL = "urn:ihe:iti:2007:ResponseStatusType:PartialSuccess"
IMPLICIT_LE = "1.2.840.10008.1.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
ANY_SYNTAX = 'multipart/related; type="application/dicom"; transfer-syntax=*'


@dataclass(frozen=True)
class Instance:
    study: str
    series: str
    sop: str
    data: bytes  # the Part 10 bytes sent with STOW-RS


@dataclass(frozen=True)
class Loaded:
    a: list[Instance]  # patient A: two series of one study (2 + 1 instances)
    b: Instance  # patient B: one instance
    patient_a: str  # Patient ids (FHIR) of the two ImagingStudy subjects
    patient_b: str
    repository: str


def ct(
    patient_id: str, study: str, series: str, number: int, side: int = 4, *,
    issuer: str | None = None, body_part: str | None = None, accession: str | None = None,
) -> Instance:  # fmt: skip
    """A CT image (``side`` x ``side``, 16 bits), Explicit VR Little Endian, as Part 10 bytes;
    ``issuer`` is the Issuer of Patient ID, ``body_part`` the Body Part Examined."""
    sop = generate_uid()
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.PatientID = patient_id
    if issuer:
        ds.IssuerOfPatientID = issuer
    if body_part:
        ds.BodyPartExamined = body_part
    ds.PatientName = f"Rad69^{patient_id}"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyDate = "20240315"
    ds.StudyTime = "101500"
    ds.AccessionNumber = accession or f"ACC{number}{uuid.uuid4().hex[:6]}"
    ds.StudyID = "1"
    ds.ReferringPhysicianName = ""
    ds.Modality = "CT"
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = side
    ds.Columns = side
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.KVP = 120
    ds.PixelData = (np.arange(side * side, dtype="<u2") * (number + 1)).tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    return Instance(study, series, sop, out.getvalue())


def stow(hub: WebHub, instances: list[Instance]) -> None:
    boundary = "Rad69TestBoundary"
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + i.data + b"\r\n"
            for i in instances
        )
        + f"--{boundary}--\r\n".encode()
    )
    with hub.http() as c:
        r = c.post(
            "/dicomweb/studies",
            content=body,
            headers={"Content-Type": DICOM_MULTIPART.format(boundary)},
        )
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def loaded(xds_hub: WebHub) -> Loaded:
    tag = uuid.uuid4().hex[:8]
    study_a, study_b = generate_uid(), generate_uid()
    series_a1, series_a2 = generate_uid(), generate_uid()
    a = [
        ct(f"RAD69-A-{tag}", study_a, series_a1, 1),
        ct(f"RAD69-A-{tag}", study_a, series_a1, 2),
        ct(f"RAD69-A-{tag}", study_a, series_a2, 3),
    ]
    b = ct(f"RAD69-B-{tag}", study_b, generate_uid(), 4)
    stow(xds_hub, [*a, b])
    # the ImagingStudy resources the access policy reads (written by the aggregator)
    subject_a = xds_hub.study(study_a)["subject"]["reference"]
    subject_b = xds_hub.study(study_b)["subject"]["reference"]
    assert subject_a != subject_b
    return Loaded(
        a,
        b,
        subject_a.split("/")[1],
        subject_b.split("/")[1],
        repository_id(xds_hub),
    )


# --------------------------------------------------------------------------- helpers


def request_body(
    documents: list[tuple[str, str, str, str]], syntaxes: list[str], home: str | None = None
) -> str:
    """A RetrieveImagingDocumentSetRequest for (study, series, repository, SOP) tuples."""
    studies: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for study, series, repository, sop in documents:
        studies.setdefault(study, {}).setdefault(series, []).append((repository, sop))
    xml = f'<iherad:RetrieveImagingDocumentSetRequest xmlns:iherad="{IHERAD}" xmlns:xdsb="{XDSB}">'
    for study, series_map in studies.items():
        xml += f'<iherad:StudyRequest studyInstanceUID="{study}">'
        for series, items in series_map.items():
            xml += f'<iherad:SeriesRequest seriesInstanceUID="{series}">'
            for repository, sop in items:
                xml += "<xdsb:DocumentRequest>"
                if home:
                    xml += f"<xdsb:HomeCommunityId>{home}</xdsb:HomeCommunityId>"
                xml += (
                    f"<xdsb:RepositoryUniqueId>{repository}</xdsb:RepositoryUniqueId>"
                    f"<xdsb:DocumentUniqueId>{sop}</xdsb:DocumentUniqueId></xdsb:DocumentRequest>"
                )
            xml += "</iherad:SeriesRequest>"
        xml += "</iherad:StudyRequest>"
    if syntaxes:
        xml += "<iherad:TransferSyntaxUIDList>"
        xml += "".join(
            f"<iherad:TransferSyntaxUID>{s}</iherad:TransferSyntaxUID>" for s in syntaxes
        )
        xml += "</iherad:TransferSyntaxUIDList>"
    return xml + "</iherad:RetrieveImagingDocumentSetRequest>"


def post_soap(
    hub: WebHub, body: str, *, action: str = RAD69, path: str = "/xds/imaging",
    token: str | None = None,
) -> httpx.Response:  # fmt: skip
    envelope = (
        f'<env:Envelope xmlns:env="{SOAP}" xmlns:wsa="{WSA}"><env:Header>'
        f'<wsa:Action env:mustUnderstand="true">{action}</wsa:Action>'
        f"<wsa:MessageID>urn:uuid:{uuid.uuid4()}</wsa:MessageID></env:Header>"
        f"<env:Body>{body}</env:Body></env:Envelope>"
    ).encode()
    with hub.http(token) if token else hub.http() as c:
        return c.post(path, content=envelope, headers={"Content-Type": "application/soap+xml"})


def rad69(
    hub: WebHub, loaded: Loaded, instances: list[Instance],
    syntaxes: tuple[str, ...] = (ExplicitVRLittleEndian,), token: str | None = None,
) -> httpx.Response:  # fmt: skip
    documents = [(i.study, i.series, loaded.repository, i.sop) for i in instances]
    return post_soap(hub, request_body(documents, list(syntaxes)), token=token)


def stored_bytes(hub: WebHub, instance: Instance) -> bytes:
    """The instance as stored: WADO-RS with ``transfer-syntax=*`` (no transcoding)."""
    path = f"/dicomweb/studies/{instance.study}/series/{instance.series}/instances/{instance.sop}"
    with hub.http() as c:
        r = c.get(path, headers={"Accept": ANY_SYNTAX})
    assert r.status_code == 200, r.text
    boundary = r.headers["content-type"].split("boundary=")[1].split(";")[0].strip('"')
    [part] = [p for p in r.content.split(f"--{boundary}".encode()) if b"\r\n\r\n" in p]
    return part.split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n")


def data_set(part10: bytes) -> bytes:
    """The data set of Part 10 bytes (PS3.10 7.1: preamble, DICM, then the File Meta
    Information whose first element, (0002,0000) UL, gives the rest of its length)."""
    assert part10[128:132] == b"DICM" and part10[132:136] == b"\x02\x00\x00\x00"
    return part10[144 + int.from_bytes(part10[140:144], "little") :]


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def read_answer(response: httpx.Response, tmp: Path) -> SoapRequest:
    """The SOAP answer, MTOM or plain, read by the hub's own reader (``test_xds_exchange``)."""
    assert response.status_code == 200, response.text
    return asyncio.run(
        read_request(
            response.headers["content-type"], _chunks(response.content),
            spool_dir=str(tmp), limit=1 << 30,
        )
    )  # fmt: skip


def status_of(answer: SoapRequest) -> str:
    registry = answer.body.find(f"{{{RS}}}RegistryResponse")
    assert registry is not None, etree.tostring(answer.body)
    return str(registry.get("status"))


def errors_of(answer: SoapRequest) -> list[tuple[str, str]]:
    return [
        (e.get("errorCode", ""), e.get("location", ""))
        for e in answer.body.iter(f"{{{RS}}}RegistryError")
    ]


def documents_of(answer: SoapRequest) -> dict[str, bytes]:
    """SOP Instance UID -> the returned bytes."""
    out: dict[str, bytes] = {}
    for item in answer.body.findall(f"{{{XDSB}}}DocumentResponse"):
        assert item.findtext(f"{{{XDSB}}}mimeType") == "application/dicom"
        holder = item.find(f"{{{XDSB}}}Document")
        assert holder is not None
        content = answer.content_of(holder)
        assert isinstance(content, Attachment)  # an MTOM part, not inline base64
        out[str(item.findtext(f"{{{XDSB}}}DocumentUniqueId"))] = content.read()
    return out


# --------------------------------------------------------------------------- retrieval


def test_instances_come_back_byte_for_byte_in_an_mtom_answer(
    xds_hub: WebHub, loaded: Loaded, tmp_path: Path
) -> None:
    wanted = [loaded.a[0], loaded.a[2]]  # two series of study A
    response = rad69(xds_hub, loaded, wanted, (IMPLICIT_LE, ExplicitVRLittleEndian))
    assert response.headers["content-type"].startswith("multipart/related")
    assert 'type="application/xop+xml"' in response.headers["content-type"]
    answer = read_answer(response, tmp_path)
    assert answer.action == f"{ITI43}Response"
    assert status_of(answer) == SUCCESS and errors_of(answer) == []
    returned = documents_of(answer)
    assert set(returned) == {i.sop for i in wanted}
    for instance in wanted:
        # the bytes the hub stored (it writes its own File Meta Information), as WADO-RS gives
        # them untranscoded; their data set is the one sent with STOW-RS, byte for byte
        assert returned[instance.sop] == stored_bytes(xds_hub, instance)
        assert data_set(returned[instance.sop]) == data_set(instance.data)
    for item in answer.body.findall(f"{{{XDSB}}}DocumentResponse"):
        assert item.findtext(f"{{{XDSB}}}RepositoryUniqueId") == loaded.repository
    # dcmtk parses what came back
    path = tmp_path / "returned.dcm"
    path.write_bytes(returned[loaded.a[0].sop])
    dump = subprocess.run(
        ["dcmdump", "+P", "0002,0010", "+P", "0008,0018", "+P", "0020,000d", str(path)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert "LittleEndianExplicit" in dump.stdout, dump.stdout
    assert loaded.a[0].sop in dump.stdout and loaded.a[0].study in dump.stdout
    assert dump.stderr == ""


def test_the_home_community_id_is_echoed(xds_hub: WebHub, loaded: Loaded, tmp_path: Path) -> None:
    import json

    community = json.loads((xds_hub.data_dir / "xds-ids.json").read_text())["community"]
    one = loaded.a[1]
    body = request_body(
        [(one.study, one.series, loaded.repository, one.sop)], [ExplicitVRLittleEndian], community
    )
    answer = read_answer(post_soap(xds_hub, body), tmp_path)
    assert status_of(answer) == SUCCESS
    item = answer.body.find(f"{{{XDSB}}}DocumentResponse")
    assert item is not None and item.findtext(f"{{{XDSB}}}HomeCommunityId") == community
    # another community is not this Imaging Document Source's
    other = request_body(
        [(one.study, one.series, loaded.repository, one.sop)], [ExplicitVRLittleEndian],
        "urn:oid:2.999.77",
    )  # fmt: skip
    answer = read_answer(post_soap(xds_hub, other), tmp_path)
    assert status_of(answer) == FAILURE
    assert errors_of(answer) == [("XDSUnknownCommunity", one.sop)]


# --------------------------------------------------------------------------- per-document errors


def test_a_transfer_syntax_not_stored_is_an_error_for_that_document(
    xds_hub: WebHub, loaded: Loaded, tmp_path: Path
) -> None:
    one = loaded.a[0]
    answer = read_answer(rad69(xds_hub, loaded, [one], (JPEG_BASELINE, IMPLICIT_LE)), tmp_path)
    assert status_of(answer) == FAILURE
    assert errors_of(answer) == [("urn:dicom:wado:0007", one.sop)]
    assert documents_of(answer) == {}


def test_an_unknown_instance_is_missing_and_the_others_are_returned(
    xds_hub: WebHub, loaded: Loaded, tmp_path: Path
) -> None:
    good = loaded.a[1]
    unknown = Instance(good.study, good.series, generate_uid(), b"")
    answer = read_answer(rad69(xds_hub, loaded, [good, unknown]), tmp_path)
    assert status_of(answer) == PARTIAL
    assert errors_of(answer) == [("XDSMissingDocument", unknown.sop)]
    assert documents_of(answer) == {good.sop: stored_bytes(xds_hub, good)}


def test_an_instance_asked_under_another_study_or_series_is_not_returned(
    xds_hub: WebHub, loaded: Loaded, tmp_path: Path
) -> None:
    one = loaded.a[0]
    wrong_study = Instance(loaded.b.study, one.series, one.sop, b"")
    wrong_series = Instance(one.study, loaded.a[2].series, one.sop, b"")
    for asked in (wrong_study, wrong_series):
        answer = read_answer(rad69(xds_hub, loaded, [asked]), tmp_path)
        assert status_of(answer) == FAILURE
        assert errors_of(answer) == [("XDSMissingDocument", one.sop)]
        assert documents_of(answer) == {}


def test_another_repository_is_unknown(xds_hub: WebHub, loaded: Loaded, tmp_path: Path) -> None:
    one, other = loaded.a[0], loaded.a[1]
    body = request_body(
        [(one.study, one.series, "2.999.404", one.sop),
         (other.study, other.series, loaded.repository, other.sop)],
        [ExplicitVRLittleEndian],
    )  # fmt: skip
    answer = read_answer(post_soap(xds_hub, body), tmp_path)
    assert status_of(answer) == PARTIAL
    assert errors_of(answer) == [("XDSUnknownRepositoryId", one.sop)]
    assert set(documents_of(answer)) == {other.sop}


# --------------------------------------------------------------------------- access


def test_a_token_of_another_patient_gets_nothing(
    xds_hub: WebHub, loaded: Loaded, tmp_path: Path
) -> None:
    theirs = xds_hub.token("patient/*.rs", patient=loaded.patient_b)
    answer = read_answer(rad69(xds_hub, loaded, loaded.a, token=theirs), tmp_path)
    assert status_of(answer) == FAILURE
    assert documents_of(answer) == {}
    # exactly as if the instances did not exist: nothing tells them apart
    assert errors_of(answer) == [("XDSMissingDocument", i.sop) for i in loaded.a]
    # the same token reads its own patient's instance; patient A's token reads A's
    answer = read_answer(rad69(xds_hub, loaded, [loaded.b], token=theirs), tmp_path)
    assert documents_of(answer) == {loaded.b.sop: stored_bytes(xds_hub, loaded.b)}
    mine = xds_hub.token("patient/*.rs", patient=loaded.patient_a)
    answer = read_answer(rad69(xds_hub, loaded, [*loaded.a, loaded.b], token=mine), tmp_path)
    assert status_of(answer) == PARTIAL
    assert set(documents_of(answer)) == {i.sop for i in loaded.a}
    assert errors_of(answer) == [("XDSMissingDocument", loaded.b.sop)]


def test_without_a_token_it_is_401(xds_hub: WebHub, loaded: Loaded) -> None:
    documents = [(loaded.b.study, loaded.b.series, loaded.repository, loaded.b.sop)]
    envelope = request_body(documents, [ExplicitVRLittleEndian])
    r = httpx.post(
        f"{xds_hub.url}/xds/imaging",
        content=(
            f'<env:Envelope xmlns:env="{SOAP}" xmlns:wsa="{WSA}"><env:Header>'
            f"<wsa:Action>{RAD69}</wsa:Action></env:Header><env:Body>{envelope}</env:Body>"
            "</env:Envelope>"
        ).encode(),
        headers={"Content-Type": "application/soap+xml"},
    )
    assert r.status_code == 401
    assert data_set(loaded.b.data) not in r.content


# --------------------------------------------------------------------------- faults, audit


def fault_of(response: httpx.Response) -> tuple[str, str]:
    assert response.headers["content-type"].startswith("application/soap+xml"), response.text
    root = etree.fromstring(response.content)
    fault = root.find(f"{{{SOAP}}}Body/{{{SOAP}}}Fault")
    assert fault is not None, response.text
    code = fault.findtext(f"{{{SOAP}}}Code/{{{SOAP}}}Value") or ""
    sub = fault.findtext(f"{{{SOAP}}}Code/{{{SOAP}}}Subcode/{{{SOAP}}}Value") or ""
    return code, sub


def test_the_wrong_action_is_a_fault(xds_hub: WebHub, loaded: Loaded) -> None:
    one = loaded.a[0]
    body = request_body([(one.study, one.series, loaded.repository, one.sop)], [IMPLICIT_LE])
    r = post_soap(xds_hub, body, action=ITI43)  # ITI-43 is the repository's, not this one's
    assert r.status_code == 400
    assert fault_of(r) == ("env:Sender", "wsa:ActionNotSupported")
    r = post_soap(xds_hub, body, path="/xds/repository")  # RAD-69 is not the repository's
    assert r.status_code == 400
    assert fault_of(r) == ("env:Sender", "wsa:ActionNotSupported")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (f'<iherad:RetrieveImagingDocumentSetRequest xmlns:iherad="{IHERAD}">'
         "<iherad:TransferSyntaxUIDList><iherad:TransferSyntaxUID>1.2.840.10008.1.2.1"
         "</iherad:TransferSyntaxUID></iherad:TransferSyntaxUIDList>"
         "</iherad:RetrieveImagingDocumentSetRequest>", "no StudyRequest"),
        (f'<xdsb:RetrieveDocumentSetRequest xmlns:xdsb="{XDSB}"/>', "RAD-69 expects"),
    ],
)  # fmt: skip
def test_a_request_off_the_schema_is_a_sender_fault(
    xds_hub: WebHub, body: str, reason: str
) -> None:
    r = post_soap(xds_hub, body)
    assert r.status_code == 400
    assert fault_of(r)[0] == "env:Sender"
    assert reason in r.text


def test_no_transfer_syntax_list_is_a_sender_fault(xds_hub: WebHub, loaded: Loaded) -> None:
    one = loaded.a[0]
    r = post_soap(xds_hub, request_body([(one.study, one.series, loaded.repository, one.sop)], []))
    assert r.status_code == 400 and "TransferSyntaxUIDList" in r.text


def test_retrievals_are_audited_as_rad69_exports(
    xds_hub: WebHub, loaded: Loaded, tmp_path: Path
) -> None:
    read_answer(rad69(xds_hub, loaded, [loaded.b]), tmp_path)

    def rad69_export(event: dict[str, Any]) -> bool:
        return any(c.get("code") == "RAD-69" for c in event.get("subtype", []))

    events = xds_hub.audit("110106", rad69_export)
    assert events, "no DCM 110106 Export audit event with subtype RAD-69"
    assert {e["action"] for e in events} == {"R"}
    assert any(e["outcome"] == "0" for e in events)
    studies = {
        entity["what"]["identifier"]["value"]
        for e in events for entity in e.get("entity", []) if "identifier" in entity.get("what", {})
    }  # fmt: skip
    assert f"urn:oid:{loaded.b.study}" in studies
