"""The ``/fhir`` routes: parse the HTTP request, call one ``FhirService`` method, render.

FHIR R4 http.html. Every error below ``/fhir`` is an ``OperationOutcome`` (see ``hub.http.app``).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Depends, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from hub.auth import Principal
from hub.errors import InvalidRequest, NotFound, UnsupportedMediaType
from hub.fhir import bundles
from hub.fhir.service import FhirService, WriteResult
from hub.fhir.transaction import BundleProcessor, PreferReturn
from hub.http import openapi
from hub.http.binaries import is_native
from hub.http.deps import HubState, authenticate, hub_state
from hub.http.openapi import IF_MATCH, IF_NONE_EXIST, IF_NONE_MATCH, PREFER, operation
from hub.ports import StoredResource

FHIR_JSON = "application/fhir+json; charset=utf-8"
_JSON_TYPES = ("application/fhir+json", "application/json", "application/json-patch+json")

router = APIRouter(prefix="/fhir")
PrincipalDep = Annotated[Principal, Depends(authenticate)]
StateDep = Annotated[HubState, Depends(hub_state)]
# Path parameters: the OpenAPI schema says what is valid; the service answers anything else with
# an OperationOutcome (404 for an unserved type), so no validation happens here.
ResourceType = Annotated[
    str, Path(description="A served resource type", json_schema_extra=openapi.RESOURCE_TYPE_SCHEMA)
]
ResourceId = Annotated[
    str, Path(description="A logical id (datatypes.html#id)", json_schema_extra=openapi.ID_SCHEMA)
]
VersionId = Annotated[
    str, Path(description="A version id", json_schema_extra=openapi.VERSION_SCHEMA)
]


def fhir_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(content, status_code=status, media_type=FHIR_JSON, headers=headers)


def _resource_headers(state: HubState, stored: StoredResource) -> dict[str, str]:
    return {
        "ETag": bundles.etag(stored),
        "Last-Modified": bundles.http_date(stored.last_updated),
    }


def _prefer(request: Request) -> tuple[PreferReturn | None, bool]:
    """``Prefer: return=...`` and ``handling=strict|lenient``
    (http.html#ops, search.html#errors)."""
    ret: PreferReturn | None = None
    strict = False
    for part in request.headers.get("prefer", "").split(";"):
        for token in part.split(","):
            key, _, value = token.strip().partition("=")
            value = value.strip().strip('"')
            if key == "return" and value in ("minimal", "representation", "OperationOutcome"):
                ret = value  # type: ignore[assignment]
            elif key == "handling":
                strict = value == "strict"
    return ret, strict


async def read_json(request: Request, state: HubState, *, patch: bool = False) -> Any:
    """The request body as JSON, refusing other media types (415), oversize bodies (413) and
    malformed JSON (400)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype not in _JSON_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {ctype} is not supported; use application/fhir+json"
        )
    if patch and ctype != "application/json-patch+json":
        raise UnsupportedMediaType("PATCH needs Content-Type application/json-patch+json")
    raw = await state.read_body(request)
    if not raw:
        raise InvalidRequest.at("The request body is empty")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest.at(f"The body is not valid JSON: {exc}") from None


def _is_json(request: Request) -> bool:
    """A FHIR JSON body (or one that does not say, as ``read_json`` accepts)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return not ctype or ctype in _JSON_TYPES


def _written(state: HubState, request: Request, result: WriteResult) -> Response:
    prefer, _ = _prefer(request)
    stored = result.stored
    headers = _resource_headers(state, stored)
    headers["Location"] = bundles.location(state.service.options.base_url, stored)
    status = 201 if result.created else 200
    if prefer == "minimal":
        return Response(status_code=status, headers=headers)
    if prefer == "OperationOutcome":
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "information", "code": "informational", "diagnostics": "OK"}],
        }
        return fhir_response(outcome, status, headers)
    assert stored.data is not None
    return fhir_response(stored.data, status, headers)


def query_params(request: Request) -> list[tuple[str, str]]:
    return parse_qsl(request.url.query, keep_blank_values=True)


def _service(state: HubState) -> FhirService:
    return state.service


