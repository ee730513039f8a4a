"""PostgresEngine beyond the contract suite: what only shows with several engines (replicas) on
one database, savepoints, leadership, lost connections and bad input."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import psycopg
import pytest

from adapters.postgres import PostgresEngine
from hub.engines import open_engine
from hub.errors import HubError, InvalidRequest, OutOfResources, PreconditionFailed
from hub.search.extract import extract_index_entries
from hub.search.model import StringEntry
from hub.search.query import parse_search


def patient(id: str, family: str = "Doe", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": id, "name": [{"family": family}], **extra}


def put(engine: PostgresEngine, resource: dict[str, Any], **kw: Any) -> Any:
    with engine.repository.transaction() as tx:
        return tx.put(
            resource["resourceType"],
            resource["id"],
            resource,
            extract_index_entries(resource),
            **kw,
        )


def ids(engine: PostgresEngine, rtype: str, qs: str) -> list[str]:
    from urllib.parse import parse_qsl

    query = parse_search(rtype, parse_qsl(qs), strict=True, base_url="http://x/fhir")
    return [i for _, i in engine.search_index.search(query).matches]


@pytest.fixture
def engines(postgres_database: str) -> Iterator[tuple[PostgresEngine, PostgresEngine]]:
    """Two engines on one database, as two hub replicas would have."""
    a = PostgresEngine(postgres_database)
    b = PostgresEngine(postgres_database)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_found_by_both_url_schemes(postgres_database: str, tmp_path: Any) -> None:
    for url in (postgres_database, "postgres://" + postgres_database.split("://", 1)[1]):
        engine = open_engine(url, data_dir=str(tmp_path))
        try:
            assert isinstance(engine, PostgresEngine)
            assert engine.status()["engine"] == "postgresql"
        finally:
            engine.close()


# ---- optimistic locking across replicas ------------------------------------------------------
def test_racing_updates_from_two_engines_one_wins_the_other_gets_412(
    engines: tuple[PostgresEngine, PostgresEngine],
) -> None:
    a, b = engines
    put(a, patient("p1"))
    in_a = threading.Event()
    outcome: dict[str, object] = {}

    def update_b() -> None:
        in_a.wait(5)
        try:
            put(b, patient("p1", "B"), expected_version=1)
            outcome["b"] = "won"
        except PreconditionFailed as exc:
            outcome["b"] = exc

    t = threading.Thread(target=update_b)
    t.start()
    with a.repository.transaction() as tx:
        tx.put("Patient", "p1", patient("p1", "A"), [], expected_version=1)
        in_a.set()
        time.sleep(0.3)  # b is now waiting for the row a holds
    t.join(10)
    assert isinstance(outcome["b"], PreconditionFailed) and outcome["b"].status == 412
    current = b.repository.read("Patient", "p1")
    assert current is not None and current.version == 2
    assert orjson.loads(current.data or b"")["name"] == [{"family": "A"}]


def test_no_lost_update_under_concurrent_read_modify_write(
    engines: tuple[PostgresEngine, PostgresEngine],
) -> None:
    """Increment a counter from 6 threads on 2 engines with If-Match semantics: every success
    is one version, none is lost."""
    a, b = engines
    put(a, patient("c", counter=0))
    wins: list[int] = []
    errors: list[BaseException] = []

    def worker(engine: PostgresEngine) -> None:
        try:
            for _ in range(15):
                read = engine.repository.read("Patient", "c")
                assert read is not None and read.data is not None
                body = orjson.loads(read.data)
                body["counter"] += 1
                try:
                    put(engine, body, expected_version=read.version)
                    wins.append(body["counter"])
                except PreconditionFailed:
                    pass
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(e,)) for e in (a, b) * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    final = a.repository.read("Patient", "c")
    assert final is not None and final.data is not None
    assert orjson.loads(final.data)["counter"] == len(wins) == final.version - 1
    assert sorted(wins) == list(range(1, len(wins) + 1))


def test_racing_creates_of_one_id_make_two_versions(
    engines: tuple[PostgresEngine, PostgresEngine],
) -> None:
    a, b = engines
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def create(engine: PostgresEngine, family: str) -> None:
        barrier.wait()
        results.append(put(engine, patient("same", family)))

    threads = [threading.Thread(target=create, args=(e, f)) for e, f in ((a, "A"), (b, "B"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted((r.version, r.method) for r in results) == [(1, "create"), (2, "update")]
    assert a.repository.count("Patient") == 1


# ---- savepoints --------------------------------------------------------------------------------
def test_nested_transaction_is_a_savepoint_undone_alone(
    engines: tuple[PostgresEngine, PostgresEngine],
) -> None:
    engine, _ = engines
    put(engine, patient("old"))
    start = engine.change_feed.last_seq()
    repo = engine.repository
    with repo.transaction() as outer:
        outer.put(
            "Patient", "a", patient("a", "Alpha"), extract_index_entries(patient("a", "Alpha"))
        )
        with pytest.raises(RuntimeError), repo.transaction() as inner:
            inner.put(
                "Patient", "b", patient("b", "Beta"), extract_index_entries(patient("b", "Beta"))
            )
            inner.delete("Patient", "old")
            raise RuntimeError("undo b")
        with pytest.raises(PreconditionFailed), repo.transaction() as inner:
            inner.put("Patient", "old", patient("old"), [], expected_version=9)
        with pytest.raises(InvalidRequest), repo.transaction() as inner:  # an SQL error inside
            inner.put("Patient", "nul", patient("nul"), [StringEntry("family", "a\x00b")])
        with repo.transaction() as inner:
            inner.put("Patient", "c", patient("c", "Gamma"), [])
        assert outer.read("Patient", "b") is None and outer.read("Patient", "c") is not None
        assert [
            k for k in outer.search(parse_search("Patient", [("family", "beta")])).matches
        ] == []
    assert repo.read("Patient", "b") is None and repo.read("Patient", "nul") is None
    assert repo.read("Patient", "old") is not None and not repo.read("Patient", "old").deleted  # type: ignore[union-attr]
    assert repo.read("Patient", "c") is not None
    assert ids(engine, "Patient", "family=alpha") == ["a"]
    assert ids(engine, "Patient", "family=beta") == []
    assert [(c.id, c.op) for c in engine.change_feed.read_since(start)] == [
        ("a", "create"),
        ("c", "create"),
    ]
    assert repo.count("Patient") == 3  # old, a, c


def test_outer_failure_undoes_committed_savepoints(
    engines: tuple[PostgresEngine, PostgresEngine],
) -> None:
    engine, _ = engines
    repo = engine.repository
    with pytest.raises(ValueError), repo.transaction() as outer:
        with repo.transaction() as inner:
            inner.put("Patient", "x", patient("x"), [])
        outer.put("Patient", "y", patient("y"), [])
        raise ValueError
    assert repo.read("Patient", "x") is None and repo.count() == 0
    assert engine.change_feed.last_seq() == 0


# ---- change feed -------------------------------------------------------------------------------
def test_feed_is_in_commit_order_across_engines_and_a_follower_never_skips(
    engines: tuple[PostgresEngine, PostgresEngine],
) -> None:
    """Writers on two engines hold their transactions open for random times, so seq values
    would be drawn out of commit order by a plain sequence; a follower reading as it goes must
    still see every change exactly once, in increasing seq."""
    a, b = engines
    n_threads, per_thread = 6, 12
    done = threading.Event()
    errors: list[BaseException] = []
    seen: list[int] = []
    ids_seen: list[str] = []

    def writer(engine: PostgresEngine, n: int) -> None:
        rnd = random.Random(n)
        try:
            for i in range(per_thread):
                with engine.repository.transaction() as tx:
                    tx.put("Patient", f"w{n}-{i}", {"resourceType": "Patient"}, [])
                    time.sleep(rnd.random() * 0.02)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def follower() -> None:
        cursor = 0
        while True:
            finished = done.is_set()
            for change in a.change_feed.read_since(cursor, limit=7):
                seen.append(change.seq)
                ids_seen.append(change.id)
                cursor = change.seq
            if finished and a.change_feed.read_since(cursor) == []:
                return

    f = threading.Thread(target=follower)
    f.start()
    writers = [
        threading.Thread(target=writer, args=(a if n % 2 else b, n)) for n in range(n_threads)
    ]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    f.join(30)
    assert errors == []
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    expected = {f"w{n}-{i}" for n in range(n_threads) for i in range(per_thread)}
    assert sorted(ids_seen) == sorted(expected), "the follower skipped or repeated changes"


def test_cursors_are_shared_by_engines(engines: tuple[PostgresEngine, PostgresEngine]) -> None:
    a, b = engines
    a.change_feed.set_cursor("indexer", 42)
    assert b.change_feed.cursor("indexer") == 42


# ---- leadership --------------------------------------------------------------------------------
def test_leadership_is_exclusive_and_moves_when_released_or_closed(
    postgres_database: str,
) -> None:
    a, b = PostgresEngine(postgres_database), PostgresEngine(postgres_database)
    try:
        assert a.leadership.acquire() is True
        assert a.leadership.acquire() is True  # idempotent while held
        assert b.leadership.acquire() is False
        a.leadership.release()
        assert b.leadership.acquire() is True
        assert a.leadership.acquire() is False
        b.close()  # closing the engine ends its session: the lock goes with it
        assert a.leadership.acquire() is True
    finally:
        a.close()
        b.close()


def test_a_killed_leader_connection_is_noticed_and_the_lock_moves(
    postgres_database: str,
) -> None:
    a, b = PostgresEngine(postgres_database), PostgresEngine(postgres_database)
    try:
        assert a.leadership.acquire() and not b.leadership.acquire()
        with psycopg.connect(postgres_database, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks"
                " WHERE locktype = 'advisory' AND granted"
            )
        deadline = time.monotonic() + 5
        while not b.leadership.acquire():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert a.leadership.acquire() is False  # notices its connection is gone
        assert a.leadership.acquire() is False  # and b holds it now
        b.leadership.release()
        assert a.leadership.acquire() is True  # re-acquires on a new connection
    finally:
        a.close()
        b.close()


# ---- bad input and failures -----------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_server_is_a_hub_error(tmp_path: Any) -> None:
    url = f"postgresql://nobody@127.0.0.1:{_closed_port()}/pixelhub?connect_timeout=2"
    with pytest.raises(OutOfResources) as info:
        open_engine(url, data_dir=str(tmp_path))
    assert info.value.status == 503


def test_lost_connections_become_hub_errors_and_the_pool_recovers(
    engines: tuple[PostgresEngine, PostgresEngine],
) -> None:
    engine, _ = engines
    put(engine, patient("p1"))
    with psycopg.connect(engine._db.conninfo, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    failures = 0
    for _ in range(25):  # each broken pooled connection fails once, then is replaced
        try:
            assert engine.status()["resources"] == 1
            break
        except OutOfResources:
            failures += 1
    else:  # pragma: no cover
        pytest.fail("the pool did not recover")
    assert engine.repository.read("Patient", "p1") is not None


def test_closed_engine_raises_out_of_resources(postgres_database: str) -> None:
    engine = PostgresEngine(postgres_database)
    engine.close()
    with pytest.raises(OutOfResources):
        engine.repository.read("Patient", "p1")


def test_nul_characters_are_rejected_as_bad_input(
    engines: tuple[PostgresEngine, PostgresEngine],
) -> None:
    engine, _ = engines
    with pytest.raises(InvalidRequest):
        put(engine, patient("p1", "Bad\x00Name"))
    assert engine.repository.read("Patient", "p1") is None
    with pytest.raises(InvalidRequest):
        ids(engine, "Patient", "family=a\x00")


def test_values_longer_than_an_index_key_are_stored_and_found(
    engines: tuple[PostgresEngine, PostgresEngine],
) -> None:
    engine, _ = engines
    long = "Lorem ipsum " * 400  # ~4.8 kB: beyond a btree row, so only its prefix is indexed
    entries = [StringEntry("family", long)]
    with engine.repository.transaction() as tx:
        tx.put("Patient", "long", patient("long"), entries)
        tx.put("Patient", "other", patient("other"), [StringEntry("family", long[:250] + "X")])
    assert ids(engine, "Patient", "family=lorem") == ["long", "other"]
    assert ids(engine, "Patient", f"family:exact={long}") == ["long"]
    assert ids(engine, "Patient", f"family={long[:300]}") == ["long"]


def test_two_engines_creating_the_schema_at_once(postgres_database: str) -> None:
    opened: list[PostgresEngine] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            opened.append(PostgresEngine(postgres_database))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == [] and len(opened) == 3
    finally:
        for e in opened:
            e.close()


def test_a_failed_write_poisons_only_its_transaction(
    engines: tuple[PostgresEngine, PostgresEngine],
) -> None:
    engine, _ = engines
    with pytest.raises(HubError), engine.repository.transaction() as tx:
        tx.put("Patient", "ok", patient("ok"), [])
        with pytest.raises(InvalidRequest):
            tx.put("Patient", "bad", patient("bad"), [StringEntry("family", "\x00")])
        tx.put("Patient", "after", patient("after"), [])  # refused: the transaction failed
    assert engine.repository.read("Patient", "ok") is None
    put(engine, patient("later"))
    assert engine.repository.count() == 1


def test_searches_are_planned_with_their_values_never_prepared(postgres_database: str) -> None:
    """A prepared statement may get one generic plan for every value (``_db.snapshot``, where
    searches run): statements repeated in a snapshot are never prepared on the server, while
    on a plain pooled connection psycopg prepares them after its threshold."""
    engine = PostgresEngine(postgres_database)
    statement = "SELECT %s::int + 41"

    def prepared(conn: Any) -> list[str]:
        rows = conn.execute("SELECT statement FROM pg_prepared_statements").fetchall()
        return [row[0] for row in rows if "+ 41" in row[0]]

    try:
        put(engine, patient("p1", "Garcia"))
        for _ in range(12):
            assert ids(engine, "Patient", "family=Garcia") == ["p1"]
        with engine._db.snapshot() as conn:
            for _ in range(8):
                assert conn.execute(statement, (1,)).fetchone() == (42,)
            assert prepared(conn) == []
        with engine._db.connection() as conn:
            for _ in range(8):
                assert conn.execute(statement, (1,)).fetchone() == (42,)
            assert len(prepared(conn)) == 1
    finally:
        engine.close()


def test_a_database_of_the_earlier_search_layout_is_upgraded_when_opened(
    postgres_database: str,
) -> None:
    """Key columns and covering indexes (``_schema.search_upgrade``) are added to a database
    that has the indexes on ``left(col, 200)`` of earlier versions, which are dropped."""
    engine = PostgresEngine(postgres_database)
    put(engine, patient("p1", "Garcia", gender="female"))
    engine.close()
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(
            "ALTER TABLE idx_token DROP COLUMN k_code, DROP COLUMN k_system, DROP COLUMN k_text;"
            " ALTER TABLE idx_string DROP COLUMN k_norm;"
            " DROP INDEX idx_date_from, idx_date_to, idx_reference_to;"
            " CREATE INDEX idx_token_code ON idx_token (pid, left(code, 200), left(system, 200));"
            " CREATE INDEX idx_string_norm ON idx_string (pid, left(norm, 200));"
            " CREATE INDEX idx_date_low ON idx_date (pid, low, high)"
        )
    engine = PostgresEngine(postgres_database)
    try:
        with psycopg.connect(postgres_database, autocommit=True) as conn:
            names = {row[0] for row in conn.execute("SELECT relname FROM pg_class")}
            columns = {
                row[0]
                for row in conn.execute(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_name IN ('idx_token', 'idx_string')"
                )
            }
        assert {"idx_token_key", "idx_token_text_key", "idx_string_key", "idx_date_from"} <= names
        assert not {"idx_token_code", "idx_string_norm", "idx_date_low"} & names
        assert {"k_code", "k_system", "k_text", "k_norm"} <= columns
        assert ids(engine, "Patient", "family=garc&gender=female") == ["p1"]  # rows kept keys
    finally:
        engine.close()


def test_a_value_range_is_read_from_its_index_alone(postgres_database: str) -> None:
    """The pks of a token or string value come from an index-only scan of a covering index
    (the key column, not an expression of the value, so the planner need not visit the
    table), once the table is vacuumed (its visibility map set)."""
    engine = PostgresEngine(postgres_database)
    try:
        with engine.repository.transaction() as tx:
            for i in range(2000):
                p = patient(f"p{i}", "Garcia" if i % 2 else "Lopez", gender="female")
                tx.put("Patient", p["id"], p, extract_index_entries(p))
        with psycopg.connect(postgres_database, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE idx_token, idx_string")
            pid = engine._db.pid_for_write("Patient", "gender")
            plan = "\n".join(
                row[0]
                for row in conn.execute(
                    "EXPLAIN (ANALYZE, COSTS OFF) SELECT res_pk FROM idx_token"
                    " WHERE pid = %s AND k_code = 'female' AND k_system IS NULL",
                    (pid,),
                )
            )
        assert "Index Only Scan using idx_token_key" in plan and "Heap Fetches: 0" in plan, plan
        assert "rows=2000" in plan, plan
        query = "family=garcia&_total=accurate&_count=5"
        assert len(ids(engine, "Patient", query)) == 5
    finally:
        engine.close()
