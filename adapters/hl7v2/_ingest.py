"""From received HL7 v2 messages to committed FHIR resources and their acknowledgments.

``Hl7Ingest.handle_batch([(bytes, address), ...]) -> [[ACK bytes], ...]`` is the whole pipeline,
synchronous, run by the MLLP server on ONE applier thread, so messages are applied in arrival
order (per sender, per patient and overall):

1. parse (``_parser``), check the sender against the allowed peers, check ``MSH-9/10/11/12``
   (HL7 v2.5.1 ch. 2 §2.9.2: AR 200/201/202/203);
2. group commit: the batch runs in ONE transaction (``FhirService.run``) and each message in its
   own nested ``FhirService.run``, a savepoint of it: the duplicate check, the message's effects
   and a ``Provenance`` recording it — ``entity[0].what.identifier`` = {``urn:pixelhub:hl7v2:
   <MSH-3>^<MSH-4>``, ``MSH-10``} and ``target`` = what it wrote. Its id is derived from that
   identifier, so a re-sent message (same sender, same ``MSH-10``) is found by one read and
   acknowledged ``AA`` again without being applied twice. A message that fails rolls back its
   own savepoint only;
3. only after the commit: each message's ACK (``AA``), or ``AE``/``AR`` with ``ERR`` for a message
   that failed, in which case nothing of it was written. If the commit itself fails, nothing
   of the batch was written and every message of it gets that error's ``AE``/``AR``.

Supported: ADT A01 A03 A04 A08 A11 A13 A28 A31 A40 (ch. 3), ORM^O01, OMG^O19 and OMI^O23 (ch. 4,
IHE RAD-4/RAD-13), ORU^R01 (ch. 7); versions 2.3 to 2.8.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import orjson

from adapters.hl7v2._ack import AckContext, acknowledgments
from adapters.hl7v2._errors import (
    APPLICATION_INTERNAL_ERROR,
    REQUIRED_FIELD_MISSING,
    UNKNOWN_KEY_IDENTIFIER,
    UNSUPPORTED_EVENT_CODE,
    UNSUPPORTED_MESSAGE_TYPE,
    UNSUPPORTED_PROCESSING_ID,
    UNSUPPORTED_VERSION_ID,
    AckCode,
    AckError,
    Hl7Error,
    to_ack_error,
)
from adapters.hl7v2._parser import parse_message
from hub.audit import Actor, AuditTrail
from hub.auth import Principal
from hub.errors import HubError
from hub.fhir.service import FhirService, UnitOfWork
from hub.imaging.order_linking import (
    DEFAULT_ACCESSION_SYSTEM,
    find_by_accession,
    read_json,
    search_ids,
)
from hub.peers import peer_rules
from hub.search.model import Criterion, SearchQuery, TokenValue
from mappings.hl7v2_model import (
    ErrorLocation,
    Hl7Message,
    IdentifierSystems,
    Mapped,
    MappingError,
    Resource,
    merge_update,
)
from mappings.hl7v2_to_diagnosticreport import hl7v2_to_diagnosticreport
from mappings.hl7v2_to_encounter import (
    complete_new_encounter,
    hl7v2_to_encounter,
    visit_identifier,
)
from mappings.hl7v2_to_patient import cx_identifier, hl7v2_to_patient
from mappings.hl7v2_to_servicerequest import hl7v2_to_servicerequest

log = logging.getLogger("pixelhub.hl7v2")

SUPPORTED_VERSIONS = frozenset(
    {"2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2"}
)
SUPPORTED_EVENTS: dict[str, frozenset[str]] = {
    "ADT": frozenset({"A01", "A03", "A04", "A08", "A11", "A13", "A28", "A31", "A40"}),
    "ORM": frozenset({"O01"}),
    "OMI": frozenset({"O23"}),
    "OMG": frozenset({"O19"}),
    "ORU": frozenset({"R01"}),
}
PROCESSING_IDS = frozenset({"P", "T", "D"})
ORDER_SYSTEM = "urn:pixelhub:hl7v2:order"
ACCESSION_SYSTEM = DEFAULT_ACCESSION_SYSTEM
PROVENANCE_SYSTEM = "urn:pixelhub:hl7v2:"
MAX_MATCHES = 50  # candidates one identifier search returns
_PROVENANCE_NAMESPACE = uuid.UUID("5d0f3c1e-8a47-5b7e-9c2a-2f6b1e4d7a90")
# Resources whose subject moves to the surviving patient on an A40 merge.
_SUBJECT_TYPES = ("ImagingStudy", "ServiceRequest", "DiagnosticReport", "Encounter")


def local_offset(naive: datetime) -> timedelta:
    """The hub's local UTC offset at a wall-clock time (DST-aware, via the C library)."""
    return naive.astimezone().utcoffset() or timedelta(0)


