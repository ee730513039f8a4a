"""Tests for hub.search.query.parse_search (FHIR R4 search.html)."""

from __future__ import annotations

import contextlib
import random
from datetime import UTC, datetime

import pytest

from hub.errors import InvalidSearch, Issue, UnknownResourceType, UnknownSearchParameter
from hub.search.model import (
    ChainedCriterion,
    CompositeValue,
    Criterion,
    DateValue,
    HasCriterion,
    Include,
    NumberValue,
    ParamRef,
    QuantityValue,
    ReferenceValue,
    SearchQuery,
    SortKey,
    StringValue,
    TokenValue,
    UriValue,
)
from hub.search.query import parse_search
from hub.search.registry import SearchParameterDef, SearchParameterRegistry, default_registry

REG = default_registry()
BASE = "https://hub.example/fhir"

# A registry with the types the served R4 set lacks: number and special.
CUSTOM = SearchParameterRegistry(
    [
        SearchParameterDef("urn:n", "Observation", "n", "number", "Observation.value"),
        SearchParameterDef("urn:near", "Location", "near", "special", "Location.position"),
    ]
)


def ref(rtype: str, code: str) -> ParamRef:
    found = REG.ref(rtype, code)
    assert found is not None
    return found


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def search(rtype: str | None, *params: tuple[str, str], **kw: object) -> SearchQuery:
    return parse_search(rtype, list(params), **kw)  # type: ignore[arg-type]


def one(rtype: str | None, name: str, value: str, **kw: object) -> object:
    query = search(rtype, (name, value), **kw)
    assert query.ignored == ()
    assert len(query.criteria) == 1
    return query.criteria[0]


def fails(
    rtype: str | None,
    *params: tuple[str, str],
    at: str,
    exc: type[InvalidSearch] = InvalidSearch,
    **kw: object,
) -> Issue:
    """The search raises exactly ``exc``, located at ``at``; returns the issue."""
    with pytest.raises(InvalidSearch) as info:
        search(rtype, *params, **kw)
    assert type(info.value) is exc
    issue = info.value.issues[0]
    assert issue.expression == (at,)
    return issue


# ---------------------------------------------------------------------------------------------
# The whole query
# ---------------------------------------------------------------------------------------------


def test_empty_search_has_the_defaults() -> None:
    assert search("Patient") == SearchQuery("Patient", count=50)
    assert parse_search("Patient", [], default_count=20) == SearchQuery("Patient", count=20)


def test_repeated_parameters_are_anded_and_commas_ored() -> None:
    assert search("Patient", ("name", "a,b"), ("name", "c")) == SearchQuery(
        "Patient",
        criteria=(
            Criterion(ref("Patient", "name"), (StringValue("a"), StringValue("b"))),
            Criterion(ref("Patient", "name"), (StringValue("c"),)),
        ),
    )


def test_unknown_resource_type() -> None:
    with pytest.raises(UnknownResourceType):
        search("Basic")


# ---------------------------------------------------------------------------------------------
# Escaping (search.html#escaping)
# ---------------------------------------------------------------------------------------------


def test_escaped_comma_bar_dollar_and_backslash() -> None:
    name = ref("Patient", "name")
    assert one("Patient", "name", r"a\,b,c") == Criterion(
        name, (StringValue("a,b"), StringValue("c"))
    )
    assert one("Patient", "name", r"a\\,b") == Criterion(
        name, (StringValue("a\\"), StringValue("b"))
    )
    assert one("Patient", "name", r"c:\dir") == Criterion(name, (StringValue(r"c:\dir"),))
    assert one("Patient", "identifier", r"s\|x|v\$") == Criterion(
        ref("Patient", "identifier"), (TokenValue("s|x", "v$", bar=True),)
    )


def test_empty_values_are_invalid() -> None:
    assert "empty" in fails("Patient", ("name", ""), at="name").diagnostics
    assert "a,,b" in fails("Patient", ("name", "a,,b"), at="name").diagnostics
    fails("Patient", ("name", "a,"), at="name")


