"""Export of the audit log for a time range as NDJSON (FHIR ``application/fhir+ndjson``),
read from the journal, the source of truth, in recording order."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson

from hub.audit.journal import JournalRecord, iter_lines


def export_events(directory: Path, since: str | None, until: str | None) -> Iterator[bytes]:
    """Each event with ``since <= recorded < until`` (ISO 8601 UTC strings compare in time
    order; either bound may be absent) as one NDJSON line."""
    for item in iter_lines(directory):
        if not isinstance(item, JournalRecord):
            continue
        recorded = str(item.event.get("recorded", ""))
        if since is not None and recorded < since:
            continue
        if until is not None and recorded >= until:
            continue
        yield orjson.dumps(item.event) + b"\n"
