"""EHR launch (SMART App Launch 2.2 ``app-launch.html`` §"Launch App: EHR Launch"): the EHR
registers the context through ``POST /auth/launch`` and gets an opaque launch id; the app's
authorization request presents it with the ``launch`` scope; the token response carries the
context. Attacks: unauthenticated or unprivileged launch API calls, unknown, reused, expired and
other-app launch ids, another user completing the launch."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from hub.composition import Hub
from hub.smart import ClientStore
from tests.e2e.support import TOKEN, patient, study
from tests.smart.launch_support import (
    PASSWORD,
    Launch,
    authorize_params,
    exchange,
    hidden,
    pkce,
    redirect_params,
    setup_launch,
    sign_in,
)
from tests.smart.support import auth_server

ADMIN = {"Authorization": f"Bearer {TOKEN}"}
EHR_SCOPE = "launch openid fhirUser user/*.rs"


@pytest.fixture
def pid(http: TestClient) -> str:
    pid: str = http.post("/fhir/Patient", json=patient(), headers=ADMIN).json()["id"]
    r = http.post("/fhir/ImagingStudy", json=study(f"Patient/{pid}"), headers=ADMIN)
    assert r.status_code == 201
    return pid


@pytest.fixture
def launch(hub: Hub, pid: str) -> Launch:
    return setup_launch(hub, pid)


def register(http: TestClient, body: dict[str, Any], headers: dict[str, str] = ADMIN) -> str:
    r = http.post("/auth/launch", json=body, headers=headers)
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    assert r.json()["expires_in"] == 300
    launch_id: str = r.json()["launch"]
    return launch_id


def context(pid: str, **extra: Any) -> dict[str, Any]:
    return {
        "patient": pid,
        "encounter": "enc-1",
        "fhirContext": [{"reference": "ImagingStudy/st-9", "role": "https://example.org/focus"}],
        "need_patient_banner": False,
        "smart_style_url": "https://ehr.example.org/smart-style.json",
        **extra,
    }


def test_ehr_launch_end_to_end(http: TestClient, launch: Launch, pid: str) -> None:
    launch_id = register(http, context(pid))
    assert len(launch_id) >= 40 and pid not in launch_id  # opaque
    code, verifier = sign_in(http, launch.public_id, scope=EHR_SCOPE, launch=launch_id)
    r = exchange(http, launch.public_id, code, verifier)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["patient"] == pid
    assert body["encounter"] == "enc-1"
    assert body["fhirContext"] == [
        {"reference": "ImagingStudy/st-9", "role": "https://example.org/focus"}
    ]
    assert body["need_patient_banner"] is False
    assert body["smart_style_url"] == "https://ehr.example.org/smart-style.json"
    assert set(body["scope"].split()) == set(EHR_SCOPE.split())
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert (claims["patient"], claims["encounter"]) == (pid, "enc-1")
    auth = (launch.confidential_id, launch.confidential_secret)
    info = http.post("/auth/introspect", data={"token": body["access_token"]}, auth=auth).json()
    assert info["patient"] == pid and info["encounter"] == "enc-1"
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert http.get("/fhir/ImagingStudy", headers=bearer).json()["total"] == 1


def test_launch_context_survives_refresh(http: TestClient, launch: Launch, pid: str) -> None:
    launch_id = register(http, context(pid))
    scope = EHR_SCOPE + " offline_access"
    code, verifier = sign_in(http, launch.public_id, scope=scope, launch=launch_id)
    first = exchange(http, launch.public_id, code, verifier).json()
    r = http.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": launch.public_id,
        },
    )
    assert r.status_code == 200, r.text
    assert (r.json()["patient"], r.json()["encounter"]) == (pid, "enc-1")


def test_launch_without_patient_uses_the_picker(http: TestClient, launch: Launch, pid: str) -> None:
    launch_id = register(http, {"fhirContext": [{"reference": f"Patient/{pid}"}]})
    scope = "launch launch/patient user/*.rs"
    code, verifier = sign_in(http, launch.public_id, patient=pid, scope=scope, launch=launch_id)
    body = exchange(http, launch.public_id, code, verifier).json()
    assert body["patient"] == pid and "encounter" not in body


def test_the_launch_id_works_once(http: TestClient, launch: Launch, pid: str) -> None:
    launch_id = register(http, context(pid))
    _, challenge = pkce()
    params = authorize_params(launch.public_id, challenge, scope=EHR_SCOPE, launch=launch_id)
    assert http.get("/auth/authorize", params=params).status_code == 200
    r = http.get("/auth/authorize", params=params, follow_redirects=False)
    assert redirect_params(r)["error"] == "invalid_request"


def test_expired_launch_is_refused(
    http: TestClient, hub: Hub, launch: Launch, pid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow = auth_server(hub).code_flow
    assert flow is not None
    launch_id = register(http, context(pid))
    now = flow.launches.clock()
    monkeypatch.setattr(flow.launches, "clock", lambda: now + 301)
    _, challenge = pkce()
    params = authorize_params(launch.public_id, challenge, scope=EHR_SCOPE, launch=launch_id)
    r = http.get("/auth/authorize", params=params, follow_redirects=False)
    assert redirect_params(r) == {
        "error": "invalid_request",
        "error_description": "unknown, expired or already used launch",
        "state": "st-123",
    }


def test_launch_needs_the_launch_scope(http: TestClient, launch: Launch, pid: str) -> None:
    launch_id = register(http, context(pid))
    _, challenge = pkce()
    params = authorize_params(launch.public_id, challenge, scope="user/*.rs", launch=launch_id)
    r = http.get("/auth/authorize", params=params, follow_redirects=False)
    assert redirect_params(r)["error"] == "invalid_scope"


def test_launch_bound_to_another_app(http: TestClient, launch: Launch, pid: str) -> None:
    launch_id = register(http, context(pid, client_id=launch.confidential_id))
    _, challenge = pkce()
    params = authorize_params(launch.public_id, challenge, scope=EHR_SCOPE, launch=launch_id)
    r = http.get("/auth/authorize", params=params, follow_redirects=False)
    assert redirect_params(r)["error_description"] == "this launch is for another app"
    launch_id = register(http, context(pid, client_id=launch.public_id))
    code, verifier = sign_in(http, launch.public_id, scope=EHR_SCOPE, launch=launch_id)
    assert exchange(http, launch.public_id, code, verifier).json()["patient"] == pid


def test_launch_for_one_user(http: TestClient, launch: Launch, pid: str) -> None:
    launch_id = register(http, context(pid, user="alice"))
    _, challenge = pkce()
    params = authorize_params(launch.public_id, challenge, scope=EHR_SCOPE, launch=launch_id)
    page = http.get("/auth/authorize", params=params)
    r = http.post(
        "/auth/login",
        data={**hidden(page.text), "username": "pat", "password": PASSWORD},
        follow_redirects=False,
    )
    assert redirect_params(r)["error"] == "access_denied"
    launch_id = register(http, context(pid, user="alice"))
    code, verifier = sign_in(http, launch.public_id, scope=EHR_SCOPE, launch=launch_id)
    assert exchange(http, launch.public_id, code, verifier).status_code == 200


def test_a_patient_user_cannot_be_launched_into_another_record(
    http: TestClient, launch: Launch, pid: str
) -> None:
    other = http.post("/fhir/Patient", json=patient(family="Okafor"), headers=ADMIN).json()["id"]
    launch_id = register(http, context(other))
    _, challenge = pkce()
    params = authorize_params(launch.public_id, challenge, scope=EHR_SCOPE, launch=launch_id)
    page = http.get("/auth/authorize", params=params)
    r = http.post(
        "/auth/login",
        data={**hidden(page.text), "username": "pat", "password": PASSWORD},
        follow_redirects=False,
    )
    assert redirect_params(r)["error"] == "access_denied"


# -- the launch API -------------------------------------------------------------------------


def test_launch_api_needs_a_privileged_token(
    http: TestClient, hub: Hub, launch: Launch, pid: str
) -> None:
    r = http.post("/auth/launch", json=context(pid))
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = http.post("/auth/launch", json=context(pid), headers={"Authorization": "Bearer forged"})
    assert r.status_code == 401
    # a clinical token is not enough
    store = ClientStore(hub.settings.clients_file)
    reader, reader_secret = store.add("reader", "confidential-symmetric", ("system/*.rs",))
    form = {"grant_type": "client_credentials", "scope": "system/*.rs"}
    token = http.post("/auth/token", data=form, auth=(reader.client_id, reader_secret or ""))
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    r = http.post("/auth/launch", json=context(pid), headers=bearer)
    assert r.status_code == 403 and r.json()["error"] == "insufficient_scope"
    # the EHR's client, registered with pixelhub.launch, obtains a token for it
    ehr, ehr_secret = store.add("ehr", "confidential-symmetric", ("pixelhub.launch",))
    form = {"grant_type": "client_credentials", "scope": "pixelhub.launch"}
    token = http.post("/auth/token", data=form, auth=(ehr.client_id, ehr_secret or ""))
    assert token.status_code == 200, token.text
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    launch_id = register(http, context(pid), headers=bearer)
    assert launch_id
    # ...which opens no FHIR data
    assert http.get("/fhir/ImagingStudy", headers=bearer).status_code == 403


def test_public_clients_cannot_hold_the_launch_api_scope(hub: Hub) -> None:
    store = ClientStore(hub.settings.clients_file)
    with pytest.raises(ValueError, match="confidential"):
        store.add("x", "public", ("pixelhub.launch",), redirect_uris=("http://localhost:1/cb",))


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"patient": "no-such-patient"},
        {"patient": "a b"},
        {"patient": 12},
        {"encounter": "e1", "colour": "blue"},
        {"encounter": "e1", "fhirContext": {"reference": "ImagingStudy/1"}},
        {"encounter": "e1", "fhirContext": [{"reference": "http://evil/ImagingStudy/1"}]},
        {"encounter": "e1", "fhirContext": [{"reference": "ImagingStudy/1", "canonical": "x"}]},
        {"encounter": "e1", "fhirContext": [{"reference": "ImagingStudy/1", "role": "launch"}]},
        {"encounter": "e1", "need_patient_banner": "yes"},
        {"encounter": "e1", "smart_style_url": "javascript:alert(1)"},
        {"encounter": "e1", "user": "nobody"},
        {"encounter": "e1", "client_id": "nobody"},
        [],
    ],
)
def test_launch_api_refuses_bad_contexts(http: TestClient, launch: Launch, body: Any) -> None:
    r = http.post("/auth/launch", json=body, headers=ADMIN)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request", r.text


def test_launch_api_wants_json(http: TestClient, launch: Launch) -> None:
    r = http.post("/auth/launch", data={"patient": "x"}, headers=ADMIN)
    assert r.status_code == 415
    r = http.post(
        "/auth/launch",
        content=b"{not json",
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert r.status_code == 400


def test_discovery_advertises_ehr_launch(http: TestClient) -> None:
    config = http.get("/fhir/.well-known/smart-configuration").json()
    assert {
        "launch-ehr",
        "context-ehr-patient",
        "context-ehr-encounter",
        "context-banner",
        "context-style",
    } <= set(config["capabilities"])
    assert "launch" in config["scopes_supported"]
