"""The OAuth 2.0 / SMART routes: ``/auth/authorize`` with its sign-in, patient-picker and
consent forms, ``/auth/logout``, ``/auth/token``, ``/auth/introspect``, ``/auth/revoke``,
``/auth/jwks``, the EHR's launch API ``/auth/launch``,
``/fhir/.well-known/smart-configuration`` and the issuer's OpenID Connect discovery document.

Thin by design: decode the form (RFC 6749 Appendix B, each parameter at most once, §3.2), call
``hub.smart.AuthorizationServer``, render JSON with ``Cache-Control: no-store`` (RFC 6749 §5.1).
Only ``/auth/launch`` takes a bearer token (with the ``pixelhub.launch`` scope, or a static
operations token); the token endpoints authenticate the client instead.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

import jwt
import orjson
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from hub.errors import HubError
from hub.http import auth_pages as pages
from hub.http.deps import hub_state
from hub.smart import AuthorizationServer, OAuthError
from hub.smart.authorize import AuthorizeError, CodeFlow, PendingAuthorization
from hub.smart.launch import LAUNCH_API_SCOPE, LaunchError, launch_response, parse_launch_request
from mappings.interaction_to_auditevent import Actor

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


def _client_id(form: dict[str, str], authorization: str | None) -> str:
    """Who asked for a token, for the audit record: ``client_id``, the Basic user (RFC 6749
    §2.3.1) or the client assertion's ``sub`` (RFC 7523 §3); not authenticated here."""
    if form.get("client_id"):
        return form["client_id"]
    if authorization and authorization.lower().startswith("basic "):
        try:
            user = base64.b64decode(authorization[6:].strip(), validate=True).decode()
            return unquote_plus(user.split(":", 1)[0]) or "unknown"
        except (binascii.Error, UnicodeDecodeError):
            return "unknown"
    assertion = form.get("client_assertion", "")
    try:
        sub = jwt.decode(assertion, options={"verify_signature": False}).get("sub")
    except jwt.PyJWTError:
        sub = None
    return str(sub)[:128] if sub else "unknown"


async def _audit_auth(
    request: Request,
    name: str,
    kind: Literal["user", "client"],
    what: Literal["login", "token", "launch"],
    *,
    success: bool,
    reason: str | None = None,
    patient: str | None = None,
) -> None:
    """One AuditEvent for a sign-in, a token request or a launch (issue 7)."""
    trail = hub_state(request).audit
    if trail is None or not trail.enabled:
        return
    address = request.client.host if request.client else None
    await run_in_threadpool(
        trail.authentication,
        Actor(name, kind, address=address),
        what,
        success=success,
        reason=reason,
        patient=f"Patient/{patient}" if patient else None,
    )


