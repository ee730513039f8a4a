"""FHIR R4 search (search.html) compiled to parameterised SQL over the ``idx_*`` tables, for
every SQL engine; what an engine spells its own way is its ``Dialect``.

Pure: builds SQL text and parameter lists from ``hub.search.model`` types and runs them through
a ``Connection`` the engine hands in (anything with ``execute(sql, params)`` returning rows); no
driver is imported here. The schema it assumes: ``resource(pk, res_type, res_id,
last_updated_ms, deleted)``, ``param(pid, res_type, name)``, ``type_count(res_type, live)`` and
one ``idx_<type>`` table per parameter type keyed by ``(res_pk, pid, ...)``.

Each criterion compiles to two equivalent forms: a *predicate* on a resource row (a correlated
``EXISTS`` probing the index by the resource's primary key) and a *set* (``SELECT res_pk`` from a
value index). The criterion whose set is smallest (sizes probed with a bounded ``LIMIT``, raised
once to break a tie) drives the query through ``pk IN (set)``; every other criterion is checked
per candidate with its predicate. A driver found within a limit is bound as the list of its
pks and the predicates as ``(...) IS TRUE``, which a planner cannot turn into joins: so a
planner that misjudges a criterion as selective cannot drive by it instead. So
``ImagingStudy?patient=Patient/123&modality=CT&started=ge2020-01-01`` walks the patient's few
studies rather than every CT. When more pks are bound than the first limit, each other set no
larger than ``NARROW_FACTOR`` entries per pk is read once and intersected with them (reading
index entries in order is far cheaper than a predicate's lookup per candidate), and its
criterion needs no predicate. Values are only ever bound as parameters.

A date window (search.html#prefix: a lower bound ``ge``/``gt``/``sa`` and an upper bound
``lt``/``le``/``eb`` on the same parameter, as in ``started=ge2021-03-01&started=lt2021-04-01``)
is one more driver candidate where the engine gives ``date_span`` (the widest finite stored
range): each bound alone selects about half the rows, but a resource whose entry meets both has
that entry's ``low`` within ``[lower - span, upper]``, one range of the ``(pid, low)`` index. The
window's finite entries are taken only when they meet every bound themselves (their resources
are matches); the rest of the window is a superset: the entries with an open end and every
resource with more than one entry of the parameter (``ord > 0``: the bounds may be met by
different entries). When that rest holds nothing, the bounds need no predicate; otherwise they
stay checked per candidate, so the answer is the same whichever drives.

Results (search.html#sort, #count, #total, #include): ``_sort`` keys use each resource's lowest
value ascending and highest descending, resources without a value last, then the resource pk (so
pages are stable); the total of a single-criterion search is the number of distinct pks of its
set, counted on the index alone (``_total=estimate``: its entries, an upper bound); includes are
explained on ``_includes``.

Matching rules (search.html):

* token (#token): ``code``, ``system|code``, ``|code`` (no system), ``system|``; ``:not`` matches
  resources with no matching entry (also those without the element); ``:text`` is a case- and
  accent-insensitive *contains* on the display/text (as a set: the parameter's distinct texts
  walked by index, ``_token_text_set``); ``:of-type`` matches identifier type + value.
* string (#string): starts-with on the folded value (case and accents ignored); ``:exact`` compares
  the value as is; ``:contains`` anywhere in the folded value.
* date (#prefix, #date): ranges ``[low, high]`` (ms), open ends as -inf/+inf, R4 prefix table:
  ``hub.search.matching.date_test``.
* number and quantity (#number, #quantity): the stored value as a point, R4 prefix table:
  ``hub.search.matching.number_test``. Quantity ``system|code`` matches system and code;
  ``||code`` (no system) matches code or unit.
* reference (#reference): ``Type/id``, ``id`` (any type unless ``:Type``), absolute URL;
  a versioned stored reference matches its unversioned form; ``:identifier``.
* uri (#uri): exact, ``:below`` (prefix), ``:above`` (the stored URI is a prefix of the value).
* composite (#composite): every component matched by entries of the same group.
* ``:missing`` for every type; ``_id`` and ``_lastUpdated`` from the resource row; chains
  (#chaining) and ``_has`` (#has) nest to any depth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hub.errors import InvalidSearch
from hub.search.matching import (
    DATE_MAX,
    DATE_MIN,
    PREFIX_TOP,
    date_test,
    fold,
    now_ms,
    number_test,
    to_sql,
)
from hub.search.model import (
    AnyCriterion,
    AnyOfCriterion,
    ChainedCriterion,
    CompositeValue,
    Criterion,
    DateEntry,
    DateValue,
    HasCriterion,
    Include,
    IndexEntry,
    NumberEntry,
    NumberValue,
    ParamType,
    Prefix,
    QuantityEntry,
    QuantityValue,
    ReferenceEntry,
    ReferenceValue,
    SearchQuery,
    SearchResult,
    SearchValue,
    SortKey,
    StringEntry,
    StringValue,
    TokenEntry,
    TokenValue,
    UriEntry,
    UriValue,
)

__all__ = [
    "INCLUDE_ROUNDS",
    "PROBE_LIMITS",
    "Cond",
    "Connection",
    "DateSpan",
    "Dialect",
    "Params",
    "PidResolver",
    "Sql",
    "index_row",
    "live_count",
    "plain_text_prefix",
    "run_search",
]

PROBE_LIMITS = (1000, 20000)  # a tie at the first limit is probed again at the next
NARROW_FACTOR = 40  # index entries read per candidate pk cost about one predicate test
INCLUDE_ROUNDS = 5
_TABLE: dict[str, str] = {
    "token": "idx_token",
    "string": "idx_string",
    "date": "idx_date",
    "number": "idx_number",
    "quantity": "idx_quantity",
    "reference": "idx_reference",
    "uri": "idx_uri",
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

Params = list[object]
PidResolver = Callable[[str | None, str], list[int]]
# The widest finite stored date range (``high - low``, ms) among the ``idx_date`` rows of these
# pids, ``None`` if there is none: given by an engine whose ``idx_date`` has an index on
# ``(pid, low)``, on ``(pid, high, low)`` and on ``(pid, res_pk) WHERE ord > 0``, and whose
# ``ord`` numbers a resource's entries of one parameter from 0.
DateSpan = Callable[[list[int]], int | None]
_LOWER = frozenset({"ge", "gt", "sa"})
_UPPER = frozenset({"lt", "le", "eb"})
Row = tuple[int, str, str]  # pk, res_type, res_id


@dataclass(frozen=True)
class Sql:
    sql: str
    params: Params


@dataclass(frozen=True)
class Cond:
    """A condition on one index row; ``indexed`` when it is a range of the table's index."""

    sql: str
    params: Params
    indexed: bool


