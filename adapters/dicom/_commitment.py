"""Storage Commitment Push Model SOP Class, SCP (DICOM PS3.4 J.3; IHE RAD TF-2 RAD-10), so a
modality may delete its local copies once PixelHub has committed to keep them.

N-ACTION "Request Storage Commitment" (Action Type ID 1, on the well-known SOP Instance
1.2.840.10008.1.20.1.1) carries a Transaction UID and the Referenced SOP Sequence. The request is
checked and answered at once (PS3.4 J.3.2.1.2); then, in a background thread, each referenced
instance is looked up in the instance store (``DicomInstanceStore.get``: a record exists only
once the instance and its bytes are durable) and the result is sent as an N-EVENT-REPORT
(J.3.2.2): Event Type 1 when every instance is committed, 2 when some failed, with the Failed
SOP Sequence and a Failure Reason per instance (0x0112 no such object instance, 0x0119 SOP Class
differs from the stored one).

The report goes on the requesting association while it is open; otherwise (or if that fails) on
a new association to the requester's AE from ``dicom_destinations``, where PixelHub proposes SCP/SCU
role selection with itself as SCP of the Storage Commitment SOP Class (J.3.3; PS3.7 D.3.3.4); the
requester, accepting that role, receives the N-EVENT-REPORT.
Attempts are retried ``attempts`` times, ``retry_delay`` seconds apart, then given up and logged.

Audit: PS3.15 has no storage commitment event; each report is recorded as "DICOM Instances
Transferred" (A.5.3.4) with action Read — the commitment is PixelHub's statement about stored
instances it holds — naming the Transaction UID (object role Job), the counts, and the outcome
(minor failure when instances were missing).

N-ACTION statuses (PS3.4 J.3.2.1.3; PS3.7 Annex C): 0x0112 not the well-known SOP Instance,
0x0115 invalid argument value (no Transaction UID, no or a malformed Referenced SOP Sequence),
0x0123 no such action type, 0x0213 resource limitation (more than ``max_references``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field

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
    """A checked N-ACTION: the transaction and its references ``(class, instance)``."""

    transaction_uid: str
    references: list[tuple[str, str]]
    calling: str
    address: str | None
    committed: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, int]] = field(default_factory=list)


def _uid(value: object, what: str) -> str:
    text = str(value or "").strip()
    if not text or len(text) > 64 or not _UID.match(text):
        raise CommitmentError(INVALID_ARGUMENT, f"Invalid {what}: {text[:40]!r}")
    return text


class StorageCommitment:
    """The Storage Commitment SCP of one hub (see the module doc)."""

    def __init__(
        self,
        store: DicomInstanceStore,
        *,
        ae_title: str,
        destinations: dict[str, Destination],
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

    def resolve(self, request: CommitmentRequest) -> Dataset:
        """Look every reference up; the N-EVENT-REPORT's Event Information (J.3.2.2.1)."""
        for sop_class, sop_instance in request.references:
            record = self.store.get(sop_instance)
            if record is None:
                request.failed.append((sop_class, sop_instance, NO_SUCH_INSTANCE))
            elif record.sop_class_uid != sop_class:
                request.failed.append((sop_class, sop_instance, CLASS_INSTANCE_CONFLICT))
            else:
                request.committed.append((sop_class, sop_instance))
        info = Dataset()
        info.TransactionUID = request.transaction_uid
        info.RetrieveAETitle = self.ae_title
        if request.committed:
            info.ReferencedSOPSequence = DicomSequence(
                [_reference(c, i) for c, i in request.committed]
            )
        if request.failed:
            failed = []
            for c, i, reason in request.failed:
                item = _reference(c, i)
                item.FailureReason = reason
                failed.append(item)
            info.FailedSOPSequence = DicomSequence(failed)
        return info

    def start_report(self, assoc: Association, request: CommitmentRequest) -> threading.Thread:
        """Resolve and report in the background (after the N-ACTION response is sent)."""
        thread = threading.Thread(
            target=self.report, args=(assoc, request), name="storage-commitment", daemon=True
        )
        thread.start()
        return thread

    def report(self, assoc: Association | None, request: CommitmentRequest) -> bool:
        """Send the N-EVENT-REPORT, retrying; True once the requester acknowledged it."""
        try:
            info = self.resolve(request)
        except Exception:
            log.exception("storage commitment %s: look-up failed", request.transaction_uid)
            return False
        event = SOME_FAILED if request.failed else ALL_COMMITTED
        sent = False
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(self.retry_delay)
            try:
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
        level = logging.INFO if sent else logging.ERROR
        log.log(
            level,
            "storage commitment %s for %s: %d committed, %d failed, report %s",
            request.transaction_uid, request.calling, len(request.committed),
            len(request.failed), "sent" if sent else "NOT delivered",
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
