"""Access tokens of an external authorization server (issue 6, item 5: an EMR's own SMART server
fronting PixelHub).

The issuer's metadata is discovered on first use (OpenID Connect Discovery 1.0 §4 at
``<issuer>/.well-known/openid-configuration``, else RFC 8414 §3 ``oauth-authorization-server``,
else SMART App Launch 2.2 ``conformance.html`` ``smart-configuration``), the ``issuer`` it states
must be the configured one (OIDC Discovery §4.3), and its ``jwks_uri`` gives the keys
(``hub.smart.remote_jwks``: cached by ``kid``, refetched on an unknown ``kid``, rate-limited).
A token is accepted when it is a JWS with an asymmetric algorithm of ``ALGORITHMS`` (never
``none`` or HMAC, RFC 8725 §3.1) whose ``kid`` names a key of the matching type, signed by it, with
``iss`` the issuer, ``aud`` the expected audience, ``exp`` in the future, and a scope claim
(``scope``, a space-separated string as RFC 8693 §4.2 and SMART use, or ``scp``, a list or string).

``chain_verifiers`` composes PixelHub's own verifier with this one for ``AccessPolicy``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import jwt

from hub.smart.remote_jwks import Fetch, FetchError, RemoteJwks, fetch_json, fetch_url
from hub.smart.server import InvalidToken

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
_KTY = {"R": "RSA", "P": "RSA", "E": "EC"}
_CRV = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_DISCOVERY = (
    "/.well-known/openid-configuration",
    "/.well-known/oauth-authorization-server",
    "/.well-known/smart-configuration",
)

Verifier = Callable[[str], dict[str, Any]]


class ExternalIssuer:
    """Verifies the access tokens of one external issuer."""

    def __init__(
        self,
        issuer: str,
        *,
        audience: str,
        scope_claim: str = "scope",
        jwks_uri: str | None = None,
        algorithms: tuple[str, ...] = ALGORITHMS,
        leeway: int = 30,
        fetch: Fetch = fetch_url,
        min_refresh_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not set(algorithms) <= set(ALGORITHMS):
            raise ValueError(f"algorithms are some of {', '.join(ALGORITHMS)}")
        if scope_claim not in ("scope", "scp"):
            raise ValueError("the scope claim is 'scope' or 'scp'")
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.scope_claim = scope_claim
        self.algorithms = algorithms
        self.leeway = leeway
        self._fetch = fetch
        self._min_interval = min_refresh_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._jwks = (
            RemoteJwks(
                jwks_uri, fetch=fetch, min_refresh_interval=min_refresh_interval, clock=clock
            )
            if jwks_uri
            else None
        )
        self._discovery_tried: float | None = None
        self._verified: OrderedDict[str, dict[str, Any]] = OrderedDict()  # as AuthorizationServer

    def __call__(self, token: str) -> dict[str, Any]:
        """The claims of a valid token (a token verified before is not checked again while it
        lives), with ``scope`` as a space-separated string and ``client_id`` filled from
        ``client_id``, ``azp`` or ``cid``; ``InvalidToken`` otherwise."""
        cached = self._verified.get(token)
        if cached is not None and time.time() < cached["exp"]:
            return dict(cached)
        claims = self._verify(token)
        with self._lock:
            self._verified[token] = claims
            while len(self._verified) > 4096:
                self._verified.popitem(last=False)
        return dict(claims)

    def _discover(self) -> RemoteJwks:
        """The issuer's key set, from its metadata (looked up at most once per interval)."""
        with self._lock:
            if self._jwks is not None:
                return self._jwks
            now = self._clock()
            if (
                self._discovery_tried is not None
                and now - self._discovery_tried < self._min_interval
            ):
                raise InvalidToken("the external issuer's metadata is not available")
            self._discovery_tried = now
            for suffix in _DISCOVERY:
                try:
                    metadata = fetch_json(self.issuer + suffix, self._fetch)
                except FetchError:
                    continue
                if str(metadata.get("issuer", "")).rstrip("/") != self.issuer:
                    raise InvalidToken("the external issuer's metadata names another issuer")
                uri = metadata.get("jwks_uri")
                if not isinstance(uri, str) or not uri:
                    raise InvalidToken("the external issuer's metadata has no jwks_uri")
                self._jwks = RemoteJwks(
                    uri,
                    fetch=self._fetch,
                    min_refresh_interval=self._min_interval,
                    clock=self._clock,
                )
                return self._jwks
            raise InvalidToken("the external issuer's metadata is not available")

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("not a JWT") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self.algorithms or not isinstance(kid, str):
            raise InvalidToken("unsupported algorithm or no kid")
        jwk = self._discover().key(kid)
        if (
            jwk is None
            or jwk.get("kty") != _KTY[alg[0]]
            or jwk.get("alg", alg) != alg
            or (alg in _CRV and jwk.get("crv") != _CRV[alg])
            or jwk.get("use", "sig") != "sig"
        ):
            raise InvalidToken("no key of the external issuer for this kid and algorithm")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                jwt.PyJWK(jwk, alg).key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["iss", "aud", "exp"]},
                leeway=self.leeway,
            )
        except (jwt.PyJWTError, ValueError) as exc:
            raise InvalidToken(str(exc)) from None
        raw = claims.get(self.scope_claim)
        if isinstance(raw, list) and all(isinstance(s, str) for s in raw):
            scope = " ".join(raw)
        elif isinstance(raw, str):
            scope = raw
        else:
            raise InvalidToken(f"no {self.scope_claim} claim")
        client_id = claims.get("client_id") or claims.get("azp") or claims.get("cid")
        return {
            **claims,
            "scope": scope,
            "client_id": str(client_id or claims.get("sub") or self.issuer),
        }


def chain_verifiers(*verifiers: Verifier) -> Verifier:
    """A verifier that accepts what the first of ``verifiers`` to succeed accepts."""

    def verify(token: str) -> dict[str, Any]:
        reasons = []
        for verifier in verifiers:
            try:
                return verifier(token)
            except InvalidToken as exc:
                reasons.append(str(exc))
        raise InvalidToken("; ".join(reasons))

    return verify
