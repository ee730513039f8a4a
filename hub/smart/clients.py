"""Registered OAuth clients, kept in ``<data_dir>/smart/clients.json`` (mode 0600).

The client types of SMART App Launch 2.2 ``client-authentication.html``:

- ``public``: no credentials; only the authorization-code grant with PKCE (``app-launch.html``);
- ``confidential-symmetric``: a generated secret, shown once and stored only as an scrypt hash
  (RFC 7914), presented with ``client_secret_basic`` or ``client_secret_post`` (RFC 6749 §2.3.1);
- ``confidential-asymmetric``: a registered JWK Set of public keys (RS384/ES384), or the URL
  of one (fetched by ``hub.smart.remote_jwks``), presented as a ``private_key_jwt`` client
  assertion (RFC 7523 §2.2).

Confidential clients may hold ``system/`` scopes (``client_credentials``, SMART
``backend-services.html``) and ``pixelhub.launch``, the permission to register EHR launches
(``hub.smart.launch``); clients with redirect URIs may hold ``user/`` scopes and the launch
scopes of ``LAUNCH_SCOPES`` (authorization code), and ``patient/`` scopes, which are granted only
with a patient launch context and confined to that patient's compartment (``hub.auth``).

The file is re-read whenever it changes, so ``pixelhub clients add`` takes effect on a running hub.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from hub.private_file import PrivateJsonFile
from hub.smart.launch import LAUNCH_API_SCOPE
from hub.smart.scopes import parse_scope

ClientType = Literal["public", "confidential-symmetric", "confidential-asymmetric"]
CLIENT_TYPES: tuple[ClientType, ...] = (
    "public",
    "confidential-symmetric",
    "confidential-asymmetric",
)
# Non-clinical scopes a client may be granted (SMART scopes-and-launch-context.html).
LAUNCH_SCOPES = (
    "openid",
    "fhirUser",
    "launch",
    "launch/patient",
    "offline_access",
    "online_access",
)
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")  # RFC 6749 Appendix A.1, kept URL-safe


def hash_secret(secret: str) -> str:
    """``scrypt$n$r$p$salt$hash`` of ``secret`` (RFC 7914, salted, base64url)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, dklen=32, **_SCRYPT)
    enc = base64.urlsafe_b64encode
    n, r, p = _SCRYPT["n"], _SCRYPT["r"], _SCRYPT["p"]
    return f"scrypt${n}${r}${p}${enc(salt).decode()}${enc(digest).decode()}"


