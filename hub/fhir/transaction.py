"""Batch and transaction Bundles (FHIR R4 http.html#transaction).

A transaction runs in one repository transaction: ``fullUrl`` placeholders (``urn:uuid:``) get their
server ids before any write, entries run in the order the specification fixes (DELETE, POST, PUT,
PATCH, then GET), and any failure rolls everything back and is reported with the failing entry's
location. A batch runs each entry on its own and reports each outcome in its response entry.
Reads (GET) of a transaction run after its commit, so they see its writes.

A Bundle that names a profile in ``meta.profile`` for which an adapter installed a check
(entry point group ``pixelhub.bundle_profiles``: a function returning ``{profile URL: check}``,
e.g. MHD's ITI-65 Provide Document Bundle) is held to it first: any issue refuses the whole
Bundle with 422 (http.html: a violated profile) before anything is written.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import Any, Literal, cast
from urllib.parse import parse_qsl, urlsplit

import orjson

from hub.auth import Principal
from hub.errors import HubError, InvalidRequest, InvalidTransaction, Issue, Unprocessable
from hub.fhir import bundles
from hub.fhir.references import strip_base
from hub.fhir.service import FhirService, UnitOfWork, WriteResult
from hub.ports import StoredResource

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 3, "GET": 4, "HEAD": 4}
PreferReturn = Literal["minimal", "representation", "OperationOutcome"]
BundleCheck = Callable[[Mapping[str, Any]], list[Issue]]


@cache
def installed_bundle_checks() -> Mapping[str, BundleCheck]:
    """The Bundle profile checks the installed adapters provide (``pixelhub.bundle_profiles``)."""
    checks: dict[str, BundleCheck] = {}
    for point in entry_points(group="pixelhub.bundle_profiles"):
        checks.update(point.load()())
    return checks


@dataclass
class Entry:
    """One request entry, its URL taken apart: ``Type``, ``Type/id``, ``Type?criteria``..."""

    index: int
    method: Method
    resource_type: str | None
    id: str | None
    version: str | None
    query: str
    full_url: str | None
    resource: Any
    if_none_exist: str | None
    if_match: str | None

    @property
    def location(self) -> str:
        return f"Bundle.entry[{self.index}]"


def _parse_entry(index: int, raw: Any, base_url: str) -> Entry:
    where = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict):
        raise InvalidTransaction.at(f"{where} must be an object", where)
    request = raw.get("request")
    if not isinstance(request, dict):
        raise InvalidTransaction.at(f"{where}.request is required", f"{where}.request")
    method = request.get("method")
    if not isinstance(method, str) or method not in _ORDER:
        raise InvalidTransaction.at(
            f"{where}.request.method must be one of GET, HEAD, POST, PUT, PATCH, DELETE",
            f"{where}.request.method",
        )
    url = request.get("url")
    if not isinstance(url, str) or not url:
        raise InvalidTransaction.at(f"{where}.request.url is required", f"{where}.request.url")
    split = urlsplit(strip_base(url, base_url))
    if split.scheme or split.netloc:
        raise InvalidTransaction.at(
            f"{where}.request.url must be relative to this server: {url}", f"{where}.request.url"
        )
    parts = [p for p in split.path.split("/") if p]
    version = None
    if len(parts) == 4 and parts[2] == "_history":
        version, parts = parts[3], parts[:2]
    if len(parts) > 2 or (len(parts) == 2 and parts[1].startswith("_") and parts[1] != "_search"):
        raise InvalidTransaction.at(
            f"{where}.request.url is not supported: {url}", f"{where}.request.url"
        )
    full_url = raw.get("fullUrl")
    if full_url is not None and not isinstance(full_url, str):
        raise InvalidTransaction.at(f"{where}.fullUrl must be a string", f"{where}.fullUrl")
    for key in ("ifNoneExist", "ifMatch"):
        if request.get(key) is not None and not isinstance(request[key], str):
            at = f"{where}.request.{key}"
            raise InvalidTransaction.at(f"{at} must be a string", at)
    return Entry(
        index=index,
        method=cast(Method, method),
        resource_type=parts[0] if parts else None,
        id=parts[1] if len(parts) == 2 and parts[1] != "_search" else None,
        version=version,
        query=split.query,
        full_url=full_url,
        resource=raw.get("resource"),
        if_none_exist=request.get("ifNoneExist"),
        if_match=request.get("ifMatch"),
    )


def _check_bundle(bundle: Any) -> tuple[str, list[Any]]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise InvalidRequest.at("POST to the base needs a Bundle", "Bundle")
    kind = bundle.get("type")
    if kind not in ("batch", "transaction"):
        raise InvalidRequest.at("Bundle.type must be batch or transaction", "Bundle.type")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise InvalidRequest.at("Bundle.entry must be an array", "Bundle.entry")
    return str(kind), entries


class BundleProcessor:
    """Runs batch and transaction Bundles through a ``FhirService``."""

    def __init__(
        self, service: FhirService, profile_checks: Mapping[str, BundleCheck] | None = None
    ) -> None:
        self.service = service
        self.base_url = service.options.base_url
        self.profile_checks = (
            installed_bundle_checks() if profile_checks is None else profile_checks
        )

    def _check_profiles(self, bundle: dict[str, Any]) -> None:
        """Hold the Bundle to each profile it claims that has a check (module docstring)."""
        meta = bundle.get("meta")
        profiles = meta.get("profile") if isinstance(meta, dict) else None
        for profile in profiles if isinstance(profiles, list) else []:
            check = self.profile_checks.get(profile) if isinstance(profile, str) else None
            issues = check(bundle) if check is not None else []
            if issues:
                raise Unprocessable(f"The Bundle does not conform to {profile}", issues)

    def process(
        self, principal: Principal, bundle: Any, prefer: PreferReturn = "minimal"
    ) -> dict[str, Any]:
        kind, raw_entries = _check_bundle(bundle)
        self._check_profiles(bundle)
        entries = [_parse_entry(i, e, self.base_url) for i, e in enumerate(raw_entries)]
        if kind == "transaction":
            responses = self._transaction(principal, entries, prefer)
        else:
            responses = [self._batch_entry(principal, e, prefer) for e in entries]
        return {
            "resourceType": "Bundle",
            "type": f"{kind}-response",
            "entry": responses,
        }

    # ------------------------------------------------------------------ transaction

    def _transaction(
        self, principal: Principal, entries: list[Entry], prefer: PreferReturn
    ) -> list[dict[str, Any]]:
        self._check_distinct(entries)
        results: dict[int, dict[str, Any]] = {}

        def work(uow: UnitOfWork) -> None:
            self._assign_placeholders(principal, uow, entries)
            for entry in sorted(entries, key=lambda e: _ORDER[e.method]):
                if entry.method in ("GET", "HEAD"):
                    continue
                try:
                    results[entry.index] = self._write(principal, uow, entry, prefer)
                except HubError as exc:
                    raise _located(exc, entry) from None

        self.service.run(work)
        for entry in entries:
            if entry.method in ("GET", "HEAD"):
                try:
                    results[entry.index] = self._read(principal, entry)
                except HubError as exc:
                    results[entry.index] = _error_entry(exc)
        return [results[e.index] for e in entries]

    def _check_distinct(self, entries: list[Entry]) -> None:
        seen_urls: set[str] = set()
        seen_targets: set[tuple[str, str]] = set()
        for e in entries:
            if e.full_url:
                if e.full_url in seen_urls:
                    raise InvalidTransaction.at(
                        f"fullUrl {e.full_url} appears twice", f"{e.location}.fullUrl"
                    )
                seen_urls.add(e.full_url)
            if e.method in ("PUT", "PATCH", "DELETE") and e.resource_type and e.id:
                key = (e.resource_type, e.id)
                if key in seen_targets:
                    raise InvalidTransaction.at(
                        f"{e.resource_type}/{e.id} is written twice in one transaction", e.location
                    )
                seen_targets.add(key)

    def _assign_placeholders(
        self, principal: Principal, uow: UnitOfWork, entries: list[Entry]
    ) -> None:
        """Give each placeholder ``fullUrl`` its ``Type/id`` before any write (http.html#trules);
        conditional entries match only what ``principal`` may see, as the entries will."""
        for e in entries:
            if not e.full_url or not e.full_url.startswith(("urn:uuid:", "urn:oid:")):
                continue
            if e.method == "POST" and e.resource_type:
                target: str | None = None
                if e.if_none_exist:
                    try:
                        access = self.service.check(principal, "create", e.resource_type)
                        ids = self.service.conditional_matches(
                            uow,
                            e.resource_type,
                            e.if_none_exist,
                            "ifNoneExist",
                            principal=principal,
                            access=access,
                        )
                    except HubError as exc:
                        raise _located(exc, e) from None
                    if len(ids) == 1:
                        target = ids[0]
                e.id = target or str(uuid.uuid4())
                uow.urn_map[e.full_url] = f"{e.resource_type}/{e.id}"
            elif e.method == "PUT" and e.resource_type and e.id:
                uow.urn_map[e.full_url] = f"{e.resource_type}/{e.id}"
            elif e.method == "PUT" and e.resource_type and e.query:
                try:
                    access = self.service.check(principal, "update", e.resource_type)
                    ids = self.service.conditional_matches(
                        uow, e.resource_type, e.query, "PUT", principal=principal, access=access
                    )
                except HubError as exc:
                    raise _located(exc, e) from None
                if len(ids) == 1:
                    uow.urn_map[e.full_url] = f"{e.resource_type}/{ids[0]}"
                elif not ids:
                    new_id = str(uuid.uuid4())
                    if isinstance(e.resource, dict):
                        e.resource["id"] = new_id
                    uow.urn_map[e.full_url] = f"{e.resource_type}/{new_id}"

    def _write(
        self, principal: Principal, uow: UnitOfWork | None, e: Entry, prefer: PreferReturn
    ) -> dict[str, Any]:
        s = self.service
        rtype = e.resource_type
        if rtype is None:
            raise InvalidTransaction.at(
                "request.url must name a resource type", f"{e.location}.request.url"
            )
        result: WriteResult | None = None
        stored: StoredResource | None = None
        if e.method == "POST":
            if e.id is not None and uow is None:
                raise InvalidTransaction.at(
                    "POST url must be a resource type", f"{e.location}.request.url"
                )
            result = s.create(
                principal, rtype, e.resource, if_none_exist=e.if_none_exist, uow=uow, new_id=e.id
            )
        elif e.method == "PUT":
            if e.id is not None:
                result = s.update(principal, rtype, e.id, e.resource, if_match=e.if_match, uow=uow)
            elif e.query:
                result = s.conditional_update(principal, rtype, e.query, e.resource, uow=uow)
            else:
                raise InvalidTransaction.at(
                    "PUT needs Type/id or Type?criteria", f"{e.location}.request.url"
                )
        elif e.method == "PATCH":
            if e.id is None:
                raise InvalidTransaction.at("PATCH needs Type/id", f"{e.location}.request.url")
            operations = _patch_body(e)
            result = s.patch(principal, rtype, e.id, operations, if_match=e.if_match, uow=uow)
        elif e.method == "DELETE":
            if e.id is not None:
                s.delete(principal, rtype, e.id, uow=uow)
            elif e.query:
                s.conditional_delete(principal, rtype, e.query, uow=uow)
            else:
                raise InvalidTransaction.at(
                    "DELETE needs Type/id or Type?criteria", f"{e.location}.request.url"
                )
            return bundles.response_entry(self.base_url, None, "204 No Content")
        if result is not None:
            stored = result.stored
        assert stored is not None and result is not None
        status = "201 Created" if result.created else "200 OK"
        body = None
        if prefer == "representation" and stored.data is not None:
            body = orjson.Fragment(stored.data)
        return bundles.response_entry(self.base_url, stored, status, body)

    def _read(self, principal: Principal, e: Entry) -> dict[str, Any]:
        s = self.service
        if e.resource_type and e.id and e.version:
            stored = s.vread(principal, e.resource_type, e.id, e.version)
        elif e.resource_type and e.id:
            stored = s.read(principal, e.resource_type, e.id)
        else:
            params = parse_qsl(e.query, keep_blank_values=True)
            found = s.search(principal, e.resource_type, params)
            return bundles.response_entry(self.base_url, None, "200 OK", found)
        return bundles.response_entry(self.base_url, stored, "200 OK", orjson.Fragment(stored.data))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ batch

    def _batch_entry(self, principal: Principal, e: Entry, prefer: PreferReturn) -> dict[str, Any]:
        try:
            if e.method in ("GET", "HEAD"):
                return self._read(principal, e)
            if e.method == "POST":
                e.id = None
            return self._write(principal, None, e, prefer)
        except HubError as exc:
            return _error_entry(_located(exc, e))


def _patch_body(e: Entry) -> Any:
    """A PATCH entry carries its JSON Patch as a ``Binary`` (http.html#patch)."""
    res = e.resource
    if isinstance(res, dict) and res.get("resourceType") == "Binary" and "data" in res:
        import base64

        try:
            return orjson.loads(base64.b64decode(res["data"], validate=True))
        except (ValueError, orjson.JSONDecodeError):
            raise InvalidTransaction.at(
                "PATCH Binary.data must be a base64 JSON Patch", f"{e.location}.resource"
            ) from None
    if isinstance(res, dict) and res.get("resourceType") == "Parameters":
        raise InvalidTransaction.at(
            "FHIRPath Patch is not supported; use JSON Patch", f"{e.location}.resource"
        )
    raise InvalidTransaction.at(
        "PATCH entries need a Binary with a JSON Patch", f"{e.location}.resource"
    )


def _located(exc: HubError, e: Entry) -> HubError:
    """The same error, its diagnostics prefixed with the failing entry's location."""
    issues = [
        Issue(
            f"{e.location}: {i.diagnostics}",
            code=i.code,
            severity=i.severity,
            expression=(e.location, *i.expression),
        )
        for i in exc.issues
    ]
    located = type(exc)(f"{e.location}: {exc.message}", issues, dict(exc.headers))
    return located


def _error_entry(exc: HubError) -> dict[str, Any]:
    status = f"{exc.status} {_REASONS.get(exc.status, 'Error')}"
    return bundles.response_entry("", None, status, outcome=exc.operation_outcome())


_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    410: "Gone",
    412: "Precondition Failed",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
