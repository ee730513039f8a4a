"""SqliteEngine: URL, pragmas, schema, transactions, error translation, concurrency, crash
safety. Engine-independent behaviour is in tests/contract."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from types import SimpleNamespace

import pytest

from adapters.sqlite import SqliteEngine
from adapters.sqlite._errors import translate
from adapters.sqlite.engine import database_path
from hub.errors import Conflict, HubError, OutOfResources
from hub.search.model import Criterion, ParamRef, SearchQuery, TokenEntry, TokenValue


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[SqliteEngine]:
    eng = SqliteEngine("sqlite://", data_dir=str(tmp_path))
    yield eng
    eng.close()


def gender_query(code: str) -> SearchQuery:
    crit = Criterion(ParamRef("gender", "token"), (TokenValue(code=code),))
    return SearchQuery("Patient", (crit,))


def test_registered_as_the_sqlite_engine() -> None:
    (ep,) = [e for e in entry_points(group="pixelhub.engines") if e.name == "sqlite"]
    assert ep.load() is SqliteEngine


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite://", "/data/pixelhub.db"),
        ("sqlite:///", "/data/pixelhub.db"),
        ("sqlite:///rel/hub.db", "rel/hub.db"),
        ("sqlite:////abs/hub.db", "/abs/hub.db"),
        ("sqlite:////abs/my%20hub.db?synchronous=normal", "/abs/my hub.db"),
    ],
)
def test_url(url: str, path: str) -> None:
    assert database_path(url, "/data")[0] == path


@pytest.mark.parametrize(
    "url", ["postgresql://x/y", "sqlite:///:memory:", "sqlite://host/file.db", "sqlite:///file:x"]
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(ValueError):
        database_path(url, "/data")


def test_opens_in_wal_with_full_sync_and_creates_the_data_dir(tmp_path: Path) -> None:
    eng = SqliteEngine("sqlite://", data_dir=str(tmp_path / "new" / "dir"))
    try:
        status = eng.status()
        assert status["engine"] == "sqlite" and status["wal"] is True
        assert status["synchronous"] == "FULL" and status["resources"] == 0
        assert status["path"] == str(tmp_path / "new" / "dir" / "pixelhub.db")
        raw = sqlite3.connect(str(status["path"]))
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 1
        raw.close()
    finally:
        eng.close()
    with pytest.raises(ValueError, match="synchronous"):
        SqliteEngine(f"sqlite:///{tmp_path}/x.db?synchronous=sometimes", data_dir=str(tmp_path))


def test_reopen_keeps_data_and_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hub.db"
    eng = SqliteEngine(url, data_dir=str(tmp_path))
    with eng.repository.transaction() as tx:
        tx.put("Patient", "p", {"resourceType": "Patient"}, [TokenEntry("gender", None, "f")])
    eng.close()
    eng = SqliteEngine(url, data_dir=str(tmp_path))
    assert eng.repository.read("Patient", "p") is not None
    assert eng.search_index.search(gender_query("f")).matches == [("Patient", "p")]
    eng.close()
    raw = sqlite3.connect(f"{tmp_path}/hub.db")
    raw.execute("PRAGMA user_version=99")
    raw.close()
    with pytest.raises(HubError, match="schema version 99"):
        SqliteEngine(url, data_dir=str(tmp_path))


def test_closed_engine_answers_out_of_resources(tmp_path: Path) -> None:
    eng = SqliteEngine("sqlite://", data_dir=str(tmp_path))
    eng.repository.read("Patient", "x")  # opens this thread's reader
    eng.close()
    eng.close()  # idempotent
    with pytest.raises(OutOfResources):
        eng.repository.read("Patient", "x")
    with pytest.raises(OutOfResources), eng.repository.transaction():
        pass
    with pytest.raises(OutOfResources):
        eng.status()


def test_error_translation() -> None:
    def err(cls: type[sqlite3.Error], code: int, msg: str = "x") -> sqlite3.Error:
        e = cls(msg)
        e.sqlite_errorcode = code  # type: ignore[attr-defined]
        return e

    full = translate(err(sqlite3.OperationalError, 13, "database or disk is full"))
    assert isinstance(full, OutOfResources) and "disk full" in full.message
    assert isinstance(translate(err(sqlite3.OperationalError, 10 | (3 << 8))), OutOfResources)
    busy = translate(err(sqlite3.OperationalError, 5, "database is locked"))
    assert isinstance(busy, OutOfResources) and busy.headers == {"Retry-After": "1"}
    assert isinstance(translate(err(sqlite3.OperationalError, 14)), OutOfResources)
    assert isinstance(translate(err(sqlite3.IntegrityError, 19 | (8 << 8))), Conflict)
    closed = translate(sqlite3.ProgrammingError("Cannot operate on a closed database."))
    assert isinstance(closed, OutOfResources)
    other = translate(err(sqlite3.DatabaseError, 11, "database disk image is malformed"))
    assert type(other) is HubError and other.status == 500


def test_disk_full_rolls_back_and_the_engine_recovers(engine: SqliteEngine) -> None:
    writer = engine._db._writer
    with engine.repository.transaction() as tx:
        tx.put("Patient", "small", {"resourceType": "Patient"}, [])
    pages = writer.execute("PRAGMA page_count").fetchone()[0]
    writer.execute(f"PRAGMA max_page_count={pages + 2}")
    big = {"resourceType": "Patient", "text": {"div": "x" * 200_000}}
    with pytest.raises(OutOfResources, match="disk full"), engine.repository.transaction() as tx:
        tx.put("Patient", "big", big, [])
    assert engine.repository.read("Patient", "big") is None
    assert engine.change_feed.last_seq() == 1
    writer.execute("PRAGMA max_page_count=1073741823")
    with engine.repository.transaction() as tx:
        tx.put("Patient", "big", big, [])
    assert engine.repository.read("Patient", "big") is not None


def test_another_process_holding_the_write_lock_gives_503(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    eng = SqliteEngine(f"sqlite:///{path}?busy_timeout=200", data_dir=str(tmp_path))
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(OutOfResources) as info, eng.repository.transaction():
            pass
        assert info.value.status == 503
        assert eng.repository.read("Patient", "x") is None, "readers are not blocked"
    finally:
        other.execute("ROLLBACK")
        other.close()
    with eng.repository.transaction() as tx:
        tx.put("Patient", "x", {"resourceType": "Patient"}, [])
    eng.close()


def test_nested_transaction_is_a_savepoint(engine: SqliteEngine) -> None:
    repo = engine.repository
    with repo.transaction() as outer:
        outer.put("Patient", "kept", {"resourceType": "Patient"}, [TokenEntry("gender", None, "k")])
        with pytest.raises(RuntimeError), repo.transaction() as inner:
            inner.put(
                "Patient", "gone", {"resourceType": "Patient"}, [TokenEntry("other", None, "g")]
            )
            raise RuntimeError
        with repo.transaction() as inner:
            inner.put(
                "Patient", "also", {"resourceType": "Patient"}, [TokenEntry("gender", None, "k")]
            )
    assert repo.read("Patient", "gone") is None
    assert {i for _, i in engine.search_index.search(gender_query("k")).matches} == {"kept", "also"}
    assert [c.id for c in engine.change_feed.read_since(0)] == ["kept", "also"]


def test_a_write_failing_half_way_aborts_the_transaction(engine: SqliteEngine) -> None:
    fresh = ParamRef("fresh", "token")
    odd = SimpleNamespace(param="odd")  # not an index entry: fails after rows are written
    with (
        pytest.raises(HubError, match="rolled back") as info,
        engine.repository.transaction() as tx,
    ):
        tx.put("Patient", "a", {"resourceType": "Patient"}, [])
        with pytest.raises(TypeError):
            tx.put(
                "Patient", "b", {"resourceType": "Patient"}, [TokenEntry("fresh", None, "x"), odd]
            )
        with pytest.raises(HubError, match="aborted"):  # the caller carries on regardless
            tx.put("Patient", "c", {"resourceType": "Patient"}, [])
    assert isinstance(info.value.__cause__, TypeError)
    assert engine.repository.count() == 0 and engine.change_feed.last_seq() == 0
    # the parameter name created by the failed put is not remembered as committed
    with engine.repository.transaction() as tx:
        tx.put("Patient", "d", {"resourceType": "Patient"}, [TokenEntry("fresh", None, "x")])
    query = SearchQuery("Patient", (Criterion(fresh, (TokenValue(code="x"),)),))
    assert engine.search_index.search(query).matches == [("Patient", "d")]


def test_a_failed_nested_transaction_is_undone_alone(engine: SqliteEngine) -> None:
    odd = SimpleNamespace(param="odd")
    repo = engine.repository
    with repo.transaction() as outer:
        outer.put("Patient", "a", {"resourceType": "Patient"}, [])
        with (
            pytest.raises(HubError, match="rolled back"),
            repo.transaction() as inner,
            pytest.raises(TypeError),
        ):
            inner.put("Patient", "b", {"resourceType": "Patient"}, [odd])
        outer.put("Patient", "c", {"resourceType": "Patient"}, [])
    assert [c.id for c in engine.change_feed.read_since(0)] == ["a", "c"]
    assert repo.read("Patient", "b") is None


def test_a_transaction_cannot_be_used_after_its_block(engine: SqliteEngine) -> None:
    with engine.repository.transaction() as tx:
        pass
    with pytest.raises(RuntimeError, match="over"):
        tx.put("Patient", "late", {"resourceType": "Patient"}, [])
    assert engine.repository.read("Patient", "late") is None


def test_set_cursor_inside_a_transaction_commits_and_rolls_back_with_it(
    engine: SqliteEngine,
) -> None:
    feed = engine.change_feed
    with pytest.raises(RuntimeError), engine.repository.transaction() as tx:
        tx.put("Patient", "p", {"resourceType": "Patient"}, [])
        feed.set_cursor("proj", 1)
        raise RuntimeError
    assert feed.cursor("proj") == 0
    with engine.repository.transaction() as tx:
        tx.put("Patient", "p", {"resourceType": "Patient"}, [])
        feed.set_cursor("proj", 1)
    assert feed.cursor("proj") == 1


def test_index_rows_follow_the_resource(engine: SqliteEngine) -> None:
    def rows() -> int:
        conn = engine._db.reader()
        return sum(
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("idx_token", "idx_string", "idx_date", "idx_reference")
        )

    entries = [TokenEntry("gender", None, "f"), TokenEntry("identifier", "urn:x", "1")]
    with engine.repository.transaction() as tx:
        tx.put("Patient", "p", {"resourceType": "Patient"}, entries)
    assert rows() == 2
    with engine.repository.transaction() as tx:
        tx.put("Patient", "p", {"resourceType": "Patient"}, entries[:1])
    assert rows() == 1
    with engine.repository.transaction() as tx:
        tx.delete("Patient", "p")
    assert rows() == 0


def test_apply_reindexes(engine: SqliteEngine) -> None:
    index = engine.search_index
    assert index.synchronous is True
    with engine.repository.transaction() as tx:
        tx.put("Patient", "p", {"resourceType": "Patient"}, [TokenEntry("gender", None, "f")])
        tx.put("Patient", "q", {"resourceType": "Patient"}, [TokenEntry("gender", None, "f")])
        tx.put("Patient", "dead", {"resourceType": "Patient"}, [])
        tx.delete("Patient", "dead")
    now = "2024-01-01T00:00:00.000Z"
    updates = [
        (("Patient", "p"), [TokenEntry("gender", None, "m")], now),
        (("Patient", "q"), None, now),
        (("Patient", "dead"), [TokenEntry("gender", None, "m")], now),
        (("Patient", "never"), [TokenEntry("gender", None, "m")], now),
    ]
    index.apply(updates)
    index.apply(updates)  # idempotent
    index.apply([])
    assert index.search(gender_query("m")).matches == [("Patient", "p")]
    assert index.search(gender_query("f")).matches == []


def test_put_refuses_a_resource_of_another_type(engine: SqliteEngine) -> None:
    from hub.errors import InvalidResource

    with pytest.raises(InvalidResource), engine.repository.transaction() as tx:
        tx.put("Patient", "p", {"resourceType": "Device"}, [])
    with pytest.raises(InvalidResource), engine.repository.transaction() as tx:
        tx.put("Patient", "p", {"resourceType": "Patient", "bad": {1, 2}}, [])


def test_threads_write_and_read_at_once(engine: SqliteEngine) -> None:
    errors: list[BaseException] = []
    writers, per_writer = 4, 40
    done = threading.Event()

    def write(n: int) -> None:
        try:
            for i in range(per_writer):
                with engine.repository.transaction() as tx:
                    tx.put(
                        "Patient",
                        f"w{n}-{i}",
                        {"resourceType": "Patient", "gender": "female"},
                        [TokenEntry("gender", None, "female")],
                    )
        except BaseException as exc:
            errors.append(exc)

    def read() -> None:
        try:
            while not done.is_set():
                result = engine.search_index.search(gender_query("female"))
                assert result.total is not None and result.total >= len(result.matches)
                engine.repository.read("Patient", "w0-0")
                engine.change_feed.read_since(0, limit=10)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in threads + readers:
        t.start()
    for t in threads:
        t.join()
    done.set()
    for t in readers:
        t.join()
    assert errors == []
    assert engine.repository.count("Patient") == writers * per_writer
    assert engine.search_index.search(gender_query("female")).total == writers * per_writer
    assert len(engine.change_feed.read_since(0, limit=10_000)) == writers * per_writer


CRASHER = textwrap.dedent(
    """
    import os, sys
    from adapters.sqlite import SqliteEngine
    from hub.search.model import TokenEntry
    eng = SqliteEngine(sys.argv[1], data_dir=sys.argv[2])
    with eng.repository.transaction() as tx:
        tx.put("Patient", "acked", {"resourceType": "Patient"}, [TokenEntry("gender", None, "f")])
    print("committed", flush=True)
    tx_cm = eng.repository.transaction()
    tx = tx_cm.__enter__()
    tx.put("Patient", "unacked", {"resourceType": "Patient"}, [])
    print("writing", flush=True)
    sys.stdin.read()  # killed here, mid-transaction
    """
)


def test_committed_data_survives_sigkill(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hub.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHER, url, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[4],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[4])},
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == b"committed"
        assert proc.stdout.readline().strip() == b"writing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        assert proc.stdin is not None
        proc.stdin.close()
    eng = SqliteEngine(url, data_dir=str(tmp_path))
    try:
        assert eng.repository.read("Patient", "acked") is not None
        assert eng.repository.read("Patient", "unacked") is None
        assert eng.search_index.search(gender_query("f")).matches == [("Patient", "acked")]
        assert [c.id for c in eng.change_feed.read_since(0)] == ["acked"]
        with eng.repository.transaction() as tx:  # the lock died with the process
            tx.put("Patient", "after", {"resourceType": "Patient"}, [])
    finally:
        eng.close()
