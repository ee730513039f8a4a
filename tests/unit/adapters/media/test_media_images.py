"""Image checks, EXIF facts, metadata-free views, JPEG stream surgery, video posters, PDF views."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import av
import numpy as np
import pillow_heif
import pypdfium2 as pdfium
import pytest
from PIL import Image

from adapters.media._images import (
    ImageFacts,
    inspect,
    is_baseline_jpeg,
    pdf_page_count,
    pdf_views,
    render_views,
    strip_jpeg_metadata,
    video_facts,
    video_poster,
)
from hub.errors import Unprocessable

pillow_heif.register_heif_opener()

LIMIT = 100_000_000


def phone_exif(*, offset: str | None = "+02:00", original: str = "2024:05:06 07:08:09") -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "Apple"
    exif[0x0110] = "iPhone 15 Pro\x00"
    exif[0x0112] = 6  # stored sideways: turn 90° clockwise to view
    exif[0x0132] = "2024:06:01 10:00:00"
    sub: dict[int, object] = {0x9003: original}
    if offset:
        sub[0x9011] = offset
    exif[0x8769] = sub
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 0.0)}
    return exif.tobytes()


def gradient(size: tuple[int, int] = (80, 40)) -> Image.Image:
    width, height = size
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[..., 0] = np.arange(width, dtype=np.uint8)[None, :] * 3
    pixels[..., 1] = np.arange(height, dtype=np.uint8)[:, None] * 5
    return Image.fromarray(pixels)


def save(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def encode(img: Image.Image, fmt: str = "JPEG", **options: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def phone_jpeg(**exif: str | None) -> bytes:
    return encode(
        gradient(),
        exif=phone_exif(**exif),  # type: ignore[arg-type]
        comment=b"taken at home",
        icc_profile=b"\x00" * 128,
        xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><exif:GPSLatitude>52,31N</exif:GPSLatitude></x:xmpmeta>',
    )


def test_phone_jpeg_facts(tmp_path: Path) -> None:
    facts = inspect(save(tmp_path, "a.jpg", phone_jpeg()), max_pixels=LIMIT)
    assert facts == ImageFacts(
        width=80,
        height=40,
        captured="2024-05-06T07:08:09+02:00",
        make="Apple",
        model="iPhone 15 Pro",
        had_gps=True,
    )


def test_capture_time_without_offset_keeps_only_the_date(tmp_path: Path) -> None:
    facts = inspect(save(tmp_path, "a.jpg", phone_jpeg(offset=None)), max_pixels=LIMIT)
    assert facts.captured == "2024-05-06"


def test_garbage_capture_time_falls_back_to_datetime(tmp_path: Path) -> None:
    facts = inspect(
        save(tmp_path, "a.jpg", phone_jpeg(original="0000:00:00 00:00:00")), max_pixels=LIMIT
    )
    assert facts.captured == "2024-06-01"


def test_image_without_exif(tmp_path: Path) -> None:
    facts = inspect(save(tmp_path, "a.png", encode(gradient(), "PNG")), max_pixels=LIMIT)
    assert facts == ImageFacts(80, 40, None, None, None, False)


def assert_clean_jpeg(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    assert img.format == "JPEG" and img.mode == "RGB"
    assert not img.getexif()
    for marker in (
        b"Exif",
        b"http://ns.adobe.com/xap",
        b"xmpmeta",
        b"ICC_PROFILE",
        b"GPS",
        b"taken at home",
    ):
        assert marker not in data
    assert b"\xff\xe1" not in data.split(b"\xff\xda")[0]  # no APP1 before the scan
    return img


def test_views_are_upright_and_metadata_free(tmp_path: Path) -> None:
    thumb, preview = render_views(save(tmp_path, "a.jpg", phone_jpeg()), max_pixels=LIMIT)
    assert assert_clean_jpeg(preview).size == (40, 80)  # orientation 6 applied, not upscaled
    assert assert_clean_jpeg(thumb).size == (40, 80)


def test_views_are_bounded(tmp_path: Path) -> None:
    path = save(tmp_path, "big.png", encode(gradient((900, 300)), "PNG"))
    thumb, preview = render_views(path, max_pixels=LIMIT, thumbnail=64, preview=450)
    assert Image.open(io.BytesIO(thumb)).size == (64, 21)
    assert Image.open(io.BytesIO(preview)).size == (450, 150)


@pytest.mark.parametrize(
    ("img", "fmt"),
    [
        (Image.new("RGBA", (30, 20), (255, 0, 0, 0)), "PNG"),
        (Image.new("LA", (30, 20), (10, 128)), "PNG"),
        (Image.new("RGB", (30, 20), (255, 0, 0)).convert("P"), "PNG"),
        (Image.new("1", (30, 20), 1), "PNG"),
        (Image.new("CMYK", (30, 20), (0, 255, 255, 0)), "JPEG"),
        (Image.new("CMYK", (30, 20), (0, 255, 255, 0)), "TIFF"),
        (Image.new("RGB", (30, 20), (0, 0, 255)), "HEIF"),
    ],
)
def test_views_convert_modes_to_rgb(tmp_path: Path, img: Image.Image, fmt: str) -> None:
    thumb, _ = render_views(save(tmp_path, f"a.{fmt.lower()}", encode(img, fmt)), max_pixels=LIMIT)
    assert assert_clean_jpeg(thumb).size == (30, 20)


def test_transparent_pixels_become_white(tmp_path: Path) -> None:
    path = save(tmp_path, "a.png", encode(Image.new("RGBA", (30, 20), (255, 0, 0, 0)), "PNG"))
    thumb, _ = render_views(path, max_pixels=LIMIT)
    assert min(Image.open(io.BytesIO(thumb)).getpixel((15, 10))) > 245  # type: ignore[arg-type]


def test_16_bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    pixels = np.full((20, 30), 1000, dtype=np.uint16)
    pixels[:, 15:] = 4000
    path = save(tmp_path, "a.png", encode(Image.fromarray(pixels), "PNG"))
    with Image.open(path) as stored:
        assert stored.mode.startswith("I")
    _, preview = render_views(path, max_pixels=LIMIT)
    decoded = np.asarray(Image.open(io.BytesIO(preview)).convert("L"))
    assert decoded[10, 25] > 240 and 50 < decoded[10, 3] < 80


def test_heic_is_read(tmp_path: Path) -> None:
    path = save(tmp_path, "a.heic", encode(gradient(), "HEIF", exif=phone_exif()))
    facts = inspect(path, max_pixels=LIMIT)
    # pillow-heif stores the EXIF orientation as HEIF transforms, which libheif applies on read
    assert (facts.width, facts.height, facts.make, facts.had_gps) == (40, 80, "Apple", True)
    thumb, _ = render_views(path, max_pixels=LIMIT)
    assert assert_clean_jpeg(thumb).size == (40, 80)


def test_multi_frame_tiff_uses_first_frame(tmp_path: Path) -> None:
    out = io.BytesIO()
    gradient((50, 40)).save(out, "TIFF", save_all=True, append_images=[gradient((20, 10))])
    path = save(tmp_path, "a.tif", out.getvalue())
    assert inspect(path, max_pixels=LIMIT).width == 50
    assert Image.open(io.BytesIO(render_views(path, max_pixels=LIMIT)[1])).size == (50, 40)


def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)  # far too little data: decoding would fail, not explode
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bomb_refused_from_header(tmp_path: Path) -> None:
    path = save(tmp_path, "bomb.png", png_header_only(12000, 12000))
    with pytest.raises(Unprocessable, match="decompression bomb: 12000x12000"):
        inspect(path, max_pixels=1_000_000)
    with pytest.raises(Unprocessable, match="decompression bomb"):
        render_views(path, max_pixels=1_000_000)


def test_pillow_own_bomb_error_becomes_422(tmp_path: Path) -> None:
    path = save(tmp_path, "bomb.png", png_header_only(30000, 30000))  # > 2 x Pillow's limit
    with pytest.raises(Unprocessable, match="decompression bomb"):
        inspect(path, max_pixels=10**10)


def test_image_between_pillow_warning_and_our_limit_is_not_refused_early(tmp_path: Path) -> None:
    path = save(tmp_path, "big.png", png_header_only(10000, 9500))  # 95 Mpx: Pillow warns
    with pytest.raises(Unprocessable, match="corrupt image"):  # reached the decoder
        inspect(path, max_pixels=LIMIT)


@pytest.mark.parametrize("cut", [200, 600])
def test_truncated_jpeg_is_422(tmp_path: Path, cut: int) -> None:
    data = encode(gradient((200, 200)), quality=95)
    path = save(tmp_path, "cut.jpg", data[: len(data) - cut])
    with pytest.raises(Unprocessable) as caught:
        inspect(path, max_pixels=LIMIT)
    assert caught.value.status == 422


def test_not_an_image_is_422(tmp_path: Path) -> None:
    with pytest.raises(Unprocessable, match="corrupt or unreadable"):
        inspect(save(tmp_path, "x.jpg", b"\xff\xd8\xff\xe0 nonsense"), max_pixels=LIMIT)


# --- JPEG streams --------------------------------------------------------------------------------


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.mark.parametrize("progressive", [False, True])
def test_strip_jpeg_metadata_is_lossless(progressive: bool) -> None:
    original = encode(
        gradient(),
        exif=phone_exif(),
        comment=b"taken at home",
        icc_profile=b"\x00" * 128,
        progressive=progressive,
    )
    stripped = strip_jpeg_metadata(original + b"trailing secondary image")
    assert np.array_equal(pixels(stripped), pixels(original))
    assert not Image.open(io.BytesIO(stripped)).getexif()
    assert (
        b"Exif" not in stripped
        and b"ICC_PROFILE" not in stripped
        and b"taken at home" not in stripped
    )
    assert stripped.startswith(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")
    assert stripped.endswith(b"\xff\xd9")
    assert len(stripped) < len(original)


def test_strip_drops_fill_bytes() -> None:
    original = encode(gradient())
    assert strip_jpeg_metadata(original[:2] + b"\xff\xff" + original[2:]) == original


def test_strip_keeps_adobe_segment() -> None:
    original = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)))
    stripped = strip_jpeg_metadata(original)
    assert b"Adobe" in stripped
    assert np.array_equal(pixels(stripped), pixels(original))


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8\xff\xe1\x00",  # truncated length
        b"\xff\xd8\xff\xe1\x00\x40Exif",  # segment longer than the data
        b"\xff\xd8\x00\x00",  # no marker where one must be
        b"\xff\xd8\xff\xd9",  # EOI without any frame is fine structurally; SOS absent below
    ],
)
def test_malformed_jpeg_structure_is_422(data: bytes) -> None:
    if data.endswith(b"\xff\xd9"):
        with pytest.raises(Unprocessable):
            is_baseline_jpeg(data)
        return
    with pytest.raises(Unprocessable, match="malformed JPEG"):
        strip_jpeg_metadata(data)


def test_jpeg_without_eoi_is_422() -> None:
    data = encode(gradient())
    with pytest.raises(Unprocessable, match="no EOI"):
        strip_jpeg_metadata(data[:-2])


@pytest.mark.parametrize(
    ("img", "options", "expected"),
    [
        (gradient(), {"subsampling": 2}, (True, 3, "YBR_FULL_422")),
        (gradient(), {"subsampling": 1}, (True, 3, "YBR_FULL_422")),
        (gradient(), {"subsampling": 0}, (True, 3, "YBR_FULL")),
        (gradient().convert("L"), {}, (True, 1, "MONOCHROME2")),
        (gradient(), {"keep_rgb": True}, (True, 3, "RGB")),
        (gradient(), {"progressive": True}, (False, 3, "YBR_FULL_422")),
        (Image.new("CMYK", (16, 16)), {}, (False, 4, "")),
    ],
)
def test_is_baseline_jpeg(
    img: Image.Image, options: dict[str, object], expected: tuple[bool, int, str]
) -> None:
    assert is_baseline_jpeg(encode(img, **options)) == expected


# --- video ---------------------------------------------------------------------------------------


def make_video(
    path: Path, seconds: float, size: tuple[int, int] = (96, 54), fmt: str = "mp4"
) -> str:
    rate = 10
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        for i in range(int(seconds * rate)):
            frame = av.VideoFrame.from_image(Image.new("RGB", size, (i * 7 % 256, 90, 30)))
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return str(path)


@pytest.mark.parametrize("seconds", [1.0, 3.0])
def test_video_poster(tmp_path: Path, seconds: float) -> None:
    path = make_video(tmp_path / "clip.mp4", seconds)
    views = video_poster(path, thumbnail=48)
    assert views is not None
    thumb, preview = views
    assert assert_clean_jpeg(preview).size == (96, 54)
    assert assert_clean_jpeg(thumb).size == (48, 27)


def test_video_poster_applies_display_matrix(tmp_path: Path) -> None:
    # A phone portrait clip: landscape frames and a tkhd matrix turning them 90° clockwise
    # (ISO/IEC 14496-12 8.3.2; a=0 b=1 c=-1 d=0). The left half of the frame is red.
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 96, 54, "yuv420p"
        picture = Image.new("RGB", (96, 54), (0, 0, 255))
        picture.paste((255, 0, 0), (0, 0, 48, 54))
        for _ in range(3):
            container.mux(stream.encode(av.VideoFrame.from_image(picture)))
        container.mux(stream.encode())
    data = bytearray(path.read_bytes())
    matrix = data.find(b"tkhd") + 4 + 4 + 4 * 5 + 8 + 8  # version 0 tkhd: matrix after volume
    assert struct.unpack(">9i", data[matrix : matrix + 36])[0] == 0x10000
    data[matrix : matrix + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))
    views = video_poster(str(path))
    assert views is not None
    poster = Image.open(io.BytesIO(views[1])).convert("RGB")
    assert poster.size == (54, 96)
    top, bottom = poster.getpixel((27, 10)), poster.getpixel((27, 86))
    assert top[0] > 200 > top[2] and bottom[2] > 200 > bottom[0]  # type: ignore[index]


def test_video_facts(tmp_path: Path) -> None:
    duration, width, height, codec = video_facts(make_video(tmp_path / "clip.mov", 2.0, fmt="mov"))
    assert duration is not None and 1.8 <= duration <= 2.3
    assert (width, height, codec) == (96, 54, "h264")


def test_audio_has_no_poster(tmp_path: Path) -> None:
    import wave

    path = tmp_path / "a.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 8000)
    assert video_poster(str(path)) is None
    duration, width, height, codec = video_facts(str(path))
    assert duration == pytest.approx(1.0, abs=0.05) and (width, height, codec) == (
        None,
        None,
        "pcm_s16le",
    )


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_video_is_422(tmp_path: Path, damage: str) -> None:
    data = Path(make_video(tmp_path / "clip.mp4", 1.0)).read_bytes()
    broken = data[: len(data) // 2] if damage == "truncated" else data[:32] + bytes(range(256)) * 8
    path = save(tmp_path, "broken.mp4", broken)
    with pytest.raises(Unprocessable, match="corrupt"):
        video_poster(path)
    with pytest.raises(Unprocessable, match="corrupt"):
        video_facts(path)


# --- PDF -----------------------------------------------------------------------------------------


def make_pdf(path: Path, pages: int) -> str:
    document = pdfium.PdfDocument.new()
    for _ in range(pages):
        document.new_page(200, 300)
    document.save(str(path))
    document.close()
    return str(path)


def test_pdf_views_and_page_count(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "a.pdf", 2)
    assert pdf_page_count(path) == 2
    thumb, preview = pdf_views(path)
    assert max(assert_clean_jpeg(preview).size) == 1600
    assert max(assert_clean_jpeg(thumb).size) == 256


@pytest.mark.parametrize("data", [b"%PDF-1.7\n garbage", b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n"])
def test_corrupt_pdf_is_422(tmp_path: Path, data: bytes) -> None:
    path = save(tmp_path, "bad.pdf", data)
    with pytest.raises(Unprocessable):
        pdf_views(path)
    with pytest.raises(Unprocessable):
        pdf_page_count(path)
