"""Type detection from magic numbers, polyglot defence and declared-type checks."""

from __future__ import annotations

import io
import struct
import wave
import zipfile
from pathlib import Path

import av
import pillow_heif
import pypdfium2 as pdfium
import pytest
from PIL import Image

from adapters.media._sniff import HEAD, TAIL, Detected, check_declared, detect
from hub.errors import Unprocessable, UnsupportedMediaType

pillow_heif.register_heif_opener()


def sniff(data: bytes) -> Detected:
    return detect(data[:HEAD], data[-TAIL:], len(data))


def image_bytes(
    fmt: str, mode: str = "RGB", size: tuple[int, int] = (32, 24), **save: object
) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, 128).save(out, fmt, **save)
    return out.getvalue()


def video_bytes(tmp_path: Path, fmt: str, codec: str, frames: int = 5) -> bytes:
    path = tmp_path / f"clip.{fmt}"
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_image(Image.new("RGB", (64, 48), (i * 40, 90, 30)))
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path.read_bytes()


def pdf_bytes(pages: int = 1) -> bytes:
    document = pdfium.PdfDocument.new()
    for _ in range(pages):
        document.new_page(200, 300)
    out = io.BytesIO()
    document.save(out)
    document.close()
    return out.getvalue()


def wav_bytes() -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 800)
    return out.getvalue()


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return struct.pack(">I", 8 + len(body)) + b"ftyp" + body + b"\x00\x00\x00\x08free" + bytes(64)


MPEG_FRAME = b"\xff\xfb\x90\x64" + bytes(413)


@pytest.mark.parametrize(
    ("data", "mime", "kind", "extension"),
    [
        (image_bytes("JPEG"), "image/jpeg", "image", ".jpg"),
        (image_bytes("PNG"), "image/png", "image", ".png"),
        (image_bytes("TIFF"), "image/tiff", "image", ".tif"),
        (image_bytes("TIFF", compression="tiff_deflate"), "image/tiff", "image", ".tif"),
        (image_bytes("HEIF"), "image/heic", "image", ".heic"),
        (ftyp(b"mif1", b"mif1", b"miaf"), "image/heif", "image", ".heif"),
        (ftyp(b"mif1", b"mif1", b"heic"), "image/heic", "image", ".heic"),
        (ftyp(b"qt  ", b"qt  "), "video/quicktime", "video", ".mov"),
        (ftyp(b"M4A ", b"M4A ", b"mp42", b"isom"), "audio/mp4", "audio", ".m4a"),
        (ftyp(b"M4V ", b"M4V ", b"mp42"), "video/mp4", "video", ".mp4"),
        (ftyp(b"mp42", b"isom"), "video/mp4", "video", ".mp4"),
        (
            b"\x00\x00\x00\x08wide\x00\x00\x10\x00mdat" + bytes(64),
            "video/quicktime",
            "video",
            ".mov",
        ),
        (b"\x00\x00\x00\x6cmoov" + bytes(100), "video/quicktime", "video", ".mov"),
        (pdf_bytes(), "application/pdf", "document", ".pdf"),
        (wav_bytes(), "audio/wav", "audio", ".wav"),
        (b"ID3\x03\x00\x00\x00\x00\x00\x00" + MPEG_FRAME, "audio/mpeg", "audio", ".mp3"),
        (MPEG_FRAME * 3, "audio/mpeg", "audio", ".mp3"),
        (b"OggS\x00\x02" + bytes(60), "audio/ogg", "audio", ".ogg"),
        (b"fLaC\x00\x00\x00\x22" + bytes(60), "audio/flac", "audio", ".flac"),
    ],
)
def test_detects_type_from_bytes(data: bytes, mime: str, kind: str, extension: str) -> None:
    assert sniff(data) == Detected(mime, kind, extension)  # type: ignore[arg-type]


def test_detects_pyav_encoded_video(tmp_path: Path) -> None:
    assert sniff(video_bytes(tmp_path, "mp4", "libx264")).mime == "video/mp4"
    assert sniff(video_bytes(tmp_path, "mov", "libx264")).mime == "video/quicktime"
    assert sniff(video_bytes(tmp_path, "webm", "libvpx")).mime == "video/webm"


def test_matroska_is_not_webm(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedMediaType):
        sniff(video_bytes(tmp_path, "matroska", "libx264"))


@pytest.mark.parametrize(
    "data",
    [
        b"GIF89a" + bytes(40),
        b"PK\x03\x04\x14\x00" + bytes(40),  # a ZIP (docx, ...) on its own
        b"<html><body>hi</body></html>",
        b"  %PDF-1.7\n" + bytes(40),  # PDF only at offset 0
        b"\xff\xf1\x50\x80" + bytes(40),  # AAC ADTS: layer bits 00 are not MPEG audio
        ftyp(b"avif", b"avif", b"mif1", b"miaf"),
        ftyp(b"3gp4", b"3gp4"),
        b"RIFF\x00\x00\x00\x00AVI " + bytes(40),
        b"\x00" * 100,
    ],
)
def test_unknown_bytes_are_415(data: bytes) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        sniff(data)
    assert caught.value.status == 415
    assert "JPEG" in caught.value.message and "PDF" in caught.value.message


def test_empty_upload_is_415() -> None:
    with pytest.raises(UnsupportedMediaType):
        detect(b"", b"", 0)