# ---------------------------------------------------------------------------------------------
# token (search.html#token)
# ---------------------------------------------------------------------------------------------


def test_token_forms() -> None:
    assert one("Observation", "code", "http://loinc.org|1234-5,|x,http://loinc.org|,y") == (
        Criterion(
            ref("Observation", "code"),
            (
                TokenValue("http://loinc.org", "1234-5", bar=True),
                TokenValue(None, "x", bar=True),
                TokenValue("http://loinc.org", None, bar=True),
                TokenValue(None, "y"),
            ),
        )
    )


def test_token_bad_forms() -> None:
    assert "'|'" in fails("Observation", ("code", "|"), at="code").diagnostics
    fails("Observation", ("code", "a|b|c"), at="code")


def test_token_not_and_text() -> None:
    code = ref("Observation", "code")
    assert one("Observation", "code:not", "x") == Criterion(code, (TokenValue(code="x"),), "not")
    assert one("Observation", "code:text", "heart rate,bp") == Criterion(
        code, (TokenValue(text="heart rate"), TokenValue(text="bp")), "text"
    )


def test_token_of_type_on_identifiers_only() -> None:
    v2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
    assert one("Patient", "identifier:of-type", f"{v2}|MR|446053") == Criterion(
        ref("Patient", "identifier"),
        (TokenValue(code="446053", type_system=v2, type_code="MR"),),
        "of-type",
    )
    # Specimen.accessionIdentifier is an Identifier too
    assert one("Specimen", "accession:of-type", "|ACSN|9") == Criterion(
        ref("Specimen", "accession"), (TokenValue(code="9", type_code="ACSN"),), "of-type"
    )
    assert (
        "Identifier"
        in fails("Patient", ("gender:of-type", "a|b|c"), at="gender:of-type").diagnostics
    )
    fails("Patient", ("identifier:of-type", "a|MR"), at="identifier:of-type")
    fails("Patient", ("identifier:of-type", "a||v"), at="identifier:of-type")


@pytest.mark.parametrize("modifier", ["in", "not-in", "above", "below"])
def test_token_terminology_modifiers_are_not_supported(modifier: str) -> None:
    issue = fails("Observation", (f"code:{modifier}", "http://vs"), at=f"code:{modifier}")
    assert issue.code == "not-supported"
    assert f":{modifier}" in issue.diagnostics


def test_id_is_a_row_token() -> None:
    assert one("Patient", "_id", "a,b-1.2") == Criterion(
        ParamRef("_id", "token"), (TokenValue(code="a"), TokenValue(code="b-1.2"))
    )
    assert one("Patient", "_id:not", "a") == Criterion(
        ParamRef("_id", "token"), (TokenValue(code="a"),), "not"
    )
    fails("Patient", ("_id", "sys|a"), at="_id")
    fails("Patient", ("_id", "a b"), at="_id")
    fails("Patient", ("_id:text", "a"), at="_id:text")


# ---------------------------------------------------------------------------------------------
# :missing (search.html#missing)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rtype", "code"),
    [
        ("Patient", "name"),
        ("Patient", "gender"),
        ("Patient", "birthdate"),
        ("Observation", "subject"),
        ("Observation", "value-quantity"),
        ("Patient", "_profile"),
    ],
)
def test_missing_on_every_type(rtype: str, code: str) -> None:
    param = ref(rtype, code)
    assert one(rtype, f"{code}:missing", "true") == Criterion(param, (), "missing", missing=True)
    assert one(rtype, f"{code}:missing", "false") == Criterion(param, (), "missing", missing=False)
    assert "'yes'" in fails(rtype, (f"{code}:missing", "yes"), at=f"{code}:missing").diagnostics
    fails(rtype, (f"{code}:missing", "true,false"), at=f"{code}:missing")


