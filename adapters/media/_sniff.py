"""The real type of an upload, decided from its bytes (magic numbers), never from its name.

Signatures: JPEG (ITU-T T.81 B.1.1.2 SOI), PNG (ISO/IEC 15948 5.2), TIFF (TIFF 6.0 §2), ISO base
media files by their ``ftyp`` box (ISO/IEC 14496-12 4.3; HEIF brands ISO/IEC 23008-12 Annex B;
QuickTime File Format "File type compatibility atom"), QuickTime without ``ftyp`` by its first
atom, WebM (EBML RFC 8794 DocType ``webm``), PDF (ISO 32000-1 7.5.2 header at offset 0), WAV
(RIFF/WAVE), MP3 (ID3v2 or an ISO/IEC 11172-3 2.4.1.3 frame header), Ogg (RFC 3533 ``OggS``) and
FLAC (RFC 9639 ``fLaC``).

Polyglot defence: a file that is also a second, active or container format is refused. Only the
first and last 64 KiB are inspected (``HEAD``/``TAIL``), so large videos are never read whole:

- ``%PDF-`` anywhere in head or tail of a non-PDF (PDF readers look for it near the start);
- a ZIP local header ``PK\\x03\\x04`` whose "version needed" is <= 6.3 and whose method is a
  known one, or an end-of-central-directory record ``PK\\x05\\x06`` with consistent disk and entry
  counts (APPNOTE 4.3.7, 4.3.16). Compressed media can contain these four bytes by chance; the
  plausibility test makes a false alarm very rare, and that small risk is accepted;
- HTML/script/SVG/PHP markers, case-insensitive, in head or tail of images, video and audio (for a
  PDF only in its first 1024 bytes: PDFs legitimately carry JavaScript keywords);
- JPEG: more than 16 bytes other than 00/FF/whitespace padding after the last EOI marker. No
  phone trailer is allowed, so Google/Samsung "motion photos" (an MP4 appended after EOI) are
  refused; multi-picture JPEGs (CIPA DC-007, images before the final EOI) pass;
- PNG: any non-padding byte after the IEND chunk (ISO/IEC 15948 5.6 IEND is the last chunk).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from hub.errors import Unprocessable, UnsupportedMediaType

Kind = Literal["image", "video", "audio", "document"]

HEAD = 64 * 1024
TAIL = 64 * 1024

ACCEPTED = (
    "JPEG, PNG, TIFF, HEIC/HEIF images; MP4, QuickTime, WebM video; PDF documents; "
    "WAV, MP3, M4A, Ogg, FLAC audio"
)


@dataclass(frozen=True)
class Detected:
    """A recognised type: canonical MIME type, kind and usual file extension."""

    mime: str
    kind: Kind
    extension: str


_TYPES: dict[str, tuple[Kind, str]] = {
    "image/jpeg": ("image", ".jpg"),
    "image/png": ("image", ".png"),
    "image/tiff": ("image", ".tif"),
    "image/heic": ("image", ".heic"),
    "image/heif": ("image", ".heif"),
    "video/mp4": ("video", ".mp4"),
    "video/quicktime": ("video", ".mov"),
    "video/webm": ("video", ".webm"),
    "application/pdf": ("document", ".pdf"),
    "audio/wav": ("audio", ".wav"),
    "audio/mpeg": ("audio", ".mp3"),
    "audio/mp4": ("audio", ".m4a"),
    "audio/ogg": ("audio", ".ogg"),
    "audio/flac": ("audio", ".flac"),
}

_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"}
_HEIF_BRANDS = {b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
_MP4_BRANDS = {
    b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6",
    b"mp41", b"mp42", b"avc1", b"M4V ", b"dash", b"mmp4",
}  # fmt: skip
_M4A_BRANDS = {b"M4A ", b"M4B "}
_QT_ATOMS = {b"moov", b"mdat", b"wide", b"free"}

# "<svg" alone is only four bytes and would turn up by chance in compressed data: a tag follows.
_ACTIVE = re.compile(
    rb"<html|<script|<svg[\s/>]|<\?php|<!doctype\s+html|<iframe|javascript:", re.IGNORECASE
)
_PADDING = b"\x00\xff \t\r\n"
_JPEG_SLACK = 16
_ZIP_METHODS = {0, 1, 6, 8, 9, 12, 14, 93, 95, 98, 99}


def _found(mime: str) -> Detected:
    kind, extension = _TYPES[mime]
    return Detected(mime, kind, extension)


def known(mime: str) -> Detected | None:
    """The ``Detected`` of a canonical type this module names (as ``detect`` returned it)."""
    return _found(mime) if mime in _TYPES else None


def _brand_type(brand: bytes, brands: set[bytes]) -> str | None:
    if brand in _HEIC_BRANDS or (brand in _HEIF_BRANDS and brands & _HEIC_BRANDS):
        return "image/heic"
    if brand in _HEIF_BRANDS:
        return "image/heif"
    if brand == b"qt  ":
        return "video/quicktime"
    if brand in _M4A_BRANDS:
        return "audio/mp4"
    if brand in _MP4_BRANDS:
        return "video/mp4"
    return None


def _iso_bmff(head: bytes) -> str | None:
    """ISO/IEC 14496-12 4.3: ``ftyp`` = size, major brand, minor version, compatible brands."""
    box_size = int.from_bytes(head[:4], "big")
    end = min(box_size, len(head)) if box_size >= 16 else 16
    major = head[8:12]
    compatible = [head[i : i + 4] for i in range(16, end - 3, 4)]
    brands = {major, *compatible}
    if brands & _AVIF_BRANDS and not brands & _HEIC_BRANDS:
        return None  # AVIF is not an accepted image type, even though it lists mif1
    for brand in (major, *compatible):
        mime = _brand_type(brand, brands)
        if mime:
            return mime
    return None


def _vint(data: bytes, pos: int) -> tuple[int, int]:
    """An EBML variable-size integer (RFC 8794 §4): (value, position after it)."""
    if pos >= len(data) or data[pos] == 0:
        return -1, len(data)
    first = data[pos]
    length = 8 - first.bit_length() + 1
    value = first & ((1 << (8 - length)) - 1)
    for byte in data[pos + 1 : pos + length]:
        value = (value << 8) | byte
    return value, pos + length


def _ebml_doctype(head: bytes) -> bytes | None:
    """The DocType (element 0x4282) of the EBML header at offset 0 (RFC 8794 §11.2.6)."""
    header_size, pos = _vint(head, 4)
    end = min(pos + max(header_size, 0), len(head))
    while pos < end:
        id_length = 9 - head[pos].bit_length()  # element IDs are 1-4 byte vints (§5)
        if id_length > 4:
            return None
        element = head[pos : pos + id_length]
        size, pos = _vint(head, pos + id_length)
        if size < 0:
            return None
        if element == b"\x42\x82":
            return head[pos : pos + size]
        pos += size
    return None


def _mpeg_audio_frame(head: bytes) -> bool:
    """ISO/IEC 11172-3 2.4.1.3: 11-bit sync, valid version, layer, bitrate and sampling rate."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version = (head[1] >> 3) & 3
    layer = (head[1] >> 1) & 3
    bitrate = head[2] >> 4
    rate = (head[2] >> 2) & 3
    return version != 1 and layer != 0 and bitrate != 15 and rate != 3


