"""A hub with the ``dicom`` and ``hl7v2`` channels, for the scheduled-workflow tests (Modality
Worklist, MPPS, Storage Commitment): orders arrive as real HL7 messages over MLLP (python-hl7's
client), the modality side speaks DIMSE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hl7.client

from tests.e2e.support import make_hub
from tests.integration.dicom.dicom_support import PEERS, DicomHub
from tests.integration.hl7v2.hl7_support import AUTHORITIES, CORPUS, ack_segments, msa
from tests.integration.hl7v2.hl7_support import PEERS as HL7_PEERS

MODALITY_PEERS = [*PEERS, "FINDSCU", "MODALITY", "CT_SCANNER1"]
# the HL7 order samples of tests/fixtures/hl7v2 and what they schedule
OMI = "omi_o23_v251_ihe_rad4.hl7"  # ACC-NR-5001: two steps (CT, SR), patient Müller^Hans
ORM = "orm_o01_v231_ihe_rad4.hl7"  # ACC-2024-0001: one CR step, patient O'BRIEN^MARY
CANCEL = "orm_o01_v23_cancel.hl7"  # a cancelled order: never on the worklist


def start_order_hub(data_dir: Path, **overrides: Any) -> tuple[DicomHub, int]:
    """The hub and its MLLP port."""
    settings: dict[str, Any] = {
        "dicom_port": 0,
        "mllp_port": 0,
        "channels": ["dicom", "hl7v2"],
        "dicom_allowed_peers": MODALITY_PEERS,
        "dicom_aggregation_quiet_seconds": 1.0,
        "hl7_allowed_peers": HL7_PEERS,
        "hl7_authority_systems": AUTHORITIES,
        "dicom_issuer_systems": AUTHORITIES,
        **overrides,
    }
    hub = make_hub(data_dir, **settings)
    ports = hub.start_channels()
    hub.runner.start()
    return DicomHub(hub, ports["dicom"], data_dir), ports["mllp"]


def send_orders(mllp_port: int, *names: str) -> None:
    """Send HL7 sample messages over MLLP; each must be accepted (AA)."""
    for name in names:
        with hl7.client.MLLPClient("127.0.0.1", mllp_port) as client:
            client.socket.settimeout(10)
            ack = ack_segments(client.send_message((CORPUS / name).read_bytes()))
        assert msa(ack)[1] == "AA", ack
