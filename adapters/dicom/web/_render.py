"""Rendered images of DICOM instances (DICOM PS3.18 10.4 Retrieve Rendered, 8.3.5 rendering
query parameters; used by WADO-RS ``/rendered`` and ``/thumbnail`` and by WADO-URI).

One frame is decoded with pydicom (compressed syntaxes through its pixel data plugins, as
``adapters.dicom._transcode`` lists them), then: the Modality LUT (PS3.3 C.11.1), the VOI window
of the request or of the file (PS3.3 C.11.2.1.2: LINEAR, LINEAR_EXACT, SIGMOID; the full range
when the file has none), MONOCHROME1 inverted, colour converted to RGB (palette colour through
its LUTs), scaled to fit the viewport keeping the aspect ratio, and encoded as JPEG (the
default) or PNG with Pillow.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi_lut
from pydicom.pixels.utils import pixel_array

from adapters.dicom._transcode import DECODE_ERRORS
from adapters.dicom.web._media import JPEG, PNG, MediaRange
from hub.errors import InvalidRequest, NotAcceptable, NotFound, Unprocessable

RENDERED = (JPEG, PNG)
MAX_VIEWPORT = 8192
_MAX_WINDOW = 1e12  # beyond any pixel value; keeps float32 arithmetic finite (NaN fails too)
THUMBNAIL = (128, 128)
_FUNCTIONS = {"linear": "linear", "linear-exact": "linear-exact", "sigmoid": "sigmoid"}
_FILE_FUNCTIONS = {"LINEAR": "linear", "LINEAR_EXACT": "linear-exact", "SIGMOID": "sigmoid"}


@dataclass(frozen=True)
class Window:
    """A VOI window (PS3.3 C.11.2.1.2)."""

    center: float
    width: float
    function: str = "linear"


@dataclass(frozen=True)
class Rendering:
    """What a rendered image request asks for (PS3.18 8.3.5)."""

    media_type: str = JPEG
    window: Window | None = None
    viewport: tuple[int | None, int | None] | None = None  # (width, height)
    quality: int = 90


def rendered_media(ranges: list[MediaRange]) -> str:
    """The first acceptable of image/jpeg (the default) and image/png, else 406."""
    for media_range in ranges:
        for media_type in RENDERED:
            if media_range.matches(media_type) and not media_range.multipart:
                return media_type
    asked = ", ".join(r.type for r in ranges)
    raise NotAcceptable(f"Rendered images are served as image/jpeg or image/png, not {asked}")


def rendered_parts_media(ranges: list[MediaRange]) -> str:
    """The part type of a rendered study or series, always multipart/related (PS3.18 8.7.4):
    image/jpeg (the default) or image/png, from the first multipart (or ``*/*``) range that
    admits one; else 406."""
    for media_range in ranges:
        if media_range.multipart or media_range.type == "*/*":
            for media_type in RENDERED:
                if media_range.matches(media_type):
                    return media_type
    asked = ", ".join(r.type for r in ranges)
    raise NotAcceptable(
        'A rendered study or series is multipart/related; type="image/jpeg" or "image/png", '
        f"not {asked}"
    )


def encapsulated_document(ds: Dataset, ranges: list[MediaRange]) -> tuple[str, bytes] | None:
    """An encapsulated document (PDF, CDA...: PS3.3 C.24.2) rendered as itself, when its MIME
    type is acceptable: ``(media type, document)``; ``None`` otherwise."""
    mime = str(ds.get("MIMETypeOfEncapsulatedDocument") or "").strip().lower()
    if not mime or "EncapsulatedDocument" not in ds:
        return None
    if not any(r.matches(mime) and not r.multipart for r in ranges):
        return None
    document = bytes(ds.EncapsulatedDocument)
    length = ds.get("EncapsulatedDocumentLength")  # without the padding to an even length
    return mime, document[: int(length)] if length else document


def parse_window(value: str) -> Window:
    """``window=center,width[,function]`` (PS3.18 8.3.5)."""
    parts = [p.strip() for p in value.split(",")]
    if len(parts) not in (2, 3):
        raise InvalidRequest(f"window={value[:80]!r}: expected center,width[,function]")
    function = _FUNCTIONS.get((parts[2] if len(parts) == 3 else "linear").lower())
    if function is None:
        raise InvalidRequest(f"window function {parts[2]!r}: linear, linear-exact or sigmoid")
    return window_of(parts[0], parts[1], function)


def window_of(center: str, width: str, function: str = "linear") -> Window:
    try:
        c, w = float(center), float(width)
    except ValueError:
        raise InvalidRequest(f"window center/width {center!r}/{width!r} are not numbers") from None
    if not (abs(c) <= _MAX_WINDOW and (1 if function == "linear" else 0) <= w <= _MAX_WINDOW):
        raise InvalidRequest(f"window center/width {center!r}/{width!r} are out of range")
    return Window(c, w, function)


def parse_viewport(value: str) -> tuple[int | None, int | None]:
    """``viewport=vw,vh`` (PS3.18 8.3.5); one of them may be empty (aspect kept)."""
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 2:
        raise InvalidRequest(f"viewport={value[:80]!r}: expected width,height")
    return size_of(parts[0] or None, parts[1] or None)


def size_of(width: str | None, height: str | None) -> tuple[int | None, int | None]:
    sizes: list[int | None] = []
    for value in (width, height):
        if value is None:
            sizes.append(None)
        elif value.isdigit() and 0 < int(value) <= MAX_VIEWPORT:
            sizes.append(int(value))
        else:
            raise InvalidRequest(f"Image size {value[:20]!r} must be 1..{MAX_VIEWPORT}")
    if sizes == [None, None]:
        raise InvalidRequest("An image size needs a width or a height")
    return sizes[0], sizes[1]


def parse_quality(value: str) -> int:
    """``quality=1..100`` (PS3.18 8.3.5)."""
    if not value.isdigit() or not 1 <= int(value) <= 100:
        raise InvalidRequest(f"quality={value[:20]!r} must be an integer 1..100")
    return int(value)


def has_pixels(ds: Dataset) -> bool:
    return "PixelData" in ds or "FloatPixelData" in ds or "DoubleFloatPixelData" in ds


def frame_count(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def decode_frame(ds: Dataset, frame: int, **options: Any) -> Any:
    """Frame ``frame`` (1-based) as a numpy array; 422 when it cannot be decoded here (no
    decoder for the syntax, or damaged pixel data)."""
    try:
        return pixel_array(ds, index=frame - 1, **options)
    except DECODE_ERRORS as exc:
        syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID", "?")
        raise Unprocessable(f"The pixel data ({syntax}) cannot be decoded here: {exc}") from exc


def render(ds: Dataset, frame: int, rendering: Rendering) -> bytes:
    """Frame ``frame`` (1-based) of ``ds`` rendered as ``rendering`` asks."""
    if not has_pixels(ds):
        raise NotAcceptable(
            f"Instance {ds.get('SOPInstanceUID', '')} has no pixel data (SOP Class "
            f"{ds.get('SOPClassUID', '?')}): it cannot be rendered as {rendering.media_type}"
        )
    if frame > frame_count(ds):
        raise NotFound(f"Instance has {frame_count(ds)} frame(s); frame {frame} does not exist")
    pixels = decode_frame(ds, frame)
    if str(ds.get("PhotometricInterpretation")) == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
    if pixels.ndim == 3:  # RGB (pydicom converts YBR to RGB); the window is for grayscale
        image = _fit(Image.fromarray(_colour_8bit(pixels)), rendering.viewport)
    else:
        image = _grey(ds, pixels, frame, rendering)
    out = io.BytesIO()
    if rendering.media_type == PNG:
        image.save(out, "PNG", compress_level=3)
    else:
        image.save(out, "JPEG", quality=rendering.quality)
    return out.getvalue()


def _colour_8bit(pixels: Any) -> Any:
    colour = pixels.astype(np.float32)
    top = float(colour.max()) if colour.size else 0.0
    scale = 255.0 / top if top > 255 else 1.0
    return np.rint(np.clip(colour * scale, 0, 255)).astype(np.uint8)


def _grey(ds: Dataset, pixels: Any, frame: int, rendering: Rendering) -> Image.Image:
    """Modality LUT, scaling to the viewport (on the values: fewer pixels to window), VOI
    window or full range, MONOCHROME1 inversion."""
    values = apply_modality_lut(pixels, ds).astype(np.float32, copy=False)
    window = rendering.window or _file_window(ds, frame)
    if window is None and "VOILUTSequence" in ds:  # a LUT indexes whole values
        integral = np.array_equal(values, np.rint(values))
        values = apply_voi_lut(values.astype(np.int32) if integral else values, ds)
        values = values.astype(np.float32, copy=False)
    values = np.asarray(_fit(Image.fromarray(values), rendering.viewport))
    if window is not None:
        out = _voi(values, window)
    else:
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        out = (values - low) / (high - low) if high > low else np.zeros_like(values)
    if str(ds.get("PhotometricInterpretation")) == "MONOCHROME1":
        out = 1.0 - out
    return Image.fromarray(np.rint(out * 255.0).astype(np.uint8))


def _voi(x: Any, window: Window) -> Any:
    """PS3.3 C.11.2.1.2: the window as a function to 0..1."""
    c, w = window.center, window.width
    if window.function == "sigmoid":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - c) / max(w, 1e-9)))
    if window.function == "linear-exact":
        return np.clip((x - c) / max(w, 1e-9) + 0.5, 0.0, 1.0)
    return np.clip((x - (c - 0.5)) / max(w - 1.0, 1e-9) + 0.5, 0.0, 1.0)


