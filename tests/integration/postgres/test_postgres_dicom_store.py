"""PostgresDicomStore beyond the port's contract (tests/contract/test_contract_dicom_store.py):
concurrent senders on two engines, a store inside a transaction, replaced versions kept."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest

from adapters.postgres import PostgresEngine
from hub.ports import DicomInstanceStore, InstanceQuery
from tests.contract.test_contract_dicom_store import _indexed, record


@pytest.fixture
def engine(postgres_database: str) -> Iterator[PostgresEngine]:
    e = PostgresEngine(postgres_database)
    yield e
    e.close()


@pytest.fixture
def store(engine: PostgresEngine) -> DicomInstanceStore:
    return engine.dicom_store


def test_concurrent_senders_on_two_engines(postgres_database: str) -> None:
    a, b = PostgresEngine(postgres_database), PostgresEngine(postgres_database)
    n, threads = 200, 6
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        target = (a if k % 2 else b).dicom_store
        try:
            for i in range(k, n, threads):
                target.store(record(f"1.2.3.{i}", sha=f"{i:064x}"))
                target.store(record(f"1.2.3.{i}", sha=f"{i:064x}"))  # a retry: no-op
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    try:
        pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        assert not errors
        assert a.dicom_store.count() == n
        changes = a.change_feed.read_since(0, limit=10 * n)
        assert len(changes) == n and [c.seq for c in changes] == sorted(c.seq for c in changes)
        (pending,) = b.dicom_store.pending_studies()
        assert pending.study_instance_uid == "1.2.3"
    finally:
        a.close()
        b.close()


def test_a_store_inside_a_transaction_commits_with_it(engine: PostgresEngine) -> None:
    with pytest.raises(RuntimeError), engine.repository.transaction():
        engine.dicom_store.store(record("1.2.3.4"))
        raise RuntimeError
    assert engine.dicom_store.get("1.2.3.4") is None
    assert engine.change_feed.last_seq() == 0


def test_replaced_bytes_are_kept_as_a_version(
    store: DicomInstanceStore, engine: PostgresEngine
) -> None:
    store.store(record("1.2.3.4", sha="a" * 64))
    store.store(record("1.2.3.4", sha="b" * 64))
    with engine._db.connection() as conn:
        kept = conn.execute("SELECT version, sha256 FROM dicom_instance_version").fetchall()
    assert kept == [(1, "a" * 64)]


def test_query_columns_are_added_to_an_existing_store(postgres_database: str) -> None:
    """A store made before the C-FIND columns gains them, filled from each row's summary."""
    first = PostgresEngine(postgres_database)
    first.dicom_store.store(
        _indexed(
            "1.2.1", "1.2", "1.2.9", patient="P9", date="20200101", accession="X", modality="MR"
        )
    )
    first.close()
    with psycopg.connect(postgres_database, autocommit=True) as conn:  # the earlier layout
        for column in ("patient_id", "accession", "study_date", "modality"):
            conn.execute(f"ALTER TABLE dicom_instance DROP COLUMN {column}")
        conn.execute("DROP INDEX dicom_instance_series")
    again = PostgresEngine(postgres_database)
    try:
        found = again.dicom_store.find(
            InstanceQuery("STUDY", patient_ids=("P9",), modalities=("MR",))
        )
        assert [m.key for m in found] == ["1.2"]
        with psycopg.connect(postgres_database, autocommit=True) as conn:
            indexes = {
                r[0]
                for r in conn.execute(
                    "SELECT indexname FROM pg_indexes WHERE tablename = 'dicom_instance'"
                ).fetchall()
            }
        assert {"dicom_instance_series", "dicom_instance_modality"} <= indexes
    finally:
        again.close()
