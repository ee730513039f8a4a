"""Elasticsearch goes away (issue 8 item 2): writes still succeed, ``/health`` shows the lag and
the failing projector, and when it comes back indexing catches up with nothing lost. The real
server stays up for the rest of the run; a proxy in front of it is cut and restored."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from fastapi.testclient import TestClient

from tests.e2e.support import TOKEN, make_hub, patient
from tests.support.tcp_proxy import TcpProxy


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def proxied_index_url(elasticsearch_index_url: str) -> Iterator[tuple[TcpProxy, str]]:
    parts = urlsplit(elasticsearch_index_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 9200)
    try:
        yield proxy, urlunsplit(parts._replace(netloc=f"127.0.0.1:{proxy.port}"))
    finally:
        proxy.close()


def test_writes_survive_an_elasticsearch_outage_and_indexing_catches_up(
    tmp_path: Path, postgres_database: str, proxied_index_url: tuple[TcpProxy, str]
) -> None:
    proxy, search_url = proxied_index_url
    hub = make_hub(
        tmp_path / "data",
        database_url=postgres_database,
        elasticsearch_url=search_url,
        audit_enabled=False,
    )
    try:
        hub.runner.retry_seconds = 0.1
        hub.runner.poll_seconds = 0.1
        with TestClient(hub.app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            first = client.post("/fhir/Patient", json=patient(mrn="before"))
            assert first.status_code == 201
            hub.runner.catch_up()
            hub.engine.search_index.refresh()  # type: ignore[attr-defined]
            assert client.get("/fhir/Patient?identifier=before").json()["total"] == 1

            proxy.cut()
            ids = []
            for i in range(5):  # the store of record takes every write meanwhile
                r = client.post("/fhir/Patient", json=patient(mrn=f"during-{i}"))
                assert r.status_code == 201
                ids.append(r.json()["id"])
            hub.runner.start()  # the projector now fails batch after batch, and says so

            def search_index_check() -> dict[str, object]:
                check: dict[str, object] = client.get("/health").json()["checks"]["projectors"][
                    "search-index"
                ]
                return check

            wait_for(lambda: search_index_check()["status"] == "fail", "the failure to show")
            health = client.get("/health")
            assert health.status_code == 503
            assert int(health.json()["checks"]["projectors"]["search-index"]["lag"]) >= 5
            assert client.get(f"/fhir/Patient/{ids[0]}").status_code == 200  # reads still work

            proxy.restore()  # the projector retries on its own and catches up
            wait_for(lambda: search_index_check() == {"status": "pass", "lag": 0}, "catching up")
            hub.engine.search_index.refresh()  # type: ignore[attr-defined]
            found = client.get(
                "/fhir/Patient?identifier=during-0,during-1,during-2,during-3,during-4"
            )
            assert sorted(e["resource"]["id"] for e in found.json()["entry"]) == sorted(ids)
    finally:
        hub.close()
