"""A JSON document kept in a private file (mode 0600, its directory 0700): parsed again whenever
the file changes on disk, so that a ``pixelhub`` command takes effect on a running hub, and
replaced atomically (a temporary file renamed over it), so that a reader never sees half of it.
The clients, users and federation partners of a data directory live in such files."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

__all__ = ["PrivateJsonFile"]

T = TypeVar("T")


class PrivateJsonFile(Generic[T]):
    """The parsed content of ``path`` (``empty`` while there is no file)."""

    def __init__(self, path: Path, parse: Callable[[Any], T], empty: T) -> None:
        self.path = path
        self._parse = parse
        self._empty = empty
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._value = empty

    def value(self) -> T:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return self._empty
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._value = self._parse(json.loads(self.path.read_text(encoding="utf-8")))
                self._stamp = stamp
            return self._value

    def write(self, document: Any) -> None:
        """Replace the file with ``document`` (JSON)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(document, out, indent=2)
        os.replace(tmp, self.path)
