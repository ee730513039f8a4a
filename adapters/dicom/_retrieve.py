"""C-MOVE and C-GET SCP of the Query/Retrieve Service Class (DICOM PS3.4 C.4.2, C.4.3; PS3.7
9.1.3, 9.1.4): Patient Root and Study Root MOVE and GET, levels PATIENT / STUDY / SERIES / IMAGE,
sending the stored instances exactly as they were received (no transcoding).

Identifier (hierarchical retrieve, PS3.4 C.4.2.2.1, C.4.3.2.1): the Query/Retrieve Level and unique
keys only (Patient ID, Study / Series / SOP Instance UID). The unique key of the level is required
(UIDs may list several, C.2.2.2.2); unique keys above it narrow when present. It is read by the
C-FIND parser (``adapters.dicom._find.parse_identifier``), then: no level, a level the model lacks,
no unique key of the level, a key with a value that is not a unique key at or above the level, a
wildcard -> 0xA900; undecodable bytes or a malformed UID -> 0xC000.

Statuses (PS3.4 Tables C.4-2 and C.4-3): ``0xFF00`` pending after the first C-STORE sub-operation,
then at most one per ``pending_interval`` s, with the Number of Remaining / Completed / Failed /
Warning Sub-operations; ``0x0000`` all completed;
``0xB000`` some failed or warned, with the Failed SOP Instance UID List (0008,0058); ``0xA702``
(Refused: Out of Resources - unable to perform sub-operations) when none could be performed (the
destination refused or is unreachable, every sub-operation failed) or more than ``max_instances``
instances match; ``0xA801`` Move Destination unknown (not in ``dicom_destinations``); ``0xFE00``
after a C-CANCEL, with the counts and what remained.

pynetdicom's own Query/Retrieve SCP is not used for C-MOVE and C-GET: its handlers yield decoded
``Dataset`` objects (every instance decoded and re-encoded) and it opens the move association
itself (no ``TCP_NODELAY``, no guard against its sender race). The storage SCP hands these
requests to :meth:`Retrieve.serve` (``_scp._PromptAssociation._serve_request``), which sends every
response itself.

Sub-operations send the stored data set (the blob after its PS3.10 file meta) unread, in the
stored transfer syntax, or converted when the peer accepted only a native one (see the last
item): read from the blob in PDU-sized pieces as the connection takes them (at most
``MAX_QUEUED`` PDUs ahead), behind a C-STORE-RQ Command Set encoded here, as are the pending
responses (pynetdicom's encoding of each command cost more than the rest of the sub-operation).

- C-MOVE: one association to the destination (calling AE = our AE title, ``TCP_NODELAY`` through
  ``_destinations.associate``), one presentation context per SOP Class and stored transfer syntax,
  then one per SOP Class offering Explicit and Implicit VR Little Endian (at most 128 in all).
  pynetdicom 3.0's sender race (its association reactor takes the C-STORE-RSP off the queue, logs
  "unexpected C-STORE service message", the sender stalls for the DIMSE timeout) is removed at its
  cause: the reactor of our sending association never takes a message (:class:`_SenderDimse`). And
  guarded: a sub-operation whose response has not come ``timeout`` s after its last byte left (or
  whose bytes the peer stopped taking for as long) aborts the association, which is reopened and
  the instance sent once more; a second silence fails it (logged). A destination that cannot be
  reached again fails the rest.
- C-GET: the C-STORE sub-operations go back over the requester's association, on the storage
  contexts it proposed with the SCP role (SCP/SCU Role Selection, PS3.7 D.3.3.4).
- Either way, an instance goes in its stored syntax when the peer accepted that for its SOP
  Class, else re-encoded or decompressed into Explicit or Implicit VR Little Endian when it
  accepted one of those (``_transcode``); pixel data that cannot be decoded here fail the
  sub-operation.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any, cast

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import C_GET_RSP, C_MOVE_RSP
from pynetdicom.dimse_primitives import C_GET, C_MOVE, C_STORE
from pynetdicom.dsutils import encode
from pynetdicom.dul import DULServiceProvider
from pynetdicom.events import Event
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.presentation import PresentationContext, build_context

from adapters.dicom._audit import AssociationAudit
from adapters.dicom._destinations import Destination, associate
from adapters.dicom._errors import comment
from adapters.dicom._find import (
    CANCEL,
    IDENTIFIER_MISMATCH,
    PATIENT_ROOT_FIND,
    RANK,
    STUDY_ROOT_FIND,
    SUCCESS,
    UNABLE_TO_PROCESS,
    FindError,
    FindRequest,
    matches,
    parse_identifier,
)
from adapters.dicom._part10 import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    read_file_meta,
)
from adapters.dicom._transcode import EXPLICIT_LE, IMPLICIT_LE, can_convert, transcode
from hub.errors import Unprocessable
from hub.ports import BlobStore, DicomInstanceRecord, DicomInstanceStore

log = logging.getLogger("pixelhub.dicom")

PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
MOVE_SOP_CLASSES = (PATIENT_ROOT_MOVE, STUDY_ROOT_MOVE)
GET_SOP_CLASSES = (PATIENT_ROOT_GET, STUDY_ROOT_GET)
FIND_MODEL = {
    PATIENT_ROOT_MOVE: PATIENT_ROOT_FIND,
    PATIENT_ROOT_GET: PATIENT_ROOT_FIND,
    STUDY_ROOT_MOVE: STUDY_ROOT_FIND,
    STUDY_ROOT_GET: STUDY_ROOT_FIND,
}
UNIQUE_KEYS = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}
LEVEL_OF_KEY = {keyword: level for level, keyword in UNIQUE_KEYS.items()}

PENDING = 0xFF00
WARNING = 0xB000  # Sub-operations Complete - One or more Failures or Warnings
UNABLE_TO_PERFORM = 0xA702  # Refused: Out of Resources - Unable to perform sub-operations
UNKNOWN_DESTINATION = 0xA801  # Refused: Move Destination unknown
NO_RESPONSE = 0xFFFF  # our mark (never sent): the association ended before the final response
MAX_CONTEXTS = 128  # presentation context IDs are the odd numbers 1-255 (PS3.8 9.3.2.2)
MAX_UID_LIST = 65534  # an Explicit VR UI value has a 16-bit length (PS3.5 7.1.2)
SENDER_POLL = 0.0002  # s between the idle turns of a sending association's DUL (pynetdicom: 1 ms)
SENDER_IDLE = 0.02  # s a sending association's threads rest while the sending thread has the socket
MAX_QUEUED = 8  # PDUs of an instance waiting for the connection before we read more of it
WRITE_CHUNK = 1 << 20  # bytes of an instance read and written to a plain socket at a time


@dataclass(frozen=True, slots=True)
class Instance:
    """One instance to send: what the C-STORE needs, and its study for the audit."""

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    blob_key: str
    study_instance_uid: str


def parse_retrieve(sop_class_uid: str, identifier: Dataset) -> FindRequest:
    """The IMAGE-level request for the instances a C-MOVE / C-GET identifier names (see the
    module doc); ``FindError`` when the identifier cannot be served."""
    model = FIND_MODEL.get(sop_class_uid)
    if model is None:
        raise FindError(IDENTIFIER_MISMATCH, "Not a supported retrieve SOP Class")
    parsed = parse_identifier(model, identifier)
    rank = RANK[parsed.level]
    for element in parsed.returned:
        try:
            empty = element.VR == "SQ" or element.value in (None, "", b"") or element.VM == 0
        except Exception as exc:
            raise FindError(UNABLE_TO_PROCESS, f"Cannot decode the identifier: {exc}") from None
        if empty:
            continue  # a universal key is no restriction: ignored
        keyword = element.keyword or str(element.tag)
        level = LEVEL_OF_KEY.get(keyword)
        if level is None:
            raise FindError(IDENTIFIER_MISMATCH, f"{keyword} is not a unique key")
        if RANK[level] > rank:
            raise FindError(IDENTIFIER_MISMATCH, f"{keyword} is below the {parsed.level} level")
        if keyword == "PatientID" and "patient_ids" not in parsed.pushed:
            raise FindError(IDENTIFIER_MISMATCH, "Wildcards are not allowed in a retrieve")
    unique = UNIQUE_KEYS[parsed.level]
    if not any(m.keyword == unique for m in parsed.matchers):
        raise FindError(IDENTIFIER_MISMATCH, f"No {unique} for a {parsed.level} retrieve")
    return FindRequest(model, "IMAGE", pushed=dict(parsed.pushed))


def list_instances(
    store: DicomInstanceStore, request: FindRequest, cap: int
) -> tuple[list[Instance], dict[str, DicomInstanceRecord]]:
    """The instances ``request`` matches, in SOP Instance UID order, and one record per study
    (for the audit); ``FindError`` 0xA702 when there are more than ``cap``."""
    found: list[Instance] = []
    studies: dict[str, DicomInstanceRecord] = {}
    for match in matches(store, request):
        if len(found) >= cap:
            raise FindError(
                UNABLE_TO_PERFORM, f"More than {cap} instances match; retrieve less at once"
            )
        record = store.get(match.key)
        if record is None:
            continue  # removed since the index page was read
        found.append(
            Instance(
                record.sop_instance_uid,
                record.sop_class_uid,
                record.transfer_syntax_uid,
                record.blob_key,
                record.study_instance_uid,
            )
        )
        studies.setdefault(record.study_instance_uid, record)
    return found, studies


class NoContext(Exception):
    """No accepted presentation context fits an instance's SOP Class and transfer syntax."""