def zip_bytes() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("evil.jsp", "<% out.println(1); %>")
    return out.getvalue()


def jpeg_with_comment(comment: bytes) -> bytes:
    return image_bytes("JPEG", comment=comment)


@pytest.mark.parametrize(
    ("data", "other"),
    [
        (image_bytes("JPEG") + zip_bytes(), "ZIP"),
        (image_bytes("JPEG", size=(900, 900)) + b"\x00" * 70000 + zip_bytes(), "ZIP"),
        (jpeg_with_comment(b"<script>alert(1)</script>"), "<script"),
        (jpeg_with_comment(b"<SVG onload=alert(1)>"), "<SVG "),
        (jpeg_with_comment(b"%PDF-1.4 1 0 obj"), "PDF"),
        (image_bytes("JPEG") + b"<?php system($_GET['c']); ?>", "<?php"),
        (image_bytes("JPEG") + b"A" * 17, "after the JPEG end-of-image"),
        (image_bytes("PNG") + b"hello", "after the PNG IEND"),
        (image_bytes("PNG") + zip_bytes(), "ZIP"),
        (image_bytes("HEIF") + b"<html>", "<html"),
        (wav_bytes() + b"<iframe src=x>", "<iframe"),
        (pdf_bytes() + zip_bytes(), "ZIP"),
        (b"%PDF-1.4\n<html><script>x</script>\n" + pdf_bytes()[9:], "<html"),
    ],
)
def test_polyglots_are_422(data: bytes, other: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        sniff(data)
    assert caught.value.status == 422
    assert caught.value.message.startswith("polyglot:")
    assert other in caught.value.message


def test_jpeg_trailer_within_slack_or_padding_passes() -> None:
    assert sniff(image_bytes("JPEG") + b"0123456789").mime == "image/jpeg"
    assert sniff(image_bytes("JPEG") + b"\x00" * 4096).mime == "image/jpeg"
    assert sniff(image_bytes("PNG") + b"\r\n").mime == "image/png"


def test_truncated_jpeg_without_eoi_is_422() -> None:
    data = image_bytes("JPEG", size=(600, 600))
    with pytest.raises(Unprocessable, match="no JPEG end-of-image"):
        sniff(data[: len(data) - 200] + b"\x01" * 70000)


def test_pdf_may_contain_script_keywords() -> None:
    data = pdf_bytes()
    body = data.replace(b"%%EOF", b"% /S /JavaScript /JS (app.alert('javascript:'))\n%%EOF")
    assert sniff(body).mime == "application/pdf"


def test_implausible_zip_signature_in_media_passes() -> None:
    # "PK\x03\x04" by chance inside compressed data, with a version byte no ZIP writer uses.
    data = ftyp(b"mp42", b"isom") + b"PK\x03\x04\xc8\x07\x00\x00\x4e\x11" + bytes(100)
    assert sniff(data).mime == "video/mp4"
    with pytest.raises(Unprocessable):
        sniff(ftyp(b"mp42", b"isom") + b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(100))


def test_large_file_only_inspected_at_both_ends() -> None:
    middle = b"<script>" + bytes(200_000)
    data = image_bytes("JPEG")
    data = data[:-2] + bytes(HEAD) + middle + bytes(TAIL) + data[-2:]
    assert sniff(data).mime == "image/jpeg"


JPEG = Detected("image/jpeg", "image", ".jpg")


@pytest.mark.parametrize(
    ("declared", "detected"),
    [
        (None, JPEG),
        ("", JPEG),
        ("application/octet-stream", JPEG),
        ("*/*", JPEG),
        ("image/jpeg", JPEG),
        ("IMAGE/JPEG; name=photo.jpg", JPEG),
        ("image/jpg", JPEG),
        ("image/pjpeg", JPEG),
        ("audio/x-wav", Detected("audio/wav", "audio", ".wav")),
        ("audio/wave", Detected("audio/wav", "audio", ".wav")),
        ("audio/mp3", Detected("audio/mpeg", "audio", ".mp3")),
        ("audio/x-m4a", Detected("audio/mp4", "audio", ".m4a")),
        ("audio/m4a", Detected("audio/mp4", "audio", ".m4a")),
        ("video/mp4", Detected("audio/mp4", "audio", ".m4a")),
        ("image/heif", Detected("image/heic", "image", ".heic")),
        ("image/heic", Detected("image/heif", "image", ".heif")),
        ("application/x-pdf", Detected("application/pdf", "document", ".pdf")),
        ("application/pdf; charset=binary", Detected("application/pdf", "document", ".pdf")),
    ],
)
def test_declared_type_passes(declared: str | None, detected: Detected) -> None:
    check_declared(declared, detected)


@pytest.mark.parametrize(
    ("declared", "detected"),
    [
        ("image/png", JPEG),
        ("text/html", JPEG),
        ("application/pdf", JPEG),
        ("audio/mp4", Detected("video/mp4", "video", ".mp4")),
        ("video/quicktime", Detected("video/mp4", "video", ".mp4")),
    ],
)
def test_declared_mismatch_is_422(declared: str, detected: Detected) -> None:
    with pytest.raises(Unprocessable) as caught:
        check_declared(declared, detected)
    assert caught.value.status == 422
    assert caught.value.message == f"declared {declared} but the bytes are {detected.mime}"
