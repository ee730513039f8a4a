"""``ElasticsearchSearchIndex``: the asynchronous ``SearchIndex`` on Elasticsearch 8.

URL (``PIXELHUB_ELASTICSEARCH_URL``): ``http(s)://[user:password@]host[:9200][/<prefix>]`` or the
same behind ``elasticsearch+``; the path's first segment is the index-name prefix (default
``pixelhub``). Query options: ``api_key``, ``ca_certs``, ``verify_certs=false``, ``timeout``
(seconds), ``shards`` (default 1), ``replicas`` (default ``auto_expand_replicas: 0-1``),
``max_result_window`` (index setting, default 10000).

Layout: one index per resource type, created on first use as ``<prefix>-<type>-v<N>`` behind
the alias ``<prefix>-<type>`` (searches and writes) and the alias ``<prefix>`` (system-level
searches); ``reindex`` builds ``v<N+1>``, swaps both aliases atomically (aliases API) and then
deletes ``v<N>``. Fed by ``SearchIndexProjector`` through ``apply`` (bulk API), visible after
``refresh`` (refresh API) or the index's refresh interval (1 s): that is the lag behind the
change feed, plus the projector's own.

Limits: chains and ``_has`` are resolved to at most ``MAX_RESOLVED`` (65,536, the default
``index.max_terms_count``) target ids, beyond which the search is refused with
``InvalidSearch``; pages beyond ``max_result_window`` are walked with a point in time and
``search_after`` (Elasticsearch "Paginate search results"); ``_include``/``_revinclude``
results come in (type, id) order within each step (the SQLite engine uses insertion order).
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import elastic_transport
import elasticsearch
import orjson
from elasticsearch import Elasticsearch
from elasticsearch.serializer import OrjsonSerializer

from adapters.elasticsearch._errors import es_errors, retryable_status, translate
from adapters.elasticsearch.mapping import document, index_mapping
from adapters.elasticsearch.query import (
    Compiler,
    Query,
    all_of,
    sort_clause,
)
from hub.errors import HubError, InvalidSearch, OutOfResources
from hub.search.model import AnyCriterion, Include, IndexEntry, Key, SearchQuery, SearchResult
from hub.search.registry import SearchParameterRegistry, default_registry

MAX_RESOLVED = 65_536
INCLUDE_ROUNDS = 5  # as the SQLite engine
SCAN_PAGE = 1000
REINDEX_CHUNK = 1000
DEFAULT_WINDOW = 10_000
_PREFIX = re.compile(r"[a-z0-9][a-z0-9_.-]{0,200}")
_TYPE_ID = [{"type": "asc"}, {"id": "asc"}]

Update = tuple[Key, Sequence[IndexEntry] | None, str]
Action = tuple[dict[str, Any], dict[str, Any] | None]


class ElasticsearchConfigError(HubError):
    hub_code = "HUB-1002"


@dataclass(frozen=True)
class _Config:
    node: str
    prefix: str
    client: dict[str, Any]
    settings: dict[str, Any]
    window: int


def _int_option(options: dict[str, str], name: str) -> int | None:
    raw = options.pop(name, None)
    if raw is None:
        return None
    if not raw.isdigit() or (int(raw) < 1 and name != "replicas"):
        raise ElasticsearchConfigError(f"Elasticsearch URL option {name}={raw!r} is not a count")
    return int(raw)


def parse_url(url: str) -> _Config:
    """The connection, prefix and index settings a search URL describes."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower().removeprefix("elasticsearch+")
    if scheme not in ("http", "https") or not parts.hostname:
        raise ElasticsearchConfigError(
            f"Not an Elasticsearch URL: {parts.scheme}://{parts.hostname}"
        )
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    node = f"{scheme}://{host}:{parts.port or 9200}"
    segment = parts.path.strip("/").split("/", 1)[0]
    prefix = unquote(segment) or "pixelhub"
    if not _PREFIX.fullmatch(prefix):
        raise ElasticsearchConfigError(
            f"Elasticsearch index prefix {prefix!r}: lowercase letters, digits, '_', '.', '-'"
        )
    options = dict(parse_qsl(parts.query))
    client: dict[str, Any] = {"max_retries": 0, "request_timeout": 30.0}
    if parts.username is not None:
        client["basic_auth"] = (unquote(parts.username), unquote(parts.password or ""))
    if "api_key" in options:
        client["api_key"] = options.pop("api_key")
    if "ca_certs" in options:
        client["ca_certs"] = options.pop("ca_certs")
    if "verify_certs" in options:
        client["verify_certs"] = options.pop("verify_certs").lower() not in ("0", "false", "no")
    if "timeout" in options:
        try:
            client["request_timeout"] = float(options.pop("timeout"))
        except ValueError as exc:
            raise ElasticsearchConfigError(
                "Elasticsearch URL option timeout is not a number"
            ) from exc
    settings: dict[str, Any] = {"number_of_shards": _int_option(options, "shards") or 1}
    replicas = _int_option(options, "replicas")
    if replicas is None:
        settings["auto_expand_replicas"] = "0-1"
    else:
        settings["number_of_replicas"] = replicas
    window = _int_option(options, "max_result_window")
    if window is not None:
        settings["max_result_window"] = window
    if options:
        raise ElasticsearchConfigError(f"Unknown Elasticsearch URL options: {sorted(options)}")
    return _Config(node, prefix, client, settings, window or DEFAULT_WINDOW)


