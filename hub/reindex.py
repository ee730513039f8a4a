"""``pixelhub reindex``: rebuild a separate search index (Elasticsearch) from the store of record
with no search downtime.

The index builds fresh physical indexes behind its aliases and swaps them atomically
(``reindex``); meanwhile the live index keeps answering and the projector keeps feeding it. Changes
committed after the walk began are replayed into the new index afterwards through the same
idempotent path as the projector, so nothing written during the rebuild is missed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import orjson

from hub.errors import HubError
from hub.ports import Engine, Repository
from hub.projectors import SearchIndexProjector
from hub.search.extract import extract_index_entries
from hub.search.model import IndexEntry, Key
from hub.search.registry import SERVED_TYPES, SearchParameterRegistry

IndexSource = Iterable[tuple[Key, Sequence[IndexEntry], str]]


class NotReindexable(HubError):
    hub_code = "HUB-1006"


def index_source(
    repository: Repository,
    resource_types: Sequence[str],
    registry: SearchParameterRegistry,
    advance: Callable[[int], None],
    *,
    batch: int = 1000,
) -> Iterator[tuple[Key, Sequence[IndexEntry], str]]:
    """Every current resource of ``resource_types`` with its index entries, in key order."""
    for resource_type in resource_types:
        after: Key | None = None
        while found := repository.scan(resource_type, after=after, limit=batch):
            for stored in found:
                if stored.data is not None:
                    entries = extract_index_entries(orjson.loads(stored.data), registry)
                    yield (stored.resource_type, stored.id), entries, stored.last_updated
            advance(len(found))
            after = (found[-1].resource_type, found[-1].id)


def reindex(
    engine: Engine,
    registry: SearchParameterRegistry,
    resource_types: Sequence[str] = (),
    *,
    on_start: Callable[[int], None] = lambda total: None,
    advance: Callable[[int], None] = lambda n: None,
) -> tuple[int, int]:
    """Rebuild the indexes of ``resource_types`` (all served types when empty); returns
    ``(resources indexed, changes replayed)``."""
    index = engine.search_index
    # reindex(resource_types, source): builds new indexes from source, swaps them in
    rebuild: Callable[[Sequence[str], IndexSource], None] | None = getattr(index, "reindex", None)
    if index.synchronous or rebuild is None:
        raise NotReindexable(
            f"The search index of '{engine.name}' is written with every change: nothing to"
            " rebuild (reindex applies to a separate index such as Elasticsearch)"
        )
    types = list(resource_types) or sorted(SERVED_TYPES)
    unknown = [t for t in types if t not in SERVED_TYPES]
    if unknown:
        raise NotReindexable(f"Not a served resource type: {', '.join(unknown)}")
    start = engine.change_feed.last_seq()
    on_start(sum(engine.repository.count(t) for t in types))
    walked = 0

    def count(n: int) -> None:
        nonlocal walked
        walked += n
        advance(n)

    rebuild(types, index_source(engine.repository, types, registry, count))
    replayed = 0
    projector = SearchIndexProjector(engine.repository, index)
    wanted = set(types)
    while changes := engine.change_feed.read_since(start, 1000):
        mine = [c for c in changes if c.resource_type in wanted]
        if mine:
            projector.handle(mine)
        replayed += len(mine)
        start = changes[-1].seq
    projector.settle()
    return walked, replayed
