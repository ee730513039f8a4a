"""Finding storage engines and search indexes by URL scheme through entry points.

Like SQLAlchemy dialects: ``sqlite:///...`` loads the engine registered as ``sqlite`` in the
``pixelhub.engines`` group, ``postgresql://...`` the one registered as ``postgresql``; an
``http(s)://`` search URL loads the index registered as ``elasticsearch`` in
``pixelhub.search_indexes``. A third-party package adds an engine or an index by declaring an
entry point; the core imports neither.

With a separate search index (``PIXELHUB_ELASTICSEARCH_URL``), the engine keeps its own
synchronous index for what must see its own transaction (conditional create/update/delete,
``Transaction.search``), and the separate index answers the API's searches, fed from the change
feed by ``SearchIndexProjector`` (DESIGN.md, data flow 5).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Protocol, cast

from hub.errors import HubError
from hub.ports import ChangeFeed, Engine, EngineFactory, Repository, SearchIndex


class EngineNotFound(HubError):
    hub_code = "HUB-1001"


class SearchIndexFactory(Protocol):
    """What a ``pixelhub.search_indexes`` entry point refers to."""

    def __call__(self, url: str, *, data_dir: str) -> SearchIndex: ...


def _load(group: str, name: str, what: str) -> Any:
    found = {ep.name: ep for ep in entry_points(group=group)}
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise EngineNotFound(f"No {what} for '{name}' (installed: {known})")
    return found[name].load()


def engine_factory(url: str) -> EngineFactory:
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    return cast(EngineFactory, _load("pixelhub.engines", scheme, "storage engine"))


def search_index_factory(url: str) -> SearchIndexFactory:
    """``elasticsearch+http://…`` or a plain ``http(s)://`` URL (Elasticsearch's own form)."""
    scheme = url.split(":", 1)[0].lower()
    name = scheme.split("+", 1)[0] if "+" in scheme else "elasticsearch"
    return cast(SearchIndexFactory, _load("pixelhub.search_indexes", name, "search index"))


class EngineWithSearchIndex:
    """An engine whose API searches go to a separate, asynchronous search index."""

    def __init__(self, engine: Engine, index: SearchIndex) -> None:
        self.inner = engine
        self.name = f"{engine.name}+{getattr(index, 'name', type(index).__name__)}"
        self.repository: Repository = engine.repository
        self.change_feed: ChangeFeed = engine.change_feed
        self.search_index: SearchIndex = index

    def __getattr__(self, name: str) -> Any:  # dicom_store, leadership… of the inner engine
        return getattr(self.inner, name)

    def status(self) -> dict[str, object]:
        status = {**self.inner.status(), "engine": self.name}
        index_status = getattr(self.search_index, "status", None)
        if index_status is not None:
            status["search_index"] = index_status()
        return status

    def close(self) -> None:
        try:
            close = getattr(self.search_index, "close", None)
            if close is not None:
                close()
        finally:
            self.inner.close()


def open_engine(url: str, *, data_dir: str, search_url: str | None = None) -> Engine:
    engine = engine_factory(url)(url, data_dir=data_dir)
    if not search_url:
        return engine
    try:
        index = search_index_factory(search_url)(search_url, data_dir=data_dir)
    except BaseException:
        engine.close()
        raise
    return EngineWithSearchIndex(engine, index)
