"""Store of record contract: versions, tombstones, history, optimistic locking, atomic
transactions (FHIR R4 http.html)."""

from __future__ import annotations

import re
import threading
from typing import Any

import orjson
import pytest

from hub.errors import PreconditionFailed
from hub.ports import Engine
from hub.search.extract import extract_index_entries
from hub.search.model import TokenEntry

INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def patient(id: str, family: str = "Doe", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": id, "name": [{"family": family}], **extra}


def test_create_sets_version_and_meta_on_a_copy(store: Any) -> None:
    original = patient("p1", meta={"tag": [{"system": "urn:t", "code": "x"}]})
    snapshot = orjson.dumps(original)
    (stored,) = store.put(original)
    assert orjson.dumps(original) == snapshot, "the caller's dict must not change"
    assert (stored.resource_type, stored.id, stored.version) == ("Patient", "p1", 1)
    assert INSTANT.fullmatch(stored.last_updated)
    assert stored.method == "create" and not stored.deleted
    body = orjson.loads(stored.data)
    assert body["meta"] == {
        "versionId": "1",
        "lastUpdated": stored.last_updated,
        "tag": [{"system": "urn:t", "code": "x"}],
    }
    assert body["id"] == "p1" and body["resourceType"] == "Patient"
    assert store.engine.repository.read("Patient", "p1") == stored


def test_update_increments_version_and_keeps_old_versions(store: Any) -> None:
    store.put(patient("p1", "One"))
    (v2,) = store.put(patient("p1", "Two"))
    assert v2.version == 2 and v2.method == "update"
    repo = store.engine.repository
    assert orjson.loads(repo.read("Patient", "p1").data)["name"][0]["family"] == "Two"
    assert orjson.loads(repo.vread("Patient", "p1", 1).data)["name"][0]["family"] == "One"
    assert orjson.loads(repo.vread("Patient", "p1", 2).data)["meta"]["versionId"] == "2"
    assert repo.vread("Patient", "p1", 3) is None
    assert repo.read("Patient", "nope") is None


def test_given_last_updated_is_used(engine: Engine) -> None:
    with engine.repository.transaction() as tx:
        s = tx.put("Patient", "p1", patient("p1"), [], last_updated="2021-05-06T07:08:09.123Z")
    assert s.last_updated == "2021-05-06T07:08:09.123Z"
    assert orjson.loads(s.data or b"")["meta"]["lastUpdated"] == "2021-05-06T07:08:09.123Z"
    with engine.repository.transaction() as tx:
        s = tx.put("Patient", "p2", patient("p2"), [], last_updated="2021-05-06T09:08:09+02:00")
    assert s.last_updated == "2021-05-06T07:08:09.000Z"


def test_expected_version_is_checked(engine: Engine) -> None:
    repo = engine.repository
    with repo.transaction() as tx:
        tx.put("Patient", "p1", patient("p1"), [])
    with repo.transaction() as tx:
        assert tx.put("Patient", "p1", patient("p1"), [], expected_version=1).version == 2
    with pytest.raises(PreconditionFailed) as info, repo.transaction() as tx:
        tx.put("Patient", "p1", patient("p1", "Stale"), [], expected_version=1)
    assert info.value.status == 412
    assert "expected version 1" in info.value.message and "2" in info.value.message
    with pytest.raises(PreconditionFailed), repo.transaction() as tx:
        tx.put("Patient", "new", patient("new"), [], expected_version=1)
    with pytest.raises(PreconditionFailed), repo.transaction() as tx:
        tx.delete("Patient", "p1", expected_version=1)
    with repo.transaction() as tx:
        assert tx.delete("Patient", "p1", expected_version=2) is not None
    assert repo.read("Patient", "p1").version == 3  # type: ignore[union-attr]
    assert repo.read("Patient", "new") is None


def test_delete_writes_a_tombstone_and_recreate_continues_versions(store: Any) -> None:
    repo = store.engine.repository
    store.put(patient("p1"))
    tomb = store.delete("Patient", "p1")
    assert tomb is not None and tomb.deleted and tomb.version == 2 and tomb.method == "delete"
    read = repo.read("Patient", "p1")
    assert read is not None and read.deleted and read.data is None and read.version == 2
    assert repo.vread("Patient", "p1", 2).data is None
    assert repo.vread("Patient", "p1", 1).data is not None
    assert store.delete("Patient", "p1") is None, "deleting a deleted resource is a no-op"
    assert store.delete("Patient", "never") is None
    assert repo.count("Patient") == 0
    assert repo.read_many([("Patient", "p1")]) == []
    (again,) = store.put(patient("p1", "Back"))
    assert again.version == 3 and again.method == "create"
    assert repo.count("Patient") == 1


def test_purge_removes_every_version_and_the_index_entries(store: Any) -> None:
    """Retention (issue 7): a purged resource leaves no version, no search hit and no count; the
    change feed says it is gone, so an asynchronous index can drop it too."""
    repo, feed = store.engine.repository, store.engine.change_feed
    store.put(patient("p1", "Purged"), patient("p2", "Kept"))
    store.put(patient("p1", "Purged", gender="female"))
    with repo.transaction() as tx:
        assert tx.purge("Patient", "p1") is True
        assert tx.purge("Patient", "never") is False
    assert repo.read("Patient", "p1") is None
    assert repo.vread("Patient", "p1", 1) is None and repo.vread("Patient", "p1", 2) is None
    assert repo.history("Patient", "p1", since=None, at=None, count=10, offset=0).entries == []
    assert store.ids("Patient", "family=Purged") == [] and store.ids("Patient", "") == ["p2"]
    assert repo.count("Patient") == 1
    last = feed.read_since(feed.last_seq() - 1)[-1]
    assert (last.resource_type, last.id, last.op) == ("Patient", "p1", "delete")
    (again,) = store.put(patient("p1", "New"))
    assert again.version == 1 and again.method == "create"


def test_create_many_writes_version_one_and_skips_stored_ids(store: Any) -> None:
    """Bulk creation of write-once records (the audit indexer's AuditEvents): each new id is
    version 1, searchable, counted and in the change feed; an id already stored (even as a
    tombstone) or repeated in the batch is skipped, and the others still go in."""
    repo, feed = store.engine.repository, store.engine.change_feed
    store.put(patient("old", "Kept"), patient("gone"))
    store.delete("Patient", "gone")
    before = feed.last_seq()
    batch = [patient("n1", "Bulk"), patient("old", "Replaced"), patient("gone", "Back")]
    batch += [patient("n2", "Bulk", gender="male"), patient("n1", "Twice")]
    with repo.transaction() as tx:
        created = tx.create_many("Patient", [(p["id"], p, extract_index_entries(p)) for p in batch])
    assert created == 2
    assert orjson.loads(repo.read("Patient", "old").data)["name"][0]["family"] == "Kept"
    assert repo.read("Patient", "gone").deleted
    for rid in ("n1", "n2"):
        stored = repo.read("Patient", rid)
        assert (stored.version, stored.method) == (1, "create")
        assert orjson.loads(stored.data)["meta"]["versionId"] == "1"
    assert orjson.loads(repo.read("Patient", "n1").data)["name"][0]["family"] == "Bulk"
    assert sorted(store.ids("Patient", "family=Bulk")) == ["n1", "n2"]
    assert store.ids("Patient", "gender=male") == ["n2"]
    assert repo.count("Patient") == 3
    assert [(c.id, c.op) for c in feed.read_since(before)] == [("n1", "create"), ("n2", "create")]
    with repo.transaction() as tx:
        assert tx.create_many("Patient", [("n2", patient("n2"), [])]) == 0


def test_read_many_keeps_order_and_skips_missing_and_deleted(store: Any) -> None:
    store.put(patient("a"), patient("b"), patient("c"), {"resourceType": "Device", "id": "a"})
    store.delete("Patient", "c")
    got = store.engine.repository.read_many(
        [("Patient", "b"), ("Device", "a"), ("Patient", "zz"), ("Patient", "c"), ("Patient", "a")]
    )
    assert [(s.resource_type, s.id) for s in got] == [
        ("Patient", "b"),
        ("Device", "a"),
        ("Patient", "a"),
    ]


def test_count(store: Any) -> None:
    repo = store.engine.repository
    assert repo.count() == 0
    store.put(patient("a"), patient("b"), {"resourceType": "Device", "id": "d"})
    store.delete("Patient", "b")
    assert repo.count("Patient") == 1
    assert repo.count("Device") == 1
    assert repo.count("Observation") == 0
    assert repo.count() == 2


def test_scan_walks_current_versions_in_key_order(store: Any) -> None:
    store.put(patient("b"), patient("a"), patient("c"), {"resourceType": "Device", "id": "z"})
    store.put(patient("a", family="Second"))
    store.delete("Patient", "c")
    repo = store.engine.repository
    first = repo.scan(limit=2)
    assert [(r.resource_type, r.id, r.version) for r in first] == [
        ("Device", "z", 1),
        ("Patient", "a", 2),
    ]
    rest = repo.scan(after=("Patient", "a"), limit=10)
    assert [(r.resource_type, r.id) for r in rest] == [("Patient", "b")]
    assert orjson.loads(first[1].data)["name"] == [{"family": "Second"}]
    assert [r.id for r in repo.scan("Patient")] == ["a", "b"]
    assert repo.scan("Patient", after=("Patient", "b")) == []


def test_history_levels_newest_first_with_paging(engine: Engine) -> None:
    repo = engine.repository
    stamps = [f"2020-01-0{d}T00:00:00.000Z" for d in range(1, 6)]
    with repo.transaction() as tx:
        tx.put("Patient", "a", patient("a", "A1"), [], last_updated=stamps[0])
        tx.put("Device", "d", {"resourceType": "Device"}, [], last_updated=stamps[1])
        tx.put("Patient", "a", patient("a", "A2"), [], last_updated=stamps[2])
        tx.put("Patient", "b", patient("b"), [], last_updated=stamps[3])
    with repo.transaction() as tx:
        tx.delete("Patient", "a")

    inst = repo.history("Patient", "a")
    assert inst.total == 3
    assert [e.version for e in inst.entries] == [3, 2, 1]
    assert inst.entries[0].deleted and inst.entries[0].method == "delete"

    typ = repo.history("Patient", None)
    assert typ.total == 4
    assert [(e.id, e.version) for e in typ.entries] == [("a", 3), ("b", 1), ("a", 2), ("a", 1)]

    system = repo.history(None, None)
    assert system.total == 5
    assert [(e.resource_type, e.id, e.version) for e in system.entries][-2:] == [
        ("Device", "d", 1),
        ("Patient", "a", 1),
    ]
    page = repo.history(None, None, count=2, offset=2)
    assert page.total == 5
    assert [(e.id, e.version) for e in page.entries] == [("a", 2), ("d", 1)]

    since = repo.history(None, None, since="2020-01-03T00:00:00Z")
    assert [(e.id, e.version) for e in since.entries] == [("a", 3), ("b", 1), ("a", 2)]
    assert since.total == 3
    assert repo.history("Patient", "missing").total == 0


def test_history_at(engine: Engine) -> None:
    repo = engine.repository
    with repo.transaction() as tx:
        tx.put("Patient", "a", patient("a", "A1"), [], last_updated="2020-01-01T00:00:00Z")
        tx.put("Patient", "a", patient("a", "A2"), [], last_updated="2020-03-01T00:00:00Z")
        tx.put("Patient", "b", patient("b"), [], last_updated="2020-06-01T00:00:00Z")
    at_feb = repo.history("Patient", None, at="2020-02-15T00:00:00Z")
    assert [(e.id, e.version) for e in at_feb.entries] == [("a", 1)]
    at_march = repo.history("Patient", None, at="2020-03")  # a/1 was replaced as March began
    assert {(e.id, e.version) for e in at_march.entries} == {("a", 2)}
    in_2020 = repo.history("Patient", None, at="2020")  # every version was current in 2020
    assert {(e.id, e.version) for e in in_2020.entries} == {("a", 1), ("a", 2), ("b", 1)}
    at_july = repo.history("Patient", None, at="2020-07-01")
    assert {(e.id, e.version) for e in at_july.entries} == {("a", 2), ("b", 1)}
    assert repo.history("Patient", None, at="2019-12-31").total == 0


def test_exception_inside_transaction_leaves_nothing(store: Any) -> None:
    engine = store.engine
    store.put(patient("keep", "Keeper"))
    seq = engine.change_feed.last_seq()
    with pytest.raises(RuntimeError, match="boom"), engine.repository.transaction() as tx:
        tx.put("Patient", "ghost", patient("ghost", "Ghost"), [TokenEntry("gender", None, "x")])
        tx.put("Patient", "keep", patient("keep", "Changed"), [])
        tx.delete("Patient", "keep")
        raise RuntimeError("boom")
    assert engine.repository.read("Patient", "ghost") is None
    assert engine.repository.read("Patient", "keep").version == 1  # type: ignore[union-attr]
    assert engine.change_feed.last_seq() == seq
    assert engine.change_feed.read_since(seq) == []
    assert store.ids("Patient", "family=ghost") == []
    assert store.ids("Patient", "gender=x") == []
    assert store.ids("Patient", "family=keeper") == ["keep"]
    assert engine.repository.history("Patient", "keep").total == 1


def test_precondition_failure_rolls_back_earlier_writes(store: Any) -> None:
    engine = store.engine
    store.put(patient("p1"))
    with pytest.raises(PreconditionFailed), engine.repository.transaction() as tx:
        tx.put("Patient", "p2", patient("p2"), [])
        tx.put("Patient", "p1", patient("p1"), [], expected_version=7)
    assert engine.repository.read("Patient", "p2") is None


def test_transaction_sees_its_own_writes_others_do_not(store: Any) -> None:
    engine = store.engine
    seen_outside: list[object] = []
    with engine.repository.transaction() as tx:
        tx.put("Patient", "p1", patient("p1", "Inside"), extract(patient("p1", "Inside")))
        assert tx.read("Patient", "p1") is not None
        found = tx.search(store.query("Patient", "family=inside"))
        assert found.matches == [("Patient", "p1")] and found.total == 1

        def outside() -> None:
            seen_outside.append(engine.repository.read("Patient", "p1"))
            seen_outside.append(store.search("Patient", "family=inside").matches)

        t = threading.Thread(target=outside)
        t.start()
        t.join()
    assert seen_outside == [None, []]
    assert store.ids("Patient", "family=inside") == ["p1"]


def extract(resource: dict[str, Any]) -> list[Any]:
    from hub.search.extract import extract_index_entries

    return extract_index_entries(resource)


def test_status_reports_the_engine(store: Any) -> None:
    store.put(patient("p1"))
    status = store.engine.status()
    assert status["engine"] == store.engine.name
    assert status["resources"] == 1
