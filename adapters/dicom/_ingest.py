"""From one received DICOM data set to a durable, indexed instance: the one ingest path that the
storage SCP (C-STORE, DICOM PS3.4 B.2) and ``pixelhub import`` share.

1. walk the encoded data set once, reading element headers only: a truncated or structurally
   broken data set is refused with 0xC000 before anything else;
2. parse the header only (``stop_before_pixels``, large values deferred), summarise it with
   ``mappings.dicom_instance.extract_instance_summary`` (Study/Series/SOP Instance UID and SOP
   Class UID are required: 0xA900 when missing) and check the SOP Instance and Class UID of the
   C-STORE command (or file meta) against the data set's (PS3.4 B.2.3: 0xA900 when they differ);
3. only when the SOP Instance UID is already stored: hash ``file meta + data set`` (the blob as
   stored, PS3.10 7.1); identical bytes -> a no-op success, nothing written (a new instance is
   hashed once, by the blob store while it writes);
4. stream the blob to the ``BlobStore`` under ``dicom/<study>/<series>/<sop>`` (fsynced), then
   commit the instance row and its change record (``DicomInstanceStore.store``);
5. only then return, so the SCP answers success only for durable instances. The projectors are
   not woken per instance (each wake costs every projector a cursor write): the sender's end
   (association release, import finished) flags its studies and wakes them, and the study
   aggregator's quiet-period timer catches senders that never say goodbye.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

from pydicom import dcmread
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import FileDataset
from pydicom.tag import BaseTag
from pydicom.uid import UID

from adapters.dicom._errors import (
    CANNOT_UNDERSTAND,
    DATASET_MISMATCH,
    PARSE_ERRORS,
    DicomStoreError,
)
from adapters.dicom._structure import check_structure
from hub.errors import HubError
from hub.ports import BlobStore, DicomInstanceRecord, DicomInstanceStore, StoreResult
from mappings.dicom_instance import InstanceSummary, extract_instance_summary

log = logging.getLogger("pixelhub.dicom")

CHUNK = 1024 * 1024
DEFER_BYTES = 256 * 1024  # header values larger than this are not read (e.g. an embedded PDF)
DEFLATED = "1.2.840.10008.1.2.1.99"


@dataclass
class Received:
    """One data set to ingest.

    The stored blob is ``prefix + body[body_offset:body_end]``; ``body`` is seekable and is, from
    its start, a DICOM file pydicom can read (a Part 10 file, possibly with other file meta).
    ``sop_class_uid``/``sop_instance_uid`` are what the C-STORE command (or the file meta) claims.
    """

    body: BinaryIO
    body_offset: int
    body_end: int
    prefix: bytes
    transfer_syntax_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    source: str


class _BlobStream(io.RawIOBase):
    """``prefix`` then ``body[start:end]``, read in chunks (what ``BlobStore.put`` consumes)."""

    def __init__(self, prefix: bytes, body: BinaryIO, start: int, end: int) -> None:
        self._prefix = memoryview(prefix)
        self._body = body
        self._remaining = end - start
        body.seek(start)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        want = CHUNK if size is None or size < 0 else size
        if self._prefix:
            out = bytes(self._prefix[:want])
            self._prefix = self._prefix[want:]
            return out
        if self._remaining <= 0:
            return b""
        data = self._body.read(min(want, self._remaining))
        if not data:
            raise DicomStoreError(CANNOT_UNDERSTAND, "Data set shorter than received")
        self._remaining -= len(data)
        return data


_TAGS: dict[str, BaseTag | None] = {}


def _tag(keyword: str) -> BaseTag | None:
    try:
        return _TAGS[keyword]
    except KeyError:
        number = tag_for_keyword(keyword)
        found = _TAGS[keyword] = None if number is None else BaseTag(number)
        return found


class _HeaderDataset(FileDataset):
    """The parsed header, looked up by keyword through a cache: the summary asks for some
    eighty attributes by keyword, and pydicom converts each keyword to a tag on every ``in`` and
    ``[]`` (about a quarter of the summary's cost). Behaves as ``FileDataset`` otherwise."""

    def __contains__(self, name: object) -> bool:
        if type(name) is str:
            tag = _tag(name)
            return tag is not None and tag in self._dict
        return super().__contains__(name)  # type: ignore[operator]

    def __getitem__(self, key: Any) -> Any:
        if type(key) is str:
            tag = _tag(key)
            if tag is None:
                raise KeyError(f"'{key}'")
            key = tag
        return super().__getitem__(key)


def digest(received: Received) -> str:
    """SHA-256 of the blob as it would be stored."""
    sha = hashlib.sha256(received.prefix)
    stream = _BlobStream(b"", received.body, received.body_offset, received.body_end)
    while chunk := stream.read(CHUNK):
        sha.update(chunk)
    return sha.hexdigest()


class DicomIngest:
    """Stores received instances durably (see the module doc); thread-safe."""

    def __init__(
        self,
        store: DicomInstanceStore,
        blobs: BlobStore,
        *,
        notify_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.notify_change = notify_change

    def ingest(self, received: Received) -> StoreResult:
        """Store one instance; raises ``DicomStoreError``, ``DicomMappingError``,
        ``HubError`` or a pydicom parse error (``_errors.store_status`` maps them)."""
        ts = UID(received.transfer_syntax_uid)
        if received.transfer_syntax_uid != DEFLATED:  # structure first: a cut data set is 0xC000
            check_structure(
                received.body,
                received.body_offset,
                received.body_end,
                implicit=ts.is_implicit_VR,
                little=ts.is_little_endian,
            )
        summary = self._summary(received)
        if received.sop_instance_uid and received.sop_instance_uid != summary.sop_instance_uid:
            raise DicomStoreError(
                DATASET_MISMATCH,
                f"SOP Instance UID differs: command {received.sop_instance_uid},"
                f" data set {summary.sop_instance_uid}",
            )
        if received.sop_class_uid and received.sop_class_uid != summary.sop_class_uid:
            raise DicomStoreError(
                DATASET_MISMATCH,
                f"SOP Class UID differs: command {received.sop_class_uid},"
                f" data set {summary.sop_class_uid}",
            )
        existing = self.store.get(summary.sop_instance_uid)
        if (
            existing is not None
            and existing.sha256 == digest(received)
            and self.blobs.exists(existing.blob_key)
        ):
            return StoreResult(existing, stored=False)
        prefix = "/".join(
            (
                "dicom",
                summary.study_instance_uid,
                summary.series_instance_uid,
                summary.sop_instance_uid,
            )
        )
        body, start, end = received.body, received.body_offset, received.body_end
        stream = _BlobStream(received.prefix, body, start, end)
        ref = self.blobs.put(cast(BinaryIO, stream), prefix=prefix)
        record = DicomInstanceRecord(
            sop_instance_uid=summary.sop_instance_uid,
            study_instance_uid=summary.study_instance_uid,
            series_instance_uid=summary.series_instance_uid,
            sop_class_uid=summary.sop_class_uid,
            transfer_syntax_uid=received.transfer_syntax_uid,
            blob_key=ref.key,
            sha256=ref.sha256,
            size=ref.size,
            summary=summary.to_json_dict(),
            source=received.source,
        )
        try:
            result = self.store.store(record)
        except BaseException:
            self._forget_blob(ref.key, summary.sop_instance_uid)
            raise
        return result

    def _summary(self, received: Received) -> InstanceSummary:
        try:
            received.body.seek(0)
            ds = dcmread(received.body, stop_before_pixels=True, defer_size=DEFER_BYTES)
        except PARSE_ERRORS as exc:
            raise DicomStoreError(CANNOT_UNDERSTAND, f"Cannot parse data set: {exc}") from exc
        if type(ds) is FileDataset:
            ds.__class__ = _HeaderDataset
        return extract_instance_summary(ds, transfer_syntax_uid=received.transfer_syntax_uid)

    def _forget_blob(self, key: str, sop_instance_uid: str) -> None:
        """Remove a blob written for a row that was not committed (unless a row uses it)."""
        try:
            current = self.store.get(sop_instance_uid)
            if current is None or current.blob_key != key:
                self.blobs.delete(key)
        except HubError:
            log.warning("could not remove the orphan blob %s", key)
