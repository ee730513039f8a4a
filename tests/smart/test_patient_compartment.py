"""SMART ``patient/`` scopes confine a token to its patient's compartment, on every path.

SMART App Launch 2.2 scopes-and-launch-context.html; FHIR R4 compartmentdefinition-patient.html.
Patient A (the token's patient) and patient B each have imaging studies and documents; every test
tries to reach B's data with A's token through one door. Outside the compartment is answered as
missing (404), never 403. Tokens are signed by the hub's own authorization server.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hub.composition import Hub
from hub.smart import ClientStore
from tests.e2e.support import TOKEN, patient, study
from tests.smart.access_support import document, ids, search
from tests.smart.launch_support import REDIRECT, exchange, setup_launch, sign_in
from tests.smart.support import auth_server

ADMIN = {"Authorization": f"Bearer {TOKEN}"}


class World:
    """Patients A and B, their studies and documents, a practitioner and B's order."""

    def __init__(self, http: TestClient) -> None:
        self.http = http
        self.pr = self.create({"resourceType": "Practitioner", "name": [{"family": "Doc"}]})
        self.b = self.create(patient("Other", "MB"))
        self.a = self.create(patient("Garcia", "MA", link=[self.link(self.b)]))
        self.order_b = self.create(
            {
                "resourceType": "ServiceRequest",
                "status": "active",
                "intent": "order",
                "subject": {"reference": f"Patient/{self.b}"},
            }
        )
        sa1 = study(f"Patient/{self.a}", "CT", uid="1.2.1")
        sa1["basedOn"] = [{"reference": f"ServiceRequest/{self.order_b}"}]
        self.sa1 = self.create(sa1)
        self.sa2 = self.create(study(f"Patient/{self.a}", "CT", uid="1.2.2"))
        self.sb = self.create(study(f"Patient/{self.b}", "MR", uid="1.2.3"))
        self.da = self.create(document(f"Patient/{self.a}", f"Practitioner/{self.pr}"))
        self.db = self.create(document(f"Patient/{self.b}", f"Practitioner/{self.pr}"))

    @staticmethod
    def link(other: str) -> dict[str, Any]:
        return {"other": {"reference": f"Patient/{other}"}, "type": "seealso"}

    def create(self, resource: dict[str, Any]) -> str:
        r = self.http.post(f"/fhir/{resource['resourceType']}", json=resource, headers=ADMIN)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])


@pytest.fixture
def world(http: TestClient) -> World:
    return World(http)


def bearer(hub: Hub, scope: str, patient_id: str | None) -> dict[str, str]:
    extra = {"patient": patient_id} if patient_id else {}
    token, _ = auth_server(hub).sign_access_token("app", scope, subject="pat", extra=extra)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def as_a(hub: Hub, world: World) -> dict[str, str]:
    return bearer(hub, "patient/*.rs", world.a)


# ---------------------------------------------------------------------------------- read, vread


def test_read_of_another_patients_resource_is_404_like_a_missing_one(
    http: TestClient, world: World, as_a: dict[str, str]
) -> None:
    assert http.get(f"/fhir/ImagingStudy/{world.sa1}", headers=as_a).status_code == 200
    assert http.get(f"/fhir/Patient/{world.a}", headers=as_a).status_code == 200
    for path in (f"ImagingStudy/{world.sb}", f"DocumentReference/{world.db}", f"Patient/{world.b}"):
        hidden = http.get(f"/fhir/{path}", headers=as_a)
        missing = http.get(f"/fhir/{path.split('/')[0]}/no-such-id", headers=as_a)
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["issue"][0]["code"] == missing.json()["issue"][0]["code"]
        assert hidden.json()["issue"][0]["diagnostics"].endswith("is not known")
        # the same resource is there for an unrestricted token
        assert http.get(f"/fhir/{path}", headers=ADMIN).status_code == 200


