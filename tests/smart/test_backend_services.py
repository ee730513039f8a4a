"""SMART Backend Services end to end: discovery, the token endpoint, access tokens on /fhir,
introspection and revocation (SMART App Launch 2.2 ``backend-services.html``, RFC 6749, 7523,
7662, 7009)."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from hub.composition import Hub
from tests.e2e.support import TOKEN, assert_valid_r4, make_hub, patient, study
from tests.smart.support import (
    ClientKeys,
    access_claims,
    assertion,
    auth_server,
    b64,
    forge,
    hs256_with,
    public_pem,
    register_clients,
    token_form,
)

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def get_token(http: TestClient, keys: ClientKeys, **kwargs: Any) -> str:
    scope = kwargs.pop("scope", "system/ImagingStudy.rs")
    r = http.post("/auth/token", data=token_form(assertion(keys, **kwargs), scope))
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def seed(http: TestClient) -> str:
    admin = bearer(TOKEN)
    pid = http.post("/fhir/Patient", json=patient(), headers=admin).json()["id"]
    r = http.post("/fhir/ImagingStudy", json=study(f"Patient/{pid}"), headers=admin)
    assert r.status_code == 201
    return pid


# -- discovery ---------------------------------------------------------------------------------


def test_smart_configuration_is_open_and_names_only_what_is_implemented(http: TestClient) -> None:
    r = http.get("/fhir/.well-known/smart-configuration")
    assert r.status_code == 200
    config = r.json()
    assert config["issuer"] == "http://testserver/auth"
    assert config["token_endpoint"] == "http://testserver/auth/token"
    assert config["jwks_uri"] == "http://testserver/auth/jwks"
    assert config["introspection_endpoint"] == "http://testserver/auth/introspect"
    assert config["revocation_endpoint"] == "http://testserver/auth/revoke"
    assert "client_credentials" in config["grant_types_supported"]
    assert {"client-confidential-asymmetric", "client-confidential-symmetric"} <= set(
        config["capabilities"]
    )
    assert set(config["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}


def test_capability_statement_security(http: TestClient, collect_for_validation: Any) -> None:
    statement = http.get("/fhir/metadata").json()
    security = statement["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    (oauth,) = [e for e in security["extension"] if e["url"] == OAUTH_URIS]
    uris = {e["url"]: e["valueUri"] for e in oauth["extension"]}
    assert uris == {
        "authorize": "http://testserver/auth/authorize",
        "token": "http://testserver/auth/token",
    }
    assert_valid_r4(statement)
    collect_for_validation("smart/capability-statement", statement)


def test_jwks_publishes_public_keys_by_kid(http: TestClient, hub: Hub) -> None:
    keys = http.get("/auth/jwks").json()["keys"]
    assert sorted(k["alg"] for k in keys) == ["ES384", "RS256", "RS384"]
    assert all(k["kid"] and "d" not in k and "p" not in k for k in keys)
    keys_dir = hub.settings.keys_dir
    for path in keys_dir.iterdir():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(keys_dir).st_mode) == 0o700
    # The same keys come back after a restart (they are files, not per process).
    reloaded = type(auth_server(hub).keys)(keys_dir)
    assert reloaded.jwks()["keys"] == keys


# -- the token endpoint ------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_private_key_jwt_then_search(
    http: TestClient, clients: ClientKeys, alg: str, collect_for_validation: Any
) -> None:
    seed(http)
    r = http.post(
        "/auth/token",
        data=token_form(assertion(clients, alg=alg), "system/ImagingStudy.rs system/Patient.rs"),
    )
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert body["scope"] == "system/ImagingStudy.rs system/Patient.rs"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["client_id"] == clients.rs_id
    assert claims["aud"] == "http://testserver/fhir"
    search = http.get("/fhir/ImagingStudy", headers=bearer(body["access_token"]))
    assert search.status_code == 200
    assert search.json()["total"] == 1
    assert_valid_r4(search.json())
    collect_for_validation(f"smart/backend-search-{alg}", search.json())


def test_scopes_decide_what_the_token_may_do(http: TestClient, clients: ClientKeys) -> None:
    pid = seed(http)
    token = bearer(get_token(http, clients, scope="system/ImagingStudy.rs"))
    assert http.get("/fhir/ImagingStudy", headers=token).status_code == 200
    assert http.get(f"/fhir/Patient/{pid}", headers=token).status_code == 403
    assert http.post("/fhir/Patient", json=patient(), headers=token).status_code == 403
    # scopes beyond the client's registration are not granted
    r = http.post(
        "/auth/token",
        data=token_form(assertion(clients), "system/ImagingStudy.rs system/Patient.cruds"),
    )
    assert r.json()["scope"] == "system/ImagingStudy.rs"
    r = http.post("/auth/token", data=token_form(assertion(clients), "system/Patient.c"))
    assert (r.status_code, r.json()["error"]) == (400, "invalid_scope")
    # backend services never get patient/ or user/ scopes
    r = http.post("/auth/token", data=token_form(assertion(clients), "patient/ImagingStudy.rs"))
    assert (r.status_code, r.json()["error"]) == (400, "invalid_scope")


def test_v1_scope_is_granted_and_enforced(http: TestClient, clients: ClientKeys) -> None:
    seed(http)
    token = bearer(get_token(http, clients, scope="system/DocumentReference.read"))
    assert http.get("/fhir/DocumentReference", headers=token).status_code == 200
    assert http.get("/fhir/ImagingStudy", headers=token).status_code == 403


def test_client_secret_basic_and_post(http: TestClient, clients: ClientKeys) -> None:
    seed(http)
    basic = base64.b64encode(f"{clients.secret_id}:{clients.secret}".encode()).decode()
    form = {"grant_type": "client_credentials", "scope": "system/ImagingStudy.rs"}
    r = http.post("/auth/token", data=form, headers={"Authorization": f"Basic {basic}"})
    assert r.status_code == 200, r.text
    assert (
        http.get("/fhir/ImagingStudy", headers=bearer(r.json()["access_token"])).json()["total"]
        == 1
    )
    r = http.post(
        "/auth/token",
        data={**form, "client_id": clients.secret_id, "client_secret": clients.secret},
    )
    assert r.status_code == 200, r.text


def test_wrong_secret_is_invalid_client(http: TestClient, clients: ClientKeys) -> None:
    form = {"grant_type": "client_credentials", "scope": "system/ImagingStudy.rs"}
    r = http.post(
        "/auth/token",
        data={**form, "client_id": clients.secret_id, "client_secret": clients.secret + "x"},
    )
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert r.headers["www-authenticate"].startswith("Basic")
    # the asymmetric client has no secret to guess
    r = http.post("/auth/token", data={**form, "client_id": clients.rs_id, "client_secret": ""})
    assert r.json()["error"] == "invalid_client"


def test_token_endpoint_request_errors(http: TestClient, clients: ClientKeys) -> None:
    r = http.post("/auth/token", data={"scope": "system/ImagingStudy.rs"})
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request")
    r = http.post("/auth/token", data={**token_form(assertion(clients)), "grant_type": "password"})
    assert (r.status_code, r.json()["error"]) == (400, "unsupported_grant_type")
    r = http.post("/auth/token", json=token_form(assertion(clients)))
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request")
    raw = "grant_type=client_credentials&grant_type=client_credentials"
    r = http.post(
        "/auth/token",
        content=raw,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request")
    r = http.post("/auth/token", data={"grant_type": "client_credentials", "scope": "x"})
    assert (r.status_code, r.json()["error"]) == (401, "invalid_client")


# -- attacks on client assertions ---------------------------------------------------------------


def test_assertion_jti_replay_is_refused(http: TestClient, clients: ClientKeys) -> None:
    signed = assertion(clients)
    assert http.post("/auth/token", data=token_form(signed)).status_code == 200
    r = http.post("/auth/token", data=token_form(signed))
    assert (r.status_code, r.json()["error"]) == (401, "invalid_client")


def test_assertion_exp_more_than_five_minutes_ahead(http: TestClient, clients: ClientKeys) -> None:
    now = int(time.time())
    ok = http.post("/auth/token", data=token_form(assertion(clients, exp=now + 290)))
    assert ok.status_code == 200
    r = http.post("/auth/token", data=token_form(assertion(clients, exp=now + 600)))
    assert (r.status_code, r.json()["error"]) == (401, "invalid_client")


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "http://testserver/fhir"},
        {"exp": 1},
        {"jti": None},
        {"exp": None},
        {"sub": "someone-else"},
        {"iss": "unknown-client", "sub": "unknown-client"},
    ],
    ids=["wrong-aud", "expired", "no-jti", "no-exp", "sub-differs", "unknown-client"],
)
def test_bad_assertion_claims(http: TestClient, clients: ClientKeys, claims: Any) -> None:
    r = http.post("/auth/token", data=token_form(assertion(clients, **claims)))
    assert (r.status_code, r.json()["error"]) == (401, "invalid_client")


def test_assertion_signed_by_an_unregistered_key(http: TestClient, clients: ClientKeys) -> None:
    clients.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    r = http.post("/auth/token", data=token_form(assertion(clients)))
    assert (r.status_code, r.json()["error"]) == (401, "invalid_client")


def test_assertion_alg_must_match_the_registered_key(http: TestClient, clients: ClientKeys) -> None:
    now = int(time.time())
    claims = {"iss": clients.rs_id, "sub": clients.rs_id, "aud": "http://testserver/auth/token"}
    claims |= {"exp": now + 60, "jti": "x1"}
    # the RSA key's kid with an ES384 signature, and an HMAC "signed" with the public key
    mixed = jwt.encode(claims, clients.ec, algorithm="ES384", headers={"kid": "rs-1"})
    r = http.post("/auth/token", data=token_form(mixed))
    assert r.json()["error"] == "invalid_client"
    none = forge({"alg": "none", "kid": "rs-1"}, claims, lambda _: b"")
    r = http.post("/auth/token", data=token_form(none))
    assert r.json()["error"] == "invalid_client"


# -- attacks on access tokens -------------------------------------------------------------------


def test_no_token_is_401_with_challenge(http: TestClient) -> None:
    r = http.get("/fhir/ImagingStudy")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["resourceType"] == "OperationOutcome"


def _sign(hub: Hub, claims: dict[str, Any]) -> str:
    key = auth_server(hub).keys.signing_key("RS384")
    return jwt.encode(
        claims, key.private_key, algorithm="RS384", headers={"kid": key.kid, "typ": "at+jwt"}
    )


def _status(http: TestClient, token: str) -> int:
    return http.get("/fhir/ImagingStudy", headers=bearer(token)).status_code


def test_a_well_formed_forgery_baseline_is_accepted(http: TestClient, hub: Hub) -> None:
    """The construction the attacks below alter is itself accepted: each attack isolates one
    defence."""
    assert _status(http, _sign(hub, access_claims())) == 200


def test_typ_must_be_at_jwt(http: TestClient, hub: Hub) -> None:
    """RFC 9068 §4: another kind of JWT signed by the same key is no access token."""
    key = auth_server(hub).keys.signing_key("RS384")
    token = jwt.encode(
        access_claims(), key.private_key, algorithm="RS384", headers={"kid": key.kid}
    )
    assert _status(http, token) == 401


@pytest.mark.parametrize(
    "change",
    [
        {"exp": int(time.time()) - 5},
        {"aud": "http://elsewhere/fhir"},
        {"iss": "http://evil/auth"},
        {"jti": None},
        {"scope": None},
    ],
    ids=["expired", "wrong-aud", "wrong-iss", "no-jti", "no-scope"],
)
def test_bad_access_token_claims(http: TestClient, hub: Hub, change: dict[str, Any]) -> None:
    claims = {k: v for k, v in access_claims(**change).items() if v is not None}
    r = http.get("/fhir/ImagingStudy", headers=bearer(_sign(hub, claims)))
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_alg_none_is_refused(http: TestClient, hub: Hub) -> None:
    kid = auth_server(hub).keys.signing_key("RS384").kid
    header = {"alg": "none", "kid": kid, "typ": "at+jwt"}
    assert _status(http, forge(header, access_claims(), lambda _: b"")) == 401
    unsigned = forge(header, access_claims(), lambda _: b"")
    assert _status(http, unsigned.rsplit(".", 1)[0] + ".") == 401


def test_hs256_signed_with_the_public_key_is_refused(http: TestClient, hub: Hub) -> None:
    kid = auth_server(hub).keys.signing_key("RS384").kid
    header = {"alg": "HS256", "kid": kid, "typ": "at+jwt"}
    token = forge(header, access_claims(), hs256_with(public_pem(hub)))
    assert _status(http, token) == 401


def test_es384_key_with_rs384_alg_is_refused(http: TestClient, hub: Hub) -> None:
    keys = auth_server(hub).keys
    es = keys.signing_key("ES384")
    good = jwt.encode(
        access_claims(), es.private_key, algorithm="ES384", headers={"kid": es.kid, "typ": "at+jwt"}
    )
    assert _status(http, good) == 200
    rs = keys.signing_key("RS384")
    wrong = jwt.encode(
        access_claims(), rs.private_key, algorithm="RS384", headers={"kid": es.kid, "typ": "at+jwt"}
    )
    assert _status(http, wrong) == 401


def test_tampered_payload_is_refused(http: TestClient, hub: Hub, clients: ClientKeys) -> None:
    token = get_token(http, clients)
    assert _status(http, token) == 200
    header, _, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["scope"] = "system/*.cruds"
    tampered = f"{header}.{b64(json.dumps(claims).encode())}.{signature}"
    assert _status(http, tampered) == 401


def test_the_id_token_key_does_not_sign_access_tokens(http: TestClient, hub: Hub) -> None:
    key = auth_server(hub).keys.id_token_key()
    token = jwt.encode(
        access_claims(),
        key.private_key,
        algorithm="RS256",
        headers={"kid": key.kid, "typ": "at+jwt"},
    )
    assert _status(http, token) == 401


def test_unknown_kid_is_refused(http: TestClient, hub: Hub) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(
        access_claims(), other, algorithm="RS384", headers={"kid": "unknown", "typ": "at+jwt"}
    )
    assert _status(http, token) == 401
    our_kid = auth_server(hub).keys.signing_key("RS384").kid
    token = jwt.encode(
        access_claims(), other, algorithm="RS384", headers={"kid": our_kid, "typ": "at+jwt"}
    )
    assert _status(http, token) == 401


def test_patient_scopes_grant_nothing_without_a_patient(http: TestClient, hub: Hub) -> None:
    """patient/ scopes confine to the token's patient (tests/smart/test_patient_compartment.py);
    a token without a ``patient`` claim gets nothing from them."""
    seed(http)
    token = _sign(hub, access_claims(scope="patient/ImagingStudy.rs patient/*.read"))
    assert _status(http, token) == 403


def test_query_restricted_scopes_confine_results(http: TestClient, hub: Hub) -> None:
    """More in tests/smart/test_query_scopes.py."""
    seed(http)  # a CT study
    for modality, total in (("CT", 1), ("MR", 0)):
        token = _sign(hub, access_claims(scope=f"system/ImagingStudy.rs?modality={modality}"))
        r = http.get("/fhir/ImagingStudy", headers=bearer(token))
        assert r.status_code == 200 and r.json()["total"] == total


def test_static_tokens_keep_working(http: TestClient) -> None:
    assert _status(http, TOKEN) == 200


# -- introspection and revocation --------------------------------------------------------------


def _basic(clients: ClientKeys) -> dict[str, str]:
    raw = base64.b64encode(f"{clients.secret_id}:{clients.secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def test_introspection(http: TestClient, hub: Hub, clients: ClientKeys) -> None:
    token = get_token(http, clients)
    r = http.post("/auth/introspect", data={"token": token}, headers=_basic(clients))
    assert r.status_code == 200
    body = r.json()
    assert body["active"] is True
    assert body["client_id"] == clients.rs_id
    assert body["scope"] == "system/ImagingStudy.rs"
    expired = _sign(hub, access_claims(exp=int(time.time()) - 1))
    r = http.post("/auth/introspect", data={"token": expired}, headers=_basic(clients))
    assert r.json() == {"active": False}
    r = http.post("/auth/introspect", data={"token": "garbage"}, headers=_basic(clients))
    assert r.json() == {"active": False}
    # the caller must authenticate (RFC 7662 §2.1)
    r = http.post("/auth/introspect", data={"token": token})
    assert (r.status_code, r.json()["error"]) == (401, "invalid_client")


def test_revocation(http: TestClient, clients: ClientKeys) -> None:
    basic = base64.b64encode(f"{clients.secret_id}:{clients.secret}".encode()).decode()
    form = {"grant_type": "client_credentials", "scope": "system/ImagingStudy.rs"}
    auth = {"Authorization": f"Basic {basic}"}
    token = http.post("/auth/token", data=form, headers=auth).json()["access_token"]
    other = get_token(http, clients)  # belongs to the asymmetric client
    assert _status(http, token) == 200
    # another client's token is left alone
    r = http.post("/auth/revoke", data={"token": other}, headers=auth)
    assert r.status_code == 200
    assert _status(http, other) == 200
    r = http.post("/auth/revoke", data={"token": token}, headers=auth)
    assert r.status_code == 200
    assert _status(http, token) == 401
    r = http.post("/auth/introspect", data={"token": token}, headers=auth)
    assert r.json() == {"active": False}
    # unauthenticated revocation is refused
    r = http.post("/auth/revoke", data={"token": other})
    assert r.status_code == 401
    assert _status(http, other) == 200


def test_access_token_lifetime_is_configurable(tmp_path: Any) -> None:
    h = make_hub(tmp_path / "d", access_token_lifetime=60)
    try:
        keys = register_clients(h)
        with TestClient(h.app) as c:
            r = c.post("/auth/token", data=token_form(assertion(keys)))
            assert r.json()["expires_in"] == 60
            claims = jwt.decode(r.json()["access_token"], options={"verify_signature": False})
            assert claims["exp"] - claims["iat"] == 60
    finally:
        h.close()


def test_issuer_is_configurable(tmp_path: Any) -> None:
    h = make_hub(tmp_path / "d", smart_issuer="https://login.example.org/auth/")
    try:
        keys = register_clients(h)
        with TestClient(h.app) as c:
            config = c.get("/fhir/.well-known/smart-configuration").json()
            assert config["issuer"] == "https://login.example.org/auth"
            assert config["token_endpoint"] == "https://login.example.org/auth/token"
            signed = assertion(keys, aud="https://login.example.org/auth/token")
            token = c.post("/auth/token", data=token_form(signed)).json()["access_token"]
            claims = jwt.decode(token, options={"verify_signature": False})
            assert claims["iss"] == "https://login.example.org/auth"
            assert c.get("/fhir/ImagingStudy", headers=bearer(token)).status_code == 200
    finally:
        h.close()
