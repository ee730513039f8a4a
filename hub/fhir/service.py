"""The FHIR R4 RESTful interactions (http.html), with no HTTP framework in them.

Each public method is one interaction: it checks the access policy, runs against the ports
(``Repository``, ``SearchIndex``) and returns stored resources or a ``Bundle`` as a dict. Routes in
``hub.http`` only parse the request, call one method and render the answer; batch and transaction
Bundles (``hub.fhir.transaction``) call the same methods entry by entry, so every rule is written
once.

Access restrictions (``hub.auth.Access``: a SMART ``patient/`` scope's compartment, a v2 scope's
search restriction) are enforced here, on every path, as search criteria: a search gets them as
one more criterion (so paging, ``total`` and ``_summary=count`` stay right), chains and ``_has``
get the restriction of the type they go through, ``_include``/``_revinclude`` keep only what
may be seen, and a single resource is visible when a search for its ``_id`` plus the restriction
finds it. Anything not visible is answered exactly like a missing resource (404; a delete
succeeds without deleting), never 403, so not even its existence is revealed
(SMART ``scopes-and-launch-context.html``, FHIR R4 ``security.html``). Deleted resources are not
visible to restricted principals. An ``$operation`` checks ``"operation"`` and, on an instance,
``visible``; one that searches (PIXm ``Patient/$ihe-pix``, ``hub.federation.pix``) goes through
``search`` and so through ``confine``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import jsonpatch
import orjson

from hub.auth import Access, AccessPolicy, InteractionKind, Principal
from hub.errors import (
    Forbidden,
    Gone,
    InvalidRequest,
    InvalidResource,
    MethodNotAllowed,
    NotFound,
    PreconditionFailed,
    UnknownResourceType,
    Unprocessable,
)
from hub.fhir import bundles
from hub.fhir.binary import check_not_reserved
from hub.fhir.references import is_attachment, iter_objects, parse_local, strip_base
from hub.fhir.references import location as location_of
from hub.fhir.validation import check_depth, validate_resource
from hub.ports import Engine, HistoryPage, StoredResource, Transaction
from hub.search.extract import extract_index_entries
from hub.search.model import (
    AnyCriterion,
    AnyOfCriterion,
    ChainedCriterion,
    Criterion,
    HasCriterion,
    ParamRef,
    SearchQuery,
    TokenValue,
)
from hub.search.query import parse_search
from hub.search.registry import SERVED_TYPES, SearchParameterRegistry, default_registry
from hub.smart.compartment import restriction_criterion

_SERVED = frozenset(SERVED_TYPES)
# The audit log is append-only (issue 7): events are created (by the trail, or by another
# system recording its own, IHE ITI-20 style) and never updated or deleted.
_IMMUTABLE = frozenset({"AuditEvent"})
_WRITES = frozenset({"update", "patch", "delete"})
# A version id PixelHub can hold: ASCII digits (``str.isdigit`` accepts ``²``) that fit the
# store's 64-bit integers; anything else is no version of ours.
_VERSION = re.compile(r"[0-9]{1,18}")
_ID = ParamRef("_id", "token")
# Type and system history under a restriction merge the histories of the visible resources;
# beyond this many resources the client is asked to search instead.
MAX_CONFINED_HISTORY = 1000
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
    writer: Principal | None = None  # whose writes: references must be to what it may read


def parse_etag(value: str | None) -> int | None:
    """``W/"3"`` (or ``"3"``) -> 3 (http.html#concurrency); ``None`` when absent."""
    if value is None:
        return None
    text = value.strip().removeprefix("W/").strip('"')
    if not _VERSION.fullmatch(text):
        raise InvalidRequest.at(f'If-Match must be a version ETag like W/"1", got {value!r}')
    return int(text)


def redact_audit_event(data: bytes, own: set[str]) -> bytes:
    """An AuditEvent as a patient may read it (issue 7, "who looked at my images"): one event per
    interaction lists every patient involved, so the other patients and the query (which may
    name them) are left out."""
    event = orjson.loads(data)
    kept = [
        e
        for e in event.get("entity", [])
        if e.get("role", {}).get("code") != "24"
        and (e.get("role", {}).get("code") != "1" or e.get("what", {}).get("reference") in own)
    ]
    if kept:
        event["entity"] = kept
    else:
        event.pop("entity", None)
    return orjson.dumps(event)


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

    def check(
        self, principal: Principal, interaction: InteractionKind, resource_type: str
    ) -> Access:
        if resource_type not in _SERVED:
            raise UnknownResourceType(f"Resource type '{resource_type}' is not supported")
        if resource_type in _IMMUTABLE and interaction in _WRITES:
            raise MethodNotAllowed(f"{resource_type} resources are never changed or deleted")
        return self.policy.check(principal, interaction, resource_type)

    def restriction(self, access: Access) -> AnyCriterion | None:
        """The search criterion confining ``access`` (``None``: unrestricted)."""
        if access.rules is None:
            return None
        return restriction_criterion(access, self.registry, self.options.base_url)

    def visible(self, access: Access, rid: str, uow: UnitOfWork | None = None) -> bool:
        """Whether the live resource ``rid`` is within ``access``: a search for its ``_id``
        plus the restriction (inside ``uow`` when given, so its own writes count)."""
        crit = self.restriction(access)
        if crit is None:
            return True
        by_id = Criterion(_ID, (TokenValue(code=rid),))
        query = SearchQuery(access.resource_type, (by_id, crit), count=1, total="none")
        found = uow.tx.search(query) if uow else self.search_index.search(query)
        return bool(found.matches)

    def _require_visible(self, access: Access, rid: str, uow: UnitOfWork | None = None) -> None:
        """404 for a resource outside ``access``, worded as for a missing one."""
        if access.restricted and not self.visible(access, rid, uow):
            raise NotFound(f"{access.resource_type}/{rid} is not known")

    def _require_within(self, access: Access, rid: str, uow: UnitOfWork) -> None:
        """A write must leave the resource inside ``access`` (e.g. in the patient's
        compartment): the client's own content, so a plain 403."""
        if access.restricted and not self.visible(access, rid, uow):
            raise Forbidden(
                f"The {access.resource_type} written would be outside what the access token"
                " grants (its patient compartment or its scopes' search restrictions)"
            )

    def confine(self, principal: Principal, query: SearchQuery, access: Access) -> SearchQuery:
        """``query`` limited to what ``principal`` may see: the restriction of ``access`` as one
        more criterion; chains and ``_has`` through other types searchable by the principal and
        confined to its restriction for them (search.html#chaining, #has), so they cannot tell
        anything about hidden resources; includes limited likewise (search.html#include)."""
        if "*" in principal.scopes:
            return query
        criteria = [self._confine_criterion(principal, c) for c in query.criteria]
        crit = self.restriction(access)
        if crit is not None:
            criteria.append(crit)
        include_access = None
        if query.includes:
            allowed: list[tuple[str, AnyCriterion | None]] = []
            for t in SERVED_TYPES:
                try:
                    allowed.append((t, self.restriction(self.policy.check(principal, "read", t))))
                except Forbidden:
                    continue
            include_access = tuple(allowed)
        return replace(query, criteria=tuple(criteria), include_access=include_access)

    def _confine_criterion(self, principal: Principal, crit: AnyCriterion) -> AnyCriterion:
        if isinstance(crit, ChainedCriterion):
            inner = self._confine_criterion(principal, crit.inner)
            limit = self.restriction(self.check(principal, "search", crit.target_type))
            if limit is not None:
                inner = AnyOfCriterion(((inner, limit),))
            assert not isinstance(inner, HasCriterion)
            return replace(crit, inner=inner)
        if isinstance(crit, HasCriterion):
            inner = self._confine_criterion(principal, crit.inner)
            limit = self.restriction(self.check(principal, "search", crit.source_type))
            if limit is not None:
                inner = AnyOfCriterion(((inner, limit),))
            return replace(crit, inner=inner)
        if isinstance(crit, AnyOfCriterion):
            return AnyOfCriterion(
                tuple(
                    tuple(self._confine_criterion(principal, c) for c in b) for b in crit.branches
                )
            )
        return crit

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

    def _body(
        self, resource: Any, resource_type: str, uow: UnitOfWork | None = None
    ) -> dict[str, Any]:
        """The checked body; a channel's own mapping output (``uow.validate`` off) is trusted to
        be a sensible depth."""
        if not isinstance(resource, dict):
            raise InvalidResource.at("The body must be a JSON object (a FHIR resource)")
        if uow is None or uow.validate:
            check_depth(resource)
        actual = resource.get("resourceType")
        if actual != resource_type:
            raise InvalidResource.at(
                f"resourceType is {actual!r} but the request is for {resource_type}",
                f"{resource_type}.resourceType",
            )
        return resource

    def conditional_matches(
        self,
        uow: UnitOfWork,
        resource_type: str,
        criteria: str,
        what: str,
        *,
        principal: Principal | None = None,
        access: Access | None = None,
    ) -> list[str]:
        """Ids matching a conditional interaction's criteria (http.html#cond-update); with
        ``principal`` and its ``access``, only among the resources it may see."""
        params = parse_qsl(criteria.lstrip("?"), keep_blank_values=True)
        if not params:
            raise InvalidRequest.at(f"{what} needs search criteria")
        query = self.parse_query(resource_type, params, strict=True)
        query = SearchQuery(resource_type, query.criteria, count=2, total="none")
        if principal is not None and access is not None:
            query = self.confine(principal, query, access)
        return [rid for _, rid in uow.tx.search(query).matches]

    def _resolve_references(
        self, uow: UnitOfWork, resource: dict[str, Any], principal: Principal | None = None
    ) -> None:
        """Resolve ``urn:uuid:`` and conditional references (among what ``principal`` may
        search); queue local ones for integrity."""
        rtype = str(resource["resourceType"])
        for holder, place in iter_objects(resource):
            if is_attachment(holder) and holder["url"] in uow.urn_map:
                # An Attachment pointing to a Binary of the same Bundle by its fullUrl gets its
                # id too (http.html#trules; IHE MHD ITI-65 sends DocumentReference.content.
                # attachment.url so).
                holder["url"] = uow.urn_map[holder["url"]]
            if not isinstance(holder.get("reference"), str):
                continue
            location = location_of(rtype, place)
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
                access = None
                if principal is not None:
                    access = self.check(principal, "search", target_type)
                ids = self.conditional_matches(
                    uow,
                    target_type,
                    criteria,
                    "A conditional reference",
                    principal=principal,
                    access=access,
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
            if current is None or current.deleted or not self._may_reference(uow, rtype, rid):
                raise InvalidRequest.at(
                    f"Resource {rtype}/{rid} referenced at {location} does not exist", location
                )
            checked.add((rtype, rid))
        uow.pending.clear()

    def _may_reference(self, uow: UnitOfWork, resource_type: str, rid: str) -> bool:
        """A restricted writer's reference to what it may not read is answered as one to a
        missing resource, so a write cannot probe another patient's ids."""
        writer = uow.writer
        if writer is None or (resource_type, rid) in uow.written:
            return True
        if resource_type == "Patient" and rid == writer.patient:
            return True
        try:
            access = self.policy.check(writer, "read", resource_type)
        except Forbidden:
            return writer.patient is None  # a patient-confined writer probes nothing
        return not access.restricted or self.visible(access, rid, uow)

    def _put(
        self,
        uow: UnitOfWork,
        resource_type: str,
        rid: str,
        resource: dict[str, Any],
        expected_version: int | None,
        principal: Principal | None = None,
    ) -> StoredResource:
        resource["id"] = rid
        if principal is not None:
            uow.writer = principal
        self._resolve_references(uow, resource, principal)
        if uow.validate:
            validate_resource(resource, resource_type)
            check_not_reserved(resource)
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
        """read (http.html#read): 404 if unknown or not visible to ``principal``, 410 if
        deleted."""
        access = self.check(principal, "read", resource_type)
        self._require_visible(access, rid)
        return self._for_reader(principal, [self._current(resource_type, rid)])[0]

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
        """vread (http.html#vread); a restricted principal sees the versions of the resources it
        may read."""
        access = self.check(principal, "vread", resource_type)
        valid = _VERSION.fullmatch(vid) is not None
        if access.restricted and valid and not self.visible(access, rid):
            valid = False
        stored = self.repository.vread(resource_type, rid, int(vid)) if valid else None
        if stored is None:
            raise NotFound(f"{resource_type}/{rid}/_history/{vid} is not known")
        if stored.deleted:
            raise Gone(f"{resource_type}/{rid}/_history/{vid} is a deletion")
        return self._for_reader(principal, [stored])[0]

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
        """create (http.html#create), conditional with ``If-None-Exist`` (http.html#ccreate);
        under a restricted access the new resource must be within it."""
        access = self.check(principal, "create", resource_type)
        body = self._body(resource, resource_type, uow)

        def work(u: UnitOfWork) -> WriteResult:
            if if_none_exist is not None:
                ids = self.conditional_matches(
                    u,
                    resource_type,
                    if_none_exist,
                    "If-None-Exist",
                    principal=principal,
                    access=access,
                )
                if len(ids) > 1:
                    raise PreconditionFailed(
                        f"If-None-Exist matched {len(ids)} {resource_type} resources"
                    )
                if ids:
                    existing = u.tx.read(resource_type, ids[0])
                    assert existing is not None
                    return WriteResult(existing, created=False)
            if new_id is not None and access.restricted and u.tx.read(resource_type, new_id):
                self._require_visible(access, new_id, u)
            rid = new_id or str(uuid.uuid4())
            stored = self._put(u, resource_type, rid, body, None, principal)
            self._require_within(access, rid, u)
            return WriteResult(stored, created=True)

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
        updates (http.html#concurrency). Under a restricted access only a visible resource may
        be updated (404 otherwise: no update-as-create, which would tell a hidden id from a free
        one) and it must stay within the access."""
        access = self.check(principal, "update", resource_type)
        body = self._body(resource, resource_type, uow)
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
            self._require_visible(access, rid, u)
            current = u.tx.read(resource_type, rid)
            created = current is None or current.deleted
            if expected is not None and (current is None or current.version != expected):
                have = "none" if current is None else current.version
                raise PreconditionFailed(
                    f"Version conflict: If-Match is {expected}, current version is {have}"
                )
            stored = self._put(u, resource_type, rid, body, expected, principal)
            self._require_within(access, rid, u)
            return WriteResult(stored, created)

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
        """Conditional update (http.html#cond-update): 0 matches create, 1 updates, more is 412.
        Only the resources ``principal`` may see are matched."""
        access = self.check(principal, "update", resource_type)
        body = self._body(resource, resource_type)

        def work(u: UnitOfWork) -> WriteResult:
            ids = self.conditional_matches(
                u,
                resource_type,
                criteria,
                "A conditional update",
                principal=principal,
                access=access,
            )
            if len(ids) > 1:
                raise PreconditionFailed(
                    f"The criteria matched {len(ids)} {resource_type} resources"
                )
            if not ids:
                if access.restricted and "id" in body:  # no update-as-create (see update)
                    raise NotFound(f"{resource_type}/{body['id']} is not known")
                rid = str(body.get("id") or uuid.uuid4())
                stored = self._put(u, resource_type, rid, body, None, principal)
                self._require_within(access, rid, u)
                return WriteResult(stored, created=True)
            if "id" in body and body["id"] != ids[0]:
                raise InvalidResource.at(
                    f"The resource id {body['id']!r} differs from the matched {ids[0]!r}",
                    f"{resource_type}.id",
                )
            stored = self._put(u, resource_type, ids[0], body, None, principal)
            self._require_within(access, ids[0], u)
            return WriteResult(stored, created=False)

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
        """patch with JSON Patch, RFC 6902 (http.html#patch); as update for restricted access."""
        access = self.check(principal, "patch", resource_type)
        if not isinstance(operations, list) or not all(isinstance(o, dict) for o in operations):
            raise InvalidRequest.at("A JSON Patch document is an array of operations")
        check_depth(operations)
        expected = parse_etag(if_match)

        def work(u: UnitOfWork) -> WriteResult:
            self._require_visible(access, rid, u)
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
            stored = self._put(u, resource_type, rid, body, current.version, principal)
            self._require_within(access, rid, u)
            return WriteResult(stored, False)

        return work(uow) if uow else self.run(work)

    def delete(
        self, principal: Principal, resource_type: str, rid: str, *, uow: UnitOfWork | None = None
    ) -> StoredResource | None:
        """delete (http.html#delete): deleting an unknown or deleted resource also succeeds, and
        so does, without deleting anything, one that ``principal`` may not see."""
        access = self.check(principal, "delete", resource_type)

        def work(u: UnitOfWork) -> StoredResource | None:
            if access.restricted and not self.visible(access, rid, u):
                return None
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
        """Conditional delete, single-match mode (http.html#cond-delete): several matches is 412.
        Only the resources ``principal`` may see are matched."""
        access = self.check(principal, "delete", resource_type)

        def work(u: UnitOfWork) -> StoredResource | None:
            ids = self.conditional_matches(
                u,
                resource_type,
                criteria,
                "A conditional delete",
                principal=principal,
                access=access,
            )
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
        """search (http.html#search, search.html) -> a ``searchset`` Bundle, confined to what
        ``principal`` may see (``confine``). A system-level search needs unrestricted search
        access to every type: a restriction is per type, so search each type instead."""
        if resource_type is not None:
            access = self.check(principal, "search", resource_type)
        else:
            for t in SERVED_TYPES:
                if self.policy.check(principal, "search", t).restricted:
                    raise Forbidden(
                        f"Not permitted: a system-level search with restricted access to {t};"
                        " search each resource type instead"
                    )
            access = Access("")
        query = self.parse_query(resource_type, params, strict=strict)
        if query.summary == "count":
            query = SearchQuery(
                query.resource_type, query.criteria, count=0, total="accurate", summary="count"
            )
        query = self.confine(principal, query, access)
        result = self.search_index.search(query)
        matches = self._for_reader(principal, self.repository.read_many(result.matches))
        included = self._for_reader(
            principal,
            [
                r
                for r in self.repository.read_many(result.included)
                if self._may_read(principal, r.resource_type)
            ],
        )
        path = resource_type or ""
        return bundles.searchset(
            self.options.base_url, path, params, query, matches, included, result.total
        )

    def _for_reader(
        self, principal: Principal, stored: list[StoredResource]
    ) -> list[StoredResource]:
        """What ``principal`` gets to see of each resource: audit events read under a
        ``patient/`` scope show no other patient (``redact_audit_event``)."""
        if not any(r.resource_type == "AuditEvent" and r.data for r in stored):
            return stored
        try:
            rules = self.policy.check(principal, "read", "AuditEvent").rules
        except Forbidden:
            return [r for r in stored if r.resource_type != "AuditEvent"]
        if rules is None or any(rule.patient is None for rule in rules):
            return stored
        own = {f"Patient/{rule.patient}" for rule in rules}
        return [
            replace(r, data=redact_audit_event(r.data, own))
            if r.resource_type == "AuditEvent" and r.data
            else r
            for r in stored
        ]

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
        """history at instance, type or system level (http.html#history). Under a restricted
        access an instance's history needs the resource visible (404 otherwise), and the type
        and system histories are those of the visible resources (of the types it may see)."""
        if resource_type is not None:
            accesses = [self.check(principal, "history", resource_type)]
        else:
            accesses, refused = [], None
            for t in SERVED_TYPES:
                try:
                    accesses.append(self.policy.check(principal, "history", t))
                except Forbidden as exc:
                    refused = exc
            # a restricted principal's system history is that of what it may see; otherwise
            # the system history needs every type
            if refused is not None and not any(a.restricted for a in accesses):
                raise refused
        args = bundles.HistoryArgs.parse(params, self.options.max_page_size)
        if rid is not None and resource_type is not None:
            self._require_visible(accesses[0], rid)
            if not self.repository.read(resource_type, rid):
                raise NotFound(f"{resource_type}/{rid} is not known")
        if rid is None and any(a.restricted for a in accesses):
            page = self._confined_history(accesses, args)
        else:
            page = self.repository.history(
                resource_type,
                rid,
                since=args.since,
                at=args.at,
                count=args.count,
                offset=args.offset,
            )
        path = "/".join(p for p in (resource_type, rid, "_history") if p)
        page = HistoryPage(self._for_reader(principal, page.entries), page.total)
        return bundles.history(self.options.base_url, path, args, page)

    def _confined_history(
        self, accesses: Sequence[Access], args: bundles.HistoryArgs
    ) -> HistoryPage:
        """The type or system history of the resources each access lets one see, merged newest
        first (by lastUpdated) and paged; at most ``MAX_CONFINED_HISTORY`` resources."""
        keys: list[tuple[str, str]] = []
        for access in accesses:
            crit = self.restriction(access)
            query = SearchQuery(
                access.resource_type,
                (crit,) if crit is not None else (),
                count=MAX_CONFINED_HISTORY + 1,
                total="none",
            )
            keys += self.search_index.search(query).matches
            if len(keys) > MAX_CONFINED_HISTORY:
                raise Forbidden(
                    f"History under a restricted access covers at most {MAX_CONFINED_HISTORY}"
                    " resources; search, then ask each resource's history"
                )
        versions: list[StoredResource] = []
        for rtype, rid in keys:
            versions += self.repository.history(
                rtype, rid, since=args.since, at=args.at, count=bundles.MAX_OFFSET, offset=0
            ).entries
        versions.sort(
            key=lambda v: (v.last_updated, v.resource_type, v.id, v.version), reverse=True
        )
        page = versions[args.offset : args.offset + args.count]
        return HistoryPage(entries=page, total=len(versions))
