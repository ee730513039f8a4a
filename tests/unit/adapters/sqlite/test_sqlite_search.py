"""The SQLite search compiler with hand-built queries: errors, query plans (the driving criterion,
index use), parameter binding, totals. Matching semantics are in tests/contract."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.sqlite import SqliteEngine
from adapters.sqlite.search import run_search
from hub.errors import InvalidSearch
from hub.search.model import (
    ChainedCriterion,
    CompositeValue,
    Criterion,
    DateEntry,
    DateValue,
    HasCriterion,
    ParamRef,
    ReferenceEntry,
    ReferenceValue,
    SearchQuery,
    SortKey,
    StringEntry,
    StringValue,
    TokenEntry,
    TokenValue,
)

GENDER = ParamRef("gender", "token")
PATIENT = ParamRef("patient", "reference", ("Patient",))
STARTED = ParamRef("started", "date")
FAMILY = ParamRef("family", "string")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[SqliteEngine]:
    eng = SqliteEngine("sqlite://", data_dir=str(tmp_path))
    with eng.repository.transaction() as tx:
        tx.put("Patient", "p0", {"resourceType": "Patient"}, [StringEntry("family", "O'Brien")])
        for i in range(60):
            tx.put(
                "ImagingStudy",
                f"s{i}",
                {"resourceType": "ImagingStudy"},
                [
                    TokenEntry("modality", None, "CT"),
                    ReferenceEntry("patient", "Patient", f"p{i % 30}"),
                    DateEntry("started", 1_600_000_000_000 + i, 1_600_000_000_000 + i),
                ],
            )
    yield eng
    eng.close()


def search(engine: SqliteEngine, *criteria: Criterion, **kw: object) -> list[str]:
    query = SearchQuery("ImagingStudy", tuple(criteria), **kw)  # type: ignore[arg-type]
    return [i for _, i in engine.search_index.search(query).matches]


class Spy:
    """Records the SQL a search runs, with each statement's query plan."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.plans: list[tuple[str, list[str]]] = []
        self.params: list[list[object]] = []

    def execute(self, sql: str, params: object = ()) -> sqlite3.Cursor:
        plan = [row[3] for row in self.conn.execute("EXPLAIN QUERY PLAN " + sql, params)]  # type: ignore[arg-type]
        self.plans.append((sql, plan))
        self.params.append(list(params))  # type: ignore[call-overload]
        return self.conn.execute(sql, params)  # type: ignore[arg-type]


def traced(engine: SqliteEngine, query: SearchQuery) -> list[tuple[str, list[str]]]:
    return spied(engine, query).plans


def spied(engine: SqliteEngine, query: SearchQuery) -> Spy:
    spy = Spy(engine._db.reader())
    run_search(engine._db, spy, query)  # type: ignore[arg-type]
    return spy


def test_the_most_selective_criterion_drives_the_query(engine: SqliteEngine) -> None:
    query = SearchQuery(
        "ImagingStudy",
        (
            Criterion(ParamRef("modality", "token"), (TokenValue(code="CT"),)),
            Criterion(STARTED, (DateValue("ge", 0, 0),)),
            Criterion(PATIENT, (ReferenceValue("Patient", "p7"),)),
        ),
    )
    plans = traced(engine, query)
    (main_sql, main_plan) = next((s, p) for s, p in plans if s.startswith("SELECT r.pk"))
    # the patient's few studies drive, bound as their pks; the other criteria are predicates
    assert "r.pk IN (SELECT pk FROM resource WHERE pk IN" in main_sql
    assert "idx_reference" not in main_sql and main_sql.count("EXISTS") == 2
    assert "SEARCH r USING INTEGER PRIMARY KEY (rowid=?)" in main_plan
    # every other criterion is probed by the resource's primary key, never by a value index
    correlated = [step for step in main_plan if step.startswith("SEARCH x")][1:]
    assert correlated and all("PRIMARY KEY (res_pk=? AND pid=?)" in s for s in correlated)
    scans = [
        s
        for _, plan in plans
        for s in plan
        if s.startswith("SCAN") and "subquery" not in s and "json_each" not in s  # bound pks
    ]
    assert scans == [], plans
    found = engine.search_index.search(query)
    assert sorted(found.matches) == [("ImagingStudy", "s37"), ("ImagingStudy", "s7")]


def test_sorting_reads_values_by_primary_key(engine: SqliteEngine) -> None:
    query = SearchQuery(
        "ImagingStudy",
        (Criterion(PATIENT, (ReferenceValue("Patient", "p3"),)),),
        sort=(SortKey(STARTED, descending=True),),
    )
    main = next(p for s, p in traced(engine, query) if s.startswith("SELECT r.pk"))
    assert any("PRIMARY KEY (res_pk=? AND pid=?)" in step for step in main), main
    assert [i for _, i in engine.search_index.search(query).matches] == ["s33", "s3"]


def test_values_are_bound_never_interpolated(engine: SqliteEngine) -> None:
    evil = "x'); DROP TABLE resource; --"
    assert search(engine, Criterion(GENDER, (TokenValue(code=evil),))) == []
    query = SearchQuery("Patient", (Criterion(FAMILY, (StringValue("o'b"),)),))
    assert engine.search_index.search(query).matches == [("Patient", "p0")]
    assert engine.repository.count() == 61


