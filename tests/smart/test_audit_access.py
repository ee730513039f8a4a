"""Issue 7: authorization events (sign-in, token issued or refused, launch) are audited, and the
audit log is readable only with an explicit AuditEvent scope."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from hub.composition import Hub
from hub.smart import ClientStore
from hub.smart.users import UserStore
from tests.e2e.support import TOKEN, assert_valid_r4, patient
from tests.smart.launch_support import (
    PASSWORD,
    REDIRECT,
    authorize_params,
    exchange,
    hidden,
    pkce,
    setup_launch,
    sign_in,
)
from tests.smart.support import ClientKeys, assertion, token_form


def auth_events(hub: Hub) -> list[dict[str, Any]]:
    hub.audit_indexer.catch_up()
    with TestClient(hub.app, headers={"Authorization": f"Bearer {TOKEN}"}) as ops:
        bundle = ops.get("/fhir/AuditEvent?type=110114&_sort=date&_count=100").json()
    found = [e["resource"] for e in bundle.get("entry", [])]
    for event in found:
        assert_valid_r4(event)
    return found


def test_tokens_issued_and_refused_are_each_one_event(
    http: TestClient, hub: Hub, clients: ClientKeys
) -> None:
    signed = assertion(clients)
    assert http.post("/auth/token", data=token_form(signed)).status_code == 200
    assert http.post("/auth/token", data=token_form(signed)).status_code == 401  # replayed jti
    issued, refused = auth_events(hub)
    for event in (issued, refused):
        assert event["subtype"][0]["code"] == "ITI-71"
        assert event["agent"][0]["who"]["identifier"]["value"] == clients.rs_id
        assert event["agent"][0]["network"]["address"] == "testclient"
    assert issued["outcome"] == "0" and "client_credentials" in issued["outcomeDesc"]
    assert refused["outcome"] == "4" and "invalid" in refused["outcomeDesc"]


def test_sign_ins_are_audited_with_the_user_name(http: TestClient, hub: Hub) -> None:
    launch = setup_launch(hub)
    _, challenge = pkce()
    page = http.get("/auth/authorize", params=authorize_params(launch.public_id, challenge))
    form = hidden(page.text)
    assert (
        http.post("/auth/login", data={**form, "username": "alice", "password": "no"}).status_code
        == 401
    )
    page = http.get("/auth/authorize", params=authorize_params(launch.public_id, challenge))
    ok = http.post(
        "/auth/login", data={**hidden(page.text), "username": "alice", "password": PASSWORD}
    )
    assert ok.status_code == 200
    failed, signed_in = auth_events(hub)
    assert [e["subtype"][0]["code"] for e in (failed, signed_in)] == ["110122", "110122"]
    assert (failed["outcome"], signed_in["outcome"]) == ("4", "0")
    assert failed["agent"][0]["name"] == "alice" and failed["outcomeDesc"]


def _token(
    http: TestClient, client_id: str, user: str, scope: str, patient: str | None = None
) -> dict[str, Any]:
    code, verifier = sign_in(http, client_id, user=user, patient=patient, scope=scope)
    r = exchange(http, client_id, code, verifier)
    assert r.status_code == 200, r.text
    token: dict[str, Any] = r.json()
    return token


def test_only_auditors_read_the_log_and_patients_read_their_own(http: TestClient, hub: Hub) -> None:
    with TestClient(hub.app, headers={"Authorization": f"Bearer {TOKEN}"}) as ops:
        a = ops.post("/fhir/Patient", json=patient(family="A", mrn="A1")).json()["id"]
        b = ops.post("/fhir/Patient", json=patient(family="B", mrn="B1")).json()["id"]
        ops.get(f"/fhir/Patient/{a}")
        ops.get(f"/fhir/Patient/{b}")
    setup_launch(hub, patient_id=a)
    UserStore(hub.settings.users_file).add("audrey", PASSWORD, ("auditor",), "Practitioner/a1")
    scopes = (
        "openid",
        "fhirUser",
        "launch/patient",
        "user/AuditEvent.rs",
        "patient/AuditEvent.rs",
        "user/*.rs",
    )
    app, _ = ClientStore(hub.settings.clients_file).add(
        "Audit", "public", scopes, redirect_uris=(REDIRECT,)
    )
    hub.audit_indexer.catch_up()

    auditor = _token(http, app.client_id, "audrey", "openid fhirUser user/AuditEvent.rs")
    assert auditor["scope"].split() == ["openid", "fhirUser", "user/AuditEvent.rs"]
    seen = http.get(
        "/fhir/AuditEvent?_sort=-date",
        headers={"Authorization": f"Bearer {auditor['access_token']}"},
    )
    assert seen.status_code == 200 and seen.json()["total"] >= 4

    clinician = _token(http, app.client_id, "alice", "openid fhirUser user/AuditEvent.rs user/*.rs")
    assert "user/AuditEvent.rs" not in clinician["scope"].split()  # not an auditor
    refused = http.get(
        "/fhir/AuditEvent", headers={"Authorization": f"Bearer {clinician['access_token']}"}
    )
    assert refused.status_code == 403  # and user/*.rs does not reach the audit log
    assert (
        http.get(
            f"/fhir/Patient/{a}", headers={"Authorization": f"Bearer {clinician['access_token']}"}
        ).status_code
        == 200
    )

    own = _token(http, app.client_id, "pat", "openid fhirUser launch/patient patient/AuditEvent.rs")
    assert own["patient"] == a
    hub.audit_indexer.catch_up()
    mine = http.get(
        "/fhir/AuditEvent", headers={"Authorization": f"Bearer {own['access_token']}"}
    ).json()
    patients = {
        e["what"]["reference"]
        for entry in mine["entry"]
        for e in entry["resource"].get("entity", [])
        if e["role"]["code"] == "1"
    }
    assert patients == {f"Patient/{a}"} and mine["total"] >= 2  # created, read: never B's


def test_a_patient_sees_no_other_patient_in_a_shared_event(http: TestClient, hub: Hub) -> None:
    """One search over two patients is one event listing both; patient A reads it without B
    and without the query (which could name B)."""
    with TestClient(hub.app, headers={"Authorization": f"Bearer {TOKEN}"}) as ops:
        a = ops.post("/fhir/Patient", json=patient(family="A", mrn="A1")).json()["id"]
        b = ops.post("/fhir/Patient", json=patient(family="B", mrn="B1")).json()["id"]
        assert ops.get("/fhir/Patient?name=A,B").json()["total"] == 2
    setup_launch(hub, patient_id=a)
    scopes = ("openid", "fhirUser", "launch/patient", "patient/AuditEvent.rs")
    app, _ = ClientStore(hub.settings.clients_file).add(
        "Mine", "public", scopes, redirect_uris=(REDIRECT,)
    )
    own = _token(http, app.client_id, "pat", " ".join(scopes))
    hub.audit_indexer.catch_up()
    headers = {"Authorization": f"Bearer {own['access_token']}"}
    events = http.get("/fhir/AuditEvent?subtype=search-type", headers=headers).json()
    (shared,) = [e["resource"] for e in events["entry"]]
    assert [e["what"]["reference"] for e in shared["entity"]] == [f"Patient/{a}"]
    as_read = http.get(f"/fhir/AuditEvent/{shared['id']}", headers=headers).json()
    assert f"Patient/{b}" not in str(as_read) and as_read["entity"] == shared["entity"]
    with TestClient(hub.app, headers={"Authorization": f"Bearer {TOKEN}"}) as ops:
        full = ops.get(f"/fhir/AuditEvent/{shared['id']}").json()
    assert {e["role"]["code"] for e in full["entity"]} == {"1", "24"} and len(full["entity"]) == 3
