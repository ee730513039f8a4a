"""The OpenAPI description of the ``/fhir`` routes (FHIR R4 http.html), as ``openapi_extra``.

The routes read the raw request themselves (FHIR has its own rules for bodies, media types and
errors), so FastAPI sees no typed parameters there. These fragments say what the routes accept:
the served resource types, the search and history parameters, the FHIR headers (``If-Match``,
``If-None-Exist``, ``If-None-Match``, ``Prefer``), JSON bodies with a ``resourceType``, and that
every error is an ``OperationOutcome``. They are documentation only and change no behaviour;
API clients and the property-based tests (tests/conformance/test_api_fuzz.py) generate calls
from them.
"""

from __future__ import annotations

from typing import Any

from fastapi import Response

from hub.search.registry import SERVED_TYPES

__all__ = [
    "BEARER",
    "FHIR_MEDIA",
    "ID_SCHEMA",
    "RESOURCE_TYPE_SCHEMA",
    "VERSION_SCHEMA",
    "FhirJsonResponse",
    "operation",
    "security_schemes",
]

FHIR_MEDIA = "application/fhir+json"
JSON_PATCH = "application/json-patch+json"
FORM = "application/x-www-form-urlencoded"
ID_PATTERN = r"^[A-Za-z0-9\-.]{1,64}$"  # datatypes.html#id
BEARER = "bearer"

