"""``/app/``: the imaging timeline, a SMART on FHIR web app (issue 13), served from its built
front-end (``app/dist``, made by ``npm ci && npm run build`` in ``app/``).

Public static assets, like any web page: no bearer token is asked here; the app itself signs in
through PixelHub's authorization server (SMART App Launch 2.2 ``app-launch.html``), from
``/app/launch.html`` (EHR launch, §"Launch App: EHR Launch": the EHR opens it with ``iss`` and
``launch``) or ``/app/`` (standalone launch, §"Launch App: Standalone Launch", and the redirect
URI of both). ``/app/config.json`` tells the app its FHIR base (the ``iss`` it trusts and the
``aud`` it asks for), its ``client_id``, the scopes to ask (``scopes-and-launch-context.html``),
the diagnostic viewer to link studies to and whether federated search has partners.

Hashed build assets (``assets/``) are cached for a year; HTML and the configuration are
``no-cache``; the HTML carries a Content-Security-Policy that runs only the app's own scripts.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, Response
from fastapi.responses import FileResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

# What the timeline reads (SMART v2 ``.rs``), in the launched patient's compartment, and the
# launch context it needs: ``launch`` (EHR launch) or ``launch/patient`` (standalone picker),
# ``openid fhirUser`` (who signed in) and ``online_access`` (refresh while signed in).
APP_SCOPES = (
    "launch",
    "launch/patient",
    "openid",
    "fhirUser",
    "online_access",
    "patient/Patient.rs",
    "patient/ImagingStudy.rs",
    "patient/DocumentReference.rs",
    "patient/DiagnosticReport.rs",
    "patient/Media.rs",
    "patient/ServiceRequest.rs",
    "patient/Encounter.rs",
    "patient/Practitioner.rs",
)
BUILD_COMMAND = "cd app && npm ci && npm run build"
_IMMUTABLE = "public, max-age=31536000, immutable"
_HTML_PAGES = {"": "index.html", "index.html": "index.html", "launch.html": "launch.html"}
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webmanifest": "application/manifest+json",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}


@dataclass(frozen=True)
class AppSite:
    """Where the built app is and what ``/app/config.json`` tells it."""

    directory: Path
    fhir_base: str
    issuer: str  # the authorization server's issuer URL (its endpoints are below it)
    client_id: str | None = None
    viewer_url_template: str | None = None
    scopes: tuple[str, ...] = APP_SCOPES

    def config(self, federation_partners: bool) -> dict[str, Any]:
        """The body of ``/app/config.json``."""
        return {
            "fhirBaseUrl": self.fhir_base,
            "clientId": self.client_id,
            "scope": " ".join(self.scopes),
            "viewerUrlTemplate": self.viewer_url_template,
            "federation": {"partners": federation_partners},
        }

    def content_security_policy(self) -> str:
        """Only the app's own scripts and styles; data from this origin, the FHIR base and the
        authorization server; images also as ``blob:`` (fetched with the bearer token)."""
        origins = sorted({o for o in (_origin(self.fhir_base), _origin(self.issuer)) if o})
        connect = " ".join(["'self'", *origins])
        return (
            "default-src 'none'; script-src 'self'; style-src 'self'; "
            f"img-src 'self' blob: data:; connect-src {connect}; font-src 'self'; "
            "manifest-src 'self'; base-uri 'self'; form-action 'self'; object-src 'none'"
        )


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def _not_built(site: AppSite) -> Response:
    return Response(
        "PixelHub's web app is not built: there is no "
        f"{site.directory / 'index.html'}.\nBuild it with: {BUILD_COMMAND}\n"
        "(./scripts/demo and ./scripts/test build it too).\n",
        status_code=503,
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "no-store", "Retry-After": "60"},
    )


def _file(site: AppSite, relative: str) -> Path | None:
    """The file at ``relative`` inside the build directory; ``None`` for anything outside it
    (``..``, absolute paths, symlinks out) or missing."""
    root = site.directory.resolve()
    try:
        path = (root / relative).resolve()
    except (OSError, RuntimeError):
        return None
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def _headers(site: AppSite, relative: str) -> dict[str, str]:
    headers = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
    if relative.endswith(".html"):
        headers["Cache-Control"] = "no-cache"
        headers["Content-Security-Policy"] = site.content_security_policy()
    elif relative.startswith("assets/"):  # Vite names them by content hash
        headers["Cache-Control"] = _IMMUTABLE
    else:
        headers["Cache-Control"] = "no-cache"
    return headers


def app_router(site: AppSite, federation_partners: Callable[[], bool]) -> APIRouter:
    """The ``/app`` routes for ``site``; ``federation_partners`` tells whether federated search
    has enabled partners (read on each ``config.json`` request)."""
    router = APIRouter(prefix="/app", include_in_schema=False)

    @router.api_route("", methods=["GET", "HEAD"])
    async def app_root() -> Response:
        return RedirectResponse("/app/", status_code=308)

    @router.get("/config.json")
    async def config() -> Response:
        """What the app needs before it signs in."""
        partners = await run_in_threadpool(federation_partners)
        return Response(
            orjson.dumps(site.config(partners)),
            media_type="application/json",
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    @router.api_route("/{relative:path}", methods=["GET", "HEAD"])
    async def asset(relative: str) -> Response:
        """``/app/`` and ``/app/launch.html`` (HTML pages), ``/app/assets/...`` (hashed)."""
        page = _HTML_PAGES.get(relative)
        if page is not None and not (site.directory / page).is_file():
            return _not_built(site)
        wanted = page or relative
        path = _file(site, wanted)
        if path is None:
            if not (site.directory / "index.html").is_file():
                return _not_built(site)
            return Response("Not found\n", status_code=404, media_type="text/plain; charset=utf-8")
        media_type = _TYPES.get(path.suffix.lower()) or (
            mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        )
        return FileResponse(path, media_type=media_type, headers=_headers(site, wanted))

    return router


__all__ = ["APP_SCOPES", "BUILD_COMMAND", "AppSite", "app_router"]
