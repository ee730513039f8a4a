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

__all__ = ["identifier_system", "is_oid", "issuer_of"]

ISSUER_NAMESPACE = "urn:pixelhub:issuer"
_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")
_UNSAFE = re.compile(r"[^A-Za-z0-9._~-]")
_LO_MAX = 64  # Issuer of Patient ID (0010,0021) is an LO (PS3.5 Table 6.2-1)


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
        return f"{base}:{_UNSAFE.sub('_', named)}"
    return None if named else default


def issuer_of(system: str, systems: Mapping[str, str], default: str | None) -> tuple[str, str, str]:
    """The DICOM issuer for an ``Identifier.system``, the inverse of ``identifier_system``:
    ``(Issuer of Patient ID (0010,0021), Universal Entity ID (0040,0032), Universal Entity ID
    Type (0040,0033))`` (PS3.3 C.7.1.1), which ``identifier_system`` maps back to ``system``.

    In order: a key of the configured map whose value is ``system``; ``urn:oid:<oid>`` as the
    OID namespace; ``<default>:<name>`` (``urn:pixelhub:issuer:<name>`` for an OID default) as
    the name; the default system as no issuer at all; any other URI as a universal id of type
    ``URI``. Namespaces longer than an LO allows go to the universal id instead. An empty system
    gives no issuer; a system that is not an absolute URI has no inverse (``identifier_system``
    never makes one) and is returned as a ``URI`` universal id all the same."""
    if not system:
        return ("", "", "")
    for key, value in systems.items():
        if key and value == system:
            return _namespace_or_universal(key)
    oid = system.removeprefix("urn:oid:")
    if oid != system and is_oid(oid) and oid not in systems:
        return _namespace_or_universal(oid)
    if default:
        base = ISSUER_NAMESPACE if default.startswith("urn:oid:") else default
        name = system[len(base) + 1 :] if system.startswith(f"{base}:") else ""
        if _is_plain_name(name, systems):
            return (name, "", "")
    if system == default:
        return ("", "", "")
    return ("", system, "URI")


def _namespace_or_universal(key: str) -> tuple[str, str, str]:
    """``key`` as the namespace when it fits an LO, else as the universal id (``ISO`` for an
    OID): ``identifier_system`` looks both up."""
    if len(key) <= _LO_MAX and "\\" not in key:
        return (key, "", "")
    return ("", key, "ISO" if is_oid(key) else "URI")


def _is_plain_name(name: str, systems: Mapping[str, str]) -> bool:
    """A namespace that ``identifier_system`` would put under the default system unchanged."""
    return (
        0 < len(name) <= _LO_MAX
        and not _UNSAFE.search(name)
        and not is_oid(name)
        and name not in systems
    )
