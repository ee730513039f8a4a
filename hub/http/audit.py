"""One ``AuditEvent`` per FHIR REST interaction, written before the response leaves (issue 7).

A pure ASGI middleware around ``/fhir``: it classifies the request as an R4 restful-interaction
(http.html), lets the route run, reads the outcome from the status, every patient involved from
the response (each ``Patient/<id>`` reference or Patient resource in it, so a search lists the
patients of all its matches: BALP "patient" variants), the resource from the path or
``Location``, and the query of a search; then journals the event and only then sends the answer.
Denied (403), refused (401) and failed requests are recorded too. ``/fhir/metadata`` and
``.well-known`` are public discovery documents and not recorded. A response that is not JSON (a
``Binary`` read in its native format) is recorded as soon as it starts and then streamed, never
held in memory.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.errors import AuditUnavailable
from hub.federation.requester import IUA_HEADER, Requester
from mappings.interaction_to_auditevent import Actor, OriginatingUser

if TYPE_CHECKING:
    from hub.audit.trail import AuditTrail
    from hub.auth import Principal

_PATIENT_REF = re.compile(rb'"reference":"(?:[^"]*/)?(Patient/[A-Za-z0-9\-.]{1,64})"')
_PATIENT_LOCATION = re.compile(rb'"location":"(?:[^"]*/)?(Patient/[A-Za-z0-9\-.]{1,64})/_history')
_PATIENT_RES = re.compile(rb'"resourceType":"Patient","id":"([A-Za-z0-9\-.]{1,64})"')
_BUNDLE_TYPE = re.compile(rb'"type":"(transaction|batch)-response"')
_DIAGNOSTICS = re.compile(rb'"diagnostics":"((?:[^"\\]|\\.){0,500})"')
_UNAUDITED = ("metadata", ".well-known")
_IUA = IUA_HEADER.lower().encode()


def _is_json(start: Message) -> bool:
    """Whether a response is JSON (read whole to find its patients) rather than content."""
    headers = dict(start.get("headers", []))
    return b"json" in headers.get(b"content-type", b"application/json")


def classify(method: str, path: str) -> tuple[str, str | None, str | None] | None:
    """``(interaction, resource type, id)`` of a request below ``/fhir`` (``path`` without it),
    or ``None`` when it is not audited."""
    parts = [p for p in path.split("/") if p]
    if parts and parts[0] in _UNAUDITED:
        return None
    if any(p.startswith("$") for p in parts):
        return "operation", parts[0] if not parts[0].startswith("$") else None, None
    n = len(parts)
    if parts and parts[0] == "federated":  # issue 12: a search of this hub and its partners
        return "search-type", parts[1] if n > 1 else None, None
    if n == 0:
        return ("transaction" if method == "POST" else "search-system"), None, None
    if parts[0] == "_history" and n == 1:
        return "history-system", None, None
    rtype = parts[0]
    if n == 1:
        by_method = {"GET": "search-type", "POST": "create", "PUT": "update", "DELETE": "delete"}
        return by_method.get(method, "operation"), rtype, None
    if n == 2 and parts[1] == "_search":
        return "search-type", rtype, None
    if n == 2 and parts[1] == "_history":
        return "history-type", rtype, None
    rid = parts[1]
    if n == 2:
        by_method = {"GET": "read", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
        return by_method.get(method, "operation"), rtype, rid
    if n == 3 and parts[2] == "_history":
        return "history-instance", rtype, rid
    if n == 4 and parts[2] == "_history":
        return "vread", rtype, rid
    return "operation", rtype, rid


def actor_of(
    principal: Principal | None, address: str | None, iua_header: str | None = None
) -> Actor:
    """The requestor: a signed-in user (with its fhirUser and client), a client, or nobody;
    for a client, the user and purpose of use a federating hub asserts in ``iua_header``
    (``hub.federation.requester``)."""
    if principal is None:
        return Actor("anonymous", "anonymous", address=address)
    origin = Requester.from_header(iua_header)
    fhir_user = getattr(principal, "fhir_user", None)
    client_id = getattr(principal, "client_id", None)
    is_user = fhir_user is not None or (client_id is not None and client_id != principal.subject)
    return Actor(
        principal.subject,
        "user" if is_user else "client",
        address=principal.address or address,
        fhir_user=fhir_user,
        client_id=client_id,
        originating_user=OriginatingUser(
            origin.subject_name, origin.subject_id, origin.home_community_id
        )
        if origin is not None
        else None,
        purpose_of_use=origin.purpose_of_use if origin is not None else (),
    )


class AuditMiddleware:
    def __init__(self, app: ASGIApp, trail: AuditTrail, prefix: str = "/fhir") -> None:
        self.app = app
        self.trail = trail
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or not self.trail.enabled
            or not (path == self.prefix or path.startswith(self.prefix + "/"))
        ):
            await self.app(scope, receive, send)
            return
        kind = classify(scope["method"], path[len(self.prefix) :])
        if kind is None:
            await self.app(scope, receive, send)
            return
        held: list[Message] = []
        passing = False  # a native Binary's bytes: recorded at the start, then streamed
        refused = False

        async def hold(message: Message) -> None:
            nonlocal passing, refused
            if passing:
                if not refused:
                    await send(message)
                return
            held.append(message)
            if message["type"] == "http.response.start" and not _is_json(message):
                passing = True
                refused = not await self._record_or_refuse(scope, kind, held, send)
                if not refused:
                    for kept in held:
                        await send(kept)

        try:
            await self.app(scope, receive, hold)
        finally:
            if not passing and await self._record_or_refuse(scope, kind, held, send):
                for message in held:
                    await send(message)

    async def _record_or_refuse(
        self, scope: Scope, kind: tuple[str, str | None, str | None], held: list[Message],
        send: Send,
    ) -> bool:  # fmt: skip
        """Record the event; when the journal cannot be written, send the refusal instead (the
        interaction is refused rather than answered unrecorded) and return ``False``."""
        try:
            await self._record(scope, kind, held)
        except AuditUnavailable as exc:
            await send(
                {
                    "type": "http.response.start",
                    "status": exc.status,
                    "headers": [(b"content-type", b"application/fhir+json")],
                }
            )
            body = orjson.dumps(exc.operation_outcome())
            await send({"type": "http.response.body", "body": body})
            return False
        return True

    async def _record(
        self, scope: Scope, kind: tuple[str, str | None, str | None], held: list[Message]
    ) -> None:
        interaction, rtype, rid = kind
        start = next((m for m in held if m["type"] == "http.response.start"), None)
        status = int(start["status"]) if start else 500
        body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
        headers: dict[bytes, bytes] = dict(start.get("headers", [])) if start else {}
        state: Any = scope.get("state", {})
        principal = state.get("principal") if isinstance(state, dict) else None
        client = scope.get("client")
        iua = dict(scope.get("headers", [])).get(_IUA)
        actor = actor_of(principal, client[0] if client else None, iua and iua.decode("latin-1"))
        federated = state.get("federated") if isinstance(state, dict) else None
        resources: list[str] = []
        patients: list[str] = []
        query = None
        if rtype and rid:
            resources.append(f"{rtype}/{rid}")
        elif interaction == "create" and b"location" in headers:
            location = headers[b"location"].decode("latin-1").split("/_history")[0]
            resources.append("/".join(location.rsplit("/", 2)[-2:]))
        if interaction == "transaction":
            match = _BUNDLE_TYPE.search(body[:2000])
            interaction = match[1].decode() if match else interaction
        if interaction.startswith(("search", "history")) or interaction == "operation":
            qs = scope.get("query_string", b"").decode("latin-1")
            query = f"{rtype or ''}?{qs}" if interaction.startswith("search") else None
        description = None
        sites: list[tuple[str, str | None, str]] = []
        if federated is not None:  # the route's result: local patients, partners, purpose
            actor = replace(actor, purpose_of_use=federated.requester.purpose_of_use)
            patients = list(federated.patients)
            sites = [(r.site, r.endpoint, r.summary()) for r in federated.reports if r.endpoint]
        if status < 400 and federated is None:
            patients = [m.decode() for m in _PATIENT_REF.findall(body)]
            patients += [f"Patient/{m.decode()}" for m in _PATIENT_RES.findall(body)]
            patients += [m.decode() for m in _PATIENT_LOCATION.findall(body)]
            if rtype == "Patient" and rid:
                patients.insert(0, f"Patient/{rid}")
        elif status >= 400:
            found = _DIAGNOSTICS.search(body)
            description = found[1].decode("utf-8", "replace") if found else f"HTTP {status}"
        record = self.trail.rest
        kwargs: dict[str, Any] = {
            "status": status,
            "outcome_desc": description,
            "patients": patients,
            "resources": resources,
            "query": query,
            "sites": sites,
        }
        if self.trail.journal is not None and self.trail.journal.sync == "always":
            await run_in_threadpool(record, actor, interaction, **kwargs)
        else:
            record(actor, interaction, **kwargs)
