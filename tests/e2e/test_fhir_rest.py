"""FHIR R4 RESTful API end to end (http.html), over the real app and a real SQLite store."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from fastapi.testclient import TestClient

from tests.e2e.support import BASE, TOKEN, assert_valid_r4, patient, study


def create(client: TestClient, resource: dict[str, Any], **headers: str) -> dict[str, Any]:
    r = client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def outcome(r: Any, status: int) -> dict[str, Any]:
    """The response is ``status`` with a valid OperationOutcome that has a located issue."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert_valid_r4(body)
    return body


# ----------------------------------------------------------------------------- read/create


def test_create_read_headers(client: TestClient) -> None:
    r = client.post("/fhir/Patient", json=patient())
    assert r.status_code == 201
    body = r.json()
    assert_valid_r4(body)
    pid = body["id"]
    assert body["meta"]["versionId"] == "1"
    assert r.headers["location"] == f"{BASE}/Patient/{pid}/_history/1"
    assert r.headers["etag"] == 'W/"1"'
    assert "GMT" in r.headers["last-modified"]
    got = client.get(f"/fhir/Patient/{pid}")
    assert got.status_code == 200
    assert got.json() == body
    assert got.headers["etag"] == 'W/"1"'
    assert client.get(f"/fhir/Patient/{pid}", headers={"If-None-Match": 'W/"1"'}).status_code == 304


def test_create_ignores_client_id(client: TestClient) -> None:
    body = create(client, patient(id="chosen-by-client"))
    assert body["id"] != "chosen-by-client"


def test_read_unknown_is_404_outcome(client: TestClient) -> None:
    outcome(client.get("/fhir/Patient/nope"), 404)


def test_unknown_type_is_404_outcome(client: TestClient) -> None:
    body = outcome(client.get("/fhir/Spaceship/1"), 404)
    assert body["issue"][0]["code"] == "not-supported"
    outcome(client.post("/fhir/Spaceship", json={"resourceType": "Spaceship"}), 404)


def test_prefer_return(client: TestClient) -> None:
    r = client.post("/fhir/Patient", json=patient(), headers={"Prefer": "return=minimal"})
    assert r.status_code == 201 and r.content == b"" and "location" in r.headers
    r = client.post("/fhir/Patient", json=patient(), headers={"Prefer": "return=OperationOutcome"})
    assert r.status_code == 201 and r.json()["resourceType"] == "OperationOutcome"


# ----------------------------------------------------------------------------- bad input


def test_malformed_json(client: TestClient) -> None:
    r = client.post(
        "/fhir/Patient",
        content=b'{"resourceType": "Patient",',
        headers={"Content-Type": "application/fhir+json"},
    )
    outcome(r, 400)


def test_wrong_resource_type(client: TestClient) -> None:
    body = outcome(client.post("/fhir/Patient", json={"resourceType": "Observation"}), 400)
    assert body["issue"][0]["expression"] == ["Patient.resourceType"]


def test_body_not_object(client: TestClient) -> None:
    outcome(client.post("/fhir/Patient", json=[1, 2]), 400)


def test_invalid_resource_has_precise_locations(client: TestClient) -> None:
    bad = patient(birthDate="2024-02-30", foo=1)
    body = outcome(client.post("/fhir/Patient", json=bad), 400)
    where = {e for i in body["issue"] for e in i.get("expression", [])}
    assert {"Patient.birthDate", "Patient.foo"} <= where


def test_missing_required_element(client: TestClient) -> None:
    s = study("Patient/x")
    del s["status"]
    body = outcome(client.post("/fhir/ImagingStudy", json=s), 400)
    assert body["issue"][0]["expression"] == ["ImagingStudy.status"]


def test_deeply_nested_json(client: TestClient) -> None:
    nested: Any = "x"
    for _ in range(200):
        nested = {"extension": [{"url": "http://e", "valueString": "v", "x": nested}]}
    outcome(client.post("/fhir/Patient", json={"resourceType": "Patient", "x": nested}), 400)
    deep = b"[" * 100_000 + b"]" * 100_000
    outcome(
        client.post("/fhir/Patient", content=deep, headers={"Content-Type": "application/json"}),
        400,
    )


