"""DICOM instance store contract (``hub.ports.DicomInstanceStore``), on every engine that has one:
one row and one change per stored instance, no-op on identical bytes, versioned replacement
(DICOM PS3.4 B.4.1), pending studies for the aggregator. Engine-specific behaviour (group
commit, several engines on one database) is tested beside each engine."""

from __future__ import annotations

from typing import Any

import pytest

from hub.ports import DicomInstanceRecord, DicomInstanceStore, Engine


@pytest.fixture
def store(engine: Engine) -> DicomInstanceStore:
    found: DicomInstanceStore | None = getattr(engine, "dicom_store", None)
    assert found is not None, f"{engine.name} has no DICOM instance store"
    return found


def record(
    sop: str, sha: str = "a" * 64, study: str = "1.2.3", **extra: Any
) -> DicomInstanceRecord:
    return DicomInstanceRecord(
        sop_instance_uid=sop,
        study_instance_uid=study,
        series_instance_uid=f"{study}.1",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        blob_key=f"dicom/{study}/{study}.1/{sop}/{sha}",
        sha256=sha,
        size=100,
        summary={"sop_instance_uid": sop, "study_instance_uid": study},
        source="MODALITY@127.0.0.1",
        **extra,
    )


def test_store_appends_one_change_and_marks_the_study_pending(
    engine: Engine, store: DicomInstanceStore
) -> None:
    before = engine.change_feed.last_seq()
    result = store.store(record("1.2.3.4"))
    assert result.stored and not result.replaced and result.previous is None
    assert result.record.version == 1 and result.record.received.endswith("Z")
    changes = engine.change_feed.read_since(before)
    assert [(c.resource_type, c.id, c.version, c.op) for c in changes] == [
        ("DicomInstance", "1.2.3.4", 1, "create")
    ]
    assert store.get("1.2.3.4") == result.record
    assert store.count() == 1
    (pending,) = store.pending_studies()
    assert pending.study_instance_uid == "1.2.3"
    assert not pending.flush_requested and pending.replacements == ()


def test_identical_bytes_again_is_a_no_op(engine: Engine, store: DicomInstanceStore) -> None:
    first = store.store(record("1.2.3.4"))
    seq = engine.change_feed.last_seq()
    generation = store.pending_studies()[0].generation
    again = store.store(record("1.2.3.4"))
    assert not again.stored and again.record == first.record
    assert engine.change_feed.last_seq() == seq
    assert store.pending_studies()[0].generation == generation


def test_different_bytes_replace_and_version(engine: Engine, store: DicomInstanceStore) -> None:
    store.store(record("1.2.3.4", sha="a" * 64))
    pending = store.pending_studies()[0]
    assert store.mark_aggregated("1.2.3", pending.generation)
    result = store.store(record("1.2.3.4", sha="b" * 64))
    assert result.stored and result.replaced
    assert result.previous is not None and result.previous.sha256 == "a" * 64
    assert result.record.version == 2
    assert store.get("1.2.3.4") == result.record
    change = engine.change_feed.read_since(0)[-1]
    assert (change.id, change.version, change.op) == ("1.2.3.4", 2, "update")
    (pending,) = store.pending_studies()
    (replacement,) = pending.replacements
    assert (replacement.old_version, replacement.new_version) == (1, 2)
    assert replacement.old_sha256 == "a" * 64 and replacement.new_sha256 == "b" * 64


def test_mark_aggregated_keeps_a_study_that_received_more(store: DicomInstanceStore) -> None:
    store.store(record("1.2.3.4"))
    seen = store.pending_studies()[0].generation
    store.store(record("1.2.3.5"))  # arrives while the aggregator works on `seen`
    assert not store.mark_aggregated("1.2.3", seen)
    (pending,) = store.pending_studies()
    assert pending.generation != seen
    assert store.mark_aggregated("1.2.3", pending.generation)
    assert store.pending_studies() == []


def test_request_flush_and_instances_of_study(store: DicomInstanceStore) -> None:
    for sop in ("1.2.3.6", "1.2.3.4", "1.2.3.5"):
        store.store(record(sop))
    store.store(record("9.9.1", study="9.9"))
    store.request_flush(["1.2.3"])
    flags = {p.study_instance_uid: p.flush_requested for p in store.pending_studies()}
    assert flags == {"1.2.3": True, "9.9": False}
    assert [r.sop_instance_uid for r in store.instances_of_study("1.2.3")] == [
        "1.2.3.4",
        "1.2.3.5",
        "1.2.3.6",
    ]
    assert store.instances_of_study("0.0") == []


def test_moving_an_instance_to_another_study_marks_both(store: DicomInstanceStore) -> None:
    store.store(record("1.2.3.4", study="1.2.3"))
    for p in store.pending_studies():
        store.mark_aggregated(p.study_instance_uid, p.generation)
    store.store(record("1.2.3.4", sha="c" * 64, study="7.7"))
    assert {p.study_instance_uid for p in store.pending_studies()} == {"1.2.3", "7.7"}
