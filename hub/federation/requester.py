"""Who a federated request is for, and how far it has travelled (issue 12, item 4).

A hub that fans a search out to its partners authenticates there as itself (a SMART backend
services client), so the partner's access token names the hub, not the clinician. The clinician
and the purpose of use travel beside the token in the ``X-PixelHub-IHE-IUA`` header: the base64url
JSON object of the IHE IUA ``ihe_iua`` token extension (ITI TF-1 34, ITI-72 "JWT IUA extension"):
``subject_name``, ``subject_id`` (the user's ``fhirUser``), ``subject_organization``,
``purpose_of_use`` (a list of Codings, default v3 PurposeOfUse ``TREAT``) and
``home_community_id`` (the requesting site). The partner records it in its AuditEvent as an
agent beside the hub's client: asserted by that hub, not proven by the token.

Loops are prevented by the ``Via`` header (RFC 9110 §7.6.3): every hub that forwards a federated
request appends ``1.1 <site-id>``; a hub that finds its own site id there, or more than
``federation_max_hops`` entries, answers 508 Loop Detected (RFC 5842 §7.2) instead of fanning out
again.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

import orjson

from hub.errors import LoopDetected

__all__ = [
    "IUA_HEADER",
    "PURPOSE_OF_USE",
    "Requester",
    "forwarded_via",
    "via_entries",
]

IUA_HEADER = "X-PixelHub-IHE-IUA"
PURPOSE_OF_USE = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
_MAX_HEADER = 4096
_TEXT_LIMIT = 256


def _text(value: Any) -> str | None:
    return value[:_TEXT_LIMIT] if isinstance(value, str) and value.strip() else None


def _purposes(value: Any) -> tuple[tuple[str, str], ...]:
    """``purpose_of_use``: a Coding or a list of them, each ``{system, code}``."""
    items = value if isinstance(value, list) else [value]
    found = []
    for item in items[:8]:
        if isinstance(item, dict):
            system, code = _text(item.get("system")), _text(item.get("code"))
            if system and code:
                found.append((system, code))
    return tuple(found)


@dataclass(frozen=True)
class Requester:
    """The person a federated request is made for, as the requesting hub asserts it."""

    subject_name: str
    subject_id: str | None = None  # fhirUser, e.g. "Practitioner/12"
    organization: str | None = None
    home_community_id: str | None = None  # the requesting site
    purpose_of_use: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def header_value(self) -> str:
        """The base64url (unpadded) JSON ``ihe_iua`` object for ``IUA_HEADER``."""
        claims: dict[str, Any] = {"subject_name": self.subject_name}
        if self.subject_id:
            claims["subject_id"] = self.subject_id
        if self.organization:
            claims["subject_organization"] = self.organization
        if self.home_community_id:
            claims["home_community_id"] = self.home_community_id
        if self.purpose_of_use:
            claims["purpose_of_use"] = [{"system": s, "code": c} for s, c in self.purpose_of_use]
        return base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode("ascii")

    @classmethod
    def from_header(cls, value: str | None) -> Requester | None:
        """The requester of a received ``IUA_HEADER``; ``None`` when absent or malformed (a
        malformed assertion is ignored, never trusted in part)."""
        if not value or len(value) > _MAX_HEADER:
            return None
        try:
            raw = base64.urlsafe_b64decode(value.strip() + "=" * (-len(value.strip()) % 4))
            claims = orjson.loads(raw)
        except (binascii.Error, ValueError):
            return None
        if not isinstance(claims, dict):
            return None
        name = _text(claims.get("subject_name"))
        if name is None:
            return None
        return cls(
            subject_name=name,
            subject_id=_text(claims.get("subject_id")),
            organization=_text(claims.get("subject_organization")),
            home_community_id=_text(claims.get("home_community_id")),
            purpose_of_use=_purposes(claims.get("purpose_of_use")),
        )


def via_entries(value: str | None) -> list[str]:
    """The received-by pseudonyms of a ``Via`` header (RFC 9110 §7.6.3), in order."""
    entries = []
    for part in (value or "").split(","):
        words = part.split()
        if len(words) >= 2:
            entries.append(words[1])
    return entries


def forwarded_via(value: str | None, site_id: str, max_hops: int) -> str:
    """The ``Via`` to send onwards from this hub, or ``LoopDetected``."""
    entries = via_entries(value)
    if site_id in entries:
        raise LoopDetected(f"This federated request already passed this hub ({site_id}): a loop")
    if len(entries) >= max_hops:
        raise LoopDetected(
            f"This federated request has already passed {len(entries)} hubs"
            f" (federation_max_hops is {max_hops})"
        )
    return ", ".join(f"1.1 {e}" for e in [*entries, site_id])