@dataclass(frozen=True)
class _Set:
    """``SELECT <pk>`` of the live resources matching a criterion; ``indexed`` when it reads
    index ranges only (cheap to probe and to drive a query)."""

    sql: str
    params: Params
    indexed: bool


class Connection(Protocol):
    """What the compiler runs its SQL on: a DB-API connection (or a test spy) whose
    ``execute`` answers rows as sequences."""

    def execute(self, sql: str, params: Sequence[object], /) -> Iterable[Sequence[Any]]: ...


class Dialect(Protocol):
    """How one engine spells what differs between SQL engines."""

    # The bound-parameter placeholder (``?``, ``%s``).
    p: str
    # Boolean literals.
    true: str
    false: str
    # Put before an index table's alias (``+x.col``) in correlated lookups, where the row is
    # found by its primary key ``(res_pk, pid)``: keeps a planner off the value indexes.
    by_pk: str
    # The function ``f(haystack, needle)`` giving needle's 1-based position, 0 if absent.
    position: str
    # Whether a subquery in ``FROM`` needs an alias.
    name_subqueries: bool
    # How many characters of a text value its index holds (``None``: all of them).
    key_chars: int | None

    def key(self, col: str) -> str:
        """Text column ``col`` as its value indexes hold it (``col`` or a prefix of it)."""
        ...

    def live(self, deleted: str) -> str:
        """True when the ``deleted`` column says the resource is live."""
        ...

    def in_list(self, col: str, values: list[Any], cast: str | None, negate: bool = False) -> Sql:
        """``col`` is (not) one of ``values``, a short list; ``cast`` names the values' SQL
        type where the dialect needs it (``text``), ``None`` to let the column decide."""
        ...

    def in_pks(self, col: str, pks: list[int]) -> Sql:
        """``col`` is one of ``pks``, a list of any length bound as one parameter."""
        ...

    def text_eq(self, col: str, value: str) -> Cond:
        """``col = value`` as a range of ``col``'s index."""
        ...

    def text_prefix(self, col: str, prefix: str) -> Cond:
        """``col`` starts with ``prefix``, as a range of ``col``'s index."""
        ...

    def param_starts_with(self, col: str) -> str:
        """The bound parameter starts with ``col`` (one placeholder)."""
        ...


def plain_text_prefix(p: str, col: str, prefix: str) -> Cond:
    """``p <= col < p + PREFIX_TOP``: starts-with as one range of an index on ``col``."""
    return Cond(f"{col} >= {p} AND {col} < {p}", [prefix, prefix + PREFIX_TOP], True)


def _sub(d: Dialect, sql: str, name: str) -> str:
    """``sql`` as a subquery in ``FROM``."""
    return f"({sql}) AS {name}" if d.name_subqueries else f"({sql})"


def _and(d: Dialect, *conds: Cond) -> Cond:
    parts = [c for c in conds if c.sql]
    return Cond(
        " AND ".join(f"({c.sql})" for c in parts) or d.true,
        [p for c in parts for p in c.params],
        any(c.indexed for c in parts),
    )


