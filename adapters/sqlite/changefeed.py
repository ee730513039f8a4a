"""The change feed on SQLite: the ``change`` table, appended by every put/delete in the same
transaction (``seq`` is AUTOINCREMENT, so strictly increasing in commit order with one writer at a
time), and the projectors' cursors."""

from __future__ import annotations

from typing import cast

from adapters.sqlite._db import Database
from adapters.sqlite._errors import sqlite_errors
from hub.ports import Change, ChangeOp


class SqliteChangeFeed:
    def __init__(self, db: Database) -> None:
        self._db = db

    def last_seq(self) -> int:
        with sqlite_errors():
            row = self._db.reader().execute("SELECT max(seq) FROM change").fetchone()
        return int(row[0] or 0)

    def read_since(self, seq: int, limit: int = 1000) -> list[Change]:
        """Changes with ``seq`` greater than ``seq``, ascending, at most ``limit``."""
        with sqlite_errors():
            rows = self._db.reader().execute(
                "SELECT seq, res_type, res_id, version, op FROM change WHERE seq > ?"
                " ORDER BY seq LIMIT ?",
                (seq, max(0, limit)),
            )
            return [Change(s, t, i, v, cast(ChangeOp, op)) for s, t, i, v, op in rows]

    def cursor(self, projector: str) -> int:
        with sqlite_errors():
            row = (
                self._db.reader()
                .execute("SELECT seq FROM cursor WHERE projector = ?", (projector,))
                .fetchone()
            )
        return 0 if row is None else int(row[0])

    def set_cursor(self, projector: str, seq: int) -> None:
        """Durably record ``projector``'s position; inside a transaction already held by this
        thread it commits with that transaction (so a projector's writes and its cursor move
        together)."""
        with self._db.write() as conn, sqlite_errors():
            conn.execute(
                "INSERT INTO cursor (projector, seq) VALUES (?, ?)"
                " ON CONFLICT (projector) DO UPDATE SET seq = excluded.seq",
                (projector, seq),
            )
