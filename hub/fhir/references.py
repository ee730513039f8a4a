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


# Where an object sits: ``None`` for the walked node itself, else ``(parent's place, key or
# list index)``; rendered as a FHIRPath location only for the objects asked about.
Place = tuple[Any, str | int] | None


def is_attachment(item: dict[str, Any]) -> bool:
    """An ``Attachment`` (datatypes.html#Attachment) with a string ``url``: an object with
    ``url`` beside ``contentType``, ``data``, ``size``, ``hash`` or ``title`` (an extension's
    ``url`` has none of them)."""
    return isinstance(item.get("url"), str) and not _ATTACHMENT_KEYS.isdisjoint(item)


def iter_objects(node: Any) -> Iterator[tuple[dict[str, Any], Place]]:
    """Every JSON object in ``node`` (depth first) with its place; paths are not built here,
    since most objects of a resource are never reported."""
    stack: list[tuple[Any, Place]] = [(node, None)]
    pop, push = stack.pop, stack.append
    while stack:
        item, place = pop()
        if type(item) is dict:
            yield item, place
            for key, value in item.items():
                if type(value) is dict or type(value) is list:
                    push((value, (place, key)))
        elif type(item) is list:
            for i, value in enumerate(item):
                if type(value) is dict or type(value) is list:
                    push((value, (place, i)))


def location(path: str, place: Place) -> str:
    """The FHIRPath location of ``place`` below ``path`` (e.g. ``DiagnosticReport.result[0]``)."""
    parts: list[str] = []
    while place is not None:
        place, step = place
        parts.append(f"[{step}]" if type(step) is int else f".{step}")
    return path + "".join(reversed(parts))


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
