"""Audit records of the storage SCP (issue 7, DICOM PS3.15 A.5.3): one event when an association
is accepted or rejected (Node Authentication), and at its end one "DICOM Instances Transferred"
event per study received over it, plus one for the instances refused; one "DICOM Instances
Transferred" (action Read) per C-MOVE / C-GET and one "Query" per C-FIND.

The patient is named by identifier (PatientID with the system of its issuer, the same rule as
``mappings.dicom_to_patient``): the ``Patient`` resource itself is made later by the study
aggregator.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hub.audit import Actor, AuditTrail
from hub.ports import DicomInstanceRecord
from mappings.dicom_instance import InstanceSummary
from mappings.dicom_to_patient import patient_identifiers
from mappings.interaction_to_auditevent import (
    DICOM_UID,
    ENTITY_TYPE,
    INSTANCES_TRANSFERRED,
    OBJECT_ROLE,
    QUERY,
    Outcome,
    coding,
    dicom_query_entity,
    identifier_entity,
)


@dataclass
class _Received:
    studies: dict[str, list[Any]] = field(default_factory=dict)  # uid -> [count, identifier]
    refused: int = 0
    reason: str | None = None


class AssociationAudit:
    def __init__(
        self, trail: AuditTrail, *, issuer_systems: Mapping[str, str], default_system: str
    ) -> None:
        self.trail = trail
        self.issuer_systems = issuer_systems
        self.default_system = default_system
        self._lock = threading.Lock()
        self._open: dict[int, _Received] = {}

    def association(
        self, title: str, address: str | None, *, accepted: bool, reason: str | None = None
    ) -> None:
        self.trail.dicom_association(
            Actor(title, "dicom", address=address), accepted=accepted, reason=reason
        )

    def _identifier(self, record: DicomInstanceRecord) -> dict[str, Any] | None:
        summary = InstanceSummary.from_json_dict(record.summary)
        found = patient_identifiers(
            summary, issuer_systems=self.issuer_systems, default_system=self.default_system
        )
        return found[0] if found else None

    def stored(self, association: int, record: DicomInstanceRecord) -> None:
        with self._lock:
            received = self._open.setdefault(association, _Received())
            study = received.studies.get(record.study_instance_uid)
        if study is None:
            study = [0, self._identifier(record)]
            with self._lock:
                study = received.studies.setdefault(record.study_instance_uid, study)
        with self._lock:
            study[0] += 1

    def refused(self, association: int, reason: str) -> None:
        with self._lock:
            received = self._open.setdefault(association, _Received())
            received.refused += 1
            received.reason = reason

    def ended(self, association: int, title: str, address: str | None) -> None:
        """Record what the association brought (nothing when it brought nothing)."""
        with self._lock:
            received = self._open.pop(association, None)
        if received is None:
            return
        actor = Actor(title, "dicom", address=address)
        for uid, (count, identifier) in received.studies.items():
            self.trail.dicom_instances_received(
                actor, study_uid=uid, patient_identifier=identifier, instances=count
            )
        if received.refused:
            self.trail.dicom_instances_received(
                actor,
                study_uid=None,
                patient_identifier=None,
                instances=0,
                failures=received.refused,
                reason=received.reason,
            )

    def retrieved(
        self,
        title: str,
        address: str | None,
        *,
        destination: str,
        studies: Mapping[str, tuple[list[int], DicomInstanceRecord | None]],
        status: int,
        reason: str = "",
    ) -> None:
        """One C-MOVE or C-GET (PS3.15 A.5.3.4 DICOM Instances Transferred, action Read, by the
        requesting AE): the patients and studies sent, each with its instances sent and failed;
        success (also when cancelled by the SCU), minor failure for a refused request or failed
        sub-operations, serious failure when nothing could be sent or the answer was cut short.
        ``studies``: Study Instance UID -> ([completed, failed], one of its records)."""
        outcome: Outcome
        if status in (0x0000, 0xFE00):
            outcome = "0"
        elif status >> 8 == 0xA7 or status == 0xFFFF:
            outcome = "8"
        else:
            outcome = "4"
        sent = sum(counts[0] for counts, _record in studies.values())
        failed = sum(counts[1] for counts, _record in studies.values())
        note = f"{sent} instance(s) sent to {destination}, {failed} failed"
        if status:
            note += f"; 0x{status:04X} {reason}".rstrip()
        entities: list[dict[str, Any]] = []
        patients: list[Any] = []
        for uid, ((done, lost), record) in studies.items():
            identifier = self._identifier(record) if record is not None else None
            if identifier and identifier not in patients:
                patients.append(identifier)
                entities.append(
                    {
                        "what": {"identifier": identifier},
                        "type": coding(ENTITY_TYPE, "1", "Person"),
                        "role": coding(OBJECT_ROLE, "1", "Patient"),
                    }
                )
            entities.append(
                {
                    **identifier_entity(DICOM_UID, f"urn:oid:{uid}", "3", "Report"),
                    "description": f"{done} instance(s) sent, {lost} failed",
                }
            )
        self.trail.record(
            Actor(title, "dicom", address=address),
            type_=INSTANCES_TRANSFERRED,
            action="R",
            outcome=outcome,
            outcome_desc=note,
            entities=entities,
        )

    def query(
        self,
        title: str,
        address: str | None,
        *,
        sop_class_uid: str,
        identifier: bytes,
        status: int,
        matches: int,
        reason: str = "",
        transfer_syntax: str = "1.2.840.10008.1.2",
    ) -> None:
        """One C-FIND query (PS3.15 A.5.3.10 Query, action Execute): the identifier as the
        query entity; success (also when cancelled by the SCU), minor failure for a refused
        identifier, serious failure when we could not answer (out of resources, cut short)."""
        outcome: Outcome
        if status in (0x0000, 0xFE00):
            outcome = "0"
        elif status in (0xA700, 0xFFFF):
            outcome = "8"
        else:
            outcome = "4"
        note = f"{matches} match(es)" + (f"; 0x{status:04X} {reason}" if status else "")
        self.trail.record(
            Actor(title, "dicom", address=address),
            type_=QUERY,
            action="E",
            outcome=outcome,
            outcome_desc=None if outcome == "0" and status == 0 else note,
            entities=[dicom_query_entity(sop_class_uid, identifier, transfer_syntax, note)],
        )
