"""The audit indexer's own process, started by ``pixelhub serve`` (issue 7, "never slows ingest").

Indexing an event (search-index extraction and the insert) costs several times what journaling it
does. In the serving process that work would take turns with the requests under the GIL; in its
own process it runs on another core. It tails the journal and writes through its own connection
to the store (SQLite WAL admits one writer at a time; each batch is one short transaction), and
stops when asked, or when the hub that started it is gone.

It runs at the lowest CPU priority (nice 19): on a core the hub also serves from, it uses the
time serving leaves (waits on disks and peers, quiet periods). Under load that keeps every core
busy its lag grows, shown by ``/health`` (``auditIndex``), and is caught up when load eases; the
events are in the journal meanwhile, flushed before each response, so none is lost. It holds
the store's write lock for one small batch at a time (``BATCH`` events, a few milliseconds of
work, their extraction done before), so a hub writer waiting behind it, asleep, lets it finish.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from multiprocessing.synchronize import Event
from pathlib import Path

from hub.audit.setup import indexer_cursor, store_events
from hub.audit.trail import AuditIndexer
from hub.engines import open_engine
from hub.search.registry import default_registry

log = logging.getLogger("pixelhub.audit")
BATCH = 100  # events per transaction


def index_until_stopped(
    data_dir: str,
    journal_dir: str,
    database: str,
    stop: Event,
    parent: int,
    poll_seconds: float,
) -> None:
    """The worker's body: index batch after batch, waiting ``poll_seconds`` when idle."""
    os.nice(19)
    engine = open_engine(database, data_dir=data_dir)
    try:
        directory = Path(journal_dir)
        cursor = indexer_cursor(directory)
        indexer = AuditIndexer(
            directory,
            lambda: engine.change_feed.cursor(cursor),
            store_events(engine, default_registry(), cursor),
            batch_size=BATCH,
        )
        while not stop.is_set() and os.getppid() == parent:
            try:
                handled = indexer.run_once()
            except Exception:  # retried, never fatal
                log.exception("audit indexer failed; retrying")
                stop.wait(2.0)
                continue
            if handled < indexer.batch_size:
                stop.wait(poll_seconds)
    finally:
        engine.close()


class IndexerProcess:
    def __init__(
        self, data_dir: Path, journal_dir: Path, database: str, poll_seconds: float = 0.5
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._process = context.Process(
            target=index_until_stopped,
            args=(
                str(data_dir),
                str(journal_dir),
                database,
                self._stop,
                os.getpid(),
                poll_seconds,
            ),
            name="pixelhub-audit-indexer",
            daemon=True,
        )

    @property
    def alive(self) -> bool:
        return self._process.is_alive()

    def start(self) -> None:
        self._process.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask it to finish its batch and stop; terminate it after ``timeout`` seconds."""
        self._stop.set()
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout)
