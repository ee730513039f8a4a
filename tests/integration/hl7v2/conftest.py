"""A real hub (SQLite in a temp dir) with the real ``hl7v2`` channel listening on a free port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.hl7v2.hl7_support import Hl7Hub, start_hl7_hub


@pytest.fixture
def hl7_hub_factory(tmp_path: Path) -> Iterator[Callable[..., Hl7Hub]]:
    started: list[Hl7Hub] = []

    def factory(**overrides: Any) -> Hl7Hub:
        h = start_hl7_hub(tmp_path / f"data{len(started)}", **overrides)
        started.append(h)
        return h

    yield factory
    for h in started:
        h.close()


@pytest.fixture
def hl7_hub(hl7_hub_factory: Callable[..., Hl7Hub]) -> Hl7Hub:
    return hl7_hub_factory()
