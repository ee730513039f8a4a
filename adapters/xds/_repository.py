"""PixelHub as XDS.b Document Repository and Registry at once (IHE ITI TF-2 3.41 Provide and
Register Document Set-b, 3.43 Retrieve Document Set), storing what it receives as FHIR so that the
same document is found over XDS and over MHD (ITI-67/68).

ITI-41, all or nothing: the metadata is parsed and checked (``_ebrim``), every document matched
to its entry (``XDSMissingDocument``/``XDSMissingDocumentMetadata``), its size and SHA-1 checked
against the metadata when given (``XDSRepositoryMetadataError``), the patient found by the
affinity-domain identifier (``XDSUnknownPatientId``), the uniqueIds checked unused
(``XDSDuplicateUniqueIdInRegistry``) and ``RPLC`` targets found; then the documents go to the blob
store and, in one transaction, each becomes a ``Binary`` and a ``DocumentReference``
(``mappings/xds_to_documentreference``) and the submission set a ``List``; a replaced entry's
DocumentReference becomes ``superseded``. Any error: nothing is written, the RegistryResponse says
Failure with every error.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from adapters.xds._ebrim import Submission, parse_submit_objects
from adapters.xds._errors import XdsError
from adapters.xds._identity import XdsIdentity
from adapters.xds._soap import Attachment, SoapFault, SoapRequest
from hub.auth import Principal
from hub.blobs import open_blob_store
from hub.channels import ChannelContext
from hub.errors import HubError, InvalidResource, NotFound
from hub.fhir.binary import blob_binary, blob_of, inline_data
from hub.fhir.validation import validate_resource
from mappings.xds_model import DocumentEntry
from mappings.xds_to_documentreference import (
    cx_to_identifier,
    documententry_to_documentreference,
    submissionset_to_list,
    unique_id_identifier,
)

XDSB = "urn:ihe:iti:xds-b:2007"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
URI = "urn:ietf:rfc:3986"


@dataclass
class _Document:
    entry: DocumentEntry
    path: str
    size: int
    sha1: str
    key: str = ""


def unique_id_token(unique_id: str) -> str:
    """The ``identifier`` search token of a document's XDS uniqueId (its masterIdentifier)."""
    try:
        identifier = unique_id_identifier(unique_id)
    except ValueError as exc:
        raise XdsError(XdsError.DOCUMENT_UNIQUE_ID, str(exc), unique_id) from exc
    return f"{identifier['system']}|{identifier['value']}"


