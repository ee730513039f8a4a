"""Two ``pixelhub serve`` replicas on one PostgreSQL + Elasticsearch (issue 8 item 5): concurrent
writers on both, the projector leader killed mid-run, the other takes over; nothing acknowledged
is lost and nothing is indexed twice. Real servers: tests/support/postgres.py and
tests/support/elasticsearch.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from hub.engines import open_engine

TOKEN = "replica-test-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


@contextmanager
def replica(
    data_dir: Path, database: str, search: str
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = {**os.environ, "PIXELHUB_AUTH_TOKENS": TOKEN, "PIXELHUB_CHANNELS": ""}
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "hub", "serve", "--http-port", "0"),
            *("--data-dir", str(data_dir), "--database-url", database),
            *("--elasticsearch-url", search),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ports = data_dir / "ports.json"
    deadline = time.monotonic() + 60
    try:
        while not ports.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                out = proc.communicate()[0]
                raise AssertionError(f"replica did not start: {out}")
            time.sleep(0.05)
        yield proc, f"http://127.0.0.1:{json.loads(ports.read_text())['http']}"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def health(url: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{url}/health", headers=HEADERS, timeout=10).json()
    return body


def leader(url: str) -> bool:
    return bool(health(url)["checks"]["projectorLeadership"]["leader"])


def wait_for(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def all_patient_ids(url: str) -> list[str]:
    """Every Patient the search index answers with, page after page."""
    ids: list[str] = []
    link: str | None = f"{url}/fhir/Patient?_count=500&_elements=identifier"
    with httpx.Client(headers=HEADERS, timeout=30) as client:
        while link:
            bundle = client.get(link).json()
            ids += [e["resource"]["id"] for e in bundle.get("entry", [])]
            link = next((x["url"] for x in bundle.get("link", []) if x["relation"] == "next"), None)
    return ids


def test_two_replicas_share_the_store_and_survive_the_leader_dying(
    tmp_path: Path, postgres_database: str, elasticsearch_index_url: str
) -> None:
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(url: str, name: str) -> None:
        with httpx.Client(base_url=url, headers=HEADERS, timeout=10) as client:
            i = 0
            while not stop.is_set():
                body = {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:replica-test", "value": f"{name}-{i}"}],
                }
                try:
                    r = client.post(
                        "/fhir/Patient", json=body, headers={"Prefer": "return=minimal"}
                    )
                except httpx.HTTPError:
                    return  # this replica is gone
                if r.status_code == 201:
                    with lock:
                        acknowledged.append(r.headers["location"].split("/")[-3])
                i += 1

    with ExitStack() as stack:
        a_proc, a = stack.enter_context(
            replica(tmp_path / "a", postgres_database, elasticsearch_index_url)
        )
        wait_for(lambda: leader(a), 30, "replica A to lead")
        _, b = stack.enter_context(
            replica(tmp_path / "b", postgres_database, elasticsearch_index_url)
        )
        assert not leader(b), "one leader at a time"

        # version conflicts hold across replicas (412 from the one that lost the race)
        created = httpx.post(f"{a}/fhir/Patient", json={"resourceType": "Patient"}, headers=HEADERS)
        pid = created.json()["id"]
        update = {"resourceType": "Patient", "id": pid, "active": True}
        first = httpx.put(
            f"{a}/fhir/Patient/{pid}", json=update, headers={**HEADERS, "If-Match": 'W/"1"'}
        )
        second = httpx.put(
            f"{b}/fhir/Patient/{pid}", json=update, headers={**HEADERS, "If-Match": 'W/"1"'}
        )
        assert (first.status_code, second.status_code) == (200, 412)
        acknowledged.append(pid)

        threads = [
            threading.Thread(target=writer, args=(url, f"{name}{n}"))
            for n in range(2)
            for name, url in (("a", a), ("b", b))
        ]
        for t in threads:
            t.start()
        time.sleep(2.0)
        a_proc.send_signal(signal.SIGKILL)  # the leader dies mid-run, projector batch and all
        a_proc.wait(timeout=10)
        wait_for(lambda: leader(b), 30, "replica B to take over")
        time.sleep(1.0)  # B keeps taking writes as the new leader
        stop.set()
        for t in threads:
            t.join()

        def caught_up() -> bool:
            lag = health(b)["checks"]["projectors"]["search-index"]["lag"]
            return lag == 0

        wait_for(caught_up, 60, "the search index to catch up")
        indexed = all_patient_ids(b)  # a lag of 0 means searchable: no waiting for a refresh
    assert len(acknowledged) > 50
    missing = set(acknowledged) - set(indexed)
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged writes not found"
    assert len(indexed) == len(set(indexed)), "a resource was indexed twice"
    engine = open_engine(postgres_database, data_dir=str(tmp_path / "check"))
    try:  # the index holds exactly what the store of record holds
        assert engine.repository.count("Patient") == len(indexed)
    finally:
        engine.close()
