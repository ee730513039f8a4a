"""``--demo`` sample data: patients with imaging from several ologies, loaded idempotently; and
the imaging timeline app (``/app/``) registered as a public SMART client with a demo user who
signs in to it."""

from __future__ import annotations

from importlib import resources
from urllib.parse import urlsplit

import orjson

from hub.auth import Principal
from hub.config import Settings
from hub.fhir.service import FhirService
from hub.fhir.transaction import BundleProcessor
from hub.http.app_routes import APP_SCOPES
from hub.smart.clients import ClientStore
from hub.smart.users import UserStore

DEMO_PRINCIPAL = Principal("demo-loader", kind="anonymous-demo", scopes=frozenset({"*"}))
DEMO_APP_CLIENT_ID = "pixelhub-timeline-demo"
DEMO_USER = "demo"
DEMO_PASSWORD = "pixelhub-demo"  # printed in the demo banner; demo data only
_LOOPBACK = ("127.0.0.1", "localhost")


def load_demo_data(service: FhirService) -> int:
    """Run the sample transaction Bundle; its conditional creates make a second run a no-op."""
    raw = resources.files("hub.demo").joinpath("sample_bundle.json").read_bytes()
    BundleProcessor(service).process(DEMO_PRINCIPAL, orjson.loads(raw))
    return service.repository.count()


def app_redirect_uris(fhir_base: str) -> tuple[str, ...]:
    """``<origin>/app/`` of the FHIR base, and its loopback twin (``localhost`` for
    ``127.0.0.1`` and back), so the demo app works whichever name the browser uses."""
    parts = urlsplit(fhir_base)
    uris = [f"{parts.scheme}://{parts.netloc}/app/"]
    if parts.hostname in _LOOPBACK:
        twin = _LOOPBACK[1 - _LOOPBACK.index(parts.hostname)]
        port = f":{parts.port}" if parts.port else ""
        uris.append(f"{parts.scheme}://{twin}{port}/app/")
    return tuple(uris)


def register_demo_app(settings: Settings, fhir_base: str) -> str:
    """Register the timeline app as the public client ``DEMO_APP_CLIENT_ID`` (SMART App Launch
    2.2 ``client-authentication.html``: a public client, PKCE) for this hub's origin, and the
    demo user (``DEMO_USER``, a clinician) when missing; both idempotent. Returns the client id."""
    clients = ClientStore(settings.clients_file)
    redirect_uris = app_redirect_uris(fhir_base)
    existing = clients.get(DEMO_APP_CLIENT_ID)
    if existing is None or existing.redirect_uris != redirect_uris or existing.scopes != APP_SCOPES:
        clients.add(
            "PixelHub imaging timeline (demo)",
            "public",
            APP_SCOPES,
            redirect_uris=redirect_uris,
            client_id=DEMO_APP_CLIENT_ID,
        )
    users = UserStore(settings.users_file)
    if users.get(DEMO_USER) is None:
        users.add(DEMO_USER, DEMO_PASSWORD, ("clinician",), "Practitioner/demo-clinician")
    return DEMO_APP_CLIENT_ID
