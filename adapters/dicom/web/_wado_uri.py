"""WADO-URI, the legacy single-instance retrieve (DICOM PS3.18 9): ``GET /dicomweb/wado?
requestType=WADO&studyUID=&seriesUID=&objectUID=``.

``contentType`` (PS3.18 9) picks application/dicom (the instance in ``transferSyntax``,
default Explicit VR Little Endian, negotiated as ``_retrieve`` documents), a rendered image/jpeg
(the default for objects with pixel data) or image/png, with ``frameNumber``, ``rows``/``columns``
(scaled to fit, aspect kept), ``windowCenter``/``windowWidth`` and ``imageQuality``, or an
encapsulated document as itself (application/pdf...). Objects without pixel data default to
application/dicom. Authorised and audited like WADO-RS.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import APIRouter, Request, Response
from pydicom.dataset import Dataset

from adapters.dicom._transcode import EXPLICIT_LE
from adapters.dicom.web._access import DicomWeb
from adapters.dicom.web._media import DICOM, JPEG, PNG, check_uid, parse_accept
from adapters.dicom.web._render import (
    Rendering,
    encapsulated_document,
    has_pixels,
    parse_quality,
    render,
    size_of,
    window_of,
)
from adapters.dicom.web._retrieve import (
    Transfer,
    instance_bytes,
    read_instance,
    target_syntaxes,
)
from hub.errors import InvalidRequest, NotAcceptable

_SERVED = (DICOM, JPEG, PNG)
_DOCUMENTS = ("application/pdf", "text/xml", "application/xml")  # encapsulated, as themselves
_UNSUPPORTED = ("anonymize", "presentationUID", "presentationSeriesUID", "region")


def routes(web: DicomWeb) -> APIRouter:
    router = APIRouter()

    @router.get("/wado")
    def wado(request: Request) -> Response:
        return retrieve(web, request)

    return router


def retrieve(web: DicomWeb, request: Request) -> Response:
    query = request.query_params
    with Transfer(web, request, query.get("studyUID", "")) as transfer:
        if query.get("requestType") != "WADO":
            raise InvalidRequest("requestType=WADO is required (PS3.18 9)")
        for name in ("studyUID", "seriesUID", "objectUID"):
            check_uid(query.get(name, ""), name)
        unsupported = [name for name in _UNSUPPORTED if query.get(name)]
        if unsupported:
            raise InvalidRequest(f"WADO-URI parameter(s) not supported: {', '.join(unsupported)}")
        record = transfer.select(query["seriesUID"], query["objectUID"])[0]
        wanted = _content_type(query.get("contentType"))
        ds: Dataset | None = None
        if wanted is None:  # image/jpeg for objects with pixel data, else application/dicom
            ds = read_instance(web.blobs, record)
            wanted = JPEG if has_pixels(ds) else DICOM
        if wanted == DICOM:
            syntax = check_uid(query.get("transferSyntax") or EXPLICIT_LE, "transferSyntax")
            target = target_syntaxes([record], [syntax])[0]
            return Response(instance_bytes(web.blobs, record, target), media_type=DICOM)
        if ds is None:
            ds = read_instance(web.blobs, record)
        document = encapsulated_document(ds, parse_accept(wanted))
        if document is not None:
            return Response(document[1], media_type=document[0])
        if wanted not in (JPEG, PNG):
            raise NotAcceptable(f"Object {record.sop_instance_uid} is not a {wanted} document")
        rendering = _rendering(query, wanted)
        frame = _frame(query.get("frameNumber"))
        return Response(render(ds, frame, rendering), media_type=rendering.media_type)


def _content_type(value: str | None) -> str | None:
    """The first served type of the ``contentType`` list (PS3.18 9); ``None``: the
    default for the object."""
    if not value:
        return None
    for media_range in parse_accept(value):
        if media_range.type in ("*/*", "image/*") and not media_range.params:
            return None if media_range.type == "*/*" else JPEG
        if media_range.type in _SERVED or media_range.type in _DOCUMENTS:
            return media_range.type
    raise NotAcceptable(f"contentType {value[:80]!r}: served are {', '.join(_SERVED)}")


def _rendering(params: Mapping[str, str], media_type: str) -> Rendering:
    center, width = params.get("windowCenter"), params.get("windowWidth")
    if (center is None) != (width is None):
        raise InvalidRequest("windowCenter and windowWidth go together (PS3.18 9)")
    rows, columns = params.get("rows"), params.get("columns")
    return Rendering(
        media_type=media_type,
        window=window_of(center, width) if center is not None and width is not None else None,
        viewport=size_of(columns, rows) if rows or columns else None,
        quality=parse_quality(params["imageQuality"]) if "imageQuality" in params else 90,
    )


def _frame(value: str | None) -> int:
    if value is None:
        return 1
    if not value.isdigit() or int(value) < 1:
        raise InvalidRequest(f"frameNumber={value[:20]!r}: frames are numbered from 1")
    return int(value)
