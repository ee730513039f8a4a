"""Security and audit of federation (issue 12, items 1, 3 and 4): what a partner token may do,
patient-scoped tokens, the AuditEvents on both sides, PIXm, and the partners CLI."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import jwt

from hub.config import Settings
from hub.federation import BackendTokens, Partner, PartnerStore
from hub.federation.http import AiohttpPartnerHttp
from tests.integration.dicomweb.conftest import WebHub
from tests.integration.federation.conftest import (
    FEDERATED_SCOPES,
    MRN,
    NATIONAL,
    NATIONAL_ID,
    Federation,
    cli,
    journal,
)
from tests.integration.federation.test_federated_search import matches, sites, study_uid


def token_of_a_at(federation: Federation, partner: str) -> str:
    """The access token hub A holds at ``partner``, fetched as A fetches it."""
    settings = Settings(data_dir=federation.a.data_dir)
    store = PartnerStore(settings.partners_file)
    found = store.get(partner)
    assert isinstance(found, Partner)

    async def fetch() -> str:
        client = AiohttpPartnerHttp()
        try:
            return await BackendTokens(store.key_file).token(client, found)
        finally:
            await client.aclose()

    return asyncio.run(fetch())


def test_a_partner_token_reads_only_the_federated_types(federation: Federation) -> None:
    token = token_of_a_at(federation, "B")
    with federation.b.http(token) as c:
        assert c.get("/fhir/ImagingStudy", params={"_count": "1"}).status_code == 200
        assert c.get("/fhir/Patient", params={"_count": "1"}).status_code == 200
        assert c.get("/fhir/ServiceRequest").status_code == 403
        assert c.get("/fhir/AuditEvent").status_code == 403
        created = c.post(
            "/fhir/ImagingStudy",
            json={
                "resourceType": "ImagingStudy",
                "status": "available",
                "subject": {"reference": "Patient/x"},
            },
        )
        assert created.status_code == 403
    granted = jwt.decode(token, options={"verify_signature": False})["scope"].split()
    assert sorted(granted) == sorted(FEDERATED_SCOPES.split())  # read-only, federated types


def test_unauthenticated_federated_search_is_refused(federation: Federation) -> None:
    with httpx.Client(base_url=federation.a.url) as c:
        r = c.get("/fhir/federated/ImagingStudy", params={"patient": federation.patient})
    assert r.status_code == 401


def test_a_patient_token_federates_only_its_own_patient(federation: Federation) -> None:
    own = federation.patient.split("/")[1]
    token = federation.a.token("patient/ImagingStudy.rs patient/Endpoint.rs", patient=own)
    r = federation.search("ImagingStudy", {}, token=token)  # the launch patient, at every site
    assert r.status_code == 200, r.text
    assert [study_uid(e) for e in matches(r.json())] == ["1.2.1", "1.2.2", "1.2.3"]
    r = federation.search(
        "ImagingStudy", {"patient.identifier": f"{NATIONAL}|987-65-4321"}, token=token
    )
    assert r.status_code == 403
    other = federation.a.token("patient/ImagingStudy.rs", patient="someone-else")
    assert (
        federation.search("ImagingStudy", {"patient": federation.patient}, token=other).status_code
        == 403
    )


def _agents(event: dict[str, Any]) -> list[dict[str, Any]]:
    return list(event.get("agent", []))


def test_the_audit_trail_on_both_sides(federation: Federation) -> None:
    token = federation.a.token("user/ImagingStudy.rs user/Patient.rs user/Endpoint.rs")
    r = federation.search(
        "ImagingStudy", {"patient": federation.patient, "_count": "7"}, token=token
    )
    assert r.status_code == 200
    # A: one event for the federated search, naming the patient, the query and each site
    mine = [
        e
        for e in journal(federation.a)
        if any("_count=7" in _query(x) for x in e.get("entity", []))
    ]
    assert len(mine) == 1
    event = mine[0]
    assert event["subtype"][0]["code"] == "search-type" and event["outcome"] == "0"
    assert event["purposeOfEvent"][0]["coding"][0]["code"] == "TREAT"
    entities = event["entity"]
    assert {"reference": federation.patient} in [e["what"] for e in entities if "what" in e]
    partners = {e["what"]["identifier"]["value"]: e for e in entities if e["role"]["code"] == "17"}
    assert set(partners) == {"B", "C"}
    assert partners["B"]["what"]["reference"] == "Endpoint/partner-B"
    assert partners["B"]["description"].startswith("answered 2 matches")
    # B: the search it answered names hub A's client and the user A asserted, with the purpose
    theirs = [
        e
        for e in journal(federation.b)
        if any(a["who"].get("identifier", {}).get("value") == "site-a|u" for a in _agents(e))
    ]
    assert theirs, "B did not record the originating user"
    asked = theirs[-1]
    user = next(a for a in _agents(asked) if a["who"]["identifier"]["value"] == "site-a|u")
    assert user["requestor"] is True
    assert user["purposeOfUse"][0]["coding"][0]["code"] == "TREAT"
    assert asked["purposeOfEvent"][0]["coding"][0]["code"] == "TREAT"
    hub_client = [
        a
        for a in _agents(asked)
        if a["who"].get("identifier", {}).get("system") == "urn:pixelhub:client"
    ]
    assert hub_client, "B did not record hub A's client"


def _query(entity: dict[str, Any]) -> str:
    import base64

    return base64.b64decode(entity["query"]).decode() if "query" in entity else ""


def test_pixm_cross_reference_query(federation: Federation) -> None:
    c_hub: WebHub = federation.c
    with c_hub.http() as c:
        r = c.get(
            "/fhir/Patient/$ihe-pix",
            params={"sourceIdentifier": f"{NATIONAL}|{NATIONAL_ID}", "targetSystem": MRN["C"]},
        )
        assert r.status_code == 200, r.text
        parameters = r.json()["parameter"]
        assert {
            "name": "targetIdentifier",
            "valueIdentifier": {"system": MRN["C"], "value": "C-1001"},
        } in parameters
        assert any(p["name"] == "targetId" for p in parameters)
        unknown = c.get(
            "/fhir/Patient/$ihe-pix", params={"sourceIdentifier": f"{NATIONAL}|000-00-0000"}
        )
        assert unknown.status_code == 404
        domain = c.get("/fhir/Patient/$ihe-pix", params={"sourceIdentifier": "urn:oid:9.9|1"})
        assert domain.status_code == 400 and domain.json()["issue"][0]["code"] == "code-invalid"
        target = c.get(
            "/fhir/Patient/$ihe-pix",
            params={"sourceIdentifier": f"{NATIONAL}|{NATIONAL_ID}", "targetSystem": "urn:oid:9.9"},
        )
        assert target.status_code == 403
        assert c.get("/fhir/Patient/$ihe-pix").status_code == 400


def test_partners_cli_and_their_resources(federation: Federation) -> None:
    a = federation.a
    listing = cli(a.data_dir, "partners", "list")
    assert "B\tenabled\t" in listing and "C\tenabled\t" in listing
    with a.http() as c:
        endpoint = c.get("/fhir/Endpoint/partner-C").json()
        assert endpoint["status"] == "active" and endpoint["address"] == f"{federation.c.url}/fhir"
        assert c.get("/fhir/Organization/partner-C").json()["name"] == "Hospital C"
    cli(a.data_dir, "partners", "disable", "C")
    try:
        with a.http() as c:
            assert c.get("/fhir/Endpoint/partner-C").json()["status"] == "off"
        bundle = federation.search("ImagingStudy", {"patient": federation.patient}).json()
        assert [sites(e) for e in matches(bundle)] == [["local", "B"], ["B"]]
    finally:
        cli(a.data_dir, "partners", "enable", "C")
    bundle = federation.search("ImagingStudy", {"patient": federation.patient}).json()
    assert len(matches(bundle)) == 3
