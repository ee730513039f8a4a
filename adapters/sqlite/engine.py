"""``SqliteEngine``: the embedded store of record, search index and change feed in one SQLite
file (WAL). Found through the ``pixelhub.engines`` entry point ``sqlite``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from adapters.sqlite._db import Database
from adapters.sqlite._errors import sqlite_errors
from adapters.sqlite.changefeed import SqliteChangeFeed
from adapters.sqlite.dicom_store import SqliteDicomStore
from adapters.sqlite.repository import SqliteRepository
from adapters.sqlite.search import SqliteSearchIndex
from hub.ports import ChangeFeed, DicomInstanceStore, Repository, SearchIndex

if TYPE_CHECKING:
    from hub.ports import EngineFactory

DEFAULT_FILE = "pixelhub.db"


def database_path(url: str, data_dir: str) -> tuple[str, dict[str, str]]:
    """The file path and options of a ``sqlite://`` URL.

    ``sqlite://`` is ``<data_dir>/pixelhub.db``; ``sqlite:///relative.db`` and
    ``sqlite:////absolute.db`` follow SQLAlchemy (three slashes, then the path). Options:
    ``?synchronous=normal|full|extra`` and ``?busy_timeout=<ms>``.
    """
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise ValueError(f"Not a sqlite:// URL: {url!r}")
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    raw = unquote(parts.path)
    path = raw[1:] if raw.startswith("/") else raw
    if parts.netloc:
        raise ValueError(f"A sqlite:// URL has no host: {url!r} (use sqlite:///path/to/file.db)")
    if path in ("", "/"):
        return os.path.join(data_dir, DEFAULT_FILE), options
    if path == ":memory:" or path.startswith("file:"):
        raise ValueError("In-memory SQLite is not supported: give a file path")
    return path, options


class SqliteEngine:
    """Repository, synchronous search index and change feed sharing one SQLite database.

    WAL mode, ``synchronous=FULL`` (an acknowledged write survives power loss), foreign keys on,
    a busy timeout; one serialised writer connection and a reader connection per thread.
    """

    name: str = "sqlite"

    def __init__(self, url: str, *, data_dir: str) -> None:
        path, options = database_path(url, data_dir)
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        self.path = os.path.abspath(path)
        self._db = Database(
            self.path,
            synchronous=options.get("synchronous", "FULL"),
            busy_timeout_ms=int(options.get("busy_timeout", "5000")),
        )
        self.repository: Repository = SqliteRepository(self._db)
        self.search_index: SearchIndex = SqliteSearchIndex(self._db)
        self.change_feed: ChangeFeed = SqliteChangeFeed(self._db)
        self.dicom_store: DicomInstanceStore = SqliteDicomStore(self._db)  # issue 4

    def status(self) -> dict[str, object]:
        """Readiness for ``/health``; raises ``OutOfResources`` if the file cannot be read."""
        with sqlite_errors():
            resources = self.repository.count()
            last_seq = self.change_feed.last_seq()
        return {
            "engine": self.name,
            "path": self.path,
            "wal": self._db.wal,
            "synchronous": self._db.synchronous,
            "resources": resources,
            "last_seq": last_seq,
        }

    def close(self) -> None:
        self._db.close()


if TYPE_CHECKING:  # mypy proves the engine implements the ports
    _factory: EngineFactory = SqliteEngine
