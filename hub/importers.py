"""Bulk importers (``pixelhub import PATH...``) as plug-ins, found like channels.

An importer is found by name through the ``pixelhub.importers`` entry points; the entry point
names a factory ``(ChannelContext) -> Importer``. The CLI asks each importer to ``scan`` the
given paths (so it can show a progress bar with a total), feeds the items to ``import_one`` one
by one, and calls ``finish`` at the end (e.g. to have the studies aggregated at once). Every item
ends as accepted, replaced, skipped (already stored, identical) or rejected with a reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Literal, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from hub.channels import ChannelContext
from hub.composition import build_hub
from hub.config import Settings
from hub.errors import HubError

ImportStatus = Literal["accepted", "replaced", "skipped", "rejected"]


@dataclass(frozen=True)
class ImportItem:
    """One object to import: a file, or a member of an archive (``member`` set)."""

    path: Path
    member: str | None = None
    size: int = 0

    @property
    def label(self) -> str:
        return f"{self.path}!{self.member}" if self.member else str(self.path)


@dataclass(frozen=True)
class ImportOutcome:
    item: ImportItem
    status: ImportStatus
    reason: str = ""


class Importer(Protocol):
    name: str

    def scan(self, paths: Sequence[Path]) -> list[ImportItem]:
        """Everything under ``paths`` this importer would read (folders are walked)."""

    def import_one(self, item: ImportItem) -> ImportOutcome:
        """Import one item through the same path as the live channel; never raises for bad
        input (that is a ``rejected`` outcome)."""

    def finish(self) -> None:
        """Called once after the last item."""


ImporterFactory = Callable[[ChannelContext], Importer]


def available_importers() -> dict[str, ImporterFactory]:
    return {ep.name: ep.load() for ep in entry_points(group="pixelhub.importers")}


def run_import(
    settings: Settings,
    paths: Sequence[Path],
    *,
    importer_name: str = "dicom",
    jobs: int = 4,
    console: Console | None = None,
) -> tuple[Counter[str], list[ImportOutcome]]:
    """``pixelhub import``: scan, import every item with a progress bar, aggregate, summarise.

    Returns the count per status and the rejected outcomes. Items are imported by ``jobs``
    threads (the instance store commits concurrent writes together); the projectors run at the
    end, so the studies are searchable when this returns.
    """
    console = console or Console(stderr=True)
    factories = available_importers()
    if importer_name not in factories:
        known = ", ".join(sorted(factories)) or "none"
        raise ImporterNotFound(f"No importer named {importer_name!r} (installed: {known})")
    host = f"[{settings.http_host}]" if ":" in settings.http_host else settings.http_host
    base_url = settings.base_url or f"http://{host}:{settings.http_port}/fhir"
    hub = build_hub(settings, base_url=base_url.rstrip("/"))
    counts: Counter[str] = Counter()
    rejected: list[ImportOutcome] = []
    try:
        context = ChannelContext(hub.settings, hub.service, hub.engine, hub.policy, lambda: None)
        importer = factories[importer_name](context)
        with console.status("Scanning..."):
            items = importer.scan(list(paths))
        columns = (
            SpinnerColumn(),
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeRemainingColumn(),
        )
        with (
            Progress(*columns, console=console, transient=False) as progress,
            ThreadPoolExecutor(max_workers=max(1, jobs)) as pool,
        ):
            task = progress.add_task("Importing", total=len(items), detail="")
            for outcome in pool.map(importer.import_one, items):
                counts[outcome.status] += 1
                if outcome.status == "rejected":
                    rejected.append(outcome)
                detail = " ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                progress.update(task, advance=1, detail=detail)
        importer.finish()
        with console.status("Aggregating studies..."):
            hub.runner.catch_up()
    finally:
        hub.close()
    return counts, rejected


def print_summary(
    console: Console, counts: Counter[str], rejected: Sequence[ImportOutcome], *, limit: int = 20
) -> None:
    """The accepted/replaced/skipped/rejected counts, then each rejected object (one line each,
    never wrapped, so it can be grepped) with its reason."""
    table = Table(title="Import summary", show_header=True)
    table.add_column("status")
    table.add_column("objects", justify="right")
    for status in ("accepted", "replaced", "skipped", "rejected"):
        table.add_row(status, str(counts.get(status, 0)))
    console.print(table)
    for outcome in rejected[:limit]:
        console.print(
            f"rejected {outcome.item.label}: {outcome.reason}", soft_wrap=True, markup=False
        )
    if len(rejected) > limit:
        console.print(f"... and {len(rejected) - limit} more rejected", soft_wrap=True)


class ImporterNotFound(HubError):
    hub_code = "HUB-1005"
