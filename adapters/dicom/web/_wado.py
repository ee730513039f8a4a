"""WADO-RS: the DICOMweb Retrieve transaction (DICOM PS3.18 10.4) under ``/dicomweb``.

Study, series and instance resources as ``multipart/related; type="application/dicom"`` (each
part the Part 10 file as stored, streamed; the transfer syntax negotiated as ``_retrieve``
documents), their ``/metadata`` as DICOM JSON (PS3.18 F.2), ``/bulkdata/...`` and
``/frames/{list}`` in the stored pixel data's media type, and ``/rendered`` (instances and
frames; studies and series as multipart/related) and ``/thumbnail`` images as JPEG or PNG.
Every request is authorised like a FHIR read of the study's ImagingStudy (404 for what the
caller may not see) and audited.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydicom.uid import UID

from adapters.dicom._transcode import EXPLICIT_LE
from adapters.dicom.web._access import DICOM_JSON, DicomWeb
from adapters.dicom.web._media import (
    DICOM,
    OCTET,
    MediaRange,
    check_frames,
    closing,
    multipart_body,
    multipart_type,
    new_boundary,
    parse_accept,
    parse_frames,
    part_head,
)
from adapters.dicom.web._render import (
    THUMBNAIL,
    Rendering,
    encapsulated_document,
    frame_count,
    has_pixels,
    parse_quality,
    parse_viewport,
    parse_window,
    render,
    rendered_media,
    rendered_parts_media,
)
from adapters.dicom.web._retrieve import (
    MetadataCache,
    Transfer,
    bulk_element,
    check_pixels,
    dicom_accept,
    frame_choice,
    frames_of,
    instance_bytes,
    read_instance,
    stored_length,
    stream_instances,
    target_syntaxes,
)
from hub.errors import InvalidRequest, NotAcceptable, NotFound, Unprocessable

log = logging.getLogger("pixelhub.dicomweb")

_JSON_TYPES = (DICOM_JSON, "application/json")
_THUMBNAIL_TRIES = 10  # instances read at most to find one with pixel data


def routes(web: DicomWeb) -> APIRouter:
    router = APIRouter()
    instance = "/studies/{study}/series/{series}/instances/{sop}"
    cache = MetadataCache()

    @router.get("/studies/{study}")
    def retrieve_study(study: str, request: Request) -> Response:
        return retrieve_instances(web, request, study)

    @router.get("/studies/{study}/series/{series}")
    def retrieve_series(study: str, series: str, request: Request) -> Response:
        return retrieve_instances(web, request, study, series)

    @router.get(instance)
    def retrieve_instance(study: str, series: str, sop: str, request: Request) -> Response:
        return retrieve_instances(web, request, study, series, sop)

    @router.get("/studies/{study}/metadata")
    def study_metadata(study: str, request: Request) -> Response:
        return metadata(web, cache, request, study)

    @router.get("/studies/{study}/series/{series}/metadata")
    def series_metadata(study: str, series: str, request: Request) -> Response:
        return metadata(web, cache, request, study, series)

    @router.get(instance + "/metadata")
    def instance_metadata_(study: str, series: str, sop: str, request: Request) -> Response:
        return metadata(web, cache, request, study, series, sop)

    @router.get(instance + "/frames/{frame_list}")
    def frames(study: str, series: str, sop: str, frame_list: str, request: Request) -> Response:
        return retrieve_frames(web, request, study, series, sop, frame_list)

    @router.get(instance + "/bulkdata/{path:path}")
    def bulkdata(study: str, series: str, sop: str, path: str, request: Request) -> Response:
        return retrieve_bulkdata(web, request, study, series, sop, path)

    @router.get(instance + "/rendered")
    def rendered(study: str, series: str, sop: str, request: Request) -> Response:
        return retrieve_rendered(web, request, study, series, sop)

    @router.get(instance + "/frames/{frame_list}/rendered")
    def rendered_frame(
        study: str, series: str, sop: str, frame_list: str, request: Request
    ) -> Response:
        return retrieve_rendered(web, request, study, series, sop, frame_list)

    @router.get("/studies/{study}/rendered")
    def study_rendered(study: str, request: Request) -> Response:
        return rendered_instances(web, request, study)

    @router.get("/studies/{study}/series/{series}/rendered")
    def series_rendered(study: str, series: str, request: Request) -> Response:
        return rendered_instances(web, request, study, series)

    @router.get("/studies/{study}/thumbnail")
    def study_thumbnail(study: str, request: Request) -> Response:
        return thumbnail(web, request, study)

    @router.get("/studies/{study}/series/{series}/thumbnail")
    def series_thumbnail(study: str, series: str, request: Request) -> Response:
        return thumbnail(web, request, study, series)

    @router.get(instance + "/thumbnail")
    def instance_thumbnail(study: str, series: str, sop: str, request: Request) -> Response:
        return retrieve_rendered(web, request, study, series, sop, thumbnail=True)

    @router.get(instance + "/frames/{frame_list}/thumbnail")
    def frame_thumbnail(
        study: str, series: str, sop: str, frame_list: str, request: Request
    ) -> Response:
        return retrieve_rendered(web, request, study, series, sop, frame_list, thumbnail=True)

    return router


def retrieve_instances(
    web: DicomWeb, request: Request, study: str, series: str | None = None,
    sop: str | None = None,
) -> Response:  # fmt: skip
    """PS3.18 10.4: the instances, streamed in one multipart/related body."""
    with Transfer(web, request, study) as transfer:
        records = transfer.select(series, sop)
        multipart, wanted = dicom_accept(accepted(request))
        targets = target_syntaxes(records, wanted)
        if not multipart:
            if len(records) != 1:
                raise NotAcceptable(
                    f"{len(records)} instances cannot be one application/dicom body; "
                    'ask for multipart/related; type="application/dicom"'
                )
            data = instance_bytes(web.blobs, records[0], targets[0])
            return Response(data, media_type=f"{DICOM}; transfer-syntax={targets[0]}")
        boundary = new_boundary()
        length = stored_length(records, targets, boundary)
        return StreamingResponse(
            stream_instances(web.blobs, records, targets, boundary),
            media_type=multipart_type(DICOM, boundary),
            headers={"Content-Length": str(length)} if length is not None else None,
        )


def metadata(
    web: DicomWeb, cache: MetadataCache, request: Request, study: str,
    series: str | None = None, sop: str | None = None,
) -> Response:  # fmt: skip
    """PS3.18 10.4 Retrieve Metadata: one DICOM JSON object per instance."""
    with Transfer(web, request, study) as transfer:
        records = transfer.select(series, sop)
        ranges = accepted(request)
        if not any(r.matches(t) and not r.multipart for r in ranges for t in _JSON_TYPES):
            raise NotAcceptable(f"Metadata are served as {DICOM_JSON} only")
        base = bulkdata_base(web, request)
        body = b"[" + b",".join(cache.get(web.blobs, r, base) for r in records) + b"]"
        return Response(body, media_type=DICOM_JSON)


def retrieve_frames(
    web: DicomWeb, request: Request, study: str, series: str, sop: str, frame_list: str
) -> Response:
    """PS3.18 10.4 Retrieve Frames: each frame one part, in the stored syntax's media
    type (native pixel data sliced per frame, compressed frames as their fragments)."""
    with Transfer(web, request, study) as transfer:
        numbers = parse_frames(frame_list)
        record = transfer.select(series, sop)[0]
        choice = frame_choice(accepted(request), record.transfer_syntax_uid)
        ds = read_instance(web.blobs, record)
        check_pixels(ds, sop)
        check_frames(numbers, frame_count(ds), sop)
        parts = [(choice.content_type, frame) for frame in frames_of(ds, numbers, choice)]
        boundary = new_boundary()
        return Response(
            multipart_body(boundary, parts), media_type=multipart_type(choice.part_type, boundary)
        )


def retrieve_bulkdata(
    web: DicomWeb, request: Request, study: str, series: str, sop: str, path: str
) -> Response:
    """PS3.18 10.4 Retrieve Bulkdata, at the Bulk Data URIs of the metadata: the pixel
    data as its frames (native: the whole value), any other value as application/octet-stream."""
    with Transfer(web, request, study) as transfer:
        record = transfer.select(series, sop)[0]
        ranges = accepted(request)
        ds = read_instance(web.blobs, record)
        elem = bulk_element(ds, path)
        if (
            path.strip("/").upper() == "7FE00010"
            and UID(record.transfer_syntax_uid).is_encapsulated
        ):
            choice = frame_choice(ranges, record.transfer_syntax_uid)
            numbers = list(range(1, frame_count(ds) + 1))
            parts = [(choice.content_type, f) for f in frames_of(ds, numbers, choice)]
            part_type = choice.part_type
        else:
            if not isinstance(elem.value, bytes):
                raise NotFound(f"Element {elem.tag} at {path} is not bulk data")
            if not _accepts_octets(ranges):
                raise NotAcceptable(f'Bulk data are served as multipart/related; type="{OCTET}"')
            parts, part_type = [(f"{OCTET}; transfer-syntax={EXPLICIT_LE}", elem.value)], OCTET
        boundary = new_boundary()
        return Response(
            multipart_body(boundary, parts), media_type=multipart_type(part_type, boundary)
        )


def retrieve_rendered(
    web: DicomWeb, request: Request, study: str, series: str, sop: str,
    frame_list: str | None = None, *, thumbnail: bool = False,
) -> Response:  # fmt: skip
    """PS3.18 10.4 Retrieve Rendered (one frame; the first of a multi-frame instance; an
    encapsulated document as itself when its type is acceptable) and Retrieve Thumbnail (the
    same at a small viewport)."""
    with Transfer(web, request, study) as transfer:
        frame = 1
        if frame_list is not None:
            numbers = parse_frames(frame_list)
            if len(numbers) != 1:
                raise InvalidRequest("Frames are rendered one at a time: name a single frame")
            frame = numbers[0]
        record = transfer.select(series, sop)[0]
        ds = read_instance(web.blobs, record)
        document = None if thumbnail or frame_list else encapsulated_document(ds, accepted(request))
        if document is not None:
            return Response(document[1], media_type=document[0])
        rendering = rendering_of(request, thumbnail=thumbnail)
        return Response(render(ds, frame, rendering), media_type=rendering.media_type)


def rendered_instances(
    web: DicomWeb, request: Request, study: str, series: str | None = None
) -> Response:
    """PS3.18 10.4 Retrieve Rendered for a study or series: every instance with pixel data
    rendered (its first frame, with the request's rendering parameters) as one part of a
    ``multipart/related`` body of image/jpeg or image/png, in series and instance order,
    streamed as each is rendered. Instances without pixel data (reports, documents) have no
    part; one whose pixel data cannot be decoded here is left out and logged (the status line
    has gone by then). 404 when none has pixel data."""
    with Transfer(web, request, study) as transfer:
        media_type = rendered_parts_media(accepted(request))
        rendering = rendering_of(request, media_type=media_type)
        records = transfer.select(series)

        def images() -> Iterator[bytes]:
            for record in records:
                ds = read_instance(web.blobs, record)
                if not has_pixels(ds):
                    continue
                try:
                    yield render(ds, 1, rendering)
                except Unprocessable as exc:
                    log.warning("rendering %s left out: %s", record.sop_instance_uid, exc)

        rendered = images()
        first = next(rendered, None)  # before the status line: none at all is a 404
        if first is None:
            raise NotFound(f"No instance with pixel data that can be rendered in {series or study}")
        boundary = new_boundary()

        def body() -> Iterator[bytes]:
            yield part_head(boundary, media_type, len(first), first=True) + first
            for image in rendered:
                yield part_head(boundary, media_type, len(image), first=False) + image
            yield closing(boundary)

        return StreamingResponse(body(), media_type=multipart_type(media_type, boundary))


def thumbnail(web: DicomWeb, request: Request, study: str, series: str | None = None) -> Response:
    """PS3.18 10.4 for a study or series: a representative image, the middle instance
    of the first series whose middle instance has pixel data that can be decoded."""
    with Transfer(web, request, study) as transfer:
        rendering = rendering_of(request, thumbnail=True)
        records = transfer.select(series)
        by_series: dict[str, list[int]] = {}
        for index, record in enumerate(records):
            by_series.setdefault(record.series_instance_uid, []).append(index)
        middles = [indexes[len(indexes) // 2] for indexes in by_series.values()]
        for index in middles[:_THUMBNAIL_TRIES]:
            ds = read_instance(web.blobs, records[index])
            if not has_pixels(ds):
                continue
            try:
                image = render(ds, 1, rendering)
            except Unprocessable:  # this one cannot be decoded here: try the next series
                continue
            transfer.instances = 1
            return Response(image, media_type=rendering.media_type)
        raise NotFound(f"No instance with pixel data for a thumbnail of {series or study}")


def rendering_of(
    request: Request, *, thumbnail: bool = False, media_type: str | None = None
) -> Rendering:
    """The rendering query parameters (PS3.18 8.3.5) and the negotiated image type (or
    ``media_type``, negotiated by the caller)."""
    query: Mapping[str, str] = request.query_params
    viewport = parse_viewport(query["viewport"]) if "viewport" in query else None
    return Rendering(
        media_type=media_type or rendered_media(accepted(request)),
        window=parse_window(query["window"]) if "window" in query else None,
        viewport=viewport or (THUMBNAIL if thumbnail else None),
        quality=parse_quality(query["quality"]) if "quality" in query else 90,
    )


def bulkdata_base(web: DicomWeb, request: Request) -> str:
    """The DICOMweb base URL the Bulk Data URIs start with: beside the public FHIR base the
    hub's own links use (``PIXELHUB_BASE_URL``, else the bound address), never the request's
    ``Host`` (some clients, dicomweb-client among them, drop its port)."""
    fhir_base = web.context.service.options.base_url.rstrip("/")
    return fhir_base.removesuffix("/fhir") + request.url.path.split("/studies/", 1)[0]


def accepted(request: Request) -> list[MediaRange]:
    """The acceptable media types: the ``accept`` query parameter, which overrides the
    ``Accept`` header (PS3.18 8.3), else the header."""
    return parse_accept(request.query_params.get("accept") or request.headers.get("accept"))


def _accepts_octets(ranges: list[MediaRange]) -> bool:
    return any(
        r.type == "*/*" or (r.multipart and r.matches(OCTET) and r.transfer_syntax in (None, "*"))
        for r in ranges
    )
