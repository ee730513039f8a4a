"""What every HTTP route depends on: the hub's state and the one authentication dependency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request

from hub.audit import AuditTrail
from hub.auth import AccessPolicy, Principal
from hub.errors import PayloadTooLarge
from hub.federation.search import FederatedSearch
from hub.fhir.service import FhirService
from hub.http.binaries import NativeBinaries
from hub.smart import AuthorizationServer


@dataclass
class HubState:
    """The composition root's objects, shared by all routes of one app."""

    service: FhirService
    policy: AccessPolicy
    max_body_bytes: int
    capability_statement: dict[str, Any]
    health: Any  # hub.health.HealthCheck
    metrics: Any  # hub.http.metrics.HttpMetrics
    auth_server: AuthorizationServer | None = None  # SMART token endpoints (hub.smart)
    audit: AuditTrail | None = None  # the audit trail every door writes to (hub.audit)
    binaries: NativeBinaries | None = None  # Binary content in the blob store (hub.http.binaries)
    federation: FederatedSearch | None = None  # searches across partner sites (hub.federation)

    async def read_body(self, request: Request) -> bytes:
        """The request body, refused with 413 as soon as it passes ``max_body_bytes``."""
        declared = request.headers.get("content-length", "")
        # ASCII digits only: ``str.isdigit`` accepts "²", which ``int`` refuses
        if declared.isascii() and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise PayloadTooLarge(f"The body is larger than {self.max_body_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise PayloadTooLarge(f"The body is larger than {self.max_body_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


def hub_state(request: Request) -> HubState:
    state: HubState = request.app.state.hub
    return state


def authenticate(request: Request) -> Principal:
    """The one authentication seam of every protected HTTP route."""
    state = hub_state(request)
    address = request.client.host if request.client else None
    principal = state.policy.authenticate_bearer(request.headers.get("authorization"), address)
    request.state.principal = principal  # for the audit record (hub.http.audit)
    return principal
