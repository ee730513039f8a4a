"""Writing search index entries (``hub.search.model``) into the ``idx_*`` tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from adapters.postgres._db import Database
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
_COLUMNS = {
    "idx_token": "system, code, text_norm, type_system, type_code",
    "idx_string": "value, norm",
    "idx_date": "low, high",
    "idx_number": "value, low, high",
    "idx_quantity": "value, low, high, system, code, unit",
    "idx_reference": "target_type, target_id, url, version, identifier_system, identifier_value",
    "idx_uri": "value",
}
_INSERT = {
    t: f"INSERT INTO {t} (res_pk, pid, ord, {cols}, grp, comp) VALUES"
    f" ({', '.join(['%s'] * (len(cols.split(',')) + 5))})"
    for t, cols in _COLUMNS.items()
}
# One round trip: every table probed by its primary key.
_CLEAR = (
    "WITH "
    + ", ".join(f"d{i} AS (DELETE FROM {t} WHERE res_pk = %(pk)s)" for i, t in enumerate(TABLES))
    + " SELECT 1"
)

Row = tuple[object, ...]
Conn = psycopg.Connection[tuple[Any, ...]]


def write_index(
    db: Database, conn: Conn, res_pk: int, resource_type: str, entries: Sequence[IndexEntry]
) -> None:
    """Insert ``entries`` for resource ``res_pk`` (its previous rows must be gone); ``ord``
    numbers the entries of each parameter from 0 (``ord > 0``: several entries)."""
    rows: dict[str, list[Row]] = {}
    ords: dict[tuple[str, int], int] = {}  # each parameter's entries numbered from 0
    for e in entries:
        pid = db.pid_for_write(resource_type, e.param)
        table, row = index_row(e)
        n = ords[table, pid] = ords.get((table, pid), -1) + 1
        rows.setdefault(table, []).append((res_pk, pid, n, *row, e.group, e.component))
    if not rows:
        return
    with conn.cursor() as cur:
        for table, batch in rows.items():
            cur.executemany(_INSERT[table], batch)


def clear_index(conn: Conn, res_pk: int) -> None:
    """Remove every index row of resource ``res_pk``."""
    conn.execute(_CLEAR, {"pk": res_pk})
