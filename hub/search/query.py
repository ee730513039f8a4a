"""Parse a FHIR search into a :class:`~hub.search.model.SearchQuery` (FHIR R4 search.html).

``parse_search`` takes the decoded ``(name, value)`` pairs of a search, from the URL query or a
``POST _search`` form body, in order. Repeated names are ANDed and comma-separated values ORed
(search.html#combining); ``\\,`` ``\\|`` ``\\$`` ``\\\\`` escape (search.html#escaping).

Errors, each located at the parameter name as written:

* a malformed value, a modifier that does not apply to the parameter's type, a broken chain or
  ``_has`` -> :class:`~hub.errors.InvalidSearch` (code ``not-supported`` for features that FHIR
  defines but PixelHub does not serve, such as token ``:in``);
* a ``_content``/``_text`` value without words, or with a modifier -> ``InvalidSearch``;
* an unknown parameter, or an unknown modifier of a known one -> with ``strict=True``
  (``Prefer: handling=strict``) :class:`~hub.errors.UnknownSearchParameter`; otherwise the
  parameter is skipped and listed in ``SearchQuery.ignored`` (search.html#errors).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import cast, get_args

from hub.errors import HubError, InvalidSearch, Issue, UnknownResourceType, UnknownSearchParameter
from hub.search.extract import date_range
from hub.search.model import (
    AnyCriterion,
    AnyOfCriterion,
    ChainedCriterion,
    CompositeValue,
    Criterion,
    DateValue,
    HasCriterion,
    Include,
    Modifier,
    NumberValue,
    ParamRef,
    ParamType,
    Prefix,
    QuantityValue,
    ReferenceValue,
    SearchQuery,
    SearchValue,
    SortKey,
    StringValue,
    SummaryMode,
    TokenValue,
    TotalMode,
    UriValue,
)
from hub.search.registry import (
    SERVED_TYPES,
    TEXT_PARAMS,
    SearchParameterRegistry,
    default_registry,
)
from hub.search.words import MAX_QUERY_WORDS, distinct_words

__all__ = ["parse_search"]

# Parameters a system-level search accepts (search.html#all).
_COMMON = frozenset(
    {"_id", "_lastUpdated", "_tag", "_profile", "_security", "_source", "_content", "_text"}
)
# Result parameters given at most once (search.html#return).
_SINGLE_RESULT = frozenset({"_sort", "_count", "_offset", "_total", "_summary", "_elements"})
_IGNORED = frozenset({"_format", "_pretty"})  # http.html#parameters: rendering only
_PREFIXES = frozenset(get_args(Prefix))
_TOTALS = frozenset(get_args(TotalMode))
_SUMMARIES = frozenset(get_args(SummaryMode))

# Every modifier FHIR R4 defines (search.html#modifiers), besides ``:[type]``.
_FHIR_MODIFIERS = frozenset(
    "missing exact contains text in not-in below above not identifier of-type".split()
)
_ALLOWED: dict[ParamType, frozenset[str]] = {
    "token": frozenset({"missing", "not", "text", "of-type"}),
    "string": frozenset({"missing", "exact", "contains"}),
    "reference": frozenset({"missing", "identifier"}),
    "uri": frozenset({"missing", "below", "above"}),
    "date": frozenset({"missing"}),
    "number": frozenset({"missing"}),
    "quantity": frozenset({"missing"}),
    "composite": frozenset(),
    "special": frozenset(),
}
# By name, before the type: ``_id`` is answered from the resource row; ``_content``/``_text``
# match words, where ``:missing``, ``:exact`` and ``:contains`` have no meaning.
_ALLOWED_BY_NAME: dict[str, frozenset[str]] = {
    "_id": frozenset({"not"}),
    **{name: frozenset() for name in TEXT_PARAMS},
}
# Defined by FHIR for the type but not served by PixelHub: a 400 ``not-supported``.
_NOT_SUPPORTED: dict[ParamType, frozenset[str]] = {
    "token": frozenset({"in", "not-in", "above", "below"}),
    "reference": frozenset({"above", "below"}),
}

_ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # datatypes.html#id
_TYPE_RE = re.compile(r"[A-Z][A-Za-z]{0,63}")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")  # an absolute URL or URN
_NUMBER_RE = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_INT_RE = re.compile(r"[0-9]+")
_ELEMENT_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_UNESCAPE_RE = re.compile(r"\\([,|$\\])")


def parse_search(
    resource_type: str | None,
    params: Sequence[tuple[str, str]],
    *,
    registry: SearchParameterRegistry | None = None,
    strict: bool = False,
    default_count: int = 50,
    max_count: int = 1000,
    base_url: str | None = None,
) -> SearchQuery:
    """Parse a type-level (or, with ``resource_type=None``, system-level) search (search.html).

    ``base_url`` is the server's FHIR base: absolute references under it become ``Type/id``.
    ``_count`` above ``max_count`` is clamped to it; ``_format`` and ``_pretty`` are ignored.
    """
    if resource_type is not None and resource_type not in SERVED_TYPES:
        raise UnknownResourceType(f"Resource type '{resource_type}' is not served")
    parser = _Parser(registry or default_registry(), base_url)
    criteria: list[AnyCriterion] = []
    includes: list[Include] = []
    results: dict[str, str] = {}
    ignored: list[str] = []
    for name, value in params:
        try:
            if name in _IGNORED:
                continue
            if name.partition(":")[0] in ("_include", "_revinclude"):
                includes.append(parser.include(name, value))
            elif name in _SINGLE_RESULT:
                if name in results:
                    raise InvalidSearch.at(f"'{name}' may be given only once", name)
                results[name] = value
            elif name == "_type":
                raise _not_supported("'_type' is not supported: search each type separately", name)
            else:
                criterion = parser.param(resource_type, name, value, name)
                if isinstance(criterion, AnyOfCriterion) and len(criterion.branches) == 1:
                    criteria.extend(criterion.branches[0])  # words of one value: a plain AND
                else:
                    criteria.append(criterion)
        except UnknownSearchParameter:
            if strict:
                raise
            if name not in ignored:
                ignored.append(name)
    summary = results.get("_summary")
    if summary is not None:
        _choice("_summary", summary, _SUMMARIES)
    return SearchQuery(
        resource_type=resource_type,
        criteria=tuple(criteria),
        sort=parser.sort(resource_type, results["_sort"]) if "_sort" in results else (),
        count=min(_non_negative("_count", results.get("_count", str(default_count))), max_count),
        offset=_non_negative("_offset", results.get("_offset", "0")),
        total=cast(TotalMode, _choice("_total", results.get("_total", "accurate"), _TOTALS)),
        summary=cast("SummaryMode | None", summary),
        elements=_elements(results["_elements"]) if "_elements" in results else (),
        includes=tuple(includes),
        ignored=tuple(ignored),
    )


# ------------------------------------------------------------------------------------------------
# Parameter names: plain, modified, chained, reverse-chained
# ------------------------------------------------------------------------------------------------


class _Parser:
    """Resolves parameter names against the registry; ``raw`` is the name as written."""

    def __init__(self, registry: SearchParameterRegistry, base_url: str | None) -> None:
        self.registry = registry
        self.base_url = base_url

    def param(self, rtype: str | None, name: str, value: str, raw: str) -> AnyCriterion:
        if name.startswith("_has:"):
            return self._has(rtype, name, value, raw)
        return self._chain_or_plain(rtype, name, value, raw)

    def _ref(self, rtype: str | None, code: str) -> ParamRef | None:
        if rtype is None:  # system search: only the parameters every type has
            return self.registry.ref(SERVED_TYPES[0], code) if code in _COMMON else None
        return self.registry.ref(rtype, code)

    def _lookup(self, rtype: str | None, code: str, raw: str) -> ParamRef:
        ref = self._ref(rtype, code)
        if ref is None:
            where = rtype or "a system-level search"
            raise UnknownSearchParameter.at(f"Unknown search parameter '{code}' for {where}", raw)
        return ref

    def _has(self, rtype: str | None, name: str, value: str, raw: str) -> HasCriterion:
        """``_has:Source:ref:param=value`` (search.html#has), ``param`` possibly another _has."""
        parts = name.split(":", 3)
        if len(parts) != 4 or not all(parts):
            raise InvalidSearch.at(f"'{raw}': expected _has:Type:reference:parameter", raw)
        _, source, code, inner = parts
        if rtype is None:
            raise InvalidSearch.at(f"'{raw}': _has needs a resource type to search", raw)
        if source not in SERVED_TYPES:
            raise InvalidSearch.at(f"'{raw}': resource type '{source}' is not served", raw)
        ref = self._lookup(source, code, raw)
        if ref.type != "reference":
            raise InvalidSearch.at(f"'{raw}': '{source}.{code}' is not a reference", raw)
        if rtype not in ref.targets:
            msg = f"'{raw}': '{source}.{code}' cannot refer to {rtype}"
            raise InvalidSearch.at(msg, raw)
        return HasCriterion(source, ref, self.param(source, inner, value, raw))

    def _chain_or_plain(
        self, rtype: str | None, name: str, value: str, raw: str
    ) -> Criterion | ChainedCriterion | AnyOfCriterion:
        head, dot, rest = name.partition(".")
        code, modifier = _split_modifier(head, raw)
        param = self._lookup(rtype, code, raw)
        if not dot:
            return self._criterion(rtype, param, modifier, value, raw)
        # search.html#chaining
        if param.type != "reference":
            msg = f"'{raw}': cannot chain through {param.type} parameter '{code}'"
            raise InvalidSearch.at(msg, raw)
        if modifier is not None and not modifier[:1].isupper():
            msg = f"'{raw}': only a resource type modifier may precede a chain, not ':{modifier}'"
            raise InvalidSearch.at(msg, raw)
        if not rest or rest.startswith("_has:"):
            raise InvalidSearch.at(f"'{raw}': a chain must end in a search parameter", raw)
        target = self._chain_target(param, modifier, rest, raw)
        return ChainedCriterion(param, target, self._chain_or_plain(target, rest, value, raw))

    def _chain_target(self, param: ParamRef, type_mod: str | None, rest: str, raw: str) -> str:
        """The type a chain goes through: the ``:Type`` modifier or the only fitting target."""
        if type_mod is not None:
            _check_target(param, type_mod, raw)
            if type_mod not in SERVED_TYPES:
                raise InvalidSearch.at(f"'{raw}': resource type '{type_mod}' is not served", raw)
            return type_mod
        code = rest.partition(".")[0].partition(":")[0]
        fits = [t for t in param.targets if t in SERVED_TYPES and self.registry.ref(t, code)]
        if len(fits) == 1:
            return fits[0]
        if not fits:
            msg = f"Unknown search parameter '{code}' for the targets of '{param.name}' in '{raw}'"
            raise UnknownSearchParameter.at(msg, raw)
        msg = (
            f"'{raw}' is ambiguous: '{code}' exists on {', '.join(fits)}; add a type modifier,"
            f" e.g. '{param.name}:{fits[0]}.{rest}'"
        )
        raise InvalidSearch.at(msg, raw)

    def _criterion(
        self, rtype: str | None, param: ParamRef, modifier: str | None, value: str, raw: str
    ) -> Criterion | AnyOfCriterion:
        mod, type_filter = self._modifier(rtype, param, modifier, raw)
        if param.name in TEXT_PARAMS:
            return _words_criterion(param, value, raw)
        if mod == "missing":  # search.html#missing
            if value not in ("true", "false"):
                raise InvalidSearch.at(f"'{raw}' must be 'true' or 'false', not '{value}'", raw)
            return Criterion(param, modifier="missing", missing=value == "true")
        if not value:
            raise InvalidSearch.at(f"Parameter '{raw}' has an empty value", raw)
        ctx = _Ctx(raw, param, mod, type_filter, self.base_url)
        parse = _VALUE_PARSERS[param.type]
        values: list[SearchValue] = []
        for item in _split(value, ","):
            if not item:
                raise InvalidSearch.at(f"Parameter '{raw}' has an empty value in '{value}'", raw)
            values.append(parse(item, ctx))
        return Criterion(param, tuple(values), mod, type_filter=type_filter)

    def _modifier(
        self, rtype: str | None, param: ParamRef, modifier: str | None, raw: str
    ) -> tuple[Modifier | None, str | None]:
        """Check a modifier against the parameter's type (search.html#modifiers)."""
        if modifier is None:
            return None, None
        if param.type == "reference" and modifier[:1].isupper():
            _check_target(param, modifier, raw)
            return "type", modifier
        if modifier in _NOT_SUPPORTED.get(param.type, ()):
            raise _not_supported(f"'{raw}': modifier ':{modifier}' is not supported", raw)
        if modifier not in _FHIR_MODIFIERS:
            msg = f"Unknown modifier ':{modifier}' on search parameter '{param.name}'"
            raise UnknownSearchParameter.at(msg, raw)
        allowed = _ALLOWED_BY_NAME.get(param.name, _ALLOWED[param.type])
        if modifier not in allowed and param.name in TEXT_PARAMS:
            msg = f"'{raw}': '{param.name}' searches words and takes no modifier (search.html#text)"
            raise InvalidSearch.at(msg, raw)
        if modifier not in allowed:
            msg = f"'{raw}': modifier ':{modifier}' does not apply to {param.type} parameter"
            raise InvalidSearch.at(f"{msg} '{param.name}'", raw)
        if modifier == "of-type" and not self._is_identifier(rtype, param.name):
            msg = f"'{raw}': ':of-type' applies only to Identifier parameters"
            raise InvalidSearch.at(msg, raw)
        return cast(Modifier, modifier), None

    def _is_identifier(self, rtype: str | None, code: str) -> bool:
        d = self.registry.get(rtype, code) if rtype else None
        paths = d.expression.split("|") if d else []
        return any(p.strip().lower().endswith("identifier") for p in paths)

    # --------------------------------------------------------------------------------------------
    # Result parameters (search.html#return)
    # --------------------------------------------------------------------------------------------

    def sort(self, rtype: str | None, value: str) -> tuple[SortKey, ...]:
        """``_sort=a,-b`` (search.html#sort): ``-`` sorts descending."""
        keys = []
        for item in value.split(","):
            item = item.strip()
            code = item.removeprefix("-")
            ref = self._ref(rtype, code) if code else None
            if ref is None or ref.type in ("composite", "special") or code in TEXT_PARAMS:
                raise InvalidSearch.at(f"Cannot sort by '{item}' in _sort='{value}'", "_sort")
            keys.append(SortKey(ref, descending=item.startswith("-")))
        return tuple(keys)

    def include(self, name: str, value: str) -> Include:
        """``_include[:iterate]=Source:param[:Target]``, likewise ``_revinclude``
        (search.html#include); ``:recurse`` is the R3 spelling of ``:iterate``."""
        base, _, mod = name.partition(":")
        if mod not in ("", "iterate", "recurse"):
            raise InvalidSearch.at(f"Unknown modifier ':{mod}' on {base}", name)
        parts = value.split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidSearch.at(f"{name}='{value}': expected Source:param[:Target]", name)
        source, code = parts[0], parts[1]
        target = parts[2] if len(parts) == 3 else None
        if source not in SERVED_TYPES:
            raise InvalidSearch.at(f"{name}='{value}': type '{source}' is not served", name)
        ref = ParamRef("*", "reference") if code == "*" else self.registry.ref(source, code)
        if ref is None or ref.type != "reference":
            msg = f"{name}='{value}': '{code}' is not a reference parameter of {source}"
            raise InvalidSearch.at(msg, name)
        if target is not None and target not in (ref.targets or SERVED_TYPES):
            msg = f"{name}='{value}': '{target}' is not a target of {source}.{code}"
            raise InvalidSearch.at(msg, name)
        return Include(source, ref, target, iterate=bool(mod), reverse=base == "_revinclude")


def _words_criterion(param: ParamRef, value: str, raw: str) -> Criterion | AnyOfCriterion:
    """``_content``/``_text`` (search.html#content, #text): each comma-separated value is split
    into words as the index splits text (``hub.search.words``); a value matches when every one of
    its words starts an indexed word; the values are ORed. One word: a plain string criterion."""
    branches: list[tuple[str, ...]] = []
    for item in _split(value, ","):
        words = distinct_words([_unescape(item)], limit=MAX_QUERY_WORDS + 1)
        if not words:
            msg = f"Parameter '{raw}': '{item}' has no word of two or more letters or digits"
            raise InvalidSearch.at(msg, raw)
        if len(words) > MAX_QUERY_WORDS:
            msg = f"Parameter '{raw}': '{item}' has more than {MAX_QUERY_WORDS} words"
            raise InvalidSearch.at(msg, raw)
        branches.append(tuple(words))
    if all(len(words) == 1 for words in branches):
        return Criterion(param, tuple(StringValue(words[0]) for words in branches))
    return AnyOfCriterion(
        tuple(tuple(Criterion(param, (StringValue(w),)) for w in words) for words in branches)
    )


def _split_modifier(head: str, raw: str) -> tuple[str, str | None]:
    code, colon, modifier = head.partition(":")
    if colon and not modifier:
        raise InvalidSearch.at(f"'{raw}': empty modifier after ':'", raw)
    return code, modifier or None


def _check_target(param: ParamRef, type_mod: str, raw: str) -> None:
    if param.targets and type_mod not in param.targets:
        msg = f"'{raw}': '{type_mod}' is not a target of '{param.name}'"
        raise InvalidSearch.at(f"{msg} ({', '.join(param.targets)})", raw)


def _non_negative(name: str, value: str) -> int:
    if not _INT_RE.fullmatch(value):
        raise InvalidSearch.at(f"{name}='{value}' must be a non-negative integer", name)
    return int(value) if len(value) <= 18 else 10**18


def _choice(name: str, value: str, allowed: frozenset[str]) -> str:
    if value not in allowed:
        raise InvalidSearch.at(
            f"{name}='{value}' must be one of {', '.join(sorted(allowed))}", name
        )
    return value


def _elements(value: str) -> tuple[str, ...]:
    """``_elements=a,b`` (search.html#elements): base element names."""
    names = tuple(n.strip() for n in value.split(","))
    for n in names:
        if not _ELEMENT_RE.fullmatch(n):
            raise InvalidSearch.at(
                f"_elements='{value}': '{n}' is not an element name", "_elements"
            )
    return names


def _not_supported(message: str, name: str) -> HubError:
    return InvalidSearch(message, [Issue(message, code="not-supported", expression=(name,))])


# ------------------------------------------------------------------------------------------------
# Values: one parser per parameter type (search.html#ptypes)
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ctx:
    name: str  # the parameter as written, for error locations
    param: ParamRef
    modifier: Modifier | None
    type_filter: str | None
    base_url: str | None

    def invalid(self, message: str) -> HubError:
        return InvalidSearch.at(f"Parameter '{self.name}': {message}", self.name)


def _split(text: str, sep: str) -> list[str]:
    """Split at unescaped ``sep``, keeping escapes for the next level (search.html#escaping)."""
    parts, start, i = [], 0, 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == sep:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _unescape(text: str) -> str:
    return _UNESCAPE_RE.sub(r"\1", text)


def _prefixed(item: str, ctx: _Ctx) -> tuple[Prefix, str]:
    """Split off an ``eq``..``ap`` prefix (search.html#prefix); none means ``eq``."""
    head = item[:2]
    if head in _PREFIXES:
        prefix, rest = cast(Prefix, head), item[2:]
    elif item[:1].isalpha():
        raise ctx.invalid(f"'{item}' has an unknown prefix (expected one of eq, ne, gt, lt, ...)")
    else:
        prefix, rest = "eq", item
    if not rest:
        raise ctx.invalid(f"'{item}' has a prefix but no value")
    return prefix, rest


def _decimal(text: str, ctx: _Ctx) -> tuple[float, float, float]:
    """The number and its implicit range: half a unit of its last digit (search.html#number;
    ``1e2`` is one significant figure, [50, 150], as R5 corrects the R4 example)."""
    if not _NUMBER_RE.fullmatch(text):
        raise ctx.invalid(f"'{text}' is not a number")
    try:
        d = Decimal(text)
        half = Decimal(5).scaleb(cast(int, d.as_tuple().exponent) - 1)
        out = (float(d), float(d - half), float(d + half))
    except ArithmeticError:
        out = (math.inf, 0.0, 0.0)
    if not all(math.isfinite(x) for x in out):
        raise ctx.invalid(f"'{text}' is out of range")
    return out


def _token(item: str, ctx: _Ctx) -> TokenValue:
    """``[system]|[code]``, ``:text``, ``:of-type`` ``type-system|type-code|value``
    (search.html#token)."""
    if ctx.modifier == "text":
        return TokenValue(text=_unescape(item))
    parts = [_unescape(p) for p in _split(item, "|")]
    if ctx.modifier == "of-type":
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise ctx.invalid(f"'{item}' is not type-system|type-code|value")
        return TokenValue(code=parts[2], type_system=parts[0] or None, type_code=parts[1])
    if ctx.param.name == "_id" and (len(parts) != 1 or not _ID_RE.fullmatch(parts[0])):
        raise ctx.invalid(f"'{item}' is not a resource id")
    if len(parts) == 1:
        return TokenValue(code=parts[0])
    if len(parts) > 2 or not any(parts):
        raise ctx.invalid(f"'{item}' is not [system]|[code]")
    return TokenValue(system=parts[0] or None, code=parts[1] or None, bar=True)


def _string(item: str, ctx: _Ctx) -> StringValue:
    """search.html#string; matching rules (starts-with, folding) are the engine's."""
    return StringValue(_unescape(item))


def _date(item: str, ctx: _Ctx) -> DateValue:
    """``[prefix]date`` as the range its precision covers (search.html#date). A space stands for
    a ``+`` zone offset that the URL decoding turned into one."""
    prefix, text = _prefixed(_unescape(item), ctx)
    try:
        low, high = date_range(text.replace(" ", "+"))
    except (ValueError, OverflowError) as e:
        raise ctx.invalid(f"'{text}' is not a valid date ({e})") from None
    return DateValue(prefix, low, high)


def _number(item: str, ctx: _Ctx) -> NumberValue:
    """``[prefix]number`` (search.html#number)."""
    prefix, text = _prefixed(_unescape(item), ctx)
    return NumberValue(prefix, *_decimal(text, ctx))


def _quantity(item: str, ctx: _Ctx) -> QuantityValue:
    """``[prefix]number|system|code`` or ``number||unit`` (search.html#quantity)."""
    parts = [_unescape(p) for p in _split(item, "|")]
    if len(parts) not in (1, 3):
        raise ctx.invalid(f"'{item}' is not [prefix]number|system|code")
    prefix, text = _prefixed(parts[0], ctx)
    value, low, high = _decimal(text, ctx)
    system, code = (parts[1] or None, parts[2] or None) if len(parts) == 3 else (None, None)
    return QuantityValue(prefix, value, low, high, system, code)


def _reference(item: str, ctx: _Ctx) -> ReferenceValue:
    """``Type/id``, ``id``, an absolute URL (``url|version`` for canonicals), or with
    ``:identifier`` ``[system]|value`` (search.html#reference)."""
    parts = [_unescape(p) for p in _split(item, "|")]
    if ctx.modifier == "identifier":
        if len(parts) > 2 or not any(parts):
            raise ctx.invalid(f"'{item}' is not [system]|value")
        system = parts[0] if len(parts) == 2 else None
        return ReferenceValue(identifier_system=system or None, identifier_value=parts[-1] or None)
    if len(parts) > 2 or not all(parts):
        raise ctx.invalid(f"'{item}' is not a reference")
    text, version = parts[0], (parts[1] if len(parts) == 2 else None)
    base = (ctx.base_url or "").rstrip("/") + "/"
    local = base != "/" and text.startswith(base)
    if local:
        text = text[len(base) :]
    elif _SCHEME_RE.match(text):
        return ReferenceValue(url=text, version=version)
    if version is not None:
        raise ctx.invalid(f"'{item}': a |version applies only to canonical URLs")
    segs = text.split("/")
    if len(segs) == 1 and not local:
        rtype, rid, vid = ctx.type_filter, segs[0], None
        if rtype is None and len(ctx.param.targets) == 1:
            rtype = ctx.param.targets[0]
    elif len(segs) == 2 or (len(segs) == 4 and segs[2] == "_history"):
        rtype, rid, vid = segs[0], segs[1], (segs[3] if len(segs) == 4 else None)
        if not _TYPE_RE.fullmatch(rtype):
            raise ctx.invalid(f"'{item}': '{rtype}' is not a resource type")
        if ctx.param.targets and rtype not in ctx.param.targets:
            raise ctx.invalid(f"'{item}': '{rtype}' is not a target of '{ctx.param.name}'")
        if ctx.type_filter and rtype != ctx.type_filter:
            raise ctx.invalid(f"'{item}' does not match the modifier ':{ctx.type_filter}'")
    else:
        raise ctx.invalid(f"'{item}' is not Type/id, id or an absolute URL")
    for part in (rid, vid):
        if part is not None and not _ID_RE.fullmatch(part):
            raise ctx.invalid(f"'{item}': '{part}' is not a valid id")
    return ReferenceValue(target_type=rtype, target_id=rid, version=vid)


def _uri(item: str, ctx: _Ctx) -> UriValue:
    """search.html#uri; ``:below``/``:above`` stay on the criterion."""
    return UriValue(_unescape(item))


def _composite(item: str, ctx: _Ctx) -> CompositeValue:
    """``a$b``: each component parsed by its own type (search.html#composite)."""
    parts = _split(item, "$")
    types = ctx.param.components
    if len(parts) != len(types) or "composite" in types:
        raise ctx.invalid(f"'{item}' needs {len(types)} components separated by '$'")
    values = []
    for part, ptype in zip(parts, types, strict=True):
        if not part:
            raise ctx.invalid(f"'{item}' has an empty component")
        sub = replace(ctx, param=ParamRef(ctx.param.name, ptype), modifier=None, type_filter=None)
        values.append(_VALUE_PARSERS[ptype](part, sub))
    return CompositeValue(tuple(values))


def _special(item: str, ctx: _Ctx) -> SearchValue:
    raise _not_supported(f"Special parameter '{ctx.name}' is not supported", ctx.name)


_VALUE_PARSERS: dict[ParamType, Callable[[str, _Ctx], SearchValue]] = {
    "token": _token,
    "string": _string,
    "date": _date,
    "number": _number,
    "quantity": _quantity,
    "reference": _reference,
    "uri": _uri,
    "composite": _composite,
    "special": _special,
}
