"""Protocol channels (DICOM DIMSE, HL7 v2 MLLP, ...) as plug-ins of ``pixelhub serve``.

A channel is found by name through the ``pixelhub.channels`` entry points, like storage engines,
so the core never imports an adapter and a third party can add a channel as its own package. The
entry point names a factory ``(ChannelContext) -> Channel``. ``pixelhub serve`` starts every
enabled channel after the store is open, writes each bound port into ``ports.json`` under the
channel's ``port_name``, and on SIGTERM stops the channels (each drains its in-flight work) before
it closes the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Protocol

from hub.audit import AuditTrail
from hub.auth import AccessPolicy, Principal
from hub.config import Settings
from hub.errors import HubError
from hub.fhir.service import FhirService
from hub.ports import Engine

if TYPE_CHECKING:
    from fastapi import APIRouter

    from hub.projectors import Projector


@dataclass
class ChannelContext:
    """What a channel may use: the settings, the FHIR service (the one write path), the engine's
    ports, the access policy, and the principal to act as for peers it has authenticated."""

    settings: Settings
    service: FhirService
    engine: Engine
    policy: AccessPolicy
    notify_change: Callable[[], None]  # wake the projectors after a commit
    audit: AuditTrail | None = None  # one AuditEvent per association / message (hub.audit)

    def peer(self, subject: str, address: str | None) -> Principal:
        """The principal of an authenticated peer (AE title, sending application)."""
        return Principal(subject, kind="peer", scopes=frozenset({"*"}), address=address)


class Channel(Protocol):
    name: str
    port_name: str  # key in ports.json: "dicom", "mllp"

    def start(self) -> int:
        """Bind and start serving in background threads; return the bound port."""

    def stop(self, timeout: float) -> None:
        """Stop accepting, let in-flight work finish within ``timeout`` seconds, release ports."""


ChannelFactory = Callable[[ChannelContext], Channel]


class ChannelNotFound(HubError):
    hub_code = "HUB-1002"


def available_channels() -> dict[str, ChannelFactory]:
    return {ep.name: ep.load() for ep in entry_points(group="pixelhub.channels")}


def enabled_channels(settings: Settings) -> dict[str, ChannelFactory]:
    """The channels to start: ``settings.channels`` (``http`` is always on), or every installed
    channel when the setting is absent."""
    found = available_channels()
    if settings.channels is None:
        return found
    web = available_web_services()
    wanted = [c for c in settings.channels if c != "http" and c not in web]
    missing = [c for c in wanted if c not in found]
    if missing:
        installed = ", ".join(sorted({*found, *web})) or "none"
        raise ChannelNotFound(f"Unknown channel(s): {', '.join(missing)} (installed: {installed})")
    return {name: found[name] for name in wanted}


# An HTTP service of an adapter (DICOMweb...): mounted on the one HTTP app, next to /fhir.
WebServiceFactory = Callable[[ChannelContext], "APIRouter"]


def available_web_services() -> dict[str, WebServiceFactory]:
    """The ``pixelhub.web_services`` entry points: ``name -> (ChannelContext) -> APIRouter``."""
    return {ep.name: ep.load() for ep in entry_points(group="pixelhub.web_services")}


def enabled_web_services(settings: Settings) -> dict[str, WebServiceFactory]:
    """The web services to mount: those named in ``settings.channels``, or all when absent."""
    found = available_web_services()
    if settings.channels is None:
        return found
    return {name: found[name] for name in settings.channels if name in found}


# A projector of an adapter (e.g. the XDS-I manifest source): follows the change feed beside the
# core's, in the replica that leads (hub.projectors). The factory returns ``None`` when its
# settings switch it off.
ProjectorFactory = Callable[[ChannelContext], "Projector | None"]


def enabled_projectors(settings: Settings) -> dict[str, ProjectorFactory]:
    """The ``pixelhub.projectors`` entry points of the enabled channels and web services (all
    when ``settings.channels`` is absent): ``name -> (ChannelContext) -> Projector | None``."""
    found = {ep.name: ep.load() for ep in entry_points(group="pixelhub.projectors")}
    if settings.channels is None:
        return found
    return {name: found[name] for name in settings.channels if name in found}
