"""The FHIR R4 RESTful interactions (http.html), with no HTTP framework in them.

Each public method is one interaction: it checks the access policy, runs against the ports
(``Repository``, ``SearchIndex``) and returns stored resources or a ``Bundle`` as a dict. Routes in
``hub.http`` only parse the request, call one method and render the answer; batch and transaction
Bundles (``hub.fhir.transaction``) call the same methods entry by entry, so every rule is written
once.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import jsonpatch
import orjson

from hub.auth import AccessPolicy, InteractionKind, Principal
from hub.errors import (
    Gone,
    InvalidRequest,
    InvalidResource,
    NotFound,
    PreconditionFailed,
    UnknownResourceType,
    Unprocessable,
)
from hub.fhir import bundles
from hub.fhir.references import iter_reference_holders, parse_local, strip_base
from hub.fhir.validation import check_depth, validate_resource
from hub.ports import Engine, StoredResource, Transaction
from hub.search.extract import extract_index_entries
from hub.search.model import SearchQuery
from hub.search.query import parse_search
from hub.search.registry import SERVED_TYPES, SearchParameterRegistry, default_registry

_SERVED = frozenset(SERVED_TYPES)
# A version id PixelHub can hold: ASCII digits (``str.isdigit`` accepts ``²``) that fit the
# store's 64-bit integers; anything else is no version of ours.
_VERSION = re.compile(r"[0-9]{1,18}")
T = TypeVar("T")


@dataclass(frozen=True)
class ServiceOptions:
    base_url: str  # the public FHIR base, e.g. http://127.0.0.1:8080/fhir
    default_page_size: int = 50
    max_page_size: int = 1000
    referential_integrity: bool = True


@dataclass(frozen=True)
class WriteResult:
    stored: StoredResource
    created: bool


@dataclass
class UnitOfWork:
    """One repository transaction plus what must hold when it commits.

    ``urn_map`` resolves ``fullUrl`` placeholders of a transaction Bundle to ``Type/id``;
    ``pending`` collects local references to verify once every write of the unit is done, so
    entries may refer to each other in any order (http.html#trules). ``validate`` is off only
    for resources built by PixelHub's own mappings, whose output is held to the R4 definitions
    by golden tests and the HAPI validator; every client write is validated.
    """

    tx: Transaction
    validate: bool = True
    urn_map: dict[str, str] = field(default_factory=dict)
    pending: list[tuple[str, str, str]] = field(default_factory=list)  # (type, id, location)
    written: set[tuple[str, str]] = field(default_factory=set)


def parse_etag(value: str | None) -> int | None:
    """``W/"3"`` (or ``"3"``) -> 3 (http.html#concurrency); ``None`` when absent."""
    if value is None:
        return None
    text = value.strip().removeprefix("W/").strip('"')
    if not _VERSION.fullmatch(text):
        raise InvalidRequest.at(f'If-Match must be a version ETag like W/"1", got {value!r}')
    return int(text)


class FhirService:
    """FHIR R4 interactions over one storage engine."""

    def __init__(
        self,
        engine: Engine,
        policy: AccessPolicy,
        options: ServiceOptions,
        registry: SearchParameterRegistry | None = None,
    ) -> None:
        self.engine = engine
        self.repository = engine.repository
        self.search_index = engine.search_index
        self.policy = policy
        self.options = options
        self.registry = registry or default_registry()

    # ------------------------------------------------------------------ helpers

    def check(self, principal: Principal, interaction: InteractionKind, resource_type: str) -> None:
        if resource_type not in _SERVED:
            raise UnknownResourceType(f"Resource type '{resource_type}' is not supported")
        self.policy.check(principal, interaction, resource_type)

    def parse_query(
        self, resource_type: str | None, params: Sequence[tuple[str, str]], *, strict: bool = False
    ) -> SearchQuery:
        return parse_search(
            resource_type,
            params,
            registry=self.registry,
            strict=strict,
            default_count=self.options.default_page_size,
            max_count=self.options.max_page_size,
            base_url=self.options.base_url,
        )

    def _body(self, resource: Any, resource_type: str) -> dict[str, Any]:
        if not isinstance(resource, dict):
            raise InvalidResource.at("The body must be a JSON object (a FHIR resource)")
        check_depth(resource)
        actual = resource.get("resourceType")
        if actual != resource_type:
            raise InvalidResource.at(
                f"resourceType is {actual!r} but the request is for {resource_type}",
                f"{resource_type}.resourceType",
            )
        return resource

    def conditional_matches(
        self, uow: UnitOfWork, resource_type: str, criteria: str, what: str
    ) -> list[str]:
        """Ids matching a conditional interaction's criteria (http.html#cond-update)."""
        params = parse_qsl(criteria.lstrip("?"), keep_blank_values=True)
        if not params:
            raise InvalidRequest.at(f"{what} needs search criteria")
        query = self.parse_query(resource_type, params, strict=True)
        query = SearchQuery(resource_type, query.criteria, count=2, total="none")
        return [rid for _, rid in uow.tx.search(query).matches]

    def _resolve_references(self, uow: UnitOfWork, resource: dict[str, Any]) -> None:
        """Resolve ``urn:uuid:`` and conditional references; queue local ones for integrity."""
        rtype = str(resource["resourceType"])
        for location, holder in iter_reference_holders(resource, rtype):
            ref = strip_base(holder["reference"], self.options.base_url)
            if ref.startswith(("urn:uuid:", "urn:oid:")):
                if ref not in uow.urn_map:
                    raise InvalidRequest.at(
                        f"Reference {ref} at {location} matches no fullUrl in this Bundle",
                        location,
                    )
                ref = uow.urn_map[ref]
            elif "?" in ref and ref.split("?", 1)[0] in _SERVED:
                target_type, criteria = ref.split("?", 1)
                ids = self.conditional_matches(
                    uow, target_type, criteria, "A conditional reference"
                )
                if len(ids) != 1:
                    raise PreconditionFailed.at(
                        f"Conditional reference {ref} at {location} matched {len(ids)} resources;"
                        " exactly one is required",
                        location,
                    )
                ref = f"{target_type}/{ids[0]}"
            holder["reference"] = ref
            local = parse_local(ref)
            if local and self.options.referential_integrity:
                uow.pending.append((local[0], local[1], location))

    def verify_references(self, uow: UnitOfWork) -> None:
        """Every local reference written in ``uow`` points to a live resource (references.html)."""
        checked: set[tuple[str, str]] = set()
        for rtype, rid, location in uow.pending:
            if (rtype, rid) in checked:
                continue
            current = uow.tx.read(rtype, rid)
            if current is None or current.deleted:
                raise InvalidRequest.at(
                    f"Resource {rtype}/{rid} referenced at {location} does not exist", location
                )
            checked.add((rtype, rid))
        uow.pending.clear()

    def _put(
        self,
        uow: UnitOfWork,
        resource_type: str,
        rid: str,
        resource: dict[str, Any],
        expected_version: int | None,
    ) -> StoredResource:
        resource["id"] = rid
        self._resolve_references(uow, resource)
        if uow.validate:
            validate_resource(resource, resource_type)
        stored = uow.tx.put(
            resource_type,
            rid,
            resource,
            extract_index_entries(resource, self.registry),
            expected_version=expected_version,
        )
        uow.written.add((resource_type, rid))
        return stored

    def run(self, work: Callable[[UnitOfWork], T], *, validate: bool = True) -> T:
        """Run ``work(uow)`` in one transaction, verifying references before the commit.

        ``validate=False`` is for channels writing what PixelHub's own mappings produced."""
        with self.repository.transaction() as tx:
            uow = UnitOfWork(tx, validate=validate)
            result = work(uow)
            self.verify_references(uow)
            return result

    # ------------------------------------------------------------------ instance level

    def read(self, principal: Principal, resource_type: str, rid: str) -> StoredResource:
        """read (http.html#read): 404 if unknown, 410 if deleted."""
        self.check(principal, "read", resource_type)
        return self._current(resource_type, rid)

    def _current(self, resource_type: str, rid: str) -> StoredResource:
        stored = self.repository.read(resource_type, rid)
        if stored is None:
            raise NotFound(f"{resource_type}/{rid} is not known")
        if stored.deleted:
            raise Gone(
                f"{resource_type}/{rid} was deleted",
                headers={"ETag": f'W/"{stored.version}"'},
            )
        return stored

    def vread(self, principal: Principal, resource_type: str, rid: str, vid: str) -> StoredResource:
        """vread (http.html#vread)."""
        self.check(principal, "vread", resource_type)
        valid = _VERSION.fullmatch(vid) is not None
        stored = self.repository.vread(resource_type, rid, int(vid)) if valid else None
        if stored is None:
            raise NotFound(f"{resource_type}/{rid}/_history/{vid} is not known")
        if stored.deleted:
            raise Gone(f"{resource_type}/{rid}/_history/{vid} is a deletion")
        return stored

    def create(
        self,
        principal: Principal,
        resource_type: str,
        resource: Any,
        *,
        if_none_exist: str | None = None,
        uow: UnitOfWork | None = None,
        new_id: str | None = None,
    ) -> WriteResult:
        """create (http.html#create), conditional with ``If-None-Exist`` (http.html#ccreate)."""
        self.check(principal, "create", resource_type)
        body = self._body(resource, resource_type)

        def work(u: UnitOfWork) -> WriteResult:
            if if_none_exist is not None:
                ids = self.conditional_matches(u, resource_type, if_none_exist, "If-None-Exist")
                if len(ids) > 1:
                    raise PreconditionFailed(
                        f"If-None-Exist matched {len(ids)} {resource_type} resources"
                    )
                if ids:
                    existing = u.tx.read(resource_type, ids[0])
                    assert existing is not None
                    return WriteResult(existing, created=False)
            rid = new_id or str(uuid.uuid4())
            return WriteResult(self._put(u, resource_type, rid, body, None), created=True)

        return work(uow) if uow else self.run(work)

    def update(
        self,
        principal: Principal,
        resource_type: str,
        rid: str,
        resource: Any,
        *,
        if_match: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> WriteResult:
        """update (http.html#update), also update-as-create; ``If-Match`` for version-aware
        updates (http.html#concurrency)."""
        self.check(principal, "update", resource_type)
        body = self._body(resource, resource_type)
        if "id" not in body:
            raise InvalidResource.at(
                "The resource must carry an id to be updated", f"{resource_type}.id"
            )
        if body["id"] != rid:
            raise InvalidResource.at(
                f"The resource id {body['id']!r} does not match the URL id {rid!r}",
                f"{resource_type}.id",
            )
        expected = parse_etag(if_match)

        def work(u: UnitOfWork) -> WriteResult:
            current = u.tx.read(resource_type, rid)
            created = current is None or current.deleted
            if expected is not None and (current is None or current.version != expected):
                have = "none" if current is None else current.version
                raise PreconditionFailed(
                    f"Version conflict: If-Match is {expected}, current version is {have}"
                )
            return WriteResult(self._put(u, resource_type, rid, body, expected), created)

        return work(uow) if uow else self.run(work)

    def conditional_update(
        self,
        principal: Principal,
        resource_type: str,
        criteria: str,
        resource: Any,
        *,
        uow: UnitOfWork | None = None,
    ) -> WriteResult:
        """Conditional update (http.html#cond-update): 0 matches create, 1 updates, more is 412."""
        self.check(principal, "update", resource_type)
        body = self._body(resource, resource_type)

        def work(u: UnitOfWork) -> WriteResult:
            ids = self.conditional_matches(u, resource_type, criteria, "A conditional update")
            if len(ids) > 1:
                raise PreconditionFailed(
                    f"The criteria matched {len(ids)} {resource_type} resources"
                )
            if not ids:
                rid = str(body.get("id") or uuid.uuid4())
                return WriteResult(self._put(u, resource_type, rid, body, None), created=True)
            if "id" in body and body["id"] != ids[0]:
                raise InvalidResource.at(
                    f"The resource id {body['id']!r} differs from the matched {ids[0]!r}",
                    f"{resource_type}.id",
                )
            return WriteResult(self._put(u, resource_type, ids[0], body, None), created=False)

        return work(uow) if uow else self.run(work)

    def patch(
        self,
        principal: Principal,
        resource_type: str,
        rid: str,
        operations: Any,
        *,
        if_match: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> WriteResult:
        """patch with JSON Patch, RFC 6902 (http.html#patch)."""
        self.check(principal, "patch", resource_type)
        if not isinstance(operations, list) or not all(isinstance(o, dict) for o in operations):
            raise InvalidRequest.at("A JSON Patch document is an array of operations")
        check_depth(operations)
        expected = parse_etag(if_match)

        def work(u: UnitOfWork) -> WriteResult:
            current = u.tx.read(resource_type, rid)
            if current is None or current.data is None:
                raise NotFound(f"{resource_type}/{rid} is not known")
            if expected is not None and expected != current.version:
                raise PreconditionFailed(
                    f"Version conflict: If-Match is {expected}, current is {current.version}"
                )
            try:
                patched = jsonpatch.apply_patch(orjson.loads(current.data), operations)
            except jsonpatch.InvalidJsonPatch as exc:
                raise InvalidRequest.at(f"Invalid JSON Patch: {exc}") from None
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                raise Unprocessable(f"The patch cannot be applied: {exc}") from None
            if not isinstance(patched, dict) or patched.get("resourceType") != resource_type:
                raise Unprocessable("A patch must not change the resourceType")
            if patched.get("id") != rid:
                raise Unprocessable("A patch must not change the id")
            body = self._body(patched, resource_type)
            return WriteResult(self._put(u, resource_type, rid, body, current.version), False)

        return work(uow) if uow else self.run(work)

    def delete(
        self, principal: Principal, resource_type: str, rid: str, *, uow: UnitOfWork | None = None
    ) -> StoredResource | None:
        """delete (http.html#delete): deleting an unknown or deleted resource also succeeds."""
        self.check(principal, "delete", resource_type)

        def work(u: UnitOfWork) -> StoredResource | None:
            return u.tx.delete(resource_type, rid)

        return work(uow) if uow else self.run(work)

    def conditional_delete(
        self,
        principal: Principal,
        resource_type: str,
        criteria: str,
        *,
        uow: UnitOfWork | None = None,
    ) -> StoredResource | None:
        """Conditional delete, single-match mode (http.html#cond-delete): several matches is 412."""
        self.check(principal, "delete", resource_type)

        def work(u: UnitOfWork) -> StoredResource | None:
            ids = self.conditional_matches(u, resource_type, criteria, "A conditional delete")
            if len(ids) > 1:
                raise PreconditionFailed(
                    f"The criteria matched {len(ids)} {resource_type} resources"
                )
            return u.tx.delete(resource_type, ids[0]) if ids else None

        return work(uow) if uow else self.run(work)

    # ------------------------------------------------------------------ type and system level

    def search(
        self,
        principal: Principal,
        resource_type: str | None,
        params: Sequence[tuple[str, str]],
        *,
        strict: bool = False,
    ) -> dict[str, Any]:
        """search (http.html#search, search.html) -> a ``searchset`` Bundle."""
        if resource_type is not None:
            self.check(principal, "search", resource_type)
        else:
            for t in SERVED_TYPES:
                self.policy.check(principal, "search", t)
        query = self.parse_query(resource_type, params, strict=strict)
        if query.summary == "count":
            query = SearchQuery(
                query.resource_type, query.criteria, count=0, total="accurate", summary="count"
            )
        result = self.search_index.search(query)
        matches = self.repository.read_many(result.matches)
        included = [
            r
            for r in self.repository.read_many(result.included)
            if self._may_read(principal, r.resource_type)
        ]
        path = resource_type or ""
        return bundles.searchset(
            self.options.base_url, path, params, query, matches, included, result.total
        )

    def _may_read(self, principal: Principal, resource_type: str) -> bool:
        try:
            self.policy.check(principal, "read", resource_type)
        except Exception:
            return False
        return True

    def history(
        self,
        principal: Principal,
        resource_type: str | None,
        rid: str | None,
        params: Sequence[tuple[str, str]],
    ) -> dict[str, Any]:
        """history at instance, type or system level (http.html#history)."""
        if resource_type is not None:
            self.check(principal, "history", resource_type)
        else:
            for t in SERVED_TYPES:
                self.policy.check(principal, "history", t)
        args = bundles.HistoryArgs.parse(params, self.options.max_page_size)
        if (
            rid is not None
            and resource_type is not None
            and not self.repository.read(resource_type, rid)
        ):
            raise NotFound(f"{resource_type}/{rid} is not known")
        page = self.repository.history(
            resource_type,
            rid,
            since=args.since,
            at=args.at,
            count=args.count,
            offset=args.offset,
        )
        path = "/".join(p for p in (resource_type, rid, "_history") if p)
        return bundles.history(self.options.base_url, path, args, page)
