"""Test data for the CapabilityStatement truth test (tests/conformance/test_capability_truth.py).

For one search parameter that ``/fhir/metadata`` advertises, :class:`Generator` builds a resource
that must match, one that must not, and the search value that tells them apart. Nothing here is
written per parameter: the values come from the parameter's FHIRPath expression (each branch
the models can follow) and from the FHIR type of the element at that path, which the
``fhir.resources.R4B`` pydantic models tell (field aliases, ``Optional``/``List`` annotations,
``abc.<Type>Type`` classes, ``Annotated[..., DateTime()]`` primitives, choice elements such as
``valueQuantity`` marked ``one_of_many``). Minimal valid base resources are built the same way:
every required element filled, references pointing at resources the caller creates first.

The two resources differ only at the parameter's path, so the search has to look at that very
element: a parameter that is ignored finds both, one that indexes the wrong element finds none.
"""

from __future__ import annotations

import functools
import itertools
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from hub.search.registry import SERVED_TYPES, SearchParameterDef

SYSTEM = "urn:pixelhub:truth"
UCUM = "http://unitsofmeasure.org"
EXTERNAL_BASE = "http://fhir.partner.example.org/r4"
ROLES = ("base", "match", "other")

# Preference among an element's possible FHIR types (choice elements), per parameter type.
_PREFERRED: dict[str, tuple[str, ...]] = {
    "token": (
        "CodeableConcept",
        "Coding",
        "Identifier",
        "ContactPoint",
        "boolean",
        "code",
        "id",
        "string",
        "uri",
    ),
    "string": ("string", "markdown", "HumanName", "Address"),
    "date": ("dateTime", "date", "instant", "Period", "Timing"),
    "quantity": ("Quantity", "Age", "Duration", "Distance", "Count", "SimpleQuantity"),
    "reference": ("Reference", "canonical", "uri"),
    "uri": ("uri", "url", "canonical", "oid", "uuid"),
}
_QUANTITIES = frozenset(_PREFERRED["quantity"])
_DATES = {  # role -> (date, dateTime, period start, period end)
    "base": ("2001-01-01", "2001-01-01T08:00:00Z", "2001-01-01T08:00:00Z", "2001-01-01T09:00:00Z"),
    "match": (
        "2021-03-04",
        "2021-03-04T10:11:12Z",
        "2021-03-04T10:00:00Z",
        "2021-03-04T11:00:00Z",
    ),
    "other": (
        "2019-11-12",
        "2019-11-12T10:11:12Z",
        "2019-11-12T10:00:00Z",
        "2019-11-12T11:00:00Z",
    ),
}
_NUMBERS = {"base": 1.0, "match": 5.4, "other": 7.5}
# Codes whose value set is a grammar (BCP 13 media types, BCP 47 languages) rather than a list.
_CODE_FORMATS = {"contentType": "text/plain", "language": "en"}
_TEXT_ONLY = re.compile(r"[^A-Za-z0-9]")

Targets = Callable[[str, str], str]
"""``targets(resource_type, role)`` -> a reference string (``Patient/123``) to an existing
resource of a served type; the caller creates it on first use. ``role`` is ``base``, ``match`` or
``other``: the three are different resources."""


# --------------------------------------------------------------------------- the model side


@dataclass(frozen=True)
class Element:
    """One JSON key of a model: its FHIR type and, for complex types, the model class."""

    key: str
    fhir_type: str
    is_list: bool
    model: type[BaseModel] | None
    info: FieldInfo

    @property
    def extra(self) -> dict[str, Any]:
        extra = self.info.json_schema_extra
        return extra if isinstance(extra, dict) else {}

    @property
    def enum(self) -> list[str]:
        values = self.extra.get("enum_values")
        return [str(v) for v in values] if isinstance(values, list) else []

    @property
    def reference_types(self) -> list[str]:
        values = self.extra.get("enum_reference_types")
        return [str(v) for v in values] if isinstance(values, list) else []

    @property
    def required(self) -> bool:
        return self.info.is_required() or bool(self.extra.get("element_required"))


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """The single type inside ``Optional``/``Union[X, None]``/``List``; whether it was a list."""
    is_list = False
    while True:
        origin = typing.get_origin(annotation)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin is list:
            is_list, annotation = True, args[0]
        elif origin in (typing.Union, types.UnionType):
            if len(args) != 1:
                return annotation, is_list
            annotation = args[0]
        else:
            return annotation, is_list


