"""FHIR R4 search (search.html) on PostgreSQL: the SQL compiler is ``hub.search.sql``; this
module gives it PostgreSQL's dialect and connections.

PostgreSQL's spelling: ``%s`` placeholders, ``TRUE``/``FALSE``, lists bound as one array parameter
(``= ANY(%s)``, ``unnest(%s::bigint[])``). Long text is indexed by its first ``KEY`` characters
(a stored key column, or ``left(col, KEY)``): equality and prefix tests compare that key (an
index range), and the whole value only when the searched value is that long.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from adapters.postgres._db import Database
from adapters.postgres._index import clear_index, write_index
from adapters.postgres._schema import DATE_SPAN, KEY, KEY_COLUMNS
from hub.search import sql
from hub.search.matching import PREFIX_TOP
from hub.search.model import IndexEntry, Key, SearchQuery, SearchResult
from hub.search.sql import Cond, Sql

Conn = psycopg.Connection[tuple[Any, ...]]


class PostgresDialect:
    """``hub.search.sql.Dialect`` for PostgreSQL."""

    p = "%s"
    true = "TRUE"
    false = "FALSE"
    by_pk = ""  # the planner picks the primary key without a hint
    position = "strpos"
    name_subqueries = True
    key_chars: int | None = KEY

    def key(self, col: str) -> str:
        """The stored key column of ``alias.col`` (``KEY_COLUMNS``), else ``left(col, KEY)``."""
        alias, _, name = col.rpartition(".")
        stored = _KEYED.get(name)
        if stored is None:
            return f"left({col}, {KEY})"
        return f"{alias}.{stored}" if alias else stored

    def live(self, deleted: str) -> str:
        return f"NOT {deleted}"

    def in_list(self, col: str, values: list[Any], cast: str | None, negate: bool = False) -> Sql:
        param = f"%s::{cast}[]" if cast else "%s"
        if negate:
            return Sql(f"NOT ({col} = ANY({param}))", [list(values)])
        return Sql(f"{col} = ANY({param})", [list(values)])

    def in_pks(self, col: str, pks: list[int]) -> Sql:
        return Sql(f"{col} IN (SELECT unnest(%s::bigint[]))", [pks])

    def text_eq(self, col: str, value: str) -> Cond:
        """``col = value`` through its key's index."""
        key = self.key(col)
        if len(value) < KEY:
            return Cond(f"{key} = %s", [value], True)
        return Cond(f"{key} = %s AND {col} = %s", [value[:KEY], value], True)

    def text_prefix(self, col: str, prefix: str) -> Cond:
        """``col`` starts with ``prefix``, as a range of its key's index."""
        key, start = self.key(col), prefix[:KEY]
        in_range = f"{key} >= %s AND {key} < %s"
        if len(prefix) > KEY:
            whole = f"{in_range} AND starts_with({col}, %s)"
            return Cond(whole, [start, start + PREFIX_TOP, prefix], True)
        return Cond(in_range, [start, start + PREFIX_TOP], True)

    def param_starts_with(self, col: str) -> str:
        return f"starts_with(%s::text, {col})"


_KEYED = {source: name for keys in KEY_COLUMNS.values() for name, source in keys.items()}
POSTGRES = PostgresDialect()


def live_count(conn: Conn, resource_type: str | None, pending: dict[str, int] | None = None) -> int:
    """Live resources of ``resource_type`` (all types if ``None``), from ``type_count``, plus
    the ``pending`` deltas of the transaction ``conn`` is in."""
    if resource_type is None:
        delta = sum((pending or {}).values())
    else:
        delta = (pending or {}).get(resource_type, 0)
    return sql.live_count(POSTGRES, conn, resource_type) + delta


def run_search(
    db: Database, conn: Conn, query: SearchQuery, pending: dict[str, int] | None = None
) -> SearchResult:
    """Answer ``query`` on ``conn`` (a read snapshot, or a write transaction whose live-count
    deltas are ``pending``)."""
    return sql.run_search(
        POSTGRES,
        conn,
        lambda rtype, name: db.pids(conn, rtype, name),
        query,
        lambda rtype: live_count(conn, rtype, pending),
        lambda pids: date_span(conn, pids),
    )


def date_span(conn: Conn, pids: list[int]) -> int | None:
    """The widest finite stored date range of ``pids`` (``hub.search.sql.DateSpan``)."""
    row = conn.execute(DATE_SPAN, (pids,)).fetchone()
    return None if row is None or row[0] is None else int(row[0])


class PostgresSearchIndex:
    """The synchronous search index: entries are written by ``Transaction.put`` in the same
    database transaction as the resource, so every committed write is searchable at once."""

    synchronous = True

    def __init__(self, db: Database) -> None:
        self._db = db

    def search(self, query: SearchQuery) -> SearchResult:
        """Answer ``query`` on one read snapshot."""
        with self._db.snapshot() as conn:
            return run_search(self._db, conn, query)

    def apply(self, updates: Sequence[tuple[Key, Sequence[IndexEntry] | None, str]]) -> None:
        """Re-index: replace the entries of each existing, live resource (``None`` removes them).

        Not needed to keep this index current (``put`` already writes the entries); it serves
        ``pixelhub reindex`` after extraction rules change. Idempotent; unknown or deleted
        resources are skipped. ``last_updated`` is not used: the resource row already has it.
        """
        if not updates:
            return
        with self._db.write() as state:
            conn = state.conn
            for (resource_type, id), entries, _ in updates:
                row = conn.execute(
                    "SELECT pk FROM resource WHERE res_type = %s AND res_id = %s AND NOT deleted",
                    (resource_type, id),
                ).fetchone()
                if row is None:
                    continue
                clear_index(conn, int(row[0]))
                if entries:
                    write_index(self._db, conn, int(row[0]), resource_type, entries)
