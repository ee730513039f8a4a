"""hub.fhir.service: the parsing helpers of the interactions."""

from __future__ import annotations

import pytest

from hub.errors import InvalidRequest
from hub.fhir.service import parse_etag


@pytest.mark.parametrize(("value", "version"), [('W/"3"', 3), ('"12"', 12), (None, None)])
def test_parse_etag(value: str | None, version: int | None) -> None:
    assert parse_etag(value) == version


@pytest.mark.parametrize("value", ['W/"²"', 'W/"٣"', 'W/"-1"', 'W/""', 'W/"1' + "0" * 30 + '"'])
def test_parse_etag_refuses_what_is_no_version(value: str) -> None:
    """``str.isdigit`` accepts '²' and '٣', which ``int`` then refused (a 500 before); a
    31-digit version cannot be one of ours."""
    with pytest.raises(InvalidRequest):
        parse_etag(value)
