"""Change feed contract: every put/delete appends in its own transaction, strictly increasing
``seq`` in commit order, cursors per projector."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from hub.ports import Engine


def test_every_write_appends_in_order(store: Any) -> None:
    feed = store.engine.change_feed
    assert feed.last_seq() == 0 and feed.read_since(0) == []
    store.put({"resourceType": "Patient", "id": "p"}, {"resourceType": "Device", "id": "d"})
    store.put({"resourceType": "Patient", "id": "p", "active": True})
    store.delete("Device", "d")
    store.delete("Device", "d")  # no-op: nothing appended
    changes = feed.read_since(0)
    assert [(c.resource_type, c.id, c.version, c.op) for c in changes] == [
        ("Patient", "p", 1, "create"),
        ("Device", "d", 1, "create"),
        ("Patient", "p", 2, "update"),
        ("Device", "d", 2, "delete"),
    ]
    seqs = [c.seq for c in changes]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    assert feed.last_seq() == seqs[-1]
    assert feed.read_since(seqs[1]) == changes[2:]
    assert feed.read_since(0, limit=2) == changes[:2]
    assert feed.read_since(seqs[-1]) == []


def test_rollback_appends_nothing_and_seq_keeps_increasing(store: Any) -> None:
    feed = store.engine.change_feed
    store.put({"resourceType": "Patient", "id": "a"})
    before = feed.last_seq()
    with pytest.raises(ValueError), store.engine.repository.transaction() as tx:
        tx.put("Patient", "b", {"resourceType": "Patient"}, [])
        raise ValueError
    assert feed.last_seq() == before
    store.put({"resourceType": "Patient", "id": "c"})
    (last,) = feed.read_since(before)
    assert last.id == "c" and last.seq > before


def test_cursors(engine: Engine) -> None:
    feed = engine.change_feed
    assert feed.cursor("indexer") == 0
    feed.set_cursor("indexer", 5)
    feed.set_cursor("audit", 2)
    feed.set_cursor("indexer", 9)
    assert feed.cursor("indexer") == 9
    assert feed.cursor("audit") == 2
    assert feed.cursor("other") == 0


def test_concurrent_writers_produce_an_ordered_feed(engine: Engine) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(25):
                with engine.repository.transaction() as tx:
                    tx.put("Patient", f"w{n}-{i}", {"resourceType": "Patient"}, [])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    changes = engine.change_feed.read_since(0, limit=1000)
    assert len(changes) == 100
    assert [c.seq for c in changes] == sorted(c.seq for c in changes)
    assert {c.id for c in changes} == {f"w{n}-{i}" for n in range(4) for i in range(25)}