def sendable(
    accepted: dict[tuple[str, str], int], instance: Instance, blobs: BlobStore
) -> tuple[int, bytes | None]:
    """The accepted context to C-STORE ``instance`` on, and its bytes when they are not the
    stored ones: the stored syntax when accepted for its SOP Class, else Explicit or Implicit
    VR Little Endian when accepted and the instance converts (``_transcode``: re-encoded, or
    decompressed; PS3.4 C.4.2.3.1 and C.4.3.3.1 leave the syntax to the negotiation).
    ``NoContext`` when none fits or the pixel data cannot be decompressed here (logged)."""
    stored = instance.transfer_syntax_uid
    context_id = accepted.get((instance.sop_class_uid, stored))
    if context_id is not None:
        return context_id, None
    for target in (EXPLICIT_LE, IMPLICIT_LE):
        context_id = accepted.get((instance.sop_class_uid, target))
        if context_id is not None and can_convert(stored, target):
            try:
                with blobs.open(instance.blob_key) as blob:
                    return context_id, transcode(blob.read(), target)
            except Unprocessable as exc:
                log.warning("%s not converted to %s: %s", instance.sop_instance_uid, target, exc)
                break
    raise NoContext(instance.sop_instance_uid)


class Unreadable(Exception):
    """An instance's stored blob cannot be opened or is not a PS3.10 file."""


