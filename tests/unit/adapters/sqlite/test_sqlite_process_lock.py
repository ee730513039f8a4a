"""Write transactions of several processes on one SQLite file take turns on the advisory lock
``<file>-writer`` (``adapters.sqlite._db``): a waiting writer gets in as soon as the other
commits, and gives up with 503 ``OutOfResources`` at its busy timeout."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from adapters.sqlite._db import Database
from hub.errors import OutOfResources

HOLD_SECONDS = 1.0


def _hold_write(path: Path) -> subprocess.Popen[str]:
    """Another process holding a write transaction for ``HOLD_SECONDS`` once it prints."""
    script = textwrap.dedent(
        f"""
        import time
        from adapters.sqlite._db import Database
        db = Database({str(path)!r})
        with db.write() as conn:
            conn.execute("INSERT INTO t VALUES ('other')")
            print("holding", flush=True)
            time.sleep({HOLD_SECONDS})
        db.close()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=Path.cwd()
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    return proc


def test_a_writer_waits_for_another_process_and_gets_in_when_it_commits(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    db = Database(str(path))
    with db.write() as conn:
        conn.execute("CREATE TABLE t (v TEXT)")
    other = _hold_write(path)
    started = time.monotonic()
    with db.write() as conn:
        waited = time.monotonic() - started
        conn.execute("INSERT INTO t VALUES ('mine')")
    assert other.wait(30) == 0 and other.stdout is not None
    other.stdout.close()
    rows = [r[0] for r in db.reader().execute("SELECT v FROM t ORDER BY rowid")]
    assert rows == ["other", "mine"]  # in turn: the other's commit came first
    assert 0.5 * HOLD_SECONDS < waited < HOLD_SECONDS + 1.0
    db.close()


def test_a_writer_gives_up_at_its_busy_timeout_while_another_process_writes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hub.db"
    setup = Database(str(path))
    with setup.write() as conn:
        conn.execute("CREATE TABLE t (v TEXT)")
    setup.close()
    impatient = Database(str(path), busy_timeout_ms=200)
    other = _hold_write(path)
    busy = pytest.raises(OutOfResources, match="another process is writing")
    with busy as refused, impatient.write() as conn:
        conn.execute("INSERT INTO t VALUES ('never')")
    assert refused.value.status == 503 and refused.value.headers == {"Retry-After": "1"}
    assert other.wait(30) == 0 and other.stdout is not None
    other.stdout.close()
    with impatient.write() as conn:  # and writes once the other is done
        conn.execute("INSERT INTO t VALUES ('later')")
    rows = [r[0] for r in impatient.reader().execute("SELECT v FROM t ORDER BY rowid")]
    assert rows == ["other", "later"]
    impatient.close()
