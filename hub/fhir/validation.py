"""Validation of client writes against the FHIR R4 structure definitions.

Uses the pydantic models of ``fhir.resources.R4B`` (whose resources match R4 4.0.1 for the types
PixelHub serves). Each pydantic error becomes an ``OperationOutcome.issue`` whose ``expression`` is
the FHIRPath location of the problem (FHIR R4 operationoutcome.html#loc), e.g.
``ImagingStudy.series[0].uid``. Only the write path pays for this; reads serve stored bytes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from hub.errors import InvalidResource, Issue

MAX_JSON_DEPTH = 64


@functools.cache
def _model(resource_type: str) -> type[BaseModel]:
    from fhir.resources.R4B import get_fhir_model_class

    return get_fhir_model_class(resource_type)


@functools.cache
def summary_elements(resource_type: str) -> frozenset[str]:
    """Top-level keys marked ``isSummary``, for ``_summary=true`` (FHIR R4 search.html#summary)."""
    model = _model(resource_type)
    keys = {"resourceType", "id", "meta"}
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra
        if isinstance(extra, dict) and extra.get("summary_element_property"):
            keys.add(field.alias or name)
    return frozenset(keys)


@functools.cache
def json_element_names(resource_type: str) -> frozenset[str]:
    """Every top-level JSON key the type allows (including ``_x`` primitive extensions)."""
    model = _model(resource_type)
    names = {"resourceType"}
    for name, field in model.model_fields.items():
        names.add(field.alias or name)
    return frozenset(names)


def _location(resource_type: str, loc: tuple[int | str, ...]) -> str:
    path = resource_type
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part and not part.startswith("__"):
            path += f".{part}"
    return path


def check_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse absurdly nested JSON before any recursive processing touches it."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise InvalidResource(f"JSON is nested deeper than {limit} levels")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def validate_resource(resource: dict[str, Any], resource_type: str) -> None:
    """Raise ``InvalidResource`` listing every structural problem, each with its location."""
    check_depth(resource)
    try:
        model = _model(resource_type).model_validate(resource)
    except ValidationError as exc:
        issues = []
        for err in exc.errors():
            where = _location(resource_type, tuple(err["loc"]))
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = f"Unknown element '{err['loc'][-1]}'"
            issues.append(Issue(f"{where}: {message}", code="structure", expression=(where,)))
        raise InvalidResource(issues[0].diagnostics, issues) from None
    except (ValueError, TypeError) as exc:  # raised by some model validators directly
        raise InvalidResource.at(f"{resource_type}: {exc}", resource_type) from None
    issues = list(_code_issues(model, resource_type))
    if issues:
        raise InvalidResource(issues[0].diagnostics, issues)


@functools.cache
def _code_fields(cls: type[BaseModel]) -> tuple[tuple[str, str, tuple[str, ...] | None], ...]:
    """Per model class: ``(attribute, JSON name, allowed codes or None)`` of the fields that can
    hold a required-binding code or a nested element; primitive-only fields are skipped."""
    out: list[tuple[str, str, tuple[str, ...] | None]] = []
    for name, field in cls.model_fields.items():
        extra = field.json_schema_extra
        allowed = extra.get("enum_values") if isinstance(extra, dict) else None
        if isinstance(allowed, list):
            out.append((name, field.alias or name, tuple(map(str, allowed))))
        elif _holds_model(field.annotation):
            out.append((name, field.alias or name, None))
    return tuple(out)


def _holds_model(annotation: Any) -> bool:
    if isinstance(annotation, type):
        return issubclass(annotation, BaseModel)
    return any(_holds_model(arg) for arg in get_args(annotation))


def _code_issues(model: BaseModel, path: str) -> Iterator[Issue]:
    """Codes outside a required binding's value set (the models list them as ``enum_values``;
    FHIR R4 terminologies.html#required)."""
    for name, alias, allowed in _code_fields(type(model)):
        value = getattr(model, name, None)
        if value is None:
            continue
        where = f"{path}.{alias}"
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            at = f"{where}[{i}]" if isinstance(value, list) else where
            if isinstance(item, BaseModel):
                yield from _code_issues(item, at)
            elif allowed is not None and isinstance(item, str) and item not in allowed:
                yield Issue(
                    f"{at}: {item!r} is not in the required value set ({', '.join(allowed)})",
                    code="code-invalid",
                    expression=(at,),
                )