def test_vread_of_another_patients_resource_is_404(
    http: TestClient, world: World, as_a: dict[str, str]
) -> None:
    assert http.get(f"/fhir/ImagingStudy/{world.sa1}/_history/1", headers=as_a).status_code == 200
    assert http.get(f"/fhir/ImagingStudy/{world.sb}/_history/1", headers=as_a).status_code == 404


def test_deleted_resource_of_another_patient_is_404_not_410(
    http: TestClient, world: World, as_a: dict[str, str]
) -> None:
    assert http.delete(f"/fhir/ImagingStudy/{world.sb}", headers=ADMIN).status_code in (200, 204)
    assert http.get(f"/fhir/ImagingStudy/{world.sb}", headers=ADMIN).status_code == 410
    assert http.get(f"/fhir/ImagingStudy/{world.sb}", headers=as_a).status_code == 404


def test_non_compartment_reference_data_is_readable_but_not_writable(
    hub: Hub, http: TestClient, world: World, as_a: dict[str, str]
) -> None:
    assert http.get(f"/fhir/Practitioner/{world.pr}", headers=as_a).status_code == 200
    writer = bearer(hub, "patient/*.cruds", world.a)
    body = {"resourceType": "Practitioner", "name": [{"family": "New"}]}
    assert http.post("/fhir/Practitioner", json=body, headers=writer).status_code == 403


def test_patient_scopes_grant_nothing_without_a_patient_context(
    hub: Hub, http: TestClient, world: World
) -> None:
    no_patient = bearer(hub, "patient/*.rs", None)
    assert http.get(f"/fhir/ImagingStudy/{world.sa1}", headers=no_patient).status_code == 403
    assert http.get("/fhir/ImagingStudy", headers=no_patient).status_code == 403


def test_user_scope_lifts_the_restriction(hub: Hub, http: TestClient, world: World) -> None:
    both = bearer(hub, "patient/*.rs user/ImagingStudy.rs", world.a)
    assert http.get(f"/fhir/ImagingStudy/{world.sb}", headers=both).status_code == 200
    assert http.get(f"/fhir/DocumentReference/{world.db}", headers=both).status_code == 404


# ---------------------------------------------------------------------------------- search


def test_search_total_and_count_exclude_other_patients(
    http: TestClient, world: World, as_a: dict[str, str]
) -> None:
    found = search(http, "/fhir/ImagingStudy", as_a)
    assert ids(found) == {f"ImagingStudy/{world.sa1}", f"ImagingStudy/{world.sa2}"}
    assert found["total"] == 2
    assert search(http, "/fhir/ImagingStudy?_summary=count", as_a)["total"] == 2
    assert search(http, "/fhir/ImagingStudy?modality=MR", as_a)["total"] == 0
    # paging is over the confined results: one per page, two pages, no third
    page = search(http, "/fhir/ImagingStudy?_count=1", as_a)
    assert page["total"] == 2 and len(page["entry"]) == 1
    nxt = next(link["url"] for link in page["link"] if link["relation"] == "next")
    page2 = search(http, nxt.removeprefix("http://testserver"), as_a)
    assert len(page2["entry"]) == 1
    assert not any(link["relation"] == "next" for link in page2["link"])
    everyone = search(http, "/fhir/ImagingStudy?_summary=count", ADMIN)
    assert everyone["total"] == 3
    patients = search(http, "/fhir/Patient", as_a)
    assert ids(patients) == {f"Patient/{world.a}"}
    docs = search(http, "/fhir/DocumentReference", as_a)
    assert ids(docs) == {f"DocumentReference/{world.da}"}


def test_search_by_the_other_patient_finds_nothing(
    http: TestClient, world: World, as_a: dict[str, str]
) -> None:
    found = search(http, f"/fhir/ImagingStudy?subject=Patient/{world.b}", as_a)
    assert found["total"] == 0 and "entry" not in found
    found = search(http, f"/fhir/Patient?_id={world.b}", as_a)
    assert found["total"] == 0


