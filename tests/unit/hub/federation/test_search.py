"""Fan-out, merge and paging of ``hub.federation.search`` against partners made of plain
functions (the ``PartnerHttp`` port), over a real in-process hub for the local part."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.auth import Principal
from hub.composition import Hub
from hub.errors import Gone
from hub.federation import BackendTokens, FederatedSearch, FederationOptions, Partner, PartnerStore
from hub.federation.http import Answer
from hub.federation.pages import PageStore
from hub.federation.search import FederatedResult
from tests.e2e.support import BASE, assert_valid_r4, make_hub, patient, study

ADMIN = Principal("admin", scopes=frozenset({"*"}))
NATIONAL = "urn:oid:2.16.840.1.113883.19.5"  # the identifier e2e's patient() carries
Handler = Callable[[httpx.Request], httpx.Response]


def bundle(*entries: dict[str, Any], next_url: str | None = None) -> dict[str, Any]:
    links = [{"relation": "next", "url": next_url}] if next_url else []
    return {"resourceType": "Bundle", "type": "searchset", "link": links, "entry": list(entries)}


def match(resource: dict[str, Any], mode: str = "match") -> dict[str, Any]:
    return {"resource": resource, "search": {"mode": mode}}


class Partners:
    """Partner sites answered by ``routes[host]``, with a token endpoint each: the
    ``PartnerHttp`` port as a plain function of an httpx request (httpx only models it)."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.tokens_issued = 0
        self.requests: list[httpx.Request] = []

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.endswith("/token"):
            self.tokens_issued += 1
            return httpx.Response(
                200,
                json={
                    "access_token": f"t{self.tokens_issued}",
                    "token_type": "Bearer",
                    "expires_in": 300,
                },
            )
        return self.routes[request.url.host](request)

    async def request(
        self, method: str, url: str, *, headers: Any, form: Any = None, limit: int
    ) -> Answer:
        response = self.answer(httpx.Request(method, url, headers=headers, data=form))
        return Answer(response.status_code, response.read())

    async def aclose(self) -> None:
        pass


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    made = make_hub(tmp_path / "hub")
    yield made
    made.close()


@pytest.fixture
def local_patient(hub: Hub) -> str:
    created = hub.service.create(ADMIN, "Patient", patient())
    ref = f"Patient/{created.stored.id}"
    hub.service.create(ADMIN, "ImagingStudy", study(ref, "CT", "2024-01-01T00:00:00Z", "1.2.1"))
    return ref


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def federated(
    hub: Hub,
    tmp_path: Path,
    partners: Partners,
    *names: str,
    pages: PageStore | None = None,
    **options: Any,
) -> FederatedSearch:
    store = PartnerStore(tmp_path / "federation" / "partners.json")
    for name in names:
        store.put(
            Partner(
                name,
                f"https://{name}.example/fhir",
                "me",
                token_url=f"https://{name}.example/token",
                timeout=1.0,
            )
        )
    return FederatedSearch(
        hub.service,
        store,
        BackendTokens(store.key_file),
        FederationOptions(base_url=BASE, site_id="site-a", **options),
        http=partners,
        pages=pages,
    )


def run(search: FederatedSearch, params: list[tuple[str, str]], **headers: str) -> FederatedResult:
    async def go() -> FederatedResult:
        try:
            return await search.search(ADMIN, "ImagingStudy", params, headers)
        finally:
            await search.aclose()

    return asyncio.run(go())


def remote_study(uid: str, started: str, **extra: Any) -> dict[str, Any]:
    return {**study("Patient/r1", "MR", started, uid), "id": f"s-{uid}", **extra}


def uids(result: FederatedResult) -> list[str]:
    return [
        e["resource"]["identifier"][0]["value"][len("urn:oid:") :]
        for e in result.bundle["entry"]
        if e["search"]["mode"] == "match"
    ]


def issues(result: FederatedResult) -> list[dict[str, Any]]:
    return [
        e["resource"]["issue"][0]
        for e in result.bundle["entry"]
        if e["search"]["mode"] == "outcome"
    ]


def test_merged_newest_first_deduplicated_and_absolute(
    hub: Hub, tmp_path: Path, local_patient: str
) -> None:
    partners = Partners()
    partners.routes["b.example"] = lambda r: httpx.Response(
        200,
        json=bundle(
            match(remote_study("1.2.1", "2024-01-01T00:00:00Z")),
            match(
                remote_study(
                    "1.2.2", "2025-01-01T00:00:00Z", endpoint=[{"reference": "Endpoint/e1"}]
                )
            ),
            match(
                {
                    "resourceType": "Endpoint",
                    "id": "e1",
                    "status": "active",
                    "connectionType": {"code": "dicom-wado-rs"},
                    "payloadType": [{"text": "x"}],
                    "address": "https://b.example/dicomweb",
                },
                "include",
            ),
        ),
    )
    result = run(federated(hub, tmp_path, partners, "b"), [("patient", local_patient)])
    assert_valid_r4(result.bundle)
    assert uids(result) == ["1.2.2", "1.2.1"]
    first = result.bundle["entry"][0]
    assert first["fullUrl"] == "https://b.example/fhir/ImagingStudy/s-1.2.2"
    assert first["resource"]["subject"]["reference"] == "https://b.example/fhir/Patient/r1"
    assert first["resource"]["endpoint"][0]["reference"] == "https://b.example/fhir/Endpoint/e1"
    included = [e for e in result.bundle["entry"] if e["search"]["mode"] == "include"]
    assert [e["fullUrl"] for e in included] == ["https://b.example/fhir/Endpoint/e1"]
    shared = result.bundle["entry"][1]["resource"]["meta"]["tag"]
    assert [t["code"] for t in shared] == ["local", "b"]
    # the partner was asked by the patient's identifier, with the hop and the requester
    asked = next(r for r in partners.requests if r.url.path == "/fhir/ImagingStudy")
    assert asked.url.params["patient.identifier"] == f"{NATIONAL}|M1"
    assert asked.url.params["_include"] == "ImagingStudy:endpoint"
    assert asked.headers["via"] == "1.1 site-a"
    assert asked.headers["authorization"] == "Bearer t1"
    assert "x-pixelhub-ihe-iua" in asked.headers
    assert result.patients == [local_patient]


