"""A small FHIRPath subset, compiled once per expression to Python closures.

Enough for the R4 SearchParameter expressions PixelHub serves (FHIR R4 search.html#expressions,
fhirpath.html) evaluated over plain FHIR JSON: paths (lists flatten, a leading type name such as
``Patient`` or ``Resource`` filters the context), choice elements (``value`` finds
``valueQuantity``, ``valueDateTime``... per FHIR R4 formats.html#choice), ``|``, ``as``/``is``
(operator and function), ``ofType()``, ``where()``, ``exists()``, ``empty()``, ``not()``,
``first()``, ``resolve()`` (to a stub resource of the referenced type), ``extension(url)``,
``=``/``!=``, ``and``/``or``, ``$this`` and string, boolean and number literals. Anything else is
a ``ValueError`` at compile time.

Each result item is a ``(value, fhir_type)`` pair; ``fhir_type`` is known when the JSON says so (a
choice-element key suffix, ``as``/``ofType``, ``resolve()``, a literal or a boolean result) and is
``None`` otherwise. Lenient where indexing should not fail: ``|`` does not remove duplicates and
``as`` on several items filters them like ``ofType`` instead of raising.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "CHOICE_ELEMENTS",
    "PRIMITIVE_TYPES",
    "REFERENCE_TARGET",
    "Expression",
    "Item",
    "compile_expression",
]

Item = tuple[Any, str | None]
"""One result: the JSON value and its FHIR type name when known."""
_Fn = Callable[[list[Item]], list[Item]]

PRIMITIVE_TYPES = frozenset(
    "base64Binary boolean canonical code date dateTime decimal id instant integer markdown oid "
    "positiveInt string time unsignedInt uri url uuid".split()
)
# Choice elements ``name[x]`` of the R4 resources and data types PixelHub serves: only these names
# look for ``name<Type>`` keys when ``name`` itself is absent (FHIR R4 formats.html#choice).
CHOICE_ELEMENTS = frozenset(
    "value deceased multipleBirth effective occurrence occurred collected onset abatement "
    "performed asNeeded bounds fastingStatus time timing product medication reported born age "
    "defaultValue fixed pattern minValue maxValue allowed used answer serviced created".split()
)
# ``Type/id`` or ``Type/id/_history/v`` at the end of a reference (FHIR R4 references.html#literal).
REFERENCE_TARGET = re.compile(
    r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/([A-Za-z0-9\-.]{1,64}))?$"
)
_QUANTITY_KINDS = frozenset(
    {"Quantity", "Age", "Count", "Distance", "Duration", "SimpleQuantity", "MoneyQuantity"}
)
_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>\d+(?:\.\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*|`[^`]+`|\$this)|(?P<op>!=|[.()|=,]))"
)
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f"}


class Expression:
    """A compiled expression: call it with a context value (a resource, or an element for the
    relative component expressions of a composite) and its FHIR type if known; or ``run`` it over
    a collection of items."""

    __slots__ = ("run", "source")

    def __init__(self, source: str, run: Callable[[list[Item]], list[Item]]) -> None:
        self.source = source
        self.run = run

    def __call__(self, context: Any, context_type: str | None = None) -> list[Item]:
        return self.run([(context, context_type)])

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


@functools.cache
def compile_expression(expression: str, context_type: str | None = None) -> Expression:
    """Compile a FHIRPath expression of the supported subset; ``ValueError`` if unsupported.

    With ``context_type``, the caller promises the context is a resource of that type, and the
    leading type filters that would always pass (``Patient.`` / ``Resource.``) are left out.
    """
    return Expression(expression, _Parser(expression, context_type).parse())


# -- evaluation helpers --------------------------------------------------------------------------


def _choice_type(suffix: str) -> str:
    """``DateTime`` -> ``dateTime``, ``Quantity`` -> ``Quantity`` (FHIR type names)."""
    lowered = suffix[:1].lower() + suffix[1:]
    return lowered if lowered in PRIMITIVE_TYPES else suffix


def _type_of(item: Item) -> str | None:
    value, known = item
    if known is not None:
        return known
    if type(value) is dict:
        return value.get("resourceType")
    return _PY_TYPES.get(type(value))


_PY_TYPES: dict[type, str] = {bool: "boolean", int: "integer", float: "decimal", str: "string"}


def _is_a(item: Item, wanted: str) -> bool:
    actual = _type_of(item)
    if actual == wanted:
        return True
    if wanted in ("Resource", "DomainResource"):
        return type(item[0]) is dict and "resourceType" in item[0]
    return wanted == "Quantity" and actual in _QUANTITY_KINDS


def _to_bool(items: list[Item]) -> bool | None:
    """FHIRPath singleton evaluation of collections in a boolean context (fhirpath.html#boolean)."""
    if not items:
        return None
    value = items[0][0]
    return value if type(value) is bool else True


def _equal(a: Any, b: Any) -> bool:
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and bool(a == b)


def _path(names: list[str]) -> _Fn:
    """Child elements along ``names``; lists flatten, a choice element ``name`` reads its one
    ``name<Type>`` key and types the value by the suffix (FHIR R4 formats.html#choice). A
    capitalised name is a type name and filters instead (``Patient.name``)."""
    steps = [(name, name in CHOICE_ELEMENTS, len(name), name[0].isupper()) for name in names]

    def walk(items: list[Item]) -> list[Item]:
        for name, choice, size, is_type in steps:
            if is_type:
                items = [it for it in items if _is_a(it, name)]
                continue
            out: list[Item] = []
            append = out.append
            for value, _ in items:
                if type(value) is not dict:
                    continue
                found = value.get(name)
                if type(found) is list:
                    for x in found:
                        if x is not None:
                            append((x, None))
                elif found is not None:
                    append((found, None))
                elif choice:
                    for key, candidate in value.items():
                        if len(key) > size and key.startswith(name) and key[size].isupper():
                            append((candidate, _choice_type(key[size:])))
            items = out
            if not items:
                break
        return items

    return walk


def _chain(steps: list[_Fn | str]) -> _Fn:
    """Compose invocations left to right, runs of child names as one ``_path`` walk."""
    fns: list[_Fn] = []
    names: list[str] = []
    for step in [*steps, None]:
        if isinstance(step, str):
            names.extend([step] if step else [])  # "" is a type filter known to pass
            continue
        if names:
            fns.append(_path(names))
            names = []
        if step is not None:
            fns.append(step)
    if not fns:
        return lambda items: items
    fn = fns[0]
    for then in fns[1:]:
        fn = _then(fn, then)
    return fn


def _then(first: _Fn, second: _Fn) -> _Fn:
    return lambda items: second(first(items))


def _as(wanted: str) -> _Fn:
    return lambda items: [(v, _type_of((v, t))) for v, t in items if _is_a((v, t), wanted)]


def _is(wanted: str) -> _Fn:
    return lambda items: [(_is_a(items[0], wanted), "boolean")] if len(items) == 1 else []


def _resolve(items: list[Item]) -> list[Item]:
    """Literal references become stub resources ``{"resourceType": T, "id": id}`` of type T."""
    out: list[Item] = []
    for value, _ in items:
        ref = value.get("reference") if type(value) is dict else value
        if type(ref) is not str or ref.startswith(("#", "urn:")):
            continue
        match = REFERENCE_TARGET.search(ref.partition("|")[0])
        if match and (match.start() == 0 or "://" in ref):
            out.append(({"resourceType": match[1], "id": match[2]}, match[1]))
    return out


def _exists(criteria: _Fn | None) -> _Fn:
    if criteria is None:
        return lambda items: [(bool(items), "boolean")]
    return lambda items: [(any(_to_bool(criteria([it])) is True for it in items), "boolean")]


def _not(items: list[Item]) -> list[Item]:
    value = _to_bool(items)
    return [] if value is None else [(not value, "boolean")]


def _extension(url: str) -> _Fn:
    return lambda items: [
        (ext, "Extension")
        for value, _ in items
        if type(value) is dict
        for ext in value.get("extension", ())
        if type(ext) is dict and ext.get("url") == url
    ]


_FUNCTIONS: dict[str, tuple[int, int, Callable[[list[_Fn]], _Fn]]] = {
    "where": (1, 1, lambda a: lambda items: [it for it in items if _to_bool(a[0]([it])) is True]),
    "exists": (0, 1, lambda a: _exists(a[0] if a else None)),
    "empty": (0, 0, lambda _: lambda items: [(not items, "boolean")]),
    "not": (0, 0, lambda _: _not),
    "first": (0, 0, lambda _: lambda items: items[:1]),
    "resolve": (0, 0, lambda _: _resolve),
}


def _equality(left: _Fn, right: _Fn, negate: bool) -> _Fn:
    def step(items: list[Item]) -> list[Item]:
        a, b = left(items), right(items)
        if not a or not b:
            return []
        same = len(a) == len(b) and all(_equal(x[0], y[0]) for x, y in zip(a, b, strict=True))
        return [(same != negate, "boolean")]

    return step


def _logic(left: _Fn, right: _Fn, is_and: bool) -> _Fn:
    """Three-valued ``and``/``or`` (fhirpath.html#boolean-logic)."""

    def step(items: list[Item]) -> list[Item]:
        a, b = _to_bool(left(items)), _to_bool(right(items))
        decisive = not is_and  # ``false`` decides ``and``, ``true`` decides ``or``
        if a is decisive or b is decisive:
            return [(decisive, "boolean")]
        if a is None or b is None:
            return []
        return [(not decisive, "boolean")]

    return step


def _union(parts: list[_Fn]) -> _Fn:
    return lambda items: [it for part in parts for it in part(items)]


# -- parsing -------------------------------------------------------------------------------------


class _Parser:
    """Recursive descent over FHIRPath precedence: or < and < = != < | < as is < . (invocation)."""

    def __init__(self, source: str, context_type: str | None) -> None:
        self.source = source
        self.known = {context_type, "Resource", "DomainResource"} if context_type else set()
        self.depth = 0  # > 0 inside function arguments, where the context is another item
        self.tokens: list[tuple[str, str, int]] = []
        pos, end = 0, len(source.rstrip())
        while pos < end:
            match = _TOKEN.match(source, pos)
            if match is None or match.lastgroup is None:
                raise self.error("unsupported syntax", len(source) - len(source[pos:].lstrip()))
            kind = match.lastgroup
            self.tokens.append((kind, match[kind], match.start(kind)))
            pos = match.end()
        self.tokens.append(("end", "", end))
        self.i = 0

    def error(self, message: str, pos: int | None = None) -> ValueError:
        at = self.tokens[self.i][2] if pos is None else pos
        return ValueError(f"FHIRPath {self.source!r}: {message} at position {at}")

    def peek(self, kind: str, *texts: str) -> bool:
        k, text, _ = self.tokens[self.i]
        return k == kind and (not texts or text in texts)

    def take(self) -> str:
        self.i += 1
        return self.tokens[self.i - 1][1]

    def expect(self, op: str) -> None:
        if not self.peek("op", op):
            raise self.error(f"expected {op!r}")
        self.i += 1

    def parse(self) -> _Fn:
        fn = self.logic()
        if not self.peek("end"):
            raise self.error(f"unsupported {self.tokens[self.i][1]!r}")
        return fn

    def logic(self, keyword: str = "or") -> _Fn:
        """``or`` binds loosest, then ``and`` (fhirpath.html#operator-precedence)."""
        left = self.logic("and") if keyword == "or" else self.equality()
        while self.peek("name", keyword):
            self.take()
            right = self.logic("and") if keyword == "or" else self.equality()
            left = _logic(left, right, is_and=keyword == "and")
        return left

    def equality(self) -> _Fn:
        left = self.union()
        if self.peek("op", "=", "!="):
            negate = self.take() == "!="
            left = _equality(left, self.union(), negate)
        return left

    def union(self) -> _Fn:
        parts = [self.type_expression()]
        while self.peek("op", "|"):
            self.take()
            parts.append(self.type_expression())
        return parts[0] if len(parts) == 1 else _union(parts)

    def type_expression(self) -> _Fn:
        fn = self.postfix()
        if self.peek("name", "as", "is"):
            op = self.take()
            fn = _then(fn, (_as if op == "as" else _is)(self.type_name()))
        return fn

    def type_name(self) -> str:
        if not self.peek("name"):
            raise self.error("expected a type name")
        name = self.take()
        if name in ("FHIR", "System") and self.peek("op", "."):
            self.take()
            name = self.type_name()
        return _choice_type(name.strip("`"))

    def postfix(self) -> _Fn:
        steps = [self.term()]
        while self.peek("op", "."):
            self.take()
            steps.append(self.invocation())
        return _chain(steps)

    def term(self) -> _Fn | str:
        kind, text, _ = self.tokens[self.i]
        if kind == "op" and text == "(":
            self.take()
            fn = self.logic()
            self.expect(")")
            return fn
        literal: Item | None = None
        if kind == "str":
            literal = (_ESCAPE.sub(_unescape, text[1:-1]), "string")
        elif kind == "num":
            literal = (float(text), "decimal") if "." in text else (int(text), "integer")
        elif kind == "name" and text in ("true", "false"):
            literal = (text == "true", "boolean")
        if literal is not None:
            self.take()
            return lambda _items: [literal]
        if kind == "name" and text == "$this":
            self.take()
            return lambda items: items
        if kind == "name" and text[0].isupper() and not self.peek_call():
            self.take()  # a type name filters the context: ``Patient.name``
            return "" if self.depth == 0 and text in self.known else text
        return self.invocation()

    def peek_call(self) -> bool:
        return self.tokens[self.i + 1][:2] == ("op", "(")

    def invocation(self) -> _Fn | str:
        """A child name (returned as ``str``) or a function call on the input collection."""
        if self.peek("name") and self.tokens[self.i][1][0].isupper() and not self.peek_call():
            raise self.error("expected an element name")
        keyword = self.peek("name", "and", "or", "as", "is") and not self.peek_call()
        if not self.peek("name") or keyword:
            raise self.error("expected a name")
        at = self.tokens[self.i][2]
        name = self.take().strip("`")
        if not self.peek("op", "("):
            return name
        self.take()
        if name in ("as", "is", "ofType", "extension"):
            if name == "extension" and self.peek("str"):
                fn = _extension(_ESCAPE.sub(_unescape, self.take()[1:-1]))
            elif name == "extension":
                raise self.error("extension() needs a string literal")
            else:
                fn = (_is if name == "is" else _as)(self.type_name())
            self.expect(")")
            return fn
        args: list[_Fn] = []
        self.depth += 1
        while not self.peek("op", ")"):
            if args:
                self.expect(",")
            args.append(self.logic())
        self.depth -= 1
        self.take()
        if name not in _FUNCTIONS:
            raise self.error(f"unsupported function {name}()", at)
        low, high, build = _FUNCTIONS[name]
        if not low <= len(args) <= high:
            raise self.error(f"wrong number of arguments to {name}()", at)
        return build(args)


def _unescape(match: re.Match[str]) -> str:
    code = match[1]
    return chr(int(code[1:], 16)) if len(code) == 5 else _ESCAPES.get(code, code)
