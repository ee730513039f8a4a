"""Three real ``pixelhub serve`` processes on loopback (issue 12), each with part of one
patient's record, wired together as federation partners the way an operator does it: hub A's
``pixelhub partners jwks`` registered at B and C with ``pixelhub clients add``, then B and C
added at A with ``pixelhub partners add``. B knows the patient by the shared national identifier;
C knows only its own MRN, which A learns through C's PIXm ``$ihe-pix``.

    A (local)  Maria Garcia: A-MRN, national id   CT 2024-01-10 (study 1.2.1), a report
    B          Maria Garcia: B-MRN, national id   MR 2023-06-01 (1.2.2) and the CT 1.2.1 again
               Maria Garcia, born the same day, another national id: someone else (CT 1.2.9)
    C          Maria Garcia: C-MRN, national id   US 2022-05-20 (1.2.3), a photo DocumentReference
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import study as e2e_study
from tests.integration.dicomweb.conftest import TOKEN, WebHub, start_web_hub, stop_process

NATIONAL = "urn:oid:2.16.840.1.113883.4.1"
MRN = {"A": "urn:oid:1.2.840.99.1", "B": "urn:oid:1.2.840.99.2", "C": "urn:oid:1.2.840.99.3"}
NATIONAL_ID = "123-45-6789"
FEDERATED_SCOPES = (
    "system/ImagingStudy.rs system/DocumentReference.rs system/DiagnosticReport.rs"
    " system/Patient.rs system/Endpoint.rs"
)


def cli(data_dir: Path, *args: str) -> str:
    """Run ``pixelhub ARGS --data-dir DATA_DIR``; its standard output."""
    done = subprocess.run(
        [sys.executable, "-m", "hub", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def register_hub_at(hub: WebHub, partner: WebHub, name: str, jwks: Path) -> str:
    """Register ``hub`` as a backend-services client at ``partner``; its client id there."""
    out = cli(
        partner.data_dir,
        "clients",
        "add",
        name,
        "--type",
        "confidential-asymmetric",
        "--jwks",
        str(jwks),
        "--scope",
        FEDERATED_SCOPES,
    )
    return out.split("client_id:")[1].split()[0]


def add_partner(hub: WebHub, partner: WebHub, name: str, *extra: str) -> None:
    jwks = hub.data_dir.parent / "hub-jwks.json"
    jwks.write_text(cli(hub.data_dir, "partners", "jwks"))
    client_id = register_hub_at(hub, partner, f"hub-{name}", jwks)
    cli(
        hub.data_dir,
        "partners",
        "add",
        name,
        "--fhir-base",
        f"{partner.url}/fhir",
        "--client-id",
        client_id,
        "--display",
        f"Hospital {name}",
        *extra,
    )


def post(hub: WebHub, resource: dict[str, Any]) -> str:
    with hub.http() as c:
        r = c.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return f"{resource['resourceType']}/{r.json()['id']}"


def patient(site: str, national: str = NATIONAL_ID) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [
            {"system": MRN[site], "value": f"{site}-1001"},
            {"system": NATIONAL, "value": national},
        ],
        "name": [{"family": "Garcia", "given": ["Maria"]}],
        "birthDate": "1968-04-12",
    }


def study(subject: str, uid: str, modality: str, started: str, endpoint: str) -> dict[str, Any]:
    return {**e2e_study(subject, modality, started, uid), "endpoint": [{"reference": endpoint}]}


def endpoint(hub: WebHub) -> dict[str, Any]:
    return {
        "resourceType": "Endpoint",
        "status": "active",
        "connectionType": {
            "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
            "code": "dicom-wado-rs",
        },
        "payloadType": [{"text": "DICOM"}],
        "payloadMimeType": ["application/dicom"],
        "address": f"{hub.url}/dicomweb",
    }


@dataclass
class Federation:
    a: WebHub
    b: WebHub
    c: WebHub
    patient: str  # "Patient/<id>" at A
    patients: dict[str, str]  # site -> "Patient/<id>" there

    def search(self, resource_type: str, params: Any, token: str = TOKEN, **headers: str) -> Any:
        with self.a.http(token) as c:
            return c.get(f"/fhir/federated/{resource_type}", params=params, headers=headers)


def load(hub: WebHub, site: str, studies: list[tuple[str, str, str]]) -> str:
    subject = post(hub, patient(site))
    ep = post(hub, endpoint(hub))
    for uid, modality, started in studies:
        post(hub, study(subject, uid, modality, started, ep))
    return subject


@pytest.fixture(scope="session")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    hubs = {}
    try:
        for site in "ABC":
            hubs[site] = start_web_hub(
                tmp_path_factory.mktemp(f"site-{site}") / "data",
                channels="dicomweb",
                extra_env={"PIXELHUB_FEDERATION_SITE_ID": f"site-{site.lower()}"},
            )
        a, b, c = hubs["A"], hubs["B"], hubs["C"]
        patients = {
            "A": load(a, "A", [("1.2.1", "CT", "2024-01-10T09:00:00Z")]),
            "B": load(
                b,
                "B",
                [("1.2.2", "MR", "2023-06-01T09:00:00Z"), ("1.2.1", "CT", "2024-01-10T09:00:00Z")],
            ),
            "C": load(c, "C", [("1.2.3", "US", "2022-05-20T09:00:00Z")]),
        }
        twin = post(b, patient("B", national="987-65-4321"))  # same name and birth date
        post(b, study(twin, "1.2.9", "CT", "2024-02-02T09:00:00Z", post(b, endpoint(b))))
        post(
            a,
            {
                "resourceType": "DiagnosticReport",
                "status": "final",
                "code": {"text": "CT chest"},
                "subject": {"reference": patients["A"]},
                "effectiveDateTime": "2024-01-11T10:00:00Z",
            },
        )
        post(
            c,
            {
                "resourceType": "DocumentReference",
                "status": "current",
                "content": [{"attachment": {"contentType": "image/jpeg", "title": "wound"}}],
                "subject": {"reference": patients["C"]},
                "date": "2022-05-21T10:00:00Z",
            },
        )
        add_partner(a, b, "B", "--identifier-system", NATIONAL)
        add_partner(a, c, "C", "--identifier-system", MRN["C"], "--pixm")
        yield Federation(a, b, c, patients["A"], patients)
    finally:
        for hub in hubs.values():
            stop_process(hub.process)
            hub.log.close()


def journal(hub: WebHub) -> list[dict[str, Any]]:
    """Every AuditEvent hub has journaled so far."""
    from hub.config import Settings

    events = []
    for path in sorted(Settings(data_dir=hub.data_dir).audit_directory.glob("journal-*")):
        for line in path.read_bytes().splitlines():
            event = json.loads(line).get("event")
            if event:
                events.append(event)
    return events
