"""PixelHub's OAuth 2.0 authorization server for SMART on FHIR.

Implemented (SMART App Launch 2.2 ``backend-services.html`` and ``client-authentication.html``;
the authorization-code grant lives in ``hub.smart.authorize``):

- the token endpoint with the ``client_credentials`` grant (RFC 6749 §4.4) for clients
  authenticated by ``private_key_jwt`` (RFC 7523 §2.2, RS384/ES384 against the client's
  registered JWKS or JWKS URL, ``jti`` single use, ``exp`` at most five minutes ahead, ``aud`` =
  the token endpoint, a ``jku`` header only when it is the registered URL) or by a shared secret
  (``client_secret_basic``/``client_secret_post``, RFC 6749 §2.3.1); errors as RFC 6749 §5.2
  JSON;
- access tokens as signed JWTs (RFC 9068 ``at+jwt``) carrying ``scope`` and ``client_id``,
  checked by ``verify_access_token`` (our ``kid``, that key's own algorithm only, ``iss``,
  ``aud`` = the FHIR base, ``exp``, not revoked);
- token introspection (RFC 7662) and revocation (RFC 7009), both client-authenticated.

``client_credentials`` grants only ``system/`` clinical scopes (no user or patient takes part)
and ``pixelhub.launch``, the EHR's permission to register launches (``hub.smart.launch``).
The ``jti`` replay cache and the revocation list live in this process's memory.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

import jwt

from hub.smart.clients import Client, ClientStore, verify_secret
from hub.smart.keys import SIGNING_ALGORITHMS, KeyStore
from hub.smart.launch import LAUNCH_API_SCOPE
from hub.smart.remote_jwks import JwksCache
from hub.smart.scopes import ResourceScope, parse_scope

if TYPE_CHECKING:
    from hub.smart.authorize import CodeFlow

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME = 300  # seconds; SMART backend-services: exp no more than 5 minutes ahead
_KTY = {"RS384": "RSA", "ES384": "EC"}
_B64URL = re.compile(r"[A-Za-z0-9_-]{1,2048}")
VERIFIED_CACHE_SIZE = 4096  # access tokens whose signature was checked, kept until they expire


def _unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS (RFC 7515 §7.1), only to pick the key."""
    head, dot, _ = token.partition(".")
    if not dot or not _B64URL.fullmatch(head):
        raise InvalidToken("not a JWT")
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, binascii.Error):
        raise InvalidToken("not a JWT") from None
    if not isinstance(header, dict):
        raise InvalidToken("not a JWT")
    return header


@dataclass
class OAuthError(Exception):
    """An RFC 6749 §5.2 error response."""

    error: str
    description: str
    status: int = 400
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(f"{self.error}: {self.description}")

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class InvalidToken(Exception):
    """The bearer token is not one this server issued, or no longer valid (RFC 6750 §3.1)."""