@pytest.mark.parametrize(
    "criterion",
    [
        Criterion(GENDER, (StringValue("x"),)),  # value of the wrong type
        Criterion(GENDER, (TokenValue(code="x"),), modifier="in"),
        Criterion(GENDER, (TokenValue(code="x"),), modifier="exact"),
        Criterion(GENDER, (TokenValue(),)),  # neither system nor code
        Criterion(GENDER, ()),  # no value
        Criterion(ParamRef("_text", "special"), (StringValue("x"),)),
        Criterion(FAMILY, (StringValue("x"),), modifier="below"),
        Criterion(PATIENT, (ReferenceValue(),)),
        Criterion(STARTED, (DateValue("ge", 0, 0),), modifier="exact"),
        Criterion(
            ParamRef("combo", "composite", components=("token", "date")),
            (CompositeValue((TokenValue(code="x"),)),),
        ),
        Criterion(ParamRef("combo", "composite"), modifier="missing", missing=True),
        ChainedCriterion(PATIENT, "Patient", Criterion(GENDER, (StringValue("x"),))),
        HasCriterion("Observation", PATIENT, Criterion(GENDER, (TokenValue(),))),
    ],
)
def test_invalid_criteria_are_invalid_search(engine: SqliteEngine, criterion: Criterion) -> None:
    with pytest.raises(InvalidSearch):
        engine.search_index.search(SearchQuery("Patient", (criterion,)))


def test_sorting_by_a_composite_is_invalid(engine: SqliteEngine) -> None:
    key = SortKey(ParamRef("combo", "composite", components=("token", "date")))
    with pytest.raises(InvalidSearch):
        engine.search_index.search(SearchQuery("ImagingStudy", sort=(key,)))


def test_unknown_parameter_matches_nothing_and_is_missing_everywhere(engine: SqliteEngine) -> None:
    never = ParamRef("never-indexed", "token")
    assert search(engine, Criterion(never, (TokenValue(code="x"),))) == []
    assert len(search(engine, Criterion(never, modifier="missing", missing=True), count=100)) == 60
    assert len(search(engine, Criterion(never, (TokenValue(code="x"),), modifier="not"))) == 50


def test_totals(engine: SqliteEngine) -> None:
    ct = Criterion(ParamRef("modality", "token"), (TokenValue(code="CT"),))
    for mode in ("accurate", "estimate"):
        query = SearchQuery("ImagingStudy", (ct,), count=5, total=mode)  # type: ignore[arg-type]
        assert engine.search_index.search(query).total == 60
    query = SearchQuery("ImagingStudy", (ct,), count=5, total="none")
    assert engine.search_index.search(query).total is None
    query = SearchQuery("ImagingStudy", (ct,), count=5, total="none", summary="count")
    result = engine.search_index.search(query)
    assert result.total == 60 and result.matches == []


def test_include_rounds_are_bounded(tmp_path: Path) -> None:
    from hub.search.model import Include

    eng = SqliteEngine("sqlite://", data_dir=str(tmp_path))
    link = ParamRef("link", "reference", ("Patient",))
    with eng.repository.transaction() as tx:  # a chain n0 -> n1 -> ... -> n9
        for i in range(10):
            tx.put("Patient", f"n{i}", {}, [ReferenceEntry("link", "Patient", f"n{i + 1}")])
    inc = Include("Patient", link, iterate=True)
    query = SearchQuery("Patient", (Criterion(ParamRef("_id", "token"), (TokenValue(code="n0"),)),))
    found = eng.search_index.search(SearchQuery("Patient", query.criteria, includes=(inc,)))
    # the first round plus five iterations
    assert [i for _, i in found.included] == ["n1", "n2", "n3", "n4", "n5", "n6"]
    eng.close()


def test_a_tie_at_the_first_probe_limit_is_broken_by_a_larger_probe(tmp_path: Path) -> None:
    eng = SqliteEngine("sqlite://", data_dir=str(tmp_path))
    with eng.repository.transaction() as tx:
        for i in range(3000):
            entries = [TokenEntry("status", None, "available")]
            if i % 2:
                entries.append(TokenEntry("modality", None, "CT"))
            tx.put("ImagingStudy", f"s{i}", {}, entries)
    query = SearchQuery(
        "ImagingStudy",
        (
            Criterion(ParamRef("status", "token"), (TokenValue(code="available"),)),
            Criterion(ParamRef("modality", "token"), (TokenValue(code="CT"),)),
        ),
    )
    spy = spied(eng, query)
    probes = [sql for sql, _ in spy.plans if "LIMIT 20001" in sql]
    assert len(probes) == 2, "both saturated the first probe"
    main = next(i for i, (sql, _) in enumerate(spy.plans) if sql.startswith("SELECT r.pk"))
    modality = eng._db.pids(eng._db.reader(), "ImagingStudy", "modality")
    assert spy.params[main][:2] == [*modality, "CT"], "the smaller set drives"
    assert eng.search_index.search(query).total == 1500
    eng.close()
