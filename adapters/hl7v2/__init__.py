"""HL7 v2 over MLLP: the ``hl7v2`` channel of ``pixelhub serve`` (entry point
``pixelhub.channels``).

RIS/EMR systems send ADT, orders and results; the channel applies each message in one transaction
through ``FhirService`` and acknowledges it (HL7 v2.5.1 ch. 2 §2.9) only after the commit.
"""

from adapters.hl7v2._channel import Hl7v2Channel, create_channel
from adapters.hl7v2._ingest import Hl7Ingest, PeerRule, parse_peers
from adapters.hl7v2._parser import parse_message

__all__ = [
    "Hl7Ingest",
    "Hl7v2Channel",
    "PeerRule",
    "create_channel",
    "parse_message",
    "parse_peers",
]