def _describe(annotation: Any) -> tuple[str, type[BaseModel] | None, bool]:
    inner, is_list = _unwrap(annotation)
    if typing.get_origin(inner) is typing.Annotated:
        marker = typing.get_args(inner)[1]
        name = type(marker).__name__
        return name[:1].lower() + name[1:], None, is_list
    if inner is bool:
        return "boolean", None, is_list
    if isinstance(inner, type) and hasattr(inner, "get_model_klass"):
        model = inner.get_model_klass()
        return model.__name__, model, is_list
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        return inner.__name__, inner, is_list
    return str(inner), None, is_list


@functools.cache
def elements(model: type[BaseModel]) -> dict[str, Element]:
    """JSON key -> Element, for the FHIR elements of ``model`` (no ``_x`` extension keys)."""
    out: dict[str, Element] = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        extra = info.json_schema_extra
        if key.startswith("_") or not (isinstance(extra, dict) and extra.get("element_property")):
            continue
        fhir_type, child, is_list = _describe(info.annotation)
        out[key] = Element(key, fhir_type, is_list, child, info)
    return out


def model_of(resource_type: str) -> type[BaseModel]:
    model: type[BaseModel] = get_fhir_model_class(resource_type)
    return model


def candidates(model: type[BaseModel], name: str, as_type: str | None) -> list[Element]:
    """The elements a path step ``name`` (``as as_type``) can land on: the element itself, or the
    ``name<Type>`` keys of a choice element (FHIR R4 formats.html#choice)."""
    fields = elements(model)
    if name in fields:
        found = [fields[name]]
    else:
        found = [e for e in fields.values() if e.extra.get("one_of_many") == name]
    if as_type is not None:
        wanted = as_type[:1].upper() + as_type[1:]
        found = [
            e
            for e in found
            if e.key == name + wanted or (e.key == name and e.fhir_type.lower() == as_type.lower())
        ]
    return found


# --------------------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Step:
    """One element along a search parameter's path, with what the expression says about it."""

    name: str
    as_type: str | None = None  # ``as X`` / ``.as(X)`` / ``ofType(X)``
    resolve_is: str | None = None  # ``.where(resolve() is X)``
    fixed: tuple[tuple[str, str], ...] = ()  # ``.where(system='phone')``
    exists: bool = False  # the expression tests the element's presence (``.exists() and ...``)


_WHERE_RESOLVE = re.compile(r"^where\(resolve\(\) is (\w+)\)$")
_WHERE_EQUALS = re.compile(r"^where\((\w+) ?= ?'([^']*)'\)$")
_AS_CALL = re.compile(r"^(?:as|ofType)\((?:FHIR\.)?(\w+)\)$")
_AS_OPERATOR = re.compile(r"^\((.+) as (\w+)\)(.*)$")


