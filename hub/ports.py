"""The ports the core depends on; engines in ``adapters/`` implement them.

``Repository`` is the store of record (FHIR R4 http.html semantics: versions, history, tombstones);
``SearchIndex`` answers searches; ``ChangeFeed`` is the monotonic log appended in the same
transaction as every write; ``BlobStore`` holds large binary objects. An ``Engine`` bundles one of
each that share a database. Engines are found by URL scheme through the ``pixelhub.engines`` entry
point group (see ``hub.engines``), so the core never imports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO, Literal, Protocol

from hub.search.model import IndexEntry, Key, SearchQuery, SearchResult

ChangeOp = Literal["create", "update", "delete"]


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One version of a resource as stored.

    ``data`` is the resource's JSON (UTF-8 bytes, ``meta.versionId``/``meta.lastUpdated`` already
    set), ready to be sent as is; ``None`` for a deletion tombstone. ``last_updated`` is an
    ISO-8601 instant with a ``Z`` zone, millisecond precision.
    """

    resource_type: str
    id: str
    version: int
    last_updated: str
    data: bytes | None
    method: ChangeOp = "update"

    @property
    def deleted(self) -> bool:
        return self.data is None


@dataclass(frozen=True, slots=True)
class HistoryPage:
    entries: list[StoredResource]  # newest first
    total: int


@dataclass(frozen=True, slots=True)
class Change:
    """One change-feed record: ``seq`` strictly increases in commit order."""

    seq: int
    resource_type: str
    id: str
    version: int
    op: ChangeOp


class Transaction(Protocol):
    """A unit of work on the store of record: all of it commits, or none of it (FHIR R4
    http.html#transaction). Writes also append to the change feed, and on an engine whose search
    index is synchronous, write the index entries, in the same database transaction."""

    def read(self, resource_type: str, id: str) -> StoredResource | None:
        """The current version (a tombstone if deleted), or ``None`` if never created."""

    def put(
        self,
        resource_type: str,
        id: str,
        resource: dict[str, object],
        index: Sequence[IndexEntry],
        *,
        expected_version: int | None = None,
        last_updated: str | None = None,
    ) -> StoredResource:
        """Create or update: stores the next version with ``meta.versionId`` and
        ``meta.lastUpdated`` set in a copy of ``resource``. ``expected_version`` (from
        ``If-Match``) must equal the current version, else ``PreconditionFailed``."""

    def delete(
        self, resource_type: str, id: str, *, expected_version: int | None = None
    ) -> StoredResource | None:
        """Write a tombstone version; ``None`` if there was nothing to delete (already deleted or
        never created: FHIR allows deleting those with success)."""

    def search(self, query: SearchQuery) -> SearchResult:
        """Search as of this transaction (for conditional create/update/delete inside it)."""


class Repository(Protocol):
    """Store of record (FHIR R4 http.html: read, vread, history)."""

    def transaction(self) -> AbstractContextManager[Transaction]:
        """Begin a write transaction; commits on normal exit, rolls back on exception."""

    def read(self, resource_type: str, id: str) -> StoredResource | None: ...

    def vread(self, resource_type: str, id: str, version: int) -> StoredResource | None: ...

    def read_many(self, keys: Sequence[Key]) -> list[StoredResource]:
        """Current, non-deleted versions of ``keys``, in the order given; missing ones skipped."""

    def history(
        self,
        resource_type: str | None,
        id: str | None,
        *,
        since: str | None = None,
        at: str | None = None,
        count: int = 50,
        offset: int = 0,
    ) -> HistoryPage:
        """Instance (type+id), type (type only) or system (neither) history, newest first
        (FHIR R4 http.html#history). ``since``/``at`` are ISO instants."""

    def count(self, resource_type: str | None = None) -> int:
        """Number of current (non-deleted) resources."""


class SearchIndex(Protocol):
    """Answers FHIR searches (R4 search.html).

    ``synchronous`` engines write their entries inside the repository's transaction, so a search
    sees every committed write. Other engines are fed by a projector through ``apply`` and lag
    behind the change feed by a documented amount.
    """

    synchronous: bool

    def search(self, query: SearchQuery) -> SearchResult: ...

    def apply(self, updates: Sequence[tuple[Key, Sequence[IndexEntry] | None, str]]) -> None:
        """Index ``(key, entries, last_updated)``; ``entries=None`` removes the key. Idempotent."""


class ChangeFeed(Protocol):
    """The append-only change log and the per-projector cursors into it."""

    def last_seq(self) -> int: ...

    def read_since(self, seq: int, limit: int = 1000) -> list[Change]:
        """Changes with ``seq`` greater than ``seq``, ascending."""

    def cursor(self, projector: str) -> int:
        """The last sequence ``projector`` has durably processed (0 if none)."""

    def set_cursor(self, projector: str, seq: int) -> None: ...


@dataclass(frozen=True, slots=True)
class BlobRef:
    key: str
    sha256: str
    size: int


class BlobStore(Protocol):
    """Content-addressed storage for large binary objects (DICOM instances, media)."""

    def put(self, stream: BinaryIO, *, prefix: str = "") -> BlobRef:
        """Stream ``stream`` to durable storage (fsynced before returning)."""

    def open(self, key: str) -> BinaryIO: ...

    def delete(self, key: str) -> None: ...

    def exists(self, key: str) -> bool: ...


class Engine(Protocol):
    """One storage engine: its repository, search index and change feed share one database."""

    name: str
    repository: Repository
    search_index: SearchIndex
    change_feed: ChangeFeed

    def status(self) -> dict[str, object]:
        """Readiness details for ``/health`` (raises ``OutOfResources`` when unavailable)."""

    def close(self) -> None: ...


class EngineFactory(Protocol):
    """What a ``pixelhub.engines`` entry point refers to."""

    def __call__(self, url: str, *, data_dir: str) -> Engine: ...
