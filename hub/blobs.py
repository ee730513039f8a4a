"""Finding the blob store through the ``pixelhub.blobstores`` entry points (like engines).

The core never imports an adapter: ``open_blob_store`` loads the store registered under ``name``
(``file``: content-addressed files under ``<data dir>/blobs``) and returns it as a ``BlobStore``.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import cast

from hub.errors import HubError
from hub.ports import BlobStore


class BlobStoreNotFound(HubError):
    hub_code = "HUB-1003"


def open_blob_store(data_dir: Path | str, *, name: str = "file") -> BlobStore:
    """The blob store ``name`` rooted at ``<data_dir>/blobs``."""
    found = {ep.name: ep for ep in entry_points(group="pixelhub.blobstores")}
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise BlobStoreNotFound(f"No blob store named {name!r} (installed: {known})")
    factory = found[name].load()
    return cast(BlobStore, factory(str(Path(data_dir) / "blobs")))