def test_missing_on_number() -> None:
    assert one("Observation", "n:missing", "true", registry=CUSTOM) == Criterion(
        ParamRef("n", "number"), (), "missing", missing=True
    )


def test_no_missing_on_composite() -> None:
    fails("Observation", ("code-value-quantity:missing", "true"), at="code-value-quantity:missing")


# ---------------------------------------------------------------------------------------------
# string, uri
# ---------------------------------------------------------------------------------------------


def test_string_modifiers() -> None:
    name = ref("Patient", "name")
    assert one("Patient", "name", "Eve") == Criterion(name, (StringValue("Eve"),))
    assert one("Patient", "name:exact", "Eve") == Criterion(name, (StringValue("Eve"),), "exact")
    assert one("Patient", "name:contains", "v") == Criterion(name, (StringValue("v"),), "contains")
    issue = fails("Patient", ("name:text", "x"), at="name:text")
    assert "does not apply to string parameter 'name'" in issue.diagnostics


def test_uri_modifiers() -> None:
    profile = ref("Patient", "_profile")
    url = "http://example.org/fhir/StructureDefinition"
    assert one("Patient", "_profile:below", url) == Criterion(profile, (UriValue(url),), "below")
    assert one("Patient", "_profile:above", url) == Criterion(profile, (UriValue(url),), "above")
    assert one("Patient", "_source", "urn:x") == Criterion(
        ref("Patient", "_source"), (UriValue("urn:x"),)
    )
    fails("Patient", ("_profile:exact", url), at="_profile:exact")


# ---------------------------------------------------------------------------------------------
# date (search.html#date, #prefix)
# ---------------------------------------------------------------------------------------------


def test_date_precision_ranges_and_prefixes() -> None:
    march = DateValue("ge", ms("2024-03-01T00:00:00"), ms("2024-03-31T23:59:59.999"))
    year = DateValue("eq", ms("2024-01-01T00:00:00"), ms("2024-12-31T23:59:59.999"))
    assert one("Patient", "birthdate", "ge2024-03,2024") == Criterion(
        ref("Patient", "birthdate"), (march, year)
    )


