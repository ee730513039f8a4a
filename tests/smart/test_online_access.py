"""``online_access`` (SMART App Launch 2.2 ``scopes-and-launch-context.html``): a refresh token
that works while the user's PixelHub sign-in session lasts, unlike ``offline_access``."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from hub.composition import Hub
from tests.e2e.support import TOKEN, patient
from tests.smart.launch_support import Launch, exchange, setup_launch, sign_in
from tests.smart.support import auth_server

ONLINE = "openid fhirUser online_access user/*.rs"
OFFLINE = "openid fhirUser offline_access user/*.rs"


@pytest.fixture
def launch(hub: Hub, http: TestClient) -> Launch:
    http.post("/fhir/Patient", json=patient(), headers={"Authorization": f"Bearer {TOKEN}"})
    return setup_launch(hub)


def tokens(http: TestClient, launch: Launch, scope: str) -> dict[str, Any]:
    code, verifier = sign_in(http, launch.public_id, scope=scope)
    r = exchange(http, launch.public_id, code, verifier)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def refresh(http: TestClient, launch: Launch, token: str) -> Any:
    form = {"grant_type": "refresh_token", "client_id": launch.public_id, "refresh_token": token}
    return http.post("/auth/token", data=form)


def fhir_status(http: TestClient, token: str) -> int:
    return http.get("/fhir/ImagingStudy", headers={"Authorization": f"Bearer {token}"}).status_code


def test_online_refresh_token_ends_with_sign_out(http: TestClient, launch: Launch) -> None:
    online = tokens(http, launch, ONLINE)
    assert "online_access" in online["scope"].split()
    assert http.cookies.get("pixelhub_session")
    offline = tokens(http, launch, OFFLINE)  # the same browser session, signed in again
    r = refresh(http, launch, online["refresh_token"])
    assert r.status_code == 200, r.text
    rotated = r.json()
    assert rotated["refresh_token"] != online["refresh_token"]
    assert fhir_status(http, rotated["access_token"]) == 200

    page = http.get("/auth/logout")
    assert "Sign out" in page.text
    assert http.post("/auth/logout").status_code == 200
    assert not http.cookies.get("pixelhub_session")
    assert "not signed in" in http.get("/auth/logout").text
    # the online token and what it brought stop working; the offline one survives
    r = refresh(http, launch, rotated["refresh_token"])
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")
    assert fhir_status(http, rotated["access_token"]) == 401
    r = refresh(http, launch, offline["refresh_token"])
    assert r.status_code == 200, r.text
    assert fhir_status(http, r.json()["access_token"]) == 200


def test_online_refresh_token_ends_with_session_expiry(
    http: TestClient, hub: Hub, launch: Launch, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow = auth_server(hub).code_flow
    assert flow is not None
    online = tokens(http, launch, ONLINE)
    offline = tokens(http, launch, OFFLINE)
    now = flow.sessions._clock()
    later = now + flow.sessions.lifetime + 1
    monkeypatch.setattr(flow.sessions, "_clock", lambda: later)
    r = refresh(http, launch, online["refresh_token"])
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")
    assert refresh(http, launch, offline["refresh_token"]).status_code == 200


def test_session_lifetime_is_configurable(tmp_path: Any) -> None:
    from tests.e2e.support import make_hub

    h = make_hub(tmp_path / "d", smart_session_lifetime=120)
    try:
        flow = auth_server(h).code_flow
        assert flow is not None and flow.sessions.lifetime == 120
    finally:
        h.close()


def test_another_browser_cannot_sign_the_user_out(
    http: TestClient, hub: Hub, launch: Launch
) -> None:
    online = tokens(http, launch, ONLINE)
    with TestClient(hub.app) as other:
        assert other.post("/auth/logout").status_code == 200  # nothing to end there
        other.cookies.set("pixelhub_session", "guessed", path="/auth")
        other.post("/auth/logout")
    assert refresh(http, launch, online["refresh_token"]).status_code == 200


def test_without_online_or_offline_access_no_refresh_token(
    http: TestClient, launch: Launch
) -> None:
    body = tokens(http, launch, "openid fhirUser user/*.rs")
    assert "refresh_token" not in body


def test_sign_in_as_another_user_ends_the_previous_session(
    http: TestClient, hub: Hub, launch: Launch
) -> None:
    from hub.smart.users import UserStore

    UserStore(hub.settings.users_file).add(
        "bob", "correct horse battery", ("clinician",), "Practitioner/p2"
    )
    online = tokens(http, launch, ONLINE)
    code, verifier = sign_in(http, launch.public_id, user="bob", scope=ONLINE)
    assert exchange(http, launch.public_id, code, verifier).status_code == 200
    r = refresh(http, launch, online["refresh_token"])
    assert r.json()["error"] == "invalid_grant"
