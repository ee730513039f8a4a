"""PixelHub as XDS-I.b Imaging Document Source: RAD-69 Retrieve Imaging Document Set (IHE RAD
TF-3 4.69), the DICOM instances a KOS manifest references, by Study/Series/SOP Instance UID.

The request (RAD TF-3 4.69.4.1.2) is an ``iherad:RetrieveImagingDocumentSetRequest``:
``StudyRequest@studyInstanceUID`` / ``SeriesRequest@seriesInstanceUID`` / ``DocumentRequest``
(``RepositoryUniqueId``, ``DocumentUniqueId`` = SOP Instance UID, optional ``HomeCommunityId``),
and a ``TransferSyntaxUIDList``. The answer (4.69.4.2.2, the semantics of ITI-43, ITI TF-2
3.43.4.2) is an ``xdsb:RetrieveDocumentSetResponse``: one ``DocumentResponse`` per instance
returned, its Part 10 bytes (DICOM PS3.10) as an MTOM part streamed from the blob store, and an
``rs:RegistryError`` (``location`` = the SOP Instance UID) for each one that is not:

- another repository: ``XDSUnknownRepositoryId``; another community: ``XDSUnknownCommunity``;
- an instance not stored here, not in the requested study and series, or in a study the caller
  may not read (the FHIR read policy on its ``ImagingStudy``, as DICOMweb applies it; nothing
  tells an unreadable instance from a missing one): ``XDSMissingDocument``;
- stored in a transfer syntax not in the list: ``urn:dicom:wado:0007`` (no transcoding; RAD TF-3
  4.69.4.2.3 asks for an error status, and DICOM PS3.18 WADO-WS, the RetrieveImagingDocumentSet
  action that is RAD-69, names this one "cannot be provided in the requested transfer syntax").

Status (ITI TF-3 4.2.4.2): Success, PartialSuccess (some returned, some errors), Failure (none).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson
from lxml import etree

from adapters.xds._errors import RegistryStatus, XdsError, registry_response
from adapters.xds._identity import XdsIdentity
from adapters.xds._soap import XOP, Attachment, SoapFault, SoapRequest
from hub.auth import Principal
from hub.blobs import open_blob_store
from hub.channels import ChannelContext
from hub.errors import HubError
from hub.ports import DicomInstanceRecord, DicomInstanceStore

IHERAD: Final = "urn:ihe:rad:xdsi-b:2009"
XDSB: Final = "urn:ihe:iti:xds-b:2007"
DICOM_MIME: Final = "application/dicom"
# DICOM PS3.18 WADO-WS error codes (RetrieveImagingDocumentSet = IHE RAD-69)
NOT_IN_TRANSFER_SYNTAX: Final = "urn:dicom:wado:0007"
UNKNOWN_COMMUNITY: Final = "XDSUnknownCommunity"  # ITI TF-3 Table 4.2.4.1-2
_STUDY_BATCH: Final = 50  # study UIDs per FHIR identifier search


@dataclass(frozen=True)
class DocumentRequest:
    """One ``DocumentRequest`` with the study and series it was asked under."""

    study_uid: str
    series_uid: str
    repository_unique_id: str
    document_unique_id: str
    home_community_id: str | None


@dataclass(frozen=True)
class Retrieved:
    """What RAD-69 gives back: the response Body, the documents by Content-ID, the errors, and
    the studies whose instances were returned (for the audit record)."""

    body: etree._Element
    documents: dict[str, Attachment]
    errors: list[XdsError]
    studies: tuple[str, ...]


def _child_text(element: etree._Element, name: str) -> str | None:
    """The text of ``name`` under ``element``, in the XDS.b namespace (as the XDS-I.b schema
    has it) or, leniently, in the XDS-I.b one."""
    for namespace in (XDSB, IHERAD):
        found = element.find(f"{{{namespace}}}{name}")
        if found is not None:
            return (found.text or "").strip().rstrip("\x00")
    return None


def parse_request(body: etree._Element) -> tuple[list[DocumentRequest], list[str]]:
    """The document requests and transfer syntaxes of a RAD-69 request (RAD TF-3 4.69.4.1.2);
    a request that does not follow the schema is a Sender fault."""
    if body.tag != f"{{{IHERAD}}}RetrieveImagingDocumentSetRequest":
        raise SoapFault(f"RAD-69 expects iherad:RetrieveImagingDocumentSetRequest, not {body.tag}")
    requests: list[DocumentRequest] = []
    studies = body.findall(f"{{{IHERAD}}}StudyRequest")
    if not studies:
        raise SoapFault("RetrieveImagingDocumentSetRequest has no StudyRequest")
    for study in studies:
        study_uid = (study.get("studyInstanceUID") or "").strip()
        if not study_uid:
            raise SoapFault("A StudyRequest has no studyInstanceUID")
        series_list = study.findall(f"{{{IHERAD}}}SeriesRequest")
        if not series_list:
            raise SoapFault(f"StudyRequest {study_uid} has no SeriesRequest")
        for series in series_list:
            series_uid = (series.get("seriesInstanceUID") or "").strip()
            if not series_uid:
                raise SoapFault(f"A SeriesRequest of study {study_uid} has no seriesInstanceUID")
            items = series.findall(f"{{{XDSB}}}DocumentRequest") + series.findall(
                f"{{{IHERAD}}}DocumentRequest"
            )
            if not items:
                raise SoapFault(f"SeriesRequest {series_uid} has no DocumentRequest")
            for item in items:
                document = _child_text(item, "DocumentUniqueId")
                repository = _child_text(item, "RepositoryUniqueId")
                if not document or not repository:
                    raise SoapFault(
                        "A DocumentRequest needs RepositoryUniqueId and DocumentUniqueId"
                    )
                community = _child_text(item, "HomeCommunityId") or None
                requests.append(
                    DocumentRequest(study_uid, series_uid, repository, document, community)
                )
    path = f"{{{IHERAD}}}TransferSyntaxUIDList/{{{IHERAD}}}TransferSyntaxUID"
    syntaxes = [(e.text or "").strip().rstrip("\x00") for e in body.findall(path)]
    syntaxes = [s for s in syntaxes if s]
    if not syntaxes:
        raise SoapFault("RetrieveImagingDocumentSetRequest has no TransferSyntaxUIDList entry")
    return requests, syntaxes


class ImagingDocumentSource:
    """RAD-69 over one ``ChannelContext``: the engine's DICOM instance store and blobs."""

    def __init__(self, context: ChannelContext, identity: XdsIdentity) -> None:
        self.context = context
        self.identity = identity
        self.store: DicomInstanceStore | None = getattr(context.engine, "dicom_store", None)
        self.blobs = open_blob_store(context.settings.data_dir)

    # ------------------------------------------------------------------ access

    def visible_studies(self, principal: Principal, study_uids: Iterable[str]) -> set[str]:
        """The study UIDs among ``study_uids`` whose ``ImagingStudy`` the caller may read (every
        one with unrestricted access; ``Forbidden`` with none), as DICOMweb decides it."""
        wanted = sorted(set(study_uids))
        if not self.context.policy.check(principal, "search", "ImagingStudy").restricted:
            return set(wanted)
        seen: set[str] = set()
        for start in range(0, len(wanted), _STUDY_BATCH):
            batch = {f"urn:oid:{uid}" for uid in wanted[start : start + _STUDY_BATCH]}
            bundle = self.context.service.search(
                principal,
                "ImagingStudy",
                [
                    ("identifier", ",".join(f"urn:dicom:uid|{v}" for v in sorted(batch))),
                    ("_elements", "identifier"),
                    ("_count", "1000"),
                ],
            )
            for entry in orjson.loads(orjson.dumps(bundle.get("entry", []))):
                for identifier in entry.get("resource", {}).get("identifier", []):
                    value = str(identifier.get("value", ""))
                    if identifier.get("system") == "urn:dicom:uid" and value in batch:
                        seen.add(value.removeprefix("urn:oid:"))
        return seen

    # ------------------------------------------------------------------ RAD-69

    def retrieve(self, principal: Principal, request: SoapRequest) -> Retrieved:
        """RAD-69 (RAD TF-3 4.69.4.2): the response and its documents."""
        requests, syntaxes = parse_request(request.body)
        errors: list[XdsError] = []
        candidates: list[tuple[DocumentRequest, DicomInstanceRecord]] = []
        seen: set[str] = set()
        for item in requests:
            uid = item.document_unique_id
            if item.repository_unique_id != self.identity.repository_unique_id:
                wrong = f"Repository {item.repository_unique_id!r} is not this one"
                errors.append(XdsError(XdsError.UNKNOWN_REPOSITORY, wrong, uid))
                continue
            community = item.home_community_id
            if community is not None and community != self.identity.home_community_id:
                wrong = f"Community {community!r} is not this one"
                errors.append(XdsError(UNKNOWN_COMMUNITY, wrong, uid))
                continue
            if uid in seen:  # asked twice: answered once
                continue
            seen.add(uid)
            record = self.store.get(uid) if self.store is not None else None
            if (
                record is None
                or record.study_instance_uid != item.study_uid
                or record.series_instance_uid != item.series_uid
            ):
                errors.append(_missing(item))
                continue
            candidates.append((item, record))
        visible = self.visible_studies(
            principal, (record.study_instance_uid for _, record in candidates)
        )
        found: list[tuple[DocumentRequest, Attachment]] = []
        studies: set[str] = set()
        for item, record in candidates:
            if record.study_instance_uid not in visible:
                errors.append(_missing(item))
                continue
            if record.transfer_syntax_uid not in syntaxes:
                errors.append(XdsError(
                    NOT_IN_TRANSFER_SYNTAX,
                    f"The instance is stored in transfer syntax {record.transfer_syntax_uid}, "
                    "not in the requested ones, and is not transcoded",
                    item.document_unique_id,
                ))  # fmt: skip
                continue
            document = self._document(record)
            if document is None:
                errors.append(XdsError(
                    XdsError.REPOSITORY,
                    "The stored bytes of the instance cannot be read",
                    item.document_unique_id,
                ))  # fmt: skip
                continue
            found.append((item, document))
            studies.add(record.study_instance_uid)
        body, documents = _response(found, errors)
        return Retrieved(body, documents, errors, tuple(sorted(studies)))

    def _document(self, record: DicomInstanceRecord) -> Attachment | None:
        """The instance's blob as an attachment (its file, streamed by the MTOM answer)."""
        try:
            with self.blobs.open(record.blob_key) as stream:
                path = str(getattr(stream, "name", ""))
        except HubError:
            return None
        if not path or not Path(path).is_file():
            return None
        return Attachment(
            f"{uuid.uuid4().hex}@pixelhub", DICOM_MIME, path, Path(path).stat().st_size
        )


