"""The store of record on SQLite: current versions, full history with tombstones, and the change
feed appended in the same transaction (FHIR R4 http.html#update, #delete, #vread, #history)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import orjson

from adapters.sqlite._db import Database
from adapters.sqlite._errors import sqlite_errors
from adapters.sqlite._index import clear_index, write_index, write_index_many
from adapters.sqlite._time import format_ms, now_ms, parse_instant
from adapters.sqlite.search import SQLITE, live_count, run_search
from hub import sql_store
from hub.errors import HubError
from hub.ports import ChangeOp, HistoryPage, StoredResource
from hub.search.model import IndexEntry, Key, SearchQuery, SearchResult
from hub.sql_store import serialise, stored, version_mismatch

_READ = (
    "SELECT v.version, v.last_updated, v.data, v.method FROM resource r"
    " JOIN version v ON v.res_pk = r.pk AND v.version = r.version"
    " WHERE r.res_type = ? AND r.res_id = ?"
)
_VREAD = (
    "SELECT v.version, v.last_updated, v.data, v.method FROM resource r"
    " JOIN version v ON v.res_pk = r.pk WHERE r.res_type = ? AND r.res_id = ? AND v.version = ?"
)
_CURRENT = "SELECT pk, version, deleted FROM resource WHERE res_type = ? AND res_id = ?"
_INSERT_VERSION = (
    "INSERT INTO version (res_pk, res_type, version, last_updated, last_updated_ms, method, data)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_CHANGE = "INSERT INTO change (res_type, res_id, version, op) VALUES (?, ?, ?, ?)"
_COUNT_UP = (
    "INSERT INTO type_count (res_type, live) VALUES (?, ?)"
    " ON CONFLICT (res_type) DO UPDATE SET live = live + excluded.live"
)
_IN_CHUNK = 500  # ids per ``IN (...)`` probe, well under SQLite's bound-parameter limit
_COUNT_DOWN = "UPDATE type_count SET live = live - 1 WHERE res_type = ?"


def _read(conn: sqlite3.Connection, resource_type: str, id: str) -> StoredResource | None:
    row = conn.execute(_READ, (resource_type, id)).fetchone()
    return None if row is None else stored(resource_type, id, row)


class SqliteTransaction:
    """One write transaction on the writer connection (FHIR R4 http.html#transaction)."""

    def __init__(self, db: Database, conn: sqlite3.Connection) -> None:
        self._db = db
        self._live: sqlite3.Connection | None = conn
        self.failed: BaseException | None = None

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._live is None:
            raise RuntimeError("This transaction is over: use it inside its `with` block only")
        if self.failed is not None:
            raise HubError("This transaction was aborted by a failed write") from self.failed
        return self._live

    def end(self) -> None:
        self._live = None

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A write that fails half-way aborts the whole transaction (nothing half-written can
        commit, even if the caller catches the error and carries on)."""
        try:
            with sqlite_errors():
                yield
        except BaseException as exc:
            self.failed = exc
            raise

    def read(self, resource_type: str, id: str) -> StoredResource | None:
        with sqlite_errors():
            return _read(self._conn, resource_type, id)

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
        conn = self._conn
        with sqlite_errors():
            row = conn.execute(_CURRENT, (resource_type, id)).fetchone()
        current = None if row is None else int(row[1])
        if expected_version is not None and expected_version != current:
            raise version_mismatch(resource_type, id, expected_version, current)
        ms = now_ms() if last_updated is None else parse_instant(last_updated)
        stamp = format_ms(ms)
        version = (current or 0) + 1
        data = serialise(resource_type, id, resource, version, stamp)
        method: ChangeOp = "create" if row is None or row[2] else "update"
        with self._writing():
            if row is None:
                cur = conn.execute(
                    "INSERT INTO resource (res_type, res_id, version, last_updated_ms, deleted)"
                    " VALUES (?, ?, ?, ?, 0)",
                    (resource_type, id, version, ms),
                )
                pk = int(cur.lastrowid or 0)
            else:
                pk = int(row[0])
                conn.execute(
                    "UPDATE resource SET version = ?, last_updated_ms = ?, deleted = 0"
                    " WHERE pk = ?",
                    (version, ms, pk),
                )
                if not row[2]:
                    clear_index(conn, pk)
            conn.execute(_INSERT_VERSION, (pk, resource_type, version, stamp, ms, method, data))
            write_index(self._db, conn, pk, resource_type, index)
            conn.execute(_INSERT_CHANGE, (resource_type, id, version, method))
            if method == "create":
                conn.execute(_COUNT_UP, (resource_type, 1))
        return StoredResource(resource_type, id, version, stamp, data, method)

    def create_many(
        self,
        resource_type: str,
        items: Sequence[tuple[str, dict[str, object], Sequence[IndexEntry]]],
    ) -> int:
        """Create each ``(id, resource, index)`` as version 1 unless its id is stored already;
        the rows of all of them go in with one ``executemany`` per table."""
        conn = self._conn
        fresh: dict[str, tuple[dict[str, object], Sequence[IndexEntry]]] = {}
        for id, resource, index in items:
            fresh.setdefault(id, (resource, index))
        ids = list(fresh)
        with sqlite_errors():
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start : start + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                for (stored_id,) in conn.execute(
                    f"SELECT res_id FROM resource WHERE res_type = ? AND res_id IN ({marks})",
                    (resource_type, *chunk),
                ):
                    fresh.pop(stored_id, None)
        if not fresh:
            return 0
        ms = now_ms()
        stamp = format_ms(ms)
        with self._writing():
            # the writer holds the lock: the next rowids are free to assign
            first = int(conn.execute("SELECT coalesce(max(pk), 0) + 1 FROM resource").fetchone()[0])
            rows = list(enumerate(fresh.items(), start=first))
            conn.executemany(
                "INSERT INTO resource (pk, res_type, res_id, version, last_updated_ms, deleted)"
                " VALUES (?, ?, ?, 1, ?, 0)",
                [(pk, resource_type, id, ms) for pk, (id, _) in rows],
            )
            conn.executemany(
                _INSERT_VERSION,
                [
                    (pk, resource_type, 1, stamp, ms, "create",
                     serialise(resource_type, id, resource, 1, stamp))
                    for pk, (id, (resource, _)) in rows
                ],
            )  # fmt: skip
            write_index_many(
                self._db, conn, resource_type, [(pk, index) for pk, (_, (_, index)) in rows]
            )
            conn.executemany(
                _INSERT_CHANGE, [(resource_type, id, 1, "create") for _, (id, _) in rows]
            )
            conn.execute(_COUNT_UP, (resource_type, len(rows)))
        return len(rows)

    def delete(
        self, resource_type: str, id: str, *, expected_version: int | None = None
    ) -> StoredResource | None:
        """Write a tombstone and drop the index rows (R4 http.html#delete)."""
        conn = self._conn
        with sqlite_errors():
            row = conn.execute(_CURRENT, (resource_type, id)).fetchone()
        if row is None or row[2]:
            return None
        pk, current = int(row[0]), int(row[1])
        if expected_version is not None and expected_version != current:
            raise version_mismatch(resource_type, id, expected_version, current)
        ms = now_ms()
        stamp = format_ms(ms)
        version = current + 1
        with self._writing():
            conn.execute(
                "UPDATE resource SET version = ?, last_updated_ms = ?, deleted = 1 WHERE pk = ?",
                (version, ms, pk),
            )
            conn.execute(_INSERT_VERSION, (pk, resource_type, version, stamp, ms, "delete", None))
            clear_index(conn, pk)
            conn.execute(_INSERT_CHANGE, (resource_type, id, version, "delete"))
            conn.execute(_COUNT_DOWN, (resource_type,))
        return StoredResource(resource_type, id, version, stamp, None, "delete")

    def purge(self, resource_type: str, id: str) -> bool:
        """Remove every version and the index rows; the change feed records a deletion."""
        conn = self._conn
        with sqlite_errors():
            row = conn.execute(_CURRENT, (resource_type, id)).fetchone()
        if row is None:
            return False
        pk, current, deleted = int(row[0]), int(row[1]), bool(row[2])
        with self._writing():
            clear_index(conn, pk)
            conn.execute("DELETE FROM version WHERE res_pk = ?", (pk,))
            conn.execute("DELETE FROM resource WHERE pk = ?", (pk,))
            conn.execute(_INSERT_CHANGE, (resource_type, id, current + 1, "delete"))
            if not deleted:
                conn.execute(_COUNT_DOWN, (resource_type,))
        return True

    def search(self, query: SearchQuery) -> SearchResult:
        """Search on the writer connection, so this transaction's own writes are seen."""
        with sqlite_errors():
            return run_search(self._db, self._conn, query)


class SqliteRepository:
    """Reads on the calling thread's reader connection; writes through ``transaction()``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @contextmanager
    def transaction(self) -> Iterator[SqliteTransaction]:
        """A write transaction; entered again on the thread that holds one, a savepoint of it:
        undone alone if it raises, the outer transaction going on (what HL7 group commit uses)."""
        with self._db.write() as conn:
            tx = SqliteTransaction(self._db, conn)
            try:
                yield tx
                if tx.failed is not None:
                    raise HubError("Transaction rolled back: a write in it failed") from tx.failed
            finally:
                tx.end()

    def read(self, resource_type: str, id: str) -> StoredResource | None:
        with sqlite_errors():
            return _read(self._db.reader(), resource_type, id)

    def vread(self, resource_type: str, id: str, version: int) -> StoredResource | None:
        """R4 http.html#vread; a tombstone version has ``data=None``."""
        with sqlite_errors():
            row = self._db.reader().execute(_VREAD, (resource_type, id, version)).fetchone()
        return None if row is None else stored(resource_type, id, row)

    def read_many(self, keys: Sequence[Key]) -> list[StoredResource]:
        by_type: dict[str, list[str]] = {}
        for t, i in keys:
            by_type.setdefault(t, []).append(i)
        found: dict[Key, StoredResource] = {}
        with self._db.snapshot() as conn, sqlite_errors():
            for t, ids in by_type.items():
                rows = conn.execute(
                    "SELECT r.res_id, v.version, v.last_updated, v.data, v.method FROM resource r"
                    " JOIN version v ON v.res_pk = r.pk AND v.version = r.version"
                    " WHERE r.res_type = ? AND r.deleted = 0"
                    " AND r.res_id IN (SELECT value FROM json_each(?))",
                    (t, orjson.dumps(ids).decode()),
                )
                for res_id, *rest in rows:
                    found[(t, res_id)] = stored(t, res_id, rest)
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
        with self._db.snapshot() as conn, sqlite_errors():
            return sql_store.history(
                SQLITE, conn, resource_type, id, since=since, at=at, count=count, offset=offset
            )

    def scan(
        self, resource_type: str | None = None, *, after: Key | None = None, limit: int = 1000
    ) -> list[StoredResource]:
        with self._db.snapshot() as conn, sqlite_errors():
            return sql_store.scan(SQLITE, conn, resource_type, after=after, limit=limit)

    def count(self, resource_type: str | None = None) -> int:
        """Live resources, from the per-type counters (no scan)."""
        with sqlite_errors():
            return live_count(self._db.reader(), resource_type)
