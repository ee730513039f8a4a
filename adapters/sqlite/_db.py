"""Connections to one SQLite database file, shared by the repository, index and change feed.

Concurrency model: one *writer* connection, used by one thread at a time under a lock, each unit of
work a ``BEGIN IMMEDIATE`` transaction (a nested ``write()`` on the same thread becomes a
savepoint); one *reader* connection per thread (thread-local), so reads and searches run on their
own WAL snapshot and never wait for the writer. ``synchronous=FULL`` by default: a commit has
reached the disk before ``write()`` returns, so what is acknowledged is durable.

Several processes may write one file (DICOM receiving processes, the audit indexer's process):
their write transactions take turns on an advisory lock on ``<file>-writer`` (``flock``) before
``BEGIN IMMEDIATE``. A process waiting on SQLite's own lock sleeps 1, 2, 5, 10... ms between
tries (its busy handler), far longer than a commit takes; on the advisory lock it tries again
every half millisecond at most.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources

from adapters.sqlite._errors import sqlite_errors
from hub.errors import HubError, OutOfResources
from hub.search.matching import DATE_MAX, DATE_MIN

log = logging.getLogger("pixelhub.store")
SCHEMA_VERSION = 1
SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
# Added after version 1, idempotent, made whenever a store opens (existing stores gain them in
# place): what date windows read (``hub.search.sql``), the widest finite date range of a
# parameter and the resources with several entries of it; the distinct displays of a token
# parameter, walked by ``:text``.
SEARCH_UPGRADE: dict[str, str] = {
    "idx_date_span": f"ON idx_date (pid, high - low) WHERE low > {DATE_MIN} AND high < {DATE_MAX}",
    "idx_date_several": "ON idx_date (pid, res_pk) WHERE ord > 0",
    "idx_token_text": "ON idx_token (pid, text_norm) WHERE text_norm IS NOT NULL",
}


class _Reader:
    """Holds one thread's reader connection; when the thread ends the holder (and with it the
    connection) is released, so the engine keeps only weak references to it."""

    __slots__ = ("__weakref__", "conn")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __del__(self) -> None:
        self.conn.close()


class _ProcessLock:
    """The advisory lock that write transactions of every process on one file take in turn."""

    def __init__(self, path: str) -> None:
        in_memory = not path or path == ":memory:" or path.startswith("file::memory:")
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        self._fd = -1 if in_memory else os.open(f"{path}-writer", flags, 0o600)

    def acquire(self, deadline: float) -> bool:
        """Hold the lock; ``False`` if another process still holds it at ``deadline``."""
        delay = 0.0001
        while self._fd >= 0:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(delay)
                delay = min(2 * delay, 0.0005)
        return True

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1


class Database:
    """The writer, the per-thread readers and the parameter-name dictionary of one file."""

    def __init__(self, path: str, *, synchronous: str = "FULL", busy_timeout_ms: int = 5000):
        if synchronous.upper() not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}, not {synchronous!r}")
        self.path = path
        self.synchronous = synchronous.upper()
        self._busy_ms = busy_timeout_ms
        self._closed = False
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._depth = 0
        self._local = threading.local()
        self._readers: weakref.WeakSet[_Reader] = weakref.WeakSet()
        # (resource type, parameter name) -> pid; only committed pids go in ``_pids``.
        self._pids: dict[tuple[str, str], int] = {}
        self._pending_pids: dict[tuple[str, str], int] = {}
        self._process_lock = _ProcessLock(path)
        with sqlite_errors():
            self._writer = self._connect(cache_kib=32768)
            mode = self._writer.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self.wal = str(mode).lower() == "wal"
            self._create_schema()

    # ---------------------------------------------------------------------------------------
    def _connect(self, *, cache_kib: int = 2048) -> sqlite3.Connection:
        """A connection; readers keep a small page cache because reads go through the shared
        memory map, so memory stays bounded however many threads read (one reader each)."""
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_ms / 1000,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=512,
        )
        conn.execute(f"PRAGMA busy_timeout={int(self._busy_ms)}")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
        conn.execute("PRAGMA mmap_size=268435456")
        return conn

    def _create_schema(self) -> None:
        """Create the tables once, and add ``SEARCH_UPGRADE``'s indexes to a store made
        before them."""
        conn = self._writer
        if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            with self._schema_transaction():
                found = conn.execute("PRAGMA user_version").fetchone()[0]
                if found == 0:
                    for statement in _schema_statements():
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                elif found != SCHEMA_VERSION:
                    raise HubError(
                        f"SQLite store {self.path} has schema version {found}; this PixelHub "
                        f"understands version {SCHEMA_VERSION}"
                    )
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        missing = [name for name in SEARCH_UPGRADE if name not in names]
        if missing:
            log.info("SQLite store %s: adding search indexes %s (once)", self.path, missing)
            with self._schema_transaction():
                for name in missing:
                    conn.execute(f"CREATE INDEX IF NOT EXISTS {name} {SEARCH_UPGRADE[name]}")

    @contextmanager
    def _schema_transaction(self) -> Iterator[None]:
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _check_open(self) -> None:
        if self._closed:
            raise OutOfResources("SQLite store closed")

    # ---------------------------------------------------------------------------------------
    def reader(self) -> sqlite3.Connection:
        """This thread's reader connection (opened on first use)."""
        self._check_open()
        holder: _Reader | None = getattr(self._local, "reader", None)
        if holder is None:
            with sqlite_errors():
                holder = _Reader(self._connect())
            self._local.reader = holder
            self._readers.add(holder)
        return holder.conn

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction on this thread's reader: several statements, one snapshot."""
        conn = self.reader()
        if conn.in_transaction:
            yield conn
            return
        with sqlite_errors():
            conn.execute("BEGIN")
        try:
            yield conn
        finally:
            with sqlite_errors():
                conn.execute("COMMIT")

    def holds_write(self) -> bool:
        return self._owner == threading.get_ident()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: commits on normal exit, rolls back on exception. Re-entered on the
        thread that holds it, it becomes a savepoint of the outer transaction."""
        self._check_open()
        conn = self._writer
        if self.holds_write():
            with self.savepoint():
                yield conn
            return
        deadline = time.monotonic() + self._busy_ms / 1000
        if not self._lock.acquire(timeout=self._busy_ms / 1000):
            raise OutOfResources(
                "SQLite store busy: another write is in progress", headers={"Retry-After": "1"}
            )
        locked = False
        try:
            self._check_open()
            locked = self._process_lock.acquire(deadline)
            if not locked:
                raise OutOfResources(
                    "SQLite store busy: another process is writing", headers={"Retry-After": "1"}
                )
            self._owner = threading.get_ident()
            with sqlite_errors():
                conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                with sqlite_errors():
                    conn.execute("COMMIT")
            except BaseException:
                self._pending_pids.clear()
                if conn.in_transaction:
                    with sqlite_errors():
                        conn.execute("ROLLBACK")
                raise
            self._pids.update(self._pending_pids)
            self._pending_pids.clear()
        finally:
            self._owner = None
            if locked:
                self._process_lock.release()
            self._lock.release()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside the current write: a part that is undone alone if it raises."""
        conn = self._writer
        if not conn.in_transaction:
            # SQLite rolled the whole transaction back (e.g. SQLITE_FULL): a SAVEPOINT now
            # would open and commit a transaction of its own; the write must fail instead.
            raise HubError("The write transaction was rolled back by SQLite")
        name = f"sp{self._depth}"
        self._depth += 1
        try:
            with sqlite_errors():
                conn.execute(f"SAVEPOINT {name}")
            try:
                yield
            except BaseException:
                # Parameter names created in the undone part are gone from the table too.
                self._pending_pids.clear()
                if conn.in_transaction:
                    with sqlite_errors():
                        conn.execute(f"ROLLBACK TO {name}")
                        conn.execute(f"RELEASE {name}")
                raise
            with sqlite_errors():
                conn.execute(f"RELEASE {name}")
        finally:
            self._depth -= 1

    # ---------------------------------------------------------------------------------------
    def pids(self, conn: sqlite3.Connection, resource_type: str | None, name: str) -> list[int]:
        """The pids of parameter ``name`` on ``resource_type`` (on every type if ``None``), as
        ``conn`` sees them; empty if no resource ever had an entry for it."""
        if resource_type is None:
            return [r[0] for r in conn.execute("SELECT pid FROM param WHERE name = ?", (name,))]
        key = (resource_type, name)
        in_write = conn is self._writer
        pid = self._pids.get(key)
        if pid is None and in_write:
            pid = self._pending_pids.get(key)
        if pid is None:
            row = conn.execute(
                "SELECT pid FROM param WHERE res_type = ? AND name = ?", key
            ).fetchone()
            if row is None:
                return []
            pid = int(row[0])
            (self._pending_pids if in_write else self._pids)[key] = pid
        return [pid]

    def pid_for_write(self, conn: sqlite3.Connection, resource_type: str, name: str) -> int:
        """The pid of ``(resource_type, name)``, created inside the current write if new."""
        key = (resource_type, name)
        pid = self._pids.get(key) or self._pending_pids.get(key)
        if pid is not None:
            return pid
        found = self.pids(conn, resource_type, name)
        if found:
            return found[0]
        cur = conn.execute("INSERT INTO param (res_type, name) VALUES (?, ?)", key)
        pid = int(cur.lastrowid or 0)
        self._pending_pids[key] = pid
        return pid

    # ---------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close every connection; later calls raise ``OutOfResources``."""
        if self._closed:
            return
        with self._lock:
            self._closed = True
            for holder in list(self._readers):
                holder.conn.close()
            self._writer.close()
            self._process_lock.close()


def _schema_statements() -> list[str]:
    text = resources.files("adapters.sqlite").joinpath("schema.sql").read_text("utf-8")
    statements, buf = [], ""
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            statements.append(buf.strip())
            buf = ""
    return statements
