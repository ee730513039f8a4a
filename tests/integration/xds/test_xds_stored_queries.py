"""ITI-18 Registry Stored Query (IHE ITI TF-2 3.18.4.1.2.3.7) against a real ``pixelhub serve``:
each FindDocuments parameter once matching and once not, FindSubmissionSets,
GetSubmissionSetAndContents, GetAssociations, GetAll, an RPLC chain, and the stored query errors
of ITI TF-2 3.18.4.1.3."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from xml.sax.saxutils import escape

import pytest
from lxml import etree

from tests.integration.dicomweb.conftest import WebHub
from tests.integration.xds.conftest import AFFINITY, Submission, new_submission
from tests.integration.xds.test_xds_exchange import (
    FAILURE,
    ITI18,
    QUERY,
    RIM,
    SOAP,
    SUCCESS,
    errors_of,
    patient,
    post,
    provide,
    soap_body,
)

FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
FIND_SUBMISSION_SETS = "urn:uuid:f26abbcb-ac74-4422-8a30-edb644bbc1a9"
GET_ALL = "urn:uuid:10b545ea-725c-446d-9b95-8aeb444eddf3"
GET_DOCUMENTS = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"
GET_ASSOCIATIONS = "urn:uuid:a7ae438b-4bc2-4642-93e9-be891f7bb155"
GET_SS_AND_CONTENTS = "urn:uuid:e8e3cb2c-e39c-46b9-99e4-c12f57260b83"
APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
STABLE = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
ON_DEMAND = "urn:uuid:34268e47-fdf5-41a6-ba33-82133c465248"
HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
RPLC = "urn:ihe:iti:2007:AssociationType:RPLC"
SET_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
SET_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SET_PATIENT_ID = "urn:uuid:6b5aea1a-875a-4d9f-8f0e-6b08db7d26b0"
ENTRY_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
SET_CONTENT_TYPE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
NS = {"rim": RIM}
# the fixture's codes (tests/fixtures/xds/pnr_kos_metadata.xml)
CT = "CT^^1.2.840.10008.2.16.4"
MR = "MR^^1.2.840.10008.2.16.4"
CHEST = "43799004^^2.16.840.1.113883.6.96"
NORMAL = "N^^2.16.840.1.113883.5.25"
RESTRICTED = "R^^2.16.840.1.113883.5.25"

Slots = dict[str, str | list[str]]


def query(hub: WebHub, query_id: str, slots: Slots, leaf: bool = True) -> etree._Element:
    """An AdhocQueryRequest; a list of values becomes several Value elements of one Slot."""
    xml = ""
    for name, value in slots.items():
        values = value if isinstance(value, list) else [value]
        inner = "".join(f"<rim:Value>{escape(v)}</rim:Value>" for v in values)
        xml += f'<rim:Slot name="{name}"><rim:ValueList>{inner}</rim:ValueList></rim:Slot>'
    return_type = "LeafClass" if leaf else "ObjectRef"
    envelope = (
        f'<env:Envelope xmlns:env="{SOAP}" xmlns:wsa="http://www.w3.org/2005/08/addressing">'
        f"<env:Header><wsa:Action>{ITI18}</wsa:Action><wsa:MessageID>urn:uuid:{uuid.uuid4()}"
        f'</wsa:MessageID></env:Header><env:Body><query:AdhocQueryRequest xmlns:query="{QUERY}" '
        f'xmlns:rim="{RIM}"><query:ResponseOption returnComposedObjects="true" '
        f'returnType="{return_type}"/><rim:AdhocQuery id="{query_id}">{xml}</rim:AdhocQuery>'
        f"</query:AdhocQueryRequest></env:Body></env:Envelope>"
    ).encode()
    r = post(hub, "/xds/registry", "application/soap+xml; charset=UTF-8", envelope)
    assert r.status_code == 200, r.text
    return soap_body(r)


def ids(response: etree._Element, tag: str) -> list[str]:
    assert response.get("status") == SUCCESS, etree.tostring(response)
    return [
        str(e.get("id")) for e in response.xpath(f"rim:RegistryObjectList/rim:{tag}", namespaces=NS)
    ]


def only(response: etree._Element, tag: str) -> etree._Element:
    [element] = response.xpath(f"rim:RegistryObjectList/rim:{tag}", namespaces=NS)
    return element


def external_id(element: etree._Element, scheme: str) -> str:
    [value] = element.xpath(f"rim:ExternalIdentifier[@identificationScheme='{scheme}']/@value",
                            namespaces=NS)  # fmt: skip
    return str(value)


def slot(element: etree._Element, name: str) -> list[str]:
    return [str(v) for v in element.xpath(f"rim:Slot[@name='{name}']/rim:ValueList/rim:Value/text()",
                                          namespaces=NS)]  # fmt: skip


def associations(response: etree._Element) -> set[tuple[str, str, str]]:
    return {
        (str(a.get("associationType")), str(a.get("sourceObject")), str(a.get("targetObject")))
        for a in response.xpath("rim:RegistryObjectList/rim:Association", namespaces=NS)
    }


def add_slot(element: etree._Element, name: str, value: str, after: str | None = None) -> None:
    new = etree.Element(f"{{{RIM}}}Slot", name=name)
    etree.SubElement(etree.SubElement(new, f"{{{RIM}}}ValueList"), f"{{{RIM}}}Value").text = value
    anchor = element.find(f"{{{RIM}}}Slot[@name='{after}']") if after else None
    if anchor is not None:
        anchor.addnext(new)
    else:
        element.insert(0, new)


@dataclass
class Stored:
    """One submission registered by ITI-41 and the ids the registry gave it."""

    submission: Submission
    cx: str
    entry_uuid: str
    set_uuid: str
    set_unique_id: str


def register(hub: WebHub, submission: Submission, *, new_patient: bool = True) -> Stored:
    if new_patient:
        patient(hub, submission.patient_mrn)
    response = provide(hub, submission)
    assert response.get("status") == SUCCESS, etree.tostring(response)
    cx = f"{submission.patient_mrn}^^^&{AFFINITY}&ISO"
    entry = only(query(hub, GET_DOCUMENTS, {"$XDSDocumentEntryUniqueId": f"('{submission.unique_id}')"}),
                 "ExtrinsicObject")  # fmt: skip
    set_unique_id = str(submission.body.xpath(
        f"//rim:ExternalIdentifier[@identificationScheme='{SET_UNIQUE_ID}']/@value", namespaces=NS
    )[0])  # fmt: skip
    package = only(query(hub, GET_SS_AND_CONTENTS, {"$XDSSubmissionSetUniqueId": f"'{set_unique_id}'"}),
                   "RegistryPackage")  # fmt: skip
    return Stored(submission, cx, str(entry.get("id")), str(package.get("id")), set_unique_id)


@pytest.fixture(scope="module")
def stored(xds_hub: WebHub) -> Stored:
    """The fixture submission with a serviceStopTime and an authorPerson on the set too."""
    submission = new_submission()
    entry = submission.body.find(f".//{{{RIM}}}ExtrinsicObject")
    add_slot(entry, "serviceStopTime", "20240315100000", after="serviceStartTime")
    set_author = submission.body.xpath(
        "//rim:RegistryPackage/rim:Classification[@classificationScheme="
        "'urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d']", namespaces=NS)[0]  # fmt: skip
    add_slot(set_author, "authorPerson", "SS01^Sender^Sam^^^Mr.^^^&2.999.1.6&ISO")
    return register(xds_hub, submission)


def find_documents(hub: WebHub, stored: Stored, **more: str | list[str]) -> list[str]:
    slots: Slots = {"$XDSDocumentEntryPatientId": f"'{stored.cx}'",
                    "$XDSDocumentEntryStatus": f"('{APPROVED}')", **more}  # fmt: skip
    return ids(query(hub, FIND_DOCUMENTS, slots), "ExtrinsicObject")


# --------------------------------------------------------------------------- FindDocuments

FIND_DOCUMENTS_CASES = [
    # parameter, values that match, values that do not
    ("$XDSDocumentEntryClassCode", "('18726-0^^2.16.840.1.113883.6.1')", "('11369-6^^2.16.840.1.113883.6.1')"),
    ("$XDSDocumentEntryTypeCode", "('x^^1.2.3','18748-4^^LOINC')", "('18782-3^^2.16.840.1.113883.6.1')"),
    ("$XDSDocumentEntryPracticeSettingCode", "('394914008^^2.16.840.1.113883.6.96')", "('394802001^^2.16.840.1.113883.6.96')"),
    ("$XDSDocumentEntryHealthcareFacilityTypeCode", "('22232009^^2.16.840.1.113883.6.96')", "('33022008^^2.16.840.1.113883.6.96')"),
    ("$XDSDocumentEntryFormatCode", "('1.2.840.10008.5.1.4.1.1.88.59^^1.2.840.10008.2.6.1')", "('urn:ihe:rad:PDF^^1.3.6.1.4.1.19376.1.2.3')"),
    # event codes: (CT OR MR) AND chest matches; CT AND MR does not
    ("$XDSDocumentEntryEventCodeList", [f"('{CT}','{MR}')", f"('{CHEST}')"], [f"('{CT}')", f"('{MR}')"]),
    ("$XDSDocumentEntryEventCodeList", f"('{MR}','{CHEST}')", f"('{MR}')"),
    ("$XDSDocumentEntryConfidentialityCode", [f"('{RESTRICTED}','{NORMAL}')"], [f"('{NORMAL}')", f"('{RESTRICTED}')"]),
    # times: From inclusive, To exclusive, at the precision given
    ("$XDSDocumentEntryCreationTimeFrom", "20240315103000", "20240315103001"),
    ("$XDSDocumentEntryCreationTimeTo", "20240316", "20240315103000"),
    ("$XDSDocumentEntryServiceStartTimeFrom", "202403", "20240316"),
    ("$XDSDocumentEntryServiceStartTimeTo", "20240315093001", "20240315093000"),
    ("$XDSDocumentEntryServiceStopTimeFrom", "20240315100000", "2024031510005"),
    ("$XDSDocumentEntryServiceStopTimeTo", "2025", "2024031509"),
    # authorPerson: LIKE, % any string, _ one character, values ORed
    ("$XDSDocumentEntryAuthorPerson", "('%^Radiologist^Rita^%')", "('%^Radiologist^Rita')"),
    ("$XDSDocumentEntryAuthorPerson", ["('nobody%')", "('R_77^%')"], "('R_7^%')"),
    ("$XDSDocumentEntryType", f"('{ON_DEMAND}','{STABLE}')", f"('{ON_DEMAND}')"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "matching", "other"), FIND_DOCUMENTS_CASES)
def test_find_documents_parameter_matches_and_does_not(
    xds_hub: WebHub, stored: Stored, name: str, matching: str | list[str], other: str | list[str]
) -> None:
    assert find_documents(xds_hub, stored, **{name: matching}) == [stored.entry_uuid]
    assert find_documents(xds_hub, stored, **{name: other}) == []


def test_find_documents_answers_the_entry_as_registered(xds_hub: WebHub, stored: Stored) -> None:
    response = query(xds_hub, FIND_DOCUMENTS, {
        "$XDSDocumentEntryPatientId": f"'{stored.cx}'",
        "$XDSDocumentEntryStatus": f"('{APPROVED}')",
    })  # fmt: skip
    entry = only(response, "ExtrinsicObject")
    assert entry.get("status") == APPROVED and entry.get("objectType") == STABLE
    assert external_id(entry, ENTRY_UNIQUE_ID) == stored.submission.unique_id
    assert slot(entry, "serviceStopTime") == ["20240315100000"]
    assert slot(entry, "creationTime") == ["20240315103000"]
    # another patient's id finds nothing of this one
    other = query(xds_hub, FIND_DOCUMENTS, {
        "$XDSDocumentEntryPatientId": f"'NOBODY-{uuid.uuid4().hex[:8]}^^^&{AFFINITY}&ISO'",
        "$XDSDocumentEntryStatus": f"('{APPROVED}')",
    })  # fmt: skip
    assert ids(other, "ExtrinsicObject") == []


# --------------------------------------------------------------------------- FindSubmissionSets


def find_sets(hub: WebHub, stored: Stored, **more: str | list[str]) -> list[str]:
    slots: Slots = {"$XDSSubmissionSetPatientId": f"'{stored.cx}'",
                    "$XDSSubmissionSetStatus": f"('{APPROVED}')", **more}  # fmt: skip
    return ids(query(hub, FIND_SUBMISSION_SETS, slots), "RegistryPackage")


def test_find_submission_sets_answers_the_set_as_submitted(xds_hub: WebHub, stored: Stored) -> None:
    response = query(xds_hub, FIND_SUBMISSION_SETS, {
        "$XDSSubmissionSetPatientId": f"'{stored.cx}'",
        "$XDSSubmissionSetStatus": f"('{APPROVED}')",
    })  # fmt: skip
    package = only(response, "RegistryPackage")
    assert package.get("id") == stored.set_uuid and stored.set_uuid.startswith("urn:uuid:")
    assert package.get("status") == APPROVED
    assert external_id(package, SET_UNIQUE_ID) == stored.set_unique_id
    assert external_id(package, SET_SOURCE_ID) == "2.999.1.10"
    assert external_id(package, SET_PATIENT_ID) == stored.cx
    assert slot(package, "submissionTime") == ["20240315103412"]
    [content_type] = package.xpath(
        f"rim:Classification[@classificationScheme='{SET_CONTENT_TYPE}']", namespaces=NS
    )
    assert content_type.get("nodeRepresentation") == "18748-4"
    assert ids(response, "ExtrinsicObject") == [] and associations(response) == set()


FIND_SETS_CASES = [
    ("$XDSSubmissionSetSourceId", "('2.999.1.9','2.999.1.10')", "('2.999.1.11')"),
    ("$XDSSubmissionSetSubmissionTimeFrom", "20240315103412", "20240315103413"),
    ("$XDSSubmissionSetSubmissionTimeTo", "20240315103413", "20240315103412"),
    ("$XDSSubmissionSetAuthorPerson", "'SS01^Sender^%'", "'SS01^Receiver^%'"),
    ("$XDSSubmissionSetContentType", "('18748-4^^2.16.840.1.113883.6.1')", "('11488-4^^2.16.840.1.113883.6.1')"),
    ("$XDSSubmissionSetStatus", f"('{DEPRECATED}','{APPROVED}')", f"('{DEPRECATED}')"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "matching", "other"), FIND_SETS_CASES)
def test_find_submission_sets_parameter_matches_and_does_not(
    xds_hub: WebHub, stored: Stored, name: str, matching: str, other: str
) -> None:
    assert find_sets(xds_hub, stored, **{name: matching}) == [stored.set_uuid]
    assert find_sets(xds_hub, stored, **{name: other}) == []


# --------------------------------------------------------------------------- contents and links


def test_get_submission_set_and_contents(xds_hub: WebHub, stored: Stored) -> None:
    by_uuid = query(
        xds_hub, GET_SS_AND_CONTENTS, {"$XDSSubmissionSetEntryUUID": f"'{stored.set_uuid}'"}
    )
    by_unique = query(
        xds_hub, GET_SS_AND_CONTENTS, {"$XDSSubmissionSetUniqueId": f"'{stored.set_unique_id}'"}
    )
    for response in (by_uuid, by_unique):
        assert ids(response, "RegistryPackage") == [stored.set_uuid]
        assert ids(response, "ExtrinsicObject") == [stored.entry_uuid]
        assert associations(response) == {(HAS_MEMBER, stored.set_uuid, stored.entry_uuid)}
        assert slot(only(response, "Association"), "SubmissionSetStatus") == ["Original"]
    # the same association id every time
    assert ids(by_uuid, "Association") == ids(by_unique, "Association")
    refs = query(xds_hub, GET_SS_AND_CONTENTS, {"$XDSSubmissionSetEntryUUID": f"'{stored.set_uuid}'"},
                 leaf=False)  # fmt: skip
    assert ids(refs, "ObjectRef") == [
        stored.set_uuid,
        stored.entry_uuid,
        *ids(by_uuid, "Association"),
    ]
    # entries of another format are left out, and so is the HasMember to them
    pdf = query(xds_hub, GET_SS_AND_CONTENTS, {
        "$XDSSubmissionSetEntryUUID": f"'{stored.set_uuid}'",
        "$XDSDocumentEntryFormatCode": "('urn:ihe:rad:PDF^^1.3.6.1.4.1.19376.1.2.3')",
    })  # fmt: skip
    assert ids(pdf, "RegistryPackage") == [stored.set_uuid]
    assert ids(pdf, "ExtrinsicObject") == [] and associations(pdf) == set()
    unknown = query(
        xds_hub, GET_SS_AND_CONTENTS, {"$XDSSubmissionSetEntryUUID": f"'urn:uuid:{uuid.uuid4()}'"}
    )
    assert ids(unknown, "RegistryPackage") == []


def test_get_all(xds_hub: WebHub, stored: Stored) -> None:
    response = query(xds_hub, GET_ALL, {
        "$patientId": f"'{stored.cx}'",
        "$XDSDocumentEntryStatus": f"('{APPROVED}')",
        "$XDSSubmissionSetStatus": f"('{APPROVED}')",
        "$XDSFolderStatus": f"('{APPROVED}')",
    })  # fmt: skip
    assert ids(response, "RegistryPackage") == [stored.set_uuid]
    assert ids(response, "ExtrinsicObject") == [stored.entry_uuid]
    assert associations(response) == {(HAS_MEMBER, stored.set_uuid, stored.entry_uuid)}
    contents = query(
        xds_hub, GET_SS_AND_CONTENTS, {"$XDSSubmissionSetEntryUUID": f"'{stored.set_uuid}'"}
    )
    assert ids(response, "Association") == ids(contents, "Association")
    deprecated_only = query(xds_hub, GET_ALL, {
        "$patientId": f"'{stored.cx}'",
        "$XDSDocumentEntryStatus": f"('{DEPRECATED}')",
        "$XDSSubmissionSetStatus": f"('{APPROVED}')",
    })  # fmt: skip
    assert ids(deprecated_only, "RegistryPackage") == [stored.set_uuid]
    assert ids(deprecated_only, "ExtrinsicObject") == [] and associations(deprecated_only) == set()


def test_get_associations_of_a_set_and_of_an_entry(xds_hub: WebHub, stored: Stored) -> None:
    expected = {(HAS_MEMBER, stored.set_uuid, stored.entry_uuid)}
    for uuid_ in (stored.set_uuid, stored.entry_uuid):
        response = query(xds_hub, GET_ASSOCIATIONS, {"$uuid": f"('{uuid_}')"})
        assert associations(response) == expected
        assert ids(response, "RegistryPackage") == ids(response, "ExtrinsicObject") == []
    nothing = query(xds_hub, GET_ASSOCIATIONS, {"$uuid": f"('urn:uuid:{uuid.uuid4()}')"})
    assert ids(nothing, "Association") == []


def test_a_replacement_deprecates_the_entry_it_replaces(xds_hub: WebHub) -> None:
    first = register(xds_hub, new_submission())
    second = new_submission()
    for scheme in ("urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427", SET_PATIENT_ID):
        for element in second.body.xpath(f"//rim:ExternalIdentifier[@identificationScheme='{scheme}']",
                                         namespaces=NS):  # fmt: skip
            element.set("value", first.cx)
    second.patient_mrn = first.submission.patient_mrn
    objects = second.body.find(f".//{{{RIM}}}RegistryObjectList")
    etree.SubElement(objects, f"{{{RIM}}}Association", id=f"urn:uuid:{uuid.uuid4()}",
                     associationType=RPLC, sourceObject="Document01",
                     targetObject=first.entry_uuid)  # fmt: skip
    replacement = register(xds_hub, second, new_patient=False)

    approved = find_documents(xds_hub, first)
    assert approved == [replacement.entry_uuid]
    deprecated = find_documents(xds_hub, first, **{"$XDSDocumentEntryStatus": f"('{DEPRECATED}')"})
    assert deprecated == [first.entry_uuid]
    both = find_documents(
        xds_hub, first, **{"$XDSDocumentEntryStatus": f"('{APPROVED}','{DEPRECATED}')"}
    )
    assert sorted(both) == sorted([first.entry_uuid, replacement.entry_uuid])
    old = only(query(xds_hub, GET_DOCUMENTS, {"$XDSDocumentEntryEntryUUID": f"('{first.entry_uuid}')"}),
               "ExtrinsicObject")  # fmt: skip
    assert old.get("status") == DEPRECATED

    rplc = (RPLC, replacement.entry_uuid, first.entry_uuid)
    of_old = query(xds_hub, GET_ASSOCIATIONS, {"$uuid": f"('{first.entry_uuid}')"})
    assert associations(of_old) == {rplc, (HAS_MEMBER, first.set_uuid, first.entry_uuid)}
    of_new = query(xds_hub, GET_ASSOCIATIONS, {"$uuid": f"('{replacement.entry_uuid}')"})
    assert associations(of_new) == {
        rplc,
        (HAS_MEMBER, replacement.set_uuid, replacement.entry_uuid),
    }
    [rplc_id] = [
        a.get("id")
        for a in of_old.iter(f"{{{RIM}}}Association")
        if a.get("associationType") == RPLC
    ]
    assert rplc_id in ids(of_new, "Association")
    everything = query(xds_hub, GET_ALL, {
        "$patientId": f"'{first.cx}'",
        "$XDSDocumentEntryStatus": f"('{APPROVED}','{DEPRECATED}')",
        "$XDSSubmissionSetStatus": f"('{APPROVED}')",
    })  # fmt: skip
    assert sorted(ids(everything, "RegistryPackage")) == sorted(
        [first.set_uuid, replacement.set_uuid]
    )
    assert associations(everything) == {
        rplc,
        (HAS_MEMBER, first.set_uuid, first.entry_uuid),
        (HAS_MEMBER, replacement.set_uuid, replacement.entry_uuid),
    }


# --------------------------------------------------------------------------- errors


def test_full_metadata_of_two_patients_is_refused_object_refs_are_not(
    xds_hub: WebHub, stored: Stored
) -> None:
    other = register(xds_hub, new_submission())
    both = f"('{stored.entry_uuid}','{other.entry_uuid}')"
    response = query(xds_hub, GET_DOCUMENTS, {"$XDSDocumentEntryEntryUUID": both})
    assert response.get("status") == FAILURE
    assert errors_of(response) == ["XDSResultNotSinglePatient"]
    refs = query(xds_hub, GET_DOCUMENTS, {"$XDSDocumentEntryEntryUUID": both}, leaf=False)
    assert sorted(ids(refs, "ObjectRef")) == sorted([stored.entry_uuid, other.entry_uuid])


ERROR_CASES = [
    (FIND_DOCUMENTS, {"$XDSDocumentEntryStatus": f"('{APPROVED}')"}, "XDSStoredQueryMissingParam"),
    (FIND_DOCUMENTS, {"$XDSDocumentEntryPatientId": "'{cx}'"}, "XDSStoredQueryMissingParam"),
    (FIND_DOCUMENTS, {"$XDSDocumentEntryPatientId": "('{cx}','{cx}')",
                      "$XDSDocumentEntryStatus": f"('{APPROVED}')"}, "XDSStoredQueryParamNumber"),
    (FIND_DOCUMENTS, {"$XDSDocumentEntryPatientId": "'{cx}'", "$XDSDocumentEntryStatus": f"('{APPROVED}')",
                      "$XDSDocumentEntryCreationTimeFrom": ["2020", "2021"]}, "XDSStoredQueryParamNumber"),
    (FIND_SUBMISSION_SETS, {"$XDSSubmissionSetPatientId": "'{cx}'"}, "XDSStoredQueryMissingParam"),
    (FIND_SUBMISSION_SETS, {"$XDSSubmissionSetStatus": f"('{APPROVED}')"}, "XDSStoredQueryMissingParam"),
    (FIND_SUBMISSION_SETS, {"$XDSSubmissionSetPatientId": "'{cx}'", "$XDSSubmissionSetStatus": f"('{APPROVED}')",
                            "$XDSSubmissionSetAuthorPerson": "('%a','%b')"}, "XDSStoredQueryParamNumber"),
    (GET_SS_AND_CONTENTS, {}, "XDSStoredQueryMissingParam"),
    (GET_SS_AND_CONTENTS, {"$XDSSubmissionSetEntryUUID": "'{set_uuid}'",
                           "$XDSSubmissionSetUniqueId": "'{set_unique_id}'"}, "XDSStoredQueryParamNumber"),
    (GET_DOCUMENTS, {}, "XDSStoredQueryMissingParam"),
    (GET_DOCUMENTS, {"$XDSDocumentEntryEntryUUID": "('{entry_uuid}')",
                     "$XDSDocumentEntryUniqueId": "('2.25.1')"}, "XDSStoredQueryParamNumber"),
    (GET_ASSOCIATIONS, {}, "XDSStoredQueryMissingParam"),
    (GET_ALL, {"$patientId": "'{cx}'", "$XDSDocumentEntryStatus": f"('{APPROVED}')"}, "XDSStoredQueryMissingParam"),
    (GET_ALL, {"$patientId": "('{cx}','{cx}')", "$XDSDocumentEntryStatus": f"('{APPROVED}')",
               "$XDSSubmissionSetStatus": f"('{APPROVED}')"}, "XDSStoredQueryParamNumber"),
    ("urn:uuid:5737b14c-8a1a-4539-b659-e03a34a5e1e4", {}, "XDSUnknownStoredQuery"),  # FindFolders
]  # fmt: skip


@pytest.mark.parametrize(("query_id", "slots", "code"), ERROR_CASES)
def test_stored_query_errors(
    xds_hub: WebHub, stored: Stored, query_id: str, slots: dict[str, str | list[str]], code: str
) -> None:
    given = {
        k: [x.format(**vars(stored)) for x in v]
        if isinstance(v, list)
        else v.format(**vars(stored))
        for k, v in slots.items()
    }
    response = query(xds_hub, query_id, given)
    assert response.get("status") == FAILURE
    assert errors_of(response) == [code]
    assert response.find(f"{{{RIM}}}RegistryObjectList") is None