class DestinationLost(Exception):
    """The move destination cannot be reached (again)."""


def storage_contexts(assoc: Association) -> dict[tuple[str, str], int]:
    """``(SOP Class, transfer syntax) -> context ID`` of the accepted contexts on which we may
    send a C-STORE (as requestor by default; as acceptor only with the roles reversed)."""
    found: dict[tuple[str, str], int] = {}
    for context in assoc.accepted_contexts:
        if context.as_scu and context.abstract_syntax and context.context_id is not None:
            key = (str(context.abstract_syntax), str(context.transfer_syntax[0]))
            found.setdefault(key, int(context.context_id))
    return found


def association_gone(assoc: Association) -> bool:
    """The association ended, or its peer aborted it or went away: while a handler runs on the
    reactor's thread, ``is_established`` alone does not change (the reactor updates it)."""
    return not assoc.is_established or not assoc.dul.is_alive() or assoc.acse.is_aborted()


def _element(element: int, value: bytes) -> bytes:
    """A command element (group 0000) in Implicit VR Little Endian (PS3.7 6.3.1, E.1)."""
    return struct.pack("<HHI", 0x0000, element, len(value)) + value


def _us(element: int, value: int) -> bytes:
    return _element(element, struct.pack("<H", value))


def _text(value: str, pad: bytes) -> bytes:
    raw = value.encode("ascii")
    return raw + pad if len(raw) % 2 else raw  # UI pads with NUL, AE with a space (PS3.5 6.2)


def _command(*elements: bytes) -> bytes:
    """A Command Set: the Command Group Length, then ``elements`` (given in tag order)."""
    body = b"".join(elements)
    return _element(0x0000, struct.pack("<I", len(body))) + body


def store_request(instance: Instance, message_id: int, originator: tuple[str, int] | None) -> bytes:
    """The Command Set of a C-STORE-RQ (PS3.7 9.3.1.1, Table 9.3-1), priority medium."""
    move = (
        (_element(0x1030, _text(originator[0], b" ")), _us(0x1031, originator[1]))
        if originator
        else ()
    )
    return _command(
        _element(0x0002, _text(instance.sop_class_uid, b"\0")),
        _us(0x0100, 0x0001),  # Command Field: C-STORE-RQ
        _us(0x0110, message_id),
        _us(0x0700, 0x0000),  # Priority: medium
        _us(0x0800, 0x0000),  # Command Data Set Type: a data set follows
        _element(0x1000, _text(instance.sop_instance_uid, b"\0")),
        *move,
    )


def _put(assoc: Association, context_id: int, flags: int, fragment: bytes, timeout: float) -> None:
    """One PDV to the DUL, once fewer than ``MAX_QUEUED`` PDUs wait to be written, so a large
    instance is read from its blob as the connection takes it; ``TimeoutError`` when the queue
    has not moved for ``timeout`` s, ``ConnectionError`` when the association ended."""
    outgoing = assoc.dul.to_provider_queue
    backlog, since = outgoing.qsize(), time.monotonic()
    while backlog >= MAX_QUEUED:
        if association_gone(assoc):
            raise ConnectionError("association ended")
        time.sleep(0.001)
        now, size = time.monotonic(), outgoing.qsize()
        if size != backlog:
            backlog, since = size, now
        elif now - since > timeout:
            raise TimeoutError("the peer does not read")
    pdata = P_DATA()
    pdata.presentation_data_value_list.append((context_id, bytes([flags]) + fragment))
    assoc.dul.send_pdu(pdata)


def _pdus(context_id: int, pieces: Iterable[tuple[int, bytes]]) -> bytes:
    """P-DATA-TF PDUs (PS3.8 9.3.5), one PDV each (PS3.8 9.3.5.1; its Message Control Header,
    PS3.8 E.2, is ``flags``), for ``(flags, fragment)`` pieces."""
    return b"".join(
        struct.pack(">BBIIBB", 0x04, 0, len(data) + 6, len(data) + 2, context_id, flags) + data
        for flags, data in pieces
    )


