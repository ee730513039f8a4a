"""Wiring of the audit trail for one hub: the journal (``Settings.audit_directory``) signed with the
hub's key, and the indexer that writes its events into the FHIR store as ``AuditEvent``."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.audit.journal import AuditJournal, SyncMode
from hub.audit.signing import KeyStoreSigner
from hub.audit.trail import AuditIndexer, AuditTrail
from hub.ports import Engine
from hub.search.extract import extract_index_entries
from hub.search.registry import SearchParameterRegistry
from hub.smart.keys import KeyStore
from mappings.interaction_to_auditevent import Source

StoreEvents = Callable[[list[dict[str, Any]], int], None]


def indexer_cursor(directory: Path) -> str:
    """The indexer's cursor name in the change feed's cursor table: one per journal, since
    replicas sharing one store each keep their own journal (``<audit dir>/node-id``, made once).
    A journal indexed under another name is indexed again harmlessly: events are written once,
    by id."""
    path = directory / "node-id"
    try:
        node = path.read_text().strip()
    except FileNotFoundError:
        directory.mkdir(parents=True, exist_ok=True)
        node = uuid.uuid4().hex
        tmp = path.with_suffix(".tmp")
        tmp.write_text(node + "\n")
        os.replace(tmp, path)
    return f"audit-index:{node}"


def node_source(base_url: str) -> Source:
    return Source(site=base_url, observer=f"PixelHub@{socket.gethostname()}")


def open_trail(
    *,
    enabled: bool,
    directory: Path,
    keys: KeyStore,
    base_url: str,
    sync: SyncMode = "interval",
    sync_interval: float = 0.2,
    checkpoint_every: int = 1000,
) -> AuditTrail:
    if not enabled:
        return AuditTrail(None, node_source(base_url))
    signer = KeyStoreSigner(keys)
    signer.prepare()
    journal = AuditJournal(
        directory,
        signer=signer,
        sync=sync,
        sync_interval=sync_interval,
        checkpoint_every=checkpoint_every,
    )
    return AuditTrail(journal, node_source(base_url))


def store_events(engine: Engine, registry: SearchParameterRegistry, cursor: str) -> StoreEvents:
    """Events become AuditEvent resources in one transaction with the indexer's cursor. They are
    written as recorded: no validation against client rules and no referential integrity (an
    event may name a resource that was deleted, or a query)."""

    def store(events: list[dict[str, Any]], seq: int) -> None:
        items = [(e["id"], e, extract_index_entries(e, registry)) for e in events]
        with engine.repository.transaction() as tx:
            tx.create_many("AuditEvent", items)
            engine.change_feed.set_cursor(cursor, seq)

    return store


def audit_indexer(
    trail: AuditTrail,
    engine: Engine,
    registry: SearchParameterRegistry,
    notify: Callable[[], None],
    *,
    retention_days: float | None = None,
) -> AuditIndexer:
    """The hub's indexer: indexes in process (tests, ``catch_up``) until ``pixelhub serve`` hands
    indexing to the worker process, and applies retention."""
    directory = trail.directory
    cursor = indexer_cursor(directory) if directory is not None else "audit-index"
    write = store_events(engine, registry, cursor)

    def store(events: list[dict[str, Any]], seq: int) -> None:
        write(events, seq)
        notify()

    def purge(ids: list[str]) -> None:
        with engine.repository.transaction() as tx:
            for event_id in ids:
                tx.purge("AuditEvent", event_id)

    return AuditIndexer(
        trail.directory,
        lambda: engine.change_feed.cursor(cursor),
        store,
        retention_days=retention_days,
        purge=purge,
        journal=trail.journal if isinstance(trail.journal, AuditJournal) else None,
    )
