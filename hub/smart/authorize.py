"""The authorization-code grant with PKCE for SMART apps (SMART App Launch 2.2 ``app-launch.html``
§"Obtain authorization code" and §"Obtain access token"; RFC 6749 §4.1, RFC 7636, RFC 6749 §6).

A browser arrives at ``/auth/authorize``; the request is checked (client, exact redirect URI,
``aud``, PKCE ``S256``, ``state``, scopes) and kept server-side as a ``PendingAuthorization``
bound to a browser cookie and a CSRF token. The user signs in, picks a patient when the app asked
for ``launch/patient`` and the user is no patient, and approves; the app then gets a one-time
code, valid 60 seconds, that only the PKCE verifier turns into tokens. ``offline_access`` brings a
refresh token that is rotated on every use; presenting a rotated one again revokes its family.
``online_access`` brings one bound to the user's sign-in session (``hub.smart.sessions``): it
stops working, and its family's access tokens are revoked, when the session ends.

EHR launch (§"Launch App: EHR Launch"): a ``launch`` parameter with the ``launch`` scope names a
context the EHR registered (``hub.smart.launch``); it is spent on first use, its patient needs no
picker, and the token response carries its ``encounter``, ``fhirContext``,
``need_patient_banner`` and ``smart_style_url``.

Kept in this process's memory: pending requests, launches, sessions, codes and refresh tokens (a
restart signs everyone out).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import jwt

from hub.smart.clients import LAUNCH_SCOPES, Client
from hub.smart.launch import LaunchContext, LaunchError, LaunchRegistry
from hub.smart.scopes import parse_scope
from hub.smart.server import AuthorizationServer, OAuthError
from hub.smart.sessions import SessionStore
from hub.smart.users import User, UserStore

CODE_LIFETIME = 60
PENDING_LIFETIME = 600
REFRESH_LIFETIME = 30 * 24 * 3600
MAX_LOGIN_ATTEMPTS = 5
_VERIFIER_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


class PatientDirectory(Protocol):
    """The patients the picker offers (a port; the composition root reads them from FHIR)."""

    def list_patients(self) -> list[tuple[str, str]]:
        """``(id, display name)`` of the patients to offer."""
        ...

    def display(self, patient_id: str) -> str | None:
        """The display name of a patient, ``None`` when there is no such patient."""
        ...


class AuthorizeError(Exception):
    """An error at the authorization endpoint. With ``redirect_uri`` it goes back to the app
    (RFC 6749 §4.1.2.1); without, the redirect URI is not trusted and the browser sees a page."""

    def __init__(
        self, error: str, description: str, redirect_uri: str | None = None, state: str = ""
    ) -> None:
        super().__init__(description)
        self.error, self.description = error, description
        self.redirect_uri, self.state = redirect_uri, state


def _role_allows(user: User, scope: str) -> bool:
    """Roles gate what a user may be granted (issue 7): the audit log of everyone
    (``user/AuditEvent.*``) only to auditors; a patient's own log (``patient/AuditEvent.*``) to
    anyone signed in for that patient."""
    parsed = parse_scope(scope)
    if parsed is None or parsed.context != "user" or parsed.resource_type != "AuditEvent":
        return True
    return "auditor" in user.roles


@dataclass
class PendingAuthorization:
    """One authorization request between the app's redirect and the user's decision."""

    id: str
    browser_secret: str
    csrf: str
    client: Client
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str
    code_challenge: str
    nonce: str | None
    expires: float
    user: User | None = None
    patient: str | None = None
    failed_logins: int = 0
    launch: LaunchContext | None = None  # EHR launch
    session_id: str | None = None  # the sign-in session (online_access)

    @property
    def needs_patient(self) -> bool:
        return "launch/patient" in self.scopes and self.patient is None


@dataclass
class _Grant:
    """What a code or refresh token stands for."""

    client_id: str
    user: User
    scopes: tuple[str, ...]
    patient: str | None
    nonce: str | None = None
    family: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    launch: LaunchContext | None = None
    session: str | None = None  # set for online_access: the refresh token lives as long


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def s256(verifier: str) -> str:
    """The PKCE ``S256`` challenge of ``verifier`` (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class CodeFlow:
    """Authorization endpoint state and the ``authorization_code``/``refresh_token`` grants."""

    def __init__(
        self,
        server: AuthorizationServer,
        users: UserStore,
        *,
        patients: PatientDirectory,
        launches: LaunchRegistry | None = None,
        sessions: SessionStore | None = None,
        clock: Callable[[], float] = time.time,
        grants_file: Path | None = None,
    ) -> None:
        self.server = server
        self.grants_file = grants_file
        self.users = users
        self.patients = patients
        self.launches = launches or LaunchRegistry(clock=clock)
        self.sessions = sessions or SessionStore(clock=clock)
        self.sessions.on_end.append(self.end_session)
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, PendingAuthorization] = {}
        self._codes: dict[str, tuple[float, str, str, _Grant]] = {}  # digest -> exp, uri, pkce
        # code digest -> (forget after, access-token jtis issued for it)
        self._spent_codes: dict[str, tuple[float, list[str]]] = {}
        self._refresh: dict[str, tuple[float, _Grant, bool]] = {}  # digest -> exp, grant, used
        self._family_jtis: dict[str, list[tuple[str, float]]] = {}
        server.code_flow = self
        self._load_grants()

    # -- offline grants survive a restart --------------------------------------------------------

    def _load_grants(self) -> None:
        """The ``offline_access`` refresh tokens saved by ``_save_grants`` (their digests only),
        for users who still exist."""
        if self.grants_file is None or not self.grants_file.exists():
            return
        raw = json.loads(self.grants_file.read_text(encoding="utf-8"))
        now = self._clock()
        for digest, entry in raw.get("refresh", {}).items():
            user = self.users.get(entry["username"])
            if user is None or entry["expires"] < now:
                continue
            launch = entry.get("launch")
            grant = _Grant(
                entry["client_id"],
                user,
                tuple(entry["scopes"]),
                entry.get("patient"),
                family=entry["family"],
                launch=LaunchContext(**{**launch, "fhir_context": tuple(launch["fhir_context"])})
                if launch
                else None,
            )
            self._refresh[digest] = (float(entry["expires"]), grant, bool(entry["used"]))

    def _save_grants(self) -> None:
        """Write the offline refresh tokens (digest, grant; never the token) atomically (mode
        0600); ``online_access`` ones end with their session, which a restart ends too."""
        if self.grants_file is None:
            return
        with self._lock:
            entries = {
                digest: {
                    "expires": expires,
                    "used": used,
                    "client_id": grant.client_id,
                    "username": grant.user.username,
                    "scopes": list(grant.scopes),
                    "patient": grant.patient,
                    "family": grant.family,
                    "launch": asdict(grant.launch) if grant.launch is not None else None,
                }
                for digest, (expires, grant, used) in self._refresh.items()
                if grant.session is None
            }
        self.grants_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.grants_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"refresh": entries}, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.grants_file)

    # -- the authorization endpoint ------------------------------------------------------------

    def begin(self, params: Mapping[str, str]) -> PendingAuthorization:
        """Check an authorization request (SMART ``app-launch.html`` §"Request parameters")."""
        client = self.server.clients.get(params.get("client_id", ""))
        if client is None:
            raise AuthorizeError("invalid_request", "unknown client_id")
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:  # exact match: no open redirect
            raise AuthorizeError("invalid_request", "redirect_uri is not registered for the app")
        state = params.get("state", "")

        def fail(error: str, description: str) -> AuthorizeError:
            return AuthorizeError(error, description, redirect_uri, state)

        if params.get("response_type") != "code":
            raise fail("unsupported_response_type", "response_type must be code")
        if not state:
            raise fail("invalid_request", "state is required")
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            raise fail("invalid_request", "PKCE with code_challenge_method=S256 is required")
        if params.get("aud", "").rstrip("/") != self.server.endpoints.fhir_base:
            raise fail("invalid_request", "aud must be this server's FHIR base URL")
        requested = params.get("scope", "").split()
        granted = tuple(s for s in requested if self._allowed(client, s, requested))
        if "launch" not in params:  # the launch scope means nothing without a launch
            granted = tuple(s for s in granted if s != "launch")
        if not any(parse_scope(s) for s in granted):
            raise fail("invalid_scope", "no requested clinical scope may be granted")
        launch = None
        if "launch" in params:
            if "launch" not in granted:
                raise fail("invalid_scope", "an EHR launch needs the launch scope")
            launch = self.launches.take(params["launch"])
            if launch is None:
                raise fail("invalid_request", "unknown, expired or already used launch")
            if launch.client_id not in (None, client.client_id):
                raise fail("invalid_request", "this launch is for another app")
        pending = PendingAuthorization(
            id=secrets.token_urlsafe(24),
            browser_secret=secrets.token_urlsafe(24),
            csrf=secrets.token_urlsafe(24),
            client=client,
            redirect_uri=redirect_uri,
            scopes=tuple(dict.fromkeys(granted)),
            state=state,
            code_challenge=params["code_challenge"],
            nonce=params.get("nonce"),
            expires=self._clock() + PENDING_LIFETIME,
            patient=launch.patient if launch is not None else None,
            launch=launch,
        )
        with self._lock:
            now = self._clock()
            self._pending = {k: p for k, p in self._pending.items() if p.expires > now}
            self._pending[pending.id] = pending
        return pending

    def register_launch(self, context: LaunchContext) -> str:
        """The launch id for an EHR's launch context (``LaunchError`` when it names an unknown
        patient, user or client)."""
        if context.patient is not None and self.patients.display(context.patient) is None:
            raise LaunchError(f"there is no Patient/{context.patient}")
        if context.user is not None and self.users.get(context.user) is None:
            raise LaunchError(f"there is no user {context.user!r}")
        if context.client_id is not None and self.server.clients.get(context.client_id) is None:
            raise LaunchError(f"there is no client {context.client_id!r}")
        return self.launches.register(context)

    @staticmethod
    def _allowed(client: Client, scope: str, requested: list[str]) -> bool:
        parsed = parse_scope(scope)
        if parsed is None:
            return scope in LAUNCH_SCOPES and scope in client.scopes
        # system/: no user here; patient/: only with a patient context (standalone or EHR
        # launch) to confine it to (SMART scopes-and-launch-context.html); a token without a
        # ``patient`` still gets nothing from them (hub.auth.AccessPolicy)
        patient_context = any(
            s in requested and s in client.scopes for s in ("launch/patient", "launch")
        )
        if parsed.context == "system" or (parsed.context == "patient" and not patient_context):
            return False
        return any(
            (a := parse_scope(c)) is not None
            and a.context == parsed.context
            and a.resource_type in ("*", parsed.resource_type)
            and parsed.permissions <= a.permissions
            and (not a.query or a.query == parsed.query)
            for c in client.scopes
        )

    def pending(
        self, request_id: str, browser_secret: str | None, csrf: str
    ) -> PendingAuthorization:
        """The pending request a form post continues; refused unless the same browser (cookie)
        posts the form this server rendered (CSRF token)."""
        with self._lock:
            pending = self._pending.get(request_id)
        if (
            pending is None
            or pending.expires < self._clock()
            or not browser_secret
            or not hmac.compare_digest(browser_secret, pending.browser_secret)
            or not hmac.compare_digest(csrf, pending.csrf)
        ):
            raise AuthorizeError("invalid_request", "this sign-in form is not valid any more")
        return pending

    def login(
        self,
        pending: PendingAuthorization,
        username: str,
        password: str,
        session_id: str | None = None,
    ) -> bool:
        """Check the credentials; on success, ``pending.session_id`` is the browser's sign-in
        session (``session_id``, the one its cookie names, when still live for this user)."""
        user = self.users.authenticate(username, password)
        if user is None:
            pending.failed_logins += 1
            if pending.failed_logins >= MAX_LOGIN_ATTEMPTS:
                self.drop(pending)
                raise AuthorizeError(
                    "access_denied", "too many failed sign-ins", pending.redirect_uri, pending.state
                )
            return False
        launch = pending.launch
        if launch is not None and launch.user is not None and launch.user != user.username:
            self.drop(pending)
            raise AuthorizeError(
                "access_denied",
                "the EHR launched this app for another user",
                pending.redirect_uri,
                pending.state,
            )
        own_patient = (
            user.fhir_user.split("/", 1)[1] if user.fhir_user.startswith("Patient/") else None
        )
        if own_patient is not None and pending.patient not in (None, own_patient):
            self.drop(pending)
            raise AuthorizeError(
                "access_denied",
                "a patient can be launched only into their own record",
                pending.redirect_uri,
                pending.state,
            )
        pending.user = user
        pending.scopes = tuple(s for s in pending.scopes if _role_allows(user, s))
        if "launch/patient" in pending.scopes and own_patient is not None:
            pending.patient = own_patient
        pending.session_id = self.sessions.start(user.username, session_id).id
        return True

    def choose_patient(self, pending: PendingAuthorization, patient_id: str) -> bool:
        if pending.user is None or self.patients.display(patient_id) is None:
            return False
        pending.patient = patient_id
        return True

    def drop(self, pending: PendingAuthorization) -> None:
        with self._lock:
            self._pending.pop(pending.id, None)

    def _purge(self) -> None:
        """Forget expired codes, spent codes, refresh tokens and their access-token ids."""
        now = self._clock()
        with self._lock:
            self._codes = {k: v for k, v in self._codes.items() if v[0] >= now}
            self._spent_codes = {k: v for k, v in self._spent_codes.items() if v[0] >= now}
            self._refresh = {k: v for k, v in self._refresh.items() if v[0] >= now}
            families = {grant.family for _, grant, _ in self._refresh.values()}
            self._family_jtis = {
                family: live
                for family, jtis in self._family_jtis.items()
                if (live := [(j, exp) for j, exp in jtis if exp >= now]) or family in families
            }

    def approve(self, pending: PendingAuthorization) -> str:
        """The one-time code for an approved request (RFC 6749 §4.1.2)."""
        if pending.user is None or pending.needs_patient:
            raise AuthorizeError("invalid_request", "sign in (and pick a patient) first")
        self.drop(pending)
        self._purge()
        code = secrets.token_urlsafe(32)
        online = "online_access" in pending.scopes and "offline_access" not in pending.scopes
        grant = _Grant(
            pending.client.client_id,
            pending.user,
            pending.scopes,
            pending.patient,
            pending.nonce,
            launch=pending.launch,
            session=pending.session_id if online else None,
        )
        with self._lock:
            self._codes[_digest(code)] = (
                self._clock() + CODE_LIFETIME,
                pending.redirect_uri,
                pending.code_challenge,
                grant,
            )
        return code

    # -- the token endpoint --------------------------------------------------------------------

    def exchange_code(self, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
        """RFC 6749 §4.1.3 with the RFC 7636 §4.6 verifier check."""
        digest = _digest(form.get("code", ""))
        with self._lock:
            entry = self._codes.pop(digest, None)
            if entry is None and digest in self._spent_codes:
                # RFC 6749 §4.1.2: a code used twice revokes what it was exchanged for
                for jti in self._spent_codes[digest][1]:
                    self.server.revoke_jti(jti, self._clock() + self.server.access_token_lifetime)
        if entry is None:
            raise OAuthError("invalid_grant", "unknown, expired or already used code")
        expires, redirect_uri, challenge, grant = entry
        verifier = form.get("code_verifier", "")
        if expires < self._clock() or grant.client_id != client.client_id:
            raise OAuthError("invalid_grant", "unknown, expired or already used code")
        if form.get("redirect_uri") != redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri differs from the authorization request")
        if (
            not 43 <= len(verifier) <= 128
            or not set(verifier) <= _VERIFIER_CHARS
            or not hmac.compare_digest(s256(verifier), challenge)
        ):
            raise OAuthError("invalid_grant", "the PKCE code_verifier does not match")
        response = self._tokens(client, grant, grant.scopes, with_id_token=True)
        with self._lock:
            forget = self._clock() + self.server.access_token_lifetime
            self._spent_codes[digest] = (forget, [response.pop("_jti")])
        if "refresh_token" in response:
            self._save_grants()
        return response

    def refresh(self, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
        """RFC 6749 §6 with rotation (SMART ``app-launch.html`` §"Refresh access token"): the
        presented token is spent; presenting it again revokes every token of its family."""
        digest = _digest(form.get("refresh_token", ""))
        now = self._clock()
        with self._lock:
            entry = self._refresh.get(digest)
        if entry is None or entry[0] < now or entry[1].client_id != client.client_id:
            raise OAuthError("invalid_grant", "unknown or expired refresh token")
        _, grant, used = entry
        if used:
            self._revoke_family(grant.family)
            raise OAuthError("invalid_grant", "this refresh token was already used")
        if grant.session is not None and not self.sessions.active(grant.session):
            self._revoke_family(grant.family)
            raise OAuthError("invalid_grant", "the sign-in session of this refresh token ended")
        requested = tuple(form["scope"].split()) if "scope" in form else grant.scopes
        if not set(requested) <= set(grant.scopes):
            raise OAuthError("invalid_scope", "a refresh cannot widen the granted scopes")
        with self._lock:  # spend it; a concurrent use of the same token loses
            if self._refresh[digest][2]:
                raise OAuthError("invalid_grant", "this refresh token was already used")
            self._refresh[digest] = (entry[0], grant, True)
        response = self._tokens(client, grant, requested, with_id_token=False)
        response.pop("_jti")
        self._save_grants()
        return response

    def end_session(self, session_id: str) -> None:
        """The user signed out: their ``online_access`` refresh tokens, and the access tokens
        issued with them, stop working."""
        with self._lock:
            families = {g.family for _, g, _ in self._refresh.values() if g.session == session_id}
        for family in families:
            self._revoke_family(family)

    def _revoke_family(self, family: str) -> None:
        with self._lock:
            for digest, (exp, grant, _) in list(self._refresh.items()):
                if grant.family == family:
                    self._refresh[digest] = (exp, grant, True)
            jtis = self._family_jtis.pop(family, [])
        for jti, exp in jtis:
            self.server.revoke_jti(jti, exp)
        self._save_grants()

    def _tokens(
        self, client: Client, grant: _Grant, scopes: tuple[str, ...], *, with_id_token: bool
    ) -> dict[str, Any]:
        scope = " ".join(scopes)
        extra: dict[str, Any] = {"fhirUser": self._fhir_user_url(grant.user)}
        if grant.patient is not None:
            extra["patient"] = grant.patient
        context = grant.launch.token_parameters() if grant.launch is not None else {}
        if "encounter" in context:
            extra["encounter"] = context["encounter"]
        token, claims = self.server.sign_access_token(
            client.client_id, scope, subject=grant.user.username, extra=extra
        )
        response: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.server.access_token_lifetime,
            "scope": scope,
            "_jti": claims["jti"],
        }
        if grant.patient is not None:
            response["patient"] = grant.patient
        response.update(context)
        with self._lock:
            self._family_jtis.setdefault(grant.family, []).append(
                (claims["jti"], float(claims["exp"]))
            )
        expires = self._refresh_expiry(grant, scopes)
        if expires is not None:
            refresh = secrets.token_urlsafe(32)
            rotated = replace(grant, scopes=scopes, nonce=None)
            with self._lock:
                self._refresh[_digest(refresh)] = (expires, rotated, False)
            response["refresh_token"] = refresh
        if with_id_token and "openid" in scopes and "fhirUser" in scopes:
            response["id_token"] = self._id_token(client, grant)
        return response

    def _refresh_expiry(self, grant: _Grant, scopes: tuple[str, ...]) -> float | None:
        """When a refresh token for ``scopes`` would expire; ``None``: no refresh token."""
        until = self._clock() + REFRESH_LIFETIME
        if "offline_access" in scopes:
            return until
        if "online_access" in scopes and grant.session is not None:
            session = self.sessions.get(grant.session)
            return min(until, session.expires) if session is not None else None
        return None

    def _fhir_user_url(self, user: User) -> str:
        return f"{self.server.endpoints.fhir_base}/{user.fhir_user}"

    def _id_token(self, client: Client, grant: _Grant) -> str:
        """An OpenID Connect id_token with ``fhirUser`` (SMART ``scopes-and-launch-context.html``
        §"Scopes for requesting identity data"), signed RS256 (OIDC Core §15.1)."""
        now = int(self._clock())
        claims: dict[str, Any] = {
            "iss": self.server.endpoints.issuer,
            "sub": grant.user.username,
            "aud": client.client_id,
            "iat": now,
            "exp": now + self.server.access_token_lifetime,
            "fhirUser": self._fhir_user_url(grant.user),
        }
        if grant.nonce:
            claims["nonce"] = grant.nonce
        key = self.server.keys.id_token_key()
        return jwt.encode(claims, key.private_key, algorithm=key.alg, headers={"kid": key.kid})
