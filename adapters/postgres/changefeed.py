"""The change feed on PostgreSQL: the ``change`` table, appended just before each write commits
under an advisory lock, so ``seq`` strictly increases in commit order across every process (see
``adapters.postgres._db``), and the projectors' cursors."""

from __future__ import annotations

from typing import cast

from adapters.postgres._db import Database
from hub.ports import Change, ChangeOp


class PostgresChangeFeed:
    def __init__(self, db: Database) -> None:
        self._db = db

    def last_seq(self) -> int:
        with self._db.connection() as conn:
            row = conn.execute("SELECT max(seq) FROM change").fetchone()
        return int(row[0] or 0) if row else 0

    def read_since(self, seq: int, limit: int = 1000) -> list[Change]:
        """Changes with ``seq`` greater than ``seq``, ascending, at most ``limit``."""
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT seq, res_type, res_id, version, op FROM change WHERE seq > %s"
                " ORDER BY seq LIMIT %s",
                (seq, max(0, limit)),
            ).fetchall()
        return [
            Change(int(s), str(t), str(i), int(v), cast(ChangeOp, op)) for s, t, i, v, op in rows
        ]

    def cursor(self, projector: str) -> int:
        with self._db.connection() as conn:
            row = conn.execute(
                "SELECT seq FROM cursor WHERE projector = %s", (projector,)
            ).fetchone()
        return 0 if row is None else int(row[0])

    def set_cursor(self, projector: str, seq: int) -> None:
        """Durably record ``projector``'s position; inside a transaction already held by this
        thread it commits with that transaction (so a projector's writes and its cursor move
        together)."""
        with self._db.write() as state:
            state.conn.execute(
                "INSERT INTO cursor (projector, seq) VALUES (%s, %s)"
                " ON CONFLICT (projector) DO UPDATE SET seq = excluded.seq",
                (projector, seq),
            )