@dataclass(frozen=True)
class Endpoints:
    """Where the authorization server and the FHIR API it protects live."""

    issuer: str
    fhir_base: str

    @property
    def token(self) -> str:
        return f"{self.issuer}/token"

    @property
    def introspect(self) -> str:
        return f"{self.issuer}/introspect"

    @property
    def revoke(self) -> str:
        return f"{self.issuer}/revoke"

    @property
    def jwks(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def authorize(self) -> str:
        return f"{self.issuer}/authorize"


class _ExpiringSet:
    """Values remembered until their own expiry time (``jti`` replay cache, revoked tokens)."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def add_if_absent(self, value: str, until: float, now: float) -> bool:
        with self._lock:
            if len(self._until) > 1024:
                self._until = {k: t for k, t in self._until.items() if t >= now}
            if value in self._until and self._until[value] >= now:
                return False
            self._until[value] = until
            return True

    def __contains__(self, value: str) -> bool:
        return value in self._until


def _grantable(requested: ResourceScope, allowed: list[ResourceScope]) -> bool:
    return requested.context == "system" and any(
        a.resource_type in ("*", requested.resource_type)
        and requested.permissions <= a.permissions
        and (not a.query or a.query == requested.query)
        for a in allowed
    )


class AuthorizationServer:
    """Token, introspection and revocation endpoints, and access-token verification."""

    def __init__(
        self,
        keys: KeyStore,
        clients: ClientStore,
        endpoints: Endpoints,
        *,
        access_token_lifetime: int = 300,
        jwks_cache: JwksCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.clients = clients
        self.endpoints = endpoints
        self.access_token_lifetime = access_token_lifetime
        self.jwks_cache = jwks_cache or JwksCache()
        self._clock = clock
        self._seen_assertions = _ExpiringSet()
        self._revoked = _ExpiringSet()
        # token -> (kid, claims) of tokens verified before: a signature is checked once per token
        self._verified: OrderedDict[str, tuple[str, dict[str, Any]]] = OrderedDict()
        self._verified_lock = threading.Lock()
        self.code_flow: CodeFlow | None = None  # set by hub.smart.authorize.CodeFlow

    # -- client authentication (SMART client-authentication.html, RFC 6749 §2.3) --------------

    def authenticate_client(self, form: Mapping[str, str], authorization: str | None) -> Client:
        """The client that made this token-endpoint request, or ``invalid_client``."""
        basic = authorization is not None and authorization.lower().startswith("basic ")
        methods = [
            basic,
            "client_secret" in form,
            "client_assertion" in form or "client_assertion_type" in form,
        ]
        if not any(methods):  # a public client names itself (RFC 6749 §3.2.1)
            client = self.clients.get(form.get("client_id", ""))
            if client is not None and client.type == "public":
                return client
        if sum(methods) != 1:
            raise OAuthError(
                "invalid_request" if sum(methods) else "invalid_client",
                "use exactly one client authentication method",
                401 if not sum(methods) else 400,
            )
        if basic and authorization is not None:
            return self._basic(authorization, form)
        if "client_secret" in form:
            return self._secret(form.get("client_id", ""), form["client_secret"])
        return self._assertion(form)

    def _invalid_client(self, description: str) -> OAuthError:
        return OAuthError(
            "invalid_client", description, 401, {"WWW-Authenticate": 'Basic realm="pixelhub"'}
        )

    def _basic(self, authorization: str, form: Mapping[str, str]) -> Client:
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise self._invalid_client("malformed Basic credentials") from None
        client_id, sep, secret = decoded.partition(":")
        if not sep:
            raise self._invalid_client("malformed Basic credentials")
        client_id, secret = unquote_plus(client_id), unquote_plus(secret)
        if "client_id" in form and form["client_id"] != client_id:
            raise OAuthError("invalid_request", "client_id differs from the Basic credentials")
        return self._secret(client_id, secret)

    def _secret(self, client_id: str, secret: str) -> Client:
        client = self.clients.get(client_id)
        if (
            client is None
            or client.type != "confidential-symmetric"
            or client.secret_hash is None
            or not verify_secret(secret, client.secret_hash)
        ):
            raise self._invalid_client("unknown client or wrong secret")
        return client

    def _assertion(self, form: Mapping[str, str]) -> Client:
        """RFC 7523 §3 checks plus SMART's: registered key by ``kid``, RS384/ES384, ``jti``
        used once, ``exp`` no more than five minutes ahead, ``aud`` the token endpoint."""
        if form.get("client_assertion_type") != JWT_BEARER:
            raise OAuthError("invalid_request", f"client_assertion_type must be {JWT_BEARER}")
        assertion = form.get("client_assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise self._invalid_client("the client assertion is not a JWT") from None
        alg, kid = header.get("alg"), header.get("kid")
        client_id = claims.get("iss")
        if alg not in SIGNING_ALGORITHMS or not isinstance(kid, str):
            raise self._invalid_client("the assertion must be RS384 or ES384 and name its kid")
        client = self.clients.get(client_id) if isinstance(client_id, str) else None
        if client is None or client.type != "confidential-asymmetric":
            raise self._invalid_client("unknown client")
        if claims.get("sub") != client_id or form.get("client_id", client_id) != client_id:
            raise self._invalid_client("iss, sub and client_id must all name the client")
        if "jku" in header and header["jku"] != client.jwks_uri:  # backend-services §"Signature"
            raise self._invalid_client("the jku header is not the client's registered JWKS URL")
        jwk = next((k for k in client.jwks.get("keys", []) if k.get("kid") == kid), None)
        if jwk is None and client.jwks_uri is not None:
            jwk = self.jwks_cache.key(client.jwks_uri, kid)
        if jwk is None or jwk.get("kty") != _KTY[alg] or jwk.get("alg", alg) != alg:
            raise self._invalid_client("no registered key of this kid for this algorithm")
        now = self._clock()
        try:
            verified = jwt.decode(
                assertion,
                jwt.PyJWK(jwk, alg).key,
                algorithms=[alg],
                audience=self.endpoints.token,
                options={"require": ["iss", "sub", "aud", "exp", "jti"]},
                leeway=0,
            )
        except (jwt.PyJWTError, ValueError) as exc:  # ValueError: a malformed registered key
            raise self._invalid_client(f"client assertion refused: {exc}") from None
        exp = verified["exp"]
        if not isinstance(exp, int | float) or exp > now + MAX_ASSERTION_LIFETIME:
            raise self._invalid_client("exp is more than five minutes ahead")
        if not self._seen_assertions.add_if_absent(f"{client_id} {verified['jti']}", exp, now):
            raise self._invalid_client("this client assertion (jti) was already used")
        return client

    # -- the token endpoint ----------------------------------------------------------------

    def token(self, form: Mapping[str, str], authorization: str | None) -> dict[str, Any]:
        """RFC 6749 §4.4.2/§4.4.3: an access token for an authenticated client."""
        grant = form.get("grant_type")
        if not grant:
            raise OAuthError("invalid_request", "grant_type is required")
        client = self.authenticate_client(form, authorization)
        if grant in ("authorization_code", "refresh_token") and self.code_flow is not None:
            if grant == "authorization_code":
                return self.code_flow.exchange_code(client, form)
            return self.code_flow.refresh(client, form)
        if grant != "client_credentials":
            raise OAuthError("unsupported_grant_type", f"grant_type {grant!r} is not supported")
        if client.type == "public":
            raise OAuthError("unauthorized_client", "public clients cannot use client_credentials")
        requested = form.get("scope", "").split()
        if not requested:
            raise OAuthError("invalid_scope", "scope is required")
        allowed = [s for s in map(parse_scope, client.scopes) if s is not None]
        granted = []
        for scope in requested:
            parsed = parse_scope(scope)
            if (parsed is not None and _grantable(parsed, allowed)) or (
                scope == LAUNCH_API_SCOPE and scope in client.scopes
            ):
                granted.append(scope)
        if not granted:
            raise OAuthError("invalid_scope", "none of the requested scopes may be granted")
        scope = " ".join(dict.fromkeys(granted))
        return {
            "access_token": self.issue_access_token(client.client_id, scope),
            "token_type": "Bearer",
            "expires_in": self.access_token_lifetime,
            "scope": scope,
        }

    def issue_access_token(self, client_id: str, scope: str) -> str:
        """A signed access token (RFC 9068) for the FHIR base."""
        return self.sign_access_token(client_id, scope)[0]

    def sign_access_token(
        self,
        client_id: str,
        scope: str,
        *,
        subject: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """An access token and its claims; ``extra`` adds launch context (``patient``,
        ``fhirUser``)."""
        now = int(self._clock())
        key = self.keys.signing_key("RS384")
        claims = {
            **(extra or {}),
            "iss": self.endpoints.issuer,
            "sub": subject or client_id,
            "aud": self.endpoints.fhir_base,
            "client_id": client_id,
            "scope": scope,
            "iat": now,
            "exp": now + self.access_token_lifetime,
            "jti": secrets.token_urlsafe(16),
        }
        token = jwt.encode(
            claims, key.private_key, algorithm=key.alg, headers={"kid": key.kid, "typ": "at+jwt"}
        )
        return token, claims

    def revoke_jti(self, jti: str, until: float) -> None:
        """Refuse the access token ``jti`` from now on (until it would have expired)."""
        self._revoked.add_if_absent(jti, until, self._clock())

    # -- access tokens -----------------------------------------------------------------------

    def verify_access_token(self, token: str) -> dict[str, Any]:
        """The claims of a valid access token; ``InvalidToken`` otherwise. The ``kid`` picks
        one of our keys and only that key's algorithm is accepted, so ``alg: none`` and an HMAC
        keyed with a public key are refused (RFC 8725 §3.1). A token verified before (the exact
        same string) is not checked again while it lives, its key is published and it is not
        revoked."""
        cached = self._verified.get(token)
        if cached is not None:
            kid, claims = cached
            if time.time() < claims["exp"] and self.keys.by_kid(kid) is not None:
                if claims["jti"] in self._revoked:
                    raise InvalidToken("revoked")
                return dict(claims)
            with self._verified_lock:
                self._verified.pop(token, None)
        kid, claims = self._verify_signed(token)
        if claims["jti"] in self._revoked:
            raise InvalidToken("revoked")
        with self._verified_lock:
            self._verified[token] = (kid, claims)
            while len(self._verified) > VERIFIED_CACHE_SIZE:
                self._verified.popitem(last=False)
        return dict(claims)

    def _verify_signed(self, token: str) -> tuple[str, dict[str, Any]]:
        """The ``kid`` and claims of a token whose signature and claims check out."""
        header = _unverified_header(token)
        kid = header.get("kid")
        key = self.keys.by_kid(kid) if isinstance(kid, str) else None
        if key is None or key.alg not in SIGNING_ALGORITHMS or header.get("alg") != key.alg:
            raise InvalidToken("unknown key or algorithm")
        if header.get("typ") != "at+jwt":  # RFC 9068 §4
            raise InvalidToken("not an access token")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.private_key.public_key(),
                algorithms=[key.alg],
                audience=self.endpoints.fhir_base,
                issuer=self.endpoints.issuer,
                options={"require": ["iss", "aud", "exp", "iat", "jti", "scope", "client_id"]},
                leeway=0,
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from None
        if time.time() >= claims["exp"]:  # the same clock as the cache of verified tokens
            raise InvalidToken("expired")
        return key.kid, claims

    def introspect(self, form: Mapping[str, str], authorization: str | None) -> dict[str, Any]:
        """RFC 7662 §2: ``active`` and the token's claims, for an authenticated client."""
        self.authenticate_client(form, authorization)
        if "token" not in form:
            raise OAuthError("invalid_request", "token is required")
        try:
            claims = self.verify_access_token(form["token"])
        except InvalidToken:
            return {"active": False}
        keep = (
            "scope",
            "client_id",
            "sub",
            "exp",
            "iat",
            "iss",
            "aud",
            "jti",
            "patient",
            "encounter",
        )
        body = {k: claims[k] for k in (*keep, "fhirUser") if k in claims}
        return {"active": True, "token_type": "Bearer", **body}

    def revoke(self, form: Mapping[str, str], authorization: str | None) -> None:
        """RFC 7009 §2: revoke one of the calling client's access tokens. Unknown, invalid or
        other clients' tokens are answered the same way (200) and left alone."""
        client = self.authenticate_client(form, authorization)
        if "token" not in form:
            raise OAuthError("invalid_request", "token is required")
        try:
            claims = self.verify_access_token(form["token"])
        except InvalidToken:
            return
        if claims["client_id"] == client.client_id:
            self._revoked.add_if_absent(claims["jti"], float(claims["exp"]), self._clock())

    # -- discovery ---------------------------------------------------------------------------

    def smart_configuration(self) -> dict[str, Any]:
        """SMART App Launch 2.2 ``conformance.html`` metadata: only what is implemented."""
        config: dict[str, Any] = {
            "issuer": self.endpoints.issuer,
            "jwks_uri": self.endpoints.jwks,
            "token_endpoint": self.endpoints.token,
            "token_endpoint_auth_methods_supported": [
                "private_key_jwt",
                "client_secret_basic",
                "client_secret_post",
            ],
            "token_endpoint_auth_signing_alg_values_supported": list(SIGNING_ALGORITHMS),
            "grant_types_supported": ["client_credentials"],
            "scopes_supported": ["system/*.cruds", "system/*.rs", "system/*.read", "system/*.*"],
            "introspection_endpoint": self.endpoints.introspect,
            "revocation_endpoint": self.endpoints.revoke,
            "code_challenge_methods_supported": [],
            "capabilities": [
                "client-confidential-asymmetric",
                "client-confidential-symmetric",
                "permission-v1",
                "permission-v2",
            ],
        }
        if self.code_flow is not None:
            config["authorization_endpoint"] = self.endpoints.authorize
            config["grant_types_supported"] = [
                "authorization_code",
                "client_credentials",
                "refresh_token",
            ]
            config["response_types_supported"] = ["code"]
            config["code_challenge_methods_supported"] = ["S256"]
            config["scopes_supported"] += [
                "openid",
                "fhirUser",
                "launch",
                "launch/patient",
                "offline_access",
                "online_access",
                "user/*.cruds",
                "user/*.rs",
                "user/*.read",
                "patient/*.cruds",
                "patient/*.rs",
                "patient/*.read",
            ]
            config["capabilities"] += [
                "launch-ehr",
                "launch-standalone",
                "authorize-post",
                "client-public",
                "sso-openid-connect",
                "context-banner",
                "context-ehr-patient",
                "context-ehr-encounter",
                "context-standalone-patient",
                "context-style",
                "permission-offline",
                "permission-online",
                "permission-patient",
                "permission-user",
            ]
        return config

    def openid_configuration(self) -> dict[str, Any]:
        """OpenID Connect Discovery 1.0 §3 metadata, for apps that check id_tokens."""
        return {
            "issuer": self.endpoints.issuer,
            "authorization_endpoint": self.endpoints.authorize,
            "token_endpoint": self.endpoints.token,
            "jwks_uri": self.endpoints.jwks,
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "fhirUser"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "fhirUser", "nonce"],
        }

    def capability_security(self) -> dict[str, Any]:
        """``CapabilityStatement.rest.security``: the SMART-on-FHIR service coding and the
        ``oauth-uris`` extension (SMART App Launch 2.2 ``conformance.html``)."""
        # The R4 oauth-uris extension defines authorize, token, register and manage (and
        # requires authorize); introspection and revocation are in .well-known only.
        uris = [
            *([("authorize", self.endpoints.authorize)] if self.code_flow is not None else []),
            ("token", self.endpoints.token),
        ]
        return {
            "extension": [
                {
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [{"url": name, "valueUri": uri} for name, uri in uris],
                }
            ],
            "service": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                            "code": "SMART-on-FHIR",
                        }
                    ],
                    "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
                }
            ],
            "description": "SMART on FHIR: EHR and standalone launch (authorization code with"
            " PKCE) and backend services (client_credentials); bearer access tokens are JWTs.",
        }
