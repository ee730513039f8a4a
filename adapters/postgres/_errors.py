"""Where psycopg errors enter PixelHub, they become hub errors (see ``hub.errors``).

    psycopg error (SQLSTATE class)                  hub error
    OperationalError: connection refused/lost,      OutOfResources  "unavailable"
      server shutting down (57P), too many
      connections (53300), pool timeout
    SerializationFailure (40001), DeadlockDetected  OutOfResources  "busy", with Retry-After
      (40P01), LockNotAvailable (55P03),
      QueryCanceled (57014: statement timeout)
    InsufficientResources (53: disk full, memory)   OutOfResources  "out of resources"
    DataError (22: NUL in text, value out of        InvalidRequest  (the input cannot be stored
      range), ProgramLimitExceeded (54: too long)                    or searched as given)
    IntegrityError (23: constraint violated)        Conflict
    anything else (SQL bugs)                        HubError (500)

The original exception is chained (``raise ... from``) so logs keep the driver's detail.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import errors as pg
from psycopg_pool import PoolTimeout, TooManyRequests

from hub.errors import Conflict, HubError, InvalidRequest, OutOfResources

_RETRY = {"Retry-After": "1"}


def translate(exc: Exception) -> HubError:
    """The hub error for a psycopg (or psycopg_pool) error."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, PoolTimeout | TooManyRequests):
        return OutOfResources(
            f"PostgreSQL store busy: no free connection ({detail})", headers=_RETRY
        )
    if isinstance(
        exc, pg.SerializationFailure | pg.DeadlockDetected | pg.LockNotAvailable | pg.QueryCanceled
    ):
        return OutOfResources(f"PostgreSQL store busy, retry later ({detail})", headers=_RETRY)
    if isinstance(exc, pg.InsufficientResources):
        return OutOfResources(f"PostgreSQL store out of resources ({detail})")
    if isinstance(exc, pg.DataError | pg.ProgramLimitExceeded):
        return InvalidRequest(f"Value not storable or searchable in PostgreSQL ({detail})")
    if isinstance(exc, psycopg.IntegrityError):
        return Conflict(f"PostgreSQL store: constraint violated ({detail})")
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return OutOfResources(f"PostgreSQL store unavailable ({detail})", headers=_RETRY)
    return HubError(f"PostgreSQL store error ({detail})")


@contextmanager
def postgres_errors() -> Iterator[None]:
    """Run a block, converting psycopg errors into the matching hub error."""
    try:
        yield
    except (psycopg.Error, PoolTimeout, TooManyRequests) as exc:
        raise translate(exc) from exc
