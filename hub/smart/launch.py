"""EHR launch contexts (SMART App Launch 2.2 ``app-launch.html`` §"Launch App: EHR Launch").

The EHR registers what the app is launched into through PixelHub's launch API
(``POST /auth/launch``, see ``hub.http.auth_routes``): the ``patient``, the ``encounter``, a
``fhirContext`` (SMART 2.2 §"fhirContext": objects with a relative ``reference``, a
``canonical`` or an ``identifier``, optionally a ``type`` and a ``role``), ``need_patient_banner``,
``smart_style_url``, optionally the user who may complete the launch and the client it is for. It
gets an opaque launch id (256 random bits) and passes it to the app as ``launch``; the app's
authorization request presents it with the ``launch`` scope and the id is spent there: it works
once, within ``LAUNCH_LIFETIME`` seconds.

The caller of the launch API needs the ``LAUNCH_API_SCOPE`` (a client registered with it obtains
a ``client_credentials`` token carrying it) or a static operations token. Launches live in this
process's memory, like pending authorizations.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

LAUNCH_LIFETIME = 300  # seconds between the EHR's registration and the app's authorize request
LAUNCH_API_SCOPE = "pixelhub.launch"  # not a SMART scope: permission to call POST /auth/launch
MAX_CONTEXT_ITEMS = 20
_REFERENCE = re.compile(r"^[A-Z][A-Za-z]{1,63}/[A-Za-z0-9\-.]{1,64}$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_FIELDS = frozenset(
    {
        "patient",
        "encounter",
        "fhirContext",
        "need_patient_banner",
        "smart_style_url",
        "user",
        "client_id",
    }
)


class LaunchError(ValueError):
    """The launch request is not acceptable (the API answers 400 with this text)."""


@dataclass(frozen=True)
class LaunchContext:
    """What the EHR launched the app into; ``token_parameters`` is its token-response part."""

    patient: str | None = None
    encounter: str | None = None
    fhir_context: tuple[dict[str, Any], ...] = ()
    need_patient_banner: bool | None = None
    smart_style_url: str | None = None
    user: str | None = None  # only this user may complete the launch
    client_id: str | None = None  # only this client may use the launch id

    def token_parameters(self) -> dict[str, Any]:
        """SMART ``app-launch.html`` §"Response" launch context parameters."""
        params: dict[str, Any] = {}
        if self.encounter is not None:
            params["encounter"] = self.encounter
        if self.fhir_context:
            params["fhirContext"] = [dict(item) for item in self.fhir_context]
        if self.need_patient_banner is not None:
            params["need_patient_banner"] = self.need_patient_banner
        if self.smart_style_url is not None:
            params["smart_style_url"] = self.smart_style_url
        return params


def _id_of(value: Any, resource_type: str, name: str) -> str:
    """``123`` or ``Patient/123`` -> ``123``."""
    if not isinstance(value, str):
        raise LaunchError(f"{name} must be a string id")
    bare: str = value.removeprefix(f"{resource_type}/")
    if not _ID.match(bare):
        raise LaunchError(f"{name} is not a FHIR id")
    return bare


def _context_item(item: Any) -> dict[str, Any]:
    """One ``fhirContext`` entry (SMART 2.2 §"fhirContext")."""
    if not isinstance(item, dict) or not item:
        raise LaunchError("each fhirContext entry is an object")
    if set(item) - {"reference", "canonical", "identifier", "type", "role"}:
        raise LaunchError("fhirContext entries have reference, canonical, identifier, type, role")
    kinds = [k for k in ("reference", "canonical", "identifier") if k in item]
    if len(kinds) != 1:
        raise LaunchError("a fhirContext entry has one of reference, canonical or identifier")
    if "reference" in item and not (
        isinstance(item["reference"], str) and _REFERENCE.match(item["reference"])
    ):
        raise LaunchError("fhirContext reference must be a relative reference like Type/id")
    if "canonical" in item and not isinstance(item["canonical"], str):
        raise LaunchError("fhirContext canonical must be a string")
    if "identifier" in item and not isinstance(item["identifier"], dict):
        raise LaunchError("fhirContext identifier must be an Identifier object")
    if "type" in item and not (isinstance(item["type"], str) and item["type"].isalpha()):
        raise LaunchError("fhirContext type must be a resource type")
    role = item.get("role")
    if role is not None and not (
        isinstance(role, str) and role != "launch" and urlsplit(role).scheme
    ):
        raise LaunchError("fhirContext role must be an absolute URI other than 'launch'")
    return dict(item)


def parse_launch_request(body: Any) -> LaunchContext:
    """The ``LaunchContext`` of a launch API request body (a JSON object)."""
    if not isinstance(body, dict):
        raise LaunchError("the body must be a JSON object")
    unknown = set(body) - _FIELDS
    if unknown:
        raise LaunchError(f"unknown launch fields: {', '.join(sorted(unknown))}")
    items = body.get("fhirContext", [])
    if not isinstance(items, list) or len(items) > MAX_CONTEXT_ITEMS:
        raise LaunchError(f"fhirContext is an array of at most {MAX_CONTEXT_ITEMS} objects")
    banner = body.get("need_patient_banner")
    if banner is not None and not isinstance(banner, bool):
        raise LaunchError("need_patient_banner must be true or false")
    style = body.get("smart_style_url")
    if style is not None and (
        not isinstance(style, str) or urlsplit(style).scheme not in ("https", "http")
    ):
        raise LaunchError("smart_style_url must be an http(s) URL")
    for name in ("user", "client_id"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise LaunchError(f"{name} must be a string")
    patient = body.get("patient")
    encounter = body.get("encounter")
    context = LaunchContext(
        patient=None if patient is None else _id_of(patient, "Patient", "patient"),
        encounter=None if encounter is None else _id_of(encounter, "Encounter", "encounter"),
        fhir_context=tuple(_context_item(item) for item in items),
        need_patient_banner=banner,
        smart_style_url=style,
        user=body.get("user"),
        client_id=body.get("client_id"),
    )
    if context == LaunchContext(user=context.user, client_id=context.client_id):
        raise LaunchError("a launch needs some context: patient, encounter or fhirContext")
    return context


@dataclass
class LaunchRegistry:
    """Launch ids -> contexts: opaque, single use, short-lived."""

    lifetime: float = LAUNCH_LIFETIME
    clock: Callable[[], float] = time.time
    _launches: dict[str, tuple[float, LaunchContext]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, context: LaunchContext) -> str:
        """A new launch id for ``context``."""
        launch_id = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            self._launches = {k: v for k, v in self._launches.items() if v[0] >= now}
            self._launches[launch_id] = (now + self.lifetime, context)
        return launch_id

    def take(self, launch_id: str) -> LaunchContext | None:
        """The context of ``launch_id``, spending it; ``None`` when unknown, used or expired."""
        with self._lock:
            entry = self._launches.pop(launch_id, None)
        if entry is None or entry[0] < self.clock():
            return None
        return entry[1]


def launch_response(launch_id: str, lifetime: float) -> Mapping[str, Any]:
    """The launch API's answer."""
    return {"launch": launch_id, "expires_in": int(lifetime)}
