"""DICOMweb (DICOM PS3.18) under ``/dicomweb``: the ``dicomweb`` web service of ``pixelhub
serve`` (entry point ``pixelhub.web_services``), over the same instance store and blobs as the
DIMSE channel, behind the same access policy and audit trail (``_access``)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter

from adapters.dicom._channel import dicom_store_of, make_ingest
from adapters.dicom.web._access import DicomWeb
from adapters.dicom.web._qido import routes as qido_routes
from adapters.dicom.web._stow import routes as stow_routes
from adapters.dicom.web._wado import routes as wado_routes
from adapters.dicom.web._wado_uri import routes as wado_uri_routes
from hub.blobs import open_blob_store
from hub.channels import ChannelContext

PREFIX = "/dicomweb"
# Each DICOMweb service module builds its routes from the shared state: ``routes(web)``.
ROUTES: list[Callable[[DicomWeb], APIRouter]] = [
    qido_routes,
    stow_routes,
    wado_routes,
    wado_uri_routes,
]


def create_web_service(context: ChannelContext) -> APIRouter:
    """The ``pixelhub.web_services`` entry point ``dicomweb``."""
    web = DicomWeb(
        context,
        dicom_store_of(context.engine),
        open_blob_store(context.settings.data_dir),
        ingest=make_ingest(context),
    )
    router = APIRouter(prefix=PREFIX, tags=["DICOMweb"])
    for routes in ROUTES:
        router.include_router(routes(web))
    return router


__all__ = ["PREFIX", "DicomWeb", "create_web_service"]
