"""The embedded storage engine: SQLite (stdlib ``sqlite3``) in WAL mode holding the store of
record, the synchronous search index and the change feed (see ``hub.ports``)."""

from adapters.sqlite.engine import SqliteEngine

__all__ = ["SqliteEngine"]
