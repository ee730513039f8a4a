"""Projectors follow the change feed and keep derived state current (DESIGN.md, data flow 5).

A projector handles a batch of changes and must be idempotent: after a crash it may see a batch
again, because its cursor is saved only after the batch is handled. The runner gives each projector
its own thread, wakes it when a write commits (``notify``, coalescing the commits of the next
``coalesce_seconds``) or every ``poll_seconds``, and reports
each projector's lag (changes committed but not yet handled) for ``/health`` and ``/metrics``.
With a ``Leadership`` (replicas sharing one store), projectors run only in the replica that holds
it; the others watch, ready to take over from the saved cursors.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol

import orjson

from hub.ports import Change, ChangeFeed, Leadership, Repository, SearchIndex
from hub.search.extract import extract_index_entries
from hub.search.model import IndexEntry, Key
from hub.search.registry import SERVED_TYPES

log = logging.getLogger("pixelhub.projectors")
SERVED = frozenset(SERVED_TYPES)


class Projector(Protocol):
    """A projector may also have time-based work (e.g. debounced aggregation): an optional
    ``tick() -> float | None`` is called after every batch and every wake-up and returns the
    seconds until it wants to be called again; an optional ``flush()`` does all deferred work
    now (``ProjectorRunner.catch_up`` calls it); an optional ``settle()`` is called once the
    projector has reached the end of the feed, before that last cursor is saved (so a lag of 0
    means settled: e.g. an asynchronous index has made its batches searchable)."""

    name: str

    def handle(self, changes: Sequence[Change]) -> None:
        """Apply ``changes`` (ascending ``seq``); raise to have the batch retried later."""


class SearchIndexProjector:
    """Feeds an asynchronous ``SearchIndex`` (e.g. Elasticsearch) from the change feed."""

    name = "search-index"

    def __init__(self, repository: Repository, index: SearchIndex) -> None:
        self.repository = repository
        self.index = index

    def settle(self) -> None:
        """Make what was applied searchable (the index's ``refresh``, where it has one): done
        once the feed is drained rather than per batch, which costs bulk indexing ~40%."""
        refresh = getattr(self.index, "refresh", None)
        if refresh is not None:
            refresh()

    def handle(self, changes: Sequence[Change]) -> None:
        keys = list(  # other records (DICOM instances) are not FHIR resources
            dict.fromkeys((c.resource_type, c.id) for c in changes if c.resource_type in SERVED)
        )
        current = {(r.resource_type, r.id): r for r in self.repository.read_many(keys)}
        updates: list[tuple[Key, Sequence[IndexEntry] | None, str]] = []
        for key in keys:  # one read for the batch; what it lacks was deleted or purged
            found = current.get(key)
            if found is None or found.data is None:
                updates.append((key, None, ""))
            else:
                entries = extract_index_entries(orjson.loads(found.data))
                updates.append((key, entries, found.last_updated))
        self.index.apply(updates)


class ProjectorRunner:
    """Runs projectors on threads, each resuming from its saved cursor."""

    def __init__(
        self,
        feed: ChangeFeed,
        projectors: Sequence[Projector],
        *,
        batch_size: int = 500,
        poll_seconds: float = 0.5,
        retry_seconds: float = 2.0,
        coalesce_seconds: float = 0.05,
        leadership: Leadership | None = None,
    ) -> None:
        self.feed = feed
        self.leadership = leadership
        self.projectors = list(projectors)
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.retry_seconds = retry_seconds
        self.coalesce_seconds = coalesce_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._unsettled: set[str] = set()  # handled a full batch, not yet settled
        self.errors: dict[str, str] = {}

    def notify(self) -> None:
        """A write committed: wake the projectors."""
        self._wake.set()

    def run_once(self, projector: Projector) -> int:
        """Handle one batch; returns the number of changes handled."""
        cursor = self.feed.cursor(projector.name)
        changes = self.feed.read_since(cursor, self.batch_size)
        settle = getattr(projector, "settle", None)
        if not changes:
            if settle is not None and projector.name in self._unsettled:
                settle()
                self._unsettled.discard(projector.name)
            return 0
        projector.handle(changes)
        if settle is not None:
            if len(changes) < self.batch_size:  # the end of the feed
                settle()
                self._unsettled.discard(projector.name)
            else:
                self._unsettled.add(projector.name)
        self.feed.set_cursor(projector.name, changes[-1].seq)
        return len(changes)

    def catch_up(self) -> None:
        """Run every projector until it has nothing left (used by tests and the CLI)."""
        for _ in range(20):  # a projector's writes are changes that others may follow
            before = self.feed.last_seq()
            handled = 0
            for projector in self.projectors:
                while n := self.run_once(projector):
                    handled += n
                flush = getattr(projector, "flush", None)
                if flush is not None:
                    flush()
            if not handled and self.feed.last_seq() == before:
                return

    def leading(self) -> bool:
        """Whether this process runs the projectors (always, without a ``Leadership``)."""
        if self.leadership is None:
            return True
        try:
            return self.leadership.acquire()
        except Exception as exc:  # an unreachable store: nobody here leads
            log.warning("projector leadership unavailable: %s", exc)
            return False

    def lag(self) -> dict[str, int]:
        last = self.feed.last_seq()
        return {p.name: last - self.feed.cursor(p.name) for p in self.projectors}

    def start(self) -> None:
        for projector in self.projectors:
            thread = threading.Thread(
                target=self._loop,
                args=(projector,),
                name=f"projector-{projector.name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        if self.leadership is not None:
            try:
                self.leadership.release()
            except Exception:  # closing anyway: the store drops it with the connection
                log.warning("projector leadership not released", exc_info=True)

    def _loop(self, projector: Projector) -> None:
        tick = getattr(projector, "tick", None)
        while not self._stop.is_set():
            if not self.leading():
                self._stop.wait(self.poll_seconds)
                continue
            due: float | None = None
            try:
                handled = self.run_once(projector)
                if tick is not None:
                    due = tick()
                self.errors.pop(projector.name, None)
            except Exception as exc:  # a failing projector is retried, never fatal
                log.exception("projector %s failed; retrying", projector.name)
                self.errors[projector.name] = str(exc)
                self._stop.wait(self.retry_seconds)
                continue
            if handled < self.batch_size:
                wait = self.poll_seconds if due is None else min(self.poll_seconds, max(due, 0.0))
                if self._wake.wait(wait):
                    # woken by a commit: let the commits of the next moment join this run, so a
                    # busy channel does not pay a projector run (and its cursor fsync) per write
                    self._stop.wait(self.coalesce_seconds)
                self._wake.clear()