def _missing(item: DocumentRequest) -> XdsError:
    return XdsError(
        XdsError.MISSING_DOCUMENT,
        f"No instance {item.document_unique_id} in series {item.series_uid} of study "
        f"{item.study_uid}",
        item.document_unique_id,
    )


def _response(
    found: list[tuple[DocumentRequest, Attachment]], errors: list[XdsError]
) -> tuple[etree._Element, dict[str, Attachment]]:
    """``xdsb:RetrieveDocumentSetResponse`` (ITI TF-2 3.43.4.2.2, RAD TF-3 4.69.4.2.2)."""
    status: RegistryStatus = "Failure" if not found else "PartialSuccess" if errors else "Success"
    body = etree.Element(f"{{{XDSB}}}RetrieveDocumentSetResponse", nsmap={"xdsb": XDSB})
    body.append(registry_response(errors, status=status))
    documents: dict[str, Attachment] = {}
    for item, document in found:
        response = etree.SubElement(body, f"{{{XDSB}}}DocumentResponse")
        if item.home_community_id is not None:
            etree.SubElement(response, f"{{{XDSB}}}HomeCommunityId").text = item.home_community_id
        etree.SubElement(response, f"{{{XDSB}}}RepositoryUniqueId").text = item.repository_unique_id
        etree.SubElement(response, f"{{{XDSB}}}DocumentUniqueId").text = item.document_unique_id
        etree.SubElement(response, f"{{{XDSB}}}mimeType").text = DICOM_MIME
        holder = etree.SubElement(response, f"{{{XDSB}}}Document")
        etree.SubElement(holder, f"{{{XOP}}}Include").set("href", f"cid:{document.content_id}")
        documents[document.content_id] = document
    return body, documents


__all__ = [
    "IHERAD",
    "NOT_IN_TRANSFER_SYNTAX",
    "DocumentRequest",
    "ImagingDocumentSource",
    "Retrieved",
    "parse_request",
]
