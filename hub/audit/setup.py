"""Wiring of the audit trail for one hub: the journal under ``<data_dir>/audit`` signed with the
hub's key, and the indexer that writes its events into the FHIR store as ``AuditEvent``."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.audit.journal import AuditJournal, SyncMode
from hub.audit.signing import KeyStoreSigner
from hub.audit.trail import AuditIndexer, AuditTrail
from hub.fhir.service import FhirService, UnitOfWork
from hub.ports import ChangeFeed
from hub.search.extract import extract_index_entries
from hub.smart.keys import KeyStore
from mappings.interaction_to_auditevent import Source

INDEXER = "audit-index"  # the indexer's cursor name in the change feed's cursor table


def audit_dir(data_dir: Path) -> Path:
    return data_dir / "audit"


def node_source(base_url: str) -> Source:
    return Source(site=base_url, observer=f"PixelHub@{socket.gethostname()}")


def open_trail(
    *,
    enabled: bool,
    data_dir: Path,
    keys: KeyStore,
    base_url: str,
    sync: SyncMode = "interval",
    sync_interval: float = 0.2,
    checkpoint_every: int = 1000,
) -> AuditTrail:
    journal = (
        AuditJournal(
            audit_dir(data_dir),
            signer=KeyStoreSigner(keys),
            sync=sync,
            sync_interval=sync_interval,
            checkpoint_every=checkpoint_every,
        )
        if enabled
        else None
    )
    return AuditTrail(journal, node_source(base_url))


def audit_indexer(
    trail: AuditTrail,
    service: FhirService,
    feed: ChangeFeed,
    notify: Callable[[], None],
    *,
    retention_days: float | None = None,
) -> AuditIndexer:
    """Events become AuditEvent resources in one transaction with the indexer's cursor. They are
    written as recorded: no validation against client rules and no referential integrity (an
    event may name a resource that was deleted, or a query)."""

    def store(events: list[dict[str, Any]], seq: int) -> None:
        def work(uow: UnitOfWork) -> None:
            for event in events:
                if uow.tx.read("AuditEvent", event["id"]) is None:
                    entries = extract_index_entries(event, service.registry)
                    uow.tx.put("AuditEvent", event["id"], dict(event), entries)
            feed.set_cursor(INDEXER, seq)

        service.run(work, validate=False)
        notify()

    def purge(ids: list[str]) -> None:
        def work(uow: UnitOfWork) -> None:
            for event_id in ids:
                uow.tx.purge("AuditEvent", event_id)

        service.run(work, validate=False)

    return AuditIndexer(
        trail,
        lambda: feed.cursor(INDEXER),
        store,
        retention_days=retention_days,
        purge=purge,
    )
