"""The one access-policy seam every door passes through.

An adapter (HTTP, DICOM, MLLP...) authenticates its caller into a ``Principal``; every interaction
then asks ``AccessPolicy.check``. Bearer tokens are either static tokens from the settings (full
access, for tests and operations) or access tokens of PixelHub's SMART authorization server
(``hub.smart``), whose scopes (SMART App Launch 2.2 ``scopes-and-launch-context.html``, v1 and v2)
decide. ``--demo`` allows everything and says so loudly at start-up. Nothing is ever open by
accident: with no demo, a request without a valid token is refused.

Scopes are enforced fail-closed where enforcement is not implemented yet: ``patient/`` scopes
(no patient-compartment filter yet) and v2 scopes with a search restriction (``?category=...``,
no result filter yet) grant nothing.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from hub.errors import Forbidden, Unauthorized
from hub.smart.scopes import parse_scope

# FHIR R4 interactions (http.html) grouped as SMART v2 permissions c/r/u/d/s.
InteractionKind = Literal[
    "read", "vread", "create", "update", "patch", "delete", "search", "history", "operation"
]
PERMISSION: dict[InteractionKind, str] = {
    "read": "r",
    "vread": "r",
    "history": "r",
    "create": "c",
    "update": "u",
    "patch": "u",
    "delete": "d",
    "search": "s",
    "operation": "r",
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: ``subject`` names the user, client, AE title or sending application."""

    subject: str
    kind: Literal["anonymous-demo", "token", "peer"] = "token"
    scopes: frozenset[str] = field(default_factory=frozenset)
    address: str | None = None


class AccessPolicy:
    """Authenticates bearer tokens and decides interactions (FHIR R4 security.html).

    ``verify_token`` checks an access token and returns its claims (``scope``, ``client_id``,
    ``sub``), raising any exception when the token is not valid.
    """

    def __init__(
        self,
        *,
        demo: bool,
        tokens: list[str],
        verify_token: Callable[[str], dict[str, Any]] | None = None,
    ) -> None:
        self.demo = demo
        self._tokens = [t.encode() for t in tokens]
        self._verify_token = verify_token

    def authenticate_bearer(self, authorization: str | None, address: str | None) -> Principal:
        """The principal for an HTTP ``Authorization`` header (RFC 6750)."""
        if self.demo:
            return Principal(
                "demo", kind="anonymous-demo", scopes=frozenset({"*"}), address=address
            )
        challenge = {"WWW-Authenticate": 'Bearer realm="pixelhub"'}
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthorized("A bearer token is required", headers=challenge)
        token = authorization[7:].strip()
        for known in self._tokens:
            if hmac.compare_digest(token.encode(), known):
                return Principal("static-token", scopes=frozenset({"*"}), address=address)
        if self._verify_token is not None and token:
            try:
                claims = self._verify_token(token)
            except Exception:  # any failure of verification is the same 401 (RFC 6750 §3.1)
                pass
            else:
                return Principal(
                    str(claims.get("sub") or claims["client_id"]),
                    scopes=frozenset(str(claims["scope"]).split()),
                    address=address,
                )
        challenge["WWW-Authenticate"] = 'Bearer realm="pixelhub", error="invalid_token"'
        raise Unauthorized("The bearer token is not valid", headers=challenge)

    def check(self, principal: Principal, interaction: InteractionKind, resource_type: str) -> None:
        """Allow or raise ``Forbidden`` for ``interaction`` on ``resource_type``."""
        if "*" in principal.scopes:
            return
        permission = PERMISSION[interaction]
        for scope in principal.scopes:
            parsed = parse_scope(scope)
            if parsed is None or parsed.context == "patient" or parsed.query:
                continue  # not a clinical scope, or one whose enforcement is not built yet
            if parsed.covers(resource_type, permission):
                return
        raise Forbidden(f"Not permitted: {interaction} on {resource_type}")
