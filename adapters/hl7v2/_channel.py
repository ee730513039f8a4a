"""The ``hl7v2`` channel: settings in, a running MLLP listener out (``hub.channels`` protocol)."""

from __future__ import annotations

from adapters.hl7v2._ingest import Hl7Ingest, parse_peers
from adapters.hl7v2._mllp import MllpServer
from hub.channels import ChannelContext
from hub.peers import tls_server_context


class Hl7v2Channel:
    """HL7 v2 over MLLP on ``settings.mllp_port`` (``0`` = a free port), bound to
    ``settings.http_host``; allowed peers from ``settings.hl7_allowed_peers``."""

    name = "hl7v2"
    port_name = "mllp"

    def __init__(self, context: ChannelContext) -> None:
        settings = context.settings
        self.ingest = Hl7Ingest(
            context.service,
            principal_for=context.peer,
            peers=parse_peers(settings.hl7_allowed_peers, demo=settings.demo),
            authority_systems=dict(settings.hl7_authority_systems),
            default_patient_system=settings.hl7_default_patient_system,
            notify_change=context.notify_change,
        )
        tls = None
        if settings.mllp_tls_cert or settings.mllp_tls_key:
            if not (settings.mllp_tls_cert and settings.mllp_tls_key):
                raise ValueError("MLLP TLS needs both mllp_tls_cert and mllp_tls_key")
            tls = tls_server_context(
                str(settings.mllp_tls_cert),
                str(settings.mllp_tls_key),
                str(settings.mllp_tls_ca) if settings.mllp_tls_ca else None,
            )
        self.server = MllpServer(
            self.ingest.handle,
            self.ingest.refuse,
            host=settings.http_host,
            port=settings.mllp_port,
            max_message_bytes=settings.mllp_max_message_bytes,
            idle_timeout=settings.mllp_idle_timeout,
            ssl_context=tls,
        )

    def start(self) -> int:
        return self.server.start()

    def stop(self, timeout: float) -> None:
        self.server.stop(timeout)


def create_channel(context: ChannelContext) -> Hl7v2Channel:
    """The ``pixelhub.channels`` entry point ``hl7v2``."""
    return Hl7v2Channel(context)
