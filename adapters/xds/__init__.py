"""IHE XDS.b / XDS-I.b and MHD exchange (issue 11): PixelHub as Document Repository and Registry
under ``/xds`` (SOAP 1.2, WS-Addressing, MTOM/XOP), storing what it receives as FHIR
(``DocumentReference``, ``Binary``, ``List``) so that MHD clients find the same documents.

The ``xds`` web service of ``pixelhub serve`` (entry point ``pixelhub.web_services``):
``_soap`` (envelopes, MTOM, faults), ``_ebrim`` (ebRIM 3.0 metadata), ``_errors`` (XDS error
codes), ``_repository`` (ITI-41, ITI-43), ``_registry`` (ITI-18), ``_imaging`` (RAD-69, the
Imaging Document Source), ``_source`` (RAD-68: the KOS manifests this hub makes and
publishes; entry point ``pixelhub.projectors``), ``_identity`` (this hub's repository and
community ids), ``_routes`` (HTTP).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from adapters.xds._identity import xds_identity
from adapters.xds._imaging import ImagingDocumentSource
from adapters.xds._registry import Registry
from adapters.xds._repository import Repository
from adapters.xds._routes import routes
from adapters.xds._source import create_manifest_source
from hub.channels import ChannelContext


def create_web_service(context: ChannelContext) -> APIRouter:
    """The ``pixelhub.web_services`` entry point ``xds``."""
    identity = xds_identity(context.settings)
    spool = str(Path(context.settings.data_dir) / "xds-spool")
    return routes(
        context,
        Repository(context, identity, spool),
        Registry(context, identity),
        ImagingDocumentSource(context, identity),
    )


__all__ = ["create_manifest_source", "create_web_service"]