# --------------------------------------------------------------------------- system level


@router.post("/", include_in_schema=False)  # the base with a trailing slash, as clients send it
@router.post("", **operation(body="bundle", headers=(PREFER,)))
async def batch_or_transaction(
    request: Request, state: StateDep, principal: PrincipalDep
) -> Response:
    """batch / transaction (http.html#transaction)."""
    bundle = await read_json(request, state)
    prefer, _ = _prefer(request)
    processor = BundleProcessor(_service(state))
    out = await run_in_threadpool(processor.process, principal, bundle, prefer or "minimal")
    return fhir_response(out)


@router.get("/", include_in_schema=False)
@router.get("", **operation(query="search", headers=(PREFER,)))
async def search_system(request: Request, state: StateDep, principal: PrincipalDep) -> Response:
    """search-system (http.html#search)."""
    _, strict = _prefer(request)
    out = await run_in_threadpool(
        _service(state).search, principal, None, query_params(request), strict=strict
    )
    return fhir_response(out)


@router.get("/_history", **operation(query="history"))
async def history_system(request: Request, state: StateDep, principal: PrincipalDep) -> Response:
    """history-system (http.html#history)."""
    out = await run_in_threadpool(
        _service(state).history, principal, None, None, query_params(request)
    )
    return fhir_response(out)


# --------------------------------------------------------------------------- type level


@router.get("/{resource_type}", **operation(query="search", headers=(PREFER,)))
async def search_type(
    resource_type: ResourceType, request: Request, state: StateDep, principal: PrincipalDep
) -> Response:
    """search-type by GET (http.html#search)."""
    _, strict = _prefer(request)
    out = await run_in_threadpool(
        _service(state).search, principal, resource_type, query_params(request), strict=strict
    )
    return fhir_response(out)