@dataclass(frozen=True)
class PeerRule:
    """One ``hl7_allowed_peers`` entry: ``APP^FACILITY`` optionally ``@address``."""

    application: str
    facility: str
    address: str | None = None

    @classmethod
    def parse(cls, entry: str) -> PeerRule:
        sender, _, address = entry.partition("@")
        app, _, facility = sender.partition("^")
        if not app:
            raise ValueError(f"hl7_allowed_peers entry {entry!r}: expected APP^FACILITY[@address]")
        return cls(app, facility, address or None)

    def allows(self, app: str, facility: str, address: str | None) -> bool:
        return (
            app == self.application
            and facility == self.facility
            and (self.address is None or self.address == address)
        )


def parse_peers(entries: Iterable[str], *, demo: bool) -> list[PeerRule] | None:
    """The allowed senders (``None`` = any; see ``hub.peers.peer_rules``)."""
    return peer_rules(entries, demo=demo, setting="hl7_allowed_peers", parse=PeerRule.parse)


@dataclass(frozen=True)
class Outcome:
    """What applying one message did."""

    duplicate: bool
    targets: tuple[str, ...]
    patient: str | None = None  # "Patient/<id>" the message is about


@dataclass
class _Result:
    """One message's acknowledgment so far: ``AA`` until something fails."""

    ctx: AckContext = field(default_factory=AckContext)
    codec: str = "ascii"
    code: AckCode = "AA"
    errors: list[AckError] = field(default_factory=list)
    message_type: str = ""  # MSH-9.1^MSH-9.2, for the audit record
    patient: str | None = None  # "Patient/<id>" the message touched

    def fail(self, exc: Exception) -> None:
        if not isinstance(exc, (Hl7Error, MappingError, HubError)):
            log.error("HL7 message %s failed", self.ctx.control_id or "(unparsed)", exc_info=exc)
        self.code, self.errors = to_ack_error(exc)

    def acks(self, now: datetime) -> list[bytes]:
        return [
            ack.encode(self.codec, errors="replace")
            for ack in acknowledgments(self.ctx, self.code, self.errors, now)
        ]


