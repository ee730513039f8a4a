"""DICOM instance store contract (``hub.ports.DicomInstanceStore``), on every engine that has one:
one row and one change per stored instance, no-op on identical bytes, versioned replacement
(DICOM PS3.4 B.4.1), pending studies for the aggregator. Engine-specific behaviour (group
commit, several engines on one database) is tested beside each engine."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from hub.ports import DicomInstanceRecord, DicomInstanceStore, Engine, InstanceQuery


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


# ------------------------------------------------------------------ find (issue 9, C-FIND)


def _indexed(
    sop: str, study: str, series: str, *, patient: str, date: str, accession: str, modality: str
) -> DicomInstanceRecord:
    summary = {
        "sop_instance_uid": sop,
        "study_instance_uid": study,
        "series_instance_uid": series,
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
        "patient_id": patient,
        "study_date": date,
        "accession_number": accession,
        "modality": modality,
        "patient_name": {"alphabetic": {"P1": "Smith^Anna", "P2": "Smithers^Bo"}.get(patient)},
    }
    return DicomInstanceRecord(
        sop_instance_uid=sop,
        study_instance_uid=study,
        series_instance_uid=series,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        blob_key=f"dicom/{sop}",
        sha256=sop.replace(".", "").ljust(64, "0"),
        size=1,
        summary=summary,
    )


@pytest.fixture
def archive(store: DicomInstanceStore) -> DicomInstanceStore:
    """Patient P1: study 1.1 (CT series 1.1.1 with 2 instances, MR series 1.1.2 with 1),
    study 1.2 (MR, 1); patient P2: study 2.1 (CT, 1)."""
    rows = [
        ("1.1.1.1", "1.1", "1.1.1", "P1", "20200115", "A1", "CT"),
        ("1.1.1.2", "1.1", "1.1.1", "P1", "20200115", "A1", "CT"),
        ("1.1.2.1", "1.1", "1.1.2", "P1", "20200115", "A1", "MR"),
        ("1.2.1.1", "1.2", "1.2.1", "P1", "20210610", "A2", "MR"),
        ("2.1.1.1", "2.1", "2.1.1", "P2", "20190301", "B1", "CT"),
    ]
    for sop, study, series, patient, date, accession, modality in rows:
        store.store(
            _indexed(
                sop, study, series, patient=patient, date=date, accession=accession,
                modality=modality,
            )
        )  # fmt: skip
    return store


def test_find_groups_by_level_with_counts(archive: DicomInstanceStore) -> None:
    studies = archive.find(InstanceQuery("STUDY"))
    assert [(m.key, m.series, m.instances, m.modalities) for m in studies] == [
        ("1.1", 2, 3, ("CT", "MR")),
        ("1.2", 1, 1, ("MR",)),
        ("2.1", 1, 1, ("CT",)),
    ]
    assert studies[0].summary["sop_instance_uid"] == "1.1.1.1"  # the lowest SOP Instance UID
    patients = archive.find(InstanceQuery("PATIENT"))
    assert [(m.key, m.studies, m.series, m.instances) for m in patients] == [
        ("P1", 2, 3, 4),
        ("P2", 1, 1, 1),
    ]
    series = archive.find(InstanceQuery("SERIES", study_uids=("1.1",)))
    assert [(m.key, m.instances) for m in series] == [("1.1.1", 2), ("1.1.2", 1)]
    images = archive.find(InstanceQuery("IMAGE", series_uids=("1.1.1",)))
    assert [m.key for m in images] == ["1.1.1.1", "1.1.1.2"]


def test_find_filters_on_indexed_keys(archive: DicomInstanceStore) -> None:
    def keys(query: InstanceQuery) -> list[str]:
        return [m.key for m in archive.find(query)]

    assert keys(InstanceQuery("STUDY", patient_ids=("P2",))) == ["2.1"]
    assert keys(InstanceQuery("STUDY", accession_numbers=("A1", "A2"))) == ["1.1", "1.2"]
    assert keys(InstanceQuery("STUDY", study_uids=("2.1", "9.9"))) == ["2.1"]
    assert keys(InstanceQuery("STUDY", study_date_from="20200101")) == ["1.1", "1.2"]
    assert keys(InstanceQuery("STUDY", study_date_to="20200115")) == ["1.1", "2.1"]
    assert keys(InstanceQuery("STUDY", study_date_from="20200101", study_date_to="20201231")) == [
        "1.1"
    ]
    # a study with any MR instance, counted over all its instances
    mr = archive.find(InstanceQuery("STUDY", modalities=("MR",)))
    assert [(m.key, m.instances) for m in mr] == [("1.1", 3), ("1.2", 1)]
    assert keys(InstanceQuery("SERIES", modalities=("MR",))) == ["1.1.2", "1.2.1"]
    assert keys(InstanceQuery("IMAGE", sop_uids=("2.1.1.1",))) == ["2.1.1.1"]
    assert keys(InstanceQuery("STUDY", patient_ids=("nobody",))) == []
    # the upper-cased alphabetic name starts with the prefix (byte-wise on every engine)
    assert keys(InstanceQuery("STUDY", patient_name_prefix="SMITH")) == ["1.1", "1.2", "2.1"]
    assert keys(InstanceQuery("STUDY", patient_name_prefix="SMITH^")) == ["1.1", "1.2"]
    assert keys(InstanceQuery("PATIENT", patient_name_prefix="SMITHERS")) == ["P2"]
    assert keys(InstanceQuery("STUDY", patient_name_prefix="SMITZ")) == []


def test_find_pages_by_key(archive: DicomInstanceStore) -> None:
    first = archive.find(InstanceQuery("IMAGE"), limit=2)
    second = archive.find(InstanceQuery("IMAGE"), after=first[-1].key, limit=2)
    third = archive.find(InstanceQuery("IMAGE"), after=second[-1].key, limit=2)
    assert [m.key for m in first + second + third] == [
        "1.1.1.1", "1.1.1.2", "1.1.2.1", "1.2.1.1", "2.1.1.1",
    ]  # fmt: skip
    page = archive.find(InstanceQuery("STUDY"), after="1.1", limit=1)
    assert [(m.key, m.instances) for m in page] == [("1.2", 1)]


def test_find_follows_a_replacement(archive: DicomInstanceStore) -> None:
    moved = _indexed(
        "2.1.1.1", "2.1", "2.1.1", patient="P3", date="20190301", accession="B1", modality="CT"
    )
    archive.store(dataclasses.replace(moved, sha256="f" * 64))
    assert [m.key for m in archive.find(InstanceQuery("STUDY", patient_ids=("P3",)))] == ["2.1"]
    assert archive.find(InstanceQuery("STUDY", patient_ids=("P2",))) == []
