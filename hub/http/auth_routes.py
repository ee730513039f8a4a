"""The OAuth 2.0 / SMART routes: ``/auth/authorize`` with its sign-in, patient-picker and
consent forms, ``/auth/token``, ``/auth/introspect``, ``/auth/revoke``, ``/auth/jwks``,
``/fhir/.well-known/smart-configuration`` and the issuer's OpenID Connect discovery document.

Thin by design: decode the form (RFC 6749 Appendix B, each parameter at most once, §3.2), call
``hub.smart.AuthorizationServer``, render JSON with ``Cache-Control: no-store`` (RFC 6749 §5.1).
None of these routes takes a bearer token: the token endpoints authenticate the client instead.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from hub.http import auth_pages as pages
from hub.http.deps import hub_state
from hub.smart import AuthorizationServer, OAuthError
from hub.smart.authorize import AuthorizeError, CodeFlow, PendingAuthorization

router = APIRouter(include_in_schema=False)
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_MAX_FORM_BYTES = 64 * 1024


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={**_NO_STORE, **(headers or {})},
    )


def _server(request: Request) -> AuthorizationServer:
    server = hub_state(request).auth_server
    if server is None:  # pragma: no cover - composition always wires one
        raise RuntimeError("no authorization server configured")
    return server


async def _form(request: Request) -> dict[str, str]:
    """The urlencoded body; anything else, or a repeated parameter, is ``invalid_request``."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "the body must be application/x-www-form-urlencoded")
    body = await hub_state(request).read_body(request)
    if len(body) > _MAX_FORM_BYTES:
        raise OAuthError("invalid_request", "the request body is too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "the body is not a valid form") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise OAuthError("invalid_request", f"parameter {name!r} is repeated")
        form[name] = value
    return form


def _error(exc: OAuthError) -> Response:
    return _json(exc.body(), exc.status, exc.headers)


@router.post("/auth/token")
async def token(request: Request) -> Response:
    """RFC 6749 §3.2 token endpoint (SMART ``backend-services.html``)."""
    server = _server(request)
    try:
        form = await _form(request)
        body = await run_in_threadpool(server.token, form, request.headers.get("authorization"))
    except OAuthError as exc:
        return _error(exc)
    return _json(body)


@router.post("/auth/introspect")
async def introspect(request: Request) -> Response:
    """RFC 7662 token introspection."""
    server = _server(request)
    try:
        form = await _form(request)
        body = await run_in_threadpool(
            server.introspect, form, request.headers.get("authorization")
        )
    except OAuthError as exc:
        return _error(exc)
    return _json(body)


@router.post("/auth/revoke")
async def revoke(request: Request) -> Response:
    """RFC 7009 token revocation: 200 with an empty body."""
    server = _server(request)
    try:
        form = await _form(request)
        await run_in_threadpool(server.revoke, form, request.headers.get("authorization"))
    except OAuthError as exc:
        return _error(exc)
    return Response(b"", headers=_NO_STORE)


@router.get("/auth/jwks")
async def jwks(request: Request) -> Response:
    """The public keys that sign PixelHub's tokens (RFC 7517 §5)."""
    body = await run_in_threadpool(_server(request).keys.jwks)
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/fhir/.well-known/smart-configuration")
async def smart_configuration(request: Request) -> Response:
    """SMART App Launch 2.2 ``conformance.html``: the server's SMART metadata, open to all."""
    return Response(
        orjson.dumps(_server(request).smart_configuration()), media_type="application/json"
    )


# -- the authorization endpoint (SMART App Launch 2.2 app-launch.html) -------------------------

_COOKIE = "pixelhub_authz"
_PAGE_HEADERS = {
    **_NO_STORE,
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


def _flow(request: Request) -> CodeFlow:
    flow = _server(request).code_flow
    if flow is None:  # pragma: no cover - routes are only mounted with a code flow
        raise RuntimeError("no authorization-code flow configured")
    return flow


def _html(body: str, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="text/html", headers=_PAGE_HEADERS)


def _redirect(uri: str, params: dict[str, str]) -> Response:
    """303 to the app's registered redirect URI with ``params`` added (RFC 6749 §4.1.2)."""
    parts = urlsplit(uri)
    query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), *params.items()])
    return Response(
        status_code=303,
        headers={**_NO_STORE, "Location": urlunsplit(parts._replace(query=query))},
    )