def _plain_socket(assoc: Association) -> socket.socket | None:
    """The association's TCP socket when we may write PDUs to it ourselves (not TLS)."""
    transport = assoc.dul.socket
    raw = transport.socket if transport is not None else None
    return raw if isinstance(raw, socket.socket) and not isinstance(raw, ssl.SSLSocket) else None


def _write(assoc: Association, raw: socket.socket, data: bytes, timeout: float) -> None:
    """Write ``data`` to the socket from this thread, as the peer takes it; ``TimeoutError``
    when it takes nothing for ``timeout`` s, ``ConnectionError`` when the association ended."""
    view = memoryview(data)
    since = time.monotonic()
    while view:
        try:
            sent = raw.send(view, socket.MSG_DONTWAIT)
        except BlockingIOError:
            sent = 0
        if sent:
            view, since = view[sent:], time.monotonic()
            continue
        if association_gone(assoc):
            raise ConnectionError("association ended")
        if time.monotonic() - since > timeout:
            raise TimeoutError("the peer does not read")
        select.select([], [raw], [], 0.05)


def send_pdvs(
    assoc: Association,
    context_id: int,
    pieces: list[tuple[int, bytes]],
    timeout: float,
    *,
    direct: bool = False,
) -> None:
    """Send ``(flags, fragment)`` PDVs, handed to the DUL; with ``direct`` on a plain TCP
    socket, written to it from this thread instead. Only for an association on which nothing
    else is sent (our own C-MOVE association): the DUL thread and this one must never write
    at the same time."""
    raw = _plain_socket(assoc) if direct else None
    if raw is not None:
        _write(assoc, raw, _pdus(context_id, pieces), timeout)
        return
    for flags, fragment in pieces:
        _put(assoc, context_id, flags, fragment, timeout)


def _command_pieces(command: bytes, step: int) -> list[tuple[int, bytes]]:
    """A Command Set in PDVs of at most ``step`` bytes (PS3.8 E.2: command, last fragment)."""
    return [
        (0x03 if start + step >= len(command) else 0x01, command[start : start + step])
        for start in range(0, len(command), step)
    ]


def send_stored(
    assoc: Association,
    context_id: int,
    instance: Instance,
    blobs: BlobStore,
    *,
    message_id: int,
    timeout: float,
    originator: tuple[str, int] | None = None,
    direct: bool = False,
    data: bytes | None = None,
) -> int | None:
    """C-STORE one stored instance (PS3.7 9.1.1): the data set after the blob's file meta, read
    in pieces and sent as they are (never decoded). With ``direct`` (``send_pdvs``), the P-DATA
    PDUs are written to the socket from this thread, ``WRITE_CHUNK`` bytes at a time (a hop
    through pynetdicom's DUL thread for each PDU capped the rate at ~2,000 PDUs/s). The
    response's status, or ``None`` when none came ``timeout`` s after the last byte left, the
    peer stopped reading, or the association ended."""
    command = store_request(instance, message_id, originator)
    limit = assoc.dimse.maximum_pdu_size  # the peer's; 0 = no limit
    try:
        blob = BytesIO(data) if data is not None else blobs.open(instance.blob_key)
        offset, _meta = read_file_meta(blob)
        remaining = blob.seek(0, os.SEEK_END) - offset
        blob.seek(offset)
    except Exception as exc:
        raise Unreadable(f"{instance.sop_instance_uid}: {exc}") from exc
    try:
        with blob:
            step = limit - 6 if limit else max(len(command), remaining, 1)  # PDV header: 6
            pieces = _command_pieces(command, step)
            while True:
                send_pdvs(assoc, context_id, pieces, timeout, direct=direct)
                if remaining <= 0:
                    break
                chunk = blob.read(min(max(WRITE_CHUNK, step), remaining))
                if not chunk:
                    raise EOFError(f"blob {instance.blob_key} ended early")
                remaining -= len(chunk)
                pieces = [
                    (0x02 if not remaining and start + step >= len(chunk) else 0x00,
                     chunk[start : start + step])
                    for start in range(0, len(chunk), step)
                ]  # fmt: skip
    except (TimeoutError, ConnectionError) as exc:
        log.warning("C-STORE of %s not sent: %s", instance.sop_instance_uid, exc)
        return None
    except Exception:  # the blob failed mid-message: the association's message stream is broken
        log.exception("C-STORE of %s cut short; association aborted", instance.sop_instance_uid)
        assoc.abort()
        return None
    if direct and isinstance(assoc.dul, _SenderDul) and assoc.dul.user_reads:
        raw = _plain_socket(assoc)
        if raw is not None:
            return _read_response(assoc, raw, message_id, timeout)
    return _response(assoc, message_id, timeout)


def _recv(raw: socket.socket, size: int, deadline: float) -> bytes | None:
    """``size`` bytes from the socket, or ``None`` when it closes or ``deadline`` passes."""
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        wait = deadline - time.monotonic()
        if wait <= 0 or not select.select([raw], [], [], wait)[0]:
            return None
        try:
            n = raw.recv_into(view[got:], size - got)
        except OSError:
            return None
        if not n:
            return None
        got += n
    return bytes(buffer)


