"""A federation partner as an R4 ``Organization`` and its FHIR ``Endpoint`` (issue 12, item 1).

Pure: the table beside this module (``partner_to_endpoint.md``) documents each element.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PARTNER_SYSTEM", "partner_to_endpoint"]

PARTNER_SYSTEM = "urn:pixelhub:federation:partner"  # Identifier.system of both resources
_CONNECTION = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
_PAYLOAD = "http://terminology.hl7.org/CodeSystem/endpoint-payload-type"
_ORG_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"


def partner_to_endpoint(
    *,
    name: str,
    display: str,
    fhir_base: str,
    enabled: bool,
    organization_reference: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(Organization, Endpoint)`` of one partner; the Endpoint names the Organization when
    ``organization_reference`` (``Organization/<id>``) is given."""
    identifier = [{"system": PARTNER_SYSTEM, "value": name}]
    organization: dict[str, Any] = {
        "resourceType": "Organization",
        "identifier": identifier,
        "active": enabled,
        "type": [{"coding": [{"system": _ORG_TYPE, "code": "prov"}]}],
        "name": display,
    }
    endpoint: dict[str, Any] = {
        "resourceType": "Endpoint",
        "identifier": identifier,
        "status": "active" if enabled else "off",
        "connectionType": {"system": _CONNECTION, "code": "hl7-fhir-rest"},
        "name": f"{display} FHIR API",
        "payloadType": [{"coding": [{"system": _PAYLOAD, "code": "any"}]}],
        "payloadMimeType": ["application/fhir+json"],
        "address": fhir_base,
    }
    if organization_reference:
        endpoint["managingOrganization"] = {"reference": organization_reference}
    return organization, endpoint
