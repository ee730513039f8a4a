"""Reading an upload's ``multipart/form-data`` body (RFC 7578) as it arrives, with the one
streaming reader of ``hub.http.multipart``: the ``file`` part goes to a temporary file under the
data dir while its SHA-256 and SHA-1 are computed, so a 500 MB video costs a few buffers of
memory; text fields are kept (small, bounded: 400 past ``MAX_FIELD_BYTES`` or ``MAX_FIELDS``). A
body that ends before the closing delimiter is 400, past the size limit 413.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.multipart import parse_options_header

from hub.errors import InvalidRequest, UnsupportedMediaType
from hub.http.multipart import Headers, Part, read_parts

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


def _disposition(headers: Headers) -> tuple[str, str | None]:
    """(name, filename) of a part's ``Content-Disposition: form-data``."""
    kind, options = parse_options_header(headers.get("content-disposition", ""))
    if kind != b"form-data" or b"name" not in options:
        raise InvalidRequest("A part's Content-Disposition is not form-data with a name")
    filename = options.get(b"filename")
    name = options[b"name"].decode("utf-8", "replace")
    return name, (os.path.basename(filename.decode("utf-8", "replace")) if filename else None)


def _is_file(headers: Headers) -> bool:
    return _disposition(headers)[0] == FILE_FIELD


def _check(headers: Headers, parts: list[Part]) -> None:
    """Refuse a part as soon as its headers say it is one too many."""
    name, _ = _disposition(headers)
    names = [_disposition(p.headers)[0] for p in parts]
    if name == FILE_FIELD and FILE_FIELD in names:
        raise InvalidRequest("An upload carries exactly one 'file' part")
    if name in names:
        raise InvalidRequest(f"The field {name!r} is given twice")
    if len(parts) >= MAX_FIELDS:
        raise InvalidRequest(f"An upload has at most {MAX_FIELDS} fields")


def _field_too_long(headers: Headers) -> Exception:
    return InvalidRequest(
        f"The field {_disposition(headers)[0]!r} is longer than {MAX_FIELD_BYTES}"
    )


async def read_form(
    chunks: AsyncIterator[bytes], boundary: bytes, *, spool_dir: str, limit: int
) -> Upload:
    """The form of a body; nothing is left on disk when it fails (400, 413, or the client
    going away)."""
    read = await read_parts(
        chunks, boundary, spool_dir=spool_dir, limit=limit, spool=_is_file,
        memory_limit=MAX_FIELD_BYTES, too_large=_field_too_long, check=_check,
        digests=("sha256", "sha1"),
    )  # fmt: skip
    upload = Upload()
    try:
        if not read.complete:
            raise InvalidRequest("The multipart body ends before its closing delimiter")
        for part in read.parts:
            name, filename = _disposition(part.headers)
            if part.path is not None:
                upload.path, upload.filename, upload.size = part.path, filename, part.size
                upload.declared_type = part.headers.get("content-type")
                upload.sha256 = part.digests["sha256"].hex()
                upload.sha1 = part.digests["sha1"]
                continue
            try:
                upload.fields[name] = part.data.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                raise InvalidRequest(f"The field {name!r} is not UTF-8") from exc
        if upload.path is None:
            raise InvalidRequest("The upload has no 'file' part")
    except BaseException:
        read.discard()
        raise
    return upload


__all__ = ["FILE_FIELD", "Upload", "boundary_of", "read_form"]
