"""The store of record on PostgreSQL: current versions, full history with tombstones, and the
change feed appended in the same transaction (FHIR R4 http.html#update, #delete, #vread,
#history). Optimistic locking (``If-Match``, http.html#concurrency) holds across processes: the
resource row is locked before its version is compared, so of two racing updates from one
version exactly one succeeds and the other gets ``PreconditionFailed``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from adapters.postgres._db import Database, WriteState
from adapters.postgres._errors import postgres_errors
from adapters.postgres._index import clear_index, write_index
from adapters.postgres.search import POSTGRES, live_count, run_search
from hub import sql_store
from hub.errors import HubError, PreconditionFailed
from hub.ports import ChangeOp, HistoryPage, StoredResource
from hub.search.matching import format_ms, now_ms, parse_instant
from hub.search.model import IndexEntry, Key, SearchQuery, SearchResult
from hub.sql_store import serialise, stored, version_mismatch

Conn = psycopg.Connection[tuple[Any, ...]]

_READ = (
    "SELECT v.version, v.last_updated, v.data, v.method FROM resource r"
    " JOIN version v ON v.res_pk = r.pk AND v.version = r.version"
    " WHERE r.res_type = %s AND r.res_id = %s"
)
_VREAD = (
    "SELECT v.version, v.last_updated, v.data, v.method FROM resource r"
    " JOIN version v ON v.res_pk = r.pk WHERE r.res_type = %s AND r.res_id = %s"
    " AND v.version = %s"
)
_LOCK = "SELECT pk, version, deleted FROM resource WHERE res_type = %s AND res_id = %s FOR UPDATE"
_CREATE = (
    "INSERT INTO resource (res_type, res_id, version, last_updated_ms, deleted)"
    " VALUES (%s, %s, 1, %s, false) ON CONFLICT (res_type, res_id) DO NOTHING RETURNING pk"
)
_INSERT_VERSION = (
    "INSERT INTO version (res_pk, res_type, version, last_updated, last_updated_ms, method, data)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


def _read(conn: Conn, resource_type: str, id: str) -> StoredResource | None:
    row = conn.execute(_READ, (resource_type, id)).fetchone()
    return None if row is None else stored(resource_type, id, row)


class PostgresTransaction:
    """One write transaction (or savepoint) on its thread's connection (R4
    http.html#transaction)."""

    def __init__(self, db: Database, state: WriteState) -> None:
        self._db = db
        self._state: WriteState | None = state
        self.failed: BaseException | None = None

    @property
    def _live(self) -> WriteState:
        if self._state is None:
            raise RuntimeError("This transaction is over: use it inside its `with` block only")
        if self.failed is not None:
            raise HubError("This transaction was aborted by a failed write") from self.failed
        return self._state

    def end(self) -> None:
        self._state = None

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A write that fails half-way aborts the whole transaction (nothing half-written can
        commit, even if the caller catches the error and carries on)."""
        try:
            with postgres_errors():
                yield
        except PreconditionFailed:
            raise  # found before anything was written: the transaction can go on
        except BaseException as exc:
            self.failed = exc
            raise

    def read(self, resource_type: str, id: str) -> StoredResource | None:
        with postgres_errors():
            return _read(self._live.conn, resource_type, id)

    def _lock(self, resource_type: str, id: str) -> tuple[int, int, bool] | None:
        row = self._live.conn.execute(_LOCK, (resource_type, id)).fetchone()
        return None if row is None else (int(row[0]), int(row[1]), bool(row[2]))

    def put(
        self,
        resource_type: str,
        id: str,
        resource: dict[str, object],
        index: Sequence[IndexEntry],
        *,
        expected_version: int | None = None,
        last_updated: str | None = None,
    ) -> StoredResource:
        """Create or update (R4 http.html#update); version = current + 1, 1 on create."""
        state = self._live
        conn = state.conn
        ms = now_ms() if last_updated is None else parse_instant(last_updated)
        stamp = format_ms(ms)
        with self._writing():
            row = self._lock(resource_type, id)
            pk: int | None = None
            method: ChangeOp = "create"
            if row is None:
                if expected_version is not None:
                    raise version_mismatch(resource_type, id, expected_version, None)
                data = serialise(resource_type, id, resource, 1, stamp)
                created = conn.execute(_CREATE, (resource_type, id, ms)).fetchone()
                if created is not None:
                    pk, version = int(created[0]), 1
                else:  # created meanwhile by a transaction that has committed since
                    row = self._lock(resource_type, id)
                    if row is None:  # pragma: no cover - purged again in between
                        raise HubError(f"{resource_type}/{id} changed concurrently, retry")
            if pk is None:
                assert row is not None
                pk, current, deleted = row
                if expected_version is not None and expected_version != current:
                    raise version_mismatch(resource_type, id, expected_version, current)
                version = current + 1
                method = "create" if deleted else "update"
                data = serialise(resource_type, id, resource, version, stamp)
                conn.execute(
                    "UPDATE resource SET version = %s, last_updated_ms = %s, deleted = false"
                    " WHERE pk = %s",
                    (version, ms, pk),
                )
                if not deleted:
                    clear_index(conn, pk)
            with conn.pipeline():  # one round trip for the version and its index rows
                conn.execute(_INSERT_VERSION, (pk, resource_type, version, stamp, ms, method, data))
                write_index(self._db, conn, pk, resource_type, index)
        state.changes.append((resource_type, id, version, method))
        if method == "create":
            state.counts[resource_type] = state.counts.get(resource_type, 0) + 1
        return StoredResource(resource_type, id, version, stamp, data, method)

    def create_many(
        self,
        resource_type: str,
        items: Sequence[tuple[str, dict[str, object], Sequence[IndexEntry]]],
    ) -> int:
        """Create each ``(id, resource, index)`` as version 1 unless its id is stored already."""
        created = 0
        for id, resource, index in items:
            if self.read(resource_type, id) is None:
                self.put(resource_type, id, resource, index)
                created += 1
        return created

    def delete(
        self, resource_type: str, id: str, *, expected_version: int | None = None
    ) -> StoredResource | None:
        """Write a tombstone and drop the index rows (R4 http.html#delete)."""
        state = self._live
        conn = state.conn
        with self._writing():
            row = self._lock(resource_type, id)
            if row is None or row[2]:
                return None
            pk, current, _ = row
            if expected_version is not None and expected_version != current:
                raise version_mismatch(resource_type, id, expected_version, current)
            ms = now_ms()
            stamp = format_ms(ms)
            version = current + 1
            conn.execute(
                "UPDATE resource SET version = %s, last_updated_ms = %s, deleted = true"
                " WHERE pk = %s",
                (version, ms, pk),
            )
            conn.execute(_INSERT_VERSION, (pk, resource_type, version, stamp, ms, "delete", None))
            clear_index(conn, pk)
        state.changes.append((resource_type, id, version, "delete"))
        state.counts[resource_type] = state.counts.get(resource_type, 0) - 1
        return StoredResource(resource_type, id, version, stamp, None, "delete")

    def purge(self, resource_type: str, id: str) -> bool:
        """Remove every version and the index rows; the change feed records a deletion."""
        state = self._live
        conn = state.conn
        with self._writing():
            row = self._lock(resource_type, id)
            if row is None:
                return False
            pk, current, deleted = row
            clear_index(conn, pk)
            conn.execute("DELETE FROM version WHERE res_pk = %s", (pk,))
            conn.execute("DELETE FROM resource WHERE pk = %s", (pk,))
        state.changes.append((resource_type, id, current + 1, "delete"))
        if not deleted:
            state.counts[resource_type] = state.counts.get(resource_type, 0) - 1
        return True

    def search(self, query: SearchQuery) -> SearchResult:
        """Search on this transaction's connection, so its own writes are seen."""
        state = self._live
        with postgres_errors():
            return run_search(self._db, state.conn, query, pending=state.counts)


class PostgresRepository:
    """Reads on pooled connections; writes through ``transaction()``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @contextmanager
    def transaction(self) -> Iterator[PostgresTransaction]:
        """A write transaction; entered again on the thread that holds one, a savepoint of it:
        undone alone if it raises, the outer transaction going on (what HL7 group commit uses)."""
        with self._db.write() as state:
            tx = PostgresTransaction(self._db, state)
            try:
                yield tx
                if tx.failed is not None:
                    raise HubError("Transaction rolled back: a write in it failed") from tx.failed
            finally:
                tx.end()

    def read(self, resource_type: str, id: str) -> StoredResource | None:
        with self._db.connection() as conn:
            return _read(conn, resource_type, id)

    def vread(self, resource_type: str, id: str, version: int) -> StoredResource | None:
        """R4 http.html#vread; a tombstone version has ``data=None``."""
        with self._db.connection() as conn:
            row = conn.execute(_VREAD, (resource_type, id, version)).fetchone()
        return None if row is None else stored(resource_type, id, row)

    def read_many(self, keys: Sequence[Key]) -> list[StoredResource]:
        if not keys:
            return []
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT r.res_type, r.res_id, v.version, v.last_updated, v.data, v.method"
                " FROM unnest(%s::text[], %s::text[]) AS k (t, i)"
                " JOIN resource r ON r.res_type = k.t AND r.res_id = k.i"
                " JOIN version v ON v.res_pk = r.pk AND v.version = r.version"
                " WHERE NOT r.deleted",
                ([t for t, _ in keys], [i for _, i in keys]),
            ).fetchall()
        found = {(t, i): stored(t, i, rest) for t, i, *rest in rows}
        return [found[k] for k in keys if k in found]

    def history(
        self,
        resource_type: str | None,
        id: str | None,
        *,
        since: str | None = None,
        at: str | None = None,
        count: int = 50,
        offset: int = 0,
    ) -> HistoryPage:
        """R4 http.html#history: ``hub.sql_store.history``, on one read snapshot."""
        with self._db.snapshot() as conn:
            return sql_store.history(
                POSTGRES, conn, resource_type, id, since=since, at=at, count=count, offset=offset
            )

    def scan(
        self, resource_type: str | None = None, *, after: Key | None = None, limit: int = 1000
    ) -> list[StoredResource]:
        with self._db.connection() as conn:
            return sql_store.scan(POSTGRES, conn, resource_type, after=after, limit=limit)

    def count(self, resource_type: str | None = None) -> int:
        """Live resources, from the per-type counters (no scan)."""
        with self._db.connection() as conn:
            return live_count(conn, resource_type)
