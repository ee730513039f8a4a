"""The FastAPI application: routes, the OperationOutcome error handlers, health and metrics."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from hub.errors import HubError, Issue, NotAcceptable, operation_outcome
from hub.http import audit_routes, auth_routes, federation_routes, fhir_routes, openapi
from hub.http.app_routes import AppSite, app_router
from hub.http.audit import AuditMiddleware
from hub.http.deps import HubState, authenticate, hub_state

log = logging.getLogger("pixelhub.http")
_XML = ("xml", "text/xml", "application/xml", "application/fhir+xml")


def _outcome_response(
    status: int, outcome: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(outcome), status_code=status, media_type=fhir_routes.FHIR_JSON, headers=headers
    )


def _check_format(request: Request) -> None:
    """Only JSON is served: asking for XML alone is 406 (http.html#mime-type)."""
    fmt = request.query_params.get("_format")
    if fmt and fmt.lower() in _XML:
        raise NotAcceptable(
            f"_format={fmt} is not supported; PixelHub serves application/fhir+json"
        )
    accept = request.headers.get("accept", "")
    types = [a.split(";")[0].strip().lower() for a in accept.split(",") if a.strip()]
    if types and all(t in _XML for t in types):
        raise NotAcceptable("Only application/fhir+json is served")


# CORS (Fetch Standard §3.2) for browser apps: the paths a SMART app calls from the browser.
_CORS_EXACT = frozenset({"/fhir", "/auth/token", "/auth/revoke", "/auth/jwks"})
_CORS_PREFIXES = ("/fhir/", "/dicomweb/", "/auth/.well-known/", "/.well-known/")
_CORS_HEADERS = (
    "Authorization",
    "Prefer",
    "If-Match",
    "If-None-Match",
    "If-None-Exist",
    "If-Modified-Since",
)
_CORS_EXPOSED = ("Location", "Content-Location", "ETag", "Last-Modified", "WWW-Authenticate")


class PathCors:
    """Starlette's ``CORSMiddleware`` on the browser-facing paths only, never with credentials
    (bearer tokens travel in ``Authorization``; no cookie is needed there), so an allowed origin
    is echoed and ``*`` is never paired with ``Access-Control-Allow-Credentials``."""

    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=_CORS_HEADERS,
            allow_credentials=False,
            expose_headers=_CORS_EXPOSED,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path in _CORS_EXACT or path.startswith(_CORS_PREFIXES):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _has_partners(state: HubState) -> bool:
    """Whether federated search has an enabled partner (the app offers "include partner
    sites" only then)."""
    return state.federation is not None and bool(state.federation.partners.enabled())


def create_app(
    state: HubState,
    *,
    cors_origins: Sequence[str] = (),
    routers: Sequence[APIRouter] = (),
    app_site: AppSite | None = None,
) -> FastAPI:
    """The app; ``routers`` are the adapters' web services (``hub.channels``), e.g. DICOMweb;
    ``app_site`` the imaging timeline web app served at ``/app/`` (public static files)."""
    app = FastAPI(
        title="PixelHub",
        version=str(state.capability_statement["software"]["version"]),
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(_check_format)],
    )
    app.state.hub = state

    @app.exception_handler(HubError)
    async def _hub_error(request: Request, exc: HubError) -> Response:
        return _outcome_response(exc.status, exc.operation_outcome(), exc.headers or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
        issue = Issue(str(exc.detail), code=code)
        return _outcome_response(
            exc.status_code, operation_outcome([issue]), dict(exc.headers or {})
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        issues = [
            Issue(str(e.get("msg")), expression=(".".join(map(str, e.get("loc", ()))),))
            for e in exc.errors()
        ]
        return _outcome_response(400, operation_outcome(issues))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        issue = Issue("Internal error; the incident is logged", code="exception", severity="fatal")
        return _outcome_response(500, operation_outcome([issue]))

    app.middleware("http")(state.metrics.middleware)
    if state.audit is not None:  # one AuditEvent per /fhir interaction (issue 7)
        app.add_middleware(AuditMiddleware, trail=state.audit)
    if cors_origins:  # outermost but for error handling, so 401/403 answers carry CORS too
        app.add_middleware(PathCors, origins=cors_origins)

    @app.get("/fhir/metadata", response_class=openapi.FhirJsonResponse)
    async def metadata() -> Response:
        """capabilities (http.html#capabilities); open to all, as FHIR requires."""
        return fhir_routes.fhir_response(state.capability_statement)

    @app.get("/health")
    async def health(request: Request) -> Response:
        """Readiness: 200 when the store answers and projectors keep up, else 503."""
        ready, body = hub_state(request).health.readiness()
        return Response(
            orjson.dumps(body),
            status_code=200 if ready else 503,
            media_type="application/health+json",
        )

    @app.get("/health/live")
    async def live() -> Response:
        """Liveness: the process answers."""
        return Response(b'{"status":"pass"}', media_type="application/health+json")

    @app.get("/metrics", dependencies=[Depends(authenticate)])
    async def metrics(request: Request) -> Response:
        return Response(hub_state(request).metrics.render(), media_type="text/plain; version=0.0.4")

    if state.auth_server is not None:  # before /fhir/{type}/{id}, which would match .well-known
        app.include_router(auth_routes.router)
    app.include_router(audit_routes.router)
    if app_site is not None:
        app.include_router(app_router(app_site, lambda: _has_partners(state)))
    app.include_router(federation_routes.router)  # before /fhir/{type}/{id} matches it
    for router in routers:
        app.include_router(router)
    app.include_router(fhir_routes.router)
    generate_openapi = app.openapi

    def _openapi() -> dict[str, Any]:
        """FastAPI's document plus the bearer security scheme the /fhir operations name."""
        if app.openapi_schema is None:
            document = generate_openapi()
            components = document.setdefault("components", {})
            components.setdefault("securitySchemes", {}).update(openapi.security_schemes())
        return app.openapi_schema or generate_openapi()

    app.openapi = _openapi  # type: ignore[method-assign]
    return app
