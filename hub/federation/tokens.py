"""Access tokens at partner sites: SMART Backend Services (SMART App Launch 2.2
``backend-services.html``), the client side.

The token endpoint is the partner's ``token_url`` or, when unset, the ``token_endpoint`` of its
``<fhir_base>/.well-known/smart-configuration`` (``conformance.html``). The request is a
``client_credentials`` grant authenticated by a ``private_key_jwt`` assertion (RFC 7523 §2.2,
``client-confidential-asymmetric.html``): ``iss`` = ``sub`` = the client id, ``aud`` = the token
endpoint, a fresh ``jti``, ``exp`` five minutes ahead, signed ES384 or RS384 with a ``kid`` (the
RFC 7638 thumbprint of the public key). The scopes asked for are read-only and only for the
federated types (issue 12, item 4). A token is reused until 30 seconds before it expires.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hub.federation.http import Answer, PartnerError, PartnerHttp
from hub.federation.partners import FEDERATED_TYPES, Partner, check_partner_url
from hub.smart.keys import SigningKey, load_or_create_key, public_jwk, thumbprint

__all__ = ["FEDERATED_SCOPES", "BackendTokens"]

# SMART v2 scopes: read and search (``.rs``) of the federated types and their Endpoints.
FEDERATED_SCOPES = " ".join(f"system/{t}.rs" for t in (*FEDERATED_TYPES, "Endpoint"))
_JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_ASSERTION_LIFETIME = 300
_EARLY = 30  # seconds before expiry a token is renewed
_MAX_DOCUMENT = 256 * 1024
_ACCEPT = {"Accept": "application/json"}


def _load_key(path: Path) -> SigningKey:
    """The signing key in a PEM file: RSA -> RS384, P-384 EC -> ES384."""
    loaded = serialization.load_pem_private_key(path.read_bytes(), None)
    if isinstance(loaded, rsa.RSAPrivateKey):
        alg = "RS384"
    elif isinstance(loaded, ec.EllipticCurvePrivateKey) and isinstance(loaded.curve, ec.SECP384R1):
        alg = "ES384"
    else:
        raise ValueError(f"{path}: an RSA or P-384 EC private key is needed (RS384/ES384)")
    return SigningKey(alg, thumbprint(public_jwk(loaded)), loaded)


class BackendTokens:
    """Fetches and caches partners' access tokens."""

    def __init__(self, key_file: Path, *, clock: Callable[[], float] = time.time) -> None:
        self._key_file = key_file
        self._clock = clock
        self._keys: dict[str, SigningKey] = {}
        self._cache: dict[str, tuple[str, float, Partner]] = {}
        self._endpoints: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def hub_key(self) -> SigningKey:
        """This hub's federation key, made (ES384, mode 0600) when first needed."""
        name = str(self._key_file)
        if name not in self._keys:
            self._key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            load_or_create_key(self._key_file, "ES384")
            self._keys[name] = _load_key(self._key_file)
        return self._keys[name]

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set a partner registers for this hub (``pixelhub partners jwks``)."""
        return {"keys": [self.hub_key().jwk()]}

    def _key(self, partner: Partner) -> SigningKey:
        if partner.private_key is None:
            return self.hub_key()
        if partner.private_key not in self._keys:
            self._keys[partner.private_key] = _load_key(Path(partner.private_key))
        return self._keys[partner.private_key]

    def _cached(self, partner: Partner) -> str | None:
        cached = self._cache.get(partner.name)
        if cached and cached[2] == partner and cached[1] > self._clock():
            return cached[0]
        return None

    def invalidate(self, partner: Partner) -> None:
        self._cache.pop(partner.name, None)

    async def token(self, client: PartnerHttp, partner: Partner) -> str:
        """A valid access token at ``partner`` (cached), or ``PartnerError``."""
        cached = self._cached(partner)
        if cached is not None:
            return cached
        async with self._locks.setdefault(partner.name, asyncio.Lock()):  # one request at a time
            cached = self._cached(partner)
            if cached is not None:
                return cached
            token_url = partner.token_url or await self._discover(client, partner)
            token, lifetime = await self._request(client, partner, token_url)
            self._cache[partner.name] = (token, self._clock() + max(0, lifetime - _EARLY), partner)
            return token

    async def _discover(self, client: PartnerHttp, partner: Partner) -> str:
        """``token_endpoint`` of the partner's SMART configuration (``conformance.html``)."""
        if partner.fhir_base in self._endpoints:
            return self._endpoints[partner.fhir_base]
        url = f"{partner.fhir_base}/.well-known/smart-configuration"
        answer = await client.request("GET", url, headers=_ACCEPT, limit=_MAX_DOCUMENT)
        document = _json_object(answer, url)
        endpoint = document.get("token_endpoint")
        if not isinstance(endpoint, str):
            raise PartnerError("processing", f"{url} names no token_endpoint")
        try:
            self._endpoints[partner.fhir_base] = check_partner_url(endpoint, "token_endpoint")
        except ValueError as exc:
            raise PartnerError("security", str(exc)) from None
        return self._endpoints[partner.fhir_base]

    def assertion(self, partner: Partner, token_url: str) -> str:
        """The signed client assertion (``client-confidential-asymmetric.html`` §"Authenticating
        to the Token endpoint")."""
        key = self._key(partner)
        now = int(self._clock())
        claims = {
            "iss": partner.client_id,
            "sub": partner.client_id,
            "aud": token_url,
            "jti": str(uuid.uuid4()),
            "exp": now + _ASSERTION_LIFETIME,
            "iat": now,
        }
        headers = {"kid": key.kid, "typ": "JWT"}
        return jwt.encode(claims, key.private_key, algorithm=key.alg, headers=headers)

    async def _request(
        self, client: PartnerHttp, partner: Partner, token_url: str
    ) -> tuple[str, int]:
        form = {
            "grant_type": "client_credentials",
            "scope": FEDERATED_SCOPES,
            "client_assertion_type": _JWT_BEARER,
            "client_assertion": self.assertion(partner, token_url),
        }
        answer = await client.request(
            "POST", token_url, headers=_ACCEPT, form=form, limit=_MAX_DOCUMENT
        )
        if answer.status != 200:
            try:
                body = orjson.loads(answer.body)
                reason = f"{body.get('error')}: {body.get('error_description', '')}".strip()
            except (ValueError, AttributeError):
                reason = f"HTTP {answer.status}"
            raise PartnerError("security", f"the partner refused a token ({reason})")
        body = _json_object(answer, token_url)
        token, lifetime = body.get("access_token"), body.get("expires_in", 300)
        if not isinstance(token, str) or not token or not isinstance(lifetime, int):
            raise PartnerError("processing", "the token response holds no access_token")
        return token, lifetime


def _json_object(answer: Answer, url: str) -> dict[str, Any]:
    if answer.status != 200:
        raise PartnerError("processing", f"{url}: HTTP {answer.status}")
    try:
        document = orjson.loads(answer.body)
    except ValueError:
        raise PartnerError("processing", f"{url}: not JSON") from None
    if not isinstance(document, dict):
        raise PartnerError("processing", f"{url}: not a JSON object")
    return document
