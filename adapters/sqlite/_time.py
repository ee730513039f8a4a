"""Instants as the store keeps them: integer ms since the Unix epoch (UTC) and the FHIR R4
``instant`` text with millisecond precision and a ``Z`` zone (datatypes.html#instant)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from hub.errors import InvalidRequest
from hub.search.extract import date_range

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def format_ms(ms: int) -> str:
    """``2026-11-27T22:15:01.123Z``."""
    dt = _EPOCH + timedelta(milliseconds=ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def instant_range(text: str) -> tuple[int, int]:
    """The inclusive ms range a date/dateTime/instant covers at its precision (``2024-03`` is all
    of March); ``InvalidRequest`` if it is not one."""
    try:
        return date_range(text.strip())
    except (ValueError, OverflowError) as exc:
        raise InvalidRequest(f"Not a FHIR date or instant: {text!r} ({exc})") from exc


def parse_instant(text: str) -> int:
    """The ms an instant denotes (the start of its precision range)."""
    return instant_range(text)[0]
