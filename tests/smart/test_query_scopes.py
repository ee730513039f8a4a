"""SMART v2 query-restricted scopes (scopes-and-launch-context.html, "Finer-grained resource
constraints using search parameters"): ``system/DocumentReference.rs?category=...`` grants only
the documents of that category, on search, read, vread, history, includes and writes."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from hub.composition import Hub
from tests.e2e.support import TOKEN, patient
from tests.smart.access_support import document, ids, search
from tests.smart.support import auth_server

ADMIN = {"Authorization": f"Bearer {TOKEN}"}
X = "http://loinc.org|LP29684-5"  # Radiology
Y = "http://loinc.org|LP7839-6"  # Pathology


class Docs:
    def __init__(self, http: TestClient) -> None:
        self.http = http
        self.p = self.create(patient())
        self.x = self.create(document(f"Patient/{self.p}", code="LP29684-5"))
        self.y = self.create(document(f"Patient/{self.p}", code="LP7839-6"))

    def create(self, resource: dict[str, Any]) -> str:
        r = self.http.post(f"/fhir/{resource['resourceType']}", json=resource, headers=ADMIN)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])


@pytest.fixture
def docs(http: TestClient) -> Docs:
    return Docs(http)


def bearer(hub: Hub, *scopes: str) -> dict[str, str]:
    token, _ = auth_server(hub).sign_access_token("backend", " ".join(scopes))
    return {"Authorization": f"Bearer {token}"}


def test_search_returns_only_matching_documents(hub: Hub, http: TestClient, docs: Docs) -> None:
    only_x = bearer(hub, f"system/DocumentReference.rs?category={X}")
    found = search(http, "/fhir/DocumentReference", only_x)
    assert ids(found) == {f"DocumentReference/{docs.x}"} and found["total"] == 1
    assert search(http, "/fhir/DocumentReference?_summary=count", only_x)["total"] == 1
    asked_y = search(http, f"/fhir/DocumentReference?category={Y}", only_x)
    assert asked_y["total"] == 0
    assert search(http, "/fhir/DocumentReference?_summary=count", ADMIN)["total"] == 2


def test_read_vread_and_history_need_a_matching_document(
    hub: Hub, http: TestClient, docs: Docs
) -> None:
    only_x = bearer(hub, f"system/DocumentReference.rs?category={X}")
    assert http.get(f"/fhir/DocumentReference/{docs.x}", headers=only_x).status_code == 200
    assert http.get(f"/fhir/DocumentReference/{docs.y}", headers=only_x).status_code == 404
    for path in (f"{docs.y}/_history/1", f"{docs.y}/_history"):
        assert http.get(f"/fhir/DocumentReference/{path}", headers=only_x).status_code == 404
    typed = search(http, "/fhir/DocumentReference/_history", only_x)
    assert {e["resource"]["id"] for e in typed["entry"]} == {docs.x}


def test_several_restricted_scopes_or_together(hub: Hub, http: TestClient, docs: Docs) -> None:
    both = bearer(
        hub,
        f"system/DocumentReference.rs?category={X}",
        f"system/DocumentReference.rs?category={Y}",
    )
    assert search(http, "/fhir/DocumentReference", both)["total"] == 2
    unrestricted = bearer(hub, f"system/DocumentReference.rs?category={X}", "system/*.rs")
    assert search(http, "/fhir/DocumentReference", unrestricted)["total"] == 2


def test_a_restriction_that_does_not_apply_grants_nothing(
    hub: Hub, http: TestClient, docs: Docs
) -> None:
    odd = bearer(hub, "system/DocumentReference.rs?no-such-param=1")
    assert search(http, "/fhir/DocumentReference", odd)["total"] == 0
    assert http.get(f"/fhir/DocumentReference/{docs.x}", headers=odd).status_code == 404


def test_revinclude_brings_only_matching_documents(hub: Hub, http: TestClient, docs: Docs) -> None:
    scopes = ("system/Patient.rs", f"system/DocumentReference.rs?category={X}")
    url = "/fhir/Patient?_revinclude=DocumentReference:subject"
    assert ids(search(http, url, ADMIN), "include") == {
        f"DocumentReference/{docs.x}",
        f"DocumentReference/{docs.y}",
    }
    assert ids(search(http, url, bearer(hub, *scopes)), "include") == {
        f"DocumentReference/{docs.x}"
    }


def test_has_through_a_restricted_type_is_confined(hub: Hub, http: TestClient, docs: Docs) -> None:
    scopes = ("system/Patient.rs", f"system/DocumentReference.rs?category={X}")
    url = f"/fhir/Patient?_has:DocumentReference:subject:category={Y}"
    assert search(http, url, ADMIN)["total"] == 1
    assert search(http, url, bearer(hub, *scopes))["total"] == 0


def test_writes_must_match_the_restriction(hub: Hub, http: TestClient, docs: Docs) -> None:
    writer = bearer(hub, f"system/DocumentReference.cruds?category={X}")
    good = document(f"Patient/{docs.p}", code="LP29684-5")
    assert http.post("/fhir/DocumentReference", json=good, headers=writer).status_code == 201
    bad = document(f"Patient/{docs.p}", code="LP7839-6")
    assert http.post("/fhir/DocumentReference", json=bad, headers=writer).status_code == 403
    current = http.get(f"/fhir/DocumentReference/{docs.x}", headers=writer).json()
    current["category"] = bad["category"]
    r = http.put(f"/fhir/DocumentReference/{docs.x}", json=current, headers=writer)
    assert r.status_code == 403
    assert (
        http.get(f"/fhir/DocumentReference/{docs.x}", headers=ADMIN).json()["meta"]["versionId"]
        == "1"
    )
    assert search(http, "/fhir/DocumentReference?_summary=count", ADMIN)["total"] == 3
