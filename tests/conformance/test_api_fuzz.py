"""API robustness (issue 3, item 4): schemathesis generates calls from the OpenAPI document of the
``/fhir`` routes (hub/http/openapi.py) and sends them, in process, to the real app over a real
SQLite store, with a valid bearer token.

Checks on every answer: no 5xx; every 4xx/5xx is an ``application/fhir+json`` OperationOutcome
with at least one issue. Generation is derandomized (the same calls on every run, so CI is
stable) and bounded per operation; ``PIXELHUB_FUZZ_EXAMPLES=500 PIXELHUB_FUZZ_RANDOM=1`` explores
further. Each crash found is fixed and kept as a regression test in tests/e2e or tests/unit.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import schemathesis
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from hub.composition import Hub
from hub.http import federation_routes, fhir_routes
from tests.e2e.support import TOKEN, make_hub

EXAMPLES = int(os.environ.get("PIXELHUB_FUZZ_EXAMPLES", "25"))
RANDOM = os.environ.get("PIXELHUB_FUZZ_RANDOM") == "1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class NotAnOutcome(AssertionError):
    """An error answer below /fhir that is not a FHIR OperationOutcome."""


def error_is_operation_outcome(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx below /fhir is an ``application/fhir+json`` OperationOutcome (DESIGN.md:
    'Errors on /fhir are always OperationOutcome')."""
    if response.status_code < 400:
        return None
    ctype = response.headers.get("content-type", [""])
    ctype = ctype[0] if isinstance(ctype, list) else ctype
    if not ctype.startswith("application/fhir+json"):
        raise NotAnOutcome(f"{response.status_code} with Content-Type {ctype!r}")
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise NotAnOutcome(f"{response.status_code} body is not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        raise NotAnOutcome(f"{response.status_code} body is not an OperationOutcome: {body!r}")
    issues = body.get("issue")
    if not isinstance(issues, list) or not issues:
        raise NotAnOutcome(f"{response.status_code} OperationOutcome without issues: {body!r}")
    return None


@pytest.fixture(scope="module")
def fuzz_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    hub = make_hub(Path(tmp_path_factory.mktemp("fuzz")) / "data")
    yield hub
    hub.close()


@pytest.fixture(scope="module")
def fhir_api(fuzz_hub: Hub) -> Any:
    """The app's own OpenAPI document, limited to the FHIR routes."""
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_hub.app).include(
        path_regex=r"^/fhir"
    )


def _operations() -> list[tuple[str, str]]:
    """``(METHOD, path)`` of every documented /fhir route, known without building a hub."""
    routes = sorted(
        (method, route.path)
        for route in [*fhir_routes.router.routes, *federation_routes.router.routes]
        if isinstance(route, APIRoute) and route.include_in_schema
        for method in route.methods
    )
    return [*routes, ("GET", "/fhir/metadata")]


OPERATIONS = _operations()
# (operation, mode): a negative case needs something to violate; /fhir/metadata takes nothing.
RUNS = [
    (method, path, mode)
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if path != "/fhir/metadata" or mode is GenerationMode.POSITIVE
]


@pytest.mark.parametrize(
    ("method", "path", "mode"), RUNS, ids=[f"{m} {p} {mode.value}" for m, p, mode in RUNS]
)
def test_fhir_api_never_crashes(fhir_api: Any, method: str, path: str, mode: Any) -> None:
    """Schema-valid (positive) and schema-violating (negative) calls of one operation."""
    operation = fhir_api[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        derandomize=not RANDOM,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def calls(case: Any) -> None:
        case.call_and_validate(
            headers=AUTH, checks=[not_a_server_error, error_is_operation_outcome]
        )

    calls()


def test_every_fhir_route_is_fuzzed(fhir_api: Any) -> None:
    documented = {
        (method.upper(), path)
        for path, methods in fhir_api.items()
        for method in methods
        if path.startswith("/fhir")
    }
    assert documented == set(OPERATIONS)