class Repository:
    """ITI-41 and ITI-43 over one ``ChannelContext``."""

    def __init__(self, context: ChannelContext, identity: XdsIdentity, spool_dir: str) -> None:
        self.context = context
        self.identity = identity
        self.spool_dir = spool_dir
        self.blobs = open_blob_store(context.settings.data_dir)
        self.itself = context.peer("pixelhub-xds", None)

    # ------------------------------------------------------------------ lookups

    def _search(self, principal: Principal, rtype: str, params: list[tuple[str, str]]) -> list[Any]:
        bundle = self.context.service.search(principal, rtype, params)
        return [orjson.loads(orjson.dumps(e["resource"])) for e in bundle.get("entry", [])]

    def patient_of(self, principal: Principal, patient_id: str, location: str) -> str:
        """``Patient/<id>`` of an affinity-domain patient id (CX), or ``XDSUnknownPatientId``."""
        try:
            identifier = cx_to_identifier(patient_id)
        except ValueError as exc:
            raise XdsError(XdsError.METADATA, f"patientId {patient_id!r}: {exc}", location) from exc
        found = self._search(
            principal,
            "Patient",
            [("identifier", f"{identifier['system']}|{identifier['value']}"), ("_count", "2")],
        )
        if len(found) != 1:
            raise XdsError(
                XdsError.UNKNOWN_PATIENT,
                f"patientId {patient_id} is {'unknown' if not found else 'ambiguous'} here",
                location,
            )
        return f"Patient/{found[0]['id']}"

    def document_by_unique_id(self, principal: Principal, unique_id: str) -> dict[str, Any] | None:
        found = self._search(
            principal,
            "DocumentReference",
            [("identifier", unique_id_token(unique_id)), ("_count", "2")],
        )
        return found[0] if found else None

    def document_by_entry_uuid(
        self, principal: Principal, entry_uuid: str
    ) -> dict[str, Any] | None:
        found = self._search(
            principal, "DocumentReference", [("identifier", f"{URI}|{entry_uuid}"), ("_count", "2")]
        )
        return found[0] if found else None

    # ------------------------------------------------------------------ ITI-41

    def provide_and_register(self, principal: Principal, request: SoapRequest) -> list[XdsError]:
        """ITI-41 (ITI TF-2 3.41.4.1.3): the errors, empty when everything was stored."""
        self.context.policy.check(principal, "create", "DocumentReference")
        body = request.body
        if body.tag != f"{{{XDSB}}}ProvideAndRegisterDocumentSetRequest":
            raise SoapFault(
                f"ITI-41 expects xdsb:ProvideAndRegisterDocumentSetRequest, not {body.tag}"
            )
        submit = body.find(f"{{{LCM}}}SubmitObjectsRequest")
        if submit is None:
            raise SoapFault("ProvideAndRegisterDocumentSetRequest has no lcm:SubmitObjectsRequest")
        try:
            submission = parse_submit_objects(submit)
            with self._documents(request, submission) as documents:
                self._store(principal, submission, documents)
        except XdsError as exc:
            return exc.all()
        return []

    @contextlib.contextmanager
    def _documents(self, request: SoapRequest, submission: Submission) -> Iterator[list[_Document]]:
        """Each entry's document, on disk, with its size and SHA-1 checked against the metadata."""
        given: dict[str, bytes | Attachment] = {}
        for element in request.body.findall(f"{{{XDSB}}}Document"):
            given[element.get("id", "")] = request.content_of(element)
        errors: list[XdsError] = []
        entries = {e.entry_uuid: e for e in submission.entries}
        for extra in sorted(set(given) - set(entries)):
            errors.append(
                XdsError(XdsError.MISSING_METADATA, f"Document {extra} has no entry", extra)
            )
        made: list[str] = []
        documents: list[_Document] = []
        try:
            for entry in submission.entries:
                content = given.get(entry.entry_uuid)
                if content is None:
                    errors.append(
                        XdsError(
                            XdsError.MISSING_DOCUMENT,
                            "No document for this entry",
                            entry.entry_uuid,
                        )
                    )
                    continue
                path = (
                    content.path if isinstance(content, Attachment) else self._spool(content, made)
                )
                size, sha1 = _measure(path)
                if entry.size is not None and entry.size != size:
                    errors.append(XdsError(
                        XdsError.REPOSITORY_METADATA,
                        f"size is {entry.size} in the metadata but the document has {size} bytes",
                        entry.entry_uuid,
                    ))  # fmt: skip
                if entry.hash and entry.hash.lower() != sha1:
                    errors.append(XdsError(
                        XdsError.REPOSITORY_METADATA,
                        f"hash is {entry.hash} in the metadata but the document's SHA-1 is {sha1}",
                        entry.entry_uuid,
                    ))  # fmt: skip
                documents.append(_Document(entry, path, size, sha1))
            if errors:
                raise XdsError.several(errors)
            yield documents
        finally:
            for path in made:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    def _spool(self, data: bytes, made: list[str]) -> str:
        os.makedirs(self.spool_dir, exist_ok=True)
        fd, path = tempfile.mkstemp(dir=self.spool_dir, prefix="inline-")
        made.append(path)
        with os.fdopen(fd, "wb") as fp:
            fp.write(data)
        return path

    def _store(
        self, principal: Principal, submission: Submission, documents: list[_Document]
    ) -> None:
        ss = submission.submission_set
        patient = self.patient_of(principal, ss.patient_id, ss.entry_uuid)
        errors: list[XdsError] = []
        for document in documents:
            if self.document_by_unique_id(principal, document.entry.unique_id) is not None:
                errors.append(XdsError(
                    XdsError.DUPLICATE_UNIQUE_ID,
                    f"uniqueId {document.entry.unique_id} is already registered",
                    document.entry.entry_uuid,
                ))  # fmt: skip
        # symbolic ids become UUIDs (ITI TF-3 4.1.12.3); references follow them
        given = [e.entry_uuid for e in submission.entries] + [ss.entry_uuid]
        ids = {i: i if _is_uuid(i) else f"urn:uuid:{uuid.uuid4()}" for i in given}
        replaced: dict[str, dict[str, Any]] = {}
        for association in submission.associations:
            if association.type != "RPLC":
                continue
            old = self.document_by_entry_uuid(principal, association.target)
            if old is None or old.get("status") != "current":
                errors.append(XdsError(
                    XdsError.METADATA,
                    f"RPLC target {association.target} is not an approved entry here",
                    association.entry_uuid,
                ))  # fmt: skip
            else:
                replaced[association.source] = old
        if errors:
            raise XdsError.several(errors)
        for document in documents:
            with open(document.path, "rb") as fp:
                document.key = self.blobs.put(fp, prefix="xds").key
        resources = self._resources(patient, submission, documents, ids, replaced)
        for rtype, rid, resource in resources:
            if rtype != "Binary":
                try:
                    validate_resource(dict(resource, id=rid), rtype)
                except InvalidResource as exc:
                    raise XdsError(XdsError.METADATA, exc.message, rid) from exc

        def write(uow: Any) -> None:
            for rtype, rid, resource in resources:
                who = self.itself if rtype == "Binary" else principal
                self.context.service.create(who, rtype, resource, uow=uow, new_id=rid)
            for old in replaced.values():
                old["status"] = "superseded"
                self.context.service.update(principal, "DocumentReference", old["id"], old, uow=uow)

        try:
            self.context.service.run(write, validate=False)  # validated above
        except HubError as exc:
            if isinstance(exc, XdsError):
                raise
            raise XdsError(XdsError.REGISTRY, exc.message, ss.entry_uuid) from exc
        self.context.notify_change()

    def _resources(
        self, patient: str, submission: Submission, documents: list[_Document],
        ids: dict[str, str], replaced: dict[str, dict[str, Any]],
    ) -> list[tuple[str, str, dict[str, Any]]]:  # fmt: skip
        """(type, id, resource) to create, Binaries first."""
        out: list[tuple[str, str, dict[str, Any]]] = []
        references: list[str] = []
        for document in documents:
            entry = replace(
                document.entry,
                entry_uuid=ids[document.entry.entry_uuid],
                hash=document.sha1,
                size=document.size,
                repository_unique_id=self.identity.repository_unique_id,
            )
            doc_id, binary_id = str(uuid.uuid4()), str(uuid.uuid4())
            binary = blob_binary(entry.mime_type, document.key, f"DocumentReference/{doc_id}")
            resource = documententry_to_documentreference(
                entry, patient=patient, content_url=f"Binary/{binary_id}"
            )
            old = replaced.get(document.entry.entry_uuid)
            if old is not None:
                resource["relatesTo"] = [
                    {"code": "replaces", "target": {"reference": f"DocumentReference/{old['id']}"}}
                ]
            out += [("Binary", binary_id, binary), ("DocumentReference", doc_id, resource)]
            references.append(f"DocumentReference/{doc_id}")
        ss = replace(
            submission.submission_set, entry_uuid=ids[submission.submission_set.entry_uuid]
        )
        out.append(
            (
                "List",
                str(uuid.uuid4()),
                submissionset_to_list(ss, patient=patient, entries=references),
            )
        )
        return out

    # ------------------------------------------------------------------ ITI-43

    def retrieve(
        self, principal: Principal, request: SoapRequest
    ) -> tuple[list[tuple[str, str, str, Attachment]], list[XdsError]]:
        """ITI-43 (ITI TF-2 3.43.4.1): ``(repository, uniqueId, mimeType, document)`` found, and
        an error for each document that is not (``XDSMissingDocument``,
        ``XDSUnknownRepositoryId``)."""
        body = request.body
        if body.tag != f"{{{XDSB}}}RetrieveDocumentSetRequest":
            raise SoapFault(f"ITI-43 expects xdsb:RetrieveDocumentSetRequest, not {body.tag}")
        found: list[tuple[str, str, str, Attachment]] = []
        errors: list[XdsError] = []
        requests = body.findall(f"{{{XDSB}}}DocumentRequest")
        if not requests:
            raise SoapFault("RetrieveDocumentSetRequest has no DocumentRequest")
        for item in requests:
            repository = (item.findtext(f"{{{XDSB}}}RepositoryUniqueId") or "").strip()
            unique_id = (item.findtext(f"{{{XDSB}}}DocumentUniqueId") or "").strip()
            if repository != self.identity.repository_unique_id:
                wrong = f"Repository {repository!r} is not this one"
                errors.append(XdsError(XdsError.UNKNOWN_REPOSITORY, wrong, unique_id))
                continue
            document = self._retrievable(principal, unique_id)
            if document is None:
                errors.append(
                    XdsError(XdsError.MISSING_DOCUMENT, f"No document {unique_id}", unique_id)
                )
                continue
            found.append((repository, unique_id, *document))
        return found, errors

    def _retrievable(self, principal: Principal, unique_id: str) -> tuple[str, Attachment] | None:
        doc = self.document_by_unique_id(principal, unique_id)
        if doc is None:
            return None
        for content in doc.get("content", []):
            head, _, rid = str(content.get("attachment", {}).get("url", "")).rpartition("/")
            if not head.endswith("Binary") or not rid:
                continue
            try:
                stored = self.context.service.read(self.itself, "Binary", rid)
            except NotFound:
                return None
            assert stored.data is not None
            binary = orjson.loads(stored.data)
            mime = str(binary.get("contentType", "application/octet-stream"))
            cid = f"{uuid.uuid4().hex}@pixelhub"
            key = blob_of(binary)
            if key is None:  # a Binary with its data inline (e.g. sent by MHD ITI-65)
                path = self._spool(inline_data(binary), [])
                return mime, Attachment(cid, mime, path, os.path.getsize(path), temporary=True)
            with self.blobs.open(key) as stream:
                path = str(getattr(stream, "name", ""))
            if not path or not Path(path).is_file():
                return None
            return mime, Attachment(cid, mime, path, Path(path).stat().st_size)
        return None


def _measure(path: str) -> tuple[int, str]:
    sha1 = hashlib.sha1()
    size = 0
    with open(path, "rb") as fp:
        while chunk := fp.read(1024 * 1024):
            sha1.update(chunk)
            size += len(chunk)
    return size, sha1.hexdigest()


def _is_uuid(value: str) -> bool:
    if not value.startswith("urn:uuid:"):
        return False
    try:
        uuid.UUID(value[9:])
    except ValueError:
        return False
    return True


__all__ = ["Repository", "unique_id_token"]
