"""Fixtures for a real PostgreSQL server: ``postgres_server`` (session) and ``postgres_database``.

``postgres_server`` is the base URL of one throwaway cluster per test run, started on first use
and stopped at the end of the session; or, when ``PIXELHUB_TEST_POSTGRES_URL`` is set
(``postgresql://user:pass@host:port/postgres``), that server, used as is (the user needs
``CREATEDB``). ``postgres_database`` creates a fresh empty database on it for one test, returns
its URL and drops it afterwards.

How the cluster is run (also how CI runs PostgreSQL; Debian package ``postgresql``, whose
binaries live in ``/usr/lib/postgresql/<version>/bin``). initdb and postgres refuse to run as
root, so as root every command runs as the ``postgres`` system user, in a temporary directory
that user owns::

    dir=$(mktemp -d) && chown postgres: "$dir"
    runuser -u postgres -- /usr/lib/postgresql/15/bin/initdb -D "$dir/data" -U postgres \\
        -A trust --no-sync -E UTF8 --locale C
    runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$dir/data" -l "$dir/log" -w \\
        -o "-c listen_addresses=127.0.0.1 -p $PORT -k $dir -c max_connections=300" start
    # ... tests use postgresql://postgres@127.0.0.1:$PORT/postgres ...
    runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$dir/data" -m fast -w stop

``trust`` authentication on loopback only (the cluster listens on 127.0.0.1 and a private
socket directory). ``fsync`` and ``synchronous_commit`` stay on, as in production: durability is
a product promise (``--no-sync`` only skips flushing initdb's own files).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.support.servers import ServerError, free_port, server_for_run

ENV_URL = "PIXELHUB_TEST_POSTGRES_URL"


def _bin_dir() -> str:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb``."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(p.split("/")[-3]) if p.split("/")[-3].isdigit() else 0,
    )
    if not found:
        raise ServerError("PostgreSQL is not installed (apt-get install postgresql)")
    return os.path.dirname(found[-1])


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def _run(args: list[str]) -> None:
    done = subprocess.run(_as_postgres(args), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ServerError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


@contextmanager
def running_postgres(max_connections: int = 300) -> Iterator[str]:
    """A throwaway cluster on a free loopback port for as long as the block runs; yields
    ``postgresql://postgres@127.0.0.1:PORT/postgres`` (a superuser). Used by the fixtures and
    by the benchmarks."""
    bindir = _bin_dir()
    base = tempfile.mkdtemp(prefix="pixelhub-pg-")
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    data, log, port = os.path.join(base, "data"), os.path.join(base, "log"), free_port()
    initdb = [f"{bindir}/initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync"]
    _run([*initdb, "-E", "UTF8", "--locale", "C"])
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c max_connections={max_connections}"
    )
    _run([f"{bindir}/pg_ctl", "-D", data, "-l", log, "-w", "-o", options, "start"])
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        _run([f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"])
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    yield from server_for_run(ENV_URL, running_postgres)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
def postgres_database(postgres_server: str) -> Iterator[str]:
    name = f"pixelhub_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(postgres_server, name)
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
