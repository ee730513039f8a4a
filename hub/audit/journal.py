"""The audit journal: append-only, hash-chained, signed at checkpoints (issue 7).

Every ``AuditEvent`` is first a line of the journal under ``<data_dir>/audit/``, in segment files
``journal-<first seq>.ndjson``, one per UTC day at most (and at most ``segment_events`` lines), so
retention can drop whole days. A line is ``{"seq", "prev", "hash", "event"}``: ``seq`` counts up
from 1 without gaps, ``prev`` is the ``hash`` of the line before (the anchor's after pruning), and
``hash`` is SHA-256 over ``seq``, ``prev`` and the event's canonical JSON (sorted keys), so editing,
deleting or re-ordering any line breaks the chain at that line. Checkpoint lines
``{"seq", "hash", "checkpoint": <JWS>}`` sign the head of the chain with the hub's key every
``checkpoint_every`` events, on close and before pruning; a rewritten chain then no longer matches
a signature its writer could not forge.

Durability (``sync``): every line is written to the operating system before ``append`` returns,
so a crash of PixelHub loses nothing acknowledged; ``"interval"`` (default) fsyncs at most
``sync_interval`` seconds later (the window a power loss can cost), ``"always"`` fsyncs before
``append`` returns, in groups shared by concurrent callers.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import logging
import os
import re
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import orjson

log = logging.getLogger("pixelhub.audit")

GENESIS = "0" * 64
SyncMode = Literal["interval", "always"]
_SEGMENT = re.compile(r"^journal-(\d{12})\.ndjson$")
ANCHOR_FILE = "anchor.json"


class JournalBusy(RuntimeError):
    """Another process holds the journal's writer lock (a running ``pixelhub serve``)."""


class CheckpointSigner(Protocol):
    """Signs and verifies checkpoint payloads (a JWS with the hub's key)."""

    def sign(self, payload: dict[str, Any]) -> str: ...

    def verify(self, token: str) -> dict[str, Any]:
        """The payload of a valid signature; raises on any invalid one."""


def canonical(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event, option=orjson.OPT_SORT_KEYS)


def chain_hash(seq: int, prev: str, event: dict[str, Any]) -> str:
    """The hash of one journal line: SHA-256 over ``seq``, ``prev`` and the canonical event."""
    digest = hashlib.sha256(f"{seq}|{prev}|".encode())
    digest.update(canonical(event))
    return digest.hexdigest()


@dataclass(frozen=True)
class JournalRecord:
    seq: int
    prev: str
    hash: str
    event: dict[str, Any]


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    token: str


def segment_paths(directory: Path) -> list[tuple[int, Path]]:
    """The journal's segments, ``(first seq, path)``, in order."""
    found = []
    for path in directory.glob("journal-*.ndjson"):
        match = _SEGMENT.match(path.name)
        if match:
            found.append((int(match[1]), path))
    return sorted(found)


def parse_line(line: bytes) -> JournalRecord | Checkpoint:
    """One journal line; raises ``ValueError`` when it is not a well-formed line."""
    try:
        raw = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("seq"), int):
        raise ValueError("not a journal line")
    if "checkpoint" in raw:
        return Checkpoint(raw["seq"], str(raw.get("hash")), str(raw["checkpoint"]))
    event = raw.get("event")
    if not isinstance(event, dict):
        raise ValueError("a journal line without an event")
    return JournalRecord(raw["seq"], str(raw.get("prev")), str(raw.get("hash")), event)


def _line_seq(line: bytes) -> int | None:
    """The ``seq`` a line starts with (every line is written ``{"seq":N,...``), read without
    parsing the line; ``None`` if it does not start so."""
    if not line.startswith(b'{"seq":'):
        return None
    end = line.find(b",", 7)
    try:
        return int(line[7:end])
    except ValueError:
        return None


def read_anchor(directory: Path) -> Checkpoint | None:
    """The signed head of the pruned part of the chain, if anything was pruned."""
    path = directory / ANCHOR_FILE
    if not path.exists():
        return None
    raw = orjson.loads(path.read_bytes())
    return Checkpoint(int(raw["seq"]), str(raw["hash"]), str(raw["checkpoint"]))


