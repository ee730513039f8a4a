"""The typed vocabulary of FHIR search shared by the core and every engine.

Two halves (FHIR R4 search.html):

* **Index entries** -- what a resource contributes to the search index, one entry per value found by
  a SearchParameter's expression. Extraction (``hub.search.extract``) is pure; engines only store
  entries and compare against them.
* **Queries** -- a parsed search (``hub.search.query``): criteria ANDed together, each criterion's
  values ORed, plus the result parameters (``_sort``, ``_count``, ``_include``...).

Dates are kept as ranges of integer milliseconds since the Unix epoch, UTC, ``[low, high]`` both
inclusive: a value's precision defines its range (``2024-03`` is the whole of March; R4
search.html#date). Times without a zone are taken as UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ParamType = Literal[
    "number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special"
]
Prefix = Literal["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]

# --------------------------------------------------------------------------------------------
# Index entries. ``group`` ties together the components of one composite value: components of a
# composite parameter ``P`` are stored under the parameter name ``P`` with the component's own
# type and the same ``group`` number; entries of plain parameters have ``group = 0``.
# ``component`` is the 0-based index of the component within the composite (0 for plain ones).
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """Coding/Identifier/code/boolean/ContactPoint; ``text`` is display/CodeableConcept.text."""

    param: str
    system: str | None
    code: str | None
    text: str | None = None
    type_system: str | None = None  # Identifier.type coding, for :of-type
    type_code: str | None = None
    group: int = 0
    component: int = 0


@dataclass(frozen=True, slots=True)
class StringEntry:
    """``value`` as found; engines normalise (case and accent folding) for default matching."""

    param: str
    value: str
    group: int = 0
    component: int = 0


@dataclass(frozen=True, slots=True)
class DateEntry:
    param: str
    low: int | None  # ms since epoch UTC; None = open-ended (Period without start)
    high: int | None
    group: int = 0
    component: int = 0


@dataclass(frozen=True, slots=True)
class NumberEntry:
    """``low``/``high``: the implicit range of the stored value's precision (search.html#number)."""

    param: str
    value: float
    low: float
    high: float
    group: int = 0
    component: int = 0


@dataclass(frozen=True, slots=True)
class QuantityEntry:
    param: str
    value: float
    low: float
    high: float
    system: str | None
    code: str | None
    unit: str | None
    group: int = 0
    component: int = 0


@dataclass(frozen=True, slots=True)
class ReferenceEntry:
    """A literal reference: local ``Type/id`` (``target_type``/``target_id``) or absolute ``url``.

    ``identifier_system``/``identifier_value`` carry ``Reference.identifier`` for
    the ``:identifier`` modifier.
    """

    param: str
    target_type: str | None
    target_id: str | None
    url: str | None = None
    version: str | None = None
    identifier_system: str | None = None
    identifier_value: str | None = None
    group: int = 0
    component: int = 0


@dataclass(frozen=True, slots=True)
class UriEntry:
    param: str
    value: str
    group: int = 0
    component: int = 0


IndexEntry = (
    TokenEntry | StringEntry | DateEntry | NumberEntry | QuantityEntry | ReferenceEntry | UriEntry
)

# --------------------------------------------------------------------------------------------
# Query values
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenValue:
    """``[system]|[code]``: ``system=None`` and ``bar=False`` means any system (search.html#token).

    ``bar=True, system=None``  -> ``|code``: only codes without a system.
    ``code=None``              -> ``system|``: any code in the system.
    With ``:of-type``, ``type_system``/``type_code`` hold the identifier type and ``code`` the
    value.
    With ``:text``, ``text`` holds the search text and the other fields are unused.
    """

    system: str | None = None
    code: str | None = None
    bar: bool = False
    type_system: str | None = None
    type_code: str | None = None
    text: str | None = None


@dataclass(frozen=True, slots=True)
class StringValue:
    value: str


@dataclass(frozen=True, slots=True)
class DateValue:
    """The searched value's own range by its precision, ms since epoch UTC, inclusive."""

    prefix: Prefix
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class NumberValue:
    prefix: Prefix
    value: float
    low: float  # implicit range from the given precision, e.g. 100 -> [99.5, 100.5)
    high: float


@dataclass(frozen=True, slots=True)
class QuantityValue:
    prefix: Prefix
    value: float
    low: float
    high: float
    system: str | None = None
    code: str | None = None  # matched against code, or against unit when system is None


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    """``Type/id``, ``id`` (type from the parameter's single target, else any), or an absolute URL.

    With ``:identifier``: ``identifier_system``/``identifier_value`` set and nothing else.
    """

    target_type: str | None = None
    target_id: str | None = None
    url: str | None = None
    version: str | None = None
    identifier_system: str | None = None
    identifier_value: str | None = None