class _Compiler:
    """Compiles criteria for one query; ``pids`` resolves parameter names on the connection."""

    def __init__(self, d: Dialect, pids: PidResolver) -> None:
        self.d = d
        self.pids = pids
        self._n = 0
        self._now = now_ms()

    def _alias(self, base: str) -> str:
        self._n += 1
        return f"{base}{self._n}"

    def pid_cond(self, col: str, pids: list[int]) -> Sql:
        if not pids:
            return Sql(self.d.false, [])
        if len(pids) == 1:
            return Sql(f"{col} = {self.d.p}", [pids[0]])
        return self.d.in_list(col, list(pids), None)

    def _range(self, prefix: Prefix, lo: str, hi: str, s_low: int, s_high: int) -> Cond:
        """R4 search.html#prefix over a stored range ``[lo, hi]`` and the search range."""
        test = date_test(prefix, s_low, s_high, self._now)
        sql, params = to_sql(test, lo, hi, self.d.p)
        return Cond(sql, list(params), test.indexed)

    def _number(self, prefix: Prefix, col: str, value: float, low: float, high: float) -> Cond:
        """R4 search.html#number on the stored value taken as a point."""
        test = number_test(prefix, value, low, high)
        sql, params = to_sql(test, col, col, self.d.p)
        return Cond(sql, list(params), test.indexed)

    # ---- one value on one index row ------------------------------------------------------
    def value_cond(
        self, ptype: ParamType, value: SearchValue, modifier: str | None, a: str
    ) -> Cond:
        d, p = self.d, self.d.p
        if ptype == "token" and isinstance(value, TokenValue):
            return self._token(value, modifier, a)
        if ptype == "string" and isinstance(value, StringValue):
            folded = fold(value.value)
            if modifier == "exact":
                eq = d.text_eq(f"{a}.norm", folded)
                return Cond(f"{eq.sql} AND {a}.value = {p}", [*eq.params, value.value], True)
            if modifier == "contains":
                return Cond(f"{d.position}({a}.norm, {p}) > 0", [folded], False)
            return d.text_prefix(f"{a}.norm", folded)
        if ptype == "date" and isinstance(value, DateValue):
            return self._range(value.prefix, f"{a}.low", f"{a}.high", value.low, value.high)
        if ptype == "number" and isinstance(value, NumberValue):
            return self._number(value.prefix, f"{a}.value", value.value, value.low, value.high)
        if ptype == "quantity" and isinstance(value, QuantityValue):
            num = self._number(value.prefix, f"{a}.value", value.value, value.low, value.high)
            if value.system is not None and value.code is not None:
                unit = Cond(
                    f"{a}.system = {p} AND {a}.code = {p}", [value.system, value.code], False
                )
            elif value.system is not None:
                unit = Cond(f"{a}.system = {p}", [value.system], False)
            elif value.code is not None:
                unit = Cond(f"({a}.code = {p} OR {a}.unit = {p})", [value.code, value.code], False)
            else:
                return num
            return Cond(f"{num.sql} AND {unit.sql}", num.params + unit.params, num.indexed)
        if ptype == "reference" and isinstance(value, ReferenceValue):
            return self._reference(value, a)
        if ptype == "uri" and isinstance(value, UriValue):
            if modifier == "below":
                return d.text_prefix(f"{a}.value", value.value)
            if modifier == "above":
                return Cond(d.param_starts_with(f"{a}.value"), [value.value], False)
            return d.text_eq(f"{a}.value", value.value)
        raise InvalidSearch(f"A {type(value).__name__} cannot be searched as a {ptype} parameter")

    def _token(self, v: TokenValue, modifier: str | None, a: str) -> Cond:
        d, p = self.d, self.d.p
        if modifier == "text":
            if not v.text:
                raise InvalidSearch(":text needs a search text")
            return Cond(f"{d.position}({a}.text_norm, {p}) > 0", [fold(v.text)], False)
        if modifier == "of-type":
            if v.type_code is None or v.code is None:
                raise InvalidSearch(":of-type needs [system]|[code]|[value]")
            code = d.text_eq(f"{a}.code", v.code)
            c = Cond(f"{code.sql} AND {a}.type_code = {p}", [*code.params, v.type_code], True)
            if v.type_system is not None:
                c = Cond(f"{c.sql} AND {a}.type_system = {p}", [*c.params, v.type_system], True)
            return c
        if v.code is not None:
            code = d.text_eq(f"{a}.code", v.code)
            if v.system is not None:
                system = d.text_eq(f"{a}.system", v.system)
                return Cond(f"{code.sql} AND {system.sql}", code.params + system.params, True)
            if v.bar:
                return Cond(f"{code.sql} AND {a}.system IS NULL", code.params, True)
            return code
        if v.system is not None:
            return Cond(f"{a}.system = {p}", [v.system], False)
        raise InvalidSearch("A token search needs a code or a system")

    def _reference(self, v: ReferenceValue, a: str) -> Cond:
        d, p = self.d, self.d.p
        if v.identifier_value is not None:
            ident = d.text_eq(f"{a}.identifier_value", v.identifier_value)
            if v.identifier_system is None:
                return ident
            system: Params = [v.identifier_system]
            return Cond(f"{ident.sql} AND {a}.identifier_system = {p}", ident.params + system, True)
        if v.target_id is not None:
            c = Cond(f"{a}.target_id = {p}", [v.target_id], True)
            if v.target_type is not None:
                c = _and(d, c, Cond(f"{a}.target_type = {p}", [v.target_type], False))
            if v.version is not None:
                c = _and(d, c, Cond(f"{a}.version = {p}", [v.version], False))
            return c
        if v.url is not None:
            return d.text_eq(f"{a}.url", v.url)
        raise InvalidSearch("A reference search needs an id, a URL or an identifier")

    # ---- one criterion -------------------------------------------------------------------
    def predicate(self, crit: AnyCriterion, rtype: str | None, r: str) -> Sql:
        """SQL true for resource row ``r`` (columns pk, res_type, res_id, last_updated_ms)."""
        d, p = self.d, self.d.p
        if isinstance(crit, AnyOfCriterion):
            branches: list[Sql] = []
            for branch in crit.branches:
                parts = [self.predicate(c, rtype, r) for c in branch]
                sql = " AND ".join(f"({q.sql})" for q in parts) or d.true
                branches.append(Sql(sql, [v for q in parts for v in q.params]))
            return Sql(
                "(" + (" OR ".join(f"({b.sql})" for b in branches) or d.false) + ")",
                [v for b in branches for v in b.params],
            )
        if isinstance(crit, ChainedCriterion):
            x, t = self._alias("x"), self._alias("t")
            pid = self.pid_cond(f"{x}.pid", self.pids(rtype, crit.param.name))
            inner = self.predicate(crit.inner, crit.target_type, t)
            return Sql(
                f"EXISTS (SELECT 1 FROM idx_reference {x} JOIN resource {t}"
                f" ON {t}.res_type = {x}.target_type AND {t}.res_id = {x}.target_id"
                f" WHERE {x}.res_pk = {r}.pk AND {pid.sql} AND {d.by_pk}{x}.target_type = {p}"
                f" AND {d.live(f'{t}.deleted')} AND {inner.sql})",
                [*pid.params, crit.target_type, *inner.params],
            )
        if isinstance(crit, HasCriterion):
            x, s = self._alias("x"), self._alias("s")
            pid = self.pid_cond(f"{x}.pid", self.pids(crit.source_type, crit.reference_param.name))
            inner = self.predicate(crit.inner, crit.source_type, s)
            return Sql(
                f"EXISTS (SELECT 1 FROM idx_reference {x} JOIN resource {s} ON {s}.pk = {x}.res_pk"
                f" WHERE {pid.sql} AND {x}.target_id = {r}.res_id"
                f" AND {x}.target_type = {r}.res_type AND {d.live(f'{s}.deleted')}"
                f" AND {inner.sql})",
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
            pid = self.pid_cond(f"{x}.pid", self.pids(rtype, name))
            neg = "NOT " if crit.missing else ""
            return Sql(
                f"{neg}EXISTS (SELECT 1 FROM {table} {x} WHERE {x}.res_pk = {r}.pk AND {pid.sql})",
                pid.params,
            )
        body = self._entries(crit, rtype, correlate=f"{r}.pk")
        neg = "NOT " if crit.modifier == "not" else ""
        return Sql(f"{neg}EXISTS ({body.sql})", body.params)

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

    def _row_predicate(self, crit: Criterion, r: str) -> Sql:
        if crit.missing is not None:  # every resource has an id and a lastUpdated
            return Sql(self.d.false if crit.missing else self.d.true, [])
        if crit.param.name == "_id":
            ids = [v.code for v in crit.values if isinstance(v, TokenValue) and v.code]
            return self.d.in_list(f"{r}.res_id", ids, "text", negate=crit.modifier == "not")
        conds = [self._lastupdated_cond(v, r) for v in crit.values]
        return Sql(
            "(" + " OR ".join(f"({c.sql})" for c in conds) + ")",
            [p for c in conds for p in c.params],
        )

    def _lastupdated_cond(self, v: SearchValue, r: str) -> Cond:
        if not isinstance(v, DateValue):
            raise InvalidSearch("_lastUpdated needs a date value")
        col = f"{r}.last_updated_ms"
        return self._range(v.prefix, col, col, v.low, v.high)

    def _entries(self, crit: Criterion, rtype: str | None, correlate: str | None) -> Sql:
        """``SELECT`` over the index rows matching ``crit`` (any of its values): with
        ``correlate`` restricted to that resource pk (for EXISTS), else selecting ``res_pk``."""
        name, ptype = crit.param.name, crit.param.type
        pids = self.pids(rtype, name)
        parts: list[Sql] = []
        for value in crit.values:
            if ptype == "composite":
                parts.append(self._composite(crit, value, pids, correlate))
                continue
            x = self._alias("x")
            col = x if correlate is None else f"{self.d.by_pk}{x}"
            if crit.modifier == "text" and correlate is None and isinstance(value, TokenValue):
                parts.append(self._token_text_set(value, pids, x))
                continue
            cond = self.value_cond(ptype, value, crit.modifier, col)
            pid = self.pid_cond(f"{x}.pid", pids)
            where = f"{pid.sql} AND {cond.sql}"
            params = [*pid.params, *cond.params]
            if crit.type_filter is not None and ptype == "reference":
                where += f" AND {col}.target_type = {self.d.p}"
                params.append(crit.type_filter)
            if correlate is not None:
                where = f"{x}.res_pk = {correlate} AND {where}"
            parts.append(Sql(f"SELECT {x}.res_pk FROM {_TABLE[ptype]} {x} WHERE {where}", params))
        return Sql(" UNION ALL ".join(p.sql for p in parts), [q for p in parts for q in p.params])

    def _token_text_set(self, v: TokenValue, pids: list[int], x: str) -> Sql:
        """``:text`` as a set (search.html#token): the distinct displays of each parameter are
        walked one index descent each (``idx_token_text``, a loose index scan as a recursive
        query), those containing the text kept, and the rows with those displays read by
        index; far fewer steps than testing every entry when displays repeat, as codes' do.

        Where the index holds a display's first ``key_chars`` characters only, a key containing
        the text is a match as it is; a key that may have been cut, and does not, is a match
        when its whole display does (read from the table: rare)."""
        d, p = self.d, self.d.p
        if not v.text:
            raise InvalidSearch(":text needs a search text")
        needle = fold(v.text)
        key = d.key(f"{x}.text_norm")
        parts: list[Sql] = []
        for pid in pids:
            found = f"{d.position}(v, {p}) > 0"
            walk = self._distinct_texts(pid, found, [needle])
            parts.append(
                Sql(
                    f"SELECT {x}.res_pk FROM idx_token {x} WHERE {x}.pid = {p}"
                    f" AND {key} IS NOT NULL AND {key} IN ({walk.sql})",
                    [pid, *walk.params],
                )
            )
            if d.key_chars is not None:
                cut = f"{d.position}(v, {p}) = 0 AND length(v) >= {d.key_chars}"
                walk = self._distinct_texts(pid, cut, [needle])
                parts.append(
                    Sql(
                        f"SELECT {x}.res_pk FROM idx_token {x} WHERE {x}.pid = {p}"
                        f" AND {key} IS NOT NULL AND {key} IN ({walk.sql})"
                        f" AND {d.position}({x}.text_norm, {p}) > 0",
                        [pid, *walk.params, needle],
                    )
                )
        if not parts:
            return Sql(f"SELECT {x}.res_pk FROM idx_token {x} WHERE {d.false}", [])
        return Sql(" UNION ALL ".join(q.sql for q in parts), [v for q in parts for v in q.params])

    def _distinct_texts(self, pid: int, keep: str, params: Params) -> Sql:
        """The distinct display keys of parameter ``pid`` meeting ``keep`` (on column ``v``), in
        one index descent each: a recursive query stepping to the next greater key."""
        d, p = self.d, self.d.p
        walk, y, z = self._alias("k"), self._alias("y"), self._alias("z")
        first, following = d.key(f"{y}.text_norm"), d.key(f"{z}.text_norm")
        return Sql(
            f"WITH RECURSIVE {walk}(v) AS ("
            f"SELECT min({first}) FROM idx_token {y} WHERE {y}.pid = {p} AND {first} IS NOT NULL"
            f" UNION ALL SELECT (SELECT min({following}) FROM idx_token {z}"
            f" WHERE {z}.pid = {p} AND {following} IS NOT NULL AND {following} > {walk}.v)"
            f" FROM {walk} WHERE {walk}.v IS NOT NULL)"
            f" SELECT v FROM {walk} WHERE v IS NOT NULL AND {keep}",
            [pid, pid, *params],
        )

    def _composite(
        self, crit: Criterion, value: SearchValue, pids: list[int], correlate: str | None
    ) -> Sql:
        if not isinstance(value, CompositeValue):
            raise InvalidSearch(f"{crit.param.name!r} needs a composite value (a$b)")
        types = crit.param.components
        if len(value.components) != len(types) or not types:
            raise InvalidSearch(
                f"{crit.param.name!r} needs {len(types)} components, got {len(value.components)}"
            )
        aliases = [self._alias("c") for _ in types]
        first = aliases[0]
        pid = self.pid_cond(f"{first}.pid", pids)
        joins, where, params = "", [pid.sql, f"{first}.comp = 0"], list(pid.params)
        join_params: Params = []
        for i, (ctype, cval, a) in enumerate(zip(types, value.components, aliases, strict=True)):
            table = _TABLE.get(ctype)
            if table is None:
                raise InvalidSearch(f"Composite component type {ctype} is not supported")
            col = a if i == 0 and correlate is None else f"{self.d.by_pk}{a}"
            cond = self.value_cond(ctype, cval, None, col)
            if i > 0:
                joins += (
                    f" JOIN {table} {a} ON {a}.res_pk = {first}.res_pk AND {a}.pid = {first}.pid"
                    f" AND {a}.grp = {first}.grp AND {a}.comp = {self.d.p} AND {cond.sql}"
                )
                join_params += [i, *cond.params]
            else:
                where.append(cond.sql)
                params += cond.params
        if correlate is not None:
            where.insert(0, f"{first}.res_pk = {correlate}")
        table0 = _TABLE[types[0]]
        return Sql(
            f"SELECT {first}.res_pk FROM {table0} {first}{joins} WHERE " + " AND ".join(where),
            [*join_params, *params],
        )

    def pk_set(self, crit: AnyCriterion, rtype: str | None) -> _Set:
        """The set form of ``crit``: pks of live resources of ``rtype`` that match."""
        d, p = self.d, self.d.p
        if isinstance(crit, AnyOfCriterion):
            return self._any_of_set(crit, rtype)
        if isinstance(crit, ChainedCriterion):
            inner = self.pk_set(crit.inner, crit.target_type)
            if not inner.indexed:
                return self._scan(crit, rtype)
            x, t = self._alias("x"), self._alias("t")
            pid = self.pid_cond(f"{x}.pid", self.pids(rtype, crit.param.name))
            return _Set(
                f"SELECT {x}.res_pk FROM resource {t} CROSS JOIN idx_reference {x}"
                f" WHERE {t}.pk IN ({inner.sql}) AND {pid.sql} AND {x}.target_id = {t}.res_id"
                f" AND {x}.target_type = {p}",
                [*inner.params, *pid.params, crit.target_type],
                True,
            )
        if isinstance(crit, HasCriterion):
            inner = self.pk_set(crit.inner, crit.source_type)
            if not inner.indexed:
                return self._scan(crit, rtype)
            x, t = self._alias("x"), self._alias("t")
            pid = self.pid_cond(f"{x}.pid", self.pids(crit.source_type, crit.reference_param.name))
            sql = (
                f"SELECT {t}.pk FROM idx_reference {x} CROSS JOIN resource {t}"
                f" WHERE {x}.res_pk IN ({inner.sql}) AND {pid.sql}"
                f" AND {t}.res_type = {x}.target_type AND {t}.res_id = {x}.target_id"
                f" AND {d.live(f'{t}.deleted')}"
            )
            params = [*inner.params, *pid.params]
            if rtype is not None:
                sql += f" AND {x}.target_type = {p}"
                params.append(rtype)
            return _Set(sql, params, True)
        self._check(crit)
        name = crit.param.name
        if crit.missing is not None or crit.modifier == "not":
            return self._scan(crit, rtype)
        if name == "_id" and rtype is not None:
            ids = [v.code for v in crit.values if isinstance(v, TokenValue) and v.code]
            in_ids = d.in_list("res_id", ids, "text")
            return _Set(
                f"SELECT pk FROM resource WHERE res_type = {p} AND {d.live('deleted')}"
                f" AND {in_ids.sql}",
                [rtype, *in_ids.params],
                True,
            )
        if name == "_lastUpdated" and rtype is not None:
            conds = [self._lastupdated_cond(v, "resource") for v in crit.values]
            return _Set(
                f"SELECT pk FROM resource WHERE res_type = {p} AND {d.live('deleted')} AND ("
                + " OR ".join(f"({c.sql})" for c in conds)
                + ")",
                [rtype, *[q for c in conds for q in c.params]],
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
            return _Set(f"SELECT pk FROM resource WHERE {self.d.false}", [], True)
        branches: list[_Set] = []
        for branch in crit.branches:
            sets = [self.pk_set(c, rtype) for c in branch]
            if not sets or not all(s.indexed for s in sets):
                return self._scan(crit, rtype)
            branches.append(
                _Set(
                    " INTERSECT ".join(
                        f"SELECT * FROM {_sub(self.d, s.sql, self._alias('q'))}" for s in sets
                    ),
                    [p for s in sets for p in s.params],
                    True,
                )
            )
        return _Set(
            " UNION ".join(
                f"SELECT * FROM {_sub(self.d, b.sql, self._alias('q'))}" for b in branches
            ),
            [p for b in branches for p in b.params],
            True,
        )

    def _indexed(self, crit: Criterion) -> bool:
        ptype = crit.param.type
        if ptype == "composite" or (ptype == "token" and crit.modifier == "text"):
            return True
        for value in crit.values:
            probe = self.value_cond(ptype, value, crit.modifier, "z")
            if not probe.indexed:
                return False
        return True

    def _scan(self, crit: AnyCriterion, rtype: str | None) -> _Set:
        f = self._alias("f")
        pred = self.predicate(crit, rtype, f)
        live = self.d.live(f"{f}.deleted")
        if rtype is None:
            return _Set(
                f"SELECT {f}.pk FROM resource {f} WHERE {live} AND {pred.sql}", pred.params, False
            )
        return _Set(
            f"SELECT {f}.pk FROM resource {f} WHERE {f}.res_type = {self.d.p} AND {live}"
            f" AND {pred.sql}",
            [rtype, *pred.params],
            False,
        )

    def date_windows(
        self, criteria: Sequence[AnyCriterion], rtype: str | None, span: DateSpan
    ) -> list[tuple[object, _Set]]:
        """A superset of the resources meeting every lower and upper bound given to one date
        parameter (the module docstring's date window), per parameter that has both; its key
        is a ``_Window``."""
        bounds: dict[str, tuple[list[Criterion], list[Criterion]]] = {}
        for crit in criteria:
            if not isinstance(crit, Criterion) or crit.param.type != "date":
                continue
            if crit.modifier is not None or crit.missing is not None or len(crit.values) != 1:
                continue
            value = crit.values[0]
            if not isinstance(value, DateValue) or crit.param.name in ("_id", "_lastUpdated"):
                continue
            lower, upper = bounds.setdefault(crit.param.name, ([], []))
            if value.prefix in _LOWER:
                lower.append(crit)
            elif value.prefix in _UPPER:
                upper.append(crit)
        out: list[tuple[object, _Set]] = []
        for name, (lower, upper) in bounds.items():
            pids = self.pids(rtype, name)
            if not lower or not upper or not pids:
                continue
            width = max(span(pids) or 0, 0)
            lows, highs = [_date(c) for c in lower], [_date(c) for c in upper]
            # the least low and the greatest low an entry meeting every bound can have
            low = max(v.high + 1 if v.prefix == "sa" else _least_high(v) - width for v in lows)
            high = min(v.high if v.prefix == "le" else v.low - 1 for v in highs)
            tests = [self._range(v.prefix, "x.low", "x.high", v.low, v.high) for v in lows + highs]
            exact, loose = self._window_sets(pids, low, high, tests)
            window = _Window(tuple(lower + upper), loose)
            out.append(
                (
                    window,
                    _Set(f"{exact.sql} UNION ALL {loose.sql}", exact.params + loose.params, True),
                )
            )
        return out

    def _window_sets(
        self, pids: list[int], low: int, high: int, tests: list[Cond]
    ) -> tuple[_Set, _Set]:
        """The window's entries in two sets: finite entries meeting every bound themselves
        (their resources are matches), and the rest, whose resources may be: entries with an
        open start or end, and resources with several entries (``ord > 0``)."""
        p = self.d.p
        met = " AND ".join(f"({t.sql})" for t in tests)
        branches: tuple[tuple[str, Params], ...] = (
            (
                f"x.low >= {p} AND x.low <= {p} AND {met}",
                [low, high, *(v for t in tests for v in t.params)],
            ),
            (f"x.low = {p}", [DATE_MIN]),  # open start
            (f"x.high = {p} AND x.low <= {p}", [DATE_MAX, high]),  # open end
            ("x.ord > 0", []),  # resources with several entries
        )
        parts: list[Sql] = []
        for cond, values in branches:
            pid = self.pid_cond("x.pid", pids)
            sql = f"SELECT x.res_pk FROM idx_date x WHERE {pid.sql} AND {cond}"
            parts.append(Sql(sql, [*pid.params, *values]))
        rest = parts[1:]
        loose = _Set(
            " UNION ALL ".join(q.sql for q in rest), [v for q in rest for v in q.params], True
        )
        return _Set(parts[0].sql, parts[0].params, True), loose

    # ---- sorting ---------------------------------------------------------------------------
    def sort_expr(self, key: SortKey, rtype: str | None, r: str) -> Sql:
        name, ptype = key.param.name, key.param.type
        if name == "_id":
            return Sql(f"{r}.res_id", [])
        if name == "_lastUpdated":
            return Sql(f"{r}.last_updated_ms", [])
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
        col = col.replace("x.", f"{self.d.by_pk}{x}.")  # found by primary key
        pid = self.pid_cond(f"{x}.pid", self.pids(rtype, name))
        return Sql(
            f"(SELECT {agg}({col}) FROM {_TABLE[ptype]} {x} WHERE {x}.res_pk = {r}.pk"
            f" AND {pid.sql})",
            pid.params,
        )


@dataclass(frozen=True, eq=False)
class _Window:
    """A date window's key: the bounds it was made of, which every resource it selects meets
    unless ``loose`` (the window's entries with an open end, and resources with several
    entries) selects any."""

    criteria: tuple[Criterion, ...]
    loose: _Set


def _date(crit: Criterion) -> DateValue:
    value = crit.values[0]
    assert isinstance(value, DateValue)  # date_windows takes only those
    return value


def _least_high(v: DateValue) -> int:
    """The least stored ``high`` meeting lower bound ``v`` (``ge``: the search range's start;
    ``gt``: beyond its end)."""
    return v.low if v.prefix == "ge" else v.high + 1


def _scalar(conn: Connection, sql: str, params: Sequence[object]) -> int:
    row = next(iter(conn.execute(sql, params)), None)
    return 0 if row is None else int(row[0])


def _rows(conn: Connection, sql: str, params: Sequence[object]) -> list[Row]:
    return [(int(pk), str(t), str(i)) for pk, t, i in conn.execute(sql, params)]


def _rows_of(d: Dialect, conn: Connection, pks: list[int]) -> list[Row]:
    """The rows of ``pks``, in that order."""
    if not pks:
        return []
    in_pks = d.in_pks("pk", pks)
    found = {
        row[0]: row
        for row in _rows(conn, f"SELECT pk, res_type, res_id FROM resource WHERE {in_pks.sql}",
                         in_pks.params)
    }  # fmt: skip
    return [found[pk] for pk in pks]


def live_count(d: Dialect, conn: Connection, resource_type: str | None) -> int:
    """Live resources of ``resource_type`` (all types if ``None``), from ``type_count``."""
    if resource_type is None:
        return _scalar(conn, "SELECT coalesce(sum(live), 0) FROM type_count", ())
    return _scalar(conn, f"SELECT live FROM type_count WHERE res_type = {d.p}", (resource_type,))


def _probe(d: Dialect, conn: Connection, s: _Set, limit: int) -> int:
    """How many pks ``s`` selects, counted up to ``limit + 1``."""
    return _scalar(
        conn, f"SELECT count(*) FROM {_sub(d, f'{s.sql} LIMIT {limit + 1}', 'p')}", s.params
    )


def _first_pks(d: Dialect, conn: Connection, s: _Set, limit: int) -> list[int]:
    """The pks ``s`` selects, up to ``limit + 1`` of them (repeats included)."""
    sql = f"SELECT * FROM {_sub(d, f'{s.sql} LIMIT {limit + 1}', 'p')}"
    return [int(row[0]) for row in conn.execute(sql, s.params)]


def _within(d: Dialect, conn: Connection, s: _Set, pks: list[int]) -> list[int]:
    """The pks of ``pks`` that ``s`` selects: ``s``'s index ranges read once, each entry tested
    against the list."""
    in_pks = d.in_pks("q.p", pks)
    sql = f"WITH q(p) AS ({s.sql}) SELECT DISTINCT q.p FROM q WHERE {in_pks.sql}"
    return sorted(int(row[0]) for row in conn.execute(sql, [*s.params, *in_pks.params]))


@dataclass
class _Driver:
    """The candidate set a query is driven by; with ``pks`` bound as the list of them, and
    ``met`` the keys (criteria, windows) those pks are known to meet (no predicate needed)."""

    key: object
    set: _Set
    pks: list[int] | None = None
    met: list[object] | None = None


def _choose_driver(
    d: Dialect, conn: Connection, candidates: list[tuple[object, _Set]]
) -> _Driver | None:
    """The candidate with the fewest index entries, each counted only up to a limit: the first
    limit, or the fewest found so far (no more are needed to lose); when every one exceeds the
    first limit they are counted again up to the next. The one found within a limit is bound as
    the list of its pks, narrowed by the other candidates (``_narrow``); with none found, the
    first drives as a subquery."""
    if len(candidates) <= 1:
        return _Driver(*candidates[0]) if candidates else None
    sizes: dict[int, tuple[int, int]] = {}  # candidate -> (entries counted, limit counted to)
    for round_, limit in enumerate(PROBE_LIMITS):
        best: tuple[int, int, list[int] | None] | None = None  # index, size, pks if fetched
        for at, (_, s) in enumerate(candidates):
            cap = limit if best is None else best[1] - 1
            fetched: list[int] | None = None
            if round_ == 0:  # small sets: fetching the pks costs about what counting does
                fetched = _first_pks(d, conn, s, cap)
                size = len(fetched)
            else:
                size = _probe(d, conn, s, cap)
            sizes[at] = (size, cap)
            if size <= cap:
                best = (at, size, fetched)
        if best is not None:
            at, _, found = best
            key = candidates[at][0]
            pks = found if found is not None else _first_pks(d, conn, candidates[at][1], limit)
            met = _meets(d, conn, key)
            others = [
                (c, sizes[i])
                for i, c in enumerate(candidates)
                if i != at and not any(c[0] is m for m in met)  # nothing to narrow by
            ]
            kept, narrowed = _narrow(d, conn, sorted(set(pks)), others)
            met += [m for k in narrowed for m in _meets(d, conn, k)]
            in_pks = d.in_pks("pk", kept)
            bound = _Set(f"SELECT pk FROM resource WHERE {in_pks.sql}", in_pks.params, True)
            return _Driver(key, bound, kept, met)
    return _Driver(*candidates[0])


def _meets(d: Dialect, conn: Connection, key: object) -> list[object]:
    """The keys whose criteria the pks of a candidate set are known to meet: its own; for a
    date window (``_Window``), also its bounds when nothing of it is loose."""
    if not isinstance(key, _Window):
        return [key]
    return [key] if _first_pks(d, conn, key.loose, 0) else [key, *key.criteria]


def _narrow(
    d: Dialect,
    conn: Connection,
    pks: list[int],
    others: list[tuple[tuple[object, _Set], tuple[int, int]]],
) -> tuple[list[int], list[object]]:
    """Keep of ``pks`` those the other candidates' sets select, for each set no larger than
    ``NARROW_FACTOR`` entries per pk: reading such a set's index range costs less than testing
    each pk with the criterion's predicate. Smallest first, counted (``_probe``) unless its
    size is known, while more pks remain than the first probe limit (fewer are tested at
    little cost). Returns the pks kept and the keys of the sets that narrowed them."""
    met: list[object] = []
    for (key, s), (size, counted_to) in sorted(others, key=lambda o: o[1][0]):
        if len(pks) <= PROBE_LIMITS[0]:
            break
        cap = NARROW_FACTOR * len(pks)
        if size > counted_to and counted_to < cap:  # more than counted, maybe not too many
            size = _probe(d, conn, s, cap)
        if size > cap:
            continue
        pks = _within(d, conn, s, pks)
        met.append(key)
    return pks, met


def _page(d: Dialect, driver: _Driver, count: int, offset: int) -> Sql:
    """The pks of one page, in pk order, of a driver that meets every criterion."""
    if driver.pks is not None:
        in_page = d.in_pks("pk", driver.pks[offset : offset + count])
        return Sql(f"SELECT pk FROM resource WHERE {in_page.sql}", in_page.params)
    distinct = f"SELECT DISTINCT * FROM {_sub(d, driver.set.sql, 'd')} ORDER BY 1"
    return Sql(
        f"SELECT * FROM {_sub(d, f'{distinct} LIMIT {d.p} OFFSET {d.p}', 'e')}",
        [*driver.set.params, count, offset],
    )


def run_search(
    d: Dialect,
    conn: Connection,
    pids: PidResolver,
    query: SearchQuery,
    count_live: Callable[[str | None], int],
    date_span: DateSpan | None = None,
) -> SearchResult:
    """Answer ``query`` on ``conn`` (one consistent snapshot); ``pids`` resolves parameter ids
    and ``count_live`` counts live resources of a type as ``conn`` sees them; with
    ``date_span`` date windows may drive (module docstring)."""
    comp = _Compiler(d, pids)
    rtype = query.resource_type
    sets = [(crit, comp.pk_set(crit, rtype)) for crit in query.criteria]
    drivable: list[tuple[object, _Set]] = [(c, s) for c, s in sets if s.indexed]
    if date_span is not None:  # first: likely the smallest, it bounds the other probes
        drivable[:0] = comp.date_windows(query.criteria, rtype, date_span)
    driver = _choose_driver(d, conn, drivable)
    met = (driver.met or [driver.key]) if driver is not None else []

    where: list[str] = []
    params: Params = []
    if driver is not None:
        where.append(f"r.pk IN ({driver.set.sql})")
        params += driver.set.params
        if rtype is not None:
            where.append(f"{d.by_pk}r.res_type = {d.p}")  # let the driving set pick the rows
            params.append(rtype)
    elif rtype is not None:
        where.append(f"r.res_type = {d.p}")
        params.append(rtype)
    where.append(d.live("r.deleted"))
    bound = driver is not None and driver.pks is not None
    for crit, _ in sets:
        if any(crit is key for key in met):
            continue
        pred = comp.predicate(crit, rtype, "r")
        # few candidates (bound pks): each checked in turn; ``IS TRUE`` keeps a planner from
        # turning the check into a join that an estimate gone wrong would drive
        where.append(f"({pred.sql}) IS TRUE" if bound else pred.sql)
        params += pred.params
    clause = " AND ".join(where)
    # Every set selects live resources of the type only (pk_set), so when the driver's pks
    # meet every criterion its distinct pks are the matches: in pk order, pages and totals are
    # read from the index alone.
    alone = driver is not None and all(any(c is key for key in met) for c, _ in sets)
    offset = max(0, query.offset)
    page_wanted = query.count > 0 and query.summary != "count"
    total_wanted = query.total != "none" or query.summary == "count"

    order: list[str] = []
    order_params: Params = []
    for key in query.sort:
        expr = comp.sort_expr(key, rtype, "r")
        order.append(f"{expr.sql} {'DESC' if key.descending else 'ASC'} NULLS LAST")
        order_params += expr.params
    order.append("r.pk")

    matches: list[Row] = []
    total: int | None = None
    if alone and driver is not None and not query.sort:
        if page_wanted:
            page = _page(d, driver, query.count, offset)
            matches = _rows(
                conn,
                f"SELECT r.pk, r.res_type, r.res_id FROM resource r WHERE r.pk IN ({page.sql})"
                " ORDER BY r.pk",
                page.params,
            )
    elif bound and page_wanted and total_wanted:
        # few candidates: every match found in one pass gives both the page and the total
        ordered = [
            int(pk)
            for (pk,) in conn.execute(
                f"SELECT r.pk FROM resource r WHERE {clause} ORDER BY {', '.join(order)}",
                [*params, *order_params],
            )
        ]
        total = len(ordered)
        matches = _rows_of(d, conn, ordered[offset : offset + query.count])
    elif page_wanted:
        matches = _rows(
            conn,
            f"SELECT r.pk, r.res_type, r.res_id FROM resource r WHERE {clause}"
            f" ORDER BY {', '.join(order)} LIMIT {d.p} OFFSET {d.p}",
            [*params, *order_params, query.count, offset],
        )

    if total_wanted and total is None:
        if matches and len(matches) < query.count:
            total = offset + len(matches)
        elif not sets:
            total = count_live(rtype)
        elif alone and driver is not None and driver.pks is not None:
            total = len(driver.pks)
        elif alone and driver is not None:
            # search.html#total: an estimate may be rough; the driving entries are counted
            # then (exact unless a resource has several)
            entries = driver.set.sql
            if query.total != "estimate":
                entries = f"SELECT DISTINCT * FROM {_sub(d, entries, 'd')}"
            counted = f"SELECT count(*) FROM {_sub(d, entries, 'e')}"
            total = _scalar(conn, counted, driver.set.params)
        else:
            total = _scalar(conn, f"SELECT count(*) FROM resource r WHERE {clause}", params)

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
    conn: Connection,
    comp: _Compiler,
    includes: tuple[Include, ...],
    matches: list[Row],
    access: tuple[tuple[str, AnyCriterion | None], ...] | None = None,
) -> list[Row]:
    """``_include``/``_revinclude`` (search.html#include): round 0 applies every include to the
    matches, each further round (at most ``INCLUDE_ROUNDS``) applies the ``:iterate`` ones to
    what the previous round added. Matches are never repeated as included. With ``access``
    (``SearchQuery.include_access``) each round keeps only what the caller may see."""
    seen = {pk for pk, _, _ in matches}
    included: list[Row] = []
    frontier = matches
    for round_ in range(INCLUDE_ROUNDS + 1):
        active = includes if round_ == 0 else tuple(i for i in includes if i.iterate)
        if not active or not frontier:
            break
        added: list[Row] = []
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
    conn: Connection,
    comp: _Compiler,
    access: tuple[tuple[str, AnyCriterion | None], ...],
    rows: list[Row],
) -> list[Row]:
    """The ``rows`` whose type ``access`` allows and that meet that type's criterion."""
    d = comp.d
    allowed = dict(access)
    keep: set[int] = set()
    for rtype in {t for _, t, _ in rows if t in allowed}:
        pks = [pk for pk, t, _ in rows if t == rtype]
        crit = allowed[rtype]
        if crit is None:
            keep.update(pks)
            continue
        pred = comp.predicate(crit, rtype, "r")
        in_pks = d.in_pks("r.pk", pks)
        found = conn.execute(
            f"SELECT r.pk FROM resource r WHERE {in_pks.sql}"
            f" AND {d.live('r.deleted')} AND {pred.sql}",
            [*in_pks.params, *pred.params],
        )
        keep.update(int(row[0]) for row in found)
    return [row for row in rows if row[0] in keep]


