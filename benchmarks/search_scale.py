"""Search at scale (issue 8): indexing rate and query latency of every storage engine, one run.

Generates ``--size`` ImagingStudy and as many DocumentReference resources, with their Patients
and ServiceRequests (``search_scale_data.py``: Zipf-like studies per patient, an enterprise
modality mix, ten years of dates; same seed, same data on every engine), and for each engine:

* **load**: writes them through the engine port exactly as the hub does
  (``repository.transaction()`` + ``tx.put(type, id, resource, extract_index_entries(resource))``,
  ``--batch`` resources per transaction); reported as docs/s (all four types), with the rate of
  each tenth of the load to show how it falls as the store grows; PostgreSQL is then vacuumed
  (``VACUUM (ANALYZE)``, timed apart), as autovacuum would do in the background;
* **elasticsearch** (PostgreSQL as store of record when it is in the run, else SQLite): after the
  load, the hub's projector path (``ProjectorRunner.catch_up()`` with ``SearchIndexProjector``:
  read from the store, extract, ``SearchIndex.apply`` in bulk) is timed separately, both as a
  whole and inside ``apply`` alone (Elasticsearch's own indexing rate);
* **queries**: ten typical FHIR searches, as query strings parsed by ``parse_search`` and run on
  ``engine.search_index.search`` (in-process: the engine's own latency), then the matches read
  with ``repository.read_many`` ("+read", what a search response needs besides JSON and HTTP).
  Values are drawn from the generated data (patients in proportion to their studies), so every
  query has results; ``--queries`` repetitions each, after a warm-up. p50/p95/p99 per query per
  engine, and a cross-engine check that every value got the same total.

Real peers, started by the script and removed afterwards: a throwaway PostgreSQL cluster (run as
the ``postgres`` user, like the test suite) and a single-node Elasticsearch 8.19
(``PIXELHUB_ES_HOME``, default ``.cache/elasticsearch-8.19.7``, run as ``nobody`` when root),
unless ``--postgres-url`` / ``--elasticsearch-url`` name running ones. Prints a table and the aim
check of issue 8 (ES indexing >= 5,000 docs/s; every query p95 < 50 ms and full-text p95
< 100 ms at 1M), and writes JSON to ``benchmarks/results/search_scale-<timestamp>.json``.

    nice -n 10 .venv/bin/python benchmarks/search_scale.py --size 20000
    .venv/bin/python benchmarks/search_scale.py --check      # validate a sample with fhir.resources

Not a test: it checks only that the data are valid and every query finds something; it measures.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search_scale_data import (
    ACCESSION_SYSTEM,
    DCM,
    FINDING_WORDS,
    Item,
    Population,
    StudySample,
)

sys.path.append(str(Path(__file__).resolve().parents[1]))
from hub.engines import engine_factory, open_engine, search_index_factory
from hub.errors import HubError
from hub.ports import Engine, SearchIndex
from hub.projectors import ProjectorRunner, SearchIndexProjector
from hub.search.extract import extract_index_entries
from hub.search.model import IndexEntry, Key, SearchResult
from hub.search.query import parse_search
from tests.support.elasticsearch import running_elasticsearch
from tests.support.postgres import running_postgres

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ("sqlite", "postgresql", "elasticsearch")
Params = list[tuple[str, str]]

# ------------------------------------------------------------------------------------------------
# the queries


@dataclass(frozen=True)
class QuerySpec:
    """One typical search: ``build`` turns a sampled study into the query's parameters."""

    name: str
    resource_type: str
    build: Callable[[StudySample], Params]
    fulltext: bool = False


