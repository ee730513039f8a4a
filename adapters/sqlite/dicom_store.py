"""``SqliteDicomStore``: the index of stored DICOM instances (``hub.ports.DicomInstanceStore``).

Tables (created with ``CREATE TABLE IF NOT EXISTS`` when the engine opens, outside the FHIR
schema's version number, so existing stores gain them in place):

    dicom_instance          one row per SOP Instance UID: its blob, hash, size, version and the
                            header summary (JSON) the FHIR mappings need
    dicom_instance_version  every earlier version of a replaced instance (blob key and hash)
    dicom_study_pending     studies with instances stored since their last aggregation: the
                            generation (the seq of the latest change), when the last instance
                            arrived, whether a flush was requested, and the replacements

``store`` writes the row, the change-feed record (``DicomInstance``/SOP Instance UID) and the
pending-study row in one transaction. Concurrent callers are committed together (group commit):
the first caller to get the commit lock writes every record queued so far in one ``BEGIN
IMMEDIATE`` ... ``COMMIT`` (one fsync), each record in its own savepoint, so one failing record
fails alone; the others return as soon as that commit is durable.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson

from adapters.sqlite._db import Database
from adapters.sqlite._errors import sqlite_errors
from adapters.sqlite._time import format_ms, now_ms
from hub.imaging.instance_rows import (
    CHANGE_TYPE,
    COLUMNS,
    INDEXED_NAMES,
    INDEXES,
    KEPT_COLUMNS,
    PENDING_COLUMNS,
    backfill_sql,
    find_sql,
    indexed_params,
    instance_match,
    instance_params,
    instance_record,
    kept_params,
    pending_study,
    stored_record,
    upsert_sql,
    with_replacement,
)
from hub.ports import DicomInstanceRecord, InstanceMatch, InstanceQuery, PendingStudy, StoreResult

if TYPE_CHECKING:
    from hub.ports import DicomInstanceStore

DDL = (
    """CREATE TABLE IF NOT EXISTS dicom_instance (
        sop_uid    TEXT    PRIMARY KEY,
        study_uid  TEXT    NOT NULL,
        series_uid TEXT    NOT NULL,
        sop_class  TEXT    NOT NULL,
        ts_uid     TEXT    NOT NULL,
        blob_key   TEXT    NOT NULL,
        sha256     TEXT    NOT NULL,
        size       INTEGER NOT NULL,
        version    INTEGER NOT NULL,
        received   TEXT    NOT NULL,
        source     TEXT    NOT NULL,
        summary    BLOB    NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS dicom_instance_study ON dicom_instance (study_uid)",
    """CREATE TABLE IF NOT EXISTS dicom_instance_version (
        sop_uid  TEXT    NOT NULL,
        version  INTEGER NOT NULL,
        blob_key TEXT    NOT NULL,
        sha256   TEXT    NOT NULL,
        size     INTEGER NOT NULL,
        received TEXT    NOT NULL,
        source   TEXT    NOT NULL,
        PRIMARY KEY (sop_uid, version)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS dicom_study_pending (
        study_uid       TEXT    PRIMARY KEY,
        generation      INTEGER NOT NULL,
        quiet_since_ms  INTEGER NOT NULL,
        flush_requested INTEGER NOT NULL DEFAULT 0,
        replacements    BLOB
    ) WITHOUT ROWID""",
)

