"""Retrieving stored instances, shared by WADO-RS and WADO-URI (DICOM PS3.18 10.4 Retrieve
Transaction, 9 WADO-URI): the instances a request names and may see, the transfer syntax each is
served in, their bytes streamed as stored, DICOM JSON metadata with Bulk Data URIs (PS3.18 F.2),
frames and bulk data, each request audited once.

Transfer syntax negotiation (PS3.18 8.7.3): the stored bytes are served unchanged whenever the
client accepts them: ``transfer-syntax=*``, the stored syntax named, or any media type (``*/*``,
no ``Accept``). ``type="application/dicom"`` without a transfer syntax means the standard's
default, Explicit VR Little Endian: a native instance is re-encoded (Implicit <-> Explicit VR), a
compressed one decompressed when pydicom has a decoder for it. PixelHub never compresses: asking
for a compressed syntax other than the stored one is answered 406, naming the stored syntax.
"""

from __future__ import annotations

import logging
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import orjson
from fastapi import Request
from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.pixels.utils import pack_bits
from pydicom.uid import UID

from adapters.dicom._transcode import (
    DECODE_ERRORS,
    EXPLICIT_LE,
    NATIVE_LE,
    can_convert,
    can_decode,
    transcode,
)
from adapters.dicom.web._access import DicomWeb
from adapters.dicom.web._media import (
    DICOM,
    OCTET,
    MediaRange,
    check_uid,
    closing,
    part_head,
    pixel_media,
)
from adapters.dicom.web._render import decode_frame, frame_count
from hub.auth import Principal
from hub.errors import (
    HubError,
    InvalidRequest,
    NotAcceptable,
    NotFound,
    OutOfResources,
    Unprocessable,
)
from hub.ports import BlobStore, DicomInstanceRecord
from mappings.interaction_to_auditevent import Outcome

log = logging.getLogger("pixelhub.dicomweb")
CHUNK = 1 << 20  # blob reads: large chunks, each one hop to a worker thread
BULK_THRESHOLD = 1024  # binary values above this many bytes become BulkDataURIs (PS3.18 F.2.6)
_PIXEL_TAGS = {0x7FE00010: "OB", 0x7FE00008: "OF", 0x7FE00009: "OD"}