def _authorize_error(exc: AuthorizeError) -> Response:
    if exc.redirect_uri is None:  # never redirect to an unverified URI (RFC 6749 §4.1.2.1)
        return _html(pages.error_page(exc.description), 400)
    params = {"error": exc.error, "error_description": exc.description}
    if exc.state:
        params["state"] = exc.state
    return _redirect(exc.redirect_uri, params)


async def _after_login(flow: CodeFlow, pending: PendingAuthorization) -> Response:
    if pending.needs_patient:
        patients = await run_in_threadpool(flow.patients.list_patients)
        return _html(pages.patient_page(pending, patients))
    display = None
    if pending.patient:
        display = await run_in_threadpool(flow.patients.display, pending.patient)
    return _html(pages.consent_page(pending, display))


async def _authorize(request: Request, params: dict[str, str]) -> Response:
    flow = _flow(request)
    try:
        pending = flow.begin(params)
    except AuthorizeError as exc:
        return _authorize_error(exc)
    response = _html(pages.login_page(pending))
    response.set_cookie(
        _COOKIE,
        pending.browser_secret,
        max_age=600,
        path="/auth",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/auth/authorize")
async def authorize_get(request: Request) -> Response:
    """The authorization endpoint (RFC 6749 §3.1), by redirect."""
    params: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name in params:
            return _html(pages.error_page(f"parameter {name!r} is repeated"), 400)
        params[name] = value
    return await _authorize(request, params)


@router.post("/auth/authorize")
async def authorize_post(request: Request) -> Response:
    """The authorization endpoint by form post (SMART capability ``authorize-post``)."""
    try:
        params = await _form(request)
    except OAuthError as exc:
        return _html(pages.error_page(exc.description), 400)
    return await _authorize(request, params)


async def _pending_form(request: Request) -> tuple[CodeFlow, PendingAuthorization, dict[str, str]]:
    form = await _form(request)
    flow = _flow(request)
    pending = flow.pending(
        form.get("request", ""), request.cookies.get(_COOKIE), form.get("csrf", "")
    )
    return flow, pending, form


def _form_error(exc: Exception) -> Response:
    if isinstance(exc, AuthorizeError):
        return _authorize_error(exc)
    assert isinstance(exc, OAuthError)
    return _html(pages.error_page(exc.description), 400)


@router.post("/auth/login")
async def login(request: Request) -> Response:
    """The sign-in form's target."""
    try:
        flow, pending, form = await _pending_form(request)
        ok = await run_in_threadpool(
            flow.login, pending, form.get("username", ""), form.get("password", "")
        )
    except (AuthorizeError, OAuthError) as exc:
        return _form_error(exc)
    if not ok:
        return _html(pages.login_page(pending, "Wrong user name or password."), 401)
    return await _after_login(flow, pending)


@router.post("/auth/patient")
async def choose_patient(request: Request) -> Response:
    """The patient picker's target (SMART ``launch/patient`` in a standalone launch)."""
    try:
        flow, pending, form = await _pending_form(request)
        ok = await run_in_threadpool(flow.choose_patient, pending, form.get("patient", ""))
    except (AuthorizeError, OAuthError) as exc:
        return _form_error(exc)
    if not ok:
        patients = await run_in_threadpool(flow.patients.list_patients)
        return _html(pages.patient_page(pending, patients, "Choose a patient."), 400)
    return await _after_login(flow, pending)


@router.post("/auth/consent")
async def consent(request: Request) -> Response:
    """The consent form's target: back to the app with a code, or with ``access_denied``."""
    try:
        flow, pending, form = await _pending_form(request)
        if form.get("decision") != "approve":
            flow.drop(pending)
            raise AuthorizeError(
                "access_denied", "the user denied access", pending.redirect_uri, pending.state
            )
        code = flow.approve(pending)
    except (AuthorizeError, OAuthError) as exc:
        return _form_error(exc)
    return _redirect(pending.redirect_uri, {"code": code, "state": pending.state})


@router.get("/auth/.well-known/openid-configuration")
async def openid_configuration(request: Request) -> Response:
    """OpenID Connect Discovery 1.0 §4 at the issuer."""
    return Response(
        orjson.dumps(_server(request).openid_configuration()), media_type="application/json"
    )
