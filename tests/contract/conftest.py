"""The contract suite: one set of tests, written only against the ports (``Engine``,
``Repository``, ``SearchIndex``, ``ChangeFeed``), run against every storage engine.

Resources go in as realistic R4 JSON through ``hub.search.extract`` and searches as query strings
through ``hub.search.query``, so the whole pipeline is under test. To add an engine, append a
factory to ``ENGINE_FACTORIES``: it receives a fresh temporary directory and the test's request
(for the run's server fixtures) and returns an open ``Engine``; the fixture closes it. An engine
with an asynchronous search index is settled (``settle``) before every search.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
import pytest

from hub.engines import open_engine
from hub.ports import Engine, StoredResource
from hub.projectors import ProjectorRunner, SearchIndexProjector
from hub.search.extract import extract_index_entries
from hub.search.model import IndexEntry, SearchQuery, SearchResult
from hub.search.query import parse_search

BASE_URL = "http://hub.example/fhir"


def _sqlite(tmp: Path, request: pytest.FixtureRequest) -> Engine:
    return open_engine("sqlite://", data_dir=str(tmp))  # found by its entry point, as in serve


def _postgresql(tmp: Path, request: pytest.FixtureRequest) -> Engine:
    """A fresh database on the run's PostgreSQL server (tests/support/postgres.py)."""
    url: str = request.getfixturevalue("postgres_database")
    return open_engine(url, data_dir=str(tmp))


def _postgresql_elasticsearch(tmp: Path, request: pytest.FixtureRequest) -> Engine:
    """PostgreSQL as the store of record, searches answered by Elasticsearch (a fresh index
    prefix on the run's server, tests/support/elasticsearch.py)."""
    url: str = request.getfixturevalue("postgres_database")
    search_url: str = request.getfixturevalue("elasticsearch_index_url")
    return open_engine(url, data_dir=str(tmp), search_url=search_url)


# (id, factory): every contract test runs once per engine, with identical expectations.
ENGINE_FACTORIES: list[tuple[str, Callable[[Path, pytest.FixtureRequest], Engine]]] = [
    ("sqlite", _sqlite),
    ("postgresql", _postgresql),
    ("postgresql+elasticsearch", _postgresql_elasticsearch),
]


@pytest.fixture(params=[f for _, f in ENGINE_FACTORIES], ids=[n for n, _ in ENGINE_FACTORIES])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    factory: Callable[[Path, pytest.FixtureRequest], Engine] = request.param
    eng = factory(tmp_path / "engine", request)
    try:
        yield eng
    finally:
        eng.close()


def settle(engine: Engine) -> None:
    """Bring an asynchronous search index up to the change feed, as its projector would, and
    make what it indexed visible to searches (``refresh``, where the index has one)."""
    if engine.search_index.synchronous:
        return
    runner = ProjectorRunner(
        engine.change_feed, [SearchIndexProjector(engine.repository, engine.search_index)]
    )
    runner.catch_up()
    refresh = getattr(engine.search_index, "refresh", None)
    if refresh is not None:
        refresh()


