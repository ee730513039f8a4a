"""Where sqlite3 errors enter PixelHub, they become hub errors (see ``hub.errors``).

    sqlite3 error (primary result code)      hub error
    SQLITE_FULL (13)                         OutOfResources  "disk full"
    SQLITE_IOERR (10)                        OutOfResources  "disk I/O error"
    SQLITE_BUSY (5), SQLITE_LOCKED (6)       OutOfResources  "busy", with Retry-After
    SQLITE_CANTOPEN (14), SQLITE_READONLY (8),
    SQLITE_NOMEM (7), SQLITE_PROTOCOL (15)   OutOfResources  "unavailable"
    closed connection (ProgrammingError)     OutOfResources  "store closed"
    SQLITE_CONSTRAINT (19) / IntegrityError  Conflict
    anything else (corruption, SQL bugs)     HubError (500)

The original exception is chained (``raise ... from``) so logs keep the driver's detail.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from hub.errors import Conflict, HubError, OutOfResources

_FULL = 13
_IOERR = 10
_BUSY = 5
_LOCKED = 6
_UNAVAILABLE = {7: "out of memory", 8: "read-only", 14: "cannot open", 15: "locking protocol"}
_CONSTRAINT = 19


def translate(exc: sqlite3.Error) -> HubError:
    """The hub error for a sqlite3 error."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    detail = str(exc)
    if primary == _FULL:
        return OutOfResources(f"SQLite store: disk full ({detail})")
    if primary == _IOERR:
        return OutOfResources(f"SQLite store: disk I/O error ({detail})")
    if primary in (_BUSY, _LOCKED):
        return OutOfResources(
            f"SQLite store busy, retry later ({detail})", headers={"Retry-After": "1"}
        )
    if primary in _UNAVAILABLE:
        return OutOfResources(f"SQLite store unavailable: {_UNAVAILABLE[primary]} ({detail})")
    if isinstance(exc, sqlite3.IntegrityError) or primary == _CONSTRAINT:
        return Conflict(f"SQLite store: constraint violated ({detail})")
    if isinstance(exc, sqlite3.ProgrammingError) and "closed" in detail.lower():
        return OutOfResources("SQLite store closed")
    return HubError(f"SQLite store error ({detail})")


@contextmanager
def sqlite_errors() -> Iterator[None]:
    """Run a block, converting ``sqlite3.Error`` into the matching hub error."""
    try:
        yield
    except sqlite3.Error as exc:
        raise translate(exc) from exc
