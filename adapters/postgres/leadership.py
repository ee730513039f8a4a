"""Projector leadership across replicas: a session-level advisory lock (``pg_try_advisory_lock``)
held on a dedicated connection (DESIGN.md, Scale: one projector leader per feed).

The lock lives as long as that connection's session: if the process dies or the connection is
lost, PostgreSQL releases it and another replica's ``acquire()`` gets it. TCP keepalives make a
silently dropped connection end within about half a minute on the server side too.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Any

import psycopg

from adapters.postgres._db import LEADER_LOCK

if TYPE_CHECKING:
    from hub.ports import Leadership

log = logging.getLogger(__name__)

_KEEPALIVE: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


class PostgresLeadership:
    """``acquire()`` -> True while this process holds the lock (non-blocking, idempotent);
    a lost connection is noticed at the next ``acquire()``, which then returns False, and a
    later one tries to take the lock again. ``release()`` gives it up."""

    def __init__(self, conninfo: str, key: int = LEADER_LOCK) -> None:
        self._conninfo = conninfo
        self._key = key
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._held = False

    @property
    def held(self) -> bool:
        return self._held

    def acquire(self) -> bool:
        with self._lock:
            if self._held:
                if self._alive():
                    return True
                log.warning("Projector leadership lost: its PostgreSQL connection ended")
                self._drop()
                return False
            try:
                if self._conn is None:
                    self._conn = psycopg.connect(
                        self._conninfo, autocommit=True, connect_timeout=5, **_KEEPALIVE
                    )
                row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
            except psycopg.Error:
                self._drop()
                return False
            self._held = bool(row and row[0])
            return self._held

    def _alive(self) -> bool:
        conn = self._conn
        if conn is None or conn.closed:
            return False
        try:
            conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def _drop(self) -> None:
        self._held = False
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def release(self) -> None:
        """Give up leadership (closing the session releases the lock in any case)."""
        with self._lock:
            if self._held and self._conn is not None and not self._conn.closed:
                with contextlib.suppress(psycopg.Error):
                    self._conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
            self._drop()


if TYPE_CHECKING:  # mypy proves the port is implemented
    _leadership: Leadership = PostgresLeadership("")
