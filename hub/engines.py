"""Finding storage engines by URL scheme through the ``pixelhub.engines`` entry points.

Like SQLAlchemy dialects: ``sqlite:///...`` loads the engine registered as ``sqlite``,
``postgresql://...`` the one registered as ``postgresql``. A third-party package adds an engine by
declaring an entry point; the core imports no engine.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import cast

from hub.errors import HubError
from hub.ports import Engine, EngineFactory


class EngineNotFound(HubError):
    hub_code = "HUB-1001"


def engine_factory(url: str) -> EngineFactory:
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    found = {ep.name: ep for ep in entry_points(group="pixelhub.engines")}
    if scheme not in found:
        known = ", ".join(sorted(found)) or "none"
        raise EngineNotFound(f"No storage engine for '{scheme}://' (installed: {known})")
    return cast(EngineFactory, found[scheme].load())


def open_engine(url: str, *, data_dir: str) -> Engine:
    return engine_factory(url)(url, data_dir=data_dir)