def test_a_patient_linking_to_me_is_in_my_compartment(hub: Hub, http: TestClient) -> None:
    world = World(http)
    as_b = bearer(hub, "patient/*.rs", world.b)  # A links to B: A is in B's compartment
    assert ids(search(http, "/fhir/Patient", as_b)) == {
        f"Patient/{world.a}",
        f"Patient/{world.b}",
    }


def test_include_does_not_bring_another_patients_resources(
    http: TestClient, world: World, as_a: dict[str, str]
) -> None:
    found = search(http, "/fhir/ImagingStudy?_include=ImagingStudy:subject", as_a)
    assert ids(found, "include") == {f"Patient/{world.a}"}
    # A's study is based on B's order: the order must not come along
    found = search(http, "/fhir/ImagingStudy?_include=ImagingStudy:basedon", as_a)
    assert ids(found, "include") == set()
    admin = search(http, "/fhir/ImagingStudy?_include=ImagingStudy:basedon", ADMIN)
    assert ids(admin, "include") == {f"ServiceRequest/{world.order_b}"}
    # A links to B: not included, and :iterate does not go through B
    found = search(http, "/fhir/Patient?_include=Patient:link&_include:iterate=Patient:link", as_a)
    assert ids(found, "include") == set()
    found = search(http, "/fhir/ImagingStudy?_include=ImagingStudy:*", as_a)
    assert f"ServiceRequest/{world.order_b}" not in ids(found, "include")


def test_revinclude_does_not_bring_another_patients_resources(
    http: TestClient, world: World, as_a: dict[str, str]
) -> None:
    url = f"/fhir/Practitioner?_id={world.pr}&_revinclude=DocumentReference:author"
    assert ids(search(http, url, ADMIN), "include") == {
        f"DocumentReference/{world.da}",
        f"DocumentReference/{world.db}",
    }
    assert ids(search(http, url, as_a), "include") == {f"DocumentReference/{world.da}"}
    url = "/fhir/Patient?_revinclude=ImagingStudy:subject"
    assert ids(search(http, url, as_a), "include") == {
        f"ImagingStudy/{world.sa1}",
        f"ImagingStudy/{world.sa2}",
    }


def test_chained_parameter_reveals_nothing(
    hub: Hub, http: TestClient, world: World, as_a: dict[str, str]
) -> None:
    assert search(http, "/fhir/ImagingStudy?subject:Patient.name=Other", as_a)["total"] == 0
    assert search(http, "/fhir/ImagingStudy?subject:Patient.name=Garcia", as_a)["total"] == 2
    # studies unrestricted but patients confined: the chain must not look at patient B
    mixed = bearer(hub, "user/ImagingStudy.rs patient/Patient.rs", world.a)
    assert search(http, "/fhir/ImagingStudy?subject:Patient.name=Other", mixed)["total"] == 0
    assert search(http, "/fhir/ImagingStudy?subject:Patient.name=Other", ADMIN)["total"] == 1
    # chaining through a type the token may not search at all is refused
    only_studies = bearer(hub, "patient/ImagingStudy.rs", world.a)
    r = http.get("/fhir/ImagingStudy?subject:Patient.name=Other", headers=only_studies)
    assert r.status_code == 403


def test_has_reveals_no_other_patient(
    hub: Hub, http: TestClient, world: World, as_a: dict[str, str]
) -> None:
    url = "/fhir/Patient?_has:ImagingStudy:subject:modality=MR"
    assert ids(search(http, url, ADMIN)) == {f"Patient/{world.b}"}
    assert search(http, url, as_a)["total"] == 0
    # patients unrestricted but studies confined: B's MR study must not give B away
    mixed = bearer(hub, "user/Patient.rs patient/ImagingStudy.rs", world.a)
    assert search(http, url, mixed)["total"] == 0
    own = "/fhir/Patient?_has:ImagingStudy:subject:modality=CT"
    assert ids(search(http, own, mixed)) == {f"Patient/{world.a}"}


