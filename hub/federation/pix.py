"""PIXm Patient Identifier Cross-reference Manager: ``GET /fhir/Patient/$ihe-pix`` (IHE ITI-83,
PIXm 3.0 §2:3.83.4.1), so partners can ask this hub how it names their patient (issue 12, item 3).

``sourceIdentifier`` (``system|value``, required) finds the patient; the answer is a
``Parameters`` with one ``targetIdentifier`` per other identifier of that patient (only those in
the ``targetSystem`` domains when given) and a ``targetId`` reference to it. PIXm's error cases:
an assigning authority no patient here has -> 400 ``code-invalid``; a ``targetSystem`` no
patient here has -> 403 ``code-invalid``; no patient with the identifier -> 404 ``not-found``.
Identifiers only, never demographics: a cross-reference, not a match.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from hub.auth import Principal
from hub.errors import Forbidden, InvalidRequest, Issue, NotFound
from hub.federation.identity import escape
from hub.fhir.service import FhirService

__all__ = ["ihe_pix"]

_INTERNAL = Principal("pixelhub-pixm", kind="peer", scopes=frozenset({"system/Patient.rs"}))


def _patients(service: FhirService, principal: Principal, identifier: str) -> list[Any]:
    bundle = service.search(principal, "Patient", [("identifier", identifier), ("_count", "2")])
    return [e["resource"] for e in orjson.loads(orjson.dumps(bundle)).get("entry") or []]


def _known_domain(service: FhirService, system: str) -> bool:
    return bool(_patients(service, _INTERNAL, f"{escape(system)}|"))


def ihe_pix(
    service: FhirService, principal: Principal, params: Sequence[tuple[str, str]]
) -> dict[str, Any]:
    """The ITI-83 answer for ``params`` as ``principal`` may see it."""
    sources = [v for k, v in params if k == "sourceIdentifier"]
    targets = [t for k, v in params if k == "targetSystem" for t in v.split(",") if t]
    system, bar, value = sources[0].partition("|") if len(sources) == 1 else ("", "", "")
    if not (system and bar and value):
        raise InvalidRequest("sourceIdentifier (system|value) is required once")
    if not _known_domain(service, system):
        raise InvalidRequest(
            "sourceIdentifier Assigning Authority not found",
            [Issue("sourceIdentifier Assigning Authority not found", code="code-invalid")],
        )
    for target in targets:
        if not _known_domain(service, target):
            raise Forbidden(
                "targetSystem not found", [Issue("targetSystem not found", code="code-invalid")]
            )
    found = _patients(service, principal, f"{escape(system)}|{escape(value)}")
    if not found:
        raise NotFound("sourceIdentifier Patient Identifier not found")
    parameters: list[dict[str, Any]] = []
    for patient in found:
        for ident in patient.get("identifier") or []:
            other = (ident.get("system"), ident.get("value")) != (system, value)
            if other and (not targets or ident.get("system") in targets):
                kept = {k: ident[k] for k in ("use", "system", "value") if k in ident}
                parameters.append({"name": "targetIdentifier", "valueIdentifier": kept})
        parameters.append(
            {"name": "targetId", "valueReference": {"reference": f"Patient/{patient['id']}"}}
        )
    return {"resourceType": "Parameters", "parameter": parameters}