@pytest.mark.parametrize("prefix", ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"])
def test_every_date_prefix(prefix: str) -> None:
    day = (ms("2024-03-05T00:00:00"), ms("2024-03-05T23:59:59.999"))
    assert one("Patient", "_lastUpdated", f"{prefix}2024-03-05") == Criterion(
        ParamRef("_lastUpdated", "date"),
        (DateValue(prefix, *day),),  # type: ignore[arg-type]
    )


def test_date_with_zone_whose_plus_became_a_space() -> None:
    second = ms("2024-03-05T09:00:00")
    assert one("Patient", "_lastUpdated", "lt2024-03-05T10:00:00 01:00") == Criterion(
        ParamRef("_lastUpdated", "date"), (DateValue("lt", second, second + 999),)
    )


@pytest.mark.parametrize(
    "value", ["2024-13", "yesterday", "xx2024", "ge", "2024-02-30", "20240101"]
)
def test_bad_dates(value: str) -> None:
    issue = fails("Patient", ("birthdate", value), at="birthdate")
    assert "birthdate" in issue.diagnostics
    assert value in issue.diagnostics


def test_date_has_no_modifiers_but_missing() -> None:
    assert (
        "does not apply"
        in fails("Patient", ("birthdate:exact", "2024"), at="birthdate:exact").diagnostics
    )


# ---------------------------------------------------------------------------------------------
# number and quantity (search.html#number, #quantity)
# ---------------------------------------------------------------------------------------------


def test_number_implicit_precision() -> None:
    assert one("Observation", "n", "100,100.00,1e2,gt1.0e2,-0.5", registry=CUSTOM) == Criterion(
        ParamRef("n", "number"),
        (
            NumberValue("eq", 100.0, 99.5, 100.5),
            NumberValue("eq", 100.0, 99.995, 100.005),
            NumberValue("eq", 100.0, 50.0, 150.0),
            NumberValue("gt", 100.0, 95.0, 105.0),
            NumberValue("eq", -0.5, -0.55, -0.45),
        ),
    )


@pytest.mark.parametrize(
    "value", ["abc", "1,5x", "zz1", "gt", "1e999", "1_000", "NaN", "0x10", "1.", "Infinity"]
)
def test_bad_numbers(value: str) -> None:
    fails("Observation", ("n", value), at="n", registry=CUSTOM)


def test_number_rejects_modifiers() -> None:
    fails("Observation", ("n:exact", "1"), at="n:exact", registry=CUSTOM)


def test_quantity_forms() -> None:
    ucum = "http://unitsofmeasure.org"
    assert one("Observation", "value-quantity", f"le5.4|{ucum}|mg,5.4||mg,5") == Criterion(
        ref("Observation", "value-quantity"),
        (
            QuantityValue("le", 5.4, 5.35, 5.45, ucum, "mg"),
            QuantityValue("eq", 5.4, 5.35, 5.45, None, "mg"),
            QuantityValue("eq", 5.0, 4.5, 5.5),
        ),
    )


@pytest.mark.parametrize("value", ["5.4|mg", "mg", "5.4|a|b|c", "ab5"])
def test_bad_quantities(value: str) -> None:
    fails("Observation", ("value-quantity", value), at="value-quantity")


# ---------------------------------------------------------------------------------------------
# reference (search.html#reference)
# ---------------------------------------------------------------------------------------------


def test_reference_forms() -> None:
    subject = ref("Observation", "subject")
    assert search(
        "Observation",
        ("subject", "Patient/1,7,Patient/2/_history/3"),
        ("patient", "9"),
        ("subject", f"{BASE}/Patient/4,http://other.example/fhir/Patient/5"),
        base_url=BASE + "/",
    ).criteria == (
        Criterion(
            subject,
            (
                ReferenceValue("Patient", "1"),
                ReferenceValue(None, "7"),
                ReferenceValue("Patient", "2", version="3"),
            ),
        ),
        Criterion(ref("Observation", "patient"), (ReferenceValue("Patient", "9"),)),
        Criterion(
            subject,
            (
                ReferenceValue("Patient", "4"),
                ReferenceValue(url="http://other.example/fhir/Patient/5"),
            ),
        ),
    )


def test_reference_canonical_with_version() -> None:
    assert one(
        "ServiceRequest", "instantiates-canonical", "http://x.org/PlanDefinition/p|2.0"
    ) == Criterion(
        ref("ServiceRequest", "instantiates-canonical"),
        (ReferenceValue(url="http://x.org/PlanDefinition/p", version="2.0"),),
    )


def test_reference_type_modifier() -> None:
    subject = ref("Observation", "subject")
    assert one("Observation", "subject:Patient", "123,Patient/4") == Criterion(
        subject,
        (ReferenceValue("Patient", "123"), ReferenceValue("Patient", "4")),
        "type",
        type_filter="Patient",
    )
    issue = fails("Observation", ("subject:Practitioner", "1"), at="subject:Practitioner")
    assert "not a target" in issue.diagnostics
    fails("Observation", ("subject:Patient", "Location/1"), at="subject:Patient")


def test_reference_identifier_modifier() -> None:
    subject = ref("Observation", "subject")
    assert one("Observation", "subject:identifier", "http://mrn|12,|13,14") == Criterion(
        subject,
        (
            ReferenceValue(identifier_system="http://mrn", identifier_value="12"),
            ReferenceValue(identifier_value="13"),
            ReferenceValue(identifier_value="14"),
        ),
        "identifier",
    )
    fails("Observation", ("subject:identifier", "a|b|c"), at="subject:identifier")


@pytest.mark.parametrize(
    "value",
    ["Practitioner/1", "Patient/a b", "patient/1", "Patient/1/2", "a/b/c/d", "Patient/", "1|2"],
)
def test_bad_references(value: str) -> None:
    fails("Observation", ("subject", value), at="subject", base_url=BASE)


def test_reference_under_base_must_be_type_and_id() -> None:
    fails("Observation", ("subject", f"{BASE}/1"), at="subject", base_url=BASE)


def test_reference_modifiers() -> None:
    fails("Observation", ("subject:exact", "1"), at="subject:exact")
    assert fails("Observation", ("subject:below", "1"), at="subject:below").code == "not-supported"


# ---------------------------------------------------------------------------------------------
# composite (search.html#composite)
# ---------------------------------------------------------------------------------------------


def test_composite_components_by_type() -> None:
    assert one(
        "Observation", "code-value-quantity", r"http://loinc.org|8480-6$gt100||mm[Hg],a\$b$5"
    ) == Criterion(
        ref("Observation", "code-value-quantity"),
        (
            CompositeValue(
                (
                    TokenValue("http://loinc.org", "8480-6", bar=True),
                    QuantityValue("gt", 100.0, 99.5, 100.5, None, "mm[Hg]"),
                )
            ),
            CompositeValue((TokenValue(code="a$b"), QuantityValue("eq", 5.0, 4.5, 5.5))),
        ),
    )
    assert one("Observation", "code-value-date", "x$ge2024") == Criterion(
        ref("Observation", "code-value-date"),
        (
            CompositeValue(
                (
                    TokenValue(code="x"),
                    DateValue("ge", ms("2024-01-01T00:00:00"), ms("2024-12-31T23:59:59.999")),
                )
            ),
        ),
    )


@pytest.mark.parametrize("value", ["x", "x$1$2", "x$", "$1", "x$abc"])
def test_bad_composites(value: str) -> None:
    fails("Observation", ("code-value-quantity", value), at="code-value-quantity")


def test_composite_takes_no_modifier() -> None:
    fails("Observation", ("code-value-quantity:exact", "x$1"), at="code-value-quantity:exact")


def test_special_is_not_supported() -> None:
    issue = fails("Location", ("near", "1|2"), at="near", registry=CUSTOM)
    assert issue.code == "not-supported"


# ---------------------------------------------------------------------------------------------
# Unknown parameters and modifiers (search.html#errors)
# ---------------------------------------------------------------------------------------------


def test_unknown_parameters_are_ignored_when_lenient() -> None:
    query = search(
        "Patient", ("foo", "1"), ("name:sounds-like", "x"), ("gender", "male"), ("foo", "2")
    )
    assert query == SearchQuery(
        "Patient",
        criteria=(Criterion(ref("Patient", "gender"), (TokenValue(code="male"),)),),
        ignored=("foo", "name:sounds-like"),
    )


def test_unknown_parameters_fail_when_strict() -> None:
    issue = fails("Patient", ("foo", "1"), at="foo", exc=UnknownSearchParameter, strict=True)
    assert issue.code == "not-supported"
    assert "'foo'" in issue.diagnostics
    issue = fails(
        "Patient",
        ("name:sounds-like", "x"),
        at="name:sounds-like",
        exc=UnknownSearchParameter,
        strict=True,
    )
    assert ":sounds-like" in issue.diagnostics


def test_bad_values_fail_even_when_lenient() -> None:
    fails("Patient", ("birthdate", "soon"), at="birthdate")


def test_empty_modifier() -> None:
    fails("Patient", ("name:", "x"), at="name:")


# ---------------------------------------------------------------------------------------------
# Chaining (search.html#chaining)
# ---------------------------------------------------------------------------------------------


def test_chain_with_type_modifier() -> None:
    assert one("Observation", "subject:Patient.name", "smith") == ChainedCriterion(
        ref("Observation", "subject"),
        "Patient",
        Criterion(ref("Patient", "name"), (StringValue("smith"),)),
    )


def test_chain_through_single_target() -> None:
    assert one("Observation", "patient.identifier", "sys|v") == ChainedCriterion(
        ref("Observation", "patient"),
        "Patient",
        Criterion(ref("Patient", "identifier"), (TokenValue("sys", "v", bar=True),)),
    )


def test_chain_picks_the_only_target_with_the_parameter() -> None:
    # subject targets Device, Group, Location, Patient: only Patient has birthdate
    assert one("Observation", "subject.birthdate", "2024") == ChainedCriterion(
        ref("Observation", "subject"),
        "Patient",
        Criterion(
            ref("Patient", "birthdate"),
            (DateValue("eq", ms("2024-01-01T00:00:00"), ms("2024-12-31T23:59:59.999")),),
        ),
    )


def test_ambiguous_chain_asks_for_a_type() -> None:
    issue = fails("Observation", ("subject.name", "x"), at="subject.name")
    assert "Location, Patient" in issue.diagnostics
    assert "subject:Location.name" in issue.diagnostics


def test_multi_level_chain() -> None:
    assert one("DiagnosticReport", "based-on.requester:Practitioner.name:exact", "Ann") == (
        ChainedCriterion(
            ref("DiagnosticReport", "based-on"),
            "ServiceRequest",
            ChainedCriterion(
                ref("ServiceRequest", "requester"),
                "Practitioner",
                Criterion(ref("Practitioner", "name"), (StringValue("Ann"),), "exact"),
            ),
        )
    )


def test_bad_chains() -> None:
    assert "cannot chain" in fails("Observation", ("code.name", "x"), at="code.name").diagnostics
    fails("Observation", ("subject:Group.name", "x"), at="subject:Group.name")  # not served
    fails("Observation", ("subject:identifier.name", "x"), at="subject:identifier.name")
    fails("Observation", ("subject:Patient.", "x"), at="subject:Patient.")
    fails(
        "Observation",
        ("patient._has:Observation:patient:code", "x"),
        at="patient._has:Observation:patient:code",
    )
    fails("Observation", ("subject:Patient.name", "a,,b"), at="subject:Patient.name")


def test_unknown_chained_parameter() -> None:
    assert search("Observation", ("patient.foo", "x")).ignored == ("patient.foo",)
    assert search("Observation", ("subject.foo", "x")).ignored == ("subject.foo",)
    fails(
        "Observation",
        ("patient.foo", "x"),
        at="patient.foo",
        exc=UnknownSearchParameter,
        strict=True,
    )


# ---------------------------------------------------------------------------------------------
# Reverse chaining (search.html#has)
# ---------------------------------------------------------------------------------------------


def test_has() -> None:
    assert one("Patient", "_has:Observation:patient:code", "1234-5") == HasCriterion(
        "Observation",
        ref("Observation", "patient"),
        Criterion(ref("Observation", "code"), (TokenValue(code="1234-5"),)),
    )


def test_nested_has_and_chain_inside_has() -> None:
    name = "_has:Observation:patient:_has:DiagnosticReport:result:subject:Patient.name"
    assert one("Patient", name, "x") == HasCriterion(
        "Observation",
        ref("Observation", "patient"),
        HasCriterion(
            "DiagnosticReport",
            ref("DiagnosticReport", "result"),
            ChainedCriterion(
                ref("DiagnosticReport", "subject"),
                "Patient",
                Criterion(ref("Patient", "name"), (StringValue("x"),)),
            ),
        ),
    )


def test_bad_has() -> None:
    at = "_has:Observation:patient"
    assert "expected _has:Type" in fails("Patient", (at, "x"), at=at).diagnostics
    at = "_has:Observation:code:status"
    assert "not a reference" in fails("Patient", (at, "x"), at=at).diagnostics
    at = "_has:Observation:patient:code"
    assert "cannot refer to Practitioner" in fails("Practitioner", (at, "x"), at=at).diagnostics
    fails("Patient", ("_has:Basic:subject:code", "x"), at="_has:Basic:subject:code")
    fails(None, ("_has:Observation:patient:code", "x"), at="_has:Observation:patient:code")


def test_has_with_unknown_parameters() -> None:
    query = search(
        "Patient", ("_has:Observation:foo:code", "x"), ("_has:Observation:patient:foo", "x")
    )
    assert query.ignored == ("_has:Observation:foo:code", "_has:Observation:patient:foo")
    fails(
        "Patient",
        ("_has:Observation:foo:code", "x"),
        at="_has:Observation:foo:code",
        exc=UnknownSearchParameter,
        strict=True,
    )


# ---------------------------------------------------------------------------------------------
# Result parameters (search.html#return)
# ---------------------------------------------------------------------------------------------


def test_result_parameters() -> None:
    query = search(
        "Observation",
        ("_sort", "-date,_id, -_lastUpdated"),
        ("_count", "10"),
        ("_offset", "20"),
        ("_total", "estimate"),
        ("_summary", "data"),
        ("_elements", "id,status, code"),
        ("_format", "json"),
        ("_pretty", "true"),
    )
    assert query == SearchQuery(
        "Observation",
        sort=(
            SortKey(ref("Observation", "date"), descending=True),
            SortKey(ParamRef("_id", "token")),
            SortKey(ParamRef("_lastUpdated", "date"), descending=True),
        ),
        count=10,
        offset=20,
        total="estimate",
        summary="data",
        elements=("id", "status", "code"),
    )


def test_count_is_clamped_and_may_be_zero() -> None:
    assert search("Patient", ("_count", "5000")).count == 1000
    assert search("Patient", ("_count", "5000"), max_count=100).count == 100
    assert search("Patient", ("_count", "9" * 40)).count == 1000
    assert search("Patient", ("_count", "0")).count == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("_count", "-1"),
        ("_count", "ten"),
        ("_count", "1.5"),
        ("_count", ""),
        ("_offset", "-5"),
        ("_total", "exact"),
        ("_summary", "yes"),
        ("_summary", ""),
        ("_elements", "id,"),
        ("_elements", "name.given"),
        ("_sort", "foo"),
        ("_sort", "-"),
        ("_sort", "name,"),
        ("_sort", "code-value-quantity"),
    ],
)
def test_bad_result_parameters(name: str, value: str) -> None:
    issue = fails("Observation", (name, value), at=name, strict=False)
    assert name in issue.diagnostics


