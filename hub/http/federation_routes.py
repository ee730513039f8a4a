"""``/fhir/federated/<type>`` (issue 12: one search across partner sites) and the PIXm
``/fhir/Patient/$ihe-pix`` partners ask (``hub.federation``). The audit middleware records both;
a federated search leaves its site reports in ``request.state.federated`` for it."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from hub.errors import NotFound
from hub.federation.pix import ihe_pix
from hub.http.fhir_routes import (
    PrincipalDep,
    ResourceType,
    StateDep,
    fhir_response,
    query_params,
)
from hub.http.openapi import PREFER, operation

router = APIRouter(prefix="/fhir")


@router.get("/federated/{resource_type}", **operation(query="search", headers=(PREFER,)))
async def federated_search(
    resource_type: ResourceType, request: Request, state: StateDep, principal: PrincipalDep
) -> Response:
    """Search this hub and its partners at once (``hub.federation.search``)."""
    if state.federation is None:
        raise NotFound("Federated search is not enabled on this hub")
    result = await state.federation.search(
        principal, resource_type, query_params(request), request.headers
    )
    request.state.federated = result
    return fhir_response(result.bundle)


@router.get("/Patient/$ihe-pix", **operation(query="search"))
async def pixm_query(request: Request, state: StateDep, principal: PrincipalDep) -> Response:
    """PIXm Cross-reference Query (IHE ITI-83)."""
    out = await run_in_threadpool(ihe_pix, state.service, principal, query_params(request))
    return fhir_response(out)
