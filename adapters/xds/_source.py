"""PixelHub as XDS-I.b Imaging Document Source (IHE RAD TF-3 4.68 "Provide and Register Imaging
Document Set - MTOM/XOP", RAD-68; IHE RAD MADO): the ``xds-manifests`` projector.

It follows ``ImagingStudy`` creates and updates on the change feed. Once a study has been quiet
for ``xds_manifest_quiet_seconds`` (0: at once) it (re)builds the study's KOS manifest (DICOM
PS3.3 A.35.4, TID 2010 "Manifest"; RAD TF-3 4.68.4.1.2.2, ``mappings/study_to_kos``) from the
stored DICOM instances and the ``ImagingStudy``/``Patient``, and stores it locally as a blob-backed
``Binary`` plus a MADO ``DocumentReference`` (RAD TF-3 4.68.4.1.2.3, the DocumentEntry metadata of
an imaging manifest; MADO: ``context.related`` with the Study Instance UID, the accession and the
``ImagingStudy``), in one transaction. With ``xds_publish_url`` set it then sends the manifest by
ITI-41 (ITI TF-2 3.41, MTOM) to that Document Repository.

Identity and idempotence: the manifest's SOP Instance UID (its XDS uniqueId) is a ``2.25`` UUID
derived from the Study Instance UID and the set of referenced SOP Instance UIDs, so the same
content gives the same manifest (a retry writes nothing twice: the ``DocumentReference`` is created
only if none has that uniqueId) and a changed study gives a new one. The study's previous current
manifest made here becomes ``superseded`` and the new one ``relatesTo`` ``replaces`` it; when
publishing, the submission carries an ``RPLC`` association to the previous entryUUID (ITI TF-3
4.2.2.2.3), so the registry deprecates it.

Metadata (RAD TF-3 4.68.4.1.2.3.2-3; ITI TF-3 4.2.3.2): formatCode the KOS SOP Class
(``1.2.840.10008.5.1.4.1.1.88.59``, scheme ``1.2.840.10008.2.6.1``), mimeType
``application/dicom``, classCode and typeCode LOINC ``18748-4`` "Diagnostic imaging study",
eventCodeList the study's modalities (DCM) and its series' body sites (SNOMED CT),
referenceIdList the Study Instance UID and the accession, confidentialityCode ``N``
(``2.16.840.1.113883.5.25``), healthcareFacilityTypeCode ``HOSP`` "Hospital" (HL7 RoleCode
``2.16.840.1.113883.5.111``) and practiceSettingCode SNOMED CT ``394914008`` "Radiology"
(fixed defaults: PixelHub knows neither from DICOM), the patientId and sourcePatientId the
Patient's identifier in the affinity domain (``xds_affinity_domain``: system ``urn:oid:<it>``).

A study whose Patient has no identifier in the affinity domain gets no manifest (logged once per
patient at info): XDS cannot register a document without an affinity-domain patient id. Without
``xds_affinity_domain`` the projector is off.

Failures: a transport error or a ``Failure`` RegistryResponse of the repository raises from the
projector, so the work is retried (every ``_RETRY_SECONDS`` for that study); the local writes are
idempotent, and a repository that already has the uniqueId (``XDSDuplicateUniqueIdInRegistry``:
an earlier answer was lost) counts as published. Studies waiting for their quiet period are
remembered across restarts by a second change-feed cursor (``RECOVERY_CURSOR``): the lowest
sequence not yet turned into a manifest, from which the changes are read again on start.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import hashlib
import io
import logging
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from lxml import etree
from pydicom import dcmwrite
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from adapters.xds._ebrim import submit_objects_request
from adapters.xds._errors import RS_NS, XdsError
from adapters.xds._identity import XdsIdentity, xds_identity
from adapters.xds._repository import URI, XDSB, unique_id_token
from adapters.xds._soap import SOAP, XOP, SoapFault, mtom_request, parse_envelope
from hub.blobs import open_blob_store
from hub.channels import ChannelContext
from hub.errors import Gone, HubError, NotFound
from hub.fhir.binary import blob_binary, blob_of
from hub.fhir.service import UnitOfWork
from hub.fhir.validation import validate_resource
from hub.http.audit import actor_of
from hub.ports import Change, ChangeFeed, DicomInstanceStore
from mappings.dicom_instance import InstanceSummary
from mappings.identifier_system import is_oid, issuer_of
from mappings.interaction_to_auditevent import DCM as DCM_SYSTEM
from mappings.interaction_to_auditevent import (
    IHE_EVENT,
    Outcome,
    coding,
    identifier_entity,
    patient_entity,
    resource_entity,
)
from mappings.study_to_kos import ManifestInput, ManifestInstance, ManifestPatient, study_to_kos
from mappings.xds_model import APPROVED, KOS_FORMAT, Association, Code, DocumentEntry, SubmissionSet
from mappings.xds_to_documentreference import (
    ACCESSION_TYPE,
    STUDY_UID_TYPE,
    documententry_to_documentreference,
    documentreference_to_documententry,
    fhir_to_dtm,
    identifier_to_cx,
    system_to_scheme,
)

log = logging.getLogger("pixelhub.xds.source")

ITI41: Final = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
RECOVERY_CURSOR: Final = "xds-manifests:pending"
DICOM_MIME: Final = "application/dicom"
DCMUID_SYSTEM: Final = "http://dicom.nema.org/resources/ontology/DCMUID"
V2_0203: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"
# RAD TF-3 4.68.4.1.2.3.2: class/type of an imaging manifest; contentTypeCode of the submission
IMAGING_STUDY: Final = Code("18748-4", "2.16.840.1.113883.6.1", "Diagnostic imaging study")
KOS_FORMAT_CODE: Final = Code(KOS_FORMAT, "1.2.840.10008.2.6.1", "Key Object Selection Document")
CONFIDENTIALITY_NORMAL: Final = Code("N", "2.16.840.1.113883.5.25", "normal")
FACILITY_TYPE: Final = Code("HOSP", "2.16.840.1.113883.5.111", "Hospital")
PRACTICE_SETTING: Final = Code("394914008", "2.16.840.1.113883.6.96", "Radiology")
# Fixed namespace of the manifest's derived UIDs and resource ids (uuid5 of a name below).
_NAMESPACE: Final = uuid.UUID("a3c1e0f4-6b2d-5e8a-9f17-4d0c8b2e6a31")
_RETRY_SECONDS: Final = 5.0
_TIMEOUT: Final = 60.0

# The one port to the external repository: (url, body, headers, timeout) -> (status, content
# type, body). Transport failures raise ``OSError`` (``urllib`` raises subclasses of it).
Post = Callable[[str, bytes, Mapping[str, str], float], tuple[int, str, bytes]]


def _urllib_post(
    url: str, body: bytes, headers: Mapping[str, str], timeout: float
) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:  # an answer all the same (a SOAP fault, a 401...)
        with contextlib.closing(exc):
            return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def manifest_uids(study_uid: str, sop_instance_uids: Sequence[str]) -> tuple[str, str]:
    """(Series, SOP Instance) UIDs of a study's manifest: ``2.25`` UUID-derived UIDs (PS3.5 B.2)
    of the study UID (the series: one per study) and of the study UID with the sorted set of
    referenced instances (the manifest: same content, same UID)."""
    series = uuid.uuid5(_NAMESPACE, f"kos-series|{study_uid}")
    content = "|".join(sorted(set(sop_instance_uids)))
    sop = uuid.uuid5(_NAMESPACE, f"kos|{study_uid}|{content}")
    return f"2.25.{series.int}", f"2.25.{sop.int}"


def _derived_id(kind: str, manifest_uid: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{kind}|{manifest_uid}"))


def _dtm(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%S")


def _part10(dataset: Any) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta = meta
    out = io.BytesIO()
    dcmwrite(out, dataset, enforce_file_format=True)
    return out.getvalue()


@dataclass
class _Pending:
    due: float  # clock time at which the study is quiet enough
    seq: int  # the first change-feed sequence not yet turned into its manifest


class ManifestSource:
    """The ``xds-manifests`` projector (see the module doc)."""

    name = "xds-manifests"

    def __init__(
        self,
        context: ChannelContext,
        identity: XdsIdentity,
        store: DicomInstanceStore,
        feed: ChangeFeed,
        *,
        clock: Callable[[], float] = time.monotonic,
        post: Post = _urllib_post,
    ) -> None:
        settings = context.settings
        self.context = context
        self.identity = identity
        self.store = store
        self.feed = feed
        self.clock = clock
        self.post = post
        self.affinity = str(settings.xds_affinity_domain)
        self.quiet_seconds = settings.xds_manifest_quiet_seconds
        self.publish_url = settings.xds_publish_url
        self.publish_token = settings.xds_publish_token
        self.source_id = settings.xds_source_id or identity.repository_unique_id
        self.blobs = open_blob_store(settings.data_dir)
        self.itself = context.peer("pixelhub-xds", None)
        self.pending: dict[str, _Pending] = {}  # ImagingStudy id -> when due
        self.published: set[str] = set()  # manifest uniqueIds the repository has
        self._unidentified: set[str] = set()  # Patient references logged once
        self._recovered = False
        self._handled_to = 0

    # ------------------------------------------------------------------ projector protocol

    def handle(self, changes: Sequence[Change]) -> None:
        """Note the studies created or updated; build those already due (with a quiet period
        of 0: all of them), raising if one fails so the batch is retried."""
        self._recover()
        now = self.clock()
        for change in changes:
            if change.resource_type == "ImagingStudy" and change.op != "delete":
                known = self.pending.get(change.id)
                if known is None:
                    self.pending[change.id] = _Pending(now + self.quiet_seconds, change.seq)
                else:  # quiet again from now; a failed study keeps its retry delay
                    known.due = max(known.due, now + self.quiet_seconds)
                    known.seq = min(known.seq, change.seq)
        if changes:
            self._handled_to = max(self._handled_to, changes[-1].seq)
        self._run(force=False)

    def tick(self) -> float | None:
        """Build the manifests that are due; seconds until the next one is (or None)."""
        self._recover()
        return self._run(force=False)

    def flush(self) -> None:
        """Build every pending manifest now, whatever its quiet period."""
        self._recover()
        self._run(force=True)

    # ------------------------------------------------------------------ pending state

    def _recover(self) -> None:
        """On start, and whenever this projector's cursor moved without it (another replica led
        meanwhile): the studies noted but not yet built are read again from the change feed,
        between the recovery cursor and this projector's cursor."""
        end = self.feed.cursor(self.name)
        if self._recovered and end <= self._handled_to:
            return
        start = self.feed.cursor(RECOVERY_CURSOR)
        now = self.clock()
        while start < end:
            changes = self.feed.read_since(start, 1000)
            if not changes:
                break
            for change in changes:
                if change.seq > end:
                    break
                if change.resource_type == "ImagingStudy" and change.op != "delete":
                    self.pending.setdefault(change.id, _Pending(now, change.seq))
            start = changes[-1].seq
        self._handled_to = max(self._handled_to, end)
        self._recovered = True

    def _save_recovery(self) -> None:
        low = min((p.seq for p in self.pending.values()), default=self._handled_to + 1) - 1
        if low != self.feed.cursor(RECOVERY_CURSOR):
            self.feed.set_cursor(RECOVERY_CURSOR, low)

    def _run(self, *, force: bool) -> float | None:
        failures: list[Exception] = []
        next_due: float | None = None
        for sid, pending in list(self.pending.items()):
            now = self.clock()
            if not force and pending.due > now:
                wait = pending.due - now
                next_due = wait if next_due is None else min(next_due, wait)
                continue
            try:
                self.build(sid)
            except Exception as exc:
                pending.due = self.clock() + _RETRY_SECONDS
                next_due = _RETRY_SECONDS if next_due is None else min(next_due, _RETRY_SECONDS)
                failures.append(exc)
                continue
            if self.pending.get(sid) is pending:
                del self.pending[sid]
        self._save_recovery()
        if failures:
            if len(failures) > 1:
                log.warning("%d manifests failed; the first is raised", len(failures))
            raise failures[0]
        return next_due

    # ------------------------------------------------------------------ one study

    def _read(self, resource_type: str, rid: str) -> dict[str, Any] | None:
        try:
            stored = self.context.service.read(self.itself, resource_type, rid)
        except (NotFound, Gone):
            return None
        if stored.data is None:
            return None
        data: dict[str, Any] = orjson.loads(stored.data)
        return data

    def _search(self, resource_type: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        bundle = self.context.service.search(self.itself, resource_type, params)
        entries = orjson.loads(orjson.dumps(bundle.get("entry", [])))
        return [e["resource"] for e in entries]

    def build(self, study_id: str) -> str | None:
        """(Re)build, store and publish the manifest of ``ImagingStudy/<study_id>``; its
        uniqueId, or None when the study gets none."""
        study = self._read("ImagingStudy", study_id)
        if study is None:
            return None
        study_uid = next(
            (
                str(i.get("value", "")).removeprefix("urn:oid:")
                for i in study.get("identifier", [])
                if i.get("system") == "urn:dicom:uid"
            ),
            "",
        )
        records = self.store.instances_of_study(study_uid) if study_uid else []
        if not records:
            return None
        subject = str((study.get("subject") or {}).get("reference") or "")
        patient = self._read("Patient", subject.partition("/")[2]) if subject else None
        system = f"urn:oid:{self.affinity}"
        identifier = next(
            (
                i
                for i in (patient or {}).get("identifier", [])
                if i.get("system") == system and i.get("value")
            ),
            None,
        )
        if identifier is None:
            if subject not in self._unidentified:
                self._unidentified.add(subject)
                log.info(
                    "study %s: %s has no identifier in the XDS affinity domain %s; no manifest",
                    study_uid, subject or "no patient", self.affinity,
                )  # fmt: skip
            return None
        summaries = [InstanceSummary.from_json_dict(r.summary) for r in records]
        _series_uid, manifest_uid = manifest_uids(
            study_uid, [s.sop_instance_uid for s in summaries]
        )
        doc = self._search(
            "DocumentReference", [("identifier", unique_id_token(manifest_uid)), ("_count", "2")]
        )
        if doc:
            stored = doc[0]
        else:
            try:
                made = self._store(study, study_uid, summaries, subject, identifier)
            except ValueError as exc:  # the study cannot make a valid manifest: not retried
                log.warning("study %s: no manifest: %s", study_uid, exc)
                return None
            if made is None:
                return None
            stored = made
        if stored.get("status") != "current":  # the same content as a manifest replaced since
            return manifest_uid
        if self.publish_url and manifest_uid not in self.published:
            self.publish(stored)
            self.published.add(manifest_uid)
        return manifest_uid

    def _store(
        self,
        study: dict[str, Any],
        study_uid: str,
        summaries: list[InstanceSummary],
        subject: str,
        identifier: Mapping[str, Any],
    ) -> dict[str, Any] | None:
        """Build the KOS and its DocumentReference and write them (RAD TF-3 4.68.4.1.2)."""
        settings = self.context.settings
        now = datetime.now(UTC)
        summaries = sorted(
            summaries,
            key=lambda s: (s.series_instance_uid, s.instance_number or 0, s.sop_instance_uid),
        )
        source = min(
            summaries, key=lambda s: (not s.study_date, not s.patient_id, s.sop_instance_uid)
        )
        series_uid, manifest_uid = manifest_uids(study_uid, [s.sop_instance_uid for s in summaries])
        namespace, universal, _kind = issuer_of(
            str(identifier["system"]),
            settings.dicom_issuer_systems,
            settings.dicom_default_patient_system,
        )
        origin = self.context.service.options.base_url.rstrip("/").removesuffix("/fhir")
        accession = next((s for s in summaries if s.accession_number), None)
        name = source.patient_name.alphabetic if source.patient_name else ""
        referrer = source.referring_physician.alphabetic if source.referring_physician else ""
        kos = study_to_kos(
            ManifestInput(
                patient=ManifestPatient(
                    str(identifier["value"]),
                    namespace or universal,
                    name,
                    source.patient_birth_date,
                    source.patient_sex,
                ),
                study_uid=study_uid,
                manifest_series_uid=series_uid,
                manifest_sop_uid=manifest_uid,
                content_datetime=now,
                study_date=source.study_date,
                study_time=source.study_time,
                accession=accession.accession_number if accession else "",
                accession_issuer=(
                    accession.accession_issuer.local
                    if accession and accession.accession_issuer
                    else ""
                ),
                study_description=source.study_description,
                study_id=source.study_id,
                referring_physician=referrer,
                instances=tuple(
                    ManifestInstance(
                        s.series_instance_uid, s.sop_class_uid, s.sop_instance_uid, s.modality
                    )
                    for s in summaries
                ),
                retrieve_location_uid=self.identity.repository_unique_id,
                retrieve_ae_title=settings.dicom_aet,
                retrieve_url=f"{origin}/dicomweb/studies/{study_uid}",
                institution=source.institution_name,
            )
        )
        data = _part10(kos)
        doc_id = _derived_id("DocumentReference", manifest_uid)
        binary_id = _derived_id("Binary", manifest_uid)
        cx = identifier_to_cx(identifier)
        entry = DocumentEntry(
            entry_uuid=f"urn:uuid:{_derived_id('entry', manifest_uid)}",
            unique_id=manifest_uid,
            patient_id=cx,
            mime_type=DICOM_MIME,
            class_code=IMAGING_STUDY,
            type_code=IMAGING_STUDY,
            format_code=KOS_FORMAT_CODE,
            healthcare_facility_type=FACILITY_TYPE,
            practice_setting=PRACTICE_SETTING,
            confidentiality=(CONFIDENTIALITY_NORMAL,),
            creation_time=_dtm(now),
            source_patient_id=cx,
            source_patient_info=tuple(
                f"{field}|{value}"
                for field, value in (
                    ("PID-3", cx),
                    ("PID-5", name),
                    ("PID-7", source.patient_birth_date),
                    ("PID-8", source.patient_sex),
                )
                if value
            ),
            event_codes=_event_codes(study),
            service_start=_service_start(study),
            title=(
                f"Imaging manifest: {source.study_description}"
                if source.study_description
                else "Imaging study manifest"
            ),
            hash=hashlib.sha1(data).hexdigest(),
            size=len(data),
            repository_unique_id=self.identity.repository_unique_id,
            home_community_id=self.identity.home_community_id,
            reference_ids=_reference_ids(study, study_uid),
        )
        doc = documententry_to_documentreference(
            entry,
            patient=subject,
            content_url=f"Binary/{binary_id}",
            study=f"ImagingStudy/{study['id']}",
        )
        previous = [
            old
            for old in self._search(
                "DocumentReference",
                [
                    ("related:identifier", f"urn:dicom:uid|urn:oid:{study_uid}"),
                    ("format", f"{DCMUID_SYSTEM}|{KOS_FORMAT}"),
                    ("status", "current"),
                ],
            )
            if old.get("id") != doc_id and _made_here(old)
        ]
        if previous:
            doc["relatesTo"] = [
                {"code": "replaces", "target": {"reference": f"DocumentReference/{old['id']}"}}
                for old in previous
            ]
        validate_resource(dict(doc, id=doc_id), "DocumentReference")
        key = self.blobs.put(io.BytesIO(data), prefix="xds-kos").key
        binary = blob_binary(DICOM_MIME, key, f"DocumentReference/{doc_id}")
        token = unique_id_token(manifest_uid)

        def write(uow: UnitOfWork) -> bool:
            if uow.tx.read("DocumentReference", doc_id) is not None:
                return False
            service = self.context.service
            created = service.create(
                self.itself, "DocumentReference", doc, uow=uow, new_id=doc_id,
                if_none_exist=f"identifier={token}",
            )  # fmt: skip
            if not created.created:
                return False
            service.create(self.itself, "Binary", binary, uow=uow, new_id=binary_id)
            for old in previous:
                old["status"] = "superseded"
                service.update(self.itself, "DocumentReference", old["id"], old, uow=uow)
            return True

        if not self.context.service.run(write, validate=False):  # validated above
            with contextlib.suppress(HubError):
                self.blobs.delete(key)
            found = self._search("DocumentReference", [("identifier", token), ("_count", "2")])
            return found[0] if found else None
        self.context.notify_change()
        log.info(
            "study %s: manifest %s stored (%d instance(s))", study_uid, manifest_uid, len(summaries)
        )
        return dict(doc, id=doc_id)

    # ------------------------------------------------------------------ RAD-68 / ITI-41

    def publish(self, doc: Mapping[str, Any]) -> None:
        """Send the manifest of ``doc`` to ``xds_publish_url`` by ITI-41 over MTOM (RAD TF-3
        4.68.4.1.2: a submission set, the DocumentEntry, HasMember, and RPLC of the manifest it
        replaces). Raises ``XdsError`` on a transport error or a Failure response."""
        assert self.publish_url
        entry_uuid = _entry_uuid(doc)
        subject = self._read("Patient", str(doc["subject"]["reference"]).partition("/")[2])
        identifier = next(
            (
                i
                for i in (subject or {}).get("identifier", [])
                if i.get("system") == f"urn:oid:{self.affinity}"
            ),
            None,
        )
        if identifier is None:  # lost since the manifest was made: nothing to register it by
            log.warning(
                "manifest %s not published: %s has no identifier in %s any more",
                doc["masterIdentifier"]["value"], doc["subject"]["reference"], self.affinity,
            )  # fmt: skip
            return
        entry = documentreference_to_documententry(
            doc, patient_id=identifier_to_cx(identifier), repository_unique_id="",
            entry_uuid=entry_uuid,
        )  # fmt: skip
        entry = replace(entry, status=APPROVED)
        content = self._kos_of(doc)
        replaced = []
        for relation in doc.get("relatesTo", []):
            if relation.get("code") != "replaces":
                continue
            target = str(relation.get("target", {}).get("reference", ""))
            old = self._read("DocumentReference", target.partition("/")[2])
            if old is not None and _entry_uuid(old):
                replaced.append(_entry_uuid(old))
        now = _dtm(datetime.now(UTC))
        ss = SubmissionSet(
            entry_uuid=f"urn:uuid:{uuid.uuid4()}",
            unique_id=f"2.25.{uuid.uuid4().int}",
            source_id=self.source_id,
            patient_id=entry.patient_id,
            submission_time=now,
            content_type=IMAGING_STUDY,
            title="Imaging manifest",
        )
        member = Association(
            f"urn:uuid:{uuid.uuid4()}", "HasMember", ss.entry_uuid, entry.entry_uuid,
            submission_set_status="Original",
        )  # fmt: skip
        rplc = [
            Association(f"urn:uuid:{uuid.uuid4()}", "RPLC", entry.entry_uuid, target)
            for target in replaced
        ]
        try:
            errors = self._send(ss, entry, content, [member, *rplc])
            if errors and rplc and all(e.location in {a.entry_uuid for a in rplc} for e in errors):
                # the manifests it replaces never reached that registry: register it all the same
                log.warning(
                    "manifest %s: the repository does not know the manifest it replaces (%s); "
                    "sent without RPLC", entry.unique_id, "; ".join(e.message for e in errors),
                )  # fmt: skip
                errors = self._send(ss, entry, content, [member])
        except XdsError as exc:
            self._audit_export(doc, ss, "8", exc.message)
            raise
        if any(e.code == XdsError.DUPLICATE_UNIQUE_ID for e in errors):
            log.info("manifest %s was already registered there", entry.unique_id)
            self._audit_export(doc, ss, "0", "already registered there")
            return
        if errors:
            self._audit_export(doc, ss, "4", "; ".join(e.message for e in errors)[:500])
            raise XdsError.several(errors)
        self._audit_export(doc, ss, "0", None)
        log.info("manifest %s published to %s", entry.unique_id, self.publish_url)

    def _audit_export(
        self, doc: Mapping[str, Any], ss: SubmissionSet, outcome: Outcome, reason: str | None
    ) -> None:
        """The Document Source's record of an ITI-41 it sent (ITI TF-2 3.41.5.1.1: DICOM
        110106 Export, subtype ITI-41; the patient, the manifest and the submission set)."""
        trail = self.context.audit
        if trail is None or not trail.enabled:
            return
        trail.record(
            actor_of(self.itself, None),
            type_=coding(DCM_SYSTEM, "110106", "Export"),
            subtype=[coding(IHE_EVENT, "ITI-41", "Provide and Register Document Set-b")],
            action="R",
            outcome=outcome,
            outcome_desc=reason,
            entities=[
                patient_entity(str(doc["subject"]["reference"])),
                resource_entity(f"DocumentReference/{doc['id']}"),
                identifier_entity("urn:ietf:rfc:3986", f"urn:oid:{ss.unique_id}", "20", "Job"),
            ],
        )

    def _kos_of(self, doc: Mapping[str, Any]) -> bytes:
        url = str(doc["content"][0]["attachment"]["url"])
        binary = self._read("Binary", url.rpartition("/")[2])
        key = blob_of(binary) if binary is not None else None
        if key is None:
            raise XdsError(XdsError.REPOSITORY, f"the manifest's content {url} is not stored")
        with self.blobs.open(key) as stream:
            return stream.read()

    def _send(
        self, ss: SubmissionSet, entry: DocumentEntry, content: bytes,
        associations: list[Association],
    ) -> list[XdsError]:  # fmt: skip
        """One ITI-41 request; the errors of a Failure response (empty on success)."""
        assert self.publish_url
        body = etree.Element(
            f"{{{XDSB}}}ProvideAndRegisterDocumentSetRequest", nsmap={"xdsb": XDSB}
        )
        body.append(submit_objects_request(ss, [entry], associations))
        cid = f"{uuid.uuid4().hex}@pixelhub"
        document = etree.SubElement(body, f"{{{XDSB}}}Document", id=entry.entry_uuid)
        etree.SubElement(document, f"{{{XOP}}}Include").set("href", f"cid:{cid}")
        content_type, data = mtom_request(
            ITI41, body, {cid: (DICOM_MIME, content)}, to=self.publish_url
        )
        headers = {"Content-Type": content_type}
        if self.publish_token:
            headers["Authorization"] = f"Bearer {self.publish_token}"
        try:
            status, answer_type, answer = self.post(self.publish_url, data, headers, _TIMEOUT)
        except OSError as exc:  # urllib's URLError, timeouts, refused connections
            raise XdsError(
                XdsError.REPOSITORY, f"the repository {self.publish_url} is not reachable: {exc}"
            ) from exc
        return _registry_errors(status, answer_type, answer)


# --------------------------------------------------------------------------- helpers


def _made_here(doc: Mapping[str, Any]) -> bool:
    """A manifest this projector wrote: its id is the one derived from its uniqueId."""
    master = str((doc.get("masterIdentifier") or {}).get("value") or "")
    return doc.get("id") == _derived_id("DocumentReference", master.removeprefix("urn:oid:"))


def _entry_uuid(doc: Mapping[str, Any]) -> str:
    return next(
        (
            str(i["value"])
            for i in doc.get("identifier", [])
            if i.get("system") == URI and str(i.get("value", "")).startswith("urn:uuid:")
        ),
        "",
    )


def _event_codes(study: Mapping[str, Any]) -> tuple[Code, ...]:
    """eventCodeList (RAD TF-3 4.68.4.1.2.3.3): the modalities (DCM) and body sites of the study."""
    codings = list(study.get("modality", []))
    for series in study.get("series", []):
        site = series.get("bodySite")
        if isinstance(site, dict):
            codings.append(site)
    codes: list[Code] = []
    for item in codings:
        system, code = str(item.get("system") or ""), str(item.get("code") or "")
        if not system or not code:
            continue
        made = Code(code, system_to_scheme(system), str(item.get("display") or code))
        if all((c.code, c.scheme) != (made.code, made.scheme) for c in codes):
            codes.append(made)
    return tuple(codes)


def _service_start(study: Mapping[str, Any]) -> str:
    started = str(study.get("started") or "")
    if not started:
        return ""
    try:
        return fhir_to_dtm(started)
    except ValueError:  # a time without a zone: keep the date
        try:
            return fhir_to_dtm(started[:10])
        except ValueError:
            return ""


def _reference_ids(study: Mapping[str, Any], study_uid: str) -> tuple[str, ...]:
    """referenceIdList (ITI TF-3 4.2.3.2.28; RAD TF-3 4.68.4.1.2.3.3): the Study Instance UID and
    the accession (with its ISO assigning authority when its system is an OID)."""
    ids = [f"{study_uid}^^^^{STUDY_UID_TYPE}"]
    for identifier in study.get("identifier", []):
        codes = {
            (c.get("system"), c.get("code"))
            for c in (identifier.get("type") or {}).get("coding", [])
        }
        value = str(identifier.get("value") or "")
        if (V2_0203, "ACSN") not in codes or not value or any(c in value for c in "^&~\\|"):
            continue
        oid = str(identifier.get("system") or "").removeprefix("urn:oid:")
        authority = f"&{oid}&ISO" if is_oid(oid) else ""
        ids.append(f"{value}^^^{authority}^{ACCESSION_TYPE}")
    return tuple(ids)


def _soap_body(content_type: str, data: bytes) -> etree._Element:
    """The Body child of a SOAP answer, plain or MTOM (its root part)."""
    if content_type.lower().startswith("multipart/"):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + data
        )
        parts = [p for p in message.iter_parts()] if message.is_multipart() else []
        if not parts:
            raise XdsError(XdsError.REPOSITORY, "the repository's MTOM answer has no part")
        root = parts[0].get_payload(decode=True)
        data = root if isinstance(root, bytes) else b""
    try:
        return parse_envelope(data)[3]
    except SoapFault as exc:
        raise XdsError(XdsError.REPOSITORY, f"the repository's answer: {exc.message}") from exc


