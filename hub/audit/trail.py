"""The audit trail every door writes to: one ``AuditEvent`` per interaction (issue 7).

``AuditTrail.record`` builds the event (``mappings.interaction_to_auditevent``) and appends it to
the journal before the caller answers; the ``AuditIndexer`` writes the journal's events as
``AuditEvent`` resources so auditors can search them through FHIR. A disabled trail (setting
``audit_enabled=false``, used to measure audit's cost) records nothing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from hub.audit.journal import AuditJournal, JournalRecord, JournalTail, SyncMode, iter_lines
from hub.errors import AuditUnavailable
from mappings.interaction_to_auditevent import (
    APPLICATION_ACTIVITY,
    DICOM_UID,
    ENTITY_TYPE,
    GET_ACCESS_TOKEN,
    HL7_CONTROL_ID,
    HL7_EVENT,
    INSTANCES_TRANSFERRED,
    LAUNCH,
    LOGIN,
    NODE_AUTHENTICATION,
    OBJECT_ROLE,
    ORDER_RECORD,
    PATIENT_RECORD,
    REST,
    REST_ACTION,
    RESTFUL,
    SECURITY_ALERT,
    USER_AUTHENTICATION,
    Actor,
    Outcome,
    Resource,
    Source,
    coding,
    identifier_entity,
    interaction_to_auditevent,
    patient_entity,
    rest_entities,
    site_entity,
)

log = logging.getLogger("pixelhub.audit")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _EventIds:
    """Random (version 4) UUIDs for event ids, cut from ``os.urandom`` bytes fetched 256 ids at a
    time. ``uuid.uuid4`` reads the random source once per id, releasing the GIL around the read,
    and winning it back from the other threads (the indexer's) made each event wait longer than
    building it took."""

    _BATCH = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._at = 0
        os.register_at_fork(after_in_child=self._forget)  # a child draws its own ids

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._pool, self._at = b"", 0

    def __call__(self) -> str:
        with self._lock:
            if self._at >= len(self._pool):
                self._pool, self._at = os.urandom(16 * self._BATCH), 0
            raw = self._pool[self._at : self._at + 16]
            self._at += 16
        return str(uuid.UUID(bytes=raw, version=4))


new_event_id = _EventIds()


def outcome_of_status(status: int) -> Outcome:
    """R4 AuditEvent.outcome for an HTTP status: 0 success, 4 client error/denial, 8 server."""
    if status < 400:
        return "0"
    return "4" if status < 500 else "8"


class EventJournal(Protocol):
    """Where a trail appends its events: the journal, or a ``ForwardedJournal``."""

    directory: Path
    sync: SyncMode  # "always": append waits for the disk (or another process)

    def append(self, event: dict[str, Any]) -> object: ...

    def close(self) -> None: ...


class ForwardedJournal:
    """The journal of a worker process (e.g. a DICOM receiving process): ``forward`` hands each
    event to the process that writes the journal and returns once it is written there (raising
    ``AuditUnavailable`` if it could not be), so the worker, like that process, answers its peer
    only after the event is journaled."""

    def __init__(self, directory: Path, forward: Callable[[dict[str, Any]], None]) -> None:
        self.directory = directory
        self.sync: SyncMode = "always"
        self._forward = forward

    def append(self, event: dict[str, Any]) -> None:
        self._forward(event)

    def close(self) -> None:
        pass


class AuditTrail:
    """Builds, journals and hands on the events of one node."""

    def __init__(
        self,
        journal: EventJournal | None,
        source: Source,
        *,
        clock: Callable[[], str] = now,
    ) -> None:
        self.journal = journal
        self.source = source
        self.clock = clock
        self._listeners: list[Callable[[], None]] = []

    @property
    def enabled(self) -> bool:
        return self.journal is not None

    @property
    def directory(self) -> Path | None:
        return self.journal.directory if self.journal is not None else None

    def on_record(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def record(
        self,
        actor: Actor,
        *,
        type_: Resource,
        action: str,
        outcome: Outcome,
        subtype: Sequence[Resource] = (),
        outcome_desc: str | None = None,
        entities: Iterable[Resource] = (),
    ) -> Resource | None:
        """Append one event; raises ``AuditUnavailable`` when the journal cannot be written."""
        if self.journal is None:
            return None
        event = interaction_to_auditevent(
            event_id=new_event_id(),
            recorded=self.clock(),
            source=self.source,
            actor=actor,
            type_=type_,
            subtype=subtype,
            action=action,
            outcome=outcome,
            outcome_desc=outcome_desc,
            entities=entities,
        )
        self.append(event)
        return event

    def append(self, event: Resource) -> None:
        """Journal an event built here or by a worker process (``ForwardedJournal``)."""
        if self.journal is None:
            return
        try:
            self.journal.append(event)
        except AuditUnavailable:
            raise
        except (OSError, RuntimeError) as exc:
            log.exception("audit journal write failed")
            raise AuditUnavailable("The audit journal cannot be written") from exc
        for listener in self._listeners:
            listener()

    def rest(
        self,
        actor: Actor,
        interaction: str,
        *,
        status: int,
        outcome_desc: str | None = None,
        patients: Iterable[str] = (),
        resources: Iterable[str] = (),
        query: str | None = None,
        sites: Iterable[tuple[str, str | None, str]] = (),
    ) -> Resource | None:
        """A FHIR RESTful interaction (BALP ``Basic AuditEvent`` for RESTful activity);
        ``sites`` are the partners a federated search asked: (name, Endpoint, how it went)."""
        entities = rest_entities(patients=patients, resources=resources, query=query)
        entities += [site_entity(name, endpoint, how) for name, endpoint, how in sites]
        return self.record(
            actor,
            type_=REST,
            subtype=[coding(RESTFUL, interaction)],
            action=REST_ACTION.get(interaction, "E"),
            outcome=outcome_of_status(status),
            outcome_desc=outcome_desc,
            entities=entities,
        )

    def dicom_association(
        self, actor: Actor, *, accepted: bool, reason: str | None = None
    ) -> Resource | None:
        """An association request: DICOM PS3.15 A.5.3.11 Security Alert / Node Authentication,
        success when accepted, minor failure (with the reason) when rejected."""
        return self.record(
            actor,
            type_=SECURITY_ALERT,
            subtype=[NODE_AUTHENTICATION],
            action="E",
            outcome="0" if accepted else "4",
            outcome_desc=reason,
        )

    def dicom_instances_received(
        self,
        actor: Actor,
        *,
        study_uid: str | None,
        patient_identifier: dict[str, Any] | None,
        instances: int,
        failures: int = 0,
        reason: str | None = None,
    ) -> Resource | None:
        """One study's instances received over one association (or the instances refused):
        DICOM PS3.15 A.5.3.4 DICOM Instances Transferred, action Create."""
        entities: list[Resource] = []
        if patient_identifier:
            entities.append(
                {
                    "what": {"identifier": patient_identifier},
                    "type": coding(ENTITY_TYPE, "1", "Person"),
                    "role": coding(OBJECT_ROLE, "1", "Patient"),
                }
            )
        if study_uid:
            entities.append(
                {
                    **identifier_entity(DICOM_UID, f"urn:oid:{study_uid}", "3", "Report"),
                    "description": f"{instances} instance(s) stored",
                }
            )
        return self.record(
            actor,
            type_=INSTANCES_TRANSFERRED,
            action="C",
            outcome="0" if not failures else "4",
            outcome_desc=f"{failures} instance(s) refused, last: {reason}" if failures else None,
            entities=entities,
        )

    def hl7_message(
        self,
        actor: Actor,
        *,
        message_type: str,
        control_id: str,
        applied: bool,
        patient: str | None = None,
        reason: str | None = None,
    ) -> Resource | None:
        """An HL7 v2 message received and applied (``AA``) or rejected (``AE``/``AR``)."""
        kind, _, event = message_type.partition("^")
        type_ = PATIENT_RECORD if kind == "ADT" else ORDER_RECORD
        if kind == "ORU":
            type_ = PATIENT_RECORD
        entities = [patient_entity(patient)] if patient else []
        entities.append(identifier_entity(HL7_CONTROL_ID, control_id, "20", "Job"))
        return self.record(
            actor,
            type_=type_,
            subtype=[coding(HL7_EVENT, event.split("^")[0] or kind, message_type)],
            action="C" if kind != "ADT" else "U",
            outcome="0" if applied else "4",
            outcome_desc=reason,
            entities=entities,
        )

    def authentication(
        self,
        actor: Actor,
        what: Literal["login", "token", "launch"],
        *,
        success: bool,
        reason: str | None = None,
        patient: str | None = None,
    ) -> Resource | None:
        """Sign-in at ``/auth/authorize`` (110114/110122 Login), an access token issued or
        refused (IHE ITI-71 Get Access Token), an EHR launch registered (110100/110120)."""
        type_, subtype = {
            "login": (USER_AUTHENTICATION, LOGIN),
            "token": (USER_AUTHENTICATION, GET_ACCESS_TOKEN),
            "launch": (APPLICATION_ACTIVITY, LAUNCH),
        }[what]
        return self.record(
            actor,
            type_=type_,
            subtype=[subtype],
            action="E",
            outcome="0" if success else "4",
            outcome_desc=reason,
            entities=[patient_entity(patient)] if patient else [],
        )

    def tail(self, after_seq: int) -> JournalTail:
        assert self.journal is not None
        return JournalTail(self.journal.directory, after_seq)

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()


def prune_journal(
    journal: AuditJournal, before_seq: int, purge: Callable[[list[str]], None] | None
) -> int:
    """Prune the journal through ``before_seq`` (whole segments, ``AuditJournal.prune``), then
    ``purge`` the indexed copies of the pruned events, 1,000 ids at a time."""
    ids = [
        str(item.event["id"])
        for item in iter_lines(journal.directory)
        if isinstance(item, JournalRecord) and item.seq <= before_seq
    ]
    removed = journal.prune(before_seq)
    if removed and purge is not None:
        for start in range(0, len(ids), 1000):
            purge(ids[start : start + 1000])
    return removed


class AuditIndexer:
    """Writes journal events as ``AuditEvent`` resources, resuming from its saved position.

    It indexes every ``poll_seconds`` rather than per event, so one transaction carries many
    events (a busy hub is not slowed by a commit per request); events are searchable after at
    most about that delay. Events this process has just journaled are taken from the journal's
    memory (``AuditJournal.recent``), others read back from its files.

    ``store(events, seq)`` writes a batch and saves ``seq`` as the position in one transaction
    (``hub.audit.setup.store_events``), so an event is indexed exactly once. With
    ``audit_index_process`` ``pixelhub serve`` indexes in a child process (``hub.audit.worker``),
    beside the requests rather than between them on a host with cores to spare; this one then
    only applies retention (``index = False``), which needs the journal's writer."""

    def __init__(
        self,
        directory: Path | None,
        position: Callable[[], int],
        store: Callable[[list[dict[str, Any]], int], None],
        *,
        batch_size: int = 500,
        poll_seconds: float = 0.5,
        retention_days: float | None = None,
        purge: Callable[[list[str]], None] | None = None,
        journal: AuditJournal | None = None,
    ) -> None:
        self.directory = directory
        self.journal = journal
        self.index = True
        self._purge = purge
        self.retention_days = retention_days
        self._next_retention = 0.0
        self._position = position
        self._store = store
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self._tail: JournalTail | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def run_once(self) -> int:
        """Index one batch; returns how many events it held."""
        if self.directory is None or not self.index:
            return 0
        if self._tail is None:
            self._tail = JournalTail(self.directory, self._position())
        before = self._tail.seq
        records = self.journal.recent(before, self.batch_size) if self.journal else []
        if records:  # written by this process just now: no need to read them back
            self._tail.skip_to(records[-1].seq)
        else:
            records = self._tail.read(self.batch_size)
        if not records:
            return 0
        try:
            self._store([r.event for r in records], records[-1].seq)
        except Exception:
            self._tail = None  # re-read from the saved position next time
            raise
        log.debug("indexed audit events %d..%d", before + 1, records[-1].seq)
        return len(records)

    def apply_retention(self, now: datetime | None = None) -> int:
        """Prune the journal's closed segments recorded more than ``retention_days`` ago, but
        never past what is indexed, then purge their indexed ``AuditEvent`` copies; returns the
        number of events pruned."""
        journal = self.journal
        if journal is None or not self.retention_days:
            return 0
        moment = (now or datetime.now(UTC)) - timedelta(days=self.retention_days)
        cutoff = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        before = min(journal.last_seq_recorded_before(cutoff), self._position())
        if not before:
            return 0
        removed = prune_journal(journal, before, self._purge)
        return removed

    def catch_up(self) -> None:
        while self.run_once():
            pass

    def lag(self) -> int:
        if self.journal is None:
            return 0
        return self.journal.head[0] - self._position()

    def start(self) -> None:
        if self.directory is None or (not self.index and not self.retention_days):
            return
        self._thread = threading.Thread(target=self._loop, name="audit-indexer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                handled = self.run_once()
                if self.retention_days and time.monotonic() >= self._next_retention:
                    self._next_retention = time.monotonic() + 3600
                    self.apply_retention()
                self.error = None
            except Exception as exc:  # retried, never fatal
                log.exception("audit indexer failed; retrying")
                self.error = str(exc)
                self._stop.wait(2.0)
                continue
            if handled < self.batch_size:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()
