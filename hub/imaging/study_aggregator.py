"""Study aggregation: stored DICOM instances -> one versioned FHIR R4 ``ImagingStudy`` per study.

The storage SCP and the importer only index instances (``DicomInstanceStore``, one row and one
``DicomInstance`` change each); the store keeps a *pending* row per study that received
instances since it was last aggregated. This projector aggregates a pending study

- once it has been quiet for ``quiet_seconds`` (no instance for that long), or
- at once when its sender finished (the SCP calls ``request_flush`` on association release or
  abort; the importer at its end), or when ``flush()`` is called (``ProjectorRunner.catch_up``).

Aggregating rebuilds the study from all its stored summaries in ONE ``FhirService.run`` unit --
so work is linear in the instances of a flush, never per instance -- and writes:

- the ``Patient``, matched by its first identifier (PatientID + issuer -> system, issue 4 item 3),
  created from the demographics when unknown; an existing Patient whose name, birth date or gender
  disagree is kept unchanged and a ``Flag`` records the conflict (never a merge);
- PixelHub's DICOMweb ``Endpoint`` (once), the whole-slide ``Specimen`` resources, the
  ``Encounter`` link when an Encounter carries the Admission ID (0038,0010);
- the ``ImagingStudy`` (``dicom_to_imagingstudy``), with a deterministic id (a UUID v5 of the
  Study Instance UID) so re-aggregation updates it in place and a study received over several
  associations or days ends up as one resource; ``basedOn`` links written by the order-linking
  projector are kept; nothing is written when nothing changed;
- a ``Provenance`` per replaced instance (same SOP Instance UID, different bytes), targeting the
  ImagingStudy version that includes the new instance.

Idempotent: every id is deterministic, so a crash between the commit and clearing the pending
row only repeats the same writes.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from hub.auth import Principal
from hub.fhir.service import FhirService, UnitOfWork
from hub.imaging.order_linking import DEFAULT_ACCESSION_SYSTEM
from hub.ports import Change, DicomInstanceRecord, DicomInstanceStore, PendingStudy, Replacement
from hub.search.model import SearchQuery
from mappings.dicom_instance import InstanceSummary
from mappings.dicom_to_imagingstudy import (
    dicom_endpoint,
    dicom_to_imagingstudy,
    dicom_to_specimen,
    issuer_system,
)
from mappings.dicom_to_patient import (
    dicom_to_patient,
    patient_identifiers,
    patient_identity_conflicts,
)

log = logging.getLogger("pixelhub.imaging.study_aggregator")

# Fixed namespace of PixelHub's deterministic resource ids (uuid5 of a name below).
NAMESPACE = uuid.UUID("4f0a6c2e-3b7d-5c1e-9a84-2f6d7e1b0c55")
ENDPOINT_ID = "pixelhub-dicomweb"
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
_PRINCIPAL = Principal("projector:study-aggregator", kind="peer", scopes=frozenset({"*"}))
_RETRY_SECONDS = 30.0

Resource = dict[str, Any]


def study_resource_id(study_instance_uid: str) -> str:
    """The ``ImagingStudy.id`` of a study: UUID v5 of its Study Instance UID."""
    return str(uuid.uuid5(NAMESPACE, f"ImagingStudy|{study_instance_uid}"))


def _id(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "|".join(parts)))


def _escape(value: str) -> str:
    # FHIR R4 search.html#escaping
    for ch in ("\\", "$", ",", "|"):
        value = value.replace(ch, "\\" + ch)
    return value


def _read(uow: UnitOfWork, resource_type: str, rid: str) -> Resource | None:
    stored = uow.tx.read(resource_type, rid)
    if stored is None or stored.data is None:
        return None
    data: Resource = orjson.loads(stored.data)
    return data


def _content(resource: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if resource is None:
        return None
    return {k: v for k, v in resource.items() if k != "meta"}


def _source_instance(summaries: Sequence[InstanceSummary]) -> InstanceSummary:
    # The patient and visit come from one instance, chosen independently of arrival order.
    return min(summaries, key=lambda s: (not s.patient_id, not s.admission_id, s.sop_instance_uid))


class StudyAggregator:
    """The ``study-aggregator`` projector (see the module doc)."""

    name = "study-aggregator"

    def __init__(
        self,
        service: FhirService,
        store: DicomInstanceStore,
        *,
        issuer_systems: Mapping[str, str],
        default_patient_system: str,
        quiet_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.store = store
        self.issuer_systems = dict(issuer_systems)
        self.default_patient_system = default_patient_system
        self.quiet_seconds = quiet_seconds
        self.clock = clock
        self.failures: dict[str, tuple[int, float, str]] = {}  # study -> (generation, when, why)
        self.aggregations = 0
        self.patients = PatientIdentity(
            service,
            _PRINCIPAL,
            issuer_systems=issuer_systems,
            default_system=default_patient_system,
        )

    # ------------------------------------------------------------------ projector protocol

    def handle(self, changes: Sequence[Change]) -> None:
        """DicomInstance changes only wake the projector: the pending studies live in the
        store, so nothing is lost when the cursor moves on."""
        self.tick()

    def tick(self) -> float | None:
        """Aggregate the studies that are due; seconds until the next one is due (or None)."""
        return self._run(force=False)

    def flush(self) -> None:
        """Aggregate every pending study now, whatever its quiet period."""
        self._run(force=True)

    def _run(self, *, force: bool) -> float | None:
        next_due: float | None = None
        while True:
            pending = self.store.pending_studies()
            now = self.clock()
            done = 0
            for study in pending:
                due = study.quiet_since + self.quiet_seconds
                if not (force or study.flush_requested or now >= due):
                    wait = due - now
                    next_due = wait if next_due is None else min(next_due, wait)
                    continue
                failed = self.failures.get(study.study_instance_uid)
                if (
                    failed is not None
                    and failed[0] == study.generation
                    and now - failed[1] < _RETRY_SECONDS
                ):
                    continue
                if self.aggregate(study):
                    done += 1
            if done == 0 or len(pending) < 1000:
                return next_due

    def aggregate(self, pending: PendingStudy) -> bool:
        """Rebuild one study; True if its pending state was cleared."""
        uid = pending.study_instance_uid
        try:
            records = self.store.instances_of_study(uid)
            if records:
                work = functools.partial(self._write, uid, records, pending)
                self.service.run(work, validate=False)  # mapping output, validated by tests
            cleared = self.store.mark_aggregated(uid, pending.generation)
        except Exception as exc:
            log.exception("aggregating study %s failed; will retry", uid)
            self.failures[uid] = (pending.generation, self.clock(), str(exc))
            return False
        self.failures.pop(uid, None)
        self.aggregations += 1
        return cleared

    # ------------------------------------------------------------------ the unit of work

    def _write(
        self,
        study_uid: str,
        records: Sequence[DicomInstanceRecord],
        pending: PendingStudy,
        uow: UnitOfWork,
    ) -> int:
        summaries = [InstanceSummary.from_json_dict(r.summary) for r in records]
        source = _source_instance(summaries)
        endpoint = self._endpoint(uow)
        patient = self.patients.reference(uow, source, study_uid)
        specimens = self._specimens(uow, summaries, patient)
        encounter = self._encounter(uow, source)
        sid = study_resource_id(study_uid)
        existing = _read(uow, "ImagingStudy", sid)
        based_on = [
            str(ref["reference"])
            for ref in (existing or {}).get("basedOn") or []
            if isinstance(ref, dict) and ref.get("reference")
        ]
        accession = next((s for s in summaries if s.accession_number), None)
        accession_system = DEFAULT_ACCESSION_SYSTEM
        if accession is not None and accession.accession_issuer is not None:
            accession_system = (
                issuer_system(accession.accession_issuer, self.issuer_systems, "")
                or DEFAULT_ACCESSION_SYSTEM
            )
        study = dicom_to_imagingstudy(
            summaries,
            study_id=sid,
            patient_reference=patient,
            endpoint_reference=endpoint,
            accession_system=accession_system,
            encounter_reference=encounter,
            based_on=based_on,
            specimen_references=specimens,
        )
        stored = uow.tx.read("ImagingStudy", sid)
        if _content(existing) != study or stored is None:
            stored = self.service.update(_PRINCIPAL, "ImagingStudy", sid, study, uow=uow).stored
        for replacement in pending.replacements:
            self._provenance(uow, sid, stored.version, replacement)
        return stored.version

    def _put_if_changed(self, uow: UnitOfWork, resource: Resource) -> None:
        _put_if_changed(self.service, _PRINCIPAL, uow, resource)

    def _endpoint(self, uow: UnitOfWork) -> str:
        base = self.service.options.base_url.rstrip("/")
        base = base.removesuffix("/fhir")
        endpoint = {**dicom_endpoint(base), "id": ENDPOINT_ID}
        existing = _read(uow, "Endpoint", ENDPOINT_ID)
        if existing is None or existing.get("address") != endpoint["address"]:
            self._put_if_changed(uow, endpoint)
        return f"Endpoint/{ENDPOINT_ID}"

    def _specimens(
        self, uow: UnitOfWork, summaries: Sequence[InstanceSummary], patient: str
    ) -> dict[str, str]:
        references: dict[str, str] = {}
        for summary in summaries:
            if not summary.specimens:
                continue
            resources = dicom_to_specimen(summary, patient_reference=patient)
            for specimen, resource in zip(summary.specimens, resources, strict=True):
                if specimen.identifier in references:
                    continue
                first = resource["identifier"][0]
                rid = _id("Specimen", str(first.get("system", "")), specimen.identifier)
                self._put_if_changed(uow, {**resource, "id": rid})
                references[specimen.identifier] = f"Specimen/{rid}"
        return references

    def _encounter(self, uow: UnitOfWork, summary: InstanceSummary) -> str | None:
        if not summary.admission_id:
            return None
        ids = []
        for rid in self._search(uow, "Encounter", "identifier", _escape(summary.admission_id)):
            found = _read(uow, "Encounter", rid)
            if found is not None and any(
                i.get("value") == summary.admission_id for i in found.get("identifier") or []
            ):
                ids.append(rid)
        if len(ids) == 1:
            return f"Encounter/{ids[0]}"
        if len(ids) > 1:
            log.warning(
                "Admission ID matches %d encounters; ImagingStudy not linked to one", len(ids)
            )
        return None

    def _search(self, uow: UnitOfWork, resource_type: str, name: str, value: str) -> list[str]:
        return _search(self.service, uow, resource_type, name, value)

    def _provenance(
        self, uow: UnitOfWork, sid: str, version: int, replacement: Replacement
    ) -> None:
        sop = replacement.sop_instance_uid
        who = replacement.source or "unknown sender"
        provenance = {
            "resourceType": "Provenance",
            "id": _id("Provenance", "replaced", sop, str(replacement.new_version)),
            "target": [{"reference": f"ImagingStudy/{sid}/_history/{version}"}],
            "recorded": replacement.received,
            "activity": {
                "coding": [{"system": DATA_OPERATION, "code": "UPDATE", "display": "revise"}],
                "text": (
                    f"DICOM SOP Instance {sop} replaced: version {replacement.old_version} "
                    f"-> {replacement.new_version}"
                ),
            },
            "reason": [
                {
                    "text": (
                        f"SOP Instance UID {sop} received again with different content "
                        f"(SHA-256 {replacement.old_sha256[:16]}... -> "
                        f"{replacement.new_sha256[:16]}...) from {who}"
                    )
                }
            ],
            "agent": [
                {
                    "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "author"}]},
                    "who": {"display": who},
                }
            ],
            "entity": [
                {
                    "role": "revision",
                    "what": {
                        "identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{sop}"},
                        "display": f"SOP Instance {sop}, version {replacement.new_version}",
                    },
                }
            ],
        }
        self._put_if_changed(uow, provenance)


class PatientIdentity:
    """The Patient a DICOM object names (issue 4 item 3): matched by its first identifier
    (PatientID + issuer -> system through the issuer map), created from the demographics when
    unknown; an existing Patient whose name, birth date or gender disagree is kept unchanged and
    a ``Flag`` records the conflict (never a merge). Used by the aggregator and by the MPPS SCP
    for an unscheduled step (``adapters.dicom._mpps``), so both find the same Patient."""

    def __init__(
        self,
        service: FhirService,
        principal: Principal,
        *,
        issuer_systems: Mapping[str, str],
        default_system: str,
    ) -> None:
        self.service = service
        self.principal = principal
        self.issuer_systems = dict(issuer_systems)
        self.default_system = default_system

    def reference(self, uow: UnitOfWork, summary: InstanceSummary, study_uid: str) -> str:
        """``Patient/<id>`` of ``summary``'s patient, created or flagged as the class says;
        ``study_uid`` names the study in a conflict's Flag (and owns a Patient without ID)."""
        incoming = dicom_to_patient(
            summary,
            issuer_systems=self.issuer_systems,
            default_system=self.default_system,
        )
        identifiers = patient_identifiers(
            summary,
            issuer_systems=self.issuer_systems,
            default_system=self.default_system,
        )
        if not identifiers:  # no Patient ID at all: a Patient of this study alone
            pid = _id("Patient", "study", study_uid)
            if _read(uow, "Patient", pid) is None:
                _put_if_changed(self.service, self.principal, uow, {**incoming, "id": pid})
            return f"Patient/{pid}"
        key = identifiers[0]
        system, value = key.get("system"), str(key["value"])
        criteria = f"{_escape(system)}|{_escape(value)}" if system else _escape(value)
        matches = []
        for rid in _search(self.service, uow, "Patient", "identifier", criteria):
            found = _read(uow, "Patient", rid)
            if found is not None and any(
                i.get("system") == system and i.get("value") == value
                for i in found.get("identifier") or []
            ):
                matches.append((rid, found))
        if not matches:
            pid = _id("Patient", system or "", value)
            _put_if_changed(self.service, self.principal, uow, {**incoming, "id": pid})
            return f"Patient/{pid}"
        pid, existing = sorted(matches, key=lambda m: m[0])[0]
        conflicts = patient_identity_conflicts(existing, incoming)
        if conflicts:
            self._flag_conflict(uow, pid, study_uid, conflicts)
        return f"Patient/{pid}"

    def _flag_conflict(
        self, uow: UnitOfWork, pid: str, study_uid: str, conflicts: Sequence[str]
    ) -> None:
        log.warning(
            "study %s: patient demographics conflict with Patient/%s (%s); kept, flagged",
            study_uid,
            pid,
            "; ".join(conflicts),
        )
        flag = {
            "resourceType": "Flag",
            "id": _id("Flag", "identity-conflict", pid, study_uid),
            "status": "active",
            "category": [
                {
                    "coding": [
                        {"system": FLAG_CATEGORY, "code": "admin", "display": "Administrative"}
                    ]
                }
            ],
            "code": {
                "text": (
                    "Patient identity conflict: DICOM study "
                    f"{study_uid} names this patient's identifier with different demographics "
                    f"({'; '.join(conflicts)}). The existing Patient was kept; review."
                )
            },
            "subject": {"reference": f"Patient/{pid}"},
        }
        _put_if_changed(self.service, self.principal, uow, flag)


def _put_if_changed(
    service: FhirService, principal: Principal, uow: UnitOfWork, resource: Resource
) -> None:
    rtype, rid = str(resource["resourceType"]), str(resource["id"])
    if _content(_read(uow, rtype, rid)) != resource:
        service.update(principal, rtype, rid, resource, uow=uow)


def _search(
    service: FhirService, uow: UnitOfWork, resource_type: str, name: str, value: str
) -> list[str]:
    parsed = service.parse_query(resource_type, [(name, value)], strict=True)
    query = SearchQuery(resource_type, parsed.criteria, count=50, total="none")
    return [rid for _, rid in uow.tx.search(query).matches]
