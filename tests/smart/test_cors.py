"""CORS for browser SMART apps (Fetch Standard §3.2): an origin allow-list
(``PIXELHUB_CORS_ORIGINS``) on /fhir, /auth/token, /auth/revoke, /auth/jwks and the .well-known
documents; never ``*`` with credentials; nothing for origins not on the list."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from pydantic import ValidationError

from hub.composition import Hub
from hub.config import Settings
from tests.e2e.support import TOKEN, make_hub

APP = "https://viewer.example.org"


@pytest.fixture
def cors_hub(tmp_path: Path) -> Iterator[TestClient]:
    hub: Hub = make_hub(tmp_path / "data", cors_origins=[APP, "http://localhost:3000"])
    with TestClient(hub.app) as client:
        yield client
    hub.close()


def preflight(client: TestClient, path: str, origin: str, method: str = "GET") -> Response:
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


@pytest.mark.parametrize(
    "path",
    [
        "/fhir/ImagingStudy",
        "/fhir",
        "/auth/token",
        "/auth/jwks",
        "/fhir/.well-known/smart-configuration",
        "/auth/.well-known/openid-configuration",
    ],
)
def test_preflight_from_an_allowed_origin(cors_hub: TestClient, path: str) -> None:
    r = preflight(cors_hub, path, APP, "POST")
    assert r.status_code == 200
    headers = r.headers
    assert headers["access-control-allow-origin"] == APP
    assert "POST" in headers["access-control-allow-methods"]
    assert "authorization" in headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in headers
    assert "Origin" in headers["vary"]


def test_preflight_from_another_origin(cors_hub: TestClient) -> None:
    r = cors_hub.options(
        "/fhir/ImagingStudy",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers


def test_simple_requests(cors_hub: TestClient) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    r = cors_hub.get("/fhir/ImagingStudy", headers={**bearer, "Origin": APP})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == APP
    assert "ETag" in r.headers["access-control-expose-headers"]
    assert "access-control-allow-credentials" not in r.headers
    # errors carry CORS too, so the app can read the 401 and its WWW-Authenticate
    r = cors_hub.get("/fhir/ImagingStudy", headers={"Origin": APP})
    assert r.status_code == 401
    assert r.headers["access-control-allow-origin"] == APP
    assert "WWW-Authenticate" in r.headers["access-control-expose-headers"]
    r = cors_hub.post("/auth/token", data={"grant_type": "x"}, headers={"Origin": APP})
    assert r.headers["access-control-allow-origin"] == APP
    # an origin not on the list gets the answer but no permission to read it
    r = cors_hub.get("/auth/jwks", headers={"Origin": "https://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    # no Origin: no CORS
    assert "access-control-allow-origin" not in cors_hub.get("/auth/jwks").headers


def test_paths_off_the_list_get_no_cors(cors_hub: TestClient) -> None:
    r = cors_hub.get("/auth/authorize", headers={"Origin": APP})
    assert "access-control-allow-origin" not in r.headers
    r = cors_hub.post("/auth/launch", json={}, headers={"Origin": APP})
    assert "access-control-allow-origin" not in r.headers
    r = cors_hub.get("/health/live", headers={"Origin": APP})
    assert "access-control-allow-origin" not in r.headers


def test_no_cors_by_default(http: TestClient) -> None:
    r = http.get("/auth/jwks", headers={"Origin": APP})
    assert "access-control-allow-origin" not in r.headers
    r = preflight(http, "/fhir/ImagingStudy", APP)
    assert "access-control-allow-origin" not in r.headers


def test_wildcard_never_with_credentials(tmp_path: Path) -> None:
    hub = make_hub(tmp_path / "data", cors_origins=["*"])
    try:
        with TestClient(hub.app) as client:
            r = client.get("/auth/jwks", headers={"Origin": "https://any.example"})
            assert r.headers["access-control-allow-origin"] == "*"
            assert "access-control-allow-credentials" not in r.headers
            r = preflight(client, "/fhir/Patient", "https://any.example")
            assert r.headers["access-control-allow-origin"] == "*"
            assert "access-control-allow-credentials" not in r.headers
    finally:
        hub.close()


def test_origins_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXELHUB_CORS_ORIGINS", f"{APP}, http://localhost:3000")
    assert Settings().cors_origins == [APP, "http://localhost:3000"]
    for bad in ("https://app.example.org/", "app.example.org", "https://a.example/path", "null"):
        monkeypatch.setenv("PIXELHUB_CORS_ORIGINS", bad)
        with pytest.raises(ValidationError):
            Settings()
