"""A real hub (SQLite store in a temp dir) behind the real FastAPI app, driven over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hub.composition import Hub
from tests.e2e.support import TOKEN, _collector, make_hub


@pytest.fixture(autouse=True)
def _hand_outputs_to_validator(collect_for_validation: Any) -> Iterator[None]:
    """Every resource a test checks with ``assert_valid_r4`` also goes to the HAPI validator run
    (tests/conformance), so the API's outputs are held to the official R4 definitions."""
    _collector.append(collect_for_validation)
    yield
    _collector.clear()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    h = make_hub(tmp_path / "data")
    yield h
    h.close()


@pytest.fixture
def client(hub: Hub) -> Iterator[TestClient]:
    with TestClient(hub.app, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c
