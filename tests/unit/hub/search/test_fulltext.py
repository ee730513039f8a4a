"""``_content`` and ``_text`` (FHIR R4 search.html#content, #text): the words a resource puts into
the index (hub/search/extract.py, hub/search/words.py) and how a search value is read
(hub/search/query.py)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from hub.errors import InvalidSearch, UnknownSearchParameter
from hub.search.extract import (
    MAX_ATTACHMENT_BYTES,
    content_words,
    extract_index_entries,
    narrative_words,
)
from hub.search.model import AnyOfCriterion, Criterion, StringEntry, StringValue
from hub.search.query import parse_search
from hub.search.registry import FULLTEXT_TYPES, SERVED_TYPES, default_registry
from hub.search.words import MAX_WORD_CHARS, MAX_WORDS, distinct_words


def b64(text: str, encoding: str = "utf-8") -> str:
    return base64.b64encode(text.encode(encoding)).decode()


def div(xhtml: str) -> dict[str, str]:
    return {
        "status": "generated",
        "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{xhtml}</div>',
    }


REPORT: dict[str, Any] = {
    "resourceType": "DiagnosticReport",
    "id": "dr-1",
    "meta": {"tag": [{"system": "urn:tag", "code": "t", "display": "Metatagword"}]},
    "extension": [{"url": "http://example.org/x", "valueString": "Extensionword"}],
    "text": div("<p>Chest CT: <b>spiculated</b> nodule &amp; <i>lymphadenopathy</i></p>"),
    "identifier": [{"system": "urn:accession", "value": "ACC4711"}],
    "status": "final",
    "category": [
        {"coding": [{"system": "http://loinc.org", "code": "LP29684-5", "display": "Radiology"}]}
    ],
    "code": {"coding": [{"system": "http://loinc.org", "code": "24627-2"}], "text": "CT Chest"},
    "subject": {"reference": "Patient/p-42", "display": "Émile Zola"},
    "effectiveDateTime": "2024-03-05T10:00:00Z",
    "conclusion": "Spiculated nodule in the right upper lobe",
    "presentedForm": [
        {
            "contentType": "text/plain; charset=utf-8",
            "data": b64("FINDINGS: Ground-glass opacity, 8 mm. IMPRESSION: Suspicious."),
            "title": "Final report",
        },
        {"contentType": "application/pdf", "data": b64("pdfonlyword"), "url": "http://x.org/r.pdf"},
    ],
}


# -- words ---------------------------------------------------------------------------------------


def test_words_are_folded_split_on_non_alphanumerics_and_distinct() -> None:
    assert distinct_words(["Pleural EFFUSION; effusion, Émphysème x 2 cm", "pleural"]) == [
        "pleural",
        "effusion",
        "emphyseme",
        "cm",
    ]
    assert distinct_words(["Straße T2-weighted under_score 北京 δέλτα"]) == [
        "strasse",
        "t2",
        "weighted",
        "under",
        "score",
        "北京",
        "δελτα",
    ]
    assert distinct_words(["a b c", ""]) == []


def test_words_are_capped_in_number_and_length_and_read_lazily() -> None:
    assert distinct_words(["x" * 100]) == ["x" * MAX_WORD_CHARS]
    many = " ".join(f"w{i}" for i in range(MAX_WORDS + 50))
    assert distinct_words([many]) == [f"w{i}" for i in range(MAX_WORDS)]
    read: list[str] = []

    def texts() -> Iterator[str]:
        for text in ("alpha beta", "gamma", "never read"):
            read.append(text)
            yield text

    assert distinct_words(texts(), limit=3) == ["alpha", "beta", "gamma"]
    assert read == ["alpha beta", "gamma"]


# -- extraction ----------------------------------------------------------------------------------


def test_content_reads_the_human_readable_text_and_the_plain_text_report() -> None:
    words = content_words(REPORT)
    for expected in (
        "chest",  # narrative, code text
        "spiculated",
        "lymphadenopathy",
        "radiology",  # coding display
        "emile",  # reference display, folded
        "zola",
        "right",  # conclusion
        "lobe",
        "findings",  # the text/plain report, decoded
        "ground",
        "glass",
        "mm",
        "suspicious",
        "final",  # attachment title
        "report",
    ):
        assert expected in words, expected
    for left_out in (
        "metatagword",  # meta
        "extensionword",  # extensions
        "acc4711",  # identifiers
        "24627",  # codes
        "lp29684",
        "loinc",  # systems
        "p-42",  # references
        "42",
        "2024",  # dates
        "pdfonlyword",  # data of a non-text attachment
        "http",  # URLs
        "b",  # tags of the narrative, one-letter words
        "amp",  # entities of the narrative
        "generated",  # the narrative's status code
    ):
        assert left_out not in words, left_out
    assert len(words) == len(set(words))


def test_text_reads_the_narrative_only() -> None:
    entries = [e for e in extract_index_entries(REPORT) if e.param == "_text"]
    assert entries == [
        StringEntry("_text", w) for w in ("chest", "ct", "spiculated", "nodule", "lymphadenopathy")
    ]
    assert narrative_words("<div><p>A&eacute;rtic <br/>root</p></div>") == ["aertic", "root"]
    assert narrative_words(None) == []


def test_the_imaging_record_types_index_content_and_narrative_and_no_other_does() -> None:
    registry = default_registry()
    for rtype in SERVED_TYPES:
        served = rtype in FULLTEXT_TYPES
        assert (registry.get(rtype, "_content") is not None) == served
        assert (registry.get(rtype, "_text") is not None) == served
        resource = {"resourceType": rtype, "id": "x", "text": div("Narrative words")}
        params = {
            (e.param, e.value)
            for e in extract_index_entries(resource)
            if isinstance(e, StringEntry)
        }
        assert (("_content", "narrative") in params) == served
        assert (("_text", "narrative") in params) == served


def test_attachments_decode_text_types_with_their_charset_and_a_byte_cap() -> None:
    def doc(content_type: str, data: str) -> dict[str, Any]:
        attachment = {"contentType": content_type, "data": data}
        return {"resourceType": "DocumentReference", "content": [{"attachment": attachment}]}

    assert content_words(doc("text/plain; charset=ISO-8859-1", b64("Lésion", "latin-1"))) == [
        "lesion"
    ]
    assert content_words(doc("text/html", b64("<p>Bone <b>scan</b></p>"))) == ["bone", "scan"]
    assert content_words(doc("text/plain", "not base64 at all!")) == []
    assert content_words(doc("text/plain", b64("Wrapped\nlines") + "\n")) == ["wrapped", "lines"]
    assert content_words(doc("image/jpeg", b64("jpegword"))) == []
    assert content_words(doc("text/plain", b64("x" * (MAX_ATTACHMENT_BYTES + 10) + " tail"))) == [
        "x" * MAX_WORD_CHARS
    ]
    report = {
        "resourceType": "DiagnosticReport",
        "presentedForm": [{"contentType": "text/plain", "data": b64("Dictated report")}],
    }
    assert [e for e in extract_index_entries(report) if e.param.startswith("_")] == [
        StringEntry("_content", "dictated"),
        StringEntry("_content", "report"),
    ]


def test_a_huge_resource_is_capped() -> None:
    notes = [{"text": f"finding{i} " * 3} for i in range(1000)]
    resource = {"resourceType": "ImagingStudy", "status": "available", "note": notes}
    found = [
        e.value
        for e in extract_index_entries(resource)
        if isinstance(e, StringEntry) and e.param == "_content"
    ]
    assert found == [f"finding{i}" for i in range(MAX_WORDS)]


def test_malformed_values_are_skipped() -> None:
    resource = {
        "resourceType": "Patient",
        "name": [{"family": 7, "given": ["Ann", None, {"x": "y"}]}, "Bob"],
        "text": {"div": 5},
        "photo": [{"contentType": "text/plain", "data": 12}],
    }
    assert content_words(resource) == ["bob", "ann"]  # strings of a list first
    deep: dict[str, Any] = {"text": "bottom"}
    for _ in range(5000):  # deeper than Python's recursion limit
        deep = {"item": [deep]}
    assert content_words({"resourceType": "List", **deep}) == ["bottom"]


# -- queries -------------------------------------------------------------------------------------

CONTENT = default_registry().ref("DiagnosticReport", "_content")


def words_of(criterion: Any) -> list[str]:
    assert isinstance(criterion, Criterion)
    return [v.value for v in criterion.values if isinstance(v, StringValue)]


def test_query_words_of_one_value_are_anded_and_values_ored() -> None:
    one = parse_search("DiagnosticReport", [("_content", "Nodule")])
    assert [words_of(c) for c in one.criteria] == [["nodule"]]
    anded = parse_search("DiagnosticReport", [("_content", "right  Lobe.")])
    assert [words_of(c) for c in anded.criteria] == [["right"], ["lobe"]]
    ored = parse_search("DiagnosticReport", [("_content", "chest,nodule")])
    assert [words_of(c) for c in ored.criteria] == [["chest", "nodule"]]
    mixed = parse_search("DiagnosticReport", [("_text", "right lobe,Émphysème")])
    (any_of,) = mixed.criteria
    assert isinstance(any_of, AnyOfCriterion)
    assert [[words_of(c) for c in b] for b in any_of.branches] == [
        [["right"], ["lobe"]],
        [["emphyseme"]],
    ]
    assert all(c.param == CONTENT for c in one.criteria if isinstance(c, Criterion))


@pytest.mark.parametrize(
    "params",
    [
        [("_content", "")],
        [("_content", "a")],
        [("_content", "nodule,")],
        [("_content", " - ,nodule")],
        [("_content", " ".join(f"w{i}" for i in range(17)))],
        [("_content:missing", "true")],
        [("_content:exact", "Nodule")],
        [("_content:contains", "odul")],
        [("_text:not", "nodule")],
        [("_sort", "_content")],
    ],
)
def test_invalid_text_searches(params: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidSearch):
        parse_search("DiagnosticReport", params, strict=True)


def test_text_parameters_are_known_to_strict_handling_on_their_types_only() -> None:
    with pytest.raises(UnknownSearchParameter):
        parse_search("DiagnosticReport", [("_content:fuzzy", "nodule")], strict=True)
    for rtype in (None, *SERVED_TYPES):
        if rtype in FULLTEXT_TYPES:
            assert parse_search(rtype, [("_content", "nodule")], strict=True).criteria
            assert parse_search(rtype, [("_text", "nodule")], strict=True).criteria
        else:
            with pytest.raises(UnknownSearchParameter):
                parse_search(rtype, [("_content", "nodule")], strict=True)
    has = parse_search("Patient", [("_has:DiagnosticReport:subject:_content", "emile zola")])
    assert has.criteria
