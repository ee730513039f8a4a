"""STOW-RS, the Store Transaction of the Studies Service (DICOM PS3.18 10.5): ``POST /studies``
and ``POST /studies/{study}`` with a ``multipart/related; type="application/dicom"`` body (RFC
2387, RFC 2046 5.1), each part one DICOM PS3.10 file.

The body is read as it arrives and never held whole: each part is spooled (in memory up to a
few MB, then in an anonymous temporary file under the data dir) and handed, once complete, to
the one ingest path that C-STORE uses (``adapters.dicom._ingest``), so an instance is stored
exactly as received through either door. At the end the studies are flagged for aggregation and
the projectors woken, as the SCP does when an association ends.

Response (PS3.18 10.5.3, Table 10.5.3-1..3): an ``application/dicom+json`` data set with the
Retrieve URL (0008,1190) of the study, a Referenced SOP Sequence (0008,1199) of the stored
instances (with their Retrieve URLs) and a Failed SOP Sequence (0008,1198) whose Failure Reason
(0008,1197) is the C-STORE status of the failure (``_errors.store_status``: 0xA700 out of
resources, 0xA900 data set does not match - also for an instance of another study than the one
in the path -, 0xC000 cannot understand). HTTP 200 when every instance was stored, 202 when some
failed (with a ``Warning`` header), 409 when all failed; 400 for a malformed multipart body
(no boundary, truncated, no part), 413 above ``dicom_web_max_store_bytes``, 415 for any other
media type (the metadata + bulk data form, ``type="application/dicom+json"`` or ``+xml``, is not
supported). Storing needs unrestricted ``ImagingStudy`` create access (403 otherwise); each
request is audited (PS3.15 A.5.3.4 DICOM Instances Transferred, action Create).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO, cast

import orjson
from fastapi import APIRouter, Request, Response
from pydicom import dcmread
from pydicom.dataset import Dataset
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from adapters.dicom._errors import (
    CANNOT_UNDERSTAND,
    DATASET_MISMATCH,
    PARSE_ERRORS,
    DicomStoreError,
    store_status,
)
from adapters.dicom._ingest import CHUNK, Received
from adapters.dicom._part10 import PREAMBLE, NotPart10, file_meta, read_file_meta
from adapters.dicom.web._access import DICOM_JSON, DicomWeb
from adapters.dicom.web._qido import check_uid, negotiate
from hub.auth import Principal
from hub.errors import (
    Forbidden,
    HubError,
    InvalidRequest,
    OutOfResources,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from mappings.dicom_instance import DicomMappingError
from mappings.interaction_to_auditevent import Outcome

log = logging.getLogger("pixelhub.dicomweb")

SPOOL_THRESHOLD = 4 * 1024 * 1024  # a part larger than this goes to a temporary file
MAX_HEADERS = 16 * 1024  # the header block of one part
# RFC 2046 5.1.1 bchars; up to 200 of them, not 70: Orthanc's boundaries have 73
_BOUNDARY = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{1,200}$")
PART_TYPES = frozenset({"application/dicom", "application/octet-stream"})
# Bad input or a full disk: a failed instance without a traceback in the log.
EXPECTED = (DicomStoreError, DicomMappingError, HubError, *PARSE_ERRORS)


class Malformed(InvalidRequest):
    """A multipart body that breaks RFC 2046 5.1."""


def _params(header: str) -> tuple[str, dict[str, str]]:
    """A media type and its parameters (RFC 9110 5.6.6), names lower-cased, quotes removed."""
    media, _, rest = header.partition(";")
    params: dict[str, str] = {}
    for match in re.finditer(r'\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)\s*;?', rest):
        value = match.group(2).strip()
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[match.group(1).lower()] = value
    return media.strip().lower(), params


def boundary_of(content_type: str) -> str:
    """The boundary of a ``multipart/related; type="application/dicom"`` body; 415 for any other
    media type, 400 when the boundary is missing or invalid."""
    media, params = _params(content_type)
    if media != "multipart/related":
        raise UnsupportedMediaType(
            f"Content-Type {content_type[:100] or '(none)'} is not supported: STOW-RS takes"
            ' multipart/related; type="application/dicom" (PS3.18 10.5.1.2)'
        )
    kind = params.get("type", "application/dicom").lower()
    if kind != "application/dicom":
        raise UnsupportedMediaType(
            f'multipart/related; type="{kind[:60]}" (metadata and bulk data) is not supported:'
            ' send PS3.10 files as multipart/related; type="application/dicom"'
        )
    boundary = params.get("boundary", "")
    if not boundary:
        raise Malformed("The multipart/related Content-Type has no boundary parameter")
    if not _BOUNDARY.match(boundary) or boundary.endswith(" "):
        raise Malformed("The multipart boundary is not valid (RFC 2046 5.1.1)")
    return boundary


@dataclass
class Part:
    """One received body part: its headers and its bytes (spooled)."""

    headers: dict[str, str]
    body: IO[bytes]
    size: int = 0


class _Spooler:
    def __init__(self, directory: str) -> None:
        self.directory = directory

    def new(self) -> IO[bytes]:
        os.makedirs(self.directory, exist_ok=True)
        return cast(
            IO[bytes],
            tempfile.SpooledTemporaryFile(
                max_size=SPOOL_THRESHOLD, dir=self.directory, prefix="stow-"
            ),
        )


async def read_parts(
    chunks: AsyncIterator[bytes], boundary: str, spooler: _Spooler, limit: int
) -> AsyncIterator[Part]:
    """The parts of a multipart body (RFC 2046 5.1.1), each yielded once complete; ``Malformed``
    for a body without a closing delimiter, ``PayloadTooLarge`` past ``limit`` bytes."""
    delimiter = b"\r\n--" + boundary.encode("ascii")
    keep = len(delimiter) - 1
    buffer = bytearray(b"\r\n")  # the first delimiter may open the body: give it its CRLF
    state = "preamble"
    part: Part | None = None
    received = 0
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > limit:
                raise PayloadTooLarge(f"The STOW-RS body is larger than {limit} bytes")
            buffer += chunk
            while True:
                if state in ("preamble", "body"):
                    at = buffer.find(delimiter)
                    if at < 0:
                        cut = max(0, len(buffer) - keep)
                        if part is not None and cut:
                            part.body.write(buffer[:cut])
                            part.size += cut
                        del buffer[:cut]
                        break
                    if part is not None:
                        part.body.write(buffer[:at])
                        part.size += at
                        part.body.seek(0)
                        done, part = part, None
                        yield done
                    del buffer[: at + len(delimiter)]
                    state = "delimiter"
                if state == "delimiter":  # "--" closes; else padding then CRLF
                    if len(buffer) < 2:
                        break
                    if buffer[:2] == b"--":
                        state = "end"
                        break
                    eol = buffer.find(b"\r\n")
                    if eol < 0:
                        if len(buffer) > 1024:
                            raise Malformed("A multipart delimiter line does not end")
                        break
                    if buffer[:eol].strip(b" \t"):
                        raise Malformed("Unexpected text after a multipart delimiter")
                    del buffer[: eol + 2]
                    state = "headers"
                if state == "headers":
                    if buffer[:2] == b"\r\n":
                        headers, used = {}, 2
                    else:
                        end = buffer.find(b"\r\n\r\n")
                        if end < 0:
                            if len(buffer) > MAX_HEADERS:
                                raise Malformed("The headers of a part are too long")
                            break
                        headers, used = _headers(bytes(buffer[:end])), end + 4
                    del buffer[:used]
                    part = Part(headers, spooler.new())
                    state = "body"
                    continue
                break
            if state == "end":
                break
        if state != "end":
            raise Malformed("The multipart body ends before its closing delimiter (truncated)")
    finally:
        if part is not None:
            part.body.close()


def _headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("latin-1").split("\r\n"):
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise Malformed(f"A part header line is not 'Name: value': {line[:60]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


@dataclass
class Results:
    """What became of the request's instances."""

    stored: list[Dataset] = field(default_factory=list)
    failed: list[Dataset] = field(default_factory=list)
    studies: set[str] = field(default_factory=set)
    reasons: list[str] = field(default_factory=list)


