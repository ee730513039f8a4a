"""FHIR R4 search (search.html) compiled to parameterised SQL over the ``idx_*`` tables.

Each criterion compiles to two equivalent forms: a *predicate* on a resource row (a correlated
``EXISTS`` probing the index by the resource's primary key) and a *set* (``SELECT res_pk`` from a
covering index). The criterion whose set is smallest (sizes probed with a bounded ``LIMIT``,
raised once to break a tie) drives the query through ``pk IN (set)``; every other criterion is
checked per candidate with its predicate. So
``ImagingStudy?patient=Patient/123&modality=CT&started=ge2020-01-01`` walks the patient's few
studies rather than every CT. In correlated predicates and sort keys, value
columns are written ``+x.col`` so the planner seeks the index table by its primary key
``(res_pk, pid)`` instead of scanning a value index. Values are only ever bound as parameters.

Results (search.html#sort, #count, #total, #include): ``_sort`` keys use each resource's lowest
value ascending and highest descending, resources without a value last, then the resource pk (so
pages are stable); ``_total=estimate`` on a single-criterion search counts the driving index range
(an upper bound) instead of the matches; includes are explained on ``_includes``.

Matching rules (search.html):

* token (#token): ``code``, ``system|code``, ``|code`` (no system), ``system|``; ``:not`` matches
  resources with no matching entry (also those without the element); ``:text`` is a case- and
  accent-insensitive *contains* on the display/text; ``:of-type`` matches identifier type + value.
* string (#string): starts-with on the folded value (case and accents ignored); ``:exact`` compares
  the value as is; ``:contains`` anywhere in the folded value.
* date (#prefix, #date): ranges ``[low, high]`` (ms), open ends as -inf/+inf, R4 prefix table:
  eq = search range contains target; ne = not eq; gt = target.high > search.high;
  lt = target.low < search.low; ge = gt or eq; le = lt or eq; sa = target.low > search.high;
  eb = target.high < search.low; ap = target intersects the search range widened on each side by
  10% of the distance between the search value and now (at least one second).
* number and quantity (#number, #quantity): the stored value as a point; eq/ne use the search
  value's implicit precision range, gt/lt/ge/le/sa/eb compare against the value itself (R4: the
  implicit precision is ignored with those prefixes), ap = within 10% of the search value.
  Quantity ``system|code`` matches system and code; ``||code`` (no system) matches code or unit.
* reference (#reference): ``Type/id``, ``id`` (any type unless ``:Type``), absolute URL;
  a versioned stored reference matches its unversioned form; ``:identifier``.
* uri (#uri): exact, ``:below`` (prefix), ``:above`` (the stored URI is a prefix of the value).
* composite (#composite): every component matched by entries of the same group.
* ``:missing`` for every type; ``_id`` and ``_lastUpdated`` from the resource row; chains
  (#chaining) and ``_has`` (#has) nest to any depth.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from adapters.sqlite._db import Database
from adapters.sqlite._errors import sqlite_errors
from adapters.sqlite._index import clear_index, fold, write_index
from hub.errors import InvalidSearch
from hub.search.model import (
    AnyCriterion,
    AnyOfCriterion,
    ChainedCriterion,
    CompositeValue,
    Criterion,
    DateValue,
    HasCriterion,
    Include,
    IndexEntry,
    Key,
    NumberValue,
    ParamType,
    Prefix,
    QuantityValue,
    ReferenceValue,
    SearchQuery,
    SearchResult,
    SearchValue,
    SortKey,
    StringValue,
    TokenValue,
    UriValue,
)

PROBE_LIMITS = (1000, 20000)  # a tie at the first limit is probed again at the next
INCLUDE_ROUNDS = 5
_TOP = "\U0010ffff"  # above every other character: ``p <= x < p + _TOP`` is "x starts with p"
_TABLE: dict[str, str] = {
    "token": "idx_token",
    "string": "idx_string",
    "date": "idx_date",
    "number": "idx_number",
    "quantity": "idx_quantity",
    "reference": "idx_reference",
    "uri": "idx_uri",
}
_VALUE_TYPE: dict[type, ParamType] = {
    TokenValue: "token",
    StringValue: "string",
    DateValue: "date",
    NumberValue: "number",
    QuantityValue: "quantity",
    ReferenceValue: "reference",
    UriValue: "uri",
}
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
# Prefixes whose condition is one or two index ranges (usable to drive a query).
_RANGE_PREFIXES = frozenset({"eq", "gt", "lt", "ge", "le", "sa", "eb"})

Params = list[object]
PidResolver = Callable[[str | None, str], list[int]]


@dataclass(frozen=True)
class _Sql:
    sql: str
    params: Params


@dataclass(frozen=True)
class _Set:
    """``SELECT <pk>`` of the live resources matching a criterion; ``indexed`` when it reads
    index ranges only (cheap to probe and to drive a query)."""

    sql: str
    params: Params
    indexed: bool


@dataclass(frozen=True)
class _Cond:
    """A condition on one index row; ``indexed`` when it is a range of the table's index."""

    sql: str
    params: Params
    indexed: bool


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


