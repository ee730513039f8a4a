"""Who this hub is in an XDS affinity domain: its Document Repository ``repositoryUniqueId`` and
its ``homeCommunityId`` (IHE ITI TF-3 4.2.3.2.18, 4.2.3.2.12; XCA homeCommunityId as
``urn:oid:``). Configured, or made once per data dir from random UUIDs as ``2.25`` OIDs (ISO/IEC
9834-8) and kept in ``<data dir>/xds-ids.json``, so two installs never share an id and one
install keeps its id across restarts."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from hub.config import Settings

IDS_FILE = "xds-ids.json"


@dataclass(frozen=True)
class XdsIdentity:
    repository_unique_id: str
    home_community_id: str  # urn:oid:...


def _new_oid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def xds_identity(settings: Settings) -> XdsIdentity:
    """The configured ids, else those kept in the data dir (created on first use)."""
    path = Path(settings.data_dir) / IDS_FILE
    if not path.exists():
        made = {"repository": _new_oid(), "community": f"urn:oid:{_new_oid()}"}
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_suffix(f".{os.getpid()}.{uuid.uuid4().hex}.tmp")
        part.write_text(json.dumps(made))
        try:
            os.link(part, path)  # atomic and exclusive: the first process to start wins
        except FileExistsError:
            pass
        finally:
            part.unlink()
    kept: dict[str, str] = json.loads(path.read_text())
    return XdsIdentity(
        settings.xds_repository_unique_id or kept["repository"],
        settings.xds_home_community_id or kept["community"],
    )


__all__ = ["XdsIdentity", "xds_identity"]
