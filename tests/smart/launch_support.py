"""Drives the authorization endpoint's pages the way a browser would (for TestClient tests)."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi.testclient import TestClient
from httpx import Response

from hub.composition import Hub
from hub.smart import ClientStore
from hub.smart.users import UserStore

REDIRECT = "http://localhost:9999/cb"
AUD = "http://testserver/fhir"
APP_SCOPES = (
    "openid",
    "fhirUser",
    "launch",
    "launch/patient",
    "offline_access",
    "online_access",
    "user/*.rs",
)
PASSWORD = "correct horse battery"


@dataclass
class Launch:
    public_id: str
    confidential_id: str
    confidential_secret: str


def setup_launch(hub: Hub, patient_id: str | None = None) -> Launch:
    users = UserStore(hub.settings.users_file)
    users.add("alice", PASSWORD, ("clinician",), "Practitioner/p1")
    if patient_id is not None:
        users.add("pat", PASSWORD, ("clinician",), f"Patient/{patient_id}")
    store = ClientStore(hub.settings.clients_file)
    public, _ = store.add("Viewer", "public", APP_SCOPES, redirect_uris=(REDIRECT,))
    confidential, secret = store.add(
        "Portal", "confidential-symmetric", APP_SCOPES, redirect_uris=(REDIRECT,)
    )
    assert secret is not None
    return Launch(public.client_id, confidential.client_id, secret)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def authorize_params(client_id: str, challenge: str, **extra: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": "openid fhirUser launch/patient offline_access user/*.rs",
        "state": "st-123",
        "aud": AUD,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    return {k: v for k, v in params.items() if v != ""}


def hidden(page: str) -> dict[str, str]:
    fields = re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page)
    return dict(fields)


def redirect_params(response: Response) -> dict[str, str]:
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?"), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def sign_in(
    http: TestClient, client_id: str, user: str = "alice", patient: str | None = None, **extra: str
) -> tuple[str, str]:
    """Authorize, sign in, pick ``patient``, approve; returns ``(code, verifier)``."""
    verifier, challenge = pkce()
    page = http.get("/auth/authorize", params=authorize_params(client_id, challenge, **extra))
    assert page.status_code == 200, page.text
    r = http.post("/auth/login", data={**hidden(page.text), "username": user, "password": PASSWORD})
    assert r.status_code == 200, r.text
    if patient is not None:
        assert "Choose a patient" in r.text
        r = http.post("/auth/patient", data={**hidden(r.text), "patient": patient})
        assert r.status_code == 200, r.text
    assert "Allow access?" in r.text
    r = http.post(
        "/auth/consent", data={**hidden(r.text), "decision": "approve"}, follow_redirects=False
    )
    params = redirect_params(r)
    assert params["state"] == "st-123"
    return params["code"], verifier


def exchange(http: TestClient, client_id: str, code: str, verifier: str, **extra: Any) -> Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
        "client_id": client_id,
        **extra,
    }
    return http.post("/auth/token", data={k: v for k, v in form.items() if v is not None})


def form_urlencoded(data: dict[str, str]) -> str:
    return urlencode(data)