class Store:
    """Test helper over an ``Engine``: write R4 JSON, search with query strings."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def put(self, *resources: dict[str, Any]) -> list[StoredResource]:
        """Create or update each resource in one transaction, indexing it as the hub does."""
        with self.engine.repository.transaction() as tx:
            return [
                tx.put(r["resourceType"], r["id"], r, extract_index_entries(r)) for r in resources
            ]

    def put_entries(
        self, resource_type: str, id: str, entries: Sequence[IndexEntry]
    ) -> StoredResource:
        """Store a minimal resource with hand-made index entries (for parameter types the served
        resources do not have, such as number)."""
        with self.engine.repository.transaction() as tx:
            stored = tx.put(resource_type, id, {"resourceType": resource_type, "id": id}, entries)
        if not self.engine.search_index.synchronous:  # the projector would re-extract: none
            settle(self.engine)
            self.engine.search_index.apply([((resource_type, id), entries, stored.last_updated)])
        return stored

    def delete(self, resource_type: str, id: str) -> StoredResource | None:
        with self.engine.repository.transaction() as tx:
            return tx.delete(resource_type, id)

    def query(self, resource_type: str | None, qs: str) -> SearchQuery:
        return parse_search(
            resource_type, parse_qsl(qs, keep_blank_values=True), strict=True, base_url=BASE_URL
        )

    def search(self, resource_type: str | None, qs: str) -> SearchResult:
        return self.run(self.query(resource_type, qs))

    def run(self, query: SearchQuery) -> SearchResult:
        """Search with a parsed (or hand-built) query, once the index has settled."""
        settle(self.engine)
        return self.engine.search_index.search(query)

    def ids(self, resource_type: str | None, qs: str) -> list[str]:
        """The ids of the matches, in the order returned."""
        return [i for _, i in self.search(resource_type, qs).matches]

    def idset(self, resource_type: str | None, qs: str) -> set[str]:
        return set(self.ids(resource_type, qs))

    def json(self, resource_type: str, id: str) -> dict[str, Any]:
        found = self.engine.repository.read(resource_type, id)
        assert found is not None and found.data is not None
        data: dict[str, Any] = orjson.loads(found.data)
        return data


@pytest.fixture
def store(engine: Engine) -> Store:
    return Store(engine)


# ------------------------------------------------------------------------------------------------
# A small imaging record, realistic R4 JSON, shared by the search tests.
# ------------------------------------------------------------------------------------------------
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def _series(*modalities: str) -> list[dict[str, Any]]:
    return [
        {"uid": f"1.2.840.99.{i}", "modality": {"system": DCM, "code": m}}
        for i, m in enumerate(modalities)
    ]


def _obs(id: str, subject: str, code: str, **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "subject": {"reference": subject},
        "code": {"coding": [{"system": LOINC, "code": code}]},
        **value,
    }


DATASET: list[dict[str, Any]] = [
    {"resourceType": "Organization", "id": "org1", "name": "General Hospital"},
    {"resourceType": "Organization", "id": "org2", "name": "City Clinic"},
    {"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "House"}]},
    {
        "resourceType": "Patient",
        "id": "p1",
        "active": True,
        "identifier": [
            {
                "type": {"coding": [{"system": V2_0203, "code": "MR"}]},
                "system": "urn:oid:1.2.3",
                "value": "MRN1",
            }
        ],
        "name": [{"family": "Müller", "given": ["Ånna"]}],
        "gender": "female",
        "birthDate": "1970-05-01",
        "address": [{"city": "São Paulo"}],
        "generalPractitioner": [{"reference": "Practitioner/dr1"}],
        "managingOrganization": {"reference": "Organization/org1"},
    },
    {
        "resourceType": "Patient",
        "id": "p2",
        "identifier": [{"system": "urn:oid:1.2.3", "value": "MRN2"}],
        "name": [{"family": "Smith", "given": ["John"]}],
        "gender": "male",
        "birthDate": "1985",
        "managingOrganization": {"reference": "Organization/org2"},
    },
    {
        "resourceType": "Patient",
        "id": "p3",
        "identifier": [{"system": "urn:oid:9.9", "value": "MRN1"}],
        "name": [{"family": "Mullins", "given": ["Kate"]}],
        "gender": "female",
    },
    {"resourceType": "Patient", "id": "p4", "name": [{"family": "Zed"}]},
    {
        "resourceType": "ImagingStudy",
        "id": "s1",
        "status": "available",
        "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:1.2.840.1"}],
        "subject": {"reference": "Patient/p1"},
        "started": "2021-03-04T10:00:00Z",
        "referrer": {"reference": "Practitioner/dr1"},
        "series": _series("CT", "PT"),
    },
    {
        "resourceType": "ImagingStudy",
        "id": "s2",
        "status": "available",
        "subject": {"reference": "Patient/p1"},
        "started": "2019-06-01",
        "series": _series("MR"),
    },
    {
        "resourceType": "ImagingStudy",
        "id": "s3",
        "status": "registered",
        "subject": {"reference": "Patient/p2/_history/1"},
        "started": "2022-01-15T08:30:00+01:00",
        "series": _series("CT"),
    },
    {
        "resourceType": "ImagingStudy",
        "id": "s4",
        "status": "cancelled",
        "subject": {"reference": "Device/dev1"},
        "series": _series("US"),
    },
    {
        "resourceType": "DocumentReference",
        "id": "d1",
        "status": "current",
        "type": {
            "coding": [{"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}]
        },
        "subject": {"reference": "Patient/p1"},
        "date": "2021-03-05T12:00:00Z",
        "author": [{"reference": "Organization/org1"}],
        "description": "CT chest report",
        "relatesTo": [{"code": "appends", "target": {"reference": "DocumentReference/d2"}}],
        "content": [{"attachment": {"url": "http://hub.example/files/d1.pdf"}}],
        "context": {"period": {"start": "2021-01-01", "end": "2021-12-31"}},
    },
    {
        "resourceType": "DocumentReference",
        "id": "d2",
        "status": "superseded",
        "type": {"coding": [{"system": LOINC, "code": "11488-4"}], "text": "Consult note"},
        "subject": {"reference": "Patient/p2"},
        "date": "2020-01-01T00:00:00Z",
        "author": [{"identifier": {"system": "urn:npi", "value": "999"}}],
        "custodian": {"reference": "http://other.example/fhir/Organization/ext1"},
        "description": "Échographie abdominale",
        "content": [{"attachment": {"url": "urn:uuid:0f3ad3b4-0000-4000-8000-000000000001"}}],
    },
    {
        "resourceType": "DocumentReference",
        "id": "d3",
        "status": "current",
        "subject": {"reference": "Patient/p3"},
        "content": [{"attachment": {"url": "http://hub.example/files/d3.jpg"}}],
        "context": {"period": {"start": "2022-01-01"}},
    },
    _obs("o1", "Patient/p1", "8867-4", valueQuantity={"value": 72, "system": UCUM, "code": "/min"}),
    _obs(
        "o2", "Patient/p2", "29463-7", valueQuantity={"value": 80.5, "system": UCUM, "code": "kg"}
    ),
    _obs(
        "o3",
        "Patient/p1",
        "85354-9",
        component=[
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                "valueQuantity": {"value": 120, "system": UCUM, "code": "mm[Hg]"},
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                "valueQuantity": {"value": 80, "system": UCUM, "code": "mm[Hg]"},
            },
        ],
    ),
    _obs("o4", "Patient/p3", "29463-7", valueQuantity={"value": 150, "unit": "lb"}),
    {"resourceType": "Device", "id": "dev1", "url": "http://devices.example/ct/scanner-1"},
    {"resourceType": "Device", "id": "dev2", "url": "http://devices.example/mr/scanner-2"},
]


@pytest.fixture
def loaded(store: Store) -> Store:
    """``store`` holding ``DATASET``."""
    store.put(*DATASET)
    return store
