"""The DIMSE storage SCP: Verification (C-ECHO) and the Storage Service Class (C-STORE) for
every standard storage SOP Class and transfer syntax (DICOM PS3.4 A.4, B.2; PS3.7 9.1.1, 9.1.5;
PS3.8 upper layer), with pynetdicom.

What pynetdicom does not do by itself, done here:

- ``TCP_NODELAY`` on every association socket (set on the listening socket, inherited by accepted
  ones, and again per connection), and ``TCP_QUICKACK`` before each read, so neither Nagle's
  algorithm on our side nor delayed ACKs stall a sender (~40 ms per message otherwise);
- received data sets are spooled: kept in memory up to ``spool_threshold`` bytes, then written to
  an anonymous temporary file under the data dir (:class:`_Spool`), prefixed with the PS3.10 file
  meta built from the C-STORE command, so a large object is never held whole in memory and a
  transfer cut short leaves nothing behind;
- the calling AE title (and optionally the peer address) allow-list: others get an
  A-ASSOCIATE-RJ "calling AE title not recognised" (PS3.8 9.3.4);
- per-association study bookkeeping: when an association is released or aborted, its studies are
  flagged for aggregation at once instead of after the quiet period;
- no polling: pynetdicom's two threads per association sleep 1 ms per idle turn (a delay on every
  message, and ~5% of a core per idle association). Here the DUL waits in ``select`` on its socket
  and a wake-up pipe (:class:`_PatientDul`), the association reactor on its message queue
  (:class:`_PromptAssociation`, :class:`_SpoolingDimse`), each woken by the other;
- less CPU per message: PDUs read into one buffer, a plain C-STORE-RSP encoded directly
  (:func:`_plain_response`), and the supported presentation contexts copied shallowly for each
  association (:class:`_SupportedContexts`) instead of deep-copied.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import queue
import select
import socket
import ssl
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from io import BytesIO
from typing import IO, Any, BinaryIO, cast

from pydicom._uid_dict import UID_dictionary
from pydicom.dataset import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, _config, evt
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import C_STORE_RQ, DIMSEMessage
from pynetdicom.dimse_primitives import C_FIND, C_GET, C_MOVE, C_STORE, N_ACTION, N_CREATE, N_SET
from pynetdicom.dsutils import decode, encode
from pynetdicom.dul import DULServiceProvider
from pynetdicom.events import Event, EventHandlerType
from pynetdicom.fsm import TRANSITION_TABLE
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.presentation import PresentationContext
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import register_uid, uid_to_service_class
from pynetdicom.transport import ThreadedAssociationServer

from adapters.dicom._audit import AssociationAudit
from adapters.dicom._commitment import (
    INVALID_ARGUMENT,
    STORAGE_COMMITMENT,
    CommitmentError,
    CommitmentRequest,
    StorageCommitment,
)
from adapters.dicom._destinations import Destination
from adapters.dicom._errors import (
    PARSE_ERRORS,
    SUCCESS,
    DicomStoreError,
    comment,
    store_status,
)
from adapters.dicom._find import (
    CANCEL,
    FIND_SOP_CLASSES,
    OUT_OF_RESOURCES,
    PENDING,
    UNABLE_TO_PROCESS,
    FindError,
    encode_response,
    matches,
    parse_identifier,
    response,
)
from adapters.dicom._ingest import DicomIngest, Received
from adapters.dicom._mpps import (
    INVALID_ATTRIBUTE_VALUE,
    MPPS_SOP_CLASS,
    MppsError,
    PerformedProcedureSteps,
)
from adapters.dicom._part10 import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, file_meta
from adapters.dicom._retrieve import (
    GET_SOP_CLASSES,
    MOVE_SOP_CLASSES,
    Retrieve,
    association_gone,
)
from adapters.dicom._structure import check_structure
from adapters.dicom._worklist import MODALITY_WORKLIST_FIND, Worklist
from hub.errors import HubError
from hub.peers import peer_rules
from hub.ports import DicomInstanceStore
from mappings.dicom_instance import DicomMappingError

log = logging.getLogger("pixelhub.dicom")

# Every standard transfer syntax (PS3.5 Annex A, PS3.6 Table A-1), accepted as received. Where a
# context proposes several, the first here that it lists is accepted: Explicit VR Little Endian
# before Implicit, as most instances are stored in it and a C-GET sends them back unconverted on
# the contexts its requester proposed (pynetdicom's acceptor follows its own order, not theirs).
TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired)
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (Process 2 & 4)
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Non-Hierarchical (Process 14)
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless, SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless Only
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.92",  # JPEG 2000 Part 2 Multi-component Lossless Only
    "1.2.840.10008.1.2.4.93",  # JPEG 2000 Part 2 Multi-component
    "1.2.840.10008.1.2.4.94",  # JPIP Referenced
    "1.2.840.10008.1.2.4.95",  # JPIP Referenced Deflate
    "1.2.840.10008.1.2.4.100",  # MPEG2 Main Profile / Main Level
    "1.2.840.10008.1.2.4.100.1",  # Fragmentable MPEG2 MP@ML
    "1.2.840.10008.1.2.4.101",  # MPEG2 Main Profile / High Level
    "1.2.840.10008.1.2.4.101.1",  # Fragmentable MPEG2 MP@HL
    "1.2.840.10008.1.2.4.102",  # MPEG-4 AVC/H.264 High Profile / Level 4.1
    "1.2.840.10008.1.2.4.102.1",
    "1.2.840.10008.1.2.4.103",  # MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1
    "1.2.840.10008.1.2.4.103.1",
    "1.2.840.10008.1.2.4.104",  # MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video
    "1.2.840.10008.1.2.4.104.1",
    "1.2.840.10008.1.2.4.105",  # MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video
    "1.2.840.10008.1.2.4.105.1",
    "1.2.840.10008.1.2.4.106",  # MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2
    "1.2.840.10008.1.2.4.106.1",
    "1.2.840.10008.1.2.4.107",  # HEVC/H.265 Main Profile / Level 5.1
    "1.2.840.10008.1.2.4.108",  # HEVC/H.265 Main 10 Profile / Level 5.1
    "1.2.840.10008.1.2.4.110",  # JPEG XL Lossless
    "1.2.840.10008.1.2.4.111",  # JPEG XL JPEG Recompression
    "1.2.840.10008.1.2.4.112",  # JPEG XL
    "1.2.840.10008.1.2.4.201",  # High-Throughput JPEG 2000 Lossless Only
    "1.2.840.10008.1.2.4.202",  # High-Throughput JPEG 2000 with RPCL Options Lossless Only
    "1.2.840.10008.1.2.4.203",  # High-Throughput JPEG 2000
    "1.2.840.10008.1.2.4.204",  # JPIP HTJ2K Referenced
    "1.2.840.10008.1.2.4.205",  # JPIP HTJ2K Referenced Deflate
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.6.1",  # RFC 2557 MIME encapsulation (retired)
    "1.2.840.10008.1.2.6.2",  # XML Encoding (retired)
    "1.2.840.10008.1.2.7.1",  # SMPTE ST 2110-20 Uncompressed Progressive Active Video
    "1.2.840.10008.1.2.7.2",  # SMPTE ST 2110-20 Uncompressed Interlaced Active Video
    "1.2.840.10008.1.2.7.3",  # SMPTE ST 2110-30 PCM Digital Audio
    "1.2.840.10008.1.2.8.1",  # Deflated Image Frame Compression
]
VERIFICATION = "1.2.840.10008.1.1"  # Verification SOP Class (PS3.4 A.4)
ECHO_SYNTAXES = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"]
SPOOL_THRESHOLD = 2 * 1024 * 1024
MAX_IDENTIFIER = 64 * 1024  # a C-FIND identifier larger than this is refused (0xA700)
MAX_N_DATASET = 16 * 1024 * 1024  # an N-CREATE/N-SET/N-ACTION data set larger is refused
PROCESSING_FAILURE = 0x0110  # N-service failure (PS3.7 C.4.x)
NO_SUCH_SOP_CLASS = 0x0118

# Non-Patient Object Storage (PS3.4 Annex GG) has no patient, study or series to index.
NON_PATIENT_OBJECTS = frozenset(
    {
        "1.2.840.10008.5.1.4.38.1",  # Hanging Protocol
        "1.2.840.10008.5.1.4.39.1",  # Color Palette
        "1.2.840.10008.5.1.4.43.1",  # Generic Implant Template
        "1.2.840.10008.5.1.4.44.1",  # Implant Assembly Template
        "1.2.840.10008.5.1.4.45.1",  # Implant Template Group
        "1.2.840.10008.5.1.4.1.1.200.1",  # CT Defined Procedure Protocol
        "1.2.840.10008.5.1.4.1.1.200.3",  # Protocol Approval
        "1.2.840.10008.5.1.4.1.1.200.7",  # XA Defined Procedure Protocol
        "1.2.840.10008.5.1.4.1.1.201.1",  # Inventory
        "1.2.840.10008.1.3.10",  # Media Storage Directory (DICOMDIR, never sent by C-STORE)
    }
)


def storage_sop_classes() -> list[str]:
    """Every standard storage SOP Class of composite patient objects, retired ones included
    (old modalities still send them): pynetdicom's storage contexts plus the storage classes of
    the PS3.6 UID registry as pydicom ships it."""
    found = {str(c.abstract_syntax) for c in AllStoragePresentationContexts if c.abstract_syntax}
    for uid, (name, kind, *_rest) in UID_dictionary.items():
        if kind == "SOP Class" and "Storage" in name and "Commitment" not in name:
            found.add(uid)
    return sorted(found - NON_PATIENT_OBJECTS)


def _register_storage_classes(uids: Iterable[str]) -> None:
    """Tell pynetdicom which service class serves the storage classes it does not list (the
    retired ones): the Storage Service Class (PS3.4 B)."""
    for uid in uids:
        if uid_to_service_class(uid) is not StorageServiceClass:
            register_uid(uid, "PixelHubStorage_" + uid.replace(".", "_"), StorageServiceClass)


@dataclass(frozen=True)
class PeerRule:
    """One ``dicom_allowed_peers`` entry: a calling AE title, optionally ``@address``."""

    ae_title: str
    address: str | None = None

    @classmethod
    def parse(cls, entry: str) -> PeerRule:
        title, _, address = entry.strip().partition("@")
        title = title.strip()
        if not title or len(title) > 16:
            raise ValueError(f"dicom_allowed_peers entry {entry!r}: expected AET[@address]")
        return cls(title, address.strip() or None)

    def allows(self, ae_title: str, address: str | None) -> bool:
        return ae_title.strip() == self.ae_title and self.address in (None, address)


def parse_peers(entries: Iterable[str], *, demo: bool) -> list[PeerRule] | None:
    """The allowed calling AE titles (``None`` = any; see ``hub.peers.peer_rules``)."""
    return peer_rules(entries, demo=demo, setting="dicom_allowed_peers", parse=PeerRule.parse)


class _Spool(BytesIO):
    """Receives one C-STORE data set: the PS3.10 file meta first, then the data set fragments;
    in memory up to ``threshold`` bytes, then in an anonymous temporary file (never named on
    disk, so nothing is left if the transfer is cut short or the process dies).

    It is a ``BytesIO`` because pynetdicom accepts nothing else as a data set; only ``write``
    is called while the message is received.
    """

    def __init__(
        self, message: DIMSEMessage, assoc: Association, directory: str, threshold: int
    ) -> None:
        super().__init__()
        self._message: DIMSEMessage | None = message
        self._assoc: Association | None = assoc
        self._directory = directory
        self._threshold = threshold
        self._file: IO[bytes] | None = None
        self.meta = b""
        self.transfer_syntax_uid = ""

    def _start(self) -> None:
        message, assoc = self._message, self._assoc
        self._message = self._assoc = None
        if not isinstance(message, C_STORE_RQ) or assoc is None:
            return
        command = message.command_set
        context = assoc._accepted_cx.get(cast(int, message.context_id))
        if context is None:
            return
        self.transfer_syntax_uid = str(context.transfer_syntax[0])
        self.meta = file_meta(
            str(command.AffectedSOPClassUID or ""),
            str(command.AffectedSOPInstanceUID or ""),
            self.transfer_syntax_uid,
        )
        super().write(self.meta)

    def write(self, data: Any) -> int:
        if self._message is not None:
            self._start()
        if self._file is None:
            if super().tell() + len(data) <= self._threshold:
                return super().write(data)
            self._file = tempfile.TemporaryFile(dir=self._directory, prefix="cstore-")  # noqa: SIM115
            self._file.write(super().getvalue())
            super().seek(0)
            super().truncate(0)
        return self._file.write(data)

    @property
    def size(self) -> int:
        if self._file is not None:
            return self._file.seek(0, os.SEEK_END)
        return len(super().getbuffer())

    def reader(self) -> IO[bytes]:
        """The received bytes (file meta + data set), for reading from the start."""
        if self._file is not None:
            self._file.flush()
            self._file.seek(0)
            return self._file
        self.seek(0)
        return self

    def discard(self) -> None:
        """Free the memory and remove the temporary file."""
        self._message = self._assoc = None
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        if not self.closed:
            super().seek(0)
            super().truncate(0)


IDLE_WAIT = 0.05  # longest a reactor waits without news (timers are checked this often)
_WAKE = (None, None)  # put on the DIMSE message queue: "look at the association state"


def drop_late_pdata(dul: DULServiceProvider) -> None:
    """Make ``dul`` drop a P-DATA asked for (Evt9) once its association is released or aborted
    (PS3.8 9.2: not allowed in Sta1, Sta7 or Sta13): a report or response that lost the race
    with the peer's leaving. pynetdicom raises ``InvalidEventError`` in the DUL thread instead;
    here the sender sees no answer and goes its own way."""
    machine = dul.state_machine
    act = machine.do_action

    def do_action(event: str) -> None:
        if event == "Evt9" and (event, machine.current_state) not in TRANSITION_TABLE:
            peer = StorageScp._peer(dul.assoc)
            log.info("DICOM message to %s dropped: association closing", peer)
            return
        act(event)

    setattr(machine, "do_action", do_action)  # noqa: B010 (instance override)


class _PatientDul(DULServiceProvider):
    """pynetdicom's DUL reactor sleeps ``_run_loop_delay`` (1 ms) whenever a turn found nothing
    to do: a thousand wake-ups a second per idle association (~5% of a core) and up to a
    millisecond of delay for each received PDU and each response sent. This variant (assigned to
    the association's DUL before it starts) waits in ``select`` on its socket and on a wake-up
    pipe written whenever the service user queues a primitive for it, so it reacts at once to
    both and costs nothing while idle; ``IDLE_WAIT`` bounds the wait so timers are checked.

    It also reads PDUs with ``recv_into`` into one buffer (pynetdicom reads 4 KiB at a time)
    and, for the association reactor waiting in :meth:`_SpoolingDimse.get_msg`, wakes that
    reactor whenever it hands the service user a primitive (release, abort) or stops."""

    _wake_r = -1
    _wake_w = -1

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"!")

    def run(self) -> None:  # the thread's body (its target, ``run_reactor``, was bound earlier)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        to_provider, to_user = self.to_provider_queue, self.to_user_queue
        put_provider, put_user = to_provider.put, to_user.put

        def provider_put(item: Any, block: bool = True, timeout: float | None = None) -> None:
            put_provider(item, block, timeout)
            self._wake()

        def user_put(item: Any, block: bool = True, timeout: float | None = None) -> None:
            put_user(item, block, timeout)
            self._wake_user()

        setattr(to_provider, "put", provider_put)  # noqa: B010 (instance override)
        setattr(to_user, "put", user_put)  # noqa: B010
        drop_late_pdata(self)
        try:
            super().run()
        finally:
            self._wake_user()
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1

    def _wake_user(self) -> None:
        dimse = getattr(self.assoc, "dimse", None)
        if isinstance(dimse, _SpoolingDimse):
            dimse.msg_queue.put(_WAKE)

    @property
    def _run_loop_delay(self) -> float:
        transport = self.socket
        raw = transport.socket if transport is not None else None
        waits: list[Any] = [self._wake_r] if self._wake_r >= 0 else []
        if raw is not None:
            if isinstance(raw, ssl.SSLSocket) and raw.pending():
                return 0.0  # decrypted bytes already buffered: select would not see them
            waits.append(raw)
        if not waits or self.to_provider_queue.qsize():
            return 0.0
        with contextlib.suppress(OSError, ValueError):
            ready, _, _ = select.select(waits, [], [], IDLE_WAIT)
            if self._wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
        return 0.0

    @_run_loop_delay.setter
    def _run_loop_delay(self, value: float) -> None:
        pass  # set once by DULServiceProvider.__init__; replaced by the select above


_SELF_ANSWERED = {C_FIND: evt.EVT_C_FIND, C_MOVE: evt.EVT_C_MOVE, C_GET: evt.EVT_C_GET}


class _PromptAssociation(Association):
    """pynetdicom's acceptor reactor sleeps 1 ms before each look for a message, so every
    C-STORE on an association waits up to that long after its predecessor's response. This
    variant (assigned before the association starts) waits in :meth:`_SpoolingDimse.get_msg`
    only, which returns as soon as a message is complete or the DUL has news; the checks
    after each turn (A-RELEASE, A-ABORT, DUL stopped, network timeout) are pynetdicom's."""

    def _run_reactor(self) -> None:
        self._is_paused = False
        while not self._kill:
            self._is_paused = True
            self._reactor_checkpoint.wait()  # paused while the acceptor sends on its own
            self._is_paused = False
            context_id, msg = self.dimse.get_msg(block=False)
            if msg:
                self._serve_request(msg, cast(int, context_id))
            if self._ended():
                return

    def _serve_request(self, msg: Any, context_id: int) -> None:
        """C-FIND, C-MOVE and C-GET go to their handlers (``StorageScp.handle_find``,
        ``handle_move``, ``handle_get``), which send every response themselves (pynetdicom's own
        Query/Retrieve SCP would decode each instance to move, and build and encode a pydicom
        data set per C-FIND match); the rest is served by pynetdicom."""
        context = self._accepted_cx.get(context_id)
        event = _SELF_ANSWERED.get(type(msg))
        if event is None or not msg.is_valid_request or context is None:
            super()._serve_request(msg, context_id)
            return
        self.dimse.cancel_req = {}
        self._is_paused = True
        try:
            evt.trigger(
                self, event, {
                    "request": msg, "context": context.as_tuple,
                    "_is_cancelled": lambda msg_id: msg_id in self.dimse.cancel_req,
                },
            )  # fmt: skip
        except Exception:
            log.exception("DICOM %s from %s failed", msg.msg_type, StorageScp._peer(self))
            self.abort()
        finally:
            self._is_paused = False
            self.dimse.cancel_req = {}

    def _ended(self) -> bool:
        """Handle the end of the association, if it came (PS3.8 7.2, 7.3; PS3.7 7.5)."""
        if self.is_established and self.acse.is_release_requested():
            self.acse.send_release(is_response=True)
            self.is_released, self.is_established = True, False
            evt.trigger(self, evt.EVT_RELEASED, {})
        elif self.acse.is_aborted():
            self.dul.receive_pdu(wait=False)  # EVT_ACSE_RECV for the A-ABORT
            self.is_aborted, self.is_established = True, False
            evt.trigger(self, evt.EVT_ABORTED, {})
        elif not self.dul.is_alive():
            pass
        elif self.dul.idle_timer_expired():
            log.warning("DICOM association from %s: network timeout", StorageScp._peer(self))
            if self.network_timeout_response == "A-RELEASE":
                self._is_paused = True
                self._reactor_checkpoint.wait()
                self.release()
                self._is_paused = False
            else:
                self.abort()
        else:
            return False
        self.kill()
        return True


def _recv_exactly(raw: socket.socket, nr_bytes: int) -> bytearray:
    """``nr_bytes`` from ``raw`` (fewer if the peer closes): what pynetdicom's
    ``AssociationSocket.recv`` returns, read into one buffer instead of 4 KiB pieces."""
    buffer = bytearray(nr_bytes)
    view = memoryview(buffer)
    got = 0
    while got < nr_bytes:
        n = raw.recv_into(view[got:], nr_bytes - got)
        if not n:
            del view
            del buffer[got:]
            return buffer
        got += n
    return buffer


def _ui(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw  # UI is padded with NUL (PS3.5 6.2)


_COMMAND_FIELD = {C_STORE: 0x8001, C_FIND: 0x8020}  # C-STORE-RSP, C-FIND-RSP (PS3.7 E.1)


def _plain_response(rsp: C_STORE | C_FIND) -> bytes | None:
    """The Command Set of a C-STORE-RSP (PS3.7 9.3.1.2, Table 9.3-2) or C-FIND-RSP (9.3.2.2,
    Table 9.3-4) in Implicit VR Little Endian (PS3.7 6.3.1), elements in tag order, the Command
    Group Length first; ``None`` when it carries more than a status (an Error Comment,
    Offending Element...) or is a request. A C-FIND-RSP announces a data set when it has an
    Identifier (a pending response)."""
    if rsp.MessageIDBeingRespondedTo is None or rsp.ErrorComment or rsp.OffendingElement:
        return None
    status = rsp.Status
    if not isinstance(status, int):
        return None
    has_data = isinstance(rsp, C_FIND) and rsp.Identifier is not None
    parts = []
    if rsp.AffectedSOPClassUID:
        uid = _ui(str(rsp.AffectedSOPClassUID))
        parts.append(struct.pack("<HHI", 0x0000, 0x0002, len(uid)) + uid)
    parts.append(struct.pack("<HHIH", 0x0000, 0x0100, 2, _COMMAND_FIELD[type(rsp)]))
    parts.append(struct.pack("<HHIH", 0x0000, 0x0120, 2, int(rsp.MessageIDBeingRespondedTo)))
    parts.append(struct.pack("<HHIH", 0x0000, 0x0800, 2, 0x0001 if has_data else 0x0101))
    parts.append(struct.pack("<HHIH", 0x0000, 0x0900, 2, status))
    if isinstance(rsp, C_STORE) and rsp.AffectedSOPInstanceUID:
        uid = _ui(str(rsp.AffectedSOPInstanceUID))
        parts.append(struct.pack("<HHI", 0x0000, 0x1000, len(uid)) + uid)
    body = b"".join(parts)
    return struct.pack("<HHII", 0x0000, 0x0000, 4, len(body)) + body


class _SpoolingDimse(DIMSEServiceProvider):
    """pynetdicom's DIMSE provider, receiving each message's data set into a :class:`_Spool`;
    the association reactor's poll for the next message waits on the message queue (at most
    ``IDLE_WAIT``, woken early by :class:`_PatientDul`) instead of spinning every millisecond."""

    def __init__(self, assoc: Association, directory: str, threshold: int) -> None:
        super().__init__(assoc)
        self._directory = directory
        self._threshold = threshold
        self._after_response: list[Callable[[], None]] = []

    def after_response(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the response being prepared has been queued for sending: a
        request the SCP sends on its own (the N-EVENT-REPORT after an N-ACTION, PS3.4 J.3.2)
        must not interleave with it (pynetdicom lets another thread send while an SCP
        handler runs)."""
        self._after_response.append(callback)

    def get_msg(self, block: bool = False) -> Any:
        if block:
            while (item := super().get_msg(block)) is _WAKE and self.dul.is_alive():
                pass
            return item
        try:  # woken by a complete message, or by the DUL (primitive for us, or stopped)
            return self.msg_queue.get(timeout=IDLE_WAIT)
        except queue.Empty:
            return _WAKE

    def send_msg(self, primitive: Any, context_id: int) -> None:
        """A plain C-STORE-RSP or C-FIND-RSP (a status, and a pending response's encoded
        Identifier) is encoded here in one step; pynetdicom builds a pydicom data set and
        encodes it twice, ~15% of the CPU an instance costs and most of what a C-FIND match
        costs (and triggers ``EVT_DIMSE_SENT``, which this SCP does not bind). Everything else
        goes through pynetdicom."""
        plain = isinstance(primitive, (C_STORE, C_FIND))
        command = _plain_response(primitive) if plain else None
        limit = self.maximum_pdu_size
        if command is None or (limit and len(command) + 6 > limit):
            super().send_msg(primitive, context_id)
            callbacks, self._after_response = self._after_response, []
            for callback in callbacks:
                callback()
            return
        pdvs = [b"\x03" + command]
        identifier = primitive.Identifier if isinstance(primitive, C_FIND) else None
        if identifier is not None:  # the data set in PDVs of at most the peer's PDU size
            data = identifier.getvalue()
            step = limit - 6 if limit else max(len(data), 1)
            pdvs += [
                (b"\x02" if start + step >= len(data) else b"\x00") + data[start : start + step]
                for start in range(0, len(data), step)
            ]
        for pdv in pdvs:
            pdata = P_DATA()
            pdata.presentation_data_value_list.append((context_id, pdv))
            self.dul.send_pdu(pdata)

    def receive_primitive(self, primitive: P_DATA) -> None:
        if self.message is None:
            message = DIMSEMessage()
            message.data_set = _Spool(message, self.assoc, self._directory, self._threshold)
            self.message = message
        super().receive_primitive(primitive)

    def discard_partial(self) -> None:
        """Drop a message whose transfer did not finish (association aborted or closed)."""
        message = self.message
        if message is not None and isinstance(message.data_set, _Spool):
            message.data_set.discard()


class _SupportedContexts(list[PresentationContext]):
    """The SCP's supported presentation contexts. pynetdicom deep-copies them for every
    association it accepts; with every storage SOP Class times every transfer syntax that took
    ~100 ms of CPU per association (holding the GIL). Each association gets its own context
    objects and lists here too, copied shallowly (the UIDs in them are immutable strings)."""

    def __deepcopy__(self, memo: dict[int, Any]) -> list[PresentationContext]:
        copies = []
        for context in self:
            twin = copy.copy(context)
            for name, value in vars(twin).items():
                if isinstance(value, list):
                    setattr(twin, name, list(value))
            copies.append(twin)
        return copies


class AcceptTurns:
    """Which receiving process accepts a new connection on the listening socket they share
    (``_processes``). Every process's acceptor wakes for it; one serving more associations than
    the least busy process lets it be, for up to ``patience`` seconds (after that it takes it,
    in case the other cannot), so associations spread evenly even when they come in a burst.
    ``counts`` is shared memory: each process's number of associations, at ``slot``."""

    def __init__(self, counts: Any, slot: int, patience: float = 0.1) -> None:
        self.counts = counts
        self.slot = slot
        self.patience = patience
        self._deferring_since = 0.0
        self._last_turn = 0.0

    def mine(self, active: int) -> bool:
        counts = self.counts
        counts[self.slot] = active
        now = time.monotonic()
        if now - self._last_turn > self.patience / 4:  # a new connection, not the one deferred
            self._deferring_since = now
        self._last_turn = now
        return active <= min(counts) or now - self._deferring_since >= self.patience

    def leave(self) -> None:
        """Stopped (or dead): never the least busy, so nobody waits for this process."""
        self.counts[self.slot] = 1 << 30


def _server_class(scp: StorageScp) -> type[ThreadedAssociationServer]:
    """The SCP's association server: bound to its own socket, or in a receiving process
    accepting on the hub's (``scp.listener``); when processes share the socket, accepting only
    in its turn (``scp.turns``)."""

    class Server(ThreadedAssociationServer):
        def server_bind(self) -> None:
            if scp.listener is None:
                super().server_bind()
                return
            assert self.socket is not None
            self.socket.close()
            scp.listener.settimeout(0)  # see ``StorageScp.share_listener``
            self.socket = scp.listener
            self.server_address = scp.listener.getsockname()

        def get_request(self) -> tuple[socket.socket, Any]:
            turns = scp.turns
            if turns is None:
                return super().get_request()
            active = len(self.active_associations)
            if not turns.mine(active):
                time.sleep(0.001)
                raise BlockingIOError("another process takes this connection")
            accepted = super().get_request()
            turns.counts[turns.slot] = active + 1  # before its association thread runs
            return accepted

    return Server


def _tune_socket(raw: socket.socket) -> None:
    with contextlib.suppress(OSError):
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class StorageScp:
    """A storage SCP serving on ``host:port`` until ``stop`` (see the module doc)."""

    def __init__(
        self,
        ingest: DicomIngest,
        store: DicomInstanceStore,
        *,
        ae_title: str,
        host: str,
        port: int,
        peers: list[PeerRule] | None,
        spool_dir: str,
        max_associations: int = 20,
        max_pdu: int = 0,
        acse_timeout: float = 30.0,
        dimse_timeout: float = 30.0,
        network_timeout: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
        spool_threshold: int = SPOOL_THRESHOLD,
        notify_change: Callable[[], None] = lambda: None,
        audit: AssociationAudit | None = None,
        max_find_results: int = 10000,
        destinations: dict[str, Destination] | None = None,
        worklist: Worklist | None = None,
        mpps: PerformedProcedureSteps | None = None,
        commitment: StorageCommitment | None = None,
        max_retrieve_instances: int = 10000,
        suboperation_timeout: float = 5.0,
        pending_interval: float = 0.1,
        listener: socket.socket | None = None,
        turns: AcceptTurns | None = None,
        resume_commitments: bool = True,
    ) -> None:
        self.ingest = ingest
        self.listener = listener  # the hub's listening socket, in a receiving process
        self.turns = turns
        self.resume_commitments = resume_commitments  # the reports left by an earlier run
        self.destinations = destinations or {}
        self.worklist, self.mpps, self.commitment = worklist, mpps, commitment
        self.max_find_results = max_find_results
        self.audit = audit
        self.store = store
        self.host = host
        self.port = port
        self.peers = peers
        self.spool_dir = spool_dir
        self.spool_threshold = spool_threshold
        self.ssl_context = ssl_context
        self.notify_change = notify_change
        self._studies: dict[int, set[str]] = {}
        self._lock = threading.Lock()
        self._server: ThreadedAssociationServer | None = None
        self.bound_port = 0
        ae = AE(ae_title=ae_title)
        ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
        ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
        classes = storage_sop_classes()
        _register_storage_classes(classes)
        for sop_class in classes:
            # both roles: a C-GET requester proposes the SCP role for the storage classes it
            # takes (PS3.7 D.3.3.4); a plain C-STORE sender proposes none and keeps the default
            ae.add_supported_context(sop_class, TRANSFER_SYNTAXES, scu_role=True, scp_role=True)
        ae.add_supported_context(VERIFICATION, ECHO_SYNTAXES)
        for sop_class in FIND_SOP_CLASSES:
            ae.add_supported_context(sop_class, ECHO_SYNTAXES)
        for sop_class, service in (
            (MODALITY_WORKLIST_FIND, worklist),
            (MPPS_SOP_CLASS, mpps),
            (STORAGE_COMMITMENT, commitment),
        ):
            if service is not None:
                ae.add_supported_context(sop_class, ECHO_SYNTAXES)
        for sop_class in (*MOVE_SOP_CLASSES, *GET_SOP_CLASSES):
            ae.add_supported_context(sop_class, ECHO_SYNTAXES)
        self.retrieve = Retrieve(
            store, ingest.blobs, ae_title=ae_title, destinations=self.destinations,
            max_instances=max_retrieve_instances, timeout=suboperation_timeout,
            acse_timeout=acse_timeout, audit=audit, pending_interval=pending_interval,
        )  # fmt: skip
        ae.maximum_pdu_size = max_pdu
        ae.maximum_associations = max_associations
        ae.acse_timeout = acse_timeout
        ae.dimse_timeout = dimse_timeout
        ae.network_timeout = network_timeout
        ae.require_called_aet = True
        self.ae = ae

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> int:
        """Bind and serve in background threads; returns the bound port."""
        os.makedirs(self.spool_dir, exist_ok=True)
        _config.LOG_HANDLER_LEVEL = "none"  # no per-message log formatting on the hot path
        # nor identifiers decoded and pretty-printed for a log that drops them (and holds PHI)
        _config.LOG_REQUEST_IDENTIFIERS = _config.LOG_RESPONSE_IDENTIFIERS = False
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
        handlers: list[EventHandlerType] = [
            (evt.EVT_CONN_OPEN, self.handle_conn_open),
            (evt.EVT_REQUESTED, self.handle_requested),
            (evt.EVT_ACCEPTED, self.handle_accepted),
            (evt.EVT_REJECTED, self.handle_rejected),
            (evt.EVT_C_ECHO, self.handle_echo),
            (evt.EVT_C_STORE, self.handle_store),
            (evt.EVT_C_FIND, self.handle_find),
            (evt.EVT_N_CREATE, self.handle_n_create),
            (evt.EVT_N_SET, self.handle_n_set),
            (evt.EVT_N_ACTION, self.handle_n_action),
            (evt.EVT_C_MOVE, self.handle_move),
            (evt.EVT_C_GET, self.handle_get),
            (evt.EVT_RELEASED, self.handle_ended),
            (evt.EVT_ABORTED, self.handle_ended),
            (evt.EVT_CONN_CLOSE, self.handle_ended),
        ]
        server = self.ae.make_server(
            (self.host, self.port),
            evt_handlers=handlers,
            ssl_context=self.ssl_context,
            server_class=_server_class(self),
        )
        threading.Thread(target=server.serve_forever, name="dicom-acceptor", daemon=True).start()
        self.ae._servers.append(server)  # what AE.start_server does; AssociationServer.shutdown
        server.contexts = _SupportedContexts(server.contexts)
        if server.socket is not None:
            _tune_socket(server.socket)  # accepted sockets inherit TCP_NODELAY (Linux)
        self._server = server
        self.bound_port = int(server.server_address[1])
        if self.commitment is not None and self.resume_commitments:
            self.commitment.start()  # re-send the reports still pending
        log.info("DICOM storage SCP %s listening on port %d", self.ae.ae_title, self.bound_port)
        return self.bound_port

    def share_listener(self, turns: AcceptTurns) -> socket.socket:
        """The listening socket, for other processes to accept on too. It no longer waits in
        ``accept``: each process's acceptor wakes for every new connection, the one whose turn
        it is accepts it and the others go back to waiting."""
        assert self._server is not None and self._server.socket is not None
        self.turns = turns
        self._server.socket.settimeout(0)
        return self._server.socket

    def active(self) -> list[Association]:
        return [] if self._server is None else self._server.active_associations

    def stop(self, timeout: float) -> None:
        """Stop accepting; let in-flight associations finish for ``timeout`` s, then abort."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        if self.turns is not None:
            self.turns.leave()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = [a for a in server.active_associations if a.is_alive()]
            if not running:
                break
            time.sleep(0.02)
        for assoc in server.active_associations:
            if assoc.is_alive():
                log.warning("aborting DICOM association from %s at shutdown", self._peer(assoc))
                assoc.abort()
        for assoc in server.active_associations:
            assoc.join(5)
        if self.commitment is not None:
            self.commitment.stop(max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------------ handlers

    @staticmethod
    def _peer(assoc: Association) -> str:
        title = assoc.requestor.ae_title or "?"
        try:
            address = assoc.requestor.address
        except ValueError:
            address = "?"
        return f"{title.strip()}@{address}"

    def handle_conn_open(self, event: Event) -> None:
        """Socket options and the spooling DIMSE provider, before the association starts."""
        assoc = event.assoc
        transport = assoc.dul.socket
        if transport is not None and transport.socket is not None:
            raw = transport.socket
            _tune_socket(raw)
            quickack = hasattr(socket, "TCP_QUICKACK")

            def recv(nr_bytes: int) -> bytearray:
                # Linux drops quick-ACK mode after a while: re-arm it before every read.
                if quickack:
                    with contextlib.suppress(OSError):
                        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
                return _recv_exactly(raw, nr_bytes)

            setattr(transport, "recv", recv)  # noqa: B010 (instance override)
        assoc.dimse = _SpoolingDimse(assoc, self.spool_dir, self.spool_threshold)
        if type(assoc.dul) is DULServiceProvider:
            assoc.dul.__class__ = _PatientDul
        if type(assoc) is Association:
            assoc.__class__ = _PromptAssociation

    def handle_requested(self, event: Event) -> None:
        """A-ASSOCIATE-RJ (permanent, service user, calling AE title not recognised) for a peer
        not in the allow-list (PS3.8 9.3.4)."""
        assoc = event.assoc
        if self.peers is None:
            return
        request = assoc.requestor.primitive
        title = str(request.calling_ae_title if request is not None else "").strip()
        try:
            address: str | None = assoc.requestor.address
        except ValueError:
            address = None
        if any(rule.allows(title, address) for rule in self.peers):
            return
        log.warning("DICOM association from %s@%s rejected: not an allowed peer", title, address)
        assoc.acse.send_reject(0x01, 0x01, 0x03)
        assoc.is_rejected = True
        evt.trigger(assoc, evt.EVT_REJECTED, {"reason": "calling AE title not allowed"})
        assoc.kill()

    def _calling(self, assoc: Association) -> tuple[str, str | None]:
        request = assoc.requestor.primitive
        title = str(request.calling_ae_title if request is not None else "").strip() or "?"
        try:
            address: str | None = assoc.requestor.address
        except ValueError:
            address = None
        return title, address

    def handle_accepted(self, event: Event) -> None:
        """Audit: the association was accepted (PS3.15 A.5.3.11 Node Authentication)."""
        if self.audit is not None:
            self.audit.association(*self._calling(event.assoc), accepted=True)

    def handle_rejected(self, event: Event) -> None:
        """Audit: the association was rejected, by the allow-list or by pynetdicom (called AE
        title, no acceptable presentation context)."""
        if self.audit is not None:
            reason = getattr(event, "reason", None) or "association rejected"
            self.audit.association(*self._calling(event.assoc), accepted=False, reason=reason)

    def handle_echo(self, event: Event) -> int:
        """C-ECHO: success (PS3.4 A.4)."""
        return SUCCESS

    def handle_store(self, event: Event) -> int | Dataset:
        """C-STORE (PS3.4 B.2.3): success only once the instance is durable; otherwise the
        failure status with an Error Comment (0000,0902)."""
        request = cast(C_STORE, event.request)
        spool = request.DataSet
        assoc = event.assoc
        try:
            if not isinstance(spool, _Spool) or not spool.meta:
                raise ValueError("no data set received")
            received = Received(
                body=cast(BinaryIO, spool.reader()),
                body_offset=len(spool.meta),
                body_end=spool.size,
                prefix=spool.meta,
                transfer_syntax_uid=spool.transfer_syntax_uid,
                sop_class_uid=str(request.AffectedSOPClassUID or ""),
                sop_instance_uid=str(request.AffectedSOPInstanceUID or ""),
                source=self._peer(assoc),
            )
            result = self.ingest.ingest(received)
            with self._lock:
                self._studies.setdefault(id(assoc), set()).add(result.record.study_instance_uid)
            if self.audit is not None:
                self.audit.stored(id(assoc), result.record)
            return SUCCESS
        except Exception as exc:
            status, text = store_status(exc)
            level = logging.ERROR if status == 0xC000 and not _expected(exc) else logging.WARNING
            log.log(
                level,
                "C-STORE %s from %s refused 0x%04X: %s",
                request.AffectedSOPInstanceUID,
                self._peer(assoc),
                status,
                text,
                exc_info=not _expected(exc),
            )
            if self.audit is not None:
                self.audit.refused(id(assoc), f"0x{status:04X} {text}")
            answer = Dataset()
            answer.Status = status
            answer.ErrorComment = text
            return answer
        finally:
            if isinstance(spool, _Spool):
                spool.discard()

    def handle_find(self, event: Event) -> None:
        """C-FIND (PS3.4 C.4.1.3.1, Patient/Study Root, ``adapters.dicom._find``; K.4.1.3,
        Modality Worklist, ``adapters.dicom._worklist``), dispatched by
        ``_PromptAssociation._serve_request``: each match a pending response, then success;
        cancel, failure or the result cap end it early (PS3.7 9.1.2, 9.3.2.2)."""
        request = cast(C_FIND, event.request)
        responses = self._find_responses(event)
        with contextlib.closing(responses):
            for status, identifier in responses:
                if association_gone(event.assoc):
                    return
                answer = C_FIND()
                answer.MessageIDBeingRespondedTo = request.MessageID
                answer.AffectedSOPClassUID = request.AffectedSOPClassUID
                if isinstance(status, Dataset):
                    answer.Status, answer.ErrorComment = status.Status, status.ErrorComment
                else:
                    answer.Status = status
                if identifier is not None:
                    answer.Identifier = BytesIO(identifier)
                event.assoc.dimse.send_msg(answer, event.context.context_id)

    def _find_responses(self, event: Event) -> Generator[tuple[int | Dataset, bytes | None]]:
        """The C-FIND's responses: status, and a pending response's encoded identifier. One
        audit event per query (PS3.15 A.5.3.10 Query), written before the final response is
        sent (or when the association ends mid-answer)."""
        request = cast(C_FIND, event.request)
        sop_class = str(request.AffectedSOPClassUID or "")
        state = _FindState()

        def done(status: int, text: str) -> Dataset | int:
            if self.audit is not None and not state.audited:
                state.audited = True
                self.audit.query(
                    *self._calling(event.assoc),
                    sop_class_uid=sop_class,
                    identifier=state.raw,
                    status=status,
                    matches=state.sent,
                    reason=text,
                    transfer_syntax=str(event.context.transfer_syntax),
                )
            return status if status in (SUCCESS, CANCEL) else _failure(status, text)

        try:
            try:
                raw = self._identifier_bytes(request)
                state.raw = raw
                try:
                    identifier = _decode(raw, event.context.transfer_syntax)
                except Exception as exc:
                    raise FindError(UNABLE_TO_PROCESS, f"Cannot decode identifier: {exc}") from None
                for answer in self._answers(sop_class, identifier, event):
                    if event.is_cancelled:
                        yield done(CANCEL, "cancelled by the SCU"), None
                        return
                    if state.sent >= self.max_find_results:
                        text = f"More than {self.max_find_results} matches; narrow the query"
                        yield done(OUT_OF_RESOURCES, text), None
                        return
                    state.sent += 1
                    yield PENDING, answer
                if event.is_cancelled:
                    yield done(CANCEL, "cancelled by the SCU"), None
                    return
                yield done(SUCCESS, ""), None
            except FindError as exc:
                log.warning(
                    "C-FIND from %s refused 0x%04X: %s", self._peer(event.assoc), exc.status,
                    exc.comment,
                )  # fmt: skip
                yield done(exc.status, exc.comment), None
            except Exception as exc:
                status, text = store_status(exc)
                if status != OUT_OF_RESOURCES:
                    status = UNABLE_TO_PROCESS
                    log.exception("C-FIND from %s failed", self._peer(event.assoc))
                yield done(status, text), None
        finally:
            done(0xFFFF, "association ended before the last response")

    @staticmethod
    def _identifier_bytes(request: C_FIND | C_MOVE | C_GET) -> bytes:
        """The request's encoded identifier (at most ``MAX_IDENTIFIER`` bytes, else 0xA700)."""
        spool = request.Identifier
        raw = b""
        if isinstance(spool, _Spool):
            raw = spool.reader().read(MAX_IDENTIFIER + 1)
            spool.discard()
        elif spool is not None:
            raw = spool.getvalue()[: MAX_IDENTIFIER + 1]
        if len(raw) > MAX_IDENTIFIER:
            raise FindError(OUT_OF_RESOURCES, "Identifier too large")
        return raw

    def handle_move(self, event: Event) -> None:
        """C-MOVE (PS3.4 C.4.2; ``adapters.dicom._retrieve``), dispatched by
        ``_PromptAssociation._serve_request``: the handler sends every response itself."""
        self.retrieve.serve(event, self._calling(event.assoc), self._retrieve_identifier)

    def handle_get(self, event: Event) -> None:
        """C-GET (PS3.4 C.4.3; ``adapters.dicom._retrieve``), as ``handle_move``."""
        self.retrieve.serve(event, self._calling(event.assoc), self._retrieve_identifier)

    def _retrieve_identifier(self, event: Event) -> Dataset:
        raw = self._identifier_bytes(cast(C_MOVE | C_GET, event.request))
        try:
            return _decode(raw, event.context.transfer_syntax)
        except Exception as exc:
            raise FindError(UNABLE_TO_PROCESS, f"Cannot decode identifier: {exc}") from None

    def _answers(self, sop_class: str, identifier: Dataset, event: Event) -> Iterator[bytes]:
        """The pending responses' identifiers of a C-FIND, encoded in the context's transfer
        syntax (Query/Retrieve answers in Little Endian straight from the match's values)."""
        syntax = event.context.transfer_syntax
        if sop_class == MODALITY_WORKLIST_FIND and self.worklist is not None:
            for item in self.worklist.answers(identifier, *self._calling(event.assoc)):
                yield _encoded(item, syntax)
            return
        parsed = parse_identifier(sop_class, identifier)
        aet = self.ae.ae_title
        direct = syntax.is_little_endian and not syntax.is_deflated
        for match in matches(self.store, parsed):
            if direct:
                yield encode_response(parsed, match, aet, implicit=syntax.is_implicit_VR)
            else:
                yield _encoded(response(parsed, match, aet), syntax)

    # ------------------------------------------------------------------ N-services

    def _n_dataset(self, event: Event, spool: Any) -> Dataset:
        """An N-service request's data set (Attribute List, Modification List, Action
        Information), structure-checked and decoded; an exception when it cannot be."""
        raw = b""
        if isinstance(spool, _Spool):
            raw = spool.reader().read(MAX_N_DATASET + 1)
            spool.discard()
        elif spool is not None:
            raw = spool.getvalue()
        if len(raw) > MAX_N_DATASET:
            raise ValueError("data set too large")
        return _decode(raw, event.context.transfer_syntax) if raw else Dataset()

    def _n_refused(self, what: str, event: Event, exc: Exception) -> Dataset:
        """The failure response of an N-service request: the error's own status, else
        0x0110 Processing failure (logged with its traceback)."""
        if isinstance(exc, (MppsError, CommitmentError)):
            log.warning(
                "%s from %s refused 0x%04X: %s", what, self._peer(event.assoc), exc.status,
                exc.comment,
            )  # fmt: skip
            return _failure(exc.status, exc.comment)
        level = logging.WARNING if _expected(exc) else logging.ERROR
        log.log(level, "%s from %s failed", what, self._peer(event.assoc), exc_info=True)
        return _failure(PROCESSING_FAILURE, store_status(exc)[1])

    def handle_n_create(self, event: Event) -> tuple[int | Dataset, Dataset | None]:
        """N-CREATE of a Modality Performed Procedure Step (PS3.4 F.7.2.1; ``_mpps``)."""
        request = cast(N_CREATE, event.request)
        given = str(request.AffectedSOPInstanceUID or "")
        try:
            if self.mpps is None:
                raise MppsError(NO_SUCH_SOP_CLASS, "No such SOP Class")
            try:
                attributes = self._n_dataset(event, request.AttributeList)
            except Exception as exc:
                raise MppsError(INVALID_ATTRIBUTE_VALUE, f"Cannot decode: {exc}") from None
            uid = self.mpps.create(given, attributes, *self._calling(event.assoc))
        except Exception as exc:
            return self._n_refused("N-CREATE", event, exc), None
        answer = Dataset()
        if not given:
            answer.AffectedSOPInstanceUID = uid
        return SUCCESS, answer

    def handle_n_set(self, event: Event) -> tuple[int | Dataset, Dataset | None]:
        """N-SET of a Modality Performed Procedure Step (PS3.4 F.7.2.2; ``_mpps``)."""
        request = cast(N_SET, event.request)
        try:
            if self.mpps is None:
                raise MppsError(NO_SUCH_SOP_CLASS, "No such SOP Class")
            try:
                modifications = self._n_dataset(event, request.ModificationList)
            except Exception as exc:
                raise MppsError(INVALID_ATTRIBUTE_VALUE, f"Cannot decode: {exc}") from None
            uid = str(request.RequestedSOPInstanceUID or "")
            self.mpps.update(uid, modifications, *self._calling(event.assoc))
        except Exception as exc:
            return self._n_refused("N-SET", event, exc), None
        return SUCCESS, None

    def handle_n_action(self, event: Event) -> tuple[int | Dataset, Dataset | None]:
        """N-ACTION Request Storage Commitment (PS3.4 J.3.2.1; ``_commitment``): answered once
        the request is durably recorded; the N-EVENT-REPORT follows from a background thread."""
        request = cast(N_ACTION, event.request)
        try:
            if self.commitment is None:
                raise CommitmentError(NO_SUCH_SOP_CLASS, "No such SOP Class")
            try:
                info = self._n_dataset(event, request.ActionInformation)
            except Exception as exc:
                raise CommitmentError(INVALID_ARGUMENT, f"Cannot decode: {exc}") from None
            checked = self.commitment.accept(
                self.commitment.check(
                    request.ActionTypeID,
                    str(request.RequestedSOPInstanceUID or ""),
                    info,
                    *self._calling(event.assoc),
                )
            )
        except Exception as exc:
            return self._n_refused("N-ACTION", event, exc), None
        dimse = event.assoc.dimse
        if isinstance(dimse, _SpoolingDimse):
            dimse.after_response(lambda: self._report(event.assoc, checked))
        else:
            self._report(event.assoc, checked)
        return SUCCESS, None

    def _report(self, assoc: Association, checked: CommitmentRequest) -> None:
        if self.commitment is not None:
            self.commitment.start_report(assoc, checked)

    def handle_ended(self, event: Event) -> None:
        """Association released, aborted or its connection closed: drop a partial transfer and
        have the association's studies aggregated now."""
        assoc = event.assoc
        dimse = assoc.dimse
        if isinstance(dimse, _SpoolingDimse):
            dimse.discard_partial()
        with self._lock:
            studies = self._studies.pop(id(assoc), set())
        if self.audit is not None:
            self.audit.ended(id(assoc), *self._calling(assoc))
        if studies:
            try:
                self.store.request_flush(sorted(studies))
            except Exception:
                log.exception("could not flag studies for aggregation")
            self.notify_change()


@dataclass
class _FindState:
    raw: bytes = b""
    sent: int = 0
    audited: bool = False


def _decode(raw: bytes, syntax: Any) -> Dataset:
    """A received data set (C-FIND identifier, N-service data set) in the context's transfer
    syntax, its element structure checked first (``_structure``); raises when malformed."""
    check_structure(
        BytesIO(raw), 0, len(raw), implicit=syntax.is_implicit_VR, little=syntax.is_little_endian
    )
    return decode(BytesIO(raw), syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated)


def _encoded(identifier: Dataset, syntax: Any) -> bytes:
    """A response identifier in the context's transfer syntax (pynetdicom's encoder)."""
    data = encode(identifier, syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated)
    if not data:
        raise ValueError("the response identifier cannot be encoded")
    return data


def _failure(status: int, text: str) -> Dataset:
    answer = Dataset()
    answer.Status = status
    answer.ErrorComment = comment(text)
    return answer


def _expected(exc: BaseException) -> bool:
    """Bad input or a full disk: logged without a traceback."""
    return isinstance(exc, (DicomStoreError, DicomMappingError, HubError, *PARSE_ERRORS))