def iter_lines(directory: Path, since_seq: int = 0) -> Iterator[JournalRecord | Checkpoint]:
    """Every line after ``since_seq`` (checkpoints included), in journal order."""
    segments = segment_paths(directory)
    start = 0
    for i, (first, _) in enumerate(segments):
        if first <= since_seq + 1:
            start = i
    for _, path in segments[start:]:
        with path.open("rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    return  # a line still being written
                item = parse_line(line)
                if item.seq > since_seq or (isinstance(item, Checkpoint) and item.seq == since_seq):
                    yield item


def _fsync_dir(directory: Path) -> None:
    """Make a new or removed directory entry durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _segment_name(first_seq: int) -> str:
    return f"journal-{first_seq:012d}.ndjson"


def _first_day(path: Path) -> str | None:
    """The UTC day of a segment's first event (segments hold one day each)."""
    if not path.exists():
        return None
    with path.open("rb") as fh:
        line = fh.readline()
    if not line.endswith(b"\n"):
        return None
    item = parse_line(line)
    return str(item.event.get("recorded", ""))[:10] if isinstance(item, JournalRecord) else None


def last_record(path: Path) -> JournalRecord | None:
    """The last event of a closed segment."""
    lines = path.read_bytes().splitlines()
    for line in reversed(lines):
        item = parse_line(line)
        if isinstance(item, JournalRecord):
            return item
    return None


class JournalTail:
    """Reads a journal's records in order as they are appended, remembering its position. Lines
    at or before the position are passed over by their ``seq`` prefix, unparsed."""

    def __init__(self, directory: Path, after_seq: int) -> None:
        self.directory = directory
        self.seq = after_seq
        self._path: Path | None = None
        self._offset = 0

    def _choose_segment(self) -> bool:
        """Move to the segment holding ``seq + 1``; False when there is none yet."""
        chosen = None
        for first, path in segment_paths(self.directory):
            if first <= self.seq + 1:
                chosen = path
        if chosen is None or chosen == self._path:
            return False
        self._path, self._offset = chosen, 0
        return True

    def skip_to(self, seq: int) -> None:
        """Go on after record ``seq``, got elsewhere (``AuditJournal.recent``); the lines up to
        it are passed over on the next ``read``."""
        self.seq = max(self.seq, seq)

    def read(self, limit: int) -> list[JournalRecord]:
        """Up to ``limit`` records after the last one read."""
        records: list[JournalRecord] = []
        if self._path is None and not self._choose_segment():
            return records
        while len(records) < limit:
            assert self._path is not None
            with self._path.open("rb") as fh:
                fh.seek(self._offset)
                for line in fh:
                    if not line.endswith(b"\n"):
                        break
                    self._offset += len(line)
                    seq = _line_seq(line)
                    if seq is not None and seq <= self.seq:
                        continue
                    item = parse_line(line)
                    if isinstance(item, JournalRecord) and item.seq > self.seq:
                        records.append(item)
                        self.seq = item.seq
                        if len(records) >= limit:
                            return records
            if not self._choose_segment():  # at the end of the newest segment
                return records
        return records


class AuditJournal:
    """The writer of one node's journal (one process; appends are serialised by a lock). It
    keeps its last ``keep_recent`` records in memory (``recent``), so an indexer in the same
    process need not read back and parse what was just written."""

    def __init__(
        self,
        directory: Path,
        *,
        signer: CheckpointSigner | None = None,
        sync: SyncMode = "interval",
        sync_interval: float = 0.2,
        checkpoint_every: int = 1000,
        segment_events: int = 100_000,
        keep_recent: int = 1000,
    ) -> None:
        self.directory = directory
        self.signer = signer
        self.sync = sync
        self.sync_interval = sync_interval
        self.checkpoint_every = checkpoint_every
        self.segment_events = segment_events
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._written = threading.Condition(self._lock)
        self._closed = threading.Event()
        self._recent: deque[JournalRecord] = deque(maxlen=keep_recent)
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(directory / ".writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:  # one writer per journal: a second one would fork the chain
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise JournalBusy(f"{directory} is being written by another process") from None
        self._seq, self._hash, self._segment_first = self._recover()
        self._segment_day = _first_day(self.directory / _segment_name(self._segment_first))
        self._since_checkpoint = 0
        self._synced_seq = self._seq
        self._fd = self._open_segment()
        self._syncer: threading.Thread | None = None
        if sync == "interval":
            self._syncer = threading.Thread(target=self._sync_loop, name="audit-sync", daemon=True)
            self._syncer.start()

    # ------------------------------------------------------------------ recovery

    def _recover(self) -> tuple[int, str, int]:
        """The head of the chain from the last segment; a torn last line is cut off."""
        anchor = read_anchor(self.directory)
        seq, head = (anchor.seq, anchor.hash) if anchor else (0, GENESIS)
        segments = segment_paths(self.directory)
        if not segments:
            return seq, head, seq + 1
        first, path = segments[-1]
        data = path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            log.warning("audit journal %s: cutting a torn last line", path)
            with path.open("r+b") as fh:
                fh.truncate(end)
                os.fsync(fh.fileno())
        lines = data[:end].splitlines()
        if lines:
            last = parse_line(lines[-1])
            seq, head = last.seq, last.hash
        return seq, head, first

    def _open_segment(self) -> int:
        path = self.directory / _segment_name(self._segment_first)
        new = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if new:
            _fsync_dir(self.directory)
        return fd

    # ------------------------------------------------------------------ writing

    @property
    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last event appended."""
        with self._lock:
            return self._seq, self._hash

    def append(self, event: dict[str, Any]) -> JournalRecord:
        """Chain ``event`` onto the journal; returns once the line is written (and, with
        ``sync="always"``, fsynced)."""
        with self._lock:
            if self._closed.is_set():
                raise RuntimeError("the audit journal is closed")
            seq = self._seq + 1
            day = str(event.get("recorded", ""))[:10]
            if seq > self._segment_first and (
                seq - self._segment_first >= self.segment_events
                or (self._segment_day is not None and day != self._segment_day)
            ):
                self._rotate(seq)
            if seq == self._segment_first or self._segment_day is None:
                self._segment_day = day
            record = JournalRecord(seq, self._hash, chain_hash(seq, self._hash, event), event)
            line = orjson.dumps(
                {"seq": seq, "prev": record.prev, "hash": record.hash, "event": event}
            )
            os.write(self._fd, line + b"\n")
            self._seq, self._hash = seq, record.hash
            self._recent.append(record)
            self._since_checkpoint += 1
            if self.signer is not None and self._since_checkpoint >= self.checkpoint_every:
                self._write_checkpoint()
        if self.sync == "always":
            self._sync_through(seq)
        return record

    def recent(self, after_seq: int, limit: int) -> list[JournalRecord]:
        """Up to ``limit`` records following ``after_seq`` from memory, as written; empty when
        memory no longer (or not yet) holds the one right after ``after_seq``."""
        with self._lock:
            if not self._recent or not self._recent[0].seq <= after_seq + 1 <= self._seq:
                return []
            start = after_seq + 1 - self._recent[0].seq
            return list(itertools.islice(self._recent, start, start + limit))

    def _rotate(self, first_seq: int) -> None:
        os.fsync(self._fd)
        os.close(self._fd)
        self._segment_first = first_seq
        self._fd = self._open_segment()

    def _write_checkpoint(self) -> Checkpoint:
        assert self.signer is not None
        token = self.signer.sign({"seq": self._seq, "hash": self._hash})
        line = orjson.dumps({"seq": self._seq, "hash": self._hash, "checkpoint": token})
        os.write(self._fd, line + b"\n")
        self._since_checkpoint = 0
        return Checkpoint(self._seq, self._hash, token)

    def checkpoint(self) -> Checkpoint | None:
        """Sign the head of the chain now (also fsyncs); ``None`` without a signer."""
        if self.signer is None:
            return None
        with self._lock:
            written = self._write_checkpoint()
            os.fsync(self._fd)
        return written

    def _sync_through(self, seq: int) -> None:
        """Group fsync: one caller syncs for everyone written before it started."""
        with self._sync_lock:
            if self._synced_seq >= seq:
                return
            with self._lock:
                target, fd = self._seq, self._fd
            os.fsync(fd)
            self._synced_seq = target

    def _sync_loop(self) -> None:
        while not self._closed.wait(self.sync_interval):
            try:
                if self._synced_seq < self._seq:
                    self._sync_through(self._seq)
            except OSError:  # the segment rotated under us; the next round syncs the new one
                log.exception("audit journal sync failed; retrying")

    def last_seq_recorded_before(self, cutoff: str) -> int:
        """The last ``seq`` of the closed segments whose events were all recorded before
        ``cutoff`` (an ISO 8601 UTC instant), 0 if none."""
        found = 0
        for _, path in segment_paths(self.directory)[:-1]:
            last = last_record(path)
            if last is None or str(last.event.get("recorded", "")) >= cutoff:
                break
            found = last.seq
        return found

    def prune(self, before_seq: int) -> int:
        """Delete whole segments whose events all have ``seq <= before_seq``; the signed head of
        the pruned part becomes the anchor the remaining chain is verified from. Returns the
        number of events removed."""
        if self.signer is None:
            raise RuntimeError("pruning needs a checkpoint signer")
        with self._lock:
            segments = segment_paths(self.directory)
            removable: list[tuple[int, Path]] = []
            for i, (_, path) in enumerate(segments[:-1]):  # never the segment being written
                last_seq = segments[i + 1][0] - 1
                if last_seq <= before_seq:
                    removable.append((last_seq, path))
            if not removable:
                return 0
            previous = read_anchor(self.directory)
            last_seq = removable[-1][0]
            last_hash = ""
            for item in iter_lines(self.directory, last_seq - 1):
                if isinstance(item, JournalRecord) and item.seq == last_seq:
                    last_hash = item.hash
                    break
            token = self.signer.sign({"seq": last_seq, "hash": last_hash})
            anchor = orjson.dumps({"seq": last_seq, "hash": last_hash, "checkpoint": token})
            tmp = self.directory / (ANCHOR_FILE + ".tmp")
            tmp.write_bytes(anchor)
            with tmp.open("rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.directory / ANCHOR_FILE)
            removed = last_seq - (previous.seq if previous else 0)
            for _, path in removable:
                path.unlink()
            _fsync_dir(self.directory)
            return removed

    def close(self) -> None:
        """Checkpoint, fsync and close (idempotent)."""
        if self._closed.is_set():
            return
        if self.signer is not None and self._since_checkpoint:
            with self._lock:
                self._write_checkpoint()
        self._closed.set()
        if self._syncer is not None:
            self._syncer.join()
        with self._lock:
            os.fsync(self._fd)
            os.close(self._fd)
            os.close(self._lock_fd)
