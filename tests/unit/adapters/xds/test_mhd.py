"""MHD ITI-65 Provide Document Bundle checks (adapters/xds/_mhd.py): a Bundle made by the XDS
mapping from the test-kit-style submission passes every ProvideBundle profile; each rule
broken alone gives its own located issue."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from adapters.xds._ebrim import parse_submit_objects
from adapters.xds._mhd import COMPREHENSIVE, MINIMAL, PROFILES, UNCONTAINED, check_provide_bundle
from hub.fhir.transaction import installed_bundle_checks
from mappings.xds_to_documentreference import (
    documententry_to_documentreference,
    submissionset_to_list,
)
from tests.integration.xds.conftest import new_submission

BINARY, DOC, SS = (
    "urn:uuid:0b1e0000-0000-4000-8000-000000000001",
    ("urn:uuid:0b1e0000-0000-4000-8000-000000000002"),
    "urn:uuid:0b1e0000-0000-4000-8000-000000000003",
)


def provide_bundle() -> dict[str, Any]:
    parsed = parse_submit_objects(new_submission().body)
    doc = documententry_to_documentreference(
        parsed.entries[0], patient="Patient/p1", content_url=BINARY
    )
    ss = replace(parsed.submission_set, entry_uuid="urn:uuid:0b1e0000-0000-4000-8000-00000000000f")
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": BINARY,
                "resource": {"resourceType": "Binary", "contentType": "application/dicom"},
                "request": {"method": "POST", "url": "Binary"},
            },
            {
                "fullUrl": DOC,
                "resource": doc,
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {
                "fullUrl": SS,
                "resource": submissionset_to_list(ss, patient="Patient/p1", entries=[DOC]),
                "request": {"method": "POST", "url": "List"},
            },
        ],
    }


@pytest.mark.parametrize("profile", PROFILES)
def test_what_the_xds_mapping_makes_conforms(profile: str) -> None:
    assert check_provide_bundle(provide_bundle(), profile) == []


def test_the_checks_are_installed_for_the_three_profiles() -> None:
    checks = installed_bundle_checks()
    assert all(profile in checks for profile in PROFILES)
    broken = provide_bundle()
    broken["entry"].pop()  # no SubmissionSet
    assert checks[MINIMAL](broken)


def doc(bundle: dict[str, Any]) -> dict[str, Any]:
    return dict(bundle["entry"][1]["resource"])


def submission_set(bundle: dict[str, Any]) -> dict[str, Any]:
    return dict(bundle["entry"][2]["resource"])


Breaker = Callable[[dict[str, Any]], None]
CASES: list[tuple[str, str, Breaker, str]] = [
    (MINIMAL, "Bundle.type", lambda b: b.update(type="batch"), "is a transaction"),
    (MINIMAL, "Bundle.entry", lambda b: b["entry"].pop(), "one SubmissionSet, not 0"),
    (MINIMAL, "Bundle.entry", lambda b: b["entry"].append(copy.deepcopy(b["entry"][2])),
     "one SubmissionSet, not 2"),
    (MINIMAL, "Bundle.entry[1].request.method",
     lambda b: b["entry"][1]["request"].update(method="PUT"), "is POSTed"),
    (MINIMAL, "Bundle.entry[1].resource.masterIdentifier",
     lambda b: b["entry"][1]["resource"].pop("masterIdentifier"), "masterIdentifier"),
    (MINIMAL, "Bundle.entry[1].resource.status",
     lambda b: b["entry"][1]["resource"].update(status="entered-in-error"), "current or superseded"),
    (MINIMAL, "Bundle.entry[1].resource.docStatus",
     lambda b: b["entry"][1]["resource"].update(docStatus="final"), "not allowed"),
    (MINIMAL, "Bundle.entry[1].resource.content[0].attachment.contentType",
     lambda b: b["entry"][1]["resource"]["content"][0]["attachment"].pop("contentType"), "contentType"),
    (MINIMAL, "Bundle.entry[1].resource.content[0].attachment.url",
     lambda b: b["entry"][1]["resource"]["content"][0]["attachment"].update(url="urn:uuid:nothing"),
     "a Binary of this Bundle"),
    (MINIMAL, "Bundle.entry[1].resource.content[0].attachment.data",
     lambda b: b["entry"][1]["resource"]["content"][0]["attachment"].update(data="AA=="), "inline"),
    (MINIMAL, "Bundle.entry[1].resource.content",
     lambda b: b["entry"][1]["resource"]["content"].append({"attachment": {}}), "exactly one"),
    (MINIMAL, "Bundle.entry[2].resource.extension",
     lambda b: b["entry"][2]["resource"].pop("extension"), "ihe-sourceId"),
    (MINIMAL, "Bundle.entry[2].resource.identifier",
     lambda b: b["entry"][2]["resource"].pop("identifier"), "uniqueId"),
    (MINIMAL, "Bundle.entry[2].resource.mode",
     lambda b: b["entry"][2]["resource"].update(mode="snapshot"), "working"),
    (MINIMAL, "Bundle.entry[2].resource.date",
     lambda b: b["entry"][2]["resource"].pop("date"), "submissionTime"),
    (MINIMAL, "Bundle.entry[2].resource.entry[0].item",
     lambda b: b["entry"][2]["resource"]["entry"][0]["item"].update(reference="urn:uuid:gone"),
     "a DocumentReference of this Bundle"),
    (MINIMAL, "Bundle.entry[1]",
     lambda b: b["entry"][2]["resource"].update(entry=[]), "an entry of the SubmissionSet"),
    (MINIMAL, "Bundle.entry",
     lambda b: b["entry"][1]["resource"].update(subject={"reference": "Patient/p2"}), "one patient"),
    (MINIMAL, "Bundle.entry[1].resource.subject",
     lambda b: b["entry"][1]["resource"].update(subject={"reference": "Group/g"}), "is a Patient"),
    (MINIMAL, "Bundle.entry[3]", lambda b: b["entry"].append({
        "fullUrl": "urn:uuid:f", "request": {"method": "POST", "url": "List"},
        "resource": {"resourceType": "List", "code": {"coding": [{
            "system": "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes",
            "code": "folder"}]}}}), "Folders are not supported"),
    (UNCONTAINED, "Bundle.entry[1].resource.type",
     lambda b: b["entry"][1]["resource"].pop("type"), "required (Comprehensive"),
    (UNCONTAINED, "Bundle.entry[1].resource.context.practiceSetting",
     lambda b: b["entry"][1]["resource"]["context"].pop("practiceSetting"), "practiceSetting"),
    (UNCONTAINED, "Bundle.entry[2].resource.subject",
     lambda b: b["entry"][2]["resource"].pop("subject"), "subject is required"),
    (COMPREHENSIVE, "Bundle.entry[1].resource.context.sourcePatientInfo",
     lambda b: b["entry"][1]["resource"]["context"].update(
         sourcePatientInfo={"reference": "Patient/p1"}), "contained Patient"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("profile", "where", "breaker", "said"), CASES, ids=[f"{c[1]} {c[3]}" for c in CASES]
)
def test_each_rule_broken_alone_is_located(
    profile: str, where: str, breaker: Breaker, said: str
) -> None:
    bundle = provide_bundle()
    breaker(bundle)
    issues = check_provide_bundle(bundle, profile)
    expected = [((where,), True)]
    if where.endswith(".item"):  # the document is then in no entry of the SubmissionSet either
        expected.append((("Bundle.entry[1]",), False))
    assert [(i.expression, said in i.diagnostics) for i in issues] == expected, issues
    assert all(i.code == "invariant" for i in issues)
