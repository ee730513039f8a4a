"""What the real-server fixtures share (tests/support/postgres.py, elasticsearch.py): the error a
failed start raises, free loopback ports, and one server per run unless the environment names
one."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest


class ServerError(RuntimeError):
    """A server could not be fetched, set up or started (a test reports it as a failure)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_for_run(env_var: str, start: Callable[[], AbstractContextManager[str]]) -> Iterator[str]:
    """The body of a session fixture: the URL in ``env_var`` as given, else a server started
    by ``start`` for the whole run and stopped at its end."""
    given = os.environ.get(env_var)
    if given:
        yield given.rstrip("/")
        return
    server = start()
    try:
        url = server.__enter__()
    except ServerError as exc:
        pytest.fail(str(exc))
    try:
        yield url
    finally:
        server.__exit__(None, None, None)