def _include_step(
    conn: Connection, comp: _Compiler, inc: Include, frontier: list[Row]
) -> list[Row]:
    d, p = comp.d, comp.d.p
    every = inc.param.name == "*"
    if not inc.reverse:
        sources = [pk for pk, t, _ in frontier if t == inc.source_type]
        if not sources:
            return []
        if every:
            pid = Sql(d.true, [])
        else:
            pid = comp.pid_cond("x.pid", comp.pids(inc.source_type, inc.param.name))
        in_sources = d.in_pks("x.res_pk", sources)
        sql = (
            "SELECT DISTINCT t.pk, t.res_type, t.res_id FROM idx_reference x CROSS JOIN resource t"
            f" WHERE {in_sources.sql} AND {pid.sql}"
            f" AND t.res_type = x.target_type AND t.res_id = x.target_id AND {d.live('t.deleted')}"
        )
        params: Params = [*in_sources.params, *pid.params]
        if inc.target_type is not None:
            sql += f" AND x.target_type = {p}"
            params.append(inc.target_type)
    else:
        targets = [pk for pk, t, _ in frontier if inc.target_type is None or t == inc.target_type]
        if not targets:
            return []
        if every:
            pid = Sql(f"x.pid IN (SELECT pid FROM param WHERE res_type = {p})", [inc.source_type])
        else:
            pid = comp.pid_cond("x.pid", comp.pids(inc.source_type, inc.param.name))
        in_targets = d.in_pks("m.pk", targets)
        sql = (
            "SELECT DISTINCT s.pk, s.res_type, s.res_id FROM resource m"
            " CROSS JOIN idx_reference x CROSS JOIN resource s"
            f" WHERE {in_targets.sql} AND {pid.sql}"
            " AND x.target_id = m.res_id AND x.target_type = m.res_type"
            f" AND s.pk = x.res_pk AND {d.live('s.deleted')}"
        )
        params = [*in_targets.params, *pid.params]
    return _rows(conn, sql + " ORDER BY 1", params)


def index_row(e: IndexEntry) -> tuple[str, tuple[object, ...]]:
    """The ``idx_*`` table an index entry goes to and its value columns, in the schema's order
    (both SQL engines write their index rows through this)."""
    if isinstance(e, TokenEntry):
        text = fold(e.text) if e.text else None
        return "idx_token", (e.system, e.code, text, e.type_system, e.type_code)
    if isinstance(e, StringEntry):
        return "idx_string", (e.value, fold(e.value))
    if isinstance(e, DateEntry):
        low = DATE_MIN if e.low is None else e.low
        high = DATE_MAX if e.high is None else e.high
        return "idx_date", (low, high)
    if isinstance(e, NumberEntry):
        return "idx_number", (e.value, e.low, e.high)
    if isinstance(e, QuantityEntry):
        return "idx_quantity", (e.value, e.low, e.high, e.system, e.code, e.unit)
    if isinstance(e, ReferenceEntry):
        ident = (e.identifier_system, e.identifier_value)
        return "idx_reference", (e.target_type, e.target_id, e.url, e.version, *ident)
    if isinstance(e, UriEntry):
        return "idx_uri", (e.value,)
    raise TypeError(f"not an index entry: {e!r}")  # pragma: no cover - exhaustive
