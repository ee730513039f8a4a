"""A real hub behind the real FastAPI app, with SMART backend-services clients registered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hub.composition import Hub
from tests.e2e.support import make_hub
from tests.smart.support import ClientKeys, register_clients


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    h = make_hub(tmp_path / "data")
    yield h
    h.close()


@pytest.fixture
def http(hub: Hub) -> Iterator[TestClient]:
    """An HTTP client with no credentials of its own."""
    with TestClient(hub.app) as c:
        yield c


@pytest.fixture
def clients(hub: Hub) -> ClientKeys:
    return register_clients(hub)
