"""The WADO negotiation and rendering rules of ``adapters.dicom.web`` without a server: Accept
parsing and transfer syntax choice (DICOM PS3.18 8.7), frame media types (8.7.3), UID and
frame-list checks, VOI windows (PS3.3 C.11.2.1.2) and viewport fitting (PS3.18 8.3.5)."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import orjson
import pytest
from PIL import Image

from adapters.dicom._transcode import EXPLICIT_LE, IMPLICIT_LE
from adapters.dicom.web._media import (
    check_uid,
    multipart_body,
    parse_accept,
    parse_frames,
)
from adapters.dicom.web._render import Window, _fit, _voi, parse_viewport, parse_window
from adapters.dicom.web._retrieve import (
    CHUNK,
    MetadataCache,
    dicom_accept,
    frame_choice,
    stored_length,
    stream_instances,
    target_syntaxes,
)
from hub.errors import InvalidRequest, NotAcceptable, OutOfResources
from hub.ports import DicomInstanceRecord
from tests.integration.dicom.dicom_support import encode, make_ct

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
J2K = "1.2.840.10008.1.2.4.90"


def record(syntax: str) -> DicomInstanceRecord:
    return DicomInstanceRecord("1.2.3", "1.2", "1.2.1", "1.2.840.10008.5.1.4.1.1.2", syntax,
                               "key", "sha", 10, {})  # fmt: skip


def test_accept_parsing_orders_by_quality_and_drops_q0() -> None:
    ranges = parse_accept(
        'multipart/related; type="application/dicom"; transfer-syntax=*; q=0.5, '
        "multipart/related; type=application/dicom; transfer-syntax=1.2.840.10008.1.2.1, "
        "image/png; q=0"
    )
    assert [r.transfer_syntax for r in ranges] == [EXPLICIT_LE, "*"]
    assert ranges[0].part_type == "application/dicom"
    assert [r.type for r in parse_accept(None)] == ["*/*"]


@pytest.mark.parametrize(
    ("accept", "stored", "served"),
    [
        ('multipart/related; type="application/dicom"; transfer-syntax=*', J2K, J2K),
        ("*/*", JPEG_BASELINE, JPEG_BASELINE),
        ('multipart/related; type="application/dicom"', IMPLICIT_LE, EXPLICIT_LE),
        ('multipart/related; type="application/dicom"', JPEG_BASELINE, EXPLICIT_LE),
        (f'multipart/related; type="application/dicom"; transfer-syntax={IMPLICIT_LE}',
         EXPLICIT_LE, IMPLICIT_LE),
        (f'multipart/related; type="application/dicom"; transfer-syntax={J2K}, '
         f'multipart/related; type="application/dicom"; transfer-syntax=*; q=0.1', EXPLICIT_LE,
         EXPLICIT_LE),
    ],
)  # fmt: skip
def test_transfer_syntax_negotiation(accept: str, stored: str, served: str) -> None:
    multipart, wanted = dicom_accept(parse_accept(accept))
    assert multipart
    assert target_syntaxes([record(stored)], wanted) == [served]


def test_never_compresses() -> None:
    _, wanted = dicom_accept(parse_accept(f'multipart/related; type="application/dicom"; '
                                          f"transfer-syntax={J2K}"))  # fmt: skip
    with pytest.raises(NotAcceptable, match="does not compress"):
        target_syntaxes([record(EXPLICIT_LE)], wanted)
    with pytest.raises(NotAcceptable, match="application/dicom"):
        dicom_accept(parse_accept("application/json"))


def test_frame_media_types() -> None:
    jpeg = frame_choice(parse_accept('multipart/related; type="image/jpeg"'), JPEG_BASELINE)
    assert jpeg.content_type == f"image/jpeg; transfer-syntax={JPEG_BASELINE}"
    octets = 'multipart/related; type="application/octet-stream"'
    assert frame_choice(parse_accept(octets), JPEG_BASELINE).decode
    stored = frame_choice(parse_accept(octets + "; transfer-syntax=*"), JPEG_BASELINE)
    assert not stored.decode and stored.content_type.endswith(JPEG_BASELINE)
    native = frame_choice(parse_accept(None), IMPLICIT_LE)
    assert native.content_type == f"application/octet-stream; transfer-syntax={EXPLICIT_LE}"
    with pytest.raises(NotAcceptable):
        frame_choice(parse_accept('multipart/related; type="image/jp2"'), JPEG_BASELINE)


@pytest.mark.parametrize("junk", ["", "..", "../../etc", "1.2.x", "1..2", "1." + "2" * 64, "1/2"])
def test_uids_are_digits_and_dots(junk: str) -> None:
    with pytest.raises(InvalidRequest):
        check_uid(junk, "Study Instance UID")
    assert check_uid("1.2.840.10008.1.2", "UID") == "1.2.840.10008.1.2"


def test_frame_lists() -> None:
    assert parse_frames("1,3,10") == [1, 3, 10]
    for bad in ("0", "1,", "a", "-2", "1;2"):
        with pytest.raises(InvalidRequest):
            parse_frames(bad)


def test_voi_functions() -> None:
    x = np.array([-1000.0, 0.0, 40.0, 1000.0])
    linear = _voi(x, Window(40, 400))
    assert linear[0] == 0 and linear[-1] == 1 and abs(linear[2] - 0.5) < 0.01
    exact = _voi(x, Window(40, 400, "linear-exact"))
    assert exact[2] == 0.5 and exact[1] == 0.4
    sigmoid = _voi(x, Window(40, 400, "sigmoid"))
    assert sigmoid[2] == 0.5 and 0 < sigmoid[0] < 0.01
    assert parse_window("40,400,SIGMOID") == Window(40, 400, "sigmoid")
    for bad in ("40,0", "1e300,10", "nan,10", "40,inf", "40,-5,sigmoid"):
        with pytest.raises(InvalidRequest):
            parse_window(bad)


def test_viewport_keeps_aspect() -> None:
    image = Image.new("L", (256, 1024))
    assert _fit(image, parse_viewport("64,64")).size == (16, 64)
    assert _fit(image, parse_viewport("512,")).size == (512, 2048)
    assert _fit(image, None) is image
    for bad in ("0,10", "10", "a,b", ",", "9000,10"):
        with pytest.raises(InvalidRequest):
            parse_viewport(bad)


def test_multipart_body_layout() -> None:
    body = multipart_body("b0", [("a/b", b"12"), ("c/d", b"3")])
    assert body == (
        b"--b0\r\nContent-Type: a/b\r\nContent-Length: 2\r\n\r\n12"
        b"\r\n--b0\r\nContent-Type: c/d\r\nContent-Length: 1\r\n\r\n3\r\n--b0--\r\n"
    )


class Blobs:
    """A blob store from a dict (BlobStore.open only)."""

    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs

    def open(self, key: str) -> io.BytesIO:
        return io.BytesIO(self.blobs[key])


def test_streamed_body_is_the_stored_bytes_in_blocks() -> None:
    big = bytes(range(256)) * (10 * 1024 + 7)  # 2.5 MiB: several reads
    blobs = Blobs({"a": b"small-a", "b": big, "c": b"c" * 1000})
    records = [
        replace(record(EXPLICIT_LE), blob_key=key, size=len(value), sop_instance_uid=key)
        for key, value in blobs.blobs.items()
    ]
    targets = [EXPLICIT_LE] * 3
    blocks = list(stream_instances(blobs, records, targets, "b0"))  # type: ignore[arg-type]
    body = b"".join(blocks)
    content_type = f"application/dicom; transfer-syntax={EXPLICIT_LE}"
    assert body == multipart_body("b0", [(content_type, v) for v in blobs.blobs.values()])
    assert stored_length(records, targets, "b0") == len(body)
    assert all(len(block) >= CHUNK for block in blocks[:-1]) and len(blocks) == 3
    truncated = [replace(records[1], size=len(big) + 1)]
    with pytest.raises(OutOfResources, match="truncated"):
        list(stream_instances(blobs, truncated, [EXPLICIT_LE], "b0"))  # type: ignore[arg-type]


def test_metadata_cache_is_bounded_and_keyed_by_blob() -> None:
    def part10(sop: str) -> bytes:
        ds = make_ct(sop=sop, study="1.2", rows=4)
        return encode(ds)

    blobs = Blobs({f"k{n}": part10(f"1.2.3.{n}") for n in range(4)})
    cache = MetadataCache(limit=1)  # every entry is over the limit: only the newest is kept
    records = [
        replace(record(EXPLICIT_LE), blob_key=f"k{n}", sop_instance_uid=f"1.2.3.{n}")
        for n in range(4)
    ]
    first = cache.get(blobs, records[0], "http://h/dicomweb")  # type: ignore[arg-type]
    meta = orjson.loads(first)
    assert meta["00080018"]["Value"] == ["1.2.3.0"]
    assert meta["7FE00010"]["BulkDataURI"].startswith("http://h/dicomweb/studies/1.2/")
    for r in records[1:]:
        cache.get(blobs, r, "http://h/dicomweb")  # type: ignore[arg-type]
    assert len(cache._items) == 1 and ("k3", "http://h/dicomweb") in cache._items
    del blobs.blobs["k3"]  # served from the cache without touching the blob
    assert cache.get(blobs, records[3], "http://h/dicomweb") is not None  # type: ignore[arg-type]
