"""``pixelhub audit verify``: check the whole audit chain and report the first bad record.

The journal is checked line by line from the anchor (or the start): sequence numbers without gaps
or reversals, each ``prev`` equal to the hash before it, each ``hash`` recomputed from the event,
each checkpoint's signature valid and naming the head of the chain at that point. Then the indexed
``AuditEvent`` resources (what the FHIR API serves) are compared with the journal: each must be
the journal's event unchanged, still at version 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.audit.journal import (
    GENESIS,
    Checkpoint,
    CheckpointSigner,
    JournalRecord,
    canonical,
    chain_hash,
    parse_line,
    read_anchor,
    segment_paths,
)

# Fetches the indexed AuditEvent with an id (``None`` when there is none).
StoredEvent = Callable[[str], dict[str, Any] | None]


@dataclass(frozen=True)
class VerifyReport:
    events: int
    checkpoints: int
    bad_seq: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def summary(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.events} events, {self.checkpoints} checkpoints"
        return f"audit chain broken at seq {self.bad_seq}: {self.problem}"


def _lines(directory: Path) -> Iterator[tuple[Path, int, bytes]]:
    for _, path in segment_paths(directory):
        with path.open("rb") as fh:
            for number, line in enumerate(fh, 1):
                yield path, number, line


def _checkpoint_problem(signer: CheckpointSigner, item: Checkpoint) -> str | None:
    try:
        payload = signer.verify(item.token)
    except Exception as exc:  # any failure to verify is the same finding
        return f"checkpoint signature invalid ({exc})"
    if payload.get("seq") != item.seq or payload.get("hash") != item.hash:
        return "checkpoint signature does not cover this head"
    return None


def verify_journal(
    directory: Path,
    signer: CheckpointSigner,
    stored_event: StoredEvent | None = None,
    indexed_through: int = 0,
) -> VerifyReport:
    """Walk the chain; with ``stored_event``, also compare the indexed AuditEvent of every record
    up to ``indexed_through`` (the indexer's position)."""
    anchor = read_anchor(directory)
    expected, prev = (anchor.seq + 1, anchor.hash) if anchor else (1, GENESIS)
    events = checkpoints = 0
    if anchor is not None and (problem := _checkpoint_problem(signer, anchor)):
        return VerifyReport(0, 0, anchor.seq, f"pruning anchor: {problem}")
    for path, number, line in _lines(directory):
        where = f"{path.name} line {number}"
        try:
            item = parse_line(line)
        except ValueError as exc:
            return VerifyReport(events, checkpoints, expected, f"{where}: unreadable ({exc})")
        if isinstance(item, Checkpoint):
            if item.seq != expected - 1 or item.hash != prev:
                return VerifyReport(
                    events, checkpoints, item.seq, f"{where}: checkpoint out of place"
                )
            if problem := _checkpoint_problem(signer, item):
                return VerifyReport(events, checkpoints, item.seq, f"{where}: {problem}")
            checkpoints += 1
            continue
        lookup = stored_event if item.seq <= indexed_through else None
        problem = _record_problem(item, expected, prev, lookup)
        if problem:
            return VerifyReport(events, checkpoints, min(item.seq, expected), f"{where}: {problem}")
        prev = item.hash
        expected += 1
        events += 1
    return VerifyReport(events, checkpoints)


def _record_problem(
    item: JournalRecord, expected: int, prev: str, stored_event: StoredEvent | None
) -> str | None:
    if item.seq > expected:
        return f"record(s) {expected}..{item.seq - 1} missing"
    if item.seq < expected:
        return f"seq {item.seq} out of order (expected {expected}): re-ordered or duplicated"
    if item.prev != prev:
        return "its predecessor hash does not match the record before it"
    if chain_hash(item.seq, item.prev, item.event) != item.hash:
        return "altered: the event does not match its hash"
    if stored_event is not None:
        stored = stored_event(str(item.event.get("id")))
        if stored is None:
            return f"AuditEvent/{item.event.get('id')} is missing from the index"
        meta = dict(stored.get("meta") or {})
        if str(meta.pop("versionId", "1")) != "1":
            return f"AuditEvent/{item.event.get('id')} was changed after it was recorded"
        meta.pop("lastUpdated", None)
        indexed = {k: v for k, v in stored.items() if k != "meta"}
        if meta:
            indexed["meta"] = meta
        if canonical(indexed) != canonical(item.event):
            return f"AuditEvent/{item.event.get('id')} in the index differs from the journal"
    return None
