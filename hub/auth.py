"""The one access-policy seam every door passes through.

An adapter (HTTP, DICOM, MLLP...) authenticates its caller into a ``Principal``; every interaction
then asks ``AccessPolicy.check``, which answers with the ``Access`` granted or raises
``Forbidden``. Bearer tokens are either static tokens from the settings (full access, for tests
and operations) or access tokens of PixelHub's SMART authorization server (``hub.smart``), whose
scopes (SMART App Launch 2.2 ``scopes-and-launch-context.html``, v1 and v2) decide. ``--demo``
allows everything and says so loudly at start-up. Nothing is ever open by accident: with no demo,
a request without a valid token is refused.

An ``Access`` is unrestricted (``rules is None``) or a list of rules ORed together, each confining
the type to the token's patient compartment (``patient/`` scopes, FHIR R4
``compartmentdefinition-patient.html``) and/or to the resources matching a v2 scope's search
restriction (``system/DocumentReference.rs?category=...``). A ``user/`` or ``system/`` scope
without restriction lifts every rule. ``hub.fhir.service.FhirService`` enforces the rules on
every path (read, vread, history, search with its includes, chains and ``_has``, writes,
conditional interactions, batch/transaction entries): it adds them to the search as criteria and
answers 404 for a resource outside them, exactly as for a missing one.

Fail closed: a ``patient/`` scope grants nothing without a ``patient`` launch context; a scope
restriction that does not parse for the type grants nothing for it.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from hub.errors import Forbidden, Unauthorized
from hub.smart.compartment import compartment_params
from hub.smart.scopes import parse_scope

# FHIR R4 interactions (http.html) grouped as SMART v2 permissions c/r/u/d/s.
InteractionKind = Literal[
    "read", "vread", "create", "update", "patch", "delete", "search", "history", "operation"
]
PERMISSION: dict[InteractionKind, str] = {
    "read": "r",
    "vread": "r",
    "history": "r",
    "create": "c",
    "update": "u",
    "patch": "u",
    "delete": "d",
    "search": "s",
    "operation": "r",
}
# Never readable through a patient/ scope although outside the compartment: a Binary holds the
# content of documents and images (its securityContext, not a compartment, says whose).
_NO_PATIENT_READ = frozenset({"Binary"})
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # datatypes.html#id


@dataclass(frozen=True)
class Principal:
    """Who is calling: ``subject`` names the user, client, AE title or sending application;
    ``patient`` is the id of the launch's patient (SMART ``patient`` launch context), whose
    compartment ``patient/`` scopes are confined to."""

    subject: str
    kind: Literal["anonymous-demo", "token", "peer"] = "token"
    scopes: frozenset[str] = field(default_factory=frozenset)
    address: str | None = None
    patient: str | None = None


@dataclass(frozen=True)
class Rule:
    """One way scopes grant a type: confined to ``patient``'s compartment when set, and to the
    resources matching ``query`` (a SMART v2 scope's search restriction) when not empty."""

    patient: str | None = None
    query: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Access:
    """What ``AccessPolicy.check`` granted for one type: everything (``rules is None``) or the
    resources that satisfy at least one rule."""

    resource_type: str
    rules: tuple[Rule, ...] | None = None

    @property
    def restricted(self) -> bool:
        return self.rules is not None


class AccessPolicy:
    """Authenticates bearer tokens and decides interactions (FHIR R4 security.html).

    ``verify_token`` checks an access token and returns its claims (``scope``, ``client_id``,
    ``sub``), raising any exception when the token is not valid.
    """

    def __init__(
        self,
        *,
        demo: bool,
        tokens: list[str],
        verify_token: Callable[[str], dict[str, Any]] | None = None,
    ) -> None:
        self.demo = demo
        self._tokens = [t.encode() for t in tokens]
        self._verify_token = verify_token

    def authenticate_bearer(self, authorization: str | None, address: str | None) -> Principal:
        """The principal for an HTTP ``Authorization`` header (RFC 6750)."""
        if self.demo:
            return Principal(
                "demo", kind="anonymous-demo", scopes=frozenset({"*"}), address=address
            )
        challenge = {"WWW-Authenticate": 'Bearer realm="pixelhub"'}
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthorized("A bearer token is required", headers=challenge)
        token = authorization[7:].strip()
        for known in self._tokens:
            if hmac.compare_digest(token.encode(), known):
                return Principal("static-token", scopes=frozenset({"*"}), address=address)
        if self._verify_token is not None and token:
            try:
                claims = self._verify_token(token)
            except Exception:  # any failure of verification is the same 401 (RFC 6750 §3.1)
                pass
            else:
                patient = claims.get("patient")
                return Principal(
                    str(claims.get("sub") or claims["client_id"]),
                    scopes=frozenset(str(claims["scope"]).split()),
                    address=address,
                    patient=patient
                    if isinstance(patient, str) and _ID.fullmatch(patient)
                    else None,
                )
        challenge["WWW-Authenticate"] = 'Bearer realm="pixelhub", error="invalid_token"'
        raise Unauthorized("The bearer token is not valid", headers=challenge)

    def check(
        self, principal: Principal, interaction: InteractionKind, resource_type: str
    ) -> Access:
        """The ``Access`` granted for ``interaction`` on ``resource_type``, or ``Forbidden``.

        SMART ``scopes-and-launch-context.html``: a ``patient/`` scope confines the type to the
        compartment of the principal's ``patient``; for a type that is never in a patient
        compartment (Practitioner, Organization, Location, Endpoint, Device...), which a patient
        app needs to make sense of its own records, it grants reads and searches of any such
        resource but no writes (and nothing for ``Binary``). A ``?query`` restricts to matching
        resources. The first scope granting the type unrestricted wins.
        """
        if "*" in principal.scopes:
            return Access(resource_type)
        permission = PERMISSION[interaction]
        rules: list[Rule] = []
        for scope in principal.scopes:
            parsed = parse_scope(scope)
            if parsed is None or not parsed.covers(resource_type, permission):
                continue
            patient = None
            if parsed.context == "patient":
                if principal.patient is None:
                    continue  # no patient context to confine it to: grants nothing
                if compartment_params(resource_type) is not None or resource_type == "Patient":
                    patient = principal.patient
                elif permission not in "rs" or resource_type in _NO_PATIENT_READ:
                    continue
            rule = Rule(patient, parsed.query)
            if rule == Rule():
                return Access(resource_type)
            if rule not in rules:
                rules.append(rule)
        if rules:
            return Access(resource_type, tuple(rules))
        raise Forbidden(f"Not permitted: {interaction} on {resource_type}")
