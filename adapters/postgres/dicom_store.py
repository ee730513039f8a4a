"""``PostgresDicomStore``: the index of stored DICOM instances (``hub.ports.DicomInstanceStore``)
on PostgreSQL, with the semantics of the SQLite one.

Tables (``adapters.postgres._schema``): ``dicom_instance`` (one row per SOP Instance UID: blob,
hash, size, version, header summary), ``dicom_instance_version`` (earlier versions of replaced
instances), ``dicom_study_pending`` (studies with instances stored since their last aggregation:
generation, when the last one arrived, flush requested, replacements).

``store`` writes the row, the change-feed record (``DicomInstance``/SOP Instance UID) and the
pending-study row in one transaction, the instance row locked first (``FOR UPDATE``), so senders
racing on one instance, in any process, serialise. The study's ``generation`` is drawn from the
``dicom_generation`` sequence, so it grows with every stored instance (DICOM PS3.4 B.2.3: success
is answered only after this commit).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from adapters.postgres._db import Database, WriteState
from adapters.postgres._schema import DICOM_QUERY_UPGRADE
from hub.imaging.instance_rows import (
    CHANGE_TYPE,
    COLUMNS,
    INDEXED_NAMES,
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
from hub.search.matching import format_ms, now_ms

if TYPE_CHECKING:
    from hub.ports import DicomInstanceStore

_UPGRADE_LOCK = 0x5049584844434D51  # pg_advisory_xact_lock key of the query-column upgrade
_SELECT = f"SELECT {COLUMNS} FROM dicom_instance"
_UPSERT = upsert_sql("%s")
_KEEP_OLD = (
    "INSERT INTO dicom_instance_version"
    f" ({KEPT_COLUMNS})"
    " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (sop_uid, version) DO UPDATE SET"
    " blob_key = excluded.blob_key, sha256 = excluded.sha256, size = excluded.size,"
    " received = excluded.received, source = excluded.source"
)
_PENDING = (
    "INSERT INTO dicom_study_pending (study_uid, generation, quiet_since_ms, replacements)"
    " VALUES (%s, nextval('dicom_generation'), %s, %s) ON CONFLICT (study_uid) DO UPDATE SET"
    " generation = excluded.generation, quiet_since_ms = excluded.quiet_since_ms,"
    " replacements = coalesce(excluded.replacements, dicom_study_pending.replacements)"
)


class PostgresDicomStore:
    """``DicomInstanceStore`` on the engine's PostgreSQL database (see the module doc)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._upgrade()

    def _upgrade(self) -> None:
        """The query-key columns and indexes (``DICOM_QUERY_UPGRADE``), added in place to a
        database made before them, and filled from each row's summary; one process at a time."""
        with self._db.write() as state:
            conn = state.conn
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_UPGRADE_LOCK,))
            present = {
                row[0]
                for row in conn.execute(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_name = 'dicom_instance' AND table_schema = current_schema()"
                ).fetchall()
            }
            missing = [name for name in INDEXED_NAMES if name not in present]
            for statement in DICOM_QUERY_UPGRADE:
                conn.execute(statement)
            if missing:
                rows = conn.execute("SELECT sop_uid, summary FROM dicom_instance").fetchall()
                params: list[tuple[Any, ...]] = [
                    (*indexed_params(orjson.loads(summary)), sop) for sop, summary in rows
                ]
                if params:
                    with conn.cursor() as cur:
                        cur.executemany(backfill_sql("%s"), params)

    # ------------------------------------------------------------------ writes

    def store(self, record: DicomInstanceRecord) -> StoreResult:
        """Insert or replace one instance (durable when this returns); see the module doc."""
        with self._db.write() as state:
            return self._store_one(state, record)

    def _store_one(self, state: WriteState, record: DicomInstanceRecord) -> StoreResult:
        conn = state.conn
        row = conn.execute(
            f"{_SELECT} WHERE sop_uid = %s FOR UPDATE", (record.sop_instance_uid,)
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
        if previous is not None:
            conn.execute(_KEEP_OLD, kept_params(previous))
            found = conn.execute(
                "SELECT replacements FROM dicom_study_pending WHERE study_uid = %s FOR UPDATE",
                (record.study_instance_uid,),
            ).fetchone()
            known = found[0] if found else None
            replacements = with_replacement(known, record, previous, version, received)
        state.changes.append(
            (CHANGE_TYPE, record.sop_instance_uid, version, "update" if previous else "create")
        )
        conn.execute(_PENDING, (record.study_instance_uid, ms, replacements))
        if previous is not None and previous.study_instance_uid != record.study_instance_uid:
            # The instance moved to another study: the old one must be rebuilt too.
            conn.execute(_PENDING, (previous.study_instance_uid, ms, None))
        stored = stored_record(record, version, received)
        return StoreResult(stored, stored=True, replaced=previous is not None, previous=previous)

    def request_flush(self, study_instance_uids: Sequence[str]) -> None:
        """Mark the studies for aggregation now (the sender has finished)."""
        if not study_instance_uids:
            return
        with self._db.write() as state:
            state.conn.execute(
                "UPDATE dicom_study_pending SET flush_requested = true"
                " WHERE study_uid = ANY(%s::text[])",
                (list(study_instance_uids),),
            )

    def mark_aggregated(self, study_instance_uid: str, generation: int) -> bool:
        """Clear the pending row if its generation is still ``generation``."""
        with self._db.write() as state:
            cur = state.conn.execute(
                "DELETE FROM dicom_study_pending WHERE study_uid = %s AND generation = %s",
                (study_instance_uid, generation),
            )
            return cur.rowcount > 0

    # ------------------------------------------------------------------ reads

    def get(self, sop_instance_uid: str) -> DicomInstanceRecord | None:
        with self._db.connection() as conn:
            row = conn.execute(f"{_SELECT} WHERE sop_uid = %s", (sop_instance_uid,)).fetchone()
        return None if row is None else instance_record(row)

    def instances_of_study(self, study_instance_uid: str) -> list[DicomInstanceRecord]:
        with self._db.connection() as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE study_uid = %s ORDER BY sop_uid", (study_instance_uid,)
            ).fetchall()
        return [instance_record(r) for r in rows]

    def count(self) -> int:
        with self._db.connection() as conn:
            row = conn.execute("SELECT count(*) FROM dicom_instance").fetchone()
        return 0 if row is None else int(row[0])

    def find(
        self, query: InstanceQuery, *, after: str = "", limit: int = 500
    ) -> list[InstanceMatch]:
        sql, params = find_sql(
            query, after, limit, p="%s", distinct_list="string_agg(DISTINCT {}, ',')"
        )
        with self._db.connection() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [instance_match(row) for row in rows]

    def pending_studies(self, limit: int = 1000) -> list[PendingStudy]:
        with self._db.connection() as conn:
            rows = conn.execute(
                f"SELECT {PENDING_COLUMNS}"
                " FROM dicom_study_pending ORDER BY quiet_since_ms, study_uid LIMIT %s",
                (max(0, limit),),
            ).fetchall()
        return [pending_study(row) for row in rows]


if TYPE_CHECKING:  # mypy proves the store implements the port
    _store: DicomInstanceStore = PostgresDicomStore(Database(""))
