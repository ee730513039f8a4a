"""Modality Performed Procedure Step SOP Class, SCP (DICOM PS3.4 F.7; IHE RAD TF-2 RAD-6
"Modality Procedure Step In Progress", RAD-7 "Modality Procedure Step Completed/Discontinued").

Where the state lives (FHIR R4): PixelHub serves no ``Procedure`` resource, so a performed
procedure step is kept on the ``ServiceRequest`` it performs, found through the Scheduled Step
Attributes Sequence (0040,0270) by Accession Number (with the Requested Procedure ID, when
given), else by Study Instance UID: an identifier ``urn:dicom:uid|urn:oid:<MPPS SOP Instance
UID>`` (``type.text`` "Performed Procedure Step SOP Instance UID") to find it again, and an
extension ``urn:pixelhub:dicom:mpps`` (uid, status, step id, station AE title, start, end,
discontinuation reason). It is in the store of record, so every replica sees the same state.
One MPPS may perform several orders (IHE "group case"): each carries it. An unscheduled step
(IHE "unscheduled case": no Accession Number, Requested Procedure ID or Scheduled Procedure Step
ID; no order with its Study Instance UID) gets an order of its own, made from the step
(``mappings/mpps_to_servicerequest.md``) for the Patient its images will be filed under.

Status changes:

- N-CREATE (status must be ``IN PROGRESS``): the order stays ``active``; when the step names a
  Study Instance UID whose ``ImagingStudy`` does not exist yet, one is registered for it (status
  ``registered``, same deterministic id as the study aggregator's, ``basedOn`` the order): the
  study exists but has no images yet (R4 ``ImagingStudyStatus``). The aggregator replaces it
  once images arrive (status ``available``).
- N-SET to ``COMPLETED``: the order becomes ``completed`` (the procedure was performed; the
  study becomes ``available`` when its images are stored, by the aggregator).
- N-SET to ``DISCONTINUED``: the order stays ``active`` (IHE RAD-7: the order filler decides
  whether to reschedule; only the order placer cancels an order, ORC-1 CA); a study registered
  by the N-CREATE that received no image becomes ``cancelled``.
- An N-SET after ``COMPLETED``/``DISCONTINUED`` is refused (0x0110, PS3.4 F.7.2.2.2).

Audit: each N-CREATE (action C) and N-SET (action U), applied or refused, is a "Procedure Record"
event (PS3.15 A.5.3, DCM 110111) naming the orders and the MPPS SOP Instance UID.

Statuses (PS3.4 F.7.2.1.2, F.7.2.2.2; PS3.7 Annex C): 0x0106 invalid attribute value, 0x0110
processing failure (also: a step naming an order that is not known), 0x0111
duplicate SOP Instance, 0x0112 no such object instance, 0x0120 missing attribute, 0x0121 missing
attribute value.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from adapters.dicom._worklist import search_value
from hub.audit import Actor, AuditTrail
from hub.auth import Principal
from hub.fhir.service import FhirService, UnitOfWork
from hub.imaging.order_linking import accessions, read_json, search_ids
from hub.imaging.study_aggregator import PatientIdentity, study_resource_id
from mappings.dicom_instance import extract_step_summary
from mappings.interaction_to_auditevent import (
    PROCEDURE_RECORD,
    identifier_entity,
    resource_entity,
)
from mappings.mpps_to_servicerequest import is_unscheduled, unscheduled_servicerequest

log = logging.getLogger("pixelhub.dicom.mpps")

MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"
MPPS_EXTENSION = "urn:pixelhub:dicom:mpps"
MPPS_IDENTIFIER = "Performed Procedure Step SOP Instance UID"
DICOM_UID_SYSTEM = "urn:dicom:uid"

INVALID_ATTRIBUTE_VALUE = 0x0106
PROCESSING_FAILURE = 0x0110
DUPLICATE_INSTANCE = 0x0111
NO_SUCH_INSTANCE = 0x0112
MISSING_ATTRIBUTE = 0x0120
MISSING_ATTRIBUTE_VALUE = 0x0121

IN_PROGRESS, COMPLETED, DISCONTINUED = "IN PROGRESS", "COMPLETED", "DISCONTINUED"
# Type 1 attributes of the N-CREATE (PS3.4 Table F.7.2-1) this SCP needs
_REQUIRED = (
    "ScheduledStepAttributesSequence",
    "PerformedProcedureStepStatus",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
)

Resource = dict[str, Any]


class MppsError(Exception):
    """An N-CREATE / N-SET refused: its status and Error Comment."""

    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status
        self.comment = comment


def _text(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword)
    except Exception as exc:
        raise MppsError(INVALID_ATTRIBUTE_VALUE, f"Cannot decode {keyword}: {exc}") from None
    return "" if value is None else str(value).strip()


def _uid_ref(uid: str) -> str:
    """A token search value for a UID identifier."""
    return f"{DICOM_UID_SYSTEM}|urn:oid:{uid}"


def _state(order: Resource, uid: str) -> Resource | None:
    for ext in order.get("extension") or []:
        if ext.get("url") != MPPS_EXTENSION:
            continue
        fields = {e["url"]: e.get("valueString") for e in ext.get("extension") or []}
        if fields.get("uid") == uid:
            found: Resource = ext
            return found
    return None


def _field(ext: Resource, name: str) -> str:
    return next((str(e["valueString"]) for e in ext["extension"] if e["url"] == name), "")


def _set_field(ext: Resource, name: str, value: str) -> None:
    ext["extension"] = [e for e in ext["extension"] if e["url"] != name]
    if value:
        ext["extension"].append({"url": name, "valueString": value})


class PerformedProcedureSteps:
    """The MPPS SCP's store: N-CREATE and N-SET on the FHIR service (see the module doc)."""

    def __init__(
        self,
        service: FhirService,
        peer: Callable[[str, str | None], Principal],
        audit: AuditTrail | None = None,
        *,
        issuer_systems: Mapping[str, str] | None = None,
        default_patient_system: str = "urn:pixelhub:patient-id",
    ) -> None:
        self.service = service
        self.peer = peer  # the principal of a calling AE title (and address)
        self.audit = audit
        self.issuer_systems = dict(issuer_systems or {})
        self.default_patient_system = default_patient_system

    # ------------------------------------------------------------------ N-CREATE

    def create(self, uid: str | None, attributes: Dataset, title: str, address: str | None) -> str:
        """Record a new step (PS3.4 F.7.2.1) from ``title``@``address``; returns its SOP
        Instance UID (made when the SCU gave none)."""
        uid = uid or str(generate_uid())
        try:
            orders = self._checked_create(uid, attributes, self.peer(title, address))
        except MppsError as exc:
            self._audit(title, address, "C", uid, [], exc.comment)
            raise
        self._audit(title, address, "C", uid, orders, None)
        return uid

    def _checked_create(self, uid: str, attributes: Dataset, principal: Principal) -> list[str]:
        for keyword in _REQUIRED:
            if keyword not in attributes:
                raise MppsError(MISSING_ATTRIBUTE, f"Missing {keyword}")
        status = _text(attributes, "PerformedProcedureStepStatus").upper()
        if status != IN_PROGRESS:
            raise MppsError(
                INVALID_ATTRIBUTE_VALUE, f"Performed Procedure Step Status {status!r} on N-CREATE"
            )
        for keyword in _REQUIRED[2:]:
            if not _text(attributes, keyword):
                raise MppsError(MISSING_ATTRIBUTE_VALUE, f"Empty {keyword}")
        try:
            steps = list(attributes.ScheduledStepAttributesSequence or [])
            if not all(isinstance(step, Dataset) for step in steps):
                raise TypeError("not a sequence of items")
        except Exception as exc:
            text = f"Bad Scheduled Step Attributes: {exc}"
            raise MppsError(INVALID_ATTRIBUTE_VALUE, text) from None
        work = functools.partial(self._create, uid, attributes, steps, principal)
        return self.service.run(work)

    def _create(
        self,
        uid: str,
        attributes: Dataset,
        steps: list[Dataset],
        principal: Principal,
        uow: UnitOfWork,
    ) -> list[str]:
        if self._carrying(uow, uid):
            raise MppsError(DUPLICATE_INSTANCE, f"MPPS {uid} exists")
        start = _text(attributes, "PerformedProcedureStepStartDate") + _text(
            attributes, "PerformedProcedureStepStartTime"
        )
        orders = self._scheduled(uow, steps)
        if not orders and is_unscheduled(steps):
            orders = self._unscheduled(uow, attributes, steps, principal, start)
        if not orders:
            raise MppsError(PROCESSING_FAILURE, "No scheduled order matches this step")
        state: Resource = {"url": MPPS_EXTENSION, "extension": []}
        for name, value in (
            ("uid", uid),
            ("status", IN_PROGRESS),
            ("stepId", _text(attributes, "PerformedProcedureStepID")),
            ("station", _text(attributes, "PerformedStationAETitle")),
            ("modality", _text(attributes, "Modality")),
            ("start", start),
        ):
            _set_field(state, name, value)
        study_uids = {_text(s, "StudyInstanceUID") for s in steps} - {""}
        for rid, order in orders.items():
            order["identifier"] = [
                *(order.get("identifier") or []),
                {
                    "type": {"text": MPPS_IDENTIFIER},
                    "system": DICOM_UID_SYSTEM,
                    "value": f"urn:oid:{uid}",
                },
            ]
            order["extension"] = [*(order.get("extension") or []), state]
            self._write(uow, principal, "ServiceRequest", rid, order)
            for study_uid in sorted(study_uids):
                self._register_study(uow, principal, study_uid, rid, order, start)
        return list(orders)

    def _scheduled(self, uow: UnitOfWork, steps: Iterable[Dataset]) -> dict[str, Resource]:
        """The orders the Scheduled Step Attributes items name: by Accession Number (and
        Requested Procedure ID when given), else by Study Instance UID."""
        found: dict[str, Resource] = {}
        for step in steps:
            accession = _text(step, "AccessionNumber")
            requested = _text(step, "RequestedProcedureID")
            study_uid = _text(step, "StudyInstanceUID")
            params = []
            if accession:
                params = [("identifier", search_value(accession))]
            elif study_uid:
                params = [("identifier", _uid_ref(study_uid))]
            candidates = search_ids(self.service, uow, "ServiceRequest", params) if params else []
            for rid in candidates:
                order = read_json(uow, "ServiceRequest", rid)
                if order is None:
                    continue
                values = {str(i.get("value")) for i in order.get("identifier") or []}
                if accession and accession not in {str(a["value"]) for a in accessions(order)}:
                    continue
                if requested and requested not in values:
                    continue
                order.pop("meta", None)
                found.setdefault(rid, order)
        return found

    def _unscheduled(
        self,
        uow: UnitOfWork,
        attributes: Dataset,
        steps: list[Dataset],
        principal: Principal,
        start: str,
    ) -> dict[str, Resource]:
        """The order of an unscheduled step (IHE RAD-6 unscheduled case, no order carries its
        Study Instance UID): made from the step (``mappings.mpps_to_servicerequest``), for the
        Patient the study aggregator will choose for its images (``PatientIdentity``)."""
        study_uid = next(
            (_text(s, "StudyInstanceUID") for s in steps if _text(s, "StudyInstanceUID")), ""
        )
        if not study_uid:
            raise MppsError(
                MISSING_ATTRIBUTE_VALUE, "An unscheduled step names no Study Instance UID"
            )
        summary = extract_step_summary(attributes, study_instance_uid=study_uid)
        patients = PatientIdentity(
            self.service, principal, issuer_systems=self.issuer_systems,
            default_system=self.default_patient_system,
        )  # fmt: skip
        patient = patients.reference(uow, summary, study_uid)
        order = unscheduled_servicerequest(
            attributes, summary, patient_reference=patient, start=start
        )
        rid = str(uuid.uuid4())
        return {rid: {**order, "id": rid}}

    def _register_study(
        self,
        uow: UnitOfWork,
        principal: Principal,
        study_uid: str,
        order_id: str,
        order: Resource,
        start: str,
    ) -> None:
        sid = study_resource_id(study_uid)
        if uow.tx.read("ImagingStudy", sid) is not None or not order.get("subject"):
            return
        study: Resource = {
            "resourceType": "ImagingStudy",
            "id": sid,
            "identifier": [
                {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{study_uid}"},
                *accessions(order),
            ],
            "status": "registered",
            "subject": order["subject"],
            "basedOn": [{"reference": f"ServiceRequest/{order_id}"}],
        }
        if len(start) >= 8:
            study["started"] = f"{start[:4]}-{start[4:6]}-{start[6:8]}"
        self._write(uow, principal, "ImagingStudy", sid, study)

    # ------------------------------------------------------------------ N-SET

    def update(self, uid: str, modifications: Dataset, title: str, address: str | None) -> None:
        """Apply an N-SET (PS3.4 F.7.2.2) from ``title``@``address`` to the step ``uid``."""
        try:
            orders = self._checked_update(uid, modifications, self.peer(title, address))
        except MppsError as exc:
            self._audit(title, address, "U", uid, [], exc.comment)
            raise
        self._audit(title, address, "U", uid, orders, None)

    def _checked_update(self, uid: str, modifications: Dataset, principal: Principal) -> list[str]:
        if not uid:
            raise MppsError(NO_SUCH_INSTANCE, "No Requested SOP Instance UID")
        status = _text(modifications, "PerformedProcedureStepStatus").upper()
        if status and status not in (IN_PROGRESS, COMPLETED, DISCONTINUED):
            raise MppsError(INVALID_ATTRIBUTE_VALUE, f"Performed Procedure Step Status {status!r}")
        end = _text(modifications, "PerformedProcedureStepEndDate") + _text(
            modifications, "PerformedProcedureStepEndTime"
        )
        reason = ""
        if status == DISCONTINUED:
            try:
                codes = modifications.get("PerformedProcedureStepDiscontinuationReasonCodeSequence")
                reason = str(codes[0].get("CodeMeaning") or "") if codes else ""
            except Exception:
                reason = ""
        work = functools.partial(self._update, uid, status, end, reason, principal)
        return self.service.run(work)

    def _update(
        self, uid: str, status: str, end: str, reason: str, principal: Principal, uow: UnitOfWork
    ) -> list[str]:
        orders = self._carrying(uow, uid)
        if not orders:
            raise MppsError(NO_SUCH_INSTANCE, f"No MPPS {uid}")
        for rid, order in orders.items():
            state = _state(order, uid)
            assert state is not None
            if _field(state, "status") in (COMPLETED, DISCONTINUED):
                raise MppsError(
                    PROCESSING_FAILURE, "Performed Procedure Step may no longer be updated"
                )
            if status:
                _set_field(state, "status", status)
            _set_field(state, "end", end or _field(state, "end"))
            _set_field(state, "discontinuationReason", reason)
            if status == COMPLETED and order.get("status") == "active":
                order["status"] = "completed"
            self._write(uow, principal, "ServiceRequest", rid, order)
            if status == DISCONTINUED:
                self._cancel_registered(uow, principal, rid)
        return list(orders)

    def _cancel_registered(self, uow: UnitOfWork, principal: Principal, order_id: str) -> None:
        params = [("basedon", f"ServiceRequest/{order_id}"), ("status", "registered")]
        for sid in search_ids(self.service, uow, "ImagingStudy", params):
            study = read_json(uow, "ImagingStudy", sid)
            if study is not None and not study.get("series"):
                study.pop("meta", None)
                study["status"] = "cancelled"
                self._write(uow, principal, "ImagingStudy", sid, study)

    # ------------------------------------------------------------------ helpers

    def _audit(
        self,
        title: str,
        address: str | None,
        action: Literal["C", "U"],
        uid: str,
        orders: list[str],
        failure: str | None,
    ) -> None:
        if self.audit is None or not self.audit.enabled:
            return
        entities = [resource_entity(f"ServiceRequest/{rid}") for rid in orders]
        if uid:
            entities.append(identifier_entity(DICOM_UID_SYSTEM, f"urn:oid:{uid}", "20", "Job"))
        try:
            self.audit.record(
                Actor(title, "dicom", address=address),
                type_=PROCEDURE_RECORD,
                action=action,
                outcome="4" if failure else "0",
                outcome_desc=failure,
                entities=entities,
            )
        except Exception:
            log.exception("MPPS %s: audit failed", uid)

    def _carrying(self, uow: UnitOfWork, uid: str) -> dict[str, Resource]:
        """The orders that carry the step ``uid``."""
        found: dict[str, Resource] = {}
        for rid in search_ids(self.service, uow, "ServiceRequest", [("identifier", _uid_ref(uid))]):
            order = read_json(uow, "ServiceRequest", rid)
            if order is not None and _state(order, uid) is not None:
                order.pop("meta", None)
                found[rid] = order
        return found

    def _write(
        self, uow: UnitOfWork, principal: Principal, rtype: str, rid: str, resource: Resource
    ) -> None:
        self.service.update(principal, rtype, rid, resource, uow=uow)
