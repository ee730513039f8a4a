"""ITI-18 Registry Stored Query (IHE ITI TF-2 3.18) answered from the FHIR store, searched as the
caller (so its scopes apply): DocumentEntries are ``DocumentReference``s, SubmissionSets are MHD
SubmissionSet ``List``s (``mappings/xds_to_documentreference``), and the Associations are derived
from them: a ``HasMember`` from a List to each of its entries, an ``RPLC`` (XFRM, APND, signs)
from each ``DocumentReference.relatesTo``. A document that arrived over MHD (ITI-65) is found here
like one that arrived over ITI-41.

Stored queries served (ITI TF-2 3.18.4.1.2.3.7): FindDocuments (.7.1), FindSubmissionSets (.7.2),
GetAll (.7.4), GetDocuments (.7.5), GetAssociations (.7.7), GetSubmissionSetAndContents
(.7.10). Folders are not supported, so no Folder is ever returned. Slot values follow
3.18.4.1.2.3.5: quoted strings, ``('a','b')`` lists; values are ORed, except that the Value
elements of an AND/OR parameter (``$XDSDocumentEntryEventCodeList``,
``$XDSDocumentEntryConfidentialityCode``) are ANDed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from lxml import etree

from adapters.xds._ebrim import (
    STABLE_ENTRY,
    association_to_xml,
    entry_to_xml,
    object_ref,
    submission_set_to_xml,
)
from adapters.xds._errors import XdsError, registry_response
from adapters.xds._identity import XdsIdentity
from adapters.xds._repository import unique_id_token
from adapters.xds._soap import SoapFault, SoapRequest
from hub.auth import Principal
from hub.channels import ChannelContext
from hub.errors import NotFound
from mappings.xds_model import (
    APPROVED,
    DEPRECATED,
    Association,
    AssociationType,
    Author,
    Code,
    DocumentEntry,
    SubmissionSet,
)
from mappings.xds_to_documentreference import (
    LIST_TYPES,
    cx_to_identifier,
    documentreference_to_documententry,
    identifier_to_cx,
    list_to_submissionset,
    scheme_to_system,
)

QUERY = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
# the stored query ids (ITI TF-2 3.18.4.1.2.3.7.x)
FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
FIND_SUBMISSION_SETS = "urn:uuid:f26abbcb-ac74-4422-8a30-edb644bbc1a9"
GET_ALL = "urn:uuid:10b545ea-725c-446d-9b95-8aeb444eddf3"
GET_DOCUMENTS = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"
GET_ASSOCIATIONS = "urn:uuid:a7ae438b-4bc2-4642-93e9-be891f7bb155"
GET_SUBMISSION_SET_AND_CONTENTS = "urn:uuid:e8e3cb2c-e39c-46b9-99e4-c12f57260b83"
URI = "urn:ietf:rfc:3986"
SUBMISSION_SET_CODE = f"{LIST_TYPES}|submissionset"
# namespace of the ids of derived Associations: uuid5(source|type|target), the same every time
ASSOCIATION_IDS: Final = uuid.UUID("0b7e2a8c-3f61-4d0e-9a52-6c1d8e4f7b90")

_QUOTED = re.compile(r"'((?:[^']|'')*)'")
_STATUS = {APPROVED: "current", DEPRECATED: "superseded"}
# MHD DocumentReference.relatesTo.code <-> XDS document relationship (ITI TF-3 4.2.2.2)
_RELATIONS: dict[str, AssociationType] = {
    "replaces": "RPLC",
    "transforms": "XFRM",
    "appends": "APND",
    "signs": "signs",
}


@dataclass(frozen=True)
class _Rules:
    """What a stored query accepts (ITI TF-2 3.18.4.1.2.3.7.x tables): ``required`` parameters,
    ``one_of`` pairs of which exactly one is required, ``single`` parameters taking one value."""

    required: tuple[str, ...] = ()
    one_of: tuple[tuple[str, str], ...] = ()
    single: tuple[str, ...] = ()


_ENTRY_TIMES = tuple(
    f"$XDSDocumentEntry{what}Time{end}"
    for what in ("Creation", "ServiceStart", "ServiceStop")
    for end in ("From", "To")
)
_RULES: Final[dict[str, _Rules]] = {
    FIND_DOCUMENTS: _Rules(
        required=("$XDSDocumentEntryPatientId", "$XDSDocumentEntryStatus"),
        single=("$XDSDocumentEntryPatientId", *_ENTRY_TIMES),
    ),
    FIND_SUBMISSION_SETS: _Rules(
        required=("$XDSSubmissionSetPatientId", "$XDSSubmissionSetStatus"),
        single=(
            "$XDSSubmissionSetPatientId",
            "$XDSSubmissionSetSubmissionTimeFrom",
            "$XDSSubmissionSetSubmissionTimeTo",
            "$XDSSubmissionSetAuthorPerson",
        ),
    ),
    # $XDSFolderStatus (required in .7.4) is accepted and not required: this registry has no
    # Folders for it to select
    GET_ALL: _Rules(
        required=("$patientId", "$XDSDocumentEntryStatus", "$XDSSubmissionSetStatus"),
        single=("$patientId",),
    ),
    GET_DOCUMENTS: _Rules(one_of=(("$XDSDocumentEntryEntryUUID", "$XDSDocumentEntryUniqueId"),)),
    GET_ASSOCIATIONS: _Rules(required=("$uuid",)),
    GET_SUBMISSION_SET_AND_CONTENTS: _Rules(
        one_of=(("$XDSSubmissionSetEntryUUID", "$XDSSubmissionSetUniqueId"),),
        single=("$XDSSubmissionSetEntryUUID", "$XDSSubmissionSetUniqueId"),
    ),
}
# code parameter -> DocumentReference search parameter (MHD ITI-67 <-> ITI-18 mapping)
_CODE_PARAMS = {
    "$XDSDocumentEntryClassCode": "category",
    "$XDSDocumentEntryTypeCode": "type",
    "$XDSDocumentEntryPracticeSettingCode": "setting",
    "$XDSDocumentEntryHealthcareFacilityTypeCode": "facility",
    "$XDSDocumentEntryEventCodeList": "event",
    "$XDSDocumentEntryConfidentialityCode": "security-label",
    "$XDSDocumentEntryFormatCode": "format",
}
# the parameters with AND/OR semantics (ITI TF-2 3.18.4.1.2.3.5): each Value element ANDed
_AND_OR = frozenset({"$XDSDocumentEntryEventCodeList", "$XDSDocumentEntryConfidentialityCode"})


@dataclass(frozen=True)
class Query:
    """A parsed AdhocQueryRequest: the stored query id, LeafClass or ObjectRef, the slots (each
    a list of Value element texts)."""

    query_id: str
    leaf_class: bool
    slots: dict[str, list[str]]

    def values(self, name: str) -> list[list[str]]:
        """Each Value element of slot ``name`` as its list of (unquoted) strings."""
        return [_strings(v) for v in self.slots.get(name, [])]

    def all(self, name: str) -> list[str]:
        """Every value of slot ``name``, whichever Value element holds it (ORed)."""
        return [s for group in self.values(name) for s in group]

    def one(self, name: str) -> str:
        """The value of a single-valued slot (checked by ``check``), or ``""``."""
        return next(iter(self.all(name)), "")

    def check(self) -> None:
        """The query is served and its parameters are as ITI TF-2 3.18.4.1.3 asks:
        ``XDSUnknownStoredQuery``, ``XDSStoredQueryMissingParam``, ``XDSStoredQueryParamNumber``."""
        rules = _RULES.get(self.query_id)
        if rules is None:
            raise XdsError(
                XdsError.UNKNOWN_STORED_QUERY,
                f"Stored query {self.query_id} is not served",
                self.query_id,
            )
        for name in rules.required:
            if not self.all(name):
                raise XdsError(XdsError.STORED_QUERY_MISSING_PARAM, f"{name} is required", name)
        for a, b in rules.one_of:
            given = [n for n in (a, b) if self.all(n)]
            if not given:
                raise XdsError(XdsError.STORED_QUERY_MISSING_PARAM, f"{a} or {b} is required", a)
            if len(given) == 2:
                raise XdsError(
                    XdsError.STORED_QUERY_PARAM_NUMBER, f"{a} and {b} exclude each other", a
                )
        for name in rules.single:
            if len(self.all(name)) > 1:
                raise XdsError(
                    XdsError.STORED_QUERY_PARAM_NUMBER, f"{name} takes a single value", name
                )


def _strings(value: str) -> list[str]:
    """``'a'`` or ``('a','b')`` (numbers may be unquoted) -> the strings."""
    text = value.strip()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    quoted = [m.replace("''", "'") for m in _QUOTED.findall(text)]
    if quoted:
        return quoted
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_query(body: etree._Element) -> Query:
    if body.tag != f"{{{QUERY}}}AdhocQueryRequest":
        raise SoapFault(f"ITI-18 expects query:AdhocQueryRequest, not {body.tag}")
    option = body.find(f"{{{QUERY}}}ResponseOption")
    leaf = option is None or option.get("returnType", "LeafClass") == "LeafClass"
    query = body.find(f"{{{RIM}}}AdhocQuery")
    if query is None:
        raise SoapFault("AdhocQueryRequest has no rim:AdhocQuery")
    slots: dict[str, list[str]] = {}
    for slot in query.findall(f"{{{RIM}}}Slot"):
        values = [v.text or "" for v in slot.findall(f"{{{RIM}}}ValueList/{{{RIM}}}Value")]
        slots.setdefault(slot.get("name", ""), []).extend(values)
    return Query(query.get("id", ""), leaf, slots)


# ------------------------------------------------------------------------------ matching rules


def _split_code(text: str) -> tuple[str, str]:
    """An XDS code query value ``code^^scheme`` -> (FHIR system, code)."""
    code, _, scheme = text.partition("^^")
    if not code or not scheme:
        raise XdsError(XdsError.REGISTRY, f"{text!r} is not code^^codingScheme", text)
    return scheme_to_system(scheme), code


def _token(text: str) -> str:
    system, code = _split_code(text)
    return f"{system}|{code}"


def _same_code(code: Code, text: str) -> bool:
    return (scheme_to_system(code.scheme), code.code) == _split_code(text)


def _within(value: str, lower: str, upper: str) -> bool:
    """A time range (ITI TF-2 3.18.4.1.2.3.4): From inclusive, To exclusive, compared as DTM
    strings at the query value's precision; a missing value is outside any range."""
    for bound, is_lower in ((lower, True), (upper, False)):
        if not bound:
            continue
        if not value:
            return False
        head = value[: len(bound)].ljust(len(bound), "0")
        if (is_lower and head < bound) or (not is_lower and head >= bound):
            return False
    return True


