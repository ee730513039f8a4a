"""ITI-18 Registry Stored Query (IHE ITI TF-2 3.18) answered from the FHIR store: the query's
parameters become a ``DocumentReference`` search (as the caller, so its scopes apply), each match
is mapped back to an XDSDocumentEntry (``mappings/xds_to_documentreference``) and returned as
LeafClass ``ExtrinsicObject``s or ``ObjectRef``s. A document that arrived over MHD (ITI-65) is
found here like one that arrived over ITI-41.

Stored queries served: FindDocuments and GetDocuments (ITI TF-2 3.18.4.1.2.3.7.1, .7.5). Slot
values follow 3.18.4.1.2.3.5: quoted strings, ``('a','b')`` lists ORed within a Value element,
several Value elements of a code parameter ANDed (``$XDSDocumentEntryEventCodeList``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from lxml import etree

from adapters.xds._ebrim import entry_to_xml, object_ref
from adapters.xds._errors import XdsError, registry_response
from adapters.xds._identity import XdsIdentity
from adapters.xds._repository import unique_id_token
from adapters.xds._soap import SoapFault, SoapRequest
from hub.auth import Principal
from hub.channels import ChannelContext
from mappings.xds_model import APPROVED, DEPRECATED, DocumentEntry
from mappings.xds_to_documentreference import (
    cx_to_identifier,
    documentreference_to_documententry,
    identifier_to_cx,
    scheme_to_system,
)

QUERY = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
GET_DOCUMENTS = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"
URI = "urn:ietf:rfc:3986"
_QUOTED = re.compile(r"'((?:[^']|'')*)'")
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
# time parameter -> (the entry's DTM it bounds, lower bound?)
_TIME_PARAMS: dict[str, tuple[Callable[[DocumentEntry], str], bool]] = {
    "$XDSDocumentEntryCreationTimeFrom": (lambda e: e.creation_time, True),
    "$XDSDocumentEntryCreationTimeTo": (lambda e: e.creation_time, False),
    "$XDSDocumentEntryServiceStartTimeFrom": (lambda e: e.service_start, True),
    "$XDSDocumentEntryServiceStartTimeTo": (lambda e: e.service_start, False),
    "$XDSDocumentEntryServiceStopTimeFrom": (lambda e: e.service_stop, True),
    "$XDSDocumentEntryServiceStopTimeTo": (lambda e: e.service_stop, False),
}
_STATUS = {APPROVED: "current", DEPRECATED: "superseded"}


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

    def required(self, name: str) -> list[str]:
        found = [s for group in self.values(name) for s in group]
        if not found:
            raise XdsError(XdsError.STORED_QUERY_MISSING_PARAM, f"{name} is required", name)
        return found


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


def _code_value(text: str) -> str:
    """An XDS code query value ``code^^scheme`` as a FHIR token ``system|code``."""
    code, _, scheme = text.partition("^^")
    if not code or not scheme:
        raise XdsError(XdsError.REGISTRY, f"{text!r} is not code^^codingScheme", text)
    return f"{scheme_to_system(scheme)}|{code}"


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
            entries = self._run(principal, query)
        except XdsError as exc:
            response.set("status", FAILURE)
            response.extend(list(registry_response(exc.all(), status="Failure")))
            return response
        response.set("status", SUCCESS)
        objects = etree.SubElement(response, f"{{{RIM}}}RegistryObjectList")
        for entry in entries:
            objects.append(
                entry_to_xml(entry) if query.leaf_class else object_ref(entry.entry_uuid)
            )
        return response

    def _run(self, principal: Principal, query: Query) -> list[DocumentEntry]:
        if query.query_id == FIND_DOCUMENTS:
            return self._find_documents(principal, query)
        if query.query_id == GET_DOCUMENTS:
            return self._get_documents(principal, query)
        raise XdsError(
            XdsError.UNKNOWN_STORED_QUERY,
            f"Stored query {query.query_id} is not served",
            query.query_id,
        )

    def _search(self, principal: Principal, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        params = [*params, ("_count", str(self.context.settings.max_page_size))]
        bundle = self.context.service.search(principal, "DocumentReference", params)
        return [orjson.loads(orjson.dumps(e["resource"])) for e in bundle.get("entry", [])]

    def _find_documents(self, principal: Principal, query: Query) -> list[DocumentEntry]:
        patient_id = query.required("$XDSDocumentEntryPatientId")[0]
        try:
            identifier = cx_to_identifier(patient_id)
        except ValueError as exc:
            raise XdsError(XdsError.REGISTRY, str(exc), "$XDSDocumentEntryPatientId") from exc
        statuses = query.required("$XDSDocumentEntryStatus")
        wanted = sorted({_STATUS[s] for s in statuses if s in _STATUS})
        if not wanted:
            return []
        params = [
            ("patient.identifier", f"{identifier['system']}|{identifier['value']}"),
            ("status", ",".join(wanted)),
        ]
        for slot, param in _CODE_PARAMS.items():
            for group in query.values(slot):  # each Value element ANDed, its codes ORed
                params.append((param, ",".join(_code_value(v) for v in group)))
        entries = [self._entry(d, patient_id) for d in self._search(principal, params)]
        return [e for e in entries if self._in_time(e, query)]

    def _get_documents(self, principal: Principal, query: Query) -> list[DocumentEntry]:
        uuids = [v for g in query.values("$XDSDocumentEntryEntryUUID") for v in g]
        unique_ids = [v for g in query.values("$XDSDocumentEntryUniqueId") for v in g]
        if bool(uuids) == bool(unique_ids):
            raise XdsError(
                XdsError.STORED_QUERY_PARAM_NUMBER,
                "GetDocuments takes $XDSDocumentEntryEntryUUID or $XDSDocumentEntryUniqueId",
                query.query_id,
            )
        tokens = [f"{URI}|{u}" for u in uuids] or [unique_id_token(u) for u in unique_ids]
        docs = self._search(principal, [("identifier", ",".join(tokens))])
        return [self._entry(d, self._patient_cx(principal, d)) for d in docs]

    def _patient_cx(self, principal: Principal, doc: dict[str, Any]) -> str:
        """The affinity-domain id (an ``urn:oid:`` identifier) of a document's patient."""
        reference = str(doc.get("subject", {}).get("reference", ""))
        patient = self.context.service.read(principal, "Patient", reference.rpartition("/")[2])
        assert patient.data is not None
        for identifier in orjson.loads(patient.data).get("identifier", []):
            if str(identifier.get("system", "")).startswith("urn:oid:"):
                return identifier_to_cx(identifier)
        return ""

    def _entry(self, doc: dict[str, Any], patient_id: str) -> DocumentEntry:
        entry_uuid = next(
            (str(i["value"]) for i in doc.get("identifier", [])
             if i.get("system") == URI and str(i.get("value", "")).startswith("urn:uuid:")),
            f"urn:uuid:{doc['id']}",
        )  # fmt: skip
        try:
            return documentreference_to_documententry(
                doc,
                patient_id=patient_id,
                repository_unique_id=self.identity.repository_unique_id,
                entry_uuid=entry_uuid,
            )
        except ValueError as exc:
            raise XdsError(
                XdsError.REGISTRY,
                f"DocumentReference/{doc['id']} lacks XDS metadata: {exc}",
                entry_uuid,
            ) from exc

    @staticmethod
    def _in_time(entry: DocumentEntry, query: Query) -> bool:
        """The time parameters (ITI TF-2 3.18.4.1.2.3.4): From inclusive, To exclusive, compared
        as DTM strings at the query value's precision."""
        for slot, (of, lower) in _TIME_PARAMS.items():
            for bound in [v for g in query.values(slot) for v in g]:
                value = of(entry)
                if not value:
                    return False
                head = value[: len(bound)].ljust(len(bound), "0")
                if (lower and head < bound) or (not lower and head >= bound):
                    return False
        return True


__all__ = ["FIND_DOCUMENTS", "GET_DOCUMENTS", "Registry", "parse_query"]