@dataclass(frozen=True, slots=True)
class UriValue:
    value: str


@dataclass(frozen=True, slots=True)
class CompositeValue:
    """One value per component, in the parameter's component order (``a$b``)."""

    components: tuple[SearchValue, ...]


SearchValue = (
    TokenValue
    | StringValue
    | DateValue
    | NumberValue
    | QuantityValue
    | ReferenceValue
    | UriValue
    | CompositeValue
)

Modifier = Literal[
    "exact",
    "contains",
    "missing",
    "not",
    "text",
    "identifier",
    "of-type",
    "below",
    "above",
    "in",
    "not-in",
    "type",
]

# --------------------------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParamRef:
    """The resolved SearchParameter a criterion uses (see ``hub.search.registry``)."""

    name: str
    type: ParamType
    targets: tuple[str, ...] = ()
    components: tuple[ParamType, ...] = ()  # composite: the components' types, in order


@dataclass(frozen=True, slots=True)
class Criterion:
    """One parameter occurrence: its values are ORed (``a=x,y``); criteria are ANDed.

    ``missing`` is set for ``:missing=true|false`` (then ``values`` is empty).
    ``type_filter`` is the ``:Type`` modifier of a reference (``subject:Patient=...``).
    Special parameters ``_id`` (token) and ``_lastUpdated`` (date) use the names ``_id`` and
    ``_lastUpdated`` and are answered from the resource row rather than the index tables.
    """

    param: ParamRef
    values: tuple[SearchValue, ...] = ()
    modifier: Modifier | None = None
    missing: bool | None = None
    type_filter: str | None = None


@dataclass(frozen=True, slots=True)
class ChainedCriterion:
    """``param[:Type].chained...=value`` (search.html#chaining): a reference ``param`` whose target,
    of ``target_type``, satisfies ``inner`` (itself possibly chained)."""

    param: ParamRef
    target_type: str
    inner: Criterion | ChainedCriterion | AnyOfCriterion


@dataclass(frozen=True, slots=True)
class HasCriterion:
    """``_has:Type:ref:inner=value`` (search.html#has): some resource of ``source_type`` refers to
    the candidate through ``reference_param`` and satisfies ``inner`` (itself possibly a
    ``_has``)."""

    source_type: str
    reference_param: ParamRef
    inner: Criterion | ChainedCriterion | HasCriterion | AnyOfCriterion


@dataclass(frozen=True, slots=True)
class AnyOfCriterion:
    """True when every criterion of at least one branch is: an OR of ANDs. Search URLs spell it
    only through ``_content``/``_text`` values of several words (``_content=right lobe,nodule``:
    search.html#content; otherwise search.html#combining ORs only the values of one parameter);
    the access policy composes it, e.g. a patient compartment (``subject=Patient/1`` OR
    ``author=Patient/1``, compartmentdefinition-patient.html) or the restrictions of SMART v2 scopes
    (scopes-and-launch-context.html). No branches matches nothing; an empty branch matches all."""

    branches: tuple[tuple[AnyCriterion, ...], ...]


AnyCriterion = Criterion | ChainedCriterion | HasCriterion | AnyOfCriterion


@dataclass(frozen=True, slots=True)
class SortKey:
    param: ParamRef  # `_id` and `_lastUpdated` allowed, as in Criterion
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Include:
    """``_include=Source:param[:Target]`` or ``_revinclude=...``; ``param.name == '*'`` for all."""

    source_type: str
    param: ParamRef
    target_type: str | None = None
    iterate: bool = False
    reverse: bool = False


TotalMode = Literal["none", "estimate", "accurate"]
SummaryMode = Literal["true", "false", "count", "text", "data"]


@dataclass(frozen=True)
class SearchQuery:
    """A parsed search. ``resource_type=None`` is a system-level search (all served types)."""

    resource_type: str | None
    criteria: tuple[AnyCriterion, ...] = ()
    sort: tuple[SortKey, ...] = ()
    count: int = 50
    offset: int = 0
    total: TotalMode = "accurate"
    summary: SummaryMode | None = None
    elements: tuple[str, ...] = ()
    includes: tuple[Include, ...] = ()
    # parameters ignored under Prefer: handling=lenient, reported back in the Bundle
    ignored: tuple[str, ...] = field(default=())
    # What ``_include``/``_revinclude`` may bring, set by the access policy: ``None`` anything;
    # else the types allowed, each with the criterion its resources must meet (``None``: all).
    # Applied at every ``:iterate`` round, so a hidden resource never leads to others.
    include_access: tuple[tuple[str, AnyCriterion | None], ...] | None = None


Key = tuple[str, str]  # (resource_type, id)


@dataclass(frozen=True)
class SearchResult:
    """Matches in order (one page), the included resources, and the total when asked for."""

    matches: list[Key]
    included: list[Key]
    total: int | None
