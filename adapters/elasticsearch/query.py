"""FHIR R4 search (search.html) translated to the Elasticsearch query DSL over the documents of
``adapters.elasticsearch.mapping``.

The matching rules are the SQLite engine's (see ``adapters/sqlite/search.py``), criterion by
criterion:

* token (#token): a ``term`` on the tagged keys (``system|code``, ``|code``, ``code``,
  ``system|``, ``:of-type``); ``:not`` is a ``must_not``; ``:text`` a ``wildcard`` *contains* on
  the folded display/text (a substring, as the SQLite engine matches, not analysed words).
* string (#string): ``prefix`` on the folded value; ``:exact`` a ``term`` on the value as is;
  ``:contains`` a ``wildcard`` ``*value*`` on the folded value.
* date (#date, #prefix): ``range`` queries with a ``relation`` on the ``long_range`` field: eq =
  within the search range; gt = intersects (search.high, +inf); lt = intersects (-inf,
  search.low); ge = gt or within [search.low, +inf); le = lt or within (-inf, search.high];
  sa = within (search.high, +inf); eb = within (-inf, search.low); ne = lt or gt; ap = intersects
  the search range widened by 10% of its distance to now (at least 1 s).
* number, quantity (#number, #quantity): ``range`` on the value (a quantity's value and unit are
  matched inside one ``nested`` object).
* reference (#reference): ``term`` on the tagged keys (``Type/id``, ``id``, versions, URL,
  ``:identifier``, ``:Type`` filter); uri (#uri): ``term``, ``:below`` a ``prefix``, ``:above`` a
  ``terms`` over every prefix of the value.
* composite (#composite): one ``nested`` object (a group) matching every component.
* ``:missing`` (#missing): ``term`` on the ``has`` list. ``_id``/``_lastUpdated``: ``id``/``lu``.
* chains (#chaining) and ``_has`` (#has) are resolved first, innermost first, through a
  ``Resolver`` (ids of the matching targets, resp. targets of the matching sources) and become a
  ``terms`` query; ``AnyOfCriterion`` is a ``bool`` ``should`` of ``filter``s.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from adapters.elasticsearch.mapping import GROUP
from hub.errors import InvalidSearch
from hub.search.matching import fold
from hub.search.model import (
    AnyCriterion,
    AnyOfCriterion,
    ChainedCriterion,
    CompositeValue,
    Criterion,
    DateValue,
    HasCriterion,
    NumberValue,
    ParamType,
    Prefix,
    QuantityValue,
    ReferenceValue,
    SearchValue,
    SortKey,
    StringValue,
    TokenValue,
    UriValue,
)

Query = dict[str, Any]
MATCH_ALL: Query = {"match_all": {}}
MATCH_NONE: Query = {"match_none": {}}

_ALLOWED: dict[str, frozenset[str | None]] = {
    "token": frozenset({None, "not", "text", "of-type"}),
    "string": frozenset({None, "exact", "contains"}),
    "date": frozenset({None}),
    "number": frozenset({None}),
    "quantity": frozenset({None}),
    "reference": frozenset({None, "identifier", "type"}),
    "uri": frozenset({None, "below", "above"}),
    "composite": frozenset({None}),
}


class Resolver(Protocol):
    """Runs the sub-searches of chains and ``_has``."""

    def ids(self, resource_type: str, query: Query) -> list[str]:
        """Ids of the resources of ``resource_type`` matching ``query``."""

    def targets(self, resource_type: str, query: Query, field: str) -> list[str]:
        """Distinct values of keyword ``field`` over the resources matching ``query``."""


# ---- small DSL helpers -----------------------------------------------------------------------


def any_of(queries: list[Query]) -> Query:
    """OR, with ``term``s on one field merged into a ``terms``."""
    merged: dict[str, list[Any]] = {}
    rest: list[Query] = []
    for q in queries:
        if "match_none" in q:
            continue
        if "match_all" in q:
            return MATCH_ALL
        kind = next(iter(q))
        if kind in ("term", "terms"):
            ((field, value),) = q[kind].items()
            merged.setdefault(field, []).extend(value if kind == "terms" else [value])
        else:
            rest.append(q)
    rest += [{"terms": {f: list(dict.fromkeys(v))}} for f, v in merged.items()]
    if not rest:
        return MATCH_NONE
    if len(rest) == 1:
        return rest[0]
    return {"bool": {"should": rest, "minimum_should_match": 1}}


def all_of(queries: list[Query]) -> Query:
    parts = [q for q in queries if "match_all" not in q]
    if any("match_none" in q for q in parts):
        return MATCH_NONE
    if not parts:
        return MATCH_ALL
    if len(parts) == 1:
        return parts[0]
    return {"bool": {"filter": parts}}


def negate(query: Query) -> Query:
    if "match_all" in query:
        return MATCH_NONE
    if "match_none" in query:
        return MATCH_ALL
    return {"bool": {"must_not": [query]}}


def _term(field: str, value: Any) -> Query:
    return {"term": {field: value}}


def _range(field: str, **bounds: Any) -> Query:
    return {"range": {field: bounds}}


def _wildcard_contains(field: str, text: str) -> Query:
    escaped = text.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")
    return {"wildcard": {field: {"value": f"*{escaped}*"}}}


def _relation(field: str, relation: str, low: int | None = None, high: int | None = None) -> Query:
    bounds: dict[str, Any] = {"relation": relation}
    if low is not None:
        bounds["gte"] = low
    if high is not None:
        bounds["lte"] = high
    return {"range": {field: bounds}}


def _ap_gap(low: int, high: int, now: int) -> int:
    return max(abs(now - (low + high) // 2) // 10, 1000)


def date_query(prefix: Prefix, field: str, low: int, high: int, now: int) -> Query:
    """R4 search.html#prefix over a stored ``long_range`` and the search range ``[low, high]``."""
    if prefix == "eq":
        return _relation(field, "within", low, high)
    if prefix == "ne":
        return any_of(
            [
                _relation(field, "intersects", None, low - 1),
                _relation(field, "intersects", high + 1),
            ]
        )
    if prefix == "gt":
        return _relation(field, "intersects", high + 1)
    if prefix == "lt":
        return _relation(field, "intersects", None, low - 1)
    if prefix == "ge":
        return any_of([_relation(field, "intersects", high + 1), _relation(field, "within", low)])
    if prefix == "le":
        return any_of(
            [_relation(field, "intersects", None, low - 1), _relation(field, "within", None, high)]
        )
    if prefix == "sa":
        return _relation(field, "within", high + 1)
    if prefix == "eb":
        return _relation(field, "within", None, low - 1)
    if prefix == "ap":
        gap = _ap_gap(low, high, now)
        return _relation(field, "intersects", low - gap, high + gap)
    raise InvalidSearch(f"Unknown prefix {prefix!r}")


