"""The one access-policy seam every door passes through.

An adapter (HTTP, DICOM, MLLP...) authenticates its caller into a ``Principal``; every interaction
then asks ``AccessPolicy.check``. Until PixelHub's SMART authorization server lands (issue 6), the
policy knows two modes: ``--demo`` (everything allowed, said loudly at start-up) and static bearer
tokens from the settings. Nothing is ever open by accident: with no tokens configured and no demo,
every request is refused.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Literal

from hub.errors import Forbidden, Unauthorized

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
    """Authenticates bearer tokens and decides interactions (FHIR R4 security.html)."""

    def __init__(self, *, demo: bool, tokens: list[str]) -> None:
        self.demo = demo
        self._tokens = [t.encode() for t in tokens]

    def authenticate_bearer(self, authorization: str | None, address: str | None) -> Principal:
        """The principal for an HTTP ``Authorization`` header (RFC 6750)."""
        if self.demo:
            return Principal(
                "demo", kind="anonymous-demo", scopes=frozenset({"*"}), address=address
            )
        challenge = {"WWW-Authenticate": 'Bearer realm="pixelhub"'}
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthorized("A bearer token is required", headers=challenge)
        token = authorization[7:].strip().encode()
        for known in self._tokens:
            if hmac.compare_digest(token, known):
                return Principal("static-token", scopes=frozenset({"*"}), address=address)
        challenge["WWW-Authenticate"] = 'Bearer realm="pixelhub", error="invalid_token"'
        raise Unauthorized("The bearer token is not valid", headers=challenge)

    def check(self, principal: Principal, interaction: InteractionKind, resource_type: str) -> None:
        """Allow or raise ``Forbidden`` for ``interaction`` on ``resource_type``."""
        if "*" in principal.scopes:
            return
        permission = PERMISSION[interaction]
        for scope in principal.scopes:
            _, _, rest = scope.partition("/")
            rtype, _, perms = rest.partition(".")
            granted = {"*": "cruds", "read": "rs", "write": "cud"}.get(perms, perms)
            if rtype in ("*", resource_type) and permission in granted:
                return
        raise Forbidden(f"Not permitted: {interaction} on {resource_type}")
