"""FHIR R4 search (search.html) on SQLite: the SQL compiler is ``hub.search.sql``; this module
gives it SQLite's dialect and connections.

SQLite's spelling: ``?`` placeholders, ``1``/``0`` booleans, lists of pks bound as one JSON
array read through ``json_each``, text compared on the columns themselves (``p <= col < p + top``
for a prefix). In correlated predicates and sort keys, value columns are written ``+x.col`` so the
planner seeks the index table by its primary key ``(res_pk, pid)`` instead of scanning a value
index.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from adapters.sqlite._db import Database
from adapters.sqlite._errors import sqlite_errors
from adapters.sqlite._index import clear_index, write_index
from hub.search import sql
from hub.search.matching import DATE_MAX, DATE_MIN
from hub.search.model import IndexEntry, Key, SearchQuery, SearchResult
from hub.search.sql import Cond, Sql, plain_text_prefix


class SqliteDialect:
    """``hub.search.sql.Dialect`` for SQLite."""

    p = "?"
    true = "1"
    false = "0"
    by_pk = "+"
    position = "instr"
    name_subqueries = False
    key_chars: int | None = None

    def key(self, col: str) -> str:
        return col

    def live(self, deleted: str) -> str:
        return f"{deleted} = 0"

    def in_list(self, col: str, values: list[Any], cast: str | None, negate: bool = False) -> Sql:
        neg = "NOT " if negate else ""
        return Sql(f"{col} {neg}IN ({', '.join('?' * len(values))})", list(values))

    def in_pks(self, col: str, pks: list[int]) -> Sql:
        return Sql(f"{col} IN (SELECT value FROM json_each(?))", [orjson.dumps(pks).decode()])

    def text_eq(self, col: str, value: str) -> Cond:
        return Cond(f"{col} = ?", [value], True)

    def text_prefix(self, col: str, prefix: str) -> Cond:
        return plain_text_prefix("?", col, prefix)

    def param_starts_with(self, col: str) -> str:
        return f"substr(?, 1, length({col})) = {col}"


SQLITE = SqliteDialect()


def live_count(conn: sqlite3.Connection, resource_type: str | None) -> int:
    """Live resources of ``resource_type`` (all types if ``None``), from ``type_count``."""
    return sql.live_count(SQLITE, conn, resource_type)


def run_search(db: Database, conn: sqlite3.Connection, query: SearchQuery) -> SearchResult:
    """Answer ``query`` on ``conn`` (a reader snapshot, or the writer inside a transaction)."""
    return sql.run_search(
        SQLITE,
        conn,
        lambda rtype, name: db.pids(conn, rtype, name),
        query,
        lambda rtype: live_count(conn, rtype),
        lambda pids: date_span(conn, pids),
    )


def date_span(conn: sqlite3.Connection, pids: list[int]) -> int | None:
    """The widest finite stored date range of ``pids`` (``hub.search.sql.DateSpan``), one
    descent of ``idx_date_span`` per pid (named: without statistics the planner would prefer a
    range of ``idx_date_high``; the bounds are literals, as a partial index needs)."""
    widths = [
        row[0] for pid in pids for row in conn.execute(_DATE_SPAN, (pid,)) if row[0] is not None
    ]
    return max(widths, default=None)


_DATE_SPAN = (
    "SELECT max(high - low) FROM idx_date INDEXED BY idx_date_span"
    f" WHERE pid = ? AND low > {DATE_MIN} AND high < {DATE_MAX}"
)


class SqliteSearchIndex:
    """The synchronous search index: entries are written by ``Transaction.put`` in the same
    database transaction as the resource, so every committed write is searchable at once."""

    synchronous = True

    def __init__(self, db: Database) -> None:
        self._db = db

    def search(self, query: SearchQuery) -> SearchResult:
        """Answer ``query`` on one read snapshot of this thread's reader connection."""
        with self._db.snapshot() as conn, sqlite_errors():
            return run_search(self._db, conn, query)

    def apply(self, updates: Sequence[tuple[Key, Sequence[IndexEntry] | None, str]]) -> None:
        """Re-index: replace the entries of each existing, live resource (``None`` removes them).

        Not needed to keep this index current (``put`` already writes the entries); it serves
        ``pixelhub reindex`` after extraction rules change. Idempotent; unknown or deleted
        resources are skipped. ``last_updated`` is not used: the resource row already has it.
        """
        if not updates:
            return
        with self._db.write() as conn, sqlite_errors():
            for (resource_type, id), entries, _ in updates:
                row = conn.execute(
                    "SELECT pk FROM resource WHERE res_type = ? AND res_id = ? AND deleted = 0",
                    (resource_type, id),
                ).fetchone()
                if row is None:
                    continue
                clear_index(conn, int(row[0]))
                if entries:
                    write_index(self._db, conn, int(row[0]), resource_type, entries)
