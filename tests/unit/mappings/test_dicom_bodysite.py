"""Body Part Examined -> SNOMED CT (PS3.16 Annex L) and laterality -> SNOMED CT (CID 244).

The table's codes are checked against pydicom's SNOMED CT concept dictionary, which pydicom
generates from PS3.16: an independent source, so a mistyped code fails here.
"""

from __future__ import annotations

import pytest
from pydicom.sr.codedict import codes

from mappings.dicom_bodysite import (
    BODY_PART_TO_SNOMED,
    LATERALITY_TO_SNOMED,
    body_part_coding,
    laterality_coding,
)

SCT = "http://snomed.info/sct"


def pydicom_snomed() -> dict[str, set[str]]:
    meanings: dict[str, set[str]] = {}
    for concept in codes.SCT.concepts.values():
        meanings.setdefault(concept.value, set()).add(concept.meaning.lower())
    return meanings


def test_every_code_is_a_snomed_concept_pydicom_knows() -> None:
    known = pydicom_snomed()
    unknown = {term: code for term, (code, _) in BODY_PART_TO_SNOMED.items() if code not in known}
    assert not unknown


def test_cid_4031_concepts_have_pydicoms_meaning() -> None:
    cid_4031 = {c.value: c.meaning for c in codes.CID4031.concepts.values()}
    mismatched = {
        term: (meaning, cid_4031[code])
        for term, (code, meaning) in BODY_PART_TO_SNOMED.items()
        if code in cid_4031 and meaning.lower() != cid_4031[code].lower()
    }
    assert not mismatched
    covered = sum(1 for code, _ in BODY_PART_TO_SNOMED.values() if code in cid_4031)
    assert covered >= 90  # most of CID 4031 has a defined term


def test_terms_are_defined_term_shaped() -> None:
    for term in BODY_PART_TO_SNOMED:
        assert term.isupper() and term.isalnum() and len(term) <= 16, term


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("CHEST", "816094009"),
        ("THORAX", "43799004"),
        ("CSPINE", "122494005"),
        ("c spine", "122494005"),
        ("Abdomen_Pelvis", "818982008"),
        ("HEART", "80891009"),
        ("BREAST", "76752008"),
        ("EYE", "81745001"),
    ],
)
def test_body_part_coding(value: str, code: str) -> None:
    coding = body_part_coding(value)
    assert coding is not None
    assert coding["system"] == SCT and coding["code"] == code and coding["display"]


@pytest.mark.parametrize("value", ["", "HEAD AND TOES", "FOOBAR"])
def test_unknown_body_part(value: str) -> None:
    assert body_part_coding(value) is None


@pytest.mark.parametrize(
    ("value", "code"), [("R", "24028007"), ("L", "7771000"), ("B", "51440002"), (" r ", "24028007")]
)
def test_laterality_coding(value: str, code: str) -> None:
    assert laterality_coding(value) == {
        "system": SCT,
        "code": code,
        "display": LATERALITY_TO_SNOMED[value.strip().upper()][1],
    }


@pytest.mark.parametrize("value", ["U", "", "X"])
def test_no_laterality(value: str) -> None:
    assert laterality_coding(value) is None


def test_laterality_codes_are_cid_244() -> None:
    cid_244 = {c.value for c in codes.CID244.concepts.values()}
    assert {code for code, _ in LATERALITY_TO_SNOMED.values()} <= cid_244