def _file_window(ds: Dataset, frame: int) -> Window | None:
    """The first window of the file: top level, else the frame's or shared functional group's
    Frame VOI LUT (PS3.3 C.7.6.16.2.10)."""
    sources: list[Dataset] = [ds]
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame - 1),
                          ("SharedFunctionalGroupsSequence", 0)):  # fmt: skip
        items = ds.get(groups) or []
        if index < len(items) and items[index].get("FrameVOILUTSequence"):
            sources.append(items[index].FrameVOILUTSequence[0])
    for source in sources:
        center, width = source.get("WindowCenter"), source.get("WindowWidth")
        if center is None or width is None or center == "" or width == "":
            continue
        first_c = center[0] if _multi(center) else center
        first_w = width[0] if _multi(width) else width
        function = _FILE_FUNCTIONS.get(str(source.get("VOILUTFunction", "LINEAR")), "linear")
        try:
            return window_of(str(first_c), str(first_w), function)
        except InvalidRequest:
            continue
    return None


def _multi(value: Any) -> bool:
    return not isinstance(value, str) and hasattr(value, "__getitem__")


def _fit(image: Image.Image, viewport: tuple[int | None, int | None] | None) -> Image.Image:
    """Scale to fit ``viewport`` (width, height), keeping the aspect ratio."""
    if viewport is None:
        return image
    width, height = image.size
    scales = [v / s for v, s in zip(viewport, (width, height), strict=True) if v is not None]
    scale = min(scales)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == image.size:
        return image
    resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BILINEAR
    return image.resize(size, resample, reducing_gap=2.0)