def test_system_search_with_a_restricted_type_is_refused(
    http: TestClient, world: World, as_a: dict[str, str]
) -> None:
    assert http.get("/fhir?_id=" + world.sb, headers=as_a).status_code == 403


# ---------------------------------------------------------------------------------- history


def test_history_shows_only_the_compartment(
    http: TestClient, world: World, as_a: dict[str, str]
) -> None:
    assert http.get(f"/fhir/ImagingStudy/{world.sb}/_history", headers=as_a).status_code == 404
    own = search(http, f"/fhir/ImagingStudy/{world.sa1}/_history", as_a)
    assert own["total"] == 1
    typed = search(http, "/fhir/ImagingStudy/_history", as_a)
    seen = {e["resource"]["id"] for e in typed["entry"]}
    assert seen == {world.sa1, world.sa2} and typed["total"] == 2
    assert search(http, "/fhir/ImagingStudy/_history", ADMIN)["total"] == 3
    system = search(http, "/fhir/_history", as_a)
    keys = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in system["entry"]}
    assert f"ImagingStudy/{world.sb}" not in keys and f"Patient/{world.b}" not in keys
    assert f"DocumentReference/{world.db}" not in keys
    assert f"ServiceRequest/{world.order_b}" not in keys
    assert {f"ImagingStudy/{world.sa1}", f"Patient/{world.a}", f"Practitioner/{world.pr}"} <= keys
    paged = search(http, "/fhir/ImagingStudy/_history?_count=1", as_a)
    assert paged["total"] == 2 and len(paged["entry"]) == 1


# ---------------------------------------------------------------------------------- writes


def _bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def test_batch_entries_are_each_confined(
    hub: Hub, http: TestClient, world: World, as_a: dict[str, str]
) -> None:
    writer = bearer(hub, "patient/*.cruds", world.a)
    batch = _bundle(
        "batch",
        {"request": {"method": "GET", "url": f"ImagingStudy/{world.sa1}"}},
        {"request": {"method": "GET", "url": f"ImagingStudy/{world.sb}"}},
        {"request": {"method": "GET", "url": f"ImagingStudy/{world.sb}/_history/1"}},
        {"request": {"method": "GET", "url": "ImagingStudy?_summary=count"}},
        {"request": {"method": "DELETE", "url": f"ImagingStudy/{world.sb}"}},
        {
            "resource": study(f"Patient/{world.b}", uid="9.9.1"),
            "request": {"method": "POST", "url": "ImagingStudy"},
        },
        {
            "resource": {**study(f"Patient/{world.b}", uid="1.2.3"), "id": world.sb},
            "request": {"method": "PUT", "url": f"ImagingStudy/{world.sb}"},
        },
    )
    r = http.post("/fhir", json=batch, headers=writer)
    assert r.status_code == 200, r.text
    status = [e["response"]["status"] for e in r.json()["entry"]]
    assert status[0].startswith("200")
    assert status[1].startswith("404") and status[2].startswith("404")
    assert r.json()["entry"][3]["resource"]["total"] == 2
    assert status[4].startswith("204")  # as for an unknown resource: nothing deleted
    assert status[5].startswith("403")  # would land outside the compartment
    assert status[6].startswith("404")  # another patient's study is not there to update
    kept = http.get(f"/fhir/ImagingStudy/{world.sb}", headers=ADMIN)
    assert kept.status_code == 200 and kept.json()["meta"]["versionId"] == "1"
    assert search(http, "/fhir/ImagingStudy?_summary=count", ADMIN)["total"] == 3