def _split_top(text: str, separator: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == separator and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    parts.append(current.strip())
    return parts


def parse_branch(branch: str, *, relative: bool = False) -> list[Step]:
    """``Type.a.where(...).b`` or ``(Type.a as X).b`` -> steps; a boolean tail
    (``.exists() and ...``) is cut off: what it tests is the path before it."""
    exists = ".exists()" in branch
    branch = re.split(r"\.exists\(\)| and | or |!=", branch)[0].strip()
    as_type: str | None = None
    rest = ""
    m = _AS_OPERATOR.match(branch)
    if m:
        branch, as_type, rest = m[1].strip(), m[2], m[3]
    parts = _split_top(branch, ".")
    if not relative:
        parts = parts[1:]  # the resource type (or ``Resource``)
    steps: list[Step] = []
    for part in parts:
        if (found := _WHERE_RESOLVE.match(part)) and steps:
            steps[-1] = Step(steps[-1].name, steps[-1].as_type, found[1], steps[-1].fixed)
        elif (found := _WHERE_EQUALS.match(part)) and steps:
            last = steps[-1]
            fixed = (*last.fixed, (found[1], found[2]))
            steps[-1] = Step(last.name, last.as_type, last.resolve_is, fixed)
        elif (found := _AS_CALL.match(part)) and steps:
            steps[-1] = Step(steps[-1].name, found[1], steps[-1].resolve_is, steps[-1].fixed)
        elif re.fullmatch(r"\w+", part):
            steps.append(Step(part))
        else:
            raise ValueError(f"cannot follow {part!r} in {branch!r}")
    if as_type is not None:
        last = steps[-1]
        steps[-1] = Step(last.name, as_type, last.resolve_is, last.fixed)
    for name in rest.strip(".").split(".") if rest else ():
        steps.append(Step(name))
    if exists:
        last = steps[-1]
        steps[-1] = Step(last.name, last.as_type, last.resolve_is, last.fixed, exists=True)
    return steps


def branches(expression: str) -> list[str]:
    """The top-level ``|`` branches of an expression, as written."""
    return _split_top(expression, "|")


def _branches(expression: str, relative: bool = False) -> list[tuple[str, list[Step] | None]]:
    """``(branch text, steps)`` per branch; steps ``None`` when the branch cannot be followed."""
    out: list[tuple[str, list[Step] | None]] = []
    for branch in branches(expression):
        try:
            out.append((branch, parse_branch(branch, relative=relative)))
        except ValueError:
            out.append((branch, None))
    return out


# --------------------------------------------------------------------------- the cases


@dataclass
class Case:
    """Two resources and the search that must find exactly the first.

    ``value`` is the search value; it is a callable of ``(stored match, stored other)`` for the
    parameters whose value the server assigns (``_id``, ``_lastUpdated``).
    """

    resource_type: str
    param: str
    param_type: str
    match: dict[str, Any]
    other: dict[str, Any]
    value: str | Callable[[Mapping[str, Any], Mapping[str, Any]], str]
    path: str = ""
    branch: str = ""  # the branch of the expression this case follows


@dataclass(frozen=True)
class Leaf:
    """The value to put at the end of the path, per role, and how to search for ``match``."""

    values: Mapping[str, Any]  # role -> JSON value
    search: str


def _phonetic(element: Element) -> Leaf:
    """``phonetic`` parameters (individual-phonetic, Organization-phonetic) promise "some kind of
    phonetic matching": the match is spelt differently from the search value but sounds alike."""
    names = {"base": "Okafor", "match": "Smith", "other": "Jones"}
    if element.fhir_type == "HumanName":
        return Leaf({r: {"family": n, "given": ["Kate"]} for r, n in names.items()}, "Smyth")
    if element.fhir_type == "string":
        return Leaf({r: f"{n} Imaging" for r, n in names.items()}, "Smyth")
    raise Unsupported(f"phonetic search on {element.fhir_type}")


class Unsupported(Exception):
    """No branch of the expression leads to an element this generator can fill."""


class Generator:
    """Builds base resources and truth cases; ``targets`` supplies existing references."""

    def __init__(self, targets: Targets) -> None:
        self.targets = targets
        self._serial = itertools.count(1)

    # ------------------------------------------------------------------ base resources

    def base(self, resource_type: str) -> dict[str, Any]:
        """A minimal valid ``resource_type``: every required element, nothing else."""
        model = model_of(resource_type)
        body = self.minimal_object(model, "base", filler=False)
        if "identifier" in elements(model):  # org-1 and the like want a name or an identifier
            body["identifier"] = [{"system": SYSTEM, "value": "base"}]
        return {"resourceType": resource_type, **body}

    def minimal_object(
        self, model: type[BaseModel], role: str, *, filler: bool = True
    ) -> dict[str, Any]:
        """Required elements of ``model``; with ``filler``, one simple element when nothing is
        required (an element needs a value or a child, ele-1)."""
        out: dict[str, Any] = {}
        choice_groups: set[str] = set()
        for key, element in elements(model).items():
            group = element.extra.get("one_of_many")
            if group and element.extra.get("one_of_many_required") and group not in choice_groups:
                choice_groups.add(group)
                out[key] = self.minimal_value(element, role)
            elif element.required and not group:
                value = self.minimal_value(element, role)
                out[key] = [value] if element.is_list else value
        if not out and filler:
            for element in elements(model).values():
                if element.model is None and element.fhir_type in ("string", "code", "boolean"):
                    out[element.key] = self.minimal_value(element, role)
                    break
        return out

    def minimal_value(self, element: Element, role: str) -> Any:
        if element.fhir_type == "Reference":
            return {"reference": self.reference_to(self._target_type(element, None, ()), role)}
        if element.enum:
            return element.enum[0]
        if element.key in _CODE_FORMATS:
            return _CODE_FORMATS[element.key]
        return self.value_of(element.fhir_type, element.model, role, tag="base")

    def value_of(
        self, fhir_type: str, model: type[BaseModel] | None, role: str, *, tag: str
    ) -> Any:
        """A valid value of ``fhir_type`` that says ``tag`` wherever free text or codes go."""
        d, dt, start, end = _DATES[role]
        simple: dict[str, Any] = {
            "string": tag,
            "markdown": tag,
            "code": tag,
            "id": tag,
            "uri": f"http://example.org/{tag}",
            "url": f"http://example.org/{tag}",
            "canonical": f"http://example.org/fhir/StructureDefinition/{tag}",
            "oid": "urn:oid:1.2.3",
            "uuid": "urn:uuid:6f1c7e3e-0000-4000-8000-000000000001",
            "boolean": True,
            "date": d,
            "dateTime": dt,
            "instant": dt,
            "time": "10:11:12",
            "integer": 1,
            "unsignedInt": 1,
            "positiveInt": 1,
            "decimal": 1,
            "base64Binary": "eA==",
        }
        if fhir_type in simple:
            return simple[fhir_type]
        if fhir_type == "Coding":
            return {"system": SYSTEM, "code": tag}
        if fhir_type == "CodeableConcept":
            return {"coding": [{"system": SYSTEM, "code": tag}]}
        if fhir_type == "Identifier":
            return {"system": SYSTEM, "value": tag}
        if fhir_type == "ContactPoint":
            return {"system": "phone", "value": tag}
        if fhir_type == "HumanName":
            return {"family": tag}
        if fhir_type == "Address":
            return {"city": tag}
        if fhir_type == "Period":
            return {"start": start, "end": end}
        if fhir_type == "Timing":
            return {"event": [dt]}
        if fhir_type == "Attachment":
            return {"contentType": "text/plain", "url": f"http://example.org/{tag}.txt"}
        if fhir_type in _QUANTITIES:
            return {"value": _NUMBERS[role], "unit": "mg", "system": UCUM, "code": "mg"}
        if model is not None:
            return self.minimal_object(model, role)
        raise Unsupported(f"no value for FHIR type {fhir_type}")

    # ------------------------------------------------------------------ references

    def _target_type(
        self, element: Element, resolve_is: str | None, targets: tuple[str, ...]
    ) -> str:
        if resolve_is:
            return resolve_is
        allowed = [t for t in element.reference_types if t != "Resource"]
        if targets:
            allowed = [t for t in targets if not allowed or t in allowed]
        served = [t for t in allowed if t in SERVED_TYPES]
        for preferred in ("Patient", *served):
            if preferred in served or (not allowed and preferred == "Patient"):
                return preferred
        return allowed[0] if allowed else "Patient"

    def reference_to(self, resource_type: str, role: str) -> str:
        """A served type: an existing resource. Another type: an absolute URL on a partner's
        server (PixelHub keeps and searches those, it does not resolve them)."""
        if resource_type in SERVED_TYPES:
            return self.targets(resource_type, role)
        return f"{EXTERNAL_BASE}/{resource_type}/{role}{next(self._serial)}"

    # ------------------------------------------------------------------ leaves

    def leaf(
        self, param_type: str, element: Element, step: Step, targets: tuple[str, ...], u: str
    ) -> Leaf:
        """Values for match/other (and a base) at ``element``, and the search value."""
        t = element.fhir_type
        tags = {role: f"{u}{role[0]}" for role in ROLES}
        if param_type == "reference":
            if t in ("canonical", "uri", "url"):
                kind = next((x for x in targets if x not in ("Resource",)), "PlanDefinition")
                urls = {r: f"{EXTERNAL_BASE}/{kind}/{tags[r]}" for r in ROLES}
                return Leaf(urls, urls["match"])
            if t != "Reference":
                raise Unsupported(f"reference parameter on {t}")
            target = self._target_type(element, step.resolve_is, targets)
            refs = {r: self.reference_to(target, r) for r in ROLES}
            return Leaf({r: {"reference": refs[r]} for r in ROLES}, refs["match"])
        if param_type == "token":
            if element.enum:
                if len(element.enum) < 2:
                    raise Unsupported(f"{element.key} has a single code")
                codes = {
                    "match": element.enum[0],
                    "other": element.enum[1],
                    "base": element.enum[1],
                }
                return Leaf(codes, codes["match"])
            if t == "boolean":
                flags = {"match": True, "other": False, "base": False}
                return Leaf(flags, "true")
            if step.exists:  # ``deceased=true`` is any deceased[x] but false; ``other`` has none
                present = self.value_of(t, element.model, "match", tag=tags["match"])
                return Leaf({"match": present, "other": None, "base": None}, "true")
            if t in ("Coding", "CodeableConcept", "Identifier"):
                values = {r: self.value_of(t, None, r, tag=tags[r]) for r in ROLES}
                system = dict(step.fixed).get("system", SYSTEM)  # ``coding.where(system='x')``
                if t == "Coding" and system != SYSTEM:
                    values = {r: {**v, "system": system} for r, v in values.items()}
                return Leaf(values, f"{system}|{tags['match']}")
            if t == "ContactPoint":
                fixed = dict(step.fixed)
                values = {
                    r: {"system": fixed.get("system", "phone"), "value": tags[r]} for r in ROLES
                }
                return Leaf(values, tags["match"])
            if t in ("code", "id", "string", "uri", "url"):
                prefix = "http://example.org/" if t in ("uri", "url") else ""
                if element.key == "contentType":
                    prefix = "application/x-"
                values = {r: f"{prefix}{tags[r]}" for r in ROLES}
                return Leaf(values, values["match"])
        if param_type == "string":
            if t in ("string", "markdown"):
                return Leaf(dict(tags), tags["match"])
            if t == "HumanName":
                return Leaf(
                    {r: {"family": tags[r], "given": [f"G{tags[r]}"]} for r in ROLES}, tags["match"]
                )
            if t == "Address":
                values = {r: {"line": [f"{tags[r]} Street 1"], "city": tags[r]} for r in ROLES}
                return Leaf(values, tags["match"])
        if param_type == "date" and t in ("date", "dateTime", "instant", "Period", "Timing"):
            values = {r: self.value_of(t, None, r, tag="") for r in ROLES}
            return Leaf(values, f"eq{_DATES['match'][0]}")
        if param_type == "quantity" and t in _QUANTITIES:
            values = {r: self.value_of(t, None, r, tag="") for r in ROLES}
            return Leaf(values, f"{_NUMBERS['match']}|{UCUM}|mg")
        if param_type == "uri" and t in ("uri", "url", "canonical", "oid", "uuid"):
            values = {r: f"http://example.org/fhir/{tags[r]}" for r in ROLES}
            return Leaf(values, values["match"])
        raise Unsupported(f"a {param_type} parameter on a {t} element")

    # ------------------------------------------------------------------ paths

    def resolve_paths(
        self, model: type[BaseModel], steps: list[Step], param_type: str
    ) -> list[list[Element]]:
        """The elements along ``steps``: one path per type the last element can take (a choice
        element has several), the type the parameter type prefers first; unfillable types last."""
        path: list[Element] = []
        current: type[BaseModel] | None = model
        for step in steps[:-1]:
            if current is None:
                raise Unsupported(f"{step.name}: below a primitive")
            found = candidates(current, step.name, step.as_type)
            if not found:
                raise Unsupported(f"no element {step.name} in {current.__name__}")
            path.append(found[0])
            current = found[0].model
        if current is None:
            raise Unsupported(f"{steps[-1].name}: below a primitive")
        last = candidates(current, steps[-1].name, steps[-1].as_type)
        if not last:
            raise Unsupported(f"no element {steps[-1].name} in {current.__name__}")
        ranking = _PREFERRED.get(param_type, ())
        last.sort(key=lambda e: ranking.index(e.fhir_type) if e.fhir_type in ranking else 99)
        return [[*path, element] for element in last]

    def place(
        self,
        resource: dict[str, Any],
        model: type[BaseModel],
        path: list[Element],
        steps: list[Step],
        value: Any,
        role: str,
    ) -> None:
        """Set ``value`` at ``path`` inside ``resource`` (of ``model``), or remove the element for
        ``None``: existing first list items and objects are reused (so required siblings stay),
        missing ones are created minimal."""
        node = resource
        for element, step in zip(path[:-1], steps[:-1], strict=True):
            child = node.get(element.key)
            if isinstance(child, list) and child:
                child = child[0]
            elif not isinstance(child, dict):
                assert element.model is not None
                child = self.minimal_object(element.model, role, filler=False)
                node[element.key] = [child] if element.is_list else child
            for key, fixed in step.fixed:
                child[key] = fixed
            node = child
            assert element.model is not None
            model = element.model
        last = path[-1]
        if value is None:
            node.pop(last.key, None)
        else:
            node[last.key] = [value] if last.is_list else value
        # a choice element holds one type: drop a competing ``name<Type>`` key of the base
        group = last.extra.get("one_of_many")
        if group:
            for key, element in elements(model).items():
                if key != last.key and element.extra.get("one_of_many") == group:
                    node.pop(key, None)

    # ------------------------------------------------------------------ one parameter

    def _tag(self, d: SearchParameterDef) -> str:
        return f"t{next(self._serial):04d}{_TEXT_ONLY.sub('', d.code)[:10]}"

    def case(self, resource_type: str, d: SearchParameterDef) -> Case:
        """The first case of :meth:`cases`."""
        return self.cases(resource_type, d)[0]

    def cases(self, resource_type: str, d: SearchParameterDef) -> list[Case]:
        """One case per branch of the expression (``a | b``) and per type a choice element at
        its end can take (``effective[x]``: dateTime, instant, Period, Timing), for each that this
        generator can fill. ``Unsupported`` when there is none."""
        if d.type == "composite":
            return self._composite_cases(resource_type, d)
        model = model_of(resource_type)
        problems: list[str] = []
        out: list[Case] = []
        for branch, steps in _branches(d.expression):
            if steps is None:
                problems.append(f"cannot follow {branch!r}")
                continue
            try:
                paths = self.resolve_paths(model, steps, d.type)
            except Unsupported as exc:
                problems.append(str(exc))
                continue
            for path in paths:
                try:
                    leaf = self.leaf(d.type, path[-1], steps[-1], d.targets, self._tag(d))
                    if d.url.endswith("-phonetic"):
                        leaf = _phonetic(path[-1])
                except Unsupported as exc:
                    problems.append(str(exc))
                    continue
                match, other = self.base(resource_type), self.base(resource_type)
                self.place(match, model, path, steps, leaf.values["match"], "match")
                self.place(other, model, path, steps, leaf.values["other"], "other")
                where = ".".join(e.key for e in path)
                out.append(
                    Case(resource_type, d.code, d.type, match, other, leaf.search, where, branch)
                )
        if not out:
            raise Unsupported(f"{resource_type}:{d.code} ({d.expression}): {'; '.join(problems)}")
        return out

    def _composite_cases(self, resource_type: str, d: SearchParameterDef) -> list[Case]:
        """search.html#composite: all components on one node; ``other`` differs only in the last
        component, so a server that does not tie the components together finds both. One case
        per branch of the base expression and per alternative of each component (the others
        kept at their first)."""
        model = model_of(resource_type)
        out: list[Case] = []
        for branch, base_steps in _branches(d.expression):
            if base_steps is None:
                continue
            try:
                base_path = (
                    self.resolve_paths(model, base_steps, "composite")[0] if base_steps else []
                )
                node_model = base_path[-1].model if base_path else model
                assert node_model is not None
                alternatives = self._components(node_model, d)
            except Unsupported:
                continue
            variants = [[alts[0] for alts in alternatives]]
            for i, alts in enumerate(alternatives):
                for alt in alts[1:]:
                    variants.append([alt if j == i else a[0] for j, a in enumerate(alternatives)])
            for variant in variants:
                case = self._composite_case(resource_type, d, base_path, base_steps, variant)
                case.branch = branch
                out.append(case)
        if not out:
            raise Unsupported(f"{resource_type}:{d.code}: no composite branch can be built")
        return out

    def _composite_case(
        self,
        resource_type: str,
        d: SearchParameterDef,
        base_path: list[Element],
        base_steps: list[Step],
        parts: list[tuple[list[Element], list[Step], str]],
    ) -> Case:
        model = model_of(resource_type)
        node_model = base_path[-1].model if base_path else model
        assert node_model is not None
        u = self._tag(d)
        leaves = [
            self.leaf(d.components[i].type, path[-1], steps[-1], (), f"{u}c{i}")
            for i, (path, steps, _) in enumerate(parts)
        ]
        match, other = self.base(resource_type), self.base(resource_type)
        for resource, role in ((match, "match"), (other, "other")):
            node: Any = resource
            for element in base_path:
                got = node.get(element.key) if isinstance(node, dict) else None
                node = got[0] if isinstance(got, list) and got else got
            if not isinstance(node, dict):
                node = self.minimal_object(node_model, role, filler=False)
                self.place(resource, model, base_path, base_steps, node, role)
            for i, ((path, steps, _), leaf) in enumerate(zip(parts, leaves, strict=True)):
                pick = "match" if i < len(parts) - 1 else role
                self.place(node, node_model, path, steps, leaf.values[pick], role)
        search = "$".join(leaf.search for leaf in leaves)
        where = ".".join(e.key for e in base_path) or resource_type
        where += " {" + ", ".join(".".join(e.key for e in p) for p, _, _ in parts) + "}"
        return Case(resource_type, d.code, d.type, match, other, search, where)

    def _components(
        self, model: type[BaseModel], d: SearchParameterDef
    ) -> list[list[tuple[list[Element], list[Step], str]]]:
        """Per component, every path its expression can take that can be filled. A component
        whose expression leads to an element of the wrong type (DocumentReference
        ``relationship`` declares them crosswise in R4) takes the sibling expression that fits."""
        sources = [c.expression for c in d.components]
        out = []
        for i, component in enumerate(d.components):
            tried = [sources[i], *(s for j, s in enumerate(sources) if j != i)]
            found: list[tuple[list[Element], list[Step], str]] = []
            for source in tried:
                for _, steps in _branches(source, relative=True):
                    if steps is None:
                        continue
                    try:
                        paths = self.resolve_paths(model, steps, component.type)
                    except Unsupported:
                        continue
                    for path in paths:
                        try:
                            self.leaf(component.type, path[-1], steps[-1], (), "probe")
                        except Unsupported:
                            continue
                        found.append((path, steps, source))
                if found:
                    break
            if not found:
                raise Unsupported(f"component {component.code} of {d.code}")
            out.append(found)
        return out
