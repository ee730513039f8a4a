"""Index extraction: the entries a resource contributes to the search index (FHIR R4 search.html).

Each SearchParameter's FHIRPath expression is compiled once per registry and resource type; the
values it finds are converted by the parameter's type, following the data-type tables of
search.html (#token, #string, #date, #number, #quantity, #reference, #uri, #composite). Values a
type cannot hold (a ``Quantity`` under a date parameter, ``SampledData``, ``Money``, contained
``#id`` references, malformed dates) are skipped, never raised. ``_id`` and ``_lastUpdated`` are
indexed by the engines from the resource row.

Composite parameters (search.html#composite) emit, per node of their base expression, the
cartesian product of their components' values, each combination under a fresh ``group``.

Full-text parameters (search.html#content, #text; ``TEXT_PARAMS`` of the registry) are indexed as
one ``StringEntry`` per distinct folded word (``hub.search.words``), so every engine answers them
with its ordinary string starts-with. ``_content`` reads the human-readable text of the resource:
every ``display``, ``text``, ``description``, ``title``, ``conclusion``, ``comment``, ``name``
(HumanName ``family``/``given``/``text`` too), ``alias``, ``summary`` and ``valueString``, the
narrative with its tags stripped, and the inline ``data`` of a ``text/*`` attachment (a plain text
report of a DiagnosticReport or DocumentReference; at most ``MAX_ATTACHMENT_BYTES`` read); not
codes, systems, identifiers, references, URLs, dates, ``meta``, extensions, contained resources or
other data. ``_text`` reads the narrative only. Caps: ``hub.search.words``.

``date_range``, ``number_range`` and ``split_reference`` are public: the query parser reads search
values with the same rules. Pure and fast: plain dicts in, frozen entries out; no pydantic here.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import functools
import html
import itertools
import math
import re
import weakref
from calendar import isleap, monthrange
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from hub.search.fhirpath import REFERENCE_TARGET, Expression, Item, compile_expression
from hub.search.model import (
    DateEntry,
    IndexEntry,
    NumberEntry,
    ParamType,
    QuantityEntry,
    ReferenceEntry,
    StringEntry,
    TokenEntry,
    UriEntry,
)
from hub.search.registry import (
    ROW_PARAMS,
    TEXT_PARAMS,
    SearchParameterDef,
    SearchParameterRegistry,
    default_registry,
)
from hub.search.words import MAX_TEXT_CHARS, distinct_words

__all__ = ["date_range", "extract_index_entries", "number_range", "split_reference"]

# -- lexical helpers shared with the query parser -------------------------------------------------

_DATE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})"
    r"(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?",
    re.ASCII,
)
_EPOCH = date(1970, 1, 1).toordinal()
_DAY_MS = 86_400_000
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?", re.ASCII)


def date_range(text: str) -> tuple[int, int]:
    """``[low, high]`` ms since the epoch UTC, both inclusive, covered by a FHIR date, dateTime or
    instant at its precision (search.html#date): ``2024`` is the whole year, ``10:00`` the whole
    minute, ``10:00:00.1`` a tenth of a second. No zone means UTC. ``ValueError`` otherwise."""
    m = _DATE.fullmatch(text)
    if m is None:
        raise ValueError(f"not a FHIR date, dateTime or instant: {text!r}")
    year_s, month_s, day_s, hour_s, minute_s, second_s, fraction, zone = m.groups()
    year = int(year_s)
    if year == 0:
        raise ValueError(f"year 0000 is not a FHIR date: {text!r}")
    if month_s is None:
        low = (date(year, 1, 1).toordinal() - _EPOCH) * _DAY_MS
        return low, low + (366 if isleap(year) else 365) * _DAY_MS - 1
    month = int(month_s)
    if day_s is None:
        if not 1 <= month <= 12:
            raise ValueError(f"month out of range: {text!r}")
        low = (date(year, month, 1).toordinal() - _EPOCH) * _DAY_MS
        return low, low + monthrange(year, month)[1] * _DAY_MS - 1
    day = date(year, month, int(day_s))  # ValueError if there is no such day
    low = (day.toordinal() - _EPOCH) * _DAY_MS
    if hour_s is None:
        return low, low + _DAY_MS - 1
    hour, minute, second = int(hour_s), int(minute_s), int(second_s or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"time out of range: {text!r}")
    if zone and zone != "Z":
        zone_h, zone_m = int(zone[1:3]), int(zone[4:6])
        if zone_h > 14 or zone_m > 59:
            raise ValueError(f"time zone out of range: {text!r}")
        low -= (1 if zone[0] == "+" else -1) * (zone_h * 60 + zone_m) * 60_000
    low += (hour * 3600 + minute * 60 + second) * 1000
    if second_s is None:
        return low, low + 59_999
    if fraction is None:
        return low, low + 999
    if len(fraction) >= 3:  # ms is the finest precision kept
        low += int(fraction[:3])
        return low, low
    step = 10 ** (3 - len(fraction))
    low += int(fraction) * step
    return low, low + step - 1


def number_range(text: str) -> tuple[float, float, float]:
    """``(value, low, high)``: the implicit range of a decimal's precision, half a unit of its last
    significant digit either side (search.html#number): ``100`` -> 99.5..100.5, ``1.50`` ->
    1.495..1.505, ``1e2`` -> 50..150. ``ValueError`` if ``text`` is not a decimal."""
    if _NUMBER.fullmatch(text) is None:
        raise ValueError(f"not a decimal: {text!r}")
    value = Decimal(text)
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int) or abs(exponent) > 400 or not math.isfinite(float(value)):
        raise ValueError(f"decimal out of range: {text!r}")
    half = Decimal(5).scaleb(exponent - 1)
    return float(value), float(value - half), float(value + half)


def split_reference(
    text: str,
) -> tuple[str | None, str | None, str | None, str | None] | None:
    """``(target_type, target_id, url, version)`` of a literal reference or canonical
    (references.html#literal, search.html#reference): ``Type/id[/_history/v]``; an absolute URL
    (kept in ``url``, minus any ``/_history/v``, with type and id too when it ends in
    ``Type/id``); a canonical ``url|version``; ``urn:uuid:``/``urn:oid:`` as ``url``. ``None`` for
    contained ``#id`` references and empty text."""
    if not text or text[0] == "#":
        return None
    if text.startswith("urn:"):
        return None, None, text, None
    base, _, canonical_version = text.partition("|")
    m = REFERENCE_TARGET.search(base)
    if "://" in base:
        if m is None:
            return None, None, base, canonical_version or None
        url = base[: m.end(2)] if m[3] else base
        return m[1], m[2], url, m[3] or canonical_version or None
    if m is not None and m.start() == 0:
        return m[1], m[2], None, m[3]
    return None, None, text, None


# -- converters: one JSON value (and its FHIR type if known) to entries, per parameter type ------

# Converters append raw entries, ``(entry class, *fields but group and component)``: cheap to
# de-duplicate; entries are built once at the end.
_Raw = tuple[Any, ...]
_Converter = Callable[[str, Any, "str | None", list[_Raw]], None]
# References to the same patient, endpoint or performer, and equal dates, recur across resources.
_cached_date_range = functools.lru_cache(maxsize=4096)(date_range)
_cached_split_reference = functools.lru_cache(maxsize=4096)(split_reference)


@functools.lru_cache(maxsize=8192)
def _entry(raw: _Raw) -> IndexEntry:
    """The entry ``raw`` describes; entries are immutable, so recurring ones (status codes,
    modalities, SOP classes, references to the same patient) are built once and shared."""
    entry: IndexEntry = raw[0](*raw[1:])
    return entry


_CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})
_NAME_ADDRESS_PARTS = (
    "family",
    "given",
    "prefix",
    "suffix",
    "line",
    "city",
    "district",
    "state",
    "postalCode",
    "country",
    "text",
)


def _str(x: Any) -> str | None:
    """``x`` if it is a string: malformed JSON degrades to missing values, never to a crash."""
    return x if type(x) is str else None


def _dicts(x: Any) -> list[dict[str, Any]]:
    return [d for d in x if type(d) is dict] if type(x) is list else []


def _token(param: str, v: Any, t: str | None, out: list[_Raw]) -> None:
    """search.html#token: Coding, CodeableConcept, Identifier, ContactPoint, code/id/string/uri,
    boolean."""
    kind = type(v)
    if kind is str:
        out.append((TokenEntry, param, None, v, None, None, None))
    elif kind is bool:
        out.append((TokenEntry, param, None, "true" if v else "false", None, None, None))
    elif kind is not dict:
        return
    elif t == "CodeableConcept" or "coding" in v:
        text = _str(v.get("text"))
        for c in _dicts(v.get("coding")):
            system, code, display = (
                _str(c.get("system")),
                _str(c.get("code")),
                _str(c.get("display")),
            )
            if system is not None or code is not None:
                out.append((TokenEntry, param, system, code, display or text, None, None))
            elif display is not None:
                out.append((TokenEntry, param, None, None, display, None, None))
        if text is not None:
            out.append((TokenEntry, param, None, None, text, None, None))
    elif t == "Identifier" or "type" in v or "assigner" in v:
        _identifier(param, v, out)
    elif t == "ContactPoint" or "rank" in v or _str(v.get("system")) in _CONTACT_SYSTEMS:
        value = _str(v.get("value"))  # token on ContactPoint matches its value
        if value is not None:
            out.append((TokenEntry, param, None, value, None, None, None))
    elif "value" in v:
        if type(v["value"]) is str:  # an Identifier with a system only is indexed above
            _identifier(param, v, out)
    else:  # Coding; or a display-only Coding or text-only CodeableConcept
        system, code, display = _str(v.get("system")), _str(v.get("code")), _str(v.get("display"))
        text = display or _str(v.get("text"))
        if system is not None or code is not None or text is not None:
            out.append((TokenEntry, param, system, code, text, None, None))


def _identifier(param: str, v: dict[str, Any], out: list[_Raw]) -> None:
    system, value, kind = _str(v.get("system")), _str(v.get("value")), v.get("type")
    if system is None and value is None:
        return
    text = _str(kind.get("text")) if type(kind) is dict else None
    codings = _dicts(kind.get("coding")) if type(kind) is dict else []
    if not codings:
        out.append((TokenEntry, param, system, value, text, None, None))
    for c in codings:
        type_system, type_code = _str(c.get("system")), _str(c.get("code"))
        out.append((TokenEntry, param, system, value, text, type_system, type_code))


def _string(param: str, v: Any, t: str | None, out: list[_Raw]) -> None:
    """search.html#string: string/markdown, and each part of a HumanName or Address."""
    if type(v) is str:
        out.append((StringEntry, param, v))
    elif type(v) is dict:
        for part in _NAME_ADDRESS_PARTS:
            found = v.get(part)
            if type(found) is str:
                out.append((StringEntry, param, found))
            elif type(found) is list:
                out.extend((StringEntry, param, x) for x in found if type(x) is str)


def _try_range(text: Any) -> tuple[int, int] | None:
    try:
        return _cached_date_range(text) if type(text) is str else None
    except ValueError:
        return None


def _period(param: str, v: dict[str, Any], out: list[_Raw]) -> None:
    start, end = v.get("start"), v.get("end")
    low_range, high_range = _try_range(start), _try_range(end)
    if (start is not None and low_range is None) or (end is not None and high_range is None):
        return  # malformed bound
    if low_range or high_range:
        low = low_range[0] if low_range else None
        out.append((DateEntry, param, low, high_range[1] if high_range else None))


def _date(param: str, v: Any, t: str | None, out: list[_Raw]) -> None:
    """search.html#date: date, dateTime, instant, Period (open ends as None) and Timing (each
    event, plus repeat.boundsPeriod)."""
    if type(v) is str:
        found = _try_range(v)
        if found is not None:
            out.append((DateEntry, param, *found))
    elif type(v) is not dict:
        return
    elif t == "Period" or (t is None and ("start" in v or "end" in v)):
        _period(param, v, out)
    elif t == "Timing" or (t is None and ("event" in v or "repeat" in v)):
        events = v.get("event")
        for event in events if type(events) is list else ():
            found = _try_range(event)
            if found is not None:
                out.append((DateEntry, param, *found))
        repeat = v.get("repeat")
        bounds = repeat.get("boundsPeriod") if type(repeat) is dict else None
        if type(bounds) is dict:
            _period(param, bounds, out)


def _numeric(v: Any) -> tuple[float, float, float] | None:
    """A JSON number's value and range; its precision is what the parsed float still shows."""
    if type(v) is int or type(v) is float:
        try:
            return number_range(repr(v))
        except ValueError:  # NaN or infinity from a lenient JSON parser
            return None
    return None


def _number(param: str, v: Any, t: str | None, out: list[_Raw]) -> None:
    """search.html#number: integer and decimal, with the implicit range of their precision."""
    found = _numeric(v)
    if found is not None:
        out.append((NumberEntry, param, *found))


def _quantity(param: str, v: Any, t: str | None, out: list[_Raw]) -> None:
    """search.html#quantity: Quantity and its profiles (Age, Duration...); not SampledData/Money."""
    if type(v) is not dict or t in ("SampledData", "Money", "Range", "Ratio"):
        return
    if "currency" in v:  # Money (SampledData has no ``value``)
        return
    found = _numeric(v.get("value"))
    if found is not None:
        system, code, unit = _str(v.get("system")), _str(v.get("code")), _str(v.get("unit"))
        out.append((QuantityEntry, param, *found, system, code, unit))


def _reference(param: str, v: Any, t: str | None, out: list[_Raw]) -> None:
    """search.html#reference: Reference (literal and ``identifier``), canonical and uri."""
    if type(v) is str:
        parts = _cached_split_reference(v)
        if parts is not None:
            out.append((ReferenceEntry, param, *parts, None, None))
        return
    if type(v) is not dict:
        return
    ref, ident = v.get("reference"), v.get("identifier")
    system = value = None
    if type(ident) is dict:
        system, value = _str(ident.get("system")), _str(ident.get("value"))
    parts = _cached_split_reference(ref) if type(ref) is str else None
    if parts is not None:
        out.append((ReferenceEntry, param, *parts, system, value))
    elif system is not None or value is not None:
        out.append((ReferenceEntry, param, None, None, None, None, system, value))


def _uri(param: str, v: Any, t: str | None, out: list[_Raw]) -> None:
    """search.html#uri: uri, url, canonical, oid, uuid."""
    if type(v) is str:
        out.append((UriEntry, param, v))


# -- full-text words (search.html#content, #text) --------------------------------------------------

MAX_ATTACHMENT_BYTES = 65_536  # read from the inline data of one text attachment
_TEXT_KEYS = frozenset(
    "display text description title conclusion comment name family given alias summary"
    " valueString".split()
)
_SKIPPED_KEYS = frozenset({"meta", "extension", "modifierExtension", "contained"})
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def _narrative(div: str) -> str:
    """The text of an XHTML narrative (narrative.html): tags dropped, entities decoded."""
    return html.unescape(_TAG.sub(" ", div[:MAX_TEXT_CHARS]))


def _attachment_text(node: dict[str, Any]) -> str | None:
    """The inline ``data`` of a ``text/*`` Attachment (or Binary) as text, its first
    ``MAX_ATTACHMENT_BYTES`` decoded with the ``charset`` it names (UTF-8 by default)."""
    content_type, data = node.get("contentType"), node.get("data")
    if type(content_type) is not str or type(data) is not str:
        return None
    media, *options = (part.strip().lower() for part in content_type.split(";"))
    if not media.startswith("text/"):
        return None
    chunk = _SPACE.sub("", data[: MAX_ATTACHMENT_BYTES // 3 * 4 + 4096])
    if len(chunk) > MAX_ATTACHMENT_BYTES // 3 * 4:  # cut at a 4-character group
        chunk = chunk[: MAX_ATTACHMENT_BYTES // 3 * 4]
    try:
        raw = base64.b64decode(chunk, validate=True)
    except (binascii.Error, ValueError):  # not base64: nothing to read
        return None
    charset = next((o[8:].strip('"') for o in options if o.startswith("charset=")), "utf-8")
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "utf-8"
    text = raw.decode(charset, errors="replace")
    return _narrative(text) if media in ("text/html", "text/xml") else text


def _content_texts(resource: Any) -> Iterator[str]:
    """The human-readable texts of a resource, in document order (depth first)."""
    stack: list[Any] = [resource]
    while stack:
        node = stack.pop()
        if type(node) is list:
            stack.extend(reversed(node))
            continue
        if type(node) is not dict:
            continue
        attachment = _attachment_text(node)
        if attachment is not None:
            yield attachment
        children: list[Any] = []
        for key, value in node.items():
            if key in _SKIPPED_KEYS:
                continue
            if key == "div" and type(value) is str:
                yield _narrative(value)
            elif key in _TEXT_KEYS and type(value) is str:
                yield value
            elif key in _TEXT_KEYS and type(value) is list:
                children.extend(x for x in value if type(x) is not str)
                yield from (x for x in value if type(x) is str)
            elif type(value) is dict or type(value) is list:
                children.append(value)
        stack.extend(reversed(children))


def content_words(resource: Any) -> list[str]:
    """The words ``_content`` indexes for a resource (search.html#content)."""
    return distinct_words(_content_texts(resource))


def narrative_words(div: Any) -> list[str]:
    """The words ``_text`` indexes for a narrative's ``div`` (search.html#text)."""
    return distinct_words([_narrative(div)]) if type(div) is str else []


_WORD_SOURCES: dict[str, Callable[[Any], list[str]]] = {
    "_content": content_words,
    "_text": narrative_words,
}
assert set(_WORD_SOURCES) == TEXT_PARAMS

_CONVERTERS: dict[ParamType, _Converter] = {
    "token": _token,
    "string": _string,
    "date": _date,
    "number": _number,
    "quantity": _quantity,
    "reference": _reference,
    "uri": _uri,
}

# -- compiled parameters --------------------------------------------------------------------------

# The official R4 ``relationship`` composite of DocumentReference declares its component
# expressions crosswise (``relatesto``, a reference, reads ``code``; ``relation``, a token, reads
# ``target``). Component order and types are kept; each component reads the element of its type.
_COMPONENT_FIXES: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = {
    ("http://hl7.org/fhir/SearchParameter/DocumentReference-relationship", ("code", "target")): (
        "target",
        "code",
    ),
}


_Plain = tuple[str, Callable[[list[Item]], list[Item]], _Converter]


@dataclass(frozen=True, slots=True)
class _Composite:
    code: str
    expression: Expression
    components: tuple[tuple[_Converter, Expression], ...]


@dataclass(frozen=True, slots=True)
class _Words:
    """A full-text parameter: its expression finds the node whose words ``words`` lists."""

    code: str
    expression: Callable[[list[Item]], list[Item]]
    words: Callable[[Any], list[str]]


_Plan = tuple[tuple[_Plain, ...], tuple[_Composite, ...], tuple[_Words, ...]]
_PLANS: weakref.WeakKeyDictionary[SearchParameterRegistry, dict[str, _Plan]] = (
    weakref.WeakKeyDictionary()
)


def _compile(d: SearchParameterDef, resource_type: str) -> _Plain | _Composite | _Words | None:
    try:
        expression = compile_expression(d.expression, resource_type)
        if d.code in TEXT_PARAMS:
            return _Words(d.code, expression.run, _WORD_SOURCES[d.code])
        if d.type != "composite":
            convert = _CONVERTERS.get(d.type)
            return None if convert is None else (d.code, expression.run, convert)
        sources = tuple(c.expression for c in d.components)
        sources = _COMPONENT_FIXES.get((d.url, sources), sources)
        components = []
        for component, source in zip(d.components, sources, strict=True):
            convert = _CONVERTERS.get(component.type)
            if convert is None:
                return None
            components.append((convert, compile_expression(source)))
        return _Composite(d.code, expression, tuple(components))
    except ValueError as exc:
        raise ValueError(f"SearchParameter {d.url} ({d.code}) cannot be indexed: {exc}") from exc


def _plan(registry: SearchParameterRegistry, resource_type: str) -> _Plan:
    """The type's parameters, compiled once per registry and type."""
    by_type = _PLANS.get(registry)
    if by_type is None:
        by_type = _PLANS.setdefault(registry, {})
    plan = by_type.get(resource_type)
    if plan is None:
        defs = [d for d in registry.for_type(resource_type) if d.code not in ROW_PARAMS]
        if not defs:
            return (), (), ()  # not a served type: nothing to cache
        compiled = [_compile(d, resource_type) for d in defs]
        plain = tuple(c for c in compiled if isinstance(c, tuple))
        composites = tuple(c for c in compiled if isinstance(c, _Composite))
        words = tuple(c for c in compiled if isinstance(c, _Words))
        plan = by_type[resource_type] = (plain, composites, words)
    return plan


def _composite(p: _Composite, resource: dict[str, Any], out: list[IndexEntry], group: int) -> int:
    """search.html#composite: per node, the cartesian product of its components' values, each
    combination tied by a fresh ``group``. Text-only tokens are left out (no ``:text`` there)."""
    seen: set[tuple[_Raw, ...]] = set()
    for node, node_type in p.expression(resource):
        per_component: list[list[_Raw]] = []
        for convert, expression in p.components:
            values: list[_Raw] = []
            for v, t in expression(node, node_type):
                convert(p.code, v, t, values)
            values = [e for e in values if not (e[0] is TokenEntry and e[3] is None)]
            if not values:
                break
            per_component.append(list(dict.fromkeys(values)))
        else:
            for combination in itertools.product(*per_component):
                if combination not in seen:
                    seen.add(combination)
                    group += 1
                    out.extend(e[0](*e[1:], group, i) for i, e in enumerate(combination))
    return group


def extract_index_entries(
    resource: dict[str, Any], registry: SearchParameterRegistry | None = None
) -> list[IndexEntry]:
    """Every index entry of ``resource`` for the parameters of its type (FHIR R4 search.html),
    ``_tag``/``_security``/``_profile``/``_source`` included, without duplicates, in a stable
    order. ``ValueError`` if a parameter's expression is outside the supported FHIRPath subset."""
    resource_type = resource.get("resourceType")
    if type(resource_type) is not str:
        return []
    plain, composites, texts = _plan(registry or default_registry(), resource_type)
    raw: list[_Raw] = []
    context: list[Item] = [(resource, None)]
    for code, run, convert in plain:
        for v, t in run(context):
            convert(code, v, t, raw)
    entries: list[IndexEntry] = [_entry(e) for e in dict.fromkeys(raw)]
    for text in texts:  # many words, rarely shared: built directly, not through the cache
        found = text.expression(context)
        if found:
            entries.extend(StringEntry(text.code, w) for w in text.words(found[0][0]))
    group = 0
    for p in composites:
        group = _composite(p, resource, entries, group)
    return entries
