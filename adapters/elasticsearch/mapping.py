"""Index mappings generated from the SearchParameter registry, and the document of one resource.

One document per resource, ``_id`` = the resource id, in the index of its type. Its fields
(``<group>.<parameter>.<leaf>``, a leaf name belongs to exactly one parameter type):

    type, id, lu        resource type, id, ``meta.lastUpdated`` in ms (``_id``, ``_lastUpdated``)
    has                 names of the parameters the resource has entries for (``:missing``)
    refs                every reference target ``Type/id`` (``_include``/``_revinclude`` ``*``)
    tok.<p>  tk, tt, ts token: tagged keys ``sc:system|code``, ``nc:code`` (no system), ``c:code``,
                        ``s:system``, ``ot:type|value``, ``ots:tsystem|type|value``; folded text
                        (``:text``); sort key (code, else text)
    str.<p>  sn, sx     string: folded (case and accents, as the SQLite engine folds), as is
    dat.<p>  dr, dl, dh date: ``long_range`` of ms (open ends unbounded), low and high for sorting
    num.<p>  nv         number
    qty.<p>  qv qs qc qu quantity, ``nested`` (value, system, code and unit of one Quantity)
    ref.<p>  rk, rt, rs reference: tagged keys ``r:Type/id``, ``i:id``, ``rv:Type/id|v``,
                        ``v:id|v``, ``u:url``, ``tu:Type|url``, ``is:system|value``, ``iv:value``,
                        ``tis:``/``tiv:`` (with a ``:Type`` filter); targets ``Type/id``; sort key
    uri.<p>  uv         uri
    cmp.<p>  c0, c1...  composite, ``nested``: one object per group, each component with the
                        leaves of its type (search.html#composite)

Folding happens here, in Python, not in an analyzer: the integration-test distribution of
Elasticsearch ships without the ``analysis-common`` module (no ``asciifolding``), and folding
like the SQLite engine keeps both engines' answers identical. Parameters outside the registry
(hand-made entries) get the same mappings through ``dynamic_templates``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hub.search.extract import date_range
from hub.search.matching import fold
from hub.search.model import (
    DateEntry,
    IndexEntry,
    Key,
    NumberEntry,
    ParamType,
    QuantityEntry,
    ReferenceEntry,
    StringEntry,
    TokenEntry,
    UriEntry,
)
from hub.search.registry import SearchParameterRegistry

# Open ends of a date range for sorting (the SQLite engine's values).
DATE_MIN = -(2**62)
DATE_MAX = 2**62
# Lucene terms are at most 32766 bytes: longer values are not indexed (4 bytes per char).
IGNORE_ABOVE = 8191

GROUP: dict[ParamType, str] = {
    "token": "tok",
    "string": "str",
    "date": "dat",
    "number": "num",
    "quantity": "qty",
    "reference": "ref",
    "uri": "uri",
}
_KEYWORD: dict[str, Any] = {"type": "keyword", "ignore_above": IGNORE_ABOVE}
_KEYS: dict[str, Any] = {**_KEYWORD, "doc_values": False}  # matched, never sorted
LEAVES: dict[str, dict[str, Any]] = {
    "tk": _KEYS,
    "tt": _KEYWORD,
    "ts": _KEYWORD,
    "sn": _KEYWORD,
    "sx": _KEYS,
    "dr": {"type": "long_range"},
    "dl": {"type": "long"},
    "dh": {"type": "long"},
    "nv": {"type": "double"},
    "qv": {"type": "double"},
    "qs": _KEYS,
    "qc": _KEYS,
    "qu": _KEYS,
    "rk": _KEYS,
    "rt": _KEYWORD,
    "rs": _KEYWORD,
    "uv": _KEYWORD,
}
KIND_LEAVES: dict[ParamType, tuple[str, ...]] = {
    "token": ("tk", "tt", "ts"),
    "string": ("sn", "sx"),
    "date": ("dr", "dl", "dh"),
    "number": ("nv",),
    "quantity": ("qv", "qs", "qc", "qu"),
    "reference": ("rk", "rt", "rs"),
    "uri": ("uv",),
}


# ---- mappings ------------------------------------------------------------------------------


def _leaves(kind: ParamType) -> dict[str, Any]:
    return {"properties": {leaf: LEAVES[leaf] for leaf in KIND_LEAVES[kind]}}


def _param_mapping(kind: ParamType, components: Sequence[ParamType]) -> dict[str, Any] | None:
    if kind == "composite":
        if not components or any(c not in KIND_LEAVES for c in components):
            return None
        props = {f"c{i}": _leaves(c) for i, c in enumerate(components)}
        return {"type": "nested", "properties": props}
    if kind not in KIND_LEAVES:
        return None
    mapping = _leaves(kind)
    if kind == "quantity":
        mapping["type"] = "nested"
    return mapping


def index_mapping(registry: SearchParameterRegistry, resource_type: str) -> dict[str, Any]:
    """The mapping of ``resource_type``'s index: every registry parameter of the type declared,
    anything else mapped by leaf name through dynamic templates (Elasticsearch mapping docs:
    explicit mappings, dynamic templates)."""
    groups: dict[str, dict[str, Any]] = {g: {} for g in [*GROUP.values(), "cmp"]}
    for d in registry.for_type(resource_type):
        mapping = _param_mapping(d.type, [c.type for c in d.components])
        if mapping is not None:
            groups["cmp" if d.type == "composite" else GROUP[d.type]][d.code] = mapping
    templates: list[dict[str, Any]] = [
        {
            f"{group}_nested": {
                "path_match": f"{group}.*",
                "path_unmatch": f"{group}.*.*",
                "match_mapping_type": "object",
                "mapping": {"type": "nested"},
            }
        }
        for group in ("qty", "cmp")
    ]
    templates += [{leaf: {"match": leaf, "mapping": m}} for leaf, m in LEAVES.items()]
    properties: dict[str, Any] = {
        "type": {"type": "keyword"},
        "id": {"type": "keyword"},
        "lu": {"type": "long"},
        "has": {"type": "keyword", "doc_values": False},
        "refs": {"type": "keyword"},
    }
    for group, params in groups.items():
        properties[group] = {"type": "object", "dynamic": True, "properties": params}
    return {"dynamic": "strict", "dynamic_templates": templates, "properties": properties}


# ---- documents -----------------------------------------------------------------------------


def _token(e: TokenEntry) -> dict[str, Any]:
    keys: list[str] = []
    if e.code is not None:
        keys.append(f"c:{e.code}")
        keys.append(f"sc:{e.system}|{e.code}" if e.system is not None else f"nc:{e.code}")
        if e.type_code is not None:
            keys.append(f"ot:{e.type_code}|{e.code}")
            if e.type_system is not None:
                keys.append(f"ots:{e.type_system}|{e.type_code}|{e.code}")
    if e.system is not None:
        keys.append(f"s:{e.system}")
    out: dict[str, Any] = {"tk": keys}
    text = fold(e.text) if e.text else None
    if text is not None:
        out["tt"] = text
    sort = e.code if e.code is not None else text
    if sort is not None:
        out["ts"] = sort
    return out


def _reference(e: ReferenceEntry) -> dict[str, Any]:
    keys: list[str] = []
    t, i, v = e.target_type, e.target_id, e.version
    if i is not None:
        keys.append(f"i:{i}")
        if t is not None:
            keys.append(f"r:{t}/{i}")
        if v is not None:
            keys.append(f"v:{i}|{v}")
            if t is not None:
                keys.append(f"rv:{t}/{i}|{v}")
    if e.url is not None:
        keys.append(f"u:{e.url}")
        if t is not None:
            keys.append(f"tu:{t}|{e.url}")
    if e.identifier_value is not None:
        idv, ids = e.identifier_value, e.identifier_system
        keys.append(f"iv:{idv}")
        if ids is not None:
            keys.append(f"is:{ids}|{idv}")
        if t is not None:
            keys.append(f"tiv:{t}|{idv}")
            if ids is not None:
                keys.append(f"tis:{t}|{ids}|{idv}")
    out: dict[str, Any] = {"rk": keys}
    target = f"{t}/{i}" if t is not None and i is not None else None
    if target is not None:
        out["rt"] = target
    sort = target if target is not None else e.url
    if sort is not None:
        out["rs"] = sort
    return out


def leaves(e: IndexEntry) -> tuple[ParamType, dict[str, Any]]:
    """The parameter type of ``e`` and its leaf values."""
    if isinstance(e, TokenEntry):
        return "token", _token(e)
    if isinstance(e, StringEntry):
        return "string", {"sn": fold(e.value), "sx": e.value}
    if isinstance(e, DateEntry):
        rng: dict[str, int] = {}
        if e.low is not None:
            rng["gte"] = e.low
        if e.high is not None:
            rng["lte"] = e.high
        out: dict[str, Any] = {
            "dl": DATE_MIN if e.low is None else e.low,
            "dh": DATE_MAX if e.high is None else e.high,
        }
        if e.low is None or e.high is None or e.low <= e.high:
            out["dr"] = rng
        return "date", out
    if isinstance(e, NumberEntry):
        return "number", {"nv": e.value}
    if isinstance(e, QuantityEntry):
        q: dict[str, Any] = {"qv": e.value}
        for leaf, value in (("qs", e.system), ("qc", e.code), ("qu", e.unit)):
            if value is not None:
                q[leaf] = value
        return "quantity", q
    if isinstance(e, ReferenceEntry):
        return "reference", _reference(e)
    if isinstance(e, UriEntry):
        return "uri", {"uv": e.value}
    raise TypeError(f"not an index entry: {e!r}")  # pragma: no cover - exhaustive


def last_updated_ms(last_updated: str) -> int | None:
    """``meta.lastUpdated`` (an ISO instant) in ms, ``None`` if absent or malformed."""
    try:
        return date_range(last_updated)[0] if last_updated else None
    except ValueError:
        return None


def document(key: Key, entries: Sequence[IndexEntry], last_updated: str) -> dict[str, Any]:
    """The document of one resource: the ``entries`` exactly as given (no re-extraction)."""
    resource_type, id = key
    doc: dict[str, Any] = {"type": resource_type, "id": id}
    lu = last_updated_ms(last_updated)
    if lu is not None:
        doc["lu"] = lu
    groups: dict[str, dict[str, Any]] = {}
    composites: dict[str, dict[int, dict[str, Any]]] = {}
    has: dict[str, None] = {}
    refs: dict[str, None] = {}
    for e in entries:
        has[e.param] = None
        kind, values = leaves(e)
        if kind == "reference" and "rt" in values:
            refs[values["rt"]] = None
        if e.group:
            composites.setdefault(e.param, {}).setdefault(e.group, {})[f"c{e.component}"] = values
            continue
        params = groups.setdefault(GROUP[kind], {})
        if kind == "quantity":
            params.setdefault(e.param, []).append(values)
            continue
        fields = params.setdefault(e.param, {})
        for leaf, value in values.items():
            bucket = fields.setdefault(leaf, [])
            if isinstance(value, list):
                bucket.extend(value)
            else:
                bucket.append(value)
    doc.update(groups)
    if composites:
        doc["cmp"] = {p: list(by_group.values()) for p, by_group in composites.items()}
    doc["has"] = list(has)
    doc["refs"] = list(refs)
    return doc
