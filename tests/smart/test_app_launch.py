"""Standalone launch: authorization code with PKCE, sign-in, patient picker, consent, refresh
rotation, id_token (SMART App Launch 2.2 ``app-launch.html``; RFC 6749 §4.1, §6; RFC 7636)."""

from __future__ import annotations

import base64

import jwt
import pytest
from fastapi.testclient import TestClient

from hub.composition import Hub
from tests.e2e.support import TOKEN, patient, study
from tests.smart.launch_support import (
    PASSWORD,
    REDIRECT,
    Launch,
    authorize_params,
    exchange,
    hidden,
    pkce,
    redirect_params,
    setup_launch,
    sign_in,
)


@pytest.fixture
def pid(http: TestClient) -> str:
    admin = {"Authorization": f"Bearer {TOKEN}"}
    pid: str = http.post("/fhir/Patient", json=patient(), headers=admin).json()["id"]
    assert (
        http.post("/fhir/ImagingStudy", json=study(f"Patient/{pid}"), headers=admin).status_code
        == 201
    )
    return pid


@pytest.fixture
def launch(hub: Hub, pid: str) -> Launch:
    return setup_launch(hub, pid)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_discovery_names_the_code_flow(http: TestClient) -> None:
    config = http.get("/fhir/.well-known/smart-configuration").json()
    assert config["authorization_endpoint"] == "http://testserver/auth/authorize"
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert config["response_types_supported"] == ["code"]
    assert set(config["grant_types_supported"]) == {
        "authorization_code",
        "client_credentials",
        "refresh_token",
    }
    assert set(config["capabilities"]) == {
        "launch-ehr",
        "launch-standalone",
        "authorize-post",
        "client-public",
        "client-confidential-symmetric",
        "client-confidential-asymmetric",
        "sso-openid-connect",
        "context-banner",
        "context-ehr-patient",
        "context-ehr-encounter",
        "context-standalone-patient",
        "context-style",
        "permission-offline",
        "permission-online",
        "permission-patient",
        "permission-user",
        "permission-v1",
        "permission-v2",
    }
    security = http.get("/fhir/metadata").json()["rest"][0]["security"]
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert uris["authorize"] == "http://testserver/auth/authorize"
    oidc = http.get("/auth/.well-known/openid-configuration").json()
    assert oidc["issuer"] == config["issuer"]
    assert oidc["id_token_signing_alg_values_supported"] == ["RS256"]


def test_standalone_launch_with_patient_picker(
    http: TestClient, hub: Hub, launch: Launch, pid: str
) -> None:
    code, verifier = sign_in(http, launch.public_id, patient=pid)
    r = exchange(http, launch.public_id, code, verifier)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["patient"] == pid
    assert body["token_type"] == "Bearer"
    assert set(body["scope"].split()) == {
        "openid",
        "fhirUser",
        "launch/patient",
        "offline_access",
        "user/*.rs",
    }
    assert body["refresh_token"]
    # the id_token verifies with the published RS256 key
    jwks = http.get("/auth/jwks").json()
    header = jwt.get_unverified_header(body["id_token"])
    (jwk,) = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    assert jwk["alg"] == "RS256"
    claims = jwt.decode(
        body["id_token"],
        jwt.PyJWK(jwk).key,
        algorithms=["RS256"],
        audience=launch.public_id,
        issuer="http://testserver/auth",
    )
    assert claims["fhirUser"] == "http://testserver/fhir/Practitioner/p1"
    assert claims["sub"] == "alice"
    # the access token works on /fhir with the user's scopes
    search = http.get("/fhir/ImagingStudy", headers=bearer(body["access_token"]))
    assert search.status_code == 200
    assert search.json()["total"] == 1
    assert (
        http.post("/fhir/Patient", json=patient(), headers=bearer(body["access_token"])).status_code
        == 403
    )
    # an id_token is no access token
    assert http.get("/fhir/ImagingStudy", headers=bearer(body["id_token"])).status_code == 401
    # introspection shows the launch context
    auth = (launch.confidential_id, launch.confidential_secret)
    info = http.post("/auth/introspect", data={"token": body["access_token"]}, auth=auth).json()
    assert info["active"] and info["patient"] == pid and info["sub"] == "alice"