def _chunks(values: Sequence[str], size: int = 10_000) -> Iterator[list[str]]:
    """``values`` in pieces, each within a ``terms`` query's limits."""
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


def _key(hit: dict[str, Any], at: int = 0) -> Key:
    """(type, id) from a hit's sort values, ``at`` the position of the (type, id) tie-break."""
    return str(hit["sort"][at]), str(hit["sort"][at + 1])


class ElasticsearchSearchIndex:
    """A ``SearchIndex`` (``hub.ports``) on Elasticsearch, fed through ``apply``."""

    name = "elasticsearch"
    synchronous = False

    def __init__(
        self,
        url: str,
        *,
        data_dir: str = "",
        registry: SearchParameterRegistry | None = None,
        retries: int = 6,
        backoff: float = 0.1,
    ) -> None:
        config = parse_url(url)
        self.prefix = config.prefix
        self.node = config.node
        self.window = config.window
        self._settings = config.settings
        self._registry = registry or default_registry()
        self._retries = retries
        self._backoff = backoff
        self.swap_grace = 1.0  # seconds between a reindex's alias swap and the old index's deletion
        self._known: set[str] = set()
        self._lock = threading.Lock()
        # orjson both ways: bulk lines are encoded here, responses decoded by the client
        self.client = Elasticsearch(config.node, serializer=OrjsonSerializer(), **config.client)

    # ---- names -------------------------------------------------------------------------------
    def alias(self, resource_type: str) -> str:
        """The alias searches and writes of ``resource_type`` use."""
        return f"{self.prefix}-{resource_type.lower()}"

    def _target(self, resource_type: str | None) -> str:
        return self.alias(resource_type) if resource_type else self.prefix

    def _create(self, resource_type: str, name: str, *, aliases: bool, **settings: Any) -> None:
        body_aliases: dict[str, Any] | None = None
        if aliases:
            body_aliases = {self.alias(resource_type): {}, self.prefix: {}}
        self.client.indices.create(
            index=name,
            settings={**self._settings, **settings},
            mappings=index_mapping(self._registry, resource_type),
            aliases=body_aliases,
        )

    def _ensure(self, resource_type: str) -> None:
        """Create the type's first index and aliases unless they exist."""
        alias = self.alias(resource_type)
        if alias in self._known:
            return
        with self._lock, es_errors():
            if alias in self._known:
                return
            if not self.client.indices.exists_alias(name=alias):
                try:
                    self._create(resource_type, f"{alias}-v1", aliases=True)
                except elasticsearch.BadRequestError as exc:
                    if exc.error != "resource_already_exists_exception":
                        raise
            self._known.add(alias)

    # ---- feeding -----------------------------------------------------------------------------
    def apply(self, updates: Sequence[Update]) -> None:
        """Index ``(key, entries, last_updated)`` (``entries=None`` deletes the key) with the bulk
        API: index/delete by ``_id``, so applying a batch again changes nothing. Items refused
        with 429/5xx and connection failures are retried with exponential back-off; if they
        still fail, ``OutOfResources`` is raised and the projector retries the batch later.
        ``refresh`` makes the batches searchable: the projector calls it once it has drained
        the change feed (``SearchIndexProjector.settle``), so a lag of 0 means searchable."""
        actions: list[Action] = []
        for (resource_type, id), entries, last_updated in updates:
            alias = self.alias(resource_type)
            if entries is None:
                actions.append(({"delete": {"_index": alias, "_id": id}}, None))
            else:
                self._ensure(resource_type)
                doc = document((resource_type, id), entries, last_updated)
                actions.append(({"index": {"_index": alias, "_id": id}}, doc))
        self._bulk(actions)

    def _bulk(self, actions: list[Action]) -> None:
        pending = actions
        delay = self._backoff
        failure: Exception | None = None
        for attempt in range(self._retries + 1):
            if attempt:
                time.sleep(delay)
                delay *= 2
            if not pending:
                return
            operations: list[bytes] = []  # NDJSON lines, passed through as they are
            for action, doc in pending:
                operations.append(orjson.dumps(action))
                if doc is not None:
                    operations.append(orjson.dumps(doc))
            try:
                # the client's NDJSON serializer passes bytes lines through (not in its stubs)
                response = self.client.bulk(operations=cast(Any, operations))
            except (elastic_transport.ConnectionError, elastic_transport.ConnectionTimeout) as exc:
                failure = exc
                continue
            except elasticsearch.ApiError as exc:
                if not retryable_status(exc.meta.status):
                    raise translate(exc) from exc
                failure = exc
                continue
            except elastic_transport.TransportError as exc:
                raise translate(exc) from exc
            if not response["errors"]:
                return
            retry: list[Action] = []
            for (action, doc), item in zip(pending, response["items"], strict=True):
                op, result = next(iter(item.items()))
                status = int(result.get("status", 500))
                if status < 300 or (op == "delete" and status == 404):
                    continue  # deleting what is not there (or an index not created yet)
                if retryable_status(status):
                    retry.append((action, doc))
                    continue
                raise HubError(
                    f"Elasticsearch refused to {op} {result.get('_index')}/{result.get('_id')}:"
                    f" {result.get('error')}"
                )
            pending = retry
            failure = OutOfResources(f"Elasticsearch rejected {len(retry)} bulk items (429/5xx)")
            if not pending:
                return
        if isinstance(failure, elasticsearch.ApiError | elastic_transport.TransportError):
            raise translate(failure) from failure
        raise OutOfResources(
            f"Elasticsearch bulk indexing failed after {self._retries + 1} attempts ({failure})",
            headers={"Retry-After": "5"},
        ) from failure

    def refresh(self) -> None:
        """Make everything applied so far visible to searches (refresh API)."""
        with es_errors():
            self.client.indices.refresh(
                index=self.prefix, ignore_unavailable=True, allow_no_indices=True
            )

    # ---- searching ---------------------------------------------------------------------------
    def search(self, query: SearchQuery) -> SearchResult:
        """Answer ``query`` (FHIR R4 search.html; rules in ``adapters.elasticsearch.query``).
        A 5xx answer is retried once (a search that met an index being swapped out)."""
        with es_errors():
            try:
                return self._search(query)
            except elasticsearch.ApiError as exc:
                if exc.meta.status < 500:
                    raise
            time.sleep(self._backoff)
            return self._search(query)

    def _search(self, query: SearchQuery) -> SearchResult:
        rtype = query.resource_type
        compiler = Compiler(self)
        es_query = all_of([compiler.criterion(c, rtype) for c in query.criteria])
        want_matches = query.count > 0 and query.summary != "count"
        want_total = query.total != "none" or query.summary == "count"
        if "match_none" in es_query:
            return SearchResult([], [], 0 if want_total else None)
        index = self._target(rtype)
        offset = max(0, query.offset)
        matches: list[Key] = []
        total: int | None = None
        if want_matches:
            sort = [sort_clause(k) for k in query.sort] + _TYPE_ID
            if offset + query.count <= self.window:
                response = self.client.search(
                    index=index,
                    query=es_query,
                    sort=sort,
                    from_=offset,
                    size=query.count,
                    source=False,
                    track_total_hits=want_total,
                    ignore_unavailable=True,
                    allow_no_indices=True,
                )
                matches = [_key(h, len(query.sort)) for h in response["hits"]["hits"]]
                if want_total:
                    total = int(response["hits"]["total"]["value"])
            else:
                matches, total = self._deep_page(index, es_query, sort, offset, query.count)
                if not want_total:
                    total = None
        elif want_total:
            counted = self.client.count(
                index=index, query=es_query, ignore_unavailable=True, allow_no_indices=True
            )
            total = int(counted["count"])
        included = (
            self._includes(compiler, query.includes, matches, query.include_access)
            if query.includes
            else []
        )
        return SearchResult(matches=matches, included=included, total=total)

    def _deep_page(
        self, index: str, query: Query, sort: list[Query], offset: int, count: int
    ) -> tuple[list[Key], int]:
        """Page ``[offset, offset + count)`` walked with a point in time and ``search_after``
        (from/size stops at ``max_result_window``)."""
        pit = self.client.open_point_in_time(index=index, keep_alive="1m", ignore_unavailable=True)
        pit_id = str(pit["id"])
        try:
            page = min(self.window, SCAN_PAGE)
            seen, total = 0, 0
            after: list[Any] | None = None
            matches: list[Key] = []
            while len(matches) < count:
                body: dict[str, Any] = {
                    "pit": {"id": pit_id, "keep_alive": "1m"},
                    "query": query,
                    "sort": sort,
                    "size": page,
                    "source": False,
                    "track_total_hits": after is None,
                }
                if after is not None:
                    body["search_after"] = after
                response = self.client.search(**body)
                pit_id = str(response.get("pit_id", pit_id))
                hits = response["hits"]["hits"]
                if after is None:
                    total = int(response["hits"]["total"]["value"])
                for hit in hits:
                    if seen >= offset and len(matches) < count:
                        matches.append(_key(hit, len(sort) - 2))
                    seen += 1
                if len(hits) < page:
                    break
                after = hits[-1]["sort"]
            return matches, total
        finally:
            with contextlib.suppress(elasticsearch.ApiError, elastic_transport.TransportError):
                self.client.close_point_in_time(id=pit_id)  # else it expires after keep_alive

    def _scan(
        self, index: str, query: Query, fields: Sequence[str] = ()
    ) -> Iterator[dict[str, Any]]:
        """Every hit of ``query``, in (type, id) order, paged with ``search_after``."""
        after: list[Any] | None = None
        while True:
            response = self.client.search(
                index=index,
                query=query,
                sort=_TYPE_ID,
                size=SCAN_PAGE,
                source=False,
                fields=[{"field": f} for f in fields] or None,
                search_after=after,
                track_total_hits=False,
                ignore_unavailable=True,
                allow_no_indices=True,
            )
            hits = response["hits"]["hits"]
            yield from hits
            if len(hits) < SCAN_PAGE:
                return
            after = hits[-1]["sort"]

    # ---- Resolver (chains and _has) ------------------------------------------------------------
    def ids(self, resource_type: str, query: Query) -> list[str]:
        """Ids of ``resource_type`` matching ``query`` (a chain's targets)."""
        found: list[str] = []
        for hit in self._scan(self.alias(resource_type), query):
            found.append(str(hit["sort"][1]))
            if len(found) > MAX_RESOLVED:
                raise InvalidSearch(
                    f"A chained search matches more than {MAX_RESOLVED} {resource_type}"
                    " resources; add criteria to narrow it"
                )
        return found

    def targets(self, resource_type: str, query: Query, field: str) -> list[str]:
        """Distinct ``field`` values over the matches (a composite aggregation, paged)."""
        found: list[str] = []
        after: dict[str, Any] | None = None
        while True:
            composite: dict[str, Any] = {
                "size": SCAN_PAGE,
                "sources": [{"v": {"terms": {"field": field}}}],
            }
            if after is not None:
                composite["after"] = after
            response = self.client.search(
                index=self.alias(resource_type),
                query=query,
                size=0,
                aggs={"t": {"composite": composite}},
                track_total_hits=False,
                ignore_unavailable=True,
                allow_no_indices=True,
            )
            agg = response.get("aggregations", {}).get("t")
            if agg is None:
                return found
            found += [str(b["key"]["v"]) for b in agg["buckets"]]
            if len(found) > MAX_RESOLVED:
                raise InvalidSearch(
                    f"A _has search reaches more than {MAX_RESOLVED} resources; add criteria"
                )
            after = agg.get("after_key")
            if not agg["buckets"] or after is None:
                return found

    # ---- _include / _revinclude ----------------------------------------------------------------
    def _includes(
        self,
        compiler: Compiler,
        includes: tuple[Include, ...],
        matches: list[Key],
        access: tuple[tuple[str, AnyCriterion | None], ...] | None,
    ) -> list[Key]:
        """search.html#include, as the SQLite engine: round 0 applies every include to the
        matches, each further round (at most ``INCLUDE_ROUNDS``) the ``:iterate`` ones to what
        the previous round added; matches never repeat; ``access`` filters every round."""
        seen = set(matches)
        included: list[Key] = []
        frontier = matches
        for round_ in range(INCLUDE_ROUNDS + 1):
            active = includes if round_ == 0 else tuple(i for i in includes if i.iterate)
            if not active or not frontier:
                break
            added: list[Key] = []
            for inc in active:
                for key in self._include_step(inc, frontier):
                    if key not in seen:
                        seen.add(key)
                        added.append(key)
            if access is not None:
                added = self._permitted(compiler, access, added)
            included += added
            frontier = added
        return included

    def _include_step(self, inc: Include, frontier: list[Key]) -> list[Key]:
        field = "refs" if inc.param.name == "*" else f"ref.{inc.param.name}.rt"
        if not inc.reverse:
            sources = [i for t, i in frontier if t == inc.source_type]
            if not sources:
                return []
            targets: set[str] = set()
            for chunk in _chunks(sources):
                for hit in self._scan(
                    self.alias(inc.source_type), {"terms": {"id": chunk}}, fields=[field]
                ):
                    targets.update(hit.get("fields", {}).get(field, ()))
            if inc.target_type is not None:
                targets = {t for t in targets if t.partition("/")[0] == inc.target_type}
            return self._live(targets)
        wanted = [f"{t}/{i}" for t, i in frontier if inc.target_type in (None, t)]
        if not wanted:
            return []
        found: set[Key] = set()
        for chunk in _chunks(wanted):
            query = {"terms": {field: chunk}}
            found.update(_key(h) for h in self._scan(self.alias(inc.source_type), query))
        return sorted(found)

    def _live(self, targets: Iterable[str]) -> list[Key]:
        """The ``Type/id`` targets that are indexed (live), in (type, id) order."""
        by_type: dict[str, list[str]] = {}
        for target in targets:
            t, _, i = target.partition("/")
            by_type.setdefault(t, []).append(i)
        if not by_type:
            return []
        found: list[Key] = []
        for t in sorted(by_type):
            for chunk in _chunks(sorted(by_type[t])):
                found += [_key(h) for h in self._scan(self.alias(t), {"terms": {"id": chunk}})]
        return found

    def _permitted(
        self,
        compiler: Compiler,
        access: tuple[tuple[str, AnyCriterion | None], ...],
        keys: list[Key],
    ) -> list[Key]:
        """The ``keys`` whose type ``access`` allows and that meet that type's criterion."""
        allowed = dict(access)
        keep: set[Key] = set()
        for rtype in {t for t, _ in keys if t in allowed}:
            ids = [i for t, i in keys if t == rtype]
            crit = allowed[rtype]
            if crit is None:
                keep.update((rtype, i) for i in ids)
                continue
            criterion = compiler.criterion(crit, rtype)
            for chunk in _chunks(ids):
                query = all_of([{"terms": {"id": chunk}}, criterion])
                if "match_none" not in query:
                    keep.update(_key(h) for h in self._scan(self.alias(rtype), query))
        return [k for k in keys if k in keep]

    # ---- operations --------------------------------------------------------------------------
    def status(self) -> dict[str, object]:
        """For ``/health``: cluster health and live documents per type (cluster health API, a
        terms aggregation); ``OutOfResources`` when Elasticsearch cannot be reached."""
        with es_errors():
            health = self.client.cluster.health()
            response = self.client.search(
                index=self.prefix,
                size=0,
                aggs={"types": {"terms": {"field": "type", "size": 1000}}},
                ignore_unavailable=True,
                allow_no_indices=True,
            )
        buckets = response.get("aggregations", {}).get("types", {}).get("buckets", [])
        return {
            "engine": "elasticsearch",
            "node": self.node,
            "prefix": self.prefix,
            "cluster_status": str(health["status"]),
            "documents": {str(b["key"]): int(b["doc_count"]) for b in buckets},
        }

    def reindex(
        self,
        resource_types: Iterable[str],
        source: Iterable[Update],
        *,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, int]:
        """Rebuild the indexes of ``resource_types`` from ``source`` (``(key, entries,
        last_updated)``; other types and deletions are skipped) into fresh ``v<N+1>`` indexes
        with the current mappings, then swap the aliases to them in one atomic aliases request
        and delete the old ones a moment later: searches answer from the old indexes until the
        swap. Writes ``apply``-ed meanwhile go to the old indexes; the caller replays them
        afterwards.
        ``progress`` gets the number of documents indexed so far. Returns documents per type."""
        types = list(dict.fromkeys(resource_types))
        fresh: dict[str, str] = {}
        counts = dict.fromkeys(types, 0)
        with es_errors():
            try:
                for t in types:
                    fresh[t] = self._next_physical(t)
                    self._create(t, fresh[t], aliases=False, refresh_interval="-1")
                done = 0
                batch: list[Action] = []
                for key, entries, last_updated in source:
                    if key[0] not in fresh or entries is None:
                        continue
                    doc = document(key, entries, last_updated)
                    batch.append(({"index": {"_index": fresh[key[0]], "_id": key[1]}}, doc))
                    counts[key[0]] += 1
                    if len(batch) >= REINDEX_CHUNK:
                        self._bulk(batch)
                        done += len(batch)
                        batch = []
                        if progress is not None:
                            progress(done)
                self._bulk(batch)
                if progress is not None and batch:
                    progress(done + len(batch))
                names = list(fresh.values())
                self.client.indices.put_settings(index=names, settings={"refresh_interval": None})
                self.client.indices.refresh(index=names)
                self._swap(fresh)
            except BaseException:
                if fresh:
                    self.client.indices.delete(index=list(fresh.values()), ignore_unavailable=True)
                raise
        with self._lock:
            self._known.update(self.alias(t) for t in types)
        return counts

    def _next_physical(self, resource_type: str) -> str:
        alias = self.alias(resource_type)
        existing = self.client.indices.get(
            index=f"{alias}-v*", allow_no_indices=True, expand_wildcards="all"
        )
        versions = [
            int(name.rsplit("-v", 1)[1]) for name in existing if name.rsplit("-v", 1)[1].isdigit()
        ]
        return f"{alias}-v{max(versions, default=0) + 1}"

    def _swap(self, fresh: dict[str, str]) -> None:
        """Move both aliases to the fresh indexes in one aliases request, then, after a grace
        period for searches already running on the old indexes, delete those."""
        actions: list[dict[str, Any]] = []
        old: list[str] = []
        for t, name in fresh.items():
            alias = self.alias(t)
            try:
                previous = [o for o in self.client.indices.get_alias(name=alias) if o != name]
            except elasticsearch.NotFoundError:
                previous = []
            actions.append({"add": {"index": name, "alias": alias}})
            actions.append({"add": {"index": name, "alias": self.prefix}})
            for o in previous:
                actions.append({"remove": {"index": o, "alias": alias}})
                actions.append({"remove": {"index": o, "alias": self.prefix}})
            old += previous
        self.client.indices.update_aliases(actions=actions)
        if old:
            time.sleep(self.swap_grace)
            self.client.indices.delete(index=old, ignore_unavailable=True)

    def delete_all(self) -> None:
        """Delete every index of this prefix (tests, decommissioning)."""
        with es_errors():
            names = list(
                self.client.indices.get(
                    index=f"{self.prefix}-*", allow_no_indices=True, expand_wildcards="all"
                )
            )
            if names:
                self.client.indices.delete(index=names, ignore_unavailable=True)
        with self._lock:
            self._known.clear()

    def close(self) -> None:
        self.client.close()