def _command_fields(command: bytes) -> dict[int, bytes]:
    """The elements of a Command Set (Implicit VR Little Endian, PS3.7 6.3.1) by element."""
    fields, pos = {}, 0
    while pos + 8 <= len(command):
        _group, element, length = struct.unpack_from("<HHI", command, pos)
        fields[element] = command[pos + 8 : pos + 8 + length]
        pos += 8 + length
    return fields


def _read_response(
    assoc: Association, raw: socket.socket, message_id: int, timeout: float
) -> int | None:
    """Read the C-STORE-RSP to ``message_id`` off our own association's socket in this thread
    (its DUL does not read while ``_SenderDul.user_reads``): P-DATA-TF PDUs (PS3.8 9.3.5) until
    a whole Command Set; its Status. ``None`` when nothing came for ``timeout`` s, or another
    PDU came (A-ABORT, A-RELEASE-RQ): the caller aborts the association."""
    command = bytearray()
    while True:
        deadline = time.monotonic() + timeout
        header = _recv(raw, 6, deadline)
        if header is None or header[0] != 0x04:
            return None
        body = _recv(raw, struct.unpack_from(">I", header, 2)[0], deadline)
        if body is None:
            return None
        assoc.dul._idle_timer.restart()  # the network timeout counts from the last PDU read
        pos = 0
        while pos + 6 <= len(body):
            (length,) = struct.unpack_from(">I", body, pos)
            flags, data = body[pos + 5], body[pos + 6 : pos + 4 + length]
            pos += 4 + length
            if not flags & 0x01:
                continue  # a data set fragment: a C-STORE-RSP has none
            command += data
            if flags & 0x02:
                fields = _command_fields(bytes(command))
                command.clear()
                responding = fields.get(0x0120, b"")
                status = fields.get(0x0900, b"")
                if len(responding) == 2 and struct.unpack("<H", responding)[0] == message_id:
                    return struct.unpack("<H", status)[0] if len(status) == 2 else None
                log.warning("DICOM response ignored while waiting for a C-STORE-RSP")


def _response(assoc: Association, message_id: int, timeout: float) -> int | None:
    """Wait for the C-STORE-RSP to ``message_id``; the silence is counted from the moment the
    request's last PDU left the DUL's queue (a large instance is not a silent peer)."""
    outgoing = assoc.dul.to_provider_queue
    backlog, since = outgoing.qsize(), time.monotonic()
    while True:
        try:
            _context, message = assoc.dimse.msg_queue.get(timeout=0.05)
        except queue.Empty:
            message = None
        if isinstance(message, C_STORE) and message.MessageIDBeingRespondedTo == message_id:
            status = message.Status
            return int(status) if isinstance(status, int) else UNABLE_TO_PROCESS
        if message is not None:
            log.warning("DICOM %s ignored while waiting for a C-STORE-RSP", type(message).__name__)
            continue
        if association_gone(assoc):
            return None
        now, size = time.monotonic(), outgoing.qsize()
        if size != backlog:
            backlog, since = size, now
        elif now - since > timeout:
            return None


class _SenderDimse(DIMSEServiceProvider):
    """The DIMSE provider of our sending associations: their reactor polls ``get_msg(False)``
    for requests to serve and, between a sender's request and its wait, can take the response
    instead (pynetdicom 3.0's sender race). We serve nothing on them: only the blocking wait of
    :func:`_response` takes messages. The reactor's poll rests ``SENDER_IDLE`` s (pynetdicom
    turns every millisecond, each turn taking the GIL from the sending thread); it still sees
    a release or abort of the peer, and the network timeout, at that pace."""

    def get_msg(self, block: bool = False) -> Any:
        if block:
            return super().get_msg(block)
        time.sleep(SENDER_IDLE)
        return None, None


class _SenderDul(DULServiceProvider):
    """The DUL of our C-MOVE association: while ``user_reads``, it leaves the socket to the
    sending thread, which reads each C-STORE-RSP itself (:func:`_read_response`: no hop through
    the DUL thread, the DIMSE decoder and a queue for each sub-operation)."""

    _user_reads = False
    _released: threading.Event | None = None
    _handed_back: threading.Event | None = None

    @property
    def user_reads(self) -> bool:
        return self._user_reads

    @user_reads.setter
    def user_reads(self, value: bool) -> None:
        if self._handed_back is None:
            self._handed_back = threading.Event()
        if value:
            self._handed_back.clear()
        self._user_reads = value
        if not value:
            self._handed_back.set()  # wake the reactor: it reads (and sends) again

    def leave_socket(self, timeout: float) -> bool:
        """Stop reading, and return once a turn of the reactor has seen it (so no read of its
        own is under way): ``False`` if that took longer than ``timeout`` s."""
        self._released = threading.Event()
        self.user_reads = True
        return self._released.wait(timeout)

    def _is_transport_event(self) -> bool:
        """While the sending thread reads, the reactor rests until the socket is handed back
        (at most ``SENDER_IDLE`` s a turn): nothing is queued for it to send meanwhile."""
        if self.user_reads:
            if self._released is not None:
                self._released.set()
            if self._handed_back is not None:
                self._handed_back.wait(SENDER_IDLE)
            return False
        return super()._is_transport_event()


