"""hub.http.deps: reading request bodies."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import Request

from hub.errors import PayloadTooLarge
from hub.http.deps import HubState


def _state(limit: int) -> HubState:
    return HubState(
        service=None,  # type: ignore[arg-type]
        policy=None,  # type: ignore[arg-type]
        max_body_bytes=limit,
        capability_statement={},
        health=None,
        metrics=None,
    )


def _request(body: bytes, content_length: bytes) -> Request:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/fhir/Patient",
        "headers": [(b"content-length", content_length)],
    }
    return Request(scope, receive)


def test_declared_length_over_the_limit_is_413() -> None:
    with pytest.raises(PayloadTooLarge):
        asyncio.run(_state(10).read_body(_request(b"{}", b"11")))


@pytest.mark.parametrize("declared", [b"\xb2", b"1\xb9", b"abc", b""])
def test_a_content_length_that_is_no_ascii_number_is_not_trusted(declared: bytes) -> None:
    """Latin-1 '²' passes ``str.isdigit`` and then broke ``int()`` (a 500); the body is read and
    counted instead."""
    assert asyncio.run(_state(10).read_body(_request(b"{}", declared))) == b"{}"
    with pytest.raises(PayloadTooLarge):
        asyncio.run(_state(1).read_body(_request(b"{}", declared)))