class Hl7Ingest:
    """Parses, checks, applies and acknowledges messages, a batch at a time (see module doc)."""

    def __init__(
        self,
        service: FhirService,
        *,
        principal_for: Callable[[str, str | None], Principal],
        peers: list[PeerRule] | None,
        authority_systems: dict[str, str],
        default_patient_system: str,
        notify_change: Callable[[], None] = lambda: None,
        offset_of: Callable[[datetime], timedelta] = local_offset,
        clock: Callable[[], datetime] = lambda: datetime.now().astimezone(),
        audit: AuditTrail | None = None,
    ) -> None:
        self.service = service
        self.audit = audit if audit is not None and audit.enabled else None
        self.principal_for = principal_for
        self.peers = peers
        self.patient_systems = IdentifierSystems(authority_systems, default_patient_system)
        self.order_systems = IdentifierSystems(authority_systems, ORDER_SYSTEM)
        self.accession_systems = IdentifierSystems(authority_systems, ACCESSION_SYSTEM)
        self.notify_change = notify_change
        self.offset_of = offset_of
        self.clock = clock
        self._identifier_criteria: dict[str, Criterion] = {}

    def identifier_query(self, resource_type: str, idents: Iterable[Resource]) -> SearchQuery:
        """``identifier=system|value,...`` on ``resource_type`` (FHIR R4 search.html#token, the
        values ORed), built as ``FhirService.parse_query`` would parse it but without a URL to
        parse: the parameter as the registry resolves it (once per type), the values as the
        token parser makes them."""
        template = self._identifier_criteria.get(resource_type)
        if template is None:
            parsed = self.service.parse_query(resource_type, [("identifier", "s|v")], strict=True)
            [first] = parsed.criteria
            assert isinstance(first, Criterion)
            template = self._identifier_criteria[resource_type] = first
        values = tuple(
            TokenValue(system=i.get("system") or None, code=i["value"] or None, bar=True)
            for i in idents
        )
        return SearchQuery(
            resource_type, (replace(template, values=values),), count=MAX_MATCHES, total="none"
        )

    # ------------------------------------------------------------------ entry point

    def handle(self, data: bytes, address: str | None) -> list[bytes]:
        """One message in, its acknowledgment(s) out (ch. 2 §2.9); never raises."""
        return self.handle_batch([(data, address)])[0]

    def handle_batch(self, items: Sequence[tuple[bytes, str | None]]) -> list[list[bytes]]:
        """Messages in arrival order in, each one's acknowledgment(s) out, in the same order;
        applied in one transaction, one savepoint each (see module doc); never raises."""
        results = [_Result() for _ in items]
        ready: list[tuple[_Result, Hl7Message, str | None]] = []
        for result, (data, address) in zip(results, items, strict=True):
            try:
                msg = parse_message(data)
                result.ctx = AckContext.of(msg)
                result.codec = msg.charset
                result.message_type = f"{msg.message_code}^{msg.trigger_event}"
                self.check_peer(msg, address)
                self.check_header(msg)
            except Exception as exc:
                result.fail(exc)
            else:
                ready.append((result, msg, address))
        changed = False
        if len(ready) == 1:  # nothing to group: the message's own transaction
            changed = self._apply_each(ready)
        elif ready:
            try:
                changed = self.service.run(lambda _: self._apply_each(ready), validate=False)
            except Exception as exc:  # the commit failed: nothing of the batch is stored
                for result, _, _ in ready:
                    if result.code == "AA":
                        result.fail(exc)
                changed = False
        if changed:
            self.notify_change()
        if self.audit is not None:
            for result, (_, address) in zip(results, items, strict=True):
                self._audit(result, address)
        now = self.clock()
        return [result.acks(now) for result in results]

    def _audit(self, result: _Result, address: str | None) -> None:
        """One AuditEvent per message, applied (AA) or not (issue 7), before its ACK leaves."""
        assert self.audit is not None
        ctx = result.ctx
        sender = f"{ctx.sending_app}^{ctx.sending_facility}" if ctx.sending_app else "unknown"
        self.audit.hl7_message(
            Actor(sender, "hl7", address=address),
            message_type=result.message_type or "unreadable",
            control_id=ctx.control_id or "unknown",
            applied=result.code == "AA",
            patient=result.patient if result.code == "AA" else None,
            reason="; ".join(e.text for e in result.errors) or None,
        )

    def _apply_each(self, ready: list[tuple[_Result, Hl7Message, str | None]]) -> bool:
        """Each message in its own transaction, a savepoint when inside the batch's; True if
        any of them wrote."""
        changed = False
        for result, msg, address in ready:
            try:
                outcome = self.apply(msg, address)
            except Exception as exc:
                result.fail(exc)
            else:
                changed = changed or not outcome.duplicate
                result.patient = outcome.patient
        return changed

    def refuse(self, head: bytes, text: str) -> list[bytes]:
        """An ``AR`` for bytes the channel will not process (oversize, unframed); MSA-2 echoes
        the MSH-10 when the head of the data holds a readable MSH."""
        ctx = AckContext()
        codec = "ascii"
        first = head.replace(b"\r\n", b"\r").split(b"\r", 1)[0].split(b"\n", 1)[0]
        try:
            msg = parse_message(first)
            ctx, codec = AckContext.of(msg), msg.charset
        except (Hl7Error, MappingError):
            pass
        error = AckError(APPLICATION_INTERNAL_ERROR, text)
        return [
            ack.encode(codec, errors="replace")
            for ack in acknowledgments(ctx, "AR", [error], self.clock())
        ]

    def check_peer(self, msg: Hl7Message, address: str | None) -> None:
        """Only configured senders (MSH-3/MSH-4, optionally from one address) are served."""
        if self.peers is None:
            return
        app, facility = msg.sending_application, msg.sending_facility
        if any(rule.allows(app, facility, address) for rule in self.peers):
            return
        raise Hl7Error(
            "AR",
            APPLICATION_INTERNAL_ERROR,
            f"Sender {app}^{facility} from {address or 'unknown address'} is not an allowed peer",
            ErrorLocation("MSH", 1, 3),
        )

    def check_header(self, msg: Hl7Message) -> None:
        """MSH-9 to MSH-12 (ch. 2 §2.14.9): type, control id, processing id, version."""
        msh = msg.msh
        for n, what in (
            (9, "message type"),
            (10, "message control id"),
            (11, "processing id"),
            (12, "version id"),
        ):
            if not msh.value(n):
                raise Hl7Error(
                    "AR", REQUIRED_FIELD_MISSING, f"MSH-{n} ({what}) is required", msh.at(n)
                )
        if msh.value(11, 1).upper() not in PROCESSING_IDS:
            raise Hl7Error(
                "AR",
                UNSUPPORTED_PROCESSING_ID,
                f"MSH-11 processing id {msh.value(11)!r} is not P, T or D",
                msh.at(11),
            )
        if msg.version not in SUPPORTED_VERSIONS:
            raise Hl7Error(
                "AR",
                UNSUPPORTED_VERSION_ID,
                f"Version {msg.version!r} is not supported (2.3 to 2.8)",
                msh.at(12),
            )
        events = SUPPORTED_EVENTS.get(msg.message_code.upper())
        if events is None:
            raise Hl7Error(
                "AR",
                UNSUPPORTED_MESSAGE_TYPE,
                f"Message type {msg.message_code!r} is not supported (ADT, ORM, OMI, OMG, ORU)",
                msh.at(9, 1),
            )
        if msg.trigger_event.upper() not in events:
            raise Hl7Error(
                "AR",
                UNSUPPORTED_EVENT_CODE,
                f"Event {msg.message_code}^{msg.trigger_event} is not supported",
                msh.at(9, 2),
            )

    # ------------------------------------------------------------------ apply

    def apply(self, msg: Hl7Message, address: str | None) -> Outcome:
        """Apply the message and record its Provenance in one transaction (or find that it was
        applied before)."""
        sender = f"{msg.sending_application}^{msg.sending_facility}"
        principal = self.principal_for(sender, address)
        system = PROVENANCE_SYSTEM + sender
        provenance_id = message_provenance_id(system, msg.control_id)
        kind = msg.message_code.upper()
        event = msg.trigger_event.upper()

        def work(uow: UnitOfWork) -> Outcome:
            recorded = read_json(uow, "Provenance", provenance_id)
            if recorded is not None:
                if _records(recorded, system, msg.control_id):
                    return Outcome(True, ())
                raise Hl7Error(  # its id taken by a Provenance written by someone else
                    "AE",
                    APPLICATION_INTERNAL_ERROR,
                    f"Provenance/{provenance_id} exists but does not record this message",
                    msg.msh.at(10),
                )
            unit = _Unit(self, uow, principal)
            if kind == "ADT":
                unit.adt(msg, event)
            elif kind == "ORU":
                unit.results(msg)
            else:
                unit.orders(msg)
            targets = tuple(dict.fromkeys(unit.targets))
            if targets:
                provenance = {
                    "resourceType": "Provenance",
                    "target": [{"reference": t} for t in targets],
                    "recorded": self.clock().isoformat(timespec="milliseconds"),
                    "activity": {"text": f"{kind}^{event}"},
                    "agent": [
                        {
                            "who": {
                                "identifier": {
                                    "system": "urn:pixelhub:hl7v2:sender",
                                    "value": sender,
                                },
                                "display": sender,
                            }
                        }
                    ],
                    "entity": [
                        {
                            "role": "source",
                            "what": {
                                "identifier": {"system": system, "value": msg.control_id},
                                "display": f"HL7 v{msg.version} {kind}^{event}",
                            },
                        }
                    ],
                }
                self.service.create(
                    principal, "Provenance", provenance, uow=uow, new_id=provenance_id
                )
            return Outcome(False, targets, unit.patient_ref)

        return self.service.run(work, validate=False)


