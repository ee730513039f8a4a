"""hub.fhir.bundles: history parameters (http.html#history) never crash on hostile values."""

from __future__ import annotations

import pytest

from hub.errors import InvalidSearch
from hub.fhir.bundles import MAX_OFFSET, HistoryArgs


def test_history_args_parse_plain_values() -> None:
    args = HistoryArgs.parse(
        [("_count", "7"), ("_offset", "3"), ("_since", "2024-01-02T03:04:05+01:00")], 100
    )
    assert (args.count, args.offset, args.since) == (7, 3, "2024-01-02T02:04:05.000Z")


def test_huge_offset_and_count_are_clamped() -> None:
    """Found by schemathesis: ``_offset`` with 34 digits reached SQLite (OverflowError, 500)."""
    args = HistoryArgs.parse([("_offset", "9" * 40), ("_count", "9" * 5000)], 100)
    assert args.offset == MAX_OFFSET and args.count == 100
    assert MAX_OFFSET < 2**63 - 1000  # offset + page size still fits a 64-bit integer


@pytest.mark.parametrize("value", ["²", "٣", "-1", "1.5", ""])
def test_only_ascii_digits_are_integers(value: str) -> None:
    """``str.isdigit`` accepts ``²`` and ``٣``, which ``int()`` then refuses (a 500 before)."""
    with pytest.raises(InvalidSearch):
        HistoryArgs.parse([("_count", value)], 100)


@pytest.mark.parametrize(
    "value", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "yesterday"]
)
def test_instants_beyond_the_calendar_are_invalid(value: str) -> None:
    """Converting these to UTC overflows ``datetime`` (OverflowError, a 500 before)."""
    with pytest.raises(InvalidSearch):
        HistoryArgs.parse([("_since", value)], 100)
    with pytest.raises(InvalidSearch):
        HistoryArgs.parse([("_at", value)], 100)
