"""Connections to one PostgreSQL database, shared by the repository, index, feed and DICOM store.

Concurrency model: a pool of autocommit connections (psycopg_pool). A write is a ``READ
COMMITTED`` transaction on one pooled connection, owned by its thread; ``write()`` entered again on
that thread is a ``SAVEPOINT`` (psycopg's nested ``transaction()``), undone alone if its block
raises. Rows are locked (``SELECT ... FOR UPDATE``) before they are changed, so racing writers,
in this process or another, serialise per resource and see each other's committed versions.

Change-feed records and live-count deltas are kept in memory during the transaction (a
savepoint that rolls back drops its own) and written just before ``COMMIT`` under a
transaction-level advisory lock: ``seq`` values are drawn in the order the holders commit, and
PostgreSQL releases the lock only after the commit is visible, so a reader that sees ``seq`` n
already sees every smaller one (no skipped records). Reads run on their own pooled connection;
several statements that must agree run in one ``REPEATABLE READ`` read-only snapshot.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from adapters.postgres._errors import postgres_errors
from adapters.postgres._schema import SCHEMA_VERSION, STATEMENTS, search_upgrade
from hub.errors import HubError, OutOfResources

log = logging.getLogger("pixelhub.store")

# Advisory lock keys (pg_advisory_*); they are per database.
SCHEMA_LOCK = 0x5058_4855_0001
FEED_LOCK = 0x5058_4855_0002
LEADER_LOCK = 0x5058_4855_0003

Change = tuple[str, str, int, str]  # (type, id, version, op)


def param_id(resource_type: str, name: str) -> int:
    """The pid of a search parameter on a type: 63 bits of a hash, the same in every process."""
    digest = hashlib.blake2b(f"{resource_type}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


@dataclass
class WriteState:
    """The write transaction a thread holds."""

    conn: psycopg.Connection[tuple[Any, ...]]
    changes: list[Change] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


class Database:
    """The pool, the per-thread write transactions and the schema of one database."""

    def __init__(
        self, conninfo: str, *, pool_min: int = 1, pool_max: int = 20, timeout: float = 30.0
    ) -> None:
        self.conninfo = conninfo
        self.timeout = timeout
        self._closed = False
        self._local = threading.local()
        self._known_params: set[tuple[str, str]] = set()
        with postgres_errors():
            self._create_schema()
        self.pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = ConnectionPool(
            conninfo,
            min_size=pool_min,
            max_size=max(pool_min, pool_max),
            kwargs={"autocommit": True},
            timeout=timeout,
            open=False,
            name="pixelhub",
        )
        try:
            with postgres_errors():
                self.pool.open(wait=True, timeout=timeout)
        except BaseException:
            self.pool.close()
            raise

    def connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        """A new connection outside the pool (the caller closes it)."""
        return psycopg.connect(self.conninfo, autocommit=True)

    def _create_schema(self) -> None:
        """Create the tables once, and bring a database made by an earlier version up to the
        search layout (``search_upgrade``); two processes opening at once wait on an advisory
        lock. Only what is missing is run: an ``ALTER`` would lock the table for nothing."""
        with self.connect() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            found = conn.execute("SELECT to_regclass('schema_info') IS NOT NULL").fetchone()
            if found is not None and found[0]:
                row = conn.execute("SELECT version FROM schema_info").fetchone()
                version = None if row is None else row[0]
                if version != SCHEMA_VERSION:
                    raise HubError(
                        f"PostgreSQL store has schema version {version}; this PixelHub "
                        f"understands version {SCHEMA_VERSION}"
                    )
            else:
                for statement in STATEMENTS:
                    conn.execute(statement)
                conn.execute("CREATE TABLE schema_info (version integer NOT NULL)")
                conn.execute("INSERT INTO schema_info (version) VALUES (%s)", (SCHEMA_VERSION,))
            columns = {
                (str(table), str(column))
                for table, column in conn.execute(
                    "SELECT table_name, column_name FROM information_schema.columns"
                    " WHERE table_schema = current_schema()"
                )
            }
            relations = {
                str(name)
                for (name,) in conn.execute(
                    "SELECT c.relname FROM pg_class c"
                    " WHERE c.relnamespace = current_schema()::regnamespace"
                )
            }
            for statement in search_upgrade(columns, relations):
                log.info("PostgreSQL store: %s (once)", statement)
                conn.execute(statement)

    def _check_open(self) -> None:
        if self._closed:
            raise OutOfResources("PostgreSQL store closed")

    # ---------------------------------------------------------------------------------------
    @contextmanager
    def connection(
        self, timeout: float | None = None
    ) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """A pooled autocommit connection for one or more independent statements (waiting at
        most ``timeout`` seconds for one, the pool's timeout by default)."""
        self._check_open()
        wait = self.timeout if timeout is None else timeout
        with postgres_errors(), self.pool.connection(timeout=wait) as conn:
            yield conn

    @contextmanager
    def snapshot(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """Several reads that see one snapshot (``REPEATABLE READ``, read-only).

        Its statements are not prepared on the server: a search's best plan depends on its
        values, and once prepared PostgreSQL may switch to one generic plan for all of them. At
        200,000 studies such a plan drove a modality + month search by the modality (38,000
        rows, each joined with the month's 2,000) and took over 20 s; planned with its values,
        0.5 s."""
        with self.connection() as conn:
            threshold = conn.prepare_threshold
            conn.prepare_threshold = None
            try:
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                try:
                    yield conn
                except BaseException:
                    if not conn.closed:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                conn.prepare_threshold = threshold

    def held_write(self) -> WriteState | None:
        state: WriteState | None = getattr(self._local, "write", None)
        return state

    @contextmanager
    def write(self) -> Iterator[WriteState]:
        """A write transaction: commits on normal exit, rolls back on exception. Re-entered on the
        thread that holds it, a savepoint of the outer transaction."""
        state = self.held_write()
        if state is not None:
            with self._savepoint(state):
                yield state
            return
        with self.connection() as conn:
            state = WriteState(conn)
            self._local.write = state
            try:
                with postgres_errors(), conn.transaction():
                    yield state
                    self._flush(state)
            finally:
                self._local.write = None

    @contextmanager
    def _savepoint(self, state: WriteState) -> Iterator[None]:
        mark, counts = len(state.changes), dict(state.counts)
        try:
            with postgres_errors(), state.conn.transaction():
                yield
        except BaseException:
            del state.changes[mark:]
            state.counts = counts
            raise

    def _flush(self, state: WriteState) -> None:
        """Append the change records and count deltas, in commit order (see the module doc)."""
        if not state.changes:
            return
        conn = state.conn
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (FEED_LOCK,))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO change (seq, res_type, res_id, version, op)"
                " VALUES (nextval('change_seq'), %s, %s, %s, %s)",
                state.changes,
            )
            deltas = sorted((t, n) for t, n in state.counts.items() if n)
            if deltas:
                cur.executemany(
                    "INSERT INTO type_count (res_type, live) VALUES (%s, %s) ON CONFLICT (res_type)"
                    " DO UPDATE SET live = type_count.live + excluded.live",
                    deltas,
                )

    # ---------------------------------------------------------------------------------------
    def pids(
        self, conn: psycopg.Connection[tuple[Any, ...]], resource_type: str | None, name: str
    ) -> list[int]:
        """The pids of parameter ``name`` on ``resource_type``, on every type that has it if
        ``None``."""
        if resource_type is not None:
            return [param_id(resource_type, name)]
        rows = conn.execute("SELECT pid FROM param WHERE name = %s ORDER BY pid", (name,))
        return [int(r[0]) for r in rows]

    def pid_for_write(self, resource_type: str, name: str) -> int:
        """The pid of ``(resource_type, name)``, its ``param`` row committed first (on its own
        connection: a row for a parameter no resource ends up having is harmless)."""
        key = (resource_type, name)
        pid = param_id(resource_type, name)
        if key not in self._known_params:
            with self.connection() as conn:
                conn.execute(
                    "INSERT INTO param (pid, res_type, name) VALUES (%s, %s, %s)"
                    " ON CONFLICT DO NOTHING",
                    (pid, resource_type, name),
                )
            self._known_params.add(key)
        return pid

    # ---------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the pool; later calls raise ``OutOfResources``."""
        if self._closed:
            return
        self._closed = True
        self.pool.close()
