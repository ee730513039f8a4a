"""Issue 7 on the HL7 v2 channel, with python-hl7 as the sender: one AuditEvent per message,
applied or rejected, naming the sender, MSH-10 and the patient."""

from __future__ import annotations

from typing import Any

import orjson

from tests.e2e.support import assert_valid_r4
from tests.integration.hl7v2.hl7_support import Hl7Hub, message, msa, omi


def journaled(hub: Hl7Hub) -> list[dict[str, Any]]:
    directory = hub.hub.audit.directory
    assert directory is not None
    lines = b"".join(p.read_bytes() for p in sorted(directory.glob("journal-*")))
    return [r["event"] for r in map(orjson.loads, lines.splitlines()) if "event" in r]


def test_each_message_is_one_event_applied_or_rejected(hl7_hub: Hl7Hub) -> None:
    assert msa(hl7_hub.send(omi(1)))[1] == "AA"
    assert msa(hl7_hub.send(message("ADT^A04^ADT_A01", "BAD1", sender="EVIL|ELSEWHERE")))[1] == "AR"
    no_pid = message("ADT^A04^ADT_A01", "NOPID", "EVN|A04|20240305101500", "PID|1||")
    assert msa(hl7_hub.send(no_pid))[1] in ("AE", "AR")
    applied, refused, failed = journaled(hl7_hub)
    assert applied["type"]["code"] == "110109" and applied["outcome"] == "0"
    assert applied["subtype"][0]["code"] == "O23" and applied["subtype"][0]["display"] == "OMI^O23"
    assert applied["agent"][0]["name"] == "RIS^HOSP"
    assert applied["agent"][0]["network"]["address"] == "127.0.0.1"
    (patient,) = [e for e in applied["entity"] if e["role"]["code"] == "1"]
    assert patient["what"]["reference"].startswith("Patient/")
    (control,) = [e for e in applied["entity"] if e["role"]["code"] == "20"]
    assert control["what"]["identifier"]["value"] == "OMI1"
    assert refused["outcome"] == "4" and "not an allowed peer" in refused["outcomeDesc"]
    assert refused["type"]["code"] == "110110" and refused["agent"][0]["name"] == "EVIL^ELSEWHERE"
    assert failed["outcome"] == "4" and not [
        e for e in failed["entity"] if e["role"]["code"] == "1"
    ]
    for event in (applied, refused, failed):
        assert_valid_r4(event)
