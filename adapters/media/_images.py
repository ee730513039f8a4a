"""Open, check and describe uploaded images, video and PDFs; make derived views without metadata.

Library errors are converted where they enter: Pillow, pillow-heif, PyAV and pypdfium2 failures
on uploaded bytes become ``Unprocessable`` (422). Derived views are JPEGs (ITU-T T.81, JFIF) with
EXIF orientation applied and no metadata at all: no EXIF (so no GPS), no XMP, no comment and no
ICC profile (colours are taken as sRGB, good enough for a preview).
"""

from __future__ import annotations

import functools
import io
import re
import struct
import warnings
from dataclasses import dataclass
from datetime import datetime

import av
import pillow_heif
import pypdfium2 as pdfium  # type: ignore[import-untyped]
from PIL import Image, ImageOps

from hub.errors import Unprocessable

MAX_PIXELS = 100_000_000
QUALITY = 85

# What Pillow and its plugins raise on bad input: truncated data (OSError), broken structure
# (SyntaxError, ValueError, struct.error, EOFError), broken tables (IndexError, TypeError).
_PIL_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, TypeError)

_MAKE, _MODEL, _DATETIME = 0x010F, 0x0110, 0x0132
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_DATETIME_ORIGINAL, _OFFSET_TIME, _OFFSET_TIME_ORIGINAL = 0x9003, 0x9010, 0x9011
_OFFSET = re.compile(r"[+-](?:0\d|1[0-4]):[0-5]\d")


@dataclass(frozen=True)
class ImageFacts:
    """What an uploaded image says about itself (stored pixel size, EXIF CIPA DC-008 tags)."""

    width: int
    height: int
    captured: str | None
    make: str | None
    model: str | None
    had_gps: bool


@functools.cache
def _register_heif() -> None:
    pillow_heif.register_heif_opener()


def _open(path: str, max_pixels: int) -> Image.Image:
    """Open the header only, refusing decompression bombs before any pixel is decoded."""
    _register_heif()
    try:
        with warnings.catch_warnings():
            # Our own limit applies; Pillow's warning level (~89 Mpx) sits below the default.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise Unprocessable(f"decompression bomb: {exc}") from exc
    except _PIL_ERRORS as exc:
        raise Unprocessable(f"corrupt or unreadable image: {exc}") from exc
    width, height = img.size
    if width <= 0 or height <= 0:
        img.close()
        raise Unprocessable(f"corrupt image: size {width}x{height}")
    if width * height > max_pixels:
        img.close()
        raise Unprocessable(
            f"decompression bomb: {width}x{height} pixels exceed the limit of {max_pixels}"
        )
    return img


def _load(img: Image.Image) -> None:
    """Decode every pixel of the current (first) frame, proving the image is readable."""
    try:
        img.load()
    except Image.DecompressionBombError as exc:
        raise Unprocessable(f"decompression bomb: {exc}") from exc
    except _PIL_ERRORS as exc:
        raise Unprocessable(f"corrupt image: {exc}") from exc


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    cleaned = value.replace("\x00", "").strip()
    return cleaned or None


def _fhir_datetime(value: object, offset: object) -> str | None:
    """EXIF "YYYY:MM:DD HH:MM:SS" (CIPA DC-008 4.6.5) as an R4 ``dateTime``.

    R4 requires a time zone whenever a time is given, so without an EXIF offset only the date is
    kept.
    """
    text = _text(value)
    if text is None:
        return None
    try:
        moment = datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    zone = _text(offset)
    if zone and _OFFSET.fullmatch(zone):
        return moment.strftime("%Y-%m-%dT%H:%M:%S") + zone
    return moment.strftime("%Y-%m-%d")


