"""Shared by the HL7 v2 mapping tests: the fixture corpus, parsed, and fixed mapping inputs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from adapters.hl7v2._parser import parse_message
from mappings.hl7v2_model import Hl7Message, IdentifierSystems

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "hl7v2"
PATIENT_SYSTEMS = IdentifierSystems(
    {"STMARY": "urn:oid:2.16.840.1.113883.3.1"}, "urn:pixelhub:patient-id"
)
ORDER_SYSTEMS = IdentifierSystems({}, "urn:pixelhub:hl7v2:order")
ACCESSION_SYSTEMS = IdentifierSystems({}, "urn:pixelhub:accession")


def plus_one_hour(_: object) -> timedelta:
    """The sender's local offset for times without a zone: fixed, so results are stable."""
    return timedelta(hours=1)


def load(name: str) -> Hl7Message:
    return parse_message((CORPUS / name).read_bytes())
