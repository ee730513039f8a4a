"""Federated search: one FHIR search answered by this hub and its partners (issue 12, item 2).

``GET /fhir/federated/<type>?<search>`` (ImagingStudy, DocumentReference, DiagnosticReport,
Patient) asks this hub and every enabled partner at once, or those ``_partners=`` names
(``local`` is this hub). The answer is one ``searchset`` Bundle (search.html, bundle.html):

- each entry keeps its site's absolute ``fullUrl``, and the relative references inside a
  partner's resource are made absolute against the partner's base (bundle.html#references
  resolves them so anyway), so a viewer fetches from the site that holds the resource; an
  ImagingStudy's ``endpoint`` is included (``_include=ImagingStudy:endpoint``, item 5);
- each resource carries a site tag in ``meta.tag`` (system ``urn:pixelhub:federation:site``, the
  partner's name, or ``local``);
- a study held at two sites appears once, by Study Instance UID, tagged with both sites;
- matches are ordered newest first (the type's date), and each partner that failed, timed out,
  answered garbage or could not name the patient has one ``OperationOutcome`` entry
  (``search.mode = outcome``);
- paging: the merged result is kept for ``federation_page_ttl`` seconds in the data dir that
  replicas share (``hub.federation.pages``); ``next``/``previous`` links page through it for the
  same requester, on any replica (410 once it has expired).

Each partner is asked with its own SMART backend-services token (``hub.federation.tokens``),
the requester and purpose of use (``hub.federation.requester``), the ``Via`` chain, and within
its own timeout; ``next`` links of its answers are followed only on its own origin, up to
``federation_max_results`` matches.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

import orjson
from starlette.concurrency import run_in_threadpool

from hub.auth import Access, Principal
from hub.errors import Forbidden, Gone, HubError, InvalidSearch, UnknownResourceType
from hub.federation.http import AiohttpPartnerHttp, PartnerError, PartnerHttp
from hub.federation.identity import (
    Anchor,
    Identifier,
    escape,
    partner_identifiers,
    pixm_identifiers,
    split_anchor,
)
from hub.federation.pages import MergedResult, PageStore
from hub.federation.partners import FEDERATED_TYPES, Partner, PartnerStore
from hub.federation.requester import (
    IUA_HEADER,
    PURPOSE_OF_USE,
    Requester,
    forwarded_via,
)
from hub.federation.tokens import BackendTokens
from hub.fhir.service import FhirService

__all__ = ["LOCAL_SITE", "SITE_SYSTEM", "FederatedSearch", "FederationOptions", "SiteReport"]

SITE_SYSTEM = "urn:pixelhub:federation:site"
LOCAL_SITE = "local"
_DICOM_UID = "urn:dicom:uid"
_RELATIVE = re.compile(r"[A-Z][A-Za-z]{1,63}/[A-Za-z0-9\-.]{1,64}(/_history/[A-Za-z0-9\-.]{1,64})?")
_DATE_OF: dict[str, tuple[tuple[str, ...], ...]] = {
    "ImagingStudy": (("started",),),
    "DocumentReference": (("date",), ("context", "period", "start")),
    "DiagnosticReport": (("effectiveDateTime",), ("effectivePeriod", "start"), ("issued",)),
    "Patient": (),
}
_CONTAINERS = (dict, list)
_NEWEST_FIRST = {"-date", "-started", "-issued"}
_OWN = {"_partners", "_count", "_sort", "_total", "_page", "_offset"}
_LINK_PARAMS = ("_page", "_offset", "_count")
_INTERNAL = Principal("pixelhub-federation", kind="peer", scopes=frozenset({"system/Patient.rs"}))

Status = Literal["ok", "skipped", "failed"]


@dataclass(frozen=True)
class FederationOptions:
    base_url: str  # this hub's FHIR base
    site_id: str  # this hub's name in Via headers
    max_hops: int = 3
    purpose_of_use: tuple[tuple[str, str], ...] = ((PURPOSE_OF_USE, "TREAT"),)
    max_results: int = 1000  # matches taken from one site
    page_ttl: float = 600.0
    default_count: int = 50
    max_count: int = 1000
    max_response_bytes: int = 32 * 1024 * 1024
    partner_page_size: int = 200


@dataclass
class SiteReport:
    """How one site answered: for the outcome entries and the AuditEvent."""

    site: str
    label: str
    base: str  # the site's FHIR base
    endpoint: str | None = None  # "Endpoint/<id>" of a partner
    status: Status = "ok"
    code: str = "informational"
    message: str = ""
    matches: int = 0
    entries: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list, repr=False)

    def summary(self) -> str:
        """How the site answered, for the AuditEvent."""
        said = f": {self.message}" if self.message else ""
        if self.status == "ok":
            return f"answered {self.matches} matches{said}"
        return f"{self.status} ({self.code}){said}"

    def fail(self, status: Status, code: str, message: str) -> SiteReport:
        self.status, self.code, self.message = status, code, message
        self.entries = []
        return self


@dataclass(frozen=True)
class _Question:
    """One federated search as each site is asked it."""

    resource_type: str
    rest: list[tuple[str, str]]  # the search's own parameters, anchor and paging taken out
    anchor: Anchor | None
    ids: tuple[Identifier, ...]  # the patient's identifiers here
    requester: Requester
    via: str


@dataclass
class FederatedResult:
    bundle: dict[str, Any]
    reports: list[SiteReport]
    patients: list[str]  # this hub's Patient references involved (for the AuditEvent)
    requester: Requester


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _date(resource_type: str, resource: dict[str, Any]) -> str:
    for path in _DATE_OF.get(resource_type, ()):
        value: Any = resource
        for step in path:
            value = value.get(step) if isinstance(value, dict) else None
        if isinstance(value, str):
            return value
    return ""


def _study_uid(resource: dict[str, Any]) -> str | None:
    for ident in resource.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == _DICOM_UID:
            value = ident.get("value")
            return value if isinstance(value, str) else None
    return None


def _absolutize(node: Any, base: str, found: set[str]) -> None:
    """Make relative ``reference`` values absolute against ``base``; collect them all.
    (An explicit stack that never visits scalars: this walk runs over every merged resource.)"""
    stack = [node]
    while stack:
        current = stack.pop()
        if type(current) is list:
            stack.extend(item for item in current if type(item) in _CONTAINERS)
            continue
        for key, value in current.items():
            if key == "reference" and type(value) is str:
                if _RELATIVE.fullmatch(value):
                    value = current[key] = f"{base}/{value}"
                found.add(value.split("/_history/")[0])
            elif type(value) in _CONTAINERS:
                stack.append(value)


def _local_patients(anchor: Anchor | None, local: SiteReport | None) -> list[str]:
    """This hub's patients a federated search involved: the anchor's, and those its local
    matches belong to (for the BALP patient entities of the AuditEvent)."""
    patients = [f"Patient/{rid}" for rid in (anchor.local_ids if anchor else ())]
    for mode, _, resource in local.entries if local else ():
        subject = resource.get("subject") or resource.get("patient") or {}
        reference = subject.get("reference") if isinstance(subject, dict) else None
        if mode != "match":
            continue
        if resource.get("resourceType") == "Patient":
            patients.append(f"Patient/{resource.get('id')}")
        elif isinstance(reference, str) and reference.startswith("Patient/"):
            patients.append(reference)
    return list(dict.fromkeys(patients))


def _next_link(bundle: dict[str, Any]) -> Any:
    links = [link for link in bundle.get("link") or [] if isinstance(link, dict)]
    return next((link.get("url") for link in links if link.get("relation") == "next"), None)


def _tag(resource: dict[str, Any], site: str, label: str) -> None:
    meta = resource.setdefault("meta", {})
    tags = meta.setdefault("tag", [])
    if not any(t.get("system") == SITE_SYSTEM and t.get("code") == site for t in tags):
        tags.append({"system": SITE_SYSTEM, "code": site, "display": label})


def _outcome_entry(report: SiteReport) -> dict[str, Any]:
    severity = {"failed": "error", "skipped": "information"}.get(report.status, "warning")
    issue = {
        "severity": severity,
        "code": report.code,
        "details": {
            "coding": [{"system": SITE_SYSTEM, "code": report.site, "display": report.label}],
            "text": report.label,
        },
        "diagnostics": f"{report.label}: {report.message}",
    }
    return {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resource": {"resourceType": "OperationOutcome", "issue": [issue]},
        "search": {"mode": "outcome"},
    }


class FederatedSearch:
    """Fans a search out to this hub and its partners and merges the answers."""

    def __init__(
        self,
        service: FhirService,
        partners: PartnerStore,
        tokens: BackendTokens,
        options: FederationOptions,
        *,
        http: PartnerHttp | None = None,
        pages: PageStore | None = None,
    ) -> None:
        self.service = service
        self.partners = partners
        self.tokens = tokens
        self.options = options
        self.http = http or AiohttpPartnerHttp()
        self.pages = pages or PageStore(None, options.page_ttl)

    async def aclose(self) -> None:
        await self.http.aclose()

    # ------------------------------------------------------------------ the search

    async def search(
        self,
        principal: Principal,
        resource_type: str,
        params: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
    ) -> FederatedResult:
        """The merged first page (or the page a ``_page`` link names)."""
        if resource_type not in FEDERATED_TYPES:
            raise UnknownResourceType(
                f"Federated search covers {', '.join(FEDERATED_TYPES)}, not {resource_type}"
            )
        requester = self._requester(principal, headers)
        page = dict(params).get("_page")
        if page is not None:
            await run_in_threadpool(self.service.check, principal, "search", resource_type)
            bundle = self._page(principal, resource_type, params, page)
            return FederatedResult(bundle, [], [], requester)
        via = forwarded_via(headers.get("via"), self.options.site_id, self.options.max_hops)
        sites, count, rest = self._own_params(resource_type, params)
        anchor, rest = split_anchor(resource_type, rest, self.options.base_url)
        anchor, identifiers = await run_in_threadpool(
            self._patient, principal, resource_type, anchor
        )
        if resource_type == "ImagingStudy" and not any(
            k == "_include" and v.startswith("ImagingStudy:endpoint") for k, v in rest
        ):
            rest.append(("_include", "ImagingStudy:endpoint"))
        partners = [p for p in self.partners.enabled() if sites is None or p.name in sites]
        if sites is not None:
            unknown = sites - {p.name for p in partners} - {LOCAL_SITE}
            if unknown:
                raise InvalidSearch(
                    f"_partners: no enabled partner named {', '.join(sorted(unknown))}"
                )
        question = _Question(resource_type, rest, anchor, identifiers, requester, via)
        jobs = [self._ask(p, question) for p in partners]
        if sites is None or LOCAL_SITE in sites:
            jobs.insert(0, run_in_threadpool(self._local, principal, question))
        reports = list(await asyncio.gather(*jobs))
        local = next((r for r in reports if r.site == LOCAL_SITE), None)
        patients = _local_patients(anchor, local)
        snapshot = self._merge(principal, resource_type, reports)
        bundle = self._render(snapshot, params, 0, count, token=None)
        return FederatedResult(bundle, reports, patients, requester)

    def _requester(self, principal: Principal, headers: Mapping[str, str]) -> Requester:
        """The requester sent onwards: the one a federating hub asserted (a hop), else the
        caller; the purpose of use is the asserted one, else ``federation_purpose_of_use``."""
        asserted = Requester.from_header(headers.get(IUA_HEADER.lower()))
        if asserted is not None and not asserted.purpose_of_use:
            asserted = replace(asserted, purpose_of_use=self.options.purpose_of_use)
        return asserted or Requester(
            subject_name=principal.subject,
            home_community_id=self.options.site_id,
            purpose_of_use=self.options.purpose_of_use,
        )

    def _own_params(
        self, resource_type: str, params: Sequence[tuple[str, str]]
    ) -> tuple[set[str] | None, int, list[tuple[str, str]]]:
        sites: set[str] | None = None
        count = self.options.default_count
        for key, value in params:
            if key == "_partners":
                sites = {s.strip() for s in value.split(",") if s.strip()}
            elif key == "_count":
                if not value.isascii() or not value.isdigit():
                    raise InvalidSearch(f"_count={value} is not a non-negative integer")
                count = min(int(value), self.options.max_count)
            elif key == "_sort" and value not in _NEWEST_FIRST:
                raise InvalidSearch("Federated results come newest first; _sort cannot change it")
            elif key == "_summary" and value == "count":
                raise InvalidSearch("_summary=count is not supported on the federated base")
        rest = [(k, v) for k, v in params if k not in _OWN]
        return sites, count, rest

    def _patient(
        self, principal: Principal, resource_type: str, anchor: Anchor | None
    ) -> tuple[Anchor | None, tuple[Identifier, ...]]:
        """The search's access checked, its anchor confined, and the patient's identifiers
        (one trip to a worker thread for all three: each trip costs)."""
        access = self.service.check(principal, "search", resource_type)
        anchor = self._confine(principal, access, anchor)
        return anchor, self._identifiers(anchor)

    def _confine(
        self, principal: Principal, access: Access, anchor: Anchor | None
    ) -> Anchor | None:
        """A ``patient/`` token searches only its own patient, at every site (SMART
        ``scopes-and-launch-context.html``); any other restriction cannot be carried to
        partners, so it is refused."""
        if not access.restricted:
            return anchor
        rules = access.rules or ()
        if not principal.patient or any(r.patient != principal.patient or r.query for r in rules):
            raise Forbidden(
                "A federated search needs unrestricted search access or a patient/ scope"
            )
        own = Anchor(local_ids=(principal.patient,))
        if anchor is None or anchor.local_ids == own.local_ids:
            return own
        if anchor.identifiers and set(anchor.identifiers) <= set(self._identifiers(own)):
            return own
        raise Forbidden("This token may search only its own patient")

    def _identifiers(self, anchor: Anchor | None) -> tuple[Identifier, ...]:
        """The patient's identifiers: those given, or those of the local Patient."""
        if anchor is None:
            return ()
        found = list(anchor.identifiers)
        for rid in anchor.local_ids:
            try:
                stored = self.service.read(_INTERNAL, "Patient", rid)
            except HubError:
                continue
            for ident in orjson.loads(stored.data or b"{}").get("identifier") or []:
                system, value = ident.get("system"), ident.get("value")
                if isinstance(system, str) and isinstance(value, str):
                    found.append((system, value))
        return tuple(dict.fromkeys(found))

    # ------------------------------------------------------------------ the sites

    def _local(self, principal: Principal, question: _Question) -> SiteReport:
        report = SiteReport(LOCAL_SITE, "this hub", self.options.base_url)
        resource_type, anchor = question.resource_type, question.anchor
        query = list(question.rest)
        if anchor is not None:
            query.append(self._anchor_param(resource_type, anchor, anchor.identifiers))
        query.append(
            ("_count", str(min(self.options.max_results, self.service.options.max_page_size)))
        )
        try:
            bundle = orjson.loads(
                orjson.dumps(self.service.search(principal, resource_type, query))
            )
        except HubError as exc:
            return report.fail("failed", exc.issue_code, exc.message)
        for entry in bundle.get("entry") or []:
            mode = entry.get("search", {}).get("mode", "match")
            report.entries.append((mode, entry.get("fullUrl", ""), entry["resource"]))
        report.matches = sum(1 for m, _, _ in report.entries if m == "match")
        if any(link.get("relation") == "next" for link in bundle.get("link") or []):
            report.code = "too-costly"
            report.message = f"more than {report.matches} matches; the first are shown"
        return report

    @staticmethod
    def _anchor_param(
        resource_type: str, anchor: Anchor, identifiers: Sequence[Identifier]
    ) -> tuple[str, str]:
        if not identifiers:  # local: by reference
            key = "_id" if resource_type == "Patient" else "patient"
            return key, ",".join(anchor.local_ids)
        key = "identifier" if resource_type == "Patient" else "patient.identifier"
        return key, ",".join(f"{escape(s)}|{escape(v)}" for s, v in identifiers)

    async def _ask(self, partner: Partner, question: _Question) -> SiteReport:
        endpoint = f"Endpoint/{partner.resource_id}"
        report = SiteReport(partner.name, partner.label, partner.fhir_base, endpoint)
        try:
            async with asyncio.timeout(partner.timeout):
                await self._ask_partner(report, partner, question)
        except TimeoutError:
            report.fail("failed", "timeout", f"no answer within {partner.timeout:g} s")
        except PartnerError as exc:
            report.fail("failed", exc.code, str(exc))
        return report

    async def _ask_partner(self, report: SiteReport, partner: Partner, question: _Question) -> None:
        client = self.http
        resource_type, anchor, identifiers = question.resource_type, question.anchor, question.ids
        headers = {
            "Accept": "application/fhir+json",
            "Via": question.via,
            IUA_HEADER: question.requester.header_value(),
        }
        query = list(question.rest)
        if anchor is not None:
            known = partner_identifiers(partner, identifiers)
            if not known and partner.pixm and identifiers:
                headers["Authorization"] = f"Bearer {await self.tokens.token(client, partner)}"
                known = await pixm_identifiers(client, partner, headers, identifiers)
            if not known:
                report.fail("skipped", "not-found", "no identifier of this patient is known there")
                return
            query.append(self._anchor_param(resource_type, anchor, known))
        query.append(("_count", str(min(self.options.partner_page_size, self.options.max_results))))
        url: str | None = f"{partner.fhir_base}/{resource_type}?{urlencode(query)}"
        origin = urlsplit(partner.fhir_base)[:2]
        while url is not None:
            bundle = await self._get(client, partner, url, headers)
            self._take(report, partner, resource_type, bundle)
            url = _next_link(bundle)
            if url is not None and (not isinstance(url, str) or urlsplit(url)[:2] != origin):
                raise PartnerError("security", "its next link leaves its own origin")
            if url is not None and report.matches >= self.options.max_results:
                report.code = "too-costly"
                report.message = f"more than {report.matches} matches; the first are shown"
                break

    async def _get(
        self, client: PartnerHttp, partner: Partner, url: str, headers: dict[str, str]
    ) -> dict[str, Any]:
        """GET one page with a valid token (renewed once on 401), read within the size cap."""
        for attempt in (1, 2):
            token = await self.tokens.token(client, partner)
            answer = await client.request(
                "GET",
                url,
                headers={**headers, "Authorization": f"Bearer {token}"},
                limit=self.options.max_response_bytes,
            )
            if answer.status == 401 and attempt == 1:
                self.tokens.invalidate(partner)
                continue
            return self._bundle(answer.status, answer.body)
        raise PartnerError("security", "it refused this hub's token")

    @staticmethod
    def _bundle(status: int, body: bytes) -> dict[str, Any]:
        if status in (401, 403):
            raise PartnerError("security", f"it refused the search (HTTP {status})")
        try:
            document = orjson.loads(body)
        except ValueError:
            raise PartnerError(
                "processing", f"it answered HTTP {status} with malformed JSON"
            ) from None
        if status != 200:
            issue = (document.get("issue") or [{}])[0] if isinstance(document, dict) else {}
            detail = issue.get("diagnostics") if isinstance(issue, dict) else None
            code = "transient" if status >= 500 else "processing"
            raise PartnerError(
                code, f"it answered HTTP {status}" + (f": {detail}" if detail else "")
            )
        if (
            not isinstance(document, dict)
            or document.get("resourceType") != "Bundle"
            or document.get("type") != "searchset"
            or not isinstance(document.get("entry", []), list)
        ):
            raise PartnerError("processing", "it answered something that is not a searchset Bundle")
        return document

    def _take(
        self, report: SiteReport, partner: Partner, resource_type: str, bundle: dict[str, Any]
    ) -> None:
        for entry in bundle.get("entry") or []:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            search = entry.get("search") if isinstance(entry, dict) else None
            mode = search.get("mode", "match") if isinstance(search, dict) else "match"
            if (
                not isinstance(resource, dict)
                or not isinstance(resource.get("resourceType"), str)
                or mode not in ("match", "include", "outcome")
                or (mode != "outcome" and not isinstance(resource.get("id"), str))
                or (mode == "match" and resource["resourceType"] != resource_type)
            ):
                raise PartnerError("processing", "its Bundle holds an entry that is not valid")
            full_url = entry.get("fullUrl")
            if not isinstance(full_url, str) or not full_url.startswith(("http://", "https://")):
                full_url = f"{partner.fhir_base}/{resource['resourceType']}/{resource.get('id')}"
            report.entries.append((mode, full_url, resource))
            report.matches += mode == "match"

    # ------------------------------------------------------------------ merging and paging

    def _merge(
        self, principal: Principal, resource_type: str, reports: list[SiteReport]
    ) -> MergedResult:
        matches: list[tuple[str, dict[str, Any], set[str]]] = []
        includes: dict[str, dict[str, Any]] = {}
        outcomes: list[dict[str, Any]] = []
        by_study: dict[str, dict[str, Any]] = {}
        for report in reports:
            for mode, full_url, resource in report.entries:
                refs: set[str] = set()
                _absolutize(resource, report.base, refs)
                _tag(resource, report.site, report.label)
                entry = {"fullUrl": full_url, "resource": resource, "search": {"mode": mode}}
                if mode == "outcome":
                    outcomes.append(entry)
                elif mode == "include":
                    includes.setdefault(full_url, entry)
                else:
                    uid = _study_uid(resource) if resource_type == "ImagingStudy" else None
                    if uid is not None and uid in by_study:
                        _tag(by_study[uid], report.site, report.label)
                        continue
                    if uid is not None:
                        by_study[uid] = resource
                    matches.append((_date(resource_type, resource), entry, refs))
            if report.status != "ok" or report.message:
                outcomes.append(_outcome_entry(report))
        matches.sort(key=lambda m: m[0], reverse=True)  # stable: site order within one date
        return MergedResult(
            owner=(principal.subject, principal.patient),
            resource_type=resource_type,
            matches=[m[1] for m in matches],
            references=[sorted(m[2]) for m in matches],
            includes=includes,
            outcomes=outcomes,
            expires=self.pages.expiry(),
        )

    def _page(
        self,
        principal: Principal,
        resource_type: str,
        params: Sequence[tuple[str, str]],
        token: str,
    ) -> dict[str, Any]:
        snapshot = self.pages.get(token)
        if (
            snapshot is None
            or snapshot.owner != (principal.subject, principal.patient)
            or snapshot.resource_type != resource_type
        ):
            raise Gone("This page of a federated search has expired; repeat the search")
        values = dict(params)
        try:
            offset = max(0, int(values.get("_offset", "0")))
            count = min(
                max(0, int(values.get("_count", str(self.options.default_count)))),
                self.options.max_count,
            )
        except ValueError:
            raise InvalidSearch("_offset and _count are non-negative integers") from None
        return self._render(snapshot, params, offset, count, token=token)

    def _render(
        self,
        snapshot: MergedResult,
        params: Sequence[tuple[str, str]],
        offset: int,
        count: int,
        *,
        token: str | None,
    ) -> dict[str, Any]:
        page = snapshot.matches[offset : offset + count]
        wanted: set[str] = set()
        for refs in snapshot.references[offset : offset + count]:
            wanted.update(refs)
        entries = [*page]
        entries += [e for url, e in snapshot.includes.items() if url in wanted]
        entries += snapshot.outcomes
        path = f"{self.options.base_url}/federated/{snapshot.resource_type}"
        total = len(snapshot.matches)
        if token is None:
            self_url = f"{path}?{urlencode(list(params))}" if params else path
            if total > count:
                token = self.pages.put(snapshot)
        else:
            self_url = (
                f"{path}?{urlencode([('_page', token), ('_offset', offset), ('_count', count)])}"
            )
        links = [{"relation": "self", "url": self_url}]
        if token is not None and offset + count < total and count > 0:
            q = urlencode([("_page", token), ("_offset", offset + count), ("_count", count)])
            links.append({"relation": "next", "url": f"{path}?{q}"})
        if token is not None and offset > 0:
            q = urlencode(
                [("_page", token), ("_offset", max(0, offset - count)), ("_count", count)]
            )
            links.append({"relation": "previous", "url": f"{path}?{q}"})
        return {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "meta": {"lastUpdated": _now()},
            "type": "searchset",
            "total": total,
            "link": links,
            "entry": entries,
        }
