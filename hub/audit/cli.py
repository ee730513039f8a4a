"""``pixelhub audit verify|export|prune`` (issue 7)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import click
import orjson

from hub.audit.export import export_events
from hub.audit.journal import AuditJournal, JournalBusy
from hub.audit.setup import indexer_cursor
from hub.audit.signing import KeyStoreSigner
from hub.audit.trail import prune_journal
from hub.audit.verify import verify_journal
from hub.cli_options import CONFIG, DATA_DIR
from hub.cli_options import settings_from as _settings
from hub.engines import open_engine
from hub.smart.keys import KeyStore


def _utc(value: str | None) -> str | None:
    """An ISO date or date-time as the UTC instant string events are recorded with."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 date or date-time: {value}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@click.group()
def audit() -> None:
    """The audit trail: verify its hash chain, export it, prune it."""


@audit.command()
@CONFIG
@DATA_DIR
@click.option("--journal-only", is_flag=True, help="do not compare the indexed AuditEvents")
def verify(config: str | None, journal_only: bool, **flags: Any) -> None:
    """Check the whole chain; exit 1 and name the first altered, missing or re-ordered record."""
    settings = _settings(config, **flags)
    signer = KeyStoreSigner(KeyStore(settings.keys_dir))
    directory = settings.audit_directory
    if journal_only:
        report = verify_journal(directory, signer)
    else:
        engine = open_engine(settings.database, data_dir=str(settings.data_dir))
        try:

            def stored(event_id: str) -> dict[str, Any] | None:
                found = engine.repository.read("AuditEvent", event_id)
                if found is None or found.data is None:
                    return None
                data: dict[str, Any] = orjson.loads(found.data)
                if found.version != 1:
                    data.setdefault("meta", {})["versionId"] = str(found.version)
                return data

            cursor = engine.change_feed.cursor(indexer_cursor(directory))
            report = verify_journal(directory, signer, stored, indexed_through=cursor)
        finally:
            engine.close()
    click.echo(report.summary())
    sys.exit(0 if report.ok else 1)


@audit.command()
@CONFIG
@DATA_DIR
@click.option("--since", help="first instant (ISO 8601; UTC when no offset)")
@click.option("--until", help="end instant, exclusive")
@click.option("-o", "--output", type=click.File("wb"), default="-", help="file [stdout]")
def export(
    config: str | None, since: str | None, until: str | None, output: Any, **flags: Any
) -> None:
    """Write the events of a time range as NDJSON."""
    settings = _settings(config, **flags)
    for line in export_events(settings.audit_directory, _utc(since), _utc(until)):
        output.write(line)


@audit.command()
@CONFIG
@DATA_DIR
@click.option("--before", required=True, help="prune events recorded before this instant")
def prune(config: str | None, before: str, **flags: Any) -> None:
    """Remove whole journal days older than BEFORE (and their indexed AuditEvents), keeping the
    rest verifiable from a signed anchor (run it while the hub is stopped)."""
    settings = _settings(config, **flags)
    cutoff = _utc(before)
    assert cutoff is not None
    directory = settings.audit_directory
    try:
        journal = AuditJournal(directory, signer=KeyStoreSigner(KeyStore(settings.keys_dir)))
    except JournalBusy as exc:
        raise click.ClickException(f"{exc}: stop the hub first") from None
    engine = open_engine(settings.database, data_dir=str(settings.data_dir))
    try:

        def purge(ids: list[str]) -> None:
            with engine.repository.transaction() as tx:
                for event_id in ids:
                    tx.purge("AuditEvent", event_id)

        # never prune what is not indexed yet
        indexed = engine.change_feed.cursor(indexer_cursor(directory))
        through = min(journal.last_seq_recorded_before(cutoff), indexed)
        removed = prune_journal(journal, through, purge) if through else 0
    finally:
        journal.close()
        engine.close()
    click.echo(f"pruned {removed} audit events recorded before {cutoff}")
