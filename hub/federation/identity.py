"""Naming one patient at every site, never by demographics (issue 12, item 3).

A federated search is anchored on its patient by identifier or by local reference:
``patient``/``subject`` (a local ``Patient/<id>``, whose identifiers are read here) or
``patient.identifier``/``subject.identifier`` (``system|value``), and ``identifier``/``_id`` for
Patient itself. For each partner the patient's identifiers are translated by the partner's
assigning-authority mapping: ``system_map`` renames a local system to the partner's, and
``identifier_systems`` (when set) keeps only the systems the partner knows. When nothing is left
and the partner offers PIXm, its ``Patient/$ihe-pix`` (IHE ITI-83, PIXm 3.0 §2:3.83.4.1) is asked
for the partner's identifiers. Demographic parameters (name, birth date, address...) are refused
on the federated base: they would match strangers at other sites.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson

from hub.errors import InvalidSearch
from hub.federation.http import PartnerError, PartnerHttp
from hub.federation.partners import Partner

__all__ = ["Anchor", "partner_identifiers", "pixm_identifiers", "split_anchor"]

Identifier = tuple[str, str]  # (system, value)

_DEMOGRAPHIC = frozenset(
    {
        "name", "family", "given", "phonetic", "birthdate", "gender", "address", "address-city",
        "address-country", "address-postalcode", "address-state", "address-use", "telecom",
        "phone", "email", "death-date", "deceased", "_text", "_content",
    }
)  # fmt: skip
_MAX_PIX = 256 * 1024
_REFERENCE_ANCHORS = ("patient", "subject", "subject:Patient")
_IDENTIFIER_ANCHORS = (
    "patient.identifier",
    "subject.identifier",
    "subject:Patient.identifier",
    "patient:Patient.identifier",
)


@dataclass(frozen=True)
class Anchor:
    """The patient a federated search is about: identifiers given, or local Patient ids."""

    identifiers: tuple[Identifier, ...] = ()
    local_ids: tuple[str, ...] = ()


def _split_values(value: str) -> list[str]:
    """The OR'ed values of one parameter (search.html#escaping: ``\\,`` is not a separator)."""
    values, current, escaped = [], [], False
    for char in value:
        if escaped:
            current.append(char if char in ",|$\\" else "\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            values.append("".join(current))
            current = []
        else:
            current.append(char)
    values.append("".join(current))
    return [v for v in values if v]


def _identifier(value: str, param: str) -> Identifier:
    system, bar, code = value.partition("|")
    if not bar or not system or not code:
        raise InvalidSearch(
            f"{param}={value}: a federated search names the identifier's system (system|value),"
            " so that each site can be asked for the same patient"
        )
    return system, code


def _local_id(value: str, param: str, base_url: str) -> str:
    reference = value.removeprefix(base_url.rstrip("/") + "/")
    if reference.startswith("Patient/"):
        reference = reference[len("Patient/") :]
    if not reference or "/" in reference or ":" in reference:
        raise InvalidSearch(f"{param}={value}: a federated search names a Patient of this hub")
    return reference


def split_anchor(
    resource_type: str, params: Sequence[tuple[str, str]], base_url: str
) -> tuple[Anchor | None, list[tuple[str, str]]]:
    """The search's patient anchor and its other parameters; ``InvalidSearch`` for a
    demographic parameter or for two anchors."""
    anchor: Anchor | None = None
    rest: list[tuple[str, str]] = []
    for key, value in params:
        name = key.split(":")[0] if resource_type == "Patient" else key.split(".")[-1]
        chained = "." in key and key.split(".")[0].split(":")[0] in ("patient", "subject")
        if (resource_type == "Patient" or chained) and name.split(":")[0] in _DEMOGRAPHIC:
            raise InvalidSearch(
                f"{key}: a federated search identifies its patient by identifier, never by"
                " demographics (they would match other people at other sites)"
            )
        found: Anchor | None = None
        if resource_type == "Patient" and key == "identifier":
            found = Anchor(identifiers=tuple(_identifier(v, key) for v in _split_values(value)))
        elif resource_type == "Patient" and key == "_id":
            found = Anchor(local_ids=tuple(_local_id(v, key, base_url) for v in value.split(",")))
        elif resource_type != "Patient" and key in _IDENTIFIER_ANCHORS:
            found = Anchor(identifiers=tuple(_identifier(v, key) for v in _split_values(value)))
        elif resource_type != "Patient" and key in _REFERENCE_ANCHORS:
            found = Anchor(local_ids=tuple(_local_id(v, key, base_url) for v in value.split(",")))
        if found is None:
            rest.append((key, value))
        elif anchor is not None:
            raise InvalidSearch("A federated search names its patient once")
        elif not (found.identifiers or found.local_ids):
            raise InvalidSearch(f"{key} names no patient")
        else:
            anchor = found
    return anchor, rest


def partner_identifiers(partner: Partner, identifiers: Sequence[Identifier]) -> list[Identifier]:
    """The patient's identifiers as ``partner`` knows them, by its assigning-authority mapping."""
    mapped = [(partner.system_map.get(s, s), v) for s, v in identifiers]
    if partner.identifier_systems:
        mapped = [(s, v) for s, v in mapped if s in partner.identifier_systems]
    return list(dict.fromkeys(mapped))


def escape(text: str) -> str:
    """A search value part with ``\\ , | $`` escaped (search.html#escaping)."""
    for char in "\\,|$":
        text = text.replace(char, "\\" + char)
    return text


async def pixm_identifiers(
    client: PartnerHttp,
    partner: Partner,
    headers: dict[str, str],
    identifiers: Sequence[Identifier],
) -> list[Identifier]:
    """The partner's identifiers of the patient, from its PIXm Cross-reference Query (ITI-83):
    ``GET Patient/$ihe-pix?sourceIdentifier=..&targetSystem=..``; an unknown source identifier
    (404, or 400 for an unknown assigning authority) is simply no match."""
    found: list[Identifier] = []
    for system, value in identifiers:
        query = [("sourceIdentifier", f"{system}|{value}")]
        query += [("targetSystem", s) for s in partner.identifier_systems]
        url = f"{partner.fhir_base}/Patient/$ihe-pix?{urlencode(query)}"
        answer = await client.request("GET", url, headers=headers, limit=_MAX_PIX)
        if answer.status in (400, 404):
            continue
        if answer.status != 200:
            raise PartnerError("processing", f"$ihe-pix answered HTTP {answer.status}")
        found += _target_identifiers(answer.body)
    return [i for i in dict.fromkeys(found) if i not in identifiers]


def _target_identifiers(body: bytes) -> list[Identifier]:
    try:
        parameters: Any = orjson.loads(body)
    except ValueError:
        raise PartnerError("processing", "$ihe-pix answered something that is not JSON") from None
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise PartnerError("processing", "$ihe-pix answered something that is not Parameters")
    found = []
    for parameter in parameters.get("parameter") or []:
        ident = parameter.get("valueIdentifier") if isinstance(parameter, dict) else None
        if parameter.get("name") == "targetIdentifier" and isinstance(ident, dict):
            system, value = ident.get("system"), ident.get("value")
            if isinstance(system, str) and isinstance(value, str) and system and value:
                found.append((system, value))
    return found