class Transfer:
    """One retrieve request, audited once when it ends (PS3.15 A.5.3.4 DICOM Instances
    Transferred, action Read): success with the number of instances, or the error's reason."""

    def __init__(self, web: DicomWeb, request: Request, study_uid: str) -> None:
        self.web, self.request, self.study_uid = web, request, study_uid
        self.principal: Principal | None = None
        self.instances = 0

    def __enter__(self) -> Transfer:
        try:
            self.principal = self.web.principal(self.request)
        except HubError as exc:  # 401 too is audited, as on /fhir
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        outcome: Outcome
        if exc is None:
            outcome, reason = "0", None
        elif isinstance(exc, HubError):
            outcome, reason = ("4" if exc.status < 500 else "8"), exc.message
        else:
            outcome, reason = "8", "internal error"
        try:
            studies = [check_uid(self.study_uid, "Study Instance UID")]
        except InvalidRequest:
            studies = []
        self.web.audit_transfer(
            self.request, self.principal, study_uids=studies, action="R",
            outcome=outcome, instances=self.instances if exc is None else 0, reason=reason,
        )  # fmt: skip

    def select(
        self, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[DicomInstanceRecord]:
        """The instances of the study (series, instance) the caller may read; 404 otherwise."""
        assert self.principal is not None
        study = check_uid(self.study_uid, "Study Instance UID")
        series = check_uid(series_uid, "Series Instance UID") if series_uid else None
        sop = check_uid(sop_uid, "SOP Instance UID") if sop_uid else None
        self.web.check_study(self.principal, study)
        if sop is not None:
            record = self.web.store.get(sop)
            found = [record] if record is not None else []
        else:
            found = self.web.store.instances_of_study(study)
        found = [
            r
            for r in found
            if r.study_instance_uid == study and series in (None, r.series_instance_uid)
        ]
        if not found:
            what = f"Instance {sop}" if sop else f"Series {series}" if series else f"Study {study}"
            raise NotFound(f"{what} not found")
        self.instances = len(found)
        return sorted(found, key=_order)


def _order(record: DicomInstanceRecord) -> tuple[str, int, str]:
    number = record.summary.get("instance_number")
    return record.series_instance_uid, int(number or 0), record.sop_instance_uid


# ------------------------------------------------------------------ transfer syntaxes


def dicom_accept(ranges: list[MediaRange]) -> tuple[bool, list[str]]:
    """From ``Accept``: whether a multipart body is wanted, and the transfer syntaxes acceptable
    for its application/dicom parts, preferred first (``*``: any, i.e. as stored)."""
    picks: list[tuple[bool, str]] = []
    for r in ranges:
        if r.type == "*/*" or (r.multipart and r.part_type in ("*/*", "*")):
            picks.append((True, r.transfer_syntax or "*"))
        elif r.multipart and r.part_type == DICOM:
            picks.append((True, r.transfer_syntax or EXPLICIT_LE))
        elif r.type == DICOM:
            picks.append((False, r.transfer_syntax or EXPLICIT_LE))
    if not picks:
        asked = ", ".join(r.type + (f"; type={r.part_type}" if r.multipart else "") for r in ranges)
        raise NotAcceptable(
            f'Instances are served as multipart/related; type="application/dicom", not {asked}'
        )
    multipart = picks[0][0]
    return multipart, [ts for wants_multipart, ts in picks if wants_multipart == multipart]


def target_syntaxes(records: Sequence[DicomInstanceRecord], wanted: list[str]) -> list[str]:
    """The syntax each instance is served in: the first of ``wanted`` it can be served in."""
    targets = []
    for record in records:
        stored = record.transfer_syntax_uid
        target = next((t for t in wanted if t in ("*", stored) or can_convert(stored, t)), None)
        if target is None:
            options = f"transfer-syntax=* or {stored}"
            if can_convert(stored, EXPLICIT_LE):
                options += f" or {EXPLICIT_LE}"
            raise NotAcceptable(
                f"Instance {record.sop_instance_uid} is stored as {stored} "
                f"({UID(stored).name}); PixelHub does not compress, so it is served in "
                f"{options}, not in {', '.join(wanted)}"
            )
        targets.append(stored if target == "*" else target)
    return targets


def instance_bytes(blobs: BlobStore, record: DicomInstanceRecord, target: str) -> bytes:
    with blobs.open(record.blob_key) as fp:
        data = fp.read()
    return data if target == record.transfer_syntax_uid else transcode(data, target)


def stream_instances(
    blobs: BlobStore, records: Sequence[DicomInstanceRecord], targets: Sequence[str], boundary: str
) -> Iterator[bytes]:
    """The multipart body: each part the Part 10 file as stored (read in large chunks, never
    decoded) or, where a conversion was negotiated, re-encoded; small pieces are joined into
    blocks of about ``CHUNK`` bytes (one worker-thread hop and one socket write each)."""
    return _coalesce(_pieces(blobs, records, targets, boundary), CHUNK)


def stored_length(
    records: Sequence[DicomInstanceRecord], targets: Sequence[str], boundary: str
) -> int | None:
    """The length of :func:`stream_instances`' body when every part is served as stored (its
    ``Content-Length``: no chunked framing), else ``None``."""
    if any(t != r.transfer_syntax_uid for r, t in zip(records, targets, strict=True)):
        return None
    heads = sum(
        len(part_head(boundary, f"{DICOM}; transfer-syntax={t}", r.size, first=i == 0)) + r.size
        for i, (r, t) in enumerate(zip(records, targets, strict=True))
    )
    return heads + len(closing(boundary, empty=not records))


def _pieces(
    blobs: BlobStore, records: Sequence[DicomInstanceRecord], targets: Sequence[str], boundary: str
) -> Iterator[bytes]:
    for index, (record, target) in enumerate(zip(records, targets, strict=True)):
        content_type = f"{DICOM}; transfer-syntax={target}"
        first = index == 0
        if target != record.transfer_syntax_uid:
            data = instance_bytes(blobs, record, target)
            yield part_head(boundary, content_type, len(data), first=first)
            yield data
            continue
        yield part_head(boundary, content_type, record.size, first=first)
        left = record.size
        with blobs.open(record.blob_key) as fp:
            while left > 0 and (chunk := fp.read(min(CHUNK, left))):
                left -= len(chunk)
                yield chunk
        if left:  # the blob is not the size recorded: abort rather than send a corrupt body
            raise OutOfResources(f"Blob of instance {record.sop_instance_uid} is truncated")
    yield closing(boundary, empty=not records)


def _coalesce(pieces: Iterator[bytes], size: int) -> Iterator[bytes]:
    batch: list[bytes] = []
    held = 0
    for piece in pieces:
        batch.append(piece)
        held += len(piece)
        if held >= size:
            yield b"".join(batch) if len(batch) > 1 else batch[0]
            batch, held = [], 0
    if batch:
        yield b"".join(batch)


# ------------------------------------------------------------------ metadata (PS3.18 F.2)


def instance_metadata(blobs: BlobStore, record: DicomInstanceRecord, base: str) -> dict[str, Any]:
    """The instance as DICOM JSON (PS3.18 F.2): binary values over 1 KiB and the pixel data as
    Bulk Data URIs ``{instance}/bulkdata/{tag}[/{item}/{tag}...]`` (items numbered from 1)."""
    uri = (
        f"{base}/studies/{record.study_instance_uid}/series/{record.series_instance_uid}"
        f"/instances/{record.sop_instance_uid}/bulkdata"
    )
    with blobs.open(record.blob_key) as fp:
        ds = dcmread(fp, stop_before_pixels=True)
        following = fp.read(4)  # the tag the reader stopped before, if any
    out = dataset_json(ds, uri)
    if len(following) == 4:
        group, element = struct.unpack("<HH", following)
        tag = group << 16 | element
        if tag in _PIXEL_TAGS:
            vr = _PIXEL_TAGS[tag]
            if tag == 0x7FE00010 and not UID(record.transfer_syntax_uid).is_encapsulated:
                vr = "OW" if int(ds.get("BitsAllocated") or 8) > 8 else "OB"
            out[f"{tag:08X}"] = {"vr": vr, "BulkDataURI": f"{uri}/{tag:08X}"}
    out["00083002"] = {"vr": "UI", "Value": [record.transfer_syntax_uid]}
    return dict(sorted(out.items()))


class MetadataCache:
    """The DICOM JSON of instances (serialised), by blob and base URL, most recently used kept
    up to ``limit`` bytes (and always the newest). Blobs are content-addressed, so an entry never
    goes stale: a replaced instance has another blob. Viewers read a study's metadata often."""

    def __init__(self, limit: int = 64 << 20) -> None:
        self.limit = limit
        self._items: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, blobs: BlobStore, record: DicomInstanceRecord, base: str) -> bytes:
        key = (record.blob_key, base)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        value = orjson.dumps(instance_metadata(blobs, record, base))
        with self._lock:
            if key not in self._items:
                self._items[key] = value
                self._bytes += len(value)
            while self._bytes > self.limit and len(self._items) > 1:
                self._bytes -= len(self._items.popitem(last=False)[1])
        return value


