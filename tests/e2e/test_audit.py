"""Issue 7 over HTTP: one AuditEvent per FHIR interaction, searchable by auditors, immutable, and
``pixelhub audit verify`` catching tampering with the journal or the indexed events."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner
from fastapi.testclient import TestClient

from hub.cli import main
from hub.composition import Hub
from tests.e2e.support import TOKEN, assert_valid_r4, patient, study


def events(hub: Hub) -> list[dict[str, Any]]:
    """Every event journaled so far, oldest first (from the journal, the source of truth)."""
    assert hub.audit.directory is not None
    lines = b"".join(p.read_bytes() for p in sorted(hub.audit.directory.glob("journal-*")))
    return [r["event"] for r in map(orjson.loads, lines.splitlines()) if "event" in r]


def only(found: list[dict[str, Any]], subtype: str) -> dict[str, Any]:
    matching = [e for e in found if e["subtype"][0]["code"] == subtype]
    assert len(matching) == 1, [e["subtype"][0]["code"] for e in found]
    return matching[0]


def entity_refs(event: dict[str, Any], role: str) -> list[str]:
    return [e["what"]["reference"] for e in event.get("entity", []) if e["role"]["code"] == role]


def test_each_interaction_is_one_event_with_its_patient_and_outcome(
    client: TestClient, hub: Hub
) -> None:
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    sid = client.post("/fhir/ImagingStudy", json=study(f"Patient/{pid}")).json()["id"]
    client.get(f"/fhir/ImagingStudy/{sid}")
    client.get(f"/fhir/ImagingStudy?patient=Patient/{pid}&modality=CT")
    client.get(f"/fhir/ImagingStudy/{sid}/_history/1")
    client.get(f"/fhir/ImagingStudy/{sid}/_history")
    client.get("/fhir/ImagingStudy/missing")
    client.delete(f"/fhir/ImagingStudy/{sid}")
    client.get("/fhir/metadata")  # public discovery: not audited
    found = events(hub)
    assert [e["subtype"][0]["code"] for e in found] == [
        "create", "create", "read", "search-type", "vread", "history-instance", "read", "delete",
    ]  # fmt: skip
    read = found[2]
    assert (read["action"], read["outcome"]) == ("R", "0")
    assert entity_refs(read, "1") == [f"Patient/{pid}"]
    assert entity_refs(read, "4") == [f"ImagingStudy/{sid}"]
    search = found[3]
    assert search["action"] == "E" and entity_refs(search, "1") == [f"Patient/{pid}"]
    query = next(e for e in search["entity"] if e["role"]["code"] == "24")
    assert (
        base64.b64decode(query["query"]).decode()
        == f"ImagingStudy?patient=Patient/{pid}&modality=CT"
    )
    created = found[1]
    assert (created["action"], entity_refs(created, "4")) == ("C", [f"ImagingStudy/{sid}"])
    missing = found[6]
    assert missing["outcome"] == "4" and "missing" in missing["outcomeDesc"]
    for event in found:
        assert_valid_r4(event)
        assert event["agent"][0]["requestor"] is True
        assert event["source"]["observer"]["display"].startswith("PixelHub")


def test_refused_and_denied_requests_are_recorded(hub: Hub) -> None:
    with TestClient(hub.app) as anonymous:
        assert anonymous.get("/fhir/Patient").status_code == 401
        bad = anonymous.get("/fhir/Patient", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
    refused = events(hub)
    assert [e["outcome"] for e in refused] == ["4", "4"]
    assert refused[0]["agent"][0]["who"]["identifier"]["value"] == "anonymous"
    assert refused[0]["agent"][0]["network"]["address"] == "testclient"


def test_transactions_are_one_event_listing_every_patient(client: TestClient, hub: Hub) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:0000000{i}-0000-4000-8000-000000000000",
                "resource": patient(family=f"F{i}", mrn=f"M{i}"),
                "request": {"method": "POST", "url": "Patient"},
            }
            for i in range(3)
        ],
    }
    assert client.post("/fhir", json=bundle).status_code == 200
    event = only(events(hub), "transaction")
    assert len(entity_refs(event, "1")) == 3


def test_auditors_search_the_indexed_log_and_nobody_may_change_it(
    client: TestClient, hub: Hub
) -> None:
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    client.get(f"/fhir/Patient/{pid}")
    hub.audit_indexer.catch_up()
    r = client.get(f"/fhir/AuditEvent?patient=Patient/{pid}&_sort=-date")
    assert r.status_code == 200, r.text
    bundle = r.json()
    subtypes = [e["resource"]["subtype"][0]["code"] for e in bundle["entry"]]
    assert subtypes == ["read", "create"]
    for entry in bundle["entry"]:
        assert_valid_r4(entry["resource"])
    one = bundle["entry"][0]["resource"]
    for params in (
        "action=R",
        "outcome=0",
        "subtype=read",
        "type=rest",
        "agent-name=static-token",
        f"entity=Patient/{pid}",
        f"date=ge{one['recorded'][:10]}",
        "address=testclient",
    ):
        found = client.get(f"/fhir/AuditEvent?{params}&patient=Patient/{pid}").json()
        assert one["id"] in [e["resource"]["id"] for e in found.get("entry", [])], params
    aid = one["id"]
    assert client.put(f"/fhir/AuditEvent/{aid}", json=one).status_code == 405
    assert client.delete(f"/fhir/AuditEvent/{aid}").status_code == 405
    patch = [{"op": "replace", "path": "/outcome", "value": "4"}]
    r = client.patch(
        f"/fhir/AuditEvent/{aid}",
        content=orjson.dumps(patch),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 405
    assert client.put(f"/fhir/AuditEvent?_id={aid}", json=one).status_code == 405
    assert client.delete(f"/fhir/AuditEvent?_id={aid}").status_code == 405
    inside = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "DELETE", "url": f"AuditEvent/{aid}"}}]}  # fmt: skip
    assert (
        client.post("/fhir", json=inside).json()["entry"][0]["response"]["status"].startswith("405")
    )
    assert client.get(f"/fhir/AuditEvent/{aid}").json()["meta"]["versionId"] == "1"


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_audit_events_are_searched_by_the_parameters_issue_7_lists_and_no_others(
    client: TestClient,
) -> None:
    """Each served parameter costs the indexer rows per event: the statement offers the
    auditors' searches (and the common ``_*`` ones), and a withheld parameter is refused."""
    statement = client.get("/fhir/metadata").json()
    (audit,) = [r for r in statement["rest"][0]["resource"] if r["type"] == "AuditEvent"]
    assert {p["name"] for p in audit["searchParam"]} == {
        *("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source"),
        *("date", "agent", "agent-name", "entity", "patient", "action", "outcome", "type"),
        *("subtype", "source", "address"),
    }
    for withheld in ("site=x", "altid=x", "entity-type=2", "entity-role=24", "policy=x"):
        r = client.get(f"/fhir/AuditEvent?{withheld}", headers={"Prefer": "handling=strict"})
        assert r.status_code == 400, withheld


