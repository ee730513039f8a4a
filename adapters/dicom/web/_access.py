"""What every DICOMweb route shares (DICOM PS3.18): the stores, the one access policy and the
audit trail.

Authorisation is that of FHIR reads (issue 9 item 4): a caller may read a study's DICOM objects
when it may read the study's ``ImagingStudy``. With unrestricted ``ImagingStudy`` read access
(``user/`` or ``system/`` scopes without a search restriction, static tokens, ``--demo``) every
study is readable; with restricted access (``patient/`` scopes, restricted v2 scopes) a study is
readable only once its ``ImagingStudy`` exists and is visible through the FHIR service, which
applies the patient compartment and the scope's restriction; anything else is answered 404, as
for a study that does not exist, so nothing leaks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import Request

from hub.auth import Principal
from hub.channels import ChannelContext
from hub.errors import NotFound
from hub.http.audit import actor_of
from hub.http.deps import authenticate
from hub.ports import BlobStore, DicomInstanceStore
from mappings.interaction_to_auditevent import (
    DICOM_UID,
    INSTANCES_TRANSFERRED,
    QUERY,
    Outcome,
    identifier_entity,
    query_entity,
)

DICOM_JSON = "application/dicom+json"
_STUDY_BATCH = 50  # study UIDs per FHIR identifier search


@dataclass
class DicomWeb:
    """The DICOMweb service's state: built once per app by ``create_web_service``."""

    context: ChannelContext
    store: DicomInstanceStore
    blobs: BlobStore
    ingest: Any = field(default=None)  # adapters.dicom.DicomIngest, for STOW-RS

    # ---------------------------------------------------------------- authorisation

    @staticmethod
    def principal(request: Request) -> Principal:
        """The caller (bearer token, or the demo principal): the one authentication seam."""
        return authenticate(request)

    def unrestricted(self, principal: Principal) -> bool:
        """``True`` when the caller may read every ``ImagingStudy``; ``Forbidden`` (403) when
        it may read none."""
        return not self.context.policy.check(principal, "search", "ImagingStudy").restricted

    def visible_studies(self, principal: Principal, study_uids: Iterable[str]) -> set[str]:
        """The study UIDs among ``study_uids`` the caller may read."""
        wanted = sorted(set(study_uids))
        if self.unrestricted(principal):
            return set(wanted)
        seen: set[str] = set()
        for start in range(0, len(wanted), _STUDY_BATCH):
            batch = wanted[start : start + _STUDY_BATCH]
            values = ",".join(f"urn:dicom:uid|urn:oid:{uid}" for uid in batch)
            bundle = self.context.service.search(
                principal,
                "ImagingStudy",
                [("identifier", values), ("_elements", "identifier"), ("_count", "1000")],
            )
            for entry in orjson.loads(orjson.dumps(bundle.get("entry", []))):
                for identifier in entry.get("resource", {}).get("identifier", []):
                    value = str(identifier.get("value", ""))
                    if identifier.get("system") == "urn:dicom:uid" and value in {
                        f"urn:oid:{u}" for u in batch
                    }:
                        seen.add(value.removeprefix("urn:oid:"))
        return seen

    def check_study(self, principal: Principal, study_uid: str) -> None:
        """404 unless the caller may read the study (and it exists: checked by the caller)."""
        if study_uid not in self.visible_studies(principal, [study_uid]):
            raise NotFound(f"Study {study_uid} not found")

    # ---------------------------------------------------------------- audit

    def _record(self, request: Request, principal: Principal | None, **event: Any) -> None:
        trail = self.context.audit
        if trail is None or not trail.enabled:
            return
        address = request.client.host if request.client else None
        trail.record(actor_of(principal, address), **event)

    def audit_query(
        self, request: Request, principal: Principal | None, *, outcome: Outcome, matches: int,
        reason: str | None = None,
    ) -> None:  # fmt: skip
        """A QIDO-RS search (PS3.15 A.5.3.10 Query, action Execute), the query string as the
        query entity."""
        description = f"{matches} match(es)" + (f"; {reason}" if reason else "")
        self._record(
            request,
            principal,
            type_=QUERY,
            action="E",
            outcome=outcome,
            outcome_desc=reason,
            entities=[query_entity(f"{request.url.path}?{request.url.query}", description)],
        )

    def audit_transfer(
        self, request: Request, principal: Principal | None, *, study_uids: Iterable[str],
        action: str, outcome: Outcome, instances: int, reason: str | None = None,
    ) -> None:  # fmt: skip
        """Instances read (WADO, action Read) or stored (STOW, action Create): PS3.15 A.5.3.4
        DICOM Instances Transferred, one study entity per study."""
        entities = [
            {
                **identifier_entity(DICOM_UID, f"urn:oid:{uid}", "3", "Report"),
                "description": f"{instances} instance(s) {'read' if action == 'R' else 'stored'}",
            }
            for uid in sorted(set(study_uids))
        ]
        self._record(
            request,
            principal,
            type_=INSTANCES_TRANSFERRED,
            action=action,
            outcome=outcome,
            outcome_desc=reason,
            entities=entities,
        )
