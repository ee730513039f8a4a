"""Order <-> study linking by accession number (IHE RAD TF-1 Scheduled Workflow: the accession
number, with its issuer, identifies the imaging service request; DICOM PS3.3 C.7.2.1 Accession
Number (0008,0050) and Issuer of Accession Number Sequence (0008,0051)).

The projector follows the change feed. Whenever an ``ImagingStudy``, a ``ServiceRequest`` or a
``DiagnosticReport`` carrying an accession identifier (``Identifier.type`` v2-0203 ``ACSN``)
changes, it looks for its counterparts with the same accession and writes the missing links:
``ImagingStudy.basedOn`` -> ServiceRequest, ``DiagnosticReport.basedOn`` -> ServiceRequest,
``DiagnosticReport.imagingStudy`` -> ImagingStudy; and the ServiceRequest's status advances from
``active`` to ``completed`` once an ``available`` study for it exists. Whichever arrives first,
the link is made when the other arrives.

Matching: same value and same system, or — when one side has no issuer (no system, or
``DEFAULT_ACCESSION_SYSTEM``) — same value alone, provided exactly one candidate matches. An
exact-system match always wins; two different real issuers never match.

Idempotent and loop-free: it writes only when a link or status is missing, so the changes its own
writes cause are seen again and lead to no further write.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any

import orjson

from hub.auth import Principal
from hub.fhir.service import FhirService, UnitOfWork
from hub.ports import Change
from hub.search.model import SearchQuery

log = logging.getLogger("pixelhub.imaging.order_linking")

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
# The accession system PixelHub uses when a sender names no issuer (HL7 OBR-18 / IPC-1 without
# an assigning authority; DICOM without Issuer of Accession Number Sequence).
DEFAULT_ACCESSION_SYSTEM = "urn:pixelhub:accession"
LINKED_TYPES = frozenset({"ImagingStudy", "ServiceRequest", "DiagnosticReport"})
_PRINCIPAL = Principal("projector:order-linking", kind="peer", scopes=frozenset({"*"}))
_MAX_CANDIDATES = 50

Resource = dict[str, Any]


def accessions(resource: Resource) -> list[Resource]:
    """The resource's identifiers of type ``ACSN`` (HL7 table 0203)."""
    out = []
    for ident in resource.get("identifier") or []:
        codings = (ident.get("type") or {}).get("coding") or []
        is_acsn = any(c.get("system") == V2_0203 and c.get("code") == "ACSN" for c in codings)
        if is_acsn and ident.get("value"):
            out.append(ident)
    return out


def issuer_less(system: str | None) -> bool:
    """No real issuer: no system, or ``DEFAULT_ACCESSION_SYSTEM`` (the sender gave none)."""
    return not system or system == DEFAULT_ACCESSION_SYSTEM


def search_ids(
    service: FhirService, uow: UnitOfWork, resource_type: str, params: list[tuple[str, str]]
) -> list[str]:
    """Ids matching ``params`` as of the transaction (at most ``_MAX_CANDIDATES``)."""
    parsed = service.parse_query(resource_type, params, strict=True)
    query = SearchQuery(resource_type, parsed.criteria, count=_MAX_CANDIDATES, total="none")
    return [rid for _, rid in uow.tx.search(query).matches]


def read_json(uow: UnitOfWork, resource_type: str, rid: str) -> Resource | None:
    stored = uow.tx.read(resource_type, rid)
    if stored is None or stored.data is None:
        return None
    data: Resource = orjson.loads(stored.data)
    return data


def find_by_accession(
    service: FhirService, uow: UnitOfWork, resource_type: str, accession: Resource
) -> list[tuple[str, Resource]]:
    """``(id, resource)`` of the ``resource_type`` resources carrying ``accession``."""
    value = str(accession["value"]).replace("\\", "\\\\").replace(",", "\\,").replace("|", "\\|")
    value = value.replace("$", "\\$")
    exact: list[tuple[str, Resource]] = []
    loose: list[tuple[str, Resource]] = []
    for rid in search_ids(service, uow, resource_type, [("identifier", value)]):
        found = read_json(uow, resource_type, rid)
        if found is None:
            continue
        for other in accessions(found):
            if other.get("value") != accession["value"]:
                continue
            if other.get("system") == accession.get("system"):
                exact.append((rid, found))
                break
            if issuer_less(other.get("system")) or issuer_less(accession.get("system")):
                loose.append((rid, found))
                break
    if exact:
        return exact
    if len(loose) > 1:
        log.warning(
            "accession %s matches %d %s resources by value only; not linking",
            accession.get("value"),
            len(loose),
            resource_type,
        )
        return []
    return loose