def _in_times(query: Query, prefix: str, times: dict[str, str]) -> bool:
    """Every ``<prefix><what>From``/``To`` pair of the query holds for ``times[what]``."""
    return all(
        _within(value, query.one(f"{prefix}{what}From"), query.one(f"{prefix}{what}To"))
        for what, value in times.items()
    )


def _like(patterns: list[str], authors: Iterable[Author]) -> bool:
    """An authorPerson parameter (ITI TF-2 3.18.4.1.2.3.7.1, .7.2): SQL LIKE (``%`` any string,
    ``_`` one character, case-sensitive) against any author's XCN; the values ORed; no values:
    no condition."""
    if not patterns:
        return True
    people = [a.person for a in authors if a.person]
    for pattern in patterns:
        parts = (".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
        regex = re.compile("".join(parts), re.DOTALL)
        if any(regex.fullmatch(p) for p in people):
            return True
    return False


def _association(kind: AssociationType, source: str, target: str) -> Association:
    """A derived Association; its id is uuid5 of source, type and target, so a query answers
    the same ids each time (ebRIM requires ids, FHIR keeps no Association)."""
    rid = uuid.uuid5(ASSOCIATION_IDS, f"{source}|{kind}|{target}")
    status = "Original" if kind == "HasMember" else ""  # ITI TF-3 4.2.2.1.2
    return Association(f"urn:uuid:{rid}", kind, source, target, submission_set_status=status)


def _entry_uuid(resource: dict[str, Any]) -> str:
    """The entryUUID of a DocumentReference or List: its ``urn:uuid:`` identifier (system
    urn:ietf:rfc:3986), else one made from the resource id."""
    return next(
        (str(i["value"]) for i in resource.get("identifier", [])
         if i.get("system") == URI and str(i.get("value", "")).startswith("urn:uuid:")),
        f"urn:uuid:{resource['id']}",
    )  # fmt: skip


# ------------------------------------------------------------------------------ results


@dataclass
class _Result:
    """What a stored query returns: sets, entries and associations, each once, in order."""

    sets: dict[str, SubmissionSet] = field(default_factory=dict)
    entries: dict[str, DocumentEntry] = field(default_factory=dict)
    associations: dict[str, Association] = field(default_factory=dict)

    def add(self, objects: Iterable[SubmissionSet | DocumentEntry | Association]) -> _Result:
        for o in objects:
            if isinstance(o, SubmissionSet):
                self.sets[o.entry_uuid] = o
            elif isinstance(o, DocumentEntry):
                self.entries[o.entry_uuid] = o
            else:
                self.associations[o.entry_uuid] = o
        return self

    def to_xml(self, leaf_class: bool) -> list[etree._Element]:
        """LeafClass objects or ObjectRefs (ITI TF-2 3.18.4.1.2.3.6). Full metadata of more than
        one patient is ``XDSResultNotSinglePatient`` (ITI TF-2 3.18.4.1.3); ObjectRefs disclose
        no patient and are not restricted."""
        if not leaf_class:
            ids = [*self.sets, *self.entries, *self.associations]
            return [object_ref(i) for i in ids]
        patients = {s.patient_id for s in self.sets.values()}
        patients |= {e.patient_id for e in self.entries.values()}
        if len(patients) > 1:
            raise XdsError(
                XdsError.RESULT_NOT_SINGLE_PATIENT,
                f"the result holds metadata of {len(patients)} patients",
            )
        return [
            *map(submission_set_to_xml, self.sets.values()),
            *map(entry_to_xml, self.entries.values()),
            *map(association_to_xml, self.associations.values()),
        ]


class Registry:
    """ITI-18 over one ``ChannelContext``."""

    def __init__(self, context: ChannelContext, identity: XdsIdentity) -> None:
        self.context = context
        self.identity = identity

    def stored_query(self, principal: Principal, request: SoapRequest) -> etree._Element:
        """The ``query:AdhocQueryResponse`` (ITI TF-2 3.18.4.1.3)."""
        query = parse_query(request.body)
        response = etree.Element(
            f"{{{QUERY}}}AdhocQueryResponse", nsmap={"query": QUERY, "rim": RIM}
        )
        try:
            query.check()
            found = _Run(self, principal).answer(query).to_xml(query.leaf_class)
        except XdsError as exc:
            response.set("status", FAILURE)
            response.extend(list(registry_response(exc.all(), status="Failure")))
            return response
        response.set("status", SUCCESS)
        etree.SubElement(response, f"{{{RIM}}}RegistryObjectList").extend(found)
        return response


class _Run:
    """One stored query as one principal: the FHIR searches, and the resources met so far (by
    ``Type/id``) so that references between them resolve without reading twice."""

    def __init__(self, registry: Registry, principal: Principal) -> None:
        self.context = registry.context
        self.identity = registry.identity
        self.principal = principal
        self.seen: dict[str, dict[str, Any]] = {}
        self.patients: dict[str, str] = {}  # Patient/<id> -> CX
        self.domain = ""  # the affinity domain's identifier system, when the query names it

    def answer(self, query: Query) -> _Result:
        handlers: dict[str, Callable[[Query], _Result]] = {
            FIND_DOCUMENTS: self.find_documents,
            FIND_SUBMISSION_SETS: self.find_submission_sets,
            GET_ALL: self.get_all,
            GET_DOCUMENTS: self.get_documents,
            GET_ASSOCIATIONS: self.get_associations,
            GET_SUBMISSION_SET_AND_CONTENTS: self.get_submission_set_and_contents,
        }
        return handlers[query.query_id](query)

    # -------------------------------------------------------------------- the stored queries

    def find_documents(self, query: Query) -> _Result:
        """FindDocuments (ITI TF-2 3.18.4.1.2.3.7.1)."""
        params = self._patient("$XDSDocumentEntryPatientId", query)
        docs = self._documents(query, [*params, *self._statuses(query)])
        entries = [
            e
            for e in map(self._entry, docs)
            if _in_times(query, "$XDSDocumentEntry", {
                "CreationTime": e.creation_time,
                "ServiceStartTime": e.service_start,
                "ServiceStopTime": e.service_stop,
            })
            and _like(query.all("$XDSDocumentEntryAuthorPerson"), e.authors)
        ]  # fmt: skip
        return _Result().add(entries)

    def find_submission_sets(self, query: Query) -> _Result:
        """FindSubmissionSets (ITI TF-2 3.18.4.1.2.3.7.2)."""
        params = self._patient("$XDSSubmissionSetPatientId", query)
        sets = self._sets(params)
        statuses = set(query.all("$XDSSubmissionSetStatus"))
        sources = query.all("$XDSSubmissionSetSourceId")
        content_types = query.all("$XDSSubmissionSetContentType")
        found = [
            s
            for s in sets
            if s.status in statuses
            and (not sources or s.source_id in sources)
            and (not content_types or any(_same_code(s.content_type, c) for c in content_types))
            and _in_times(query, "$XDSSubmissionSet", {"SubmissionTime": s.submission_time})
            and _like(query.all("$XDSSubmissionSetAuthorPerson"), s.authors)
        ]
        return _Result().add(found)

    def get_all(self, query: Query) -> _Result:
        """GetAll (ITI TF-2 3.18.4.1.2.3.7.4): the patient's entries and sets of the statuses
        asked, and the associations between the objects returned."""
        params = self._patient("$patientId", query)
        entries = [
            self._entry(d) for d in self._documents(query, [*params, *self._statuses(query)])
        ]
        statuses = set(query.all("$XDSSubmissionSetStatus"))
        sets = [s for s in self._sets(params) if s.status in statuses]
        result = _Result().add([*sets, *entries])
        links = self._links(list(result.entries), list(result.sets))
        return result.add(
            a for a in links if {a.source, a.target} <= {*result.entries, *result.sets}
        )

    def get_documents(self, query: Query) -> _Result:
        """GetDocuments (ITI TF-2 3.18.4.1.2.3.7.5), by entryUUID or by uniqueId."""
        uuids = query.all("$XDSDocumentEntryEntryUUID")
        unique_ids = query.all("$XDSDocumentEntryUniqueId")
        tokens = [f"{URI}|{u}" for u in uuids] or [unique_id_token(u) for u in unique_ids]
        docs = self._search("DocumentReference", [("identifier", ",".join(tokens))])
        return _Result().add(map(self._entry, docs))

    def get_associations(self, query: Query) -> _Result:
        """GetAssociations (ITI TF-2 3.18.4.1.2.3.7.7): every association whose source or
        target is one of the ``$uuid``s."""
        uuids = set(query.all("$uuid"))
        links = self._links(sorted(uuids), sorted(uuids))
        return _Result().add(a for a in links if a.source in uuids or a.target in uuids)

    def get_submission_set_and_contents(self, query: Query) -> _Result:
        """GetSubmissionSetAndContents (ITI TF-2 3.18.4.1.2.3.7.10): the set, its entries (those
        of the format, confidentiality and type asked) and the HasMembers to them."""
        uuid_ = query.one("$XDSSubmissionSetEntryUUID")
        token = (
            f"{URI}|{uuid_}" if uuid_ else f"{URI}|urn:oid:{query.one('$XDSSubmissionSetUniqueId')}"
        )
        lists = self._search("List", [("code", SUBMISSION_SET_CODE), ("identifier", token)])
        if not lists:
            return _Result()
        ss = self._set(lists[0])
        members = [str(i.get("item", {}).get("reference", "")) for i in lists[0].get("entry", [])]
        ids = [m.partition("/")[2] for m in members if m.startswith("DocumentReference/")]
        entries = (
            [self._entry(d) for d in self._documents(query, [("_id", ",".join(ids))])]
            if ids
            else []
        )
        return _Result().add(
            [
                ss,
                *entries,
                *(_association("HasMember", ss.entry_uuid, e.entry_uuid) for e in entries),
            ]
        )

    # -------------------------------------------------------------------- parameters -> search

    def _patient(self, slot: str, query: Query) -> list[tuple[str, str]]:
        """The ``patient.identifier`` search of an XDS patient id (ITI TF-3 4.2.3.2.16)."""
        cx = query.one(slot)
        try:
            identifier = cx_to_identifier(cx)
        except ValueError as exc:
            raise XdsError(XdsError.REGISTRY, str(exc), slot) from exc
        self.domain = str(identifier["system"])
        return [("patient.identifier", f"{identifier['system']}|{identifier['value']}")]

    @staticmethod
    def _statuses(query: Query) -> list[tuple[str, str]]:
        """``$XDSDocumentEntryStatus`` as a ``status`` search (no status known: ``_id`` of
        nothing, an empty result)."""
        wanted = sorted({_STATUS[s] for s in query.all("$XDSDocumentEntryStatus") if s in _STATUS})
        return [("status", ",".join(wanted))] if wanted else [("_id", "none")]

    def _documents(self, query: Query, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """The DocumentReferences matching ``params`` and the query's DocumentEntry code and
        objectType parameters (ITI TF-2 3.18.4.1.2.3.7.1, .7.4, .7.10)."""
        types = query.all("$XDSDocumentEntryType")
        if types and STABLE_ENTRY not in types:
            return []  # only stable entries are registered here; no On-Demand ones
        params = list(params)
        for slot, param in _CODE_PARAMS.items():
            groups = query.values(slot) if slot in _AND_OR else [query.all(slot)]
            params += [(param, ",".join(map(_token, g))) for g in groups if g]
        return self._search("DocumentReference", params)

    def _sets(self, params: list[tuple[str, str]]) -> list[SubmissionSet]:
        return [
            self._set(r) for r in self._search("List", [("code", SUBMISSION_SET_CODE), *params])
        ]

    # -------------------------------------------------------------------- associations

    def _links(self, entry_uuids: list[str], set_uuids: list[str]) -> list[Association]:
        """Every association touching the given entries or sets: HasMember from the sets (and
        from the Lists holding the entries), RPLC/XFRM/APND/signs from and to the entries."""
        docs = self._by_identifier("DocumentReference", entry_uuids)
        lists = self._by_identifier("List", set_uuids, [("code", SUBMISSION_SET_CODE)])
        refs = ",".join(f"DocumentReference/{d['id']}" for d in docs)
        if refs:
            lists += self._search("List", [("code", SUBMISSION_SET_CODE), ("item", refs)])
            docs += self._search("DocumentReference", [("relatesto", refs)])
        out: list[Association] = []
        for lst in lists:
            source = _entry_uuid(lst)
            for item in lst.get("entry", []):
                target = self._uuid_of(str(item.get("item", {}).get("reference", "")))
                if target:
                    out.append(_association("HasMember", source, target))
        for doc in docs:
            for relation in doc.get("relatesTo", []):
                kind = _RELATIONS.get(str(relation.get("code", "")))
                target = self._uuid_of(str(relation.get("target", {}).get("reference", "")))
                if kind and target:
                    out.append(_association(kind, _entry_uuid(doc), target))
        return out

    def _uuid_of(self, reference: str) -> str:
        """The entryUUID of a ``DocumentReference/<id>`` (read once), ``""`` if not visible."""
        rtype, _, rid = reference.partition("/")
        if rtype != "DocumentReference" or not rid:
            return ""
        if reference not in self.seen:
            try:
                stored = self.context.service.read(self.principal, rtype, rid)
            except NotFound:
                return ""
            assert stored.data is not None
            self.seen[reference] = orjson.loads(stored.data)
        return _entry_uuid(self.seen[reference])

    # -------------------------------------------------------------------- FHIR access

    def _search(self, rtype: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        params = [*params, ("_count", str(self.context.settings.max_page_size))]
        bundle = self.context.service.search(self.principal, rtype, params, strict=True)
        if any(link.get("relation") == "next" for link in bundle.get("link", [])):
            limit = self.context.settings.max_page_size
            raise XdsError(  # ITI TF-2 3.18.4.1.3: the registry does not answer part of a result
                XdsError.TOO_MANY_RESULTS, f"More than {limit} {rtype} match; narrow the query"
            )
        found = [orjson.loads(orjson.dumps(e["resource"])) for e in bundle.get("entry", [])]
        self.seen.update((f"{rtype}/{r['id']}", r) for r in found)
        return found

    def _by_identifier(
        self, rtype: str, uuids: list[str], extra: list[tuple[str, str]] | None = None
    ) -> list[dict[str, Any]]:
        if not uuids:
            return []
        tokens = ",".join(f"{URI}|{u}" for u in uuids)
        return self._search(rtype, [*(extra or []), ("identifier", tokens)])

    def _patient_cx(self, resource: dict[str, Any]) -> str:
        """The affinity-domain id (an ``urn:oid:`` identifier, as CX) of a resource's subject."""
        reference = str(resource.get("subject", {}).get("reference", ""))
        if reference not in self.patients:
            patient = self.context.service.read(
                self.principal, "Patient", reference.rpartition("/")[2]
            )
            assert patient.data is not None
            oids = [
                i
                for i in orjson.loads(patient.data).get("identifier", [])
                if str(i.get("system", "")).startswith("urn:oid:")
            ]
            oids.sort(key=lambda i: i.get("system") != self.domain)  # the query's domain first
            self.patients[reference] = identifier_to_cx(oids[0]) if oids else ""
        return self.patients[reference]

    def _entry(self, doc: dict[str, Any]) -> DocumentEntry:
        entry_uuid = _entry_uuid(doc)
        try:
            return documentreference_to_documententry(
                doc,
                patient_id=self._patient_cx(doc),
                repository_unique_id=self.identity.repository_unique_id,
                entry_uuid=entry_uuid,
            )
        except ValueError as exc:
            raise XdsError(
                XdsError.REGISTRY,
                f"DocumentReference/{doc['id']} lacks XDS metadata: {exc}",
                entry_uuid,
            ) from exc

    def _set(self, lst: dict[str, Any]) -> SubmissionSet:
        entry_uuid = _entry_uuid(lst)
        try:
            return list_to_submissionset(
                lst, patient_id=self._patient_cx(lst), entry_uuid=entry_uuid
            )
        except ValueError as exc:
            raise XdsError(
                XdsError.REGISTRY, f"List/{lst['id']} lacks XDS metadata: {exc}", entry_uuid
            ) from exc


__all__ = [
    "FIND_DOCUMENTS",
    "FIND_SUBMISSION_SETS",
    "GET_ALL",
    "GET_ASSOCIATIONS",
    "GET_DOCUMENTS",
    "GET_SUBMISSION_SET_AND_CONTENTS",
    "Registry",
    "parse_query",
]
