"""``Binary`` in its native format over REST (FHIR R4 binary.html#rest), streamed both ways.

- Create: ``POST /fhir/Binary`` with any content type other than FHIR JSON. The body goes to a
  temporary file under the data dir as it arrives (up to ``binary_max_bytes``: 413 past it; a
  client that goes away leaves nothing), its real type is decided from the bytes by the installed
  content inspector (``pixelhub.content_inspectors`` entry points, e.g. the media adapter's:
  415/422 for bytes of no supported type, a declared type the bytes deny, a polyglot), then it is
  stored in the blob store and the Binary created as the caller (``X-Security-Context`` becomes
  ``securityContext``). 201 with the Binary (without ``data``) and ``Location``.
- Read: ``GET /fhir/Binary/{id}`` answers the content itself, with its ``contentType``, unless the
  request asks for FHIR (``Accept`` or ``_format`` naming JSON); then the Binary JSON with
  ``data``, which is refused (406) for content larger than ``max_body_bytes``.
"""

from __future__ import annotations

import base64
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import ClientDisconnect

from hub.auth import Principal
from hub.errors import InvalidRequest, NotAcceptable, PayloadTooLarge
from hub.fhir.binary import OCTET_STREAM, blob_binary, blob_of, inline_data
from hub.fhir.service import FhirService, WriteResult
from hub.ports import BlobStore, StoredResource

# (head, tail, size, declared content type) -> the real content type; raises a HubError
ContentInspector = Callable[[bytes, bytes, int, str | None], str]
HEAD = TAIL = 64 * 1024
CHUNK = 1024 * 1024
_FHIR_FORMATS = ("json", "application/json", "application/fhir+json")
_REFERENCE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-./")
# Served content is never run by a browser as a page of this origin.
SAFE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox; default-src 'none'",
}


def installed_inspector() -> ContentInspector | None:
    """The first ``pixelhub.content_inspectors`` entry point, by name, or ``None``."""
    found = sorted(entry_points(group="pixelhub.content_inspectors"), key=lambda e: e.name)
    return found[0].load() if found else None


def is_native(request: Request) -> bool:
    """True unless the request asks for FHIR JSON (``_format`` or ``Accept``)."""
    fmt = request.query_params.get("_format")
    if fmt is not None:
        return fmt.split(";")[0].strip() not in _FHIR_FORMATS
    accept = request.headers.get("accept", "")
    return not any(t.split(";")[0].strip() in _FHIR_FORMATS[1:] for t in accept.split(","))


@dataclass
class NativeBinaries:
    """Blob-backed Binary content for one app (built by the composition root)."""

    blobs: BlobStore
    spool_dir: Path
    max_bytes: int
    max_json_bytes: int
    inspector: ContentInspector | None = None

    # ------------------------------------------------------------------ create

    async def create(
        self, request: Request, service: FhirService, principal: Principal
    ) -> WriteResult:
        await run_in_threadpool(service.check, principal, "create", "Binary")
        declared = request.headers.get("content-type") or None
        context = _security_context(request.headers.get("x-security-context"))
        length = request.headers.get("content-length", "")
        if length.isascii() and length.isdigit() and int(length) > self.max_bytes:
            raise PayloadTooLarge(f"The Binary is larger than {self.max_bytes} bytes")
        with self._spooled() as (fd, path):
            size = await self._receive(request.stream(), fd)
            return await run_in_threadpool(
                self._store, service, principal, path, size, declared, context
            )

    @contextlib.contextmanager
    def _spooled(self) -> Iterator[tuple[int, str]]:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(dir=self.spool_dir, prefix="binary-")
        try:
            yield fd, path
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    async def _receive(self, chunks: AsyncIterator[bytes], fd: int) -> int:
        size = 0
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > self.max_bytes:
                    raise PayloadTooLarge(f"The Binary is larger than {self.max_bytes} bytes")
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
        except ClientDisconnect as exc:
            raise InvalidRequest("The client went away before the end of the body") from exc
        return size

    def _store(
        self, service: FhirService, principal: Principal, path: str, size: int,
        declared: str | None, context: str | None,
    ) -> WriteResult:  # fmt: skip
        content_type = (declared or OCTET_STREAM).strip()
        if self.inspector is not None:
            with open(path, "rb") as fp:
                head = fp.read(HEAD)
                fp.seek(max(0, size - TAIL))
                tail = fp.read(TAIL)
            content_type = self.inspector(head, tail, size, declared)
        with open(path, "rb") as fp:
            ref = self.blobs.put(fp, prefix="binary")
        resource = blob_binary(content_type, ref.key, context)

        def write(uow: Any) -> WriteResult:
            return service.create(principal, "Binary", resource, uow=uow)

        return service.run(write, validate=False)  # built here, not by the client

    # ------------------------------------------------------------------ read

    def response(self, stored: StoredResource, native: bool, headers: dict[str, str]) -> Response:
        """The content of a Binary as itself (``native``) or as FHIR JSON with ``data``."""
        assert stored.data is not None
        resource = orjson.loads(stored.data)
        key = blob_of(resource)
        content_type = str(resource.get("contentType") or OCTET_STREAM)
        if not native:
            if key is None:
                return _json(stored.data, headers)
            with self.blobs.open(key) as fp:
                size = fp.seek(0, os.SEEK_END)
                if size > self.max_json_bytes:
                    raise NotAcceptable(
                        f"Binary/{stored.id} is {size} bytes, too large to embed as base64 in "
                        f"JSON; ask for {content_type} instead"
                    )
                fp.seek(0)
                resource["data"] = base64.b64encode(fp.read()).decode()
            return _json(orjson.dumps(resource), headers)
        headers = {**headers, **SAFE_HEADERS}
        if key is None:
            return Response(inline_data(resource), media_type=content_type, headers=headers)
        stream = self.blobs.open(key)
        headers["Content-Length"] = str(stream.seek(0, os.SEEK_END))
        stream.seek(0)

        def chunks() -> Iterator[bytes]:
            with stream:
                while chunk := stream.read(CHUNK):
                    yield chunk

        return StreamingResponse(
            iterate_in_threadpool(chunks()), media_type=content_type, headers=headers
        )


def _json(body: bytes, headers: dict[str, str]) -> Response:
    return Response(body, media_type="application/fhir+json; charset=utf-8", headers=headers)


def _security_context(value: str | None) -> str | None:
    """``X-Security-Context``: a relative reference ``Type/id`` (binary.html#rest)."""
    if not value:
        return None
    value = value.strip()
    kind, _, rid = value.partition("/")
    if not (kind[:1].isupper() and rid and "/" not in rid and set(value) <= _REFERENCE_CHARS):
        raise InvalidRequest("X-Security-Context must be a reference Type/id")
    return value


__all__ = ["ContentInspector", "NativeBinaries", "installed_inspector", "is_native"]