def _quiet_reactor(event: Event) -> None:
    """On a sending association's connection: :class:`_SenderDimse`, and its DUL polling the
    socket every ``SENDER_POLL`` s instead of every millisecond (half the time per sub-operation
    went to waiting for that poll to see the C-STORE-RSP)."""
    assoc = event.assoc
    if type(assoc.dimse) is DIMSEServiceProvider:
        assoc.dimse.__class__ = _SenderDimse
    if type(assoc.dul) is DULServiceProvider:
        assoc.dul.__class__ = _SenderDul
    assoc.dul._run_loop_delay = SENDER_POLL


_CONN_OPEN = (evt.EVT_CONN_OPEN, _quiet_reactor)


@dataclass
class Tally:
    """The sub-operations of one retrieve (PS3.4 C.4.2.1.6)."""

    remaining: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)
    sent: dict[str, list[int]] = field(default_factory=dict)  # study -> [completed, failed]

    def add(self, instance: Instance, status: int | None) -> None:
        self.remaining -= 1
        counts = self.sent.setdefault(instance.study_instance_uid, [0, 0])
        if status == SUCCESS:
            self.completed += 1
            counts[0] += 1
        elif status is not None and status & 0xF000 == 0xB000:
            self.warning += 1
            counts[0] += 1
        else:
            self.failed += 1
            counts[1] += 1
            self.failed_uids.append(instance.sop_instance_uid)

    def final_status(self) -> int:
        if not self.failed and not self.warning:
            return SUCCESS
        return WARNING if self.completed or self.warning else UNABLE_TO_PERFORM


class _Answer:
    """Sends the C-MOVE-RSP / C-GET-RSP messages of one request (PS3.7 9.3.3.2, 9.3.4.2)."""

    def __init__(self, event: Event, timeout: float) -> None:
        self.assoc = event.assoc
        self.timeout = timeout
        self.request = cast(C_MOVE | C_GET, event.request)
        self.context_id = int(event.context.context_id)
        self.syntax = event.context.transfer_syntax
        self.status: int = NO_RESPONSE
        self.comment = ""

    def send(
        self, status: int, tally: Tally | None = None, *, text: str = "", remaining: bool = False
    ) -> None:
        if status == PENDING and tally is not None:
            self._pending(tally)
            return
        response = C_MOVE() if isinstance(self.request, C_MOVE) else C_GET()
        response.MessageIDBeingRespondedTo = self.request.MessageID
        response.AffectedSOPClassUID = self.request.AffectedSOPClassUID
        response.Status = status
        if text:
            response.ErrorComment = comment(text)  # type: ignore[assignment]
        if tally is not None:
            if remaining:
                response.NumberOfRemainingSuboperations = tally.remaining
            response.NumberOfCompletedSuboperations = tally.completed
            response.NumberOfFailedSuboperations = tally.failed
            response.NumberOfWarningSuboperations = tally.warning
            if tally.failed_uids and status != PENDING:
                response.Identifier = BytesIO(self._failed_list(tally.failed_uids))
        if status != PENDING:
            self.status, self.comment = status, text
        message = C_MOVE_RSP() if isinstance(response, C_MOVE) else C_GET_RSP()
        message.primitive_to_message(response)
        limit = self.assoc.dimse.maximum_pdu_size
        pieces = [
            (data[0], data[1:])
            for pdata in message.encode_msg(self.context_id, limit)
            for _context, data in pdata.presentation_data_value_list
        ]
        send_pdvs(self.assoc, self.context_id, pieces, self.timeout)

    def _pending(self, tally: Tally) -> None:
        """A pending response, its Command Set encoded here in one step (one may be sent per
        sub-operation; pynetdicom's encoding of it costs more than the sub-operation's own)."""
        request = self.request
        command = _command(
            _element(0x0002, _text(str(request.AffectedSOPClassUID), b"\0")),
            _us(0x0100, 0x8021 if isinstance(request, C_MOVE) else 0x8010),  # C-MOVE/C-GET-RSP
            _us(0x0120, int(cast(int, request.MessageID))),
            _us(0x0800, 0x0101),  # no data set
            _us(0x0900, PENDING),
            _us(0x1020, tally.remaining),
            _us(0x1021, tally.completed),
            _us(0x1022, tally.failed),
            _us(0x1023, tally.warning),
        )
        limit = self.assoc.dimse.maximum_pdu_size
        step = limit - 6 if limit else len(command)
        send_pdvs(self.assoc, self.context_id, _command_pieces(command, step), self.timeout)

    def _failed_list(self, uids: list[str]) -> bytes:
        """The Failed SOP Instance UID List (0008,0058), cut to what one UI value can hold."""
        kept, size = [], 0
        for uid in uids:
            size += len(uid) + 1
            if size > MAX_UID_LIST:
                break
            kept.append(uid)
        answer = Dataset()
        answer.FailedSOPInstanceUIDList = kept
        syntax = self.syntax
        encoded = encode(answer, syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated)
        return cast(bytes, encoded)