def test_oversize_body_is_413(tmp_path: Any) -> None:
    from tests.e2e.support import make_hub

    hub = make_hub(tmp_path / "small", max_body_bytes=2048)
    try:
        with TestClient(hub.app, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
            big = patient(text={"status": "generated", "div": "<div>" + "x" * 5000 + "</div>"})
            outcome(c.post("/fhir/Patient", json=big), 413)
            chunks = (b"x" * 1024 for _ in range(10))  # no Content-Length: streamed
            outcome(
                c.post(
                    "/fhir/Patient", content=chunks, headers={"Content-Type": "application/json"}
                ),
                413,
            )
            assert c.post("/fhir/Patient", json=patient()).status_code == 201
    finally:
        hub.close()


def test_unsupported_media_type(client: TestClient) -> None:
    r = client.post(
        "/fhir/Patient", content=b"<Patient/>", headers={"Content-Type": "application/fhir+xml"}
    )
    outcome(r, 415)


def test_xml_not_acceptable(client: TestClient) -> None:
    outcome(client.get("/fhir/Patient?_format=xml"), 406)


def test_no_token_401(hub: Any) -> None:
    with TestClient(hub.app) as c:
        r = c.get("/fhir/Patient")
        outcome(r, 401)
        assert r.headers["www-authenticate"].startswith("Bearer")
        bad = c.get("/fhir/Patient", headers={"Authorization": "Bearer wrong"})
        outcome(bad, 401)
        assert 'error="invalid_token"' in bad.headers["www-authenticate"]
        assert c.get("/fhir/metadata").status_code == 200
        assert c.get("/health").status_code == 200
        assert c.get("/metrics").status_code == 401


# ----------------------------------------------------------------------------- update/delete


def test_update_versions_and_if_match(client: TestClient) -> None:
    p = create(client, patient())
    p["gender"] = "other"
    r = client.put(f"/fhir/Patient/{p['id']}", json=p, headers={"If-Match": 'W/"1"'})
    assert r.status_code == 200 and r.json()["meta"]["versionId"] == "2"
    stale = client.put(f"/fhir/Patient/{p['id']}", json=p, headers={"If-Match": 'W/"1"'})
    outcome(stale, 412)
    assert client.get(f"/fhir/Patient/{p['id']}/_history/1").json()["gender"] == "female"
    assert client.get(f"/fhir/Patient/{p['id']}").json()["gender"] == "other"


def test_update_as_create_and_id_rules(client: TestClient) -> None:
    r = client.put("/fhir/Patient/my-id", json=patient(id="my-id"))
    assert r.status_code == 201
    outcome(client.put("/fhir/Patient/my-id", json=patient()), 400)  # no id in body
    body = outcome(client.put("/fhir/Patient/my-id", json=patient(id="other")), 400)
    assert body["issue"][0]["expression"] == ["Patient.id"]


def test_delete_then_410_and_history(client: TestClient) -> None:
    p = create(client, patient())
    assert client.delete(f"/fhir/Patient/{p['id']}").status_code == 204
    outcome(client.get(f"/fhir/Patient/{p['id']}"), 410)
    assert client.delete(f"/fhir/Patient/{p['id']}").status_code == 204
    hist = client.get(f"/fhir/Patient/{p['id']}/_history").json()
    assert_valid_r4(hist)
    assert hist["total"] == 2
    assert hist["entry"][0]["request"]["method"] == "DELETE"
    assert hist["entry"][1]["resource"]["id"] == p["id"]
    outcome(client.get(f"/fhir/Patient/{p['id']}/_history/2"), 410)
    assert client.get(f"/fhir/Patient/{p['id']}/_history/1").status_code == 200
    outcome(client.get(f"/fhir/Patient/{p['id']}/_history/9"), 404)
    # re-create by update after delete
    assert client.put(f"/fhir/Patient/{p['id']}", json={**p, "meta": {}}).status_code == 201


def test_patch(client: TestClient) -> None:
    p = create(client, patient())
    ops = [{"op": "replace", "path": "/gender", "value": "male"}]
    headers = {"Content-Type": "application/json-patch+json"}
    r = client.patch(f"/fhir/Patient/{p['id']}", content=orjson.dumps(ops), headers=headers)
    assert (
        r.status_code == 200
        and r.json()["gender"] == "male"
        and r.json()["meta"]["versionId"] == "2"
    )
    bad_path = [{"op": "replace", "path": "/nothing/here", "value": 1}]
    outcome(
        client.patch(f"/fhir/Patient/{p['id']}", content=orjson.dumps(bad_path), headers=headers),
        422,
    )
    id_change = [{"op": "replace", "path": "/id", "value": "x"}]
    outcome(
        client.patch(f"/fhir/Patient/{p['id']}", content=orjson.dumps(id_change), headers=headers),
        422,
    )
    invalid = [{"op": "replace", "path": "/birthDate", "value": "yesterday"}]
    outcome(
        client.patch(f"/fhir/Patient/{p['id']}", content=orjson.dumps(invalid), headers=headers),
        400,
    )
    outcome(client.patch(f"/fhir/Patient/{p['id']}", content=b'{"op": 1}', headers=headers), 400)
    outcome(client.patch(f"/fhir/Patient/{p['id']}", json=ops), 415)
    stale = {**headers, "If-Match": 'W/"1"'}
    outcome(client.patch(f"/fhir/Patient/{p['id']}", content=orjson.dumps(ops), headers=stale), 412)


def test_referential_integrity(client: TestClient) -> None:
    body = outcome(client.post("/fhir/ImagingStudy", json=study("Patient/missing")), 400)
    assert "Patient/missing" in body["issue"][0]["diagnostics"]
    assert body["issue"][0]["expression"] == ["ImagingStudy.subject"]
    p = create(client, patient())
    assert client.post("/fhir/ImagingStudy", json=study(f"Patient/{p['id']}")).status_code == 201
    absolute = study(f"{BASE}/Patient/{p['id']}")
    stored = create(client, absolute)
    assert stored["subject"]["reference"] == f"Patient/{p['id']}"


# ----------------------------------------------------------------------------- conditional


def test_conditional_create(client: TestClient) -> None:
    cond = {"If-None-Exist": "identifier=urn:oid:2.16.840.1.113883.19.5|C1"}
    first = client.post("/fhir/Patient", json=patient(mrn="C1"), headers=cond)
    assert first.status_code == 201
    again = client.post("/fhir/Patient", json=patient(mrn="C1"), headers=cond)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    create(client, patient(mrn="C1"))  # now two share the identifier
    outcome(client.post("/fhir/Patient", json=patient(mrn="C1"), headers=cond), 412)
    outcome(client.post("/fhir/Patient", json=patient(), headers={"If-None-Exist": "bogus=1"}), 400)


def test_conditional_update_and_delete(client: TestClient) -> None:
    url = "/fhir/Patient?identifier=urn:oid:2.16.840.1.113883.19.5|U1"
    r = client.put(url, json=patient(mrn="U1"))
    assert r.status_code == 201
    pid = r.json()["id"]
    r = client.put(url, json=patient(mrn="U1", gender="male"))
    assert r.status_code == 200 and r.json()["id"] == pid and r.json()["gender"] == "male"
    create(client, patient(mrn="U1"))
    outcome(client.put(url, json=patient(mrn="U1")), 412)
    outcome(client.delete(url), 412)
    assert (
        client.delete("/fhir/Patient?identifier=urn:oid:2.16.840.1.113883.19.5|none").status_code
        == 204
    )
    one = create(client, patient(mrn="D1"))
    assert (
        client.delete("/fhir/Patient?identifier=urn:oid:2.16.840.1.113883.19.5|D1").status_code
        == 204
    )
    outcome(client.get(f"/fhir/Patient/{one['id']}"), 410)


# ----------------------------------------------------------------------------- search


def test_search_get_and_post(client: TestClient) -> None:
    p = create(client, patient())
    other = create(client, patient(family="Okafor", mrn="M2"))
    create(client, study(f"Patient/{p['id']}", "CT", "2024-03-05T10:00:00Z", "1.1"))
    create(client, study(f"Patient/{p['id']}", "MR", "2024-03-06T10:00:00Z", "1.2"))
    create(client, study(f"Patient/{other['id']}", "CT", "2019-01-01T10:00:00Z", "1.3"))
    r = client.get(f"/fhir/ImagingStudy?patient={p['id']}&modality=CT&started=ge2020-01-01")
    bundle = r.json()
    assert_valid_r4(bundle)
    assert bundle["total"] == 1
    assert bundle["entry"][0]["resource"]["identifier"][0]["value"] == "urn:oid:1.1"
    assert bundle["entry"][0]["search"]["mode"] == "match"
    assert bundle["entry"][0]["fullUrl"].startswith(f"{BASE}/ImagingStudy/")
    form = {"patient": p["id"], "modality": "CT"}
    posted = client.post("/fhir/ImagingStudy/_search", data=form).json()
    assert posted["total"] == 1
    outcome(client.post("/fhir/ImagingStudy/_search", json=form), 415)
    chained = client.get("/fhir/ImagingStudy?patient.family=okafor").json()
    assert chained["total"] == 1
    has = client.get("/fhir/Patient?_has:ImagingStudy:patient:modality=MR").json()
    assert [e["resource"]["id"] for e in has["entry"]] == [p["id"]]


def test_search_paging_links(client: TestClient) -> None:
    for i in range(7):
        create(client, patient(family=f"Page{i}", mrn=f"P{i}"))
    seen: list[str] = []
    url: str | None = "/fhir/Patient?family=page&_count=3&_sort=family"
    pages = 0
    while url:
        bundle = client.get(url.replace(BASE, "/fhir")).json()
        assert_valid_r4(bundle)
        assert bundle["total"] == 7
        seen += [e["resource"]["name"][0]["family"] for e in bundle.get("entry", [])]
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        if pages:
            assert "previous" in links
        url = links.get("next")
        pages += 1
    assert pages == 3
    assert seen == [f"Page{i}" for i in range(7)]


def test_search_result_parameters(client: TestClient) -> None:
    p = create(client, patient())
    s = create(client, study(f"Patient/{p['id']}"))
    count = client.get("/fhir/ImagingStudy?_summary=count").json()
    assert count["total"] == 1 and "entry" not in count
    inc = client.get("/fhir/ImagingStudy?_include=ImagingStudy:subject").json()
    assert_valid_r4(inc)
    modes = sorted((e["resource"]["resourceType"], e["search"]["mode"]) for e in inc["entry"])
    assert modes == [("ImagingStudy", "match"), ("Patient", "include")]
    rev = client.get(f"/fhir/Patient?_id={p['id']}&_revinclude=ImagingStudy:patient").json()
    assert {e["resource"]["id"] for e in rev["entry"]} == {p["id"], s["id"]}
    el = client.get("/fhir/ImagingStudy?_elements=status").json()["entry"][0]["resource"]
    assert set(el) == {"resourceType", "id", "meta", "status"}
    assert el["meta"]["tag"][-1]["code"] == "SUBSETTED"
    summary = client.get("/fhir/Patient?_summary=true").json()["entry"][0]["resource"]
    assert "name" in summary and summary["meta"]["tag"][-1]["code"] == "SUBSETTED"


def test_search_errors_and_handling(client: TestClient) -> None:
    outcome(client.get("/fhir/ImagingStudy?started=notadate"), 400)
    outcome(client.get("/fhir/ImagingStudy?_count=-1"), 400)
    outcome(client.get("/fhir/ImagingStudy?_sort=nonsense"), 400)
    lenient = client.get("/fhir/Patient?unknownparam=1").json()
    assert_valid_r4(lenient)
    warn = [e for e in lenient.get("entry", []) if e["search"]["mode"] == "outcome"]
    assert "unknownparam" in warn[0]["resource"]["issue"][0]["diagnostics"]
    strict = client.get("/fhir/Patient?unknownparam=1", headers={"Prefer": "handling=strict"})
    outcome(strict, 400)


def test_history_type_and_system(client: TestClient) -> None:
    p = create(client, patient())
    create(client, study(f"Patient/{p['id']}"))
    h = client.get("/fhir/Patient/_history").json()
    assert_valid_r4(h)
    assert h["total"] == 1
    sys_h = client.get("/fhir/_history?_count=1").json()
    assert sys_h["total"] == 2 and len(sys_h["entry"]) == 1
    assert any(link["relation"] == "next" for link in sys_h["link"])
    outcome(client.get("/fhir/_history?_since=garbage"), 400)


# ----------------------------------------------------------------------------- bundles


def transaction(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def test_transaction_resolves_placeholders(client: TestClient) -> None:
    pid = "urn:uuid:5a6b7c8d-0000-4000-8000-000000000001"
    bundle = transaction(
        {"fullUrl": pid, "resource": patient(), "request": {"method": "POST", "url": "Patient"}},
        {
            "fullUrl": "urn:uuid:5a6b7c8d-0000-4000-8000-000000000002",
            "resource": study(pid),
            "request": {"method": "POST", "url": "ImagingStudy"},
        },
    )
    r = client.post("/fhir", json=bundle)
    assert r.status_code == 200, r.text
    resp = r.json()
    assert_valid_r4(resp)
    assert resp["type"] == "transaction-response"
    assert [e["response"]["status"] for e in resp["entry"]] == ["201 Created", "201 Created"]
    study_url = (
        resp["entry"][1]["response"]["location"].replace(BASE, "/fhir").split("/_history")[0]
    )
    patient_id = resp["entry"][0]["response"]["location"].split("/")[-3]
    assert client.get(study_url).json()["subject"]["reference"] == f"Patient/{patient_id}"


def test_transaction_is_atomic(client: TestClient) -> None:
    before = client.get("/fhir/Patient?_summary=count").json()["total"]
    bundle = transaction(
        {
            "fullUrl": "urn:uuid:aa",
            "resource": patient(mrn="T1"),
            "request": {"method": "POST", "url": "Patient"},
        },
        {
            "resource": study("urn:uuid:not-in-bundle"),
            "request": {"method": "POST", "url": "ImagingStudy"},
        },
    )
    body = outcome(client.post("/fhir", json=bundle), 400)
    assert "Bundle.entry[1]" in body["issue"][0]["expression"]
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == before
    broken = transaction(
        {"resource": patient(mrn="T2"), "request": {"method": "POST", "url": "Patient"}},
        {
            "resource": study("Patient/does-not-exist"),
            "request": {"method": "POST", "url": "ImagingStudy"},
        },
    )
    outcome(client.post("/fhir", json=broken), 400)
    assert client.get("/fhir/Patient?identifier=T2").json()["total"] == 0


def test_transaction_conditional_and_order(client: TestClient) -> None:
    existing = create(client, patient(mrn="X1"))
    bundle = transaction(
        {"request": {"method": "DELETE", "url": f"Patient/{existing['id']}"}},
        {
            "fullUrl": "urn:uuid:c1",
            "resource": patient(mrn="X2"),
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=X2"},
        },
        {"request": {"method": "GET", "url": "Patient?identifier=X2"}},
    )
    resp = client.post("/fhir", json=bundle).json()
    assert_valid_r4(resp)
    assert resp["entry"][0]["response"]["status"] == "204 No Content"
    assert resp["entry"][2]["resource"]["total"] == 1
    again = client.post("/fhir", json=bundle)  # DELETE of deleted is fine; ifNoneExist matches
    assert again.json()["entry"][1]["response"]["status"] == "200 OK"
    dup = transaction(
        {"resource": patient(id="d"), "request": {"method": "PUT", "url": "Patient/d"}},
        {"resource": patient(id="d"), "request": {"method": "PUT", "url": "Patient/d"}},
    )
    outcome(client.post("/fhir", json=dup), 400)


def test_transaction_patch_entry(client: TestClient) -> None:
    p = create(client, patient())
    ops = base64.b64encode(
        orjson.dumps([{"op": "replace", "path": "/gender", "value": "male"}])
    ).decode()
    bundle = transaction(
        {
            "resource": {
                "resourceType": "Binary",
                "contentType": "application/json-patch+json",
                "data": ops,
            },
            "request": {"method": "PATCH", "url": f"Patient/{p['id']}"},
        }
    )
    assert client.post("/fhir", json=bundle).status_code == 200
    assert client.get(f"/fhir/Patient/{p['id']}").json()["gender"] == "male"


def test_batch_reports_each_entry(client: TestClient) -> None:
    bundle = transaction(
        {"resource": patient(mrn="B1"), "request": {"method": "POST", "url": "Patient"}},
        {
            "resource": {"resourceType": "Patient", "birthDate": "x"},
            "request": {"method": "POST", "url": "Patient"},
        },
        {"request": {"method": "GET", "url": "Patient/missing"}},
        kind="batch",
    )
    resp = client.post("/fhir", json=bundle, headers={"Prefer": "return=representation"}).json()
    assert_valid_r4(resp)
    statuses = [e["response"]["status"] for e in resp["entry"]]
    assert statuses == ["201 Created", "400 Bad Request", "404 Not Found"]
    assert resp["entry"][0]["resource"]["identifier"][0]["value"] == "B1"
    assert resp["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"


def test_bundle_bad_input(client: TestClient) -> None:
    outcome(client.post("/fhir", json=patient()), 400)
    outcome(client.post("/fhir", json={"resourceType": "Bundle", "type": "collection"}), 400)
    outcome(client.post("/fhir", json=transaction({"resource": patient()})), 400)
    bad_method = transaction({"request": {"method": "FETCH", "url": "Patient"}})
    outcome(client.post("/fhir", json=bad_method), 400)
    absolute = transaction(
        {"request": {"method": "GET", "url": "http://elsewhere.example/fhir/Patient/1"}}
    )
    outcome(client.post("/fhir", json=absolute), 400)


# ----------------------------------------------------------------------------- metadata etc.


def test_capability_statement(client: TestClient) -> None:
    cs = client.get("/fhir/metadata").json()
    assert_valid_r4(cs)
    assert cs["fhirVersion"] == "4.0.1"
    types = {r["type"]: r for r in cs["rest"][0]["resource"]}
    assert "ImagingStudy" in types and "Media" in types
    params = {p["name"]: p["type"] for p in types["ImagingStudy"]["searchParam"]}
    assert (
        params["modality"] == "token"
        and params["started"] == "date"
        and params["patient"] == "reference"
    )
    assert {"transaction", "batch"} <= {i["code"] for i in cs["rest"][0]["interaction"]}


def test_health_and_metrics(client: TestClient) -> None:
    create(client, patient())
    h = client.get("/health")
    assert h.status_code == 200 and h.json()["checks"]["store"]["status"] == "pass"
    m = client.get("/metrics").text
    assert "pixelhub_http_requests_total" in m
    assert "pixelhub_resources 1.0" in m
    assert 'route="/fhir/{resource_type}"' in m


def test_base_with_trailing_slash(client: TestClient) -> None:
    create(client, patient())
    assert client.get("/fhir/?_type_ignored=1").json()["type"] == "searchset"
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": []}
    assert client.post("/fhir/", json=bundle).json()["type"] == "batch-response"


def test_unknown_route_is_outcome(client: TestClient) -> None:
    outcome(client.get("/fhir/Patient/1/2/3/4"), 404)
    outcome(client.request("OPTIONS", "/fhir/Patient"), 405)


def test_health_reports_store_failure_and_projector_errors(hub: Any) -> None:
    from hub.errors import OutOfResources

    def broken() -> dict[str, object]:
        raise OutOfResources("disk I/O error")

    with TestClient(hub.app) as c:
        name = hub.runner.projectors[0].name
        hub.runner.errors[name] = "connection refused"
        projectors = c.get("/health").json()["checks"]["projectors"]
        assert projectors[name]["status"] == "fail"
        assert projectors[name]["output"] == "connection refused"
        hub.health.engine.status = broken
        r = c.get("/health")
        assert r.status_code == 503
        body = r.json()
        assert body["status"] == "fail"
        assert body["checks"]["store"] == {"status": "fail", "output": "disk I/O error"}
        assert c.get("/health/live").status_code == 200
        hub.health.draining = True
        assert c.get("/health").json()["checks"]["shutdown"]["output"] == "draining"
