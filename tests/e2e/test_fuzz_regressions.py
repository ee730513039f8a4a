"""Crashes found by the schemathesis run (tests/conformance/test_api_fuzz.py), kept as
regression tests over the real app: each was a 500 before its fix."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.e2e.support import assert_valid_r4, patient


def outcome(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert_valid_r4(body)
    return body


def test_history_with_huge_offset(client: TestClient) -> None:
    assert client.post("/fhir/Patient", json=patient()).status_code == 201
    for path in ("/fhir/_history", "/fhir/Patient/_history"):
        r = client.get(path, params={"_offset": "867153992339345513460180556185600"})
        assert r.status_code == 200, r.text
        assert r.json()["type"] == "history" and "entry" not in r.json()


def test_history_with_unicode_digits_or_instants_off_the_calendar(client: TestClient) -> None:
    outcome(client.get("/fhir/_history", params={"_count": "²"}), 400)
    outcome(client.get("/fhir/_history", params={"_since": "9999-12-31T23:59:59-14:00"}), 400)
    outcome(client.get("/fhir/_history", params={"_at": "0001-01-01T00:00:00+14:00"}), 400)


def test_vread_of_a_version_beyond_the_store(client: TestClient) -> None:
    """Found probing the API: a 23-digit version id reached SQLite (OverflowError, a 500)."""
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    for vid in ("99999999999999999999999", "²"):
        outcome(client.get(f"/fhir/Patient/{pid}/_history/{vid}"), 404)
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"Patient/{pid}/_history/99999999999999999999999"}}
        ],
    }
    r = client.post("/fhir", json=batch)
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["response"]["status"].startswith("404")


def test_contained_resource_of_unknown_type(client: TestClient) -> None:
    """Found probing the API: the models' bare ``KeyError`` on an unknown contained type (a 500)."""
    body = outcome(
        client.post("/fhir/Patient", json=patient(contained=[{"resourceType": "Nope"}])), 400
    )
    assert body["issue"][0]["expression"] == ["Patient.contained[0].resourceType"]


def test_transaction_entry_fields_of_the_wrong_json_type(client: TestClient) -> None:
    """Found probing the API: a number as ``ifNoneExist``/``ifMatch`` and a list as ``method``
    reached string and dict operations (AttributeError, TypeError: 500s)."""
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    requests = [
        ({"method": "POST", "url": "Patient", "ifNoneExist": 5}, "ifNoneExist"),
        ({"method": "PUT", "url": f"Patient/{pid}", "ifMatch": 5}, "ifMatch"),
        ({"method": ["GET"], "url": "Patient"}, "method"),
    ]
    for request, field in requests:
        entry: dict[str, Any] = {"request": request}
        if request["method"] in ("POST", "PUT"):
            entry["resource"] = patient(id=pid) if request["method"] == "PUT" else patient()
        for kind in ("transaction", "batch"):
            bundle = {"resourceType": "Bundle", "type": kind, "entry": [entry]}
            body = outcome(client.post("/fhir", json=bundle), 400)
            assert body["issue"][0]["expression"] == [f"Bundle.entry[0].request.{field}"]
