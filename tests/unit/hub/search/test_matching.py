"""hub.search.matching: the dialect-neutral matching rules both SQL engines render."""

from __future__ import annotations

import pytest

from hub.errors import InvalidRequest, InvalidSearch
from hub.search.matching import (
    date_test,
    fold,
    format_ms,
    instant_range,
    number_test,
    parse_instant,
    to_sql,
)


def test_fold_ignores_case_and_accents() -> None:
    assert fold("Müller") == fold("MULLER") == "muller"
    assert fold("São Paulo") == "sao paulo"


def test_date_prefixes_render_as_bound_ranges() -> None:
    assert to_sql(date_test("eq", 10, 20, 0), "lo", "hi") == (
        "lo >= ? AND lo <= ? AND hi <= ?",
        [10, 20, 20],
    )
    assert to_sql(date_test("ne", 10, 20, 0), "lo", "hi", "%s") == (
        "NOT (lo >= %s AND hi <= %s)",
        [10, 20],
    )
    assert to_sql(date_test("ge", 10, 20, 0), "lo", "hi") == (
        "hi >= ? AND (hi > ? OR lo >= ?)",
        [10, 20, 10],
    )
    assert not date_test("ap", 10, 20, 100_000).indexed
    sql, params = to_sql(date_test("ap", 0, 0, 100_000), "lo", "hi")
    assert sql == "lo <= ? AND hi >= ?" and params == [10_000, -10_000]


def test_number_prefixes_compare_the_stored_point() -> None:
    assert to_sql(number_test("eq", 100, 99.5, 100.5), "v", "v") == (
        "v >= ? AND v < ?",
        [99.5, 100.5],
    )
    assert to_sql(number_test("gt", 100, 99.5, 100.5), "v", "v") == ("v > ?", [100])
    assert to_sql(number_test("ap", 100, 99.5, 100.5), "v", "v") == (
        "v >= ? AND v <= ?",
        [90, 110],
    )
    with pytest.raises(InvalidSearch):
        number_test("xx", 1, 1, 1)  # type: ignore[arg-type]


def test_instants() -> None:
    assert format_ms(parse_instant("2021-05-06T09:08:09.123+02:00")) == "2021-05-06T07:08:09.123Z"
    assert instant_range("2020") == (parse_instant("2020-01-01"), parse_instant("2021") - 1)
    with pytest.raises(InvalidRequest):
        instant_range("not a date")