def test_transaction_cannot_touch_another_patient(hub: Hub, http: TestClient, world: World) -> None:
    writer = bearer(hub, "patient/*.cruds", world.a)
    own = _bundle(
        "transaction",
        {
            "fullUrl": "urn:uuid:0b5c8f7e-0000-4000-8000-000000000001",
            "resource": study(f"Patient/{world.a}", uid="7.7.7"),
            "request": {"method": "POST", "url": "ImagingStudy"},
        },
        {"request": {"method": "GET", "url": f"ImagingStudy/{world.sb}"}},
    )
    r = http.post("/fhir", json=own, headers=writer)
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["response"]["status"].startswith("201")
    assert r.json()["entry"][1]["response"]["status"].startswith("404")
    moved = {**study(f"Patient/{world.b}", uid="1.2.1"), "id": world.sa1}
    steal = _bundle(
        "transaction",
        {"resource": moved, "request": {"method": "PUT", "url": f"ImagingStudy/{world.sa1}"}},
    )
    assert http.post("/fhir", json=steal, headers=writer).status_code == 403
    patch = base64.b64encode(
        json.dumps([{"op": "replace", "path": "/status", "value": "cancelled"}]).encode()
    ).decode()
    touch = _bundle(
        "transaction",
        {
            "resource": {"resourceType": "Binary", "contentType": "x", "data": patch},
            "request": {"method": "PATCH", "url": f"ImagingStudy/{world.sb}"},
        },
    )
    assert http.post("/fhir", json=touch, headers=writer).status_code == 404
    conditional = _bundle(
        "transaction",
        {
            "fullUrl": "urn:uuid:0b5c8f7e-0000-4000-8000-000000000002",
            "resource": study(f"Patient/{world.b}", uid="1.2.3"),
            "request": {
                "method": "POST",
                "url": "ImagingStudy",
                "ifNoneExist": "identifier=urn:oid:1.2.3",
            },
        },
    )
    # B's study matches ifNoneExist for an admin; for A it is not there, and the new one is B's
    assert http.post("/fhir", json=conditional, headers=writer).status_code == 403
    assert http.get(f"/fhir/ImagingStudy/{world.sb}", headers=ADMIN).json()["status"] == (
        "available"
    )
    assert http.get(f"/fhir/ImagingStudy/{world.sa1}", headers=ADMIN).json()["subject"] == {
        "reference": f"Patient/{world.a}"
    }


def test_conditional_interactions_do_not_match_another_patient(
    hub: Hub, http: TestClient, world: World
) -> None:
    writer = bearer(hub, "patient/*.cruds", world.a)
    # conditional create: B's study is not "already there" for A (its content is not returned)
    r = http.post(
        "/fhir/ImagingStudy",
        json=study(f"Patient/{world.a}", uid="1.2.3"),
        headers={**writer, "If-None-Exist": "identifier=urn:oid:1.2.3"},
    )
    assert r.status_code == 201 and r.json()["id"] != world.sb
    # conditional update: B's study is not matched, so it is not overwritten
    r = http.put(
        "/fhir/ImagingStudy?identifier=urn:oid:1.2.3&subject=Patient/" + world.b,
        json=study(f"Patient/{world.b}", "CT", uid="1.2.3"),
        headers=writer,
    )
    assert r.status_code == 403
    # conditional delete: nothing of B's is matched
    r = http.delete(f"/fhir/ImagingStudy?subject=Patient/{world.b}", headers=writer)
    assert r.status_code in (200, 204)
    assert (
        http.get(f"/fhir/ImagingStudy/{world.sb}", headers=ADMIN).json()["meta"]["versionId"] == "1"
    )