def test_result_parameters_only_once() -> None:
    fails("Patient", ("_count", "1"), ("_count", "2"), at="_count")


def test_includes() -> None:
    subject = ref("Observation", "subject")
    query = search(
        "Observation",
        ("_include", "Observation:subject"),
        ("_include:iterate", "Observation:subject:Patient"),
        ("_include:recurse", "Observation:*"),
        ("_revinclude", "DiagnosticReport:result"),
    )
    assert query.includes == (
        Include("Observation", subject),
        Include("Observation", subject, "Patient", iterate=True),
        Include("Observation", ParamRef("*", "reference"), iterate=True),
        Include("DiagnosticReport", ref("DiagnosticReport", "result"), reverse=True),
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("_include", "Observation"),
        ("_include", "Basic:subject"),
        ("_include", "Observation:foo"),
        ("_include", "Observation:code"),
        ("_include", "Observation:subject:Practitioner"),
        ("_include", "Observation:subject:"),
        ("_include", "Observation:*:Basic"),
        ("_include:deep", "Observation:subject"),
        ("_revinclude", "Observation:a:b:c"),
    ],
)
def test_bad_includes(name: str, value: str) -> None:
    fails("Observation", (name, value), at=name)


# ---------------------------------------------------------------------------------------------
# System-level search (search.html#all)
# ---------------------------------------------------------------------------------------------