def _pid_cond(col: str, pids: list[int]) -> _Sql:
    if not pids:
        return _Sql("0", [])
    if len(pids) == 1:
        return _Sql(f"{col} = ?", [pids[0]])
    return _Sql(f"{col} IN ({_placeholders(len(pids))})", list(pids))


def _range(prefix: Prefix, lo: str, hi: str, s_low: int, s_high: int, now: int) -> _Cond:
    """R4 search.html#prefix over a stored range ``[lo, hi]`` and the search range."""
    contained = f"{lo} >= ? AND {lo} <= ? AND {hi} <= ?"
    contained_p: Params = [s_low, s_high, s_high]
    if prefix == "eq":
        return _Cond(contained, contained_p, True)
    if prefix == "ne":
        return _Cond(f"NOT ({lo} >= ? AND {hi} <= ?)", [s_low, s_high], False)
    if prefix == "gt":
        return _Cond(f"{hi} > ?", [s_high], True)
    if prefix == "lt":
        return _Cond(f"{lo} < ?", [s_low], True)
    if prefix == "ge":  # gt or eq, as one index range (target low <= high)
        return _Cond(f"{hi} >= ? AND ({hi} > ? OR {lo} >= ?)", [s_low, s_high, s_low], True)
    if prefix == "le":  # lt or eq, likewise
        return _Cond(f"{lo} <= ? AND ({lo} < ? OR {hi} <= ?)", [s_high, s_low, s_high], True)
    if prefix == "sa":
        return _Cond(f"{lo} > ?", [s_high], True)
    if prefix == "eb":
        return _Cond(f"{hi} < ?", [s_low], True)
    if prefix == "ap":
        gap = max(abs(now - (s_low + s_high) // 2) // 10, 1000)
        return _Cond(f"{lo} <= ? AND {hi} >= ?", [s_high + gap, s_low - gap], False)
    raise InvalidSearch(f"Unknown prefix {prefix!r}")


def _number(prefix: Prefix, col: str, value: float, low: float, high: float) -> _Cond:
    """R4 search.html#number on the stored value taken as a point."""
    if prefix == "eq":
        return _Cond(f"{col} >= ? AND {col} < ?", [low, high], True)
    if prefix == "ne":
        return _Cond(f"NOT ({col} >= ? AND {col} < ?)", [low, high], False)
    if prefix == "ap":
        delta = abs(value) / 10
        return _Cond(f"{col} >= ? AND {col} <= ?", [value - delta, value + delta], True)
    op = {"gt": ">", "sa": ">", "lt": "<", "eb": "<", "ge": ">=", "le": "<="}.get(prefix)
    if op is None:
        raise InvalidSearch(f"Unknown prefix {prefix!r}")
    return _Cond(f"{col} {op} ?", [value], True)


def _and(*conds: _Cond) -> _Cond:
    parts = [c for c in conds if c.sql]
    return _Cond(
        " AND ".join(f"({c.sql})" for c in parts) or "1",
        [p for c in parts for p in c.params],
        any(c.indexed for c in parts),
    )


class _Compiler:
    """Compiles criteria for one query; ``pids`` resolves parameter names on the connection."""

    def __init__(self, pids: PidResolver) -> None:
        self.pids = pids
        self._n = 0
        self._now = time.time_ns() // 1_000_000

    def _alias(self, base: str) -> str:
        self._n += 1
        return f"{base}{self._n}"

    # ---- one value on one index row ------------------------------------------------------
    def value_cond(
        self, ptype: ParamType, value: SearchValue, modifier: str | None, a: str
    ) -> _Cond:
        if ptype == "token" and isinstance(value, TokenValue):
            return self._token(value, modifier, a)
        if ptype == "string" and isinstance(value, StringValue):
            folded = fold(value.value)
            if modifier == "exact":
                return _Cond(f"{a}.norm = ? AND {a}.value = ?", [folded, value.value], True)
            if modifier == "contains":
                return _Cond(f"instr({a}.norm, ?) > 0", [folded], False)
            return _Cond(f"{a}.norm >= ? AND {a}.norm < ?", [folded, folded + _TOP], True)
        if ptype == "date" and isinstance(value, DateValue):
            return _range(value.prefix, f"{a}.low", f"{a}.high", value.low, value.high, self._now)
        if ptype == "number" and isinstance(value, NumberValue):
            return _number(value.prefix, f"{a}.value", value.value, value.low, value.high)
        if ptype == "quantity" and isinstance(value, QuantityValue):
            num = _number(value.prefix, f"{a}.value", value.value, value.low, value.high)
            if value.system is not None and value.code is not None:
                unit = _Cond(f"{a}.system = ? AND {a}.code = ?", [value.system, value.code], False)
            elif value.system is not None:
                unit = _Cond(f"{a}.system = ?", [value.system], False)
            elif value.code is not None:
                unit = _Cond(f"({a}.code = ? OR {a}.unit = ?)", [value.code, value.code], False)
            else:
                return num
            return _Cond(f"{num.sql} AND {unit.sql}", num.params + unit.params, num.indexed)
        if ptype == "reference" and isinstance(value, ReferenceValue):
            return self._reference(value, a)
        if ptype == "uri" and isinstance(value, UriValue):
            if modifier == "below":
                below: Params = [value.value, value.value + _TOP]
                return _Cond(f"{a}.value >= ? AND {a}.value < ?", below, True)
            if modifier == "above":
                return _Cond(f"substr(?, 1, length({a}.value)) = {a}.value", [value.value], False)
            return _Cond(f"{a}.value = ?", [value.value], True)
        raise InvalidSearch(f"A {type(value).__name__} cannot be searched as a {ptype} parameter")

    def _token(self, v: TokenValue, modifier: str | None, a: str) -> _Cond:
        if modifier == "text":
            if not v.text:
                raise InvalidSearch(":text needs a search text")
            return _Cond(f"instr({a}.text_norm, ?) > 0", [fold(v.text)], False)
        if modifier == "of-type":
            if v.type_code is None or v.code is None:
                raise InvalidSearch(":of-type needs [system]|[code]|[value]")
            c = _Cond(f"{a}.code = ? AND {a}.type_code = ?", [v.code, v.type_code], True)
            if v.type_system is not None:
                c = _Cond(f"{c.sql} AND {a}.type_system = ?", [*c.params, v.type_system], True)
            return c
        if v.code is not None:
            if v.system is not None:
                return _Cond(f"{a}.code = ? AND {a}.system = ?", [v.code, v.system], True)
            if v.bar:
                return _Cond(f"{a}.code = ? AND {a}.system IS NULL", [v.code], True)
            return _Cond(f"{a}.code = ?", [v.code], True)
        if v.system is not None:
            return _Cond(f"{a}.system = ?", [v.system], False)
        raise InvalidSearch("A token search needs a code or a system")

    @staticmethod
    def _reference(v: ReferenceValue, a: str) -> _Cond:
        if v.identifier_value is not None:
            if v.identifier_system is None:
                return _Cond(f"{a}.identifier_value = ?", [v.identifier_value], True)
            return _Cond(
                f"{a}.identifier_value = ? AND {a}.identifier_system = ?",
                [v.identifier_value, v.identifier_system],
                True,
            )
        if v.target_id is not None:
            c = _Cond(f"{a}.target_id = ?", [v.target_id], True)
            if v.target_type is not None:
                c = _and(c, _Cond(f"{a}.target_type = ?", [v.target_type], False))
            if v.version is not None:
                c = _and(c, _Cond(f"{a}.version = ?", [v.version], False))
            return c
        if v.url is not None:
            return _Cond(f"{a}.url = ?", [v.url], True)
        raise InvalidSearch("A reference search needs an id, a URL or an identifier")

    # ---- one criterion -------------------------------------------------------------------
    def predicate(self, crit: AnyCriterion, rtype: str | None, r: str) -> _Sql:
        """SQL true for resource row ``r`` (columns pk, res_type, res_id, last_updated_ms)."""
        if isinstance(crit, AnyOfCriterion):
            branches: list[_Sql] = []
            for branch in crit.branches:
                parts = [self.predicate(c, rtype, r) for c in branch]
                sql = " AND ".join(f"({p.sql})" for p in parts) or "1"
                branches.append(_Sql(sql, [q for p in parts for q in p.params]))
            return _Sql(
                "(" + (" OR ".join(f"({b.sql})" for b in branches) or "0") + ")",
                [q for b in branches for q in b.params],
            )
        if isinstance(crit, ChainedCriterion):
            x, t = self._alias("x"), self._alias("t")
            pid = _pid_cond(f"{x}.pid", self.pids(rtype, crit.param.name))
            inner = self.predicate(crit.inner, crit.target_type, t)
            return _Sql(
                f"EXISTS (SELECT 1 FROM idx_reference {x} JOIN resource {t}"
                f" ON {t}.res_type = {x}.target_type AND {t}.res_id = {x}.target_id"
                f" WHERE {x}.res_pk = {r}.pk AND {pid.sql} AND +{x}.target_type = ?"
                f" AND {t}.deleted = 0 AND {inner.sql})",
                [*pid.params, crit.target_type, *inner.params],
            )
        if isinstance(crit, HasCriterion):
            x, s = self._alias("x"), self._alias("s")
            pid = _pid_cond(f"{x}.pid", self.pids(crit.source_type, crit.reference_param.name))
            inner = self.predicate(crit.inner, crit.source_type, s)
            return _Sql(
                f"EXISTS (SELECT 1 FROM idx_reference {x} JOIN resource {s} ON {s}.pk = {x}.res_pk"
                f" WHERE {pid.sql} AND {x}.target_id = {r}.res_id"
                f" AND {x}.target_type = {r}.res_type AND {s}.deleted = 0 AND {inner.sql})",
                [*pid.params, *inner.params],
            )
        name, ptype = crit.param.name, crit.param.type
        self._check(crit)
        if name in ("_id", "_lastUpdated"):
            return self._row_predicate(crit, r)
        if crit.missing is not None:
            first = crit.param.components[:1] if ptype == "composite" else (ptype,)
            if not first or first[0] not in _TABLE:
                raise InvalidSearch(f"{crit.param.name!r} cannot be searched with :missing")
            table = _TABLE[first[0]]
            x = self._alias("x")
            pid = _pid_cond(f"{x}.pid", self.pids(rtype, name))
            neg = "NOT " if crit.missing else ""
            return _Sql(
                f"{neg}EXISTS (SELECT 1 FROM {table} {x} WHERE {x}.res_pk = {r}.pk AND {pid.sql})",
                pid.params,
            )
        body = self._entries(crit, rtype, correlate=f"{r}.pk")
        neg = "NOT " if crit.modifier == "not" else ""
        return _Sql(f"{neg}EXISTS ({body.sql})", body.params)

    def _check(self, crit: Criterion) -> None:
        ptype = crit.param.type
        if ptype == "special":
            raise InvalidSearch(f"Search parameter {crit.param.name!r} is not supported")
        allowed = _ALLOWED.get(ptype, frozenset({None}))
        if crit.missing is None and crit.modifier not in allowed:
            raise InvalidSearch(
                f"Modifier :{crit.modifier} is not supported on {ptype} parameter "
                f"{crit.param.name!r}"
            )
        if crit.missing is None and not crit.values:
            raise InvalidSearch(f"Search parameter {crit.param.name!r} has no value")
        if crit.missing is None and crit.param.name == "_id" and crit.modifier not in (None, "not"):
            raise InvalidSearch(f"Modifier :{crit.modifier} is not supported on _id")

    def _row_predicate(self, crit: Criterion, r: str) -> _Sql:
        if crit.missing is not None:  # every resource has an id and a lastUpdated
            return _Sql("0" if crit.missing else "1", [])
        if crit.param.name == "_id":
            ids = [v.code for v in crit.values if isinstance(v, TokenValue) and v.code]
            neg = "NOT " if crit.modifier == "not" else ""
            return _Sql(f"{r}.res_id {neg}IN ({_placeholders(len(ids))})", list(ids))
        conds = [self._lastupdated_cond(v, r) for v in crit.values]
        return _Sql(
            "(" + " OR ".join(f"({c.sql})" for c in conds) + ")",
            [p for c in conds for p in c.params],
        )

    def _lastupdated_cond(self, v: SearchValue, r: str) -> _Cond:
        if not isinstance(v, DateValue):
            raise InvalidSearch("_lastUpdated needs a date value")
        col = f"{r}.last_updated_ms"
        return _range(v.prefix, col, col, v.low, v.high, self._now)

    def _entries(self, crit: Criterion, rtype: str | None, correlate: str | None) -> _Sql:
        """``SELECT`` over the index rows matching ``crit`` (any of its values): with
        ``correlate`` restricted to that resource pk (for EXISTS), else selecting ``res_pk``."""
        name, ptype = crit.param.name, crit.param.type
        pids = self.pids(rtype, name)
        parts: list[_Sql] = []
        for value in crit.values:
            if ptype == "composite":
                parts.append(self._composite(crit, value, pids, correlate))
                continue
            x = self._alias("x")
            # Correlated, the row is found by its primary key (res_pk, pid): a unary ``+`` keeps
            # the planner from seeking the value index instead.
            col = x if correlate is None else f"+{x}"
            cond = self.value_cond(ptype, value, crit.modifier, col)
            pid = _pid_cond(f"{x}.pid", pids)
            where = f"{pid.sql} AND {cond.sql}"
            params = [*pid.params, *cond.params]
            if crit.type_filter is not None and ptype == "reference":
                where += f" AND {col}.target_type = ?"
                params.append(crit.type_filter)
            if correlate is not None:
                where = f"{x}.res_pk = {correlate} AND {where}"
            parts.append(_Sql(f"SELECT {x}.res_pk FROM {_TABLE[ptype]} {x} WHERE {where}", params))
        return _Sql(" UNION ALL ".join(p.sql for p in parts), [q for p in parts for q in p.params])

    def _composite(
        self, crit: Criterion, value: SearchValue, pids: list[int], correlate: str | None
    ) -> _Sql:
        if not isinstance(value, CompositeValue):
            raise InvalidSearch(f"{crit.param.name!r} needs a composite value (a$b)")
        types = crit.param.components
        if len(value.components) != len(types) or not types:
            raise InvalidSearch(
                f"{crit.param.name!r} needs {len(types)} components, got {len(value.components)}"
            )
        aliases = [self._alias("c") for _ in types]
        first = aliases[0]
        pid = _pid_cond(f"{first}.pid", pids)
        joins, where, params = "", [pid.sql, f"{first}.comp = 0"], list(pid.params)
        join_params: Params = []
        for i, (ctype, cval, a) in enumerate(zip(types, value.components, aliases, strict=True)):
            table = _TABLE.get(ctype)
            if table is None:
                raise InvalidSearch(f"Composite component type {ctype} is not supported")
            col = a if i == 0 and correlate is None else f"+{a}"
            cond = self.value_cond(ctype, cval, None, col)
            if i > 0:
                joins += (
                    f" JOIN {table} {a} ON {a}.res_pk = {first}.res_pk AND {a}.pid = {first}.pid"
                    f" AND {a}.grp = {first}.grp AND {a}.comp = ? AND {cond.sql}"
                )
                join_params += [i, *cond.params]
            else:
                where.append(cond.sql)
                params += cond.params
        if correlate is not None:
            where.insert(0, f"{first}.res_pk = {correlate}")
        table0 = _TABLE[types[0]]
        return _Sql(
            f"SELECT {first}.res_pk FROM {table0} {first}{joins} WHERE " + " AND ".join(where),
            [*join_params, *params],
        )

    def pk_set(self, crit: AnyCriterion, rtype: str | None) -> _Set:
        """The set form of ``crit``: pks of live resources of ``rtype`` that match."""
        if isinstance(crit, AnyOfCriterion):
            return self._any_of_set(crit, rtype)
        if isinstance(crit, ChainedCriterion):
            inner = self.pk_set(crit.inner, crit.target_type)
            if not inner.indexed:
                return self._scan(crit, rtype)
            x, t = self._alias("x"), self._alias("t")
            pid = _pid_cond(f"{x}.pid", self.pids(rtype, crit.param.name))
            return _Set(
                f"SELECT {x}.res_pk FROM resource {t} CROSS JOIN idx_reference {x}"
                f" WHERE {t}.pk IN ({inner.sql}) AND {pid.sql} AND {x}.target_id = {t}.res_id"
                f" AND {x}.target_type = ?",
                [*inner.params, *pid.params, crit.target_type],
                True,
            )
        if isinstance(crit, HasCriterion):
            inner = self.pk_set(crit.inner, crit.source_type)
            if not inner.indexed:
                return self._scan(crit, rtype)
            x, t = self._alias("x"), self._alias("t")
            pid = _pid_cond(f"{x}.pid", self.pids(crit.source_type, crit.reference_param.name))
            sql = (
                f"SELECT {t}.pk FROM idx_reference {x} CROSS JOIN resource {t}"
                f" WHERE {x}.res_pk IN ({inner.sql}) AND {pid.sql}"
                f" AND {t}.res_type = {x}.target_type AND {t}.res_id = {x}.target_id"
                f" AND {t}.deleted = 0"
            )
            params = [*inner.params, *pid.params]
            if rtype is not None:
                sql += f" AND {x}.target_type = ?"
                params.append(rtype)
            return _Set(sql, params, True)
        self._check(crit)
        name = crit.param.name
        if crit.missing is not None or crit.modifier == "not":
            return self._scan(crit, rtype)
        if name == "_id" and rtype is not None:
            ids = [v.code for v in crit.values if isinstance(v, TokenValue) and v.code]
            return _Set(
                f"SELECT pk FROM resource WHERE res_type = ? AND deleted = 0"
                f" AND res_id IN ({_placeholders(len(ids))})",
                [rtype, *ids],
                True,
            )
        if name == "_lastUpdated" and rtype is not None:
            conds = [self._lastupdated_cond(v, "resource") for v in crit.values]
            return _Set(
                "SELECT pk FROM resource WHERE res_type = ? AND deleted = 0 AND ("
                + " OR ".join(f"({c.sql})" for c in conds)
                + ")",
                [rtype, *[p for c in conds for p in c.params]],
                all(c.indexed for c in conds),
            )
        if name in ("_id", "_lastUpdated"):
            return self._scan(crit, rtype)
        body = self._entries(crit, rtype, correlate=None)
        return _Set(body.sql, body.params, self._indexed(crit))

    def _any_of_set(self, crit: AnyOfCriterion, rtype: str | None) -> _Set:
        """The union of the branches, each the intersection of its criteria's sets; a scan
        unless every one of those sets reads index ranges only."""
        if not crit.branches:
            return _Set("SELECT pk FROM resource WHERE 0", [], True)
        branches: list[_Set] = []
        for branch in crit.branches:
            sets = [self.pk_set(c, rtype) for c in branch]
            if not sets or not all(s.indexed for s in sets):
                return self._scan(crit, rtype)
            branches.append(
                _Set(
                    " INTERSECT ".join(f"SELECT * FROM ({s.sql})" for s in sets),
                    [p for s in sets for p in s.params],
                    True,
                )
            )
        return _Set(
            " UNION ".join(f"SELECT * FROM ({b.sql})" for b in branches),
            [p for b in branches for p in b.params],
            True,
        )

    def _indexed(self, crit: Criterion) -> bool:
        ptype = crit.param.type
        if ptype == "composite":
            return True
        for value in crit.values:
            probe = self.value_cond(ptype, value, crit.modifier, "z")
            if not probe.indexed:
                return False
        return True

    def _scan(self, crit: AnyCriterion, rtype: str | None) -> _Set:
        f = self._alias("f")
        pred = self.predicate(crit, rtype, f)
        if rtype is None:
            return _Set(
                f"SELECT {f}.pk FROM resource {f} WHERE {f}.deleted = 0 AND {pred.sql}",
                pred.params,
                False,
            )
        return _Set(
            f"SELECT {f}.pk FROM resource {f} WHERE {f}.res_type = ? AND {f}.deleted = 0"
            f" AND {pred.sql}",
            [rtype, *pred.params],
            False,
        )

    # ---- sorting ---------------------------------------------------------------------------
    def sort_expr(self, key: SortKey, rtype: str | None, r: str) -> _Sql:
        name, ptype = key.param.name, key.param.type
        if name == "_id":
            return _Sql(f"{r}.res_id", [])
        if name == "_lastUpdated":
            return _Sql(f"{r}.last_updated_ms", [])
        agg = "max" if key.descending else "min"
        col = {
            "token": "coalesce(x.code, x.text_norm)",
            "string": "x.norm",
            "date": "x.high" if key.descending else "x.low",
            "number": "x.value",
            "quantity": "x.value",
            "reference": "coalesce(x.target_type || '/' || x.target_id, x.url)",
            "uri": "x.value",
        }.get(ptype)
        if col is None:
            raise InvalidSearch(f"Cannot sort by {ptype} parameter {name!r}")
        x = self._alias("x")
        col = col.replace("x.", f"+{x}.")  # found by primary key, not by a value index
        pid = _pid_cond(f"{x}.pid", self.pids(rtype, name))
        return _Sql(
            f"(SELECT {agg}({col}) FROM {_TABLE[ptype]} {x} WHERE {x}.res_pk = {r}.pk"
            f" AND {pid.sql})",
            pid.params,
        )


def live_count(conn: sqlite3.Connection, resource_type: str | None) -> int:
    """Live resources of ``resource_type`` (all types if ``None``), from ``type_count``."""
    if resource_type is None:
        row = conn.execute("SELECT coalesce(sum(live), 0) FROM type_count").fetchone()
    else:
        row = conn.execute(
            "SELECT live FROM type_count WHERE res_type = ?", (resource_type,)
        ).fetchone()
    return 0 if row is None else int(row[0])


def _probe(conn: sqlite3.Connection, s: _Set, limit: int) -> int:
    row = conn.execute(f"SELECT count(*) FROM ({s.sql} LIMIT {int(limit) + 1})", s.params)
    return int(row.fetchone()[0])


def _choose_driver(
    conn: sqlite3.Connection, candidates: list[tuple[AnyCriterion, _Set]]
) -> tuple[AnyCriterion, _Set] | None:
    """The candidate with the fewest index entries, each counted only up to a limit."""
    for limit in PROBE_LIMITS:
        if len(candidates) <= 1:
            break
        sizes = [_probe(conn, s, limit) for _, s in candidates]
        smallest = min(sizes)
        candidates = [c for c, n in zip(candidates, sizes, strict=True) if n == smallest]
        if smallest <= limit:
            break
    return candidates[0] if candidates else None


def run_search(db: Database, conn: sqlite3.Connection, query: SearchQuery) -> SearchResult:
    """Answer ``query`` on ``conn`` (a reader snapshot, or the writer inside a transaction)."""
    comp = _Compiler(lambda rtype, name: db.pids(conn, rtype, name))
    rtype = query.resource_type
    sets = [(crit, comp.pk_set(crit, rtype)) for crit in query.criteria]
    drivable = [(c, s) for c, s in sets if s.indexed]
    driver = _choose_driver(conn, drivable)

    where: list[str] = []
    params: Params = []
    if driver is not None:
        where.append(f"r.pk IN ({driver[1].sql})")
        params += driver[1].params
        if rtype is not None:
            where.append("+r.res_type = ?")  # unary + : let the driving set pick the rows
            params.append(rtype)
    elif rtype is not None:
        where.append("r.res_type = ?")
        params.append(rtype)
    where.append("r.deleted = 0")
    for crit, _ in sets:
        if driver is not None and crit is driver[0]:
            continue
        pred = comp.predicate(crit, rtype, "r")
        where.append(pred.sql)
        params += pred.params
    clause = " AND ".join(where)

    matches: list[tuple[int, str, str]] = []
    if query.count > 0 and query.summary != "count":
        order: list[str] = []
        order_params: Params = []
        for key in query.sort:
            expr = comp.sort_expr(key, rtype, "r")
            order.append(f"{expr.sql} {'DESC' if key.descending else 'ASC'} NULLS LAST")
            order_params += expr.params
        order.append("r.pk")
        rows = conn.execute(
            f"SELECT r.pk, r.res_type, r.res_id FROM resource r WHERE {clause}"
            f" ORDER BY {', '.join(order)} LIMIT ? OFFSET ?",
            [*params, *order_params, query.count, max(0, query.offset)],
        )
        matches = [(int(pk), str(t), str(i)) for pk, t, i in rows]

    total: int | None = None
    if query.total != "none" or query.summary == "count":
        if matches and len(matches) < query.count:
            total = max(0, query.offset) + len(matches)
        elif not sets:
            total = live_count(conn, rtype)
        elif query.total == "estimate" and driver is not None and len(sets) == 1:
            # search.html#total: an estimate may be rough; the driving index range's size is an
            # upper bound (exact unless a resource has several entries matching the value).
            counted = conn.execute(f"SELECT count(*) FROM ({driver[1].sql})", driver[1].params)
            total = int(counted.fetchone()[0])
        else:
            counted = conn.execute(f"SELECT count(*) FROM resource r WHERE {clause}", params)
            total = int(counted.fetchone()[0])

    included = (
        _includes(conn, comp, query.includes, matches, query.include_access)
        if query.includes
        else []
    )
    return SearchResult(
        matches=[(t, i) for _, t, i in matches],
        included=[(t, i) for _, t, i in included],
        total=total,
    )


def _includes(
    conn: sqlite3.Connection,
    comp: _Compiler,
    includes: tuple[Include, ...],
    matches: list[tuple[int, str, str]],
    access: tuple[tuple[str, AnyCriterion | None], ...] | None = None,
) -> list[tuple[int, str, str]]:
    """``_include``/``_revinclude`` (search.html#include): round 0 applies every include to the
    matches, each further round (at most ``INCLUDE_ROUNDS``) applies the ``:iterate`` ones to
    what the previous round added. Matches are never repeated as included. With ``access``
    (``SearchQuery.include_access``) each round keeps only what the caller may see."""
    seen = {pk for pk, _, _ in matches}
    included: list[tuple[int, str, str]] = []
    frontier = matches
    for round_ in range(INCLUDE_ROUNDS + 1):
        active = includes if round_ == 0 else tuple(i for i in includes if i.iterate)
        if not active or not frontier:
            break
        added: list[tuple[int, str, str]] = []
        for inc in active:
            for row in _include_step(conn, comp, inc, frontier):
                if row[0] not in seen:
                    seen.add(row[0])
                    added.append(row)
        if access is not None:
            added = _permitted(conn, comp, access, added)
        included += added
        frontier = added
    return included


def _permitted(
    conn: sqlite3.Connection,
    comp: _Compiler,
    access: tuple[tuple[str, AnyCriterion | None], ...],
    rows: list[tuple[int, str, str]],
) -> list[tuple[int, str, str]]:
    """The ``rows`` whose type ``access`` allows and that meet that type's criterion."""
    allowed = dict(access)
    keep: set[int] = set()
    for rtype in {t for _, t, _ in rows if t in allowed}:
        pks = [pk for pk, t, _ in rows if t == rtype]
        crit = allowed[rtype]
        if crit is None:
            keep.update(pks)
            continue
        pred = comp.predicate(crit, rtype, "r")
        found = conn.execute(
            "SELECT r.pk FROM resource r WHERE r.pk IN (SELECT value FROM json_each(?))"
            f" AND r.deleted = 0 AND {pred.sql}",
            [orjson.dumps(pks).decode(), *pred.params],
        )
        keep.update(int(pk) for (pk,) in found)
    return [row for row in rows if row[0] in keep]


def _include_step(
    conn: sqlite3.Connection,
    comp: _Compiler,
    inc: Include,
    frontier: list[tuple[int, str, str]],
) -> list[tuple[int, str, str]]:
    every = inc.param.name == "*"
    if not inc.reverse:
        sources = [pk for pk, t, _ in frontier if t == inc.source_type]
        if not sources:
            return []
        if every:
            pid = _Sql("1", [])
        else:
            pid = _pid_cond("x.pid", comp.pids(inc.source_type, inc.param.name))
        sql = (
            "SELECT DISTINCT t.pk, t.res_type, t.res_id FROM idx_reference x CROSS JOIN resource t"
            f" WHERE x.res_pk IN (SELECT value FROM json_each(?)) AND {pid.sql}"
            " AND t.res_type = x.target_type AND t.res_id = x.target_id AND t.deleted = 0"
        )
        params: Params = [orjson.dumps(sources).decode(), *pid.params]
        if inc.target_type is not None:
            sql += " AND x.target_type = ?"
            params.append(inc.target_type)
    else:
        targets = [pk for pk, t, _ in frontier if inc.target_type is None or t == inc.target_type]
        if not targets:
            return []
        if every:
            pid = _Sql("x.pid IN (SELECT pid FROM param WHERE res_type = ?)", [inc.source_type])
        else:
            pid = _pid_cond("x.pid", comp.pids(inc.source_type, inc.param.name))
        sql = (
            "SELECT DISTINCT s.pk, s.res_type, s.res_id FROM resource m"
            " CROSS JOIN idx_reference x CROSS JOIN resource s"
            f" WHERE m.pk IN (SELECT value FROM json_each(?)) AND {pid.sql}"
            " AND x.target_id = m.res_id AND x.target_type = m.res_type"
            " AND s.pk = x.res_pk AND s.deleted = 0"
        )
        params = [orjson.dumps(targets).decode(), *pid.params]
    rows = conn.execute(sql + " ORDER BY 1", params)
    return [(int(pk), str(t), str(i)) for pk, t, i in rows]


class SqliteSearchIndex:
    """The synchronous search index: entries are written by ``Transaction.put`` in the same
    database transaction as the resource, so every committed write is searchable at once."""

    synchronous = True

    def __init__(self, db: Database) -> None:
        self._db = db

    def search(self, query: SearchQuery) -> SearchResult:
        """Answer ``query`` on one read snapshot of this thread's reader connection."""
        with self._db.snapshot() as conn, sqlite_errors():
            return run_search(self._db, conn, query)

    def apply(self, updates: Sequence[tuple[Key, Sequence[IndexEntry] | None, str]]) -> None:
        """Re-index: replace the entries of each existing, live resource (``None`` removes them).

        Not needed to keep this index current (``put`` already writes the entries); it serves
        ``pixelhub reindex`` after extraction rules change. Idempotent; unknown or deleted
        resources are skipped. ``last_updated`` is not used: the resource row already has it.
        """
        if not updates:
            return
        with self._db.write() as conn, sqlite_errors():
            for (resource_type, id), entries, _ in updates:
                row = conn.execute(
                    "SELECT pk FROM resource WHERE res_type = ? AND res_id = ? AND deleted = 0",
                    (resource_type, id),
                ).fetchone()
                if row is None:
                    continue
                clear_index(conn, int(row[0]))
                if entries:
                    write_index(self._db, conn, int(row[0]), resource_type, entries)