def _primary(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    if head[4:8] == b"ftyp":
        return _iso_bmff(head)
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm" if _ebml_doctype(head) == b"webm" else None
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if (head.startswith(b"ID3") and head[3:4] in (b"\x02", b"\x03", b"\x04")) or (
        _mpeg_audio_frame(head)
    ):
        return "audio/mpeg"
    atom_size = int.from_bytes(head[:4], "big")
    if head[4:8] in _QT_ATOMS and (atom_size in (0, 1) or atom_size >= 8):
        return "video/quicktime"
    return None


def _zip_marker(data: bytes) -> str | None:
    """A plausible ZIP local file header or end of central directory (APPNOTE 4.3.7, 4.3.16)."""
    pos = data.find(b"PK\x03\x04")
    while pos >= 0:
        header = data[pos : pos + 10]
        method = int.from_bytes(header[8:10], "little")
        if len(header) == 10 and header[4] <= 63 and header[5] == 0 and method in _ZIP_METHODS:
            return "a ZIP archive (local file header)"
        pos = data.find(b"PK\x03\x04", pos + 1)
    pos = data.find(b"PK\x05\x06")
    while pos >= 0:
        record = data[pos : pos + 22]
        if len(record) == 22:
            disk, cd_disk, here, total = (
                int.from_bytes(record[i : i + 2], "little") for i in (4, 6, 8, 10)
            )
            if disk == cd_disk and here <= total:
                return "a ZIP archive (end of central directory)"
        pos = data.find(b"PK\x05\x06", pos + 1)
    return None


# PDFs legitimately name JavaScript (ISO 32000-1 12.6.4.16) and use "javascript:" links.
_ACTIVE_IN_PDF = re.compile(
    rb"<html|<script|<svg[\s/>]|<\?php|<!doctype\s+html|<iframe", re.IGNORECASE
)


def _active_marker(data: bytes, pattern: re.Pattern[bytes] = _ACTIVE) -> str | None:
    match = pattern.search(data)
    return f"HTML/script ({match.group().decode('latin-1')!r} found)" if match else None


def _trailer(detected: str, tail: bytes) -> str | None:
    if detected == "image/jpeg":
        eoi = tail.rfind(b"\xff\xd9")
        if eoi < 0:
            return "truncated or carrying appended data (no JPEG end-of-image in the last 64 KiB)"
        extra = tail[eoi + 2 :].strip(_PADDING)
        if len(extra) > _JPEG_SLACK:
            return f"carrying {len(extra)} bytes after the JPEG end-of-image marker"
    if detected == "image/png":
        iend = tail.rfind(b"IEND")
        if iend < 0:
            return "truncated or carrying appended data (no PNG IEND chunk in the last 64 KiB)"
        extra = tail[iend + 8 :].strip(_PADDING)
        if extra:
            return f"carrying {len(extra)} bytes after the PNG IEND chunk"
    return None


def _second_format(mime: str, head: bytes, tail: bytes) -> str | None:
    if mime == "application/pdf":
        return _zip_marker(tail) or _active_marker(head[:1024], _ACTIVE_IN_PDF)
    if b"%PDF-" in head or b"%PDF-" in tail:
        return "a PDF document"
    return _zip_marker(head) or _zip_marker(tail) or _active_marker(head) or _active_marker(tail)


def detect(head: bytes, tail: bytes, size: int) -> Detected:
    """The type of a file of ``size`` bytes from its first ``HEAD`` and last ``TAIL`` bytes.

    Unknown signature -> ``UnsupportedMediaType`` (415); a recognised file that also looks like
    a second, active or container format -> ``Unprocessable`` (422, "polyglot").
    """
    if size <= 0 or not head:
        raise UnsupportedMediaType(f"empty upload: accepted are {ACCEPTED}")
    mime = _primary(head)
    if mime is None:
        raise UnsupportedMediaType(f"unrecognised file type: accepted are {ACCEPTED}")
    other = _second_format(mime, head, tail)
    if other:
        raise Unprocessable(f"polyglot: the {mime} file also looks like {other}")
    problem = _trailer(mime, tail)
    if problem:
        raise Unprocessable(f"polyglot: the {mime} file is {problem}")
    return _found(mime)


_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/mp3": "audio/mpeg",
    "audio/x-m4a": "audio/mp4",
    "audio/m4a": "audio/mp4",
    "audio/x-flac": "audio/flac",
    "application/ogg": "audio/ogg",
    "video/x-m4v": "video/mp4",
    "application/x-pdf": "application/pdf",
}
# (declared, detected) pairs that describe the same file: MP4 audio is often sent as video/mp4,
# HEIC is a HEIF profile and phones mix the two, audio-only WebM is sent as audio/webm.
_COMPATIBLE = {
    ("video/mp4", "audio/mp4"),
    ("image/heif", "image/heic"),
    ("image/heic", "image/heif"),
    ("audio/webm", "video/webm"),
}
_UNSPECIFIC = {"", "application/octet-stream", "*/*"}


def check_declared(declared: str | None, detected: Detected) -> None:
    """Refuse (422) a declared Content-Type that contradicts the bytes (RFC 9110 8.3).

    Absent, empty, ``application/octet-stream`` and ``*/*`` say nothing and pass; parameters are
    ignored and the usual aliases are accepted.
    """
    bare = (declared or "").split(";", 1)[0].strip().lower()
    if bare in _UNSPECIFIC:
        return
    canonical = _ALIASES.get(bare, bare)
    if canonical == detected.mime or (canonical, detected.mime) in _COMPATIBLE:
        return
    raise Unprocessable(f"declared {bare} but the bytes are {detected.mime}")