def _facts(img: Image.Image) -> ImageFacts:
    try:
        exif = img.getexif()
        sub = exif.get_ifd(_EXIF_IFD)
    except _PIL_ERRORS:  # unreadable EXIF is not worth refusing the picture for
        return ImageFacts(img.width, img.height, None, None, None, False)
    captured = _fhir_datetime(sub.get(_DATETIME_ORIGINAL), sub.get(_OFFSET_TIME_ORIGINAL))
    if captured is None:
        captured = _fhir_datetime(exif.get(_DATETIME), sub.get(_OFFSET_TIME))
    return ImageFacts(
        width=img.width,
        height=img.height,
        captured=captured,
        make=_text(exif.get(_MAKE)),
        model=_text(exif.get(_MODEL)),
        had_gps=_GPS_IFD in exif,
    )


def _to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB: alpha composited on white, 16-bit and float grey stretched to their maximum."""
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        grey = img.convert("F")
        high = grey.getextrema()[1]
        scale = 255.0 / float(high) if isinstance(high, int | float) and high > 0 else 1.0
        return grey.point(lambda v: v * scale).convert("L").convert("RGB")
    if img.mode == "P" or img.mode == "PA" or "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _jpeg(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.info.clear()  # Pillow copies a "comment" from info; nothing else is passed to save
    img.save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def _views(img: Image.Image, thumbnail: int, preview: int) -> tuple[bytes, bytes]:
    """(thumbnail, preview) JPEGs, longest side at most the size, never upscaled."""
    rgb = _to_rgb(img)
    rgb.thumbnail((preview, preview), Image.Resampling.LANCZOS)
    large = _jpeg(rgb)
    rgb.thumbnail((thumbnail, thumbnail), Image.Resampling.LANCZOS)
    return _jpeg(rgb), large


def examine(
    path: str, *, max_pixels: int = MAX_PIXELS, thumbnail: int = 256, preview: int = 1600
) -> tuple[ImageFacts, tuple[bytes, bytes]]:
    """Check an image and make its views in one decode: the pixel limit from the header, EXIF,
    then every pixel of the first frame decoded (a JPEG at the smallest DCT scale still as large
    as the preview, which reads all its entropy-coded data: a truncated or corrupt stream fails
    here), and the (thumbnail JPEG, preview JPEG), upright (EXIF 0x0112) and metadata-free.

    ``width``/``height`` are the stored pixel size, before EXIF orientation (for HEIF after the
    container's rotation and mirror, which libheif applies on decoding, ISO/IEC 23008-12 6.5).
    """
    with _open(path, max_pixels) as img:
        facts = _facts(img)
        if img.format == "JPEG":
            img.draft(img.mode, (preview, preview))  # DCT scaling: decode no more than needed
        _load(img)
        try:
            upright = ImageOps.exif_transpose(img)
        except _PIL_ERRORS as exc:
            raise Unprocessable(f"corrupt image: {exc}") from exc
        try:
            return facts, _views(upright, thumbnail, preview)
        except _PIL_ERRORS as exc:  # e.g. a colour space Pillow cannot turn into RGB
            raise Unprocessable(f"cannot render image: {exc}") from exc


def inspect(path: str, *, max_pixels: int = MAX_PIXELS) -> ImageFacts:
    """The checks and EXIF facts of ``examine``."""
    return examine(path, max_pixels=max_pixels)[0]


def render_views(
    path: str, *, max_pixels: int = MAX_PIXELS, thumbnail: int = 256, preview: int = 1600
) -> tuple[bytes, bytes]:
    """The (thumbnail, preview) JPEGs of ``examine``."""
    return examine(path, max_pixels=max_pixels, thumbnail=thumbnail, preview=preview)[1]


# --- JPEG streams (ITU-T T.81 B.1.1.3 markers, B.2 syntax) -----------------------------------

_SOI, _EOI, _SOS, _COM = 0xD8, 0xD9, 0xDA, 0xFE
_APP0, _APP14 = 0xE0, 0xEE
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RST0-7 carry no length (B.1.1.3)


def _jpeg_error(message: str) -> Unprocessable:
    return Unprocessable(f"malformed JPEG stream: {message}")


def _segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each marker segment after SOI, up to and including EOI.

    ``start`` is the 0xFF right before the marker code (fill bytes are skipped), so the payload
    of a segment with a length is ``data[start + 4 : end]``. An SOS segment's ``end`` includes
    its entropy-coded data (B.2.4: it ends at the next marker other than RSTn; 0xFF00 is a
    stuffed byte). Raises on a malformed structure or missing EOI.
    """
    if not data.startswith(b"\xff\xd8"):
        raise _jpeg_error("no SOI marker")
    found: list[tuple[int, int, int]] = []
    pos = 2
    while True:
        if pos >= len(data) or data[pos] != 0xFF:
            raise _jpeg_error(f"expected a marker at byte {pos}")
        while pos + 1 < len(data) and data[pos + 1] == 0xFF:  # fill bytes (B.1.1.2): dropped
            pos += 1
        if pos + 1 >= len(data):
            raise _jpeg_error("truncated marker")
        start = pos
        pos += 1
        marker = data[pos]
        pos += 1
        if marker in (0x00, _SOI):
            raise _jpeg_error(f"unexpected marker 0xFF{marker:02X} at byte {pos - 2}")
        if marker == _EOI:
            found.append((marker, start, pos))
            return found
        if marker not in _STANDALONE:
            if pos + 2 > len(data):
                raise _jpeg_error("truncated segment length")
            length = int.from_bytes(data[pos : pos + 2], "big")
            if length < 2 or pos + length > len(data):
                raise _jpeg_error(f"bad length of segment 0xFF{marker:02X} at byte {start}")
            pos += length
            if marker == _SOS:
                pos = _scan_end(data, pos)
        found.append((marker, start, pos))


def _scan_end(data: bytes, pos: int) -> int:
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            raise _jpeg_error("truncated entropy-coded data (no EOI)")
        following = data[pos + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:
            pos += 2
        elif following == 0xFF:
            pos += 1
        else:
            return pos


def _keep(marker: int, payload: bytes) -> bool:
    if marker == _APP0:
        return payload.startswith(b"JFIF\x00")
    if marker == _APP14:
        return payload.startswith(b"Adobe")
    return not (0xE1 <= marker <= 0xEF or marker == _COM)


def strip_jpeg_metadata(data: bytes) -> bytes:
    """The same JPEG without metadata, losslessly (entropy-coded data copied unchanged).

    Drops APP1-APP13 and APP15 (EXIF, GPS, XMP, MPF, maker notes, ICC in APP2, Photoshop IRB),
    COM, non-JFIF APP0 (JFXX thumbnails) and anything after EOI (e.g. appended secondary
    images). Keeps APP0 JFIF and APP14 Adobe, whose transform flag defines the colour space
    (T.872 6.5.3).
    """
    out = bytearray(b"\xff\xd8")
    for marker, start, end in _segments(data):
        if marker in _STANDALONE or marker == _EOI or _keep(marker, data[start + 4 : end]):
            out += data[start:end]
    return bytes(out)


def is_baseline_jpeg(data: bytes) -> tuple[bool, int, str]:
    """Whether the stream is 8-bit Huffman SOF0/SOF1, for DICOM JPEG Baseline (PS3.5 A.4.1).

    Returns (ok, components, photometric): MONOCHROME2 for one component; for three, RGB when
    APP14 Adobe says transform 0 (or the component ids are "R","G","B"), YBR_FULL_422 when the
    chroma is subsampled (4:2:2 or 4:2:0, PS3.3 C.7.6.3.1.2) and YBR_FULL for 4:4:4.
    """
    adobe_transform: int | None = None
    for marker, start, end in _segments(data):
        payload = data[start + 4 : end]
        if marker == _APP14 and payload.startswith(b"Adobe") and len(payload) >= 12:
            adobe_transform = payload[11]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return _frame(marker, payload, adobe_transform)
        if marker == _SOS:
            break
    raise _jpeg_error("no start-of-frame segment before the first scan")


def _frame(marker: int, sof: bytes, adobe_transform: int | None) -> tuple[bool, int, str]:
    """B.2.2 frame header: P, Y, X, Nf, then Nf x (C, H<<4|V, Tq)."""
    if len(sof) < 6:
        raise _jpeg_error("short frame header")
    precision, count = sof[0], sof[5]
    components = [sof[6 + 3 * i : 9 + 3 * i] for i in range(count)]
    if count == 0 or len(components[-1]) < 3:
        raise _jpeg_error("short frame header")
    ok = marker in (0xC0, 0xC1) and precision == 8 and count in (1, 3)
    if count == 1:
        return ok, count, "MONOCHROME2"
    if count != 3:
        return False, count, ""
    if adobe_transform == 0 or bytes(c[0] for c in components) == b"RGB":
        return ok, count, "RGB"
    sampling = {c[1] for c in components}
    return ok, count, "YBR_FULL" if len(sampling) == 1 else "YBR_FULL_422"


# --- video (PyAV, FFmpeg) ----------------------------------------------------------------------


def _upright_frame(frame: av.VideoFrame) -> Image.Image:
    """The frame as a Pillow image turned by its display matrix (ISO/IEC 14496-12 8.3.2 ``tkhd``).

    ``frame.rotation`` is FFmpeg's counter-clockwise angle, as is ``Image.rotate``'s.
    """
    img = Image.fromarray(frame.to_ndarray(format="rgb24"))
    turn = round(frame.rotation / 90) * 90 % 360
    return img.rotate(turn, expand=True) if turn else img


def video_poster(
    path: str, *, thumbnail: int = 256, preview: int = 1600
) -> tuple[bytes, bytes] | None:
    """(thumbnail, preview) JPEGs of a video's frame at ~1 s (frame 0 for clips up to 2 s).

    ``None`` when there is no video stream. The file is demuxed from disk, never read whole.
    """
    try:
        with av.open(path) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            if container.duration is not None and container.duration > 2 * av.time_base:
                container.seek(av.time_base, any_frame=False)
            for frame in container.decode(stream):
                return _views(_upright_frame(frame), thumbnail, preview)
    except av.FFmpegError as exc:
        raise Unprocessable(f"corrupt video: {exc}") from exc
    raise Unprocessable("corrupt video: no decodable frame")


def video_facts(path: str) -> tuple[float | None, int | None, int | None, str | None]:
    """(duration in seconds, width, height as coded, codec name) of the first video stream.

    Without a video stream (audio files) width and height are ``None`` and the codec is the
    first audio stream's.
    """
    try:
        with av.open(path) as container:
            duration = container.duration / av.time_base if container.duration else None
            if container.streams.video:
                context = container.streams.video[0].codec_context
                return duration, context.width or None, context.height or None, context.name
            if container.streams.audio:
                return duration, None, None, container.streams.audio[0].codec_context.name
            return duration, None, None, None
    except av.FFmpegError as exc:
        raise Unprocessable(f"corrupt media: {exc}") from exc


# --- PDF (pypdfium2, PDFium) -------------------------------------------------------------------


def _pdf(path: str) -> pdfium.PdfDocument:
    """Open a PDF; password-protected (ISO 32000-1 7.6) and corrupt files are refused."""
    try:
        document = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        raise Unprocessable(f"corrupt or encrypted PDF: {exc}") from exc
    if len(document) < 1:
        document.close()
        raise Unprocessable("PDF without pages")
    return document


def pdf_page_count(path: str) -> int:
    """The number of pages of a PDF."""
    document = _pdf(path)
    try:
        count: int = len(document)
        return count
    finally:
        document.close()


def pdf_views(path: str, *, thumbnail: int = 256, preview: int = 1600) -> tuple[bytes, bytes]:
    """(thumbnail, preview) JPEGs of page 1, rendered so its longest side is ``preview`` px."""
    document = _pdf(path)
    try:
        page = document[0]
        width, height = page.get_size()
        scale = preview / max(float(width), float(height), 1.0)
        image: Image.Image = page.render(scale=scale).to_pil()
        page.close()
    except pdfium.PdfiumError as exc:
        raise Unprocessable(f"corrupt PDF: {exc}") from exc
    finally:
        document.close()
    return _views(image, thumbnail, preview)
