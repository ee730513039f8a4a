"""Rendering of ``Bundle`` resources: searchset, history, batch/transaction responses (bundle.html).

Stored resources are embedded as their stored JSON bytes (``orjson.Fragment``) so a page of search
results is never parsed and re-serialised, unless ``_summary``/``_elements`` ask for a subset.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

import orjson

from hub.errors import InvalidSearch, Issue
from hub.fhir.validation import summary_elements
from hub.ports import HistoryPage, StoredResource
from hub.search.model import SearchQuery

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
}
_PAGING = {"_offset", "_count"}
_DIGITS = re.compile(r"[0-9]+")
MAX_OFFSET = 10**18  # history _count/_offset are clamped here (the store's integers are 64-bit)


def etag(stored: StoredResource) -> str:
    return f'W/"{stored.version}"'


def http_date(instant: str) -> str:
    """``2024-01-02T03:04:05.678Z`` -> RFC 9110 HTTP-date for ``Last-Modified``."""
    parsed = datetime.fromisoformat(instant.replace("Z", "+00:00")).astimezone(UTC)
    return format_datetime(parsed, usegmt=True)


def location(base_url: str, stored: StoredResource) -> str:
    return f"{base_url}/{stored.resource_type}/{stored.id}/_history/{stored.version}"


def full_url(base_url: str, stored: StoredResource) -> str:
    return f"{base_url}/{stored.resource_type}/{stored.id}"


def subset(data: bytes, query: SearchQuery) -> dict[str, Any]:
    """Apply ``_summary`` (true, text, data) or ``_elements`` (search.html#summary, #elements)."""
    resource: dict[str, Any] = orjson.loads(data)
    keep: set[str] | None = None
    if query.elements:
        keep = {"resourceType", "id", "meta", *query.elements}
    elif query.summary == "true":
        keep = set(summary_elements(resource["resourceType"]))
    elif query.summary == "text":
        keep = {"resourceType", "id", "meta", "text"}
    elif query.summary == "data":
        resource.pop("text", None)
    if keep is not None:
        resource = {k: v for k, v in resource.items() if k in keep or k.lstrip("_") in keep}
    meta = resource.setdefault("meta", {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    return resource


def _embed(stored: StoredResource, query: SearchQuery | None) -> Any:
    assert stored.data is not None
    if query is not None and (query.elements or query.summary in ("true", "text", "data")):
        return subset(stored.data, query)
    return orjson.Fragment(stored.data)


def _link(base_url: str, path: str, params: Sequence[tuple[str, str]], **paging: int) -> str:
    kept = [(k, v) for k, v in params if k not in _PAGING]
    kept += [(k, str(v)) for k, v in paging.items()]
    url = f"{base_url}/{path}" if path else base_url
    return f"{url}?{urlencode(kept)}" if kept else url


def searchset(
    base_url: str,
    path: str,
    params: Sequence[tuple[str, str]],
    query: SearchQuery,
    matches: list[StoredResource],
    included: list[StoredResource],
    total: int | None,
) -> dict[str, Any]:
    """A ``searchset`` Bundle with ``self``/``next``/``previous`` links (search.html#paging)."""
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": full_url(base_url, r),
            "resource": _embed(r, query),
            "search": {"mode": "match"},
        }
        for r in matches
    ]
    entries += [
        {
            "fullUrl": full_url(base_url, r),
            "resource": _embed(r, query),
            "search": {"mode": "include"},
        }
        for r in included
    ]
    if query.ignored:
        names = ", ".join(query.ignored)
        warning = Issue(f"Parameters ignored: {names}", code="not-supported", severity="warning")
        entries.append(
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": {"resourceType": "OperationOutcome", "issue": [warning.to_fhir()]},
                "search": {"mode": "outcome"},
            }
        )
    links = [
        {
            "relation": "self",
            "url": _link(base_url, path, params, _count=query.count, _offset=query.offset),
        }
    ]
    more = len(matches) >= query.count > 0 if total is None else query.offset + query.count < total
    if more and query.count > 0:
        links.append(
            {
                "relation": "next",
                "url": _link(
                    base_url, path, params, _count=query.count, _offset=query.offset + query.count
                ),
            }
        )
    if query.offset > 0 and query.count > 0:
        previous = max(0, query.offset - query.count)
        links.append(
            {
                "relation": "previous",
                "url": _link(base_url, path, params, _count=query.count, _offset=previous),
            }
        )
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links
    if entries:
        bundle["entry"] = entries
    return bundle