def test_next_links_are_followed_on_the_partners_origin_only(
    hub: Hub, tmp_path: Path, local_patient: str
) -> None:
    partners = Partners()
    pages = {
        "1": bundle(
            match(remote_study("1.2.5", "2020-01-01")),
            next_url="https://b.example/fhir/ImagingStudy?page=2",
        ),
        "2": bundle(
            match(remote_study("1.2.6", "2019-01-01")),
            next_url="https://evil.example/fhir/ImagingStudy?page=3",
        ),
    }
    partners.routes["b.example"] = lambda r: httpx.Response(
        200, json=pages[r.url.params.get("page", "1")]
    )
    result = run(federated(hub, tmp_path, partners, "b"), [("patient", local_patient)])
    assert uids(result) == ["1.2.1"]  # b's two pages are dropped with it
    assert [(i["code"], "leaves its own origin" in i["diagnostics"]) for i in issues(result)] == [
        ("security", True)
    ]
    assert not any(r.url.host == "evil.example" for r in partners.requests)


def test_a_partner_result_is_capped(hub: Hub, tmp_path: Path, local_patient: str) -> None:
    partners = Partners()
    partners.routes["b.example"] = lambda r: httpx.Response(
        200,
        json=bundle(
            *[match(remote_study(f"1.3.{i}", "2020-01-01")) for i in range(3)],
            next_url="https://b.example/fhir/ImagingStudy?more",
        ),
    )
    result = run(
        federated(hub, tmp_path, partners, "b", max_results=3), [("patient", local_patient)]
    )
    assert len(uids(result)) == 4
    assert [(i["severity"], i["code"]) for i in issues(result)] == [("warning", "too-costly")]


@pytest.mark.parametrize(
    ("answer", "code", "said"),
    [
        (
            httpx.Response(
                500,
                json={"resourceType": "OperationOutcome", "issue": [{"diagnostics": "db down"}]},
            ),
            "transient",
            "HTTP 500: db down",
        ),
        (httpx.Response(403, json={}), "security", "HTTP 403"),
        (httpx.Response(200, content=b"[]"), "processing", "not a searchset Bundle"),
        (
            httpx.Response(200, json=bundle(match({"resourceType": "Patient", "id": "p"}))),
            "processing",
            "not valid",
        ),
    ],
)
def test_bad_answers_become_outcome_entries(
    hub: Hub, tmp_path: Path, local_patient: str, answer: httpx.Response, code: str, said: str
) -> None:
    partners = Partners()
    partners.routes["b.example"] = lambda r: answer
    result = run(
        federated(hub, tmp_path, partners, "b", max_response_bytes=1000),
        [("patient", local_patient)],
    )
    assert uids(result) == ["1.2.1"]
    (issue,) = issues(result)
    assert issue["code"] == code and said in issue["diagnostics"], issue


def test_an_expired_token_is_renewed_once(hub: Hub, tmp_path: Path, local_patient: str) -> None:
    partners = Partners()
    partners.routes["b.example"] = lambda r: (
        httpx.Response(401)
        if r.headers["authorization"] == "Bearer t1"
        else httpx.Response(200, json=bundle(match(remote_study("1.2.7", "2021-01-01"))))
    )
    result = run(federated(hub, tmp_path, partners, "b"), [("patient", local_patient)])
    assert uids(result) == ["1.2.1", "1.2.7"] and partners.tokens_issued == 2
    partners.routes["b.example"] = lambda r: httpx.Response(401)
    result = run(federated(hub, tmp_path, partners, "b"), [("patient", local_patient)])
    assert [i["code"] for i in issues(result)] == ["security"]


def test_a_partner_without_the_patients_identifier_is_not_asked(
    hub: Hub, tmp_path: Path, local_patient: str
) -> None:
    partners = Partners()
    search = federated(hub, tmp_path, partners)
    search.partners.put(
        Partner("b", "https://b.example/fhir", "me", identifier_systems=("urn:elsewhere",))
    )
    result = run(search, [("patient", local_patient)])
    assert uids(result) == ["1.2.1"]
    assert [(i["severity"], i["code"]) for i in issues(result)] == [("information", "not-found")]
    assert partners.requests == []


def test_pages_of_the_merged_result_expire(hub: Hub, tmp_path: Path, local_patient: str) -> None:
    partners = Partners()
    partners.routes["b.example"] = lambda r: httpx.Response(
        200, json=bundle(*[match(remote_study(f"1.4.{i}", f"201{i}-01-01")) for i in range(4)])
    )
    clock = Clock()
    pages = PageStore(tmp_path / "pages", 60, clock=clock)
    search = federated(hub, tmp_path, partners, "b", pages=pages)
    first = run(search, [("patient", local_patient), ("_count", "2")])
    assert first.bundle["total"] == 5 and len(uids(first)) == 2
    next_url = next(link["url"] for link in first.bundle["link"] if link["relation"] == "next")
    params = list(httpx.URL(next_url).params.multi_items())
    second = run(search, params)
    assert uids(first) == ["1.2.1", "1.4.3"] and uids(second) == ["1.4.2", "1.4.1"]
    clock.now += 61
    with pytest.raises(Gone):
        run(search, params)
    assert json.dumps(first.bundle)  # plain JSON throughout