def dataset_json(ds: Dataset, uri: str) -> dict[str, Any]:
    """``ds`` as DICOM JSON, nested items' bulk data addressed below ``uri``."""
    out: dict[str, Any] = {}
    for elem in ds:
        if elem.tag.element == 0:  # group lengths are not carried (PS3.18 F.2)
            continue
        key = f"{elem.tag:08X}"
        try:
            out[key] = _element_json(elem, f"{uri}/{key}")
        except (ValueError, TypeError, AttributeError) as exc:
            log.debug("DICOM JSON: element %s left empty: %s", key, exc)
            out[key] = {"vr": elem.VR}
    return out


def _element_json(elem: DataElement, uri: str) -> dict[str, Any]:
    if elem.VR == "SQ":
        items = [dataset_json(item, f"{uri}/{n}") for n, item in enumerate(elem.value, 1)]
        return {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
    result: dict[str, Any] = elem.to_json_dict(lambda _elem: uri, BULK_THRESHOLD)
    return result


# ------------------------------------------------------------------ frames and bulk data


def read_instance(blobs: BlobStore, record: DicomInstanceRecord) -> Dataset:
    with blobs.open(record.blob_key) as fp:
        return dcmread(fp)


@dataclass(frozen=True)
class FrameChoice:
    """How the frames of one instance are served: each part's content type, and whether the
    stored pixel data must be decoded to native."""

    part_type: str
    content_type: str
    decode: bool = False


def frame_choice(ranges: list[MediaRange], stored: str) -> FrameChoice:
    """Negotiate pixel data media types (PS3.18 8.7.3): the stored form
    (native as application/octet-stream, compressed as image/jpeg, image/jp2...) whenever
    acceptable; native from compressed when application/octet-stream is asked without
    ``transfer-syntax=*`` and a decoder is installed; else 406."""
    native = not UID(stored).is_encapsulated
    label = EXPLICIT_LE if stored in NATIVE_LE else stored
    media = OCTET if native else pixel_media(stored)
    as_stored = FrameChoice(media, f"{media}; transfer-syntax={label}")
    for r in ranges:
        ts = r.transfer_syntax
        if r.type == "*/*" or (r.multipart and r.part_type in ("*/*", "*")):
            if ts in (None, "*", label):
                return as_stored
        elif not r.multipart:
            continue
        elif r.part_type == OCTET:
            if ts == "*" or (native and ts in (None, label)):
                return FrameChoice(OCTET, f"{OCTET}; transfer-syntax={label}")
            if ts in (None, EXPLICIT_LE) and can_decode(stored):
                return FrameChoice(OCTET, f"{OCTET}; transfer-syntax={EXPLICIT_LE}", decode=True)
        elif not native and r.matches(media) and ts in (None, "*", stored):
            return as_stored
    asked = ", ".join(f"{r.type}; type={r.part_type}" if r.multipart else r.type for r in ranges)
    raise NotAcceptable(
        f"Pixel data stored as {stored} ({UID(stored).name}) are served as "
        f'multipart/related; type="{media}"'
        + ("" if native else f' or, decoded, type="{OCTET}"' if can_decode(stored) else "")
        + f"; not as {asked}"
    )


def frames_of(ds: Dataset, numbers: Sequence[int], choice: FrameChoice) -> list[bytes]:
    """Frames ``numbers`` (1-based, already checked against Number of Frames)."""
    count = frame_count(ds)
    if choice.decode:
        return [decode_frame(ds, n).tobytes() for n in numbers]
    if ds.file_meta.TransferSyntaxUID.is_encapsulated:
        offsets = None
        if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
            offsets = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
        try:
            return [
                get_frame(ds.PixelData, n - 1, number_of_frames=count, extended_offsets=offsets)
                for n in numbers
            ]
        except DECODE_ERRORS as exc:
            raise Unprocessable(f"The encapsulated pixel data are damaged: {exc}") from exc
    rows, columns = int(ds.Rows), int(ds.Columns)
    bits = rows * columns * int(ds.get("SamplesPerPixel") or 1) * int(ds.BitsAllocated)
    if bits % 8:  # 1-bit frames need not start on a byte boundary
        return [pack_bits(decode_frame(ds, n, raw=True)) for n in numbers]
    size = bits // 8
    pixels = ds.PixelData
    if len(pixels) < max(numbers) * size:
        raise Unprocessable(
            f"The pixel data hold {len(pixels)} bytes, short of frame {max(numbers)}"
        )
    return [bytes(pixels[(n - 1) * size : n * size]) for n in numbers]


def check_pixels(ds: Dataset, sop: str) -> None:
    if "PixelData" not in ds:
        raise NotFound(f"Instance {sop} has no pixel data, hence no frames")


def bulk_element(ds: Dataset, path: str) -> DataElement:
    """The element at ``{tag}[/{item}/{tag}...]`` (the BulkDataURI form of
    :func:`instance_metadata`); a malformed path is 400, a missing element 404."""
    tokens = path.strip("/").split("/")
    if len(tokens) % 2 == 0 or len(tokens) > 15:
        raise InvalidRequest(f"Bulk data path {path[:80]!r}: expected tag[/item/tag...]")
    node = ds
    for index, token in enumerate(tokens):
        if index % 2 == 0:
            if len(token) != 8 or any(c not in "0123456789abcdefABCDEF" for c in token):
                raise InvalidRequest(f"Bulk data path: {token[:20]!r} is not a tag (ggggeeee)")
            elem = node.get(int(token, 16))
            if elem is None:
                raise NotFound(f"No element {token.upper()} at bulk data path {path}")
            if index == len(tokens) - 1:
                return elem
            if elem.VR != "SQ":
                raise NotFound(f"Element {token.upper()} is not a sequence")
        else:
            if not token.isdigit() or not 1 <= int(token) <= len(elem.value):
                raise NotFound(f"No item {token[:20]} in sequence at bulk data path {path}")
            node = elem.value[int(token) - 1]
    raise NotFound(f"Nothing at bulk data path {path}")  # unreachable: the last token is a tag
