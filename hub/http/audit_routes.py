"""``GET /audit/export``: the audit log of a time range as NDJSON, for auditors (issue 7).

Allowed to a principal whose scopes grant searching ``AuditEvent`` without restriction (the
auditor's ``user/AuditEvent.rs``, a static operations token); a patient-confined grant is refused
(patients search their own events through ``/fhir/AuditEvent``). The export itself is recorded.
Parameters ``since`` and ``until`` (exclusive) are ISO 8601 instants in UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from hub.audit.export import export_events
from hub.auth import Principal
from hub.errors import Forbidden, InvalidRequest
from hub.http.audit import actor_of
from hub.http.deps import HubState, authenticate, hub_state

router = APIRouter(prefix="/audit")
NDJSON = "application/fhir+ndjson"


def _instant(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest.at(f"{name} must be an ISO 8601 date or instant") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@router.get("/export")
async def export(
    request: Request,
    state: Annotated[HubState, Depends(hub_state)],
    principal: Annotated[Principal, Depends(authenticate)],
    since: Annotated[str | None, Query()] = None,
    until: Annotated[str | None, Query()] = None,
) -> StreamingResponse:
    trail = state.audit
    if trail is None or trail.directory is None:
        raise InvalidRequest.at("The audit trail is switched off (PIXELHUB_AUDIT_ENABLED)")
    actor = actor_of(principal, request.client.host if request.client else None)
    query = f"AuditEvent?{request.url.query}"
    try:
        access = state.policy.check(principal, "search", "AuditEvent")
        if getattr(access, "restricted", False):
            raise Forbidden("Exporting the audit log needs an unrestricted AuditEvent scope")
        start, end = _instant(since, "since"), _instant(until, "until")
    except (Forbidden, InvalidRequest) as exc:
        await run_in_threadpool(
            trail.rest, actor, "operation", status=exc.status, outcome_desc=exc.message, query=query
        )
        raise
    await run_in_threadpool(trail.rest, actor, "operation", status=200, query=query)
    lines: Iterator[bytes] = export_events(trail.directory, start, end)
    return StreamingResponse(lines, media_type=NDJSON)
