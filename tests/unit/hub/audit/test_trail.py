"""Event ids of the audit trail (issue 7): random UUIDs, drawn without a read of the random source
per event (that read releases the GIL, and winning it back cost each request a wait)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from hub.audit import Actor, AuditJournal, AuditTrail, Source
from hub.audit.trail import new_event_id

SOURCE = Source("http://hub.example/fhir", "PixelHub test")
BOB = Actor("bob", "client", address="10.0.0.8")


def test_events_get_distinct_random_uuids_without_a_random_read_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = []
    real = os.urandom

    def urandom(n: int) -> bytes:
        reads.append(n)
        return real(n)

    monkeypatch.setattr(os, "urandom", urandom)
    trail = AuditTrail(AuditJournal(tmp_path), SOURCE)
    ids = [str(trail.rest(BOB, "read", status=200)["id"]) for _ in range(600)]  # type: ignore[index]
    trail.close()
    assert len(set(ids)) == 600
    assert {uuid.UUID(i).version for i in ids} == {4}
    assert len(reads) <= 4  # a few pools of random bytes, not one read per event


def test_a_forked_child_does_not_reuse_the_parents_ids() -> None:
    new_event_id()  # the pool is filled
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write_end, new_event_id().encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    child = os.read(read_end, 100).decode()
    os.close(read_end)
    assert child != new_event_id()


def test_the_checkpoint_key_is_made_when_the_trail_opens_not_inside_a_request(
    tmp_path: Path,
) -> None:
    """A new data directory's RSA keys take a second or so to generate: at start-up, not at the
    first checkpoint (event 1000), stalling whichever request it falls in."""
    from hub.audit.setup import open_trail
    from hub.smart.keys import KeyStore

    keys = tmp_path / "keys"
    trail = open_trail(
        enabled=True, directory=tmp_path / "audit", keys=KeyStore(keys), base_url="x"
    )
    assert (keys / "rs384.pem").exists()
    trail.close()
