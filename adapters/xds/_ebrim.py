"""XDS.b metadata in its ebRIM 3.0 XML form (IHE ITI TF-3 4.2 and 4.3.1) <-> the typed values of
``mappings.xds_model``.

``parse_submit_objects`` reads the ``lcm:SubmitObjectsRequest`` of ITI-41 / ITI-42 and checks it
against ITI TF-3 4.2 (required slots, classifications and external identifiers, their
multiplicity and syntax, one submission set, a ``HasMember`` to every entry, one patient): every
problem found becomes one ``XdsError`` naming the registry object, and all of them are raised
together (``XdsError.several``). The ``*_to_xml`` writers give the LeafClass form of ITI-18 and,
through ``submit_objects_request``, the request PixelHub sends as a Document Source (RAD-68):
``parse_submit_objects(submit_objects_request(...))`` gives back what was written.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from lxml import etree

from adapters.xds._errors import XdsError
from mappings.xds_model import (
    APPROVED,
    Association,
    AssociationType,
    Author,
    Code,
    DocumentEntry,
    SubmissionSet,
)

__all__ = [
    "LCM",
    "RIM",
    "Submission",
    "association_to_xml",
    "entry_to_xml",
    "object_ref",
    "parse_submit_objects",
    "submission_set_to_xml",
    "submit_objects_request",
]

RIM: Final = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
LCM: Final = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
XDSB: Final = "urn:ihe:iti:xds-b:2007"

# ITI TF-3 Table 4.2.5-1: the UUIDs of XDS metadata
STABLE_ENTRY: Final = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
ON_DEMAND_ENTRY: Final = "urn:uuid:34268e47-fdf5-41a6-ba33-82133c465248"
SUBMISSION_SET_NODE: Final = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
FOLDER_NODE: Final = "urn:uuid:d9d542f3-6cc4-48b6-8870-ea235fbc94c2"
ENTRY_AUTHOR: Final = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
ENTRY_CLASS_CODE: Final = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
ENTRY_CONFIDENTIALITY_CODE: Final = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
ENTRY_EVENT_CODE: Final = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
ENTRY_FORMAT_CODE: Final = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
ENTRY_FACILITY_TYPE_CODE: Final = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
ENTRY_PRACTICE_SETTING_CODE: Final = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
ENTRY_TYPE_CODE: Final = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
ENTRY_PATIENT_ID: Final = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
ENTRY_UNIQUE_ID: Final = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
SET_AUTHOR: Final = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
SET_CONTENT_TYPE_CODE: Final = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SET_PATIENT_ID: Final = "urn:uuid:6b5aea1a-875a-4d9f-8f0e-6b08db7d26b0"
SET_SOURCE_ID: Final = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SET_UNIQUE_ID: Final = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"

# ebRIM 3.0 object types and IHE association types (ITI TF-3 4.2.2)
_OBJECT_TYPE: Final = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:"
_ASSOCIATION_URN: Final[dict[AssociationType, str]] = {
    "HasMember": "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember",
    "RPLC": "urn:ihe:iti:2007:AssociationType:RPLC",
    "XFRM": "urn:ihe:iti:2007:AssociationType:XFRM",
    "APND": "urn:ihe:iti:2007:AssociationType:APND",
    "XFRM_RPLC": "urn:ihe:iti:2007:AssociationType:XFRM_RPLC",
    "signs": "urn:ihe:iti:2007:AssociationType:signs",
}
_ASSOCIATION_NAME: Final[dict[str, AssociationType]] = {
    urn: name for name, urn in _ASSOCIATION_URN.items()
}
_SUBMISSION_SET_STATUS: Final = ("Original", "Reference")
_REFERENCE_ID_LIST: Final = "urn:ihe:iti:xds:2013:referenceIdList"

_UUID_URN = re.compile(
    r"urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")
_DTM = re.compile(r"\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2})?)?)?)?)?")
_DTM_FORMAT: Final = {4: "%Y", 6: "%Y%m", 8: "%Y%m%d", 10: "%Y%m%d%H", 12: "%Y%m%d%H%M"}
_LANGUAGE = re.compile(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*")
_MIME = re.compile(r"[\w.+-]+/[\w.+-]+")
_SHA1 = re.compile(r"[0-9a-fA-F]{40}")
# ITI TF-3 4.2.3.2.16: CX with only ID (CX.1) and an ISO assigning authority (CX.4)
_PATIENT_CX = re.compile(r"[^^&]+\^\^\^&[0-2](\.(0|[1-9][0-9]*))+&ISO")
# deterministic ids of the classifications and external identifiers written
_CHILD_IDS: Final = uuid.UUID("5d0f6e1e-58a3-4c2b-9d55-0e6f0c1b7a21")


@dataclass(frozen=True)
class Submission:
    """What a ProvideAndRegisterDocumentSet-b (ITI-41) or RegisterDocumentSet-b (ITI-42)
    carries: one submission set, its document entries and the associations, in document order."""

    submission_set: SubmissionSet
    entries: tuple[DocumentEntry, ...]
    associations: tuple[Association, ...]


def _rim(tag: str) -> str:
    return f"{{{RIM}}}{tag}"


# ---------------------------------------------------------------------------------- reading


class _Reader:
    """The errors found so far, and the small readers that add to them."""

    def __init__(self) -> None:
        self.errors: list[XdsError] = []

    def fail(self, location: str, message: str, code: str = XdsError.METADATA) -> None:
        self.errors.append(XdsError(code, message, location))

    def slots(self, element: etree._Element, owner: str) -> dict[str, list[str]]:
        """The ``rim:Slot`` children: name -> values (ebRIM 3.0 2.8; names unique per object)."""
        out: dict[str, list[str]] = {}
        for slot in element.findall(_rim("Slot")):
            name = slot.get("name") or ""
            if not name:
                self.fail(owner, "a Slot has no name")
                continue
            if name in out:
                self.fail(owner, f"Slot {name} appears more than once")
                continue
            out[name] = [
                (v.text or "").strip()
                for v in slot.iterfind(f"{_rim('ValueList')}/{_rim('Value')}")
            ]
        return out

    def single(
        self,
        slots: dict[str, list[str]],
        name: str,
        owner: str,
        *,
        required: bool,
        what: str = "",
    ) -> str:
        """A single-valued slot; ``required`` makes absence an error."""
        values = slots.get(name)
        label = what or name
        if not values or not values[0]:
            if required:
                self.fail(owner, f"required Slot {label} is missing or empty")
            return ""
        if len(values) > 1:
            self.fail(owner, f"Slot {label} has {len(values)} values, one is allowed")
        return values[0]

    def dtm(self, value: str, owner: str, label: str) -> str:
        """An HL7 v2 DTM (ITI TF-3 4.2.3.1.5): YYYY[MM[DD[hh[mm[ss]]]]], UTC."""
        if value and not _is_dtm(value):
            self.fail(owner, f"{label} {value!r} is not a DTM (YYYY[MM[DD[hh[mm[ss]]]]])")
        return value

    def object_id(self, element: etree._Element, what: str, owner: str | None = None) -> str:
        """The ``id`` attribute: a ``urn:uuid:`` UUID or a symbolic id (ITI TF-3 4.2.3.1.7);
        errors are located at ``owner`` (the object a nested one belongs to), else at the id."""
        value = element.get("id") or ""
        if not value:
            self.fail(owner or "", f"a {what} has no id")
        elif value.startswith("urn:uuid:") and not _UUID_URN.fullmatch(value):
            self.fail(owner or value, f"{what} id {value!r} is not a valid UUID")
        return value

    def code(self, classification: etree._Element, owner: str, label: str) -> Code:
        """A coded attribute (ITI TF-3 4.2.3.1.2): nodeRepresentation, codingScheme slot, Name."""
        slots = self.slots(classification, owner)
        code = classification.get("nodeRepresentation") or ""
        if not code:
            self.fail(owner, f"{label} has no nodeRepresentation (the code)")
        scheme = self.single(
            slots, "codingScheme", owner, required=True, what=f"codingScheme of {label}"
        )
        display = _localized(classification, "Name")
        if not display:
            self.fail(owner, f"{label} {code!r} has no Name (display name)")
        return Code(code, scheme, display)

    def author(self, classification: etree._Element, owner: str) -> Author:
        """An author (ITI TF-3 4.2.3.1.4): authorPerson at most once; at least one of
        authorPerson, authorInstitution, authorTelecommunication."""
        slots = self.slots(classification, owner)
        person = self.single(slots, "authorPerson", owner, required=False)
        author = Author(
            person=person,
            institutions=tuple(slots.get("authorInstitution", ())),
            roles=tuple(slots.get("authorRole", ())),
            specialties=tuple(slots.get("authorSpecialty", ())),
            telecoms=tuple(slots.get("authorTelecommunication", ())),
        )
        if not (author.person or author.institutions or author.telecoms):
            self.fail(
                owner,
                "author has none of authorPerson, authorInstitution, authorTelecommunication",
            )
        return author

    def external_ids(
        self, element: etree._Element, owner: str, schemes: dict[str, str]
    ) -> dict[str, str]:
        """The required external identifiers (ITI TF-3 4.2.3.1.7), exactly one per scheme:
        scheme -> value; ``schemes`` maps each scheme to its name for messages."""
        found: dict[str, list[str]] = {}
        for ei in element.findall(_rim("ExternalIdentifier")):
            self.object_id(ei, "ExternalIdentifier", owner)
            scheme = ei.get("identificationScheme") or ""
            target = ei.get("registryObject")
            if target is not None and target != owner:
                self.fail(owner, f"ExternalIdentifier {ei.get('id')} names registryObject {target}")
            found.setdefault(scheme, []).append(ei.get("value") or "")
        out: dict[str, str] = {}
        for scheme, name in schemes.items():
            values = found.get(scheme, [])
            if not values or not values[0]:
                self.fail(owner, f"required ExternalIdentifier {name} ({scheme}) is missing")
                out[scheme] = ""
                continue
            if len(values) > 1:
                self.fail(owner, f"ExternalIdentifier {name} appears {len(values)} times")
            out[scheme] = values[0]
        return out

    def patient_id(self, value: str, owner: str, label: str) -> str:
        if value and not _PATIENT_CX.fullmatch(value):
            self.fail(owner, f"{label} {value!r} is not a CX id^^^&OID&ISO (ITI TF-3 4.2.3.2.16)")
        return value


def _is_dtm(value: str) -> bool:
    if not _DTM.fullmatch(value):
        return False
    try:
        datetime.strptime(value, _DTM_FORMAT.get(len(value), "%Y%m%d%H%M%S"))
    except ValueError:
        return False
    return True


def _localized(element: etree._Element, tag: str) -> str:
    """The value of ``rim:<tag>/rim:LocalizedString`` (Name, Description)."""
    node = element.find(f"{_rim(tag)}/{_rim('LocalizedString')}")
    return (node.get("value") or "") if node is not None else ""


def _classifications(
    element: etree._Element, owner: str, top_level: dict[str, list[etree._Element]], r: _Reader
) -> dict[str, list[etree._Element]]:
    """The classifications of ``owner``, nested or top-level, by classificationScheme."""
    out: dict[str, list[etree._Element]] = {}
    for classification in [*element.findall(_rim("Classification")), *top_level.get(owner, [])]:
        r.object_id(classification, "Classification", owner)
        classified = classification.get("classifiedObject")
        if classified is not None and classified != owner:
            r.fail(
                owner,
                f"Classification {classification.get('id')} classifies {classified}, not {owner}",
            )
        scheme = classification.get("classificationScheme")
        if scheme:
            out.setdefault(scheme, []).append(classification)
    return out


def _codes(
    by_scheme: dict[str, list[etree._Element]],
    scheme: str,
    owner: str,
    label: str,
    r: _Reader,
    *,
    minimum: int,
    maximum: int | None,
) -> tuple[Code, ...]:
    found = by_scheme.get(scheme, [])
    if len(found) < minimum:
        r.fail(owner, f"required Classification {label} ({scheme}) is missing")
    if maximum is not None and len(found) > maximum:
        r.fail(owner, f"Classification {label} appears {len(found)} times, at most {maximum}")
    return tuple(r.code(c, owner, label) for c in found)


def _one(codes: tuple[Code, ...]) -> Code:
    return codes[0] if codes else Code("", "")


def _parse_entry(
    element: etree._Element,
    top_level: dict[str, list[etree._Element]],
    r: _Reader,
    transaction: str,
) -> DocumentEntry:
    """An XDSDocumentEntry (ITI TF-3 4.2.3.2; Table 4.3.1-3 for the sender's obligations)."""
    owner = r.object_id(element, "ExtrinsicObject")
    object_type = element.get("objectType") or ""
    if object_type == ON_DEMAND_ENTRY:
        r.fail(owner, "an On-Demand DocumentEntry cannot be submitted by ITI-41/ITI-42")
    elif object_type != STABLE_ENTRY:
        r.fail(owner, f"objectType {object_type!r} is not a stable DocumentEntry ({STABLE_ENTRY})")
    mime_type = element.get("mimeType") or ""
    if not _MIME.fullmatch(mime_type):
        r.fail(owner, f"mimeType {mime_type!r} is missing or not a MIME type")

    slots = r.slots(element, owner)
    creation_time = r.dtm(
        r.single(slots, "creationTime", owner, required=True), owner, "creationTime"
    )
    language = r.single(slots, "languageCode", owner, required=True)
    if language and not _LANGUAGE.fullmatch(language):
        r.fail(owner, f"languageCode {language!r} is not an RFC 3066 language tag")
    source_patient_id = r.single(slots, "sourcePatientId", owner, required=True)
    service_start = r.dtm(
        r.single(slots, "serviceStartTime", owner, required=False), owner, "serviceStartTime"
    )
    service_stop = r.dtm(
        r.single(slots, "serviceStopTime", owner, required=False), owner, "serviceStopTime"
    )
    register = transaction == "ITI-42"
    digest = r.single(slots, "hash", owner, required=register)
    if digest and not _SHA1.fullmatch(digest):
        r.fail(owner, f"hash {digest!r} is not a SHA-1 in hexadecimal")
    size_text = r.single(slots, "size", owner, required=register)
    size: int | None = None
    if size_text:
        if size_text.isdigit():
            size = int(size_text)
        else:
            r.fail(owner, f"size {size_text!r} is not a non-negative integer")
    repository = r.single(slots, "repositoryUniqueId", owner, required=register)
    if repository and not _OID.fullmatch(repository):
        r.fail(owner, f"repositoryUniqueId {repository!r} is not an OID")

    by_scheme = _classifications(element, owner, top_level, r)
    authors = tuple(r.author(c, owner) for c in by_scheme.get(ENTRY_AUTHOR, []))

    def codes(
        scheme: str, label: str, minimum: int = 1, maximum: int | None = 1
    ) -> tuple[Code, ...]:
        return _codes(by_scheme, scheme, owner, label, r, minimum=minimum, maximum=maximum)

    class_code = codes(ENTRY_CLASS_CODE, "classCode")
    confidentiality = codes(ENTRY_CONFIDENTIALITY_CODE, "confidentialityCode", maximum=None)
    event_codes = codes(ENTRY_EVENT_CODE, "eventCodeList", minimum=0, maximum=None)
    format_code = codes(ENTRY_FORMAT_CODE, "formatCode")
    facility = codes(ENTRY_FACILITY_TYPE_CODE, "healthcareFacilityTypeCode")
    practice = codes(ENTRY_PRACTICE_SETTING_CODE, "practiceSettingCode")
    type_code = codes(ENTRY_TYPE_CODE, "typeCode")

    ids = r.external_ids(
        element,
        owner,
        {
            ENTRY_PATIENT_ID: "XDSDocumentEntry.patientId",
            ENTRY_UNIQUE_ID: "XDSDocumentEntry.uniqueId",
        },
    )
    unique_id = ids[ENTRY_UNIQUE_ID]
    if len(unique_id) > 128:
        r.fail(owner, "XDSDocumentEntry.uniqueId is longer than 128 characters")
    version = element.find(_rim("VersionInfo"))
    return DocumentEntry(
        entry_uuid=owner,
        unique_id=unique_id,
        patient_id=r.patient_id(ids[ENTRY_PATIENT_ID], owner, "XDSDocumentEntry.patientId"),
        mime_type=mime_type,
        class_code=_one(class_code),
        type_code=_one(type_code),
        format_code=_one(format_code),
        healthcare_facility_type=_one(facility),
        practice_setting=_one(practice),
        confidentiality=confidentiality,
        creation_time=creation_time,
        language=language,
        source_patient_id=source_patient_id,
        source_patient_info=tuple(slots.get("sourcePatientInfo", ())),
        event_codes=event_codes,
        service_start=service_start,
        service_stop=service_stop,
        title=_localized(element, "Name"),
        comments=_localized(element, "Description"),
        hash=digest.lower(),
        size=size,
        repository_unique_id=repository,
        home_community_id=element.get("home") or "",
        reference_ids=tuple(slots.get(_REFERENCE_ID_LIST, ())),
        authors=authors,
        status=element.get("status") or APPROVED,
        version=(version.get("versionName") or "1") if version is not None else "1",
    )


def _parse_submission_set(
    element: etree._Element, top_level: dict[str, list[etree._Element]], r: _Reader
) -> SubmissionSet:
    """An XDSSubmissionSet (ITI TF-3 4.2.3.3)."""
    owner = element.get("id") or ""
    slots = r.slots(element, owner)
    submission_time = r.dtm(
        r.single(slots, "submissionTime", owner, required=True), owner, "submissionTime"
    )
    by_scheme = _classifications(element, owner, top_level, r)
    authors = tuple(r.author(c, owner) for c in by_scheme.get(SET_AUTHOR, []))
    content_type = _codes(
        by_scheme, SET_CONTENT_TYPE_CODE, owner, "contentTypeCode", r, minimum=1, maximum=1
    )
    ids = r.external_ids(
        element,
        owner,
        {
            SET_UNIQUE_ID: "XDSSubmissionSet.uniqueId",
            SET_SOURCE_ID: "XDSSubmissionSet.sourceId",
            SET_PATIENT_ID: "XDSSubmissionSet.patientId",
        },
    )
    for scheme, label in ((SET_UNIQUE_ID, "uniqueId"), (SET_SOURCE_ID, "sourceId")):
        if ids[scheme] and not _OID.fullmatch(ids[scheme]):
            r.fail(owner, f"XDSSubmissionSet.{label} {ids[scheme]!r} is not an OID")
    return SubmissionSet(
        entry_uuid=owner,
        unique_id=ids[SET_UNIQUE_ID],
        source_id=ids[SET_SOURCE_ID],
        patient_id=r.patient_id(ids[SET_PATIENT_ID], owner, "XDSSubmissionSet.patientId"),
        submission_time=submission_time,
        content_type=_one(content_type),
        authors=authors,
        title=_localized(element, "Name"),
        comments=_localized(element, "Description"),
        intended_recipients=tuple(slots.get("intendedRecipient", ())),
        home_community_id=element.get("home") or "",
        status=element.get("status") or APPROVED,
    )


def _parse_association(element: etree._Element, r: _Reader) -> Association:
    """An ebRIM Association (ITI TF-3 4.2.2): HasMember with its SubmissionSetStatus slot, or a
    document relationship (RPLC, XFRM, APND, XFRM_RPLC, signs)."""
    owner = r.object_id(element, "Association")
    urn = element.get("associationType") or ""
    kind = _ASSOCIATION_NAME.get(urn)
    if kind is None:
        r.fail(owner, f"associationType {urn!r} is not an XDS association type")
    source = element.get("sourceObject") or ""
    target = element.get("targetObject") or ""
    for attribute, value in (("sourceObject", source), ("targetObject", target)):
        if not value:
            r.fail(owner, f"Association has no {attribute}")
    slots = r.slots(element, owner)
    status = r.single(slots, "SubmissionSetStatus", owner, required=False)
    if status and status not in _SUBMISSION_SET_STATUS:
        r.fail(owner, f"SubmissionSetStatus {status!r} is neither Original nor Reference")
    extra = tuple(
        (name, value)
        for name, values in slots.items()
        if name != "SubmissionSetStatus"
        for value in values
    )
    return Association(
        entry_uuid=owner,
        type=kind or "HasMember",
        source=source,
        target=target,
        submission_set_status=status,
        extra=extra,
    )


def _package_kind(package: etree._Element, owner: str, nodes: dict[str, list[str]]) -> str:
    """The classificationNode of a RegistryPackage (nested or top-level Classification)."""
    kinds = [
        c.get("classificationNode") or ""
        for c in package.findall(_rim("Classification"))
        if c.get("classificationNode")
    ]
    return next(iter([*kinds, *nodes.get(owner, [])]), "")


def parse_submit_objects(
    request: etree._Element, *, transaction: Literal["ITI-41", "ITI-42"] = "ITI-41"
) -> Submission:
    """The submission in an ``lcm:SubmitObjectsRequest`` (or the
    ``xds:ProvideAndRegisterDocumentSetRequest`` around it), checked against ITI TF-3 4.2 and the
    sender columns of ITI TF-3 Table 4.3.1-3: for ITI-42 hash, size and repositoryUniqueId are
    required too. Raises one ``XdsError`` listing every problem (``all()``)."""
    if request.tag == f"{{{XDSB}}}ProvideAndRegisterDocumentSetRequest":
        inner = request.find(f"{{{LCM}}}SubmitObjectsRequest")
        if inner is None:
            raise XdsError(XdsError.METADATA, "no lcm:SubmitObjectsRequest in the request")
        request = inner
    if request.tag != f"{{{LCM}}}SubmitObjectsRequest":
        raise XdsError(XdsError.METADATA, f"expected lcm:SubmitObjectsRequest, not {request.tag}")
    objects = request.find(_rim("RegistryObjectList"))
    if objects is None:
        raise XdsError(XdsError.METADATA, "SubmitObjectsRequest has no rim:RegistryObjectList")

    r = _Reader()
    children = [c for c in objects if isinstance(c.tag, str)]
    # top-level Classifications: coded attributes by classifiedObject, package kinds by node
    top_level: dict[str, list[etree._Element]] = {}
    nodes: dict[str, list[str]] = {}
    for child in children:
        if child.tag == _rim("Classification"):
            target = child.get("classifiedObject") or ""
            if child.get("classificationNode"):
                r.object_id(child, "Classification")
                nodes.setdefault(target, []).append(child.get("classificationNode") or "")
            else:
                top_level.setdefault(target, []).append(child)

    entries: list[DocumentEntry] = []
    sets: list[SubmissionSet] = []
    associations: list[Association] = []
    known: set[str] = set()  # every id defined in the request
    references: list[tuple[str, str, str]] = []  # (owner, what, id referenced)
    for child in children:
        tag = etree.QName(child).localname if child.tag.startswith(f"{{{RIM}}}") else child.tag
        if tag == "ExtrinsicObject":
            entry = _parse_entry(child, top_level, r, transaction)
            entries.append(entry)
        elif tag == "RegistryPackage":
            owner = r.object_id(child, "RegistryPackage")
            kind = _package_kind(child, owner, nodes)
            if kind == SUBMISSION_SET_NODE:
                sets.append(_parse_submission_set(child, top_level, r))
            elif kind == FOLDER_NODE:
                r.fail(owner, "Folders are not supported by this registry")
            else:
                r.fail(owner, f"RegistryPackage is not classified as a SubmissionSet ({kind!r})")
        elif tag == "Association":
            association = _parse_association(child, r)
            associations.append(association)
            references.append((association.entry_uuid, "sourceObject", association.source))
            references.append((association.entry_uuid, "targetObject", association.target))
        elif tag == "ObjectRef":
            r.object_id(child, "ObjectRef")
        elif tag == "Classification":
            references.append(
                (child.get("id") or "", "classifiedObject", child.get("classifiedObject") or "")
            )
            continue
        else:
            r.fail("", f"unexpected {tag} in the RegistryObjectList")
            continue
        object_id = child.get("id") or ""
        if object_id and object_id in known:
            r.fail(object_id, f"id {object_id} is used by more than one object")
        known.add(object_id)

    for owner, attribute, reference in references:
        if reference and not reference.startswith("urn:uuid:") and reference not in known:
            r.fail(
                owner,
                f"{attribute} {reference!r} is a symbolic id of no object in the submission",
                XdsError.UNRESOLVED_REFERENCE,
            )

    if len(sets) != 1:
        r.fail("", f"a submission needs exactly one SubmissionSet, this one has {len(sets)}")
    if sets:
        _check_members(sets[0], entries, associations, r)
    _check_unique_ids(sets, entries, r)
    if r.errors:
        raise XdsError.several(r.errors)
    return Submission(sets[0], tuple(entries), tuple(associations))


def _check_members(
    ss: SubmissionSet,
    entries: Sequence[DocumentEntry],
    associations: Sequence[Association],
    r: _Reader,
) -> None:
    """One patient (ITI TF-3 4.2.3.3.8; XDSPatientIdDoesNotMatch), a HasMember from the set to
    every entry with its SubmissionSetStatus (4.2.2.1.2), relationships from submitted entries
    (4.2.2.2)."""
    entry_ids = {e.entry_uuid for e in entries}
    members: set[str] = set()
    for a in associations:
        if a.type == "HasMember":
            if a.source != ss.entry_uuid:
                r.fail(a.entry_uuid, f"HasMember from {a.source}, not from the SubmissionSet")
                continue
            if a.target in entry_ids:
                members.add(a.target)
                if not a.submission_set_status:
                    r.fail(a.entry_uuid, "HasMember to a DocumentEntry needs SubmissionSetStatus")
        else:
            if a.source not in entry_ids:
                r.fail(a.entry_uuid, f"{a.type} source {a.source} is no submitted DocumentEntry")
            if a.target in entry_ids or not _UUID_URN.fullmatch(a.target):
                r.fail(a.entry_uuid, f"{a.type} target {a.target} is not an existing entry UUID")
    for entry in entries:
        if entry.entry_uuid not in members:
            r.fail(entry.entry_uuid, "no HasMember association from the SubmissionSet")
        if entry.patient_id and ss.patient_id and entry.patient_id != ss.patient_id:
            r.fail(
                entry.entry_uuid,
                f"patientId {entry.patient_id} differs from the SubmissionSet's {ss.patient_id}",
                XdsError.PATIENT_ID_DOES_NOT_MATCH,
            )


def _check_unique_ids(
    sets: Iterable[SubmissionSet], entries: Iterable[DocumentEntry], r: _Reader
) -> None:
    seen: set[str] = set()
    for owner, unique_id in [
        *((s.entry_uuid, s.unique_id) for s in sets),
        *((e.entry_uuid, e.unique_id) for e in entries),
    ]:
        if unique_id and unique_id in seen:
            r.fail(
                owner,
                f"uniqueId {unique_id} is used twice in the submission",
                XdsError.DUPLICATE_UNIQUE_ID_IN_MESSAGE,
            )
        seen.add(unique_id)


# ---------------------------------------------------------------------------------- writing


def _child_id(owner: str, role: str, index: int) -> str:
    return f"urn:uuid:{uuid.uuid5(_CHILD_IDS, f'{owner}|{role}|{index}')}"


def _element(tag: str, **attributes: str) -> etree._Element:
    element = etree.Element(_rim(tag), nsmap={"rim": RIM})
    for name, value in attributes.items():
        element.set(name, value)
    return element


def _sub(parent: etree._Element, tag: str, **attributes: str) -> etree._Element:
    element = etree.SubElement(parent, _rim(tag))
    for name, value in attributes.items():
        element.set(name, value)
    return element


def _slot(parent: etree._Element, name: str, values: Iterable[str]) -> None:
    values = [v for v in values if v]
    if not values:
        return
    value_list = _sub(_sub(parent, "Slot", name=name), "ValueList")
    for value in values:
        _sub(value_list, "Value").text = value


def _text(parent: etree._Element, tag: str, value: str) -> None:
    if value:
        _sub(_sub(parent, tag), "LocalizedString", value=value)


def _classification(
    parent: etree._Element, owner: str, scheme: str, index: int, node: str
) -> etree._Element:
    """An external classification of ``owner`` under ``scheme`` (ITI TF-3 4.2.3.1.2)."""
    return _sub(
        parent,
        "Classification",
        id=_child_id(owner, scheme, index),
        objectType=_OBJECT_TYPE + "Classification",
        classificationScheme=scheme,
        classifiedObject=owner,
        nodeRepresentation=node,
    )


def _code(parent: etree._Element, owner: str, scheme: str, code: Code, index: int) -> None:
    classification = _classification(parent, owner, scheme, index, code.code)
    _slot(classification, "codingScheme", [code.scheme])
    _text(classification, "Name", code.display)


def _author(parent: etree._Element, owner: str, scheme: str, author: Author, index: int) -> None:
    classification = _classification(parent, owner, scheme, index, "")
    _slot(classification, "authorPerson", [author.person])
    _slot(classification, "authorInstitution", author.institutions)
    _slot(classification, "authorRole", author.roles)
    _slot(classification, "authorSpecialty", author.specialties)
    _slot(classification, "authorTelecommunication", author.telecoms)


def _external_id(parent: etree._Element, owner: str, scheme: str, value: str, name: str) -> None:
    identifier = _sub(
        parent,
        "ExternalIdentifier",
        id=_child_id(owner, scheme, 0),
        objectType=_OBJECT_TYPE + "ExternalIdentifier",
        identificationScheme=scheme,
        registryObject=owner,
        value=value,
    )
    _text(identifier, "Name", name)


def _entry_xml(entry: DocumentEntry, *, registry: bool) -> etree._Element:
    attributes = {"id": entry.entry_uuid, "mimeType": entry.mime_type, "objectType": STABLE_ENTRY}
    if registry or entry.status != APPROVED:
        attributes["status"] = entry.status
    if entry.home_community_id:
        attributes["home"] = entry.home_community_id
    element = _element("ExtrinsicObject", **attributes)
    owner = entry.entry_uuid
    _slot(element, "creationTime", [entry.creation_time])
    _slot(element, "languageCode", [entry.language])
    _slot(element, "sourcePatientId", [entry.source_patient_id])
    _slot(element, "sourcePatientInfo", entry.source_patient_info)
    _slot(element, "serviceStartTime", [entry.service_start])
    _slot(element, "serviceStopTime", [entry.service_stop])
    _slot(element, "hash", [entry.hash])
    _slot(element, "size", [] if entry.size is None else [str(entry.size)])
    _slot(element, "repositoryUniqueId", [entry.repository_unique_id])
    _slot(element, _REFERENCE_ID_LIST, entry.reference_ids)
    _text(element, "Name", entry.title)
    _text(element, "Description", entry.comments)
    if registry or entry.version != "1":
        _sub(element, "VersionInfo", versionName=entry.version)
    for i, author in enumerate(entry.authors):
        _author(element, owner, ENTRY_AUTHOR, author, i)
    _code(element, owner, ENTRY_CLASS_CODE, entry.class_code, 0)
    for i, code in enumerate(entry.confidentiality):
        _code(element, owner, ENTRY_CONFIDENTIALITY_CODE, code, i)
    for i, code in enumerate(entry.event_codes):
        _code(element, owner, ENTRY_EVENT_CODE, code, i)
    _code(element, owner, ENTRY_FORMAT_CODE, entry.format_code, 0)
    _code(element, owner, ENTRY_FACILITY_TYPE_CODE, entry.healthcare_facility_type, 0)
    _code(element, owner, ENTRY_PRACTICE_SETTING_CODE, entry.practice_setting, 0)
    _code(element, owner, ENTRY_TYPE_CODE, entry.type_code, 0)
    _external_id(element, owner, ENTRY_PATIENT_ID, entry.patient_id, "XDSDocumentEntry.patientId")
    _external_id(element, owner, ENTRY_UNIQUE_ID, entry.unique_id, "XDSDocumentEntry.uniqueId")
    return element


def entry_to_xml(entry: DocumentEntry) -> etree._Element:
    """A DocumentEntry as the ``rim:ExtrinsicObject`` of an ITI-18 LeafClass response (ITI TF-3
    4.2.3.2): slots, Name, Description, VersionInfo, classifications, external identifiers,
    status, mimeType and the stable objectType."""
    return _entry_xml(entry, registry=True)


def submission_set_to_xml(ss: SubmissionSet) -> etree._Element:
    """A SubmissionSet as a ``rim:RegistryPackage`` (ITI TF-3 4.2.3.3), its classification as a
    SubmissionSet (node urn:uuid:a54d6aa5-...) nested in it."""
    attributes = {
        "id": ss.entry_uuid,
        "objectType": _OBJECT_TYPE + "RegistryPackage",
        "status": ss.status,
    }
    if ss.home_community_id:
        attributes["home"] = ss.home_community_id
    element = _element("RegistryPackage", **attributes)
    owner = ss.entry_uuid
    _slot(element, "submissionTime", [ss.submission_time])
    _slot(element, "intendedRecipient", ss.intended_recipients)
    _text(element, "Name", ss.title)
    _text(element, "Description", ss.comments)
    _sub(
        element,
        "Classification",
        id=_child_id(owner, SUBMISSION_SET_NODE, 0),
        objectType=_OBJECT_TYPE + "Classification",
        classifiedObject=owner,
        classificationNode=SUBMISSION_SET_NODE,
    )
    for i, author in enumerate(ss.authors):
        _author(element, owner, SET_AUTHOR, author, i)
    _code(element, owner, SET_CONTENT_TYPE_CODE, ss.content_type, 0)
    _external_id(element, owner, SET_UNIQUE_ID, ss.unique_id, "XDSSubmissionSet.uniqueId")
    _external_id(element, owner, SET_SOURCE_ID, ss.source_id, "XDSSubmissionSet.sourceId")
    _external_id(element, owner, SET_PATIENT_ID, ss.patient_id, "XDSSubmissionSet.patientId")
    return element


def association_to_xml(a: Association) -> etree._Element:
    """An ``rim:Association`` (ITI TF-3 4.2.2) with its SubmissionSetStatus and other slots."""
    element = _element(
        "Association",
        id=a.entry_uuid,
        objectType=_OBJECT_TYPE + "Association",
        associationType=_ASSOCIATION_URN[a.type],
        sourceObject=a.source,
        targetObject=a.target,
    )
    _slot(element, "SubmissionSetStatus", [a.submission_set_status])
    grouped: dict[str, list[str]] = {}
    for name, value in a.extra:
        grouped.setdefault(name, []).append(value)
    for name, values in grouped.items():
        _slot(element, name, values)
    return element


def submit_objects_request(
    ss: SubmissionSet, entries: Iterable[DocumentEntry], associations: Iterable[Association]
) -> etree._Element:
    """The ``lcm:SubmitObjectsRequest`` of an ITI-41 sent by PixelHub as an Imaging Document
    Source (RAD-68): the inverse of ``parse_submit_objects``. Registry-owned fields (status,
    VersionInfo) are written only when they differ from a new submission's."""
    request = etree.Element(f"{{{LCM}}}SubmitObjectsRequest", nsmap={"lcm": LCM, "rim": RIM})
    objects = etree.SubElement(request, _rim("RegistryObjectList"))
    for entry in entries:
        objects.append(_entry_xml(entry, registry=False))
    package = submission_set_to_xml(ss)
    if ss.status == APPROVED:
        del package.attrib["status"]
    objects.append(package)
    for association in associations:
        objects.append(association_to_xml(association))
    etree.cleanup_namespaces(request)
    return request


def object_ref(entry_uuid: str) -> etree._Element:
    """An ``rim:ObjectRef`` (the ObjectRef return type of ITI-18, ITI TF-2 3.18.4.1.2.3.6)."""
    return _element("ObjectRef", id=entry_uuid)