def test_patient_scopes_are_not_granted_yet(http: TestClient, launch: Launch, pid: str) -> None:
    """No patient-compartment filter exists, so patient/ scopes are left out of every grant."""
    scope = "openid fhirUser launch/patient patient/*.rs user/ImagingStudy.rs"
    code, verifier = sign_in(http, launch.public_id, patient=pid, scope=scope)
    body = exchange(http, launch.public_id, code, verifier).json()
    assert body["scope"] == "openid fhirUser launch/patient user/ImagingStudy.rs"
    _, challenge = pkce()
    only_patient = authorize_params(
        launch.public_id, challenge, scope="launch/patient patient/*.rs"
    )
    r = http.get("/auth/authorize", params=only_patient, follow_redirects=False)
    assert redirect_params(r)["error"] == "invalid_scope"


def test_a_patient_user_needs_no_picker(http: TestClient, launch: Launch, pid: str) -> None:
    code, verifier = sign_in(http, launch.public_id, user="pat")
    assert exchange(http, launch.public_id, code, verifier).json()["patient"] == pid


def test_authorize_by_post(http: TestClient, launch: Launch) -> None:
    _, challenge = pkce()
    r = http.post("/auth/authorize", data=authorize_params(launch.public_id, challenge))
    assert r.status_code == 200
    assert 'name="password"' in r.text
    assert r.headers["x-frame-options"] == "DENY"


def test_confidential_client_must_authenticate(http: TestClient, launch: Launch, pid: str) -> None:
    code, verifier = sign_in(http, launch.confidential_id, patient=pid)
    r = exchange(http, launch.confidential_id, code, verifier)
    assert (r.status_code, r.json()["error"]) == (401, "invalid_client")
    code, verifier = sign_in(http, launch.confidential_id, patient=pid)
    r = exchange(
        http, launch.confidential_id, code, verifier, client_secret=launch.confidential_secret
    )
    assert r.status_code == 200, r.text


def test_public_client_cannot_use_client_credentials(http: TestClient, launch: Launch) -> None:
    r = http.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "scope": "user/*.rs",
            "client_id": launch.public_id,
        },
    )
    assert (r.status_code, r.json()["error"]) == (400, "unauthorized_client")


# -- attacks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": ""}, "invalid_request"),
        ({"code_challenge": "", "code_challenge_method": ""}, "invalid_request"),
        ({"aud": "http://elsewhere/fhir"}, "invalid_request"),
        ({"aud": ""}, "invalid_request"),
        ({"state": ""}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "openid system/*.rs"}, "invalid_scope"),
        ({"launch": "abc", "scope": "launch user/*.rs"}, "invalid_request"),
        ({"launch": "abc"}, "invalid_scope"),
    ],
    ids=[
        "pkce-plain",
        "pkce-no-method",
        "pkce-missing",
        "wrong-aud",
        "no-aud",
        "no-state",
        "implicit",
        "system-scope",
        "unknown-launch",
        "launch-without-launch-scope",
    ],
)
def test_bad_authorization_requests_go_back_with_an_error(
    http: TestClient, launch: Launch, change: dict[str, str], error: str
) -> None:
    _, challenge = pkce()
    params = {**authorize_params(launch.public_id, challenge), **change}
    params = {k: v for k, v in params.items() if v != ""}
    r = http.get("/auth/authorize", params=params, follow_redirects=False)
    assert redirect_params(r)["error"] == error


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://evil.example/cb",
        REDIRECT + "/../evil",
        REDIRECT + "?next=http://evil.example",
        REDIRECT.replace("localhost", "LOCALHOST"),
        "",
    ],
)
def test_open_redirect_attempts_get_a_page_not_a_redirect(
    http: TestClient, launch: Launch, redirect_uri: str
) -> None:
    _, challenge = pkce()
    params = {**authorize_params(launch.public_id, challenge), "redirect_uri": redirect_uri}
    r = http.get("/auth/authorize", params=params, follow_redirects=False)
    assert r.status_code == 400
    assert "location" not in r.headers
    assert "redirect_uri" in r.text


def test_unknown_client_gets_a_page(http: TestClient, launch: Launch) -> None:
    _, challenge = pkce()
    r = http.get(
        "/auth/authorize", params=authorize_params("nobody", challenge), follow_redirects=False
    )
    assert r.status_code == 400 and "location" not in r.headers


