"""``/xds``: the SOAP endpoints of IHE XDS.b (ITI TF-2 Appendix V), one per actor, each
dispatching on ``wsa:Action``. Thin: authenticate (IUA-style bearer token, the one access
policy), read the SOAP request (``_soap``), run the transaction, answer, audit.

- ``POST /xds/repository``: ITI-41 Provide and Register Document Set-b, ITI-43 Retrieve Document
  Set (an MTOM answer);
- ``POST /xds/registry``: ITI-18 Registry Stored Query;
- ``POST /xds/imaging``: RAD-69 Retrieve Imaging Document Set (the Imaging Document Source, an
  MTOM answer).

A request for another action is a ``wsa:ActionNotSupported`` fault; malformed SOAP or MTOM a
Sender fault (HTTP 400); a transaction's own errors are a RegistryResponse with its
RegistryErrorList (HTTP 200), as ITI TF-2 asks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from lxml import etree
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import ClientDisconnect

from adapters.xds._errors import RegistryStatus, XdsError, registry_response
from adapters.xds._imaging import ImagingDocumentSource
from adapters.xds._registry import Registry
from adapters.xds._repository import XDSB, Repository
from adapters.xds._soap import (
    Attachment,
    SoapFault,
    SoapRequest,
    fault_response,
    mtom_response,
    read_request,
    soap_response,
)
from hub.auth import Principal
from hub.channels import ChannelContext
from hub.errors import HubError
from hub.http.audit import actor_of
from hub.http.deps import authenticate
from mappings.interaction_to_auditevent import DICOM_UID, IHE_EVENT, coding, identifier_entity

ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
ITI43 = "urn:ihe:iti:2007:RetrieveDocumentSet"
ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"
RAD69 = "urn:ihe:rad:2009:RetrieveImagingDocumentSet"
DCM = "http://dicom.nema.org/resources/ontology/DCM"


@dataclass(frozen=True)
class Answer:
    """What a transaction gives back: the Body element, documents for an MTOM answer, and
    what the audit record says."""

    body: etree._Element
    documents: dict[str, Attachment]
    failed: bool
    reason: str | None = None
    entities: tuple[dict[str, Any], ...] = ()  # BALP entities: the studies retrieved...


Handler = Callable[[Principal, SoapRequest], Answer]


class XdsRoutes:
    def __init__(
        self, context: ChannelContext, repository: Repository, registry: Registry,
        imaging: ImagingDocumentSource,
    ) -> None:  # fmt: skip
        self.context = context
        self.repository = repository
        self.registry = registry
        self.imaging = imaging
        self.limit = context.settings.xds_max_request_bytes
        # action -> (response action, handler, audit event (DCM), IHE transaction, action code)
        self.repository_actions: dict[str, tuple[str, Handler, tuple[str, str], str, str]] = {
            ITI41: (f"{ITI41}Response", self.iti41, ("110107", "Import"), "ITI-41", "C"),
            ITI43: (f"{ITI43}Response", self.iti43, ("110106", "Export"), "ITI-43", "R"),
        }
        self.registry_actions: dict[str, tuple[str, Handler, tuple[str, str], str, str]] = {
            ITI18: (f"{ITI18}Response", self.iti18, ("110112", "Query"), "ITI-18", "E"),
        }
        # RAD TF-3 4.69.4.2: the response action is ITI-43's
        self.imaging_actions: dict[str, tuple[str, Handler, tuple[str, str], str, str]] = {
            RAD69: (f"{ITI43}Response", self.rad69, ("110106", "Export"), "RAD-69", "R"),
        }

    # ------------------------------------------------------------------ transactions

    def iti41(self, principal: Principal, request: SoapRequest) -> Answer:
        errors = self.repository.provide_and_register(principal, request)
        status: RegistryStatus = "Failure" if errors else "Success"
        reason = "; ".join(f"{e.code}: {e.message}" for e in errors)[:500] or None
        return Answer(registry_response(errors, status=status), {}, bool(errors), reason)

    def iti43(self, principal: Principal, request: SoapRequest) -> Answer:
        found, errors = self.repository.retrieve(principal, request)
        status: RegistryStatus = (
            "Failure" if not found else "PartialSuccess" if errors else "Success"
        )
        body = etree.Element(f"{{{XDSB}}}RetrieveDocumentSetResponse", nsmap={"xdsb": XDSB})
        body.append(registry_response(errors, status=status))
        documents: dict[str, Attachment] = {}
        for repository, unique_id, mime, document in found:
            item = etree.SubElement(body, f"{{{XDSB}}}DocumentResponse")
            etree.SubElement(item, f"{{{XDSB}}}RepositoryUniqueId").text = repository
            etree.SubElement(item, f"{{{XDSB}}}DocumentUniqueId").text = unique_id
            etree.SubElement(item, f"{{{XDSB}}}mimeType").text = mime
            holder = etree.SubElement(item, f"{{{XDSB}}}Document")
            include = etree.SubElement(holder, "{http://www.w3.org/2004/08/xop/include}Include")
            include.set("href", f"cid:{document.content_id}")
            documents[document.content_id] = document
        reason = "; ".join(f"{e.code}: {e.message}" for e in errors)[:500] or None
        return Answer(body, documents, not found, reason)

    def rad69(self, principal: Principal, request: SoapRequest) -> Answer:
        retrieved = self.imaging.retrieve(principal, request)
        errors = retrieved.errors
        reason = "; ".join(f"{e.code}: {e.message}" for e in errors)[:500] or None
        studies = tuple(
            identifier_entity(DICOM_UID, f"urn:oid:{uid}", "3", "Report")
            for uid in retrieved.studies
        )  # PS3.15 A.5.3.5-like: each study whose instances left (RAD TF-3 4.69.5)
        return Answer(retrieved.body, retrieved.documents, not retrieved.documents, reason, studies)

    def iti18(self, principal: Principal, request: SoapRequest) -> Answer:
        body = self.registry.stored_query(principal, request)
        failed = body.get("status", "").endswith(":Failure")
        return Answer(body, {}, failed, "the stored query failed" if failed else None)

    # ------------------------------------------------------------------ HTTP

    async def serve(
        self, request: Request, actions: dict[str, tuple[str, Handler, tuple[str, str], str, str]]
    ) -> Response:
        principal: Principal | None = None
        soap: SoapRequest | None = None
        relates_to = ""
        event = ("110100", "Application Activity")
        transaction, action_code = "", "E"
        try:
            principal = await run_in_threadpool(authenticate, request)
            spool = str(self.repository.spool_dir)
            soap = await read_request(
                request.headers.get("content-type", ""), request.stream(), spool_dir=spool,
                limit=self.limit,
            )  # fmt: skip
            relates_to = soap.message_id
            if soap.action not in actions:
                raise SoapFault(
                    f"{soap.action} is not served here (this endpoint: {', '.join(actions)})",
                    subcode="wsa:ActionNotSupported",
                )
            response_action, handler, event, transaction, action_code = actions[soap.action]
            answer = await run_in_threadpool(handler, principal, soap)
        except ClientDisconnect:
            if soap is not None:
                soap.discard()
            return Response(status_code=400)
        except (SoapFault, XdsError, HubError) as exc:
            if soap is not None:
                soap.discard()
            fault = exc if isinstance(exc, SoapFault) else SoapFault(
                exc.message, code="Sender" if exc.status < 500 else "Receiver"
            )  # fmt: skip
            await run_in_threadpool(
                self._audit, request, principal, event, transaction, action_code, "4", exc.message
            )
            content_type, data = fault_response(fault, relates_to)
            status = 400 if fault.code == "Sender" else 500
            if isinstance(exc, HubError) and exc.status in (401, 403, 413):
                status = exc.status
            headers = getattr(exc, "headers", None) or {}
            return Response(data, status_code=status, media_type=None,
                            headers={**headers, "Content-Type": content_type})  # fmt: skip
        soap.discard()
        outcome = "4" if answer.failed else "0"
        await run_in_threadpool(
            self._audit, request, principal, event, transaction, action_code, outcome,
            answer.reason, answer.entities,
        )  # fmt: skip
        if answer.documents:
            content_type, chunks = mtom_response(
                response_action, relates_to, answer.body, answer.documents
            )
            return StreamingResponse(
                iterate_in_threadpool(chunks), headers={"Content-Type": content_type}
            )
        content_type, data = soap_response(response_action, relates_to, answer.body)
        return Response(data, headers={"Content-Type": content_type})

    def _audit(
        self, request: Request, principal: Principal | None, event: tuple[str, str],
        transaction: str, action: str, outcome: Any, reason: str | None,
        entities: tuple[dict[str, Any], ...] = (),
    ) -> None:  # fmt: skip
        """One AuditEvent per transaction (IHE ITI TF-2 3.41.5.1, 3.43.5.1, 3.18.5.1: DICOM
        event, IHE transaction as subtype)."""
        trail = self.context.audit
        if trail is None or not trail.enabled:
            return
        address = request.client.host if request.client else None
        subtype = [coding(IHE_EVENT, transaction, transaction)] if transaction else []
        trail.record(
            actor_of(principal, address), type_=coding(DCM, *event), subtype=subtype,
            action=action, outcome=outcome, outcome_desc=reason, entities=entities,
        )  # fmt: skip


def routes(
    context: ChannelContext, repository: Repository, registry: Registry,
    imaging: ImagingDocumentSource,
) -> APIRouter:  # fmt: skip
    handlers = XdsRoutes(context, repository, registry, imaging)
    router = APIRouter(prefix="/xds", tags=["IHE XDS.b"])

    @router.post("/repository", summary="XDS.b Document Repository: ITI-41, ITI-43")
    async def repository_endpoint(request: Request) -> Response:
        return await handlers.serve(request, handlers.repository_actions)

    @router.post("/registry", summary="XDS.b Document Registry: ITI-18")
    async def registry_endpoint(request: Request) -> Response:
        return await handlers.serve(request, handlers.registry_actions)

    @router.post("/imaging", summary="XDS-I.b Imaging Document Source: RAD-69")
    async def imaging_endpoint(request: Request) -> Response:
        return await handlers.serve(request, handlers.imaging_actions)

    return router


__all__ = ["ITI18", "ITI41", "ITI43", "RAD69", "routes"]
