"""The STOW-RS multipart reader (``adapters.dicom.web._stow``, RFC 2046 5.1.1) on bodies cut into
chunks of every size: a delimiter, a header block or a CRLF split across two chunks must not
change the parts read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.dicom.web._stow import Malformed, _Spooler, boundary_of, read_parts
from hub.errors import PayloadTooLarge, UnsupportedMediaType

BOUNDARY = "b-1"
PARTS = [b"\r\n--b-2 looks like one \r\n--b-", b"", bytes(range(256)) * 3]
BODY = (
    b"preamble to ignore\r\n"
    + b"".join(
        b"--b-1  \r\nContent-Type: application/dicom\r\nX-N: %d\r\n\r\n" % i + p + b"\r\n"
        for i, p in enumerate(PARTS)
    )
    + b"--b-1--\r\nepilogue"
)


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def _read(
    body: bytes, size: int, tmp: Path, limit: int = 1 << 20
) -> list[tuple[dict[str, str], bytes]]:
    async def run() -> list[tuple[dict[str, str], bytes]]:
        out = []
        async for part in read_parts(_chunks(body, size), BOUNDARY, _Spooler(str(tmp)), limit):
            out.append((part.headers, part.body.read()))
            part.body.close()
        return out

    return asyncio.run(run())


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 11, 64, 4096])
def test_parts_are_the_same_whatever_the_chunking(size: int, tmp_path: Path) -> None:
    parts = _read(BODY, size, tmp_path)
    assert [body for _, body in parts] == PARTS
    assert [headers["x-n"] for headers, _ in parts] == ["0", "1", "2"]
    assert parts[0][0]["content-type"] == "application/dicom"


def test_a_body_that_opens_with_its_delimiter_and_has_no_headers(tmp_path: Path) -> None:
    body = b"--b-1\r\n\r\nabc\r\n--b-1--"
    assert _read(body, 3, tmp_path) == [({}, b"abc")]


@pytest.mark.parametrize("cut", [5, 30, len(BODY) - 20, len(BODY) - 12])
def test_a_cut_body_is_malformed(cut: int, tmp_path: Path) -> None:
    with pytest.raises(Malformed, match="truncated"):
        _read(BODY[:cut], 4, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_limit_is_checked_as_bytes_arrive(tmp_path: Path) -> None:
    with pytest.raises(PayloadTooLarge):
        _read(BODY, 16, tmp_path, limit=100)


def test_a_large_part_is_read_whole_and_leaves_no_file(tmp_path: Path) -> None:
    big = b"\x01" * (5 * 1024 * 1024)
    body = b"--b-1\r\n\r\n" + big + b"\r\n--b-1--"
    ((_, data),) = _read(body, 65536, tmp_path, limit=len(body))
    assert data == big
    assert list(tmp_path.iterdir()) == []  # spooled to an anonymous temporary file


@pytest.mark.parametrize(
    ("header", "error"),
    [
        ('multipart/related; type="application/dicom"; boundary="a b"', None),
        ("multipart/related; boundary=xyz", None),
        ('multipart/related; type="application/dicom"', Malformed),
        ("multipart/related; boundary=" + "x" * 201, Malformed),
        ("application/dicom", UnsupportedMediaType),
        ('multipart/related; type="application/dicom+json"; boundary=x', UnsupportedMediaType),
    ],
)
def test_boundary_of(header: str, error: type[Exception] | None) -> None:
    if error is None:
        assert boundary_of(header) in ("a b", "xyz")
    else:
        with pytest.raises(error):
            boundary_of(header)