def _month_window(started: str) -> Params:
    year, month = int(started[:4]), int(started[5:7])
    after = (year + month // 12, month % 12 + 1)
    return [("started", f"ge{year}-{month:02d}-01"), ("started", f"lt{after[0]}-{after[1]:02d}-01")]


def _finding(sample: StudySample) -> str:
    """A distinctive word of the report's impression (in its text/plain attachment too), else a
    common finding (never an empty search)."""
    text = sample.impression.lower()
    return next((w for w in FINDING_WORDS if w in text), "fracture")


QUERIES: tuple[QuerySpec, ...] = (
    QuerySpec(
        "patient timeline",
        "ImagingStudy",
        lambda s: [("subject", f"Patient/{s.patient}"), ("_sort", "-started")],
    ),
    QuerySpec(
        "modality + month",
        "ImagingStudy",
        lambda s: [("modality", f"{DCM}|{s.modality}"), *_month_window(s.started)],
    ),
    QuerySpec(
        "accession", "ImagingStudy", lambda s: [("identifier", f"{ACCESSION_SYSTEM}|{s.accession}")]
    ),
    QuerySpec(
        "study UID",
        "ImagingStudy",
        lambda s: [("identifier", f"urn:dicom:uid|urn:oid:{s.study_uid}")],
    ),
    QuerySpec("body site text", "ImagingStudy", lambda s: [("bodysite:text", s.body_site)]),
    QuerySpec(
        "reports of patient since",
        "DocumentReference",
        lambda s: [("patient", f"Patient/{s.patient}"), ("date", f"ge{s.report_date[:4]}-01-01")],
    ),
    QuerySpec(
        "report full-text",
        "DocumentReference",
        lambda s: [("_content", _finding(s))],
        fulltext=True,
    ),
    QuerySpec(
        "_include order",
        "ImagingStudy",
        lambda s: [("subject", f"Patient/{s.patient}"), ("_include", "ImagingStudy:basedon")],
    ),
    QuerySpec(
        "_revinclude report",
        "ImagingStudy",
        lambda s: [
            ("identifier", f"urn:dicom:uid|urn:oid:{s.study_uid}"),
            ("_revinclude", "DocumentReference:related"),
        ],
    ),
    QuerySpec(
        "count of modality",
        "ImagingStudy",
        lambda s: [("modality", f"{DCM}|{s.modality}"), ("_total", "accurate"), ("_count", "0")],
    ),
)


def fulltext_support() -> dict[str, str]:
    """Whether the parser serves ``_content``/``_text`` (search.html#content, word prefix search
    over an index of words, hub/search/words.py): said, not faked."""
    out = {}
    for name in ("_content", "_text"):
        try:
            parse_search("DocumentReference", [(name, "fracture")], strict=True)
            out[name] = "supported"
        except HubError as e:
            out[name] = f"not supported ({type(e).__name__}: {e})"
    return out


def url_of(spec: QuerySpec, params: Params) -> str:
    return spec.resource_type + "?" + "&".join(f"{k}={v}" for k, v in params)


# ------------------------------------------------------------------------------------------------
# statistics


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of sorted samples."""
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def latency(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        f"p{int(p * 100)}_ms": round(percentile(ordered, p) * 1000, 2) for p in (0.5, 0.95, 0.99)
    }


# ------------------------------------------------------------------------------------------------
# loading


@dataclass
class LoadStats:
    docs: int = 0
    seconds: float = 0.0  # extraction + transactions, generation excluded
    extract_seconds: float = 0.0
    curve: list[dict[str, float]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.docs / self.seconds if self.seconds else 0.0

    def to_json(self, size: int) -> dict[str, Any]:
        last = self.curve[-1]["docs_per_s"] if self.curve else self.rate
        at_1m = self.docs * 1_000_000 / size if size else 0
        return {
            "docs": self.docs,
            # naive: the docs of a 1M run at the rate of this run's last tenth
            "est_1m_hours_at_last_rate": round(at_1m / last / 3600, 2) if last else None,
            "seconds": round(self.seconds, 2),
            "docs_per_s": round(self.rate, 1),
            "extract_share": round(self.extract_seconds / self.seconds, 3) if self.seconds else 0,
            "curve": self.curve,
        }


def batches(items: Iterator[Item], size: int) -> Iterator[list[Item]]:
    while batch := list(itertools.islice(items, size)):
        yield batch


def load(engine: Engine, size: int, seed: int, batch: int) -> tuple[LoadStats, Population]:
    """Write the population through the engine port, timing extraction and transactions."""
    population = Population(seed)
    stats = LoadStats()
    step, next_mark = max(size // 10, 1), max(size // 10, 1)
    mark_docs, mark_seconds = 0, 0.0
    for chunk in batches(population.items(size), batch):
        started = time.perf_counter()
        entries = [extract_index_entries(resource) for _, _, resource in chunk]
        extracted = time.perf_counter()
        with engine.repository.transaction() as tx:
            for (rtype, rid, resource), index in zip(chunk, entries, strict=True):
                tx.put(rtype, rid, resource, index)
        stats.seconds += time.perf_counter() - started
        stats.extract_seconds += extracted - started
        stats.docs += len(chunk)
        if population.studies >= next_mark:
            rate = (stats.docs - mark_docs) / (stats.seconds - mark_seconds)
            stats.curve.append({"docs": stats.docs, "docs_per_s": round(rate, 1)})
            print(f"    {stats.docs:>10,} docs  {rate:>8,.0f} docs/s", flush=True)
            mark_docs, mark_seconds = stats.docs, stats.seconds
            next_mark += step
    return stats, population


class TimedIndex:
    """A ``SearchIndex`` wrapper that adds up the time spent in ``apply`` (Elasticsearch's own
    bulk indexing, without the store reads and extraction the projector does around it)."""

    def __init__(self, inner: SearchIndex) -> None:
        self.inner = inner
        self.synchronous = inner.synchronous
        self.seconds = 0.0
        self.docs = 0

    def search(self, query: Any) -> SearchResult:
        return self.inner.search(query)

    def apply(self, updates: Sequence[tuple[Key, Sequence[IndexEntry] | None, str]]) -> None:
        started = time.perf_counter()
        self.inner.apply(updates)
        self.seconds += time.perf_counter() - started
        self.docs += len(updates)


def project(engine: Engine, expected: dict[str, int]) -> dict[str, Any]:
    """Feed the engine's separate search index from the change feed, as the hub's projector
    does, then wait until every document is searchable."""
    timed = TimedIndex(engine.search_index)
    runner = ProjectorRunner(engine.change_feed, [SearchIndexProjector(engine.repository, timed)])
    started = time.perf_counter()
    runner.catch_up()
    projected = time.perf_counter() - started
    visible = wait_searchable(engine, expected)
    total = time.perf_counter() - started
    return {
        "docs": timed.docs,
        "projector_seconds": round(projected, 2),
        "projector_docs_per_s": round(timed.docs / projected, 1),
        "apply_seconds": round(timed.seconds, 2),
        "apply_docs_per_s": round(timed.docs / timed.seconds, 1) if timed.seconds else 0,
        "searchable_after_s": round(visible, 2),
        "to_searchable_docs_per_s": round(timed.docs / total, 1),
    }


def wait_searchable(engine: Engine, expected: dict[str, int], timeout: float = 300) -> float:
    """Seconds until a ``_total=accurate`` count of each type reaches ``expected``."""
    started = time.perf_counter()
    while True:
        totals = {
            rtype: engine.search_index.search(
                parse_search(rtype, [("_count", "0"), ("_total", "accurate")])
            ).total
            for rtype in expected
        }
        if totals == expected:
            return time.perf_counter() - started
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"index not caught up after {timeout} s: {totals} != {expected}")
        time.sleep(0.2)


# ------------------------------------------------------------------------------------------------
# querying


@dataclass
class QueryRun:
    search: list[float] = field(default_factory=list)
    with_read: list[float] = field(default_factory=list)
    totals: list[int | None] = field(default_factory=list)  # one per sampled value, first round
    returned: int = 0


def run_query(engine: Engine, spec: QuerySpec, values: list[Params], reps: int) -> QueryRun:
    run = QueryRun()
    for i in range(reps + len(values)):  # the first round over the values is the warm-up
        params = values[i % len(values)]
        started = time.perf_counter()
        result = engine.search_index.search(parse_search(spec.resource_type, params))
        searched = time.perf_counter()
        found = engine.repository.read_many([*result.matches, *result.included])
        done = time.perf_counter()
        if i < len(values):
            run.totals.append(result.total if result.total is not None else len(result.matches))
            continue
        run.search.append(searched - started)
        run.with_read.append(done - started)
        run.returned += len(found)
    return run


def run_queries(engine: Engine, samples: list[StudySample], reps: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in QUERIES:
        values = [spec.build(s) for s in samples]
        run = run_query(engine, spec, values, reps)
        empty = sum(1 for t in run.totals if not t)
        row = {
            "example": url_of(spec, values[0]),
            "search": latency(run.search),
            "search_read": latency(run.with_read),
            "mean_total": round(sum(t or 0 for t in run.totals) / len(run.totals), 1),
            "mean_returned": round(run.returned / reps, 1),
            "empty_values": empty,
            "totals": run.totals,
            "fulltext": spec.fulltext,
        }
        out[spec.name] = row
        print(
            f"    {spec.name:<26} p50 {row['search']['p50_ms']:>7.2f}  p95 "
            f"{row['search']['p95_ms']:>7.2f}  +read p95 {row['search_read']['p95_ms']:>7.2f} ms"
            f"  total~{row['mean_total']}",
            flush=True,
        )
    return out


def query_samples(population: Population, count: int) -> list[StudySample]:
    """Sampled studies in a stable order (the sample's order depends on the reservoir only)."""
    return sorted(population.samples, key=lambda s: int(s.study_id[1:]))[:count]


# ------------------------------------------------------------------------------------------------
# peers: PostgreSQL and Elasticsearch, started here unless given


@contextlib.contextmanager
def postgres_server(work: Path) -> Iterator[str]:
    """A throwaway cluster, started as the tests start theirs; yields its URL."""
    with running_postgres(max_connections=100) as url:
        yield url


def create_database(server: str, name: str) -> str:
    import psycopg

    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.rsplit("/", 1)[0] + f"/{name}"


@contextlib.contextmanager
def elasticsearch_server(work: Path, heap: str) -> Iterator[str]:
    """A single-node Elasticsearch, started as the tests start theirs; yields its URL."""
    with running_elasticsearch(heap=heap) as url:
        yield url


# ------------------------------------------------------------------------------------------------
# the run


@dataclass
class Context:
    args: argparse.Namespace
    work: Path
    stack: contextlib.ExitStack
    postgres_server: str | None = None
    stores: dict[str, str] = field(default_factory=dict)  # engine -> loaded store URL
    expected: dict[str, int] = field(default_factory=dict)
    samples: list[StudySample] = field(default_factory=list)


def store_url(ctx: Context, engine_name: str) -> str:
    if engine_name == "sqlite":
        return "sqlite://"
    engine_factory("postgresql://")  # EngineNotFound before a server is started for nothing
    if ctx.postgres_server is None:
        ctx.postgres_server = ctx.args.postgres_url or ctx.stack.enter_context(
            postgres_server(ctx.work)
        )
    return create_database(ctx.postgres_server, "pixelhub_search_scale")


def bench_store(ctx: Context, name: str, *, query: bool = True) -> dict[str, Any]:
    """Load one store-of-record engine and query its own search index."""
    url = store_url(ctx, name)
    data_dir = ctx.work / name
    engine = open_engine(url, data_dir=str(data_dir))
    try:
        print(f"  loading {name} ({url})", flush=True)
        stats, population = load(engine, ctx.args.size, ctx.args.seed, ctx.args.batch)
        ctx.stores[name] = url
        remember(ctx, population)
        out = {"engine": name, "store": url, "load": stats.to_json(ctx.args.size)}
        if name == "postgresql":
            out["load"]["vacuum_seconds"] = vacuum(url)
        if query:
            print(f"  querying {name}", flush=True)
            out["queries"] = run_queries(engine, ctx.samples, ctx.args.queries)
    finally:
        engine.close()
    return out


def vacuum(url: str) -> float:
    """``VACUUM (ANALYZE)`` after the bulk load, timed: what autovacuum does in the background
    sooner or later (the visibility map that lets searches read covering indexes alone, and the
    planner's statistics); done here so queries are measured in that steady state."""
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
    seconds = round(time.perf_counter() - started, 1)
    print(f"    VACUUM (ANALYZE) {seconds} s", flush=True)
    return seconds


def remember(ctx: Context, population: Population) -> None:
    counts = {"ImagingStudy": population.studies, "DocumentReference": population.studies}
    ctx.expected = {**counts, "Patient": population.patients}
    if not ctx.samples:
        ctx.samples = query_samples(population, ctx.args.values)


def bench_elasticsearch(ctx: Context) -> dict[str, Any]:
    """ES as the search index of an already loaded store (PostgreSQL preferred)."""
    search_index_factory("http://")  # EngineNotFound before a server is started for nothing
    es_url = ctx.args.elasticsearch_url or ctx.stack.enter_context(
        elasticsearch_server(ctx.work, ctx.args.es_heap)
    )
    store = next((s for s in ("postgresql", "sqlite") if s in ctx.stores), None)
    out: dict[str, Any] = {"engine": "elasticsearch", "search_url": es_url}
    if store is None:  # nothing loaded yet: load a SQLite store first, reported as such
        out["store_load"] = bench_store(ctx, "sqlite", query=False)["load"]
        store = "sqlite"
    out["store"] = f"{store} ({ctx.stores[store]})"
    search_url = f"{es_url}/pixelhub-bench-{ctx.args.seed}"
    engine = open_engine(ctx.stores[store], data_dir=str(ctx.work / store), search_url=search_url)
    try:
        print(f"  indexing into Elasticsearch from {store}'s change feed", flush=True)
        out["index"] = project(engine, ctx.expected)
        print(f"    {json.dumps(out['index'])}", flush=True)
        print("  querying elasticsearch", flush=True)
        out["queries"] = run_queries(engine, ctx.samples, ctx.args.queries)
    finally:
        engine.close()
    return out


def consistency(results: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Per query, the engines whose totals differ from the first engine's."""
    out: dict[str, list[str]] = {}
    ran = [r for r in results if "queries" in r]
    for spec in QUERIES:
        if not ran:
            break
        reference = ran[0]["queries"][spec.name]["totals"]
        differ = [r["engine"] for r in ran[1:] if r["queries"][spec.name]["totals"] != reference]
        if differ:
            out[spec.name] = differ
    return out


def aims(results: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """Issue 8's aims, judged on what this run measured (at ``size``, not necessarily 1M)."""
    checks: list[dict[str, Any]] = []
    for r in results:
        if "index" in r:
            rate = r["index"]["projector_docs_per_s"]
            checks.append(
                {"aim": "Elasticsearch indexing >= 5,000 docs/s (projector path)",
                 "value": rate, "pass": rate >= 5000}
            )  # fmt: skip
        for name, q in r.get("queries", {}).items():
            limit = 100 if q["fulltext"] else 50
            p95 = q["search_read"]["p95_ms"]
            checks.append(
                {"aim": f"{r['engine']}: {name} p95 < {limit} ms", "value": p95,
                 "pass": p95 < limit}
            )  # fmt: skip
    for c in checks:
        c["at_size"] = size
    return checks


def report(results: list[dict[str, Any]], checks: list[dict[str, Any]], size: int) -> None:
    print()
    print(f"Loading ({size:,} ImagingStudy + {size:,} DocumentReference + orders and patients)")
    for r in results:
        if "load" in r:
            load_ = r["load"]
            print(f"  {r['engine']:<14} {load_['docs_per_s']:>9,.0f} docs/s   ({load_['docs']:,}"
                  f" docs in {load_['seconds']:.1f} s, extraction {load_['extract_share']:.0%};"
                  f" last tenth {load_['curve'][-1]['docs_per_s']:,.0f} docs/s)")  # fmt: skip
        if "index" in r:
            ix = r["index"]
            print(f"  {'elasticsearch':<14} {ix['projector_docs_per_s']:>9,.0f} docs/s projector"
                  f" path, {ix['apply_docs_per_s']:,.0f} docs/s inside apply (bulk), searchable"
                  f" {ix['searchable_after_s']:.1f} s after catch-up")  # fmt: skip
    ran = [r for r in results if "queries" in r]
    if not ran:
        return
    print()
    print("Query latency, ms: search p50 / p95 / p99 | +read p95   (mean total)")
    header = f"  {'query':<26}" + "".join(f"{r['engine']:>40}" for r in ran)
    print(header)
    for spec in QUERIES:
        cells = []
        for r in ran:
            q = r["queries"][spec.name]
            s, sr = q["search"], q["search_read"]
            cells.append(
                f"{s['p50_ms']:>7.1f} {s['p95_ms']:>7.1f} {s['p99_ms']:>7.1f} |"
                f" {sr['p95_ms']:>7.1f} ({q['mean_total']:>8})"
            )
        print(f"  {spec.name:<26}" + "".join(f"{c:>40}" for c in cells))
    print()
    scale = "" if size >= 1_000_000 else f"  [measured at {size:,}, not 1M: indicative only]"
    print(f"Aims (issue 8){scale}")
    for c in checks:
        print(f"  {'PASS' if c['pass'] else 'FAIL'}  {c['aim']}: {c['value']:,}")


def check(size: int, seed: int) -> None:
    """Validate every resource of a small population with the fhir.resources R4B models."""
    from fhir.resources.R4B import get_fhir_model_class

    population = Population(seed)
    count = 0
    for rtype, _, resource in population.items(size):
        get_fhir_model_class(rtype).model_validate(resource)
        count += 1
    print(f"{count} resources of {population.studies} studies valid (fhir.resources R4B models)")
    for spec in QUERIES:
        print(f"  {spec.name:<26} {url_of(spec, spec.build(population.samples[0]))}")
    print(f"  full-text parameters: {fulltext_support()}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=1_000_000, help="studies (and reports)")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--queries", type=int, default=200, help="repetitions per query")
    parser.add_argument("--values", type=int, default=50, help="sampled values per query")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--batch", type=int, default=500, help="resources per transaction")
    parser.add_argument("--postgres-url", help="a running server (user with CREATEDB)")
    parser.add_argument("--elasticsearch-url", help="a running Elasticsearch")
    parser.add_argument("--es-heap", default="1g")
    parser.add_argument("--check", action="store_true", help="validate a sample and exit")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.check:
        check(min(args.size, 2000), args.seed)
        return
    results: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    with contextlib.ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="pixelhub-search-scale-"))
        work.chmod(0o711)  # the servers run as their own users, in sub-folders they own
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        ctx = Context(args, work, stack)
        for name in args.engines:
            print(f"{name}:", flush=True)
            try:
                results.append(
                    bench_elasticsearch(ctx) if name == "elasticsearch" else bench_store(ctx, name)
                )
            except (HubError, RuntimeError, OSError) as e:  # an engine not built or not running
                print(f"  skipped: {type(e).__name__}: {e}", flush=True)
                results.append({"engine": name, "skipped": f"{type(e).__name__}: {e}"})
    checks = aims(results, args.size)
    report(results, checks, args.size)
    save(args, results, checks, load_before)


def save(
    args: argparse.Namespace,
    results: list[dict[str, Any]],
    checks: list[dict[str, Any]],
    load_before: tuple[float, float, float],
) -> None:
    differ = consistency(results)
    if differ:
        print(f"totals differ between engines: {differ}")
    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"search_scale-{time.strftime('%Y%m%dT%H%M%S')}.json"
    document = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average": {"before": load_before, "after": os.getloadavg()}},
        "args": {k: v for k, v in vars(args).items() if k not in ("postgres_url",)},
        "fulltext_parameters": fulltext_support(),
        "results": results,
        "aims": checks,
        "totals_differ": differ,
    }  # fmt: skip
    path.write_text(json.dumps(document, indent=1))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