def _registry_errors(status: int, content_type: str, data: bytes) -> list[XdsError]:
    """The errors of an ITI-41 answer (ITI TF-2 3.41.4.2; ITI TF-3 4.2.4): none for Success and
    PartialSuccess; raises for a SOAP fault or an answer that is not a RegistryResponse."""
    if not data or ("xml" not in content_type.lower() and "multipart" not in content_type.lower()):
        raise XdsError(
            XdsError.REPOSITORY,
            f"the repository answered HTTP {status} without SOAP ({content_type or 'no type'})",
        )
    body = _soap_body(content_type, data)
    if body.tag == f"{{{SOAP}}}Fault":
        reason = " ".join(str(t) for t in body.itertext()).strip()
        raise XdsError(XdsError.REPOSITORY, f"the repository answered a SOAP fault: {reason}")
    if body.tag != f"{{{RS_NS}}}RegistryResponse":
        raise XdsError(XdsError.REPOSITORY, f"the repository answered {body.tag}, not a response")
    outcome = body.get("status", "")
    if not outcome.endswith(":Failure"):
        return []
    errors = [
        XdsError(
            item.get("errorCode", XdsError.REPOSITORY),
            item.get("codeContext", ""),
            item.get("location", ""),
        )
        for item in body.iter(f"{{{RS_NS}}}RegistryError")
    ]
    return errors or [XdsError(XdsError.REPOSITORY, "the repository answered Failure")]


def create_manifest_source(context: ChannelContext) -> ManifestSource | None:
    """The ``pixelhub.projectors`` entry point ``xds``: the manifest source, or None without
    ``xds_affinity_domain`` or a DICOM instance store."""
    settings = context.settings
    if not settings.xds_affinity_domain:
        return None
    if not is_oid(settings.xds_affinity_domain):
        raise ValueError(
            f"xds_affinity_domain {settings.xds_affinity_domain!r} is not an OID (the assigning "
            "authority of XDS patient ids)"
        )
    store: DicomInstanceStore | None = getattr(context.engine, "dicom_store", None)
    if store is None:
        log.warning("xds_affinity_domain is set but this engine stores no DICOM: no manifests")
        return None
    return ManifestSource(context, xds_identity(settings), store, context.engine.change_feed)


__all__ = ["RECOVERY_CURSOR", "ManifestSource", "create_manifest_source", "manifest_uids"]