class StowService:
    """The STOW-RS route's logic over one ``DicomWeb``."""

    def __init__(self, web: DicomWeb) -> None:
        self.web = web
        settings = web.context.settings
        self.limit = settings.dicom_web_max_store_bytes
        self.spooler = _Spooler(str(Path(settings.data_dir) / "dicom-spool"))

    def base(self) -> str:
        base = self.web.context.service.options.base_url.rstrip("/").removesuffix("/fhir")
        return f"{base}/dicomweb"

    def authorize(self, principal: Principal) -> None:
        access = self.web.context.policy.check(principal, "create", "ImagingStudy")
        if access.restricted:
            raise Forbidden(
                "Storing DICOM instances needs unrestricted ImagingStudy create access"
                " (a user/ or system/ scope)"
            )

    def store_part(self, part: Part, study: str | None, results: Results) -> None:
        """Ingest one part (in a worker thread); its success or failure goes to ``results``."""
        sop_class = sop_instance = ""
        try:
            media, _ = _params(part.headers.get("content-type", "application/dicom"))
            if media not in PART_TYPES:
                raise NotPart10(f"part of type {media[:40]}, not application/dicom")
            body = self._part10(part)
            offset, meta = read_file_meta(body)
            sop_class, sop_instance = meta.get(0x0002, ""), meta.get(0x0003, "")
            if study is not None:
                body.seek(0)
                found = dcmread(body, stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
                if str(found.get("StudyInstanceUID", "")) != study:
                    results.failed.append(_failed(sop_class, sop_instance, DATASET_MISMATCH))
                    results.reasons.append(f"{sop_instance}: not an instance of study {study}")
                    return
            received = Received(
                body=body,
                body_offset=offset,
                body_end=part.size,
                prefix=file_meta(sop_class, sop_instance, meta[0x0010]),
                transfer_syntax_uid=meta[0x0010],
                sop_class_uid=sop_class,
                sop_instance_uid=sop_instance,
                source="dicomweb",
            )
            record = self.web.ingest.ingest(received).record
        except NotPart10 as exc:
            results.failed.append(_failed(sop_class, sop_instance, CANNOT_UNDERSTAND))
            results.reasons.append(f"part {len(results.stored) + len(results.failed)}: {exc}")
            return
        except Exception as exc:
            status, text = store_status(exc)
            if not isinstance(exc, EXPECTED):
                log.exception("STOW-RS part %s failed", sop_instance)
            results.failed.append(_failed(sop_class, sop_instance, status))
            results.reasons.append(f"{sop_instance or 'part'}: 0x{status:04X} {text}")
            return
        finally:
            with contextlib.suppress(OSError):
                part.body.close()
        results.studies.add(record.study_instance_uid)
        item = Dataset()
        item.ReferencedSOPClassUID = record.sop_class_uid
        item.ReferencedSOPInstanceUID = record.sop_instance_uid
        item.RetrieveURL = (
            f"{self.base()}/studies/{record.study_instance_uid}/series/"
            f"{record.series_instance_uid}/instances/{record.sop_instance_uid}"
        )
        results.stored.append(item)

    def _part10(self, part: Part) -> BinaryIO:
        """The part as a PS3.10 file. A part that starts with its File Meta Information but
        lacks the 128-byte preamble and "DICM" prefix (as pydicom writes a data set that was
        never read from a file, e.g. from ``dicomweb-client``) is given them here."""
        head = part.body.read(132)
        part.body.seek(0)
        if head[128:132] == b"DICM" or head[:2] != b"\x02\x00":
            return cast(BinaryIO, part.body)
        fixed = self.spooler.new()
        fixed.write(PREAMBLE)
        shutil.copyfileobj(part.body, fixed, CHUNK)
        part.body.close()
        part.body, part.size = fixed, part.size + len(PREAMBLE)
        fixed.seek(0)
        return cast(BinaryIO, fixed)

    def finish(self, results: Results) -> None:
        """Have the studies aggregated now and wake the projectors (as at association end)."""
        if not results.studies:
            return
        try:
            self.web.store.request_flush(sorted(results.studies))
        except Exception:
            log.exception("could not flag studies for aggregation")
        self.web.context.notify_change()

    def answer(self, results: Results, study: str | None, request: Request) -> Response:
        """The Store Instances Response Module (PS3.18 Table 10.5.3-3) and its HTTP status."""
        ds = Dataset()
        studies = {study} if study else results.studies
        ds.RetrieveURL = None
        if len(studies) == 1:
            ds.RetrieveURL = f"{self.base()}/studies/{next(iter(studies))}"
        if results.failed:
            ds.FailedSOPSequence = results.failed
        if results.stored:
            ds.ReferencedSOPSequence = results.stored
        headers = {}
        if results.stored and results.failed:
            status = 202
            agent = request.url.netloc or "pixelhub"
            text = f"{len(results.failed)} of {len(results.failed) + len(results.stored)}"
            headers["Warning"] = f'299 {agent} "{text} instances were not stored"'
        else:
            status = 409 if results.failed else 200
        return Response(
            orjson.dumps(ds.to_json_dict()), status_code=status, media_type=DICOM_JSON,
            headers=headers,
        )  # fmt: skip

    async def store(self, request: Request, study: str | None) -> Response:
        web = self.web
        principal: Principal | None = None
        results = Results()
        try:
            principal = await run_in_threadpool(web.principal, request)
            await run_in_threadpool(self.authorize, principal)
            if study is not None:
                check_uid(study, "Study Instance UID")
            negotiate(request)
            boundary = boundary_of(request.headers.get("content-type", ""))
            declared = request.headers.get("content-length", "")
            if declared.isascii() and declared.isdigit() and int(declared) > self.limit:
                raise PayloadTooLarge(f"The STOW-RS body is larger than {self.limit} bytes")
            try:
                parts = read_parts(request.stream(), boundary, self.spooler, self.limit)
                async for part in parts:
                    await run_in_threadpool(self.store_part, part, study, results)
            except Malformed as exc:
                if not results.stored:
                    raise
                results.failed.append(_failed("", "", CANNOT_UNDERSTAND))
                results.reasons.append(exc.message)
            except OSError as exc:  # the spool cannot be written (disk full)
                raise OutOfResources(f"Cannot spool the body: {exc.strerror or exc}") from exc
            if not results.stored and not results.failed:
                raise Malformed("The multipart body has no part")
        except ClientDisconnect:
            log.info("STOW-RS: the client went away after %d instance(s)", len(results.stored))
            gone = "the client disconnected before the end of the body"
            await self._close(request, principal, results, study, "4", gone)
            return Response(status_code=400)  # nobody is left to read it
        except HubError as exc:
            result: Outcome = "8" if exc.status >= 500 else "4"
            await self._close(request, principal, results, study, result, exc.message)
            raise
        reason = "; ".join(results.reasons)[:500] or None
        await self._close(
            request, principal, results, study, "4" if results.failed else "0", reason
        )
        if results.failed:
            log.warning("STOW-RS: %d instance(s) not stored: %s", len(results.failed), reason)
        return self.answer(results, study, request)

    async def _close(
        self, request: Request, principal: Principal | None, results: Results, study: str | None,
        result: Outcome, reason: str | None,
    ) -> None:  # fmt: skip
        """Aggregate what was stored, and audit the request (PS3.15 A.5.3.4, action Create)."""
        await run_in_threadpool(self.finish, results)
        await run_in_threadpool(
            self.web.audit_transfer, request, principal,
            study_uids=results.studies or ([study] if study else []), action="C",
            outcome=result, instances=len(results.stored), reason=reason,
        )  # fmt: skip


def _failed(sop_class: str, sop_instance: str, reason: int) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class or None
    item.ReferencedSOPInstanceUID = sop_instance or None
    item.FailureReason = reason
    return item


def routes(web: DicomWeb) -> APIRouter:
    """The STOW-RS resources (PS3.18 10.5.1)."""
    service = StowService(web)
    router = APIRouter()

    @router.post("/studies", summary="STOW-RS Store Instances")
    async def store_instances(request: Request) -> Response:
        return await service.store(request, None)

    @router.post("/studies/{study}", summary="STOW-RS Store Instances of a study")
    async def store_study_instances(request: Request, study: str) -> Response:
        return await service.store(request, study)

    return router


__all__ = ["Part", "boundary_of", "read_parts", "routes"]