def point_date_query(prefix: Prefix, field: str, low: int, high: int, now: int) -> Query:
    """The same rules over a single instant (``_lastUpdated``)."""
    if prefix == "eq":
        return _range(field, gte=low, lte=high)
    if prefix == "ne":
        return any_of([_range(field, lt=low), _range(field, gt=high)])
    if prefix in ("gt", "sa"):
        return _range(field, gt=high)
    if prefix in ("lt", "eb"):
        return _range(field, lt=low)
    if prefix == "ge":
        return _range(field, gte=low)
    if prefix == "le":
        return _range(field, lte=high)
    if prefix == "ap":
        gap = _ap_gap(low, high, now)
        return _range(field, gte=low - gap, lte=high + gap)
    raise InvalidSearch(f"Unknown prefix {prefix!r}")


def number_query(prefix: Prefix, field: str, value: float, low: float, high: float) -> Query:
    """R4 search.html#number on the stored value as a point (implicit range for eq/ne only)."""
    if prefix == "eq":
        return _range(field, gte=low, lt=high)
    if prefix == "ne":
        return any_of([_range(field, lt=low), _range(field, gte=high)])
    if prefix == "ap":
        delta = abs(value) / 10
        return _range(field, gte=value - delta, lte=value + delta)
    op = {"gt": "gt", "sa": "gt", "lt": "lt", "eb": "lt", "ge": "gte", "le": "lte"}.get(prefix)
    if op is None:
        raise InvalidSearch(f"Unknown prefix {prefix!r}")
    return _range(field, **{op: value})


# ---- criteria --------------------------------------------------------------------------------


