"""FHIR R4 ``AuditEvent`` resources shaped after IHE Basic Audit Log Patterns (BALP) and DICOM
PS3.15 Annex A.5 — pure builders: the caller passes the id and the ``recorded`` time.

One event per interaction. ``agent`` lists who asked (``requestor: true``: the user, else the
client application or peer) with its network address, the client application beside a user, and
PixelHub as the serving side; ``entity`` lists every patient involved (role 1 Patient), the
resources or DICOM study touched, and a search's query (role 24 Query). ``outcome`` is the R4
code: ``0`` success, ``4`` minor failure (refused, denied, bad request), ``8`` serious failure.
The mapping table is ``mappings/interaction_to_auditevent.md``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Resource = dict[str, Any]
Outcome = Literal["0", "4", "8", "12"]

DCM = "http://dicom.nema.org/resources/ontology/DCM"
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
IHE_EVENT = "urn:ihe:event-type-code"
HL7_EVENT = "http://terminology.hl7.org/CodeSystem/v2-0003"
DICOM_AE = "urn:dicom:ae"
DICOM_UID = "urn:dicom:uid"
HL7_CONTROL_ID = "urn:pixelhub:hl7v2:message-control-id"
PIXELHUB_USER = "urn:pixelhub:user"
PIXELHUB_CLIENT = "urn:pixelhub:client"
FEDERATED_USER = "urn:pixelhub:federation:user"  # a user named by a federating hub (issue 12)
FEDERATION_PARTNER = "urn:pixelhub:federation:partner"


def coding(system: str, code: str, display: str | None = None) -> Resource:
    c: Resource = {"system": system, "code": code}
    if display:
        c["display"] = display
    return c


REST = coding(EVENT_TYPE, "rest", "RESTful Operation")
USER_AUTHENTICATION = coding(DCM, "110114", "User Authentication")
SECURITY_ALERT = coding(DCM, "110113", "Security Alert")
NODE_AUTHENTICATION = coding(DCM, "110126", "Node Authentication")
INSTANCES_TRANSFERRED = coding(DCM, "110104", "DICOM Instances Transferred")
QUERY = coding(DCM, "110112", "Query")
APPLICATION_ACTIVITY = coding(DCM, "110100", "Application Activity")
PATIENT_RECORD = coding(DCM, "110110", "Patient Record")
ORDER_RECORD = coding(DCM, "110109", "Order Record")
PROCEDURE_RECORD = coding(DCM, "110111", "Procedure Record")
LOGIN = coding(DCM, "110122", "Login")
GET_ACCESS_TOKEN = coding(IHE_EVENT, "ITI-71", "Get Access Token")
LAUNCH = coding(DCM, "110120", "Application Start")

# FHIR R4 restful-interaction code -> AuditEvent.action (BALP: search and operations Execute)
REST_ACTION = {
    "create": "C",
    "read": "R",
    "vread": "R",
    "history-instance": "R",
    "history-type": "R",
    "history-system": "R",
    "update": "U",
    "patch": "U",
    "delete": "D",
    "search-type": "E",
    "search-system": "E",
    "transaction": "E",
    "batch": "E",
    "operation": "E",
}


@dataclass(frozen=True)
class OriginatingUser:
    """The person a federating hub asked for, as that hub asserts it (its IUA-style header)."""

    name: str
    fhir_user: str | None = None
    site: str | None = None  # the requesting hub (IUA home_community_id)


@dataclass(frozen=True)
class Actor:
    """Who acted: ``name`` is the user name, client id, AE title or ``APP^FACILITY``;
    ``purpose_of_use`` holds ``(system, code)`` Codings (v3 PurposeOfUse)."""

    name: str
    kind: Literal["user", "client", "dicom", "hl7", "anonymous"]
    address: str | None = None
    fhir_user: str | None = None  # "Practitioner/123" for a signed-in user
    client_id: str | None = None  # the SMART client acting for the user
    originating_user: OriginatingUser | None = None
    purpose_of_use: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Source:
    """This PixelHub node: ``site`` (its base URL) and ``observer`` (its name)."""

    site: str
    observer: str


def _network(address: str | None) -> Resource:
    return {"network": {"address": address, "type": "2"}} if address else {}


def _originating_agent(origin: OriginatingUser, hub: str, purposes: list[Resource]) -> Resource:
    """The user a federating hub asked for (issue 12): asserted by that hub, not authenticated
    here, so its identifier names the asserting site."""
    site = origin.site or hub
    display = f"{origin.name} (asserted by {site})"
    agent: Resource = {
        "type": {"coding": [coding(PARTICIPATION, "IRCP", "information recipient")]},
        "who": {
            "identifier": {"system": FEDERATED_USER, "value": f"{site}|{origin.name}"},
            "display": f"{display}, {origin.fhir_user}" if origin.fhir_user else display,
        },
        "altId": origin.name,
        "name": origin.name,
        "requestor": True,
    }
    if purposes:
        agent["purposeOfUse"] = purposes
    return agent


def _agents(actor: Actor, source: Source) -> list[Resource]:
    """The requestor (user, or client/peer), the client beside a user, and PixelHub."""
    requestor: Resource
    if actor.kind == "user":
        requestor = {
            "type": {"coding": [coding(PARTICIPATION, "IRCP", "information recipient")]},
            "who": {"identifier": {"system": PIXELHUB_USER, "value": actor.name}},
            "altId": actor.name,
            "name": actor.name,
            "requestor": True,
            **_network(actor.address),
        }
        if actor.fhir_user:
            requestor["who"]["reference"] = actor.fhir_user
    else:
        system = {"dicom": DICOM_AE, "client": PIXELHUB_CLIENT}.get(actor.kind, PIXELHUB_CLIENT)
        requestor = {
            "type": {"coding": [coding(DCM, "110153", "Source Role ID")]},
            "who": {"identifier": {"system": system, "value": actor.name}},
            "altId": actor.name,
            "name": actor.name,
            "requestor": True,
            **_network(actor.address),
        }
    purposes = [{"coding": [coding(s, c)]} for s, c in actor.purpose_of_use]
    if purposes:
        requestor["purposeOfUse"] = purposes
    agents = [requestor]
    if actor.originating_user is not None:  # the person the hub asked for comes first
        agents.insert(0, _originating_agent(actor.originating_user, actor.name, purposes))
    if actor.kind == "user" and actor.client_id:
        agents.append(
            {
                "type": {"coding": [coding(DCM, "110150", "Application")]},
                "who": {"identifier": {"system": PIXELHUB_CLIENT, "value": actor.client_id}},
                "name": actor.client_id,
                "requestor": False,
            }
        )
    agents.append(
        {
            "type": {"coding": [coding(DCM, "110152", "Destination Role ID")]},
            "who": {"display": source.observer},
            "name": source.observer,
            "requestor": False,
        }
    )
    return agents


def patient_entity(reference: str) -> Resource:
    return {
        "what": {"reference": reference},
        "type": coding(ENTITY_TYPE, "1", "Person"),
        "role": coding(OBJECT_ROLE, "1", "Patient"),
    }


def resource_entity(reference: str) -> Resource:
    return {
        "what": {"reference": reference},
        "type": coding(ENTITY_TYPE, "2", "System Object"),
        "role": coding(OBJECT_ROLE, "4", "Domain Resource"),
    }


def query_entity(query: str, description: str | None = None) -> Resource:
    entity: Resource = {
        "type": coding(ENTITY_TYPE, "2", "System Object"),
        "role": coding(OBJECT_ROLE, "24", "Query"),
        "query": base64.b64encode(query.encode()).decode(),
    }
    if description:
        entity["description"] = description
    return entity


def dicom_query_entity(
    sop_class_uid: str, identifier: bytes, transfer_syntax: str, description: str | None = None
) -> Resource:
    """The query of a DICOM C-FIND (PS3.15 A.5.3.10 Query; BALP query entity): the SOP Class
    queried as the entity's identity, the encoded request identifier as ``query`` (base64) and
    the transfer syntax it is encoded in as a detail."""
    entity: Resource = {
        "what": {"identifier": {"system": DICOM_UID, "value": f"urn:oid:{sop_class_uid}"}},
        "type": coding(ENTITY_TYPE, "2", "System Object"),
        "role": coding(OBJECT_ROLE, "24", "Query"),
        "query": base64.b64encode(identifier).decode(),
        "detail": [{"type": "TransferSyntax", "valueString": transfer_syntax}],
    }
    if description:
        entity["description"] = description
    return entity


def site_entity(name: str, endpoint: str | None, description: str) -> Resource:
    """A partner site a federated search asked (object role 17 Data Repository)."""
    what: Resource = {"identifier": {"system": FEDERATION_PARTNER, "value": name}}
    if endpoint:
        what["reference"] = endpoint
    return {
        "what": what,
        "type": coding(ENTITY_TYPE, "2", "System Object"),
        "role": coding(OBJECT_ROLE, "17", "Data Repository"),
        "description": description[:1000],
    }


def identifier_entity(system: str, value: str, role: str, role_display: str) -> Resource:
    return {
        "what": {"identifier": {"system": system, "value": value}},
        "type": coding(ENTITY_TYPE, "2", "System Object"),
        "role": coding(OBJECT_ROLE, role, role_display),
    }


def interaction_to_auditevent(
    *,
    event_id: str,
    recorded: str,
    source: Source,
    actor: Actor,
    type_: Resource,
    subtype: Sequence[Resource] = (),
    action: str,
    outcome: Outcome,
    outcome_desc: str | None = None,
    entities: Iterable[Resource] = (),
) -> Resource:
    """One R4 AuditEvent (auditevent.html)."""
    event: Resource = {
        "resourceType": "AuditEvent",
        "id": event_id,
        "type": type_,
        "action": action,
        "recorded": recorded,
        "outcome": outcome,
        "agent": _agents(actor, source),
        "source": {
            "site": source.site,
            "observer": {"display": source.observer},
            "type": [coding(SOURCE_TYPE, "4", "Application Server")],
        },
    }
    if subtype:
        event["subtype"] = list(subtype)
    if actor.purpose_of_use:
        event["purposeOfEvent"] = [{"coding": [coding(s, c)]} for s, c in actor.purpose_of_use]
    if outcome_desc:
        event["outcomeDesc"] = outcome_desc[:1000]
    entity_list = list(entities)
    if entity_list:
        event["entity"] = entity_list
    return event


def rest_entities(
    *, patients: Iterable[str], resources: Iterable[str], query: str | None
) -> list[Resource]:
    """BALP entities: each patient once, each resource once, and the query of a search."""
    entities = [patient_entity(p) for p in dict.fromkeys(patients)]
    seen = {e["what"]["reference"] for e in entities}
    entities += [resource_entity(r) for r in dict.fromkeys(resources) if r not in seen]
    if query is not None:
        entities.append(query_entity(query))
    return entities
