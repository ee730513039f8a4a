"""The scale-out storage engine: PostgreSQL (psycopg 3) holding the store of record, the
synchronous search index, the change feed and the DICOM instance index (see ``hub.ports``)."""

from adapters.postgres.engine import PostgresEngine

__all__ = ["PostgresEngine"]
