"""The SQLite search compiler with hand-built queries: errors, query plans (the driving criterion,
index use), parameter binding, totals. Matching semantics are in tests/contract."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
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
    IndexEntry,
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


def studies(
    tmp_path: Path, count: int, entries_of: Callable[[int], Sequence[IndexEntry]]
) -> SqliteEngine:
    """A store of ``count`` ImagingStudy entries ``s<i>`` with ``entries_of(i)``."""
    eng = SqliteEngine("sqlite://", data_dir=str(tmp_path))
    with eng.repository.transaction() as tx:
        for i in range(count):
            tx.put("ImagingStudy", f"s{i}", {}, entries_of(i))
    return eng


def test_a_tie_at_the_first_probe_limit_is_broken_by_a_larger_probe(tmp_path: Path) -> None:
    eng = studies(
        tmp_path,
        3000,
        lambda i: (
            [TokenEntry("status", None, "available")]
            + ([TokenEntry("modality", None, "CT")] if i % 2 else [])
        ),
    )
    query = SearchQuery(
        "ImagingStudy",
        (
            Criterion(ParamRef("status", "token"), (TokenValue(code="available"),)),
            Criterion(ParamRef("modality", "token"), (TokenValue(code="CT"),)),
        ),
    )
    spy = spied(eng, query)
    assert sum("LIMIT 1001" in sql for sql, _ in spy.plans) == 2, "both exceed the first limit"
    # counted again: the first up to the next limit, the second only up to the first's size
    assert any("LIMIT 20001" in sql for sql, _ in spy.plans)
    assert any("LIMIT 3000" in sql for sql, _ in spy.plans)
    modality = eng._db.pids(eng._db.reader(), "ImagingStudy", "modality")
    fetched = [
        params
        for (sql, _), params in zip(spy.plans, spy.params, strict=True)
        if sql.startswith("SELECT * FROM") and "LIMIT 20001" in sql
    ]
    assert fetched == [[*modality, "CT"]], "the smaller set drives: its pks are fetched"
    found = eng.search_index.search(SearchQuery("ImagingStudy", query.criteria, count=2000))
    assert found.total == 1500 and {int(i[1:]) % 2 for _, i in found.matches} == {1}
    eng.close()


def test_a_bound_driver_is_narrowed_by_sets_no_larger_than_its_factor(tmp_path: Path) -> None:
    """1,500 CT studies drive (over the first probe limit); the 2,000 with status "available"
    are read as one set and intersected with them, so neither is tested per candidate."""
    eng = studies(
        tmp_path,
        4000,
        lambda i: (
            [TokenEntry("status", None, "available" if i % 2 else "registered")]
            + ([TokenEntry("modality", None, "CT")] if i % 8 in (1, 2, 4) else [])
        ),
    )
    query = SearchQuery(
        "ImagingStudy",
        (
            Criterion(ParamRef("modality", "token"), (TokenValue(code="CT"),)),
            Criterion(ParamRef("status", "token"), (TokenValue(code="available"),)),
        ),
        count=2000,
        total="accurate",
    )
    spy = spied(eng, query)
    within = [sql for sql, _ in spy.plans if sql.startswith("WITH q(p)")]
    assert len(within) == 1, "the larger set narrows the driver's pks"
    main = next(sql for sql, _ in spy.plans if sql.startswith("SELECT r.pk"))
    assert "EXISTS" not in main, "both criteria are met by the narrowed pks"
    found = eng.search_index.search(query)
    expected = {f"s{i}" for i in range(4000) if i % 8 == 1}
    assert {i for _, i in found.matches} == expected and found.total == len(expected) == 500
    eng.close()


def test_a_set_larger_than_the_factor_stays_a_predicate(tmp_path: Path) -> None:
    eng = SqliteEngine("sqlite://", data_dir=str(tmp_path))
    with eng.repository.transaction() as tx:
        for i in range(1500):  # 1,010 CT studies, 1,011 with the month's date
            entries = [TokenEntry("modality", None, "CT" if i < 1010 else "MR")]
            if i >= 489:
                entries.append(DateEntry("started", 1_000 + i, 1_000 + i))
            tx.put("ImagingStudy", f"s{i}", {}, entries)
    query = SearchQuery(
        "ImagingStudy",
        (
            Criterion(ParamRef("modality", "token"), (TokenValue(code="CT"),)),
            Criterion(STARTED, (DateValue("ge", 0, 0),)),
        ),
        count=2000,
    )
    spy = spied(eng, query)
    narrowed = [sql for sql, _ in spy.plans if sql.startswith("WITH q(p)")]
    assert len(narrowed) == 1, "the dates (1,011 entries) narrow the 1,010 CT studies"
    with eng.repository.transaction() as tx:  # now 50 times more MR dates than CT studies
        for i in range(1500, 52000):
            tx.put("ImagingStudy", f"s{i}", {}, [DateEntry("started", 10**6 + i, 10**6 + i)])
    spy = spied(eng, query)
    assert not any(sql.startswith("WITH q(p)") for sql, _ in spy.plans)
    main = next(sql for sql, _ in spy.plans if sql.startswith("SELECT r.pk"))
    assert main.count("EXISTS") == 1, "the dates are tested per CT study"
    found = eng.search_index.search(query)
    assert {i for _, i in found.matches} == {f"s{i}" for i in range(489, 1010)}
    eng.close()


def test_an_accurate_total_counts_each_resource_once(engine: SqliteEngine) -> None:
    with engine.repository.transaction() as tx:  # two entries matching CT
        tx.put("ImagingStudy", "twice", {}, [TokenEntry("modality", None, "CT")] * 2)
        tx.delete("ImagingStudy", "s0")
    ct = Criterion(ParamRef("modality", "token"), (TokenValue(code="CT"),))
    query = SearchQuery("ImagingStudy", (ct,), count=0, total="accurate")
    assert engine.search_index.search(query).total == 60
    estimate = SearchQuery("ImagingStudy", (ct,), count=0, total="estimate")
    assert engine.search_index.search(estimate).total == 61, "entries, an upper bound"
    every = engine.search_index.search(SearchQuery("ImagingStudy", (ct,), count=100)).matches
    assert len(every) == len(set(every)) == 60 and ("ImagingStudy", "twice") in every
    pages = [
        engine.search_index.search(SearchQuery("ImagingStudy", (ct,), count=7, offset=o))
        for o in range(0, 63, 7)
    ]
    assert [m for page in pages for m in page.matches] == every, "pages in pk order, no repeat"
    assert {page.total for page in pages} == {60}


DAY = 86_400_000


def daily_studies(tmp_path: Path) -> SqliteEngine:
    """3,000 studies, one a day, each a whole day."""
    return studies(tmp_path, 3000, lambda i: [DateEntry("started", i * DAY, (i + 1) * DAY - 1)])


def days(first: int, end: int, count: int) -> SearchQuery:
    """``started`` from the start of day ``first`` to before day ``end``."""
    lower = DateValue("ge", first * DAY, (first + 1) * DAY - 1)
    upper = DateValue("lt", end * DAY, (end + 1) * DAY - 1)
    criteria = (Criterion(STARTED, (lower,)), Criterion(STARTED, (upper,)))
    return SearchQuery("ImagingStudy", criteria, count=count)


def test_a_month_is_driven_by_its_date_window(tmp_path: Path) -> None:
    eng = daily_studies(tmp_path)
    query = days(1000, 1030, count=100)
    spy = spied(eng, query)
    main = next(i for i, (sql, _) in enumerate(spy.plans) if sql.startswith("SELECT r.pk"))
    bound = json.loads(str(spy.params[main][0]))
    assert len(bound) == 30, "the window's entries meeting both bounds: the month's days"
    assert "EXISTS" not in spy.plans[main][0], "nothing loose in the window: bounds met"
    found = eng.search_index.search(query)
    assert sorted(int(i[1:]) for _, i in found.matches) == list(range(1000, 1030))
    with eng.repository.transaction() as tx:  # an open end: tested per candidate again
        tx.put("ImagingStudy", "open", {}, [DateEntry("started", 1010 * DAY, None)])
        tx.put("ImagingStudy", "late", {}, [DateEntry("started", 1040 * DAY, None)])
    spy = spied(eng, query)
    main = next(i for i, (sql, _) in enumerate(spy.plans) if sql.startswith("SELECT r.pk"))
    assert "EXISTS" in spy.plans[main][0]
    found = eng.search_index.search(query)
    assert {i for _, i in found.matches} == {f"s{i}" for i in range(1000, 1030)} | {"open"}
    eng.close()


def test_token_text_walks_the_distinct_displays_by_index(tmp_path: Path) -> None:
    eng = SqliteEngine("sqlite://", data_dir=str(tmp_path))
    sites = ("Chest", "Knee", "Chest wall")
    with eng.repository.transaction() as tx:
        for i in range(300):
            site = sites[i % 3]
            tx.put("ImagingStudy", f"s{i}", {}, [TokenEntry("bodysite", None, "1", text=site)])
    crit = Criterion(ParamRef("bodysite", "token"), (TokenValue(text="chest"),), modifier="text")
    query = SearchQuery("ImagingStudy", (crit,), count=300)
    plans = traced(eng, query)
    steps = [step for _, plan in plans for step in plan]
    assert any("INDEX idx_token_text (pid=? AND text_norm>?)" in step for step in steps), steps
    assert not any(step.startswith("SCAN") and "idx_token" in step for step in steps), steps
    found = eng.search_index.search(query)
    assert len(found.matches) == 200
    eng.close()


def test_an_existing_store_gains_the_search_indexes_when_opened(tmp_path: Path) -> None:
    eng = SqliteEngine("sqlite://", data_dir=str(tmp_path))
    with eng.repository.transaction() as tx:
        tx.put("ImagingStudy", "a", {}, [DateEntry("started", 0, 5), DateEntry("started", 7, 9)])
        tx.put("ImagingStudy", "b", {}, [DateEntry("started", 1, 2), DateEntry("issued", 3, 4)])
    conn = eng._db.reader()
    ords = conn.execute("SELECT ord FROM idx_date ORDER BY res_pk, low").fetchall()
    assert [o for (o,) in ords] == [0, 1, 0, 0], "each parameter's entries numbered from 0"
    path = eng._db.path
    eng.close()
    raw = sqlite3.connect(path)
    raw.executescript(
        "DROP INDEX idx_date_span; DROP INDEX idx_date_several; DROP INDEX idx_token_text;"
    )
    raw.close()
    eng = SqliteEngine("sqlite://", data_dir=str(tmp_path))
    names = {n for (n,) in eng._db.reader().execute("SELECT name FROM sqlite_master")}
    assert {"idx_date_span", "idx_date_several", "idx_token_text"} <= names
    eng.close()


def test_a_window_meeting_its_bounds_is_not_narrowed_by_them(tmp_path: Path) -> None:
    """1,500 days of a 3,000-day store in the window (over the first limit, so narrowing runs):
    its bounds are met by the window, so their sets are not read again."""
    eng = daily_studies(tmp_path)
    query = days(1000, 2500, count=10)
    spy = spied(eng, query)
    assert not any(sql.startswith("WITH q(p)") for sql, _ in spy.plans)
    main = next(sql for sql, _ in spy.plans if sql.startswith("SELECT r.pk"))
    assert "EXISTS" not in main
    found = eng.search_index.search(query)
    assert found.total == 1500 and [i for _, i in found.matches][:2] == ["s1000", "s1001"]
    eng.close()
