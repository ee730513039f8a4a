"""Merged results of federated searches kept for paging (search.html#paging), in the data dir
that replicas share (``<data_dir>/federation/pages``, one private file per search), so the
``next`` link of one replica's answer is served by any replica; without a directory, in this
process's memory. A page token is 128 random bits; a result expires ``ttl`` seconds after the
search; expired files are removed at most every ``ttl / 10`` seconds by the next search, judged
by their modification time so that pruning reads no file."""

from __future__ import annotations

import os
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = ["MergedResult", "PageStore"]

_TOKEN = re.compile(r"[A-Za-z0-9_-]{22}")
_MEMORY_LIMIT = 1000


@dataclass
class MergedResult:
    """One federated search's merged entries, for the requester who made it."""

    owner: tuple[str, str | None]  # (subject, patient) of the principal
    resource_type: str
    matches: list[dict[str, Any]]
    references: list[list[str]]  # each match's absolute references (its page's includes)
    includes: dict[str, dict[str, Any]]
    outcomes: list[dict[str, Any]]
    expires: float  # seconds since the epoch


class PageStore:
    def __init__(
        self, directory: Path | None, ttl: float, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.directory = directory
        self.ttl = ttl
        self._clock = clock
        self._memory: OrderedDict[str, MergedResult] = OrderedDict()
        self._pruned = 0.0

    def expiry(self) -> float:
        """When a result kept now expires."""
        return self._clock() + self.ttl

    def put(self, result: MergedResult) -> str:
        """Keep ``result``; its page token."""
        self._prune()
        token = secrets.token_urlsafe(16)
        if self.directory is None:
            while len(self._memory) >= _MEMORY_LIMIT:
                self._memory.popitem(last=False)
            self._memory[token] = result
            return token
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.directory / f"{token}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(orjson.dumps(result))  # orjson encodes dataclasses without copying
        return token

    def get(self, token: str) -> MergedResult | None:
        """The result of ``token`` while it has not expired."""
        if not _TOKEN.fullmatch(token):
            return None
        if self.directory is None:
            found = self._memory.get(token)
        else:
            try:
                raw = orjson.loads((self.directory / f"{token}.json").read_bytes())
            except (FileNotFoundError, ValueError):
                return None
            found = MergedResult(**{**raw, "owner": tuple(raw["owner"])})
        return found if found is not None and found.expires >= self._clock() else None

    def _prune(self) -> None:
        now = self._clock()
        if self.directory is None:
            while self._memory and next(iter(self._memory.values())).expires < now:
                self._memory.popitem(last=False)
            return
        if now - self._pruned < self.ttl / 10 or not self.directory.exists():
            return
        self._pruned = now
        for path in self.directory.glob("*.json"):
            try:
                if path.stat().st_mtime + self.ttl < now:
                    path.unlink(missing_ok=True)
            except OSError:
                continue
