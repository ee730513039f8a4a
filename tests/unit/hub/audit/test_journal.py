"""The audit journal's hash chain, checkpoints, pruning, and ``verify_journal`` (issue 7)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B.auditevent import AuditEvent

from hub.audit import Actor, AuditJournal, AuditTrail, KeyStoreSigner, Source, verify_journal
from hub.audit.journal import JournalTail, segment_paths
from hub.smart.keys import KeyStore

SOURCE = Source("http://hub.example/fhir", "PixelHub test")
ALICE = Actor("alice", "user", address="10.0.0.7", fhir_user="Practitioner/p1", client_id="viewer")


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> KeyStoreSigner:
    return KeyStoreSigner(KeyStore(tmp_path_factory.mktemp("keys")))


@pytest.fixture(scope="module")
def other_signer(tmp_path_factory: pytest.TempPathFactory) -> KeyStoreSigner:
    return KeyStoreSigner(KeyStore(tmp_path_factory.mktemp("other-keys")))


def write_events(directory: Path, signer: KeyStoreSigner, count: int, **options: object) -> None:
    trail = AuditTrail(AuditJournal(directory, signer=signer, **options), SOURCE)  # type: ignore[arg-type]
    for i in range(count):
        trail.rest(ALICE, "read", status=200, patients=[f"Patient/{i}"], resources=[f"Patient/{i}"])
    trail.close()


def lines(directory: Path) -> list[bytes]:
    return b"".join(p.read_bytes() for _, p in segment_paths(directory)).splitlines(keepends=True)


def rewrite(directory: Path, new_lines: list[bytes]) -> None:
    ((_, path),) = segment_paths(directory)
    path.write_bytes(b"".join(new_lines))


def test_an_intact_chain_verifies_with_its_checkpoints(
    tmp_path: Path, signer: KeyStoreSigner
) -> None:
    write_events(tmp_path, signer, 25, checkpoint_every=10)
    report = verify_journal(tmp_path, signer)
    assert report.ok, report.summary()
    assert (report.events, report.checkpoints) == (25, 3)  # after 10, 20, and on close


def test_an_edited_event_breaks_the_chain_at_that_record(
    tmp_path: Path, signer: KeyStoreSigner
) -> None:
    write_events(tmp_path, signer, 5)
    content = lines(tmp_path)
    content[2] = content[2].replace(b"Patient/2", b"Patient/9")
    rewrite(tmp_path, content)
    report = verify_journal(tmp_path, signer)
    assert (report.bad_seq, report.ok) == (3, False)
    assert "altered" in str(report.problem)


def test_a_deleted_event_is_reported_missing(tmp_path: Path, signer: KeyStoreSigner) -> None:
    write_events(tmp_path, signer, 5)
    content = lines(tmp_path)
    del content[1]
    rewrite(tmp_path, content)
    report = verify_journal(tmp_path, signer)
    assert report.bad_seq == 2 and "missing" in str(report.problem)


def test_reordered_events_are_reported(tmp_path: Path, signer: KeyStoreSigner) -> None:
    write_events(tmp_path, signer, 5)
    content = lines(tmp_path)
    content[1], content[2] = content[2], content[1]
    rewrite(tmp_path, content)
    report = verify_journal(tmp_path, signer)
    assert not report.ok and report.bad_seq == 2


def test_a_recomputed_chain_fails_on_the_signed_checkpoint(
    tmp_path: Path, signer: KeyStoreSigner, other_signer: KeyStoreSigner
) -> None:
    """An attacker who rewrites and re-hashes the whole chain cannot re-sign the checkpoint."""
    write_events(tmp_path, signer, 3)
    forged = tmp_path / "forged"
    write_events(forged, other_signer, 3)
    rewrite(tmp_path, lines(forged))
    report = verify_journal(tmp_path, signer)
    assert not report.ok and "signature" in str(report.problem)


def test_a_torn_last_line_is_cut_and_the_chain_continues(
    tmp_path: Path, signer: KeyStoreSigner
) -> None:
    write_events(tmp_path, signer, 3)
    ((_, path),) = segment_paths(tmp_path)
    with path.open("ab") as fh:
        fh.write(b'{"seq": 4, "prev": "abc')  # a crash in the middle of a write
    write_events(tmp_path, signer, 2)
    report = verify_journal(tmp_path, signer)
    assert report.ok, report.summary()
    assert report.events == 5


def test_segments_rotate_and_the_tail_reads_across_them(
    tmp_path: Path, signer: KeyStoreSigner
) -> None:
    write_events(tmp_path, signer, 12, segment_events=5)
    assert len(segment_paths(tmp_path)) == 3
    tail = JournalTail(tmp_path, 3)
    seqs = [r.seq for r in tail.read(4)] + [r.seq for r in tail.read(100)]
    assert seqs == list(range(4, 13))
    assert tail.read(10) == []
    assert verify_journal(tmp_path, signer).ok


def test_the_journal_hands_its_latest_records_on_from_memory(
    tmp_path: Path, signer: KeyStoreSigner
) -> None:
    journal = AuditJournal(tmp_path, signer=signer, keep_recent=4, checkpoint_every=3)
    trail = AuditTrail(journal, SOURCE)
    assert journal.recent(0, 10) == []
    events = [trail.rest(ALICE, "read", status=200) for _ in range(6)]
    assert [r.seq for r in journal.recent(2, 10)] == [3, 4, 5, 6]
    assert [r.event for r in journal.recent(3, 2)] == events[3:5]  # as written, in order
    assert journal.recent(1, 10) == []  # record 2 is no longer held: the files have it
    assert journal.recent(6, 10) == []  # nothing after the head yet
    tail = JournalTail(tmp_path, 0)
    assert [r.seq for r in tail.read(2)] == [1, 2]
    tail.skip_to(4)  # 3 and 4 were taken from memory; checkpoints sit between the lines
    assert [r.seq for r in tail.read(10)] == [5, 6]
    trail.close()


def test_the_indexer_stores_each_event_once_from_memory_or_the_files(
    tmp_path: Path, signer: KeyStoreSigner
) -> None:
    from hub.audit import AuditIndexer

    journal = AuditJournal(tmp_path, signer=signer, keep_recent=5, checkpoint_every=4)
    trail = AuditTrail(journal, SOURCE)
    stored: list[str] = []
    position = [0]

    def store(events: list[dict[str, object]], seq: int) -> None:
        stored.extend(str(e["id"]) for e in events)
        position[0] = seq

    indexer = AuditIndexer(tmp_path, lambda: position[0], store, batch_size=3, journal=journal)
    written: list[str] = []
    for burst in (2, 9, 1, 4, 12):  # more than memory holds at times: read back from the files
        written += [str(trail.rest(ALICE, "read", status=200)["id"]) for _ in range(burst)]  # type: ignore[index]
        indexer.run_once()
    indexer.catch_up()
    assert stored == written
    restarted = AuditIndexer(tmp_path, lambda: 20, store, batch_size=3)  # files only
    stored.clear()
    restarted.catch_up()
    assert stored == written[20:]
    trail.close()


def test_pruning_keeps_the_rest_verifiable_from_a_signed_anchor(
    tmp_path: Path, signer: KeyStoreSigner
) -> None:
    write_events(tmp_path, signer, 12, segment_events=5)
    journal = AuditJournal(tmp_path, signer=signer, segment_events=5)
    assert journal.prune(before_seq=9) == 5  # only the segment 1-5 ends before 9
    assert journal.prune(before_seq=10) == 5  # then 6-10; 11-12 is being written
    journal.close()
    report = verify_journal(tmp_path, signer)
    assert report.ok, report.summary()
    assert report.events == 2
    anchor = orjson.loads((tmp_path / "anchor.json").read_bytes())
    anchor["hash"] = "0" * 64
    (tmp_path / "anchor.json").write_bytes(orjson.dumps(anchor))
    assert not verify_journal(tmp_path, signer).ok


def test_always_sync_mode_appends_durably(tmp_path: Path, signer: KeyStoreSigner) -> None:
    write_events(tmp_path, signer, 3, sync="always")
    assert verify_journal(tmp_path, signer).events == 3


def test_a_rest_event_is_valid_r4_with_balp_agents_and_entities(
    tmp_path: Path, signer: KeyStoreSigner, collect_for_validation: object
) -> None:
    trail = AuditTrail(AuditJournal(tmp_path, signer=signer), SOURCE)
    event = trail.rest(
        ALICE,
        "search-type",
        status=200,
        patients=["Patient/1", "Patient/1", "Patient/2"],
        resources=["ImagingStudy/a"],
        query="ImagingStudy?patient=Patient/1",
    )
    denied = trail.rest(ALICE, "read", status=403, outcome_desc="Not permitted")
    trail.close()
    assert event is not None and denied is not None
    for resource in (event, denied):
        AuditEvent.model_validate(resource)
        collect_for_validation(f"audit/{resource['subtype'][0]['code']}", resource)  # type: ignore[operator]
    assert event["action"] == "E" and event["outcome"] == "0"
    assert [a["requestor"] for a in event["agent"]] == [True, False, False]
    assert event["agent"][0]["who"]["reference"] == "Practitioner/p1"
    assert event["agent"][0]["network"]["address"] == "10.0.0.7"
    roles = [e["role"]["code"] for e in event["entity"]]
    assert roles == ["1", "1", "4", "24"]  # each patient once, the resource, the query
    assert denied["outcome"] == "4" and denied["outcomeDesc"] == "Not permitted"


def test_retention_prunes_whole_days_once_indexed_and_the_rest_verifies(
    tmp_path: Path, signer: KeyStoreSigner
) -> None:
    from datetime import UTC, datetime

    from hub.audit import AuditIndexer

    days = iter(
        ["2026-01-01T10:00:00.000Z"] * 2
        + ["2026-01-02T10:00:00.000Z"] * 2
        + ["2026-01-03T10:00:00.000Z"] * 2
    )
    trail = AuditTrail(AuditJournal(tmp_path, signer=signer), SOURCE, clock=lambda: next(days))
    for _ in range(6):
        trail.rest(ALICE, "read", status=200)
    assert len(segment_paths(tmp_path)) == 3  # one segment per UTC day
    indexed = [0]
    indexer = AuditIndexer(
        tmp_path,
        lambda: indexed[0],
        lambda events, seq: None,
        retention_days=1,
        journal=trail.journal,
    )
    now = datetime(2026, 1, 3, 12, tzinfo=UTC)
    assert indexer.apply_retention(now) == 0  # nothing indexed yet: nothing may go
    indexed[0] = 3
    assert indexer.apply_retention(now) == 2  # day 1 only: day 2 is not fully indexed
    indexed[0] = 6
    assert indexer.apply_retention(now) == 2  # then day 2; day 3 is being written
    trail.close()
    report = verify_journal(tmp_path, signer)
    assert report.ok and report.events == 2, report.summary()


def test_checkpoints_stay_verifiable_after_their_key_is_rotated_and_retired(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys")
    signer = KeyStoreSigner(keys)
    write_events(tmp_path / "audit", signer, 3)
    old_kid = keys.signing_key("RS384").kid
    keys.rotate(("RS384",))
    keys.retire(old_kid)
    assert keys.by_kid(old_kid) is None
    report = verify_journal(tmp_path / "audit", KeyStoreSigner(KeyStore(tmp_path / "keys")))
    assert report.ok and report.checkpoints == 1, report.summary()
