"""``Binary`` content kept in the blob store (FHIR R4 binary.html).

A Binary created in its native format (``POST /fhir/Binary`` with the content as the body, not
FHIR JSON) is streamed to the blob store; the stored resource carries ``contentType`` and
``securityContext`` but no ``data``, and names its blob in ``meta.extension`` (``BLOB_EXTENSION``).
Only PixelHub writes that extension: a client's resource that carries it is refused, so no client
can point a Binary at bytes it was never given.
"""

from __future__ import annotations

import base64
from typing import Any

from hub.errors import InvalidResource

BLOB_EXTENSION = "urn:pixelhub:binary:blob"
OCTET_STREAM = "application/octet-stream"


def blob_of(resource: dict[str, Any]) -> str | None:
    """The blob key of a Binary whose content is in the blob store, else ``None``."""
    for extension in resource.get("meta", {}).get("extension", []) or []:
        if isinstance(extension, dict) and extension.get("url") == BLOB_EXTENSION:
            value = extension.get("valueString")
            return value if isinstance(value, str) else None
    return None


def check_not_reserved(resource: dict[str, Any]) -> None:
    """400 for a client resource that names a blob: that extension is PixelHub's own."""
    meta = resource.get("meta")
    if isinstance(meta, dict) and any(
        isinstance(e, dict) and e.get("url") == BLOB_EXTENSION for e in meta.get("extension") or []
    ):
        raise InvalidResource.at(
            f"meta.extension {BLOB_EXTENSION} is reserved to PixelHub",
            f"{resource.get('resourceType', 'Resource')}.meta.extension",
        )


def blob_binary(content_type: str, blob_key: str, security_context: str | None) -> dict[str, Any]:
    """The stored form of a Binary whose content is the blob ``blob_key``."""
    resource: dict[str, Any] = {
        "resourceType": "Binary",
        "meta": {"extension": [{"url": BLOB_EXTENSION, "valueString": blob_key}]},
        "contentType": content_type,
    }
    if security_context:
        resource["securityContext"] = {"reference": security_context}
    return resource


def inline_data(resource: dict[str, Any]) -> bytes:
    """The content of a Binary that carries it as base64 ``data`` (empty when it has none)."""
    data = resource.get("data")
    return base64.b64decode(data) if isinstance(data, str) else b""


__all__ = [
    "BLOB_EXTENSION",
    "OCTET_STREAM",
    "blob_binary",
    "blob_of",
    "check_not_reserved",
    "inline_data",
]
