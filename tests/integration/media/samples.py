"""Sample captures made in the tests (no binary fixtures): a phone photo with EXIF and GPS, a
PNG, an MP4 clip, a PDF, a WAV, and the bad inputs built from them."""

from __future__ import annotations

import io
import wave
import zipfile

import av
import numpy as np
import pypdfium2 as pdfium
from PIL import Image

GPS_LATITUDE = (48.0, 51.0, 24.0)


def gradient(width: int = 640, height: int = 480) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)
    y = np.linspace(0, 255, height, dtype=np.uint8)
    rgb = np.stack(np.broadcast_arrays(x[None, :], y[:, None], 128), axis=-1).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def phone_jpeg(width: int = 640, height: int = 480, orientation: int = 1) -> bytes:
    """A JPEG as a phone writes it: camera, capture time with its offset, GPS position."""
    exif = Image.Exif()
    exif[0x010F] = "Apple"
    exif[0x0110] = "iPhone 15"
    exif[0x0112] = orientation
    exif_ifd = exif.get_ifd(0x8769)
    exif_ifd[0x9003] = "2026:11:27 16:50:00"
    exif_ifd[0x9011] = "+01:00"
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = GPS_LATITUDE
    gps[3] = "E"
    gps[4] = (2.0, 21.0, 7.0)
    out = io.BytesIO()
    gradient(width, height).save(out, "JPEG", quality=90, exif=exif)
    return out.getvalue()


def png(width: int = 320, height: int = 240) -> bytes:
    out = io.BytesIO()
    gradient(width, height).save(out, "PNG")
    return out.getvalue()


def png_bomb(side: int = 30000) -> bytes:
    """A small PNG whose header declares ``side`` x ``side`` pixels (1-bit, compresses to little)."""
    out = io.BytesIO()
    Image.new("1", (side, side)).save(out, "PNG", optimize=True)
    return out.getvalue()


def mp4(
    frames: int = 30, size: tuple[int, int] = (320, 240), container_format: str = "mp4",
    codec: str = "mpeg4",
) -> bytes:  # fmt: skip
    """A short clip: MPEG-4 in MP4 by default, or ``mov``/``webm`` with a codec they carry."""
    out = io.BytesIO()
    with av.open(out, "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=15)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            image = gradient(*size).rotate(i * 3)
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def pdf(pages: int = 2) -> bytes:
    document = pdfium.PdfDocument.new()
    for _ in range(pages):
        document.new_page(595, 842)
    out = io.BytesIO()
    document.save(out)
    document.close()
    return out.getvalue()


def wav(seconds: float = 0.5) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x01" * int(8000 * seconds))
    return out.getvalue()


def zip_appended(data: bytes) -> bytes:
    """``data`` with a ZIP archive after it: a polyglot (an image that is also an archive)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("payload.html", "<script>alert(1)</script>")
    return data + out.getvalue()


def tiff() -> bytes:
    out = io.BytesIO()
    gradient(400, 300).save(out, "TIFF", compression="tiff_deflate")
    return out.getvalue()


def heic() -> bytes:
    """An HEIC photo, as iPhones take them (pillow-heif's encoder)."""
    from pillow_heif import register_heif_opener

    register_heif_opener()
    out = io.BytesIO()
    gradient(400, 300).save(out, "HEIF", quality=80)
    return out.getvalue()


def padded_mp4_chunks(megabytes: int, chunk: int = 1 << 20) -> tuple[int, object]:
    """A short clip followed by an ISO-BMFF ``free`` box (ISO/IEC 14496-12 8.1.2) up to
    ``megabytes``, as (size, generator of chunks): a big video made on the fly, never whole."""
    import struct

    clip = mp4(frames=10)
    padding = megabytes * (1 << 20) - len(clip)
    header = clip + struct.pack(">I", 1) + b"free" + struct.pack(">Q", padding)

    def chunks() -> object:
        yield header
        left = padding - 16
        zeros = bytes(chunk)
        while left > 0:
            yield zeros[: min(left, chunk)]
            left -= chunk

    return len(clip) + padding, chunks()


def mov() -> bytes:
    return mp4(container_format="mov", codec="h264")


def webm() -> bytes:
    return mp4(container_format="webm", codec="libvpx")