def test_code_reuse_is_refused_and_revokes(http: TestClient, launch: Launch, pid: str) -> None:
    code, verifier = sign_in(http, launch.public_id, patient=pid)
    first = exchange(http, launch.public_id, code, verifier)
    assert first.status_code == 200
    token = first.json()["access_token"]
    assert http.get("/fhir/ImagingStudy", headers=bearer(token)).status_code == 200
    again = exchange(http, launch.public_id, code, verifier)
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")
    assert http.get("/fhir/ImagingStudy", headers=bearer(token)).status_code == 401


def test_wrong_pkce_verifier(http: TestClient, launch: Launch, pid: str) -> None:
    code, verifier = sign_in(http, launch.public_id, patient=pid)
    other, _ = pkce()
    r = exchange(http, launch.public_id, code, other)
    assert r.json()["error"] == "invalid_grant"
    r = exchange(http, launch.public_id, code, verifier)  # the code is spent either way
    assert r.json()["error"] == "invalid_grant"
    code, _ = sign_in(http, launch.public_id, patient=pid)
    assert exchange(http, launch.public_id, code, None).json()["error"] == "invalid_grant"


def test_redirect_uri_mismatch_at_the_token_endpoint(
    http: TestClient, launch: Launch, pid: str
) -> None:
    code, verifier = sign_in(http, launch.public_id, patient=pid)
    r = exchange(http, launch.public_id, code, verifier, redirect_uri=REDIRECT + "x")
    assert r.json()["error"] == "invalid_grant"


def test_code_is_bound_to_its_client(http: TestClient, launch: Launch, pid: str) -> None:
    code, verifier = sign_in(http, launch.public_id, patient=pid)
    r = exchange(
        http, launch.confidential_id, code, verifier, client_secret=launch.confidential_secret
    )
    assert r.json()["error"] == "invalid_grant"


