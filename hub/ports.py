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
from typing import Any, BinaryIO, Literal, Protocol

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

    def create_many(
        self,
        resource_type: str,
        items: Sequence[tuple[str, dict[str, object], Sequence[IndexEntry]]],
    ) -> int:
        """Create each ``(id, resource, index)`` as version 1, skipping ids already stored (a
        tombstone counts as stored): for records written once and never changed, such as
        AuditEvents, in bulk. Returns how many were created."""

    def delete(
        self, resource_type: str, id: str, *, expected_version: int | None = None
    ) -> StoredResource | None:
        """Write a tombstone version; ``None`` if there was nothing to delete (already deleted or
        never created: FHIR allows deleting those with success)."""

    def purge(self, resource_type: str, id: str) -> bool:
        """Remove the resource with its whole history and index entries, as retention requires
        (no FHIR REST interaction does this; HAPI FHIR's ``$expunge`` is the analogue); the
        change feed records a deletion. False when there was nothing."""

    def search(self, query: SearchQuery) -> SearchResult:
        """Search as of this transaction (for conditional create/update/delete inside it)."""


class Repository(Protocol):
    """Store of record (FHIR R4 http.html: read, vread, history)."""

    def transaction(self) -> AbstractContextManager[Transaction]:
        """Begin a write transaction; commits on normal exit, rolls back on exception. Entered
        again on the thread that holds one, it is a savepoint of that transaction, undone alone
        when its block raises (the HL7 channel's group commit relies on this)."""

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

    def scan(
        self, resource_type: str | None = None, *, after: Key | None = None, limit: int = 1000
    ) -> list[StoredResource]:
        """Current, non-deleted versions ordered by ``(resource_type, id)``, strictly after
        ``after``: one batch of a walk over the whole store (``pixelhub reindex``)."""


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


@dataclass(frozen=True, slots=True)
class DicomInstanceRecord:
    """One stored DICOM instance (a Composite SOP Instance, DICOM PS3.4 B.2): where its bytes
    are and the header summary the FHIR mappings need (``InstanceSummary.to_json_dict()``).

    ``version`` starts at 1 and grows each time different bytes replace the instance;
    ``received`` is an ISO-8601 instant (set by the store); ``source`` names the sender
    (calling AE title and address, or the imported file).
    """

    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    blob_key: str
    sha256: str
    size: int
    summary: dict[str, Any]
    source: str = ""
    version: int = 1
    received: str = ""


@dataclass(frozen=True, slots=True)
class StoreResult:
    """What ``DicomInstanceStore.store`` did: ``stored`` is False when identical bytes were
    already there (a no-op, no change recorded); ``replaced`` is True when different bytes
    replaced ``previous`` (the caller's study gets a ``Provenance``)."""

    record: DicomInstanceRecord
    stored: bool
    replaced: bool = False
    previous: DicomInstanceRecord | None = None


@dataclass(frozen=True, slots=True)
class Replacement:
    """One instance whose bytes were replaced since its study was last aggregated."""

    sop_instance_uid: str
    old_version: int
    new_version: int
    old_sha256: str
    new_sha256: str
    source: str
    received: str


@dataclass(frozen=True, slots=True)
class PendingStudy:
    """A study with instances stored since its last aggregation.

    ``generation`` grows with every stored instance; ``quiet_since`` is the epoch time (seconds)
    of the last one; ``flush_requested`` is set when a sender finished (association released,
    import done), so the aggregator need not wait for the quiet period.
    """

    study_instance_uid: str
    generation: int
    quiet_since: float
    flush_requested: bool
    replacements: tuple[Replacement, ...] = ()


QueryLevel = Literal["PATIENT", "STUDY", "SERIES", "IMAGE"]


@dataclass(frozen=True, slots=True)
class InstanceQuery:
    """What a DICOM query (C-FIND, DICOM PS3.4 C.6) pushes down to the instance index: the
    matches on indexed columns, each an "any of" list (empty = universal), and a Study Date
    range (``YYYYMMDD``, inclusive; ``""`` = open). Everything else is matched by the caller on
    each match's ``summary``.

    The level groups the instances: PATIENT by Patient ID, STUDY by Study Instance UID, SERIES
    by Series Instance UID, IMAGE one instance each. Only keys at the level or above it restrict
    (a STUDY match with ``modalities`` is a study with at least one instance of them).
    """

    level: QueryLevel
    patient_ids: tuple[str, ...] = ()
    study_uids: tuple[str, ...] = ()
    series_uids: tuple[str, ...] = ()
    sop_uids: tuple[str, ...] = ()
    accession_numbers: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ()
    study_date_from: str = ""
    study_date_to: str = ""
    # instances whose Patient Name's alphabetic group, in upper case, starts with this
    patient_name_prefix: str = ""


@dataclass(frozen=True, slots=True)
class InstanceMatch:
    """One entity found by ``DicomInstanceStore.find``: ``key`` is its Patient ID, Study,
    Series or SOP Instance UID; ``summary`` the header summary of one of its instances (the one
    with the lowest SOP Instance UID); the counts and modalities cover all its instances."""

    key: str
    summary: dict[str, Any]
    studies: int = 0
    series: int = 0
    instances: int = 0
    modalities: tuple[str, ...] = ()
    sop_classes: tuple[str, ...] = ()


class DicomInstanceStore(Protocol):
    """The index of stored DICOM instances (their bytes live in a ``BlobStore``).

    ``store`` writes the instance's row and appends a change-feed record (``resource_type``
    ``"DicomInstance"``, ``id`` the SOP Instance UID) in one database transaction, and marks
    the study pending for aggregation; the storage SCP answers C-STORE success only after it
    returns (DICOM PS3.4 B.2.3).
    """

    def store(self, record: DicomInstanceRecord) -> StoreResult:
        """Insert, or replace when the bytes differ (version + 1); identical bytes: no-op."""

    def get(self, sop_instance_uid: str) -> DicomInstanceRecord | None: ...

    def instances_of_study(self, study_instance_uid: str) -> list[DicomInstanceRecord]: ...

    def count(self) -> int: ...

    def find(
        self, query: InstanceQuery, *, after: str = "", limit: int = 500
    ) -> list[InstanceMatch]:
        """One page of the entities matching ``query``, in ``key`` order, keys after ``after``
        (keyset paging: pass the last key of a page to get the next)."""

    def request_flush(self, study_instance_uids: Sequence[str]) -> None:
        """Ask for these studies to be aggregated without waiting for the quiet period."""

    def pending_studies(self, limit: int = 1000) -> list[PendingStudy]: ...

    def mark_aggregated(self, study_instance_uid: str, generation: int) -> bool:
        """Clear the study's pending state if no instance arrived since ``generation`` was
        read (False otherwise: it stays pending)."""


class Leadership(Protocol):
    """Projector leadership among the replicas sharing one store (DESIGN.md, scaling out): only
    the holder runs projectors, so nothing derived is computed by two processes at once. A
    leader that dies or loses its connection loses leadership, and another replica takes over
    from the saved cursors (projectors are idempotent)."""

    def acquire(self) -> bool:
        """Non-blocking: True while this process leads (cheap to call again while held)."""

    def release(self) -> None: ...


class Engine(Protocol):
    """One storage engine: its repository, search index and change feed share one database.

    An engine that can index DICOM instances also has a ``dicom_store`` attribute (a
    ``DicomInstanceStore``); the DICOM channel and the study aggregator look for it with
    ``getattr``, so engines without one stay valid ``Engine``s. An engine that several
    processes can share has a ``leadership`` attribute (a ``Leadership``); an embedded one,
    used by one process, needs none.
    """

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
