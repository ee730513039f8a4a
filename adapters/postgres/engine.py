"""``PostgresEngine``: the store of record, synchronous search index, change feed and DICOM
instance index in one PostgreSQL database, shared safely by several hub replicas. Found through
the ``pixelhub.engines`` entry points ``postgresql`` and ``postgres``."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from adapters.postgres._db import Database
from adapters.postgres.changefeed import PostgresChangeFeed
from adapters.postgres.dicom_store import PostgresDicomStore
from adapters.postgres.leadership import PostgresLeadership
from adapters.postgres.repository import PostgresRepository
from adapters.postgres.search import PostgresSearchIndex
from hub.ports import ChangeFeed, DicomInstanceStore, Repository, SearchIndex

if TYPE_CHECKING:
    from hub.ports import EngineFactory

# Options of ours in the URL's query string; every other one goes to libpq as is.
OPTIONS = ("pool_min", "pool_max", "pool_timeout")


def connection_info(url: str) -> tuple[str, dict[str, str]]:
    """The libpq URL and our options of ``postgresql://user:pass@host:port/db?pool_max=20``.

    ``postgres://`` is accepted too; ``connect_timeout`` defaults to 10 seconds.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"Not a postgresql:// URL: {url!r}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in OPTIONS}
    rest = [(k, v) for k, v in query if k not in OPTIONS]
    if not any(k == "connect_timeout" for k, _ in rest):
        rest.append(("connect_timeout", "10"))
    conninfo = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(rest)))
    return conninfo, ours


class PostgresEngine:
    """Repository, synchronous search index, change feed and DICOM store sharing one database.

    A small connection pool (``?pool_min=1&pool_max=20&pool_timeout=30`` seconds); every write is
    one transaction, durable when it returns (``synchronous_commit`` as the server sets it).
    ``leadership`` elects the one replica that runs the projectors.
    """

    name: str = "postgresql"

    def __init__(self, url: str, *, data_dir: str = "") -> None:
        conninfo, options = connection_info(url)
        self._db = Database(
            conninfo,
            pool_min=int(options.get("pool_min", "1")),
            pool_max=int(options.get("pool_max", "20")),
            timeout=float(options.get("pool_timeout", "30")),
        )
        self.repository: Repository = PostgresRepository(self._db)
        self.search_index: SearchIndex = PostgresSearchIndex(self._db)
        self.change_feed: ChangeFeed = PostgresChangeFeed(self._db)
        self.dicom_store: DicomInstanceStore = PostgresDicomStore(self._db)
        self.leadership = PostgresLeadership(conninfo)

    def status(self) -> dict[str, object]:
        """Readiness for ``/health``; raises ``OutOfResources`` if the server is unreachable."""
        with self._db.connection(timeout=5) as conn:  # /health answers quickly when down
            row = conn.execute(
                "SELECT current_setting('server_version'), current_database(),"
                " (SELECT coalesce(sum(live), 0) FROM type_count),"
                " (SELECT coalesce(max(seq), 0) FROM change)"
            ).fetchone()
        assert row is not None
        version, database, resources, last_seq = row
        stats = self._db.pool.get_stats()
        return {
            "engine": self.name,
            "server_version": version,
            "database": database,
            "pool": {
                "size": stats.get("pool_size", 0),
                "available": stats.get("pool_available", 0),
            },
            "leader": self.leadership.held,
            "resources": int(resources),
            "last_seq": int(last_seq),
        }

    def close(self) -> None:
        try:
            self.leadership.release()
        finally:
            self._db.close()


if TYPE_CHECKING:  # mypy proves the engine implements the ports
    _factory: EngineFactory = PostgresEngine
