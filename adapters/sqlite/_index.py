"""Writing search index entries (``hub.search.model``) into the ``idx_*`` tables."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from adapters.sqlite._db import Database
from hub.search.model import (
    IndexEntry,
)
from hub.search.sql import index_row

TABLES = (
    "idx_token",
    "idx_string",
    "idx_date",
    "idx_number",
    "idx_quantity",
    "idx_reference",
    "idx_uri",
)

_INSERT = {
    "idx_token": "INSERT INTO idx_token (res_pk, pid, ord, system, code, text_norm, type_system,"
    " type_code, grp, comp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "idx_string": "INSERT INTO idx_string (res_pk, pid, ord, value, norm, grp, comp)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)",
    "idx_date": "INSERT INTO idx_date (res_pk, pid, ord, low, high, grp, comp)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)",
    "idx_number": "INSERT INTO idx_number (res_pk, pid, ord, value, low, high, grp, comp)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    "idx_quantity": "INSERT INTO idx_quantity (res_pk, pid, ord, value, low, high, system, code,"
    " unit, grp, comp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "idx_reference": "INSERT INTO idx_reference (res_pk, pid, ord, target_type, target_id, url,"
    " version, identifier_system, identifier_value, grp, comp)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "idx_uri": "INSERT INTO idx_uri (res_pk, pid, ord, value, grp, comp) VALUES (?, ?, ?, ?, ?, ?)",
}
_DELETE = {t: f"DELETE FROM {t} WHERE res_pk = ?" for t in TABLES}


Row = tuple[object, ...]


def write_index(
    db: Database,
    conn: sqlite3.Connection,
    res_pk: int,
    resource_type: str,
    entries: Sequence[IndexEntry],
) -> None:
    """Insert ``entries`` for resource ``res_pk`` (its previous rows must be gone)."""
    write_index_many(db, conn, resource_type, [(res_pk, entries)])


def write_index_many(
    db: Database,
    conn: sqlite3.Connection,
    resource_type: str,
    resources: Sequence[tuple[int, Sequence[IndexEntry]]],
) -> None:
    """Insert the entries of several resources of one type, one ``executemany`` per table for
    all of them (their previous rows must be gone); ``ord`` numbers the entries of each
    parameter from 0 (stores written before numbered them per table: ``ord > 0`` is then merely
    more often true, which date windows tolerate)."""
    rows: dict[str, list[Row]] = {}
    for res_pk, entries in resources:
        ords: dict[tuple[str, int], int] = {}  # each parameter's entries numbered from 0
        for e in entries:
            pid = db.pid_for_write(conn, resource_type, e.param)
            table, row = index_row(e)
            n = ords[table, pid] = ords.get((table, pid), -1) + 1
            rows.setdefault(table, []).append((res_pk, pid, n, *row, e.group, e.component))
    for table, batch in rows.items():
        conn.executemany(_INSERT[table], batch)


def clear_index(conn: sqlite3.Connection, res_pk: int) -> None:
    """Remove every index row of resource ``res_pk``."""
    for sql in _DELETE.values():
        conn.execute(sql, (res_pk,))
