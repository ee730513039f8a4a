"""``/media``: the upload endpoint for devices and mobile apps, and the renditions it serves
(IHE Encounter-Based Imaging Workflow). Thin: parse, call ``MediaService``, render, audit.

- ``POST /media`` (``multipart/form-data``, RFC 7578: one ``file`` part and the text fields of
  ``_fields``) -> 201 with the ``DocumentReference`` (200 with the existing one for the same bytes
  and patient), ``Location`` under ``/fhir``; 400 malformed form or field, 401/403 as for a FHIR
  create of a DocumentReference, 413 past ``media_max_upload_bytes``, 415 not form-data or bytes of
  no supported type, 422 unknown patient/encounter, declared type denied by the bytes, polyglot,
  corrupt or bomb. A client that goes away mid-body leaves nothing stored.
- ``GET /media/{id}/{original|preview|thumbnail}``: the bytes, for whoever may read the
  ``DocumentReference``; the original (with its EXIF and GPS) only with a scope naming
  ``Binary``. A FHIR-native capture (a DocumentReference pointing to a native ``Binary``) gets
  its preview and thumbnail made from that Binary on first request. Sent with ``nosniff`` and
  a sandboxing CSP, so a hostile file cannot run as a page.

Each request is one ``AuditEvent`` (BALP RESTful create/read, the patient as entity).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import ClientDisconnect

from adapters.media._capture import MediaService
from adapters.media._form import boundary_of, read_form
from hub.auth import Principal
from hub.channels import ChannelContext
from hub.errors import HubError, PayloadTooLarge
from hub.http.audit import actor_of
from hub.http.deps import authenticate

FHIR_JSON = "application/fhir+json"
CHUNK = 1024 * 1024
# Served bytes are never interpreted by a browser as anything but what they are.
SAFE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox; default-src 'none'",
    "Cache-Control": "private, no-store",
}


class MediaRoutes:
    def __init__(self, context: ChannelContext, service: MediaService) -> None:
        self.context = context
        self.service = service

    def _audit(
        self, request: Request, principal: Principal | None, interaction: str, status: int,
        *, reason: str | None = None, patients: list[str] | None = None,
        resources: list[str] | None = None,
    ) -> None:  # fmt: skip
        trail = self.context.audit
        if trail is None or not trail.enabled:
            return
        address = request.client.host if request.client else None
        trail.rest(
            actor_of(principal, address), interaction, status=status, outcome_desc=reason,
            patients=patients or [], resources=resources or [],
        )  # fmt: skip

    async def upload(self, request: Request) -> Response:
        principal: Principal | None = None
        settings = self.context.settings
        try:
            principal = await run_in_threadpool(authenticate, request)
            await run_in_threadpool(self.service.authorize_upload, principal)
            boundary = boundary_of(request.headers.get("content-type", ""))
            declared = request.headers.get("content-length", "")
            limit = settings.media_max_upload_bytes
            if declared.isascii() and declared.isdigit() and int(declared) > limit:
                raise PayloadTooLarge(f"The upload is larger than {limit} bytes")
            form = await read_form(
                request.stream(), boundary, spool_dir=self.service.spool_dir, limit=limit
            )
            result = await run_in_threadpool(self.service.upload, principal, form)
        except ClientDisconnect:
            reason = "the client disconnected before the end of the upload"
            await run_in_threadpool(self._audit, request, principal, "create", 400, reason=reason)
            return Response(status_code=400)
        except HubError as exc:
            await run_in_threadpool(
                self._audit, request, principal, "create", exc.status, reason=exc.message
            )
            raise
        stored = result.stored
        assert stored.data is not None
        resource: dict[str, Any] = orjson.loads(stored.data)
        reference = f"DocumentReference/{stored.id}"
        status = 201 if result.created else 200
        await run_in_threadpool(
            self._audit, request, principal, "create", status,
            patients=[resource["subject"]["reference"]], resources=[reference],
        )  # fmt: skip
        base = self.context.service.options.base_url.rstrip("/")
        headers = {
            "Location": f"{base}/{reference}/_history/{stored.version}",
            "ETag": f'W/"{stored.version}"',
        }
        return Response(stored.data, status_code=status, media_type=FHIR_JSON, headers=headers)

    async def rendition(self, request: Request, doc_id: str, role: str) -> Response:
        principal: Principal | None = None
        resources = [f"DocumentReference/{doc_id}"]
        try:
            principal = await run_in_threadpool(authenticate, request)
            served, patient = await run_in_threadpool(
                self.service.rendition, principal, doc_id, role
            )
        except HubError as exc:
            await run_in_threadpool(
                self._audit, request, principal, "read", exc.status, reason=exc.message,
                resources=resources,
            )  # fmt: skip
            raise
        await run_in_threadpool(
            self._audit, request, principal, "read", 200, patients=[patient], resources=resources
        )
        headers = {**SAFE_HEADERS, "ETag": served.etag}
        if served.size is not None:
            headers["Content-Length"] = str(served.size)
        if served.title and role == "original":
            safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in served.title)
            headers["Content-Disposition"] = f'inline; filename="{safe}"'

        def chunks() -> Any:
            with served.stream as stream:
                while chunk := stream.read(CHUNK):
                    yield chunk

        return StreamingResponse(
            iterate_in_threadpool(chunks()), media_type=served.content_type, headers=headers
        )


def routes(context: ChannelContext, service: MediaService, prefix: str) -> APIRouter:
    handlers = MediaRoutes(context, service)
    router = APIRouter(prefix=prefix, tags=["Media"])
    router.add_api_route(
        "", handlers.upload, methods=["POST"], summary="Upload a photo, video, audio or document"
    )
    router.add_api_route(
        "/{doc_id}/{role}", handlers.rendition, methods=["GET"],
        summary="A capture's original, preview or thumbnail",
    )  # fmt: skip
    return router


__all__ = ["routes"]
