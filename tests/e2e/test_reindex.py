"""``pixelhub reindex`` (issue 8 item 2): rebuild the Elasticsearch indexes from PostgreSQL behind
their aliases, replaying what was written meanwhile; real servers, the real CLI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hub.engines import open_engine
from hub.ports import Engine
from hub.projectors import ProjectorRunner, SearchIndexProjector
from hub.reindex import NotReindexable, reindex
from hub.search.extract import extract_index_entries
from hub.search.query import parse_search
from hub.search.registry import default_registry


@pytest.fixture
def engine(
    tmp_path: Path, postgres_database: str, elasticsearch_index_url: str
) -> Iterator[Engine]:
    eng = open_engine(postgres_database, data_dir=str(tmp_path), search_url=elasticsearch_index_url)
    yield eng
    eng.close()


def put_patients(engine: Engine, names: list[str]) -> None:
    with engine.repository.transaction() as tx:
        for name in names:
            body = {"resourceType": "Patient", "id": name, "name": [{"family": name}]}
            tx.put("Patient", name, body, extract_index_entries(body))


def family_search(engine: Engine, family: str) -> list[str]:
    query = parse_search("Patient", [("family", family)], base_url="http://hub/fhir")
    return sorted(i for _, i in engine.search_index.search(query).matches)


def physical_indexes(search_url: str, resource_type: str) -> list[str]:
    server, prefix = search_url.rsplit("/", 1)
    aliases = httpx.get(f"{server}/_alias/{prefix}-{resource_type.lower()}").json()
    return sorted(aliases)


def test_reindex_swaps_in_new_indexes_and_replays_changes_made_meanwhile(
    engine: Engine, elasticsearch_index_url: str
) -> None:
    put_patients(engine, ["alpha", "alpine", "beta"])
    ProjectorRunner(
        engine.change_feed, [SearchIndexProjector(engine.repository, engine.search_index)]
    ).catch_up()
    assert family_search(engine, "alp") == ["alpha", "alpine"]
    before = physical_indexes(elasticsearch_index_url, "Patient")

    progress: list[int] = []

    def advance(n: int) -> None:  # a write lands while the new index is being built
        progress.append(n)
        if len(progress) == 1:
            put_patients(engine, ["alpaca"])

    indexed, replayed = reindex(engine, default_registry(), ["Patient"], advance=advance)
    assert indexed == 3 and replayed == 1 and sum(progress) == 3
    after = physical_indexes(elasticsearch_index_url, "Patient")
    assert after != before and len(after) == 1, "the alias moved to one new physical index"
    assert family_search(engine, "alp") == ["alpaca", "alpha", "alpine"]


def test_reindex_refuses_what_it_cannot_rebuild(tmp_path: Path, engine: Engine) -> None:
    with pytest.raises(NotReindexable, match="Nonsense"):
        reindex(engine, default_registry(), ["Nonsense"])
    sqlite = open_engine("sqlite://", data_dir=str(tmp_path / "sqlite"))
    try:
        with pytest.raises(NotReindexable, match="nothing to rebuild"):
            reindex(sqlite, default_registry())
    finally:
        sqlite.close()


def run_cli(
    data_dir: Path, database: str, search: str, *types: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, "-m", "hub", "reindex", "--data-dir", str(data_dir)),
            *("--database-url", database, "--elasticsearch-url", search),
            *(arg for t in types for arg in ("--type", t)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_cli_rebuilds_and_reports_what_it_did(
    tmp_path: Path, engine: Engine, postgres_database: str, elasticsearch_index_url: str
) -> None:
    put_patients(engine, [f"p{i}" for i in range(25)])
    run = run_cli(tmp_path, postgres_database, elasticsearch_index_url, "Patient")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "reindexed 25 resources" in run.stdout
    assert family_search(engine, "p1") == sorted(f"p{i}" for i in range(25) if str(i)[0] == "1")
    bad = run_cli(tmp_path, postgres_database, elasticsearch_index_url, "Nonsense")
    assert bad.returncode == 1 and "Not a served resource type: Nonsense" in bad.stderr
