"""Storage Commitment Push Model SOP Class, SCP (DICOM PS3.4 J.3; IHE RAD TF-2 RAD-10), so a
modality may delete its local copies once PixelHub has committed to keep them.

N-ACTION "Request Storage Commitment" (Action Type ID 1, on the well-known SOP Instance
1.2.840.10008.1.20.1.1) carries a Transaction UID and the Referenced SOP Sequence. The request is
checked, then durably recorded as pending (``PendingCommitments``: one JSON file per request in
``<data dir>/dicom/commitments/``, written to a temporary file, fsync'd, renamed into place and
the directory fsync'd) before the success status is answered (PS3.4 J.3.2.1.2): the modality
may delete its copies once the report comes, so an acknowledged request must survive a crash or
a restart. Then, in a background thread, each referenced instance is looked up in the instance
store (``DicomInstanceStore.get``: a record exists only once the instance and its bytes are
durable) and the result is sent as an N-EVENT-REPORT (J.3.2.2): Event Type 1 when every instance
is committed, 2 when some failed, with the Failed SOP Sequence and a Failure Reason per instance
(0x0112 no such object instance, 0x0119 SOP Class differs from the stored one).

The report goes on the requesting association while it is open; otherwise (or if that fails) on
a new association to the requester's AE from ``dicom_destinations``, where PixelHub proposes SCP/SCU
role selection with itself as SCP of the Storage Commitment SOP Class (J.3.3; PS3.7 D.3.3.4); the
requester, accepting that role, receives the N-EVENT-REPORT.
Attempts are retried ``attempts`` times, ``retry_delay`` seconds apart. A delivered report's file
is removed; one given up is moved to ``failed/`` beside the pending files and logged, for an
operator (moving it back re-sends it at the next start). ``start`` (when the SCP starts) re-sends
every pending request, on a new association (the requesting one is gone); a file that cannot be
read is moved to ``failed/`` as ``<name>.corrupt`` and logged. ``stop`` ends the retries and leaves
what is undelivered pending. A report may thus be sent twice (a crash between its delivery and
the removal of its file), never lost.

Audit: PS3.15 has no storage commitment event; each report is recorded as "DICOM Instances
Transferred" (A.5.3.4) with action Read — the commitment is PixelHub's statement about stored
instances it holds — naming the Transaction UID (object role Job), the counts, and the outcome
(minor failure when instances were missing).

N-ACTION statuses (PS3.4 J.3.2.1.3; PS3.7 10.1.4.1.10, C.5): 0x0112 not the well-known SOP
Instance, 0x0115 invalid argument value (no Transaction UID, no or a malformed Referenced SOP
Sequence), 0x0123 no such action type, 0x0213 resource limitation (more than ``max_references``;
no space left to record the request, PS3.3 C.14.1.1), 0x0110 processing failure (the request
could not be recorded for another reason).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pynetdicom import AE, build_role
from pynetdicom.association import Association

from adapters.dicom._destinations import Destination, associate
from adapters.dicom._part10 import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from hub.audit import Actor, AuditTrail
from hub.ports import DicomInstanceStore
from mappings.interaction_to_auditevent import DICOM_UID, INSTANCES_TRANSFERRED, identifier_entity

log = logging.getLogger("pixelhub.dicom.commitment")

STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"  # well-known (PS3.4 J.3.2)
REQUEST_COMMITMENT = 1  # Action Type ID
ALL_COMMITTED, SOME_FAILED = 1, 2  # Event Type IDs
NO_SUCH_INSTANCE = 0x0112
INVALID_ARGUMENT = 0x0115
CLASS_INSTANCE_CONFLICT = 0x0119
NO_SUCH_ACTION = 0x0123
PROCESSING_FAILURE = 0x0110
RESOURCE_LIMITATION = 0x0213
SYNTAXES = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class CommitmentError(Exception):
    """An N-ACTION refused: its status and Error Comment."""

    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status
        self.comment = comment


@dataclass
class CommitmentRequest:
    """A checked N-ACTION: the transaction and its references ``(class, instance)``; ``key``
    names its pending file once recorded."""

    transaction_uid: str
    references: list[tuple[str, str]]
    calling: str
    address: str | None
    received: str = ""
    key: str = ""
    committed: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, int]] = field(default_factory=list)


def _uid(value: object, what: str) -> str:
    text = str(value or "").strip()
    if not text or len(text) > 64 or not _UID.match(text):
        raise CommitmentError(INVALID_ARGUMENT, f"Invalid {what}: {text[:40]!r}")
    return text


class PendingCommitments:
    """Acknowledged requests whose report is not delivered yet: one JSON file each in
    ``directory`` (see the module doc); ``failed/`` below it keeps those given up."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.failed_dir = self.directory / "failed"

    def prepare(self) -> None:
        """Create the directory (``OSError`` when it cannot be)."""
        self.directory.mkdir(parents=True, exist_ok=True)

    def save(self, request: CommitmentRequest) -> None:
        """Record ``request`` durably and name it (``request.key``); ``OSError`` when it cannot
        be, leaving nothing behind."""
        key = f"{request.transaction_uid}-{uuid.uuid4().hex[:12]}"
        request.received = request.received or datetime.now(UTC).isoformat(timespec="milliseconds")
        data = orjson.dumps(
            {
                "transaction_uid": request.transaction_uid,
                "calling": request.calling,
                "address": request.address,
                "received": request.received,
                "references": request.references,
            }
        )
        temporary, final = self.directory / f".{key}.tmp", self.directory / f"{key}.json"
        try:
            with open(temporary, "xb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, final)
            _fsync_dir(self.directory)
        except BaseException:
            temporary.unlink(missing_ok=True)
            final.unlink(missing_ok=True)  # not durable: answered as a failure, never sent
            raise
        request.key = key

    def load(self) -> list[CommitmentRequest]:
        """Every pending request, oldest first; an unreadable file is moved to ``failed/`` as
        ``<name>.corrupt`` and logged; temporary files (never acknowledged) are removed."""
        requests = []
        for path in sorted(self.directory.iterdir()):
            if path.name.startswith(".") and path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
            elif path.is_file() and path.suffix == ".json":
                try:
                    requests.append(_parse(path.read_bytes(), path.stem))
                except (OSError, ValueError, KeyError, TypeError, CommitmentError) as exc:
                    log.error("storage commitment file %s cannot be read (%s)", path, exc)
                    self._move(path, f"{path.name}.corrupt")
        return sorted(requests, key=lambda r: r.received)

    def done(self, request: CommitmentRequest) -> None:
        """The report was delivered: forget the request."""
        if request.key:
            (self.directory / f"{request.key}.json").unlink(missing_ok=True)

    def give_up(self, request: CommitmentRequest) -> Path | None:
        """The report could not be delivered: keep the request in ``failed/``."""
        if not request.key:
            return None
        return self._move(self.directory / f"{request.key}.json", f"{request.key}.json")

    def _move(self, path: Path, name: str) -> Path | None:
        target = self.failed_dir / name
        try:
            self.failed_dir.mkdir(exist_ok=True)
            os.replace(path, target)
            _fsync_dir(self.failed_dir)
            _fsync_dir(self.directory)
        except OSError as exc:
            log.error("storage commitment file %s cannot be moved to %s: %s", path, target, exc)
            return None
        return target


def _parse(raw: bytes, key: str) -> CommitmentRequest:
    data = orjson.loads(raw)
    references = [
        (_uid(c, "Referenced SOP Class UID"), _uid(i, "Referenced SOP Instance UID"))
        for c, i in data["references"]
    ]
    if not references:
        raise ValueError("no references")
    address = data.get("address")
    return CommitmentRequest(
        _uid(data["transaction_uid"], "Transaction UID"),
        references,
        str(data["calling"]),
        None if address is None else str(address),
        received=str(data["received"]),
        key=key,
    )


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StorageCommitment:
    """The Storage Commitment SCP of one hub (see the module doc)."""

    def __init__(
        self,
        store: DicomInstanceStore,
        *,
        ae_title: str,
        destinations: dict[str, Destination],
        directory: Path | str,
        audit: AuditTrail | None = None,
        attempts: int = 3,
        retry_delay: float = 2.0,
        timeout: float = 30.0,
        max_references: int = 10000,
    ) -> None:
        self.store = store
        self.ae_title = ae_title
        self.destinations = destinations
        self.audit = audit
        self.attempts = attempts
        self.retry_delay = retry_delay
        self.timeout = timeout
        self.max_references = max_references
        self.pending = PendingCommitments(directory)
        self._stopping = threading.Event()
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def start(self) -> int:
        """Re-send the report of every pending request (on new associations); how many."""
        self._stopping.clear()
        try:
            self.pending.prepare()
            pending = self.pending.load()
        except OSError as exc:
            log.error(
                "storage commitment directory %s unusable: %s (requests will be refused)",
                self.pending.directory, exc,
            )  # fmt: skip
            return 0
        for request in pending:
            log.info(
                "storage commitment %s for %s: pending since %s, report sent again",
                request.transaction_uid, request.calling, request.received,
            )  # fmt: skip
            self.start_report(None, request)
        return len(pending)

    def stop(self, timeout: float) -> None:
        """End the retries, waiting up to ``timeout`` s for reports being sent; what is not
        delivered stays pending for the next start."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def check(
        self,
        action_type: int | None,
        instance_uid: str,
        info: Dataset,
        calling: str,
        address: str | None,
    ) -> CommitmentRequest:
        """The N-ACTION's request, or ``CommitmentError`` (PS3.4 J.3.2.1)."""
        if action_type != REQUEST_COMMITMENT:
            raise CommitmentError(NO_SUCH_ACTION, f"No such action type {action_type}")
        if instance_uid != STORAGE_COMMITMENT_INSTANCE:
            raise CommitmentError(NO_SUCH_INSTANCE, "Not the Storage Commitment SOP Instance")
        try:
            transaction = _uid(info.get("TransactionUID"), "Transaction UID")
            items = info.get("ReferencedSOPSequence")
            if not items:
                raise CommitmentError(INVALID_ARGUMENT, "No Referenced SOP Sequence")
            if len(items) > self.max_references:
                raise CommitmentError(
                    RESOURCE_LIMITATION, f"More than {self.max_references} references"
                )
            references = [
                (
                    _uid(item.get("ReferencedSOPClassUID"), "Referenced SOP Class UID"),
                    _uid(item.get("ReferencedSOPInstanceUID"), "Referenced SOP Instance UID"),
                )
                for item in items
            ]
        except CommitmentError:
            raise
        except Exception as exc:
            raise CommitmentError(INVALID_ARGUMENT, f"Cannot decode: {exc}") from None
        return CommitmentRequest(transaction, references, calling, address)

    def accept(self, request: CommitmentRequest) -> CommitmentRequest:
        """Record a ``check``-ed request as pending, before it may be answered with success;
        ``CommitmentError`` 0x0213 (no space) or 0x0110 when it cannot be recorded."""
        try:
            self.pending.save(request)
        except OSError as exc:
            log.error(
                "storage commitment %s from %s cannot be recorded in %s: %s",
                request.transaction_uid, request.calling, self.pending.directory, exc,
            )  # fmt: skip
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            raise CommitmentError(
                RESOURCE_LIMITATION if full else PROCESSING_FAILURE,
                "Cannot record the commitment request",
            ) from None
        return request

    def resolve(self, request: CommitmentRequest) -> Dataset:
        """Look every reference up; the N-EVENT-REPORT's Event Information (J.3.2.2.1)."""
        committed: list[tuple[str, str]] = []
        failed: list[tuple[str, str, int]] = []
        for sop_class, sop_instance in request.references:
            record = self.store.get(sop_instance)
            if record is None:
                failed.append((sop_class, sop_instance, NO_SUCH_INSTANCE))
            elif record.sop_class_uid != sop_class:
                failed.append((sop_class, sop_instance, CLASS_INSTANCE_CONFLICT))
            else:
                committed.append((sop_class, sop_instance))
        request.committed, request.failed = committed, failed
        info = Dataset()
        info.TransactionUID = request.transaction_uid
        info.RetrieveAETitle = self.ae_title
        if request.committed:
            info.ReferencedSOPSequence = DicomSequence(
                [_reference(c, i) for c, i in request.committed]
            )
        if request.failed:
            items = []
            for c, i, reason in request.failed:
                item = _reference(c, i)
                item.FailureReason = reason
                items.append(item)
            info.FailedSOPSequence = DicomSequence(items)
        return info

    def start_report(
        self, assoc: Association | None, request: CommitmentRequest
    ) -> threading.Thread:
        """Resolve and report in the background (after the N-ACTION response is sent)."""
        thread = threading.Thread(
            target=self._run, args=(assoc, request), name="storage-commitment", daemon=True
        )
        with self._lock:
            self._threads.add(thread)
        thread.start()
        return thread

    def _run(self, assoc: Association | None, request: CommitmentRequest) -> None:
        try:
            self.report(assoc, request)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def report(self, assoc: Association | None, request: CommitmentRequest) -> bool:
        """Send the N-EVENT-REPORT, retrying; True once the requester acknowledged it. Its
        pending file is then removed, or moved to ``failed/`` when every attempt failed; it is
        left pending when ``stop`` comes first."""
        sent = False
        for attempt in range(self.attempts):
            if self._stopping.wait(self.retry_delay if attempt else 0):
                log.info(
                    "storage commitment %s for %s: stopping, report left pending",
                    request.transaction_uid, request.calling,
                )  # fmt: skip
                return False
            try:
                info = self.resolve(request)
                event = SOME_FAILED if request.failed else ALL_COMMITTED
                if assoc is not None and assoc.is_established:
                    sent = _send(assoc, info, event)
                else:
                    sent = self._send_new(request.calling, info, event)
            except Exception as exc:
                log.warning(
                    "storage commitment %s to %s: attempt %d failed: %s",
                    request.transaction_uid, request.calling, attempt + 1, exc,
                )  # fmt: skip
                sent = False
            assoc = None  # a retry always opens a new association
            if sent:
                break
        if sent:
            self.pending.done(request)
            log.info(
                "storage commitment %s for %s: %d committed, %d failed, report sent",
                request.transaction_uid, request.calling, len(request.committed),
                len(request.failed),
            )  # fmt: skip
        else:
            kept = self.pending.give_up(request)
            log.error(
                "storage commitment %s for %s: report NOT delivered after %d attempts; "
                "request kept in %s",
                request.transaction_uid, request.calling, self.attempts, kept,
            )  # fmt: skip
        self._audit(request, sent)
        return sent

    def _send_new(self, calling: str, info: Dataset, event: int) -> bool:
        destination = self.destinations.get(calling)
        if destination is None:
            raise ConnectionError(f"{calling} is not in dicom_destinations")
        ae = AE(ae_title=self.ae_title)
        ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
        ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        ae.add_requested_context(STORAGE_COMMITMENT, SYNTAXES)
        role = build_role(STORAGE_COMMITMENT, scu_role=False, scp_role=True)
        assoc = associate(ae, destination, ext_neg=[role])
        if not assoc.is_established:
            raise ConnectionError(f"association to {destination.ae_title} refused or failed")
        try:
            return _send(assoc, info, event)
        finally:
            if assoc.is_established:
                assoc.release()

    def _audit(self, request: CommitmentRequest, sent: bool) -> None:
        if self.audit is None or not self.audit.enabled:
            return
        note = f"{len(request.committed)} committed, {len(request.failed)} failed" + (
            "" if sent else "; report not delivered"
        )
        try:
            self.audit.record(
                Actor(request.calling, "dicom", address=request.address),
                type_=INSTANCES_TRANSFERRED,
                action="R",
                outcome="0" if sent and not request.failed else ("4" if sent else "8"),
                outcome_desc=None if sent and not request.failed else note,
                entities=[
                    identifier_entity(DICOM_UID, f"urn:oid:{request.transaction_uid}", "20", "Job")
                ],
            )
        except Exception:
            log.exception("storage commitment %s: audit failed", request.transaction_uid)


def _reference(sop_class: str, sop_instance: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_instance
    return item


def _send(assoc: Association, info: Dataset, event: int) -> bool:
    status, _ = assoc.send_n_event_report(
        info, event, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE
    )
    code = getattr(status, "Status", None)
    if code != 0x0000:
        raise ConnectionError(f"N-EVENT-REPORT answered {code!r}")
    return True
