"""Reading an upload's ``multipart/form-data`` body (RFC 7578) as it arrives.

The one file part goes straight to a temporary file under the data dir while its SHA-256 and
SHA-1 are computed, so a 500 MB video costs a few buffers of memory; text fields are kept (small,
bounded). The parser is python-multipart's streaming one; its errors, a body that ends before
the closing delimiter, too many or too large fields, and a file past the size limit become hub
errors here (400, 413).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from hub.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType

MAX_FIELDS = 64
MAX_FIELD_BYTES = 8 * 1024
FILE_FIELD = "file"


@dataclass
class Upload:
    """The received form: its text fields and the file, spooled to ``path``."""

    fields: dict[str, str] = field(default_factory=dict)
    path: str | None = None
    filename: str | None = None
    declared_type: str | None = None
    size: int = 0
    sha256: str = ""
    sha1: bytes = b""

    def discard(self) -> None:
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self.path = None


def boundary_of(content_type: str) -> bytes:
    """The boundary of a ``multipart/form-data`` content type; 415 for any other type."""
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise UnsupportedMediaType("Uploads are multipart/form-data (RFC 7578) with a 'file' part")
    boundary = options.get(b"boundary", b"")
    if not boundary or len(boundary) > 70:
        raise InvalidRequest("The multipart/form-data content type has no valid boundary")
    return boundary


def _disposition(value: str) -> tuple[str, str | None]:
    """(name, filename) of a part's ``Content-Disposition: form-data`` header."""
    kind, options = parse_options_header(value)
    if kind != b"form-data" or b"name" not in options:
        raise InvalidRequest("A part's Content-Disposition is not form-data with a name")
    filename = options.get(b"filename")
    name = options[b"name"].decode("utf-8", "replace")
    return name, (os.path.basename(filename.decode("utf-8", "replace")) if filename else None)


class _FormReader:
    """python-multipart callbacks that build an ``Upload``."""

    def __init__(self, spool_dir: str, limit: int) -> None:
        self.spool_dir = spool_dir
        self.limit = limit
        self.upload = Upload()
        self.ended = False
        self._headers: dict[str, str] = {}
        self._name = ""
        self._value = b""
        self._header_field = b""
        self._header_value = b""
        self._part: str | None = None  # "file" or "field"
        self._fd: int | None = None
        self._sha256: Any = None
        self._sha1: Any = None
        self._field_bytes = bytearray()

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": self.header_field,
            "on_header_value": self.header_value,
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
            "on_end": self.end,
        }

    def part_begin(self) -> None:
        self._headers = {}
        self._part = None

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def header_end(self) -> None:
        name = self._header_field.decode("latin-1").strip().lower()
        self._headers[name] = self._header_value.decode("utf-8", "replace").strip()
        self._header_field = self._header_value = b""

    def headers_finished(self) -> None:
        name, filename = _disposition(self._headers.get("content-disposition", ""))
        self._name = name
        if name == FILE_FIELD:
            if self.upload.path is not None:
                raise InvalidRequest("An upload carries exactly one 'file' part")
            os.makedirs(self.spool_dir, exist_ok=True)
            self._fd, self.upload.path = tempfile.mkstemp(dir=self.spool_dir, prefix="upload-")
            self.upload.filename = filename
            self.upload.declared_type = self._headers.get("content-type")
            self._sha256, self._sha1 = hashlib.sha256(), hashlib.sha1()
            self._part = "file"
        else:
            if len(self.upload.fields) >= MAX_FIELDS:
                raise InvalidRequest(f"An upload has at most {MAX_FIELDS} fields")
            if name in self.upload.fields:
                raise InvalidRequest(f"The field {name!r} is given twice")
            self._field_bytes = bytearray()
            self._part = "field"

    def part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._part == "file":
            assert self._fd is not None
            self.upload.size += len(chunk)
            if self.upload.size > self.limit:
                raise PayloadTooLarge(f"The file is larger than {self.limit} bytes")
            view = memoryview(chunk)
            while view:
                view = view[os.write(self._fd, view) :]
            self._sha256.update(chunk)
            self._sha1.update(chunk)
        elif self._part == "field":
            self._field_bytes += chunk
            if len(self._field_bytes) > MAX_FIELD_BYTES:
                raise InvalidRequest(f"The field {self._name!r} is longer than {MAX_FIELD_BYTES}")

    def part_end(self) -> None:
        if self._part == "file":
            self._close_file()
            self.upload.sha256 = self._sha256.hexdigest()
            self.upload.sha1 = self._sha1.digest()
        elif self._part == "field":
            try:
                text = self._field_bytes.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidRequest(f"The field {self._name!r} is not UTF-8") from exc
            self.upload.fields[self._name] = text.strip()
        self._part = None

    def end(self) -> None:
        self.ended = True

    def _close_file(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def abandon(self) -> None:
        self._close_file()
        self.upload.discard()


async def read_form(
    chunks: AsyncIterator[bytes], boundary: bytes, *, spool_dir: str, limit: int
) -> Upload:
    """The form of a body; nothing is left on disk when it fails (400, 413, or the client
    going away)."""
    reader = _FormReader(spool_dir, limit)
    parser = MultipartParser(boundary, reader.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in chunks:
            parser.write(chunk)
            if reader.ended:
                break
        if not reader.ended:
            raise InvalidRequest("The multipart body ends before its closing delimiter")
        if reader.upload.path is None:
            raise InvalidRequest("The upload has no 'file' part")
    except MultipartParseError as exc:
        reader.abandon()
        raise InvalidRequest(f"Malformed multipart/form-data body: {exc}") from exc
    except BaseException:
        reader.abandon()
        raise
    return reader.upload


__all__ = ["FILE_FIELD", "Upload", "boundary_of", "read_form"]
