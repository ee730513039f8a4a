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
    """Raise ``InvalidResource`` listing every structural problem, each with its location.

    The caller has already refused over-deep JSON (``check_depth``)."""
    contained = list(_unknown_contained(resource, resource_type))
    if contained:
        raise InvalidResource(contained[0].diagnostics, contained)
    try:
        _model(resource_type).model_validate(resource)
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
    issues = list(_code_issues(resource, _model(resource_type), resource_type))
    if issues:
        raise InvalidResource(issues[0].diagnostics, issues)


@functools.cache
def is_resource_type(name: str) -> bool:
    """``name`` is a concrete FHIR R4 resource type (Patient, Observation...): not a data type,
    not a backbone element, not the abstract ``Resource``/``DomainResource``."""
    from fhir.resources.R4B.resource import Resource

    if name in ("Resource", "DomainResource"):
        return False
    try:
        model = _model(name)
    except (KeyError, ValueError):
        return False
    return model.__name__ == name and issubclass(model, Resource)


def _unknown_contained(resource: dict[str, Any], resource_type: str) -> Iterator[Issue]:
    """Contained resources whose ``resourceType`` is no FHIR resource type (references.html
    #contained); the models would raise a bare ``KeyError`` on them."""
    contained = resource.get("contained")
    for i, item in enumerate(contained if isinstance(contained, list) else ()):
        kind = item.get("resourceType") if isinstance(item, dict) else None
        if isinstance(kind, str) and not is_resource_type(kind):
            where = f"{resource_type}.contained[{i}].resourceType"
            yield Issue(
                f"{where}: '{kind}' is not a FHIR resource type",
                code="structure",
                expression=(where,),
            )


CodeSchema = dict[str, tuple[tuple[str, ...] | None, type[BaseModel] | None]]


@functools.cache
def _code_schema(cls: type[BaseModel]) -> CodeSchema:
    """Per model class: JSON key -> (allowed codes of a required binding, nested element class),
    for the keys that can hold either; primitive-only keys are absent."""
    schema: CodeSchema = {}
    for name, field in cls.model_fields.items():
        extra = field.json_schema_extra
        allowed = extra.get("enum_values") if isinstance(extra, dict) else None
        child = _model_in(field.annotation)
        # A list ending in "+" is abbreviated (the value set has more codes): not checkable here.
        if isinstance(allowed, list) and "+" in allowed:
            allowed = None
        if isinstance(allowed, list) or child is not None:
            codes = tuple(map(str, allowed)) if isinstance(allowed, list) else None
            schema[field.alias or name] = (codes, child)
    return schema


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type):
        return annotation if issubclass(annotation, BaseModel) else None
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _code_issues(node: dict[str, Any], cls: type[BaseModel], path: str) -> Iterator[Issue]:
    """Codes outside a required binding's value set (the models list them as ``enum_values``;
    FHIR R4 terminologies.html#required). Walks the JSON, visiting only the keys present."""
    schema = _code_schema(cls)
    for key, value in node.items():
        spec = schema.get(key)
        if spec is None:
            continue
        allowed, child = spec
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            at = f"{path}.{key}[{i}]" if isinstance(value, list) else f"{path}.{key}"
            if child is not None and isinstance(item, dict):
                if key == "contained" and isinstance(item.get("resourceType"), str):
                    yield from _code_issues(item, _model(item["resourceType"]), at)
                else:
                    yield from _code_issues(item, child, at)
            elif allowed is not None and isinstance(item, str) and item not in allowed:
                yield Issue(
                    f"{at}: {item!r} is not in the required value set ({', '.join(allowed)})",
                    code="code-invalid",
                    expression=(at,),
                )