def test_system_search_takes_common_parameters() -> None:
    query = search(
        None,
        ("_id", "a"),
        ("_lastUpdated", "gt2024"),
        ("_tag", "s|t"),
        ("name", "x"),
        ("_sort", "-_lastUpdated"),
    )
    assert query == SearchQuery(
        None,
        criteria=(
            Criterion(ParamRef("_id", "token"), (TokenValue(code="a"),)),
            Criterion(
                ParamRef("_lastUpdated", "date"),
                (DateValue("gt", ms("2024-01-01T00:00:00"), ms("2024-12-31T23:59:59.999")),),
            ),
            Criterion(ref("Patient", "_tag"), (TokenValue("s", "t", bar=True),)),
        ),
        sort=(SortKey(ParamRef("_lastUpdated", "date"), descending=True),),
        ignored=("name",),
    )
    fails(None, ("name", "x"), at="name", exc=UnknownSearchParameter, strict=True)
    fails(None, ("_sort", "name"), at="_sort")


def test_type_parameter_is_not_supported() -> None:
    assert fails(None, ("_type", "Patient,Observation"), at="_type").code == "not-supported"
    assert fails("Patient", ("_type", "Patient"), at="_type").code == "not-supported"


# ---------------------------------------------------------------------------------------------
# Garbage in: only ever InvalidSearch out
# ---------------------------------------------------------------------------------------------

