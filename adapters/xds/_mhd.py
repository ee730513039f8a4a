"""MHD Provide Document Bundle checks (IHE ITI-65, MHD 4.2 §2:3.65.4.1.2): a transaction that
declares one of the ProvideBundle profiles in ``Bundle.meta.profile`` is held to it before
anything is written, and refused whole with 422 and one issue per problem, each located by
FHIRPath (http.html#2.21.0.17: 422 for a violated profile).

What is checked, after the IHE MHD StructureDefinitions (Minimal, UnContained Comprehensive,
Comprehensive):

- the Bundle: exactly one SubmissionSet ``List`` (code ``MHDlistTypes#submissionset``);
  SubmissionSet, DocumentReference, Binary and Folder entries are POSTed; at most one Patient;
  Folders are not supported here (XDS Folders are not kept);
- the SubmissionSet: ``ihe-sourceId``, one uniqueId identifier (``usual``; an entryUUID,
  ``official``, is optional), ``mode`` working, ``date``; Comprehensive: ``subject`` and
  ``ihe-designationType``; every ``entry.item`` is a DocumentReference of the Bundle, and
  every DocumentReference of the Bundle is one of its entries;
- each DocumentReference: ``masterIdentifier``, ``status`` current or superseded, no
  ``docStatus`` and no ``modifierExtension``, one ``content`` with ``contentType`` and ``url``
  (a Binary of the Bundle or an absolute URL) and no ``data``; Comprehensive: ``type``,
  ``category``, ``subject``, ``securityLabel``, ``language``, ``creation``, ``format``,
  ``context.facilityType``, ``practiceSetting``, ``sourcePatientInfo`` (contained for the
  Comprehensive profile);
- one patient: every ``subject`` of the SubmissionSet and its DocumentReferences is the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from hub.errors import Issue
from mappings.xds_to_documentreference import LIST_TYPES, MHD_SD, SOURCE_ID_URL

__all__ = ["bundle_profiles", "check_provide_bundle"]

Resource = Mapping[str, Any]
MINIMAL = f"{MHD_SD}/IHE.MHD.Minimal.ProvideBundle"
UNCONTAINED = f"{MHD_SD}/IHE.MHD.UnContained.Comprehensive.ProvideBundle"
COMPREHENSIVE = f"{MHD_SD}/IHE.MHD.Comprehensive.ProvideBundle"
PROFILES = (MINIMAL, UNCONTAINED, COMPREHENSIVE)
_DESIGNATION_URL = f"{MHD_SD}/ihe-designationType"
_COMPREHENSIVE_DOC = (
    ("type", "DocumentReference.type"),
    ("category", "DocumentReference.category"),
    ("subject", "DocumentReference.subject"),
    ("securityLabel", "DocumentReference.securityLabel"),
)
_COMPREHENSIVE_CONTEXT = ("facilityType", "practiceSetting", "sourcePatientInfo")


def _list_type(resource: Resource) -> str | None:
    for coding in (resource.get("code") or {}).get("coding") or []:
        if isinstance(coding, dict) and coding.get("system") == LIST_TYPES:
            return str(coding.get("code"))
    return None


class _Check:
    """The issues of one Bundle against one ProvideBundle profile."""

    def __init__(self, bundle: Resource, profile: str) -> None:
        self.issues: list[Issue] = []
        self.comprehensive = profile in (UNCONTAINED, COMPREHENSIVE)
        self.contained = profile == COMPREHENSIVE
        self.entries = [e for e in bundle.get("entry") or [] if isinstance(e, dict)]
        self.urls = {e.get("fullUrl"): e.get("resource") or {} for e in self.entries}
        self.subjects: set[str] = set()

    def fail(self, where: str, message: str) -> None:
        self.issues.append(Issue(message, code="invariant", expression=(where,)))

    def run(self, bundle: Resource) -> list[Issue]:
        if bundle.get("type") != "transaction":
            self.fail("Bundle.type", "An ITI-65 Provide Document Bundle is a transaction")
        sets, docs = [], []
        patients = 0
        for n, entry in enumerate(self.entries):
            resource = entry.get("resource") or {}
            where = f"Bundle.entry[{n}]"
            rtype = resource.get("resourceType")
            kind = _list_type(resource) if rtype == "List" else rtype
            if kind == "folder":
                self.fail(where, "Folders are not supported by this Document Recipient")
            if rtype == "Patient":
                patients += 1
            elif kind in ("submissionset", "DocumentReference", "Binary"):
                method = (entry.get("request") or {}).get("method")
                if method != "POST":
                    self.fail(f"{where}.request.method", f"A {kind} entry is POSTed (ITI-65)")
            if kind == "submissionset":
                sets.append((where, entry, resource))
            elif rtype == "DocumentReference":
                docs.append((where, entry, resource))
        if patients > 1:
            self.fail("Bundle.entry", "A Provide Document Bundle holds at most one Patient")
        if len(sets) != 1:
            self.fail(
                "Bundle.entry",
                f"A Provide Document Bundle holds one SubmissionSet, not {len(sets)}",
            )
        for where, _, doc in docs:
            self._document(f"{where}.resource", doc)
        if len(sets) == 1:
            self._submission_set(*sets[0], docs)
        if len(self.subjects) > 1:
            self.fail("Bundle.entry", "The SubmissionSet and its documents name one patient")
        return self.issues

    def _subject(self, where: str, resource: Resource, required: bool) -> None:
        subject = resource.get("subject")
        reference = subject.get("reference") if isinstance(subject, dict) else None
        if reference is None:
            if required:
                self.fail(f"{where}.subject", "subject is required (Comprehensive metadata)")
            return
        target = self.urls.get(reference)
        if not (reference.startswith("Patient/") or "/Patient/" in reference or (
            isinstance(target, dict) and target.get("resourceType") == "Patient"
        )):  # fmt: skip
            self.fail(f"{where}.subject", "subject is a Patient")
        else:
            self.subjects.add(reference)

    def _submission_set(
        self, where: str, entry: Resource, resource: Resource, docs: list[Any]
    ) -> None:
        where = f"{where}.resource"
        urls = {e.get("url") for e in resource.get("extension") or [] if isinstance(e, dict)}
        if SOURCE_ID_URL not in urls:
            self.fail(f"{where}.extension", "The SubmissionSet carries its ihe-sourceId")
        if self.comprehensive and _DESIGNATION_URL not in urls:
            self.fail(f"{where}.extension", "ihe-designationType is required (Comprehensive)")
        uses = [i.get("use") for i in resource.get("identifier") or [] if isinstance(i, dict)]
        if uses.count("usual") != 1:
            self.fail(f"{where}.identifier", "The SubmissionSet has one uniqueId (use usual)")
        if resource.get("mode") != "working":
            self.fail(f"{where}.mode", "A SubmissionSet's mode is working")
        if not resource.get("date"):
            self.fail(f"{where}.date", "A SubmissionSet has its date (submissionTime)")
        self._subject(where, resource, self.comprehensive)
        items = set()
        for n, item in enumerate(resource.get("entry") or []):
            reference = ((item or {}).get("item") or {}).get("reference")
            target = self.urls.get(reference)
            if not isinstance(target, dict) or target.get("resourceType") != "DocumentReference":
                self.fail(
                    f"{where}.entry[{n}].item",
                    "Each SubmissionSet entry is a DocumentReference of this Bundle",
                )
            items.add(reference)
        for doc_where, doc_entry, _ in docs:
            if doc_entry.get("fullUrl") not in items:
                self.fail(doc_where, "Each DocumentReference is an entry of the SubmissionSet")

    def _document(self, where: str, doc: Resource) -> None:
        if not isinstance(doc.get("masterIdentifier"), dict):
            self.fail(f"{where}.masterIdentifier", "masterIdentifier (the uniqueId) is required")
        if doc.get("status") not in ("current", "superseded"):
            self.fail(f"{where}.status", "A DocumentReference's status is current or superseded")
        for absent in ("docStatus", "modifierExtension"):
            if absent in doc:
                self.fail(f"{where}.{absent}", f"{absent} is not allowed (MHD)")
        contents = doc.get("content") or []
        if len(contents) != 1:
            self.fail(f"{where}.content", "A DocumentReference has exactly one content")
        attachment = (contents[0] if contents else {}).get("attachment") or {}
        self._attachment(f"{where}.content[0].attachment", attachment)
        self._subject(where, doc, self.comprehensive)
        if not self.comprehensive:
            return
        for element, path in _COMPREHENSIVE_DOC:
            if not doc.get(element):
                self.fail(f"{where}.{element}", f"{path} is required (Comprehensive metadata)")
        for element in ("language", "creation"):
            if not attachment.get(element):
                self.fail(f"{where}.content[0].attachment.{element}", f"{element} is required")
        if not (contents[0] if contents else {}).get("format"):
            self.fail(f"{where}.content[0].format", "content.format is required")
        context = doc.get("context") or {}
        for element in _COMPREHENSIVE_CONTEXT:
            if not context.get(element):
                self.fail(f"{where}.context.{element}", f"context.{element} is required")
        source = (context.get("sourcePatientInfo") or {}).get("reference", "")
        if self.contained and context.get("sourcePatientInfo") and not source.startswith("#"):
            self.fail(
                f"{where}.context.sourcePatientInfo",
                "sourcePatientInfo is a contained Patient (Comprehensive, not UnContained)",
            )

    def _attachment(self, where: str, attachment: Resource) -> None:
        if not attachment.get("contentType"):
            self.fail(f"{where}.contentType", "contentType (mimeType) is required")
        if "data" in attachment:
            self.fail(f"{where}.data", "The document is a Binary entry, not inline data")
        url = attachment.get("url")
        target = self.urls.get(url)
        binary = isinstance(target, dict) and target.get("resourceType") == "Binary"
        if not isinstance(url, str) or not (binary or url.startswith(("http://", "https://"))):
            self.fail(f"{where}.url", "url is a Binary of this Bundle or an absolute URL")


def check_provide_bundle(bundle: Resource, profile: str = MINIMAL) -> list[Issue]:
    """The problems of ``bundle`` as an ITI-65 Provide Document Bundle of ``profile``."""
    return _Check(bundle, profile).run(bundle)


def bundle_profiles() -> dict[str, Callable[[Resource], list[Issue]]]:
    """The ``pixelhub.bundle_profiles`` entry point: a check per ProvideBundle profile."""
    return {profile: partial(_checked, profile=profile) for profile in PROFILES}


def _checked(bundle: Resource, *, profile: str) -> list[Issue]:
    return check_provide_bundle(bundle, profile)
