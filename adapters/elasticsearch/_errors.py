"""Where ``elasticsearch``/``elastic_transport`` errors enter PixelHub, they become hub errors.

    client error                                       hub error
    ConnectionError, ConnectionTimeout, TlsError       OutOfResources  "unreachable", Retry-After
    ApiError 429 (es_rejected_execution, breakers)     OutOfResources  "busy", Retry-After
    ApiError 5xx (no master, shards unavailable...)    OutOfResources  "unavailable"
    ApiError 409 (version conflict)                    Conflict
    ApiError 401/403, other 4xx, SerializationError    HubError (500: a configuration or
                                                       PixelHub bug, never the caller's input)

The original exception is chained (``raise ... from``) so logs keep the client's detail.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import elastic_transport
import elasticsearch

from hub.errors import Conflict, HubError, OutOfResources

RETRY_AFTER = {"Retry-After": "1"}


def retryable_status(status: int) -> bool:
    """Statuses worth retrying with back-off (Elasticsearch's bulk API docs: 429 and 5xx)."""
    return status == 429 or status >= 500


def translate(exc: Exception) -> HubError:
    """The hub error for a client exception."""
    if isinstance(exc, elastic_transport.ConnectionError | elastic_transport.ConnectionTimeout):
        return OutOfResources(f"Elasticsearch unreachable ({exc})", headers=RETRY_AFTER)
    if isinstance(exc, elasticsearch.ApiError):
        status = exc.meta.status
        detail = f"{status} {exc.message}"
        if status == 429:
            return OutOfResources(
                f"Elasticsearch busy, retry later ({detail})", headers=RETRY_AFTER
            )
        if status >= 500:
            return OutOfResources(f"Elasticsearch unavailable ({detail})", headers=RETRY_AFTER)
        if status == 409:
            return Conflict(f"Elasticsearch conflict ({detail})")
        return HubError(f"Elasticsearch refused the request ({detail}: {exc.body!r:.500})")
    return HubError(f"Elasticsearch client error ({type(exc).__name__}: {exc})")


@contextmanager
def es_errors() -> Iterator[None]:
    """Run a block, converting client exceptions into the matching hub error."""
    try:
        yield
    except (elasticsearch.ApiError, elastic_transport.TransportError) as exc:
        raise translate(exc) from exc