_SELECT = f"SELECT {COLUMNS} FROM dicom_instance"
_UPSERT = upsert_sql("?")
_KEEP_OLD = (
    f"INSERT OR REPLACE INTO dicom_instance_version ({KEPT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_CHANGE = "INSERT INTO change (res_type, res_id, version, op) VALUES (?, ?, ?, ?)"
_PENDING = (
    "INSERT INTO dicom_study_pending (study_uid, generation, quiet_since_ms, replacements)"
    " VALUES (?, ?, ?, ?) ON CONFLICT (study_uid) DO UPDATE SET"
    " generation = excluded.generation, quiet_since_ms = excluded.quiet_since_ms,"
    " replacements = coalesce(excluded.replacements, replacements)"
)


def _add_query_columns(conn: sqlite3.Connection) -> None:
    """The query-key columns and their indexes (``INDEXED_COLUMNS``), added in place to a
    table made before them and filled from each row's summary."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(dicom_instance)")}
    missing = [name for name in INDEXED_NAMES if name not in present]
    for name in missing:
        conn.execute(f"ALTER TABLE dicom_instance ADD COLUMN {name} TEXT NOT NULL DEFAULT ''")
    if missing:
        rows = conn.execute("SELECT sop_uid, summary FROM dicom_instance").fetchall()
        conn.executemany(
            backfill_sql("?"),
            [(*indexed_params(orjson.loads(summary)), sop) for sop, summary in rows],
        )
    for name, columns in INDEXES:
        conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON dicom_instance ({columns})")


class _Queued:
    __slots__ = ("done", "error", "record", "result")

    def __init__(self, record: DicomInstanceRecord) -> None:
        self.record = record
        self.done = False
        self.result: StoreResult | None = None
        self.error: BaseException | None = None


class SqliteDicomStore:
    """``DicomInstanceStore`` on the engine's SQLite database (see the module doc)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._queue: list[_Queued] = []
        self._queue_lock = threading.Lock()
        self._commit_lock = threading.Lock()
        with db.write() as conn, sqlite_errors():
            for statement in DDL:
                conn.execute(statement)
            _add_query_columns(conn)
        self.batches = 0  # commits made by store(), for the benchmark and tests

    # ------------------------------------------------------------------ writes

    def store(self, record: DicomInstanceRecord) -> StoreResult:
        """Insert or replace one instance (durable when this returns); see the module doc."""
        item = _Queued(record)
        with self._queue_lock:
            self._queue.append(item)
        with self._commit_lock:
            if not item.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._commit(batch)
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    def _commit(self, batch: list[_Queued]) -> None:
        try:
            with self._db.write() as conn:
                for item in batch:
                    try:
                        with self._db.write():  # a savepoint: a failing record fails alone
                            item.result = self._store_one(conn, item.record)
                    except Exception as exc:
                        item.error = exc
            self.batches += 1
        except BaseException as exc:  # the commit itself failed: nothing of the batch is stored
            for item in batch:
                item.result, item.error = None, exc
        finally:
            for item in batch:
                item.done = True

    def _store_one(self, conn: sqlite3.Connection, record: DicomInstanceRecord) -> StoreResult:
        with sqlite_errors():
            row = conn.execute(
                f"{_SELECT} WHERE sop_uid = ?", (record.sop_instance_uid,)
            ).fetchone()
            previous = instance_record(row) if row is not None else None
            if previous is not None and previous.sha256 == record.sha256:
                return StoreResult(previous, stored=False)
            ms = now_ms()
            received = format_ms(ms)
            version = 1 if previous is None else previous.version + 1
            conn.execute(
                _UPSERT, instance_params(record, version, received) + indexed_params(record.summary)
            )
            replacements: bytes | None = None
            replaced = previous is not None
            if previous is not None:
                conn.execute(_KEEP_OLD, kept_params(previous))
                found = conn.execute(
                    "SELECT replacements FROM dicom_study_pending WHERE study_uid = ?",
                    (record.study_instance_uid,),
                ).fetchone()
                known = found[0] if found else None
                replacements = with_replacement(known, record, previous, version, received)
            op = "update" if replaced else "create"
            cur = conn.execute(_CHANGE, (CHANGE_TYPE, record.sop_instance_uid, version, op))
            seq = int(cur.lastrowid or 0)
            conn.execute(_PENDING, (record.study_instance_uid, seq, ms, replacements))
            if previous is not None and previous.study_instance_uid != record.study_instance_uid:
                # The instance moved to another study: the old one must be rebuilt too.
                conn.execute(_PENDING, (previous.study_instance_uid, seq, ms, None))
        stored = stored_record(record, version, received)
        return StoreResult(stored, stored=True, replaced=replaced, previous=previous)

    def request_flush(self, study_instance_uids: Sequence[str]) -> None:
        """Mark the studies for aggregation now (the sender has finished)."""
        if not study_instance_uids:
            return
        with self._db.write() as conn, sqlite_errors():
            conn.executemany(
                "UPDATE dicom_study_pending SET flush_requested = 1 WHERE study_uid = ?",
                [(uid,) for uid in study_instance_uids],
            )

    def mark_aggregated(self, study_instance_uid: str, generation: int) -> bool:
        """Clear the pending row if its generation is still ``generation``."""
        with self._db.write() as conn, sqlite_errors():
            cur = conn.execute(
                "DELETE FROM dicom_study_pending WHERE study_uid = ? AND generation = ?",
                (study_instance_uid, generation),
            )
            return cur.rowcount > 0

    # ------------------------------------------------------------------ reads

    def get(self, sop_instance_uid: str) -> DicomInstanceRecord | None:
        with sqlite_errors():
            row = (
                self._db.reader()
                .execute(f"{_SELECT} WHERE sop_uid = ?", (sop_instance_uid,))
                .fetchone()
            )
        return None if row is None else instance_record(row)

    def instances_of_study(self, study_instance_uid: str) -> list[DicomInstanceRecord]:
        with sqlite_errors():
            rows = (
                self._db.reader()
                .execute(f"{_SELECT} WHERE study_uid = ? ORDER BY sop_uid", (study_instance_uid,))
                .fetchall()
            )
        return [instance_record(r) for r in rows]

    def count(self) -> int:
        with sqlite_errors():
            row = self._db.reader().execute("SELECT count(*) FROM dicom_instance").fetchone()
        return int(row[0])

    def find(
        self, query: InstanceQuery, *, after: str = "", limit: int = 500
    ) -> list[InstanceMatch]:
        sql, params = find_sql(
            query, after, limit, p="?", distinct_list="group_concat(DISTINCT {})"
        )
        with sqlite_errors():
            rows = self._db.reader().execute(sql, params).fetchall()
        return [instance_match(row) for row in rows]

    def pending_studies(self, limit: int = 1000) -> list[PendingStudy]:
        with sqlite_errors():
            rows = (
                self._db.reader()
                .execute(
                    f"SELECT {PENDING_COLUMNS}"
                    " FROM dicom_study_pending ORDER BY quiet_since_ms LIMIT ?",
                    (max(0, limit),),
                )
                .fetchall()
            )
        return [pending_study(row) for row in rows]


if TYPE_CHECKING:  # mypy proves the store implements the port
    _store: DicomInstanceStore = SqliteDicomStore(Database(""))
