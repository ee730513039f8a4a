"""Federated search across three real hubs (issue 12, items 2, 3 and 5)."""

from __future__ import annotations

from typing import Any

from tests.e2e.support import assert_valid_r4
from tests.integration.federation.conftest import NATIONAL, NATIONAL_ID, Federation

SITE = "urn:pixelhub:federation:site"


def matches(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def outcomes(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "outcome"]


def sites(entry: dict[str, Any]) -> list[str]:
    return [t["code"] for t in entry["resource"]["meta"]["tag"] if t["system"] == SITE]


def study_uid(entry: dict[str, Any]) -> str:
    return str(entry["resource"]["identifier"][0]["value"]).removeprefix("urn:oid:")


def test_one_query_finds_the_patients_studies_at_every_site(federation: Federation) -> None:
    r = federation.search("ImagingStudy", {"patient": federation.patient})
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert_valid_r4(bundle)
    found = matches(bundle)
    # newest first; the CT held at A and B appears once, tagged with both sites
    assert [study_uid(e) for e in found] == ["1.2.1", "1.2.2", "1.2.3"]
    assert bundle["total"] == 3
    assert sites(found[0]) == ["local", "B"]
    assert sites(found[1]) == ["B"] and sites(found[2]) == ["C"]
    assert found[0]["fullUrl"].startswith(f"{federation.a.url}/fhir/ImagingStudy/")
    assert found[1]["fullUrl"].startswith(f"{federation.b.url}/fhir/ImagingStudy/")
    assert found[2]["fullUrl"].startswith(f"{federation.c.url}/fhir/ImagingStudy/")
    # the someone-else at B with the same name and birth date is never matched
    assert "1.2.9" not in [study_uid(e) for e in found]
    assert outcomes(bundle) == []


def test_partner_studies_keep_their_sites_endpoint(federation: Federation) -> None:
    bundle = federation.search("ImagingStudy", {"patient": federation.patient}).json()
    included = {
        e["fullUrl"]: e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "include"
    }
    for entry in matches(bundle):
        reference = entry["resource"]["endpoint"][0]["reference"]
        site_base = entry["fullUrl"].split("/fhir/")[0]
        assert reference.startswith(f"{site_base}/fhir/Endpoint/")
        assert included[reference]["address"] == f"{site_base}/dicomweb"
        assert entry["resource"]["subject"]["reference"].startswith(f"{site_base}/fhir/Patient/")


def test_the_patient_named_by_identifier(federation: Federation) -> None:
    r = federation.search("ImagingStudy", {"patient.identifier": f"{NATIONAL}|{NATIONAL_ID}"})
    assert r.status_code == 200, r.text
    assert [study_uid(e) for e in matches(r.json())] == ["1.2.1", "1.2.2", "1.2.3"]
    r = federation.search("Patient", {"identifier": f"{NATIONAL}|{NATIONAL_ID}"})
    assert r.status_code == 200, r.text
    assert sorted(sites(e)[0] for e in matches(r.json())) == ["B", "C", "local"]


def test_documents_and_reports_too(federation: Federation) -> None:
    docs = federation.search("DocumentReference", {"patient": federation.patient}).json()
    assert [sites(e) for e in matches(docs)] == [["C"]]
    reports = federation.search("DiagnosticReport", {"patient": federation.patient}).json()
    assert [sites(e) for e in matches(reports)] == [["local"]]
    assert outcomes(reports) == []


def test_demographics_never_name_the_patient(federation: Federation) -> None:
    for resource_type, params in [
        ("ImagingStudy", {"patient.name": "Garcia"}),
        ("ImagingStudy", {"patient.birthdate": "1968-04-12"}),
        ("Patient", {"family": "Garcia"}),
        ("Patient", {"name:exact": "Maria Garcia"}),
        ("Patient", {"_text": "Garcia"}),
    ]:
        r = federation.search(resource_type, params)
        assert r.status_code == 400, (params, r.text)
        assert "never by demographics" in r.json()["issue"][0]["diagnostics"]
    r = federation.search("ImagingStudy", {"patient.identifier": NATIONAL_ID})  # no system
    assert r.status_code == 400
    assert "system|value" in r.json()["issue"][0]["diagnostics"]


def test_partners_chosen_by_name(federation: Federation) -> None:
    only_b = federation.search("ImagingStudy", {"patient": federation.patient, "_partners": "B"})
    assert [sites(e) for e in matches(only_b.json())] == [["B"], ["B"]]
    local_c = federation.search(
        "ImagingStudy", {"patient": federation.patient, "_partners": "local,C"}
    ).json()
    assert [sites(e) for e in matches(local_c)] == [["local"], ["C"]]
    r = federation.search("ImagingStudy", {"patient": federation.patient, "_partners": "Z"})
    assert r.status_code == 400 and "no enabled partner named Z" in r.text


def test_paging_through_the_merged_result(federation: Federation) -> None:
    r = federation.search("ImagingStudy", {"patient": federation.patient, "_count": "1"})
    seen = []
    pages = 0
    with federation.a.http() as c:
        while True:
            bundle = r.json()
            assert bundle["total"] == 3
            seen += [study_uid(e) for e in matches(bundle)]
            pages += 1
            nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
            if not nxt:
                break
            r = c.get(nxt[0])
            assert r.status_code == 200, r.text
        previous = [link["url"] for link in bundle["link"] if link["relation"] == "previous"]
        assert [study_uid(e) for e in matches(c.get(previous[0]).json())] == ["1.2.2"]
    assert pages == 3 and seen == ["1.2.1", "1.2.2", "1.2.3"]
    # a page link is the requester's own: another token gets 410, as for an expired one
    other = federation.a.token("system/ImagingStudy.rs")
    with federation.a.http(other) as c:
        assert c.get(nxt_first(federation)).status_code == 410


def nxt_first(federation: Federation) -> str:
    bundle = federation.search("ImagingStudy", {"patient": federation.patient, "_count": "1"})
    return str(next(link["url"] for link in bundle.json()["link"] if link["relation"] == "next"))


def test_a_loop_between_hubs_is_cut(federation: Federation) -> None:
    r = federation.search(
        "ImagingStudy", {"patient": federation.patient}, Via="1.1 site-b, 1.1 site-a"
    )
    assert r.status_code == 508
    assert r.json()["issue"][0]["code"] == "too-costly"
    r = federation.search(
        "ImagingStudy", {"patient": federation.patient}, Via="1.1 x, 1.1 y, 1.1 z"
    )
    assert r.status_code == 508 and "federation_max_hops" in r.text


def test_only_federated_types(federation: Federation) -> None:
    r = federation.search("ServiceRequest", {"patient": federation.patient})
    assert r.status_code == 404
    assert "Federated search covers" in r.text
