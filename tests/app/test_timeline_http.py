"""``/app/`` as plain HTTP (issue 13, tests (h)): the built app's pages and assets with their
content types, cache headers and Content-Security-Policy, ``/app/config.json``, the 503 that
names the build command when ``app/dist`` is missing, and the demo's own app registration.
No bearer token is needed anywhere under ``/app``: the app signs in through SMART itself."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hub.config import Settings
from hub.demo import DEMO_APP_CLIENT_ID, DEMO_USER, app_redirect_uris, register_demo_app
from hub.federation import Partner, PartnerStore
from hub.http.app_routes import APP_SCOPES, BUILD_COMMAND
from hub.smart import ClientStore
from hub.smart.users import UserStore
from tests.app.support import APP_DIST
from tests.e2e.support import BASE, make_hub

VIEWER = "https://viewer.example/viewer?StudyInstanceUIDs={StudyInstanceUID}"


def fake_dist(root: Path) -> Path:
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text(
        '<!doctype html><script type="module" src="/app/assets/index-AbC123.js"></script>'
    )
    (root / "launch.html").write_text("<!doctype html><title>launch</title>")
    (root / "assets" / "index-AbC123.js").write_text("console.log('app')")
    (root / "assets" / "styles-XyZ789.css").write_text("body{}")
    (root.parent / "secret.txt").write_text("outside the app")
    return root


@pytest.fixture
def http(tmp_path: Path) -> TestClient:
    hub = make_hub(
        tmp_path / "data",
        app_dir=fake_dist(tmp_path / "dist"),
        app_client_id="timeline-app",
        app_viewer_url_template=VIEWER,
    )
    return TestClient(hub.app)


def test_pages_and_assets_need_no_token_and_carry_their_headers(http: TestClient) -> None:
    for path in ("/app/", "/app/index.html", "/app/launch.html"):
        r = http.get(path)
        assert r.status_code == 200, path
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        assert r.headers["cache-control"] == "no-cache"
        csp = r.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "unsafe-inline" not in csp
        assert "default-src 'none'" in csp and "object-src 'none'" in csp
        assert "connect-src 'self' http://testserver" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
    assert "index-AbC123.js" in http.get("/app/").text
    r = http.get("/app/?code=abc&state=xyz")  # the redirect URI with the authorization code
    assert r.status_code == 200 and "index-AbC123.js" in r.text
    r = http.get("/app/assets/index-AbC123.js")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/javascript; charset=utf-8"
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "content-security-policy" not in r.headers
    r = http.get("/app/assets/styles-XyZ789.css")
    assert r.headers["content-type"] == "text/css; charset=utf-8"
    r = http.head("/app/")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    r = http.get("/app", follow_redirects=False)
    assert r.status_code == 308 and r.headers["location"] == "/app/"


def test_nothing_outside_the_build_directory_is_served(http: TestClient) -> None:
    for path in (
        "/app/../secret.txt",
        "/app/%2e%2e/secret.txt",
        "/app/assets/missing.js",
        "/app/nope",
    ):
        r = http.get(path)
        assert r.status_code == 404, path
        assert "outside the app" not in r.text


def test_config_json(http: TestClient, tmp_path: Path) -> None:
    r = http.get("/app/config.json")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-cache"
    assert r.json() == {
        "fhirBaseUrl": BASE,
        "clientId": "timeline-app",
        "scope": " ".join(APP_SCOPES),
        "viewerUrlTemplate": VIEWER,
        "federation": {"partners": False},
    }
    scope = r.json()["scope"].split()
    assert {"launch", "launch/patient", "openid", "fhirUser"} <= set(scope)
    assert {
        "patient/ImagingStudy.rs",
        "patient/DocumentReference.rs",
        "patient/DiagnosticReport.rs",
    } <= set(scope)
    # a partner registered on the running hub shows at once (the file is re-read)
    settings = Settings(data_dir=tmp_path / "data")
    PartnerStore(settings.partners_file).put(
        Partner(
            "north", "http://127.0.0.1:9/fhir", "hub-a", token_url="http://127.0.0.1:9/auth/token"
        )
    )
    assert http.get("/app/config.json").json()["federation"] == {"partners": True}


def test_missing_build_is_503_naming_the_build_command(tmp_path: Path) -> None:
    hub = make_hub(tmp_path / "data", app_dir=tmp_path / "no-such-dist")
    http = TestClient(hub.app)
    for path in ("/app/", "/app/launch.html", "/app/assets/index-AbC123.js"):
        r = http.get(path)
        assert r.status_code == 503, path
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        assert BUILD_COMMAND in r.text and "npm ci && npm run build" in r.text
    r = http.get("/app/config.json")  # still answers: nothing to build there
    assert r.status_code == 200 and r.json()["clientId"] is None


def test_default_app_dir_is_app_dist_in_the_repository(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).app_directory == APP_DIST


@pytest.mark.parametrize("template", ["viewer?uid={StudyInstanceUID}", "https://viewer.example/"])
def test_viewer_template_must_be_absolute_and_name_the_study(template: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Settings(data_dir=tmp_path, app_viewer_url_template=template)


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self.sources: list[str] = []
        self.handlers: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        self.handlers += [n for n in names if n.startswith("on")]
        if tag == "script":
            self._in_script = True
            if names.get("src"):
                self.sources.append(str(names["src"]))

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(data)


def test_the_built_app_runs_under_its_csp() -> None:
    """The real build (``npm run build``, done by scripts/test): no inline script or handler,
    every script from /app/assets/, no token written to localStorage in the bundle's code."""
    assert (APP_DIST / "index.html").is_file(), f"app/dist is not built: {BUILD_COMMAND}"
    for page in ("index.html", "launch.html"):
        parser = _Scripts()
        parser.feed((APP_DIST / page).read_text())
        assert parser.inline == [] and parser.handlers == [], page
        assert parser.sources and all(
            re.match(r"^/app/assets/[\w-]+\.js$", s) for s in parser.sources
        )
    code = "".join(p.read_text() for p in (APP_DIST / "assets").glob("*.js"))
    assert "localStorage.setItem" not in code and "localStorage[" not in code


def test_demo_registers_the_app_and_a_user_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, demo=True)
    base = "http://127.0.0.1:8080/fhir"
    assert register_demo_app(settings, base) == DEMO_APP_CLIENT_ID
    stamp = settings.clients_file.stat().st_mtime_ns
    register_demo_app(settings, base)  # idempotent: nothing rewritten
    assert settings.clients_file.stat().st_mtime_ns == stamp
    clients = ClientStore(settings.clients_file).list()
    assert [c.client_id for c in clients] == [DEMO_APP_CLIENT_ID]
    client = clients[0]
    assert client.type == "public" and client.scopes == APP_SCOPES
    assert client.redirect_uris == ("http://127.0.0.1:8080/app/", "http://localhost:8080/app/")
    assert UserStore(settings.users_file).get(DEMO_USER) is not None
    # another port: the same client id, the redirect URIs follow
    register_demo_app(settings, "http://127.0.0.1:9090/fhir")
    (client,) = ClientStore(settings.clients_file).list()
    assert client.redirect_uris == app_redirect_uris("http://127.0.0.1:9090/fhir")
    # config.json of a demo hub names it
    hub = make_hub(tmp_path, demo=True, app_dir=tmp_path / "none")
    assert TestClient(hub.app).get("/app/config.json").json()["clientId"] == DEMO_APP_CLIENT_ID
