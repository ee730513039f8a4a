"""SMART clinical scopes, v1 and v2, parsed into one model.

SMART App Launch 2.2 ``scopes-and-launch-context.html``: a clinical scope is
``<context>/<resource type or *>.<permissions>[?<query>]`` with context ``patient``, ``user`` or
``system``. Version 1 permissions are ``read``, ``write`` and ``*``; version 2 permissions are an
ordered subset of ``cruds`` (§"Scopes for requesting FHIR resources"), optionally restricted by a
search query (§"Finer-grained resource constraints using search parameters"). Both become a
``ResourceScope`` with the set of v2 letters it grants; anything else (``openid``, ``launch``,
``offline_access``...) is not a resource scope and parses to ``None``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal
from urllib.parse import parse_qsl

Context = Literal["patient", "user", "system"]
V2_ORDER = "cruds"
# Types a ``*`` scope does not reach: auditors get ``user/AuditEvent.rs``, patients
# ``patient/AuditEvent.rs`` ("who looked at my images"), clinicians' ``user/*.rs`` does not read it.
# ``Binary`` also holds the originals of uploaded media, with their EXIF and GPS (issue 10): viewers
# get the metadata-free renditions, the originals need a scope that names ``Binary``.
EXPLICIT_ONLY = frozenset({"AuditEvent", "Binary"})
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(
    r"^(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]*)\.(?P<perms>[a-z*]+)"
    r"(?:\?(?P<query>.+))?$"
)


@dataclass(frozen=True)
class ResourceScope:
    """One clinical scope: context, resource type (``*`` for all), granted letters of
    ``cruds``, and the search-parameter restriction of a v2 scope (empty when unrestricted)."""

    context: Context
    resource_type: str
    permissions: frozenset[str]
    query: tuple[tuple[str, str], ...] = ()
    version: Literal[1, 2] = 2

    def covers(self, resource_type: str, permission: str) -> bool:
        """True when this scope names ``resource_type`` and grants ``permission``. A wildcard
        never covers ``EXPLICIT_ONLY`` types: the audit log and originals need their own scope."""
        if self.resource_type == "*":
            return resource_type not in EXPLICIT_ONLY and permission in self.permissions
        return self.resource_type == resource_type and permission in self.permissions


def _v2_letters(perms: str) -> frozenset[str] | None:
    """The letters of a v2 permission string, which must follow the order c, r, u, d, s."""
    position = -1
    for letter in perms:
        index = V2_ORDER.find(letter)
        if index <= position:  # unknown letter, repeated or out of order
            return None
        position = index
    return frozenset(perms)


@lru_cache(maxsize=4096)
def parse_scope(scope: str) -> ResourceScope | None:
    """The ``ResourceScope`` of a clinical scope string, or ``None`` for any other scope."""
    match = _SCOPE.match(scope)
    if match is None:
        return None
    context: Context = match["context"]  # type: ignore[assignment]
    perms, query = match["perms"], match["query"]
    if perms in _V1:
        if query is not None:  # queries exist only in v2
            return None
        return ResourceScope(context, match["type"], frozenset(_V1[perms]), version=1)
    letters = _v2_letters(perms)
    if letters is None:
        return None
    restriction = tuple(parse_qsl(query, keep_blank_values=True)) if query else ()
    if query and not restriction:
        return None
    return ResourceScope(context, match["type"], letters, restriction, version=2)


def parse_scopes(scopes: str) -> list[ResourceScope]:
    """Every clinical scope of a space-separated scope string (RFC 6749 §3.3)."""
    return [s for s in map(parse_scope, scopes.split()) if s is not None]