def verify_secret(secret: str, stored: str) -> bool:
    """True when ``secret`` matches the ``hash_secret`` value ``stored`` (constant time)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.urlsafe_b64decode(digest)
        actual = hashlib.scrypt(
            secret.encode(),
            salt=base64.urlsafe_b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


@dataclass(frozen=True)
class Client:
    """One registered client; ``scopes`` are the most it may ever be granted."""

    client_id: str
    name: str
    type: ClientType
    scopes: tuple[str, ...]
    secret_hash: str | None = None
    jwks: dict[str, Any] = field(default_factory=dict)
    redirect_uris: tuple[str, ...] = ()
    jwks_uri: str | None = None  # asymmetric clients: where their JWK Set is fetched from


def _check_scopes(
    scopes: Sequence[str], client_type: ClientType, redirect_uris: Sequence[str]
) -> None:
    if not scopes:
        raise ValueError("a client needs at least one scope")
    for scope in scopes:
        parsed = parse_scope(scope)
        if (parsed is not None and parsed.context == "system") or scope == LAUNCH_API_SCOPE:
            if client_type == "public":
                raise ValueError(f"{scope!r} is for confidential clients only")
        elif parsed is not None or scope in LAUNCH_SCOPES:
            if not redirect_uris:
                raise ValueError(
                    f"{scope!r}: patient/, user/ and launch scopes need a redirect URI"
                )
        else:
            raise ValueError(f"{scope!r} is not a scope PixelHub grants")


def _check_redirect_uri(uri: str) -> None:
    """Absolute, no fragment (RFC 6749 §3.1.2); plain http only for the loopback host."""
    parts = urlsplit(uri)
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.fragment or not parts.hostname or parts.scheme not in ("https", "http"):
        raise ValueError(f"{uri!r}: a redirect URI is an absolute http(s) URL without fragment")
    if parts.scheme == "http" and not loopback:
        raise ValueError(f"{uri!r}: plain http is allowed only for localhost")


def check_jwks_uri(uri: str) -> None:
    """An absolute https URL (plain http only for the loopback host), no fragment."""
    parts = urlsplit(uri)
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.fragment or not parts.hostname or parts.scheme not in ("https", "http"):
        raise ValueError(f"{uri!r}: a JWKS URL is an absolute https URL")
    if parts.scheme == "http" and not loopback:
        raise ValueError(f"{uri!r}: plain http is allowed only for localhost")


def _check_jwks(jwks: dict[str, Any]) -> None:
    keys = jwks.get("keys")
    if not isinstance(keys, list) or not keys:
        raise ValueError("the JWKS must be an object with a non-empty 'keys' array")
    for key in keys:
        if not isinstance(key, dict) or key.get("kty") not in ("RSA", "EC"):
            raise ValueError("every JWK must be an RSA or EC public key")
        if "d" in key:
            raise ValueError("the JWKS holds a private key; register public keys only")


def _parse_clients(raw: Any) -> dict[str, Client]:
    return {
        c["client_id"]: Client(
            **{
                **c,
                "scopes": tuple(c["scopes"]),
                "redirect_uris": tuple(c.get("redirect_uris", ())),
            }
        )
        for c in raw["clients"]
    }


class ClientStore:
    """The registered clients of one data directory."""

    def __init__(self, path: Path) -> None:
        self._file: PrivateJsonFile[dict[str, Client]] = PrivateJsonFile(path, _parse_clients, {})

    def _load(self) -> dict[str, Client]:
        return self._file.value()

    def get(self, client_id: str) -> Client | None:
        return self._load().get(client_id)

    def list(self) -> list[Client]:
        return sorted(self._load().values(), key=lambda c: c.name)

    def add(
        self,
        name: str,
        client_type: ClientType,
        scopes: tuple[str, ...],
        *,
        jwks: dict[str, Any] | None = None,
        redirect_uris: tuple[str, ...] = (),
        jwks_uri: str | None = None,
        client_id: str | None = None,
    ) -> tuple[Client, str | None]:
        """Register a client; returns it and, for a symmetric client, its secret (shown once).

        ``client_id`` registers it under that id instead of a random one, replacing any client
        registered with it before (idempotent registration, as ``--demo`` does for the app)."""
        if client_id is not None and not _CLIENT_ID.match(client_id):
            raise ValueError("a client id is 1-128 letters, digits, '.', '_', '~' or '-'")
        if client_type not in CLIENT_TYPES:
            raise ValueError(f"unknown client type {client_type!r}")
        for uri in redirect_uris:
            _check_redirect_uri(uri)
        if client_type == "public" and not redirect_uris:
            raise ValueError("a public client needs a redirect URI")
        _check_scopes(scopes, client_type, redirect_uris)
        secret: str | None = None
        secret_hash: str | None = None
        if client_type != "confidential-asymmetric" and jwks_uri is not None:
            raise ValueError("only an asymmetric client has a JWKS URL")
        if client_type == "public":
            if jwks is not None:
                raise ValueError("a public client has no keys")
        elif client_type == "confidential-asymmetric":
            if (jwks is None) == (jwks_uri is None):
                raise ValueError("an asymmetric client needs a JWKS or a JWKS URL (one of them)")
            if jwks is not None:
                _check_jwks(jwks)
            if jwks_uri is not None:
                check_jwks_uri(jwks_uri)
        else:
            if jwks is not None:
                raise ValueError("a symmetric client has a secret, not a JWKS")
            secret = secrets.token_urlsafe(32)
            secret_hash = hash_secret(secret)
        client = Client(
            client_id or secrets.token_urlsafe(16),
            name,
            client_type,
            scopes,
            secret_hash,
            jwks or {},
            redirect_uris,
            jwks_uri,
        )
        clients = [c for c in self._load().values() if c.client_id != client.client_id]
        clients.append(client)
        self._file.write({"clients": [asdict(c) for c in clients]})
        return client, secret
