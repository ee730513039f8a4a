"""The projector runner follows the change feed, resumes from its cursor, retries failures."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from hub.engines import open_engine
from hub.ports import Change, Engine
from hub.projectors import ProjectorRunner, SearchIndexProjector
from hub.search.extract import extract_index_entries
from hub.search.query import parse_search


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = open_engine("sqlite://", data_dir=str(tmp_path))
    yield e
    e.close()


def write_patients(engine: Engine, n: int, start: int = 0) -> None:
    with engine.repository.transaction() as tx:
        for i in range(start, start + n):
            p = {"resourceType": "Patient", "id": f"p{i}", "name": [{"family": f"F{i}"}]}
            tx.put("Patient", f"p{i}", p, extract_index_entries(p))


class Recorder:
    def __init__(self, name: str = "recorder", fail_times: int = 0) -> None:
        self.name = name
        self.seen: list[int] = []
        self.fail_times = fail_times

    def handle(self, changes: Sequence[Change]) -> None:
        if self.fail_times:
            self.fail_times -= 1
            raise RuntimeError("transient failure")
        self.seen.extend(c.seq for c in changes)


def test_catch_up_and_resume_after_restart(engine: Engine) -> None:
    write_patients(engine, 7)
    first = Recorder()
    runner = ProjectorRunner(engine.change_feed, [first], batch_size=3)
    assert runner.lag() == {"recorder": 7}
    assert runner.run_once(first) == 3
    assert runner.lag() == {"recorder": 4}
    # a "restart": a new projector instance with the same name resumes from the saved cursor
    write_patients(engine, 2, start=7)
    second = Recorder()
    ProjectorRunner(engine.change_feed, [second], batch_size=3).catch_up()
    assert second.seen == list(range(first.seen[-1] + 1, 10))
    assert engine.change_feed.cursor("recorder") == 9


def test_failed_batch_is_retried_not_skipped(engine: Engine) -> None:
    write_patients(engine, 4)
    flaky = Recorder(fail_times=2)
    runner = ProjectorRunner(engine.change_feed, [flaky], poll_seconds=0.01, retry_seconds=0.01)
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while runner.lag()["recorder"] and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        runner.stop()
    assert flaky.seen == [1, 2, 3, 4]
    assert runner.errors == {}


def test_notify_wakes_the_projector(engine: Engine) -> None:
    rec = Recorder()
    runner = ProjectorRunner(engine.change_feed, [rec], poll_seconds=30)
    runner.start()
    try:
        time.sleep(0.1)
        write_patients(engine, 1)
        runner.notify()
        deadline = time.monotonic() + 5
        while not rec.seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert rec.seen == [1]
    finally:
        runner.stop()


class BatchRecorder(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.batches = 0

    def handle(self, changes: Sequence[Change]) -> None:
        self.batches += 1
        super().handle(changes)


def test_commits_in_quick_succession_share_one_projector_run(engine: Engine) -> None:
    """A channel committing write after write (notify each time) wakes the projector once per
    ``coalesce_seconds``, not once per commit."""
    rec = BatchRecorder()
    runner = ProjectorRunner(engine.change_feed, [rec], poll_seconds=30, coalesce_seconds=0.5)
    runner.start()
    try:
        time.sleep(0.1)
        for i in range(20):
            write_patients(engine, 1, start=i)
            runner.notify()
        deadline = time.monotonic() + 5
        while len(rec.seen) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        runner.stop()
    assert rec.seen == list(range(1, 21))
    assert rec.batches <= 3, rec.batches


class ListIndex:
    """A projector-fed index (like Elasticsearch): records what it is given."""

    synchronous = False

    def __init__(self) -> None:
        self.docs: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()

    def apply(
        self, updates: Sequence[tuple[tuple[str, str], Sequence[object] | None, str]]
    ) -> None:
        with self.lock:
            for key, entries, _ in updates:
                if entries is None:
                    self.docs.pop(key, None)
                else:
                    self.docs[key] = len(entries)


def test_search_index_projector_is_idempotent(engine: Engine) -> None:
    write_patients(engine, 3)
    with engine.repository.transaction() as tx:
        tx.delete("Patient", "p1")
    index = ListIndex()
    projector = SearchIndexProjector(engine.repository, index)  # type: ignore[arg-type]
    changes = engine.change_feed.read_since(0)
    projector.handle(changes)
    projector.handle(changes)  # replayed after a crash: same result
    assert set(index.docs) == {("Patient", "p0"), ("Patient", "p2")}
    assert all(n > 0 for n in index.docs.values())
    # the synchronous engine itself still answers the same search
    found = engine.search_index.search(parse_search("Patient", [("family", "F2")]))
    assert found.matches == [("Patient", "p2")]


class Lease:
    """A leadership the test hands over by hand (the PostgreSQL one is tested against the real
    server in tests/integration/postgres)."""

    def __init__(self, held: bool) -> None:
        self.held = held
        self.released = False

    def acquire(self) -> bool:
        return self.held

    def release(self) -> None:
        self.released = True


def test_only_the_leader_runs_projectors_and_a_follower_takes_over(engine: Engine) -> None:
    write_patients(engine, 3)
    leader_rec, follower_rec = Recorder(), Recorder()
    leader_lease, follower_lease = Lease(True), Lease(False)
    leader = ProjectorRunner(
        engine.change_feed, [leader_rec], poll_seconds=0.01, leadership=leader_lease
    )
    follower = ProjectorRunner(
        engine.change_feed, [follower_rec], poll_seconds=0.01, leadership=follower_lease
    )
    follower.start()
    leader.start()
    try:
        deadline = time.monotonic() + 5
        while leader.lag()["recorder"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert leader_rec.seen == [1, 2, 3] and follower_rec.seen == []
        leader.stop()  # the leader goes away: the follower takes over from the saved cursor
        assert leader_lease.released
        write_patients(engine, 2, start=3)
        follower_lease.held = True
        while follower.lag()["recorder"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert follower_rec.seen == [4, 5], "resumes after the leader's cursor, nothing twice"
    finally:
        leader.stop()
        follower.stop()


def test_a_failing_leadership_check_means_not_leading(engine: Engine) -> None:
    class Broken:
        def acquire(self) -> bool:
            raise ConnectionError("store unreachable")

        def release(self) -> None:
            raise ConnectionError("store unreachable")

    runner = ProjectorRunner(engine.change_feed, [Recorder()], leadership=Broken())
    assert runner.leading() is False
    runner.stop()  # releasing fails quietly: the store drops the lease with the connection


class Settling(Recorder):
    """Counts ``settle`` calls and what it had seen at each."""

    def __init__(self) -> None:
        super().__init__()
        self.settled_at: list[int] = []

    def settle(self) -> None:
        self.settled_at.append(len(self.seen))


@pytest.mark.parametrize(("written", "settled_at"), [(7, [7]), (6, [6]), (2, [2])])
def test_settle_once_the_feed_is_drained_before_the_cursor_moves(
    engine: Engine, written: int, settled_at: list[int]
) -> None:
    write_patients(engine, written)
    projector = Settling()
    runner = ProjectorRunner(engine.change_feed, [projector], batch_size=3)
    original = projector.settle

    def settle_sees_the_old_cursor() -> None:
        assert engine.change_feed.cursor("recorder") < written, "settled after the cursor moved"
        original()

    projector.settle = settle_sees_the_old_cursor  # type: ignore[method-assign]
    if written % 3 == 0:  # a full last batch: settled on the next, empty, read
        projector.settle = original  # type: ignore[method-assign]
    runner.catch_up()
    assert projector.seen == list(range(1, written + 1))
    assert projector.settled_at == settled_at
    runner.catch_up()  # nothing new: no second settle
    assert projector.settled_at == settled_at