class _MoveLink:
    """The association to a C-MOVE destination, reopened when a sub-operation goes silent."""

    def __init__(self, retrieve: Retrieve, destination: Destination, instances: list[Instance]):
        self.retrieve = retrieve
        self.destination = destination
        pairs = list(dict.fromkeys((i.sop_class_uid, i.transfer_syntax_uid) for i in instances))
        # one context per SOP Class and stored syntax, then, room permitting, one per SOP Class
        # stored in another syntax than Explicit VR Little Endian offering the native ones, for
        # a destination that accepts no compressed syntax (see ``sendable``)
        fallbacks = dict.fromkeys(c for c, syntax in pairs if syntax != EXPLICIT_LE)
        self.contexts: list[PresentationContext] = [
            *(build_context(sop_class, [syntax]) for sop_class, syntax in pairs),
            *(build_context(sop_class, [EXPLICIT_LE, IMPLICIT_LE]) for sop_class in fallbacks),
        ][:MAX_CONTEXTS]
        self.assoc: Association | None = None
        self.accepted: dict[tuple[str, str], int] = {}
        self.reason = ""
        self.retries = 0

    def open(self) -> bool:
        r = self.retrieve
        ae = AE(ae_title=r.ae_title)
        ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
        ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
        ae.acse_timeout = ae.network_timeout = r.acse_timeout
        try:
            assoc = associate(
                ae, self.destination, contexts=self.contexts, handlers=[_CONN_OPEN]
            )  # fmt: skip
        except Exception as exc:  # pynetdicom raises on some socket errors
            self.reason = f"Cannot reach {self.destination.ae_title}: {exc}"
            return False
        if not assoc.is_established:
            what = "rejected" if assoc.is_rejected else "could not open"
            self.reason = f"{self.destination.ae_title} {what} the association"
            if assoc.dul.socket is not None:
                assoc.dul.socket.close()  # pynetdicom leaves a failed request's socket open
            return False
        self.assoc, self.accepted = assoc, storage_contexts(assoc)
        if isinstance(assoc.dul, _SenderDul) and not assoc.dul.leave_socket(r.timeout):
            assoc.dul.user_reads = False  # its reactor is stuck: keep reading through it
        return True

    def send(self, instance: Instance, message_id: int, originator: tuple[str, int]) -> int | None:
        """The sub-operation's status (``None``: failed without one); ``NoContext`` when the
        destination accepted neither the instance's stored syntax for its SOP Class nor one it
        converts to (``sendable``); ``DestinationLost`` when it cannot be reached again."""
        for attempt in (1, 2):
            if self.assoc is None and not self.open():
                raise DestinationLost(self.reason)
            assoc = cast(Association, self.assoc)
            context_id, data = sendable(self.accepted, instance, self.retrieve.blobs)
            status = send_stored(
                assoc, context_id, instance, self.retrieve.blobs, message_id=message_id,
                timeout=self.retrieve.timeout, originator=originator, direct=True, data=data,
            )  # fmt: skip
            if status is not None:
                return status
            self.retries += 1
            log.warning(
                "C-MOVE to %s: no C-STORE response for %s within %.1f s (attempt %d); "
                "association aborted%s", self.destination.ae_title, instance.sop_instance_uid,
                self.retrieve.timeout, attempt, ", retrying" if attempt == 1 else "",
            )  # fmt: skip
            self.close(abort=True)
        return None

    def close(self, *, abort: bool = False) -> None:
        assoc, self.assoc = self.assoc, None
        if assoc is None:
            return
        if isinstance(assoc.dul, _SenderDul):
            assoc.dul.user_reads = False  # the DUL reads the A-RELEASE-RP
        transport = assoc.dul.socket
        raw = transport.socket if transport is not None else None
        try:
            if abort or association_gone(assoc):
                assoc.abort()
            else:
                assoc.release()
        except Exception:
            log.exception("closing the association to %s", self.destination.ae_title)
        finally:
            # pynetdicom 3.0 leaves the socket open when the peer has already gone (its
            # shutdown raises ENOTCONN before close): close it here
            if raw is not None:
                with contextlib.suppress(OSError):
                    raw.close()