def test_update_must_stay_in_the_compartment(hub: Hub, http: TestClient, world: World) -> None:
    writer = bearer(hub, "patient/*.cruds", world.a)
    mine = http.get(f"/fhir/ImagingStudy/{world.sa2}", headers=writer).json()
    mine["status"] = "cancelled"
    assert http.put(f"/fhir/ImagingStudy/{world.sa2}", json=mine, headers=writer).status_code == 200
    mine["subject"] = {"reference": f"Patient/{world.b}"}
    assert http.put(f"/fhir/ImagingStudy/{world.sa2}", json=mine, headers=writer).status_code == 403
    # no update-as-create: a free id answers as a hidden one would
    fresh = {**study(f"Patient/{world.a}", uid="5.5.5"), "id": "brand-new"}
    assert http.put("/fhir/ImagingStudy/brand-new", json=fresh, headers=writer).status_code == 404
    hidden = {**study(f"Patient/{world.a}", uid="1.2.3"), "id": world.sb}
    r = http.put(f"/fhir/ImagingStudy/{world.sb}", json=hidden, headers=writer)
    assert r.status_code == 404
    r = http.delete(f"/fhir/ImagingStudy/{world.sb}", headers=writer)
    assert r.status_code in (200, 204)
    assert http.get(f"/fhir/ImagingStudy/{world.sb}", headers=ADMIN).status_code == 200
    r = http.delete(f"/fhir/ImagingStudy/{world.sa2}", headers=writer)
    assert http.get(f"/fhir/ImagingStudy/{world.sa2}", headers=ADMIN).status_code == 410


# ---------------------------------------------------------------------------------- real launch


def test_standalone_launch_with_patient_scopes_is_confined(hub: Hub, http: TestClient) -> None:
    """The real authorization-code flow: ``launch/patient`` + ``patient/*.rs`` for a patient
    user yields a token with the ``patient`` claim, and that token is confined."""
    world = World(http)
    setup_launch(hub, patient_id=world.a)
    app, _ = ClientStore(hub.settings.clients_file).add(
        "Patient app",
        "public",
        ("openid", "fhirUser", "launch/patient", "patient/*.rs"),
        redirect_uris=(REDIRECT,),
    )
    code, verifier = sign_in(
        http,
        app.client_id,
        user="pat",
        scope="openid fhirUser launch/patient patient/*.rs",
    )
    r = exchange(http, app.client_id, code, verifier)
    assert r.status_code == 200, r.text
    token = r.json()
    assert token["patient"] == world.a and "patient/*.rs" in token["scope"].split()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    assert http.get(f"/fhir/ImagingStudy/{world.sb}", headers=headers).status_code == 404
    assert ids(search(http, "/fhir/ImagingStudy", headers)) == {
        f"ImagingStudy/{world.sa1}",
        f"ImagingStudy/{world.sa2}",
    }


def test_a_write_cannot_probe_another_patients_ids_through_a_reference(
    hub: Hub, http: TestClient, world: World
) -> None:
    """A reference to another patient's resource answers exactly as one to a missing resource
    (referential integrity), so a patient token cannot learn which ids exist."""
    writer = bearer(hub, "patient/*.cruds", world.a)

    def based_on(reference: str) -> Any:
        body = {**study(f"Patient/{world.a}", uid="7.7.7"), "basedOn": [{"reference": reference}]}
        return http.post("/fhir/ImagingStudy", json=body, headers=writer)

    hidden, missing = based_on(f"ServiceRequest/{world.order_b}"), based_on("ServiceRequest/nope")
    assert hidden.status_code == missing.status_code == 400
    assert hidden.json()["issue"][0]["diagnostics"].replace(world.order_b, "X") == missing.json()[
        "issue"
    ][0]["diagnostics"].replace("nope", "X")
    assert (
        http.post(
            "/fhir/ImagingStudy", json=study(f"Patient/{world.a}", uid="7.7.8"), headers=writer
        ).status_code
        == 201
    )  # a reference to its own patient is fine
    admin_write = {
        **study(f"Patient/{world.a}", uid="7.7.9"),
        "basedOn": [{"reference": f"ServiceRequest/{world.order_b}"}],
    }
    assert http.post("/fhir/ImagingStudy", json=admin_write, headers=ADMIN).status_code == 201