@router.post("/auth/token")
async def token(request: Request) -> Response:
    """RFC 6749 §3.2 token endpoint (SMART ``backend-services.html``)."""
    server = _server(request)
    form: dict[str, str] = {}
    authorization = request.headers.get("authorization")
    try:
        form = await _form(request)
        body = await run_in_threadpool(server.token, form, authorization)
    except OAuthError as exc:
        client = _client_id(form, authorization)
        reason = f"{exc.error}: {exc.description}"
        await _audit_auth(request, client, "client", "token", success=False, reason=reason)
        return _error(exc)
    grant = f"grant_type={form.get('grant_type')} scope={body.get('scope', '')}"
    await _audit_auth(
        request,
        _client_id(form, authorization),
        "client",
        "token",
        success=True,
        reason=grant,
        patient=body.get("patient"),
    )
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
_SESSION_COOKIE = "pixelhub_session"  # the sign-in session (online_access, sign-out)
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
            flow.login,
            pending,
            form.get("username", ""),
            form.get("password", ""),
            request.cookies.get(_SESSION_COOKIE),
        )
    except (AuthorizeError, OAuthError) as exc:
        return _form_error(exc)
    username = form.get("username", "")[:64] or "unknown"
    if not ok:
        reason = "wrong user name or password"
        await _audit_auth(request, username, "user", "login", success=False, reason=reason)
        return _html(pages.login_page(pending, "Wrong user name or password."), 401)
    await _audit_auth(request, username, "user", "login", success=True)
    response = await _after_login(flow, pending)
    session = flow.sessions.get(pending.session_id or "")
    if session is not None:
        response.set_cookie(
            _SESSION_COOKIE,
            session.id,
            max_age=max(1, int(session.expires - time.time())),
            path="/auth",
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
    return response


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


@router.get("/auth/logout")
async def logout_form(request: Request) -> Response:
    """A page with the sign-out button (sign-out itself is a POST: no cross-site GET ends it)."""
    session = _flow(request).sessions.get(request.cookies.get(_SESSION_COOKIE, ""))
    return _html(pages.logout_page(session is not None))


@router.post("/auth/logout")
async def logout(request: Request) -> Response:
    """End the browser's sign-in session; its ``online_access`` refresh tokens stop working.
    The cookie is ``SameSite=Lax``, so another site's form cannot post it here."""
    session_id = request.cookies.get(_SESSION_COOKIE)
    if session_id:
        await run_in_threadpool(_flow(request).sessions.end, session_id)
    response = _html(pages.signed_out_page())
    response.delete_cookie(_SESSION_COOKIE, path="/auth")
    return response


# -- the EHR's launch API (SMART App Launch 2.2 app-launch.html §"Launch App: EHR Launch") -----


@router.post("/auth/launch")
async def register_launch(request: Request) -> Response:
    """Register a launch context (JSON: ``patient``, ``encounter``, ``fhirContext``,
    ``need_patient_banner``, ``smart_style_url``, ``user``, ``client_id``); answers 201 with an
    opaque single-use ``launch`` id and its ``expires_in``. Needs a bearer token carrying the
    ``pixelhub.launch`` scope (``client_credentials``) or a static operations token."""
    state = hub_state(request)
    flow = _flow(request)
    address = request.client.host if request.client else None
    try:
        principal = await run_in_threadpool(
            state.policy.authenticate_bearer, request.headers.get("authorization"), address
        )
    except HubError as exc:
        body = {"error": "invalid_token", "error_description": exc.message}
        await _audit_auth(
            request, "anonymous", "client", "launch", success=False, reason=exc.message
        )
        return _json(body, exc.status, exc.headers)
    if "*" not in principal.scopes and LAUNCH_API_SCOPE not in principal.scopes:
        await _audit_auth(
            request,
            principal.subject,
            "client",
            "launch",
            success=False,
            reason=f"needs {LAUNCH_API_SCOPE}",
        )
        challenge = (
            f'Bearer realm="pixelhub", error="insufficient_scope", scope="{LAUNCH_API_SCOPE}"'
        )
        body = {"error": "insufficient_scope", "error_description": f"needs {LAUNCH_API_SCOPE}"}
        return _json(body, 403, {"WWW-Authenticate": challenge})
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        body = {"error": "invalid_request", "error_description": "the body must be JSON"}
        return _json(body, 415)
    raw = await state.read_body(request)
    try:
        context = parse_launch_request(orjson.loads(raw))
        launch_id = await run_in_threadpool(flow.register_launch, context)
    except (orjson.JSONDecodeError, LaunchError) as exc:
        await _audit_auth(
            request, principal.subject, "client", "launch", success=False, reason=str(exc)
        )
        return _json({"error": "invalid_request", "error_description": str(exc)}, 400)
    await _audit_auth(
        request, principal.subject, "client", "launch", success=True, patient=context.patient
    )
    return _json(launch_response(launch_id, flow.launches.lifetime), 201)


@router.get("/auth/.well-known/openid-configuration")
async def openid_configuration(request: Request) -> Response:
    """OpenID Connect Discovery 1.0 §4 at the issuer."""
    return Response(
        orjson.dumps(_server(request).openid_configuration()), media_type="application/json"
    )
