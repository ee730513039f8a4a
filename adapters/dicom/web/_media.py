"""Media types of the DICOMweb retrieve services (DICOM PS3.18 8.7): the ``Accept`` header, the
media type of pixel data in each transfer syntax (PS3.18 8.7.3), ``multipart/related``
bodies (RFC 2387, PS3.18 8.7) and the UIDs allowed in paths (PS3.5 9.1)."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

from hub.errors import InvalidRequest, NotFound

DICOM = "application/dicom"
OCTET = "application/octet-stream"
JPEG = "image/jpeg"
PNG = "image/png"
# PS3.18 8.7.3: the media type of encapsulated pixel data (a frame) by transfer syntax.
_JPEG = ("50", "51", "57", "70")
_VIDEO_MP4 = ("102", "103", "104", "105", "106", "107", "108")
PIXEL_MEDIA: dict[str, str] = {
    **{f"1.2.840.10008.1.2.4.{n}": JPEG for n in _JPEG},
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.4.100": "video/mpeg2",
    "1.2.840.10008.1.2.4.101": "video/mpeg2",
    **{f"1.2.840.10008.1.2.4.{n}": "video/mp4" for n in _VIDEO_MP4},
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def check_uid(value: str, what: str) -> str:
    """A UID from a path or query (PS3.5 9.1: digits and dots, at most 64 characters); anything
    else (path traversal, junk) is a 400 before any store or file is touched."""
    if len(value) > 64 or not _UID.fullmatch(value):
        raise InvalidRequest(f"{what} {value[:80]!r} is not a DICOM UID (PS3.5 9.1)")
    return value


def pixel_media(transfer_syntax: str) -> str:
    """The media type of pixel data in ``transfer_syntax`` (native: application/octet-stream)."""
    return PIXEL_MEDIA.get(transfer_syntax, OCTET)


@dataclass(frozen=True)
class MediaRange:
    """One media range of an ``Accept`` header (RFC 9110 12.5.1), parameters lower-cased."""

    type: str
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0

    @property
    def multipart(self) -> bool:
        return self.type in ("multipart/related", "multipart/*")

    @property
    def part_type(self) -> str:
        """The media type of the parts: ``type=`` of a multipart range, else the range itself
        (``*/*`` when a multipart range names none)."""
        return self.params.get("type", "*/*") if self.multipart else self.type

    @property
    def transfer_syntax(self) -> str | None:
        return self.params.get("transfer-syntax")

    def matches(self, media_type: str) -> bool:
        """Whether this range's part type admits ``media_type`` (``*/*``, ``image/*``...)."""
        wanted = self.part_type
        if wanted in ("*/*", "*", media_type):
            return True
        return wanted.endswith("/*") and media_type.startswith(wanted[:-1])


def parse_accept(header: str | None) -> list[MediaRange]:
    """The ranges of ``header``, most preferred first; ``q=0`` ranges dropped. An absent or empty
    header is ``*/*`` (RFC 9110 12.5.1)."""
    ranges: list[MediaRange] = []
    for item in (header or "").split(","):
        pieces = [p.strip() for p in item.split(";")]
        if not pieces[0]:
            continue
        params: dict[str, str] = {}
        for piece in pieces[1:]:
            name, _, value = piece.partition("=")
            params[name.strip().lower()] = value.strip().strip('"').strip()
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 1.0
        if q > 0:
            ranges.append(MediaRange(pieces[0].lower(), params, q))
    ranges.sort(key=lambda r: -r.q)
    return ranges or [MediaRange("*/*")]


def new_boundary() -> str:
    return secrets.token_hex(16)


def multipart_type(part_type: str, boundary: str) -> str:
    """The ``Content-Type`` of a multipart/related body (PS3.18 8.7)."""
    return f'multipart/related; type="{part_type}"; boundary={boundary}'


def part_head(boundary: str, content_type: str, length: int, *, first: bool) -> bytes:
    """The delimiter and headers opening a part (the CRLF ending the previous part included)."""
    lead = "" if first else "\r\n"
    head = f"{lead}--{boundary}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    return head.encode("ascii")


def closing(boundary: str, *, empty: bool = False) -> bytes:
    lead = "" if empty else "\r\n"
    return f"{lead}--{boundary}--\r\n".encode("ascii")


def multipart_body(boundary: str, parts: list[tuple[str, bytes]]) -> bytes:
    """A whole multipart/related body of small parts ``(content type, bytes)``."""
    out = [part_head(boundary, ct, len(b), first=i == 0) + b for i, (ct, b) in enumerate(parts)]
    return b"".join([*out, closing(boundary, empty=not parts)])


def parse_frames(frame_list: str) -> list[int]:
    """``frames/{frame list}`` (PS3.18 10.4): comma-separated 1-based frame numbers; a
    malformed list or frame 0 is a 400."""
    numbers: list[int] = []
    for item in frame_list.split(","):
        if not item.strip().isdigit() or int(item) < 1:
            raise InvalidRequest(f"Frame list {frame_list[:80]!r}: frame numbers start at 1")
        numbers.append(int(item))
    if len(numbers) > 10_000:
        raise InvalidRequest("Too many frames in one request (at most 10000)")
    return numbers


def check_frames(numbers: list[int], available: int, sop: str) -> None:
    """A frame beyond the instance's Number of Frames does not exist: 404."""
    beyond = [n for n in numbers if n > available]
    if beyond:
        raise NotFound(f"Instance {sop} has {available} frame(s); frame {beyond[0]} does not exist")
