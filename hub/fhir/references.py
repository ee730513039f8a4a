"""Walking the references inside a resource (FHIR R4 references.html).

Used to resolve ``urn:uuid:`` and conditional references in transactions (http.html#trules) and to
enforce referential integrity of local references on every write.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from hub.search.registry import SERVED_TYPES

_LOCAL = re.compile(
    r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/([A-Za-z0-9\-.]{1,64}))?$"
)
_SERVED = frozenset(SERVED_TYPES)


def iter_reference_holders(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """``(FHIRPath location, object)`` for every JSON object in ``node`` that carries a string
    ``reference`` (a FHIR ``Reference``); ``path`` is the location of ``node`` itself."""
    stack: list[tuple[str, Any]] = [(path, node)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("reference"), str):
                yield where, item
            for key, value in item.items():
                if isinstance(value, dict | list):
                    stack.append((f"{where}.{key}", value))
        elif isinstance(item, list):
            for i, value in enumerate(item):
                if isinstance(value, dict | list):
                    stack.append((f"{where}[{i}]", value))


def iter_attachments(node: Any) -> Iterator[dict[str, Any]]:
    """Every ``Attachment`` (datatypes.html#Attachment) in ``node`` that has a string ``url``:
    an object with ``url`` beside ``contentType``, ``data``, ``size``, ``hash`` or ``title``
    (an extension's ``url`` has none of them)."""
    for holder in _iter_objects(node):
        if isinstance(holder.get("url"), str) and _ATTACHMENT_KEYS & holder.keys():
            yield holder


def _iter_objects(node: Any) -> Iterator[dict[str, Any]]:
    stack: list[Any] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(v for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, dict | list))


_ATTACHMENT_KEYS = frozenset({"contentType", "data", "size", "hash", "title"})


def parse_local(reference: str) -> tuple[str, str] | None:
    """``Type/id`` or ``Type/id/_history/v`` of a served type -> ``(Type, id)``, else ``None``."""
    m = _LOCAL.match(reference)
    if m and m.group(1) in _SERVED:
        return m.group(1), m.group(2)
    return None


def strip_base(reference: str, base_url: str) -> str:
    """An absolute reference to this server's own base becomes relative (references.html)."""
    prefix = base_url.rstrip("/") + "/"
    return reference[len(prefix) :] if reference.startswith(prefix) else reference
