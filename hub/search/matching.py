"""Dialect-neutral matching rules shared by the SQL search engines (FHIR R4 search.html).

Pure: string folding (#string; ``fold`` lives in ``hub.search.words``), the prefix tests of dates
over stored ranges (#prefix, #date) and of numbers and quantities over stored points (#number,
#quantity), as small expressions (``RangeTest``) an engine renders into its own SQL with
``to_sql``; and the FHIR ``instant`` text of stored times (datatypes.html#instant).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from hub.errors import InvalidRequest, InvalidSearch
from hub.search.extract import date_range
from hub.search.model import Prefix
from hub.search.words import fold as fold  # re-exported: the engines fold with it

# Above every other character: ``p <= x < p + PREFIX_TOP`` is "x starts with p".
PREFIX_TOP = "\U0010ffff"
# Open ends of a stored date range (a Period without start or end), in ms.
DATE_MIN = -(2**62)
DATE_MAX = 2**62

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# ---- prefixes ---------------------------------------------------------------------------------
Column = Literal["low", "high"]
Op = Literal["<", "<=", ">", ">="]


@dataclass(frozen=True, slots=True)
class Bound:
    """``<stored column> <op> value``."""

    column: Column
    op: Op
    value: int | float


Term = Bound | tuple[Bound, ...]  # a tuple is an OR of its bounds


@dataclass(frozen=True, slots=True)
class RangeTest:
    """The AND of ``terms``, negated when ``negate``; ``indexed`` when it is one or two ranges
    of a (column, ...) index, so it can drive a query."""

    terms: tuple[Term, ...]
    negate: bool = False
    indexed: bool = True


def date_test(prefix: Prefix, s_low: int, s_high: int, now_ms: int) -> RangeTest:
    """R4 search.html#prefix over a stored range ``[low, high]`` and the search range:
    eq = the search range contains it; ne = not eq; gt = stored high > search high;
    lt = stored low < search low; ge = gt or eq; le = lt or eq; sa = stored low > search high;
    eb = stored high < search low; ap = intersects the search range widened on each side by 10%
    of the distance between the search value and now (at least one second)."""
    lo: Column = "low"
    hi: Column = "high"
    if prefix == "eq":
        return RangeTest((Bound(lo, ">=", s_low), Bound(lo, "<=", s_high), Bound(hi, "<=", s_high)))
    if prefix == "ne":
        return RangeTest((Bound(lo, ">=", s_low), Bound(hi, "<=", s_high)), True, False)
    if prefix == "gt":
        return RangeTest((Bound(hi, ">", s_high),))
    if prefix == "lt":
        return RangeTest((Bound(lo, "<", s_low),))
    if prefix == "ge":  # gt or eq, as one index range (stored low <= high)
        return RangeTest((Bound(hi, ">=", s_low), (Bound(hi, ">", s_high), Bound(lo, ">=", s_low))))
    if prefix == "le":  # lt or eq, likewise
        return RangeTest(
            (Bound(lo, "<=", s_high), (Bound(lo, "<", s_low), Bound(hi, "<=", s_high)))
        )
    if prefix == "sa":
        return RangeTest((Bound(lo, ">", s_high),))
    if prefix == "eb":
        return RangeTest((Bound(hi, "<", s_low),))
    if prefix == "ap":
        gap = max(abs(now_ms - (s_low + s_high) // 2) // 10, 1000)
        return RangeTest(
            (Bound(lo, "<=", s_high + gap), Bound(hi, ">=", s_low - gap)), False, False
        )
    raise InvalidSearch(f"Unknown prefix {prefix!r}")


_OPS: dict[str, Op] = {"gt": ">", "sa": ">", "lt": "<", "eb": "<", "ge": ">=", "le": "<="}


def number_test(prefix: Prefix, value: float, low: float, high: float) -> RangeTest:
    """R4 search.html#number on a stored value taken as a point (``low`` and ``high`` both name
    it): eq/ne use the search value's implicit precision range ``[low, high)``;
    gt/lt/ge/le/sa/eb compare with the value itself (R4: precision is ignored with those);
    ap = within 10% of the value."""
    if prefix == "eq":
        return RangeTest((Bound("low", ">=", low), Bound("low", "<", high)))
    if prefix == "ne":
        return RangeTest((Bound("low", ">=", low), Bound("low", "<", high)), True, False)
    if prefix == "ap":
        delta = abs(value) / 10
        return RangeTest((Bound("low", ">=", value - delta), Bound("low", "<=", value + delta)))
    op = _OPS.get(prefix)
    if op is None:
        raise InvalidSearch(f"Unknown prefix {prefix!r}")
    return RangeTest((Bound("low", op, value),))


def to_sql(
    test: RangeTest, low: str, high: str, placeholder: str = "?"
) -> tuple[str, list[int | float]]:
    """``test`` as SQL over the columns ``low``/``high`` with bound parameters."""
    params: list[int | float] = []
    cols = {"low": low, "high": high}

    def bound(b: Bound) -> str:
        params.append(b.value)
        return f"{cols[b.column]} {b.op} {placeholder}"

    parts = []
    for term in test.terms:
        if isinstance(term, Bound):
            parts.append(bound(term))
        else:
            parts.append("(" + " OR ".join(bound(b) for b in term) + ")")
    sql = " AND ".join(parts)
    return (f"NOT ({sql})" if test.negate else sql), params


# ---- instants ---------------------------------------------------------------------------------
def now_ms() -> int:
    return time.time_ns() // 1_000_000


def format_ms(ms: int) -> str:
    """FHIR ``instant`` text with ms precision and a ``Z`` zone: ``2026-11-27T22:15:01.123Z``."""
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
