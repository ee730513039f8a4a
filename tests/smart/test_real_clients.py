"""Real SMART clients against ``pixelhub serve`` as a process: clients registered with the
``pixelhub clients`` CLI, then the SMART Python client (``fhirclient``, PyPI) as a backend
service (private_key_jwt) and a plain HTTP client with a client secret."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fhirclient import client as smart_client
from fhirclient.models.documentreference import DocumentReference
from fhirclient.models.imagingstudy import ImagingStudy

from hub.smart.keys import public_jwk
from tests.e2e.support import patient, study
from tests.e2e.test_serve import TOKEN, running_hub


def cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "hub", *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _field(output: str, name: str) -> str:
    (line,) = [ln for ln in output.splitlines() if ln.startswith(f"{name}: ")]
    return line.split(": ", 1)[1]


def document(patient_ref: str) -> dict[str, object]:
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": patient_ref},
        "content": [{"attachment": {"contentType": "application/pdf", "url": "urn:x:1"}}],
    }


def test_fhirclient_backend_service_and_secret_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setenv("PIXELHUB_CHANNELS", "http")
    data = tmp_path / "data"
    key = ec.generate_private_key(ec.SECP384R1())
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [{**public_jwk(key), "kid": "k1", "alg": "ES384"}]}))
    scopes = "system/ImagingStudy.rs system/DocumentReference.rs"
    out = cli(
        "clients", "add", "hie", "--type", "confidential-asymmetric",
        "--jwks", str(jwks_file), "--scope", scopes, "--data-dir", str(data),
    )  # fmt: skip
    backend_id = _field(out, "client_id")
    out = cli(
        "clients", "add", "partner", "--type", "confidential-symmetric",
        "--scope", "system/ImagingStudy.read", "--data-dir", str(data),
    )  # fmt: skip
    partner_id, partner_secret = _field(out, "client_id"), _field(out, "client_secret")
    listed = cli("clients", "list", "--data-dir", str(data))
    assert backend_id in listed and partner_id in listed
    assert partner_secret not in listed
    assert partner_secret not in (data / "smart" / "clients.json").read_text()

    with running_hub(data) as (_, url):
        admin = {"Authorization": f"Bearer {TOKEN}"}
        pid = httpx.post(f"{url}/fhir/Patient", json=patient(), headers=admin).json()["id"]
        for resource in (study(f"Patient/{pid}"), document(f"Patient/{pid}")):
            r = httpx.post(f"{url}/fhir/{resource['resourceType']}", json=resource, headers=admin)
            assert r.status_code == 201, r.text
        assert (data / "keys" / "rs384.pem").exists()  # generated at start-up

        # fhirclient finds the token endpoint through /fhir/metadata's oauth-uris extension
        assertion = jwt.encode(
            {
                "iss": backend_id,
                "sub": backend_id,
                "aud": f"{url}/auth/token",
                "exp": int(time.time()) + 120,
                "jti": uuid.uuid4().hex,
            },
            key,
            algorithm="ES384",
            headers={"kid": "k1"},
        )
        settings = {
            "app_id": backend_id,
            "api_base": f"{url}/fhir",
            "jwt_token": assertion,
            "scope": scopes,
        }
        fhir = smart_client.FHIRClient(settings=settings)
        request.addfinalizer(fhir.server.session.close)  # fhirclient never closes its session
        fhir.prepare()
        fhir.authorize()
        assert fhir.ready
        studies = list(
            ImagingStudy.where({"subject": f"Patient/{pid}"}).perform_resources_iter(fhir.server)
        )
        assert [s.subject.reference for s in studies] == [f"Patient/{pid}"]
        documents = list(DocumentReference.where({}).perform_resources_iter(fhir.server))
        assert len(documents) == 1

        # a client-secret client over plain HTTP, with a v1 scope
        r = httpx.post(
            f"{url}/auth/token",
            data={"grant_type": "client_credentials", "scope": "system/ImagingStudy.read"},
            auth=(partner_id, partner_secret),
        )
        assert r.status_code == 200, r.text
        bearer = {"Authorization": f"Bearer {r.json()['access_token']}"}
        assert httpx.get(f"{url}/fhir/ImagingStudy", headers=bearer).json()["total"] == 1
        assert httpx.get(f"{url}/fhir/DocumentReference", headers=bearer).status_code == 403
