"""SqliteDicomStore beyond the port's contract (tests/contract/test_contract_dicom_store.py):
group commit across threads, a failing record failing alone, replaced versions kept."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.sqlite.dicom_store import SqliteDicomStore
from adapters.sqlite.engine import SqliteEngine
from hub.ports import DicomInstanceRecord, InstanceQuery
from tests.contract.test_contract_dicom_store import _indexed, record


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[SqliteEngine]:
    e = SqliteEngine("sqlite://", data_dir=str(tmp_path))
    yield e
    e.close()


@pytest.fixture
def store(engine: SqliteEngine) -> SqliteDicomStore:
    found = getattr(engine, "dicom_store", None)
    return found if found is not None else SqliteDicomStore(engine._db)


def test_concurrent_stores_are_committed_in_groups(store: SqliteDicomStore) -> None:
    n, threads = 400, 8
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(k, n, threads):
                store.store(record(f"1.2.3.{i}", sha=f"{i:064x}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    before = store.batches
    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors
    assert store.count() == n
    assert store.batches - before < n  # some commits carried several instances


def test_a_failing_record_fails_alone(
    engine: SqliteEngine, store: SqliteDicomStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = store._store_one

    def flaky(conn: Any, rec: DicomInstanceRecord) -> Any:
        if rec.sop_instance_uid == "bad":
            raise RuntimeError("boom")
        return original(conn, rec)

    monkeypatch.setattr(store, "_store_one", flaky)
    with pytest.raises(RuntimeError):
        store.store(record("bad"))
    assert store.store(record("good")).stored
    assert store.get("bad") is None and store.get("good") is not None


def test_the_tables_survive_a_reopen(tmp_path: Path) -> None:
    e = SqliteEngine("sqlite://", data_dir=str(tmp_path))
    SqliteDicomStore(e._db).store(record("1.2.3.4"))
    e.close()
    again = SqliteEngine("sqlite://", data_dir=str(tmp_path))
    try:
        assert SqliteDicomStore(again._db).get("1.2.3.4") is not None
    finally:
        again.close()


def test_replaced_bytes_are_kept_as_a_version(
    store: SqliteDicomStore, engine: SqliteEngine
) -> None:
    store.store(record("1.2.3.4", sha="a" * 64))
    store.store(record("1.2.3.4", sha="b" * 64))
    with engine._db.snapshot() as conn:
        kept = conn.execute("SELECT version, sha256 FROM dicom_instance_version").fetchall()
    assert kept == [(1, "a" * 64)]


def test_query_columns_are_added_to_an_existing_store(tmp_path: Path) -> None:
    """A store made before the C-FIND columns gains them, filled from each row's summary."""
    first = SqliteEngine("sqlite://", data_dir=str(tmp_path))
    first.dicom_store.store(
        _indexed(
            "1.2.1", "1.2", "1.2.9", patient="P9", date="20200101", accession="X", modality="MR"
        )
    )
    with first._db.write() as conn:  # back to the earlier layout
        for name in ("series", "patient", "accession", "study_date", "modality"):
            conn.execute(f"DROP INDEX dicom_instance_{name}")
        for column in ("patient_id", "accession", "study_date", "modality"):
            conn.execute(f"ALTER TABLE dicom_instance DROP COLUMN {column}")
    first.close()
    again = SqliteEngine("sqlite://", data_dir=str(tmp_path))
    try:
        store = again.dicom_store
        found = store.find(InstanceQuery("STUDY", patient_ids=("P9",), modalities=("MR",)))
        assert [m.key for m in found] == ["1.2"]
        with again._db.write() as conn:
            indexes = {r[1] for r in conn.execute("PRAGMA index_list(dicom_instance)")}
        assert {"dicom_instance_patient", "dicom_instance_modality"} <= indexes
    finally:
        again.close()