class Compiler:
    """Compiles criteria of one search; ``resolver`` answers the sub-searches of chains and
    ``_has``."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.now = time.time_ns() // 1_000_000

    def criterion(self, crit: AnyCriterion, rtype: str | None) -> Query:
        if isinstance(crit, AnyOfCriterion):
            if not crit.branches:
                return MATCH_NONE
            return any_of([all_of([self.criterion(c, rtype) for c in b]) for b in crit.branches])
        if isinstance(crit, ChainedCriterion):
            inner = self.criterion(crit.inner, crit.target_type)
            if "match_none" in inner:
                return MATCH_NONE
            ids = self.resolver.ids(crit.target_type, inner)
            if not ids:
                return MATCH_NONE
            keys = [f"r:{crit.target_type}/{i}" for i in ids]
            return {"terms": {f"ref.{crit.param.name}.rk": keys}}
        if isinstance(crit, HasCriterion):
            inner = self.criterion(crit.inner, crit.source_type)
            if "match_none" in inner:
                return MATCH_NONE
            field = f"ref.{crit.reference_param.name}.rt"
            targets = self.resolver.targets(crit.source_type, inner, field)
            by_type: dict[str, list[str]] = {}
            for target in targets:
                t, _, i = target.partition("/")
                if rtype is None or t == rtype:
                    by_type.setdefault(t, []).append(i)
            if rtype is not None:
                ids = by_type.get(rtype, [])
                return {"terms": {"id": ids}} if ids else MATCH_NONE
            return any_of(
                [all_of([_term("type", t), {"terms": {"id": ids}}]) for t, ids in by_type.items()]
            )
        return self._plain(crit)

    def _plain(self, crit: Criterion) -> Query:
        check(crit)
        name, ptype = crit.param.name, crit.param.type
        if name in ("_id", "_lastUpdated"):
            return self._row(crit)
        if crit.missing is not None:
            first = crit.param.components[:1] if ptype == "composite" else (ptype,)
            if not first or first[0] not in GROUP:
                raise InvalidSearch(f"{name!r} cannot be searched with :missing")
            present = _term("has", name)
            return negate(present) if crit.missing else present
        if ptype == "composite":
            matched = any_of([self._composite(crit, v) for v in crit.values])
        else:
            base = f"{GROUP[ptype]}.{name}"
            matched = any_of(
                [
                    self.value(ptype, v, crit.modifier, base, crit.type_filter, nested=True)
                    for v in crit.values
                ]
            )
        return negate(matched) if crit.modifier == "not" else matched

    def _row(self, crit: Criterion) -> Query:
        if crit.missing is not None:  # every resource has an id and a lastUpdated
            return MATCH_NONE if crit.missing else MATCH_ALL
        if crit.param.name == "_id":
            ids = [v.code for v in crit.values if isinstance(v, TokenValue) and v.code]
            found = {"terms": {"id": ids}} if ids else MATCH_NONE
            return negate(found) if crit.modifier == "not" else found
        parts = []
        for v in crit.values:
            if not isinstance(v, DateValue):
                raise InvalidSearch("_lastUpdated needs a date value")
            parts.append(point_date_query(v.prefix, "lu", v.low, v.high, self.now))
        return any_of(parts)

    def _composite(self, crit: Criterion, value: SearchValue) -> Query:
        if not isinstance(value, CompositeValue):
            raise InvalidSearch(f"{crit.param.name!r} needs a composite value (a$b)")
        types = crit.param.components
        if len(value.components) != len(types) or not types:
            raise InvalidSearch(
                f"{crit.param.name!r} needs {len(types)} components, got {len(value.components)}"
            )
        path = f"cmp.{crit.param.name}"
        parts = []
        for i, (ctype, cval) in enumerate(zip(types, value.components, strict=True)):
            if ctype not in GROUP:
                raise InvalidSearch(f"Composite component type {ctype} is not supported")
            parts.append(self.value(ctype, cval, None, f"{path}.c{i}", None, nested=False))
        matched = all_of(parts)
        if "match_none" in matched:
            return MATCH_NONE
        return {"nested": {"path": path, "query": matched}}

    # ---- one value -------------------------------------------------------------------------
    def value(
        self,
        ptype: ParamType,
        value: SearchValue,
        modifier: str | None,
        base: str,
        type_filter: str | None,
        *,
        nested: bool,
    ) -> Query:
        if ptype == "token" and isinstance(value, TokenValue):
            return _token(value, modifier, base)
        if ptype == "string" and isinstance(value, StringValue):
            if modifier == "exact":
                return _term(f"{base}.sx", value.value)
            if modifier == "contains":
                return _wildcard_contains(f"{base}.sn", fold(value.value))
            return {"prefix": {f"{base}.sn": fold(value.value)}}
        if ptype == "date" and isinstance(value, DateValue):
            return date_query(value.prefix, f"{base}.dr", value.low, value.high, self.now)
        if ptype == "number" and isinstance(value, NumberValue):
            return number_query(value.prefix, f"{base}.nv", value.value, value.low, value.high)
        if ptype == "quantity" and isinstance(value, QuantityValue):
            return _quantity(value, base, nested)
        if ptype == "reference" and isinstance(value, ReferenceValue):
            return _reference(value, base, type_filter)
        if ptype == "uri" and isinstance(value, UriValue):
            field = f"{base}.uv"
            if modifier == "below":
                return {"prefix": {field: value.value}}
            if modifier == "above":
                prefixes = [value.value[:n] for n in range(1, len(value.value) + 1)]
                return {"terms": {field: prefixes}} if prefixes else MATCH_NONE
            return _term(field, value.value)
        raise InvalidSearch(f"A {type(value).__name__} cannot be searched as a {ptype} parameter")


def check(crit: Criterion) -> None:
    """The SQLite engine's checks, so both engines refuse the same searches."""
    ptype = crit.param.type
    if ptype == "special":
        raise InvalidSearch(f"Search parameter {crit.param.name!r} is not supported")
    allowed = _ALLOWED.get(ptype, frozenset({None}))
    if crit.missing is None and crit.modifier not in allowed:
        raise InvalidSearch(
            f"Modifier :{crit.modifier} is not supported on {ptype} parameter {crit.param.name!r}"
        )
    if crit.missing is None and not crit.values:
        raise InvalidSearch(f"Search parameter {crit.param.name!r} has no value")
    if crit.missing is None and crit.param.name == "_id" and crit.modifier not in (None, "not"):
        raise InvalidSearch(f"Modifier :{crit.modifier} is not supported on _id")