@dataclass(frozen=True)
class HistoryArgs:
    """``_count``, ``_offset``, ``_since``, ``_at`` of a history interaction (http.html#history)."""

    count: int
    offset: int
    since: str | None
    at: str | None
    params: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, params: Sequence[tuple[str, str]], max_count: int) -> HistoryArgs:
        values = dict(params)
        for name in values:
            if name not in ("_count", "_offset", "_since", "_at", "_format", "_pretty"):
                raise InvalidSearch.at(f"Unknown history parameter {name!r}", name)

        def integer(name: str, default: int) -> int:
            """ASCII digits only (``str.isdigit`` accepts ``²``); huge values are clamped so the
            store never sees more than a 64-bit integer."""
            raw = values.get(name)
            if raw is None:
                return default
            if not _DIGITS.fullmatch(raw):
                raise InvalidSearch.at(f"{name} must be a non-negative integer, got {raw!r}", name)
            return min(int(raw), MAX_OFFSET) if len(raw) <= 19 else MAX_OFFSET

        def instant(name: str) -> str | None:
            raw = values.get(name)
            if raw is None:
                return None
            try:
                parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=UTC)
                utc = parsed.astimezone(UTC)  # OverflowError at the ends of the calendar
            except (ValueError, OverflowError):
                raise InvalidSearch.at(f"{name} must be an instant, got {raw!r}", name) from None
            return utc.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

        return cls(
            count=min(integer("_count", 50), max_count),
            offset=integer("_offset", 0),
            since=instant("_since"),
            at=instant("_at"),
            params=tuple(params),
        )


def history(base_url: str, path: str, args: HistoryArgs, page: HistoryPage) -> dict[str, Any]:
    """A ``history`` Bundle, newest first, with request/response per entry (bundle.html)."""
    entries = []
    for r in page.entries:
        if r.deleted:
            method, url, status = "DELETE", f"{r.resource_type}/{r.id}", "204"
        elif r.version == 1:
            method, url, status = "POST", r.resource_type, "201"
        else:
            method, url, status = "PUT", f"{r.resource_type}/{r.id}", "200"
        entry: dict[str, Any] = {"fullUrl": full_url(base_url, r)}
        if not r.deleted:
            entry["resource"] = orjson.Fragment(r.data)  # type: ignore[arg-type]
        entry["request"] = {"method": method, "url": url}
        entry["response"] = {"status": status, "etag": etag(r), "lastModified": r.last_updated}
        entries.append(entry)
    links = [
        {
            "relation": "self",
            "url": _link(base_url, path, args.params, _count=args.count, _offset=args.offset),
        }
    ]
    if args.offset + args.count < page.total:
        nxt = args.offset + args.count
        links.append(
            {
                "relation": "next",
                "url": _link(base_url, path, args.params, _count=args.count, _offset=nxt),
            }
        )
    if args.offset > 0:
        prev = max(0, args.offset - args.count)
        links.append(
            {
                "relation": "previous",
                "url": _link(base_url, path, args.params, _count=args.count, _offset=prev),
            }
        )
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "history",
        "total": page.total,
        "link": links,
    }
    if entries:
        bundle["entry"] = entries
    return bundle


def response_entry(
    base_url: str,
    stored: StoredResource | None,
    status: str,
    body: Any = None,
    outcome: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One ``Bundle.entry`` of a batch/transaction-response (http.html#transaction-response)."""
    response: dict[str, Any] = {"status": status}
    if outcome is not None:
        response["outcome"] = outcome
    entry: dict[str, Any] = {}
    if stored is not None and not stored.deleted:
        entry["fullUrl"] = full_url(base_url, stored)
        response["location"] = location(base_url, stored)
        response["etag"] = etag(stored)
        response["lastModified"] = stored.last_updated
    if body is not None:
        entry["resource"] = body
    entry["response"] = response
    return entry
