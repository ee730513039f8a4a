"""Dialect-neutral pieces of the SQL stores of record (FHIR R4 http.html#update, #vread,
#history): the stored JSON of a version, the version-conflict error, rows as ``StoredResource``
and the history and scan queries over the ``resource``/``version`` tables.

Pure: SQL spelled with a ``hub.search.sql.Dialect`` and run on the ``hub.search.sql.Connection``
the engine hands in; no driver here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import orjson

from hub.errors import HubError, InvalidRequest, InvalidResource, PreconditionFailed
from hub.ports import ChangeOp, HistoryPage, StoredResource
from hub.search.matching import instant_range
from hub.search.model import Key
from hub.search.sql import Connection, Dialect

__all__ = ["VERSION_COLUMNS", "history", "scan", "serialise", "stored", "version_mismatch"]

# The columns ``stored`` reads, after the type and id.
VERSION_COLUMNS = "v.version, v.last_updated, v.data, v.method"


def stored(resource_type: str, id: str, row: Sequence[Any]) -> StoredResource:
    """``StoredResource`` from ``VERSION_COLUMNS``."""
    version, last_updated, data, method = row
    return StoredResource(
        resource_type=resource_type,
        id=id,
        version=int(version),
        last_updated=str(last_updated),
        data=data if data is None or isinstance(data, bytes) else bytes(data),
        method=cast(ChangeOp, method),
    )


def serialise(
    resource_type: str, id: str, resource: dict[str, object], version: int, last_updated: str
) -> bytes:
    """The stored JSON: a copy of ``resource`` with ``id``, ``meta.versionId`` and
    ``meta.lastUpdated`` set (FHIR R4 resource.html#Meta)."""
    found = resource.get("resourceType", resource_type)
    if found != resource_type:
        raise InvalidResource(f"Resource type {found!r} stored as {resource_type!r}")
    meta_in = resource.get("meta")
    meta: dict[str, object] = dict(meta_in) if isinstance(meta_in, dict) else {}
    meta["versionId"] = str(version)
    meta["lastUpdated"] = last_updated
    doc: dict[str, object] = {"resourceType": resource_type, "id": id, "meta": meta}
    for k, v in resource.items():
        if k not in doc:
            doc[k] = v
    try:
        return orjson.dumps(doc)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise InvalidResource(f"{resource_type}/{id} is not serialisable as JSON: {exc}") from exc


def version_mismatch(resource_type: str, id: str, expected: int, current: int | None) -> HubError:
    """``If-Match`` failed (R4 http.html#concurrency)."""
    found = "it does not exist" if current is None else f"the current version is {current}"
    return PreconditionFailed(
        f"Version conflict on {resource_type}/{id}: expected version {expected}, but {found}"
    )


def history(
    d: Dialect,
    conn: Connection,
    resource_type: str | None,
    id: str | None,
    *,
    since: str | None,
    at: str | None,
    count: int,
    offset: int,
) -> HistoryPage:
    """Instance, type or system history, newest first (R4 http.html#history), read on ``conn``
    (one snapshot, so the total and the page agree). ``since`` keeps versions written at or
    after it; ``at`` keeps versions that were current at some moment of the instant's precision
    range."""
    p = d.p
    where: list[str] = []
    params: list[object] = []
    if id is not None:
        if resource_type is None:
            raise InvalidRequest("Instance history needs a resource type")
        where.append(f"v.res_pk = (SELECT pk FROM resource WHERE res_type = {p} AND res_id = {p})")
        params += [resource_type, id]
    elif resource_type is not None:
        where.append(f"v.res_type = {p}")
        params.append(resource_type)
    if since is not None:
        where.append(f"v.last_updated_ms >= {p}")
        params.append(instant_range(since)[0])
    if at is not None:
        low, high = instant_range(at)
        where.append(
            f"v.last_updated_ms <= {p} AND NOT EXISTS (SELECT 1 FROM version n"
            " WHERE n.res_pk = v.res_pk AND n.version = v.version + 1"
            f" AND n.last_updated_ms <= {p})"
        )
        params += [high, low]
    clause = " WHERE " + " AND ".join(where) if where else ""
    total = next(iter(conn.execute(f"SELECT count(*) FROM version v{clause}", params)), None)
    rows = conn.execute(
        f"SELECT v.res_type, r.res_id, {VERSION_COLUMNS}"
        f" FROM version v JOIN resource r ON r.pk = v.res_pk{clause}"
        f" ORDER BY v.vid DESC LIMIT {p} OFFSET {p}",
        [*params, max(0, count), max(0, offset)],
    )
    entries = [stored(t, i, rest) for t, i, *rest in rows]
    return HistoryPage(entries=entries, total=int(total[0]) if total else 0)


def scan(
    d: Dialect, conn: Connection, resource_type: str | None, *, after: Key | None, limit: int
) -> list[StoredResource]:
    """Current, non-deleted versions ordered by ``(resource_type, id)``, strictly after
    ``after``, at most ``limit`` (``hub.ports.Repository.scan``)."""
    p = d.p
    where = [d.live("r.deleted")]
    params: list[object] = []
    if resource_type is not None:
        where.append(f"r.res_type = {p}")
        params.append(resource_type)
    if after is not None:
        where.append(f"(r.res_type, r.res_id) > ({p}, {p})")
        params += list(after)
    rows = conn.execute(
        f"SELECT r.res_type, r.res_id, {VERSION_COLUMNS}"
        " FROM resource r JOIN version v ON v.res_pk = r.pk AND v.version = r.version"
        f" WHERE {' AND '.join(where)} ORDER BY r.res_type, r.res_id LIMIT {p}",
        [*params, max(0, limit)],
    )
    return [stored(t, i, rest) for t, i, *rest in rows]
