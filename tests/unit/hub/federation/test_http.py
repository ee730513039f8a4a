"""The aiohttp ``PartnerHttp`` (hub.federation.http) against real loopback servers: the size
cap, a vanished peer, and what it sends."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from aiohttp import web

from hub.federation.http import AiohttpPartnerHttp, Answer, PartnerError


async def _serve(handler: Any) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def test_a_request_and_its_answer() -> None:
    seen: list[tuple[str, str, str, bytes]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(
            (request.method, request.raw_path, request.headers.get("Via", ""), await request.read())
        )
        return web.Response(status=201, body=b'{"ok":true}')

    async def go() -> Answer:
        runner, base = await _serve(handler)
        http = AiohttpPartnerHttp()
        try:
            await http.request(
                "GET",
                f"{base}/fhir/Patient?identifier=a%7Cb%2Cc",
                headers={"Via": "1.1 a"},
                limit=100,
            )
            return await http.request(
                "POST", f"{base}/token", headers={}, form={"grant_type": "x y"}, limit=100
            )
        finally:
            await http.aclose()
            await runner.cleanup()

    answer = asyncio.run(go())
    assert answer == Answer(201, b'{"ok":true}')
    # the URL is sent as it was encoded, the form url-encoded
    assert seen == [
        ("GET", "/fhir/Patient?identifier=a%7Cb%2Cc", "1.1 a", b""),
        ("POST", "/token", "", b"grant_type=x+y"),
    ]


def test_an_answer_larger_than_the_limit_is_refused() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 300_000)

    async def go() -> None:
        runner, base = await _serve(handler)
        http = AiohttpPartnerHttp()
        try:
            await http.request("GET", f"{base}/big", headers={}, limit=100_000)
        finally:
            await http.aclose()
            await runner.cleanup()

    with pytest.raises(PartnerError, match="larger than allowed") as caught:
        asyncio.run(go())
    assert caught.value.code == "too-costly"


def test_a_peer_that_is_not_there_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there

    async def go() -> None:
        http = AiohttpPartnerHttp()
        try:
            await http.request("GET", f"http://127.0.0.1:{port}/x", headers={}, limit=10)
        finally:
            await http.aclose()

    with pytest.raises(PartnerError, match="could not be reached") as caught:
        asyncio.run(go())
    assert caught.value.code == "transient"