_RESOURCE: dict[str, Any] = {
    "type": "object",
    "description": "A FHIR R4 resource (resource.html) in the JSON format (json.html).",
    "required": ["resourceType"],
    "properties": {
        "resourceType": {"type": "string", "enum": list(SERVED_TYPES)},
        "id": {"type": "string", "pattern": ID_PATTERN},
        "contained": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["resourceType"],
                "properties": {"resourceType": {"type": "string"}},
            },
        },
    },
    "additionalProperties": True,
}
_BUNDLE: dict[str, Any] = {
    "type": "object",
    "description": "A batch or transaction Bundle (bundle.html, http.html#transaction).",
    "required": ["resourceType", "type"],
    "properties": {
        "resourceType": {"type": "string", "enum": ["Bundle"]},
        "type": {"type": "string", "enum": ["batch", "transaction"]},
        "entry": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "fullUrl": {"type": "string"},
                    "resource": _RESOURCE,
                    "request": {
                        "type": "object",
                        "required": ["method", "url"],
                        "properties": {
                            "method": {
                                "type": "string",
                                "enum": ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"],
                            },
                            "url": {"type": "string"},
                            "ifNoneExist": {"type": "string"},
                            "ifMatch": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
    "additionalProperties": True,
}
_PATCH: dict[str, Any] = {
    "type": "array",
    "description": "A JSON Patch document (RFC 6902).",
    "items": {
        "type": "object",
        "required": ["op", "path"],
        "properties": {
            "op": {
                "type": "string",
                "enum": ["add", "remove", "replace", "move", "copy", "test"],
            },
            "path": {"type": "string"},
            "from": {"type": "string"},
            "value": {},
        },
    },
}
_OUTCOME: dict[str, Any] = {
    "type": "object",
    "description": "An OperationOutcome (operationoutcome.html): every error below /fhir.",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
        "issue": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["severity", "code"],
                "properties": {
                    "severity": {
                        "type": "string",
                        "enum": ["fatal", "error", "warning", "information"],
                    },
                    "code": {"type": "string"},
                    "diagnostics": {"type": "string"},
                    "expression": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
_RETURNED: dict[str, Any] = {
    "type": "object",
    "description": "A resource, a Bundle, or with Prefer: return=OperationOutcome an outcome.",
    "required": ["resourceType"],
    "properties": {"resourceType": {"type": "string"}},
}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _header(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": schema,
    }


_STRING = {"type": "string"}
_COUNT = {"type": "integer", "minimum": 0, "maximum": 1000}
_DATE_SEARCH = {
    "type": "string",
    "pattern": r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)?\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?$",
}
_INSTANT = {"type": "string", "format": "date-time"}
_INCLUDE = {"type": "string", "pattern": r"^[A-Z][A-Za-z]+:([a-z][a-z0-9-]*|\*)(:[A-Z][A-Za-z]+)?$"}

# The path parameters, as ``json_schema_extra`` of FastAPI ``Path()`` declarations: schema only,
# no validation (an unserved type stays a 404 OperationOutcome, not a validation error).
RESOURCE_TYPE_SCHEMA: dict[str, Any] = {"enum": list(SERVED_TYPES)}
ID_SCHEMA: dict[str, Any] = {"pattern": ID_PATTERN}
VERSION_SCHEMA: dict[str, Any] = {"pattern": r"^[0-9]+$"}

SEARCH_PARAMETERS = [
    _query("_id", "search.html#id: logical ids, comma-separated.", _STRING),
    _query("_lastUpdated", "search.html#lastUpdated: [prefix]date.", _DATE_SEARCH),
    _query("_tag", "search.html#tag: [system]|[code].", _STRING),
    _query("_profile", "search.html#profile: a canonical URL.", _STRING),
    _query("_security", "search.html#security: [system]|[code].", _STRING),
    _query("_source", "search.html#source: a URI.", _STRING),
    _query("_count", "search.html#count: page size.", _COUNT),
    _query(
        "_offset", "Entries to skip (the paging links use it).", {"type": "integer", "minimum": 0}
    ),
    _query("_sort", "search.html#sort: parameters, '-' for descending.", _STRING),
    _query(
        "_total", "search.html#total.", {"type": "string", "enum": ["none", "estimate", "accurate"]}
    ),
    _query(
        "_summary",
        "search.html#summary.",
        {"type": "string", "enum": ["true", "false", "count", "text", "data"]},
    ),
    _query("_elements", "search.html#elements: element names, comma-separated.", _STRING),
    _query("_include", "search.html#include: Source:param[:Target].", _INCLUDE),
    _query("_revinclude", "search.html#revinclude: Source:param[:Target].", _INCLUDE),
    _query("_format", "http.html#mime-type: only JSON is served.", _STRING),
]
HISTORY_PARAMETERS = [
    _query("_count", "http.html#history: page size.", _COUNT),
    _query(
        "_offset", "Entries to skip (the paging links use it).", {"type": "integer", "minimum": 0}
    ),
    _query("_since", "http.html#history: only versions after this instant.", _INSTANT),
    _query("_at", "http.html#history: the versions current at this instant.", _INSTANT),
]
PREFER = _header(
    "Prefer",
    "http.html#ops (return=minimal|representation|OperationOutcome) and search.html#errors "
    "(handling=strict|lenient).",
    {
        "type": "string",
        "enum": [
            "return=minimal",
            "return=representation",
            "return=OperationOutcome",
            "handling=strict",
            "handling=lenient",
        ],
    },
)
IF_MATCH = _header(
    "If-Match",
    "http.html#concurrency: the version the update expects, as a weak ETag.",
    {"type": "string", "pattern": r'^W/"[0-9]+"$'},
)
IF_NONE_EXIST = _header(
    "If-None-Exist",
    "http.html#ccreate: search parameters; an existing match is returned instead.",
    _STRING,
)
IF_NONE_MATCH = _header(
    "If-None-Match", "The ETag the client has: 304 when it is current.", _STRING
)
CONDITION = _query(
    "identifier",
    "Conditional criteria (any search parameter of the type; this one as example).",
    _STRING,
)


def _body(schema: dict[str, Any], *media: str) -> dict[str, Any]:
    return {"required": True, "content": {m: {"schema": schema} for m in media}}


class FhirJsonResponse(Response):
    """Documents ``application/fhir+json`` bodies; the routes build their own responses."""

    media_type = FHIR_MEDIA


def _responses(success: int, description: str, body: bool) -> dict[int | str, Any]:
    ok: dict[str, Any] = {"description": description}
    if body:
        ok["content"] = {FHIR_MEDIA: {"schema": _RETURNED}}
    return {
        success: ok,
        "default": {
            "description": "Any error: an OperationOutcome that says what and where.",
            "content": {FHIR_MEDIA: {"schema": _OUTCOME}},
        },
    }


_BODIES: dict[str, dict[str, Any]] = {
    "resource": _body(_RESOURCE, FHIR_MEDIA, "application/json"),
    "bundle": _body(_BUNDLE, FHIR_MEDIA, "application/json"),
    "patch": _body(_PATCH, JSON_PATCH),
    "form": _body({"type": "object", "additionalProperties": {"type": "string"}}, FORM),
}
_QUERIES: dict[str, list[dict[str, Any]]] = {
    "search": SEARCH_PARAMETERS,
    "history": HISTORY_PARAMETERS,
    "condition": [CONDITION],
}


def operation(
    *,
    query: str | None = None,
    headers: tuple[dict[str, Any], ...] = (),
    body: str | None = None,
    success: int = 200,
    description: str = "Success",
    returns_body: bool = True,
) -> dict[str, Any]:
    """Keyword arguments for one route decorator (``openapi_extra``, ``responses``,
    ``status_code``, ``response_class``): ``query`` one of ``search``/``history``/``condition``,
    ``body`` one of ``resource``/``bundle``/``patch``/``form``. The routes return their own
    ``Response`` objects, so none of these change what they answer."""
    extra: dict[str, Any] = {
        "parameters": [*(_QUERIES[query] if query else []), *headers],
        "security": [{BEARER: []}],
    }
    if body is not None:
        extra["requestBody"] = _BODIES[body]
    return {
        "openapi_extra": extra,
        "responses": _responses(success, description, returns_body),
        "status_code": success,
        "response_class": FhirJsonResponse,
    }


def security_schemes() -> dict[str, Any]:
    """``components.securitySchemes``: a bearer token (SMART on FHIR access tokens later)."""
    return {BEARER: {"type": "http", "scheme": "bearer"}}
