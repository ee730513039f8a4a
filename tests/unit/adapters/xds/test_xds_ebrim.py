"""ebRIM 3.0 XDS.b metadata (IHE ITI TF-3 4.2, 4.3.1): the XDS-I.b fixture parsed to typed values,
the writers' round trip, one test per invalid-metadata rule (error code and location), and the
``rs:RegistryResponse`` of ITI TF-3 4.2.4."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from lxml import etree

from adapters.xds._ebrim import (
    Submission,
    association_to_xml,
    entry_to_xml,
    object_ref,
    parse_submit_objects,
    submission_set_to_xml,
    submit_objects_request,
)
from adapters.xds._errors import XdsError, registry_response
from mappings.xds_model import (
    APPROVED,
    DEPRECATED,
    KOS_FORMAT,
    Association,
    Author,
    Code,
    DocumentEntry,
    SubmissionSet,
)

FIXTURE = Path(__file__).parents[3] / "fixtures" / "xds" / "pnr_kos_metadata.xml"
NS = {
    "rim": "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0",
    "lcm": "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0",
    "rs": "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0",
    "xdsb": "urn:ihe:iti:xds-b:2007",
}
RIM = f"{{{NS['rim']}}}"
DOC = "Document01"
SS = "SubmissionSet01"
HAS_MEMBER = "urn:uuid:60ffddc2-f0c9-4e42-bd71-609618e61d8d"
PATIENT = "PX-20240315-7^^^&2.999.1.1&ISO"
METADATA = "XDSRegistryMetadataError"

EXPECTED_ENTRY = DocumentEntry(
    entry_uuid=DOC,
    unique_id="2.25.160410593729043727302405327931128474312",
    patient_id=PATIENT,
    mime_type="application/dicom",
    class_code=Code("18726-0", "2.16.840.1.113883.6.1", "Radiology studies (set)"),
    type_code=Code("18748-4", "2.16.840.1.113883.6.1", "Diagnostic imaging study"),
    format_code=Code(KOS_FORMAT, "1.2.840.10008.2.6.1", "Key Object Selection Document"),
    healthcare_facility_type=Code("22232009", "2.16.840.1.113883.6.96", "Hospital"),
    practice_setting=Code("394914008", "2.16.840.1.113883.6.96", "Radiology"),
    confidentiality=(Code("N", "2.16.840.1.113883.5.25", "normal"),),
    creation_time="20240315103000",
    language="en-US",
    source_patient_id="MRN-004711^^^&2.999.1.2&ISO",
    source_patient_info=(
        "PID-3|MRN-004711^^^&2.999.1.2&ISO",
        "PID-5|Testpatient^Jane^^^",
        "PID-7|19700101",
        "PID-8|F",
    ),
    event_codes=(
        Code("CT", "1.2.840.10008.2.16.4", "Computed Tomography"),
        Code("43799004", "2.16.840.1.113883.6.96", "Chest"),
    ),
    service_start="20240315093000",
    title="CT chest imaging manifest",
    comments="Key Object Selection of CT CHEST W CONTRAST, accession ACC-2024-0042",
    hash="bd16415d45940240c59aa270256a9f50f6f367e1",
    size=2154,
    reference_ids=(
        "2.25.251203598671245013988530275110964832117^^^^urn:ihe:iti:xds:2016:studyInstanceUID",
        "ACC-2024-0042^^^&2.999.1.4&ISO^urn:ihe:iti:xds:2013:accession",
    ),
    authors=(
        Author(
            person="RR77^Radiologist^Rita^^^Dr.^^^&2.999.1.6&ISO",
            institutions=("Example Imaging Center^^^^^&2.999.1.5&ISO^^^^2.999.1.5.1",),
            roles=("Attending",),
        ),
    ),
)
EXPECTED_SET = SubmissionSet(
    entry_uuid=SS,
    unique_id="2.25.84917238475610293847561029384756102938",
    source_id="2.999.1.10",
    patient_id=PATIENT,
    submission_time="20240315103412",
    content_type=Code("18748-4", "2.16.840.1.113883.6.1", "Diagnostic imaging study"),
    authors=(
        Author(
            institutions=("Example Imaging Center^^^^^&2.999.1.5&ISO^^^^2.999.1.5.1",),
            telecoms=("^^Internet^imaging@example.org",),
        ),
    ),
    title="Imaging manifest for ACC-2024-0042",
    comments="Published when the study was complete",
    intended_recipients=(
        "Referring Clinic^^^^^&2.999.1.7&ISO^^^^2.999.1.7.1"
        "|GG12^Practitioner^Greta^^^Dr.^^^&2.999.1.6&ISO",
    ),
)
EXPECTED_ASSOCIATION = Association(
    entry_uuid=HAS_MEMBER,
    type="HasMember",
    source=SS,
    target=DOC,
    submission_set_status="Original",
)

# the classification schemes and external identifier schemes of ITI TF-3 Table 4.2.5-1
CLASS = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
TYPE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
FORMAT = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
FACILITY = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
PRACTICE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
CONFIDENTIALITY = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
CONTENT_TYPE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
ENTRY_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
SET_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
ENTRY_PATIENT = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
ENTRY_UNIQUE = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
SET_UNIQUE = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
SET_SOURCE = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SET_PATIENT = "urn:uuid:6b5aea1a-875a-4d9f-8f0e-6b08db7d26b0"
ON_DEMAND = "urn:uuid:34268e47-fdf5-41a6-ba33-82133c465248"
FOLDER = "urn:uuid:d9d542f3-6cc4-48b6-8870-ea235fbc94c2"


def load() -> etree._Element:
    return etree.parse(str(FIXTURE)).getroot()


def one(tree: etree._Element, xpath: str) -> etree._Element:
    found = tree.xpath(xpath, namespaces=NS)
    assert isinstance(found, list) and len(found) == 1, xpath
    node = found[0]
    assert isinstance(node, etree._Element)
    return node


def remove(tree: etree._Element, xpath: str) -> None:
    node = one(tree, xpath)
    parent = node.getparent()
    assert parent is not None
    parent.remove(node)


def entry(tree: etree._Element) -> etree._Element:
    return one(tree, "//rim:ExtrinsicObject")


def package(tree: etree._Element) -> etree._Element:
    return one(tree, "//rim:RegistryPackage[@id='SubmissionSet01']")


def slot_xpath(owner: str, name: str) -> str:
    return f"//rim:*[@id='{owner}']/rim:Slot[@name='{name}']"


def set_value(tree: etree._Element, owner: str, name: str, *values: str) -> None:
    value_list = one(tree, slot_xpath(owner, name) + "/rim:ValueList")
    for value in list(value_list):
        value_list.remove(value)
    for text in values:
        etree.SubElement(value_list, RIM + "Value").text = text


def classification(scheme: str, n: int = 1) -> str:
    return f"(//rim:Classification[@classificationScheme='{scheme}'])[{n}]"


def external_id(scheme: str) -> str:
    return f"//rim:ExternalIdentifier[@identificationScheme='{scheme}']"


def errors_of(tree: etree._Element, **kwargs: str) -> list[tuple[str, str]]:
    with pytest.raises(XdsError) as caught:
        parse_submit_objects(tree, **kwargs)  # type: ignore[arg-type]
    return [(e.code, e.location) for e in caught.value.all()]


# ---------------------------------------------------------------------------------- parsing


def test_fixture_parses_to_the_expected_values() -> None:
    submission = parse_submit_objects(load())
    assert submission == Submission(EXPECTED_SET, (EXPECTED_ENTRY,), (EXPECTED_ASSOCIATION,))


def test_bare_submit_objects_request_parses_too() -> None:
    submit = one(load(), "lcm:SubmitObjectsRequest")
    assert parse_submit_objects(submit).entries == (EXPECTED_ENTRY,)


def test_nested_submission_set_classification_is_read() -> None:
    tree = load()
    node = one(tree, "//rim:RegistryObjectList/rim:Classification[@classificationNode]")
    package(tree).insert(2, node)  # after the slots, before Name: moved inside the package
    assert parse_submit_objects(tree).submission_set == EXPECTED_SET


def test_top_level_coded_classification_is_read() -> None:
    tree = load()
    node = one(tree, classification(FORMAT))
    one(tree, "//rim:RegistryObjectList").append(node)
    assert parse_submit_objects(tree).entries[0].format_code == EXPECTED_ENTRY.format_code


def test_registry_fields_are_read() -> None:
    tree = load()
    element = entry(tree)
    element.set("status", DEPRECATED)
    element.set("home", "urn:oid:2.999.1.99")
    one(element, "rim:Description").addnext(etree.Element(RIM + "VersionInfo", versionName="3"))
    parsed = parse_submit_objects(tree).entries[0]
    assert (parsed.status, parsed.home_community_id, parsed.version) == (
        DEPRECATED,
        "urn:oid:2.999.1.99",
        "3",
    )


def test_other_document_relationship_is_read() -> None:
    tree = load()
    rplc = etree.SubElement(
        one(tree, "//rim:RegistryObjectList"),
        RIM + "Association",
        id="as02",
        associationType="urn:ihe:iti:2007:AssociationType:RPLC",
        sourceObject=DOC,
        targetObject="urn:uuid:0b5f8f6e-7c1c-4b0d-9d55-6a1f3e3c2a10",
    )
    assert rplc is not None
    assert parse_submit_objects(tree).associations[1] == Association(
        "as02", "RPLC", DOC, "urn:uuid:0b5f8f6e-7c1c-4b0d-9d55-6a1f3e3c2a10"
    )


# ---------------------------------------------------------------------------------- writing


def test_round_trip_through_serialised_bytes() -> None:
    submission = parse_submit_objects(load())
    request = submit_objects_request(
        submission.submission_set, submission.entries, submission.associations
    )
    again = parse_submit_objects(etree.fromstring(etree.tostring(request)))
    assert again == submission


def test_round_trip_keeps_registry_fields_and_relationships() -> None:
    registered = replace(
        EXPECTED_ENTRY,
        entry_uuid="urn:uuid:3f7e2b36-7b76-4f8e-9a43-2f4a9d8c1e55",
        repository_unique_id="2.999.1.20",
        home_community_id="urn:oid:2.999.1.99",
        service_stop="20240315094500",
        status=DEPRECATED,
        version="2",
        confidentiality=(
            *EXPECTED_ENTRY.confidentiality,
            Code("R", "2.16.840.1.113883.5.25", "restricted"),
        ),
        authors=(
            *EXPECTED_ENTRY.authors,
            Author(telecoms=("^^Internet^rad@example.org",), specialties=("Radiology",)),
        ),
    )
    has_member = replace(EXPECTED_ASSOCIATION, target=registered.entry_uuid)
    rplc = Association(
        "urn:uuid:8a3a1d8e-2f5d-4b62-8d0e-5c7a9b1f4e21",
        "RPLC",
        registered.entry_uuid,
        "urn:uuid:0b5f8f6e-7c1c-4b0d-9d55-6a1f3e3c2a10",
        extra=(("urn:example:reason", "new series"),),
    )
    request = submit_objects_request(EXPECTED_SET, [registered], [has_member, rplc])
    again = parse_submit_objects(request, transaction="ITI-42")
    assert again == Submission(EXPECTED_SET, (registered,), (has_member, rplc))


def test_submission_omits_registry_owned_fields() -> None:
    request = submit_objects_request(EXPECTED_SET, [EXPECTED_ENTRY], [EXPECTED_ASSOCIATION])
    assert request.tag == f"{{{NS['lcm']}}}SubmitObjectsRequest"
    assert one(request, "//rim:ExtrinsicObject").get("status") is None
    assert one(request, "//rim:RegistryPackage").get("status") is None
    assert request.xpath("//rim:VersionInfo", namespaces=NS) == []


def test_entry_to_xml_is_a_leafclass_extrinsic_object() -> None:
    element = entry_to_xml(EXPECTED_ENTRY)
    assert element.tag == RIM + "ExtrinsicObject"
    assert element.get("id") == DOC
    assert element.get("mimeType") == "application/dicom"
    assert element.get("objectType") == "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
    assert element.get("status") == APPROVED
    assert one(element, "rim:VersionInfo").get("versionName") == "1"
    # ebRIM 3.0 RegistryObjectType order: Slot*, Name, Description, VersionInfo, Classification*,
    # ExternalIdentifier*
    order = [etree.QName(child).localname for child in element]
    assert order == sorted(
        order,
        key=[
            "Slot",
            "Name",
            "Description",
            "VersionInfo",
            "Classification",
            "ExternalIdentifier",
        ].index,
    )
    assert (
        one(element, "rim:Slot[@name='hash']/rim:ValueList/rim:Value").text == EXPECTED_ENTRY.hash
    )
    fmt = one(element, f"rim:Classification[@classificationScheme='{FORMAT}']")
    assert fmt.get("classifiedObject") == DOC
    assert fmt.get("nodeRepresentation") == KOS_FORMAT
    assert (
        one(fmt, "rim:Slot[@name='codingScheme']/rim:ValueList/rim:Value").text
        == "1.2.840.10008.2.6.1"
    )
    assert one(fmt, "rim:Name/rim:LocalizedString").get("value") == "Key Object Selection Document"
    pid = one(element, f"rim:ExternalIdentifier[@identificationScheme='{ENTRY_PATIENT}']")
    assert (pid.get("value"), pid.get("registryObject")) == (PATIENT, DOC)
    assert one(pid, "rim:Name/rim:LocalizedString").get("value") == "XDSDocumentEntry.patientId"
    ids = element.xpath(".//@id")
    assert isinstance(ids, list) and len(ids) == len(set(ids))  # child ids unique...
    assert entry_to_xml(EXPECTED_ENTRY).xpath(".//@id") == ids  # ...and deterministic


def test_submission_set_to_xml_carries_its_classification() -> None:
    element = submission_set_to_xml(EXPECTED_SET)
    assert element.tag == RIM + "RegistryPackage"
    node = one(element, "rim:Classification[@classificationNode]")
    assert node.get("classificationNode") == "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
    assert node.get("classifiedObject") == SS
    for scheme, value in (
        (SET_UNIQUE, EXPECTED_SET.unique_id),
        (SET_SOURCE, "2.999.1.10"),
        (SET_PATIENT, PATIENT),
    ):
        assert (
            one(element, f"rim:ExternalIdentifier[@identificationScheme='{scheme}']").get("value")
            == value
        )


def test_association_to_xml() -> None:
    element = association_to_xml(EXPECTED_ASSOCIATION)
    assert element.tag == RIM + "Association"
    assert (
        element.get("associationType")
        == "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
    )
    assert (element.get("sourceObject"), element.get("targetObject")) == (SS, DOC)
    assert (
        one(element, "rim:Slot[@name='SubmissionSetStatus']/rim:ValueList/rim:Value").text
        == "Original"
    )
    rplc = association_to_xml(Association("a2", "RPLC", "x", "y"))
    assert rplc.get("associationType") == "urn:ihe:iti:2007:AssociationType:RPLC"
    assert rplc.find(RIM + "Slot") is None


def test_object_ref() -> None:
    element = object_ref("urn:uuid:3f7e2b36-7b76-4f8e-9a43-2f4a9d8c1e55")
    assert element.tag == RIM + "ObjectRef"
    assert dict(element.attrib) == {"id": "urn:uuid:3f7e2b36-7b76-4f8e-9a43-2f4a9d8c1e55"}


# ---------------------------------------------------------------------------------- invalid metadata

Mutation = Callable[[etree._Element], None]


def _drop(xpath: str) -> Mutation:
    return lambda tree: remove(tree, xpath)


def _set(owner: str, name: str, *values: str) -> Mutation:
    return lambda tree: set_value(tree, owner, name, *values)


def _attr(xpath: str, name: str, value: str | None) -> Mutation:
    def mutate(tree: etree._Element) -> None:
        node = one(tree, xpath)
        if value is None:
            del node.attrib[name]
        else:
            node.set(name, value)

    return mutate


def _copy(xpath: str) -> Mutation:
    def mutate(tree: etree._Element) -> None:
        node = one(tree, xpath)
        clone = etree.fromstring(etree.tostring(node))
        clone.set("id", "clone")
        node.addnext(clone)

    return mutate


def _second_set(tree: etree._Element) -> None:
    second = replace(EXPECTED_SET, entry_uuid="SubmissionSet02", unique_id="2.999.1.11")
    package(tree).addnext(submission_set_to_xml(second))


def _add_slot(owner: str, name: str, value: str) -> Mutation:
    def mutate(tree: etree._Element) -> None:
        slot = etree.Element(RIM + "Slot", name=name)
        etree.SubElement(etree.SubElement(slot, RIM + "ValueList"), RIM + "Value").text = value
        one(tree, f"//rim:*[@id='{owner}']").insert(0, slot)

    return mutate


HAS_MEMBER_XPATH = f"//rim:Association[@id='{HAS_MEMBER}']"

RULES: list[tuple[str, Mutation, list[tuple[str, str]]]] = [
    # required DocumentEntry slots and their syntax (ITI TF-3 4.2.3.2)
    ("creationTime missing", _drop(slot_xpath(DOC, "creationTime")), [(METADATA, DOC)]),
    ("creationTime not DTM", _set(DOC, "creationTime", "2024-03-15"), [(METADATA, DOC)]),
    ("creationTime impossible date", _set(DOC, "creationTime", "20240230"), [(METADATA, DOC)]),
    ("creationTime twice", _set(DOC, "creationTime", "2024", "2025"), [(METADATA, DOC)]),
    ("languageCode missing", _drop(slot_xpath(DOC, "languageCode")), [(METADATA, DOC)]),
    ("languageCode malformed", _set(DOC, "languageCode", "en_US"), [(METADATA, DOC)]),
    ("sourcePatientId missing", _drop(slot_xpath(DOC, "sourcePatientId")), [(METADATA, DOC)]),
    ("serviceStartTime not DTM", _set(DOC, "serviceStartTime", "20240315T0930"), [(METADATA, DOC)]),
    ("hash not SHA-1", _set(DOC, "hash", "abc123"), [(METADATA, DOC)]),
    ("size not a number", _set(DOC, "size", "2kB"), [(METADATA, DOC)]),
    ("slot given twice", _add_slot(DOC, "languageCode", "de-DE"), [(METADATA, DOC)]),
    # entry attributes
    ("mimeType missing", _attr("//rim:ExtrinsicObject", "mimeType", None), [(METADATA, DOC)]),
    ("objectType missing", _attr("//rim:ExtrinsicObject", "objectType", None), [(METADATA, DOC)]),
    (
        "objectType on-demand",
        _attr("//rim:ExtrinsicObject", "objectType", ON_DEMAND),
        [(METADATA, DOC)],
    ),
    # required classifications, each with codingScheme and Name (ITI TF-3 4.2.3.1.2)
    ("classCode missing", _drop(classification(CLASS)), [(METADATA, DOC)]),
    ("typeCode missing", _drop(classification(TYPE)), [(METADATA, DOC)]),
    ("formatCode missing", _drop(classification(FORMAT)), [(METADATA, DOC)]),
    ("healthcareFacilityTypeCode missing", _drop(classification(FACILITY)), [(METADATA, DOC)]),
    ("practiceSettingCode missing", _drop(classification(PRACTICE)), [(METADATA, DOC)]),
    ("confidentialityCode missing", _drop(classification(CONFIDENTIALITY)), [(METADATA, DOC)]),
    ("contentTypeCode missing", _drop(classification(CONTENT_TYPE)), [(METADATA, SS)]),
    ("classCode twice", _copy(classification(CLASS)), [(METADATA, DOC)]),
    ("codingScheme missing", _drop(classification(CLASS) + "/rim:Slot"), [(METADATA, DOC)]),
    ("code Name missing", _drop(classification(FORMAT) + "/rim:Name"), [(METADATA, DOC)]),
    (
        "code value missing",
        _attr(classification(TYPE), "nodeRepresentation", ""),
        [(METADATA, DOC)],
    ),
    (
        "contentTypeCode codingScheme missing",
        _drop(classification(CONTENT_TYPE) + "/rim:Slot"),
        [(METADATA, SS)],
    ),
    (
        "classification of another object",
        _attr(classification(CLASS), "classifiedObject", SS),
        [(METADATA, DOC)],
    ),
    # authors (ITI TF-3 4.2.3.1.4)
    (
        "entry author empty",
        lambda t: [
            s.getparent().remove(s)
            for s in t.xpath(classification(ENTRY_AUTHOR) + "/rim:Slot", namespaces=NS)
        ],
        [(METADATA, DOC)],
    ),
    (
        "set author empty",
        lambda t: [
            s.getparent().remove(s)
            for s in t.xpath(classification(SET_AUTHOR) + "/rim:Slot", namespaces=NS)
        ],
        [(METADATA, SS)],
    ),
    ("two authorPerson values", _set("cl01", "authorPerson", "^A", "^B"), [(METADATA, DOC)]),
    # required external identifiers (ITI TF-3 4.2.3.1.7)
    ("entry uniqueId missing", _drop(external_id(ENTRY_UNIQUE)), [(METADATA, DOC)]),
    ("entry patientId missing", _drop(external_id(ENTRY_PATIENT)), [(METADATA, DOC)]),
    ("set uniqueId missing", _drop(external_id(SET_UNIQUE)), [(METADATA, SS)]),
    ("set sourceId missing", _drop(external_id(SET_SOURCE)), [(METADATA, SS)]),
    ("set patientId missing", _drop(external_id(SET_PATIENT)), [(METADATA, SS)]),
    (
        "set sourceId not an OID",
        _attr(external_id(SET_SOURCE), "value", "source-A"),
        [(METADATA, SS)],
    ),
    (
        "identifier of another object",
        _attr(external_id(ENTRY_UNIQUE), "registryObject", SS),
        [(METADATA, DOC)],
    ),
    # the submission set (ITI TF-3 4.2.3.3)
    ("submissionTime missing", _drop(slot_xpath(SS, "submissionTime")), [(METADATA, SS)]),
    ("submissionTime not DTM", _set(SS, "submissionTime", "20241315"), [(METADATA, SS)]),
    (
        "set not classified",
        _drop("//rim:RegistryObjectList/rim:Classification[@classificationNode]"),
        [(METADATA, SS), (METADATA, "")],
    ),
    (
        "folder",
        _attr(
            "//rim:RegistryObjectList/rim:Classification[@classificationNode]",
            "classificationNode",
            FOLDER,
        ),
        [(METADATA, SS), (METADATA, "")],
    ),
    ("two submission sets", _second_set, [(METADATA, "")]),
    # associations (ITI TF-3 4.2.2)
    ("no HasMember", _drop(HAS_MEMBER_XPATH), [(METADATA, DOC)]),
    (
        "HasMember without SubmissionSetStatus",
        _drop(HAS_MEMBER_XPATH + "/rim:Slot"),
        [(METADATA, HAS_MEMBER)],
    ),
    (
        "SubmissionSetStatus unknown",
        _set(HAS_MEMBER, "SubmissionSetStatus", "Copy"),
        [(METADATA, HAS_MEMBER)],
    ),
    (
        "unknown association type",
        _attr(HAS_MEMBER_XPATH, "associationType", "urn:example:Likes"),
        [(METADATA, HAS_MEMBER)],
    ),
    (
        "unresolved symbolic reference",
        _attr(HAS_MEMBER_XPATH, "targetObject", "Document99"),
        [("UnresolvedReferenceException", HAS_MEMBER), (METADATA, DOC)],
    ),
    # ids: UUID syntax when urn:uuid (ITI TF-3 4.2.3.1.7); unique in the request
    (
        "id not a UUID",
        _attr(HAS_MEMBER_XPATH, "id", "urn:uuid:60ffddc2-f0c9"),
        [(METADATA, "urn:uuid:60ffddc2-f0c9")],
    ),
    (
        "classification id not a UUID",
        _attr(classification(CLASS), "id", "urn:uuid:xyz"),
        [(METADATA, DOC)],
    ),
    ("same id twice", _attr(HAS_MEMBER_XPATH, "id", DOC), [(METADATA, DOC)]),
    # patient ids (ITI TF-3 4.2.3.2.16, 4.2.3.3.8)
    (
        "patientId mismatch",
        _attr(external_id(ENTRY_PATIENT), "value", "PX-9^^^&2.999.1.1&ISO"),
        [("XDSPatientIdDoesNotMatch", DOC)],
    ),
    (
        "patientId not CX with ISO authority",
        lambda t: [
            _attr(external_id(s), "value", "PX-20240315-7")(t) for s in (ENTRY_PATIENT, SET_PATIENT)
        ],
        [(METADATA, DOC), (METADATA, SS)],
    ),
    # unique ids in the message
    (
        "uniqueId used twice",
        _attr(external_id(SET_UNIQUE), "value", EXPECTED_ENTRY.unique_id),
        [("XDSRegistryDuplicateUniqueIdInMessage", DOC)],
    ),
    (
        "unexpected element",
        lambda t: etree.SubElement(one(t, "//rim:RegistryObjectList"), RIM + "Federation", id="f1"),
        [(METADATA, "")],
    ),
]


@pytest.mark.parametrize(("rule", "mutate", "expected"), RULES, ids=[r[0] for r in RULES])
def test_invalid_metadata(rule: str, mutate: Mutation, expected: list[tuple[str, str]]) -> None:
    tree = load()
    mutate(tree)
    assert errors_of(tree) == expected


def test_register_requires_hash_size_and_repository() -> None:
    tree = load()
    remove(tree, slot_xpath(DOC, "hash"))
    assert parse_submit_objects(tree).entries[0].hash == ""  # optional in ITI-41...
    assert errors_of(tree, transaction="ITI-42") == [
        (METADATA, DOC),
        (METADATA, DOC),
    ]  # ...not ITI-42


def test_every_error_is_collected_and_rendered() -> None:
    tree = load()
    remove(tree, slot_xpath(DOC, "creationTime"))
    remove(tree, classification(CONTENT_TYPE))
    one(tree, external_id(ENTRY_PATIENT)).set("value", "PX-9^^^&2.999.1.1&ISO")
    with pytest.raises(XdsError) as caught:
        parse_submit_objects(tree)
    error = caught.value
    assert [(e.code, e.location) for e in error.all()] == [
        (METADATA, DOC),
        (METADATA, SS),
        ("XDSPatientIdDoesNotMatch", DOC),
    ]
    assert "creationTime" in error.all()[0].message
    assert "contentTypeCode" in error.all()[1].message
    assert len(error.issues) == 3
    response = registry_response([error], status="Failure")
    rendered = response.xpath("rs:RegistryErrorList/rs:RegistryError", namespaces=NS)
    assert isinstance(rendered, list)
    assert [(e.get("errorCode"), e.get("location")) for e in rendered] == [  # type: ignore[union-attr]
        (METADATA, DOC),
        (METADATA, SS),
        ("XDSPatientIdDoesNotMatch", DOC),
    ]


def test_not_a_submit_objects_request() -> None:
    with pytest.raises(XdsError) as caught:
        parse_submit_objects(etree.Element("{urn:example}Other"))
    assert caught.value.code == METADATA


# ---------------------------------------------------------------------------------- errors


def test_xds_error_is_a_hub_error() -> None:
    error = XdsError(XdsError.UNKNOWN_PATIENT, "no such patient", DOC)
    assert (error.code, error.message, error.location, error.severity) == (
        "XDSUnknownPatientId",
        "no such patient",
        DOC,
        "Error",
    )
    assert (error.status, error.issue_code, error.hub_code) == (400, "processing", "HUB-1801")
    assert error.all() == [error]
    outcome = error.operation_outcome()
    assert outcome["issue"][0]["diagnostics"] == "XDSUnknownPatientId: no such patient (Document01)"  # type: ignore[index]


def test_several_flattens_and_keeps_one_alone() -> None:
    a = XdsError(XdsError.METADATA, "a", "x")
    b = XdsError(XdsError.MISSING_DOCUMENT, "b", "y")
    c = XdsError(XdsError.NON_IDENTICAL_HASH, "c", "z", severity="Warning")
    assert XdsError.several([a]) is a
    joined = XdsError.several([XdsError.several([a, b]), c])
    assert joined.all() == [a, b, c]
    assert (joined.code, joined.location) == (a.code, a.location)
    assert [i.severity for i in joined.issues] == ["error", "error", "warning"]
    with pytest.raises(ValueError):
        XdsError.several([])


def test_registry_response_failure_element_by_element() -> None:
    errors = [
        XdsError(XdsError.METADATA, "creationTime is missing", DOC),
        XdsError(XdsError.EXTRA_METADATA_NOT_SAVED, "urn:example:x ignored", severity="Warning"),
    ]
    response = registry_response(errors, status="Failure")
    assert response.tag == f"{{{NS['rs']}}}RegistryResponse"
    assert dict(response.attrib) == {
        "status": "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
    }
    (error_list,) = list(response)
    assert error_list.tag == f"{{{NS['rs']}}}RegistryErrorList"
    assert dict(error_list.attrib) == {
        "highestSeverity": "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"
    }
    first, second = list(error_list)
    assert first.tag == second.tag == f"{{{NS['rs']}}}RegistryError"
    assert dict(first.attrib) == {
        "errorCode": "XDSRegistryMetadataError",
        "codeContext": "creationTime is missing",
        "location": DOC,
        "severity": "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error",
    }
    assert dict(second.attrib) == {
        "errorCode": "XDSExtraMetadataNotSaved",
        "codeContext": "urn:example:x ignored",
        "severity": "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Warning",
    }
    assert not first.text and len(first) == 0


def test_registry_response_success_and_partial_success() -> None:
    success = registry_response([], status="Success")
    assert dict(success.attrib) == {
        "status": "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
    }
    assert len(success) == 0
    warning = XdsError(XdsError.EXTRA_METADATA_NOT_SAVED, "ignored", severity="Warning")
    partial = registry_response([warning], status="PartialSuccess")
    assert partial.get("status") == "urn:ihe:iti:2007:ResponseStatusType:PartialSuccess"
    assert one(partial, "rs:RegistryErrorList").get("highestSeverity") == (
        "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Warning"
    )
    serialised = etree.tostring(partial)
    assert b'xmlns:rs="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"' in serialised