class Retrieve:
    """C-MOVE and C-GET over the instance store (see the module doc)."""

    def __init__(
        self,
        store: DicomInstanceStore,
        blobs: BlobStore,
        *,
        ae_title: str,
        destinations: dict[str, Destination],
        max_instances: int = 10000,
        timeout: float = 5.0,
        acse_timeout: float = 30.0,
        audit: AssociationAudit | None = None,
        pending_interval: float = 0.1,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.ae_title = ae_title
        self.destinations = destinations
        self.max_instances = min(max_instances, 0xFFFF)  # the counts are US (PS3.7 E.1)
        self.timeout = timeout
        self.acse_timeout = acse_timeout
        self.audit = audit
        self.pending_interval = pending_interval

    def serve(
        self,
        event: Event,
        calling: tuple[str, str | None],
        read_identifier: Callable[[Event], Dataset],
    ) -> None:
        """Answer one C-MOVE or C-GET request on ``event.assoc``: every response, pending and
        final, is sent here; one audit event per request."""
        request = cast(C_MOVE | C_GET, event.request)
        move = isinstance(request, C_MOVE)
        answer = _Answer(event, self.timeout)
        sop_class = str(request.AffectedSOPClassUID or "")
        tally = Tally(0)
        studies: dict[str, DicomInstanceRecord] = {}
        target = str(request.MoveDestination or "").strip() if isinstance(request, C_MOVE) else ""
        try:
            destination = None
            if move:
                destination = self.destinations.get(target)
                if destination is None:
                    raise FindError(UNKNOWN_DESTINATION, f"Move destination {target} unknown")
            wanted = parse_retrieve(sop_class, read_identifier(event))
            instances, studies = list_instances(self.store, wanted, self.max_instances)
            tally.remaining = len(instances)
            if destination is not None:
                self._move(event, answer, tally, instances, destination, calling[0])
            else:
                self._get(event, answer, tally, instances)
        except FindError as exc:
            log.warning(
                "C-%s from %s refused 0x%04X: %s", "MOVE" if move else "GET", calling[0],
                exc.status, exc.comment,
            )  # fmt: skip
            answer.send(exc.status, text=exc.comment)
        except Exception:
            log.exception("C-%s from %s failed", "MOVE" if move else "GET", calling[0])
            if not association_gone(event.assoc):
                answer.send(UNABLE_TO_PROCESS, tally, text="Internal error")
        finally:
            if self.audit is not None:
                self.audit.retrieved(
                    *calling,
                    destination=target if move else calling[0],
                    studies={uid: (counts, studies.get(uid)) for uid, counts in tally.sent.items()},
                    status=answer.status,
                    reason=answer.comment,
                )

    def _run(
        self,
        event: Event,
        answer: _Answer,
        tally: Tally,
        instances: Iterable[Instance],
        send: Callable[[Instance, int], int | None],
    ) -> None:
        """The sub-operation loop, then the final response; C-CANCEL is looked at before each
        sub-operation. Pending responses are optional (PS3.4 C.4.2.3.1, C.4.3.3.1): one after
        the first sub-operation, then at most one per ``pending_interval`` s, never after the
        last (sent after every sub-operation, they cost about a third of a fast move)."""
        assoc = event.assoc
        last_pending: float | None = None
        first_id = int(cast(int, answer.request.MessageID))
        pending = list(instances)
        for n, instance in enumerate(pending):
            if event.is_cancelled:
                answer.send(CANCEL, tally, remaining=True)
                return
            if association_gone(assoc):
                return
            try:
                status = send(instance, (first_id + n) % 0xFFFF + 1)
            except DestinationLost as exc:
                for rest in pending[n:]:
                    tally.add(rest, None)
                answer.send(tally.final_status(), tally, text=str(exc))
                return
            except NoContext:
                status = None
            except Unreadable as exc:
                log.error("C-STORE sub-operation failed, stored instance unreadable: %s", exc)
                status = None
            tally.add(instance, status)
            now = time.monotonic()
            if tally.remaining and (
                last_pending is None or now - last_pending >= self.pending_interval
            ):
                answer.send(PENDING, tally, remaining=True)
                last_pending = now
        answer.send(tally.final_status(), tally)

    def _move(
        self,
        event: Event,
        answer: _Answer,
        tally: Tally,
        instances: list[Instance],
        destination: Destination,
        originator: str,
    ) -> None:
        if not instances:
            answer.send(SUCCESS, tally)
            return
        link = _MoveLink(self, destination, instances)
        origin = (originator, int(cast(int, answer.request.MessageID)))
        try:
            self._run(
                event, answer, tally, instances, lambda i, m: link.send(i, m, origin)
            )  # fmt: skip
        finally:
            link.close()
            if link.retries:
                log.warning(
                    "C-MOVE to %s: %d silent sub-operation(s)", destination.ae_title, link.retries
                )

    def _get(self, event: Event, answer: _Answer, tally: Tally, instances: list[Instance]) -> None:
        """C-GET sub-operations over the requester's association, each in the syntax
        :func:`sendable` picks among the contexts it accepted."""
        assoc = event.assoc
        accepted = storage_contexts(assoc)

        def send(instance: Instance, message_id: int) -> int | None:
            context_id, data = sendable(accepted, instance, self.blobs)
            return send_stored(
                assoc, context_id, instance, self.blobs, message_id=message_id,
                timeout=self.timeout, data=data,
            )  # fmt: skip

        self._run(event, answer, tally, instances, send)
