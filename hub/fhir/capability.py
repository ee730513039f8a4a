"""The CapabilityStatement at ``/fhir/metadata`` (FHIR R4 capabilitystatement.html).

Generated from what is implemented: the served types, the interactions the routes offer, and every
SearchParameter of the registry with its type, less those in ``NOT_ADVERTISED``. The
``security`` element is supplied by whoever configures authentication (the SMART issue adds the
``oauth-uris`` extension there).

Every advertised search parameter is checked by tests/conformance/test_capability_truth.py (a
resource that matches, one that does not, a search that must find exactly the first); a parameter
that does not pass goes into ``NOT_ADVERTISED`` with its reason, and conformance/README.md lists
them.
"""

from __future__ import annotations

from typing import Any

from hub.search.registry import SERVED_TYPES, SearchParameterRegistry

FHIR_VERSION = "4.0.1"
TYPE_INTERACTIONS = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
SYSTEM_INTERACTIONS = ("transaction", "batch", "search-system", "history-system")
# Append-only (issue 7): created, read and searched, never updated or deleted.
APPEND_ONLY_TYPES = frozenset({"AuditEvent"})
APPEND_ONLY_INTERACTIONS = (
    "read",
    "vread",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)

# ``Type:code`` -> why the statement does not offer it although the registry knows it.
NOT_ADVERTISED: dict[str, str] = {
    f"{rtype}:phonetic": (
        "no phonetic algorithm is implemented: the index keeps the names as written, so a"
        " sound-alike spelling (Smyth for Smith) finds nothing"
    )
    for rtype in ("Patient", "Practitioner", "Organization")
}


# Operations served (``hub.http.federation_routes``): IHE PIXm ITI-83 for federation partners.
OPERATIONS = {
    "Patient": [
        {
            "name": "ihe-pix",
            "definition": "https://profiles.ihe.net/ITI/PIXm/OperationDefinition/IHE.PIXm.pix",
        }
    ]
}


def capability_statement(
    base_url: str,
    registry: SearchParameterRegistry,
    *,
    software_version: str,
    security: dict[str, Any] | None = None,
    published: str = "2026-01-01",
) -> dict[str, Any]:
    resources = []
    for rtype in SERVED_TYPES:
        params = [
            {
                "name": "_id",
                "definition": "http://hl7.org/fhir/SearchParameter/Resource-id",
                "type": "token",
            },
            {
                "name": "_lastUpdated",
                "definition": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated",
                "type": "date",
            },
        ]
        for d in sorted(registry.for_type(rtype), key=lambda d: d.code):
            if f"{rtype}:{d.code}" not in NOT_ADVERTISED:
                params.append({"name": d.code, "definition": d.url, "type": d.type})
        references = sorted(
            {f"{rtype}:{d.code}" for d in registry.for_type(rtype) if d.type == "reference"}
        )
        revs = sorted(
            {
                f"{other}:{d.code}"
                for other in SERVED_TYPES
                for d in registry.for_type(other)
                if d.type == "reference" and (not d.targets or rtype in d.targets)
            }
        )
        writable = rtype not in APPEND_ONLY_TYPES
        interactions = TYPE_INTERACTIONS if writable else APPEND_ONLY_INTERACTIONS
        operations = OPERATIONS.get(rtype)
        resources.append(
            {
                **({"operation": operations} if operations else {}),
                "type": rtype,
                "profile": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
                "interaction": [{"code": code} for code in interactions],
                "versioning": "versioned-update",
                "readHistory": True,
                "updateCreate": writable,
                "conditionalCreate": True,
                "conditionalRead": "not-supported",
                "conditionalUpdate": writable,
                "conditionalDelete": "single" if writable else "not-supported",
                "referencePolicy": ["literal", "logical", "local", "enforced"],
                "searchInclude": ["*", *references],
                "searchRevInclude": revs,
                "searchParam": params,
            }
        )
    rest: dict[str, Any] = {
        "mode": "server",
        "resource": resources,
        "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
    }
    if security is not None:
        rest["security"] = security
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": published,
        "publisher": "PixelHub",
        "kind": "instance",
        "software": {"name": "PixelHub", "version": software_version},
        "implementation": {"description": "PixelHub FHIR R4 server", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [rest],
    }
