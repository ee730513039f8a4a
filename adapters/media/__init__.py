"""Encounter-based imaging (issue 10): photos, video, audio and scanned documents from every
ology, uploaded by devices and apps into the same patient record as the DICOM studies.

The ``media`` web service of ``pixelhub serve`` (entry point ``pixelhub.web_services``) under
``/media``: ``_routes`` (HTTP), ``_form`` (streaming multipart/form-data), ``_fields`` (the
upload's fields), ``_sniff`` (the real type from the bytes), ``_images`` (decoding, EXIF,
renditions), ``_video`` (videos made H.264 in MP4 for DICOM), ``_wrap`` (DICOM wrapping),
``_capture`` (the upload's steps, renditions served).
"""

from __future__ import annotations

from fastapi import APIRouter

from adapters.media._capture import MediaService
from adapters.media._routes import routes
from adapters.media._sniff import check_declared, detect
from hub.channels import ChannelContext

PREFIX = "/media"


def create_web_service(context: ChannelContext) -> APIRouter:
    """The ``pixelhub.web_services`` entry point ``media``."""
    return routes(context, MediaService(context), PREFIX)


def content_type_of(head: bytes, tail: bytes, size: int, declared: str | None) -> str:
    """The ``pixelhub.content_inspectors`` entry point ``media``: the real type of a native
    ``Binary`` from its bytes (415 unknown, 422 a declared type they deny or a polyglot)."""
    detected = detect(head, tail, size)
    check_declared(declared, detected)
    return detected.mime


__all__ = ["PREFIX", "MediaService", "content_type_of", "create_web_service"]