def message_provenance_id(system: str, control_id: str) -> str:
    """The id of the Provenance recording message ``control_id`` (MSH-10) of sender ``system``:
    a name-based UUID (RFC 4122 §4.3, version 5) of both, so the duplicate check of a re-sent
    message (HL7 v2.5.1 ch. 2 §2.10.1) is one read by id, not a search."""
    return str(uuid.uuid5(_PROVENANCE_NAMESPACE, orjson.dumps([system, control_id]).decode()))


def _records(provenance: Resource, system: str, control_id: str) -> bool:
    """Whether ``provenance`` records the message ``control_id`` of ``system``."""
    return any(
        (entity.get("what") or {}).get("identifier") == {"system": system, "value": control_id}
        for entity in provenance.get("entity") or []
    )


class _Unit:
    """The writes of one message, inside its transaction."""

    def __init__(self, ingest: Hl7Ingest, uow: UnitOfWork, principal: Principal) -> None:
        self.ingest = ingest
        self.service = ingest.service
        self.uow = uow
        self.principal = principal
        self.targets: list[str] = []
        self.patient_ref: str | None = None  # the message's patient, for the audit record
        self._read: dict[tuple[str, str], bytes | None] = {}

    def read(self, resource_type: str, rid: str) -> Resource | None:
        """The current resource as a fresh dict (``None`` if absent or deleted); the stored
        bytes are kept for the rest of the message, so one resource is read once."""
        key = (resource_type, rid)
        if key in self._read:
            data = self._read[key]
        else:
            stored = self.uow.tx.read(resource_type, rid)
            data = self._read[key] = None if stored is None else stored.data
        if data is None:
            return None
        resource: Resource = orjson.loads(data)
        return resource

    # ---------------------------------------------------------------- helpers

    def ids(self, resource_type: str, params: list[tuple[str, str]]) -> list[str]:
        return search_ids(self.service, self.uow, resource_type, params)

    def by_identifier(self, resource_type: str, *idents: Resource) -> list[str]:
        """Ids of the ``resource_type`` resources with any of ``idents``."""
        query = self.ingest.identifier_query(resource_type, idents)
        return [rid for _, rid in self.uow.tx.search(query).matches]

    def by_first_identifier(self, resource_type: str, idents: list[Resource]) -> list[str]:
        """The matches of the first of ``idents`` that has any: one search for all of them
        (FHIR R4 search.html#combining, OR), one per identifier only when several resources
        match."""
        if len(idents) > 1:
            found = self.by_identifier(resource_type, *idents)
            if len(found) <= 1:
                return found
        for ident in idents:
            if found := self.by_identifier(resource_type, ident):
                return found
        return []

    def save(self, resource_type: str, rid: str | None, resource: Resource) -> str:
        """Create or update; an update that changes nothing writes no new version."""
        if rid is None:
            stored = self.service.create(self.principal, resource_type, resource, uow=self.uow)
            rid = stored.stored.id
        else:
            current = self.read(resource_type, rid) or {}
            current.pop("meta", None)
            resource["id"] = rid
            if current == resource:
                self.targets.append(f"{resource_type}/{rid}")
                return rid
            stored = self.service.update(self.principal, resource_type, rid, resource, uow=self.uow)
        self._read[(resource_type, rid)] = stored.stored.data
        self.targets.append(f"{resource_type}/{rid}")
        return rid

    def find_patient(self, identifiers: list[Resource]) -> str | None:
        """The patient with the first of ``identifiers`` that matches; a merged-away one leads
        to its survivor."""
        found = self.by_first_identifier("Patient", identifiers)
        if not found:
            return None
        for rid in found:
            survivor = self.follow_links(rid)
            if survivor == rid or len(found) == 1:
                return survivor
        return self.follow_links(found[0])

    def follow_links(self, rid: str) -> str:
        """Follow ``Patient.link`` ``replaced-by`` (an A40 merge) to the surviving patient."""
        seen = {rid}
        current = rid
        for _ in range(10):
            patient = self.read("Patient", current) or {}
            nxt = next(
                (
                    str(link["other"]["reference"]).removeprefix("Patient/")
                    for link in patient.get("link") or []
                    if link.get("type") == "replaced-by"
                ),
                None,
            )
            if nxt is None or nxt in seen:
                return current
            seen.add(nxt)
            current = nxt
        return current

    def upsert_patient(self, mapped: Mapped) -> str:
        rid = self.find_patient(mapped.resource["identifier"])
        existing = self.read("Patient", rid) if rid else None
        merged = merge_update(existing, mapped, keep=("link", "active"))
        return self.save("Patient", rid, merged)

    def patient(self, msg: Hl7Message) -> str:
        mapped = hl7v2_to_patient(msg, self.ingest.patient_systems, self.ingest.offset_of)
        rid = self.upsert_patient(mapped)
        self.patient_ref = f"Patient/{rid}"
        return rid

    # ---------------------------------------------------------------- ADT (ch. 3)

    def adt(self, msg: Hl7Message, event: str) -> None:
        if event == "A40":
            self.merge(msg)
            return
        patient_id = self.patient(msg)
        mapped = hl7v2_to_encounter(
            msg,
            event,
            f"Patient/{patient_id}",
            self.ingest.patient_systems,
            self.ingest.offset_of,
        )
        if mapped is None:
            return
        ident = mapped.resource["identifier"][0]
        found = self.by_identifier("Encounter", ident)
        rid = found[0] if found else None
        if rid is None and event in ("A11", "A13"):
            pv1 = msg.first("PV1")
            raise Hl7Error(
                "AE",
                UNKNOWN_KEY_IDENTIFIER,
                f"ADT^{event}: no visit {ident['value']!r} (PV1-19) to cancel",
                pv1.at(19) if pv1 else None,
            )
        existing = self.read("Encounter", rid) if rid else None
        merged = merge_update(existing, mapped)
        if existing is None:
            complete_new_encounter(merged)
        self.save("Encounter", rid, merged)

    def merge(self, msg: Hl7Message) -> None:
        """ADT^A40 (ch. 3 §3.3.40): each PID/MRG pair merges the prior patient (MRG-1) into the
        surviving one (PID-3): ``link`` ``replaces``/``replaced-by``, the prior patient inactive,
        its identifiers copied to the survivor as ``use: old`` (so ``patient.identifier`` searches
        by either id find the studies), and its studies, orders, reports and visits moved."""
        pids = msg.all("PID")
        mrgs = msg.all("MRG")
        if not mrgs:
            raise MappingError(100, "ADT^A40 needs an MRG segment", ErrorLocation("MRG"))
        for pid, mrg in zip(pids, mrgs, strict=False):
            sub = Hl7Message([msg.msh, pid], msg.encoding_characters, msg.field_separator)
            survivor_id = self.patient(sub)
            old_idents = [
                i
                for r in mrg.repetitions(1)
                if (i := cx_identifier(r, self.ingest.patient_systems))
            ]
            if not old_idents:
                raise MappingError(
                    REQUIRED_FIELD_MISSING,
                    "MRG-1 (prior patient identifier list) is required",
                    mrg.at(1),
                )
            old_id = None
            for ident in old_idents:
                old_id = next(
                    (i for i in self.by_identifier("Patient", ident) if i != survivor_id), None
                )
                if old_id:
                    break
            survivor = self.read("Patient", survivor_id) or {}
            survivor.pop("meta", None)
            known = {(i.get("system"), i.get("value")) for i in survivor.get("identifier", [])}
            for ident in old_idents:
                if (ident.get("system"), ident["value"]) not in known:
                    survivor.setdefault("identifier", []).append({**ident, "use": "old"})
            if old_id is not None:
                ref = {"reference": f"Patient/{old_id}"}
                if not any(link.get("other") == ref for link in survivor.get("link", [])):
                    survivor.setdefault("link", []).append({"other": ref, "type": "replaces"})
                old = self.read("Patient", old_id) or {}
                old.pop("meta", None)
                old["active"] = False
                back = {"reference": f"Patient/{survivor_id}"}
                links = [lk for lk in old.get("link", []) if lk.get("type") != "replaced-by"]
                old["link"] = [*links, {"other": back, "type": "replaced-by"}]
                self.save("Patient", old_id, old)
                self.move_subjects(old_id, survivor_id)
            self.save("Patient", survivor_id, survivor)

    def move_subjects(self, old_id: str, survivor_id: str) -> None:
        for rtype in _SUBJECT_TYPES:
            for rid in self.ids(rtype, [("subject", f"Patient/{old_id}")]):
                resource = self.read(rtype, rid)
                if resource is None:
                    continue
                resource.pop("meta", None)
                resource["subject"] = {"reference": f"Patient/{survivor_id}"}
                self.save(rtype, rid, resource)

    # ---------------------------------------------------------------- orders (ch. 4)

    def orders(self, msg: Hl7Message) -> None:
        patient_id = self.patient(msg) if msg.first("PID") else None
        encounter_ref = self.encounter_ref(msg)
        subject = f"Patient/{patient_id}" if patient_id else "Patient/unknown"
        for order in hl7v2_to_servicerequest(
            msg,
            subject,
            self.ingest.order_systems,
            self.ingest.accession_systems,
            self.ingest.offset_of,
            encounter_ref,
        ):
            rid = self.find_first("ServiceRequest", order.keys)
            existing = self.read("ServiceRequest", rid) if rid else None
            if patient_id is None:
                if existing is None:
                    raise MappingError(100, "A new order needs a PID segment", ErrorLocation("PID"))
                order.mapped.resource["subject"] = existing["subject"]
            merged = merge_update(existing, order.mapped)
            self.save("ServiceRequest", rid, merged)

    def find_first(self, resource_type: str, keys: list[Resource]) -> str | None:
        found = self.by_first_identifier(resource_type, keys)
        return found[0] if found else None

    def encounter_ref(self, msg: Hl7Message) -> str | None:
        pv1 = msg.first("PV1")
        ident = visit_identifier(pv1, self.ingest.patient_systems) if pv1 else None
        if ident is None:
            return None
        found = self.by_identifier("Encounter", ident)
        return f"Encounter/{found[0]}" if found else None

    # ---------------------------------------------------------------- results (ch. 7)

    def results(self, msg: Hl7Message) -> None:
        patient_id = self.patient(msg)
        for report in hl7v2_to_diagnosticreport(
            msg,
            f"Patient/{patient_id}",
            self.ingest.order_systems,
            self.ingest.accession_systems,
            self.ingest.offset_of,
        ):
            resource = report.mapped.resource
            orders = [k for k in (report.placer, report.filler) if k]
            order_ids = [rid for k in orders for rid in self.by_identifier("ServiceRequest", k)]
            if report.accession:
                order_ids += [
                    rid
                    for rid, _ in find_by_accession(
                        self.service, self.uow, "ServiceRequest", report.accession
                    )
                ]
                studies = find_by_accession(
                    self.service, self.uow, "ImagingStudy", report.accession
                )
                if studies:
                    resource["imagingStudy"] = [
                        {"reference": f"ImagingStudy/{sid}"} for sid, _ in studies
                    ]
            if order_ids:
                resource["basedOn"] = [
                    {"reference": f"ServiceRequest/{oid}"} for oid in dict.fromkeys(order_ids)
                ]
            rid = self.find_first("DiagnosticReport", report.keys)
            existing = self.read("DiagnosticReport", rid) if rid else None
            merged = merge_update(existing, report.mapped)
            self.save("DiagnosticReport", rid, merged)