FUZZ_PARAMS = [
    ("Patient", "name"),
    ("Patient", "name:exact"),
    ("Patient", "identifier"),
    ("Patient", "identifier:of-type"),
    ("Patient", "gender:text"),
    ("Patient", "birthdate"),
    ("Patient", "_id"),
    ("Patient", "_lastUpdated"),
    ("Patient", "active:missing"),
    ("Patient", "_profile:below"),
    ("Observation", "n"),
    ("Observation", "value-quantity"),
    ("Observation", "subject"),
    ("Observation", "subject:Patient"),
    ("Observation", "subject:identifier"),
    ("Observation", "code-value-quantity"),
    ("Observation", "code-value-date"),
    ("DocumentReference", "relationship"),
    ("Observation", "_sort"),
    ("Observation", "_count"),
    ("Observation", "_offset"),
    ("Observation", "_elements"),
    ("Observation", "_include"),
    ("Observation", "_summary"),
]
ALPHABET = "0123456789-+.:|$,\\/ eEgtlTZ_aA*é\u0663\x00%"


def test_fuzz_values_only_raise_invalid_search() -> None:
    rnd = random.Random(4011)
    registry = SearchParameterRegistry(
        [
            *CUSTOM.for_type("Observation"),
            *(d for t in ("Patient", "Observation", "DocumentReference") for d in REG.for_type(t)),
        ]
    )
    outcomes: dict[str, set[bool]] = {}
    for rtype, name in FUZZ_PARAMS:
        for _ in range(400):
            value = "".join(rnd.choice(ALPHABET) for _ in range(rnd.randint(0, 24)))
            for prefix in ("", "ge", "2024-0", "Patient/", "1e", "http://a|"):
                parsed = False
                with contextlib.suppress(InvalidSearch):
                    parse_search(rtype, [(name, prefix + value)], registry=registry, base_url=BASE)
                    parsed = True
                outcomes.setdefault(name, set()).add(parsed)
    # garbage was refused for every parameter and accepted for those with a loose syntax
    assert all(False in seen for seen in outcomes.values())
    never = {n for n, seen in outcomes.items() if True not in seen}
    assert never == {"_include", "_sort", "_summary", "active:missing", "code-value-date"}


def test_fuzz_names_only_raise_invalid_search() -> None:
    rnd = random.Random(4012)
    pieces = [
        "subject",
        "patient",
        ":",
        ".",
        "Patient",
        "_has",
        "name",
        "code",
        "missing",
        "x",
        "*",
    ]
    parsed = 0
    for _ in range(3000):
        name = "".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 8)))
        for strict in (False, True):
            with contextlib.suppress(InvalidSearch):
                parsed += bool(parse_search("Observation", [(name, "1")], strict=strict).criteria)
    assert parsed > 0
