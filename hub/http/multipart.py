"""Reading a ``multipart/*`` body as it arrives (RFC 2046 5.1; RFC 7578 form-data; the MTOM
``multipart/related`` of XOP): small parts kept in memory, large ones written to temporary files
under the data dir while their digests are computed, so a 500 MB part costs a few buffers.

One reader for every door that takes multipart bodies (media uploads, SOAP MTOM), on
python-multipart's streaming parser. The caller decides, per part, from its headers: memory or
disk (``spool``), and what a memory part too large for ``memory_limit`` means
(``too_large``); ``check`` may refuse a part as soon as its headers are read. The whole body past
``limit`` bytes is ``PayloadTooLarge`` (413). A malformed body raises ``MalformedMultipart``; a
body that ends before its closing delimiter returns with ``complete`` false. Nothing spooled is
left on disk when reading fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser

from hub.errors import InvalidRequest, PayloadTooLarge

Headers = dict[str, str]


class MalformedMultipart(InvalidRequest):
    """The body is not multipart as its content type says (python-multipart's parse error)."""


@dataclass
class Part:
    """One part: its headers (lower-case names), and its bytes in ``data`` or in ``path``."""

    headers: Headers
    data: bytes = b""
    path: str | None = None
    size: int = 0
    digests: dict[str, bytes] = field(default_factory=dict)

    def discard(self) -> None:
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self.path = None


@dataclass
class Parts:
    parts: list[Part]
    complete: bool  # the closing delimiter was read

    def discard(self) -> None:
        for part in self.parts:
            part.discard()


class _Reader:
    """python-multipart callbacks that build the ``Part`` list."""

    def __init__(
        self, spool_dir: str, limit: int, spool: Callable[[Headers], bool], memory_limit: int,
        too_large: Callable[[Headers], Exception], check: Callable[[Headers, list[Part]], None],
        digests: Sequence[str],
    ) -> None:  # fmt: skip
        self.spool_dir, self.limit, self.spool = spool_dir, limit, spool
        self.memory_limit, self.too_large, self.check = memory_limit, too_large, check
        self.digest_names = tuple(digests)
        self.parts: list[Part] = []
        self.ended = False
        self.received = 0
        self._name = b""
        self._value = b""
        self._headers: Headers = {}
        self._part: Part | None = None
        self._buffer = bytearray()
        self._fd: int | None = None
        self._hashes: list[Any] = []

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": self._header_name,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_done,
            "on_part_data": self._data,
            "on_part_end": self._end,
            "on_end": self._finish,
        }

    def _begin(self) -> None:
        self._headers = {}

    def _header_name(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        name = self._name.decode("latin-1").strip().lower()
        self._headers[name] = self._value.decode("utf-8", "replace").strip()
        self._name = self._value = b""

    def _headers_done(self) -> None:
        self.check(self._headers, self.parts)
        self._part = Part(self._headers)
        self._buffer = bytearray()
        if self.spool(self._headers):
            os.makedirs(self.spool_dir, exist_ok=True)
            self._fd, self._part.path = tempfile.mkstemp(dir=self.spool_dir, prefix="part-")
            self._hashes = [hashlib.new(name) for name in self.digest_names]

    def _data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        assert self._part is not None
        self._part.size += len(chunk)
        if self._fd is None:
            self._buffer += chunk
            if len(self._buffer) > self.memory_limit:
                raise self.too_large(self._part.headers)
            return
        view = memoryview(chunk)
        while view:
            view = view[os.write(self._fd, view) :]
        for digest in self._hashes:
            digest.update(chunk)

    def _end(self) -> None:
        part, self._part = self._part, None
        assert part is not None
        if self._fd is None:
            part.data = bytes(self._buffer)
        else:
            self._close()
            part.digests = {h.name: h.digest() for h in self._hashes}
        self.parts.append(part)

    def _finish(self) -> None:
        self.ended = True

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def drop_unfinished(self) -> None:
        """Forget the part the body stopped in the middle of (and its file)."""
        self._close()
        if self._part is not None:
            self._part.discard()
            self._part = None

    def abandon(self) -> None:
        self.drop_unfinished()
        for part in self.parts:
            part.discard()


def _never(headers: Headers, parts: list[Part]) -> None:
    return None


async def read_parts(
    chunks: AsyncIterator[bytes],
    boundary: bytes,
    *,
    spool_dir: str,
    limit: int,
    spool: Callable[[Headers], bool],
    memory_limit: int,
    too_large: Callable[[Headers], Exception],
    check: Callable[[Headers, list[Part]], None] = _never,
    digests: Sequence[str] = (),
) -> Parts:
    """The parts of a multipart body (see the module docstring)."""
    reader = _Reader(spool_dir, limit, spool, memory_limit, too_large, check, digests)
    parser = MultipartParser(boundary, reader.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in chunks:
            reader.received += len(chunk)
            if reader.received > limit:
                raise PayloadTooLarge(f"The body is larger than {limit} bytes")
            parser.write(chunk)
            if reader.ended:
                break
    except MultipartParseError as exc:
        reader.abandon()
        raise MalformedMultipart(f"Malformed multipart body: {exc}") from exc
    except BaseException:
        reader.abandon()
        raise
    reader.drop_unfinished()
    return Parts(reader.parts, reader.ended)


__all__ = ["Headers", "MalformedMultipart", "Part", "Parts", "read_parts"]