def _has_ref(refs: list[Resource] | None, target: str) -> bool:
    return any(r.get("reference") == target for r in refs or [])


# Resources linked per write transaction: one commit for many (most find nothing to link),
# while the writer lock is never held long against the channels' writes.
LINKS_PER_TRANSACTION = 100


class OrderLinkingProjector:
    """Links orders, studies and reports that share an accession number (see module doc)."""

    name = "order-linking"

    def __init__(self, service: FhirService) -> None:
        self.service = service

    def handle(self, changes: Sequence[Change]) -> None:
        latest: dict[tuple[str, str], Change] = {}
        for change in changes:
            if change.resource_type in LINKED_TYPES:
                latest[(change.resource_type, change.id)] = change
        keys = [key for key, change in latest.items() if change.op != "delete"]
        for start in range(0, len(keys), LINKS_PER_TRANSACTION):
            chunk = keys[start : start + LINKS_PER_TRANSACTION]
            self.service.run(functools.partial(self._link_all, chunk), validate=False)

    def _link_all(self, keys: list[tuple[str, str]], uow: UnitOfWork) -> int:
        return sum(self.link(uow, rtype, rid) for rtype, rid in keys)

    def link(self, uow: UnitOfWork, resource_type: str, rid: str) -> int:
        """Write the missing links of one resource; returns the number of writes."""
        resource = read_json(uow, resource_type, rid)
        if resource is None:
            return 0
        writes = 0
        for accession in accessions(resource):
            if resource_type == "ImagingStudy":
                writes += self._study(uow, rid, accession)
            elif resource_type == "ServiceRequest":
                for sid, _ in find_by_accession(self.service, uow, "ImagingStudy", accession):
                    writes += self._study(uow, sid, accession)
                for did, _ in find_by_accession(self.service, uow, "DiagnosticReport", accession):
                    writes += self._report(uow, did, accession)
            else:
                writes += self._report(uow, rid, accession)
        return writes

    def _study(self, uow: UnitOfWork, sid: str, accession: Resource) -> int:
        study = read_json(uow, "ImagingStudy", sid)
        if study is None:
            return 0
        writes = 0
        orders = find_by_accession(self.service, uow, "ServiceRequest", accession)
        missing = [
            f"ServiceRequest/{oid}"
            for oid, _ in orders
            if not _has_ref(study.get("basedOn"), f"ServiceRequest/{oid}")
        ]
        if missing:
            study["basedOn"] = [*(study.get("basedOn") or []), *({"reference": m} for m in missing)]
            self._write(uow, "ImagingStudy", sid, study)
            writes += 1
        if study.get("status") == "available":
            for oid, order in orders:
                if order.get("status") == "active":
                    order["status"] = "completed"
                    self._write(uow, "ServiceRequest", oid, order)
                    writes += 1
        for did, _ in find_by_accession(self.service, uow, "DiagnosticReport", accession):
            writes += self._report(uow, did, accession)
        return writes

    def _report(self, uow: UnitOfWork, did: str, accession: Resource) -> int:
        report = read_json(uow, "DiagnosticReport", did)
        if report is None:
            return 0
        changed = False
        for oid, _ in find_by_accession(self.service, uow, "ServiceRequest", accession):
            ref = f"ServiceRequest/{oid}"
            if not _has_ref(report.get("basedOn"), ref):
                report["basedOn"] = [*(report.get("basedOn") or []), {"reference": ref}]
                changed = True
        for sid, _ in find_by_accession(self.service, uow, "ImagingStudy", accession):
            ref = f"ImagingStudy/{sid}"
            if not _has_ref(report.get("imagingStudy"), ref):
                report["imagingStudy"] = [*(report.get("imagingStudy") or []), {"reference": ref}]
                changed = True
        if changed:
            self._write(uow, "DiagnosticReport", did, report)
        return int(changed)

    def _write(self, uow: UnitOfWork, resource_type: str, rid: str, resource: Resource) -> None:
        resource.pop("meta", None)
        self.service.update(_PRINCIPAL, resource_type, rid, resource, uow=uow)
