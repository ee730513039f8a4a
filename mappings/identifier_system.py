"""One rule for turning an assigning authority into an ``Identifier.system``.

HL7 v2 carries the authority as an HD (v2.5.1 ch. 2A.33: namespace id, universal id, universal id
type) in CX-4 and EI; DICOM carries the same triple as Issuer of Patient ID (0010,0021) and the
Issuer of Patient ID Qualifiers Sequence (0010,0024) (PS3.3 Table 10-17). Both channels use this
function, so one patient arriving over HL7 and over DICOM gets the same identifier system and
matches. See ``identifier_system.md`` for the table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["identifier_system", "is_oid"]

ISSUER_NAMESPACE = "urn:pixelhub:issuer"
_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")


def is_oid(text: str) -> bool:
    return bool(_OID.fullmatch(text))


def identifier_system(
    namespace: str,
    universal_id: str,
    universal_type: str,
    systems: Mapping[str, str],
    default: str | None,
) -> str | None:
    """The system URI, in order: the configured map (namespace first, then universal id); an ISO
    (or untyped) universal id that is an OID as ``urn:oid:``; a URI universal id as is; a
    namespace that is itself an OID as ``urn:oid:``; any other namespace under the default system
    (``<default>:<namespace>``, or ``urn:pixelhub:issuer:<namespace>`` when the default is an OID
    URN, so two unknown issuers never share a namespace); else the default system.

    With ``default=None`` there is no namespace to fall back on: an unknown issuer, or none,
    gives ``None``."""
    for key in (namespace, universal_id):
        if key and key in systems:
            return systems[key]
    kind = universal_type.upper()
    if universal_id and kind in ("ISO", "") and is_oid(universal_id):
        return f"urn:oid:{universal_id}"
    if universal_id and kind in ("URI", "URL") and ":" in universal_id:
        return universal_id
    if namespace and is_oid(namespace):
        return f"urn:oid:{namespace}"
    named = namespace or universal_id
    if named and default:
        # An OID URN cannot be extended with a name: such issuers get PixelHub's own namespace.
        base = ISSUER_NAMESPACE if default.startswith("urn:oid:") else default
        return f"{base}:{re.sub(r'[^A-Za-z0-9._~-]', '_', named)}"
    return None if named else default