def _token(v: TokenValue, modifier: str | None, base: str) -> Query:
    keys = f"{base}.tk"
    if modifier == "text":
        if not v.text:
            raise InvalidSearch(":text needs a search text")
        return _wildcard_contains(f"{base}.tt", fold(v.text))
    if modifier == "of-type":
        if v.type_code is None or v.code is None:
            raise InvalidSearch(":of-type needs [system]|[code]|[value]")
        if v.type_system is not None:
            return _term(keys, f"ots:{v.type_system}|{v.type_code}|{v.code}")
        return _term(keys, f"ot:{v.type_code}|{v.code}")
    if v.code is not None:
        if v.system is not None:
            return _term(keys, f"sc:{v.system}|{v.code}")
        if v.bar:
            return _term(keys, f"nc:{v.code}")
        return _term(keys, f"c:{v.code}")
    if v.system is not None:
        return _term(keys, f"s:{v.system}")
    raise InvalidSearch("A token search needs a code or a system")


def _quantity(v: QuantityValue, base: str, nested: bool) -> Query:
    parts = [number_query(v.prefix, f"{base}.qv", v.value, v.low, v.high)]
    if v.system is not None:
        parts.append(_term(f"{base}.qs", v.system))
    if v.code is not None:
        if v.system is not None:
            parts.append(_term(f"{base}.qc", v.code))
        else:
            parts.append(any_of([_term(f"{base}.qc", v.code), _term(f"{base}.qu", v.code)]))
    matched = all_of(parts)
    if not nested or "match_none" in matched:
        return matched
    return {"nested": {"path": base, "query": matched}}


def _reference(v: ReferenceValue, base: str, type_filter: str | None) -> Query:
    keys = f"{base}.rk"
    if v.identifier_value is not None:
        ident = v.identifier_value
        if v.identifier_system is not None:
            ident = f"{v.identifier_system}|{ident}"
        tag = "is" if v.identifier_system is not None else "iv"
        if type_filter is not None:
            return _term(keys, f"t{tag}:{type_filter}|{ident}")
        return _term(keys, f"{tag}:{ident}")
    if v.target_id is not None:
        t = v.target_type
        if t is not None and type_filter is not None and t != type_filter:
            return MATCH_NONE
        t = t or type_filter
        if v.version is not None:
            key = f"rv:{t}/{v.target_id}|{v.version}" if t else f"v:{v.target_id}|{v.version}"
        else:
            key = f"r:{t}/{v.target_id}" if t else f"i:{v.target_id}"
        return _term(keys, key)
    if v.url is not None:
        return _term(keys, f"tu:{type_filter}|{v.url}" if type_filter else f"u:{v.url}")
    raise InvalidSearch("A reference search needs an id, a URL or an identifier")


# ---- sorting ---------------------------------------------------------------------------------

_SORT: dict[str, tuple[str, str]] = {  # type -> (leaf, unmapped type)
    "token": ("ts", "keyword"),
    "string": ("sn", "keyword"),
    "number": ("nv", "double"),
    "quantity": ("qv", "double"),
    "reference": ("rs", "keyword"),
    "uri": ("uv", "keyword"),
}


def sort_clause(key: SortKey) -> Query:
    """search.html#sort: a resource's lowest value ascending, its highest descending, resources
    without a value last (the SQLite engine's rule)."""
    name, ptype = key.param.name, key.param.type
    order = "desc" if key.descending else "asc"
    if name == "_id":
        return {"id": {"order": order}}
    if name == "_lastUpdated":
        return {"lu": {"order": order, "missing": "_last", "unmapped_type": "long"}}
    if ptype == "date":
        field, unmapped = f"dat.{name}.{'dh' if key.descending else 'dl'}", "long"
    elif ptype in _SORT:
        leaf, unmapped = _SORT[ptype]
        field = f"{GROUP[ptype]}.{name}.{leaf}"
    else:
        raise InvalidSearch(f"Cannot sort by {ptype} parameter {name!r}")
    clause: dict[str, Any] = {
        "order": order,
        "mode": "max" if key.descending else "min",
        "missing": "_last",
        "unmapped_type": unmapped,
    }
    if ptype == "quantity":
        clause["nested"] = {"path": f"qty.{name}"}
    return {field: clause}