def test_audit_verify_finds_tampering_in_the_journal_and_the_index(tmp_path: Path) -> None:
    from tests.e2e.support import make_hub

    data = tmp_path / "data"
    hub = make_hub(data)
    with TestClient(hub.app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        pid = client.post("/fhir/Patient", json=patient()).json()["id"]
        for _ in range(3):
            client.get(f"/fhir/Patient/{pid}")
    hub.audit_indexer.catch_up()
    hub.close()
    ok = run_cli("audit", "verify", "--data-dir", str(data))
    assert ok.exit_code == 0 and "4 events" in ok.output, ok.output

    db = sqlite3.connect(data / "pixelhub.db")
    victim, vid, stored = db.execute(
        "SELECT r.res_id, v.vid, v.data FROM resource r JOIN version v ON v.res_pk = r.pk"
        " WHERE r.res_type = 'AuditEvent' LIMIT 1"
    ).fetchone()
    assert b'"outcome":"0"' in bytes(stored)
    db.execute(
        "UPDATE version SET data = ? WHERE vid = ?",
        (bytes(stored).replace(b'"outcome":"0"', b'"outcome":"4"'), vid),
    )
    db.commit()
    db.close()
    broken = run_cli("audit", "verify", "--data-dir", str(data))
    assert broken.exit_code == 1 and f"AuditEvent/{victim}" in broken.output, broken.output
    assert run_cli("audit", "verify", "--journal-only", "--data-dir", str(data)).exit_code == 0

    (journal,) = (data / "audit").glob("journal-*.ndjson")
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"action":"R"', b'"action":"C"')
    journal.write_bytes(b"".join(lines))
    edited = run_cli("audit", "verify", "--journal-only", "--data-dir", str(data))
    assert edited.exit_code == 1 and "seq 2" in edited.output, edited.output


def test_export_writes_a_time_range_as_ndjson(client: TestClient, hub: Hub, tmp_path: Path) -> None:
    client.get("/fhir/Patient")
    client.get("/fhir/Patient?name=x")
    found = events(hub)
    start = found[1]["recorded"]
    assert hub.audit.directory is not None
    out = run_cli(
        "audit", "export", "--data-dir", str(hub.audit.directory.parent), "--since", start
    )
    exported = [orjson.loads(line) for line in out.output.splitlines()]
    assert [e["id"] for e in exported] == [found[1]["id"]]


def test_auditors_export_a_time_range_over_http_and_the_export_is_recorded(
    client: TestClient, hub: Hub
) -> None:
    client.get("/fhir/Patient")
    first = events(hub)[0]
    r = client.get("/audit/export", params={"since": first["recorded"]})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+ndjson")
    exported = [orjson.loads(line) for line in r.text.splitlines()]
    assert exported[0]["id"] == first["id"]
    assert exported[-1]["subtype"][0]["code"] == "operation"  # the export itself, journaled first
    assert client.get("/audit/export", params={"since": "yesterday"}).status_code == 400
    with TestClient(hub.app) as anonymous:
        assert anonymous.get("/audit/export").status_code == 401


def test_retention_prunes_the_journal_and_purges_the_indexed_copies(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from hub.audit import Actor
    from tests.e2e.support import make_hub

    data = tmp_path / "data"
    hub = make_hub(data, audit_retention_days=1)
    days = iter(
        ["2026-01-01T10:00:00.000Z"] * 2
        + ["2026-01-02T10:00:00.000Z"] * 2
        + ["2026-01-03T10:00:00.000Z"]
    )
    hub.audit.clock = lambda: next(days)
    for _ in range(5):
        hub.audit.rest(Actor("ops", "client"), "read", status=200, patients=["Patient/x"])
    hub.audit_indexer.catch_up()
    assert hub.engine.repository.count("AuditEvent") == 5
    assert hub.audit_indexer.apply_retention(datetime(2026, 1, 3, 12, tzinfo=UTC)) == 4
    assert hub.engine.repository.count("AuditEvent") == 1
    hub.close()
    report = run_cli("audit", "verify", "--data-dir", str(data))
    assert report.exit_code == 0 and "1 events" in report.output, report.output


def test_the_prune_command_refuses_a_running_hub_and_prunes_a_stopped_one(tmp_path: Path) -> None:
    from hub.audit import Actor
    from tests.e2e.support import make_hub

    data = tmp_path / "data"
    hub = make_hub(data)
    days = iter(["2026-01-01T10:00:00.000Z"] * 2 + ["2026-01-02T10:00:00.000Z"])
    hub.audit.clock = lambda: next(days)
    for _ in range(3):
        hub.audit.rest(Actor("ops", "client"), "read", status=200)
    hub.audit_indexer.catch_up()
    busy = CliRunner().invoke(
        main, ["audit", "prune", "--before", "2026-01-02", "--data-dir", str(data)]
    )
    assert busy.exit_code == 1 and "stop the hub first" in busy.output
    hub.close()
    done = run_cli("audit", "prune", "--before", "2026-01-02", "--data-dir", str(data))
    assert done.exit_code == 0 and "pruned 2 audit events" in done.output, done.output
    report = run_cli("audit", "verify", "--data-dir", str(data))
    assert report.exit_code == 0 and "1 events" in report.output, report.output