@router.post("/{resource_type}/_search", **operation(body="form", headers=(PREFER,)))
async def search_type_post(
    resource_type: ResourceType, request: Request, state: StateDep, principal: PrincipalDep
) -> Response:
    """search-type by POST with a form body (http.html#search): URL and body parameters combine."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType(
            "POST _search needs Content-Type application/x-www-form-urlencoded"
        )
    raw = await state.read_body(request)
    params = query_params(request) + parse_qsl(
        raw.decode("utf-8", "replace"), keep_blank_values=True
    )
    _, strict = _prefer(request)
    out = await run_in_threadpool(
        _service(state).search, principal, resource_type, params, strict=strict
    )
    return fhir_response(out)


@router.post(
    "/{resource_type}",
    **operation(
        body="resource", headers=(IF_NONE_EXIST, PREFER), success=201, description="Created"
    ),
)
async def create(
    resource_type: ResourceType, request: Request, state: StateDep, principal: PrincipalDep
) -> Response:
    """create, conditional with If-None-Exist (http.html#create); a Binary in its native format
    is streamed to the blob store (binary.html#rest, ``hub.http.binaries``)."""
    if resource_type == "Binary" and state.binaries is not None and not _is_json(request):
        written = await state.binaries.create(request, _service(state), principal)
        return _written(state, request, written)
    body = await read_json(request, state)
    if_none_exist = request.headers.get("if-none-exist")
    result = await run_in_threadpool(
        _service(state).create, principal, resource_type, body, if_none_exist=if_none_exist
    )
    return _written(state, request, result)


@router.put(
    "/{resource_type}",
    **operation(query="condition", body="resource", headers=(PREFER,)),
)
async def conditional_update(
    resource_type: ResourceType, request: Request, state: StateDep, principal: PrincipalDep
) -> Response:
    """conditional update (http.html#cond-update)."""
    body = await read_json(request, state)
    result = await run_in_threadpool(
        _service(state).conditional_update, principal, resource_type, request.url.query, body
    )
    return _written(state, request, result)


@router.delete(
    "/{resource_type}",
    **operation(query="condition", success=204, description="Deleted", returns_body=False),
)
async def conditional_delete(
    resource_type: ResourceType, request: Request, state: StateDep, principal: PrincipalDep
) -> Response:
    """conditional delete (http.html#3.1.0.7.1)."""
    await run_in_threadpool(
        _service(state).conditional_delete, principal, resource_type, request.url.query
    )
    return Response(status_code=204)


@router.get("/{resource_type}/_history", **operation(query="history"))
async def history_type(
    resource_type: ResourceType, request: Request, state: StateDep, principal: PrincipalDep
) -> Response:
    """history-type (http.html#history)."""
    out = await run_in_threadpool(
        _service(state).history, principal, resource_type, None, query_params(request)
    )
    return fhir_response(out)


# --------------------------------------------------------------------------- instance level


@router.get("/{resource_type}/{rid}", **operation(headers=(IF_NONE_MATCH,)))
async def read(
    resource_type: ResourceType,
    rid: ResourceId,
    request: Request,
    state: StateDep,
    principal: PrincipalDep,
) -> Response:
    """read (http.html#read), honouring If-None-Match with 304; a Binary is answered in its
    native format unless FHIR JSON is asked for (binary.html#rest)."""
    stored = await run_in_threadpool(_service(state).read, principal, resource_type, rid)
    headers = _resource_headers(state, stored)
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    assert stored.data is not None
    if resource_type == "Binary" and state.binaries is not None:
        native = is_native(request)
        return await run_in_threadpool(state.binaries.response, stored, native, headers)
    return fhir_response(stored.data, 200, headers)


@router.put(
    "/{resource_type}/{rid}",
    **operation(body="resource", headers=(IF_MATCH, PREFER)),
)
async def update(
    resource_type: ResourceType,
    rid: ResourceId,
    request: Request,
    state: StateDep,
    principal: PrincipalDep,
) -> Response:
    """update / update-as-create (http.html#update)."""
    body = await read_json(request, state)
    result = await run_in_threadpool(
        _service(state).update,
        principal,
        resource_type,
        rid,
        body,
        if_match=request.headers.get("if-match"),
    )
    return _written(state, request, result)


@router.patch("/{resource_type}/{rid}", **operation(body="patch", headers=(IF_MATCH, PREFER)))
async def patch(
    resource_type: ResourceType,
    rid: ResourceId,
    request: Request,
    state: StateDep,
    principal: PrincipalDep,
) -> Response:
    """patch with JSON Patch (http.html#patch)."""
    body = await read_json(request, state, patch=True)
    result = await run_in_threadpool(
        _service(state).patch,
        principal,
        resource_type,
        rid,
        body,
        if_match=request.headers.get("if-match"),
    )
    return _written(state, request, result)


@router.delete(
    "/{resource_type}/{rid}",
    **operation(success=204, description="Deleted", returns_body=False),
)
async def delete(
    resource_type: ResourceType, rid: ResourceId, state: StateDep, principal: PrincipalDep
) -> Response:
    """delete (http.html#delete)."""
    await run_in_threadpool(_service(state).delete, principal, resource_type, rid)
    return Response(status_code=204)


@router.get("/{resource_type}/{rid}/_history", **operation(query="history"))
async def history_instance(
    resource_type: ResourceType,
    rid: ResourceId,
    request: Request,
    state: StateDep,
    principal: PrincipalDep,
) -> Response:
    """history-instance (http.html#history)."""
    out = await run_in_threadpool(
        _service(state).history, principal, resource_type, rid, query_params(request)
    )
    return fhir_response(out)


@router.get("/{resource_type}/{rid}/_history/{vid}", **operation())
async def vread(
    resource_type: ResourceType,
    rid: ResourceId,
    vid: VersionId,
    state: StateDep,
    principal: PrincipalDep,
) -> Response:
    """vread (http.html#vread)."""
    stored = await run_in_threadpool(_service(state).vread, principal, resource_type, rid, vid)
    assert stored.data is not None
    return fhir_response(stored.data, 200, _resource_headers(state, stored))


@router.api_route(
    "/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
)
async def unknown(path: str, principal: PrincipalDep) -> Response:
    """Anything else below /fhir is not a FHIR interaction PixelHub offers."""
    raise NotFound(f"No FHIR interaction at /fhir/{path}")