def test_refresh_rotation_and_reuse(http: TestClient, launch: Launch, pid: str) -> None:
    code, verifier = sign_in(http, launch.public_id, patient=pid)
    first = exchange(http, launch.public_id, code, verifier).json()
    form = {"grant_type": "refresh_token", "client_id": launch.public_id}
    r = http.post("/auth/token", data={**form, "refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["patient"] == pid
    assert "id_token" not in second
    assert http.get("/fhir/ImagingStudy", headers=bearer(second["access_token"])).status_code == 200
    # the rotated-out token presented again: refused, and the whole family is revoked
    r = http.post("/auth/token", data={**form, "refresh_token": first["refresh_token"]})
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")
    r = http.post("/auth/token", data={**form, "refresh_token": second["refresh_token"]})
    assert r.json()["error"] == "invalid_grant"
    assert http.get("/fhir/ImagingStudy", headers=bearer(second["access_token"])).status_code == 401


def test_scope_escalation_at_refresh(http: TestClient, launch: Launch, pid: str) -> None:
    code, verifier = sign_in(http, launch.public_id, patient=pid)
    first = exchange(http, launch.public_id, code, verifier).json()
    form = {"grant_type": "refresh_token", "client_id": launch.public_id}
    r = http.post(
        "/auth/token",
        data={
            **form,
            "refresh_token": first["refresh_token"],
            "scope": "user/*.cruds offline_access",
        },
    )
    assert (r.status_code, r.json()["error"]) == (400, "invalid_scope")
    # narrowing is fine
    narrowed = http.post(
        "/auth/token",
        data={**form, "refresh_token": first["refresh_token"], "scope": "user/*.rs"},
    )
    assert narrowed.status_code == 200 and narrowed.json()["scope"] == "user/*.rs"
    assert "refresh_token" not in narrowed.json()


def test_refresh_token_is_bound_to_its_client(http: TestClient, launch: Launch, pid: str) -> None:
    code, verifier = sign_in(http, launch.public_id, patient=pid)
    first = exchange(http, launch.public_id, code, verifier).json()
    r = http.post(
        "/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        auth=(launch.confidential_id, launch.confidential_secret),
    )
    assert r.json()["error"] == "invalid_grant"


def _to_consent(http: TestClient, launch: Launch, pid: str) -> dict[str, str]:
    _, challenge = pkce()
    page = http.get("/auth/authorize", params=authorize_params(launch.public_id, challenge))
    r = http.post(
        "/auth/login", data={**hidden(page.text), "username": "alice", "password": PASSWORD}
    )
    r = http.post("/auth/patient", data={**hidden(r.text), "patient": pid})
    assert "Allow access?" in r.text
    return hidden(r.text)


def test_csrf_on_the_consent_form(http: TestClient, hub: Hub, launch: Launch, pid: str) -> None:
    fields = _to_consent(http, launch, pid)
    # another site posting the form: no cookie of ours comes along (SameSite), or a wrong token
    with TestClient(hub.app) as other_browser:
        r = other_browser.post(
            "/auth/consent", data={**fields, "decision": "approve"}, follow_redirects=False
        )
        assert r.status_code == 400 and "location" not in r.headers
        # ...nor when that browser has a sign-in cookie of its own
        _, challenge = pkce()
        other_browser.get("/auth/authorize", params=authorize_params(launch.public_id, challenge))
        assert other_browser.cookies.get("pixelhub_authz")
        r = other_browser.post(
            "/auth/consent", data={**fields, "decision": "approve"}, follow_redirects=False
        )
        assert r.status_code == 400 and "location" not in r.headers
    r = http.post(
        "/auth/consent",
        data={**fields, "csrf": "forged", "decision": "approve"},
        follow_redirects=False,
    )
    assert r.status_code == 400 and "location" not in r.headers
    # the genuine form still works
    r = http.post("/auth/consent", data={**fields, "decision": "approve"}, follow_redirects=False)
    assert "code" in redirect_params(r)


def test_deny(http: TestClient, launch: Launch, pid: str) -> None:
    fields = _to_consent(http, launch, pid)
    r = http.post("/auth/consent", data={**fields, "decision": "deny"}, follow_redirects=False)
    assert redirect_params(r) == {
        "error": "access_denied",
        "error_description": "the user denied access",
        "state": "st-123",
    }


def test_wrong_password_and_lockout(http: TestClient, launch: Launch) -> None:
    _, challenge = pkce()
    page = http.get("/auth/authorize", params=authorize_params(launch.public_id, challenge))
    fields = hidden(page.text)
    for _ in range(4):
        r = http.post("/auth/login", data={**fields, "username": "alice", "password": "nope"})
        assert r.status_code == 401 and "Wrong user name or password" in r.text
    r = http.post(
        "/auth/login",
        data={**fields, "username": "alice", "password": "nope"},
        follow_redirects=False,
    )
    assert redirect_params(r)["error"] == "access_denied"
    r = http.post("/auth/login", data={**fields, "username": "alice", "password": PASSWORD})
    assert r.status_code == 400  # the request is gone


def test_unknown_patient_is_not_accepted(http: TestClient, launch: Launch) -> None:
    _, challenge = pkce()
    page = http.get("/auth/authorize", params=authorize_params(launch.public_id, challenge))
    r = http.post(
        "/auth/login", data={**hidden(page.text), "username": "alice", "password": PASSWORD}
    )
    r = http.post("/auth/patient", data={**hidden(r.text), "patient": "no-such-patient"})
    assert r.status_code == 400 and "Choose a patient" in r.text
    r = http.post(
        "/auth/consent", data={**hidden(r.text), "decision": "approve"}, follow_redirects=False
    )
    assert r.status_code == 400 and "location" not in r.headers


def test_pages_escape_what_they_show(http: TestClient, hub: Hub, launch: Launch) -> None:
    from hub.smart import ClientStore

    client, _ = ClientStore(hub.settings.clients_file).add(
        "<script>alert(1)</script>", "public", ("user/*.rs",), redirect_uris=(REDIRECT,)
    )
    _, challenge = pkce()
    params = authorize_params(client.client_id, challenge, scope="user/*.rs")
    page = http.get("/auth/authorize", params=params)
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text


def test_basic_auth_for_confidential_code_exchange(
    http: TestClient, launch: Launch, pid: str
) -> None:
    code, verifier = sign_in(http, launch.confidential_id, patient=pid)
    raw = base64.b64encode(
        f"{launch.confidential_id}:{launch.confidential_secret}".encode()
    ).decode()
    r = http.post(
        "/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        headers={"Authorization": f"Basic {raw}"},
    )
    assert r.status_code == 200, r.text
